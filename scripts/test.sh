#!/usr/bin/env bash
# test.sh: pgev's whole test run, as the README and CI run it:  bash scripts/test.sh
#
#  1. scripts/deps.sh (installs missing Debian packages)
#  2. autoreconf -fi when configure is missing or older than configure.ac / Makefile.am
#  3. build/       ../configure --enable-werror; make; make check
#  3b. the compose-style server: a second server set up as docker-compose.yml sets one up (TCP
#     on 127.0.0.1, scram-sha-256 password logins, password "pgev", database "pgev"), started
#     without Docker by tools/pgev-testdb start --password pgev --dbname pgev; build/'s suite
#     runs once more against it with PGEV_TEST_DSN set to its URI (the harness then starts no
#     cluster of its own: the tests see an external server, as a Docker user's run does, and
#     what needs the harness's own cluster counts as skipped, with the reason). Runs by default
#     (PGEV_COMPOSE=0 skips it, counted as skipped).
#  4. build-asan/  the same with AddressSanitizer + UndefinedBehaviorSanitizer, static libpgev
#  5. make distcheck in build/, when PGEV_DISTCHECK=1 or CI=true (PGEV_DISTCHECK=0 skips it)
#  6. the libFuzzer targets, briefly (tests/fuzz/run.sh, PGEV_FUZZ_SECONDS per target, default 10;
#     0 skips it); each target that runs clean counts as one passed test
#  7. the libpq 18 leg: build-pg18/  ../configure --enable-werror against libpq 18.4 and the
#     libpq 17 headers, make; make check against PostgreSQL 18.4 servers, all fetched by
#     scripts/pg18-rig.sh (cached outside the clone). This is where pgev's libpq 17+ code runs
#     (PQsendPipelineSync, PQsetChunkedRowsMode, PQclosePrepared); steps 3-6 run the libpq 15
#     fallbacks of Debian 12. Only the normal build runs here (no sanitizers, distcheck or fuzz:
#     they test no libpq-specific code and would double the run's time). When the rig cannot be
#     fetched (no network) the leg counts as skipped, with the reason, never as passed.
#
# Every test program runs under tests/pg-harness.sh, which gives it a throwaway PostgreSQL
# cluster (or the server of PGEV_TEST_DSN, when set). The Check summaries of all builds are
# added up; the last line printed is always "N passed, N failed, N skipped" (the reasons of
# the skips are listed above it). A build step that fails
# counts as one failure, as does a test program that died without a Check summary. A test that
# printed "skipped: why" (it cannot run here) counts as skipped, not passed; the summary lists
# the reasons. Exit status 0 only when nothing failed.
#
# Environment: PGEV_JOBS (make -j, default 2), PGEV_DISTCHECK, PGEV_COMPOSE, PGEV_SKIP_ASAN=1 (skip step 4,
# for quick local runs only), PGEV_SKIP_DEPS=1 (skip step 1), PGEV_PG18=0 (skip step 7, counted
# as skipped) or 1 (a rig that cannot be fetched is a failure; default: a skip).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

jobs=${PGEV_JOBS:-2}
passed=0
failed=0
skipped=0
problems=() # one line per failed step or test, for the summary
skips=()    # one line per program or leg with skipped tests, and why
legs=()     # "name: N passed, N failed, N skipped" per build
timings=()  # "step N s", the wall-clock time of each step
failing_logs=()
done_=0

section() { printf '\n==== %s ====\n' "$*"; }

# A step that is not a Check test failed: it counts as one failure.
step_failed() {
    failed=$((failed + 1))
    problems+=("$1")
    echo "test.sh: FAILED: $1" >&2
}

summary() {
    local p l
    done_=1
    section "summary"
    if [[ ${#failing_logs[@]} -gt 0 ]]; then
        for l in "${failing_logs[@]}"; do
            echo "---- tail of $l ----"
            tail -n 40 "$l" || true
        done
        echo "----"
    fi
    for p in "${legs[@]}"; do
        echo "  $p"
    done
    if [[ ${#timings[@]} -gt 0 ]]; then
        l="  time:"
        for p in "${timings[@]}"; do
            l+=" $p,"
        done
        echo "$l total $SECONDS s"
    fi
    for p in "${skips[@]}"; do
        echo "  skipped: $p"
    done
    for p in "${problems[@]}"; do
        echo "  $p"
    done
    echo "$passed passed, $failed failed, $skipped skipped"
}

# A failure that ends the run early.
fatal() {
    step_failed "$1"
    summary
    exit 1
}

compose_dir= # the compose-style server's directory while it runs (step 3b)

# On an unexpected exit (set -e, a signal), still end with the counts line.
on_exit() {
    local rc=$?
    if [[ -n "$compose_dir" ]]; then
        bash tools/pgev-testdb stop "$compose_dir" >&2 || true
        compose_dir=
    fi
    if [[ $done_ -eq 0 ]]; then
        step_failed "test.sh stopped unexpectedly (status $rc)" 2>/dev/null
        summary
        [[ $rc -ne 0 ]] || rc=1
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# collect BUILD-NAME BUILD-DIR: add up the results of the tests of one "make check".
# Automake leaves tests/NAME.trs (":test-result: PASS|FAIL|SKIP|ERROR|...") and tests/NAME.log
# (the program's output) for every test it ran. Returns 1 when no test result was found.
collect() {
    local name=$1 dir=$2 trs log result counts c f e s why found=0
    for trs in "$dir"/tests/*.trs; do
        [[ -f "$trs" ]] || continue
        found=1
        log=${trs%.trs}.log
        result=$(sed -n 's/^:test-result: *//p' "$trs" | head -n 1)
        # "100%: Checks: 12, Failures: 0, Errors: 0" -> "12 0 0", summed over all runners.
        counts=$(sed -n 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' \
            "$log" 2>/dev/null | awk '{c+=$1; f+=$2; e+=$3; n++} END {if (n) print c, f, e}')
        if [[ -n "$counts" ]]; then
            read -r c f e <<<"$counts"
            # Tests that could not run here said "skipped: why" and returned (Check counts them
            # as passed).
            s=$(grep -c '^skipped:' "$log" || true)
            ((s <= c - f - e)) || s=$((c - f - e))
            if ((s > 0)); then
                # Every distinct reason, with how many checks gave it.
                why=$(grep '^skipped:' "$log" | sed 's/^skipped: *//' | sort | uniq -c |
                    sed 's/^ *\([0-9]*\) \(.*\)/\2 (\1)/' | awk 'NR > 1 {printf "; "} {printf "%s", $0}')
                skips+=("[$name] $(basename "$log" .log): $s of $c checks: $why")
                skipped=$((skipped + s))
            fi
            passed=$((passed + c - f - e - s))
            failed=$((failed + f + e))
            if ((f + e > 0)); then
                problems+=("[$name] $(basename "$log" .log): $((f + e)) of $c checks failed")
                failing_logs+=("$log")
            elif [[ "$result" != PASS && "$result" != XFAIL ]]; then
                # All checks passed but the program failed afterwards (a sanitizer report at
                # exit, a crash in teardown, a harness error).
                failed=$((failed + 1))
                problems+=("[$name] $(basename "$log" .log): all $c checks passed, but the program failed ($result)")
                failing_logs+=("$log")
            fi
        else
            case $result in
            PASS | XFAIL) passed=$((passed + 1)) ;;
            SKIP)
                skipped=$((skipped + 1))
                why=$(grep -m 1 '^skipped:' "$log" 2>/dev/null | sed 's/^skipped: *//' || true)
                skips+=("[$name] $(basename "$log" .log): the whole program${why:+: $why}")
                ;;
            *)
                failed=$((failed + 1))
                problems+=("[$name] $(basename "$log" .log): $result without a Check summary (crashed or could not run)")
                failing_logs+=("$log")
                ;;
            esac
        fi
        # The failing checks by name: Check prints "file:line:F:tcase:test:iter: message"
        # (F = assertion failed, E = error such as a signal or timeout).
        if [[ -f "$log" ]] && grep -q ':[EF]:' "$log"; then
            echo "[$name] failing checks in $(basename "$log" .log):"
            grep ':[EF]:' "$log" | sed 's/^/    /'
        fi
    done
    [[ $found -eq 1 ]]
}

# build_and_check NAME DIR [CONFIGURE-ARG...]: configure (when needed), make, make check.
# Adds the build's own counts to legs.
build_and_check() {
    local p0=$passed f0=$failed s0=$skipped rc=0 t0=$SECONDS
    build_and_check_ "$@" || rc=$?
    timings+=("$1 $((SECONDS - t0)) s")
    legs+=("$1: $((passed - p0)) passed, $((failed - f0)) failed, $((skipped - s0)) skipped")
    return "$rc"
}

build_and_check_() {
    local name=$1 dir=$2 args_file fail_before rc
    shift 2
    section "$name build in $dir/ (configure $*)"
    mkdir -p "$dir"
    args_file=$dir/.pgev-configure-args
    # Configure again when configure changed or the arguments differ from the last time.
    if [[ ! -f "$dir/config.status" || ! -f "$dir/Makefile" || configure -nt "$dir/config.status" ]] ||
        [[ "$(cat "$args_file" 2>/dev/null)" != "$*" ]]; then
        if ! (cd "$dir" && ../configure "$@"); then
            step_failed "[$name] configure failed (see $dir/config.log)"
            return 1
        fi
        printf '%s' "$*" >"$args_file"
    fi
    if ! make -C "$dir" -j"$jobs"; then
        step_failed "[$name] make failed"
        return 1
    fi

    section "$name: make check"
    rm -f "$dir"/tests/*.log "$dir"/tests/*.trs "$dir/test-suite.log"
    rc=0
    make -C "$dir" -j"$jobs" check || rc=$?
    fail_before=$failed
    if ! collect "$name" "$dir"; then
        step_failed "[$name] make check ran no test (status $rc)"
        return 1
    fi
    if [[ $rc -ne 0 && $failed -eq $fail_before ]]; then
        step_failed "[$name] make check failed (status $rc) though no test reported a failure (a test program did not build?)"
        return 1
    fi
    return 0
}

# --- 1. dependencies ---------------------------------------------------------------------------
if [[ "${PGEV_SKIP_DEPS:-0}" != 1 ]]; then
    section "dependencies"
    bash scripts/deps.sh || step_failed "scripts/deps.sh could not install the dependencies"
fi

# --- 2. autotools ------------------------------------------------------------------------------
if [[ -f config.status ]]; then
    fatal "the source tree is configured in place (config.status): run 'make distclean' at the top, builds go to build/"
fi
if [[ ! -f configure || ! -f Makefile.in || configure.ac -nt configure || Makefile.am -nt Makefile.in ]]; then
    section "autoreconf -fi"
    autoreconf -fi || fatal "autoreconf failed"
fi

# --- 3. normal build ---------------------------------------------------------------------------
normal_ok=0
build_and_check normal build --enable-werror && normal_ok=1

# --- 3b. the compose-style server --------------------------------------------------------------
compose_leg() {
    local dsn rc=0 l p0=$passed f0=$failed s0=$skipped kept=() t0=$SECONDS
    section "compose-style server (TCP, SCRAM password, database pgev): make check in build/"
    compose_dir=$(mktemp -d /tmp/pgev-compose.XXXXXX)
    if ! dsn=$(bash tools/pgev-testdb start --password pgev --dbname pgev "$compose_dir"); then
        step_failed "[compose] tools/pgev-testdb start --password pgev --dbname pgev failed (see above)"
    else
        # The normal build's failing logs are about to be overwritten: keep copies.
        for l in "${failing_logs[@]}"; do
            if [[ "$l" == build/tests/*.log && -f "$l" ]]; then
                cp "$l" "${l%.log}.normal.log"
                kept+=("${l%.log}.normal.log")
            else
                kept+=("$l")
            fi
        done
        failing_logs=("${kept[@]}")
        rm -f build/tests/*.trs build/test-suite.log
        find build/tests -name '*.log' ! -name '*.normal.log' -delete
        echo "test.sh: PGEV_TEST_DSN=$dsn"
        PGEV_TEST_DSN=$dsn make -C build -j"$jobs" check || rc=$?
        if ! collect compose build; then
            step_failed "[compose] make check ran no test (status $rc)"
        elif [[ $rc -ne 0 && $failed -eq $f0 ]]; then
            step_failed "[compose] make check failed (status $rc) though no test reported a failure"
        fi
    fi
    bash tools/pgev-testdb stop "$compose_dir" || step_failed "[compose] could not remove $compose_dir"
    compose_dir=
    legs+=("compose: $((passed - p0)) passed, $((failed - f0)) failed, $((skipped - s0)) skipped")
    timings+=("compose $((SECONDS - t0)) s")
}

if [[ "${PGEV_COMPOSE:-}" == 0 ]]; then
    skipped=$((skipped + 1))
    skips+=("[compose] the whole compose-style server leg: PGEV_COMPOSE=0")
elif [[ $normal_ok -eq 1 ]]; then
    compose_leg
else
    step_failed "[compose] not run: the normal build failed"
fi

# --- 4. sanitizer build ------------------------------------------------------------------------
if [[ "${PGEV_SKIP_ASAN:-0}" != 1 ]]; then
    san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
    # Sanitized code is slower: give Check's per-test timeouts room.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-3} \
        build_and_check asan build-asan --enable-werror --disable-shared \
        "CFLAGS=-O1 -g $san" "LDFLAGS=$san" || true
else
    echo "test.sh: PGEV_SKIP_ASAN=1: skipping the sanitizer build"
fi

# --- 5. distcheck ------------------------------------------------------------------------------
distcheck=${PGEV_DISTCHECK:-}
if [[ -z "$distcheck" && "${CI:-}" == true ]]; then
    distcheck=1
fi
if [[ "$distcheck" == 1 ]]; then
    if [[ $normal_ok -eq 1 ]]; then
        section "make distcheck"
        t0=$SECONDS
        make -C build -j"$jobs" distcheck DISTCHECK_CONFIGURE_FLAGS=--enable-werror ||
            step_failed "make distcheck failed"
        timings+=("distcheck $((SECONDS - t0)) s")
    else
        step_failed "make distcheck not run: the normal build failed"
    fi
fi

# --- 6. fuzzing -------------------------------------------------------------------------------
fuzz_seconds=${PGEV_FUZZ_SECONDS:-10}
if [[ "$fuzz_seconds" != 0 ]]; then
    section "fuzz (${fuzz_seconds}s per target)"
    fuzz_log=$(mktemp /tmp/pgev-fuzz-log.XXXXXX)
    fuzz_rc=0
    t0=$SECONDS
    bash tests/fuzz/run.sh "$fuzz_seconds" 2>&1 | tee "$fuzz_log" || fuzz_rc=$?
    timings+=("fuzz $((SECONDS - t0)) s")
    ok_targets=$(grep -c '^fuzz/run.sh: fuzz_[a-z_]*: ok$' "$fuzz_log" || true)
    passed=$((passed + ok_targets))
    if grep -q '^fuzz/run.sh: skipped' "$fuzz_log"; then
        skipped=$((skipped + 1))
        skips+=("$(grep -m 1 '^fuzz/run.sh: skipped' "$fuzz_log")")
    fi
    if [[ $fuzz_rc -ne 0 ]]; then
        step_failed "fuzzing failed (see the output above: tests/fuzz/run.sh)"
    fi
    rm -f "$fuzz_log"
fi

# --- 7. the libpq 18 / PostgreSQL 18 leg --------------------------------------------------------
# pg18_leg: fetch (or reuse) the rig, then build and test against it. The rig's libpq.pc puts an
# rpath to libpq.so.5.18 into what links it; PGEV_PGBIN points tests/pgcluster.sh at its servers.
pg18_leg() {
    local rig_log rig rig_rc why
    section "libpq 18 leg: scripts/pg18-rig.sh"
    rig_log=$(mktemp /tmp/pgev-pg18-rig.XXXXXX)
    rig_rc=0
    rig=$(bash scripts/pg18-rig.sh 2>"$rig_log") || rig_rc=$?
    cat "$rig_log" >&2
    if [[ $rig_rc -ne 0 ]]; then
        why=$(sed -n 's/^pg18-rig.sh: //p' "$rig_log" | tail -n 1)
        rm -f "$rig_log"
        if [[ "${PGEV_PG18:-}" == 1 ]]; then
            step_failed "[pg18] the libpq 18 rig could not be fetched: ${why:-see above}"
        else
            skipped=$((skipped + 1))
            skips+=("[pg18] the whole libpq 18 / PostgreSQL 18 leg: the rig could not be fetched: ${why:-see above}")
        fi
        return
    fi
    rm -f "$rig_log"
    # shellcheck disable=SC1091 # written by scripts/pg18-rig.sh
    source "$rig/env.sh"
    # PKG_CONFIG_PATH as a configure argument: a new rig reconfigures the build.
    build_and_check pg18 build-pg18 --enable-werror "PKG_CONFIG_PATH=$PKG_CONFIG_PATH" || return 0
    # The leg tests what it says only if configure took the libpq 17+ functions and the
    # library loads the rig's libpq.
    if ! grep -q '^#define HAVE_PQSENDPIPELINESYNC 1' build-pg18/config.h ||
        ! grep -q '^#define HAVE_PQSETCHUNKEDROWSMODE 1' build-pg18/config.h ||
        ! grep -q '^#define HAVE_PQCLOSEPREPARED 1' build-pg18/config.h; then
        step_failed "[pg18] configure did not find the libpq 17 functions (see build-pg18/config.log)"
    fi
    if ! ldd build-pg18/lib/.libs/libpgev.so 2>/dev/null | grep -qF "=> $PGEV_RIG_LIBDIR/libpq.so.5 "; then
        step_failed "[pg18] build-pg18's libpgev does not load libpq from $PGEV_RIG_LIBDIR"
    fi
    sed 's/^/  /' "$rig/versions"
}

if [[ "${PGEV_PG18:-}" == 0 ]]; then
    skipped=$((skipped + 1))
    skips+=("[pg18] the whole libpq 18 / PostgreSQL 18 leg: PGEV_PG18=0")
else
    pg18_leg
fi

if ((passed + failed == 0)); then
    step_failed "no test ran"
fi
summary
[[ $failed -eq 0 ]]
