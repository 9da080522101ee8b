#!/usr/bin/env bash
# dltrain against PyTorch, side by side in the same run on the same machine:
# training-step time of the preset models (mlp, cnn = preset cnn2, cnn2bn) at
# one batch size and thread count, the ratio dltrain/PyTorch, and dltrain's
# achieved GFLOP/s against the sgemm peak measured in the same run.
# Figures only: the targets are printed as information and nothing passes or
# fails on time.
#
#   benchmarks/compare_torch.sh [--batch 128] [--threads 1] [--reps 7]
#                               [--rounds 3] [--models "mlp cnn cnn2bn"]
#
# Each program takes the median of --reps repetitions after a warm-up; the
# two are run alternately --rounds times and the table gives, per model, the
# median over rounds of each figure and of the per-round ratio (the machines
# are shared: a ratio measured side by side is what we trust).
#
# BUILD_DIR (default build/ at the repository root) is where bench_train is
# built; PYTHON (default /usr/bin/python3) is the interpreter with torch.
set -euo pipefail
cd "$(dirname "$0")/.."
batch=128 threads=1 reps=7 rounds=3 models="mlp cnn cnn2bn"
while [ $# -gt 0 ]; do
    case "$1" in
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    *) echo "usage: $0 [--batch N] [--threads N] [--reps N] [--rounds N] [--models \"mlp cnn cnn2bn\"]" >&2
       exit 2 ;;
    esac
done
build=${BUILD_DIR:-build}
py=${PYTHON:-/usr/bin/python3}
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_train >/dev/null

# One table: both programs alternately, rounds times, then the medians.
table() {
    results=$(mktemp)
    for r in $(seq "$rounds"); do
      for m in $models; do
        # Same steps per repetition on both sides; dltrain, then PyTorch.
        echo "round $r/$rounds: $m" >&2
        "$build/bin/bench_train" --model "$m" --batch "$batch" --threads "$threads" --reps "$reps" \
            --json >>"$results"
        "$py" benchmarks/torch_train.py --model "$m" --batch "$batch" --threads "$threads" \
            --reps "$reps" >>"$results"
      done
    done

    "$py" - "$results" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dl = [r for r in rows if r["impl"] == "dltrain"]
pt = [r for r in rows if r["impl"] == "torch"]
med = statistics.median
targets = {"mlp": 0.75, "cnn": 0.6}
print(f"machine: {dl[0]['cores']} cores online; {dl[0]['blas']}")
print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset: OpenBLAS chooses)')} "
      "for dltrain and PyTorch")
print(f"torch {pt[0]['torch']}, oneDNN (torch.backends.mkldnn.is_available()): {pt[0]['mkldnn']}")
print(f"batch {dl[0]['batch']}, {dl[0]['threads']} thread(s); each figure: median of "
      f"{dl[0]['reps']} repetitions after a warm-up, then median over {len(dl) // len({r['model'] for r in dl})} "
      f"alternating rounds")
hdr = ("model", "MFLOP/sample", "dltrain ms", "PyTorch ms", "dltrain/PyTorch", "target",
       "dltrain GFLOP/s", "PyTorch GFLOP/s", "sgemm peak GFLOP/s", "dltrain % of peak")
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join("---" for _ in hdr) + "|")
for m in dict.fromkeys(r["model"] for r in dl):
    d = [r for r in dl if r["model"] == m]
    p = [r for r in pt if r["model"] == m]
    ratio = med(a["step_ms"] / b["step_ms"] for a, b in zip(d, p))
    mflop = d[0]["train_mflop_per_sample"]
    d_ms, p_ms = med(r["step_ms"] for r in d), med(r["step_ms"] for r in p)
    pt_gf = mflop * 1e6 * d[0]["batch"] / (p_ms * 1e-3) * 1e-9
    peak = med(r["sgemm_peak_gflops"] for r in d)
    pct = med(r["peak_pct"] for r in d)
    t = targets.get(m)
    tgt = f"<= {t} ({'met' if ratio <= t else 'not met'})" if t else "-"
    print(f"| {m} | {mflop:.2f} | {d_ms:.2f} | {p_ms:.2f} | {ratio:.2f} | {tgt} | "
          f"{med(r['gflops'] for r in d):.1f} | {pt_gf:.1f} | {peak:.1f} | {pct:.0f}% |")
print("per-round ratios dltrain/PyTorch: " + "; ".join(
    m + " " + " ".join(f"{a['step_ms'] / b['step_ms']:.2f}" for a, b in zip(
        [r for r in dl if r["model"] == m], [r for r in pt if r["model"] == m]))
    for m in dict.fromkeys(r["model"] for r in dl)))
PY
    rm -f "$results"
}

# dltrain's layers and PyTorch's dense layers run on the system's OpenBLAS,
# so both see the same OPENBLAS_CORETYPE; PyTorch's convolutions run on its
# own oneDNN, which picks its instruction set itself (AVX-512 where the CPU has
# it). When the environment pins OpenBLAS's kernels, a second table shows
# both programs with OpenBLAS choosing for itself, as oneDNN does.
echo "table 1: the environment as it is (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})" >&2
table
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    echo
    echo "table 2: OPENBLAS_CORETYPE unset (OpenBLAS chooses its kernels for the CPU)" >&2
    (unset OPENBLAS_CORETYPE; table)
fi
