/*
 * Server-free tests: status strings, and how every entry point treats NULL
 * and otherwise bad arguments. Connections here point at a local listener
 * that never answers, so they stay CONNECTING and nothing needs a server.
 */
#include "testutil.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const int all_codes[] = {
    PGEV_OK,       PGEV_EINVAL,   PGEV_ENOMEM,     PGEV_EQUEUEFULL, PGEV_ECLOSED,
    PGEV_ECONNECT, PGEV_ECONNLOST, PGEV_ESERVER,   PGEV_EABORTED,   PGEV_ECANCELLED,
    PGEV_ETIMEOUT, PGEV_ESTATE,
};
#define NCODES ((int)(sizeof all_codes / sizeof all_codes[0]))

START_TEST(strerror_known_codes)
{
    for (int i = 0; i < NCODES; i++) {
        const char *s = pgev_strerror(all_codes[i]);
        ck_assert_msg(s != NULL && *s != '\0', "pgev_strerror(%d) is empty", all_codes[i]);
        ck_assert_msg(strcmp(s, "unknown error") != 0, "pgev_strerror(%d) is \"unknown error\"",
                      all_codes[i]);
        for (int j = 0; j < i; j++)
            ck_assert_msg(strcmp(s, pgev_strerror(all_codes[j])) != 0,
                          "pgev_strerror(%d) and pgev_strerror(%d) are both \"%s\"", all_codes[i],
                          all_codes[j], s);
    }
    /* Stable pointers: static strings. */
    ck_assert_ptr_eq(pgev_strerror(PGEV_ECONNLOST), pgev_strerror(PGEV_ECONNLOST));
}
END_TEST

START_TEST(strerror_unknown_codes)
{
    const int unknown[] = { 1, 2, 100, -12, -13, -100, INT_MIN, INT_MAX };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_str_eq(pgev_strerror(unknown[i]), "unknown error");
}
END_TEST

/* String accessors given NULL may return NULL or ""; either way, no crash. */
static void assert_null_or_empty(const char *s, const char *what)
{
    ck_assert_msg(s == NULL || *s == '\0', "%s(NULL) returned \"%s\"", what, s);
}

START_TEST(error_accessors_null)
{
    /* NULL is bad input (EINVAL); OK would also be defensible, since
     * pgev_result_error() is NULL on success. */
    int code = pgev_error_code(NULL);
    ck_assert_msg(code == PGEV_EINVAL || code == PGEV_OK, "pgev_error_code(NULL) = %d", code);
    assert_null_or_empty(pgev_error_sqlstate(NULL), "pgev_error_sqlstate");
    assert_null_or_empty(pgev_error_severity(NULL), "pgev_error_severity");
    (void)pgev_error_message(NULL); /* "never NULL" for an error; NULL err must not crash */
    ck_assert_ptr_null(pgev_error_detail(NULL));
    ck_assert_ptr_null(pgev_error_hint(NULL));
    ck_assert_int_eq(pgev_error_position(NULL), 0);
}
END_TEST

START_TEST(result_accessors_null)
{
    ck_assert_int_eq(pgev_result_status(NULL), PGEV_EINVAL);
    ck_assert_ptr_null(pgev_result_error(NULL));
    ck_assert_ptr_null(pgev_result_pg(NULL));
    ck_assert_ptr_null(pgev_result_steal(NULL));
    ck_assert_int_le(pgev_result_query_id(NULL), 0);
    assert_null_or_empty(pgev_result_command(NULL), "pgev_result_command");
    ck_assert_int_eq(pgev_result_rows_affected(NULL), -1);
    ck_assert_int_le(pgev_result_rows(NULL), 0);

    int64_t i64 = 77;
    int32_t i32 = 77;
    double d = 77.0;
    bool b = true;
    const char *text = "untouched";
    size_t len = 77;
    ck_assert_int_eq(pgev_result_get_int64(NULL, 0, 0, &i64), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int32(NULL, 0, 0, &i32), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_double(NULL, 0, 0, &d), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_bool(NULL, 0, 0, &b), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_text(NULL, 0, 0, &text, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int64(NULL, 0, 0, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_text(NULL, 0, 0, NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_json(NULL, 0, 0, &text, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_column(NULL, "x"), PGEV_EINVAL);
    pgev_inet in = { .bits = 77 };
    pgev_interval iv = { .days = 77 };
    pgev_array *arr = (pgev_array *)&in;
    ck_assert_int_eq(pgev_result_get_inet(NULL, 0, 0, &in), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_interval(NULL, 0, 0, &iv), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_array(NULL, 0, 0, &arr), PGEV_EINVAL);
    ck_assert_ptr_eq(arr, (pgev_array *)&in);
    ck_assert_int_eq(in.bits, 77);
    ck_assert_int_eq(iv.days, 77);
    /* A NULL array: no elements, every element accessor refuses. */
    pgev_array_free(NULL);
    ck_assert_uint_eq(pgev_array_count(NULL), 0);
    ck_assert_int_eq(pgev_array_elem_type(NULL), 0);
    ck_assert_int_eq(pgev_array_is_null(NULL, 0), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_int64(NULL, 0, &i64), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_text(NULL, 0, &text, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_interval(NULL, 0, &iv), PGEV_EINVAL);
    /* Nothing stored on error. */
    ck_assert_int_eq(i64, 77);
    ck_assert_int_eq(i32, 77);
    ck_assert(d == 77.0);
    ck_assert(b == true);
    ck_assert_str_eq(text, "untouched");
    ck_assert_uint_eq(len, 77);
}
END_TEST

START_TEST(conn_functions_null)
{
    ck_assert_ptr_null(pgev_conn_new(NULL, "host=/nonexistent", NULL));
    ck_assert_ptr_null(pgev_conn_new(tu_base, NULL, NULL));
    pgev_conn_options opts = { 0 };
    ck_assert_ptr_null(pgev_conn_new(NULL, NULL, &opts));

    pgev_conn_free(NULL); /* no-op */
    ck_assert_int_eq(pgev_conn_close(NULL), PGEV_EINVAL);
    pgev_connection_state st = pgev_conn_state(NULL);
    ck_assert_msg(st >= PGEV_CONN_CONNECTING && st <= PGEV_CONN_FAILED,
                  "pgev_conn_state(NULL) = %d, not a state", (int)st);
    ck_assert_ptr_null(pgev_conn_error(NULL));
    const char *msg = pgev_conn_errmsg(NULL); /* "" or a message saying why */
    ck_assert_msg(msg == NULL || strlen(msg) < 1000, "pgev_conn_errmsg(NULL)");
    ck_assert_int_le(pgev_conn_pending(NULL), 0);
    ck_assert_int_le(pgev_conn_inflight(NULL), 0);
    ck_assert_ptr_null(pgev_conn_pg(NULL));
    ck_assert_ptr_null(pgev_conn_base(NULL));

    pgev_query_args args = { .sql = "SELECT 1" };
    ck_assert_int_eq(pgev_conn_submit(NULL, &args), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_submit(NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_query(NULL, "SELECT 1", tu_done_cb, NULL), PGEV_EINVAL);
    const char *vals[] = { "1" };
    ck_assert_int_eq(pgev_conn_query_params(NULL, "SELECT $1", 1, vals, tu_done_cb, NULL),
                     PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_prepare(NULL, "s", "SELECT 1", 0, NULL, tu_done_cb, NULL),
                     PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_execute(NULL, "s", 0, NULL, tu_done_cb, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_batch_begin(NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_batch_end(NULL, tu_done_cb, NULL), PGEV_EINVAL);
}
END_TEST

/* A connection that stays CONNECTING: TCP to a listener that never answers. */
static int blackhole_fd = -1;

static pgev_conn *connecting_conn(const pgev_conn_options *opts)
{
    int port;
    blackhole_fd = tu_listen_blackhole(&port);
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d dbname=pgev user=pgev sslmode=disable gssencmode=disable",
             port);
    pgev_conn *conn = tu_conn_new(conninfo, opts);
    ck_assert_ptr_nonnull(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_CONNECTING);
    ck_assert_ptr_eq(pgev_conn_base(conn), tu_base);
    return conn;
}

static void close_blackhole(void)
{
    if (blackhole_fd >= 0)
        close(blackhole_fd);
    blackhole_fd = -1;
}

static int in_free;

static void expect_cancelled_in_free(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)conn;
    (void)res;
    ck_assert_msg(in_free, "query %d: completed outside pgev_conn_free", q->index);
    ck_assert_int_eq(q->status, PGEV_ECANCELLED);
    ck_assert_msg(!q->has_pg, "query %d: a cancelled query has a PGresult", q->index);
}

static void free_conn(pgev_conn *conn)
{
    in_free = 1;
    pgev_conn_free(conn);
    in_free = 0;
}

START_TEST(submit_bad_arguments)
{
    pgev_conn *conn = connecting_conn(NULL);
    tu_query q[16];
    memset(q, 0, sizeof q);
    int n = 0;

    /* args NULL */
    tu_in_call++;
    q[n].id = pgev_conn_submit(conn, NULL);
    tu_in_call--;
    ck_assert_int_eq(q[n++].id, PGEV_EINVAL);

    /* neither sql nor stmt */
    pgev_query_args none = { 0 };
    ck_assert_int_eq(tu_submit(conn, &none, &q[n++], false), PGEV_EINVAL);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");

    /* both sql and stmt (only prepare takes both) */
    pgev_query_args both = { .sql = "SELECT 1", .stmt = "s1" };
    ck_assert_int_eq(tu_submit(conn, &both, &q[n++], false), PGEV_EINVAL);

    /* negative and too many parameters */
    pgev_query_args negative = { .sql = "SELECT 1", .nparams = -1 };
    ck_assert_int_eq(tu_submit(conn, &negative, &q[n++], false), PGEV_EINVAL);
    int too_many = PGEV_MAX_PARAMS + 1;
    const char **values = calloc((size_t)too_many, sizeof *values);
    ck_assert_ptr_nonnull(values);
    for (int i = 0; i < too_many; i++)
        values[i] = "1";
    pgev_query_args many = { .sql = "SELECT $1", .nparams = too_many, .param_values = values };
    ck_assert_int_eq(tu_submit(conn, &many, &q[n++], false), PGEV_EINVAL);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(tu_query_params(conn, "SELECT $1", 70000, values, &q[n++]), PGEV_EINVAL);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(tu_query_params(conn, "SELECT 1", -5, NULL, &q[n++]), PGEV_EINVAL);
    free(values);

    /* NULL sql / names */
    ck_assert_int_eq(tu_query_sql(conn, NULL, &q[n++]), PGEV_EINVAL);
    ck_assert_int_eq(tu_query_params(conn, NULL, 0, NULL, &q[n++]), PGEV_EINVAL);
    ck_assert_int_eq(tu_prepare(conn, NULL, "SELECT 1", 0, NULL, &q[n++]), PGEV_EINVAL);
    ck_assert_int_eq(tu_prepare(conn, "s1", NULL, 0, NULL, &q[n++]), PGEV_EINVAL);
    ck_assert_int_eq(tu_execute(conn, NULL, 0, NULL, &q[n++]), PGEV_EINVAL);

    /* Nothing was queued by any of them. */
    ck_assert_int_eq(pgev_conn_pending(conn), 0);
    ck_assert_int_eq(pgev_conn_inflight(conn), 0);

    /* A good query is still accepted afterwards, and cancelled by free. */
    q[n].on_done_hook = expect_cancelled_in_free;
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[n++]), 0);
    ck_assert_int_eq(pgev_conn_pending(conn), 1);

    free_conn(conn);
    tu_assert_all_once(q, n);
    close_blackhole();
    tu_assert_base_idle();
}
END_TEST

START_TEST(free_cancels_queued_queries)
{
    tu_connrec rec = { 0 };
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = connecting_conn(&opts);
    enum { N = 50 };
    tu_query q[N];
    memset(q, 0, sizeof q);
    int64_t last_id = 0;
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        q[i].on_done_hook = expect_cancelled_in_free;
        int64_t id = tu_query_sql(conn, "SELECT 1", &q[i]);
        ck_assert_int_gt(id, 0);
        ck_assert_int_ne(id, last_id);
        last_id = id;
    }
    ck_assert_int_eq(pgev_conn_pending(conn), N);
    ck_assert_int_eq(tu_done_total, 0);

    free_conn(conn);
    tu_assert_all_once(q, N);
    /* Completed in submission order. */
    for (int i = 1; i < N; i++)
        ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    /* free does not call on_connect / on_disconnect. */
    ck_assert_int_eq(rec.connect_calls, 0);
    ck_assert_int_eq(rec.disconnect_calls, 0);
    close_blackhole();
    tu_assert_base_idle();
}
END_TEST

START_TEST(queue_full_without_server)
{
    pgev_conn_options opts = { .max_pending = 3 };
    pgev_conn *conn = connecting_conn(&opts);
    tu_query q[5];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 3; i++) {
        q[i].on_done_hook = expect_cancelled_in_free;
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[i]), 0);
    }
    ck_assert_int_eq(tu_query_sql(conn, "SELECT 1", &q[3]), PGEV_EQUEUEFULL);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(pgev_conn_pending(conn), 3);
    free_conn(conn);
    tu_assert_all_once(q, 5);
    close_blackhole();
    tu_assert_base_idle();
}
END_TEST

START_TEST(batch_misuse_without_server)
{
    pgev_conn *conn = connecting_conn(NULL);
    tu_query q[4];
    memset(q, 0, sizeof q);

    ck_assert_int_eq(tu_batch_end(conn, &q[0]), PGEV_ESTATE);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_ESTATE);
    ck_assert_str_ne(pgev_conn_errmsg(conn), "");
    q[1].on_done_hook = expect_cancelled_in_free;
    q[2].on_done_hook = expect_cancelled_in_free;
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[1]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 2", &q[2]), 0);
    q[3].on_done_hook = expect_cancelled_in_free;
    ck_assert_int_eq(tu_batch_end(conn, &q[3]), PGEV_OK);
    ck_assert_int_eq(tu_batch_end(conn, &q[0]), PGEV_ESTATE);

    free_conn(conn);
    tu_assert_all_once(q, 4);
    /* The batch's on_done runs after its queries' callbacks. */
    ck_assert_int_lt(q[2].done_seq, q[3].done_seq);
    close_blackhole();
    tu_assert_base_idle();
}
END_TEST

START_TEST(free_with_open_batch)
{
    pgev_conn *conn = connecting_conn(NULL);
    tu_query q[2];
    memset(q, 0, sizeof q);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    q[0].on_done_hook = expect_cancelled_in_free;
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q[0]), 0);
    free_conn(conn); /* the batch was never ended */
    tu_assert_all_once(q, 1);
    close_blackhole();
    tu_assert_base_idle();
}
END_TEST

static Suite *result_suite(void)
{
    Suite *s = suite_create("result");
    TCase *tc = tu_tcase("strings", 10);
    tcase_add_test(tc, strerror_known_codes);
    tcase_add_test(tc, strerror_unknown_codes);
    suite_add_tcase(s, tc);

    tc = tu_tcase("null_arguments", 10);
    tcase_add_test(tc, error_accessors_null);
    tcase_add_test(tc, result_accessors_null);
    tcase_add_test(tc, conn_functions_null);
    suite_add_tcase(s, tc);

    tc = tu_tcase("without_server", 20);
    tcase_add_test(tc, submit_bad_arguments);
    tcase_add_test(tc, free_cancels_queued_queries);
    tcase_add_test(tc, queue_full_without_server);
    tcase_add_test(tc, batch_misuse_without_server);
    tcase_add_test(tc, free_with_open_batch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(result_suite());
}
