/*
 * LISTEN/NOTIFY: per-channel subscriptions and delivery.
 *
 * LISTEN and UNLISTEN are ordinary queries on the pipeline, so they keep
 * their place among the connection's other queries. Notifications need no
 * query: libpq parses them whenever it parses input (the receive side does
 * that also while the connection is idle), and pgev_notify_deliver(),
 * called after every such parse, hands them to every listener of their
 * channel, in the order they were added.
 *
 * A channel has one listener through pgev_conn_listen() (which replaces
 * the channel's listeners) or several through pgev_conn_add_listener()
 * (asyncpg's add_listener): the server is subscribed while the channel
 * has a listener, and unsubscribed when pgev_conn_remove_listener() takes
 * its last one.
 */
#include "pgev-internal.h"
#include "pool-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL's NAMEDATALEN - 1: longer identifiers are truncated by the
 * server, and notifications would then carry a different channel name. */
#define CHANNEL_MAX 63

struct pgev_listener {
    pgev_listener *next;
    uint64_t serial;        /* tells a replaced subscription from its successor */
    uint64_t delivered;     /* the last notification (deliver_seq) it was handed */
    pgev_notify_cb on_notify;
    void *arg;
    char channel[];         /* as the application spelled it, unquoted */
};

/* The completion of one LISTEN: drops its subscription if LISTEN failed. */
typedef struct listen_call {
    uint64_t serial;
    pgev_result_cb on_done;
    void *arg;
} listen_call;

static pgev_listener *
find(pgev_conn *conn, const char *channel, pgev_listener ***link)
{
    for (pgev_listener **p = &conn->listeners; *p; p = &(*p)->next) {
        if (strcmp((*p)->channel, channel) == 0) {
            if (link)
                *link = p;
            return *p;
        }
    }
    return NULL;
}

static void
remove_listener(pgev_listener **link)
{
    pgev_listener *l = *link;
    *link = l->next;
    free(l);
}

/* Removes every listener of the channel; returns how many there were. */
static int
remove_channel(pgev_conn *conn, const char *channel)
{
    int n = 0;
    pgev_listener **link;
    while (find(conn, channel, &link)) {
        remove_listener(link);
        n++;
    }
    return n;
}

static bool
valid_channel(pgev_conn *conn, const char *channel)
{
    if (!channel || !channel[0]) {
        pgev_conn_refuse(conn, "channel name is %s", channel ? "empty" : "NULL");
        return false;
    }
    if (strlen(channel) > CHANNEL_MAX) {
        pgev_conn_refuse(conn, "channel name is %zu bytes long; at most %d are allowed",
                         strlen(channel), CHANNEL_MAX);
        return false;
    }
    return true;
}

/* Submits "<verb> <quoted channel>" as an ordinary query. */
static int64_t
submit_command(pgev_conn *conn, const char *verb, const char *channel, pgev_result_cb on_done,
               void *arg)
{
    if (!conn->pg) {
        pgev_conn_refuse(conn, "connection has failed");
        return PGEV_ECLOSED;
    }
    char *quoted = PQescapeIdentifier(conn->pg, channel, strlen(channel));
    if (!quoted) {
        pgev_conn_refuse(conn, "cannot quote channel name: %s", PQerrorMessage(conn->pg));
        return PGEV_EINVAL;
    }
    size_t size = strlen(verb) + 1 + strlen(quoted) + 1;
    char *sql = malloc(size);
    if (!sql) {
        PQfreemem(quoted);
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    snprintf(sql, size, "%s %s", verb, quoted);
    PQfreemem(quoted);
    pgev_query_args args = { .sql = sql, .on_done = on_done, .arg = arg };
    int64_t id = pgev_conn_submit(conn, &args);   /* copies or sends the text */
    free(sql);
    return id;
}

static void
on_listen_done(pgev_conn *conn, pgev_result *res, void *arg)
{
    listen_call *call = arg;
    if (res->status != PGEV_OK && !conn->free_requested) {
        pgev_listener **link;
        for (link = &conn->listeners; *link; link = &(*link)->next) {
            if ((*link)->serial == call->serial) {
                remove_listener(link);
                break;
            }
        }
    }
    if (call->on_done)
        call->on_done(conn, res, call->arg);
    free(call);
}

/* LISTEN and a new listener; `replace` drops the channel's others first. */
static int64_t
listen_common(pgev_conn *conn, const char *channel, pgev_notify_cb on_notify, pgev_result_cb on_done,
              void *arg, bool replace)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!valid_channel(conn, channel))
        return PGEV_EINVAL;
    if (!on_notify) {
        pgev_conn_refuse(conn, "on_notify is NULL");
        return PGEV_EINVAL;
    }
    listen_call *call = malloc(sizeof(*call));
    size_t len = strlen(channel);
    pgev_listener *fresh = malloc(sizeof(*fresh) + len + 1);
    if (!call || !fresh) {
        free(call);
        free(fresh);
        pgev_conn_refuse(conn, "out of memory");
        return PGEV_ENOMEM;
    }
    call->on_done = on_done;
    call->arg = arg;
    int64_t id = submit_command(conn, "LISTEN", channel, on_listen_done, call);
    if (id < 0) {
        free(call);
        free(fresh);
        return id;
    }
    /* The query id is unique on the connection: a fine serial. */
    call->serial = (uint64_t)id;
    if (replace)
        remove_channel(conn, channel);
    /* At the end: a channel's listeners are called in the order added. */
    pgev_listener **link = &conn->listeners;
    while (*link)
        link = &(*link)->next;
    fresh->next = NULL;
    *link = fresh;
    fresh->serial = call->serial;
    fresh->delivered = 0;
    fresh->on_notify = on_notify;
    fresh->arg = arg;
    memcpy(fresh->channel, channel, len + 1);
    return id;
}

int64_t
pgev_conn_listen(pgev_conn *conn, const char *channel, pgev_notify_cb on_notify, pgev_result_cb on_done,
                 void *arg)
{
    return listen_common(conn, channel, on_notify, on_done, arg, true);
}

int64_t
pgev_conn_add_listener(pgev_conn *conn, const char *channel, pgev_notify_cb on_notify,
                       pgev_result_cb on_done, void *arg)
{
    return listen_common(conn, channel, on_notify, on_done, arg, false);
}

int64_t
pgev_conn_unlisten(pgev_conn *conn, const char *channel, pgev_result_cb on_done, void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!valid_channel(conn, channel))
        return PGEV_EINVAL;
    if (!find(conn, channel, NULL)) {
        pgev_conn_refuse(conn, "not listening on channel \"%s\"", channel);
        return PGEV_EINVAL;
    }
    remove_channel(conn, channel);
    return submit_command(conn, "UNLISTEN", channel, on_done, arg);
}

int64_t
pgev_conn_remove_listener(pgev_conn *conn, const char *channel, pgev_notify_cb on_notify, void *arg,
                          pgev_result_cb on_done, void *done_arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!valid_channel(conn, channel))
        return PGEV_EINVAL;
    for (pgev_listener **link = &conn->listeners; *link; link = &(*link)->next) {
        pgev_listener *l = *link;
        if (strcmp(l->channel, channel) != 0 || l->on_notify != on_notify || l->arg != arg)
            continue;
        remove_listener(link);
        if (find(conn, channel, NULL))
            return 0;   /* others still listen: the subscription stays */
        return submit_command(conn, "UNLISTEN", channel, on_done, done_arg);
    }
    pgev_conn_refuse(conn, "no such listener on channel \"%s\"", channel);
    return PGEV_EINVAL;
}

void
pgev_notify_deliver(pgev_conn *conn)
{
    PGnotify *n;
    while (conn->pg && !conn->free_requested && (n = PQnotifies(conn->pg)) != NULL) {
        /* Every listener of the channel, once each. A callback may add or
         * remove listeners or free the connection: the walk starts over
         * after each call, skipping those already handed this one and
         * those added since it arrived (their serial is a newer query id). */
        uint64_t seq = ++conn->notify_seq;
        uint64_t newest = (uint64_t)conn->next_id;
        for (;;) {
            pgev_listener *l = conn->listeners;
            while (l && (l->delivered == seq || l->serial > newest || strcmp(l->channel, n->relname) != 0))
                l = l->next;
            if (!l)
                break;
            l->delivered = seq;
            l->on_notify(conn, n->relname, n->extra ? n->extra : "", n->be_pid, l->arg);
            if (conn->free_requested)
                break;
        }
        PQfreemem(n);
    }
}

void
pgev_listeners_free(pgev_conn *conn)
{
    while (conn->listeners)
        remove_listener(&conn->listeners);
}

int
pgev_conn_drop_listeners(pgev_conn *conn)
{
    int n = 0;
    for (pgev_listener *l = conn->listeners; l; l = l->next)
        n++;
    pgev_listeners_free(conn);
    return n;
}
