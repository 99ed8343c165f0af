/*
 * faultproxy: see faultproxy.h.
 *
 * Each proxied connection is a pair of bufferevents (client side, server
 * side) and two directions, UP (client -> server) and DOWN (server ->
 * client). A direction moves data from its source's input buffer to its
 * destination's output buffer, either at once or, with latency, through a
 * queue of timestamped chunks released by a timer. Flow control: when a
 * destination holds more than HIGH_WATER bytes (queued plus unsent), its
 * source stops reading until the destination has written down to
 * LOW_WATER.
 */
#include "faultproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define HIGH_WATER (256 * 1024)
#define LOW_WATER (64 * 1024)

enum { UP = 0, DOWN = 1 };

typedef struct chunk chunk;
struct chunk {
    chunk *next;
    struct evbuffer *data;
    struct timeval due;
};

typedef struct fp_conn fp_conn;

/* One direction of a connection. */
typedef struct direction {
    fp_conn *conn;
    int which;                /* UP or DOWN */
    struct bufferevent *src;
    struct bufferevent *dst;
    chunk *head, *tail;       /* held by latency */
    size_t queued;            /* bytes in the chunks */
    struct event *timer;      /* releases due chunks */
    bool eof;                 /* the source ended: close once dst has written everything */
} direction;

struct fp_conn {
    faultproxy *fp;
    fp_conn *prev, *next;
    struct bufferevent *client;
    struct bufferevent *server;
    direction dir[2];
    bool connected;           /* the upstream connect completed */
    bool stalled;
    int64_t cut_budget;       /* DOWN bytes still allowed before the cut; -1: no cut */
    bool cutting;             /* the budget is spent: reset once the client has it */
};

struct faultproxy {
    struct event_base *base;
    struct evconnlistener *listener;
    struct sockaddr_storage upstream;
    int upstream_len;
    int port;
    int latency_ms;
    bool stall_new;           /* connections accepted from now on start stalled */
    fp_conn *conns;
    faultproxy_stats stats;
};

static bool conn_pump(direction *d);

/* ---- closing ------------------------------------------------------------ */

static void
set_rst(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
}

static void
direction_clear(direction *d)
{
    chunk *c = d->head;
    while (c) {
        chunk *next = c->next;
        evbuffer_free(c->data);
        free(c);
        c = next;
    }
    d->head = d->tail = NULL;
    d->queued = 0;
    if (d->timer) {
        event_free(d->timer);
        d->timer = NULL;
    }
}

/* Closes both sockets; with rst, as a reset instead of a FIN. */
static void
conn_close(fp_conn *c, bool rst)
{
    faultproxy *fp = c->fp;
    if (rst) {
        set_rst(c->client);
        set_rst(c->server);
    }
    direction_clear(&c->dir[UP]);
    direction_clear(&c->dir[DOWN]);
    bufferevent_free(c->client);
    bufferevent_free(c->server);
    if (c->prev)
        c->prev->next = c->next;
    else
        fp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    fp->stats.conns--;
    free(c);
}

/* ---- moving data -------------------------------------------------------- */

static size_t
pending_toward(const direction *d)
{
    return d->queued + evbuffer_get_length(bufferevent_get_output(d->dst));
}

/* Reading from a direction's source is on unless the connection is stalled
 * or being cut, the source ended, or the destination is too far behind. */
static void
update_reading(direction *d)
{
    fp_conn *c = d->conn;
    bool on = !c->stalled && !c->cutting && !d->eof && pending_toward(d) < HIGH_WATER &&
              (d->which == DOWN || c->connected);
    if (on)
        bufferevent_enable(d->src, EV_READ);
    else
        bufferevent_disable(d->src, EV_READ);
}

/* Appends data to the destination, applying the cut budget downwards.
 * Returns false when the connection was closed. */
static bool
deliver(direction *d, struct evbuffer *data)
{
    fp_conn *c = d->conn;
    faultproxy *fp = c->fp;
    struct evbuffer *out = bufferevent_get_output(d->dst);
    size_t len = evbuffer_get_length(data);
    if (d->which == DOWN && c->cut_budget >= 0) {
        size_t n = len < (size_t)c->cut_budget ? len : (size_t)c->cut_budget;
        evbuffer_remove_buffer(data, out, n);
        c->cut_budget -= (int64_t)n;
        fp->stats.bytes_down += (int64_t)n;
        if (c->cut_budget == 0) {
            evbuffer_drain(data, evbuffer_get_length(data));
            c->cutting = true;
            fp->stats.cuts++;
            if (evbuffer_get_length(out) == 0) {
                conn_close(c, true);
                return false;
            }
            /* The client's write callback resets once it has the budget. */
            bufferevent_setwatermark(d->dst, EV_WRITE, 0, 0);
            bufferevent_disable(c->client, EV_READ);
            bufferevent_disable(c->server, EV_READ);
        }
        return true;
    }
    if (d->which == UP)
        fp->stats.bytes_up += (int64_t)len;
    else
        fp->stats.bytes_down += (int64_t)len;
    evbuffer_add_buffer(out, data);
    return true;
}

static void
arm_timer(direction *d)
{
    if (!d->head || d->conn->stalled)
        return;
    struct timeval now, wait = { 0, 0 };
    evutil_gettimeofday(&now, NULL);
    if (evutil_timercmp(&d->head->due, &now, >))
        evutil_timersub(&d->head->due, &now, &wait);
    event_add(d->timer, &wait);
}

/* Releases the chunks that are due, then re-arms for the next one. */
static void
release_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    direction *d = arg;
    fp_conn *c = d->conn;
    struct timeval now;
    evutil_gettimeofday(&now, NULL);
    while (d->head && !c->stalled && !c->cutting && !evutil_timercmp(&d->head->due, &now, >)) {
        chunk *ch = d->head;
        d->head = ch->next;
        if (!d->head)
            d->tail = NULL;
        d->queued -= evbuffer_get_length(ch->data);
        bool alive = deliver(d, ch->data);
        evbuffer_free(ch->data);
        free(ch);
        if (!alive)
            return;
    }
    arm_timer(d);
    (void)conn_pump(d);
}

/* Moves what the source has read toward the destination. Returns false
 * when the connection was closed (c is gone). */
static bool
conn_pump(direction *d)
{
    fp_conn *c = d->conn;
    faultproxy *fp = c->fp;
    struct evbuffer *in = bufferevent_get_input(d->src);
    if (!c->stalled && !c->cutting && evbuffer_get_length(in) > 0) {
        if (fp->latency_ms > 0 || d->head) {
            chunk *ch = calloc(1, sizeof(*ch));
            struct evbuffer *data = evbuffer_new();
            if (!ch || !data) {
                free(ch);
                if (data)
                    evbuffer_free(data);
                conn_close(c, true);
                return false;
            }
            ch->data = data;
            d->queued += evbuffer_get_length(in);
            evbuffer_add_buffer(data, in);
            struct timeval now, delay = { fp->latency_ms / 1000, (fp->latency_ms % 1000) * 1000 };
            evutil_gettimeofday(&now, NULL);
            evutil_timeradd(&now, &delay, &ch->due);
            if (d->tail)
                d->tail->next = ch;
            else
                d->head = ch;
            d->tail = ch;
            if (!evtimer_pending(d->timer, NULL))
                arm_timer(d);
        } else if (!deliver(d, in)) {
            return false;
        }
    }
    /* The other side ended and everything it sent is out: close. */
    if (d->eof && d->queued == 0 && evbuffer_get_length(in) == 0 &&
        evbuffer_get_length(bufferevent_get_output(d->dst)) == 0) {
        conn_close(c, false);
        return false;
    }
    update_reading(d);
    return true;
}

static direction *
dir_from_src(fp_conn *c, struct bufferevent *bev)
{
    return bev == c->client ? &c->dir[UP] : &c->dir[DOWN];
}

static direction *
dir_from_dst(fp_conn *c, struct bufferevent *bev)
{
    return bev == c->client ? &c->dir[DOWN] : &c->dir[UP];
}

static void
on_read(struct bufferevent *bev, void *arg)
{
    (void)conn_pump(dir_from_src(arg, bev));
}

/* The destination wrote down to its low-water mark. */
static void
on_write(struct bufferevent *bev, void *arg)
{
    fp_conn *c = arg;
    direction *d = dir_from_dst(c, bev);
    if (c->cutting) {
        if (bev == c->client && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_close(c, true);
        return;
    }
    (void)conn_pump(d);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    fp_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->connected = true;
        update_reading(&c->dir[UP]);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        if (bev == c->server && !c->connected)
            c->fp->stats.upstream_failures++;
        conn_close(c, true);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* Deliver what the side that ended sent, then close both. */
        direction *d = dir_from_src(c, bev);
        d->eof = true;
        (void)conn_pump(d);
    }
}

/* ---- accepting ---------------------------------------------------------- */

static void
on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa, int salen,
          void *arg)
{
    (void)listener;
    (void)sa;
    (void)salen;
    faultproxy *fp = arg;
    fp_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->fp = fp;
    c->cut_budget = -1;
    c->stalled = fp->stall_new;
    c->client = bufferevent_socket_new(fp->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->server = bufferevent_socket_new(fp->base, -1, BEV_OPT_CLOSE_ON_FREE);
    for (int i = 0; i < 2; i++) {
        c->dir[i].conn = c;
        c->dir[i].which = i;
        c->dir[i].src = i == UP ? c->client : c->server;
        c->dir[i].dst = i == UP ? c->server : c->client;
        c->dir[i].timer = evtimer_new(fp->base, release_due, &c->dir[i]);
    }
    if (!c->client || !c->server || !c->dir[UP].timer || !c->dir[DOWN].timer) {
        if (c->client)
            bufferevent_free(c->client);
        else
            evutil_closesocket(fd);
        if (c->server)
            bufferevent_free(c->server);
        direction_clear(&c->dir[UP]);
        direction_clear(&c->dir[DOWN]);
        free(c);
        return;
    }
    c->next = fp->conns;
    if (fp->conns)
        fp->conns->prev = c;
    fp->conns = c;
    fp->stats.conns++;
    fp->stats.accepted++;
    bufferevent_setcb(c->client, on_read, on_write, on_event, c);
    bufferevent_setcb(c->server, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->client, EV_WRITE, LOW_WATER, 0);
    bufferevent_setwatermark(c->server, EV_WRITE, LOW_WATER, 0);
    /* The client is read only once the upstream is connected (update_reading). */
    bufferevent_disable(c->client, EV_READ);
    if (bufferevent_socket_connect(c->server, (struct sockaddr *)&fp->upstream,
                                   fp->upstream_len) < 0) {
        fp->stats.upstream_failures++;
        conn_close(c, true);
        return;
    }
    bufferevent_enable(c->server, EV_READ);
}

static int
listen_on(faultproxy *fp, int port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fp->listener = evconnlistener_new_bind(fp->base, on_accept, fp,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
                                           (struct sockaddr *)&sin, sizeof(sin));
    if (!fp->listener)
        return -1;
    struct sockaddr_in bound;
    socklen_t len = sizeof(bound);
    if (getsockname(evconnlistener_get_fd(fp->listener), (struct sockaddr *)&bound, &len) < 0) {
        evconnlistener_free(fp->listener);
        fp->listener = NULL;
        return -1;
    }
    fp->port = ntohs(bound.sin_port);
    return 0;
}

/* ---- the API ------------------------------------------------------------ */

faultproxy *
faultproxy_new(struct event_base *base, const char *upstream_host, int upstream_port)
{
    if (!base || !upstream_host || upstream_port <= 0 || upstream_port > 65535)
        return NULL;
    faultproxy *fp = calloc(1, sizeof(*fp));
    if (!fp)
        return NULL;
    fp->base = base;
    struct sockaddr_in *sin = (struct sockaddr_in *)&fp->upstream;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&fp->upstream;
    if (inet_pton(AF_INET, upstream_host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)upstream_port);
        fp->upstream_len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, upstream_host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)upstream_port);
        fp->upstream_len = sizeof(*sin6);
    } else {
        free(fp);
        return NULL;
    }
    if (listen_on(fp, 0) < 0) {
        free(fp);
        return NULL;
    }
    return fp;
}

void
faultproxy_free(faultproxy *fp)
{
    if (!fp)
        return;
    while (fp->conns)
        conn_close(fp->conns, false);
    if (fp->listener)
        evconnlistener_free(fp->listener);
    free(fp);
}

int
faultproxy_port(const faultproxy *fp)
{
    return fp->port;
}

void
faultproxy_set_latency(faultproxy *fp, int ms)
{
    fp->latency_ms = ms > 0 ? ms : 0;
}

int
faultproxy_stall(faultproxy *fp)
{
    int n = 0;
    for (fp_conn *c = fp->conns; c; c = c->next) {
        if (c->stalled || c->cutting)
            continue;
        c->stalled = true;
        for (int i = 0; i < 2; i++) {
            event_del(c->dir[i].timer);
            update_reading(&c->dir[i]);
        }
        n++;
    }
    fp->stats.stalls += n;
    return n;
}

void
faultproxy_unstall(faultproxy *fp)
{
    fp_conn *c = fp->conns;
    while (c) {
        fp_conn *next = c->next;
        if (c->stalled) {
            c->stalled = false;
            /* Release what latency held and what was read before the
             * stall; a pump may close the connection (a side ended). */
            arm_timer(&c->dir[UP]);
            arm_timer(&c->dir[DOWN]);
            if (conn_pump(&c->dir[UP]))
                (void)conn_pump(&c->dir[DOWN]);
        }
        c = next;
    }
}

int
faultproxy_cut_after(faultproxy *fp, size_t bytes)
{
    int n = 0;
    for (fp_conn *c = fp->conns; c; c = c->next) {
        if (c->cutting)
            continue;
        c->cut_budget = bytes > INT64_MAX ? INT64_MAX : (int64_t)bytes;
        n++;
    }
    /* A budget of 0 cuts at the next byte from the server. */
    return n;
}

int
faultproxy_refuse(faultproxy *fp, bool on)
{
    if (on) {
        if (fp->listener) {
            evconnlistener_free(fp->listener);
            fp->listener = NULL;
            fp->stats.refusals++;
        }
        return 0;
    }
    if (fp->listener)
        return 0;
    int port = fp->port;
    if (listen_on(fp, port) < 0)
        return -1;
    return fp->port == port ? 0 : -1;
}

int
faultproxy_reset(faultproxy *fp)
{
    int n = 0;
    while (fp->conns) {
        conn_close(fp->conns, true);
        n++;
    }
    fp->stats.resets += n;
    return n;
}

void
faultproxy_get_stats(const faultproxy *fp, faultproxy_stats *out)
{
    *out = fp->stats;
}

void
faultproxy_stall_new(faultproxy *fp, bool on)
{
    fp->stall_new = on;
}
