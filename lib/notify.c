/*
 * LISTEN/NOTIFY: per-channel subscriptions and delivery.
 *
 * LISTEN and UNLISTEN are ordinary queries on the pipeline, so they keep
 * their place among the connection's other queries. Notifications need no
 * query: libpq parses them whenever it parses input (the receive side does
 * that also while the connection is idle), and pgev_notify_deliver(),
 * called after every such parse, hands them to the listener of their
 * channel.
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

int64_t
pgev_conn_listen(pgev_conn *conn, const char *channel, pgev_notify_cb on_notify, pgev_result_cb on_done,
                 void *arg)
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
    pgev_listener **link;
    pgev_listener *old = find(conn, channel, &link);
    if (old) {
        /* Replace in place: same channel, new callback. */
        fresh->next = old->next;
        *link = fresh;
        free(old);
    } else {
        fresh->next = conn->listeners;
        conn->listeners = fresh;
    }
    fresh->serial = call->serial;
    fresh->on_notify = on_notify;
    fresh->arg = arg;
    memcpy(fresh->channel, channel, len + 1);
    return id;
}

int64_t
pgev_conn_unlisten(pgev_conn *conn, const char *channel, pgev_result_cb on_done, void *arg)
{
    if (!conn)
        return PGEV_EINVAL;
    if (!valid_channel(conn, channel))
        return PGEV_EINVAL;
    pgev_listener **link;
    if (!find(conn, channel, &link)) {
        pgev_conn_refuse(conn, "not listening on channel \"%s\"", channel);
        return PGEV_EINVAL;
    }
    remove_listener(link);
    return submit_command(conn, "UNLISTEN", channel, on_done, arg);
}

void
pgev_notify_deliver(pgev_conn *conn)
{
    PGnotify *n;
    while (conn->pg && !conn->free_requested && (n = PQnotifies(conn->pg)) != NULL) {
        pgev_listener *l = find(conn, n->relname, NULL);
        /* The listener may unsubscribe or free the connection from its
         * callback: nothing of it is touched afterwards. */
        if (l)
            l->on_notify(conn, n->relname, n->extra ? n->extra : "", n->be_pid, l->arg);
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
