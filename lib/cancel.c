/*
 * Server-side cancellation without blocking the loop.
 *
 * libpq's PQcancel() opens a new connection to the server and waits for
 * it: it blocks. pgev runs it on a short-lived helper thread and hears the
 * outcome back through a socketpair watched by the loop. The job is shared
 * by the loop and the thread with a reference count, so either side may
 * finish first: a connection freed while its cancel is still on the wire
 * just drops its reference, and the thread frees the job when it is done.
 * (libpq 17's PQcancelStart/PQcancelPoll would make the thread
 * unnecessary; the thread works with every libpq.)
 */
#include "pgev-internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct pgev_cancel_job {
    pgev_cancel_job *next;  /* the connection's list of jobs in progress */
    atomic_int refs;        /* the loop's and the thread's */
    atomic_int ok;          /* PQcancel's return, set before the thread signals */
    PGcancel *cancel;
    int loop_fd;            /* watched by the loop; closed by the loop */
    int thread_fd;          /* written by the thread; closed with the job */
    pgev_watch *watch;
    char errbuf[256];
};

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
    /* The loop may be gone (connection freed): then this fails with
     * EPIPE, which MSG_NOSIGNAL keeps from raising SIGPIPE. */
    (void)send(job->thread_fd, "c", 1, MSG_NOSIGNAL);
    job_release(job);
    return NULL;
}

/* Unlinks the job from the connection and drops the loop's reference. */
static void
job_detach(pgev_conn *conn, pgev_cancel_job *job)
{
    for (pgev_cancel_job **p = &conn->cancel_jobs; *p; p = &(*p)->next) {
        if (*p == job) {
            *p = job->next;
            break;
        }
    }
    pgev_watch_free(job->watch);
    job->watch = NULL;
    close(job->loop_fd);
    job->loop_fd = -1;
    job_release(job);
}

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
    pgev_stray_cancel_check(conn);
    /* Queries held back while this request was on its way (can_send). */
    if (conn->pending.head)
        pgev_loop_defer(conn->loop);
}

int
pgev_cancel_request(pgev_conn *conn)
{
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

    pthread_attr_t attr;
    pthread_t thread;
    bool started = false;
    if (job->watch && pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&thread, &attr, job_thread, job) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        pgev_watch_free(job->watch);
        close(job->loop_fd);
        atomic_store(&job->refs, 1);
        job_release(job);
        return -1;
    }
    job->next = conn->cancel_jobs;
    conn->cancel_jobs = job;
    return 0;
}

void
pgev_cancel_jobs_free(pgev_conn *conn)
{
    while (conn->cancel_jobs)
        job_detach(conn, conn->cancel_jobs);
}
