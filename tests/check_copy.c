/*
 * COPY FROM STDIN / TO STDOUT: data both ways with flow control, order
 * with the pipelined queries around it, and every way a COPY can end
 * early (bad data, the application's abort, wrong direction, timeout,
 * cancel, lost connection, free from a callback). Needs PGEV_TEST_DSN.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One COPY's state; `q` first, so tu_done_cb can take the job as its arg. */
typedef struct copyjob {
    tu_query q;
    pgev_conn *conn;
    int rows;              /* FROM STDIN: rows to send */
    int next;              /* next row to send */
    int row_bytes;         /* pad each row to about this size */
    int ready_calls;
    int blocked;           /* writes refused with 1 */
    int data_calls;        /* TO STDOUT chunks */
    int data_after_done;
    size_t data_bytes;
    char first[64];
    int cancel_after;      /* TO STDOUT: pgev_conn_cancel() after this many chunks */
    const char *end_msg;   /* FROM STDIN: pgev_copy_end() message */
    bool never_end;        /* FROM STDIN: write nothing, never end */
    bool free_in_ready;    /* pgev_conn_free() from on_ready */
    int write_after_end;   /* pgev_copy_write() after pgev_copy_end() */
    int end_again;         /* a second pgev_copy_end() */
    const char *bad_row;   /* sent as row `bad_at` */
    int bad_at;
} copyjob;

static void on_ready(pgev_conn *conn, pgev_copy *copy, void *arg)
{
    copyjob *job = arg;
    TU_CHECK(job->q.done_calls == 0, "on_ready after on_done");
    job->ready_calls++;
    if (job->free_in_ready) {
        pgev_conn_free(conn);
        return;
    }
    if (job->never_end)
        return;
    char row[512];
    while (job->next < job->rows) {
        int n;
        if (job->bad_row && job->next == job->bad_at)
            n = snprintf(row, sizeof row, "%s\n", job->bad_row);
        else
            n = snprintf(row, sizeof row, "%d\t%0*d\n", job->next + 1,
                         job->row_bytes > 16 ? job->row_bytes - 16 : 1, job->next);
        int rc = pgev_copy_write(copy, row, (size_t)n);
        if (rc == 1) {
            job->blocked++;
            return;          /* on_ready again once libpq's buffer drained */
        }
        TU_CHECK(rc == PGEV_OK, "pgev_copy_write: %s", pgev_strerror(rc));
        job->next++;
    }
    int rc = pgev_copy_end(copy, job->end_msg);
    if (rc == 1)
        return;
    TU_CHECK(rc == PGEV_OK, "pgev_copy_end: %s", pgev_strerror(rc));
    job->write_after_end = pgev_copy_write(copy, "x\n", 2);
    job->end_again = pgev_copy_end(copy, NULL);
}

static void on_data(pgev_conn *conn, pgev_copy *copy, const char *data, size_t len, void *arg)
{
    (void)copy;
    copyjob *job = arg;
    if (job->q.done_calls > 0) {
        job->data_after_done++;
        return;
    }
    if (job->data_calls == 0)
        snprintf(job->first, sizeof job->first, "%.*s", (int)(len < 63 ? len : 63), data);
    TU_CHECK(data[len] == '\0', "chunk not NUL-terminated");
    job->data_calls++;
    job->data_bytes += len;
    if (job->cancel_after > 0 && job->data_calls == job->cancel_after)
        TU_CHECK(pgev_conn_cancel(conn, job->q.id) == PGEV_OK, "cancel of a running COPY refused");
}

static int64_t copy_in(pgev_conn *conn, const char *sql, copyjob *job)
{
    job->conn = conn;
    tu_in_call++;
    job->q.id = pgev_conn_copy_in(conn, sql, on_ready, tu_done_cb, job);
    tu_in_call--;
    ck_assert_msg(job->q.id > 0, "copy_in: %s (%s)", pgev_strerror((int)job->q.id), pgev_conn_errmsg(conn));
    return job->q.id;
}

static int64_t copy_out(pgev_conn *conn, const char *sql, copyjob *job)
{
    job->conn = conn;
    tu_in_call++;
    job->q.id = pgev_conn_copy_out(conn, sql, on_data, tu_done_cb, job);
    tu_in_call--;
    ck_assert_msg(job->q.id > 0, "copy_out: %s (%s)", pgev_strerror((int)job->q.id), pgev_conn_errmsg(conn));
    return job->q.id;
}

static void make_table(const char *name)
{
    tu_exec("DROP TABLE IF EXISTS %s", name);
    tu_exec("CREATE TABLE %s (id int PRIMARY KEY, pad text)", name);
}

static long table_count(const char *name)
{
    char *v = tu_exec_value("SELECT count(*) FROM %s", name);
    long n = v ? atol(v) : -1;
    free(v);
    return n;
}

/* The connection still runs queries normally. */
static void assert_usable(pgev_conn *conn)
{
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'still here'", &q), 0);
    tu_wait_query(&q);
    tu_assert_ok(&q);
    ck_assert_str_eq(q.value, "still here");
}

START_TEST(copy_in_rows_between_queries)
{
    make_table("copy_in_t");
    pgev_conn *conn = tu_connect(NULL);
    tu_query before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.rows = 10000;
    job.row_bytes = 40;
    /* Submitted back to back: the query before is in flight when the COPY
     * is queued, the one after waits behind it. */
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM copy_in_t", &before), 0);
    copy_in(conn, "COPY copy_in_t (id, pad) FROM STDIN", &job);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT count(*) FROM copy_in_t", &after), 0);
    ck_assert_int_eq(pgev_conn_pending(conn) >= 1, 1);
    tu_query *all[3] = { &before, &job.q, &after };
    for (int i = 0; i < 3; i++)
        tu_wait_query(all[i]);
    tu_assert_ok(&before);
    ck_assert_str_eq(before.value, "0");
    tu_assert_ok(&job.q);
    ck_assert_int_eq(job.q.rows_affected, 10000);
    ck_assert_str_eq(job.q.command, "COPY 10000");
    ck_assert_int_ge(job.ready_calls, 1);
    tu_assert_ok(&after);
    ck_assert_str_eq(after.value, "10000");
    ck_assert_int_lt(before.done_seq, job.q.done_seq);
    ck_assert_int_lt(job.q.done_seq, after.done_seq);
    ck_assert_int_eq(job.write_after_end, PGEV_ECLOSED);
    ck_assert_int_eq(job.end_again, PGEV_ECLOSED);
    ck_assert_int_eq(table_count("copy_in_t"), 10000);
    /* Pipelining goes on after the COPY. */
    tu_query qs[100];
    memset(qs, 0, sizeof qs);
    for (int i = 0; i < 100; i++)
        ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &qs[i]), 0);
    tu_wait_queries(qs, 100, TU_WAIT_MS);
    for (int i = 0; i < 100; i++)
        tu_assert_ok(&qs[i]);
    pgev_conn_free(conn);
    tu_assert_all_once(qs, 100);
    ck_assert_int_eq(job.q.done_calls, 1);
}
END_TEST

/* 30 MB through a bounded buffer: writes are refused while the socket is
 * full, on_ready says when to go on, and client memory stays flat. */
START_TEST(copy_in_flow_control)
{
    make_table("copy_flow_t");
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.rows = 150000;
    job.row_bytes = 200;
    long rss_before = tu_rss_kb();
    copy_in(conn, "COPY copy_flow_t (id, pad) FROM STDIN", &job);
    tu_wait_query(&job.q);
    long rss_after = tu_rss_kb();
    tu_assert_ok(&job.q);
    ck_assert_int_eq(job.q.rows_affected, 150000);
    ck_assert_int_gt(job.blocked, 0);                  /* flow control engaged */
    ck_assert_int_eq(job.ready_calls, job.blocked + 1); /* once per refusal, plus the start */
    if (!tu_sanitized())
        ck_assert_msg(rss_after - rss_before < 8 * 1024, "RSS grew by %ld kB", rss_after - rss_before);
    ck_assert_int_eq(table_count("copy_flow_t"), 150000);
    assert_usable(conn);
    pgev_conn_free(conn);
}
END_TEST

START_TEST(copy_out_chunks)
{
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    copy_out(conn, "COPY (SELECT g FROM generate_series(1, 5000) g) TO STDOUT", &job);
    tu_query after;
    memset(&after, 0, sizeof after);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 'after'", &after), 0);
    tu_wait_query(&after);
    tu_assert_ok(&job.q);
    ck_assert_int_eq(job.data_calls, 5000);            /* one chunk per row in text format */
    ck_assert_int_eq(job.q.rows, 5000);                /* pgev_result_rows(): on_data calls */
    ck_assert_int_eq(job.q.rows_affected, 5000);
    ck_assert_str_eq(job.first, "1\n");
    ck_assert_int_lt(job.q.done_seq, after.done_seq);
    tu_assert_ok(&after);
    ck_assert_int_eq(job.data_after_done, 0);
    pgev_conn_free(conn);
}
END_TEST

/* A bad row: the server reports it once the data ends; nothing is kept. */
START_TEST(copy_in_malformed_row)
{
    make_table("copy_bad_t");
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.rows = 1000;
    job.row_bytes = 20;
    job.bad_row = "not-a-number\tx";
    job.bad_at = 500;
    copy_in(conn, "COPY copy_bad_t (id, pad) FROM STDIN", &job);
    tu_wait_query(&job.q);
    ck_assert_int_eq(job.q.status, PGEV_ESERVER);
    ck_assert_str_eq(job.q.sqlstate, "22P02");
    ck_assert_int_eq(table_count("copy_bad_t"), 0);
    assert_usable(conn);
    pgev_conn_free(conn);
    ck_assert_int_eq(job.q.done_calls, 1);
}
END_TEST

/* pgev_copy_end() with a message aborts it: PGEV_ECANCELLED, 57014. */
START_TEST(copy_in_aborted_by_application)
{
    make_table("copy_abort_t");
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.rows = 100;
    job.row_bytes = 20;
    job.end_msg = "changed my mind";
    copy_in(conn, "COPY copy_abort_t (id, pad) FROM STDIN", &job);
    tu_wait_query(&job.q);
    ck_assert_int_eq(job.q.status, PGEV_ECANCELLED);
    ck_assert_str_eq(job.q.sqlstate, "57014");
    ck_assert_msg(strstr(job.q.message, "changed my mind") != NULL, "message: %s", job.q.message);
    ck_assert_int_eq(table_count("copy_abort_t"), 0);
    assert_usable(conn);
    pgev_conn_free(conn);
}
END_TEST

/* A COPY whose direction does not match its callback ends at once with
 * PGEV_EINVAL; the connection carries on. */
START_TEST(copy_wrong_direction)
{
    make_table("copy_dir_t");
    pgev_conn *conn = tu_connect(NULL);
    copyjob in_as_out, out_as_in;
    memset(&in_as_out, 0, sizeof in_as_out);
    memset(&out_as_in, 0, sizeof out_as_in);
    copy_out(conn, "COPY copy_dir_t FROM STDIN", &in_as_out);
    copy_in(conn, "COPY (SELECT generate_series(1, 1000000)) TO STDOUT", &out_as_in);
    tu_wait_query(&in_as_out.q);
    tu_wait_query(&out_as_in.q);
    ck_assert_int_eq(in_as_out.q.status, PGEV_EINVAL);
    ck_assert_msg(strstr(in_as_out.q.message, "on_ready") != NULL, "message: %s", in_as_out.q.message);
    ck_assert_int_eq(out_as_in.q.status, PGEV_EINVAL);
    ck_assert_msg(strstr(out_as_in.q.message, "on_data") != NULL, "message: %s", out_as_in.q.message);
    ck_assert_int_eq(in_as_out.data_calls, 0);
    ck_assert_int_eq(out_as_in.ready_calls, 0);
    assert_usable(conn);
    pgev_conn_free(conn);
    ck_assert_int_eq(in_as_out.q.done_calls, 1);
    ck_assert_int_eq(out_as_in.q.done_calls, 1);
}
END_TEST

START_TEST(copy_bad_input)
{
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    ck_assert_int_eq(pgev_conn_copy(NULL, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_copy(conn, NULL), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_copy_in(conn, NULL, on_ready, tu_done_cb, &job), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_copy_in(conn, "COPY t FROM STDIN", NULL, tu_done_cb, &job), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_copy_out(conn, "COPY t TO STDOUT", NULL, tu_done_cb, &job), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_copy_in(conn, "SELECT 1", on_ready, tu_done_cb, &job), PGEV_EINVAL);
    ck_assert_msg(strstr(pgev_conn_errmsg(conn), "COPY") != NULL, "errmsg: %s", pgev_conn_errmsg(conn));
    pgev_copy_args both = { .sql = "COPY t FROM STDIN", .on_ready = on_ready, .on_data = on_data };
    ck_assert_int_eq(pgev_conn_copy(conn, &both), PGEV_EINVAL);
    pgev_copy_args neither = { .sql = "COPY t FROM STDIN" };
    ck_assert_int_eq(pgev_conn_copy(conn, &neither), PGEV_EINVAL);
    ck_assert_int_eq(pgev_conn_batch_begin(conn), PGEV_OK);
    ck_assert_int_eq(pgev_conn_copy_in(conn, "COPY t FROM STDIN", on_ready, tu_done_cb, &job), PGEV_ESTATE);
    tu_query b;
    memset(&b, 0, sizeof b);
    ck_assert_int_eq(tu_batch_end(conn, &b), PGEV_OK);
    ck_assert_int_eq(pgev_copy_write(NULL, "x", 1), PGEV_EINVAL);
    ck_assert_int_eq(pgev_copy_end(NULL, NULL), PGEV_EINVAL);
    /* COPY text through the pipelined query path is refused, pointing here. */
    tu_query q;
    memset(&q, 0, sizeof q);
    ck_assert_int_eq(tu_query_sql(conn, "  copy t from stdin", &q), PGEV_EINVAL);
    ck_assert_msg(strstr(pgev_conn_errmsg(conn), "pgev_conn_copy_in") != NULL, "errmsg: %s",
                  pgev_conn_errmsg(conn));
    tu_wait_query(&b);
    assert_usable(conn);
    pgev_conn_free(conn);
    ck_assert_int_eq(job.q.done_calls, 0);
    ck_assert_int_eq(q.done_calls, 0);
}
END_TEST

/* A COPY FROM STDIN that never ends times out, is rolled back, and the
 * connection goes on. */
START_TEST(copy_in_timeout)
{
    make_table("copy_to_t");
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.never_end = true;
    job.conn = conn;
    pgev_copy_args args = {
        .sql = "COPY copy_to_t (id, pad) FROM STDIN", .on_ready = on_ready, .on_done = tu_done_cb,
        .arg = &job, .timeout_ms = 200,
    };
    tu_in_call++;
    job.q.id = pgev_conn_copy(conn, &args);
    tu_in_call--;
    ck_assert_int_gt(job.q.id, 0);
    tu_wait_query(&job.q);
    ck_assert_int_eq(job.q.status, PGEV_ETIMEOUT);
    ck_assert_int_eq(job.ready_calls, 1);
    assert_usable(conn);
    ck_assert_int_eq(table_count("copy_to_t"), 0);
    pgev_conn_free(conn);
    ck_assert_int_eq(job.q.done_calls, 1);
}
END_TEST

/* Cancelling a COPY TO STDOUT mid-stream: no data after on_done, and the
 * server stops sending. */
START_TEST(copy_out_cancelled_mid_stream)
{
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.cancel_after = 1000;
    copy_out(conn, "COPY (SELECT g, repeat('x', 100) FROM generate_series(1, 50000000) g) TO STDOUT", &job);
    tu_wait_query(&job.q);
    ck_assert_int_eq(job.q.status, PGEV_ECANCELLED);
    ck_assert_int_eq(job.data_calls, 1000);
    assert_usable(conn);
    ck_assert_int_eq(job.data_after_done, 0);
    pgev_conn_free(conn);
}
END_TEST

/* Cancelled when the whole (small) COPY is already in the client's
 * buffers: it ends at once, and the connection goes on. */
START_TEST(copy_out_cancelled_when_all_arrived)
{
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.cancel_after = 10;
    copy_out(conn, "COPY (SELECT generate_series(1, 200)) TO STDOUT", &job);
    tu_wait_query(&job.q);
    ck_assert_int_eq(job.q.status, PGEV_ECANCELLED);
    ck_assert_int_eq(job.data_calls, 10);
    assert_usable(conn);
    ck_assert_int_eq(pgev_conn_state(conn), PGEV_CONN_READY);
    pgev_conn_free(conn);
}
END_TEST

/* The backend is terminated while the COPY waits for data. */
START_TEST(copy_in_connection_lost)
{
    make_table("copy_lost_t");
    tu_connrec rec;
    memset(&rec, 0, sizeof rec);
    pgev_conn_options opts = { 0 };
    tu_conn_opts(&opts, &rec);
    pgev_conn *conn = tu_connect(&opts);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.never_end = true;
    copy_in(conn, "COPY copy_lost_t (id, pad) FROM STDIN", &job);
    tu_query after;
    memset(&after, 0, sizeof after);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &after), 0);
    tu_wait_count(&job.ready_calls, 1, TU_WAIT_MS, "the COPY to start");
    tu_exec("SELECT pg_terminate_backend(%d)", PQbackendPID(pgev_conn_pg(conn)));
    tu_wait_query(&job.q);
    tu_wait_query(&after);
    ck_assert_int_eq(job.q.status, PGEV_ECONNLOST);
    ck_assert_int_eq(after.status, PGEV_ECONNLOST);
    tu_wait_count(&rec.disconnect_calls, 1, TU_WAIT_MS, "on_disconnect");
    pgev_conn_free(conn);
    ck_assert_int_eq(job.q.done_calls, 1);
    ck_assert_int_eq(after.done_calls, 1);
    tu_assert_base_idle();
}
END_TEST

/* pgev_conn_free() from inside on_ready: the COPY completes once, as
 * cancelled, and so does the query queued behind it. */
START_TEST(copy_free_from_on_ready)
{
    make_table("copy_free_t");
    pgev_conn *conn = tu_connect(NULL);
    copyjob job;
    memset(&job, 0, sizeof job);
    job.free_in_ready = true;
    copy_in(conn, "COPY copy_free_t (id, pad) FROM STDIN", &job);
    tu_query after;
    memset(&after, 0, sizeof after);
    ck_assert_int_gt(tu_query_sql(conn, "SELECT 1", &after), 0);
    tu_wait_query(&job.q);
    tu_wait_query(&after);
    ck_assert_int_eq(job.q.status, PGEV_ECANCELLED);
    ck_assert_int_eq(after.status, PGEV_ECANCELLED);
    ck_assert_int_eq(job.ready_calls, 1);
    tu_run_for(50);
    ck_assert_int_eq(job.q.done_calls, 1);
    ck_assert_int_eq(after.done_calls, 1);
    tu_assert_base_idle();
}
END_TEST

static Suite *copy_suite(void)
{
    Suite *s = suite_create("copy");
    TCase *tc = tu_tcase("data", 120);
    tcase_add_test(tc, copy_in_rows_between_queries);
    tcase_add_test(tc, copy_in_flow_control);
    tcase_add_test(tc, copy_out_chunks);
    suite_add_tcase(s, tc);
    tc = tu_tcase("failures", 60);
    tcase_add_test(tc, copy_in_malformed_row);
    tcase_add_test(tc, copy_in_aborted_by_application);
    tcase_add_test(tc, copy_wrong_direction);
    tcase_add_test(tc, copy_bad_input);
    tcase_add_test(tc, copy_in_timeout);
    tcase_add_test(tc, copy_out_cancelled_mid_stream);
    tcase_add_test(tc, copy_out_cancelled_when_all_arrived);
    tcase_add_test(tc, copy_in_connection_lost);
    tcase_add_test(tc, copy_free_from_on_ready);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(copy_suite());
}
