"""``promolab monitor`` by metric kind: 28 daily looks at simulated two-arm tests, always-valid and
group-sequential (O'Brien-Fleming), against naive peeking and the fixed-horizon test.
``python bench/bench_monitor_kinds.py [runs] [units per arm]`` prints the table.

Per kind and method: the A/A rate of ever crossing (verdict not ``continue``), the naive-peeking rate (a
pointwise 95% z interval excluding 0 at any look) on the same runs, and for true relative lifts of 5% and
10% of the metric's mean: the share of runs stopped for a win, the mean stopping day (a run that never
stops counts as day 28), and the power of the fixed-horizon test (z > 1.96 at day 28, two-sided 0.05).
Both methods read the same simulated runs (:mod:`promolab.simulate.looks`: the estimates ``promolab``
computes for each kind).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

import promolab
from promolab.analyze.monitor import sequential_looks
from promolab.simulate.looks import DAYS, SIMULATORS, monitored_two_arms, recorded_looks
from promolab.spec.models import Sequential

START = dt.date(2026, 3, 1)
Z95 = 1.959963984540054  # two-sided 95% normal quantile
LIFTS = (0.05, 0.10)
METHODS = ("always_valid", "group_sequential")
METRICS = {"binary": "conversion", "revenue": "revenue", "count": "orders", "ratio": "aov"}
SPEC = Path(__file__).resolve().parents[1] / "experiments" / "spring-discount.yaml"


# ---------------------------------------------------------------------- the monitor on them


def _spec(kind: str, method: str) -> promolab.ExperimentSpec:
    """Spring discount cut to control and pct15, 28 days, the kind's metric primary, no guardrails."""
    return monitored_two_arms(promolab.load_spec(SPEC), START, Sequential(method=method), METRICS[kind])


def _stop_day(result: dict[str, Any]) -> int:
    """Day (1-based) of the first stop; DAYS when the monitor never stops."""
    if result["stopped_on"] is None:
        return DAYS
    return (dt.date.fromisoformat(result["stopped_on"]) - START).days + 1


def _run(kind: str, lift: float, runs: int, units: int) -> dict[str, Any]:
    """``runs`` simulated tests of ``kind`` with a true relative ``lift``, each read by both methods:
    per method the share crossed, stopped for a win, the mean stopping day; and the naive-peeking and
    fixed-horizon rates."""
    rng = np.random.default_rng([20260301, zlib.crc32(f"{kind}-{lift}".encode())])
    specs = {method: _spec(kind, method) for method in METHODS}
    verdicts: dict[str, list[str]] = {method: [] for method in METHODS}
    days: dict[str, list[int]] = {method: [] for method in METHODS}
    z = np.empty((runs, DAYS))
    for run in range(runs):
        looks = SIMULATORS[kind](rng, units, lift)
        z[run] = looks[0] / looks[1]
        recorded = recorded_looks(METRICS[kind], looks, units, START)
        for method in METHODS:
            result = sequential_looks(specs[method], recorded)
            verdicts[method].append(result["verdict"])
            days[method].append(_stop_day(result))
    return {
        "crossed": {m: float(np.mean([v != "continue" for v in verdicts[m]])) for m in METHODS},
        "win": {m: float(np.mean([v == "stop_win" for v in verdicts[m]])) for m in METHODS},
        "day": {m: float(np.mean(days[m])) for m in METHODS},
        "naive": float(np.mean((np.abs(z) > Z95).any(axis=1))),
        "fixed": float(np.mean(z[:, -1] > Z95)),
    }


def main(runs: int, units: int) -> None:
    """Print the table: one row per kind and method."""
    print(
        f"{units:,} units per arm, {DAYS} daily looks, {runs} runs a cell (both methods read the same "
        "runs); stop day: mean day of the first stop, 28 when none"
    )
    lifted = [f"{f'+{lift:.0%}':>5} {name}" for lift in LIFTS for name in ("win", "day", "fixed")]
    header = ("kind", "method", "A/A cross", "naive peek", *lifted, "seconds")
    widths = (8, 17, 10, 11, *([11] * len(lifted)), 8)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for kind in SIMULATORS:
        began = time.perf_counter()
        found = {lift: _run(kind, lift, runs, units) for lift in (0.0, *LIFTS)}
        seconds = time.perf_counter() - began
        for method in METHODS:
            cells = [f"{found[0.0]['crossed'][method]:.3f}", f"{found[0.0]['naive']:.3f}"]
            for lift in LIFTS:
                row = found[lift]
                cells += [f"{row['win'][method]:.3f}", f"{row['day'][method]:.1f}", f"{row['fixed']:.3f}"]
            values = (kind, method, *cells, f"{seconds:.1f}")
            print(" ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True)))


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 400,
        int(sys.argv[2]) if len(sys.argv) > 2 else 5000,
    )
