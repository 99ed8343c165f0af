/*
 * Maintenance: the periodic pass (idle timeout, lifetime, init timeout,
 * health checks of idle connections, query timeouts in the queue), the
 * health check before use, the drain of pgev_pool_close() and the
 * deadline timer.
 */
#include "pool-private.h"

#include <stdio.h>

/* An idle connection unused for health_check_idle_ms answers an empty
 * query before it takes work (pgev.h promises it): it starts that check
 * now and is skipped until the check has passed. */
bool
pool_needs_check_first(pgev_pool *pool, pool_slot *s, uint64_t now)
{
    if (pool->health_check_idle_ms <= 0 || s->outstanding != 0 ||
        now - s->last_used_ms < (uint64_t)pool->health_check_idle_ms)
        return false;
    pool_health_check(pool, s, now);
    return true;
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
            slot->last_used_ms = pool_now_ms();
        } else {
            pool->stats.health_check_failures++;
            pool_slot_retire(slot); /* its replacement is opened by pool_grow() */
        }
        pool_kick(pool);
    }
    pool_drop(pool);
}

/* Connections idle at least health_check_idle_ms answer an empty query
 * before they take work again. */
void
pool_health_check(pgev_pool *pool, pool_slot *s, uint64_t now)
{
    if (pool->health_check_idle_ms <= 0 || (s->state != SLOT_READY && s->state != SLOT_RESERVED) ||
        s->checking || s->outstanding != 0 ||
        now - s->last_used_ms < (uint64_t)pool->health_check_idle_ms)
        return;
    s->checking = true;
    pool->stats.health_checks++;
    pgev_query_args args = { .sql = "", .flags = PGEV_QUERY_NOCACHE, .timeout_ms = pool->connect_timeout_ms > 0 ? pool->connect_timeout_ms : PGEV_DEFAULT_CONNECT_TIMEOUT_MS, .on_done = on_health_checked, .arg = s };
    if (pgev_conn_submit(s->conn, &args) < 0) {
        s->checking = false;
        pool->stats.health_check_failures++;
        pool_slot_retire(s);
        return;
    }
    pool_hold(pool);    /* until on_health_checked */
}

/* Maintenance: idle timeout, lifetime, init timeout, health checks, query
 * timeouts in the queue. */
void
pool_maintain(pgev_pool *pool, uint64_t now)
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
            if (pool_slot_expired(s, now)) {
                pool_slot_close(s);
                serving[s->standby]--;
            } else if (s->state == SLOT_READY && s->outstanding == 0 && !s->checking &&
                       pool->idle_timeout_ms > 0 && serving[s->standby] > min &&
                       now - s->last_used_ms >= (uint64_t)pool->idle_timeout_ms) {
                pool_slot_close(s);
                serving[s->standby]--;
            } else {
                pool_health_check(pool, s, now);
            }
            break;
        case SLOT_INIT:
            if (pool->connect_timeout_ms > 0 &&
                now - s->created_ms >= (uint64_t)pool->connect_timeout_ms) {
                pool->stats.connect_failures++;
                snprintf(pool->last_conn_error, sizeof(pool->last_conn_error),
                         "the init hook (on_conn_init) did not finish within %d ms",
                         pool->connect_timeout_ms);
                pool_slot_retire(s);
                serving[s->standby]--;
            }
            break;
        default:
            break;
        }
    }
    pool_expire_query_timeouts(pool, now);
}

/* Drain: once nothing is queued or waiting, close what is idle; once no
 * connection is left, the pool is closed. */
void
pool_check_drained(pgev_pool *pool)
{
    if (pool->state != POOL_DRAINING || pool->queue_head || pool->waiters_head)
        return;
    for (pool_slot *s = pool->slots; s; s = s->next) {
        if (s->state == SLOT_CONNECTING || s->state == SLOT_INIT ||
            (s->state == SLOT_READY && s->outstanding == 0) || s->state == SLOT_RESERVED) {
            if (s->state == SLOT_RESERVED)
                pool_slot_set_state(s, SLOT_READY);
            if (s->outstanding == 0)
                pool_slot_close(s);
        }
    }
    if (pool->slots)
        return;
    pool->state = POOL_CLOSED;
    pgev_event_stop(pool->maint_ev);
    pgev_event_stop(pool->deadline_ev);
    if (pool->on_closed)
        pool->on_closed(pool, pool->closed_arg);
}

/* The deadline timer: the head of the queue and of the waiters, and the
 * released connections' reset deadlines (soon, when one waits for its
 * last Sync to be read). */
void
pool_arm_deadline(pgev_pool *pool, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    if (pool->queue_head)
        next = pool->queue_head->deadline_ms;
    if (pool->waiters_head && pool->waiters_head->deadline_ms < next)
        next = pool->waiters_head->deadline_ms;
    if (pool->queue_head && pool->queue_next_timeout_ms < next)
        next = pool->queue_next_timeout_ms;
    if (pool->nslots[SLOT_RESETTING] > 0) {
        for (pool_slot *s = pool->slots; s; s = s->next) {
            if (s->state != SLOT_RESETTING)
                continue;
            int shift = s->sync_rechecks < 7 ? s->sync_rechecks : 7;
            int recheck = RESET_RECHECK_MS << shift;
            if (recheck > RESET_RECHECK_MAX_MS)
                recheck = RESET_RECHECK_MAX_MS;
            uint64_t at = s->awaiting_sync ? now + (uint64_t)recheck : s->reset_deadline_ms;
            if (at < next)
                next = at;
        }
    }
    if (next == UINT64_MAX) {
        pgev_event_stop(pool->deadline_ev);
        return;
    }
    uint64_t ms = next > now ? next - now : 0;
    pgev_event_start(pool->deadline_ev, ms > INT32_MAX ? INT32_MAX : (int)ms);
}
