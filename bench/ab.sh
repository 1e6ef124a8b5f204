#!/usr/bin/env bash
# ab.sh - one change measured before and after: builds two revisions of seqgrad (release,
# without tests) in throw-away git worktrees, then runs one benchmark ALTERNATELY on the
# two builds, a fresh process per run, and prints each side's readings, their medians and
# the median of the per-pair ratios (after / before). Alternating pairs are what this
# virtual machine's drifting speed (10-40% within minutes) allows: a slow minute hits both
# sides of a pair.
#
#   bench/ab.sh HEAD~1 HEAD --config enfr-luong --threads 1 --pairs 5
#   bench/ab.sh main WORKTREE --config dates-bahdanau --mode decode --search greedy
#
# Revisions: anything `git rev-parse` takes, or WORKTREE for the uncommitted working tree
# of this checkout (built from its own folder).
# Options:
#   --config NAME       named configuration (default dates-bahdanau)
#   --threads N         compute threads (default 1)
#   --pairs P           alternating pairs (default 5)
#   --passes P          timed passes per run (default 3, the protocol's)
#   --mode train|decode what to run (default train: tok_per_s_median; decode:
#                       sent_per_s_median of --search, with --checkpoint)
#   --search S          greedy or beam5 (decode; default greedy)
#   --checkpoint FILE   decoding checkpoint (default bench/checkpoints/<config>.h5)
#   --data-root DIR     folder holding dates/ and gettext-en-fr/ (default
#                       /work/shared/data, or $SEQGRAD_DATA)
#   --keep DIR          build in DIR/a and DIR/b and keep them (default: a temporary folder)
#
# Each revision is configured with its own source folder (`meson setup BUILD SRC`: run
# from elsewhere, `meson setup BUILD` alone configures the current folder's sources, and
# both sides would be the same code). Nothing else may run meanwhile: no build, no helper.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CONFIG=dates-bahdanau
THREADS=1
PAIRS=5
PASSES=3
MODE=train
SEARCH=greedy
CKPT=
DATA_ROOT=${SEQGRAD_DATA:-/work/shared/data}
KEEP=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
[ $# -ge 2 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
REV_A=$1 REV_B=$2
shift 2
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --pairs) PAIRS=$2; shift 2 ;;
        --passes) PASSES=$2; shift 2 ;;
        --mode) MODE=$2; shift 2 ;;
        --search) SEARCH=$2; shift 2 ;;
        --checkpoint) CKPT=$2; shift 2 ;;
        --data-root) DATA_ROOT=$2; shift 2 ;;
        --keep) KEEP=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "ab.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
case "$MODE" in train|decode) ;; *) echo "ab.sh: --mode is train or decode" >&2; exit 2 ;; esac
case "$CONFIG" in dates-*) DATA="$DATA_ROOT/dates" ;; *) DATA="$DATA_ROOT/gettext-en-fr" ;; esac
[ -d "$DATA" ] || { echo "ab.sh: no data folder $DATA (--data-root)" >&2; exit 2; }
CKPT=${CKPT:-$HERE/checkpoints/$CONFIG.h5}
[ "$MODE" = train ] || [ -f "$CKPT" ] || { echo "ab.sh: no checkpoint $CKPT" >&2; exit 2; }

if [ -n "$KEEP" ]; then
    WORK=$KEEP
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d)
fi
WORKTREES=()
cleanup() {
    for w in "${WORKTREES[@]}"; do git -C "$ROOT" worktree remove --force "$w" 2>/dev/null || true; done
    [ -n "$KEEP" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# build SIDE REV: configures and builds REV's sources into $WORK/SIDE; prints the build dir
build() {
    local side=$1 rev=$2 src
    if [ "$rev" = WORKTREE ]; then
        src=$ROOT
    else
        src=$WORK/src-$side
        rm -rf "$src"
        git -C "$ROOT" worktree add --detach --force "$src" "$rev" >/dev/null 2>&1 ||
            { echo "ab.sh: cannot check out $rev" >&2; exit 2; }
        WORKTREES+=("$src")
    fi
    [ -d "$WORK/$side" ] ||
        meson setup "$WORK/$side" "$src" --buildtype=release -Dtests=false >/dev/null ||
        { echo "ab.sh: meson setup failed for $rev" >&2; exit 1; }
    ninja -C "$WORK/$side" bench/bench_train bench/bench_decode >/dev/null ||
        { echo "ab.sh: build failed for $rev" >&2; exit 1; }
}
echo "building $REV_A (a) and $REV_B (b) in $WORK ..." >&2
build a "$REV_A"
build b "$REV_B"

# one_run SIDE: the metric of one fresh run
one_run() {
    local out
    if [ "$MODE" = train ]; then
        out=$("$WORK/$1/bench/bench_train" --config "$CONFIG" --threads "$THREADS" \
            --data "$DATA" --passes "$PASSES" 2>/dev/null | tail -n 1)
        sed -n 's/.*"tok_per_s_median": \([0-9.]*\).*/\1/p' <<<"$out"
    else
        out=$("$WORK/$1/bench/bench_decode" --config "$CONFIG" --threads "$THREADS" \
            --data "$DATA" --passes "$PASSES" --checkpoint "$CKPT" --search "$SEARCH" \
            2>/dev/null | tail -n 1)
        sed -n "s/.*\"$SEARCH\": {[^}]*\"sent_per_s_median\": \([0-9.]*\).*/\1/p" <<<"$out"
    fi
}

A=() B=()
for ((i = 1; i <= PAIRS; i++)); do
    # the first side alternates too, so that a drift within a pair falls on both alike
    if ((i % 2)); then a=$(one_run a); b=$(one_run b); else b=$(one_run b); a=$(one_run a); fi
    [ -n "$a" ] && [ -n "$b" ] || { echo "ab.sh: a run printed no $MODE figure" >&2; exit 1; }
    A+=("$a") B+=("$b")
    echo "pair $i: a $a  b $b" >&2
done

metric=$([ "$MODE" = train ] && echo "train tok/s" || echo "$SEARCH sent/s")
python3 - "$metric" "$CONFIG" "$THREADS" "$REV_A" "$REV_B" "${A[*]}" "${B[*]}" <<'EOF'
import statistics as st, sys
metric, cfg, th, ra, rb = sys.argv[1:6]
a = [float(x) for x in sys.argv[6].split()]
b = [float(x) for x in sys.argv[7].split()]
r = [y / x for x, y in zip(a, b)]
print(f"{cfg}, {th} thread(s), {metric}, {len(a)} alternating pairs")
print(f"  a {ra}: median {st.median(a):.1f}  {sorted(a)}")
print(f"  b {rb}: median {st.median(b):.1f}  {sorted(b)}")
print(f"  b / a: median of the pairs' ratios {st.median(r):.3f} "
      f"(min {min(r):.3f}, max {max(r):.3f}; {sum(x > 1 for x in r)} of {len(r)} pairs faster)")
EOF
