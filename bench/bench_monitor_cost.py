"""What one daily look of ``promolab monitor`` costs as the test ages: with the state file a look reads
only its day's rows (and passes once over the units); without it every run reads every day again.

``python bench/bench_monitor_cost.py [units] [rows_per_day]`` (default 100,000 and 100,000) writes a
56-day order log sorted by time (Parquet, row groups of 100,000 rows) and prints, at days 1, 7, 14, 28
and 56: the rows so far, the seconds of the day's run with the state (read the new day, one look) and
of a run without it (every day read again, every look recomputed). In-process timings: Python's and
the imports' start-up are left out.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import duckdb

import promolab
from promolab.analyze.monitor import monitor_spec

HERE = Path(__file__).resolve().parent
DAYS = 56
SHOWN = (1, 7, 14, 28, 56)


def write_data(folder: Path, units: int, rows_per_day: int) -> None:
    """Assignments, customers with a pre-period revenue, and the order log sorted by time."""
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT i AS unit_id, CASE WHEN hash(i) % 2 = 0 THEN 'control' ELSE 'pct15' END AS variant "
        f"FROM range(1, {units} + 1) t(i)) TO '{folder / 'assignments.parquet'}' (FORMAT parquet)"
    )
    con.execute(
        "COPY (SELECT i AS unit_id, round(exp(random() * 3), 2) AS pre_revenue "
        f"FROM range(1, {units} + 1) t(i)) TO '{folder / 'customers.parquet'}' (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT (random() * {units})::BIGINT + 1 AS unit_id, "
        "TIMESTAMP '2026-01-01' + to_days(d::INTEGER) + to_seconds((random() * 86399)::BIGINT) AS ts, "
        f"round(exp(random() * 3), 2) AS amount FROM range({DAYS}) a(d), range({rows_per_day}) b(r) "
        f"ORDER BY ts) TO '{folder / 'orders.parquet'}' (FORMAT parquet, ROW_GROUP_SIZE 100000)"
    )


def main(units: int, rows_per_day: int) -> None:
    spec = promolab.load_spec(HERE / "monitor-spec.yaml")
    folder = HERE.parent / "build" / "bench-monitor" / str(units)
    if not (folder / "orders.parquet").exists():
        write_data(folder, units, rows_per_day)
    print(f"{units:,} units, {rows_per_day:,} order rows a day, {DAYS} days; revenue (CUPED) and AOV")
    print(f"{'day':>4} {'rows so far':>12} {'with state (s)':>15} {'without state (s)':>18}")
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch) / "looks.state.duckdb"
        for day in range(1, DAYS + 1):
            through = spec.start + dt.timedelta(days=day - 1)
            began = time.perf_counter()
            monitor_spec(spec, folder, state=state, through=through)
            incremental = time.perf_counter() - began
            if day not in SHOWN:
                continue
            began = time.perf_counter()
            monitor_spec(spec, folder, through=through)
            full = time.perf_counter() - began
            print(f"{day:>4} {day * rows_per_day:>12,} {incremental:>15.3f} {full:>18.2f}", flush=True)


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    main(*(arguments + [100_000, 100_000][len(arguments) :]))
