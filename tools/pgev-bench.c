/*
 * pgev-bench — pgev's own load generator. It uses only the public API
 * (include/pgev.h) on its own libevent event_base.
 *
 *   point:  `SELECT $1::int4`, prepared (default) or unnamed, keeping a
 *           window of queries outstanding on each connection: each query
 *           isolated (its own Sync, pgev's default) or in atomic batches of
 *           K. Every result is checked against the parameter sent.
 *   stream: `SELECT g, repeat('x',100) FROM generate_series(1,N) g` with a
 *           row callback, counting rows and bytes in constant memory.
 *
 * Prints a short table, then one machine-readable line of key=value pairs
 * (bench/compare.sh parses it). Exits 1 on any failure: no connection, a
 * query error, a wrong value, a wrong row count, or a stall.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/event.h>

#include "pgev.h"

#define POINT_SQL "SELECT $1::int4"
#define STREAM_SQL_FMT "SELECT g, repeat('x',100) FROM generate_series(1,%" PRId64 ") g"
#define STATEMENT_NAME "s"

#include "../bench/stats.h"


/* User plus system CPU seconds this process has used so far. */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}


static bool parse_count(const char *text, const char *option, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max) {
        fprintf(stderr, "pgev-bench: %s needs an integer in %" PRId64 "..%" PRId64 ", got '%s'\n", option,
                min, max, text);
        return false;
    }
    *out = value;
    return true;
}

/* ------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------ */

typedef enum workload { WORKLOAD_POINT, WORKLOAD_STREAM } workload;

typedef struct bench_options {
    workload workload;
    const char *dsn;
    int conns;
    int64_t queries;     /* stop after this many (point) */
    double duration_s;   /* or after this long, when > 0 */
    int64_t window;      /* queries outstanding per connection */
    int64_t batch;       /* 1: isolated queries; K > 1: atomic batches of K */
    bool unnamed;
    int64_t rows;        /* stream */
    double stall_s;      /* fail when nothing completes for this long */
} bench_options;

typedef struct bench bench;

typedef struct bench_conn {
    bench *bench;
    pgev_conn *conn;
    int64_t outstanding; /* submitted, completion not yet run */
} bench_conn;

/*
 * One outstanding point query. Slots come from a free list sized for the
 * full window of every connection, so submitting allocates nothing; the
 * query's callback argument is its slot.
 */
typedef struct query_slot {
    bench_conn *owner;
    uint64_t submitted_at;
    uint32_t expected;
    struct query_slot *next_free;
} query_slot;

struct bench {
    bench_options opt;
    struct event_base *base;
    struct event *ticker; /* see on_tick() */
    bench_conn *conns;
    query_slot *slots;
    query_slot *free_slots;

    int conns_ready;
    int conns_ended;
    bool started;
    bool draining;    /* no more submissions: the stop condition was reached */
    bool finished;    /* everything completed; connections are closing */
    bool failed;

    uint64_t started_ns;
    uint64_t finished_ns;
    uint64_t deadline_ns; /* 0: no time limit */
    double cpu_at_start;

    int64_t submitted;
    int64_t completed;
    int64_t outstanding;
    int64_t errors;       /* server or connection errors */
    int64_t aborted;      /* skipped because an earlier query of its batch failed */
    int64_t mismatches;   /* a value different from the parameter sent */
    int64_t batches;
    int64_t batch_failures;
    int64_t progress_at_last_tick;
    uint64_t last_progress_ns;
    uint64_t last_tick_ns;
    uint64_t max_loop_lag_ns; /* worst lateness of the ticker while measuring */

    /* stream */
    int64_t rows_seen;
    int64_t rows_reported;  /* by the completion result */
    uint64_t bytes_seen;
    uint64_t first_row_ns;
    int64_t deliveries;

    histogram latency;
};

static void bench_fail(bench *b, const char *what, const char *message)
{
    if (!b->failed)
        fprintf(stderr, "pgev-bench: %s: %s\n", what, message);
    b->failed = true;
    b->draining = true;
    event_base_loopbreak(b->base);
}

/*
 * All work done (the caller has stamped finished_ns): close each connection
 * gracefully; the last on_disconnect ends the loop.
 */
static void bench_finish(bench *b)
{
    if (b->finished)
        return;
    b->finished = true;
    b->draining = true;
    for (int i = 0; i < b->opt.conns; i++)
        pgev_conn_close(b->conns[i].conn);
}

static void on_disconnect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    bench_conn *bc = arg;
    bench *b = bc->bench;
    (void)conn;
    b->conns_ended++;
    if (err || !b->finished)
        bench_fail(b, "connection lost", err ? pgev_error_message(err) : "closed unexpectedly");
    else if (b->conns_ended == b->opt.conns)
        event_base_loopbreak(b->base);
}

/*
 * A timer ticking every TICK_MS while the benchmark runs. Its lateness is
 * the event loop's lag: how long pgev kept the loop busy without returning
 * to it (a callback storm starves other connections and timers). It also
 * stops a run that makes no progress instead of letting it hang.
 */
#define TICK_MS 10

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    bench *b = arg;
    (void)fd;
    (void)what;
    uint64_t now = now_ns();
    uint64_t expected = b->last_tick_ns + (uint64_t)TICK_MS * 1000000u;
    if (b->started && !b->finished && now > expected && now - expected > b->max_loop_lag_ns)
        b->max_loop_lag_ns = now - expected;
    b->last_tick_ns = now;

    int64_t progress = b->completed + b->rows_seen + b->conns_ready + b->conns_ended;
    if (progress != b->progress_at_last_tick) {
        b->progress_at_last_tick = progress;
        b->last_progress_ns = now;
        return;
    }
    if ((double)(now - b->last_progress_ns) / 1e9 < b->opt.stall_s)
        return;
    char message[160];
    pgev_conn *conn = b->conns[0].conn;
    snprintf(message, sizeof message,
             "no progress for %.0f s (%" PRId64 " outstanding; connection 0: pending %d, in flight %d)",
             b->opt.stall_s, b->outstanding, pgev_conn_pending(conn), pgev_conn_inflight(conn));
    bench_fail(b, "stalled", message);
}

/* ------------------------------------------------------------------------
 * point
 * ------------------------------------------------------------------------ */

static void point_refill(bench_conn *bc);

/* True once no further query should be submitted. */
static bool point_should_stop(bench *b)
{
    if (b->draining)
        return true;
    if (b->opt.queries > 0 && b->submitted >= b->opt.queries)
        b->draining = true;
    else if (b->deadline_ns && now_ns() >= b->deadline_ns)
        b->draining = true;
    return b->draining;
}

/* After a completion: submit more, or finish when the last one is in. */
static void point_after_completion(bench_conn *bc)
{
    bench *b = bc->bench;
    point_refill(bc);
    if (b->draining && b->outstanding == 0 && !b->failed) {
        b->finished_ns = now_ns();
        bench_finish(b);
    }
}

static void on_point_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    query_slot *slot = arg;
    bench_conn *bc = slot->owner;
    bench *b = bc->bench;
    (void)conn;

    hist_record(&b->latency, now_ns() - slot->submitted_at);
    int status = pgev_result_status(res);
    if (status == PGEV_OK) {
        int32_t value;
        if (pgev_result_get_int32(res, 0, 0, &value) != PGEV_OK || (uint32_t)value != slot->expected) {
            if (b->mismatches++ == 0)
                fprintf(stderr, "pgev-bench: wrong value for query %" PRId64 " (expected %" PRIu32 ")\n",
                        pgev_result_query_id(res), slot->expected);
        }
    } else if (status == PGEV_EABORTED) {
        b->aborted++;
    } else if (status != PGEV_ECANCELLED || !b->failed) {
        if (b->errors++ == 0)
            fprintf(stderr, "pgev-bench: query failed: %s\n", pgev_error_message(pgev_result_error(res)));
    }

    slot->next_free = b->free_slots;
    b->free_slots = slot;
    bc->outstanding--;
    b->outstanding--;
    b->completed++;
    /* Batches refill from their batch callback, which runs after this one. */
    if (b->opt.batch <= 1)
        point_after_completion(bc);
}

static void on_batch_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench_conn *bc = arg;
    (void)conn;
    if (pgev_result_status(res) != PGEV_OK)
        bc->bench->batch_failures++;
    point_after_completion(bc);
}

static bool point_submit_one(bench_conn *bc)
{
    bench *b = bc->bench;
    query_slot *slot = b->free_slots;
    char value[12];
    const char *values[1] = {value};

    b->free_slots = slot->next_free;
    slot->owner = bc;
    slot->expected = param_for((uint64_t)b->submitted);
    format_uint(value, slot->expected);
    slot->submitted_at = now_ns();
    int64_t id = b->opt.unnamed
                     ? pgev_conn_query_params(bc->conn, POINT_SQL, 1, values, on_point_done, slot)
                     : pgev_conn_execute(bc->conn, STATEMENT_NAME, 1, values, on_point_done, slot);
    if (id < 0) {
        slot->next_free = b->free_slots;
        b->free_slots = slot;
        bench_fail(b, "submit refused", pgev_conn_errmsg(bc->conn));
        return false;
    }
    b->submitted++;
    b->outstanding++;
    bc->outstanding++;
    return true;
}

static bool point_submit_batch(bench_conn *bc, int64_t size)
{
    bench *b = bc->bench;
    int rc = pgev_conn_batch_begin(bc->conn);
    if (rc != PGEV_OK) {
        bench_fail(b, "batch_begin refused", pgev_conn_errmsg(bc->conn));
        return false;
    }
    for (int64_t i = 0; i < size; i++) {
        if (!point_submit_one(bc))
            break; /* the batch is still ended below, so what was queued completes */
    }
    rc = pgev_conn_batch_end(bc->conn, on_batch_done, bc);
    if (rc != PGEV_OK) {
        bench_fail(b, "batch_end refused", pgev_conn_errmsg(bc->conn));
        return false;
    }
    b->batches++;
    return !b->failed;
}

/*
 * Keeps the connection's window full. Isolated queries: one new query per
 * free slot. Batches: a whole batch whenever one fits in the window (so a
 * window of 2K keeps two batches in flight, which is what keeps the
 * pipeline busy; with a window of K each batch waits for the previous one).
 */
static void point_refill(bench_conn *bc)
{
    bench *b = bc->bench;
    if (!b->started)
        return;
    int64_t batch = b->opt.batch;
    if (batch <= 1) {
        while (bc->outstanding < b->opt.window && !point_should_stop(b)) {
            if (!point_submit_one(bc))
                return;
        }
        return;
    }
    while (bc->outstanding + batch <= b->opt.window && !point_should_stop(b)) {
        int64_t size = batch;
        if (b->opt.queries > 0 && b->opt.queries - b->submitted < size)
            size = b->opt.queries - b->submitted;
        if (!point_submit_batch(bc, size))
            return;
    }
}

/* A connection is usable: start the clock once every connection is. */
static void point_conn_ready(bench_conn *bc)
{
    bench *b = bc->bench;
    if (++b->conns_ready < b->opt.conns)
        return;
    b->started = true;
    b->cpu_at_start = cpu_seconds();
    b->started_ns = now_ns();
    if (b->opt.duration_s > 0)
        b->deadline_ns = b->started_ns + (uint64_t)(b->opt.duration_s * 1e9);
    for (int i = 0; i < b->opt.conns; i++)
        point_refill(&b->conns[i]);
}

static void on_prepared(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench_conn *bc = arg;
    bench *b = bc->bench;
    (void)conn;
    int status = pgev_result_status(res);
    if (status == PGEV_OK)
        point_conn_ready(bc);
    else if (status != PGEV_ECONNECT && status != PGEV_ECANCELLED)
        bench_fail(b, "prepare failed", pgev_error_message(pgev_result_error(res)));
}

static void on_point_connect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    bench_conn *bc = arg;
    (void)conn;
    if (err)
        bench_fail(bc->bench, "cannot connect", pgev_error_message(err));
    else if (bc->bench->opt.unnamed)
        point_conn_ready(bc);
    /* prepared: the statement was queued right after pgev_conn_new() and
     * on_prepared starts this connection. */
}

static int point_report(bench *b)
{
    double wall_s = (double)(b->finished_ns - b->started_ns) / 1e9;
    double cpu_pct = wall_s > 0 ? 100.0 * (cpu_seconds() - b->cpu_at_start) / wall_s : 0.0;
    long rss_kb = peak_rss_kb();
    double qps = wall_s > 0 ? (double)b->completed / wall_s : 0.0;
    double p50 = hist_percentile_us(&b->latency, 0.50);
    double p99 = hist_percentile_us(&b->latency, 0.99);
    double max_us = (double)b->latency.max_ns / 1000.0;
    double lag_ms = (double)b->max_loop_lag_ns / 1e6;
    int64_t batch = b->opt.batch <= 1 ? 1 : b->opt.batch;
    const char *stmt = b->opt.unnamed ? "unnamed" : "prepared";

    printf("pgev %s point: %s SELECT $1::int4, %d connection%s, window %" PRId64 ", %s\n",
           PGEV_VERSION_STRING, stmt, b->opt.conns, b->opt.conns == 1 ? "" : "s", b->opt.window,
           batch == 1 ? "isolated queries" : "atomic batches");
    if (batch > 1)
        printf("  %-14s %12" PRId64 " of %" PRId64 " (%" PRId64 " failed)\n", "batches", b->batches, batch,
               b->batch_failures);
    printf("  %-14s %12" PRId64 "\n", "queries", b->completed);
    printf("  %-14s %12.3f\n", "seconds", wall_s);
    printf("  %-14s %12.0f\n", "queries/s", qps);
    printf("  %-14s %12.1f\n", "p50 us", p50);
    printf("  %-14s %12.1f\n", "p99 us", p99);
    printf("  %-14s %12.1f\n", "max us", max_us);
    printf("  %-14s %12.1f\n", "client CPU %", cpu_pct);
    printf("  %-14s %12ld\n", "peak RSS KB", rss_kb);
    printf("  %-14s %12.1f\n", "loop lag ms", lag_ms);
    printf("  %-14s %12" PRId64 " errors, %" PRId64 " aborted, %" PRId64 " mismatches\n", "failures",
           b->errors, b->aborted, b->mismatches);
    printf("workload=point impl=pgev conns=%d batch=%" PRId64 " queries=%" PRId64
           " qps=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f cpu_pct=%.1f rss_kb=%ld"
           " window=%" PRId64 " stmt=%s errors=%" PRId64 " loop_lag_ms=%.1f\n",
           b->opt.conns, batch, b->completed, qps, p50, p99, max_us, cpu_pct, rss_kb, b->opt.window, stmt,
           b->errors + b->aborted + b->mismatches, lag_ms);
    return b->errors || b->aborted || b->mismatches ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * stream
 * ------------------------------------------------------------------------ */

static void on_stream_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench *b = arg;
    (void)conn;
    if (b->first_row_ns == 0)
        b->first_row_ns = now_ns();
    const PGresult *pg = pgev_result_pg(res);
    int n = PQntuples(pg);
    for (int row = 0; row < n; row++)
        b->bytes_seen += (uint64_t)PQgetlength(pg, row, 0) + (uint64_t)PQgetlength(pg, row, 1);
    if (pgev_result_rows(res) != n && !b->failed)
        bench_fail(b, "row callback", "pgev_result_rows() disagrees with PQntuples()");
    b->rows_seen += n;
    b->deliveries++;
}

static void on_stream_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench *b = arg;
    (void)conn;
    b->finished_ns = now_ns();
    int status = pgev_result_status(res);
    if (status != PGEV_OK) {
        if (status != PGEV_ECONNECT)
            bench_fail(b, "stream failed", pgev_error_message(pgev_result_error(res)));
        return;
    }
    b->rows_reported = pgev_result_rows(res);
    b->completed = 1;
    bench_finish(b);
}

static void on_stream_connect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    bench_conn *bc = arg;
    bench *b = bc->bench;
    char sql[128];
    if (err) {
        bench_fail(b, "cannot connect", pgev_error_message(err));
        return;
    }
    b->conns_ready++;
    snprintf(sql, sizeof sql, STREAM_SQL_FMT, b->opt.rows);
    pgev_query_args args = {
        .sql = sql,
        .on_rows = on_stream_rows,
        .on_done = on_stream_done,
        .arg = b,
    };
    b->started = true;
    b->cpu_at_start = cpu_seconds();
    b->started_ns = now_ns();
    if (pgev_conn_submit(conn, &args) < 0)
        bench_fail(b, "submit refused", pgev_conn_errmsg(conn));
}

static int stream_report(bench *b)
{
    int status = 0;
    double wall_s = (double)(b->finished_ns - b->started_ns) / 1e9;
    double cpu_pct = wall_s > 0 ? 100.0 * (cpu_seconds() - b->cpu_at_start) / wall_s : 0.0;
    long rss_kb = peak_rss_kb();
    double rows_per_s = wall_s > 0 ? (double)b->rows_seen / wall_s : 0.0;
    double first_row_us = b->first_row_ns ? (double)(b->first_row_ns - b->started_ns) / 1000.0 : 0.0;
    double total_us = (double)(b->finished_ns - b->started_ns) / 1000.0;

    if (b->rows_seen != b->opt.rows || b->rows_reported != b->opt.rows) {
        fprintf(stderr,
                "pgev-bench: expected %" PRId64 " rows; the row callback saw %" PRId64
                ", the completion reported %" PRId64 "\n",
                b->opt.rows, b->rows_seen, b->rows_reported);
        status = 1;
    }
    printf("pgev %s stream: %" PRId64 " rows of ~105 bytes through on_rows\n", PGEV_VERSION_STRING, b->opt.rows);
    printf("  %-14s %12" PRId64 " in %" PRId64 " deliveries\n", "rows", b->rows_seen, b->deliveries);
    printf("  %-14s %12" PRIu64 "\n", "field bytes", b->bytes_seen);
    printf("  %-14s %12.3f\n", "seconds", wall_s);
    printf("  %-14s %12.0f\n", "rows/s", rows_per_s);
    printf("  %-14s %12.1f\n", "first row us", first_row_us);
    printf("  %-14s %12.1f\n", "client CPU %", cpu_pct);
    printf("  %-14s %12ld\n", "peak RSS KB", rss_kb);
    printf("  %-14s %12.1f\n", "loop lag ms", (double)b->max_loop_lag_ns / 1e6);
    /* One query: no latency distribution. p50/p99 stay in the line (as 0) so
     * every line has the same keys; first row and total times say more. */
    printf("workload=stream impl=pgev rows=%" PRId64 " rows_per_s=%.0f p50_us=0 p99_us=0"
           " cpu_pct=%.1f rss_kb=%ld first_row_us=%.1f total_us=%.1f loop_lag_ms=%.1f\n",
           b->rows_seen, rows_per_s, cpu_pct, rss_kb, first_row_us, total_us, (double)b->max_loop_lag_ns / 1e6);
    return status;
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pgev-bench [options]\n"
            "pgev's load generator. Prints a table, then one line of key=value pairs.\n"
            "\n"
            "  --dsn DSN          libpq conninfo or URI (default \"\": PG* variables apply)\n"
            "  --workload W       point (default): SELECT $1::int4, every result checked\n"
            "                     stream: SELECT g, repeat('x',100) FROM generate_series(1,N) g\n"
            "                     with a row callback\n"
            "  --conns N          point: connections, each with its own window (default 1)\n"
            "  --queries N        point: stop after N queries (default 100000, or unlimited\n"
            "                     with --duration)\n"
            "  --duration SEC     point: stop after SEC seconds\n"
            "  --window W         point: queries outstanding per connection (default 1000,\n"
            "                     or 2*K with --batch K so that two batches are in flight)\n"
            "  --batch K          point: 0 or 1 = isolated queries, each with its own Sync\n"
            "                     (default); K > 1 = atomic batches of K queries\n"
            "  --unnamed          point: pgev_conn_query_params() instead of a prepared\n"
            "                     statement and pgev_conn_execute()\n"
            "  --rows N           stream: rows to fetch (default 2000000)\n"
            "  --stall-timeout S  fail when nothing completes for S seconds (default 30)\n"
            "  --help             this text\n"
            "\n"
            "Exit status: 0 on success, 1 on a connection failure, query error, wrong\n"
            "result or stall, 2 on bad usage.\n");
}

static int parse_options(int argc, char **argv, bench_options *opt)
{
    static const struct option options[] = {
        {"dsn", required_argument, NULL, 'd'},
        {"workload", required_argument, NULL, 'w'},
        {"conns", required_argument, NULL, 'c'},
        {"queries", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 't'},
        {"window", required_argument, NULL, 'W'},
        {"batch", required_argument, NULL, 'b'},
        {"unnamed", no_argument, NULL, 'u'},
        {"rows", required_argument, NULL, 'r'},
        {"stall-timeout", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool queries_given = false, window_given = false;
    int64_t value;
    int ch;

    *opt = (bench_options){
        .workload = WORKLOAD_POINT,
        .dsn = "",
        .conns = 1,
        .queries = 100000,
        .window = 1000,
        .batch = 1,
        .rows = 2000000,
        .stall_s = 30,
    };
    while ((ch = getopt_long(argc, argv, "", options, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'd':
            opt->dsn = optarg;
            break;
        case 'w':
            if (strcmp(optarg, "point") == 0) {
                opt->workload = WORKLOAD_POINT;
            } else if (strcmp(optarg, "stream") == 0) {
                opt->workload = WORKLOAD_STREAM;
            } else {
                fprintf(stderr, "pgev-bench: unknown workload '%s' (point or stream)\n", optarg);
                ok = false;
            }
            break;
        case 'c':
            if ((ok = parse_count(optarg, "--conns", 1, 1000, &value)))
                opt->conns = (int)value;
            break;
        case 'n':
            ok = queries_given = parse_count(optarg, "--queries", 1, INT64_MAX, &opt->queries);
            break;
        case 't': {
            char *end;
            errno = 0;
            opt->duration_s = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(opt->duration_s > 0)) {
                fprintf(stderr, "pgev-bench: --duration needs a positive number of seconds\n");
                ok = false;
            }
            break;
        }
        case 'W':
            ok = window_given = parse_count(optarg, "--window", 1, 1000000, &opt->window);
            break;
        case 'b':
            ok = parse_count(optarg, "--batch", 0, 1000000, &opt->batch);
            break;
        case 'u':
            opt->unnamed = true;
            break;
        case 'r':
            ok = parse_count(optarg, "--rows", 1, INT64_MAX, &opt->rows);
            break;
        case 's':
            if ((ok = parse_count(optarg, "--stall-timeout", 1, 86400, &value)))
                opt->stall_s = (double)value;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            ok = false;
            break;
        }
        if (!ok) {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pgev-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (opt->batch < 1)
        opt->batch = 1;
    if (opt->duration_s > 0 && !queries_given)
        opt->queries = 0; /* time is the only limit */
    if (opt->batch > 1 && !window_given)
        opt->window = opt->batch * 2 > 1000 ? opt->batch * 2 : 1000;
    if (opt->batch > opt->window) {
        fprintf(stderr, "pgev-bench: --window (%" PRId64 ") must be at least --batch (%" PRId64 ")\n",
                opt->window, opt->batch);
        return 2;
    }
    if (opt->workload == WORKLOAD_STREAM && opt->conns != 1) {
        fprintf(stderr, "pgev-bench: the stream workload uses one connection\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench b = {0};
    int status = parse_options(argc, argv, &b.opt);
    if (status != 0)
        return status;

    b.base = event_base_new();
    b.conns = calloc((size_t)b.opt.conns, sizeof *b.conns);
    size_t nslots = b.opt.workload == WORKLOAD_POINT ? (size_t)b.opt.conns * (size_t)b.opt.window : 0;
    b.slots = nslots ? calloc(nslots, sizeof *b.slots) : NULL;
    if (!b.base || !b.conns || (nslots && !b.slots)) {
        fprintf(stderr, "pgev-bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nslots; i++) {
        b.slots[i].next_free = b.free_slots;
        b.free_slots = &b.slots[i];
    }
    b.ticker = event_new(b.base, -1, EV_PERSIST, on_tick, &b);
    struct timeval tick = {0, TICK_MS * 1000};
    if (!b.ticker || event_add(b.ticker, &tick) != 0) {
        fprintf(stderr, "pgev-bench: cannot create the timer\n");
        return 1;
    }
    b.last_progress_ns = b.last_tick_ns = now_ns();

    for (int i = 0; i < b.opt.conns && !b.failed; i++) {
        bench_conn *bc = &b.conns[i];
        pgev_conn_options options = {
            .max_inflight = (int)b.opt.window,
            .max_pending = (int)(b.opt.window + b.opt.batch > PGEV_DEFAULT_MAX_PENDING
                                     ? b.opt.window + b.opt.batch
                                     : PGEV_DEFAULT_MAX_PENDING),
            .on_connect = b.opt.workload == WORKLOAD_STREAM ? on_stream_connect : on_point_connect,
            .on_disconnect = on_disconnect,
            .arg = bc,
        };
        bc->bench = &b;
        bc->conn = pgev_conn_new(b.base, b.opt.dsn, &options);
        if (!bc->conn) {
            fprintf(stderr, "pgev-bench: pgev_conn_new failed (out of memory?)\n");
            b.failed = true;
            break;
        }
        /* Queued before the connection is up: pgev sends it once connected. */
        if (b.opt.workload == WORKLOAD_POINT && !b.opt.unnamed &&
            pgev_conn_prepare(bc->conn, STATEMENT_NAME, POINT_SQL, 1, NULL, on_prepared, bc) < 0)
            bench_fail(&b, "prepare refused", pgev_conn_errmsg(bc->conn));
    }

    if (!b.failed && event_base_dispatch(b.base) < 0)
        bench_fail(&b, "event loop", "event_base_dispatch failed");

    if (!b.failed)
        status = b.opt.workload == WORKLOAD_POINT ? point_report(&b) : stream_report(&b);
    else
        status = 1;

    /* Anything still outstanding (after a failure) completes with
     * PGEV_ECANCELLED inside pgev_conn_free(); draining stops resubmission. */
    b.draining = true;
    for (int i = 0; i < b.opt.conns; i++)
        pgev_conn_free(b.conns[i].conn);
    event_free(b.ticker);
    event_base_free(b.base);
    free(b.slots);
    free(b.conns);
    return status;
}
