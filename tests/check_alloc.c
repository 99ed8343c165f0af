/*
 * Allocation failure at every allocation site on a query's path: plain,
 * streamed with parameters and the statement cache, in an atomic batch,
 * prepared and executed, queued behind a full window with its own copy of
 * a long parameter, and through a pool (one dispatched, one queued in the
 * pool). Connecting is not walked.
 *
 * This program interposes malloc, calloc, realloc and free (through
 * glibc's __libc_* entry points). While armed, the Nth allocation fails;
 * for N = 1, 2, ... each scenario runs with its Nth allocation failing
 * (in pgev, libpq or libevent) until a run makes fewer than N allocations,
 * so every site on that path has failed once. Each run must end with a
 * clear outcome — the submit returns an error and never calls back, or
 * the callback runs exactly once — never a crash or a hang, and nothing
 * allocated during the run may still be allocated once the connection is
 * freed (the interposer tracks those pointers: the leak check).
 *
 * The sanitizer build has its own allocator, which cannot be interposed
 * again: there this suite says "skipped" (LeakSanitizer covers leaks on
 * every other path there). Needs PGEV_TEST_DSN.
 */
#define _GNU_SOURCE /* asprintf */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#define PGEV_ALLOC_HOOK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PGEV_ALLOC_HOOK 0
#endif
#endif
#ifndef PGEV_ALLOC_HOOK
#define PGEV_ALLOC_HOOK 1
#endif

#if PGEV_ALLOC_HOOK

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);

/* ---- the interposer: a countdown and a set of live pointers -------------- */

#define LIVE_SLOTS (1u << 16)

static bool armed;
static long alloc_count;        /* allocations while armed */
static long fail_at;            /* the allocation (1-based) that fails; 0: none */
static bool fail_hit;           /* it did */
static void *live[LIVE_SLOTS];  /* allocated while armed, not yet freed */
static long live_count;
static bool live_overflow;

static size_t
slot_of(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0xed5ad4bbu;
    return (size_t)(x & (LIVE_SLOTS - 1));
}

static void
live_add(void *p)
{
    size_t i = slot_of(p);
    for (size_t n = 0; n < LIVE_SLOTS; n++, i = (i + 1) & (LIVE_SLOTS - 1)) {
        if (!live[i] || live[i] == (void *)1) {
            live[i] = p;
            live_count++;
            return;
        }
    }
    live_overflow = true;
}

static bool
live_remove(void *p)
{
    size_t i = slot_of(p);
    for (size_t n = 0; n < LIVE_SLOTS && live[i]; n++, i = (i + 1) & (LIVE_SLOTS - 1)) {
        if (live[i] == p) {
            live[i] = (void *)1;   /* tombstone */
            live_count--;
            return true;
        }
    }
    return false;
}

/* Decides the fate of one allocation: false = fail it. */
static bool
allow(void)
{
    if (!armed)
        return true;
    alloc_count++;
    if (alloc_count == fail_at) {
        fail_hit = true;
        return false;
    }
    return true;
}

void *
malloc(size_t size)
{
    if (!allow())
        return NULL;
    void *p = __libc_malloc(size);
    if (p && armed)
        live_add(p);
    return p;
}

void *
calloc(size_t n, size_t size)
{
    if (!allow())
        return NULL;
    void *p = __libc_calloc(n, size);
    if (p && armed)
        live_add(p);
    return p;
}

void *
realloc(void *old, size_t size)
{
    if (!old)
        return malloc(size);
    if (!allow())
        return NULL;
    /* A block from before the run stays untracked when it moves (an
     * event_base's arrays, say); one from the run stays tracked. */
    bool tracked = armed && live_remove(old);
    void *p = __libc_realloc(old, size);
    if (!p && tracked)
        live_add(old);
    else if (p && tracked)
        live_add(p);
    return p;
}

void
free(void *p)
{
    if (p && live_count > 0)
        (void)live_remove(p);
    __libc_free(p);
}

static void
arm(long n)
{
    memset(live, 0, sizeof live);
    live_count = 0;
    live_overflow = false;
    alloc_count = 0;
    fail_at = n;
    fail_hit = false;
    armed = true;
}

static void
disarm(void)
{
    armed = false;
}

/* ---- scenarios ------------------------------------------------------------ */

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the loop until q completed, allocating nothing itself (tu_run_until
 * makes a timer: that would be one of the allocations counted). `wake` is
 * made before arming and keeps the loop turning. */
static void
wait_done(const tu_query *q, struct event *wake, const char *what)
{
    uint64_t deadline = mono_ms() + 10000;
    struct timeval tick = { 0, 50000 };
    while (q->done_calls == 0) {
        (void)evtimer_add(wake, &tick);
        event_base_loop(tu_base, EVLOOP_ONCE);
        if (mono_ms() > deadline) {
            armed = false;
            ck_abort_msg("%s: no completion within 10 s (allocation %ld failing)", what, fail_at);
        }
    }
}

typedef struct outcome {
    long allocations;
    bool failed;
    int64_t submit;
    int done_calls;
    int status;
    long leaked;
} outcome;

enum scenario { PLAIN, PARAMS_STREAM, BATCH, PREPARE_EXECUTE, QUEUED_COPY, POOL };

/* The armed part of a run is over: what it did, judged by q[0]. */
static void
stop_run(outcome *o, const tu_query *q, struct event *wake)
{
    disarm();
    event_free(wake);
    o->allocations = alloc_count;
    o->failed = fail_hit;
    o->done_calls = q[0].done_calls;
    o->status = q[0].status;
}

/* Once the connection or pool is freed: every query q[0..3) called back
 * exactly once (never when refused), and what is still allocated. */
static void
settle_run(outcome *o, const tu_query *q)
{
    tu_assert_all_once(q, 3);
    o->leaked = live_count;
    ck_assert_msg(!live_overflow, "too many live allocations to track");
}

/* A parameter too long for a query's inline copy of its arguments: the
 * copy is then an allocation of its own. */
static char long_param[300];

/* Pool completions carry the connection's query id, not the pool's: their
 * own recorder (tu_done_cb checks the id). */
static void
pool_done_cb(pgev_conn *conn, pgev_result *res, void *arg)
{
    tu_query *q = arg;
    (void)conn;
    TU_CHECK(tu_in_call == 0, "pool query %d: on_done ran inside the submitting call", q->index);
    q->done_calls++;
    q->status = pgev_result_status(res);
    TU_CHECK(q->status == PGEV_OK || pgev_result_error(res) != NULL, "pool query %d: status %d without an error",
             q->index, q->status);
}

static bool
pool_idle(void *arg)
{
    pgev_pool_statistics st;
    return pgev_pool_stats(arg, &st) == PGEV_OK && st.conns_idle >= 1;
}

/* POOL: a pool of one connection (up before arming) with a window of one:
 * the first query is dispatched at once, the second waits in the pool's
 * queue with its copy until the first completes. */
static outcome
run_pool(long n)
{
    outcome o = { 0 };
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .conn_max_inflight = 1 };
    pgev_pool *pool = pgev_pool_new(tu_base, tu_dsn(), &opts);
    ck_assert_ptr_nonnull(pool);
    tu_run_until(pool_idle, pool, 10000, "the pool's connection");
    tu_query q[3];
    memset(q, 0, sizeof q);
    const char *params[1] = { long_param };
    struct event *wake = evtimer_new(tu_base, wake_cb, NULL);
    ck_assert_ptr_nonnull(wake);
    arm(n);
    tu_in_call++;
    q[0].id = pgev_pool_query_params(pool, "SELECT length($1::text)", 1, params, pool_done_cb, &q[0]);
    q[1].id = pgev_pool_query_params(pool, "SELECT length($1::text)", 1, params, pool_done_cb, &q[1]);
    tu_in_call--;
    o.submit = q[0].id;
    for (int i = 0; i < 2; i++)
        if (q[i].id > 0)
            wait_done(&q[i], wake, "the pool query");
    stop_run(&o, q, wake);
    pgev_pool_free(pool);
    settle_run(&o, q);
    return o;
}

/* Connects (not armed), then runs one scenario armed with allocation
 * `n` failing, frees the connection and counts what is left. */
static outcome
run(enum scenario sc, long n)
{
    if (sc == POOL)
        return run_pool(n);
    outcome o = { 0 };
    pgev_conn_options opts = { .stmt_cache_size = sc == PLAIN ? PGEV_STMT_CACHE_OFF : 0,
                               .max_inflight = sc == QUEUED_COPY ? 1 : 0 };
    pgev_conn *conn = tu_connect(&opts);
    tu_query q[3];
    memset(q, 0, sizeof q);
    static const char *const params[2] = { "41", NULL };
    struct event *wake = evtimer_new(tu_base, wake_cb, NULL);
    ck_assert_ptr_nonnull(wake);
    arm(n);
    switch (sc) {
    case PLAIN:
        o.submit = tu_query_sql(conn, "SELECT 1", &q[0]);
        break;
    case PARAMS_STREAM: {
        pgev_query_args args = { .sql = "SELECT $1::int + g, $2::text FROM generate_series(1, 50) g",
                                 .nparams = 2, .param_values = params };
        o.submit = tu_submit(conn, &args, &q[0], true);
        break;
    }
    case BATCH:
        if (pgev_conn_batch_begin(conn) != PGEV_OK) {
            o.submit = PGEV_ENOMEM;
            break;
        }
        o.submit = tu_query_sql(conn, "SELECT 1", &q[0]);
        (void)tu_batch_end(conn, &q[1]);   /* refused without memory: the query is then cancelled at free */
        break;
    case PREPARE_EXECUTE:
        o.submit = tu_prepare(conn, "alloc_stmt", "SELECT $1::int", 1, NULL, &q[0]);
        if (o.submit > 0)
            (void)tu_execute(conn, "alloc_stmt", 1, params, &q[2]);
        break;
    case QUEUED_COPY: {
        /* A window of one: the second query waits with its own copy. */
        const char *values[1] = { long_param };
        o.submit = tu_query_params(conn, "SELECT length($1::text)", 1, values, &q[0]);
        if (o.submit > 0)
            (void)tu_query_params(conn, "SELECT length($1::text)", 1, values, &q[2]);
        break;
    }
    case POOL:
        break;  /* run_pool() */
    }
    if (o.submit > 0 && (sc != BATCH || q[1].id > 0))
        wait_done(&q[0], wake, "the query");
    if (q[2].id > 0)
        wait_done(&q[2], wake, "the execute");
    if (q[1].id > 0)
        wait_done(&q[1], wake, "the batch");
    stop_run(&o, q, wake);
    pgev_conn_free(conn);
    settle_run(&o, q);
    return o;
}

static void
every_site(enum scenario sc, const char *name)
{
    long sites = 0;
    memset(long_param, 'x', sizeof long_param - 1);
    for (long n = 1;; n++) {
        outcome o = run(sc, n);
        ck_assert_msg(o.leaked == 0, "%s, allocation %ld failing: %ld allocation(s) leaked", name, n, o.leaked);
        if (o.submit < 0)
            ck_assert_msg(o.submit == PGEV_ENOMEM || o.submit == PGEV_ECLOSED,
                          "%s, allocation %ld failing: submit returned %lld", name, n, (long long)o.submit);
        if (!o.failed) {
            /* Fewer than n allocations: every site has failed once. */
            ck_assert_msg(o.submit > 0 && o.status == PGEV_OK, "%s without failure: %s", name,
                          pgev_strerror(o.status));
            fprintf(stderr, "%s: %ld allocation sites on the path, each failed once\n", name, sites);
            return;
        }
        sites++;
        ck_assert_msg(n < 5000, "%s: no end to the allocations", name);
    }
}

START_TEST(plain_query)
{
    every_site(PLAIN, "plain query");
}
END_TEST

START_TEST(streamed_query_with_parameters_and_statement_cache)
{
    every_site(PARAMS_STREAM, "streamed query with parameters (statement cache on)");
}
END_TEST

START_TEST(atomic_batch)
{
    every_site(BATCH, "atomic batch");
}
END_TEST

START_TEST(prepare_and_execute)
{
    every_site(PREPARE_EXECUTE, "prepare and execute");
}
END_TEST

START_TEST(queued_query_with_its_own_copy)
{
    every_site(QUEUED_COPY, "a queued query with a long parameter");
}
END_TEST

START_TEST(pool_queries_dispatched_and_queued)
{
    every_site(POOL, "pool queries, one dispatched and one queued");
}
END_TEST

#else /* the sanitizer's allocator is in charge */

START_TEST(plain_query)
{
    fprintf(stderr, "skipped: the sanitizer build's allocator cannot be interposed\n");
}
END_TEST

#endif

static Suite *
alloc_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tu_tcase("failures", 300);
    tcase_add_test(tc, plain_query);
#if PGEV_ALLOC_HOOK
    tcase_add_test(tc, streamed_query_with_parameters_and_statement_cache);
    tcase_add_test(tc, atomic_batch);
    tcase_add_test(tc, prepare_and_execute);
    tcase_add_test(tc, queued_query_with_its_own_copy);
    tcase_add_test(tc, pool_queries_dispatched_and_queued);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    /* Over TCP, libpq first probes for GSS encryption (gssencmode=prefer);
     * libgssapi_krb5 makes a one-time global allocation on that first probe
     * and keeps it for the life of the process. When that happens while a
     * run is armed it looks like a leak to the interposer: a false positive
     * that is not pgev's (or libpq's) to fix. This suite walks pgev's query
     * path, not authentication, so its connections skip the GSS probe.
     * (Outside a test, so no ck_assert here: tu_dsn_with() cannot be used.) */
    const char *dsn = getenv("PGEV_TEST_DSN");
    if (dsn != NULL && *dsn != '\0') {
        bool uri = strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0;
        const char *sep = !uri ? " " : strchr(dsn, '?') ? "&" : "?";
        char *with = NULL;
        if (asprintf(&with, "%s%sgssencmode=disable", dsn, sep) < 0) {
            fprintf(stderr, "check_alloc: out of memory\n");
            return 99;
        }
        setenv("PGEV_TEST_DSN", with, 1);
        free(with);
    }
    return tu_run(alloc_suite());
}
