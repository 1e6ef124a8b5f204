#!/bin/sh
# Writes the model-zoo parity fixtures tests/fixtures/models/*.h5 by RUNNING the PyTorch
# reference of MODELS.md (shared/reference/peer/check_spec.py --golden): one tiny model
# of each variant as a checkpoint plus /golden inputs, logits, loss, gradients and
# greedy/beam decodes. The files are committed; the tests never need Python.
# Usage: tools/gen_fixtures_models.sh [path/to/shared/reference/peer]
set -eu
cd "$(dirname "$0")/.."
PEER=${1:-../shared/reference/peer}
OMP_NUM_THREADS=1 /usr/bin/python3 "$PEER/check_spec.py" --golden tests/fixtures/models
