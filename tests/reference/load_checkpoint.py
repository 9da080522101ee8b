#!/usr/bin/python3
"""Load a dltrain checkpoint into PyTorch and evaluate it on a test set.
Usage: python3 load_checkpoint.py CKPT.h5 [TEST.h5 [cnn2|cnn2bn|mlp]]   (default cnn2)
e.g.   python3 load_checkpoint.py runs/x/checkpoints/ckpt-0000001000.h5 data/fashion-test.h5"""
import glob
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def cnn2(classes=10, shape=(1, 28, 28)):
    """dltrain's cnn2 preset."""
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU(),
        nn.Linear(128, classes))


def cnn2bn(classes=10, shape=(1, 28, 28)):
    """dltrain's cnn2bn preset."""
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 128), nn.BatchNorm1d(128),
        nn.ReLU(), nn.Linear(128, classes))


def mlp(classes=10, shape=(1, 28, 28), units=(256, 128, 100)):
    """dltrain's mlp preset, and docs/examples/fashion-mlp.ini: [dense] layers
    of these units with activation = relu, then a dense layer of classes."""
    layers, inputs = [nn.Flatten()], int(np.prod(shape))
    for u in units:
        layers += [nn.Linear(inputs, u), nn.ReLU()]
        inputs = u
    return nn.Sequential(*layers, nn.Linear(inputs, classes))


def load_checkpoint(path, model):
    """Copy the file's trainable tensors into model.parameters() and its
    batch-norm running statistics into the model's buffers, both in order."""
    with h5py.File(path, "r") as f:
        tensors = sorted(f["model"].values(), key=lambda d: d.attrs["index"])
        src = ([d for d in tensors if d.attrs["trainable"]] +
               [d for d in tensors if not d.attrs["trainable"]])
        dst = list(model.parameters()) + [b for name, b in model.named_buffers()
                                          if not name.endswith("num_batches_tracked")]
        assert len(src) == len(dst), "%d tensors in the file, %d in the model" % (len(src), len(dst))
        with torch.no_grad():
            for d, t in zip(src, dst):
                assert d.shape == tuple(t.shape), (d.name, d.shape, tuple(t.shape))
                t.copy_(torch.from_numpy(d[()]))
        return int(f["train"].attrs["step"])


def shards(spec):
    """The files of a [data] spec: a comma-separated list, globs sorted."""
    return [p for s in spec.split(",")
            for p in (sorted(glob.glob(s)) if any(c in s for c in "*?[") else [s])]


def normalisation(ckpt):
    """The per-channel mean and std dltrain normalises inputs with (the
    training data's, pooled over its shards), as the checkpoint stores them."""
    with h5py.File(ckpt, "r") as f:
        return np.asarray(f["train/input_mean"]), np.asarray(f["train/input_std"])


def evaluate(model, ckpt, spec, label_smoothing=0.0, batch=1000):
    """The test loss and accuracy dltrain reports for model on the dataset
    spec: inputs (x - mean[c]) / std[c] with ckpt's statistics, computed in
    float64 and rounded to float32, model in eval mode, mean softmax
    cross-entropy, top-1 accuracy."""
    mean, std = normalisation(ckpt)
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for p in shards(spec):
            with h5py.File(p, "r") as f:
                for i in range(0, f["images"].shape[0], batch):
                    x = f["images"][i:i + batch].astype(np.float64)
                    x = ((x - mean[None, :, None, None]) / std[None, :, None, None])
                    y = torch.from_numpy(f["labels"][i:i + batch].astype(np.int64))
                    z = model(torch.from_numpy(x.astype(np.float32)))
                    loss += F.cross_entropy(z.double(), y, reduction="sum",
                                            label_smoothing=label_smoothing).item()
                    correct += int((z.argmax(1) == y).sum())
                    n += len(y)
    return loss / n, correct / n


if __name__ == "__main__":
    ckpt, test = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
    make = {"cnn2": cnn2, "cnn2bn": cnn2bn, "mlp": mlp}[sys.argv[3] if len(sys.argv) > 3
                                                        else "cnn2"]
    classes, shape = 10, (1, 28, 28)
    if test:
        with h5py.File(shards(test)[0], "r") as f:
            classes, shape = int(f.attrs["num_classes"]), f["images"].shape[1:]
    model = make(classes, shape)
    step = load_checkpoint(ckpt, model)
    print("loaded %s: step %d" % (ckpt, step))
    if test:
        loss, acc = evaluate(model, ckpt, test)
        print("%s: test_accuracy %.6f, test_loss %.6f" % (test, acc, loss))
