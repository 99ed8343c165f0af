/*
 * Transactions: BEGIN ... COMMIT on one connection, with savepoints.
 *
 * Wire design. Every statement of a transaction (BEGIN, each query, each
 * savepoint command, COMMIT/ROLLBACK) is its own pipeline Sync segment. A
 * Sync does not end an explicit transaction block (the server just reports
 * "in transaction" or "in failed transaction" with ReadyForQuery), but it
 * does make the server send each statement's results at once. So results
 * arrive without waiting for COMMIT, a callback can submit the next
 * statement (interactive use), statements submitted together still leave in
 * one write, and the dispatcher treats them like any other isolated query.
 * The alternative, one segment with flush requests, would make the server
 * skip everything after an error up to COMMIT, including the COMMIT, and
 * leave the block open in a failed state.
 *
 * Isolation from other callers: while a transaction is open (from begin
 * until its COMMIT/ROLLBACK is queued), the connection's own submits go to
 * the `held` FIFO instead of `pending` (see enqueue() in query.c); queuing
 * the COMMIT/ROLLBACK appends them to `pending` behind it, in order.
 *
 * Failure. Each statement's completion passes through stmt_done(), which
 * keeps the transaction's state: the first failure dooms it, and outcomes
 * of later statements become PGEV_EABORTED (the server refuses them with
 * 25P02; after a client-side timeout or cancel, when the server's state is
 * unknown, pgev discards whatever they did). COMMIT waits until every
 * earlier statement has completed, then goes out as COMMIT, or as ROLLBACK
 * when the transaction is doomed: a statement that timed out (and may
 * still have succeeded on the server) can never be committed.
 *
 * A successful ROLLBACK TO SAVEPOINT revives a transaction doomed by a
 * server error: the server had refused every statement after the error,
 * SAVEPOINT included, so the savepoint predates the failure and the
 * rollback undid it. After a client-side failure the server may have kept
 * running, so only commit/rollback remain.
 *
 * Lifetime. The handle is freed once its COMMIT/ROLLBACK has completed and
 * no statement of it is outstanding, or, for a transaction never ended,
 * when its connection is freed.
 */
#include "pgev-internal.h"
#include "pool-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL's NAMEDATALEN - 1: longer identifiers are truncated. */
#define SAVEPOINT_NAME_MAX 63

enum stmt_kind {
    STMT_BEGIN,         /* internal: no user callback */
    STMT_QUERY,         /* user query, SAVEPOINT, RELEASE */
    STMT_ROLLBACK_TO,   /* may revive a doomed transaction */
    STMT_COMMIT,
    STMT_ROLLBACK_DOOMED, /* ROLLBACK sent for a commit of a doomed transaction */
    STMT_ROLLBACK
};

struct pgev_txn {
    pgev_conn *conn;
    int outstanding;        /* statements whose completion has not run */
    bool ending;            /* commit or rollback requested: no more statements */
    bool commit_waiting;    /* commit requested, waiting for outstanding == 0 */
    int64_t end_id;         /* the gated COMMIT while commit_waiting */
    struct txn_stmt *end_stmt; /* its statement record (kind decided at the gate) */
    bool end_done;          /* the COMMIT/ROLLBACK completion has run */
    bool doomed;            /* a statement failed: it cannot commit */
    bool revivable;         /* doomed by a server error (see ROLLBACK TO above) */
    pgev_result_cb on_end;  /* commit/rollback's completion */
    void *end_arg;
    int64_t failed_id;      /* query id of the first failure (0: BEGIN's or none) */
    pgev_error failure;     /* deep copy of the first failure */
};

/* One statement in flight: the user's callbacks and what it is. */
typedef struct txn_stmt {
    pgev_txn *txn;
    enum stmt_kind kind;
    pgev_result_cb on_rows;
    pgev_result_cb on_done;
    void *arg;
} txn_stmt;

static bool
is_end(enum stmt_kind kind)
{
    return kind == STMT_COMMIT || kind == STMT_ROLLBACK_DOOMED || kind == STMT_ROLLBACK;
}

static void
maybe_free(pgev_txn *txn)
{
    if (txn->end_done && txn->outstanding == 0)
        free(txn);
}

/* Queries submitted on the connection meanwhile now follow the end. */
static void
release_held(pgev_conn *conn)
{
    pgev_node *node;
    bool moved = false;
    while ((node = pgev_fifo_pop(&conn->held)) != NULL) {
        pgev_fifo_push(&conn->pending, node);
        moved = true;
    }
    if (moved)
        pgev_loop_defer(conn->loop);   /* the pump sends them */
}

static void
doom(pgev_txn *txn, int64_t query_id, const pgev_error *err, const char *prefix)
{
    if (txn->doomed)
        return;
    txn->doomed = true;
    txn->revivable = pgev_error_code(err) == PGEV_ESERVER;
    txn->failed_id = query_id;
    if (prefix) {
        pgev_error tmp;
        pgev_error_set(&tmp, pgev_error_code(err), "%s%s", prefix, pgev_error_message(err));
        tmp.sqlstate = err->sqlstate;
        tmp.severity = err->severity;
        tmp.detail = err->detail;
        tmp.hint = err->hint;
        pgev_error_copy(&txn->failure, &tmp);
    } else {
        pgev_error_copy(&txn->failure, err);
    }
}

/* Describes the doom as "query N failed: ..." or "BEGIN failed: ...". */
static void
failure_text(const pgev_txn *txn, char *buf, size_t size)
{
    if (txn->failed_id > 0)
        snprintf(buf, size, "query %lld failed: %s", (long long)txn->failed_id,
                 pgev_error_message(&txn->failure));
    else
        snprintf(buf, size, "%s", pgev_error_message(&txn->failure));
}

/* The outcome of a statement that ran (or may have) inside a doomed block. */
static bool
overridden_by_doom(int status)
{
    return status == PGEV_OK || status == PGEV_ESERVER || status == PGEV_EABORTED;
}

static void
call(pgev_result_cb cb, pgev_conn *conn, pgev_result *res, void *arg)
{
    if (cb)
        cb(conn, res, arg);
}


/* The waiting COMMIT, queued gated, opens once nothing earlier is
 * outstanding: as COMMIT, or as ROLLBACK when the transaction is doomed. */
static void
maybe_send_commit(pgev_txn *txn)
{
    if (!txn->commit_waiting || txn->outstanding > 0)
        return;
    txn->commit_waiting = false;
    if (txn->doomed)
        txn->end_stmt->kind = STMT_ROLLBACK_DOOMED;
    (void)pgev_node_ungate(txn->conn, txn->end_id, txn->doomed ? "ROLLBACK" : "COMMIT");
}

static void
end_done(pgev_conn *conn, txn_stmt *st, pgev_result *res)
{
    pgev_txn *txn = st->txn;
    txn->end_done = true;
    txn->commit_waiting = false;    /* completed without being opened (lost connection) */
    pgev_error err;
    pgev_result mine = { .status = PGEV_EABORTED, .query_id = res->query_id, .error = &err };
    pgev_result *out = res;
    char why[PGEV_ERRMSG_MAX];

    if (st->kind == STMT_ROLLBACK_DOOMED && res->status == PGEV_OK) {
        failure_text(txn, why, sizeof(why));
        pgev_error_set(&err, PGEV_EABORTED, "transaction rolled back: %s", why);
        err.sqlstate = txn->failure.sqlstate;
        err.detail = txn->failure.detail;
        err.hint = txn->failure.hint;
        out = &mine;
    } else if (st->kind == STMT_COMMIT && res->status == PGEV_OK &&
               strcmp(pgev_result_command(res), "ROLLBACK") == 0) {
        /* The server had failed the block without pgev seeing why (the
         * session was already in a failed transaction, say). */
        pgev_error_set(&err, PGEV_EABORTED,
                       "transaction rolled back: COMMIT found it failed on the server");
        err.sqlstate = "25P02";
        out = &mine;
    }
    call(st->on_done, conn, out, st->arg);
    maybe_free(txn);
}

static void
stmt_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    txn_stmt *st = arg;
    pgev_txn *txn = st->txn;
    if (is_end(st->kind)) {
        end_done(conn, st, res);
        free(st);
        return;
    }
    txn->outstanding--;
    int status = pgev_result_status(res);
    if (st->kind == STMT_BEGIN) {
        if (status != PGEV_OK)
            doom(txn, 0, pgev_result_error(res), "BEGIN failed: ");
    } else if (txn->doomed && overridden_by_doom(status) &&
               !(st->kind == STMT_ROLLBACK_TO && status == PGEV_OK && txn->revivable)) {
        char why[PGEV_ERRMSG_MAX];
        failure_text(txn, why, sizeof(why));
        pgev_error err;
        pgev_error_set(&err, PGEV_EABORTED, "not run: the transaction was aborted by %s", why);
        pgev_result mine = { .status = PGEV_EABORTED, .query_id = res->query_id, .error = &err };
        call(st->on_done, conn, &mine, st->arg);
    } else {
        if (st->kind == STMT_ROLLBACK_TO && status == PGEV_OK)
            txn->doomed = false;    /* revived: the savepoint predates the failure */
        else if (status != PGEV_OK)
            doom(txn, res->query_id, pgev_result_error(res), NULL);
        call(st->on_done, conn, res, st->arg);
    }
    free(st);
    maybe_send_commit(txn);
    maybe_free(txn);
}

static void
stmt_rows(pgev_conn *conn, pgev_result *res, void *arg)
{
    txn_stmt *st = arg;
    if (st->on_rows)
        st->on_rows(conn, res, st->arg);
}

/* Submits one statement of the transaction with stmt_done in between. */
static int64_t
submit_stmt(pgev_txn *txn, enum stmt_kind kind, const pgev_query_args *args, bool gated)
{
    pgev_conn *conn = txn->conn;
    txn_stmt *st = malloc(sizeof(*st));
    if (!st) {
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    st->txn = txn;
    st->kind = kind;
    st->on_rows = args->on_rows;
    st->on_done = args->on_done;
    st->arg = args->arg;
    pgev_query_args mine = *args;
    mine.on_rows = args->on_rows ? stmt_rows : NULL;
    mine.on_done = stmt_done;
    mine.arg = st;
    conn->txn_submitting = is_end(kind) ? PGEV_TXN_SUBMIT_END : PGEV_TXN_SUBMIT_STMT;
    conn->submit_gated = gated;
    int64_t id = pgev_conn_submit(conn, &mine);
    conn->txn_submitting = PGEV_TXN_SUBMIT_NONE;
    conn->submit_gated = false;
    if (id < 0) {
        free(st);
        return id;
    }
    if (!is_end(kind))
        txn->outstanding++;
    if (gated) {
        txn->end_id = id;
        txn->end_stmt = st;
    }
    return id;
}

/* Queues COMMIT or ROLLBACK and ends the transaction's hold: what the
 * connection's other callers submitted meanwhile follows it, and a new
 * transaction may begin. A gated COMMIT keeps its place in the queue
 * until maybe_send_commit() opens it. */
static int
submit_end(pgev_txn *txn, enum stmt_kind kind, bool gated)
{
    pgev_query_args args = {
        .sql = kind == STMT_COMMIT ? "COMMIT" : "ROLLBACK",
        .on_done = txn->on_end,
        .arg = txn->end_arg,
        .timeout_ms = -1,   /* it must complete: the session depends on it */
    };
    int64_t id = submit_stmt(txn, kind, &args, gated);
    if (id < 0)
        return (int)id;
    pgev_conn *conn = txn->conn;
    if (conn->txn == txn) {
        conn->txn = NULL;
        release_held(conn);
    }
    return PGEV_OK;
}

/* Why the connection would refuse the transaction's next statement, or NULL. */
static const char *
conn_refuses(const pgev_conn *conn)
{
    if (conn->free_requested)
        return "connection is being freed";
    if (conn->broken)
        return "connection is broken";
    switch (conn->state) {
    case PGEV_CONN_CONNECTING:
    case PGEV_CONN_READY:
    case PGEV_CONN_CLOSING:
        return NULL;
    case PGEV_CONN_CLOSED:
        return "connection is closed";
    case PGEV_CONN_FAILED:
    default:
        return "connection has failed";
    }
}

/* NULL handle, ended transaction, or a connection that refuses work. */
static int
check_usable(pgev_txn *txn)
{
    if (!txn)
        return PGEV_EINVAL;
    if (txn->ending) {
        pgev_conn_refuse(txn->conn, "the transaction was already committed or rolled back");
        return PGEV_ECLOSED;
    }
    const char *why = conn_refuses(txn->conn);
    if (why) {
        pgev_conn_refuse(txn->conn, "%s", why);
        return PGEV_ECLOSED;
    }
    return PGEV_OK;
}

int
pgev_conn_begin(pgev_conn *conn, const pgev_txn_options *opts, pgev_txn **out)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!out) {
        pgev_conn_refuse(conn, "transaction handle pointer is NULL");
        return PGEV_EINVAL;
    }
    pgev_txn_options defaults = { 0 };
    if (!opts)
        opts = &defaults;
    static const char *const levels[] = {
        [PGEV_ISOLATION_DEFAULT] = "",
        [PGEV_ISOLATION_READ_COMMITTED] = " ISOLATION LEVEL READ COMMITTED",
        [PGEV_ISOLATION_REPEATABLE_READ] = " ISOLATION LEVEL REPEATABLE READ",
        [PGEV_ISOLATION_SERIALIZABLE] = " ISOLATION LEVEL SERIALIZABLE",
    };
    if ((int)opts->isolation < 0 || (int)opts->isolation > PGEV_ISOLATION_SERIALIZABLE) {
        pgev_conn_refuse(conn, "unknown isolation level %d", (int)opts->isolation);
        return PGEV_EINVAL;
    }
    const char *why = conn->state == PGEV_CONN_CLOSING && !conn->free_requested
                    ? "connection is closing: no new transactions" : conn_refuses(conn);
    if (why) {
        pgev_conn_refuse(conn, "%s", why);
        return PGEV_ECLOSED;
    }
    if (conn->txn) {
        pgev_conn_refuse(conn, "a transaction is already open on this connection");
        return PGEV_ESTATE;
    }
    if (conn->in_batch) {
        pgev_conn_refuse(conn, "an atomic batch is open on this connection: end it before BEGIN");
        return PGEV_ESTATE;
    }
    pgev_txn *txn = calloc(1, sizeof(*txn));
    if (!txn) {
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    txn->conn = conn;
    char sql[128];
    snprintf(sql, sizeof(sql), "BEGIN%s%s%s", levels[opts->isolation],
             opts->read_only ? (opts->isolation ? ", READ ONLY" : " READ ONLY") : "",
             opts->deferrable ? (opts->isolation || opts->read_only ? ", DEFERRABLE" : " DEFERRABLE") : "");
    pgev_query_args args = { .sql = sql, .timeout_ms = -1 };
    int64_t id = submit_stmt(txn, STMT_BEGIN, &args, false);
    if (id < 0) {
        free(txn);
        return (int)id;
    }
    conn->txn = txn;
    *out = txn;
    return PGEV_OK;
}

int64_t
pgev_txn_submit(pgev_txn *txn, const pgev_query_args *args)
{
    int rc = check_usable(txn);
    if (rc < 0)
        return rc;
    if (!args) {
        pgev_conn_refuse(txn->conn, "query arguments are NULL");
        return PGEV_EINVAL;
    }
    return submit_stmt(txn, STMT_QUERY, args, false);
}

int64_t
pgev_txn_query(pgev_txn *txn, const char *sql, pgev_result_cb on_done, void *arg)
{
    return pgev_txn_query_params(txn, sql, 0, NULL, on_done, arg);
}

int64_t
pgev_txn_query_params(pgev_txn *txn, const char *sql, int nparams, const char *const *values,
                      pgev_result_cb on_done, void *arg)
{
    if (txn && !sql) {
        pgev_conn_refuse(txn->conn, "sql is NULL");
        return PGEV_EINVAL;
    }
    pgev_query_args args = {
        .sql = sql, .nparams = nparams, .param_values = values, .on_done = on_done, .arg = arg,
    };
    return pgev_txn_submit(txn, &args);
}

/* SAVEPOINT / RELEASE SAVEPOINT / ROLLBACK TO SAVEPOINT with a quoted name. */
static int64_t
savepoint_command(pgev_txn *txn, const char *verb, enum stmt_kind kind, const char *name,
                  pgev_result_cb on_done, void *arg)
{
    int rc = check_usable(txn);
    if (rc < 0)
        return rc;
    pgev_conn *conn = txn->conn;
    if (!name || !name[0] || strlen(name) > SAVEPOINT_NAME_MAX) {
        pgev_conn_refuse(conn, "savepoint name must be 1 to %d bytes long", SAVEPOINT_NAME_MAX);
        return PGEV_EINVAL;
    }
    if (!conn->pg) {
        pgev_conn_refuse(conn, "connection has failed");
        return PGEV_ECLOSED;
    }
    char *quoted = PQescapeIdentifier(conn->pg, name, strlen(name));
    if (!quoted) {
        pgev_conn_refuse(conn, "cannot quote savepoint name: %s", PQerrorMessage(conn->pg));
        return PGEV_EINVAL;
    }
    char sql[sizeof("ROLLBACK TO SAVEPOINT ") + 2 * SAVEPOINT_NAME_MAX + 3];
    snprintf(sql, sizeof(sql), "%s %s", verb, quoted);
    PQfreemem(quoted);
    pgev_query_args args = { .sql = sql, .on_done = on_done, .arg = arg };
    return submit_stmt(txn, kind, &args, false);
}

int64_t
pgev_txn_savepoint(pgev_txn *txn, const char *name, pgev_result_cb on_done, void *arg)
{
    return savepoint_command(txn, "SAVEPOINT", STMT_QUERY, name, on_done, arg);
}

int64_t
pgev_txn_release_savepoint(pgev_txn *txn, const char *name, pgev_result_cb on_done, void *arg)
{
    return savepoint_command(txn, "RELEASE SAVEPOINT", STMT_QUERY, name, on_done, arg);
}

int64_t
pgev_txn_rollback_to_savepoint(pgev_txn *txn, const char *name, pgev_result_cb on_done, void *arg)
{
    return savepoint_command(txn, "ROLLBACK TO SAVEPOINT", STMT_ROLLBACK_TO, name, on_done, arg);
}

static int
request_end(pgev_txn *txn, bool commit, pgev_result_cb on_done, void *arg)
{
    int rc = check_usable(txn);
    if (rc < 0)
        return rc;
    txn->on_end = on_done;
    txn->end_arg = arg;
    /* COMMIT or ROLLBACK is decided once every earlier statement is known
     * (file comment); until then the COMMIT holds its place, gated. */
    bool wait = commit && txn->outstanding > 0;
    rc = submit_end(txn, !commit ? STMT_ROLLBACK : txn->doomed ? STMT_ROLLBACK_DOOMED : STMT_COMMIT, wait);
    if (rc < 0) {
        txn->on_end = NULL;
        txn->end_arg = NULL;
        return rc;
    }
    txn->ending = true;
    txn->commit_waiting = wait;
    return PGEV_OK;
}

int
pgev_txn_commit(pgev_txn *txn, pgev_result_cb on_done, void *arg)
{
    return request_end(txn, true, on_done, arg);
}

int
pgev_txn_rollback(pgev_txn *txn, pgev_result_cb on_done, void *arg)
{
    return request_end(txn, false, on_done, arg);
}

pgev_conn *
pgev_txn_conn(const pgev_txn *txn)
{
    return txn ? txn->conn : NULL;
}

bool
pgev_txn_holds(const pgev_conn *conn)
{
    return conn->txn && conn->txn_submitting == PGEV_TXN_SUBMIT_NONE;
}

bool
pgev_txn_cancel_held(pgev_conn *conn, int64_t query_id)
{
    for (pgev_node *node = conn->held.head; node; node = node->next) {
        if (node->id != query_id || node->kind == PGEV_NODE_SYNC)
            continue;
        pgev_fifo_remove(&conn->held, node);
        pgev_timer_free(node->deadline);
        node->deadline = NULL;
        pgev_fifo_push(&conn->doomed, node);
        pgev_loop_defer(conn->loop);
        return true;
    }
    return false;
}

void
pgev_txn_conn_freed(pgev_conn *conn)
{
    /* Every statement has completed (ECANCELLED) by now; a transaction
     * that was never ended has nothing left to run. */
    if (conn->txn) {
        free(conn->txn);
        conn->txn = NULL;
    }
}

pgev_txn *
pgev_conn_open_txn(const pgev_conn *conn)
{
    return conn->txn;
}
