/*
 * Connecting without blocking: the hosts of a conninfo, and their names
 * resolved with libevent's asynchronous resolver (evdns).
 *
 * libpq resolves a host name with a blocking getaddrinfo() inside
 * PQconnectStart()/PQconnectPoll(); only `hostaddr` skips it. So pgev
 * reads the host list itself (pgev_plan), resolves each name with evdns
 * (pgev_resolver: /etc/hosts and resolv.conf, as getaddrinfo would), and
 * hands libpq one host and one address per attempt: `host` stays the name
 * (TLS verify-full, SNI, Kerberos and the password file see it), and
 * `hostaddr` the address. Unix-socket paths, IP literals and hosts the
 * conninfo gives a hostaddr for are never resolved.
 *
 * One address per PGconn is also what makes connect_timeout apply per
 * host and address (libpq applies it only in its blocking connect) and
 * lets a host that hangs, refuses, or is the wrong kind for
 * target_session_attrs move the attempt on (conn.c drives the attempts).
 * target_session_attrs=prefer-standby, which libpq implements as two
 * passes over all hosts, is two passes of the plan (standby, then any);
 * load_balance_hosts=random (libpq 16+) shuffles hosts and addresses here.
 *
 * libevent: besides lib/loop.c (the connection's events), this is the one
 * library file that calls evdns; nothing else includes event2/dns.h.
 */
#include "pgev-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

/* ---- the plan: hosts and attempts ---------------------------------------- */

enum host_kind {
    HOST_DEFAULT,   /* no host: libpq's default (the unix socket directory) */
    HOST_SOCKET,    /* a unix-socket directory (or abstract socket, "@...") */
    HOST_ADDRESS,   /* an IP literal, or a hostaddr the conninfo gives */
    HOST_NAME       /* a name to resolve */
};

enum resolve_state { NAME_UNRESOLVED, NAME_RESOLVED, NAME_FAILED };

typedef struct plan_host {
    char *name;             /* as written; NULL for HOST_DEFAULT */
    char *hostaddr;         /* given or the literal itself (HOST_ADDRESS) */
    char *port;             /* NULL: libpq's default */
    enum host_kind kind;
    enum resolve_state resolved;
    char **addrs;           /* HOST_NAME once resolved */
    int naddrs;
} plan_host;

/* Keywords pgev sets per attempt; the conninfo's own values of these are
 * read into the plan and never passed through. */
static const char *const plan_keywords[] = {
    "host", "hostaddr", "port", "target_session_attrs", "load_balance_hosts", NULL
};

struct pgev_plan {
    /* The conninfo's other options, passed to every attempt; room at the
     * end for the per-attempt ones and the terminating NULL. */
    const char **keywords;
    const char **values;
    int nbase;
    PQconninfoOption *parsed;   /* owns the strings keywords/values point to */
    char *dbname_only;          /* a conninfo that is just a database name */

    plan_host *hosts;
    int nhosts;
    char *target_session_attrs;
    bool prefer_standby;        /* two passes: standby first, then any */
    bool load_balance;
    uint64_t rng;
    int connect_timeout_ms;     /* from the conninfo or PGCONNECT_TIMEOUT; 0: none */

    /* Cursor: pass (0, or 1 for prefer-standby's second), host, address. */
    int pass;
    int host;
    int addr;

    /* Why each attempt failed, in order, for the final error. */
    char errors[PGEV_ERRMSG_MAX];
    size_t errors_len;
    char last_error[PGEV_ERRMSG_MAX];
    bool only_timeouts;         /* every failure so far was an attempt timing out */
    int failures;
};

static bool
is_keyword(const char *kw, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(kw, *list) == 0)
            return true;
    return false;
}

/* libpq's rule (recognized_connection_string): a URI, or anything with
 * '=', is a conninfo; anything else is a database name. */
static bool
is_conninfo_string(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0 ||
           strchr(s, '=') != NULL;
}

/* The conninfo's value of kw, else the environment variable's, as libpq
 * reads them; NULL when neither is set or this libpq has no such option
 * (load_balance_hosts before 16: libpq ignores its variable too). */
static const char *
option_value(const PQconninfoOption *opts, const char *kw, const char *env)
{
    for (const PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, kw) == 0)
            return o->val ? o->val : env ? getenv(env) : NULL;
    }
    return NULL;
}

/* Splits a comma-separated list into a NULL-terminated array of copies
 * (empty elements are ""). *count gets the number of elements. */
static char **
split_list(const char *list, int *count)
{
    int n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    char **out = calloc((size_t)n + 1, sizeof(*out));
    if (!out)
        return NULL;
    const char *start = list;
    for (int i = 0; i < n; i++) {
        const char *end = strchr(start, ',');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        out[i] = strndup(start, len);
        if (!out[i]) {
            for (int j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return NULL;
        }
        start = end ? end + 1 : start + len;
    }
    *count = n;
    return out;
}

static void
free_list(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

static bool
is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    /* A ':' never appears in a DNS name: an IPv6 literal, maybe with a
     * zone ("fe80::1%eth0") that inet_pton does not take. */
    return inet_pton(AF_INET, s, buf) == 1 || strchr(s, ':') != NULL;
}

static uint64_t
plan_random(pgev_plan *plan)
{
    /* xorshift64*: enough to spread connections over hosts. */
    uint64_t x = plan->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    plan->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void
shuffle(pgev_plan *plan, void *items, int n, size_t size)
{
    char tmp[sizeof(plan_host) > sizeof(char *) ? sizeof(plan_host) : sizeof(char *)];
    char *base = items;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(plan_random(plan) % (uint64_t)(i + 1));
        memcpy(tmp, base + (size_t)i * size, size);
        memcpy(base + (size_t)i * size, base + (size_t)j * size, size);
        memcpy(base + (size_t)j * size, tmp, size);
    }
}

static void
fail_parse(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
fail_parse(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    char raw[PGEV_ERRMSG_MAX];
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    pgev_mask_secrets(err, errlen, raw);
}

/* connect_timeout as libpq reads it (whole seconds; below 2 counts as 2;
 * 0 or negative: none), range-checked: -1 with err filled when it is not
 * an integer or its milliseconds do not fit an int. */
static int
parse_connect_timeout(const char *s, char *err, size_t errlen)
{
    if (!s || !s[0])
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (*end == ' ')
        end++;
    if (end == s || *end) {
        fail_parse(err, errlen, "invalid connect_timeout \"%s\": not an integer", s);
        return -1;
    }
    if (errno == ERANGE || v > INT_MAX / 1000) {
        fail_parse(err, errlen, "connect_timeout %s is out of range (at most %d seconds)", s,
                   INT_MAX / 1000);
        return -1;
    }
    if (v <= 0)
        return 0;
    return v < 2 ? 2000 : (int)v * 1000;
}

void
pgev_plan_free(pgev_plan *plan)
{
    if (!plan)
        return;
    for (int i = 0; i < plan->nhosts; i++) {
        plan_host *h = &plan->hosts[i];
        free(h->name);
        free(h->hostaddr);
        free(h->port);
        for (int a = 0; a < h->naddrs; a++)
            free(h->addrs[a]);
        free(h->addrs);
    }
    free(plan->hosts);
    free(plan->target_session_attrs);
    free(plan->keywords);
    free(plan->values);
    free(plan->dbname_only);
    if (plan->parsed)
        PQconninfoFree(plan->parsed);
    free(plan);
}

pgev_plan *
pgev_plan_new(const char *conninfo, char *err, size_t errlen)
{
    pgev_plan *plan = calloc(1, sizeof(*plan));
    char **hosts = NULL, **addrs = NULL, **ports = NULL;
    if (!plan) {
        fail_parse(err, errlen, "out of memory");
        return NULL;
    }
    plan->only_timeouts = true;
    plan->rng = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)plan << 16) ^ 0x9e3779b97f4a7c15ull;

    int nopts = 0;
    if (is_conninfo_string(conninfo)) {
        char *perr = NULL;
        plan->parsed = PQconninfoParse(conninfo, &perr);
        if (!plan->parsed) {
            fail_parse(err, errlen, "%s", perr ? perr : "out of memory");
            PQfreemem(perr);
            goto fail;
        }
        for (PQconninfoOption *o = plan->parsed; o->keyword; o++)
            nopts++;
    } else {
        /* Just a database name; the (empty) parse still lists the
         * keywords this libpq knows. */
        plan->dbname_only = strdup(conninfo);
        plan->parsed = PQconninfoParse("", NULL);
        if (!plan->dbname_only || !plan->parsed) {
            fail_parse(err, errlen, "out of memory");
            goto fail;
        }
        nopts = 1;
    }
    /* Room for every option, the per-attempt ones, and NULL. */
    plan->keywords = calloc((size_t)nopts + 8, sizeof(char *));
    plan->values = calloc((size_t)nopts + 8, sizeof(char *));
    if (!plan->keywords || !plan->values) {
        fail_parse(err, errlen, "out of memory");
        goto fail;
    }
    if (plan->dbname_only) {
        plan->keywords[0] = "dbname";
        plan->values[0] = plan->dbname_only;
        plan->nbase = 1;
    } else {
        for (PQconninfoOption *o = plan->parsed; o->keyword; o++) {
            if (o->val && !is_keyword(o->keyword, plan_keywords)) {
                plan->keywords[plan->nbase] = o->keyword;
                plan->values[plan->nbase] = o->val;
                plan->nbase++;
            }
        }
    }

    /* The options pgev handles itself, from the conninfo or, as libpq
     * does, the environment. (A host named only in a service file is left
     * to libpq: see the README.) */
    const char *host = option_value(plan->parsed, "host", "PGHOST");
    const char *hostaddr = option_value(plan->parsed, "hostaddr", "PGHOSTADDR");
    const char *port = option_value(plan->parsed, "port", "PGPORT");
    const char *tsa = option_value(plan->parsed, "target_session_attrs", "PGTARGETSESSIONATTRS");
    const char *lb = option_value(plan->parsed, "load_balance_hosts", "PGLOADBALANCEHOSTS");
    const char *timeout = option_value(plan->parsed, "connect_timeout", "PGCONNECT_TIMEOUT");

    plan->connect_timeout_ms = parse_connect_timeout(timeout, err, errlen);
    if (plan->connect_timeout_ms < 0)
        goto fail;
    if (tsa && tsa[0]) {
        if (strcmp(tsa, "prefer-standby") == 0)
            plan->prefer_standby = true;
        plan->target_session_attrs = strdup(tsa);
        if (!plan->target_session_attrs) {
            fail_parse(err, errlen, "out of memory");
            goto fail;
        }
    }
    plan->load_balance = lb && strcmp(lb, "random") == 0;

    int nhost = 0, naddr = 0, nport = 0;
    if ((host && host[0] && !(hosts = split_list(host, &nhost))) ||
        (hostaddr && hostaddr[0] && !(addrs = split_list(hostaddr, &naddr))) ||
        (port && port[0] && !(ports = split_list(port, &nport)))) {
        fail_parse(err, errlen, "out of memory");
        goto fail;
    }
    if (hosts && addrs && nhost != naddr) {
        fail_parse(err, errlen, "could not match %d host names to %d hostaddr values", nhost, naddr);
        goto fail;
    }
    int count = hosts ? nhost : addrs ? naddr : 1;
    if (ports && nport != 1 && nport != count) {
        fail_parse(err, errlen, "could not match %d port numbers to %d hosts", nport, count);
        goto fail;
    }
    plan->hosts = calloc((size_t)count, sizeof(*plan->hosts));
    if (!plan->hosts) {
        fail_parse(err, errlen, "out of memory");
        goto fail;
    }
    plan->nhosts = count;
    for (int i = 0; i < plan->nhosts; i++) {
        plan_host *h = &plan->hosts[i];
        const char *name = hosts ? hosts[i] : NULL;
        const char *addr = addrs ? addrs[i] : NULL;
        const char *p = ports ? ports[nport == 1 ? 0 : i] : NULL;
        h->name = name && name[0] ? strdup(name) : NULL;
        h->port = p && p[0] ? strdup(p) : NULL;
        if (addr && addr[0]) {
            h->kind = HOST_ADDRESS;
            h->hostaddr = strdup(addr);
        } else if (!h->name) {
            h->kind = HOST_DEFAULT;
        } else if (h->name[0] == '/' || h->name[0] == '@') {
            h->kind = HOST_SOCKET;
        } else if (is_ip_literal(h->name)) {
            h->kind = HOST_ADDRESS;
            h->hostaddr = strdup(h->name);
        } else {
            h->kind = HOST_NAME;
        }
        if ((name && name[0] && !h->name) || (p && p[0] && !h->port) ||
            (h->kind == HOST_ADDRESS && !h->hostaddr)) {
            fail_parse(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (plan->load_balance)
        shuffle(plan, plan->hosts, plan->nhosts, sizeof(plan_host));
    free_list(hosts);
    free_list(addrs);
    free_list(ports);
    return plan;

fail:
    free_list(hosts);
    free_list(addrs);
    free_list(ports);
    pgev_plan_free(plan);
    return NULL;
}

int
pgev_plan_connect_timeout_ms(const pgev_plan *plan)
{
    return plan->connect_timeout_ms;
}

pgev_plan_step
pgev_plan_next(pgev_plan *plan)
{
    for (;;) {
        if (plan->host >= plan->nhosts) {
            if (plan->pass == 0 && plan->prefer_standby) {
                plan->pass = 1;
                plan->host = plan->addr = 0;
                continue;
            }
            return PGEV_PLAN_DONE;
        }
        plan_host *h = &plan->hosts[plan->host];
        int count = 1;
        if (h->kind == HOST_NAME) {
            if (h->resolved == NAME_UNRESOLVED)
                return PGEV_PLAN_RESOLVE;
            count = h->resolved == NAME_RESOLVED ? h->naddrs : 0;
        }
        if (plan->addr < count)
            return PGEV_PLAN_ATTEMPT;
        plan->host++;
        plan->addr = 0;
    }
}

const char *
pgev_plan_host(const pgev_plan *plan)
{
    if (plan->host >= plan->nhosts)
        return "";
    const plan_host *h = &plan->hosts[plan->host];
    return h->name ? h->name : h->hostaddr ? h->hostaddr : "(default)";
}

const char *
pgev_plan_address(const pgev_plan *plan)
{
    if (plan->host >= plan->nhosts)
        return NULL;
    const plan_host *h = &plan->hosts[plan->host];
    if (h->kind == HOST_NAME)
        return h->resolved == NAME_RESOLVED && plan->addr < h->naddrs ? h->addrs[plan->addr] : NULL;
    return h->hostaddr;
}

const char *
pgev_plan_port(const pgev_plan *plan)
{
    if (plan->host >= plan->nhosts)
        return NULL;
    return plan->hosts[plan->host].port;
}

PGconn *
pgev_plan_start(pgev_plan *plan)
{
    const plan_host *h = &plan->hosts[plan->host];
    int n = plan->nbase;
    if (h->name) {
        plan->keywords[n] = "host";
        plan->values[n++] = h->name;
    }
    const char *addr = pgev_plan_address(plan);
    if (addr) {
        plan->keywords[n] = "hostaddr";
        plan->values[n++] = addr;
    }
    if (h->port) {
        plan->keywords[n] = "port";
        plan->values[n++] = h->port;
    }
    if (plan->target_session_attrs) {
        plan->keywords[n] = "target_session_attrs";
        plan->values[n++] = plan->prefer_standby ? (plan->pass == 0 ? "standby" : "any")
                                                 : plan->target_session_attrs;
    }
    plan->keywords[n] = NULL;
    plan->values[n] = NULL;
    /* The options are already parsed: no dbname expansion. */
    return PQconnectStartParams(plan->keywords, plan->values, 0);
}

void
pgev_plan_advance(pgev_plan *plan)
{
    plan->addr++;
}

int
pgev_plan_resolved(pgev_plan *plan, const char *const *addrs, int naddrs)
{
    plan_host *h = &plan->hosts[plan->host];
    h->addrs = calloc((size_t)naddrs + 1, sizeof(char *));
    if (!h->addrs)
        return -1;
    for (int i = 0; i < naddrs; i++) {
        h->addrs[i] = strdup(addrs[i]);
        if (!h->addrs[i])
            return -1;
        h->naddrs++;
    }
    if (plan->load_balance)
        shuffle(plan, h->addrs, h->naddrs, sizeof(char *));
    h->resolved = NAME_RESOLVED;
    return 0;
}

void
pgev_plan_resolve_failed(pgev_plan *plan)
{
    plan->hosts[plan->host].resolved = NAME_FAILED;
}

void
pgev_plan_note_failure(pgev_plan *plan, bool timeout, const char *fmt, ...)
{
    char raw[PGEV_ERRMSG_MAX], masked[PGEV_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    pgev_mask_secrets(masked, sizeof(masked), raw);
    size_t len = strlen(masked);
    while (len > 0 && (masked[len - 1] == '\n' || masked[len - 1] == ' '))
        masked[--len] = '\0';
    plan->only_timeouts = plan->only_timeouts && timeout;
    plan->failures++;
    /* The same failure again (every attempt of a bad option, the second
     * pass of prefer-standby) says nothing new. */
    if (strcmp(masked, plan->last_error) == 0)
        return;
    memcpy(plan->last_error, masked, len + 1);
    size_t room = sizeof(plan->errors) - plan->errors_len;
    int n = snprintf(plan->errors + plan->errors_len, room, "%s%s",
                     plan->errors_len ? "\n" : "", masked);
    if (n > 0)
        plan->errors_len += (size_t)n < room ? (size_t)n : room - 1;
}

const char *
pgev_plan_errors(const pgev_plan *plan)
{
    return plan->errors_len ? plan->errors : "no host to connect to";
}

bool
pgev_plan_only_timeouts(const pgev_plan *plan)
{
    return plan->failures > 0 && plan->only_timeouts;
}

/* ---- the resolver: evdns ------------------------------------------------- */

/*
 * One request libevent holds. It may outlive its owner: evdns calls back
 * once for every request, also a cancelled one (with EVUTIL_EAI_CANCEL,
 * later, from the loop), so a cancelled request stays allocated until
 * then, and an own evdns_base whose owner is gone is freed once its last
 * request has called back.
 */
typedef struct resolve_req {
    pgev_resolver *resolver;
    struct evdns_getaddrinfo_request *handle; /* NULL once answered, or if answered at once */
    pgev_resolve_fn fn;     /* NULL once cancelled */
    void *arg;
    bool starting;          /* inside evdns_getaddrinfo() */
} resolve_req;

struct pgev_resolver {
    struct event_base *base;
    struct evdns_base *dns;
    bool own_dns;           /* made here (from resolv.conf); freed here */
    int outstanding;        /* requests evdns has not answered yet */
    bool orphaned;          /* pgev_resolver_free() ran: free when outstanding is 0 */
    resolve_req *current;
};

pgev_resolver *
pgev_resolver_new(struct event_base *base, struct evdns_base *shared)
{
    pgev_resolver *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->base = base;
    r->dns = shared;
    return r;
}

static void
resolver_destroy(pgev_resolver *r)
{
    if (r->own_dns && r->dns)
        evdns_base_free(r->dns, 0);
    free(r);
}

/* getaddrinfo's codes in words a reader of a connection error knows
 * (libevent's own table says "nodename nor servname provided, or not
 * known" for a name that does not exist). */
static const char *
resolve_error(int code)
{
    switch (code) {
    case EVUTIL_EAI_NONAME: return "no such host (the name does not exist)";
    case EVUTIL_EAI_NODATA: return "no address for the name";
    case EVUTIL_EAI_AGAIN: return "temporary failure in name resolution (no name server answered)";
    case EVUTIL_EAI_FAIL: return "the name server failed";
    case EVUTIL_EAI_MEMORY: return "out of memory";
    default: return evutil_gai_strerror(code);
    }
}

static void
on_addrinfo(int result, struct evutil_addrinfo *res, void *arg)
{
    resolve_req *req = arg;
    pgev_resolver *r = req->resolver;
    if (!req->starting)
        r->outstanding--;
    if (r->current == req)
        r->current = NULL;
    if (req->fn) {
        /* Numeric strings, without duplicates (one per socket type). */
        enum { MAX_ADDRS = 32 };
        char text[MAX_ADDRS][INET6_ADDRSTRLEN];
        const char *addrs[MAX_ADDRS];
        int n = 0;
        for (struct evutil_addrinfo *ai = res; result == 0 && ai && n < MAX_ADDRS; ai = ai->ai_next) {
            const void *a;
            if (ai->ai_family == AF_INET)
                a = &((struct sockaddr_in *)ai->ai_addr)->sin_addr;
            else if (ai->ai_family == AF_INET6)
                a = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            else
                continue;
            if (!evutil_inet_ntop(ai->ai_family, a, text[n], sizeof(text[n])))
                continue;
            bool dup = false;
            for (int i = 0; i < n && !dup; i++)
                dup = strcmp(addrs[i], text[n]) == 0;
            if (!dup) {
                addrs[n] = text[n];
                n++;
            }
        }
        const char *why = result == 0 && n == 0 ? "no address for the name"
                        : result == 0          ? NULL
                                               : resolve_error(result);
        req->fn(req->arg, why, addrs, n);
    }
    if (res)
        evutil_freeaddrinfo(res);
    if (req->starting) {
        /* Answered inside evdns_getaddrinfo() (/etc/hosts, a bad name):
         * pgev_resolver_start() sees handle NULL and frees req. */
        req->fn = NULL;
        return;
    }
    free(req);
    if (r->orphaned && r->outstanding == 0)
        resolver_destroy(r);
}

int
pgev_resolver_start(pgev_resolver *r, const char *name, pgev_resolve_fn fn, void *arg,
                    char *err, size_t errlen)
{
    if (r->current) {
        snprintf(err, errlen, "a name is already being resolved");
        return -1;
    }
    if (!r->dns) {
        /* resolv.conf and /etc/hosts are read now (local files, once per
         * connection that needs a name resolved); the base's socket is
         * only watched while a request is out. */
        r->dns = evdns_base_new(r->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!r->dns) {
            snprintf(err, errlen, "could not set up the resolver (evdns, /etc/resolv.conf)");
            return -1;
        }
        r->own_dns = true;
    }
    resolve_req *req = calloc(1, sizeof(*req));
    if (!req) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    req->resolver = r;
    req->fn = fn;
    req->arg = arg;
    req->starting = true;
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    req->handle = evdns_getaddrinfo(r->dns, name, NULL, &hints, on_addrinfo, req);
    req->starting = false;
    if (!req->handle) {
        /* Already answered (fn ran) */
        free(req);
        return 0;
    }
    r->outstanding++;
    r->current = req;
    return 0;
}

void
pgev_resolver_cancel(pgev_resolver *r)
{
    resolve_req *req = r->current;
    if (!req)
        return;
    r->current = NULL;
    req->fn = NULL;
    /* evdns answers it with EVUTIL_EAI_CANCEL from the loop; req is freed then. */
    evdns_getaddrinfo_cancel(req->handle);
}

void
pgev_resolver_free(pgev_resolver *r)
{
    if (!r)
        return;
    pgev_resolver_cancel(r);
    if (r->outstanding > 0) {
        r->orphaned = true;
        return;
    }
    resolver_destroy(r);
}
