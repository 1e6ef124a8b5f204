#!/bin/sh
# Sets up, builds and runs the main job. Arguments go to the program.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh build
ninja -C build >/dev/null
exec build/examples/train_seq2seq "$@"
