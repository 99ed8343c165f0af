/*
 * The connection pool. Built on the public connection API (pgev_conn_*)
 * only: a pool connection is an ordinary pgev_conn whose callbacks point
 * back into this file.
 *
 * Shape of a pool:
 *
 *   submit ──► queue (FIFO, bounded, deadlines) ──dispatch──► least-loaded READY slot
 *   acquire ─► waiters (FIFO, bounded, deadlines) ──grant───► idle slot ──release──► READY
 *
 * Every connection lives in a slot, and every slot is on one list; its
 * state (below) says what it is doing, and pool->nslots[] counts slots per
 * state, so the sizes in the statistics are counts kept by the one state
 * setter (slot_set_state). Standby slots (standby_conninfo) are on the same
 * list but counted apart (pool->nstandby[]): they take only read-only pool
 * queries, never acquires, and have their own size limits and backoff.
 *
 * A pool query keeps a copy of its arguments until it completes, so that
 * one its connection lost before sending it, or one the caller marked
 * safe to retry (PGEV_QUERY_RETRY_SAFE, PGEV_QUERY_READONLY), goes to
 * another connection instead of failing.
 *
 * Freeing a pgev_conn from inside one of its own callbacks is deferred by
 * the connection layer, and a deferred free still completes its queries
 * (through our callbacks) afterwards. So the pool frees connections only
 * from its own "kick" event, when no connection callback is running: a
 * slot that should go is marked RETIRED and the next service pass
 * (service()) frees it.
 *
 * Lifetime (one scheme, see pool_hold()): the pool struct is reference
 * counted. The application holds one reference until pgev_pool_free();
 * every query the pool has handed to a connection (pool queries, reset
 * steps, health checks) holds one until its callback has run; every pool
 * frame that calls user code holds one while it runs. pgev_pool_free()
 * from inside such a frame is carried out when the outermost one returns
 * (`calling`); it completes everything and frees the connections, and the
 * memory goes when the last reference does: a connection whose free the
 * connection layer deferred may still complete pool queries into it.
 *
 * Timers: one periodic maintenance timer (idle timeout, lifetime, min
 * size, init timeout, reconnect backoff), one deadline timer for the head
 * of the queue and of the waiters (both FIFOs have one timeout each, so
 * the head always expires first), and the kick event for deferred work.
 * The connection layer's event adapter (loop.c) is bound to one
 * connection, so the pool's three events are made here.
 */
#include "pgev-internal.h" /* struct pgev_result / pgev_error, for the pool's own error results */
#include "pool-internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

/*
 * Slot states. Transitions (one setter: slot_set_state):
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
 * query callback), service() looks at it again this often. */
#define RESET_RECHECK_MS 2

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
    uint64_t reset_deadline_ms; /* RESETTING: discarded past this */
    int64_t lease;              /* ACQUIRED: the acquire id it is held under */
    int64_t uses;               /* pool queries and acquires it took (max_uses) */
    uint64_t generation;        /* pool->generation when it was opened (pgev_pool_reset) */
    bool lost;                  /* ACQUIRED: the connection died while held */
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

static int
lat_bucket(uint64_t us)
{
    if (us < LAT_LINEAR)
        return (int)us;
    int msb = 63 - __builtin_clzll(us);  /* >= 4 */
    int b = LAT_LINEAR + (msb - 4) * 8 + (int)((us >> (msb - 3)) & 7);
    return b < LAT_BUCKETS ? b : LAT_BUCKETS - 1;
}

/* The middle of bucket b, in microseconds. */
static double
lat_value(int b)
{
    if (b < LAT_LINEAR)
        return b;
    int msb = (b - LAT_LINEAR) / 8 + 4, sub = (b - LAT_LINEAR) % 8;
    double low = (double)(1ull << msb) * (1.0 + sub / 8.0);
    return low * (1.0 + 1.0 / 16.0);
}

static void
lat_add(lat_hist *h, uint64_t us)
{
    uint32_t *b = &h->buckets[lat_bucket(us)];
    if (*b < UINT32_MAX)
        (*b)++;
    h->count++;
}

static double
lat_percentile(const lat_hist *h, double q)
{
    if (h->count == 0)
        return 0.0;
    uint64_t want = (uint64_t)(q * (double)h->count), seen = 0;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen > want)
            return lat_value(b);
    }
    return lat_value(LAT_BUCKETS - 1);
}

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
    int acquire_timeout_ms, max_waiters, queue_timeout_ms, max_pending;
    int idle_timeout_ms, max_lifetime_ms;
    int query_timeout_ms, health_check_idle_ms;
    int reset_timeout_ms;
    int64_t max_uses;           /* 0: no limit */
    char *standby_conninfo;     /* NULL: no standbys */
    int standby_min_conns, standby_max_conns;
    pgev_pool_init_cb on_conn_init;
    void *arg;

    pool_slot *slots;
    int nslots[SLOT_NSTATES];   /* primary slots per state */
    int nstandby[SLOT_NSTATES]; /* standby slots per state */
    pool_query *queue_head, *queue_tail;
    int queued;
    pool_waiter *waiters_head, *waiters_tail;
    int nwaiters;
    int outstanding;

    struct event *kick_ev;      /* deferred work: service() */
    struct event *maint_ev;     /* periodic maintenance */
    struct event *deadline_ev;  /* earliest queue / waiter / reset deadline */
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

    pgev_pool_stats_t stats;    /* counters only; sizes are computed */
    lat_hist query_latency;     /* pool queries: submit to completion */
    lat_hist acquire_wait;      /* acquires: call to grant */
    char last_conn_error[256];
    char errmsg[PGEV_ERRMSG_MAX];
};

static void service(pgev_pool *pool);
static void pool_teardown(pgev_pool *pool);
static void pool_destroy(pgev_pool *pool);

/* Recycled query records kept per pool. */
#define QUERY_CACHE_MAX 1024

static pool_query *
pool_query_new(pgev_pool *pool)
{
    pool_query *pq = pool->free_queries;
    if (pq) {
        pool->free_queries = pq->next;
        pool->nfree_queries--;
    } else if (!(pq = malloc(sizeof(*pq)))) {
        return NULL;
    }
    memset(pq, 0, offsetof(pool_query, inline_payload));
    return pq;
}

static void
pool_query_free(pgev_pool *pool, pool_query *pq)
{
    free(pq->payload);
    if (pool->nfree_queries < QUERY_CACHE_MAX) {
        pq->next = pool->free_queries;
        pool->free_queries = pq;
        pool->nfree_queries++;
    } else {
        free(pq);
    }
}

/* ---- small helpers ------------------------------------------------------ */

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t
now_ms(void)
{
    return now_us() / 1000u;
}

/* xorshift64*: jitter only, per pool (no global state). */
static uint64_t
pool_random(pgev_pool *pool)
{
    uint64_t x = pool->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    pool->rng = x;
    return x * 2685821657736338717ull;
}

static void
pool_refuse(pgev_pool *pool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
pool_refuse(pgev_pool *pool, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pool->errmsg, sizeof(pool->errmsg), fmt, ap);
    va_end(ap);
}

/* pgev_pool_free() was called: nothing new is accepted, nothing is
 * started, and the pool's events are gone (or about to be). */
static bool
pool_dead(const pgev_pool *pool)
{
    return pool->state >= POOL_FREEING;
}

static void
kick(pgev_pool *pool)
{
    if (pool->kicked || pool_dead(pool))
        return;
    pool->kicked = true;
    event_active(pool->kick_ev, EV_TIMEOUT, 0);
}

/*
 * References (see the file comment). A query the pool hands to a
 * connection takes one (pool_hold) and its callback gives it back
 * (pool_drop) as the last thing it does; the memory is freed when the
 * count reaches 0, so no callback of ours can find it gone.
 */
static void
pool_hold(pgev_pool *pool)
{
    pool->refs++;
}

static void
pool_drop(pgev_pool *pool)
{
    assert(pool->refs > 0);
    if (--pool->refs == 0)
        pool_destroy(pool);
}

/* User code runs between enter and leave. A pgev_pool_free() from inside
 * waits for the outermost leave, so the pool code up the stack never
 * finds its queues or slots torn down under it; it checks pool_dead()
 * after each user call and stops. The pool may be gone after leave. */
static void
pool_enter(pgev_pool *pool)
{
    pool->refs++;
    pool->calling++;
}

static void
pool_leave(pgev_pool *pool)
{
    assert(pool->calling > 0);
    if (--pool->calling == 0 && pool->state == POOL_FREEING)
        pool_teardown(pool);
    pool_drop(pool);
}

/*
 * Error results for queries that never reached a connection (or could not
 * be handed to one). The pool has no connection to produce them, so it
 * fills the result the way the connection layer does.
 */
static void
complete_query_error(pgev_pool *pool, pool_query *pq, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
complete_query_error(pgev_pool *pool, pool_query *pq, int code, const char *fmt, ...)
{
    pgev_error err;
    char msg[PGEV_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pgev_error_set(&err, code, "%s", msg);
    pgev_result res = { .status = code, .query_id = 0, .rows = 0, .error = &err };
    pool->stats.queries_failed++;
    if (code == PGEV_ETIMEOUT)
        pool->stats.queries_timed_out++;
    lat_add(&pool->query_latency, now_us() - pq->submitted_us);
    pgev_result_cb cb = pq->args.on_done;
    void *arg = pq->args.arg;
    pool_query_free(pool, pq);
    if (cb)
        cb(NULL, &res, arg);
}

static void
complete_waiter_error(pool_waiter *w, pgev_pool *pool, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
complete_waiter_error(pool_waiter *w, pgev_pool *pool, int code, const char *fmt, ...)
{
    pgev_error err;
    char msg[PGEV_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pgev_error_set(&err, code, "%s", msg);
    pgev_pool_acquire_cb cb = w->cb;
    void *arg = w->arg;
    free(w);
    cb(pool, NULL, &err, arg);
}

/* " (last connection error: ...)" or "", for timeout messages. */
static const char *
conn_error_suffix(const pgev_pool *pool, char *buf, size_t size)
{
    if (pool->last_conn_error[0] == '\0')
        return "";
    snprintf(buf, size, " (last connection error: %s)", pool->last_conn_error);
    return buf;
}

static void
note_conn_error(pgev_pool *pool, pgev_conn *conn, const pgev_error *err)
{
    const char *msg = err ? pgev_error_message(err) : pgev_conn_errmsg(conn);
    snprintf(pool->last_conn_error, sizeof(pool->last_conn_error), "%s",
             msg && msg[0] ? msg : "connection failed");
}

/* ---- slots -------------------------------------------------------------- */

/* The one state setter: keeps the per-state counts. */
static void
slot_set_state(pool_slot *slot, slot_state next)
{
    pgev_pool *pool = slot->pool;
    switch (next) {
    case SLOT_CONNECTING:
        break;
    case SLOT_INIT:
        assert(slot->state == SLOT_CONNECTING);
        break;
    case SLOT_READY:
        assert(slot->state == SLOT_CONNECTING || slot->state == SLOT_INIT ||
               slot->state == SLOT_RESERVED || slot->state == SLOT_ACQUIRED ||
               slot->state == SLOT_RESETTING);
        break;
    case SLOT_RESERVED:
        assert(slot->state == SLOT_READY);
        break;
    case SLOT_ACQUIRED:
        assert(slot->state == SLOT_READY || slot->state == SLOT_RESERVED);
        break;
    case SLOT_RESETTING:
        assert(slot->state == SLOT_ACQUIRED);
        break;
    case SLOT_CLOSING:
        assert(slot->state != SLOT_RETIRED);
        break;
    case SLOT_RETIRED:
        break;
    default:
        assert(!"unknown slot state");
    }
    int *counts = slot->standby ? pool->nstandby : pool->nslots;
    counts[slot->state]--;
    counts[next]++;
    slot->state = next;
}

/* Hands the slot to service() for freeing; never frees here (we may be
 * inside one of its connection's callbacks). */
static void
slot_retire(pool_slot *slot)
{
    if (slot->state == SLOT_RETIRED)
        return;
    slot_set_state(slot, SLOT_RETIRED);
    kick(slot->pool);
}

/* Closes a slot the pool no longer wants: at once when nothing runs on it,
 * otherwise gracefully (its queries finish first). */
static void
slot_close(pool_slot *slot)
{
    slot->pool->stats.conns_closed++;
    if (slot->outstanding == 0 || pgev_conn_state(slot->conn) != PGEV_CONN_READY ||
        pgev_conn_close(slot->conn) != PGEV_OK) {
        slot_retire(slot);
        return;
    }
    slot_set_state(slot, SLOT_CLOSING);
}

/* A connection that should take no new work and go once idle: too old,
 * used max_uses times, or older than the last pgev_pool_reset(). */
static bool
slot_expired(const pool_slot *slot, uint64_t now)
{
    const pgev_pool *pool = slot->pool;
    return (slot->expires_ms != 0 && now >= slot->expires_ms) ||
           (pool->max_uses > 0 && slot->uses >= pool->max_uses) || slot->generation != pool->generation;
}

/* A READY slot that can take one more pool query. */
static bool
slot_dispatchable(const pool_slot *slot, uint64_t now)
{
    return slot->state == SLOT_READY && !slot->checking && !slot->refusing &&
           slot->outstanding < slot->pool->conn_max_inflight && !slot_expired(slot, now) &&
           pgev_conn_state(slot->conn) == PGEV_CONN_READY;
}

static void health_check(pgev_pool *pool, pool_slot *s, uint64_t now);

/* An idle connection unused for health_check_idle_ms answers an empty
 * query before it takes work (pgev.h promises it): it starts that check
 * now and is skipped until the check has passed. */
static bool
needs_check_first(pgev_pool *pool, pool_slot *s, uint64_t now)
{
    if (pool->health_check_idle_ms <= 0 || s->outstanding != 0 ||
        now - s->last_used_ms < (uint64_t)pool->health_check_idle_ms)
        return false;
    health_check(pool, s, now);
    return true;
}

static pool_slot *
least_loaded(pgev_pool *pool, bool standby, uint64_t now)
{
    pool_slot *best = NULL;
    for (pool_slot *s = pool->slots; s; s = s->next)
        if (s->standby == standby && slot_dispatchable(s, now) &&
            (!best || s->outstanding < best->outstanding) && !needs_check_first(pool, s, now))
            best = s;
    return best;
}

/* Where a query goes now: read-only ones to the least-loaded standby with
 * room, else (like every other query) to the least-loaded primary one. */
static pool_slot *
pick_slot(pgev_pool *pool, const pool_query *pq, uint64_t now)
{
    if (pool->standby_conninfo && (pq->args.flags & PGEV_QUERY_READONLY)) {
        pool_slot *s = least_loaded(pool, true, now);
        if (s)
            return s;
        pool->standby_wanted = true;
    }
    return least_loaded(pool, false, now);
}

/* Slots of one kind that are not retired, and of those the ones on their
 * way up. */
static int
live_slots(const int *counts)
{
    int live = 0;
    for (int st = 0; st < SLOT_NSTATES; st++)
        live += st == SLOT_RETIRED ? 0 : counts[st];
    return live;
}

static pool_slot *
find_slot(const pgev_pool *pool, const pgev_conn *conn)
{
    for (pool_slot *s = pool->slots; s; s = s->next)
        if (s->conn == conn)
            return s;
    return NULL;
}

static void on_conn_connect(pgev_conn *conn, const pgev_error *err, void *arg);
static void on_conn_disconnect(pgev_conn *conn, const pgev_error *err, void *arg);

static void
open_slot(pgev_pool *pool, uint64_t now, bool standby)
{
    pool_slot *slot = calloc(1, sizeof(*slot));
    if (!slot)
        return;
    slot->pool = pool;
    slot->standby = standby;
    slot->state = SLOT_CONNECTING;
    slot->created_ms = now;
    slot->last_used_ms = now;
    slot->generation = pool->generation;
    if (pool->max_lifetime_ms > 0) {
        uint64_t jitter = pool_random(pool) % ((uint64_t)pool->max_lifetime_ms / 10 + 1);
        slot->expires_ms = now + (uint64_t)pool->max_lifetime_ms - jitter;
    }
    pgev_conn_options copts = {
        .connect_timeout_ms = pool->connect_timeout_ms,
        .max_inflight = pool->conn_max_inflight,
        .stmt_cache_size = pool->stmt_cache_size,
        .on_connect = on_conn_connect,
        .on_disconnect = on_conn_disconnect,
        .arg = slot,
    };
    slot->conn = pgev_conn_new(pool->base, standby ? pool->standby_conninfo : pool->conninfo, &copts);
    if (!slot->conn) {
        free(slot);
        pool->stats.connect_failures++;
        snprintf(pool->last_conn_error, sizeof(pool->last_conn_error),
                 "could not create a connection (out of memory)");
        return;
    }
    slot->next = pool->slots;
    if (pool->slots)
        pool->slots->prev = slot;
    pool->slots = slot;
    (standby ? pool->nstandby : pool->nslots)[SLOT_CONNECTING]++;
}

/* Frees a RETIRED slot's connection and the slot. From service() only: no
 * connection callback is running, so pgev_conn_free() completes at once. */
static void
reap_slot(pgev_pool *pool, pool_slot *slot)
{
    pgev_conn *conn = slot->conn;
    slot->conn = NULL;
    pgev_conn_free(conn); /* may complete user queries (init hook, acquired misuse) */
    if (slot->prev)
        slot->prev->next = slot->next;
    else
        pool->slots = slot->next;
    if (slot->next)
        slot->next->prev = slot->prev;
    (slot->standby ? pool->nstandby : pool->nslots)[SLOT_RETIRED]--;
    assert(slot->outstanding == 0);
    free(slot);
}

/* ---- connection callbacks ----------------------------------------------- */

/* After `failures` consecutive failed connects: no new one before the
 * returned time. */
static uint64_t
backoff(pgev_pool *pool, int failures, uint64_t now)
{
    int shift = failures < 10 ? failures : 10;
    uint64_t delay = 50u << shift; /* 100 ms after the first failure, doubling */
    if (delay > PGEV_POOL_BACKOFF_MAX_MS)
        delay = PGEV_POOL_BACKOFF_MAX_MS;
    /* Jitter: anywhere in [delay/2, delay], so that pools restarted together spread out. */
    delay = delay / 2 + pool_random(pool) % (delay / 2 + 1);
    return now + delay;
}

static void
on_conn_connect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    pool_slot *slot = arg;
    pgev_pool *pool = slot->pool;
    if (pool_dead(pool) || slot->state != SLOT_CONNECTING)
        return;
    pool_enter(pool);
    uint64_t now = now_ms();
    if (err) {
        pool->stats.connect_failures++;
        note_conn_error(pool, conn, err);
        if (slot->standby)
            pool->standby_backoff_until_ms = backoff(pool, ++pool->standby_failures, now);
        else
            pool->backoff_until_ms = backoff(pool, ++pool->connect_failures, now);
        slot_retire(slot);
    } else {
        pool->stats.connects++;
        if (slot->standby) {
            pool->standby_failures = 0;
            pool->standby_backoff_until_ms = 0;
        } else {
            pool->connect_failures = 0;
            pool->backoff_until_ms = 0;
            pool->last_conn_error[0] = '\0';
        }
        slot->last_used_ms = now;
        if (pool->on_conn_init) {
            slot_set_state(slot, SLOT_INIT);
            slot->created_ms = now; /* the init deadline counts from here */
            pool->on_conn_init(pool, conn, pool->arg);
        } else {
            slot_set_state(slot, SLOT_READY);
        }
        kick(pool);
    }
    pool_leave(pool);
}

static void
on_conn_disconnect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    pool_slot *slot = arg;
    pgev_pool *pool = slot->pool;
    if (pool_dead(pool))
        return;
    switch (slot->state) {
    case SLOT_RETIRED:
        return;
    case SLOT_CLOSING:
        slot_retire(slot);
        return;
    case SLOT_ACQUIRED:
        /* The user still holds the pointer: freed on release. */
        pool->stats.conns_lost++;
        note_conn_error(pool, conn, err);
        slot->lost = true;
        return;
    default:
        pool->stats.conns_lost++;
        note_conn_error(pool, conn, err);
        slot_retire(slot);
        return;
    }
}

/* Completion of a pool query on its connection. */
static void requeue_front(pgev_pool *pool, pool_query *pq);

/* Attempts for a query marked safe to retry whose connection was lost
 * after it was sent (several connections may be dying at once). */
#define POOL_RETRY_MAX 3

/* A query its connection lost: sent again elsewhere when it never left
 * the connection (as often as that happens, within its queue deadline), or
 * when the caller said running it twice is harmless (POOL_RETRY_MAX) and
 * none of its rows reached the caller yet (they would arrive twice). */
static bool
worth_retrying(const pgev_pool *pool, const pool_query *pq, const pgev_result *res)
{
    if (pgev_result_status(res) != PGEV_ECONNLOST || pool->state != POOL_OPEN || pq->delivered)
        return false;
    if (!pgev_result_sent(res))
        return true;
    return (pq->args.flags & (PGEV_QUERY_RETRY_SAFE | PGEV_QUERY_READONLY)) && pq->retries < POOL_RETRY_MAX;
}

static void
on_query_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    pool_query *pq = arg;
    pool_slot *slot = pq->slot;
    pgev_pool *pool = slot->pool;
    slot->outstanding--;
    pool->outstanding--;
    if (worth_retrying(pool, pq, res)) {
        if (pgev_result_sent(res))
            pq->retries++;
        pq->slot = NULL;
        pool->stats.queries_retried++;
        requeue_front(pool, pq);
        kick(pool);
        pool_drop(pool);   /* the dispatched query's reference */
        return;
    }
    pgev_result_cb cb = pq->args.on_done;
    void *user = pq->args.arg;
    lat_add(&pool->query_latency, now_us() - pq->submitted_us);
    pool_query_free(pool, pq);
    if (pgev_result_status(res) != PGEV_OK)
        pool->stats.queries_failed++;
    pool_enter(pool);
    if (cb)
        cb(conn, res, user);
    if (!pool_dead(pool)) {
        slot->last_used_ms = now_ms();
        kick(pool);
    }
    pool_leave(pool);
    pool_drop(pool);
}

static void
on_query_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    pool_query *pq = arg;
    pgev_pool *pool = pq->slot->pool;
    pq->delivered = true;
    pool_enter(pool);
    pq->args.on_rows(conn, res, pq->args.arg);
    pool_leave(pool);   /* pq's reference keeps the pool */
}

/* Completion of one reset step (ROLLBACK, UNLISTEN *, reset_query). */
static void
on_reset_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    pool_slot *slot = arg;
    pgev_pool *pool = slot->pool;
    (void)conn;
    slot->resets_running--;
    if (!pool_dead(pool)) {
        if (pgev_result_status(res) != PGEV_OK)
            slot->reset_failed = true;
        /* The verdict waits for service(): inside this callback the
         * connection has not yet read the query's Sync, so libpq still
         * reports the transaction status as ACTIVE. */
        if (slot->resets_running == 0)
            kick(pool);
    }
    pool_drop(pool);
}

/* Queues one reset step on a released connection. */
static bool
reset_step(pool_slot *slot, const char *sql)
{
    pgev_query_args args = { .sql = sql, .flags = PGEV_QUERY_NOCACHE, .timeout_ms = -1,
                             .on_done = on_reset_done, .arg = slot };
    if (pgev_conn_submit(slot->conn, &args) < 0)
        return false;
    pool_hold(slot->pool);
    slot->resets_running++;
    return true;
}

/*
 * Queues what a released connection needs before its next borrower, all
 * at once (each step its own Sync): the rollback of a transaction left
 * open (a pgev_txn through its own rollback, so that the statements it
 * holds run first), UNLISTEN * when the borrower subscribed, and
 * reset_query. Called at release, or, when the borrower's last Sync was
 * not read yet (a release from inside a query callback: libpq reports
 * ACTIVE until then), by service() once it has been: a clean session then
 * needs no ROLLBACK round trip.
 */
static void
reset_plan(pool_slot *slot)
{
    pgev_pool *pool = slot->pool;
    pgev_conn *conn = slot->conn;
    slot->reset_planned = true;
    slot->awaiting_sync = false;
    bool busy = pgev_conn_pending(conn) + pgev_conn_inflight(conn) > 0;
    pgev_txn *txn = pgev_conn_open_txn(conn);
    if (txn) {
        if (pgev_txn_rollback(txn, on_reset_done, slot) == PGEV_OK) {
            pool_hold(pool);
            slot->resets_running++;
        } else {
            slot->reset_failed = true;
        }
    } else if (busy || PQtransactionStatus(pgev_conn_pg(conn)) != PQTRANS_IDLE) {
        if (!reset_step(slot, "ROLLBACK"))
            slot->reset_failed = true;
    }
    if (slot->unlisten_wanted && !slot->reset_failed) {
        slot->unlisten_wanted = false;
        if (!reset_step(slot, "UNLISTEN *"))
            slot->reset_failed = true;
    }
    if (pool->reset_query && !slot->reset_failed && !reset_step(slot, pool->reset_query))
        slot->reset_failed = true;
    if (slot->resets_running > 0)
        pool->stats.resets++;
}

/* A RESETTING slot with no step running: its steps queued now, back into
 * service when the session is idle again, or discarded (a step failed,
 * the connection broke, the session is not idle, or reset_timeout_ms
 * passed). */
static void
finish_reset(pool_slot *slot, uint64_t now)
{
    pgev_pool *pool = slot->pool;
    bool up = pgev_conn_state(slot->conn) == PGEV_CONN_READY;
    PGTransactionStatusType txn = up ? PQtransactionStatus(pgev_conn_pg(slot->conn)) : PQTRANS_UNKNOWN;
    if (now >= slot->reset_deadline_ms) {
        pool->stats.reset_timeouts++;
        slot_retire(slot);  /* its steps complete (ECANCELLED) when it is freed */
        return;
    }
    if (slot->reset_failed || !up) {
        slot_close(slot);
        return;
    }
    bool idle_conn = pgev_conn_pending(slot->conn) + pgev_conn_inflight(slot->conn) == 0;
    if (txn == PQTRANS_ACTIVE && idle_conn) {
        slot->awaiting_sync = true;  /* the next pass looks again (arm_deadline) */
        return;
    }
    if (!slot->reset_planned) {
        reset_plan(slot);
        if (slot->resets_running > 0 || slot->reset_failed) {
            if (slot->reset_failed && slot->resets_running == 0)
                slot_close(slot);
            return;
        }
        txn = PQtransactionStatus(pgev_conn_pg(slot->conn));
    }
    if (txn != PQTRANS_IDLE || slot_expired(slot, now)) {
        slot_close(slot);
        return;
    }
    slot->last_used_ms = now;
    slot_set_state(slot, SLOT_READY);
}

/* ---- queries ------------------------------------------------------------ */

/* Hands a query to a slot's connection. Returns the connection's status. */
static int64_t
dispatch(pgev_pool *pool, pool_slot *slot, pool_query *pq)
{
    pgev_query_args args = pq->args;
    args.on_done = on_query_done;
    args.on_rows = pq->args.on_rows ? on_query_rows : NULL;
    args.arg = pq;
    if (pq->query_deadline_ms) {
        /* What is left of its timeout after the time in the pool's queue. */
        uint64_t now = now_ms();
        args.timeout_ms = pq->query_deadline_ms > now ? (int)(pq->query_deadline_ms - now) : 1;
    }
    pq->slot = slot;
    /* The connection borrows pq's copy: it outlives the query there. */
    int64_t rc = pgev_conn_submit_stable(slot->conn, &args);
    if (rc < 0) {
        pq->slot = NULL;
        pool_refuse(pool, "%s", pgev_conn_errmsg(slot->conn));
        /* A connection that broke but has not failed yet (that happens from
         * its loop): it takes nothing more; the query goes elsewhere. */
        if (rc == PGEV_ECLOSED)
            slot->refusing = true;
        return rc;
    }
    if (slot->standby)
        pool->stats.queries_standby++;
    else if (slot->outstanding > 0)
        pool->grow_wanted = true; /* even the least-loaded connection is busy */
    if (slot->standby && slot->outstanding > 0)
        pool->standby_wanted = true;
    slot->outstanding++;
    slot->uses++;
    pool->outstanding++;
    pool_hold(pool);    /* until on_query_done */
    return rc;
}

int64_t
pgev_pool_submit(pgev_pool *pool, const pgev_query_args *args)
{
    if (!pool)
        return PGEV_EINVAL;
    if (pool->state != POOL_OPEN) {
        pool_refuse(pool, "pool is %s: no new queries",
                    pool->state == POOL_DRAINING ? "closing" : pool_dead(pool) ? "freed" : "closed");
        return PGEV_ECLOSED;
    }
    if (!args || (!args->sql == !args->stmt)) {
        pool_refuse(pool, "%s", !args ? "query arguments are NULL"
                                : args->sql ? "set sql or stmt, not both: prepare statements "
                                              "per connection in on_conn_init"
                                            : "query has neither sql nor stmt");
        return PGEV_EINVAL;
    }
    /* nparams > 0 with param_values NULL: every parameter is NULL, as on
     * a connection (libpq's rule). */
    if (args->nparams < 0 || args->nparams > PGEV_MAX_PARAMS) {
        pool_refuse(pool, "query has %d parameters; the protocol allows 0 to %d", args->nparams,
                    PGEV_MAX_PARAMS);
        return PGEV_EINVAL;
    }
    for (int i = 0; args->param_formats && args->param_values && i < args->nparams; i++) {
        if (args->param_formats[i] == 1 && args->param_values[i] &&
            (!args->param_lengths || args->param_lengths[i] < 0)) {
            pool_refuse(pool, "binary parameter $%d needs a length (param_lengths)", i + 1);
            return PGEV_EINVAL;
        }
    }
    pool_query *pq = pool_query_new(pool);
    /* Its own copy of the arguments, kept until it completes: it may have
     * to go to another connection. */
    if (!pq || pgev_args_pack(args, &pq->args, pq->inline_payload, sizeof(pq->inline_payload),
                              &pq->payload) != PGEV_OK) {
        if (pq)
            pool_query_free(pool, pq);
        pool_refuse(pool, "out of memory");
        return PGEV_ENOMEM;
    }
    pq->id = ++pool->next_id;
    pq->submitted_us = now_us();
    int timeout_ms = args->timeout_ms == 0 ? pool->query_timeout_ms : args->timeout_ms;
    uint64_t now = pq->submitted_us / 1000u;   /* one clock read per submit */
    if (timeout_ms > 0)
        pq->query_deadline_ms = now + (uint64_t)timeout_ms;
    pq->queue_deadline_ms = now + (uint64_t)pool->queue_timeout_ms;

    /* Straight to a connection when nothing queued is ahead of it. */
    pool_slot *slot;
    while (!pool->queue_head && (slot = pick_slot(pool, pq, now)) != NULL) {
        int64_t drc = dispatch(pool, slot, pq);
        if (drc == PGEV_ECLOSED)
            continue;   /* that connection is going away: another one, or the queue */
        if (drc < 0) {
            pool_query_free(pool, pq);
            return drc;
        }
        pool->stats.queries++;
        if (pool->grow_wanted || pool->standby_wanted)
            kick(pool);
        return pq->id;
    }

    if (pool->queued >= pool->max_pending) {
        pool_query_free(pool, pq);
        pool_refuse(pool, "the pool's queue is full (%d queries waiting for a connection)",
                    pool->queued);
        return PGEV_EQUEUEFULL;
    }
    pq->deadline_ms = pq->queue_deadline_ms;
    if (pool->queue_tail)
        pool->queue_tail->next = pq;
    else
        pool->queue_head = pq;
    pool->queue_tail = pq;
    pool->queued++;
    pool->stats.queries++;
    kick(pool);
    return pq->id;
}

int64_t
pgev_pool_query(pgev_pool *pool, const char *sql, pgev_result_cb on_done, void *arg)
{
    return pgev_pool_query_params(pool, sql, 0, NULL, on_done, arg);
}

int64_t
pgev_pool_query_params(pgev_pool *pool, const char *sql, int nparams, const char *const *values,
                       pgev_result_cb on_done, void *arg)
{
    pgev_query_args args = {
        .sql = sql, .nparams = nparams, .param_values = values, .on_done = on_done, .arg = arg,
    };
    if (!sql && pool) {
        pool_refuse(pool, "sql is NULL");
        return PGEV_EINVAL;
    }
    return pgev_pool_submit(pool, &args);
}

int64_t
pgev_pool_execute(pgev_pool *pool, const char *name, int nparams, const char *const *values,
                  pgev_result_cb on_done, void *arg)
{
    pgev_query_args args = {
        .stmt = name, .nparams = nparams, .param_values = values, .on_done = on_done, .arg = arg,
    };
    if (!name && pool) {
        pool_refuse(pool, "statement name is NULL");
        return PGEV_EINVAL;
    }
    return pgev_pool_submit(pool, &args);
}

/* ---- acquire / release -------------------------------------------------- */

int64_t
pgev_pool_acquire(pgev_pool *pool, pgev_pool_acquire_cb cb, void *arg)
{
    if (!pool)
        return PGEV_EINVAL;
    if (!cb) {
        pool_refuse(pool, "acquire callback is NULL");
        return PGEV_EINVAL;
    }
    if (pool->state != POOL_OPEN) {
        pool_refuse(pool, "pool is %s: no new acquires",
                    pool->state == POOL_DRAINING ? "closing" : pool_dead(pool) ? "freed" : "closed");
        return PGEV_ECLOSED;
    }
    if (pool->nwaiters >= pool->max_waiters) {
        pool_refuse(pool, "too many acquires waiting (%d, max_waiters)", pool->nwaiters);
        return PGEV_EQUEUEFULL;
    }
    pool_waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        pool_refuse(pool, "out of memory");
        return PGEV_ENOMEM;
    }
    w->id = ++pool->next_acquire_id;
    w->cb = cb;
    w->arg = arg;
    w->deadline_ms = now_ms() + (uint64_t)pool->acquire_timeout_ms;
    w->created_us = now_us();
    if (pool->waiters_tail)
        pool->waiters_tail->next = w;
    else
        pool->waiters_head = w;
    pool->waiters_tail = w;
    pool->nwaiters++;
    kick(pool); /* granted from the loop, never inside this call */
    return w->id;
}

/* Takes w off the waiters' list (it may be anywhere in it). */
static void
unlink_waiter(pgev_pool *pool, pool_waiter *w)
{
    pool_waiter *prev = NULL;
    for (pool_waiter *cur = pool->waiters_head; cur; prev = cur, cur = cur->next) {
        if (cur != w)
            continue;
        if (prev)
            prev->next = cur->next;
        else
            pool->waiters_head = cur->next;
        if (pool->waiters_tail == cur)
            pool->waiters_tail = prev;
        pool->nwaiters--;
        return;
    }
}

/* The cancelled acquires' callbacks run from service(). */
int
pgev_pool_acquire_cancel(pgev_pool *pool, int64_t acquire_id)
{
    if (!pool)
        return PGEV_EINVAL;
    for (pool_waiter *w = pool->waiters_head; w; w = w->next) {
        if (w->id == acquire_id && !w->cancelled) {
            w->cancelled = true;
            kick(pool);
            return PGEV_OK;
        }
    }
    pool_refuse(pool, "acquire %lld is not waiting (granted, timed out, cancelled or unknown)",
                (long long)acquire_id);
    return PGEV_EINVAL;
}

int
pgev_pool_release(pgev_pool *pool, pgev_conn *conn, int64_t acquire_id)
{
    if (!pool || !conn)
        return PGEV_EINVAL;
    pool_slot *slot = find_slot(pool, conn);
    if (!slot || slot->state != SLOT_ACQUIRED) {
        pool_refuse(pool, "release refused: the connection is not acquired from this pool "
                          "(released already?)");
        return PGEV_EINVAL;
    }
    if (slot->lease != acquire_id) {
        pool_refuse(pool, "release refused: the connection is held under acquire %lld, not %lld "
                          "(that one was released already)",
                    (long long)slot->lease, (long long)acquire_id);
        return PGEV_EINVAL;
    }
    slot->lease = 0;
    kick(pool);
    /* Nothing of the borrower's reaches the next one: its notification
     * callbacks go now (the server side is unsubscribed by the reset). */
    slot->unlisten_wanted = pgev_conn_drop_listeners(conn) > 0;
    uint64_t now = now_ms();
    if (slot->lost || pgev_conn_state(conn) != PGEV_CONN_READY || pool_dead(pool)) {
        slot_retire(slot);
        return PGEV_OK;
    }
    slot_set_state(slot, SLOT_RESETTING);
    slot->reset_failed = false;
    slot->reset_planned = false;
    slot->reset_deadline_ms = now + (uint64_t)pool->reset_timeout_ms;
    slot->last_used_ms = now;
    bool busy = pgev_conn_pending(conn) + pgev_conn_inflight(conn) > 0;
    if (busy || PQtransactionStatus(pgev_conn_pg(conn)) != PQTRANS_ACTIVE) {
        reset_plan(slot);
        if (slot->reset_failed && slot->resets_running == 0) {
            slot_close(slot); /* nothing could be queued: replace it */
            return PGEV_OK;
        }
    }
    /* Otherwise released inside a query callback: service() decides once
     * the Sync is read. Either way service() hands it on (finish_reset). */
    return PGEV_OK;
}

int
pgev_pool_init_done(pgev_pool *pool, pgev_conn *conn, bool ok)
{
    if (!pool || !conn)
        return PGEV_EINVAL;
    pool_slot *slot = find_slot(pool, conn);
    if (!slot || slot->state != SLOT_INIT) {
        pool_refuse(pool, "connection is not initialising in this pool");
        return PGEV_EINVAL;
    }
    if (ok && pgev_conn_state(conn) == PGEV_CONN_READY) {
        slot->last_used_ms = now_ms();
        slot_set_state(slot, SLOT_READY);
    } else {
        pool->stats.connect_failures++;
        snprintf(pool->last_conn_error, sizeof(pool->last_conn_error),
                 "the init hook (on_conn_init) failed");
        slot_retire(slot);
    }
    kick(pool);
    return PGEV_OK;
}

/* ---- service: the pool's one place for deferred work -------------------- */

static void
expire_deadlines(pgev_pool *pool, uint64_t now)
{
    char why[320];
    while (pool->queue_head && pool->queue_head->deadline_ms <= now && !pool_dead(pool)) {
        pool_query *pq = pool->queue_head;
        pool->queue_head = pq->next;
        if (!pool->queue_head)
            pool->queue_tail = NULL;
        pool->queued--;
        complete_query_error(pool, pq, PGEV_ETIMEOUT,
                             "pool query waited %d ms for a connection and timed out%s",
                             pool->queue_timeout_ms, conn_error_suffix(pool, why, sizeof(why)));
    }
    /* Cancelled acquires anywhere in the list, then the timed-out head. */
    for (pool_waiter *w = pool->waiters_head, *next; w && !pool_dead(pool); w = next) {
        next = w->next;
        if (!w->cancelled)
            continue;
        unlink_waiter(pool, w);
        pool->stats.acquires_cancelled++;
        complete_waiter_error(w, pool, PGEV_ECANCELLED, "acquire cancelled (pgev_pool_acquire_cancel)");
        next = pool->waiters_head; /* the callback may have changed the list */
    }
    while (pool->waiters_head && pool->waiters_head->deadline_ms <= now && !pool_dead(pool)) {
        pool_waiter *w = pool->waiters_head;
        unlink_waiter(pool, w);
        pool->stats.acquire_timeouts++;
        complete_waiter_error(w, pool, PGEV_ETIMEOUT,
                              "no pool connection became free within %d ms (acquire timeout)%s",
                              pool->acquire_timeout_ms, conn_error_suffix(pool, why, sizeof(why)));
    }
}

/* A slot a waiter can have now: reserved ones first (they were promised).
 * An idle one unused for health_check_idle_ms is checked first. */
static pool_slot *
grantable(pgev_pool *pool, uint64_t now)
{
    pool_slot *ready = NULL;
    for (pool_slot *s = pool->slots; s; s = s->next) {
        if (s->standby || s->checking || s->outstanding != 0 || pgev_conn_state(s->conn) != PGEV_CONN_READY ||
            slot_expired(s, now))
            continue;
        if (s->state == SLOT_RESERVED && !needs_check_first(pool, s, now))
            return s;
        if (s->state == SLOT_READY && !ready && !needs_check_first(pool, s, now))
            ready = s;
    }
    return ready;
}

static void
grant_waiters(pgev_pool *pool, uint64_t now)
{
    pool_slot *slot;
    while (pool->waiters_head && !pool_dead(pool) && (slot = grantable(pool, now)) != NULL) {
        pool_waiter *w = pool->waiters_head;
        unlink_waiter(pool, w);
        slot_set_state(slot, SLOT_ACQUIRED);
        slot->lease = w->id;
        slot->uses++;
        pool->stats.acquires++;
        lat_add(&pool->acquire_wait, now_us() - w->created_us);
        pgev_pool_acquire_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        cb(pool, slot->conn, NULL, arg);
    }
    if (pool_dead(pool))
        return;

    /* Waiters not covered by connections on their way (connecting, being
     * reset, reserved) get a busy connection reserved for them once the
     * pool cannot grow: otherwise a steady stream of pool queries could
     * starve them. Surplus reservations (a waiter timed out) are undone. */
    int live = live_slots(pool->nslots);
    int supply = pool->nslots[SLOT_CONNECTING] + pool->nslots[SLOT_INIT] +
                 pool->nslots[SLOT_RESETTING] + pool->nslots[SLOT_RESERVED];
    while (pool->nslots[SLOT_RESERVED] > 0 && supply > pool->nwaiters) {
        for (pool_slot *s = pool->slots; s; s = s->next) {
            if (s->state == SLOT_RESERVED) {
                slot_set_state(s, SLOT_READY);
                break;
            }
        }
        supply--;
    }
    if (live < pool->max_conns)
        return; /* grow() opens connections for them */
    while (pool->nwaiters > supply) {
        pool_slot *best = NULL;
        for (pool_slot *s = pool->slots; s; s = s->next)
            if (!s->standby && s->state == SLOT_READY && (!best || s->outstanding < best->outstanding))
                best = s;
        if (!best)
            break;
        slot_set_state(best, SLOT_RESERVED);
        supply++;
    }
}

/* Back to the head of the queue (it was submitted before everything
 * there), with the queue deadline it got at submit. That may not pass the
 * head's: the head expires first (expire_deadlines). */
static void
requeue_front(pgev_pool *pool, pool_query *pq)
{
    uint64_t deadline = pq->queue_deadline_ms;
    if (pool->queue_head && pool->queue_head->deadline_ms < deadline)
        deadline = pool->queue_head->deadline_ms;
    pq->deadline_ms = deadline;
    pq->next = pool->queue_head;
    pool->queue_head = pq;
    if (!pool->queue_tail)
        pool->queue_tail = pq;
    pool->queued++;
}

static void
dispatch_queue(pgev_pool *pool, uint64_t now)
{
    pool_slot *slot;
    while (pool->queue_head && !pool_dead(pool) && (slot = pick_slot(pool, pool->queue_head, now)) != NULL) {
        pool_query *pq = pool->queue_head;
        pool->queue_head = pq->next;
        if (!pool->queue_head)
            pool->queue_tail = NULL;
        pool->queued--;
        pq->next = NULL;
        int64_t rc = dispatch(pool, slot, pq);
        if (rc == PGEV_ECLOSED)
            requeue_front(pool, pq);    /* never sent: it waits for another connection */
        else if (rc < 0)
            complete_query_error(pool, pq, (int)rc, "%s", pool->errmsg);
    }
}

/* Standby connections: standby_min_conns always, one more at a time while
 * read-only queries find them all busy, up to standby_max_conns. */
static void
grow_standbys(pgev_pool *pool, uint64_t now)
{
    bool wanted = pool->standby_wanted;
    pool->standby_wanted = false;
    if (!pool->standby_conninfo || pool->state != POOL_OPEN || now < pool->standby_backoff_until_ms)
        return;
    int live = live_slots(pool->nstandby);
    int serving = live - pool->nstandby[SLOT_CLOSING];
    int connecting = pool->nstandby[SLOT_CONNECTING] + pool->nstandby[SLOT_INIT];
    int want = serving < pool->standby_min_conns ? pool->standby_min_conns - serving : 0;
    if (wanted && connecting == 0 && want == 0)
        want = 1;
    if (want > pool->standby_max_conns - live)
        want = pool->standby_max_conns - live;
    int max_connecting = pool->standby_failures > 0 ? 1 : pool->max_connecting;
    if (want > max_connecting - connecting)
        want = max_connecting - connecting;
    for (int i = 0; i < want; i++)
        open_slot(pool, now, true);
}

/* Opens connections for min_conns and for demand, within max_conns,
 * max_connecting and the reconnect backoff. */
static void
grow(pgev_pool *pool, uint64_t now)
{
    if (pool->state != POOL_OPEN && pool->state != POOL_DRAINING)
        return;
    int live = live_slots(pool->nslots);
    int serving = live - pool->nslots[SLOT_CLOSING];
    int connecting = pool->nslots[SLOT_CONNECTING] + pool->nslots[SLOT_INIT];
    int want = 0;
    if (pool->state == POOL_OPEN && serving < pool->min_conns)
        want = pool->min_conns - serving;
    /* Waiters beyond what idle or arriving connections will cover. */
    int idle = 0;
    for (pool_slot *s = pool->slots; s; s = s->next)
        if (!s->standby && s->state == SLOT_READY && s->outstanding == 0)
            idle++;
    int supply = idle + connecting + pool->nslots[SLOT_RESETTING] + pool->nslots[SLOT_RESERVED];
    if (pool->nwaiters > supply && pool->nwaiters - supply > want)
        want = pool->nwaiters - supply;
    /* Queries waiting, or every connection busy. */
    if ((pool->queue_head || pool->grow_wanted) && connecting == 0 && want == 0)
        want = 1;
    pool->grow_wanted = false;

    if (want > pool->max_conns - live)
        want = pool->max_conns - live;
    int max_connecting = pool->connect_failures > 0 ? 1 : pool->max_connecting;
    if (want > max_connecting - connecting)
        want = max_connecting - connecting;
    if (want > 0 && now >= pool->backoff_until_ms)
        for (int i = 0; i < want; i++)
            open_slot(pool, now, false);
    grow_standbys(pool, now);
}

/* The health check's verdict: back into service, or replaced. */
static void
on_health_checked(pgev_conn *conn, pgev_result *res, void *arg)
{
    pool_slot *slot = arg;
    pgev_pool *pool = slot->pool;
    (void)conn;
    slot->checking = false;
    if (!pool_dead(pool)) {
        if (pgev_result_status(res) == PGEV_OK) {
            slot->last_used_ms = now_ms();
        } else {
            pool->stats.health_check_failures++;
            slot_retire(slot); /* its replacement is opened by grow() */
        }
        kick(pool);
    }
    pool_drop(pool);
}

/* Connections idle at least health_check_idle_ms answer an empty query
 * before they take work again. */
static void
health_check(pgev_pool *pool, pool_slot *s, uint64_t now)
{
    if (pool->health_check_idle_ms <= 0 || s->state != SLOT_READY || s->checking || s->outstanding != 0 ||
        now - s->last_used_ms < (uint64_t)pool->health_check_idle_ms)
        return;
    s->checking = true;
    pool->stats.health_checks++;
    pgev_query_args args = { .sql = "", .flags = PGEV_QUERY_NOCACHE, .timeout_ms = pool->connect_timeout_ms > 0 ? pool->connect_timeout_ms : PGEV_DEFAULT_CONNECT_TIMEOUT_MS, .on_done = on_health_checked, .arg = s };
    if (pgev_conn_submit(s->conn, &args) < 0) {
        s->checking = false;
        pool->stats.health_check_failures++;
        slot_retire(s);
        return;
    }
    pool_hold(pool);    /* until on_health_checked */
}

/* Queued queries whose own timeout (query_timeout_ms, or theirs) passed
 * complete with PGEV_ETIMEOUT; the queue is in submit order, not deadline
 * order, so this walks it (each maintenance pass). */
static void
expire_query_deadlines(pgev_pool *pool, uint64_t now)
{
    pool_query **link = &pool->queue_head, *prev = NULL;
    while (*link && !pool_dead(pool)) {
        pool_query *pq = *link;
        if (!pq->query_deadline_ms || pq->query_deadline_ms > now) {
            prev = pq;
            link = &pq->next;
            continue;
        }
        *link = pq->next;
        if (pool->queue_tail == pq)
            pool->queue_tail = prev;
        pool->queued--;
        complete_query_error(pool, pq, PGEV_ETIMEOUT, "pool query timed out in the pool's queue, before any connection took it");
    }
}

/* Maintenance: idle timeout, lifetime, init timeout, health checks, query
 * timeouts in the queue. */
static void
maintain(pgev_pool *pool, uint64_t now)
{
    int serving[2] = { 0, 0 };  /* primary, standby */
    for (pool_slot *s = pool->slots; s; s = s->next)
        if (s->state != SLOT_RETIRED && s->state != SLOT_CLOSING)
            serving[s->standby]++;
    for (pool_slot *s = pool->slots; s; s = s->next) {
        int min = s->standby ? pool->standby_min_conns : pool->min_conns;
        switch (s->state) {
        case SLOT_READY:
        case SLOT_RESERVED:
            if (slot_expired(s, now)) {
                slot_close(s);
                serving[s->standby]--;
            } else if (s->state == SLOT_READY && s->outstanding == 0 && !s->checking &&
                       pool->idle_timeout_ms > 0 && serving[s->standby] > min &&
                       now - s->last_used_ms >= (uint64_t)pool->idle_timeout_ms) {
                slot_close(s);
                serving[s->standby]--;
            } else {
                health_check(pool, s, now);
            }
            break;
        case SLOT_INIT:
            if (pool->connect_timeout_ms > 0 &&
                now - s->created_ms >= (uint64_t)pool->connect_timeout_ms) {
                pool->stats.connect_failures++;
                snprintf(pool->last_conn_error, sizeof(pool->last_conn_error),
                         "the init hook (on_conn_init) did not finish within %d ms",
                         pool->connect_timeout_ms);
                slot_retire(s);
                serving[s->standby]--;
            }
            break;
        default:
            break;
        }
    }
    expire_query_deadlines(pool, now);
}

/* Drain: once nothing is queued or waiting, close what is idle; once no
 * connection is left, the pool is closed. */
static void
check_drained(pgev_pool *pool)
{
    if (pool->state != POOL_DRAINING || pool->queue_head || pool->waiters_head)
        return;
    for (pool_slot *s = pool->slots; s; s = s->next) {
        if (s->state == SLOT_CONNECTING || s->state == SLOT_INIT ||
            (s->state == SLOT_READY && s->outstanding == 0) || s->state == SLOT_RESERVED) {
            if (s->state == SLOT_RESERVED)
                slot_set_state(s, SLOT_READY);
            if (s->outstanding == 0)
                slot_close(s);
        }
    }
    if (pool->slots)
        return;
    pool->state = POOL_CLOSED;
    event_del(pool->maint_ev);
    event_del(pool->deadline_ev);
    if (pool->on_closed)
        pool->on_closed(pool, pool->closed_arg);
}

/* The deadline timer: the head of the queue and of the waiters, and the
 * released connections' reset deadlines (soon, when one waits for its
 * last Sync to be read). */
static void
arm_deadline(pgev_pool *pool, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    if (pool->queue_head)
        next = pool->queue_head->deadline_ms;
    if (pool->waiters_head && pool->waiters_head->deadline_ms < next)
        next = pool->waiters_head->deadline_ms;
    if (pool->nslots[SLOT_RESETTING] > 0) {
        for (pool_slot *s = pool->slots; s; s = s->next) {
            if (s->state != SLOT_RESETTING)
                continue;
            uint64_t at = s->awaiting_sync ? now + RESET_RECHECK_MS : s->reset_deadline_ms;
            if (at < next)
                next = at;
        }
    }
    if (next == UINT64_MAX) {
        event_del(pool->deadline_ev);
        return;
    }
    uint64_t ms = next > now ? next - now : 0;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    event_add(pool->deadline_ev, &tv);
}

static void
service(pgev_pool *pool)
{
    pool_enter(pool);
    /* Freed here, where no connection callback is running. */
    pool_slot *next;
    for (pool_slot *s = pool->slots; s && !pool_dead(pool); s = next) {
        next = s->next;
        if (s->state == SLOT_RETIRED)
            reap_slot(pool, s);
    }
    uint64_t now = now_ms();
    for (pool_slot *s = pool->slots; s && !pool_dead(pool); s = s->next) {
        if (s->state == SLOT_RESETTING && s->resets_running == 0)
            finish_reset(s, now);
        else if (s->state == SLOT_RESETTING && now >= s->reset_deadline_ms)
            finish_reset(s, now);   /* a step that never ends: discarded */
        else if (s->state == SLOT_READY && s->outstanding == 0 && !s->checking && slot_expired(s, now))
            slot_close(s);          /* worn out (max_uses) or replaced (pgev_pool_reset) */
    }
    if (!pool_dead(pool))
        expire_deadlines(pool, now);
    if (!pool_dead(pool))
        grant_waiters(pool, now);
    if (!pool_dead(pool))
        dispatch_queue(pool, now);
    if (!pool_dead(pool))
        grow(pool, now);
    /* Connections closed by the checks above are reaped on the next pass. */
    if (!pool_dead(pool) && pool->state == POOL_DRAINING)
        check_drained(pool);
    if (!pool_dead(pool) && pool->state != POOL_CLOSED)
        arm_deadline(pool, now);
    pool_leave(pool);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
    pgev_pool *pool = arg;
    (void)fd;
    (void)what;
    pool->kicked = false;
    service(pool);
}

static void
maint_cb(evutil_socket_t fd, short what, void *arg)
{
    pgev_pool *pool = arg;
    (void)fd;
    (void)what;
    /* maintain() completes queries (their timeouts): under the same guard
     * as every other pool frame that calls user code. */
    pool_enter(pool);
    maintain(pool, now_ms());
    if (!pool_dead(pool))
        service(pool);
    pool_leave(pool);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    service(arg);
}

/* ---- lifecycle ---------------------------------------------------------- */

pgev_pool *
pgev_pool_new(struct event_base *base, const char *conninfo, const pgev_pool_options *opts)
{
    if (!base || !conninfo)
        return NULL;
    pgev_pool_options defaults = { 0 };
    if (!opts)
        opts = &defaults;
    if (opts->min_conns < 0 || opts->max_conns < 0 || opts->max_connecting < 0 ||
        opts->connect_timeout_ms < 0 || opts->conn_max_inflight < 0 ||
        opts->acquire_timeout_ms < 0 || opts->max_waiters < 0 || opts->queue_timeout_ms < 0 ||
        opts->max_pending < 0 || opts->idle_timeout_ms < 0 || opts->max_lifetime_ms < 0 ||
        opts->query_timeout_ms < 0 || opts->health_check_idle_ms < 0 || opts->standby_min_conns < 0 ||
        opts->standby_max_conns < 0 || opts->reset_timeout_ms < 0 || opts->max_uses < 0)
        return NULL;
    int max_conns = opts->max_conns > 0 ? opts->max_conns : PGEV_POOL_DEFAULT_MAX_CONNS;
    if (opts->min_conns > max_conns)
        return NULL;
    if (opts->standby_min_conns > (opts->standby_max_conns > 0 ? opts->standby_max_conns : max_conns))
        return NULL;
    pgev_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pool->base = base;
    pool->min_conns = opts->min_conns;
    pool->max_conns = max_conns;
    pool->max_connecting =
        opts->max_connecting > 0 ? opts->max_connecting : PGEV_POOL_DEFAULT_MAX_CONNECTING;
    pool->connect_timeout_ms = opts->connect_timeout_ms;
    pool->stmt_cache_size = opts->stmt_cache_size;
    pool->conn_max_inflight =
        opts->conn_max_inflight > 0 ? opts->conn_max_inflight : PGEV_DEFAULT_MAX_INFLIGHT;
    pool->acquire_timeout_ms = opts->acquire_timeout_ms > 0 ? opts->acquire_timeout_ms
                                                            : PGEV_POOL_DEFAULT_ACQUIRE_TIMEOUT_MS;
    pool->max_waiters = opts->max_waiters > 0 ? opts->max_waiters : PGEV_POOL_DEFAULT_MAX_WAITERS;
    pool->queue_timeout_ms =
        opts->queue_timeout_ms > 0 ? opts->queue_timeout_ms : PGEV_POOL_DEFAULT_QUEUE_TIMEOUT_MS;
    pool->max_pending = opts->max_pending > 0 ? opts->max_pending : PGEV_POOL_DEFAULT_MAX_PENDING;
    pool->idle_timeout_ms = opts->idle_timeout_ms;
    pool->max_lifetime_ms = opts->max_lifetime_ms;
    pool->query_timeout_ms = opts->query_timeout_ms;
    pool->health_check_idle_ms = opts->health_check_idle_ms;
    pool->standby_min_conns = opts->standby_min_conns;
    pool->standby_max_conns = opts->standby_max_conns > 0 ? opts->standby_max_conns : max_conns;
    pool->reset_timeout_ms =
        opts->reset_timeout_ms > 0 ? opts->reset_timeout_ms : PGEV_POOL_DEFAULT_RESET_TIMEOUT_MS;
    pool->max_uses = opts->max_uses;
    pool->refs = 1;     /* the application's, until pgev_pool_free() */
    pool->on_conn_init = opts->on_conn_init;
    pool->arg = opts->arg;
    pool->rng = now_ms() ^ (uint64_t)(uintptr_t)pool ^ 0x9e3779b97f4a7c15ull;
    if (pool->rng == 0)
        pool->rng = 1;
    pool->conninfo = strdup(conninfo);
    pool->reset_query = opts->reset_query ? strdup(opts->reset_query) : NULL;
    pool->standby_conninfo = opts->standby_conninfo ? strdup(opts->standby_conninfo) : NULL;
    pool->kick_ev = event_new(base, -1, 0, kick_cb, pool);
    pool->maint_ev = event_new(base, -1, EV_PERSIST, maint_cb, pool);
    pool->deadline_ev = evtimer_new(base, deadline_cb, pool);
    struct timeval period = { 0, PGEV_POOL_MAINTENANCE_MS * 1000 };
    if (!pool->conninfo || (opts->reset_query && !pool->reset_query) ||
        (opts->standby_conninfo && !pool->standby_conninfo) || !pool->kick_ev ||
        !pool->maint_ev || !pool->deadline_ev || event_add(pool->maint_ev, &period) != 0) {
        pool_destroy(pool);
        return NULL;
    }
    /* The first connections start from the loop, like everything else. */
    kick(pool);
    return pool;
}

/* Frees the pool's memory: when the last reference goes (pool_drop). */
static void
pool_destroy(pgev_pool *pool)
{
    while (pool->slots) {
        pool_slot *s = pool->slots;
        pool->slots = s->next;
        free(s);
    }
    while (pool->free_queries) {
        pool_query *pq = pool->free_queries;
        pool->free_queries = pq->next;
        free(pq);
    }
    if (pool->kick_ev)
        event_free(pool->kick_ev);
    if (pool->maint_ev)
        event_free(pool->maint_ev);
    if (pool->deadline_ev)
        event_free(pool->deadline_ev);
    free(pool->conninfo);
    free(pool->reset_query);
    free(pool->standby_conninfo);
    free(pool);
}

/*
 * What pgev_pool_free() does, at once or when the outermost pool frame
 * returns: its events go (nothing of the pool stays armed on the base),
 * every waiting acquire and queued query completes with PGEV_ECANCELLED,
 * and the connections are freed. Their pool queries complete through
 * on_query_done: inside pgev_conn_free(), or, for a connection that is
 * calling back right now, when its dispatch returns; each holds a
 * reference, so the memory outlives them. The application's reference
 * goes last.
 */
static void
pool_teardown(pgev_pool *pool)
{
    pool->state = POOL_FREED;
    pool_enter(pool);
    event_free(pool->kick_ev);   /* safe from inside its own callback */
    event_free(pool->maint_ev);
    event_free(pool->deadline_ev);
    pool->kick_ev = pool->maint_ev = pool->deadline_ev = NULL;

    while (pool->waiters_head) {
        pool_waiter *w = pool->waiters_head;
        unlink_waiter(pool, w);
        complete_waiter_error(w, pool, PGEV_ECANCELLED, "cancelled: the pool was freed");
    }
    while (pool->queue_head) {
        pool_query *pq = pool->queue_head;
        pool->queue_head = pq->next;
        if (!pool->queue_head)
            pool->queue_tail = NULL;
        pool->queued--;
        complete_query_error(pool, pq, PGEV_ECANCELLED, "cancelled: the pool was freed");
    }
    for (pool_slot *s = pool->slots; s; s = s->next) {
        if (s->conn) {
            pgev_conn *conn = s->conn;
            s->conn = NULL;
            pgev_conn_free(conn);
        }
    }
    pool->calling--;   /* pool_leave() without a second teardown */
    pool_drop(pool);
    pool_drop(pool);   /* the application's reference */
}

void
pgev_pool_free(pgev_pool *pool)
{
    if (!pool || pool_dead(pool))
        return;
    pool->state = POOL_FREEING;
    if (pool->calling > 0)
        return; /* the outermost pool_leave() does it */
    pool_teardown(pool);
}

int
pgev_pool_close(pgev_pool *pool, pgev_pool_closed_cb on_closed, void *arg)
{
    if (!pool)
        return PGEV_EINVAL;
    if (pool->state != POOL_OPEN)
        return PGEV_OK;
    pool->state = POOL_DRAINING;
    pool->on_closed = on_closed;
    pool->closed_arg = arg;
    kick(pool);
    return PGEV_OK;
}

int
pgev_pool_reset(pgev_pool *pool)
{
    if (!pool)
        return PGEV_EINVAL;
    if (pool->state != POOL_OPEN) {
        pool_refuse(pool, "pool is not open: nothing to reset");
        return PGEV_ECLOSED;
    }
    pool->generation++;
    pool->stats.pool_resets++;
    kick(pool);
    return PGEV_OK;
}

int
pgev_pool_stats(const pgev_pool *pool, pgev_pool_stats_t *out)
{
    if (!pool || !out)
        return PGEV_EINVAL;
    *out = pool->stats;
    out->conns = out->conns_connecting = out->conns_idle = out->conns_busy = 0;
    out->conns_acquired = out->conns_other = 0;
    out->conns_standby = 0;
    for (pool_slot *s = pool->slots; s; s = s->next) {
        out->conns++;
        out->conns_standby += s->standby;
        switch (s->state) {
        case SLOT_CONNECTING:
        case SLOT_INIT:
            out->conns_connecting++;
            break;
        case SLOT_READY:
        case SLOT_RESERVED:
            if (s->checking)
                out->conns_other++;   /* being health-checked (pgev.h) */
            else if (s->outstanding == 0)
                out->conns_idle++;
            else
                out->conns_busy++;
            break;
        case SLOT_ACQUIRED:
            out->conns_acquired++;
            break;
        default:
            out->conns_other++;
            break;
        }
    }
    out->waiters = pool->nwaiters;
    out->queued = pool->queued;
    out->outstanding = pool->outstanding;
    out->query_p50_us = lat_percentile(&pool->query_latency, 0.50);
    out->query_p99_us = lat_percentile(&pool->query_latency, 0.99);
    out->acquire_wait_p50_us = lat_percentile(&pool->acquire_wait, 0.50);
    out->acquire_wait_p99_us = lat_percentile(&pool->acquire_wait, 0.99);
    return PGEV_OK;
}

const char *
pgev_pool_errmsg(const pgev_pool *pool)
{
    if (!pool)
        return "pool is NULL";
    if (pool->errmsg[0])
        return pool->errmsg;
    return pool->last_conn_error;
}
