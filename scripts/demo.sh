#!/usr/bin/env bash
# demo.sh: build pgev and show it working against a throwaway PostgreSQL server:
#
#   bash scripts/demo.sh
#
# Installs missing packages (scripts/deps.sh), builds in build/ (the same build as
# scripts/test.sh's normal one), starts a cluster with tests/pgcluster.sh, runs
# examples/demo (pipelined queries, streamed rows) and two pgev-bench workloads, and removes
# the cluster again, also on failure or Ctrl-C.
#
# Environment: PGEV_DEMO_DSN uses that server instead of a throwaway cluster;
# PGEV_JOBS (make -j, default 2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=${PGEV_JOBS:-2}

section() { printf '\n==== %s ====\n' "$*"; }

section "dependencies"
bash scripts/deps.sh

if [[ ! -f configure || ! -f Makefile.in || configure.ac -nt configure || Makefile.am -nt Makefile.in ]]; then
    section "autoreconf -fi"
    autoreconf -fi
fi

section "build (build/)"
# Same configure arguments as scripts/test.sh, recorded the same way, so the two share build/.
configure_args=(--enable-werror)
mkdir -p build
if [[ ! -f build/config.status || ! -f build/Makefile || configure -nt build/config.status ]] ||
    [[ "$(cat build/.pgev-configure-args 2>/dev/null)" != "${configure_args[*]}" ]]; then
    (cd build && ../configure "${configure_args[@]}")
    printf "%s" "${configure_args[*]}" >build/.pgev-configure-args
fi
make -C build -j"$jobs"

cluster_dir=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$cluster_dir" ]]; then
        section "stopping the cluster"
        bash tests/pgcluster.sh stop "$cluster_dir" && echo "removed $cluster_dir"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [[ -n "${PGEV_DEMO_DSN:-}" ]]; then
    dsn=$PGEV_DEMO_DSN
    section "server: PGEV_DEMO_DSN"
else
    section "starting a throwaway PostgreSQL cluster"
    cluster_dir=$(mktemp -d /tmp/pgev-demo.XXXXXX)
    dsn=$(bash tests/pgcluster.sh start "$cluster_dir")
fi
echo "DSN: $dsn"

section "examples/demo: pipelined queries and streamed rows"
build/examples/demo "$dsn"

section "pgev-bench --workload point --queries 200000"
build/tools/pgev-bench --dsn "$dsn" --workload point --queries 200000

section "pgev-bench --workload stream"
build/tools/pgev-bench --dsn "$dsn" --workload stream

section "done"
