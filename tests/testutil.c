/*
 * Shared helpers for pgev's Check suites; see testutil.h.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif

#ifdef TU_ASAN
/* From the sanitizer runtime (sanitizer/allocator_interface.h, which not
 * every compiler installs). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

struct event_base *tu_base;
int tu_in_call;
int tu_done_total;
int tu_seq;

void tu_setup(void)
{
    tu_in_call = 0;
    tu_done_total = 0;
    tu_seq = 0;
    tu_base = event_base_new();
    ck_assert_msg(tu_base != NULL, "event_base_new failed");
}

void tu_teardown(void)
{
    if (tu_base != NULL)
        event_base_free(tu_base);
    tu_base = NULL;
}

TCase *tu_tcase(const char *name, double timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_set_timeout(tc, timeout_s);
    return tc;
}

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

const char *tu_dsn(void)
{
    const char *dsn = getenv("PGEV_TEST_DSN");
    if (dsn == NULL || *dsn == '\0')
        ck_abort_msg("PGEV_TEST_DSN is not set: this test needs a PostgreSQL server. "
                     "Run it through 'make check' (tests/pg-harness.sh starts a throwaway "
                     "cluster) or export PGEV_TEST_DSN to a libpq conninfo.");
    return dsn;
}

/* Appends `value` to buf as a single-quoted conninfo value. */
static void append_quoted(char *buf, size_t size, const char *value)
{
    size_t len = strlen(buf);
    if (len + 1 < size)
        buf[len++] = '\'';
    for (const char *p = value; *p != '\0' && len + 3 < size; p++) {
        if (*p == '\'' || *p == '\\')
            buf[len++] = '\\';
        buf[len++] = *p;
    }
    if (len + 1 < size)
        buf[len++] = '\'';
    buf[len] = '\0';
}

char *tu_dsn_with(const char *keyword, const char *value)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(tu_dsn(), &errmsg);
    if (opts == NULL) {
        ck_abort_msg("PGEV_TEST_DSN does not parse: %s", errmsg ? errmsg : "out of memory");
    }
    size_t size = 8192;
    char *out = calloc(1, size);
    ck_assert_ptr_nonnull(out);
    bool replaced = false;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = o->val;
        if (strcmp(o->keyword, keyword) == 0) {
            v = value;
            replaced = true;
        }
        if (v == NULL)
            continue;
        strncat(out, o->keyword, size - strlen(out) - 1);
        strncat(out, "=", size - strlen(out) - 1);
        append_quoted(out, size, v);
        strncat(out, " ", size - strlen(out) - 1);
    }
    if (!replaced && value != NULL) {
        strncat(out, keyword, size - strlen(out) - 1);
        strncat(out, "=", size - strlen(out) - 1);
        append_quoted(out, size, value);
    }
    PQconninfoFree(opts);
    return out;
}

/* ---- what an external server's DSN tells ------------------------------- */

/* Is `host` the loopback interface that tests/faultproxy (and the tests'
 * own 127.0.0.1 connections) reach? */
static bool is_loopback(const char *host)
{
    return host != NULL &&
           (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0);
}

/* When the tests run against a server of the user's PGEV_TEST_DSN (the
 * harness's cluster sets all three variables), derive PGEV_TEST_DSN_TCP and
 * PGEV_TEST_PORT from a DSN that already goes over TCP to this machine
 * (host or hostaddr 127.0.0.1, localhost or ::1; one host only): the same
 * options in key=value form, host=127.0.0.1 and the port (the DSN's, else
 * PGPORT, else 5432). Runs before main() in every test program, so the
 * suites that need TCP run against a compose-style server instead of
 * skipping. A socket DSN derives nothing (those tests then say "skipped"). */
__attribute__((constructor)) static void derive_tcp_env(void)
{
    const char *dsn = getenv("PGEV_TEST_DSN"), *tcp = getenv("PGEV_TEST_DSN_TCP");
    if (dsn == NULL || *dsn == '\0')
        return;
    bool have_tcp = tcp != NULL && *tcp != '\0';
    const char *port_env = getenv("PGEV_TEST_PORT");
    if (have_tcp && port_env != NULL && *port_env != '\0')
        return;
    PQconninfoOption *opts = PQconninfoParse(have_tcp ? tcp : dsn, NULL);
    if (opts == NULL)
        return;
    const char *host = NULL, *hostaddr = NULL, *port = NULL;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    bool loopback = hostaddr != NULL && *hostaddr != '\0' ? is_loopback(hostaddr) : is_loopback(host);
    if (port == NULL || *port == '\0')
        port = getenv("PGPORT") && *getenv("PGPORT") ? getenv("PGPORT") : "5432";
    if (!loopback || strchr(port, ',') != NULL) {
        PQconninfoFree(opts);
        return;
    }
    if (!have_tcp) {
        char out[8192] = "";
        for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
            if (o->val == NULL || strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
                strcmp(o->keyword, "port") == 0)
                continue;
            strncat(out, o->keyword, sizeof out - strlen(out) - 1);
            strncat(out, "=", sizeof out - strlen(out) - 1);
            append_quoted(out, sizeof out, o->val);
            strncat(out, " ", sizeof out - strlen(out) - 1);
        }
        strncat(out, "host=127.0.0.1 port=", sizeof out - strlen(out) - 1);
        strncat(out, port, sizeof out - strlen(out) - 1);
        setenv("PGEV_TEST_DSN_TCP", out, 1);
    }
    if (port_env == NULL || *port_env == '\0')
        setenv("PGEV_TEST_PORT", port, 1);
    PQconninfoFree(opts);
}

/* ---- running the loop --------------------------------------------------- */

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

void tu_run_until(tu_cond cond, void *arg, int timeout_ms, const char *what)
{
    bool expired = false;
    struct event *timer = evtimer_new(tu_base, deadline_cb, &expired);
    ck_assert_ptr_nonnull(timer);
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    ck_assert_int_eq(evtimer_add(timer, &tv), 0);
    while (!cond(arg) && !expired) {
        if (event_base_loop(tu_base, EVLOOP_ONCE) < 0)
            ck_abort_msg("event_base_loop failed while waiting for %s", what);
    }
    event_free(timer);
    if (!cond(arg))
        ck_abort_msg("timed out after %d ms waiting for %s", timeout_ms, what);
}

struct count_target {
    const int *counter;
    int target;
};

static bool count_reached(void *arg)
{
    struct count_target *ct = arg;
    return *ct->counter >= ct->target;
}

void tu_wait_count(const int *counter, int target, int timeout_ms, const char *what)
{
    struct count_target ct = { counter, target };
    tu_run_until(count_reached, &ct, timeout_ms, what);
}

void tu_run_for(int ms)
{
    bool expired = false;
    struct event *timer = evtimer_new(tu_base, deadline_cb, &expired);
    ck_assert_ptr_nonnull(timer);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    ck_assert_int_eq(evtimer_add(timer, &tv), 0);
    while (!expired)
        ck_assert_int_ge(event_base_loop(tu_base, EVLOOP_ONCE), 0);
    event_free(timer);
}

void tu_assert_base_idle(void)
{
    int armed = event_base_get_num_events(tu_base, EVENT_BASE_COUNT_ADDED);
    int active = event_base_get_num_events(tu_base, EVENT_BASE_COUNT_ACTIVE);
    ck_assert_msg(armed == 0 && active == 0,
                  "events left on the base after the connection was freed: %d added, %d active",
                  armed, active);
    /* With nothing armed, dispatch must return at once (1: no events). */
    ck_assert_int_eq(event_base_dispatch(tu_base), 1);
}

/* ---- connections -------------------------------------------------------- */

static void copy_str(char *dst, size_t size, const char *src)
{
    if (src == NULL)
        src = "";
    snprintf(dst, size, "%s", src);
}

static void on_connect_rec(pgev_conn *conn, const pgev_error *err, void *arg)
{
    tu_connrec *rec = arg;
    ck_assert_msg(tu_in_call == 0, "on_connect ran inside a pgev call");
    rec->connect_calls++;
    ck_assert_msg(rec->connect_calls == 1, "on_connect ran %d times", rec->connect_calls);
    rec->connect_seq = ++tu_seq;
    rec->connect_code = err ? pgev_error_code(err) : PGEV_OK;
    rec->connect_state = pgev_conn_state(conn);
    copy_str(rec->connect_msg, sizeof rec->connect_msg, err ? pgev_error_message(err) : "");
    if (rec->on_connect_hook)
        rec->on_connect_hook(conn, err, rec);
}

static void on_disconnect_rec(pgev_conn *conn, const pgev_error *err, void *arg)
{
    tu_connrec *rec = arg;
    ck_assert_msg(tu_in_call == 0, "on_disconnect ran inside a pgev call");
    rec->disconnect_calls++;
    ck_assert_msg(rec->disconnect_calls == 1, "on_disconnect ran %d times", rec->disconnect_calls);
    rec->disconnect_seq = ++tu_seq;
    rec->disconnect_code = err ? pgev_error_code(err) : PGEV_OK;
    rec->disconnect_state = pgev_conn_state(conn);
    copy_str(rec->disconnect_msg, sizeof rec->disconnect_msg, err ? pgev_error_message(err) : "");
    if (rec->on_disconnect_hook)
        rec->on_disconnect_hook(conn, err, rec);
}

static void on_notice_rec(pgev_conn *conn, const pgev_error *notice, void *arg)
{
    tu_connrec *rec = arg;
    (void)conn;
    ck_assert_ptr_nonnull(notice);
    rec->notice_calls++;
    copy_str(rec->notice_msg, sizeof rec->notice_msg, pgev_error_message(notice));
    copy_str(rec->notice_severity, sizeof rec->notice_severity, pgev_error_severity(notice));
    copy_str(rec->notice_sqlstate, sizeof rec->notice_sqlstate, pgev_error_sqlstate(notice));
}

void tu_conn_opts(pgev_conn_options *opts, tu_connrec *rec)
{
    opts->on_connect = on_connect_rec;
    opts->on_disconnect = on_disconnect_rec;
    opts->on_notice = on_notice_rec;
    opts->arg = rec;
}

pgev_conn *tu_conn_new(const char *conninfo, const pgev_conn_options *opts)
{
    tu_in_call++;
    pgev_conn *conn = pgev_conn_new(tu_base, conninfo, opts);
    tu_in_call--;
    return conn;
}

int tu_close(pgev_conn *conn)
{
    tu_in_call++;
    int rc = pgev_conn_close(conn);
    tu_in_call--;
    return rc;
}

static bool left_connecting(void *arg)
{
    return pgev_conn_state(arg) != PGEV_CONN_CONNECTING;
}

void tu_wait_connected(pgev_conn *conn)
{
    tu_run_until(left_connecting, conn, TU_WAIT_MS, "the connection to leave CONNECTING");
}

pgev_conn *tu_connect(const pgev_conn_options *opts)
{
    pgev_conn *conn = tu_conn_new(tu_dsn(), opts);
    ck_assert_msg(conn != NULL, "pgev_conn_new returned NULL");
    tu_wait_connected(conn);
    ck_assert_msg(pgev_conn_state(conn) == PGEV_CONN_READY, "connect failed (state %d): %s",
                  (int)pgev_conn_state(conn), pgev_conn_errmsg(conn));
    return conn;
}

/* ---- queries ------------------------------------------------------------ */

void tu_done_cb(pgev_conn *conn, pgev_result *res, void *arg)
{
    tu_query *q = arg;
    (void)conn;
    TU_CHECK(tu_in_call == 0, "query %d: on_done ran inside the submitting call", q->index);
    TU_CHECK(res != NULL, "query %d: on_done without a result", q->index);
    q->done_calls++;
    TU_CHECK(q->done_calls == 1, "query %d: on_done ran %d times", q->index, q->done_calls);
    tu_done_total++;
    q->done_seq = ++tu_seq;
    q->status = pgev_result_status(res);
    q->result_id = pgev_result_query_id(res);
    TU_CHECK(q->is_batch || q->id <= 0 || q->result_id == q->id,
                  "query %d: pgev_result_query_id %lld, submit returned %lld", q->index,
                  (long long)q->result_id, (long long)q->id);
    q->rows = pgev_result_rows(res);
    q->rows_affected = pgev_result_rows_affected(res);
    q->sent = pgev_result_sent(res);
    copy_str(q->command, sizeof q->command, pgev_result_command(res));
    /* What the callback says is what the server did: a query is never OK
     * without the server's result. */
    TU_CHECK(q->is_batch || q->status != PGEV_OK || pgev_result_pg(res) != NULL,
             "query %d: PGEV_OK without a result", q->index);

    const pgev_error *err = pgev_result_error(res);
    if (q->status == PGEV_OK) {
        TU_CHECK(err == NULL, "query %d: status OK but pgev_result_error is set", q->index);
    } else {
        TU_CHECK(q->status < 0, "query %d: status %d", q->index, q->status);
        TU_CHECK(err != NULL, "query %d: status %d but no pgev_result_error", q->index,
                      q->status);
        TU_CHECK(pgev_error_code(err) == q->status, "query %d: error code %d, status %d",
                 q->index, pgev_error_code(err), q->status);
        const char *msg = pgev_error_message(err);
        TU_CHECK(msg != NULL && *msg != '\0', "query %d: error without a message",
                      q->index);
        TU_CHECK(msg[strlen(msg) - 1] != '\n', "query %d: message ends in a newline: \"%s\"",
                      q->index, msg);
        copy_str(q->message, sizeof q->message, msg);
        q->message_len = strlen(msg);
        copy_str(q->sqlstate, sizeof q->sqlstate, pgev_error_sqlstate(err));
        copy_str(q->severity, sizeof q->severity, pgev_error_severity(err));
        const char *detail = pgev_error_detail(err);
        q->has_detail = detail != NULL;
        copy_str(q->detail, sizeof q->detail, detail);
        const char *hint = pgev_error_hint(err);
        q->has_hint = hint != NULL;
        copy_str(q->hint, sizeof q->hint, hint);
        q->position = pgev_error_position(err);
    }

    PGresult *pg = pgev_result_pg(res);
    q->has_pg = pg != NULL;
    if (pg != NULL) {
        q->pg_status = PQresultStatus(pg);
        q->ntuples = PQntuples(pg);
        if (q->ntuples > 0 && PQnfields(pg) > 0) {
            q->has_value = true;
            q->value_null = PQgetisnull(pg, 0, 0);
            if (PQfformat(pg, 0) == 0)
                copy_str(q->value, sizeof q->value, PQgetvalue(pg, 0, 0));
        }
    }
    if (q->on_done_hook)
        q->on_done_hook(conn, res, q);
}

void tu_rows_cb(pgev_conn *conn, pgev_result *res, void *arg)
{
    tu_query *q = arg;
    TU_CHECK(tu_in_call == 0, "query %d: on_rows ran inside the submitting call", q->index);
    TU_CHECK(res != NULL, "query %d: on_rows without a result", q->index);
    TU_CHECK(q->done_calls == 0, "query %d: on_rows ran after on_done", q->index);
    TU_CHECK(pgev_result_status(res) == PGEV_OK, "query %d: on_rows with status %d", q->index,
             pgev_result_status(res));
    PGresult *pg = pgev_result_pg(res);
    TU_CHECK(pg != NULL, "query %d: on_rows without a PGresult", q->index);
    TU_CHECK(pgev_result_rows(res) == PQntuples(pg),
             "query %d: pgev_result_rows %lld but the PGresult has %d rows", q->index,
             (long long)pgev_result_rows(res), PQntuples(pg));
    if (q->row_calls == 0)
        q->first_row_seq = ++tu_seq;
    q->row_calls++;
    q->rows_streamed += pgev_result_rows(res);
    if (q->on_rows_hook)
        q->on_rows_hook(conn, res, q);
}

int64_t tu_query_sql(pgev_conn *conn, const char *sql, tu_query *q)
{
    tu_in_call++;
    q->id = pgev_conn_query(conn, sql, tu_done_cb, q);
    tu_in_call--;
    return q->id;
}

int64_t tu_query_params(pgev_conn *conn, const char *sql, int nparams, const char *const *values,
                        tu_query *q)
{
    tu_in_call++;
    q->id = pgev_conn_query_params(conn, sql, nparams, values, tu_done_cb, q);
    tu_in_call--;
    return q->id;
}

int64_t tu_prepare(pgev_conn *conn, const char *name, const char *sql, int nparams,
                   const Oid *types, tu_query *q)
{
    tu_in_call++;
    q->id = pgev_conn_prepare(conn, name, sql, nparams, types, tu_done_cb, q);
    tu_in_call--;
    return q->id;
}

int64_t tu_execute(pgev_conn *conn, const char *name, int nparams, const char *const *values,
                   tu_query *q)
{
    tu_in_call++;
    q->id = pgev_conn_execute(conn, name, nparams, values, tu_done_cb, q);
    tu_in_call--;
    return q->id;
}

int64_t tu_submit(pgev_conn *conn, const pgev_query_args *args, tu_query *q, bool stream)
{
    pgev_query_args copy = *args;
    copy.on_done = tu_done_cb;
    copy.on_rows = stream ? tu_rows_cb : NULL;
    copy.arg = q;
    tu_in_call++;
    q->id = pgev_conn_submit(conn, &copy);
    tu_in_call--;
    return q->id;
}

int tu_batch_end(pgev_conn *conn, tu_query *q)
{
    tu_in_call++;
    int rc = pgev_conn_batch_end(conn, tu_done_cb, q);
    tu_in_call--;
    /* A batch has no query id of its own: 1 marks it accepted. */
    q->is_batch = true;
    q->id = rc == PGEV_OK ? 1 : rc;
    return rc;
}

struct query_set {
    tu_query *qs;
    int n;
};

static bool queries_done(void *arg)
{
    struct query_set *set = arg;
    for (int i = 0; i < set->n; i++)
        if (set->qs[i].id > 0 && set->qs[i].done_calls == 0)
            return false;
    return true;
}

void tu_wait_queries(tu_query *qs, int n, int timeout_ms)
{
    struct query_set set = { qs, n };
    tu_run_until(queries_done, &set, timeout_ms, "queries to complete");
}

static bool query_done(void *arg)
{
    return ((tu_query *)arg)->done_calls > 0;
}

void tu_wait_query(tu_query *q)
{
    tu_run_until(query_done, q, TU_WAIT_MS, "a query to complete");
}

void tu_assert_all_once(const tu_query *qs, int n)
{
    for (int i = 0; i < n; i++) {
        if (qs[i].id > 0)
            ck_assert_msg(qs[i].done_calls == 1, "query #%d (id %lld): on_done ran %d times", i,
                          (long long)qs[i].id, qs[i].done_calls);
        else
            ck_assert_msg(qs[i].done_calls == 0,
                          "query #%d was refused (%lld) but on_done ran %d times", i,
                          (long long)qs[i].id, qs[i].done_calls);
    }
}

void tu_assert_ok(const tu_query *q)
{
    ck_assert_msg(q->done_calls == 1, "query %d: on_done ran %d times", q->index, q->done_calls);
    ck_assert_msg(q->status == PGEV_OK, "query %d failed: %s (%s) %s", q->index,
                  pgev_strerror(q->status), q->sqlstate, q->message);
}

/* ---- blocking helpers --------------------------------------------------- */

static char *exec_v(bool want_value, const char *fmt, va_list ap) TU_PRINTF(2, 0);

static char *exec_v(bool want_value, const char *fmt, va_list ap)
{
    char sql[4096];
    vsnprintf(sql, sizeof sql, fmt, ap);
    PGconn *pg = PQconnectdb(tu_dsn());
    if (PQstatus(pg) != CONNECTION_OK) {
        char msg[1024];
        copy_str(msg, sizeof msg, PQerrorMessage(pg));
        PQfinish(pg);
        ck_abort_msg("helper connection failed: %s", msg);
    }
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[1024];
        copy_str(msg, sizeof msg, PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(pg);
        ck_abort_msg("helper query \"%s\" failed: %s", sql, msg);
    }
    char *value = NULL;
    if (want_value && PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)) {
        value = strdup(PQgetvalue(res, 0, 0));
        ck_assert_ptr_nonnull(value);
    }
    PQclear(res);
    PQfinish(pg);
    return value;
}

void tu_exec(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(exec_v(false, fmt, ap));
    va_end(ap);
}

char *tu_exec_value(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *value = exec_v(true, fmt, ap);
    va_end(ap);
    return value;
}

/* ---- sockets, memory ---------------------------------------------------- */

static int bound_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

int tu_listen_blackhole(int *port)
{
    int fd = bound_socket(port);
    /* The kernel completes the handshake into the backlog; nobody ever
     * accepts or answers, so libpq waits for the server's reply forever. */
    ck_assert_int_eq(listen(fd, 16), 0);
    return fd;
}

int tu_closed_port(void)
{
    int port;
    int fd = bound_socket(&port);
    close(fd);
    return port;
}

long tu_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

size_t tu_heap_bytes(void)
{
#ifdef TU_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

bool tu_sanitized(void)
{
#ifdef TU_ASAN
    return true;
#else
    return false;
#endif
}

/* ---- the harness's cluster ---------------------------------------------- */

bool tu_have_cluster(const char *why)
{
    const char *tool = getenv("PGEV_TEST_PGCLUSTER"), *dir = getenv("PGEV_TEST_CLUSTER_DIR");
    if (tool && *tool && dir && *dir)
        return true;
    fprintf(stderr, "skipped: needs the harness's own cluster (%s)\n", why);
    return false;
}

bool tu_have_replicas(const char *why)
{
    if (!tu_have_cluster(why))
        return false;
    const char *method = getenv("PGEV_TEST_REPLICA_METHOD"), *reason = getenv("PGEV_TEST_NO_REPLICA");
    if (method && *method)
        return true;
    fprintf(stderr, "skipped: cannot make a standby (%s): %s\n", why,
            reason && *reason ? reason : "PGEV_TEST_REPLICA_METHOD is empty");
    return false;
}

pid_t tu_cluster_start(const char *cmd, const char *arg1, const char *arg2)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execlp("bash", "bash", getenv("PGEV_TEST_PGCLUSTER"), cmd, getenv("PGEV_TEST_CLUSTER_DIR"), arg1, arg2,
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

struct tu_child {
    pid_t pid;
    int status;
    bool done;
};

static bool child_exited(void *arg)
{
    struct tu_child *c = arg;
    if (!c->done && waitpid(c->pid, &c->status, WNOHANG) == c->pid)
        c->done = true;
    return c->done;
}

static void ticker_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

void tu_cluster_wait(pid_t pid, const char *what)
{
    struct tu_child c = { .pid = pid };
    struct event *tick = event_new(tu_base, -1, EV_PERSIST, ticker_cb, NULL);
    ck_assert_ptr_nonnull(tick);
    struct timeval every = { 0, 20000 };
    ck_assert_int_eq(event_add(tick, &every), 0);
    tu_run_until(child_exited, &c, 120000, what);
    event_free(tick);
    ck_assert_msg(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0, "pgcluster.sh %s failed", what);
}

void tu_cluster(const char *cmd, const char *arg1, const char *arg2)
{
    tu_cluster_wait(tu_cluster_start(cmd, arg1, arg2), cmd);
}
