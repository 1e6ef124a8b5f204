#!/bin/sh
# Sets up, builds and runs the whole test suite, then prints one line
# "N passed, N failed" counting the individual Criterion tests.
# Usage: scripts/test.sh [builddir] [extra meson options...]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
scripts/setup.sh "$@"
ninja -C "$BUILD" >/dev/null
status=0
meson test -C "$BUILD" --print-errorlogs --num-processes 2 > "$BUILD/test-output.txt" 2>&1 || status=$?
# Criterion's per-executable summary: "[====] Synthesis: Tested: N | Passing: P | Failing: F | Crashing: C"
grep -E "^\[====\] Synthesis" "$BUILD/meson-logs/testlog.txt" | sed 's/\x1b\[[0-9;]*m//g' | awk '
    { for (i = 1; i <= NF; i++) { if ($i == "Passing:") p += $(i+1); if ($i == "Failing:") f += $(i+1); if ($i == "Crashing:") c += $(i+1) } }
    END { failed = f + c; print p+0 " passed, " failed+0 " failed" }' > "$BUILD/test-summary.txt"
tail -n 25 "$BUILD/test-output.txt" | grep -E "^(Ok|Fail|Timeout|Expected|Unexpected|Skipped):" || true
if [ "$status" -ne 0 ]; then
    grep -E "FAIL|Assertion|CRASH|ERROR" "$BUILD/test-output.txt" | head -40 || true
fi
cat "$BUILD/test-summary.txt"
if [ "$status" -eq 0 ] && grep -q " 0 failed" "$BUILD/test-summary.txt"; then exit 0; fi
exit 1
