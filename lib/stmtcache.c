/*
 * The statement cache: SQL submitted as a plain query is prepared under a
 * name of pgev's own the first time it is sent, and executed by that name
 * afterwards, so the server parses and plans it once per connection.
 *
 * Names. A statement's name is a digest of what it means: "pgev_" and the
 * 128-bit FNV-1a hash of its SQL text and parameter types, in hex. Two
 * connections that prepare the same text with the same types use the same
 * name, and a name never stands for two different statements, so a name
 * found on a server session (one a pooler shares, or one left behind by a
 * Close that could not be sent) means the statement pgev wants: "already
 * exists" (42P05) for it is as good as a successful Parse. The digest is
 * computed once, when an entry is made; lookups use a cheaper 64-bit hash
 * of the text and compare the text itself.
 *
 * Whose session. Behind a pooler that multiplexes server sessions
 * (PgBouncer in transaction or statement mode), consecutive Sync segments
 * of one connection may run on different server sessions, with pgev's
 * queries pipelined behind each other. A statement prepared on one is
 * missing on another (26000), or already there (42P05); either error
 * aborts a transaction block or an atomic batch, and re-sending the query
 * after queries already sent behind it would run it out of order. So the
 * cache names statements only on a connection known to reach a server
 * session of its own: with its first cacheable query pgev asks the server
 * for pg_backend_pid() and compares it with the process id libpq got in
 * BackendKeyData at connect. Directly connected, they are equal. A pooler
 * hands out cancel keys of its own, so they differ: the cache then stays
 * empty and every query runs unnamed, which is correct on any server
 * session. Until the answer is in, queries run unnamed too.
 *
 * Transaction blocks. libpq's PQtransactionStatus() answers only while
 * nothing is in flight (otherwise PQTRANS_ACTIVE), so pgev follows the
 * block state itself: at each send it takes libpq's answer when libpq has
 * one, and otherwise what the statements sent since imply (BEGIN/START
 * open a block; COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION end it,
 * except ROLLBACK TO and AND CHAIN), whoever sent them: a pgev_txn or the
 * application's plain SQL. Each query records whether it ran inside a
 * block (node->in_block).
 *
 * The server can lose or invalidate a statement behind pgev's back:
 * DISCARD ALL / DEALLOCATE ALL (the cache is emptied when their command
 * tag is seen), DEALLOCATE by hand (26000, "prepared statement does not
 * exist"), a schema change under a statement whose result type it fixed
 * (0A000, "cached plan must not change result type"). Both errors (and
 * 42P05) happen before the statement runs, so the query is re-sent once,
 * unnamed, when that is invisible to the application: an isolated query
 * outside a transaction block, with no query sent after it still in flight
 * (or a read-only one, whose order does not matter). Otherwise the error
 * is reported. A statement invalidated inside a transaction block is
 * marked stale and closed by the first isolated query sent outside one.
 *
 * The cache is looked up when a query is handed to libpq (send_node), not
 * at submit, so the statements' lives follow wire order: a Parse always
 * precedes the executions that use its name, and a statement is closed
 * only after every execution already sent. Entries are kept in LRU order,
 * bounded in number (stmt_cache_size) and in bytes
 * (PGEV_STMT_CACHE_MAX_BYTES; texts over PGEV_STMT_CACHE_MAX_SQL are never
 * cached); the least recently used one is closed on the server when a new
 * one needs its place (PQsendClosePrepared on libpq 17, DEALLOCATE
 * otherwise), except inside an atomic batch or a transaction block, where
 * the query simply runs unnamed.
 */
#include "pgev-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the cache knows about the server session (pgev_stmt_cache.session). */
enum {
    SESSION_UNKNOWN = 0,    /* not asked yet, or the question failed */
    SESSION_ASKING,         /* SESSION_QUESTION in flight */
    SESSION_OWN,            /* the connection's own: statements are named */
    SESSION_SHARED          /* a pooler's (or unknown for good): nothing is named */
};
#define SESSION_QUESTION "SELECT pg_catalog.pg_backend_pid()"
/* Failed answers (a cancel landing on the question, say) before the
 * cache gives up and stays off. */
#define SESSION_TRIES 3

struct pgev_stmt {
    pgev_stmt *newer, *older;   /* LRU list: conn->stmts.newest ... oldest */
    pgev_stmt *chain;           /* hash bucket */
    uint64_t hash;              /* lookup hash of the text and types */
    size_t size;                /* bytes of this allocation */
    int nparams;
    const Oid *types;           /* NULL, or nparams types (in this allocation) */
    const char *sql;            /* in this allocation */
    bool ready;                 /* its Parse succeeded (or met 42P05) */
    bool stale;                 /* 0A000 inside a transaction block: close outside */
    char name[PGEV_STMT_NAME_MAX];
};

/* FNV-1a, 64 bits, of the text (with its NUL) and the types: the lookup
 * hash. False when the text is longer than PGEV_STMT_CACHE_MAX_SQL: such
 * a text is never cached, and is not read further. */
static bool
lookup_hash(const char *sql, int nparams, const Oid *types, uint64_t *hash, size_t *len)
{
    size_t n = strnlen(sql, PGEV_STMT_CACHE_MAX_SQL + 1);
    if (n > PGEV_STMT_CACHE_MAX_SQL)
        return false;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)sql[i]) * 1099511628211ull;
    h = (h ^ (uint64_t)nparams) * 1099511628211ull;
    for (int i = 0; types && i < nparams; i++)
        h = (h ^ types[i]) * 1099511628211ull;
    *hash = h;
    *len = n;
    return true;
}

/* One byte into a 128-bit FNV-1a hash held as two 64-bit halves: xor the
 * byte in, multiply by the FNV-128 prime 2^88 + 0x13b modulo 2^128. */
static void
fnv128_byte(uint64_t *hi, uint64_t *lo, unsigned char byte)
{
    uint64_t l = *lo ^ byte, h = *hi;
    uint64_t low = (l & 0xffffffffu) * 0x13bu;
    uint64_t mid = (l >> 32) * 0x13bu + (low >> 32);
    *lo = (mid << 32) | (low & 0xffffffffu);
    *hi = h * 0x13bu + (mid >> 32) + (l << 24);
}

static void
fnv128_u32(uint64_t *hi, uint64_t *lo, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        fnv128_byte(hi, lo, (unsigned char)(v >> (8 * i)));
}

/* The statement's name: "pgev_" and the 128-bit FNV-1a digest of the text,
 * its NUL, the parameter count and each parameter type (0: the server
 * infers it, as when no types are given), in lower-case hex. */
static void
digest_name(char out[PGEV_STMT_NAME_MAX], const char *sql, size_t len, int nparams, const Oid *types)
{
    uint64_t hi = 0x6c62272e07bb0142ull, lo = 0x62b821756295c58dull;
    for (size_t i = 0; i <= len; i++)
        fnv128_byte(&hi, &lo, (unsigned char)sql[i]);
    fnv128_u32(&hi, &lo, (uint32_t)nparams);
    for (int i = 0; i < nparams; i++)
        fnv128_u32(&hi, &lo, types ? (uint32_t)types[i] : 0u);
    snprintf(out, PGEV_STMT_NAME_MAX, "pgev_%016llx%016llx", (unsigned long long)hi, (unsigned long long)lo);
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
    c->bytes -= st->size;
    if (st->stale)
        c->stale--;
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
    c->bytes = (size_t)n * sizeof(*c->buckets);    /* within PGEV_STMT_CACHE_MAX_BYTES too */
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
    c->nbuckets = 0;
    c->bytes = 0;
    c->capacity = 0;
}

void
pgev_stmt_session_ended(pgev_conn *conn)
{
    /* The server session, and every statement on it, is gone. */
    pgev_stmt_cache_clear(&conn->stmts);
    conn->stmts.in_block = false;
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
 * callback), sent at once. Only outside a transaction block (a failed one
 * would refuse it) and never inside an atomic batch (its Sync would split
 * the batch).
 */
static bool
close_statement(pgev_conn *conn, const char *name)
{
    pgev_node *node = pgev_node_alloc(conn);
    if (!node)
        return false;       /* the statement stays on the server until the session ends */
    node->kind = PGEV_NODE_CLOSE;
    node->sync_after = true;
    snprintf(node->stmt_name, sizeof(node->stmt_name), "%s", name);
    return pgev_send_internal(conn, node);
}

/* Closes the statements invalidated inside a transaction block. */
static void
close_stale(pgev_conn *conn)
{
    pgev_stmt_cache *c = &conn->stmts;
    pgev_stmt *st = c->oldest;
    while (st && c->stale > 0) {
        pgev_stmt *newer = st->newer;
        if (st->stale) {
            char name[PGEV_STMT_NAME_MAX];
            memcpy(name, st->name, sizeof(name));
            stmt_drop(c, st);
            (void)close_statement(conn, name);
        }
        st = newer;
    }
}

/* ---- whose server session ---------------------------------------------- */

static void
session_answer(pgev_conn *conn, pgev_result *res, void *arg)
{
    (void)arg;
    pgev_stmt_cache *c = &conn->stmts;
    if (c->session != SESSION_ASKING)
        return;
    const char *pid = res->status == PGEV_OK && res->pg && PQntuples(res->pg) == 1 && PQnfields(res->pg) == 1
                    ? PQgetvalue(res->pg, 0, 0)
                    : NULL;
    if (pid && conn->pg)
        c->session = strtol(pid, NULL, 10) == (long)PQbackendPID(conn->pg) ? SESSION_OWN : SESSION_SHARED;
    else
        c->session = c->session_asked >= SESSION_TRIES ? SESSION_SHARED : SESSION_UNKNOWN;
}

/* The question is at the head of the pipeline, where a query's deadline
 * and cancel wait for their turn: it ends as a query would. */
static void
session_deadline(pgev_conn *conn, void *arg)
{
    pgev_node *node = arg;
    pgev_conn_enter_dispatch(conn);
    if (!node->finished)
        pgev_node_abandon(conn, node, PGEV_ETIMEOUT, "timed out asking the server for its process id");
    pgev_conn_pump(conn);
    pgev_conn_leave_dispatch(conn);
}

/* Sends SESSION_QUESTION now, in a Sync segment of its own, ahead of
 * `query` (isolated and outside a transaction block), with the same
 * deadline. Internal: it counts in no queue length or window. */
static void
ask_session(pgev_conn *conn, const pgev_node *query)
{
    pgev_node *node = pgev_node_alloc(conn);
    if (!node)
        return;             /* asked again with the next query */
    node->kind = PGEV_NODE_QUERY;
    node->internal = true;
    node->sync_after = true;
    node->sql = SESSION_QUESTION;
    node->on_done = session_answer;
    node->timeout_ms = query->timeout_ms;
    if (node->timeout_ms > 0) {
        node->deadline = pgev_timer_new(conn->loop, session_deadline, node);
        if (!node->deadline || pgev_timer_start(node->deadline, node->timeout_ms) != 0) {
            pgev_node_release(conn, node);
            return;
        }
    }
    conn->stmts.session = SESSION_ASKING;
    conn->stmts.session_asked++;
    (void)pgev_send_internal(conn, node);
}

/* ---- transaction blocks ------------------------------------------------ */

enum block_effect { BLOCK_NONE, BLOCK_OPENS, BLOCK_ENDS };

static bool
is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Skips white space and comments (to the end of the line after two dashes;
 * C-style ones, nested). */
static const char *
skip_blanks(const char *p)
{
    for (;;) {
        while (is_space(*p))
            p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            int depth = 1;
            p += 2;
            while (*p && depth > 0) {
                if (p[0] == '/' && p[1] == '*') {
                    depth++;
                    p += 2;
                } else if (p[0] == '*' && p[1] == '/') {
                    depth--;
                    p += 2;
                } else {
                    p++;
                }
            }
        } else {
            return p;
        }
    }
}

/* The next keyword, upper-cased into out (empty when the next token is not
 * a word or is too long to be one of ours); returns what follows it. */
static const char *
next_word(const char *p, char *out, size_t size)
{
    p = skip_blanks(p);
    size_t n = 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
        if (n + 1 < size)
            out[n] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        n++;
        p++;
    }
    out[n < size ? n : 0] = '\0';
    return p;
}

/* What a statement does to the session's transaction block. Runs for
 * every query sent: most are turned away by their first letters. */
static enum block_effect
block_effect(const char *sql)
{
    const char *start = skip_blanks(sql);
    switch (start[0] | 0x20) {
    case 'a': case 'b': case 'c': case 'e': case 'p': case 'r':
        break;
    case 's':
        if ((start[1] | 0x20) == 't')
            break;          /* START, not SELECT, SET, SHOW... */
        return BLOCK_NONE;
    default:
        return BLOCK_NONE;
    }
    char word[16];
    const char *p = next_word(start, word, sizeof(word));
    if (strcmp(word, "BEGIN") == 0 || strcmp(word, "START") == 0)
        return BLOCK_OPENS;
    bool ends = strcmp(word, "COMMIT") == 0 || strcmp(word, "END") == 0 || strcmp(word, "ROLLBACK") == 0 ||
                strcmp(word, "ABORT") == 0;
    if (strcmp(word, "PREPARE") == 0) {
        next_word(p, word, sizeof(word));
        return strcmp(word, "TRANSACTION") == 0 ? BLOCK_ENDS : BLOCK_NONE;
    }
    if (!ends)
        return BLOCK_NONE;
    /* ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name; COMMIT/ROLLBACK
     * AND CHAIN (a new block at once); COMMIT/ROLLBACK PREPARED (two-phase,
     * not inside a block): none ends the session's block. */
    bool and_seen = false;
    for (int i = 0; i < 4; i++) {
        p = next_word(p, word, sizeof(word));
        if (!word[0])
            break;
        if (strcmp(word, "TO") == 0 || strcmp(word, "PREPARED") == 0 || (and_seen && strcmp(word, "CHAIN") == 0))
            return BLOCK_NONE;
        and_seen = strcmp(word, "AND") == 0;
    }
    return BLOCK_ENDS;
}

void
pgev_stmt_sending(pgev_conn *conn, pgev_node *node)
{
    pgev_stmt_cache *c = &conn->stmts;
    if (node->internal)
        return;
    /* libpq knows the block state only with nothing in flight. */
    if (!conn->inflight.head && !conn->expect_sync && conn->pg) {
        switch (PQtransactionStatus(conn->pg)) {
        case PQTRANS_IDLE:
            c->in_block = false;
            break;
        case PQTRANS_INTRANS:
        case PQTRANS_INERROR:
            c->in_block = true;
            break;
        default:
            break;
        }
    }
    node->in_block = c->in_block || node->in_txn;
    /* Statements invalidated inside a block are closed by the first
     * isolated query outside one (a batch member has no Sync to spare). */
    if (c->stale > 0 && !node->in_block && (node->sync_after || node->shared))
        close_stale(conn);
    if (!node->sql)
        return;
    switch (block_effect(node->sql)) {
    case BLOCK_OPENS:
        c->in_block = true;
        break;
    case BLOCK_ENDS:
        c->in_block = false;
        break;
    case BLOCK_NONE:
        break;
    }
}

/* ---- send and completion ----------------------------------------------- */

bool
pgev_stmt_prepare_for_send(pgev_conn *conn, pgev_node *node, bool *parse)
{
    pgev_stmt_cache *c = &conn->stmts;
    /* Where an error of the cache's own can be hidden by sending the query
     * again, and where a Close may be sent: an isolated query (own Sync,
     * or a shared read-only segment) outside a transaction block. */
    bool outside = (node->sync_after || node->shared) && !node->in_block;
    if (c->session != SESSION_OWN) {
        if (c->session == SESSION_UNKNOWN && outside)
            ask_session(conn, node);
        return false;
    }
    const Oid *types = node->nparams ? node->param_types : NULL;
    uint64_t h;
    size_t len;
    if (!lookup_hash(node->sql, node->nparams, types, &h, &len))
        return false;       /* too long to cache */
    for (pgev_stmt *st = *bucket(c, h); st; st = st->chain) {
        if (st->hash == h && st->nparams == node->nparams && strcmp(st->sql, node->sql) == 0 &&
            types_equal(st->types, types, node->nparams)) {
            lru_unlink(c, st);
            lru_push(c, st);
            /* Until its Parse is known to have worked, the same SQL runs
             * unnamed: a failed Parse must not turn into "prepared
             * statement does not exist" for the queries behind it. A
             * stale one waits to be closed outside the block. */
            if (!st->ready || st->stale)
                return false;
            memcpy(node->stmt_name, st->name, sizeof(node->stmt_name));
            *parse = false;
            return true;
        }
    }
    size_t types_size = types ? (size_t)node->nparams * sizeof(Oid) : 0;
    size_t size = sizeof(pgev_stmt) + types_size + len + 1;
    while (c->count >= c->capacity || c->bytes + size > PGEV_STMT_CACHE_MAX_BYTES) {
        /* Closing needs a Sync of its own, outside a block: elsewhere the
         * query runs unnamed instead. */
        if (!outside || !c->oldest)
            return false;
        char name[PGEV_STMT_NAME_MAX];
        memcpy(name, c->oldest->name, sizeof(name));
        stmt_drop(c, c->oldest);
        if (!close_statement(conn, name))
            return false;
    }
    pgev_stmt *st = malloc(size);
    if (!st)
        return false;
    char *extra = (char *)(st + 1);
    memset(st, 0, sizeof(*st));
    if (types) {
        memcpy(extra, types, types_size);
        st->types = (const Oid *)extra;
    }
    memcpy(extra + types_size, node->sql, len + 1);
    st->sql = extra + types_size;
    st->nparams = node->nparams;
    st->hash = h;
    st->size = size;
    digest_name(st->name, st->sql, len, node->nparams, types);
    pgev_stmt **b = bucket(c, h);
    st->chain = *b;
    *b = st;
    lru_push(c, st);
    c->count++;
    c->bytes += size;
    memcpy(node->stmt_name, st->name, sizeof(node->stmt_name));
    *parse = true;
    return true;
}

static bool
has_sqlstate(const PGresult *res, const char *state)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s && strcmp(s, state) == 0;
}

void
pgev_stmt_parsed(pgev_conn *conn, pgev_node *node)
{
    pgev_stmt *st = stmt_find_name(&conn->stmts, node->stmt_name);
    if (!st)
        return;
    /* 42P05: the session has a statement of that name, which (the name
     * being a digest of text and types) is this one. */
    if (node->status == PGEV_OK || (node->status == PGEV_ESERVER && has_sqlstate(node->error_result, "42P05")))
        st->ready = true;
    else
        stmt_drop(&conn->stmts, st);
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

/* Sending the node again would keep submission order: nothing but
 * pgev's own Close and session nodes was sent after it, or it is
 * read-only (PGEV_QUERY_READONLY: its order does not matter). */
static bool
resend_keeps_order(const pgev_conn *conn, const pgev_node *node)
{
    if (node->flags & PGEV_QUERY_READONLY)
        return true;
    for (const pgev_node *n = conn->inflight.head; n; n = n->next)
        if (n->kind != PGEV_NODE_CLOSE && !n->internal)
            return false;
    return true;
}

bool
pgev_stmt_completed(pgev_conn *conn, pgev_node *node)
{
    pgev_stmt_cache *c = &conn->stmts;
    if (node->status == PGEV_OK) {
        /* The server dropped every prepared statement of the session. */
        const char *tag = node->result ? PQcmdStatus(node->result) : NULL;
        if (tag && tag[0] == 'D' && (strcmp(tag, "DISCARD ALL") == 0 || strcmp(tag, "DEALLOCATE ALL") == 0))
            pgev_stmt_cache_clear(c);
        return false;
    }
    if (!node->stmt_name[0] || node->status != PGEV_ESERVER || !node->error_result)
        return false;
    bool exists = has_sqlstate(node->error_result, "42P05");
    bool missing = has_sqlstate(node->error_result, "26000");
    bool stale = has_sqlstate(node->error_result, "0A000") && is_stale_plan(node->error_result);
    if (!exists && !missing && !stale)
        return false;
    pgev_stmt *st = stmt_find_name(c, node->stmt_name);
    if (missing && st) {
        stmt_drop(c, st);       /* prepared again next time */
    } else if (stale && st && !st->stale) {
        /* Closed by the next isolated query sent outside a block (at once
         * when this query is re-sent below): the same name is prepared
         * afresh after it. */
        st->stale = true;
        c->stale++;
    }
    /* All three errors come before the statement runs. Sending it again
     * (unnamed) is the isolated query's own business, outside a
     * transaction block (one would now be aborted) and when it keeps
     * submission order. */
    if (node->cache_retried || node->finished || node->rows > 0 || !(node->sync_after || node->shared) ||
        node->in_block || !resend_keeps_order(conn, node))
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
