/*
 * Teardown tests: pgev_conn_free with work queued and in flight, free from
 * inside every kind of callback, graceful close, and a backend killed under
 * load. After each, nothing may be left armed on the event_base. Needs
 * PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pgev_conn *conn;

/* Raised while the test itself is inside pgev_conn_free(). */
static int in_free;
/* Raised while a callback that called pgev_conn_free() is still running. */
static int freeing_callback;

static void free_now(void)
{
    in_free = 1;
    pgev_conn_free(conn);
    in_free = 0;
    conn = NULL;
}

/* For queries that must be cancelled inside the test's pgev_conn_free(). */
static void expect_cancelled_in_free(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)res;
    ck_assert_msg(in_free, "query %d: completed outside pgev_conn_free", q->index);
    ck_assert_msg(q->status == PGEV_ECANCELLED, "query %d: %s, expected cancelled", q->index,
                  pgev_strerror(q->status));
    ck_assert(!q->has_pg);
}

/* For queries cancelled by a free made from inside another callback: they
 * complete after that callback has returned. */
static void expect_cancelled_after_callback(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)res;
    ck_assert_msg(!freeing_callback,
                  "query %d: cancelled while the callback that freed the connection was "
                  "still running",
                  q->index);
    ck_assert_msg(q->status == PGEV_ECANCELLED, "query %d: %s, expected cancelled", q->index,
                  pgev_strerror(q->status));
}

START_TEST(free_with_pending_and_inflight)
{
    pgev_conn_options opts = { .max_inflight = 10 };
    conn = tu_connect(&opts);
    enum { N = 100 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        q[i].on_done_hook = expect_cancelled_in_free;
        ck_assert_int_gt(tu_query_sql(conn, i == 0 ? "SELECT pg_sleep(2)" : "SELECT 1", &q[i]),
                         0);
    }
    /* Let the first ones reach the server; the sleep holds up the rest. */
    tu_run_for(100);
    ck_assert_int_eq(tu_done_total, 0);
    ck_assert_int_gt(pgev_conn_inflight(conn), 0);
    ck_assert_int_gt(pgev_conn_pending(conn), 0);
    free_now();
    tu_assert_all_once(q, N);
    for (int i = 1; i < N; i++)
        ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    tu_assert_base_idle();
}
END_TEST

/* on_done that frees the connection from inside the callback. */
static void free_from_done(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)res;
    ck_assert_ptr_eq(c, conn);
    ck_assert_msg(q->status == PGEV_OK, "query %d: %s", q->index, q->message);
    freeing_callback = 1;
    pgev_conn_free(c);
    conn = NULL;
}

/* Wraps tu_done_cb so that freeing_callback drops when the callback returns. */
static void done_then_clear(pgev_conn *c, pgev_result *res, void *arg)
{
    tu_done_cb(c, res, arg);
    freeing_callback = 0;
}

START_TEST(free_inside_query_callback)
{
    conn = tu_connect(NULL);
    enum { N = 50 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    tu_query batch = { .index = 1000, .on_done_hook = expect_cancelled_after_callback };
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        if (i == 1)
            ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
        if (i == 0) {
            q[i].on_done_hook = free_from_done;
            tu_in_call++;
            q[i].id = pgev_conn_query(conn, "SELECT 0", done_then_clear, &q[i]);
            tu_in_call--;
            ck_assert_int_gt(q[i].id, 0);
        } else {
            /* Quick queries: their results may already be read when q[0]
             * completes; they must still be cancelled. */
            q[i].on_done_hook = expect_cancelled_after_callback;
            ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
        }
        if (i == 3)
            ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    }
    /* Let every result arrive before the loop reads: they are all in one
     * buffer when q[0]'s callback frees the connection. */
    tu_exec("SELECT pg_sleep(0.2)");
    tu_wait_queries(q, N, TU_WAIT_MS);
    tu_wait_query(&batch);
    ck_assert_ptr_null(conn);
    tu_assert_ok(&q[0]);
    tu_assert_all_once(q, N);
    tu_assert_all_once(&batch, 1);
    ck_assert_int_lt(q[3].done_seq, batch.done_seq);
    tu_assert_base_idle();
    /* Nothing fires later either. */
    tu_assert_all_once(q, N);
}
END_TEST

static void free_in_on_connect(pgev_conn *c, const pgev_error *err, tu_connrec *rec)
{
    (void)err;
    (void)rec;
    ck_assert_ptr_eq(c, conn);
    freeing_callback = 1;
    pgev_conn_free(c);
    conn = NULL;
    freeing_callback = 0; /* the hook is the last thing on_connect does */
}

START_TEST(free_inside_on_connect)
{
    tu_connrec rec = { .on_connect_hook = free_in_on_connect };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    conn = tu_conn_new(tu_dsn(), &opts);
    ck_assert_ptr_nonnull(conn);
    enum { N = 10 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        q[i].on_done_hook = expect_cancelled_after_callback;
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    ck_assert_int_eq(rec.connect_calls, 1);
    ck_assert_int_eq(rec.connect_code, PGEV_OK);
    ck_assert_int_eq(rec.disconnect_calls, 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_lt(rec.connect_seq, q[i].done_seq);
    tu_assert_all_once(q, N);
    tu_assert_base_idle();
}
END_TEST

static void accept_connect_failure(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)res;
    ck_assert_msg(q->status == PGEV_ECONNECT || q->status == PGEV_ECANCELLED,
                  "query %d: %s", q->index, pgev_strerror(q->status));
}

START_TEST(free_inside_failed_on_connect)
{
    tu_connrec rec = { .on_connect_hook = free_in_on_connect };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=x user=x sslmode=disable",
             tu_closed_port());
    conn = tu_conn_new(conninfo, &opts);
    ck_assert_ptr_nonnull(conn);
    tu_query q[5];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 5; i++) {
        q[i].index = i;
        q[i].on_done_hook = accept_connect_failure;
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    }
    tu_wait_queries(q, 5, TU_WAIT_MS);
    ck_assert_int_eq(rec.connect_calls, 1);
    ck_assert_int_eq(rec.connect_code, PGEV_ECONNECT);
    tu_assert_all_once(q, 5);
    tu_assert_base_idle();
}
END_TEST

static int rows_after_free;
static bool freed_in_rows;

static void free_in_rows(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)res;
    if (freed_in_rows) {
        rows_after_free++;
        return;
    }
    if (q->rows_streamed >= 1000) {
        freed_in_rows = true;
        freeing_callback = 1;
        pgev_conn_free(c);
        conn = NULL;
        freeing_callback = 0; /* the hook is the last thing the row callback does */
    }
}

START_TEST(free_inside_row_callback)
{
    conn = tu_connect(NULL);
    rows_after_free = 0;
    freed_in_rows = false;
    tu_query q[2];
    memset(q, 0, sizeof q);
    q[0].on_rows_hook = free_in_rows;
    q[0].on_done_hook = expect_cancelled_after_callback;
    q[1].index = 1;
    q[1].on_done_hook = expect_cancelled_after_callback;
    pgev_query_args args = { .sql = "SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g" };
    ck_assert_int_gt(tu_submit(conn, &args, &q[0], true), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    ck_assert(freed_in_rows);
    ck_assert_int_eq(rows_after_free, 0);
    tu_assert_all_once(q, 2);
    ck_assert_int_lt(q[0].done_seq, q[1].done_seq);
    tu_assert_base_idle();
}
END_TEST

static int notices_after_free;

static void free_in_notice(pgev_conn *c, const pgev_error *notice, void *arg)
{
    (void)notice;
    (void)arg;
    if (conn == NULL) {
        notices_after_free++;
        return;
    }
    ck_assert_ptr_eq(c, conn);
    pgev_conn_free(c);
    conn = NULL;
}

static void expect_cancelled(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)res;
    ck_assert_msg(q->status == PGEV_ECANCELLED, "query %d: %s", q->index,
                  pgev_strerror(q->status));
}

START_TEST(free_inside_notice_callback)
{
    notices_after_free = 0;
    pgev_conn_options opts = { .on_notice = free_in_notice };
    conn = tu_connect(&opts);
    tu_query q[2];
    memset(q, 0, sizeof q);
    q[0].on_done_hook = expect_cancelled;
    q[1].index = 1;
    q[1].on_done_hook = expect_cancelled;
    ck_assert_int_gt(tu_query_sql(conn,
                                  "DO $$ BEGIN RAISE NOTICE 'one'; RAISE NOTICE 'two'; "
                                  "RAISE NOTICE 'three'; END $$",
                                  &q[0]),
                     0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[1]), 0);
    /* Keep the loop away while the server sends all three notices, so that
     * they arrive in one read: the case where libpq parses more notices
     * after the free was requested. (A correct library passes either way;
     * this only makes the bad interleaving certain.) */
    tu_exec("SELECT pg_sleep(0.3)");
    tu_wait_queries(q, 2, TU_WAIT_MS);
    ck_assert_ptr_null(conn);
    ck_assert_int_eq(notices_after_free, 0);
    tu_assert_all_once(q, 2);
    tu_assert_base_idle();
}
END_TEST

/* A cancelled query's callback that frees again and submits more: the
 * second free is a no-op and the submit is refused. */
static int resubmit_rc;
static tu_query resubmitted;

static void free_again_and_submit(pgev_conn *c, pgev_result *res, tu_query *q)
{
    expect_cancelled_in_free(c, res, q);
    if (q->index == 1) {
        pgev_conn_free(c);
        resubmit_rc = (int)tu_query_sql(c, "SELECT 1", &resubmitted);
        ck_assert_int_eq(pgev_conn_batch_begin(c), PGEV_ECLOSED);
    }
}

START_TEST(free_reentered_from_cancellation)
{
    conn = tu_connect(NULL);
    memset(&resubmitted, 0, sizeof resubmitted);
    tu_query q[5];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 5; i++) {
        q[i].index = i;
        q[i].on_done_hook = free_again_and_submit;
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    }
    free_now();
    tu_assert_all_once(q, 5);
    ck_assert_msg(resubmit_rc < 0, "a submit during pgev_conn_free was accepted (%d)",
                  resubmit_rc);
    ck_assert_int_eq(resubmitted.done_calls, 0);
    tu_assert_base_idle();
}
END_TEST

static void free_in_batch_done(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)res;
    ck_assert_msg(q->status == PGEV_OK, "batch: %s", q->message);
    pgev_conn_free(c);
    conn = NULL;
}

START_TEST(free_inside_batch_callback)
{
    conn = tu_connect(NULL);
    tu_query q[4];
    memset(q, 0, sizeof q);
    tu_query batch = { .on_done_hook = free_in_batch_done };
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    q[2].on_done_hook = expect_cancelled_after_callback;
    q[3].on_done_hook = expect_cancelled_after_callback;
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 3", &q[2]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 4", &q[3]), 0);
    tu_wait_queries(q, 4, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    tu_assert_all_once(q, 4);
    tu_assert_all_once(&batch, 1);
    tu_assert_base_idle();
}
END_TEST

/* ---- graceful close ----------------------------------------------------- */

static bool disconnected(void *arg)
{
    return ((tu_connrec *)arg)->disconnect_calls > 0;
}

START_TEST(close_drains_queue)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { .max_inflight = 10 };
    tu_conn_opts(&opts, &rec);
    conn = tu_connect(&opts);
    enum { N = 100 };
    tu_query q[N + 2];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        char sql[32];
        snprintf(sql, sizeof sql, "SELECT %d", i);
        ck_assert_int_gt(tu_query_sql(conn, sql, &q[i]), 0);
    }
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CLOSING);
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &q[N]), PGEV_ECLOSED);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(tu_close(conn), PGEV_OK); /* harmless */
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_ECLOSED);

    tu_run_until(disconnected, &rec, TU_WAIT_MS, "on_disconnect after close");
    for (int i = 0; i < N; i++) {
        tu_assert_ok(&q[i]);
        ck_assert_int_eq(atoi(q[i].value), i);
        ck_assert_int_lt(q[i].done_seq, rec.disconnect_seq);
    }
    ck_assert_int_eq(rec.disconnect_calls, 1);
    ck_assert_int_eq(rec.disconnect_code, PGEV_OK);
    ck_assert_int_eq(rec.disconnect_state, PGEV_CONN_CLOSED);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CLOSED);
    ck_assert_ptr_null(pgev_conn_pg(conn));
    ck_assert_ptr_null(pgev_conn_error(conn));
    ck_assert_int_eq(pgev_conn_pending(conn), 0);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &q[N + 1]), PGEV_ECLOSED);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    /* Closed: nothing is armed any more, even before free. */
    ck_assert_int_eq(event_base_get_num_events(tu_base, EVENT_BASE_COUNT_ADDED), 0);
    free_now();
    ck_assert_int_eq(rec.disconnect_calls, 1);
    tu_assert_all_once(q, N + 2);
    tu_assert_base_idle();
}
END_TEST

START_TEST(close_while_connecting)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    conn = tu_conn_new(tu_dsn(), &opts);
    ck_assert_ptr_nonnull(conn);
    tu_query q[5];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 5; i++)
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    tu_wait_queries(q, 5, TU_WAIT_MS);
    tu_run_until(disconnected, &rec, TU_WAIT_MS, "on_disconnect after close");
    for (int i = 0; i < 5; i++)
        tu_assert_ok(&q[i]);
    ck_assert_int_eq(rec.connect_calls, 1);
    ck_assert_int_eq(rec.connect_code, PGEV_OK);
    ck_assert_int_eq(rec.disconnect_code, PGEV_OK);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CLOSED);
    free_now();
    tu_assert_all_once(q, 5);
    tu_assert_base_idle();
}
END_TEST

START_TEST(close_ends_open_batch)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    conn = tu_connect(&opts);
    tu_query q[2];
    memset(q, 0, sizeof q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    tu_run_until(disconnected, &rec, TU_WAIT_MS, "on_disconnect after close");
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    ck_assert_int_eq(rec.disconnect_code, PGEV_OK);
    free_now();
    tu_assert_all_once(q, 2);
    tu_assert_base_idle();
}
END_TEST

START_TEST(free_while_closing)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { .max_inflight = 5 };
    tu_conn_opts(&opts, &rec);
    conn = tu_connect(&opts);
    enum { N = 50 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        q[i].on_done_hook = expect_cancelled_in_free;
        ck_assert_int_gt(tu_query_sql(conn, i == 0 ? "SELECT pg_sleep(2)" : "SELECT 1", &q[i]),
                         0);
    }
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    free_now();
    ck_assert_int_eq(rec.disconnect_calls, 0); /* free never calls on_disconnect */
    tu_assert_all_once(q, N);
    tu_assert_base_idle();
}
END_TEST

static void free_in_on_disconnect(pgev_conn *c, const pgev_error *err, tu_connrec *rec)
{
    (void)err;
    (void)rec;
    ck_assert_ptr_eq(c, conn);
    pgev_conn_free(c);
    conn = NULL;
}

START_TEST(free_inside_on_disconnect)
{
    tu_connrec rec = { .on_disconnect_hook = free_in_on_disconnect };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    conn = tu_connect(&opts);
    tu_query q[3];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 3; i++)
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    tu_run_until(disconnected, &rec, TU_WAIT_MS, "on_disconnect after close");
    ck_assert_ptr_null(conn);
    ck_assert_int_eq(rec.disconnect_code, PGEV_OK);
    for (int i = 0; i < 3; i++)
        tu_assert_ok(&q[i]);
    tu_assert_all_once(q, 3);
    tu_assert_base_idle();
}
END_TEST

static void close_from_callback(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)res;
    (void)q;
    ck_assert_int_eq(pgev_conn_close(c), PGEV_OK);
    ck_assert_int_eq(pgev_conn_state(c), PGEV_CONN_CLOSING);
}

START_TEST(close_inside_query_callback)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { .max_inflight = 3 };
    tu_conn_opts(&opts, &rec);
    conn = tu_connect(&opts);
    enum { N = 20 };
    tu_query q[N + 1];
    memset(q, 0, sizeof q);
    q[0].on_done_hook = close_from_callback;
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    }
    tu_run_until(disconnected, &rec, TU_WAIT_MS, "on_disconnect after close");
    for (int i = 0; i < N; i++) {
        tu_assert_ok(&q[i]);
        ck_assert_int_lt(q[i].done_seq, rec.disconnect_seq);
    }
    ck_assert_int_eq(rec.disconnect_code, PGEV_OK);
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &q[N]), PGEV_ECLOSED);
    free_now();
    tu_assert_all_once(q, N + 1);
    tu_assert_base_idle();
}
END_TEST

START_TEST(close_after_failed_connect)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=x user=x sslmode=disable",
             tu_closed_port());
    conn = tu_conn_new(conninfo, &opts);
    ck_assert_ptr_nonnull(conn);
    tu_wait_connected(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    tu_run_for(50);
    ck_assert_int_eq(rec.disconnect_calls, 0); /* never was up */
    free_now();
    tu_assert_base_idle();
}
END_TEST

/* ---- lost connections --------------------------------------------------- */

static int backend_pid;
static int terminate_after;

static void terminate_backend(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)res;
    if (tu_done_total == terminate_after || (q->row_calls > 0 && q->rows_streamed >= 1000 &&
                                             terminate_after > 0)) {
        /* Blocking libpq on a second connection is fine in a test. */
        tu_exec("SELECT pg_terminate_backend(%d)", backend_pid);
        terminate_after = -1;
    }
}

/* The query running when the backend died may carry the server's FATAL
 * (57P01); everything after it has no result at all. */
static bool is_lost(const tu_query *q)
{
    return q->status == PGEV_ECONNLOST ||
           (q->status == PGEV_ESERVER && strncmp(q->sqlstate, "57", 2) == 0);
}

START_TEST(backend_terminated_under_load)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    conn = tu_connect(&opts);
    backend_pid = PQbackendPID(pgev_conn_pg(conn));
    terminate_after = 10;
    enum { N = 1000 };
    tu_query *q = calloc(N, sizeof *q);
    ck_assert_ptr_nonnull(q);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        q[i].on_done_hook = terminate_backend;
        ck_assert_int_gt(tu_query_sql(conn, "SELECT pg_sleep(0.001)", &q[i]), 0);
    }
    tu_wait_queries(q, N, 60000);
    tu_run_until(disconnected, &rec, TU_WAIT_MS, "on_disconnect after the backend died");
    ck_assert_int_eq(terminate_after, -1);

    int ok = 0, lost = 0, fatal = 0;
    for (int i = 0; i < N; i++) {
        if (q[i].status == PGEV_OK) {
            ck_assert_msg(lost == 0, "query %d succeeded after an earlier one was lost", i);
            ok++;
        } else {
            ck_assert_msg(is_lost(&q[i]), "query %d: %s (%s) %s", i, pgev_strerror(q[i].status),
                          q[i].sqlstate, q[i].message);
            ck_assert_str_ne(q[i].message, "");
            if (q[i].status == PGEV_ESERVER)
                fatal++;
            lost++;
        }
        if (i > 0)
            ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    }
    ck_assert_int_ge(ok, 10);
    ck_assert_int_gt(lost, 0);
    ck_assert_int_le(fatal, 1);

    ck_assert_int_eq(rec.disconnect_calls, 1);
    ck_assert_int_eq(rec.disconnect_code, PGEV_ECONNLOST);
    ck_assert_str_ne(rec.disconnect_msg, "");
    ck_assert_int_eq(rec.disconnect_state, PGEV_CONN_FAILED);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    const pgev_error *err = pgev_conn_error(conn);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(pgev_error_code(err), PGEV_ECONNLOST);
    ck_assert_int_eq(pgev_conn_pending(conn), 0);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);

    tu_query late = { 0 };
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &late), PGEV_ECLOSED);
    ck_assert_int_eq(tu_close(conn), PGEV_OK); /* harmless */
    free_now();
    ck_assert_int_eq(rec.disconnect_calls, 1);
    tu_assert_all_once(q, N);
    ck_assert_int_eq(late.done_calls, 0);
    free(q);
    tu_assert_base_idle();
}
END_TEST

START_TEST(backend_terminated_while_idle)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    conn = tu_connect(&opts);
    tu_exec("SELECT pg_terminate_backend(%d)", PQbackendPID(pgev_conn_pg(conn)));
    /* No query is running: the loop still notices. */
    tu_run_until(disconnected, &rec, TU_WAIT_MS, "on_disconnect for an idle connection");
    ck_assert_int_eq(rec.disconnect_code, PGEV_ECONNLOST);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    tu_query late = { 0 };
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &late), PGEV_ECLOSED);
    free_now();
    tu_assert_base_idle();
}
END_TEST

START_TEST(backend_terminated_mid_stream)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    conn = tu_connect(&opts);
    backend_pid = PQbackendPID(pgev_conn_pg(conn));
    terminate_after = 1000000; /* only the row condition fires */
    tu_query q[2];
    memset(q, 0, sizeof q);
    q[0].on_rows_hook = terminate_backend;
    q[1].index = 1;
    pgev_query_args args = {
        .sql = "SELECT g, repeat('x', 100) FROM generate_series(1, 5000000) g",
    };
    ck_assert_int_gt(tu_submit(conn, &args, &q[0], true), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[1]), 0);
    tu_wait_queries(q, 2, 60000);
    tu_run_until(disconnected, &rec, TU_WAIT_MS, "on_disconnect after the backend died");
    ck_assert_int_eq(terminate_after, -1);
    ck_assert_msg(is_lost(&q[0]), "streamed query: %s", pgev_strerror(q[0].status));
    ck_assert_int_ge(q[0].rows_streamed, 1000);
    ck_assert_int_lt(q[0].rows_streamed, 5000000);
    ck_assert_int_eq(q[1].status, PGEV_ECONNLOST);
    ck_assert_int_eq(rec.disconnect_code, PGEV_ECONNLOST);
    free_now();
    tu_assert_all_once(q, 2);
    tu_assert_base_idle();
}
END_TEST

static Suite *teardown_suite(void)
{
    Suite *s = suite_create("teardown");
    TCase *tc = tu_tcase("free", 60);
    tcase_add_test(tc, free_with_pending_and_inflight);
    tcase_add_test(tc, free_inside_query_callback);
    tcase_add_test(tc, free_inside_on_connect);
    tcase_add_test(tc, free_inside_failed_on_connect);
    tcase_add_test(tc, free_inside_row_callback);
    tcase_add_test(tc, free_inside_notice_callback);
    tcase_add_test(tc, free_reentered_from_cancellation);
    tcase_add_test(tc, free_inside_batch_callback);
    suite_add_tcase(s, tc);

    tc = tu_tcase("close", 60);
    tcase_add_test(tc, close_drains_queue);
    tcase_add_test(tc, close_while_connecting);
    tcase_add_test(tc, close_ends_open_batch);
    tcase_add_test(tc, free_while_closing);
    tcase_add_test(tc, free_inside_on_disconnect);
    tcase_add_test(tc, close_inside_query_callback);
    tcase_add_test(tc, close_after_failed_connect);
    suite_add_tcase(s, tc);

    tc = tu_tcase("lost", 120);
    tcase_add_test(tc, backend_terminated_under_load);
    tcase_add_test(tc, backend_terminated_while_idle);
    tcase_add_test(tc, backend_terminated_mid_stream);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(teardown_suite());
}
