/*
 * Result accessors and typed field decoding (text and binary formats).
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
    OID_VARCHAR = 1043
};

int
pgev_result_status(const pgev_result *res)
{
    return res ? res->status : PGEV_EINVAL;
}

const pgev_error *
pgev_result_error(const pgev_result *res)
{
    return res ? res->error : NULL;
}

PGresult *
pgev_result_pg(const pgev_result *res)
{
    return res ? res->pg : NULL;
}

PGresult *
pgev_result_steal(pgev_result *res)
{
    if (!res)
        return NULL;
    PGresult *pg = res->pg;
    res->pg = NULL;
    return pg;
}

int64_t
pgev_result_query_id(const pgev_result *res)
{
    return res ? res->query_id : 0;
}

const char *
pgev_result_command(const pgev_result *res)
{
    if (!res || !res->tag_source)
        return "";
    return PQcmdStatus(res->tag_source);
}

int64_t
pgev_result_rows_affected(const pgev_result *res)
{
    if (!res || !res->tag_source)
        return -1;
    const char *n = PQcmdTuples(res->tag_source);
    if (!n || !n[0])
        return -1;
    return strtoll(n, NULL, 10);
}

int64_t
pgev_result_rows(const pgev_result *res)
{
    return res ? res->rows : 0;
}

/*
 * Locates a field. Returns PGEV_OK, 1 for SQL NULL, or PGEV_EINVAL.
 */
static int
field(const pgev_result *res, int row, int col, const char **val, int *len, Oid *type, int *format)
{
    if (!res || !res->pg)
        return PGEV_EINVAL;
    const PGresult *pg = res->pg;
    if (row < 0 || row >= PQntuples(pg) || col < 0 || col >= PQnfields(pg))
        return PGEV_EINVAL;
    if (PQgetisnull(pg, row, col))
        return 1;
    *val = PQgetvalue(pg, row, col);
    *len = PQgetlength(pg, row, col);
    *type = PQftype(pg, col);
    *format = PQfformat(pg, col);
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

int
pgev_result_get_int64(const pgev_result *res, int row, int col, int64_t *out)
{
    const char *v;
    int len, format;
    Oid type;
    int rc = field(res, row, col, &v, &len, &type, &format);
    if (rc != PGEV_OK || !out)
        return out ? rc : PGEV_EINVAL;
    if (type != OID_INT2 && type != OID_INT4 && type != OID_INT8 && type != OID_OID)
        return PGEV_EINVAL;
    if (format == 0)
        return parse_int64(v, out) ? PGEV_OK : PGEV_EINVAL;
    switch (len) {
    case 2: *out = (int16_t)be_uint(v, 2); break;
    case 4: *out = type == OID_OID ? (int64_t)(uint32_t)be_uint(v, 4) : (int64_t)(int32_t)be_uint(v, 4); break;
    case 8: *out = (int64_t)be_uint(v, 8); break;
    default: return PGEV_EINVAL;
    }
    return PGEV_OK;
}

int
pgev_result_get_int32(const pgev_result *res, int row, int col, int32_t *out)
{
    int64_t wide;
    int rc = pgev_result_get_int64(res, row, col, &wide);
    if (rc != PGEV_OK || !out)
        return out ? rc : PGEV_EINVAL;
    if (wide < INT32_MIN || wide > INT32_MAX)
        return PGEV_EINVAL;
    *out = (int32_t)wide;
    return PGEV_OK;
}

int
pgev_result_get_double(const pgev_result *res, int row, int col, double *out)
{
    const char *v;
    int len, format;
    Oid type;
    int rc = field(res, row, col, &v, &len, &type, &format);
    if (rc != PGEV_OK || !out)
        return out ? rc : PGEV_EINVAL;
    if (type == OID_INT2 || type == OID_INT4 || type == OID_INT8) {
        int64_t i;
        rc = pgev_result_get_int64(res, row, col, &i);
        if (rc == PGEV_OK)
            *out = (double)i;
        return rc;
    }
    if (type != OID_FLOAT4 && type != OID_FLOAT8)
        return PGEV_EINVAL;
    if (format == 0) {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (end == v || *end != '\0' || (errno == ERANGE && isinf(d)))
            return PGEV_EINVAL;
        *out = d;
        return PGEV_OK;
    }
    if (len == 4) {
        uint32_t bits = (uint32_t)be_uint(v, 4);
        float f;
        memcpy(&f, &bits, sizeof(f));
        *out = f;
    } else if (len == 8) {
        uint64_t bits = be_uint(v, 8);
        memcpy(out, &bits, sizeof(*out));
    } else {
        return PGEV_EINVAL;
    }
    return PGEV_OK;
}

int
pgev_result_get_bool(const pgev_result *res, int row, int col, bool *out)
{
    const char *v;
    int len, format;
    Oid type;
    int rc = field(res, row, col, &v, &len, &type, &format);
    if (rc != PGEV_OK || !out)
        return out ? rc : PGEV_EINVAL;
    if (type != OID_BOOL)
        return PGEV_EINVAL;
    if (format == 0) {
        if (strcmp(v, "t") == 0)
            *out = true;
        else if (strcmp(v, "f") == 0)
            *out = false;
        else
            return PGEV_EINVAL;
        return PGEV_OK;
    }
    if (len != 1)
        return PGEV_EINVAL;
    *out = v[0] != 0;
    return PGEV_OK;
}

int
pgev_result_get_text(const pgev_result *res, int row, int col, const char **out, size_t *outlen)
{
    const char *v;
    int len, format;
    Oid type;
    int rc = field(res, row, col, &v, &len, &type, &format);
    if (rc != PGEV_OK || !out)
        return out ? rc : PGEV_EINVAL;
    if (format != 0) {
        switch (type) {
        case OID_TEXT: case OID_VARCHAR: case OID_BPCHAR: case OID_NAME:
        case OID_JSON: case OID_XML: case OID_UNKNOWN: case OID_CHAR:
            break;
        default:
            return PGEV_EINVAL;
        }
    }
    *out = v;
    if (outlen)
        *outlen = (size_t)len;
    return PGEV_OK;
}
