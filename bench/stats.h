/*
 * Shared by bench/raw-libpq.c and tools/pgev-bench.c, so that pgev and the
 * raw libpq anchor send the same parameters and measure latency in exactly
 * the same way.
 */
#ifndef PGEV_BENCH_STATS_H
#define PGEV_BENCH_STATS_H

#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Latency histogram: log-linear buckets (64 per power of two, so a reported
 * percentile is within ~1.6% of the true value) in fixed memory, so that
 * recording a million samples does not show up in the peak RSS we report.
 * ------------------------------------------------------------------------ */

#define HIST_SUB_BITS 6
#define HIST_BUCKETS ((64 - HIST_SUB_BITS) << HIST_SUB_BITS)

typedef struct histogram {
    uint64_t count;
    uint64_t max_ns;
    uint64_t buckets[HIST_BUCKETS];
} histogram;

static inline unsigned hist_index(uint64_t ns)
{
    unsigned msb = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
    unsigned shift = msb > HIST_SUB_BITS ? msb - HIST_SUB_BITS : 0;
    return (shift << HIST_SUB_BITS) + (unsigned)(ns >> shift);
}

/* The middle of the range of values that land in bucket `index`. */
static inline uint64_t hist_value(unsigned index)
{
    if (index < (2u << HIST_SUB_BITS))
        return index;
    unsigned shift = (index >> HIST_SUB_BITS) - 1;
    uint64_t low = (uint64_t)(index - (shift << HIST_SUB_BITS)) << shift;
    return low + ((UINT64_C(1) << shift) >> 1);
}

static inline void hist_record(histogram *h, uint64_t ns)
{
    h->buckets[hist_index(ns)]++;
    h->count++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

static inline double hist_percentile_us(const histogram *h, double fraction)
{
    if (h->count == 0)
        return 0.0;
    uint64_t rank = (uint64_t)(fraction * (double)h->count + 0.999999);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t ns = hist_value(i);
            return (double)(ns < h->max_ns ? ns : h->max_ns) / 1000.0;
        }
    }
    return (double)h->max_ns / 1000.0;
}

/* ------------------------------------------------------------------------
 * Monotonic clock
 * ------------------------------------------------------------------------ */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- query parameters ---- */

/* Writes the decimal form of `value` into buf (at least 11 bytes). */
static inline void format_uint(char *buf, uint32_t value)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (n)
        *buf++ = digits[--n];
    *buf = '\0';
}

/* The parameter sent with query number `seq`: small, positive, varying. */
static inline uint32_t param_for(uint64_t seq)
{
    return (uint32_t)(seq % 1000000000u);
}

#endif /* PGEV_BENCH_STATS_H */
