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
    """RFM cell of each unit with pre-period orders (before ``spec.start``), e.g. ``R5F3M2``.

    recency = days from the last order to the start, frequency = orders, monetary = their sum. Each
    score is 1 + the number of the ``bins - 1`` quantile cuts (``quantile_disc`` at ``1/bins``, ...)
    the value beats: below a recency cut, above a frequency or monetary cut. Ties share a score.
    """
    cuts = ", ".join(f"{k / rfm.bins!r}" for k in range(1, rfm.bins))
    date = date_of(rfm.date)
    units = (
        f"SELECT {source.unit_id} AS unit_id, date_diff('day', max({date}), $start) AS r, "
        f"count(*) AS f, sum(CAST({quote(rfm.amount)} AS DOUBLE)) AS m "
        f"FROM {source.sql} WHERE {date} < $start GROUP BY 1"
    )
    quantiles = "SELECT " + ", ".join(f"quantile_disc({v}, [{cuts}]) AS q{v}" for v in "rfm") + " FROM x"

    def score(v: str, beats: str) -> str:
        return "(1" + "".join(f" + ({v} {beats} q{v}[{k}])::INTEGER" for k in range(1, rfm.bins)) + ")"

    label = " || ".join(f"'{v.upper()}' || {score(v, '<' if v == 'r' else '>')}" for v in "rfm")
    return (
        f"{name} AS (WITH x AS ({units}), q AS ({quantiles}) SELECT unit_id, {label} AS segment "
        "FROM x CROSS JOIN q)"
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
