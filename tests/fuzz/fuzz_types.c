/*
 * libFuzzer target: pgev's typed value decoders (lib/types.c), in both
 * result formats, on values the fuzzer makes up.
 *
 * Input: byte 0 picks the column type, byte 1 bit 0 the format (binary
 * when set), bit 1 makes the field SQL NULL; the rest is the field's value,
 * exactly as libpq would hold it. The value goes into a real PGresult
 * (PQmakeEmptyPGresult + PQsetResultAttrs + PQsetvalue) wrapped in a
 * pgev_result the way the library wraps the results it receives, and every
 * public pgev_result_get_* accessor reads it. Besides crashes and sanitizer
 * reports, the target checks what the accessors promise: a consistent
 * answer between the integer widths, the size protocol of the bytea and
 * numeric accessors, NUL-terminated numeric text, and no output written on
 * failure where the header says so.
 */
#include "pgev-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const Oid types[] = {
    16 /* bool */,     17 /* bytea */,   18 /* char */,     19 /* name */,
    20 /* int8 */,     21 /* int2 */,    23 /* int4 */,     25 /* text */,
    26 /* oid */,      114 /* json */,   700 /* float4 */,  701 /* float8 */,
    705 /* unknown */, 1042 /* bpchar */, 1043 /* varchar */, 1082 /* date */,
    1114 /* timestamp */, 1184 /* timestamptz */, 1700 /* numeric */, 2950 /* uuid */,
    0 /* invalid */,   3802 /* jsonb: no decoder */,
};

#define NTYPES (sizeof(types) / sizeof(types[0]))

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_types: broken promise: %s\n", what);
        abort();
    }
}

static void
read_all(const pgev_result *res)
{
    int64_t i64 = 0x5a5a;
    int32_t i32 = 0x5a5a;
    int16_t i16 = 0x5a5a;
    int rc64 = pgev_result_get_int64(res, 0, 0, &i64);
    int rc32 = pgev_result_get_int32(res, 0, 0, &i32);
    int rc16 = pgev_result_get_int16(res, 0, 0, &i16);
    if (rc32 == PGEV_OK)
        check(rc64 == PGEV_OK && i64 == i32, "int32 agrees with int64");
    if (rc16 == PGEV_OK)
        check(rc64 == PGEV_OK && i64 == i16, "int16 agrees with int64");
    if (rc64 == PGEV_OK && i64 >= INT32_MIN && i64 <= INT32_MAX)
        check(rc32 == PGEV_OK, "an int64 in range is an int32");
    if (rc64 != PGEV_OK)
        check(i64 == 0x5a5a, "int64 stores nothing on failure");

    double d;
    (void)pgev_result_get_double(res, 0, 0, &d);
    bool b;
    (void)pgev_result_get_bool(res, 0, 0, &b);

    const char *text = NULL;
    size_t tlen = 0;
    if (pgev_result_get_text(res, 0, 0, &text, &tlen) == PGEV_OK) {
        /* Touch every byte it claims, so ASan sees an overrun. */
        volatile unsigned sum = 0;
        for (size_t i = 0; i < tlen; i++)
            sum += (unsigned char)text[i];
        (void)sum;
    }

    /* bytea: size first, then exactly that, then one byte too few. */
    size_t need = 0;
    int rc = pgev_result_get_bytea(res, 0, 0, NULL, 0, &need);
    if (rc == PGEV_OK) {
        check(need == 0, "bytea OK with cap 0 only when empty");
    } else if (rc == PGEV_EINVAL && need > 0) {
        unsigned char *buf = malloc(need);
        check(buf != NULL, "malloc");
        size_t got = 0;
        check(pgev_result_get_bytea(res, 0, 0, buf, need, &got) == PGEV_OK && got == need,
              "bytea decodes into the size it asked for");
        if (need > 1) {
            size_t again = 0;
            check(pgev_result_get_bytea(res, 0, 0, buf, need - 1, &again) == PGEV_EINVAL &&
                      again == need,
                  "bytea reports the size when the buffer is short");
        }
        free(buf);
    }

    /* numeric: the same protocol, plus a NUL after the text. */
    size_t nlen = 0;
    rc = pgev_result_get_numeric(res, 0, 0, NULL, 0, &nlen);
    if (rc == PGEV_EINVAL && nlen > 0) {
        char *buf = malloc(nlen + 1);
        check(buf != NULL, "malloc");
        size_t got = 0;
        check(pgev_result_get_numeric(res, 0, 0, buf, nlen + 1, &got) == PGEV_OK && got == nlen,
              "numeric fits in the size it asked for");
        check(strlen(buf) == nlen, "numeric text is NUL-terminated at its length");
        check(pgev_result_get_numeric(res, 0, 0, buf, nlen, &got) == PGEV_EINVAL,
              "numeric needs room for the NUL");
        free(buf);
    }

    uint8_t uuid[16];
    (void)pgev_result_get_uuid(res, 0, 0, uuid);
    int32_t days;
    (void)pgev_result_get_date(res, 0, 0, &days);
    int64_t usec;
    (void)pgev_result_get_timestamp(res, 0, 0, &usec);

    /* Out of range and NULL outputs are refused, never followed. */
    check(pgev_result_get_int64(res, 1, 0, &i64) == PGEV_EINVAL, "row 1 does not exist");
    check(pgev_result_get_int64(res, 0, -1, &i64) == PGEV_EINVAL, "column -1 does not exist");
    check(pgev_result_get_int64(res, 0, 0, NULL) == PGEV_EINVAL ||
              pgev_result_get_int64(res, 0, 0, NULL) == 1,
          "NULL output");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    Oid type = types[data[0] % NTYPES];
    bool binary = data[1] & 1;
    bool is_null = data[1] & 2;
    const char *value = (const char *)data + 2;
    int len = (int)(size - 2);

    PGresult *pg = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    if (!pg)
        return 0;
    PGresAttDesc attr = {
        .name = (char *)"v", .tableid = 0, .columnid = 0, .format = binary ? 1 : 0,
        .typid = type, .typlen = -1, .atttypmod = -1,
    };
    if (!PQsetResultAttrs(pg, 1, &attr) || !PQsetvalue(pg, 0, 0, is_null ? NULL : (char *)value,
                                                         is_null ? -1 : len)) {
        PQclear(pg);
        return 0;
    }
    pgev_result res = { .status = PGEV_OK, .pg = pg, .tag_source = pg, .rows = 1 };
    read_all(&res);
    PQclear(pg);
    return 0;
}
