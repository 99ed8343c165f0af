/*
 * The statement cache: repeated SQL runs by name, the cache is bounded and
 * closes what it evicts, it survives the server losing or invalidating a
 * statement (DEALLOCATE ALL, DISCARD ALL, ALTER TABLE), and it stays out
 * of the way where it must (off, PGEV_QUERY_NOCACHE, batches,
 * transactions). Needs PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Waits until the cache knows whether the connection reaches a server
 * session of its own (it asks once, with the first cacheable query). */
static void warm_up(pgev_conn *conn)
{
    tu_query q;
    run_ok(conn, "SELECT 'warm-up'", &q);
}

static void run_param(pgev_conn *conn, const char *sql, const char *value, tu_query *q)
{
    const char *values[1] = { value };
    memset(q, 0, sizeof *q);
    ck_assert_int_gt(tu_query_params(conn, sql, 1, values, q), 0);
    tu_wait_query(q);
}

/* How many of the session's prepared statements have this SQL text (asked
 * unnamed, so the question does not change the answer). */
static int prepared_with(pgev_conn *conn, const char *sql)
{
    static const char *const count_sql =
        "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1 AND name LIKE 'pgev\\_%'";
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
    pgev_query_args args = { .sql = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgev\\_%'",
                             .flags = PGEV_QUERY_NOCACHE };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    return atoi(q.value);
}

/* The name of the session's statement for this SQL text ("" if none). */
static void name_of(pgev_conn *conn, const char *sql, char *out, int size)
{
    const char *values[1] = { sql };
    pgev_query_args args = { .sql = "SELECT name FROM pg_prepared_statements WHERE statement = $1",
                             .nparams = 1, .param_values = values, .flags = PGEV_QUERY_NOCACHE };
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    snprintf(out, (size_t)size, "%.*s", size - 1, q.ntuples > 0 ? q.value : "");
}

/* pgev names a statement after what it means: "pgev_" and 32 hex digits. */
static bool is_digest_name(const char *name)
{
    if (strncmp(name, "pgev_", 5) != 0 || strlen(name) != 5 + 32)
        return false;
    for (const char *p = name + 5; *p; p++)
        if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
            return false;
    return true;
}

START_TEST(repeated_sql_runs_by_name)
{
    pgev_conn *conn = connect_with_cache(0);   /* the default size */
    warm_up(conn);
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
    warm_up(conn);
    tu_query q;
    run_ok(conn, "SELECT 'kept'", &q);
    /* Behind the cache's back. */
    char name[64], drop_sql[128];
    name_of(conn, "SELECT 'kept'", name, (int)sizeof name);
    ck_assert_msg(is_digest_name(name), "statement name %s", name);
    snprintf(drop_sql, sizeof drop_sql, "DEALLOCATE %s", name);
    pgev_query_args drop = { .sql = drop_sql, .flags = PGEV_QUERY_NOCACHE };
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
    warm_up(conn);
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
    tu_in_call--;
    ck_assert_int_gt(tq.id, 0);
    tu_wait_query(&tq);
    /* Rolled back only once the failure is known. */
    tu_in_call++;
    ck_assert_int_eq(pgev_txn_rollback(txn, NULL, NULL), PGEV_OK);
    tu_in_call--;
    ck_assert_int_eq(tq.status, PGEV_ESERVER);
    ck_assert_str_eq(tq.sqlstate, "0A000");
    /* Issue 14, item 3: the stale statement is closed once the transaction
     * is over (a DEALLOCATE sent into the failed transaction was refused,
     * and the statement stayed on the server outside the cache's bound). */
    run_ok(conn, "SELECT 'after'", &q);
    ck_assert_int_eq(prepared_with(conn, "SELECT * FROM sc_t"), 0);
    ck_assert_int_le(prepared_total(conn), pgev_conn_stmt_cache_count(conn));
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
    warm_up(conn);
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

/* Issue 14, item 1 (the part a direct connection shows): a statement's
 * name is a function of its text and parameter types, the same on every
 * connection, and "already exists" (42P05) for it means it is there. */
START_TEST(names_are_digests_and_already_exists_is_success)
{
    static const char *const sql = "SELECT $1::int + 7";
    pgev_conn *a = connect_with_cache(0), *b = connect_with_cache(0);
    warm_up(a);
    warm_up(b);
    tu_query q;
    for (int i = 0; i < 2; i++) {
        run_param(a, sql, "1", &q);
        tu_assert_ok(&q);
        ck_assert_str_eq(q.value, "8");
        run_param(b, sql, "2", &q);
        tu_assert_ok(&q);
        ck_assert_str_eq(q.value, "9");
    }
    char na[64], nb[64];
    name_of(a, sql, na, (int)sizeof na);
    name_of(b, sql, nb, (int)sizeof nb);
    ck_assert_msg(is_digest_name(na), "statement name %s", na);
    ck_assert_str_eq(na, nb);
    /* Other parameter types, another name. */
    Oid types[1] = { 20 /* int8 */ };
    const char *one[1] = { "1" };
    pgev_query_args typed = { .sql = sql, .nparams = 1, .param_types = types, .param_values = one };
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_submit(a, &typed, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_int_eq(prepared_with(a, sql), 2);
    /* Another text, another name. */
    run_param(a, "SELECT $1::int + 8", "1", &q);
    tu_assert_ok(&q);
    name_of(a, "SELECT $1::int + 8", nb, (int)sizeof nb);
    ck_assert_msg(is_digest_name(nb) && strcmp(na, nb) != 0, "names %s and %s", na, nb);

    /* A session that already has the statement under that name (a
     * server session a pooler shares, a Close that could not be sent):
     * pgev's Parse meets 42P05, and the query still gets its result. */
    pgev_conn *c = connect_with_cache(0);
    warm_up(c);
    char prep[256];
    snprintf(prep, sizeof prep, "PREPARE %s(int) AS %s", na, sql);
    pgev_query_args by_hand = { .sql = prep, .flags = PGEV_QUERY_NOCACHE };
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_submit(c, &by_hand, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    for (int i = 0; i < 3; i++) {
        run_param(c, sql, "3", &q);
        tu_assert_ok(&q);
        ck_assert_str_eq(q.value, "10");
    }
    ck_assert_int_eq(pgev_conn_stmt_cache_count(c), 1);
    pgev_conn_free(a);
    pgev_conn_free(b);
    pgev_conn_free(c);
}
END_TEST

/* Issue 14, items 2 and 3: a transaction block opened with plain SQL. A
 * cached statement invalidated under it reports 0A000 (it cannot be
 * re-sent inside the block: that gave 25P02), and the stale statement is
 * closed once the block is over instead of being left on the server. */
START_TEST(plain_begin_reports_invalidation_and_stale_is_closed_after)
{
    static const char *const sel = "SELECT * FROM sc_b";
    tu_exec("DROP TABLE IF EXISTS sc_b");
    tu_exec("CREATE TABLE sc_b (a int, b int)");
    tu_exec("INSERT INTO sc_b VALUES (1, 2)");
    pgev_conn *conn = connect_with_cache(0);
    warm_up(conn);
    tu_query q;
    run_ok(conn, sel, &q);
    ck_assert_int_eq(prepared_with(conn, sel), 1);
    tu_exec("ALTER TABLE sc_b ALTER COLUMN b TYPE bigint");
    run_ok(conn, "BEGIN", &q);
    run(conn, sel, &q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "0A000");
    run_ok(conn, "ROLLBACK", &q);
    run_ok(conn, "SELECT 'after'", &q);
    ck_assert_int_eq(prepared_with(conn, sel), 0);
    ck_assert_int_le(prepared_total(conn), pgev_conn_stmt_cache_count(conn));
    run_ok(conn, sel, &q);
    ck_assert_int_eq(q.ntuples, 1);
    run_ok(conn, sel, &q);
    ck_assert_int_eq(prepared_with(conn, sel), 1);

    /* The same with BEGIN and the statement pipelined together. */
    tu_exec("ALTER TABLE sc_b ALTER COLUMN b TYPE int");
    tu_query p[3];
    memset(p, 0, sizeof p);
    ck_assert_int_gt(tu_query_sql(conn, "BEGIN", &p[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, sel, &p[1]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "ROLLBACK", &p[2]), 0);
    tu_wait_queries(p, 3, TU_WAIT_MS);
    tu_assert_ok(&p[0]);
    ck_assert_int_eq(p[1].status, PGEV_ESERVER);
    ck_assert_str_eq(p[1].sqlstate, "0A000");
    tu_assert_ok(&p[2]);
    run_ok(conn, "SELECT 'after'", &q);
    ck_assert_int_eq(prepared_with(conn, sel), 0);
    ck_assert_int_le(prepared_total(conn), pgev_conn_stmt_cache_count(conn));
    run_ok(conn, sel, &q);
    ck_assert_int_eq(q.ntuples, 1);
    pgev_conn_free(conn);
    tu_assert_all_once(p, 3);
}
END_TEST

/* A query whose cached statement turns out stale is re-sent only when that
 * keeps submission order: with a write pipelined behind it, a re-sent
 * SELECT would run after the write and see its row. It reports 0A000
 * instead (and runs by itself afterwards). */
START_TEST(invalidation_retry_keeps_submission_order)
{
    static const char *const sel = "SELECT * FROM sc_o";
    tu_exec("DROP TABLE IF EXISTS sc_o");
    tu_exec("CREATE TABLE sc_o (a int)");
    tu_exec("INSERT INTO sc_o VALUES (1)");
    pgev_conn *conn = connect_with_cache(0);
    warm_up(conn);
    tu_query q;
    run_ok(conn, sel, &q);
    ck_assert_int_eq(prepared_with(conn, sel), 1);
    tu_exec("ALTER TABLE sc_o ADD COLUMN b int");
    tu_query p[2];
    memset(p, 0, sizeof p);
    ck_assert_int_gt(tu_query_sql(conn, sel, &p[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO sc_o VALUES (2)", &p[1]), 0);
    tu_wait_queries(p, 2, TU_WAIT_MS);
    tu_assert_ok(&p[1]);
    ck_assert_msg(p[0].status != PGEV_OK || p[0].ntuples == 1,
                  "the SELECT ran after the INSERT submitted behind it (%d rows)", p[0].ntuples);
    ck_assert_int_eq(p[0].status, PGEV_ESERVER);
    ck_assert_str_eq(p[0].sqlstate, "0A000");
    /* Alone, it is re-sent transparently; the stale statement is gone. */
    run_ok(conn, sel, &q);
    ck_assert_int_eq(q.ntuples, 2);
    ck_assert_int_le(prepared_with(conn, sel), 1);
    pgev_conn_free(conn);
    tu_assert_all_once(p, 2);
}
END_TEST

static bool conn_closed(void *arg)
{
    return pgev_conn_state(arg) == PGEV_CONN_CLOSED;
}

/* Issue 14, item 4: a closed connection's cache holds nothing. */
START_TEST(closed_connection_cache_is_empty)
{
    pgev_conn *conn = connect_with_cache(0);
    warm_up(conn);
    tu_query q;
    run_ok(conn, "SELECT 'x'", &q);
    ck_assert_int_ge(pgev_conn_stmt_cache_count(conn), 1);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    tu_run_until(conn_closed, conn, TU_WAIT_MS, "the connection to close");
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), 0);
    pgev_conn_free(conn);
}
END_TEST

/* Issue 14, item 5: the cache's memory is bounded in bytes as well as in
 * statements. A text longer than PGEV_STMT_CACHE_MAX_SQL is never cached
 * (nor copied); smaller ones are evicted to keep the connection's total
 * under PGEV_STMT_CACHE_MAX_BYTES whatever stmt_cache_size says. */
START_TEST(cache_memory_is_bounded_in_bytes)
{
    pgev_conn *conn = connect_with_cache(PGEV_STMT_CACHE_MAX);
    warm_up(conn);
    int base = pgev_conn_stmt_cache_count(conn);
    enum { BIG = 1 << 20 };
    char *big = malloc(BIG + 64);
    ck_assert_ptr_nonnull(big);
    int n = snprintf(big, 64, "SELECT length('");
    memset(big + n, 'x', BIG);
    strcpy(big + n + BIG, "')");
    tu_query q;
    for (int i = 0; i < 2; i++) {
        run_ok(conn, big, &q);
        ck_assert_int_eq(atoi(q.value), BIG);
    }
    ck_assert_int_eq(pgev_conn_stmt_cache_count(conn), base);
    ck_assert_int_eq(prepared_total(conn), base);
    free(big);

    /* Texts of 10,000 bytes: more of them than the byte bound holds. */
    enum { LEN = 10000 };
    int count = 2 * (int)(PGEV_STMT_CACHE_MAX_BYTES / LEN);
    char *text = malloc(LEN + 1);
    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < count; i++) {
        n = snprintf(text, LEN + 1, "SELECT %d AS n, '", i);
        memset(text + n, 'y', LEN - n - 1);
        text[LEN - 1] = '\'';
        text[LEN] = '\0';
        ck_assert_int_eq((int)strlen(text), LEN);
        run_ok(conn, text, &q);
        ck_assert_int_eq(atoi(q.value), i);
    }
    free(text);
    int cached = pgev_conn_stmt_cache_count(conn);
    ck_assert_int_gt(cached, 1);
    ck_assert_int_le((long long)cached * LEN, PGEV_STMT_CACHE_MAX_BYTES);
    ck_assert_int_eq(prepared_total(conn), cached);     /* what it evicted, it closed */
    pgev_conn_free(conn);
}
END_TEST

/* ---- behind PgBouncer in transaction mode ------------------------------- */

/* PgBouncer (transaction mode, 2 server connections) in front of the
 * harness's server, started once per cluster; its DSN, free() it. */
static char *bouncer_dsn(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/pgbouncer.dsn", getenv("PGEV_TEST_CLUSTER_DIR"));
    if (access(path, R_OK) != 0)
        tu_cluster("pgbouncer", "transaction", NULL);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[1024];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    return strdup(line);
}

static pgev_conn *bouncer_connect(const char *dsn)
{
    pgev_conn *conn = tu_conn_new(dsn, NULL);    /* DEFAULT options: the cache is on */
    ck_assert_ptr_nonnull(conn);
    tu_wait_connected(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    return conn;
}

enum { SHAPES = 4, VARIANTS = 6 };

/* Different SQL under the same shapes: one int parameter, one int result. */
static const char *shape_sql(int shape, int variant)
{
    static char sql[SHAPES][VARIANTS][64];
    char *out = sql[shape][variant];
    if (!out[0]) {
        int k = variant + 1;
        switch (shape) {
        case 0: snprintf(out, sizeof sql[0][0], "SELECT $1::int + %d", k); break;
        case 1: snprintf(out, sizeof sql[0][0], "SELECT $1::int * %d", k); break;
        case 2: snprintf(out, sizeof sql[0][0], "SELECT $1::int - %d", k); break;
        default: snprintf(out, sizeof sql[0][0], "SELECT %d - $1::int", k); break;
        }
    }
    return sql[shape][variant];
}

static long shape_expect(int shape, int variant, int v)
{
    int k = variant + 1;
    switch (shape) {
    case 0: return (long)v + k;
    case 1: return (long)v * k;
    case 2: return (long)v - k;
    default: return (long)k - v;
    }
}

typedef struct mixed {
    tu_query q;
    int shape, variant, v;
    char value[16];
} mixed;

static int64_t submit_mixed(pgev_conn *conn, pgev_txn *txn, mixed *m, int i)
{
    m->shape = i % SHAPES;
    m->variant = (i / SHAPES) % VARIANTS;
    m->v = i;
    snprintf(m->value, sizeof m->value, "%d", i);
    const char *values[1] = { m->value };
    pgev_query_args args = { .sql = shape_sql(m->shape, m->variant), .nparams = 1, .param_values = values };
    if (!txn)
        return tu_submit(conn, &args, &m->q, false);
    args.on_done = tu_done_cb;
    args.arg = &m->q;
    tu_in_call++;
    m->q.id = pgev_txn_submit(txn, &args);
    tu_in_call--;
    return m->q.id;
}

static bool mixed_done(void *arg)
{
    mixed **span = arg;
    for (mixed *m = span[0]; m < span[1]; m++)
        if (m->q.id > 0 && m->q.done_calls == 0)
            return false;
    return true;
}

/* Issue 14, item 1: three connections with DEFAULT options behind
 * PgBouncer in transaction mode (2 server connections), several thousand
 * pipelined queries with different SQL under the same shapes, pgev
 * transactions and plain-SQL transaction blocks among them, and a fourth
 * connection holding a server connection in a transaction for the first
 * half: every result right, not one error. */
START_TEST(pgbouncer_default_options_mixed_load)
{
    if (!tu_have_cluster("starts PgBouncer beside it"))
        return;
    char *dsn = bouncer_dsn();
    enum { CONNS = 3, PER = 1600, N = CONNS * PER };
    pgev_conn *conns[CONNS];
    for (int c = 0; c < CONNS; c++)
        conns[c] = bouncer_connect(dsn);
    pgev_conn *holder = bouncer_connect(dsn);
    tu_query hold[3];
    memset(hold, 0, sizeof hold);
    ck_assert_int_gt(tu_query_sql(holder, "BEGIN", &hold[0]), 0);
    ck_assert_int_gt(tu_query_sql(holder, "SELECT 1", &hold[1]), 0);
    tu_wait_queries(hold, 2, TU_WAIT_MS);

    static mixed m[N];
    memset(m, 0, sizeof m);
    static tu_query blocks[CONNS][PER / 100][2];
    memset(blocks, 0, sizeof blocks);
    static tu_query commits[CONNS][PER / 100];
    memset(commits, 0, sizeof commits);
    int half = PER / 2;
    for (int round = 0; round < 2; round++) {
        for (int i = round * half; i < (round + 1) * half; i++) {
            for (int c = 0; c < CONNS; c++) {
                pgev_conn *conn = conns[c];
                mixed *mm = &m[c * PER + i];
                if (i % 100 == 10) {
                    /* A pgev transaction of one query. */
                    pgev_txn *txn = NULL;
                    ck_assert_int_eq(pgev_conn_begin(conn, NULL, &txn), PGEV_OK);
                    ck_assert_int_gt(submit_mixed(conn, txn, mm, c * PER + i), 0);
                    tu_query *cq = &commits[c][i / 100];
                    cq->is_batch = true;    /* its id is the COMMIT's, not the submit's */
                    tu_in_call++;
                    ck_assert_int_eq(pgev_txn_commit(txn, tu_done_cb, cq), PGEV_OK);
                    tu_in_call--;
                    cq->id = 1;
                } else if (i % 100 == 60) {
                    /* A block opened and closed with plain SQL. */
                    ck_assert_int_gt(tu_query_sql(conn, "BEGIN", &blocks[c][i / 100][0]), 0);
                    ck_assert_int_gt(submit_mixed(conn, NULL, mm, c * PER + i), 0);
                    ck_assert_int_gt(tu_query_sql(conn, "COMMIT", &blocks[c][i / 100][1]), 0);
                } else {
                    ck_assert_int_gt(submit_mixed(conn, NULL, mm, c * PER + i), 0);
                }
            }
        }
        mixed *span[2] = { m, m + N };
        tu_run_until(mixed_done, span, 60000, "the mixed queries");
        if (round == 0) {
            ck_assert_int_gt(tu_query_sql(holder, "COMMIT", &hold[2]), 0);
            tu_wait_query(&hold[2]);
        }
    }
    tu_wait_queries(&blocks[0][0][0], CONNS * (PER / 100) * 2, TU_WAIT_MS);
    tu_wait_queries(&commits[0][0], CONNS * (PER / 100), TU_WAIT_MS);
    int wrong = 0, errors = 0;
    char first[512] = "";
    for (int k = 0; k < N; k++) {
        if (m[k].q.status != PGEV_OK) {
            if (!errors++)
                snprintf(first, sizeof first, "query %d (%s): %s", k, shape_sql(m[k].shape, m[k].variant),
                         m[k].q.message);
        } else if (atol(m[k].q.value) != shape_expect(m[k].shape, m[k].variant, m[k].v)) {
            if (!wrong++ && !first[0])
                snprintf(first, sizeof first, "query %d (%s with %d): %s", k,
                         shape_sql(m[k].shape, m[k].variant), m[k].v, m[k].q.value);
        }
    }
    ck_assert_msg(wrong == 0 && errors == 0, "%d wrong results, %d errors; first: %s", wrong, errors, first);
    for (int c = 0; c < CONNS; c++)
        for (int b = 0; b < PER / 100; b++) {
            tu_assert_ok(&blocks[c][b][0]);
            tu_assert_ok(&blocks[c][b][1]);
            tu_assert_ok(&commits[c][b]);
        }
    for (int k = 0; k < 3; k++)
        tu_assert_ok(&hold[k]);
    /* Behind the pooler the cache named nothing (see pgev.h). */
    for (int c = 0; c < CONNS; c++)
        ck_assert_int_eq(pgev_conn_stmt_cache_count(conns[c]), 0);
    for (int c = 0; c < CONNS; c++)
        pgev_conn_free(conns[c]);
    pgev_conn_free(holder);
    free(dsn);
}
END_TEST

typedef struct pooled {
    int64_t id;
    int done_calls;
    int status;
    int shape, variant, v;
    char param[16];
    char value[32];
    char message[256];
} pooled;

static void pooled_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    pooled *p = arg;
    TU_CHECK(tu_in_call == 0, "pool callback inside the submitting call");
    p->done_calls++;
    TU_CHECK(p->done_calls == 1, "on_done ran %d times", p->done_calls);
    p->status = pgev_result_status(res);
    PGresult *pg = pgev_result_pg(res);
    if (p->status == PGEV_OK && pg && PQntuples(pg) == 1)
        snprintf(p->value, sizeof p->value, "%s", PQgetvalue(pg, 0, 0));
    else if (p->status != PGEV_OK)
        snprintf(p->message, sizeof p->message, "%s", pgev_error_message(pgev_result_error(res)));
}

static bool pooled_all_done(void *arg)
{
    pooled **span = arg;
    for (pooled *p = span[0]; p < span[1]; p++)
        if (p->id > 0 && p->done_calls == 0)
            return false;
    return true;
}

/* The same through a pgev_pool of 3 with DEFAULT options (its queries go
 * to the least-loaded connection, pipelined). */
START_TEST(pgbouncer_default_options_pool)
{
    if (!tu_have_cluster("starts PgBouncer beside it"))
        return;
    char *dsn = bouncer_dsn();
    pgev_pool_options opts = { .min_conns = 3, .max_conns = 3 };
    pgev_pool *pool = pgev_pool_new(tu_base, dsn, &opts);
    ck_assert_ptr_nonnull(pool);
    enum { N = 3000 };
    static pooled p[N];
    memset(p, 0, sizeof p);
    for (int i = 0; i < N; i++) {
        p[i].shape = i % SHAPES;
        p[i].variant = (i / SHAPES) % VARIANTS;
        p[i].v = i;
        snprintf(p[i].param, sizeof p[i].param, "%d", i);
        const char *values[1] = { p[i].param };
        pgev_query_args args = { .sql = shape_sql(p[i].shape, p[i].variant), .nparams = 1,
                                 .param_values = values, .on_done = pooled_done, .arg = &p[i] };
        tu_in_call++;
        p[i].id = pgev_pool_submit(pool, &args);
        tu_in_call--;
        ck_assert_int_gt(p[i].id, 0);
    }
    pooled *span[2] = { p, p + N };
    tu_run_until(pooled_all_done, span, 60000, "the pool's queries");
    int wrong = 0, errors = 0;
    char first[512] = "";
    for (int i = 0; i < N; i++) {
        if (p[i].status != PGEV_OK) {
            if (!errors++)
                snprintf(first, sizeof first, "query %d: %s", i, p[i].message);
        } else if (atol(p[i].value) != shape_expect(p[i].shape, p[i].variant, p[i].v)) {
            if (!wrong++ && !first[0])
                snprintf(first, sizeof first, "query %d (%s with %d): %s", i, shape_sql(p[i].shape, p[i].variant),
                         p[i].v, p[i].value);
        }
    }
    ck_assert_msg(wrong == 0 && errors == 0, "%d wrong results, %d errors; first: %s", wrong, errors, first);
    tu_in_call++;
    pgev_pool_free(pool);
    tu_in_call--;
    free(dsn);
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
    tcase_add_test(tc, names_are_digests_and_already_exists_is_success);
    tcase_add_test(tc, plain_begin_reports_invalidation_and_stale_is_closed_after);
    tcase_add_test(tc, invalidation_retry_keeps_submission_order);
    tcase_add_test(tc, closed_connection_cache_is_empty);
    tcase_add_test(tc, cache_memory_is_bounded_in_bytes);
    suite_add_tcase(s, tc);
    tc = tu_tcase("pgbouncer", 120);
    tcase_add_test(tc, pgbouncer_default_options_mixed_load);
    tcase_add_test(tc, pgbouncer_default_options_pool);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(stmtcache_suite());
}
