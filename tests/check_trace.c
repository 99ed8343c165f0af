/*
 * check_trace: the tracing hook. A connection reports connect, every
 * query's start and end (SQL, parameters, cache hit, duration, rows,
 * status and SQLSTATE, backend pid) and its disconnect; a pool adds its
 * acquires, releases and connections opened and closed, and marks its
 * connections' records with itself. Unset, nothing is reported.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_EVENTS = 256 };

typedef struct rec {
    pgev_trace t;
    char sql[128];
    char sqlstate[8];
} rec;

static rec events[MAX_EVENTS];
static int nevents;

static void
on_trace(const pgev_trace *t, void *arg)
{
    TU_CHECK(arg == &nevents, "trace_arg not passed");
    ck_assert_int_lt(nevents, MAX_EVENTS);
    rec *r = &events[nevents++];
    r->t = *t;
    snprintf(r->sql, sizeof r->sql, "%s", t->sql ? t->sql : "");
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", t->sqlstate ? t->sqlstate : "(null)");
    r->t.sql = NULL;
    r->t.sqlstate = NULL;
    r->t.message = NULL;
}

static int
count(pgev_trace_event ev)
{
    int n = 0;
    for (int i = 0; i < nevents; i++)
        n += events[i].t.event == ev;
    return n;
}

static const rec *
find(pgev_trace_event ev, int64_t query_id)
{
    for (int i = 0; i < nevents; i++)
        if (events[i].t.event == ev && (query_id == 0 || events[i].t.query_id == query_id))
            return &events[i];
    return NULL;
}

static bool
conn_closed(void *arg)
{
    return pgev_conn_state(arg) == PGEV_CONN_CLOSED;
}

START_TEST(connection_queries_traced)
{
    nevents = 0;
    pgev_conn_options opts = { .on_trace = on_trace, .trace_arg = &nevents };
    pgev_conn *conn = tu_connect(&opts);
    const rec *c = find(PGEV_TRACE_CONNECT, 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->t.status, PGEV_OK);
    ck_assert_int_eq(c->t.backend_pid, PQbackendPID(pgev_conn_pg(conn)));

    tu_query q[4];
    memset(q, 0, sizeof q);
    const char *values[1] = { "41" };
    ck_assert_int_gt(tu_query_params(conn, "SELECT $1::int + 1", 1, values, &q[0]), 0);
    /* QUERY_START is reported inside the submit. */
    const rec *s = find(PGEV_TRACE_QUERY_START, q[0].id);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->sql, "SELECT $1::int + 1");
    ck_assert_int_eq(s->t.nparams, 1);
    ck_assert_ptr_null(find(PGEV_TRACE_QUERY_END, q[0].id));
    tu_wait_query(&q[0]);
    /* The statement cache names statements once it knows the session
     * (its first answer): a second run prepares, a third hits. */
    tu_query again = { 0 };
    ck_assert_int_gt(tu_query_params(conn, "SELECT $1::int + 1", 1, values, &again), 0);
    tu_wait_query(&again);
    ck_assert_int_gt(tu_query_params(conn, "SELECT $1::int + 1", 1, values, &q[1]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1/0", &q[2]), 0);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT generate_series(1, 5)", &q[3]), 0);
    tu_wait_queries(q, 4, TU_WAIT_MS);

    const rec *e0 = find(PGEV_TRACE_QUERY_END, q[0].id), *e1 = find(PGEV_TRACE_QUERY_END, q[1].id);
    const rec *e2 = find(PGEV_TRACE_QUERY_END, q[2].id), *e3 = find(PGEV_TRACE_QUERY_END, q[3].id);
    ck_assert(e0 && e1 && e2 && e3);
    ck_assert_str_eq(e0->sql, "SELECT $1::int + 1");
    ck_assert_int_eq(e0->t.status, PGEV_OK);
    ck_assert_str_eq(e0->sqlstate, "");
    ck_assert_int_eq(e0->t.rows, 1);
    ck_assert(!e0->t.cache_hit);        /* prepared with it */
    ck_assert(e1->t.cache_hit);         /* executed by the cached statement */
    ck_assert_int_gt(e0->t.duration_us, 0);
    ck_assert_int_eq(e2->t.status, PGEV_ESERVER);
    ck_assert_str_eq(e2->sqlstate, "22012");
    ck_assert_int_eq(e3->t.rows, 5);
    ck_assert_int_eq(e3->t.backend_pid, c->t.backend_pid);
    /* The end comes before on_done. */
    ck_assert_int_lt((int)(e0 - events), (int)(e1 - events));

    ck_assert_int_eq(tu_close(conn), PGEV_OK);
    tu_run_until(conn_closed, conn, 5000, "the close");
    const rec *d = find(PGEV_TRACE_DISCONNECT, 0);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(d->t.status, PGEV_OK);
    ck_assert_int_eq(d->t.backend_pid, c->t.backend_pid);
    ck_assert_int_eq(count(PGEV_TRACE_QUERY_START), count(PGEV_TRACE_QUERY_END));
    for (int i = 0; i < nevents; i++)
        ck_assert_ptr_null(events[i].t.pool);
    pgev_conn_free(conn);
}
END_TEST

START_TEST(no_trace_when_unset)
{
    nevents = 0;
    pgev_conn *conn = tu_connect(NULL);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &q), 0);
    tu_wait_query(&q);
    pgev_conn_free(conn);
    ck_assert_int_eq(nevents, 0);
}
END_TEST

/* ---- the pool ------------------------------------------------------------ */

static pgev_conn *acquired;
static int64_t acquire_id;

static void
on_acquired(pgev_pool *pool, pgev_conn *conn, const pgev_error *err, void *arg)
{
    (void)pool;
    (void)arg;
    ck_assert_ptr_null(err);
    acquired = conn;
}

static void
pool_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    (void)res;
    (*(int *)arg)++;
}

static bool
have_acquired(void *arg)
{
    (void)arg;
    return acquired != NULL;
}

static bool
pool_closed(void *arg)
{
    return *(int *)arg > 0;
}

static void
on_pool_closed(pgev_pool *pool, void *arg)
{
    (void)pool;
    (*(int *)arg)++;
}

START_TEST(pool_traced)
{
    nevents = 0;
    acquired = NULL;
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .on_trace = on_trace, .trace_arg = &nevents };
    pgev_pool *pool = pgev_pool_new(tu_base, tu_dsn(), &opts);
    ck_assert_ptr_nonnull(pool);
    int done = 0;
    tu_in_call++;
    ck_assert_int_gt(pgev_pool_query(pool, "SELECT 1", pool_done, &done), 0);
    tu_in_call--;
    tu_wait_count(&done, 1, TU_WAIT_MS, "the pool query");
    const rec *open = find(PGEV_TRACE_POOL_CONN_OPEN, 0);
    ck_assert_ptr_nonnull(open);
    ck_assert_ptr_eq(open->t.pool, pool);
    ck_assert_int_gt(open->t.backend_pid, 0);
    const rec *end = find(PGEV_TRACE_QUERY_END, 0);
    ck_assert_ptr_nonnull(end);
    ck_assert_ptr_eq(end->t.pool, pool);    /* a connection's record, with its pool */
    ck_assert_str_eq(end->sql, "SELECT 1");

    tu_in_call++;
    acquire_id = pgev_pool_acquire(pool, on_acquired, NULL);
    tu_in_call--;
    ck_assert_int_gt(acquire_id, 0);
    tu_run_until(have_acquired, NULL, TU_WAIT_MS, "the acquire");
    const rec *a = find(PGEV_TRACE_POOL_ACQUIRE, 0);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->t.status, PGEV_OK);
    ck_assert_ptr_eq(a->t.conn, acquired);
    ck_assert_int_ge(a->t.duration_us, 0);
    ck_assert_int_eq(pgev_pool_release(pool, acquired, acquire_id), PGEV_OK);
    const rec *r = find(PGEV_TRACE_POOL_RELEASE, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_eq(r->t.conn, acquired);

    int closed = 0;
    ck_assert_int_eq(pgev_pool_close(pool, on_pool_closed, &closed), PGEV_OK);
    tu_run_until(pool_closed, &closed, TU_WAIT_MS, "the pool to close");
    const rec *cl = find(PGEV_TRACE_POOL_CONN_CLOSE, 0);
    ck_assert_ptr_nonnull(cl);
    ck_assert_int_eq(cl->t.status, PGEV_OK);
    pgev_pool_free(pool);
}
END_TEST

static Suite *
trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tu_tcase("trace", 30);
    tcase_add_test(tc, connection_queries_traced);
    tcase_add_test(tc, no_trace_when_unset);
    tcase_add_test(tc, pool_traced);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(trace_suite());
}
