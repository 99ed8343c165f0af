/*
 * http_service: a small HTTP service on libevent's evhttp that answers
 * from PostgreSQL through a pgev pool, never blocking its loop.
 *
 *   examples/http_service "host=/tmp port=5432 dbname=postgres" [PORT]
 *
 *   curl 'http://127.0.0.1:8080/square?n=12'    {"n":12,"square":144,"backend":12345}
 *   curl 'http://127.0.0.1:8080/transfer?from=1&to=2&amount=10'
 *                                               {"from":1,"to":2,"amount":10,"attempts":1}
 *   curl 'http://127.0.0.1:8080/stats'          the pool's statistics as JSON
 *
 * /square becomes one pool query, pipelined with the others on the
 * least-loaded connection; thousands of concurrent clients share a few
 * connections. /transfer is a SERIALIZABLE transaction through
 * pgev_pool_transaction(): it decides between COMMIT and ROLLBACK from its
 * first statement's result, and runs again by itself when concurrent
 * transfers make it fail with a serialization failure. A client that
 * hangs up before its answer is simply not answered (its work still
 * completes, exactly once).
 */
#include <pgev.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct request {
    struct evhttp_request *http;
    bool gone;              /* the client hung up: nobody to answer */
    char n[16];
    /* /transfer */
    char from[16], to[16], amount[16];
    pgev_pool_txn *ptx;     /* the running transfer, for its statements' callbacks */
} request;

static pgev_pool *pool;

static void
reply(struct evhttp_request *http, int code, const char *reason, const char *body)
{
    struct evbuffer *out = evbuffer_new();
    if (!out)
        return;
    evbuffer_add_printf(out, "%s\n", body);
    evhttp_add_header(evhttp_request_get_output_headers(http), "Content-Type", "application/json");
    evhttp_send_reply(http, code, reason, out);
    evbuffer_free(out);
}

static void
on_client_gone(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    ((request *)arg)->gone = true;
}

/* The pool query's completion: answer the client, if it is still there. */
static void
on_square(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    request *req = arg;
    if (!req->gone) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(req->http), NULL, NULL);
        char body[256];
        int64_t square = 0, pid = 0;
        if (pgev_result_status(res) == PGEV_OK && pgev_result_get_int64(res, 0, 0, &square) == PGEV_OK &&
            pgev_result_get_int64(res, 0, 1, &pid) == PGEV_OK) {
            snprintf(body, sizeof body, "{\"n\":%s,\"square\":%lld,\"backend\":%lld}", req->n,
                     (long long)square, (long long)pid);
            reply(req->http, HTTP_OK, "OK", body);
        } else {
            /* Not JSON-escaped: fine for an example, not for production. */
            snprintf(body, sizeof body, "{\"error\":\"%s\"}", pgev_error_message(pgev_result_error(res)));
            reply(req->http, HTTP_SERVUNAVAIL, "Service Unavailable", body);
        }
    }
    free(req);
}

static void
handle_square(struct evhttp_request *http)
{
    struct evkeyvalq query;
    const char *uri = evhttp_request_get_uri(http);
    const char *n = NULL;
    if (evhttp_parse_query(uri, &query) == 0)
        n = evhttp_find_header(&query, "n");
    char *end = NULL;
    long value = n ? strtol(n, &end, 10) : 0;
    if (!n || !*n || *end || value < -1000000 || value > 1000000) {
        reply(http, HTTP_BADREQUEST, "Bad Request", "{\"error\":\"n must be an integer in [-1e6, 1e6]\"}");
        evhttp_clear_headers(&query);
        return;
    }
    request *req = calloc(1, sizeof *req);
    if (!req) {
        reply(http, HTTP_INTERNAL, "Internal Server Error", "{\"error\":\"out of memory\"}");
        evhttp_clear_headers(&query);
        return;
    }
    req->http = http;
    snprintf(req->n, sizeof req->n, "%ld", value);
    evhttp_clear_headers(&query);
    const char *params[1] = { req->n };
    pgev_query_args args = {
        .sql = "SELECT $1::int8 * $1::int8, pg_backend_pid()",
        .nparams = 1,
        .param_values = params,
        .flags = PGEV_QUERY_READONLY,   /* may go to a standby; retried if a connection dies */
        .on_done = on_square,
        .arg = req,
    };
    if (pgev_pool_submit(pool, &args) < 0) {
        /* Refused (queue full, pool closing): no callback will come. */
        char body[256];
        snprintf(body, sizeof body, "{\"error\":\"%s\"}", pgev_pool_errmsg(pool));
        reply(http, HTTP_SERVUNAVAIL, "Service Unavailable", body);
        free(req);
        return;
    }
    evhttp_connection_set_closecb(evhttp_request_get_connection(http), on_client_gone, req);
}

/* ---- /transfer: a transaction in one call -------------------------------- */

/* The transfer's one statement decides: both accounts found, or roll
 * back. A failed statement (a balance below 0 breaks a CHECK constraint,
 * a concurrent transfer a serialization failure) dooms the transaction:
 * committing it reports that failure, or runs the body again (40001). */
static void
on_moved(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    request *req = arg;
    if (pgev_result_status(res) == PGEV_OK && pgev_result_rows_affected(res) != 2)
        pgev_pool_txn_rollback(req->ptx);   /* an unknown account */
    else
        pgev_pool_txn_commit(req->ptx);
}

/* Runs once per attempt, on the pool connection the transaction holds. */
static void
transfer_body(pgev_pool_txn *ptx, pgev_txn *txn, int attempt, void *arg)
{
    (void)attempt;
    request *req = arg;
    req->ptx = ptx;
    const char *params[3] = { req->from, req->to, req->amount };
    if (pgev_txn_query_params(txn,
                              "UPDATE accounts SET balance = balance + CASE WHEN id = $1::int "
                              "THEN -$3::int8 ELSE $3::int8 END WHERE id IN ($1::int, $2::int)",
                              3, params, on_moved, req) < 0)
        pgev_pool_txn_rollback(ptx);
}

static void
transfer_done(pgev_pool *p, pgev_result *res, int attempts, void *arg)
{
    (void)p;
    request *req = arg;
    if (!req->gone) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(req->http), NULL, NULL);
        char body[512];
        if (pgev_result_status(res) == PGEV_OK) {
            snprintf(body, sizeof body, "{\"from\":%s,\"to\":%s,\"amount\":%s,\"attempts\":%d}",
                     req->from, req->to, req->amount, attempts);
            reply(req->http, HTTP_OK, "OK", body);
        } else {
            const pgev_error *err = pgev_result_error(res);
            snprintf(body, sizeof body, "{\"error\":\"%s\",\"sqlstate\":\"%s\",\"attempts\":%d}",
                     pgev_error_message(err), pgev_error_sqlstate(err), attempts);
            reply(req->http, 409, "Conflict", body);
        }
    }
    free(req);
}

/* Copies query parameter `key` into buf when it is an integer in [lo, hi]. */
static bool
int_param(struct evkeyvalq *query, const char *key, long lo, long hi, char *buf, size_t size)
{
    const char *v = evhttp_find_header(query, key);
    char *end = NULL;
    long value = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || value < lo || value > hi)
        return false;
    snprintf(buf, size, "%ld", value);
    return true;
}

static void
handle_transfer(struct evhttp_request *http)
{
    struct evkeyvalq query;
    request *req = calloc(1, sizeof *req);
    bool ok = evhttp_parse_query(evhttp_request_get_uri(http), &query) == 0;
    if (ok && req) {
        ok = int_param(&query, "from", 1, 1000000, req->from, sizeof req->from) &&
             int_param(&query, "to", 1, 1000000, req->to, sizeof req->to) &&
             int_param(&query, "amount", 1, 1000000000, req->amount, sizeof req->amount) &&
             strcmp(req->from, req->to) != 0;
        evhttp_clear_headers(&query);
    }
    if (!ok || !req) {
        reply(http, HTTP_BADREQUEST, "Bad Request",
              "{\"error\":\"from, to (different accounts) and amount must be positive integers\"}");
        free(req);
        return;
    }
    req->http = http;
    pgev_pool_txn_options opts = { .txn = { .isolation = PGEV_ISOLATION_SERIALIZABLE }, .max_attempts = 5 };
    if (pgev_pool_transaction(pool, &opts, transfer_body, transfer_done, req) < 0) {
        char body[256];
        snprintf(body, sizeof body, "{\"error\":\"%s\"}", pgev_pool_errmsg(pool));
        reply(http, HTTP_SERVUNAVAIL, "Service Unavailable", body);
        free(req);
        return;
    }
    evhttp_connection_set_closecb(evhttp_request_get_connection(http), on_client_gone, req);
}

static void
handle_stats(struct evhttp_request *http)
{
    pgev_pool_statistics st;
    char body[512];
    pgev_pool_stats(pool, &st);
    snprintf(body, sizeof body,
             "{\"conns\":%d,\"idle\":%d,\"busy\":%d,\"queued\":%d,\"outstanding\":%d,"
             "\"queries\":%lld,\"failed\":%lld,\"connects\":%lld,\"committed\":%lld,\"retried\":%lld}",
             st.conns, st.conns_idle, st.conns_busy, st.queued, st.outstanding, (long long)st.queries,
             (long long)st.queries_failed, (long long)st.connects, (long long)st.transactions_committed,
             (long long)st.transactions_retried);
    reply(http, HTTP_OK, "OK", body);
}

static void
on_request(struct evhttp_request *http, void *arg)
{
    (void)arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(http));
    if (path && strcmp(path, "/square") == 0)
        handle_square(http);
    else if (path && strcmp(path, "/transfer") == 0)
        handle_transfer(http);
    else if (path && strcmp(path, "/stats") == 0)
        handle_stats(http);
    else
        reply(http, HTTP_NOTFOUND, "Not Found",
              "{\"error\":\"try /square?n=12, /transfer?from=1&to=2&amount=10 or /stats\"}");
}

/* Pool queries have no order across connections: the rows go in once the table exists. */
static void
on_created(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)conn;
    (void)arg;
    if (pgev_result_status(res) != PGEV_OK)
        fprintf(stderr, "cannot create the accounts table: %s\n", pgev_error_message(pgev_result_error(res)));
    else
        pgev_pool_query(pool, "INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 10) g "
                              "ON CONFLICT DO NOTHING", NULL, NULL);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

int
main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s CONNINFO [PORT]\n", argv[0]);
        return 2;
    }
    int port = argc == 3 ? atoi(argv[2]) : 8080;
    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http || evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    evhttp_set_gencb(http, on_request, NULL);

    pgev_pool_options opts = { .min_conns = 2, .max_conns = 4, .queue_timeout_ms = 2000,
                               .query_timeout_ms = 5000 };
    pool = pgev_pool_new(base, argv[1], &opts);
    if (!pool) {
        fprintf(stderr, "cannot create the pool\n");
        return 1;
    }
    /* The accounts /transfer moves money between (ten of them, 1000 each). */
    pgev_pool_query(pool, "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, "
                          "balance int8 NOT NULL CHECK (balance >= 0))", on_created, NULL);
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    printf("listening on http://127.0.0.1:%d/ (try /square?n=12, /transfer?from=1&to=2&amount=10 and /stats)\n",
           port);
    fflush(stdout);
    event_base_dispatch(base);

    pgev_pool_free(pool);   /* outstanding queries complete (cancelled) first */
    event_free(sigint);
    event_free(sigterm);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
