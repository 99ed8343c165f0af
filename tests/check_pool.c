/*
 * Pool tests: sizes (min, max, idle timeout, lifetime), least-loaded
 * dispatch, acquire/release (FIFO, exclusivity, timeout, waiter cap, dirty
 * release), the init hook, teardown (free with work, free from inside
 * callbacks, graceful close) and faults (server restart under load, server
 * down then back). Needs PGEV_TEST_DSN; the fault tests also need
 * PGEV_TEST_PGCLUSTER and PGEV_TEST_CLUSTER_DIR (set by tests/pg-harness.sh)
 * and are skipped without them.
 */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define APP_NAME "pgev_pool_test"

static pgev_pool *pool;
/* The pool a callback freed (its pointer, for identity checks only). */
static pgev_pool *freed_pool;
/* Raised while the test itself is inside pgev_pool_free(). */
static int in_free;
/* Raised while a callback that freed the pool is still running. */
static int freeing_callback;

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- recording pool queries and acquires -------------------------------- */

typedef struct pool_rec pool_rec;
typedef void (*pool_rec_hook)(pgev_conn *conn, pgev_result *res, pool_rec *r);
struct pool_rec {
    int64_t id;
    int index;
    int done_calls;
    int done_seq;
    uint64_t done_ms;
    int status;
    pgev_conn *conn;
    char value[64];
    char sqlstate[8];
    char message[512];
    pool_rec_hook hook;
};

static void
pool_done_cb(pgev_conn *conn, pgev_result *res, void *arg)
{
    pool_rec *r = arg;
    TU_CHECK(tu_in_call == 0, "pool query %d: on_done ran inside the submitting call", r->index);
    r->done_calls++;
    TU_CHECK(r->done_calls == 1, "pool query %d: on_done ran %d times", r->index, r->done_calls);
    tu_done_total++;
    r->done_seq = ++tu_seq;
    r->done_ms = mono_ms();
    r->status = pgev_result_status(res);
    r->conn = conn;
    if (r->status != PGEV_OK) {
        const pgev_error *err = pgev_result_error(res);
        TU_CHECK(err != NULL && pgev_error_code(err) == r->status,
                 "pool query %d: status %d without a matching error", r->index, r->status);
        snprintf(r->message, sizeof(r->message), "%s", pgev_error_message(err));
        snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", pgev_error_sqlstate(err));
        TU_CHECK(r->message[0] != '\0', "pool query %d: error without a message", r->index);
        TU_CHECK(conn != NULL || pgev_result_query_id(res) == 0,
                 "pool query %d: no connection but a query id", r->index);
    } else {
        TU_CHECK(conn != NULL, "pool query %d: succeeded without a connection", r->index);
        TU_CHECK(pgev_result_pg(res) != NULL, "pool query %d: PGEV_OK without a result", r->index);
        PGresult *pg = pgev_result_pg(res);
        if (pg && PQntuples(pg) > 0 && PQnfields(pg) > 0)
            snprintf(r->value, sizeof(r->value), "%s", PQgetvalue(pg, 0, 0));
    }
    if (r->hook)
        r->hook(conn, res, r);
}

static int64_t
pool_sql(const char *sql, pool_rec *r)
{
    tu_in_call++;
    r->id = pgev_pool_query(pool, sql, pool_done_cb, r);
    tu_in_call--;
    return r->id;
}

static int64_t
pool_params(const char *sql, int nparams, const char *const *values, pool_rec *r)
{
    tu_in_call++;
    r->id = pgev_pool_query_params(pool, sql, nparams, values, pool_done_cb, r);
    tu_in_call--;
    return r->id;
}

static bool
recs_done(void *arg)
{
    const pool_rec *r = ((const pool_rec **)arg)[0];
    int n = (int)(intptr_t)((void **)arg)[1];
    for (int i = 0; i < n; i++)
        if (r[i].id > 0 && r[i].done_calls == 0)
            return false;
    return true;
}

static void
wait_recs(pool_rec *r, int n, int timeout_ms)
{
    void *arg[2] = { r, (void *)(intptr_t)n };
    tu_run_until(recs_done, arg, timeout_ms, "pool queries to complete");
}

static void
assert_recs_once(const pool_rec *r, int n)
{
    for (int i = 0; i < n; i++) {
        if (r[i].id > 0)
            ck_assert_msg(r[i].done_calls == 1, "pool query %d: on_done ran %d times", i,
                          r[i].done_calls);
        else
            ck_assert_msg(r[i].done_calls == 0, "refused pool query %d called back", i);
    }
}

static void
assert_rec_ok(const pool_rec *r)
{
    ck_assert_msg(r->done_calls == 1 && r->status == PGEV_OK, "pool query %d: %s: %s", r->index,
                  pgev_strerror(r->status), r->message);
}

typedef struct acq_rec acq_rec;
typedef void (*acq_hook)(pgev_conn *conn, acq_rec *a);
struct acq_rec {
    int index;
    int64_t rc;         /* what pgev_pool_acquire() returned: the acquire id */
    int calls;
    int seq;
    uint64_t done_ms;
    int code;
    pgev_conn *conn;
    char message[512];
    acq_hook hook;
};

static void
acquire_cb(pgev_pool *p, pgev_conn *conn, const pgev_error *err, void *arg)
{
    acq_rec *a = arg;
    TU_CHECK(tu_in_call == 0, "acquire %d: called back inside a pool call", a->index);
    TU_CHECK(p == pool || (pool == freed_pool && freed_pool != NULL), "acquire %d: wrong pool",
             a->index);
    a->calls++;
    TU_CHECK(a->calls == 1, "acquire %d: called back %d times", a->index, a->calls);
    a->seq = ++tu_seq;
    a->done_ms = mono_ms();
    a->conn = conn;
    a->code = err ? pgev_error_code(err) : PGEV_OK;
    TU_CHECK((conn == NULL) == (err != NULL), "acquire %d: conn and err both or neither set",
             a->index);
    snprintf(a->message, sizeof(a->message), "%s", err ? pgev_error_message(err) : "");
    if (a->hook)
        a->hook(conn, a);
}

static int64_t
acquire(acq_rec *a)
{
    tu_in_call++;
    a->rc = pgev_pool_acquire(pool, acquire_cb, a);
    tu_in_call--;
    return a->rc;
}

static bool
acq_called(void *arg)
{
    return ((acq_rec *)arg)->calls > 0;
}

static void
wait_acquired(acq_rec *a)
{
    tu_run_until(acq_called, a, TU_WAIT_MS, "an acquire to call back");
}

/* Releases what a got, under a's acquire id. */
static int
release(acq_rec *a)
{
    tu_in_call++;
    int rc = pgev_pool_release(pool, a->conn, a->rc);
    tu_in_call--;
    return rc;
}

/* ---- pools and their state ---------------------------------------------- */

static pgev_pool *
make_pool(const pgev_pool_options *opts)
{
    char *dsn = tu_dsn_with("application_name", APP_NAME);
    tu_in_call++;
    pool = pgev_pool_new(tu_base, dsn, opts);
    tu_in_call--;
    free(dsn);
    ck_assert_msg(pool != NULL, "pgev_pool_new failed");
    return pool;
}

static void
free_pool(void)
{
    in_free = 1;
    pgev_pool_free(pool);
    in_free = 0;
    pool = NULL;
}

static pgev_pool_statistics
stats(void)
{
    pgev_pool_statistics st;
    ck_assert_int_eq(pgev_pool_stats(pool, &st), PGEV_OK);
    ck_assert_int_eq(st.conns, st.conns_connecting + st.conns_idle + st.conns_busy +
                                   st.conns_acquired + st.conns_other);
    return st;
}

static bool
idle_at_least(void *arg)
{
    return stats().conns_idle >= *(int *)arg;
}

static void
wait_idle(int n)
{
    tu_run_until(idle_at_least, &n, TU_WAIT_MS, "pool connections to be up and idle");
}

static int
backends(void)
{
    char *v = tu_exec_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'",
                            APP_NAME);
    int n = v ? atoi(v) : -1;
    free(v);
    return n;
}

/* Polls pg_stat_activity while the pool's loop runs (its maintenance timer
 * keeps the loop turning): a backend ends a little after its client. */
static bool
backends_are(void *arg)
{
    return backends() == *(int *)arg;
}

static void
wait_backends(int n)
{
    tu_run_until(backends_are, &n, TU_WAIT_MS, "the server's backend count");
}

static bool
conns_are(void *arg)
{
    return stats().conns == *(int *)arg;
}

/* ---- sizes -------------------------------------------------------------- */

START_TEST(min_size_reached)
{
    pgev_pool_options opts = { .min_conns = 3, .max_conns = 6 };
    make_pool(&opts);
    wait_idle(3);
    /* Only checks that no more open. */
    tu_run_for(600);
    pgev_pool_statistics st = stats();
    ck_assert_int_eq(st.conns, 3);
    ck_assert_int_eq(st.conns_idle, 3);
    ck_assert_int_eq(st.connects, 3);
    ck_assert_int_eq(backends(), 3);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* Per-connection order and the max: checked in every completion. */
#define MAX_SEEN_CONNS 16
static pgev_conn *seen_conns[MAX_SEEN_CONNS];
static int seen_last[MAX_SEEN_CONNS];
static int nseen;
static int max_conns_seen;

static void
check_value_and_order(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    (void)res;
    TU_CHECK(r->status == PGEV_OK, "query %d: %s", r->index, r->message);
    TU_CHECK(atoi(r->value) == r->index, "query %d got %s", r->index, r->value);
    pgev_pool_statistics st;
    pgev_pool_stats(pool, &st);
    if (st.conns > max_conns_seen)
        max_conns_seen = st.conns;
    int i;
    for (i = 0; i < nseen && seen_conns[i] != conn; i++)
        ;
    if (i == nseen) {
        TU_CHECK(nseen < MAX_SEEN_CONNS, "too many distinct connections");
        seen_conns[nseen] = conn;
        seen_last[nseen++] = -1;
    }
    TU_CHECK(seen_last[i] < r->index, "query %d completed after query %d on one connection",
             r->index, seen_last[i]);
    seen_last[i] = r->index;
}

START_TEST(max_never_exceeded)
{
    nseen = 0;
    max_conns_seen = 0;
    pgev_pool_options opts = { .max_conns = 4, .conn_max_inflight = 50, .max_pending = 20000 };
    make_pool(&opts);
    enum { N = 10000 };
    pool_rec *r = calloc(N, sizeof(*r));
    ck_assert_ptr_nonnull(r);
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        const char *values[] = { v };
        r[i].index = i;
        r[i].hook = check_value_and_order;
        ck_assert_int_gt(pool_params("SELECT $1::int", 1, values, &r[i]), 0);
    }
    /* Every connection the pool makes is in pg_stat_activity. */
    ck_assert_int_le(backends(), 4);
    wait_recs(r, N, 60000);
    assert_recs_once(r, N);
    ck_assert_int_le(max_conns_seen, 4);
    ck_assert_int_le(nseen, 4);
    ck_assert_int_ge(nseen, 2); /* it grew under load */
    ck_assert_int_le(backends(), 4);
    pgev_pool_statistics st = stats();
    ck_assert_int_eq(st.queries, N);
    ck_assert_int_eq(st.queries_failed, 0);
    ck_assert_int_eq(st.queued, 0);
    ck_assert_int_eq(st.outstanding, 0);
    ck_assert_int_le(st.connects, 4);
    free(r);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

static int chain_next;
static pool_rec chain[20];

static void
submit_next_in_chain(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    (void)conn;
    (void)res;
    (void)r;
    if (chain_next < 20) {
        chain[chain_next].index = chain_next;
        chain[chain_next].hook = submit_next_in_chain;
        pool_rec *next = &chain[chain_next++];
        TU_CHECK(pool_sql("SELECT 1", next) > 0, "chain submit: %s", pgev_pool_errmsg(pool));
    }
}

START_TEST(least_loaded_dispatch)
{
    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2 };
    make_pool(&opts);
    wait_idle(2);
    pool_rec slow = { .index = 100 };
    ck_assert_int_gt(pool_sql("SELECT pg_sleep(1)", &slow), 0);
    /* A client running quick queries one after another meanwhile: each
     * goes to the connection that is not busy with the sleep. */
    memset(chain, 0, sizeof(chain));
    chain_next = 0;
    submit_next_in_chain(NULL, NULL, NULL);
    uint64_t start = mono_ms();
    wait_recs(chain, 20, TU_WAIT_MS);
    ck_assert_int_eq(slow.done_calls, 0);
    ck_assert_int_lt(mono_ms() - start, 1000);
    for (int i = 0; i < 20; i++) {
        assert_rec_ok(&chain[i]);
        ck_assert_ptr_eq(chain[i].conn, chain[0].conn);
    }
    wait_recs(&slow, 1, TU_WAIT_MS);
    assert_rec_ok(&slow);
    ck_assert_ptr_ne(slow.conn, chain[0].conn);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/*
 * The pool keeps its own copy of every query's arguments (inline when
 * small, else allocated) and its connections borrow that copy instead of
 * copying again: queries queued in the pool before any connection is up,
 * each from a buffer the caller overwrites right after the submit. They
 * are read-only, so they share Sync segments on the connection; every
 * seventh fails, and the queries behind it in its segment are sent again
 * from the same borrowed copy.
 */
START_TEST(queued_queries_keep_their_arguments)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .conn_max_inflight = 16 };
    make_pool(&opts);
    enum { N = 150 };
    static pool_rec r[N];
    memset(r, 0, sizeof r);
    char *text = malloc(N + 1);
    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < N; i++) {
        char len[16];
        snprintf(len, sizeof len, "%d", i);
        memset(text, 'a' + i % 26, (size_t)i);
        text[i] = '\0';
        const char *values[] = { text, len };
        pgev_query_args args = {
            .sql = "SELECT CASE WHEN $2::int % 7 = 3 THEN (1 / ($2::int - $2::int))::text "
                   "ELSE ($1::text = repeat(chr(97 + $2::int % 26), $2::int))::text END",
            .nparams = 2,
            .param_values = values,
            .flags = PGEV_QUERY_READONLY,
            .on_done = pool_done_cb,
            .arg = &r[i],
        };
        r[i].index = i;
        tu_in_call++;
        r[i].id = pgev_pool_submit(pool, &args);
        tu_in_call--;
        ck_assert_int_gt(r[i].id, 0);
        memset(text, '#', N);
        memset(len, '9', sizeof len - 1);
    }
    ck_assert_int_eq(stats().queued, N);
    wait_recs(r, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        if (i % 7 == 3) {
            ck_assert_msg(r[i].done_calls == 1 && strcmp(r[i].sqlstate, "22012") == 0,
                          "query %d: want division_by_zero, got %s", i, pgev_strerror(r[i].status));
            continue;
        }
        assert_rec_ok(&r[i]);
        ck_assert_msg(strcmp(r[i].value, "true") == 0, "%d bytes: got \"%s\"", i, r[i].value);
    }
    free(text);
    free_pool();
    assert_recs_once(r, N);
    tu_assert_base_idle();
}
END_TEST

START_TEST(idle_timeout_shrinks_to_min)
{
    max_conns_seen = 0;
    nseen = 0;
    pgev_pool_options opts = {
        .min_conns = 1, .max_conns = 4, .idle_timeout_ms = 300, .conn_max_inflight = 5
    };
    make_pool(&opts);
    wait_idle(1);
    enum { N = 400 };
    pool_rec r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d FROM pg_sleep(0.001)", i);
        r[i].index = i;
        r[i].hook = check_value_and_order;
        ck_assert_int_gt(pool_sql(sql, &r[i]), 0);
    }
    wait_recs(r, N, 60000);
    assert_recs_once(r, N);
    ck_assert_int_gt(max_conns_seen, 1);
    int one = 1;
    tu_run_until(conns_are, &one, TU_WAIT_MS, "the pool to shrink to min_conns");
    wait_backends(1);
    pgev_pool_statistics st = stats();
    ck_assert_int_ge(st.conns_closed, 1);
    ck_assert_int_eq(st.conns_idle, 1);
    /* Still serves. */
    pool_rec after = { .index = 7 };
    ck_assert_int_gt(pool_sql("SELECT 7", &after), 0);
    wait_recs(&after, 1, TU_WAIT_MS);
    assert_rec_ok(&after);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

static bool
replaced(void *arg)
{
    (void)arg;
    pgev_pool_statistics st = stats();
    return st.conns_closed >= 2 && st.connects >= 3 && st.conns_idle == 1;
}

START_TEST(max_lifetime_replaces)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 2, .max_lifetime_ms = 400 };
    make_pool(&opts);
    wait_idle(1);
    tu_run_until(replaced, NULL, TU_WAIT_MS, "connections to be replaced after their lifetime");
    ck_assert_int_le(stats().conns, 2);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* ---- acquire / release -------------------------------------------------- */

START_TEST(acquire_fifo_and_exclusive)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    acq_rec a[3];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 3; i++) {
        a[i].index = i;
        ck_assert_int_gt(acquire(&a[i]), 0);
    }
    ck_assert_int_eq(a[0].calls, 0); /* never inside the call */
    wait_acquired(&a[0]);
    ck_assert_int_eq(a[0].code, PGEV_OK);
    ck_assert_ptr_nonnull(a[0].conn);
    ck_assert_int_eq(pgev_conn_state(a[0].conn), PGEV_CONN_READY);
    /* A pool query waits: the only connection is taken. */
    pool_rec q = { .index = 9 };
    ck_assert_int_gt(pool_sql("SELECT 9", &q), 0);
    pgev_pool_statistics st = stats();
    ck_assert_int_eq(st.conns_acquired, 1);
    ck_assert_int_eq(st.waiters, 2);
    ck_assert_int_eq(st.queued, 1);
    /* The holder can run queries on it. */
    tu_query own = { 0 };
    ck_assert_int_gt(tu_query_sql(a[0].conn, "SELECT 42", &own), 0);
    tu_wait_query(&own);
    tu_assert_ok(&own);
    ck_assert_str_eq(own.value, "42");
    ck_assert_int_eq(a[1].calls + q.done_calls, 0);

    ck_assert_int_eq(release(&a[0]), PGEV_OK);
    ck_assert_int_eq(release(&a[0]), PGEV_EINVAL); /* not acquired any more */
    wait_acquired(&a[1]);
    ck_assert_ptr_eq(a[1].conn, a[0].conn);
    ck_assert_int_eq(a[2].calls, 0);
    ck_assert_int_eq(release(&a[1]), PGEV_OK);
    wait_acquired(&a[2]);
    ck_assert_int_eq(q.done_calls, 0);
    ck_assert_int_eq(release(&a[2]), PGEV_OK);
    wait_recs(&q, 1, TU_WAIT_MS);
    assert_rec_ok(&q);
    ck_assert_str_eq(q.value, "9");
    ck_assert_int_lt(a[0].seq, a[1].seq);
    ck_assert_int_lt(a[1].seq, a[2].seq);
    ck_assert_int_lt(a[2].seq, q.done_seq);
    ck_assert_int_eq(stats().acquires, 3);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

START_TEST(acquire_timeout)
{
    pgev_pool_options opts = { .max_conns = 1, .acquire_timeout_ms = 300 };
    make_pool(&opts);
    acq_rec a = { .index = 0 }, b = { .index = 1 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    ck_assert_int_eq(a.code, PGEV_OK);
    uint64_t start = mono_ms();
    ck_assert_int_gt(acquire(&b), 0);
    wait_acquired(&b);
    ck_assert_int_eq(b.code, PGEV_ETIMEOUT);
    ck_assert_ptr_null(b.conn);
    ck_assert_int_ge(b.done_ms - start, 290);
    ck_assert_msg(strstr(b.message, "acquire timeout") != NULL, "message: %s", b.message);
    ck_assert_int_eq(stats().acquire_timeouts, 1);
    ck_assert_int_eq(stats().waiters, 0);
    ck_assert_int_eq(release(&a), PGEV_OK);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

static void
release_at_once(pgev_conn *conn, acq_rec *a)
{
    if (conn)
        TU_CHECK(pgev_pool_release(pool, conn, a->rc) == PGEV_OK, "release in callback");
}

START_TEST(waiter_cap)
{
    pgev_pool_options opts = { .max_conns = 1, .max_waiters = 2 };
    make_pool(&opts);
    acq_rec a[4];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 4; i++) {
        a[i].index = i;
        a[i].hook = i > 0 ? release_at_once : NULL;
    }
    ck_assert_int_gt(acquire(&a[0]), 0);
    wait_acquired(&a[0]);
    ck_assert_int_gt(acquire(&a[1]), 0);
    ck_assert_int_gt(acquire(&a[2]), 0);
    ck_assert_int_eq(acquire(&a[3]), PGEV_EQUEUEFULL);
    ck_assert_str_ne(pgev_pool_errmsg(pool), "");
    ck_assert_int_eq(release(&a[0]), PGEV_OK);
    wait_acquired(&a[2]);
    ck_assert_int_eq(a[1].code, PGEV_OK);
    ck_assert_int_eq(a[2].code, PGEV_OK);
    ck_assert_int_lt(a[1].seq, a[2].seq);
    tu_run_for(50);
    ck_assert_int_eq(a[3].calls, 0);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

START_TEST(dirty_release_is_rolled_back)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    /* In a transaction, then released. */
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    PGconn *pg = pgev_conn_pg(a.conn);
    ck_assert_int_eq(PQtransactionStatus(pg), PQTRANS_IDLE);
    tu_query q[4];
    memset(q, 0, sizeof(q));
    ck_assert_int_gt(tu_query_sql(a.conn, "BEGIN", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(a.conn, "CREATE TEMP TABLE pool_dirty (x int)", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    tu_assert_ok(&q[1]);
    ck_assert_int_eq(PQtransactionStatus(pg), PQTRANS_INTRANS);
    ck_assert_int_eq(release(&a), PGEV_OK);

    acq_rec b = { .index = 1 };
    ck_assert_int_gt(acquire(&b), 0);
    wait_acquired(&b);
    ck_assert_ptr_eq(b.conn, a.conn);
    ck_assert_int_eq(PQtransactionStatus(pgev_conn_pg(b.conn)), PQTRANS_IDLE);
    /* The transaction's work is gone. */
    ck_assert_int_gt(tu_query_sql(b.conn, "SELECT to_regclass('pool_dirty') IS NULL", &q[2]), 0);
    tu_wait_query(&q[2]);
    ck_assert_str_eq(q[2].value, "t");

    /* A failed transaction, released while its queries still run. */
    tu_query f[2];
    memset(f, 0, sizeof(f));
    ck_assert_int_gt(tu_query_sql(b.conn, "BEGIN", &f[0]), 0);
    ck_assert_int_gt(tu_query_sql(b.conn, "SELECT 1/0", &f[1]), 0);
    ck_assert_int_eq(release(&b), PGEV_OK);
    acq_rec c = { .index = 2 };
    ck_assert_int_gt(acquire(&c), 0);
    wait_acquired(&c);
    ck_assert_int_eq(f[0].done_calls + f[1].done_calls, 2); /* they ran before the handover */
    ck_assert_int_eq(f[1].status, PGEV_ESERVER);
    ck_assert_int_eq(PQtransactionStatus(pgev_conn_pg(c.conn)), PQTRANS_IDLE);
    ck_assert_int_eq(stats().resets, 2);
    /* A clean release needs no reset. */
    ck_assert_int_eq(release(&c), PGEV_OK);
    ck_assert_int_eq(stats().resets, 2);
    ck_assert_int_eq(stats().connects, 1);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* ---- init hook ---------------------------------------------------------- */

static int init_calls;

static void
init_query_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)arg;
    TU_CHECK(pgev_pool_init_done(pool, conn, pgev_result_status(res) == PGEV_OK) == PGEV_OK,
             "init_done refused");
}

static void
init_hook(pgev_pool *p, pgev_conn *conn, void *arg)
{
    ck_assert_ptr_eq(p, pool);
    ck_assert_ptr_eq(arg, &init_calls);
    init_calls++;
    ck_assert_int_gt(pgev_conn_query(conn, "SET application_name = 'pgev_pool_init'",
                                     init_query_done, NULL),
                     0);
}

START_TEST(init_hook_runs_on_every_connection)
{
    init_calls = 0;
    pgev_pool_options opts = {
        .min_conns = 3, .max_conns = 3, .on_conn_init = init_hook, .arg = &init_calls
    };
    make_pool(&opts);
    enum { N = 60 };
    pool_rec r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        ck_assert_int_gt(pool_sql("SHOW application_name", &r[i]), 0);
    }
    wait_recs(r, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        assert_rec_ok(&r[i]);
        ck_assert_str_eq(r[i].value, "pgev_pool_init");
    }
    wait_idle(3);
    ck_assert_int_eq(init_calls, 3);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* ---- teardown ----------------------------------------------------------- */

static void
expect_cancelled_in_free(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    (void)conn;
    (void)res;
    TU_CHECK(in_free, "query %d: completed outside pgev_pool_free", r->index);
    TU_CHECK(r->status == PGEV_ECANCELLED, "query %d: %s, expected cancelled", r->index,
             pgev_strerror(r->status));
}

static bool
outstanding_at_least(void *arg)
{
    return stats().outstanding >= *(int *)arg;
}

START_TEST(free_with_queued_and_running_work)
{
    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2, .conn_max_inflight = 10 };
    make_pool(&opts);
    wait_idle(2);
    enum { N = 200 };
    pool_rec r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        r[i].hook = expect_cancelled_in_free;
        ck_assert_int_gt(pool_sql(i < 2 ? "SELECT pg_sleep(5)" : "SELECT 1", &r[i]), 0);
    }
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    int twenty = 20;
    tu_run_until(outstanding_at_least, &twenty, TU_WAIT_MS, "both pipelines to fill");
    pgev_pool_statistics st = stats();
    ck_assert_int_gt(st.queued, 0);
    ck_assert_int_eq(a.calls, 0);
    free_pool();
    assert_recs_once(r, N);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.code, PGEV_ECANCELLED);
    tu_assert_base_idle();
}
END_TEST

static void
expect_cancelled_after_callback(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    (void)conn;
    (void)res;
    TU_CHECK(!freeing_callback, "query %d: completed while the freeing callback ran", r->index);
    TU_CHECK(r->status == PGEV_ECANCELLED || r->status == PGEV_OK, "query %d: %s", r->index,
             pgev_strerror(r->status));
}

static void
free_from_query_callback(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    (void)conn;
    (void)res;
    TU_CHECK(r->status == PGEV_OK, "query %d: %s", r->index, r->message);
    freeing_callback = 1;
    pgev_pool_free(pool);
    pgev_pool_free(pool); /* twice: harmless */
    pool_rec late = { .index = -1 };
    TU_CHECK(pgev_pool_query(pool, "SELECT 1", pool_done_cb, &late) == PGEV_ECLOSED,
             "submit during free accepted");
    pool = NULL;
    freeing_callback = 0;
}

/* The first query to complete frees the pool; every later completion is
 * one of the cancelled (or, already in, finished) ones. Which query comes
 * first is up to the scheduler: with a fixed one, a busy machine could let
 * the other connection run most of the queue before it. */
static void
free_on_first_completion(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    if (pool && !freeing_callback)
        free_from_query_callback(conn, res, r);
    else
        expect_cancelled_after_callback(conn, res, r);
}

START_TEST(free_inside_query_callback)
{
    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2, .conn_max_inflight = 5 };
    make_pool(&opts);
    wait_idle(2);
    enum { N = 100 };
    pool_rec r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        r[i].hook = free_on_first_completion;
        ck_assert_int_gt(pool_sql("SELECT 1", &r[i]), 0);
    }
    wait_recs(r, N, TU_WAIT_MS);
    ck_assert_ptr_null(pool);
    assert_recs_once(r, N);
    int cancelled = 0;
    for (int i = 0; i < N; i++)
        cancelled += r[i].status == PGEV_ECANCELLED;
    ck_assert_int_gt(cancelled, 50); /* the queue was cancelled, not run */
    /* The zombie left behind for the running connection goes away too. */
    tu_run_for(50);
    assert_recs_once(r, N);
    tu_assert_base_idle();
}
END_TEST

static void
free_from_acquire_callback(pgev_conn *conn, acq_rec *a)
{
    (void)conn;
    (void)a;
    freeing_callback = 1;
    freed_pool = pool;
    pgev_pool_free(pool);
    freeing_callback = 0;
}

START_TEST(free_inside_acquire_callback)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    acq_rec a = { .index = 0, .hook = free_from_acquire_callback };
    acq_rec b = { .index = 1 };
    ck_assert_int_gt(acquire(&a), 0);
    ck_assert_int_gt(acquire(&b), 0);
    pool_rec q = { .index = 1, .hook = expect_cancelled_after_callback };
    ck_assert_int_gt(pool_sql("SELECT 1", &q), 0);
    wait_acquired(&b);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_lt(a.seq, b.seq);
    pool = freed_pool = NULL;
    ck_assert_int_eq(b.code, PGEV_ECANCELLED);
    wait_recs(&q, 1, TU_WAIT_MS);
    ck_assert_int_eq(q.status, PGEV_ECANCELLED);
    tu_assert_base_idle();
}
END_TEST

static int closed_calls;
static int closed_seq;

static void
on_closed(pgev_pool *p, void *arg)
{
    ck_assert_ptr_eq(p, pool);
    ck_assert_ptr_eq(arg, &closed_calls);
    closed_calls++;
    closed_seq = ++tu_seq;
}

START_TEST(close_drains)
{
    closed_calls = 0;
    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2, .conn_max_inflight = 10 };
    make_pool(&opts);
    enum { N = 100 };
    pool_rec r[N + 1];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        char sql[32];
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        r[i].index = i;
        ck_assert_int_gt(pool_sql(sql, &r[i]), 0);
    }
    acq_rec a = { .index = 0, .hook = release_at_once };
    ck_assert_int_gt(acquire(&a), 0);
    tu_in_call++;
    ck_assert_int_eq(pgev_pool_close(pool, on_closed, &closed_calls), PGEV_OK);
    ck_assert_int_eq(pgev_pool_close(pool, on_closed, &closed_calls), PGEV_OK);
    tu_in_call--;
    ck_assert_int_eq(pool_sql("SELECT 1", &r[N]), PGEV_ECLOSED);
    acq_rec late = { .index = 1 };
    ck_assert_int_eq(acquire(&late), PGEV_ECLOSED);
    tu_wait_count(&closed_calls, 1, TU_WAIT_MS, "the pool to close");
    for (int i = 0; i < N; i++) {
        assert_rec_ok(&r[i]);
        ck_assert_int_eq(atoi(r[i].value), i);
        ck_assert_int_lt(r[i].done_seq, closed_seq);
    }
    ck_assert_int_eq(a.code, PGEV_OK);
    ck_assert_int_eq(stats().conns, 0);
    /* Closed: nothing armed any more, even before free. */
    ck_assert_int_eq(event_base_get_num_events(tu_base, EVENT_BASE_COUNT_ADDED), 0);
    free_pool();
    ck_assert_int_eq(closed_calls, 1);
    assert_recs_once(r, N + 1);
    tu_assert_base_idle();
}
END_TEST

START_TEST(refusals)
{
    pgev_pool_options bad = { .min_conns = 3, .max_conns = 2 };
    ck_assert_ptr_null(pgev_pool_new(tu_base, tu_dsn(), &bad));
    pgev_pool_options negative = { .idle_timeout_ms = -1 };
    ck_assert_ptr_null(pgev_pool_new(tu_base, tu_dsn(), &negative));
    ck_assert_ptr_null(pgev_pool_new(NULL, tu_dsn(), NULL));
    ck_assert_ptr_null(pgev_pool_new(tu_base, NULL, NULL));
    ck_assert_int_lt(pgev_pool_query(NULL, "SELECT 1", NULL, NULL), 0);
    pgev_pool_free(NULL);

    /* Nothing listens: queries queue, the queue is bounded, and each
     * query fails after its timeout naming the connection error. */
    char conninfo[128];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=x user=x sslmode=disable",
             tu_closed_port());
    pgev_pool_options opts = { .max_conns = 2, .max_pending = 5, .queue_timeout_ms = 500 };
    tu_in_call++;
    pool = pgev_pool_new(tu_base, conninfo, &opts);
    tu_in_call--;
    ck_assert_ptr_nonnull(pool);
    pool_rec r[8];
    memset(r, 0, sizeof(r));
    tu_in_call++;
    ck_assert_int_eq(pgev_pool_submit(pool, NULL), PGEV_EINVAL);
    pgev_query_args both = { .sql = "SELECT 1", .stmt = "s" };
    ck_assert_int_eq(pgev_pool_submit(pool, &both), PGEV_EINVAL);
    pgev_query_args manyparams = { .sql = "SELECT $1", .nparams = PGEV_MAX_PARAMS + 1 };
    ck_assert_int_eq(pgev_pool_submit(pool, &manyparams), PGEV_EINVAL);
    ck_assert_int_eq(pgev_pool_acquire(pool, NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_pool_release(pool, NULL, 1), PGEV_EINVAL);
    tu_in_call--;
    uint64_t start = mono_ms();
    for (int i = 0; i < 6; i++) {
        r[i].index = i;
        const char *v[] = { "x" };
        int64_t id = pool_params("SELECT $1::text", 1, v, &r[i]);
        if (i < 5)
            ck_assert_int_gt(id, 0);
        else
            ck_assert_int_eq(id, PGEV_EQUEUEFULL);
    }
    wait_recs(r, 6, TU_WAIT_MS);
    assert_recs_once(r, 6);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(r[i].status, PGEV_ETIMEOUT);
        ck_assert_ptr_null(r[i].conn);
        ck_assert_int_ge(r[i].done_ms - start, 490);
        ck_assert_msg(strstr(r[i].message, "last connection error") != NULL, "message: %s",
                      r[i].message);
    }
    pgev_pool_statistics st = stats();
    ck_assert_int_eq(st.queries_timed_out, 5);
    ck_assert_int_ge(st.connect_failures, 1);
    ck_assert_int_eq(st.connects, 0);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* ---- faults ------------------------------------------------------------- */

static bool
is_lost(const pool_rec *r)
{
    return r->status == PGEV_ECONNLOST ||
           (r->status == PGEV_ESERVER && strncmp(r->sqlstate, "57", 2) == 0);
}

static int restart_at;
static pid_t restart_pid;

static void
restart_when_due(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    (void)conn;
    (void)res;
    (void)r;
    if (tu_done_total == restart_at)
        restart_pid = tu_cluster_start("server-restart", NULL, NULL);
}

START_TEST(server_restart_under_load)
{
    if (!tu_have_cluster("restarts or stops the server"))
        return;
    pgev_pool_options opts = { .min_conns = 4, .max_conns = 4, .conn_max_inflight = 20 };
    make_pool(&opts);
    wait_idle(4);
    enum { N = 3000 };
    pool_rec *r = calloc(N, sizeof(*r));
    ck_assert_ptr_nonnull(r);
    restart_at = 100;
    restart_pid = 0;
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        r[i].hook = restart_when_due;
        ck_assert_int_gt(pool_sql("SELECT pg_sleep(0.002)", &r[i]), 0);
    }
    wait_recs(r, N, 120000);
    ck_assert_int_gt(restart_pid, 0);
    tu_cluster_wait(restart_pid, "server-restart");
    assert_recs_once(r, N);
    int ok = 0, lost = 0;
    for (int i = 0; i < N; i++) {
        if (r[i].status == PGEV_OK)
            ok++;
        else if (is_lost(&r[i]))
            lost++;
        else
            ck_abort_msg("query %d: %s (%s) %s", i, pgev_strerror(r[i].status), r[i].sqlstate,
                         r[i].message);
    }
    ck_assert_int_ge(ok, restart_at);
    /* Only what was on the wire is lost: the rest waited in the pool. */
    ck_assert_int_le(lost, 4 * 20);
    /* Recovered by itself, to its size, with one backend per connection. */
    wait_idle(4);
    wait_backends(4);
    pgev_pool_statistics st = stats();
    ck_assert_int_eq(st.conns, 4);
    ck_assert_int_ge(st.conns_lost, 1);
    pool_rec after[10];
    memset(after, 0, sizeof(after));
    for (int i = 0; i < 10; i++)
        ck_assert_int_gt(pool_sql("SELECT 1", &after[i]), 0);
    wait_recs(after, 10, TU_WAIT_MS);
    for (int i = 0; i < 10; i++)
        assert_rec_ok(&after[i]);
    free(r);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

static bool
all_lost(void *arg)
{
    (void)arg;
    pgev_pool_statistics st = stats();
    return st.conns_lost >= 2;
}

START_TEST(server_down_fails_fast_then_recovers)
{
    if (!tu_have_cluster("restarts or stops the server"))
        return;
    pgev_pool_options opts = {
        .min_conns = 2, .max_conns = 2, .queue_timeout_ms = 800, .acquire_timeout_ms = 800,
        .connect_timeout_ms = 3000
    };
    make_pool(&opts);
    wait_idle(2);
    tu_cluster("server-stop", NULL, NULL);
    tu_run_until(all_lost, NULL, TU_WAIT_MS, "the pool to notice the server is gone");
    int64_t failures_before = stats().connect_failures;
    enum { N = 20 };
    pool_rec r[N];
    memset(r, 0, sizeof(r));
    uint64_t start = mono_ms();
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        ck_assert_int_gt(pool_sql("SELECT 1", &r[i]), 0);
    }
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_recs(r, N, TU_WAIT_MS);
    wait_acquired(&a);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(r[i].status, PGEV_ETIMEOUT);
        ck_assert_int_ge(r[i].done_ms - start, 790);
        ck_assert_int_lt(r[i].done_ms - start, 10000);
        ck_assert_msg(strstr(r[i].message, "timed out") != NULL, "message: %s", r[i].message);
    }
    ck_assert_int_eq(a.code, PGEV_ETIMEOUT);
    /* Backoff: a handful of attempts, not a storm. */
    pgev_pool_statistics st = stats();
    ck_assert_int_le(st.connect_failures - failures_before, 12);
    ck_assert_int_eq(st.queued, 0);
    ck_assert_int_eq(st.waiters, 0);

    tu_cluster("server-start", NULL, NULL);
    wait_idle(2);
    wait_backends(2);
    pool_rec after = { .index = 99 };
    ck_assert_int_gt(pool_sql("SELECT 99", &after), 0);
    wait_recs(&after, 1, TU_WAIT_MS);
    assert_rec_ok(&after);
    ck_assert_str_eq(after.value, "99");
    ck_assert_int_le(stats().conns, 2);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* The statistics' latency percentiles: queries that each take >= 20 ms,
 * queued one behind the other, and an acquire that waits for them. */
START_TEST(latency_percentiles)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .conn_max_inflight = 1 };
    make_pool(&opts);
    wait_idle(1);
    ck_assert(stats().query_p50_us == 0.0);
    enum { N = 20 };
    pool_rec r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++)
        ck_assert_int_gt(pool_sql("SELECT pg_sleep(0.02)", &r[i]), 0);
    /* The acquire is granted once the query running now finishes (waiters
     * go before queued pool queries); the rest run after its release. */
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    ck_assert_int_eq(a.code, PGEV_OK);
    ck_assert_int_eq(release(&a), PGEV_OK);
    wait_recs(r, N, TU_WAIT_MS);
    pgev_pool_statistics st = stats();
    ck_assert_msg(st.query_p50_us >= 20000 * 0.875, "p50 %.0f us", st.query_p50_us);
    ck_assert_msg(st.query_p99_us >= st.query_p50_us, "p99 %.0f < p50 %.0f", st.query_p99_us, st.query_p50_us);
    ck_assert_msg(st.query_p99_us >= N * 20000 * 0.875 * 0.9, "p99 %.0f us: the last query waited for all", st.query_p99_us);
    ck_assert_msg(st.query_p99_us < 60e6, "p99 %.0f us", st.query_p99_us);
    /* The acquire waited for the query that was running to finish. */
    ck_assert_msg(st.acquire_wait_p50_us >= 20000 * 0.875, "acquire wait %.0f us", st.acquire_wait_p50_us);
    free_pool();
}
END_TEST

/* ---- lost connections, health checks, timeouts ------------------------- */

static int64_t
pool_submit_flags(const char *sql, unsigned flags, pool_rec *r)
{
    pgev_query_args args = { .sql = sql, .flags = flags, .on_done = pool_done_cb, .arg = r };
    tu_in_call++;
    r->id = pgev_pool_submit(pool, &args);
    tu_in_call--;
    return r->id;
}

static int
active_backends(void)
{
    char *v = tu_exec_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s' "
                            "AND state = 'active'", APP_NAME);
    int n = v ? atoi(v) : -1;
    free(v);
    return n;
}

/* Every backend of the pool is terminated while queries run: those marked
 * safe to retry are sent again on new connections and succeed; the others
 * fail with PGEV_ECONNLOST, once. */
START_TEST(lost_connection_retries_only_safe_queries)
{
    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2, .queue_timeout_ms = 15000 };
    make_pool(&opts);
    wait_idle(2);
    enum { N = 8 };
    pool_rec r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        bool safe = i % 2 == 1;
        ck_assert_int_gt(pool_submit_flags(safe ? "SELECT 'safe', pg_sleep(1)" : "SELECT 'plain', pg_sleep(1)",
                                           safe ? PGEV_QUERY_RETRY_SAFE : 0, &r[i]),
                         0);
    }
    uint64_t deadline = mono_ms() + 10000;
    while (active_backends() < 2) {
        ck_assert_msg(mono_ms() < deadline, "the pool's queries never started");
        tu_run_for(20);
    }
    tu_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '%s'", APP_NAME);
    wait_recs(r, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        if (i % 2 == 1) {
            assert_rec_ok(&r[i]);
            ck_assert_str_eq(r[i].value, "safe");
        } else {
            ck_assert_msg(r[i].status == PGEV_ECONNLOST, "plain query %d: %s %s", i,
                          pgev_strerror(r[i].status), r[i].message);
        }
    }
    ck_assert_int_ge(stats().queries_retried, N / 2);
    assert_recs_once(r, N);
    free_pool();
}
END_TEST

/* A connection idle past health_check_idle_ms answers an empty query first;
 * one whose backend does not answer (stopped with SIGSTOP) is replaced, and
 * the pool's queries go on. */
START_TEST(health_check_replaces_unresponsive_connection)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .health_check_idle_ms = 100,
                               .connect_timeout_ms = 400, .queue_timeout_ms = 15000 };
    make_pool(&opts);
    wait_idle(1);
    pool_rec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(pool_sql("SELECT pg_backend_pid()", &r), 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    assert_rec_ok(&r);
    int pid = atoi(r.value);
    /* Idle checks pass. */
    tu_run_for(600);
    ck_assert_int_ge(stats().health_checks, 1);
    ck_assert_int_eq(stats().health_check_failures, 0);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    int64_t checks = stats().health_checks;
    uint64_t deadline = mono_ms() + 15000;
    while (stats().health_check_failures == 0) {
        ck_assert_msg(mono_ms() < deadline, "the stopped backend was never found out");
        tu_run_for(50);
    }
    ck_assert_int_gt(stats().health_checks, checks);
    ck_assert_int_eq(kill(pid, SIGCONT), 0);
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(pool_sql("SELECT pg_backend_pid()", &r), 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    assert_rec_ok(&r);
    ck_assert_int_ne(atoi(r.value), pid);       /* a new connection answered */
    free_pool();
}
END_TEST

/* query_timeout_ms counts from the submit, time in the pool's queue
 * included: a query stuck behind a slow one times out in the queue. */
/* Deadlines of queries waiting in the pool's queue fire on time: each one
 * within 100 ms of its own, not at the next maintenance pass (250 ms). */
START_TEST(queued_query_deadlines_on_time)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .conn_max_inflight = 1,
                               .queue_timeout_ms = 15000 };
    make_pool(&opts);
    wait_idle(1);
    enum { N = 8 };
    pool_rec busy, r[N];
    memset(&busy, 0, sizeof busy);
    memset(r, 0, sizeof r);
    pgev_query_args slow = { .sql = "SELECT pg_sleep(2)", .timeout_ms = -1, .on_done = pool_done_cb, .arg = &busy };
    tu_in_call++;
    busy.id = pgev_pool_submit(pool, &slow);
    tu_in_call--;
    ck_assert_int_gt(busy.id, 0);
    uint64_t start = mono_ms();
    for (int i = 0; i < N; i++) {
        r[i].index = i;
        pgev_query_args args = { .sql = "SELECT 'queued'", .timeout_ms = 40 * (i + 1), .on_done = pool_done_cb,
                                 .arg = &r[i] };
        tu_in_call++;
        r[i].id = pgev_pool_submit(pool, &args);
        tu_in_call--;
        ck_assert_int_gt(r[i].id, 0);
    }
    wait_recs(r, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(r[i].status, PGEV_ETIMEOUT);
        uint64_t due = start + 40 * (uint64_t)(i + 1);
        ck_assert_msg(r[i].done_ms < due + 100, "queued query %d: due at +%d ms, timed out at +%llu ms", i,
                      40 * (i + 1), (unsigned long long)(r[i].done_ms - start));
    }
    wait_recs(&busy, 1, TU_WAIT_MS);
}
END_TEST

START_TEST(query_timeout_counts_queue_time)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .conn_max_inflight = 1,
                               .query_timeout_ms = 300, .queue_timeout_ms = 15000 };
    make_pool(&opts);
    wait_idle(1);
    pool_rec r[2];
    memset(r, 0, sizeof r);
    uint64_t start = mono_ms();
    /* The connection is busy for 2 s (its own timeout); the query behind it
     * has the pool's 300 ms, spent waiting in the queue. */
    pgev_query_args slow = { .sql = "SELECT pg_sleep(5)", .timeout_ms = 2000, .on_done = pool_done_cb,
                             .arg = &r[0] };
    tu_in_call++;
    r[0].id = pgev_pool_submit(pool, &slow);
    tu_in_call--;
    ck_assert_int_gt(r[0].id, 0);
    ck_assert_int_gt(pool_sql("SELECT 'queued'", &r[1]), 0);
    ck_assert_int_eq(stats().queued, 1);
    wait_recs(r, 2, TU_WAIT_MS);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(r[i].status == PGEV_ETIMEOUT, "query %d: %s %s", i, pgev_strerror(r[i].status),
                      r[i].message);
    ck_assert_msg(strstr(r[1].message, "queue") != NULL, "message: %s", r[1].message);
    ck_assert_msg(r[1].done_ms < r[0].done_ms, "the queued query outlived its timeout");
    ck_assert_msg(r[1].done_ms - start < 1500, "the queued query timed out after %llu ms",
                  (unsigned long long)(r[1].done_ms - start));
    /* A query's own timeout_ms wins over the pool's default. */
    pool_rec own;
    memset(&own, 0, sizeof own);
    pgev_query_args args = { .sql = "SELECT pg_sleep(0.5), 'slow but allowed'", .timeout_ms = -1,
                             .on_done = pool_done_cb, .arg = &own };
    tu_in_call++;
    own.id = pgev_pool_submit(pool, &args);
    tu_in_call--;
    ck_assert_int_gt(own.id, 0);
    wait_recs(&own, 1, TU_WAIT_MS);
    assert_rec_ok(&own);
    free_pool();
}
END_TEST

/* ---- hand-over between borrowers, re-entrancy (issue 13) ----------------- */

/* Runs the loop in short turns until cond(arg) holds or ms pass; returns
 * whether it held. For tests that must undo something (a stopped backend)
 * before they may fail. */
static bool
run_until_or_give_up(tu_cond cond, void *arg, int ms)
{
    uint64_t deadline = mono_ms() + (uint64_t)ms;
    while (!cond(arg)) {
        if (mono_ms() >= deadline)
            return false;
        tu_run_for(10);
    }
    return true;
}

static void
free_pool_in_callback(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    (void)conn;
    (void)res;
    (void)r;
    if (!pool)
        return;
    freeing_callback = 1;
    pgev_pool_free(pool);
    pool = NULL;
    freeing_callback = 0;
}

/* 1. A pool query whose own timeout passes while it waits in the pool's
 * queue completes from the maintenance pass; its callback frees the pool. */
START_TEST(free_inside_queue_timeout)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .conn_max_inflight = 1,
                               .queue_timeout_ms = 15000 };
    make_pool(&opts);
    wait_idle(1);
    pool_rec r[2];
    memset(r, 0, sizeof r);
    r[0].index = 0;
    r[0].hook = expect_cancelled_after_callback;
    ck_assert_int_gt(pool_sql("SELECT pg_sleep(2)", &r[0]), 0);
    r[1].index = 1;
    r[1].hook = free_pool_in_callback;
    pgev_query_args args = { .sql = "SELECT 'queued'", .timeout_ms = 200, .on_done = pool_done_cb,
                             .arg = &r[1] };
    tu_in_call++;
    r[1].id = pgev_pool_submit(pool, &args);
    tu_in_call--;
    ck_assert_int_gt(r[1].id, 0);
    wait_recs(r, 2, TU_WAIT_MS);
    ck_assert_ptr_null(pool);
    ck_assert_int_eq(r[1].status, PGEV_ETIMEOUT);
    ck_assert_int_eq(r[0].status, PGEV_ECANCELLED);
    tu_run_for(50);
    assert_recs_once(r, 2);
    tu_assert_base_idle();
}
END_TEST

/* 2. Release, then free, from the callback of a query on the acquired
 * connection (a common shutdown pattern). */
static void
release_then_free(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)res;
    acq_rec *a = q->user;
    TU_CHECK(pgev_pool_release(pool, conn, a->rc) == PGEV_OK, "release refused: %s", pgev_pool_errmsg(pool));
    pgev_pool_free(pool);
    pool = NULL;
}

START_TEST(release_then_free_in_callback)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    ck_assert_int_eq(a.code, PGEV_OK);
    tu_query q[2];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(a.conn, "BEGIN", &q[0]), 0);
    q[1].user = &a;
    q[1].on_done_hook = release_then_free;
    ck_assert_int_gt(tu_query_sql(a.conn, "SELECT 1", &q[1]), 0);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    ck_assert_ptr_null(pool);
    tu_run_for(50);
    tu_assert_all_once(q, 2);
    tu_assert_base_idle();
}
END_TEST

/* A release from inside a query callback: libpq reports the transaction
 * ACTIVE until that query's Sync is read, so the pool waits for the Sync
 * instead of paying a ROLLBACK round trip for a clean session; a session
 * left in a transaction is still rolled back. */
static void
release_in_callback(pgev_conn *conn, pgev_result *res, tu_query *q)
{
    (void)res;
    acq_rec *a = q->user;
    TU_CHECK(pgev_pool_release(pool, conn, a->rc) == PGEV_OK, "release refused: %s", pgev_pool_errmsg(pool));
}

START_TEST(release_in_callback_needs_no_rollback)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    for (int dirty = 0; dirty < 2; dirty++) {
        acq_rec a = { .index = 0 };
        ck_assert_int_gt(acquire(&a), 0);
        wait_acquired(&a);
        tu_query q;
        memset(&q, 0, sizeof q);
        q.user = &a;
        q.on_done_hook = release_in_callback;
        ck_assert_int_gt(tu_query_sql(a.conn, dirty ? "BEGIN" : "SELECT 1", &q), 0);
        tu_wait_query(&q);
        acq_rec b = { .index = 1 };
        ck_assert_int_gt(acquire(&b), 0);
        wait_acquired(&b);
        ck_assert_int_eq(b.code, PGEV_OK);
        ck_assert_int_eq(PQtransactionStatus(pgev_conn_pg(b.conn)), PQTRANS_IDLE);
        ck_assert_int_eq(stats().resets, dirty);   /* a ROLLBACK only for the open transaction */
        ck_assert_int_eq(release(&b), PGEV_OK);
    }
    ck_assert_int_eq(stats().connects, 1);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* 3. One borrower's LISTEN never reaches the next borrower. */
static int notify_a_calls;

static void
notify_a(pgev_conn *conn, const char *channel, const char *payload, int pid, void *arg)
{
    (void)conn;
    (void)channel;
    (void)payload;
    (void)pid;
    (void)arg;
    notify_a_calls++;
}

START_TEST(listen_does_not_reach_next_borrower)
{
    notify_a_calls = 0;
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    tu_query q[4];
    memset(q, 0, sizeof q);
    q[0].id = pgev_conn_listen(a.conn, "pool_handover", notify_a, tu_done_cb, &q[0]);
    ck_assert_int_gt(q[0].id, 0);
    tu_wait_query(&q[0]);
    tu_assert_ok(&q[0]);
    ck_assert_int_eq(release(&a), PGEV_OK);

    acq_rec b = { .index = 1 };
    ck_assert_int_gt(acquire(&b), 0);
    wait_acquired(&b);
    ck_assert_ptr_eq(b.conn, a.conn);
    tu_exec("NOTIFY pool_handover, 'for a only'");
    ck_assert_int_gt(tu_query_sql(b.conn, "SELECT count(*) FROM pg_listening_channels()", &q[1]), 0);
    tu_wait_query(&q[1]);
    tu_assert_ok(&q[1]);
    ck_assert_str_eq(q[1].value, "0");
    ck_assert_int_gt(tu_query_sql(b.conn, "SELECT 1", &q[2]), 0);
    tu_wait_query(&q[2]);
    tu_run_for(100);
    ck_assert_int_eq(notify_a_calls, 0);
    ck_assert_int_eq(release(&b), PGEV_OK);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* 4. A pgev_txn left open at release: the next borrower still gets a clean
 * connection, and the pool can still close. */
START_TEST(open_txn_at_release)
{
    closed_calls = 0;
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .acquire_timeout_ms = 5000 };
    make_pool(&opts);
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    pgev_txn *txn = NULL;
    ck_assert_int_eq(pgev_conn_begin(a.conn, NULL, &txn), PGEV_OK);
    tu_query q[2];
    memset(q, 0, sizeof q);
    q[0].id = pgev_txn_query(txn, "CREATE TEMP TABLE pool_txn_left (x int)", tu_done_cb, &q[0]);
    ck_assert_int_gt(q[0].id, 0);
    tu_wait_query(&q[0]);
    tu_assert_ok(&q[0]);
    ck_assert_int_eq(release(&a), PGEV_OK);

    acq_rec b = { .index = 1 };
    ck_assert_int_gt(acquire(&b), 0);
    wait_acquired(&b);
    ck_assert_msg(b.code == PGEV_OK, "second acquire: %s", b.message);
    ck_assert_int_eq(PQtransactionStatus(pgev_conn_pg(b.conn)), PQTRANS_IDLE);
    ck_assert_int_gt(tu_query_sql(b.conn, "SELECT to_regclass('pool_txn_left') IS NULL", &q[1]), 0);
    tu_wait_query(&q[1]);
    ck_assert_str_eq(q[1].value, "t");
    ck_assert_int_eq(release(&b), PGEV_OK);
    tu_in_call++;
    ck_assert_int_eq(pgev_pool_close(pool, on_closed, &closed_calls), PGEV_OK);
    tu_in_call--;
    tu_wait_count(&closed_calls, 1, TU_WAIT_MS, "the pool to close");
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* 4b. A dirty release whose ROLLBACK never gets an answer (the backend is
 * stopped: a network partition): the connection is discarded and
 * replaced within a bounded time. */
static int
acquired_pid(acq_rec *a)
{
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(a->conn, "SELECT pg_backend_pid()", &q), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    return atoi(q.value);
}

START_TEST(stalled_reset_is_abandoned)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .acquire_timeout_ms = 10000,
                               .reset_timeout_ms = 1000 };
    make_pool(&opts);
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    int pid = acquired_pid(&a);
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(a.conn, "BEGIN", &q), 0);
    tu_wait_query(&q);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    ck_assert_int_eq(release(&a), PGEV_OK);
    acq_rec b = { .index = 1 };
    ck_assert_int_gt(acquire(&b), 0);
    uint64_t start = mono_ms();
    bool granted = run_until_or_give_up(acq_called, &b, 12000);
    uint64_t waited = mono_ms() - start;
    kill(pid, SIGCONT);
    ck_assert_msg(granted, "the second acquire never called back");
    ck_assert_msg(b.code == PGEV_OK, "second acquire: %s", b.message);
    ck_assert_msg(waited >= 900 && waited < 5000, "the stalled reset held the connection %llu ms "
                  "(reset_timeout_ms 1000)", (unsigned long long)waited);
    ck_assert_int_ne(acquired_pid(&b), pid);
    ck_assert_int_eq(stats().reset_timeouts, 1);
    ck_assert_int_eq(release(&b), PGEV_OK);
    free_pool();
}
END_TEST

/* 5. A stale second release (after someone else acquired the same
 * connection) is refused and changes nothing. */
START_TEST(stale_release_refused)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    ck_assert_int_eq(release(&a), PGEV_OK);
    acq_rec b = { .index = 1 };
    ck_assert_int_gt(acquire(&b), 0);
    wait_acquired(&b);
    ck_assert_ptr_eq(b.conn, a.conn);
    ck_assert_int_eq(release(&a), PGEV_EINVAL);   /* A's lease is over */
    ck_assert_msg(strstr(pgev_pool_errmsg(pool), "release") != NULL, "errmsg: %s",
                  pgev_pool_errmsg(pool));
    tu_run_for(50);
    ck_assert_int_eq(stats().conns_acquired, 1);
    acq_rec c = { .index = 2 };
    ck_assert_int_gt(acquire(&c), 0);
    tu_run_for(100);
    ck_assert_int_eq(c.calls, 0);                      /* B still holds it */
    ck_assert_int_eq(release(&b), PGEV_OK);
    ck_assert_int_eq(release(&b), PGEV_EINVAL);   /* double release */
    wait_acquired(&c);
    ck_assert_int_eq(c.code, PGEV_OK);
    ck_assert_int_eq(release(&c), PGEV_OK);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* 6. A connection idle past health_check_idle_ms is checked before it
 * takes a query: a query never goes to a silently dead idle connection. */
static bool
rec_done(void *arg)
{
    return ((pool_rec *)arg)->done_calls > 0;
}

START_TEST(health_check_before_use)
{
    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2, .health_check_idle_ms = 50,
                               .connect_timeout_ms = 5000, .queue_timeout_ms = 15000 };
    make_pool(&opts);
    wait_idle(2);
    pool_rec r;
    memset(&r, 0, sizeof r);
    /* The connection that gets a query when both are idle. */
    ck_assert_int_gt(pool_sql("SELECT pg_backend_pid()", &r), 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    assert_rec_ok(&r);
    int pid = atoi(r.value);
    wait_idle(2);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    tu_run_for(80);  /* longer than health_check_idle_ms: nothing to await */
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(pool_sql("SELECT pg_backend_pid()", &r), 0);
    bool done = run_until_or_give_up(rec_done, &r, 2000);
    kill(pid, SIGCONT);
    ck_assert_msg(done, "the query went to the stopped connection");
    assert_rec_ok(&r);
    ck_assert_int_ne(atoi(r.value), pid);
    free_pool();
}
END_TEST

/* 6b. The same before an acquire: the stopped connection is checked, the
 * acquire gets the other one. */
static bool
tu_query_done(void *arg)
{
    return ((tu_query *)arg)->done_calls > 0;
}

START_TEST(health_check_before_acquire)
{
    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2, .health_check_idle_ms = 50,
                               .connect_timeout_ms = 5000, .acquire_timeout_ms = 15000 };
    make_pool(&opts);
    wait_idle(2);
    /* The connection an acquire gets when both are idle. */
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    int pid = acquired_pid(&a);
    ck_assert_int_eq(release(&a), PGEV_OK);
    wait_idle(2);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    tu_run_for(80);  /* longer than health_check_idle_ms: nothing to await */
    acq_rec b = { .index = 1 };
    ck_assert_int_gt(acquire(&b), 0);
    bool granted = run_until_or_give_up(acq_called, &b, 2000);
    tu_query q;
    memset(&q, 0, sizeof q);
    bool answered = false;
    if (granted && b.conn) {
        ck_assert_int_gt(tu_query_sql(b.conn, "SELECT pg_backend_pid()", &q), 0);
        answered = run_until_or_give_up(tu_query_done, &q, 2000);
    }
    kill(pid, SIGCONT);
    ck_assert_msg(granted && b.code == PGEV_OK, "acquire: %s", b.message);
    ck_assert_msg(answered, "the acquire got the stopped connection");
    ck_assert_int_ne(atoi(q.value), pid);
    ck_assert_int_eq(release(&b), PGEV_OK);
    free_pool();
}
END_TEST

/* 7. A streamed, retry-safe query whose backend dies after it delivered
 * rows is not sent again (its rows would arrive twice). */
static int64_t stream_rows;

static void
count_stream_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    (void)arg;
    stream_rows += pgev_result_rows(res);
}

START_TEST(streamed_rows_never_retried)
{
    stream_rows = 0;
    tu_exec("DROP SEQUENCE IF EXISTS pool_stream_once");
    tu_exec("CREATE SEQUENCE pool_stream_once");
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 2, .queue_timeout_ms = 15000 };
    make_pool(&opts);
    wait_idle(1);
    pool_rec r;
    memset(&r, 0, sizeof r);
    pgev_query_args args = {
        .sql = "SELECT g, CASE WHEN g = 3 AND nextval('pool_stream_once') = 1 "
               "THEN pg_terminate_backend(pg_backend_pid()) END FROM generate_series(1, 5) g",
        .flags = PGEV_QUERY_READONLY, .on_rows = count_stream_rows, .on_done = pool_done_cb, .arg = &r
    };
    tu_in_call++;
    r.id = pgev_pool_submit(pool, &args);
    tu_in_call--;
    ck_assert_int_gt(r.id, 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    ck_assert_msg(stream_rows <= 5, "%lld rows for a 5-row query", (long long)stream_rows);
    if (stream_rows > 0) {
        ck_assert_msg(r.status == PGEV_ECONNLOST, "status %s: %s", pgev_strerror(r.status), r.message);
        ck_assert_int_eq(stats().queries_retried, 0);
    }
    free_pool();
    tu_exec("DROP SEQUENCE pool_stream_once");
}
END_TEST

/* 8. nparams > 0 with NULL param_values: all parameters NULL, as on a
 * connection. */
START_TEST(null_param_values_like_conn)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    pool_rec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(pool_params("SELECT $1::int IS NULL", 1, NULL, &r), 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    assert_rec_ok(&r);
    ck_assert_str_eq(r.value, "t");
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* ---- new calls: transactions in one call, cancel, max_uses, reset ------- */

typedef struct ptx_rec {
    int body_calls;
    int done_calls;
    int attempts;
    int status;
    char sqlstate[8];
    char message[256];
    int fail_attempts;      /* the body raises 40001 on attempts up to this */
    bool rollback;          /* the body rolls back instead of committing */
    tu_query q[4];
} ptx_rec;

static void
ptx_body(pgev_pool_txn *ptx, pgev_txn *txn, int attempt, void *arg)
{
    ptx_rec *r = arg;
    TU_CHECK(tu_in_call == 0, "pool transaction body ran inside a pool call");
    r->body_calls++;
    TU_CHECK(attempt == r->body_calls, "attempt %d on body call %d", attempt, r->body_calls);
    TU_CHECK(PQtransactionStatus(pgev_conn_pg(pgev_txn_conn(txn))) != PQTRANS_UNKNOWN, "no connection");
    if (attempt <= r->fail_attempts)
        TU_CHECK(pgev_txn_query(txn, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = "
                                     "'serialization_failure'; END $$", NULL, NULL) > 0,
                 "raise refused");
    else
        TU_CHECK(pgev_txn_query(txn, "INSERT INTO pool_ptx VALUES (1)", NULL, NULL) > 0, "insert refused");
    TU_CHECK((r->rollback ? pgev_pool_txn_rollback(ptx) : pgev_pool_txn_commit(ptx)) == PGEV_OK,
             "end refused");
    TU_CHECK(pgev_pool_txn_commit(ptx) == PGEV_EINVAL, "second end accepted");
}

static void
ptx_done(pgev_pool *p, pgev_result *res, int attempts, void *arg)
{
    ptx_rec *r = arg;
    TU_CHECK(p == pool, "wrong pool");
    TU_CHECK(tu_in_call == 0, "on_done inside a pool call");
    r->done_calls++;
    TU_CHECK(r->done_calls == 1, "on_done ran %d times", r->done_calls);
    r->attempts = attempts;
    r->status = pgev_result_status(res);
    if (r->status != PGEV_OK) {
        snprintf(r->sqlstate, sizeof r->sqlstate, "%s", pgev_error_sqlstate(pgev_result_error(res)));
        snprintf(r->message, sizeof r->message, "%s", pgev_error_message(pgev_result_error(res)));
    }
}

static int64_t
run_ptx(ptx_rec *r, int max_attempts)
{
    pgev_pool_txn_options o = { .txn = { .isolation = PGEV_ISOLATION_SERIALIZABLE },
                                .max_attempts = max_attempts };
    tu_in_call++;
    int64_t id = pgev_pool_transaction(pool, &o, ptx_body, ptx_done, r);
    tu_in_call--;
    return id;
}

static int
ptx_rows(void)
{
    char *v = tu_exec_value("SELECT count(*) FROM pool_ptx");
    int n = v ? atoi(v) : -1;
    free(v);
    return n;
}

START_TEST(transaction_commits_retries_and_rolls_back)
{
    tu_exec("DROP TABLE IF EXISTS pool_ptx");
    tu_exec("CREATE TABLE pool_ptx (x int)");
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    /* Committed at once. */
    ptx_rec a;
    memset(&a, 0, sizeof a);
    ck_assert_int_gt(run_ptx(&a, 0), 0);
    tu_wait_count(&a.done_calls, 1, TU_WAIT_MS, "the first transaction");
    ck_assert_msg(a.status == PGEV_OK, "%s", a.message);
    ck_assert_int_eq(a.attempts, 1);
    ck_assert_int_eq(ptx_rows(), 1);
    /* Two serialization failures, then committed on the third run. */
    ptx_rec b;
    memset(&b, 0, sizeof b);
    b.fail_attempts = 2;
    ck_assert_int_gt(run_ptx(&b, 0), 0);
    tu_wait_count(&b.done_calls, 1, TU_WAIT_MS, "the retried transaction");
    ck_assert_msg(b.status == PGEV_OK, "%s", b.message);
    ck_assert_int_eq(b.attempts, 3);
    ck_assert_int_eq(b.body_calls, 3);
    ck_assert_int_eq(ptx_rows(), 2);
    /* Out of attempts: the failure, with its SQLSTATE. */
    ptx_rec c;
    memset(&c, 0, sizeof c);
    c.fail_attempts = 5;
    ck_assert_int_gt(run_ptx(&c, 2), 0);
    tu_wait_count(&c.done_calls, 1, TU_WAIT_MS, "the failing transaction");
    ck_assert_int_eq(c.status, PGEV_EABORTED);
    ck_assert_str_eq(c.sqlstate, "40001");
    ck_assert_int_eq(c.attempts, 2);
    /* Rolled back by the application. */
    ptx_rec d;
    memset(&d, 0, sizeof d);
    d.rollback = true;
    ck_assert_int_gt(run_ptx(&d, 0), 0);
    tu_wait_count(&d.done_calls, 1, TU_WAIT_MS, "the rolled-back transaction");
    ck_assert_int_eq(d.status, PGEV_EABORTED);
    ck_assert_int_eq(ptx_rows(), 2);
    /* The connection went back each time. */
    pgev_pool_statistics st = stats();
    ck_assert_int_eq(st.conns_acquired, 0);
    ck_assert_int_eq(st.transactions_committed, 2);
    ck_assert_int_eq(st.transactions_failed, 2);
    ck_assert_int_eq(st.transactions_retried, 3);
    ck_assert_int_eq(st.connects, 1);
    free_pool();
    tu_assert_base_idle();
    tu_exec("DROP TABLE pool_ptx");
}
END_TEST

/* A transaction waiting for a connection when the pool is freed: on_done
 * once, with PGEV_ECANCELLED; one whose body is running: ends when the
 * body commits, with the connection's fate. */
START_TEST(transaction_cancelled_with_the_pool)
{
    tu_exec("DROP TABLE IF EXISTS pool_ptx");
    tu_exec("CREATE TABLE pool_ptx (x int)");
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    ptx_rec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(run_ptx(&r, 0), 0);
    tu_run_for(50);
    ck_assert_int_eq(r.body_calls, 0);
    free_pool();
    ck_assert_int_eq(r.done_calls, 1);
    ck_assert_int_eq(r.status, PGEV_ECANCELLED);
    tu_assert_base_idle();
    tu_exec("DROP TABLE pool_ptx");
}
END_TEST

static int pool_pid(void);

/* The body's connection dies under it: the statement fails, the commit the
 * body then asks for is reported from the loop (never inside the call),
 * with the connection's error, and the dead connection is replaced. */
static pgev_pool_txn *lost_ptx;
static int lost_commit_rc;

static void
lost_statement_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    ptx_rec *r = arg;
    r->q[0].status = pgev_result_status(res);
    r->q[0].done_calls++;
    tu_in_call++;
    lost_commit_rc = pgev_pool_txn_commit(lost_ptx);
    tu_in_call--;
}

static void
lost_body(pgev_pool_txn *ptx, pgev_txn *txn, int attempt, void *arg)
{
    ptx_rec *r = arg;
    (void)attempt;
    r->body_calls++;
    lost_ptx = ptx;
    TU_CHECK(pgev_txn_query(txn, "SELECT pg_terminate_backend(pg_backend_pid())", lost_statement_done, r) > 0,
             "statement refused");
}

START_TEST(transaction_connection_lost_in_body)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    int before = pool_pid();
    ptx_rec r;
    memset(&r, 0, sizeof r);
    lost_commit_rc = -100;
    tu_in_call++;
    ck_assert_int_gt(pgev_pool_transaction(pool, NULL, lost_body, ptx_done, &r), 0);
    tu_in_call--;
    tu_wait_count(&r.done_calls, 1, TU_WAIT_MS, "the transaction's outcome");
    ck_assert_int_eq(r.body_calls, 1);
    ck_assert_int_eq(r.q[0].done_calls, 1);
    ck_assert_int_eq(r.q[0].status, PGEV_ECONNLOST);
    ck_assert_int_eq(lost_commit_rc, PGEV_OK);
    ck_assert_msg(r.status == PGEV_ECONNLOST, "outcome %s: %s", pgev_strerror(r.status), r.message);
    ck_assert_int_eq(r.attempts, 1);
    ck_assert_int_ne(pool_pid(), before);   /* replaced */
    ck_assert_int_eq(stats().conns_acquired, 0);
    /* A transaction still waiting for a connection, cancelled by its id. */
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    ptx_rec w;
    memset(&w, 0, sizeof w);
    int64_t id = run_ptx(&w, 0);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(pgev_pool_acquire_cancel(pool, id), PGEV_OK);
    tu_wait_count(&w.done_calls, 1, TU_WAIT_MS, "the cancelled transaction");
    ck_assert_int_eq(w.status, PGEV_ECANCELLED);
    ck_assert_int_eq(w.body_calls, 0);
    ck_assert_int_eq(release(&a), PGEV_OK);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

START_TEST(acquire_cancel_calls_back_once)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    acq_rec a = { .index = 0 }, b = { .index = 1 }, c = { .index = 2 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    ck_assert_int_gt(acquire(&b), 0);
    ck_assert_int_gt(acquire(&c), 0);
    ck_assert_int_eq(pgev_pool_acquire_cancel(pool, a.rc), PGEV_EINVAL);  /* granted already */
    tu_in_call++;
    ck_assert_int_eq(pgev_pool_acquire_cancel(pool, b.rc), PGEV_OK);
    tu_in_call--;
    ck_assert_int_eq(b.calls, 0);                                         /* never inside the call */
    ck_assert_int_eq(pgev_pool_acquire_cancel(pool, b.rc), PGEV_EINVAL);  /* once */
    wait_acquired(&b);
    ck_assert_int_eq(b.code, PGEV_ECANCELLED);
    ck_assert_int_eq(stats().waiters, 1);
    ck_assert_int_eq(release(&a), PGEV_OK);
    wait_acquired(&c);                      /* c, behind the cancelled b, gets it */
    ck_assert_int_eq(c.code, PGEV_OK);
    ck_assert_int_eq(release(&c), PGEV_OK);
    tu_run_for(50);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(stats().acquires_cancelled, 1);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

static int
pool_pid(void)
{
    pool_rec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(pool_sql("SELECT pg_backend_pid()", &r), 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    assert_rec_ok(&r);
    return atoi(r.value);
}

START_TEST(max_uses_replaces_connection)
{
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1, .max_uses = 3 };
    make_pool(&opts);
    int pids[7];
    for (int i = 0; i < 7; i++)
        pids[i] = pool_pid();
    ck_assert_int_eq(pids[0], pids[1]);
    ck_assert_int_eq(pids[1], pids[2]);
    ck_assert_int_ne(pids[2], pids[3]);
    ck_assert_int_eq(pids[3], pids[5]);
    ck_assert_int_ne(pids[5], pids[6]);
    ck_assert_int_eq(stats().connects, 3);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

START_TEST(reset_replaces_every_connection)
{
    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2 };
    make_pool(&opts);
    wait_idle(2);
    int before = pool_pid();
    acq_rec a = { .index = 0 };
    ck_assert_int_gt(acquire(&a), 0);
    wait_acquired(&a);
    int held = acquired_pid(&a);
    tu_in_call++;
    ck_assert_int_eq(pgev_pool_reset(pool), PGEV_OK);
    tu_in_call--;
    int after = pool_pid();
    ck_assert_int_ne(after, before);
    ck_assert_int_ne(after, held);
    ck_assert_int_eq(acquired_pid(&a), held);     /* a held connection is kept until released */
    ck_assert_int_eq(release(&a), PGEV_OK);
    acq_rec b = { .index = 1 };
    ck_assert_int_gt(acquire(&b), 0);
    wait_acquired(&b);
    int fresh = acquired_pid(&b);
    ck_assert_int_ne(fresh, held);
    ck_assert_int_ne(fresh, before);
    ck_assert_int_eq(release(&b), PGEV_OK);
    ck_assert_int_eq(stats().pool_resets, 1);
    free_pool();
    tu_assert_base_idle();
}
END_TEST

/* Freeing or closing the pool from inside each kind of pool callback:
 * the init hook, a streamed query's row callback, on_closed (after a close
 * made inside a query callback), a pool transaction's on_done. */
static void
init_hook_frees(pgev_pool *p, pgev_conn *conn, void *arg)
{
    (void)conn;
    (void)arg;
    TU_CHECK(p == pool, "wrong pool");
    pgev_pool_free(p);
    pool = NULL;
}

static void
rows_free_pool(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    (void)res;
    (void)arg;
    if (pool) {
        pgev_pool_free(pool);
        pool = NULL;
    }
}

static void
closed_frees(pgev_pool *p, void *arg)
{
    (void)arg;
    closed_calls++;
    pgev_pool_free(p);
    pool = NULL;
}

static void
close_in_callback(pgev_conn *conn, pgev_result *res, pool_rec *r)
{
    (void)conn;
    (void)res;
    (void)r;
    TU_CHECK(pgev_pool_close(pool, closed_frees, NULL) == PGEV_OK, "close refused");
}

static void
ptx_done_frees(pgev_pool *p, pgev_result *res, int attempts, void *arg)
{
    ptx_done(p, res, attempts, arg);
    pgev_pool_free(p);
    pool = NULL;
}

START_TEST(free_inside_every_callback)
{
    /* The init hook. */
    pgev_pool_options init_opts = { .min_conns = 1, .max_conns = 1, .on_conn_init = init_hook_frees };
    make_pool(&init_opts);
    pool_rec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(pool_sql("SELECT 1", &r), 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    ck_assert_ptr_null(pool);
    ck_assert_int_eq(r.status, PGEV_ECANCELLED);
    tu_assert_base_idle();

    /* A row callback. */
    pgev_pool_options opts = { .min_conns = 1, .max_conns = 1 };
    make_pool(&opts);
    memset(&r, 0, sizeof r);
    pgev_query_args args = { .sql = "SELECT g FROM generate_series(1, 1000) g", .on_rows = rows_free_pool,
                             .on_done = pool_done_cb, .arg = &r };
    tu_in_call++;
    r.id = pgev_pool_submit(pool, &args);
    tu_in_call--;
    ck_assert_int_gt(r.id, 0);
    wait_recs(&r, 1, TU_WAIT_MS);
    ck_assert_ptr_null(pool);
    ck_assert_int_eq(r.status, PGEV_ECANCELLED);
    tu_run_for(20);
    tu_assert_base_idle();

    /* Close inside a query callback, free inside on_closed. */
    closed_calls = 0;
    make_pool(&opts);
    memset(&r, 0, sizeof r);
    r.hook = close_in_callback;
    ck_assert_int_gt(pool_sql("SELECT 1", &r), 0);
    tu_wait_count(&closed_calls, 1, TU_WAIT_MS, "the pool to close");
    ck_assert_ptr_null(pool);
    assert_rec_ok(&r);
    tu_assert_base_idle();

    /* A pool transaction's on_done. */
    tu_exec("DROP TABLE IF EXISTS pool_ptx");
    tu_exec("CREATE TABLE pool_ptx (x int)");
    make_pool(&opts);
    ptx_rec x;
    memset(&x, 0, sizeof x);
    tu_in_call++;
    ck_assert_int_gt(pgev_pool_transaction(pool, NULL, ptx_body, ptx_done_frees, &x), 0);
    tu_in_call--;
    tu_wait_count(&x.done_calls, 1, TU_WAIT_MS, "the transaction");
    ck_assert_int_eq(x.status, PGEV_OK);
    ck_assert_ptr_null(pool);
    tu_run_for(20);
    tu_assert_base_idle();
    tu_exec("DROP TABLE pool_ptx");
}
END_TEST

static Suite *
pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tu_tcase("sizes", 120);
    tcase_add_test(tc, min_size_reached);
    tcase_add_test(tc, max_never_exceeded);
    tcase_add_test(tc, least_loaded_dispatch);
    tcase_add_test(tc, queued_queries_keep_their_arguments);
    tcase_add_test(tc, idle_timeout_shrinks_to_min);
    tcase_add_test(tc, max_lifetime_replaces);
    tcase_add_test(tc, init_hook_runs_on_every_connection);
    tcase_add_test(tc, latency_percentiles);
    suite_add_tcase(s, tc);

    tc = tu_tcase("acquire", 60);
    tcase_add_test(tc, acquire_fifo_and_exclusive);
    tcase_add_test(tc, acquire_timeout);
    tcase_add_test(tc, waiter_cap);
    tcase_add_test(tc, dirty_release_is_rolled_back);
    suite_add_tcase(s, tc);

    tc = tu_tcase("teardown", 60);
    tcase_add_test(tc, free_with_queued_and_running_work);
    tcase_add_test(tc, free_inside_query_callback);
    tcase_add_test(tc, free_inside_acquire_callback);
    tcase_add_test(tc, close_drains);
    tcase_add_test(tc, refusals);
    suite_add_tcase(s, tc);

    tc = tu_tcase("faults", 240);
    tcase_add_test(tc, lost_connection_retries_only_safe_queries);
    tcase_add_test(tc, health_check_replaces_unresponsive_connection);
    tcase_add_test(tc, query_timeout_counts_queue_time);
    tcase_add_test(tc, queued_query_deadlines_on_time);
    tcase_add_test(tc, server_restart_under_load);
    tcase_add_test(tc, server_down_fails_fast_then_recovers);
    suite_add_tcase(s, tc);

    tc = tu_tcase("handover", 60);
    tcase_add_test(tc, free_inside_queue_timeout);
    tcase_add_test(tc, release_then_free_in_callback);
    tcase_add_test(tc, release_in_callback_needs_no_rollback);
    tcase_add_test(tc, listen_does_not_reach_next_borrower);
    tcase_add_test(tc, open_txn_at_release);
    tcase_add_test(tc, stalled_reset_is_abandoned);
    tcase_add_test(tc, stale_release_refused);
    tcase_add_test(tc, health_check_before_use);
    tcase_add_test(tc, health_check_before_acquire);
    tcase_add_test(tc, streamed_rows_never_retried);
    tcase_add_test(tc, null_param_values_like_conn);
    suite_add_tcase(s, tc);

    tc = tu_tcase("calls", 60);
    tcase_add_test(tc, transaction_commits_retries_and_rolls_back);
    tcase_add_test(tc, transaction_cancelled_with_the_pool);
    tcase_add_test(tc, transaction_connection_lost_in_body);
    tcase_add_test(tc, acquire_cancel_calls_back_once);
    tcase_add_test(tc, max_uses_replaces_connection);
    tcase_add_test(tc, reset_replaces_every_connection);
    tcase_add_test(tc, free_inside_every_callback);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(pool_suite());
}
