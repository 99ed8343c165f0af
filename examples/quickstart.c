/*
 * quickstart.c — the smallest complete pgev program: connect, run one query
 * with a parameter, print the answer, close.
 *
 *   ./quickstart "host=localhost dbname=postgres"     (or "" to use PG* variables)
 */
#include <stdio.h>
#include <event2/event.h>
#include <pgev.h>

/* Runs once, from the event loop, when the query has finished. */
static void on_result(pgev_conn *conn, pgev_result *res, void *arg)
{
    int *exit_code = arg;
    int64_t answer;

    if (pgev_result_status(res) != PGEV_OK) {
        fprintf(stderr, "query failed: %s\n", pgev_error_message(pgev_result_error(res)));
    } else if (pgev_result_get_int64(res, 0, 0, &answer) == PGEV_OK) {
        printf("41 + 1 = %lld\n", (long long)answer);
        *exit_code = 0;
    }
    pgev_conn_close(conn); /* nothing else to do: the loop ends once it is closed */
}

int main(int argc, char **argv)
{
    const char *conninfo = argc > 1 ? argv[1] : "";
    const char *params[] = {"41"};
    int exit_code = 1;

    struct event_base *base = event_base_new();
    pgev_conn *conn = pgev_conn_new(base, conninfo, NULL); /* connects in the background */
    if (conn == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    /* Queries can be submitted at once; they are sent when the connection is up. */
    if (pgev_conn_query_params(conn, "SELECT $1::int + 1", 1, params, on_result, &exit_code) < 0)
        fprintf(stderr, "cannot submit: %s\n", pgev_conn_errmsg(conn));
    else
        event_base_dispatch(base); /* returns when there is no more work */

    pgev_conn_free(conn);
    event_base_free(base);
    return exit_code;
}
