#!/usr/bin/python3
"""Print the learning rates torch.optim.lr_scheduler.ReduceLROnPlateau gives
for the metric sequences of tests/test_optim.c (test_plateau), as C arrays to
paste there. Run once with Debian's python3-torch 1.13: /usr/bin/python3
tests/reference/plateau_rates.py. Each case: mode, base lr, factor (dltrain's
[schedule] gamma), patience, threshold (relative), cooldown, min_lr, metrics."""
import math

import torch

CASES = [
    # test loss (min), the defaults of a dltrain plateau job but patience 2,
    # a NaN metric (never an improvement) and ties within the threshold
    ("min", 0.1, 0.1, 2, 1e-4, 0, 0.0,
     [1.0, 0.9, 0.95, 0.9, 0.89999, 0.85, 0.86, 0.87, 0.88, 0.9, 0.91, math.nan, 0.84,
      0.9, 0.9, 0.9]),
    # test accuracy (max) with cooldown and a floor
    ("max", 0.2, 0.5, 1, 0.01, 2, 0.01,
     [0.5, 0.6, 0.605, 0.61, 0.7, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69, 0.8,
      0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]),
    # a threshold so large that no evaluation improves (the test of mpi.lr_coordination)
    ("min", 0.05, 0.1, 1, 10.0, 0, 1e-4, [2.0, 1.5, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1]),
    # rates near PyTorch's eps (1e-8): a cut smaller than eps is not made
    ("min", 1.5e-8, 0.1, 0, 1e-4, 0, 0.0, [1.0, 1.0, 1.0, 1.0]),
]


def rates(mode, lr, factor, patience, threshold, cooldown, min_lr, metrics):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    s = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=mode, factor=factor, patience=patience, threshold=threshold,
        threshold_mode="rel", cooldown=cooldown, min_lr=min_lr)
    out = []
    for m in metrics:
        s.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


for case in CASES:
    print("/* %s */" % (case[:7],))
    print("{" + ", ".join("%.17g" % r for r in rates(*case)) + "},")
