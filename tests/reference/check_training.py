#!/usr/bin/python3
"""End to end: dltrain's training losses against PyTorch's, step by step.

The model is dltrain's preset `cnn2` (models/presets.c): conv 3x3 32 filters
pad 1 + ReLU, maxpool 2, conv 3x3 64 filters pad 1 + ReLU, maxpool 2, dense
128 + ReLU (the dense layer flattens its input), dense 10. This script builds
it in torch with torch.manual_seed and torch's default initialisation, writes
those initial parameters as a dltrain params.bin (version 2: "DLTPARAM",
uint32 2, uint32 0, int64 parameter count, int64 state count = 0, then the
parameters as little-endian float32 in dltrain's flat layout: per layer,
weight then bias, in PyTorch's layouts), and writes a job file that trains
from them ([model] preset = cnn2, init_from) on Fashion-MNIST in file order
([data] shuffle = false) for 20 steps of 32 samples with SGD (lr 0.05,
momentum 0.9, Nesterov, weight decay 5e-4, constant schedule), logging every
step.

dltrain runs on 1 rank (plain execution: MPI starts as a singleton) and, with
--mpirun, on 2 ranks with train.global_batch_size=32 (16 samples per rank).
Its per-step losses come from run_dir/metrics.csv (with log_every = 1 each row
is one step's mean loss over the global batch, before that step's update).

torch trains the same model on the same batches: at step k samples
k*32 .. k*32+31 of the training file, read with h5py and normalised exactly
as dltrain does, (pixel - mean[c]) / std[c] computed in float64 from the
/images attributes and rounded to float32, with
torch.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4) on
the mean cross-entropy.

Pass rule, for every one of the 20 steps and every dltrain run, with a =
dltrain's loss and b = torch's:  |a - b| <= 1e-3 * |b|.
Prints the loss columns side by side; exits 1 on any failure.

Usage: /usr/bin/python3 tests/reference/check_training.py --dltrain PATH
       --data DIR_WITH_fashion-train.h5_AND_fashion-test.h5 --dir SCRATCH
       [--mpirun "mpirun --oversubscribe --allow-run-as-root -n"]
"""
import argparse
import csv
import os
import shlex
import struct
import subprocess
import sys

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # say what to install rather than print a traceback
    sys.exit("FAIL: %s; this test needs Debian's python3-torch, python3-numpy and "
             "python3-h5py for /usr/bin/python3" % e)

STEPS = 20
BATCH = 32
LR, MOMENTUM, WD = 0.05, 0.9, 5e-4
TOL = 1e-3
SEED = 1234


def make_model():
    """cnn2 in torch, in dltrain's layer order."""
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def write_params_bin(path, model):
    """dltrain params.bin, version 2, no state."""
    flat = [p.detach().numpy().astype("<f4").ravel() for p in model.parameters()]
    params = np.concatenate(flat)
    with open(path, "wb") as f:
        f.write(b"DLTPARAM" + struct.pack("<IIqq", 2, 0, params.size, 0))
        f.write(params.tobytes())
    return params.size


def write_job(path, data, init_from, run_dir):
    text = """[train]
max_steps = {steps}
batch_size = {batch}
seed = 1
threads = 1
run_dir = {run_dir}
log_every = 1
eval_every = 0
progress = lines

[data]
train = {data}/fashion-train.h5
test = {data}/fashion-test.h5
shuffle = false

[model]
preset = cnn2
init_from = {init_from}

[optim]
type = sgd
lr = {lr}
momentum = {mom}
nesterov = true
weight_decay = {wd}

[schedule]
type = constant
""".format(steps=STEPS, batch=BATCH, run_dir=run_dir, data=os.path.abspath(data),
           init_from=init_from, lr=LR, mom=MOMENTUM, wd=WD)
    with open(path, "w") as f:
        f.write(text)


def run_dltrain(cmd, run_dir):
    """Run dltrain; return the per-step losses from run_dir/metrics.csv."""
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    metrics = os.path.join(run_dir, "metrics.csv")
    if os.path.exists(metrics):  # never read a previous run's losses
        os.remove(metrics)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.stdout.write(p.stdout)
        raise RuntimeError("dltrain exited with status %d" % p.returncode)
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    if steps != list(range(1, STEPS + 1)):
        raise RuntimeError("%s/metrics.csv: steps %s, expected 1..%d"
                           % (run_dir, steps, STEPS))
    return [float(r["loss"]) for r in rows]


def torch_losses(model, data):
    """Train the torch model on the file-order batches; return per-step losses."""
    with h5py.File(os.path.join(data, "fashion-train.h5"), "r") as f:
        img = f["images"]
        mean = np.asarray(img.attrs["mean"], dtype=np.float64)
        std = np.asarray(img.attrs["std"], dtype=np.float64)
        pix = img[:STEPS * BATCH].astype(np.float64)
        labels = np.asarray(f["labels"][:STEPS * BATCH]).astype(np.int64)
    x = ((pix - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    x, y = torch.from_numpy(x), torch.from_numpy(labels)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True,
                          weight_decay=WD)
    losses = []
    for k in range(STEPS):
        xb, yb = x[k * BATCH:(k + 1) * BATCH], y[k * BATCH:(k + 1) * BATCH]
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dltrain", required=True)
    ap.add_argument("--data", required=True, help="directory with fashion-{train,test}.h5")
    ap.add_argument("--dir", required=True, help="scratch directory")
    ap.add_argument("--mpirun", help='launcher prefix taking the rank count, e.g. "mpirun -n"')
    args = ap.parse_args()
    torch.set_num_threads(1)
    scratch = os.path.abspath(args.dir)
    os.makedirs(scratch, exist_ok=True)

    model = make_model()
    init = os.path.join(scratch, "init.bin")
    n = write_params_bin(init, model)
    print("cnn2: %d parameters written to %s" % (n, init))
    job = os.path.join(scratch, "job.ini")
    write_job(job, args.data, init, os.path.join(scratch, "run1"))

    runs = {}
    runs["1 rank"] = run_dltrain([args.dltrain, job], os.path.join(scratch, "run1"))
    if args.mpirun:
        run2 = os.path.join(scratch, "run2")
        cmd = shlex.split(args.mpirun) + ["2", args.dltrain, job,
                                           "train.global_batch_size=32", "train.run_dir=" + run2]
        runs["2 ranks"] = run_dltrain(cmd, run2)
    ref = torch_losses(model, args.data)

    names = list(runs)
    print("step  %12s  " % "torch" + "  ".join("%12s %9s" % (k, "rel err") for k in names))
    failed = 0
    for k in range(STEPS):
        cols = []
        for name in names:
            a, b = runs[name][k], ref[k]
            err = abs(a - b) / abs(b)
            bad = not err <= TOL
            failed += bad
            cols.append("%12.6f %9.2e%s" % (a, err, " FAIL" if bad else ""))
        print("%4d  %12.6f  " % (k + 1, ref[k]) + "  ".join(cols))
    print("%d of %d comparisons failed (tolerance %.0e relative)"
          % (failed, STEPS * len(names), TOL))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
