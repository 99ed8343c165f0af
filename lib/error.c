/*
 * Status codes and structured errors.
 */
#include "pgev-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
pgev_strerror(int status)
{
    switch (status) {
    case PGEV_OK: return "success";
    case PGEV_EINVAL: return "invalid argument";
    case PGEV_ENOMEM: return "out of memory";
    case PGEV_EQUEUEFULL: return "pending queue is full";
    case PGEV_ECLOSED: return "connection is closed";
    case PGEV_ECONNECT: return "could not connect";
    case PGEV_ECONNLOST: return "connection lost";
    case PGEV_ESERVER: return "server error";
    case PGEV_EABORTED: return "no effect: its batch or transaction failed";
    case PGEV_ECANCELLED: return "cancelled";
    case PGEV_ETIMEOUT: return "timed out";
    case PGEV_ESTATE: return "not allowed now: a batch or transaction is open, or none is";
    default: return "unknown error";
    }
}

int
pgev_error_code(const pgev_error *err)
{
    return err ? err->code : PGEV_EINVAL;
}

const char *
pgev_error_sqlstate(const pgev_error *err)
{
    return err && err->sqlstate ? err->sqlstate : "";
}

const char *
pgev_error_severity(const pgev_error *err)
{
    return err && err->severity ? err->severity : "";
}

const char *
pgev_error_message(const pgev_error *err)
{
    if (!err)
        return "no error object (NULL)";
    if (err->message && err->message[0])
        return err->message;
    return pgev_strerror(err->code);
}

const char *
pgev_error_detail(const pgev_error *err)
{
    return err ? err->detail : NULL;
}

const char *
pgev_error_hint(const pgev_error *err)
{
    return err ? err->hint : NULL;
}

int
pgev_error_position(const pgev_error *err)
{
    return err ? err->position : 0;
}

/* Drops trailing newlines and spaces libpq leaves on its messages. */
static void
chomp(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

/* ---- secrets ----------------------------------------------------------
 *
 * libpq puts the conninfo it could not parse into its messages, password
 * included ('invalid URI ...: "postgresql://alice:pw@[::1"'), and a server
 * may relay such a message (dblink). Every message pgev builds from libpq
 * or server text passes here first. What counts as a secret, as libpq
 * would read it:
 *  - the password of a URI's userinfo: "scheme://user:SECRET@host";
 *  - the value after a key ending in "password" (password=, sslpassword=,
 *    a URI's ?password=), quoted or not, with spaces around "=";
 * and either with the key or the "=" percent-encoded (pass%77ord%3D...),
 * as libpq decodes URIs. A value percent-encoded is masked like any value.
 * Masking errs on the side of hiding too much. */

#define PGEV_MASK "********"

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

/* One character of s, literal or %XX-encoded; *len gets how many bytes it
 * took. -1 at the end of the string. */
static int
decoded_char(const char *s, size_t *len)
{
    if (s[0] == '%' && hex_value(s[1]) >= 0 && hex_value(s[2]) >= 0) {
        *len = 3;
        return hex_value(s[1]) * 16 + hex_value(s[2]);
    }
    *len = 1;
    return s[0] ? (unsigned char)s[0] : -1;
}

static int
lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Length of `word` at s, each character literal or percent-encoded, case
 * ignored; 0 when it is not there. */
static size_t
match_encoded(const char *s, const char *word)
{
    size_t at = 0;
    for (const char *w = word; *w; w++) {
        size_t n;
        int c = decoded_char(s + at, &n);
        if (c < 0 || lower(c) != *w)
            return 0;
        at += n;
    }
    return at;
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* After a "password" key at s: the offset where its value starts (past
 * spaces and "="), or 0 when no "=" follows (prose, not a key). */
static size_t
value_start(const char *s)
{
    size_t at = 0;
    while (is_space(s[at]))
        at++;
    size_t n;
    if (decoded_char(s + at, &n) != '=')
        return 0;
    at += n;
    while (s[at] == ' ' || s[at] == '\t')
        at++;
    return at;
}

/* Length of the value at s: a libpq-quoted one ('...' with backslash
 * escapes) or up to a space, '&', '"' or the end. */
static size_t
value_length(const char *s)
{
    size_t at = 0;
    if (s[0] == '\'') {
        for (at = 1; s[at] && s[at] != '\''; at++)
            if (s[at] == '\\' && s[at + 1])
                at++;
        return s[at] ? at + 1 : at;
    }
    while (s[at] && !is_space(s[at]) && s[at] != '&' && s[at] != '"')
        at++;
    return at;
}

/* At a URI scheme ("postgres://" or "postgresql://"): the offsets of the
 * userinfo's password (from just after "user:" up to the last '@' of the
 * word), or false when the URI carries none. */
static bool
uri_password(const char *s, size_t *from, size_t *to)
{
    size_t at = match_encoded(s, "postgresql://");
    if (!at)
        at = match_encoded(s, "postgres://");
    if (!at)
        return false;
    size_t end = at, last_at = 0, colon = 0;
    for (; s[end] && !is_space(s[end]); end++) {
        if (s[end] == '@')
            last_at = end;
    }
    if (!last_at)
        return false;
    for (size_t i = at; i < last_at; i++) {
        if (s[i] == ':') {
            colon = i;
            break;
        }
    }
    if (!colon)
        return false;
    *from = colon + 1;
    *to = last_at;
    return true;
}

static bool
may_hold_secret(const char *s)
{
    for (; *s; s++) {
        if (*s == ':' && s[1] == '/' && s[2] == '/')
            return true;
        if ((*s == 'p' || *s == 'P' || *s == '%') && match_encoded(s, "password"))
            return true;
    }
    return false;
}

size_t
pgev_mask_secrets(char *dst, size_t cap, const char *src)
{
    size_t out = 0;
    if (cap == 0)
        return 0;
#define EMIT(ptr, n)                                                                           \
    do {                                                                                       \
        size_t emit_n = (n);                                                                   \
        if (emit_n > cap - 1 - out)                                                            \
            emit_n = cap - 1 - out;                                                            \
        memmove(dst + out, (ptr), emit_n);                                                     \
        out += emit_n;                                                                         \
    } while (0)
    size_t i = 0;
    while (src[i]) {
        size_t from, to, key, val;
        if (uri_password(src + i, &from, &to)) {
            EMIT(src + i, from);
            EMIT(PGEV_MASK, sizeof(PGEV_MASK) - 1);
            i += to;
            continue;
        }
        if ((key = match_encoded(src + i, "password")) && (val = value_start(src + i + key))) {
            size_t len = value_length(src + i + key + val);
            EMIT(src + i, key + val);
            EMIT(PGEV_MASK, sizeof(PGEV_MASK) - 1);
            i += key + val + len;
            continue;
        }
        EMIT(src + i, 1);
        i++;
    }
#undef EMIT
    dst[out] = '\0';
    return out;
}

/* Masks `*field` into err->buf at *used when it may hold a secret. */
static void
mask_field(pgev_error *err, size_t *used, const char **field)
{
    if (!*field || !may_hold_secret(*field) || *used >= sizeof(err->buf))
        return;
    char *out = err->buf + *used;
    size_t n = pgev_mask_secrets(out, sizeof(err->buf) - *used, *field);
    *field = out;
    *used += n + 1;
}

void
pgev_error_set(pgev_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    char raw[sizeof(err->buf)];
    memset(err, 0, offsetof(pgev_error, buf));
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    pgev_mask_secrets(err->buf, sizeof(err->buf), raw);
    chomp(err->buf);
    err->message = err->buf;
}

void
pgev_error_from_result(pgev_error *err, int code, const PGresult *res)
{
    memset(err, 0, offsetof(pgev_error, buf));
    err->buf[0] = '\0';
    err->code = code;
    err->sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    err->severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!err->severity)
        err->severity = PQresultErrorField(res, PG_DIAG_SEVERITY);
    err->message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    err->detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    err->hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
    const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    err->position = pos ? atoi(pos) : 0;
    if (!err->message || !err->message[0]) {
        /* A libpq-generated error result (lost connection, say) has only
         * the whole message, with a trailing newline. */
        pgev_mask_secrets(err->buf, sizeof(err->buf), PQresultErrorMessage(res));
        chomp(err->buf);
        err->message = err->buf[0] ? err->buf : pgev_strerror(code);
    } else {
        /* A server may relay a conninfo (dblink, postgres_fdw): the fields
         * that may hold one are masked into buf, the rest stay borrowed. */
        size_t used = 0;
        mask_field(err, &used, &err->message);
        mask_field(err, &used, &err->detail);
        mask_field(err, &used, &err->hint);
    }
}

void
pgev_error_from_conn(pgev_error *err, int code, const PGconn *pg, const char *fallback)
{
    const char *msg = pg ? PQerrorMessage(pg) : NULL;
    if (!msg || !msg[0])
        msg = fallback;
    pgev_error_set(err, code, "%s", msg);
}

/* Appends src to dst's buffer at *used, returning the copy (or NULL). */
static const char *
copy_field(pgev_error *dst, size_t *used, const char *src)
{
    if (!src)
        return NULL;
    size_t room = sizeof(dst->buf) - *used;
    if (room == 0)
        return "";
    char *out = dst->buf + *used;
    size_t n = strlen(src);
    if (n >= room)
        n = room - 1;
    memcpy(out, src, n);
    out[n] = '\0';
    *used += n + 1;
    return out;
}

void
pgev_error_copy(pgev_error *dst, const pgev_error *src)
{
    /* dst and src are distinct objects, so src's fields (which may point
     * into src->buf or a PGresult) stay readable while dst->buf is filled. */
    if (dst == src)
        return;
    size_t used = 0;
    dst->code = src->code;
    dst->position = src->position;
    /* The short fields first, so a long message cannot crowd them out. */
    dst->sqlstate = copy_field(dst, &used, src->sqlstate);
    dst->severity = copy_field(dst, &used, src->severity);
    dst->message = copy_field(dst, &used, src->message);
    dst->detail = copy_field(dst, &used, src->detail);
    dst->hint = copy_field(dst, &used, src->hint);
}
