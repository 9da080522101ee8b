#!/usr/bin/python3
"""End-to-end checks of the data pipeline (issue 4), through real dltrain runs.

1. Coverage: a training set in five uneven shards (1003 samples, global batch
   12, so 7 samples are left over each epoch) is trained for two epochs on 1,
   2, 3 and 4 ranks, in permutation and in stream order, with [data] trace on.
   Every rank must take the same number of steps; in every epoch the ranks
   together must read every sample at most once and all but N mod G of them;
   and the global order (the ranks' slices of each step put together) must be
   the same on every number of ranks.
2. Streaming: a dataset ten times larger than [data] memory_budget_mb trains
   in stream order on 2 ranks; the job's estimated data memory stays within
   the budget and its peak resident memory well below the dataset's size.
3. A budget the job cannot meet stops it before training, with a message
   that says what to change, and without touching the run directory.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys

import h5py
import numpy as np

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg, file=sys.stderr)


def write_shard(path, images, labels, num_classes):
    with h5py.File(path, "w") as f:
        f.attrs["dltrain_schema"] = np.bytes_("image-classification")
        f.attrs["schema_version"] = np.int32(1)
        f.attrs["num_classes"] = np.int32(num_classes)
        d = f.create_dataset("images", data=images)
        c = images.shape[1]
        d.attrs["mean"] = np.full(c, 127.5)
        d.attrs["std"] = np.full(c, 64.0)
        f.create_dataset("labels", data=labels)


def make_sets(d, sizes, shape, seed):
    """Shards of learnable data: the label is which quarter the mean pixel is in."""
    rng = np.random.default_rng(seed)
    paths = []
    for k, n in enumerate(sizes):
        labels = rng.integers(0, 4, n).astype(np.uint8)
        images = rng.integers(0, 64, (n,) + shape).astype(np.uint8) + (labels * 64).reshape(
            (n,) + (1,) * len(shape)).astype(np.uint8)
        p = os.path.join(d, "shard-%d.h5" % k)
        write_shard(p, images, labels, 4)
        paths.append(p)
    return paths


def run(cmd, log):
    with open(log, "w") as out:
        return subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)


def job_file(d, name, train, test, extra):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write("[train]\nepochs = %s\nglobal_batch_size = %d\nthreads = 1\nlog_every = 50\n"
                "progress = lines\n[data]\ntrain = %s\ntest = %s\n%s\n[optim]\nlr = 0.05\n"
                "[dense]\nunits = 4\n" % (extra.get("epochs", 2), extra.get("gbs", 12), train,
                                        test, extra.get("data", "")))
    return p


def read_trace(path):
    steps = []
    with open(path) as f:
        for line in f:
            v = [int(x) for x in line.split()]
            steps.append((v[0], v[1:]))
    return steps


def check_coverage(a, d):
    sizes = [400, 3, 250, 337, 13]
    n, g, epochs = sum(sizes), 12, 2
    shards = make_sets(d, sizes, (1, 4, 4), 1)
    test = make_sets(os.path.join(d, "test"), [50], (1, 4, 4), 2)[0]
    train = ",".join(shards)
    spe = n // g
    for order, data in (("permutation", "shuffle_block = 0"),
                        ("stream", "shuffle_block = 16\nshuffle_buffer = 40")):
        job = job_file(d, "cover-%s.ini" % order, train, test, {"data": data + "\ntrace = true"})
        global_orders = {}
        for world in (1, 2, 3, 4):
            rd = os.path.join(d, "cover-%s-%d" % (order, world))
            rc = run(a.mpirun + [str(world), a.dltrain, job, "train.run_dir=" + rd], rd + ".log")
            if rc != 0:
                fail("%s order on %d ranks: exit status %d (see %s.log)" % (order, world, rc, rd))
                continue
            s = json.load(open(os.path.join(rd, "summary.json")))
            if s["data_order"] != order or s["steps"] != epochs * spe:
                fail("%s/%d: summary says order %s, %d steps" % (order, world, s["data_order"],
                                                               s["steps"]))
            traces = [read_trace(os.path.join(rd, "data-trace-rank%d.txt" % r))
                      for r in range(world)]
            if {len(t) for t in traces} != {epochs * spe}:
                fail("%s/%d: steps per rank %s, expected %d each"
                     % (order, world, [len(t) for t in traces], epochs * spe))
                continue
            order_seq = []
            for step in range(epochs * spe):
                whole = []
                for r in range(world):
                    st, idx = traces[r][step]
                    if st != step or len(idx) != g // world:
                        fail("%s/%d rank %d: trace line %d is step %d with %d samples"
                             % (order, world, r, step, st, len(idx)))
                    whole += idx
                order_seq.append(whole)
            for e in range(epochs):
                seen = np.concatenate([np.array(b) for b in order_seq[e * spe:(e + 1) * spe]])
                if len(seen) != len(set(seen.tolist())) or len(seen) != n - n % g:
                    fail("%s/%d epoch %d: %d samples read, %d distinct, expected %d distinct"
                         % (order, world, e, len(seen), len(set(seen.tolist())), n - n % g))
                if seen.min() < 0 or seen.max() >= n:
                    fail("%s/%d epoch %d: sample index out of range" % (order, world, e))
            global_orders[world] = order_seq
        ref = global_orders.get(1)
        for world, seq in global_orders.items():
            if seq != ref:
                fail("%s order: the global batches on %d ranks differ from 1 rank" % (order, world))
        if ref and ref[:spe] == ref[spe:2 * spe]:
            fail("%s order: epochs 0 and 1 have the same order" % order)
        print("coverage, %s order: 1-4 ranks, %d steps each, every epoch exact" % (order, 2 * spe))


def check_streaming(a, d):
    n, shape = 52000, (3, 32, 32)  # 152 MiB of images
    sizes = [n // 4] * 4
    shards = make_sets(os.path.join(d, "big"), sizes, shape, 3)
    test = make_sets(os.path.join(d, "bigtest"), [512], shape, 4)[0]
    data_mib = n * int(np.prod(shape)) / 2**20
    budget = int(data_mib // 10)
    job = job_file(d, "stream.ini", os.path.join(d, "big", "shard-*.h5"), test,
                   {"epochs": 1, "gbs": 64,
                    "data": "shuffle_block = 256\nshuffle_buffer = 8192\nmemory_budget_mb = %d"
                            % budget})
    rd = os.path.join(d, "stream-run")
    rc = run(a.mpirun + ["2", a.dltrain, job, "train.run_dir=" + rd], rd + ".log")
    if rc != 0:
        fail("streaming %.0f MiB under a %d MiB budget: exit status %d (see %s.log)"
             % (data_mib, budget, rc, rd))
        return
    s = json.load(open(os.path.join(rd, "summary.json")))
    print("streaming: %.0f MiB of data, budget %d MiB: data pipeline %.2f MiB per rank, peak "
          "resident memory %.1f MiB, test accuracy %.3f, %d steps"
          % (data_mib, budget, s["data_memory_mib"], s["peak_rss_mib"], s["test_accuracy"],
             s["steps"]))
    if s["data_memory_mib"] > budget:
        fail("data pipeline %.2f MiB over the budget %d MiB" % (s["data_memory_mib"], budget))
    if s["peak_rss_mib"] > data_mib / 2:
        fail("peak resident memory %.1f MiB: the %.0f MiB dataset was not streamed"
             % (s["peak_rss_mib"], data_mib))
    if s["steps"] != n // 64 or s["test_accuracy"] < 0.9:
        fail("streaming run: %d steps, test accuracy %.3f (expected %d, >= 0.9)"
             % (s["steps"], s["test_accuracy"], n // 64))

    # The permutation order of these samples with a budget of 1 MiB cannot fit.
    rd2 = os.path.join(d, "over-budget")
    rc = run(a.mpirun + ["2", a.dltrain, job, "train.run_dir=" + rd2, "data.shuffle_block=0",
                         "data.memory_budget_mb=1"], rd2 + ".log")
    msg = open(rd2 + ".log").read()
    if rc != 2 or "memory_budget_mb = 1" not in msg or "shuffle_block" not in msg:
        fail("over budget: exit status %d (expected 2), message: %s" % (rc, msg))
    if os.path.exists(rd2):
        fail("over budget: the run directory was created")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dltrain", required=True)
    p.add_argument("--mpirun", required=True, help="mpirun command ending in the -np flag")
    p.add_argument("--dir", required=True)
    a = p.parse_args()
    a.mpirun = shlex.split(a.mpirun)
    for sub in ("", "test", "big", "bigtest"):
        os.makedirs(os.path.join(a.dir, sub), exist_ok=True)
    check_coverage(a, a.dir)
    check_streaming(a, a.dir)
    if failures:
        print("%d check(s) failed" % len(failures), file=sys.stderr)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
