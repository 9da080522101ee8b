#!/usr/bin/env bash
# dltrain against PyTorch eager on one GPU, side by side in the same run:
# training-step time of the preset models (mlp, cnn = preset cnn2, cnn2bn)
# at batch 512, the ratio dltrain/PyTorch (target: at most 1.0, dltrain at
# least as fast), samples/s, and both sides' achieved TFLOP/s against the
# GPU's cublasSgemm peak that bench_train measures in the same run. Figures
# only: the target is printed as information and nothing passes or fails on
# time. Without a GPU (or with a bench_train built without CUDA, or a torch
# that sees no GPU) it says why and exits 2.
#
#   benchmarks/compare_torch_gpu.sh [--batch 512] [--reps 7] [--rounds 3]
#                                   [--steps N] [--models "mlp cnn cnn2bn"] [--tf32]
#
# Each program takes the median of --reps repetitions of --steps steps
# (default 200 for mlp, 100 for the others, the same on both sides) after a
# warm-up, with a device sync at the end of each repetition; the two are run
# alternately --rounds times and the table gives, per model, the median over
# rounds of each figure and of the per-round ratio. TF32 is off on both
# sides (fp32 products and convolutions) unless --tf32, which turns it on on
# both and compares against the TF32 peak.
#
# Environment: PYTHON, the interpreter with a CUDA build of torch (default
# python3 on the PATH: on the GPU machines that is the one with torch; here
# /usr/bin/python3 has a CPU-only torch). BENCH_TRAIN, a bench_train built
# with CUDA (e.g. from tests/gpu_bundle.sh's bundle); when unset, bench_train
# is built in BUILD_DIR (default build/ at the repository root), which needs
# a CUDA build there (cmake -DDLTRAIN_CUDA=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=512 reps=7 rounds=3 steps=0 models="mlp cnn cnn2bn" tf32=
while [ $# -gt 0 ]; do
    case "$1" in
    --batch) batch=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --tf32) tf32=--tf32; shift ;;
    *) echo "usage: $0 [--batch N] [--reps N] [--rounds N] [--steps N] [--models \"mlp cnn cnn2bn\"] [--tf32]" >&2
       exit 2 ;;
    esac
done
py=${PYTHON:-python3}
bench=${BENCH_TRAIN:-}
if [ -z "$bench" ]; then
    build=${BUILD_DIR:-build}
    cmake -S . -B "$build" >/dev/null
    cmake --build "$build" -j"$(nproc)" --target bench_train >/dev/null
    bench=$build/bin/bench_train
fi

# Both sides must see a GPU before anything is timed.
no_gpu() {
    echo "compare_torch_gpu.sh: no GPU to compare on: $1" >&2
    exit 2
}
why=$("$bench" --model mlp --device cuda --steps 1 --reps 1 --json 2>&1 >/dev/null) ||
    no_gpu "$bench says: $why"
why=$("$py" -c 'import torch, sys
sys.exit(0 if torch.cuda.is_available() else
         f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")' 2>&1) ||
    no_gpu "$py says: $why"

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for r in $(seq "$rounds"); do
  for m in $models; do
    s=$steps
    [ "$s" -gt 0 ] || { [ "$m" = mlp ] && s=200 || s=100; }
    # dltrain, then PyTorch, with the same steps per repetition.
    echo "round $r/$rounds: $m" >&2
    "$bench" --device cuda --model "$m" --batch "$batch" --steps "$s" --reps "$reps" $tf32 \
        --json >>"$results"
    "$py" benchmarks/torch_train.py --device cuda --model "$m" --batch "$batch" --steps "$s" \
        --reps "$reps" $tf32 >>"$results"
  done
done

"$py" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dl = [r for r in rows if r["impl"] == "dltrain"]
pt = [r for r in rows if r["impl"] == "torch"]
med = statistics.median
tf32 = bool(dl[0]["tf32"])
print(f"GPU: {dl[0]['gpu']} (PyTorch: {pt[0]['gpu']}); {dl[0]['cores']} CPU cores online")
print(f"torch {pt[0]['torch']}, CUDA {pt[0]['cuda']}, cuDNN {pt[0]['cudnn']}, eager, "
      f"cudnn.benchmark {pt[0]['cudnn_benchmark']}; TF32 {'on' if tf32 else 'off'} on both sides "
      f"(torch matmul.allow_tf32 {pt[0]['matmul_allow_tf32']}, cudnn.allow_tf32 "
      f"{pt[0]['cudnn_allow_tf32']})")
rounds = len(dl) // len({r["model"] for r in dl})
print(f"batch {dl[0]['batch']}; each figure: median of {dl[0]['reps']} repetitions after a "
      f"warm-up (device sync at the end of each), then median over {rounds} alternating rounds")
peak_name = "TF32" if tf32 else "fp32"
hdr = ("model", "MFLOP/sample", "steps", "dltrain ms", "PyTorch ms", "dltrain/PyTorch", "target",
       "dltrain samples/s", "PyTorch samples/s", "dltrain TFLOP/s", "PyTorch TFLOP/s",
       "sgemm fp32 TFLOP/s", "sgemm TF32 TFLOP/s", f"dltrain % of {peak_name} peak",
       f"PyTorch % of {peak_name} peak")
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join("---" for _ in hdr) + "|")
for m in dict.fromkeys(r["model"] for r in dl):
    d = [r for r in dl if r["model"] == m]
    p = [r for r in pt if r["model"] == m]
    ratio = med(a["step_ms"] / b["step_ms"] for a, b in zip(d, p))
    mflop = d[0]["train_mflop_per_sample"]
    d_ms, p_ms = med(r["step_ms"] for r in d), med(r["step_ms"] for r in p)
    d_tf = med(r["tflops"] for r in d)
    p_tf = mflop * 1e6 * d[0]["batch"] / (p_ms * 1e-3) * 1e-12
    p32 = med(r["sgemm_fp32_tflops"] for r in d)
    ptf = med(r["sgemm_tf32_tflops"] for r in d)
    peak = ptf if tf32 else p32
    tgt = f"<= 1.0 ({'met' if ratio <= 1.0 else 'not met'})"
    print(f"| {m} | {mflop:.2f} | {d[0]['steps']} | {d_ms:.3f} | {p_ms:.3f} | {ratio:.2f} | {tgt} | "
          f"{med(r['samples_per_s'] for r in d):.0f} | {med(r['samples_per_s'] for r in p):.0f} | "
          f"{d_tf:.2f} | {p_tf:.2f} | {p32:.1f} | {ptf:.1f} | {100 * d_tf / peak:.1f}% | "
          f"{100 * p_tf / peak:.1f}% |")
print("per-round ratios dltrain/PyTorch: " + "; ".join(
    m + " " + " ".join(f"{a['step_ms'] / b['step_ms']:.2f}" for a, b in zip(
        [r for r in dl if r["model"] == m], [r for r in pt if r["model"] == m]))
    for m in dict.fromkeys(r["model"] for r in dl)))
print("final losses (same data, different initialisations): " + "; ".join(
    f"{m} dltrain {[r for r in dl if r['model'] == m][-1]['final_loss']:.4f}, "
    f"PyTorch {[r for r in pt if r['model'] == m][-1]['final_loss']:.4f}"
    for m in dict.fromkeys(r["model"] for r in dl)))
print("TFLOP/s counts dltrain's model FLOPs (dl_model_train_flops) for both sides; the peaks "
      "are square cublasSgemm products measured by bench_train in each round (fp32 in cuBLAS's "
      "default math mode, as PyTorch's fp32 products; TF32 tensor cores)")
PY
