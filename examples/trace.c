/*
 * trace.c — a one-line log per query (and per connect/disconnect) through
 * pgev's tracing hook, the way a service would feed its access log or
 * metrics.
 *
 *   ./trace "host=localhost dbname=postgres"     (or "" to use PG* variables)
 */
#include <stdio.h>
#include <event2/event.h>
#include <pgev.h>

static const char *event_name(pgev_trace_event ev)
{
    switch (ev) {
    case PGEV_TRACE_QUERY_START: return "start";
    case PGEV_TRACE_QUERY_END: return "query";
    case PGEV_TRACE_CONNECT: return "connect";
    case PGEV_TRACE_DISCONNECT: return "disconnect";
    default: return "pool";
    }
}

/* Called on the loop's thread; only logs (it must not call pgev here). */
static void on_trace(const pgev_trace *t, void *arg)
{
    FILE *log = arg;
    if (t->event == PGEV_TRACE_QUERY_START)
        return; /* one line per query: at its end */
    fprintf(log, "pgev %-10s pid=%d", event_name(t->event), t->backend_pid);
    if (t->event == PGEV_TRACE_QUERY_END)
        fprintf(log, " id=%lld us=%lld rows=%lld cached=%d params=%d sql=\"%s\"", (long long)t->query_id,
                (long long)t->duration_us, (long long)t->rows, t->cache_hit, t->nparams, t->sql ? t->sql : "");
    if (t->status != PGEV_OK)
        fprintf(log, " status=%s sqlstate=%s error=\"%s\"", pgev_strerror(t->status), t->sqlstate,
                t->message ? t->message : "");
    fputc('\n', log);
}

static void on_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    int *left = arg;
    (void)res;
    if (--*left == 0)
        pgev_conn_close(conn);
}

int main(int argc, char **argv)
{
    struct event_base *base = event_base_new();
    pgev_conn_options opts = { .on_trace = on_trace, .trace_arg = stdout };
    pgev_conn *conn = pgev_conn_new(base, argc > 1 ? argv[1] : "", &opts);
    if (!base || !conn) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    int left = 3;
    const char *params[] = { "20" };
    pgev_conn_query_params(conn, "SELECT generate_series(1, $1::int)", 1, params, on_done, &left);
    pgev_conn_query(conn, "SELECT 1/0", on_done, &left);
    pgev_conn_query(conn, "SELECT now()", on_done, &left);
    event_base_dispatch(base);
    int failed = pgev_conn_state(conn) == PGEV_CONN_FAILED;
    pgev_conn_free(conn);
    event_base_free(base);
    return failed;
}
