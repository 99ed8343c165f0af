/*
 * Shared by bench/raw-libpq.c and tools/pgev-bench.c, so that pgev and the
 * raw libpq anchor send the same parameters and measure latency in exactly
 * the same way.
 */
#ifndef PGEV_BENCH_STATS_H
#define PGEV_BENCH_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
 * Monotonic clock, CPU time and memory
 * ------------------------------------------------------------------------ */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* User plus system CPU seconds this process has used so far. */
static inline double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The peak resident set of the whole process so far, in KiB. */
static inline long peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

/* ------------------------------------------------------------------------
 * Throughput over time: completions counted per TIMELINE_STEP_MS interval
 * since the start, for the throughput plot. Grows as the run goes on (8
 * bytes per interval: 80 bytes a second).
 * ------------------------------------------------------------------------ */

#define TIMELINE_STEP_MS 100

typedef struct timeline {
    uint64_t *counts;
    size_t len; /* intervals used */
    size_t cap;
} timeline;

/* Adds `n` completions at `elapsed_ns` after the start. False when out of memory. */
static inline bool timeline_add(timeline *t, uint64_t elapsed_ns, uint64_t n)
{
    size_t index = (size_t)(elapsed_ns / ((uint64_t)TIMELINE_STEP_MS * 1000000u));
    if (index >= t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap <= index)
            cap *= 2;
        uint64_t *counts = realloc(t->counts, cap * sizeof *counts);
        if (!counts)
            return false;
        memset(counts + t->cap, 0, (cap - t->cap) * sizeof *counts);
        t->counts = counts;
        t->cap = cap;
    }
    t->counts[index] += n;
    if (index >= t->len)
        t->len = index + 1;
    return true;
}

static inline void timeline_free(timeline *t)
{
    free(t->counts);
    *t = (timeline){0};
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

/*
 * The pgbench_accounts key looked up by query number `seq`: spread
 * uniformly over 1..naccounts by a fixed hash (splitmix64), so every run
 * and both programs look up the same keys, in an order no cache predicts.
 */
static inline uint32_t account_for(uint64_t seq, uint32_t naccounts)
{
    uint64_t z = seq + UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return 1 + (uint32_t)(z % naccounts);
}

#endif /* PGEV_BENCH_STATS_H */
