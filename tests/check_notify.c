/*
 * LISTEN/NOTIFY: subscriptions, delivery while idle and while busy,
 * quoting of channel names, payload limits, bursts, unsubscribe, and
 * teardown from inside a notification callback. Needs PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One subscription's record. `q` comes first: LISTEN's completion goes to
 * tu_done_cb with the same arg as the notifications. */
typedef struct nrec {
    tu_query q;
    int count;
    char channel[128];
    char payload[8192];
    int pid;
    int payload_seq_ok;     /* burst: payloads arrived as 1, 2, 3... */
    bool free_conn;         /* free the connection from the callback */
    bool unlisten;          /* unsubscribe from the callback */
    pgev_conn **conn_slot;
} nrec;

static void on_notify(pgev_conn *conn, const char *channel, const char *payload, int pid, void *arg)
{
    nrec *r = arg;
    TU_CHECK(tu_in_call == 0, "on_notify ran inside a pgev call");
    TU_CHECK(channel != NULL && payload != NULL, "NULL channel or payload");
    r->count++;
    snprintf(r->channel, sizeof r->channel, "%s", channel);
    snprintf(r->payload, sizeof r->payload, "%s", payload);
    r->pid = pid;
    if (atoi(payload) == r->payload_seq_ok + 1)
        r->payload_seq_ok++;
    if (r->unlisten) {
        r->unlisten = false;
        ck_assert_int_gt(pgev_conn_unlisten(conn, channel, NULL, NULL), 0);
    }
    if (r->free_conn) {
        pgev_conn_free(conn);
        *r->conn_slot = NULL;
    }
}

static int64_t listen_on(pgev_conn *conn, const char *channel, nrec *r)
{
    tu_in_call++;
    r->q.id = pgev_conn_listen(conn, channel, on_notify, tu_done_cb, r);
    tu_in_call--;
    return r->q.id;
}

/* LISTEN and wait until the server runs it. */
static void listen_ok(pgev_conn *conn, const char *channel, nrec *r)
{
    ck_assert_msg(listen_on(conn, channel, r) > 0, "listen: %s", pgev_conn_errmsg(conn));
    tu_wait_query(&r->q);
    tu_assert_ok(&r->q);
}

/* pg_notify($1, $2) from `sender`, waited for. */
static void notify(pgev_conn *sender, const char *channel, const char *payload)
{
    tu_query q;
    memset(&q, 0, sizeof q);
    const char *vals[2] = { channel, payload };
    ck_assert_int_gt(tu_query_params(sender, "SELECT pg_notify($1, $2)", 2, vals, &q), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
}

static int backend_pid(pgev_conn *conn)
{
    return PQbackendPID(pgev_conn_pg(conn));
}

START_TEST(delivered_while_idle_with_sender_pid)
{
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    nrec r;
    memset(&r, 0, sizeof r);
    listen_ok(a, "jobs", &r);
    ck_assert_int_eq(r.count, 0);
    notify(b, "jobs", "hello world");
    /* a has nothing in flight: only the idle read path can see this. */
    ck_assert_int_eq(pgev_conn_inflight(a), 0);
    tu_wait_count(&r.count, 1, TU_WAIT_MS, "the notification");
    ck_assert_str_eq(r.channel, "jobs");
    ck_assert_str_eq(r.payload, "hello world");
    ck_assert_int_eq(r.pid, backend_pid(b));
    ck_assert_int_ne(r.pid, backend_pid(a));
    /* An empty payload arrives as "". */
    notify(b, "jobs", "");
    tu_wait_count(&r.count, 2, TU_WAIT_MS, "the second notification");
    ck_assert_str_eq(r.payload, "");
    pgev_conn_free(a);
    pgev_conn_free(b);
    tu_assert_all_once(&r.q, 1);
}
END_TEST

/* A notification arriving among query results (the session notifies
 * itself: delivered once its statement commits, right after its result). */
START_TEST(delivered_while_busy)
{
    pgev_conn *a = tu_connect(NULL);
    nrec r;
    memset(&r, 0, sizeof r);
    listen_ok(a, "self", &r);
    tu_query q[3];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(a, "SELECT pg_notify('self', 'mine')", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(a, "SELECT pg_sleep(0.05)", &q[1]), 0);
    ck_assert_int_gt(tu_query_sql(a, "SELECT 3", &q[2]), 0);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_wait_count(&r.count, 1, TU_WAIT_MS, "the self-notification");
    ck_assert_str_eq(r.payload, "mine");
    ck_assert_int_eq(r.pid, backend_pid(a));
    for (int i = 0; i < 3; i++)
        tu_assert_ok(&q[i]);
    pgev_conn_free(a);
    tu_assert_all_once(q, 3);
}
END_TEST

START_TEST(channel_names_are_quoted)
{
    static const char *const names[] = {
        "we\"ird", "with space", "UpperCase", "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb8" "d" "\xc3\xa9 \xe2\x9c\x93",
        "a'b; DROP TABLE x; --", "x\"; NOTIFY \"y", "123starts_with_digit", "select",
    };
    enum { N = sizeof names / sizeof names[0] };
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    nrec r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++)
        listen_ok(a, names[i], &r[i]);
    /* Case matters: "uppercase" is another channel. */
    nrec lower;
    memset(&lower, 0, sizeof lower);
    listen_ok(a, "uppercase", &lower);
    for (int i = 0; i < N; i++) {
        char payload[16];
        snprintf(payload, sizeof payload, "p%d", i);
        notify(b, names[i], payload);
        tu_wait_count(&r[i].count, 1, TU_WAIT_MS, names[i]);
        ck_assert_str_eq(r[i].channel, names[i]);
        ck_assert_str_eq(r[i].payload, payload);
    }
    notify(b, "uppercase", "lower");
    tu_wait_count(&lower.count, 1, TU_WAIT_MS, "the lower-case channel");
    for (int i = 0; i < N; i++)
        ck_assert_msg(r[i].count == 1, "channel %s got %d notifications", names[i], r[i].count);
    /* Longest name the server keeps whole: 63 bytes. */
    char longest[64];
    memset(longest, 'L', 63);
    longest[63] = '\0';
    nrec lr;
    memset(&lr, 0, sizeof lr);
    listen_ok(a, longest, &lr);
    notify(b, longest, "long");
    tu_wait_count(&lr.count, 1, TU_WAIT_MS, "the 63-byte channel");
    ck_assert_str_eq(lr.channel, longest);
    pgev_conn_free(a);
    pgev_conn_free(b);
}
END_TEST

START_TEST(payload_limits)
{
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    nrec r;
    memset(&r, 0, sizeof r);
    listen_ok(a, "big", &r);
    char *payload = malloc(8001);
    ck_assert_ptr_nonnull(payload);
    for (int i = 0; i < 7999; i++)
        payload[i] = (char)('a' + i % 26);
    payload[7999] = '\0';
    notify(b, "big", payload);
    tu_wait_count(&r.count, 1, TU_WAIT_MS, "the 7999-byte notification");
    ck_assert_uint_eq(strlen(r.payload), 7999);
    ck_assert_msg(memcmp(r.payload, payload, 7999) == 0, "payload changed in transit");

    /* 8000 bytes is over the server's limit: the NOTIFY fails, clearly. */
    payload[7999] = 'z';
    payload[8000] = '\0';
    tu_query q;
    memset(&q, 0, sizeof q);
    const char *vals[2] = { "big", payload };
    ck_assert_int_gt(tu_query_params(b, "SELECT pg_notify($1, $2)", 2, vals, &q), 0);
    tu_wait_query(&q);
    ck_assert_int_eq(q.status, PGEV_ESERVER);
    ck_assert_str_eq(q.sqlstate, "22023");
    ck_assert_msg(strstr(q.message, "payload string too long") != NULL, "message: %s", q.message);
    /* Both connections carry on; nothing more arrived. */
    notify(b, "big", "after");
    tu_wait_count(&r.count, 2, TU_WAIT_MS, "the notification after the failure");
    ck_assert_str_eq(r.payload, "after");
    free(payload);
    pgev_conn_free(a);
    pgev_conn_free(b);
    tu_assert_all_once(&q, 1);
}
END_TEST

/* Notifications of one transaction are sent together at its commit: many
 * arrive in the same read, and all are delivered, in order. */
START_TEST(burst_in_one_read)
{
    enum { BURST = 2000 };
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    nrec r;
    memset(&r, 0, sizeof r);
    listen_ok(a, "burst", &r);
    tu_query q;
    memset(&q, 0, sizeof q);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(pg_notify('burst', g::text)) FROM generate_series(1, %d) g",
             BURST);
    ck_assert_int_gt(tu_query_sql(b, sql, &q), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    tu_wait_count(&r.count, BURST, TU_WAIT_MS, "the burst");
    ck_assert_int_eq(r.payload_seq_ok, BURST);
    ck_assert_int_eq(r.count, BURST);
    pgev_conn_free(a);
    pgev_conn_free(b);
}
END_TEST

START_TEST(unlisten_stops_delivery)
{
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    nrec r, sentinel;
    memset(&r, 0, sizeof r);
    memset(&sentinel, 0, sizeof sentinel);
    listen_ok(a, "ch", &r);
    listen_ok(a, "sentinel", &sentinel);
    notify(b, "ch", "1");
    tu_wait_count(&r.count, 1, TU_WAIT_MS, "the first notification");

    tu_query uq;
    memset(&uq, 0, sizeof uq);
    tu_in_call++;
    uq.id = pgev_conn_unlisten(a, "ch", tu_done_cb, &uq);
    tu_in_call--;
    ck_assert_int_gt(uq.id, 0);
    /* Sent before UNLISTEN ran, or after: either way not delivered. */
    notify(b, "ch", "2");
    tu_wait_query(&uq);
    tu_assert_ok(&uq);
    notify(b, "ch", "3");
    /* The sentinel goes after them on the same server queue. */
    notify(b, "sentinel", "s");
    tu_wait_count(&sentinel.count, 1, TU_WAIT_MS, "the sentinel");
    ck_assert_int_eq(r.count, 1);
    /* Unsubscribing again: not listening any more. */
    ck_assert_int_eq(pgev_conn_unlisten(a, "ch", NULL, NULL), PGEV_EINVAL);
    ck_assert_msg(strstr(pgev_conn_errmsg(a), "not listening") != NULL, "errmsg: %s", pgev_conn_errmsg(a));
    /* And again subscribing works. */
    memset(&r, 0, sizeof r);
    listen_ok(a, "ch", &r);
    notify(b, "ch", "4");
    tu_wait_count(&r.count, 1, TU_WAIT_MS, "a notification after listening again");
    ck_assert_str_eq(r.payload, "4");
    pgev_conn_free(a);
    pgev_conn_free(b);
    tu_assert_all_once(&uq, 1);
}
END_TEST

START_TEST(listen_again_replaces_callback)
{
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    nrec first, second;
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    listen_ok(a, "ch", &first);
    listen_ok(a, "ch", &second);
    notify(b, "ch", "x");
    tu_wait_count(&second.count, 1, TU_WAIT_MS, "the notification");
    notify(b, "ch", "y");
    tu_wait_count(&second.count, 2, TU_WAIT_MS, "the second notification");
    ck_assert_int_eq(first.count, 0);
    pgev_conn_free(a);
    pgev_conn_free(b);
}
END_TEST

/* Several listeners on one channel (pgev_conn_add_listener): each gets
 * every notification, in the order added; removing one leaves the others
 * subscribed, removing the last one unsubscribes the server. */
static int multi_order[8];
static int multi_n;

typedef struct mrec {
    nrec n;
    int id;
    struct mrec *remove_other;   /* removes this listener from its callback */
    bool add_late;               /* adds `late` from its callback */
} mrec;

static mrec late;

static void on_multi(pgev_conn *conn, const char *channel, const char *payload, int pid, void *arg)
{
    mrec *m = arg;
    on_notify(conn, channel, payload, pid, &m->n);
    if (multi_n < 8)
        multi_order[multi_n++] = m->id;
    if (m->remove_other) {
        ck_assert_int_eq(pgev_conn_remove_listener(conn, channel, on_multi, m->remove_other, NULL, NULL), 0);
        m->remove_other = NULL;
    }
    if (m->add_late) {
        m->add_late = false;
        ck_assert_int_gt(pgev_conn_add_listener(conn, channel, on_multi, NULL, &late), 0);
    }
}

START_TEST(several_listeners_per_channel)
{
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    mrec m[3];
    memset(m, 0, sizeof m);
    memset(&late, 0, sizeof late);
    late.id = 9;
    multi_n = 0;
    for (int i = 0; i < 3; i++) {
        m[i].id = i;
        tu_in_call++;
        m[i].n.q.id = pgev_conn_add_listener(a, "hub", on_multi, tu_done_cb, &m[i]);
        tu_in_call--;
        ck_assert_int_gt(m[i].n.q.id, 0);
    }
    for (int i = 0; i < 3; i++) {
        tu_wait_query(&m[i].n.q);
        tu_assert_ok(&m[i].n.q);
    }
    notify(b, "hub", "1");
    tu_wait_count(&m[2].n.count, 1, TU_WAIT_MS, "the notification to the third listener");
    ck_assert_int_eq(multi_n, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(m[i].n.count, 1);
        ck_assert_int_eq(multi_order[i], i);
    }
    /* The first removes the second from its callback, and adds a fourth:
     * the second gets nothing more, the fourth only the next one. */
    m[0].remove_other = &m[1];
    m[0].add_late = true;
    multi_n = 0;
    notify(b, "hub", "2");
    tu_wait_count(&m[2].n.count, 2, TU_WAIT_MS, "the second notification");
    ck_assert_int_eq(m[1].n.count, 1);
    ck_assert_int_eq(late.n.count, 0);
    ck_assert_int_eq(multi_n, 2);
    notify(b, "hub", "3");
    tu_wait_count(&late.n.count, 1, TU_WAIT_MS, "the late listener's first notification");
    ck_assert_int_eq(m[0].n.count, 3);
    ck_assert_int_eq(m[2].n.count, 3);
    /* Removing all but the last keeps the subscription; the last unsubscribes. */
    ck_assert_int_eq(pgev_conn_remove_listener(a, "hub", on_multi, &m[1], NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_remove_listener(a, "hub", on_multi, &m[0], NULL, NULL), 0);
    ck_assert_int_eq(pgev_conn_remove_listener(a, "hub", on_multi, &late, NULL, NULL), 0);
    tu_query uq;
    memset(&uq, 0, sizeof uq);
    uq.id = pgev_conn_remove_listener(a, "hub", on_multi, &m[2], tu_done_cb, &uq);
    ck_assert_int_gt(uq.id, 0);
    tu_wait_query(&uq);
    tu_assert_ok(&uq);
    tu_query lq;
    memset(&lq, 0, sizeof lq);
    ck_assert_int_gt(tu_query_sql(a, "SELECT count(*) FROM pg_listening_channels()", &lq), 0);
    tu_wait_query(&lq);
    ck_assert_str_eq(lq.value, "0");
    /* pgev_conn_listen() replaces every listener of the channel. */
    for (int i = 0; i < 2; i++) {
        memset(&m[i].n.q, 0, sizeof m[i].n.q);
        m[i].n.q.id = pgev_conn_add_listener(a, "hub", on_multi, tu_done_cb, &m[i]);
        ck_assert_int_gt(m[i].n.q.id, 0);
    }
    nrec only;
    memset(&only, 0, sizeof only);
    listen_ok(a, "hub", &only);
    notify(b, "hub", "4");
    tu_wait_count(&only.count, 1, TU_WAIT_MS, "the replacing listener's notification");
    ck_assert_int_eq(m[0].n.count, 3);
    ck_assert_int_eq(m[1].n.count, 1);
    pgev_conn_free(a);
    pgev_conn_free(b);
}
END_TEST

START_TEST(bad_arguments)
{
    pgev_conn *a = tu_connect(NULL);
    nrec r;
    memset(&r, 0, sizeof r);
    char toolong[65];
    memset(toolong, 'x', 64);
    toolong[64] = '\0';
    ck_assert_int_eq(pgev_conn_listen(NULL, "ch", on_notify, NULL, &r), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_listen(a, NULL, on_notify, NULL, &r), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_listen(a, "", on_notify, NULL, &r), PGEV_EINVAL);
    ck_assert_msg(strstr(pgev_conn_errmsg(a), "empty") != NULL, "errmsg: %s", pgev_conn_errmsg(a));
    ck_assert_int_eq(pgev_conn_listen(a, toolong, on_notify, NULL, &r), PGEV_EINVAL);
    ck_assert_msg(strstr(pgev_conn_errmsg(a), "64 bytes") != NULL, "errmsg: %s", pgev_conn_errmsg(a));
    ck_assert_int_eq(pgev_conn_listen(a, "ch", NULL, NULL, &r), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_unlisten(NULL, "ch", NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_unlisten(a, NULL, NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_unlisten(a, "never", NULL, NULL), PGEV_EINVAL);
    /* None of those registered anything. */
    ck_assert_int_eq(pgev_conn_unlisten(a, "ch", NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_pending(a) + pgev_conn_inflight(a), 0);
    /* A closed connection refuses. */
    ck_assert_int_eq(tu_close(a), PGEV_OK);
    ck_assert_int_eq(pgev_conn_listen(a, "ch", on_notify, NULL, &r), PGEV_ECLOSED);
    pgev_conn_free(a);
    ck_assert_int_eq(r.count, 0);
    ck_assert_int_eq(r.q.done_calls, 0);
}
END_TEST

/* LISTEN refused by the server (the session is in a failed transaction
 * block): the subscription is dropped with it. */
START_TEST(failed_listen_drops_subscription)
{
    pgev_conn *a = tu_connect(NULL);
    tu_query q[3];
    memset(q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(a, "BEGIN", &q[0]), 0);
    ck_assert_int_gt(tu_query_sql(a, "SELECT 1/0", &q[1]), 0);
    nrec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_gt(listen_on(a, "failed", &r), 0);
    tu_wait_query(&r.q);
    ck_assert_int_eq(r.q.status, PGEV_ESERVER);
    ck_assert_str_eq(r.q.sqlstate, "25P02");
    ck_assert_int_eq(pgev_conn_unlisten(a, "failed", NULL, NULL), PGEV_EINVAL);
    ck_assert_int_gt(tu_query_sql(a, "ROLLBACK", &q[2]), 0);
    tu_wait_queries(q, 3, TU_WAIT_MS);
    tu_assert_ok(&q[2]);
    pgev_conn_free(a);
    tu_assert_all_once(q, 3);
    tu_assert_all_once(&r.q, 1);
}
END_TEST

START_TEST(free_with_listeners_and_listen_in_flight)
{
    pgev_conn *a = tu_connect(NULL);
    nrec r[3];
    memset(r, 0, sizeof r);
    listen_ok(a, "one", &r[0]);
    listen_ok(a, "two", &r[1]);
    ck_assert_int_gt(listen_on(a, "three", &r[2]), 0);
    pgev_conn_free(a);
    ck_assert_int_eq(r[2].q.done_calls, 1);
    ck_assert_int_eq(r[2].q.status, PGEV_ECANCELLED);
    tu_assert_base_idle();
    for (int i = 0; i < 3; i++)
        tu_assert_all_once(&r[i].q, 1);
}
END_TEST

/* The listener frees the connection on the first of several
 * notifications that arrive together: the rest are dropped safely. */
START_TEST(callback_frees_connection)
{
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    nrec r;
    memset(&r, 0, sizeof r);
    listen_ok(a, "bye", &r);
    r.free_conn = true;
    r.conn_slot = &a;
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(b, "SELECT count(pg_notify('bye', g::text)) FROM generate_series(1, 50) g",
                                  &q), 0);
    tu_wait_count(&r.count, 1, TU_WAIT_MS, "the first notification");
    ck_assert_ptr_null(a);
    tu_wait_query(&q);
    tu_run_for(100);
    ck_assert_int_eq(r.count, 1);
    pgev_conn_free(b);
    tu_assert_base_idle();
}
END_TEST

/* The listener unsubscribes itself on the first of a burst. */
START_TEST(callback_unlistens)
{
    pgev_conn *a = tu_connect(NULL);
    pgev_conn *b = tu_connect(NULL);
    nrec r, sentinel;
    memset(&r, 0, sizeof r);
    memset(&sentinel, 0, sizeof sentinel);
    listen_ok(a, "once", &r);
    listen_ok(a, "sentinel", &sentinel);
    r.unlisten = true;
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(b, "SELECT count(pg_notify('once', g::text)) FROM generate_series(1, 20) g",
                                  &q), 0);
    tu_wait_query(&q);
    notify(b, "sentinel", "s");
    tu_wait_count(&sentinel.count, 1, TU_WAIT_MS, "the sentinel");
    ck_assert_int_eq(r.count, 1);
    ck_assert_str_eq(r.payload, "1");
    pgev_conn_free(a);
    pgev_conn_free(b);
}
END_TEST

/* The backend is killed: the listener hears nothing more, teardown is clean. */
START_TEST(connection_lost_with_listeners)
{
    tu_connrec rec;
    memset(&rec, 0, sizeof rec);
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *a = tu_connect(&opts);
    nrec r;
    memset(&r, 0, sizeof r);
    listen_ok(a, "gone", &r);
    tu_exec("SELECT pg_terminate_backend(%d)", backend_pid(a));
    tu_wait_count(&rec.disconnect_calls, 1, TU_WAIT_MS, "on_disconnect");
    ck_assert_int_eq(rec.disconnect_code, PGEV_ECONNLOST);
    ck_assert_int_eq(pgev_conn_listen(a, "gone2", on_notify, NULL, &r), PGEV_ECLOSED);
    /* The subscription is still registered (dropping it is harmless). */
    ck_assert_int_eq(pgev_conn_unlisten(a, "gone", NULL, NULL), PGEV_ECLOSED);
    pgev_conn_free(a);
    ck_assert_int_eq(r.count, 0);
    tu_assert_base_idle();
}
END_TEST

static Suite *notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tu_tcase("delivery", 60);
    tcase_add_test(tc, delivered_while_idle_with_sender_pid);
    tcase_add_test(tc, delivered_while_busy);
    tcase_add_test(tc, channel_names_are_quoted);
    tcase_add_test(tc, payload_limits);
    tcase_add_test(tc, burst_in_one_read);
    suite_add_tcase(s, tc);
    tc = tu_tcase("subscriptions", 60);
    tcase_add_test(tc, unlisten_stops_delivery);
    tcase_add_test(tc, listen_again_replaces_callback);
    tcase_add_test(tc, several_listeners_per_channel);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, failed_listen_drops_subscription);
    suite_add_tcase(s, tc);
    tc = tu_tcase("teardown", 60);
    tcase_add_test(tc, free_with_listeners_and_listen_in_flight);
    tcase_add_test(tc, callback_frees_connection);
    tcase_add_test(tc, callback_unlistens);
    tcase_add_test(tc, connection_lost_with_listeners);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(notify_suite());
}
