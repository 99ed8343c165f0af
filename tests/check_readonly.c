/*
 * Read-only queries (PGEV_QUERY_READONLY) share Sync segments: one Sync per
 * burst instead of one per query. When a query of a shared segment fails,
 * the server skips the rest of the segment; pgev sends those again, so the
 * caller sees exactly the outcomes isolated queries would have had. These
 * tests check that equivalence: failures at every position, several in one
 * burst, long bursts, mixed with queries that may write, inside batches,
 * with deadlines, prepared statements, streaming, and a lost connection.
 * Needs PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAXQ = 1200 };

static char sqls[MAXQ][64];
static tu_query qs[MAXQ];

/* Submits n queries; `fails[i]` makes query i fail (division by zero),
 * `ro[i]` (NULL: all) flags it read-only. Query i otherwise returns i. */
static void submit_burst(pgev_conn *conn, int n, const bool *fails, const bool *ro)
{
    ck_assert_int_le(n, MAXQ);
    memset(qs, 0, sizeof(qs[0]) * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (fails && fails[i])
            snprintf(sqls[i], sizeof sqls[i], "SELECT %d / 0", i);
        else
            snprintf(sqls[i], sizeof sqls[i], "SELECT %d", i);
        pgev_query_args args = {
            .sql = sqls[i],
            .flags = (!ro || ro[i]) ? PGEV_QUERY_READONLY : 0,
        };
        ck_assert_int_gt(tu_submit(conn, &args, &qs[i], false), 0);
    }
}

/* What an isolated query i would have returned. */
static void assert_isolated_outcomes(int n, const bool *fails)
{
    tu_wait_queries(qs, n, TU_WAIT_MS);
    for (int i = 0; i < n; i++) {
        if (fails && fails[i]) {
            ck_assert_msg(qs[i].status == PGEV_ESERVER && strcmp(qs[i].sqlstate, "22012") == 0,
                          "query %d: want division_by_zero, got %s %s", i, pgev_strerror(qs[i].status),
                          qs[i].message);
        } else {
            char want[16];
            snprintf(want, sizeof want, "%d", i);
            ck_assert_msg(qs[i].status == PGEV_OK, "query %d: %s %s", i, pgev_strerror(qs[i].status),
                          qs[i].message);
            ck_assert_str_eq(qs[i].value, want);
        }
    }
    tu_assert_all_once(qs, n);
}

static void assert_conn_in_step(pgev_conn *conn)
{
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'in step'", &q), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.value, "in step");
}

START_TEST(burst_without_failure)
{
    pgev_conn *conn = tu_connect(NULL);
    submit_burst(conn, 100, NULL, NULL);
    assert_isolated_outcomes(100, NULL);
    assert_conn_in_step(conn);
    pgev_conn_free(conn);
}
END_TEST

/* One failure, at every position of a burst: first, middle, last. */
START_TEST(failure_at_every_position)
{
    enum { N = 24 };
    pgev_conn *conn = tu_connect(NULL);
    for (int k = 0; k < N; k++) {
        bool fails[N] = { false };
        fails[k] = true;
        submit_burst(conn, N, fails, NULL);
        assert_isolated_outcomes(N, fails);
    }
    assert_conn_in_step(conn);
    pgev_conn_free(conn);
}
END_TEST

/* Several failures in one burst, adjacent and apart, and every query failing. */
START_TEST(several_failures)
{
    enum { N = 30 };
    static const int patterns[][4] = {
        { 0, 1, -1 }, { 3, 4, 5, -1 }, { 0, 29, -1 }, { 7, 15, 22, -1 }, { 28, 29, -1 },
    };
    pgev_conn *conn = tu_connect(NULL);
    for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
        bool fails[N] = { false };
        for (int j = 0; j < 4 && patterns[p][j] >= 0; j++)
            fails[patterns[p][j]] = true;
        submit_burst(conn, N, fails, NULL);
        assert_isolated_outcomes(N, fails);
    }
    bool all[N];
    for (int i = 0; i < N; i++)
        all[i] = true;
    submit_burst(conn, N, all, NULL);
    assert_isolated_outcomes(N, all);
    assert_conn_in_step(conn);
    pgev_conn_free(conn);
}
END_TEST

/* Longer than one shared segment, with failures spread over several. */
START_TEST(long_burst_with_failures)
{
    enum { N = 1200 };
    static bool fails[N];
    memset(fails, 0, sizeof fails);
    fails[10] = fails[255] = fails[256] = fails[700] = fails[1199] = true;
    pgev_conn *conn = tu_connect(NULL);
    submit_burst(conn, N, fails, NULL);
    assert_isolated_outcomes(N, fails);
    assert_conn_in_step(conn);
    pgev_conn_free(conn);
}
END_TEST

/* Read-only and other queries interleaved: a write is never re-run or
 * lost, and a failing read never touches a write. */
START_TEST(mixed_with_writes)
{
    enum { N = 40 };
    tu_exec("DROP TABLE IF EXISTS ro_mixed; CREATE TABLE ro_mixed (i int)");
    pgev_conn *conn = tu_connect(NULL);
    memset(qs, 0, sizeof(qs[0]) * N);
    for (int i = 0; i < N; i++) {
        pgev_query_args args = { 0 };
        if (i % 4 == 3) {
            snprintf(sqls[i], sizeof sqls[i], "INSERT INTO ro_mixed VALUES (%d)", i);
        } else {
            snprintf(sqls[i], sizeof sqls[i], i % 7 == 1 ? "SELECT %d / 0" : "SELECT %d", i);
            args.flags = PGEV_QUERY_READONLY;
        }
        args.sql = sqls[i];
        ck_assert_int_gt(tu_submit(conn, &args, &qs[i], false), 0);
    }
    tu_wait_queries(qs, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        if (i % 4 == 3) {
            tu_assert_ok(&qs[i]);
            ck_assert_int_eq(qs[i].rows_affected, 1);
        } else if (i % 7 == 1) {
            ck_assert_int_eq(qs[i].status, PGEV_ESERVER);
        } else {
            tu_assert_ok(&qs[i]);
        }
    }
    tu_assert_all_once(qs, N);
    char *count = tu_exec_value("SELECT count(*) FROM ro_mixed");
    ck_assert_str_eq(count, "10");
    free(count);
    pgev_conn_free(conn);
}
END_TEST

static void rows_hook(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)res;
    (void)q;
}

/* Streaming read-only queries behind a failure: rows are delivered once,
 * by the run that counts. */
START_TEST(streaming_followers_deliver_rows_once)
{
    enum { N = 8 };
    pgev_conn *conn = tu_connect(NULL);
    memset(qs, 0, sizeof(qs[0]) * N);
    for (int i = 0; i < N; i++) {
        qs[i].on_rows_hook = rows_hook;
        snprintf(sqls[i], sizeof sqls[i], i == 2 ? "SELECT 1 / 0" : "SELECT generate_series(1, %d)",
                 100 * (i + 1));
        pgev_query_args args = { .sql = sqls[i], .flags = PGEV_QUERY_READONLY };
        ck_assert_int_gt(tu_submit(conn, &args, &qs[i], true), 0);
    }
    tu_wait_queries(qs, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        if (i == 2) {
            ck_assert_int_eq(qs[i].status, PGEV_ESERVER);
            ck_assert_int_eq(qs[i].rows_streamed, 0);
        } else {
            tu_assert_ok(&qs[i]);
            ck_assert_int_eq(qs[i].rows_streamed, 100 * (i + 1));
        }
    }
    tu_assert_all_once(qs, N);
    pgev_conn_free(conn);
}
END_TEST

/* Prepared statements executed read-only, one with a bad parameter. */
START_TEST(prepared_followers)
{
    enum { N = 10 };
    pgev_conn *conn = tu_connect(NULL);
    tu_query prep;
    memset(&prep, 0, sizeof prep);
    ck_assert_int_gt(tu_prepare(conn, "ro_stmt", "SELECT $1::int", 1, NULL, &prep), 0);
    tu_wait_query(&prep);
    tu_assert_ok(&prep);
    static char vals[N][16];
    const char *params[N][1];
    memset(qs, 0, sizeof(qs[0]) * N);
    for (int i = 0; i < N; i++) {
        snprintf(vals[i], sizeof vals[i], i == 4 ? "x%d" : "%d", i);
        params[i][0] = vals[i];
        pgev_query_args args = {
            .stmt = "ro_stmt", .nparams = 1, .param_values = params[i], .flags = PGEV_QUERY_READONLY,
        };
        ck_assert_int_gt(tu_submit(conn, &args, &qs[i], false), 0);
    }
    /* The caller's arrays may change once submit returns. */
    memset(vals, 'z', sizeof vals);
    tu_wait_queries(qs, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        if (i == 4) {
            ck_assert_int_eq(qs[i].status, PGEV_ESERVER);
            ck_assert_str_eq(qs[i].sqlstate, "22P02");
        } else {
            char want[16];
            snprintf(want, sizeof want, "%d", i);
            tu_assert_ok(&qs[i]);
            ck_assert_str_eq(qs[i].value, want);
        }
    }
    tu_assert_all_once(qs, N);
    pgev_conn_free(conn);
}
END_TEST

/* Inside an atomic batch the flag changes nothing: the batch is one
 * transaction, and after its failure the rest is aborted. */
START_TEST(batch_keeps_its_semantics)
{
    enum { N = 6 };
    pgev_conn *conn = tu_connect(NULL);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    bool fails[N] = { false, false, true, false, false, false };
    submit_burst(conn, N, fails, NULL);
    tu_query batch;
    memset(&batch, 0, sizeof batch);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    tu_wait_queries(qs, N, TU_WAIT_MS);
    tu_wait_query(&batch);
    /* They ran, but the batch was rolled back. */
    ck_assert_int_eq(qs[0].status, PGEV_EABORTED);
    ck_assert_int_eq(qs[1].status, PGEV_EABORTED);
    ck_assert_int_eq(qs[2].status, PGEV_ESERVER);
    for (int i = 3; i < N; i++)
        ck_assert_int_eq(qs[i].status, PGEV_EABORTED);
    ck_assert_int_eq(batch.status, PGEV_ESERVER);
    tu_assert_all_once(qs, N);
    pgev_conn_free(conn);
}
END_TEST

/* A read-only query that times out is cancelled on the server; the
 * queries that shared its segment run again and succeed. */
START_TEST(deadline_in_shared_segment)
{
    enum { N = 6 };
    pgev_conn *conn = tu_connect(NULL);
    memset(qs, 0, sizeof(qs[0]) * N);
    for (int i = 0; i < N; i++) {
        snprintf(sqls[i], sizeof sqls[i], i == 1 ? "SELECT %d, pg_sleep(30)" : "SELECT %d", i);
        pgev_query_args args = {
            .sql = sqls[i], .flags = PGEV_QUERY_READONLY, .timeout_ms = i == 1 ? 200 : -1,
        };
        ck_assert_int_gt(tu_submit(conn, &args, &qs[i], false), 0);
    }
    tu_wait_queries(qs, N, TU_WAIT_MS);
    ck_assert_int_eq(qs[1].status, PGEV_ETIMEOUT);
    for (int i = 0; i < N; i++) {
        if (i == 1)
            continue;
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        tu_assert_ok(&qs[i]);
        ck_assert_str_eq(qs[i].value, want);
    }
    tu_assert_all_once(qs, N);
    assert_conn_in_step(conn);
    pgev_conn_free(conn);
}
END_TEST

/* Cancelling read-only queries of a shared segment, queued or in flight. */
START_TEST(cancel_in_shared_segment)
{
    enum { N = 50 };
    pgev_conn *conn = tu_connect(NULL);
    submit_burst(conn, N, NULL, NULL);
    for (int i = 0; i < N; i += 5)
        (void)pgev_conn_cancel(conn, qs[i].id);
    tu_wait_queries(qs, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        if (i % 5 == 0 && qs[i].status == PGEV_ECANCELLED)
            continue;
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        ck_assert_msg(qs[i].status == PGEV_OK, "query %d: %s %s", i, pgev_strerror(qs[i].status),
                      qs[i].message);
        ck_assert_str_eq(qs[i].value, want);
    }
    tu_assert_all_once(qs, N);
    assert_conn_in_step(conn);
    pgev_conn_free(conn);
}
END_TEST

/* The backend is terminated while read-only bursts (with failures) are in
 * flight: every query completes exactly once, nothing is re-sent on a dead
 * connection, nothing hangs. */
START_TEST(connection_lost_mid_burst)
{
    enum { N = 300 };
    static bool fails[N];
    memset(fails, 0, sizeof fails);
    for (int i = 0; i < N; i += 37)
        fails[i] = true;
    pgev_conn *conn = tu_connect(NULL);
    int pid = PQbackendPID(pgev_conn_pg(conn));
    submit_burst(conn, N / 2, fails, NULL);
    tu_exec("SELECT pg_terminate_backend(%d)", pid);
    /* More behind it, some of them sent after the loss is noticed. */
    memset(&qs[N / 2], 0, sizeof(qs[0]) * (N / 2));
    for (int i = N / 2; i < N; i++) {
        snprintf(sqls[i], sizeof sqls[i], "SELECT %d", i);
        pgev_query_args args = { .sql = sqls[i], .flags = PGEV_QUERY_READONLY };
        /* Refused once the loss is known: never accepted, so nothing to wait
         * for (tu_wait_queries skips ids <= 0) and no callback may follow. */
        if (tu_submit(conn, &args, &qs[i], false) <= 0)
            ck_assert_int_eq(qs[i].id, PGEV_ECLOSED);
    }
    tu_wait_queries(qs, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++)
        ck_assert_msg(qs[i].status == PGEV_OK || qs[i].status == PGEV_ESERVER ||
                          qs[i].status == PGEV_ECONNLOST || qs[i].id <= 0,
                      "query %d: %s", i, pgev_strerror(qs[i].status));
    tu_assert_all_once(qs, N);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    pgev_conn_free(conn);
}
END_TEST

static Suite *readonly_suite(void)
{
    Suite *s = suite_create("readonly");
    TCase *tc = tu_tcase("shared_sync", 120);
    tcase_add_test(tc, burst_without_failure);
    tcase_add_test(tc, failure_at_every_position);
    tcase_add_test(tc, several_failures);
    tcase_add_test(tc, long_burst_with_failures);
    tcase_add_test(tc, mixed_with_writes);
    tcase_add_test(tc, streaming_followers_deliver_rows_once);
    tcase_add_test(tc, prepared_followers);
    tcase_add_test(tc, batch_keeps_its_semantics);
    tcase_add_test(tc, deadline_in_shared_segment);
    tcase_add_test(tc, cancel_in_shared_segment);
    tcase_add_test(tc, connection_lost_mid_burst);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(readonly_suite());
}
