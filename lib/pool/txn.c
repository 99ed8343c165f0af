/*
 * pgev_pool_transaction(): acquire, BEGIN, the application's body, COMMIT
 * when it says so (or ROLLBACK), release; the whole body again on a
 * serialization failure or deadlock (40001, 40P01), on the same
 * connection, up to max_attempts.
 *
 * States of a pool transaction:
 *
 *   WAITING (acquire pending) ─► BODY (txn open, the application works)
 *                                  │  pgev_pool_txn_commit / _rollback
 *                                  ▼
 *                               ENDING (COMMIT/ROLLBACK queued) ─► done: release, on_done
 *                                  │ 40001 / 40P01 and attempts left
 *                                  └──► BODY again (BEGIN on the same connection)
 *
 * on_done runs exactly once, and only after the application has ended
 * the transaction (or before the body ever ran: acquire or BEGIN failed),
 * so the handle it holds stays valid for every call it may still make.
 * A pool transaction holds a reference on the pool until on_done has run.
 */
#include "pool-private.h"

#include <stdlib.h>
#include <string.h>

typedef enum ptx_state { PTX_WAITING, PTX_BODY, PTX_ENDING } ptx_state;

struct pgev_pool_txn {
    pgev_pool *pool;
    ptx_state state;
    int64_t acquire_id;
    pgev_conn *conn;            /* BODY, ENDING: the acquired connection; NULL once freed */
    pgev_txn *txn;              /* BODY: the open transaction; NULL once its connection is freed */
    bool commit;                /* ENDING: COMMIT (else the application's ROLLBACK) */
    int attempt;                /* 1 for the first run of the body */
    int max_attempts;
    pgev_txn_options txn_opts;
    pgev_pool_txn_body_cb body;
    pgev_pool_txn_done_cb on_done;
    void *arg;
    /* An end request the connection refused (it is failing, or was freed):
     * the outcome is reported from the loop, through this event. */
    pgev_event *done_ev;
    pgev_error refused;
};

static bool
retryable(const pgev_result *res)
{
    int status = pgev_result_status(res);
    if (status != PGEV_ESERVER && status != PGEV_EABORTED)
        return false;
    const char *state = pgev_error_sqlstate(pgev_result_error(res));
    return state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0);
}

/* Releases the connection (if any) and reports the outcome; ptx is gone after. */
static void
finish(pgev_pool_txn *ptx, pgev_result *res)
{
    pgev_pool *pool = ptx->pool;
    if (ptx->conn) {
        pool_slot *slot = pool_find_slot(pool, ptx->conn);
        if (slot && slot->ptx == ptx)
            slot->ptx = NULL;
        pgev_pool_release(pool, ptx->conn, ptx->acquire_id);
    }
    if (pgev_result_status(res) == PGEV_OK)
        pool->stats.transactions_committed++;
    else
        pool->stats.transactions_failed++;
    pool_enter(pool);
    ptx->on_done(pool, res, ptx->attempt, ptx->arg);
    pool_leave(pool);
    pgev_event_free(ptx->done_ev);   /* may be the event running now: safe */
    free(ptx);
    pool_drop(pool);   /* the transaction's reference */
}

/* finish() with an error of the pool's own. */
static void
finish_error(pgev_pool_txn *ptx, const pgev_error *err)
{
    pgev_result res = { .status = pgev_error_code(err), .error = err };
    finish(ptx, &res);
}

static void
refused_cb(void *arg)
{
    pgev_pool_txn *ptx = arg;
    finish_error(ptx, &ptx->refused);
}

/* BEGIN on the held connection and the body; false when BEGIN was refused
 * (then err says why). */
static bool
run_body(pgev_pool_txn *ptx, pgev_error *err)
{
    pgev_txn *txn = NULL;
    int rc = pgev_conn_begin(ptx->conn, &ptx->txn_opts, &txn);
    if (rc != PGEV_OK) {
        pgev_error_set(err, rc, "pool transaction: BEGIN refused: %s", pgev_conn_errmsg(ptx->conn));
        return false;
    }
    ptx->txn = txn;
    ptx->state = PTX_BODY;
    pool_enter(ptx->pool);
    ptx->body(ptx, txn, ptx->attempt, ptx->arg);
    pool_leave(ptx->pool);   /* ptx holds a reference: the pool stays */
    return true;
}

static void
on_end(pgev_conn *conn, pgev_result *res, void *arg)
{
    pgev_pool_txn *ptx = arg;
    (void)conn;
    ptx->txn = NULL;   /* freed by the transaction layer once this returns */
    if (ptx->commit && retryable(res) && ptx->attempt < ptx->max_attempts && ptx->conn &&
        ptx->pool->state == POOL_OPEN && pgev_conn_state(ptx->conn) == PGEV_CONN_READY) {
        ptx->attempt++;
        ptx->pool->stats.transactions_retried++;
        pgev_error err;
        if (run_body(ptx, &err))
            return;
        finish_error(ptx, &err);
        return;
    }
    if (!ptx->commit && pgev_result_status(res) == PGEV_OK) {
        pgev_error err;
        pgev_error_set(&err, PGEV_EABORTED, "pool transaction rolled back by the application");
        finish_error(ptx, &err);
        return;
    }
    finish(ptx, res);
}

static void
on_acquired(pgev_pool *pool, pgev_conn *conn, const pgev_error *err, void *arg)
{
    pgev_pool_txn *ptx = arg;
    (void)pool;
    if (err) {
        finish_error(ptx, err);
        return;
    }
    ptx->conn = conn;
    pool_slot *slot = pool_find_slot(ptx->pool, conn);
    if (slot)
        slot->ptx = ptx;
    ptx->attempt = 1;
    pgev_error begin_err;
    if (!run_body(ptx, &begin_err))
        finish_error(ptx, &begin_err);
}

int64_t
pgev_pool_transaction(pgev_pool *pool, const pgev_pool_txn_options *opts, pgev_pool_txn_body_cb body,
                      pgev_pool_txn_done_cb on_done, void *arg)
{
    if (!pool)
        return PGEV_EINVAL;
    if (!body || !on_done) {
        pool_refuse(pool, "pool transaction: body and on_done are required");
        return PGEV_EINVAL;
    }
    if (opts && (opts->max_attempts < 0 || opts->txn.isolation < PGEV_ISOLATION_DEFAULT ||
                 opts->txn.isolation > PGEV_ISOLATION_SERIALIZABLE)) {
        pool_refuse(pool, "pool transaction: max_attempts < 0 or an unknown isolation level");
        return PGEV_EINVAL;
    }
    pgev_pool_txn *ptx = calloc(1, sizeof(*ptx));
    if (ptx)
        ptx->done_ev = pgev_event_new(pool->base, 0, refused_cb, ptx);
    if (!ptx || !ptx->done_ev) {
        free(ptx);
        pool_refuse(pool, "out of memory");
        return PGEV_ENOMEM;
    }
    ptx->pool = pool;
    ptx->state = PTX_WAITING;
    ptx->max_attempts = opts && opts->max_attempts > 0 ? opts->max_attempts : PGEV_POOL_TXN_DEFAULT_ATTEMPTS;
    if (opts)
        ptx->txn_opts = opts->txn;
    ptx->body = body;
    ptx->on_done = on_done;
    ptx->arg = arg;
    int64_t id = pgev_pool_acquire(pool, on_acquired, ptx);
    if (id < 0) {
        pgev_event_free(ptx->done_ev);
        free(ptx);
        return id;   /* pool_refuse() said why */
    }
    ptx->acquire_id = id;
    pool_hold(pool);
    return id;
}

static int
request_end(pgev_pool_txn *ptx, bool commit)
{
    if (!ptx || ptx->state != PTX_BODY)
        return PGEV_EINVAL;
    ptx->state = PTX_ENDING;
    ptx->commit = commit;
    int rc = PGEV_ECLOSED;
    if (ptx->txn)
        rc = commit ? pgev_txn_commit(ptx->txn, on_end, ptx) : pgev_txn_rollback(ptx->txn, on_end, ptx);
    if (rc != PGEV_OK) {
        /* The connection refuses work (lost, or freed with the pool): the
         * outcome is that error, reported from the loop. */
        const pgev_error *cerr = ptx->conn ? pgev_conn_error(ptx->conn) : NULL;
        if (cerr)
            pgev_error_copy(&ptx->refused, cerr);
        else
            pgev_error_set(&ptx->refused, PGEV_ECANCELLED, "pool transaction: the pool was freed");
        if (ptx->refused.code == PGEV_OK)
            ptx->refused.code = PGEV_ECONNLOST;
        pgev_event_activate(ptx->done_ev);
    }
    return PGEV_OK;
}

int
pgev_pool_txn_commit(pgev_pool_txn *ptx)
{
    return request_end(ptx, true);
}

int
pgev_pool_txn_rollback(pgev_pool_txn *ptx)
{
    return request_end(ptx, false);
}

void
pool_txn_conn_freed(pgev_pool_txn *ptx)
{
    ptx->conn = NULL;
    ptx->txn = NULL;
}
