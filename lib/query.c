/*
 * Submitting queries: validation, the pending FIFO, handing queries to
 * libpq (the send side of the pipeline) and flushing.
 *
 * A query is sent during the submit call when nothing is queued ahead of
 * it, the window has room and libpq's buffer is draining; it then borrows
 * the caller's arrays, which libpq copies into its output buffer. Otherwise
 * it waits in the pending FIFO with its own copy of everything it sends.
 */
#include "pgev-internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Recycled nodes kept per connection: enough for a full window of churn. */
#define NODE_CACHE_MAX 1024
/* Flush libpq's output once about this much was handed to it, so its
 * buffer never grows large (libpq then retries send() on every call). */
#define FLUSH_THRESHOLD (32 * 1024)
/* Read-only queries sharing one Sync segment, at most. A failure re-sends
 * the rest of its segment, so this bounds that cost too. */
#define SHARED_SEGMENT_MAX 256

static void on_deadline(pgev_conn *conn, void *arg);

pgev_node *
pgev_node_alloc(pgev_conn *conn)
{
    pgev_node *node = conn->free_nodes;
    if (node) {
        conn->free_nodes = node->next;
        conn->free_count--;
    } else {
        node = malloc(sizeof(*node));
        if (!node)
            return NULL;
    }
    memset(node, 0, offsetof(pgev_node, inline_payload));
    return node;
}

void
pgev_node_release(pgev_conn *conn, pgev_node *node)
{
    pgev_timer_free(node->deadline);
    PQclear(node->result);
    PQclear(node->error_result);
    PQclear(node->chunk_tag);
    free(node->payload);
    free(node->copy);
    if (conn->free_count < NODE_CACHE_MAX) {
        node->next = conn->free_nodes;
        conn->free_nodes = node;
        conn->free_count++;
    } else {
        free(node);
    }
}

void
pgev_nodes_free_all(pgev_conn *conn)
{
    while (conn->free_nodes) {
        pgev_node *next = conn->free_nodes->next;
        free(conn->free_nodes);
        conn->free_nodes = next;
    }
    conn->free_count = 0;
}

/*
 * Completes a node that gets no result (lost connection, cancelled...).
 * The result handed to the callback carries only the error.
 */
void
pgev_node_complete_error(pgev_conn *conn, pgev_node *node, int code, const pgev_error *err)
{
    pgev_error local;
    pgev_error_copy(&local, err);
    local.code = code;
    pgev_result res = {
        .status = code,
        .query_id = node->id,
        .rows = node->rows,
        .error = &local,
        .unsent = !node->sent,
    };
    if (node->on_done)
        node->on_done(conn, &res, node->arg);
    pgev_node_release(conn, node);
}

void
pgev_fail_all(pgev_conn *conn, int code, const pgev_error *err)
{
    /* In-flight first: they were submitted first. Detach each node before
     * its callback runs, so a callback that frees the connection (deferred)
     * or inspects the counts sees a consistent queue. */
    pgev_fifo *queues[5] = { &conn->inflight, &conn->resend, &conn->doomed, &conn->pending, &conn->held };
    for (int i = 0; i < 5; i++) {
        pgev_node *node;
        while ((node = pgev_fifo_pop(queues[i])) != NULL) {
            if (node->finished)
                pgev_node_release(conn, node);  /* its callback already ran */
            else
                pgev_node_complete_error(conn, node, code, err);
        }
    }
    conn->expect_sync = false;
    conn->cancel_target = NULL;
    conn->abandon_requested = false;
    conn->stray_cancel = false;
    conn->shared_open = false;
    conn->shared_count = 0;
}

void
pgev_mark_broken(pgev_conn *conn, const char *fallback)
{
    if (conn->broken)
        return;
    conn->broken = true;
    pgev_error_from_conn(&conn->broken_error, PGEV_ECONNLOST, conn->pg, fallback);
}

bool
pgev_flush(pgev_conn *conn)
{
    if (conn->shared_open && !pgev_close_shared_segment(conn))
        return false;
    int rc = PQflush(conn->pg);
    conn->flush_needed = false;
    if (rc < 0) {
        pgev_mark_broken(conn, "could not send data to the server");
        return false;
    }
    conn->want_write = rc == 1;
    if (!conn->want_write)
        conn->unflushed_bytes = 0;
    if (!conn->want_write && pgev_copy_running(conn))
        pgev_copy_drained(conn);    /* a COPY writer told to wait may go on */
    return true;
}

static int
pipeline_sync(PGconn *pg)
{
#ifdef HAVE_PQSENDPIPELINESYNC
    return PQsendPipelineSync(pg);   /* no flush: pgev flushes once per burst */
#else
    return PQpipelineSync(pg);       /* libpq < 17 flushes here */
#endif
}

/* Rough size of what the node adds to libpq's output buffer. */
static size_t
wire_estimate(const pgev_node *node)
{
    size_t n = 32 + (size_t)node->nparams * 8;
    if (node->kind == PGEV_NODE_QUERY && node->sql)
        n += strlen(node->sql);
    else if (node->kind == PGEV_NODE_PREPARE && node->stmt_sql)
        n += strlen(node->stmt_sql);
    if (node->param_lengths && node->param_formats) {
        for (int i = 0; i < node->nparams; i++)
            if (node->param_formats[i] == 1)
                n += (size_t)node->param_lengths[i];
    }
    return n;
}

static bool send_node(pgev_conn *conn, pgev_node *node);

/*
 * Ends the open shared segment (read-only queries sent without a Sync of
 * their own) with a Sync marker. Called before anything else is sent and
 * before every flush, so a shared segment never waits for more company.
 */
bool
pgev_close_shared_segment(pgev_conn *conn)
{
    if (!conn->shared_open)
        return true;
    conn->shared_open = false;
    conn->shared_count = 0;
    pgev_node *sync = pgev_node_alloc(conn);
    if (!sync) {
        pgev_mark_broken(conn, "out of memory (pipeline Sync)");
        return false;
    }
    sync->kind = PGEV_NODE_SYNC;
    return send_node(conn, sync);
}

/*
 * Hands one node to libpq and appends it to the in-flight FIFO (also on
 * failure: it was accepted, so it completes with the connection's fate).
 */
static bool
send_node(pgev_conn *conn, pgev_node *node)
{
    if (conn->shared_open && !node->shared && !pgev_close_shared_segment(conn)) {
        /* Broken: the node still completes with the connection's fate. */
        node->sent = true;
        pgev_fifo_push(&conn->inflight, node);
        return false;
    }
    if (node->kind == PGEV_NODE_COPY)
        return pgev_copy_send(conn, node);
    int ok;
    bool parse = false;
    switch (node->kind) {
    case PGEV_NODE_QUERY:
        /* A query sent again because its cached statement was lost goes
         * unnamed: it then reports the server's own error, if any. */
        if (node->cacheable && !node->cache_retried && conn->stmts.capacity > 0 &&
            pgev_stmt_prepare_for_send(conn, node, &parse)) {
            /* Parse once under pgev's name, then execute by it (stmtcache.c). */
            ok = (!parse || PQsendPrepare(conn->pg, node->stmt_name, node->sql, node->nparams,
                                          node->param_types)) &&
                 PQsendQueryPrepared(conn->pg, node->stmt_name, node->nparams, node->param_values,
                                     node->param_lengths, node->param_formats, node->result_format);
            node->prepare_pending = parse;
        } else {
            node->stmt_name[0] = '\0';
            ok = PQsendQueryParams(conn->pg, node->sql, node->nparams, node->param_types,
                                   node->param_values, node->param_lengths, node->param_formats,
                                   node->result_format);
        }
        break;
    case PGEV_NODE_PREPARE:
        ok = PQsendPrepare(conn->pg, node->sql, node->stmt_sql, node->nparams, node->param_types);
        break;
    case PGEV_NODE_EXECUTE:
        ok = PQsendQueryPrepared(conn->pg, node->sql, node->nparams, node->param_values,
                                 node->param_lengths, node->param_formats, node->result_format);
        break;
    case PGEV_NODE_SYNC:
        ok = pipeline_sync(conn->pg);
        break;
    case PGEV_NODE_CLOSE: {
#ifdef HAVE_PQCLOSEPREPARED
        ok = PQsendClosePrepared(conn->pg, node->stmt_name);
#else
        char sql[sizeof("DEALLOCATE \"\"") + PGEV_STMT_NAME_MAX];
        snprintf(sql, sizeof(sql), "DEALLOCATE \"%s\"", node->stmt_name);
        ok = PQsendQueryParams(conn->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
#endif
        break;
    }
    default:
        ok = 0;
        break;
    }
    conn->unflushed_bytes += wire_estimate(node);
    conn->flush_needed = true;
    if (ok && node->sync_after)
        ok = pipeline_sync(conn->pg);
    if (node->shared) {
        conn->shared_open = true;
        conn->shared_count++;
    }
#ifndef HAVE_PQSENDPIPELINESYNC
    /* libpq < 17 flushed inside PQpipelineSync: learn whether it left
     * bytes behind (no syscall when it did not), so that pgev stops feeding
     * a full socket instead of making libpq retry send() on every call. */
    if (ok && (node->sync_after || node->kind == PGEV_NODE_SYNC)) {
        conn->unflushed_bytes = 0;
        conn->flush_needed = false;
        int rc = PQflush(conn->pg);
        if (rc < 0)
            ok = 0;
        else
            conn->want_write = rc == 1;
    }
#endif

    /* The arrays were borrowed, or are copies libpq no longer needs
     * (unless the query may have to be sent again). */
    if (!node->keep_payload) {
        free(node->payload);
        node->payload = NULL;
        node->sql = node->stmt_sql = NULL;
        node->param_types = NULL;
        node->param_values = NULL;
        node->param_lengths = NULL;
        node->param_formats = NULL;
    }
    node->sent = true;
    pgev_fifo_push(&conn->inflight, node);
    if (conn->inflight.head == node)
        pgev_stream_head(conn);

    if (!ok) {
        pgev_mark_broken(conn, "libpq could not queue the query");
        return false;
    }
    if (conn->shared_open && conn->shared_count >= SHARED_SEGMENT_MAX && !pgev_close_shared_segment(conn))
        return false;
    if (!conn->want_write && conn->unflushed_bytes >= FLUSH_THRESHOLD)
        return pgev_flush(conn);
    return true;
}

static bool
can_send(const pgev_conn *conn, const pgev_node *node)
{
    if (!conn->connected || conn->broken || conn->want_write || conn->free_requested)
        return false;
    if (conn->state != PGEV_CONN_READY && conn->state != PGEV_CONN_CLOSING)
        return false;
    /* libpq 15 mis-counts results when a query is queued while it is
     * discarding an aborted segment (it can take the next Sync for the
     * last aborted query): wait for that segment's Sync first. */
    if (PQpipelineStatus(conn->pg) == PQ_PIPELINE_ABORTED)
        return false;
    /* A COPY runs alone, outside pipeline mode, once everything before it
     * has completed (copy.c). */
    if (pgev_copy_running(conn) || node->gated)
        return false;
    /* A cancel request still on its way whose target has already ended
     * would hit whatever the backend runs next: nothing more is sent until
     * the postmaster has passed it on (the backend, then idle or busy with
     * what was already sent, takes it there). */
    if (conn->stray_cancel && conn->cancel_jobs)
        return false;
    if (node->kind == PGEV_NODE_COPY)
        return !conn->inflight.head && !conn->expect_sync && !conn->shared_open;
    return !pgev_node_counts(node) || conn->inflight.count < conn->max_inflight;
}

bool
pgev_send_internal(pgev_conn *conn, pgev_node *node)
{
    return send_node(conn, node);
}

void
pgev_send_pending(pgev_conn *conn)
{
    pgev_node *node;
    while ((node = conn->pending.head) != NULL && can_send(conn, node)) {
        pgev_fifo_pop(&conn->pending);
        if (!send_node(conn, node))
            return;
    }
}

static size_t
align_up(size_t n)
{
    return (n + sizeof(void *) - 1) / sizeof(void *) * sizeof(void *);
}

int
pgev_args_pack(const pgev_query_args *in, pgev_query_args *out, char *inline_buf,
               size_t inline_size, char **heap)
{
    int n = in->nparams > 0 ? in->nparams : 0;
    size_t sql_len = in->sql ? strlen(in->sql) + 1 : 0;
    size_t stmt_len = in->stmt ? strlen(in->stmt) + 1 : 0;
    /* The arrays first, each aligned, then the bytes. */
    size_t off_types = align_up(in->param_values ? (size_t)n * sizeof(char *) : 0);
    size_t off_lengths = off_types + align_up(in->param_types ? (size_t)n * sizeof(Oid) : 0);
    size_t off_formats = off_lengths + align_up(in->param_lengths ? (size_t)n * sizeof(int) : 0);
    size_t off_bytes = off_formats + (in->param_formats ? (size_t)n * sizeof(int) : 0);
    size_t size = off_bytes + sql_len + stmt_len;
    size_t lens[PGEV_INLINE_PAYLOAD / sizeof(char *)];   /* the first values' lengths */
    size_t nlens = sizeof(lens) / sizeof(lens[0]);
    for (int i = 0; in->param_values && i < n; i++) {
        const char *v = in->param_values[i];
        bool binary = in->param_formats && in->param_formats[i] == 1;
        size_t len = !v ? 0 : binary ? (size_t)in->param_lengths[i] : strlen(v) + 1;
        if ((size_t)i < nlens)
            lens[i] = len;
        size += len;
    }

    char *buf = inline_buf;
    *heap = NULL;
    if (size > inline_size) {
        buf = malloc(size);
        if (!buf)
            return PGEV_ENOMEM;
        *heap = buf;
    }
    *out = *in;
    char *bytes = buf + off_bytes;
    if (in->sql) {
        memcpy(bytes, in->sql, sql_len);
        out->sql = bytes;
        bytes += sql_len;
    }
    if (in->stmt) {
        memcpy(bytes, in->stmt, stmt_len);
        out->stmt = bytes;
        bytes += stmt_len;
    }
    if (!n) {
        out->param_types = NULL;
        out->param_values = NULL;
        out->param_lengths = NULL;
        out->param_formats = NULL;
        return PGEV_OK;
    }
    const char **values = (const char **)(void *)buf;
    for (int i = 0; in->param_values && i < n; i++) {
        const char *v = in->param_values[i];
        if (!v) {
            values[i] = NULL;
            continue;
        }
        bool binary = in->param_formats && in->param_formats[i] == 1;
        size_t len = (size_t)i < nlens ? lens[i] : binary ? (size_t)in->param_lengths[i] : strlen(v) + 1;
        memcpy(bytes, v, len);
        values[i] = bytes;
        bytes += len;
    }
    if (in->param_values)
        out->param_values = values;
    if (in->param_types) {
        memcpy(buf + off_types, in->param_types, (size_t)n * sizeof(Oid));
        out->param_types = (const Oid *)(void *)(buf + off_types);
    }
    if (in->param_lengths) {
        memcpy(buf + off_lengths, in->param_lengths, (size_t)n * sizeof(int));
        out->param_lengths = (const int *)(void *)(buf + off_lengths);
    }
    if (in->param_formats) {
        memcpy(buf + off_formats, in->param_formats, (size_t)n * sizeof(int));
        out->param_formats = (const int *)(void *)(buf + off_formats);
    }
    return PGEV_OK;
}

/* Gives the node its own copy of what it borrows: in the node itself when
 * small, else in one allocation (`payload`) owned by the node. */
static int
copy_payload(pgev_node *node)
{
    pgev_query_args in = {
        .sql = node->sql,
        .stmt = node->stmt_sql,
        .nparams = node->nparams,
        .param_types = node->param_types,
        .param_values = node->param_values,
        .param_lengths = node->param_lengths,
        .param_formats = node->param_formats,
    }, out;
    if (pgev_args_pack(&in, &out, node->inline_payload, sizeof(node->inline_payload),
                       &node->payload) != PGEV_OK)
        return PGEV_ENOMEM;
    node->sql = out.sql;
    node->stmt_sql = out.stmt;
    node->param_types = out.param_types;
    node->param_values = out.param_values;
    node->param_lengths = out.param_lengths;
    node->param_formats = out.param_formats;
    return PGEV_OK;
}

/*
 * Whether the SQL text is a COPY statement: pipeline mode cannot carry
 * COPY FROM STDIN (the server would read the queries pipelined behind it
 * as COPY data and end the session), so such text is refused at submit.
 * Leading white space and comments are skipped.
 */
bool
pgev_is_copy_statement(const char *sql)
{
    const char *p = sql;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '(')
            p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            if (!end)
                return false;
            p = end + 2;
        } else {
            break;
        }
    }
    static const char word[] = "copy";
    for (size_t i = 0; i < sizeof(word) - 1; i++)
        if ((p[i] | 0x20) != word[i])
            return false;
    char next = p[sizeof(word) - 1];
    return !((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') ||
             (next >= '0' && next <= '9') || next == '_' || next == '$');
}

/* Why a connection refuses new work, or NULL when it accepts it. */
static const char *
refusal(const pgev_conn *conn)
{
    if (conn->free_requested)
        return "connection is being freed";
    switch (conn->state) {
    case PGEV_CONN_CONNECTING:
    case PGEV_CONN_READY:
        return conn->broken ? "connection is broken" : NULL;
    case PGEV_CONN_CLOSING:
        return "connection is closing: no new queries";
    case PGEV_CONN_CLOSED:
        return "connection is closed";
    case PGEV_CONN_FAILED:
    default:
        return "connection has failed";
    }
}

/* Sends the node now, holds it for its transaction or queues it, as the
 * caller decided. The node is accepted either way. */
static void
place(pgev_conn *conn, pgev_node *node, bool held, bool send_now)
{
    if (held) {
        pgev_fifo_push(&conn->held, node);  /* sent once the transaction ends (txn.c) */
    } else if (send_now) {
        send_node(conn, node);
    } else {
        pgev_fifo_push(&conn->pending, node);
    }
    /* Flushing and failure reports happen from the loop: never call back
     * inside a submit. In a pgev callback the running dispatch does it. */
    if (conn->dispatch_depth == 0 && (conn->flush_needed || conn->want_write || conn->broken))
        pgev_loop_defer(conn->loop);
}

/* Where a new node goes: held by a transaction, sent now (when nothing is
 * queued ahead of it and it can go), or queued. */
static void
enqueue(pgev_conn *conn, pgev_node *node)
{
    bool held = pgev_txn_holds(conn);
    place(conn, node, held, !held && !conn->pending.head && can_send(conn, node));
}

/* ---- deadlines and cancellation ---------------------------------------- */

/*
 * Ends an in-flight query early: its callback runs now with `code`, and
 * whatever the server still sends for it is dropped when it arrives. The
 * server-side cancel goes out once it is the oldest query outstanding.
 * Loop context only.
 */
/* True when `node` and every in-flight query ahead of it belong to one
 * shared segment (no Sync between them). */
static bool
in_shared_prefix(const pgev_conn *conn, const pgev_node *node)
{
    if (!node->shared)
        return false;
    for (const pgev_node *cur = conn->inflight.head; cur; cur = cur->next) {
        if (cur == node)
            return true;
        if (!cur->shared || cur->kind == PGEV_NODE_SYNC)
            return false;
    }
    return false;
}

void
pgev_node_abandon(pgev_conn *conn, pgev_node *node, int code, const char *msg)
{
    node->finished = true;
    node->abandon_code = 0;
    pgev_timer_free(node->deadline);
    node->deadline = NULL;
    PQclear(node->result);
    PQclear(node->error_result);
    node->result = node->error_result = NULL;
    pgev_error err;
    pgev_error_set(&err, code, "%s", msg);
    if (pgev_node_in_batch(node))
        pgev_segment_failure(conn, code, &err);
    pgev_result res = { .status = code, .query_id = node->id, .rows = node->rows, .error = &err };
    if (node->on_done)
        node->on_done(conn, &res, node->arg);
    if (node->kind == PGEV_NODE_COPY) {
        if (!conn->free_requested)
            pgev_copy_abandoned(conn, node, msg);
        return;
    }
    /* At the head of the pipeline its result may already be here, in
     * which case no cancel is needed (it would only hit the next query).
     * Otherwise pgev_read_results() decides once it reaches the head.
     * Inside a shared segment the server sends nothing before the
     * segment's Sync, so the head may never move while the target runs.
     * A query whose deadline passed there is cancelled now: the segment
     * has been running for that long. If the cancel lands on an earlier
     * query of the segment (all read-only), that one runs again
     * (dispatch.c). An application's cancel waits for the head, as
     * cancelling queries that are about to finish anyway would only
     * send stray cancels after them. */
    bool may_cancel = conn->inflight.head == node || (code == PGEV_ETIMEOUT && in_shared_prefix(conn, node));
    if (conn->free_requested || conn->expect_sync || node->cancel_sent || !conn->pg || !may_cancel)
        return;
    /* Reading here may take in the last of what the server sent, which no
     * socket event would announce again: the read loop must come back. */
    bool input_ok = PQconsumeInput(conn->pg);
    conn->more_results = true;
    pgev_loop_defer(conn->loop);
    if (input_ok && PQisBusy(conn->pg))
        pgev_cancel_running(conn, node);
}

void
pgev_node_resend(pgev_conn *conn, pgev_node *node)
{
    PQclear(node->result);
    PQclear(node->error_result);
    PQclear(node->chunk_tag);
    node->result = node->error_result = node->chunk_tag = NULL;
    node->status = PGEV_OK;
    node->sent = false;
    node->row_mode_set = false;
    node->collateral = false;
    node->cancel_sent = false;
    node->prepare_pending = false;
    node->stmt_name[0] = '\0';
    pgev_fifo_push(&conn->resend, node);
}

void
pgev_resend_splice(pgev_conn *conn)
{
    if (!conn->resend.head)
        return;
    conn->resend.tail->next = conn->pending.head;
    if (!conn->pending.head)
        conn->pending.tail = conn->resend.tail;
    conn->pending.head = conn->resend.head;
    conn->pending.count += conn->resend.count;
    conn->resend.head = conn->resend.tail = NULL;
    conn->resend.count = 0;
}

bool
pgev_node_ungate(pgev_conn *conn, int64_t query_id, const char *sql)
{
    for (pgev_node *node = conn->pending.head; node; node = node->next) {
        if (node->id != query_id || !node->gated)
            continue;
        node->gated = false;
        node->sql = sql;
        pgev_loop_defer(conn->loop);    /* the pump sends it and what waited behind it */
        return true;
    }
    return false;
}

bool
pgev_unsent_remove(pgev_conn *conn, pgev_node *node)
{
    return pgev_fifo_remove(&conn->pending, node) || pgev_fifo_remove(&conn->resend, node);
}

void
pgev_stray_cancel_check(pgev_conn *conn)
{
    if (conn->stray_cancel && !conn->cancel_jobs && !conn->inflight.head && !conn->expect_sync)
        conn->stray_cancel = false;
}

static int64_t
monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* First re-send of a cancel request; doubles after each. */
#define CANCEL_RETRY_MS 100

void
pgev_cancel_running(pgev_conn *conn, pgev_node *node)
{
    node->cancel_sent = true;
    conn->cancel_target = node;
    /* Rows already came back: the backend is running the query, so the
     * request cannot miss it. Repeating it could then only hit whatever
     * runs next, once the target's error is on its way behind the rows
     * still buffered (see pgev_cancel_tick). */
    conn->cancel_target_running = node->rows > 0;
    conn->cancel_started_ms = monotonic_ms();
    conn->cancel_retry_ms = CANCEL_RETRY_MS;
    /* The query must be on its way before the cancel is: a cancel that
     * reaches a backend still waiting for the query is ignored. */
    if (conn->flush_needed && !conn->want_write)
        (void)pgev_flush(conn);
    /* If the session does not come back within the grace period, the
     * connection is closed (loop timer, see pgev_cancel_tick). */
    pgev_loop_timer(conn->loop, conn->cancel_retry_ms < conn->cancel_grace_ms ? conn->cancel_retry_ms
                                                                           : conn->cancel_grace_ms);
    (void)pgev_cancel_request(conn);
}

/*
 * The cancel timer: a cancel can still miss its target (it reached the
 * backend before the query did, or the request failed), so while the
 * target runs the request is made again, at growing intervals, until the
 * grace period ends; then the connection is closed. Returns false then.
 */
bool
pgev_cancel_tick(pgev_conn *conn)
{
    int64_t elapsed = monotonic_ms() - conn->cancel_started_ms;
    if (elapsed >= conn->cancel_grace_ms)
        return false;
    if (!conn->cancel_jobs && !conn->cancel_target_running)
        (void)pgev_cancel_request(conn);
    conn->cancel_retry_ms *= 2;
    int64_t left = conn->cancel_grace_ms - elapsed;
    pgev_loop_timer(conn->loop, (int)(conn->cancel_retry_ms < left ? conn->cancel_retry_ms : left));
    return true;
}

static void
on_deadline(pgev_conn *conn, void *arg)
{
    pgev_node *node = arg;
    pgev_conn_enter_dispatch(conn);
    char msg[96];
    if (!node->sent) {
        snprintf(msg, sizeof(msg), "query timed out after %d ms, before it was sent", node->timeout_ms);
        if (!pgev_unsent_remove(conn, node))
            pgev_fifo_remove(&conn->held, node);
        pgev_error err;
        pgev_error_set(&err, PGEV_ETIMEOUT, "%s", msg);
        pgev_node_complete_error(conn, node, PGEV_ETIMEOUT, &err);
    } else if (!node->finished) {
        snprintf(msg, sizeof(msg), "query timed out after %d ms; cancelled on the server", node->timeout_ms);
        pgev_node_abandon(conn, node, PGEV_ETIMEOUT, msg);
    }
    pgev_conn_pump(conn);
    pgev_conn_leave_dispatch(conn);
}

void
pgev_complete_doomed(pgev_conn *conn)
{
    pgev_node *node;
    while (!conn->free_requested && (node = pgev_fifo_pop(&conn->doomed)) != NULL) {
        pgev_error err;
        pgev_error_set(&err, PGEV_ECANCELLED, "cancelled by the application before it was sent");
        pgev_node_complete_error(conn, node, PGEV_ECANCELLED, &err);
    }
}

void
pgev_abandon_requested(pgev_conn *conn)
{
    conn->abandon_requested = false;
    for (pgev_node *node = conn->inflight.head; node && !conn->free_requested; ) {
        pgev_node *next = node->next;   /* node stays in the FIFO */
        if (node->abandon_code && !node->finished)
            pgev_node_abandon(conn, node, node->abandon_code, "cancelled by the application");
        node = next;
    }
}

int
pgev_conn_cancel(pgev_conn *conn, int64_t query_id)
{
    if (!conn)
        return PGEV_EINVAL;
    if (query_id <= 0 || conn->free_requested)
        return 1;
    pgev_fifo *unsent[2] = { &conn->pending, &conn->resend };
    for (int i = 0; i < 2; i++) {
        for (pgev_node *node = unsent[i]->head; node; node = node->next) {
            if (node->id != query_id || node->kind == PGEV_NODE_SYNC)
                continue;
            pgev_fifo_remove(unsent[i], node);
            pgev_timer_free(node->deadline);
            node->deadline = NULL;
            pgev_fifo_push(&conn->doomed, node);
            pgev_loop_defer(conn->loop);
            return PGEV_OK;
        }
    }
    if (pgev_txn_cancel_held(conn, query_id))
        return PGEV_OK;
    for (pgev_node *node = conn->inflight.head; node; node = node->next) {
        if (node->id != query_id || node->kind == PGEV_NODE_SYNC)
            continue;
        if (node->finished || node->abandon_code)
            return 1;
        node->abandon_code = PGEV_ECANCELLED;
        conn->abandon_requested = true;
        pgev_loop_defer(conn->loop);
        return PGEV_OK;
    }
    return 1;
}

int64_t
pgev_submit_node(pgev_conn *conn, enum pgev_node_kind kind, const pgev_query_args *args,
                 pgev_copy *copy, bool args_stable)
{
    const char *why = refusal(conn);
    /* An open transaction may still be used and ended while closing. */
    if (why && !(conn->txn_submitting && conn->state == PGEV_CONN_CLOSING && !conn->free_requested &&
                 !conn->broken)) {
        pgev_conn_refuse(conn, "%s", why);
        return PGEV_ECLOSED;
    }
    if (args->nparams < 0 || args->nparams > PGEV_MAX_PARAMS) {
        pgev_conn_refuse(conn, "query has %d parameters; the protocol allows 0 to %d", args->nparams,
                         PGEV_MAX_PARAMS);
        return PGEV_EINVAL;
    }
    if (args->nparams > 0 && args->param_formats) {
        for (int i = 0; i < args->nparams; i++) {
            if (args->param_formats[i] == 1 && args->param_values && args->param_values[i] &&
                (!args->param_lengths || args->param_lengths[i] < 0)) {
                pgev_conn_refuse(conn, "binary parameter $%d needs a length (param_lengths)", i + 1);
                return PGEV_EINVAL;
            }
        }
    }
    if (kind != PGEV_NODE_EXECUTE && kind != PGEV_NODE_COPY && args->sql &&
        pgev_is_copy_statement(args->sql)) {
        pgev_conn_refuse(conn, "COPY cannot run as a pipelined query: use pgev_conn_copy_in() "
                               "(FROM STDIN) or pgev_conn_copy_out() (TO STDOUT)");
        return PGEV_EINVAL;
    }
    if (conn->pending.count + conn->held.count >= conn->max_pending &&
        conn->txn_submitting != PGEV_TXN_SUBMIT_END) {
        pgev_conn_refuse(conn, "pending queue is full (max_pending %d): wait for queries to complete",
                         conn->max_pending);
        return PGEV_EQUEUEFULL;
    }
    pgev_node *node = pgev_node_alloc(conn);
    if (!node) {
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    node->kind = kind;
    node->id = ++conn->next_id;
    node->flags = args->flags;
    node->sync_after = !conn->in_batch || conn->txn_submitting;
    node->on_rows = args->on_rows;
    node->on_done = args->on_done;
    node->arg = args->arg;
    node->chunk_rows = args->stream_chunk_rows;
    node->sql = kind == PGEV_NODE_QUERY || kind == PGEV_NODE_COPY ? args->sql : args->stmt;
    node->stmt_sql = kind == PGEV_NODE_PREPARE ? args->sql : NULL;
    node->nparams = args->nparams;
    node->param_types = args->param_types;
    node->param_values = args->nparams ? args->param_values : NULL;
    node->param_lengths = args->nparams ? args->param_lengths : NULL;
    node->param_formats = args->nparams ? args->param_formats : NULL;
    node->result_format = (args->flags & PGEV_QUERY_BINARY) ? 1 : 0;
    node->gated = conn->submit_gated;
    if (!node->nparams)
        node->param_types = NULL;
    node->timeout_ms = args->timeout_ms > 0 ? args->timeout_ms
                     : args->timeout_ms == 0 ? conn->query_timeout_ms : 0;
    if (node->timeout_ms > 0) {
        node->deadline = pgev_timer_new(conn->loop, on_deadline, node);
        if (!node->deadline || pgev_timer_start(node->deadline, node->timeout_ms) != 0) {
            pgev_node_release(conn, node);
            conn->next_id--;
            pgev_conn_refuse(conn, "out of memory (query deadline timer)");
            return PGEV_ENOMEM;
        }
    }

    /* A read-only query may be sent again (see pgev_node_resend), so it
     * keeps its own copy of what it sends for as long as it is in flight. */
    bool readonly = (args->flags & PGEV_QUERY_READONLY) && kind != PGEV_NODE_PREPARE;
    /* A plain query the statement cache may prepare keeps it too: it is
     * sent again once if the server lost or invalidated the statement. */
    node->cacheable = kind == PGEV_NODE_QUERY && conn->stmts.capacity > 0 &&
                      !(args->flags & PGEV_QUERY_NOCACHE);
    node->in_txn = conn->txn_submitting != PGEV_TXN_SUBMIT_NONE;
    node->keep_payload = readonly || node->cacheable;
    /* Isolated read-only queries share Sync segments: one Sync (and, on
     * libpq < 17, one send()) per burst instead of per query. A failure
     * aborts the rest of its segment; those queries never ran and are
     * sent again (dispatch.c), so each caller sees the outcome an
     * isolated query would have had. */
    node->shared = readonly && node->sync_after && !conn->in_batch && !conn->txn_submitting;
    if (node->shared)
        node->sync_after = false;
    /* Sent during this call, it borrows the caller's arrays; otherwise it
     * needs its own copy (unless they are stable: the pool's). */
    bool held = pgev_txn_holds(conn);
    bool send_now = !held && !conn->pending.head && can_send(conn, node);
    if (!args_stable && (node->keep_payload || !send_now)) {
        if (copy_payload(node) != PGEV_OK) {
            pgev_node_release(conn, node);
            conn->next_id--;
            pgev_conn_refuse(conn, "out of memory");
            return PGEV_ENOMEM;
        }
    }
    node->copy = copy;
    place(conn, node, held, send_now);
    return node->id;
}

static int64_t
submit_node(pgev_conn *conn, enum pgev_node_kind kind, const pgev_query_args *args)
{
    return pgev_submit_node(conn, kind, args, NULL, false);
}

int64_t
pgev_conn_submit_stable(pgev_conn *conn, const pgev_query_args *args)
{
    return pgev_submit_node(conn, args->sql ? PGEV_NODE_QUERY : PGEV_NODE_EXECUTE, args, NULL, true);
}

int64_t
pgev_conn_submit(pgev_conn *conn, const pgev_query_args *args)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!args) {
        pgev_conn_refuse(conn, "query arguments are NULL");
        return PGEV_EINVAL;
    }
    if ((args->sql == NULL) == (args->stmt == NULL)) {
        pgev_conn_refuse(conn, "set exactly one of sql (a query) and stmt (a prepared statement)");
        return PGEV_EINVAL;
    }
    return submit_node(conn, args->sql ? PGEV_NODE_QUERY : PGEV_NODE_EXECUTE, args);
}

int64_t
pgev_conn_query(pgev_conn *conn, const char *sql, pgev_result_cb on_done, void *arg)
{
    return pgev_conn_query_params(conn, sql, 0, NULL, on_done, arg);
}

int64_t
pgev_conn_query_params(pgev_conn *conn, const char *sql, int nparams, const char *const *values,
                       pgev_result_cb on_done, void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!sql) {
        pgev_conn_refuse(conn, "sql is NULL");
        return PGEV_EINVAL;
    }
    pgev_query_args args = {
        .sql = sql, .nparams = nparams, .param_values = values, .on_done = on_done, .arg = arg,
    };
    return submit_node(conn, PGEV_NODE_QUERY, &args);
}

int64_t
pgev_conn_prepare(pgev_conn *conn, const char *name, const char *sql, int nparams, const Oid *types,
                  pgev_result_cb on_done, void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!name || !sql) {
        pgev_conn_refuse(conn, "%s is NULL", name ? "sql" : "statement name");
        return PGEV_EINVAL;
    }
    pgev_query_args args = {
        .sql = sql, .stmt = name, .nparams = nparams, .param_types = types,
        .on_done = on_done, .arg = arg,
    };
    return submit_node(conn, PGEV_NODE_PREPARE, &args);
}

int64_t
pgev_conn_execute(pgev_conn *conn, const char *name, int nparams, const char *const *values,
                  pgev_result_cb on_done, void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!name) {
        pgev_conn_refuse(conn, "statement name is NULL");
        return PGEV_EINVAL;
    }
    pgev_query_args args = {
        .stmt = name, .nparams = nparams, .param_values = values, .on_done = on_done, .arg = arg,
    };
    return submit_node(conn, PGEV_NODE_EXECUTE, &args);
}

int
pgev_conn_batch_begin(pgev_conn *conn)
{
    if (!conn)
        return PGEV_EINVAL;
    const char *why = refusal(conn);
    if (why) {
        pgev_conn_refuse(conn, "%s", why);
        return PGEV_ECLOSED;
    }
    if (conn->in_batch) {
        pgev_conn_refuse(conn, "an atomic batch is already open on this connection");
        return PGEV_EBATCH;
    }
    conn->in_batch = true;
    return PGEV_OK;
}

int
pgev_conn_batch_end(pgev_conn *conn, pgev_result_cb on_done, void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!conn->in_batch) {
        pgev_conn_refuse(conn, "no atomic batch is open on this connection");
        return PGEV_EBATCH;
    }
    /* The Sync is not subject to max_pending: refusing it would leave the
     * batch's queries waiting forever. */
    pgev_node *node = pgev_node_alloc(conn);
    if (!node) {
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    node->kind = PGEV_NODE_SYNC;
    node->id = 0;   /* not a query: ids stay dense for the application */
    node->on_done = on_done;
    node->arg = arg;
    conn->in_batch = false;
    enqueue(conn, node);
    return PGEV_OK;
}
