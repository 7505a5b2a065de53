"""A metric's SQL: its per-unit value from an event table or the units file, and the checks of its raw
values (missing, impossible, not finite) with what an offending value means. The kind-specific pieces
come from the metric's kind (:mod:`promolab.kinds`).

Pure functions of the metric and quoted column names: no user string reaches the SQL unquoted.
"""

from __future__ import annotations

from promolab.aggregate.inputs import Source, metric_column, quote
from promolab.kinds import kind_of
from promolab.spec.models import AnyMetric


def unit_aggregate(metric: AnyMetric, kept: str | None) -> str:
    """Aggregate of one unit's rows (in the window, when ``kept`` filters it) in an event table, by the
    metric's kind; a missing value counts 0 with ``missing: zero``, and is left out otherwise."""
    return kind_of(metric).unit_sql(metric, _value(metric), _filter(kept))


def unit_partials(metric: AnyMetric, kept: str | None) -> list[tuple[str, str]]:
    """(column, aggregate) of one unit's value over some of its rows, in a form that merges with the
    value over its other rows (:meth:`promolab.kinds.base.Kind.merge`): the value itself as
    ``m:<metric>``, or for a mean its sum as ``m:<metric>`` and its number of values as ``n:<metric>``."""
    if kind_of(metric).merge(metric) != "mean":
        return [("m:" + metric.id, unit_aggregate(metric, kept))]
    value, window = _value(metric), _filter(kept)
    return [
        ("m:" + metric.id, f"sum(CAST({value} AS DOUBLE)){window}"),
        ("n:" + metric.id, f"count({value}){window}"),
    ]


def _value(metric: AnyMetric) -> str | None:
    """The metric's quoted column (0 for a missing value with ``missing: zero``); None without one."""
    raw = metric_column(metric)
    column = None if raw is None else quote(raw)
    if column is not None and getattr(metric, "missing_policy", None) == "zero":
        column = f"coalesce({column}, 0)"
    return column


def _filter(kept: str | None) -> str:
    return "" if kept is None else f" FILTER (WHERE {kept})"


def bad_value(metric: AnyMetric, value: str, duck_type: str) -> str | None:
    """Predicate of an impossible value (a negative count, a binary value other than 0/1, an ordinal
    score outside the levels), by the metric's kind."""
    return kind_of(metric).bad_value_sql(metric, value, duck_type)


def bad_value_meaning(metric: AnyMetric) -> str:
    return kind_of(metric).bad_value_meaning(metric)


def value_checks(metric: AnyMetric, value: str, duck_type: str) -> list[tuple[str, str]]:
    """(check kind, predicate over one value) of a metric column: missing, impossible, and not finite
    where the per-unit value could hide it (a cap or a maximum: ``least(NaN, cap)`` is the cap, and
    ``max`` ignores -inf). Elsewhere a NaN or infinity makes the unit's value and its arm's moments
    non-finite, which the aggregation's finiteness check catches without a per-row test."""
    if metric_column(metric) is None:
        return []
    checks = [("null", f"{value} IS NULL")]
    hidden = getattr(metric, "capping", None) is not None or getattr(metric, "agg", None) == "max"
    if duck_type != "BOOLEAN" and hidden:
        checks.append(("nonfinite", f"NOT isfinite(CAST({value} AS DOUBLE))"))
    if (bad := bad_value(metric, value, duck_type)) is not None:
        checks.append(("bad", bad))
    return checks


def count_rows(kind: str, predicate: str, kept: str | None) -> str:
    """Per-unit count of rows (in the window when ``kept`` filters it) matching a check's predicate;
    missing values as rows minus non-missing values (``count(column)``, cheaper than a filter)."""
    window = _filter(kept)
    if kind == "null":
        column = predicate.removesuffix(" IS NULL")
        return f"(count(*){window} - count({column}){window})"
    where = predicate if kept is None else f"({kept}) AND ({predicate})"
    return f"count(*) FILTER (WHERE {where})"


def row_checks(metric: AnyMetric, source: Source) -> list[tuple[str, str]]:
    """Checks of an event table's rows."""
    column = metric_column(metric)
    return [] if column is None else value_checks(metric, quote(column), source.columns[column])


def units_checks(metric: AnyMetric, units: Source, base: str) -> list[tuple[str, str]]:
    """Checks of a units-file column, per unit (a missing ordinal score is no response, not a problem
    to count against the policy unless the policy says error)."""
    column = metric_column(metric)
    if column is None:
        return []
    value = f"{base}.{quote('c:' + column)}"
    return value_checks(metric, value, units.columns[column])


def table_value(metric: AnyMetric, alias: str) -> str:
    """A unit's value from its event-table aggregate: 0 for a unit without rows (ordinal: missing)."""
    value = f"{alias}.{quote('m:' + metric.id)}"
    if not kind_of(metric).absent_is_zero:
        return f"{value} AS {quote('m:' + metric.id)}"
    return f"coalesce(CAST({value} AS DOUBLE), 0) AS {quote('m:' + metric.id)}"


def units_value(metric: AnyMetric, base: str) -> str:
    """A metric read from the units file: its column, by its kind (NULL as 0 under ``missing: zero``; a
    NULL that the policy refuses is counted by the checks, and an ordinal NULL is no response)."""
    column = f"{base}.{quote('c:' + (metric_column(metric) or ''))}"
    return f"{kind_of(metric).units_sql(column)} AS {quote('m:' + metric.id)}"
