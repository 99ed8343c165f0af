/*
 * What the pool needs from a connection beyond the public API (pgev.h):
 * the two hooks below, each implemented next to the state it reads. From
 * pgev-internal.h the pool uses only: struct pgev_result / pgev_error and
 * pgev_error_set() / pgev_error_copy() (the results it builds for work
 * that never reached a connection), pgev_conn_submit_stable() and
 * pgev_args_pack() (the hot path's one copy of a query's arguments), and
 * pgev_event_* (its timers, through loop.c). It never reads a pgev_conn's
 * fields.
 */
#ifndef PGEV_POOL_INTERNAL_H
#define PGEV_POOL_INTERNAL_H

#include "pgev.h"

/* txn.c: the connection's open transaction (pgev_conn_begin() called, no
 * commit or rollback requested yet), or NULL. A released connection's is
 * rolled back before the next borrower gets it. */
pgev_txn *pgev_conn_open_txn(const pgev_conn *conn);

/* notify.c: removes every notification callback at once, without
 * unsubscribing on the server (the pool's reset runs UNLISTEN *). Returns
 * how many there were. */
int pgev_conn_drop_listeners(pgev_conn *conn);

#endif /* PGEV_POOL_INTERNAL_H */
