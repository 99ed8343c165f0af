#!/usr/bin/env bash
# compare.sh: pgev side by side with raw libpq, pgbench, postgres.js and asyncpg on one server.
#
#   bench/compare.sh [--all] [--dsn DSN] [--rounds R] [--queries N] [--rows N]
#                    [--readonly] [--unnamed] [--copy [--copy-rows N]] [--fanout N [--clients C]]
#                    [--peers] [--pgbench] [--callgrind] [--plot DIR] [--keep-logs]
#                    [--chunk-rows N]
#
# `make bench` runs `bench/compare.sh --all`: every comparison below, five rounds (three without
# --all), and the plots.
# Without --dsn it starts a throwaway cluster with tests/pgcluster.sh and always removes it.
#
# Each round runs every group below once, one member after the other; the order inside a group
# is reversed every other round, so no side always runs on a warmer server. The table shows the
# median of the rounds for each member and the ratio of pgev's median to the anchor's:
#
#   isolated   raw-libpq --sync-every 1     vs  pgev-bench              (a Sync per query)
#   batched    raw-libpq --sync-every 1000  vs  pgev-bench --batch 1000 (atomic batches)
#   stream     raw-libpq single-row mode    vs  pgev-bench --workload stream
#   --readonly raw-libpq --sync-every 1000  vs  pgev-bench --readonly: isolated queries flagged
#              PGEV_QUERY_READONLY, which share Sync segments (a failure re-sends the aborted
#              followers), against the raw loop's fastest Sync policy
#   --unnamed  raw-libpq --unnamed          vs  pgev-bench --unnamed (PQsendQueryParams, isolated)
#   --chunk-rows N  (libpq 17+) raw-libpq --chunk-rows N vs pgev-bench --workload stream
#              --chunk-rows N (stream_chunk_rows: chunked rows), and pgev's stream in single
#              rows (its default) vs in chunks of N
#   --copy     `psql -c '\copy ... FROM file'` vs pgev-bench --workload copy: --copy-rows rows
#              (default 1,000,000; ~33 bytes each, generated once into a file) into a fresh
#              unlogged table; the psql side is timed around the psql process
#   --fanout N N raw-libpq processes at once (isolated, queries split between them, their
#              queries/s added up: the machine's total) vs pgev-bench --workload fanout with a
#              pool of N connections and --clients C logical clients (default 1000), and vs
#              the same split over two threads (--threads 2: two loops, two pools of N/2);
#              then pgev-bench fanout with 100 vs 10,000 clients (throughput, heap bytes per
#              queued query, peak RSS)
#   --peers    one connection shared by 1000 concurrent logical clients issuing prepared
#              `SELECT $1::int4` back to back: pgev-bench --workload fanout --conns 1 vs
#              postgres.js (`max: 1`; installed from npm into a scratch directory) vs asyncpg
#              (Debian's python3-asyncpg; a pool of one connection, and its best case, one
#              client). A peer that is not installed, or cannot be, is skipped with a message.
#
# Both sides of a point pair use the same window: 1000 queries outstanding for isolated queries,
# 2000 for batches of 1000. Latency is closed-loop on both sides: from the moment the window had
# room for a query to its completion.
#
# --pgbench (after the rounds; needs pgbench): initialises pgbench_accounts at scale 10, then
#   `pgbench -n -S -M prepared -c 1 -T 5` (no pipelining) vs pgev-bench --query accounts
#   (the same random-key lookup, pipelined, one connection), `pgbench ... -c 4 -j 2` vs
#   pgev-bench --query accounts --conns 4 --pool, and pgbench with a \startpipeline script of
#   100 lookups per transaction (one Sync per 100) vs pgev-bench --query accounts --batch 100.
# --callgrind (after the rounds; needs valgrind): client instructions per query, libpq included,
#   of raw-libpq and pgev-bench, isolated and batched: each runs under callgrind twice (20,000
#   and 60,000 queries) and the difference is divided by 40,000, so start-up cost cancels out;
#   the median of three such pairs.
# --plot DIR: pgev-bench draws (gnuplot) DIR/point.png (isolated queries) and DIR/rate.png (a
#   fixed 50,000 queries/s for 5 s): latency distribution and throughput over time.
#
# Environment: BUILD (default "build"): the build directory holding tools/pgev-bench and
# bench/raw-libpq. Every run's full output is kept in a temporary directory, printed when a
# run fails and removed at exit unless --keep-logs. The last line is one key=value summary.
set -euo pipefail

prog=compare.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

note() {
    echo "$prog: $*" >&2
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

dsn=""
have_dsn=no
rounds=""
queries=300000
rows=2000000
run_pgbench=no
run_unnamed=no
run_readonly=no
run_copy=no
run_peers=no
run_callgrind=no
plot_dir=""
copy_rows=1000000
fanout_list=""
fanout_clients=1000
chunk_rows=""
keep_logs=no
while [[ $# -gt 0 ]]; do
    case "$1" in
    --all)
        run_pgbench=yes run_unnamed=yes run_readonly=yes run_copy=yes run_peers=yes run_callgrind=yes
        [[ -n "$fanout_list" ]] || fanout_list="2,4"
        [[ -n "$plot_dir" ]] || plot_dir=$top/bench/plots
        [[ -n "$rounds" ]] || rounds=5
        shift ;;
    --dsn) [[ $# -ge 2 ]] || die "--dsn needs a value"; dsn=$2; have_dsn=yes; shift 2 ;;
    --rounds) [[ $# -ge 2 ]] || die "--rounds needs a value"; rounds=$2; shift 2 ;;
    --queries) [[ $# -ge 2 ]] || die "--queries needs a value"; queries=$2; shift 2 ;;
    --rows) [[ $# -ge 2 ]] || die "--rows needs a value"; rows=$2; shift 2 ;;
    --pgbench) run_pgbench=yes; shift ;;
    --unnamed) run_unnamed=yes; shift ;;
    --readonly) run_readonly=yes; shift ;;
    --copy) run_copy=yes; shift ;;
    --peers) run_peers=yes; shift ;;
    --callgrind) run_callgrind=yes; shift ;;
    --plot) [[ $# -ge 2 ]] || die "--plot needs a directory"; plot_dir=$2; shift 2 ;;
    --fanout) [[ $# -ge 2 ]] || die "--fanout needs a value"; fanout_list=$2; shift 2 ;;
    --clients) [[ $# -ge 2 ]] || die "--clients needs a value"; fanout_clients=$2; shift 2 ;;
    --copy-rows) [[ $# -ge 2 ]] || die "--copy-rows needs a value"; copy_rows=$2; shift 2 ;;
    --keep-logs) keep_logs=yes; shift ;;
    --chunk-rows) [[ $# -ge 2 ]] || die "--chunk-rows needs a value"; chunk_rows=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done
rounds=${rounds:-3}
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive integer"
[[ "$queries" =~ ^[1-9][0-9]*$ ]] || die "--queries needs a positive integer"
[[ "$rows" =~ ^[1-9][0-9]*$ ]] || die "--rows needs a positive integer"
[[ "$copy_rows" =~ ^[1-9][0-9]*$ ]] || die "--copy-rows needs a positive integer"
[[ -z "$chunk_rows" || "$chunk_rows" =~ ^[1-9][0-9]*$ ]] || die "--chunk-rows needs a positive integer"
[[ -z "$fanout_list" || "$fanout_list" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
    die "--fanout needs a number of connections, or a list: 2,4"
IFS=, read -r -a fanouts <<<"$fanout_list"
fanout_max=0
for n in "${fanouts[@]}"; do ((n <= fanout_max)) || fanout_max=$n; done
[[ "$fanout_clients" =~ ^[1-9][0-9]*$ ]] || die "--clients needs a positive integer"

# A relative BUILD is taken from the current directory, else from the source tree.
build=${BUILD:-build}
if [[ "$build" != /* && ! -d "$build" && -d "$top/$build" ]]; then
    build=$top/$build
fi
build=$(cd "$build" 2>/dev/null && pwd) || die "build directory ${BUILD:-build} not found: build first"
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
        note "logs kept in $logs"
    else
        rm -rf "$logs"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "$have_dsn" = no ]]; then
    cluster=$(mktemp -d /tmp/pgev-compare.XXXXXX)
    note "starting a throwaway cluster in $cluster"
    dsn=$(bash "$top/tests/pgcluster.sh" start "$cluster") || die "could not start a cluster"
fi

# conninfo KEY: one keyword's value from a keyword=value DSN (the peers take them apart)
conninfo() {
    tr ' ' '\n' <<<"$dsn" | sed -n "s/^$1=//p" | head -n 1
}

# --- running and parsing ---------------------------------------------------------------------

# run NAME CMD...: runs one benchmark; its key=value line is left in $logs/NAME.kv
run() {
    local name=$1
    shift
    local log="$logs/$name.log"
    if ! "$@" >"$log" 2>&1; then
        echo "$prog: FAILED: $*" >&2
        sed 's/^/    /' "$log" >&2
        exit 1
    fi
    grep '^workload=' "$log" | tail -n 1 >"$logs/$name.kv"
    [[ -s "$logs/$name.kv" ]] || die "$name printed no key=value line (see $log)"
    printf '  %-24s %s\n' "$name" "$(cut -c1-150 "$logs/$name.kv")" >&2
}

# kv NAME KEY: one value from a run's key=value line
kv() {
    tr ' ' '\n' <"$logs/$1.kv" | sed -n "s/^$2=//p" | head -n 1
}

# median KEY NAME: the median of KEY over the rounds of one benchmark
median() {
    local key=$1 name=$2 r
    for ((r = 1; r <= rounds; r++)); do
        [[ -f "$logs/$name.r$r.kv" ]] && kv "$name.r$r" "$key"
    done | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print 0; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# pair_ratio KEY[:PGEV_KEY] ANCHOR PGEV: the median over the rounds of each round's ratio
# pgev/anchor. The two ran back to back in every round, so this follows the pairs when the
# machine's speed drifts between rounds (it does, by 2x at times), where a ratio of medians
# would pair one round's anchor with another round's pgev.
pair_ratio() {
    local anchor_key=${1%%:*} pgev_key=${1#*:} r a p
    for ((r = 1; r <= rounds; r++)); do
        [[ -f "$logs/$2.r$r.kv" && -f "$logs/$3.r$r.kv" ]] || continue
        a=$(kv "$2.r$r" "$anchor_key")
        p=$(kv "$3.r$r" "$pgev_key")
        awk -v a="${a:-0}" -v p="${p:-0}" 'BEGIN { if (a > 0) printf "%.6f\n", p / a }'
    done | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- what runs -------------------------------------------------------------------------------
# Each benchmark is an array named cmd_NAME; groups lists the names run together each round.

cmd_raw_iso=("$raw_libpq" --dsn "$dsn" --queries "$queries" --window 1000 --sync-every 1)
cmd_pgev_iso=("$pgev_bench" --dsn "$dsn" --queries "$queries" --window 1000)
cmd_raw_batch=("$raw_libpq" --dsn "$dsn" --queries "$queries" --window 2000 --sync-every 1000)
cmd_pgev_batch=("$pgev_bench" --dsn "$dsn" --queries "$queries" --window 2000 --batch 1000)
cmd_raw_stream=("$raw_libpq" --dsn "$dsn" --workload stream --rows "$rows")
cmd_pgev_stream=("$pgev_bench" --dsn "$dsn" --workload stream --rows "$rows")
cmd_raw_chunks=("${cmd_raw_stream[@]}" --chunk-rows "${chunk_rows:-0}")
cmd_pgev_chunks=("${cmd_pgev_stream[@]}" --chunk-rows "${chunk_rows:-0}")
cmd_raw_batch_ro=("${cmd_raw_batch[@]}")
cmd_pgev_readonly=("$pgev_bench" --dsn "$dsn" --queries "$queries" --window 1000 --readonly)
cmd_raw_unnamed=("$raw_libpq" --dsn "$dsn" --queries "$queries" --window 1000 --sync-every 1 --unnamed)
cmd_pgev_unnamed=("$pgev_bench" --dsn "$dsn" --queries "$queries" --window 1000 --unnamed)
cmd_psql_copy=(psql_copy)
cmd_pgev_copy=("$pgev_bench" --dsn "$dsn" --workload copy --rows "$copy_rows")
fanout_cmd=("$pgev_bench" --dsn "$dsn" --workload fanout --queries "$queries")
for n in "${fanouts[@]}"; do
    declare -a "cmd_raw_par$n=(raw_parallel $n)"
    declare -n cmd="cmd_pgev_fanout$n"
    cmd=("${fanout_cmd[@]}" --conns "$n" --clients "$fanout_clients")
    declare -n cmd="cmd_pgev_fanthr$n"
    ((n < 2)) || cmd=("${fanout_cmd[@]}" --conns "$n" --clients "$fanout_clients" --threads 2)
    unset -n cmd
done
cmd_pgev_fan100=("${fanout_cmd[@]}" --conns "$fanout_max" --clients 100)
cmd_pgev_fan10k=("${fanout_cmd[@]}" --conns "$fanout_max" --clients 10000)
cmd_pgev_one=("$pgev_bench" --dsn "$dsn" --workload fanout --conns 1 --clients 1000 --queries "$queries")
cmd_pgjs=(postgresjs_run)
cmd_apg=(asyncpg_run --clients 1000 --queries 20000)
cmd_apg_seq=(asyncpg_run --clients 1 --queries 20000)

groups=("raw_iso pgev_iso" "raw_batch pgev_batch" "raw_stream pgev_stream")
[[ "$run_readonly" = no ]] || groups+=("raw_batch_ro pgev_readonly")
[[ "$run_unnamed" = no ]] || groups+=("raw_unnamed pgev_unnamed")
[[ -z "$chunk_rows" ]] || groups+=("raw_chunks pgev_chunks")

# raw_parallel N: N raw-libpq loops at once, queries split between them; one key=value line
# with their queries/s added up.
raw_parallel() {
    local n=$1 i pids=() per=$((queries / $1)) total=0 q
    for ((i = 1; i <= n; i++)); do
        "$raw_libpq" --dsn "$dsn" --queries "$per" --window 1000 --sync-every 1 >"$logs/raw-par-$i.out" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || return 1
    done
    for ((i = 1; i <= n; i++)); do
        q=$(grep '^workload=' "$logs/raw-par-$i.out" | tail -n 1 | tr ' ' '\n' | sed -n 's/^qps=//p')
        total=$(awk -v a="$total" -v b="${q:-0}" 'BEGIN { printf "%.0f", a + b }')
    done
    echo "workload=point impl=raw-parallel conns=$n qps=$total"
}
for n in "${fanouts[@]}"; do
    if ((n >= 2)); then
        groups+=("raw_par$n pgev_fanout$n pgev_fanthr$n")
    else
        groups+=("raw_par$n pgev_fanout$n")
    fi
done
((fanout_max == 0)) || groups+=("pgev_fan100 pgev_fan10k")

# psql_copy: \copy of the generated file into a fresh table (made before the clock starts), with
# the same key=value line as pgev-bench's copy workload.
copy_file=$logs/copy-rows.txt
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
    awk -v n="$copy_rows" 'BEGIN { for (i = 1; i <= n; i++) printf "%d\tname-%020d\n", i, i }' >"$copy_file"
    groups+=("psql_copy pgev_copy")
fi

# The peers: set up once, skipped (with the reason) when they cannot be had.
pgjs_dir="" pgjs_version="" apg_version="" peers_group=""
postgresjs_run() {
    (cd "$pgjs_dir" && node postgresjs-bench.mjs --host "$(conninfo host)" --port "$(conninfo port)" \
        --user "$(conninfo user)" --dbname "$(conninfo dbname)" --clients 1000 --queries 100000)
}
asyncpg_run() {
    /usr/bin/python3 "$here/peers/asyncpg-bench.py" --host "$(conninfo host)" --port "$(conninfo port)" \
        --user "$(conninfo user)" --dbname "$(conninfo dbname)" "$@"
}
if [[ "$run_peers" = yes ]]; then
    peers_group="pgev_one"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        note "postgres.js skipped: node and npm are not installed (apt-get install nodejs npm)"
    else
        pgjs_dir=$logs/postgresjs
        mkdir -p "$pgjs_dir"
        cp "$here/peers/postgresjs-bench.mjs" "$pgjs_dir/"
        note "installing postgres.js from npm into $pgjs_dir"
        if (cd "$pgjs_dir" && timeout 300 npm install --no-audit --no-fund --silent postgres@3 \
                >"$logs/npm.log" 2>&1); then
            pgjs_version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
                "$pgjs_dir/node_modules/postgres/package.json" | head -n 1)
            peers_group+=" pgjs"
        else
            note "postgres.js skipped: npm install postgres failed (see below)"
            sed 's/^/    /' "$logs/npm.log" >&2
        fi
    fi
    if [[ -x /usr/bin/python3 ]] &&
        apg_version=$(/usr/bin/python3 -c 'import asyncpg; print(asyncpg.__version__)' 2>/dev/null); then
        peers_group+=" apg apg_seq"
    else
        apg_version=""
        note "asyncpg skipped: /usr/bin/python3 cannot import it (apt-get install python3-asyncpg)"
    fi
    groups+=("$peers_group")
fi

# --- the rounds ------------------------------------------------------------------------------

note "$rounds rounds, $queries queries per point run, $rows rows per stream"
for ((r = 1; r <= rounds; r++)); do
    note "round $r/$rounds"
    for group in "${groups[@]}"; do
        read -r -a members <<<"$group"
        if ((r % 2 == 0)); then
            # reversed every other round
            for ((i = 0, j = ${#members[@]} - 1; i < j; i++, j--)); do
                t=${members[i]} members[i]=${members[j]} members[j]=$t
            done
        fi
        for name in "${members[@]}"; do
            declare -n cmd="cmd_$name"
            run "$name.r$r" "${cmd[@]}"
            unset -n cmd
        done
    done
done

# --- pgbench ---------------------------------------------------------------------------------

pgbench_ok=no
if [[ "$run_pgbench" = yes ]]; then
    if ! command -v pgbench >/dev/null 2>&1; then
        note "pgbench skipped: not installed (apt-get install postgresql-contrib)"
    else
        note "pgbench: initialising pgbench_accounts at scale 10"
        pgbench -i -q -s 10 "$dsn" >"$logs/pgbench-init.log" 2>&1 ||
            { sed 's/^/    /' "$logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
        {
            for ((i = 1; i <= 100; i++)); do echo "\\set a$i random(1, 100000 * :scale)"; done
            echo '\startpipeline'
            for ((i = 1; i <= 100; i++)); do echo "SELECT abalance FROM pgbench_accounts WHERE aid = :a$i;"; done
            echo '\endpipeline'
        } >"$logs/pipeline.sql"
        # pgbench_kv NAME MULT: a pgbench run's tps times MULT (queries per transaction) as a
        # key=value line
        pgbench_kv() {
            local tps
            tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$logs/$1.log" | head -n 1)
            [[ -n "$tps" ]] || die "$1 printed no tps (see $logs/$1.log)"
            awk -v t="$tps" -v m="$2" 'BEGIN { printf "workload=pgbench impl=pgbench qps=%.0f\n", t * m }' >"$logs/$1.kv"
            printf '  %-24s %s\n' "$1" "$(cat "$logs/$1.kv")" >&2
        }
        accounts=("$pgev_bench" --dsn "$dsn" --query accounts --scale 10 --queries "$queries")
        for ((r = 1; r <= rounds; r++)); do
            note "pgbench round $r/$rounds"
            pgbench -n -S -M prepared -c 1 -T 5 "$dsn" >"$logs/pgb_c1.r$r.log" 2>&1 || die "pgbench failed"
            pgbench_kv "pgb_c1.r$r" 1
            run "pgev_acc.r$r" "${accounts[@]}"
            pgbench -n -S -M prepared -c 4 -j 2 -T 5 "$dsn" >"$logs/pgb_c4.r$r.log" 2>&1 || die "pgbench failed"
            pgbench_kv "pgb_c4.r$r" 1
            run "pgev_acc4.r$r" "${accounts[@]}" --conns 4 --pool
            pgbench -n -M prepared -c 1 -T 5 -f "$logs/pipeline.sql" "$dsn" >"$logs/pgb_pipe.r$r.log" 2>&1 ||
                die "pgbench (pipelined) failed"
            pgbench_kv "pgb_pipe.r$r" 100
            run "pgev_accb.r$r" "${accounts[@]}" --batch 100
        done
        pgbench_ok=yes
    fi
fi

# --- callgrind -------------------------------------------------------------------------------

# instructions NAME CMD...: instructions per query of CMD (with --queries appended): the
# difference between callgrind runs of 20,000 and 60,000 queries over 40,000, the median of three
# such pairs (how many results each wakeup finds varies from run to run, and with it the
# per-wakeup cost each query carries).
instructions() {
    local name=$1 n k total libtool=()
    shift
    # pgev-bench is a libtool wrapper script: valgrind must see the real binary.
    [[ "$1" != "$pgev_bench" || ! -x "$build/libtool" ]] || libtool=("$build/libtool" --mode=execute)
    for k in 1 2 3; do
        total=()
        for n in 20000 60000; do
            "${libtool[@]}" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                "$@" --queries "$n" >"$logs/cg.$name.$k.$n.log" 2>&1 ||
                { sed 's/^/    /' "$logs/cg.$name.$k.$n.log" >&2; die "callgrind run of $name failed"; }
            total+=("$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$logs/cg.$name.$k.$n.log" | tail -n 1)")
        done
        [[ -n "${total[0]}" && -n "${total[1]}" ]] || die "callgrind printed no totals for $name"
        awk -v a="${total[0]}" -v b="${total[1]}" 'BEGIN { printf "%.0f\n", (b - a) / 40000 }'
    done | sort -n | sed -n 2p
}
cg_raw_iso="" cg_pgev_iso="" cg_raw_batch="" cg_pgev_batch=""
if [[ "$run_callgrind" = yes ]]; then
    if ! command -v valgrind >/dev/null 2>&1; then
        note "callgrind skipped: valgrind is not installed (apt-get install valgrind)"
    else
        note "callgrind: instructions per query (four programs, six runs each)"
        cg_raw_iso=$(instructions raw_iso "$raw_libpq" --dsn "$dsn" --window 1000 --sync-every 1)
        cg_pgev_iso=$(instructions pgev_iso "$pgev_bench" --dsn "$dsn" --window 1000)
        cg_raw_batch=$(instructions raw_batch "$raw_libpq" --dsn "$dsn" --window 2000 --sync-every 1000)
        cg_pgev_batch=$(instructions pgev_batch "$pgev_bench" --dsn "$dsn" --window 2000 --batch 1000)
    fi
fi

# --- plots -----------------------------------------------------------------------------------

if [[ -n "$plot_dir" ]]; then
    if ! command -v gnuplot >/dev/null 2>&1; then
        note "plots skipped: gnuplot is not installed (apt-get install gnuplot-nox)"
        plot_dir=""
    else
        mkdir -p "$plot_dir"
        run plot_point "$pgev_bench" --dsn "$dsn" --queries "$queries" --window 1000 --plot "$plot_dir/point.png"
        run plot_rate "$pgev_bench" --dsn "$dsn" --workload rate --rate 50000 --duration 5 \
            --plot "$plot_dir/rate.png"
    fi
fi

# --- the table -------------------------------------------------------------------------------

# row LABEL KEY[:PGEV_KEY] ANCHOR PGEV TARGET: each side's median, and the median of the
# per-round ratios pgev/anchor
row() {
    local anchor_key=${2%%:*} pgev_key=${2#*:} a p
    a=$(median "$anchor_key" "$3")
    p=$(median "$pgev_key" "$4")
    printf '%-44s %12.0f %12.0f %9s   %s\n' "$1" "$a" "$p" "$(pair_ratio "$2" "$3" "$4")" "$5"
}
header() {
    echo
    printf '%-44s %12s %12s %9s   %s\n' "" "$1" "$2" "ratio" "target"
}
summary=(rounds="$rounds" queries="$queries")
sum_ratio() {
    summary+=("$1=$(pair_ratio "$2" "$3" "$4")")
}

echo
echo "pgev side by side: medians of $rounds rounds; ratio = median of the rounds' ratios" \
    "($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, PostgreSQL" \
    "$(psql -X -At "$dsn" -c 'SHOW server_version' 2>/dev/null || echo '?'))"
header "raw libpq" "pgev"
row "isolated queries/s (Sync each)" qps raw_iso pgev_iso ">= 0.95"
row "  p50 latency us" slot_p50_us:p50_us raw_iso pgev_iso ""
row "  p99 latency us" slot_p99_us:p99_us raw_iso pgev_iso ""
row "  client CPU %" cpu_pct raw_iso pgev_iso ""
row "batched queries/s (1000 per Sync)" qps raw_batch pgev_batch ">= 0.90"
row "  client CPU %" cpu_pct raw_batch pgev_batch ""
row "stream rows/s ($rows rows)" rows_per_s raw_stream pgev_stream ">= 0.90"
row "  peak RSS KB" rss_kb raw_stream pgev_stream "< 16384 (pgev)"
sum_ratio isolated_ratio qps raw_iso pgev_iso
sum_ratio batched_ratio qps raw_batch pgev_batch
sum_ratio stream_ratio rows_per_s raw_stream pgev_stream
summary+=("stream_rss_kb=$(median rss_kb pgev_stream)")
if [[ "$run_readonly" = yes ]]; then
    header "raw batched" "pgev ro"
    row "read-only isolated queries/s vs batched raw" qps raw_batch_ro pgev_readonly ">= 0.90"
    row "  client CPU %" cpu_pct raw_batch_ro pgev_readonly ""
    sum_ratio readonly_ratio qps raw_batch_ro pgev_readonly
fi
if [[ -n "$chunk_rows" ]]; then
    header "raw chunks" "pgev chunks"
    row "stream rows/s, chunks of $chunk_rows rows" rows_per_s raw_chunks pgev_chunks ""
    row "  peak RSS KB" rss_kb raw_chunks pgev_chunks ""
    header "pgev 1 row" "pgev chunks"
    row "pgev stream rows/s: single rows vs chunks" rows_per_s pgev_stream pgev_chunks ""
    sum_ratio chunks_ratio rows_per_s raw_chunks pgev_chunks
fi
if [[ "$run_unnamed" = yes ]]; then
    header "raw libpq" "pgev"
    row "unnamed isolated queries/s" qps raw_unnamed pgev_unnamed ""
    sum_ratio unnamed_ratio qps raw_unnamed pgev_unnamed
fi
for n in "${fanouts[@]}"; do
    header "raw x$n" "pgev pool"
    row "fanout queries/s ($fanout_clients clients, pool of $n)" qps "raw_par$n" "pgev_fanout$n" ">= 0.85"
    printf '%-44s %12s %12.0f\n' "  pgev p99 latency us" "" "$(median p99_us "pgev_fanout$n")"
    printf '%-44s %12s %12.0f\n' "  pgev client CPU %" "" "$(median cpu_pct "pgev_fanout$n")"
    sum_ratio "fanout${n}_ratio" qps "raw_par$n" "pgev_fanout$n"
    if ((n >= 2)); then
        row "  the same split over 2 threads (2 loops)" qps "raw_par$n" "pgev_fanthr$n" ""
        sum_ratio "fanout${n}_threads_ratio" qps "raw_par$n" "pgev_fanthr$n"
    fi
done
if ((fanout_max > 0)); then
    header "100 clients" "10,000"
    row "fanout queries/s, pool of $fanout_max" qps pgev_fan100 pgev_fan10k ">= 0.90"
    row "  heap bytes per queued query" bytes_per_queued pgev_fan100 pgev_fan10k ""
    row "  peak RSS KB" rss_kb pgev_fan100 pgev_fan10k ""
    sum_ratio fanout_10k_ratio qps pgev_fan100 pgev_fan10k
    summary+=("bytes_per_queued_10k=$(median bytes_per_queued pgev_fan10k)")
fi
if [[ "$run_copy" = yes ]]; then
    header "psql \\copy" "pgev"
    row "COPY FROM STDIN rows/s ($copy_rows rows)" rows_per_s psql_copy pgev_copy ""
    sum_ratio copy_ratio rows_per_s psql_copy pgev_copy
fi
if [[ "$run_peers" = yes ]]; then
    echo
    echo "one connection, 1000 concurrent clients, prepared SELECT \$1::int4 (queries/s; ratio: pgev/peer)"
    pgev_one=$(median qps pgev_one)
    printf '%-44s %12.0f\n' "pgev (pgev_pool of 1)" "$pgev_one"
    if [[ "$peers_group" == *pgjs* ]]; then
        printf '%-44s %12.0f %12s %9s   %s\n' "postgres.js $pgjs_version (max: 1), node $(node --version)" \
            "$(median qps pgjs)" "" "$(pair_ratio qps pgjs pgev_one)" ">= 2.5"
        summary+=("postgresjs_ratio=$(pair_ratio qps pgjs pgev_one)")
    fi
    if [[ -n "$apg_version" ]]; then
        printf '%-44s %12.0f %12s %9s   %s\n' "asyncpg $apg_version, pool of 1, 1000 clients" \
            "$(median qps apg)" "" "$(pair_ratio qps apg pgev_one)" ">= 20"
        printf '%-44s %12.0f %12s %9s   %s\n' "asyncpg $apg_version, one client" \
            "$(median qps apg_seq)" "" "$(pair_ratio qps apg_seq pgev_one)" ">= 20"
        # the conservative one: against whichever way asyncpg did better
        summary+=("asyncpg_ratio=$(awk -v a="$(pair_ratio qps apg pgev_one)" -v b="$(pair_ratio qps apg_seq pgev_one)" \
            'BEGIN { print (a < b ? a : b) }')")
    fi
fi
if [[ "$pgbench_ok" = yes ]]; then
    header "pgbench" "pgev"
    row "accounts lookup, 1 conn (pgbench: no pipeline)" qps pgb_c1 pgev_acc ""
    row "accounts lookup, 4 conns (pgev: a pool of 4)" qps pgb_c4 pgev_acc4 ""
    row "accounts lookup, pipelined, 100 per Sync" qps pgb_pipe pgev_accb ""
    sum_ratio pgbench_ratio qps pgb_c1 pgev_acc
    sum_ratio pgbench_pipeline_ratio qps pgb_pipe pgev_accb
fi
if [[ -n "$cg_raw_iso" ]]; then
    echo
    printf '%-44s %12s %12s %9s   %s\n' "client instructions per query (callgrind)" "raw libpq" "pgev" "pgev-raw" "target"
    for k in iso batch; do
        declare -n cr="cg_raw_$k" cp="cg_pgev_$k"
        printf '%-44s %12s %12s %9s   %s\n' "  $([[ $k = iso ]] && echo isolated || echo batched)" \
            "$cr" "$cp" "$((cp - cr))" "<= 1000"
        summary+=("instr_${k}_raw=$cr" "instr_${k}_pgev=$cp")
        unset -n cr cp
    done
fi
if [[ -n "$plot_dir" ]]; then
    echo
    echo "plots: $plot_dir/point.png, $plot_dir/rate.png"
fi
echo
echo "compare ${summary[*]}"
