#!/usr/bin/env bash
# compare.sh: pgev against the raw libpq pipeline loop, side by side on one server.
#
#   bench/compare.sh [--dsn DSN] [--rounds R] [--queries N] [--rows N] [--unnamed] [--pgbench]
#                    [--copy [--copy-rows N]] [--fanout N [--clients C]] [--keep-logs]
#
# Without --dsn it starts a throwaway cluster with tests/pgcluster.sh and always removes it.
# It runs, interleaved, R rounds of each pair (the order inside a pair alternates between
# rounds so neither side always runs on a warmer server):
#
#   isolated   raw-libpq --sync-every 1     vs  pgev-bench              (a Sync per query)
#   batched    raw-libpq --sync-every 1000  vs  pgev-bench --batch 1000 (atomic batches)
#   stream     raw-libpq single-row mode    vs  pgev-bench --workload stream
#   unnamed    raw-libpq --unnamed          vs  pgev-bench --unnamed    (only with --unnamed;
#              isolated queries sent with PQsendQueryParams, parsed by the server each time)
#
# and prints the medians and the ratio pgev/raw for each pair. Both sides of a pair use the
# same window: 1000 queries outstanding for isolated queries, 2000 for batches of 1000 (two
# Sync segments in flight, which is what keeps a batched pipeline busy on either side).
# Latency is closed-loop on both sides: from the moment the window had room for a query to
# its completion (raw-libpq's slot_p50_us/slot_p99_us, pgev-bench's p50_us/p99_us), so time
# spent queued in the client counts the same whether pgev or the raw loop holds it.
# --pgbench adds one `pgbench -n -S -M prepared -c 1 -T 5` run (no pipelining) as a reference.
# --fanout N adds a pair per round: N raw-libpq processes at once (isolated queries, each on
# its own connection, their queries/s added up: the machine's total) against pgev-bench
# --workload fanout with a pool of N connections and --clients C logical clients (default 1000)
# issuing the same statement back to back, --queries in all.
# --copy adds a pair per round: `psql -c '\copy ... FROM file'` against pgev-bench --workload copy,
# both loading the same --copy-rows rows (default 1,000,000; ~33 bytes each, generated once
# into a file) into a fresh unlogged table; the psql side is timed around the psql process.
#
# Environment: BUILD (default "build"): the build directory holding tools/pgev-bench and
# bench/raw-libpq. Every run's full output is kept in a temporary directory, printed when a
# run fails and removed at exit unless --keep-logs.
set -euo pipefail

prog=compare.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

dsn=""
have_dsn=no
rounds=3
queries=300000
rows=2000000
run_pgbench=no
run_unnamed=no
run_copy=no
copy_rows=1000000
fanout_conns=0
fanout_clients=1000
keep_logs=no
while [[ $# -gt 0 ]]; do
    case "$1" in
    --dsn) [[ $# -ge 2 ]] || die "--dsn needs a value"; dsn=$2; have_dsn=yes; shift 2 ;;
    --rounds) [[ $# -ge 2 ]] || die "--rounds needs a value"; rounds=$2; shift 2 ;;
    --queries) [[ $# -ge 2 ]] || die "--queries needs a value"; queries=$2; shift 2 ;;
    --rows) [[ $# -ge 2 ]] || die "--rows needs a value"; rows=$2; shift 2 ;;
    --pgbench) run_pgbench=yes; shift ;;
    --unnamed) run_unnamed=yes; shift ;;
    --copy) run_copy=yes; shift ;;
    --fanout) [[ $# -ge 2 ]] || die "--fanout needs a value"; fanout_conns=$2; shift 2 ;;
    --clients) [[ $# -ge 2 ]] || die "--clients needs a value"; fanout_clients=$2; shift 2 ;;
    --copy-rows) [[ $# -ge 2 ]] || die "--copy-rows needs a value"; copy_rows=$2; shift 2 ;;
    --keep-logs) keep_logs=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive integer"
[[ "$queries" =~ ^[1-9][0-9]*$ ]] || die "--queries needs a positive integer"
[[ "$rows" =~ ^[1-9][0-9]*$ ]] || die "--rows needs a positive integer"
[[ "$copy_rows" =~ ^[1-9][0-9]*$ ]] || die "--copy-rows needs a positive integer"
[[ "$fanout_conns" =~ ^[0-9]+$ ]] || die "--fanout needs a number of connections"
[[ "$fanout_clients" =~ ^[1-9][0-9]*$ ]] || die "--clients needs a positive integer"

# A relative BUILD is taken from the current directory, else from the source tree.
build=${BUILD:-build}
if [[ "$build" != /* && ! -d "$build" && -d "$top/$build" ]]; then
    build=$top/$build
fi
pgev_bench=$build/tools/pgev-bench
raw_libpq=$build/bench/raw-libpq
[[ -x "$pgev_bench" ]] || die "$pgev_bench not found: build first (make), or set BUILD"
[[ -x "$raw_libpq" ]] || die "$raw_libpq not found: build first (make), or set BUILD"

logs=$(mktemp -d /tmp/pgev-compare-logs.XXXXXX)
cluster=""
cleanup() {
    if [[ -n "$cluster" ]]; then
        bash "$top/tests/pgcluster.sh" stop "$cluster" >/dev/null 2>&1 || true
    fi
    if [[ "$keep_logs" = yes ]]; then
        echo "$prog: logs kept in $logs" >&2
    else
        rm -rf "$logs"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "$have_dsn" = no ]]; then
    cluster=$(mktemp -d /tmp/pgev-compare.XXXXXX)
    echo "$prog: starting a throwaway cluster in $cluster" >&2
    dsn=$(bash "$top/tests/pgcluster.sh" start "$cluster") || die "could not start a cluster"
fi

# --- running and parsing ---------------------------------------------------------------------

run_count=0
# run NAME CMD...: runs one benchmark; its key=value line is left in $logs/NAME.kv
run() {
    local name=$1
    shift
    run_count=$((run_count + 1))
    local log="$logs/$name.log"
    if ! "$@" >"$log" 2>&1; then
        echo "$prog: FAILED: $*" >&2
        sed 's/^/    /' "$log" >&2
        exit 1
    fi
    grep '^workload=' "$log" | tail -n 1 >"$logs/$name.kv"
    [[ -s "$logs/$name.kv" ]] || die "$name printed no key=value line (see $log)"
    printf '  %-24s %s\n' "$name" "$(cat "$logs/$name.kv")" >&2
}

# kv NAME KEY: one value from a run's key=value line
kv() {
    tr ' ' '\n' <"$logs/$1.kv" | sed -n "s/^$2=//p" | head -n 1
}

# median KEY NAME_PREFIX: the median of KEY over the rounds of one benchmark
median() {
    local key=$1 prefix=$2 r
    for ((r = 1; r <= rounds; r++)); do
        kv "$prefix.r$r" "$key"
    done | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print 0; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'
}

raw_iso=("$raw_libpq" --dsn "$dsn" --queries "$queries" --window 1000 --sync-every 1)
pgev_iso=("$pgev_bench" --dsn "$dsn" --queries "$queries" --window 1000)
raw_batch=("$raw_libpq" --dsn "$dsn" --queries "$queries" --window 2000 --sync-every 1000)
pgev_batch=("$pgev_bench" --dsn "$dsn" --queries "$queries" --window 2000 --batch 1000)
raw_stream=("$raw_libpq" --dsn "$dsn" --workload stream --rows "$rows")
pgev_stream=("$pgev_bench" --dsn "$dsn" --workload stream --rows "$rows")
raw_unnamed=("$raw_libpq" --dsn "$dsn" --queries "$queries" --window 1000 --sync-every 1 --unnamed)
pgev_copy=("$pgev_bench" --dsn "$dsn" --workload copy --rows "$copy_rows")
pgev_fanout=("$pgev_bench" --dsn "$dsn" --workload fanout --conns "$fanout_conns" --clients "$fanout_clients"
    --queries "$queries")

# raw_parallel: $fanout_conns raw-libpq loops at once, queries split between them; one key=value
# line with their queries/s added up.
raw_parallel() {
    local i pids=() per=$((queries / fanout_conns)) total=0 q
    for ((i = 1; i <= fanout_conns; i++)); do
        "$raw_libpq" --dsn "$dsn" --queries "$per" --window 1000 --sync-every 1 >"$logs/raw-par-$i.out" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || return 1
    done
    for ((i = 1; i <= fanout_conns; i++)); do
        q=$(grep '^workload=' "$logs/raw-par-$i.out" | tail -n 1 | tr ' ' '\n' | sed -n 's/^qps=//p')
        total=$(awk -v a="$total" -v b="${q:-0}" 'BEGIN { printf "%.0f", a + b }')
    done
    echo "workload=point impl=raw-parallel conns=$fanout_conns qps=$total"
}

# psql_copy: \copy of the generated file into a fresh table (made before the clock starts), with
# the same key=value line as pgev-bench's copy workload.
copy_file=""
psql_copy() {
    psql -X -q -v ON_ERROR_STOP=1 "$dsn" \
        -c "DROP TABLE IF EXISTS pgev_bench_copy" \
        -c "CREATE UNLOGGED TABLE pgev_bench_copy (id bigint, name text)" || return 1
    local t0 t1
    t0=$(date +%s.%N)
    psql -X -q -v ON_ERROR_STOP=1 "$dsn" -c "\\copy pgev_bench_copy (id, name) FROM '$copy_file'" || return 1
    t1=$(date +%s.%N)
    awk -v n="$copy_rows" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "workload=copy impl=psql rows=%d rows_per_s=%.0f\n", n, n / (b - a) }'
}
if [[ "$run_copy" = yes ]]; then
    command -v psql >/dev/null 2>&1 || die "--copy needs psql"
    copy_file=$logs/copy-rows.txt
    awk -v n="$copy_rows" 'BEGIN { for (i = 1; i <= n; i++) printf "%d\tname-%020d\n", i, i }' >"$copy_file"
fi
pgev_unnamed=("$pgev_bench" --dsn "$dsn" --queries "$queries" --window 1000 --unnamed)

echo "$prog: $rounds rounds, $queries queries per point run, $rows rows per stream" >&2
for ((r = 1; r <= rounds; r++)); do
    echo "$prog: round $r/$rounds" >&2
    if ((r % 2)); then
        run "raw-iso.r$r" "${raw_iso[@]}"
        run "pgev-iso.r$r" "${pgev_iso[@]}"
        run "raw-batch.r$r" "${raw_batch[@]}"
        run "pgev-batch.r$r" "${pgev_batch[@]}"
        run "raw-stream.r$r" "${raw_stream[@]}"
        run "pgev-stream.r$r" "${pgev_stream[@]}"
        if [[ "$run_unnamed" = yes ]]; then
            run "raw-unnamed.r$r" "${raw_unnamed[@]}"
            run "pgev-unnamed.r$r" "${pgev_unnamed[@]}"
        fi
        if [[ "$run_copy" = yes ]]; then
            run "psql-copy.r$r" psql_copy
            run "pgev-copy.r$r" "${pgev_copy[@]}"
        fi
        if ((fanout_conns > 0)); then
            run "raw-par.r$r" raw_parallel
            run "pgev-fanout.r$r" "${pgev_fanout[@]}"
        fi
    else
        run "pgev-iso.r$r" "${pgev_iso[@]}"
        run "raw-iso.r$r" "${raw_iso[@]}"
        run "pgev-batch.r$r" "${pgev_batch[@]}"
        run "raw-batch.r$r" "${raw_batch[@]}"
        run "pgev-stream.r$r" "${pgev_stream[@]}"
        run "raw-stream.r$r" "${raw_stream[@]}"
        if [[ "$run_unnamed" = yes ]]; then
            run "pgev-unnamed.r$r" "${pgev_unnamed[@]}"
            run "raw-unnamed.r$r" "${raw_unnamed[@]}"
        fi
        if [[ "$run_copy" = yes ]]; then
            run "pgev-copy.r$r" "${pgev_copy[@]}"
            run "psql-copy.r$r" psql_copy
        fi
        if ((fanout_conns > 0)); then
            run "pgev-fanout.r$r" "${pgev_fanout[@]}"
            run "raw-par.r$r" raw_parallel
        fi
    fi
done

pgbench_tps=""
if [[ "$run_pgbench" = yes ]]; then
    if command -v pgbench >/dev/null 2>&1; then
        echo "$prog: pgbench reference (initialising scale 1)" >&2
        if pgbench -i -q -s 1 "$dsn" >"$logs/pgbench-init.log" 2>&1 &&
            pgbench -n -S -M prepared -c 1 -T 5 "$dsn" >"$logs/pgbench.log" 2>&1; then
            pgbench_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$logs/pgbench.log" | head -n 1)
        else
            echo "$prog: pgbench failed; see $logs/pgbench*.log" >&2
        fi
    else
        echo "$prog: pgbench not installed; skipped" >&2
    fi
fi

# --- the table -------------------------------------------------------------------------------

# row LABEL RAW_KEY[:PGEV_KEY] RAW_PREFIX PGEV_PREFIX TARGET
row() {
    local raw_key=${2%%:*} pgev_key=${2#*:} raw pgev
    raw=$(median "$raw_key" "$3")
    pgev=$(median "$pgev_key" "$4")
    printf '%-34s %12.0f %12.0f %9s   %s\n' "$1" "$raw" "$pgev" "$(ratio "$pgev" "$raw")" "$5"
}

echo
echo "pgev vs raw libpq: medians of $rounds rounds ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs)"
printf '%-34s %12s %12s %9s   %s\n' "" "raw libpq" "pgev" "pgev/raw" "target"
row "isolated queries/s (Sync each)" qps raw-iso pgev-iso ">= 0.95"
row "  p50 latency us" slot_p50_us:p50_us raw-iso pgev-iso ""
row "  p99 latency us" slot_p99_us:p99_us raw-iso pgev-iso ""
row "  client CPU %" cpu_pct raw-iso pgev-iso ""
row "batched queries/s (1000 per Sync)" qps raw-batch pgev-batch ">= 0.90"
row "  p50 latency us" slot_p50_us:p50_us raw-batch pgev-batch ""
row "  p99 latency us" slot_p99_us:p99_us raw-batch pgev-batch ""
row "  client CPU %" cpu_pct raw-batch pgev-batch ""
row "stream rows/s ($rows rows)" rows_per_s raw-stream pgev-stream ">= 0.90"
row "  peak RSS KB" rss_kb raw-stream pgev-stream "< 16384 (pgev)"
row "  client CPU %" cpu_pct raw-stream pgev-stream ""
if [[ "$run_unnamed" = yes ]]; then
    row "unnamed isolated queries/s" qps raw-unnamed pgev-unnamed ""
    row "  client CPU %" cpu_pct raw-unnamed pgev-unnamed ""
fi
if [[ -n "$pgbench_tps" ]]; then
    printf '%-34s %12.0f\n' "pgbench -S -M prepared -c 1 tps" "$pgbench_tps"
fi
fanout_ratio=n/a
if ((fanout_conns > 0)); then
    echo
    printf '%-34s %12s %12s %9s   %s\n' "" "raw x$fanout_conns" "pgev pool" "pgev/raw" "target"
    row "fanout queries/s ($fanout_clients clients)" qps raw-par pgev-fanout ">= 0.85"
    printf '%-34s %12s %12.0f\n' "  pgev p99 latency us" "" "$(median p99_us pgev-fanout)"
    fanout_ratio=$(ratio "$(median qps pgev-fanout)" "$(median qps raw-par)")
fi
copy_ratio=n/a
if [[ "$run_copy" = yes ]]; then
    echo
    printf '%-34s %12s %12s %9s\n' "" "psql \\copy" "pgev" "pgev/psql"
    row "COPY FROM STDIN rows/s ($copy_rows)" rows_per_s psql-copy pgev-copy ""
    copy_ratio=$(ratio "$(median rows_per_s pgev-copy)" "$(median rows_per_s psql-copy)")
fi

iso_ratio=$(ratio "$(median qps pgev-iso)" "$(median qps raw-iso)")
batch_ratio=$(ratio "$(median qps pgev-batch)" "$(median qps raw-batch)")
stream_ratio=$(ratio "$(median rows_per_s pgev-stream)" "$(median rows_per_s raw-stream)")
unnamed_ratio=n/a
if [[ "$run_unnamed" = yes ]]; then
    unnamed_ratio=$(ratio "$(median qps pgev-unnamed)" "$(median qps raw-unnamed)")
fi
echo
echo "compare rounds=$rounds queries=$queries rows=$rows isolated_ratio=$iso_ratio" \
    "batched_ratio=$batch_ratio stream_ratio=$stream_ratio stream_rss_kb=$(median rss_kb pgev-stream)" \
    "unnamed_ratio=$unnamed_ratio copy_ratio=$copy_ratio fanout_ratio=$fanout_ratio pgbench_tps=${pgbench_tps:-0}"
