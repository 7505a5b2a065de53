"""Simulated daily looks at a two-arm test, by metric kind, without writing rows: the estimates
``promolab`` computes at each look, for checking ``promolab monitor`` by simulation (the A/A and power
checks of ``tests/test_monitor_calibration.py`` and ``bench/bench_monitor_kinds.py``).

Each run is one test: ``2 * units`` fixed units randomised 50/50, with values that accumulate over
``DAYS`` days (a units x days matrix, cumulated along the days). A look on day ``d`` estimates treatment
minus control on the data through ``d``, as ``promolab`` does for the kind:

- binary (converted by day ``d``, unit propensities Beta(2, 6) over the 28 days, a constant daily
  hazard; the lift scales the propensity): difference of proportions, unpooled standard error;
- revenue (Gamma(0.5)-Poisson orders, log-normal amounts with log-sd 1.5 around a unit's own log-mean;
  the lift scales the order rate) with CUPED on the pre-period revenue: ``y - theta (x - xbar)``,
  ``theta`` pooled over both arms, Welch standard error of the adjusted values;
- count (the same orders per unit, negative binomial): Welch standard error;
- ratio (revenue / orders per arm, AOV; the lift scales the amounts): delta method from the per-unit
  sums, ``var(y - R x) / (n xbar^2)`` per arm.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from promolab.spec import ExperimentSpec
from promolab.spec.models import Sequential

type Array = npt.NDArray[np.float64]
type Mask = npt.NDArray[np.bool_]
type Looks = tuple[Array, Array, Array]  # estimate, se and the control's mean at each look
type Simulator = Callable[[np.random.Generator, int, float], Looks]

DAYS = 28


def _assign(rng: np.random.Generator, units: int) -> Mask:
    """Treated mask of ``2 * units`` units, exactly half of them treated, at random."""
    treated = np.zeros(2 * units, dtype=bool)
    treated[rng.permutation(2 * units)[:units]] = True
    return treated


def _welch(values: Array, treated: Mask) -> Looks:
    """Difference of the arms' means in each column (look) and its Welch standard error."""
    t, c = values[treated], values[~treated]
    se = np.sqrt(t.var(axis=0, ddof=1) / len(t) + c.var(axis=0, ddof=1) / len(c))
    return t.mean(axis=0) - c.mean(axis=0), se, c.mean(axis=0)


def _binary(rng: np.random.Generator, units: int, lift: float) -> Looks:
    """Converted by each day: a unit's 28-day propensity (times ``1 + lift`` when treated) spread as a
    constant daily hazard; difference of proportions with the unpooled standard error."""
    treated = _assign(rng, units)
    propensity = np.minimum(rng.beta(2.0, 6.0, 2 * units) * np.where(treated, 1 + lift, 1.0), 0.999)
    first = rng.geometric(1 - (1 - propensity) ** (1 / DAYS))  # day of the first conversion, 1-based
    converted = (first[:, None] <= np.arange(1, DAYS + 1)[None, :]).astype(float)
    p_t, p_c = converted[treated].mean(axis=0), converted[~treated].mean(axis=0)
    se = np.sqrt(p_t * (1 - p_t) / treated.sum() + p_c * (1 - p_c) / (~treated).sum())
    return p_t - p_c, se, p_c


def _orders(
    rng: np.random.Generator, units: int, lift: float, mean: float = 1.0, shape: float = 0.5
) -> tuple[Mask, Array, npt.NDArray[np.int64]]:
    """(treated, unit rates over 28 days, daily orders): Poisson orders at Gamma(``shape``) unit rates of
    mean ``mean`` (times ``1 + lift`` when treated), i.e. negative binomial per unit."""
    treated = _assign(rng, units)
    rate = rng.gamma(shape, mean / shape, 2 * units)
    daily = rate * np.where(treated, 1 + lift, 1.0) / DAYS
    return treated, rate, rng.poisson(daily[:, None], (2 * units, DAYS))


def _amounts(rng: np.random.Generator, counts: npt.NDArray[np.int64], log_mean: Array) -> Array:
    """Sum of ``counts`` log-normal order amounts (log-sd 1.5, the cell's ``log_mean``) in each cell."""
    cells = np.repeat(np.arange(counts.size), counts.ravel())
    amounts = rng.lognormal(np.broadcast_to(log_mean, counts.shape).ravel()[cells], 1.5)
    return np.bincount(cells, amounts, counts.size).reshape(counts.shape)


def _unit_log_means(rng: np.random.Generator, units: int) -> Array:
    """Each unit's log-mean order amount: kept across the pre-period and the test (spend level)."""
    return 3.0 + rng.normal(0.0, 0.5, 2 * units)


def _revenue_cuped(rng: np.random.Generator, units: int, lift: float) -> Looks:
    """Revenue through each day, CUPED on the pre-period (28 days) revenue: ``theta`` pooled over both
    arms, Welch standard error of the adjusted values; the control's unadjusted mean."""
    treated, rate, orders = _orders(rng, units, lift)
    log_mean = _unit_log_means(rng, units)
    pre = _amounts(rng, rng.poisson(rate)[:, None], log_mean[:, None])[:, 0]
    revenue = np.cumsum(_amounts(rng, orders, log_mean[:, None]), axis=1)
    centred = pre - pre.mean()
    theta = centred @ (revenue - revenue.mean(axis=0)) / (centred @ centred)
    estimate, se, _ = _welch(revenue - np.outer(centred, theta), treated)
    return estimate, se, revenue[~treated].mean(axis=0)


def _count(rng: np.random.Generator, units: int, lift: float) -> Looks:
    """Orders through each day, Welch standard error."""
    treated, _, orders = _orders(rng, units, lift)
    return _welch(np.cumsum(orders, axis=1).astype(float), treated)


def _ratio(rng: np.random.Generator, units: int, lift: float) -> Looks:
    """Revenue / orders per arm through each day (amounts times ``1 + lift`` when treated); the
    delta-method variance ``var(y - R x) / (n xbar^2)`` of each arm's ratio from the per-unit sums."""
    treated, _, orders = _orders(rng, units, 0.0)
    log_mean = _unit_log_means(rng, units) + np.where(treated, np.log1p(lift), 0.0)
    revenue = np.cumsum(_amounts(rng, orders, log_mean[:, None]), axis=1)
    count = np.cumsum(orders, axis=1).astype(float)
    ratios, variances = [], []
    for arm in (treated, ~treated):
        y, x = revenue[arm], count[arm]
        ratio = y.sum(axis=0) / x.sum(axis=0)
        ratios.append(ratio)
        variances.append((y - ratio * x).var(axis=0, ddof=1) / (len(x) * x.mean(axis=0) ** 2))
    return ratios[0] - ratios[1], np.sqrt(variances[0] + variances[1]), ratios[1]


SIMULATORS: dict[str, Simulator] = {
    "binary": _binary,
    "revenue": _revenue_cuped,
    "count": _count,
    "ratio": _ratio,
}


def recorded_looks(metric: str, looks: Looks, units: int, start: dt.date) -> list[dict[str, Any]]:
    """The looks as ``monitor`` records them (pct15 against control), one a day from start; a look
    without a usable standard error has none."""
    estimate, se, control = looks
    return [
        {
            "date": (start + dt.timedelta(days=d)).isoformat(),
            "n": 2 * units,
            "series": [
                {
                    "metric": metric,
                    "variant": "pct15",
                    "estimate": float(estimate[d]),
                    "se": float(se[d]) if np.isfinite(se[d]) and se[d] > 0 else None,
                    "control_mean": float(control[d]),
                }
            ],
        }
        for d in range(DAYS)
    ]


def monitored_two_arms(
    spec: ExperimentSpec, start: dt.date, sequential: Sequential, primary: str | None = None
) -> ExperimentSpec:
    """``spec`` cut to its first two arms and ``DAYS`` days from ``start``, without guardrails, looked at
    with ``sequential`` (and ``primary`` as its primary metric, when given): the test the simulated
    looks stand for."""
    analysis = spec.analysis.model_copy(update={"sequential": sequential})
    changes: dict[str, Any] = {
        "start": start,
        "end": start + dt.timedelta(days=DAYS - 1),
        "variants": spec.variants[:2],
        "guardrails": (),
        "analysis": analysis,
    }
    return spec.model_copy(update=changes | ({"primary": primary} if primary else {}))
