#!/usr/bin/python3
"""A dltrain checkpoint loads into PyTorch with the script docs/checkpoints.md shows.

tests/ckpt_export (C) builds a preset with known parameters (and, for
cnn2bn, batch-norm running statistics), writes a checkpoint of it with
dl_ckpt_write, and writes the inference-mode logits dltrain's forward pass
gives on 8 fixed inputs. This script loads the checkpoint with
load_checkpoint() from tests/reference/load_checkpoint.py into the torch
model (the script's own cnn2() and cnn2bn()), runs the same inputs in eval
mode and compares the logits. (check_checkpoint_accuracy.py evaluates
checkpoints of real training runs on the whole test set.)

Pass rule, per preset: max |dltrain - torch| <= 1e-4 * max |torch| over all
logits. Also checked: the docs show load_checkpoint.py verbatim (the
```python block of docs/checkpoints.md), the script runs from the command
line, and the file's /job text and /train attributes read with h5py.
Exits 1 on any failure.

Usage: /usr/bin/python3 tests/reference/check_checkpoint.py --ckpt-export PATH
       --dir SCRATCH
"""
import argparse
import os
import subprocess
import sys

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:  # say what to install rather than print a traceback
    sys.exit("FAIL: %s; this test needs Debian's python3-torch, python3-numpy and "
             "python3-h5py for /usr/bin/python3" % e)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import load_checkpoint  # noqa: E402  (the script the docs show)

N, CLASSES, TOL = 8, 10, 1e-4


def check_docs():
    """The docs' python block is load_checkpoint.py, character for character."""
    with open(os.path.join(SRC, "docs", "checkpoints.md")) as f:
        doc = f.read()
    with open(os.path.join(HERE, "load_checkpoint.py")) as f:
        script = f.read()
    start = doc.find("```python\n")
    end = doc.find("```\n", start + 10)
    block = doc[start + 10:end] if start >= 0 and end >= 0 else ""
    if block != script:
        print("FAIL: the ```python block of docs/checkpoints.md differs from "
              "tests/reference/load_checkpoint.py; keep them the same")
        return 1
    print("docs/checkpoints.md shows tests/reference/load_checkpoint.py verbatim")
    return 0


def check_preset(export, scratch, preset, make):
    out = os.path.join(scratch, preset)
    p = subprocess.run([export, preset, out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if p.returncode != 0:
        print("FAIL: ckpt_export %s: %s" % (preset, p.stdout))
        return 1
    ckpt = p.stdout.strip()
    model = make(CLASSES)
    step = load_checkpoint.load_checkpoint(ckpt, model)
    model.eval()
    x = np.fromfile(os.path.join(out, "x.f32"), dtype="<f4").reshape(N, 1, 28, 28)
    want = np.fromfile(os.path.join(out, "logits.f32"), dtype="<f4").reshape(N, CLASSES)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    err = float(np.max(np.abs(got - want)))
    scale = float(np.max(np.abs(got)))
    ok = err <= TOL * scale and step == 7
    with h5py.File(ckpt, "r") as f:
        job = f["job"][0].decode()
        attrs = dict(f["train"].attrs)
        ok = ok and job == preset and attrs["world_size"] == 1 and attrs["global_batch"] == N
    print("%-7s step %d, max |dltrain - torch| = %.3g, max |logit| = %.3g: %s"
          % (preset, step, err, scale, "ok" if ok else "FAIL"))
    return 0 if ok else 1


def check_cli(scratch):
    ckpt = os.path.join(scratch, "cnn2", "ckpt-0000000007.h5")
    p = subprocess.run([sys.executable, os.path.join(HERE, "load_checkpoint.py"), ckpt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ok = p.returncode == 0 and "step 7" in p.stdout
    print("load_checkpoint.py from the command line: %s" % ("ok" if ok else "FAIL\n" + p.stdout))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt-export", required=True, help="the ckpt_export test program")
    ap.add_argument("--dir", required=True, help="scratch directory")
    args = ap.parse_args()
    torch.set_num_threads(1)
    scratch = os.path.abspath(args.dir)
    os.makedirs(scratch, exist_ok=True)
    failed = check_docs()
    failed += check_preset(args.ckpt_export, scratch, "cnn2", load_checkpoint.cnn2)
    failed += check_preset(args.ckpt_export, scratch, "cnn2bn", load_checkpoint.cnn2bn)
    failed += check_cli(scratch)
    print("%d check(s) failed" % failed if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
