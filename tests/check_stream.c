/*
 * Streaming tests: rows delivered as they arrive, in order, in constant
 * memory; errors in the middle of a stream; streamed and buffered queries
 * interleaved on one connection. Needs PGEV_TEST_DSN.
 */
#include "config.h"     /* HAVE_PQSETCHUNKEDROWSMODE: what this build of pgev uses */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pgev_conn *conn;

#if defined(__SANITIZE_ADDRESS__)
#define STREAM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STREAM_ASAN 1
#endif
#endif
#ifdef STREAM_ASAN
/* AddressSanitizer keeps freed blocks in a quarantine (256 MB by default)
 * before reusing them, so RSS grows with what passed through it until the
 * quarantine is full. Single rows fill it before the first memory sample;
 * chunks of rows (libpq 17+) fill it slowly, over the whole stream, which
 * the RSS check would take for growth. A small quarantine keeps that check
 * meaningful in both runs (the heap check counts live bytes either way). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=16";
}
#endif

/* Row-order and memory tracking shared by the row hooks. */
static int64_t next_g;
static long rss_baseline_kb;
static long rss_max_growth_kb;
static size_t heap_baseline;
static long heap_max_growth_kb;
static int64_t next_sample;
static int samples;

#define SAMPLE_EVERY 100000

static void sample_memory(void)
{
    long rss = tu_rss_kb();
    size_t heap = tu_heap_bytes();
    samples++;
    if (samples == 1) {
        rss_baseline_kb = rss;
        heap_baseline = heap;
        return;
    }
    long rss_growth = rss - rss_baseline_kb;
    long heap_growth = ((long)heap - (long)heap_baseline) / 1024;
    if (rss_growth > rss_max_growth_kb)
        rss_max_growth_kb = rss_growth;
    if (heap_growth > heap_max_growth_kb)
        heap_max_growth_kb = heap_growth;
}

/* Checks that column 0 counts up from 1 without gaps (with the typed
 * accessor, in a row callback), and samples memory every SAMPLE_EVERY
 * rows. */
static void check_rows_in_order(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)q;
    PGresult *pg = pgev_result_pg(res);
    int n = PQntuples(pg);
    TU_CHECK(n > 0, "a row delivery without rows");
    for (int r = 0; r < n; r++) {
        int64_t g = 0;
        int rc = pgev_result_get_int64(res, r, 0, &g);
        TU_CHECK(rc == PGEV_OK, "row %d: get_int64 returned %d", r, rc);
        TU_CHECK(g == next_g, "row with g=%lld arrived when %lld was expected", (long long)g,
                      (long long)next_g);
        next_g++;
    }
    if (next_g >= next_sample) {
        sample_memory();
        next_sample += SAMPLE_EVERY;
    }
}

static void reset_tracking(void)
{
    next_g = 1;
    rss_baseline_kb = 0;
    rss_max_growth_kb = 0;
    heap_baseline = 0;
    heap_max_growth_kb = 0;
    samples = 0;
    next_sample = SAMPLE_EVERY;
}

/* Rows per chunk a stream_chunk_rows of n gives with this build's libpq:
 * chunks on libpq 17+, single rows before. */
static int effective_chunk(int n)
{
#ifdef HAVE_PQSETCHUNKEDROWSMODE
    return n > 1 ? n : 1;
#else
    (void)n;
    return 1;
#endif
}

static int64_t stream_chunked(const char *sql, unsigned flags, int chunk_rows, tu_query *q)
{
    pgev_query_args args = { .sql = sql, .flags = flags, .stream_chunk_rows = chunk_rows };
    int64_t id = tu_submit(conn, &args, q, true);
    ck_assert_msg(id > 0, "submit: %s (%s)", pgev_strerror((int)id), pgev_conn_errmsg(conn));
    return id;
}

static int64_t stream(const char *sql, unsigned flags, tu_query *q)
{
    pgev_query_args args = { .sql = sql, .flags = flags };
    int64_t id = tu_submit(conn, &args, q, true);
    ck_assert_msg(id > 0, "submit: %s (%s)", pgev_strerror((int)id), pgev_conn_errmsg(conn));
    return id;
}

static int64_t buffered(const char *sql, tu_query *q)
{
    int64_t id = tu_query_sql(conn, sql, q);
    ck_assert_msg(id > 0, "submit: %s (%s)", pgev_strerror((int)id), pgev_conn_errmsg(conn));
    return id;
}

static void check_no_rows_in_completion(const tu_query *q)
{
    ck_assert_msg(!q->has_pg || q->ntuples == 0,
                  "a streamed query's completion result holds %d rows", q->ntuples);
}

/* Run 0: single rows (the default); run 1: chunks of 777 rows, which do not
 * divide the result (libpq 17/18 then put the command tag on the last,
 * partial chunk instead of the final result). */
static const int two_million_chunks[] = { 0, 777 };

START_TEST(stream_two_million_rows)
{
    enum { N = 2000000 };
    int chunk = two_million_chunks[_i];
    conn = tu_connect(NULL);
    reset_tracking();
    tu_query q = { .on_rows_hook = check_rows_in_order };
    stream_chunked("SELECT g, repeat('x', 100) FROM generate_series(1, 2000000) g", 0, chunk, &q);
    tu_wait_queries(&q, 1, 150000);
    tu_assert_ok(&q);
    ck_assert_int_eq(next_g - 1, N);
    ck_assert_int_eq(q.rows_streamed, N);
    ck_assert_int_eq(q.rows, N);
    ck_assert_int_eq(q.row_calls, (N + effective_chunk(chunk) - 1) / effective_chunk(chunk));
    ck_assert_int_lt(q.first_row_seq, q.done_seq);
    check_no_rows_in_completion(&q);
    ck_assert_str_eq(q.command, "SELECT 2000000");
    ck_assert_int_eq(q.rows_affected, N);

    ck_assert_int_ge(samples, 15);
    fprintf(stderr, "stream 2M rows (stream_chunk_rows %d): %d row callbacks; growth after the first %d rows: "
                    "RSS %ld kB, heap %ld kB%s\n",
            chunk, q.row_calls, SAMPLE_EVERY, rss_max_growth_kb, heap_max_growth_kb,
            tu_sanitized() ? " (sanitizer build)" : "");
    /* Buffered, these rows would take ~250 MB. */
    ck_assert_msg(heap_max_growth_kb < 16 * 1024, "heap grew by %ld kB while streaming",
                  heap_max_growth_kb);
    /* ASan's quarantine keeps freed blocks resident for a while: allow it
     * more, still far below what buffering would take. */
    long rss_limit_kb = tu_sanitized() ? 64 * 1024 : 16 * 1024;
    ck_assert_msg(rss_max_growth_kb < rss_limit_kb, "RSS grew by %ld kB while streaming",
                  rss_max_growth_kb);
    pgev_conn_free(conn);
    tu_assert_all_once(&q, 1);
    tu_assert_base_idle();
}
END_TEST

static void check_buffered_rows(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    PGresult *pg = pgev_result_pg(res);
    ck_assert_ptr_nonnull(pg);
    int n = PQntuples(pg);
    ck_assert_int_eq(n, q->index);
    ck_assert_int_eq(pgev_result_rows(res), n);
    for (int r = 0; r < n; r++) {
        int64_t g = 0;
        int rc = pgev_result_get_int64(res, r, 0, &g);
        TU_CHECK(rc == PGEV_OK && g == r + 1, "row %d: rc %d, g %lld", r, rc, (long long)g);
    }
    ck_assert_int_eq(PQgetlength(pg, n - 1, 1), 100);
}

START_TEST(buffered_result)
{
    conn = tu_connect(NULL);
    tu_query q = { .index = 100000, .on_done_hook = check_buffered_rows };
    buffered("SELECT g, repeat('x', 100) FROM generate_series(1, 100000) g", &q);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_int_eq(q.row_calls, 0);
    ck_assert_int_eq(q.ntuples, 100000);
    ck_assert_int_eq(q.rows, 100000);
    ck_assert_str_eq(q.command, "SELECT 100000");
    pgev_conn_free(conn);
}
END_TEST

START_TEST(error_mid_stream)
{
    conn = tu_connect(NULL);
    reset_tracking();
    tu_query q[2];
    memset(q, 0, sizeof q);
    q[0].on_rows_hook = check_rows_in_order;
    stream("SELECT g, 1 / (g - 50000) FROM generate_series(1, 100000) g", 0, &q[0]);
    buffered("SELECT 'after'", &q[1]);
    tu_wait_queries(q, 2, TU_WAIT_MS);

    ck_assert_int_eq(q[0].status, PGEV_ESERVER);
    ck_assert_str_eq(q[0].sqlstate, "22012");
    ck_assert_str_eq(q[0].message, "division by zero");
    ck_assert_msg(q[0].rows_streamed > 0 && q[0].rows_streamed <= 49999,
                  "%lld rows delivered before the error", (long long)q[0].rows_streamed);
    ck_assert_int_eq(next_g - 1, q[0].rows_streamed);
    /* The completion counts the rows that reached the row callback. */
    ck_assert_int_eq(q[0].rows, q[0].rows_streamed);
    ck_assert_int_lt(q[0].first_row_seq, q[0].done_seq);
    tu_assert_ok(&q[1]);
    ck_assert_str_eq(q[1].value, "after");
    pgev_conn_free(conn);
    tu_assert_all_once(q, 2);
    tu_assert_base_idle();
}
END_TEST

START_TEST(error_before_first_row)
{
    conn = tu_connect(NULL);
    tu_query q[2];
    memset(q, 0, sizeof q);
    stream("SELECT * FROM pgev_no_such_table", 0, &q[0]);
    stream("SELECT 1 WHERE false", 0, &q[1]);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    ck_assert_int_eq(q[0].status, PGEV_ESERVER);
    ck_assert_str_eq(q[0].sqlstate, "42P01");
    ck_assert_int_eq(q[0].row_calls, 0);
    tu_assert_ok(&q[1]);
    ck_assert_int_eq(q[1].row_calls, 0);
    ck_assert_int_eq(q[1].rows, 0);
    ck_assert_str_eq(q[1].command, "SELECT 0");
    pgev_conn_free(conn);
    tu_assert_all_once(q, 2);
}
END_TEST

START_TEST(streamed_between_buffered)
{
    conn = tu_connect(NULL);
    reset_tracking();
    tu_query q[6];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 6; i++)
        q[i].index = i;
    q[1].on_rows_hook = check_rows_in_order;
    buffered("SELECT 0", &q[0]);
    stream("SELECT g FROM generate_series(1, 10000) g", 0, &q[1]);
    buffered("SELECT 2", &q[2]);
    stream("SELECT g, 'x' FROM generate_series(1, 5) g", 0, &q[3]);
    buffered("SELECT g FROM generate_series(1, 3) g", &q[4]);
    stream("SET application_name = 'pgev-stream'", 0, &q[5]);
    tu_wait_queries(q, 6, TU_WAIT_MS);
    for (int i = 0; i < 6; i++)
        tu_assert_ok(&q[i]);
    ck_assert_int_eq(q[1].rows_streamed, 10000);
    ck_assert_int_eq(q[1].rows, 10000);
    check_no_rows_in_completion(&q[1]);
    ck_assert_int_eq(q[3].rows_streamed, 5);
    check_no_rows_in_completion(&q[3]);
    ck_assert_int_eq(q[0].ntuples, 1);
    ck_assert_str_eq(q[2].value, "2");
    ck_assert_int_eq(q[4].ntuples, 3);
    ck_assert_int_eq(q[4].row_calls, 0);
    ck_assert_int_eq(q[5].row_calls, 0);
    ck_assert_str_eq(q[5].command, "SET");
    /* Everything in submission order, rows before their completion. */
    ck_assert_int_lt(q[0].done_seq, q[1].first_row_seq);
    ck_assert_int_lt(q[1].first_row_seq, q[1].done_seq);
    ck_assert_int_lt(q[1].done_seq, q[2].done_seq);
    ck_assert_int_lt(q[2].done_seq, q[3].first_row_seq);
    ck_assert_int_lt(q[3].first_row_seq, q[3].done_seq);
    ck_assert_int_lt(q[3].done_seq, q[4].done_seq);
    ck_assert_int_lt(q[4].done_seq, q[5].done_seq);
    pgev_conn_free(conn);
    tu_assert_all_once(q, 6);
}
END_TEST

/* Fairness: a long stream on one connection does not hold up a short
 * query on another connection of the same event loop. */
static pgev_conn *other_conn;
static tu_query other_query;

static void submit_on_other_once(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)res;
    if (q->row_calls == 1)
        TU_CHECK(tu_query_sql(other_conn, "SELECT 42", &other_query) > 0, "submit on the other conn");
}

START_TEST(stream_does_not_starve_other_connections)
{
    conn = tu_connect(NULL);
    other_conn = tu_connect(NULL);
    memset(&other_query, 0, sizeof other_query);
    tu_query big = { .on_rows_hook = submit_on_other_once };
    stream("SELECT g, repeat('x', 100) FROM generate_series(1, 2000000) g", 0, &big);
    tu_wait_query(&big);
    tu_wait_query(&other_query);
    tu_assert_ok(&big);
    tu_assert_ok(&other_query);
    ck_assert_str_eq(other_query.value, "42");
    ck_assert_msg(other_query.done_seq < big.done_seq,
                  "the short query on the other connection waited for the whole stream");
    pgev_conn_free(other_conn);
    pgev_conn_free(conn);
    tu_assert_all_once(&big, 1);
    tu_assert_all_once(&other_query, 1);
}
END_TEST

static void check_binary_rows(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    (void)q;
    PGresult *pg = pgev_result_pg(res);
    for (int r = 0; r < PQntuples(pg); r++) {
        ck_assert_int_eq(PQfformat(pg, 0), 1);
        int64_t g;
        ck_assert_int_eq(pgev_result_get_int64(res, r, 0, &g), PGEV_OK);
        ck_assert_int_eq(g, next_g);
        const char *text;
        size_t len;
        ck_assert_int_eq(pgev_result_get_text(res, r, 1, &text, &len), PGEV_OK);
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long)g);
        ck_assert_uint_eq(len, strlen(want));
        ck_assert(memcmp(text, want, len) == 0);
        double d;
        ck_assert_int_eq(pgev_result_get_double(res, r, 2, &d), PGEV_OK);
        ck_assert(d == (double)g / 2);
        next_g++;
    }
}

START_TEST(stream_binary_format)
{
    conn = tu_connect(NULL);
    reset_tracking();
    tu_query q = { .on_rows_hook = check_binary_rows };
    stream("SELECT g::int8, g::text, g / 2.0::float8 FROM generate_series(1, 1000) g",
           PGEV_QUERY_BINARY, &q);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_int_eq(next_g, 1001);
    ck_assert_int_eq(q.rows, 1000);
    pgev_conn_free(conn);
}
END_TEST

static tu_query from_rows;

/* Submits one query from inside a row callback; it must complete after the
 * streamed query (order) and never inside the submit. */
static void submit_from_row_cb(pgev_conn *c, pgev_result *res, tu_query *q)
{
    check_rows_in_order(c, res, q);
    if (from_rows.id == 0) {
        ck_assert_int_gt(tu_query_sql(c, "SELECT 'from rows'", &from_rows), 0);
        ck_assert_int_eq(from_rows.done_calls, 0);
    }
}

START_TEST(submit_from_row_callback)
{
    conn = tu_connect(NULL);
    reset_tracking();
    memset(&from_rows, 0, sizeof from_rows);
    tu_query q = { .on_rows_hook = submit_from_row_cb };
    stream("SELECT g FROM generate_series(1, 50000) g", 0, &q);
    tu_wait_query(&q);
    tu_wait_query(&from_rows);
    tu_assert_ok(&q);
    tu_assert_ok(&from_rows);
    ck_assert_str_eq(from_rows.value, "from rows");
    ck_assert_int_lt(q.done_seq, from_rows.done_seq);
    ck_assert_int_eq(q.rows_streamed, 50000);
    pgev_conn_free(conn);
    tu_assert_all_once(&from_rows, 1);
}
END_TEST

START_TEST(many_small_streams)
{
    conn = tu_connect(NULL);
    enum { N = 2000 };
    tu_query *q = calloc(N, sizeof *q);
    ck_assert_ptr_nonnull(q);
    for (int i = 0; i < N; i++) {
        q[i].index = i;
        if (i % 2)
            stream("SELECT g FROM generate_series(1, 3) g", 0, &q[i]);
        else
            buffered("SELECT g FROM generate_series(1, 3) g", &q[i]);
    }
    tu_wait_queries(q, N, 60000);
    for (int i = 0; i < N; i++) {
        tu_assert_ok(&q[i]);
        ck_assert_int_eq(q[i].rows, 3);
        ck_assert_int_eq(q[i].rows_streamed, i % 2 ? 3 : 0);
        if (i > 0)
            ck_assert_int_lt(q[i - 1].done_seq, q[i].done_seq);
    }
    pgev_conn_free(conn);
    tu_assert_all_once(q, N);
    free(q);
    tu_assert_base_idle();
}
END_TEST

/* Keeps every 1000th row delivery past its callback. */
static PGresult *kept[64];
static int nkept;

static void steal_some_rows(pgev_conn *c, pgev_result *res, tu_query *q)
{
    check_rows_in_order(c, res, q);
    if (q->row_calls % 1000 == 1 && nkept < 64) {
        PGresult *pg = pgev_result_steal(res);
        TU_CHECK(pg != NULL, "steal in a row callback returned NULL");
        TU_CHECK(pgev_result_pg(res) == NULL, "pgev_result_pg after steal");
        kept[nkept++] = pg;
    }
}

START_TEST(steal_in_row_callback)
{
    pgev_conn_options opts = { .max_inflight = 1 };
    conn = tu_connect(&opts);
    reset_tracking();
    nkept = 0;
    tu_query q[2];
    memset(q, 0, sizeof q);
    q[0].on_rows_hook = steal_some_rows;
    stream("SELECT g, 'v' || g FROM generate_series(1, 20000) g", 0, &q[0]);
    buffered("SELECT 'next'", &q[1]);
    tu_wait_queries(q, 2, TU_WAIT_MS);
    tu_assert_ok(&q[0]);
    tu_assert_ok(&q[1]);
    ck_assert_int_eq(q[0].rows_streamed, 20000);
    ck_assert_int_gt(nkept, 0);
    pgev_conn_free(conn);
    /* The stolen rows outlive the callbacks and the connection. */
    int64_t last = 0;
    for (int i = 0; i < nkept; i++) {
        /* PGRES_SINGLE_TUPLE with libpq < 17, a chunk with 17+. */
        ck_assert_int_ne(PQresultStatus(kept[i]), PGRES_FATAL_ERROR);
        ck_assert_int_ge(PQntuples(kept[i]), 1);
        int64_t g = atoll(PQgetvalue(kept[i], 0, 0));
        ck_assert_int_gt(g, last);
        char want[32];
        snprintf(want, sizeof want, "v%lld", (long long)g);
        ck_assert_str_eq(PQgetvalue(kept[i], 0, 1), want);
        last = g;
        PQclear(kept[i]);
    }
    tu_assert_base_idle();
}
END_TEST

/* The largest delivery one query's row callback saw, and the columns of
 * its completion result. */
typedef struct delivery_rec {
    int largest;
    int completion_columns;
} delivery_rec;

static void record_largest_delivery(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    delivery_rec *rec = q->user;
    if (pgev_result_rows(res) > rec->largest)
        rec->largest = (int)pgev_result_rows(res);
}

static void record_completion_columns(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    delivery_rec *rec = q->user;
    rec->completion_columns = pgev_result_pg(res) ? PQnfields(pgev_result_pg(res)) : -1;
}

/* stream_chunk_rows: deliveries of at most that many rows (libpq 17+; one
 * row each before), and the command tag and count of the whole result
 * whether the last chunk is partial, full, the only one, or absent. */
START_TEST(chunked_stream_command_tag)
{
    static const struct {
        const char *sql;
        int chunk_rows;
        int rows;
        const char *tag;
    } cases[] = {
        { "SELECT g FROM generate_series(1, 1000) g", 256, 1000, "SELECT 1000" },  /* partial last */
        { "SELECT g FROM generate_series(1, 1024) g", 256, 1024, "SELECT 1024" },  /* full last */
        { "SELECT g FROM generate_series(1, 10) g", 256, 10, "SELECT 10" },        /* one chunk */
        { "SELECT g FROM generate_series(1, 0) g", 256, 0, "SELECT 0" },           /* none */
        { "SELECT g FROM generate_series(1, 7) g", 2, 7, "SELECT 7" },
        { "SELECT g FROM generate_series(1, 7) g", 1, 7, "SELECT 7" },             /* single rows */
        { "INSERT INTO chunk_tag_t SELECT g FROM generate_series(1, 5) g RETURNING x", 3, 5, "INSERT 0 5" },
        { "UPDATE chunk_tag_t SET x = x + 1 RETURNING x", 4, 5, "UPDATE 5" },
    };
    enum { N = sizeof cases / sizeof cases[0] };
    conn = tu_connect(NULL);
    tu_query setup = { 0 };
    buffered("CREATE TEMP TABLE chunk_tag_t (x int)", &setup);
    tu_wait_query(&setup);
    tu_assert_ok(&setup);
    tu_query q[N];
    delivery_rec rec[N];
    memset(q, 0, sizeof q);
    memset(rec, 0, sizeof rec);
    for (int i = 0; i < N; i++) {
        q[i].on_rows_hook = record_largest_delivery;
        q[i].on_done_hook = record_completion_columns;
        q[i].user = &rec[i];
        q[i].index = i;
        stream_chunked(cases[i].sql, 0, cases[i].chunk_rows, &q[i]);
    }
    tu_wait_queries(q, N, TU_WAIT_MS);
    for (int i = 0; i < N; i++) {
        int chunk = effective_chunk(cases[i].chunk_rows);
        tu_assert_ok(&q[i]);
        ck_assert_msg(strcmp(q[i].command, cases[i].tag) == 0, "case %d (%s, stream_chunk_rows %d): tag \"%s\", expected \"%s\"",
                      i, cases[i].sql, cases[i].chunk_rows, q[i].command, cases[i].tag);
        ck_assert_int_eq(q[i].rows_affected, cases[i].rows);
        ck_assert_int_eq(q[i].rows_streamed, cases[i].rows);
        ck_assert_int_eq(q[i].rows, cases[i].rows);
        ck_assert_int_eq(q[i].row_calls, (cases[i].rows + chunk - 1) / chunk);
        ck_assert_int_eq(rec[i].largest, cases[i].rows < chunk ? cases[i].rows : chunk);
        /* The completion result describes the columns, as without chunks. */
        ck_assert_int_eq(rec[i].completion_columns, 1);
        check_no_rows_in_completion(&q[i]);
    }
    pgev_conn_free(conn);
    tu_assert_all_once(q, N);
}
END_TEST

/*
 * A slow producer: rows of 9000 bytes (larger than the server's 8 kB send
 * buffer, so each row pushes the one before it onto the wire), and the
 * third one waits for an advisory lock that a second session holds. Rows 1
 * and 2 are then on their way while the query cannot end.
 */
#define SLOW_PRODUCER_SQL                                                                        \
    "SELECT g, repeat('x', 9000), CASE WHEN g = 3 THEN pg_advisory_lock_shared(4242)::text END " \
    "FROM generate_series(1, 5) g"

static PGconn *lock_holder(void)
{
    PGconn *holder = PQconnectdb(tu_dsn());
    ck_assert_msg(PQstatus(holder) == CONNECTION_OK, "lock holder: %s", PQerrorMessage(holder));
    PGresult *r = PQexec(holder, "SELECT pg_advisory_lock(4242)");
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "advisory lock: %s", PQerrorMessage(holder));
    PQclear(r);
    return holder;
}

static void release_lock(PGconn *holder)
{
    PGresult *r = PQexec(holder, "SELECT pg_advisory_unlock(4242)");
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "advisory unlock: %s", PQerrorMessage(holder));
    PQclear(r);
}

/* Whether a session waits for the advisory lock (asked on the holder's
 * session, which is idle). */
static bool producer_waits(void *arg)
{
    PGresult *r = PQexec(arg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
    bool waiting = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "1") == 0;
    PQclear(r);
    return waiting;
}

/* Runs the loop until the producer waits for the lock (a query on another
 * session per look, the loop running 10 ms in between). */
static void wait_for_producer(PGconn *holder)
{
    for (int i = 0; i < TU_WAIT_MS / 10 && !producer_waits(holder); i++)
        tu_run_for(10);
    ck_assert_msg(producer_waits(holder), "the producer never waited for the lock");
}

/* pgev's streaming promise with the default stream_chunk_rows: rows reach
 * on_rows as they arrive, while the query still runs (on every libpq). */
START_TEST(slow_producer_rows_arrive_before_the_end)
{
    conn = tu_connect(NULL);
    PGconn *holder = lock_holder();
    tu_query q = { 0 };
    stream(SLOW_PRODUCER_SQL, 0, &q);
    tu_wait_count(&q.row_calls, 1, TU_WAIT_MS, "the first row while the producer waits");
    wait_for_producer(holder);
    ck_assert_int_eq(q.done_calls, 0);
    ck_assert_int_le(q.rows_streamed, 2);
    release_lock(holder);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_int_eq(q.rows_streamed, 5);
    ck_assert_int_eq(q.row_calls, 5);
    ck_assert_str_eq(q.command, "SELECT 5");
    PQfinish(holder);
    pgev_conn_free(conn);
    tu_assert_all_once(&q, 1);
}
END_TEST

/* The trade-off stream_chunk_rows makes, as pgev.h documents it: with
 * libpq 17+ a chunk is handed over only when it is full or the result
 * ends, so the rows already received wait while the producer is slow;
 * with libpq < 17 the setting has no effect and they arrive one by one. */
START_TEST(slow_producer_with_chunks)
{
    conn = tu_connect(NULL);
    PGconn *holder = lock_holder();
    tu_query q = { 0 };
    stream_chunked(SLOW_PRODUCER_SQL, 0, 100, &q);
    if (effective_chunk(100) == 1) {
        tu_wait_count(&q.row_calls, 1, TU_WAIT_MS, "the first row while the producer waits");
        ck_assert_int_eq(q.done_calls, 0);
    } else {
        /* The server sent rows 1 and 2 and waits at row 3: run the loop a
         * while (only to see that nothing is delivered). */
        wait_for_producer(holder);
        tu_run_for(300);
        ck_assert_int_eq(q.row_calls, 0);
        ck_assert_int_eq(q.done_calls, 0);
    }
    release_lock(holder);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_int_eq(q.rows_streamed, 5);
    ck_assert_int_eq(q.row_calls, effective_chunk(100) == 1 ? 5 : 1);
    ck_assert_str_eq(q.command, "SELECT 5");
    PQfinish(holder);
    pgev_conn_free(conn);
    tu_assert_all_once(&q, 1);
}
END_TEST

static Suite *stream_suite(void)
{
    Suite *s = suite_create("stream");
    TCase *tc = tu_tcase("big", 180);
    tcase_add_loop_test(tc, stream_two_million_rows, 0, 2);
    tcase_add_test(tc, buffered_result);
    tcase_add_test(tc, stream_does_not_starve_other_connections);
    suite_add_tcase(s, tc);

    tc = tu_tcase("stream", 60);
    tcase_add_test(tc, error_mid_stream);
    tcase_add_test(tc, error_before_first_row);
    tcase_add_test(tc, streamed_between_buffered);
    tcase_add_test(tc, stream_binary_format);
    tcase_add_test(tc, submit_from_row_callback);
    tcase_add_test(tc, many_small_streams);
    tcase_add_test(tc, steal_in_row_callback);
    tcase_add_test(tc, chunked_stream_command_tag);
    tcase_add_test(tc, slow_producer_rows_arrive_before_the_end);
    tcase_add_test(tc, slow_producer_with_chunks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(stream_suite());
}
