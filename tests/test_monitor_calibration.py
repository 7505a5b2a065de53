"""A/A calibration of ``promolab monitor``'s daily looks (:func:`promolab.analyze.monitor.sequential_looks`)
by metric kind, against naive peeking on the same data.

Each run is one simulated test (:mod:`promolab.simulate.looks`: binary, heavy-tailed revenue with
CUPED, over-dispersed counts and a ratio, each estimated as ``promolab`` estimates it at each look).

The 28 looks of a run go to the monitor as recorded looks; the run *crosses* when its verdict is not
``continue``. Under no difference that may happen in at most ``alpha`` of the runs: the rate must stay
below ``alpha`` plus 3 binomial standard deviations. Naive peeking (a pointwise 95% z interval excluding 0
at any look) on the same runs must cross far more often, and the last look's z must have an sd near 1 (so
the A/A result is not bought by an inflated standard error). Real effects must stop the monitor: for a
win on a clear lift, for harm on a clear drop (no guardrails).

Seeds are derived from each case's label, never tuned.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import promolab
from promolab.analyze.monitor import sequential_looks
from promolab.simulate.looks import DAYS, SIMULATORS, Array, monitored_two_arms, recorded_looks
from promolab.spec.models import Sequential

from .conftest import EXAMPLES

START = dt.date(2026, 3, 1)
UNITS = 1000  # per arm
RUNS = 800
ALPHA = 0.05
Z95 = 1.959963984540054  # two-sided 95% normal quantile
METRICS = {"binary": "conversion", "revenue": "revenue", "count": "orders", "ratio": "aov"}


def _rng(label: str) -> np.random.Generator:
    """A Generator seeded from the case's label: deterministic and independent across cases."""
    return np.random.default_rng([20260301, zlib.crc32(label.encode())])


# ---------------------------------------------------------------------- simulated tests, one look a day


# ---------------------------------------------------------------------- the monitor on them


def _spec(kind: str, method: str) -> promolab.ExperimentSpec:
    """Spring discount cut to control and pct15, 28 days from START, the kind's metric primary (higher
    is better), no guardrails, ``method``'s looks (group sequential: O'Brien-Fleming spending)."""
    spring = promolab.load_spec(EXAMPLES / "spring-discount.yaml")
    return monitored_two_arms(spring, START, Sequential(method=method), METRICS[kind])


def _runs(kind: str, method: str, lift: float, runs: int) -> tuple[list[dict[str, Any]], Array]:
    """The monitor's results of ``runs`` simulated tests and their z statistics (runs x looks)."""
    rng, spec, simulate = _rng(f"{kind}-{lift}"), _spec(kind, method), SIMULATORS[kind]
    results, z = [], np.empty((runs, DAYS))
    for run in range(runs):
        looks = simulate(rng, UNITS, lift)
        z[run] = looks[0] / looks[1]
        results.append(sequential_looks(spec, recorded_looks(METRICS[kind], looks, UNITS, START)))
    return results, z


def _share(results: Sequence[dict[str, Any]], verdict: str) -> float:
    """Share of the runs whose verdict is ``verdict``."""
    return sum(r["verdict"] == verdict for r in results) / len(results)


def _bound(runs: int) -> float:
    """``alpha`` plus 3 binomial standard deviations of a rate over ``runs`` runs."""
    return ALPHA + 3 * float(np.sqrt(ALPHA * (1 - ALPHA) / runs))


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("method", ["always_valid", "group_sequential"])
@pytest.mark.parametrize("kind", list(SIMULATORS))
def test_daily_looks_keep_alpha_by_kind_while_naive_peeking_does_not(kind: str, method: str) -> None:
    """800 A/A tests of each metric kind looked at on each of 28 days: the monitor (confidence sequence,
    or O'Brien-Fleming spending) ever stops in at most alpha of them (+3 binomial sd: 0.073), while a
    pointwise 95% z interval excludes 0 at some look in more than 12% of the same runs; the last look's z
    has an sd within 15% of 1, so the standard errors fed to the monitor are not inflated."""
    results, z = _runs(kind, method, 0.0, RUNS)
    crossed = sum(r["verdict"] != "continue" for r in results) / RUNS
    naive = float(np.mean((np.abs(z) > Z95).any(axis=1)))
    assert crossed <= _bound(RUNS), f"{kind} {method}: {crossed:.3f} of A/A runs crossed"
    assert naive > 0.12, f"{kind}: naive peeking crossed in {naive:.3f} only"
    assert 0.85 < float(np.std(z[:, -1])) < 1.15


@pytest.mark.parametrize("method", ["always_valid", "group_sequential"])
def test_a_clear_lift_stops_for_a_win_before_the_end(method: str) -> None:
    """200 tests with conversion lifted by 30% (25% -> 32.5%): the monitor stops for a win in more than
    60% of them, never for harm, on average well before day 28: the A/A result above is not a monitor
    that never stops."""
    results, _ = _runs("binary", method, 0.3, 200)
    assert _share(results, "stop_win") > 0.6
    assert _share(results, "stop_harm") == 0
    stops = [r["stopped_on"] for r in results if r["stopped_on"] is not None]
    mean_day = float(np.mean([(dt.date.fromisoformat(d) - START).days + 1 for d in stops]))
    assert mean_day < 22


def test_a_clear_drop_stops_for_harm_without_guardrails() -> None:
    """200 tests with orders per unit cut by 30%, with no guardrails in the spec: the always-valid
    monitor stops for harm on the primary in more than 80% of them and never for a win."""
    results, _ = _runs("count", "always_valid", -0.3, 200)
    assert _share(results, "stop_harm") > 0.8
    assert _share(results, "stop_win") == 0
