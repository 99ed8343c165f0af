#!/usr/bin/env bash
# pg-harness.sh: run one test program against a PostgreSQL server.
#
#   pg-harness.sh ./tests/check_foo [ARG...]
#
# automake runs every test through it (LOG_COMPILER). When PGEV_TEST_DSN is set, the test just
# runs against that server. Otherwise a throwaway cluster is started in a fresh directory under
# /tmp (tests/pgcluster.sh), the test runs with these variables exported, and the cluster is
# stopped and removed afterwards, whatever the test did (also on INT, TERM and HUP):
#
#   PGEV_TEST_DSN           unix-socket DSN of the cluster; user=postgres is a superuser
#   PGEV_TEST_DSN_TCP       the same server over 127.0.0.1 (for tests that need TCP)
#   PGEV_TEST_PORT          its TCP port
#   PGEV_TEST_CLUSTER_DIR   the cluster directory (see tests/pgcluster.sh for its layout)
#   PGEV_TEST_PGBIN         the server binaries (pg_ctl, pg_basebackup, postgres, ...)
#   PGEV_TEST_PGCLUSTER     path of pgcluster.sh, for server-stop/server-start/server-restart,
#                           replica and runas DIR CMD (e.g. pgbouncer, which refuses root)
#   PGEV_TEST_REPLICA_METHOD  how "pgcluster.sh replica" makes standbys here (pg_basebackup, or
#                           a low-level backup through psql when the only pg_basebackup is older
#                           than the server, as with the libpq 18 rig), or empty when it cannot;
#                           PGEV_TEST_NO_REPLICA then says why
#
# The test's exit status is returned (77 = skipped, 99 = hard error for automake). If the
# cluster cannot be started the harness exits 99: a test needing a server never passes
# without one.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pgcluster=$here/pgcluster.sh

if [[ $# -lt 1 ]]; then
    echo "usage: pg-harness.sh TEST-PROGRAM [ARG...]" >&2
    exit 99
fi

if [[ -n "${PGEV_TEST_DSN:-}" ]]; then
    echo "pg-harness.sh: using the server of PGEV_TEST_DSN (no throwaway cluster)" >&2
    exec "$@"
fi

name=$(basename "$1")
# Short path under /tmp: the unix socket lives in this directory and the server user must
# reach it.
cluster_dir=$(mktemp -d "/tmp/pgev-${name:0:20}.XXXXXX")
child=

# shellcheck disable=SC2317 # called through trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
        # The test runs in its own process group (setsid below): end it with its children.
        kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    bash "$pgcluster" stop "$cluster_dir" >&2 ||
        echo "pg-harness.sh: warning: could not remove the cluster in $cluster_dir" >&2
    exit "$rc"
}
# shellcheck disable=SC2317 # called through trap
on_signal() {
    echo "pg-harness.sh: caught SIG$1, stopping $name and the cluster" >&2
    exit "$2"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

if ! dsn=$(bash "$pgcluster" start "$cluster_dir"); then
    echo "pg-harness.sh: HARD ERROR: could not start a PostgreSQL cluster for $name (see above)" >&2
    exit 99
fi

export PGEV_TEST_DSN=$dsn
PGEV_TEST_DSN_TCP=$(cat "$cluster_dir/dsn-tcp")
PGEV_TEST_PORT=$(cat "$cluster_dir/port")
PGEV_TEST_CLUSTER_DIR=$cluster_dir
PGEV_TEST_PGBIN=$(bash "$pgcluster" bindir)
PGEV_TEST_PGCLUSTER=$pgcluster
export PGEV_TEST_DSN_TCP PGEV_TEST_PORT PGEV_TEST_CLUSTER_DIR PGEV_TEST_PGBIN PGEV_TEST_PGCLUSTER
PGEV_TEST_NO_REPLICA=
if ! PGEV_TEST_REPLICA_METHOD=$(bash "$pgcluster" replica-method 2>&1); then
    PGEV_TEST_NO_REPLICA=${PGEV_TEST_REPLICA_METHOD#"pgcluster.sh: error: "}
    PGEV_TEST_REPLICA_METHOD=
fi
export PGEV_TEST_REPLICA_METHOD PGEV_TEST_NO_REPLICA
echo "pg-harness.sh: $name against $PGEV_TEST_DSN" >&2

# Run the test in the background and wait for it, so that a signal to the harness is handled
# at once (bash defers traps while a foreground child runs). setsid gives the test its own
# process group, so cleanup can end any helper processes it leaves behind.
if command -v setsid >/dev/null 2>&1; then
    setsid "$@" &
else
    "$@" &
fi
child=$!
rc=0
wait "$child" || rc=$?
# Leftover processes of the test's group (a helper it forgot to reap), if any.
kill -KILL -- "-$child" 2>/dev/null || true
child=
exit "$rc"
