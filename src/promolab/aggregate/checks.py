"""The accounting and checks of an aggregation's rows: the event tables read, the names of their
row-count and check columns, each table's rows (analysed, held out, unmatched, outside the window,
undated), the missing values accepted, the largest values, and the tables that cannot feed their metrics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promolab.aggregate.inputs import Source
from promolab.aggregate.quality import DataQuality, TableRows
from promolab.errors import DataError, printable
from promolab.spec import ExperimentSpec
from promolab.spec.models import AnyMetric, SourcedMetric


@dataclass(frozen=True)
class EventTable:
    """An event table read by metrics: its position (the suffix of its row-count columns), its source,
    its metrics and whether its rows are filtered to the test window."""

    index: int
    source: Source
    metrics: tuple[SourcedMetric, ...]
    windowed: bool


def check_column(kind: str, metric: AnyMetric) -> str:
    return f"chk:{kind}:{metric.id}"


def row_columns(table: EventTable) -> tuple[str, str, str]:
    """Per-unit counts of a table's rows: all, in the window, undated."""
    k = table.index
    return f"rows:{k}", f"kept:{k}", f"undated:{k}"


def counted_rows(table: EventTable) -> tuple[str, ...]:
    """The row counts a table's query computes (the window's only when it is windowed)."""
    return row_columns(table) if table.windowed else row_columns(table)[:1]


def table_quality(
    groups: Sequence[Mapping[str, Any]],
    tables_read: Sequence[EventTable],
    checks: Sequence[tuple[str, SourcedMetric]],
    uncapped: Sequence[AnyMetric],
    spec: ExperimentSpec,
    so_far: bool = False,
) -> DataQuality:
    """Rows of each event table: of units in the analysed arms, of holdout units, of units not
    assigned (with missing ids), outside the window, undated; missing values of each metric and
    what was done with them.

    With ``so_far`` (the rows of a running test up to a look) a table without rows yet, or without
    rows in the window yet, is no problem: its metrics are 0 so far.

    Raises:
        DataError: a table has no rows, or none of its rows is of an assigned unit in the window.
    """
    tables: dict[str, TableRows] = {}
    problems = []
    for table in tables_read:
        rows, kept, undated = row_columns(table)
        total = sum(int(g[rows]) for g in groups)
        analysed = [g for g in groups if g["arm"] > 0]  # arm 0 is the holdout: assigned, not analysed
        matched = sum(int(g[rows]) for g in analysed)
        held = sum(int(g[rows]) for g in groups if g["arm"] == 0)
        in_window = sum(int(g[kept if table.windowed else rows]) for g in analysed)
        undated_rows = sum(int(g[undated]) for g in analysed) if table.windowed else 0
        counts = TableRows(
            rows=total,
            matched_rows=matched,
            holdout_rows=held,
            unmatched_rows=total - matched - held,
            missing_id_rows=sum(int(g[f"null id:{rows}"]) for g in groups),
            outside_window_rows=matched - in_window - undated_rows,
            undated_rows=undated_rows,
            windowed=table.windowed,
        )
        tables[table.source.name] = counts
        problems += table_problems(table, counts, spec, so_far)
    if problems:
        raise DataError(problems)
    missing = {
        m.id: sum(int(g[check_column("null", m)]) for g in groups if g["arm"] > 0)
        for kind, m in checks
        if kind == "null"
    }
    policies = {m.id: str(m.missing_policy) for kind, m in checks if kind == "null"}
    largest = {}
    for metric in uncapped:
        top = sorted(float(v) for g in groups if g["arm"] > 0 for v in g[f"top:{metric.id}"] or [])
        if len(top) >= 2:
            largest[metric.id] = (top[-1], top[-2])
    return DataQuality(tables, missing, policies, largest)


def table_problems(
    table: EventTable, counts: TableRows, spec: ExperimentSpec, so_far: bool = False
) -> list[str]:
    """An event table that cannot feed its metrics: no rows, no row of an assigned unit, or none in the
    window (with ``so_far``, only rows that match no assigned unit)."""
    where = table.source.where
    if so_far and (counts.rows == 0 or counts.matched_rows > 0):
        return []
    if counts.rows == 0:
        return [
            f"{where}: has no data rows; its metrics ({', '.join(m.id for m in table.metrics)}) need some"
        ]
    if counts.matched_rows == 0:
        return [
            f"{where}: none of its {counts.rows:,} rows is of a unit in the assignments (their "
            f"'{printable(spec.data.unit_id)}' values do not match): check that both files hold the same ids"
        ]
    if counts.matched_rows == counts.outside_window_rows + counts.undated_rows:
        stop = spec.end + dt.timedelta(days=spec.post_days)
        return [
            f"{where}: none of its rows of assigned units is dated in the test window {spec.start} .. "
            f"{stop} (column '{printable(str(spec.data.timestamp))}')"
        ]
    return []
