#!/bin/sh
# The demo: every example spec validated, then simulated data written for each.
# Usage: scripts/demo.sh BIN_DIR OUT_DIR UNITS
set -eu
bin=$1 out=$2 units=$3
"$bin/promolab" validate experiments
for spec in experiments/*.yaml experiments/*.toml; do
    [ -f "$spec" ] || continue
    name=$(basename "${spec%.*}")
    echo "== $name: simulating $units units"
    "$bin/promolab" simulate "$spec" --units "$units" --seed 1 --out "$out/$name"
done
echo "Demo data is in $out/ (one folder per experiment)."
