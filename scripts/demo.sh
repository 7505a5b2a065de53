#!/bin/sh
# The demo: every example spec validated, designed, simulated, assigned and analysed.
# Usage: scripts/demo.sh BIN_DIR OUT_DIR UNITS
set -eu
bin=$1 out=$2 units=$3
"$bin/promolab" validate experiments
for spec in experiments/*.yaml experiments/*.toml; do
    [ -f "$spec" ] || continue
    name=$(basename "${spec%.*}")
    dir="$out/$name"
    echo "== $name"
    "$bin/promolab" design "$spec" --json "$dir/design.json" --plot "$dir/power-curve.png"
    "$bin/promolab" simulate "$spec" --units "$units" --seed 1 --out "$dir"
    "$bin/promolab" assign "$spec" --data-dir "$dir" --out "$dir/assignment.parquet" --json "$dir/balance.json"
    "$bin/promolab" analyze "$spec" --data-dir "$dir" --json "$dir/analysis.json"
done
real=../shared/data/hillstrom.csv  # a real test, when the shared datasets are beside the project
if [ -f "$real" ]; then
    echo "== hillstrom on the real data ($real)"
    "$bin/promolab" analyze experiments/hillstrom.yaml --data units="$real" --method both \
        --json "$out/hillstrom-real/analysis.json"
fi
echo "Demo outputs are in $out/ (one folder per experiment: design.json, power-curve.png, data/, assignment, analysis.json)."
