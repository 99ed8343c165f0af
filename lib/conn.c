/*
 * Connection lifecycle: non-blocking connect, state changes, failure,
 * graceful close and free. Entry points from the event loop (on_io,
 * on_timeout, on_deferred) bracket their work with enter/leave_dispatch so
 * that a pgev_conn_free() from inside a user callback is deferred until the
 * stack unwinds.
 */
#include "pgev-internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void real_free(pgev_conn *conn);
static void fail_continue(pgev_conn *conn);

/* Queries of a failed connection completed per loop turn, at most. */
#define FAIL_PER_TURN 1024
enum { FAIL_NOTIFY_CONNECT = 1, FAIL_NOTIFY_DISCONNECT };

/* The one state setter. Every transition passes here, which makes the
 * state machine in pgev-internal.h checkable in one place. */
static void
conn_set_state(pgev_conn *conn, pgev_connection_state next)
{
    switch (next) {
    case PGEV_CONN_CONNECTING:
        assert(conn->state == PGEV_CONN_CONNECTING);
        break;
    case PGEV_CONN_READY:
        assert(conn->state == PGEV_CONN_CONNECTING);
        break;
    case PGEV_CONN_CLOSING:
        assert(conn->state == PGEV_CONN_CONNECTING || conn->state == PGEV_CONN_READY);
        break;
    case PGEV_CONN_CLOSED:
        assert(conn->state == PGEV_CONN_CLOSING);
        break;
    case PGEV_CONN_FAILED:
        assert(conn->state != PGEV_CONN_CLOSED && conn->state != PGEV_CONN_FAILED);
        break;
    default:
        assert(!"unknown connection state");
    }
    conn->state = next;
}

void
pgev_conn_enter_dispatch(pgev_conn *conn)
{
    conn->dispatch_depth++;
}

bool
pgev_conn_leave_dispatch(pgev_conn *conn)
{
    assert(conn->dispatch_depth > 0);
    if (--conn->dispatch_depth == 0 && conn->free_requested) {
        real_free(conn);
        return false;
    }
    return true;
}

/* Records why the last call was refused, for pgev_conn_errmsg(). */
void
pgev_conn_refuse(pgev_conn *conn, const char *fmt, ...)
{
    va_list ap;
    char raw[sizeof(conn->errmsg)];
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    /* Some refusals quote libpq's text. */
    pgev_mask_secrets(conn->errmsg, sizeof(conn->errmsg), raw);
}

/* Connecting is over (connected, failed, freed): the plan and the
 * resolver go. */
static void
connect_cleanup(pgev_conn *conn)
{
    pgev_resolver_free(conn->resolver);
    conn->resolver = NULL;
    pgev_plan_free(conn->plan);
    conn->plan = NULL;
    conn->resolving = false;
    conn->resolve_answered = false;
}

static void
close_pg(pgev_conn *conn)
{
    connect_cleanup(conn);
    pgev_loop_watch(conn->loop, -1, false, false);
    pgev_loop_timer(conn->loop, -1);
    conn->fd = -1;
    conn->want_write = false;
    if (conn->pg) {
        PQfinish(conn->pg);
        conn->pg = NULL;
    }
    pgev_stmt_session_ended(conn);  /* its statements went with the session */
}

/*
 * libpq closes the socket itself when it finds the connection broken (a
 * failed read or send): the descriptor must leave the loop at once, before
 * any change of interest on it (epoll would refuse it, and its number may
 * already belong to another file). Returns true when that happened.
 */
static bool
socket_dropped(pgev_conn *conn)
{
    if (!conn->connected || !conn->pg || conn->fd < 0 || PQsocket(conn->pg) == conn->fd)
        return false;
    pgev_loop_watch(conn->loop, -1, false, false);
    conn->fd = -1;
    return true;
}

void
pgev_conn_update_watch(pgev_conn *conn)
{
    if (!conn->pg || conn->fd < 0)
        return;
    if (socket_dropped(conn)) {
        /* What libpq had read was handed out already (read_results). */
        pgev_mark_broken(conn, "connection lost");
        return;
    }
    /* A paused COPY OUT: the socket is left unread, so the server (and
     * libpq's buffer) hold the data: memory stays bounded. */
    if (pgev_loop_watch(conn->loop, conn->fd, !pgev_copy_paused(conn), conn->want_write) != 0) {
        pgev_error err;
        pgev_error_set(&err, PGEV_ECONNLOST, "could not register the socket with the event loop");
        conn->broken = true;
        pgev_error_copy(&conn->broken_error, &err);
    }
}

/*
 * Ends the connection after a failure. Called from loop context only
 * (dispatch_depth > 0): it runs every outstanding callback, then
 * on_connect (if it never connected) or on_disconnect.
 */
void
pgev_conn_fail(pgev_conn *conn, int code, const pgev_error *why)
{
    if (conn->state == PGEV_CONN_FAILED || conn->state == PGEV_CONN_CLOSED)
        return;
    bool was_connecting = !conn->connected;
    pgev_error_copy(&conn->error, why);
    conn->error.code = was_connecting && code != PGEV_ETIMEOUT ? PGEV_ECONNECT : code;
    conn->has_error = true;
    snprintf(conn->errmsg, sizeof(conn->errmsg), "%s", pgev_error_message(&conn->error));
    conn_set_state(conn, PGEV_CONN_FAILED);
    conn->broken = false;
    conn->in_batch = false;
    conn->expect_sync = false;
    close_pg(conn);

    /* Queries learn that the connection could not be made, or was lost;
     * then the connection callback. */
    pgev_error query_err;
    pgev_error_copy(&query_err, &conn->error);
    query_err.code = was_connecting ? PGEV_ECONNECT : PGEV_ECONNLOST;
    pgev_fail_start(conn, query_err.code, &query_err);
    conn->fail_notify = was_connecting ? FAIL_NOTIFY_CONNECT : FAIL_NOTIFY_DISCONNECT;
    fail_continue(conn);
}

/* Completes a failed connection's queries, FAIL_PER_TURN per loop turn so
 * that failing a long queue keeps the loop responsive, then runs
 * on_connect (it never connected) or on_disconnect. */
static void
fail_continue(pgev_conn *conn)
{
    if (!pgev_fail_drain(conn, FAIL_PER_TURN)) {
        pgev_loop_yield(conn->loop);
        return;
    }
    int notify = conn->fail_notify;
    conn->fail_notify = 0;
    /* pgev_conn_free() (maybe called from one of the query callbacks just
     * run) promises that neither connection callback follows it. */
    if (conn->free_requested)
        return;
    if (conn->on_trace && notify)
        pgev_trace_conn(conn, notify == FAIL_NOTIFY_CONNECT ? PGEV_TRACE_CONNECT : PGEV_TRACE_DISCONNECT,
                        &conn->error);
    if (notify == FAIL_NOTIFY_CONNECT) {
        if (conn->on_connect)
            conn->on_connect(conn, &conn->error, conn->arg);
    } else if (notify == FAIL_NOTIFY_DISCONNECT && conn->on_disconnect) {
        conn->on_disconnect(conn, &conn->error, conn->arg);
    }
}

/* A graceful close completes once nothing is left to send or receive. */
void
pgev_conn_maybe_closed(pgev_conn *conn)
{
    if (conn->state != PGEV_CONN_CLOSING || !conn->connected || conn->free_requested)
        return;
    if (conn->pending.head || conn->inflight.head || conn->awaiting.head || conn->expect_sync || conn->want_write ||
        conn->txn || conn->held.head)
        return;
    close_pg(conn);
    conn_set_state(conn, PGEV_CONN_CLOSED);
    if (conn->on_trace)
        pgev_trace_conn(conn, PGEV_TRACE_DISCONNECT, NULL);
    if (conn->on_disconnect)
        conn->on_disconnect(conn, NULL, conn->arg);
}

/* Sends what can be sent and flushes: the tail of every loop entry point. */
void
pgev_conn_pump(pgev_conn *conn)
{
    if (conn->free_requested)
        return;
    if (conn->connected && (conn->state == PGEV_CONN_READY || conn->state == PGEV_CONN_CLOSING)) {
        pgev_send_pending(conn);
        if (!conn->broken && (conn->flush_needed || conn->want_write))
            pgev_flush(conn);
        if (!conn->broken)
            pgev_conn_update_watch(conn);
    }
    if (conn->broken)
        pgev_conn_fail(conn, PGEV_ECONNLOST, &conn->broken_error);
    else
        pgev_conn_maybe_closed(conn);
}

static void
notice_receiver(void *arg, const PGresult *res)
{
    pgev_conn *conn = arg;
    /* After a free request, libpq may still be parsing a batch of notices
     * that arrived together: they are for a connection that is going away. */
    if (!conn->on_notice || conn->free_requested)
        return;
    pgev_error notice;
    pgev_error_from_result(&notice, PGEV_OK, res);
    /* libpq parses input (and so calls this) only inside our loop entry
     * points, where a free from the callback is deferred. The defer below
     * covers any other path: a requested free still happens from the loop. */
    conn->dispatch_depth++;
    conn->on_notice(conn, &notice, conn->arg);
    conn->dispatch_depth--;
    if (conn->free_requested)
        pgev_loop_defer(conn->loop);
}

static void
connect_failed(pgev_conn *conn, int code, const char *fallback)
{
    pgev_error err;
    pgev_error_from_conn(&err, code, conn->pg, fallback);
    pgev_conn_fail(conn, code, &err);
}

static void
connected(pgev_conn *conn)
{
    if (PQsetnonblocking(conn->pg, 1) != 0 || PQenterPipelineMode(conn->pg) != 1) {
        connect_failed(conn, PGEV_ECONNECT, "could not enter pipeline mode");
        return;
    }
    pgev_loop_timer(conn->loop, -1);
    connect_cleanup(conn);
    conn->want_write = false;
    conn->connected = true;
    conn->backend_pid = PQbackendPID(conn->pg);
    /* A close requested while connecting has left us CLOSING: drain. */
    if (conn->state == PGEV_CONN_CONNECTING)
        conn_set_state(conn, PGEV_CONN_READY);
    pgev_conn_update_watch(conn);
    /* on_connect comes first: whatever follows (the first send failing,
     * a close requested while connecting completing) ends with
     * on_disconnect, which must never precede it. Queries submitted while
     * connecting are pending already, so anything on_connect submits
     * queues behind them; the pump below sends them in that order. */
    if (conn->on_trace)
        pgev_trace_conn(conn, PGEV_TRACE_CONNECT, NULL);
    if (conn->on_connect)
        conn->on_connect(conn, NULL, conn->arg);
    if (conn->free_requested || conn->state == PGEV_CONN_FAILED)
        return;
    pgev_conn_pump(conn);
}

/*
 * Connecting walks the plan (resolve.c): for each host, its name resolved
 * if it has one, then one libpq connection per address, each with its own
 * deadline (connect_timeout_ms, the conn's one timer). A failed or timed
 * out attempt, or a name that does not resolve, moves on to the next;
 * when none is left the connection fails with every attempt's reason.
 * libpq sees one host and one address at a time, so target_session_attrs
 * rejects a host of the wrong kind as a failed attempt, and we move on.
 *
 * Runs from the loop, or from pgev_conn_new() (no callback runs from
 * here: a plan that is used up is reported from on_deferred).
 */
static void connect_next(pgev_conn *conn);

/* The current attempt failed (or timed out): its reason is noted and its
 * libpq connection closed; the cursor moves to the next address. */
static void
attempt_over(pgev_conn *conn, bool timeout)
{
    const char *addr = pgev_plan_address(conn->plan);
    const char *port = pgev_plan_port(conn->plan);
    if (timeout && !addr) {
        /* A unix socket (libpq's own wording names it so). */
        pgev_plan_note_failure(conn->plan, true,
                               "connection to server on socket in \"%s\", port %s failed: no answer "
                               "within %d ms (connect timeout)",
                               pgev_plan_host(conn->plan), port ? port : "(default)",
                               conn->connect_timeout_ms);
    } else if (timeout) {
        pgev_plan_note_failure(conn->plan, true,
                               "connection to server at \"%s\" (%s), port %s failed: no answer "
                               "within %d ms (connect timeout)",
                               pgev_plan_host(conn->plan), addr, port ? port : "(default)",
                               conn->connect_timeout_ms);
    } else {
        const char *msg = conn->pg ? PQerrorMessage(conn->pg) : NULL;
        pgev_plan_note_failure(conn->plan, false, "%s",
                               msg && msg[0] ? msg : "could not start connecting (out of memory)");
    }
    pgev_loop_watch(conn->loop, -1, false, false);
    pgev_loop_timer(conn->loop, -1);
    conn->fd = -1;
    if (conn->pg) {
        PQfinish(conn->pg);
        conn->pg = NULL;
    }
    pgev_plan_advance(conn->plan);
}

static void
attempt_failed(pgev_conn *conn, bool timeout)
{
    attempt_over(conn, timeout);
    connect_next(conn);
}

/* evdns answered (maybe inside pgev_resolver_start()): note it in the
 * plan and go on from the loop. */
static void
on_resolved(void *arg, const char *why, const char *const *addrs, int naddrs)
{
    pgev_conn *conn = arg;
    conn->resolving = false;
    if (why || pgev_plan_resolved(conn->plan, addrs, naddrs) != 0) {
        pgev_plan_note_failure(conn->plan, false, "could not resolve host \"%s\": %s",
                               pgev_plan_host(conn->plan), why ? why : "out of memory");
        pgev_plan_resolve_failed(conn->plan);
    }
    conn->resolve_answered = true;
    pgev_loop_defer(conn->loop);
}

static void
connect_next(pgev_conn *conn)
{
    for (;;) {
        switch (pgev_plan_next(conn->plan)) {
        case PGEV_PLAN_RESOLVE: {
            char why[PGEV_ERRMSG_MAX];
            if (!conn->resolver)
                conn->resolver = pgev_resolver_new(pgev_loop_base(conn->loop), conn->evdns);
            conn->resolving = true;
            conn->resolve_answered = false;
            if (!conn->resolver ||
                pgev_resolver_start(conn->resolver, pgev_plan_host(conn->plan), on_resolved, conn,
                                    why, sizeof(why)) != 0) {
                conn->resolving = false;
                pgev_plan_note_failure(conn->plan, false, "could not resolve host \"%s\": %s",
                                       pgev_plan_host(conn->plan),
                                       conn->resolver ? why : "out of memory");
                pgev_plan_resolve_failed(conn->plan);
                continue;
            }
            if (!conn->resolving)
                return; /* answered at once: on_deferred goes on */
            pgev_loop_timer(conn->loop, conn->connect_timeout_ms);
            return;
        }
        case PGEV_PLAN_ATTEMPT:
            conn->pg = pgev_plan_start(conn->plan);
            if (!conn->pg || PQstatus(conn->pg) == CONNECTION_BAD) {
                /* Out of memory, a bad option, a socket path that does
                 * not exist: this attempt is over before it began. */
                attempt_over(conn, false);
                continue;
            }
            PQsetNoticeReceiver(conn->pg, notice_receiver, conn);
            pgev_loop_timer(conn->loop, conn->connect_timeout_ms);
            /* libpq: before the first poll, behave as if it asked for writability. */
            conn->fd = PQsocket(conn->pg);
            if (conn->fd < 0 || pgev_loop_watch(conn->loop, conn->fd, false, true) != 0) {
                conn->fd = -1;
                pgev_loop_defer(conn->loop);
            }
            return;
        case PGEV_PLAN_DONE:
        default: {
            pgev_error err;
            int code = pgev_plan_only_timeouts(conn->plan) ? PGEV_ETIMEOUT : PGEV_ECONNECT;
            pgev_error_set(&err, code, "%s", pgev_plan_errors(conn->plan));
            pgev_error_copy(&conn->error, &err);
            snprintf(conn->errmsg, sizeof(conn->errmsg), "%s", pgev_error_message(&conn->error));
            conn->has_error = true;
            conn->connect_failed_early = true;
            pgev_loop_timer(conn->loop, -1);
            pgev_loop_defer(conn->loop);
            return;
        }
        }
    }
}

/* One step of PQconnectPoll; the socket may change between steps. */
static void
connect_step(pgev_conn *conn)
{
    PostgresPollingStatusType st = PQconnectPoll(conn->pg);
    /* libpq may have closed the socket and opened another (SSL or GSS
     * fallback), possibly with the same number: always register it anew,
     * never trust an old registration. */
    pgev_loop_watch(conn->loop, -1, false, false);
    conn->fd = PQsocket(conn->pg);
    switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        if (conn->fd < 0 ||
            pgev_loop_watch(conn->loop, conn->fd, st == PGRES_POLLING_READING,
                            st == PGRES_POLLING_WRITING) != 0)
            connect_failed(conn, PGEV_ECONNECT, "could not watch the connection's socket");
        break;
    case PGRES_POLLING_OK:
        connected(conn);
        break;
    case PGRES_POLLING_FAILED:
    default:
        attempt_failed(conn, false);
        break;
    }
}

static void
on_io(pgev_conn *conn, bool readable, bool writable)
{
    pgev_conn_enter_dispatch(conn);
    if (!conn->connected && conn->pg) {
        connect_step(conn);
    } else if (conn->state == PGEV_CONN_READY || conn->state == PGEV_CONN_CLOSING) {
        /* When reading fails (the server closed the socket), results that
         * arrived before the loss are still delivered: read_results reports
         * the loss once it reaches it. */
        bool input_ok = !readable || PQconsumeInput(conn->pg);
        if (!input_ok)
            (void)socket_dropped(conn);
        /* Unsent bytes go first: the server may be waiting on them before
         * it can send more results. */
        if (input_ok && conn->want_write)
            pgev_flush(conn);
        if (!conn->broken)
            pgev_read_results(conn);
        pgev_notify_deliver(conn);
    }
    pgev_conn_pump(conn);
    pgev_conn_leave_dispatch(conn);
}

static void
on_timeout(pgev_conn *conn)
{
    pgev_conn_enter_dispatch(conn);
    if (!conn->connected && conn->plan && conn->resolving) {
        /* The name's deadline: that host is skipped. */
        pgev_resolver_cancel(conn->resolver);
        conn->resolving = false;
        pgev_plan_note_failure(conn->plan, false,
                               "could not resolve host \"%s\": no answer within %d ms (connect timeout)",
                               pgev_plan_host(conn->plan), conn->connect_timeout_ms);
        pgev_plan_resolve_failed(conn->plan);
        connect_next(conn);
    } else if (!conn->connected && conn->plan && conn->pg) {
        attempt_failed(conn, true);
    } else if (conn->cancel_target && !pgev_cancel_tick(conn)) {
        /* A cancelled query still holds the session after the grace
         * period: the server is unresponsive or ignores the cancel. */
        pgev_error err;
        pgev_error_set(&err, PGEV_ETIMEOUT,
                       "a cancelled query did not end within %d ms; connection closed",
                       conn->cancel_grace_ms);
        pgev_conn_fail(conn, PGEV_ETIMEOUT, &err);
    }
    pgev_conn_leave_dispatch(conn);
}

/* Deferred work: going on after a name resolved, reporting a failure
 * found outside the loop, and the flush after queries submitted from
 * outside a pgev callback. */
static void
on_deferred(pgev_conn *conn)
{
    pgev_conn_enter_dispatch(conn);
    if (conn->failing.head || conn->fail_notify) {
        fail_continue(conn);
        pgev_conn_leave_dispatch(conn);
        return;
    }
    if (!conn->connected && conn->resolve_answered && conn->plan) {
        conn->resolve_answered = false;
        connect_next(conn);
    }
    if (conn->connect_failed_early) {
        conn->connect_failed_early = false;
        pgev_error err;
        pgev_error_copy(&err, &conn->error);
        pgev_conn_fail(conn, err.code, &err);
    } else {
        if (!conn->connected && conn->fd < 0 && conn->pg)
            connect_step(conn);
        else if (conn->more_results && !conn->broken)
            pgev_read_results(conn);
        pgev_notify_deliver(conn);
        if (conn->doomed.head)
            pgev_complete_doomed(conn);
        if (conn->abandon_requested && !conn->free_requested)
            pgev_abandon_requested(conn);
        pgev_conn_pump(conn);
    }
    pgev_conn_leave_dispatch(conn);
}

pgev_conn *
pgev_conn_new(struct event_base *base, const char *conninfo, const pgev_conn_options *opts)
{
    if (!base || !conninfo)
        return NULL;
    pgev_conn *conn = calloc(1, sizeof(*conn));
    if (!conn)
        return NULL;
    pgev_conn_options defaults = { 0 };
    if (!opts)
        opts = &defaults;
    conn->state = PGEV_CONN_CONNECTING;
    conn->fd = -1;
    conn->max_pending = opts->max_pending > 0 ? opts->max_pending : PGEV_DEFAULT_MAX_PENDING;
    conn->max_inflight = opts->max_inflight > 0 ? opts->max_inflight : PGEV_DEFAULT_MAX_INFLIGHT;
    conn->query_timeout_ms = opts->query_timeout_ms > 0 ? opts->query_timeout_ms : 0;
    conn->cancel_grace_ms = opts->cancel_grace_ms > 0 ? opts->cancel_grace_ms
                                                      : PGEV_DEFAULT_CANCEL_GRACE_MS;
    int cache_size = opts->stmt_cache_size == 0 ? PGEV_DEFAULT_STMT_CACHE_SIZE
                   : opts->stmt_cache_size < 0 ? 0
                   : opts->stmt_cache_size > PGEV_STMT_CACHE_MAX ? PGEV_STMT_CACHE_MAX
                                                                 : opts->stmt_cache_size;
    if (pgev_stmt_cache_init(&conn->stmts, cache_size) != 0) {
        free(conn);
        return NULL;
    }
    conn->on_connect = opts->on_connect;
    conn->on_disconnect = opts->on_disconnect;
    conn->on_notice = opts->on_notice;
    conn->on_trace = opts->on_trace;
    conn->trace_arg = opts->trace_arg;
    conn->arg = opts->arg;
    conn->loop = pgev_loop_new(base, conn, on_io, on_timeout, on_deferred);
    if (!conn->loop) {
        pgev_stmt_cache_free(&conn->stmts);
        free(conn);
        return NULL;
    }

    conn->evdns = opts->evdns_base;
    char why[PGEV_ERRMSG_MAX];
    const char *bad_option = opts->connect_timeout_ms < 0  ? "connect_timeout_ms"
                           : opts->query_timeout_ms < 0    ? "query_timeout_ms"
                           : opts->cancel_grace_ms < 0     ? "cancel_grace_ms"
                           : opts->max_pending < 0         ? "max_pending"
                           : opts->max_inflight < 0        ? "max_inflight"
                                                           : NULL;
    if (bad_option) {
        snprintf(why, sizeof(why), "invalid option: %s is negative", bad_option);
    } else {
        conn->plan = pgev_plan_new(conninfo, why, sizeof(why));
    }
    if (!conn->plan) {
        /* Malformed conninfo, an option out of range: known now, but
         * reported from the loop like every other outcome. */
        pgev_error_set(&conn->error, PGEV_ECONNECT, "%s", why);
        snprintf(conn->errmsg, sizeof(conn->errmsg), "%s", pgev_error_message(&conn->error));
        conn->has_error = true;
        conn->connect_failed_early = true;
        pgev_loop_defer(conn->loop);
        return conn;
    }
    conn->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                            : pgev_plan_connect_timeout_ms(conn->plan);
    if (conn->connect_timeout_ms <= 0)
        conn->connect_timeout_ms = PGEV_DEFAULT_CONNECT_TIMEOUT_MS;
    connect_next(conn);
    return conn;
}

static void
real_free(pgev_conn *conn)
{
    /* Callbacks run below may call pgev_conn_free() or submit: the former
     * is a no-op now, the latter is refused (ECLOSED). */
    conn->free_requested = true;
    bool busy_on_server = conn->connected && (conn->inflight.head || conn->expect_sync || conn->cancel_target);
    conn->dispatch_depth++;
    pgev_error err;
    pgev_error_set(&err, PGEV_ECANCELLED, "cancelled: the connection was freed");
    pgev_fail_all(conn, PGEV_ECANCELLED, &err);
    conn->dispatch_depth--;
    pgev_txn_conn_freed(conn);
    pgev_listeners_free(conn);
    pgev_stmt_cache_free(&conn->stmts);
    /* What still runs on the server would run on after the socket is
     * closed (the backend notices only when it next reads or writes):
     * cancel it there, without waiting. */
    if (busy_on_server && conn->pg && PQstatus(conn->pg) == CONNECTION_OK)
        pgev_cancel_fire_and_forget(conn->pg);
    close_pg(conn);
    pgev_cancel_jobs_free(conn);
    pgev_loop_free(conn->loop);
    pgev_nodes_free_all(conn);
    free(conn);
}

void
pgev_conn_free(pgev_conn *conn)
{
    if (!conn || conn->free_requested)
        return;
    if (conn->dispatch_depth > 0) {
        conn->free_requested = true;
        /* Normally the dispatch that is running finishes the free; the
         * defer guarantees it even from an unexpected path. */
        pgev_loop_defer(conn->loop);
        return;
    }
    real_free(conn);
}

int
pgev_conn_close(pgev_conn *conn)
{
    if (!conn)
        return PGEV_EINVAL;
    if (conn->state != PGEV_CONN_CONNECTING && conn->state != PGEV_CONN_READY)
        return PGEV_OK;
    if (conn->in_batch) {
        int rc = pgev_conn_batch_end(conn, NULL, NULL);
        if (rc < 0)
            return rc;
    }
    conn_set_state(conn, PGEV_CONN_CLOSING);
    pgev_loop_defer(conn->loop);
    return PGEV_OK;
}

pgev_connection_state
pgev_conn_state(const pgev_conn *conn)
{
    return conn ? conn->state : PGEV_CONN_FAILED;
}

const pgev_error *
pgev_conn_error(const pgev_conn *conn)
{
    return conn && conn->has_error ? &conn->error : NULL;
}

const char *
pgev_conn_errmsg(const pgev_conn *conn)
{
    return conn ? conn->errmsg : "connection is NULL";
}

int
pgev_conn_pending(const pgev_conn *conn)
{
    return conn ? conn->pending.count + conn->held.count : 0;
}

int
pgev_conn_inflight(const pgev_conn *conn)
{
    return conn ? conn->inflight.count + conn->awaiting.count : 0;
}

PGconn *
pgev_conn_pg(const pgev_conn *conn)
{
    return conn ? conn->pg : NULL;
}

struct event_base *
pgev_conn_base(const pgev_conn *conn)
{
    return conn ? pgev_loop_base(conn->loop) : NULL;
}
