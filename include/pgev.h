/*
 * pgev — asynchronous PostgreSQL client for C, on libpq and libevent.
 *
 * A pgev_conn drives one libpq connection from an application-owned
 * libevent event_base. Queries are queued, pipelined onto the connection
 * (libpq pipeline mode) and each query gets its own completion callback;
 * rows can be streamed to a callback as they arrive.
 *
 * Contracts (they hold on every path: success, SQL error, lost connection,
 * close, free):
 *
 *  - Every accepted request's completion callback runs exactly once. A call
 *    that returns an error (a negative PGEV_E* code, or NULL) never calls
 *    back.
 *  - A completion reports what the server did. A query completes when the
 *    answer to its Sync arrives (the end of its implicit transaction, or of
 *    its atomic batch), not when its results end: PGEV_OK for a statement
 *    that writes means its transaction committed (inside an explicit
 *    transaction: the statement succeeded; the COMMIT reports the rest).
 *    A commit that fails at the Sync (deferred constraint, serialization
 *    failure) is PGEV_ESERVER with the server's SQLSTATE for every query of
 *    that segment, never a lost connection and never another query's
 *    error. A query is never PGEV_OK without its PGresult.
 *  - Unknown is reported as unknown: when the connection is lost after a
 *    query was sent and before its Sync's answer was read, it completes
 *    with PGEV_ECONNLOST and pgev_result_sent() = 1 (it may or may not
 *    have committed); pgev_result_sent() = 0 says it never reached the
 *    server and may safely run again (pgx calls this SafeToRetry).
 *  - Callbacks run only from the event loop (or from pgev_conn_free(), which
 *    completes what is still queued), never inside the call that submitted
 *    the work.
 *  - Queries on one connection run in submission order.
 *  - pgev never blocks the loop thread and never runs or frees the
 *    event_base. A connection belongs to one base, and so to the one thread
 *    that runs that base; use separate connections (and bases) in separate
 *    threads. pgev has no global mutable state but one atomic counter
 *    (pgev_cancel_threads()).
 *  - Freeing a connection from inside one of its own callbacks is safe.
 *  - Bad input gets a clear error code and message, never a crash, and never
 *    loses another query's result.
 *  - Memory is bounded by configuration: the pending queue has a limit, and a
 *    streamed result is delivered row by row in constant memory.
 *
 * Ownership in one sentence: everything pgev hands to a callback (results,
 * errors, strings) is borrowed for the duration of that callback, except a
 * PGresult taken with pgev_result_steal(), which then belongs to the caller.
 */
#ifndef PGEV_H
#define PGEV_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <libpq-fe.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PGEV_BUILDING) && defined(__GNUC__)
#define PGEV_API __attribute__((visibility("default")))
#else
#define PGEV_API
#endif

struct event_base;
struct evdns_base;

/** Library version, as a string and as a number (major*10000+minor*100+patch). */
#define PGEV_VERSION_STRING "0.2.0"
#define PGEV_VERSION_NUMBER 200

/* ------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------ */

/**
 * Status codes. 0 is success; every error is negative, so a submit that
 * returns a query id (> 0) or an error can be tested with `< 0`.
 * The same codes are the category of a pgev_error.
 */
typedef enum pgev_status {
    PGEV_OK = 0,
    PGEV_EINVAL = -1,     /**< bad argument: NULL, malformed, out of range */
    PGEV_ENOMEM = -2,     /**< allocation failed */
    PGEV_EQUEUEFULL = -3, /**< the pending queue is at its limit (backpressure) */
    PGEV_ECLOSED = -4,    /**< the connection is closing, closed or failed */
    PGEV_ECONNECT = -5,   /**< could not connect (unreachable, auth, bad conninfo) */
    PGEV_ECONNLOST = -6,  /**< the connection was lost (server gone, socket error) */
    PGEV_ESERVER = -7,    /**< the server reported an error for this query */
    PGEV_EABORTED = -8,   /**< no effect: its atomic batch or transaction failed (not run, or rolled back) */
    PGEV_ECANCELLED = -9, /**< cancelled by the application (e.g. pgev_conn_free) */
    PGEV_ETIMEOUT = -10,  /**< a deadline passed (e.g. the connect timeout) */
    PGEV_ESTATE = -11     /**< not allowed in the connection's state: a batch or transaction is
                           *   open (begin), or none is (end); the message says which */
} pgev_status;

/**
 * Returns a short, static English description of a status code
 * (e.g. "connection lost"). Never NULL; unknown codes give "unknown error".
 * Thread-safe.
 */
PGEV_API const char *pgev_strerror(int status);

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

/**
 * A structured error: what went wrong (the category, one of pgev_status),
 * and when the server said so, its fields. Borrowed: valid only during the
 * callback that received it (or, for pgev_conn_error(), until the next call
 * on that connection).
 */
typedef struct pgev_error pgev_error;

/** The category: a negative pgev_status (PGEV_ESERVER for SQL errors). */
PGEV_API int pgev_error_code(const pgev_error *err);

/**
 * The five-character SQLSTATE (e.g. "23505"), or "" when the error did not
 * come from the server (a lost connection without a server message, say).
 */
PGEV_API const char *pgev_error_sqlstate(const pgev_error *err);

/** Severity as the server sent it, untranslated ("ERROR", "FATAL", "NOTICE"...), or "". */
PGEV_API const char *pgev_error_severity(const pgev_error *err);

/**
 * The primary human-readable message, never NULL or empty, with no trailing
 * newline. For client-side errors it says what was wrong with the request.
 * Passwords never appear in it.
 */
PGEV_API const char *pgev_error_message(const pgev_error *err);

/** The server's DETAIL field, or NULL. */
PGEV_API const char *pgev_error_detail(const pgev_error *err);

/** The server's HINT field, or NULL. */
PGEV_API const char *pgev_error_hint(const pgev_error *err);

/** 1-based character position of the error in the query text, or 0 when unknown. */
PGEV_API int pgev_error_position(const pgev_error *err);

/* ------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------ */

/**
 * What a query callback receives: the outcome and, on success, the libpq
 * PGresult. Borrowed for the duration of the callback; pgev frees it after
 * the callback returns unless pgev_result_steal() took the PGresult.
 */
typedef struct pgev_result pgev_result;

/** PGEV_OK, or the negative error category (the same as pgev_error_code(pgev_result_error(res))). */
PGEV_API int pgev_result_status(const pgev_result *res);

/** The error when pgev_result_status() is not PGEV_OK, otherwise NULL. Borrowed. */
PGEV_API const pgev_error *pgev_result_error(const pgev_result *res);

/**
 * The libpq result, for libpq's accessors (PQntuples, PQgetvalue, ...).
 * In a completion callback: the buffered result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) on success; on a server error the PGRES_FATAL_ERROR
 * result; NULL when there is no result (connection lost, cancelled,
 * aborted). In a row callback of a streamed query: a PGresult holding the
 * rows that just arrived (one row, or with pgev_query_args.stream_chunk_rows
 * N > 1 on libpq 17+ up to N rows).
 * Borrowed: PQclear()ed by pgev after the callback unless stolen.
 */
PGEV_API PGresult *pgev_result_pg(const pgev_result *res);

/**
 * Takes ownership of the PGresult so that it outlives the callback; the
 * caller must PQclear() it. Returns NULL when there is none, when it was
 * already stolen, or when several callbacks share it (a commit failure is
 * reported to every query of its segment and to the batch's on_done with
 * the same error result: copy what you need instead). Afterwards pgev_result_pg() returns NULL, but the error
 * and command-tag accessors keep working until the callback returns.
 */
PGEV_API PGresult *pgev_result_steal(pgev_result *res);

/** The id that the submit call returned for this query; 0 in a batch's on_done. */
PGEV_API int64_t pgev_result_query_id(const pgev_result *res);

/**
 * The command tag ("SELECT 3", "INSERT 0 1", "PREPARE"...), or "" when the
 * query did not complete. Borrowed.
 */
PGEV_API const char *pgev_result_command(const pgev_result *res);

/**
 * Rows affected as the command tag reports them (INSERT, UPDATE, DELETE,
 * SELECT, MOVE, FETCH, COPY), or -1 when the tag carries no count.
 */
PGEV_API int64_t pgev_result_rows_affected(const pgev_result *res);

/**
 * In a completion callback: the number of rows the query returned (for a
 * streamed query, the number delivered to the row callback). In a row
 * callback: the number of rows in this delivery.
 */
PGEV_API int64_t pgev_result_rows(const pgev_result *res);

/**
 * Whether the query may have reached the server: 0 when it certainly
 * never did (it was still waiting to be sent when its connection was lost,
 * closed or freed, it timed out or was cancelled before being sent, or its
 * atomic batch failed before it was sent), so running it again elsewhere
 * cannot run it twice; 1 otherwise (it was handed to libpq, and the server
 * may have run it, even when the result is an error such as
 * PGEV_ECONNLOST). Every result that came from the server says 1. NULL
 * gives 0.
 *
 * Telling an unknown outcome from a known one: PGEV_OK, PGEV_ESERVER and
 * PGEV_EABORTED are the server's word (committed; failed or rolled back).
 * PGEV_ECONNLOST, and PGEV_ETIMEOUT or PGEV_ECANCELLED of an isolated
 * query (which complete at once, while the server may still finish the
 * statement), mean "outcome unknown" when this returns 1 and "never ran"
 * when it returns 0.
 */
PGEV_API int pgev_result_sent(const pgev_result *res);

/**
 * The index of the column called `name` (exactly as the server names it:
 * case-sensitive, no quoting rules, unlike PQfnumber), for the typed
 * accessors:
 *
 *     int c = pgev_result_column(res, "email");
 *     if (c < 0 || pgev_result_get_text(res, row, c, &email, NULL) != PGEV_OK) ...
 *
 * Returns the index (>= 0), or PGEV_EINVAL when there is no result (error,
 * stolen), name is NULL, no column has that name, or more than one does
 * (SELECT a.id, b.id: name them apart with AS).
 */
PGEV_API int pgev_result_column(const pgev_result *res, const char *name);

/**
 * Typed field accessors. Each reads row `row`, column `col` of the result
 * and works with both text and binary result formats. They return PGEV_OK
 * and store the value; 1 (and store nothing) when the field is SQL NULL;
 * PGEV_EINVAL when there is no such field, the column's type does not fit
 * the requested C type, the text does not parse, or the value would
 * overflow. Use them from either kind of callback.
 *
 *  - int64: int2, int4, int8, oid columns.
 *  - int32: the same, when the value fits.
 *  - double: float4, float8 (and the integer types).
 *  - bool: bool.
 *  - text: any column in text format, and text-like columns (text, varchar,
 *    bpchar, name, json, jsonb) in binary format; *out points into the PGresult
 *    (borrowed), *len (may be NULL) gets its length in bytes.
 */
PGEV_API int pgev_result_get_int64(const pgev_result *res, int row, int col, int64_t *out);
/** See pgev_result_get_int64(). */
PGEV_API int pgev_result_get_int32(const pgev_result *res, int row, int col, int32_t *out);
/** See pgev_result_get_int64(). */
PGEV_API int pgev_result_get_double(const pgev_result *res, int row, int col, double *out);
/** See pgev_result_get_int64(). */
PGEV_API int pgev_result_get_bool(const pgev_result *res, int row, int col, bool *out);
/** See pgev_result_get_int64(). */
PGEV_API int pgev_result_get_text(const pgev_result *res, int row, int col, const char **out, size_t *len);

/* ------------------------------------------------------------------------
 * Typed values
 * ------------------------------------------------------------------------ */

/*
 * More typed field accessors, with the same rules as the ones above: both
 * result formats; PGEV_OK and the value stored; 1 for SQL NULL (nothing
 * stored); PGEV_EINVAL (nothing stored, except where a function says
 * otherwise) for a bad row/column, a result without rows (an error result,
 * or one whose PGresult was stolen), a NULL output pointer, a column whose
 * type does not match, a malformed value, or a value that does not fit the
 * C type. A mismatch or overflow is always an error, never a wrong value.
 *
 * Dates and times are counted from the Unix epoch, 1970-01-01 00:00:00 UTC,
 * in the proleptic Gregorian calendar (year 0 is 1 BC), and the server's
 * 'infinity' and '-infinity' map to the largest and smallest value of the C
 * type. In binary format they do not depend on any session setting. In text
 * format pgev reads the server's ISO output only (DateStyle 'ISO', with any
 * field order, which is the default): under the SQL, Postgres or German
 * styles the accessors return PGEV_EINVAL rather than guess. timestamptz
 * text carries the session TimeZone's offset, which pgev applies, so the
 * value is the same UTC instant in both formats.
 *
 * pgev_result_get_double() reads text-format floats with strtod(), so it
 * needs an LC_NUMERIC whose decimal point is '.' (the "C" locale, which a
 * program has unless it calls setlocale()); binary format has no such need.
 */

/** int2 columns, and int4/int8 values that fit in 16 bits. */
PGEV_API int pgev_result_get_int16(const pgev_result *res, int row, int col, int16_t *out);

/**
 * bytea columns. The bytes are copied into buf (cap bytes; buf may be NULL
 * when cap is 0) and *len gets their count. When cap is too small the call
 * returns PGEV_EINVAL and stores the size needed in *len, so a caller can
 * size a buffer with a first call with cap 0 (set *len to 0 beforehand to
 * tell this from the other errors). Text format: both bytea_output styles
 * (hex, the default, and escape) are decoded, without allocating.
 * The contents of buf are unspecified after an error.
 */
PGEV_API int pgev_result_get_bytea(const pgev_result *res, int row, int col, void *buf, size_t cap,
                                   size_t *len);

/**
 * numeric columns, as decimal text exactly as the server prints it ("-12.50",
 * "NaN", "Infinity", "-Infinity"), whatever the precision: the binary
 * format is converted with its display scale. The text and a terminating
 * NUL are written to buf (cap bytes) and *len gets the text's length (not
 * counting the NUL). When cap is too small (it needs *len + 1 bytes) the
 * call returns PGEV_EINVAL and stores the text's length in *len, as
 * pgev_result_get_bytea() does. The contents of buf are unspecified after
 * an error.
 */
PGEV_API int pgev_result_get_numeric(const pgev_result *res, int row, int col, char *buf, size_t cap,
                                     size_t *len);

/** uuid columns: the 16 bytes in network (text) order. */
PGEV_API int pgev_result_get_uuid(const pgev_result *res, int row, int col, uint8_t out[16]);

/**
 * date columns: days since 1970-01-01 (negative before). 'infinity' is
 * INT32_MAX and '-infinity' INT32_MIN; every finite date fits between.
 */
PGEV_API int pgev_result_get_date(const pgev_result *res, int row, int col, int32_t *days);

/**
 * timestamp and timestamptz columns: microseconds since the Unix epoch.
 * timestamptz: the UTC instant. timestamp (without time zone): the wall
 * clock time read as if it were UTC. 'infinity' is INT64_MAX and
 * '-infinity' INT64_MIN. The server accepts timestamps up to the year
 * 294276, a little beyond what int64 microseconds since 1970 can hold:
 * values after about 294246-12-31 are PGEV_EINVAL (overflow).
 */
PGEV_API int pgev_result_get_timestamp(const pgev_result *res, int row, int col, int64_t *usec);

/**
 * json and jsonb columns, as JSON text: *out points into the PGresult
 * (borrowed, NUL-terminated at *len), *len (may be NULL) gets its length.
 * In binary format jsonb carries a version byte, which is checked (1) and
 * skipped; pgev_result_get_text() does the same for jsonb. Other column
 * types are PGEV_EINVAL, so a changed schema shows up as an error.
 */
PGEV_API int pgev_result_get_json(const pgev_result *res, int row, int col, const char **out,
                                  size_t *len);

/**
 * An inet or cidr value. family is 4 or 6; addr holds the address in
 * network order (4 bytes for IPv4, the rest zero; 16 for IPv6); bits is
 * the prefix length (32 or 128 for a single inet host); is_cidr says the
 * column was cidr (whose bits beyond the prefix are then all zero).
 * A plain struct: copy it freely, nothing to free.
 */
typedef struct pgev_inet {
    uint8_t family;
    uint8_t bits;
    bool is_cidr;
    uint8_t addr[16];
} pgev_inet;

/**
 * inet and cidr columns. Text format is read as the server prints it
 * ("192.168.0.1", "10.0.0.0/8", "2001:db8::1/64").
 */
PGEV_API int pgev_result_get_inet(const pgev_result *res, int row, int col, pgev_inet *out);

/**
 * An interval, as the server keeps it: months, days and microseconds are
 * separate because their lengths vary (a month is not 30 days, a day is
 * not always 24 hours across a DST change). "1 year 2 mons 3 days
 * 04:05:06" is { .months = 14, .days = 3, .usec = 14706000000 }; each part
 * carries its own sign. PostgreSQL 17's 'infinity' has every field at its
 * maximum, '-infinity' at its minimum. A plain struct: nothing to free.
 */
typedef struct pgev_interval {
    int64_t usec;
    int32_t days;
    int32_t months;
} pgev_interval;

/**
 * interval columns. Text format: the default IntervalStyle 'postgres'
 * ("1 year 2 mons -3 days +04:05:06.5"); what 'postgres_verbose',
 * 'sql_standard' or 'iso_8601' print is PGEV_EINVAL rather than guessed
 * (except a bare "H:MM:SS", which means the same in every style). Binary
 * format does not depend on the setting.
 */
PGEV_API int pgev_result_get_interval(const pgev_result *res, int row, int col,
                                      pgev_interval *out);

/* ------------------------------------------------------------------------
 * Arrays
 * ------------------------------------------------------------------------ */

/**
 * A decoded one-dimensional array, NULL elements included. Opaque;
 * made by pgev_result_get_array(), read with the pgev_array_* functions,
 * freed by pgev_array_free(). It holds its own copy of the elements, so it
 * outlives the result and callback it came from; the text pointers that
 * pgev_array_get_text()/json() hand out stay valid until it is freed.
 *
 *     pgev_array *ids;
 *     if (pgev_result_get_array(res, 0, 0, &ids) == PGEV_OK) {
 *         for (size_t i = 0; i < pgev_array_count(ids); i++) {
 *             int64_t id;
 *             if (pgev_array_get_int64(ids, i, &id) == PGEV_OK)
 *                 use(id);              // 1 would mean a NULL element
 *         }
 *         pgev_array_free(ids);
 *     }
 */
typedef struct pgev_array pgev_array;

/**
 * Decodes an array column, in text or binary format, of these element
 * types: bool, int2, int4, int8, oid, float4, float8, numeric, text,
 * varchar, bpchar, name, "char", bytea, uuid, date, timestamp,
 * timestamptz, interval, inet, cidr, json, jsonb, and record (record[],
 * e.g. ARRAY[ROW(1, 'a')]; each element read with pgev_array_get_record();
 * an array of a named composite type has an OID pgev cannot know, and is
 * refused). Returns PGEV_OK and
 * stores a new array in *out, which the caller frees with
 * pgev_array_free(); 1 (nothing stored) for SQL NULL; PGEV_EINVAL (nothing
 * stored) for a bad row/column, a column of another type, an array of
 * more than one dimension, or a malformed value; PGEV_ENOMEM. The array's
 * lower bound is not kept: element 0 is the first whatever the bound.
 */
PGEV_API int pgev_result_get_array(const pgev_result *res, int row, int col, pgev_array **out);

/** Frees an array from pgev_result_get_array(); NULL is ignored. */
PGEV_API void pgev_array_free(pgev_array *a);

/** The number of elements (NULL elements included); 0 for NULL. */
PGEV_API size_t pgev_array_count(const pgev_array *a);

/** The element type's OID (e.g. 20 for an int8[] column); 0 for NULL. */
PGEV_API Oid pgev_array_elem_type(const pgev_array *a);

/** 1 when element i is SQL NULL, 0 when not, PGEV_EINVAL when there is no element i. */
PGEV_API int pgev_array_is_null(const pgev_array *a, size_t i);

/*
 * Element accessors: element i (from 0) of the array, with exactly the
 * rules of the pgev_result_get_* function of the same name: PGEV_OK and
 * the value stored; 1 for a NULL element (nothing stored); PGEV_EINVAL
 * for i out of range, a NULL output, an element type that does not fit the
 * C type, or a value that does not parse or fit. Strings are borrowed from
 * the array.
 */
PGEV_API int pgev_array_get_int64(const pgev_array *a, size_t i, int64_t *out);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_int32(const pgev_array *a, size_t i, int32_t *out);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_int16(const pgev_array *a, size_t i, int16_t *out);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_double(const pgev_array *a, size_t i, double *out);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_bool(const pgev_array *a, size_t i, bool *out);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_text(const pgev_array *a, size_t i, const char **out, size_t *len);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_json(const pgev_array *a, size_t i, const char **out, size_t *len);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_bytea(const pgev_array *a, size_t i, void *buf, size_t cap, size_t *len);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_numeric(const pgev_array *a, size_t i, char *buf, size_t cap,
                                    size_t *len);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_uuid(const pgev_array *a, size_t i, uint8_t out[16]);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_date(const pgev_array *a, size_t i, int32_t *days);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_timestamp(const pgev_array *a, size_t i, int64_t *usec);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_inet(const pgev_array *a, size_t i, pgev_inet *out);
/** See pgev_array_get_int64(): the same, for its own C type. */
PGEV_API int pgev_array_get_interval(const pgev_array *a, size_t i, pgev_interval *out);

/* ------------------------------------------------------------------------
 * Records (composite types)
 * ------------------------------------------------------------------------ */

/**
 * A decoded record: a value of a composite type or of the anonymous row
 * type `record` (ROW(...), a whole row selected as one column), its fields
 * in order, NULL fields included. Opaque; made by pgev_result_get_record(),
 * read with the pgev_record_* functions, freed by pgev_record_free(). Like
 * pgev_array it holds its own copy of the fields, so it outlives the result
 * and callback it came from; text pointers it hands out stay valid until it
 * is freed.
 *
 * Binary format (PGEV_QUERY_BINARY) carries each field's type OID, and the
 * typed accessors then work as on a result column. Text format does not:
 * its fields' types are 0 and only pgev_record_get_text() reads them (the
 * server's text for the field), until pgev_record_set_type() says what a
 * field is.
 *
 *     // SELECT ROW(42, 'answer', NULL::int8), with PGEV_QUERY_BINARY
 *     pgev_record *rec;
 *     if (pgev_result_get_record(res, 0, 0, &rec) == PGEV_OK) {
 *         int64_t n;
 *         const char *s;
 *         pgev_record_get_int64(rec, 0, &n);          // 42 (field 0 is int4)
 *         pgev_record_get_text(rec, 1, &s, NULL);     // "answer"
 *         pgev_record_is_null(rec, 2);                // 1
 *         pgev_record_free(rec);
 *     }
 */
typedef struct pgev_record pgev_record;

/**
 * Decodes a record column, in text or binary format. Returns PGEV_OK and
 * stores a new record in *out, which the caller frees with
 * pgev_record_free(); 1 (nothing stored) for SQL NULL; PGEV_EINVAL
 * (nothing stored) for a bad row/column, a column of a type pgev knows is
 * not a record (int4, text, an array, ...), or a value that is not a
 * record's output; PGEV_ENOMEM.
 *
 * A composite type's OID is whatever the catalog gave it, so pgev accepts
 * `record` (2249) and any type it does not know, and then refuses what does
 * not parse as a record: in binary format that is nearly everything, but
 * the text of some other user type could look like a record (an enum
 * label "(a)"); decode only columns you know are records. In text format
 * "()" is refused: the server prints a record with no fields and a record
 * with one NULL field alike, where binary format tells them apart. At most
 * 1664 fields, the server's own limit.
 */
PGEV_API int pgev_result_get_record(const pgev_result *res, int row, int col, pgev_record **out);

/** Frees a record from pgev_result_get_record(), pgev_record_get_record() or pgev_array_get_record(); NULL is ignored. */
PGEV_API void pgev_record_free(pgev_record *r);

/** The number of fields (NULL fields included); 0 for NULL. */
PGEV_API size_t pgev_record_count(const pgev_record *r);

/** 1 when the record came in binary format, 0 in text format, PGEV_EINVAL for NULL. */
PGEV_API int pgev_record_is_binary(const pgev_record *r);

/**
 * The type OID of field i: as the server sent it in binary format (also
 * for a NULL field); in text format 0 unless set by pgev_record_set_type().
 * 0 when there is no field i.
 */
PGEV_API Oid pgev_record_field_type(const pgev_record *r, size_t i);

/**
 * Declares the type of field i of a text-format record (e.g. 23 for int4,
 * 1007 for int4[]), so that the typed accessors read it with the rules
 * of that type. PGEV_OK; PGEV_EINVAL for no field i, type 0, or a binary
 * record (whose types the server gave and are not overridden).
 */
PGEV_API int pgev_record_set_type(pgev_record *r, size_t i, Oid type);

/** 1 when field i is SQL NULL, 0 when not, PGEV_EINVAL when there is no field i. */
PGEV_API int pgev_record_is_null(const pgev_record *r, size_t i);

/*
 * Field accessors: field i (from 0), with exactly the rules of the
 * pgev_result_get_* function of the same name, the field's type OID taken
 * as the column type: PGEV_OK and the value stored; 1 for a NULL field
 * (nothing stored); PGEV_EINVAL for i out of range, a NULL output, a field
 * type that does not fit the C type (a text-format field's type is 0,
 * which only pgev_record_get_text() reads until pgev_record_set_type()
 * declares it), or a value that does not parse or fit.
 * Strings are borrowed from the record. pgev_record_get_record() and
 * pgev_record_get_array() decode a nested record or array field into a new
 * object, freed by its own free function.
 */
PGEV_API int pgev_record_get_int64(const pgev_record *r, size_t i, int64_t *out);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_int32(const pgev_record *r, size_t i, int32_t *out);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_int16(const pgev_record *r, size_t i, int16_t *out);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_double(const pgev_record *r, size_t i, double *out);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_bool(const pgev_record *r, size_t i, bool *out);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_text(const pgev_record *r, size_t i, const char **out, size_t *len);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_json(const pgev_record *r, size_t i, const char **out, size_t *len);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_bytea(const pgev_record *r, size_t i, void *buf, size_t cap,
                                   size_t *len);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_numeric(const pgev_record *r, size_t i, char *buf, size_t cap,
                                     size_t *len);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_uuid(const pgev_record *r, size_t i, uint8_t out[16]);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_date(const pgev_record *r, size_t i, int32_t *days);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_timestamp(const pgev_record *r, size_t i, int64_t *usec);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_inet(const pgev_record *r, size_t i, pgev_inet *out);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_interval(const pgev_record *r, size_t i, pgev_interval *out);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_record(const pgev_record *r, size_t i, pgev_record **out);
/** See pgev_record_get_int64(): the same, for its own C type. */
PGEV_API int pgev_record_get_array(const pgev_record *r, size_t i, pgev_array **out);

/** Element i of a record[] array as a new record (see pgev_record_get_*); 1 for a NULL element. */
PGEV_API int pgev_array_get_record(const pgev_array *a, size_t i, pgev_record **out);

/**
 * A parameter list built on the stack, for binary (and text) parameters
 * whose types the server then knows:
 *
 *     pgev_params p;
 *     pgev_params_init(&p);
 *     pgev_params_int8(&p, id);
 *     pgev_params_text(&p, name);
 *     pgev_params_bytea(&p, blob, blob_len);
 *     pgev_query_args args = { .sql = "INSERT INTO t VALUES ($1, $2, $3)",
 *                              .on_done = done, .arg = ctx };
 *     if (pgev_params_apply(&p, &args) == PGEV_OK)
 *         pgev_conn_submit(conn, &args);
 *
 * Scalars (numbers, bool, uuid, dates and times) are encoded into the
 * pgev_params itself. Strings and byte arrays are borrowed: they must stay
 * valid until the submit call returns (which copies or sends everything).
 * pgev_params_apply() points args into p, so p must also live until then.
 * Nothing is allocated, except by the array appenders (pgev_params_*_array),
 * whose encoded arrays p owns until pgev_params_clear(p), to be called
 * once the submit call has returned (calling it is harmless when p holds no
 * array; do not copy a p that holds arrays, or clear only one copy).
 * Errors are sticky: each pgev_params_* call returns
 * PGEV_OK or PGEV_EINVAL (the list is full, or a value is out of range;
 * PGEV_ENOMEM from an array appender), and
 * pgev_params_apply() fails with PGEV_EINVAL if any of them did, so checking
 * it alone is enough.
 *
 * The members are private (the struct is visible only so that it can live
 * on the stack); PGEV_PARAMS_MAX is its capacity. Queries with more
 * parameters use pgev_query_args' arrays directly.
 */
#define PGEV_PARAMS_MAX 32
typedef struct pgev_params {
    int count_;
    int failed_;
    Oid types_[PGEV_PARAMS_MAX];
    const char *values_[PGEV_PARAMS_MAX];
    int lengths_[PGEV_PARAMS_MAX];
    int formats_[PGEV_PARAMS_MAX];
    bool inline_[PGEV_PARAMS_MAX];
    bool owned_[PGEV_PARAMS_MAX];
    union {
        char bytes[20]; /* the largest inline value: an IPv6 inet */
        int64_t align;
    } storage_[PGEV_PARAMS_MAX];
} pgev_params;

/**
 * Empties p. Call before the first use. On a p that holds arrays it would
 * lose them (a leak): use pgev_params_clear() to reuse such a p.
 */
PGEV_API void pgev_params_init(pgev_params *p);

/** The number of parameters added so far (a call that failed added none). */
PGEV_API int pgev_params_count(const pgev_params *p);

/** Appends SQL NULL of the given type (0: the server infers it). */
PGEV_API int pgev_params_null(pgev_params *p, Oid type);

/** Appends a bool (binary). */
PGEV_API int pgev_params_bool(pgev_params *p, bool v);
/** Appends an int2 (binary). */
PGEV_API int pgev_params_int2(pgev_params *p, int16_t v);
/** Appends an int4 (binary). */
PGEV_API int pgev_params_int4(pgev_params *p, int32_t v);
/** Appends an int8 (binary). */
PGEV_API int pgev_params_int8(pgev_params *p, int64_t v);
/** Appends a float4 (binary; NaN, infinities and -0.0 are kept). */
PGEV_API int pgev_params_float4(pgev_params *p, float v);
/** Appends a float8 (binary; NaN, infinities and -0.0 are kept). */
PGEV_API int pgev_params_float8(pgev_params *p, double v);

/**
 * Appends a NUL-terminated string in text format with no declared type, as
 * libpq's text parameters are (the server infers the type from the query).
 * Borrowed. NULL appends SQL NULL.
 */
PGEV_API int pgev_params_text(pgev_params *p, const char *s);

/**
 * Appends a numeric given as decimal text ("12.50", "-1e-30", "NaN",
 * "Infinity"), sent in text format with the type numeric so that no
 * precision is lost. Borrowed. NULL appends SQL NULL.
 */
PGEV_API int pgev_params_numeric(pgev_params *p, const char *decimal);

/** Appends a bytea (binary), len bytes at data (borrowed; NULL only with len 0). len <= INT_MAX. */
PGEV_API int pgev_params_bytea(pgev_params *p, const void *data, size_t len);

/** Appends a uuid (binary) from its 16 bytes in network order (copied). */
PGEV_API int pgev_params_uuid(pgev_params *p, const uint8_t uuid[16]);

/**
 * Appends a date (binary): days since 1970-01-01, with INT32_MAX and
 * INT32_MIN for 'infinity' and '-infinity' (as pgev_result_get_date()).
 * The server rejects dates outside its range.
 */
PGEV_API int pgev_params_date(pgev_params *p, int32_t days);

/**
 * Appends a timestamp (without time zone) or a timestamptz (binary):
 * microseconds since the Unix epoch (UTC for timestamptz), with INT64_MAX
 * and INT64_MIN for 'infinity' and '-infinity' (as
 * pgev_result_get_timestamp()). The server rejects values outside its
 * range (before 4714 BC, after 294276 AD).
 */
PGEV_API int pgev_params_timestamp(pgev_params *p, int64_t usec);
/** See pgev_params_timestamp(). */
PGEV_API int pgev_params_timestamptz(pgev_params *p, int64_t usec);

/**
 * Appends a json or jsonb value given as JSON text, in text format with the
 * type json or jsonb, so that the server parses it (a malformed one fails
 * the query with SQLSTATE 22P02). Borrowed. NULL appends SQL NULL.
 */
PGEV_API int pgev_params_json(pgev_params *p, const char *json);
/** See pgev_params_json(). */
PGEV_API int pgev_params_jsonb(pgev_params *p, const char *json);

/**
 * Appends an inet, or a cidr when in->is_cidr (binary; copied). family
 * must be 4 or 6 and bits at most 32 or 128; a cidr with bits set beyond
 * its prefix is refused (PGEV_EINVAL), as the server would refuse it.
 */
PGEV_API int pgev_params_inet(pgev_params *p, const pgev_inet *in);

/** Appends an interval (binary; copied): months, days and microseconds as pgev_interval has them. */
PGEV_API int pgev_params_interval(pgev_params *p, const pgev_interval *iv);

/**
 * Array parameters, for `WHERE id = ANY($1)` or `unnest($1)` without
 * building strings:
 *
 *     int64_t ids[] = { 3, 5, 8 };
 *     pgev_params p;
 *     pgev_params_init(&p);
 *     pgev_params_int8_array(&p, ids, NULL, 3);
 *     pgev_query_args args = { .sql = "SELECT name FROM users WHERE id = ANY($1)",
 *                              .on_done = done, .arg = ctx };
 *     if (pgev_params_apply(&p, &args) == PGEV_OK)
 *         pgev_conn_submit(conn, &args);
 *     pgev_params_clear(&p);            // frees the encoded array
 *
 * Each appends one parameter: a one-dimensional array (lower bound 1) of
 * n elements, of the type its name says (int8[], text[], ...), encoded
 * into a buffer that p owns (see pgev_params_clear()); the caller's values
 * are copied, so they need not outlive the call. n may be 0 (an empty
 * array). nulls, when not NULL, has n flags: nulls[i] makes element i SQL
 * NULL (its value is then not read). Binary format, except numeric[],
 * sent as text so that no digit is lost. Dates and times use the
 * conventions of pgev_params_date() and pgev_params_timestamp(), and an
 * element those refuse makes the call fail. Returns PGEV_OK, PGEV_EINVAL
 * (NULL values with n > 0, the list is full, an element cannot be sent,
 * more than about 2 GB), or PGEV_ENOMEM; both are sticky, as for the other
 * appenders, and add nothing.
 */
PGEV_API int pgev_params_bool_array(pgev_params *p, const bool *v, const bool *nulls, size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_int2_array(pgev_params *p, const int16_t *v, const bool *nulls, size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_int4_array(pgev_params *p, const int32_t *v, const bool *nulls, size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_int8_array(pgev_params *p, const int64_t *v, const bool *nulls, size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_float4_array(pgev_params *p, const float *v, const bool *nulls, size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_float8_array(pgev_params *p, const double *v, const bool *nulls, size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_uuid_array(pgev_params *p, const uint8_t (*v)[16], const bool *nulls, size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_date_array(pgev_params *p, const int32_t *days, const bool *nulls, size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_timestamp_array(pgev_params *p, const int64_t *usec, const bool *nulls,
                                         size_t n);
/** See pgev_params_bool_array(): the same, for its own C type. */
PGEV_API int pgev_params_timestamptz_array(pgev_params *p, const int64_t *usec, const bool *nulls,
                                           size_t n);

/** A text[] of n NUL-terminated strings (binary); a NULL pointer is a NULL element. */
PGEV_API int pgev_params_text_array(pgev_params *p, const char *const *v, size_t n);

/**
 * A bytea[]: element i is lens[i] bytes at data[i]; a NULL data[i] is a NULL
 * element. lens must not be NULL when n > 0.
 */
PGEV_API int pgev_params_bytea_array(pgev_params *p, const void *const *data, const size_t *lens,
                                     size_t n);

/**
 * A numeric[] of decimal strings as pgev_params_numeric() takes them (a
 * NULL pointer is a NULL element), sent in text format; the server
 * rejects a malformed one when the query runs (SQLSTATE 22P02).
 */
PGEV_API int pgev_params_numeric_array(pgev_params *p, const char *const *decimals, size_t n);

/**
 * Frees the arrays p owns and empties it (as pgev_params_init()). Call it
 * after the submit call that used p has returned, whether it succeeded or
 * not, when p may hold arrays. NULL is ignored.
 */
PGEV_API void pgev_params_clear(pgev_params *p);

struct pgev_query_args; /* defined in the Queries section below */

/**
 * Sets args->nparams, param_types, param_values, param_lengths and
 * param_formats to p's parameters (the other fields are left alone).
 * args then points into p: keep p alive, and unchanged, until the submit
 * call returns. Returns PGEV_OK, or PGEV_EINVAL (args untouched) for NULL
 * arguments or when an earlier pgev_params_* call on p failed.
 */
PGEV_API int pgev_params_apply(pgev_params *p, struct pgev_query_args *args);

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

/** A connection: opaque; created by pgev_conn_new(), freed by pgev_conn_free(). */
typedef struct pgev_conn pgev_conn;

/** Connection states, as pgev_conn_state() reports them. */
typedef enum pgev_connection_state {
    PGEV_CONN_CONNECTING = 0, /**< connecting; queries queue until ready */
    PGEV_CONN_READY,          /**< connected and in pipeline mode */
    PGEV_CONN_CLOSING,        /**< pgev_conn_close() called; draining queued queries */
    PGEV_CONN_CLOSED,         /**< closed gracefully */
    PGEV_CONN_FAILED          /**< connect failed or the connection was lost */
} pgev_connection_state;

/**
 * Connection event callback. For on_connect: err is NULL on success, or the
 * reason the connection could not be made. For on_disconnect: err is NULL
 * after a graceful pgev_conn_close(), or why the connection was lost.
 * err is borrowed for the duration of the call. User data last.
 */
typedef void (*pgev_conn_cb)(pgev_conn *conn, const pgev_error *err, void *arg);

/**
 * Notice callback: a NOTICE, WARNING, INFO... message from the server
 * (RAISE NOTICE, say). notice is borrowed for the call. Without one, pgev
 * drops notices (libpq's default would print them on stderr).
 */
typedef void (*pgev_notice_cb)(pgev_conn *conn, const pgev_error *notice, void *arg);

/**
 * Query callback, used both for completion and for streamed rows. For
 * completion it runs exactly once per accepted query; res is borrowed for
 * the duration of the call (see pgev_result_steal()).
 */
typedef void (*pgev_result_cb)(pgev_conn *conn, pgev_result *res, void *arg);

/* ------------------------------------------------------------------------
 * Tracing
 * ------------------------------------------------------------------------ */

typedef struct pgev_pool pgev_pool;

/** What a trace record reports (pgev_trace.event). */
typedef enum pgev_trace_event {
    /** A query was accepted: reported inside the submit call, before it
     * returns (and for a pool query, when a connection takes it). */
    PGEV_TRACE_QUERY_START = 1,
    /** A query completed: reported right before its on_done runs, with the
     * outcome on_done gets. */
    PGEV_TRACE_QUERY_END,
    /** A connection is up (status PGEV_OK) or could not be made. */
    PGEV_TRACE_CONNECT,
    /** A connection that was up ended (status PGEV_OK for a close). */
    PGEV_TRACE_DISCONNECT,
    /** A pool acquire was granted (status PGEV_OK) or failed; duration_us
     * is the wait. */
    PGEV_TRACE_POOL_ACQUIRE,
    /** An acquired connection went back to its pool. */
    PGEV_TRACE_POOL_RELEASE,
    /** The pool added a connection (it is up). */
    PGEV_TRACE_POOL_CONN_OPEN,
    /** The pool closed a connection, or lost it. */
    PGEV_TRACE_POOL_CONN_CLOSE
} pgev_trace_event;

/**
 * One trace record, borrowed for the duration of the trace callback (copy
 * what you keep). Fields that do not apply to an event are 0 or NULL.
 */
typedef struct pgev_trace {
    pgev_trace_event event;
    /** The connection (NULL for pool events that have none). */
    pgev_conn *conn;
    /** The pool, for a pool's events and its connections' (else NULL). */
    pgev_pool *pool;
    /** QUERY_*: the query's id on its connection (what pgev_conn_submit()
     * returned; a pool query has its own id on the connection too). */
    int64_t query_id;
    /** QUERY_*: the SQL text, or the prepared statement's name (NULL for a
     * COPY at its end: its text is not kept while it runs). */
    const char *sql;
    /** QUERY_*: how many parameters it has. */
    int nparams;
    /** QUERY_END: executed by a statement the cache had prepared already
     * (no Parse was sent for it). */
    bool cache_hit;
    /** QUERY_END: microseconds from the submit to the completion;
     * POOL_ACQUIRE: the wait. */
    int64_t duration_us;
    /** QUERY_END: rows returned (pgev_result_rows()). */
    int64_t rows;
    /** QUERY_END, CONNECT, DISCONNECT, POOL_ACQUIRE, POOL_CONN_CLOSE:
     * PGEV_OK or the error's pgev_status. */
    int status;
    /** The server's SQLSTATE when status is an error it sent, else "". */
    const char *sqlstate;
    /** The error message when status is an error, else NULL. */
    const char *message;
    /** The backend's process id, 0 when unknown. */
    int backend_pid;
} pgev_trace;

/**
 * Trace callback (pgev_conn_options.on_trace, pgev_pool_options.on_trace):
 * optional; when unset, tracing costs nothing. It runs on the loop's thread
 * (QUERY_START inside the submit call) and must not call pgev functions on
 * the connection or pool it reports about: log, count, measure.
 */
typedef void (*pgev_trace_cb)(const pgev_trace *trace, void *arg);

/** Defaults used when a pgev_conn_options field is 0. */
#define PGEV_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define PGEV_DEFAULT_MAX_PENDING 100000
#define PGEV_DEFAULT_MAX_INFLIGHT 1000
#define PGEV_DEFAULT_CANCEL_GRACE_MS 5000
#define PGEV_DEFAULT_STMT_CACHE_SIZE 100
/** pgev_conn_options.stmt_cache_size: no statement cache. */
#define PGEV_STMT_CACHE_OFF (-1)
/** pgev_conn_options.stmt_cache_size: larger values are taken as this. */
#define PGEV_STMT_CACHE_MAX 65536
/** The longest SQL text (in bytes) the statement cache keeps: a longer one
 * always runs unnamed, and the cache never copies it. */
#define PGEV_STMT_CACHE_MAX_SQL 16384
/** The most memory one connection's statement cache holds (its copies of
 * SQL texts and parameter types, and its bookkeeping), whatever
 * stmt_cache_size says: the least recently used statements are closed to
 * stay under it. */
#define PGEV_STMT_CACHE_MAX_BYTES (4 * 1024 * 1024)

/**
 * Connection options. Zero-initialise and set what you need; every 0/NULL
 * field takes its default. A negative time or limit (connect_timeout_ms,
 * query_timeout_ms, cancel_grace_ms, max_pending, max_inflight) makes the
 * connection fail from the loop with PGEV_ECONNECT ("invalid option: ...
 * is negative"); stmt_cache_size has its own negative value. The struct is
 * read during pgev_conn_new() only.
 */
typedef struct pgev_conn_options {
    /** Connect deadline in milliseconds, per attempt: each host and each
     * of its addresses gets this long to connect (and each host name this
     * long to resolve) before the next one is tried, as libpq applies
     * connect_timeout. 0: the conninfo's connect_timeout if it has one,
     * else PGEV_DEFAULT_CONNECT_TIMEOUT_MS. Negative: the connection fails
     * (PGEV_ECONNECT, "invalid option"). */
    int connect_timeout_ms;
    /** Most queries waiting to be sent (submitted before the connection is
     * ready, or beyond the in-flight window); a submit beyond it fails with
     * PGEV_EQUEUEFULL. 0: PGEV_DEFAULT_MAX_PENDING. */
    int max_pending;
    /** Most queries sent and not yet completed (the pipeline window).
     * 0: PGEV_DEFAULT_MAX_INFLIGHT. */
    int max_inflight;
    /** Called once when the connection is up, or could not be made. Always
     * before on_disconnect, also when pgev_conn_close() was called while
     * connecting (on_connect, then the queued queries, then on_disconnect)
     * or the connection is lost right after it came up; on_disconnect
     * never follows an on_connect that reported an error. */
    pgev_conn_cb on_connect;
    /** Called once when a connection that was up ends (lost, or closed by
     * pgev_conn_close()). Not called by pgev_conn_free(). When the
     * connection is lost, every outstanding query completes first (a
     * bounded number per loop turn, so that a long queue does not stall
     * the loop); the state is PGEV_CONN_FAILED from the moment of the loss. */
    pgev_conn_cb on_disconnect;
    /** Server notices; NULL drops them. */
    pgev_notice_cb on_notice;
    /** User data passed to the three callbacks above. */
    void *arg;
    /** Default deadline of every query, in milliseconds (see
     * pgev_query_args.timeout_ms); 0: none. */
    int query_timeout_ms;
    /** After a server-side cancel (timeout, pgev_conn_cancel()), how long
     * the cancelled query may keep the connection busy before pgev closes
     * the connection (its other queries then complete with
     * PGEV_ECONNLOST), and how long the cancel request itself may take:
     * one that is not answered by then (the server or the path to it
     * stalls) closes the connection too, with PGEV_ETIMEOUT, because pgev
     * can no longer tell when it would land. While a cancel request is on
     * its way nothing new is sent on the connection. 0:
     * PGEV_DEFAULT_CANCEL_GRACE_MS. */
    int cancel_grace_ms;
    /**
     * Statement cache: how many statements plain queries (pgev_conn_query(),
     * pgev_conn_query_params(), pgev_conn_submit() with sql) may keep
     * prepared on the server. The first time a given SQL text (with the
     * same parameter count and types) is sent, pgev prepares it in the same
     * round trip under a name that is a digest of what it means ("pgev_"
     * and the 128-bit FNV-1a hash of the text and parameter types, in hex:
     * the same on every connection, never the same for two statements);
     * afterwards it is executed by name, so the server parses and plans it
     * once. The least recently used statement is closed on the server when
     * a new one needs room (not inside an atomic batch or a transaction
     * block: there the query runs unnamed). Besides this count, the cache
     * holds at most PGEV_STMT_CACHE_MAX_BYTES per connection, and never a
     * text longer than PGEV_STMT_CACHE_MAX_SQL (such a query runs unnamed).
     *
     * Behind a pooler: statements are named only on a connection that
     * reaches a server session of its own. With its first cacheable query
     * pgev asks the server for pg_backend_pid() and compares it with the
     * process id libpq received at connect (PQbackendPID()); until the
     * answer is in, queries run unnamed. A pooler that shares server
     * sessions between clients (PgBouncer in transaction or statement mode,
     * and others) hands out cancel keys of its own, so the two differ: the
     * cache then names nothing for the connection's lifetime and
     * pgev_conn_stmt_cache_count() stays 0, so no statement of one client
     * can be found, missing or stale on a session another client uses.
     * This is safe with the default options; bench/RESULTS.md has the
     * measurements behind that choice. (PgBouncer in session mode is
     * treated the same way, at the price of parsing every query.)
     *
     * When the server loses a statement (26000: DEALLOCATE by hand),
     * already has it (42P05: a Close that could not be sent) or invalidates
     * it (0A000 "cached plan must not change result type", after ALTER
     * TABLE), the error came before the statement ran, and the query is
     * sent again once, unnamed, when the application cannot tell: an
     * isolated query outside a transaction block (whoever opened it: a
     * pgev_txn or BEGIN sent as a query), before any row was delivered,
     * with no query sent after it whose result is still to come (or flagged
     * PGEV_QUERY_READONLY, whose order does not matter). Otherwise the
     * server's error is reported; a statement invalidated inside a block
     * is closed by the first isolated query sent after the block. A
     * successful DISCARD ALL or DEALLOCATE ALL empties the cache; so does
     * the end of the connection. pgev follows the transaction block from
     * libpq's status when nothing is in flight and otherwise from the
     * BEGIN/START and COMMIT/END/ROLLBACK/ABORT/PREPARE TRANSACTION
     * statements sent as queries; a block opened by executing a statement
     * you prepared yourself (pgev_conn_execute()) is seen only once the
     * pipeline is idle. Names "pgev_" followed by 32 hex digits are
     * reserved for the cache.
     *
     * Each connection of a pool has its own cache: a statement invalidated
     * on one connection is dropped there; every other connection meets
     * the 0A000 once, on its next use of the statement, and handles it
     * the same way.
     *
     * 0: PGEV_DEFAULT_STMT_CACHE_SIZE; PGEV_STMT_CACHE_OFF (negative) turns
     * it off.
     */
    int stmt_cache_size;
    /**
     * The resolver for host names (libevent's evdns, on the same
     * event_base), or NULL: then the connection makes its own when a host
     * name needs resolving (reading /etc/resolv.conf and /etc/hosts) and
     * frees it once connected. Sharing one across connections and pools
     * reads the configuration once and shares evdns's nameserver state
     * (which servers answer, which time out); see the README. Borrowed:
     * free it after the connections that use it, and, when one of them was
     * freed while resolving, after the loop has run once more (evdns
     * answers the cancelled request from the loop and still reads the
     * evdns_base then).
     */
    struct evdns_base *evdns_base;
    /** Tracing (see pgev_trace_cb): query start and end, connect and
     * disconnect. NULL: off, at no cost. */
    pgev_trace_cb on_trace;
    /** User data for on_trace. */
    void *trace_arg;
} pgev_conn_options;

/**
 * Creates a connection on `base` and starts connecting, without blocking.
 *
 * conninfo: a libpq connection string ("host=... dbname=...") or URI
 * ("postgresql://..."), or just a database name; PG* environment variables
 * fill what it leaves out, as in libpq.
 * opts: may be NULL for all defaults; read during the call only.
 *
 * Nothing here or later blocks: host names are resolved asynchronously
 * with libevent's evdns (opts->evdns_base, or a resolver of the
 * connection's own reading /etc/resolv.conf and /etc/hosts) and handed to
 * libpq as hostaddr, while host keeps the name for TLS verify-full, SNI,
 * Kerberos and the password file. Unix-socket paths and IP literals are
 * not resolved. A multi-host list (host=a,b,c, port and hostaddr lists,
 * target_session_attrs, load_balance_hosts where libpq has it) is tried
 * one host and one address at a time, each with connect_timeout_ms of its
 * own; the first that connects and is the kind target_session_attrs asks
 * for wins. The exception: a host named only in a service file is left to
 * libpq, which resolves it blocking.
 *
 * Queries may be submitted at once; they are sent when the connection is
 * ready, or complete with PGEV_ECONNECT if it cannot be made. A malformed
 * conninfo, an option out of range (connect_timeout beyond 2147483 s, a
 * negative time), a name that does not resolve ("could not resolve host
 * ...") or an unreachable server is reported through on_connect (from the
 * loop) with PGEV_ECONNECT (PGEV_ETIMEOUT when every attempt timed out)
 * and one line per failed attempt, with the state PGEV_CONN_FAILED and the
 * message also in pgev_conn_errmsg() right away when already known.
 * Passwords in the conninfo never appear in any message.
 *
 * Returns the connection, owned by the caller (free it with
 * pgev_conn_free()), or NULL when base or conninfo is NULL or memory ran
 * out. Call from the thread that runs `base`.
 */
PGEV_API pgev_conn *pgev_conn_new(struct event_base *base, const char *conninfo,
                                  const pgev_conn_options *opts);

/**
 * Frees the connection at once. Every query still queued or in flight
 * completes with PGEV_ECANCELLED (its callback runs inside this call, or,
 * when called from one of this connection's callbacks, right after that
 * callback returns). on_connect/on_disconnect are not called. Safe from
 * inside any of the connection's callbacks; NULL is a no-op. Freed while
 * a host name is being resolved, the connection cancels the request, and
 * evdns answers the cancel from the loop: let the loop run once more
 * before freeing the event_base, or evdns's small request (and the
 * connection's own resolver) is never released.
 */
PGEV_API void pgev_conn_free(pgev_conn *conn);

/**
 * Graceful close: refuses new queries (PGEV_ECLOSED), ends an open atomic
 * batch, lets every accepted query finish, then closes the socket and
 * calls on_disconnect with err NULL. The object stays valid (state
 * PGEV_CONN_CLOSED) until pgev_conn_free(). If the connection is lost
 * while draining, queries complete with PGEV_ECONNLOST as usual.
 * Returns PGEV_OK, or PGEV_EINVAL for NULL; closing twice is harmless.
 */
PGEV_API int pgev_conn_close(pgev_conn *conn);

/** The current state (see pgev_connection_state). */
PGEV_API pgev_connection_state pgev_conn_state(const pgev_conn *conn);

/**
 * The connection-level error (why connecting failed or the connection was
 * lost), or NULL while there is none. Borrowed: valid until the next call
 * on this connection.
 */
PGEV_API const pgev_error *pgev_conn_error(const pgev_conn *conn);

/**
 * The most recent error message on this connection: the reason the last
 * refused call was refused ("query has 70000 parameters; the protocol
 * allows at most 65535"), or the connection error. "" when there was none.
 * Borrowed: valid until the next call on this connection.
 */
PGEV_API const char *pgev_conn_errmsg(const pgev_conn *conn);

/** Queries accepted but not yet sent to the server. */
PGEV_API int pgev_conn_pending(const pgev_conn *conn);

/** Queries sent to the server whose completion has not yet run. */
PGEV_API int pgev_conn_inflight(const pgev_conn *conn);

/**
 * The underlying libpq connection, for read-only inspection
 * (PQparameterStatus, PQserverVersion, PQbackendPID...). Borrowed; NULL
 * while a host name is being resolved, between two connect attempts, and
 * after close. Never issue commands or
 * change its settings through it.
 */
PGEV_API PGconn *pgev_conn_pg(const pgev_conn *conn);

/** The event_base the connection runs on. */
PGEV_API struct event_base *pgev_conn_base(const pgev_conn *conn);

/**
 * Statements the connection's statement cache holds now (prepared, or
 * being prepared, on the server); 0 for NULL, a connection without a
 * cache, one behind a pooler that shares server sessions, and one that is
 * closed or lost. See pgev_conn_options.stmt_cache_size.
 */
PGEV_API int pgev_conn_stmt_cache_count(const pgev_conn *conn);

/* ------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------ */

/** Query flags for pgev_query_args.flags. */
enum {
    /** Results in binary format (text is the default). */
    PGEV_QUERY_BINARY = 1u << 0,
    /** The query only reads: it has no effect when run twice or out of
     * order with its neighbours. pgev may then re-run it transparently
     * (after a server-side cancel that was meant for another query hit it,
     * for example), and a pool may route it to a standby. Never set it on a
     * statement that writes. */
    PGEV_QUERY_READONLY = 1u << 1,
    /** Safe to run again if its connection is lost before the outcome is
     * known (an idempotent write, say). A pool re-dispatches such a query
     * to another connection instead of failing it with
     * PGEV_ECONNLOST. Implied by PGEV_QUERY_READONLY. */
    PGEV_QUERY_RETRY_SAFE = 1u << 2,
    /** Send this query unnamed even when the connection has a statement
     * cache (pgev_conn_options.stmt_cache_size): for SQL that runs once,
     * or that the server must parse afresh each time. */
    PGEV_QUERY_NOCACHE = 1u << 3
};

/** The most parameters one query may have (a protocol limit). */
#define PGEV_MAX_PARAMS 65535

/**
 * The general form of a query, for pgev_conn_submit(). Zero-initialise and
 * set what you need (C99 designated initialisers read well here). Everything
 * it points to is copied or sent during the submit call, so it may be on
 * the stack.
 */
typedef struct pgev_query_args {
    /** SQL text: one statement, $1..$n for parameters. Exactly one of sql
     * and stmt is set (both set with prepare: see pgev_conn_prepare()). */
    const char *sql;
    /** Name of a prepared statement to execute ("" is the unnamed one). */
    const char *stmt;
    /** Number of parameters (0..PGEV_MAX_PARAMS) and their arrays, as in
     * libpq's PQsendQueryParams: types may be NULL (the server infers
     * them); values[i] NULL is SQL NULL; lengths and formats may be NULL
     * for all-text parameters (formats[i] 1 = binary, then lengths[i] is
     * the byte count). values NULL with nparams > 0 sends every parameter
     * as NULL (libpq's rule; connections and pools alike). */
    int nparams;
    const Oid *param_types;
    const char *const *param_values;
    const int *param_lengths;
    const int *param_formats;
    /** PGEV_QUERY_* flags. */
    unsigned flags;
    /** Row callback: when set, the rows are streamed — delivered as they
     * arrive, in constant memory — and the completion result holds no
     * rows. By default each row is handed over as soon as it arrives, one
     * per call (libpq's single-row mode, with every libpq version): a slow
     * producer's rows reach the callback one by one. stream_chunk_rows
     * trades that latency for throughput. */
    pgev_result_cb on_rows;
    /** Completion callback; runs exactly once. May be NULL (fire and forget). */
    pgev_result_cb on_done;
    /** User data for both callbacks. */
    void *arg;
    /** Deadline in milliseconds from the submit: 0 takes the connection's
     * query_timeout_ms, < 0 means none. When it passes, the query completes
     * at once with PGEV_ETIMEOUT (no more row callbacks follow). A query
     * still waiting to be sent is then never sent (pgev_result_sent() 0);
     * one the server is running is cancelled on the server, without
     * blocking the loop, and the queries behind it run normally; its
     * outcome is unknown (pgev_result_sent() 1: it may have finished, and
     * committed, before the cancel arrived). A member of an atomic batch
     * is different: its deadline ends the whole batch (see
     * pgev_conn_batch_begin()), and every callback of the batch then
     * reports what the server did, at the batch's Sync. */
    int timeout_ms;
    /** Streamed queries only (on_rows set): 0 (or any value below 2) hands
     * each row over as soon as it arrives (the default). N > 1, with libpq
     * 17 or newer (PQsetChunkedRowsMode), hands the rows over in chunks of
     * up to N per row callback: about half the client CPU per row for
     * large, fast results, but libpq releases a chunk only when it is full
     * or the result ends, so the rows of a slow producer (a cursor over a
     * slow function, a query emitting rows one by one) wait, possibly until
     * the query's deadline. With libpq < 17 every value acts as 1. Memory
     * stays bounded by N rows. */
    int stream_chunk_rows;
} pgev_query_args;

/**
 * Submits a query. It is sent at once when the connection is ready and the
 * pipeline has room, otherwise queued (in order) and sent later.
 *
 * Unless inside an atomic batch (pgev_conn_batch_begin()), each query ends
 * with its own Sync, so its failure never affects another query, and its
 * on_done runs when the answer to that Sync arrives: PGEV_OK then means
 * the server committed it (see the contracts at the top). Read-only
 * queries (PGEV_QUERY_READONLY) complete the same way, at the Sync of the
 * segment they share.
 *
 * COPY cannot run in pipeline mode: SQL text that is a COPY statement is
 * refused with PGEV_EINVAL; run it with pgev_conn_copy_in() (FROM STDIN) or
 * pgev_conn_copy_out() (TO STDOUT) instead.
 *
 * Returns the query id (> 0, unique on this connection), or a negative
 * pgev_status: PGEV_EINVAL (NULL or inconsistent arguments, too many
 * parameters, COPY, a query whose text or parameters exceed the
 * protocol's 1 GiB - 1 per message), PGEV_ECLOSED (closing, closed or
 * failed connection),
 * PGEV_EQUEUEFULL (max_pending reached), PGEV_ENOMEM. On error nothing was
 * queued, no callback will run and pgev_conn_errmsg() says why.
 * Call from the loop's thread, including from inside callbacks.
 */
PGEV_API int64_t pgev_conn_submit(pgev_conn *conn, const pgev_query_args *args);

/**
 * Runs one SQL statement without parameters; results in text format.
 * Same return and contracts as pgev_conn_submit().
 */
PGEV_API int64_t pgev_conn_query(pgev_conn *conn, const char *sql, pgev_result_cb on_done, void *arg);

/**
 * Runs one SQL statement with text parameters (values[i] NULL is SQL
 * NULL; parameter types are inferred by the server); results in text
 * format. Same return and contracts as pgev_conn_submit().
 */
PGEV_API int64_t pgev_conn_query_params(pgev_conn *conn, const char *sql, int nparams,
                                        const char *const *values, pgev_result_cb on_done, void *arg);

/**
 * Prepares the named statement `name` from `sql` on the server (types may
 * be NULL). The completion result is PGEV_OK (with an empty command tag) or
 * the server's error (a duplicate name, a syntax error). Statements queued
 * after it may execute it right away: ordering guarantees it exists first.
 * Same return and contracts as pgev_conn_submit().
 */
PGEV_API int64_t pgev_conn_prepare(pgev_conn *conn, const char *name, const char *sql, int nparams,
                                   const Oid *types, pgev_result_cb on_done, void *arg);

/**
 * Executes the prepared statement `name` with text parameters; results in
 * text format. Same return and contracts as pgev_conn_submit().
 */
PGEV_API int64_t pgev_conn_execute(pgev_conn *conn, const char *name, int nparams,
                                   const char *const *values, pgev_result_cb on_done, void *arg);

/**
 * Cancels a query by the id its submit returned. A query not yet sent is
 * removed and never sent; one in flight is cancelled on the server
 * without blocking the loop (libpq 17+: PQcancelStart/PQcancelPoll from
 * the loop; older libpq: PQcancel on a helper thread, see
 * pgev_cancel_threads()), and the queries behind it run normally. Either way its on_done
 * runs once, from the loop (never inside this call), with
 * PGEV_ECANCELLED — or with its real outcome if that arrived first.
 *
 * A server-side cancel interrupts whatever the session is running when it
 * arrives. pgev sends it only while the query is the oldest one
 * outstanding and its result has not yet arrived, makes sure the query
 * itself was sent first, and repeats the request (at growing intervals)
 * should the query still run, until cancel_grace_ms. If the query finished
 * just before the cancel arrived, the cancel lands on the statement the
 * session runs next: a query flagged PGEV_QUERY_READONLY is then run again
 * transparently (once; its caller sees only its real outcome), any other
 * query fails with SQLSTATE 57014 and is never re-run (its own Sync
 * segment is rolled back; nothing else is affected).
 *
 * A member of an atomic batch is never cancelled alone: cancelling it
 * cancels the whole batch. While the batch's end (its Sync) has not been
 * handed to libpq, nothing of the batch commits: members not yet sent are
 * never sent, and if some are already on the wire pgev sends a statement
 * that fails on purpose before the Sync, so that the server rolls them
 * back; the cancelled member then completes with PGEV_ECANCELLED, the
 * others with PGEV_EABORTED, the batch with PGEV_ECANCELLED (all at the
 * batch's Sync). Once the Sync is on its way the server is asked to cancel
 * what runs, and the callbacks report what the server did: the batch may
 * have committed (every callback then says PGEV_OK).
 *
 * Returns PGEV_OK when the cancel was accepted, 1 when there is nothing
 * to cancel (unknown id, already completed or cancelled, or results
 * already in: harmless), or PGEV_EINVAL for NULL. Call from the loop's
 * thread.
 */
PGEV_API int pgev_conn_cancel(pgev_conn *conn, int64_t query_id);

/** Most cancel helper threads (libpq < 17) running at once in the process. */
#define PGEV_CANCEL_THREADS_MAX 64

/**
 * How many cancel helper threads run now, in the whole process (with
 * libpq 17+ only pgev_conn_free()'s cancel uses one). On libpq
 * < 17 a server-side cancel runs libpq's blocking PQcancel() on a helper
 * thread: one at a time per connection, each given up by its connection
 * after cancel_grace_ms (the connection is then closed), and at most
 * PGEV_CANCEL_THREADS_MAX at once (a cancel beyond that fails, as a
 * refused one would). A thread given up on ends when PQcancel() returns
 * and touches nothing of its connection. The count is the only
 * process-wide state in pgev (an atomic counter). Thread-safe.
 */
PGEV_API int pgev_cancel_threads(void);

/**
 * Starts an atomic batch: the queries submitted until pgev_conn_batch_end()
 * share one Sync and so form one implicit transaction: all or nothing, on
 * every path. Every query of the batch completes at the batch's Sync, in
 * order, then the batch's on_done. If one fails (server error, a commit
 * that fails at the Sync, a timeout or cancel of a member: see
 * pgev_conn_cancel()), nothing of the batch commits: the failed query
 * reports its error, the others PGEV_EABORTED ("rolled back" if they had
 * run, "not run" otherwise). If the connection is lost before the Sync's
 * answer, every query and the batch report PGEV_ECONNLOST: the batch then
 * committed entirely or not at all. A batch may be longer than the
 * window (max_inflight): pgev asks the server for results with a Flush
 * request while the batch's Sync is held back. End the batch before
 * returning to the event loop: its queries' results arrive only after it
 * is ended.
 * Returns PGEV_OK, PGEV_ESTATE when a batch is already open, PGEV_ECLOSED,
 * or PGEV_EINVAL for NULL.
 */
PGEV_API int pgev_conn_batch_begin(pgev_conn *conn);

/**
 * Ends the open atomic batch. on_done (may be NULL) runs exactly once when
 * the whole batch has completed: status PGEV_OK when the batch committed,
 * otherwise the first failure's error with the server's whole message
 * (nothing of the batch was committed), or PGEV_ECONNLOST (unknown: all or
 * nothing). It runs after every query callback of the batch.
 * The batch's end is never refused for a full queue (max_pending), so a
 * batch can always be closed. Returns PGEV_OK, PGEV_ESTATE when no batch
 * is open, PGEV_ENOMEM (the batch stays open), or PGEV_EINVAL for NULL.
 */
PGEV_API int pgev_conn_batch_end(pgev_conn *conn, pgev_result_cb on_done, void *arg);

/* ------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------ */

/**
 * A transaction on one connection: opaque; created by pgev_conn_begin(),
 * ended by pgev_txn_commit() or pgev_txn_rollback().
 *
 *     pgev_txn *txn;
 *     pgev_txn_options o = { .isolation = PGEV_ISOLATION_SERIALIZABLE };
 *     if (pgev_conn_begin(conn, &o, &txn) == PGEV_OK) {
 *         pgev_txn_query(txn, "UPDATE acct SET bal = bal - 10 WHERE id = 1", NULL, NULL);
 *         pgev_txn_query(txn, "UPDATE acct SET bal = bal + 10 WHERE id = 2", NULL, NULL);
 *         pgev_txn_commit(txn, on_commit, ctx);  // PGEV_OK: both happened
 *     }
 *
 * Isolation: nothing else runs on the connection between BEGIN and
 * COMMIT/ROLLBACK. While the transaction is open, queries submitted on the
 * connection itself (pgev_conn_submit() and friends, batches, LISTEN) are
 * accepted but held, in order, and sent after the transaction's
 * COMMIT/ROLLBACK. Statements submitted on the transaction are not held.
 *
 * Pipelining: every statement of the transaction (BEGIN, each query,
 * savepoints, COMMIT) ends its own pipeline Sync segment. Sync does not end
 * an explicit transaction block, but it makes the server send each
 * statement's results at once, so a query's callback runs without waiting
 * for COMMIT and can submit the next statement (interactive use), while
 * statements submitted together still go out in one write.
 *
 * Failure: the first statement that fails (server error, timeout, cancel)
 * dooms the transaction. Its callback reports that failure; the
 * transaction's later statements complete with PGEV_EABORTED (the server
 * refuses them, or pgev discards their outcome), until a successful
 * pgev_txn_rollback_to_savepoint() a savepoint made before the failure revives it.
 * pgev_txn_commit() of a doomed transaction rolls it back and reports
 * PGEV_EABORTED with the failure's SQLSTATE and a message naming the
 * failed query's id. A serialization failure (SQLSTATE 40001) or deadlock
 * (40P01) thus reaches both the query's and the commit's callback, so the
 * caller can retry the whole transaction. COMMIT is sent only once every
 * earlier statement of the transaction has completed, so that a statement
 * which timed out or was cancelled client-side (whose effect on the server
 * is unknown) can never be committed; committing right behind a pipeline
 * of queries costs one more round trip for that reason.
 *
 * Lifetime: the handle is valid until the on_done of its commit or
 * rollback returns, or until the connection is freed, whichever comes
 * first. Freeing the connection completes every statement (and a requested
 * commit/rollback) with PGEV_ECANCELLED; a lost connection completes them
 * with PGEV_ECONNLOST; both exactly once. A graceful pgev_conn_close()
 * lets an open transaction go on: its statements, commit and rollback are
 * still accepted, and the close completes after it has ended and the held
 * queries have run.
 *
 * One transaction at a time per connection: it is open from
 * pgev_conn_begin() until pgev_txn_commit() or pgev_txn_rollback() is
 * called. The next transaction may begin right after that call; its BEGIN
 * queues behind the COMMIT (a COMMIT waiting for earlier statements keeps
 * its place in the queue). A connection acquired from a pool should end
 * its transaction before pgev_pool_release(); one released with its
 * transaction open is rolled back by the pool (pgev_txn_rollback(), whose
 * outcome goes to the pool) before the next borrower gets it.
 * pgev_pool_transaction() runs the whole cycle, with retries.
 */
typedef struct pgev_txn pgev_txn;

/** Isolation levels for pgev_txn_options. */
typedef enum pgev_isolation {
    PGEV_ISOLATION_DEFAULT = 0,     /**< the session's default_transaction_isolation */
    PGEV_ISOLATION_READ_COMMITTED,
    PGEV_ISOLATION_REPEATABLE_READ,
    PGEV_ISOLATION_SERIALIZABLE
} pgev_isolation;

/** Transaction options; zero-initialised means a plain BEGIN. */
typedef struct pgev_txn_options {
    pgev_isolation isolation;
    bool read_only;     /**< READ ONLY (writes fail with SQLSTATE 25006) */
    bool deferrable;    /**< DEFERRABLE (matters for SERIALIZABLE READ ONLY) */
} pgev_txn_options;

/**
 * Opens a transaction on conn: queues BEGIN with the options (opts may be
 * NULL), and from now on holds the connection's other submits (see
 * pgev_txn). BEGIN has no callback of its own: if it fails, the
 * transaction is doomed and every statement and the commit say so.
 * May be called while connecting, and from any callback.
 *
 * Returns PGEV_OK and stores the handle in *txn; or PGEV_EINVAL (NULL
 * argument, unknown isolation), PGEV_ESTATE (a transaction or an atomic
 * batch is already open on conn), PGEV_ECLOSED (closing, closed or failed
 * connection), PGEV_ENOMEM; then *txn is untouched and
 * pgev_conn_errmsg() says why.
 */
PGEV_API int pgev_conn_begin(pgev_conn *conn, const pgev_txn_options *opts, pgev_txn **txn);

/**
 * Submits a query inside the transaction: same arguments, id and callbacks
 * as pgev_conn_submit() (the id works with pgev_conn_cancel(), and
 * timeout_ms applies as usual: a timed-out query dooms the transaction).
 * Returns the query id, or PGEV_EINVAL (NULL arguments), PGEV_ECLOSED
 * (commit or rollback already requested, or the connection refuses work),
 * PGEV_EQUEUEFULL, PGEV_ENOMEM: then no callback runs.
 */
PGEV_API int64_t pgev_txn_submit(pgev_txn *txn, const pgev_query_args *args);

/** pgev_conn_query() inside the transaction; see pgev_txn_submit(). */
PGEV_API int64_t pgev_txn_query(pgev_txn *txn, const char *sql, pgev_result_cb on_done, void *arg);

/** pgev_conn_query_params() inside the transaction; see pgev_txn_submit(). */
PGEV_API int64_t pgev_txn_query_params(pgev_txn *txn, const char *sql, int nparams,
                                       const char *const *values, pgev_result_cb on_done, void *arg);

/**
 * SAVEPOINT name / RELEASE SAVEPOINT name / ROLLBACK TO SAVEPOINT name.
 * name is any non-empty string of at most 63 bytes; it is quoted as an
 * identifier (case and every character are kept). Returns and calls back
 * as pgev_txn_submit(). A successful rollback_to after a failure revives
 * the transaction (statements after it run normally, and commit commits
 * what the savepoint kept).
 */
PGEV_API int64_t pgev_txn_savepoint(pgev_txn *txn, const char *name, pgev_result_cb on_done, void *arg);
/** See pgev_txn_savepoint(). */
PGEV_API int64_t pgev_txn_release_savepoint(pgev_txn *txn, const char *name, pgev_result_cb on_done, void *arg);
/** See pgev_txn_savepoint(). */
PGEV_API int64_t pgev_txn_rollback_to_savepoint(pgev_txn *txn, const char *name, pgev_result_cb on_done, void *arg);

/**
 * Ends the transaction with COMMIT, sent once every earlier statement of
 * the transaction has completed (ROLLBACK instead when it is doomed).
 * on_done (may be NULL) runs exactly once, after every statement's
 * callback: PGEV_OK when the transaction committed; PGEV_EABORTED when it
 * was rolled back because of an earlier failure (that failure's SQLSTATE,
 * detail and hint, and a message naming the query); PGEV_ESERVER when
 * COMMIT itself failed (a deferred constraint, a serialization failure at
 * commit); PGEV_ECONNLOST or PGEV_ECANCELLED as for any query. Its
 * pgev_result_query_id() is the COMMIT's (or ROLLBACK's) id, or 0 when it
 * was never sent. The handle is freed when on_done returns.
 *
 * Returns PGEV_OK, or PGEV_EINVAL (NULL txn), PGEV_ECLOSED (already
 * committed or rolled back, or the connection refuses work; the handle
 * stays valid until the connection is freed), PGEV_ENOMEM.
 */
PGEV_API int pgev_txn_commit(pgev_txn *txn, pgev_result_cb on_done, void *arg);

/**
 * Ends the transaction with ROLLBACK, pipelined at once (statements
 * submitted before it still complete first, with their own outcome or
 * PGEV_EABORTED). Rolling back a doomed transaction is the normal way to
 * end it. on_done (may be NULL) runs exactly once: PGEV_OK when the
 * ROLLBACK ran, else the error. Returns as pgev_txn_commit().
 */
PGEV_API int pgev_txn_rollback(pgev_txn *txn, pgev_result_cb on_done, void *arg);

/** The transaction's connection (borrowed), or NULL for NULL. */
PGEV_API pgev_conn *pgev_txn_conn(const pgev_txn *txn);

/* ------------------------------------------------------------------------
 * LISTEN/NOTIFY
 * ------------------------------------------------------------------------ */

/**
 * Notification callback: `channel` (exactly as subscribed), `payload`
 * ("" when none was given) and the PID of the server process that sent
 * it. The strings are borrowed for the call. User data last.
 */
typedef void (*pgev_notify_cb)(pgev_conn *conn, const char *channel, const char *payload,
                               int sender_pid, void *arg);

/**
 * Subscribes to a channel: queues LISTEN "channel" (quoted as an
 * identifier, so case, spaces, quotes and any UTF-8 are kept exactly) and
 * registers on_notify. From then on, every notification on the channel is
 * handed to on_notify as it arrives, also while the connection is
 * otherwise idle; notifications sent in one burst arrive in order. The
 * server delivers notifications only once the LISTEN has run (and, inside
 * a transaction, committed): wait for on_done before relying on it.
 *
 * on_done (may be NULL) is LISTEN's completion, as for any query; if it
 * fails, the subscription is dropped. Listening again replaces the
 * channel's callback and arg (all its listeners, when
 * pgev_conn_add_listener() added several). Subscriptions last until
 * pgev_conn_unlisten() or pgev_conn_free(); a lost connection's listeners
 * receive nothing more. Freeing the connection, or unsubscribing, from
 * inside on_notify is safe.
 *
 * channel: 1 to 63 bytes (PostgreSQL truncates longer identifiers).
 * Returns the LISTEN's query id, or an error as pgev_conn_submit()
 * (PGEV_EINVAL for a NULL, empty or too long channel); then nothing was
 * registered.
 */
PGEV_API int64_t pgev_conn_listen(pgev_conn *conn, const char *channel, pgev_notify_cb on_notify,
                                  pgev_result_cb on_done, void *arg);

/**
 * Unsubscribes: UNLISTEN "channel" is queued, and on_notify is not called
 * again for this channel once this returns, whatever it returns
 * (notifications already on the way are dropped). on_done (may be NULL)
 * is UNLISTEN's completion. Returns its query id, or an error as
 * pgev_conn_submit() (then no callback runs); PGEV_EINVAL also when there
 * is no subscription to the channel.
 */
PGEV_API int64_t pgev_conn_unlisten(pgev_conn *conn, const char *channel, pgev_result_cb on_done,
                                    void *arg);

/**
 * Adds one more listener on a channel (asyncpg's add_listener): every
 * listener of a channel gets each notification, in the order they were
 * added, so one connection can serve several subscribers without
 * application-side fan-out. Queues LISTEN "channel" as
 * pgev_conn_listen() does (on_done, may be NULL, is its completion; if it
 * fails, this listener is dropped) and returns its query id, or an error
 * as pgev_conn_listen(). A listener added from inside on_notify gets the
 * next notification, not the one being delivered. pgev_conn_listen() on
 * the channel replaces all its listeners; pgev_conn_unlisten() removes
 * them all.
 */
PGEV_API int64_t pgev_conn_add_listener(pgev_conn *conn, const char *channel, pgev_notify_cb on_notify,
                                        pgev_result_cb on_done, void *arg);

/**
 * Removes the listener (channel, on_notify, arg) at once: it is not
 * called again once this returns (safe from inside on_notify). When it
 * was the channel's last listener, UNLISTEN is queued and its query id
 * returned (on_done, may be NULL, with done_arg, is its completion);
 * otherwise returns 0 and on_done never runs. PGEV_EINVAL when there is no
 * such listener; otherwise errors as pgev_conn_unlisten().
 */
PGEV_API int64_t pgev_conn_remove_listener(pgev_conn *conn, const char *channel, pgev_notify_cb on_notify,
                                           void *arg, pgev_result_cb on_done, void *done_arg);

/* ------------------------------------------------------------------------
 * COPY
 * ------------------------------------------------------------------------ */

/**
 * A COPY in progress: opaque. Handed to the COPY's callbacks; valid from
 * the first on_ready/on_data until the COPY's on_done returns (after that
 * the pointer must not be used).
 *
 * COPY FROM STDIN, with flow control:
 *
 *     static void on_ready(pgev_conn *conn, pgev_copy *copy, void *arg) {
 *         struct job *job = arg;
 *         while (job->next < job->count) {
 *             int rc = pgev_copy_write(copy, job->rows[job->next], job->lens[job->next]);
 *             if (rc == 1)
 *                 return;          // buffer full: on_ready runs again once it drained
 *             if (rc < 0)
 *                 return;          // the COPY is over; on_done says why
 *             job->next++;
 *         }
 *         pgev_copy_end(copy, NULL);   // on_done: rows affected = COPY's count
 *     }
 *     pgev_conn_copy_in(conn, "COPY items (id, name) FROM STDIN", on_ready, on_done, job);
 *
 * libpq cannot run COPY in pipeline mode. pgev therefore lets the queries
 * sent before the COPY finish (sending nothing new meanwhile), leaves
 * pipeline mode, runs the COPY, re-enters pipeline mode and goes on:
 * queries submitted after the COPY wait (in the pending queue, counted by
 * max_pending) and run after it, in submission order. The COPY costs the
 * pipeline one round trip of idle time on each side.
 *
 * Failures complete the COPY exactly once through on_done, and the
 * connection stays usable when the server allows it: a malformed row
 * (PGEV_ESERVER with the server's SQLSTATE, 22P02 say; the server reports
 * it when the data ends, having discarded what followed it), any other
 * server error, pgev_copy_end() with a message (PGEV_ECANCELLED, SQLSTATE
 * 57014), a timeout (PGEV_ETIMEOUT: COPY FROM STDIN is ended with an
 * error message, COPY TO STDOUT is cancelled on the server), or
 * pgev_conn_cancel() of its id (PGEV_ECANCELLED, likewise). A lost
 * connection completes it with PGEV_ECONNLOST, and pgev_conn_free() (also
 * from inside its callbacks) with PGEV_ECANCELLED. Nothing is committed
 * unless on_done reports PGEV_OK (COPY is one statement).
 */
typedef struct pgev_copy pgev_copy;

/**
 * COPY FROM STDIN: the server is ready for data (first call), or libpq's
 * buffer, full when pgev_copy_write() returned 1, has drained. Write with
 * pgev_copy_write() and finish with pgev_copy_end(), here or later from
 * any callback or event on the loop's thread. User data last.
 */
typedef void (*pgev_copy_ready_cb)(pgev_conn *conn, pgev_copy *copy, void *arg);

/**
 * COPY TO STDOUT: one chunk of data as the server sent it (one row in
 * text and CSV format). `data` holds `len` bytes followed by a NUL (handy
 * for text; binary data may contain NULs of its own) and is borrowed for
 * the call. User data last.
 */
typedef void (*pgev_copy_data_cb)(pgev_conn *conn, pgev_copy *copy, const char *data, size_t len,
                                  void *arg);

/**
 * The general form of a COPY, for pgev_conn_copy(). Zero-initialise and
 * set what you need; read during the call only.
 */
typedef struct pgev_copy_args {
    /** One COPY statement (sent with the simple query protocol, so no
     * parameters). */
    const char *sql;
    /** Set for COPY ... FROM STDIN (exactly one of on_ready and on_data). */
    pgev_copy_ready_cb on_ready;
    /** Set for COPY ... TO STDOUT. */
    pgev_copy_data_cb on_data;
    /** Completion; runs exactly once (may be NULL). On success the result
     * holds the COPY's command tag: pgev_result_rows_affected() is the
     * number of rows copied, pgev_result_rows() the number of on_data
     * calls. */
    pgev_result_cb on_done;
    /** User data for every callback. */
    void *arg;
    /** Deadline in milliseconds from the submit for the whole COPY, as
     * pgev_query_args.timeout_ms: 0 takes the connection's
     * query_timeout_ms, < 0 means none. */
    int timeout_ms;
} pgev_copy_args;

/**
 * Submits a COPY statement. The SQL must be a COPY; its direction must
 * match the callback given: a COPY FROM STDIN run through on_data (or TO
 * STDOUT through on_ready) is ended at once and completes with
 * PGEV_EINVAL. A COPY to or from a server-side file needs no callback of
 * either kind and just runs (set either; it is not called).
 *
 * Returns the query id (> 0; pgev_conn_cancel() accepts it), or
 * PGEV_EINVAL (NULL arguments, not a COPY statement, both or neither of
 * on_ready and on_data), PGEV_ESTATE (inside an atomic batch, which cannot
 * carry a COPY), PGEV_ECLOSED, PGEV_EQUEUEFULL, PGEV_ENOMEM; then no
 * callback runs and pgev_conn_errmsg() says why. Inside an open
 * transaction (pgev_conn_begin()) it is held like any query submitted on
 * the connection. Call from the loop's thread.
 */
PGEV_API int64_t pgev_conn_copy(pgev_conn *conn, const pgev_copy_args *args);

/**
 * COPY ... FROM STDIN: pgev_conn_copy() with on_ready, on_done and arg
 * (on_ready must not be NULL).
 */
PGEV_API int64_t pgev_conn_copy_in(pgev_conn *conn, const char *sql, pgev_copy_ready_cb on_ready,
                                   pgev_result_cb on_done, void *arg);

/**
 * COPY ... TO STDOUT: pgev_conn_copy() with on_data, on_done and arg
 * (on_data must not be NULL). Chunks are delivered as they arrive, in
 * constant memory.
 */
PGEV_API int64_t pgev_conn_copy_out(pgev_conn *conn, const char *sql, pgev_copy_data_cb on_data,
                                    pgev_result_cb on_done, void *arg);

/**
 * Queues `len` bytes of COPY data (any split: rows need not align with
 * calls; the format is the COPY's: text, CSV or binary). Never blocks and
 * never calls back. pgev lets at most about 64 kB plus one write pile up
 * in libpq's buffer beyond what the socket takes; past that the next
 * write refuses.
 *
 * Returns PGEV_OK when the data was accepted (libpq copied it); 1 when the
 * buffer is full and nothing was accepted: stop writing, on_ready runs
 * once it has drained; PGEV_EINVAL (NULL copy, NULL data with len > 0,
 * len > INT_MAX, or a COPY TO STDOUT); PGEV_ECLOSED when the COPY is no
 * longer accepting data (ended, timed out, cancelled, failed);
 * PGEV_ECONNLOST when sending failed (on_done follows from the loop).
 */
PGEV_API int pgev_copy_write(pgev_copy *copy, const void *data, size_t len);

/**
 * Ends a COPY FROM STDIN: errmsg NULL finishes it (the server then commits
 * the rows, or reports a bad one); otherwise the COPY is aborted with
 * errmsg as the reason and on_done reports PGEV_ECANCELLED (SQLSTATE
 * 57014, the server's message quoting errmsg). On a COPY TO STDOUT it
 * stops the COPY early, as pgev_conn_cancel() of its id does.
 * on_done follows from the loop, never inside this call.
 *
 * Returns PGEV_OK, 1 when libpq's buffer is full (nothing done: call again
 * from on_ready), PGEV_EINVAL for NULL, PGEV_ECLOSED when the COPY already
 * ended (a second end is harmless), PGEV_ECONNLOST when sending failed.
 */
PGEV_API int pgev_copy_end(pgev_copy *copy, const char *errmsg);

/**
 * Flow control for a COPY TO STDOUT: pauses the delivery of data. From
 * inside on_data (or any time from the loop's thread) it stops further
 * on_data calls and stops reading the socket, so the server and the
 * kernel hold the rest and memory stays bounded while the application's
 * own sink is full. The COPY's deadline still runs. Resume with
 * pgev_copy_resume().
 *
 * Returns PGEV_OK, PGEV_EINVAL for NULL or a COPY FROM STDIN, PGEV_ECLOSED
 * when the COPY has ended or its data is all delivered.
 */
PGEV_API int pgev_copy_pause(pgev_copy *copy);

/**
 * Resumes a COPY TO STDOUT paused with pgev_copy_pause(): delivery goes on
 * from the loop (never inside this call). Resuming a COPY that is not
 * paused is harmless. Returns PGEV_OK, or PGEV_EINVAL for NULL or a COPY
 * FROM STDIN.
 */
PGEV_API int pgev_copy_resume(pgev_copy *copy);

/* ------------------------------------------------------------------------
 * Pool
 * ------------------------------------------------------------------------ */

/**
 * A connection pool: opaque; created by pgev_pool_new(), freed by
 * pgev_pool_free(). It is built on the connection API above and keeps
 * between min_conns and max_conns pgev_conns to one conninfo.
 *
 * Two ways to use it:
 *  - pgev_pool_submit() and friends: the query goes to the ready connection
 *    with the fewest queries outstanding and is pipelined there. While no
 *    connection can take it, it waits in the pool's queue (bounded by
 *    max_pending, each entry for at most queue_timeout_ms).
 *  - pgev_pool_acquire() / pgev_pool_release(): exclusive use of one
 *    connection (transactions, session state), granted to waiters in FIFO
 *    order. Nothing of a borrower reaches the next one: a connection
 *    released inside a transaction, or with queries still running, is
 *    rolled back, its listeners are dropped, and reset_query runs, within
 *    reset_timeout_ms, before anyone else gets it; one that failed is
 *    replaced. pgev_pool_transaction() does acquire, BEGIN, COMMIT (with
 *    retries on serialization failures) and release in one call.
 *
 * Lost connections are replaced, reconnecting with jittered exponential
 * backoff (at most PGEV_POOL_BACKOFF_MAX_MS between attempts, one attempt
 * at a time while the server keeps refusing). Queries still in the pool's
 * queue are never lost with a connection: they go to another one, and so
 * do queries the dead connection had not yet sent (pgev_result_sent() 0),
 * within their queue deadline. A query already sent on it completes with
 * PGEV_ECONNLOST, unless it is flagged PGEV_QUERY_RETRY_SAFE (or
 * PGEV_QUERY_READONLY) and has not delivered rows to its on_rows yet
 * (they would arrive twice): then it is sent again on another
 * connection, up to three times in all. pgev_pool_statistics.queries_retried
 * counts both.
 *
 * One periodic timer (every PGEV_POOL_MAINTENANCE_MS) closes idle and
 * too-old connections and opens connections up to min_conns, so an open
 * pool always has an event armed on the base; after pgev_pool_close() has
 * finished, or after pgev_pool_free(), nothing is.
 *
 * The contracts of the connection API hold for the pool too: every
 * accepted request (query, acquire, transaction) completes exactly once on
 * every path, pgev_pool_free() included; never inside the call that made
 * it; freeing or closing the pool from inside any pgev callback (a pool
 * query's, an acquire's, the init hook, on_closed, a transaction's, or a
 * query's on an acquired connection) is safe; its queues are bounded. A
 * pool belongs to the thread that runs its base.
 */
typedef struct pgev_pool pgev_pool;

/** Defaults used when a pgev_pool_options field is 0. */
#define PGEV_POOL_DEFAULT_MAX_CONNS 10
#define PGEV_POOL_DEFAULT_MAX_CONNECTING 2
#define PGEV_POOL_DEFAULT_ACQUIRE_TIMEOUT_MS 30000
#define PGEV_POOL_DEFAULT_QUEUE_TIMEOUT_MS 30000
#define PGEV_POOL_DEFAULT_MAX_WAITERS 10000
#define PGEV_POOL_DEFAULT_MAX_PENDING 100000
/** The reconnect backoff never waits longer than this. */
#define PGEV_POOL_BACKOFF_MAX_MS 5000
/** Period of the pool's maintenance timer. */
#define PGEV_POOL_MAINTENANCE_MS 250
/** How long a released connection's reset may take (pgev_pool_options.reset_timeout_ms). */
#define PGEV_POOL_DEFAULT_RESET_TIMEOUT_MS 5000

/**
 * Init hook: runs once on every new connection, after it connected and
 * before the pool uses it. Submit what the session needs on `conn`
 * (SET ..., prepared statements) and call pgev_pool_init_done() when it has
 * completed — from those queries' callbacks, or from inside the hook when
 * there is nothing to wait for. Until then the connection takes no pool
 * work. A hook that does not finish within connect_timeout_ms (checked by
 * the maintenance timer) has its connection discarded.
 */
typedef void (*pgev_pool_init_cb)(pgev_pool *pool, pgev_conn *conn, void *arg);

/**
 * Acquire callback: on success conn is the connection, exclusively the
 * caller's until pgev_pool_release(), and err is NULL. On failure conn is
 * NULL and err says why: PGEV_ETIMEOUT (acquire_timeout_ms passed),
 * PGEV_ECANCELLED (pgev_pool_acquire_cancel(), or the pool was freed).
 * err is borrowed for the call.
 */
typedef void (*pgev_pool_acquire_cb)(pgev_pool *pool, pgev_conn *conn, const pgev_error *err,
                                     void *arg);

/** Called once when a pgev_pool_close() has finished: every connection is closed. */
typedef void (*pgev_pool_closed_cb)(pgev_pool *pool, void *arg);

/**
 * Pool options. Zero-initialise and set what you need; every 0/NULL field
 * takes its default. Negative values, or min_conns > max_conns, make
 * pgev_pool_new() fail. The struct (and reset_query) is read during
 * pgev_pool_new() only.
 */
typedef struct pgev_pool_options {
    /** Connections kept open even when idle. 0: none. */
    int min_conns;
    /** Most connections open at once, in any state. 0: PGEV_POOL_DEFAULT_MAX_CONNS. */
    int max_conns;
    /** Most connections being opened at once. 0: PGEV_POOL_DEFAULT_MAX_CONNECTING. */
    int max_connecting;
    /** Connect deadline of each connection (see pgev_conn_options), also
     * the limit for on_conn_init. 0: the connection's default. */
    int connect_timeout_ms;
    /** The pipeline window of each connection: the most pool queries
     * outstanding on one connection. 0: PGEV_DEFAULT_MAX_INFLIGHT. */
    int conn_max_inflight;
    /** How long pgev_pool_acquire() may wait. 0: PGEV_POOL_DEFAULT_ACQUIRE_TIMEOUT_MS. */
    int acquire_timeout_ms;
    /** Most acquires waiting; beyond it pgev_pool_acquire() returns
     * PGEV_EQUEUEFULL. 0: PGEV_POOL_DEFAULT_MAX_WAITERS. */
    int max_waiters;
    /** How long a pool query may wait in the pool's queue for a connection
     * before it completes with PGEV_ETIMEOUT (the time it then runs on a
     * connection is not limited by this). 0: PGEV_POOL_DEFAULT_QUEUE_TIMEOUT_MS. */
    int queue_timeout_ms;
    /** Most pool queries in the pool's queue; beyond it a submit returns
     * PGEV_EQUEUEFULL. 0: PGEV_POOL_DEFAULT_MAX_PENDING. */
    int max_pending;
    /** A connection idle this long is closed, down to min_conns. 0: never. */
    int idle_timeout_ms;
    /** A connection is closed (once idle, or when released) after this
     * long, minus up to 10% random jitter so that connections opened
     * together do not expire together. 0: no limit. */
    int max_lifetime_ms;
    /** SQL run on every connection at release, after any ROLLBACK
     * (e.g. "DISCARD ALL"; note that it also undoes what on_conn_init set
     * up). NULL: none. Copied. */
    const char *reset_query;
    /** Init hook (see pgev_pool_init_cb); NULL: none. */
    pgev_pool_init_cb on_conn_init;
    /** User data for on_conn_init. */
    void *arg;
    /** Default deadline of every pool query whose timeout_ms is 0, in
     * milliseconds, counted from the submit (time in the pool's queue
     * included; see pgev_pool_submit()). 0: none. */
    int query_timeout_ms;
    /** Health check: a connection that has been idle at least this long
     * is checked with an empty query before it takes a pool query or is
     * handed to an acquire (the work goes to another connection, or waits
     * for the check), and by the maintenance timer; one that fails the
     * check is replaced. The check's deadline is connect_timeout_ms.
     * While checked, a connection counts in conns_other. 0: no check. */
    int health_check_idle_ms;
    /** Read routing: a conninfo for standbys (a multi-host list with
     * target_session_attrs=standby or prefer-standby works, as in libpq).
     * Pool queries flagged PGEV_QUERY_READONLY go to the least-loaded
     * standby connection with room, and to the primary connections when
     * there is none (no standby configured, all down or busy). Other
     * queries and acquires use only the primary connections (conninfo).
     * NULL: no standbys. Copied. */
    const char *standby_conninfo;
    /** Standby connections kept open even when idle. 0: none (they are
     * opened as read-only queries arrive). */
    int standby_min_conns;
    /** Most standby connections, counted apart from max_conns.
     * 0: the same as max_conns. */
    int standby_max_conns;
    /** Each connection's statement cache (see
     * pgev_conn_options.stmt_cache_size): 0 for the default size,
     * PGEV_STMT_CACHE_OFF for none. The default is safe behind PgBouncer
     * in transaction mode: the cache detects the shared server sessions
     * and names nothing there. */
    int stmt_cache_size;
    /** The resolver for every connection's host names (see
     * pgev_conn_options.evdns_base); NULL: each connection its own.
     * Borrowed: free it after the pool. */
    struct evdns_base *evdns_base;
    /** The longest a released connection's reset (rollback of what the
     * borrower left open, UNLISTEN *, reset_query) may take, in
     * milliseconds; past it the connection is discarded and replaced (a
     * network partition, a backend that stopped answering).
     * 0: PGEV_POOL_DEFAULT_RESET_TIMEOUT_MS. */
    int reset_timeout_ms;
    /** A connection is replaced after this many uses (pool queries and
     * acquires): it takes no new work once reached and is closed when
     * idle. 0: no limit. */
    int64_t max_uses;
    /** Tracing (see pgev_trace_cb): the pool's acquire, release and
     * connection open/close, and every query, connect and disconnect of
     * its connections (pgev_trace.pool set). NULL: off, at no cost. */
    pgev_trace_cb on_trace;
    /** User data for on_trace. */
    void *trace_arg;
} pgev_pool_options;

/**
 * Pool statistics, a snapshot filled by pgev_pool_stats(). The conns_*
 * sizes add up to conns; the counters count since pgev_pool_new().
 */
typedef struct pgev_pool_statistics {
    int conns;              /**< connections held, in any state */
    int conns_connecting;   /**< connecting, or running on_conn_init */
    int conns_idle;         /**< ready, no pool query outstanding */
    int conns_busy;         /**< ready, with pool queries outstanding */
    int conns_acquired;     /**< held through pgev_pool_acquire() */
    int conns_other;        /**< health-checked, reset after release, closing, or about to be freed */
    int waiters;            /**< pgev_pool_acquire() calls waiting */
    int queued;             /**< pool queries waiting for a connection */
    int outstanding;        /**< pool queries running on connections */
    int64_t queries;        /**< pool queries accepted */
    int64_t queries_failed; /**< pool queries that completed with an error (any cause) */
    int64_t queries_timed_out; /**< of which timed out in the pool's queue */
    int64_t acquires;       /**< acquires granted */
    int64_t acquire_timeouts; /**< acquires that timed out */
    int64_t resets;         /**< released connections rolled back or reset */
    int64_t connects;       /**< connections made (each counted once it is up) */
    int64_t connect_failures; /**< connection attempts that failed */
    int64_t conns_lost;     /**< connections that were up and were lost */
    int64_t conns_closed;   /**< connections the pool closed (idle, lifetime, reset failed, drain) */
    int conns_standby;      /**< of conns, those to standby_conninfo (in any state) */
    int64_t queries_standby; /**< pool queries sent to a standby connection */
    int64_t queries_retried; /**< pool queries sent again after their connection was lost */
    int64_t health_checks;  /**< health checks run (see health_check_idle_ms) */
    int64_t health_check_failures; /**< of which failed: the connection was replaced */
    /** Latency of pool queries (submit to completion, queue time
     * included, every outcome) and of acquires (call to grant), median
     * and 99th percentile in microseconds since the pool was made, within
     * 12.5 %; 0 before the first one. */
    double query_p50_us, query_p99_us;
    double acquire_wait_p50_us, acquire_wait_p99_us;
    int64_t reset_timeouts; /**< released connections discarded because their reset passed reset_timeout_ms */
    int64_t acquires_cancelled; /**< waiting acquires ended by pgev_pool_acquire_cancel() */
    int64_t pool_resets;    /**< pgev_pool_reset() calls */
    int64_t transactions_committed; /**< pgev_pool_transaction()s that committed */
    int64_t transactions_failed;    /**< pgev_pool_transaction()s that ended otherwise */
    int64_t transactions_retried;   /**< bodies run again after 40001 / 40P01 */
} pgev_pool_statistics;

/**
 * Creates a pool on `base` for `conninfo` (as in pgev_conn_new()) and
 * starts opening min_conns connections, without blocking. opts may be NULL
 * for all defaults; read during the call only.
 *
 * Returns the pool, owned by the caller (free it with pgev_pool_free()),
 * or NULL when base or conninfo is NULL, an option is out of range, or
 * memory ran out. A conninfo that cannot connect is not an error here:
 * queries and acquires then time out with the connection error in their
 * message. Call from the thread that runs `base`.
 */
PGEV_API pgev_pool *pgev_pool_new(struct event_base *base, const char *conninfo,
                                  const pgev_pool_options *opts);

/**
 * Frees the pool and all its connections at once. Every pool query still
 * queued or running, every waiting acquire and every query running on an
 * acquired connection completes with PGEV_ECANCELLED: inside this call, or,
 * when called from one of the pool's callbacks, right after that callback
 * returns. on_closed is not called. Connections obtained by acquire must
 * not be used afterwards. Safe from inside any pool callback (including a
 * callback of a query on an acquired connection); NULL is a no-op.
 */
PGEV_API void pgev_pool_free(pgev_pool *pool);

/**
 * Graceful shutdown (drain): new queries and acquires are refused
 * (PGEV_ECLOSED); queued queries and waiting acquires are still served (or
 * time out); once the queues are empty and every acquired connection has
 * been released, the connections are closed and on_closed (may be NULL)
 * runs once, from the loop. The pool object stays valid until
 * pgev_pool_free(). Returns PGEV_OK, or PGEV_EINVAL for NULL; closing again
 * returns PGEV_OK and changes nothing.
 */
PGEV_API int pgev_pool_close(pgev_pool *pool, pgev_pool_closed_cb on_closed, void *arg);

/**
 * Submits a query to the pool. Same arguments as pgev_conn_submit()
 * (copied during the call, so they may be on the stack), except that
 * preparing (sql and stmt both set) is refused: prepare statements on every
 * connection from on_conn_init, then run them with .stmt. The query runs
 * on the ready connection with the fewest queries outstanding, or waits in
 * the pool's queue until one can take it.
 *
 * The callbacks get the connection the query ran on (NULL when it never
 * reached one: queue timeout, pool freed); pgev_result_query_id() is the
 * id on that connection, 0 when it never reached one. Queries sent to the
 * same connection run in order; there is no order across connections.
 * A query that reaches a connection which refuses it (a COPY, say)
 * completes with that connection's error.
 *
 * Returns a pool query id (> 0, unique in this pool) or a negative
 * pgev_status: PGEV_EINVAL (bad arguments), PGEV_ECLOSED (the pool is
 * closing or closed), PGEV_EQUEUEFULL (max_pending reached), PGEV_ENOMEM;
 * then nothing was queued, no callback will run and pgev_pool_errmsg()
 * says why. Call from the loop's thread, including from callbacks.
 */
PGEV_API int64_t pgev_pool_submit(pgev_pool *pool, const pgev_query_args *args);

/** pgev_conn_query() on the pool: same return and contracts as pgev_pool_submit(). */
PGEV_API int64_t pgev_pool_query(pgev_pool *pool, const char *sql, pgev_result_cb on_done, void *arg);

/** pgev_conn_query_params() on the pool: same return and contracts as pgev_pool_submit(). */
PGEV_API int64_t pgev_pool_query_params(pgev_pool *pool, const char *sql, int nparams,
                                        const char *const *values, pgev_result_cb on_done, void *arg);

/**
 * pgev_conn_execute() on the pool: runs the prepared statement `name`,
 * which must exist on every connection (prepare it in on_conn_init).
 * Same return and contracts as pgev_pool_submit().
 */
PGEV_API int64_t pgev_pool_execute(pgev_pool *pool, const char *name, int nparams,
                                   const char *const *values, pgev_result_cb on_done, void *arg);

/**
 * Asks for exclusive use of one connection. cb runs exactly once, from the
 * loop: with a ready connection with nothing outstanding, in FIFO order
 * among waiters, or with PGEV_ETIMEOUT after acquire_timeout_ms (the
 * message names the last connection error, if any), or PGEV_ECANCELLED
 * after pgev_pool_acquire_cancel(). While held, the connection takes no
 * pool queries; use it with the pgev_conn_* calls, never pgev_conn_free()
 * or pgev_conn_close() it, and hand it back with pgev_pool_release(pool,
 * conn, id), where id is what this call returned: the id ties the release
 * to this acquire.
 *
 * Returns the acquire id (> 0, unique in this pool: cb will run), or
 * PGEV_EINVAL (NULL pool or cb), PGEV_ECLOSED (closing or closed pool),
 * PGEV_EQUEUEFULL (max_waiters already waiting), PGEV_ENOMEM; then cb
 * never runs.
 */
PGEV_API int64_t pgev_pool_acquire(pgev_pool *pool, pgev_pool_acquire_cb cb, void *arg);

/**
 * Cancels a waiting acquire: its callback runs once, from the loop, with
 * PGEV_ECANCELLED (never inside this call). Returns PGEV_OK, or
 * PGEV_EINVAL when acquire_id is not waiting (already granted, timed out,
 * cancelled, or unknown): then nothing changes, and a granted connection
 * is the caller's to release.
 */
PGEV_API int pgev_pool_acquire_cancel(pgev_pool *pool, int64_t acquire_id);

/**
 * Gives back the connection acquired under acquire_id (what
 * pgev_pool_acquire() returned). Nothing of the borrower reaches the next
 * one: its notification callbacks are dropped at once; before the
 * connection is used again the pool rolls back a transaction left open
 * (a pgev_txn through pgev_txn_rollback(), a plain BEGIN with ROLLBACK;
 * also whenever queries are still running on it), runs UNLISTEN * if the
 * borrower subscribed with pgev_conn_listen(), then reset_query if set.
 * Those steps are pipelined together and bounded by reset_timeout_ms: if
 * one fails or the time passes, or the connection is broken, expired
 * (max_lifetime_ms, max_uses, pgev_pool_reset()), it is discarded and
 * replaced. A clean connection released outside a callback needs none of
 * this; one released inside a query callback is looked at once that
 * query's Sync has been read (no ROLLBACK round trip when it is clean).
 * Queries still running on it complete normally, or with PGEV_ECANCELLED
 * when it is discarded. The caller must not use conn afterwards.
 *
 * Returns PGEV_OK, or PGEV_EINVAL when conn is not held under acquire_id
 * (released already, or acquired by someone else since: a stale or
 * double release), with pgev_pool_errmsg() saying so; then nothing
 * changes. Never calls back. Safe from inside any callback.
 */
PGEV_API int pgev_pool_release(pgev_pool *pool, pgev_conn *conn, int64_t acquire_id);

/**
 * Replaces every connection (after a failover or a credential rotation):
 * idle ones are closed now, busy ones once their pool queries complete,
 * acquired ones when released; new ones are opened as usual (min_conns,
 * demand). Queries and acquires go on meanwhile. Returns PGEV_OK, or
 * PGEV_EINVAL (NULL), PGEV_ECLOSED (the pool is closing or closed).
 */
PGEV_API int pgev_pool_reset(pgev_pool *pool);

/**
 * Ends the on_conn_init hook of `conn`: ok true puts the connection into
 * service, false discards it (counted as a connect failure). Returns
 * PGEV_OK, or PGEV_EINVAL when conn is not initialising in this pool (it
 * timed out or was lost meanwhile: harmless).
 */
PGEV_API int pgev_pool_init_done(pgev_pool *pool, pgev_conn *conn, bool ok);

/* ---- transactions in one call ------------------------------------------- */

/**
 * A transaction run by pgev_pool_transaction(): opaque, valid from the
 * first call of the body until on_done returns.
 */
typedef struct pgev_pool_txn pgev_pool_txn;

/** Attempts of a pool transaction when pgev_pool_txn_options.max_attempts is 0. */
#define PGEV_POOL_TXN_DEFAULT_ATTEMPTS 3

/** Options of pgev_pool_transaction(); zero-initialised: plain BEGIN, 3 attempts. */
typedef struct pgev_pool_txn_options {
    /** BEGIN's options (isolation, read only, deferrable). */
    pgev_txn_options txn;
    /** Runs of the body in all (1: never retried). 0: PGEV_POOL_TXN_DEFAULT_ATTEMPTS. */
    int max_attempts;
} pgev_pool_txn_options;

/**
 * The body of a pool transaction: submit the statements on txn
 * (pgev_txn_query() and friends; the connection is pgev_txn_conn(txn)),
 * from here or from their callbacks, and end it with exactly one
 * pgev_pool_txn_commit() or pgev_pool_txn_rollback() (also after a
 * statement failed: commit then reports the failure). attempt is 1 on the
 * first run, 2 on the first retry, and so on: a body runs again from the
 * start, so it must not assume anything of an earlier run's statements.
 */
typedef void (*pgev_pool_txn_body_cb)(pgev_pool_txn *ptx, pgev_txn *txn, int attempt, void *arg);

/**
 * The outcome of a pool transaction, once: PGEV_OK when it committed;
 * otherwise the error (its SQLSTATE with pgev_error_sqlstate()): the
 * acquire's (PGEV_ETIMEOUT, PGEV_ECANCELLED), the commit's as for
 * pgev_txn_commit() (PGEV_EABORTED for a failed statement, PGEV_ESERVER
 * for COMMIT itself), PGEV_EABORTED "rolled back by the application" after
 * pgev_pool_txn_rollback(), or PGEV_ECONNLOST / PGEV_ECANCELLED. attempts
 * is how many times the body ran. The connection is back in the pool by
 * now; res is borrowed for the call.
 */
typedef void (*pgev_pool_txn_done_cb)(pgev_pool *pool, pgev_result *res, int attempts, void *arg);

/**
 * A transaction in one call: acquires a connection, BEGINs it with
 * opts->txn, runs body, sends COMMIT when the body calls
 * pgev_pool_txn_commit() (ROLLBACK for pgev_pool_txn_rollback()), gives
 * the connection back and calls on_done with the outcome. When the
 * transaction fails with a serialization failure (40001) or a deadlock
 * (40P01) — at a statement or at COMMIT — it is rolled back and the body
 * runs again on the same connection, up to max_attempts runs in all.
 *
 *     static void body(pgev_pool_txn *ptx, pgev_txn *txn, int attempt, void *arg) {
 *         pgev_txn_query(txn, "UPDATE acct SET bal = bal - 10 WHERE id = 1", NULL, NULL);
 *         pgev_txn_query(txn, "UPDATE acct SET bal = bal + 10 WHERE id = 2", NULL, NULL);
 *         pgev_pool_txn_commit(ptx);
 *     }
 *     static void done(pgev_pool *pool, pgev_result *res, int attempts, void *arg) {
 *         if (pgev_result_status(res) != PGEV_OK)
 *             fprintf(stderr, "transfer failed: %s\n", pgev_error_message(pgev_result_error(res)));
 *     }
 *     pgev_pool_txn_options o = { .txn = { .isolation = PGEV_ISOLATION_SERIALIZABLE } };
 *     pgev_pool_transaction(pool, &o, body, done, ctx);
 *
 * body and on_done run from the loop, never inside this call; on_done
 * runs exactly once, after the body has ended the transaction (or without
 * the body having run, when the acquire or BEGIN failed). A body that
 * never ends its transaction keeps the connection.
 *
 * Returns the acquire id (> 0; pgev_pool_acquire_cancel() cancels the
 * transaction while it waits for a connection, then on_done gets
 * PGEV_ECANCELLED), or PGEV_EINVAL (NULL pool, body or on_done, bad
 * options), PGEV_ECLOSED, PGEV_EQUEUEFULL, PGEV_ENOMEM as
 * pgev_pool_acquire(); then nothing runs.
 */
PGEV_API int64_t pgev_pool_transaction(pgev_pool *pool, const pgev_pool_txn_options *opts,
                                       pgev_pool_txn_body_cb body, pgev_pool_txn_done_cb on_done,
                                       void *arg);

/**
 * Ends the body's transaction: COMMIT, sent once the statements before it
 * completed (see pgev_txn_commit()). Call once per run of the body; the
 * outcome goes to on_done (or, on 40001 / 40P01 with attempts left, the
 * body runs again). Returns PGEV_OK, or PGEV_EINVAL (NULL, or already
 * ended in this run); never calls back inside the call.
 */
PGEV_API int pgev_pool_txn_commit(pgev_pool_txn *ptx);

/** Ends the body's transaction with ROLLBACK; on_done then reports PGEV_EABORTED. As pgev_pool_txn_commit(). */
PGEV_API int pgev_pool_txn_rollback(pgev_pool_txn *ptx);

/** Fills *out with a snapshot of the pool's sizes and counters. Returns PGEV_OK, or PGEV_EINVAL for NULL. */
PGEV_API int pgev_pool_stats(const pgev_pool *pool, pgev_pool_statistics *out);

/**
 * Why the last refused pool call was refused, or the last connection error
 * when the pool cannot connect; "" when there is none. Borrowed: valid
 * until the next call on the pool.
 */
PGEV_API const char *pgev_pool_errmsg(const pgev_pool *pool);

#ifdef __cplusplus
}
#endif

#endif /* PGEV_H */
