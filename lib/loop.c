/*
 * The event-loop adapter: every libevent call pgev makes is in this file.
 * A connection gets a read event (armed whenever there is a socket), a
 * write event (armed only while libpq holds unsent bytes, or while a
 * connect poll asks for it), one timer and one deferred-work event.
 */
#include "pgev-internal.h"

#include <stdlib.h>

#include <event2/event.h>

struct pgev_loop {
    struct event_base *base;
    pgev_conn *conn;
    pgev_loop_io_fn on_io;
    pgev_loop_fn on_timeout;
    pgev_loop_fn on_deferred;
    int fd;
    bool reading;
    bool writing;
    bool deferred;          /* defer_ev is active and has not run yet */
    struct event *read_ev;
    struct event *write_ev;
    struct event *timer_ev;
    struct event *defer_ev;
    struct event *yield_ev; /* a zero timer: deferred work after the loop's next poll */
};

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
    pgev_loop *loop = arg;
    (void)fd;
    loop->on_io(loop->conn, (what & EV_READ) != 0, (what & EV_WRITE) != 0);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pgev_loop *loop = arg;
    (void)fd;
    (void)what;
    loop->on_timeout(loop->conn);
}

static void
defer_cb(evutil_socket_t fd, short what, void *arg)
{
    pgev_loop *loop = arg;
    (void)fd;
    (void)what;
    loop->deferred = false;
    loop->on_deferred(loop->conn);
}

pgev_loop *
pgev_loop_new(struct event_base *base, pgev_conn *conn, pgev_loop_io_fn on_io,
              pgev_loop_fn on_timeout, pgev_loop_fn on_deferred)
{
    pgev_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->base = base;
    loop->conn = conn;
    loop->on_io = on_io;
    loop->on_timeout = on_timeout;
    loop->on_deferred = on_deferred;
    loop->fd = -1;
    loop->timer_ev = evtimer_new(base, timer_cb, loop);
    loop->defer_ev = event_new(base, -1, 0, defer_cb, loop);
    loop->yield_ev = evtimer_new(base, defer_cb, loop);
    if (!loop->timer_ev || !loop->defer_ev || !loop->yield_ev) {
        pgev_loop_free(loop);
        return NULL;
    }
    return loop;
}

static void
drop_io_events(pgev_loop *loop)
{
    if (loop->read_ev) {
        event_free(loop->read_ev);
        loop->read_ev = NULL;
    }
    if (loop->write_ev) {
        event_free(loop->write_ev);
        loop->write_ev = NULL;
    }
    loop->reading = loop->writing = false;
    loop->fd = -1;
}

void
pgev_loop_free(pgev_loop *loop)
{
    if (!loop)
        return;
    drop_io_events(loop);
    if (loop->timer_ev)
        event_free(loop->timer_ev);
    if (loop->defer_ev)
        event_free(loop->defer_ev);
    if (loop->yield_ev)
        event_free(loop->yield_ev);
    free(loop);
}

/*
 * Idempotent: only what changed is touched, so calling it after every
 * flush costs nothing when interest is unchanged.
 */
int
pgev_loop_watch(pgev_loop *loop, int fd, bool want_read, bool want_write)
{
    if (fd != loop->fd) {
        drop_io_events(loop);
        if (fd < 0)
            return 0;
        loop->read_ev = event_new(loop->base, fd, EV_READ | EV_PERSIST, io_cb, loop);
        loop->write_ev = event_new(loop->base, fd, EV_WRITE | EV_PERSIST, io_cb, loop);
        if (!loop->read_ev || !loop->write_ev) {
            drop_io_events(loop);
            return -1;
        }
        loop->fd = fd;
    }
    if (want_read != loop->reading) {
        if ((want_read ? event_add(loop->read_ev, NULL) : event_del(loop->read_ev)) != 0)
            return -1;
        loop->reading = want_read;
    }
    if (want_write != loop->writing) {
        if ((want_write ? event_add(loop->write_ev, NULL) : event_del(loop->write_ev)) != 0)
            return -1;
        loop->writing = want_write;
    }
    return 0;
}

int
pgev_loop_timer(pgev_loop *loop, int ms)
{
    if (ms < 0)
        return event_del(loop->timer_ev);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    return event_add(loop->timer_ev, &tv);
}

void
pgev_loop_defer(pgev_loop *loop)
{
    if (!loop->deferred) {
        loop->deferred = true;
        event_active(loop->defer_ev, 0, 0);
    }
}

void
pgev_loop_yield(pgev_loop *loop)
{
    /* An event made active from inside a callback runs again in the same
     * pass of libevent's dispatch, before any timer or socket is looked
     * at; a zero timer waits for the next pass, so everything else due
     * runs first. */
    static const struct timeval now = { 0, 0 };
    if (!loop->deferred) {
        loop->deferred = true;
        /* libevent times a new timer from the time cached when this pass
         * began: after slow callbacks that is in the past, and the zero
         * timer would jump ahead of deadlines that came due meanwhile. */
        event_base_update_cache_time(loop->base);
        evtimer_add(loop->yield_ev, &now);
    }
}

struct event_base *
pgev_loop_base(const pgev_loop *loop)
{
    return loop->base;
}

/* ---- per-object timers and extra watches ------------------------------- */

struct pgev_timer {
    pgev_loop *loop;
    struct event *ev;
    pgev_timer_fn fn;
    void *arg;
};

static void
object_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pgev_timer *timer = arg;
    (void)fd;
    (void)what;
    timer->fn(timer->loop->conn, timer->arg);
}

pgev_timer *
pgev_timer_new(pgev_loop *loop, pgev_timer_fn fn, void *arg)
{
    pgev_timer *timer = malloc(sizeof(*timer));
    if (!timer)
        return NULL;
    timer->loop = loop;
    timer->fn = fn;
    timer->arg = arg;
    timer->ev = evtimer_new(loop->base, object_timer_cb, timer);
    if (!timer->ev) {
        free(timer);
        return NULL;
    }
    return timer;
}

int
pgev_timer_start(pgev_timer *timer, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    return event_add(timer->ev, &tv);
}

void
pgev_timer_free(pgev_timer *timer)
{
    if (!timer)
        return;
    event_free(timer->ev);
    free(timer);
}

struct pgev_watch {
    pgev_loop *loop;
    struct event *ev;
    pgev_timer_fn fn;
    void *arg;
};

static void
watch_cb(evutil_socket_t fd, short what, void *arg)
{
    pgev_watch *watch = arg;
    (void)fd;
    (void)what;
    watch->fn(watch->loop->conn, watch->arg);
}

pgev_watch *
pgev_watch_new(pgev_loop *loop, int fd, pgev_timer_fn fn, void *arg)
{
    return pgev_watch_new_for(loop, fd, false, fn, arg);
}

pgev_watch *
pgev_watch_new_for(pgev_loop *loop, int fd, bool write, pgev_timer_fn fn, void *arg)
{
    pgev_watch *watch = malloc(sizeof(*watch));
    if (!watch)
        return NULL;
    watch->loop = loop;
    watch->fn = fn;
    watch->arg = arg;
    watch->ev = event_new(loop->base, fd, (write ? EV_WRITE : EV_READ) | EV_PERSIST, watch_cb, watch);
    if (!watch->ev || event_add(watch->ev, NULL) != 0) {
        if (watch->ev)
            event_free(watch->ev);
        free(watch);
        return NULL;
    }
    return watch;
}

void
pgev_watch_free(pgev_watch *watch)
{
    if (!watch)
        return;
    event_free(watch->ev);
    free(watch);
}

/* ---- events of objects that are not connections (the pool) -------------- */

struct pgev_event {
    struct event *ev;
    pgev_event_fn fn;
    void *arg;
    int period_ms;          /* > 0: runs every period_ms until stopped */
};

static void
object_event_cb(evutil_socket_t fd, short what, void *arg)
{
    pgev_event *event = arg;
    (void)fd;
    (void)what;
    event->fn(event->arg);
}

pgev_event *
pgev_event_new(struct event_base *base, int period_ms, pgev_event_fn fn, void *arg)
{
    pgev_event *event = malloc(sizeof(*event));
    if (!event)
        return NULL;
    event->fn = fn;
    event->arg = arg;
    event->period_ms = period_ms;
    event->ev = event_new(base, -1, period_ms > 0 ? EV_PERSIST : 0, object_event_cb, event);
    if (!event->ev) {
        free(event);
        return NULL;
    }
    return event;
}

int
pgev_event_start(pgev_event *event, int ms)
{
    if (event->period_ms > 0)
        ms = event->period_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    return event_add(event->ev, &tv);
}

void
pgev_event_activate(pgev_event *event)
{
    event_active(event->ev, EV_TIMEOUT, 0);
}

void
pgev_event_stop(pgev_event *event)
{
    event_del(event->ev);
}

void
pgev_event_free(pgev_event *event)
{
    if (!event)
        return;
    event_free(event->ev);
    free(event);
}
