/*
 * The receive side of the pipeline: results from libpq are matched to the
 * node at the head of the in-flight FIFO and handed to its callbacks.
 *
 * For each query libpq returns its results, then NULL; after a Sync it
 * returns one PGRES_PIPELINE_SYNC. Queries after a failure, up to the next
 * Sync, come back as PGRES_PIPELINE_ABORTED.
 */
#include "pgev-internal.h"

#include <string.h>
#include <stdio.h>
#include <stdlib.h>

/* A COPY reaching pipeline mode anyway (submit refuses COPY text): it is
 * refused and the connection carries on. */
#define COPY_REFUSED "COPY cannot run as a pipelined query: use pgev_conn_copy_in() or pgev_conn_copy_out()"

/* Results handled in one go before yielding to the loop, so that one busy
 * connection (a long stream, a deep pipeline) cannot starve the others. */
#define RESULTS_PER_TURN 1024

/* Rows per chunk when libpq has chunked-rows mode (17+). */
#define STREAM_CHUNK_ROWS 256

static void
lost(pgev_conn *conn, const pgev_error *why)
{
    pgev_conn_fail(conn, PGEV_ECONNLOST, why);
}

static void
lost_from_conn(pgev_conn *conn)
{
    pgev_error err;
    pgev_error_from_conn(&err, PGEV_ECONNLOST, conn->pg, "connection lost");
    lost(conn, &err);
}

/* Streaming: single-row mode, or chunks when the query asked for them
 * (stream_chunk_rows > 1) and libpq has them (17+). libpq hands a chunk
 * over only when it is full or the result ends, so a slow producer's rows
 * would wait: single rows stay the default. libpq accepts either mode
 * only for its current query and before it has parsed any of that query's
 * results, and every PQconsumeInput() parses: so it is chosen as soon as
 * the query becomes current, when it is sent to an idle pipeline or when
 * what preceded it has been read (and never after a yield in between).
 * It fails harmlessly for a query of an aborted segment, which has no
 * rows anyway. */
void
pgev_stream_head(pgev_conn *conn)
{
    pgev_node *node = conn->inflight.head;
    if (!node || conn->expect_sync || !node->on_rows || node->row_mode_set || node->prepare_pending ||
        (node->kind != PGEV_NODE_QUERY && node->kind != PGEV_NODE_EXECUTE))
        return;
    node->row_mode_set = true;
#ifdef HAVE_PQSETCHUNKEDROWSMODE
    if (node->chunk_rows > 1) {
        (void)PQsetChunkedRowsMode(conn->pg, node->chunk_rows);
        return;
    }
#endif
    (void)PQsetSingleRowMode(conn->pg);
}

/* Severity FATAL or PANIC: the server ends the session after this error. */
static bool
is_fatal(const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    return sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

void
pgev_node_keep_error(pgev_node *node, PGresult *res)
{
    if (node->status == PGEV_OK) {
        node->status = PGEV_ESERVER;
        PQclear(node->error_result);
        node->error_result = res;
    } else {
        PQclear(res);
    }
}

/* The first failure inside an atomic batch is what the batch reports. */
void
pgev_segment_failure(pgev_conn *conn, int status, const pgev_error *err)
{
    if (conn->segment_status != PGEV_OK)
        return;
    conn->segment_status = status;
    pgev_error_copy(&conn->segment_error, err);
}

static bool
is_query_canceled(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && strcmp(state, "57014") == 0;
}

void
pgev_complete_query(pgev_conn *conn, pgev_node *node)
{
    if (conn->cancel_target == node) {
        /* The cancelled query is over: the session is ours again. If it
         * ended some other way than by the cancel, the cancel is still on
         * its way and may hit whatever the backend runs next. */
        conn->cancel_target = NULL;
        pgev_loop_timer(conn->loop, -1);
        if (!is_query_canceled(node->error_result))
            conn->stray_cancel = true;
    }
    if (node->collateral && (node->flags & PGEV_QUERY_READONLY) && node->keep_payload &&
        (node->sync_after || node->shared) &&
        !node->resent && !node->finished && node->rows == 0) {
        /* Hit by a cancel meant for an earlier query: it was rolled back
         * and, being read-only, runs again as if nothing happened. */
        node->resent = true;
        if (node->sync_after)
            conn->expect_sync = true;
        pgev_node_resend(conn, node);
        return;
    }
    if (node->shared && node->status == PGEV_EABORTED && !node->finished) {
        /* An earlier query of its shared segment failed: this one never
         * ran. Isolated, it would have run: so it runs now. */
        pgev_node_resend(conn, node);
        return;
    }
    if (node->kind == PGEV_NODE_QUERY && conn->stmts.capacity > 0 && pgev_stmt_completed(conn, node))
        return;     /* its cached statement was lost or stale: sent again */
    if (node->finished) {
        /* Timed out or cancelled: its callback already ran. */
        if (node->sync_after)
            conn->expect_sync = true;
        pgev_node_release(conn, node);
        return;
    }
    pgev_error err;
    const pgev_error *errp = NULL;
    PGresult *pg = node->result;

    if (node->error_result && node->status != PGEV_OK) {
        /* The server's error (a COPY ended by the application reports it
         * as PGEV_ECANCELLED). */
        pgev_error_from_result(&err, node->status, node->error_result);
        errp = &err;
        pg = node->error_result;
    } else if (node->status == PGEV_EABORTED) {
        pgev_error_set(&err, PGEV_EABORTED,
                       "not run: an earlier query in the same atomic batch failed");
        errp = &err;
        pg = NULL;
    } else if (node->copy_refused) {
        node->status = PGEV_EINVAL;
        pgev_error_set(&err, PGEV_EINVAL, "%s", COPY_REFUSED);
        errp = &err;
        pg = NULL;
    } else if (node->status != PGEV_OK) {
        pgev_error_set(&err, node->status, "%s", pgev_strerror(node->status));
        errp = &err;
    }
    if (errp && pgev_node_in_batch(node))
        pgev_segment_failure(conn, node->status, errp);
    if (node->sync_after)
        conn->expect_sync = true;

    pgev_result res = {
        .status = node->status,
        .query_id = node->id,
        .rows = node->on_rows || node->kind == PGEV_NODE_COPY ? node->rows
              : node->result ? PQntuples(node->result) : 0,
        .pg = pg,
        .tag_source = node->result,
        .error = errp,
    };
    if (node->on_done)
        node->on_done(conn, &res, node->arg);
    /* A stolen result is the caller's now; do not clear it. */
    if (pg && !res.pg) {
        if (pg == node->result)
            node->result = NULL;
        else if (pg == node->error_result)
            node->error_result = NULL;
    }
    pgev_node_release(conn, node);
}

static void
complete_sync(pgev_conn *conn, pgev_node *node)
{
    pgev_result res = {
        .status = conn->segment_status,
        .query_id = node->id,
        .error = conn->segment_status != PGEV_OK ? &conn->segment_error : NULL,
    };
    conn->segment_status = PGEV_OK;
    if (node->on_done)
        node->on_done(conn, &res, node->arg);
    pgev_node_release(conn, node);
}

static void
deliver_rows(pgev_conn *conn, pgev_node *node, PGresult *rows)
{
    int n = PQntuples(rows);
    node->rows += n;
    pgev_result res = {
        .status = PGEV_OK,
        .query_id = node->id,
        .rows = n,
        .pg = rows,
        .tag_source = NULL,
    };
    node->on_rows(conn, &res, node->arg);
    if (res.pg)
        PQclear(rows);
}

/* Handles one result for the head query. Returns false to stop reading. */
static bool
query_result(pgev_conn *conn, pgev_node *node, PGresult *res)
{
#ifdef HAVE_PQSETCHUNKEDROWSMODE
    if (PQresultStatus(res) == PGRES_TUPLES_CHUNK && PQcmdStatus(res)[0] != '\0') {
        /* libpq 17/18 attach the command tag to a last, partly filled
         * chunk and leave the final result's tag empty: a row-less copy
         * (PQcopyResult copies the tag and, asked, the columns) stands in
         * for the final result. Without memory for it the tag stays "". */
        PQclear(node->chunk_tag);
        node->chunk_tag = PQcopyResult(res, PG_COPYRES_ATTRS);
    }
#endif
    switch (PQresultStatus(res)) {
    case PGRES_SINGLE_TUPLE:
#ifdef HAVE_PQSETCHUNKEDROWSMODE
    case PGRES_TUPLES_CHUNK:
#endif
        if (node->on_rows && node->status == PGEV_OK && !node->finished) {
            deliver_rows(conn, node, res);
            return !conn->free_requested;
        }
        PQclear(res);
        return true;
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
        if (node->chunk_tag) {
            if (PQcmdStatus(res)[0] == '\0') {
                PQclear(res);
                res = node->chunk_tag;
            } else {
                PQclear(node->chunk_tag);   /* a libpq that puts the tag where it belongs */
            }
            node->chunk_tag = NULL;
        }
        PQclear(node->result);
        node->result = res;
        return true;
    case PGRES_FATAL_ERROR:
        if (is_fatal(res) || PQstatus(conn->pg) == CONNECTION_BAD) {
            /* The session is over: this query and every other one learns
             * it as a lost connection, with the server's reason. */
            pgev_error err;
            pgev_error_from_result(&err, PGEV_ECONNLOST, res);
            pgev_error copy;
            pgev_error_copy(&copy, &err);
            PQclear(res);
            lost(conn, &copy);
            return false;
        }
        if (node->status == PGEV_OK && (conn->stray_cancel || conn->cancel_target) &&
            conn->cancel_target != node && is_query_canceled(res)) {
            /* A cancel meant for another query landed here: late, after its
             * target finished, or early, before a shared segment reached it. */
            node->collateral = true;
        }
        pgev_node_keep_error(node, res);
        return true;
    case PGRES_PIPELINE_ABORTED:
        if (node->status == PGEV_OK)
            node->status = PGEV_EABORTED;
        PQclear(res);
        return true;
    case PGRES_COPY_OUT:
        /* The statement is refused, the connection carries on: its data
         * is read and dropped, then its final result arrives as usual. */
        node->copy_refused = true;
        node->draining_copy_out = true;
        PQclear(res);
        return true;
    case PGRES_COPY_IN:
        node->copy_refused = true;
        PQclear(res);
        if (PQputCopyEnd(conn->pg, COPY_REFUSED) < 0) {
            lost_from_conn(conn);
            return false;
        }
        conn->flush_needed = true;
        return true;
    default: {
        /* Anything else pipeline mode cannot carry (COPY BOTH). */
        pgev_error err;
        pgev_error_set(&err, PGEV_ECONNLOST,
                       "unexpected result status %s in pipeline mode (COPY is not supported here)",
                       PQresStatus(PQresultStatus(res)));
        PQclear(res);
        lost(conn, &err);
        return false;
    }
    }
}

/*
 * libpq 15 can leave a pipelined connection busy for good when it runs out
 * of memory while parsing: for a Sync's ReadyForQuery it appends "out of
 * memory" to its error message and returns no result, so PQisBusy() stays
 * true with nothing more to come. The only trace is that message: when it
 * grew with such a text while libpq waits, the connection cannot go on.
 * (After an out-of-memory that libpq did report as a result, the same
 * check closes the connection at its next wait: its state is not trusted.)
 */
static bool
libpq_out_of_memory(pgev_conn *conn)
{
    const char *msg = PQerrorMessage(conn->pg);
    size_t len = strlen(msg), seen = conn->libpq_errlen;
    conn->libpq_errlen = len;
    return len > seen && strstr(msg + seen, "out of memory") != NULL;
}

void
pgev_read_results(pgev_conn *conn)
{
    int budget = RESULTS_PER_TURN;
    conn->more_results = false;
    while (!conn->free_requested && conn->state != PGEV_CONN_FAILED && conn->pg) {
        pgev_stream_head(conn);
        if (--budget < 0) {
            /* Everything already read stays parsed-or-buffered in libpq; no
             * socket event would announce it again, so come back by defer. */
            conn->more_results = true;
            pgev_loop_defer(conn->loop);
            return;
        }
        pgev_node *node = conn->inflight.head;
        if (!node && !conn->expect_sync) {
            /* Idle: parse what arrived anyway, so notices are delivered. */
            (void)PQisBusy(conn->pg);
            break;
        }
        if (node && node->kind == PGEV_NODE_COPY) {
            /* A COPY runs alone, outside pipeline mode (copy.c). */
            if (!pgev_copy_read(conn, node))
                break;
            continue;
        }
        bool want_sync = conn->expect_sync || node->kind == PGEV_NODE_SYNC;
        /* An abandoned query reached the head: unless its result is
         * already here, the server is running it (or about to), so a
         * cancel targets it and no other. */
        if (!want_sync && node->finished && !node->cancel_sent && PQisBusy(conn->pg))
            pgev_cancel_running(conn, node);
        if (!want_sync && node->draining_copy_out) {
            char *data;
            int n;
            while ((n = PQgetCopyData(conn->pg, &data, 1)) > 0)
                PQfreemem(data);
            if (n == 0)
                break;          /* more to come */
            node->draining_copy_out = false;
            if (n == -2) {
                lost_from_conn(conn);
                return;
            }
        }
        if (PQisBusy(conn->pg)) {
            if (libpq_out_of_memory(conn)) {
                pgev_error err;
                pgev_error_set(&err, PGEV_ECONNLOST, "libpq ran out of memory reading results; the connection cannot go on");
                lost(conn, &err);
                return;
            }
            break;
        }
        PGresult *res = PQgetResult(conn->pg);

        if (want_sync) {
            if (res && PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                PQclear(res);
                /* Queries of the segment to send again go first. */
                pgev_resend_splice(conn);
                if (conn->expect_sync) {
                    conn->expect_sync = false;
                } else {
                    pgev_fifo_pop(&conn->inflight);
                    complete_sync(conn, node);
                }
                continue;
            }
            if (res && PQresultStatus(res) == PGRES_FATAL_ERROR) {
                pgev_error err, copy;
                pgev_error_from_result(&err, PGEV_ECONNLOST, res);
                pgev_error_copy(&copy, &err);
                PQclear(res);
                lost(conn, &copy);
                return;
            }
            PQclear(res);
            if (PQstatus(conn->pg) == CONNECTION_BAD) {
                lost_from_conn(conn);
            } else {
                pgev_error err;
                pgev_error_set(&err, PGEV_ECONNLOST, "protocol out of step: expected a pipeline Sync");
                lost(conn, &err);
            }
            return;
        }

        if (!res && node->prepare_pending) {
            /* The Parse of a statement the cache prepared is in; the
             * execution's results follow. */
            node->prepare_pending = false;
            pgev_stmt_parsed(conn, node->stmt_name, node->status == PGEV_OK);
            pgev_stream_head(conn);
            continue;
        }
        if (!res) {
            pgev_fifo_pop(&conn->inflight);
            pgev_complete_query(conn, node);
            continue;
        }
        if (!query_result(conn, node, res))
            return;
    }
    if (conn->pg && !conn->free_requested && PQstatus(conn->pg) == CONNECTION_BAD &&
        conn->state != PGEV_CONN_FAILED)
        lost_from_conn(conn);
    pgev_stray_cancel_check(conn);
}
