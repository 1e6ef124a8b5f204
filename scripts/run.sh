#!/bin/sh
# Sets up, builds and runs the main job. Arguments go to the program.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh build
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
ninja -C build >/dev/null
exec build/examples/train_seq2seq "$@"
