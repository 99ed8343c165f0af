/*
 * Transactions: options, isolation from the connection's other callers,
 * errors that roll back, savepoints, interactive use, serialization
 * failures, and every teardown path (lost connection, free, close, cancel,
 * timeout). Needs PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pgev_txn *begin(pgev_conn *conn, const pgev_txn_options *opts)
{
    pgev_txn *txn = NULL;
    tu_in_call++;
    int rc = pgev_conn_begin(conn, opts, &txn);
    tu_in_call--;
    ck_assert_msg(rc == PGEV_OK, "begin: %s (%s)", pgev_strerror(rc), pgev_conn_errmsg(conn));
    ck_assert_ptr_nonnull(txn);
    ck_assert_ptr_eq(pgev_txn_conn(txn), conn);
    return txn;
}

static int64_t txq(pgev_txn *txn, const char *sql, tu_query *q)
{
    tu_in_call++;
    q->id = pgev_txn_query(txn, sql, tu_done_cb, q);
    tu_in_call--;
    return q->id;
}

static int64_t txq_ok(pgev_txn *txn, const char *sql, tu_query *q)
{
    int64_t id = txq(txn, sql, q);
    ck_assert_msg(id > 0, "txn query %s: %s (%s)", sql, pgev_strerror((int)id),
                  pgev_conn_errmsg(pgev_txn_conn(txn)));
    return id;
}

static int64_t txsubmit(pgev_txn *txn, const pgev_query_args *args, tu_query *q)
{
    pgev_query_args copy = *args;
    copy.on_done = tu_done_cb;
    copy.arg = q;
    tu_in_call++;
    q->id = pgev_txn_submit(txn, &copy);
    tu_in_call--;
    ck_assert_msg(q->id > 0, "txn submit: %s", pgev_conn_errmsg(pgev_txn_conn(txn)));
    return q->id;
}

enum sp { SP_CREATE, SP_RELEASE, SP_ROLLBACK_TO };

static int64_t txsp(pgev_txn *txn, enum sp op, const char *name, tu_query *q)
{
    tu_in_call++;
    q->id = op == SP_CREATE ? pgev_txn_savepoint(txn, name, tu_done_cb, q)
          : op == SP_RELEASE ? pgev_txn_release_savepoint(txn, name, tu_done_cb, q)
          : pgev_txn_rollback_to_savepoint(txn, name, tu_done_cb, q);
    tu_in_call--;
    return q->id;
}

/* Commit or rollback into q (its id becomes 1 when accepted, as batches). */
static int txend(pgev_txn *txn, bool commit, tu_query *q)
{
    tu_in_call++;
    int rc = commit ? pgev_txn_commit(txn, tu_done_cb, q) : pgev_txn_rollback(txn, tu_done_cb, q);
    tu_in_call--;
    q->is_batch = true;
    q->id = rc == PGEV_OK ? 1 : rc;
    return rc;
}

static void setup_table(const char *name)
{
    tu_exec("DROP TABLE IF EXISTS %s", name);
    tu_exec("CREATE TABLE %s (v int)", name);
}

static long count_rows(const char *sql)
{
    char *v = tu_exec_value("%s", sql);
    ck_assert_ptr_nonnull(v);
    long n = atol(v);
    free(v);
    return n;
}

/* Inside a transaction block a transaction id is assigned after a write;
 * outside one, after the statement's own implicit transaction, none is. */
#define IN_TXN_SQL "SELECT pg_current_xact_id_if_assigned() IS NOT NULL"

START_TEST(commit_happy_path)
{
    setup_table("t_commit");
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[5];
    memset(q, 0, sizeof q);
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "INSERT INTO t_commit VALUES (1)", &q[0]);
    const char *vals[1] = { "2" };
    tu_in_call++;
    q[1].id = pgev_txn_query_params(txn, "INSERT INTO t_commit VALUES ($1)", 1, vals, tu_done_cb, &q[1]);
    tu_in_call--;
    ck_assert_int_gt(q[1].id, 0);
    txq_ok(txn, IN_TXN_SQL, &q[2]);
    txq_ok(txn, "SELECT count(*) FROM t_commit", &q[3]);
    ck_assert_int_eq(txend(txn, true, &q[4]), PGEV_OK);
    tu_wait_queries(q, 5, TU_WAIT_MS);
    for (int i = 0; i < 5; i++)
        tu_assert_ok(&q[i]);
    ck_assert_str_eq(q[2].value, "t");
    ck_assert_str_eq(q[3].value, "2");
    ck_assert_str_eq(q[4].command, "COMMIT");
    for (int i = 1; i < 5; i++)
        ck_assert_int_gt(q[i].done_seq, q[i - 1].done_seq);
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_commit"), 2);
    /* The session is idle and usable. */
    ck_assert_int_eq(PQtransactionStatus(pgev_conn_pg(conn)), PQTRANS_IDLE);
    tu_query after;
    memset(&after, 0, sizeof after);
    ck_assert_int_gt(tu_query_sql(conn, IN_TXN_SQL, &after), 0);
    tu_wait_query(&after);
    tu_assert_ok(&after);
    ck_assert_str_eq(after.value, "f");
    pgev_conn_free(conn);
    tu_assert_all_once(q, 5);
}
END_TEST

START_TEST(options_reach_the_server)
{
    static const struct {
        pgev_txn_options o;
        const char *expect;
    } cases[] = {
        { { PGEV_ISOLATION_DEFAULT, false, false }, "read committed/off/off" },
        { { PGEV_ISOLATION_READ_COMMITTED, false, false }, "read committed/off/off" },
        { { PGEV_ISOLATION_REPEATABLE_READ, false, false }, "repeatable read/off/off" },
        { { PGEV_ISOLATION_SERIALIZABLE, false, false }, "serializable/off/off" },
        { { PGEV_ISOLATION_DEFAULT, true, false }, "read committed/on/off" },
        { { PGEV_ISOLATION_DEFAULT, false, true }, "read committed/off/on" },
        { { PGEV_ISOLATION_SERIALIZABLE, true, true }, "serializable/on/on" },
        { { PGEV_ISOLATION_REPEATABLE_READ, true, false }, "repeatable read/on/off" },
    };
    enum { N = sizeof cases / sizeof cases[0] };
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[2 * N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        pgev_txn *txn = begin(conn, &cases[i].o);
        txq_ok(txn, "SELECT current_setting('transaction_isolation') || '/' || "
                    "current_setting('transaction_read_only') || '/' || "
                    "current_setting('transaction_deferrable')", &q[2 * i]);
        ck_assert_int_eq(txend(txn, true, &q[2 * i + 1]), PGEV_OK);
    }
    tu_wait_queries(q, 2 * N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        tu_assert_ok(&q[2 * i]);
        tu_assert_ok(&q[2 * i + 1]);
        ck_assert_str_eq(q[2 * i].value, cases[i].expect);
    }
    /* An unknown isolation level is refused. */
    pgev_txn *txn = NULL;
    pgev_txn_options bad = { .isolation = (pgev_isolation)42 };
    ck_assert_int_eq(pgev_conn_begin(conn, &bad, &txn), PGEV_EINVAL);
    ck_assert_ptr_null(txn);
    ck_assert_msg(strstr(pgev_conn_errmsg(conn), "isolation") != NULL, "errmsg: %s", pgev_conn_errmsg(conn));
    pgev_conn_free(conn);
    tu_assert_all_once(q, 2 * N);
}
END_TEST

START_TEST(read_only_write_fails_and_commit_reports_it)
{
    setup_table("t_ro");
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[3];
    memset(q, 0, sizeof q);
    pgev_txn_options o = { .read_only = true };
    pgev_txn *txn = begin(conn, &o);
    txq_ok(txn, "INSERT INTO t_ro VALUES (1)", &q[0]);
    txq_ok(txn, "SELECT 1", &q[1]);
    ck_assert_int_eq(txend(txn, true, &q[2]), PGEV_OK);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    ck_assert_int_eq(q[0].status, PGEV_ESERVER);
    ck_assert_str_eq(q[0].sqlstate, "25006");
    ck_assert_int_eq(q[1].status, PGEV_EABORTED);
    ck_assert_int_eq(q[2].status, PGEV_EABORTED);
    ck_assert_str_eq(q[2].sqlstate, "25006");
    pgev_conn_free(conn);
    tu_assert_all_once(q, 3);
}
END_TEST

/* Queries submitted on the connection while a transaction is open wait,
 * in order, and run after its COMMIT. */
START_TEST(direct_submits_are_held_until_the_end)
{
    setup_table("t_held");
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[8];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'before'", &q[0]), 0);
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "INSERT INTO t_held VALUES (1)", &q[1]);
    ck_assert_int_gt(tu_query_sql(conn, IN_TXN_SQL, &q[2]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM t_held", &q[3]), 0);
    /* A held query whose deadline passes is never sent. */
    pgev_query_args args = { .sql = "INSERT INTO t_held VALUES (100)", .timeout_ms = 50 };
    ck_assert_int_gt(tu_submit(conn, &args, &q[4], false), 0);
    /* A held query can be cancelled. */
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO t_held VALUES (200)", &q[5]), 0);
    ck_assert_int_eq(pgev_conn_cancel(conn, q[5].id), PGEV_OK);
    ck_assert_int_ge(pgev_conn_pending(conn), 3);
    /* The transaction's own statements are not held behind them. */
    txq_ok(txn, "SELECT pg_sleep(0.3)", &q[6]);
    tu_wait_query(&q[6]);
    tu_assert_ok(&q[6]);
    ck_assert_int_eq(q[2].done_calls, 0);
    ck_assert_int_eq(q[3].done_calls, 0);
    tu_wait_query(&q[4]);
    ck_assert_int_eq(q[4].status, PGEV_ETIMEOUT);
    ck_assert_int_eq(q[5].status, PGEV_ECANCELLED);
    ck_assert_int_eq(txend(txn, true, &q[7]), PGEV_OK);
    tu_wait_queries(q, 8, TU_WAIT_MS);
    tu_assert_ok(&q[7]);
    /* They ran after COMMIT, outside the transaction, in order. */
    ck_assert_int_lt(q[0].done_seq, q[1].done_seq);
    ck_assert_int_lt(q[7].done_seq, q[2].done_seq);
    ck_assert_int_lt(q[2].done_seq, q[3].done_seq);
    tu_assert_ok(&q[2]);
    ck_assert_str_eq(q[2].value, "f");
    ck_assert_str_eq(q[3].value, "1");
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_held"), 1);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 8);
}
END_TEST

START_TEST(error_aborts_the_rest_and_commit_reports_it)
{
    setup_table("t_err");
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[7];
    memset(q, 0, sizeof q);
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "INSERT INTO t_err VALUES (1)", &q[0]);
    txq_ok(txn, "SELECT 1/0", &q[1]);
    txq_ok(txn, "INSERT INTO t_err VALUES (2)", &q[2]);
    txq_ok(txn, "SELECT 3", &q[3]);
    ck_assert_int_gt(txsp(txn, SP_CREATE, "late", &q[4]), 0);
    ck_assert_int_eq(txend(txn, true, &q[5]), PGEV_OK);
    tu_wait_queries(q, 6, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    ck_assert_int_eq(q[1].status, PGEV_ESERVER);
    ck_assert_str_eq(q[1].sqlstate, "22012");
    for (int i = 2; i <= 4; i++) {
        ck_assert_int_eq(q[i].status, PGEV_EABORTED);
        ck_assert_msg(!q[i].has_pg, "aborted query %d has a result", i);
        ck_assert_msg(strstr(q[i].message, "division by zero") != NULL, "message: %s", q[i].message);
    }
    ck_assert_int_eq(q[5].status, PGEV_EABORTED);
    ck_assert_str_eq(q[5].sqlstate, "22012");
    char want[64];
    snprintf(want, sizeof want, "query %lld failed", (long long)q[1].id);
    ck_assert_msg(strstr(q[5].message, want) != NULL, "commit message: %s", q[5].message);
    ck_assert_msg(strstr(q[5].message, "rolled back") != NULL, "commit message: %s", q[5].message);
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_err"), 0);
    /* Idle and usable. */
    ck_assert_int_gt(tu_query_sql(conn, IN_TXN_SQL, &q[6]), 0);
    tu_wait_query(&q[6]);
    tu_assert_ok(&q[6]);
    ck_assert_str_eq(q[6].value, "f");
    ck_assert_int_eq(PQtransactionStatus(pgev_conn_pg(conn)), PQTRANS_IDLE);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 7);
}
END_TEST

START_TEST(rollback_with_and_without_error)
{
    setup_table("t_rb");
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[6];
    memset(q, 0, sizeof q);
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "INSERT INTO t_rb VALUES (1)", &q[0]);
    ck_assert_int_eq(txend(txn, false, &q[1]), PGEV_OK);
    txn = begin(conn, NULL);    /* a new one may begin at once */
    txq_ok(txn, "INSERT INTO t_rb VALUES (2)", &q[2]);
    txq_ok(txn, "SELECT nope FROM nowhere", &q[3]);
    tu_wait_query(&q[3]);
    ck_assert_int_eq(q[3].status, PGEV_ESERVER);
    ck_assert_str_eq(q[3].sqlstate, "42P01");
    txq_ok(txn, "SELECT 1", &q[4]);
    ck_assert_int_eq(txend(txn, false, &q[5]), PGEV_OK);
    tu_wait_queries(q, 6, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    ck_assert_str_eq(q[1].command, "ROLLBACK");
    tu_assert_ok(&q[2]);
    ck_assert_int_eq(q[4].status, PGEV_EABORTED);
    tu_assert_ok(&q[5]);
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_rb"), 0);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 6);
}
END_TEST

static void call_after_commit(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)conn;
    (void)res;
    pgev_txn *txn = q->user;
    /* The handle is valid until this callback returns, and ended. */
    q->index = (int)pgev_txn_query(txn, "SELECT 1", NULL, NULL);
}

START_TEST(misuse_is_refused)
{
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[4];
    memset(q, 0, sizeof q);
    pgev_txn *txn = NULL;
    ck_assert_int_eq(pgev_conn_begin(NULL, NULL, &txn), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_begin(conn, NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_query(NULL, "SELECT 1", NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_submit(NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_commit(NULL, NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_rollback(NULL, NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_savepoint(NULL, "s", NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_rollback_to_savepoint(NULL, "s", NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_release_savepoint(NULL, "s", NULL, NULL), PGEV_EINVAL);
    ck_assert_ptr_null(pgev_txn_conn(NULL));

    txn = begin(conn, NULL);
    pgev_txn *second = NULL;
    ck_assert_int_eq(pgev_conn_begin(conn, NULL, &second), PGEV_ESTATE);
    ck_assert_ptr_null(second);
    ck_assert_int_eq(pgev_txn_submit(txn, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_query(txn, NULL, NULL, NULL), PGEV_EINVAL);
    char toolong[65];
    memset(toolong, 's', 64);
    toolong[64] = '\0';
    ck_assert_int_eq(pgev_txn_savepoint(txn, "", NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_savepoint(txn, NULL, NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_txn_savepoint(txn, toolong, NULL, NULL), PGEV_EINVAL);
    txq_ok(txn, "SELECT 1", &q[0]);
    q[1].on_done_hook = call_after_commit;
    q[1].user = txn;
    ck_assert_int_eq(txend(txn, true, &q[1]), PGEV_OK);
    /* Ended: everything is refused, the handle stays valid meanwhile. */
    ck_assert_int_eq(pgev_txn_commit(txn, NULL, NULL), PGEV_ECLOSED);
    ck_assert_msg(strstr(pgev_conn_errmsg(conn), "already") != NULL, "errmsg: %s", pgev_conn_errmsg(conn));
    ck_assert_int_eq(pgev_txn_rollback(txn, NULL, NULL), PGEV_ECLOSED);
    ck_assert_int_eq(pgev_txn_query(txn, "SELECT 2", NULL, NULL), PGEV_ECLOSED);
    ck_assert_int_eq(pgev_txn_savepoint(txn, "s", NULL, NULL), PGEV_ECLOSED);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    ck_assert_int_eq(q[1].index, PGEV_ECLOSED);

    /* No BEGIN inside an open atomic batch. */
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_eq(pgev_conn_begin(conn, NULL, &second), PGEV_ESTATE);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[2]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &q[3]), PGEV_OK);
    tu_wait_queries(q, 4, TU_WAIT_MS);
    tu_assert_ok(&q[3]);
    /* A closed connection refuses. */
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    ck_assert_int_eq(pgev_conn_begin(conn, NULL, &second), PGEV_ECLOSED);
    ck_assert_ptr_null(second);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 4);
}
END_TEST

START_TEST(savepoints)
{
    setup_table("t_sp");
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[11];
    memset(q, 0, sizeof q);
    const char *sp = "My \"save\" point";
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "INSERT INTO t_sp VALUES (1)", &q[0]);
    ck_assert_int_gt(txsp(txn, SP_CREATE, sp, &q[1]), 0);
    txq_ok(txn, "INSERT INTO t_sp VALUES (2)", &q[2]);
    txq_ok(txn, "SELECT 1/0", &q[3]);
    txq_ok(txn, "INSERT INTO t_sp VALUES (3)", &q[4]);
    ck_assert_int_gt(txsp(txn, SP_ROLLBACK_TO, sp, &q[5]), 0);
    txq_ok(txn, "INSERT INTO t_sp VALUES (4)", &q[6]);
    ck_assert_int_gt(txsp(txn, SP_RELEASE, sp, &q[7]), 0);
    /* A savepoint that does not exist: an error, which dooms it again. */
    ck_assert_int_gt(txsp(txn, SP_ROLLBACK_TO, "nope", &q[8]), 0);
    ck_assert_int_gt(txsp(txn, SP_ROLLBACK_TO, sp, &q[9]), 0);
    tu_wait_queries(q, 10, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    tu_assert_ok(&q[2]);
    ck_assert_int_eq(q[3].status, PGEV_ESERVER);
    ck_assert_int_eq(q[4].status, PGEV_EABORTED);
    tu_assert_ok(&q[5]);
    tu_assert_ok(&q[6]);
    tu_assert_ok(&q[7]);
    ck_assert_int_eq(q[8].status, PGEV_ESERVER);
    ck_assert_str_eq(q[8].sqlstate, "3B001");
    /* The released savepoint is gone: the server says so; still doomed. */
    ck_assert_int_ne(q[9].status, PGEV_OK);
    ck_assert_int_eq(txend(txn, true, &q[10]), PGEV_OK);
    tu_wait_query(&q[10]);
    ck_assert_int_eq(q[10].status, PGEV_EABORTED);
    ck_assert_str_eq(q[10].sqlstate, "3B001");
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_sp"), 0);

    /* The same, committed after the revival: rows 1 and 4 remain. */
    memset(q, 0, sizeof q);
    txn = begin(conn, NULL);
    txq_ok(txn, "INSERT INTO t_sp VALUES (1)", &q[0]);
    ck_assert_int_gt(txsp(txn, SP_CREATE, sp, &q[1]), 0);
    txq_ok(txn, "INSERT INTO t_sp VALUES (2)", &q[2]);
    txq_ok(txn, "SELECT 1/0", &q[3]);
    ck_assert_int_gt(txsp(txn, SP_ROLLBACK_TO, sp, &q[4]), 0);
    txq_ok(txn, "INSERT INTO t_sp VALUES (4)", &q[5]);
    ck_assert_int_eq(txend(txn, true, &q[6]), PGEV_OK);
    tu_wait_queries(q, 7, TU_WAIT_MS);
    ck_assert_int_eq(q[3].status, PGEV_ESERVER);
    tu_assert_ok(&q[4]);
    tu_assert_ok(&q[5]);
    tu_assert_ok(&q[6]);
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_sp"), 2);
    ck_assert_int_eq(count_rows("SELECT sum(v) FROM t_sp"), 5);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 7);
}
END_TEST

/* Each callback submits the next statement; results arrive before COMMIT. */
typedef struct interactive {
    pgev_txn *txn;
    tu_query q[4];
    int step_seen_without_commit;
} interactive;

static void next_step(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)conn;
    interactive *it = q->user;
    if (pgev_result_status(res) != PGEV_OK)
        return;
    if (q == &it->q[0] || q == &it->q[1]) {
        it->step_seen_without_commit++;
        char sql[300];
        snprintf(sql, sizeof sql, "SELECT %s + 1", q->value);
        tu_query *next = q + 1;
        next->user = it;
        next->on_done_hook = next_step;
        next->id = pgev_txn_query(it->txn, sql, tu_done_cb, next);
        ck_assert_int_gt(next->id, 0);
    } else if (q == &it->q[2]) {
        ck_assert_int_eq(pgev_txn_commit(it->txn, tu_done_cb, &it->q[3]), PGEV_OK);
        it->q[3].is_batch = true;
        it->q[3].id = 1;
    }
}

START_TEST(interactive_statements_from_callbacks)
{
    pgev_conn *conn = tu_connect(NULL);
    interactive it;
    memset(&it, 0, sizeof it);
    it.txn = begin(conn, NULL);
    it.q[0].user = &it;
    it.q[0].on_done_hook = next_step;
    txq_ok(it.txn, "SELECT 1", &it.q[0]);
    tu_wait_count(&it.q[3].done_calls, 1, TU_WAIT_MS, "the commit");
    ck_assert_int_eq(it.step_seen_without_commit, 2);
    tu_assert_ok(&it.q[0]);
    tu_assert_ok(&it.q[1]);
    tu_assert_ok(&it.q[2]);
    tu_assert_ok(&it.q[3]);
    ck_assert_str_eq(it.q[2].value, "3");
    ck_assert_int_eq(it.q[0].done_calls + it.q[1].done_calls + it.q[2].done_calls, 3);
    pgev_conn_free(conn);
}
END_TEST

/* Write skew under SERIALIZABLE: one of the two must fail with 40001. */
START_TEST(serialization_failure_surfaces_sqlstate)
{
    setup_table("t_ser");
    tu_exec("INSERT INTO t_ser VALUES (1), (2)");
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    tu_query q[6];
    memset(q, 0, sizeof q);
    pgev_txn_options o = { .isolation = PGEV_ISOLATION_SERIALIZABLE };
    pgev_txn *ta = begin(a, &o);
    pgev_txn *tb = begin(b, &o);
    txq_ok(ta, "SELECT sum(v) FROM t_ser", &q[0]);
    txq_ok(tb, "SELECT sum(v) FROM t_ser", &q[1]);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    txq_ok(ta, "INSERT INTO t_ser SELECT sum(v) FROM t_ser", &q[2]);
    tu_wait_query(&q[2]);
    txq_ok(tb, "INSERT INTO t_ser SELECT sum(v) FROM t_ser", &q[3]);
    tu_wait_query(&q[3]);
    ck_assert_int_eq(txend(ta, true, &q[4]), PGEV_OK);
    tu_wait_query(&q[4]);
    ck_assert_int_eq(txend(tb, true, &q[5]), PGEV_OK);
    tu_wait_queries(q, 6, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    bool a_ok = q[4].status == PGEV_OK;
    bool b_ok = q[5].status == PGEV_OK;
    ck_assert_msg(a_ok != b_ok, "commits: a %d (%s), b %d (%s)", q[4].status, q[4].message, q[5].status,
                  q[5].message);
    tu_query *failed = a_ok ? &q[5] : &q[4];
    ck_assert_str_eq(failed->sqlstate, "40001");
    ck_assert_msg(failed->status == PGEV_ESERVER || failed->status == PGEV_EABORTED, "status %d",
                  failed->status);
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_ser"), 3);
    pgev_conn_free(a);
    pgev_conn_free(b);
    tu_assert_all_once(q, 6);
}
END_TEST

START_TEST(connection_lost_mid_transaction)
{
    tu_connrec rec;
    memset(&rec, 0, sizeof rec);
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = tu_connect(&opts);
    int pid = PQbackendPID(pgev_conn_pg(conn));
    tu_query q[6];
    memset(q, 0, sizeof q);
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "SELECT pg_sleep(30)", &q[0]);
    txq_ok(txn, "SELECT 1", &q[1]);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'held'", &q[2]), 0);
    ck_assert_int_eq(txend(txn, true, &q[3]), PGEV_OK);     /* waits for q[0], q[1] */
    pgev_txn *t2 = begin(conn, NULL);
    txq_ok(t2, "SELECT 2", &q[4]);
    ck_assert_int_eq(txend(t2, false, &q[5]), PGEV_OK);     /* pipelined at once */
    tu_run_for(100);
    tu_exec("SELECT pg_terminate_backend(%d)", pid);
    tu_wait_queries(q, 6, TU_WAIT_MS);
    for (int i = 0; i < 6; i++)
        ck_assert_msg(q[i].status == PGEV_ECONNLOST, "query %d: status %d (%s)", i, q[i].status,
                      q[i].message);
    tu_wait_count(&rec.disconnect_calls, 1, TU_WAIT_MS, "on_disconnect");
    pgev_conn_free(conn);
    tu_assert_all_once(q, 6);
    tu_assert_base_idle();
}
END_TEST

START_TEST(free_with_open_transaction)
{
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[9];
    memset(q, 0, sizeof q);
    /* Never ended. */
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "SELECT pg_sleep(30)", &q[0]);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'held'", &q[1]), 0);
    tu_run_for(50);
    pgev_conn_free(conn);
    ck_assert_int_eq(q[0].status, PGEV_ECANCELLED);
    ck_assert_int_eq(q[1].status, PGEV_ECANCELLED);
    tu_assert_base_idle();

    /* Commit requested, waiting for the statements. */
    conn = tu_connect(NULL);
    txn = begin(conn, NULL);
    txq_ok(txn, "SELECT pg_sleep(30)", &q[2]);
    txq_ok(txn, "SELECT 1", &q[3]);
    ck_assert_int_eq(txend(txn, true, &q[4]), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'held'", &q[5]), 0);
    tu_run_for(50);
    pgev_conn_free(conn);
    for (int i = 2; i <= 5; i++)
        ck_assert_msg(q[i].status == PGEV_ECANCELLED, "query %d: status %d", i, q[i].status);

    /* Freed before it even connected. */
    conn = tu_conn_new(tu_dsn(), NULL);
    txn = begin(conn, NULL);
    txq_ok(txn, "SELECT 1", &q[6]);
    ck_assert_int_eq(txend(txn, false, &q[7]), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[8]), 0);
    pgev_conn_free(conn);
    for (int i = 6; i <= 8; i++)
        ck_assert_msg(q[i].status == PGEV_ECANCELLED, "query %d: status %d", i, q[i].status);
    tu_assert_all_once(q, 9);
    tu_assert_base_idle();
}
END_TEST

static void free_conn_hook(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)res;
    (void)q;
    pgev_conn_free(conn);
}

START_TEST(free_from_a_transaction_callback)
{
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[5];
    memset(q, 0, sizeof q);
    pgev_txn *txn = begin(conn, NULL);
    q[0].on_done_hook = free_conn_hook;
    txq_ok(txn, "SELECT 1", &q[0]);
    txq_ok(txn, "SELECT pg_sleep(30)", &q[1]);
    txq_ok(txn, "SELECT 3", &q[2]);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'held'", &q[3]), 0);
    ck_assert_int_eq(txend(txn, true, &q[4]), PGEV_OK);
    tu_wait_queries(q, 5, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    for (int i = 1; i < 5; i++)
        ck_assert_msg(q[i].status == PGEV_ECANCELLED, "query %d: status %d", i, q[i].status);
    tu_assert_all_once(q, 5);
    tu_assert_base_idle();
}
END_TEST

/* A graceful close lets the open transaction finish, then the held
 * queries, then closes. */
static void more_after_close(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)conn;
    (void)res;
    pgev_txn *txn = q->user;
    tu_query *rest = q + 1;
    rest[0].id = pgev_txn_query(txn, "INSERT INTO t_close VALUES (2)", tu_done_cb, &rest[0]);
    ck_assert_int_gt(rest[0].id, 0);
    ck_assert_int_eq(pgev_txn_commit(txn, tu_done_cb, &rest[1]), PGEV_OK);
    rest[1].is_batch = true;
    rest[1].id = 1;
}

START_TEST(close_drains_the_open_transaction)
{
    setup_table("t_close");
    tu_connrec rec;
    memset(&rec, 0, sizeof rec);
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = tu_connect(&opts);
    tu_query q[5];
    memset(q, 0, sizeof q);
    pgev_txn *txn = begin(conn, NULL);
    q[0].user = txn;
    q[0].on_done_hook = more_after_close;
    txq_ok(txn, "INSERT INTO t_close VALUES (1)", &q[0]);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM t_close", &q[3]), 0);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    pgev_txn *other = NULL;
    ck_assert_int_eq(pgev_conn_begin(conn, NULL, &other), PGEV_ECLOSED);
    ck_assert_int_eq(pgev_conn_query(conn, "SELECT 1", NULL, NULL), PGEV_ECLOSED);
    tu_wait_count(&rec.disconnect_calls, 1, TU_WAIT_MS, "the close");
    ck_assert_int_eq(rec.disconnect_code, PGEV_OK);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    tu_assert_ok(&q[2]);
    tu_assert_ok(&q[3]);
    ck_assert_str_eq(q[3].value, "2");
    ck_assert_int_lt(q[2].done_seq, q[3].done_seq);
    ck_assert_int_lt(q[3].done_seq, rec.disconnect_seq);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CLOSED);
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_close"), 2);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 4);
}
END_TEST

START_TEST(cancel_a_transaction_query)
{
    setup_table("t_cancel");
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[6];
    memset(q, 0, sizeof q);
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "INSERT INTO t_cancel VALUES (1)", &q[0]);
    txq_ok(txn, "SELECT pg_sleep(30)", &q[1]);
    txq_ok(txn, "INSERT INTO t_cancel VALUES (2)", &q[2]);
    ck_assert_int_eq(txend(txn, true, &q[3]), PGEV_OK);
    tu_wait_query(&q[0]);
    tu_run_for(100);
    ck_assert_int_eq(pgev_conn_cancel(conn, q[1].id), PGEV_OK);
    tu_wait_queries(q, 4, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    ck_assert_int_eq(q[1].status, PGEV_ECANCELLED);
    ck_assert_int_eq(q[2].status, PGEV_EABORTED);
    ck_assert_int_eq(q[3].status, PGEV_EABORTED);
    char want[64];
    snprintf(want, sizeof want, "query %lld failed", (long long)q[1].id);
    ck_assert_msg(strstr(q[3].message, want) != NULL, "commit message: %s", q[3].message);
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_cancel"), 0);
    ck_assert_int_gt(tu_query_sql(conn, IN_TXN_SQL, &q[4]), 0);
    tu_wait_query(&q[4]);
    tu_assert_ok(&q[4]);
    ck_assert_str_eq(q[4].value, "f");
    /* Cancelling a statement still queued behind another. */
    txn = begin(conn, NULL);
    ck_assert_int_eq(pgev_conn_cancel(conn, txq_ok(txn, "SELECT 1", &q[5])), PGEV_OK);
    tu_wait_query(&q[5]);
    ck_assert_int_eq(q[5].status, PGEV_ECANCELLED);
    tu_query end;
    memset(&end, 0, sizeof end);
    ck_assert_int_eq(txend(txn, true, &end), PGEV_OK);
    tu_wait_query(&end);
    ck_assert_int_eq(end.status, PGEV_EABORTED);
    ck_assert_str_eq(end.command, "");
    pgev_conn_free(conn);
    tu_assert_all_once(q, 6);
}
END_TEST

START_TEST(timeout_aborts_the_transaction)
{
    setup_table("t_timeout");
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[5];
    memset(q, 0, sizeof q);
    pgev_txn *txn = begin(conn, NULL);
    txq_ok(txn, "INSERT INTO t_timeout VALUES (1)", &q[0]);
    pgev_query_args args = { .sql = "SELECT pg_sleep(30)", .timeout_ms = 200 };
    txsubmit(txn, &args, &q[1]);
    txq_ok(txn, "INSERT INTO t_timeout VALUES (2)", &q[2]);
    ck_assert_int_eq(txend(txn, true, &q[3]), PGEV_OK);
    tu_wait_queries(q, 4, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    ck_assert_int_eq(q[1].status, PGEV_ETIMEOUT);
    ck_assert_int_eq(q[2].status, PGEV_EABORTED);
    ck_assert_int_eq(q[3].status, PGEV_EABORTED);
    ck_assert_msg(strstr(q[3].message, "timed out") != NULL, "commit message: %s", q[3].message);
    ck_assert_int_eq(count_rows("SELECT count(*) FROM t_timeout"), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 5", &q[4]), 0);
    tu_wait_query(&q[4]);
    tu_assert_ok(&q[4]);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 5);
}
END_TEST

static Suite *txn_suite(void)
{
    Suite *s = suite_create("txn");
    TCase *tc = tu_tcase("basics", 60);
    tcase_add_test(tc, commit_happy_path);
    tcase_add_test(tc, options_reach_the_server);
    tcase_add_test(tc, read_only_write_fails_and_commit_reports_it);
    tcase_add_test(tc, direct_submits_are_held_until_the_end);
    tcase_add_test(tc, misuse_is_refused);
    tcase_add_test(tc, interactive_statements_from_callbacks);
    suite_add_tcase(s, tc);
    tc = tu_tcase("failures", 60);
    tcase_add_test(tc, error_aborts_the_rest_and_commit_reports_it);
    tcase_add_test(tc, rollback_with_and_without_error);
    tcase_add_test(tc, savepoints);
    tcase_add_test(tc, serialization_failure_surfaces_sqlstate);
    tcase_add_test(tc, cancel_a_transaction_query);
    tcase_add_test(tc, timeout_aborts_the_transaction);
    suite_add_tcase(s, tc);
    tc = tu_tcase("teardown", 60);
    tcase_add_test(tc, connection_lost_mid_transaction);
    tcase_add_test(tc, free_with_open_transaction);
    tcase_add_test(tc, free_from_a_transaction_callback);
    tcase_add_test(tc, close_drains_the_open_transaction);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(txn_suite());
}
