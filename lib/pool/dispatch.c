/*
 * The query queue and dispatch: pool queries go to the least-loaded ready
 * connection, or wait in the pool's FIFO (bounded, with deadlines) until
 * one has room; a query its connection lost is sent again when that is
 * safe (never sent, or flagged retry-safe and no rows delivered yet).
 */
#include "pool-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void
pool_query_fail(pgev_pool *pool, pool_query *pq, int code, const char *fmt, ...)
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
    pool_lat_add(&pool->query_latency, pool_now_us() - pq->submitted_us);
    pgev_result_cb cb = pq->args.on_done;
    void *arg = pq->args.arg;
    pool_query_free(pool, pq);
    if (cb)
        cb(NULL, &res, arg);
}

/* A READY slot that can take one more pool query. */
static bool
slot_dispatchable(const pool_slot *slot, uint64_t now)
{
    return slot->state == SLOT_READY && !slot->checking && !slot->refusing &&
           slot->outstanding < slot->pool->conn_max_inflight && !pool_slot_expired(slot, now) &&
           pgev_conn_state(slot->conn) == PGEV_CONN_READY;
}

static pool_slot *
least_loaded(pgev_pool *pool, bool standby, uint64_t now)
{
    pool_slot *best = NULL;
    for (pool_slot *s = pool->slots; s; s = s->next)
        if (s->standby == standby && slot_dispatchable(s, now) &&
            (!best || s->outstanding < best->outstanding) && !pool_needs_check_first(pool, s, now))
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

/* A queued query's own timeout wakes the deadline timer, not only the
 * maintenance pass. */
static void
note_timeout(pgev_pool *pool, const pool_query *pq)
{
    if (pq->query_deadline_ms && pq->query_deadline_ms < pool->queue_next_timeout_ms)
        pool->queue_next_timeout_ms = pq->query_deadline_ms;
}

/* Back to the head of the queue (it was submitted before everything
 * there), with the queue deadline it got at submit. That may not pass the
 * head's: the head expires first (pool_expire_queue). */
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
    note_timeout(pool, pq);
}

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
        pool_kick(pool);
        pool_drop(pool);   /* the dispatched query's reference */
        return;
    }
    pgev_result_cb cb = pq->args.on_done;
    void *user = pq->args.arg;
    pool_lat_add(&pool->query_latency, pool_now_us() - pq->submitted_us);
    pool_query_free(pool, pq);
    if (pgev_result_status(res) != PGEV_OK)
        pool->stats.queries_failed++;
    pool_enter(pool);
    if (cb)
        cb(conn, res, user);
    if (!pool_dead(pool)) {
        slot->last_used_ms = pool_now_ms();
        pool_kick(pool);
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
        uint64_t now = pool_now_ms();
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
    pq->submitted_us = pool_now_us();
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
            pool_kick(pool);
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
    note_timeout(pool, pq);
    pool->stats.queries++;
    pool_kick(pool);
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

/* ---- service: the pool's one place for deferred work -------------------- */

void
pool_expire_queue(pgev_pool *pool, uint64_t now)
{
    char why[320];
    while (pool->queue_head && pool->queue_head->deadline_ms <= now && !pool_dead(pool)) {
        pool_query *pq = pool->queue_head;
        pool->queue_head = pq->next;
        if (!pool->queue_head)
            pool->queue_tail = NULL;
        pool->queued--;
        pool_query_fail(pool, pq, PGEV_ETIMEOUT,
                             "pool query waited %d ms for a connection and timed out%s",
                             pool->queue_timeout_ms, pool_conn_error_suffix(pool, why, sizeof(why)));
    }
}

/* Completes every queued query with `code` (the pool is being freed). */
void
pool_fail_queue(pgev_pool *pool, int code, const char *why)
{
    while (pool->queue_head) {
        pool_query *pq = pool->queue_head;
        pool->queue_head = pq->next;
        if (!pool->queue_head)
            pool->queue_tail = NULL;
        pool->queued--;
        pool_query_fail(pool, pq, code, "%s", why);
    }
}

void
pool_dispatch_queue(pgev_pool *pool, uint64_t now)
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
            pool_query_fail(pool, pq, (int)rc, "%s", pool->errmsg);
    }
}

/* Queued queries whose own timeout (query_timeout_ms, or theirs) passed
 * complete with PGEV_ETIMEOUT; the queue is in submit order, not deadline
 * order, so this walks it (when the earliest of those timeouts is due:
 * the deadline timer wakes for it, and each maintenance pass). */
void
pool_expire_query_timeouts(pgev_pool *pool, uint64_t now)
{
    pool_query **link = &pool->queue_head, *prev = NULL;
    pool->queue_next_timeout_ms = UINT64_MAX;
    while (*link && !pool_dead(pool)) {
        pool_query *pq = *link;
        if (!pq->query_deadline_ms || pq->query_deadline_ms > now) {
            note_timeout(pool, pq);
            prev = pq;
            link = &pq->next;
            continue;
        }
        *link = pq->next;
        if (pool->queue_tail == pq)
            pool->queue_tail = prev;
        pool->queued--;
        pool_query_fail(pool, pq, PGEV_ETIMEOUT, "pool query timed out in the pool's queue, before any connection took it");
    }
}
