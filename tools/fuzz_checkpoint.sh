#!/bin/sh
# Builds the checkpoint-loader fuzzer (clang, libFuzzer, ASan+UBSan) and runs it.
# Usage: tools/fuzz_checkpoint.sh [seconds=60] [builddir=build-fuzz]
# Prints "fuzz: skipped" and exits 0 when clang is not installed. Crashing inputs are
# saved in <builddir>/fuzz-artifacts/; the corpus grows in <builddir>/fuzz-corpus/.
# Longer runs: tools/fuzz_checkpoint.sh 3600   (or run the binary with -jobs=N).
# FUZZ_SEED=n makes a run reproducible (CI runs FUZZ_SEED=1 with FUZZ_H5PY=0, then =1).
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-60}
B=${2:-build-fuzz}
CC=${FUZZ_CC:-clang-14}
if ! command -v "$CC" >/dev/null 2>&1; then
    CC=clang
    command -v "$CC" >/dev/null 2>&1 || { echo "fuzz: skipped (no clang)"; exit 0; }
fi
# The library itself is built with coverage instrumentation so libFuzzer sees our
# branches (HDF5 is the system library: not instrumented).
if [ ! -f "$B/build.ninja" ]; then
    CC="$CC" meson setup "$B" -Dtests=false -Dbuildtype=debugoptimized -Dwerror=false \
        -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
fi
# only the library (and its libseqgrad.so symlink): examples and benches are not needed
ninja -j2 -C "$B" libseqgrad.so.0.1.0 >/dev/null 2>&1 || ninja -j2 -C "$B" >/dev/null
H5="$(pkg-config --cflags --libs hdf5)"
BABS="$(cd "$B" && pwd)"
# shellcheck disable=SC2086
"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -Itensor -Iautograd -Inn fuzz/fuzz_checkpoint.c \
    -L"$BABS" -lseqgrad -Wl,-rpath,"$BABS" $H5 -lm -o "$B/fuzz_checkpoint"
mkdir -p "$B/fuzz-corpus" "$B/fuzz-artifacts"
SG_FUZZ_WRITE_SEED="$B/fuzz-corpus/seed.h5" "$B/fuzz_checkpoint"
cp fuzz/regressions/*.h5 "$B/fuzz-corpus/" 2>/dev/null || true
# FUZZ_H5PY=1 (default) also seeds files in the reference's (h5py, earliest HDF5) format,
# whose object headers have no checksums: HDF5 1.10.8 crashed on corrupt ones until the
# loader checked them itself (nn/checkpoint_ohdr.c; crashers in fuzz/regressions-h5py/).
# FUZZ_H5PY=0 fuzzes only the checksummed format seqgrad writes.
if [ "${FUZZ_H5PY:-1}" = 1 ]; then
    FUZZ_MAXLEN=262144
    cp tests/fixtures/checkpoint_*.h5 fuzz/regressions-h5py/*.h5 "$B/fuzz-corpus/" 2>/dev/null || true
else
    FUZZ_MAXLEN=65536
    rm -f "$B"/fuzz-corpus/checkpoint_*.h5
    find "$B/fuzz-corpus" -type f -size +64k -delete  # h5py-derived inputs (our seed is 15 KB)
fi
echo "fuzz: running $SECS s on $(ls "$B/fuzz-corpus" | wc -l) corpus files"
status=0
# HDF5 trusts sizes in corrupt files and may ask malloc for 2^48 bytes, which fails and is
# handled (NULL -> error): let such requests return NULL instead of counting as crashes;
# real memory use is still capped by -rss_limit_mb.
SG_NUM_THREADS=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
ASAN_OPTIONS=allocator_may_return_null=1 "$B/fuzz_checkpoint" \
    ${FUZZ_SEED:+-seed=$FUZZ_SEED} -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 \
    -malloc_limit_mb=1073741824 ${FUZZ_MAXLEN:+-max_len=$FUZZ_MAXLEN} -print_final_stats=1 \
    -artifact_prefix="$B/fuzz-artifacts/" "$B/fuzz-corpus" > "$B/fuzz.log" 2>&1 || status=$?
grep -E "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY" "$B/fuzz.log" | grep -v "infinite loop" | tail -8
if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED (exit $status), see $B/fuzz.log and $B/fuzz-artifacts/"
    exit 1
fi
echo "fuzz: no crash in $SECS s"
