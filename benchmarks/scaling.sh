#!/usr/bin/env bash
# A scaling study: dltrain on 1, 2, 4, ... ranks, strong scaling (the same
# global batch on every rank count) and weak scaling (the same batch per
# rank), and per point samples/s, the step time split into compute,
# gradient all-reduce and data wait, speedup and efficiency against the
# smallest rank count. Figures only: nothing passes or fails on time.
#
#   benchmarks/scaling.sh [--job JOB.ini] [--ranks 1,2,4] [--steps N]
#                         [--mode strong|weak|both] [--global-batch G]
#                         [--batch B] [--threads T] [--reps R] [--out DIR]
#                         [section.key=value ...]
#
#   --job           default docs/examples/fashion-cnn.ini (data/fashion-*.h5
#                   are made from Debian's dataset-fashion-mnist if missing)
#   --ranks         rank counts, comma-separated (default 1,2,4)
#   --steps         training steps per run (default 200); logged every
#                   steps/10, and the first logged interval is the warm-up
#   --mode          default both
#   --global-batch  strong scaling: train.global_batch_size (default 128)
#   --batch         weak scaling: train.batch_size per rank (default 64)
#   --threads       train.threads, BLAS threads per rank (default: the job's)
#   --reps          runs per point, taking turns; the median run by
#                   samples/s is reported (default 1)
#   --out           default runs/scaling
#   key=value       more dltrain overrides, e.g. data.train=... data.test=...
#
# Writes DIR/scaling.csv, DIR/scaling.md (the Markdown table, printed too)
# and DIR/scaling.png (gnuplot, package gnuplot-nox); each run's directory
# and log are under DIR/runs/. Evaluation is off during training
# (train.eval_every=0); the one at the end is not timed. Runs dltrain from
# $DLTRAIN when set, else builds it in BUILD_DIR (default build/).
set -euo pipefail
usage() {
    sed -n '8,11s/^# \{0,1\}//p' "$0" >&2
    exit 2
}
root=$(cd "$(dirname "$0")/.." && pwd)
job=$root/docs/examples/fashion-cnn.ini
ranks=1,2,4 steps=200 mode=both gbatch=128 batch=64 threads="" reps=1 out=runs/scaling
overrides=()
while [ $# -gt 0 ]; do
    case "$1" in
    --job) job=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --global-batch) gbatch=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,31s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) usage ;;
    esac
done
case "$mode" in
strong) modes=strong ;;
weak) modes=weak ;;
both) modes="strong weak" ;;
*) echo "scaling.sh: --mode $mode: use strong, weak or both" >&2; exit 2 ;;
esac
for v in "$steps" "$gbatch" "$batch" "$reps" ${threads:+"$threads"}; do
    [[ "$v" =~ ^[0-9]+$ ]] || { echo "scaling.sh: '$v' is not a whole number" >&2; exit 2; }
done
[[ "$ranks" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
    { echo "scaling.sh: --ranks $ranks: give rank counts like 1,2,4" >&2; exit 2; }
[ -f "$job" ] || { echo "scaling.sh: job file $job not found" >&2; exit 2; }
job=$(cd "$(dirname "$job")" && pwd)/$(basename "$job")
py=${PYTHON:-/usr/bin/python3}

# dltrain, and the example's data (data/ at the repository root) when the
# default job runs without data overrides. Relative paths are the caller's.
if [ -z "${DLTRAIN:-}" ]; then
    build=${BUILD_DIR:-$root/build}
    cmake -S "$root" -B "$build" >/dev/null
    cmake --build "$build" -j"$(nproc)" --target dltrain dltrain-data >/dev/null
    DLTRAIN=$build/bin/dltrain
fi
if [ "$job" = "$root/docs/examples/fashion-cnn.ini" ] &&
   ! printf '%s\n' "${overrides[@]+"${overrides[@]}"}" | grep -q '^data\.train='; then
    src=/usr/share/datasets/fashion-mnist
    mkdir -p "$root/data"
    for set in train:train test:t10k; do
        f=$root/data/fashion-${set%%:*}.h5 idx=${set#*:}
        [ -f "$f" ] || "$(dirname "$DLTRAIN")/dltrain-data" idx "$src/$idx-images-idx3-ubyte.gz" \
            "$src/$idx-labels-idx1-ubyte.gz" "$f" >/dev/null
    done
    overrides=(data.train="$root/data/fashion-train.h5" data.test="$root/data/fashion-test.h5"
               "${overrides[@]+"${overrides[@]}"}")
fi

. "$root/launch/mpirun-flags.sh"
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)
: >"$out/runs.txt"
log_every=$((steps / 10 > 0 ? steps / 10 : 1))
cores=$(nproc)
max_np=$(tr , '\n' <<<"$ranks" | sort -n | tail -1)

# The runs, point after point, repetition after repetition (so that a
# repetition's runs are spread over the time the study takes).
for rep in $(seq "$reps"); do
    for m in $modes; do
        for np in ${ranks//,/ }; do
            run=$out/runs/$m-np$np-rep$rep
            rm -rf "$run" "$run.log"
            if [ "$m" = strong ]; then size=(train.global_batch_size="$gbatch")
            else size=(train.batch_size="$batch"); fi
            echo "scaling: $m, $np rank(s), repetition $rep/$reps" >&2
            # shellcheck disable=SC2086 # MPIRUN_FLAGS is a list of flags
            if ! mpirun $MPIRUN_FLAGS -np "$np" "$DLTRAIN" "$job" "${size[@]}" \
                train.max_steps="$steps" train.log_every="$log_every" train.eval_every=0 \
                train.progress=lines ${threads:+train.threads="$threads"} \
                "${overrides[@]+"${overrides[@]}"}" train.run_dir="$run" >"$run.log" 2>&1; then
                cat "$run.log" >&2
                echo "scaling.sh: dltrain failed on $np rank(s) ($m scaling); log above" >&2
                exit 1
            fi
            echo "$m $np $rep $run $run.log" >>"$out/runs.txt"
        done
    done
done

# The machine, and the table.
first=$(head -1 "$out/runs.txt" | cut -d' ' -f5)
per_rank=$(sed -n 's/.* \([0-9]*\) BLAS thread(s) per rank (OpenBLAS \([^ ]*\) kernels).*/\1 \2/p' \
    "$first" | head -1)
tpr=${per_rank%% *}
echo
echo "machine: $(hostname), $cores cores online ($(lscpu 2>/dev/null |
    sed -n 's/^Model name: *//p' | head -1)), $(mpirun --version 2>/dev/null | head -1 |
    sed 's/^mpirun (\(.*\)) \(.*\)/\1 \2/'), OpenBLAS ${per_rank#* } kernels"
echo "job: ${job#"$root"/}, $steps steps per run (logged every $log_every), $reps run(s) per" \
    "point; BLAS threads per rank: $tpr"
if [ -n "$tpr" ] && [ $((max_np * tpr)) -gt "$cores" ]; then
    echo "warning: up to $max_np ranks x $tpr thread(s) = $((max_np * tpr)) threads on $cores" \
        "cores: those runs oversubscribe the cores, and their figures measure the sharing"
fi
echo
"$py" "$root/benchmarks/scaling_report.py" "$out"
if command -v gnuplot >/dev/null; then
    gnuplot "$out/scaling.gp"
    echo
    echo "written: $out/scaling.csv, $out/scaling.md, $out/scaling.png"
else
    echo
    echo "written: $out/scaling.csv, $out/scaling.md; no plot: gnuplot is not installed" \
        "(apt-get install gnuplot-nox, or launch/install-deps.sh --tests)"
fi
