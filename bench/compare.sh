#!/usr/bin/env bash
# compare.sh - seqgrad against the PyTorch reference on this machine, side by side
# (MODELS.md 10.2). For every selected configuration and thread count it runs the two
# implementations ALTERNATELY (seqgrad first on even measurements, PyTorch first on odd
# ones, so slow drifts of a shared machine hit both alike), each measurement in a fresh
# process, parses the JSON last lines, prints a ratio table (seqgrad / PyTorch) under the
# machine's description and appends every figure to bench/results.csv.
#
#   bench/compare.sh                                  # everything: slow, run on a quiet machine
#   bench/compare.sh --configs dates-bahdanau --threads 1 --passes 1 --modes train   # smoke
#
# Options:
#   --configs "A B"     named configurations (default: all four)
#   --threads "1 2"     thread counts (default: 1 2)
#   --passes P          timed passes per measurement (default 3, the protocol's)
#   --modes "M ..."     train, decode, rnn (default: all three), quality (not by default:
#                       MODELS.md 10.2's quality anchor, --quality-budget seconds of
#                       training from scratch on each side, then the validation loss and
#                       test BLEU of greedy and beam-5 decoding; the protocol's is 2 threads)
#   --quality-budget S  training seconds of the quality mode (default 720, the protocol's)
#   --ckpt-dir DIR      decoding checkpoints DIR/<config>.h5 (default bench/checkpoints);
#                       missing ones are trained with train_seq2seq --config <config>
#                       --time-budget S --save (so both sides decode seqgrad's checkpoint)
#   --ckpt-budget S     seconds of training for a missing checkpoint (default 300)
#   --data-root DIR     folder holding dates/ and gettext-en-fr/ (default /work/shared/data,
#                       or $SEQGRAD_DATA)
#   --peer DIR          the PyTorch reference scripts (default /work/shared/reference/peer)
#   --build DIR         seqgrad build directory (default build)
#   --results FILE      CSV to append to (default bench/results.csv)
#   --python EXE        Python with torch (default /usr/bin/python3)
#   --rnn-reps R        repetitions of the RNN micro-benchmark (default 20)
#   --repeat R          measurements per row, alternating (default 1): each figure is the
#                       median of R fresh runs of its side (short measurements such as
#                       dates' decoding, 40-65 ms a pass, swing by a third between runs)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CONFIGS="dates-bahdanau enfr-bahdanau enfr-luong enfr-transformer"
THREADS="1 2"
PASSES=3
MODES="train decode rnn"
CKPT_DIR="$HERE/checkpoints"
CKPT_BUDGET=300
DATA_ROOT=${SEQGRAD_DATA:-/work/shared/data}
PEER=/work/shared/reference/peer
BUILD="$ROOT/build"
RESULTS="$HERE/results.csv"
PY=/usr/bin/python3
RNN_REPS=20
REPEAT=1
QUALITY_BUDGET=720

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --configs) CONFIGS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --passes) PASSES=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --ckpt-dir) CKPT_DIR=$2; shift 2 ;;
        --ckpt-budget) CKPT_BUDGET=$2; shift 2 ;;
        --data-root) DATA_ROOT=$2; shift 2 ;;
        --peer) PEER=$2; shift 2 ;;
        --build) BUILD=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --rnn-reps) RNN_REPS=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --quality-budget) QUALITY_BUDGET=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; usage 2 ;;
    esac
done

for exe in bench_train bench_decode bench_rnn bench_gemm bench_fma; do
    [ -x "$BUILD/bench/$exe" ] || { echo "compare.sh: $BUILD/bench/$exe missing: ninja -C $BUILD" >&2; exit 1; }
done
if [[ " $MODES " == *" quality "* ]]; then
    [ -x "$BUILD/examples/train_seq2seq" ] || { echo "compare.sh: $BUILD/examples/train_seq2seq missing" >&2; exit 1; }
    [ -f "$PEER/train.py" ] || { echo "compare.sh: no $PEER/train.py" >&2; exit 1; }
fi
[ -f "$PEER/bench_torch.py" ] || { echo "compare.sh: no $PEER/bench_torch.py" >&2; exit 1; }

# Both sides: idle OpenMP workers sleep; no stray thread-count overrides.
# Both sides run with the same OpenMP environment: sleeping idle threads (MODELS.md 10.2)
# after a short spin, as seqgrad's programs set it (a spin of 0, libgomp's default under
# PASSIVE, costs a futex wake-up per parallel region).
export OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
unset SG_NUM_THREADS OMP_NUM_THREADS OPENBLAS_NUM_THREADS || true

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
CPU=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
NCPU=$(nproc)
[ -f "$RESULTS" ] || echo "date,config,threads,metric,seqgrad,pytorch,ratio" > "$RESULTS"
ROWS="$WORK/rows"   # metric rows for the table: config threads metric sg pt better
: > "$ROWS"
N_MEAS=0

data_of() { case "$1" in dates-*) echo "$DATA_ROOT/dates" ;; *) echo "$DATA_ROOT/gettext-en-fr" ;; esac; }

# jget FILE PATH: a value of the JSON object on FILE's last non-empty line (PATH like
# beam5.sent_per_s_median); empty if absent. With repeated measurements (FILE.2, FILE.3
# ...) the median of the numbers, or the first run's value if it is not a number.
jget() {
    "$PY" - "$1" "$2" <<'EOF'
import json, os, statistics, sys
base, path = sys.argv[1], sys.argv[2]
files = [base] + [f"{base}.{i}" for i in range(2, 1000) if os.path.exists(f"{base}.{i}")]
vals = []
for f in files:
    lines = [l for l in open(f) if l.strip()] if os.path.exists(f) else []
    try:
        v = json.loads(lines[-1]) if lines else {}
    except ValueError:
        v = {}
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    if v is not None:
        vals.append(v)
nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
if nums and len(nums) == len(vals):
    m = statistics.median(nums)
    print(int(m) if all(isinstance(v, int) for v in nums) and m == int(m) else round(m, 4))
else:
    print(vals[0] if vals else "")
EOF
}

# runs FILE: FILE and its repeats FILE.2 ... that exist, one per line. Never fails: under
# set -e and pipefail, a repeat glob that matches nothing ended the whole script.
runs() {
    local f
    for f in "$1" "$1".[0-9]*; do
        if [ -f "$f" ]; then echo "$f"; fi
    done
}

# row CONFIG THREADS METRIC SG PT BETTER: one table row and one CSV row.
row() {
    local ratio
    ratio=$(awk -v a="$4" -v b="$5" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.3f", a / b }')
    echo "$1 $2 $3 ${4:--} ${5:--} ${ratio:--} $6" >> "$ROWS"
    echo "$DATE,$1,$2,$3,$4,$5,$ratio" >> "$RESULTS"
}

# run_pair NAME SG_CMD... -- PT_CMD...: runs both, in alternating order, REPEAT times;
# outputs land in $WORK/NAME.sg and $WORK/NAME.pt, repeats in NAME.sg.2 ... (stderr
# beside them). Before each run, bench_fma with $PAIR_THREADS threads reads the machine's
# multiply-add capacity of the moment into NAME.sg.fma / NAME.pt.fma (and repeats).
PAIR_THREADS=1
run_pair() {
    local name=$1; shift
    local sg=() pt=()
    while [ "$1" != "--" ]; do sg+=("$1"); shift; done
    shift
    pt=("$@")
    local r suffix order
    for ((r = 1; r <= REPEAT; r++)); do
        suffix=
        [ "$r" -gt 1 ] && suffix=".$r"
        order="sg pt"
        [ $((N_MEAS % 2)) -eq 1 ] && order="pt sg"
        N_MEAS=$((N_MEAS + 1))
        for who in $order; do
            # the multiply-add capacity this side starts with (bench_fma's comment)
            "$BUILD/bench/bench_fma" --threads "$PAIR_THREADS" > "$WORK/$name.$who.fma$suffix" 2>&1 || true
            echo "  [$(date -u +%H:%M:%S)] $name: $who${suffix:+ (repeat $r)} (load $(cut -d' ' -f1 /proc/loadavg), FMA $(jget "$WORK/$name.$who.fma$suffix" gflops_total) GFLOP/s)" >&2
            if [ "$who" = sg ]; then
                "${sg[@]}" > "$WORK/$name.sg$suffix" 2> "$WORK/$name.sg.err" || { echo "seqgrad failed:" >&2; tail -5 "$WORK/$name.sg.err" >&2; }
            else
                "${pt[@]}" > "$WORK/$name.pt$suffix" 2> "$WORK/$name.pt.err" || { echo "pytorch failed:" >&2; tail -5 "$WORK/$name.pt.err" >&2; }
            fi
        done
    done
}

# fma_row CONFIG THREADS NAME: the median FMA capacity (GFLOP/s, all threads) before each
# side's runs of NAME: a ratio far from 1 means the two sides ran on different machines,
# in effect (a virtual machine's two vCPUs on one physical core halve it).
fma_row() {
    row "$1" "$2" machine.fma_gflops "$(jget "$WORK/$3.sg.fma" gflops_total)" "$(jget "$WORK/$3.pt.fma" gflops_total)" same
}

ensure_ckpt() {
    local cfg=$1 ck="$CKPT_DIR/$1.h5"
    [ -f "$ck" ] && return 0
    mkdir -p "$CKPT_DIR"
    echo "  training a checkpoint for $cfg ($CKPT_BUDGET s): $ck" >&2
    SG_NUM_THREADS=2 "$BUILD/examples/train_seq2seq" --config "$cfg" --data "$(data_of "$cfg")" \
        --time-budget "$CKPT_BUDGET" --save "$ck" --log "" --attention "" --show 0 --quiet \
        --threads 2 > "$WORK/ckpt-$cfg.log" 2>&1 || { echo "  training $cfg failed:" >&2; tail -5 "$WORK/ckpt-$cfg.log" >&2; return 1; }
}

# quality_json FILE: appends to train_seq2seq's output in FILE (and its repeats FILE.2 ...)
# a JSON line with train.py's keys: steps, epochs, train_tok_per_s (training time only),
# valid_loss (the last validation, of the final model), test_greedy / test_beam5 {bleu,
# exact} (of the checkpoint train_seq2seq keeps: the best validation BLEU, or exact match)
quality_json() {
    local f
    runs "$1" | while read -r f; do
        "$PY" - "$f" >> "$f" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
r = {}
m = re.search(r"^trained (\d+) steps \(([\d.]+) epochs\) in ([\d.]+) s: (\d+) target tok/s$", text, re.M)
if m:
    r.update(steps=int(m[1]), epochs=float(m[2]), train_seconds=float(m[3]), train_tok_per_s=float(m[4]))
losses = re.findall(r"^epoch \d+: .*valid loss ([\d.]+)", text, re.M)
if losses:
    r["valid_loss"] = float(losses[-1])
for name, key in (("greedy", "test_greedy"), ("beam 5", "test_beam5")):
    m = re.search(r"^test \(\d+ pairs, %s\): loss [\d.]+, BLEU ([\d.]+), exact match ([\d.]+)%%$" % name,
                  text, re.M)
    if m:
        r[key] = {"bleu": float(m[1]), "exact": float(m[2])}
print(json.dumps(r))
EOF
    done
}

# Raw BLIS sgemm GFLOP/s on the enfr generator's products (640x1024x8000), read right
# before and right after each training pair: this machine's speed drifts by 10-40% within
# minutes, and one reading at the start of a run made ratios against a slow minute.
# blis_run FILE: one reading (both thread counts); blis_gflops THREADS FILE...: the faster
# of the readings at THREADS (the ceiling is not to be lowered by a slow moment).
blis_run() { "$BUILD/bench/bench_gemm" --generator 5 > "$1" 2>&1 || true; }
blis_gflops() {
    local th=$1
    shift
    sed -n "s/^generator_gflops threads=$th all=\([0-9.]*\)$/\1/p" "$@" 2>/dev/null | sort -g | tail -1 || true
}

echo "seqgrad vs PyTorch, $DATE; CPU: $CPU; $NCPU logical CPUs; $(uname -r)"
echo "configs: $CONFIGS; threads: $THREADS; passes: $PASSES; modes: $MODES"
for cfg in $CONFIGS; do
    data=$(data_of "$cfg")
    for th in $THREADS; do
        for mode in $MODES; do
            name="$cfg-$th-$mode"
            PAIR_THREADS=$th
            case "$mode" in
            train)
                blis_run "$WORK/$name.blis1"
                run_pair "$name" "$BUILD/bench/bench_train" --config "$cfg" --threads "$th" --data "$data" --passes "$PASSES" \
                    -- "$PY" "$PEER/bench_torch.py" train --config "$cfg" --threads "$th" --data-dir "$data" --passes "$PASSES"
                fma_row "$cfg" "$th" "$name"
                for k in tok_per_s_median tok_per_s_min; do
                    row "$cfg" "$th" "train.$k" "$(jget "$WORK/$name.sg" $k)" "$(jget "$WORK/$name.pt" $k)" higher
                done
                row "$cfg" "$th" train.peak_rss_mb "$(jget "$WORK/$name.sg" peak_rss_mb)" "$(jget "$WORK/$name.pt" peak_rss_mb)" lower
                blis_run "$WORK/$name.blis2"
                blis=$(blis_gflops "$th" "$WORK/$name.blis1" "$WORK/$name.blis2")
                # seqgrad's GEMM GFLOP/s in training against raw BLIS sgemm on the generator
                # (640x1024x8000, same threads): the ratio is the fraction of BLIS reached
                row "$cfg" "$th" train.gflops_vs_blis_sgemm "$(jget "$WORK/$name.sg" gflops)" "$blis" higher
                # the ceiling of the tokens/s ratio: a step whose matrix products all ran
                # at raw BLIS speed and whose every other instruction took no time
                bound=$(awk -v t="$(jget "$WORK/$name.sg" tgt_tokens_per_pass)" \
                    -v f="$(jget "$WORK/$name.sg" gflop_per_step)" -v b="$blis" \
                    'BEGIN { if (t == "" || f + 0 == 0 || b == "") print ""; else printf "%.1f", t * b / (f * 24) }')
                row "$cfg" "$th" train.tok_per_s_gemm_bound "$bound" "$(jget "$WORK/$name.pt" tok_per_s_median)" higher
                ;;
            decode)
                ensure_ckpt "$cfg" || continue
                ck="$CKPT_DIR/$cfg.h5"
                run_pair "$name" "$BUILD/bench/bench_decode" --config "$cfg" --threads "$th" --data "$data" --passes "$PASSES" --checkpoint "$ck" \
                    -- "$PY" "$PEER/bench_torch.py" decode --config "$cfg" --threads "$th" --data-dir "$data" --passes "$PASSES" --ckpt "$ck"
                fma_row "$cfg" "$th" "$name"
                for s in greedy beam5; do
                    for k in sent_per_s_median sent_per_s_min; do
                        row "$cfg" "$th" "$s.$k" "$(jget "$WORK/$name.sg" $s.$k)" "$(jget "$WORK/$name.pt" $s.$k)" higher
                    done
                    row "$cfg" "$th" "$s.output_tokens" "$(jget "$WORK/$name.sg" $s.output_tokens)" "$(jget "$WORK/$name.pt" $s.output_tokens)" equal
                    a=$(jget "$WORK/$name.sg" $s.sha1_of_ids); b=$(jget "$WORK/$name.pt" $s.sha1_of_ids)
                    [ -n "$a" ] && [ "$a" != "$b" ] && echo "  note: $cfg $th $s decoded different ids (sha1 $a vs $b)" >&2
                done
                ;;
            quality)
                # both sides train from scratch for the budget (evaluation not counted),
                # then score the whole test split; both print their summary last
                run_pair "$name" "$BUILD/examples/train_seq2seq" --config "$cfg" --data "$data" --threads "$th" \
                    --time-budget "$QUALITY_BUDGET" --epochs 1000 --save "$WORK/$name.h5" --log "" --attention "" --show 0 --quiet \
                    -- "$PY" "$PEER/train.py" --config "$cfg" --threads "$th" --budget "$QUALITY_BUDGET" --data-dir "$data"
                fma_row "$cfg" "$th" "$name"
                quality_json "$WORK/$name.sg"
                row "$cfg" "$th" quality.budget_s "$QUALITY_BUDGET" "$QUALITY_BUDGET" equal
                for k in train_tok_per_s steps epochs; do
                    row "$cfg" "$th" "quality.$k" "$(jget "$WORK/$name.sg" $k)" "$(jget "$WORK/$name.pt" $k)" higher
                done
                row "$cfg" "$th" quality.valid_loss "$(jget "$WORK/$name.sg" valid_loss)" "$(jget "$WORK/$name.pt" valid_loss)" lower
                for s in test_greedy test_beam5; do
                    row "$cfg" "$th" "quality.$s.bleu" "$(jget "$WORK/$name.sg" $s.bleu)" "$(jget "$WORK/$name.pt" $s.bleu)" higher
                    case "$cfg" in dates-*)
                        row "$cfg" "$th" "quality.$s.exact" "$(jget "$WORK/$name.sg" $s.exact)" "$(jget "$WORK/$name.pt" $s.exact)" higher ;;
                    esac
                done
                ;;
            rnn) ;; # below, once per thread count
            *) echo "compare.sh: unknown mode $mode" >&2; exit 2 ;;
            esac
        done
    done
done

# rnn_ms FILE CELL: the wall-clock median of CELL's "fwd+bwd ... median X ms" line (the
# median of FILE and its repeats FILE.2 ...). Never fails (an empty value instead).
rnn_ms() {
    local f
    runs "$1" | while read -r f; do cat "$f"; done | grep " $2 " |
        sed -n 's/.*fwd+bwd min [0-9.]* ms median \([0-9.]*\) ms.*/\1/p' |
        "$PY" -c 'import statistics, sys; v = [float(x) for x in sys.stdin.read().split()]; print(round(statistics.median(v), 4) if v else "")' ||
        true
}

# The RNN micro-benchmark (GRU and LSTM layer, forward + backward): not per configuration.
if [[ " $MODES " == *" rnn "* ]]; then
    for th in $THREADS; do
        name="rnn-$th"
        PAIR_THREADS=$th
        run_pair "$name" bash -c "'$BUILD/bench/bench_rnn' --cell gru --threads $th --reps $RNN_REPS && '$BUILD/bench/bench_rnn' --cell lstm --threads $th --reps $RNN_REPS" \
            -- "$PY" "$PEER/bench_rnn_micro.py" --threads "$th" --reps "$RNN_REPS"
        fma_row rnn-micro "$th" "$name"
        for cell in gru lstm; do
            # the wall-clock median (seqgrad's line ends with a CPU-time median too)
            a=$(rnn_ms "$WORK/$name.sg" "$cell")
            b=$(rnn_ms "$WORK/$name.pt" "$cell")
            row "rnn-micro-$cell" "$th" fwd_bwd_ms_median "$a" "$b" lower
        done
    done
fi

echo
echo "Ratio = seqgrad / PyTorch (higher is better for throughput, lower for ms and memory;"
echo "output_tokens must be equal). train.gflops_vs_blis_sgemm: seqgrad's GEMM GFLOP/s in"
echo "training against raw BLIS sgemm at 640x1024x8000 (second column; not PyTorch)."
echo "train.tok_per_s_gemm_bound: the tokens/s of a step whose GEMM FLOPs all ran at that"
echo "raw BLIS speed and nothing else took time; its ratio is the highest the step's"
echo "arithmetic allows against PyTorch's median."
echo "machine.fma_gflops: the multiply-add capacity (bench_fma, all threads) just before"
echo "each side's runs, their median: unequal, the two sides did not get the same machine."
echo "Machine: $CPU, $NCPU CPUs, $DATE."
printf '%-18s %3s %-28s %12s %12s %8s %s\n' config thr metric seqgrad pytorch ratio better
while read -r c t m a b r w; do
    printf '%-18s %3s %-28s %12s %12s %8s %s\n' "$c" "$t" "$m" "$a" "$b" "$r" "$w"
done < "$ROWS"
echo "appended to $RESULTS"
