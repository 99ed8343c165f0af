/*
 * libFuzzer target: lib/types.c's decoders on exact-size buffers.
 *
 * fuzz_types goes through a real PGresult, whose values libpq packs into
 * shared blocks, so ASan cannot see a decoder read a few bytes past a short
 * value. This target includes types.c itself (run.sh builds it without
 * lib/types.c) and hands every decoder the value in a heap block of exactly
 * its length plus the NUL that libpq always adds. The array parsers run the
 * same way, and every element they produce is copied into its own exact
 * block and given to every decoder again, as the element's type.
 *
 * The record parsers run on every input whose type may be a record (0 in
 * the list stands for any type pgev does not know; byte 1 bit 2 forces
 * it), and every field is decoded the same way: as the type the bytes say
 * in binary format, as a type picked from the field's first byte in text,
 * and as a nested record, three levels down.
 *
 * Input: byte 0 picks the type, byte 1 bit 0 the format (binary when set),
 * bit 2 the type record (2249), with bit 3 too record[] (2287, whose
 * elements are then parsed as records); the rest is the value.
 */
#include "../../lib/types.c"

#include <stdio.h>

static const Oid types[] = {
    OID_BOOL, OID_BYTEA, OID_CHAR, OID_NAME, OID_INT8, OID_INT2, OID_INT4, OID_TEXT, OID_OID,
    OID_JSON, OID_FLOAT4, OID_FLOAT8, OID_UNKNOWN, OID_BPCHAR, OID_VARCHAR, OID_DATE,
    OID_TIMESTAMP, OID_TIMESTAMPTZ, OID_NUMERIC, OID_UUID, 0, OID_JSONB, OID_INET, OID_CIDR,
    OID_INTERVAL, OID_BOOL_ARRAY, OID_BYTEA_ARRAY, OID_CHAR_ARRAY, OID_NAME_ARRAY,
    OID_INT2_ARRAY, OID_INT4_ARRAY, OID_TEXT_ARRAY, OID_BPCHAR_ARRAY, OID_VARCHAR_ARRAY,
    OID_INT8_ARRAY, OID_FLOAT4_ARRAY, OID_FLOAT8_ARRAY, OID_OID_ARRAY, OID_INET_ARRAY,
    OID_CIDR_ARRAY, OID_TIMESTAMP_ARRAY, OID_DATE_ARRAY, OID_TIMESTAMPTZ_ARRAY,
    OID_INTERVAL_ARRAY, OID_NUMERIC_ARRAY, OID_JSON_ARRAY, OID_JSONB_ARRAY, OID_UUID_ARRAY,
};
#define NTYPES (sizeof types / sizeof types[0])

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_decoders: broken promise: %s\n", what);
        abort();
    }
}

/* A copy of len bytes plus a NUL in a block of exactly that size. */
static char *
exact_copy(const char *src, size_t len)
{
    char *p = malloc(len + 1);
    check(p != NULL, "malloc");
    if (len)
        memcpy(p, src, len);
    p[len] = '\0';
    return p;
}

static void
touch(const char *p, size_t n)
{
    volatile unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (unsigned char)p[i];
    (void)sum;
}

/* Every scalar decoder on one value. */
static void
decode_all(const field *f)
{
    int64_t i64;
    int32_t i32;
    int16_t i16;
    double d;
    bool b;
    (void)decode_int64(f, &i64);
    (void)decode_int32(f, &i32);
    (void)decode_int16(f, &i16);
    (void)decode_double(f, &d);
    (void)decode_bool(f, &b);
    const char *t;
    size_t len;
    if (decode_text(f, &t, &len) == PGEV_OK)
        touch(t, len + 1);
    if (decode_json(f, &t, &len) == PGEV_OK)
        touch(t, len + 1);
    /* bytea and numeric into exact buffers too: size first, then that size. */
    len = 0;
    if (decode_bytea(f, NULL, 0, &len) == PGEV_EINVAL && len > 0 && len < (1 << 20)) {
        char *buf = malloc(len);
        check(buf != NULL, "malloc");
        size_t got;
        check(decode_bytea(f, buf, len, &got) == PGEV_OK && got == len, "bytea size protocol");
        free(buf);
    }
    len = 0;
    if (decode_numeric(f, NULL, 0, &len) == PGEV_EINVAL && len > 0 && len < (1 << 20)) {
        char *buf = malloc(len + 1);
        check(buf != NULL, "malloc");
        size_t got;
        check(decode_numeric(f, buf, len + 1, &got) == PGEV_OK && got == len &&
                  strlen(buf) == len,
              "numeric size protocol");
        free(buf);
    }
    uint8_t uuid[16];
    (void)decode_uuid(f, uuid);
    (void)decode_date(f, &i32);
    (void)decode_timestamp(f, &i64);
    pgev_inet in;
    (void)decode_inet(f, &in);
    pgev_interval iv;
    (void)decode_interval(f, &iv);
}

/* A record's parsers on one value, then every field as every decoder, nested records depth levels down. */
static void
parse_record(const char *val, size_t len, bool binary, int depth)
{
    size_t data_len = 0;
    int64_t n = binary ? record_from_binary(val, len, NULL, NULL, &data_len)
                       : record_from_text(val, len, NULL, NULL, &data_len);
    if (n < 0)
        return;
    check(n <= RECORD_MAX_FIELDS && (size_t)n <= len, "field count bounded");
    record_field *fields = malloc((size_t)n * sizeof *fields + 1);
    char *copy = malloc(data_len ? data_len : 1);
    check(fields && copy, "malloc");
    size_t again_len = 0;
    int64_t again = binary ? record_from_binary(val, len, fields, copy, &again_len)
                           : record_from_text(val, len, fields, copy, &again_len);
    check(again == n && again_len == data_len, "both record passes agree");
    for (int64_t i = 0; i < n; i++) {
        if (!fields[i].val)
            continue;
        check(fields[i].len >= 0 && fields[i].val[fields[i].len] == '\0',
              "a field is NUL-terminated at its length");
        check(!binary || fields[i].type != 0, "a binary field has a type");
        char *fv = exact_copy(fields[i].val, (size_t)fields[i].len);
        Oid type = binary ? fields[i].type
                          : types[(fields[i].len ? (unsigned char)fv[0] : 0) % NTYPES];
        field ff = { .val = fv, .len = fields[i].len, .type = type, .binary = binary };
        decode_all(&ff);
        if (depth > 0 && may_be_record(binary ? type : 0))
            parse_record(fv, (size_t)fields[i].len, binary, depth - 1);
        free(fv);
    }
    free(fields);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size - 2 > INT_MAX)
        return 0;
    Oid type = data[1] & 4 ? (data[1] & 8 ? OID_RECORD_ARRAY : OID_RECORD) : types[data[0] % NTYPES];
    bool binary = data[1] & 1;
    size_t len = size - 2;
    char *val = exact_copy((const char *)data + 2, len);
    field f = { .val = val, .len = (int)len, .type = type, .binary = binary };
    decode_all(&f);

    Oid elem_type = array_elem_type(type);
    if (elem_type) {
        size_t data_len = 0;
        int64_t n = binary ? array_from_binary(val, len, elem_type, NULL, NULL, &data_len)
                           : array_from_text(val, len, NULL, NULL, &data_len);
        if (n >= 0) {
            check((size_t)n <= len, "element count bounded by the value");
            array_elem *elems = malloc((size_t)n * sizeof *elems + 1);
            /* Exactly what the first pass asked for: a second pass writing more is caught. */
            char *copy = malloc(data_len ? data_len : 1);
            check(elems && copy, "malloc");
            size_t again_len = 0;
            int64_t again = binary
                                ? array_from_binary(val, len, elem_type, elems, copy, &again_len)
                                : array_from_text(val, len, elems, copy, &again_len);
            check(again == n && again_len == data_len, "both passes agree");
            for (int64_t i = 0; i < n; i++) {
                if (!elems[i].val)
                    continue;
                check(elems[i].len >= 0 && elems[i].val[elems[i].len] == '\0',
                      "an element is NUL-terminated at its length");
                char *ev = exact_copy(elems[i].val, (size_t)elems[i].len);
                field ef = { .val = ev, .len = elems[i].len, .type = elem_type, .binary = binary };
                decode_all(&ef);
                if (elem_type == OID_RECORD)
                    parse_record(ev, (size_t)elems[i].len, binary, 2);
                free(ev);
            }
            free(elems);
            free(copy);
        }
    }
    if (may_be_record(type))
        parse_record(val, len, binary, 3);
    free(val);
    return 0;
}
