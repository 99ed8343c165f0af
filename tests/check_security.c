/*
 * Security: TLS with certificate and host name verification
 * (sslmode=verify-full against a throwaway CA), pipelined and streamed
 * queries over TLS, clear failures for a wrong CA and a wrong host name;
 * SCRAM-SHA-256 password authentication, right and wrong; and passwords
 * never showing up in pgev's error messages.
 *
 * The server side comes from `tests/pgcluster.sh ssl DIR` (run once by
 * main() below on the harness's cluster): a CA, a server certificate for
 * "localhost", ssl=on, a SCRAM user and a TLS-only user. Without the
 * harness's own cluster (PGEV_TEST_CLUSTER_DIR, PGEV_TEST_PGCLUSTER) the
 * TLS tests say "skipped" and return; the SCRAM tests still run against an
 * external server that asks passwords over TCP (one set up as
 * docker-compose.yml sets it up): main() creates the SCRAM user there with
 * a random password through the (superuser) PGEV_TEST_DSN and drops it at
 * the end; otherwise they say "skipped" too, with the reason.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define APP_NAME "pgev_security_test"

static char ca_path[512];
static char wrong_ca_path[512];
static char scram_password[128];
static bool ssl_ready;
static bool scram_ready;             /* pgev_scram exists, with scram_password */
static char scram_why[256] = "needs the harness's own cluster (pgev-testdb ssl) or a server asking passwords over TCP";

static bool
have_ssl(void)
{
    if (!ssl_ready)
        fprintf(stderr, "skipped: needs the harness's own cluster with TLS (pgev-testdb ssl)\n");
    return ssl_ready;
}

static bool
have_scram(void)
{
    if (!scram_ready)
        fprintf(stderr, "skipped: %s\n", scram_why);
    return scram_ready;
}

/* PGEV_TEST_DSN_TCP with extra keywords (later keywords win in libpq). */
static char *
dsn_with(const char *extra)
{
    char *dsn = NULL;
    ck_assert_int_gt(asprintf(&dsn, "%s application_name=%s %s", getenv("PGEV_TEST_DSN_TCP"),
                              APP_NAME, extra),
                     0);
    return dsn;
}

/* Starts connecting with `extra` keywords and waits until it is decided. */
static pgev_conn *
open_conn(const char *extra, tu_connrec *rec)
{
    pgev_conn_options opts = { .connect_timeout_ms = 15000 };
    tu_conn_opts(&opts, rec);
    char *dsn = dsn_with(extra);
    pgev_conn *conn = tu_conn_new(dsn, &opts);
    free(dsn);
    ck_assert_ptr_nonnull(conn);
    tu_wait_connected(conn);
    ck_assert_int_eq(rec->connect_calls, 1);
    return conn;
}

static void
assert_ready(pgev_conn *conn, const tu_connrec *rec)
{
    ck_assert_msg(pgev_conn_state(conn) == PGEV_CONN_READY && rec->connect_code == PGEV_OK,
                  "connect failed: %s", rec->connect_msg);
}

/* A connection that must fail: ECONNECT, with `needle` in the message,
 * and a query queued before the outcome fails the same way, once. */
static void
assert_connect_fails(const char *extra, const char *needle, char *msg_out, size_t msg_size)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { .connect_timeout_ms = 15000 };
    tu_conn_opts(&opts, &rec);
    char *dsn = dsn_with(extra);
    pgev_conn *conn = tu_conn_new(dsn, &opts);
    free(dsn);
    ck_assert_ptr_nonnull(conn);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q), 0);
    tu_wait_query(&q);
    tu_wait_connected(conn);
    ck_assert_int_eq(q.status, PGEV_ECONNECT);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
    ck_assert_int_eq(rec.connect_calls, 1);
    ck_assert_int_eq(rec.connect_code, PGEV_ECONNECT);
    ck_assert_int_eq(rec.disconnect_calls, 0);
    ck_assert_msg(strstr(rec.connect_msg, needle) != NULL, "expected \"%s\" in: %s", needle,
                  rec.connect_msg);
    ck_assert_msg(strstr(pgev_conn_errmsg(conn), needle) != NULL, "pgev_conn_errmsg: %s",
                  pgev_conn_errmsg(conn));
    ck_assert_msg(strstr(q.message, needle) != NULL, "query message: %s", q.message);
    if (msg_out)
        snprintf(msg_out, msg_size, "%s\n%s\n%s", rec.connect_msg, pgev_conn_errmsg(conn),
                 q.message);
    pgev_conn_free(conn);
    tu_assert_all_once(&q, 1);
}

static char *
verify_full(const char *host, const char *ca)
{
    char *extra = NULL;
    ck_assert_int_gt(asprintf(&extra, "host=%s hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=%s",
                              host, ca),
                     0);
    return extra;
}

/* ---- TLS ---------------------------------------------------------------- */

START_TEST(tls_verify_full_pipelined_and_streaming)
{
    if (!have_ssl())
        return;
    tu_connrec rec = { 0 };
    char *extra = verify_full("localhost", ca_path);
    pgev_conn *conn = open_conn(extra, &rec);
    free(extra);
    assert_ready(conn, &rec);
    ck_assert_int_eq(PQsslInUse(pgev_conn_pg(conn)), 1);

    enum { N = 200, ROWS = 100000 };
    tu_query q[N + 2];
    memset(q, 0, sizeof(q));
    ck_assert_int_gt(tu_query_sql(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                                  &q[0]),
                     0);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT g, md5(g::text) FROM generate_series(1, %d) g", ROWS);
    pgev_query_args stream = { .sql = sql };
    ck_assert_int_gt(tu_submit(conn, &stream, &q[1], true), 0);
    for (int i = 2; i < N + 2; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        const char *values[] = { v };
        q[i].index = i;
        ck_assert_int_gt(tu_query_params(conn, "SELECT $1::int", 1, values, &q[i]), 0);
    }
    tu_wait_queries(q, N + 2, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    ck_assert_str_eq(q[0].value, "t");
    tu_assert_ok(&q[1]);
    ck_assert_int_eq(q[1].rows_streamed, ROWS);
    ck_assert_int_gt(q[1].row_calls, 0);
    for (int i = 2; i < N + 2; i++) {
        tu_assert_ok(&q[i]);
        ck_assert_int_eq(atoi(q[i].value), i);
        ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    }
    pgev_conn_free(conn);
    tu_assert_all_once(q, N + 2);
    tu_assert_base_idle();
}
END_TEST

START_TEST(tls_wrong_ca_fails_clearly)
{
    if (!have_ssl())
        return;
    char *extra = verify_full("localhost", wrong_ca_path);
    assert_connect_fails(extra, "certificate verify failed", NULL, 0);
    free(extra);
    tu_assert_base_idle();
}
END_TEST

START_TEST(tls_wrong_host_name_fails_clearly)
{
    if (!have_ssl())
        return;
    char *extra = verify_full("pgev-wrong-name", ca_path);
    char msg[4096];
    assert_connect_fails(extra, "does not match host name", msg, sizeof(msg));
    ck_assert_msg(strstr(msg, "pgev-wrong-name") != NULL, "the message names no host: %s", msg);
    free(extra);
    tu_assert_base_idle();
}
END_TEST

START_TEST(tls_required_by_server)
{
    if (!have_ssl())
        return;
    /* pg_hba: hostssl trust, hostnossl reject for this user. */
    assert_connect_fails("user=pgev_tls_only sslmode=disable", "no encryption", NULL, 0);
    tu_connrec rec = { 0 };
    char *extra = verify_full("localhost", ca_path);
    char *with_user = NULL;
    ck_assert_int_gt(asprintf(&with_user, "%s user=pgev_tls_only", extra), 0);
    pgev_conn *conn = open_conn(with_user, &rec);
    free(with_user);
    free(extra);
    assert_ready(conn, &rec);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT current_user", &q), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.value, "pgev_tls_only");
    pgev_conn_free(conn);
    tu_assert_all_once(&q, 1);
    tu_assert_base_idle();
}
END_TEST

/* ---- SCRAM-SHA-256 ------------------------------------------------------ */

static void
assert_no_password(const char *text, const char *password)
{
    ck_assert_msg(strstr(text, password) == NULL, "a password leaked into a message: %s", text);
}

START_TEST(scram_right_password)
{
    if (!have_scram())
        return;
    /* The server stores a SCRAM verifier, not an MD5 hash or the text. */
    char *verifier = tu_exec_value("SELECT rolpassword FROM pg_authid WHERE rolname = 'pgev_scram'");
    ck_assert_ptr_nonnull(verifier);
    ck_assert_msg(strncmp(verifier, "SCRAM-SHA-256$", 14) == 0, "verifier: %.20s", verifier);
    free(verifier);

    /* Plain TCP, then TLS with SCRAM channel binding required (the harness's
     * cluster only: an external server has no TLS of ours). */
    const char *modes[] = { "sslmode=disable", "channel_binding=require" };
    if (!ssl_ready)
        printf("scram_right_password: plain TCP only (no TLS on this server)\n");
    for (int m = 0; m < (ssl_ready ? 2 : 1); m++) {
        char *extra = NULL;
        char *tls = verify_full("localhost", ca_path);
        ck_assert_int_gt(asprintf(&extra, "%s user=pgev_scram password=%s %s", m ? tls : "",
                                  scram_password, modes[m]),
                         0);
        free(tls);
        tu_connrec rec = { 0 };
        pgev_conn *conn = open_conn(extra, &rec);
        free(extra);
        assert_ready(conn, &rec);
        tu_query q[2];
        memset(q, 0, sizeof(q));
        ck_assert_int_gt(tu_query_sql(conn, "SELECT current_user", &q[0]), 0);
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1/0", &q[1]), 0);
        tu_wait_queries(q, 2, TU_WAIT_MS);
        tu_assert_ok(&q[0]);
        ck_assert_str_eq(q[0].value, "pgev_scram");
        ck_assert_int_eq(q[1].status, PGEV_ESERVER);
        assert_no_password(q[1].message, scram_password);
        assert_no_password(pgev_conn_errmsg(conn), scram_password);
        pgev_conn_free(conn);
        tu_assert_all_once(q, 2);
    }
    tu_assert_base_idle();
}
END_TEST

START_TEST(scram_wrong_password)
{
    if (!have_scram())
        return;
    const char *wrong = "pgevWRONGpw4711";
    char extra[512];
    char msg[4096];
    snprintf(extra, sizeof(extra), "user=pgev_scram password=%s sslmode=disable", wrong);
    assert_connect_fails(extra, "password authentication failed", msg, sizeof(msg));
    ck_assert_msg(strstr(msg, "pgev_scram") != NULL, "the message names no user: %s", msg);
    assert_no_password(msg, wrong);
    assert_no_password(msg, scram_password);
    /* No password at all (password='' also overrides the one of an external
     * server's DSN): libpq says so. */
    assert_connect_fails("user=pgev_scram password='' sslmode=disable", "no password supplied", NULL, 0);
    tu_assert_base_idle();
}
END_TEST

/* Passwords in a conninfo that fails for other reasons, and in a pool
 * whose connections are refused: never echoed back. */
START_TEST(password_never_in_messages)
{
    const char *secret = "pgevSECRETpw0815";
    char ci[512];
    /* Malformed conninfo (unknown keyword) and a bad value in a URI. */
    for (int i = 0; i < 3; i++) {
        if (i == 0)
            snprintf(ci, sizeof(ci), "password=%s host=127.0.0.1 nosuchoption=1", secret);
        else if (i == 1)
            snprintf(ci, sizeof(ci), "postgresql://someone:%s@127.0.0.1:1/db?sslmode=bogus", secret);
        else
            snprintf(ci, sizeof(ci), "host=127.0.0.1 port=notaport password=%s", secret);
        tu_connrec rec = { 0 };
        pgev_conn_options opts = { 0 };
        tu_conn_opts(&opts, &rec);
        pgev_conn *conn = tu_conn_new(ci, &opts);
        ck_assert_ptr_nonnull(conn);
        tu_query q = { 0 };
        tu_query_sql(conn, "SELECT 1", &q);
        tu_wait_connected(conn);
        if (q.id > 0)
            tu_wait_query(&q);
        ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_FAILED);
        ck_assert_msg(pgev_conn_errmsg(conn)[0] != '\0', "conninfo %d: no message", i);
        assert_no_password(pgev_conn_errmsg(conn), secret);
        assert_no_password(rec.connect_msg, secret);
        assert_no_password(q.message, secret);
        pgev_conn_free(conn);
        tu_assert_all_once(&q, 1);
    }
    if (!have_scram())
        return;
    /* A pool with the wrong password: the timeout names the reason, not the password. */
    char *dsn = NULL;
    ck_assert_int_gt(asprintf(&dsn, "%s user=pgev_scram password=%s sslmode=disable",
                              getenv("PGEV_TEST_DSN_TCP"), secret),
                     0);
    pgev_pool_options popts = { .min_conns = 1, .queue_timeout_ms = 500 };
    tu_in_call++;
    pgev_pool *pool = pgev_pool_new(tu_base, dsn, &popts);
    tu_in_call--;
    free(dsn);
    ck_assert_ptr_nonnull(pool);
    tu_query q = { 0 };
    tu_in_call++;
    q.id = pgev_pool_query(pool, "SELECT 1", tu_done_cb, &q);
    tu_in_call--;
    ck_assert_int_gt(q.id, 0);
    /* tu_done_cb compares ids: a pool query's result id is 0 (no connection). */
    q.is_batch = true;
    tu_wait_query(&q);
    ck_assert_int_eq(q.status, PGEV_ETIMEOUT);
    ck_assert_msg(strstr(q.message, "password authentication failed") != NULL, "message: %s",
                  q.message);
    assert_no_password(q.message, secret);
    assert_no_password(pgev_pool_errmsg(pool), secret);
    pgev_pool_free(pool);
    tu_assert_all_once(&q, 1);
    tu_assert_base_idle();
}
END_TEST

/* ---- setup -------------------------------------------------------------- */

/* Runs `pgcluster.sh ssl DIR` once for the whole suite; reads the password. */
static void
setup_ssl(void)
{
    const char *dir = getenv("PGEV_TEST_CLUSTER_DIR");
    const char *tool = getenv("PGEV_TEST_PGCLUSTER");
    if (!dir || !*dir || !tool || !*tool || !getenv("PGEV_TEST_DSN_TCP"))
        return;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "bash '%s' ssl '%s' >/dev/null", tool, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "check_security: pgcluster.sh ssl failed\n");
        exit(1);
    }
    snprintf(ca_path, sizeof(ca_path), "%s/ssl/ca.crt", dir);
    snprintf(wrong_ca_path, sizeof(wrong_ca_path), "%s/ssl/wrong-ca.crt", dir);
    char path[600];
    snprintf(path, sizeof(path), "%s/ssl/scram-password", dir);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(scram_password, sizeof(scram_password), f)) {
        fprintf(stderr, "check_security: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    scram_password[strcspn(scram_password, "\r\n")] = '\0';
    ssl_ready = scram_password[0] != '\0';
    scram_ready = ssl_ready;
}

/* PQexec on conn; true when it succeeded (blocking libpq is fine here, in
 * the test program's main, outside the loop). */
static bool
exec_ok(PGconn *conn, const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(scram_why, sizeof scram_why, "could not set up the SCRAM user: %s", PQerrorMessage(conn));
    PQclear(r);
    return ok;
}

/* An external server (no harness cluster): create pgev_scram with a random
 * password stored as a SCRAM verifier, and use it when a TCP login without
 * the password is refused (the server asks passwords over TCP). Called
 * from main(), outside any test, so no ck_assert here. */
static void
setup_scram_external(void)
{
    const char *tcp = getenv("PGEV_TEST_DSN_TCP");
    if (ssl_ready || !tcp || !*tcp || !getenv("PGEV_TEST_DSN"))
        return;
    PGconn *admin = PQconnectdb(getenv("PGEV_TEST_DSN"));
    if (PQstatus(admin) != CONNECTION_OK) {
        snprintf(scram_why, sizeof scram_why, "cannot connect to PGEV_TEST_DSN: %s", PQerrorMessage(admin));
        PQfinish(admin);
        return;
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(scram_password, sizeof scram_password, "pgevPW%08x%08x", (unsigned)rand(), (unsigned)rand());
    char sql[512];
    snprintf(sql, sizeof sql, "CREATE ROLE pgev_scram LOGIN PASSWORD '%s'", scram_password);
    if (!exec_ok(admin, "SET client_min_messages = warning") || !exec_ok(admin, "DROP ROLE IF EXISTS pgev_scram") ||
        !exec_ok(admin, "SET password_encryption = 'scram-sha-256'") || !exec_ok(admin, sql)) {
        PQfinish(admin);
        return;
    }
    PQfinish(admin);
    char *probe = NULL;
    if (asprintf(&probe, "%s user=pgev_scram password='' sslmode=disable gssencmode=disable", tcp) < 0)
        return;
    PGconn *c = PQconnectdb(probe);
    free(probe);
    if (PQstatus(c) == CONNECTION_OK)
        snprintf(scram_why, sizeof scram_why, "the server lets pgev_scram in over TCP without a password "
                                              "(trust): SCRAM is not what it asks");
    else if (strstr(PQerrorMessage(c), "no password supplied") == NULL)
        snprintf(scram_why, sizeof scram_why, "a TCP login as pgev_scram failed: %s", PQerrorMessage(c));
    else
        scram_ready = true;
    PQfinish(c);
}

/* Drops what setup_scram_external() created. */
static void
teardown_scram_external(void)
{
    if (ssl_ready || !getenv("PGEV_TEST_DSN"))
        return;
    PGconn *admin = PQconnectdb(getenv("PGEV_TEST_DSN"));
    if (PQstatus(admin) == CONNECTION_OK)
        PQclear(PQexec(admin, "DROP ROLE IF EXISTS pgev_scram"));
    PQfinish(admin);
}

static Suite *
security_suite(void)
{
    Suite *s = suite_create("security");
    TCase *tc = tu_tcase("tls", 60);
    tcase_add_test(tc, tls_verify_full_pipelined_and_streaming);
    tcase_add_test(tc, tls_wrong_ca_fails_clearly);
    tcase_add_test(tc, tls_wrong_host_name_fails_clearly);
    tcase_add_test(tc, tls_required_by_server);
    suite_add_tcase(s, tc);
    tc = tu_tcase("scram", 60);
    tcase_add_test(tc, scram_right_password);
    tcase_add_test(tc, scram_wrong_password);
    tcase_add_test(tc, password_never_in_messages);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    setup_ssl();
    setup_scram_external();
    int rc = tu_run(security_suite());
    teardown_scram_external();
    return rc;
}
