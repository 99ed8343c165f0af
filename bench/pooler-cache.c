/*
 * pooler-cache: the statement cache behind a pooler (or not), measured.
 *
 *   bench/pooler-cache --dsn DSN [--conns N] [--queries N] [--window W] [--cache default|off]
 *
 * N pgev connections (default 3), each keeping W queries outstanding
 * (default 100), run --queries plain parameterised queries in all (default
 * 100000): 24 different SQL texts under 4 shapes ("SELECT $1::int + 3",
 * "SELECT $1::int * 3", ...), each answer checked against the value it
 * must have. Prints queries/s, wrong results, errors (and the first of
 * each), and what each connection's statement cache holds at the end.
 * Exit status 1 when any result was wrong or failed.
 */
#include <event2/event.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgev.h"

enum { SHAPES = 4, VARIANTS = 6, MAX_CONNS = 64 };

static char sql_text[SHAPES][VARIANTS][48];

typedef struct run run;

typedef struct slot {
    run *r;
    pgev_conn *conn;
    int shape, variant, value;
    char param[16];
} slot;

struct run {
    struct event_base *base;
    long total, submitted, completed, wrong, errors;
    char first_wrong[256], first_error[512];
};

static long
expected(int shape, int variant, int v)
{
    int k = variant + 1;
    switch (shape) {
    case 0: return (long)v + k;
    case 1: return (long)v * k;
    case 2: return (long)v - k;
    default: return (long)k - v;
    }
}

static void on_done(pgev_conn *conn, pgev_result *res, void *arg);

static void
submit_next(slot *s)
{
    run *r = s->r;
    if (r->submitted >= r->total)
        return;
    long i = r->submitted++;
    s->shape = (int)(i % SHAPES);
    s->variant = (int)((i / SHAPES) % VARIANTS);
    s->value = (int)(i % 100000);
    snprintf(s->param, sizeof s->param, "%d", s->value);
    const char *values[1] = { s->param };
    pgev_query_args args = { .sql = sql_text[s->shape][s->variant], .nparams = 1, .param_values = values,
                             .on_done = on_done, .arg = s };
    if (pgev_conn_submit(s->conn, &args) <= 0) {
        fprintf(stderr, "pooler-cache: submit refused: %s\n", pgev_conn_errmsg(s->conn));
        exit(1);
    }
}

static void
on_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    slot *s = arg;
    run *r = s->r;
    r->completed++;
    if (pgev_result_status(res) != PGEV_OK) {
        if (!r->errors++)
            snprintf(r->first_error, sizeof r->first_error, "%s: %s", sql_text[s->shape][s->variant],
                     pgev_error_message(pgev_result_error(res)));
    } else {
        PGresult *pg = pgev_result_pg(res);
        long got = pg && PQntuples(pg) == 1 ? atol(PQgetvalue(pg, 0, 0)) : -999999999L;
        if (got != expected(s->shape, s->variant, s->value) && !r->wrong++)
            snprintf(r->first_wrong, sizeof r->first_wrong, "%s with %d gave %ld",
                     sql_text[s->shape][s->variant], s->value, got);
    }
    if (r->completed >= r->total)
        event_base_loopbreak(r->base);
    else
        submit_next(s);
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    const char *dsn = "", *cache = "default";
    int conns = 3, window = 100;
    long queries = 100000;
    static const struct option longopts[] = {
        { "dsn", required_argument, NULL, 'd' },     { "conns", required_argument, NULL, 'c' },
        { "queries", required_argument, NULL, 'q' }, { "window", required_argument, NULL, 'w' },
        { "cache", required_argument, NULL, 'k' },   { NULL, 0, NULL, 0 },
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd': dsn = optarg; break;
        case 'c': conns = atoi(optarg); break;
        case 'q': queries = atol(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'k': cache = optarg; break;
        default:
            fprintf(stderr, "usage: pooler-cache --dsn DSN [--conns N] [--queries N] [--window W] "
                            "[--cache default|off]\n");
            return 2;
        }
    }
    if (conns < 1 || conns > MAX_CONNS || window < 1 || queries < 1 ||
        (strcmp(cache, "default") != 0 && strcmp(cache, "off") != 0)) {
        fprintf(stderr, "pooler-cache: bad arguments\n");
        return 2;
    }
    for (int s = 0; s < SHAPES; s++)
        for (int v = 0; v < VARIANTS; v++) {
            char *out = sql_text[s][v];
            size_t size = sizeof sql_text[s][v];
            switch (s) {
            case 0: snprintf(out, size, "SELECT $1::int + %d", v + 1); break;
            case 1: snprintf(out, size, "SELECT $1::int * %d", v + 1); break;
            case 2: snprintf(out, size, "SELECT $1::int - %d", v + 1); break;
            default: snprintf(out, size, "SELECT %d - $1::int", v + 1); break;
            }
        }
    run r = { .base = event_base_new(), .total = queries };
    pgev_conn_options opts = { .stmt_cache_size = strcmp(cache, "off") == 0 ? PGEV_STMT_CACHE_OFF : 0,
                               .max_inflight = window };
    pgev_conn *c[MAX_CONNS];
    for (int i = 0; i < conns; i++) {
        c[i] = pgev_conn_new(r.base, dsn, &opts);
        if (!c[i]) {
            fprintf(stderr, "pooler-cache: pgev_conn_new failed\n");
            return 1;
        }
    }
    /* Connect first, so that the clock measures queries only. */
    for (;;) {
        int ready = 0;
        for (int i = 0; i < conns; i++) {
            pgev_connection_state st = pgev_conn_state(c[i]);
            if (st == PGEV_CONN_FAILED) {
                fprintf(stderr, "pooler-cache: connect failed: %s\n", pgev_conn_errmsg(c[i]));
                return 1;
            }
            ready += st == PGEV_CONN_READY;
        }
        if (ready == conns)
            break;
        event_base_loop(r.base, EVLOOP_ONCE);
    }
    /* One query each first (the cache's first query on a connection asks
     * the server whose session it is), then the clock starts. */
    run warm = { .base = r.base, .total = conns };
    slot *warm_slots = calloc((size_t)conns, sizeof *warm_slots);
    for (int i = 0; i < conns; i++) {
        warm_slots[i].r = &warm;
        warm_slots[i].conn = c[i];
        submit_next(&warm_slots[i]);
    }
    event_base_dispatch(r.base);
    if (warm.wrong || warm.errors)
        printf("warm-up: %ld wrong, %ld errors (%s%s)\n", warm.wrong, warm.errors, warm.first_wrong,
               warm.first_error);
    free(warm_slots);
    slot *slots = calloc((size_t)conns * (size_t)window, sizeof *slots);
    double start = now_s();
    for (int w = 0; w < window; w++)
        for (int i = 0; i < conns; i++) {
            slot *s = &slots[i * window + w];
            s->r = &r;
            s->conn = c[i];
            submit_next(s);
        }
    event_base_dispatch(r.base);
    double elapsed = now_s() - start;
    printf("cache=%s conns=%d window=%d queries=%ld: %.0f queries/s, %ld wrong, %ld errors\n", cache, conns,
           window, r.completed, (double)r.completed / elapsed, r.wrong, r.errors);
    if (r.wrong)
        printf("  first wrong: %s\n", r.first_wrong);
    if (r.errors)
        printf("  first error: %s\n", r.first_error);
    printf("  statements cached per connection:");
    for (int i = 0; i < conns; i++)
        printf(" %d", pgev_conn_stmt_cache_count(c[i]));
    printf("\n");
    for (int i = 0; i < conns; i++)
        pgev_conn_free(c[i]);
    free(slots);
    event_base_free(r.base);
    return r.wrong || r.errors || warm.wrong || warm.errors ? 1 : 0;
}
