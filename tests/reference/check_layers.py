#!/usr/bin/python3
"""Compare dltrain's layers with PyTorch's, layer type by layer type.

For every case this script builds a small model twice: as a torch module
(random weights and inputs from a fixed seed) and as dltrain layer sections,
which it writes to a case directory for the C program ref_layers
(tests/ref_layers.c) together with the input x, the parameters in dltrain's
flat layout (for each layer in order: weight then bias; conv weight
F x C/g x k x k and dense weight out x in, PyTorch's layouts; batch-norm gamma
then beta), the state (batch-norm running mean then running variance) and the
output gradient dy. ref_layers runs dltrain's forward and backward (with the
input gradient on) and writes y, dx, the parameter gradients and the state
after the forward pass; torch computes the same with autograd.

Compared, per case: the forward output y, the input gradient dx, the
parameter gradients (flat, in dltrain's order), the state after the forward
pass (batch-norm running statistics: updated as torch updates them in train
mode, unchanged in eval mode) and, for the loss cases, the mean softmax
cross-entropy (torch.nn.functional.cross_entropy with label_smoothing 0 and
0.1, whose gradient with respect to the logits is then back-propagated through
a dense layer by both).

Tolerance rule, applied to each compared array separately, in float64 on the
float32 results, a = dltrain's and b = torch's:

    err = max|a - b| / max(max|b|, 1e-3)        pass iff err <= 1e-4

that is, the largest absolute difference relative to the array's largest
magnitude (the floor 1e-3 keeps an all-but-zero array from demanding
differences below float32 rounding). The rule is fixed; do not loosen it to
make a case pass.

Dropout in train mode draws its own mask, which torch cannot reproduce, so
that case is checked against the mask dltrain applied: every y/x is 0 or
1/(1-p) (to float32 rounding), dx = dy * (y/x) under the rule above, and the
fraction of dropped elements lies within 5 standard deviations of p.

Prints one line per case with its largest relative error; exits 1 if any
case fails.

Usage: /usr/bin/python3 tests/reference/check_layers.py --ref-layers PATH --dir SCRATCH
"""
import argparse
import math
import os
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # say what to install rather than print a traceback
    sys.exit("FAIL: %s; this test needs Debian's python3-torch, python3-numpy and "
             "python3-h5py for /usr/bin/python3" % e)

TOL = 1e-4
FLOOR = 1e-3
SEED = 20240611

ACTS = {
    "none": lambda t: t,
    "relu": F.relu,
    "leaky": lambda t: F.leaky_relu(t, 0.01),
    "gelu": lambda t: F.gelu(t),  # exact erf form (approximate='none')
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


def rel_err(a, b):
    """max|a - b| / max(max|b|, FLOOR), in float64 (0 for empty arrays)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError("shape mismatch: dltrain %s vs torch %s" % (a.shape, b.shape))
    if a.size == 0:
        return 0.0
    if not np.all(np.isfinite(a)):
        return math.inf
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), FLOOR))


class TorchModel:
    """The torch twin of a list of dltrain layer sections.

    sections: list of (type, dict) with the keys ref_layers reads. forward()
    applies them in order, keeping each section's output for [shortcut]."""

    def __init__(self, sections, in_shape, gen):
        self.sections = sections
        self.mods = []
        c, h, w = in_shape
        for typ, kw in sections:
            mod = None
            if typ == "dense":
                mod = nn.Linear(c * h * w, kw["units"], bias=bool(kw.get("bias", 1)))
                c, h, w = kw["units"], 1, 1
            elif typ == "conv":
                k, s, p = kw["size"], kw.get("stride", 1), kw.get("pad", 0)
                mod = nn.Conv2d(c, kw["filters"], k, stride=s, padding=p,
                                groups=kw.get("groups", 1), bias=bool(kw.get("bias", 1)))
                c, h, w = kw["filters"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            elif typ in ("maxpool", "avgpool"):
                k, s, p = kw["size"], kw.get("stride", 1), kw.get("pad", 0)
                if k == 0:
                    h = w = 1
                else:
                    h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            elif typ == "batchnorm":
                bn = nn.BatchNorm1d if (h, w) == (1, 1) else nn.BatchNorm2d
                mod = bn(c, eps=kw.get("eps", 1e-5), momentum=kw.get("momentum", 0.1))
                with torch.no_grad():
                    mod.weight.copy_(1.0 + 0.3 * torch.randn(c, generator=gen))
                    mod.bias.copy_(0.2 * torch.randn(c, generator=gen))
                    mod.running_mean.copy_(0.3 * torch.randn(c, generator=gen))
                    mod.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
            elif typ == "flatten":
                c, h, w = c * h * w, 1, 1
            self.mods.append(mod)
        self.out_shape = (c, h, w)

    def params(self):
        """Trainable tensors in dltrain's order: per layer, weight then bias."""
        out = []
        for m in self.mods:
            if m is not None:
                out.append(m.weight)
                if m.bias is not None:
                    out.append(m.bias)
        return out

    def state(self):
        """Batch-norm running mean then running variance, per layer."""
        out = []
        for m in self.mods:
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                out += [m.running_mean, m.running_var]
        return out

    def train(self, on):
        for m in self.mods:
            if m is not None:
                m.train(on)

    def forward(self, x):
        outs = []
        t = x
        for (typ, kw), m in zip(self.sections, self.mods):
            if typ == "dense":
                t = m(t.flatten(1))
            elif typ == "conv":
                t = m(t)
            elif typ == "maxpool":
                t = F.max_pool2d(t, kw["size"], kw.get("stride", 1), kw.get("pad", 0))
            elif typ == "avgpool":
                if kw["size"] == 0:
                    t = F.adaptive_avg_pool2d(t, 1)
                else:  # count_include_pad=True, torch's default
                    t = F.avg_pool2d(t, kw["size"], kw.get("stride", 1), kw.get("pad", 0))
            elif typ == "batchnorm":
                t = m(t.flatten(1)) if isinstance(m, nn.BatchNorm1d) else m(t)
            elif typ == "activation":
                t = ACTS[kw["act"]](t)
            elif typ == "dropout":
                t = F.dropout(t, kw["rate"], training=False)  # train mode: see check_dropout
            elif typ == "shortcut":
                src = outs[kw["from"]]
                if src.dim() == 2:
                    src = src[:, :, None, None]
                if t.dim() == 2:
                    t = t[:, :, None, None]
                s = src.shape[2] // t.shape[2]
                src = src[:, :, ::s, ::s]
                src = F.pad(src, (0, 0, 0, 0, 0, t.shape[1] - src.shape[1]))
                t = t + src
            elif typ == "flatten":
                t = t.flatten(1)
            else:
                raise ValueError("unknown layer type " + typ)
            if typ in ("dense", "conv", "shortcut"):
                t = ACTS[kw.get("act", "none")](t)
            outs.append(t)
        return t


def write_case(d, sections, in_shape, n, mode, loss=None, seed=1):
    lines = ["input %d %d %d" % in_shape, "batch %d" % n, "mode %s" % mode, "seed %d" % seed]
    if loss is not None:
        lines.append("loss smoothing=%r" % loss)
    for typ, kw in sections:
        lines.append(" ".join([typ] + ["%s=%s" % (k, v) for k, v in kw.items()]))
    with open(os.path.join(d, "case.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def save(d, name, arr, dtype="<f4"):
    np.save(os.path.join(d, name), np.ascontiguousarray(np.asarray(arr, dtype=dtype)))


def load(d, name):
    return np.load(os.path.join(d, name), allow_pickle=False)


def flat(tensors):
    if not tensors:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([t.detach().numpy().ravel() for t in tensors]).astype(np.float32)


def run_ref(ref, d):
    p = subprocess.run([ref, d], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError("ref_layers failed (%d): %s" % (p.returncode, p.stderr.strip()))


def check_case(ref, root, name, sections, in_shape, n, mode, loss=None):
    """Run one case through torch and dltrain; return {quantity: rel_err}."""
    gen = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    torch.manual_seed(SEED + len(name))
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    model = TorchModel(sections, in_shape, gen)
    model.train(mode == "train")
    x = torch.randn((n,) + tuple(in_shape), generator=gen, requires_grad=True)
    state_in = flat(model.state())
    save(d, "x.npy", x.detach().numpy())
    save(d, "params.npy", flat(model.params()))
    save(d, "state.npy", state_in)
    y = model.forward(x)
    res = {}
    if loss is None:
        dy = torch.randn(y.shape, generator=gen)
        save(d, "dy.npy", dy.numpy())
        y.backward(dy)
    else:
        labels = torch.randint(0, y.shape[1], (n,), generator=gen)
        save(d, "labels.npy", labels.numpy(), "<i4")
        lt = F.cross_entropy(y, labels, label_smoothing=loss)
        lt.backward()
    write_case(d, sections, in_shape, n, mode, loss)
    run_ref(ref, d)
    if loss is not None:
        res["loss"] = rel_err(load(d, "loss.npy"), [lt.item()])
    res["y"] = rel_err(load(d, "y.npy"), y.detach().numpy())
    res["dx"] = rel_err(load(d, "dx.npy"), x.grad.numpy())
    res["dparams"] = rel_err(load(d, "dparams.npy"), flat([p.grad for p in model.params()]))
    res["state"] = rel_err(load(d, "state_out.npy"), flat(model.state()))
    return res


def check_dropout(ref, root, name, rate, in_shape, n):
    """Train-mode dropout against its own mask (see the module docstring)."""
    gen = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    x = torch.randn((n,) + tuple(in_shape), generator=gen).numpy()
    x[x == 0] = 1.0  # y/x needs x != 0
    dy = torch.randn(x.shape, generator=gen).numpy()
    save(d, "x.npy", x)
    save(d, "params.npy", np.zeros(0))
    save(d, "state.npy", np.zeros(0))
    save(d, "dy.npy", dy)
    write_case(d, [("dropout", {"rate": rate})], in_shape, n, "train", seed=7)
    run_ref(ref, d)
    y, dx = load(d, "y.npy").astype(np.float64), load(d, "dx.npy")
    keep = 1.0 / (1.0 - rate)
    ratio = y / x
    kept = np.abs(ratio - keep) <= 1e-6 * keep
    dropped = y == 0
    res = {"mask": 0.0 if np.all(kept | dropped) else math.inf}
    mask = np.where(dropped, 0.0, keep)
    res["dx"] = rel_err(dx, dy * mask)
    frac, m = float(np.mean(dropped)), x.size
    sigma = math.sqrt(rate * (1 - rate) / m)
    res["fraction"] = 0.0 if abs(frac - rate) <= 5 * sigma else math.inf
    return res


def cases():
    """(name, sections, input C H W, batch, mode[, smoothing])."""
    conv = lambda f, k, s=1, p=0, **kw: ("conv", dict(filters=f, size=k, stride=s, pad=p, **kw))
    act = lambda a: ("activation", {"act": a})
    return [
        ("dense_bias", [("dense", {"units": 5, "bias": 1})], (3, 2, 2), 4, "train"),
        ("dense_nobias", [("dense", {"units": 6, "bias": 0})], (10, 1, 1), 3, "train"),
        ("dense_relu", [("dense", {"units": 7, "act": "relu"})], (9, 1, 1), 5, "train"),
        ("conv3x3_s1_p1", [conv(4, 3, 1, 1)], (3, 8, 8), 5, "train"),
        ("conv3x3_s2_p0_nobias", [conv(5, 3, 2, 0, bias=0)], (3, 9, 9), 3, "train"),
        ("conv5x5_groups2", [conv(6, 5, 1, 2, groups=2)], (4, 9, 9), 3, "train"),
        ("conv1x1", [conv(3, 1)], (5, 6, 6), 3, "train"),
        ("conv1x1_16x16", [conv(3, 1)], (5, 16, 16), 2, "train"),
        ("maxpool_2_2", [("maxpool", dict(size=2, stride=2, pad=0))], (3, 8, 8), 3, "train"),
        ("maxpool_3_2_pad1", [("maxpool", dict(size=3, stride=2, pad=1))], (3, 9, 9), 3,
         "train"),
        ("avgpool_2_2", [("avgpool", dict(size=2, stride=2, pad=0))], (3, 8, 8), 3, "train"),
        ("avgpool_3_1_pad1", [("avgpool", dict(size=3, stride=1, pad=1))], (3, 7, 7), 3,
         "train"),
        ("avgpool_global", [("avgpool", dict(size=0, stride=1, pad=0))], (4, 5, 5), 3, "train"),
        ("batchnorm2d_train", [conv(4, 3, 1, 1, bias=0), ("batchnorm", {})], (3, 6, 6), 4,
         "train"),
        ("batchnorm2d_eval", [conv(4, 3, 1, 1, bias=0), ("batchnorm", {})], (3, 6, 6), 4,
         "eval"),
        ("batchnorm1d_train", [("dense", {"units": 6}), ("batchnorm", {})], (10, 1, 1), 8,
         "train"),
        ("batchnorm1d_eval", [("dense", {"units": 6}), ("batchnorm", {})], (10, 1, 1), 8,
         "eval"),
        ("act_relu", [act("relu")], (2, 3, 4), 3, "train"),
        ("act_leaky", [act("leaky")], (2, 3, 4), 3, "train"),
        ("act_gelu", [act("gelu")], (2, 3, 4), 3, "train"),
        ("act_tanh", [act("tanh")], (2, 3, 4), 3, "train"),
        ("act_sigmoid", [act("sigmoid")], (2, 3, 4), 3, "train"),
        ("dropout_eval", [("dropout", {"rate": 0.3})], (2, 3, 4), 3, "eval"),
        ("shortcut_identity",
         [conv(4, 3, 1, 1, act="relu"), conv(4, 3, 1, 1, act="relu"), conv(4, 3, 1, 1),
          ("shortcut", {"from": 0, "act": "relu"})], (3, 6, 6), 3, "train"),
        ("shortcut_downsample",
         [conv(4, 3, 1, 1, act="relu"), conv(8, 3, 2, 1, act="relu"), conv(8, 3, 1, 1),
          ("shortcut", {"from": 0, "act": "relu"})], (3, 8, 8), 3, "train"),
        ("flatten", [conv(3, 3, 1, 1), ("flatten", {}), ("dense", {"units": 4})], (2, 5, 5), 3,
         "train"),
        ("xent_smoothing0", [("dense", {"units": 10})], (12, 1, 1), 8, "train", 0.0),
        ("xent_smoothing0.1", [("dense", {"units": 10})], (12, 1, 1), 8, "train", 0.1),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref-layers", required=True, help="the ref_layers program")
    ap.add_argument("--dir", required=True, help="scratch directory for the case files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.dir, exist_ok=True)
    failed = 0
    runs = [(c[0], lambda c=c: check_case(args.ref_layers, args.dir, *c)) for c in cases()]
    runs.append(("dropout_train", lambda: check_dropout(args.ref_layers, args.dir,
                                                        "dropout_train", 0.25, (4, 8, 8), 4)))
    for name, fn in runs:
        try:
            res = fn()
        except Exception as e:  # a crash or a shape mismatch fails the case
            print("FAIL %-22s %s" % (name, e))
            failed += 1
            continue
        worst = max(res.values())
        ok = worst <= TOL
        failed += not ok
        detail = " ".join("%s=%.2e" % kv for kv in res.items())
        print("%s %-22s max rel err %.2e  (%s)" % ("PASS" if ok else "FAIL", name, worst, detail))
    print("%d of %d cases failed (tolerance %.0e)" % (failed, len(runs), TOL))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
