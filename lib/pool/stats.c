/*
 * Pool statistics: the counters (kept where things happen) and the
 * latency percentiles, from log-linear histograms of microseconds (exact
 * below 16 us, then 8 buckets per power of two: within 12.5 %), fixed
 * size, no allocation.
 */
#include "pool-private.h"


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

void
pool_lat_add(lat_hist *h, uint64_t us)
{
    uint32_t *b = &h->buckets[lat_bucket(us)];
    if (*b < UINT32_MAX)
        (*b)++;
    h->count++;
}

double
pool_lat_percentile(const lat_hist *h, double q)
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

int
pgev_pool_stats(const pgev_pool *pool, pgev_pool_statistics *out)
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
    out->query_p50_us = pool_lat_percentile(&pool->query_latency, 0.50);
    out->query_p99_us = pool_lat_percentile(&pool->query_latency, 0.99);
    out->acquire_wait_p50_us = pool_lat_percentile(&pool->acquire_wait, 0.50);
    out->acquire_wait_p99_us = pool_lat_percentile(&pool->acquire_wait, 0.99);
    return PGEV_OK;
}

/* ---- tracing ------------------------------------------------------------ */

void
pool_trace(pgev_pool *pool, pgev_trace_event event, pgev_conn *conn, int status, const pgev_error *err,
           int64_t duration_us)
{
    pgev_trace t = {
        .event = event,
        .conn = conn,
        .pool = pool,
        .duration_us = duration_us,
        .status = status,
        .sqlstate = err && pgev_error_sqlstate(err) ? pgev_error_sqlstate(err) : "",
        .message = err ? pgev_error_message(err) : NULL,
        .backend_pid = conn && pgev_conn_pg(conn) ? PQbackendPID(pgev_conn_pg(conn)) : 0,
    };
    pool->on_trace(&t, pool->trace_arg);
}

void
pool_conn_trace(const pgev_trace *trace, void *arg)
{
    pgev_pool *pool = arg;
    pgev_trace t = *trace;
    t.pool = pool;
    pool->on_trace(&t, pool->trace_arg);
}
