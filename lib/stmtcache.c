/*
 * The statement cache: SQL submitted as a plain query is prepared under a
 * name of pgev's own the first time it is sent, and executed by that name
 * afterwards, so the server parses and plans it once per connection.
 *
 * The cache is looked up when a query is handed to libpq (send_node), not
 * at submit, so the statements' lives follow wire order: a Parse always
 * precedes the executions that use its name, and a statement is closed
 * only after every execution already sent. Entries are kept in LRU order
 * and bounded; the least recently used one is closed on the server when a
 * new one needs its place (PQsendClosePrepared on libpq 17, DEALLOCATE
 * otherwise), except inside an atomic batch or a transaction, where the
 * query simply runs unnamed.
 *
 * The server can lose or invalidate a statement behind pgev's back:
 * DISCARD ALL / DEALLOCATE ALL (the cache is emptied when their command
 * tag is seen), a pooler that moved the session (26000, "prepared
 * statement does not exist"), a schema change under a statement whose
 * result type it fixed (0A000, "cached plan must not change result type").
 * Both errors happen before the statement runs, so an isolated query
 * outside a transaction block is prepared again and re-sent once
 * (dispatch.c); elsewhere the error is reported.
 */
#include "pgev-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pgev_stmt {
    pgev_stmt *newer, *older;   /* LRU list: conn->stmts.newest ... oldest */
    pgev_stmt *chain;           /* hash bucket */
    uint64_t hash;
    int nparams;
    const Oid *types;           /* NULL, or nparams types (in this allocation) */
    const char *sql;            /* in this allocation */
    bool ready;                 /* its Parse succeeded */
    char name[PGEV_STMT_NAME_MAX];
};

static uint64_t
stmt_hash(const char *sql, int nparams, const Oid *types)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    h = (h ^ (uint64_t)nparams) * 1099511628211ull;
    for (int i = 0; types && i < nparams; i++)
        h = (h ^ types[i]) * 1099511628211ull;
    return h;
}

static bool
types_equal(const Oid *a, const Oid *b, int n)
{
    for (int i = 0; i < n; i++) {
        Oid x = a ? a[i] : 0, y = b ? b[i] : 0;
        if (x != y)
            return false;
    }
    return true;
}

static void
lru_unlink(pgev_stmt_cache *c, pgev_stmt *st)
{
    if (st->newer)
        st->newer->older = st->older;
    else
        c->newest = st->older;
    if (st->older)
        st->older->newer = st->newer;
    else
        c->oldest = st->newer;
    st->newer = st->older = NULL;
}

static void
lru_push(pgev_stmt_cache *c, pgev_stmt *st)
{
    st->older = c->newest;
    st->newer = NULL;
    if (c->newest)
        c->newest->newer = st;
    else
        c->oldest = st;
    c->newest = st;
}

static pgev_stmt **
bucket(pgev_stmt_cache *c, uint64_t hash)
{
    return &c->buckets[hash & (uint64_t)(c->nbuckets - 1)];
}

/* Unlinks and frees an entry (nothing is sent). */
static void
stmt_drop(pgev_stmt_cache *c, pgev_stmt *st)
{
    for (pgev_stmt **p = bucket(c, st->hash); *p; p = &(*p)->chain) {
        if (*p == st) {
            *p = st->chain;
            break;
        }
    }
    lru_unlink(c, st);
    c->count--;
    free(st);
}

int
pgev_stmt_cache_init(pgev_stmt_cache *c, int capacity)
{
    memset(c, 0, sizeof(*c));
    if (capacity <= 0)
        return 0;
    int n = 16;
    while (n < 2 * capacity)
        n *= 2;
    c->buckets = calloc((size_t)n, sizeof(*c->buckets));
    if (!c->buckets)
        return -1;
    c->nbuckets = n;
    c->capacity = capacity;
    return 0;
}

void
pgev_stmt_cache_clear(pgev_stmt_cache *c)
{
    while (c->oldest)
        stmt_drop(c, c->oldest);
}

void
pgev_stmt_cache_free(pgev_stmt_cache *c)
{
    pgev_stmt_cache_clear(c);
    free(c->buckets);
    c->buckets = NULL;
    c->capacity = 0;
}

static pgev_stmt *
stmt_find_name(pgev_stmt_cache *c, const char *name)
{
    for (pgev_stmt *st = c->newest; st; st = st->older)
        if (strcmp(st->name, name) == 0)
            return st;
    return NULL;
}

/*
 * Closes a statement on the server: a node of its own (own Sync, no
 * callback), queued to go before anything pending, or sent at once.
 */
static bool
close_statement(pgev_conn *conn, const char *name, bool now)
{
    pgev_node *node = pgev_node_alloc(conn);
    if (!node)
        return false;       /* the statement stays on the server until the session ends */
    node->kind = PGEV_NODE_CLOSE;
    node->sync_after = true;
    snprintf(node->stmt_name, sizeof(node->stmt_name), "%s", name);
    if (now)
        return pgev_send_internal(conn, node);
    pgev_fifo_push(&conn->resend, node);
    return true;
}

void
pgev_stmt_parsed(pgev_conn *conn, const char *name, bool ok)
{
    pgev_stmt *st = stmt_find_name(&conn->stmts, name);
    if (st && ok)
        st->ready = true;
    else if (st)
        stmt_drop(&conn->stmts, st);
}

void
pgev_stmt_forget(pgev_conn *conn, const char *name, bool close)
{
    pgev_stmt *st = stmt_find_name(&conn->stmts, name);
    if (st)
        stmt_drop(&conn->stmts, st);
    if (close)
        (void)close_statement(conn, name, false);
}

bool
pgev_stmt_prepare_for_send(pgev_conn *conn, pgev_node *node, bool *parse)
{
    pgev_stmt_cache *c = &conn->stmts;
    const Oid *types = node->nparams ? node->param_types : NULL;
    uint64_t h = stmt_hash(node->sql, node->nparams, types);
    for (pgev_stmt *st = *bucket(c, h); st; st = st->chain) {
        if (st->hash == h && st->nparams == node->nparams && strcmp(st->sql, node->sql) == 0 &&
            types_equal(st->types, types, node->nparams)) {
            lru_unlink(c, st);
            lru_push(c, st);
            /* Until its Parse is known to have worked, the same SQL runs
             * unnamed: a failed Parse must not turn into "prepared
             * statement does not exist" for the queries behind it. */
            if (!st->ready)
                return false;
            memcpy(node->stmt_name, st->name, sizeof(node->stmt_name));
            *parse = false;
            return true;
        }
    }
    if (c->count >= c->capacity) {
        /* Closing needs a Sync of its own: not inside a batch or a
         * transaction, where the query runs unnamed instead. */
        if (!node->sync_after && !node->shared)
            return false;
        if (node->in_txn)
            return false;
        pgev_stmt *victim = c->oldest;
        char name[PGEV_STMT_NAME_MAX];
        memcpy(name, victim->name, sizeof(name));
        stmt_drop(c, victim);
        if (!close_statement(conn, name, true))
            return false;
    }
    size_t sql_len = strlen(node->sql) + 1;
    size_t types_size = types ? (size_t)node->nparams * sizeof(Oid) : 0;
    pgev_stmt *st = malloc(sizeof(*st) + types_size + sql_len);
    if (!st)
        return false;
    char *extra = (char *)(st + 1);
    memset(st, 0, sizeof(*st));
    if (types) {
        memcpy(extra, types, types_size);
        st->types = (const Oid *)extra;
    }
    memcpy(extra + types_size, node->sql, sql_len);
    st->sql = extra + types_size;
    st->nparams = node->nparams;
    st->hash = h;
    snprintf(st->name, sizeof(st->name), "pgev_s%llu", (unsigned long long)++c->next_id);
    pgev_stmt **b = bucket(c, h);
    st->chain = *b;
    *b = st;
    lru_push(c, st);
    c->count++;
    memcpy(node->stmt_name, st->name, sizeof(node->stmt_name));
    *parse = true;
    return true;
}

/* "cached plan must not change result type": 0A000 from plan revalidation
 * (the function name does not depend on the server's language). */
static bool
is_stale_plan(const PGresult *res)
{
    const char *fn = PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return (fn && strcmp(fn, "RevalidateCachedQuery") == 0) ||
           (msg && strncmp(msg, "cached plan must not change result type", 39) == 0);
}

bool
pgev_stmt_completed(pgev_conn *conn, pgev_node *node)
{
    if (node->status == PGEV_OK) {
        /* The server dropped every prepared statement of the session. */
        const char *tag = node->result ? PQcmdStatus(node->result) : NULL;
        if (tag && tag[0] == 'D' && (strcmp(tag, "DISCARD ALL") == 0 || strcmp(tag, "DEALLOCATE ALL") == 0))
            pgev_stmt_cache_clear(&conn->stmts);
        return false;
    }
    if (!node->stmt_name[0] || node->status != PGEV_ESERVER || !node->error_result)
        return false;
    const char *state = PQresultErrorField(node->error_result, PG_DIAG_SQLSTATE);
    bool missing = state && strcmp(state, "26000") == 0;
    bool stale = state && strcmp(state, "0A000") == 0 && is_stale_plan(node->error_result);
    if (!missing && !stale)
        return false;
    pgev_stmt_forget(conn, node->stmt_name, stale);
    /* Both errors come before the statement runs. Sending it again is the
     * isolated query's own business only: not inside a batch (its
     * segment failed with it) or a transaction (now aborted). */
    if (node->cache_retried || node->finished || node->rows > 0 || (!node->sync_after && !node->shared) ||
        node->in_txn)
        return false;
    node->cache_retried = true;
    if (node->sync_after)
        conn->expect_sync = true;   /* its Sync is still to come */
    pgev_node_resend(conn, node);
    return true;
}

int
pgev_conn_stmt_cache_count(const pgev_conn *conn)
{
    return conn ? conn->stmts.count : 0;
}
