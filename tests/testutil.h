/*
 * Shared helpers for pgev's Check suites.
 *
 * Every test gets a fresh event_base (tu_setup/tu_teardown, installed as a
 * checked fixture by tu_tcase()). Tests wait for things by running the loop
 * one iteration at a time under a hard deadline (tu_run_until and friends),
 * never by sleeping.
 *
 * Callback accounting: tu_query records what one query's callbacks saw and
 * asserts, inside the callback, the two contracts every test relies on:
 * a completion runs at most once, and never inside the API call that
 * submitted the work (tu_in_call is raised around every such call made
 * through these helpers). At the end, tu_assert_all_once() checks that
 * every accepted query completed exactly once and no refused one did.
 */
#ifndef PGEV_TESTUTIL_H
#define PGEV_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "pgev.h"

#if defined(__GNUC__)
#define TU_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))
#else
#define TU_PRINTF(fmt, first)
#endif

/* Like ck_assert_msg, but silent while it holds: Check's assertions log
 * every passing check (a write() each), far too slow in per-row code. */
#define TU_CHECK(expr, ...)                                                                    \
    do {                                                                                       \
        if (!(expr))                                                                           \
            ck_abort_msg(__VA_ARGS__);                                                         \
    } while (0)

/* Default hard deadline for one wait, in milliseconds. */
#define TU_WAIT_MS 20000

/* The event_base of the running test (created by tu_setup). */
extern struct event_base *tu_base;

/* Raised around every pgev call made through these helpers that must not
 * call back synchronously (submits, close, batch_end, conn_new). */
extern int tu_in_call;

/* Completions seen by tu_done_cb in this test, in order (1-based). */
extern int tu_done_total;

/* A global sequence number shared by all recorded events, so tests can
 * check relative order (a query's completion before on_disconnect...). */
extern int tu_seq;

/* Fixture: a fresh event_base per test; the teardown frees it. */
void tu_setup(void);
void tu_teardown(void);

/* A TCase with the fixture and a timeout (seconds). */
TCase *tu_tcase(const char *name, double timeout_s);

/* Runs the suite (Check's usual runner) and frees it: a test program's
 * exit status, 0 when every test passed. */
int tu_run(Suite *s);

/* The test server's conninfo; fails the test when PGEV_TEST_DSN is unset.
 * Against an external server (a PGEV_TEST_DSN over TCP to 127.0.0.1 or
 * localhost, as with docker-compose.yml), testutil.c derives
 * PGEV_TEST_DSN_TCP and PGEV_TEST_PORT from it before main() runs. */
const char *tu_dsn(void);

/* tu_dsn() with one keyword replaced (works for URIs too); free() it. */
char *tu_dsn_with(const char *keyword, const char *value);

/* ---- running the loop --------------------------------------------------- */

typedef bool (*tu_cond)(void *arg);

/* Runs tu_base one iteration at a time until cond(arg) holds; fails the
 * test after timeout_ms, naming `what`. */
void tu_run_until(tu_cond cond, void *arg, int timeout_ms, const char *what);

/* Runs until *counter >= target. */
void tu_wait_count(const int *counter, int target, int timeout_ms, const char *what);

/* Runs the loop for `ms` milliseconds (only to check that nothing more
 * happens, never to wait for something). */
void tu_run_for(int ms);

/* Asserts that nothing is left armed on tu_base and that
 * event_base_dispatch() returns at once. */
void tu_assert_base_idle(void);

/* ---- connections -------------------------------------------------------- */

/* What a connection's own callbacks saw. */
typedef struct tu_connrec tu_connrec;
typedef void (*tu_conn_hook)(pgev_conn *conn, const pgev_error *err, tu_connrec *rec);
struct tu_connrec {
    pgev_conn *conn;       /* set by the test; hooks may NULL it after freeing */
    int connect_calls;
    int connect_code;      /* pgev_error_code(err), PGEV_OK for err NULL */
    int connect_state;     /* pgev_conn_state() inside on_connect */
    int connect_seq;
    char connect_msg[1024];
    int disconnect_calls;
    int disconnect_code;
    int disconnect_state;
    int disconnect_seq;
    char disconnect_msg[1024];
    int notice_calls;
    char notice_msg[256];
    char notice_severity[32];
    char notice_sqlstate[8];
    tu_conn_hook on_connect_hook;
    tu_conn_hook on_disconnect_hook;
    void *user;
};

/* Points opts' three callbacks at rec (recording into it). */
void tu_conn_opts(pgev_conn_options *opts, tu_connrec *rec);

/* Opens a connection to tu_dsn() and runs the loop until it is READY
 * (fails the test otherwise). opts may be NULL. */
pgev_conn *tu_connect(const pgev_conn_options *opts);

/* Runs the loop until the connection leaves PGEV_CONN_CONNECTING. */
void tu_wait_connected(pgev_conn *conn);

/* pgev_conn_new() under tu_in_call. */
pgev_conn *tu_conn_new(const char *conninfo, const pgev_conn_options *opts);

/* pgev_conn_close() under tu_in_call. */
int tu_close(pgev_conn *conn);

/* ---- queries ------------------------------------------------------------ */

typedef struct tu_query tu_query;
typedef void (*tu_query_hook)(pgev_conn *conn, pgev_result *res, tu_query *q);
struct tu_query {
    int64_t id;            /* what the submit returned */
    bool is_batch;         /* a batch's on_done (tu_batch_end): id is 1 */
    int done_calls;
    int done_seq;          /* tu_seq at completion */
    int row_calls;         /* row callback invocations */
    int first_row_seq;
    int64_t rows_streamed; /* sum of pgev_result_rows() in row callbacks */
    int status;
    int64_t result_id;
    int64_t rows;
    int64_t rows_affected;
    bool has_pg;
    ExecStatusType pg_status;
    int ntuples;
    char value[256];       /* row 0 col 0 as text, when there is one */
    bool value_null;
    bool has_value;
    char sqlstate[8];
    char severity[32];
    char message[1024];
    size_t message_len;    /* the whole message's length (message may be cut) */
    int sent;              /* pgev_result_sent() */
    char detail[1024];
    bool has_detail;
    char hint[1024];
    bool has_hint;
    int position;
    char command[64];
    int index;             /* for the test's own use */
    void *user;            /* for the test's own use */
    tu_query_hook on_done_hook;  /* after recording */
    tu_query_hook on_rows_hook;  /* after recording */
};

/* The recording callbacks; arg must be a tu_query. */
void tu_done_cb(pgev_conn *conn, pgev_result *res, void *arg);
void tu_rows_cb(pgev_conn *conn, pgev_result *res, void *arg);

/* Submit helpers, all under tu_in_call; each stores the id in q->id and
 * returns it. */
int64_t tu_query_sql(pgev_conn *conn, const char *sql, tu_query *q);
int64_t tu_query_params(pgev_conn *conn, const char *sql, int nparams, const char *const *values,
                        tu_query *q);
int64_t tu_prepare(pgev_conn *conn, const char *name, const char *sql, int nparams,
                   const Oid *types, tu_query *q);
int64_t tu_execute(pgev_conn *conn, const char *name, int nparams, const char *const *values,
                   tu_query *q);
/* args' on_done/arg are replaced by tu_done_cb/q; on_rows by tu_rows_cb
 * when stream is true. */
int64_t tu_submit(pgev_conn *conn, const pgev_query_args *args, tu_query *q, bool stream);
/* pgev_conn_batch_end() with tu_done_cb; q->id becomes 1 when accepted. */
int tu_batch_end(pgev_conn *conn, tu_query *q);

/* Waits until every query in qs[0..n) with id > 0 has completed. */
void tu_wait_queries(tu_query *qs, int n, int timeout_ms);
void tu_wait_query(tu_query *q);

/* Asserts that each accepted query (id > 0) completed exactly once and
 * each refused one (id <= 0) never did. */
void tu_assert_all_once(const tu_query *qs, int n);

/* Asserts q completed OK (with the error message in the failure text). */
void tu_assert_ok(const tu_query *q);

/* ---- blocking helpers on a separate plain-libpq connection -------------- */

/* Runs one statement on a new blocking libpq connection; fails the test on
 * error. tu_exec_value returns row 0 col 0 (malloc'd) or NULL. */
void tu_exec(const char *fmt, ...) TU_PRINTF(1, 2);
char *tu_exec_value(const char *fmt, ...) TU_PRINTF(1, 2);

/* ---- the harness's cluster (tests/pgcluster.sh) --------------------------- */

/* True when the harness started the server (PGEV_TEST_PGCLUSTER and
 * PGEV_TEST_CLUSTER_DIR are set); otherwise prints "skipped: ..." with
 * `why` and returns false. */
bool tu_have_cluster(const char *why);

/* tu_have_cluster(why), and a way to make standbys (the harness's
 * PGEV_TEST_REPLICA_METHOD); otherwise prints "skipped: ..." with the
 * reason (PGEV_TEST_NO_REPLICA) and returns false. */
bool tu_have_replicas(const char *why);

/* Starts `pgcluster.sh CMD DIR [ARG1 [ARG2]]` in a child process (the
 * loop keeps running meanwhile); returns its pid. */
pid_t tu_cluster_start(const char *cmd, const char *arg1, const char *arg2);

/* Runs the loop until that child has exited (a ticker keeps the loop
 * waking up to look) and fails the test unless it exited 0. */
void tu_cluster_wait(pid_t pid, const char *what);

/* tu_cluster_start() and tu_cluster_wait(). */
void tu_cluster(const char *cmd, const char *arg1, const char *arg2);

/* ---- sockets, memory ---------------------------------------------------- */

/* A TCP listener on 127.0.0.1 that never accepts or answers; returns the
 * fd (close it) and stores the port. */
int tu_listen_blackhole(int *port);

/* A 127.0.0.1 port with nothing listening on it (just released). */
int tu_closed_port(void);

/* Resident set size in kB (VmRSS), or -1. */
long tu_rss_kb(void);

/* Live heap bytes (the sanitizer's count in sanitizer builds, else
 * mallinfo2). */
size_t tu_heap_bytes(void);

/* True when built with AddressSanitizer (RSS then includes quarantine). */
bool tu_sanitized(void);

#endif /* PGEV_TESTUTIL_H */
