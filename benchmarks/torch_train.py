#!/usr/bin/python3
"""PyTorch peer of bench_train: times training steps (forward, cross-entropy,
backward, SGD momentum 0.9 Nesterov weight decay 5e-4) of the same preset
models (models/presets.c) on synthetic 1 x 28 x 28 inputs with 10 classes,
and prints one JSON line with step_ms and samples_per_s. A benchmark: it
prints figures and never fails on time.

    /usr/bin/python3 benchmarks/torch_train.py --model mlp|cnn|cnn2bn \
        [--batch 128] [--threads 1] [--steps N] [--reps 7] [--device cpu|cuda] [--tf32]

--device cuda (benchmarks/compare_torch_gpu.sh): model and data on GPU 0,
eager mode with PyTorch's defaults otherwise (cudnn.benchmark off), and
torch.cuda.synchronize() before each reading of the clock. TF32 is off for
matrix products and convolutions unless --tf32 (PyTorch's own default lets
cuDNN use it), so both sides compute in fp32 as bench_train does.
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 10


def build(name):
    """The layer lists of models/presets.c (cnn is the preset cnn2)."""
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, 100), nn.ReLU(),
            nn.Linear(100, CLASSES))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
            nn.Linear(128, CLASSES))
    if name == "cnn2bn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1, bias=False),
            nn.BatchNorm2d(32, eps=1e-5, momentum=0.1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64, eps=1e-5, momentum=0.1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.BatchNorm1d(128, eps=1e-5, momentum=0.1), nn.ReLU(),
            nn.Linear(128, CLASSES))
    raise SystemExit(f"torch_train: unknown model {name!r} (mlp, cnn or cnn2bn)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--tf32", action="store_true")
    a = ap.parse_args()
    cuda = a.device == "cuda"
    if a.tf32 and not cuda:
        raise SystemExit("torch_train: --tf32 needs --device cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"torch_train: --device cuda, but this torch {torch.__version__} "
                         f"sees no GPU (built with CUDA {torch.version.cuda})")
    if cuda:
        steps = a.steps or (200 if a.model == "mlp" else 100)
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    else:
        steps = a.steps or (100 if a.model == "mlp" else 10)

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(1)
    model = build(a.model)
    model.train()
    if cuda:
        model.to("cuda")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(a.batch, 1, 28, 28, generator=g)
    y = torch.randint(0, CLASSES, (a.batch,), generator=g)
    if cuda:
        x, y = x.to("cuda"), y.to("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    times = []
    loss = None
    for r in range(-1, a.reps):  # r = -1 is the warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync()
        if r >= 0:
            times.append((time.perf_counter() - t0) / steps)
    st = statistics.median(times)
    out = {
        "impl": "torch", "model": a.model, "batch": a.batch, "threads": a.threads,
        "steps": steps, "reps": a.reps, "cores": os.cpu_count(),
        "torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
        "params": sum(p.numel() for p in model.parameters()),
        "step_ms": round(st * 1e3, 4), "samples_per_s": round(a.batch / st, 1),
        "final_loss": round(float(loss), 5)}
    if cuda:
        out.update({
            "device": "cuda", "gpu": torch.cuda.get_device_name(0), "tf32": int(a.tf32),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
