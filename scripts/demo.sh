#!/bin/sh
# The demo: every example spec validated, designed, simulated, assigned, analysed (and monitored, when
# it declares analysis.sequential) and reported, then the quarterly promotion review of every quarter
# the examples ended in.
# Usage: scripts/demo.sh BIN_DIR OUT_DIR UNITS
set -eu
bin=$1 out=$2 units=$3
"$bin/promolab" validate experiments
for spec in experiments/*.yaml experiments/*.toml; do
    [ -f "$spec" ] || continue
    name=$(basename "${spec%.*}")
    dir="$out/$name"
    echo "== $name"
    if grep -q '^rollout:' "$spec"; then  # not randomised: no assignment; the design reads the history
        "$bin/promolab" simulate "$spec" --seed 1 --out "$dir"
        "$bin/promolab" design "$spec" --data-dir "$dir" --json "$dir/design.json"
        "$bin/promolab" analyze "$spec" --data-dir "$dir" --json "$dir/analysis.json"
        "$bin/promolab" report "$spec" --results "$dir/analysis.json" -o "$out/reports"
        continue
    fi
    "$bin/promolab" design "$spec" --json "$dir/design.json" --plot "$dir/power-curve.png"
    "$bin/promolab" simulate "$spec" --units "$units" --seed 1 --out "$dir"
    "$bin/promolab" assign "$spec" --data-dir "$dir" --out "$dir/assignment.parquet" --json "$dir/balance.json"
    set --  # posterior draws feed the report when the spec runs the Bayesian engine
    if grep -Eq '^ *method: *(both|bayesian)' "$spec"; then set -- --draws "$dir/draws.parquet"; fi
    "$bin/promolab" analyze "$spec" --data-dir "$dir" --daily --json "$dir/analysis.json" "$@"
    if grep -q '^ *sequential:' "$spec"; then  # watched while it ran: its looks go in the report
        "$bin/promolab" monitor "$spec" --data-dir "$dir" --json "$dir/monitor.json" --plot "$dir/monitor.png"
        set -- "$@" --monitor "$dir/monitor.json"
    fi
    "$bin/promolab" report "$spec" --results "$dir/analysis.json" "$@" -o "$out/reports"
done
real=../shared/data/hillstrom.csv  # a real test, when the shared datasets are beside the project
if [ -f "$real" ]; then
    echo "== hillstrom on the real data ($real)"
    "$bin/promolab" analyze experiments/hillstrom.yaml --data units="$real" --method both \
        --json "$out/hillstrom-real/analysis.json"
    "$bin/promolab" report experiments/hillstrom.yaml --results "$out/hillstrom-real/analysis.json" \
        -o "$out/hillstrom-real"
fi
echo "== quarterly promotion reviews"
"$bin/promolab" review experiments --quarter all -o "$out/reports"
echo "Demo outputs are in $out/: one folder per experiment (design.json, power-curve.png, data/,"
echo "assignment, analysis.json); reports and quarterly reviews (HTML, Markdown, JSON) in $out/reports/<id>/."
ls "$out"/reports/*/*.html
