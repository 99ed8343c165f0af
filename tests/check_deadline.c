/*
 * check_deadline: cancellation and deadlines that never hang.
 *
 * A cancel request that the server (or the path to it) accepts and never
 * answers cannot stall the connection: it has a deadline, after which the
 * connection is closed and every query completes. Deadlines fire on time
 * while slow callbacks consume a stream or a COPY (delivery yields to the
 * loop after a callback), a COPY TO STDOUT can be paused and resumed, and
 * freeing a connection cancels what still runs on the server.
 */
#define _GNU_SOURCE
#include "config.h"     /* which libpq: HAVE_PQCANCELSTART */
#include "testutil.h"
#include "faultproxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool
have_tcp(void)
{
    const char *port = getenv("PGEV_TEST_PORT");
    const char *dsn = getenv("PGEV_TEST_DSN_TCP");
    return port && *port && dsn && *dsn;
}

static bool
no_cancel_threads(void *arg)
{
    (void)arg;
    return pgev_cancel_threads() == 0;
}

/* ---- a cancel request that never completes ------------------------------ */

static void
run_stalled_cancel(int target_sleep_ms)
{
    if (!have_tcp()) {
        fprintf(stderr, "skipped: needs the harness's TCP server (PGEV_TEST_PORT, PGEV_TEST_DSN_TCP)\n");
        return;
    }
    faultproxy *proxy = faultproxy_new(tu_base, "127.0.0.1", atoi(getenv("PGEV_TEST_PORT")));
    ck_assert_ptr_nonnull(proxy);
    char *dsn = NULL;
    ck_assert_int_gt(asprintf(&dsn, "%s host=127.0.0.1 port=%d", getenv("PGEV_TEST_DSN_TCP"),
                              faultproxy_port(proxy)), 0);
    pgev_conn_options opts = { .cancel_grace_ms = 600 };
    pgev_conn *conn = tu_conn_new(dsn, &opts);
    free(dsn);
    tu_wait_connected(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    /* The connection made so far flows; the cancel's will be a black hole. */
    faultproxy_stall_new(proxy, true);
    tu_query q[3];
    memset(q, 0, sizeof q);
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT pg_sleep(%g)", target_sleep_ms / 1000.0);
    pgev_query_args slow = { .sql = sql, .timeout_ms = 100 };
    ck_assert_int_gt(tu_submit(conn, &slow, &q[0], false), 0);
    tu_wait_query(&q[0]);
    ck_assert_int_eq(q[0].status, PGEV_ETIMEOUT);
    double t0 = now_ms();
    /* Held while the cancel is on its way: it must still complete. */
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    tu_wait_query(&q[1]);
    double waited = now_ms() - t0;
    ck_assert_int_ne(q[1].status, PGEV_OK);
    ck_assert_int_eq(q[1].sent, 0);     /* never sent: safe to run elsewhere */
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    ck_assert_msg(strstr(pgev_conn_errmsg(conn), "cancel") != NULL, "%s", pgev_conn_errmsg(conn));
    fprintf(stderr, "stalled cancel (target %d ms): the connection gave up after %.0f ms\n", target_sleep_ms,
            waited);
#ifdef HAVE_PQCANCELSTART
    ck_assert_int_eq(pgev_cancel_threads(), 0);     /* libpq 17+: polled from the loop, no thread */
#else
    ck_assert_int_ge(pgev_cancel_threads(), 1);     /* the thread still waits in PQcancel() */
    ck_assert_int_le(pgev_cancel_threads(), PGEV_CANCEL_THREADS_MAX);
#endif
    pgev_conn_free(conn);
    /* The helper thread ends once its connection is released. */
    faultproxy_free(proxy);
    tu_run_until(no_cancel_threads, NULL, 5000, "the cancel thread to end");
}

/* The target runs on: the connection is closed after the grace period. */
START_TEST(stalled_cancel_target_keeps_running)
{
    run_stalled_cancel(5000);
}
END_TEST

/* The target ends by itself while the cancel hangs: the connection still
 * cannot know when the signal lands, so it is closed, never stalled. */
START_TEST(stalled_cancel_target_ends_by_itself)
{
    run_stalled_cancel(250);
}
END_TEST

/* ---- freeing cancels what runs ----------------------------------------- */

static bool
backend_gone_or_idle(void *arg)
{
    char *state = tu_exec_value("SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = %d), 'gone')",
                                *(int *)arg);
    bool done = strcmp(state, "active") != 0;
    free(state);
    return done;
}

static bool
polled(void *arg)
{
    /* tu_run_until waits for loop events: poll the server between short turns. */
    struct timeval tick = { 0, 20000 };
    event_base_loopexit(tu_base, &tick);
    return backend_gone_or_idle(arg);
}

START_TEST(free_cancels_running_statement)
{
    pgev_conn *conn = tu_connect(NULL);
    int pid = PQbackendPID(pgev_conn_pg(conn));
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT pg_sleep(30)", &q), 0);
    tu_run_for(200);
    ck_assert(!backend_gone_or_idle(&pid));
    pgev_conn_free(conn);
    ck_assert_int_eq(q.status, PGEV_ECANCELLED);
    tu_run_until(polled, &pid, 5000, "the freed connection's statement to stop on the server");
    tu_run_until(no_cancel_threads, NULL, 5000, "the cancel thread to end");
}
END_TEST

/* ---- slow consumers: deadlines still on time ------------------------------ */

typedef struct slow_sink {
    tu_query q;             /* first: tu_done_cb's arg */
    pgev_copy *copy;
    double deadline_at;     /* when the deadline is due */
    int calls;
    int late_calls;         /* callbacks that began after the deadline was due */
    int sleep_ms;
    int pause_after;        /* pgev_copy_pause() after this many calls (0: never) */
    bool paused;
    int calls_while_paused;
    int cancel_after;       /* pgev_conn_cancel() after this many calls (0: never) */
    pgev_conn *conn;
} slow_sink;

static void
slow_data(pgev_conn *conn, pgev_copy *copy, const char *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    slow_sink *s = arg;
    TU_CHECK(s->q.done_calls == 0, "on_data after on_done");
    if (s->paused)
        s->calls_while_paused++;
    s->copy = copy;
    s->calls++;
    if (s->deadline_at > 0 && now_ms() > s->deadline_at + 1)
        s->late_calls++;
    if (s->sleep_ms)
        usleep((useconds_t)s->sleep_ms * 1000);
    if (s->pause_after && s->calls == s->pause_after) {
        ck_assert_int_eq(pgev_copy_pause(copy), PGEV_OK);
        s->paused = true;
    }
    if (s->cancel_after && s->calls == s->cancel_after)
        ck_assert_int_eq(pgev_conn_cancel(conn, s->q.id), PGEV_OK);
}

static void
slow_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    (void)res;
    slow_sink *s = arg;
    s->calls++;
    if (s->deadline_at > 0 && now_ms() > s->deadline_at + 1)
        s->late_calls++;
    usleep((useconds_t)s->sleep_ms * 1000);
}

START_TEST(copy_out_deadline_with_slow_consumer)
{
    pgev_conn *conn = tu_connect(NULL);
    slow_sink s = { .sleep_ms = 50 };
    pgev_copy_args args = {
        .sql = "COPY (SELECT repeat('a', 500) FROM generate_series(1, 5000)) TO STDOUT",
        .on_data = slow_data, .on_done = tu_done_cb, .arg = &s, .timeout_ms = 100,
    };
    s.deadline_at = now_ms() + 100;
    tu_in_call++;
    s.q.id = pgev_conn_copy(conn, &args);
    tu_in_call--;
    ck_assert_int_gt(s.q.id, 0);
    tu_wait_query(&s.q);
    ck_assert_int_eq(s.q.status, PGEV_ETIMEOUT);
    /* At most the callback that was running when the deadline came. */
    ck_assert_int_le(s.late_calls, 1);
    tu_query after = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'after'", &after), 0);
    tu_wait_query(&after);
    tu_assert_ok(&after);
    pgev_conn_free(conn);
}
END_TEST

START_TEST(copy_out_cancel_with_slow_consumer)
{
    pgev_conn *conn = tu_connect(NULL);
    slow_sink s = { .sleep_ms = 20, .cancel_after = 5 };
    pgev_copy_args args = {
        .sql = "COPY (SELECT repeat('a', 500) FROM generate_series(1, 5000)) TO STDOUT",
        .on_data = slow_data, .on_done = tu_done_cb, .arg = &s,
    };
    tu_in_call++;
    s.q.id = pgev_conn_copy(conn, &args);
    tu_in_call--;
    ck_assert_int_gt(s.q.id, 0);
    tu_wait_query(&s.q);
    ck_assert_int_eq(s.q.status, PGEV_ECANCELLED);
    ck_assert_int_le(s.calls, 6);
    tu_query after = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'after'", &after), 0);
    tu_wait_query(&after);
    tu_assert_ok(&after);
    pgev_conn_free(conn);
}
END_TEST

START_TEST(stream_deadline_with_slow_consumer)
{
    pgev_conn *conn = tu_connect(NULL);
    slow_sink s = { .sleep_ms = 30 };
    pgev_query_args args = { .sql = "SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
                             .timeout_ms = 150 };
    args.on_rows = slow_rows;
    args.on_done = tu_done_cb;
    args.arg = &s;
    s.deadline_at = now_ms() + 150;
    tu_in_call++;
    s.q.id = pgev_conn_submit(conn, &args);
    tu_in_call--;
    ck_assert_int_gt(s.q.id, 0);
    tu_wait_query(&s.q);
    ck_assert_int_eq(s.q.status, PGEV_ETIMEOUT);
    ck_assert_int_le(s.late_calls, 1);
    pgev_conn_free(conn);
}
END_TEST

/* ---- COPY OUT flow control ------------------------------------------------ */

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    slow_sink *s = arg;
    s->paused = false;
    ck_assert_int_eq(pgev_copy_resume(s->copy), PGEV_OK);
}

START_TEST(copy_out_pause_and_resume)
{
    pgev_conn *conn = tu_connect(NULL);
    slow_sink s = { .pause_after = 3 };
    pgev_copy_args args = {
        .sql = "COPY (SELECT g, repeat('b', 300) FROM generate_series(1, 20000) g) TO STDOUT",
        .on_data = slow_data, .on_done = tu_done_cb, .arg = &s,
    };
    tu_in_call++;
    s.q.id = pgev_conn_copy(conn, &args);
    tu_in_call--;
    ck_assert_int_gt(s.q.id, 0);
    tu_wait_count(&s.calls, 3, TU_WAIT_MS, "the first chunks");
    ck_assert(s.paused);
    /* Paused: nothing is delivered, nothing completes. */
    tu_run_for(300);
    ck_assert_int_eq(s.calls, 3);
    ck_assert_int_eq(s.q.done_calls, 0);
    struct event *resume = evtimer_new(tu_base, resume_cb, &s);
    struct timeval now = { 0, 0 };
    evtimer_add(resume, &now);
    tu_wait_query(&s.q);
    event_free(resume);
    tu_assert_ok(&s.q);
    ck_assert_int_eq(s.calls_while_paused, 0);
    ck_assert_int_eq(s.calls, 20000);
    ck_assert_int_eq(s.q.rows_affected, 20000);
    ck_assert_int_eq(pgev_copy_pause(NULL), PGEV_EINVAL);
    pgev_conn_free(conn);
}
END_TEST

static Suite *
deadline_suite(void)
{
    Suite *s = suite_create("deadline");
    TCase *tc = tu_tcase("cancel", 60);
    tcase_add_test(tc, stalled_cancel_target_keeps_running);
    tcase_add_test(tc, stalled_cancel_target_ends_by_itself);
    tcase_add_test(tc, free_cancels_running_statement);
    suite_add_tcase(s, tc);
    tc = tu_tcase("slow", 60);
    tcase_add_test(tc, copy_out_deadline_with_slow_consumer);
    tcase_add_test(tc, copy_out_cancel_with_slow_consumer);
    tcase_add_test(tc, stream_deadline_with_slow_consumer);
    tcase_add_test(tc, copy_out_pause_and_resume);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(deadline_suite());
}
