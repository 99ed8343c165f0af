/*
 * Query tests: parameters, formats, prepared statements, pipelining and
 * ordering, errors and their fields, atomic batches, backpressure, result
 * ownership and the typed accessors. Needs PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INT4OID 23
#define INT8OID 20
#define TEXTOID 25

static pgev_conn *conn;

static void open_conn(void)
{
    conn = tu_connect(NULL);
}

static void free_conn(void)
{
    pgev_conn_free(conn);
    conn = NULL;
}

/* Runs one query to completion and returns its record. */
static void run(const char *sql, tu_query *q)
{
    int64_t id = tu_query_sql(conn, sql, q);
    ck_assert_msg(id > 0, "submit \"%s\": %s (%s)", sql, pgev_strerror((int)id),
                  pgev_conn_errmsg(conn));
    tu_wait_query(q);
}

static void run_ok(const char *sql)
{
    tu_query q = { 0 };
    run(sql, &q);
    ck_assert_msg(q.status == PGEV_OK, "\"%s\" failed: %s", sql, q.message);
}

START_TEST(simple_query)
{
    open_conn();
    tu_query q = { 0 };
    int64_t id = tu_query_sql(conn, "SELECT 42 AS answer, 'x' AS letter", &q);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(q.done_calls, 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_int_eq(q.result_id, id);
    ck_assert(q.has_pg);
    ck_assert_int_eq(q.pg_status, PGRES_TUPLES_OK);
    ck_assert_int_eq(q.ntuples, 1);
    ck_assert_str_eq(q.value, "42");
    ck_assert_str_eq(q.command, "SELECT 1");
    ck_assert_int_eq(q.rows, 1);
    ck_assert_int_eq(q.rows_affected, 1);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);
    free_conn();
    tu_assert_all_once(&q, 1);
    tu_assert_base_idle();
}
END_TEST

START_TEST(query_ids_unique)
{
    open_conn();
    enum { N = 100 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
        for (int j = 0; j < i; j++)
            ck_assert_int_ne(q[i].id, q[j].id);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    free_conn();
    tu_assert_all_once(q, N);
}
END_TEST

START_TEST(params_text_and_null)
{
    open_conn();
    const char *values[] = { "2", "3", NULL, "it's" };
    tu_query q = { 0 };
    tu_query_params(conn, "SELECT $1::int + $2::int, $3::text IS NULL, $4::text", 4, values, &q);
    ck_assert_int_gt(q.id, 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.value, "5");

    tu_query q2 = { 0 };
    const char *one_null[] = { NULL };
    tu_query_params(conn, "SELECT $1::int", 1, one_null, &q2);
    tu_wait_query(&q2);
    tu_assert_ok(&q2);
    ck_assert(q2.has_value);
    ck_assert(q2.value_null);
    free_conn();
    tu_assert_all_once(&q, 1);
}
END_TEST

static void check_typed_params(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)q;
    PGresult *pg = pgev_result_pg(res);
    ck_assert_ptr_nonnull(pg);
    ck_assert_str_eq(PQgetvalue(pg, 0, 0), "8");
    ck_assert_str_eq(PQgetvalue(pg, 0, 1), "integer");
    ck_assert_str_eq(PQgetvalue(pg, 0, 2), "abcx");
    ck_assert_str_eq(PQgetvalue(pg, 0, 3), "bigint");
}

START_TEST(params_explicit_types)
{
    open_conn();
    const Oid types[] = { INT4OID, TEXTOID, INT8OID };
    const char *values[] = { "7", "abc", "9" };
    pgev_query_args args = {
        .sql = "SELECT $1 + 1, pg_typeof($1)::text, $2 || 'x', pg_typeof($3)::text",
        .nparams = 3,
        .param_types = types,
        .param_values = values,
    };
    tu_query q = { .on_done_hook = check_typed_params };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);

    /* A value that does not fit the declared type is the server's error. */
    const char *bad[] = { "not-a-number", "x", "1" };
    args.param_values = bad;
    tu_query q2 = { 0 };
    ck_assert_int_gt(tu_submit(conn, &args, &q2, false), 0);
    tu_wait_query(&q2);
    ck_assert_int_eq(q2.status, PGEV_ESERVER);
    ck_assert_str_eq(q2.sqlstate, "22P02");
    free_conn();
}
END_TEST

START_TEST(params_binary)
{
    open_conn();
    uint32_t net = htonl(0x01020304u);
    uint32_t neg = htonl((uint32_t)-7);
    const char *values[] = { (const char *)&net, (const char *)&neg, "text-param" };
    const int lengths[] = { 4, 4, 0 };
    const int formats[] = { 1, 1, 0 };
    const Oid types[] = { INT4OID, INT4OID, TEXTOID };
    pgev_query_args args = {
        .sql = "SELECT $1::int4, $2::int4, $3",
        .nparams = 3,
        .param_types = types,
        .param_values = values,
        .param_lengths = lengths,
        .param_formats = formats,
    };
    tu_query q = { 0 };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    /* The arguments may be on the stack: clobber them before the send. */
    net = 0;
    neg = 0;
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.value, "16909060");
    free_conn();
}
END_TEST

static void check_binary_result(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)q;
    PGresult *pg = pgev_result_pg(res);
    ck_assert_ptr_nonnull(pg);
    ck_assert_int_eq(PQfformat(pg, 0), 1);
    ck_assert_int_eq(PQgetlength(pg, 0, 0), 4);
    uint32_t v;
    memcpy(&v, PQgetvalue(pg, 0, 0), 4);
    ck_assert_int_eq((int32_t)ntohl(v), 7);
    ck_assert_int_eq(PQfformat(pg, 1), 1);
    ck_assert_int_eq(PQgetlength(pg, 0, 1), 8);
    ck_assert_int_eq(PQgetlength(pg, 0, 2), 3);
    ck_assert(memcmp(PQgetvalue(pg, 0, 2), "abc", 3) == 0);
}

/*
 * Queries queued while connecting keep their own copy of the arguments:
 * small ones inside the query's record, larger ones in an allocation. Every
 * size around that boundary (a prepared statement's short name and two
 * parameters: inline up to ~50 bytes of text), then a NULL and a binary
 * parameter beside a long SQL text, all from one buffer the caller
 * overwrites after each submit.
 */
START_TEST(queued_copies_every_size)
{
    static const int sizes[] = { 0, 1, 40, 60, 64, 70, 72, 80, 88, 95, 96, 97, 100, 128, 200, 5000 };
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    conn = tu_conn_new(tu_dsn(), NULL);
    ck_assert_ptr_nonnull(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CONNECTING);
    enum { NP = 121 };
    tu_query q[N], p[NP];
    memset(q, 0, sizeof q);
    memset(p, 0, sizeof p);
    char *text = malloc(5001);
    ck_assert_ptr_nonnull(text);
    static const Oid ptypes[] = { TEXTOID, INT4OID };
    ck_assert_int_gt(pgev_conn_prepare(conn, "qsize", "SELECT ($1 = repeat(chr(97 + $2 % 26), $2))::text",
                                       2, ptypes, NULL, NULL), 0);
    for (int i = 0; i < NP; i++) {
        char len[16];
        snprintf(len, sizeof len, "%d", i);
        memset(text, 'a' + i % 26, (size_t)i);
        text[i] = '\0';
        const char *values[] = { text, len };
        pgev_query_args args = { .stmt = "qsize", .nparams = 2, .param_values = values };
        p[i].index = i;
        ck_assert_int_gt(tu_submit(conn, &args, &p[i], false), 0);
        memset(text, '#', 5000);
        memset(len, '9', sizeof len - 1);
    }
    for (int i = 0; i < N; i++) {
        char len[16];
        uint32_t net = htonl((uint32_t)(i + 1000));
        snprintf(len, sizeof len, "%d", sizes[i]);
        memset(text, 'a' + sizes[i] % 26, (size_t)sizes[i]);
        text[sizes[i]] = '\0';
        const char *values[] = { text, (const char *)&net, NULL, len };
        const int lengths[] = { 0, 4, 0, 0 };
        const int formats[] = { 0, 1, 0, 0 };
        const Oid types[] = { TEXTOID, INT4OID, TEXTOID, INT4OID };
        pgev_query_args args = {
            .sql = "SELECT ($1 = repeat(chr(97 + $4 % 26), $4))::text || '|' || $2 || '|' || "
                   "($3 IS NULL)::text",
            .nparams = 4,
            .param_types = types,
            .param_values = values,
            .param_lengths = lengths,
            .param_formats = formats,
        };
        q[i].index = i;
        ck_assert_int_gt(tu_submit(conn, &args, &q[i], false), 0);
        memset(text, '#', 5000);    /* the caller reuses its buffer at once */
        net = 0;
    }
    ck_assert_int_eq(pgev_conn_pending(conn), 1 + NP + N);
    tu_wait_queries(p, NP, TU_WAIT_MS);
    tu_wait_queries(q, N, TU_WAIT_MS);
    for (int i = 0; i < NP; i++) {
        tu_assert_ok(&p[i]);
        ck_assert_msg(strcmp(p[i].value, "true") == 0, "prepared, %d bytes: got \"%s\"", i, p[i].value);
    }
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "true|%d|true", i + 1000);
        tu_assert_ok(&q[i]);
        ck_assert_msg(strcmp(q[i].value, want) == 0, "size %d: got \"%s\", want \"%s\"", sizes[i],
                      q[i].value, want);
    }
    free(text);
    free_conn();
    tu_assert_all_once(p, NP);
    tu_assert_all_once(q, N);
}
END_TEST

START_TEST(binary_results)
{
    open_conn();
    pgev_query_args args = {
        .sql = "SELECT 7::int4, 8::int8, 'abc'::text",
        .flags = PGEV_QUERY_BINARY,
    };
    tu_query q = { .on_done_hook = check_binary_result };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    /* Text is the default again for the next query. */
    tu_query q2 = { 0 };
    run("SELECT 7::int4", &q2);
    tu_assert_ok(&q2);
    ck_assert_str_eq(q2.value, "7");
    free_conn();
}
END_TEST

START_TEST(prepare_and_execute)
{
    open_conn();
    tu_query q[6];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 6; i++)
        q[i].index = i;
    const Oid types[] = { INT4OID };
    /* Submitted back to back: ordering guarantees the statement exists. */
    ck_assert_int_gt(tu_prepare(conn, "double_it", "SELECT $1 * 2", 1, types, &q[0]), 0);
    const char *v21[] = { "21" };
    ck_assert_int_gt(tu_execute(conn, "double_it", 1, v21, &q[1]), 0);
    const char *v5[] = { "5" };
    ck_assert_int_gt(tu_execute(conn, "double_it", 1, v5, &q[2]), 0);
    /* Same name again: the server refuses (42P05). */
    ck_assert_int_gt(tu_prepare(conn, "double_it", "SELECT 1", 0, NULL, &q[3]), 0);
    /* Untyped parameter, unnamed statement. */
    ck_assert_int_gt(tu_prepare(conn, "", "SELECT $1::text || '!'", 1, NULL, &q[4]), 0);
    const char *hi[] = { "hi" };
    ck_assert_int_gt(tu_execute(conn, "", 1, hi, &q[5]), 0);
    tu_wait_queries(q, 6, TU_WAIT_MS);

    tu_assert_ok(&q[0]);
    ck_assert_int_eq(q[0].rows_affected, -1);
    tu_assert_ok(&q[1]);
    ck_assert_str_eq(q[1].value, "42");
    tu_assert_ok(&q[2]);
    ck_assert_str_eq(q[2].value, "10");
    ck_assert_int_eq(q[3].status, PGEV_ESERVER);
    ck_assert_str_eq(q[3].sqlstate, "42P05");
    tu_assert_ok(&q[4]);
    tu_assert_ok(&q[5]);
    ck_assert_str_eq(q[5].value, "hi!");

    /* Execute through pgev_conn_submit, binary results. */
    const char *v3[] = { "3" };
    pgev_query_args args = {
        .stmt = "double_it",
        .nparams = 1,
        .param_values = v3,
        .flags = PGEV_QUERY_BINARY,
    };
    tu_query q6 = { 0 };
    ck_assert_int_gt(tu_submit(conn, &args, &q6, false), 0);
    tu_wait_query(&q6);
    tu_assert_ok(&q6);
    ck_assert_int_eq(q6.ntuples, 1);
    free_conn();
    tu_assert_all_once(q, 6);
    /* Documented: a prepare completes OK with an empty command tag. */
    ck_assert_msg(q[0].command[0] == '\0', "prepare's command tag: \"%s\"", q[0].command);
}
END_TEST

START_TEST(execute_unknown_statement)
{
    open_conn();
    tu_query q[3];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[0]), 0);
    ck_assert_int_gt(tu_execute(conn, "pgev_no_such_stmt", 0, NULL, &q[1]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 3", &q[2]), 0);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    ck_assert_int_eq(q[1].status, PGEV_ESERVER);
    ck_assert_str_eq(q[1].sqlstate, "26000");
    ck_assert_msg(strstr(q[1].message, "pgev_no_such_stmt") != NULL, "message: %s",
                  q[1].message);
    tu_assert_ok(&q[2]);
    ck_assert_str_eq(q[2].value, "3");
    free_conn();
    tu_assert_all_once(q, 3);
}
END_TEST

/* ---- pipelining and order ----------------------------------------------- */

static int next_expected;

static void check_sequence(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    TU_CHECK(q->status == PGEV_OK, "query %d failed: %s", q->index, q->message);
    int64_t v = -1;
    TU_CHECK(pgev_result_get_int64(res, 0, 0, &v) == PGEV_OK, "query %d: get_int64", q->index);
    TU_CHECK(v == next_expected && q->index == next_expected,
             "result %lld (query %d) arrived when %d was expected", (long long)v, q->index,
             next_expected);
    next_expected++;
}

static void pipelined(int n, const pgev_conn_options *opts, tu_query_hook extra)
{
    conn = tu_connect(opts);
    tu_query *q = calloc((size_t)n, sizeof *q);
    ck_assert_ptr_nonnull(q);
    next_expected = 0;
    for (int i = 0; i < n; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        const char *values[] = { num };
        q[i].index = i;
        q[i].on_done_hook = extra ? extra : check_sequence;
        int64_t id = tu_query_params(conn, "SELECT $1::int", 1, values, &q[i]);
        ck_assert_msg(id > 0, "submit %d: %s (%s)", i, pgev_strerror((int)id),
                      pgev_conn_errmsg(conn));
    }
    ck_assert_int_eq(pgev_conn_pending(conn) + pgev_conn_inflight(conn) + tu_done_total, n);
    tu_wait_queries(q, n, 60000);
    ck_assert_int_eq(next_expected, n);
    ck_assert_int_eq(pgev_conn_pending(conn), 0);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);
    free_conn();
    tu_assert_all_once(q, n);
    free(q);
    tu_assert_base_idle();
}

START_TEST(pipelined_in_order)
{
    pipelined(12000, NULL, NULL);
}
END_TEST

static int max_inflight_seen;

static void check_window(pgev_conn *c, pgev_result *res, tu_query *q)
{
    int inflight = pgev_conn_inflight(c);
    if (inflight > max_inflight_seen)
        max_inflight_seen = inflight;
    TU_CHECK(inflight <= 2, "%d queries in flight with max_inflight 2", inflight);
    check_sequence(c, res, q);
}

START_TEST(small_inflight_window)
{
    pgev_conn_options opts = { .max_inflight = 2 };
    max_inflight_seen = 0;
    pipelined(1000, &opts, check_window);
    ck_assert_int_le(max_inflight_seen, 2);
}
END_TEST

START_TEST(backpressure_while_connecting)
{
    pgev_conn_options opts = { .max_pending = 10 };
    conn = tu_conn_new(tu_dsn(), &opts);
    ck_assert_ptr_nonnull(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CONNECTING);
    tu_query q[12];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 10; i++) {
        q[i].index = i;
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    }
    ck_assert_int_eq(pgev_conn_pending(conn), 10);
    q[10].index = 10;
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &q[10]), PGEV_EQUEUEFULL);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(pgev_conn_pending(conn), 10);
    tu_wait_queries(q, 10, TU_WAIT_MS);
    for (int i = 0; i < 10; i++)
        tu_assert_ok(&q[i]);
    /* Room again once drained. */
    q[11].index = 11;
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[11]), 0);
    tu_wait_query(&q[11]);
    tu_assert_ok(&q[11]);
    ck_assert_int_eq(q[10].done_calls, 0);
    free_conn();
    tu_assert_all_once(q, 12);
    tu_assert_base_idle();
}
END_TEST

START_TEST(backpressure_when_ready)
{
    pgev_conn_options opts = { .max_pending = 2, .max_inflight = 1 };
    conn = tu_connect(&opts);
    tu_query q[5];
    memset(q, 0, sizeof q);
    /* One goes on the wire at once, two wait, the fourth is refused. */
    ck_assert_int_gt(tu_query_sql(conn, "SELECT pg_sleep(0.05)", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 3", &q[2]), 0);
    ck_assert_int_eq(pgev_conn_inflight(conn), 1);
    ck_assert_int_eq(pgev_conn_pending(conn), 2);
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 4", &q[3]), PGEV_EQUEUEFULL);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    for (int i = 0; i < 3; i++)
        tu_assert_ok(&q[i]);
    ck_assert_str_eq(q[2].value, "3");
    free_conn();
    tu_assert_all_once(q, 5);
}
END_TEST

static tu_query chain[100];

static void submit_next_in_chain(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)res;
    ck_assert_msg(q->status == PGEV_OK, "chain %d: %s", q->index, q->message);
    if (q->index + 1 < 100) {
        tu_query *next = &chain[q->index + 1];
        next->index = q->index + 1;
        next->on_done_hook = submit_next_in_chain;
        char sql[32];
        snprintf(sql, sizeof sql, "SELECT %d", next->index);
        ck_assert_int_gt(tu_query_sql(c, sql, next), 0);
        ck_assert_int_eq(next->done_calls, 0);
    }
}

START_TEST(submit_from_callback)
{
    open_conn();
    memset(chain, 0, sizeof chain);
    chain[0].on_done_hook = submit_next_in_chain;
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 0", &chain[0]), 0);
    tu_wait_count(&tu_done_total, 100, TU_WAIT_MS, "100 chained queries");
    for (int i = 0; i < 100; i++) {
        tu_assert_ok(&chain[i]);
        ck_assert_int_eq(atoi(chain[i].value), i);
    }
    free_conn();
    tu_assert_all_once(chain, 100);
    tu_assert_base_idle();
}
END_TEST

START_TEST(fire_and_forget)
{
    open_conn();
    tu_in_call++;
    ck_assert_int_gt(pgev_conn_query(conn, "SELECT 1", NULL, NULL), 0);
    ck_assert_int_gt(pgev_conn_query(conn, "SELECT 1/0", NULL, NULL), 0);
    pgev_query_args args = { .sql = "SELECT g FROM generate_series(1,10) g" };
    ck_assert_int_gt(pgev_conn_submit(conn, &args), 0);
    tu_in_call--;
    tu_query q = { 0 };
    run("SELECT 4", &q);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.value, "4");
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);
    free_conn();
    tu_assert_base_idle();
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(error_isolation)
{
    open_conn();
    enum { N = 7 };
    const char *sql[N] = { "SELECT 1",           "SELECT 1/0", "SELECT 3",
                           "SELECT pgev_bogus",  "SELECT 5",   "SELECT 1/0",
                           "SELECT 7" };
    tu_query q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        ck_assert_int_gt(tu_query_sql(conn, sql[i], &q[i]), 0);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    for (int i = 0; i < N; i += 2) {
        tu_assert_ok(&q[i]);
        ck_assert_int_eq(atoi(q[i].value), i + 1);
    }
    for (int i = 1; i < N; i++)
        ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    ck_assert_int_eq(q[1].status, PGEV_ESERVER);
    ck_assert_str_eq(q[1].sqlstate, "22012");
    ck_assert_str_eq(q[1].message, "division by zero");
    ck_assert_str_eq(q[1].severity, "ERROR");
    ck_assert(q[1].has_pg);
    ck_assert_int_eq(q[1].pg_status, PGRES_FATAL_ERROR);
    ck_assert_str_eq(q[1].command, "");
    ck_assert_int_eq(q[3].status, PGEV_ESERVER);
    ck_assert_str_eq(q[3].sqlstate, "42703");
    ck_assert_int_eq(q[5].status, PGEV_ESERVER);
    ck_assert_str_eq(q[5].sqlstate, "22012");
    free_conn();
    tu_assert_all_once(q, N);
}
END_TEST

START_TEST(error_fields)
{
    open_conn();
    tu_query q = { 0 };

    run("SELECT * FROM pgev_nosuch_table", &q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "42P01");
    ck_assert_str_eq(q.severity, "ERROR");
    ck_assert_int_eq(q.position, 15);
    ck_assert_msg(strstr(q.message, "pgev_nosuch_table") != NULL, "message: %s", q.message);
    ck_assert(!q.has_detail);

    memset(&q, 0, sizeof q);
    run("SELEC 1", &q);
    ck_assert_str_eq(q.sqlstate, "42601");
    ck_assert_int_eq(q.position, 1);

    memset(&q, 0, sizeof q);
    run("SELECT pgev_nosuch_func(1)", &q);
    ck_assert_str_eq(q.sqlstate, "42883");
    ck_assert_int_eq(q.position, 8);
    ck_assert_msg(q.has_hint && strstr(q.hint, "No function matches") != NULL, "hint: %s",
                  q.has_hint ? q.hint : "(none)");

    memset(&q, 0, sizeof q);
    run("DO $$ BEGIN RAISE EXCEPTION 'pgev-custom' USING DETAIL = 'pgev-detail', "
        "HINT = 'pgev-hint', ERRCODE = 'P0042'; END $$",
        &q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "P0042");
    ck_assert_str_eq(q.message, "pgev-custom");
    ck_assert(q.has_detail);
    ck_assert_str_eq(q.detail, "pgev-detail");
    ck_assert(q.has_hint);
    ck_assert_str_eq(q.hint, "pgev-hint");
    ck_assert_int_eq(q.position, 0);

    run_ok("CREATE TEMP TABLE uv (id int PRIMARY KEY)");
    run_ok("INSERT INTO uv VALUES (1)");
    memset(&q, 0, sizeof q);
    run("INSERT INTO uv VALUES (1)", &q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "23505");
    ck_assert(q.has_detail);
    ck_assert_str_eq(q.detail, "Key (id)=(1) already exists.");
    free_conn();
}
END_TEST

START_TEST(multi_statement_refused)
{
    open_conn();
    tu_query q[2];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1; SELECT 2", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 3", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    ck_assert_int_eq(q[0].status, PGEV_ESERVER);
    ck_assert_str_eq(q[0].sqlstate, "42601");
    tu_assert_ok(&q[1]);
    ck_assert_str_eq(q[1].value, "3");
    free_conn();
    tu_assert_all_once(q, 2);
}
END_TEST

START_TEST(too_many_params)
{
    open_conn();
    int n = PGEV_MAX_PARAMS + 1;
    const char **values = calloc((size_t)n, sizeof *values);
    ck_assert_ptr_nonnull(values);
    for (int i = 0; i < n; i++)
        values[i] = "1";
    tu_query q[3];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT pg_sleep(0.02), 1", &q[0]), 0);
    ck_assert_int_eq(tu_query_params(conn, "SELECT $1", n, values, &q[1]), PGEV_EINVAL);
    const char *msg = pgev_conn_errmsg(conn);
    ck_assert_msg(strstr(msg, "65535") != NULL, "errmsg does not name the limit: \"%s\"", msg);
    free(values);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[2]), 0);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[2]);
    free_conn();
    tu_assert_all_once(q, 3);
}
END_TEST

/* Big parameters going out while big results come back: the client must
 * keep reading while its own output is blocked, or both sides stall. */
static void check_echo_length(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    TU_CHECK(q->status == PGEV_OK, "query %d: %s", q->index, q->message);
    int64_t len = 0;
    TU_CHECK(pgev_result_get_int64(res, 0, 0, &len) == PGEV_OK && len == 200000,
             "query %d: length %lld", q->index, (long long)len);
    const char *text = NULL;
    size_t text_len = 0;
    TU_CHECK(pgev_result_get_text(res, 0, 1, &text, &text_len) == PGEV_OK &&
                 text_len == 200000 && text[0] == 'a' + q->index % 26,
             "query %d: echoed text of %zu bytes", q->index, text_len);
}

START_TEST(large_params_full_duplex)
{
    open_conn();
    enum { N = 300, SIZE = 200000 };
    char *big = malloc(SIZE + 1);
    ck_assert_ptr_nonnull(big);
    tu_query *q = calloc(N, sizeof *q);
    ck_assert_ptr_nonnull(q);
    for (int i = 0; i < N; i++) {
        memset(big, 'a' + i % 26, SIZE);
        big[SIZE] = '\0';
        const char *values[] = { big };
        q[i].index = i;
        q[i].on_done_hook = check_echo_length;
        ck_assert_int_gt(tu_query_params(conn, "SELECT length($1), $1", 1, values, &q[i]), 0);
    }
    free(big);
    tu_wait_queries(q, N, 60000);
    for (int i = 1; i < N; i++)
        ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    free_conn();
    tu_assert_all_once(q, N);
    free(q);
}
END_TEST

START_TEST(large_query_text)
{
    open_conn();
    enum { SIZE = 8 * 1024 * 1024 };
    char *sql = malloc(SIZE + 64);
    ck_assert_ptr_nonnull(sql);
    strcpy(sql, "SELECT length('");
    size_t off = strlen(sql);
    memset(sql + off, 'q', SIZE);
    strcpy(sql + off + SIZE, "')");
    tu_query q[2];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, sql, &q[0]), 0);
    free(sql); /* copied or sent during the submit */
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    ck_assert_str_eq(q[0].value, "8388608");
    tu_assert_ok(&q[1]);
    free_conn();
}
END_TEST

START_TEST(max_params_exactly)
{
    open_conn();
    int n = PGEV_MAX_PARAMS;
    const char **values = calloc((size_t)n, sizeof *values);
    size_t size = (size_t)n * 8 + 128;
    char *sql = malloc(size);
    ck_assert(values != NULL && sql != NULL);
    size_t off = (size_t)snprintf(sql, size, "SELECT array_length(ARRAY[");
    for (int i = 0; i < n; i++) {
        values[i] = i % 2 ? "1" : "2";
        off += (size_t)snprintf(sql + off, size - off, "%s$%d", i ? "," : "", i + 1);
    }
    snprintf(sql + off, size - off, "]::int[], 1)");
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_params(conn, sql, n, values, &q), 0);
    free(values);
    free(sql);
    tu_wait_queries(&q, 1, TU_WAIT_MS);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.value, "65535");
    free_conn();
}
END_TEST

START_TEST(empty_query)
{
    open_conn();
    tu_query q[2];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    /* Whatever the empty query's status, it completes once, in order. */
    ck_assert_int_ne(q[0].status, PGEV_ECONNLOST);
    tu_assert_ok(&q[1]);
    ck_assert_str_eq(q[1].value, "2");
    ck_assert_int_lt(q[0].done_seq, q[1].done_seq);
    free_conn();
    tu_assert_all_once(q, 2);
}
END_TEST

START_TEST(explicit_transactions)
{
    open_conn();
    run_ok("CREATE TEMP TABLE tx (id int)");
    const char *sql[] = {
        "BEGIN",
        "INSERT INTO tx VALUES (1)",
        "ROLLBACK",
        "SELECT count(*) FROM tx",
        "BEGIN",
        "SELECT 1/0",
        "SELECT 1",
        "ROLLBACK",
        "BEGIN",
        "INSERT INTO tx VALUES (2)",
        "COMMIT",
        "SELECT count(*) FROM tx",
    };
    enum { N = sizeof sql / sizeof sql[0] };
    tu_query q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < (int)N; i++) {
        q[i].index = i;
        ck_assert_int_gt(tu_query_sql(conn, sql[i], &q[i]), 0);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    for (int i = 0; i < 5; i++)
        tu_assert_ok(&q[i]);
    ck_assert_str_eq(q[0].command, "BEGIN");
    ck_assert_str_eq(q[3].value, "0");
    ck_assert_int_eq(q[5].status, PGEV_ESERVER);
    ck_assert_str_eq(q[5].sqlstate, "22012");
    /* A later query of the failed transaction (its own Sync): the server's
     * "transaction is aborted" error, not a batch abort. */
    ck_assert_int_eq(q[6].status, PGEV_ESERVER);
    ck_assert_str_eq(q[6].sqlstate, "25P02");
    for (int i = 7; i < (int)N; i++)
        tu_assert_ok(&q[i]);
    ck_assert_str_eq(q[7].command, "ROLLBACK");
    ck_assert_str_eq(q[11].value, "1");
    free_conn();
    tu_assert_all_once(q, N);
}
END_TEST

START_TEST(statement_timeout)
{
    open_conn();
    tu_query q[3];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SET statement_timeout = 100", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT pg_sleep(5)", &q[1]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 3", &q[2]), 0);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    ck_assert_int_eq(q[1].status, PGEV_ESERVER);
    ck_assert_str_eq(q[1].sqlstate, "57014");
    tu_assert_ok(&q[2]);
    ck_assert_str_eq(q[2].value, "3");
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    free_conn();
    tu_assert_all_once(q, 3);
}
END_TEST

/* COPY cannot run in pipeline mode: it must fail cleanly (any error), and
 * not take the queries around it down with it. */
START_TEST(copy_refused_cleanly)
{
    /* Pipeline mode cannot carry COPY: it is refused at submit, with a
     * clear message, and the queries around it are untouched. */
    static const char *const copies[] = {
        "COPY (SELECT 1) TO STDOUT", "copy ci from stdin", "  -- note\n /* c */ CoPy ci FROM STDIN",
    };
    open_conn();
    run_ok("CREATE TEMP TABLE ci (x int)");
    tu_query q[2];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[0]), 0);
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
        tu_query never = { 0 };
        ck_assert_int_eq(tu_query_sql(conn, copies[i], &never), PGEV_EINVAL);
        ck_assert_msg(strstr(pgev_conn_errmsg(conn), "COPY") != NULL, "errmsg: %s",
                      pgev_conn_errmsg(conn));
    }
    /* Words that merely start like COPY are ordinary SQL. */
    run_ok("CREATE TEMP TABLE copycat (x int)");
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM ci", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    ck_assert_str_eq(q[1].value, "0");
    free_conn();
    tu_assert_all_once(q, 2);
}
END_TEST

/* ---- atomic batches ----------------------------------------------------- */

START_TEST(batch_commits)
{
    open_conn();
    run_ok("CREATE TEMP TABLE bt (id int PRIMARY KEY)");
    tu_query q[4];
    memset(q, 0, sizeof q);
    tu_query batch = { .index = 99 };
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO bt VALUES (1)", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO bt VALUES (2)", &q[1]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM bt", &q[2]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM bt", &q[3]), 0);
    tu_wait_queries(q, 4, TU_WAIT_MS);
    tu_wait_query(&batch);
    for (int i = 0; i < 4; i++)
        tu_assert_ok(&q[i]);
    ck_assert_str_eq(q[0].command, "INSERT 0 1");
    ck_assert_str_eq(q[2].value, "2");
    ck_assert_str_eq(q[3].value, "2");
    tu_assert_ok(&batch);
    /* The batch completes after its own queries and before later ones. */
    ck_assert_int_lt(q[2].done_seq, batch.done_seq);
    ck_assert_int_lt(batch.done_seq, q[3].done_seq);
    free_conn();
    tu_assert_all_once(q, 4);
    tu_assert_all_once(&batch, 1);
}
END_TEST

START_TEST(batch_rolls_back)
{
    open_conn();
    run_ok("CREATE TEMP TABLE bt (id int PRIMARY KEY)");
    tu_query q[6];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 6; i++)
        q[i].index = i;
    tu_query batch = { .index = 99 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'before'", &q[0]), 0);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO bt VALUES (10)", &q[1]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1/0", &q[2]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO bt VALUES (11)", &q[3]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 4", &q[4]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM bt", &q[5]), 0);
    tu_wait_queries(q, 6, TU_WAIT_MS);
    tu_wait_query(&batch);

    tu_assert_ok(&q[0]);
    /* It ran, but its batch was rolled back: not OK. */
    ck_assert_int_eq(q[1].status, PGEV_EABORTED);
    ck_assert(strstr(q[1].message, "rolled back") != NULL);
    ck_assert_int_eq(q[2].status, PGEV_ESERVER);
    ck_assert_str_eq(q[2].sqlstate, "22012");
    ck_assert_int_eq(q[3].status, PGEV_EABORTED);
    ck_assert(!q[3].has_pg);
    ck_assert_int_eq(q[4].status, PGEV_EABORTED);
    ck_assert_int_eq(batch.status, PGEV_ESERVER);
    ck_assert_str_eq(batch.sqlstate, "22012");
    ck_assert_str_eq(batch.message, "division by zero");
    ck_assert_int_lt(q[4].done_seq, batch.done_seq);
    ck_assert_int_lt(batch.done_seq, q[5].done_seq);
    /* The insert that succeeded inside the batch was rolled back. */
    tu_assert_ok(&q[5]);
    ck_assert_str_eq(q[5].value, "0");

    /* The connection is fine afterwards, and a second batch commits. */
    tu_query q2[3];
    memset(q2, 0, sizeof q2);
    tu_query batch2 = { 0 };
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO bt VALUES (20)", &q2[0]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "INSERT INTO bt VALUES (21)", &q2[1]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch2), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM bt", &q2[2]), 0);
    tu_wait_queries(q2, 3, TU_WAIT_MS);
    tu_assert_ok(&batch2);
    ck_assert_str_eq(q2[2].value, "2");
    free_conn();
    tu_assert_all_once(q, 6);
    tu_assert_all_once(q2, 3);
}
END_TEST

START_TEST(batch_misuse)
{
    open_conn();
    tu_query q[3];
    memset(q, 0, sizeof q);
    tu_query bad_end = { 0 }, batch = { 0 }, bad_end2 = { 0 };
    ck_assert_int_eq(tu_batch_end(conn, &bad_end), PGEV_ESTATE);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_ESTATE);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[0]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_eq(tu_batch_end(conn, &bad_end2), PGEV_ESTATE);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    tu_wait_query(&batch);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&batch);
    tu_assert_ok(&q[1]);
    free_conn();
    ck_assert_int_eq(bad_end.done_calls, 0);
    ck_assert_int_eq(bad_end2.done_calls, 0);
    tu_assert_all_once(&batch, 1);
}
END_TEST

START_TEST(batch_empty)
{
    open_conn();
    tu_query batch = { 0 };
    tu_query q = { 0 };
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_eq(batch.done_calls, 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q), 0);
    tu_wait_query(&q);
    tu_wait_query(&batch);
    tu_assert_ok(&batch);
    tu_assert_ok(&q);
    ck_assert_int_lt(batch.done_seq, q.done_seq);
    free_conn();
    tu_assert_all_once(&batch, 1);
}
END_TEST

START_TEST(batch_with_params_and_prepared)
{
    open_conn();
    run_ok("CREATE TEMP TABLE bp (id int, v text)");
    tu_query q[4];
    memset(q, 0, sizeof q);
    tu_query batch = { 0 };
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    const char *v1[] = { "1", "one" };
    ck_assert_int_gt(tu_query_params(conn, "INSERT INTO bp VALUES ($1, $2)", 2, v1, &q[0]), 0);
    ck_assert_int_gt(tu_prepare(conn, "ins", "INSERT INTO bp VALUES ($1, $2)", 2, NULL, &q[1]),
                     0);
    const char *v2[] = { "2", "two" };
    ck_assert_int_gt(tu_execute(conn, "ins", 2, v2, &q[2]), 0);
    ck_assert_int_eq(tu_batch_end(conn, &batch), PGEV_OK);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT string_agg(v, ',' ORDER BY id) FROM bp", &q[3]),
                     0);
    tu_wait_queries(q, 4, TU_WAIT_MS);
    tu_wait_query(&batch);
    for (int i = 0; i < 4; i++)
        tu_assert_ok(&q[i]);
    tu_assert_ok(&batch);
    ck_assert_str_eq(q[3].value, "one,two");
    free_conn();
}
END_TEST

/* ---- results ------------------------------------------------------------ */

START_TEST(command_tags_and_rows_affected)
{
    open_conn();
    struct {
        const char *sql;
        const char *command;
        int64_t affected;
        int64_t rows;
    } cases[] = {
        { "CREATE TEMP TABLE ra (id int, v text)", "CREATE TABLE", -1, 0 },
        { "INSERT INTO ra SELECT g, 'x' FROM generate_series(1,3) g", "INSERT 0 3", 3, 0 },
        { "UPDATE ra SET v = 'y' WHERE id <= 2", "UPDATE 2", 2, 0 },
        { "UPDATE ra SET v = 'z' WHERE false", "UPDATE 0", 0, 0 },
        { "DELETE FROM ra WHERE id = 3", "DELETE 1", 1, 0 },
        { "SELECT * FROM ra ORDER BY id", "SELECT 2", 2, 2 },
        { "SELECT 1 WHERE false", "SELECT 0", 0, 0 },
        { "SET application_name = 'pgev-test'", "SET", -1, 0 },
    };
    enum { N = sizeof cases / sizeof cases[0] };
    tu_query q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < (int)N; i++)
        ck_assert_int_gt(tu_query_sql(conn, cases[i].sql, &q[i]), 0);
    tu_wait_queries(q, N, TU_WAIT_MS);
    for (int i = 0; i < (int)N; i++) {
        tu_assert_ok(&q[i]);
        ck_assert_msg(strcmp(q[i].command, cases[i].command) == 0,
                      "\"%s\": command \"%s\", expected \"%s\"", cases[i].sql, q[i].command,
                      cases[i].command);
        ck_assert_msg(q[i].rows_affected == cases[i].affected,
                      "\"%s\": rows_affected %lld, expected %lld", cases[i].sql,
                      (long long)q[i].rows_affected, (long long)cases[i].affected);
        ck_assert_msg(q[i].rows == cases[i].rows, "\"%s\": rows %lld, expected %lld",
                      cases[i].sql, (long long)q[i].rows, (long long)cases[i].rows);
    }
    free_conn();
    tu_assert_all_once(q, N);
}
END_TEST

static void steal_it(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    PGresult *stolen = pgev_result_steal(res);
    ck_assert_ptr_nonnull(stolen);
    ck_assert_ptr_null(pgev_result_pg(res));
    ck_assert_ptr_null(pgev_result_steal(res));
    ck_assert_str_eq(pgev_result_command(res), q->command);
    q->user = stolen;
}

START_TEST(steal_result)
{
    open_conn();
    tu_query q = { .on_done_hook = steal_it };
    run("SELECT g, 'row' || g FROM generate_series(1,2) g", &q);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.command, "SELECT 2");
    /* More work so that pgev reuses whatever it reuses. */
    for (int i = 0; i < 10; i++)
        run_ok("SELECT repeat('z', 1000)");
    PGresult *pg = q.user;
    ck_assert_ptr_nonnull(pg);
    ck_assert_int_eq(PQresultStatus(pg), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(pg), 2);
    ck_assert_str_eq(PQgetvalue(pg, 1, 1), "row2");
    free_conn();
    /* Still usable after the connection is gone. */
    ck_assert_str_eq(PQgetvalue(pg, 0, 1), "row1");
    PQclear(pg);
    tu_assert_base_idle();
}
END_TEST

/* Steals before recording: the error accessors must keep working. */
static void steal_then_record(pgev_conn *c, pgev_result *res, void *arg)
{
    tu_query *q = arg;
    q->user = pgev_result_steal(res);
    ck_assert_ptr_nonnull(q->user);
    tu_done_cb(c, res, arg);
}

START_TEST(steal_error_result)
{
    open_conn();
    tu_query q = { 0 };
    tu_in_call++;
    q.id = pgev_conn_query(conn, "SELECT 1/0", steal_then_record, &q);
    tu_in_call--;
    ck_assert_int_gt(q.id, 0);
    tu_wait_query(&q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "22012");
    ck_assert_str_eq(q.message, "division by zero");
    ck_assert_str_eq(q.severity, "ERROR");
    ck_assert(!q.has_pg);
    PGresult *pg = q.user;
    ck_assert_int_eq(PQresultStatus(pg), PGRES_FATAL_ERROR);
    ck_assert_str_eq(PQresultErrorField(pg, PG_DIAG_SQLSTATE), "22012");
    PQclear(pg);
    free_conn();
    tu_assert_all_once(&q, 1);
}
END_TEST

/* ---- typed accessors ---------------------------------------------------- */

#define TYPED_SQL                                                                              \
    "SELECT 1::int2, 2::int4, 3::int8, 1.5::float8, true, 'txt'::text, NULL::int, "            \
    "5000000000::int8, (-5)::int2, (-2147483648)::int4, 1.5::float4, 26::oid, false, "        \
    "'vc'::varchar, '-Infinity'::float8, 9223372036854775807::int8, 'abc'::bytea, "          \
    "(-9223372036854775807 - 1)::int8, 2147483647::int8"

static void check_typed(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    bool binary = q->index == 1;
    ck_assert_int_eq(pgev_result_status(res), PGEV_OK);
    ck_assert_int_eq(PQfformat(pgev_result_pg(res), 0), binary ? 1 : 0);

    int64_t i64;
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 0, &i64), PGEV_OK);
    ck_assert_int_eq(i64, 1);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 1, &i64), PGEV_OK);
    ck_assert_int_eq(i64, 2);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 2, &i64), PGEV_OK);
    ck_assert_int_eq(i64, 3);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 7, &i64), PGEV_OK);
    ck_assert_int_eq(i64, 5000000000LL);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 8, &i64), PGEV_OK);
    ck_assert_int_eq(i64, -5);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 9, &i64), PGEV_OK);
    ck_assert_int_eq(i64, INT32_MIN);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 11, &i64), PGEV_OK);
    ck_assert_int_eq(i64, 26);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 15, &i64), PGEV_OK);
    ck_assert_int_eq(i64, INT64_MAX);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 17, &i64), PGEV_OK);
    ck_assert_int_eq(i64, INT64_MIN);
    i64 = 1234;
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 6, &i64), 1); /* NULL */
    ck_assert_int_eq(i64, 1234);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 3, &i64), PGEV_EINVAL); /* float8 */
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 4, &i64), PGEV_EINVAL); /* bool */
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 5, &i64), PGEV_EINVAL); /* text */
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 16, &i64), PGEV_EINVAL); /* bytea */
    ck_assert_int_eq(i64, 1234);

    int32_t i32;
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 0, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 1);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 1, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 2);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 2, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 3);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 8, &i32), PGEV_OK);
    ck_assert_int_eq(i32, -5);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 9, &i32), PGEV_OK);
    ck_assert_int_eq(i32, INT32_MIN);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 18, &i32), PGEV_OK);
    ck_assert_int_eq(i32, INT32_MAX);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 11, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 26);
    i32 = 99;
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 7, &i32), PGEV_EINVAL);  /* overflow */
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 15, &i32), PGEV_EINVAL); /* overflow */
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 17, &i32), PGEV_EINVAL); /* underflow */
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 3, &i32), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 6, &i32), 1);
    ck_assert_int_eq(i32, 99);

    double d;
    ck_assert_int_eq(pgev_result_get_double(res, 0, 3, &d), PGEV_OK);
    ck_assert(d == 1.5);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 10, &d), PGEV_OK);
    ck_assert(d == 1.5);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 14, &d), PGEV_OK);
    ck_assert(isinf(d) && d < 0);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 0, &d), PGEV_OK);
    ck_assert(d == 1.0);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 7, &d), PGEV_OK);
    ck_assert(d == 5000000000.0);
    d = 42.0;
    ck_assert_int_eq(pgev_result_get_double(res, 0, 6, &d), 1);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 4, &d), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 5, &d), PGEV_EINVAL);
    ck_assert(d == 42.0);

    bool b = false;
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 4, &b), PGEV_OK);
    ck_assert(b == true);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 12, &b), PGEV_OK);
    ck_assert(b == false);
    b = true;
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 6, &b), 1);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 0, &b), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 5, &b), PGEV_EINVAL);
    ck_assert(b == true);

    const char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(pgev_result_get_text(res, 0, 5, &text, &len), PGEV_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(text, "txt", 3) == 0);
    ck_assert_int_eq(pgev_result_get_text(res, 0, 13, &text, NULL), PGEV_OK);
    ck_assert(memcmp(text, "vc", 2) == 0);
    text = "sentinel";
    ck_assert_int_eq(pgev_result_get_text(res, 0, 6, &text, &len), 1);
    ck_assert_str_eq(text, "sentinel");
    if (binary) {
        /* Binary int4 and bytea are not text. */
        ck_assert_int_eq(pgev_result_get_text(res, 0, 1, &text, &len), PGEV_EINVAL);
        ck_assert_int_eq(pgev_result_get_text(res, 0, 16, &text, &len), PGEV_EINVAL);
    } else {
        ck_assert_int_eq(pgev_result_get_text(res, 0, 1, &text, &len), PGEV_OK);
        ck_assert_str_eq(text, "2");
        ck_assert_uint_eq(len, 1);
        ck_assert_int_eq(pgev_result_get_text(res, 0, 16, &text, &len), PGEV_OK);
        ck_assert_str_eq(text, "\\x616263");
    }

    /* No such field; no output pointer. */
    ck_assert_int_eq(pgev_result_get_int64(res, 1, 0, &i64), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int64(res, -1, 0, &i64), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 19, &i64), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, -1, &i64), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 1000, &i32), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_double(res, 5, 3, &d), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 99, &b), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_text(res, 0, 99, &text, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 0, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 0, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 3, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 4, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_text(res, 0, 5, NULL, &len), PGEV_EINVAL);
    q->user = res; /* marks that the checks ran */
}

static void typed_accessors(unsigned flags)
{
    open_conn();
    pgev_query_args args = { .sql = TYPED_SQL, .flags = flags };
    tu_query q = { .index = flags & PGEV_QUERY_BINARY ? 1 : 0, .on_done_hook = check_typed };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_ptr_nonnull(q.user);
    free_conn();
    tu_assert_all_once(&q, 1);
}

START_TEST(typed_accessors_text)
{
    typed_accessors(0);
}
END_TEST

START_TEST(typed_accessors_binary)
{
    typed_accessors(PGEV_QUERY_BINARY);
}
END_TEST

static void check_accessors_on_error(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    int64_t v = 5;
    const char *t = NULL;
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 0, &v), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_text(res, 0, 0, &t, NULL), PGEV_EINVAL);
    ck_assert_int_eq(v, 5);
    q->user = res;
}

START_TEST(typed_accessors_on_error_result)
{
    open_conn();
    tu_query q = { .on_done_hook = check_accessors_on_error };
    run("SELECT 1/0", &q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_ptr_nonnull(q.user);
    free_conn();
    tu_assert_all_once(&q, 1);
}
END_TEST

static Suite *query_suite(void)
{
    Suite *s = suite_create("query");
    TCase *tc = tu_tcase("basics", 60);
    tcase_add_test(tc, simple_query);
    tcase_add_test(tc, query_ids_unique);
    tcase_add_test(tc, params_text_and_null);
    tcase_add_test(tc, params_explicit_types);
    tcase_add_test(tc, params_binary);
    tcase_add_test(tc, queued_copies_every_size);
    tcase_add_test(tc, binary_results);
    tcase_add_test(tc, prepare_and_execute);
    tcase_add_test(tc, execute_unknown_statement);
    tcase_add_test(tc, fire_and_forget);
    suite_add_tcase(s, tc);

    tc = tu_tcase("pipeline", 120);
    tcase_add_test(tc, pipelined_in_order);
    tcase_add_test(tc, small_inflight_window);
    tcase_add_test(tc, backpressure_while_connecting);
    tcase_add_test(tc, backpressure_when_ready);
    tcase_add_test(tc, submit_from_callback);
    suite_add_tcase(s, tc);

    tc = tu_tcase("errors", 60);
    tcase_add_test(tc, error_isolation);
    tcase_add_test(tc, error_fields);
    tcase_add_test(tc, multi_statement_refused);
    tcase_add_test(tc, too_many_params);
    tcase_add_test(tc, empty_query);
    tcase_add_test(tc, explicit_transactions);
    tcase_add_test(tc, statement_timeout);
    tcase_add_test(tc, copy_refused_cleanly);
    suite_add_tcase(s, tc);

    tc = tu_tcase("big", 120);
    tcase_add_test(tc, large_params_full_duplex);
    tcase_add_test(tc, large_query_text);
    tcase_add_test(tc, max_params_exactly);
    suite_add_tcase(s, tc);

    tc = tu_tcase("batch", 60);
    tcase_add_test(tc, batch_commits);
    tcase_add_test(tc, batch_rolls_back);
    tcase_add_test(tc, batch_misuse);
    tcase_add_test(tc, batch_empty);
    tcase_add_test(tc, batch_with_params_and_prepared);
    suite_add_tcase(s, tc);

    tc = tu_tcase("results", 60);
    tcase_add_test(tc, command_tags_and_rows_affected);
    tcase_add_test(tc, steal_result);
    tcase_add_test(tc, steal_error_result);
    tcase_add_test(tc, typed_accessors_text);
    tcase_add_test(tc, typed_accessors_binary);
    tcase_add_test(tc, typed_accessors_on_error_result);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(query_suite());
}
