/*
 * COPY FROM STDIN and COPY TO STDOUT.
 *
 * libpq refuses COPY in pipeline mode, so a COPY node waits in `pending`
 * until everything sent before it has completed (can_send in query.c).
 * Then pipeline mode is left, the COPY goes out with the simple query
 * protocol and stays the only node in flight; when its last result is in,
 * pipeline mode is entered again and the queries queued behind it go on.
 *
 * While it runs, its phase says what pgev_read_results() (dispatch.c)
 * waits for:
 *
 *   RESULT ──COPY_IN──► IN  ──pgev_copy_end()──► RESULT ──NULL──► done
 *          ──COPY_OUT─► OUT ──end of data─────► RESULT
 *
 * RESULT also takes the final result of each statement (COMMAND_OK with
 * the COPY's count, or the server's error). A COPY that has to stop early
 * (timeout, pgev_conn_cancel(), a callback of the wrong direction) has
 * already completed through pgev_node_abandon(); what the server still
 * sends for it is read and dropped: FROM STDIN is ended with CopyFail,
 * TO STDOUT is cancelled on the server.
 */
#include "pgev-internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Bytes handed to libpq between flushes. A flush that leaves bytes behind
 * refuses the next write until the socket has taken them, so libpq's
 * buffer holds at most about this much plus one write. */
#define COPY_FLUSH_BYTES (64 * 1024)
/* Data chunks handed out per call before the read loop's budget counts. */
#define COPY_CHUNKS_PER_CALL 64

enum copy_phase {
    COPY_QUEUED,    /* not sent yet */
    COPY_RESULT,    /* waiting for a result (start of COPY, or its end) */
    COPY_IN,        /* FROM STDIN: the application writes */
    COPY_OUT        /* TO STDOUT: data chunks arrive */
};

struct pgev_copy {
    pgev_conn *conn;
    pgev_node *node;
    enum copy_phase phase;
    pgev_copy_ready_cb on_ready;
    pgev_copy_data_cb on_data;
    bool ready_due;         /* on_ready is owed (COPY started, or the buffer drained) */
    bool blocked;           /* a write was refused: on_ready once libpq's buffer drained */
    bool ended_by_user;     /* pgev_copy_end() with a message: report PGEV_ECANCELLED */
    bool paused;            /* COPY OUT: pgev_copy_pause(); nothing is read until resumed */
    size_t unflushed;       /* bytes written since the last flush */
};

static const char *
copy_abandon_reason(const pgev_copy *copy)
{
    return copy->on_ready ? "COPY abandoned by the client" : "COPY TO STDOUT abandoned by the client";
}

/* From the application's side (write/end): a failure is reported from
 * the loop, like every other completion. */
static int
copy_broken(pgev_copy *copy, const char *fallback)
{
    pgev_conn *conn = copy->conn;
    pgev_mark_broken(conn, fallback);
    if (conn->dispatch_depth == 0)
        pgev_loop_defer(conn->loop);
    return PGEV_ECONNLOST;
}

/* Data was queued in libpq: make sure it goes out soon. */
static void
copy_queued(pgev_copy *copy)
{
    pgev_conn *conn = copy->conn;
    conn->flush_needed = true;
    if (conn->dispatch_depth == 0)
        pgev_loop_defer(conn->loop);
}

bool
pgev_copy_send(pgev_conn *conn, pgev_node *node)
{
    pgev_copy *copy = node->copy;
    copy->node = node;
    node->sync_after = false;   /* no Sync: COPY runs outside pipeline mode */
    node->sent = true;
    pgev_fifo_push(&conn->inflight, node);
    if (PQexitPipelineMode(conn->pg) != 1 || PQsendQuery(conn->pg, node->sql) != 1) {
        pgev_mark_broken(conn, "could not start the COPY");
        return false;
    }
    free(node->payload);
    node->payload = NULL;
    node->sql = NULL;
    copy->phase = COPY_RESULT;
    conn->flush_needed = true;
    return true;
}

/* The COPY's last result is in: back to pipeline mode, then complete. */
static void
copy_finish(pgev_conn *conn, pgev_node *node)
{
    pgev_copy *copy = node->copy;
    pgev_fifo_pop(&conn->inflight);
    if (PQenterPipelineMode(conn->pg) != 1) {
        /* The node is out of the FIFO: it completes with the connection. */
        pgev_fifo_push_front(&conn->inflight, node);
        pgev_mark_broken(conn, "could not re-enter pipeline mode after COPY");
        return;
    }
    if (copy->ended_by_user && node->status == PGEV_ESERVER)
        node->status = PGEV_ECANCELLED;
    pgev_complete_query(conn, node);
}

/* COPY_IN or COPY_OUT arrived. Returns false when the connection broke. */
static bool
copy_started(pgev_conn *conn, pgev_node *node, bool in)
{
    pgev_copy *copy = node->copy;
    copy->phase = in ? COPY_IN : COPY_OUT;
    if (!node->finished && in != (copy->on_ready != NULL)) {
        pgev_node_abandon(conn, node, PGEV_EINVAL,
                          in ? "COPY FROM STDIN needs on_ready (pgev_conn_copy_in())"
                             : "COPY TO STDOUT needs on_data (pgev_conn_copy_out())");
        return !conn->broken;   /* pgev_copy_abandoned() ended it */
    }
    if (node->finished) {
        pgev_copy_abandoned(conn, node, copy_abandon_reason(copy));
        return !conn->broken;
    }
    if (in)
        copy->ready_due = true;
    return true;
}

/* RESULT: one result from libpq. Returns false to stop reading. */
static bool
copy_result(pgev_conn *conn, pgev_node *node)
{
    if (PQisBusy(conn->pg))
        return false;
    PGresult *res = PQgetResult(conn->pg);
    if (!res) {
        copy_finish(conn, node);
        return !conn->broken && !conn->free_requested;
    }
    switch (PQresultStatus(res)) {
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT: {
        bool in = PQresultStatus(res) == PGRES_COPY_IN;
        PQclear(res);
        return copy_started(conn, node, in);
    }
    case PGRES_FATAL_ERROR:
        if (PQstatus(conn->pg) == CONNECTION_BAD) {
            PQclear(res);
            pgev_mark_broken(conn, "connection lost during COPY");
            return false;
        }
        pgev_node_keep_error(node, res);
        return true;
    default:
        /* COMMAND_OK with the COPY's count (or whatever a statement
         * beside it returned): the last one is the query's result. */
        PQclear(node->result);
        node->result = res;
        return true;
    }
}

/* OUT: hands data chunks to on_data. Returns false to stop reading. */
static bool
copy_out(pgev_conn *conn, pgev_node *node)
{
    pgev_copy *copy = node->copy;
    for (int i = 0; i < COPY_CHUNKS_PER_CALL; i++) {
        if (copy->paused && !node->finished)
            return false;       /* pgev_copy_resume() comes back */
        if (i > 0 && pgev_turn_over(conn)) {
            /* Slow on_data: let the loop's timers (a deadline) run. */
            conn->more_results = true;
            pgev_loop_yield(conn->loop);
            return false;
        }
        char *data;
        int n = PQgetCopyData(conn->pg, &data, 1);
        if (n == 0)
            return false;       /* more to come */
        if (n == -1) {
            copy->phase = COPY_RESULT;
            return true;
        }
        if (n < 0) {
            pgev_mark_broken(conn, "connection lost during COPY");
            return false;
        }
        if (!node->finished && !node->abandon_code && node->status == PGEV_OK &&
            !(node->deadline && pgev_deadline_check(conn, node))) {
            node->rows++;
            copy->on_data(conn, copy, data, (size_t)n, node->arg);
        }
        PQfreemem(data);
        /* Freed, or cancelled from on_data: no more data for it; the
         * cancel completes it from the loop (pgev_abandon_requested). */
        if (conn->free_requested)
            return false;
        if (node->abandon_code) {
            /* What libpq has buffered already announces itself no more. */
            conn->more_results = true;
            pgev_loop_defer(conn->loop);
            return false;
        }
    }
    return true;
}

bool
pgev_copy_read(pgev_conn *conn, pgev_node *node)
{
    pgev_copy *copy = node->copy;
    switch (copy->phase) {
    case COPY_RESULT:
        return copy_result(conn, node);
    case COPY_OUT:
        return copy_out(conn, node);
    case COPY_IN:
        /* The server answers only once the data has ended; until then the
         * application is told when it may write. */
        if (!copy->ready_due || node->finished)
            return false;
        copy->ready_due = false;
        copy->on_ready(conn, copy, node->arg);
        return !conn->free_requested && !conn->broken;
    case COPY_QUEUED:
    default:
        return false;
    }
}

void
pgev_copy_abandoned(pgev_conn *conn, pgev_node *node, const char *why)
{
    pgev_copy *copy = node->copy;
    switch (copy->phase) {
    case COPY_IN:
        /* CopyFail: the server rolls the COPY back and reports an error,
         * which is dropped (the COPY has completed). */
        copy->phase = COPY_RESULT;
        if (PQputCopyEnd(conn->pg, why) != 1)
            pgev_mark_broken(conn, "could not end the COPY");
        else
            conn->flush_needed = true;
        break;
    case COPY_OUT:
        if (!node->cancel_sent)
            pgev_cancel_running(conn, node);
        break;
    case COPY_RESULT:
        /* Not started yet (the start is handled in copy_started) or already
         * ending: wait for what the server sends. A COPY from or to a server
         * file, still running, is cancelled. */
        if (!node->cancel_sent && PQisBusy(conn->pg))
            pgev_cancel_running(conn, node);
        break;
    case COPY_QUEUED:
    default:
        break;
    }
    if (conn->dispatch_depth == 0)
        pgev_loop_defer(conn->loop);
}

void
pgev_copy_drained(pgev_conn *conn)
{
    pgev_copy *copy = conn->inflight.head->copy;
    copy->unflushed = 0;
    if (!copy->blocked || copy->phase != COPY_IN)
        return;
    /* on_ready runs from the read loop, not inside this flush. */
    copy->blocked = false;
    copy->ready_due = true;
    conn->more_results = true;
    pgev_loop_defer(conn->loop);
}

/* ---- the API ------------------------------------------------------------ */

int64_t
pgev_conn_copy(pgev_conn *conn, const pgev_copy_args *args)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!args || !args->sql) {
        pgev_conn_refuse(conn, "%s is NULL", args ? "sql" : "COPY arguments");
        return PGEV_EINVAL;
    }
    if ((args->on_ready == NULL) == (args->on_data == NULL)) {
        pgev_conn_refuse(conn, "set exactly one of on_ready (COPY FROM STDIN) and on_data (COPY TO STDOUT)");
        return PGEV_EINVAL;
    }
    if (!pgev_is_copy_statement(args->sql)) {
        pgev_conn_refuse(conn, "not a COPY statement");
        return PGEV_EINVAL;
    }
    if (conn->in_batch && !conn->txn_submitting) {
        pgev_conn_refuse(conn, "COPY cannot run inside an atomic batch");
        return PGEV_ESTATE;
    }
    pgev_copy *copy = calloc(1, sizeof(*copy));
    if (!copy) {
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    copy->conn = conn;
    copy->on_ready = args->on_ready;
    copy->on_data = args->on_data;
    pgev_query_args qargs = {
        .sql = args->sql,
        .on_done = args->on_done,
        .arg = args->arg,
        .timeout_ms = args->timeout_ms,
    };
    int64_t id = pgev_submit_node(conn, PGEV_NODE_COPY, &qargs, copy, false);
    if (id <= 0)
        free(copy);
    return id;
}

int64_t
pgev_conn_copy_in(pgev_conn *conn, const char *sql, pgev_copy_ready_cb on_ready, pgev_result_cb on_done,
                  void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!on_ready) {
        pgev_conn_refuse(conn, "on_ready is NULL");
        return PGEV_EINVAL;
    }
    pgev_copy_args args = { .sql = sql, .on_ready = on_ready, .on_done = on_done, .arg = arg };
    return pgev_conn_copy(conn, &args);
}

int64_t
pgev_conn_copy_out(pgev_conn *conn, const char *sql, pgev_copy_data_cb on_data, pgev_result_cb on_done,
                   void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!on_data) {
        pgev_conn_refuse(conn, "on_data is NULL");
        return PGEV_EINVAL;
    }
    pgev_copy_args args = { .sql = sql, .on_data = on_data, .on_done = on_done, .arg = arg };
    return pgev_conn_copy(conn, &args);
}

/* libpq could not make room for a write (or the end): returns 1, and
 * on_ready runs once its buffer has drained. */
static int
copy_wait_drain(pgev_copy *copy)
{
    copy->blocked = true;
    copy->conn->want_write = true;
    pgev_conn_update_watch(copy->conn);
    return 1;
}

/* Data is accepted only while the server is in COPY IN and the COPY has
 * neither ended nor completed. */
static bool
copy_accepting(const pgev_copy *copy)
{
    const pgev_conn *conn = copy->conn;
    return copy->phase == COPY_IN && !copy->node->finished && !conn->broken && conn->pg &&
           pgev_copy_running(conn) && conn->inflight.head == copy->node;
}

int
pgev_copy_write(pgev_copy *copy, const void *data, size_t len)
{
    if (!copy || (!data && len > 0) || len > INT_MAX || !copy->on_ready)
        return PGEV_EINVAL;
    if (copy->conn->broken)
        return PGEV_ECONNLOST;
    if (!copy_accepting(copy))
        return PGEV_ECLOSED;
    pgev_conn *conn = copy->conn;
    if (conn->want_write) {
        copy->blocked = true;
        return 1;
    }
    if (len == 0)
        return PGEV_OK;
    int rc = PQputCopyData(conn->pg, data, (int)len);
    if (rc < 0)
        return copy_broken(copy, "could not send COPY data");
    if (rc == 0)
        return copy_wait_drain(copy);
    copy->unflushed += len;
    if (copy->unflushed >= COPY_FLUSH_BYTES) {
        copy->unflushed = 0;
        rc = PQflush(conn->pg);
        if (rc < 0)
            return copy_broken(copy, "could not send COPY data");
        if (rc == 1) {
            conn->want_write = true;
            pgev_conn_update_watch(conn);
        }
        return PGEV_OK;
    }
    copy_queued(copy);
    return PGEV_OK;
}

int
pgev_copy_end(pgev_copy *copy, const char *errmsg)
{
    if (!copy)
        return PGEV_EINVAL;
    pgev_conn *conn = copy->conn;
    if (conn->broken)
        return PGEV_ECONNLOST;
    if (!copy->on_ready) {
        /* TO STDOUT: stop it early, as a cancel of its id does. */
        if (copy->node->finished || copy->phase == COPY_QUEUED || !pgev_copy_running(conn))
            return PGEV_ECLOSED;
        return pgev_conn_cancel(conn, copy->node->id) == PGEV_OK ? PGEV_OK : PGEV_ECLOSED;
    }
    if (!copy_accepting(copy))
        return PGEV_ECLOSED;
    int rc = PQputCopyEnd(conn->pg, errmsg);
    if (rc < 0)
        return copy_broken(copy, "could not end the COPY");
    if (rc == 0)
        return copy_wait_drain(copy);
    copy->ended_by_user = errmsg != NULL;
    copy->phase = COPY_RESULT;
    copy->unflushed = 0;
    /* The server's answer is read by the loop; if it is already buffered,
     * no socket event would announce it. */
    conn->more_results = true;
    pgev_loop_defer(conn->loop);
    copy_queued(copy);
    return PGEV_OK;
}

int
pgev_copy_pause(pgev_copy *copy)
{
    if (!copy || !copy->on_data)
        return PGEV_EINVAL;
    if (copy->node->finished || copy->phase == COPY_RESULT)
        return PGEV_ECLOSED;
    copy->paused = true;
    return PGEV_OK;
}

int
pgev_copy_resume(pgev_copy *copy)
{
    if (!copy || !copy->on_data)
        return PGEV_EINVAL;
    if (!copy->paused)
        return PGEV_OK;
    copy->paused = false;
    pgev_conn *conn = copy->conn;
    /* What libpq has buffered announces itself no more: the read loop
     * comes back by itself, and the socket is watched again. */
    conn->more_results = true;
    pgev_loop_defer(conn->loop);
    return PGEV_OK;
}

bool
pgev_copy_paused(const pgev_conn *conn)
{
    return pgev_copy_running(conn) && conn->inflight.head->copy->paused && !conn->inflight.head->finished;
}
