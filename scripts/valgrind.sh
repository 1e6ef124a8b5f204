#!/bin/sh
# Runs one epoch of the main job (the built-in dates task: training, validation decoding,
# checkpoint, attention picture, learning curve) under valgrind's memcheck and fails on
# any memory error or on memory definitely or indirectly lost. Extra arguments go to
# train_seq2seq (e.g. --train small.tsv --valid small.tsv for a shorter run).
#
# valgrind emulates every fused multiply-add lane by lane in a slow helper: with BLIS's
# AVX2 kernels and LIBXSMM's JIT code a training step of the dates model took ~50 s
# (native: ~3 ms). So this run uses BLIS's `sandybridge` kernels (AVX, no FMA; arch id 4
# in BLIS 0.9) and turns LIBXSMM off; valgrind itself has no AVX-512. BLIS's packing
# pool is reported as "possibly lost" (interior pointers): not counted. Extra
# `--threads 2` checks the 2-thread paths (a small model's batch in halves): valgrind runs
# one thread at a time, so idle OpenMP threads must not spin (GOMP_SPINCOUNT=0) and the
# scheduler must be fair, or the run crawls (over 20 minutes instead of 5).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$BUILD/examples/train_seq2seq" ] || { echo "build first: scripts/test.sh or ninja -C $BUILD" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
SG_XSMM=0 BLIS_ARCH_TYPE=4 OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=0 \
    valgrind --fair-sched=yes --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect --error-exitcode=3 \
    "$BUILD/examples/train_seq2seq" --epochs 1 --threads 1 --quiet --save "$out/model.h5" \
    --log "$out/curve.csv" --attention "$out/attention.svg" "$@"
echo "valgrind: no memory errors, nothing definitely or indirectly lost"
