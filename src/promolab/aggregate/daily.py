"""The primary metric's cumulative mean per randomised unit by day (the report's curve): its SQL and
the curve from the per-day sums.

Day ``d`` counts the metric's rows up to ``d``: the value summed (count, continuous ``sum``), or units
with a first qualifying row by ``d`` (binary). Uncapped. Only cumulative metrics have a curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promolab.aggregate.inputs import Source, metric_column, quote
from promolab.spec.models import AnyMetric, BinaryMetric, ContinuousMetric, CountMetric


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


def curve(
    metric: str, sums: Sequence[tuple[Any, int, float]], arms: Sequence[str], sizes: Mapping[str, int]
) -> dict[str, Any]:
    """The curve from ``(day, 1-based arm, sum of values)`` rows: each arm's running sum over its units."""
    days = sorted({row[0] for row in sums})
    totals = {arm: [0.0] * len(days) for arm in arms}
    for when, k, total in sums:
        totals[arms[int(k) - 1]][days.index(when)] = float(total)
    return {
        "metric": metric,
        "days": [d.isoformat() for d in days],
        "arms": {arm: (np.cumsum(t) / sizes[arm]).tolist() for arm, t in totals.items()},
    }
