#!/usr/bin/python3
"""dltrain-data npy, csv and tokens, end to end.

Makes small inputs with NumPy, converts them (one file and --shards 3), and
checks with h5py that the stored arrays equal the inputs exactly, with the
right num_classes, mean and std; checks that bad inputs exit with status 2,
name the file (and line) and leave no output or .tmp file; and trains a
tiny MLP on a float dataset made from CSV (two Gaussian blobs) to >= 0.95
test accuracy. Runs with Debian's /usr/bin/python3 (python3-numpy,
python3-h5py).

Usage: test_convert.py --dltrain-data BIN --dltrain BIN --dir SCRATCH
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

FAILS = []


def fail(what):
    FAILS.append(what)
    print("FAIL: " + what, file=sys.stderr)


def check(cond, what):
    if not cond:
        fail(what)
    return cond


class Env:
    def __init__(self, data_bin, dltrain, scratch):
        self.data_bin = data_bin
        self.dltrain = dltrain
        self.dir = scratch

    def path(self, name):
        return os.path.join(self.dir, name)

    def run(self, *args, binary=None):
        p = subprocess.run([binary or self.data_bin] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=300)
        return p.returncode, p.stdout, p.stderr

    def convert_ok(self, *args):
        rc, out, err = self.run(*args)
        check(rc == 0, "%s exited %d: %s" % (" ".join(map(str, args[:1])), rc, err.strip()))
        return out

    def convert_fails(self, what, args, out, needles):
        """The conversion exits 2, names every needle, and leaves no file."""
        stem = out[:-3] if out.endswith(".h5") else out
        rc, _, err = self.run(*args)
        check(rc == 2, "%s: exit status %d, expected 2 (stderr: %s)" % (what, rc, err.strip()))
        for n in needles:
            check(n in err, "%s: expected %r in the message: %s" % (what, n, err.strip()))
        left = glob.glob(glob.escape(stem) + "*")
        check(not left, "%s: a failed conversion left %s" % (what, left))


def shard_files(out, k):
    if k == 1:
        return [out]
    stem = out[:-3]
    return ["%s-%05d-of-%05d.h5" % (stem, i, k) for i in range(k)]


def read_all(files, name):
    parts = []
    for f in files:
        with h5py.File(f, "r") as h:
            parts.append(h[name][...])
    return np.concatenate(parts)


def close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def check_image_dataset(what, files, x, y, is_float):
    """Shards hold x (N x C x H x W) and y exactly, with per-shard stats."""
    n = len(y)
    check(len(files) >= 1 and all(os.path.exists(f) for f in files), what + ": output files")
    got_x = read_all(files, "images")
    got_y = read_all(files, "labels")
    want_dtype = np.float32 if is_float else np.uint8
    check(got_x.dtype == want_dtype, "%s: /images dtype %s" % (what, got_x.dtype))
    check(got_x.shape == x.shape, "%s: /images shape %s, expected %s" % (what, got_x.shape, x.shape))
    check(np.array_equal(got_x, x.astype(want_dtype)), what + ": /images differ from the input")
    check(np.array_equal(got_y.astype(np.int64), y.astype(np.int64)), what + ": /labels differ")
    lo = 0
    for k, f in enumerate(files):
        hi = n * (k + 1) // len(files)
        with h5py.File(f, "r") as h:
            check(h.attrs["dltrain_schema"] in (b"image-classification", "image-classification"),
                  what + ": dltrain_schema")
            check(int(h.attrs["schema_version"]) == 1, what + ": schema_version")
            check(int(h.attrs["num_classes"]) == int(y.max()) + 1, what + ": num_classes")
            part = h["images"][...].astype(np.float64)
            mean, std = h["images"].attrs["mean"], h["images"].attrs["std"]
            for c in range(x.shape[1]):
                v = part[:, c]
                check(close(mean[c], v.mean()) and close(std[c], v.std()),
                      "%s: shard %d channel %d mean/std %g/%g, numpy %g/%g"
                      % (what, k, c, mean[c], std[c], v.mean(), v.std()))
            check(h["images"].shape[0] == hi - lo, "%s: shard %d size" % (what, k))
            check("fnv1a64" in h["images"].attrs and "fnv1a64" in h["labels"].attrs,
                  what + ": checksums stored")
        lo = hi


def check_info_verify(env, what, spec, n, is_float):
    rc, out, err = env.run("info", spec)
    check(rc == 0 and ("total samples: %d" % n) in out, "%s: info: %s %s" % (what, out, err))
    check(("image type: " + ("float32" if is_float else "uint8")) in out, what + ": info type")
    rc, out, err = env.run("verify", spec)
    check(rc == 0 and "checksums match" in out, "%s: verify: %s %s" % (what, out, err))


# ---- .npy ------------------------------------------------------------------------

def test_npy(env, rng):
    n = 300
    y = rng.integers(0, 7, n)
    cases = [
        ("u8_nchw", rng.integers(0, 256, (n, 3, 4, 5)).astype(np.uint8), (n, 3, 4, 5)),
        ("u8_nhw", rng.integers(0, 256, (n, 6, 5)).astype(np.uint8), (n, 1, 6, 5)),
        ("f64_nd", rng.normal(3.0, 2.0, (n, 9)), (n, 1, 1, 9)),
        ("f32_nchw", rng.normal(-1.0, 0.5, (n, 2, 3, 3)).astype(np.float32), (n, 2, 3, 3)),
    ]
    for name, x, shape in cases:
        is_float = x.dtype != np.uint8
        np.save(env.path(name + ".x.npy"), x)
        np.save(env.path(name + ".y.npy"), y)
        for k in (1, 3):
            out = env.path("%s-%d.h5" % (name, k))
            env.convert_ok("npy", env.path(name + ".x.npy"), env.path(name + ".y.npy"), out,
                           "--shards", k)
            files = shard_files(out, k)
            check_image_dataset("npy %s --shards %d" % (name, k), files, x.reshape(shape), y,
                                is_float)
            spec = out if k == 1 else out[:-3] + "-*-of-00003.h5"
            check_info_verify(env, "npy %s --shards %d" % (name, k), spec, n, is_float)

    # Every integer label type, and .npy format versions 2.0 and 3.0.
    x = rng.normal(0, 1, (40, 3)).astype(np.float32)
    y = np.arange(40) % 5
    np.save(env.path("small.x.npy"), x)
    for dt in ("|u1", "|i1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8"):
        np.save(env.path("lab.npy"), y.astype(dt))
        out = env.path("lab.h5")
        env.convert_ok("npy", env.path("small.x.npy"), env.path("lab.npy"), out)
        if os.path.exists(out):
            check_image_dataset("labels " + dt, [out], x.reshape(40, 1, 1, 3), y, True)
            os.remove(out)
    for version in ((2, 0), (3, 0)):
        p = env.path("v%d.x.npy" % version[0])
        with open(p, "wb") as f:
            np.lib.format.write_array(f, x, version=version)
        out = env.path("v%d.h5" % version[0])
        np.save(env.path("lab.npy"), y)
        env.convert_ok("npy", p, env.path("lab.npy"), out)
        if os.path.exists(out):
            check_image_dataset("npy version %d" % version[0], [out], x.reshape(40, 1, 1, 3), y,
                                True)

    # Bad inputs: exit 2, the file named, no output left.
    good_y = env.path("lab.npy")
    bad = env.path("bad.npy")
    out = env.path("bad_npy.h5")

    def bad_case(what, features, labels, needles, shards=1):
        env.convert_fails("npy " + what, ["npy", features, labels, out, "--shards", shards], out,
                          needles)

    with open(bad, "w") as f:
        f.write("this is not numpy\n")
    bad_case("bad magic", bad, good_y, ["bad.npy", "bad magic"])
    np.save(bad, np.asfortranarray(rng.normal(0, 1, (40, 3))))
    bad_case("fortran order", bad, good_y, ["bad.npy", "Fortran"])
    np.save(bad, x.astype(">f4"))
    bad_case("big-endian", bad, good_y, ["bad.npy", "big-endian", "'>f4'"])
    np.save(bad, x[:39])
    bad_case("count mismatch", bad, good_y, ["lab.npy has 40 labels", "bad.npy has 39 samples"])
    np.save(bad, x)
    with open(bad, "r+b") as f:
        f.truncate(os.path.getsize(bad) - 7)
    bad_case("truncated", bad, good_y, ["bad.npy", "truncated"])
    np.save(bad, x.astype(np.int16))
    bad_case("int16 features", bad, good_y, ["bad.npy", "'<i2'", "not accepted for features"])
    np.save(bad, y.astype(np.float32))
    bad_case("float labels", env.path("small.x.npy"), bad, ["bad.npy", "not accepted for labels"])
    np.save(bad, np.where(y == 3, -1, y))
    bad_case("negative label", env.path("small.x.npy"), bad, ["bad.npy", "is -1"])
    xn = x.copy()
    xn[17, 2] = np.nan
    np.save(bad, xn)
    bad_case("NaN feature", bad, good_y, ["bad.npy", "sample 17", "nan"])
    np.save(bad, np.full((40, 3), 2.5, np.float32))
    bad_case("constant features", bad, good_y, ["bad.npy", "standard deviation is 0"])
    bad_case("too many shards", env.path("small.x.npy"), good_y,
             ["--shards 41", "has only 40 samples"], shards=41)
    bad_case("missing file", env.path("nope.npy"), good_y, ["nope.npy", "no such file"])


# ---- CSV ---------------------------------------------------------------------------------

def write_csv(path, header, rows):
    with open(path, "w") as f:
        if header:
            f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")


def test_csv(env, rng):
    n, d = 300, 4
    x = rng.normal(5.0, 3.0, (n, d))
    y = rng.integers(0, 3, n)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    rows = [[repr(float(v)) for v in x[i]] + [str(y[i])] for i in range(n)]
    src = env.path("iris.csv")
    write_csv(src, names, rows)
    want = x.astype(np.float32).reshape(n, 1, 1, d)
    for k in (1, 3):
        out = env.path("iris-%d.h5" % k)
        env.convert_ok("csv", src, out, "--shards", k)
        check_image_dataset("csv --shards %d" % k, shard_files(out, k), want, y, True)
        spec = out if k == 1 else out[:-3] + "-*-of-00003.h5"
        check_info_verify(env, "csv --shards %d" % k, spec, n, True)

    # Label column first, chosen by name and by index; no header; CRLF,
    # quotes, spaces and blank lines.
    rows_first = [[str(y[i])] + [repr(float(v)) for v in x[i]] for i in range(n)]
    p = env.path("first.csv")
    write_csv(p, ["label", "a", "b", "c", "d"], rows_first)
    for sel in ("label", "0", "-5"):
        out = env.path("first.h5")
        env.convert_ok("csv", p, out, "--label-column", sel)
        if os.path.exists(out):
            check_image_dataset("csv --label-column " + sel, [out], want, y, True)
            os.remove(out)
    p = env.path("noheader.csv")
    with open(p, "w", newline="") as f:
        f.write("\r\n")
        for i in range(n):
            f.write(" %s , \"%s\",%s,%s, %d\r\n" % tuple(list(rows[i][:4]) + [y[i]]))
        f.write("\r\n")
    out = env.path("noheader.h5")
    env.convert_ok("csv", p, out)
    if os.path.exists(out):
        check_image_dataset("csv without header", [out], want, y, True)
    # A numeric header line is data unless --header says otherwise.
    p = env.path("numhead.csv")
    write_csv(p, ["1", "2", "3", "4", "5"], rows)
    out = env.path("numhead.h5")
    env.convert_ok("csv", p, out, "--header")
    if os.path.exists(out):
        check_image_dataset("csv --header", [out], want, y, True)

    out = env.path("bad_csv.h5")

    def bad_case(what, lines, needles, *opts):
        p = env.path("bad.csv")
        with open(p, "w") as f:
            f.write("\n".join(lines) + "\n")
        env.convert_fails("csv " + what, ["csv", p, out] + list(opts), out, needles)

    head = ",".join(names)
    good = [",".join(r) for r in rows[:20]]
    bad_row = list(rows[16])
    bad_row[3] = "abc"
    bad_case("non-numeric cell", [head] + good[:15] + [",".join(bad_row)] + good[15:],
             ['bad.csv:17: column 3 ("petal_width"): "abc" is not a number'])
    bad_case("ragged row", [head] + good[:5] + [",".join(rows[5][:4])] + good[5:],
             ["bad.csv:7: 4 columns but the first line has 5"])
    bad_case("ragged row, no header", good[:3] + [good[3] + ",7"],
             ["bad.csv:4: 6 columns but the first line has 5"])
    bad_row = list(rows[2])
    bad_row[1] = ""
    bad_case("empty cell", [head] + good[:2] + [",".join(bad_row)],
             ['bad.csv:4: column 1 ("sepal_width"): the cell is empty'])
    bad_row = list(rows[2])
    bad_row[4] = "setosa"
    bad_case("label not a number", [head] + good[:2] + [",".join(bad_row)],
             ['bad.csv:4: column 4 ("species"): label "setosa" is not a class number'])
    bad_row[4] = "1.5"
    bad_case("label not whole", [head] + good[:2] + [",".join(bad_row)],
             ['bad.csv:4: column 4 ("species"): label "1.5"'])
    bad_row = list(rows[2])
    bad_row[0] = "nan"
    bad_case("nan", [head] + good[:2] + [",".join(bad_row)],
             ['bad.csv:4: column 0 ("sepal_length"): "nan" is not a finite number'])
    bad_case("header only", [head], ["bad.csv: has a header line but no data rows"])
    bad_case("unknown label column", [head] + good, ["--label-column kind", "bad.csv"],
             "--label-column", "kind")
    bad_case("label column out of range", [head] + good, ["--label-column 5", "5 columns"],
             "--label-column", "5")
    env.convert_fails("csv missing file", ["csv", env.path("nope.csv"), out], out,
                      ["nope.csv", "no such file"])
    rc, _, err = env.run("csv", src, out, "--frobnicate")
    check(rc == 2 and "unknown option '--frobnicate'" in err, "csv unknown option: " + err)


# ---- tokens -----------------------------------------------------------------------------------

def check_tokens(what, files, want, vocab, dtype):
    got = read_all(files, "tokens")
    check(got.dtype == dtype, "%s: dtype %s" % (what, got.dtype))
    check(np.array_equal(got.astype(np.int64), want.astype(np.int64)),
          what + ": concatenated /tokens differ from the input")
    n = len(want)
    for k, f in enumerate(files):
        with h5py.File(f, "r") as h:
            check(h.attrs["dltrain_schema"] in (b"tokens", "tokens"), what + ": dltrain_schema")
            check(int(h.attrs["schema_version"]) == 1, what + ": schema_version")
            check(int(h.attrs["vocab_size"]) == vocab, "%s: vocab_size %d, expected %d"
                  % (what, int(h.attrs["vocab_size"]), vocab))
            t = h["tokens"]
            size = n * (k + 1) // len(files) - n * k // len(files)
            check(t.shape == (size,), "%s: shard %d has %s tokens" % (what, k, t.shape))
            chunk = min(size, (1 << 20) // np.dtype(dtype).itemsize)
            check(t.chunks == (chunk,), "%s: chunks %s, expected %d" % (what, t.chunks, chunk))
            check("fnv1a64" in t.attrs, what + ": checksum stored")


def test_tokens(env, rng):
    data = rng.integers(0, 256, 1_300_000).astype(np.uint8)  # more than one 1 MiB chunk
    src = env.path("bytes.bin")
    data.tofile(src)
    for k in (1, 3):
        out = env.path("bytes-%d.h5" % k)
        env.convert_ok("tokens", src, out, "--shards", k)
        check_tokens("tokens bytes --shards %d" % k, shard_files(out, k), data, 256, np.uint16)
        spec = out if k == 1 else out[:-3] + "-*-of-00003.h5"
        rc, o, e = env.run("info", spec)
        check(rc == 0 and "total tokens: 1300000" in o and "vocab size: 256" in o and
              "dtype: uint16" in o and ("shards: %d" % k) in o, "tokens info: " + o + e)
        rc, o, e = env.run("verify", spec)
        check(rc == 0 and "checksum matches" in o and "ok: 1300000 tokens" in o,
              "tokens verify: " + o + e)

    ids = rng.integers(0, 50000, 5000)
    ids[1234] = 60001
    p = env.path("ids.txt")
    with open(p, "w") as f:
        for i in range(0, len(ids), 7):
            f.write("  ".join(str(v) for v in ids[i:i + 7]) + (" \t\n" if i % 3 else "\n\n"))
    for k in (1, 3):
        out = env.path("ids-%d.h5" % k)
        env.convert_ok("tokens", p, out, "--ids", "--shards", k)
        check_tokens("tokens --ids --shards %d" % k, shard_files(out, k), ids, 60002, np.uint16)
    big = ids.copy()
    big[10] = 3_000_000
    p32 = env.path("ids32.txt")
    with open(p32, "w") as f:
        f.write(" ".join(str(v) for v in big) + "\n")
    out = env.path("ids32.h5")
    env.convert_ok("tokens", p32, out, "--ids", "--dtype", "uint32")
    check_tokens("tokens --dtype uint32", [out], big, 3_000_001, np.uint32)
    rc, o, e = env.run("verify", out)
    check(rc == 0 and "checksum matches" in o, "tokens uint32 verify: " + o + e)

    # A flipped token byte is found by verify.
    flipped = env.path("flipped-tokens.h5")
    shutil.copy(env.path("bytes-1.h5"), flipped)
    with h5py.File(flipped, "r") as h:
        off = h["tokens"].id.get_chunk_info(1).byte_offset
    with open(flipped, "r+b") as f:
        f.seek(off + 10)
        b = f.read(1)
        f.seek(off + 10)
        f.write(bytes([b[0] ^ 1]))
    rc, o, e = env.run("verify", flipped)
    check(rc == 2 and "flipped-tokens.h5: dataset /tokens does not match its stored checksum" in e,
          "verify of a corrupt token file: " + e)

    out = env.path("bad_tokens.h5")
    bad = env.path("bad_ids.txt")
    with open(bad, "w") as f:
        f.write("1 2 3\n4 5\n6 70000 7\n")
    env.convert_fails("tokens id > 65535", ["tokens", bad, out, "--ids"], out,
                      ["bad_ids.txt:3: token id 70000 does not fit in uint16", "--dtype uint32"])
    with open(bad, "w") as f:
        f.write("1 2 3\n\n4 five 6\n")
    env.convert_fails("tokens bad word", ["tokens", bad, out, "--ids"], out,
                      ['bad_ids.txt:3: "five" is not a token id'])
    with open(bad, "w") as f:
        f.write("1 -2 3\n")
    env.convert_fails("tokens negative", ["tokens", bad, out, "--ids"], out,
                      ['bad_ids.txt:1: "-2" is not a token id'])
    open(bad, "w").close()
    env.convert_fails("tokens empty", ["tokens", bad, out], out, ["bad_ids.txt", "no tokens"])
    rc, _, e = env.run("tokens", src, out, "--dtype", "uint8")
    check(rc == 2 and "--dtype uint8" in e, "tokens --dtype uint8: " + e)

    # Training refuses a token dataset, saying what it is.
    job = env.path("tokens_job.ini")
    with open(job, "w") as f:
        f.write("[train]\nepochs = 1\n[data]\ntrain = %s\ntest = %s\n[dense]\nunits = 2\n"
                % (env.path("bytes-1.h5"), env.path("bytes-1.h5")))
    rc, o, e = env.run("--check", job, binary=env.dltrain)
    check(rc == 2 and 'a token dataset (dltrain_schema = "tokens"); training reads '
          "image-classification datasets; token datasets are for language-model jobs, which "
          "dltrain does not train yet" in e, "dltrain --check on a token dataset: " + o + e)


# ---- training on a float dataset from CSV ----------------------------------------------

def test_training(env, rng):
    d = 8
    centres = np.stack([np.full(d, -1.5), np.full(d, 1.5)])
    for name, n in (("blobs-train", 1000), ("blobs-test", 400)):
        y = rng.integers(0, 2, n)
        x = centres[y] + rng.normal(0, 1.0, (n, d))
        rows = [[repr(float(v)) for v in x[i]] + [str(y[i])] for i in range(n)]
        write_csv(env.path(name + ".csv"), ["f%d" % i for i in range(d)] + ["class"], rows)
        env.convert_ok("csv", env.path(name + ".csv"), env.path(name + ".h5"))
    run_dir = env.path("blobs-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    job = env.path("blobs.ini")
    with open(job, "w") as f:
        f.write("[train]\nepochs = 2\nbatch_size = 20\nseed = 3\nthreads = 1\n"
                "run_dir = %s\nlog_every = 10\n[data]\ntrain = %s\ntest = %s\n"
                "[optim]\ntype = sgd\nlr = 0.05\nmomentum = 0.9\n"
                "[dense]\nunits = 16\nactivation = relu\n[dense]\nunits = 2\n"
                % (run_dir, env.path("blobs-train.h5"), env.path("blobs-test.h5")))
    rc, o, e = env.run(job, binary=env.dltrain)
    if not check(rc == 0, "training on the CSV blobs exited %d: %s %s" % (rc, o, e)):
        return
    with open(os.path.join(run_dir, "summary.json")) as f:
        acc = json.load(f)["test_accuracy"]
    print("blobs test accuracy %.4f" % acc)
    check(acc >= 0.95, "test accuracy %.4f on two separable blobs is below 0.95" % acc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dltrain-data", required=True)
    ap.add_argument("--dltrain", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.dir, ignore_errors=True)
    os.makedirs(a.dir)
    env = Env(a.dltrain_data, a.dltrain, a.dir)
    rng = np.random.default_rng(7)
    test_npy(env, rng)
    test_csv(env, rng)
    test_tokens(env, rng)
    test_training(env, rng)
    left = glob.glob(os.path.join(a.dir, "*.tmp"))
    check(not left, "temporary files left: %s" % left)
    if FAILS:
        print("test_convert: %d check(s) failed" % len(FAILS), file=sys.stderr)
        return 1
    print("test_convert: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
