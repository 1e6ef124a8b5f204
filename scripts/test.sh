#!/bin/sh
# Sets up, builds and runs the whole test suite, then prints one line
# "N passed, N failed" counting the individual Criterion tests.
# Usage: scripts/test.sh [builddir] [extra meson options...]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
# LeakSanitizer (on by default in ASan builds) must stay on: a leak fails the test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
# Idle BLIS (OpenMP) threads must sleep, not spin: libgomp reads this when it loads.
# A short spin first keeps BLIS's barriers inside one GEMM fast (see sg_tensor.h).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
scripts/setup.sh "$@"
ninja -C "$BUILD" >/dev/null
status=0
meson test -C "$BUILD" --print-errorlogs --num-processes 2 > "$BUILD/test-output.txt" 2>&1 || status=$?
# Criterion's per-executable summary: "[====] Synthesis: Tested: N | Passing: P | Failing: F | Crashing: C"
# Criterion counts a test as passing when its worker process fails only at exit, which
# is where LeakSanitizer reports leaks: the report goes to stderr and the test still
# counts as passed (with abort_on_error=1 Criterion adds "Warning! The test `x` crashed
# during its setup or teardown"; without it the executable even exits 0). So each leak
# report (or such warning) moves one test from passed to failed, and an executable that
# exits non-zero with no test counted as failed adds one failure.
sed 's/\x1b\[[0-9;]*m//g' "$BUILD/meson-logs/testlog.txt" | awk '
    function flush() {
        bad = leaks > warns ? leaks : warns
        p -= bad; f += bad; blkfail += bad
        if (inblk && rc != 0 && blkfail == 0) f += 1
        inblk = 0; blkfail = 0; rc = 0; leaks = 0; warns = 0
    }
    /^=+ [0-9]+\/[0-9]+ =+$/ { flush(); inblk = 1 }
    /^result:/ { rc = ($2 == "exit" && $4 == "0") ? 0 : 1 }
    /ERROR: LeakSanitizer: detected memory leaks/ { leaks += 1 }
    /crashed during its setup or teardown/ { warns += 1 }
    /^\[====\] Synthesis/ { for (i = 1; i <= NF; i++) {
        if ($i == "Passing:") p += $(i+1)
        if ($i == "Failing:") { f += $(i+1); blkfail += $(i+1) } } }  # Crashing is a subset of Failing
    END { flush(); print p+0 " passed, " f+0 " failed" }' > "$BUILD/test-summary.txt"
tail -n 25 "$BUILD/test-output.txt" | grep -E "^(Ok|Fail|Timeout|Expected|Unexpected|Skipped):" || true
if [ "$status" -ne 0 ] || ! grep -q " 0 failed" "$BUILD/test-summary.txt"; then
    sed 's/\x1b\[[0-9;]*m//g' "$BUILD/meson-logs/testlog.txt" | grep -E -A3 "FAIL|Assertion|CRASH|ERROR|leak of" | head -40 || true
fi
cat "$BUILD/test-summary.txt"
if [ "$status" -eq 0 ] && grep -q " 0 failed" "$BUILD/test-summary.txt"; then exit 0; fi
exit 1
