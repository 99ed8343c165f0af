/*
 * Typed values: decoding result fields (text and binary formats) into C
 * types, and encoding binary parameters (pgev_params).
 *
 * Every decoder checks the column's type OID first, then the value's shape
 * (binary length, text syntax), then the range of the C type, and stores
 * nothing unless all three pass: a mismatch is an error, never a guess.
 * Binary formats are what the server's send/recv functions use (big-endian).
 */
#include "pgev-internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    OID_UUID = 2950
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

int
pgev_result_get_int64(const pgev_result *res, int row, int col, int64_t *out)
{
    field f;
    int rc = field_get(res, row, col, out, &f);
    if (rc != PGEV_OK)
        return rc;
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

/* Reads an integer field that must fit in [min, max]. */
static int
get_int_in_range(const pgev_result *res, int row, int col, bool want, int64_t min, int64_t max,
                 int64_t *out)
{
    int rc = pgev_result_get_int64(res, row, col, want ? out : NULL);
    if (rc != PGEV_OK)
        return rc;
    return *out < min || *out > max ? PGEV_EINVAL : PGEV_OK;
}

int
pgev_result_get_int32(const pgev_result *res, int row, int col, int32_t *out)
{
    int64_t wide;
    int rc = get_int_in_range(res, row, col, out != NULL, INT32_MIN, INT32_MAX, &wide);
    if (rc == PGEV_OK)
        *out = (int32_t)wide;
    return rc;
}

int
pgev_result_get_int16(const pgev_result *res, int row, int col, int16_t *out)
{
    int64_t wide;
    int rc = get_int_in_range(res, row, col, out != NULL, INT16_MIN, INT16_MAX, &wide);
    if (rc == PGEV_OK)
        *out = (int16_t)wide;
    return rc;
}

int
pgev_result_get_double(const pgev_result *res, int row, int col, double *out)
{
    field f;
    int rc = field_get(res, row, col, out, &f);
    if (rc != PGEV_OK)
        return rc;
    if (f.type == OID_INT2 || f.type == OID_INT4 || f.type == OID_INT8) {
        int64_t i;
        rc = pgev_result_get_int64(res, row, col, &i);
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

int
pgev_result_get_bool(const pgev_result *res, int row, int col, bool *out)
{
    field f;
    int rc = field_get(res, row, col, out, &f);
    if (rc != PGEV_OK)
        return rc;
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

int
pgev_result_get_text(const pgev_result *res, int row, int col, const char **out, size_t *outlen)
{
    field f;
    int rc = field_get(res, row, col, out, &f);
    if (rc != PGEV_OK)
        return rc;
    if (f.binary) {
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

int
pgev_result_get_bytea(const pgev_result *res, int row, int col, void *buf, size_t cap, size_t *len)
{
    field f;
    int rc = field_get(res, row, col, len, &f);
    if (rc != PGEV_OK)
        return rc;
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

int
pgev_result_get_numeric(const pgev_result *res, int row, int col, char *buf, size_t cap, size_t *len)
{
    field f;
    int rc = field_get(res, row, col, len, &f);
    if (rc != PGEV_OK)
        return rc;
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

int
pgev_result_get_uuid(const pgev_result *res, int row, int col, uint8_t out[16])
{
    field f;
    int rc = field_get(res, row, col, out, &f);
    if (rc != PGEV_OK)
        return rc;
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

int
pgev_result_get_date(const pgev_result *res, int row, int col, int32_t *days)
{
    field f;
    int rc = field_get(res, row, col, days, &f);
    if (rc != PGEV_OK)
        return rc;
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

int
pgev_result_get_timestamp(const pgev_result *res, int row, int col, int64_t *usec)
{
    field f;
    int rc = field_get(res, row, col, usec, &f);
    if (rc != PGEV_OK)
        return rc;
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
