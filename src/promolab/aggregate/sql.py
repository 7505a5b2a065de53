"""Generic SQL pieces of the aggregation: dates, the units and RFM tables, moment aggregates and their
parsing, and DuckDB's read errors made readable. No user string reaches the SQL unquoted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promolab.aggregate.inputs import Source, quote
from promolab.errors import first_line, printable
from promolab.spec import ExperimentSpec
from promolab.spec.models import Rfm
from promolab.stats.moments import Moments


def date_of(column: str) -> str:
    """The date of a date, time or text column, NULL when missing or not a date. Times with a zone (or
    text with an offset) are dated in UTC (the connection's time zone), times without one as written.

    Not ``TRY_CAST(x AS DATE)``: inside aggregate ``FILTER`` clauses DuckDB 2.0 pushes that cast into
    the CSV reader as a strict conversion, so one unparseable date fails the whole query; through
    TIMESTAMPTZ it stays a per-row TRY (tested with a CSV holding 'yesterday')."""
    return f"CAST(TRY_CAST({quote(column)} AS TIMESTAMPTZ) AS DATE)"


def sql_name(name: str) -> str:
    """Column of ``unit_values`` holding a moment variable: ``m:<metric>``, or ``cov:<covariate>``."""
    return name if name.startswith("cov:") else "m:" + name


def units_cte(spec: ExperimentSpec, source: Source, columns: Sequence[str], with_variant: bool) -> str:
    """The units table with its id as ``unit_id`` (1-based row number with ``data.row_id``) and its
    columns as ``c:<name>``."""
    unit_id = "row_number() OVER ()" if spec.data.row_id else source.unit_id
    keep = [*columns, spec.data.variant_column] if with_variant else list(columns)
    selected = "".join(f", {quote(c)} AS {quote('c:' + c)}" for c in dict.fromkeys(keep))
    return f"u AS (SELECT {unit_id} AS unit_id{selected} FROM {source.sql})"


def rfm_cte(name: str, rfm: Rfm, source: Source) -> str:
    """RFM cell of each unit with pre-period orders (before ``spec.start``), e.g. ``R5F3M2``
    (:func:`rfm_cells`)."""
    date = date_of(rfm.date)
    units = (
        f"SELECT {source.unit_id} AS unit_id, date_diff('day', max({date}), $start) AS r, "
        f"count(*) AS f, sum(CAST({quote(rfm.amount)} AS DOUBLE)) AS m "
        f"FROM {source.sql} WHERE {date} < $start GROUP BY 1"
    )
    return f"{name} AS ({rfm_cells(units, rfm.bins)})"


def rfm_cells(units: str, bins: int) -> str:
    """``unit_id, segment``: the RFM cell of each unit of ``units`` (a query of ``unit_id, r, f, m``:
    recency in days from the last pre-period order to the start, frequency, monetary sum).

    Each score is 1 + the number of the ``bins - 1`` cuts the value beats: below a recency cut, above a
    frequency or monetary cut; ties share a score. The ``k``-th cut is the ``ceil(n k / bins)``-th
    smallest of the ``n`` values (the inverse of the empirical distribution at ``k / bins``), found by
    numbering the sorted values and comparing integers, so that it is exact in every engine (DuckDB's
    ``quantile_disc`` at the decimal ``k / bins`` is one place off where ``n k / bins`` is whole and the
    decimal rounds up: bins 6, 7 and 9). Standard SQL: the warehouse query runs the same text.
    """
    ranks = ", ".join(f"ROW_NUMBER() OVER (ORDER BY {v}) AS rank_{v}" for v in "rfm")
    ranked = f"SELECT r, f, m, {ranks}, COUNT(*) OVER () AS n FROM x"
    cuts = [
        f"max(CASE WHEN rank_{v} * {bins} >= n * {k} AND (rank_{v} - 1) * {bins} < n * {k} THEN {v} END) "
        f"AS q{v}{k}"
        for v in "rfm"
        for k in range(1, bins)
    ]
    scores = []
    for v in "rfm":
        beats = "<" if v == "r" else ">"
        above = "".join(f" + CASE WHEN {v} {beats} q{v}{k} THEN 1 ELSE 0 END" for k in range(1, bins))
        scores.append(f"'{v.upper()}' || CAST(1{above} AS VARCHAR)")
    return (
        f"WITH x AS ({units}), q AS (SELECT {', '.join(cuts)} FROM ({ranked}) ranked) "
        f"SELECT unit_id, {' || '.join(scores)} AS segment FROM x CROSS JOIN q"
    )


def moment_columns(names: Sequence[str]) -> dict[str, str]:
    """Aggregates of :class:`Moments`: ``mean:i`` and ``comoment:i:j`` (population covariance, i <= j)."""
    columns = {f"mean:{i}": f"avg({quote(sql_name(name))})" for i, name in enumerate(names)}
    columns |= {
        f"comoment:{i}:{j}": f"covar_pop({quote(sql_name(names[i]))}, {quote(sql_name(names[j]))})"
        for i in range(len(names))
        for j in range(i, len(names))
    }
    return columns


def parse_moments(names: Sequence[str], n: int, group: Mapping[str, Any]) -> Moments:
    """:class:`Moments` from the :func:`_moment_columns` of one group (``n`` rows)."""
    d = len(names)
    mean = np.array([group[f"mean:{i}"] for i in range(d)], dtype=float)
    comoment = np.zeros((d, d))
    for i in range(d):
        for j in range(i, d):
            comoment[i, j] = comoment[j, i] = float(group[f"comoment:{i}:{j}"]) * n
    return Moments(tuple(names), int(n), mean, comoment)


def read_failure(error: BaseException) -> str:
    """DuckDB's message about unreadable rows, shortened to the line, the column and the value."""
    text = str(error)
    line = re.search(r"(?:Line|line):? ?(\d+)", text)
    column = re.search(r'converting column "([^"]+)"', text)
    value = re.search(r"Could not convert string \"([^\"]*)\" to '?([A-Z0-9]+)", text)
    if column and value:
        at = f" at line {line.group(1)}" if line else ""
        return (
            f"column '{printable(column.group(1))}'{at} holds '{printable(value.group(1))}', not "
            f"{value.group(2)} as its first rows suggested (types are sniffed from the first rows)"
        )
    return first_line(error)


def source_params(sources: Mapping[str, Source]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for source in sources.values():
        params |= source.params
    return params
