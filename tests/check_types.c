/*
 * Typed values: every accessor against values round-tripped through the
 * server in text and binary result formats (edge values, NULL, mismatched
 * types, overflow, bad indexes, stolen results), and binary parameters
 * built with pgev_params and checked by the server. Needs PGEV_TEST_DSN,
 * except the "encode" case.
 */
#include "testutil.h"
/* For the server-free hostile-input cases: a pgev_result around a made-up PGresult. */
#include "../lib/pgev-internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FMT(binary) ((binary) ? "binary" : "text")

static pgev_conn *conn;

static void open_conn(void)
{
    conn = tu_connect(NULL);
}

static void free_conn(void)
{
    pgev_conn_free(conn);
    conn = NULL;
}

static void run_ok(const char *sql)
{
    tu_query q = { 0 };
    ck_assert_int_gt(tu_query_sql(conn, sql, &q), 0);
    tu_wait_query(&q);
    ck_assert_msg(q.status == PGEV_OK, "\"%s\" failed: %s", sql, q.message);
}

/* ---- running checks inside the completion callback ---------------------- */

typedef void (*check_fn)(pgev_result *res, bool binary);
static check_fn current_check;

static void run_check_hook(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    if (pgev_result_status(res) != PGEV_OK)
        return; /* tu_assert_ok reports the message */
    PGresult *pg = pgev_result_pg(res);
    ck_assert_ptr_nonnull(pg);
    ck_assert_int_eq(PQfformat(pg, 0), q->index);
    current_check(res, q->index == 1);
    q->user = res; /* the checks ran */
}

/* Runs args (its flags' format bit set as asked) and fn on the result. */
static void run_check_args(pgev_query_args args, bool binary, check_fn fn)
{
    current_check = fn;
    args.flags = binary ? PGEV_QUERY_BINARY : 0;
    tu_query q = { .index = binary ? 1 : 0, .on_done_hook = run_check_hook };
    ck_assert_msg(tu_submit(conn, &args, &q, false) > 0, "submit: %s", pgev_conn_errmsg(conn));
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_msg(q.user != NULL, "%s: checks did not run", FMT(binary));
}

/* fn on the result of sql, in text and then in binary format. */
static void check_both(const char *sql, check_fn fn)
{
    pgev_query_args args = { .sql = sql };
    run_check_args(args, false, fn);
    run_check_args(args, true, fn);
}

/* ---- integers ----------------------------------------------------------- */

static void check_ints(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    int16_t i16 = 7;
    int32_t i32 = 7;
    int64_t i64 = 7;

    ck_assert_int_eq(pgev_result_get_int16(res, 0, 0, &i16), PGEV_OK);
    ck_assert_int_eq(i16, INT16_MAX);
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 1, &i16), PGEV_OK);
    ck_assert_int_eq(i16, INT16_MIN);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 2, &i32), PGEV_OK);
    ck_assert_int_eq(i32, INT32_MAX);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 3, &i32), PGEV_OK);
    ck_assert_int_eq(i32, INT32_MIN);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 4, &i64), PGEV_OK);
    ck_assert_msg(i64 == INT64_MAX, "%s: int8 max read as %lld", f, (long long)i64);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 5, &i64), PGEV_OK);
    ck_assert_msg(i64 == INT64_MIN, "%s: int8 min read as %lld", f, (long long)i64);
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 6, &i16), PGEV_OK);
    ck_assert_int_eq(i16, 0);
    /* Narrow reads of wider columns: fine when the value fits. */
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 7, &i16), PGEV_OK);
    ck_assert_int_eq(i16, -300);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 0, &i64), PGEV_OK);
    ck_assert_int_eq(i64, INT16_MAX);

    /* Overflow on decode is an error, and stores nothing. */
    i16 = 7;
    i32 = 7;
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 2, &i16), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 3, &i16), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 8, &i16), PGEV_EINVAL); /* 32768 */
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 4, &i32), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 5, &i32), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 9, &i32), PGEV_EINVAL); /* 2^31 */
    ck_assert_int_eq(i16, 7);
    ck_assert_int_eq(i32, 7);

    /* NULL. */
    i64 = 7;
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 10, &i16), 1);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 10, &i32), 1);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 10, &i64), 1);
    ck_assert_int_eq(i16, 7);
    ck_assert_int_eq(i64, 7);

    /* Wrong types: text that looks like a number, numeric, float, bool. */
    for (int col = 11; col <= 14; col++) {
        ck_assert_msg(pgev_result_get_int16(res, 0, col, &i16) == PGEV_EINVAL, "%s col %d", f, col);
        ck_assert_msg(pgev_result_get_int32(res, 0, col, &i32) == PGEV_EINVAL, "%s col %d", f, col);
        ck_assert_msg(pgev_result_get_int64(res, 0, col, &i64) == PGEV_EINVAL, "%s col %d", f, col);
    }
    ck_assert_int_eq(i64, 7);
}

START_TEST(integers)
{
    open_conn();
    check_both("SELECT 32767::int2, (-32768)::int2, 2147483647::int4, (-2147483648)::int4, "
               "9223372036854775807::int8, (-9223372036854775808)::int8, 0::int8, (-300)::int4, "
               "32768::int4, 2147483648::int8, NULL::int2, '5'::text, 5::numeric, 5::float8, "
               "true",
               check_ints);
    free_conn();
}
END_TEST

/* ---- floats ------------------------------------------------------------- */

static void check_floats(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    double d = 0;
    ck_assert_int_eq(pgev_result_get_double(res, 0, 0, &d), PGEV_OK);
    ck_assert_msg(d == 0.0 && signbit(d), "%s: -0.0 read as %g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 1, &d), PGEV_OK);
    ck_assert_msg(isnan(d), "%s: NaN read as %g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 2, &d), PGEV_OK);
    ck_assert_msg(isinf(d) && d > 0, "%s: Infinity read as %g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 3, &d), PGEV_OK);
    ck_assert_msg(isinf(d) && d < 0, "%s: float4 -Infinity read as %g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 4, &d), PGEV_OK);
    ck_assert_msg(d == 1.7976931348623157e308, "%s: DBL_MAX read as %.17g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 5, &d), PGEV_OK);
    ck_assert_msg(d == (double)3.4028235e38f, "%s: FLT_MAX read as %.17g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 6, &d), PGEV_OK);
    ck_assert_msg(d == 4.9406564584124654e-324, "%s: denormal min read as %.17g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 7, &d), PGEV_OK);
    ck_assert_msg(d == 0.1, "%s: 0.1 read as %.17g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 8, &d), PGEV_OK);
    ck_assert_msg(d == (double)0.1f, "%s: float4 0.1 read as %.17g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 9, &d), PGEV_OK);
    ck_assert_msg(isnan(d), "%s: float4 NaN read as %g", f, d);

    d = 42.0;
    ck_assert_int_eq(pgev_result_get_double(res, 0, 10, &d), 1);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 11, &d), PGEV_EINVAL); /* numeric */
    ck_assert_int_eq(pgev_result_get_double(res, 0, 12, &d), PGEV_EINVAL); /* bool */
    ck_assert_int_eq(pgev_result_get_double(res, 0, 13, &d), PGEV_EINVAL); /* text */
    ck_assert(d == 42.0);
}

START_TEST(floats)
{
    open_conn();
    check_both("SELECT '-0'::float8, 'NaN'::float8, 'Infinity'::float8, '-Infinity'::float4, "
               "1.7976931348623157e308::float8, 3.4028235e38::float4, 4.9406564584124654e-324::float8, "
               "0.1::float8, 0.1::float4, 'NaN'::float4, NULL::float8, 1.5::numeric, true, "
               "'1.5'::text",
               check_floats);
    free_conn();
}
END_TEST

/* ---- bool, text --------------------------------------------------------- */

static void check_bool_text(pgev_result *res, bool binary)
{
    bool b = false;
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 0, &b), PGEV_OK);
    ck_assert(b);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 1, &b), PGEV_OK);
    ck_assert(!b);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 2, &b), 1);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 3, &b), PGEV_EINVAL); /* text 't' */
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 4, &b), PGEV_EINVAL); /* int 1 */
    ck_assert(!b);

    const char *t = NULL;
    size_t len = 0;
    ck_assert_int_eq(pgev_result_get_text(res, 0, 3, &t, &len), PGEV_OK);
    ck_assert_uint_eq(len, 1);
    ck_assert_str_eq(t, "t");
    ck_assert_int_eq(pgev_result_get_text(res, 0, 5, &t, &len), PGEV_OK);
    ck_assert_uint_eq(len, strlen("h\xc3\xa9llo w\xc3\xb6rld"));
    ck_assert_str_eq(t, "h\xc3\xa9llo w\xc3\xb6rld");
    ck_assert_int_eq(pgev_result_get_text(res, 0, 6, &t, &len), PGEV_OK);
    ck_assert_uint_eq(len, 0);
    t = "untouched";
    ck_assert_int_eq(pgev_result_get_text(res, 0, 7, &t, &len), 1);
    ck_assert_str_eq(t, "untouched");
    /* A binary int is not text; in text format everything is. */
    ck_assert_int_eq(pgev_result_get_text(res, 0, 4, &t, &len), binary ? PGEV_EINVAL : PGEV_OK);
}

START_TEST(bool_and_text)
{
    open_conn();
    check_both("SELECT true, false, NULL::bool, 't'::text, 1::int4, "
               "'h\xc3\xa9llo w\xc3\xb6rld'::varchar, ''::text, NULL::text",
               check_bool_text);
    free_conn();
}
END_TEST

/* ---- bytea -------------------------------------------------------------- */

static void check_bytea(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    unsigned char buf[4096];
    size_t len = 99;

    /* Empty. */
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 0, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_uint_eq(len, 0);
    len = 99;
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 0, NULL, 0, &len), PGEV_OK);
    ck_assert_uint_eq(len, 0);

    /* NUL bytes, high bytes, backslash, quote. */
    static const unsigned char expect[] = { 0x00, 0xff, 0x00, 0x01, 0x5c, 0x27, 0x80, 0x41, 0x00 };
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 1, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_msg(len == sizeof expect, "%s: %zu bytes", f, len);
    ck_assert(memcmp(buf, expect, sizeof expect) == 0);

    /* Too small: the size needed, and EINVAL. */
    len = 0;
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 1, buf, 3, &len), PGEV_EINVAL);
    ck_assert_uint_eq(len, sizeof expect);
    len = 0;
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 2, NULL, 0, &len), PGEV_EINVAL);
    ck_assert_uint_eq(len, 3000);
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 2, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_uint_eq(len, 3000);
    for (size_t i = 0; i < len; i++)
        TU_CHECK(buf[i] == (unsigned char)(i % 3 == 0 ? 0xab : i % 3 == 1 ? 0x00 : 0xcd),
                 "%s: byte %zu is %02x", f, i, buf[i]);
    /* Exactly enough room. */
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 1, buf, sizeof expect, &len), PGEV_OK);

    /* NULL; wrong types; NULL buffer with room claimed; no len. */
    len = 77;
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 3, buf, sizeof buf, &len), 1);
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 4, buf, sizeof buf, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 5, buf, sizeof buf, &len), PGEV_EINVAL);
    ck_assert_uint_eq(len, 77);
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 1, NULL, 10, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 1, buf, sizeof buf, NULL), PGEV_EINVAL);
}

#define BYTEA_SQL                                                                              \
    "SELECT ''::bytea, '\\x00ff00015c27804100'::bytea, "                                       \
    "decode(repeat('ab00cd', 1000), 'hex'), NULL::bytea, '\\x00'::text, 1::int4"

START_TEST(bytea_hex)
{
    open_conn();
    check_both(BYTEA_SQL, check_bytea);
    free_conn();
}
END_TEST

START_TEST(bytea_escape_output)
{
    open_conn();
    run_ok("SET bytea_output = escape");
    check_both(BYTEA_SQL, check_bytea);
    free_conn();
}
END_TEST

/* ---- uuid --------------------------------------------------------------- */

static void check_uuid(pgev_result *res, bool binary)
{
    static const uint8_t expect[16] = { 0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
                                        0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11 };
    uint8_t u[16];
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 0, u), PGEV_OK);
    ck_assert(memcmp(u, expect, 16) == 0);
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 1, u), PGEV_OK); /* given in upper case */
    ck_assert(memcmp(u, expect, 16) == 0);
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 2, u), PGEV_OK);
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(u[i], 0);
    memset(u, 0x55, sizeof u);
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 3, u), 1);
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 4, u), PGEV_EINVAL); /* text */
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 5, u), PGEV_EINVAL); /* bytea of 16 */
    ck_assert_int_eq(u[0], 0x55);
    if (!binary) {
        const char *t;
        ck_assert_int_eq(pgev_result_get_text(res, 0, 1, &t, NULL), PGEV_OK);
        ck_assert_str_eq(t, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"); /* canonical: lower case */
    }
}

START_TEST(uuids)
{
    open_conn();
    check_both("SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, "
               "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid, "
               "'00000000-0000-0000-0000-000000000000'::uuid, NULL::uuid, "
               "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::text, "
               "decode('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'hex')",
               check_uuid);
    free_conn();
}
END_TEST

/* ---- numeric ------------------------------------------------------------ */

/* Column 0 is the numeric, column 1 the server's own text for it. */
static void check_numeric_rows(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    PGresult *pg = pgev_result_pg(res);
    ck_assert_int_gt(PQntuples(pg), 10);
    static char buf[140000];
    for (int row = 0; row < PQntuples(pg); row++) {
        const char *expect;
        size_t expect_len;
        ck_assert_int_eq(pgev_result_get_text(res, row, 1, &expect, &expect_len), PGEV_OK);
        size_t len = 0;
        int rc = pgev_result_get_numeric(res, row, 0, buf, sizeof buf, &len);
        TU_CHECK(rc == PGEV_OK, "%s row %d (%s): rc %d", f, row, expect, rc);
        TU_CHECK(len == expect_len && strcmp(buf, expect) == 0,
                 "%s row %d: \"%s\", the server says \"%s\"", f, row, buf, expect);
        /* Too small by one (the NUL): EINVAL and the length. */
        len = 0;
        rc = pgev_result_get_numeric(res, row, 0, buf, expect_len, &len);
        TU_CHECK(rc == PGEV_EINVAL && len == expect_len, "%s row %d: short buffer rc %d len %zu",
                 f, row, rc, len);
        /* A numeric is never an int or a double. */
        int64_t i64;
        double d;
        TU_CHECK(pgev_result_get_int64(res, row, 0, &i64) == PGEV_EINVAL, "%s row %d", f, row);
        TU_CHECK(pgev_result_get_double(res, row, 0, &d) == PGEV_EINVAL, "%s row %d", f, row);
    }
}

START_TEST(numerics)
{
    open_conn();
    check_both("SELECT v, v::text FROM (VALUES (0::numeric), (0.000), (-0.5), (1), (-1), "
               "(10000), (100000000), (9999), (0.0001), (0.00001), (1.10), (-99999999.99999999), "
               "(123456789012345678901234567890.123456789), (1e-30), (-1.5e-100), (12345.678), "
               "(1::numeric / 3), (round(2::numeric / 3, 600)), (power(10::numeric, 1000)), "
               "(-power(10::numeric, 130) - 0.5), (1e131071), (1e-16383), ('NaN'), ('Infinity'), "
               "('-Infinity'), (0.1234567890123456789012345678901234567890)) t(v)",
               check_numeric_rows);
    free_conn();
}
END_TEST

static void check_numeric_misc(pgev_result *res, bool binary)
{
    (void)binary;
    char buf[64];
    size_t len = 5;
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 0, buf, sizeof buf, &len), 1);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 1, buf, sizeof buf, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 2, buf, sizeof buf, &len), PGEV_EINVAL);
    ck_assert_uint_eq(len, 5);
    /* Size query with no buffer. */
    len = 0;
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 3, NULL, 0, &len), PGEV_EINVAL);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 3, buf, 6, &len), PGEV_OK);
    ck_assert_str_eq(buf, "-2.50");
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 3, buf, sizeof buf, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 3, NULL, 10, &len), PGEV_EINVAL);
}

START_TEST(numeric_unhappy)
{
    open_conn();
    check_both("SELECT NULL::numeric, 5::int8, '5'::text, (-2.50)::numeric(10,2)", check_numeric_misc);
    free_conn();
}
END_TEST

/* ---- dates -------------------------------------------------------------- */

/* Column 0 is the date, column 1 the server's day count since 1970. */
static void check_date_rows(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    PGresult *pg = pgev_result_pg(res);
    for (int row = 0; row < PQntuples(pg); row++) {
        int32_t expect, days = 0;
        ck_assert_int_eq(pgev_result_get_int32(res, row, 1, &expect), PGEV_OK);
        int rc = pgev_result_get_date(res, row, 0, &days);
        TU_CHECK(rc == PGEV_OK && days == expect, "%s row %d: rc %d, %d days, the server says %d",
                 f, row, rc, days, expect);
    }
}

#define DATES_SQL                                                                              \
    "SELECT d, d - '1970-01-01'::date FROM (VALUES ('1970-01-01'::date), ('2000-01-01'), "     \
    "('1969-12-31'), ('1900-02-28'), ('1900-03-01'), ('2000-02-29'), ('1600-02-29'), "         \
    "('0001-01-01'), ('0001-12-31 BC'), ('0044-03-15 BC'), ('4714-11-24 BC'), "                \
    "('9999-12-31'), ('10000-01-01'), ('5874897-12-31'), ('2024-02-29')) t(d)"

START_TEST(dates)
{
    open_conn();
    check_both(DATES_SQL, check_date_rows);
    /* The field order of the DateStyle does not change ISO output. */
    run_ok("SET DateStyle = 'ISO, DMY'");
    check_both(DATES_SQL, check_date_rows);
    free_conn();
}
END_TEST

static void check_date_misc(pgev_result *res, bool binary)
{
    (void)binary;
    int32_t days = 5;
    ck_assert_int_eq(pgev_result_get_date(res, 0, 0, &days), PGEV_OK);
    ck_assert_int_eq(days, INT32_MAX);
    ck_assert_int_eq(pgev_result_get_date(res, 0, 1, &days), PGEV_OK);
    ck_assert_int_eq(days, INT32_MIN);
    ck_assert_int_eq(pgev_result_get_date(res, 0, 2, &days), PGEV_OK);
    ck_assert_int_eq(days, 0);
    days = 5;
    ck_assert_int_eq(pgev_result_get_date(res, 0, 3, &days), 1);
    ck_assert_int_eq(pgev_result_get_date(res, 0, 4, &days), PGEV_EINVAL); /* timestamp */
    ck_assert_int_eq(pgev_result_get_date(res, 0, 5, &days), PGEV_EINVAL); /* text */
    ck_assert_int_eq(pgev_result_get_date(res, 0, 6, &days), PGEV_EINVAL); /* int4 */
    ck_assert_int_eq(days, 5);
    int64_t usec;
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 2, &usec), PGEV_EINVAL); /* a date */
}

START_TEST(date_unhappy)
{
    open_conn();
    check_both("SELECT 'infinity'::date, '-infinity'::date, '1970-01-01'::date, NULL::date, "
               "'1970-01-01'::timestamp, '1970-01-01'::text, 0::int4",
               check_date_misc);
    free_conn();
}
END_TEST

/* ---- timestamps --------------------------------------------------------- */

/* Column 0 is the timestamp, column 1 the server's microseconds since 1970. */
static void check_timestamp_rows(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    PGresult *pg = pgev_result_pg(res);
    for (int row = 0; row < PQntuples(pg); row++) {
        int64_t expect, usec = 0;
        ck_assert_int_eq(pgev_result_get_int64(res, row, 1, &expect), PGEV_OK);
        int rc = pgev_result_get_timestamp(res, row, 0, &usec);
        const char *text = binary ? "" : PQgetvalue(pg, row, 0);
        TU_CHECK(rc == PGEV_OK && usec == expect,
                 "%s row %d \"%s\": rc %d, %lld us, the server says %lld", f, row, text, rc,
                 (long long)usec, (long long)expect);
    }
}

#define TIMES_VALUES                                                                           \
    "('1970-01-01 00:00:00'), ('2000-01-01 00:00:00'), ('1969-12-31 23:59:59.999999'), "       \
    "('1900-01-01 12:34:56.789'), ('1883-11-18 11:59:59'), ('0044-03-15 12:00:00 BC'), "       \
    "('4713-01-01 00:00:00 BC'), ('2038-01-19 03:14:08.5'), ('9999-12-31 23:59:59.000001'), "  \
    "('12345-06-07 08:09:10'), ('294246-01-01 00:00:00'), ('2024-07-01 12:00:00.1'), "        \
    "('1937-07-01 00:00:00')"

START_TEST(timestamps)
{
    open_conn();
    check_both("SELECT t, (extract(epoch FROM t) * 1000000)::int8 FROM (VALUES " TIMES_VALUES
               ") v(s), LATERAL (SELECT s::timestamp AS t) x",
               check_timestamp_rows);
    free_conn();
}
END_TEST

/* timestamptz text carries the session's offset, sometimes with seconds
 * (local mean time before standard zones): every zone, the same instants. */
START_TEST(timestamptz_zones)
{
    static const char *const zones[] = { "UTC", "Asia/Kolkata", "America/St_Johns",
                                         "Europe/Amsterdam", "Pacific/Kiritimati",
                                         "America/Los_Angeles", "Africa/Monrovia" };
    open_conn();
    for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "SET TimeZone = '%s'", zones[i]);
        run_ok(sql);
        check_both("SELECT t, (extract(epoch FROM t) * 1000000)::int8 FROM (VALUES " TIMES_VALUES
                   ") v(s), LATERAL (SELECT s::timestamp AT TIME ZONE 'UTC' AS t) x",
                   check_timestamp_rows);
    }
    free_conn();
}
END_TEST

static void check_timestamp_misc(pgev_result *res, bool binary)
{
    int64_t usec = 5;
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 0, &usec), PGEV_OK);
    ck_assert(usec == INT64_MAX);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 1, &usec), PGEV_OK);
    ck_assert(usec == INT64_MIN);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 2, &usec), PGEV_OK);
    ck_assert(usec == INT64_MAX);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 3, &usec), PGEV_OK);
    ck_assert(usec == INT64_MIN);
    usec = 5;
    /* Valid for the server, beyond int64 microseconds since 1970: overflow. */
    ck_assert_msg(pgev_result_get_timestamp(res, 0, 4, &usec) == PGEV_EINVAL, "%s", FMT(binary));
    ck_assert_msg(pgev_result_get_timestamp(res, 0, 5, &usec) == PGEV_EINVAL, "%s", FMT(binary));
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 6, &usec), 1);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 7, &usec), PGEV_EINVAL); /* date */
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 8, &usec), PGEV_EINVAL); /* text */
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 9, &usec), PGEV_EINVAL); /* int8 */
    ck_assert(usec == 5);
    /* The largest that fits; one microsecond more would be INT64_MAX, the
     * value kept for 'infinity'. */
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 10, &usec), PGEV_OK);
    ck_assert(usec == INT64_MAX - 1);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 11, &usec), PGEV_EINVAL);
    ck_assert(usec == INT64_MAX - 1);
}

START_TEST(timestamp_unhappy)
{
    open_conn();
    check_both("SELECT 'infinity'::timestamp, '-infinity'::timestamp, 'infinity'::timestamptz, "
               "'-infinity'::timestamptz, '294270-01-01'::timestamp, "
               "'294276-12-31 23:59:59.999999+00'::timestamptz, NULL::timestamptz, "
               "'2000-01-01'::date, '2000-01-01 00:00:00'::text, 0::int8, "
               "'294247-01-10 04:00:54.775806'::timestamp, '294247-01-10 04:00:54.775807+00'::timestamptz",
               check_timestamp_misc);
    free_conn();
}
END_TEST

/* Non-ISO DateStyles are refused in text format (binary does not care). */
static void check_non_iso(pgev_result *res, bool binary)
{
    int64_t usec = 5;
    int32_t days = 5;
    int expect = binary ? PGEV_OK : PGEV_EINVAL;
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 0, &usec), expect);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 1, &usec), expect);
    ck_assert_int_eq(pgev_result_get_date(res, 0, 2, &days), expect);
    if (binary) {
        ck_assert(usec == INT64_C(1719835200000000));
        ck_assert_int_eq(days, 19905);
    } else {
        ck_assert(usec == 5);
        ck_assert_int_eq(days, 5);
    }
}

START_TEST(non_iso_datestyle)
{
    static const char *const styles[] = { "SQL, DMY", "SQL, MDY", "Postgres, MDY", "German" };
    open_conn();
    run_ok("SET TimeZone = 'Europe/Berlin'");
    for (size_t i = 0; i < sizeof styles / sizeof styles[0]; i++) {
        char sql[80];
        snprintf(sql, sizeof sql, "SET DateStyle = '%s'", styles[i]);
        run_ok(sql);
        check_both("SELECT '2024-07-01 12:00:00'::timestamp, '2024-07-01 14:00:00'::timestamptz, "
                   "'2024-07-01'::date",
                   check_non_iso);
    }
    free_conn();
}
END_TEST

/* ---- bad indexes, stolen results, error results -------------------------- */

static void check_indexes(pgev_result *res, bool binary)
{
    (void)binary;
    static const int bad[][2] = { { 1, 0 }, { -1, 0 }, { 0, 1 }, { 0, -1 }, { 1000, 1000 } };
    char buf[64];
    size_t len = 9;
    int16_t i16 = 9;
    int32_t days = 9;
    int64_t usec = 9;
    uint8_t u[16] = { 9 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int row = bad[i][0], col = bad[i][1];
        ck_assert_int_eq(pgev_result_get_int16(res, row, col, &i16), PGEV_EINVAL);
        ck_assert_int_eq(pgev_result_get_bytea(res, row, col, buf, sizeof buf, &len), PGEV_EINVAL);
        ck_assert_int_eq(pgev_result_get_numeric(res, row, col, buf, sizeof buf, &len), PGEV_EINVAL);
        ck_assert_int_eq(pgev_result_get_uuid(res, row, col, u), PGEV_EINVAL);
        ck_assert_int_eq(pgev_result_get_date(res, row, col, &days), PGEV_EINVAL);
        ck_assert_int_eq(pgev_result_get_timestamp(res, row, col, &usec), PGEV_EINVAL);
    }
    /* NULL output pointers. */
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 0, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 0, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_date(res, 0, 0, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 0, NULL), PGEV_EINVAL);
    ck_assert_int_eq(i16, 9);
    ck_assert_int_eq(days, 9);
    ck_assert(usec == 9);
    ck_assert_uint_eq(len, 9);
    ck_assert_int_eq(u[0], 9);
}

START_TEST(bad_indexes)
{
    open_conn();
    check_both("SELECT 1::int2", check_indexes);
    free_conn();
}
END_TEST

static void check_stolen(pgev_result *res, bool binary)
{
    (void)binary;
    PGresult *pg = pgev_result_steal(res);
    ck_assert_ptr_nonnull(pg);
    char buf[64];
    size_t len = 9;
    int16_t i16 = 9;
    int32_t days = 9;
    int64_t usec = 9;
    uint8_t u[16] = { 9 };
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 0, &i16), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 1, buf, sizeof buf, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 2, buf, sizeof buf, &len), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 3, u), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_date(res, 0, 4, &days), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 5, &usec), PGEV_EINVAL);
    ck_assert_int_eq(i16, 9);
    ck_assert_uint_eq(len, 9);
    PQclear(pg);
}

START_TEST(stolen_result)
{
    open_conn();
    check_both("SELECT 1::int2, '\\x00'::bytea, 1::numeric, gen_random_uuid(), current_date, now()",
               check_stolen);
    free_conn();
}
END_TEST

static void check_error_result(pgev_conn *c, pgev_result *res, tu_query *q)
{
    (void)c;
    int64_t usec = 9;
    char buf[8];
    size_t len = 9;
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 0, &usec), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 0, buf, sizeof buf, &len), PGEV_EINVAL);
    ck_assert(usec == 9);
    q->user = res;
}

START_TEST(error_result)
{
    open_conn();
    tu_query q = { .on_done_hook = check_error_result };
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1/0", &q), 0);
    tu_wait_query(&q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_ptr_nonnull(q.user);
    free_conn();
}
END_TEST

/* ---- parameters --------------------------------------------------------- */

static const uint8_t test_uuid[16] = { 0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
                                       0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11 };
static const char test_bytes[] = { 'a', 0, 'b', '\\', (char)0xff, 0 };

/* Server-free: what pgev_params_apply() puts in the args. */
START_TEST(params_encoding)
{
    pgev_params p;
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_int8(&p, INT64_MIN + 1), PGEV_OK);
    ck_assert_int_eq(pgev_params_int2(&p, -2), PGEV_OK);
    ck_assert_int_eq(pgev_params_float8(&p, -0.0), PGEV_OK);
    ck_assert_int_eq(pgev_params_text(&p, "hi"), PGEV_OK);
    ck_assert_int_eq(pgev_params_null(&p, 0), PGEV_OK);
    ck_assert_int_eq(pgev_params_bytea(&p, "", 0), PGEV_OK);
    ck_assert_int_eq(pgev_params_date(&p, 0), PGEV_OK);
    ck_assert_int_eq(pgev_params_count(&p), 7);

    /* A copy made before apply still points at its own storage. */
    pgev_params copy = p;
    memset(&p, 0xee, sizeof p);
    pgev_query_args args = { .sql = "x" };
    ck_assert_int_eq(pgev_params_apply(&copy, &args), PGEV_OK);
    ck_assert_int_eq(args.nparams, 7);
    ck_assert_str_eq(args.sql, "x");
    static const unsigned char int8_be[] = { 0x80, 0, 0, 0, 0, 0, 0, 1 };
    ck_assert_int_eq(args.param_types[0], 20);
    ck_assert_int_eq(args.param_formats[0], 1);
    ck_assert_int_eq(args.param_lengths[0], 8);
    ck_assert(memcmp(args.param_values[0], int8_be, 8) == 0);
    ck_assert(memcmp(args.param_values[1], "\xff\xfe", 2) == 0);
    ck_assert(memcmp(args.param_values[2], "\x80\0\0\0\0\0\0\0", 8) == 0);
    ck_assert_int_eq(args.param_types[3], 0);
    ck_assert_int_eq(args.param_formats[3], 0);
    ck_assert_str_eq(args.param_values[3], "hi");
    ck_assert_ptr_null(args.param_values[4]);
    ck_assert_ptr_nonnull(args.param_values[5]); /* empty, not NULL */
    ck_assert_int_eq(args.param_lengths[5], 0);
    ck_assert(memcmp(args.param_values[6], "\xff\xff\xd5\x33", 4) == 0); /* -10957 */
}
END_TEST

START_TEST(params_unhappy)
{
    pgev_params p;
    pgev_query_args args = { 0 };

    /* Full: the 33rd fails, and so does apply. */
    pgev_params_init(&p);
    for (int i = 0; i < PGEV_PARAMS_MAX; i++)
        ck_assert_int_eq(pgev_params_int4(&p, i), PGEV_OK);
    ck_assert_int_eq(pgev_params_int4(&p, 99), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_count(&p), PGEV_PARAMS_MAX);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    ck_assert_int_eq(args.nparams, 0);
    ck_assert_ptr_null(args.param_values);

    /* Sticky: one bad value fails the list, later good ones do not clear it. */
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_bytea(&p, NULL, 5), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_int4(&p, 1), PGEV_OK);
    ck_assert_int_eq(pgev_params_count(&p), 1);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_bytea(&p, "x", (size_t)INT32_MAX + 1), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_uuid(&p, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    /* A finite time that would become the server's -infinity, or overflow. */
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_timestamp(&p, INT64_MIN + 1), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_date(&p, INT32_MIN + 1), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);

    /* NULLs. */
    pgev_params_init(NULL);
    ck_assert_int_eq(pgev_params_count(NULL), 0);
    ck_assert_int_eq(pgev_params_int8(NULL, 1), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_text(NULL, "x"), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(NULL, &args), PGEV_EINVAL);
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_apply(&p, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    ck_assert_int_eq(args.nparams, 0);
}
END_TEST

/* Fills p with one value of each kind; the SQL below checks each on the server. */
static void fill_params(pgev_params *p)
{
    pgev_params_init(p);
    pgev_params_int8(p, INT64_MAX);                          /* $1 */
    pgev_params_int8(p, INT64_MIN);                          /* $2 */
    pgev_params_int4(p, INT32_MIN);                          /* $3 */
    pgev_params_int2(p, INT16_MAX);                          /* $4 */
    pgev_params_float8(p, -0.0);                             /* $5 */
    pgev_params_float8(p, NAN);                              /* $6 */
    pgev_params_float4(p, -INFINITY);                        /* $7 */
    pgev_params_float8(p, 0.1);                              /* $8 */
    pgev_params_bool(p, true);                               /* $9 */
    pgev_params_text(p, "h\xc3\xa9llo");                     /* $10 */
    pgev_params_numeric(p, "-123456789012345678901234567890.000000000000000000001"); /* $11 */
    pgev_params_bytea(p, test_bytes, sizeof test_bytes);     /* $12 */
    pgev_params_bytea(p, NULL, 0);                           /* $13 */
    pgev_params_uuid(p, test_uuid);                          /* $14 */
    pgev_params_date(p, -25567);                             /* $15: 1900-01-01 */
    pgev_params_date(p, INT32_MAX);                          /* $16 */
    pgev_params_timestamp(p, INT64_C(-2208988800000000) + 1); /* $17 */
    pgev_params_timestamptz(p, INT64_C(1719835200123456));   /* $18 */
    pgev_params_timestamptz(p, INT64_MIN);                   /* $19 */
    pgev_params_null(p, 20);                                 /* $20 */
    pgev_params_numeric(p, "NaN");                           /* $21 */
    ck_assert_int_eq(pgev_params_count(p), 21);
}

#define PARAMS_CHECK_SQL                                                                       \
    "SELECT $1 = 9223372036854775807, $2 = -9223372036854775808, $3 = -2147483648, "          \
    "$4 = 32767, $5 = 0 AND $5::text = '-0', $6::text = 'NaN', $7 = '-Infinity', "            \
    "$8 = 0.1::float8, $9, $10::text::bytea = '\\x68c3a96c6c6f'::bytea, "                       \
    "$11 = -123456789012345678901234567890.000000000000000000001, "                            \
    "$12 = '\\x6100625cff00'::bytea, $13 = ''::bytea AND $13 IS NOT NULL, "                    \
    "$14 = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', $15 = '1900-01-01', $16 = 'infinity', "     \
    "$17 = '1900-01-01 00:00:00.000001', $18 = '2024-07-01 12:00:00.123456+00', "              \
    "$19 = '-infinity', $20 IS NULL, $21 = 'NaN'"

static void check_all_true(pgev_result *res, bool binary)
{
    PGresult *pg = pgev_result_pg(res);
    for (int col = 0; col < PQnfields(pg); col++) {
        bool b = false;
        int rc = pgev_result_get_bool(res, 0, col, &b);
        TU_CHECK(rc == PGEV_OK && b, "%s: $%d did not reach the server intact (rc %d)",
                 FMT(binary), col + 1, rc);
    }
}

START_TEST(params_decoded_by_server)
{
    open_conn();
    run_ok("SET TimeZone = 'Asia/Kolkata'");
    pgev_params p;
    fill_params(&p);
    pgev_query_args args = { .sql = PARAMS_CHECK_SQL };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, false, check_all_true);
    run_check_args(args, true, check_all_true);
    /* The example from the documentation. */
    pgev_params_init(&p);
    pgev_params_int8(&p, INT64_MAX);
    args = (pgev_query_args){ .sql = "SELECT $1::int8 = 9223372036854775807" };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, true, check_all_true);
    free_conn();
}
END_TEST

/* The same parameters read back through the accessors. */
static void check_roundtrip(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    int64_t i64;
    int32_t i32;
    int16_t i16;
    double d;
    bool b;
    const char *t;
    char buf[128];
    size_t len;
    uint8_t u[16];
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 0, &i64), PGEV_OK);
    ck_assert(i64 == INT64_MAX);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 1, &i64), PGEV_OK);
    ck_assert(i64 == INT64_MIN);
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 2, &i32), PGEV_OK);
    ck_assert_int_eq(i32, INT32_MIN);
    ck_assert_int_eq(pgev_result_get_int16(res, 0, 3, &i16), PGEV_OK);
    ck_assert_int_eq(i16, INT16_MAX);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 4, &d), PGEV_OK);
    ck_assert_msg(d == 0 && signbit(d), "%s: -0.0 came back as %g", f, d);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 5, &d), PGEV_OK);
    ck_assert(isnan(d));
    ck_assert_int_eq(pgev_result_get_double(res, 0, 6, &d), PGEV_OK);
    ck_assert(isinf(d) && d < 0);
    ck_assert_int_eq(pgev_result_get_double(res, 0, 7, &d), PGEV_OK);
    ck_assert(d == 0.1);
    ck_assert_int_eq(pgev_result_get_bool(res, 0, 8, &b), PGEV_OK);
    ck_assert(b);
    ck_assert_int_eq(pgev_result_get_text(res, 0, 9, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "h\xc3\xa9llo");
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 10, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_str_eq(buf, "-123456789012345678901234567890.000000000000000000001");
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 11, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_uint_eq(len, sizeof test_bytes);
    ck_assert(memcmp(buf, test_bytes, len) == 0);
    ck_assert_int_eq(pgev_result_get_bytea(res, 0, 12, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(pgev_result_get_uuid(res, 0, 13, u), PGEV_OK);
    ck_assert(memcmp(u, test_uuid, 16) == 0);
    ck_assert_int_eq(pgev_result_get_date(res, 0, 14, &i32), PGEV_OK);
    ck_assert_int_eq(i32, -25567);
    ck_assert_int_eq(pgev_result_get_date(res, 0, 15, &i32), PGEV_OK);
    ck_assert_int_eq(i32, INT32_MAX);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 16, &i64), PGEV_OK);
    ck_assert(i64 == INT64_C(-2208988800000000) + 1);
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 17, &i64), PGEV_OK);
    ck_assert(i64 == INT64_C(1719835200123456));
    ck_assert_int_eq(pgev_result_get_timestamp(res, 0, 18, &i64), PGEV_OK);
    ck_assert(i64 == INT64_MIN);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 19, &i64), 1);
    ck_assert_int_eq(pgev_result_get_numeric(res, 0, 20, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_str_eq(buf, "NaN");
}

START_TEST(params_round_trip)
{
    open_conn();
    run_ok("SET TimeZone = 'America/St_Johns'");
    pgev_params p;
    fill_params(&p);
    pgev_query_args args = { .sql = "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                                    "$13, $14, $15, $16, $17, $18, $19, $20, $21" };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, false, check_roundtrip);
    run_check_args(args, true, check_roundtrip);
    free_conn();
}
END_TEST

static void check_int8_plus_one(pgev_result *res, bool binary)
{
    (void)binary;
    int32_t v = 0;
    int64_t wide = 0;
    ck_assert_int_eq(pgev_result_get_int32(res, 0, 0, &v), PGEV_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 0, &wide), PGEV_OK);
    ck_assert(wide == 2);
}

/* Values pgev can encode but the server refuses: a server error, cleanly. */
START_TEST(params_rejected_by_server)
{
    open_conn();
    pgev_params p;
    pgev_params_init(&p);
    pgev_params_timestamp(&p, INT64_C(-300000000000000000)); /* about 7500 BC */
    pgev_query_args args = { .sql = "SELECT $1" };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "22008"); /* datetime_field_overflow */

    pgev_params_init(&p);
    pgev_params_date(&p, INT32_MAX - 1);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    tu_query q1 = { 0 };
    ck_assert_int_gt(tu_submit(conn, &args, &q1, false), 0);
    tu_wait_query(&q1);
    ck_assert_int_eq(q1.status, PGEV_ESERVER);
    ck_assert_str_eq(q1.sqlstate, "22008");

    pgev_params_init(&p);
    pgev_params_numeric(&p, "12abc");
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    tu_query q2 = { 0 };
    ck_assert_int_gt(tu_submit(conn, &args, &q2, false), 0);
    tu_wait_query(&q2);
    ck_assert_int_eq(q2.status, PGEV_ESERVER);
    ck_assert_str_eq(q2.sqlstate, "22P02"); /* invalid_text_representation */

    /* An int8 parameter cast to int4 in the query: converted by the server. */
    pgev_params_init(&p);
    pgev_params_int8(&p, 1);
    args.sql = "SELECT $1::int4 + 1";
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, true, check_int8_plus_one);
    free_conn();
}
END_TEST

/* ---- arrays ------------------------------------------------------------- */

#define USEC INT64_C(1000000)

/* Decodes column col as an array of count elements (asserting both). */
static pgev_array *get_array(pgev_result *res, int col, size_t count, bool binary)
{
    pgev_array *a = NULL;
    int rc = pgev_result_get_array(res, 0, col, &a);
    ck_assert_msg(rc == PGEV_OK, "%s: column %d: pgev_result_get_array returned %d", FMT(binary),
                  col, rc);
    ck_assert_ptr_nonnull(a);
    ck_assert_msg(pgev_array_count(a) == count, "%s: column %d has %zu elements, not %zu",
                  FMT(binary), col, pgev_array_count(a), count);
    return a;
}

static void check_arrays(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    int16_t i16;
    int32_t i32;
    int64_t i64;
    double d;
    bool b;
    const char *t;
    size_t len;
    char buf[64];

    /* int2[]: values, a NULL element, and overflow checks per element. */
    pgev_array *a = get_array(res, 0, 3, binary);
    ck_assert_int_eq(pgev_array_elem_type(a), 21);
    ck_assert_int_eq(pgev_array_get_int16(a, 0, &i16), PGEV_OK);
    ck_assert_int_eq(i16, 1);
    i16 = 7;
    ck_assert_int_eq(pgev_array_is_null(a, 1), 1);
    ck_assert_int_eq(pgev_array_is_null(a, 0), 0);
    ck_assert_int_eq(pgev_array_get_int16(a, 1, &i16), 1);
    ck_assert_int_eq(i16, 7);
    ck_assert_int_eq(pgev_array_get_int64(a, 2, &i64), PGEV_OK);
    ck_assert(i64 == INT16_MIN);
    ck_assert_int_eq(pgev_array_get_int16(a, 3, &i16), PGEV_EINVAL); /* no element 3 */
    ck_assert_int_eq(pgev_array_is_null(a, 3), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_int16(a, 0, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_bool(a, 0, &b), PGEV_EINVAL); /* type mismatch */
    pgev_array_free(a);

    a = get_array(res, 1, 2, binary);
    ck_assert_int_eq(pgev_array_get_int32(a, 0, &i32), PGEV_OK);
    ck_assert_int_eq(i32, INT32_MAX);
    i16 = 7;
    ck_assert_int_eq(pgev_array_get_int16(a, 0, &i16), PGEV_EINVAL); /* overflow */
    ck_assert_int_eq(i16, 7);
    ck_assert_int_eq(pgev_array_get_int32(a, 1, &i32), 1);
    pgev_array_free(a);

    a = get_array(res, 2, 2, binary);
    ck_assert_int_eq(pgev_array_get_int64(a, 0, &i64), PGEV_OK);
    ck_assert(i64 == INT64_MIN);
    ck_assert_int_eq(pgev_array_get_int32(a, 0, &i32), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_int64(a, 1, &i64), PGEV_OK);
    ck_assert(i64 == 0);
    pgev_array_free(a);

    /* text[]: NULL against the string "NULL", quoting and escapes. */
    static const char *const texts[] = { "a", NULL, "NULL", "with \"quote\" and \\ backslash",
                                         "", "sp ace", "{braces},", "null" };
    a = get_array(res, 3, 8, binary);
    for (size_t i = 0; i < 8; i++) {
        t = NULL;
        int rc = pgev_array_get_text(a, i, &t, &len);
        if (!texts[i]) {
            ck_assert_msg(rc == 1, "%s: text[%zu] should be NULL (rc %d)", f, i, rc);
            continue;
        }
        ck_assert_msg(rc == PGEV_OK, "%s: text[%zu] rc %d", f, i, rc);
        ck_assert_str_eq(t, texts[i]);
        ck_assert_uint_eq(len, strlen(texts[i]));
    }
    ck_assert_int_eq(pgev_array_get_int64(a, 0, &i64), PGEV_EINVAL);
    pgev_array_free(a);

    a = get_array(res, 4, 3, binary);
    ck_assert_int_eq(pgev_array_get_double(a, 0, &d), PGEV_OK);
    ck_assert(d == 1.5);
    ck_assert_int_eq(pgev_array_get_double(a, 1, &d), 1);
    ck_assert_int_eq(pgev_array_get_double(a, 2, &d), PGEV_OK);
    ck_assert(isnan(d));
    pgev_array_free(a);

    a = get_array(res, 5, 3, binary);
    ck_assert_int_eq(pgev_array_get_bool(a, 0, &b), PGEV_OK);
    ck_assert(b);
    ck_assert_int_eq(pgev_array_get_bool(a, 1, &b), PGEV_OK);
    ck_assert(!b);
    ck_assert_int_eq(pgev_array_get_bool(a, 2, &b), 1);
    pgev_array_free(a);

    a = get_array(res, 6, 2, binary);
    ck_assert_int_eq(pgev_array_get_bytea(a, 0, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert(memcmp(buf, "\x00\xff", 2) == 0);
    ck_assert_int_eq(pgev_array_get_bytea(a, 1, buf, sizeof buf, &len), 1);
    pgev_array_free(a);

    a = get_array(res, 7, 1, binary);
    uint8_t u[16];
    ck_assert_int_eq(pgev_array_get_uuid(a, 0, u), PGEV_OK);
    ck_assert(memcmp(u, "\xa0\xee\xbc\x99\x9c\x0b\x4e\xf8\xbb\x6d\x6b\xb9\xbd\x38\x0a\x11", 16) == 0);
    pgev_array_free(a);

    a = get_array(res, 8, 3, binary);
    ck_assert_int_eq(pgev_array_get_numeric(a, 0, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_str_eq(buf, "12.50");
    ck_assert_int_eq(pgev_array_get_numeric(a, 1, buf, sizeof buf, &len), 1);
    ck_assert_int_eq(pgev_array_get_numeric(a, 2, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_str_eq(buf, "NaN");
    pgev_array_free(a);

    a = get_array(res, 9, 3, binary);
    ck_assert_int_eq(pgev_array_get_date(a, 0, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 10957);
    ck_assert_int_eq(pgev_array_get_date(a, 1, &i32), PGEV_OK);
    ck_assert_int_eq(i32, INT32_MAX);
    ck_assert_int_eq(pgev_array_get_date(a, 2, &i32), 1);
    pgev_array_free(a);

    a = get_array(res, 10, 2, binary);
    ck_assert_int_eq(pgev_array_get_timestamp(a, 0, &i64), PGEV_OK);
    ck_assert(i64 == 1500000);
    ck_assert_int_eq(pgev_array_get_timestamp(a, 1, &i64), 1);
    pgev_array_free(a);

    a = get_array(res, 11, 1, binary);
    ck_assert_int_eq(pgev_array_get_timestamp(a, 0, &i64), PGEV_OK);
    ck_assert(i64 == 3600 * USEC);
    pgev_array_free(a);

    a = get_array(res, 12, 0, binary); /* '{}' */
    ck_assert_int_eq(pgev_array_get_int32(a, 0, &i32), PGEV_EINVAL);
    pgev_array_free(a);

    a = (pgev_array *)0x1;
    ck_assert_int_eq(pgev_result_get_array(res, 0, 13, &a), 1); /* NULL array */
    ck_assert_ptr_eq(a, (pgev_array *)0x1);

    /* A lower bound other than 1 ("[0:2]={7,8,9}" in text). */
    a = get_array(res, 14, 3, binary);
    ck_assert_int_eq(pgev_array_get_int32(a, 2, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 9);
    pgev_array_free(a);

    a = (pgev_array *)0x1;
    ck_assert_int_eq(pgev_result_get_array(res, 0, 15, &a), PGEV_EINVAL); /* two dimensions */
    ck_assert_int_eq(pgev_result_get_array(res, 0, 17, &a), PGEV_EINVAL); /* not an array */
    ck_assert_int_eq(pgev_result_get_array(res, 0, 16, NULL), PGEV_EINVAL);
    ck_assert_ptr_eq(a, (pgev_array *)0x1);

    a = get_array(res, 16, 1, binary);
    ck_assert_int_eq(pgev_array_get_text(a, 0, &t, NULL), PGEV_OK);
    ck_assert_str_eq(t, "x");
    pgev_array_free(a);

    a = get_array(res, 18, 1, binary);
    ck_assert_int_eq(pgev_array_get_double(a, 0, &d), PGEV_OK);
    ck_assert(d == 0.25);
    pgev_array_free(a);

    a = get_array(res, 19, 2, binary);
    ck_assert_int_eq(pgev_array_get_json(a, 0, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "{\"a\": 1}");
    ck_assert_int_eq(pgev_array_get_json(a, 1, &t, &len), 1);
    pgev_array_free(a);

    a = get_array(res, 20, 1, binary);
    pgev_interval iv;
    ck_assert_int_eq(pgev_array_get_interval(a, 0, &iv), PGEV_OK);
    ck_assert(iv.days == 1 && iv.months == 0 && iv.usec == 0);
    pgev_array_free(a);

    a = get_array(res, 21, 2, binary);
    pgev_inet in;
    ck_assert_int_eq(pgev_array_get_inet(a, 0, &in), PGEV_OK);
    ck_assert(in.family == 4 && in.bits == 32 && memcmp(in.addr, "\x0a\0\0\x01", 4) == 0);
    ck_assert_int_eq(pgev_array_get_inet(a, 1, &in), PGEV_OK);
    ck_assert(in.family == 6 && in.bits == 128 && in.addr[15] == 1);
    pgev_array_free(a);

    pgev_array_free(NULL);
    ck_assert_uint_eq(pgev_array_count(NULL), 0);
}

START_TEST(arrays)
{
    open_conn();
    run_ok("SET TimeZone = 'Europe/Paris'");
    check_both("SELECT ARRAY[1, NULL, -32768]::int2[], ARRAY[2147483647, NULL]::int4[], "
               "ARRAY[-9223372036854775808, 0]::int8[], "
               "ARRAY['a', NULL, 'NULL', 'with \"quote\" and \\ backslash', '', 'sp ace', "
               "'{braces},', 'null']::text[], "
               "ARRAY[1.5, NULL, 'NaN']::float8[], ARRAY[true, false, NULL], "
               "ARRAY['\\x00ff'::bytea, NULL], "
               "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid], "
               "ARRAY[12.50, NULL, 'NaN']::numeric[], "
               "ARRAY['2000-01-01'::date, 'infinity', NULL], "
               "ARRAY['1970-01-01 00:00:01.5'::timestamp, NULL], "
               "ARRAY['1970-01-01 00:00:00-01'::timestamptz], '{}'::int4[], NULL::int4[], "
               "'[0:2]={7,8,9}'::int4[], '{{1,2},{3,4}}'::int4[], ARRAY['x']::varchar[], 5, "
               "ARRAY[0.25]::float4[], ARRAY['{\"a\": 1}'::jsonb, NULL], "
               "ARRAY['1 day'::interval], ARRAY['10.0.0.1'::inet, '::1']",
               check_arrays);
    free_conn();
}
END_TEST

/* Session settings that change array text: bytea_output and DateStyle. */
static void check_array_settings(pgev_result *res, bool binary)
{
    pgev_array *a = get_array(res, 0, 2, binary);
    unsigned char buf[8];
    size_t len = 0;
    ck_assert_int_eq(pgev_array_get_bytea(a, 0, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_uint_eq(len, 4);
    ck_assert(memcmp(buf, "\x00\xff\\\"", 4) == 0);
    ck_assert_int_eq(pgev_array_get_bytea(a, 1, buf, sizeof buf, &len), PGEV_OK);
    ck_assert_uint_eq(len, 0);
    pgev_array_free(a);

    /* A date in the SQL style is not guessed at in text; binary does not care. */
    a = get_array(res, 1, 1, binary);
    int32_t days = 42;
    ck_assert_int_eq(pgev_array_get_date(a, 0, &days), binary ? PGEV_OK : PGEV_EINVAL);
    ck_assert_int_eq(days, binary ? 10957 : 42);
    pgev_array_free(a);
}

START_TEST(array_settings)
{
    open_conn();
    run_ok("SET bytea_output = escape");
    run_ok("SET DateStyle = 'SQL, DMY'");
    check_both("SELECT ARRAY['\\x00ff5c22'::bytea, ''::bytea], ARRAY['2000-01-01'::date]",
               check_array_settings);
    free_conn();
}
END_TEST

/* ---- records (composite types) ------------------------------------------ */

static pgev_record *get_record(pgev_result *res, int col, size_t count, bool binary)
{
    pgev_record *r = NULL;
    int rc = pgev_result_get_record(res, 0, col, &r);
    ck_assert_msg(rc == PGEV_OK, "%s: column %d: pgev_result_get_record returned %d", FMT(binary),
                  col, rc);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(pgev_record_count(r) == count, "%s: column %d has %zu fields, not %zu",
                  FMT(binary), col, pgev_record_count(r), count);
    ck_assert_int_eq(pgev_record_is_binary(r), binary ? 1 : 0);
    return r;
}

/* In text format a field's type must be declared before a typed accessor reads it. */
static void declare(pgev_record *r, size_t i, Oid type, bool binary)
{
    if (binary) {
        ck_assert_uint_eq(pgev_record_field_type(r, i), type);
        ck_assert_int_eq(pgev_record_set_type(r, i, type), PGEV_EINVAL);
    } else {
        ck_assert_uint_eq(pgev_record_field_type(r, i), 0);
        ck_assert_int_eq(pgev_record_set_type(r, i, type), PGEV_OK);
        ck_assert_uint_eq(pgev_record_field_type(r, i), type);
    }
}

static void check_records(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    pgev_record *r = get_record(res, 0, 7, binary);
    int64_t i64 = 7;
    int32_t i32 = 7;
    const char *t = NULL;
    size_t len = 99;

    /* Field 0, int4 42: typed only once its type is known; text only in text format. */
    if (!binary)
        ck_assert_int_eq(pgev_record_get_int64(r, 0, &i64), PGEV_EINVAL);
    ck_assert_int_eq(i64, 7);
    ck_assert_int_eq(pgev_record_get_text(r, 0, &t, &len), binary ? PGEV_EINVAL : PGEV_OK);
    if (!binary)
        ck_assert_str_eq(t, "42");
    declare(r, 0, 23, binary);
    ck_assert_int_eq(pgev_record_get_int64(r, 0, &i64), PGEV_OK);
    ck_assert_int_eq(i64, 42);
    ck_assert_int_eq(pgev_record_get_int32(r, 0, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 42);
    bool b = false;
    ck_assert_int_eq(pgev_record_get_bool(r, 0, &b), PGEV_EINVAL); /* a mismatch, not a guess */

    /* Field 1: quotes, comma, parentheses and a backslash survive both formats. */
    ck_assert_int_eq(pgev_record_get_text(r, 1, &t, &len), PGEV_OK);
    ck_assert_msg(strcmp(t, "a \"q\", (p)\\ b") == 0, "%s: field 1 is [%s]", f, t);
    ck_assert_uint_eq(len, strlen("a \"q\", (p)\\ b"));

    /* Field 2: a NULL int8; its type is known in binary format even so. */
    ck_assert_int_eq(pgev_record_is_null(r, 2), 1);
    ck_assert_uint_eq(pgev_record_field_type(r, 2), binary ? 20 : 0);
    i64 = 7;
    ck_assert_int_eq(pgev_record_get_int64(r, 2, &i64), 1);
    ck_assert_int_eq(i64, 7);

    /* Field 3: an int4[] with a NULL element. */
    declare(r, 3, 1007, binary);
    pgev_array *a = NULL;
    ck_assert_int_eq(pgev_record_get_array(r, 3, &a), PGEV_OK);
    ck_assert_uint_eq(pgev_array_count(a), 2);
    ck_assert_int_eq(pgev_array_get_int32(a, 0, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 1);
    ck_assert_int_eq(pgev_array_is_null(a, 1), 1);
    pgev_array_free(a);

    /* Field 4: a nested record (float8, bool). */
    pgev_record *inner = NULL;
    ck_assert_int_eq(pgev_record_get_record(r, 4, &inner), PGEV_OK);
    ck_assert_uint_eq(pgev_record_count(inner), 2);
    declare(inner, 0, 701, binary);
    declare(inner, 1, 16, binary);
    double d = 0;
    ck_assert_int_eq(pgev_record_get_double(inner, 0, &d), PGEV_OK);
    ck_assert(d == 1.5);
    ck_assert_int_eq(pgev_record_get_bool(inner, 1, &b), PGEV_OK);
    ck_assert(b);
    pgev_record_free(inner);

    /* Field 5: the empty string is not NULL. */
    ck_assert_int_eq(pgev_record_is_null(r, 5), 0);
    ck_assert_int_eq(pgev_record_get_text(r, 5, &t, &len), PGEV_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(t, "");

    /* Field 6: a date. */
    declare(r, 6, 1082, binary);
    int32_t days = 0;
    ck_assert_int_eq(pgev_record_get_date(r, 6, &days), PGEV_OK);
    ck_assert_int_eq(days, 10957);

    /* Bad indexes and outputs. */
    ck_assert_int_eq(pgev_record_is_null(r, 7), PGEV_EINVAL);
    ck_assert_int_eq(pgev_record_get_int64(r, 7, &i64), PGEV_EINVAL);
    ck_assert_int_eq(pgev_record_get_int64(r, 0, NULL), PGEV_EINVAL);
    ck_assert_uint_eq(pgev_record_field_type(r, 7), 0);
    ck_assert_int_eq(pgev_record_set_type(r, 7, 23), PGEV_EINVAL);
    ck_assert_int_eq(pgev_record_get_record(r, 0, &inner), PGEV_EINVAL); /* an int4 */
    pgev_record_free(r);

    /* A NULL record, and a column that is not one. */
    r = (pgev_record *)&r;
    ck_assert_int_eq(pgev_result_get_record(res, 0, 1, &r), 1);
    ck_assert_ptr_eq(r, (pgev_record *)&r);
    ck_assert_int_eq(pgev_result_get_record(res, 0, 2, &r), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_record(res, 0, 8, &r), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_record(res, 0, 0, NULL), PGEV_EINVAL);

    /* A table's row type (a composite type of the catalog). */
    r = get_record(res, 3, 2, binary);
    declare(r, 0, 23, binary);
    ck_assert_int_eq(pgev_record_get_int32(r, 0, &i32), PGEV_OK);
    ck_assert_int_eq(i32, -7);
    ck_assert_int_eq(pgev_record_get_text(r, 1, &t, NULL), PGEV_OK);
    ck_assert_str_eq(t, "x");
    pgev_record_free(r);

    /* ROW() and ROW(NULL) print alike in text: refused there, told apart in binary. */
    if (binary) {
        r = get_record(res, 4, 0, binary);
        pgev_record_free(r);
        r = get_record(res, 5, 1, binary);
        ck_assert_int_eq(pgev_record_is_null(r, 0), 1);
        pgev_record_free(r);
    } else {
        ck_assert_int_eq(pgev_result_get_record(res, 0, 4, &r), PGEV_EINVAL);
        ck_assert_int_eq(pgev_result_get_record(res, 0, 5, &r), PGEV_EINVAL);
    }

    /* Two NULL fields, and a field that is a lone quote. */
    r = get_record(res, 6, 3, binary);
    ck_assert_int_eq(pgev_record_is_null(r, 0), 1);
    ck_assert_int_eq(pgev_record_is_null(r, 1), 1);
    ck_assert_int_eq(pgev_record_get_text(r, 2, &t, NULL), PGEV_OK);
    ck_assert_str_eq(t, "\"");
    pgev_record_free(r);

    /* An array of anonymous records (record[]): each element a record; a NULL element is 1. */
    a = get_array(res, 7, 3, binary);
    ck_assert_uint_eq(pgev_array_elem_type(a), 2249);
    ck_assert_int_eq(pgev_array_get_record(a, 0, &r), PGEV_OK);
    ck_assert_uint_eq(pgev_record_count(r), 2);
    declare(r, 1, 25, binary);
    ck_assert_int_eq(pgev_record_get_text(r, 1, &t, NULL), PGEV_OK);
    ck_assert_str_eq(t, "a,b");
    pgev_record_free(r);
    r = (pgev_record *)&r;
    ck_assert_int_eq(pgev_array_get_record(a, 1, &r), 1);
    ck_assert_ptr_eq(r, (pgev_record *)&r);
    ck_assert_int_eq(pgev_array_get_record(a, 2, &r), PGEV_OK);
    declare(r, 0, 23, binary);
    ck_assert_int_eq(pgev_record_get_int32(r, 0, &i32), PGEV_OK);
    ck_assert_int_eq(i32, 3);
    pgev_record_free(r);
    ck_assert_int_eq(pgev_array_get_record(a, 3, &r), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_int64(a, 0, &i64), PGEV_EINVAL); /* a record is not an int */
    pgev_array_free(a);

    /* An array of a named composite type: its OID is the catalog's, not one pgev decodes. */
    ck_assert_int_eq(pgev_result_get_array(res, 0, 8, &a), PGEV_EINVAL);
}

START_TEST(records)
{
    open_conn();
    run_ok("CREATE TEMP TABLE rec_t (a int4, b text)");
    run_ok("INSERT INTO rec_t VALUES (-7, 'x')");
    check_both("SELECT ROW(42, 'a \"q\", (p)\\ b', NULL::int8, ARRAY[1, NULL]::int4[], "
               "ROW(1.5::float8, true), ''::text, '2000-01-01'::date), NULL::record, 5, rec_t, "
               "ROW(), ROW(NULL::int4), ROW(NULL::int4, NULL::text, '\"'::text), "
               "ARRAY[ROW(1, 'a,b'::text), NULL, ROW(3, NULL::text)], ARRAY[rec_t], 'end' FROM rec_t",
               check_records);
    free_conn();
}
END_TEST


/* ---- json, inet, interval ---------------------------------------------- */

static void check_json_inet(pgev_result *res, bool binary)
{
    const char *t = NULL;
    size_t len = 0;
    ck_assert_int_eq(pgev_result_get_json(res, 0, 0, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "{\"a\": [1, 2]}");
    ck_assert_uint_eq(len, strlen(t));
    ck_assert_int_eq(pgev_result_get_json(res, 0, 1, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "{\"k\":  \"v\"}"); /* json keeps its text as given */
    ck_assert_int_eq(pgev_result_get_text(res, 0, 0, &t, &len), PGEV_OK); /* jsonb as text */
    ck_assert_str_eq(t, "{\"a\": [1, 2]}");
    ck_assert_int_eq(pgev_result_get_json(res, 0, 2, &t, &len), PGEV_EINVAL); /* text column */
    ck_assert_int_eq(pgev_result_get_json(res, 0, 3, &t, &len), 1);

    pgev_inet in;
    memset(&in, 0x5a, sizeof in);
    ck_assert_int_eq(pgev_result_get_inet(res, 0, 4, &in), PGEV_OK);
    ck_assert(in.family == 4 && in.bits == 24 && !in.is_cidr);
    ck_assert(memcmp(in.addr, "\xc0\xa8\x01\x05", 4) == 0);
    ck_assert_int_eq(pgev_result_get_inet(res, 0, 5, &in), PGEV_OK);
    ck_assert(in.family == 4 && in.bits == 8 && in.is_cidr);
    ck_assert(memcmp(in.addr, "\x0a\0\0\0", 4) == 0);
    ck_assert_int_eq(pgev_result_get_inet(res, 0, 6, &in), PGEV_OK);
    ck_assert(in.family == 6 && in.bits == 64 && in.is_cidr);
    ck_assert(memcmp(in.addr, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\0", 16) == 0);
    ck_assert_int_eq(pgev_result_get_inet(res, 0, 7, &in), PGEV_OK);
    ck_assert(in.family == 6 && in.bits == 128 && !in.is_cidr);
    ck_assert(memcmp(in.addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff\x01\x02\x03\x04", 16) == 0);
    ck_assert_int_eq(pgev_result_get_inet(res, 0, 2, &in), PGEV_EINVAL);

    static const pgev_interval want[] = {
        { .months = 14, .days = 3, .usec = (4 * 3600 + 5 * 60 + 6) * USEC + 789000 },
        { .months = 0, .days = -1, .usec = (2 * 3600 + 3 * 60) * USEC },
        { .months = -1, .days = 0, .usec = -1 },
        { .months = 0, .days = 0, .usec = 0 },
        { .months = INT32_MIN, .days = INT32_MAX, .usec = INT64_MAX - 1 },
        { .months = 1, .days = 1, .usec = 100 * 3600 * USEC },
    };
    for (int i = 0; i < 6; i++) {
        pgev_interval iv = { 0 };
        int rc = pgev_result_get_interval(res, 0, 8 + i, &iv);
        ck_assert_msg(rc == PGEV_OK, "%s: interval %d: rc %d", FMT(binary), i, rc);
        ck_assert_msg(iv.months == want[i].months && iv.days == want[i].days &&
                          iv.usec == want[i].usec,
                      "%s: interval %d read as %d months %d days %lld us", FMT(binary), i,
                      iv.months, iv.days, (long long)iv.usec);
    }
    pgev_interval iv = { .days = 42 };
    ck_assert_int_eq(pgev_result_get_interval(res, 0, 2, &iv), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_get_interval(res, 0, 3, &iv), 1); /* NULL comes first */
    ck_assert_int_eq(iv.days, 42);
}

START_TEST(json_inet_interval)
{
    open_conn();
    check_both("SELECT '{\"a\":[1,2]}'::jsonb, '{\"k\":  \"v\"}'::json, 'x'::text, NULL::jsonb, "
               "'192.168.1.5/24'::inet, '10.0.0.0/8'::cidr, '2001:db8::/64'::cidr, "
               "'::ffff:1.2.3.4'::inet, "
               "'1 year 2 mons 3 days 04:05:06.789'::interval, '-1 days +02:03:00'::interval, "
               "'-1 mon -00:00:00.000001'::interval, '0'::interval, "
               "make_interval(years => -178956970, months => -8, days => 2147483647) + "
               "interval '2562047788 hours 54.775806 seconds', '1 mon 1 day 100 hours'::interval",
               check_json_inet);
    free_conn();
}
END_TEST

static void check_interval_styles(pgev_result *res, bool binary)
{
    pgev_interval iv = { .days = 42 };
    int rc = pgev_result_get_interval(res, 0, 0, &iv);
    if (binary) {
        ck_assert_int_eq(rc, PGEV_OK);
        ck_assert(iv.months == 14 && iv.days == 3 && iv.usec == 4 * 3600 * USEC);
    } else {
        ck_assert_int_eq(rc, PGEV_EINVAL); /* not guessed */
        ck_assert_int_eq(iv.days, 42);
    }
}

START_TEST(interval_styles)
{
    static const char *const styles[] = { "sql_standard", "iso_8601", "postgres_verbose" };
    open_conn();
    for (int i = 0; i < 3; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SET IntervalStyle = %s", styles[i]);
        run_ok(sql);
        check_both("SELECT '1 year 2 mons 3 days 04:00:00'::interval", check_interval_styles);
    }
    free_conn();
}
END_TEST

/* ---- columns by name ---------------------------------------------------- */

static void check_columns(pgev_result *res, bool binary)
{
    (void)binary;
    ck_assert_int_eq(pgev_result_column(res, "id"), 0);
    ck_assert_int_eq(pgev_result_column(res, "Name"), 1);
    ck_assert_int_eq(pgev_result_column(res, "name"), PGEV_EINVAL); /* exact, case-sensitive */
    ck_assert_int_eq(pgev_result_column(res, "\"Name\""), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_column(res, "dup"), PGEV_EINVAL);  /* ambiguous */
    ck_assert_int_eq(pgev_result_column(res, "missing"), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_column(res, ""), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_column(res, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_result_column(NULL, "id"), PGEV_EINVAL);
    int64_t v = 0;
    ck_assert_int_eq(pgev_result_get_int64(res, 0, pgev_result_column(res, "last"), &v), PGEV_OK);
    ck_assert(v == 5);
    PGresult *pg = pgev_result_steal(res);
    ck_assert_int_eq(pgev_result_column(res, "id"), PGEV_EINVAL); /* no PGresult any more */
    PQclear(pg);
}

START_TEST(columns_by_name)
{
    open_conn();
    check_both("SELECT 1 AS id, 2 AS \"Name\", 3 AS dup, 4 AS dup, 5 AS last", check_columns);
    free_conn();
}
END_TEST

/* ---- array parameters --------------------------------------------------- */

static const int64_t some_ids[] = { 3, 5, 8, 42 };

static void check_count_3(pgev_result *res, bool binary)
{
    int64_t n = 0;
    ck_assert_int_eq(pgev_result_get_int64(res, 0, 0, &n), PGEV_OK);
    ck_assert_msg(n == 3, "%s: %lld rows matched", FMT(binary), (long long)n);
}

START_TEST(params_array_any)
{
    open_conn();
    pgev_params p;
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_int8_array(&p, some_ids, NULL, 4), PGEV_OK);
    pgev_query_args args = { .sql = "SELECT count(*) FROM generate_series(1, 10) g WHERE g = ANY($1)" };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, false, check_count_3);
    run_check_args(args, true, check_count_3);
    pgev_params_clear(&p);
    ck_assert_int_eq(pgev_params_count(&p), 0);

    static const char *const names[] = { "b", "zz", NULL, "d" };
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_text_array(&p, names, 4), PGEV_OK);
    args.sql = "SELECT count(*) FROM unnest(ARRAY['a','b','c','d','e']) n WHERE n = ANY($1) "
               "OR n IS NULL OR n = 'e'";
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, true, check_count_3);
    pgev_params_clear(&p);
    free_conn();
}
END_TEST

static const bool null_2nd[] = { false, true, false };
static const int16_t a_i16[] = { INT16_MIN, 0, INT16_MAX };
static const int32_t a_i32[] = { INT32_MIN, 0, INT32_MAX };
static const int64_t a_i64[] = { INT64_MIN, 0, INT64_MAX };
static const float a_f4[] = { -0.0f, 0, 0.1f };
static const double a_f8[] = { 0.1, 0, -INFINITY };
static const bool a_bool[] = { true, false, false };
static const uint8_t a_uuid[3][16] = { { 0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d,
                                         0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11 },
                                       { 0 },
                                       { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff } };
static const int32_t a_date[] = { -25567, 0, INT32_MAX };
static const int64_t a_ts[] = { INT64_C(-2208988800000000) + 1, 0, INT64_MIN };
static const int64_t a_tstz[] = { INT64_C(1719835200123456), 0, INT64_MAX };
static const char *const a_text[] = { "h\xc3\xa9llo \"q\" \\ {x,y}", NULL, "NULL" };
static const char *const a_num[] = { "-123456789012345678901234567890.000000000000000000001", NULL,
                                     "NaN" };
static const char a_bytes0[] = { 'a', 0, '\\', (char)0xff };
static const void *const a_bytea[] = { a_bytes0, NULL, "" };
static const size_t a_bytea_len[] = { sizeof a_bytes0, 0, 0 };

static void fill_array_params(pgev_params *p)
{
    pgev_params_init(p);
    ck_assert_int_eq(pgev_params_int2_array(p, a_i16, null_2nd, 3), PGEV_OK);       /* $1 */
    ck_assert_int_eq(pgev_params_int4_array(p, a_i32, null_2nd, 3), PGEV_OK);       /* $2 */
    ck_assert_int_eq(pgev_params_int8_array(p, a_i64, null_2nd, 3), PGEV_OK);       /* $3 */
    ck_assert_int_eq(pgev_params_float4_array(p, a_f4, null_2nd, 3), PGEV_OK);      /* $4 */
    ck_assert_int_eq(pgev_params_float8_array(p, a_f8, null_2nd, 3), PGEV_OK);      /* $5 */
    ck_assert_int_eq(pgev_params_bool_array(p, a_bool, null_2nd, 3), PGEV_OK);      /* $6 */
    ck_assert_int_eq(pgev_params_uuid_array(p, a_uuid, null_2nd, 3), PGEV_OK);      /* $7 */
    ck_assert_int_eq(pgev_params_date_array(p, a_date, null_2nd, 3), PGEV_OK);      /* $8 */
    ck_assert_int_eq(pgev_params_timestamp_array(p, a_ts, null_2nd, 3), PGEV_OK);   /* $9 */
    ck_assert_int_eq(pgev_params_timestamptz_array(p, a_tstz, null_2nd, 3), PGEV_OK); /* $10 */
    ck_assert_int_eq(pgev_params_text_array(p, a_text, 3), PGEV_OK);                /* $11 */
    ck_assert_int_eq(pgev_params_numeric_array(p, a_num, 3), PGEV_OK);              /* $12 */
    ck_assert_int_eq(pgev_params_bytea_array(p, a_bytea, a_bytea_len, 3), PGEV_OK); /* $13 */
    ck_assert_int_eq(pgev_params_int8_array(p, NULL, NULL, 0), PGEV_OK);            /* $14: {} */
    ck_assert_int_eq(pgev_params_int4_array(p, a_i32, NULL, 3), PGEV_OK);           /* $15 */
}

/* What the server made of them, as text it prints itself (not read by pgev's array decoder). */
#define ARRAY_PARAMS_CHECK_SQL                                                                  \
    "SELECT $1::text = '{-32768,NULL,32767}', $2::text = '{-2147483648,NULL,2147483647}', "      \
    "$3::text = '{-9223372036854775808,NULL,9223372036854775807}', "                            \
    "$4[1]::text = '-0' AND $4[2] IS NULL AND $4[3] = 0.1::float4, "                            \
    "$5::text = '{0.1,NULL,-Infinity}', $6::text = '{t,NULL,f}', "                              \
    "$7::text = '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL,ffffffff-ffff-ffff-ffff-ffffffffffff}', " \
    "$8::text = '{1900-01-01,NULL,infinity}', "                                                 \
    "$9[1] = '1900-01-01 00:00:00.000001' AND $9[2] IS NULL AND $9[3] = '-infinity', "          \
    "$10[1] = '2024-07-01 12:00:00.123456+00' AND $10[2] IS NULL AND $10[3] = 'infinity', "     \
    "$11[1] = 'h\xc3\xa9llo \"q\" \\ {x,y}' AND $11[2] IS NULL AND $11[3] = 'NULL', "           \
    "$12[1] = -123456789012345678901234567890.000000000000000000001 AND $12[2] IS NULL AND "    \
    "$12[3] = 'NaN', "                                                                          \
    "$13[1] = '\\x61005cff'::bytea AND $13[2] IS NULL AND $13[3] = '' AND "                     \
    "cardinality($13) = 3, cardinality($14) = 0, array_lower($15, 1) = 1 AND "                  \
    "array_ndims($15) = 1 AND array_position($15, NULL) IS NULL"

START_TEST(params_arrays_decoded_by_server)
{
    open_conn();
    run_ok("SET TimeZone = 'Asia/Kolkata'");
    pgev_params p;
    fill_array_params(&p);
    pgev_query_args args = { .sql = ARRAY_PARAMS_CHECK_SQL };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, false, check_all_true);
    run_check_args(args, true, check_all_true);
    pgev_params_clear(&p);
    free_conn();
}
END_TEST

/* The same arrays read back through pgev_array. */
static void check_array_roundtrip(pgev_result *res, bool binary)
{
    const char *f = FMT(binary);
    pgev_array *a;
    for (int col = 0; col < 13; col++) {
        a = get_array(res, col, 3, binary);
        ck_assert_msg(pgev_array_is_null(a, 1) == 1, "%s: $%d[2] is not NULL", f, col + 1);
        for (size_t i = 0; i < 3; i += 2) {
            int16_t i16;
            int32_t i32;
            int64_t i64;
            double d;
            bool b;
            uint8_t u[16];
            const char *t;
            char buf[128];
            size_t len;
            int rc;
            switch (col) {
            case 0: rc = pgev_array_get_int16(a, i, &i16); ck_assert(i16 == a_i16[i]); break;
            case 1: rc = pgev_array_get_int32(a, i, &i32); ck_assert(i32 == a_i32[i]); break;
            case 2: rc = pgev_array_get_int64(a, i, &i64); ck_assert(i64 == a_i64[i]); break;
            case 3:
                rc = pgev_array_get_double(a, i, &d);
                ck_assert(d == (double)a_f4[i] && !signbit(d) == !signbit(a_f4[i]));
                break;
            case 4: rc = pgev_array_get_double(a, i, &d); ck_assert(d == a_f8[i]); break;
            case 5: rc = pgev_array_get_bool(a, i, &b); ck_assert(b == a_bool[i]); break;
            case 6: rc = pgev_array_get_uuid(a, i, u); ck_assert(memcmp(u, a_uuid[i], 16) == 0); break;
            case 7: rc = pgev_array_get_date(a, i, &i32); ck_assert(i32 == a_date[i]); break;
            case 8: rc = pgev_array_get_timestamp(a, i, &i64); ck_assert(i64 == a_ts[i]); break;
            case 9: rc = pgev_array_get_timestamp(a, i, &i64); ck_assert(i64 == a_tstz[i]); break;
            case 10:
                rc = pgev_array_get_text(a, i, &t, &len);
                ck_assert_str_eq(t, a_text[i]);
                break;
            case 11:
                rc = pgev_array_get_numeric(a, i, buf, sizeof buf, &len);
                ck_assert_str_eq(buf, a_num[i]);
                break;
            default:
                rc = pgev_array_get_bytea(a, i, buf, sizeof buf, &len);
                ck_assert_uint_eq(len, a_bytea_len[i]);
                ck_assert(memcmp(buf, a_bytea[i], len) == 0);
                break;
            }
            ck_assert_msg(rc == PGEV_OK, "%s: $%d[%zu]: rc %d", f, col + 1, i + 1, rc);
        }
        pgev_array_free(a);
    }
    a = get_array(res, 13, 0, binary);
    pgev_array_free(a);
}

START_TEST(params_arrays_round_trip)
{
    open_conn();
    run_ok("SET TimeZone = 'America/St_Johns'");
    pgev_params p;
    fill_array_params(&p);
    pgev_query_args args = { .sql = "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                                    "$13, $14" };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, false, check_array_roundtrip);
    run_check_args(args, true, check_array_roundtrip);
    pgev_params_clear(&p);
    free_conn();
}
END_TEST

START_TEST(params_arrays_rejected_by_server)
{
    open_conn();
    static const char *const bad[] = { "1", "12abc" };
    pgev_params p;
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_numeric_array(&p, bad, 2), PGEV_OK);
    pgev_query_args args = { .sql = "SELECT $1" };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    pgev_params_clear(&p);
    tu_wait_query(&q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "22P02");
    free_conn();
}
END_TEST

/* json, jsonb, inet, cidr and interval parameters: checked by the server, then read back. */
static const pgev_inet p_inet4 = { .family = 4, .bits = 24, .addr = { 192, 168, 1, 5 } };
static const pgev_inet p_cidr6 = { .family = 6, .bits = 32, .is_cidr = true,
                                   .addr = { 0x20, 0x01, 0x0d, 0xb8 } };
static const pgev_interval p_iv = { .months = -14, .days = 3, .usec = -1 };

static void fill_more_params(pgev_params *p)
{
    pgev_params_init(p);
    ck_assert_int_eq(pgev_params_json(p, "{\"k\":  [1, 2]}"), PGEV_OK);     /* $1 */
    ck_assert_int_eq(pgev_params_jsonb(p, "{\"k\":  [1, 2]}"), PGEV_OK);    /* $2 */
    ck_assert_int_eq(pgev_params_inet(p, &p_inet4), PGEV_OK);                 /* $3 */
    ck_assert_int_eq(pgev_params_inet(p, &p_cidr6), PGEV_OK);                 /* $4 */
    ck_assert_int_eq(pgev_params_interval(p, &p_iv), PGEV_OK);                /* $5 */
    ck_assert_int_eq(pgev_params_jsonb(p, NULL), PGEV_OK);                    /* $6 */
}

#define MORE_PARAMS_CHECK_SQL                                                                   \
    "SELECT $1::text = '{\"k\":  [1, 2]}', $2 = '{\"k\": [1, 2]}'::jsonb, "                   \
    "$3 = '192.168.1.5/24'::inet, $4 = '2001:db8::/32'::cidr, "                                  \
    "$5 = '-1 years -2 mons +3 days -00:00:00.000001'::interval, $6 IS NULL, "                   \
    "pg_typeof($1) = 'json'::regtype AND pg_typeof($2) = 'jsonb'::regtype AND "                  \
    "pg_typeof($4) = 'cidr'::regtype"

static void check_more_roundtrip(pgev_result *res, bool binary)
{
    const char *t;
    size_t len;
    ck_assert_int_eq(pgev_result_get_json(res, 0, 0, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "{\"k\":  [1, 2]}");
    ck_assert_int_eq(pgev_result_get_json(res, 0, 1, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "{\"k\": [1, 2]}");
    pgev_inet in;
    ck_assert_int_eq(pgev_result_get_inet(res, 0, 2, &in), PGEV_OK);
    ck_assert(memcmp(&in, &p_inet4, sizeof in) == 0);
    ck_assert_int_eq(pgev_result_get_inet(res, 0, 3, &in), PGEV_OK);
    ck_assert(memcmp(&in, &p_cidr6, sizeof in) == 0);
    pgev_interval iv;
    ck_assert_int_eq(pgev_result_get_interval(res, 0, 4, &iv), PGEV_OK);
    ck_assert_msg(iv.months == p_iv.months && iv.days == p_iv.days && iv.usec == p_iv.usec,
                  "%s: interval back as %d/%d/%lld", FMT(binary), iv.months, iv.days,
                  (long long)iv.usec);
    ck_assert_int_eq(pgev_result_get_json(res, 0, 5, &t, &len), 1);
}

START_TEST(params_more_types)
{
    open_conn();
    pgev_params p;
    fill_more_params(&p);
    pgev_query_args args = { .sql = MORE_PARAMS_CHECK_SQL };
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, false, check_all_true);
    run_check_args(args, true, check_all_true);
    fill_more_params(&p);
    args.sql = "SELECT $1, $2, $3, $4, $5, $6";
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    run_check_args(args, false, check_more_roundtrip);
    run_check_args(args, true, check_more_roundtrip);

    /* Malformed JSON: the server's error. */
    pgev_params_init(&p);
    pgev_params_jsonb(&p, "{nope");
    args.sql = "SELECT $1";
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    tu_query q = { 0 };
    ck_assert_int_gt(tu_submit(conn, &args, &q, false), 0);
    tu_wait_query(&q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "22P02");
    free_conn();
}
END_TEST

/* Server-free: inet and interval values pgev refuses to send. */
START_TEST(params_more_unhappy)
{
    pgev_params p;
    pgev_query_args args = { 0 };
    pgev_inet bad[4] = { p_inet4, p_inet4, p_cidr6, p_cidr6 };
    bad[0].family = 5;
    bad[1].bits = 33;
    bad[2].bits = 129;
    bad[3].addr[15] = 1; /* a host bit in a /32 cidr */
    for (int i = 0; i < 4; i++) {
        pgev_params_init(&p);
        ck_assert_msg(pgev_params_inet(&p, &bad[i]) == PGEV_EINVAL, "bad inet %d accepted", i);
        ck_assert_int_eq(pgev_params_count(&p), 0);
        ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    }
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_inet(&p, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_interval(&p, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_interval(NULL, &p_iv), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_inet(NULL, &p_inet4), PGEV_EINVAL);

    /* The IPv6 inet is the largest inline value: a copy of p still holds it. */
    pgev_params_init(&p);
    static const pgev_inet full6 = { .family = 6, .bits = 128,
                                     .addr = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                               16 } };
    ck_assert_int_eq(pgev_params_inet(&p, &full6), PGEV_OK);
    pgev_params copy = p;
    memset(&p, 0xee, sizeof p);
    ck_assert_int_eq(pgev_params_apply(&copy, &args), PGEV_OK);
    ck_assert_int_eq(args.param_types[0], 869);
    ck_assert_int_eq(args.param_lengths[0], 20);
    ck_assert(memcmp(args.param_values[0], "\x03\x80\x00\x10", 4) == 0);
    ck_assert(memcmp(args.param_values[0] + 4, full6.addr, 16) == 0);
}
END_TEST

/* Server-free: the array appenders' refusals and what they encode. */
START_TEST(params_arrays_unhappy)
{
    pgev_params p;
    pgev_query_args args = { 0 };

    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_int8_array(&p, NULL, NULL, 2), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_count(&p), 0);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    pgev_params_clear(&p);

    static const int32_t too_early[] = { 0, INT32_MIN + 1 };
    ck_assert_int_eq(pgev_params_date_array(&p, too_early, NULL, 2), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_EINVAL);
    pgev_params_clear(&p);
    /* ... unless that element is NULL, when its value is not read. */
    static const bool second_null[] = { false, true };
    ck_assert_int_eq(pgev_params_date_array(&p, too_early, second_null, 2), PGEV_OK);
    pgev_params_clear(&p);

    static const int64_t too_early_ts[] = { INT64_MIN + 1 };
    ck_assert_int_eq(pgev_params_timestamptz_array(&p, too_early_ts, NULL, 1), PGEV_EINVAL);
    pgev_params_clear(&p);
    ck_assert_int_eq(pgev_params_bytea_array(&p, a_bytea, NULL, 3), PGEV_EINVAL);
    pgev_params_clear(&p);
    ck_assert_int_eq(pgev_params_text_array(&p, NULL, 1), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_numeric_array(&p, NULL, 1), PGEV_EINVAL);
    pgev_params_clear(&p);
    ck_assert_int_eq(pgev_params_int4_array(NULL, a_i32, NULL, 3), PGEV_EINVAL);
    pgev_params_clear(NULL);

    /* Full: the array is not added (nor leaked: ASan would see it). */
    for (int i = 0; i < PGEV_PARAMS_MAX; i++)
        ck_assert_int_eq(pgev_params_int8_array(&p, a_i64, NULL, 3), PGEV_OK);
    ck_assert_int_eq(pgev_params_int8_array(&p, a_i64, NULL, 3), PGEV_EINVAL);
    ck_assert_int_eq(pgev_params_count(&p), PGEV_PARAMS_MAX);
    pgev_params_clear(&p);
    ck_assert_int_eq(pgev_params_count(&p), 0);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK); /* clear resets the sticky error */

    /* The binary layout: 1 dimension, has-NULL flag, element type, length 2, lower bound 1. */
    static const int16_t two[] = { 1, -1 };
    pgev_params_init(&p);
    ck_assert_int_eq(pgev_params_int2_array(&p, two, second_null, 2), PGEV_OK);
    ck_assert_int_eq(pgev_params_int2_array(&p, two, NULL, 0), PGEV_OK);
    static const char *const nums[] = { "1\"", NULL };
    ck_assert_int_eq(pgev_params_numeric_array(&p, nums, 2), PGEV_OK);
    ck_assert_int_eq(pgev_params_apply(&p, &args), PGEV_OK);
    static const unsigned char want[] = { 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 21, 0, 0, 0, 2,
                                          0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0xff, 0xff, 0xff, 0xff };
    ck_assert_int_eq(args.param_types[0], 1005);
    ck_assert_int_eq(args.param_formats[0], 1);
    ck_assert_int_eq(args.param_lengths[0], (int)sizeof want);
    ck_assert(memcmp(args.param_values[0], want, sizeof want) == 0);
    ck_assert_int_eq(args.param_lengths[1], 12);
    ck_assert(memcmp(args.param_values[1], "\0\0\0\0\0\0\0\0\0\0\0\x15", 12) == 0);
    ck_assert_int_eq(args.param_types[2], 1231);
    ck_assert_int_eq(args.param_formats[2], 0);
    ck_assert_str_eq(args.param_values[2], "{\"1\\\"\",NULL}");
    pgev_params_clear(&p);
}
END_TEST

/* ---- hostile array input (server-free) ---------------------------------- */

/*
 * A result of one field holding exactly the given bytes (len < 0: strlen), typed and
 * formatted as asked, wrapped the way the library wraps what it receives
 * (as tests/fuzz/fuzz_types.c does): no server sends these.
 */
typedef struct fake_result {
    PGresult *pg;
    pgev_result res;
} fake_result;

static void fake_make(fake_result *fr, Oid type, bool binary, const char *val, int len)
{
    fr->pg = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    ck_assert_ptr_nonnull(fr->pg);
    PGresAttDesc attr = { .name = (char *)"v", .format = binary ? 1 : 0, .typid = type,
                          .typlen = -1, .atttypmod = -1 };
    ck_assert(PQsetResultAttrs(fr->pg, 1, &attr));
    ck_assert(PQsetvalue(fr->pg, 0, 0, (char *)val, len < 0 ? (int)strlen(val) : len));
    fr->res = (pgev_result){ .status = PGEV_OK, .pg = fr->pg, .tag_source = fr->pg, .rows = 1 };
}

/* Decodes val (len < 0: its strlen) as an array; returns the element count, or the error. */
static long text_array_count(Oid type, const char *val, int len)
{
    fake_result fr;
    fake_make(&fr, type, false, val, len);
    pgev_array *a = NULL;
    int rc = pgev_result_get_array(&fr.res, 0, 0, &a);
    long n = rc == PGEV_OK ? (long)pgev_array_count(a) : rc;
    pgev_array_free(a);
    PQclear(fr.pg);
    return n;
}

START_TEST(arrays_hostile_text)
{
    static const char *const bad[] = {
        "", "{", "}", "{1", "{1,}", "{,1}", "{1,,2}", "{{1}}", "{1,{2}}", "{1}x", " {1}",
        "{ 1}", "{1 }", "{\"1}", "{\"1\\", "{\"1\\\"}", "{1\"}", "{a\\b}", "[1:2]={1}",
        "[1:2={1,2}", "[1:2]{1,2}", "[]={}", "[1]={1}", "[x:1]={1}", "[1:1]=", "[3:1]={}",
        "[99999999999:99999999999]={1}", "[1:99999999999999999999]={1}", "{\"a\"b}",
        "{\"\"\"}", "{NULL,}", "NULL", "{}}", "{{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(text_array_count(1009, bad[i], -1) == PGEV_EINVAL, "\"%s\" was accepted",
                      bad[i]);
    ck_assert_int_eq(text_array_count(1009, "{a\0b}", 5), PGEV_EINVAL);
    ck_assert_int_eq(text_array_count(1009, "{\"a\0\"}", 6), PGEV_EINVAL);
    ck_assert_int_eq(text_array_count(1009, "{a}\0", 4), PGEV_EINVAL);

    ck_assert_int_eq(text_array_count(1009, "{}", -1), 0);
    ck_assert_int_eq(text_array_count(1009, "[1:0]={}", -1), 0);
    ck_assert_int_eq(text_array_count(1009, "[-2:0]={a,b,c}", -1), 3);
    ck_assert_int_eq(text_array_count(1009, "{\"\",\"\\\\\"}", -1), 2);
    ck_assert_int_eq(text_array_count(25, "{a}", -1), PGEV_EINVAL); /* text, not text[] */
    ck_assert_int_eq(text_array_count(1111, "{a}", -1), PGEV_EINVAL); /* an array type pgev lacks */

    /* NULL (any case, unquoted) against "NULL" (quoted), and escapes. */
    fake_result fr;
    fake_make(&fr, 1009, false, "{NULL,nUlL,\"NULL\",NULLX,\"a\\\"\\\\b\\c\",\xc3\xa9}", -1);
    pgev_array *a = NULL;
    ck_assert_int_eq(pgev_result_get_array(&fr.res, 0, 0, &a), PGEV_OK);
    PQclear(fr.pg); /* the array keeps its own copy */
    ck_assert_uint_eq(pgev_array_count(a), 6);
    const char *t;
    size_t len;
    ck_assert_int_eq(pgev_array_get_text(a, 0, &t, &len), 1);
    ck_assert_int_eq(pgev_array_get_text(a, 1, &t, &len), 1);
    ck_assert_int_eq(pgev_array_get_text(a, 2, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "NULL");
    ck_assert_int_eq(pgev_array_get_text(a, 3, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "NULLX");
    ck_assert_int_eq(pgev_array_get_text(a, 4, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "a\"\\bc");
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(pgev_array_get_text(a, 5, &t, &len), PGEV_OK);
    ck_assert_str_eq(t, "\xc3\xa9");
    pgev_array_free(a);

    /* Elements that parse as an array but not as their type. */
    fake_make(&fr, 1007, false, "{1,x,99999999999}", -1);
    ck_assert_int_eq(pgev_result_get_array(&fr.res, 0, 0, &a), PGEV_OK);
    int32_t i32 = 7;
    int64_t i64;
    ck_assert_int_eq(pgev_array_get_int32(a, 0, &i32), PGEV_OK);
    ck_assert_int_eq(pgev_array_get_int32(a, 1, &i32), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_int32(a, 2, &i32), PGEV_EINVAL);
    ck_assert_int_eq(pgev_array_get_int64(a, 2, &i64), PGEV_OK);
    ck_assert_int_eq(i32, 1);
    pgev_array_free(a);
    PQclear(fr.pg);
}
END_TEST

/* Decodes a binary int4[] (element type 23 unless the bytes say otherwise). */
static long binary_array_count(const unsigned char *val, int len)
{
    fake_result fr;
    fake_make(&fr, 1007, true, (const char *)val, len);
    pgev_array *a = NULL;
    int rc = pgev_result_get_array(&fr.res, 0, 0, &a);
    long n = rc == PGEV_OK ? (long)pgev_array_count(a) : rc;
    pgev_array_free(a);
    PQclear(fr.pg);
    return n;
}

#define BE32(v) (unsigned char)((uint32_t)(v) >> 24), (unsigned char)((uint32_t)(v) >> 16), \
                (unsigned char)((uint32_t)(v) >> 8), (unsigned char)(v)

START_TEST(arrays_hostile_binary)
{
    const unsigned char ok[] = { BE32(1), BE32(1), BE32(23), BE32(2), BE32(1),
                                 BE32(4), BE32(7), BE32(-1) };
    ck_assert_int_eq(binary_array_count(ok, sizeof ok), 2);
    const unsigned char empty[] = { BE32(0), BE32(0), BE32(23) };
    ck_assert_int_eq(binary_array_count(empty, sizeof empty), 0);

    /* Each of these breaks one rule of the layout. */
    const unsigned char two_dims[] = { BE32(2), BE32(0), BE32(23), BE32(1), BE32(1), BE32(1),
                                       BE32(1), BE32(4), BE32(7) };
    const unsigned char bad_flags[] = { BE32(1), BE32(2), BE32(23), BE32(1), BE32(1), BE32(4),
                                        BE32(7) };
    const unsigned char wrong_elem[] = { BE32(1), BE32(0), BE32(25), BE32(1), BE32(1), BE32(4),
                                         BE32(7) };
    const unsigned char negative_dim[] = { BE32(1), BE32(0), BE32(23), BE32(-1), BE32(1) };
    const unsigned char huge_dim[] = { BE32(1), BE32(0), BE32(23), BE32(0x7fffffff), BE32(1),
                                       BE32(-1) };
    const unsigned char bound_overflow[] = { BE32(1), BE32(0), BE32(23), BE32(2),
                                             BE32(0x7fffffff), BE32(-1), BE32(-1) };
    const unsigned char elem_len_neg[] = { BE32(1), BE32(0), BE32(23), BE32(1), BE32(1),
                                           BE32(-2) };
    const unsigned char elem_too_long[] = { BE32(1), BE32(0), BE32(23), BE32(1), BE32(1),
                                            BE32(5), BE32(7) };
    const unsigned char trailing[] = { BE32(1), BE32(0), BE32(23), BE32(1), BE32(1), BE32(-1),
                                       0 };
    const unsigned char short_header[] = { BE32(1), BE32(0), BE32(23), BE32(1) };
    const unsigned char missing_elem[] = { BE32(1), BE32(0), BE32(23), BE32(2), BE32(1),
                                           BE32(-1) };
    const unsigned char negative_ndim[] = { BE32(-1), BE32(0), BE32(23) };
    struct { const unsigned char *v; int len; const char *what; } bad[] = {
        { two_dims, sizeof two_dims, "two dimensions" },
        { bad_flags, sizeof bad_flags, "flags 2" },
        { wrong_elem, sizeof wrong_elem, "text elements in int4[]" },
        { negative_dim, sizeof negative_dim, "negative length" },
        { huge_dim, sizeof huge_dim, "length beyond the data" },
        { bound_overflow, sizeof bound_overflow, "upper bound overflow" },
        { elem_len_neg, sizeof elem_len_neg, "element length -2" },
        { elem_too_long, sizeof elem_too_long, "element beyond the data" },
        { trailing, sizeof trailing, "trailing byte" },
        { short_header, sizeof short_header, "short header" },
        { missing_elem, sizeof missing_elem, "missing element" },
        { negative_ndim, sizeof negative_ndim, "negative ndim" },
        { ok, 11, "cut header" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(binary_array_count(bad[i].v, bad[i].len) == PGEV_EINVAL, "%s was accepted",
                      bad[i].what);

    /* A 3-byte int4 element parses as an array but not as an int4. */
    const unsigned char short_elem[] = { BE32(1), BE32(0), BE32(23), BE32(1), BE32(1), BE32(3),
                                         1, 2, 3 };
    fake_result fr;
    fake_make(&fr, 1007, true, (const char *)short_elem, sizeof short_elem);
    pgev_array *a = NULL;
    ck_assert_int_eq(pgev_result_get_array(&fr.res, 0, 0, &a), PGEV_OK);
    int32_t v = 9;
    ck_assert_int_eq(pgev_array_get_int32(a, 0, &v), PGEV_EINVAL);
    ck_assert_int_eq(v, 9);
    pgev_array_free(a);
    PQclear(fr.pg);
}
END_TEST

/* inet, interval and jsonb values no server sends. */
START_TEST(scalars_hostile)
{
    static const struct { Oid type; bool binary; const char *val; int len; } bad[] = {
        { 869, false, "1.2.3.4/33", -1 },   { 869, false, "1.2.3", -1 },
        { 869, false, "1.2.3.4/", -1 },     { 869, false, "1.2.3.4/1x", -1 },
        { 869, false, "::1/129", -1 },      { 869, false, "/8", -1 },
        { 650, false, "10.0.0.1/8", -1 },   { 869, false, "1.2.3.4/0024", -1 },
        { 869, true, "\x02\x20\x00\x04\x01\x02\x03", 7 },       /* short address */
        { 869, true, "\x02\x21\x00\x04\x01\x02\x03\x04", 8 },   /* 33 bits */
        { 869, true, "\x02\x20\x01\x04\x01\x02\x03\x04", 8 },   /* says cidr in an inet */
        { 869, true, "\x04\x20\x00\x04\x01\x02\x03\x04", 8 },   /* unknown family */
        { 650, true, "\x02\x08\x01\x04\x0a\x00\x00\x01", 8 },   /* host bits in a cidr */
        { 1186, false, "1 years", -1 },     { 1186, false, "2 year", -1 },
        { 1186, false, "1 day 1 year", -1 }, { 1186, false, "1 day 1 day", -1 },
        { 1186, false, "0 days", -1 },      { 1186, false, "1 day ", -1 },
        { 1186, false, "1 day  01:00:00", -1 }, { 1186, false, "01:60:00", -1 },
        { 1186, false, "01:00", -1 },        { 1186, false, "01:00:00.1234567", -1 },
        { 1186, false, "01:00:00 1 day", -1 }, { 1186, false, "--01:00:00", -1 },
        { 1186, false, "99999999999 mons", -1 }, { 1186, false, "178956971 years", -1 },
        { 1186, false, "2562047789:00:00", -1 }, { 1186, false, "@ 1 day", -1 },
        { 1186, false, "P1D", -1 },          { 1186, false, "", -1 },
        { 1186, true, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 15 },
        { 3802, true, "\x02{}", 3 },         { 3802, true, "", 0 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fake_result fr;
        fake_make(&fr, bad[i].type, bad[i].binary, bad[i].val, bad[i].len);
        pgev_inet in;
        pgev_interval iv;
        const char *t;
        int rc = bad[i].type == 1186   ? pgev_result_get_interval(&fr.res, 0, 0, &iv)
                 : bad[i].type == 3802 ? pgev_result_get_json(&fr.res, 0, 0, &t, NULL)
                                       : pgev_result_get_inet(&fr.res, 0, 0, &in);
        ck_assert_msg(rc == PGEV_EINVAL, "case %zu (\"%s\") was accepted", i, bad[i].val);
        PQclear(fr.pg);
    }
}
END_TEST

/* Decodes val as a record column of type 2249; returns the field count, or the error. */
static long record_count(bool binary, const char *val, int len)
{
    fake_result fr;
    fake_make(&fr, 2249, binary, val, len);
    pgev_record *r = NULL;
    int rc = pgev_result_get_record(&fr.res, 0, 0, &r);
    long n = rc == PGEV_OK ? (long)pgev_record_count(r) : rc;
    pgev_record_free(r);
    PQclear(fr.pg);
    return n;
}

START_TEST(records_hostile_text)
{
    static const char *const bad[] = {
        "", "(", ")", "()", "(1", "1)", "(1,2", "(1)x", " (1)", "(1) ", "(\"abc)", "(a\\",
        "(\"a\\", "(a\"b", "x(1)", "(1))",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(record_count(false, bad[i], -1) == PGEV_EINVAL, "\"%s\" accepted", bad[i]);
    ck_assert_int_eq(record_count(false, "(,)", -1), 2);
    ck_assert_int_eq(record_count(false, "(a,,\"\")", -1), 3);

    /* Quoted sections, doubled quotes and escapes join into one field, as record_in reads them. */
    fake_result fr;
    fake_make(&fr, 2249, false, "(a\"b,\"\"\"cd\\,e,\"\")", -1);
    pgev_record *r = NULL;
    ck_assert_int_eq(pgev_result_get_record(&fr.res, 0, 0, &r), PGEV_OK);
    PQclear(fr.pg); /* the record holds its own copy: it outlives the result */
    ck_assert_uint_eq(pgev_record_count(r), 2);
    const char *t;
    ck_assert_int_eq(pgev_record_get_text(r, 0, &t, NULL), PGEV_OK);
    ck_assert_str_eq(t, "ab,\"cd,e");
    ck_assert_int_eq(pgev_record_get_text(r, 1, &t, NULL), PGEV_OK);
    ck_assert_str_eq(t, "");
    /* A declared type still refuses what does not parse as it. */
    int64_t i64 = 3;
    ck_assert_int_eq(pgev_record_set_type(r, 0, 20), PGEV_OK);
    ck_assert_int_eq(pgev_record_get_int64(r, 0, &i64), PGEV_EINVAL);
    ck_assert_int_eq(i64, 3);
    ck_assert_int_eq(pgev_record_set_type(r, 0, 0), PGEV_EINVAL);
    /* A field that is not a record's text. */
    pgev_record *inner = NULL;
    ck_assert_int_eq(pgev_record_get_record(r, 0, &inner), PGEV_EINVAL);
    ck_assert_ptr_null(inner);
    pgev_record_free(r);

    /* The server's limit on fields: 1664 pass, 1665 do not. */
    char big[2 * 1665 + 2];
    size_t n = 0;
    big[n++] = '(';
    for (int i = 0; i < 1664; i++) {
        big[n++] = '1';
        big[n++] = i == 1663 ? ')' : ',';
    }
    ck_assert_int_eq(record_count(false, big, (int)n), 1664);
    big[n - 1] = ',';
    big[n++] = '1';
    big[n++] = ')';
    ck_assert_int_eq(record_count(false, big, (int)n), PGEV_EINVAL);

    /* Types pgev knows are not records are refused whatever the value. */
    fake_make(&fr, 23, false, "(1)", -1);
    ck_assert_int_eq(pgev_result_get_record(&fr.res, 0, 0, &r), PGEV_EINVAL);
    PQclear(fr.pg);
    fake_make(&fr, 1007, false, "(1)", -1);
    ck_assert_int_eq(pgev_result_get_record(&fr.res, 0, 0, &r), PGEV_EINVAL);
    PQclear(fr.pg);
}
END_TEST

START_TEST(records_hostile_binary)
{
    const unsigned char ok[] = { BE32(2), BE32(23), BE32(4), BE32(7), BE32(25), BE32(-1) };
    ck_assert_int_eq(record_count(true, (const char *)ok, sizeof ok), 2);
    const unsigned char empty[] = { BE32(0) };
    ck_assert_int_eq(record_count(true, (const char *)empty, sizeof empty), 0);

    const unsigned char negative_count[] = { BE32(-1) };
    const unsigned char huge_count[] = { BE32(0x7fffffff), BE32(23), BE32(-1) };
    const unsigned char over_limit[] = { BE32(1665), BE32(23), BE32(-1) };
    const unsigned char missing_field[] = { BE32(2), BE32(23), BE32(-1) };
    const unsigned char zero_type[] = { BE32(1), BE32(0), BE32(-1) };
    const unsigned char len_neg[] = { BE32(1), BE32(23), BE32(-2) };
    const unsigned char too_long[] = { BE32(1), BE32(23), BE32(5), BE32(7) };
    const unsigned char trailing[] = { BE32(1), BE32(23), BE32(-1), 0 };
    const unsigned char short_field[] = { BE32(1), BE32(23) };
    const unsigned char short_count[] = { 0, 0, 1 };
    struct { const unsigned char *v; int len; const char *what; } bad[] = {
        { negative_count, sizeof negative_count, "negative count" },
        { huge_count, sizeof huge_count, "count beyond the data" },
        { over_limit, sizeof over_limit, "1665 fields" },
        { missing_field, sizeof missing_field, "a field missing" },
        { zero_type, sizeof zero_type, "type OID 0" },
        { len_neg, sizeof len_neg, "field length -2" },
        { too_long, sizeof too_long, "field beyond the data" },
        { trailing, sizeof trailing, "trailing byte" },
        { short_field, sizeof short_field, "short field header" },
        { short_count, sizeof short_count, "short count" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(record_count(true, (const char *)bad[i].v, bad[i].len) == PGEV_EINVAL,
                      "%s accepted", bad[i].what);

    /* A field of the wrong length for its type, and a nested record that is malformed. */
    const unsigned char nested[] = { BE32(2), BE32(23), BE32(2), 0, 7,
                                     BE32(2249), BE32(4), BE32(1) };
    fake_result fr;
    fake_make(&fr, 2249, true, (const char *)nested, sizeof nested);
    pgev_record *r = NULL, *inner = NULL;
    ck_assert_int_eq(pgev_result_get_record(&fr.res, 0, 0, &r), PGEV_OK);
    int32_t i32 = 5;
    ck_assert_int_eq(pgev_record_get_int32(r, 0, &i32), PGEV_EINVAL);
    ck_assert_int_eq(i32, 5);
    ck_assert_uint_eq(pgev_record_field_type(r, 1), 2249);
    ck_assert_int_eq(pgev_record_get_record(r, 1, &inner), PGEV_EINVAL);
    ck_assert_ptr_null(inner);
    pgev_record_free(r);
    PQclear(fr.pg);
}
END_TEST

static Suite *types_suite(void)
{
    Suite *s = suite_create("types");
    TCase *tc = tu_tcase("encode", 10);
    tcase_add_test(tc, params_encoding);
    tcase_add_test(tc, params_unhappy);
    tcase_add_test(tc, params_arrays_unhappy);
    tcase_add_test(tc, params_more_unhappy);
    tcase_add_test(tc, arrays_hostile_text);
    tcase_add_test(tc, arrays_hostile_binary);
    tcase_add_test(tc, scalars_hostile);
    tcase_add_test(tc, records_hostile_text);
    tcase_add_test(tc, records_hostile_binary);
    suite_add_tcase(s, tc);

    tc = tu_tcase("decode", 60);
    tcase_add_test(tc, integers);
    tcase_add_test(tc, floats);
    tcase_add_test(tc, bool_and_text);
    tcase_add_test(tc, bytea_hex);
    tcase_add_test(tc, bytea_escape_output);
    tcase_add_test(tc, uuids);
    tcase_add_test(tc, numerics);
    tcase_add_test(tc, numeric_unhappy);
    tcase_add_test(tc, dates);
    tcase_add_test(tc, date_unhappy);
    tcase_add_test(tc, timestamps);
    tcase_add_test(tc, timestamptz_zones);
    tcase_add_test(tc, timestamp_unhappy);
    tcase_add_test(tc, non_iso_datestyle);
    tcase_add_test(tc, bad_indexes);
    tcase_add_test(tc, stolen_result);
    tcase_add_test(tc, error_result);
    tcase_add_test(tc, arrays);
    tcase_add_test(tc, array_settings);
    tcase_add_test(tc, json_inet_interval);
    tcase_add_test(tc, interval_styles);
    tcase_add_test(tc, columns_by_name);
    tcase_add_test(tc, records);
    suite_add_tcase(s, tc);

    tc = tu_tcase("params", 60);
    tcase_add_test(tc, params_decoded_by_server);
    tcase_add_test(tc, params_round_trip);
    tcase_add_test(tc, params_rejected_by_server);
    tcase_add_test(tc, params_array_any);
    tcase_add_test(tc, params_arrays_decoded_by_server);
    tcase_add_test(tc, params_arrays_round_trip);
    tcase_add_test(tc, params_arrays_rejected_by_server);
    tcase_add_test(tc, params_more_types);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(types_suite());
}
