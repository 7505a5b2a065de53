"""Time the Bayesian analysis of a 4-arm test at 10k to 10M units: ``python bench/bench_bayes.py``.

Options: ``--sizes 10000 100000 1000000 10000000`` (units), ``--raw-units 100000`` (size of the raw-rows
comparison; 0 skips it).

Workload (``SPEC`` below): 4 arms, conversion (Beta-Binomial), orders (Gamma-Poisson) and revenue (the
PyMC hurdle model), 2 chains x (1,000 tune + 2,000 draws). Each size runs in its own process:
aggregation (DuckDB over Parquet files generated into ``build/bench-bayes/<units>/`` once), then each
metric's Bayesian analysis timed on its own. The hurdle model's time includes building and compiling the
PyMC model: PyTensor caches the compiled C code in ``~/.pytensor``, so the first run on a machine is
slower than the rest (the table shows the warm-cache time of a second process). The raw-rows row fits
the same hurdle model with one likelihood term per unit and per buyer (``pm.Bernoulli`` +
``pm.LogNormal``) on the same data, to show what the sufficient statistics save.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench-bayes"
SIZES = [10_000, 100_000, 1_000_000, 10_000_000]
ARMS = ["control", "pct15", "save10", "bogo"]
LIFT = np.array([1.0, 1.04, 1.02, 1.03])  # P(buying) per arm
SEED = 20260401
SPEC = {
    "id": "bench-bayes",
    "name": "Bayesian benchmark",
    "unit": "customer",
    "start": "2026-04-01",
    "end": "2026-04-28",
    "variants": [
        {"id": a, "kind": "control" if a == "control" else "ad_creative", "weight": 0.25} for a in ARMS
    ],
    "metrics": [
        {"id": "conversion", "kind": "binary", "source": "orders"},
        {"id": "orders", "kind": "count", "source": "orders"},
        {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
    ],
    "primary": "revenue",
    "analysis": {"method": "bayesian"},
    "data": {"assignments": "assignments.parquet", "tables": {"orders": "orders.parquet"}},
}
for variant in SPEC["variants"][1:]:
    variant.update(creative=variant["id"], headline=variant["id"])


def generate(units: int, folder: Path) -> None:
    """Assignments and orders: 15% buy (times the arm's lift), 1 + Poisson(0.3) log-normal orders each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([SEED, units])
    arm = rng.integers(0, len(ARMS), units)
    buyers = np.flatnonzero(rng.random(units) < 0.15 * LIFT[arm])
    owner = np.repeat(buyers, 1 + rng.poisson(0.3, len(buyers)))
    amount = np.round(rng.lognormal(np.log(35), 0.8, len(owner)), 2)
    unit_id = np.arange(1, units + 1)
    pq.write_table(
        pa.table({"unit_id": unit_id, "variant": np.array(ARMS)[arm]}), folder / "assignments.parquet"
    )
    pq.write_table(pa.table({"unit_id": unit_id[owner], "amount": amount}), folder / "orders.parquet")
    (folder / "done").write_text("1")


def run_size(units: int) -> dict[str, float]:
    """Child process: aggregate, then time each metric's Bayesian analysis."""
    from promolab.aggregate.duck import aggregate
    from promolab.analyze.bayesian import bayes_results
    from promolab.spec import spec_from_dict

    folder = CACHE / str(units)
    spec = spec_from_dict(SPEC)
    start = time.perf_counter()
    paths = {"assignments": folder / "assignments.parquet", "orders": folder / "orders.parquet"}
    stats = aggregate(spec, paths, log_moments=True).stats
    timings = {"aggregate": time.perf_counter() - start}
    for metric in ("conversion", "orders", "revenue"):
        one = spec.model_copy(
            update={"metrics": tuple(m for m in spec.metrics if m.id == metric), "primary": metric}
        )
        start = time.perf_counter()
        result = bayes_results(one, stats)
        timings[metric] = time.perf_counter() - start
        diagnostics = result.results[0].diagnostics
        if diagnostics is not None and not diagnostics["ok"]:
            timings[f"{metric} FLAGGED"] = 1.0
    return timings


def run_raw(units: int) -> dict[str, float]:
    """Child process: the same hurdle model on raw rows (one term per unit and per buyer)."""
    import pandas as pd
    import pymc as pm

    folder = CACHE / str(units)
    assign = pd.read_parquet(folder / "assignments.parquet")
    orders = pd.read_parquet(folder / "orders.parquet").groupby("unit_id")["amount"].sum()
    revenue = orders.reindex(assign["unit_id"], fill_value=0.0).to_numpy()
    arm = assign["variant"].map({a: k for k, a in enumerate(ARMS)}).to_numpy()
    bought = revenue > 0
    start = time.perf_counter()
    with pm.Model():
        p = pm.Beta("p", 1.0, 1.0, shape=len(ARMS))
        mu = pm.Normal("mu", 0.0, 10.0, shape=len(ARMS))
        sigma = pm.HalfNormal("sigma", 2.5, shape=len(ARMS))
        pm.Bernoulli("buy", p=p[arm], observed=bought.astype(int))
        pm.LogNormal("amount", mu=mu[arm[bought]], sigma=sigma[arm[bought]], observed=revenue[bought])
        pm.sample(
            draws=2000,
            tune=1000,
            chains=2,
            cores=1,
            nuts_sampler="pymc",
            random_seed=1,
            progressbar=False,
            compute_convergence_checks=False,
        )
    return {"raw revenue": time.perf_counter() - start}


def _child(function: str, units: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", function, str(units)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{function} at {units:,} units failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--raw-units", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        function, units = args.child[0], int(args.child[1])
        print(json.dumps((run_size if function == "size" else run_raw)(units)))
        return 0
    for units in sorted({*args.sizes, *([args.raw_units] if args.raw_units else [])}):
        if not (CACHE / str(units) / "done").exists():
            generate(units, CACHE / str(units))
    _child("size", min(args.sizes))  # warm PyTensor's compile cache, as a second run would find it
    print(f"{'units':>12} {'aggregate s':>12} {'conversion s':>13} {'orders s':>9} {'revenue (PyMC) s':>17}")
    for units in args.sizes:
        t = _child("size", units)
        flag = " FLAGGED" if any("FLAGGED" in k for k in t) else ""
        print(
            f"{units:>12,} {t['aggregate']:>12.2f} {t['conversion']:>13.3f} {t['orders']:>9.3f} "
            f"{t['revenue']:>17.2f}{flag}",
            flush=True,
        )
    if args.raw_units:
        raw = _child("raw", args.raw_units)
        print(f"\nsame hurdle model on raw rows, {args.raw_units:,} units: {raw['raw revenue']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
