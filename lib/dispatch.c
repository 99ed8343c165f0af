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
#include <time.h>

/* A COPY reaching pipeline mode anyway (submit refuses COPY text): it is
 * refused and the connection carries on. */
#define COPY_REFUSED "COPY cannot run as a pipelined query: use pgev_conn_copy_in() or pgev_conn_copy_out()"

/* Results handled in one go before yielding to the loop, so that one busy
 * connection (a long stream, a deep pipeline) cannot starve the others. */
#define RESULTS_PER_TURN 1024

/* A turn also ends after this long, so that slow callbacks delay the
 * loop's timers by one callback at most (a coarse clock: cheap to read). */
#define TURN_MS 8

static int64_t
coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
pgev_turn_over(const pgev_conn *conn)
{
    return coarse_ms() > conn->turn_end_ms;
}

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
        node->local_abort ||
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

/* A query the cancel was aimed at has ended: the session is ours again.
 * A request still on its way holds back new sends (can_send), and what
 * it can hit besides its target is marked cancel_exposed (cancel.c). */
static void
target_ended(pgev_conn *conn, pgev_node *node)
{
    if (conn->cancel_target != node)
        return;
    conn->cancel_target = NULL;
    pgev_loop_timer(conn->loop, -1);
}

/* What a Sync segment's answer says about its queries. */
typedef struct segment_outcome {
    /* The error that came where the Sync was due (its commit failed):
     * every query of the segment that had succeeded was rolled back. */
    PGresult *commit_error;
    /* An atomic batch failed (segment_status): its queries that had
     * succeeded were rolled back with it. */
    bool batch_failed;
} segment_outcome;

#define ROLLED_BACK_MSG "rolled back: another query of the same atomic batch failed (see the batch's on_done)"

/*
 * Completes one query with its final outcome: the one and only call of
 * its on_done, then the node is released. `out` (NULL outside a Sync
 * segment, e.g. for a COPY) says how the segment ended.
 */
static void
finish_query(pgev_conn *conn, pgev_node *node, const segment_outcome *out)
{
    if (node->finished) {
        /* Timed out or cancelled: its callback already ran. */
        pgev_node_release(conn, node);
        return;
    }
    pgev_error err;
    const pgev_error *errp = NULL;
    PGresult *pg = node->result;
    bool shared_pg = false;
    bool in_batch = pgev_node_in_batch(node);

    if (node->status == PGEV_OK && out && out->commit_error) {
        /* It ran, but the transaction it belonged to did not commit. */
        node->status = PGEV_ESERVER;
        pgev_error_from_result(&err, PGEV_ESERVER, out->commit_error);
        errp = &err;
        pg = out->commit_error;
        shared_pg = true;
    } else if (node->status == PGEV_OK && out && out->batch_failed && in_batch && node->cancel_code) {
        node->status = node->cancel_code;   /* ended by pgev; rolled back with its batch */
        pgev_node_abandon_error(node, node->status, &err);
        errp = &err;
        pg = NULL;
    } else if (node->status == PGEV_OK && out && out->batch_failed && in_batch) {
        node->status = PGEV_EABORTED;
        pgev_error_set(&err, PGEV_EABORTED, ROLLED_BACK_MSG);
        errp = &err;
        pg = NULL;
    } else if (node->error_result && node->status != PGEV_OK && !node->cancel_code) {
        /* The server's error (a COPY ended by the application reports it
         * as PGEV_ECANCELLED). */
        pgev_error_from_result(&err, node->status, node->error_result);
        errp = &err;
        pg = node->error_result;
    } else if (node->status == PGEV_EABORTED) {
        pgev_error_set(&err, PGEV_EABORTED, "%s", node->local_abort
                       ? "not run: its atomic batch failed or was cancelled before it was sent"
                       : "not run: an earlier query in the same atomic batch failed");
        errp = &err;
        pg = NULL;
    } else if (node->copy_refused) {
        node->status = PGEV_EINVAL;
        pgev_error_set(&err, PGEV_EINVAL, "%s", COPY_REFUSED);
        errp = &err;
        pg = NULL;
    } else if (node->status != PGEV_OK) {
        pgev_node_abandon_error(node, node->status, &err);
        errp = &err;
        pg = NULL;
    }

    pgev_result res = {
        .status = node->status,
        .query_id = node->id,
        .rows = node->on_rows || node->kind == PGEV_NODE_COPY ? node->rows
              : node->result ? PQntuples(node->result) : 0,
        .pg = pg,
        .tag_source = node->result,
        .error = errp,
        .unsent = !node->sent,
        .shared_pg = shared_pg,
    };
    pgev_node_call_done(conn, node, &res);
    /* A stolen result is the caller's now; do not clear it. */
    if (pg && !res.pg && !shared_pg) {
        if (pg == node->result)
            node->result = NULL;
        else if (pg == node->error_result)
            node->error_result = NULL;
    }
    /* The batch's on_done reports its first failure with the server's
     * whole error, not a truncated copy: keep that result until then. */
    if (in_batch && node->error_result && !conn->segment_result &&
        conn->segment_status == node->status) {
        conn->segment_result = node->error_result;
        node->error_result = NULL;
    }
    pgev_node_release(conn, node);
}

void
pgev_complete_query(pgev_conn *conn, pgev_node *node)
{
    target_ended(conn, node);
    finish_query(conn, node, NULL);
}

/*
 * A query's results are all in (libpq returned NULL). It is sent again
 * when it never took effect and may be (a read-only query hit by a stray
 * cancel, or aborted in a shared segment; a lost cached statement);
 * otherwise it waits in `awaiting` for its segment's Sync, whose answer
 * decides its outcome.
 */
static void
results_ended(pgev_conn *conn, pgev_node *node)
{
    target_ended(conn, node);
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
    if (node->sync_after)
        conn->expect_sync = true;
    if (node->finished) {
        pgev_node_release(conn, node);
        return;
    }
    if (node->cancel_code && (node->batch_breaker || (node->status == PGEV_ESERVER &&
                                                      is_query_canceled(node->error_result))))
        node->status = node->cancel_code;   /* the batch's cancel took effect */
    if (pgev_node_in_batch(node) && node->status != PGEV_OK) {
        pgev_error err;
        if (node->error_result && !node->cancel_code)
            pgev_error_from_result(&err, node->status, node->error_result);
        else
            pgev_node_abandon_error(node, node->status, &err);
        pgev_segment_failure(conn, node->status, &err);
    }
    pgev_fifo_push(&conn->awaiting, node);
}

/*
 * The answer to a Sync is in: every query of its segment (in `awaiting`)
 * completes with what the server did, in order, then the atomic batch's
 * own on_done (`sync` is the batch's or a shared segment's Sync node;
 * NULL for an isolated query's own Sync).
 */
static void
segment_end(pgev_conn *conn, pgev_node *sync)
{
    /* A batch pgev cancelled before its Sync was sent: it was rolled back. */
    int cancelled = sync ? sync->cancel_code : 0;
    segment_outcome out = {
        .commit_error = conn->commit_error,
        .batch_failed = conn->segment_status != PGEV_OK || cancelled,
    };
    conn->commit_error = NULL;
    conn->commit_error_nulls = 0;
    /* Queries of the segment to send again go first. */
    pgev_resend_splice(conn);
    pgev_node *node;
    while ((node = pgev_fifo_pop(&conn->awaiting)) != NULL)
        finish_query(conn, node, &out);
    if (sync) {
        pgev_error err;
        const pgev_error *errp = NULL;
        int status = conn->segment_status;
        if (cancelled) {
            status = cancelled;
            pgev_error_set(&err, status, "%s",
                           status == PGEV_ETIMEOUT ? "a query of the atomic batch timed out: the batch was rolled back"
                                                   : "the atomic batch was cancelled and rolled back");
            errp = &err;
        } else if (out.commit_error) {
            status = PGEV_ESERVER;
            pgev_error_from_result(&err, status, out.commit_error);
            errp = &err;
        } else if (status != PGEV_OK && conn->segment_result) {
            pgev_error_from_result(&err, status, conn->segment_result);
            errp = &err;
        } else if (status != PGEV_OK) {
            errp = &conn->segment_error;
        }
        pgev_result res = {
            .status = status,
            .query_id = sync->id,
            .pg = out.commit_error,
            .error = errp,
            .shared_pg = true,
        };
        pgev_node_call_done(conn, sync, &res);
        pgev_node_release(conn, sync);
    }
    PQclear(out.commit_error);
    PQclear(conn->segment_result);
    conn->segment_result = NULL;
    conn->segment_status = PGEV_OK;
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
        if (node->on_rows && node->status == PGEV_OK && !node->finished &&
            !(node->deadline && pgev_deadline_check(conn, node))) {
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
        if (node->status == PGEV_OK && node->cancel_exposed && conn->cancel_target != node &&
            !node->cancel_sent && is_query_canceled(res)) {
            /* A cancel meant for another query landed here: late, after its
             * target finished (the postmaster's second signal can come after
             * the first ended the target), or early, before a shared segment
             * reached it. */
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

/*
 * The result where a Sync's answer is due (`node` is the Sync node of a
 * batch or shared segment, or the head query when an isolated query's
 * Sync is expected). A commit that fails sends an error first: libpq
 * hands it back, then a NULL, then the PGRES_PIPELINE_SYNC. Returns false
 * when the connection failed.
 */
static bool
sync_result(pgev_conn *conn, pgev_node *node, PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (res && st == PGRES_PIPELINE_SYNC) {
        PQclear(res);
        if (conn->expect_sync) {
            conn->expect_sync = false;
            segment_end(conn, NULL);
        } else {
            pgev_fifo_pop(&conn->inflight);
            segment_end(conn, node);
        }
        if (conn->listeners)
            pgev_notify_deliver(conn);  /* those that followed the Sync */
        return true;
    }
    /* Only an error the server sent (it has a SQLSTATE) is a commit
     * failure; one libpq made up (out of memory) means it lost track. */
    if (res && st == PGRES_FATAL_ERROR && !conn->commit_error && !is_fatal(res) &&
        PQresultErrorField(res, PG_DIAG_SQLSTATE) && PQstatus(conn->pg) != CONNECTION_BAD) {
        conn->commit_error = res;   /* the segment's commit failed */
        return true;
    }
    if (!res && conn->commit_error && conn->commit_error_nulls++ == 0)
        return true;                /* the NULL after the commit's error */
    if (res && st == PGRES_FATAL_ERROR) {
        /* The session ended (FATAL) before the Sync's answer: the outcome
         * of the segment is unknown. */
        pgev_error err, copy;
        pgev_error_from_result(&err, PGEV_ECONNLOST, res);
        pgev_error_copy(&copy, &err);
        PQclear(res);
        lost(conn, &copy);
        return false;
    }
    PQclear(res);
    if (PQstatus(conn->pg) == CONNECTION_BAD) {
        lost_from_conn(conn);
    } else {
        pgev_error err;
        pgev_error_set(&err, PGEV_ECONNLOST, "protocol out of step: expected a pipeline Sync");
        lost(conn, &err);
    }
    return false;
}

void
pgev_read_results(pgev_conn *conn)
{
    int budget = RESULTS_PER_TURN;
    conn->turn_end_ms = coarse_ms() + TURN_MS;
    conn->more_results = false;
    while (!conn->free_requested && conn->state != PGEV_CONN_FAILED && conn->pg) {
        pgev_stream_head(conn);
        if (--budget < 0 || pgev_turn_over(conn)) {
            /* Everything already read stays parsed-or-buffered in libpq; no
             * socket event would announce it again, so come back by defer. */
            conn->more_results = true;
            pgev_loop_yield(conn->loop);
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
        if (!want_sync && node->local_abort) {
            /* Never sent: its batch had failed already. */
            pgev_fifo_pop(&conn->inflight);
            results_ended(conn, node);
            continue;
        }
        /* An abandoned query reached the head: unless its result is
         * already here, the server is running it (or about to), so a
         * cancel targets it and no other. */
        if (!want_sync && (node->finished || node->cancel_on_server) && !node->cancel_sent &&
            PQisBusy(conn->pg))
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
        /* Notifications parsed so far came before this result; before a
         * Sync's answer, though, libpq has already parsed those that
         * follow it: they go after the segment completes (sync_result). */
        if (!want_sync && conn->listeners)
            pgev_notify_deliver(conn);
        PGresult *res = PQgetResult(conn->pg);

        if (want_sync) {
            if (!sync_result(conn, node, res))
                return;
            continue;
        }

        if (!res && node->prepare_pending) {
            /* The Parse of a statement the cache prepared is in; the
             * execution's results follow. */
            node->prepare_pending = false;
            pgev_stmt_parsed(conn, node);
            pgev_stream_head(conn);
            continue;
        }
        if (!res) {
            pgev_fifo_pop(&conn->inflight);
            if (node->status == PGEV_OK && !node->result && !node->copy_refused && !node->finished) {
                /* A query never ends without a result: libpq gave up on
                 * the connection (it drops its queue of sent queries
                 * when a send fails) and nothing more will come. */
                pgev_fifo_push_front(&conn->inflight, node);
                lost_from_conn(conn);
                return;
            }
            results_ended(conn, node);
            continue;
        }
        if (!query_result(conn, node, res))
            return;
    }
    if (conn->pg && !conn->free_requested && PQstatus(conn->pg) == CONNECTION_BAD &&
        conn->state != PGEV_CONN_FAILED)
        lost_from_conn(conn);
}
