/*
 * faultproxy: a small fault-injection TCP proxy for pgev's tests, running
 * in-process on the test's own libevent event_base.
 *
 * It listens on 127.0.0.1 (a port the kernel picks) and forwards every
 * connection it accepts to an upstream TCP address (the test server), byte
 * for byte, in both directions. Between the two it can inject the faults a
 * client library meets in production:
 *
 *  - latency: every chunk is held for N ms before it is forwarded;
 *  - stall: the connections open now stop moving data in both directions
 *    (a black hole: nothing is read, nothing is closed) until unstalled;
 *    connections made afterwards (a cancel request, a reconnect) flow;
 *  - cut: the connections open now are reset after N more bytes from the
 *    server to the client (mid-result, mid-COPY);
 *  - refuse: the listening socket is closed, so new connections get
 *    ECONNREFUSED, and later reopened on the same port;
 *  - reset: every connection open now is reset (RST) at once.
 *
 * Everything runs from the loop: the proxy never blocks and never sleeps,
 * so a test drives it with the same event_base that drives pgev. The proxy
 * bounds its own buffering (it stops reading from one side while the other
 * side is slow), so a long stream through it runs in constant memory.
 * Not thread-safe; one proxy belongs to one base.
 */
#ifndef PGEV_FAULTPROXY_H
#define PGEV_FAULTPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct faultproxy faultproxy;

/* Counters since faultproxy_new(). */
typedef struct faultproxy_stats {
    int conns;              /* proxied connections open now */
    int64_t accepted;       /* connections accepted */
    int64_t upstream_failures; /* accepted, but the upstream connect failed */
    int64_t bytes_up;       /* client -> server bytes forwarded */
    int64_t bytes_down;     /* server -> client bytes forwarded */
    int64_t cuts;           /* connections reset by faultproxy_cut_after() */
    int64_t resets;         /* connections reset by faultproxy_reset() */
    int64_t stalls;         /* connections stalled by faultproxy_stall() */
    int64_t refusals;       /* times faultproxy_refuse(true) closed the listener */
} faultproxy_stats;

/*
 * Starts a proxy on `base` that forwards to upstream_host:upstream_port
 * (an IPv4 or IPv6 address, numeric). Returns NULL on error (bad address,
 * no socket); the caller frees it with faultproxy_free().
 */
faultproxy *faultproxy_new(struct event_base *base, const char *upstream_host, int upstream_port);

/* Closes every connection (gracefully) and the listener; NULL is a no-op. */
void faultproxy_free(faultproxy *fp);

/* The 127.0.0.1 port the proxy listens on. */
int faultproxy_port(const faultproxy *fp);

/* Holds every chunk, in both directions, for `ms` milliseconds (0: none),
 * on all connections, present and future. Order is always kept. */
void faultproxy_set_latency(faultproxy *fp, int ms);

/* Black-holes the connections open now; returns how many. */
int faultproxy_stall(faultproxy *fp);

/* on: connections accepted from now on are black-holed from the start
 * (accepted, then nothing moves: a cancel request that never completes);
 * off: new connections flow again. */
void faultproxy_stall_new(faultproxy *fp, bool on);

/* Lets stalled connections move again (what they held is delivered). */
void faultproxy_unstall(faultproxy *fp);

/* Each connection open now is reset once `bytes` more bytes have gone
 * from the server to the client (those bytes are delivered first).
 * Returns how many connections are armed. */
int faultproxy_cut_after(faultproxy *fp, size_t bytes);

/* on: close the listening socket (new connections are refused by the
 * kernel); off: listen again on the same port. Returns 0, or -1 when the
 * port could not be bound again (then the proxy keeps refusing). Open
 * connections are not affected. */
int faultproxy_refuse(faultproxy *fp, bool on);

/* Resets (RST) every connection open now; returns how many. */
int faultproxy_reset(faultproxy *fp);

/* Fills *out with the counters. */
void faultproxy_get_stats(const faultproxy *fp, faultproxy_stats *out);

#endif /* PGEV_FAULTPROXY_H */
