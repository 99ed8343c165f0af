/*
 * pgev-bench — pgev's own load generator. It uses only the public API
 * (include/pgev.h) on its own libevent event_base.
 *
 *   point:  one query kind (`SELECT $1::int4`, or a random-key lookup on
 *           pgbench_accounts), prepared or unnamed, text or binary, keeping a
 *           window of queries outstanding: on each of N connections, or on a
 *           pgev_pool of N. Each query isolated (its own Sync, pgev's
 *           default) or in atomic batches of K. Every result is checked.
 *   fanout: C logical clients, each issuing queries back to back through a
 *           pgev_pool of N connections: the service case, where pgev
 *           pipelines many callers' queries onto few connections. Also
 *           reports the heap pgev uses per queued query.
 *   stream: `SELECT g, repeat('x',100) FROM generate_series(1,N) g` with a
 *           row callback, counting rows and bytes in constant memory.
 *   rate:   a fixed offered rate for a fixed time (open loop): queries are
 *           sent on a schedule and latency counts from the scheduled send
 *           time, so a stall shows up in the distribution instead of
 *           silently slowing the sender down.
 *   copy:   COPY FROM STDIN of N rows into an unlogged table, in 64 kB writes.
 *
 * Prints a table, then one machine-readable line of key=value pairs
 * (bench/compare.sh parses it); with --plot, a PNG of the latency
 * distribution and of the throughput over time, drawn by gnuplot. Exits 1
 * on any failure: no connection, a query error, a wrong value, a wrong row
 * count, or a stall; 2 on bad usage.
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/utsname.h>

#include <event2/event.h>

#include "pgev.h"

#include "../bench/stats.h"

#define INT4_SQL "SELECT $1::int4"
#define ACCOUNTS_SQL "SELECT aid, abalance FROM pgbench_accounts WHERE aid = $1"
#define STREAM_SQL_FMT "SELECT g, repeat('x',100) FROM generate_series(1,%" PRId64 ") g"
/* copy: an unlogged table of its own, rows "id<TAB>name" of ~40 bytes. */
#define COPY_TABLE "pgev_bench_copy"
#define COPY_CHUNK_BYTES (64 * 1024)
#define STATEMENT_NAME "s"
#define INT4_OID 23
#define ACCOUNTS_PER_SCALE 100000

/* ------------------------------------------------------------------------
 * Options and state
 * ------------------------------------------------------------------------ */

typedef enum workload { WORKLOAD_POINT, WORKLOAD_FANOUT, WORKLOAD_STREAM, WORKLOAD_RATE, WORKLOAD_COPY } workload;

static const char *const workload_names[] = {"point", "fanout", "stream", "rate", "copy"};

typedef enum query_kind { QUERY_INT4, QUERY_ACCOUNTS } query_kind;

typedef struct bench_options {
    workload workload;
    query_kind query;
    const char *dsn;
    int conns;          /* connections, or the pool's size with `pool` */
    bool pool;          /* through one pgev_pool (always for fanout) */
    int64_t clients;    /* fanout: logical clients */
    int64_t queries;    /* stop after this many; 0: only the duration limits */
    double duration_s;  /* or after this long, when > 0 */
    int64_t window;     /* queries outstanding per connection */
    int64_t batch;      /* 1: isolated queries; K > 1: atomic batches of K */
    bool unnamed;
    bool binary;        /* binary parameter and results */
    bool readonly;      /* PGEV_QUERY_READONLY */
    int64_t rate;       /* rate: offered queries per second */
    int64_t rows;       /* stream, copy */
    int64_t chunk_rows; /* stream: pgev_query_args.stream_chunk_rows */
    int64_t scale;      /* pgbench scale of pgbench_accounts */
    double stall_s;     /* fail when nothing completes for this long */
    const char *plot;   /* PNG to draw, or NULL */
    int threads;        /* point, fanout: loops on their own threads, the work split between them */
} bench_options;

typedef struct bench bench;

typedef struct bench_conn {
    bench *bench;
    pgev_conn *conn;
    int64_t outstanding; /* submitted, completion not yet run */
} bench_conn;

/*
 * One outstanding query. Requests come from a free list sized for the most
 * queries the workload keeps outstanding, so submitting allocates nothing
 * in the benchmark itself; the query's callback argument is its request.
 * In fanout, each logical client is one request, reused for its next query.
 */
typedef struct request {
    bench *bench;
    bench_conn *owner;   /* the connection it was submitted on; NULL through the pool */
    uint64_t origin_ns;  /* latency counts from here: the submit, or (rate) the schedule */
    uint32_t expected;   /* the value the result must carry */
    struct request *next_free;
} request;

struct bench {
    bench_options opt;
    struct event_base *base;
    struct event *ticker;     /* see on_tick() */
    struct event *scheduler;  /* rate: sends what is due */
    bench_conn *conns;        /* without the pool */
    pgev_pool *pool;          /* with it */
    request *requests;
    request *free_requests;
    int64_t nrequests;
    unsigned query_flags;
    uint32_t naccounts;
    bool progress_line;       /* stderr is a terminal */

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
    int64_t mismatches;   /* a wrong value or row count */
    int64_t batches;
    int64_t batch_failures;
    int64_t progress_at_last_tick;
    uint64_t last_progress_ns;
    uint64_t last_tick_ns;
    uint64_t last_line_ns;
    uint64_t max_loop_lag_ns; /* worst lateness of the ticker while measuring */
    int64_t max_backlog;      /* rate: most queries due but not yet sent */
    double bytes_per_query;   /* fanout: heap growth per queued query */

    /* stream */
    int64_t rows_seen;
    int64_t rows_reported;  /* by the completion result */
    uint64_t bytes_seen;
    uint64_t first_row_ns;
    int64_t deliveries;

    /* copy: rows are written in chunks of whole rows */
    char *copy_chunk;
    size_t copy_chunk_len;   /* bytes of the chunk not yet accepted (0: build the next) */
    int64_t copy_chunk_rows; /* rows in it */
    int64_t copy_refusals;   /* writes refused with "buffer full" */
    int64_t copy_affected;   /* the COPY's own row count */

    histogram latency;
    timeline throughput;
};

static void bench_fail(bench *b, const char *what, const char *message)
{
    if (!b->failed)
        fprintf(stderr, "%spgev-bench: %s: %s\n", b->progress_line ? "\r\033[K" : "", what, message);
    b->failed = true;
    b->draining = true;
    event_base_loopbreak(b->base);
}

/* Bytes the process has allocated from the heap (glibc), or 0 when unknown. */
static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------------
 * Start and finish
 * ------------------------------------------------------------------------ */

static void point_start(bench *b);
static void fanout_start(bench *b);
static void rate_start(bench *b);

/* Every connection is usable: start the clock and the workload. */
static void bench_start(bench *b)
{
    b->started = true;
    b->cpu_at_start = cpu_seconds();
    b->started_ns = b->last_line_ns = now_ns();
    if (b->opt.duration_s > 0)
        b->deadline_ns = b->started_ns + (uint64_t)(b->opt.duration_s * 1e9);
    switch (b->opt.workload) {
    case WORKLOAD_POINT:
        point_start(b);
        break;
    case WORKLOAD_FANOUT:
        fanout_start(b);
        break;
    case WORKLOAD_RATE:
        rate_start(b);
        break;
    case WORKLOAD_STREAM:
    case WORKLOAD_COPY:
        break; /* started by their own connect callbacks */
    }
}

static void on_pool_closed(pgev_pool *pool, void *arg)
{
    bench *b = arg;
    (void)pool;
    event_base_loopbreak(b->base);
}

/*
 * All work done (the caller has stamped finished_ns): close every
 * connection gracefully; the last one closed ends the loop.
 */
static void bench_finish(bench *b)
{
    if (b->finished)
        return;
    b->finished = true;
    b->draining = true;
    if (b->progress_line)
        fputs("\r\033[K", stderr);
    if (b->scheduler)
        event_del(b->scheduler);
    if (b->pool) {
        pgev_pool_close(b->pool, on_pool_closed, b);
        return;
    }
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

/* True once no further query should be submitted. */
static bool should_stop(bench *b)
{
    if (b->draining)
        return true;
    if (b->opt.queries > 0 && b->submitted >= b->opt.queries)
        b->draining = true;
    else if (b->deadline_ns && now_ns() >= b->deadline_ns)
        b->draining = true;
    return b->draining;
}

/* After a completion: finish when the stop condition holds and the last one is in. */
static void maybe_finish(bench *b)
{
    if (b->outstanding == 0 && !b->failed && should_stop(b)) {
        b->finished_ns = now_ns();
        bench_finish(b);
    }
}

/* ------------------------------------------------------------------------
 * The ticker: loop lag, stalls, the progress line
 * ------------------------------------------------------------------------ */

/*
 * A timer ticking every TICK_MS while the benchmark runs. Its lateness is
 * the event loop's lag: how long pgev kept the loop busy without returning
 * to it (a callback storm starves other connections and timers). It also
 * stops a run that makes no progress instead of letting it hang, and
 * redraws the progress line on a terminal.
 */
#define TICK_MS 10
#define PROGRESS_MS 500

static void progress_line(bench *b, uint64_t now)
{
    if (!b->progress_line || !b->started || b->finished || now - b->last_line_ns < PROGRESS_MS * 1000000u)
        return;
    b->last_line_ns = now;
    double elapsed = (double)(now - b->started_ns) / 1e9;
    bool rows = b->opt.workload == WORKLOAD_STREAM || b->opt.workload == WORKLOAD_COPY;
    int64_t done = rows ? b->rows_seen : b->completed;
    fprintf(stderr, "\r\033[K%s: %6.1f s, %" PRId64 " %s, %.0f/s so far", workload_names[b->opt.workload], elapsed,
            done, rows ? "rows" : "queries", elapsed > 0 ? (double)done / elapsed : 0.0);
}

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
    progress_line(b, now);

    /* A query run limited by time ends here even if nothing completes. */
    if (b->started && !b->finished && b->nrequests > 0)
        maybe_finish(b);

    int64_t progress = b->completed + b->rows_seen + b->conns_ready + b->conns_ended;
    if (progress != b->progress_at_last_tick) {
        b->progress_at_last_tick = progress;
        b->last_progress_ns = now;
        return;
    }
    if ((double)(now - b->last_progress_ns) / 1e9 < b->opt.stall_s)
        return;
    char message[160];
    snprintf(message, sizeof message, "no progress for %.0f s (%" PRId64 " outstanding)", b->opt.stall_s,
             b->outstanding);
    bench_fail(b, "stalled", message);
}

/* ------------------------------------------------------------------------
 * Queries: submit, complete, check
 * ------------------------------------------------------------------------ */

static void point_after_completion(bench *b, bench_conn *bc);
static void fanout_next(request *req);

static const char *query_sql(const bench *b)
{
    return b->opt.query == QUERY_ACCOUNTS ? ACCOUNTS_SQL : INT4_SQL;
}

static request *request_get(bench *b)
{
    request *req = b->free_requests;
    if (req)
        b->free_requests = req->next_free;
    return req;
}

static void request_put(bench *b, request *req)
{
    req->next_free = b->free_requests;
    b->free_requests = req;
}

static void on_query_done(pgev_conn *conn, pgev_result *res, void *arg);

/*
 * Submits the next query for `req`, on `bc` or (NULL) through the pool;
 * latency will count from origin_ns. The parameter is the next value of
 * the sequence (SELECT $1::int4) or the next random account key. Returns
 * false, failing the run, when pgev refuses it.
 */
static bool submit_query(bench *b, request *req, bench_conn *bc, uint64_t origin_ns)
{
    char text[12];
    uint32_t key = b->opt.query == QUERY_ACCOUNTS ? account_for((uint64_t)b->submitted, b->naccounts)
                                                  : param_for((uint64_t)b->submitted);
    uint8_t wire[4] = {(uint8_t)(key >> 24), (uint8_t)(key >> 16), (uint8_t)(key >> 8), (uint8_t)key};
    static const Oid types[1] = {INT4_OID};
    static const int binary_lengths[1] = {4}, binary_formats[1] = {1};
    const char *values[1] = {text};

    if (b->opt.binary)
        values[0] = (const char *)wire;
    else
        format_uint(text, key);
    pgev_query_args args = {
        .sql = b->opt.unnamed ? query_sql(b) : NULL,
        .stmt = b->opt.unnamed ? NULL : STATEMENT_NAME,
        .nparams = 1,
        .param_types = b->opt.binary ? types : NULL,
        .param_values = values,
        .param_lengths = b->opt.binary ? binary_lengths : NULL,
        .param_formats = b->opt.binary ? binary_formats : NULL,
        .flags = b->query_flags,
        .on_done = on_query_done,
        .arg = req,
    };
    req->bench = b;
    req->owner = bc;
    req->expected = key;
    req->origin_ns = origin_ns;
    int64_t id = bc ? pgev_conn_submit(bc->conn, &args) : pgev_pool_submit(b->pool, &args);
    if (id < 0) {
        bench_fail(b, "submit refused", bc ? pgev_conn_errmsg(bc->conn) : pgev_pool_errmsg(b->pool));
        return false;
    }
    b->submitted++;
    b->outstanding++;
    if (bc)
        bc->outstanding++;
    return true;
}

/* Counts a completed query's outcome: one row carrying the value sent. */
static void check_result(bench *b, const request *req, pgev_result *res)
{
    int status = pgev_result_status(res);
    if (status == PGEV_OK) {
        int32_t value;
        if (pgev_result_rows(res) != 1 || pgev_result_get_int32(res, 0, 0, &value) != PGEV_OK ||
            (uint32_t)value != req->expected) {
            if (b->mismatches++ == 0)
                fprintf(stderr, "pgev-bench: wrong result for query %" PRId64 " (expected one row with %" PRIu32 ")\n",
                        pgev_result_query_id(res), req->expected);
        }
    } else if (status == PGEV_EABORTED) {
        b->aborted++;
    } else if (status != PGEV_ECANCELLED || !b->failed) {
        if (b->errors++ == 0)
            fprintf(stderr, "pgev-bench: query failed: %s\n", pgev_error_message(pgev_result_error(res)));
    }
}

static void on_query_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    request *req = arg;
    bench *b = req->bench;
    bench_conn *bc = req->owner;
    uint64_t now = now_ns();
    (void)conn;

    hist_record(&b->latency, now - req->origin_ns);
    if (!timeline_add(&b->throughput, now - b->started_ns, 1))
        bench_fail(b, "timeline", "out of memory");
    check_result(b, req, res);
    b->outstanding--;
    b->completed++;
    if (bc)
        bc->outstanding--;

    if (b->opt.workload == WORKLOAD_FANOUT) {
        fanout_next(req);
        return;
    }
    request_put(b, req);
    if (b->opt.workload == WORKLOAD_POINT && b->opt.batch <= 1)
        point_after_completion(b, bc);
    else if (b->opt.workload == WORKLOAD_RATE)
        maybe_finish(b);
    /* Batches refill from their batch callback, which runs after this one. */
}

/* ------------------------------------------------------------------------
 * point: keep a window full, per connection or on the pool
 * ------------------------------------------------------------------------ */

static void point_refill(bench *b, bench_conn *bc);

static void point_after_completion(bench *b, bench_conn *bc)
{
    point_refill(b, bc);
    maybe_finish(b);
}

static void on_batch_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench_conn *bc = arg;
    (void)conn;
    if (pgev_result_status(res) != PGEV_OK)
        bc->bench->batch_failures++;
    point_after_completion(bc->bench, bc);
}

static bool point_submit_batch(bench *b, bench_conn *bc, int64_t size)
{
    if (pgev_conn_batch_begin(bc->conn) != PGEV_OK) {
        bench_fail(b, "batch_begin refused", pgev_conn_errmsg(bc->conn));
        return false;
    }
    for (int64_t i = 0; i < size; i++) {
        if (!submit_query(b, request_get(b), bc, now_ns()))
            break; /* the batch is still ended below, so what was queued completes */
    }
    if (pgev_conn_batch_end(bc->conn, on_batch_done, bc) != PGEV_OK) {
        bench_fail(b, "batch_end refused", pgev_conn_errmsg(bc->conn));
        return false;
    }
    b->batches++;
    return !b->failed;
}

/*
 * Keeps the window full. Isolated queries: one new query per free slot.
 * Batches: a whole batch whenever one fits in the window (so a window of
 * 2K keeps two batches in flight, which is what keeps the pipeline busy;
 * with a window of K each batch waits for the previous one). Through the
 * pool (bc NULL) the window is the pool's: conns * window.
 */
static void point_refill(bench *b, bench_conn *bc)
{
    if (!b->started || b->finished)
        return;
    int64_t batch = b->opt.batch;
    if (!bc) {
        while (b->outstanding < b->nrequests && !should_stop(b)) {
            if (!submit_query(b, request_get(b), NULL, now_ns()))
                return;
        }
        return;
    }
    if (batch <= 1) {
        while (bc->outstanding < b->opt.window && !should_stop(b)) {
            if (!submit_query(b, request_get(b), bc, now_ns()))
                return;
        }
        return;
    }
    while (bc->outstanding + batch <= b->opt.window && !should_stop(b)) {
        int64_t size = batch;
        if (b->opt.queries > 0 && b->opt.queries - b->submitted < size)
            size = b->opt.queries - b->submitted;
        if (!point_submit_batch(b, bc, size))
            return;
    }
}

static void point_start(bench *b)
{
    if (b->pool) {
        point_refill(b, NULL);
        return;
    }
    for (int i = 0; i < b->opt.conns; i++)
        point_refill(b, &b->conns[i]);
}

/* ------------------------------------------------------------------------
 * fanout: C logical clients, back to back, through the pool
 * ------------------------------------------------------------------------ */

/*
 * Every client submits its first query at once, so right afterwards all C
 * queries are in pgev's hands (queued in the pool, or sent); the heap
 * growth over that moment, per query, is what pgev keeps per queued query
 * (libpq's buffers for the ones already sent included).
 */
static void fanout_start(bench *b)
{
    size_t heap_before = heap_in_use();
    for (int64_t i = 0; i < b->opt.clients && !should_stop(b); i++) {
        if (!submit_query(b, &b->requests[i], NULL, now_ns()))
            return;
    }
    size_t heap_after = heap_in_use();
    if (heap_before && b->outstanding > 0 && heap_after > heap_before)
        b->bytes_per_query = (double)(heap_after - heap_before) / (double)b->outstanding;
}

/* A client's query completed: it issues its next one, unless the run is over. */
static void fanout_next(request *req)
{
    bench *b = req->bench;
    if (!b->finished && !should_stop(b))
        submit_query(b, req, NULL, now_ns());
    else
        maybe_finish(b);
}

/* ------------------------------------------------------------------------
 * rate: a fixed offered rate, latency from the scheduled send time
 * ------------------------------------------------------------------------ */

#define SCHEDULER_US 250

/*
 * Sends every query whose scheduled time has come: query k is due at
 * start + k/rate. When the window is full a due query waits, and its
 * latency still counts from its schedule (no coordinated omission).
 */
static void on_schedule(evutil_socket_t fd, short what, void *arg)
{
    bench *b = arg;
    (void)fd;
    (void)what;
    if (b->finished)
        return;
    uint64_t now = now_ns();
    uint64_t ns_per_query = 1000000000u / (uint64_t)b->opt.rate;
    int64_t due = (int64_t)((now - b->started_ns) / ns_per_query) + 1;
    if (b->opt.queries > 0 && due > b->opt.queries)
        due = b->opt.queries;
    while (b->submitted < due && b->free_requests && !should_stop(b)) {
        bench_conn *bc = b->pool ? NULL : &b->conns[b->submitted % b->opt.conns];
        uint64_t origin = b->started_ns + (uint64_t)b->submitted * ns_per_query;
        if (!submit_query(b, request_get(b), bc, origin))
            return;
    }
    if (due - b->submitted > b->max_backlog)
        b->max_backlog = due - b->submitted;
    maybe_finish(b);
}

static void rate_start(bench *b)
{
    struct timeval period = {0, SCHEDULER_US};
    b->scheduler = event_new(b->base, -1, EV_PERSIST, on_schedule, b);
    if (!b->scheduler || event_add(b->scheduler, &period) != 0) {
        bench_fail(b, "rate", "cannot create the scheduling timer");
        return;
    }
    on_schedule(-1, 0, b);
}

/* ------------------------------------------------------------------------
 * Connecting: separate connections or the pool, statements prepared
 * ------------------------------------------------------------------------ */

static void conn_ready(bench *b)
{
    if (++b->conns_ready == b->opt.conns)
        bench_start(b);
}

static void on_prepared(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench_conn *bc = arg;
    int status = pgev_result_status(res);
    (void)conn;
    if (status == PGEV_OK)
        conn_ready(bc->bench);
    else if (status != PGEV_ECONNECT && status != PGEV_ECANCELLED)
        bench_fail(bc->bench, "prepare failed", pgev_error_message(pgev_result_error(res)));
}

static void on_connect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    bench_conn *bc = arg;
    (void)conn;
    if (err)
        bench_fail(bc->bench, "cannot connect", pgev_error_message(err));
    else if (bc->bench->opt.unnamed)
        conn_ready(bc->bench);
    /* prepared: the statement was queued right after pgev_conn_new() and
     * on_prepared starts this connection. */
}

static void on_pool_prepared(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench *b = arg;
    int status = pgev_result_status(res);
    if (status == PGEV_ECANCELLED)
        return; /* the pool is being freed */
    bool ok = status == PGEV_OK;
    if (!ok)
        bench_fail(b, "prepare failed", pgev_error_message(pgev_result_error(res)));
    pgev_pool_init_done(b->pool, conn, ok);
    if (ok && !b->started)
        conn_ready(b);
}

/* The pool's init hook: prepare the statement on every new connection. */
static void on_pool_conn_init(pgev_pool *pool, pgev_conn *conn, void *arg)
{
    bench *b = arg;
    if (b->opt.unnamed) {
        pgev_pool_init_done(pool, conn, true);
        if (!b->started)
            conn_ready(b);
    } else if (pgev_conn_prepare(conn, STATEMENT_NAME, query_sql(b), 1, NULL, on_pool_prepared, b) < 0) {
        bench_fail(b, "prepare refused", pgev_conn_errmsg(conn));
        pgev_pool_init_done(pool, conn, false);
    }
}

static void on_stream_connect(pgev_conn *conn, const pgev_error *err, void *arg);
static void on_copy_connect(pgev_conn *conn, const pgev_error *err, void *arg);

static bool open_pool(bench *b)
{
    int window = (int)b->opt.window;
    int64_t pending = b->nrequests + 1000;
    pgev_pool_options options = {
        .min_conns = b->opt.conns,
        .max_conns = b->opt.conns,
        .max_connecting = b->opt.conns,
        .conn_max_inflight = window,
        .max_pending = pending > PGEV_POOL_DEFAULT_MAX_PENDING ? (int)pending : PGEV_POOL_DEFAULT_MAX_PENDING,
        .queue_timeout_ms = (int)(b->opt.stall_s * 1000),
        .on_conn_init = on_pool_conn_init,
        .arg = b,
    };
    b->pool = pgev_pool_new(b->base, b->opt.dsn, &options);
    if (!b->pool) {
        fprintf(stderr, "pgev-bench: pgev_pool_new failed\n");
        return false;
    }
    return true;
}

static bool open_conns(bench *b)
{
    b->conns = calloc((size_t)b->opt.conns, sizeof *b->conns);
    if (!b->conns) {
        fprintf(stderr, "pgev-bench: out of memory\n");
        return false;
    }
    int64_t pending = b->opt.window + b->opt.batch + b->nrequests;
    for (int i = 0; i < b->opt.conns && !b->failed; i++) {
        bench_conn *bc = &b->conns[i];
        pgev_conn_options options = {
            .max_inflight = (int)b->opt.window,
            .max_pending = pending > PGEV_DEFAULT_MAX_PENDING ? (int)pending : PGEV_DEFAULT_MAX_PENDING,
            .on_connect = b->opt.workload == WORKLOAD_STREAM ? on_stream_connect
                        : b->opt.workload == WORKLOAD_COPY  ? on_copy_connect
                                                            : on_connect,
            .on_disconnect = on_disconnect,
            .arg = bc,
        };
        bc->bench = b;
        bc->conn = pgev_conn_new(b->base, b->opt.dsn, &options);
        if (!bc->conn) {
            fprintf(stderr, "pgev-bench: pgev_conn_new failed (out of memory?)\n");
            return false;
        }
        /* Queued before the connection is up: pgev sends it once connected. */
        bool queries = b->opt.workload != WORKLOAD_STREAM && b->opt.workload != WORKLOAD_COPY;
        if (queries && !b->opt.unnamed &&
            pgev_conn_prepare(bc->conn, STATEMENT_NAME, query_sql(b), 1, NULL, on_prepared, bc) < 0)
            bench_fail(b, "prepare refused", pgev_conn_errmsg(bc->conn));
    }
    return !b->failed;
}

/* ------------------------------------------------------------------------
 * stream
 * ------------------------------------------------------------------------ */

static void on_stream_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench *b = arg;
    (void)conn;
    uint64_t now = now_ns();
    if (b->first_row_ns == 0)
        b->first_row_ns = now;
    const PGresult *pg = pgev_result_pg(res);
    int n = PQntuples(pg);
    for (int row = 0; row < n; row++)
        b->bytes_seen += (uint64_t)PQgetlength(pg, row, 0) + (uint64_t)PQgetlength(pg, row, 1);
    if (pgev_result_rows(res) != n && !b->failed)
        bench_fail(b, "row callback", "pgev_result_rows() disagrees with PQntuples()");
    if (!timeline_add(&b->throughput, now - b->started_ns, (uint64_t)n))
        bench_fail(b, "timeline", "out of memory");
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
        .flags = b->query_flags,
        .on_rows = on_stream_rows,
        .on_done = on_stream_done,
        .arg = b,
        .stream_chunk_rows = (int)b->opt.chunk_rows,
    };
    bench_start(b);
    if (pgev_conn_submit(conn, &args) < 0)
        bench_fail(b, "submit refused", pgev_conn_errmsg(conn));
}

/* ------------------------------------------------------------------------
 * copy: COPY FROM STDIN of --rows rows into an unlogged table
 * ------------------------------------------------------------------------ */

/* Fills the chunk with the next whole rows. */
static void copy_fill(bench *b)
{
    size_t len = 0;
    int64_t rows = 0;
    while (b->rows_seen + rows < b->opt.rows && len + 64 <= COPY_CHUNK_BYTES) {
        int64_t id = b->rows_seen + rows + 1;
        len += (size_t)snprintf(b->copy_chunk + len, COPY_CHUNK_BYTES - len, "%" PRId64 "\tname-%020" PRId64 "\n",
                                id, id);
        rows++;
    }
    b->copy_chunk_len = len;
    b->copy_chunk_rows = rows;
}

static void on_copy_ready(pgev_conn *conn, pgev_copy *copy, void *arg)
{
    bench *b = arg;
    (void)conn;
    for (;;) {
        if (b->copy_chunk_len == 0) {
            if (b->rows_seen >= b->opt.rows)
                break;
            copy_fill(b);
        }
        int rc = pgev_copy_write(copy, b->copy_chunk, b->copy_chunk_len);
        if (rc == 1) {
            b->copy_refusals++;
            return;                 /* on_ready again once libpq's buffer drained */
        }
        if (rc != PGEV_OK) {
            bench_fail(b, "pgev_copy_write", pgev_strerror(rc));
            return;
        }
        b->bytes_seen += b->copy_chunk_len;
        b->rows_seen += b->copy_chunk_rows;
        b->deliveries++;
        b->copy_chunk_len = 0;
        if (!timeline_add(&b->throughput, now_ns() - b->started_ns, (uint64_t)b->copy_chunk_rows)) {
            bench_fail(b, "timeline", "out of memory");
            return;
        }
    }
    int rc = pgev_copy_end(copy, NULL);
    if (rc != PGEV_OK && rc != 1)
        bench_fail(b, "pgev_copy_end", pgev_strerror(rc));
}

static void on_copy_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench *b = arg;
    (void)conn;
    b->finished_ns = now_ns();
    if (pgev_result_status(res) != PGEV_OK) {
        bench_fail(b, "COPY failed", pgev_error_message(pgev_result_error(res)));
        return;
    }
    b->copy_affected = pgev_result_rows_affected(res);
    b->completed = 1;
    bench_finish(b);
}

/* The table is (re)made before the clock starts: its completion starts it. */
static void on_copy_table(pgev_conn *conn, pgev_result *res, void *arg)
{
    bench *b = arg;
    if (pgev_result_status(res) != PGEV_OK) {
        bench_fail(b, "cannot create " COPY_TABLE, pgev_error_message(pgev_result_error(res)));
        return;
    }
    bench_start(b);
    if (pgev_conn_copy_in(conn, "COPY " COPY_TABLE " (id, name) FROM STDIN", on_copy_ready, on_copy_done, b) < 0)
        bench_fail(b, "COPY refused", pgev_conn_errmsg(conn));
}

static void on_copy_connect(pgev_conn *conn, const pgev_error *err, void *arg)
{
    bench_conn *bc = arg;
    bench *b = bc->bench;
    if (err) {
        bench_fail(b, "cannot connect", pgev_error_message(err));
        return;
    }
    b->conns_ready++;
    b->copy_chunk = malloc(COPY_CHUNK_BYTES);
    if (!b->copy_chunk) {
        bench_fail(b, "copy", "out of memory");
        return;
    }
    if (pgev_conn_query(conn, "DROP TABLE IF EXISTS " COPY_TABLE, NULL, NULL) < 0 ||
        pgev_conn_query(conn, "CREATE UNLOGGED TABLE " COPY_TABLE " (id bigint, name text)", on_copy_table, b) < 0)
        bench_fail(b, "setup refused", pgev_conn_errmsg(conn));
}

/* ------------------------------------------------------------------------
 * Reports
 * ------------------------------------------------------------------------ */

typedef struct summary {
    double wall_s;
    double cpu_pct;
    long rss_kb;
    double per_s; /* queries or rows per second */
    double p50, p90, p99, p999, max_us;
    double lag_ms;
} summary;

static summary summarise(const bench *b, int64_t done)
{
    summary s;
    s.wall_s = (double)(b->finished_ns - b->started_ns) / 1e9;
    s.cpu_pct = s.wall_s > 0 ? 100.0 * (cpu_seconds() - b->cpu_at_start) / s.wall_s : 0.0;
    s.rss_kb = peak_rss_kb();
    s.per_s = s.wall_s > 0 ? (double)done / s.wall_s : 0.0;
    s.p50 = hist_percentile_us(&b->latency, 0.50);
    s.p90 = hist_percentile_us(&b->latency, 0.90);
    s.p99 = hist_percentile_us(&b->latency, 0.99);
    s.p999 = hist_percentile_us(&b->latency, 0.999);
    s.max_us = (double)b->latency.max_ns / 1000.0;
    s.lag_ms = (double)b->max_loop_lag_ns / 1e6;
    return s;
}

/* A bounded string builder for the descriptions below: output past cap is cut, never overrun. */
typedef struct label {
    char buf[512];
    size_t len;
} label;

__attribute__((format(printf, 2, 3))) static void label_add(label *t, const char *fmt, ...)
{
    if (t->len >= sizeof t->buf - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, sizeof t->buf - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len = t->len + (size_t)n < sizeof t->buf ? t->len + (size_t)n : sizeof t->buf - 1;
}

/* What ran: the header line of a query workload's report, and the plot's title. */
static label describe_label(const bench *b)
{
    const bench_options *o = &b->opt;
    label t = { .len = 0 };
    t.buf[0] = '\0';
    if (o->workload == WORKLOAD_STREAM) {
        label_add(&t, "pgev %s stream: %" PRId64 " rows through on_rows (stream_chunk_rows %" PRId64 ")",
                 PGEV_VERSION_STRING, o->rows, o->chunk_rows);
        return t;
    }
    if (o->workload == WORKLOAD_COPY) {
        label_add(&t, "pgev %s copy: %" PRId64 " rows, COPY FROM STDIN", PGEV_VERSION_STRING, o->rows);
        return t;
    }
    label_add(&t, "pgev %s %s: %s %s, %s", PGEV_VERSION_STRING, workload_names[o->workload],
             o->unnamed ? "unnamed" : "prepared",
             o->query == QUERY_ACCOUNTS ? "pgbench_accounts lookup" : "SELECT $1::int4", o->binary ? "binary" : "text");
    if (o->workload == WORKLOAD_FANOUT)
        label_add(&t, ", %" PRId64 " clients", o->clients);
    label_add(&t, ", %s%d connection%s, window %" PRId64, o->pool ? "pool of " : "", o->conns, o->conns == 1 ? "" : "s",
             o->window);
    if (o->workload == WORKLOAD_RATE)
        label_add(&t, ", offered %" PRId64 "/s", o->rate);
    label_add(&t, ", %s%s", o->batch > 1 ? "atomic batches" : "isolated queries", o->readonly ? ", read-only" : "");
    if (o->threads > 1)
        label_add(&t, ", %d threads (a loop%s each)", o->threads, o->pool ? " and a pool" : "");
    return t;
}

/* The machine it ran on, for the plot: CPU model, cores, kernel. */
static label machine_label(void)
{
    label t = { .len = 0 };
    t.buf[0] = '\0';
    char model[160] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon) {
                colon++;
                while (*colon == ' ' || *colon == '\t')
                    colon++;
                snprintf(model, sizeof model, "%s", colon);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    label_add(&t, "%s%s%ld cores", model, model[0] ? ", " : "", sysconf(_SC_NPROCESSORS_ONLN));
    if (uname(&u) == 0)
        label_add(&t, ", %s %s %s", u.sysname, u.release, u.machine);
    return t;
}

/* The header line: what ran. */
static void describe(const bench *b)
{
    printf("%s\n", describe_label(b).buf);
}

/* `part` of `total` split `n` ways, the remainder to the first parts. */
static int64_t share(int64_t total, int n, int part)
{
    return total / n + (part < total % n ? 1 : 0);
}

static int query_report(bench *b)
{
    summary s = summarise(b, b->completed);
    const bench_options *o = &b->opt;
    int64_t batch = o->batch <= 1 ? 1 : o->batch;

    describe(b);
    if (batch > 1)
        printf("  %-16s %12" PRId64 " of %" PRId64 " (%" PRId64 " failed)\n", "batches", b->batches, batch,
               b->batch_failures);
    printf("  %-16s %12" PRId64 "\n", "queries", b->completed);
    printf("  %-16s %12.3f\n", "seconds", s.wall_s);
    printf("  %-16s %12.0f\n", "queries/s", s.per_s);
    printf("  %-16s %12.1f %s\n", "latency p50 us", s.p50,
           o->workload == WORKLOAD_RATE ? "(from the scheduled send time)" : "(from the submit)");
    printf("  %-16s %12.1f\n", "latency p90 us", s.p90);
    printf("  %-16s %12.1f\n", "latency p99 us", s.p99);
    printf("  %-16s %12.1f\n", "latency p99.9 us", s.p999);
    printf("  %-16s %12.1f\n", "latency max us", s.max_us);
    /* A full window is a queue: each query waits behind the others, so its
     * latency is mostly that wait (Little's law: outstanding / throughput),
     * not the server's round trip. Say so, with the figure it predicts. */
    int64_t outstanding = o->workload == WORKLOAD_FANOUT ? o->clients
                          : o->workload == WORKLOAD_POINT ? (int64_t)o->conns * o->window
                                                          : 0;
    if (outstanding > 1 && s.per_s > 0)
        printf("  %-16s %12.1f   (%" PRId64 " queries outstanding / %.0f per second: the time a\n"
               "  %-16s %12s   query waits behind the others; --window 1 --conns 1 measures a round trip)\n",
               "queueing us", 1e6 * (double)outstanding / s.per_s, outstanding, s.per_s, "", "");
    printf("  %-16s %12.1f\n", "client CPU %", s.cpu_pct);
    printf("  %-16s %12ld\n", "peak RSS KB", s.rss_kb);
    printf("  %-16s %12.1f   (worst lateness of a %d ms timer on the loop)\n", "loop lag ms", s.lag_ms, TICK_MS);
    if (o->workload == WORKLOAD_FANOUT)
        printf("  %-16s %12.0f   (heap growth with %" PRId64 " queries queued at once%s)\n", "bytes/queued",
               b->bytes_per_query, share(o->clients, o->threads, 0), o->threads > 1 ? ", thread 1" : "");
    if (o->workload == WORKLOAD_RATE)
        printf("  %-16s %12" PRId64 "   (most queries due but not yet sent)\n", "max backlog", b->max_backlog);
    printf("  %-16s %12" PRId64 " errors, %" PRId64 " aborted, %" PRId64 " wrong results\n", "failures", b->errors,
           b->aborted, b->mismatches);
    printf("workload=%s impl=pgev query=%s conns=%d pool=%d clients=%" PRId64 " batch=%" PRId64 " window=%" PRId64
           " stmt=%s format=%s readonly=%d rate=%" PRId64 " queries=%" PRId64
           " qps=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f cpu_pct=%.1f rss_kb=%ld"
           " loop_lag_ms=%.1f bytes_per_queued=%.0f max_backlog=%" PRId64 " threads=%d errors=%" PRId64 "\n",
           workload_names[o->workload], o->query == QUERY_ACCOUNTS ? "accounts" : "int4", o->conns, o->pool ? 1 : 0,
           o->workload == WORKLOAD_FANOUT ? o->clients : 0, batch, o->window, o->unnamed ? "unnamed" : "prepared",
           o->binary ? "binary" : "text", o->readonly ? 1 : 0, o->workload == WORKLOAD_RATE ? o->rate : 0,
           b->completed, s.per_s, s.p50, s.p90, s.p99, s.p999, s.max_us, s.cpu_pct, s.rss_kb, s.lag_ms,
           b->bytes_per_query, b->max_backlog, o->threads, b->errors + b->aborted + b->mismatches);
    return b->errors || b->aborted || b->mismatches ? 1 : 0;
}

static int stream_report(bench *b)
{
    int status = 0;
    summary s = summarise(b, b->rows_seen);
    double first_row_us = b->first_row_ns ? (double)(b->first_row_ns - b->started_ns) / 1000.0 : 0.0;
    double total_us = (double)(b->finished_ns - b->started_ns) / 1000.0;

    if (b->rows_seen != b->opt.rows || b->rows_reported != b->opt.rows) {
        fprintf(stderr,
                "pgev-bench: expected %" PRId64 " rows; the row callback saw %" PRId64
                ", the completion reported %" PRId64 "\n",
                b->opt.rows, b->rows_seen, b->rows_reported);
        status = 1;
    }
    printf("pgev %s stream: %" PRId64 " rows of ~105 bytes through on_rows (stream_chunk_rows %" PRId64 ")\n",
           PGEV_VERSION_STRING, b->opt.rows, b->opt.chunk_rows);
    /* One query: no latency distribution; the time to the first row and
     * to the end are what a stream's latency means. */
    printf("  %-16s %12" PRId64 " in %" PRId64 " deliveries\n", "rows", b->rows_seen, b->deliveries);
    printf("  %-16s %12" PRIu64 "\n", "field bytes", b->bytes_seen);
    printf("  %-16s %12.3f\n", "seconds", s.wall_s);
    printf("  %-16s %12.0f\n", "rows/s", s.per_s);
    printf("  %-16s %12.1f\n", "first row us", first_row_us);
    printf("  %-16s %12.1f\n", "client CPU %", s.cpu_pct);
    printf("  %-16s %12ld\n", "peak RSS KB", s.rss_kb);
    printf("  %-16s %12.1f   (worst lateness of a %d ms timer on the loop)\n", "loop lag ms", s.lag_ms, TICK_MS);
    printf("workload=stream impl=pgev rows=%" PRId64 " rows_per_s=%.0f"
           " cpu_pct=%.1f rss_kb=%ld first_row_us=%.1f total_us=%.1f loop_lag_ms=%.1f\n",
           b->rows_seen, s.per_s, s.cpu_pct, s.rss_kb, first_row_us, total_us, s.lag_ms);
    return status;
}

static int copy_report(bench *b)
{
    int status = 0;
    summary s = summarise(b, b->rows_seen);
    if (b->rows_seen != b->opt.rows || b->copy_affected != b->opt.rows) {
        fprintf(stderr, "pgev-bench: wrote %" PRId64 " rows, the server copied %" PRId64 ", expected %" PRId64 "\n",
                b->rows_seen, b->copy_affected, b->opt.rows);
        status = 1;
    }
    double mb_per_s = s.wall_s > 0 ? (double)b->bytes_seen / s.wall_s / 1e6 : 0.0;
    printf("pgev %s copy: %" PRId64 " rows of ~%.0f bytes, COPY FROM STDIN into an unlogged table\n",
           PGEV_VERSION_STRING, b->opt.rows, b->rows_seen ? (double)b->bytes_seen / (double)b->rows_seen : 0.0);
    printf("  %-16s %12" PRId64 " in %" PRId64 " writes (%" PRId64 " refused: buffer full)\n", "rows",
           b->rows_seen, b->deliveries, b->copy_refusals);
    printf("  %-16s %12" PRIu64 "\n", "bytes", b->bytes_seen);
    printf("  %-16s %12.3f\n", "seconds", s.wall_s);
    printf("  %-16s %12.0f\n", "rows/s", s.per_s);
    printf("  %-16s %12.1f\n", "MB/s", mb_per_s);
    printf("  %-16s %12.1f\n", "client CPU %", s.cpu_pct);
    printf("  %-16s %12ld\n", "peak RSS KB", s.rss_kb);
    printf("workload=copy impl=pgev rows=%" PRId64 " rows_per_s=%.0f mb_per_s=%.1f"
           " cpu_pct=%.1f rss_kb=%ld refusals=%" PRId64 "\n",
           b->rows_seen, s.per_s, mb_per_s, s.cpu_pct, s.rss_kb, b->copy_refusals);
    return status;
}

/* ------------------------------------------------------------------------
 * --plot: gnuplot draws the latency distribution and the throughput
 * ------------------------------------------------------------------------ */

/* Writes `text` as a gnuplot double-quoted string: \\ and \" escaped, "\n" a new line. */
static void gnuplot_dstring(FILE *gp, const char *text)
{
    fputc('"', gp);
    for (; *text; text++) {
        if (*text == '\n') {
            fputs("\\n", gp);
            continue;
        }
        if (*text == '"' || *text == '\\')
            fputc('\\', gp);
        fputc(*text, gp);
    }
    fputc('"', gp);
}

/* Writes `text` as a gnuplot single-quoted string (a quote is doubled). */
static void gnuplot_string(FILE *gp, const char *text)
{
    fputc('\'', gp);
    for (; *text; text++) {
        if (*text == '\'')
            fputc('\'', gp);
        fputc(*text, gp);
    }
    fputc('\'', gp);
}

static int plot(const bench *b, const char *path)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "pgev-bench: --plot needs gnuplot; install it with: apt-get install gnuplot-nox\n");
        return 1;
    }
    FILE *gp = popen("gnuplot", "w");
    if (!gp) {
        perror("pgev-bench: gnuplot");
        return 1;
    }
    bool rows = b->opt.workload == WORKLOAD_STREAM;
    /* The latency distribution as a cumulative curve: the share of queries
     * that completed within x microseconds. */
    fputs("$latency << EOD\n", gp);
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS && b->latency.count; i++) {
        if (!b->latency.buckets[i])
            continue;
        seen += b->latency.buckets[i];
        fprintf(gp, "%.3f %.6f\n", (double)hist_value(i) / 1000.0, 100.0 * (double)seen / (double)b->latency.count);
    }
    fputs("EOD\n$throughput << EOD\n", gp);
    /* The last interval is cut short by the end of the run: drawn as a full
     * one it would show a drop that never happened. */
    size_t intervals = b->throughput.len > 1 ? b->throughput.len - 1 : b->throughput.len;
    for (size_t i = 0; i < intervals; i++)
        fprintf(gp, "%.2f %.0f\n", (double)(i + 1) * TIMELINE_STEP_MS / 1000.0,
                (double)b->throughput.counts[i] * (1000.0 / TIMELINE_STEP_MS));
    fputs("EOD\n", gp);
    fputs("set terminal pngcairo size 1000,800 noenhanced\nset output ", gp);
    gnuplot_string(gp, path);
    /* The whole figure says what ran, where, with which pgev: a plot alone must be enough to tell runs apart. */
    char title[1200];
    snprintf(title, sizeof title, "%s\n%s", describe_label(b).buf, machine_label().buf);
    fputs("\nset multiplot layout 2,1 title ", gp);
    gnuplot_dstring(gp, title);
    fputs("\nset grid\n", gp);
    if (rows || !b->latency.count) {
        if (rows && b->first_row_ns)
            fprintf(gp, "set title 'one streamed query, no per-query latency: first row after %.0f us, all rows after %.0f us'\n",
                    (double)(b->first_row_ns - b->started_ns) / 1000.0, (double)(b->finished_ns - b->started_ns) / 1000.0);
        else
            fputs("set title 'no per-query latency'\n", gp);
        fputs("unset key\nplot [0:1] 0 notitle\n", gp);
    } else {
        fputs("set title 'latency distribution, from the submit'\nset logscale x\nset xlabel 'latency (us)'\n"
              "set ylabel '% of queries completed within'\nset yrange [0:100]\n"
              "plot $latency using 1:2 with steps linewidth 2 notitle\n"
              "unset logscale x\n",
              gp);
    }
    fprintf(gp, "set title 'throughput every %d ms'\nset xlabel 'seconds since start'\nset ylabel '%s per second'\n"
                "set yrange [0:*]\n",
            TIMELINE_STEP_MS, rows ? "rows" : "queries");
    fputs("plot $throughput using 1:2 with lines linewidth 2 notitle\nunset multiplot\n", gp);
    int rc = pclose(gp);
    if (rc != 0) {
        fprintf(stderr, "pgev-bench: gnuplot failed (status %d)\n", rc);
        return 1;
    }
    fprintf(stderr, "pgev-bench: plot written to %s\n", path);
    return 0;
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pgev-bench [options]\n"
            "pgev's load generator. Prints a table, then one line of key=value pairs.\n"
            "\n"
            "Workloads (--workload W):\n"
            "  point     (default) a window of queries outstanding per connection\n"
            "  fanout    --clients C logical clients, each issuing queries back to back\n"
            "            through a pool of --conns connections\n"
            "  stream    SELECT g, repeat('x',100) FROM generate_series(1,N) g, rows\n"
            "            streamed to a callback\n"
            "  rate      a fixed offered --rate for --duration seconds; latency counts\n"
            "            from each query's scheduled send time\n"
            "  copy      COPY FROM STDIN of --rows rows\n"
            "\n"
            "Options:\n"
            "  --dsn DSN          libpq conninfo or URI (default \"\": PG* variables apply)\n"
            "  --query Q          int4 (default): SELECT $1::int4; accounts: a random-key\n"
            "                     lookup on pgbench_accounts (create it: pgbench -i -s 10)\n"
            "  --scale S          pgbench scale of pgbench_accounts (default 10)\n"
            "  --conns N          connections, each with its own window (default 1)\n"
            "  --pool             point, rate: use one pgev_pool of --conns connections\n"
            "                     (fanout always does)\n"
            "  --clients C        fanout: logical clients, 1..100000 (default 100)\n"
            "  --queries N        stop after N queries (default 100000, or unlimited with\n"
            "                     --duration)\n"
            "  --duration SEC     stop after SEC seconds (rate: default 5)\n"
            "  --rate R           rate: offered queries per second (default 50000)\n"
            "  --window W         queries outstanding per connection (default 1000, or 2*K\n"
            "                     with --batch K so that two batches are in flight)\n"
            "  --batch K          point: 0 or 1 = isolated queries, each with its own Sync\n"
            "                     (default); K > 1 = atomic batches of K queries\n"
            "  --unnamed          unnamed statements (parsed by the server every time)\n"
            "                     instead of a prepared statement\n"
            "  --binary           binary parameter and results instead of text\n"
            "  --readonly         flag the queries PGEV_QUERY_READONLY\n"
            "  --rows N           stream, copy: rows (default 2000000 / 1000000)\n"
            "  --chunk-rows N     stream: up to N rows per row callback (libpq 17+;\n"
            "                     default 0: one row at a time)\n"
            "  --plot FILE.png    draw the latency distribution and the throughput over\n"
            "                     time with gnuplot\n"
            "  --stall-timeout S  fail when nothing completes for S seconds (default 30)\n"
            "  --threads T        point, fanout: T event loops on T threads, each with its\n"
            "                     share of --conns, --clients and --queries (its own pool\n"
            "                     with --pool or fanout); one report for them all\n"
            "  --help             this text\n"
            "\n"
            "Output:\n"
            "  latency       from each query's submit (rate: its scheduled send time) to\n"
            "                its completion callback. With a full window this is mostly\n"
            "                time spent queued behind the other outstanding queries, not\n"
            "                the server's round trip: the 'queueing us' line gives that\n"
            "                wait (outstanding / throughput). For one query's round trip\n"
            "                run --window 1 --conns 1.\n"
            "  loop lag      the worst lateness, while measuring, of a timer that ticks\n"
            "                every 10 ms on the same event loop: how long pgev (callbacks\n"
            "                included) kept the loop busy without returning to it. Another\n"
            "                timer or socket on that loop would have waited this long.\n"
            "  stream, copy  no per-query latency (one query): for a stream, 'first row\n"
            "                us' (first_row_us=) is the time from the submit to the first\n"
            "                row, total_us= to the end.\n"
            "\n"
            "On a terminal, a progress line on stderr shows the rate so far.\n"
            "Exit status: 0 on success, 1 on a connection failure, query error, wrong\n"
            "result or stall, 2 on bad usage.\n");
}

static bool parse_count(const char *text, const char *option, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max) {
        fprintf(stderr, "pgev-bench: %s needs an integer in %" PRId64 "..%" PRId64 ", got '%s'\n", option, min, max,
                text);
        return false;
    }
    *out = value;
    return true;
}

static bool parse_seconds(const char *text, const char *option, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    if (errno || end == text || *end || !(*out > 0) || *out > 86400) {
        fprintf(stderr, "pgev-bench: %s needs a positive number of seconds\n", option);
        return false;
    }
    return true;
}

static bool parse_name(const char *text, const char *option, const char *const *names, int count, int *out)
{
    for (int i = 0; i < count; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    fprintf(stderr, "pgev-bench: unknown %s '%s'\n", option, text);
    return false;
}

/* Checks combinations and fills in the defaults that depend on others. */
static int check_options(bench_options *opt, bool queries_given, bool window_given, bool rows_given)
{
    if (opt->batch < 1)
        opt->batch = 1;
    if (opt->workload == WORKLOAD_RATE && opt->duration_s == 0)
        opt->duration_s = 5;
    if (opt->duration_s > 0 && !queries_given)
        opt->queries = opt->workload == WORKLOAD_RATE ? (int64_t)(opt->duration_s * (double)opt->rate) : 0;
    if (opt->workload == WORKLOAD_COPY && !rows_given)
        opt->rows = 1000000;
    if (opt->workload == WORKLOAD_FANOUT)
        opt->pool = true;
    if (opt->batch > 1 && !window_given)
        opt->window = opt->batch * 2 > 1000 ? opt->batch * 2 : 1000;
    if (opt->batch > opt->window) {
        fprintf(stderr, "pgev-bench: --window (%" PRId64 ") must be at least --batch (%" PRId64 ")\n", opt->window,
                opt->batch);
        return 2;
    }
    if ((int64_t)opt->conns * opt->window > 10000000) {
        fprintf(stderr, "pgev-bench: --conns times --window may be at most 10000000\n");
        return 2;
    }
    if (opt->batch > 1 && (opt->pool || opt->workload != WORKLOAD_POINT)) {
        fprintf(stderr, "pgev-bench: --batch applies to the point workload on separate connections only\n");
        return 2;
    }
    if (opt->threads > 1 && ((opt->workload != WORKLOAD_POINT && opt->workload != WORKLOAD_FANOUT) ||
                             opt->conns < opt->threads || (opt->workload == WORKLOAD_FANOUT && opt->clients < opt->threads) ||
                             (opt->queries > 0 && opt->queries < opt->threads))) {
        fprintf(stderr, "pgev-bench: --threads applies to point and fanout, with at least one connection, "
                        "client and query per thread\n");
        return 2;
    }
    if ((opt->workload == WORKLOAD_STREAM || opt->workload == WORKLOAD_COPY) && (opt->conns != 1 || opt->pool)) {
        fprintf(stderr, "pgev-bench: the %s workload uses one connection\n", workload_names[opt->workload]);
        return 2;
    }
    return 0;
}

static int parse_options(int argc, char **argv, bench_options *opt)
{
    static const struct option options[] = {
        {"dsn", required_argument, NULL, 'd'},
        {"workload", required_argument, NULL, 'w'},
        {"query", required_argument, NULL, 'q'},
        {"scale", required_argument, NULL, 'S'},
        {"conns", required_argument, NULL, 'c'},
        {"pool", no_argument, NULL, 'p'},
        {"clients", required_argument, NULL, 'C'},
        {"queries", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 't'},
        {"rate", required_argument, NULL, 'R'},
        {"window", required_argument, NULL, 'W'},
        {"batch", required_argument, NULL, 'b'},
        {"unnamed", no_argument, NULL, 'u'},
        {"binary", no_argument, NULL, 'B'},
        {"readonly", no_argument, NULL, 'o'},
        {"rows", required_argument, NULL, 'r'},
        {"chunk-rows", required_argument, NULL, 'k'},
        {"plot", required_argument, NULL, 'P'},
        {"stall-timeout", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char *const query_names[] = {"int4", "accounts"};
    bool queries_given = false, window_given = false, rows_given = false;
    int64_t value;
    int ch, index;

    *opt = (bench_options){
        .workload = WORKLOAD_POINT,
        .query = QUERY_INT4,
        .dsn = "",
        .conns = 1,
        .clients = 100,
        .queries = 100000,
        .window = 1000,
        .batch = 1,
        .rate = 50000,
        .rows = 2000000,
        .scale = 10,
        .stall_s = 30,
        .threads = 1,
    };
    while ((ch = getopt_long(argc, argv, "", options, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'd':
            opt->dsn = optarg;
            break;
        case 'w':
            if ((ok = parse_name(optarg, "workload", workload_names, 5, &index)))
                opt->workload = (workload)index;
            break;
        case 'q':
            if ((ok = parse_name(optarg, "query", query_names, 2, &index)))
                opt->query = (query_kind)index;
            break;
        case 'S':
            ok = parse_count(optarg, "--scale", 1, 20000, &opt->scale);
            break;
        case 'c':
            if ((ok = parse_count(optarg, "--conns", 1, 1000, &value)))
                opt->conns = (int)value;
            break;
        case 'p':
            opt->pool = true;
            break;
        case 'C':
            ok = parse_count(optarg, "--clients", 1, 100000, &opt->clients);
            break;
        case 'n':
            ok = queries_given = parse_count(optarg, "--queries", 1, INT64_MAX, &opt->queries);
            break;
        case 't':
            ok = parse_seconds(optarg, "--duration", &opt->duration_s);
            break;
        case 'R':
            ok = parse_count(optarg, "--rate", 1, 10000000, &opt->rate);
            break;
        case 'W':
            ok = window_given = parse_count(optarg, "--window", 1, 1000000, &opt->window);
            break;
        case 'b':
            ok = parse_count(optarg, "--batch", 0, 1000000, &opt->batch);
            break;
        case 'u':
            opt->unnamed = true;
            break;
        case 'B':
            opt->binary = true;
            break;
        case 'o':
            opt->readonly = true;
            break;
        case 'r':
            ok = rows_given = parse_count(optarg, "--rows", 1, INT64_MAX, &opt->rows);
            break;
        case 'k':
            ok = parse_count(optarg, "--chunk-rows", 0, INT32_MAX, &opt->chunk_rows);
            break;
        case 'P':
            opt->plot = optarg;
            break;
        case 's':
            ok = parse_seconds(optarg, "--stall-timeout", &opt->stall_s);
            break;
        case 'T':
            if ((ok = parse_count(optarg, "--threads", 1, 64, &value)))
                opt->threads = (int)value;
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
    return check_options(opt, queries_given, window_given, rows_given);
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */

/* The request free list: as many as the workload keeps outstanding. */
static bool make_requests(bench *b)
{
    const bench_options *o = &b->opt;
    switch (o->workload) {
    case WORKLOAD_FANOUT:
        b->nrequests = o->clients;
        break;
    case WORKLOAD_POINT:
    case WORKLOAD_RATE:
        b->nrequests = (int64_t)o->conns * o->window;
        break;
    default:
        b->nrequests = 0;
        return true;
    }
    b->requests = calloc((size_t)b->nrequests, sizeof *b->requests);
    if (!b->requests)
        return false;
    for (int64_t i = b->nrequests; i-- > 0;)
        request_put(b, &b->requests[i]);
    return true;
}

static int run_loop(bench *b)
{
    b->base = event_base_new();
    if (!b->base || !make_requests(b)) {
        fprintf(stderr, "pgev-bench: out of memory\n");
        return 1;
    }
    b->ticker = event_new(b->base, -1, EV_PERSIST, on_tick, b);
    struct timeval tick = {0, TICK_MS * 1000};
    if (!b->ticker || event_add(b->ticker, &tick) != 0) {
        fprintf(stderr, "pgev-bench: cannot create the timer\n");
        return 1;
    }
    b->last_progress_ns = b->last_tick_ns = now_ns();

    bool opened = b->opt.pool ? open_pool(b) : open_conns(b);
    if (opened && !b->failed && event_base_dispatch(b->base) < 0)
        bench_fail(b, "event loop", "event_base_dispatch failed");
    return !opened || b->failed ? 1 : 0;
}

static int report(bench *b)
{
    int status = b->opt.workload == WORKLOAD_STREAM ? stream_report(b)
               : b->opt.workload == WORKLOAD_COPY ? copy_report(b)
                                                  : query_report(b);
    fflush(stdout);
    if (b->opt.plot && plot(b, b->opt.plot) != 0)
        status = 1;
    return status;
}

/* Anything still outstanding (after a failure) completes with
 * PGEV_ECANCELLED inside the frees; draining stops resubmission. */
static void cleanup(bench *b)
{
    b->draining = true;
    b->finished = true;
    pgev_pool_free(b->pool);
    for (int i = 0; b->conns && i < b->opt.conns; i++)
        pgev_conn_free(b->conns[i].conn);
    if (b->scheduler)
        event_free(b->scheduler);
    if (b->ticker)
        event_free(b->ticker);
    if (b->base)
        event_base_free(b->base);
    timeline_free(&b->throughput);
    free(b->requests);
    free(b->conns);
    free(b->copy_chunk);
}

/* ------------------------------------------------------------------------
 * --threads: one bench per thread, each on its own event loop; their
 * counts and histograms are added up into one report.
 * ------------------------------------------------------------------------ */

static void *thread_main(void *arg)
{
    bench *b = arg;
    return (void *)(intptr_t)run_loop(b);
}

static void merge(bench *into, const bench *b)
{
    into->completed += b->completed;
    into->submitted += b->submitted;
    into->errors += b->errors;
    into->aborted += b->aborted;
    into->mismatches += b->mismatches;
    into->batches += b->batches;
    into->batch_failures += b->batch_failures;
    if (b->started_ns < into->started_ns)
        into->started_ns = b->started_ns;
    if (b->finished_ns > into->finished_ns)
        into->finished_ns = b->finished_ns;
    if (b->cpu_at_start < into->cpu_at_start)
        into->cpu_at_start = b->cpu_at_start; /* the process's CPU time: all threads */
    if (b->max_loop_lag_ns > into->max_loop_lag_ns)
        into->max_loop_lag_ns = b->max_loop_lag_ns;
    if (b->max_backlog > into->max_backlog)
        into->max_backlog = b->max_backlog;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->latency.buckets[i] += b->latency.buckets[i];
    into->latency.count += b->latency.count;
    if (b->latency.max_ns > into->latency.max_ns)
        into->latency.max_ns = b->latency.max_ns;
    /* Throughput over time, each thread's from its own start (they start
     * within milliseconds of each other). */
    for (size_t i = 0; i < b->throughput.len; i++)
        if (b->throughput.counts[i] && !timeline_add(&into->throughput, i * TIMELINE_STEP_MS * 1000000u,
                                                     b->throughput.counts[i]))
            into->failed = true;
}

static int run_threads(const bench_options *opt, const bench *proto)
{
    int n = opt->threads;
    bench *benches = calloc((size_t)n, sizeof *benches);
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    int status = 0, started = 0;
    if (!benches || !threads) {
        fprintf(stderr, "pgev-bench: out of memory\n");
        free(benches);
        free(threads);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        bench *b = &benches[i];
        *b = *proto;
        b->progress_line = false;
        b->opt.plot = NULL;
        b->opt.conns = (int)share(opt->conns, n, i);
        b->opt.clients = share(opt->clients, n, i);
        b->opt.queries = opt->queries > 0 ? share(opt->queries, n, i) : 0;
        if (pthread_create(&threads[i], NULL, thread_main, b) != 0) {
            fprintf(stderr, "pgev-bench: cannot start thread %d\n", i + 1);
            status = 1;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        void *rc;
        pthread_join(threads[i], &rc);
        if ((intptr_t)rc != 0)
            status = 1;
    }
    if (status == 0) {
        static bench total; /* the histogram is large: keep it off the stack */
        total = *proto;
        total.started_ns = UINT64_MAX;
        total.cpu_at_start = 1e300;
        total.bytes_per_query = benches[0].bytes_per_query; /* heap growth is per process: thread 1's */
        for (int i = 0; i < n; i++)
            merge(&total, &benches[i]);
        status = total.failed ? 1 : report(&total);
        timeline_free(&total.throughput);
    }
    for (int i = 0; i < n; i++)
        cleanup(&benches[i]);
    free(benches);
    free(threads);
    return status;
}

int main(int argc, char **argv)
{
    static bench b; /* the histogram is large: keep it off the stack */
    int status = parse_options(argc, argv, &b.opt);
    if (status != 0)
        return status;
    b.naccounts = (uint32_t)(b.opt.scale * ACCOUNTS_PER_SCALE);
    b.query_flags = (b.opt.binary ? PGEV_QUERY_BINARY : 0u) | (b.opt.readonly ? PGEV_QUERY_READONLY : 0u) |
                    (b.opt.unnamed ? PGEV_QUERY_NOCACHE : 0u); /* --unnamed: parsed every time */
    if (b.opt.threads > 1)
        return run_threads(&b.opt, &b);
    b.progress_line = isatty(STDERR_FILENO) != 0;
    status = run_loop(&b);
    if (status == 0)
        status = report(&b);
    cleanup(&b);
    return status;
}
