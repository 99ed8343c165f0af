/*
 * Typed values: every accessor against values round-tripped through the
 * server in text and binary result formats (edge values, NULL, mismatched
 * types, overflow, bad indexes, stolen results), and binary parameters
 * built with pgev_params and checked by the server. Needs PGEV_TEST_DSN,
 * except the "encode" case.
 */
#include "testutil.h"

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

static Suite *types_suite(void)
{
    Suite *s = suite_create("types");
    TCase *tc = tu_tcase("encode", 10);
    tcase_add_test(tc, params_encoding);
    tcase_add_test(tc, params_unhappy);
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
    suite_add_tcase(s, tc);

    tc = tu_tcase("params", 60);
    tcase_add_test(tc, params_decoded_by_server);
    tcase_add_test(tc, params_round_trip);
    tcase_add_test(tc, params_rejected_by_server);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(types_suite());
}
