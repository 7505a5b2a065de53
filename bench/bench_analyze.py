"""Time ``promolab analyze`` end to end against two baselines: ``python bench/bench_analyze.py``.

Options: ``--sizes 1000000 10000000`` (order rows; both by default), ``--formats parquet csv`` (file
format of the inputs; both by default), ``--repeats 3``, ``--tea-tasting-python PATH`` (a Python with
``tea-tasting`` and ``ibis-framework[duckdb]`` installed, e.g. a separate venv: adds that peer),
``--units N`` (2,000,000 by default) and ``--contenders``. The opt-in large size (issue 19):
``--sizes 100000000 --units 20000000 --formats parquet --contenders "bare DuckDB" promolab``.

Workload: 2,000,000 units in 4 equal arms, 4 order metrics (conversion, revenue, orders, items) and one
covariate (pre_revenue), as in ``bench/analyze-spec.yaml``; the Parquet files are generated once per size
into ``build/bench-analyze/<rows>/`` (with CSV copies) and reused. Contenders, each a whole fresh
process (imports count):

- bare DuckDB, the floor: one SQL query from order rows to per-arm count, mean and variance of the four
  per-unit metrics and their covariance with pre_revenue (all any correct analysis needs);
- pandas: read, group by unit, merge, fill 0, group by arm, Welch t-tests (scipy) per arm and metric;
- promolab: ``python -m promolab analyze bench/analyze-spec.yaml --data-dir DIR --json OUT``;
- tea-tasting (optional): the peer on Ibis/DuckDB, per-unit table built in Ibis, ``tt.Mean`` of the four
  metrics with ``covariate="pre_revenue"`` (CUPED), all arms against control;
- promolab spark (named in ``--contenders`` only): ``analyze --engine spark --method frequentist``, Spark
  in local mode running the portable query (:mod:`promolab.aggregate.spark`), whole process;
- promolab start-up: what promolab pays before reading any data (its imports: DuckDB, pydantic, numpy,
  the CLI; and validating the spec), to show which part of its time is fixed.

The baselines run the source of one function below with ``python -c``, so they pay for their own imports
only. Each run goes through a small wrapper process that times the contender's whole process and reads its
own peak RSS (``os.wait4``); the table shows the median wall time and the largest peak over the repeats.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "bench" / "analyze-spec.yaml"
CACHE = ROOT / "build" / "bench-analyze"
SIZES = [1_000_000, 10_000_000]
UNITS = 2_000_000
ARMS = ["control", "pct15", "save10", "bogo"]
METRICS = ["conversion", "revenue", "orders", "items"]
# True relative effects per arm: P(buying), order amount, extra items per order.
EFFECTS = {
    "control": {"conversion": 0.0, "basket": 0.0, "items": 0.0},
    "pct15": {"conversion": 0.04, "basket": -0.02, "items": 0.0},
    "save10": {"conversion": 0.02, "basket": 0.05, "items": 0.0},
    "bogo": {"conversion": 0.03, "basket": 0.0, "items": 0.25},
}
SEED = 20260301
DATA_VERSION = 2  # bump when the generator changes: cached folders with another version are rebuilt
CONTENDERS = ["bare DuckDB", "pandas", "promolab", "tea-tasting", "promolab start-up", "promolab spark"]
DEFAULT_CONTENDERS = CONTENDERS[:-1]  # promolab on Spark (--engine spark) runs when named
CHECKED = [*CONTENDERS[:3], "promolab spark"]  # contenders whose numbers are compared with the floor's
FORMATS = ["parquet", "csv"]
TABLES = ["assignments", "customers", "orders"]
PROMOLAB_JSON = {"promolab": "promolab-analysis.json", "promolab spark": "promolab-spark-analysis.json"}


@dataclass
class Run:
    """One finished child process."""

    seconds: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str


# ---- data ----------------------------------------------------------------------------------------------


def _write(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)  # a killed run leaves no half-written file behind


def generate(rows: int, folder: Path, units_count: int = UNITS, csv: bool = True) -> None:
    """Write assignments, customers and ``rows`` orders for ``units_count`` units into ``folder`` (and
    CSV copies with ``csv``).

    A latent log-propensity per unit drives both the pre-period revenue and buying in the test, so
    pre_revenue predicts revenue (CUPED has something to do). About 15% of units buy; each buyer gets at
    least one order, the remaining rows are spread over buyers by heavy-tailed (log-normal) weights.
    """
    folder.mkdir(parents=True, exist_ok=True)
    units = np.random.default_rng([SEED, 0])  # same units in every size
    unit_id = np.arange(1, units_count + 1, dtype=np.int64)
    arm = units.integers(0, len(ARMS), units_count)
    effect = {key: np.array([EFFECTS[a][key] for a in ARMS])[arm] for key in EFFECTS["control"]}
    latent = units.standard_normal(units_count)

    pre_z = 0.8 * latent + 0.6 * units.standard_normal(units_count)
    pre_buyer = units.random(units_count) < np.minimum(0.3 * np.exp(0.7 * pre_z - 0.245), 0.95)
    pre_spend = units.lognormal(np.log(60) + 0.5 * pre_z, 1.0)
    pre_revenue = np.where(pre_buyer, np.round(pre_spend, 2), 0.0)

    p_buy = np.minimum(0.15 * np.exp(0.8 * latent - 0.32) * (1 + effect["conversion"]), 0.95)
    buyers = np.flatnonzero(units.random(units_count) < p_buy)
    weight = np.exp(0.8 * latent[buyers] + 1.0 * units.standard_normal(len(buyers)))
    if rows < len(buyers):
        raise ValueError(f"{rows:,} order rows are fewer than the {len(buyers):,} buyers")

    draw = np.random.default_rng([SEED, rows])
    counts = 1 + draw.multinomial(rows - len(buyers), weight / weight.sum())
    order_unit = np.repeat(buyers, counts)
    draw.shuffle(order_unit)  # rows in time order: a unit's orders are scattered through the file
    amount = draw.lognormal(np.log(35), 0.8, rows) * (1 + effect["basket"][order_unit])
    quantity = 1 + draw.poisson(0.6 * (1 + effect["items"][order_unit]))

    variant = pa.DictionaryArray.from_arrays(pa.array(arm.astype(np.int32)), pa.array(ARMS)).cast(pa.string())
    _write(pa.table({"unit_id": unit_id, "variant": variant}), folder / "assignments.parquet")
    _write(pa.table({"unit_id": unit_id, "pre_revenue": pre_revenue}), folder / "customers.parquet")
    orders = {
        "unit_id": unit_id[order_unit],
        "amount": np.maximum(np.round(amount, 2), 0.01),
        "quantity": quantity.astype(np.int64),
    }
    _write(pa.table(orders), folder / "orders.parquet")
    if not csv:
        return
    for name in TABLES:
        tmp = folder / f"{name}.csv.tmp"
        pacsv.write_csv(pq.read_table(folder / f"{name}.parquet"), tmp)
        tmp.replace(folder / f"{name}.csv")


def ensure_data(rows: int, units_count: int = UNITS, csv: bool = True) -> Path:
    """The cache folder for ``rows`` order rows of ``units_count`` units, generated first unless a
    matching one is there (with CSV copies when ``csv``)."""
    folder = CACHE / (str(rows) if units_count == UNITS else f"{rows}-{units_count}-units")
    meta = folder / "meta.json"
    wanted = {"version": DATA_VERSION, "seed": SEED, "units": units_count, "rows": rows}
    if meta.exists():
        found = json.loads(meta.read_text())
        if {k: found.get(k) for k in wanted} == wanted and (found.get("csv", True) or not csv):
            print(f"data: {folder.relative_to(ROOT)} (cached)", file=sys.stderr, flush=True)
            return folder
    start = time.perf_counter()
    generate(rows, folder, units_count, csv)
    meta.write_text(json.dumps(wanted | {"csv": csv}))
    seconds = time.perf_counter() - start
    print(f"data: {folder.relative_to(ROOT)} (generated in {seconds:.1f} s)", file=sys.stderr, flush=True)
    return folder


# ---- contenders ----------------------------------------------------------------------------------------


def bare_sql(folder: Path, fmt: str) -> str:
    """The one query of the floor: order rows -> per-unit metrics -> per-arm moments."""
    columns = ["count(*) AS n", "avg(pre_revenue) AS mean_pre", "var_samp(pre_revenue) AS var_pre"]
    for m in METRICS:
        columns += [
            f"avg({m}) AS mean_{m}",
            f"var_samp({m}) AS var_{m}",
            f"covar_samp({m}, pre_revenue) AS cov_{m}",
        ]
    select = ",\n       ".join(columns)
    return f"""
WITH per_unit AS (
  SELECT unit_id, count(*) AS orders, sum(amount) AS revenue, sum(quantity) AS items
  FROM read_{fmt}('{folder / f"orders.{fmt}"}') GROUP BY unit_id
), units AS (
  SELECT a.variant, c.pre_revenue,
         CASE WHEN p.orders IS NULL THEN 0 ELSE 1 END AS conversion,
         coalesce(p.revenue, 0) AS revenue, coalesce(p.orders, 0) AS orders, coalesce(p.items, 0) AS items
  FROM read_{fmt}('{folder / f"assignments.{fmt}"}') a
  JOIN read_{fmt}('{folder / f"customers.{fmt}"}') c USING (unit_id)
  LEFT JOIN per_unit p USING (unit_id)
)
SELECT variant,
       {select}
FROM units GROUP BY variant ORDER BY variant"""


def bare_duckdb(sql: str) -> None:
    """Child process of the floor: import duckdb, run the query, print the rows (no progress bar: DuckDB
    draws it on stdout after 2 s)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    print(con.sql(sql).fetchall())


def pandas_baseline(folder: str, fmt: str) -> None:
    """Child process of the pandas baseline; prints units and revenue per arm, the 12 Welch p-values."""
    import json

    import pandas as pd
    from scipy import stats

    metrics = ["conversion", "revenue", "orders", "items"]
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    orders = read(f"{folder}/orders.{fmt}")
    per_unit = orders.groupby("unit_id").agg(
        orders=("amount", "size"), revenue=("amount", "sum"), items=("quantity", "sum")
    )
    units = read(f"{folder}/assignments.{fmt}").merge(read(f"{folder}/customers.{fmt}"), on="unit_id")
    units = units.merge(per_unit, left_on="unit_id", right_index=True, how="left").fillna(0)
    units["conversion"] = (units["orders"] > 0).astype(float)
    arms = units.groupby("variant")[metrics].agg(["count", "mean", "var"])
    p_values = {}
    for arm in ["pct15", "save10", "bogo"]:
        for m in metrics:
            t, c = arms.loc[arm, m], arms.loc["control", m]
            sd_t, sd_c = t["var"] ** 0.5, c["var"] ** 0.5
            test = stats.ttest_ind_from_stats(
                t["mean"], sd_t, t["count"], c["mean"], sd_c, c["count"], equal_var=False
            )
            p_values[f"{arm}/{m}"] = float(test.pvalue)
    n = {str(arm): int(v) for arm, v in arms[("revenue", "count")].items()}
    revenue = {str(arm): float(v) for arm, v in arms[("revenue", "mean")].items()}
    print(json.dumps({"n": n, "revenue": revenue, "p_values": p_values}))


def tea_tasting_child(folder: str, fmt: str) -> None:
    """Child process of the tea-tasting peer: per-unit metrics in Ibis on DuckDB, then its analysis."""
    import ibis
    import tea_tasting as tt

    con = ibis.duckdb.connect()
    con.raw_sql("SET enable_progress_bar = false")
    read = con.read_parquet if fmt == "parquet" else con.read_csv
    assignments, customers = read(f"{folder}/assignments.{fmt}"), read(f"{folder}/customers.{fmt}")
    orders = read(f"{folder}/orders.{fmt}")
    per_unit = orders.group_by("unit_id").aggregate(
        n_orders=orders.count(), sum_amount=orders.amount.sum(), sum_quantity=orders.quantity.sum()
    )
    joined = assignments.join(customers, "unit_id").left_join(per_unit, "unit_id")
    units = joined.select(
        variant=joined.variant,
        pre_revenue=joined.pre_revenue,
        conversion=joined.n_orders.notnull().cast("int64"),
        revenue=joined.sum_amount.fill_null(0),
        orders=joined.n_orders.fill_null(0),
        items=joined.sum_quantity.fill_null(0),
    )
    metrics = ["conversion", "revenue", "orders", "items"]
    experiment = tt.Experiment({m: tt.Mean(m, covariate="pre_revenue") for m in metrics})
    print(experiment.analyze(units, control="control", all_variants=True))


def promolab_startup(spec: str) -> None:
    """Child process of promolab's fixed cost: the modules ``promolab analyze`` imports, the spec loaded."""
    import duckdb  # noqa: F401

    import promolab.aggregate.duck
    import promolab.cli.output  # noqa: F401
    from promolab.analyze import analyze_spec  # noqa: F401
    from promolab.cli import app  # noqa: F401
    from promolab.spec import load_spec

    load_spec(spec)


def timed(result: str, *argv: str) -> None:
    """Wrapper process: run ``argv``; write its wall seconds, exit code and peak RSS in KiB to ``result``.

    The wrapper is small when it spawns ``argv``: Linux counts the RSS a child inherits at fork in its
    peak, so spawning the contenders straight from this (large) process would overstate their memory.
    """
    import os
    import time

    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], list(argv), os.environ)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    with open(result, "w") as out:
        out.write(f"{seconds} {os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")


def _python_c(function: Callable[..., None], *arguments: str) -> list[str]:
    """``python -c`` running only ``function``'s source on ``arguments``: no imports but its own."""
    source = inspect.getsource(function)
    return [sys.executable, "-c", f"{source}\n{function.__name__}(*{list(arguments)!r})\n"]


def command(contender: str, folder: Path, fmt: str, tea_tasting_python: str | None = None) -> list[str]:
    """The argv of one contender on the ``fmt`` files in ``folder``."""
    if contender == "tea-tasting":
        assert tea_tasting_python is not None
        return [tea_tasting_python, *_python_c(tea_tasting_child, str(folder), fmt)[1:]]
    if contender == "bare DuckDB":
        return _python_c(bare_duckdb, bare_sql(folder, fmt))
    if contender == "pandas":
        return _python_c(pandas_baseline, str(folder), fmt)
    if contender == "promolab start-up":
        return _python_c(promolab_startup, str(SPEC))
    analyze = [
        "analyze",
        str(SPEC),
        "--data-dir",
        str(folder),
        "--json",
        str(folder / PROMOLAB_JSON[contender]),
    ]
    for name, table in zip(["assignments", "units", "orders"], TABLES, strict=True):
        analyze += ["--data", f"{name}={folder / f'{table}.{fmt}'}"]
    if contender == "promolab spark":
        analyze += ["--engine", "spark", "--method", "frequentist"]
    return [sys.executable, "-m", "promolab", *analyze]


def measure(argv: list[str]) -> Run:
    """Run ``argv`` to the end under the ``timed`` wrapper: wall time and its own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        result, out, err = (Path(tmp) / name for name in ("result", "stdout", "stderr"))
        wrapped = _python_c(timed, str(result), *argv)
        with out.open("wb") as stdout, err.open("wb") as stderr:
            wrapper = subprocess.run(wrapped, stdout=stdout, stderr=stderr, cwd=ROOT)
        stdout_text, stderr_text = out.read_text(errors="replace"), err.read_text(errors="replace")
        if wrapper.returncode != 0 or not result.exists():
            stderr_text += "\nthe timing wrapper failed"
            return Run(math.nan, math.nan, wrapper.returncode or 1, stdout_text, stderr_text)
        seconds, returncode, peak_kib = result.read_text().split()
    return Run(float(seconds), int(peak_kib) / 1024, int(returncode), stdout_text, stderr_text)  # Linux: KiB


# ---- checks and table ----------------------------------------------------------------------------------

Summary = dict[str, dict[str, float]]  # {"n": units per arm, "revenue": mean revenue per arm}


def summary(contender: str, run: Run, folder: Path) -> Summary:
    """Units and mean revenue per arm as a contender found them, to check that the contenders agree."""
    if contender == "bare DuckDB":
        rows = ast.literal_eval(run.stdout.strip())
        column = 4 + 3 * METRICS.index("revenue")  # variant, n, mean_pre, var_pre, then 3 per metric
        return {"n": {r[0]: r[1] for r in rows}, "revenue": {r[0]: r[column] for r in rows}}
    if contender == "pandas":
        return json.loads(run.stdout)
    result = json.loads((folder / PROMOLAB_JSON[contender]).read_text())
    revenue: dict[str, float] = {}
    for row in result["results"]:
        if row["metric"] == "revenue":
            revenue[row["variant"]] = row["variant_mean"]
            revenue["control"] = row["control_mean"]
    return {"n": result["srm"]["counts"], "revenue": revenue}


def disagreement(contender: str, found: Summary, floor: Summary) -> str | None:
    """What ``found`` gets wrong against the floor's numbers, or None.

    promolab's means are CUPED-adjusted (its JSON has no raw means), so they only need to be within 1%.
    """
    tolerance = 0.01 if contender in PROMOLAB_JSON else 1e-9
    if found["n"] != floor["n"]:
        return f"units per arm {found['n']} != bare DuckDB {floor['n']}"
    revenue, want = found["revenue"], floor["revenue"]
    if not all(abs(revenue.get(a, math.nan) - want[a]) <= tolerance * want[a] for a in ARMS):
        return f"mean revenue {revenue} != bare DuckDB {floor['revenue']} (tolerance {tolerance:g})"
    return None


def _failure(run: Run) -> str:
    lines = [line for line in run.stderr.splitlines() if any(c.isalnum() for c in line)]  # not box borders
    return f"FAILED (exit {run.returncode}): {lines[-1].strip() if lines else 'no error output'}"


def bench_case(
    rows: int,
    folder: Path,
    fmt: str,
    repeats: int,
    tea_tasting_python: str | None = None,
    chosen: Sequence[str] = DEFAULT_CONTENDERS,
) -> tuple[list[str], list[str]]:
    """Run every ``chosen`` contender ``repeats`` times (interleaved) on ``folder``'s ``fmt`` files;
    table lines and problems. tea-tasting runs only with ``tea_tasting_python``."""
    contenders = [c for c in CONTENDERS if c in chosen and (c != "tea-tasting" or tea_tasting_python)]
    runs: dict[str, list[Run]] = {c: [] for c in contenders}
    for _ in range(repeats):
        for contender in contenders:
            if runs[contender] and runs[contender][-1].returncode != 0:
                continue  # a failure is not repeated
            if contender in PROMOLAB_JSON:
                (folder / PROMOLAB_JSON[contender]).unlink(missing_ok=True)  # never check a stale result
            runs[contender].append(measure(command(contender, folder, fmt, tea_tasting_python)))
    lines: list[str] = []
    problems: list[str] = []
    floor = runs["bare DuckDB"][-1]
    bare = statistics.median(r.seconds for r in runs["bare DuckDB"]) if floor.returncode == 0 else math.nan
    for contender in contenders:
        done = runs[contender]
        if done[-1].returncode != 0:
            lines.append(f"{rows:>12,} {fmt:<8} {contender:<18} {_failure(done[-1])}")
            problems.append(f"{rows:,} {fmt} {contender} failed:\n{done[-1].stderr.strip()[-3000:]}")
            continue
        wall = statistics.median(r.seconds for r in done)
        peak = max(r.peak_mb for r in done)
        lines.append(f"{rows:>12,} {fmt:<8} {contender:<18} {wall:>8.2f} {wall / bare:>14.2f} {peak:>12,.0f}")
        if floor.returncode == 0 and contender in CHECKED:
            try:
                expected = summary("bare DuckDB", floor, folder)
                wrong = disagreement(contender, summary(contender, done[-1], folder), expected)
            except (ValueError, KeyError, TypeError, OSError, SyntaxError) as exc:
                wrong = f"unreadable output ({exc!r})"
            if wrong:
                problems.append(f"{rows:,} {fmt} {contender}: {wrong}")
    return lines, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="order rows per case")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=FORMATS, help="input file formats")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (the median is shown)")
    parser.add_argument("--tea-tasting-python", help="a Python with tea-tasting installed: adds that peer")
    parser.add_argument("--units", type=int, default=UNITS, help="units (customers) in every case")
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=CONTENDERS,
        default=CONTENDERS,
        help="e.g. at 100M rows: skip pandas",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.sizes) < 1 or args.units < 1:
        parser.error("--sizes, --units and --repeats must be positive")
    if "bare DuckDB" not in args.contenders:
        parser.error("--contenders must include 'bare DuckDB': the others are checked against it")
    csv = "csv" in args.formats
    folders = {rows: ensure_data(rows, args.units, csv) for rows in args.sizes}
    header = f"{'order rows':>12} {'format':<8} {'contender':<18} {'wall s':>8} {'ratio to bare':>14}"
    print(f"{header} {'peak RSS MB':>12}")
    problems: list[str] = []
    for rows, folder in folders.items():
        for fmt in args.formats:
            lines, found = bench_case(
                rows, folder, fmt, args.repeats, args.tea_tasting_python, args.contenders
            )
            print("\n".join(lines), flush=True)
            problems += found
    for problem in problems:
        print(f"\n{problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
