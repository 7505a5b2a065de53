"""The primary metric by day (the report's curve): each arm's cumulative mean per randomised unit and
each treatment arm's cumulative lift with its interval, from the promotion's start through the post
window; its SQL and the curve from per-day sums.

Day ``d`` counts the metric's rows up to ``d``: the value summed (count, continuous ``sum``), or units
with a first qualifying row by ``d`` (binary). Uncapped. Only cumulative metrics have a curve.

The interval of day ``d`` needs the spread of the units' cumulative values ``c_u(d)``: their sum of
squares grows on the days a unit has rows by ``c_u(d)^2 - c_u(d-1)^2``, so one pass over the rows
(not units x days) gives it. Intervals are pointwise (Welch-normal, delta method for the relative
lift): a band to read the trend by, not a license to stop early (peeking inflates false positives).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promolab.aggregate.inputs import Source, metric_column, quote
from promolab.spec.models import AnyMetric, BinaryMetric, ContinuousMetric, CountMetric
from promolab.stats.estimators import ArmSummary, compare


def cumulative(metric: AnyMetric) -> bool:
    """A metric whose per-unit value accumulates over days: binary, count, continuous ``sum``."""
    return isinstance(metric, BinaryMetric | CountMetric) or (
        isinstance(metric, ContinuousMetric) and metric.agg == "sum"
    )


def rows_sql(metric: AnyMetric, source: Source, day: str, window: str) -> str:
    """``unit_id, day, value`` of every row of ``source`` in the window (binary: each unit's first
    qualifying day, value 1)."""
    raw = metric_column(metric)
    if isinstance(metric, BinaryMetric):
        hit = f" AND CAST({quote(raw)} AS BOOLEAN)" if raw else ""
        return (
            f"SELECT {source.unit_id} AS unit_id, min({day}) AS day, 1.0 AS value FROM {source.sql} "
            f"WHERE {window}{hit} GROUP BY 1"
        )
    value = f"coalesce(CAST({quote(raw)} AS DOUBLE), 0)" if raw else "1.0"
    return (
        f"SELECT {source.unit_id} AS unit_id, {day} AS day, {value} AS value FROM {source.sql} WHERE {window}"
    )


def sums_sql(rows: str, arms: str) -> str:
    """Per day and arm: the sum of the values and the growth of the sum of squared cumulative values
    (module docstring), from ``rows`` (``unit_id, day, value``) and ``arms`` (``unit_id, arm``)."""
    return (
        f"WITH d AS (SELECT unit_id, day, sum(value) AS v FROM ({rows}) GROUP BY 1, 2), "
        "c AS (SELECT unit_id, day, v, sum(v) OVER (PARTITION BY unit_id ORDER BY day) AS cum FROM d) "
        f"SELECT c.day, a.arm, sum(c.v), sum(c.cum * c.cum - (c.cum - c.v) * (c.cum - c.v)) "
        f"FROM c JOIN ({arms}) a USING (unit_id) GROUP BY ALL ORDER BY 1"
    )


def curve(
    metric: str,
    sums: Sequence[tuple[Any, int, float, float]],
    arms: Sequence[str],
    sizes: Mapping[str, int],
    confidence: float,
    end: dt.date,
) -> dict[str, Any]:
    """The curve from ``(day, 1-based arm, sum of values, growth of the sum of squares)`` rows: each
    arm's running mean over its units, and each treatment arm's (``arms[1:]``) cumulative lift over
    the reference (``arms[0]``) with its interval; ``end`` is the promotion's last day (later days are
    the post window)."""
    days = sorted({row[0] for row in sums})
    first = {arm: np.zeros(len(days)) for arm in arms}
    second = {arm: np.zeros(len(days)) for arm in arms}
    for when, k, total, squares in sums:
        first[arms[int(k) - 1]][days.index(when)] = float(total)
        second[arms[int(k) - 1]][days.index(when)] = float(squares)
    means = {arm: np.cumsum(first[arm]) / sizes[arm] for arm in arms}
    variances = {arm: _variance(np.cumsum(first[arm]), np.cumsum(second[arm]), sizes[arm]) for arm in arms}
    reference = arms[0]
    lift = {}
    for arm in arms[1:]:
        rows = [
            _lift(sizes, (reference, arm), (means[reference][i], means[arm][i]), variances, i, confidence)
            for i in range(len(days))
        ]
        lift[arm] = {key: [row[j] for row in rows] for j, key in enumerate(LIFT_KEYS)}
    return {
        "metric": metric,
        "days": [d.isoformat() for d in days],
        "end": end.isoformat(),
        "confidence": confidence,
        "arms": {arm: values.tolist() for arm, values in means.items()},
        "lift": lift,
    }


LIFT_KEYS = ("abs_diff", "abs_lower", "abs_upper", "rel_lift", "rel_lower", "rel_upper")


def _variance(total: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """Sample variance (ddof 1) of the units' cumulative values from their sum and sum of squares."""
    return np.maximum(squares - total * total / n, 0.0) / (n - 1)


def _lift(
    sizes: Mapping[str, int],
    pair: tuple[str, str],
    means: tuple[float, float],
    variances: Mapping[str, np.ndarray],
    day: int,
    confidence: float,
) -> tuple[float | None, ...]:
    """(difference, its interval, relative lift, its interval) of one day; None where undefined."""
    summaries = [
        ArmSummary(sizes[name], float(mean), float(variances[name][day]) / sizes[name], sizes[name] - 1)
        for name, mean in zip(pair, means, strict=True)
    ]
    found = compare(summaries[0], summaries[1], confidence)
    low, high = found.abs_ci or (None, None)
    rel_low, rel_high = found.rel_ci or (None, None)
    return (found.abs_diff, low, high, found.rel_lift, rel_low, rel_high)
