"""``promolab monitor`` against the fixed-horizon test on simulated effects: power by the end of a
28-day test and the mean day the monitor stops (a test that never stops counts as 28 days), and the
A/A rate of ever stopping. ``python bench/bench_monitor.py [runs]`` prints the table."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

import promolab
from promolab.aggregate.daily import curve
from promolab.analyze.monitor import monitor
from promolab.simulate.looks import daily_sums
from promolab.spec.models import Sequential

DAYS, UNITS, START = 28, 1000, dt.date(2026, 3, 1)
SPEC = Path(__file__).resolve().parents[1] / "experiments" / "spring-discount.yaml"


def _spec(method: str) -> promolab.ExperimentSpec:
    spec = promolab.load_spec(SPEC)
    analysis = spec.analysis.model_copy(update={"sequential": Sequential(method=method)})  # type: ignore[arg-type]
    end = START + dt.timedelta(days=DAYS - 1)
    return spec.model_copy(update={"start": START, "end": end, "analysis": analysis})


def _run(lift: float, runs: int, method: str, seed: int) -> tuple[float, float, float]:
    """(share stopped by the end, mean stopping day, share the fixed-horizon test rejects)."""
    rng, spec = np.random.default_rng(seed), _spec(method)
    stopped, days, fixed = 0, 0, 0
    for _ in range(runs):
        sums = daily_sums(rng, START, DAYS, UNITS, lift)
        daily = curve("revenue", sums, ["control", "pct15"], {"control": UNITS, "pct15": UNITS}, 0.95, START)
        found = monitor(spec, daily)
        first = next((k for k, look in enumerate(found["looks"]) if look["action"] != "continue"), None)
        stopped += first is not None
        days += (first + 1) if first is not None else DAYS
        lift_row = daily["lift"]["pct15"]
        fixed += not (lift_row["abs_lower"][-1] <= 0 <= lift_row["abs_upper"][-1])
    return stopped / runs, days / runs, fixed / runs


def main(runs: int) -> None:
    print(
        f"{UNITS:,} customers per arm, {DAYS} daily looks, {runs} runs a row ({runs // 4} group sequential)"
    )
    header = ("lift", "method", "stops/power", "mean stop day", "fixed-horizon power", "seconds")
    print("{:>6} {:>17} {:>12} {:>14} {:>20} {:>8}".format(*header))
    for lift in (0.0, 0.03, 0.05, 0.08):
        for method, count in (("always_valid", runs), ("group_sequential", runs // 4)):
            began = time.perf_counter()
            stopped, day, fixed = _run(lift, count, method, seed=int(lift * 1000))
            seconds = time.perf_counter() - began
            print(f"{lift:>6.0%} {method:>17} {stopped:>12.3f} {day:>14.1f} {fixed:>20.3f} {seconds:>8.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
