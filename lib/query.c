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

#include <assert.h>
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

/* ---- tracing ------------------------------------------------------------ */

static int64_t
monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
pgev_trace_conn(pgev_conn *conn, pgev_trace_event event, const pgev_error *err)
{
    pgev_trace t = {
        .event = event,
        .conn = conn,
        .status = err ? err->code : PGEV_OK,
        .sqlstate = err && err->sqlstate ? err->sqlstate : "",
        .message = err ? pgev_error_message(err) : NULL,
        .backend_pid = conn->backend_pid,
    };
    conn->on_trace(&t, conn->trace_arg);
}

static void
trace_query_start(pgev_conn *conn, pgev_node *node)
{
    node->trace_start_us = monotonic_us();
    pgev_trace t = {
        .event = PGEV_TRACE_QUERY_START,
        .conn = conn,
        .query_id = node->id,
        .sql = node->sql,
        .nparams = node->nparams,
        .sqlstate = "",
        .backend_pid = conn->backend_pid,
    };
    conn->on_trace(&t, conn->trace_arg);
}

static void
trace_query_end(pgev_conn *conn, const pgev_node *node, const pgev_result *res)
{
    const pgev_error *err = res->error;
    pgev_trace t = {
        .event = PGEV_TRACE_QUERY_END,
        .conn = conn,
        .query_id = node->id,
        .sql = node->sql,
        .nparams = node->nparams,
        .cache_hit = node->cache_hit,
        .duration_us = monotonic_us() - node->trace_start_us,
        .rows = res->rows,
        .status = res->status,
        .sqlstate = err && err->sqlstate ? err->sqlstate : "",
        .message = err ? pgev_error_message(err) : NULL,
        .backend_pid = conn->backend_pid,
    };
    conn->on_trace(&t, conn->trace_arg);
}

void
pgev_node_call_done(pgev_conn *conn, pgev_node *node, pgev_result *res)
{
    assert(!node->finished);
    node->finished = true;
    if (conn->on_trace && node->trace_start_us)
        trace_query_end(conn, node, res);
    if (node->on_done)
        node->on_done(conn, res, node->arg);
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
    pgev_node_call_done(conn, node, &res);
    pgev_node_release(conn, node);
}

/* Moves every node still outstanding to `failing`, in submission order
 * (results in, then in flight, then not sent), and forgets the pipeline's
 * state: nothing more will come from this session. */
static void
move_to_failing(pgev_conn *conn)
{
    pgev_fifo *queues[6] = { &conn->awaiting, &conn->inflight, &conn->resend, &conn->doomed,
                             &conn->pending, &conn->held };
    for (int i = 0; i < 6; i++) {
        pgev_node *node;
        while ((node = pgev_fifo_pop(queues[i])) != NULL)
            pgev_fifo_push(&conn->failing, node);
    }
    conn->expect_sync = false;
    PQclear(conn->commit_error);
    conn->commit_error = NULL;
    conn->commit_error_nulls = 0;
    PQclear(conn->segment_result);
    conn->segment_result = NULL;
    conn->segment_status = PGEV_OK;
    conn->segment_open_on_wire = false;
    conn->flush_requested = false;
    conn->cancel_target = NULL;
    conn->abandon_requested = false;
    conn->shared_open = false;
    conn->shared_count = 0;
}

void
pgev_fail_start(pgev_conn *conn, int code, const pgev_error *err)
{
    pgev_fail_drain(conn, -1);  /* an earlier failure's queries keep their own error */
    conn->fail_code = code;
    pgev_error_copy(&conn->fail_error, err);
    move_to_failing(conn);
}

bool
pgev_fail_drain(pgev_conn *conn, int budget)
{
    /* Each node is detached before its callback runs, so a callback that
     * frees the connection (deferred) or reads the counts sees a
     * consistent state. */
    pgev_node *node;
    while ((node = conn->failing.head) != NULL) {
        if (budget >= 0 && budget-- == 0)
            return false;
        pgev_fifo_pop(&conn->failing);
        if (node->finished)
            pgev_node_release(conn, node);  /* its callback already ran */
        else
            pgev_node_complete_error(conn, node, conn->fail_code, &conn->fail_error);
    }
    return true;
}

void
pgev_fail_all(pgev_conn *conn, int code, const pgev_error *err)
{
    pgev_fail_start(conn, code, err);
    pgev_fail_drain(conn, -1);
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
        if (conn->stmts.capacity > 0)
            pgev_stmt_sending(conn, node);     /* transaction-block state (stmtcache.c) */
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
            node->cache_hit = !parse;
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
    if (node->sync_after || node->kind == PGEV_NODE_SYNC) {
        conn->segment_open_on_wire = false;
        conn->flush_requested = false;
    } else if (pgev_node_in_batch(node)) {
        conn->segment_open_on_wire = true;
        conn->flush_requested = false;
    }
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
    if (PQpipelineStatus(conn->pg) == PQ_PIPELINE_ABORTED && node->kind != PGEV_NODE_SYNC)
        return false;
    /* A COPY runs alone, outside pipeline mode, once everything before it
     * has completed (copy.c). */
    if (pgev_copy_running(conn) || node->gated)
        return false;
    /* A cancel request still on its way may hit whatever the backend runs
     * next, even after its target ended with 57014: the postmaster signals
     * the backend and then its process group, and the second signal can
     * come after the first ended the target. Nothing more is sent until
     * the postmaster has closed the cancel connection (both signals sent):
     * the backend then takes a late signal with what is already in flight,
     * or ignores it while idle, before it can read anything new. */
    if (conn->cancel_jobs)
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

/* Whether the atomic batch whose members are on the wire without their
 * Sync has failed on the server: libpq's pipeline is aborted, and not by
 * an earlier segment (whose Sync would still be due). */
static bool
open_batch_failed(const pgev_conn *conn)
{
    if (!conn->segment_open_on_wire || conn->expect_sync ||
        PQpipelineStatus(conn->pg) != PQ_PIPELINE_ABORTED)
        return false;
    for (const pgev_node *n = conn->inflight.head; n; n = n->next)
        if (n->kind == PGEV_NODE_SYNC || n->sync_after)
            return false;
    return true;
}

/* A query that will never be sent (its batch failed or was cancelled)
 * takes its place in the in-flight FIFO, so that it completes in order
 * with its batch, at the batch's Sync. */
static void
skip_unsent(pgev_conn *conn, pgev_node *node)
{
    node->local_abort = true;
    if (node->status == PGEV_OK)
        node->status = PGEV_EABORTED;
    pgev_timer_free(node->deadline);
    node->deadline = NULL;
    pgev_fifo_push(&conn->inflight, node);
    conn->more_results = true;
    pgev_loop_defer(conn->loop);
}

void
pgev_send_pending(pgev_conn *conn)
{
    pgev_node *node;
    int batch_failed = -1;  /* open_batch_failed(), once asked */
    while ((node = conn->pending.head) != NULL) {
        if (!conn->connected || conn->broken || conn->free_requested)
            return;
        if (pgev_node_in_batch(node) && node->kind != PGEV_NODE_SYNC && !node->local_abort &&
            conn->segment_open_on_wire) {
            /* libpq 15 cannot take queries while it discards an aborted
             * segment: the rest of a failed batch is not sent at all,
             * only its Sync, which ends the aborted state. */
            if (batch_failed < 0)
                batch_failed = open_batch_failed(conn);
            if (batch_failed)
                node->local_abort = true;
        }
        if (node->local_abort) {
            pgev_fifo_pop(&conn->pending);
            skip_unsent(conn, node);
            continue;
        }
        if (!can_send(conn, node)) {
            /* The window is full inside an atomic batch whose Sync is
             * still to be sent: the server keeps results in its buffer
             * until a Sync or a Flush request, so ask for them now. */
            if (conn->segment_open_on_wire && !conn->flush_requested && !conn->want_write &&
                conn->inflight.count >= conn->max_inflight && pgev_node_counts(node)) {
                if (PQsendFlushRequest(conn->pg) != 1) {
                    pgev_mark_broken(conn, "libpq could not queue a flush request");
                    return;
                }
                conn->flush_requested = true;
                conn->flush_needed = true;
            }
            return;
        }
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

/* The server ends the session on a message longer than this (1 GiB - 1,
 * its MaxAllocSize - 1): no query that would need one is ever sent. */
#define PGEV_MESSAGE_MAX 0x3fffffff

/* The size of the largest protocol message the query needs (its Parse or
 * its Bind), near enough: the parameters or the text, and headers. */
static size_t
wire_size(const pgev_query_args *args)
{
    size_t n = args->nparams > 0 ? (size_t)args->nparams : 0;
    size_t text = (args->sql ? strlen(args->sql) : 0) + (args->stmt ? strlen(args->stmt) : 0);
    size_t params = 0;
    for (size_t i = 0; args->param_values && i < n; i++) {
        const char *v = args->param_values[i];
        if (!v)
            continue;
        bool binary = args->param_formats && args->param_formats[i] == 1;
        params += binary ? (size_t)args->param_lengths[i] : strlen(v);
    }
    size_t parse = text + 4 * n, bind = params + 10 * n + (args->stmt ? strlen(args->stmt) : 0);
    return 64 + (parse > bind ? parse : bind);
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

/* ---- atomic batches ended early ------------------------------------- */

/* Fails on purpose inside a cancelled batch whose first queries are
 * already on the wire, so that the server rolls the batch back at its
 * Sync (a plain error: no extension or procedural language needed). */
static const char BATCH_BREAKER_SQL[] = "SELECT 1/0 AS pgev_batch_cancelled";

void
pgev_node_abandon_error(const pgev_node *node, int code, pgev_error *err)
{
    if (code == PGEV_ETIMEOUT)
        pgev_error_set(err, code, "query timed out after %d ms", node->timeout_ms);
    else if (code == PGEV_ECANCELLED)
        pgev_error_set(err, code, "cancelled by the application");
    else
        pgev_error_set(err, code, "%s", pgev_strerror(code));
}

static bool
fifo_has(const pgev_fifo *q, const pgev_node *node)
{
    for (const pgev_node *n = q->head; n; n = n->next)
        if (n == node)
            return true;
    return false;
}

/* Marks the members of a batch that are not sent yet, in `q`, as never
 * to be sent: the run holding `member`, or (member NULL) the run at the
 * head of the queue. Returns the batch's Sync node when it is queued
 * right behind them. */
static pgev_node *
batch_skip_run(pgev_fifo *q, pgev_node *member, int code)
{
    pgev_node *run = NULL;
    for (pgev_node *n = q->head; n; n = n->next) {
        if (!pgev_node_in_batch(n) || n->kind == PGEV_NODE_SYNC) {
            if (!member)
                break;
            run = NULL;
            continue;
        }
        if (!run)
            run = n;
        if (!member || n == member)
            break;
    }
    if (!member && !run)
        return q->head && q->head->kind == PGEV_NODE_SYNC ? q->head : NULL;
    for (pgev_node *n = run; n; n = n->next) {
        if (n->kind == PGEV_NODE_SYNC)
            return n;
        if (!pgev_node_in_batch(n))
            return NULL;
        n->local_abort = true;
        pgev_timer_free(n->deadline);
        n->deadline = NULL;
        if (n == member) {
            n->status = code;
            n->cancel_code = code;
        } else if (n->status == PGEV_OK) {
            n->status = PGEV_EABORTED;
        }
    }
    return NULL;
}

/* Inserts `node` into `q` just before `before`. */
static void
fifo_insert_before(pgev_fifo *q, pgev_node *before, pgev_node *node)
{
    pgev_node *prev = NULL;
    for (pgev_node *n = q->head; n && n != before; n = n->next)
        prev = n;
    node->next = before;
    if (prev)
        prev->next = node;
    else
        q->head = node;
    if (pgev_node_counts(node))
        q->count++;
}

static pgev_node *
new_breaker(pgev_conn *conn, int code)
{
    pgev_node *b = pgev_node_alloc(conn);
    if (!b)
        return NULL;
    b->kind = PGEV_NODE_QUERY;
    b->sql = BATCH_BREAKER_SQL;
    b->batch_breaker = true;
    b->cancel_code = code;
    return b;
}

/* Whether the atomic batch of the sent `member` has its Sync in flight. */
static bool
batch_sync_sent(const pgev_conn *conn, const pgev_node *member)
{
    const pgev_node *n = fifo_has(&conn->awaiting, member) ? conn->inflight.head : member->next;
    for (; n; n = n->next)
        if (n->kind == PGEV_NODE_SYNC)
            return true;
    return false;
}

/*
 * A member of an atomic batch timed out or was cancelled. The batch is
 * all or nothing, so this ends the whole batch:
 *  - its Sync not sent yet: none of it will commit. Members not sent are
 *    never sent; if some already are, a statement that fails is sent
 *    before the Sync so that the server rolls them back. Every member and
 *    the batch complete at the Sync: the member with `code`, the others
 *    with PGEV_EABORTED, the batch with `code`.
 *  - its Sync already sent: the server is asked to cancel what runs; the
 *    callbacks then report what the server did (the batch may still have
 *    committed, if the cancel came too late).
 */
static void
batch_abandon(pgev_conn *conn, pgev_node *member, int code)
{
    member->abandon_code = 0;
    pgev_timer_free(member->deadline);
    member->deadline = NULL;
    if (member->cancel_code)
        return;     /* already ended */
    if (member->sent && !member->local_abort && batch_sync_sent(conn, member)) {
        member->cancel_code = code;
        member->cancel_on_server = true;
        /* Whichever member runs when the cancel arrives fails, and the
         * batch with it. */
        for (pgev_node *n = conn->inflight.head; n && n->kind != PGEV_NODE_SYNC; n = n->next)
            if (pgev_node_in_batch(n))
                n->cancel_on_server = true;
        /* The read loop sends the cancel once a member runs at the head. */
        conn->more_results = true;
        pgev_loop_defer(conn->loop);
        return;
    }
    bool on_wire = conn->segment_open_on_wire;
    pgev_node *sync = NULL;
    pgev_fifo *q = &conn->pending;
    if (!member->sent) {
        if (fifo_has(&conn->held, member))
            q = &conn->held;
        else if (fifo_has(&conn->resend, member))
            q = &conn->resend;
        sync = batch_skip_run(q, member, code);
    } else {
        member->cancel_code = code;
        sync = batch_skip_run(q, NULL, code);
    }
    if (sync) {
        sync->cancel_code = code;
        if (on_wire && q == &conn->pending) {
            pgev_node *b = new_breaker(conn, code);
            if (!b) {
                pgev_mark_broken(conn, "out of memory (cancelling an atomic batch)");
                return;
            }
            fifo_insert_before(q, sync, b);
        }
    } else if (conn->in_batch) {
        /* Still open: what is submitted to it is not sent, and its end
         * brings the failing statement if part of it is on the wire. */
        conn->batch_cancel_code = code;
        conn->batch_needs_breaker = on_wire && q == &conn->pending;
    }
    pgev_loop_defer(conn->loop);
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
    if (pgev_node_in_batch(node)) {
        batch_abandon(conn, node, code);
        return;
    }
    node->abandon_code = 0;
    pgev_timer_free(node->deadline);
    node->deadline = NULL;
    PQclear(node->result);
    PQclear(node->error_result);
    node->result = node->error_result = NULL;
    pgev_error err;
    pgev_error_set(&err, code, "%s", msg);
    pgev_result res = { .status = code, .query_id = node->id, .rows = node->rows, .error = &err };
    pgev_node_call_done(conn, node, &res);
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
    node->cancel_exposed = false;
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

/* A sent query's deadline passed. */
static void
expire_sent(pgev_conn *conn, pgev_node *node)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "query timed out after %d ms; cancelled on the server", node->timeout_ms);
    pgev_node_abandon(conn, node, PGEV_ETIMEOUT, msg);
}

static void
on_deadline(pgev_conn *conn, void *arg)
{
    pgev_node *node = arg;
    pgev_conn_enter_dispatch(conn);
    char msg[96];
    if (!node->sent && pgev_node_in_batch(node)) {
        batch_abandon(conn, node, PGEV_ETIMEOUT);
    } else if (!node->sent) {
        snprintf(msg, sizeof(msg), "query timed out after %d ms, before it was sent", node->timeout_ms);
        if (!pgev_unsent_remove(conn, node))
            pgev_fifo_remove(&conn->held, node);
        pgev_error err;
        pgev_error_set(&err, PGEV_ETIMEOUT, "%s", msg);
        pgev_node_complete_error(conn, node, PGEV_ETIMEOUT, &err);
    } else if (!node->finished) {
        expire_sent(conn, node);
    }
    pgev_conn_pump(conn);
    pgev_conn_leave_dispatch(conn);
}

bool
pgev_deadline_check(pgev_conn *conn, pgev_node *node)
{
    if (!node->deadline || node->finished || !node->sent || monotonic_ms() < node->deadline_at_ms)
        return false;
    /* Its timer is due too, but the socket's event may run first in this
     * pass of the loop: the deadline wins over more data. */
    expire_sent(conn, node);
    return true;
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
    pgev_fifo *unsent[3] = { &conn->pending, &conn->resend, &conn->held };
    for (int i = 0; i < 3; i++) {
        for (pgev_node *node = unsent[i]->head; node; node = node->next) {
            if (node->id != query_id || node->kind == PGEV_NODE_SYNC)
                continue;
            if (node->local_abort || node->cancel_code)
                return 1;
            if (pgev_node_in_batch(node)) {
                batch_abandon(conn, node, PGEV_ECANCELLED);
                return PGEV_OK;
            }
            if (i == 2)
                break;  /* held by a transaction: see pgev_txn_cancel_held() */
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
    for (pgev_node *node = conn->awaiting.head; node; node = node->next) {
        /* Its results are in; a batch member's batch may still be undone. */
        if (node->id != query_id)
            continue;
        if (!pgev_node_in_batch(node) || node->cancel_code || node->finished)
            return 1;
        node->abandon_code = PGEV_ECANCELLED;
        batch_abandon(conn, node, PGEV_ECANCELLED);
        return PGEV_OK;
    }
    for (pgev_node *node = conn->inflight.head; node; node = node->next) {
        if (node->id != query_id || node->kind == PGEV_NODE_SYNC)
            continue;
        if (node->finished || node->abandon_code || node->cancel_code || node->local_abort)
            return 1;
        if (pgev_node_in_batch(node)) {
            /* Decided now, while the batch's end may still be unsent. */
            batch_abandon(conn, node, PGEV_ECANCELLED);
            return PGEV_OK;
        }
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
    size_t message_size = wire_size(args);
    if (message_size > PGEV_MESSAGE_MAX) {
        pgev_conn_refuse(conn, "query too large: about %zu bytes to send, the protocol allows at most %d "
                               "per message (1 GiB - 1)", message_size, PGEV_MESSAGE_MAX);
        return PGEV_EINVAL;
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
    if (conn->in_batch && conn->batch_cancel_code && !conn->txn_submitting) {
        /* Its batch was cancelled already: it completes, unsent, with it. */
        node->local_abort = true;
        node->status = PGEV_EABORTED;
    }
    if (!node->nparams)
        node->param_types = NULL;
    node->timeout_ms = args->timeout_ms > 0 ? args->timeout_ms
                     : args->timeout_ms == 0 ? conn->query_timeout_ms : 0;
    if (node->timeout_ms > 0) {
        node->deadline = pgev_timer_new(conn->loop, on_deadline, node);
        node->deadline_at_ms = monotonic_ms() + node->timeout_ms;
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
    /* Tracing reports the SQL text at the end too: it is kept. */
    node->keep_payload = readonly || node->cacheable || conn->on_trace;
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
    bool send_now = !held && !conn->pending.head && !node->local_abort && can_send(conn, node);
    if (!args_stable && (node->keep_payload || !send_now)) {
        if (copy_payload(node) != PGEV_OK) {
            pgev_node_release(conn, node);
            conn->next_id--;
            pgev_conn_refuse(conn, "out of memory");
            return PGEV_ENOMEM;
        }
    }
    node->copy = copy;
    if (conn->on_trace && !node->internal)
        trace_query_start(conn, node);
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
        return PGEV_ESTATE;
    }
    conn->in_batch = true;
    conn->batch_cancel_code = 0;
    conn->batch_needs_breaker = false;
    return PGEV_OK;
}

int
pgev_conn_batch_end(pgev_conn *conn, pgev_result_cb on_done, void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!conn->in_batch) {
        pgev_conn_refuse(conn, "no atomic batch is open on this connection");
        return PGEV_ESTATE;
    }
    /* The Sync is not subject to max_pending: refusing it would leave the
     * batch's queries waiting forever. */
    pgev_node *node = pgev_node_alloc(conn);
    if (!node) {
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    pgev_node *breaker = NULL;
    if (conn->batch_needs_breaker && !(breaker = new_breaker(conn, conn->batch_cancel_code))) {
        pgev_node_release(conn, node);
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    node->kind = PGEV_NODE_SYNC;
    node->id = 0;   /* not a query: ids stay dense for the application */
    node->on_done = on_done;
    node->arg = arg;
    node->cancel_code = conn->batch_cancel_code;
    conn->in_batch = false;
    conn->batch_cancel_code = 0;
    conn->batch_needs_breaker = false;
    if (breaker)
        enqueue(conn, breaker);
    enqueue(conn, node);
    return PGEV_OK;
}
