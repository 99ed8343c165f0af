/*
 * types.c — typed values both ways: an array parameter for `= ANY($1)`,
 * and every typed accessor on the rows that come back, columns found by
 * name, and a record (composite) column field by field. Results are asked for in binary format (PGEV_QUERY_BINARY); the
 * accessors read text format the same way.
 *
 *   ./types "host=localhost dbname=postgres"     (or "" to use PG* variables)
 *
 * Exits 0 when the query ran and every value decoded, 1 otherwise.
 */
#include <inttypes.h>
#include <stdio.h>
#include <event2/event.h>
#include <pgev.h>

static const char *const sql =
    "SELECT g AS id, 'user ' || g AS name, md5(g::text)::uuid AS uid, "
    "       timestamptz '2024-07-01 12:00:00+00' + g * interval '1 day' AS created, "
    "       date '2024-01-01' + g AS due, (g * 1.25)::numeric(10, 2) AS balance, "
    "       decode('00ff', 'hex') AS avatar, ARRAY['red', NULL, 'blue'] AS tags, "
    "       jsonb_build_object('id', g) AS doc, inet '10.0.0.0/8' AS net, "
    "       interval '1 mon 2 days 03:00:00' AS ttl, "
    "       ROW(g * 10, 'limit', NULL::date) AS quota "
    "FROM generate_series(1, 10) g WHERE g = ANY($1) ORDER BY g";

/* Reads one row; returns 0, or -1 when a value did not decode. */
static int print_row(pgev_result *res, int row)
{
    int64_t id, created_us;
    const char *name, *doc;
    uint8_t uid[16];
    int32_t due_days;
    char balance[32];
    unsigned char avatar[16];
    size_t len, avatar_len;
    pgev_array *tags;
    pgev_inet net;
    pgev_interval ttl;

    /* Columns by name; an unknown name gives -1, which every accessor refuses. */
    if (pgev_result_get_int64(res, row, pgev_result_column(res, "id"), &id) != PGEV_OK ||
        pgev_result_get_text(res, row, pgev_result_column(res, "name"), &name, NULL) != PGEV_OK ||
        pgev_result_get_uuid(res, row, pgev_result_column(res, "uid"), uid) != PGEV_OK ||
        pgev_result_get_timestamp(res, row, pgev_result_column(res, "created"),
                                  &created_us) != PGEV_OK ||
        pgev_result_get_date(res, row, pgev_result_column(res, "due"), &due_days) != PGEV_OK ||
        pgev_result_get_numeric(res, row, pgev_result_column(res, "balance"), balance,
                                sizeof balance, &len) != PGEV_OK ||
        pgev_result_get_bytea(res, row, pgev_result_column(res, "avatar"), avatar, sizeof avatar,
                              &avatar_len) != PGEV_OK ||
        pgev_result_get_json(res, row, pgev_result_column(res, "doc"), &doc, NULL) != PGEV_OK ||
        pgev_result_get_inet(res, row, pgev_result_column(res, "net"), &net) != PGEV_OK ||
        pgev_result_get_interval(res, row, pgev_result_column(res, "ttl"), &ttl) != PGEV_OK)
        return -1;

    printf("id=%" PRId64 " name=%s uid=%02x%02x... created=%" PRId64 "us due=day %" PRId32
           " balance=%s avatar=%zu bytes doc=%s net=%u.%u.%u.%u/%u ttl=%" PRId32 " months %" PRId32
           " days %" PRId64 "us\n",
           id, name, uid[0], uid[1], created_us, due_days, balance, avatar_len, doc, net.addr[0],
           net.addr[1], net.addr[2], net.addr[3], net.bits, ttl.months, ttl.days, ttl.usec);

    /* An array: its own allocation, freed by the caller. */
    if (pgev_result_get_array(res, row, pgev_result_column(res, "tags"), &tags) != PGEV_OK)
        return -1;
    for (size_t i = 0; i < pgev_array_count(tags); i++) {
        const char *tag;
        int rc = pgev_array_get_text(tags, i, &tag, NULL);
        printf("  tags[%zu] = %s\n", i, rc == PGEV_OK ? tag : rc == 1 ? "NULL" : "?");
    }
    pgev_array_free(tags);

    /* A record: its own allocation too; in binary format each field carries its type. */
    pgev_record *quota;
    if (pgev_result_get_record(res, row, pgev_result_column(res, "quota"), &quota) != PGEV_OK)
        return -1;
    for (size_t i = 0; i < pgev_record_count(quota); i++) {
        int64_t n;
        const char *s;
        if (pgev_record_is_null(quota, i) == 1)
            printf("  quota.%zu = NULL (type %u)\n", i, pgev_record_field_type(quota, i));
        else if (pgev_record_get_int64(quota, i, &n) == PGEV_OK)
            printf("  quota.%zu = %" PRId64 "\n", i, n);
        else if (pgev_record_get_text(quota, i, &s, NULL) == PGEV_OK)
            printf("  quota.%zu = '%s'\n", i, s);
    }
    pgev_record_free(quota);
    return 0;
}

static void on_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    int *exit_code = arg;
    if (pgev_result_status(res) != PGEV_OK) {
        fprintf(stderr, "query failed: %s\n", pgev_error_message(pgev_result_error(res)));
    } else {
        *exit_code = pgev_result_rows(res) == 3 ? 0 : 1;
        for (int row = 0; row < (int)pgev_result_rows(res); row++)
            if (print_row(res, row) < 0) {
                fprintf(stderr, "row %d: a value did not decode\n", row);
                *exit_code = 1;
            }
    }
    pgev_conn_close(conn);
}

int main(int argc, char **argv)
{
    const char *conninfo = argc > 1 ? argv[1] : "";
    int exit_code = 1;

    struct event_base *base = event_base_new();
    pgev_conn *conn = base ? pgev_conn_new(base, conninfo, NULL) : NULL;
    if (conn == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }

    /* WHERE g = ANY($1) with an int8[] parameter: no SQL built from strings. */
    static const int64_t ids[] = { 2, 3, 5, 42 };
    pgev_params params;
    pgev_params_init(&params);
    pgev_params_int8_array(&params, ids, NULL, sizeof ids / sizeof ids[0]);
    pgev_query_args args = { .sql = sql, .flags = PGEV_QUERY_BINARY, .on_done = on_rows,
                             .arg = &exit_code };
    int64_t query_id = -1;
    if (pgev_params_apply(&params, &args) == PGEV_OK)
        query_id = pgev_conn_submit(conn, &args);
    pgev_params_clear(&params); /* once the submit has returned: it copied what it needed */
    if (query_id < 0)
        fprintf(stderr, "cannot submit: %s\n", pgev_conn_errmsg(conn));
    else
        event_base_dispatch(base); /* returns when there is no more work */

    pgev_conn_free(conn);
    event_base_free(base);
    return exit_code;
}
