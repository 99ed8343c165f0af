/*
 * The pool's private structures and the functions its files share
 * (lib/pool/): pool.c (API, lifetime, the service pass), slots.c (slots,
 * connection callbacks, growth), dispatch.c (query queue and dispatch),
 * acquire.c (acquire, release, reset), janitor.c (maintenance, health
 * checks, drain, deadlines), stats.c (statistics), txn.c
 * (pgev_pool_transaction). The pool is built on the connection's public
 * API plus the hooks named in pool-internal.h; its events go through
 * loop.c (pgev_event).
 */
#ifndef PGEV_POOL_PRIVATE_H
#define PGEV_POOL_PRIVATE_H

#include "pgev-internal.h" /* struct pgev_result / pgev_error, for the pool's own error results */
#include "pool-internal.h"

#include <stdint.h>
#include <time.h>

/*
 * Slot states. Transitions (one setter: pool_slot_set_state):
 *
 *   CONNECTING ─► INIT ─► READY ⇄ RESERVED ─► ACQUIRED ─► RESETTING ─► READY
 *        │          │       │        │           │            │
 *        └──────────┴───────┴────────┴───────────┴────────────┴──► CLOSING ─► RETIRED
 *                                                  (any state may go to RETIRED directly)
 */
typedef enum slot_state {
    SLOT_CONNECTING, /* pgev_conn_new() done, on_connect not yet */
    SLOT_INIT,       /* connected; on_conn_init running */
    SLOT_READY,      /* takes pool queries (outstanding may be > 0) */
    SLOT_RESERVED,   /* promised to the head waiter: takes no new pool
                      * queries, granted once its outstanding ones finish */
    SLOT_ACQUIRED,   /* held by a user through pgev_pool_acquire() */
    SLOT_RESETTING,  /* released: its reset steps (ROLLBACK, UNLISTEN *,
                      * reset_query) running, each under reset_timeout_ms */
    SLOT_CLOSING,    /* pgev_conn_close() called: draining its queries */
    SLOT_RETIRED,    /* finished with; service() frees the connection */
    SLOT_NSTATES
} slot_state;

/* While a released connection's last Sync is unread (released inside a
 * query callback), service() looks at it again after RESET_RECHECK_MS,
 * doubling up to RESET_RECHECK_MAX_MS (a Sync that never comes: a
 * partition, ended by reset_timeout_ms). Normally it is read in the same
 * loop turn as the callback. */
#define RESET_RECHECK_MS 2
#define RESET_RECHECK_MAX_MS 128

typedef struct pool_slot pool_slot;
typedef struct pool_query pool_query;
typedef struct pool_waiter pool_waiter;

struct pool_slot {
    pool_slot *prev, *next;     /* pool->slots */
    pgev_pool *pool;
    pgev_conn *conn;
    slot_state state;
    int outstanding;            /* pool queries handed to conn, not yet complete */
    int resets_running;         /* RESETTING: reset steps not yet complete */
    bool reset_failed;
    bool reset_planned;         /* RESETTING: its steps are queued (see reset_plan) */
    bool unlisten_wanted;       /* RESETTING: the borrower subscribed to channels */
    bool awaiting_sync;         /* RESETTING: the borrower's last Sync is not read yet */
    int sync_rechecks;          /* RESETTING: looks at it so far (the recheck backs off) */
    uint64_t reset_deadline_ms; /* RESETTING: discarded past this */
    int64_t lease;              /* ACQUIRED: the acquire id it is held under */
    pgev_pool_txn *ptx;         /* ACQUIRED by pgev_pool_transaction(): that transaction */
    int64_t uses;               /* pool queries and acquires it took (max_uses) */
    uint64_t generation;        /* pool->generation when it was opened (pgev_pool_reset) */
    bool lost;                  /* ACQUIRED: the connection died while held */
    bool opened;                /* it connected (traced: POOL_CONN_OPEN) */
    int end_status;             /* PGEV_ECONNLOST when lost, for the trace */
    bool standby;               /* a standby_conninfo connection: read-only queries only */
    bool refusing;              /* its connection refused a submit (broken, about to fail) */
    bool checking;              /* READY, running the health check: takes nothing */
    uint64_t created_ms;
    uint64_t expires_ms;        /* 0: no lifetime limit */
    uint64_t last_used_ms;      /* for the idle timeout */
};

struct pool_query {
    pool_query *next;           /* pool->queue while queued */
    pool_slot *slot;            /* once dispatched */
    int64_t id;
    uint64_t deadline_ms;       /* while queued */
    uint64_t query_deadline_ms; /* its own timeout, from the submit; 0: none */
    uint64_t queue_deadline_ms; /* submit + queue_timeout_ms: a re-queued query keeps it */
    int retries;                /* times sent again after its connection lost it once sent */
    bool delivered;             /* on_rows ran: never sent again */
    uint64_t submitted_us;      /* for the latency percentiles */
    pgev_query_args args;       /* on_done/on_rows/arg are the user's; pointers into our copy */
    char *payload;              /* that copy when it did not fit in inline_payload, else NULL */
    /* Last: pool_query_new() clears only what comes before it. */
    _Alignas(void *) char inline_payload[PGEV_INLINE_PAYLOAD];
};

struct pool_waiter {
    pool_waiter *next;
    int64_t id;                 /* what pgev_pool_acquire() returned */
    bool cancelled;             /* pgev_pool_acquire_cancel(): completed by service() */
    uint64_t deadline_ms;
    uint64_t created_us;        /* for the acquire-wait percentiles */
    pgev_pool_acquire_cb cb;
    void *arg;
};

/*
 * Latency histogram for the statistics' percentiles: log-linear buckets of
 * microseconds (exact below 16 us, then 8 buckets per power of two: within
 * 12.5 %), fixed size, no allocation.
 */
#define LAT_LINEAR 16
#define LAT_BUCKETS (LAT_LINEAR + 8 * 40)

typedef struct lat_hist {
    uint64_t count;
    uint32_t buckets[LAT_BUCKETS];
} lat_hist;

typedef enum pool_state {
    POOL_OPEN,
    POOL_DRAINING,              /* pgev_pool_close() called */
    POOL_CLOSED,                /* drained */
    POOL_FREEING,               /* pgev_pool_free() called inside a pool frame: done when it returns */
    POOL_FREED                  /* torn down; the memory goes with the last reference */
} pool_state;

struct pgev_pool {
    struct event_base *base;
    char *conninfo;
    char *reset_query;
    pool_state state;

    /* options, defaults applied */
    int min_conns, max_conns, max_connecting, connect_timeout_ms, conn_max_inflight;
    int stmt_cache_size;
    struct evdns_base *evdns_base; /* borrowed: the application's resolver, or NULL */
    int acquire_timeout_ms, max_waiters, queue_timeout_ms, max_pending;
    int idle_timeout_ms, max_lifetime_ms;
    int query_timeout_ms, health_check_idle_ms;
    int reset_timeout_ms;
    int64_t max_uses;           /* 0: no limit */
    char *standby_conninfo;     /* NULL: no standbys */
    int standby_min_conns, standby_max_conns;
    pgev_pool_init_cb on_conn_init;
    pgev_trace_cb on_trace;     /* NULL: tracing off */
    void *trace_arg;
    void *arg;

    pool_slot *slots;
    int nslots[SLOT_NSTATES];   /* primary slots per state */
    int nstandby[SLOT_NSTATES]; /* standby slots per state */
    pool_query *queue_head, *queue_tail;
    /* No queued query's own timeout (query_deadline_ms) passes before
     * this (UINT64_MAX: none); the deadline timer wakes for it. */
    uint64_t queue_next_timeout_ms;
    int queued;
    pool_waiter *waiters_head, *waiters_tail;
    int nwaiters;
    int outstanding;

    pgev_event *kick_ev;        /* deferred work: service() */
    pgev_event *maint_ev;       /* periodic maintenance */
    pgev_event *deadline_ev;    /* earliest queue / waiter / reset deadline */
    bool kicked;

    /* Lifetime: see the file comment and pool_hold(). */
    int refs;
    int calling;                /* pool frames calling user code now */
    uint64_t generation;        /* bumped by pgev_pool_reset(): older connections are replaced */
    int64_t next_acquire_id;

    pgev_pool_closed_cb on_closed;
    void *closed_arg;

    int connect_failures;       /* consecutive; 0 after a successful connect */
    uint64_t backoff_until_ms;  /* no new connection before this */
    int standby_failures;       /* the same for standby connections */
    uint64_t standby_backoff_until_ms;
    bool standby_wanted;        /* a read-only query found no standby with room */
    uint64_t rng;
    bool grow_wanted;           /* dispatch found every connection busy */
    int64_t next_id;
    pool_query *free_queries;   /* recycled, at most QUERY_CACHE_MAX */
    int nfree_queries;

    pgev_pool_statistics stats;    /* counters only; sizes are computed */
    lat_hist query_latency;     /* pool queries: submit to completion */
    lat_hist acquire_wait;      /* acquires: call to grant */
    char last_conn_error[256];
    char errmsg[PGEV_ERRMSG_MAX];
};

/* ---- pool.c ---- */

void pool_refuse(pgev_pool *pool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* References and frames (pool.c's file comment). */
void pool_hold(pgev_pool *pool);
void pool_drop(pgev_pool *pool);
void pool_enter(pgev_pool *pool);
void pool_leave(pgev_pool *pool);
/* service() soon, from the loop. */
void pool_kick(pgev_pool *pool);
/* " (last connection error: ...)" or "", for timeout messages. */
const char *pool_conn_error_suffix(const pgev_pool *pool, char *buf, size_t size);
void pool_note_conn_error(pgev_pool *pool, pgev_conn *conn, const pgev_error *err);

/* pgev_pool_free() was called: nothing new is accepted, nothing is
 * started, and the pool's events are gone (or about to be). */
static inline bool
pool_dead(const pgev_pool *pool)
{
    return pool->state >= POOL_FREEING;
}

static inline uint64_t
pool_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t
pool_now_ms(void)
{
    return pool_now_us() / 1000u;
}

/* ---- slots.c ---- */

void pool_slot_set_state(pool_slot *slot, slot_state next);
void pool_slot_retire(pool_slot *slot);
void pool_slot_close(pool_slot *slot);
bool pool_slot_expired(const pool_slot *slot, uint64_t now);
int pool_live_slots(const int *counts);
pool_slot *pool_find_slot(const pgev_pool *pool, const pgev_conn *conn);
void pool_slot_open(pgev_pool *pool, uint64_t now, bool standby);
void pool_slot_reap(pgev_pool *pool, pool_slot *slot);
void pool_grow(pgev_pool *pool, uint64_t now);

/* ---- dispatch.c ---- */

void pool_query_fail(pgev_pool *pool, pool_query *pq, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pool_expire_queue(pgev_pool *pool, uint64_t now);
void pool_fail_queue(pgev_pool *pool, int code, const char *why);
void pool_dispatch_queue(pgev_pool *pool, uint64_t now);
void pool_expire_query_timeouts(pgev_pool *pool, uint64_t now);

/* ---- acquire.c ---- */

void pool_waiter_fail(pool_waiter *w, pgev_pool *pool, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pool_finish_reset(pool_slot *slot, uint64_t now);
void pool_expire_waiters(pgev_pool *pool, uint64_t now);
void pool_fail_waiters(pgev_pool *pool, int code, const char *why);
void pool_grant_waiters(pgev_pool *pool, uint64_t now);

/* ---- janitor.c ---- */

bool pool_needs_check_first(pgev_pool *pool, pool_slot *s, uint64_t now);
void pool_health_check(pgev_pool *pool, pool_slot *s, uint64_t now);
void pool_maintain(pgev_pool *pool, uint64_t now);
void pool_check_drained(pgev_pool *pool);
void pool_arm_deadline(pgev_pool *pool, uint64_t now);

/* ---- txn.c ---- */

/* The pool freed ptx's connection (and with it its pgev_txn). */
void pool_txn_conn_freed(pgev_pool_txn *ptx);

/* ---- stats.c ---- */

void pool_lat_add(lat_hist *h, uint64_t us);
double pool_lat_percentile(const lat_hist *h, double q);

/* Tracing (stats.c): one of the pool's own events. */
void pool_trace(pgev_pool *pool, pgev_trace_event event, pgev_conn *conn, int status, const pgev_error *err,
                int64_t duration_us);
/* The connections' on_trace: their records, with the pool added. */
void pool_conn_trace(const pgev_trace *trace, void *arg);

#endif /* PGEV_POOL_PRIVATE_H */
