/*
 * Slots and growth: every pool connection lives in a slot, whose state
 * (pool-private.h) one setter changes, keeping the per-state counts; the
 * connection's own callbacks (connected, lost); opening connections for
 * min_conns and demand within max_conns, max_connecting and the
 * reconnect backoff; freeing retired ones from service().
 */
#include "pool-private.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- slots -------------------------------------------------------------- */

/* The one state setter: keeps the per-state counts. */
void
pool_slot_set_state(pool_slot *slot, slot_state next)
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
void
pool_slot_retire(pool_slot *slot)
{
    if (slot->state == SLOT_RETIRED)
        return;
    pool_slot_set_state(slot, SLOT_RETIRED);
    pool_kick(slot->pool);
}

/* Closes a slot the pool no longer wants: at once when nothing runs on it,
 * otherwise gracefully (its queries finish first). */
void
pool_slot_close(pool_slot *slot)
{
    slot->pool->stats.conns_closed++;
    if (slot->outstanding == 0 || pgev_conn_state(slot->conn) != PGEV_CONN_READY ||
        pgev_conn_close(slot->conn) != PGEV_OK) {
        pool_slot_retire(slot);
        return;
    }
    pool_slot_set_state(slot, SLOT_CLOSING);
}

/* A connection that should take no new work and go once idle: too old,
 * used max_uses times, or older than the last pgev_pool_reset(). */
bool
pool_slot_expired(const pool_slot *slot, uint64_t now)
{
    const pgev_pool *pool = slot->pool;
    return (slot->expires_ms != 0 && now >= slot->expires_ms) ||
           (pool->max_uses > 0 && slot->uses >= pool->max_uses) || slot->generation != pool->generation;
}

/* Slots of one kind that are not retired, and of those the ones on their
 * way up. */
int
pool_live_slots(const int *counts)
{
    int live = 0;
    for (int st = 0; st < SLOT_NSTATES; st++)
        live += st == SLOT_RETIRED ? 0 : counts[st];
    return live;
}

pool_slot *
pool_find_slot(const pgev_pool *pool, const pgev_conn *conn)
{
    for (pool_slot *s = pool->slots; s; s = s->next)
        if (s->conn == conn)
            return s;
    return NULL;
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
    uint64_t now = pool_now_ms();
    if (err) {
        pool->stats.connect_failures++;
        pool_note_conn_error(pool, conn, err);
        if (slot->standby)
            pool->standby_backoff_until_ms = backoff(pool, ++pool->standby_failures, now);
        else
            pool->backoff_until_ms = backoff(pool, ++pool->connect_failures, now);
        pool_slot_retire(slot);
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
        slot->opened = true;
        if (pool->on_trace)
            pool_trace(pool, PGEV_TRACE_POOL_CONN_OPEN, conn, PGEV_OK, NULL, 0);
        if (pool->on_conn_init) {
            pool_slot_set_state(slot, SLOT_INIT);
            slot->created_ms = now; /* the init deadline counts from here */
            pool->on_conn_init(pool, conn, pool->arg);
        } else {
            pool_slot_set_state(slot, SLOT_READY);
        }
        pool_kick(pool);
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
        pool_slot_retire(slot);
        return;
    case SLOT_ACQUIRED:
        /* The user still holds the pointer: freed on release. */
        pool->stats.conns_lost++;
        slot->end_status = PGEV_ECONNLOST;
        pool_note_conn_error(pool, conn, err);
        slot->lost = true;
        return;
    default:
        pool->stats.conns_lost++;
        slot->end_status = PGEV_ECONNLOST;
        pool_note_conn_error(pool, conn, err);
        pool_slot_retire(slot);
        return;
    }
}

void
pool_slot_open(pgev_pool *pool, uint64_t now, bool standby)
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
        .evdns_base = pool->evdns_base,
        .on_connect = on_conn_connect,
        .on_disconnect = on_conn_disconnect,
        .arg = slot,
        .on_trace = pool->on_trace ? pool_conn_trace : NULL,
        .trace_arg = pool,
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
void
pool_slot_reap(pgev_pool *pool, pool_slot *slot)
{
    pgev_conn *conn = slot->conn;
    if (slot->opened && pool->on_trace)
        pool_trace(pool, PGEV_TRACE_POOL_CONN_CLOSE, conn, slot->end_status, NULL, 0);
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

/* Standby connections: standby_min_conns always, one more at a time while
 * read-only queries find them all busy, up to standby_max_conns. */
static void
grow_standbys(pgev_pool *pool, uint64_t now)
{
    bool wanted = pool->standby_wanted;
    pool->standby_wanted = false;
    if (!pool->standby_conninfo || pool->state != POOL_OPEN || now < pool->standby_backoff_until_ms)
        return;
    int live = pool_live_slots(pool->nstandby);
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
        pool_slot_open(pool, now, true);
}

/* Opens connections for min_conns and for demand, within max_conns,
 * max_connecting and the reconnect backoff. */
void
pool_grow(pgev_pool *pool, uint64_t now)
{
    if (pool->state != POOL_OPEN && pool->state != POOL_DRAINING)
        return;
    int live = pool_live_slots(pool->nslots);
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
            pool_slot_open(pool, now, false);
    grow_standbys(pool, now);
}
