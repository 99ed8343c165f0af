/*
 * raw-libpq — the plain-libpq anchor that pgev's benchmarks are measured
 * against: one connection in pipeline mode, a non-blocking socket and
 * poll(), no event library and no per-query allocation beyond libpq's own.
 *
 *   point  (default): prepared `SELECT $1::int4` (or unnamed statements with
 *          --unnamed), keeping --window queries in flight, with a Sync after
 *          every --sync-every queries (1 = each query isolated, as pgev's
 *          default; 1000 = batched, the fastest libpq can go). With
 *          --scale S: random-key lookups on pgbench_accounts (scale S)
 *          instead, the same keys pgev-bench --query accounts looks up.
 *   stream: `SELECT g, repeat('x',100) FROM generate_series(1,N) g` in
 *          single-row mode: the anchor for pgev's streamed queries.
 *
 * Prints a short table and then one machine-readable line of key=value
 * pairs, which bench/compare.sh parses.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libpq-fe.h>

#include "config.h"     /* HAVE_PQSETCHUNKEDROWSMODE */

#define POINT_SQL "SELECT $1::int4"
#define ACCOUNTS_SQL "SELECT aid, abalance FROM pgbench_accounts WHERE aid = $1"
#define STREAM_SQL_FMT "SELECT g, repeat('x',100) FROM generate_series(1,%" PRId64 ") g"

#include "stats.h"



static bool parse_count(const char *text, const char *option, int64_t min, int64_t *out)
{
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end || value < min) {
        fprintf(stderr, "raw-libpq: %s needs an integer >= %" PRId64 ", got '%s'\n", option, min, text);
        return false;
    }
    *out = value;
    return true;
}

typedef struct usage_report {
    double cpu_pct; /* CPU used during the measured interval, per wall time */
    long rss_kb;    /* peak resident set of the whole run */
} usage_report;

static usage_report measure_usage(double cpu_at_start, double wall_s)
{
    usage_report report = {0, 0};
    report.cpu_pct = wall_s > 0 ? 100.0 * (cpu_seconds() - cpu_at_start) / wall_s : 0.0;
    report.rss_kb = peak_rss_kb();
    return report;
}

/* Waits until the socket is readable, or also writable when `want_write`. */
static short wait_socket(PGconn *conn, bool want_write)
{
    struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
    if (want_write)
        pfd.events |= POLLOUT;
    for (;;) {
        int rc = poll(&pfd, 1, -1);
        if (rc > 0)
            return pfd.revents;
        if (rc < 0 && errno != EINTR) {
            perror("raw-libpq: poll");
            return POLLERR;
        }
    }
}

/* ------------------------------------------------------------------------
 * point: the pipelined loop
 * ------------------------------------------------------------------------ */

typedef struct point_run {
    PGconn *conn;
    bool unnamed;
    uint32_t accounts;   /* > 0: look up pgbench_accounts, keys 1..accounts */
    int64_t queries;     /* to run */
    int64_t window;      /* most queries sent and not completed */
    int64_t sync_every;  /* Sync after this many queries (capped at window) */

    int64_t sent;
    int64_t completed;
    int64_t unsynced;       /* queries sent since the last Sync */
    int64_t syncs_sent;
    int64_t syncs_received;
    int64_t errors;         /* PGRES_FATAL_ERROR results */
    int64_t aborted;        /* PGRES_PIPELINE_ABORTED results */
    int64_t mismatches;     /* a result whose value is not the parameter */
    bool in_result;         /* got a query's result, its NULL terminator is next */
    bool result_ok;

    /*
     * Two latencies per query. `latency`: from PQsend* to completion, as
     * measured here by default. `slot_latency`: from the moment the window
     * had room for the query (the completion of query seq - window) to its
     * completion: a closed-loop client's view, which also counts the time a
     * query waits while this loop holds back because PQflush() returned 1.
     * pgev-bench's latency is the latter kind (a query is submitted as soon
     * as its slot frees and may then wait in pgev's queue), so compare that.
     */
    uint64_t *sent_at;      /* ring of `window` send times, indexed by seq */
    uint64_t *slot_free_at; /* ring of `window` slot-free times, indexed by seq */
    histogram latency;
    histogram slot_latency;
} point_run;

/* The parameter of query number `seq`, which its result must echo. */
static uint32_t point_param(const point_run *run, int64_t seq)
{
    return run->accounts ? account_for((uint64_t)seq, run->accounts) : param_for((uint64_t)seq);
}

static bool point_send_one(point_run *run)
{
    char value[12];
    const char *values[1] = {value};
    format_uint(value, point_param(run, run->sent));
    run->sent_at[run->sent % run->window] = now_ns();
    const char *sql = run->accounts ? ACCOUNTS_SQL : POINT_SQL;
    int ok = run->unnamed ? PQsendQueryParams(run->conn, sql, 1, NULL, values, NULL, NULL, 0)
                          : PQsendQueryPrepared(run->conn, "s", 1, values, NULL, NULL, 0);
    if (!ok) {
        fprintf(stderr, "raw-libpq: send failed: %s", PQerrorMessage(run->conn));
        return false;
    }
    run->sent++;
    run->unsynced++;
    return true;
}

/*
 * Sends queries while the window has room. A Sync goes out after every
 * `sync_every` queries, and after the last one. libpq 15's PQpipelineSync()
 * tries to flush; when that leaves data unsent (PQflush() returns 1) we stop
 * feeding: more PQsend* calls into a full output buffer retry send() and
 * burn CPU for nothing. Returns -1 on error, 1 when waiting for
 * writability, 0 otherwise.
 */
static int point_feed(point_run *run)
{
    while (run->sent < run->queries && run->sent - run->completed < run->window) {
        if (!point_send_one(run))
            return -1;
        if (run->unsynced >= run->sync_every || run->sent == run->queries) {
            if (!PQpipelineSync(run->conn)) {
                fprintf(stderr, "raw-libpq: sync failed: %s", PQerrorMessage(run->conn));
                return -1;
            }
            run->unsynced = 0;
            run->syncs_sent++;
            int flushed = PQflush(run->conn);
            if (flushed != 0)
                return flushed;
        }
    }
    return PQflush(run->conn);
}

static void point_complete(point_run *run, uint64_t now)
{
    int64_t slot = run->completed % run->window;
    hist_record(&run->latency, now - run->sent_at[slot]);
    hist_record(&run->slot_latency, now - run->slot_free_at[slot]);
    run->slot_free_at[slot] = now; /* query completed + window may go now */
    run->completed++;
}

/* Takes every result libpq has fully received. Returns false on a protocol surprise. */
static bool point_drain(point_run *run)
{
    while (!PQisBusy(run->conn)) {
        PGresult *res = PQgetResult(run->conn);
        if (res == NULL) {
            if (!run->in_result)
                return true; /* nothing more is ready */
            point_complete(run, now_ns());
            run->in_result = false;
            continue;
        }
        switch (PQresultStatus(res)) {
        case PGRES_TUPLES_OK:
            if (PQntuples(res) != 1 ||
                strtoul(PQgetvalue(res, 0, 0), NULL, 10) != point_param(run, run->completed))
                run->mismatches++;
            run->in_result = true;
            break;
        case PGRES_FATAL_ERROR:
            if (run->errors++ == 0)
                fprintf(stderr, "raw-libpq: query failed: %s", PQresultErrorMessage(res));
            run->in_result = true;
            break;
        case PGRES_PIPELINE_ABORTED:
            run->aborted++;
            run->in_result = true;
            break;
        case PGRES_PIPELINE_SYNC:
            run->syncs_received++;
            break;
        default:
            fprintf(stderr, "raw-libpq: unexpected result %s\n", PQresStatus(PQresultStatus(res)));
            PQclear(res);
            return false;
        }
        PQclear(res);
    }
    return true;
}

/* Prepares the statement (unless unnamed) and switches to non-blocking pipeline mode. */
static bool point_setup(PGconn *conn, bool unnamed, bool accounts)
{
    if (!unnamed) {
        PGresult *res = PQprepare(conn, "s", accounts ? ACCOUNTS_SQL : POINT_SQL, 1, NULL);
        bool prepared = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!prepared) {
            fprintf(stderr, "raw-libpq: prepare failed: %s", PQerrorMessage(conn));
            return false;
        }
    }
    if (PQsetnonblocking(conn, 1) != 0 || !PQenterPipelineMode(conn)) {
        fprintf(stderr, "raw-libpq: cannot enter pipeline mode: %s", PQerrorMessage(conn));
        return false;
    }
    return true;
}

static int run_point(PGconn *conn, bool unnamed, uint32_t accounts, int64_t queries, int64_t window,
                     int64_t sync_every)
{
    if (!point_setup(conn, unnamed, accounts != 0))
        return 1;
    point_run *run = calloc(1, sizeof *run);
    uint64_t *sent_at = calloc((size_t)window, sizeof *sent_at);
    uint64_t *slot_free_at = calloc((size_t)window, sizeof *slot_free_at);
    if (!run || !sent_at || !slot_free_at) {
        fprintf(stderr, "raw-libpq: out of memory\n");
        free(run);
        free(sent_at);
        free(slot_free_at);
        return 1;
    }
    run->conn = conn;
    run->unnamed = unnamed;
    run->accounts = accounts;
    run->queries = queries;
    run->window = window;
    run->sync_every = sync_every < window ? sync_every : window;
    run->sent_at = sent_at;
    run->slot_free_at = slot_free_at;

    int status = 0;
    bool want_write = false;
    double cpu_at_start = cpu_seconds();
    uint64_t started = now_ns();
    for (int64_t i = 0; i < window; i++)
        run->slot_free_at[i] = started;
    while (run->completed < run->queries) {
        if (!want_write) {
            int fed = point_feed(run);
            if (fed < 0) {
                status = 1;
                break;
            }
            want_write = fed == 1;
        }
        short revents = wait_socket(conn, want_write);
        if (revents & (POLLIN | POLLERR | POLLHUP)) {
            if (!PQconsumeInput(conn)) {
                fprintf(stderr, "raw-libpq: connection lost: %s", PQerrorMessage(conn));
                status = 1;
                break;
            }
            if (!point_drain(run)) {
                status = 1;
                break;
            }
        }
        if (want_write && (revents & (POLLOUT | POLLERR | POLLHUP))) {
            int flushed = PQflush(conn);
            if (flushed < 0) {
                fprintf(stderr, "raw-libpq: flush failed: %s", PQerrorMessage(conn));
                status = 1;
                break;
            }
            want_write = flushed == 1;
        }
    }
    double wall_s = (double)(now_ns() - started) / 1e9;
    usage_report usage = measure_usage(cpu_at_start, wall_s);
    /* Settle the remaining Sync results so the connection ends tidy. */
    while (status == 0 && run->syncs_received < run->syncs_sent) {
        short revents = wait_socket(conn, false);
        if (!(revents & (POLLIN | POLLERR | POLLHUP)) || !PQconsumeInput(conn) || !point_drain(run))
            break;
    }

    double qps = wall_s > 0 ? (double)run->completed / wall_s : 0.0;
    double p50 = hist_percentile_us(&run->latency, 0.50);
    double p99 = hist_percentile_us(&run->latency, 0.99);
    double max_us = (double)run->latency.max_ns / 1000.0;
    double slot_p50 = hist_percentile_us(&run->slot_latency, 0.50);
    double slot_p99 = hist_percentile_us(&run->slot_latency, 0.99);

    printf("raw libpq pipeline: %s %s, window %" PRId64 ", Sync every %" PRId64 "\n",
           unnamed ? "unnamed" : "prepared", accounts ? "pgbench_accounts lookup" : "SELECT $1::int4", window,
           run->sync_every);
    printf("  %-14s %12" PRId64 "\n", "queries", run->completed);
    printf("  %-14s %12.3f\n", "seconds", wall_s);
    printf("  %-14s %12.0f\n", "queries/s", qps);
    printf("  %-14s %12.1f\n", "p50 us", p50);
    printf("  %-14s %12.1f\n", "p99 us", p99);
    printf("  %-14s %12.1f\n", "max us", max_us);
    printf("  %-14s %12.1f   (from a free window slot to completion)\n", "slot p50 us", slot_p50);
    printf("  %-14s %12.1f\n", "slot p99 us", slot_p99);
    printf("  %-14s %12.1f\n", "client CPU %", usage.cpu_pct);
    printf("  %-14s %12ld\n", "peak RSS KB", usage.rss_kb);
    printf("  %-14s %12" PRId64 " errors, %" PRId64 " aborted, %" PRId64 " mismatches\n", "failures",
           run->errors, run->aborted, run->mismatches);
    printf("workload=point impl=raw-libpq query=%s sync_every=%" PRId64 " queries=%" PRId64
           " qps=%.0f p50_us=%.1f p99_us=%.1f cpu_pct=%.1f rss_kb=%ld"
           " max_us=%.1f slot_p50_us=%.1f slot_p99_us=%.1f window=%" PRId64 " stmt=%s errors=%" PRId64 "\n",
           accounts ? "accounts" : "int4", run->sync_every, run->completed, qps, p50, p99, usage.cpu_pct, usage.rss_kb, max_us, slot_p50,
           slot_p99, window, unnamed ? "unnamed" : "prepared", run->errors + run->aborted + run->mismatches);

    if (run->errors || run->aborted || run->mismatches)
        status = 1;
    free(run->sent_at);
    free(run->slot_free_at);
    free(run);
    return status;
}

/* ------------------------------------------------------------------------
 * stream: single-row mode, or chunks of chunk_rows rows (libpq 17+)
 * ------------------------------------------------------------------------ */

static int run_stream(PGconn *conn, int64_t rows, int64_t chunk_rows)
{
    char sql[128];
    snprintf(sql, sizeof sql, STREAM_SQL_FMT, rows);
    if (PQsetnonblocking(conn, 1) != 0) {
        fprintf(stderr, "raw-libpq: %s", PQerrorMessage(conn));
        return 1;
    }

    double cpu_at_start = cpu_seconds();
    uint64_t started = now_ns();
    uint64_t first_row_at = 0;
    int mode_ok;
#ifdef HAVE_PQSETCHUNKEDROWSMODE
    mode_ok = chunk_rows > 1 ? PQsendQuery(conn, sql) && PQsetChunkedRowsMode(conn, (int)chunk_rows)
                             : PQsendQuery(conn, sql) && PQsetSingleRowMode(conn);
#else
    if (chunk_rows > 1) {
        fprintf(stderr, "raw-libpq: --chunk-rows needs libpq 17 (PQsetChunkedRowsMode)\n");
        return 2;
    }
    mode_ok = PQsendQuery(conn, sql) && PQsetSingleRowMode(conn);
#endif
    if (!mode_ok) {
        fprintf(stderr, "raw-libpq: send failed: %s", PQerrorMessage(conn));
        return 1;
    }
    while (PQflush(conn) == 1)
        wait_socket(conn, true);

    int64_t received = 0;
    uint64_t bytes = 0;
    int status = 0;
    bool done = false;
    while (!done) {
        while (!PQisBusy(conn)) {
            PGresult *res = PQgetResult(conn);
            if (res == NULL) {
                done = true;
                break;
            }
            ExecStatusType st = PQresultStatus(res);
            bool rows_here = st == PGRES_SINGLE_TUPLE;
#ifdef HAVE_PQSETCHUNKEDROWSMODE
            rows_here = rows_here || st == PGRES_TUPLES_CHUNK;
#endif
            if (rows_here) {
                if (received == 0)
                    first_row_at = now_ns();
                for (int row = 0; row < PQntuples(res); row++)
                    bytes += (uint64_t)PQgetlength(res, row, 0) + (uint64_t)PQgetlength(res, row, 1);
                received += PQntuples(res);
            } else if (st != PGRES_TUPLES_OK) {
                fprintf(stderr, "raw-libpq: stream failed: %s", PQresultErrorMessage(res));
                status = 1;
            }
            PQclear(res);
        }
        if (done)
            break;
        short revents = wait_socket(conn, false);
        if ((revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(conn)) {
            fprintf(stderr, "raw-libpq: connection lost: %s", PQerrorMessage(conn));
            return 1;
        }
    }
    uint64_t finished = now_ns();
    double wall_s = (double)(finished - started) / 1e9;
    usage_report usage = measure_usage(cpu_at_start, wall_s);
    double rows_per_s = wall_s > 0 ? (double)received / wall_s : 0.0;
    double first_row_us = first_row_at ? (double)(first_row_at - started) / 1000.0 : 0.0;
    double total_us = (double)(finished - started) / 1000.0;
    if (received != rows) {
        fprintf(stderr, "raw-libpq: expected %" PRId64 " rows, got %" PRId64 "\n", rows, received);
        status = 1;
    }

    if (chunk_rows > 1)
        printf("raw libpq chunked rows (%" PRId64 " per chunk): %" PRId64 " rows of ~105 bytes\n", chunk_rows, rows);
    else
        printf("raw libpq single-row mode: %" PRId64 " rows of ~105 bytes\n", rows);
    printf("  %-14s %12" PRId64 "\n", "rows", received);
    printf("  %-14s %12" PRIu64 "\n", "field bytes", bytes);
    printf("  %-14s %12.3f\n", "seconds", wall_s);
    printf("  %-14s %12.0f\n", "rows/s", rows_per_s);
    printf("  %-14s %12.1f\n", "first row us", first_row_us);
    printf("  %-14s %12.1f\n", "client CPU %", usage.cpu_pct);
    printf("  %-14s %12ld\n", "peak RSS KB", usage.rss_kb);
    /* Stream has no per-query latency distribution: p50/p99 are 0 and the
     * time to the first row and the total are reported instead. */
    printf("workload=stream impl=raw-libpq rows=%" PRId64 " rows_per_s=%.0f p50_us=0 p99_us=0"
           " cpu_pct=%.1f rss_kb=%ld first_row_us=%.1f total_us=%.1f\n",
           received, rows_per_s, usage.cpu_pct, usage.rss_kb, first_row_us, total_us);
    return status;
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: raw-libpq [options]\n"
            "Plain-libpq pipelined anchor for pgev's benchmarks (one connection, poll()).\n"
            "\n"
            "  --dsn DSN          libpq conninfo or URI (default \"\": PG* variables apply)\n"
            "  --workload W       point (default) or stream\n"
            "  --queries N        point: queries to run (default 100000)\n"
            "  --window W         point: queries in flight (default 1000)\n"
            "  --sync-every K     point: a Sync after every K queries (default 1: isolated;\n"
            "                     1000: batched). Capped at the window.\n"
            "  --unnamed          point: PQsendQueryParams instead of a prepared statement\n"
            "  --scale S          point: random-key lookups on pgbench_accounts of scale S\n"
            "                     (pgbench -i -s S) instead of SELECT $1::int4\n"
            "  --rows N           stream: rows to fetch in single-row mode (default 2000000)\n"
            "  --chunk-rows N     stream: chunks of N rows instead (libpq 17+)\n"
            "  --help             this text\n"
            "\n"
            "The last line of output is machine-readable key=value pairs.\n");
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"dsn", required_argument, NULL, 'd'},
        {"workload", required_argument, NULL, 'w'},
        {"queries", required_argument, NULL, 'n'},
        {"window", required_argument, NULL, 'W'},
        {"sync-every", required_argument, NULL, 'k'},
        {"unnamed", no_argument, NULL, 'u'},
        {"rows", required_argument, NULL, 'r'},
        {"chunk-rows", required_argument, NULL, 'c'},
        {"scale", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dsn = "";
    bool stream = false;
    bool unnamed = false;
    int64_t queries = 100000, window = 1000, sync_every = 1, rows = 2000000, scale = 0, chunk_rows = 0;

    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case 'd':
            dsn = optarg;
            break;
        case 'w':
            if (strcmp(optarg, "point") == 0) {
                stream = false;
            } else if (strcmp(optarg, "stream") == 0) {
                stream = true;
            } else {
                fprintf(stderr, "raw-libpq: unknown workload '%s' (point or stream)\n", optarg);
                ok = false;
            }
            break;
        case 'n':
            ok = parse_count(optarg, "--queries", 1, &queries);
            break;
        case 'W':
            ok = parse_count(optarg, "--window", 1, &window);
            break;
        case 'k':
            ok = parse_count(optarg, "--sync-every", 1, &sync_every);
            break;
        case 'u':
            unnamed = true;
            break;
        case 'r':
            ok = parse_count(optarg, "--rows", 1, &rows);
            break;
        case 'c':
            ok = parse_count(optarg, "--chunk-rows", 1, &chunk_rows) && chunk_rows <= INT32_MAX;
            break;
        case 's':
            ok = parse_count(optarg, "--scale", 1, &scale) && scale <= 20000;
            break;
        case 'h':
            usage(stdout);
            return 0;
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
        fprintf(stderr, "raw-libpq: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    /* Connecting blocks; that is fine for a benchmark and outside the timing. */
    PGconn *conn = PQconnectdb(dsn);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "raw-libpq: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    int status = stream ? run_stream(conn, rows, chunk_rows) : run_point(conn, unnamed, (uint32_t)(scale * 100000), queries, window, sync_every);
    PQfinish(conn);
    return status;
}
