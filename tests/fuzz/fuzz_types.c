/*
 * libFuzzer target: pgev's typed value decoders (lib/types.c), in both
 * result formats, on values the fuzzer makes up.
 *
 * Input: byte 0 picks the column type, byte 1 bit 0 the format (binary
 * when set), bit 1 makes the field SQL NULL, bit 2 makes the column type
 * record (2249) whatever byte 0 says, and with bit 3 record[] (2287); the rest is the field's value,
 * exactly as libpq would hold it. The value goes into a real PGresult
 * (PQmakeEmptyPGresult + PQsetResultAttrs + PQsetvalue) wrapped in a
 * pgev_result the way the library wraps the results it receives, and every
 * public pgev_result_get_* accessor reads it; an array is decoded with
 * pgev_result_get_array() and every element read with every pgev_array_get_*
 * accessor; a record (the types pgev cannot rule out as one: 0 and 1111
 * here, and 2249) is decoded with pgev_result_get_record() and every field
 * read with every pgev_record_get_* accessor, text fields first as sent and
 * then declared as a type taken from the input, nested records and arrays
 * decoded in turn. Besides crashes and sanitizer reports, the target checks what
 * the accessors promise: a consistent
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
    0 /* invalid */,   3802 /* jsonb */,     869 /* inet */,    650 /* cidr */,
    1186 /* interval */,
    /* arrays of each of the above */
    1000, 1001, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 1041, 651,
    1115, 1182, 1185, 1187, 1231, 199, 3807, 2951,
    1111 /* an array type pgev does not decode */,
};

/* Added after the list above so that the kept corpus keeps its types: byte 1 bit 2 makes the
 * column a record (2249), with bit 3 too an array of records (2287). */
#define RECORD_OID 2249
#define RECORD_ARRAY_OID 2287

#define NTYPES (sizeof(types) / sizeof(types[0]))

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_types: broken promise: %s\n", what);
        abort();
    }
}

static void read_record(pgev_record *r, int depth);

/* Every element accessor on element i; text it hands out is read in full. */
static void
read_element(const pgev_array *a, size_t i)
{
    pgev_record *rec = NULL;
    int rrc = pgev_array_get_record(a, i, &rec);
    check((rrc == PGEV_OK) == (rec != NULL), "an element record exactly when OK");
    if (rec) {
        read_record(rec, 1);
        pgev_record_free(rec);
    }
    int64_t i64 = 0x5a5a;
    int32_t i32 = 0x5a5a;
    int16_t i16;
    int rc64 = pgev_array_get_int64(a, i, &i64);
    int rc32 = pgev_array_get_int32(a, i, &i32);
    if (rc32 == PGEV_OK)
        check(rc64 == PGEV_OK && i64 == i32, "element int32 agrees with int64");
    if (rc64 == 1)
        check(rc32 == 1 && pgev_array_is_null(a, i) == 1 && i64 == 0x5a5a,
              "a NULL element is NULL to every accessor, and stores nothing");
    (void)pgev_array_get_int16(a, i, &i16);
    double d;
    (void)pgev_array_get_double(a, i, &d);
    bool b;
    (void)pgev_array_get_bool(a, i, &b);
    const char *text;
    size_t tlen;
    volatile unsigned sum = 0;
    if (pgev_array_get_text(a, i, &text, &tlen) == PGEV_OK) {
        for (size_t k = 0; k <= tlen; k++) /* the NUL too */
            sum += (unsigned char)text[k];
        check(text[tlen] == '\0', "element text is NUL-terminated at its length");
    }
    if (pgev_array_get_json(a, i, &text, &tlen) == PGEV_OK)
        for (size_t k = 0; k < tlen; k++)
            sum += (unsigned char)text[k];
    unsigned char buf[64];
    size_t len = 0;
    int rc = pgev_array_get_bytea(a, i, buf, sizeof buf, &len);
    check(rc != PGEV_OK || len <= sizeof buf, "element bytea fits what it says");
    char nbuf[64];
    rc = pgev_array_get_numeric(a, i, nbuf, sizeof nbuf, &len);
    check(rc != PGEV_OK || (len < sizeof nbuf && strlen(nbuf) == len), "element numeric text");
    uint8_t uuid[16];
    (void)pgev_array_get_uuid(a, i, uuid);
    (void)pgev_array_get_date(a, i, &i32);
    (void)pgev_array_get_timestamp(a, i, &i64);
    pgev_inet in;
    if (pgev_array_get_inet(a, i, &in) == PGEV_OK)
        check((in.family == 4 && in.bits <= 32) || (in.family == 6 && in.bits <= 128),
              "element inet family and bits");
    pgev_interval iv;
    (void)pgev_array_get_interval(a, i, &iv);
    (void)sum;
}

/* Every record accessor on field i; nested records and arrays are followed depth levels down. */

static void
read_field(pgev_record *r, size_t i, int depth)
{
    int64_t i64 = 0x5a5a;
    int32_t i32 = 0x5a5a;
    int16_t i16;
    int rc64 = pgev_record_get_int64(r, i, &i64);
    int rc32 = pgev_record_get_int32(r, i, &i32);
    if (rc32 == PGEV_OK)
        check(rc64 == PGEV_OK && i64 == i32, "field int32 agrees with int64");
    if (rc64 == 1)
        check(rc32 == 1 && pgev_record_is_null(r, i) == 1 && i64 == 0x5a5a,
              "a NULL field is NULL to every accessor, and stores nothing");
    (void)pgev_record_get_int16(r, i, &i16);
    double d;
    (void)pgev_record_get_double(r, i, &d);
    bool b;
    (void)pgev_record_get_bool(r, i, &b);
    const char *text;
    size_t tlen;
    volatile unsigned sum = 0;
    if (pgev_record_get_text(r, i, &text, &tlen) == PGEV_OK) {
        for (size_t k = 0; k <= tlen; k++) /* the NUL too */
            sum += (unsigned char)text[k];
        check(text[tlen] == '\0', "field text is NUL-terminated at its length");
    }
    if (pgev_record_get_json(r, i, &text, &tlen) == PGEV_OK)
        for (size_t k = 0; k < tlen; k++)
            sum += (unsigned char)text[k];
    unsigned char buf[64];
    size_t len = 0;
    int rc = pgev_record_get_bytea(r, i, buf, sizeof buf, &len);
    check(rc != PGEV_OK || len <= sizeof buf, "field bytea fits what it says");
    char nbuf[64];
    rc = pgev_record_get_numeric(r, i, nbuf, sizeof nbuf, &len);
    check(rc != PGEV_OK || (len < sizeof nbuf && strlen(nbuf) == len), "field numeric text");
    uint8_t uuid[16];
    (void)pgev_record_get_uuid(r, i, uuid);
    (void)pgev_record_get_date(r, i, &i32);
    (void)pgev_record_get_timestamp(r, i, &i64);
    pgev_inet in;
    if (pgev_record_get_inet(r, i, &in) == PGEV_OK)
        check((in.family == 4 && in.bits <= 32) || (in.family == 6 && in.bits <= 128),
              "field inet family and bits");
    pgev_interval iv;
    (void)pgev_record_get_interval(r, i, &iv);
    if (depth > 0) {
        pgev_record *inner = NULL;
        rc = pgev_record_get_record(r, i, &inner);
        check((rc == PGEV_OK) == (inner != NULL), "a nested record exactly when OK");
        if (inner) {
            read_record(inner, depth - 1);
            pgev_record_free(inner);
        }
        pgev_array *arr = NULL;
        rc = pgev_record_get_array(r, i, &arr);
        check((rc == PGEV_OK) == (arr != NULL), "a nested array exactly when OK");
        if (arr) {
            for (size_t k = 0; k < pgev_array_count(arr); k++)
                read_element(arr, k);
            pgev_array_free(arr);
        }
    }
    (void)sum;
}

static void
read_record(pgev_record *r, int depth)
{
    size_t n = pgev_record_count(r);
    check(n <= 1664, "at most the server's number of fields");
    for (size_t i = 0; i < n; i++)
        read_field(r, i, depth);
    check(pgev_record_is_null(r, n) == PGEV_EINVAL, "no field past the end");
    if (pgev_record_is_binary(r))
        return;
    /* Text fields: again, each declared as one of the types (from the field's first byte). */
    for (size_t i = 0; i < n; i++) {
        const char *t;
        Oid type = pgev_record_get_text(r, i, &t, NULL) == PGEV_OK && t[0]
                       ? types[(unsigned char)t[0] % NTYPES]
                       : 23;
        if (type == 0)
            type = 25;
        check(pgev_record_set_type(r, i, type) == PGEV_OK, "a text field takes a type");
        check(pgev_record_field_type(r, i) == type, "the declared type sticks");
        read_field(r, i, depth);
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

    const char *json;
    size_t jlen;
    if (pgev_result_get_json(res, 0, 0, &json, &jlen) == PGEV_OK) {
        volatile unsigned sum = 0;
        for (size_t i = 0; i < jlen; i++)
            sum += (unsigned char)json[i];
        (void)sum;
    }
    pgev_inet in;
    memset(&in, 0x5a, sizeof in);
    rc = pgev_result_get_inet(res, 0, 0, &in);
    if (rc == PGEV_OK)
        check((in.family == 4 && in.bits <= 32) || (in.family == 6 && in.bits <= 128),
              "inet family and bits");
    else
        check(in.bits == 0x5a, "inet stores nothing on failure");
    pgev_interval iv;
    (void)pgev_result_get_interval(res, 0, 0, &iv);

    /* Arrays: at most one element per 1 byte of text or 4 of binary. */
    pgev_array *arr = NULL;
    rc = pgev_result_get_array(res, 0, 0, &arr);
    check(rc == PGEV_OK || rc == 1 || rc == PGEV_EINVAL || rc == PGEV_ENOMEM, "array status");
    check((rc == PGEV_OK) == (arr != NULL), "an array exactly when OK");
    if (arr) {
        size_t n = pgev_array_count(arr);
        check(n <= (size_t)PQgetlength(pgev_result_pg(res), 0, 0), "element count is bounded");
        for (size_t i = 0; i < n; i++)
            read_element(arr, i);
        check(pgev_array_is_null(arr, n) == PGEV_EINVAL, "no element past the end");
        pgev_array_free(arr);
    }
    pgev_record *rec = NULL;
    rc = pgev_result_get_record(res, 0, 0, &rec);
    check(rc == PGEV_OK || rc == 1 || rc == PGEV_EINVAL || rc == PGEV_ENOMEM, "record status");
    check((rc == PGEV_OK) == (rec != NULL), "a record exactly when OK");
    if (rec) {
        read_record(rec, 3);
        pgev_record_free(rec);
    }
    check(pgev_result_column(res, "v") == 0 && pgev_result_column(res, "w") == PGEV_EINVAL,
          "columns by name");

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
    Oid type = data[1] & 4 ? (data[1] & 8 ? RECORD_ARRAY_OID : RECORD_OID) : types[data[0] % NTYPES];
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
