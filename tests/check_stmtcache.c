/*
 * The statement cache: repeated SQL runs by name, the cache is bounded and
 * closes what it evicts, it survives the server losing or invalidating a
 * statement (DEALLOCATE ALL, DISCARD ALL, ALTER TABLE), and it stays out
 * of the way where it must (off, PGEV_QUERY_NOCACHE, batches,
 * transactions). Needs PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pgev_conn *connect_with_cache(int size)
{
    pgev_conn_options opts = { .stmt_cache_size = size };
    return tu_connect(&opts);
}

/* Runs one query and waits for it. */
static void run(pgev_conn *conn, const char *sql, tu_query *q)
{
    memset(q, 0, sizeof *q);
    ck_assert_int_gt(tu_query_sql(conn, sql, q), 0);
    tu_wait_query(q);
}

static void run_ok(pgev_conn *conn, const char *sql, tu_query *q)
{
    run(conn, sql, q);
    tu_assert_ok(q);
}

/* How many of the session's prepared statements have this SQL text (asked
 * unnamed, so the question does not change the answer). */
static int prepared_with(pgev_conn *conn, const char *sql)
{
    static const char *const count_sql =
        "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1 AND name LIKE 'pgev_s%'";
    const char *values[1] = { sql };
    pgev_query_args args = { .sql = count_sql, .nparams = 1, .param_values = values,
                             .flags = PGEV_QUERY_NOCACHE };
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    return atoi(q.value);
}

static int prepared_total(pgev_conn *conn)
{
    tu_query q;
    memset(&q, 0, sizeof q);
    pgev_query_args args = { .sql = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgev_s%'",
                             .flags = PGEV_QUERY_NOCACHE };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    return atoi(q.value);
}

START_TEST(repeated_sql_runs_by_name)
{
    pgev_conn *conn = connect_with_cache(0);   /* the default size */
    static const char *const sql = "SELECT $1::int * 2";
    tu_query q[50];
    memset(q, 0, sizeof q);
    static char vals[50][16];
    const char *params[50][1];
    for (int i = 0; i < 50; i++) {
        snprintf(vals[i], sizeof vals[i], "%d", i);
        params[i][0] = vals[i];
        ck_assert_int_gt(tu_query_params(conn, sql, 1, params[i], &q[i]), 0);
    }
    tu_wait_queries(q, 50, TU_WAIT_MS);
    for (int i = 0; i < 50; i++) {
        tu_assert_ok(&q[i]);
        ck_assert_int_eq(atoi(q[i].value), 2 * i);
    }
    ck_assert_int_eq(prepared_with(conn, sql), 1);     /* one statement, for all 50 */
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), 1);
    /* Same text, other explicit parameter types: another statement. */
    Oid types[1] = { 20 /* int8 */ };
    pgev_query_args args = { .sql = sql, .nparams = 1, .param_types = types, .param_values = params[3] };
    tu_query typed;
    memset(&typed, 0, sizeof typed);
    ck_assert_int_gt(tu_submit(conn, &args, &typed, false), 0);
    tu_wait_query(&typed);
    tu_assert_ok(&typed);
    ck_assert_str_eq(typed.value, "6");
    ck_assert_int_eq(prepared_with(conn, sql), 2);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 50);
}
END_TEST

/* The cache holds at most its size, evicting the least recently used
 * statement, which is closed on the server. */
START_TEST(lru_bound_and_eviction_closes)
{
    pgev_conn *conn = connect_with_cache(3);
    tu_query q;
    run_ok(conn, "SELECT 'a'", &q);
    run_ok(conn, "SELECT 'b'", &q);
    run_ok(conn, "SELECT 'c'", &q);
    run_ok(conn, "SELECT 'a'", &q);         /* a is now the most recent: b is the oldest */
    ck_assert_int_eq(prepared_total(conn), 3);
    run_ok(conn, "SELECT 'd'", &q);         /* evicts b */
    ck_assert_str_eq(q.value, "d");
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), 3);
    ck_assert_int_eq(prepared_total(conn), 3);
    ck_assert_int_eq(prepared_with(conn, "SELECT 'b'"), 0);
    ck_assert_int_eq(prepared_with(conn, "SELECT 'a'"), 1);
    /* Many distinct statements in one burst: still bounded, all correct. */
    enum { N = 40 };
    tu_query qs[N];
    memset(qs, 0, sizeof qs);
    static char sql[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(sql[i], sizeof sql[i], "SELECT %d AS n", i);
        ck_assert_int_gt(tu_query_sql(conn, sql[i], &qs[i]), 0);
    }
    tu_wait_queries(qs, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        tu_assert_ok(&qs[i]);
        ck_assert_int_eq(atoi(qs[i].value), i);
    }
    ck_assert_int_eq(prepared_total(conn), 3);
    pgev_conn_free(conn);
    tu_assert_all_once(qs, N);
}
END_TEST

START_TEST(off_and_nocache_send_unnamed)
{
    pgev_conn *conn = connect_with_cache(PGEV_STMT_CACHE_OFF);
    tu_query q;
    for (int i = 0; i < 3; i++)
        run_ok(conn, "SELECT 42", &q);
    ck_assert_int_eq(prepared_total(conn), 0);
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), 0);
    pgev_conn_free(conn);

    conn = connect_with_cache(0);
    pgev_query_args args = { .sql = "SELECT 43", .flags = PGEV_QUERY_NOCACHE };
    for (int i = 0; i < 3; i++) {
        memset(&q, 0, sizeof q);
        ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
        tu_wait_query(&q);
        tu_assert_ok(&q);
    }
    ck_assert_int_eq(prepared_total(conn), 0);
    pgev_conn_free(conn);
}
END_TEST

/* The server forgets the statements: the next run prepares again, and the
 * caller sees nothing of it. */
START_TEST(statement_lost_on_server_is_prepared_again)
{
    pgev_conn *conn = connect_with_cache(0);
    tu_query q;
    run_ok(conn, "SELECT 'kept'", &q);
    /* Behind the cache's back: its first statement is pgev_s1. */
    pgev_query_args drop = { .sql = "DEALLOCATE pgev_s1", .flags = PGEV_QUERY_NOCACHE };
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_submit(conn, &drop, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), 1);  /* pgev still believes in it */
    ck_assert_int_eq(prepared_total(conn), 0);
    run_ok(conn, "SELECT 'kept'", &q);      /* 26000: sent again, unnamed */
    ck_assert_str_eq(q.value, "kept");
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), 0);
    run_ok(conn, "SELECT 'kept'", &q);      /* prepared again */
    ck_assert_int_eq(prepared_with(conn, "SELECT 'kept'"), 1);
    /* DISCARD ALL seen by the cache empties it. */
    run_ok(conn, "DISCARD ALL", &q);
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), 0);
    run_ok(conn, "SELECT 'kept'", &q);
    ck_assert_str_eq(q.value, "kept");
    pgev_conn_free(conn);
}
END_TEST

/* A schema change under a cached statement (0A000, "cached plan must not
 * change result type"): re-prepared and retried once, transparently. */
START_TEST(schema_change_under_cached_statement)
{
    tu_exec("DROP TABLE IF EXISTS sc_t");
    tu_exec("CREATE TABLE sc_t (a int)");
    tu_exec("INSERT INTO sc_t VALUES (1)");
    pgev_conn *conn = connect_with_cache(0);
    tu_query q;
    run_ok(conn, "SELECT * FROM sc_t", &q);
    ck_assert_int_eq(q.ntuples, 1);
    tu_exec("ALTER TABLE sc_t ADD COLUMN b text DEFAULT 'new'");
    run_ok(conn, "SELECT * FROM sc_t", &q);  /* 0A000: sent again, unnamed */
    ck_assert_int_eq(q.ntuples, 1);
    ck_assert_int_eq(prepared_with(conn, "SELECT * FROM sc_t"), 0);  /* the stale one was closed */
    run_ok(conn, "SELECT * FROM sc_t", &q);  /* prepared again */
    ck_assert_int_eq(prepared_with(conn, "SELECT * FROM sc_t"), 1);
    /* Streaming through the re-prepared statement. */
    tu_exec("ALTER TABLE sc_t ADD COLUMN c int DEFAULT 7");
    pgev_query_args args = { .sql = "SELECT * FROM sc_t" };
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_submit(conn, &args, &q, true), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_int_eq(q.rows_streamed, 1);
    /* Inside a transaction it cannot be retried: the error is reported. */
    run_ok(conn, "SELECT * FROM sc_t", &q);  /* cached and ready again */
    ck_assert_int_eq(prepared_with(conn, "SELECT * FROM sc_t"), 1);
    tu_exec("ALTER TABLE sc_t DROP COLUMN b");
    pgev_txn *txn = NULL;
    ck_assert_int_eq(pgev_conn_begin(conn, NULL, &txn), PGEV_OK);
    tu_query tq;
    memset(&tq, 0, sizeof tq);
    tu_in_call++;
    tq.id = pgev_txn_query(txn, "SELECT * FROM sc_t", tu_done_cb, &tq);
    ck_assert_int_eq(pgev_txn_rollback(txn, NULL, NULL), PGEV_OK);
    tu_in_call--;
    ck_assert_int_gt(tq.id, 0);
    tu_wait_query(&tq);
    ck_assert_int_eq(tq.status, PGEV_ESERVER);
    ck_assert_str_eq(tq.sqlstate, "0A000");
    /* And after it, the statement works again. */
    run_ok(conn, "SELECT * FROM sc_t", &q);
    ck_assert_int_eq(q.ntuples, 1);
    pgev_conn_free(conn);
}
END_TEST

/* A syntax error is the error the caller sees (not a missing statement),
 * and it leaves no entry behind. */
START_TEST(bad_sql_reports_its_own_error)
{
    pgev_conn *conn = connect_with_cache(0);
    tu_query q;
    for (int i = 0; i < 2; i++) {
        run(conn, "SELEC 1", &q);
        ck_assert_int_eq(q.status, PGEV_ESERVER);
        ck_assert_str_eq(q.sqlstate, "42601");
    }
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), 0);
    /* Pipelined: bad and good alternate; each gets its own outcome. */
    tu_query qs[20];
    memset(qs, 0, sizeof qs);
    for (int i = 0; i < 20; i++)
        ck_assert_int_gt(tu_query_sql(conn, i % 2 ? "SELECT 'fine'" : "SELECT * FROM no_such_table", &qs[i]), 0);
    tu_wait_queries(qs, 20, TU_WAIT_MS);
    for (int i = 0; i < 20; i++) {
        if (i % 2) {
            tu_assert_ok(&qs[i]);
            ck_assert_str_eq(qs[i].value, "fine");
        } else {
            ck_assert_int_eq(qs[i].status, PGEV_ESERVER);
            ck_assert_str_eq(qs[i].sqlstate, "42P01");
        }
    }
    pgev_conn_free(conn);
    tu_assert_all_once(qs, 20);
}
END_TEST

/* Inside an atomic batch, with the cache full, nothing is evicted (that
 * would need a Sync of its own): the query runs unnamed. */
START_TEST(full_cache_inside_batch_runs_unnamed)
{
    pgev_conn *conn = connect_with_cache(1);
    tu_query q;
    run_ok(conn, "SELECT 'one'", &q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    tu_query bq[3];
    memset(bq, 0, sizeof bq);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'two'", &bq[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'one'", &bq[1]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &bq[2]), PGEV_OK);
    tu_wait_queries(bq, 3, TU_WAIT_MS);
    for (int i = 0; i < 3; i++)
        tu_assert_ok(&bq[i]);
    ck_assert_str_eq(bq[0].value, "two");
    ck_assert_str_eq(bq[1].value, "one");
    ck_assert_int_eq(prepared_with(conn, "SELECT 'one'"), 1);
    ck_assert_int_eq(prepared_with(conn, "SELECT 'two'"), 0);
    pgev_conn_free(conn);
}
END_TEST

static Suite *stmtcache_suite(void)
{
    Suite *s = suite_create("stmtcache");
    TCase *tc = tu_tcase("cache", 60);
    tcase_add_test(tc, repeated_sql_runs_by_name);
    tcase_add_test(tc, lru_bound_and_eviction_closes);
    tcase_add_test(tc, off_and_nocache_send_unnamed);
    tcase_add_test(tc, statement_lost_on_server_is_prepared_again);
    tcase_add_test(tc, schema_change_under_cached_statement);
    tcase_add_test(tc, bad_sql_reports_its_own_error);
    tcase_add_test(tc, full_cache_inside_batch_runs_unnamed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(stmtcache_suite());
}
