/*
 * Soak: mixed load through a pool while tests/faultproxy injects a random
 * fault every few hundred milliseconds (reset, cut mid-result, stall,
 * latency, refused connections). Afterwards every accepted query must have
 * completed exactly once, memory must not have grown with time, and the
 * server must be back to at most the pool's size in backends.
 *
 * PGEV_SOAK_SECONDS sets the length (default 15: the short run CI does;
 * `make soak` runs 300). Prints one summary line. Needs PGEV_TEST_DSN and
 * TCP to the server (PGEV_TEST_PORT).
 */
#define _GNU_SOURCE /* asprintf */
#include "faultproxy.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define APP_NAME "pgev_soak"
#define POOL_SIZE 4
#define CLIENTS 200

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct soak soak;

/* One accepted query: completes exactly once. */
typedef struct job {
    soak *s;
    int client;
    int kind;
    int done;
    int64_t rows;
    char param[16];
} job;

struct soak {
    pgev_pool *pool;
    faultproxy *proxy;
    uint64_t stop_ms;
    bool stopping;
    uint64_t rng;
    int64_t accepted, refused, completed, duplicates, after_done_rows, ok_without_result;
    int64_t by_status[16];
    int64_t faults;
    int64_t outstanding;
    long rss_start, rss_max, rss_after_warmup;
    uint64_t warm_ms;
    struct event *fault_ev;
    /* Completed jobs are freed only after RECENT more have completed, so
     * that a second callback for one of them is seen (done > 1) rather
     * than landing on freed memory. */
    job *recent[65536];
    size_t recent_next;
};

#define RECENT (sizeof(((soak *)0)->recent) / sizeof(job *))

static uint64_t
rnd(soak *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 2685821657736338717ull;
}

static void submit_next(soak *s, int client);

static int
status_slot(int status)
{
    int i = -status;
    return i >= 0 && i < 16 ? i : 15;
}

static void
on_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    job *j = arg;
    if (j->done)
        j->s->after_done_rows++;
    j->rows += pgev_result_rows(res);
}

static void
on_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    job *j = arg;
    soak *s = j->s;
    if (j->done++) {
        s->duplicates++;
        return;     /* never freed twice: the record stays, the test fails */
    }
    s->completed++;
    s->outstanding--;
    s->by_status[status_slot(pgev_result_status(res))]++;
    /* A query is never OK without the server's result (issue: OK with no
     * PGresult when all backends were terminated under load). */
    if (pgev_result_status(res) == PGEV_OK && !pgev_result_pg(res))
        s->ok_without_result++;
    int client = j->client;
    job **slot = &s->recent[s->recent_next++ % RECENT];
    free(*slot);
    *slot = j;
    if (!s->stopping)
        submit_next(s, client);
}

/* A mix: read-only point queries (retried by the pool when a connection
 * dies), streamed result sets, writes, and slow ones that a stall or
 * latency fault catches in flight. */
static void
submit_next(soak *s, int client)
{
    if (mono_ms() >= s->stop_ms) {
        s->stopping = true;
        return;
    }
    job *j = calloc(1, sizeof *j);
    ck_assert_ptr_nonnull(j);
    j->s = s;
    j->client = client;
    j->kind = (int)(rnd(s) % 10);
    snprintf(j->param, sizeof j->param, "%d", (int)(rnd(s) % 100000));
    const char *params[1] = { j->param };
    pgev_query_args args = { .nparams = 1, .param_values = params, .on_done = on_done, .arg = j };
    if (j->kind < 6) {
        args.sql = "SELECT $1::int + 1";
        args.flags = PGEV_QUERY_READONLY;
    } else if (j->kind < 8) {
        args.sql = "SELECT g, repeat('x', 200) FROM generate_series(1, 50 + $1::int % 200) g";
        args.on_rows = on_rows;
    } else if (j->kind < 9) {
        args.sql = "INSERT INTO soak_t (v) VALUES ($1::int)";
    } else {
        args.sql = "SELECT pg_sleep(0.05), $1::int";
        args.timeout_ms = 2000;
    }
    int64_t id = pgev_pool_submit(s->pool, &args);
    if (id < 0) {
        /* Refused (queue full): no callback comes; try again later. */
        s->refused++;
        free(j);
        return;
    }
    s->accepted++;
    s->outstanding++;
}

/* Every 300 ms: end the running fault, or start a random new one. */
static void
on_fault_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    soak *s = arg;
    long rss = tu_rss_kb();
    if (rss > s->rss_max)
        s->rss_max = rss;
    faultproxy_unstall(s->proxy);
    faultproxy_set_latency(s->proxy, 0);
    ck_assert_int_eq(faultproxy_refuse(s->proxy, false), 0);
    if (s->stopping || mono_ms() >= s->stop_ms)
        return;
    switch (rnd(s) % 6) {
    case 0:
        faultproxy_reset(s->proxy);
        break;
    case 1:
        faultproxy_cut_after(s->proxy, (size_t)(rnd(s) % 20000));
        break;
    case 2:
        faultproxy_stall(s->proxy);
        break;
    case 3:
        faultproxy_set_latency(s->proxy, 20 + (int)(rnd(s) % 60));
        break;
    case 4:
        ck_assert_int_eq(faultproxy_refuse(s->proxy, true), 0);
        break;
    default:
        return;     /* a quiet spell */
    }
    s->faults++;
    /* Clients that stopped on refused submits start again. */
    while (s->outstanding < CLIENTS && !s->stopping)
        submit_next(s, 0);
}

static bool
all_done(void *arg)
{
    soak *s = arg;
    return s->outstanding == 0;
}

static int
server_backends(void)
{
    char *v = tu_exec_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'", APP_NAME);
    int n = v ? atoi(v) : -1;
    free(v);
    return n;
}

START_TEST(soak_with_random_faults)
{
    const char *port = getenv("PGEV_TEST_PORT");
    if (!port || !*port) {
        fprintf(stderr, "skipped: needs TCP to the test server (PGEV_TEST_PORT)\n");
        return;
    }
    const char *sec = getenv("PGEV_SOAK_SECONDS");
    int seconds = sec && atoi(sec) > 0 ? atoi(sec) : 15;
    tu_exec("DROP TABLE IF EXISTS soak_t");
    tu_exec("CREATE TABLE soak_t (v int)");

    static soak s;
    memset(&s, 0, sizeof s);
    s.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
    s.proxy = faultproxy_new(tu_base, "127.0.0.1", atoi(port));
    ck_assert_ptr_nonnull(s.proxy);
    /* The test server's TCP DSN (its user, password and database) pointed
     * at the proxy: the later host and port win. */
    const char *tcp = getenv("PGEV_TEST_DSN_TCP");
    ck_assert_msg(tcp && *tcp, "PGEV_TEST_PORT is set but PGEV_TEST_DSN_TCP is not");
    char *conninfo = NULL;
    ck_assert_int_gt(asprintf(&conninfo, "%s host=127.0.0.1 port=%d application_name=" APP_NAME " connect_timeout=3",
                              tcp, faultproxy_port(s.proxy)),
                     0);
    pgev_pool_options opts = { .min_conns = POOL_SIZE, .max_conns = POOL_SIZE, .queue_timeout_ms = 3000,
                               .query_timeout_ms = 5000, .max_pending = 10 * CLIENTS };
    s.pool = pgev_pool_new(tu_base, conninfo, &opts);
    free(conninfo);
    ck_assert_ptr_nonnull(s.pool);

    s.rss_start = tu_rss_kb();
    uint64_t start = mono_ms();
    s.stop_ms = start + (uint64_t)seconds * 1000u;
    s.warm_ms = start + (uint64_t)seconds * 1000u / 4;
    for (int c = 0; c < CLIENTS; c++)
        submit_next(&s, c);
    s.fault_ev = event_new(tu_base, -1, EV_PERSIST, on_fault_tick, &s);
    struct timeval every = { 0, 300000 };
    ck_assert_int_eq(event_add(s.fault_ev, &every), 0);

    /* Run until the time is up and everything accepted has completed. */
    while (mono_ms() < s.stop_ms) {
        event_base_loop(tu_base, EVLOOP_ONCE);
        if (!s.rss_after_warmup && mono_ms() >= s.warm_ms)
            s.rss_after_warmup = tu_rss_kb();
        /* Refused submits leave clients idle: top them up. */
        while (s.outstanding < CLIENTS / 2 && mono_ms() < s.stop_ms)
            submit_next(&s, 0);
    }
    s.stopping = true;
    tu_run_until(all_done, &s, 30000, "every accepted query to complete");
    event_free(s.fault_ev);
    ck_assert_int_eq(s.duplicates, 0);
    ck_assert_int_eq(s.ok_without_result, 0);
    faultproxy_set_latency(s.proxy, 0);
    ck_assert_int_eq(faultproxy_refuse(s.proxy, false), 0);

    ck_assert_int_eq(s.duplicates, 0);
    ck_assert_int_eq(s.after_done_rows, 0);
    ck_assert_int_eq(s.completed, s.accepted);
    ck_assert_int_gt(s.faults, 0);
    ck_assert_int_gt(s.by_status[0], 0);    /* work got done between the faults */
    /* An open pool never fails a query as "closed": a connection that
     * broke hands its queries on instead. */
    ck_assert_int_eq(s.by_status[status_slot(PGEV_ECLOSED)], 0);

    /* The pool settles back to its size, and so does the server. */
    pgev_pool_statistics st;
    uint64_t deadline = mono_ms() + 20000;
    int backends;
    for (;;) {
        ck_assert_int_eq(pgev_pool_stats(s.pool, &st), PGEV_OK);
        backends = server_backends();
        if (st.conns <= POOL_SIZE && backends <= POOL_SIZE)
            break;
        ck_assert_msg(mono_ms() < deadline, "pool %d connections, server %d backends", st.conns, backends);
        tu_run_for(50);
    }
    long rss_end = tu_rss_kb();
    for (int i = 0; i < 16; i++)
        if (s.by_status[i])
            fprintf(stderr, "status %d (%s): %lld\n", -i, pgev_strerror(-i), (long long)s.by_status[i]);
    fprintf(stderr,
            "soak: %d s, %lld queries completed (%lld ok, %lld conn lost, %lld timed out, %lld server errors), "
            "%lld refused submits, %lld faults injected, callbacks %lld of %lld expected, %lld duplicated; "
            "RSS %ld kB at start, %ld after warm-up, %ld max, %ld at end; pool %d conns, server %d backends, "
            "%lld reconnects\n",
            seconds, (long long)s.completed, (long long)s.by_status[0],
            (long long)s.by_status[status_slot(PGEV_ECONNLOST)], (long long)s.by_status[status_slot(PGEV_ETIMEOUT)],
            (long long)s.by_status[status_slot(PGEV_ESERVER)], (long long)s.refused, (long long)s.faults,
            (long long)s.completed, (long long)s.accepted, (long long)s.duplicates, s.rss_start,
            s.rss_after_warmup, s.rss_max, rss_end, st.conns, backends, (long long)st.connects);
    /* Flat memory: after warm-up, at most a few MB more however long it ran
     * (sanitizer builds keep freed memory in quarantine: not measured). */
    if (!tu_sanitized())
        ck_assert_msg(s.rss_max - s.rss_after_warmup < 8 * 1024, "RSS grew from %ld to %ld kB after warm-up",
                      s.rss_after_warmup, s.rss_max);
    tu_in_call++;
    pgev_pool_free(s.pool);
    tu_in_call--;
    faultproxy_free(s.proxy);
    for (size_t i = 0; i < RECENT; i++)
        free(s.recent[i]);
}
END_TEST

static Suite *
soak_suite(void)
{
    Suite *s = suite_create("soak");
    const char *sec = getenv("PGEV_SOAK_SECONDS");
    double seconds = sec && atoi(sec) > 0 ? atoi(sec) : 15;
    TCase *tc = tu_tcase("soak", seconds + 120);
    tcase_add_test(tc, soak_with_random_faults);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(soak_suite());
}
