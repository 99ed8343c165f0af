/*
 * The connection pool: its API, lifetime and service pass. Built on the
 * public connection API (pgev_conn_*) and the hooks in pool-internal.h:
 * a pool connection is an ordinary pgev_conn whose callbacks point back
 * into slots.c, dispatch.c, acquire.c and janitor.c.
 *
 * Shape of a pool:
 *
 *   submit ──► queue (FIFO, bounded, deadlines) ──dispatch──► least-loaded READY slot
 *   acquire ─► waiters (FIFO, bounded, deadlines) ──grant───► idle slot ──release──► READY
 *
 * Every connection lives in a slot, and every slot is on one list; its
 * state (below) says what it is doing, and pool->nslots[] counts slots per
 * state, so the sizes in the statistics are counts kept by the one state
 * setter (pool_slot_set_state). Standby slots (standby_conninfo) are on the same
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
 * the head always expires first; also the released connections' reset
 * deadlines), and the kick event for deferred work: pgev_events of
 * loop.c, the one file that includes libevent.
 */
#include "pool-private.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pool_teardown(pgev_pool *pool);
static void pool_destroy(pgev_pool *pool);

void
pool_refuse(pgev_pool *pool, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pool->errmsg, sizeof(pool->errmsg), fmt, ap);
    va_end(ap);
}

/*
 * References (see the file comment). A query the pool hands to a
 * connection takes one (pool_hold) and its callback gives it back
 * (pool_drop) as the last thing it does; the memory is freed when the
 * count reaches 0, so no callback of ours can find it gone.
 */
void
pool_hold(pgev_pool *pool)
{
    pool->refs++;
}

void
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
void
pool_enter(pgev_pool *pool)
{
    pool->refs++;
    pool->calling++;
}

void
pool_leave(pgev_pool *pool)
{
    assert(pool->calling > 0);
    if (--pool->calling == 0 && pool->state == POOL_FREEING)
        pool_teardown(pool);
    pool_drop(pool);
}

void
pool_kick(pgev_pool *pool)
{
    if (pool->kicked || pool_dead(pool))
        return;
    pool->kicked = true;
    pgev_event_activate(pool->kick_ev);
}

/* " (last connection error: ...)" or "", for timeout messages. */
const char *
pool_conn_error_suffix(const pgev_pool *pool, char *buf, size_t size)
{
    if (pool->last_conn_error[0] == '\0')
        return "";
    snprintf(buf, size, " (last connection error: %s)", pool->last_conn_error);
    return buf;
}

void
pool_note_conn_error(pgev_pool *pool, pgev_conn *conn, const pgev_error *err)
{
    const char *msg = err ? pgev_error_message(err) : pgev_conn_errmsg(conn);
    snprintf(pool->last_conn_error, sizeof(pool->last_conn_error), "%s",
             msg && msg[0] ? msg : "connection failed");
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
            pool_slot_reap(pool, s);
    }
    uint64_t now = pool_now_ms();
    for (pool_slot *s = pool->slots; s && !pool_dead(pool); s = s->next) {
        if (s->state == SLOT_RESETTING && s->resets_running == 0)
            pool_finish_reset(s, now);
        else if (s->state == SLOT_RESETTING && now >= s->reset_deadline_ms)
            pool_finish_reset(s, now);   /* a step that never ends: discarded */
        else if (s->state == SLOT_READY && s->outstanding == 0 && !s->checking && pool_slot_expired(s, now))
            pool_slot_close(s);          /* worn out (max_uses) or replaced (pgev_pool_reset) */
    }
    if (!pool_dead(pool))
        pool_expire_queue(pool, now);
    if (!pool_dead(pool) && now >= pool->queue_next_timeout_ms)
        pool_expire_query_timeouts(pool, now);
    if (!pool_dead(pool))
        pool_expire_waiters(pool, now);
    if (!pool_dead(pool))
        pool_grant_waiters(pool, now);
    if (!pool_dead(pool))
        pool_dispatch_queue(pool, now);
    if (!pool_dead(pool))
        pool_grow(pool, now);
    /* Connections closed by the checks above are reaped on the next pass. */
    if (!pool_dead(pool) && pool->state == POOL_DRAINING)
        pool_check_drained(pool);
    if (!pool_dead(pool) && pool->state != POOL_CLOSED)
        pool_arm_deadline(pool, now);
    pool_leave(pool);
}

static void
kick_cb(void *arg)
{
    pgev_pool *pool = arg;
    pool->kicked = false;
    service(pool);
}

static void
maint_cb(void *arg)
{
    pgev_pool *pool = arg;
    /* pool_maintain() completes queries (their timeouts): under the same guard
     * as every other pool frame that calls user code. */
    pool_enter(pool);
    pool_maintain(pool, pool_now_ms());
    if (!pool_dead(pool))
        service(pool);
    pool_leave(pool);
}

static void
deadline_cb(void *arg)
{
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
    pool->queue_next_timeout_ms = UINT64_MAX;
    pool->base = base;
    pool->min_conns = opts->min_conns;
    pool->max_conns = max_conns;
    pool->max_connecting =
        opts->max_connecting > 0 ? opts->max_connecting : PGEV_POOL_DEFAULT_MAX_CONNECTING;
    pool->connect_timeout_ms = opts->connect_timeout_ms;
    pool->stmt_cache_size = opts->stmt_cache_size;
    pool->evdns_base = opts->evdns_base;
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
    pool->on_trace = opts->on_trace;
    pool->trace_arg = opts->trace_arg;
    pool->arg = opts->arg;
    pool->rng = pool_now_ms() ^ (uint64_t)(uintptr_t)pool ^ 0x9e3779b97f4a7c15ull;
    if (pool->rng == 0)
        pool->rng = 1;
    pool->conninfo = strdup(conninfo);
    pool->reset_query = opts->reset_query ? strdup(opts->reset_query) : NULL;
    pool->standby_conninfo = opts->standby_conninfo ? strdup(opts->standby_conninfo) : NULL;
    pool->kick_ev = pgev_event_new(base, 0, kick_cb, pool);
    pool->maint_ev = pgev_event_new(base, PGEV_POOL_MAINTENANCE_MS, maint_cb, pool);
    pool->deadline_ev = pgev_event_new(base, 0, deadline_cb, pool);
    if (!pool->conninfo || (opts->reset_query && !pool->reset_query) ||
        (opts->standby_conninfo && !pool->standby_conninfo) || !pool->kick_ev ||
        !pool->maint_ev || !pool->deadline_ev || pgev_event_start(pool->maint_ev, 0) != 0) {
        pool_destroy(pool);
        return NULL;
    }
    /* The first connections start from the loop, like everything else. */
    pool_kick(pool);
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
    pgev_event_free(pool->kick_ev);
    pgev_event_free(pool->maint_ev);
    pgev_event_free(pool->deadline_ev);
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
    pgev_event_free(pool->kick_ev);   /* safe from inside its own callback */
    pgev_event_free(pool->maint_ev);
    pgev_event_free(pool->deadline_ev);
    pool->kick_ev = pool->maint_ev = pool->deadline_ev = NULL;
    pool_fail_waiters(pool, PGEV_ECANCELLED, "cancelled: the pool was freed");
    pool_fail_queue(pool, PGEV_ECANCELLED, "cancelled: the pool was freed");
    for (pool_slot *s = pool->slots; s; s = s->next) {
        if (s->ptx) {
            pool_txn_conn_freed(s->ptx);
            s->ptx = NULL;
        }
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
    pool_kick(pool);
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
    pool_kick(pool);
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
