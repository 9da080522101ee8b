#!/usr/bin/python3
"""Tables and plot script of a scaling study (benchmarks/scaling.sh).

    scaling_report.py OUT_DIR

OUT_DIR/runs.txt lists the runs, one a line: mode (strong or weak), ranks,
repetition, run directory, log file. Each run directory holds dltrain's
metrics.csv and summary.json. For each (mode, ranks) the figures are those
of the repetition with the median samples/s; a run's figures are its steady
state: the metrics.csv rows after the first (the first logged interval is the
warm-up: first touches of the buffers, the first batches read), weighted by
the steps in each row. A run with one row falls back to summary.json's
averages over the whole run.

Writes OUT_DIR/scaling.csv, OUT_DIR/scaling.md and OUT_DIR/scaling.gp (the
gnuplot script, data inline, that draws OUT_DIR/scaling.png), and prints the
Markdown table. Standard library only.
"""
import csv
import json
import os
import re
import sys

FIELDS = ["mode", "ranks", "threads_per_rank", "batch_per_rank", "global_batch", "steps",
          "samples_per_s", "step_ms", "compute_ms", "allreduce_ms", "data_wait_ms",
          "speedup", "efficiency", "reps"]


def steady_state(run_dir, summary):
    """samples/s and the ms per step of each part, after the warm-up."""
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    g = summary["global_batch_size"]
    if len(rows) >= 2:
        prev, steps, parts = int(rows[0]["step"]), 0, [0.0, 0.0, 0.0]
        for r in rows[1:]:
            k = int(r["step"]) - prev
            prev = int(r["step"])
            steps += k
            for i, key in enumerate(("compute_ms", "allreduce_ms", "data_wait_ms")):
                parts[i] += k * float(r[key])
        compute, allreduce, wait = (p / steps for p in parts)
        step = compute + allreduce + wait
        return {"samples_per_s": 1e3 * g / step, "step_ms": step, "compute_ms": compute,
                "allreduce_ms": allreduce, "data_wait_ms": wait}
    step = summary["step_ms"]
    return {"samples_per_s": 1e3 * g / step, "step_ms": step,
            "compute_ms": summary["compute_ms"], "allreduce_ms": summary["allreduce_ms"],
            "data_wait_ms": summary["data_wait_ms"]}


def threads_of(log):
    """BLAS threads per rank and the kernels, from dltrain's first line."""
    with open(log) as f:
        m = re.search(r"(\d+) BLAS thread\(s\) per rank \(OpenBLAS (\S+) kernels\)", f.read())
    return (int(m.group(1)), m.group(2)) if m else (0, "?")


def main(out):
    points = {}
    with open(os.path.join(out, "runs.txt")) as f:
        for line in f:
            if not line.strip():
                continue
            mode, ranks, _rep, run_dir, log = line.split()
            with open(os.path.join(run_dir, "summary.json")) as s:
                summary = json.load(s)
            threads, kernels = threads_of(log)
            fig = steady_state(run_dir, summary)
            fig.update({"mode": mode, "ranks": int(ranks), "threads_per_rank": threads,
                        "kernels": kernels, "batch_per_rank": summary["batch_size"],
                        "global_batch": summary["global_batch_size"],
                        "steps": summary["steps"]})
            points.setdefault((mode, int(ranks)), []).append(fig)

    rows = []
    for (mode, ranks), runs in sorted(points.items()):
        runs.sort(key=lambda r: r["samples_per_s"])
        row = dict(runs[(len(runs) - 1) // 2])  # the median run (the lower one of two)
        row["reps"] = len(runs)
        rows.append(row)
    for mode in ("strong", "weak"):
        own = [r for r in rows if r["mode"] == mode]
        if not own:
            continue
        base = min(own, key=lambda r: r["ranks"])
        for r in own:
            r["speedup"] = r["samples_per_s"] / base["samples_per_s"]
            r["efficiency"] = r["speedup"] * base["ranks"] / r["ranks"]
            r["base_ranks"] = base["ranks"]

    with open(os.path.join(out, "scaling.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(FIELDS)
        for r in rows:
            w.writerow([r[k] if isinstance(r[k], (int, str)) else "%.4f" % r[k] for k in FIELDS])

    base_note = ", ".join(sorted({"%s vs %d rank(s)" % (r["mode"], r["base_ranks"])
                                  for r in rows}))
    hdr = ["mode", "ranks", "threads/rank", "batch/rank", "global batch", "samples/s",
           "step ms", "compute ms", "all-reduce ms", "data wait ms", "speedup", "efficiency"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "|".join("---" for _ in hdr) + "|"]
    for r in rows:
        lines.append("| %s | %d | %d | %d | %d | %.0f | %.2f | %.2f | %.2f | %.3f | %.2f | %.2f |"
                     % (r["mode"], r["ranks"], r["threads_per_rank"], r["batch_per_rank"],
                        r["global_batch"], r["samples_per_s"], r["step_ms"], r["compute_ms"],
                        r["allreduce_ms"], r["data_wait_ms"], r["speedup"], r["efficiency"]))
    note = ("speedup = samples/s over the smallest rank count's (%s); efficiency = speedup x "
            "smallest ranks / ranks (strong: T1 / (n Tn) in step time; weak: T1 / Tn); ms per "
            "step averaged over ranks, after the first logged interval (warm-up); compute = "
            "step - all-reduce - data wait (forward, backward, optimiser and the rest)"
            % base_note)
    table = "\n".join(lines)
    with open(os.path.join(out, "scaling.md"), "w") as f:
        f.write(table + "\n\n" + note + "\n")
    print(table)
    print()
    print(note)

    # gnuplot, data inline: samples/s against ranks with the ideal line, and
    # the step time split as stacked bars.
    ranks = sorted({r["ranks"] for r in rows})
    gp = ["set terminal pngcairo size 1200,480 font ',10'",
          "set output '%s'" % os.path.join(out, "scaling.png").replace("'", "''")]
    plots = []
    for mode in ("strong", "weak"):
        own = [r for r in rows if r["mode"] == mode]
        if not own:
            continue
        gp.append("$%s << EOD" % mode)
        for r in own:
            ideal = r["samples_per_s"] / r["speedup"] * r["ranks"] / r["base_ranks"]
            gp.append("%d %.3f %.3f" % (r["ranks"], r["samples_per_s"], ideal))
        gp.append("EOD")
        color = "#1f77b4" if mode == "strong" else "#d62728"
        plots.append("$%s using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title '%s', "
                     "$%s using 1:3 with lines dt 2 lc rgb '%s' title '%s, ideal'"
                     % (mode, color, mode, mode, color, mode))
    gp.append("$split << EOD")
    for r in rows:
        gp.append('"%s %d" %.4f %.4f %.4f' % (r["mode"], r["ranks"], r["compute_ms"],
                                              r["allreduce_ms"], r["data_wait_ms"]))
    gp.append("EOD")
    gp += ["set multiplot layout 1,2 title 'dltrain scaling (%d BLAS thread(s) per rank)'"
           % rows[0]["threads_per_rank"],
           "set title 'throughput'", "set xlabel 'ranks'", "set ylabel 'samples/s'",
           "set logscale x 2",
           "set xtics (%s)" % ", ".join("'%d' %d" % (n, n) for n in ranks),
           "set xrange [%g:%g]" % (ranks[0] / 1.3, ranks[-1] * 1.3),
           "set yrange [0:*]", "set key top left", "set grid",
           "plot " + ", ".join(plots),
           "unset logscale x", "set xtics auto", "set xrange [*:*]",
           "set title 'step time (ms per step, averaged over ranks)'", "set xlabel ''",
           "set ylabel 'ms'", "set style data histograms", "set style histogram rowstacked",
           "set style fill solid 0.8 border -1", "set boxwidth 0.7",
           "plot $split using 2:xtic(1) title 'compute', '' using 3 title 'all-reduce', "
           "'' using 4 title 'data wait'",
           "unset multiplot"]
    with open(os.path.join(out, "scaling.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scaling_report.py OUT_DIR")
    main(sys.argv[1])
