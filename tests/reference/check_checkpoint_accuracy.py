#!/usr/bin/python3
"""A trained dltrain checkpoint gives dltrain's test accuracy in PyTorch.

Two short training runs on 2 ranks (--mpirun), each checkpointing its final
step and evaluating on the whole Fashion-MNIST test set at the end:
  mlp     docs/examples/fashion-mlp.ini as it stands (784-256-128-100-10,
          ReLU), with the test data and a run directory given on the command
          line, 200 steps of 128 samples;
  cnn2bn  the cnn2bn preset (batch norm, per-rank running statistics whose
          average the checkpoint holds), 60 steps of 64 samples.
For each, the newest checkpoint (the one `latest` names, of the final step)
is loaded with tests/reference/load_checkpoint.py, the script
docs/checkpoints.md shows, into that script's torch model (mlp() and
cnn2bn()), and its evaluate() computes the test loss and accuracy in eval
mode from the test file read with h5py, normalised as dltrain normalises it.
For the mlp run the script also runs from the command line, as the docs show.

Pass rule, per run, against summary.json (which prints 6 decimals):
|accuracy difference| <= 1 sample of the test set (float rounding may break
an argmax tie the other way; the difference is expected to be 0), and
|dltrain loss - torch loss| <= 1e-4 * torch loss. Also: for cnn2bn the same
model with fresh batch-norm buffers (mean 0, variance 1) is evaluated, and
its loss must miss dltrain's by more than 1e-2 relative, so the running
statistics are shown to matter. Exits 1 on any failure.

Usage: /usr/bin/python3 tests/reference/check_checkpoint_accuracy.py
       --dltrain PATH --data DIR_WITH_fashion-{train,test}.h5 --dir SCRATCH
       --mpirun "mpirun --oversubscribe --allow-run-as-root -n"
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys

try:
    import h5py
    import torch
except ImportError as e:  # say what to install rather than print a traceback
    sys.exit("FAIL: %s; this test needs Debian's python3-torch, python3-numpy and "
             "python3-h5py for /usr/bin/python3" % e)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import load_checkpoint  # noqa: E402  (the script the docs show)

RANKS = 2
LOSS_TOL = 1e-4

CNN2BN_JOB = """[train]
batch_size = 32
seed = 1
threads = 1

[model]
preset = cnn2bn

[optim]
type = sgd
lr = 0.05
momentum = 0.9
nesterov = true
weight_decay = 5e-4

[schedule]
type = constant
"""


def train(args, job, run_dir, steps, every):
    """Train job on RANKS ranks for `steps` steps, checkpointing every
    `every` steps; return summary.json and the final checkpoint's path."""
    shutil.rmtree(run_dir, ignore_errors=True)  # never resume a previous run
    data = os.path.abspath(args.data)
    cmd = shlex.split(args.mpirun) + [
        str(RANKS), args.dltrain, job, "train.run_dir=" + run_dir,
        "data.train=" + os.path.join(data, "fashion-train.h5"),
        "data.test=" + os.path.join(data, "fashion-test.h5"),
        "train.max_steps=%d" % steps, "train.eval_every=0", "train.log_every=%d" % every,
        "train.progress=lines", "checkpoint.every_steps=%d" % every, "checkpoint.resume=never"]
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.stdout.write(p.stdout)
        raise RuntimeError("dltrain exited with status %d" % p.returncode)
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    ckdir = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(ckdir, "latest")) as f:
        ckpt = os.path.join(ckdir, f.read().strip())
    return summary, ckpt


def compare(name, summary, ckpt, model, test, n_test):
    """Load ckpt into model, evaluate it in torch, compare with summary."""
    step = load_checkpoint.load_checkpoint(ckpt, model)
    with h5py.File(ckpt, "r") as f:
        ranks = int(f["train"].attrs["world_size"])
    loss, acc = load_checkpoint.evaluate(model, ckpt, test)
    d_samples = round(abs(summary["test_accuracy"] - acc) * n_test)
    d_loss = abs(summary["test_loss"] - loss) / loss
    ok = (step == summary["steps"] and ranks == RANKS and d_samples <= 1
          and d_loss <= LOSS_TOL)
    print("%-6s step %d (%d ranks): test_accuracy dltrain %.6f torch %.6f (%d samples apart); "
          "test_loss dltrain %.6f torch %.6f (rel %.2e): %s"
          % (name, step, ranks, summary["test_accuracy"], acc, d_samples,
             summary["test_loss"], loss, d_loss, "ok" if ok else "FAIL"), flush=True)
    return ok, loss


def check_cli(ckpt, test, summary):
    """The script from the command line prints dltrain's accuracy."""
    p = subprocess.run([sys.executable, os.path.join(HERE, "load_checkpoint.py"), ckpt, test,
                        "mlp"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    want = "test_accuracy %.6f" % summary["test_accuracy"]
    ok = p.returncode == 0 and want in p.stdout
    print("load_checkpoint.py CKPT TEST mlp: %s" % ("ok" if ok else "FAIL, expected '%s' in:\n%s"
                                                      % (want, p.stdout)))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dltrain", required=True)
    ap.add_argument("--data", required=True, help="directory with fashion-{train,test}.h5")
    ap.add_argument("--dir", required=True, help="scratch directory")
    ap.add_argument("--mpirun", required=True,
                    help='launcher prefix taking the rank count, e.g. "mpirun -n"')
    args = ap.parse_args()
    torch.set_num_threads(1)
    scratch = os.path.abspath(args.dir)
    os.makedirs(scratch, exist_ok=True)
    test = os.path.join(os.path.abspath(args.data), "fashion-test.h5")
    with h5py.File(test, "r") as f:
        n_test, classes = f["images"].shape[0], int(f.attrs["num_classes"])
        shape = f["images"].shape[1:]
    failed = 0

    summary, ckpt = train(args, os.path.join(SRC, "docs", "examples", "fashion-mlp.ini"),
                          os.path.join(scratch, "mlp"), 200, 100)
    ok, _ = compare("mlp", summary, ckpt, load_checkpoint.mlp(classes, shape), test, n_test)
    failed += not ok
    failed += not check_cli(ckpt, test, summary)

    job = os.path.join(scratch, "cnn2bn.ini")
    with open(job, "w") as f:
        f.write(CNN2BN_JOB)
    summary, ckpt = train(args, job, os.path.join(scratch, "cnn2bn"), 60, 30)
    ok, loss = compare("cnn2bn", summary, ckpt, load_checkpoint.cnn2bn(classes, shape), test,
                       n_test)
    failed += not ok
    fresh = load_checkpoint.cnn2bn(classes, shape)
    load_checkpoint.load_checkpoint(ckpt, fresh)
    for m in fresh.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    f_loss, f_acc = load_checkpoint.evaluate(fresh, ckpt, test)
    ok = abs(f_loss - loss) > 1e-2 * loss
    print("cnn2bn with fresh batch-norm buffers: test_accuracy %.6f, test_loss %.6f: %s"
          % (f_acc, f_loss, "differs, ok" if ok else "FAIL: the running statistics made no "
             "difference, so the check above does not test them"))
    failed += not ok

    print("%d check(s) failed" % failed if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
