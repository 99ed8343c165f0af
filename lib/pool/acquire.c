/*
 * Acquire, release and the reset between borrowers: waiters in FIFO
 * order with a deadline (or cancelled), a lease id per grant that its
 * release must name, and a reset (rollback, UNLISTEN *, reset_query) under
 * reset_timeout_ms before the connection serves anyone else.
 */
#include "pool-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
pool_waiter_fail(pool_waiter *w, pgev_pool *pool, int code, const char *fmt, ...)
{
    pgev_error err;
    char msg[PGEV_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pgev_error_set(&err, code, "%s", msg);
    if (pool->on_trace)
        pool_trace(pool, PGEV_TRACE_POOL_ACQUIRE, NULL, code, &err, (int64_t)(pool_now_us() - w->created_us));
    pgev_pool_acquire_cb cb = w->cb;
    void *arg = w->arg;
    free(w);
    cb(pool, NULL, &err, arg);
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
    w->deadline_ms = pool_now_ms() + (uint64_t)pool->acquire_timeout_ms;
    w->created_us = pool_now_us();
    if (pool->waiters_tail)
        pool->waiters_tail->next = w;
    else
        pool->waiters_head = w;
    pool->waiters_tail = w;
    pool->nwaiters++;
    pool_kick(pool); /* granted from the loop, never inside this call */
    return w->id;
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
            pool_kick(pool);
            return PGEV_OK;
        }
    }
    pool_refuse(pool, "acquire %lld is not waiting (granted, timed out, cancelled or unknown)",
                (long long)acquire_id);
    return PGEV_EINVAL;
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
            pool_kick(pool);
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
void
pool_finish_reset(pool_slot *slot, uint64_t now)
{
    pgev_pool *pool = slot->pool;
    bool up = pgev_conn_state(slot->conn) == PGEV_CONN_READY;
    PGTransactionStatusType txn = up ? PQtransactionStatus(pgev_conn_pg(slot->conn)) : PQTRANS_UNKNOWN;
    if (now >= slot->reset_deadline_ms) {
        pool->stats.reset_timeouts++;
        pool->stats.conns_closed++;
        pool_slot_retire(slot);  /* its steps complete (ECANCELLED) when it is freed */
        return;
    }
    if (slot->reset_failed || !up) {
        pool_slot_close(slot);
        return;
    }
    bool idle_conn = pgev_conn_pending(slot->conn) + pgev_conn_inflight(slot->conn) == 0;
    if (txn == PQTRANS_ACTIVE && idle_conn) {
        slot->awaiting_sync = true;  /* the next pass looks again (pool_arm_deadline) */
        slot->sync_rechecks++;
        return;
    }
    if (!slot->reset_planned) {
        reset_plan(slot);
        if (slot->resets_running > 0 || slot->reset_failed) {
            if (slot->reset_failed && slot->resets_running == 0)
                pool_slot_close(slot);
            return;
        }
        txn = PQtransactionStatus(pgev_conn_pg(slot->conn));
    }
    if (txn != PQTRANS_IDLE || pool_slot_expired(slot, now)) {
        pool_slot_close(slot);
        return;
    }
    slot->last_used_ms = now;
    pool_slot_set_state(slot, SLOT_READY);
}

int
pgev_pool_release(pgev_pool *pool, pgev_conn *conn, int64_t acquire_id)
{
    if (!pool || !conn)
        return PGEV_EINVAL;
    pool_slot *slot = pool_find_slot(pool, conn);
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
    pool_kick(pool);
    if (pool->on_trace)
        pool_trace(pool, PGEV_TRACE_POOL_RELEASE, conn, PGEV_OK, NULL, 0);
    /* Nothing of the borrower's reaches the next one: its notification
     * callbacks go now (the server side is unsubscribed by the reset). */
    slot->unlisten_wanted = pgev_conn_drop_listeners(conn) > 0;
    uint64_t now = pool_now_ms();
    if (slot->lost || pgev_conn_state(conn) != PGEV_CONN_READY || pool_dead(pool)) {
        pool_slot_retire(slot);
        return PGEV_OK;
    }
    pool_slot_set_state(slot, SLOT_RESETTING);
    slot->reset_failed = false;
    slot->reset_planned = false;
    slot->awaiting_sync = false;
    slot->sync_rechecks = 0;
    slot->reset_deadline_ms = now + (uint64_t)pool->reset_timeout_ms;
    slot->last_used_ms = now;
    bool busy = pgev_conn_pending(conn) + pgev_conn_inflight(conn) > 0;
    if (busy || PQtransactionStatus(pgev_conn_pg(conn)) != PQTRANS_ACTIVE) {
        reset_plan(slot);
        if (slot->reset_failed && slot->resets_running == 0) {
            pool_slot_close(slot); /* nothing could be queued: replace it */
            return PGEV_OK;
        }
    }
    /* Otherwise released inside a query callback: service() decides once
     * the Sync is read. Either way service() hands it on (pool_finish_reset). */
    return PGEV_OK;
}

int
pgev_pool_init_done(pgev_pool *pool, pgev_conn *conn, bool ok)
{
    if (!pool || !conn)
        return PGEV_EINVAL;
    pool_slot *slot = pool_find_slot(pool, conn);
    if (!slot || slot->state != SLOT_INIT) {
        pool_refuse(pool, "connection is not initialising in this pool");
        return PGEV_EINVAL;
    }
    if (ok && pgev_conn_state(conn) == PGEV_CONN_READY) {
        slot->last_used_ms = pool_now_ms();
        pool_slot_set_state(slot, SLOT_READY);
    } else {
        pool->stats.connect_failures++;
        snprintf(pool->last_conn_error, sizeof(pool->last_conn_error),
                 "the init hook (on_conn_init) failed");
        pool_slot_retire(slot);
    }
    pool_kick(pool);
    return PGEV_OK;
}

/* Cancelled acquires anywhere in the list, then the timed-out head. */
void
pool_expire_waiters(pgev_pool *pool, uint64_t now)
{
    char why[320];
    for (pool_waiter *w = pool->waiters_head, *next; w && !pool_dead(pool); w = next) {
        next = w->next;
        if (!w->cancelled)
            continue;
        unlink_waiter(pool, w);
        pool->stats.acquires_cancelled++;
        pool_waiter_fail(w, pool, PGEV_ECANCELLED, "acquire cancelled (pgev_pool_acquire_cancel)");
        next = pool->waiters_head; /* the callback may have changed the list */
    }
    while (pool->waiters_head && pool->waiters_head->deadline_ms <= now && !pool_dead(pool)) {
        pool_waiter *w = pool->waiters_head;
        unlink_waiter(pool, w);
        pool->stats.acquire_timeouts++;
        pool_waiter_fail(w, pool, PGEV_ETIMEOUT,
                              "no pool connection became free within %d ms (acquire timeout)%s",
                              pool->acquire_timeout_ms, pool_conn_error_suffix(pool, why, sizeof(why)));
    }
}

/* Completes every waiting acquire with `code` (the pool is being freed). */
void
pool_fail_waiters(pgev_pool *pool, int code, const char *why)
{
    while (pool->waiters_head) {
        pool_waiter *w = pool->waiters_head;
        unlink_waiter(pool, w);
        pool_waiter_fail(w, pool, code, "%s", why);
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
            pool_slot_expired(s, now))
            continue;
        if (s->state == SLOT_RESERVED && !pool_needs_check_first(pool, s, now))
            return s;
        if (s->state == SLOT_READY && !ready && !pool_needs_check_first(pool, s, now))
            ready = s;
    }
    return ready;
}

void
pool_grant_waiters(pgev_pool *pool, uint64_t now)
{
    pool_slot *slot;
    while (pool->waiters_head && !pool_dead(pool) && (slot = grantable(pool, now)) != NULL) {
        pool_waiter *w = pool->waiters_head;
        unlink_waiter(pool, w);
        pool_slot_set_state(slot, SLOT_ACQUIRED);
        slot->lease = w->id;
        slot->uses++;
        pool->stats.acquires++;
        pool_lat_add(&pool->acquire_wait, pool_now_us() - w->created_us);
        if (pool->on_trace)
            pool_trace(pool, PGEV_TRACE_POOL_ACQUIRE, slot->conn, PGEV_OK, NULL,
                       (int64_t)(pool_now_us() - w->created_us));
        pgev_pool_acquire_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        cb(pool, slot->conn, NULL, arg);
    }
    if (pool_dead(pool))
        return;

    /* Waiters not covered by connections on their way (connecting, being
     * reset, reserved) get a busy connection reserved for them once the
     * pool cannot pool_grow: otherwise a steady stream of pool queries could
     * starve them. Surplus reservations (a waiter timed out) are undone. */
    int live = pool_live_slots(pool->nslots);
    int supply = pool->nslots[SLOT_CONNECTING] + pool->nslots[SLOT_INIT] +
                 pool->nslots[SLOT_RESETTING] + pool->nslots[SLOT_RESERVED];
    while (pool->nslots[SLOT_RESERVED] > 0 && supply > pool->nwaiters) {
        for (pool_slot *s = pool->slots; s; s = s->next) {
            if (s->state == SLOT_RESERVED) {
                pool_slot_set_state(s, SLOT_READY);
                break;
            }
        }
        supply--;
    }
    if (live < pool->max_conns)
        return; /* pool_grow() opens connections for them */
    while (pool->nwaiters > supply) {
        pool_slot *best = NULL;
        for (pool_slot *s = pool->slots; s; s = s->next)
            if (!s->standby && s->state == SLOT_READY && (!best || s->outstanding < best->outstanding))
                best = s;
        if (!best)
            break;
        pool_slot_set_state(best, SLOT_RESERVED);
        supply++;
    }
}
