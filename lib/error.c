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
    case PGEV_EABORTED: return "aborted: an earlier query in the batch failed";
    case PGEV_ECANCELLED: return "cancelled";
    case PGEV_ETIMEOUT: return "timed out";
    case PGEV_EBATCH: return "atomic batch misuse";
    case PGEV_ELIBPQ: return "libpq error";
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

void
pgev_error_set(pgev_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    memset(err, 0, offsetof(pgev_error, buf));
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->buf, sizeof(err->buf), fmt, ap);
    va_end(ap);
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
        snprintf(err->buf, sizeof(err->buf), "%s", PQresultErrorMessage(res));
        chomp(err->buf);
        err->message = err->buf[0] ? err->buf : pgev_strerror(code);
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
