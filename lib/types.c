/*
 * Typed values: decoding result fields (text and binary formats) into C
 * types, and encoding binary parameters (pgev_params).
 *
 * One decoder per type (decode_*) reads a located value, whichever it
 * came from: a result field (field_get) or an element of a decoded array
 * (elem_get, pgev_array); the public pgev_result_get_* and pgev_array_get_*
 * functions at the end of the decoders pair the two.
 *
 * Every decoder checks the column's type OID first, then the value's shape
 * (binary length, text syntax), then the range of the C type, and stores
 * nothing unless all three pass: a mismatch is an error, never a guess.
 * Binary formats are what the server's send/recv functions use (big-endian).
 */
#include "pgev-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Type OIDs from the server's catalog (stable across versions). */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_CHAR = 18,
    OID_NAME = 19,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_OID = 26,
    OID_JSON = 114,
    OID_XML = 142,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_UNKNOWN = 705,
    OID_BPCHAR = 1042,
    OID_VARCHAR = 1043,
    OID_DATE = 1082,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_NUMERIC = 1700,
    OID_UUID = 2950,
    OID_JSONB = 3802,
    OID_INET = 869,
    OID_CIDR = 650,
    OID_INTERVAL = 1186,
    /* Array types (typarray of the element types above). */
    OID_BOOL_ARRAY = 1000,
    OID_BYTEA_ARRAY = 1001,
    OID_CHAR_ARRAY = 1002,
    OID_NAME_ARRAY = 1003,
    OID_INT2_ARRAY = 1005,
    OID_INT4_ARRAY = 1007,
    OID_TEXT_ARRAY = 1009,
    OID_BPCHAR_ARRAY = 1014,
    OID_VARCHAR_ARRAY = 1015,
    OID_INT8_ARRAY = 1016,
    OID_FLOAT4_ARRAY = 1021,
    OID_FLOAT8_ARRAY = 1022,
    OID_OID_ARRAY = 1028,
    OID_INET_ARRAY = 1041,
    OID_TIMESTAMP_ARRAY = 1115,
    OID_DATE_ARRAY = 1182,
    OID_TIMESTAMPTZ_ARRAY = 1185,
    OID_INTERVAL_ARRAY = 1187,
    OID_NUMERIC_ARRAY = 1231,
    OID_CIDR_ARRAY = 651,
    OID_JSON_ARRAY = 199,
    OID_UUID_ARRAY = 2951,
    OID_JSONB_ARRAY = 3807,
    /* The anonymous row type (ROW(...), a SELECT of a whole row), and its array. */
    OID_RECORD = 2249,
    OID_RECORD_ARRAY = 2287
};

/* The server counts dates and timestamps from 2000-01-01; pgev from 1970-01-01. */
#define PG_EPOCH_DAYS 10957                          /* 1970-01-01 .. 2000-01-01 */
#define USEC_PER_SEC INT64_C(1000000)
#define USEC_PER_DAY (INT64_C(86400) * USEC_PER_SEC)
#define PG_EPOCH_USEC ((int64_t)PG_EPOCH_DAYS * USEC_PER_DAY)

/* ------------------------------------------------------------------------
 * Field lookup and byte helpers
 * ------------------------------------------------------------------------ */

/* One located, non-NULL field. */
typedef struct field {
    const char *val;
    int len;
    Oid type;
    bool binary;
} field;

/*
 * Locates a field and checks the output pointer. Returns PGEV_OK, 1 for
 * SQL NULL, or PGEV_EINVAL (no result, no such field, out NULL).
 */
static int
field_get(const pgev_result *res, int row, int col, const void *out, field *f)
{
    if (!res || !res->pg || !out)
        return PGEV_EINVAL;
    const PGresult *pg = res->pg;
    if (row < 0 || row >= PQntuples(pg) || col < 0 || col >= PQnfields(pg))
        return PGEV_EINVAL;
    if (PQgetisnull(pg, row, col))
        return 1;
    f->val = PQgetvalue(pg, row, col);
    f->len = PQgetlength(pg, row, col);
    f->type = PQftype(pg, col);
    f->binary = PQfformat(pg, col) != 0;
    return PGEV_OK;
}

static uint64_t
be_uint(const char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

static void
put_be(char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parses a whole decimal integer; false on junk or overflow. */
static bool
parse_int64(const char *s, int64_t *out)
{
    if (!*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* ------------------------------------------------------------------------
 * Integers, floats, bool, text
 * ------------------------------------------------------------------------ */

/*
 * The decoders below read one located, non-NULL value (a result field or
 * an array element) and store nothing unless they return PGEV_OK. Text
 * values are NUL-terminated at f->len (libpq and pgev_array both ensure it).
 */
static int
decode_int64(const field *fp, int64_t *out)
{
    field f = *fp;
    if (!f.binary) {
        if (f.type != OID_INT2 && f.type != OID_INT4 && f.type != OID_INT8 && f.type != OID_OID)
            return PGEV_EINVAL;
        return parse_int64(f.val, out) ? PGEV_OK : PGEV_EINVAL;
    }
    switch (f.type) {
    case OID_INT2:
        if (f.len != 2)
            return PGEV_EINVAL;
        *out = (int16_t)be_uint(f.val, 2);
        return PGEV_OK;
    case OID_INT4:
        if (f.len != 4)
            return PGEV_EINVAL;
        *out = (int32_t)be_uint(f.val, 4);
        return PGEV_OK;
    case OID_OID:
        if (f.len != 4)
            return PGEV_EINVAL;
        *out = (uint32_t)be_uint(f.val, 4);
        return PGEV_OK;
    case OID_INT8:
        if (f.len != 8)
            return PGEV_EINVAL;
        *out = (int64_t)be_uint(f.val, 8);
        return PGEV_OK;
    default:
        return PGEV_EINVAL;
    }
}

static int
decode_int32(const field *f, int32_t *out)
{
    int64_t wide;
    int rc = decode_int64(f, &wide);
    if (rc != PGEV_OK)
        return rc;
    if (wide < INT32_MIN || wide > INT32_MAX)
        return PGEV_EINVAL;
    *out = (int32_t)wide;
    return PGEV_OK;
}

static int
decode_int16(const field *f, int16_t *out)
{
    int64_t wide;
    int rc = decode_int64(f, &wide);
    if (rc != PGEV_OK)
        return rc;
    if (wide < INT16_MIN || wide > INT16_MAX)
        return PGEV_EINVAL;
    *out = (int16_t)wide;
    return PGEV_OK;
}

static int
decode_double(const field *fp, double *out)
{
    field f = *fp;
    if (f.type == OID_INT2 || f.type == OID_INT4 || f.type == OID_INT8) {
        int64_t i;
        int rc = decode_int64(&f, &i);
        if (rc == PGEV_OK)
            *out = (double)i;
        return rc;
    }
    if (f.type != OID_FLOAT4 && f.type != OID_FLOAT8)
        return PGEV_EINVAL;
    if (!f.binary) {
        /* The server writes NaN, Infinity and -Infinity, which strtod
         * reads; it never writes hex floats, which it would also read. */
        if (!*f.val || f.val[0] == ' ' || strchr(f.val, 'x') || strchr(f.val, 'X'))
            return PGEV_EINVAL;
        /* float4 text is the shortest text that reads back as the same
         * float, not as the same double: read it as a float. */
        char *end;
        errno = 0;
        double d = f.type == OID_FLOAT4 ? (double)strtof(f.val, &end) : strtod(f.val, &end);
        if (*end != '\0' || (errno == ERANGE && isinf(d)))
            return PGEV_EINVAL;
        *out = d;
        return PGEV_OK;
    }
    if (f.type == OID_FLOAT4 && f.len == 4) {
        uint32_t bits = (uint32_t)be_uint(f.val, 4);
        float fl;
        memcpy(&fl, &bits, sizeof fl);
        *out = fl;
    } else if (f.type == OID_FLOAT8 && f.len == 8) {
        uint64_t bits = be_uint(f.val, 8);
        memcpy(out, &bits, sizeof *out);
    } else {
        return PGEV_EINVAL;
    }
    return PGEV_OK;
}

static int
decode_bool(const field *fp, bool *out)
{
    field f = *fp;
    if (f.type != OID_BOOL)
        return PGEV_EINVAL;
    if (!f.binary) {
        if (strcmp(f.val, "t") == 0)
            *out = true;
        else if (strcmp(f.val, "f") == 0)
            *out = false;
        else
            return PGEV_EINVAL;
        return PGEV_OK;
    }
    if (f.len != 1 || (f.val[0] != 0 && f.val[0] != 1))
        return PGEV_EINVAL;
    *out = f.val[0] == 1;
    return PGEV_OK;
}

static int
decode_text(const field *fp, const char **out, size_t *outlen)
{
    field f = *fp;
    if (f.binary && f.type == OID_JSONB) {
        /* jsonb_send: a version byte (1), then the JSON text. */
        if (f.len < 1 || f.val[0] != 1)
            return PGEV_EINVAL;
        f.val++;
        f.len--;
    } else if (f.binary) {
        switch (f.type) {
        case OID_TEXT: case OID_VARCHAR: case OID_BPCHAR: case OID_NAME:
        case OID_JSON: case OID_XML: case OID_UNKNOWN: case OID_CHAR:
            break;
        default:
            return PGEV_EINVAL;
        }
    }
    *out = f.val;
    if (outlen)
        *outlen = (size_t)f.len;
    return PGEV_OK;
}

/* ------------------------------------------------------------------------
 * bytea
 * ------------------------------------------------------------------------ */

/*
 * Decodes bytea text output into buf (when it fits) and returns the byte
 * count, or -1 when malformed. Hex: "\x" then two hex digits per byte.
 * Escape (bytea_output = escape): "\\" is a backslash, "\ooo" an octal
 * byte, anything else itself.
 */
static int64_t
bytea_from_text(const char *s, size_t slen, unsigned char *buf, size_t cap)
{
    size_t n = 0;
    if (slen >= 2 && s[0] == '\\' && s[1] == 'x') {
        if ((slen - 2) % 2 != 0)
            return -1;
        for (size_t i = 2; i < slen; i += 2, n++) {
            int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            if (n < cap)
                buf[n] = (unsigned char)(hi << 4 | lo);
        }
        return (int64_t)n;
    }
    for (size_t i = 0; i < slen; n++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\\') {
            i++;
        } else if (i + 1 < slen && s[i + 1] == '\\') {
            i += 2;
        } else if (i + 3 < slen && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
                   s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            c = (unsigned char)((s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 | (s[i + 3] - '0'));
            i += 4;
        } else {
            return -1;
        }
        if (n < cap)
            buf[n] = c;
    }
    return (int64_t)n;
}

static int
decode_bytea(const field *fp, void *buf, size_t cap, size_t *len)
{
    field f = *fp;
    if (f.type != OID_BYTEA || (!buf && cap > 0))
        return PGEV_EINVAL;
    size_t need;
    if (f.binary) {
        need = (size_t)f.len;
        if (need <= cap && need > 0)
            memcpy(buf, f.val, need);
    } else {
        int64_t n = bytea_from_text(f.val, (size_t)f.len, buf, cap);
        if (n < 0)
            return PGEV_EINVAL;
        need = (size_t)n;
    }
    *len = need;
    return need <= cap ? PGEV_OK : PGEV_EINVAL;
}

/* ------------------------------------------------------------------------
 * numeric
 * ------------------------------------------------------------------------ */

/* The sign word of the binary numeric format. */
#define NUMERIC_POS 0x0000
#define NUMERIC_NEG 0x4000
#define NUMERIC_NAN 0xC000
#define NUMERIC_PINF 0xD000
#define NUMERIC_NINF 0xF000
#define NUMERIC_DSCALE_MASK 0x3FFF
#define NBASE 10000
#define DEC_DIGITS 4

/* Writes text into a caller's buffer while counting what it would need. */
typedef struct sink {
    char *buf;
    size_t cap;
    size_t n;
} sink;

static void
sink_put(sink *s, char c)
{
    if (s->n < s->cap)
        s->buf[s->n] = c;
    s->n++;
}

static void
sink_puts(sink *s, const char *str)
{
    while (*str)
        sink_put(s, *str++);
}

/* One base-10000 digit as DEC_DIGITS decimal digits, or fewer for a leading one. */
static void
sink_nbase_digit(sink *s, int d, bool leading)
{
    char tmp[DEC_DIGITS];
    for (int i = DEC_DIGITS - 1; i >= 0; i--) {
        tmp[i] = (char)('0' + d % 10);
        d /= 10;
    }
    int start = 0;
    if (leading)
        while (start < DEC_DIGITS - 1 && tmp[start] == '0')
            start++;
    for (int i = start; i < DEC_DIGITS; i++)
        sink_put(s, tmp[i]);
}

/* Base-10000 digit i of a binary numeric (validated by the caller). */
static int
nbase_digit(const char *v, int i)
{
    return (int)be_uint(v + 8 + 2 * i, 2);
}

/*
 * Binary numeric (numeric_send): int16 ndigits, int16 weight, uint16 sign,
 * uint16 dscale, then ndigits base-10000 digits, most significant first;
 * the value is sum(digit[i] * 10000^(weight - i)). Printed the way
 * numeric_out does: the integer part without leading zeros ("0" when
 * empty), then exactly dscale fraction digits. Returns false when malformed.
 */
static bool
numeric_from_binary(const char *v, int len, sink *s)
{
    if (len < 8)
        return false;
    int ndigits = (int16_t)be_uint(v, 2);
    int weight = (int16_t)be_uint(v + 2, 2);
    unsigned sign = (unsigned)be_uint(v + 4, 2);
    unsigned dscale_word = (unsigned)be_uint(v + 6, 2);
    if (ndigits < 0 || len != 8 + 2 * ndigits || (dscale_word & ~NUMERIC_DSCALE_MASK) != 0)
        return false;
    switch (sign) {
    case NUMERIC_NAN: sink_puts(s, "NaN"); return ndigits == 0;
    case NUMERIC_PINF: sink_puts(s, "Infinity"); return ndigits == 0;
    case NUMERIC_NINF: sink_puts(s, "-Infinity"); return ndigits == 0;
    case NUMERIC_POS: case NUMERIC_NEG: break;
    default: return false;
    }
    for (int i = 0; i < ndigits; i++)
        if (be_uint(v + 8 + 2 * i, 2) >= NBASE)
            return false;
    int dscale = (int)dscale_word;
    if (sign == NUMERIC_NEG)
        sink_put(s, '-');
    /* Integer part: digit groups 0..weight. */
    if (weight < 0) {
        sink_put(s, '0');
    } else {
        for (int i = 0; i <= weight; i++)
            sink_nbase_digit(s, i < ndigits ? nbase_digit(v, i) : 0, i == 0);
    }
    /* Fraction: group weight+1 onwards (negative positions before the
     * first stored digit are zeros), cut to dscale decimal digits. */
    if (dscale > 0) {
        sink_put(s, '.');
        int written = 0;
        for (int i = weight + 1; written < dscale; i++) {
            int d = i >= 0 && i < ndigits ? nbase_digit(v, i) : 0;
            char tmp[DEC_DIGITS];
            for (int k = DEC_DIGITS - 1; k >= 0; k--) {
                tmp[k] = (char)('0' + d % 10);
                d /= 10;
            }
            for (int k = 0; k < DEC_DIGITS && written < dscale; k++, written++)
                sink_put(s, tmp[k]);
        }
    }
    return true;
}

static int
decode_numeric(const field *fp, char *buf, size_t cap, size_t *len)
{
    field f = *fp;
    if (f.type != OID_NUMERIC || (!buf && cap > 0))
        return PGEV_EINVAL;
    sink s = { .buf = buf, .cap = cap, .n = 0 };
    if (f.binary) {
        if (!numeric_from_binary(f.val, f.len, &s))
            return PGEV_EINVAL;
    } else {
        sink_puts(&s, f.val);
    }
    *len = s.n;
    if (s.n + 1 > cap)
        return PGEV_EINVAL;
    buf[s.n] = '\0';
    return PGEV_OK;
}

/* ------------------------------------------------------------------------
 * uuid
 * ------------------------------------------------------------------------ */

static int
decode_uuid(const field *fp, uint8_t out[16])
{
    field f = *fp;
    if (f.type != OID_UUID)
        return PGEV_EINVAL;
    if (f.binary) {
        if (f.len != 16)
            return PGEV_EINVAL;
        memcpy(out, f.val, 16);
        return PGEV_OK;
    }
    /* The server's canonical form: 8-4-4-4-12 hex digits. */
    if (f.len != 36)
        return PGEV_EINVAL;
    uint8_t bytes[16];
    int n = 0;
    for (int i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (f.val[i] != '-')
                return PGEV_EINVAL;
            i++;
            continue;
        }
        int hi = hex_value(f.val[i]), lo = hex_value(f.val[i + 1]);
        if (hi < 0 || lo < 0)
            return PGEV_EINVAL;
        bytes[n++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    memcpy(out, bytes, 16);
    return PGEV_OK;
}

/* ------------------------------------------------------------------------
 * date, timestamp, timestamptz
 * ------------------------------------------------------------------------ */

/*
 * Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (y is
 * astronomical: 0 is 1 BC). The year is shifted to start in March so that
 * the leap day falls at its end; 400-year cycles have 146097 days.
 */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    if (m <= 2)
        y--;
    int64_t cycle = (y >= 0 ? y : y - 399) / 400;
    int64_t year_of_cycle = y - cycle * 400;
    int month_from_march = m > 2 ? m - 3 : m + 9;
    int64_t day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    int64_t day_of_cycle =
        year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
    /* 719468: days from 0000-03-01 to 1970-01-01. */
    return cycle * 146097 + day_of_cycle - 719468;
}

static int
days_in_month(int64_t y, int m)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Reads exactly n digits (n > 0). */
static bool
read_fixed(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((*s)[i]))
            return false;
        v = v * 10 + ((*s)[i] - '0');
    }
    *s += n;
    *out = v;
    return true;
}

/* Reads an ISO date "YYYY-MM-DD" (4 or more year digits); the BC suffix
 * is handled by the caller since it comes last. */
static bool
read_iso_date(const char **s, int64_t *year, int *month, int *day)
{
    const char *p = *s;
    int64_t y = 0;
    int ndig = 0;
    while (is_digit(*p) && ndig < 10) {
        y = y * 10 + (*p - '0');
        p++;
        ndig++;
    }
    if (ndig < 4 || *p != '-')
        return false;
    p++;
    if (!read_fixed(&p, 2, month) || *p != '-')
        return false;
    p++;
    if (!read_fixed(&p, 2, day))
        return false;
    *year = y;
    *s = p;
    return true;
}

/* Applies a trailing " BC" and checks the calendar; returns days since 1970. */
static bool
finish_date(const char **s, int64_t year, int month, int day, int64_t *days)
{
    if (strncmp(*s, " BC", 3) == 0) {
        if (year == 0)
            return false;
        year = 1 - year;
        *s += 3;
    }
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
        return false;
    *days = days_from_civil(year, month, day);
    return true;
}

static int
decode_date(const field *fp, int32_t *days)
{
    field f = *fp;
    if (f.type != OID_DATE)
        return PGEV_EINVAL;
    if (f.binary) {
        if (f.len != 4)
            return PGEV_EINVAL;
        int32_t pg = (int32_t)be_uint(f.val, 4);
        if (pg == INT32_MAX || pg == INT32_MIN) {
            *days = pg;
            return PGEV_OK;
        }
        int64_t unix_days = (int64_t)pg + PG_EPOCH_DAYS;
        if (unix_days >= INT32_MAX || unix_days <= INT32_MIN)
            return PGEV_EINVAL;
        *days = (int32_t)unix_days;
        return PGEV_OK;
    }
    if (strcmp(f.val, "infinity") == 0) {
        *days = INT32_MAX;
        return PGEV_OK;
    }
    if (strcmp(f.val, "-infinity") == 0) {
        *days = INT32_MIN;
        return PGEV_OK;
    }
    const char *p = f.val;
    int64_t year, d;
    int month, day;
    if (!read_iso_date(&p, &year, &month, &day) || !finish_date(&p, year, month, day, &d) ||
        *p != '\0' || d >= INT32_MAX || d <= INT32_MIN)
        return PGEV_EINVAL;
    *days = (int32_t)d;
    return PGEV_OK;
}

/*
 * Parses the ISO timestamp output: "YYYY-MM-DD HH:MM:SS[.ffffff]", then for
 * timestamptz the UTC offset "+HH[:MM[:SS]]" (seconds appear for historic
 * local mean times), then " BC" for years before 1 AD.
 */
static bool
parse_iso_timestamp(const char *p, bool with_zone, int64_t *usec)
{
    int64_t year;
    int month, day, hour, minute, second;
    if (!read_iso_date(&p, &year, &month, &day) || *p++ != ' ' || !read_fixed(&p, 2, &hour) ||
        *p++ != ':' || !read_fixed(&p, 2, &minute) || *p++ != ':' || !read_fixed(&p, 2, &second))
        return false;
    if (hour > 23 || minute > 59 || second > 59)
        return false;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int ndig = 0;
        while (is_digit(*p)) {
            if (++ndig > 6)
                return false;
            frac = frac * 10 + (*p++ - '0');
        }
        if (ndig == 0)
            return false;
        while (ndig++ < 6)
            frac *= 10;
    }
    int64_t offset_sec = 0;
    if (with_zone) {
        if (*p != '+' && *p != '-')
            return false;
        int sign = *p++ == '-' ? -1 : 1;
        int oh, om = 0, os = 0;
        if (!read_fixed(&p, 2, &oh))
            return false;
        if (*p == ':') {
            p++;
            if (!read_fixed(&p, 2, &om))
                return false;
            if (*p == ':') {
                p++;
                if (!read_fixed(&p, 2, &os))
                    return false;
            }
        }
        if (om > 59 || os > 59)
            return false;
        offset_sec = sign * ((int64_t)oh * 3600 + om * 60 + os);
    }
    int64_t days;
    if (!finish_date(&p, year, month, day, &days) || *p != '\0')
        return false;
    /* local = UTC + offset, so UTC = local - offset; all in checked int64. */
    int64_t secs_of_day = (int64_t)hour * 3600 + minute * 60 + second - offset_sec;
    int64_t t;
    if (__builtin_mul_overflow(days, USEC_PER_DAY, &t) ||
        __builtin_add_overflow(t, secs_of_day * USEC_PER_SEC + frac, &t))
        return false;
    /* Keep the infinities for 'infinity' alone. */
    if (t == INT64_MAX || t == INT64_MIN)
        return false;
    *usec = t;
    return true;
}

static int
decode_timestamp(const field *fp, int64_t *usec)
{
    field f = *fp;
    if (f.type != OID_TIMESTAMP && f.type != OID_TIMESTAMPTZ)
        return PGEV_EINVAL;
    if (f.binary) {
        if (f.len != 8)
            return PGEV_EINVAL;
        int64_t pg = (int64_t)be_uint(f.val, 8);
        if (pg == INT64_MAX || pg == INT64_MIN) {
            *usec = pg;
            return PGEV_OK;
        }
        int64_t t;
        if (__builtin_add_overflow(pg, PG_EPOCH_USEC, &t) || t == INT64_MAX)
            return PGEV_EINVAL;
        *usec = t;
        return PGEV_OK;
    }
    if (strcmp(f.val, "infinity") == 0) {
        *usec = INT64_MAX;
        return PGEV_OK;
    }
    if (strcmp(f.val, "-infinity") == 0) {
        *usec = INT64_MIN;
        return PGEV_OK;
    }
    int64_t t;
    if (!parse_iso_timestamp(f.val, f.type == OID_TIMESTAMPTZ, &t))
        return PGEV_EINVAL;
    *usec = t;
    return PGEV_OK;
}

/* ------------------------------------------------------------------------
 * json, jsonb
 * ------------------------------------------------------------------------ */

static int
decode_json(const field *f, const char **out, size_t *len)
{
    if (f->type != OID_JSON && f->type != OID_JSONB)
        return PGEV_EINVAL;
    return decode_text(f, out, len);
}

/* ------------------------------------------------------------------------
 * inet, cidr
 * ------------------------------------------------------------------------ */

/* The address families of inet_send (PGSQL_AF_INET, PGSQL_AF_INET6). */
#define PG_AF_INET 2
#define PG_AF_INET6 3

/* A cidr has no bits set beyond its prefix. */
static bool
host_bits_zero(const pgev_inet *in)
{
    int nbytes = in->family == 4 ? 4 : 16;
    for (int i = 0; i < nbytes; i++) {
        int keep = in->bits - i * 8; /* prefix bits in this byte */
        uint8_t mask = keep >= 8 ? 0 : keep <= 0 ? 0xff : (uint8_t)(0xff >> keep);
        if (in->addr[i] & mask)
            return false;
    }
    return true;
}

static int
decode_inet(const field *f, pgev_inet *out)
{
    if (f->type != OID_INET && f->type != OID_CIDR)
        return PGEV_EINVAL;
    pgev_inet in;
    memset(&in, 0, sizeof in);
    in.is_cidr = f->type == OID_CIDR;
    int max_bits;
    if (f->binary) {
        /* inet_send: family, bits, is_cidr, address length, address. */
        if (f->len < 4)
            return PGEV_EINVAL;
        const unsigned char *v = (const unsigned char *)f->val;
        int nbytes = v[0] == PG_AF_INET ? 4 : v[0] == PG_AF_INET6 ? 16 : -1;
        if (nbytes < 0 || v[3] != nbytes || f->len != 4 + nbytes || v[2] != (in.is_cidr ? 1 : 0))
            return PGEV_EINVAL;
        in.family = nbytes == 4 ? 4 : 6;
        max_bits = nbytes * 8;
        if (v[1] > max_bits)
            return PGEV_EINVAL;
        in.bits = v[1];
        memcpy(in.addr, v + 4, (size_t)nbytes);
    } else {
        /* "address" or "address/bits"; the address as inet_pton reads it. */
        const char *slash = memchr(f->val, '/', (size_t)f->len);
        size_t alen = slash ? (size_t)(slash - f->val) : (size_t)f->len;
        char addr[64];
        if (alen == 0 || alen >= sizeof addr || memchr(f->val, '\0', alen))
            return PGEV_EINVAL;
        memcpy(addr, f->val, alen);
        addr[alen] = '\0';
        if (inet_pton(AF_INET, addr, in.addr) == 1)
            in.family = 4;
        else if (inet_pton(AF_INET6, addr, in.addr) == 1)
            in.family = 6;
        else
            return PGEV_EINVAL;
        max_bits = in.family == 4 ? 32 : 128;
        int bits = max_bits;
        if (slash) {
            const char *p = slash + 1;
            const char *end = f->val + f->len;
            if (p == end || end - p > 3)
                return PGEV_EINVAL;
            bits = 0;
            for (; p < end; p++) {
                if (!is_digit(*p))
                    return PGEV_EINVAL;
                bits = bits * 10 + (*p - '0');
            }
            if (bits > max_bits)
                return PGEV_EINVAL;
        }
        in.bits = (uint8_t)bits;
    }
    if (in.is_cidr && !host_bits_zero(&in))
        return PGEV_EINVAL;
    *out = in;
    return PGEV_OK;
}

/* ------------------------------------------------------------------------
 * interval
 * ------------------------------------------------------------------------ */

/* Reads an optionally signed decimal integer of at most 19 digits. */
static bool
read_signed(const char **s, int64_t *out)
{
    const char *p = *s;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    int ndig = 0;
    uint64_t v = 0;
    while (is_digit(*p)) {
        if (++ndig > 19)
            return false;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    if (ndig == 0 || v > (uint64_t)INT64_MAX)
        return false;
    *out = neg ? -(int64_t)v : (int64_t)v;
    *s = p;
    return true;
}

/*
 * The server's IntervalStyle 'postgres' output (the default): "1 year
 * 2 mons -3 days +04:05:06.5", each part optional but in that order, a
 * zero interval "00:00:00"; hours are not limited to 24. Other styles are
 * refused.
 */
static bool
parse_interval_postgres(const char *p, pgev_interval *out)
{
    int64_t months = 0, days = 0, usec = 0;
    int stage = 0; /* 0 years, 1 months, 2 days, 3 time: parts come in order */
    bool any = false;
    for (;;) {
        if (any) {
            if (*p == '\0')
                break;
            if (*p++ != ' ')
                return false;
        }
        const char *start = p;
        int64_t n;
        if (!read_signed(&p, &n))
            return false;
        if (*p == ':') {
            /* The time part: [+-]H:MM:SS[.ffffff], last. */
            p = start;
            bool neg = *p == '-';
            if (*p == '+' || *p == '-')
                p++;
            int64_t hours;
            int minutes, seconds;
            if (*p == '+' || *p == '-' || !read_signed(&p, &hours))
                return false;
            if (*p++ != ':' || !read_fixed(&p, 2, &minutes) || *p++ != ':' ||
                !read_fixed(&p, 2, &seconds) || minutes > 59 || seconds > 59)
                return false;
            int64_t frac = 0;
            if (*p == '.') {
                p++;
                int ndig = 0;
                while (is_digit(*p)) {
                    if (++ndig > 6)
                        return false;
                    frac = frac * 10 + (*p++ - '0');
                }
                if (ndig == 0)
                    return false;
                while (ndig++ < 6)
                    frac *= 10;
            }
            int64_t t;
            if (__builtin_mul_overflow(hours, INT64_C(3600) * USEC_PER_SEC, &t) ||
                __builtin_add_overflow(t, ((int64_t)minutes * 60 + seconds) * USEC_PER_SEC + frac,
                                       &t))
                return false;
            usec = neg ? -t : t;
            if (*p != '\0')
                return false;
            any = true;
            break;
        }
        if (*p++ != ' ')
            return false;
        int unit;
        size_t ulen;
        if (strncmp(p, "year", 4) == 0) {
            unit = 0;
            ulen = 4;
        } else if (strncmp(p, "mon", 3) == 0) {
            unit = 1;
            ulen = 3;
        } else if (strncmp(p, "day", 3) == 0) {
            unit = 2;
            ulen = 3;
        } else {
            return false;
        }
        p += ulen;
        /* Singular exactly for 1, as the server prints it. */
        if (n == 1) {
            if (*p == 's')
                return false;
        } else if (*p++ != 's') {
            return false;
        }
        if (unit < stage || n == 0)
            return false;
        stage = unit + 1;
        any = true;
        if (unit == 0) {
            if (__builtin_mul_overflow(n, 12, &n))
                return false;
            months += n; /* years come first: months is 0 here */
        } else if (unit == 1) {
            if (__builtin_add_overflow(months, n, &months))
                return false;
        } else {
            days = n;
        }
    }
    if (!any || months < INT32_MIN || months > INT32_MAX || days < INT32_MIN || days > INT32_MAX)
        return false;
    out->usec = usec;
    out->days = (int32_t)days;
    out->months = (int32_t)months;
    return true;
}

static int
decode_interval(const field *f, pgev_interval *out)
{
    if (f->type != OID_INTERVAL)
        return PGEV_EINVAL;
    pgev_interval iv;
    if (f->binary) {
        /* interval_send: int64 microseconds, int32 days, int32 months. */
        if (f->len != 16)
            return PGEV_EINVAL;
        iv.usec = (int64_t)be_uint(f->val, 8);
        iv.days = (int32_t)be_uint(f->val + 8, 4);
        iv.months = (int32_t)be_uint(f->val + 12, 4);
    } else if (strcmp(f->val, "infinity") == 0) {
        /* PostgreSQL 17's infinite intervals, as the binary format has them. */
        iv.usec = INT64_MAX;
        iv.days = INT32_MAX;
        iv.months = INT32_MAX;
    } else if (strcmp(f->val, "-infinity") == 0) {
        iv.usec = INT64_MIN;
        iv.days = INT32_MIN;
        iv.months = INT32_MIN;
    } else if (!parse_interval_postgres(f->val, &iv)) {
        return PGEV_EINVAL;
    }
    *out = iv;
    return PGEV_OK;
}

/* ------------------------------------------------------------------------
 * Arrays
 * ------------------------------------------------------------------------ */

/* The array types pgev decodes, with their element types. */
static const struct {
    Oid array;
    Oid elem;
} array_types[] = {
    { OID_BOOL_ARRAY, OID_BOOL },         { OID_BYTEA_ARRAY, OID_BYTEA },
    { OID_CHAR_ARRAY, OID_CHAR },         { OID_NAME_ARRAY, OID_NAME },
    { OID_INT2_ARRAY, OID_INT2 },         { OID_INT4_ARRAY, OID_INT4 },
    { OID_TEXT_ARRAY, OID_TEXT },         { OID_BPCHAR_ARRAY, OID_BPCHAR },
    { OID_VARCHAR_ARRAY, OID_VARCHAR },   { OID_INT8_ARRAY, OID_INT8 },
    { OID_FLOAT4_ARRAY, OID_FLOAT4 },     { OID_FLOAT8_ARRAY, OID_FLOAT8 },
    { OID_OID_ARRAY, OID_OID },           { OID_INET_ARRAY, OID_INET },
    { OID_CIDR_ARRAY, OID_CIDR },         { OID_TIMESTAMP_ARRAY, OID_TIMESTAMP },
    { OID_DATE_ARRAY, OID_DATE },         { OID_TIMESTAMPTZ_ARRAY, OID_TIMESTAMPTZ },
    { OID_INTERVAL_ARRAY, OID_INTERVAL }, { OID_NUMERIC_ARRAY, OID_NUMERIC },
    { OID_JSON_ARRAY, OID_JSON },         { OID_JSONB_ARRAY, OID_JSONB },
    { OID_UUID_ARRAY, OID_UUID },         { OID_RECORD_ARRAY, OID_RECORD },
};

static Oid
array_elem_type(Oid array)
{
    for (size_t i = 0; i < sizeof array_types / sizeof array_types[0]; i++)
        if (array_types[i].array == array)
            return array_types[i].elem;
    return 0;
}

/* One element: val is NULL for SQL NULL, else NUL-terminated at len. */
typedef struct array_elem {
    const char *val;
    int len;
} array_elem;

/*
 * A decoded one-dimensional array: one allocation holding this header,
 * the element table and a copy of every element's bytes (each followed by
 * a NUL), so that it outlives the PGresult it came from.
 */
struct pgev_array {
    Oid elem_type;
    bool binary;
    size_t count;
    array_elem elems[];
    /* then the element bytes */
};

/*
 * Parses the server's text output of a one-dimensional array (array_out):
 * an optional "[lower:upper]=" (only when the lower bound is not 1), then
 * "{a,b,...}" or "{}". An element is either unquoted (no whitespace and
 * none of {},"\), where NULL in any case is SQL NULL, or double-quoted with
 * backslash escaping the next character, where "NULL" is the string.
 * Nested braces (more dimensions) are refused. Run twice: first with elems
 * and data NULL to validate and size (element count returned, bytes needed
 * in *data_len), then to fill. Returns -1 when malformed.
 */
static int64_t
array_from_text(const char *s, size_t len, array_elem *elems, char *data, size_t *data_len)
{
    size_t i = 0, d = 0;
    int64_t expected = -1;
    if (i < len && s[i] == '[') {
        i++;
        int64_t lower, upper;
        char bounds[48];
        size_t blen = 0;
        while (i < len && s[i] != ']' && blen < sizeof bounds - 1)
            bounds[blen++] = s[i++];
        bounds[blen] = '\0';
        if (i + 1 >= len || s[i] != ']' || s[i + 1] != '=')
            return -1;
        i += 2;
        const char *bp = bounds;
        if (!read_signed(&bp, &lower) || *bp++ != ':' || !read_signed(&bp, &upper) || *bp ||
            lower < INT32_MIN || upper > INT32_MAX || upper < lower - 1)
            return -1;
        expected = upper - lower + 1;
    }
    if (i >= len || s[i++] != '{')
        return -1;
    int64_t n = 0;
    if (i < len && s[i] == '}') {
        i++;
    } else {
        for (;;) {
            if (i >= len)
                return -1;
            size_t start = d;
            if (s[i] == '"') {
                i++;
                for (;;) {
                    if (i >= len)
                        return -1;
                    char c = s[i++];
                    if (c == '"')
                        break;
                    if (c == '\\') {
                        if (i >= len)
                            return -1;
                        c = s[i++];
                    }
                    if (c == '\0')
                        return -1;
                    if (data)
                        data[d] = c;
                    d++;
                }
            } else {
                size_t from = i;
                while (i < len && s[i] != '\0' && !strchr(",{}\"\\ \t\n\r\v\f", s[i]))
                    i++;
                size_t elen = i - from;
                if (elen == 0)
                    return -1; /* an empty element, a nested '{', a stray quote or NUL */
                if (elen == 4 && strncasecmp(s + from, "NULL", 4) == 0) {
                    if (elems)
                        elems[n] = (array_elem){ NULL, 0 };
                    n++;
                    goto separator;
                }
                if (data)
                    memcpy(data + d, s + from, elen);
                d += elen;
            }
            if (elems) {
                data[d] = '\0';
                elems[n] = (array_elem){ data + start, (int)(d - start) };
            }
            d++;
            n++;
        separator:
            if (i >= len)
                return -1;
            if (s[i] == ',') {
                i++;
                continue;
            }
            if (s[i++] != '}')
                return -1;
            break;
        }
    }
    if (i != len || (expected >= 0 && n != expected))
        return -1;
    *data_len = d;
    return n;
}

/*
 * Parses array_send output: int32 ndim (0 or 1 here), int32 flags (0, or
 * 1 when it has NULLs), the element type OID, then per dimension int32
 * length and int32 lower bound, then per element int32 length (-1: NULL)
 * and that many bytes. Run twice like array_from_text().
 */
static int64_t
array_from_binary(const char *v, size_t len, Oid elem_type, array_elem *elems, char *data,
                  size_t *data_len)
{
    if (len < 12)
        return -1;
    int32_t ndim = (int32_t)be_uint(v, 4);
    uint32_t flags = (uint32_t)be_uint(v + 4, 4);
    Oid type = (Oid)be_uint(v + 8, 4);
    if (flags > 1 || type != elem_type)
        return -1;
    size_t pos = 12;
    int64_t n = 0;
    if (ndim == 1) {
        if (len < 20)
            return -1;
        int32_t dim = (int32_t)be_uint(v + 12, 4);
        int32_t lower = (int32_t)be_uint(v + 16, 4);
        if (dim < 0 || (int64_t)lower + dim - 1 > INT32_MAX)
            return -1;
        n = dim;
        pos = 20;
    } else if (ndim != 0) {
        return -1;
    }
    /* Each element takes at least its 4-byte length. */
    if ((uint64_t)n > (len - pos) / 4)
        return -1;
    size_t d = 0;
    for (int64_t k = 0; k < n; k++) {
        if (len - pos < 4)
            return -1;
        int32_t elen = (int32_t)be_uint(v + pos, 4);
        pos += 4;
        if (elen == -1) {
            if (elems)
                elems[k] = (array_elem){ NULL, 0 };
            continue;
        }
        if (elen < 0 || (size_t)elen > len - pos)
            return -1;
        if (elems) {
            memcpy(data + d, v + pos, (size_t)elen);
            data[d + (size_t)elen] = '\0';
            elems[k] = (array_elem){ data + d, elen };
        }
        pos += (size_t)elen;
        d += (size_t)elen + 1;
    }
    if (pos != len)
        return -1;
    *data_len = d;
    return n;
}

/* Decodes a located array value (a result field, or a field of a record) into a new pgev_array. */
static int
array_from_field(const field *fp, pgev_array **out)
{
    field f = *fp;
    Oid elem_type = array_elem_type(f.type);
    if (!elem_type)
        return PGEV_EINVAL;
    size_t len = (size_t)f.len, data_len = 0;
    int64_t n = f.binary ? array_from_binary(f.val, len, elem_type, NULL, NULL, &data_len)
                         : array_from_text(f.val, len, NULL, NULL, &data_len);
    if (n < 0)
        return PGEV_EINVAL;
    /* n <= f.len and data_len <= f.len + n, but the element table is
     * bigger than the text: check where size_t is narrow. */
    if ((uint64_t)n > (SIZE_MAX - sizeof(pgev_array) - data_len - 1) / sizeof(array_elem))
        return PGEV_ENOMEM;
    size_t head = sizeof(pgev_array) + (size_t)n * sizeof(array_elem);
    pgev_array *a = malloc(head + data_len + 1);
    if (!a)
        return PGEV_ENOMEM;
    a->elem_type = elem_type;
    a->binary = f.binary;
    a->count = (size_t)n;
    char *data = (char *)a + head;
    int64_t again = f.binary ? array_from_binary(f.val, len, elem_type, a->elems, data, &data_len)
                             : array_from_text(f.val, len, a->elems, data, &data_len);
    if (again != n) { /* cannot happen: the same parser on the same bytes */
        free(a);
        return PGEV_EINVAL;
    }
    *out = a;
    return PGEV_OK;
}

int
pgev_result_get_array(const pgev_result *res, int row, int col, pgev_array **out)
{
    field f;
    int rc = field_get(res, row, col, out, &f);
    return rc != PGEV_OK ? rc : array_from_field(&f, out);
}

void
pgev_array_free(pgev_array *a)
{
    free(a);
}

size_t
pgev_array_count(const pgev_array *a)
{
    return a ? a->count : 0;
}

Oid
pgev_array_elem_type(const pgev_array *a)
{
    return a ? a->elem_type : 0;
}

int
pgev_array_is_null(const pgev_array *a, size_t i)
{
    if (!a || i >= a->count)
        return PGEV_EINVAL;
    return a->elems[i].val ? 0 : 1;
}

/* Element i as a field, like field_get(): PGEV_OK, 1 for NULL, or PGEV_EINVAL. */
static int
elem_get(const pgev_array *a, size_t i, const void *out, field *f)
{
    if (!a || !out || i >= a->count)
        return PGEV_EINVAL;
    if (!a->elems[i].val)
        return 1;
    f->val = a->elems[i].val;
    f->len = a->elems[i].len;
    f->type = a->elem_type;
    f->binary = a->binary;
    return PGEV_OK;
}

/* ------------------------------------------------------------------------
 * Records (composite types)
 * ------------------------------------------------------------------------ */

/* The server's own limit on a row's columns (MaxTupleAttributeNumber). */
#define RECORD_MAX_FIELDS 1664

/* One field: val is NULL for SQL NULL, else NUL-terminated at len. */
typedef struct record_field {
    Oid type;
    const char *val;
    int len;
} record_field;

/*
 * A decoded record: one allocation holding this header, the field table
 * and a copy of every field's bytes (each followed by a NUL), like
 * pgev_array, so that it outlives the PGresult it came from.
 */
struct pgev_record {
    bool binary;
    size_t count;
    record_field fields[];
    /* then the field bytes */
};

/*
 * Whether a value of this type can be a record. A composite type's OID is
 * whatever the catalog gave it, so pgev cannot recognise one; it refuses
 * the types it knows to be something else, and the parser refuses what
 * is not a record's output. 0 is a field of a text-format record whose
 * type the server did not say.
 */
static bool
may_be_record(Oid type)
{
    if (type == OID_RECORD || type == 0)
        return true;
    if (array_elem_type(type))
        return false;
    switch (type) {
    case OID_BOOL: case OID_BYTEA: case OID_CHAR: case OID_NAME: case OID_INT8: case OID_INT2:
    case OID_INT4: case OID_TEXT: case OID_OID: case OID_JSON: case OID_XML: case OID_FLOAT4:
    case OID_FLOAT8: case OID_UNKNOWN: case OID_BPCHAR: case OID_VARCHAR: case OID_DATE:
    case OID_TIMESTAMP: case OID_TIMESTAMPTZ: case OID_NUMERIC: case OID_UUID: case OID_JSONB:
    case OID_INET: case OID_CIDR: case OID_INTERVAL:
        return false;
    default:
        return true;
    }
}

/*
 * Parses the server's text output of a record (record_out), with
 * record_in's rules: "(" fields separated by "," ")". A field with no
 * characters at all is SQL NULL; otherwise it is the concatenation of
 * unquoted characters (anything but , ) " \), backslash-escaped characters
 * and double-quoted sections, in which "" is one quote and a backslash
 * escapes the next character ("" alone is the empty string). "()" is
 * refused: the server prints both a record without fields and a record
 * of one NULL that way, and binary format tells them apart. Run twice
 * like array_from_text() (fields and data NULL to validate and size).
 * Returns the field count, or -1 when malformed.
 */
static int64_t
record_from_text(const char *s, size_t len, record_field *fields, char *data, size_t *data_len)
{
    size_t i = 0, d = 0;
    int64_t n = 0;
    if (len < 3 || s[i++] != '(')
        return -1;
    for (;;) {
        if (n >= RECORD_MAX_FIELDS || i >= len)
            return -1;
        if (s[i] == ',' || s[i] == ')') {
            if (fields)
                fields[n] = (record_field){ 0, NULL, 0 };
        } else {
            size_t start = d;
            bool quoted = false;
            while (quoted || (s[i] != ',' && s[i] != ')')) {
                char c = s[i++];
                if (c == '\0')
                    return -1;
                if (c == '\\') {
                    if (i >= len || s[i] == '\0')
                        return -1;
                    c = s[i++];
                } else if (c == '"') {
                    if (!quoted) {
                        quoted = true;
                        goto next;
                    }
                    if (i < len && s[i] == '"') {
                        i++; /* "" inside quotes: one quote */
                    } else {
                        quoted = false;
                        goto next;
                    }
                }
                if (data)
                    data[d] = c;
                d++;
            next:
                if (i >= len)
                    return -1;
            }
            if (fields) {
                data[d] = '\0';
                fields[n] = (record_field){ 0, data + start, (int)(d - start) };
            }
            d++;
        }
        n++;
        if (s[i++] == ')')
            break;
    }
    if (i != len)
        return -1;
    *data_len = d;
    return n;
}

/*
 * Parses record_send output: int32 field count, then per field its type
 * OID, an int32 length (-1: NULL) and that many bytes. Run twice like
 * array_from_binary().
 */
static int64_t
record_from_binary(const char *v, size_t len, record_field *fields, char *data, size_t *data_len)
{
    if (len < 4)
        return -1;
    int32_t n = (int32_t)be_uint(v, 4);
    size_t pos = 4;
    /* Each field takes at least its type and length. */
    if (n < 0 || n > RECORD_MAX_FIELDS || (uint64_t)n > (len - pos) / 8)
        return -1;
    size_t d = 0;
    for (int32_t k = 0; k < n; k++) {
        if (len - pos < 8)
            return -1;
        Oid type = (Oid)be_uint(v + pos, 4);
        int32_t flen = (int32_t)be_uint(v + pos + 4, 4);
        pos += 8;
        if (type == 0)
            return -1;
        if (flen == -1) {
            if (fields)
                fields[k] = (record_field){ type, NULL, 0 };
            continue;
        }
        if (flen < 0 || (size_t)flen > len - pos)
            return -1;
        if (fields) {
            memcpy(data + d, v + pos, (size_t)flen);
            data[d + (size_t)flen] = '\0';
            fields[k] = (record_field){ type, data + d, flen };
        }
        pos += (size_t)flen;
        d += (size_t)flen + 1;
    }
    if (pos != len)
        return -1;
    *data_len = d;
    return n;
}

/* Decodes a located record value (a result field, or a field of a record) into a new pgev_record. */
static int
record_from_field(const field *fp, pgev_record **out)
{
    field f = *fp;
    if (!may_be_record(f.type))
        return PGEV_EINVAL;
    size_t len = (size_t)f.len, data_len = 0;
    int64_t n = f.binary ? record_from_binary(f.val, len, NULL, NULL, &data_len)
                         : record_from_text(f.val, len, NULL, NULL, &data_len);
    if (n < 0)
        return PGEV_EINVAL;
    /* n <= RECORD_MAX_FIELDS and data_len <= f.len + n. */
    size_t head = sizeof(pgev_record) + (size_t)n * sizeof(record_field);
    if (data_len > SIZE_MAX - head - 1)
        return PGEV_ENOMEM;
    pgev_record *r = malloc(head + data_len + 1);
    if (!r)
        return PGEV_ENOMEM;
    r->binary = f.binary;
    r->count = (size_t)n;
    char *data = (char *)r + head;
    int64_t again = f.binary ? record_from_binary(f.val, len, r->fields, data, &data_len)
                             : record_from_text(f.val, len, r->fields, data, &data_len);
    if (again != n) { /* cannot happen: the same parser on the same bytes */
        free(r);
        return PGEV_EINVAL;
    }
    *out = r;
    return PGEV_OK;
}

int
pgev_result_get_record(const pgev_result *res, int row, int col, pgev_record **out)
{
    field f;
    int rc = field_get(res, row, col, out, &f);
    return rc != PGEV_OK ? rc : record_from_field(&f, out);
}

void
pgev_record_free(pgev_record *r)
{
    free(r);
}

size_t
pgev_record_count(const pgev_record *r)
{
    return r ? r->count : 0;
}

int
pgev_record_is_binary(const pgev_record *r)
{
    if (!r)
        return PGEV_EINVAL;
    return r->binary ? 1 : 0;
}

Oid
pgev_record_field_type(const pgev_record *r, size_t i)
{
    return r && i < r->count ? r->fields[i].type : 0;
}

int
pgev_record_set_type(pgev_record *r, size_t i, Oid type)
{
    if (!r || i >= r->count || r->binary || type == 0)
        return PGEV_EINVAL;
    r->fields[i].type = type;
    return PGEV_OK;
}

int
pgev_record_is_null(const pgev_record *r, size_t i)
{
    if (!r || i >= r->count)
        return PGEV_EINVAL;
    return r->fields[i].val ? 0 : 1;
}

/* Field i as a field, like field_get(): PGEV_OK, 1 for NULL, or PGEV_EINVAL. */
static int
record_field_get(const pgev_record *r, size_t i, const void *out, field *f)
{
    if (!r || !out || i >= r->count)
        return PGEV_EINVAL;
    if (!r->fields[i].val)
        return 1;
    f->val = r->fields[i].val;
    f->len = r->fields[i].len;
    f->type = r->fields[i].type;
    f->binary = r->binary;
    return PGEV_OK;
}

int
pgev_record_get_record(const pgev_record *r, size_t i, pgev_record **out)
{
    field f;
    int rc = record_field_get(r, i, out, &f);
    return rc != PGEV_OK ? rc : record_from_field(&f, out);
}

int
pgev_record_get_array(const pgev_record *r, size_t i, pgev_array **out)
{
    field f;
    int rc = record_field_get(r, i, out, &f);
    return rc != PGEV_OK ? rc : array_from_field(&f, out);
}

int
pgev_array_get_record(const pgev_array *a, size_t i, pgev_record **out)
{
    field f;
    int rc = elem_get(a, i, out, &f);
    return rc != PGEV_OK ? rc : record_from_field(&f, out);
}

/* ------------------------------------------------------------------------
 * The public accessors: a result field or an array element, then a decoder
 * ------------------------------------------------------------------------ */

#define DEFINE_ACCESSORS(name, decoder, out_type)                                         \
    int pgev_result_get_##name(const pgev_result *res, int row, int col, out_type out)      \
    {                                                                                       \
        field f;                                                                            \
        int rc = field_get(res, row, col, out, &f);                                         \
        return rc != PGEV_OK ? rc : decoder(&f, out);                                       \
    }                                                                                       \
    int pgev_array_get_##name(const pgev_array *a, size_t i, out_type out)                  \
    {                                                                                       \
        field f;                                                                            \
        int rc = elem_get(a, i, out, &f);                                                   \
        return rc != PGEV_OK ? rc : decoder(&f, out);                                       \
    }                                                                                       \
    int pgev_record_get_##name(const pgev_record *r, size_t i, out_type out)                \
    {                                                                                       \
        field f;                                                                            \
        int rc = record_field_get(r, i, out, &f);                                           \
        return rc != PGEV_OK ? rc : decoder(&f, out);                                       \
    }

DEFINE_ACCESSORS(int64, decode_int64, int64_t *)
DEFINE_ACCESSORS(int32, decode_int32, int32_t *)
DEFINE_ACCESSORS(int16, decode_int16, int16_t *)
DEFINE_ACCESSORS(double, decode_double, double *)
DEFINE_ACCESSORS(bool, decode_bool, bool *)
DEFINE_ACCESSORS(date, decode_date, int32_t *)
DEFINE_ACCESSORS(timestamp, decode_timestamp, int64_t *)
DEFINE_ACCESSORS(inet, decode_inet, pgev_inet *)
DEFINE_ACCESSORS(interval, decode_interval, pgev_interval *)

/* Spelled out: the header declares the output as uint8_t out[16]. */
int
pgev_result_get_uuid(const pgev_result *res, int row, int col, uint8_t out[16])
{
    field f;
    int rc = field_get(res, row, col, out, &f);
    return rc != PGEV_OK ? rc : decode_uuid(&f, out);
}

int
pgev_array_get_uuid(const pgev_array *a, size_t i, uint8_t out[16])
{
    field f;
    int rc = elem_get(a, i, out, &f);
    return rc != PGEV_OK ? rc : decode_uuid(&f, out);
}

int
pgev_record_get_uuid(const pgev_record *r, size_t i, uint8_t out[16])
{
    field f;
    int rc = record_field_get(r, i, out, &f);
    return rc != PGEV_OK ? rc : decode_uuid(&f, out);
}

/* The accessors with a length (text) or a caller's buffer (bytea, numeric). */
#define DEFINE_TEXT_ACCESSORS(name, decoder)                                                  \
    int pgev_result_get_##name(const pgev_result *res, int row, int col, const char **out,     \
                               size_t *len)                                                   \
    {                                                                                         \
        field f;                                                                              \
        int rc = field_get(res, row, col, out, &f);                                           \
        return rc != PGEV_OK ? rc : decoder(&f, out, len);                                    \
    }                                                                                         \
    int pgev_array_get_##name(const pgev_array *a, size_t i, const char **out, size_t *len)   \
    {                                                                                         \
        field f;                                                                              \
        int rc = elem_get(a, i, out, &f);                                                     \
        return rc != PGEV_OK ? rc : decoder(&f, out, len);                                    \
    }                                                                                         \
    int pgev_record_get_##name(const pgev_record *r, size_t i, const char **out, size_t *len) \
    {                                                                                         \
        field f;                                                                              \
        int rc = record_field_get(r, i, out, &f);                                             \
        return rc != PGEV_OK ? rc : decoder(&f, out, len);                                    \
    }

DEFINE_TEXT_ACCESSORS(text, decode_text)
DEFINE_TEXT_ACCESSORS(json, decode_json)

#define DEFINE_BUFFER_ACCESSORS(name, decoder, buf_type)                                      \
    int pgev_result_get_##name(const pgev_result *res, int row, int col, buf_type buf,         \
                               size_t cap, size_t *len)                                       \
    {                                                                                         \
        field f;                                                                              \
        int rc = field_get(res, row, col, len, &f);                                           \
        return rc != PGEV_OK ? rc : decoder(&f, buf, cap, len);                               \
    }                                                                                         \
    int pgev_array_get_##name(const pgev_array *a, size_t i, buf_type buf, size_t cap,        \
                              size_t *len)                                                    \
    {                                                                                         \
        field f;                                                                              \
        int rc = elem_get(a, i, len, &f);                                                     \
        return rc != PGEV_OK ? rc : decoder(&f, buf, cap, len);                               \
    }                                                                                         \
    int pgev_record_get_##name(const pgev_record *r, size_t i, buf_type buf, size_t cap,      \
                               size_t *len)                                                   \
    {                                                                                         \
        field f;                                                                              \
        int rc = record_field_get(r, i, len, &f);                                             \
        return rc != PGEV_OK ? rc : decoder(&f, buf, cap, len);                               \
    }

DEFINE_BUFFER_ACCESSORS(bytea, decode_bytea, void *)
DEFINE_BUFFER_ACCESSORS(numeric, decode_numeric, char *)

/* ------------------------------------------------------------------------
 * Parameters
 * ------------------------------------------------------------------------ */

void
pgev_params_init(pgev_params *p)
{
    if (p) {
        p->count_ = 0;
        p->failed_ = 0;
    }
}

int
pgev_params_count(const pgev_params *p)
{
    return p ? p->count_ : 0;
}

/* Reserves the next slot; -1 (and the list marked failed) when full. */
static int
params_slot(pgev_params *p)
{
    if (!p)
        return -1;
    if (p->count_ >= PGEV_PARAMS_MAX) {
        p->failed_ = 1;
        return -1;
    }
    return p->count_++;
}

/* Marks p failed and returns rc (the sticky error). */
static int
params_fail(pgev_params *p, int rc)
{
    if (p)
        p->failed_ = 1;
    return rc;
}

static int
params_add(pgev_params *p, Oid type, const char *value, int length, int format)
{
    int i = params_slot(p);
    if (i < 0)
        return PGEV_EINVAL;
    p->types_[i] = type;
    p->values_[i] = value;
    p->lengths_[i] = length;
    p->formats_[i] = format;
    p->inline_[i] = false;
    p->owned_[i] = false;
    return PGEV_OK;
}

/* A binary scalar of n big-endian bytes kept in the slot's own storage. */
static int
params_add_scalar(pgev_params *p, Oid type, uint64_t bits, int n)
{
    int i = params_slot(p);
    if (i < 0)
        return PGEV_EINVAL;
    put_be(p->storage_[i].bytes, bits, n);
    p->types_[i] = type;
    p->values_[i] = p->storage_[i].bytes;
    p->lengths_[i] = n;
    p->formats_[i] = 1;
    p->inline_[i] = true;
    p->owned_[i] = false;
    return PGEV_OK;
}

int
pgev_params_null(pgev_params *p, Oid type)
{
    return params_add(p, type, NULL, 0, 0);
}

int
pgev_params_bool(pgev_params *p, bool v)
{
    return params_add_scalar(p, OID_BOOL, v ? 1 : 0, 1);
}

int
pgev_params_int2(pgev_params *p, int16_t v)
{
    return params_add_scalar(p, OID_INT2, (uint16_t)v, 2);
}

int
pgev_params_int4(pgev_params *p, int32_t v)
{
    return params_add_scalar(p, OID_INT4, (uint32_t)v, 4);
}

int
pgev_params_int8(pgev_params *p, int64_t v)
{
    return params_add_scalar(p, OID_INT8, (uint64_t)v, 8);
}

int
pgev_params_float4(pgev_params *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return params_add_scalar(p, OID_FLOAT4, bits, 4);
}

int
pgev_params_float8(pgev_params *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return params_add_scalar(p, OID_FLOAT8, bits, 8);
}

int
pgev_params_text(pgev_params *p, const char *s)
{
    return params_add(p, 0, s, 0, 0);
}

int
pgev_params_numeric(pgev_params *p, const char *decimal)
{
    return params_add(p, OID_NUMERIC, decimal, 0, 0);
}

int
pgev_params_bytea(pgev_params *p, const void *data, size_t len)
{
    if (len > INT_MAX || (!data && len > 0)) {
        if (p)
            p->failed_ = 1;
        return PGEV_EINVAL;
    }
    /* A zero-length bytea still needs a non-NULL pointer (NULL is SQL NULL). */
    return params_add(p, OID_BYTEA, len ? data : "", (int)len, 1);
}

int
pgev_params_uuid(pgev_params *p, const uint8_t uuid[16])
{
    if (!uuid) {
        if (p)
            p->failed_ = 1;
        return PGEV_EINVAL;
    }
    int i = params_slot(p);
    if (i < 0)
        return PGEV_EINVAL;
    memcpy(p->storage_[i].bytes, uuid, 16);
    p->types_[i] = OID_UUID;
    p->values_[i] = p->storage_[i].bytes;
    p->lengths_[i] = 16;
    p->formats_[i] = 1;
    p->inline_[i] = true;
    p->owned_[i] = false;
    return PGEV_OK;
}

int
pgev_params_date(pgev_params *p, int32_t days)
{
    int32_t pg = days;
    if (days != INT32_MAX && days != INT32_MIN) {
        int64_t shifted = (int64_t)days - PG_EPOCH_DAYS;
        /* Never let a finite date turn into the server's -infinity. */
        if (shifted <= INT32_MIN) {
            if (p)
                p->failed_ = 1;
            return PGEV_EINVAL;
        }
        pg = (int32_t)shifted;
    }
    return params_add_scalar(p, OID_DATE, (uint32_t)pg, 4);
}

static int
params_add_time(pgev_params *p, Oid type, int64_t usec)
{
    int64_t pg = usec;
    if (usec != INT64_MAX && usec != INT64_MIN) {
        if (__builtin_sub_overflow(usec, PG_EPOCH_USEC, &pg) || pg == INT64_MIN) {
            if (p)
                p->failed_ = 1;
            return PGEV_EINVAL;
        }
    }
    return params_add_scalar(p, type, (uint64_t)pg, 8);
}

int
pgev_params_timestamp(pgev_params *p, int64_t usec)
{
    return params_add_time(p, OID_TIMESTAMP, usec);
}

int
pgev_params_timestamptz(pgev_params *p, int64_t usec)
{
    return params_add_time(p, OID_TIMESTAMPTZ, usec);
}

int
pgev_params_json(pgev_params *p, const char *json)
{
    return params_add(p, OID_JSON, json, 0, 0);
}

int
pgev_params_jsonb(pgev_params *p, const char *json)
{
    return params_add(p, OID_JSONB, json, 0, 0);
}

/* A binary value of n bytes (n <= sizeof storage_[0].bytes) kept in the slot. */
static int
params_add_inline(pgev_params *p, Oid type, const char *bytes, int n)
{
    int i = params_slot(p);
    if (i < 0)
        return PGEV_EINVAL;
    memcpy(p->storage_[i].bytes, bytes, (size_t)n);
    p->types_[i] = type;
    p->values_[i] = p->storage_[i].bytes;
    p->lengths_[i] = n;
    p->formats_[i] = 1;
    p->inline_[i] = true;
    p->owned_[i] = false;
    return PGEV_OK;
}

int
pgev_params_inet(pgev_params *p, const pgev_inet *in)
{
    if (!p)
        return PGEV_EINVAL;
    if (!in || (in->family != 4 && in->family != 6))
        return params_fail(p, PGEV_EINVAL);
    int nbytes = in->family == 4 ? 4 : 16;
    if (in->bits > nbytes * 8 || (in->is_cidr && !host_bits_zero(in)))
        return params_fail(p, PGEV_EINVAL);
    /* inet_recv: family, bits, is_cidr, address length, address. */
    char buf[20];
    buf[0] = (char)(nbytes == 4 ? PG_AF_INET : PG_AF_INET6);
    buf[1] = (char)in->bits;
    buf[2] = in->is_cidr ? 1 : 0;
    buf[3] = (char)nbytes;
    memcpy(buf + 4, in->addr, (size_t)nbytes);
    return params_add_inline(p, in->is_cidr ? OID_CIDR : OID_INET, buf, 4 + nbytes);
}

int
pgev_params_interval(pgev_params *p, const pgev_interval *iv)
{
    if (!p)
        return PGEV_EINVAL;
    if (!iv)
        return params_fail(p, PGEV_EINVAL);
    char buf[16];
    put_be(buf, (uint64_t)iv->usec, 8);
    put_be(buf + 8, (uint32_t)iv->days, 4);
    put_be(buf + 12, (uint32_t)iv->months, 4);
    return params_add_inline(p, OID_INTERVAL, buf, 16);
}

int
pgev_params_apply(pgev_params *p, pgev_query_args *args)
{
    if (!p || !args || p->failed_)
        return PGEV_EINVAL;
    /* Re-point inline values at this object's storage, in case p was
     * copied after the values were added. */
    for (int i = 0; i < p->count_; i++)
        if (p->inline_[i])
            p->values_[i] = p->storage_[i].bytes;
    args->nparams = p->count_;
    args->param_types = p->types_;
    args->param_values = p->values_;
    args->param_lengths = p->lengths_;
    args->param_formats = p->formats_;
    return PGEV_OK;
}

/* ------------------------------------------------------------------------
 * Array parameters
 * ------------------------------------------------------------------------ */

/* Adds an encoded array that p owns (freed by pgev_params_clear()). */
static int
params_add_owned(pgev_params *p, Oid type, char *buf, size_t len, int format)
{
    int i = params_slot(p);
    if (i < 0) {
        free(buf);
        return PGEV_EINVAL;
    }
    p->types_[i] = type;
    p->values_[i] = buf;
    p->lengths_[i] = (int)len;
    p->formats_[i] = format;
    p->inline_[i] = false;
    p->owned_[i] = true;
    return PGEV_OK;
}

/* Writes one element of a binary array; false when it cannot be sent. */
typedef bool (*elem_encoder)(const void *values, size_t i, char *out);

/*
 * The binary array (array_recv's input) of n fixed-width elements: the
 * header (one dimension, lower bound 1; no dimension when n is 0), then
 * per element its length (-1 for NULL) and width bytes.
 */
static int
params_fixed_array(pgev_params *p, Oid array_type, Oid elem_type, int width, const void *values,
                   const bool *nulls, size_t n, elem_encoder encode)
{
    if (!p)
        return PGEV_EINVAL;
    if ((n > 0 && !values) || n > (size_t)(INT_MAX - 20) / (size_t)(4 + width))
        return params_fail(p, PGEV_EINVAL);
    if (p->count_ >= PGEV_PARAMS_MAX)
        return params_fail(p, PGEV_EINVAL);
    size_t len = n ? 20 + n * (size_t)(4 + width) : 12;
    char *buf = malloc(len);
    if (!buf)
        return params_fail(p, PGEV_ENOMEM);
    bool has_null = false;
    size_t pos = n ? 20 : 12;
    for (size_t i = 0; i < n; i++) {
        if (nulls && nulls[i]) {
            put_be(buf + pos, UINT32_MAX, 4); /* -1 */
            pos += 4;
            has_null = true;
            continue;
        }
        put_be(buf + pos, (uint32_t)width, 4);
        if (!encode(values, i, buf + pos + 4)) {
            free(buf);
            return params_fail(p, PGEV_EINVAL);
        }
        pos += 4 + (size_t)width;
    }
    put_be(buf, n ? 1 : 0, 4);
    put_be(buf + 4, has_null ? 1 : 0, 4);
    put_be(buf + 8, elem_type, 4);
    if (n) {
        put_be(buf + 12, n, 4);
        put_be(buf + 16, 1, 4);
    }
    return params_add_owned(p, array_type, buf, pos, 1);
}

static bool
enc_bool(const void *v, size_t i, char *out)
{
    out[0] = ((const bool *)v)[i] ? 1 : 0;
    return true;
}

static bool
enc_int2(const void *v, size_t i, char *out)
{
    put_be(out, (uint16_t)((const int16_t *)v)[i], 2);
    return true;
}

static bool
enc_int4(const void *v, size_t i, char *out)
{
    put_be(out, (uint32_t)((const int32_t *)v)[i], 4);
    return true;
}

static bool
enc_int8(const void *v, size_t i, char *out)
{
    put_be(out, (uint64_t)((const int64_t *)v)[i], 8);
    return true;
}

static bool
enc_float4(const void *v, size_t i, char *out)
{
    uint32_t bits;
    memcpy(&bits, (const float *)v + i, sizeof bits);
    put_be(out, bits, 4);
    return true;
}

static bool
enc_float8(const void *v, size_t i, char *out)
{
    uint64_t bits;
    memcpy(&bits, (const double *)v + i, sizeof bits);
    put_be(out, bits, 8);
    return true;
}

static bool
enc_uuid(const void *v, size_t i, char *out)
{
    memcpy(out, (const uint8_t *)v + 16 * i, 16);
    return true;
}

/* Unix days to the server's, keeping the infinities (as pgev_params_date()). */
static bool
date_to_pg(int32_t days, int32_t *pg)
{
    if (days == INT32_MAX || days == INT32_MIN) {
        *pg = days;
        return true;
    }
    int64_t shifted = (int64_t)days - PG_EPOCH_DAYS;
    if (shifted <= INT32_MIN) /* never a finite date sent as -infinity */
        return false;
    *pg = (int32_t)shifted;
    return true;
}

static bool
time_to_pg(int64_t usec, int64_t *pg)
{
    if (usec == INT64_MAX || usec == INT64_MIN) {
        *pg = usec;
        return true;
    }
    return !__builtin_sub_overflow(usec, PG_EPOCH_USEC, pg) && *pg != INT64_MIN;
}

static bool
enc_date(const void *v, size_t i, char *out)
{
    int32_t pg;
    if (!date_to_pg(((const int32_t *)v)[i], &pg))
        return false;
    put_be(out, (uint32_t)pg, 4);
    return true;
}

static bool
enc_time(const void *v, size_t i, char *out)
{
    int64_t pg;
    if (!time_to_pg(((const int64_t *)v)[i], &pg))
        return false;
    put_be(out, (uint64_t)pg, 8);
    return true;
}

int
pgev_params_bool_array(pgev_params *p, const bool *v, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_BOOL_ARRAY, OID_BOOL, 1, v, nulls, n, enc_bool);
}

int
pgev_params_int2_array(pgev_params *p, const int16_t *v, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_INT2_ARRAY, OID_INT2, 2, v, nulls, n, enc_int2);
}

int
pgev_params_int4_array(pgev_params *p, const int32_t *v, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_INT4_ARRAY, OID_INT4, 4, v, nulls, n, enc_int4);
}

int
pgev_params_int8_array(pgev_params *p, const int64_t *v, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_INT8_ARRAY, OID_INT8, 8, v, nulls, n, enc_int8);
}

int
pgev_params_float4_array(pgev_params *p, const float *v, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_FLOAT4_ARRAY, OID_FLOAT4, 4, v, nulls, n, enc_float4);
}

int
pgev_params_float8_array(pgev_params *p, const double *v, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_FLOAT8_ARRAY, OID_FLOAT8, 8, v, nulls, n, enc_float8);
}

int
pgev_params_uuid_array(pgev_params *p, const uint8_t (*v)[16], const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_UUID_ARRAY, OID_UUID, 16, v, nulls, n, enc_uuid);
}

int
pgev_params_date_array(pgev_params *p, const int32_t *days, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_DATE_ARRAY, OID_DATE, 4, days, nulls, n, enc_date);
}

int
pgev_params_timestamp_array(pgev_params *p, const int64_t *usec, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_TIMESTAMP_ARRAY, OID_TIMESTAMP, 8, usec, nulls, n, enc_time);
}

int
pgev_params_timestamptz_array(pgev_params *p, const int64_t *usec, const bool *nulls, size_t n)
{
    return params_fixed_array(p, OID_TIMESTAMPTZ_ARRAY, OID_TIMESTAMPTZ, 8, usec, nulls, n,
                              enc_time);
}

/*
 * A binary array of variable-length elements: strings (lens NULL: each
 * element's strlen) or byte strings (lens given); a NULL element pointer
 * is SQL NULL.
 */
static int
params_varlen_array(pgev_params *p, Oid array_type, Oid elem_type, const void *const *v,
                    const size_t *lens, size_t n)
{
    if (!p)
        return PGEV_EINVAL;
    if ((n > 0 && !v) || n > (size_t)(INT_MAX - 20) / 4)
        return params_fail(p, PGEV_EINVAL);
    if (p->count_ >= PGEV_PARAMS_MAX)
        return params_fail(p, PGEV_EINVAL);
    size_t len = n ? 20 : 12;
    for (size_t i = 0; i < n; i++) {
        size_t elen = !v[i] ? 0 : lens ? lens[i] : strlen(v[i]);
        if (elen > (size_t)INT_MAX - 4 || len + 4 + elen > (size_t)INT_MAX)
            return params_fail(p, PGEV_EINVAL);
        len += 4 + elen;
    }
    char *buf = malloc(len ? len : 1);
    if (!buf)
        return params_fail(p, PGEV_ENOMEM);
    bool has_null = false;
    size_t pos = n ? 20 : 12;
    for (size_t i = 0; i < n; i++) {
        if (!v[i]) {
            put_be(buf + pos, UINT32_MAX, 4);
            pos += 4;
            has_null = true;
            continue;
        }
        size_t elen = lens ? lens[i] : strlen(v[i]);
        put_be(buf + pos, elen, 4);
        if (elen)
            memcpy(buf + pos + 4, v[i], elen);
        pos += 4 + elen;
    }
    put_be(buf, n ? 1 : 0, 4);
    put_be(buf + 4, has_null ? 1 : 0, 4);
    put_be(buf + 8, elem_type, 4);
    if (n) {
        put_be(buf + 12, n, 4);
        put_be(buf + 16, 1, 4);
    }
    return params_add_owned(p, array_type, buf, pos, 1);
}

int
pgev_params_text_array(pgev_params *p, const char *const *v, size_t n)
{
    return params_varlen_array(p, OID_TEXT_ARRAY, OID_TEXT, (const void *const *)v, NULL, n);
}

int
pgev_params_bytea_array(pgev_params *p, const void *const *data, const size_t *lens, size_t n)
{
    if (n > 0 && !lens)
        return params_fail(p, PGEV_EINVAL);
    return params_varlen_array(p, OID_BYTEA_ARRAY, OID_BYTEA, data, lens, n);
}

/*
 * numeric[] goes as text ("{"1.5","-2",NULL}") so that no precision is
 * lost and the server parses each decimal as pgev_params_numeric() has it
 * do: every element quoted, with '"' and '\' escaped.
 */
int
pgev_params_numeric_array(pgev_params *p, const char *const *decimals, size_t n)
{
    if (!p)
        return PGEV_EINVAL;
    if (n > 0 && !decimals)
        return params_fail(p, PGEV_EINVAL);
    if (p->count_ >= PGEV_PARAMS_MAX)
        return params_fail(p, PGEV_EINVAL);
    size_t len = 3; /* braces and NUL */
    for (size_t i = 0; i < n; i++) {
        size_t elen = decimals[i] ? 2 + 2 * strlen(decimals[i]) : 4;
        if (elen > (size_t)INT_MAX || len + elen + 1 > (size_t)INT_MAX)
            return params_fail(p, PGEV_EINVAL);
        len += elen + 1;
    }
    char *buf = malloc(len);
    if (!buf)
        return params_fail(p, PGEV_ENOMEM);
    size_t pos = 0;
    buf[pos++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf[pos++] = ',';
        if (!decimals[i]) {
            memcpy(buf + pos, "NULL", 4);
            pos += 4;
            continue;
        }
        buf[pos++] = '"';
        for (const char *c = decimals[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                buf[pos++] = '\\';
            buf[pos++] = *c;
        }
        buf[pos++] = '"';
    }
    buf[pos++] = '}';
    buf[pos] = '\0';
    return params_add_owned(p, OID_NUMERIC_ARRAY, buf, 0, 0);
}

void
pgev_params_clear(pgev_params *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->count_; i++)
        if (p->owned_[i])
            free((void *)p->values_[i]);
    pgev_params_init(p);
}
