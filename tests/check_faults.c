/*
 * Faults: pgev under the failures a production database connection meets,
 * injected through tests/faultproxy (an in-process TCP proxy between pgev
 * and the test server) or done to the server itself: a backend killed with
 * SIGKILL mid-pipeline, the server crashing and coming back under pool
 * load, a connection cut in the middle of a 2-million-row stream, a stalled
 * connection past its queries' deadlines, connections refused while a pool
 * reconnects, a host name that does not resolve, and latency.
 *
 * Every test checks the contracts: each accepted query's callback runs
 * exactly once, nothing is left stuck (pending and in-flight counts drop to
 * zero, the loop keeps turning), a pool comes back to its size on the
 * server (pg_stat_activity by application_name), and the sanitizer build
 * (LeakSanitizer) finds no leak. Needs the harness's TCP port
 * (PGEV_TEST_PORT, PGEV_TEST_DSN_TCP); the tests that kill or stop the
 * server also need PGEV_TEST_CLUSTER_DIR and PGEV_TEST_PGCLUSTER, and say
 * "skipped" without them.
 */
#include "testutil.h"
#include "faultproxy.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define APP_CONN "pgev_faults_conn"
#define APP_POOL "pgev_faults_pool"

static faultproxy *proxy;

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- environment -------------------------------------------------------- */

static bool
have_tcp(void)
{
    const char *port = getenv("PGEV_TEST_PORT");
    const char *dsn = getenv("PGEV_TEST_DSN_TCP");
    if (port && *port && dsn && *dsn)
        return true;
    fprintf(stderr, "skipped: needs the harness's TCP server (PGEV_TEST_PORT, PGEV_TEST_DSN_TCP)\n");
    return false;
}

static bool
have_cluster(void)
{
    const char *dir = getenv("PGEV_TEST_CLUSTER_DIR");
    const char *tool = getenv("PGEV_TEST_PGCLUSTER");
    if (dir && *dir && tool && *tool && have_tcp())
        return true;
    fprintf(stderr, "skipped: needs the harness's own cluster (kills or stops the server)\n");
    return false;
}

/* Starts the proxy in front of the test server. */
static void
proxy_start(void)
{
    proxy = faultproxy_new(tu_base, "127.0.0.1", atoi(getenv("PGEV_TEST_PORT")));
    ck_assert_msg(proxy != NULL, "faultproxy_new failed");
}

static void
proxy_free(void)
{
    faultproxy_free(proxy);
    proxy = NULL;
    /* libevent finalises freed bufferevents from the loop. */
    for (int i = 0; i < 4; i++)
        event_base_loop(tu_base, EVLOOP_NONBLOCK);
}

/* A conninfo that goes through the proxy (later keywords win in libpq). */
static char *
proxy_dsn(const char *app)
{
    char *dsn = NULL;
    ck_assert_int_gt(asprintf(&dsn, "%s host=127.0.0.1 port=%d application_name=%s",
                              getenv("PGEV_TEST_DSN_TCP"), faultproxy_port(proxy), app),
                     0);
    return dsn;
}

static pgev_conn *
connect_via_proxy(pgev_conn_options *opts)
{
    char *dsn = proxy_dsn(APP_CONN);
    pgev_conn *conn = tu_conn_new(dsn, opts);
    free(dsn);
    ck_assert_ptr_nonnull(conn);
    tu_wait_connected(conn);
    ck_assert_msg(pgev_conn_state(conn) == PGEV_CONN_READY, "connect through the proxy: %s",
                  pgev_conn_errmsg(conn));
    return conn;
}

/* Backends of one application name, seen from a separate session. */
static int
backends(const char *app)
{
    char *v = tu_exec_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'",
                            app);
    int n = v ? atoi(v) : -1;
    free(v);
    return n;
}

struct backend_wait {
    const char *app;
    int n;
};

static bool
backends_are(void *arg)
{
    struct backend_wait *w = arg;
    if (backends(w->app) == w->n)
        return true;
    tu_run_for(20); /* the loop keeps turning; the server gets time to notice */
    return false;
}

static void
wait_backends(const char *app, int n)
{
    struct backend_wait w = { app, n };
    tu_run_until(backends_are, &w, TU_WAIT_MS, "the server's backend count");
}

/* Waits until the server accepts connections again (after a crash). */
static bool
server_up(void *arg)
{
    (void)arg;
    if (PQping(tu_dsn()) == PQPING_OK)
        return true;
    tu_run_for(50);
    return false;
}

static void
wait_server_up(void)
{
    tu_run_until(server_up, NULL, 60000, "the server to accept connections again");
}

/* Nothing left behind on a connection: no query waiting or running. */
static void
assert_not_stuck(pgev_conn *conn)
{
    ck_assert_int_eq(pgev_conn_pending(conn), 0);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);
}

static bool
is_lost(int status, const char *sqlstate)
{
    /* A backend ended by the postmaster (crash of a sibling, shutdown)
     * may say so first: 57P01/57P02 (admin/crash shutdown). */
    return status == PGEV_ECONNLOST || (status == PGEV_ESERVER && strncmp(sqlstate, "57P", 3) == 0);
}

/* ---- pool queries ------------------------------------------------------- */

static pgev_pool *pool;

typedef struct pool_rec {
    int64_t id;
    int index;
    int done_calls;
    int status;
    char sqlstate[8];
    char message[512];
    char value[32];
} pool_rec;

static int pool_done_total;
static int pool_stop_at;       /* the completion count that triggers the fault */
static pid_t pool_fault_pid;   /* the pgcluster.sh child it started */

static void
pool_done_cb(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    pool_rec *r = arg;
    TU_CHECK(tu_in_call == 0, "pool query %d: completed inside the submitting call", r->index);
    r->done_calls++;
    TU_CHECK(r->done_calls == 1, "pool query %d: completed %d times", r->index, r->done_calls);
    pool_done_total++;
    r->status = pgev_result_status(res);
    if (r->status != PGEV_OK) {
        const pgev_error *err = pgev_result_error(res);
        TU_CHECK(err != NULL, "pool query %d: failed without an error", r->index);
        snprintf(r->message, sizeof(r->message), "%s", pgev_error_message(err));
        snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", pgev_error_sqlstate(err));
    } else {
        PGresult *pg = pgev_result_pg(res);
        if (pg && PQntuples(pg) > 0)
            snprintf(r->value, sizeof(r->value), "%s", PQgetvalue(pg, 0, 0));
    }
    if (pool_stop_at > 0 && pool_done_total == pool_stop_at)
        pool_fault_pid = tu_cluster_start("server-stop", "primary", "immediate");
}

static int64_t
pool_sql(const char *sql, pool_rec *r)
{
    tu_in_call++;
    r->id = pgev_pool_query(pool, sql, pool_done_cb, r);
    tu_in_call--;
    return r->id;
}

struct recs {
    pool_rec *r;
    int n;
};

static bool
recs_done(void *arg)
{
    struct recs *rs = arg;
    for (int i = 0; i < rs->n; i++)
        if (rs->r[i].id > 0 && rs->r[i].done_calls == 0)
            return false;
    return true;
}

static void
wait_recs(pool_rec *r, int n, int timeout_ms)
{
    struct recs rs = { r, n };
    tu_run_until(recs_done, &rs, timeout_ms, "pool queries to complete");
}

static void
assert_recs_once(const pool_rec *r, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(r[i].done_calls == (r[i].id > 0 ? 1 : 0),
                      "pool query %d (id %lld) completed %d times", i, (long long)r[i].id,
                      r[i].done_calls);
}

static void
make_pool(const pgev_pool_options *opts)
{
    char *dsn = proxy_dsn(APP_POOL);
    tu_in_call++;
    pool = pgev_pool_new(tu_base, dsn, opts);
    tu_in_call--;
    free(dsn);
    ck_assert_ptr_nonnull(pool);
    pool_done_total = 0;
    pool_stop_at = 0;
    pool_fault_pid = 0;
}

static pgev_pool_statistics
pool_stats(void)
{
    pgev_pool_statistics st;
    ck_assert_int_eq(pgev_pool_stats(pool, &st), PGEV_OK);
    return st;
}

static bool
pool_idle_at_least(void *arg)
{
    return pool_stats().conns_idle >= *(int *)arg;
}

static void
wait_pool_idle(int n)
{
    tu_run_until(pool_idle_at_least, &n, 30000, "pool connections to be up and idle");
}

/* The pool serves again: n fresh queries all succeed. */
static void
assert_pool_serves(int n)
{
    pool_rec *r = calloc((size_t)n, sizeof(*r));
    ck_assert_ptr_nonnull(r);
    for (int i = 0; i < n; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        r[i].index = i;
        ck_assert_int_gt(pool_sql(sql, &r[i]), 0);
    }
    wait_recs(r, n, TU_WAIT_MS);
    assert_recs_once(r, n);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(r[i].status == PGEV_OK, "query %d after recovery: %s", i, r[i].message);
        ck_assert_int_eq(atoi(r[i].value), i);
    }
    free(r);
}

/* ---- a backend killed with SIGKILL mid-pipeline -------------------------- */

static int kill_at;
static int killed_pid;

static void
kill_backend_hook(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)conn;
    (void)res;
    (void)q;
    if (tu_done_total == kill_at && killed_pid > 0) {
        TU_CHECK(kill(killed_pid, SIGKILL) == 0, "kill(%d, SIGKILL) failed", killed_pid);
        killed_pid = -killed_pid;
    }
}

START_TEST(backend_sigkill_mid_pipeline)
{
    if (!have_cluster())
        return;
    /* The crash makes the postmaster restart and replay the WAL written
     * since the last checkpoint (everything the earlier tests wrote, under
     * checkpoint_timeout): a checkpoint now keeps that replay short. */
    tu_exec("CHECKPOINT");
    proxy_start();
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { .max_inflight = 64 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = connect_via_proxy(&opts);
    killed_pid = PQbackendPID(pgev_conn_pg(conn));
    ck_assert_int_gt(killed_pid, 0);
    kill_at = 20;
    enum { N = 300 };
    tu_query q[N];
    memset(q, 0, sizeof(q));
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        q[i].on_done_hook = kill_backend_hook;
        ck_assert_int_gt(tu_query_sql(conn, "SELECT pg_sleep(0.002)", &q[i]), 0);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    tu_assert_all_once(q, N);
    ck_assert_msg(killed_pid < 0, "the backend was never killed");
    int ok = 0, lost = 0;
    for (int i = 0; i < N; i++) {
        if (q[i].status == PGEV_OK) {
            ck_assert_msg(lost == 0, "query %d succeeded after an earlier one was lost", i);
            ok++;
        } else {
            ck_assert_msg(is_lost(q[i].status, q[i].sqlstate), "query %d: %s: %s", i,
                          pgev_strerror(q[i].status), q[i].message);
            lost++;
        }
    }
    ck_assert_int_ge(ok, kill_at);
    ck_assert_int_gt(lost, 0);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    ck_assert_int_eq(rec.disconnect_calls, 1);
    ck_assert_int_eq(rec.disconnect_code, PGEV_ECONNLOST);
    assert_not_stuck(conn);
    tu_query after = { .index = N };
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &after), PGEV_ECLOSED);
    pgev_conn_free(conn);
    tu_assert_all_once(&after, 1);
    /* The postmaster restarts every backend after one crashed: wait for it,
     * so that the next test finds a server. */
    wait_server_up();
    proxy_free();
    tu_assert_base_idle();
}
END_TEST

/* ---- the server crashes (immediate stop) and comes back under pool load -- */

static bool
fault_started(void *arg)
{
    (void)arg;
    return pool_fault_pid > 0;
}

START_TEST(pool_survives_server_crash_and_restart)
{
    if (!have_cluster())
        return;
    proxy_start();
    enum { SIZE = 3, N = 1500 };
    pgev_pool_options opts = {
        .min_conns = SIZE, .max_conns = SIZE, .conn_max_inflight = 16, .connect_timeout_ms = 5000,
    };
    make_pool(&opts);
    wait_pool_idle(SIZE);
    wait_backends(APP_POOL, SIZE);
    pool_rec *r = calloc(N, sizeof(*r));
    ck_assert_ptr_nonnull(r);
    pool_stop_at = 100;
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        ck_assert_int_gt(pool_sql("SELECT pg_sleep(0.001)", &r[i]), 0);
    }
    /* Wait for the crash, then bring the server back while the queued
     * queries wait in the pool. */
    tu_run_until(fault_started, NULL, TU_WAIT_MS, "the first queries");
    tu_cluster_wait(pool_fault_pid, "pgcluster.sh server-stop immediate");
    tu_cluster("server-start", NULL, NULL);
    wait_recs(r, N, 120000);
    assert_recs_once(r, N);
    int ok = 0, lost = 0;
    for (int i = 0; i < N; i++) {
        if (r[i].status == PGEV_OK)
            ok++;
        else if (is_lost(r[i].status, r[i].sqlstate))
            lost++;
        else
            ck_abort_msg("pool query %d: %s (%s) %s", i, pgev_strerror(r[i].status), r[i].sqlstate,
                         r[i].message);
    }
    ck_assert_int_ge(ok, pool_stop_at);
    /* Only what was on the wire can be lost; the queued rest waited. */
    ck_assert_int_le(lost, SIZE * 16);
    free(r);
    wait_pool_idle(SIZE);
    wait_backends(APP_POOL, SIZE);
    pgev_pool_statistics st = pool_stats();
    ck_assert_int_eq(st.conns, SIZE);
    ck_assert_int_ge(st.conns_lost, 1);
    ck_assert_int_eq(st.queued, 0);
    ck_assert_int_eq(st.outstanding, 0);
    assert_pool_serves(20);
    pgev_pool_free(pool);
    pool = NULL;
    wait_backends(APP_POOL, 0);
    proxy_free();
    tu_assert_base_idle();
}
END_TEST

/* ---- a connection cut while a 2-million-row stream flows ---------------- */

static void
cut_when_streaming(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)conn;
    (void)res;
    /* Cut once rows are flowing: some 256 kB further into the result. */
    if (q->user == NULL && q->rows_streamed >= 1000) {
        ck_assert_int_eq(faultproxy_cut_after(proxy, 256 * 1024), 1);
        q->user = proxy;
    }
}

START_TEST(cut_mid_stream)
{
    if (!have_tcp())
        return;
    proxy_start();
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = connect_via_proxy(&opts);
    enum { ROWS = 2000000 };
    tu_query q[3];
    memset(q, 0, sizeof(q));
    q[0].on_rows_hook = cut_when_streaming;
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT g, md5(g::text) FROM generate_series(1, %d) g", ROWS);
    pgev_query_args args = { .sql = sql };
    ck_assert_int_gt(tu_submit(conn, &args, &q[0], true), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    ck_assert_ptr_nonnull(q[0].user);
    ck_assert_msg(q[0].status == PGEV_ECONNLOST, "stream: %s: %s", pgev_strerror(q[0].status),
                  q[0].message);
    ck_assert_int_ge(q[0].rows_streamed, 1000);
    ck_assert_int_lt(q[0].rows_streamed, ROWS);
    ck_assert_int_eq(q[1].status, PGEV_ECONNLOST);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    ck_assert_int_eq(rec.disconnect_calls, 1);
    ck_assert_int_eq(rec.disconnect_code, PGEV_ECONNLOST);
    ck_assert_msg(rec.disconnect_msg[0] != '\0', "on_disconnect without a message");
    assert_not_stuck(conn);
    faultproxy_stats st;
    faultproxy_get_stats(proxy, &st);
    ck_assert_int_eq(st.cuts, 1);
    ck_assert_int_eq(st.conns, 0);
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 3", &q[2]), PGEV_ECLOSED);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 3);
    /* The server notices the cut and ends the backend. */
    wait_backends(APP_CONN, 0);
    proxy_free();
    tu_assert_base_idle();
}
END_TEST

/* ---- a stalled connection, past its queries' deadlines ------------------ */

/* A repeating timer: while it keeps ticking, the loop is not blocked. */
typedef struct ticker {
    struct event *ev;
    int ticks;
    double last_ms;
    double max_gap_ms;
} ticker;

static void
tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ticker *t = arg;
    double now = now_ms();
    if (t->ticks > 0 && now - t->last_ms > t->max_gap_ms)
        t->max_gap_ms = now - t->last_ms;
    t->last_ms = now;
    t->ticks++;
}

static bool
conn_failed(void *arg)
{
    return pgev_conn_state(arg) == PGEV_CONN_FAILED;
}

START_TEST(stall_past_deadlines)
{
    if (!have_tcp())
        return;
    proxy_start();
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { .cancel_grace_ms = 600 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = connect_via_proxy(&opts);
    ticker t = { 0 };
    t.ev = event_new(tu_base, -1, EV_PERSIST, tick, &t);
    ck_assert_ptr_nonnull(t.ev);
    struct timeval every = { 0, 10 * 1000 };
    ck_assert_int_eq(event_add(t.ev, &every), 0);

    ck_assert_int_eq(faultproxy_stall(proxy), 1);
    enum { N = 4 };
    tu_query q[N + 1];
    memset(q, 0, sizeof(q));
    double start = now_ms();
    for (int i = 0; i < N; i++) {
        pgev_query_args args = { .sql = "SELECT 1", .timeout_ms = 200 + 50 * i };
        q[i].index = i;
        ck_assert_int_gt(tu_submit(conn, &args, &q[i], false), 0);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    double timed_out_after = now_ms() - start;
    for (int i = 0; i < N; i++)
        ck_assert_msg(q[i].status == PGEV_ETIMEOUT, "query %d: %s: %s", i,
                      pgev_strerror(q[i].status), q[i].message);
    /* The deadlines fired in order, each once. */
    for (int i = 1; i < N; i++)
        ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    /* The server never answers the cancel either way (the query never
     * reached it): after the grace period the connection is given up. */
    tu_run_until(conn_failed, conn, TU_WAIT_MS, "the stalled connection to be given up");
    double total = now_ms() - start;
    ck_assert_int_eq(rec.disconnect_calls, 1);
    ck_assert_msg(rec.disconnect_code == PGEV_ETIMEOUT || rec.disconnect_code == PGEV_ECONNLOST,
                  "on_disconnect: %s", pgev_strerror(rec.disconnect_code));
    ck_assert_msg(strstr(rec.disconnect_msg, "did not end") != NULL, "on_disconnect: %s",
                  rec.disconnect_msg);
    assert_not_stuck(conn);
    /* The cancel request went out on its own connection, through the proxy. */
    faultproxy_stats st;
    faultproxy_get_stats(proxy, &st);
    ck_assert_int_ge(st.accepted, 2);
    ck_assert_int_eq(st.stalls, 1);
    /* The loop never blocked: the 10 ms ticker kept ticking all along. The
     * bounds are generous (a loaded machine); a blocked loop misses them
     * by far. */
    ck_assert_int_ge(t.ticks, (int)(total / 10 / 8));
    ck_assert_msg(t.max_gap_ms < 2000, "the loop stalled for %.0f ms (deadlines after %.0f ms)",
                  t.max_gap_ms, timed_out_after);
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &q[N]), PGEV_ECLOSED);
    event_free(t.ev);
    pgev_conn_free(conn);
    tu_assert_all_once(q, N + 1);
    /* Let the held bytes go: the backend sees the closed client and ends. */
    faultproxy_unstall(proxy);
    wait_backends(APP_CONN, 0);
    proxy_free();
    tu_assert_base_idle();
}
END_TEST

/* ---- connections refused during a pool's reconnect backoff -------------- */

static bool
pool_lost_all(void *arg)
{
    return pool_stats().conns_lost >= *(int *)arg;
}

START_TEST(refused_during_reconnect_backoff)
{
    if (!have_tcp())
        return;
    proxy_start();
    enum { SIZE = 2, N = 10 };
    pgev_pool_options opts = {
        .min_conns = SIZE, .max_conns = SIZE, .queue_timeout_ms = 800, .connect_timeout_ms = 3000,
    };
    make_pool(&opts);
    wait_pool_idle(SIZE);
    wait_backends(APP_POOL, SIZE);
    ck_assert_int_eq(faultproxy_refuse(proxy, true), 0);
    ck_assert_int_eq(faultproxy_reset(proxy), SIZE);
    int lost = SIZE;
    tu_run_until(pool_lost_all, &lost, TU_WAIT_MS, "the pool to notice the resets");
    int64_t failures_before = pool_stats().connect_failures;
    pool_rec r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        ck_assert_int_gt(pool_sql("SELECT 1", &r[i]), 0);
    }
    wait_recs(r, N, TU_WAIT_MS);
    assert_recs_once(r, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(r[i].status, PGEV_ETIMEOUT);
        ck_assert_msg(strstr(r[i].message, "refused") != NULL,
                      "the timeout does not name the refused connection: %s", r[i].message);
    }
    pgev_pool_statistics st = pool_stats();
    ck_assert_int_ge(st.connect_failures - failures_before, 1);
    /* Backoff: a few attempts in 0.8 s, not a storm. */
    ck_assert_int_le(st.connect_failures - failures_before, 12);
    ck_assert_int_eq(st.connects, SIZE);
    ck_assert_msg(strstr(pgev_pool_errmsg(pool), "refused") != NULL, "pool errmsg: %s",
                  pgev_pool_errmsg(pool));
    /* The server is reachable again: the pool comes back to its size. */
    ck_assert_int_eq(faultproxy_refuse(proxy, false), 0);
    wait_pool_idle(SIZE);
    wait_backends(APP_POOL, SIZE);
    assert_pool_serves(10);
    ck_assert_int_eq(pool_stats().conns, SIZE);
    pgev_pool_free(pool);
    pool = NULL;
    wait_backends(APP_POOL, 0);
    proxy_free();
    tu_assert_base_idle();
}
END_TEST

/* ---- a host name that does not resolve ---------------------------------- */

START_TEST(dns_name_does_not_resolve)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { .connect_timeout_ms = 10000 };
    tu_conn_opts(&opts, &rec);
    double start = now_ms();
    pgev_conn *conn = tu_conn_new("host=pgev-does-not-exist.invalid port=5432 dbname=postgres "
                                  "user=postgres",
                                  &opts);
    ck_assert_ptr_nonnull(conn);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q), 0);
    tu_wait_query(&q);
    ck_assert_int_eq(q.status, PGEV_ECONNECT);
    tu_wait_connected(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    ck_assert_int_eq(rec.connect_calls, 1);
    ck_assert_int_eq(rec.connect_code, PGEV_ECONNECT);
    ck_assert_msg(strstr(rec.connect_msg, "pgev-does-not-exist.invalid") != NULL &&
                      strstr(rec.connect_msg, "could not resolve host") != NULL,
                  "unclear message: %s", rec.connect_msg);
    ck_assert_msg(strstr(q.message, "pgev-does-not-exist.invalid") != NULL, "query message: %s",
                  q.message);
    /* A clear failure, not a wait for the connect deadline. */
    ck_assert_msg(now_ms() - start < 9000, "took %.0f ms", now_ms() - start);
    ck_assert_int_eq(rec.disconnect_calls, 0);
    assert_not_stuck(conn);
    pgev_conn_free(conn);
    tu_assert_all_once(&q, 1);

    /* The same through a pool: its queries time out naming the reason. */
    pgev_pool_options popts = { .min_conns = 1, .queue_timeout_ms = 300 };
    tu_in_call++;
    pool = pgev_pool_new(tu_base, "host=pgev-does-not-exist.invalid dbname=postgres", &popts);
    tu_in_call--;
    ck_assert_ptr_nonnull(pool);
    pool_rec r = { .index = 0 };
    ck_assert_int_gt(pool_sql("SELECT 1", &r), 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    assert_recs_once(&r, 1);
    ck_assert_int_eq(r.status, PGEV_ETIMEOUT);
    ck_assert_msg(strstr(r.message, "could not resolve host") != NULL, "message: %s", r.message);
    ck_assert_int_eq(pool_stats().connects, 0);
    pgev_pool_free(pool);
    pool = NULL;
    tu_assert_base_idle();
}
END_TEST

/* ---- latency keeps order and loses nothing ------------------------------ */

START_TEST(latency_keeps_order)
{
    if (!have_tcp())
        return;
    proxy_start();
    faultproxy_set_latency(proxy, 30);
    pgev_conn *conn = connect_via_proxy(NULL);
    enum { N = 200 };
    tu_query q[N];
    memset(q, 0, sizeof(q));
    for (int i = 0; i < N; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        q[i].index = i;
        ck_assert_int_gt(tu_query_sql(conn, sql, &q[i]), 0);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        tu_assert_ok(&q[i]);
        ck_assert_int_eq(atoi(q[i].value), i);
        if (i > 0)
            ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    }
    assert_not_stuck(conn);
    pgev_conn_free(conn);
    tu_assert_all_once(q, N);
    proxy_free();
    tu_assert_base_idle();
}
END_TEST

static Suite *
faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tu_tcase("proxy", 60);
    tcase_add_test(tc, latency_keeps_order);
    tcase_add_test(tc, cut_mid_stream);
    tcase_add_test(tc, stall_past_deadlines);
    tcase_add_test(tc, refused_during_reconnect_backoff);
    tcase_add_test(tc, dns_name_does_not_resolve);
    suite_add_tcase(s, tc);
    tc = tu_tcase("server", 180);
    tcase_add_test(tc, backend_sigkill_mid_pipeline);
    tcase_add_test(tc, pool_survives_server_crash_and_restart);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(faults_suite());
}
