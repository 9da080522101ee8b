#!/usr/bin/python3
"""Load a dltrain checkpoint into the PyTorch model of dltrain's cnn2 preset.
Usage: python3 load_checkpoint.py RUN_DIR/checkpoints/ckpt-0000001000.h5"""
import sys

import h5py
import torch
import torch.nn as nn


def cnn2(classes=10):
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, classes))


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


if __name__ == "__main__":
    model = cnn2()
    step = load_checkpoint(sys.argv[1], model)
    print("loaded %s: step %d" % (sys.argv[1], step))
