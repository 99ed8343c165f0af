/*
 * The pool against real topologies the harness builds beside its primary:
 * a streaming standby (pg_basebackup -R) for read routing and for failover
 * (the primary stops, the standby is promoted, the pool carries on with
 * every acknowledged write), and PgBouncer in transaction mode in front of
 * the primary. Needs PGEV_TEST_DSN, PGEV_TEST_PGCLUSTER and
 * PGEV_TEST_CLUSTER_DIR (tests/pg-harness.sh); every test says "skipped"
 * and passes vacuously without the last two, which only happens against a
 * server the harness did not start (PGEV_TEST_DSN set by hand). The standby
 * tests also say "skipped" when the harness has no way to make a standby
 * (PGEV_TEST_REPLICA_METHOD empty: neither a pg_basebackup for the server
 * nor a psql for a low-level backup). scripts/test.sh counts every
 * "skipped:" line as a skipped test.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The first line of DIR/NAME (a DSN file the cluster tool wrote); free() it. */
static char *
cluster_file(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", getenv("PGEV_TEST_CLUSTER_DIR"), name);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[1024];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    return strdup(line);
}

/* ---- pool queries ------------------------------------------------------- */

typedef struct rec {
    int64_t id;
    int done_calls;
    int status;
    char value[64];
    char message[256];
} rec;

static void
rec_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    rec *r = arg;
    TU_CHECK(tu_in_call == 0, "pool callback inside the submitting call");
    r->done_calls++;
    TU_CHECK(r->done_calls == 1, "on_done ran %d times", r->done_calls);
    r->status = pgev_result_status(res);
    if (r->status == PGEV_OK) {
        PGresult *pg = pgev_result_pg(res);
        if (pg && PQntuples(pg) > 0 && PQnfields(pg) > 0)
            snprintf(r->value, sizeof r->value, "%s", PQgetvalue(pg, 0, 0));
    } else {
        snprintf(r->message, sizeof r->message, "%s", pgev_error_message(pgev_result_error(res)));
    }
}

static int64_t
submit(pgev_pool *pool, const char *sql, unsigned flags, rec *r)
{
    pgev_query_args args = { .sql = sql, .flags = flags, .on_done = rec_done, .arg = r };
    tu_in_call++;
    r->id = pgev_pool_submit(pool, &args);
    tu_in_call--;
    return r->id;
}

static bool
recs_done(void *arg)
{
    rec **span = arg;
    for (rec *r = span[0]; r < span[1]; r++)
        if (r->id > 0 && r->done_calls == 0)
            return false;
    return true;
}

static void
wait_recs(rec *r, int n)
{
    rec *span[2] = { r, r + n };
    tu_run_until(recs_done, span, TU_WAIT_MS, "pool queries to complete");
}

/* One query through the pool, waited for. */
static rec
pool_run(pgev_pool *pool, const char *sql, unsigned flags)
{
    rec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(submit(pool, sql, flags, &r), 0);
    wait_recs(&r, 1);
    return r;
}

static void
free_pool(pgev_pool *pool)
{
    tu_in_call++;
    pgev_pool_free(pool);
    tu_in_call--;
}

/* ---- a standby ---------------------------------------------------------- */

/* Read-only queries go to the standby, the rest to the primary; when the
 * standby goes away they fall back to the primary. */
START_TEST(read_routing_to_standby)
{
    if (!tu_have_replicas("starts a standby beside it"))
        return;
    tu_cluster("replica", "ro_standby", NULL);
    char *standby = cluster_file("ro_standby.dsn");
    tu_exec("DROP TABLE IF EXISTS route_t");
    tu_exec("CREATE TABLE route_t (v int)");
    tu_exec("INSERT INTO route_t VALUES (42)");

    pgev_pool_options opts = { .min_conns = 1, .max_conns = 2, .standby_conninfo = standby,
                               .standby_min_conns = 1 };
    pgev_pool *pool = pgev_pool_new(tu_base, tu_dsn(), &opts);
    ck_assert_ptr_nonnull(pool);
    /* Until the standby connection is up, read-only queries go to the
     * primary; once it is, they go to the standby. */
    uint64_t deadline = mono_ms() + 20000;
    for (;;) {
        rec q = pool_run(pool, "SELECT pg_is_in_recovery()", PGEV_QUERY_READONLY);
        ck_assert_msg(q.status == PGEV_OK, "read-only query: %s", q.message);
        if (strcmp(q.value, "t") == 0)
            break;
        ck_assert_msg(mono_ms() < deadline, "no read-only query ever reached the standby");
    }
    enum { N = 40 };
    rec r[2 * N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++) {
        ck_assert_int_gt(submit(pool, "SELECT pg_is_in_recovery()", PGEV_QUERY_READONLY, &r[i]), 0);
        ck_assert_int_gt(submit(pool, "SELECT pg_is_in_recovery()", 0, &r[N + i]), 0);
    }
    wait_recs(r, 2 * N);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(r[i].status == PGEV_OK, "read-only query %d: %s", i, r[i].message);
        ck_assert_str_eq(r[i].value, "t");          /* answered by the standby */
        ck_assert_msg(r[N + i].status == PGEV_OK, "query %d: %s", i, r[N + i].message);
        ck_assert_str_eq(r[N + i].value, "f");      /* by the primary */
    }
    pgev_pool_statistics st;
    ck_assert_int_eq(pgev_pool_stats(pool, &st), PGEV_OK);
    ck_assert_int_ge(st.queries_standby, N);
    ck_assert_int_ge(st.conns_standby, 1);

    /* Replicated data is read there. */
    deadline = mono_ms() + 20000;
    for (;;) {
        rec q = pool_run(pool, "SELECT v FROM route_t", PGEV_QUERY_READONLY);
        if (q.status == PGEV_OK && strcmp(q.value, "42") == 0)
            break;
        ck_assert_msg(mono_ms() < deadline, "the standby never showed the row (%s)", q.message);
    }

    /* The standby stops: read-only queries go to the primary. */
    tu_cluster("server-stop", "ro_standby", NULL);
    deadline = mono_ms() + 20000;
    int fallbacks = 0;
    while (fallbacks < 10) {
        rec q = pool_run(pool, "SELECT pg_is_in_recovery()", PGEV_QUERY_READONLY);
        if (q.status == PGEV_OK) {
            ck_assert_str_eq(q.value, "f");
            fallbacks++;
        } else {
            /* Only a query already on the standby connection when it went
             * away may fail, and only as a lost connection. */
            ck_assert_msg(q.status == PGEV_ECONNLOST, "unexpected failure: %s", q.message);
        }
        ck_assert_msg(mono_ms() < deadline, "read-only queries never fell back to the primary");
    }
    free_pool(pool);
    free(standby);
}
END_TEST

/* Failover: writes acknowledged by the primary survive its stop and the
 * standby's promotion; the pool, given both hosts and
 * target_session_attrs=read-write, finds the new primary by itself. */
START_TEST(failover_to_promoted_standby)
{
    if (!tu_have_replicas("starts a standby beside it"))
        return;
    tu_cluster("replica", "fo_standby", NULL);
    char *primary_port = cluster_file("port");
    char *standby_port = cluster_file("fo_standby.port");
    char conninfo[1024];
    snprintf(conninfo, sizeof conninfo,
             "host=%s,%s port=%s,%s dbname=postgres user=postgres target_session_attrs=read-write "
             "connect_timeout=5",
             getenv("PGEV_TEST_CLUSTER_DIR"), getenv("PGEV_TEST_CLUSTER_DIR"), primary_port, standby_port);
    tu_exec("DROP TABLE IF EXISTS failover_t");
    tu_exec("CREATE TABLE failover_t (id int PRIMARY KEY)");

    pgev_pool_options opts = { .min_conns = 2, .max_conns = 2, .acquire_timeout_ms = 2000,
                               .queue_timeout_ms = 2000 };
    pgev_pool *pool = pgev_pool_new(tu_base, conninfo, &opts);
    ck_assert_ptr_nonnull(pool);

    enum { WRITES = 200 };
    static rec w[WRITES];
    memset(w, 0, sizeof w);
    static char sql[WRITES][64];
    for (int i = 0; i < WRITES; i++) {
        snprintf(sql[i], sizeof sql[i], "INSERT INTO failover_t VALUES (%d)", i);
        ck_assert_int_gt(submit(pool, sql[i], 0, &w[i]), 0);
    }
    wait_recs(w, WRITES);
    int acknowledged = 0;
    for (int i = 0; i < WRITES; i++) {
        ck_assert_msg(w[i].status == PGEV_OK, "write %d: %s", i, w[i].message);
        acknowledged++;
    }

    /* A fast stop ships all WAL to the standby before the server exits. */
    tu_cluster("server-stop", "primary", NULL);
    tu_cluster("promote", "fo_standby", NULL);

    /* The pool recovers on its own: writes go through again, on the
     * promoted standby, within a bounded time. */
    uint64_t start = mono_ms(), deadline = start + 30000;
    int id = WRITES;
    for (;;) {
        char one[64];
        snprintf(one, sizeof one, "INSERT INTO failover_t VALUES (%d)", id);
        rec q = pool_run(pool, one, 0);
        if (q.status == PGEV_OK) {
            acknowledged++;
            break;
        }
        ck_assert_msg(q.status == PGEV_ECONNLOST || q.status == PGEV_ECONNECT || q.status == PGEV_ETIMEOUT ||
                          q.status == PGEV_ECLOSED,
                      "write during failover: %s (%s)", pgev_strerror(q.status), q.message);
        ck_assert_msg(mono_ms() < deadline, "the pool did not recover within 30 s: %s", q.message);
        id++;
    }
    rec where = pool_run(pool, "SELECT pg_is_in_recovery()", 0);
    ck_assert_int_eq(where.status, PGEV_OK);
    ck_assert_str_eq(where.value, "f");
    /* No acknowledged write was lost. */
    rec count = pool_run(pool, "SELECT count(*) FROM failover_t", 0);
    ck_assert_int_eq(count.status, PGEV_OK);
    ck_assert_int_eq(atoi(count.value), acknowledged);
    free_pool(pool);
    free(primary_port);
    free(standby_port);
    /* The old primary stays stopped; the harness removes the cluster. */
}
END_TEST

/* ---- PgBouncer ---------------------------------------------------------- */

static void
acquired(pgev_pool *pool, pgev_conn *conn, const pgev_error *err, void *arg)
{
    (void)pool;
    pgev_conn **out = arg;
    TU_CHECK(err == NULL, "acquire failed: %s", err ? pgev_error_message(err) : "");
    *out = conn;
}

static bool
conn_set(void *arg)
{
    return *(pgev_conn **)arg != NULL;
}

/* In transaction mode consecutive transactions may reach different server
 * sessions (2 here for a pgev pool of 4): pipelined queries, parameters
 * (unnamed statements) and exclusive transactions all work with the
 * statement cache off. */
START_TEST(pgbouncer_transaction_mode)
{
    if (!tu_have_cluster("starts standbys and PgBouncer beside it"))
        return;
    tu_cluster("pgbouncer", "transaction", NULL);
    char *bouncer = cluster_file("pgbouncer.dsn");
    pgev_pool_options opts = { .min_conns = 4, .max_conns = 4, .stmt_cache_size = PGEV_STMT_CACHE_OFF };
    pgev_pool *pool = pgev_pool_new(tu_base, bouncer, &opts);
    ck_assert_ptr_nonnull(pool);

    enum { N = 2000 };
    static rec r[N];
    static char vals[N][16];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++) {
        snprintf(vals[i], sizeof vals[i], "%d", i);
        const char *params[1] = { vals[i] };
        pgev_query_args args = { .sql = "SELECT $1::int + 1", .nparams = 1, .param_values = params,
                                 .on_done = rec_done, .arg = &r[i] };
        tu_in_call++;
        r[i].id = pgev_pool_submit(pool, &args);
        tu_in_call--;
        ck_assert_int_gt(r[i].id, 0);
    }
    wait_recs(r, N);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(r[i].status == PGEV_OK, "query %d: %s", i, r[i].message);
        ck_assert_int_eq(atoi(r[i].value), i + 1);
    }

    /* A transaction on an acquired connection keeps its server session
     * until COMMIT. */
    tu_exec("DROP TABLE IF EXISTS bouncer_t");
    tu_exec("CREATE TABLE bouncer_t (v int)");
    pgev_conn *conn = NULL;
    tu_in_call++;
    int64_t lease = pgev_pool_acquire(pool, acquired, &conn);
    ck_assert_int_gt(lease, 0);
    tu_in_call--;
    tu_run_until(conn_set, &conn, TU_WAIT_MS, "an acquired connection");
    pgev_txn *txn = NULL;
    ck_assert_int_eq(pgev_conn_begin(conn, NULL, &txn), PGEV_OK);
    tu_query tq[3];
    memset(tq, 0, sizeof tq);
    rec commit;
    memset(&commit, 0, sizeof commit);
    tu_in_call++;
    tq[0].id = pgev_txn_query(txn, "INSERT INTO bouncer_t VALUES (1)", tu_done_cb, &tq[0]);
    tq[1].id = pgev_txn_query(txn, "SELECT pg_backend_pid()", tu_done_cb, &tq[1]);
    tq[2].id = pgev_txn_query(txn, "SELECT pg_backend_pid()", tu_done_cb, &tq[2]);
    ck_assert_int_eq(pgev_txn_commit(txn, rec_done, &commit), PGEV_OK);
    tu_in_call--;
    commit.id = 1;
    tu_wait_queries(tq, 3, TU_WAIT_MS);
    wait_recs(&commit, 1);
    for (int i = 0; i < 3; i++)
        tu_assert_ok(&tq[i]);
    ck_assert_msg(commit.status == PGEV_OK, "commit: %s", commit.message);
    ck_assert_str_eq(tq[1].value, tq[2].value);      /* one server session throughout */
    ck_assert_int_eq(pgev_pool_release(pool, conn, lease), PGEV_OK);
    rec count = pool_run(pool, "SELECT count(*) FROM bouncer_t", 0);
    ck_assert_int_eq(count.status, PGEV_OK);
    ck_assert_str_eq(count.value, "1");
    free_pool(pool);
    free(bouncer);
}
END_TEST

static Suite *
topology_suite(void)
{
    Suite *s = suite_create("topology");
    /* Failover stops the primary: it runs last. */
    TCase *tc = tu_tcase("pgbouncer", 120);
    tcase_add_test(tc, pgbouncer_transaction_mode);
    suite_add_tcase(s, tc);
    tc = tu_tcase("standby", 180);
    tcase_add_test(tc, read_routing_to_standby);
    tcase_add_test(tc, failover_to_promoted_standby);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(topology_suite());
}
