/*
 * pool_lifecycle.c — a pool from start to finish: every new connection is
 * prepared by on_conn_init, a borrower's session settings are undone by
 * reset_query, pgev_pool_stats() reports what happened, and
 * pgev_pool_close() drains the pool before it is freed.
 *
 *   ./pool_lifecycle "host=localhost dbname=postgres"     (or "" to use PG* variables)
 *
 * Exits 0 when every query succeeded and the pool closed, 1 otherwise.
 */
#include <stdio.h>
#include <event2/event.h>
#include <pgev.h>

#define QUERIES 20

struct app {
    pgev_pool *pool;
    int ok;      /* queries that succeeded */
    int done;    /* queries completed */
    int closed;  /* 1 once the pool has drained */
};

/* ---- on_conn_init: prepare each new connection before the pool uses it ---- */

static void on_prepared(pgev_conn *conn, pgev_result *res, void *arg)
{
    struct app *app = arg;
    /* false discards the connection (counted as a connect failure); true puts it in service. */
    pgev_pool_init_done(app->pool, conn, pgev_result_status(res) == PGEV_OK);
}

static void on_conn_init(pgev_pool *pool, pgev_conn *conn, void *arg)
{
    /* A named statement on every connection, so that pool queries can run it by name. */
    if (pgev_conn_prepare(conn, "square", "SELECT $1::int8 * $1::int8", 1, NULL, on_prepared,
                          arg) < 0)
        pgev_pool_init_done(pool, conn, false);
}

/* ---- the work, the numbers, the drain ---- */

static void print_stats(pgev_pool *pool)
{
    pgev_pool_statistics st;
    if (pgev_pool_stats(pool, &st) != PGEV_OK)
        return;
    printf("pool: %d conns (%d idle, %d busy), %lld queries (%lld failed), %lld connects, "
           "%lld resets, query p50 %.0f us p99 %.0f us\n",
           st.conns, st.conns_idle, st.conns_busy, (long long)st.queries,
           (long long)st.queries_failed, (long long)st.connects, (long long)st.resets,
           st.query_p50_us, st.query_p99_us);
}

static void on_closed(pgev_pool *pool, void *arg)
{
    struct app *app = arg;
    (void)pool;
    app->closed = 1; /* every connection is closed: event_base_dispatch() returns */
}

static void on_square(pgev_conn *conn, pgev_result *res, void *arg)
{
    struct app *app = arg;
    (void)conn;
    if (pgev_result_status(res) == PGEV_OK)
        app->ok++;
    else
        fprintf(stderr, "query failed: %s\n", pgev_error_message(pgev_result_error(res)));
    if (++app->done == QUERIES) {
        print_stats(app->pool);
        /* Drain: refuse new work, let what is queued finish, close every connection. */
        pgev_pool_close(app->pool, on_closed, app);
    }
}

/* A borrower that changes its session: reset_query undoes it at release. */
static void on_acquired(pgev_pool *pool, pgev_conn *conn, const pgev_error *err, void *arg)
{
    int64_t *lease = arg;
    if (err) {
        fprintf(stderr, "acquire failed: %s\n", pgev_error_message(err));
        return;
    }
    pgev_conn_query(conn, "SET statement_timeout = '1s'", NULL, NULL);
    pgev_pool_release(pool, conn, *lease); /* RESET ALL runs before anyone else gets it */
}

int main(int argc, char **argv)
{
    const char *conninfo = argc > 1 ? argv[1] : "";
    struct app app = { 0 };

    struct event_base *base = event_base_new();
    if (base == NULL)
        return 1;
    pgev_pool_options opts = {
        .min_conns = 2,
        .max_conns = 4,
        .on_conn_init = on_conn_init,
        .arg = &app,
        .reset_query = "RESET ALL", /* undoes SETs, keeps on_conn_init's prepared statement */
    };
    app.pool = pgev_pool_new(base, conninfo, &opts);
    if (app.pool == NULL) {
        fprintf(stderr, "cannot create the pool\n");
        event_base_free(base);
        return 1;
    }

    static int64_t lease;
    lease = pgev_pool_acquire(app.pool, on_acquired, &lease);
    for (int i = 0; i < QUERIES; i++) {
        char n[16];
        snprintf(n, sizeof n, "%d", i);
        const char *const values[] = { n }; /* copied by the submit */
        if (pgev_pool_execute(app.pool, "square", 1, values, on_square, &app) < 0) {
            fprintf(stderr, "cannot submit: %s\n", pgev_pool_errmsg(app.pool));
            app.done++;
        }
    }
    if (app.done == QUERIES) /* nothing was accepted: close now */
        pgev_pool_close(app.pool, on_closed, &app);
    event_base_dispatch(base); /* returns once the pool has closed: nothing left armed */

    int exit_code = app.ok == QUERIES && app.closed ? 0 : 1;
    pgev_pool_free(app.pool);
    event_base_free(base);
    return exit_code;
}
