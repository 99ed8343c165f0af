/*
 * pgev private structures. Nothing here is part of the API.
 *
 * Shape of a connection:
 *
 *   submit ──► pending FIFO ──(send: PQsend* and PQpipelineSync)──► inflight FIFO ──(results)──► callback
 *
 * A node is a query or a Sync marker; both travel through the same two
 * FIFOs so that their order on the wire is exactly the order of submission.
 */
#ifndef PGEV_INTERNAL_H
#define PGEV_INTERNAL_H

#include "config.h"

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#include "pgev.h"

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

#define PGEV_ERRMSG_MAX 512

/*
 * Server errors point into the PGresult they came from; client errors keep
 * their message in `buf`. Either way the struct lives as long as whatever
 * holds it (a stack frame during a callback, or the connection).
 */
struct pgev_error {
    int code;
    const char *sqlstate;
    const char *severity;
    const char *message;
    const char *detail;
    const char *hint;
    int position;
    char buf[PGEV_ERRMSG_MAX];
};

/* Fills `err` as a client-side error with a printf-style message. */
void pgev_error_set(pgev_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fills `err` from a result holding a server error or notice (fields borrowed from it). */
void pgev_error_from_result(pgev_error *err, int code, const PGresult *res);
/* Fills `err` from libpq's connection error message, with a fallback text. */
void pgev_error_from_conn(pgev_error *err, int code, const PGconn *pg, const char *fallback);
/* Deep-copies src into dst so dst no longer borrows from a PGresult. */
void pgev_error_copy(pgev_error *dst, const pgev_error *src);
/* Copies src into dst (cap bytes, always terminated) with every password
 * it holds (URI userinfo, password=..., percent-encoded forms) replaced by
 * "********". Returns the length written. pgev_error_set() and
 * pgev_error_from_*() apply it: no secret reaches a pgev message. */
size_t pgev_mask_secrets(char *dst, size_t cap, const char *src);

/* ------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------ */

/* Built on the stack for each callback; never allocated. */
struct pgev_result {
    int status;
    int64_t query_id;
    int64_t rows;           /* rows in this delivery, or total streamed */
    PGresult *pg;           /* borrowed unless stolen (then NULL) */
    PGresult *tag_source;   /* where the command tag comes from (may equal pg) */
    const pgev_error *error;
    /* The query certainly never reached libpq (pgev_result_sent() is 0).
     * Inverted so that every result built elsewhere, zero-initialised,
     * says "maybe sent": the safe answer for retry decisions. */
    bool unsent;
    /* `pg` is shared with other callbacks (a commit failure reported to
     * each query of its segment): it cannot be stolen. */
    bool shared_pg;
};

/* ------------------------------------------------------------------------
 * Queue nodes
 * ------------------------------------------------------------------------ */

enum pgev_node_kind {
    PGEV_NODE_QUERY,    /* PQsendQueryParams */
    PGEV_NODE_PREPARE,  /* PQsendPrepare */
    PGEV_NODE_EXECUTE,  /* PQsendQueryPrepared */
    PGEV_NODE_SYNC,     /* PQpipelineSync ending an atomic batch */
    PGEV_NODE_COPY,     /* PQsendQuery of a COPY, outside pipeline mode (copy.c) */
    PGEV_NODE_CLOSE     /* closes an evicted or stale cached statement (stmtcache.c); internal */
};

/* Room for "pgev_" and a 128-bit digest in hex (stmtcache.c). */
#define PGEV_STMT_NAME_MAX 38

typedef struct pgev_node pgev_node;
typedef struct pgev_timer pgev_timer;
typedef struct pgev_cancel_job pgev_cancel_job;
typedef struct pgev_listener pgev_listener;

/* Bytes of a query's own copy of its arguments kept inside the node (and
 * the pool's query) instead of in an allocation of their own: enough for a
 * statement name and a few short parameters. */
#define PGEV_INLINE_PAYLOAD 96

struct pgev_node {
    pgev_node *next;
    enum pgev_node_kind kind;
    int64_t id;
    unsigned flags;
    /* A Sync follows this query directly (isolated query): saves a node. */
    bool sync_after;
    /* Per-query receive state, valid while in flight. */
    bool row_mode_set;
    bool sent;              /* handed to libpq: in the in-flight FIFO */
    bool finished;          /* on_done already ran (timeout, cancel); results are dropped */
    bool cancel_sent;       /* a server-side cancel was requested for it */
    int abandon_code;       /* pgev_conn_cancel() asked to end it (from the loop) */
    /* A member of an atomic batch that pgev ended (timeout, cancel): the
     * status it and its batch report if the batch does not commit. */
    int cancel_code;
    bool cancel_on_server;  /* cancel_code: ask the server to cancel it when it runs */
    bool batch_breaker;     /* internal statement that fails on purpose so that
                             * the server rolls back a cancelled batch */
    int timeout_ms;
    pgev_timer *deadline;   /* NULL without a timeout */
    int64_t deadline_at_ms; /* when it is due (monotonic), with `deadline` */
    int64_t trace_start_us; /* tracing on: when it was submitted (monotonic) */
    bool cache_hit;         /* executed by a cached statement, without a Parse */
    bool keep_payload;      /* re-sendable (PGEV_QUERY_READONLY): payload kept while in flight */
    bool collateral;        /* failed 57014 from a cancel meant for an earlier query */
    bool cancel_exposed;    /* in flight while a cancel request went out: a 57014
                             * it gets may be that request's, not its own */
    bool resent;            /* already re-sent once after a stray cancel */
    bool shared;            /* isolated read-only query sharing a Sync segment */
    bool copy_refused;      /* it started a COPY, which pipeline mode cannot carry */
    bool local_abort;       /* a batch member never sent because its batch had
                             * already failed: it completes as PGEV_EABORTED
                             * when it reaches the head of `inflight` */
    bool draining_copy_out; /* discarding COPY TO STDOUT data until its end */
    bool gated;             /* holds its place in `pending` but is not sent until
                             * pgev_node_ungate() (a COMMIT waiting for its
                             * transaction's statements, txn.c) */
    pgev_copy *copy;        /* PGEV_NODE_COPY: its state (copy.c), freed with the node */
    /* Statement cache (stmtcache.c). */
    bool cacheable;         /* a plain query the cache may prepare */
    bool in_txn;            /* submitted by a transaction (txn.c) */
    bool prepare_pending;   /* its Parse's results come first */
    bool cache_retried;     /* already re-sent once after 26000/0A000/42P05 */
    bool in_block;          /* sent while the session was (as far as pgev can
                             * tell) inside a transaction block (stmtcache.c) */
    bool internal;          /* pgev's own query (stmtcache.c): counts in no
                             * queue length or window */
    char stmt_name[PGEV_STMT_NAME_MAX]; /* the cached statement it used (or closes); "" if none */
    pgev_result_cb on_rows;
    pgev_result_cb on_done;
    void *arg;
    int64_t rows;           /* rows streamed so far */
    PGresult *result;       /* the buffered or final result */
    PGresult *error_result; /* PGRES_FATAL_ERROR, kept for its fields */
    int chunk_rows;         /* pgev_query_args.stream_chunk_rows */
    /* libpq 17/18 put the command tag on the last chunk, not on the final
     * result: a row-less copy of that chunk, kept until the final result
     * arrives, then stands in for it (dispatch.c). */
    PGresult *chunk_tag;
    int status;             /* PGEV_OK until something fails */
    /* A query waiting in the pending FIFO owns copies of what it sends;
     * one allocation `payload` holds them all. A query sent at submit
     * time borrows the caller's arrays and never fills these. */
    char *payload;
    const char *sql;        /* or the statement name for EXECUTE/PREPARE */
    const char *stmt_sql;   /* PREPARE: the SQL text */
    int nparams;
    const Oid *param_types;
    const char *const *param_values;
    const int *param_lengths;
    const int *param_formats;
    int result_format;
    /* Small payloads live here instead of in a separate allocation (last:
     * pgev_node_alloc() clears only what comes before it). */
    _Alignas(void *) char inline_payload[PGEV_INLINE_PAYLOAD];
};

/* A FIFO of nodes with O(1) push and pop. */
typedef struct pgev_fifo {
    pgev_node *head;
    pgev_node *tail;
    int count;              /* queries only: Sync and Close nodes do not count */
} pgev_fifo;

/* Whether the node counts as a query (in pgev_fifo.count, the window). */
static inline bool
pgev_node_counts(const pgev_node *n)
{
    return n->kind != PGEV_NODE_SYNC && n->kind != PGEV_NODE_CLOSE && !n->internal;
}

static inline void
pgev_fifo_push(pgev_fifo *q, pgev_node *n)
{
    n->next = NULL;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    if (pgev_node_counts(n))
        q->count++;
}

/* Unlinks `n` from anywhere in the FIFO; O(n), for cancellation only. */
static inline bool
pgev_fifo_remove(pgev_fifo *q, pgev_node *n)
{
    pgev_node *prev = NULL;
    for (pgev_node *cur = q->head; cur; prev = cur, cur = cur->next) {
        if (cur != n)
            continue;
        if (prev)
            prev->next = cur->next;
        else
            q->head = cur->next;
        if (q->tail == cur)
            q->tail = prev;
        cur->next = NULL;
        if (pgev_node_counts(cur))
            q->count--;
        return true;
    }
    return false;
}

static inline void
pgev_fifo_push_front(pgev_fifo *q, pgev_node *n)
{
    n->next = q->head;
    q->head = n;
    if (!q->tail)
        q->tail = n;
    if (pgev_node_counts(n))
        q->count++;
}

static inline pgev_node *
pgev_fifo_pop(pgev_fifo *q)
{
    pgev_node *n = q->head;
    if (!n)
        return NULL;
    q->head = n->next;
    if (!q->head)
        q->tail = NULL;
    n->next = NULL;
    if (pgev_node_counts(n))
        q->count--;
    return n;
}

/* ------------------------------------------------------------------------
 * Statement cache (stmtcache.c)
 * ------------------------------------------------------------------------ */

typedef struct pgev_stmt pgev_stmt;

typedef struct pgev_stmt_cache {
    int capacity;           /* 0: off */
    int count;
    size_t bytes;           /* held by the buckets and entries: PGEV_STMT_CACHE_MAX_BYTES at most */
    int stale;              /* entries invalidated inside a transaction block */
    pgev_stmt **buckets;
    int nbuckets;           /* a power of two */
    pgev_stmt *newest, *oldest;
    int session;            /* whose server session this is (stmtcache.c) */
    int session_asked;      /* times the server was asked */
    bool in_block;          /* what was sent so far leaves the session in a
                             * transaction block (as far as pgev can tell) */
} pgev_stmt_cache;

/* ------------------------------------------------------------------------
 * Event-loop adapter (lib/loop.c): the only file that includes libevent.
 * ------------------------------------------------------------------------ */

typedef struct pgev_loop pgev_loop;

typedef void (*pgev_loop_io_fn)(pgev_conn *conn, bool readable, bool writable);
typedef void (*pgev_loop_fn)(pgev_conn *conn);

pgev_loop *pgev_loop_new(struct event_base *base, pgev_conn *conn, pgev_loop_io_fn on_io,
                         pgev_loop_fn on_timeout, pgev_loop_fn on_deferred);
void pgev_loop_free(pgev_loop *loop);
/* Watches fd for reading (always) and writing (when `want_write`). fd < 0 stops watching. */
int pgev_loop_watch(pgev_loop *loop, int fd, bool want_read, bool want_write);
/* One-shot timer; ms < 0 cancels it. */
int pgev_loop_timer(pgev_loop *loop, int ms);
/* Runs on_deferred once from the loop, soon (idempotent until it runs). */
void pgev_loop_defer(pgev_loop *loop);
/* Like pgev_loop_defer(), but only after the loop's next poll, so that
 * timers and sockets due run first (a budget ran out). */
void pgev_loop_yield(pgev_loop *loop);
struct event_base *pgev_loop_base(const pgev_loop *loop);

/* A one-shot timer owned by one object (a query's deadline). */
typedef void (*pgev_timer_fn)(pgev_conn *conn, void *arg);
pgev_timer *pgev_timer_new(pgev_loop *loop, pgev_timer_fn fn, void *arg);
int pgev_timer_start(pgev_timer *timer, int ms);
void pgev_timer_free(pgev_timer *timer);

/* A persistent read watch on an extra descriptor (a cancel job's socket). */
typedef struct pgev_watch pgev_watch;
pgev_watch *pgev_watch_new(pgev_loop *loop, int fd, pgev_timer_fn fn, void *arg);
/* The same for writability (write) or readability. */
pgev_watch *pgev_watch_new_for(pgev_loop *loop, int fd, bool write, pgev_timer_fn fn, void *arg);
void pgev_watch_free(pgev_watch *watch);

/* An event of an object that is not a connection (the pool's deferred
 * work, maintenance and deadline timers): period_ms > 0 makes it periodic
 * (pgev_event_start() then ignores ms). Freeing it from inside its own
 * callback is safe. */
typedef struct pgev_event pgev_event;
typedef void (*pgev_event_fn)(void *arg);
pgev_event *pgev_event_new(struct event_base *base, int period_ms, pgev_event_fn fn, void *arg);
/* Arms it to run once in ms milliseconds (again: re-armed). */
int pgev_event_start(pgev_event *event, int ms);
/* Runs it soon, from the loop, whether armed or not. */
void pgev_event_activate(pgev_event *event);
void pgev_event_stop(pgev_event *event);
void pgev_event_free(pgev_event *event);

/* ------------------------------------------------------------------------
 * Connecting (resolve.c): the conninfo's hosts as a plan of attempts, one
 * host and one address per libpq connection, and host names resolved with
 * evdns. conn.c drives the plan.
 * ------------------------------------------------------------------------ */

typedef struct pgev_plan pgev_plan;

typedef enum pgev_plan_step {
    PGEV_PLAN_ATTEMPT,  /* start a libpq connection: pgev_plan_start() */
    PGEV_PLAN_RESOLVE,  /* resolve pgev_plan_host() first */
    PGEV_PLAN_DONE      /* every host and address was tried */
} pgev_plan_step;

/* Reads conninfo (a conninfo string, a URI or a database name; the PG*
 * variables fill in host, hostaddr, port, target_session_attrs,
 * load_balance_hosts and connect_timeout as in libpq). NULL with the
 * (masked) reason in err when it is malformed or out of range. */
pgev_plan *pgev_plan_new(const char *conninfo, char *err, size_t errlen);
void pgev_plan_free(pgev_plan *plan);
/* connect_timeout of the conninfo (or PGCONNECT_TIMEOUT) in ms; 0: none. */
int pgev_plan_connect_timeout_ms(const pgev_plan *plan);
/* What comes next at the cursor (moves past hosts with nothing left). */
pgev_plan_step pgev_plan_next(pgev_plan *plan);
/* The current host as written, its address (NULL when libpq picks, e.g. a
 * socket) and its port (NULL: the default). */
const char *pgev_plan_host(const pgev_plan *plan);
const char *pgev_plan_address(const pgev_plan *plan);
const char *pgev_plan_port(const pgev_plan *plan);
/* PQconnectStartParams() for the current attempt (host, hostaddr, port). */
PGconn *pgev_plan_start(pgev_plan *plan);
/* The current attempt failed: on to the next address (or host). */
void pgev_plan_advance(pgev_plan *plan);
/* The current host's name resolved to these numeric addresses (0 or -1: out of memory). */
int pgev_plan_resolved(pgev_plan *plan, const char *const *addrs, int naddrs);
/* The current host's name could not be resolved: it is skipped. */
void pgev_plan_resolve_failed(pgev_plan *plan);
/* Records why an attempt failed (masked; `timeout`: it timed out). */
void pgev_plan_note_failure(pgev_plan *plan, bool timeout, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Every failure so far, one per line, for the final error. */
const char *pgev_plan_errors(const pgev_plan *plan);
/* True when there were failures and every one was an attempt timing out. */
bool pgev_plan_only_timeouts(const pgev_plan *plan);

/* Asynchronous name resolution with evdns: on the application's
 * evdns_base when given, else on one of its own, made at the first name
 * (reading resolv.conf and /etc/hosts) and freed with the resolver. */
typedef struct pgev_resolver pgev_resolver;
struct evdns_base;
/* why: NULL on success, else why the name did not resolve. addrs are
 * numeric strings, borrowed for the call. May run inside
 * pgev_resolver_start() (answers from /etc/hosts). */
typedef void (*pgev_resolve_fn)(void *arg, const char *why, const char *const *addrs, int naddrs);
pgev_resolver *pgev_resolver_new(struct event_base *base, struct evdns_base *shared);
/* Starts resolving `name`; 0, or -1 with err filled (fn never runs then). */
int pgev_resolver_start(pgev_resolver *r, const char *name, pgev_resolve_fn fn, void *arg,
                        char *err, size_t errlen);
/* Drops the request in progress: its fn never runs. */
void pgev_resolver_cancel(pgev_resolver *r);
/* Cancels and frees; what evdns still references lives on until evdns
 * answers it from the loop. NULL is a no-op. */
void pgev_resolver_free(pgev_resolver *r);

/* ------------------------------------------------------------------------
 * The connection
 * ------------------------------------------------------------------------ */

/*
 * Connection state machine (one setter: conn_set_state in conn.c):
 *
 *   CONNECTING ──► READY ──► CLOSING ──► CLOSED
 *        │           │          │
 *        └───────────┴──────────┴──────► FAILED
 */
struct pgev_conn {
    pgev_connection_state state;
    PGconn *pg;
    pgev_loop *loop;
    int fd;                 /* the socket currently watched; re-read after every connect poll */
    bool connected;         /* PQconnectPoll reported OK; pipeline mode is on */
    bool connect_failed_early; /* connecting failed outside the loop: report from the loop */
    bool broken;            /* libpq failed outside the loop: fail from the loop */
    bool want_write;        /* libpq holds unsent bytes (PQflush returned 1) */
    bool more_results;      /* read_results yielded with results left to hand out */
    bool flush_needed;      /* queries were handed to libpq since the last flush */
    bool in_batch;          /* between batch_begin and batch_end */
    /* The open batch was cancelled (a member timed out or was cancelled):
     * what is submitted to it is never sent, and its end is preceded by a
     * failing statement when part of it is on the wire already. */
    int batch_cancel_code;
    bool batch_needs_breaker;
    bool expect_sync;       /* the next result is the Sync of the head query's segment */
    bool free_requested;    /* pgev_conn_free() inside a callback: done when it returns */
    int dispatch_depth;     /* > 0 while user callbacks may run up the stack */

    pgev_fifo pending;      /* accepted, not yet sent */
    pgev_fifo inflight;     /* sent, awaiting results */
    /* Queries whose results are all in, waiting for the outcome of their
     * Sync segment: the commit of its implicit transaction (or the atomic
     * batch's). Completed, in order, when the Sync's answer arrives; on a
     * lost connection their outcome is unknown (PGEV_ECONNLOST, sent). */
    pgev_fifo awaiting;
    /* An error that arrived where a segment's Sync was due: its commit
     * failed (deferred constraint, serialization failure). Applies to
     * every query of `awaiting`; libpq sends a NULL, then the Sync. */
    PGresult *commit_error;
    int commit_error_nulls; /* NULLs seen after commit_error (one is due) */
    /* Batch members were handed to libpq since the last Sync: the server
     * holds their results until a Sync or a Flush request arrives. */
    bool segment_open_on_wire;
    bool flush_requested;   /* a Flush request went out for that open segment */
    pgev_fifo doomed;       /* cancelled before sending: completed from the loop */
    /* The connection failed: its queries complete from the loop, a
     * bounded number per turn (FAIL_PER_TURN), with fail_code/fail_error;
     * then on_connect or on_disconnect (fail_notify). */
    pgev_fifo failing;
    int fail_code;
    pgev_error fail_error;
    int fail_notify;
    bool abandon_requested; /* some in-flight node has abandon_code set */
    pgev_node *cancel_target; /* the query a server-side cancel is for */
    pgev_cancel_job *cancel_jobs; /* cancel requests on helper threads */
    /* Read-only queries sent since the last Sync (a shared segment), and
     * aborted ones waiting to be sent again once their segment's Sync is in. */
    bool shared_open;
    int shared_count;
    pgev_fifo resend;
    bool cancel_target_running; /* it had returned rows when the cancel began: never repeated */
    int64_t cancel_started_ms; /* monotonic time the cancel for cancel_target began */
    int cancel_retry_ms;    /* when to make the request again if the target still runs */
    int query_timeout_ms;   /* default deadline; 0: none */
    int cancel_grace_ms;    /* how long a cancelled query may keep the connection */
    pgev_node *free_nodes;  /* recycled nodes, bounded by free_count */
    int free_count;

    /* Status of the open atomic-batch segment being received: the first
     * failure in it, reported to the batch's on_done. */
    int segment_status;
    pgev_error segment_error;
    /* The server's error behind segment_status, kept whole for the
     * batch's on_done (segment_error holds a bounded copy). */
    PGresult *segment_result;

    /* Transactions (txn.c): while `txn` is open, queries submitted on the
     * connection itself wait in `held` (with their payload copied) and go
     * to `pending` once the transaction's COMMIT/ROLLBACK is queued.
     * `txn_submitting` marks a submit made by the transaction itself
     * (PGEV_TXN_SUBMIT_*): never held, always its own Sync segment, still
     * accepted while closing; its COMMIT/ROLLBACK also beyond max_pending. */
    pgev_txn *txn;
    int txn_submitting;
    bool submit_gated;      /* the node being submitted starts gated */
    pgev_fifo held;
    /* LISTEN/NOTIFY listeners (notify.c), one or more per channel, and the
     * number of the last notification handed out (each listener once). */
    pgev_listener *listeners;
    uint64_t notify_seq;
    pgev_stmt_cache stmts;

    int64_t next_id;
    int max_pending;
    int max_inflight;
    int connect_timeout_ms; /* per attempt (host and address) and per name resolution */
    /* While connecting (resolve.c): the hosts still to try, the resolver,
     * and a name's answer waiting to be acted on from the loop. */
    pgev_plan *plan;
    pgev_resolver *resolver;
    struct evdns_base *evdns;   /* the application's, or NULL */
    bool resolving;         /* a name is being resolved: the timer is its deadline */
    bool resolve_answered;  /* the answer is in the plan: go on from on_deferred */
    size_t unflushed_bytes; /* estimate, to flush libpq's buffer before it grows large */
    size_t libpq_errlen;    /* length of PQerrorMessage() last looked at (dispatch.c) */
    int64_t turn_end_ms;    /* when the read loop's current turn is over (coarse clock) */

    pgev_conn_cb on_connect;
    pgev_conn_cb on_disconnect;
    pgev_notice_cb on_notice;
    void *arg;
    pgev_trace_cb on_trace; /* NULL: tracing off (and free) */
    int backend_pid;        /* PQbackendPID() once connected, kept after close */
    void *trace_arg;

    pgev_error broken_error; /* why, when `broken` */
    pgev_error error;       /* connection-level error */
    bool has_error;
    char errmsg[PGEV_ERRMSG_MAX]; /* last refused call, or the connection error */
};

/* conn.c */
void pgev_conn_fail(pgev_conn *conn, int code, const pgev_error *why);
void pgev_conn_refuse(pgev_conn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pgev_conn_update_watch(pgev_conn *conn);
void pgev_conn_enter_dispatch(pgev_conn *conn);
/* Returns false when the connection was freed and must not be touched. */
bool pgev_conn_leave_dispatch(pgev_conn *conn);
void pgev_conn_maybe_closed(pgev_conn *conn);

/* query.c */
pgev_node *pgev_node_alloc(pgev_conn *conn);
void pgev_node_release(pgev_conn *conn, pgev_node *node);
void pgev_nodes_free_all(pgev_conn *conn);
/* Hands pending nodes to libpq while the window and socket allow. */
void pgev_send_pending(pgev_conn *conn);
/* Flushes libpq's output; on failure the connection fails. Returns false then. */
bool pgev_flush(pgev_conn *conn);
/* The one place a request's on_done runs (the trampoline): exactly once
 * per node, asserted; `finished` records that it ran. */
void pgev_node_call_done(pgev_conn *conn, pgev_node *node, pgev_result *res);
/* Tracing (query.c): a connection event; the end of a query. */
void pgev_trace_conn(pgev_conn *conn, pgev_trace_event event, const pgev_error *err);
/* Completes a node's callback with the given status and error (no result). */
void pgev_node_complete_error(pgev_conn *conn, pgev_node *node, int code, const pgev_error *err);
/* Fails every outstanding node with code/err, now (pgev_conn_free()). */
void pgev_fail_all(pgev_conn *conn, int code, const pgev_error *err);
/* Moves every outstanding node to `failing`, to complete with code/err
 * (the connection failed); pgev_fail_drain() completes them. */
void pgev_fail_start(pgev_conn *conn, int code, const pgev_error *err);
/* Completes up to `budget` failing nodes (< 0: all). True when none is left. */
bool pgev_fail_drain(pgev_conn *conn, int budget);
/* Records that libpq failed (with its message, or `fallback`); the
 * connection fails from the loop (pgev_conn_pump). */
void pgev_mark_broken(pgev_conn *conn, const char *fallback);

/* The node is part of an atomic batch: its failure is the batch's. Isolated
 * queries end with their own Sync, shared read-only ones with the shared
 * segment's, and a COPY has none. */
static inline bool
pgev_node_in_batch(const pgev_node *node)
{
    return !node->sync_after && !node->shared && node->kind != PGEV_NODE_COPY &&
           node->kind != PGEV_NODE_CLOSE;
}

/* Deadlines and cancellation (query.c) */
void pgev_node_abandon(pgev_conn *conn, pgev_node *node, int code, const char *msg);
/* Before handing more rows or COPY data to a sent query: its deadline
 * runs now if it is due (true then: nothing more is delivered). */
bool pgev_deadline_check(pgev_conn *conn, pgev_node *node);
/* The error of a query ended by pgev (timeout, cancel) with `code`. */
void pgev_node_abandon_error(const pgev_node *node, int code, pgev_error *err);
void pgev_complete_doomed(pgev_conn *conn);
void pgev_abandon_requested(pgev_conn *conn);
void pgev_cancel_running(pgev_conn *conn, pgev_node *node);
/* The cancel timer fired: re-sends the request; false once the grace period is over. */
bool pgev_cancel_tick(pgev_conn *conn);
void pgev_segment_failure(pgev_conn *conn, int status, const pgev_error *err);
/* Queues an in-flight node that never took effect to be sent again, in
 * a new segment, before anything pending (see pgev_resend_splice). */
void pgev_node_resend(pgev_conn *conn, pgev_node *node);
/* Moves the resend FIFO to the front of pending (at a segment's Sync). */
void pgev_resend_splice(pgev_conn *conn);
/* Lets the gated pending node `query_id` be sent, as `sql` (a string
 * that outlives the node). False when no such node is pending. */
bool pgev_node_ungate(pgev_conn *conn, int64_t query_id, const char *sql);
/* Removes a node not yet sent from pending or resend. */
bool pgev_unsent_remove(pgev_conn *conn, pgev_node *node);
/* Sends the Sync ending an open shared segment; false when the connection broke. */
bool pgev_close_shared_segment(pgev_conn *conn);
void pgev_conn_pump(pgev_conn *conn);

/* cancel.c: PQcancel on a helper thread, one per connection at a time.
 * Returns 0 (started), 1 (one is already on its way) or -1 (failed). */
int pgev_cancel_request(pgev_conn *conn);
/* A cancel request for pg's backend that nobody waits for (the connection
 * is being freed): the thread owns everything it uses. */
void pgev_cancel_fire_and_forget(PGconn *pg);
void pgev_cancel_jobs_free(pgev_conn *conn);

/* dispatch.c */
void pgev_read_results(pgev_conn *conn);
/* A server error for the node: the first one is its outcome (it takes res),
 * later ones are dropped. */
void pgev_node_keep_error(pgev_node *node, PGresult *res);
/* Chooses streaming for the head query if it asks for it (see there). */
void pgev_stream_head(pgev_conn *conn);
/* The head query's last result is in (it was popped): runs its on_done. */
void pgev_complete_query(pgev_conn *conn, pgev_node *node);

/* txn.c. Values of pgev_conn.txn_submitting: */
enum { PGEV_TXN_SUBMIT_NONE = 0, PGEV_TXN_SUBMIT_STMT, PGEV_TXN_SUBMIT_END };
/* True while submits on the connection itself must be held. */
bool pgev_txn_holds(const pgev_conn *conn);
/* Moves a held query with this id to `doomed` (pgev_conn_cancel). */
bool pgev_txn_cancel_held(pgev_conn *conn, int64_t query_id);
/* Releases the open transaction's handle once the connection is freed. */
void pgev_txn_conn_freed(pgev_conn *conn);

/* stmtcache.c */
int pgev_stmt_cache_init(pgev_stmt_cache *c, int capacity);
void pgev_stmt_cache_clear(pgev_stmt_cache *c);
void pgev_stmt_cache_free(pgev_stmt_cache *c);
/* At send: finds or makes the node's cached statement (its name goes to
 * node->stmt_name; *parse says whether to send the Parse first). False:
 * send it unnamed. May send the Close of an evicted statement, or the
 * cache's question about the server session, first. */
bool pgev_stmt_prepare_for_send(pgev_conn *conn, pgev_node *node, bool *parse);
/* The Parse of the node's cached statement came back: it is ready (also
 * after 42P05), or dropped. */
void pgev_stmt_parsed(pgev_conn *conn, pgev_node *node);
/* At send of every query node while the cache is on (before
 * pgev_stmt_prepare_for_send): follows the session's transaction block
 * (node->in_block) and closes stale statements when it may. */
void pgev_stmt_sending(pgev_conn *conn, pgev_node *node);
/* conn.c: the server session ended (closed or lost): the cache empties. */
void pgev_stmt_session_ended(pgev_conn *conn);
/* At completion of a node that used a cached statement: handles a lost or
 * stale statement; true when the node was queued to be sent again. */
bool pgev_stmt_completed(pgev_conn *conn, pgev_node *node);
/* query.c: hands an internal node (Close) to libpq now. */
bool pgev_send_internal(pgev_conn *conn, pgev_node *node);

/* notify.c: hands notifications libpq has parsed to their listeners. */
void pgev_notify_deliver(pgev_conn *conn);
void pgev_listeners_free(pgev_conn *conn);

/* copy.c: COPY FROM STDIN / TO STDOUT. A COPY node waits in `pending`
 * until nothing else is in flight; it is then sent outside pipeline mode
 * and is the only node in flight until it completes. */
/* The submit path behind pgev_conn_submit() and friends; `copy` (for
 * PGEV_NODE_COPY, else NULL) is owned by the node once this succeeds. */
int64_t pgev_submit_node(pgev_conn *conn, enum pgev_node_kind kind, const pgev_query_args *args,
                         pgev_copy *copy, bool args_stable);
/* pgev_conn_submit() for arguments that stay valid, unchanged, until the
 * query's on_done has run (the pool's own copy): they are never copied. */
int64_t pgev_conn_submit_stable(pgev_conn *conn, const pgev_query_args *args);
/* Copies the strings and arrays `in` points to (sql, stmt, the parameters)
 * into one block and points `out` (otherwise a copy of `in`) at them: into
 * `inline_buf` when they fit in `inline_size` bytes, else into a new
 * allocation stored in *heap (NULL when inline). Binary parameters need
 * their lengths (checked by the callers). Returns PGEV_OK or PGEV_ENOMEM. */
int pgev_args_pack(const pgev_query_args *in, pgev_query_args *out, char *inline_buf,
                   size_t inline_size, char **heap);
bool pgev_is_copy_statement(const char *sql);
/* Leaves pipeline mode and sends the COPY (from send_node). */
bool pgev_copy_send(pgev_conn *conn, pgev_node *node);
/* Reads for the COPY at the head of the in-flight FIFO, a bounded step at
 * a time: true when it made progress (call again), false when it waits
 * for input or the application. */
bool pgev_copy_read(pgev_conn *conn, pgev_node *node);
/* pgev_node_abandon() of a COPY: ends or cancels it on the server. */
void pgev_copy_abandoned(pgev_conn *conn, pgev_node *node, const char *why);
/* A COPY OUT paused by the application: the socket is not read. */
bool pgev_copy_paused(const pgev_conn *conn);
/* The read loop's turn has run long enough (dispatch.c): yield. */
bool pgev_turn_over(const pgev_conn *conn);
/* libpq's output buffer drained: a blocked writer gets on_ready. */
void pgev_copy_drained(pgev_conn *conn);

static inline bool
pgev_copy_running(const pgev_conn *conn)
{
    return conn->inflight.head && conn->inflight.head->kind == PGEV_NODE_COPY;
}

#endif /* PGEV_INTERNAL_H */
