#!/bin/sh
# The scaling report of issue 6 for the CNN (docs/examples/fashion-cnn.ini)
# on 1 and 2 ranks, strong scaling: benchmarks/scaling.sh runs, and its
# table is printed. Figures only: the checks are that the files were made
# and hold numbers, never a time.
. "$SRC/tests/lib.sh"
rm -rf scaling && mkdir -p scaling && cd scaling || exit 1

bash "$SRC/benchmarks/scaling.sh" --job "$SRC/docs/examples/fashion-cnn.ini" --ranks 1,2 \
    --mode strong --steps 40 --out report $DATA >scaling.log 2>&1
status=$?
cat scaling.log
expect_status 0 $status "benchmarks/scaling.sh"

# scaling.csv: a header and one row per rank count, every figure a number,
# throughput and step time above zero.
csv=report/scaling.csv
[ "$(head -1 $csv)" = "mode,ranks,threads_per_rank,batch_per_rank,global_batch,steps,samples_per_s,step_ms,compute_ms,allreduce_ms,data_wait_ms,speedup,efficiency,reps" ] ||
    fail "scaling.csv header: $(head -1 $csv)"
rows=$(awk -F, 'NR > 1 && $1 == "strong" && $5 == 128 && $6 == 40 && NF == 14 {
        ok = 1
        for (i = 2; i <= NF; i++) if ($i !~ /^[0-9]+(\.[0-9]+)?$/) ok = 0
        if (ok && $7 > 0 && $8 > 0 && $13 > 0) print $2
    }' $csv | tr '\n' ' ')
[ "$rows" = "1 2 " ] || { fail "scaling.csv: rows of numbers for ranks 1 and 2 expected, got '$rows'"; cat $csv >&2; }

expect_in report/scaling.md "| strong | 1 | 1 | 128 | 128 |" "Markdown table, 1 rank"
expect_in report/scaling.md "| strong | 2 | 1 | 64 | 128 |" "Markdown table, 2 ranks"
if command -v gnuplot >/dev/null; then
    head -c 8 report/scaling.png | od -An -c | grep -q 'P   N   G' ||
        fail "report/scaling.png is not a PNG image"
else
    fail "gnuplot is not installed (package gnuplot-nox; launch/install-deps.sh --tests)"
fi

# The step time split of the runs themselves: metrics.csv's new last
# columns, and summary.json's averages adding up to step_ms.
run=report/runs/strong-np2-rep1
[ "$(head -1 $run/metrics.csv)" = "step,epoch,loss,train_accuracy,lr,samples_per_s,elapsed_s,data_wait_ms,allreduce_ms,compute_ms" ] ||
    fail "metrics.csv header: $(head -1 $run/metrics.csv)"
for k in step_ms compute_ms allreduce_ms data_wait_ms; do
    v=$(json_field $run/summary.json $k)
    echo "$v" | grep -Eq '^[0-9]+(\.[0-9]+)?$' || fail "summary.json: $k is '$v'"
done
awk -v s="$(json_field $run/summary.json step_ms)" -v c="$(json_field $run/summary.json compute_ms)" \
    -v a="$(json_field $run/summary.json allreduce_ms)" -v w="$(json_field $run/summary.json data_wait_ms)" \
    'BEGIN { d = c + a + w - s; exit !(a > 0 && (d < 0 ? -d : d) < 0.001) }' ||
    fail "summary.json of 2 ranks: compute + allreduce + data_wait must add up to step_ms, and the all-reduce was timed"
finish
