#!/usr/bin/env bash
# The engine's suites again with impulse built under AddressSanitizer and
# UndefinedBehaviorSanitizer (a second build in <build>/asan): the C unit
# tests, the policy suite inside the engine (impulse test), and the specs
# that start impulse processes (spec/01-unit, spec/03-engine). Every
# process writes its sanitizer reports to a file of its own (log_path), so
# a report fails the run even when the process that made it was a
# background impulse a spec merely stopped; halt_on_error ends that
# process at its first report.
#
#   engine/tests/sanitize.sh [build dir] [spec folders...]   (ctest: sanitize)
#
# ThreadSanitizer cannot run here: its runtime fails librdkafka's thread
# creation (thrd_create is not intercepted), and every worker starts
# librdkafka threads; the thread-heavy cache code runs under TSan alone
# (c/cache_stress_tsan).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
shift || true
SPECS=("$@")
[ ${#SPECS[@]} -gt 0 ] || SPECS=(spec/01-unit spec/03-engine)
SAN=$BUILD/asan
REPORTS=$SAN/reports
mkdir -p "$SAN"
rm -rf "$REPORTS"
mkdir -p "$REPORTS"

if ! { cmake -S "$ROOT" -B "$SAN" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMPULSE_ASAN=ON \
    -DIMPULSE_JEMALLOC=OFF && cmake --build "$SAN" -j"$(nproc)"; } >"$SAN/build.log" 2>&1; then
    tail -40 "$SAN/build.log"
    echo "sanitize: the ASan build failed (log: $SAN/build.log)"
    exit 1
fi

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan"
export LSAN_OPTIONS="suppressions=$ROOT/engine/tests/lsan.supp:print_suppressions=0"
export IMPULSE_BIN=$SAN/impulse
export IMPULSE_KAFKA_MOCK=$SAN/impulse-kafka-mock
export IMPULSE_BUILD=$SAN

failed=0
cd "$ROOT"
if ! (cd "$SAN" && ctest -R '^c/' --output-on-failure) >"$SAN/c.log" 2>&1; then
    tail -40 "$SAN/c.log"
    echo "sanitize: a C unit test failed under ASan + UBSan (log: $SAN/c.log)"
    failed=1
fi
if ! "$IMPULSE_BIN" test spec/02-policy >"$SAN/policy.log" 2>&1; then
    tail -40 "$SAN/policy.log"
    echo "sanitize: impulse test spec/02-policy failed under ASan + UBSan"
    failed=1
fi
for dir in "${SPECS[@]}"; do
    log=$SAN/$(basename "$dir").log
    if ! busted --lua=luajit -o TAP "$dir" >"$log" 2>&1; then
        grep -E '^not ok|^# ' "$log" | head -40
        echo "sanitize: $dir failed under ASan + UBSan (log: $log)"
        failed=1
    else
        echo "sanitize: $dir: $(grep -c '^ok' "$log") specs passed under ASan + UBSan"
    fi
done

reports=$(find "$REPORTS" -type f | sort)
if [ -n "$reports" ]; then
    for r in $reports; do
        echo "== $r"
        head -60 "$r"
    done
    echo "sanitize: $(echo "$reports" | wc -l) sanitizer report(s)"
    failed=1
else
    echo "sanitize: 0 sanitizer reports"
fi
exit "$failed"
