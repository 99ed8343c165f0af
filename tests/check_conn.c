/*
 * Connection tests: connecting, every way connecting fails, queries queued
 * while connecting, notices, and the accessors. Needs PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static bool connect_reported(void *arg)
{
    return ((tu_connrec *)arg)->connect_calls > 0;
}

static void wait_on_connect(tu_connrec *rec)
{
    tu_run_until(connect_reported, rec, TU_WAIT_MS, "on_connect");
}

START_TEST(connect_success)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = tu_conn_new(tu_dsn(), &opts);
    ck_assert_ptr_nonnull(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CONNECTING);
    ck_assert_int_eq(rec.connect_calls, 0);
    ck_assert_ptr_eq(pgev_conn_base(conn), tu_base);
    ck_assert_ptr_null(pgev_conn_error(conn));

    wait_on_connect(&rec);
    ck_assert_msg(rec.connect_code == PGEV_OK, "on_connect error %d: %s", rec.connect_code,
                  rec.connect_msg);
    ck_assert_int_eq(rec.connect_state, PGEV_CONN_READY);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    ck_assert_ptr_null(pgev_conn_error(conn));
    ck_assert_str_eq(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(pgev_conn_pending(conn), 0);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);

    /* Read-only inspection through libpq. */
    PGconn *pg = pgev_conn_pg(conn);
    ck_assert_ptr_nonnull(pg);
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    ck_assert_int_eq(PQpipelineStatus(pg), PQ_PIPELINE_ON);
    ck_assert_int_gt(PQbackendPID(pg), 0);
    ck_assert_int_ge(PQserverVersion(pg), 90600);
    ck_assert_ptr_nonnull(PQparameterStatus(pg, "server_encoding"));
    ck_assert_ptr_eq(pgev_conn_base(conn), tu_base);

    /* And it runs queries. */
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.value, "1");

    pgev_conn_free(conn);
    ck_assert_int_eq(rec.connect_calls, 1);
    ck_assert_int_eq(rec.disconnect_calls, 0); /* free never calls on_disconnect */
    tu_assert_all_once(&q, 1);
    tu_assert_base_idle();
}
END_TEST

START_TEST(connect_without_options)
{
    pgev_conn *conn = tu_connect(NULL);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    pgev_conn_free(conn);
    tu_assert_base_idle();
}
END_TEST

/* Submits n queries that cannot run yet; returns how many were accepted. */
static void submit_some(pgev_conn *conn, tu_query *q, int n)
{
    for (int i = 0; i < n; i++) {
        q[i].index = i;
        int64_t id = tu_query_sql(conn, "SELECT 1", &q[i]);
        ck_assert_msg(id > 0, "submit while connecting: %s (%s)", pgev_strerror((int)id),
                      pgev_conn_errmsg(conn));
    }
}

static void assert_all_status(const tu_query *q, int n, int status)
{
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(q[i].done_calls, 1);
        ck_assert_msg(q[i].status == status, "query %d: status %s (%d), expected %s", i,
                      pgev_strerror(q[i].status), q[i].status, pgev_strerror(status));
        ck_assert_msg(!q[i].has_pg, "query %d: PGresult without a connection", i);
        ck_assert_str_ne(q[i].message, "");
    }
}

/* After a failed connect: state FAILED, error set, submits refused. */
static void assert_failed_conn(pgev_conn *conn, int code)
{
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    const pgev_error *err = pgev_conn_error(conn);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(pgev_error_code(err), code);
    ck_assert_str_ne(pgev_error_message(err), "");
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");

    tu_query late = { 0 };
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &late), PGEV_ECLOSED);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    tu_run_for(50);
    ck_assert_int_eq(late.done_calls, 0);
}

START_TEST(connect_malformed_conninfo)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = tu_conn_new("not a conninfo ===", &opts);
    ck_assert_msg(conn != NULL, "a malformed conninfo is reported through on_connect, not NULL");
    /* Known at once (the message), reported from the loop. The state may
     * stay CONNECTING until then, so that queries submitted at once are
     * accepted and fail with ECONNECT like for any other failed connect. */
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(rec.connect_calls, 0);
    pgev_connection_state st = pgev_conn_state(conn);
    ck_assert(st == PGEV_CONN_CONNECTING || st == PGEV_CONN_FAILED);
    tu_query early = { 0 };
    int64_t id = tu_query_sql(conn, "SELECT 1", &early);
    if (st == PGEV_CONN_FAILED)
        ck_assert_int_eq(id, PGEV_ECLOSED);
    else
        ck_assert_int_gt(id, 0);

    wait_on_connect(&rec);
    if (id > 0) {
        tu_wait_query(&early);
        assert_all_status(&early, 1, PGEV_ECONNECT);
    }
    ck_assert_int_eq(rec.connect_code, PGEV_ECONNECT);
    ck_assert_int_eq(rec.connect_state, PGEV_CONN_FAILED);
    ck_assert_str_ne(rec.connect_msg, "");
    assert_failed_conn(conn, PGEV_ECONNECT);
    ck_assert_int_eq(rec.disconnect_calls, 0); /* never was up */

    pgev_conn_free(conn);
    ck_assert_int_eq(rec.connect_calls, 1);
    tu_assert_all_once(&early, 1);
    tu_assert_base_idle();
}
END_TEST

START_TEST(connect_malformed_uri)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = tu_conn_new("postgresql://[::1:5432/x", &opts);
    ck_assert_ptr_nonnull(conn);
    wait_on_connect(&rec);
    ck_assert_int_eq(rec.connect_code, PGEV_ECONNECT);
    assert_failed_conn(conn, PGEV_ECONNECT);
    pgev_conn_free(conn);
    tu_assert_base_idle();
}
END_TEST

START_TEST(connect_refused_fails_queued_queries)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d dbname=pgev user=pgev sslmode=disable gssencmode=disable",
             tu_closed_port());
    pgev_conn *conn = tu_conn_new(conninfo, &opts);
    ck_assert_ptr_nonnull(conn);

    enum { N = 5 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    submit_some(conn, q, N);
    ck_assert_int_eq(pgev_conn_pending(conn), N);

    wait_on_connect(&rec);
    tu_wait_queries(q, N, TU_WAIT_MS);
    ck_assert_int_eq(rec.connect_code, PGEV_ECONNECT);
    ck_assert_int_eq(rec.connect_state, PGEV_CONN_FAILED);
    ck_assert_str_ne(rec.connect_msg, "");
    assert_all_status(q, N, PGEV_ECONNECT);
    for (int i = 1; i < N; i++)
        ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    assert_failed_conn(conn, PGEV_ECONNECT);
    ck_assert_int_eq(pgev_conn_pending(conn), 0);
    ck_assert_int_eq(rec.disconnect_calls, 0);

    pgev_conn_free(conn);
    tu_assert_all_once(q, N);
    tu_assert_base_idle();
}
END_TEST

START_TEST(connect_wrong_database)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    char *conninfo = tu_dsn_with("dbname", "pgev_no_such_db");
    pgev_conn *conn = tu_conn_new(conninfo, &opts);
    free(conninfo);
    ck_assert_ptr_nonnull(conn);
    tu_query q[2];
    memset(q, 0, sizeof q);
    submit_some(conn, q, 2);

    wait_on_connect(&rec);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    ck_assert_int_eq(rec.connect_code, PGEV_ECONNECT);
    /* The server's own message. */
    ck_assert_msg(strstr(rec.connect_msg, "pgev_no_such_db") != NULL &&
                      strstr(rec.connect_msg, "does not exist") != NULL,
                  "on_connect message lacks the server's reason: \"%s\"", rec.connect_msg);
    ck_assert_msg(strchr(rec.connect_msg, '\n') == NULL, "message has a newline: \"%s\"",
                  rec.connect_msg);
    assert_all_status(q, 2, PGEV_ECONNECT);
    assert_failed_conn(conn, PGEV_ECONNECT);
    pgev_conn_free(conn);
    tu_assert_base_idle();
}
END_TEST

START_TEST(connect_wrong_user)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    char *base = tu_dsn_with("user", "pgev_no_such_user");
    size_t size = strlen(base) + 64;
    char *conninfo = malloc(size);
    ck_assert_ptr_nonnull(conninfo);
    snprintf(conninfo, size, "%s password=sekrit-pw-4711", base);
    free(base);
    pgev_conn *conn = tu_conn_new(conninfo, &opts);
    free(conninfo);
    ck_assert_ptr_nonnull(conn);

    wait_on_connect(&rec);
    ck_assert_int_eq(rec.connect_code, PGEV_ECONNECT);
    /* Trust auth says the role does not exist; password auth says the
     * authentication failed. Either way it is the server's reason. */
    ck_assert_msg(strstr(rec.connect_msg, "pgev_no_such_user") != NULL ||
                      strstr(rec.connect_msg, "authentication") != NULL ||
                      strstr(rec.connect_msg, "password") != NULL,
                  "on_connect message lacks the server's reason: \"%s\"", rec.connect_msg);
    ck_assert_msg(strstr(rec.connect_msg, "sekrit-pw-4711") == NULL,
                  "the password appears in the error message");
    ck_assert_msg(strstr(pgev_conn_errmsg(conn), "sekrit-pw-4711") == NULL,
                  "the password appears in pgev_conn_errmsg");
    assert_failed_conn(conn, PGEV_ECONNECT);
    pgev_conn_free(conn);
    tu_assert_base_idle();
}
END_TEST

START_TEST(connect_timeout_option)
{
    int port;
    int listener = tu_listen_blackhole(&port);
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { .connect_timeout_ms = 300 };
    tu_conn_opts(&opts, &rec);
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=pgev user=pgev", port);
    double start = now_ms();
    pgev_conn *conn = tu_conn_new(conninfo, &opts);
    ck_assert_ptr_nonnull(conn);
    tu_query q[3];
    memset(q, 0, sizeof q);
    submit_some(conn, q, 3);

    wait_on_connect(&rec);
    double elapsed = now_ms() - start;
    ck_assert_msg(rec.connect_code == PGEV_ETIMEOUT, "on_connect: %s (%d) \"%s\"",
                  pgev_strerror(rec.connect_code), rec.connect_code, rec.connect_msg);
    ck_assert_msg(elapsed >= 250 && elapsed < 5000, "timed out after %.0f ms, expected ~300",
                  elapsed);
    ck_assert_int_eq(rec.connect_state, PGEV_CONN_FAILED);
    ck_assert_str_ne(rec.connect_msg, "");
    tu_wait_queries(q, 3, TU_WAIT_MS);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(q[i].status == PGEV_ECONNECT || q[i].status == PGEV_ETIMEOUT,
                      "queued query %d: %s", i, pgev_strerror(q[i].status));
    assert_failed_conn(conn, PGEV_ETIMEOUT);
    pgev_conn_free(conn);
    close(listener);
    tu_assert_all_once(q, 3);
    tu_assert_base_idle();
}
END_TEST

START_TEST(connect_timeout_from_conninfo)
{
    int port;
    int listener = tu_listen_blackhole(&port);
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d dbname=pgev user=pgev connect_timeout=1", port);
    double start = now_ms();
    pgev_conn *conn = tu_conn_new(conninfo, &opts);
    ck_assert_ptr_nonnull(conn);
    wait_on_connect(&rec);
    double elapsed = now_ms() - start;
    ck_assert_msg(rec.connect_code == PGEV_ETIMEOUT, "on_connect: %s \"%s\"",
                  pgev_strerror(rec.connect_code), rec.connect_msg);
    /* libpq itself treats connect_timeout below 2 s as 2 s; allow either. */
    ck_assert_msg(elapsed >= 900 && elapsed < 8000, "timed out after %.0f ms, expected 1-2 s",
                  elapsed);
    pgev_conn_free(conn);
    close(listener);
    tu_assert_base_idle();
}
END_TEST

START_TEST(queries_queued_while_connecting)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = tu_conn_new(tu_dsn(), &opts);
    ck_assert_ptr_nonnull(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CONNECTING);
    enum { N = 20 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    char sql[N][32];
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        snprintf(sql[i], sizeof sql[i], "SELECT %d", i);
        ck_assert_int_gt(tu_query_sql(conn, sql[i], &q[i]), 0);
    }
    ck_assert_int_eq(pgev_conn_pending(conn), N);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);
    tu_wait_queries(q, N, TU_WAIT_MS);
    ck_assert_int_eq(rec.connect_calls, 1);
    ck_assert_int_eq(rec.connect_code, PGEV_OK);
    for (int i = 0; i < N; i++) {
        tu_assert_ok(&q[i]);
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        ck_assert_str_eq(q[i].value, want);
        ck_assert_int_lt(rec.connect_seq, q[i].done_seq);
        if (i > 0)
            ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    }
    ck_assert_int_eq(pgev_conn_pending(conn), 0);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);
    pgev_conn_free(conn);
    tu_assert_all_once(q, N);
    tu_assert_base_idle();
}
END_TEST

START_TEST(null_arguments)
{
    ck_assert_ptr_null(pgev_conn_new(NULL, tu_dsn(), NULL));
    ck_assert_ptr_null(pgev_conn_new(tu_base, NULL, NULL));
    pgev_conn *conn = tu_connect(NULL);
    tu_query q[4];
    memset(q, 0, sizeof q);
    tu_in_call++;
    ck_assert_int_eq(pgev_conn_submit(conn, NULL), PGEV_EINVAL);
    tu_in_call--;
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(tu_query_sql(conn, NULL, &q[0]), PGEV_EINVAL);
    ck_assert_int_eq(tu_prepare(conn, NULL, "SELECT 1", 0, NULL, &q[1]), PGEV_EINVAL);
    ck_assert_int_eq(tu_execute(conn, NULL, 0, NULL, &q[2]), PGEV_EINVAL);
    /* The connection is unaffected. */
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 3", &q[3]), 0);
    tu_wait_query(&q[3]);
    tu_assert_ok(&q[3]);
    ck_assert_str_eq(q[3].value, "3");
    pgev_conn_free(conn);
    tu_assert_all_once(q, 4);
    tu_assert_base_idle();
}
END_TEST

static tu_connrec *notice_rec;

static void notice_seen_before_done(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)conn;
    (void)res;
    ck_assert_msg(notice_rec->notice_calls == q->index,
                  "on_done ran with %d notices delivered, expected %d", notice_rec->notice_calls,
                  q->index);
}

START_TEST(notices_delivered)
{
    tu_connrec rec = { 0 };
    notice_rec = &rec;
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = tu_connect(&opts);
    tu_query q[3];
    memset(q, 0, sizeof q);
    q[0].index = 1;
    q[0].on_done_hook = notice_seen_before_done;
    ck_assert_int_gt(
        tu_query_sql(conn, "DO $$ BEGIN RAISE NOTICE 'pgev-notice-hi'; END $$", &q[0]), 0);
    tu_wait_query(&q[0]);
    tu_assert_ok(&q[0]);
    ck_assert_int_eq(rec.notice_calls, 1);
    ck_assert_str_eq(rec.notice_msg, "pgev-notice-hi");
    ck_assert_str_eq(rec.notice_severity, "NOTICE");
    ck_assert_str_eq(rec.notice_sqlstate, "00000");

    q[1].index = 2;
    q[1].on_done_hook = notice_seen_before_done;
    ck_assert_int_gt(tu_query_sql(conn, "DO $$ BEGIN RAISE WARNING 'pgev-warn'; END $$", &q[1]),
                     0);
    tu_wait_query(&q[1]);
    tu_assert_ok(&q[1]);
    ck_assert_int_eq(rec.notice_calls, 2);
    ck_assert_str_eq(rec.notice_msg, "pgev-warn");
    ck_assert_str_eq(rec.notice_severity, "WARNING");
    ck_assert_str_eq(rec.notice_sqlstate, "01000");

    /* A notice on a failing query is still a notice, and the error is not. */
    q[2].index = 3;
    q[2].on_done_hook = notice_seen_before_done;
    ck_assert_int_gt(tu_query_sql(conn,
                                  "DO $$ BEGIN RAISE NOTICE 'pgev-before-error'; "
                                  "RAISE EXCEPTION 'pgev-boom'; END $$",
                                  &q[2]),
                     0);
    tu_wait_query(&q[2]);
    ck_assert_int_eq(q[2].status, PGEV_ESERVER);
    ck_assert_str_eq(q[2].message, "pgev-boom");
    ck_assert_int_eq(rec.notice_calls, 3);
    ck_assert_str_eq(rec.notice_msg, "pgev-before-error");

    pgev_conn_free(conn);
    tu_assert_all_once(q, 3);
    tu_assert_base_idle();
}
END_TEST

START_TEST(notices_dropped_without_callback)
{
    char path[] = "/tmp/pgev-stderr-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);

    pgev_conn *conn = tu_connect(NULL);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn,
                                  "DO $$ BEGIN RAISE NOTICE 'pgev-silent-notice'; "
                                  "RAISE WARNING 'pgev-silent-warning'; END $$",
                                  &q),
                     0);
    tu_wait_query(&q);
    pgev_conn_free(conn);

    fflush(stderr);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    tu_assert_ok(&q);

    char buf[8192];
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    ck_assert_int_ge(got, 0);
    buf[got] = '\0';
    ck_assert_msg(strstr(buf, "pgev-silent") == NULL, "notice printed on stderr: \"%s\"", buf);
    tu_assert_base_idle();
}
END_TEST

START_TEST(several_connections_one_base)
{
    enum { CONNS = 4, PER = 200 };
    pgev_conn *conns[CONNS];
    tu_query *q = calloc(CONNS * PER, sizeof *q);
    ck_assert_ptr_nonnull(q);
    for (int c = 0; c < CONNS; c++)
        conns[c] = tu_conn_new(tu_dsn(), NULL);
    for (int i = 0; i < PER; i++) {
        for (int c = 0; c < CONNS; c++) {
            tu_query *qq = &q[c * PER + i];
            qq->index = c * PER + i;
            char sql[64];
            snprintf(sql, sizeof sql, "SELECT %d", qq->index);
            ck_assert_int_gt(tu_query_sql(conns[c], sql, qq), 0);
        }
    }
    tu_wait_queries(q, CONNS * PER, TU_WAIT_MS);
    for (int c = 0; c < CONNS; c++) {
        for (int i = 0; i < PER; i++) {
            tu_query *qq = &q[c * PER + i];
            tu_assert_ok(qq);
            ck_assert_int_eq(atoi(qq->value), qq->index);
            if (i > 0)
                ck_assert_int_lt(q[c * PER + i - 1].done_seq, qq->done_seq);
        }
        ck_assert_int_ne(PQbackendPID(pgev_conn_pg(conns[c])),
                         PQbackendPID(pgev_conn_pg(conns[(c + 1) % CONNS])));
    }
    for (int c = 0; c < CONNS; c++)
        pgev_conn_free(conns[c]);
    tu_assert_all_once(q, CONNS * PER);
    free(q);
    tu_assert_base_idle();
}
END_TEST

static Suite *conn_suite(void)
{
    Suite *s = suite_create("conn");
    TCase *tc = tu_tcase("connect", 60);
    tcase_add_test(tc, connect_success);
    tcase_add_test(tc, connect_without_options);
    tcase_add_test(tc, queries_queued_while_connecting);
    tcase_add_test(tc, null_arguments);
    tcase_add_test(tc, several_connections_one_base);
    suite_add_tcase(s, tc);

    tc = tu_tcase("connect_failures", 60);
    tcase_add_test(tc, connect_malformed_conninfo);
    tcase_add_test(tc, connect_malformed_uri);
    tcase_add_test(tc, connect_refused_fails_queued_queries);
    tcase_add_test(tc, connect_wrong_database);
    tcase_add_test(tc, connect_wrong_user);
    tcase_add_test(tc, connect_timeout_option);
    tcase_add_test(tc, connect_timeout_from_conninfo);
    suite_add_tcase(s, tc);

    tc = tu_tcase("notices", 60);
    tcase_add_test(tc, notices_delivered);
    tcase_add_test(tc, notices_dropped_without_callback);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(conn_suite());
}
