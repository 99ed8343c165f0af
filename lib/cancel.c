/*
 * Server-side cancellation without blocking the loop.
 *
 * libpq's PQcancel() opens a new connection to the server and waits for
 * it: it blocks, and on libpq < 17 without any timeout. pgev runs it on a
 * helper thread and hears the outcome back through a socketpair watched by
 * the loop. The job is shared by the loop and the thread with a reference
 * count, so either side may finish first: a connection freed (or giving up
 * on the request) while the thread still waits just drops its reference,
 * and the thread frees the job when PQcancel() returns. The job holds
 * nothing of the connection, so a thread that outlives it touches no freed
 * memory.
 *
 * Bounds: one request per connection at a time; each has a deadline
 * (cancel_grace_ms) after which the connection stops waiting for it and is
 * closed (its queries complete with PGEV_ETIMEOUT); and at most
 * PGEV_CANCEL_THREADS_MAX helper threads run in the whole process (a
 * request beyond that fails at once, as a refused request would). That
 * counter is the one piece of process-wide state in pgev: an atomic
 * count, read with pgev_cancel_threads().
 *
 * libpq 17 and later: no thread. The request is a PGcancelConn driven by
 * PQcancelPoll() from the loop (its socket watched for what it asks), with
 * the same one-at-a-time rule and deadline. The thread remains only for
 * the fire-and-forget cancel of pgev_conn_free(), which has no loop to
 * drive it any more.
 */
#include "pgev-internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Helper threads alive in the process: bounded by PGEV_CANCEL_THREADS_MAX. */
static atomic_int live_threads;

struct pgev_cancel_job {
    pgev_cancel_job *next;  /* the connection's job in progress (one at most) */
#ifdef HAVE_PQCANCELSTART
    PGcancelConn *cc;       /* libpq 17+: driven from the loop, no thread */
#endif
    atomic_int refs;        /* the loop's and the thread's */
    atomic_int ok;          /* PQcancel's return, set before the thread signals */
    PGcancel *cancel;
    int loop_fd;            /* watched by the loop; closed by the loop (-1: none) */
    int thread_fd;          /* written by the thread; closed with the job (-1: none) */
    pgev_watch *watch;
    pgev_timer *deadline;   /* the connection stops waiting for it then */
    char errbuf[256];
};

int
pgev_cancel_threads(void)
{
    return atomic_load(&live_threads);
}

static void
job_release(pgev_cancel_job *job)
{
    if (atomic_fetch_sub(&job->refs, 1) != 1)
        return;
    if (job->cancel)
        PQfreeCancel(job->cancel);
    if (job->thread_fd >= 0)
        close(job->thread_fd);
    free(job);
}

static void *
job_thread(void *arg)
{
    pgev_cancel_job *job = arg;
    int ok = PQcancel(job->cancel, job->errbuf, (int)sizeof(job->errbuf));
    atomic_store(&job->ok, ok);
    /* The loop may be gone (connection freed, or it gave up waiting):
     * then this fails with EPIPE, which MSG_NOSIGNAL keeps from raising
     * SIGPIPE. */
    if (job->thread_fd >= 0)
        (void)send(job->thread_fd, "c", 1, MSG_NOSIGNAL);
    job_release(job);
    atomic_fetch_sub(&live_threads, 1);
    return NULL;
}

/* Starts the job's thread, within the process-wide bound. */
static bool
start_thread(pgev_cancel_job *job)
{
    if (atomic_fetch_add(&live_threads, 1) >= PGEV_CANCEL_THREADS_MAX) {
        atomic_fetch_sub(&live_threads, 1);
        return false;
    }
    pthread_attr_t attr;
    pthread_t thread;
    bool started = false;
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&thread, &attr, job_thread, job) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started)
        atomic_fetch_sub(&live_threads, 1);
    return started;
}

/* Unlinks the job from the connection and drops the loop's reference. */
static void
job_detach(pgev_conn *conn, pgev_cancel_job *job)
{
    if (conn->cancel_jobs == job)
        conn->cancel_jobs = NULL;
    pgev_watch_free(job->watch);
    job->watch = NULL;
    pgev_timer_free(job->deadline);
    job->deadline = NULL;
#ifdef HAVE_PQCANCELSTART
    if (job->cc) {
        PQcancelFinish(job->cc);
        job->cc = NULL;
    }
#endif
    if (job->loop_fd >= 0)
        close(job->loop_fd);
    job->loop_fd = -1;
    job_release(job);
}

#ifndef HAVE_PQCANCELSTART
static void
on_job_done(pgev_conn *conn, void *arg)
{
    pgev_cancel_job *job = arg;
    char byte;
    (void)recv(job->loop_fd, &byte, 1, 0);
    /* A failed cancel request leaves the query running; the grace timer
     * then closes the connection. Keep the reason for pgev_conn_errmsg(). */
    if (!atomic_load(&job->ok))
        pgev_conn_refuse(conn, "cancel request failed: %s", job->errbuf);
    job_detach(conn, job);
    /* Queries held back while this request was on its way (can_send). */
    if (conn->pending.head)
        pgev_loop_defer(conn->loop);
}
#endif

/* The request did not complete in time (the server, or the path to it,
 * does not answer): the connection cannot know when the signal lands, so
 * it stops here. The thread finishes on its own and frees the job. */
static void
on_job_deadline(pgev_conn *conn, void *arg)
{
    pgev_cancel_job *job = arg;
    pgev_conn_enter_dispatch(conn);
    job_detach(conn, job);
    pgev_error err;
    pgev_error_set(&err, PGEV_ETIMEOUT, "cancel request did not complete within %d ms; connection closed",
                   conn->cancel_grace_ms);
    pgev_conn_fail(conn, PGEV_ETIMEOUT, &err);
    pgev_conn_leave_dispatch(conn);
}

#ifdef HAVE_PQCANCELSTART

static void on_cancel_io(pgev_conn *conn, void *arg);

/* One step of the cancel connection; the socket may change between
 * steps, so it is watched anew each time. */
static void
cancel_step(pgev_conn *conn, pgev_cancel_job *job)
{
    PostgresPollingStatusType st = PQcancelPoll(job->cc);
    pgev_watch_free(job->watch);
    job->watch = NULL;
    if (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
        int fd = PQcancelSocket(job->cc);
        job->watch = fd < 0 ? NULL : pgev_watch_new_for(conn->loop, fd, st == PGRES_POLLING_WRITING, on_cancel_io, job);
        if (job->watch)
            return;
        pgev_conn_refuse(conn, "cancel request failed: could not watch its socket");
    } else if (st != PGRES_POLLING_OK) {
        pgev_conn_refuse(conn, "cancel request failed: %s", PQcancelErrorMessage(job->cc));
    }
    /* Done (the server closed the cancel connection: the signals are
     * out), or failed: either way nothing more is on its way. */
    job_detach(conn, job);
    if (conn->pending.head)
        pgev_loop_defer(conn->loop);
}

static void
on_cancel_io(pgev_conn *conn, void *arg)
{
    pgev_conn_enter_dispatch(conn);
    cancel_step(conn, arg);
    pgev_conn_pump(conn);
    pgev_conn_leave_dispatch(conn);
}

int
pgev_cancel_request(pgev_conn *conn)
{
    if (conn->cancel_jobs)
        return 1;   /* one at a time: the one on its way will do */
    pgev_cancel_job *job = calloc(1, sizeof(*job));
    if (!job)
        return -1;
    job->loop_fd = job->thread_fd = -1;
    atomic_init(&job->refs, 1);     /* the loop's only */
    atomic_init(&job->ok, 0);
    job->cc = conn->pg ? PQcancelCreate(conn->pg) : NULL;
    job->deadline = pgev_timer_new(conn->loop, on_job_deadline, job);
    if (!job->cc || PQcancelStatus(job->cc) == CONNECTION_BAD || !job->deadline ||
        pgev_timer_start(job->deadline, conn->cancel_grace_ms) != 0 || !PQcancelStart(job->cc)) {
        pgev_conn_refuse(conn, "cancel request could not start: %s",
                         job->cc ? PQcancelErrorMessage(job->cc) : "out of memory");
        if (job->cc)
            PQcancelFinish(job->cc);
        pgev_timer_free(job->deadline);
        free(job);
        return -1;
    }
    conn->cancel_jobs = job;
    for (pgev_node *n = conn->inflight.head; n; n = n->next)
        n->cancel_exposed = true;
    /* As with a connection: behave as if the first poll asked to write. */
    int fd = PQcancelSocket(job->cc);
    job->watch = fd < 0 ? NULL : pgev_watch_new_for(conn->loop, fd, true, on_cancel_io, job);
    if (!job->watch)
        cancel_step(conn, job);
    return 0;
}

#else /* libpq < 17: PQcancel on a helper thread */

int
pgev_cancel_request(pgev_conn *conn)
{
    if (conn->cancel_jobs)
        return 1;   /* one at a time: the one on its way will do */
    pgev_cancel_job *job = calloc(1, sizeof(*job));
    if (!job)
        return -1;
    int sv[2];
    job->loop_fd = job->thread_fd = -1;
    job->cancel = conn->pg ? PQgetCancel(conn->pg) : NULL;
    if (!job->cancel || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        if (job->cancel)
            PQfreeCancel(job->cancel);
        free(job);
        return -1;
    }
    job->loop_fd = sv[0];
    job->thread_fd = sv[1];
    atomic_init(&job->refs, 2);
    atomic_init(&job->ok, 0);
    job->watch = pgev_watch_new(conn->loop, job->loop_fd, on_job_done, job);
    job->deadline = pgev_timer_new(conn->loop, on_job_deadline, job);
    if (!job->watch || !job->deadline || pgev_timer_start(job->deadline, conn->cancel_grace_ms) != 0 ||
        !start_thread(job)) {
        pgev_watch_free(job->watch);
        pgev_timer_free(job->deadline);
        close(job->loop_fd);
        atomic_store(&job->refs, 1);
        job_release(job);
        pgev_conn_refuse(conn, "cancel request could not start (out of memory, or %d cancel threads running)",
                         PGEV_CANCEL_THREADS_MAX);
        return -1;
    }
    conn->cancel_jobs = job;
    /* Nothing new is sent until the request completes (can_send): what is
     * in flight now is all the request can hit besides its target. */
    for (pgev_node *n = conn->inflight.head; n; n = n->next)
        n->cancel_exposed = true;
    return 0;
}

#endif

void
pgev_cancel_fire_and_forget(PGconn *pg)
{
    pgev_cancel_job *job = calloc(1, sizeof(*job));
    if (!job)
        return;
    job->loop_fd = job->thread_fd = -1;
    job->cancel = PQgetCancel(pg);
    atomic_init(&job->refs, 1);     /* the thread's only */
    atomic_init(&job->ok, 0);
    if (!job->cancel || !start_thread(job)) {
        if (job->cancel)
            PQfreeCancel(job->cancel);
        free(job);
    }
}

void
pgev_cancel_jobs_free(pgev_conn *conn)
{
    if (conn->cancel_jobs)
        job_detach(conn, conn->cancel_jobs);
}
