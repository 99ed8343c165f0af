/*
 * demo.c — a tour of pgev in five steps, each starting when the previous
 * one has finished:
 *
 *   1. pipelining: prepare a statement and run it 10 times, all submitted at
 *      once; results arrive in submission order, each in its own callback
 *   2. error isolation: one failing query among good ones fails alone
 *   3. atomic batches: a transfer that commits, and one that is rolled back
 *   4. streaming: 1,000,000 rows through a row callback in constant memory
 *   5. graceful close: on_disconnect reports the end
 *
 *   ./demo "host=localhost dbname=postgres"      (or "" to use PG* variables)
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/event.h>
#include <pgev.h>

#define PIPELINED_QUERIES 10
#define STREAM_ROWS 1000000

typedef struct demo demo;
typedef void (*step_fn)(demo *d);

struct demo {
    pgev_conn *conn;
    struct event_base *base;
    int exit_code;      /* 1 until the tour has completed */
    bool failed;
    int remaining;      /* callbacks still expected before the next step */
    step_fn next_step;  /* runs when `remaining` reaches 0 */
    double step_started;
    int64_t rows_streamed;
    int64_t row_deliveries;
};

static void step_isolation(demo *d);
static void step_batches(demo *d);
static void step_stream(demo *d);
static void step_close(demo *d);

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double elapsed_ms(const demo *d)
{
    return now_ms() - d->step_started;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

/* Something unexpected: say so and stop the loop; main() frees the connection. */
static void demo_fail(demo *d, const char *what, const char *message)
{
    if (!d->failed)
        fprintf(stderr, "demo: %s: %s\n", what, message);
    d->failed = true;
    event_base_loopbreak(d->base);
}

/* Starts a step that expects `callbacks` completions before `next` runs. */
static void step_begin(demo *d, const char *title, int callbacks, step_fn next)
{
    printf("\n== %s\n", title);
    d->remaining = callbacks;
    d->next_step = next;
    d->step_started = now_ms();
}

/* One expected callback has run; move on when it was the step's last one. */
static void step_progress(demo *d)
{
    if (d->failed)
        return; /* after a failure, pgev_conn_free() cancels what is left */
    if (--d->remaining == 0 && d->next_step)
        d->next_step(d);
}

/*
 * Checks what a submit call returned: a query id, or a negative error. A
 * refused query never calls back, so its step could not finish: stop.
 */
static bool submitted(demo *d, int64_t id)
{
    if (id < 0)
        demo_fail(d, "submit refused", pgev_conn_errmsg(d->conn));
    return id >= 0;
}

/* ------------------------------------------------------------------------
 * 1. Pipelining
 * ------------------------------------------------------------------------ */

static void on_prepared(pgev_conn *conn, pgev_result *res, void *arg)
{
    demo *d = arg;
    (void)conn;
    if (pgev_result_status(res) != PGEV_OK) {
        demo_fail(d, "prepare", pgev_error_message(pgev_result_error(res)));
        return;
    }
    printf("  prepared statement \"square\"          %6.2f ms\n", elapsed_ms(d));
    step_progress(d);
}

static void on_square(pgev_conn *conn, pgev_result *res, void *arg)
{
    demo *d = arg;
    int64_t n, square;
    (void)conn;
    if (pgev_result_status(res) != PGEV_OK ||
        pgev_result_get_int64(res, 0, 0, &n) != PGEV_OK ||
        pgev_result_get_int64(res, 0, 1, &square) != PGEV_OK) {
        demo_fail(d, "square", pgev_result_error(res) ? pgev_error_message(pgev_result_error(res))
                                                      : "unexpected result");
        return;
    }
    printf("  query #%-3" PRId64 " %3" PRId64 " squared = %-5" PRId64 "      %6.2f ms\n",
           pgev_result_query_id(res), n, square, elapsed_ms(d));
    step_progress(d);
}

/*
 * The statement is prepared and executed ten times without waiting for
 * anything: pgev pipelines all eleven requests onto the connection, and
 * ordering guarantees the statement exists before the first execution.
 */
static void step_pipeline(demo *d)
{
    step_begin(d, "1. Pipelining: prepare + 10 queries submitted at once", 1 + PIPELINED_QUERIES,
               step_isolation);
    if (!submitted(d, pgev_conn_prepare(d->conn, "square", "SELECT $1::int AS n, $1::int * $1::int AS square",
                                        1, NULL, on_prepared, d)))
        return;
    for (int i = 1; i <= PIPELINED_QUERIES; i++) {
        char value[12];
        const char *params[] = {value};
        snprintf(value, sizeof value, "%d", i);
        if (!submitted(d, pgev_conn_execute(d->conn, "square", 1, params, on_square, d)))
            return;
    }
    printf("  all submitted; %d waiting to be sent, %d in flight\n", pgev_conn_pending(d->conn),
           pgev_conn_inflight(d->conn));
}

/* ------------------------------------------------------------------------
 * 2. Error isolation
 * ------------------------------------------------------------------------ */

static void on_division(pgev_conn *conn, pgev_result *res, void *arg)
{
    demo *d = arg;
    const char *text;
    (void)conn;
    if (pgev_result_status(res) != PGEV_OK) {
        const pgev_error *err = pgev_result_error(res);
        printf("  query #%-3" PRId64 " failed: %s (SQLSTATE %s)\n", pgev_result_query_id(res),
               pgev_error_message(err), pgev_error_sqlstate(err));
    } else if (pgev_result_get_text(res, 0, 0, &text, NULL) == PGEV_OK) {
        printf("  query #%-3" PRId64 " ok:     %s\n", pgev_result_query_id(res), text);
    } else {
        demo_fail(d, "division", "unexpected result");
        return;
    }
    step_progress(d);
}

/* Each query has its own Sync, so the division by zero fails alone. */
static void step_isolation(demo *d)
{
    static const char *const divisors[] = {"5", "0", "2"};
    step_begin(d, "2. Error isolation: 100 / 5, 100 / 0, 100 / 2", 3, step_batches);
    for (int i = 0; i < 3; i++) {
        const char *params[] = {divisors[i]};
        if (!submitted(d, pgev_conn_query_params(d->conn, "SELECT 100 / $1::int", 1, params, on_division, d)))
            return;
    }
}

/* ------------------------------------------------------------------------
 * 3. Atomic batches
 * ------------------------------------------------------------------------ */

static void on_setup(pgev_conn *conn, pgev_result *res, void *arg)
{
    demo *d = arg;
    (void)conn;
    if (pgev_result_status(res) != PGEV_OK) {
        demo_fail(d, "setup", pgev_error_message(pgev_result_error(res)));
        return;
    }
    step_progress(d);
}

/* One transfer: the argument of its queries' and its batch's callbacks. */
typedef struct transfer {
    demo *demo;
    const char *amount, *from, *to;
    bool announced;
} transfer;

static void on_batch_query(pgev_conn *conn, pgev_result *res, void *arg)
{
    transfer *t = arg;
    (void)conn;
    if (!t->announced) {
        printf("  transfer %s from account %s to account %s:\n", t->amount, t->from, t->to);
        t->announced = true;
    }
    switch (pgev_result_status(res)) {
    case PGEV_OK:
        printf("    #%-3" PRId64 " %s\n", pgev_result_query_id(res), pgev_result_command(res));
        break;
    case PGEV_EABORTED:
        printf("    #%-3" PRId64 " not run: an earlier query of the batch failed\n", pgev_result_query_id(res));
        break;
    default:
        printf("    #%-3" PRId64 " failed: %s\n", pgev_result_query_id(res),
               pgev_error_message(pgev_result_error(res)));
        break;
    }
    step_progress(t->demo);
}

/* Runs after every query callback of the batch. */
static void on_batch_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    transfer *t = arg;
    (void)conn;
    if (pgev_result_status(res) == PGEV_OK)
        printf("    => batch committed\n");
    else
        printf("    => batch rolled back: %s\n", pgev_error_message(pgev_result_error(res)));
    step_progress(t->demo);
}

static void on_balances(pgev_conn *conn, pgev_result *res, void *arg)
{
    demo *d = arg;
    const char *text;
    (void)conn;
    if (pgev_result_status(res) != PGEV_OK || pgev_result_get_text(res, 0, 0, &text, NULL) != PGEV_OK) {
        demo_fail(d, "balances", "query failed");
        return;
    }
    printf("  balances now: %s\n", text);
    step_progress(d);
}

/* Moves t->amount from account t->from to account t->to in one atomic batch. */
static bool submit_transfer(transfer *t)
{
    demo *d = t->demo;
    const char *credit[] = {t->amount, t->to};
    const char *debit[] = {t->amount, t->from};
    if (pgev_conn_batch_begin(d->conn) != PGEV_OK) {
        demo_fail(d, "batch_begin", pgev_conn_errmsg(d->conn));
        return false;
    }
    bool ok = submitted(d, pgev_conn_query_params(d->conn,
                                                  "UPDATE account SET balance = balance + $1::int WHERE id = $2::int",
                                                  2, credit, on_batch_query, t)) &&
              submitted(d, pgev_conn_query_params(d->conn,
                                                  "UPDATE account SET balance = balance - $1::int WHERE id = $2::int",
                                                  2, debit, on_batch_query, t)) &&
              submitted(d, pgev_conn_query(d->conn, "INSERT INTO transfer_log DEFAULT VALUES", on_batch_query, t));
    /* End the batch even after a refused submit, so that what was queued completes. */
    if (pgev_conn_batch_end(d->conn, on_batch_done, t) != PGEV_OK) {
        demo_fail(d, "batch_end", pgev_conn_errmsg(d->conn));
        return false;
    }
    return ok;
}

/*
 * Queries between batch_begin and batch_end share one Sync: one implicit
 * transaction. The second transfer overdraws account 2, the CHECK fails, and
 * the credit already applied to account 1 is rolled back with it.
 */
static void step_batches(demo *d)
{
    static const char *const setup[] = {
        "CREATE TEMP TABLE account (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))",
        "CREATE TEMP TABLE transfer_log (at timestamptz DEFAULT now())",
        "INSERT INTO account VALUES (1, 100), (2, 50)",
    };
    /* callbacks: 3 setup + 2 transfers x (3 queries + 1 batch) + 1 balances */
    step_begin(d, "3. Atomic batches (each one a transaction)", 3 + 2 * 4 + 1, step_stream);
    printf("  account 1: 100, account 2: 50, and balance >= 0 is a CHECK constraint\n");
    for (int i = 0; i < 3; i++) {
        if (!submitted(d, pgev_conn_query(d->conn, setup[i], on_setup, d)))
            return;
    }
    static transfer transfers[2]; /* static: their callbacks run after this returns */
    transfers[0] = (transfer){.demo = d, .amount = "30", .from = "2", .to = "1"};
    transfers[1] = (transfer){.demo = d, .amount = "70", .from = "2", .to = "1"};
    if (!submit_transfer(&transfers[0]) || !submit_transfer(&transfers[1]))
        return;
    submitted(d, pgev_conn_query(d->conn,
                                 "SELECT string_agg(format('account %s: %s', id, balance), ', ' ORDER BY id) "
                                 "|| format(' (%s transfer logged)', (SELECT count(*) FROM transfer_log)) "
                                 "FROM account",
                                 on_balances, d));
}

/* ------------------------------------------------------------------------
 * 4. Streaming
 * ------------------------------------------------------------------------ */

/* Runs for every arrival of rows (one row at a time on libpq < 17). */
static void on_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    demo *d = arg;
    int64_t before = d->rows_streamed;
    (void)conn;
    d->rows_streamed += pgev_result_rows(res);
    d->row_deliveries++;
    if (before / 250000 != d->rows_streamed / 250000)
        printf("  %7" PRId64 " rows  %8.1f ms  peak RSS %ld KB\n", d->rows_streamed, elapsed_ms(d),
               peak_rss_kb());
}

static void on_stream_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    demo *d = arg;
    (void)conn;
    if (pgev_result_status(res) != PGEV_OK) {
        demo_fail(d, "stream", pgev_error_message(pgev_result_error(res)));
        return;
    }
    double ms = elapsed_ms(d);
    printf("  streamed %" PRId64 " rows (%" PRId64 " deliveries, the completion counts %" PRId64 ") in %.0f ms,"
           " %.1fM rows/s\n",
           d->rows_streamed, d->row_deliveries, pgev_result_rows(res), ms, (double)d->rows_streamed / ms / 1e3);
    printf("  peak RSS of this whole process: %ld KB\n", peak_rss_kb());
    if (d->rows_streamed != STREAM_ROWS) {
        demo_fail(d, "stream", "wrong row count");
        return;
    }
    step_progress(d);
}

static void step_stream(demo *d)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT g, md5(g::text) FROM generate_series(1, %d) g", STREAM_ROWS);
    pgev_query_args args = {
        .sql = sql,
        .on_rows = on_rows, /* set: rows are streamed, never buffered */
        .on_done = on_stream_done,
        .arg = d,
    };
    step_begin(d, "4. Streaming 1,000,000 rows through a row callback", 1, step_close);
    submitted(d, pgev_conn_submit(d->conn, &args));
}

/* ------------------------------------------------------------------------
 * 5. Close; and the connection callbacks
 * ------------------------------------------------------------------------ */

static void step_close(demo *d)
{
    step_begin(d, "5. Graceful close", 1, NULL);
    pgev_conn_close(d->conn);
    printf("  pgev_conn_close() called; state is now %s\n",
           pgev_conn_state(d->conn) == PGEV_CONN_CLOSED ? "closed" : "closing");
}

static void on_connect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    demo *d = arg;
    if (err) {
        demo_fail(d, "cannot connect", pgev_error_message(err));
        return;
    }
    PGconn *pg = pgev_conn_pg(conn);
    printf("connected: PostgreSQL %d, backend pid %d\n", PQserverVersion(pg), PQbackendPID(pg));
    step_pipeline(d);
}

static void on_disconnect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    demo *d = arg;
    (void)conn;
    if (err) {
        demo_fail(d, "connection lost", pgev_error_message(err));
        return;
    }
    printf("  on_disconnect: closed cleanly after %.2f ms\n", elapsed_ms(d));
    if (!d->failed && d->next_step == NULL)
        d->exit_code = 0;
}

int main(int argc, char **argv)
{
    demo d = {.exit_code = 1};
    const char *conninfo = argc > 1 ? argv[1] : "";
    pgev_conn_options options = {
        .on_connect = on_connect,
        .on_disconnect = on_disconnect,
        .arg = &d,
    };

    printf("pgev %s demo\n", PGEV_VERSION_STRING);
    d.base = event_base_new();
    if (d.base == NULL || (d.conn = pgev_conn_new(d.base, conninfo, &options)) == NULL) {
        fprintf(stderr, "demo: out of memory\n");
        return 1;
    }
    /* Runs every step from callbacks; returns when the connection has closed. */
    event_base_dispatch(d.base);

    pgev_conn_free(d.conn);
    event_base_free(d.base);
    printf("%s\n", d.exit_code == 0 ? "\ndemo finished" : "\ndemo FAILED");
    return d.exit_code;
}
