/*
 * check_outcome: what a completion says is what the server did.
 *
 * A query completes from its Sync segment's answer: a commit that fails
 * at the Sync (deferred constraints) is that query's error, never a lost
 * connection and never another query's; a connection lost before the
 * answer leaves the outcome unknown (PGEV_ECONNLOST, sent), never OK. An
 * atomic batch is all or nothing on every path (server error, cancel,
 * timeout), and completes with any window. Notifications keep their
 * place among results. Failing a long queue keeps the loop responsive,
 * and what could never be sent is refused up front.
 */
#include "testutil.h"

#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

static pgev_conn *conn;

static void
open_conn(const pgev_conn_options *opts)
{
    conn = tu_connect(opts);
}

static void
close_conn(void)
{
    pgev_conn_free(conn);
    conn = NULL;
}

/* The table's values in order, as "1,2" ("" when empty). */
static char *
table_values(const char *table)
{
    return tu_exec_value("SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM %s", table);
}

static void
assert_table(const char *table, const char *expected)
{
    char *v = table_values(table);
    ck_assert_msg(strcmp(v, expected) == 0, "%s holds {%s}, expected {%s}", table, v, expected);
    free(v);
}

/* ---- commit failures at the Sync ----------------------------------------- */

/* The case: the UPDATE's statement succeeds, its implicit
 * transaction fails to commit (deferred unique check). */
START_TEST(deferred_constraint_fails_the_query_not_the_connection)
{
    tu_exec("DROP TABLE IF EXISTS oc_d; CREATE TABLE oc_d (n int UNIQUE DEFERRABLE INITIALLY DEFERRED); "
            "INSERT INTO oc_d VALUES (1), (2)");
    open_conn(NULL);
    tu_query q[3];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "UPDATE oc_d SET n = 2 WHERE n = 1", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 42", &q[1]), 0);
    /* Prepared by the statement cache, the same again. */
    ck_assert_int_gt(tu_query_sql(conn, "UPDATE oc_d SET n = 2 WHERE n = 1", &q[2]), 0);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_assert_all_once(q, 3);
    ck_assert_int_eq(q[0].status, PGEV_ESERVER);
    ck_assert_str_eq(q[0].sqlstate, "23505");
    ck_assert_int_eq(q[0].sent, 1);
    tu_assert_ok(&q[1]);
    ck_assert_str_eq(q[1].value, "42");
    ck_assert_int_eq(q[2].status, PGEV_ESERVER);
    ck_assert_str_eq(q[2].sqlstate, "23505");
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    assert_table("oc_d", "1,2");

    /* A write that can commit still does. */
    tu_query ok = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "UPDATE oc_d SET n = 3 WHERE n = 1", &ok), 0);
    tu_wait_query(&ok);
    tu_assert_ok(&ok);
    ck_assert_str_eq(ok.command, "UPDATE 1");
    assert_table("oc_d", "2,3");
    close_conn();
}
END_TEST

/* Inside an atomic batch, the commit failure is every member's and the
 * batch's; nothing of the batch stays. */
START_TEST(deferred_constraint_fails_the_whole_batch)
{
    tu_exec("DROP TABLE IF EXISTS oc_b; CREATE TABLE oc_b (n int UNIQUE DEFERRABLE INITIALLY DEFERRED); "
            "INSERT INTO oc_b VALUES (1), (2)");
    open_conn(NULL);
    tu_query q[3], batch = { 0 };
    memset(q, 0, sizeof q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO oc_b VALUES (10)", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "UPDATE oc_b SET n = 2 WHERE n = 1", &q[1]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[2]), 0);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_wait_query(&batch);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(q[i].status, PGEV_ESERVER);
        ck_assert_str_eq(q[i].sqlstate, "23505");
    }
    ck_assert_int_eq(batch.status, PGEV_ESERVER);
    ck_assert_str_eq(batch.sqlstate, "23505");
    ck_assert_int_lt(q[1].done_seq, batch.done_seq);
    tu_assert_ok(&q[2]);
    assert_table("oc_b", "1,2");
    close_conn();
}
END_TEST

/* The backend (pid) runs a statement with this text. */
typedef struct running {
    int pid;
    const char *sql;
    const tu_query *batch;  /* stop waiting if it completed */
} running;

static bool
backend_runs(void *arg)
{
    const running *r = arg;
    if (r->batch && r->batch->done_calls)
        return true;
    char *n = tu_exec_value("SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active' "
                            "AND query = '%s'", r->pid, r->sql);
    bool yes = strcmp(n, "1") == 0;
    free(n);
    return yes;
}

/* tu_run_until() waits for loop events; the server's state is polled. */
static void
wait_running(running *r, const char *what)
{
    for (int i = 0; i < 500 && !backend_runs(r); i++) {
        struct timeval tick = { 0, 20000 };
        event_base_loopexit(tu_base, &tick);
        event_base_loop(tu_base, EVLOOP_ONCE);
    }
    ck_assert_msg(backend_runs(r), "timed out waiting for %s", what);
}

static void
must_exec(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQerrorMessage(pg));
    PQclear(r);
}

/* A serialization failure raised at commit (SSI, the second committer of
 * a read/write cycle): the batch and its members report 40001, and nothing
 * of the batch stays. */
START_TEST(serialization_failure_at_commit)
{
    tu_exec("DROP TABLE IF EXISTS oc_s; CREATE TABLE oc_s (k int, v int); INSERT INTO oc_s VALUES (1, 10), (2, 20)");
    open_conn(NULL);
    tu_query set = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SET default_transaction_isolation = serializable", &set), 0);
    tu_wait_query(&set);
    tu_assert_ok(&set);
    PGconn *other = PQconnectdb(tu_dsn());
    ck_assert_int_eq(PQstatus(other), CONNECTION_OK);
    must_exec(other, "BEGIN ISOLATION LEVEL SERIALIZABLE");
    must_exec(other, "SELECT sum(v) FROM oc_s WHERE k = 2");
    tu_query q[4], batch = { 0 };
    memset(q, 0, sizeof q);
    /* The batch reads k = 1, waits, writes k = 2, waits, then commits;
     * the other side writes k = 1 during the first wait and commits
     * during the second: the batch's commit is the second of the cycle. */
    static const char *const sqls[4] = { "SELECT sum(v) FROM oc_s WHERE k = 1", "SELECT pg_sleep(0.5)",
                                         "INSERT INTO oc_s VALUES (2, 1)", "SELECT pg_sleep(1)" };
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_int_gt(tu_query_sql(conn, sqls[i], &q[i]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    event_base_loop(tu_base, EVLOOP_NONBLOCK);
    running first = { PQbackendPID(pgev_conn_pg(conn)), sqls[1], &batch };
    wait_running(&first, "the batch's first wait");
    must_exec(other, "INSERT INTO oc_s VALUES (1, 1)");
    running second = { first.pid, sqls[3], &batch };
    wait_running(&second, "the batch's second wait");
    ck_assert_msg(!batch.done_calls, "the batch ended early: %s / %s %s", batch.message, q[2].sqlstate, q[2].message);
    must_exec(other, "COMMIT");
    PQfinish(other);
    tu_wait_queries(q, 4, TU_WAIT_MS);
    tu_wait_query(&batch);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(q[i].status, PGEV_ESERVER);
        ck_assert_str_eq(q[i].sqlstate, "40001");
    }
    ck_assert_int_eq(batch.status, PGEV_ESERVER);
    ck_assert_str_eq(batch.sqlstate, "40001");
    char *n = tu_exec_value("SELECT count(*) FROM oc_s WHERE k = 2 AND v = 1");
    ck_assert_str_eq(n, "0");
    free(n);
    close_conn();
}
END_TEST

/* Commit failures in a row with other queries between them: each one
 * stays with its own query, whatever the window. */
START_TEST(commit_failures_interleaved)
{
    tu_exec("DROP TABLE IF EXISTS oc_i; CREATE TABLE oc_i (n int UNIQUE DEFERRABLE INITIALLY DEFERRED); "
            "INSERT INTO oc_i VALUES (1), (2)");
    pgev_conn_options opts = { .max_inflight = 3 };
    open_conn(&opts);
    enum { N = 60 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        const char *sql = i % 3 == 0 ? "UPDATE oc_i SET n = 2 WHERE n = 1" : "SELECT 7";
        ck_assert_int_gt(tu_query_sql(conn, sql, &q[i]), 0);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    tu_assert_all_once(q, N);
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0) {
            ck_assert_int_eq(q[i].status, PGEV_ESERVER);
            ck_assert_str_eq(q[i].sqlstate, "23505");
        } else {
            tu_assert_ok(&q[i]);
        }
    }
    assert_table("oc_i", "1,2");
    close_conn();
}
END_TEST

/* ---- a lost connection never reads as success ----------------------------- */

static int
unread_bytes(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}

/* The answer is in the socket, unread, when the backend is terminated and
 * the application submits a large query: the first query reports either
 * its real result or an unknown outcome, never OK without a result. */
START_TEST(answered_then_killed_never_ok_without_result)
{
    static char big[8192];
    memset(big, 'x', sizeof big - 1);
    int ok = 0, lost = 0;
    for (int round = 0; round < 8; round++) {
        open_conn(NULL);
        tu_query q[2];
        memset(q, 0, sizeof q);
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[0]), 0);
        /* One turn: the query goes out; then wait, outside the loop, for
         * its answer to wait in the socket. */
        event_base_loop(tu_base, EVLOOP_NONBLOCK);
        int fd = PQsocket(pgev_conn_pg(conn));
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        for (int i = 0; i < 200 && unread_bytes(fd) <= 0 && q[0].done_calls == 0; i++)
            (void)poll(&pfd, 1, 10);
        if (q[0].done_calls == 0) {
            int backend = PQbackendPID(pgev_conn_pg(conn));
            tu_exec("SELECT pg_terminate_backend(%d)", backend);
            const char *values[1] = { big };
            q[1].index = 1;
            (void)tu_query_params(conn, "SELECT length($1)", 1, values, &q[1]);
        }
        tu_wait_queries(q, 2, TU_WAIT_MS);
        tu_assert_all_once(q, 2);
        if (q[0].status == PGEV_OK) {
            ck_assert_str_eq(q[0].command, "SELECT 1");
            ck_assert_str_eq(q[0].value, "1");
            ok++;
        } else {
            ck_assert_int_eq(q[0].status, PGEV_ECONNLOST);
            ck_assert_int_eq(q[0].sent, 1);
            lost++;
        }
        if (q[1].id > 0)
            ck_assert_int_ne(q[1].status, PGEV_OK);
        close_conn();
    }
    fprintf(stderr, "answered then killed: %d delivered, %d outcome unknown\n", ok, lost);
}
END_TEST

/* The pool under load while every backend is terminated, round after
 * round: every query completes once, and none is OK without its result. */
static int pool_done_count, pool_ok_without_result, pool_ok;

static void
pool_query_done(pgev_conn *c, pgev_result *res, void *arg)
{
    (void)c;
    (void)arg;
    pool_done_count++;
    if (pgev_result_status(res) == PGEV_OK) {
        pool_ok++;
        if (!pgev_result_pg(res) || PQntuples(pgev_result_pg(res)) != 1)
            pool_ok_without_result++;
    }
}

START_TEST(pool_backends_terminated_under_load)
{
    char *dsn = tu_dsn_with("application_name", "oc_pool");
    pgev_pool_options opts = { .min_conns = 4, .max_conns = 4 };
    pgev_pool *pool = pgev_pool_new(tu_base, dsn, &opts);
    free(dsn);
    ck_assert_ptr_nonnull(pool);
    pool_done_count = pool_ok_without_result = pool_ok = 0;
    int submitted = 0;
    for (int round = 0; round < 25; round++) {
        for (int i = 0; i < 200; i++) {
            tu_in_call++;
            int64_t id = pgev_pool_query(pool, "SELECT 1", pool_query_done, NULL);
            tu_in_call--;
            if (id > 0)
                submitted++;
        }
        event_base_loop(tu_base, EVLOOP_NONBLOCK);
        tu_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'oc_pool'");
        tu_wait_count(&pool_done_count, submitted, TU_WAIT_MS, "the round's queries");
    }
    ck_assert_int_eq(pool_done_count, submitted);
    ck_assert_int_eq(pool_ok_without_result, 0);
    ck_assert_int_gt(pool_ok, 0);
    pgev_pool_free(pool);
}
END_TEST

/* Killed while busy: what was sent has an unknown outcome (sent = 1), what
 * was still queued never ran (sent = 0). */
START_TEST(killed_busy_sent_and_unsent)
{
    pgev_conn_options opts = { .max_inflight = 2 };
    open_conn(&opts);
    int backend = PQbackendPID(pgev_conn_pg(conn));
    tu_query q[5];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT pg_sleep(30)", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    for (int i = 2; i < 5; i++)
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 3", &q[i]), 0);
    tu_run_for(100);
    tu_exec("SELECT pg_terminate_backend(%d)", backend);
    tu_wait_queries(q, 5, TU_WAIT_MS);
    tu_assert_all_once(q, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(q[i].status, PGEV_ECONNLOST);
        ck_assert_int_eq(q[i].sent, i < 2 ? 1 : 0);
    }
    close_conn();
}
END_TEST

/* ---- atomic batches: all or nothing ---------------------------------------- */

/* Held behind an open transaction, a batch member is cancelled: nothing
 * of the batch is sent, every member and the batch say so. */
START_TEST(batch_member_cancelled_while_held)
{
    tu_exec("DROP TABLE IF EXISTS oc_h; CREATE TABLE oc_h (n int)");
    open_conn(NULL);
    pgev_txn *txn = NULL;
    ck_assert_int_eq(pgev_conn_begin(conn, NULL, &txn), PGEV_OK);
    tu_query q[3], batch = { 0 }, commit = { .is_batch = true };
    memset(q, 0, sizeof q);
    /* Submitted on the connection while the transaction is open: held. */
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    for (int i = 0; i < 3; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "INSERT INTO oc_h VALUES (%d)", 5 + i);
        q[i].index = i;
        ck_assert_int_gt(tu_query_sql(conn, sql, &q[i]), 0);
    }
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_eq(pgev_conn_cancel(conn, q[1].id), PGEV_OK);
    ck_assert_int_eq(pgev_txn_commit(txn, tu_done_cb, &commit), PGEV_OK);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_wait_query(&batch);
    tu_wait_query(&commit);
    tu_assert_ok(&commit);
    ck_assert_int_eq(q[0].status, PGEV_EABORTED);
    ck_assert_int_eq(q[1].status, PGEV_ECANCELLED);
    ck_assert_int_eq(q[2].status, PGEV_EABORTED);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(q[i].sent, 0);
    ck_assert_int_eq(batch.status, PGEV_ECANCELLED);
    assert_table("oc_h", "");
    close_conn();
}
END_TEST

/* Cancelling every member of a batch already handed to libpq: whatever the
 * callbacks say, the table agrees with it. */
START_TEST(batch_cancelled_after_sending_matches_the_table)
{
    tu_exec("DROP TABLE IF EXISTS oc_c; CREATE TABLE oc_c (n int)");
    open_conn(NULL);
    tu_query q[3], batch = { 0 };
    memset(q, 0, sizeof q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    for (int i = 0; i < 3; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "INSERT INTO oc_c VALUES (%d)", i + 1);
        q[i].index = i;
        ck_assert_int_gt(tu_query_sql(conn, sql, &q[i]), 0);
    }
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    for (int i = 0; i < 3; i++)
        (void)pgev_conn_cancel(conn, q[i].id);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_wait_query(&batch);
    tu_assert_all_once(q, 3);
    if (batch.status == PGEV_OK) {
        for (int i = 0; i < 3; i++)
            tu_assert_ok(&q[i]);
        assert_table("oc_c", "1,2,3");
    } else {
        for (int i = 0; i < 3; i++)
            ck_assert_int_ne(q[i].status, PGEV_OK);
        assert_table("oc_c", "");
    }
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    close_conn();
}
END_TEST

/* A member is cancelled while the batch is still open and part of it is on
 * the wire: the batch cannot commit. */
START_TEST(batch_cancelled_while_open_rolls_back)
{
    tu_exec("DROP TABLE IF EXISTS oc_o; CREATE TABLE oc_o (n int)");
    open_conn(NULL);
    tu_query q[4], batch = { 0 };
    memset(q, 0, sizeof q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO oc_o VALUES (1)", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO oc_o VALUES (2)", &q[1]), 0);
    /* One loop turn: they go out. */
    event_base_loop(tu_base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(pgev_conn_cancel(conn, q[0].id), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO oc_o VALUES (3)", &q[2]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[3]), 0);
    tu_wait_queries(q, 4, TU_WAIT_MS);
    tu_wait_query(&batch);
    ck_assert_int_eq(q[0].status, PGEV_ECANCELLED);
    ck_assert_int_eq(q[1].status, PGEV_EABORTED);
    ck_assert_int_eq(q[2].status, PGEV_EABORTED);
    ck_assert_int_eq(q[2].sent, 0);
    ck_assert_int_eq(batch.status, PGEV_ECANCELLED);
    tu_assert_ok(&q[3]);
    assert_table("oc_o", "");
    close_conn();
}
END_TEST

/* A member's deadline passes while it runs: the server cancels it, the
 * batch is rolled back and reports the timeout. */
START_TEST(batch_member_timeout_rolls_back)
{
    tu_exec("DROP TABLE IF EXISTS oc_t; CREATE TABLE oc_t (n int)");
    open_conn(NULL);
    tu_query q[3], batch = { 0 };
    memset(q, 0, sizeof q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO oc_t VALUES (1)", &q[0]), 0);
    pgev_query_args slow = { .sql = "SELECT pg_sleep(10)", .timeout_ms = 200 };
    ck_assert_int_gt(tu_submit(conn, &slow, &q[1], false), 0);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO oc_t VALUES (2)", &q[2]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    tu_wait_queries(q, 3, 5000);
    tu_wait_query(&batch);
    ck_assert_int_eq(q[0].status, PGEV_EABORTED);
    ck_assert_int_eq(q[1].status, PGEV_ETIMEOUT);
    ck_assert_int_eq(q[2].status, PGEV_EABORTED);
    ck_assert_int_eq(batch.status, PGEV_ETIMEOUT);
    assert_table("oc_t", "");
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    close_conn();
}
END_TEST

static bool
conn_closed(void *arg)
{
    (void)arg;
    return pgev_conn_state(conn) == PGEV_CONN_CLOSED;
}

/* A batch with an early failure, longer than the window. */
START_TEST(batch_longer_than_window_with_early_failure)
{
    pgev_conn_options opts = { .max_inflight = 2 };
    open_conn(&opts);
    tu_query q[4], batch = { 0 }, after = { 0 };
    memset(q, 0, sizeof q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1/0", &q[0]), 0);
    for (int i = 1; i < 4; i++)
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 5", &after), 0);
    tu_wait_queries(q, 4, 10000);
    tu_wait_query(&batch);
    tu_wait_query(&after);
    ck_assert_int_eq(q[0].status, PGEV_ESERVER);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(q[i].status, PGEV_EABORTED);
    ck_assert_int_eq(batch.status, PGEV_ESERVER);
    tu_assert_ok(&after);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    tu_run_until(conn_closed, NULL, 5000, "the close");
    close_conn();
}
END_TEST

/* A successful batch longer than the window: the server is asked for the
 * results it holds back until the batch's Sync. */
START_TEST(batch_longer_than_window_succeeds)
{
    enum { N = 300 };
    for (int window = 1; window <= 3; window++) {
        pgev_conn_options opts = { .max_inflight = window };
        open_conn(&opts);
        static tu_query q[N];
        tu_query batch = { 0 };
        memset(q, 0, sizeof q);
        ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
        for (int i = 0; i < N; i++) {
            q[i].index = i;
            ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
        }
        ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
        tu_wait_queries(q, N, 10000);
        tu_wait_query(&batch);
        for (int i = 0; i < N; i++)
            tu_assert_ok(&q[i]);
        ck_assert_int_eq(batch.status, PGEV_OK);
        ck_assert_int_eq(tu_close(conn), PGEV_OK);
        tu_run_until(conn_closed, NULL, 5000, "the close");
        close_conn();
    }
}
END_TEST

/* With the default window, a failing batch far longer than it. */
START_TEST(long_batch_early_failure_default_window)
{
    enum { N = 2500 };
    open_conn(NULL);
    static tu_query q[N];
    tu_query batch = { 0 };
    memset(q, 0, sizeof q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        ck_assert_int_gt(tu_query_sql(conn, i == 3 ? "SELECT 1/0" : "SELECT 1", &q[i]), 0);
    }
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    tu_wait_queries(q, N, 10000);
    tu_wait_query(&batch);
    tu_assert_all_once(q, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(q[i].status, i < 3 ? PGEV_EABORTED : i == 3 ? PGEV_ESERVER : PGEV_EABORTED);
    ck_assert_int_eq(batch.status, PGEV_ESERVER);
    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    tu_run_until(conn_closed, NULL, 5000, "the close");
    close_conn();
}
END_TEST

/* The batch's on_done carries the server's whole message. */
START_TEST(batch_error_message_whole)
{
    open_conn(NULL);
    tu_query q = { 0 }, batch = { 0 };
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "DO $$BEGIN RAISE EXCEPTION '%', repeat('x', 2000); END$$", &q), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    tu_wait_query(&q);
    tu_wait_query(&batch);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_int_eq(batch.status, PGEV_ESERVER);
    ck_assert_uint_eq(q.message_len, 2000);
    ck_assert_uint_eq(batch.message_len, 2000);
    close_conn();
}
END_TEST

/* ---- notifications in wire order -------------------------------------------- */

static int notify_seq;

static void
on_notify(pgev_conn *c, const char *channel, const char *payload, int pid, void *arg)
{
    (void)c;
    (void)channel;
    (void)payload;
    (void)pid;
    (void)arg;
    notify_seq = ++tu_seq;
}

START_TEST(notification_before_results_comes_first)
{
    open_conn(NULL);
    tu_query listen = { 0 };
    tu_in_call++;
    listen.id = pgev_conn_listen(conn, "oc_chan", on_notify, tu_done_cb, &listen);
    tu_in_call--;
    ck_assert_int_gt(listen.id, 0);
    tu_wait_query(&listen);
    tu_assert_ok(&listen);
    int fd = PQsocket(pgev_conn_pg(conn));
    for (int round = 0; round < 20; round++) {
        notify_seq = 0;
        tu_exec("NOTIFY oc_chan, 'x'");
        /* Wait outside the loop until the notification is in the socket. */
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
        tu_query q = { 0 };
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q), 0);
        tu_wait_query(&q);
        tu_assert_ok(&q);
        ck_assert_msg(notify_seq > 0 && notify_seq < q.done_seq,
                      "round %d: notification at %d, query done at %d", round, notify_seq, q.done_seq);
    }
    close_conn();
}
END_TEST

/* ---- failing a long queue keeps the loop turning ------------------------------ */

static int ticks;
static int completions_at_tick;
static int completions;

static void
count_done(pgev_conn *c, pgev_result *res, void *arg)
{
    (void)c;
    (void)res;
    (void)arg;
    completions++;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (ticks++ == 0)
        completions_at_tick = completions;
}

START_TEST(failing_many_queries_yields_to_the_loop)
{
    enum { N = 20000 };
    pgev_conn_options opts = { .max_inflight = 1, .max_pending = N + 10 };
    open_conn(&opts);
    completions = ticks = completions_at_tick = 0;
    ck_assert_int_gt(pgev_conn_query(conn, "SELECT pg_sleep(30)", count_done, NULL), 0);
    for (int i = 1; i < N; i++)
        ck_assert_int_gt(pgev_conn_query(conn, "SELECT 1", count_done, NULL), 0);
    tu_run_for(50);
    int backend = PQbackendPID(pgev_conn_pg(conn));
    tu_exec("SELECT pg_terminate_backend(%d)", backend);
    /* Wait for the first failure, then arm a timer that must run before
     * the last one. */
    tu_wait_count(&completions, 1, TU_WAIT_MS, "the first failure");
    struct event *tick = evtimer_new(tu_base, on_tick, NULL);
    struct timeval zero = { 0, 0 };
    evtimer_add(tick, &zero);
    tu_wait_count(&completions, N, TU_WAIT_MS, "every failure");
    event_free(tick);
    ck_assert_int_ge(ticks, 1);
    ck_assert_msg(completions_at_tick < N, "the timer ran only after all %d failures", N);
    close_conn();
}
END_TEST

/* ---- no stale descriptor in the loop ----------------------------------------- */

static int bad_fd_warnings;

static void
libevent_log(int severity, const char *msg)
{
    (void)severity;
    if (strstr(msg, "Bad file descriptor") || strstr(msg, "epoll"))
        bad_fd_warnings++;
}

START_TEST(killed_connection_leaves_no_stale_descriptor)
{
    event_set_log_callback(libevent_log);
    bad_fd_warnings = 0;
    for (int round = 0; round < 6; round++) {
        open_conn(NULL);
        int backend = PQbackendPID(pgev_conn_pg(conn));
        tu_query q[3];
        memset(q, 0, sizeof q);
        ck_assert_int_gt(tu_query_sql(conn, round % 2 ? "SELECT pg_sleep(30)" : "SELECT 1", &q[0]), 0);
        tu_run_for(30);
        tu_exec("SELECT pg_terminate_backend(%d)", backend);
        /* Submits while libpq finds out: a write that fails, then reads. */
        static char big[70000];
        memset(big, 'y', sizeof big - 1);
        const char *values[1] = { big };
        (void)tu_query_params(conn, "SELECT length($1)", 1, values, &q[1]);
        (void)tu_query_sql(conn, "SELECT 2", &q[2]);
        tu_wait_queries(q, 3, TU_WAIT_MS);
        close_conn();
    }
    event_set_log_callback(NULL);
    ck_assert_int_eq(bad_fd_warnings, 0);
}
END_TEST

/* ---- what could never be sent is refused ------------------------------------- */

START_TEST(oversize_parameter_refused_up_front)
{
    open_conn(NULL);
    tu_query before = { 0 }, after = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'before'", &before), 0);
    /* Lengths only: pgev must refuse before reading the bytes. */
    static char small[16];
    const char *values[2] = { small, small };
    int lengths[2] = { 0x40000000, 16 };
    int formats[2] = { 1, 1 };
    pgev_query_args args = { .sql = "SELECT $1::bytea", .nparams = 1, .param_values = values,
                             .param_lengths = lengths, .param_formats = formats };
    tu_in_call++;
    int64_t id = pgev_conn_submit(conn, &args);
    tu_in_call--;
    ck_assert_int_eq(id, PGEV_EINVAL);
    ck_assert(strstr(pgev_conn_errmsg(conn), "too large") != NULL);
    /* Two parameters that only together pass the limit. */
    int lengths2[2] = { 0x20000000, 0x20000000 };
    args.nparams = 2;
    args.param_lengths = lengths2;
    tu_in_call++;
    id = pgev_conn_submit(conn, &args);
    tu_in_call--;
    ck_assert_int_eq(id, PGEV_EINVAL);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'after'", &after), 0);
    tu_wait_query(&before);
    tu_wait_query(&after);
    tu_assert_ok(&before);
    ck_assert_str_eq(before.value, "before");
    tu_assert_ok(&after);
    close_conn();
}
END_TEST

static Suite *
outcome_suite(void)
{
    Suite *s = suite_create("outcome");
    TCase *tc = tu_tcase("commit", 60);
    tcase_add_test(tc, deferred_constraint_fails_the_query_not_the_connection);
    tcase_add_test(tc, deferred_constraint_fails_the_whole_batch);
    tcase_add_test(tc, commit_failures_interleaved);
    tcase_add_test(tc, serialization_failure_at_commit);
    suite_add_tcase(s, tc);

    tc = tu_tcase("lost", 120);
    tcase_add_test(tc, answered_then_killed_never_ok_without_result);
    tcase_add_test(tc, killed_busy_sent_and_unsent);
    tcase_add_test(tc, pool_backends_terminated_under_load);
    tcase_add_test(tc, failing_many_queries_yields_to_the_loop);
    tcase_add_test(tc, killed_connection_leaves_no_stale_descriptor);
    suite_add_tcase(s, tc);

    tc = tu_tcase("batch", 60);
    tcase_add_test(tc, batch_member_cancelled_while_held);
    tcase_add_test(tc, batch_cancelled_after_sending_matches_the_table);
    tcase_add_test(tc, batch_cancelled_while_open_rolls_back);
    tcase_add_test(tc, batch_member_timeout_rolls_back);
    tcase_add_test(tc, batch_longer_than_window_with_early_failure);
    tcase_add_test(tc, batch_longer_than_window_succeeds);
    tcase_add_test(tc, long_batch_early_failure_default_window);
    tcase_add_test(tc, batch_error_message_whole);
    suite_add_tcase(s, tc);

    tc = tu_tcase("order", 60);
    tcase_add_test(tc, notification_before_results_comes_first);
    suite_add_tcase(s, tc);

    tc = tu_tcase("input", 30);
    tcase_add_test(tc, oversize_parameter_refused_up_front);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(outcome_suite());
}
