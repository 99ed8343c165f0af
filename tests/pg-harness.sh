#!/usr/bin/env bash
# pg-harness.sh: run one test program against a PostgreSQL server.
#
#   pg-harness.sh ./tests/check_foo [ARG...]
#
# automake runs every test through it (LOG_COMPILER). When PGEV_TEST_DSN is set, the test just
# runs against that server (an external one: the tests derive PGEV_TEST_DSN_TCP and
# PGEV_TEST_PORT from a 127.0.0.1/localhost DSN, and skip, saying why, what needs the harness's
# own cluster). Otherwise the test runs under `tools/pgev-testdb run` (the helper that
# `make install` installs for users' own tests, so every `make check` tests it): a throwaway
# cluster in a fresh directory under /tmp, stopped and removed afterwards whatever the test did
# (also on INT, TERM and HUP), with these variables exported (see tools/pgev-testdb):
#
#   PGEV_TEST_DSN           unix-socket DSN of the cluster; user=postgres is a superuser
#   PGEV_TEST_DSN_TCP       the same server over 127.0.0.1 (for tests that need TCP)
#   PGEV_TEST_PORT          its TCP port
#   PGEV_TEST_CLUSTER_DIR   the cluster directory
#   PGEV_TEST_PGBIN         the server binaries (pg_ctl, pg_basebackup, postgres, ...)
#   PGEV_TEST_PGCLUSTER     path of pgev-testdb, for server-stop/server-start/server-restart,
#                           replica and runas DIR CMD (e.g. pgbouncer, which refuses root)
#   PGEV_TEST_REPLICA_METHOD  how "pgev-testdb replica" makes standbys here (pg_basebackup, or
#                           a low-level backup through psql when the only pg_basebackup is older
#                           than the server, as with the libpq 18 rig), or empty when it cannot;
#                           PGEV_TEST_NO_REPLICA then says why
#
# The test's exit status is returned (77 = skipped, 99 = hard error for automake). If the
# cluster cannot be started the harness exits 99: a test needing a server never passes
# without one.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ $# -lt 1 ]]; then
    echo "usage: pg-harness.sh TEST-PROGRAM [ARG...]" >&2
    exit 99
fi

if [[ -n "${PGEV_TEST_DSN:-}" ]]; then
    echo "pg-harness.sh: using the server of PGEV_TEST_DSN (no throwaway cluster)" >&2
    exec "$@"
fi

exec bash "$here/../tools/pgev-testdb" run -- "$@"
