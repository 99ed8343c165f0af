#!/usr/bin/env bash
# run.sh: build pgev's libFuzzer targets and run each one briefly over its corpus.
#
#   bash tests/fuzz/run.sh [SECONDS]     (default 10 seconds per target)
#
# Targets (tests/fuzz/fuzz_<name>.c): types (the typed value decoders of lib/types.c, text
# and binary formats: scalars, json/jsonb, inet/cidr, interval, and arrays with every element
# accessor, and records with every field accessor), params (the pgev_params builder, array parameters decoded back and compared) and
# decoders (lib/types.c's decoders and array parsers called directly on exact-size heap blocks,
# so that ASan sees any read past a value, which libpq's packed result blocks would hide). Each is built with clang
# -fsanitize=fuzzer,address,undefined, out of tree in $PGEV_FUZZ_BUILD (default a fresh
# directory under /tmp, removed afterwards), from the library sources it needs, and runs for
# SECONDS over a copy of tests/fuzz/corpus/<name>/ (the kept corpus is only read; set
# PGEV_FUZZ_MERGE=1 to merge new interesting inputs back into it). A crash, a sanitizer
# report or a broken promise (the targets abort) fails the run and leaves the reproducer
# in the build directory (which is then kept).
#
# Without a clang that has libFuzzer, it prints "skipped: ..." and exits 0 (77 with
# PGEV_FUZZ_STRICT=1), so that CI runs it wherever it can.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-10}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: run.sh [SECONDS]" >&2; exit 2; }

skip() {
    echo "fuzz/run.sh: skipped: $*"
    [[ "${PGEV_FUZZ_STRICT:-0}" == 1 ]] && exit 77
    exit 0
}

cc=${PGEV_FUZZ_CC:-}
if [[ -z "$cc" ]]; then
    for c in clang clang-18 clang-17 clang-16 clang-15 clang-14; do
        if command -v "$c" >/dev/null 2>&1; then
            cc=$c
            break
        fi
    done
fi
[[ -n "$cc" ]] || skip "clang not found (apt-get install clang)"
command -v pkg-config >/dev/null 2>&1 || skip "pkg-config not found"
pq_cflags=$(pkg-config --cflags libpq) || skip "libpq development files not found"
pq_libs=$(pkg-config --libs libpq)

build=${PGEV_FUZZ_BUILD:-}
own_build=0
if [[ -z "$build" ]]; then
    build=$(mktemp -d /tmp/pgev-fuzz.XXXXXX)
    own_build=1
fi
mkdir -p "$build"
keep=0
cleanup() {
    if [[ $own_build -eq 1 && $keep -eq 0 ]]; then
        rm -rf "$build"
    fi
}
trap cleanup EXIT

# The library sources include config.h, which only configure makes; the parts fuzzed here
# need none of its macros.
: >"$build/config.h"
flags=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=all -std=gnu11 -DPGEV_BUILDING -I"$build" -I"$root/include"
    -I"$root/lib")
# shellcheck disable=SC2206 # pkg-config output is a list of words
flags+=($pq_cflags)

# A quick probe: some clang packages lack the libFuzzer runtime.
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    >"$build/probe.c"
"$cc" -fsanitize=fuzzer "$build/probe.c" -o "$build/probe" >/dev/null 2>&1 ||
    skip "$cc cannot build libFuzzer targets (-fsanitize=fuzzer)"

status=0
for target in types params decoders; do
    lib_sources=("$root/lib/types.c" "$root/lib/result.c" "$root/lib/error.c")
    # fuzz_decoders includes lib/types.c itself, to reach its static decoders.
    [[ $target == decoders ]] && lib_sources=("$root/lib/result.c" "$root/lib/error.c")
    echo "fuzz/run.sh: building fuzz_$target with $cc"
    # shellcheck disable=SC2086 # $pq_libs is a list of words
    if ! "$cc" "${flags[@]}" "$here/fuzz_$target.c" "${lib_sources[@]}" $pq_libs \
        -o "$build/fuzz_$target"; then
        echo "fuzz/run.sh: FAILED: fuzz_$target does not build" >&2
        status=1
        continue
    fi
    work=$build/corpus-$target
    rm -rf "$work"
    mkdir -p "$work"
    if [[ -d "$here/corpus/$target" ]]; then
        cp "$here/corpus/$target"/* "$work"/ 2>/dev/null || true
    fi
    echo "fuzz/run.sh: running fuzz_$target for ${seconds}s over $(find "$work" -type f | wc -l) corpus inputs"
    if ! (cd "$build" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "./fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/crash-$target-" "$work" \
        >"$build/fuzz_$target.log" 2>&1); then
        echo "fuzz/run.sh: FAILED: fuzz_$target found a problem; reproducer and log in $build" >&2
        tail -n 40 "$build/fuzz_$target.log" >&2
        keep=1
        status=1
        continue
    fi
    grep -E '^stat::number_of_executed_units|^Done ' "$build/fuzz_$target.log" | sed 's/^/    /' || true
    if [[ "${PGEV_FUZZ_MERGE:-0}" == 1 ]]; then
        mkdir -p "$here/corpus/$target"
        "$build/fuzz_$target" -merge=1 "$here/corpus/$target" "$work" >/dev/null 2>&1 || true
    fi
    echo "fuzz/run.sh: fuzz_$target: ok"
done
exit $status
