"""DuckDB aggregation: event rows -> one value per unit and metric -> per-arm sufficient statistics.

Per-unit values (one pass over each event table, ``GROUP BY`` unit):

- binary: 1 when the unit has a row in ``source`` (with ``column``: a row where it is 1 / true), else 0;
- continuous: ``agg`` (sum, mean, max) of ``column`` over the unit's rows, 0 without rows;
- count: number of rows (with ``column``: its sum), 0 without rows;
- ordinal: mean of the unit's responses; units without a response are missing, not 0;
- ratio: no value of its own; the analysis uses its numerator's and denominator's values.
Metrics with ``source: units`` read the units file's column directly. With ``data.timestamp``, only
event rows dated in the test window ``[start, end + post_days]`` count. A missing (NULL) value follows
the metric's ``missing`` policy (an error by default). The per-unit values are reduced to
:class:`~promolab.stats.moments.ExperimentStats` in one query with the data checks when possible;
they are materialised as a table only when more passes are needed (see :class:`DuckAggregation`).

Columns of ``unit_values`` derived from user names are namespaced (``m:<metric>``, ``cov:<column>``,
``seg:<name>``, ``chk:<check>:<metric>``, ``rows:<table>``), so no metric, covariate or table id can be
read in place of an internal column (``unit_id``, ``arm``, ``label``). Identifiers from the spec are
quoted; file paths, labels and numbers are bound as parameters: no SQL is assembled from user strings.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promolab.aggregate import daily
from promolab.aggregate.checks import (
    EventTable,
    check_column,
    counted_rows,
    row_columns,
    table_quality,
)
from promolab.aggregate.inputs import (
    INTEGER_TYPES,
    Source,
    check_columns,
    check_rfm_values,
    check_unit_ids,
    metric_column,
    metric_source,
    open_sources,
    quote,
)
from promolab.aggregate.layout import StatsLayout, label_lists
from promolab.aggregate.quality import DataQuality
from promolab.aggregate.sql import (
    date_of,
    moment_columns,
    parse_moments,
    read_failure,
    rfm_cte,
    source_params,
    sql_name,
    units_cte,
)
from promolab.aggregate.values import (
    bad_value_meaning,
    count_rows,
    row_checks,
    table_value,
    unit_aggregate,
    units_checks,
    units_value,
)
from promolab.errors import DataError, first_line, printable, quoted
from promolab.sources import DataPath
from promolab.spec import ExperimentSpec
from promolab.spec.models import (
    UNITS_SOURCE,
    AnyMetric,
    ContinuousMetric,
    CountMetric,
    OrdinalMetric,
    RatioMetric,
    Segmentation,
    SourcedMetric,
)
from promolab.spec.windows import SEPARATOR, window_of
from promolab.stats.moments import (
    MAX_POWER_COVARIATES,
    ArmStats,
    ExperimentStats,
    Histogram,
    Moments,
    ResidualMoments,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

UNASSIGNED = -2  # arm of event-table units that the assignments do not hold
_MAX_BITMAP_BITS = 1 << 27  # 16 MB per label: unit ids spread wider are checked by count(DISTINCT)
CHECKS = {  # check kind -> what the offending rows are, for messages
    "null": "missing (NULL)",
    "nonfinite": "not finite (NaN or infinite)",
    "bad": "",  # the metric's own rule: see _bad_value_meaning
}


def aggregate(
    spec: ExperimentSpec,
    paths: Mapping[str, DataPath] | None = None,
    frames: Mapping[str, pd.DataFrame] | None = None,
    covariates: Sequence[str] = (),
    segments: Sequence[Segmentation] = (),
    log_moments: bool = False,
    daily: bool = False,
    own_covariates: Mapping[str, str] | None = None,
) -> DuckAggregation:
    """Aggregate the spec's data to per-arm statistics (``.stats``) in an in-memory DuckDB.

    Args:
        spec: the experiment.
        paths: file of each data name (``assignments``, ``units``, table names), CSV or Parquet.
        frames: pandas DataFrames by data name, used instead of files (registered in DuckDB).
        covariates: units-file columns to keep for regression adjustment.
        segments: ways to slice units (units-file columns, RFM scores) for per-segment moments.
        log_moments: also compute the log-moments of continuous metrics (Bayesian hurdle models).
        daily: also compute the primary metric's cumulative mean by day (``.daily``), when it reads an
            event table with the ``data.timestamp`` column.
        own_covariates: metric -> its own covariate metric (its pre-period value), adjusted with the
            shared ``covariates``.

    Raises:
        DataError: missing files or columns, repeated column names, wrong types, ids that do not join,
            undeclared variants, units with two variants, empty arms, missing or non-finite values,
            impossible values (negative counts, binary values other than 0/1, ordinal scores outside the
            levels), event tables none of whose rows match an assigned unit in the window.
    """
    con, sources = connect(spec, paths or {}, frames or {}, covariates, segments)
    aggregation = DuckAggregation(spec, con, sources, covariates, segments, own_covariates)
    aggregation.build_unit_table(distinct_assignments=False, materialise=daily)
    aggregation.compute_stats(log_moments)
    if daily:
        aggregation.daily = aggregation.daily_curve(spec.metric(spec.primary))
    return aggregation


def connect(
    spec: ExperimentSpec,
    paths: Mapping[str, DataPath],
    frames: Mapping[str, pd.DataFrame],
    covariates: Sequence[str],
    segments: Sequence[Segmentation] = (),
) -> tuple[duckdb.DuckDBPyConnection, dict[str, Source]]:
    """An in-memory DuckDB with the spec's data opened as sources, their columns and unit ids checked
    (see :func:`aggregate`)."""
    import duckdb

    # No progress bar: DuckDB draws it on stdout, which carries promolab's tables and JSON.
    con = duckdb.connect(config={"preserve_insertion_order": False, **engine_limits()})
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")  # dates of zoned timestamps do not depend on the machine
    sources = open_sources(con, spec, paths, frames, segments)
    check_columns(con, spec, sources, covariates, segments)
    sources = check_unit_ids(con, spec, sources)
    check_rfm_values(con, sources, segments)
    return con, dict(sources)


MEMORY_LIMIT = "1.5GB"  # DuckDB's share: with Python and the libraries a run stays within about 2 GB
_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def engine_limits() -> dict[str, str | bool | int | float | list[str]]:
    """DuckDB's memory limit (``PROMOLAB_MEMORY_LIMIT``, e.g. ``8GB``; default ``MEMORY_LIMIT``) and where
    it spills what does not fit (``PROMOLAB_SPILL_DIR``; default a ``promolab-spill`` folder in the
    system's temporary folder).

    Raises:
        DataError: a limit that is not a size.
    """
    import tempfile

    limit = os.environ.get("PROMOLAB_MEMORY_LIMIT", "").strip() or MEMORY_LIMIT
    if not _SIZE.match(limit) or _bytes(limit) < MIN_MEMORY:
        raise DataError(
            f"PROMOLAB_MEMORY_LIMIT: expected a size of at least 100MB such as 1.5GB or 800MB, got "
            f"'{printable(limit)}'"
        )
    spill = os.environ.get("PROMOLAB_SPILL_DIR") or str(Path(tempfile.gettempdir()) / "promolab-spill")
    return {"memory_limit": limit, "temp_directory": spill}


MIN_MEMORY = 100 * 10**6  # bytes: below this DuckDB cannot read even small inputs
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "tib": 2**40}  # fmt: skip


def _bytes(size: str) -> float:
    """Bytes of a size such as ``1.5GB`` or ``800 MiB``."""
    number, unit = re.match(r"^([\d.]+)\s*([a-zA-Z]+)$", size).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit.lower()]


@dataclass
class _Plan:
    """The SQL of ``unit_values`` and what it was built from."""

    query: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    tables: list[EventTable] = field(default_factory=list)
    checks: list[tuple[str, SourcedMetric]] = field(default_factory=list)  # (kind, metric) check columns


class DuckAggregation:
    """One experiment's per-unit values in DuckDB and the statistics reduced from them.

    The per-unit values ``unit_values`` are a common table expression (computed from the sources in the
    query that reads them) when one pass over them gives every statistic, else a temporary table:
    percentile capping, segments, the daily curve, ``data.row_id``, more covariates than power sums
    serve, CSV inputs or ids that cannot be checked for repeats by a bitmap. The exact residual pass
    (:meth:`residual_moments`, for ill-conditioned power sums) materialises the table first.
    """

    def __init__(
        self,
        spec: ExperimentSpec,
        con: duckdb.DuckDBPyConnection,
        sources: Mapping[str, Source],
        covariates: Sequence[str],
        segments: Sequence[Segmentation] = (),
        own_covariates: Mapping[str, str] | None = None,
    ) -> None:
        self.spec, self.con, self.sources = spec, con, sources
        self.covariates = tuple(covariates)
        self.own = dict(own_covariates or {})  # metric -> its pre-period metric (CUPED on its own history)
        self.segments = tuple(segments)
        self.arms = [v.id for v in spec.variants]
        self.layout = StatsLayout(spec, self.covariates, self.own)
        self.variables = self.layout.variables
        self.ordinals = self.layout.ordinals
        self.caps: dict[str, float] = {}
        self.stats = ExperimentStats({})
        self.quality = DataQuality()
        self.daily: dict[str, Any] | None = None
        self.distinct_assignments = False
        self.materialised = False
        self.plan = _Plan()
        self.unit_cte: str | None = None  # unit_values as a CTE when not materialised
        self.id_range: tuple[int, int] | None = None
        self.so_far = False  # the rows of a running test up to a look: tables may have none yet

    # ------------------------------------------------------------------ the per-unit values

    def build_unit_table(self, distinct_assignments: bool, materialise: bool = False) -> None:
        """Create ``unit_values``: unit, arm (1-based; 0 = holdout; -1 = undeclared label; -2 = an event
        table's unit that is not assigned), label, metric values, check counts, covariates, segments and
        per-table row counts; a common table expression of the next queries when one pass suffices,
        else a temporary table.

        Assignment rows are joined as they are (fast); with ``distinct_assignments`` repeated rows of a
        unit with the same variant (an exposure log) are collapsed first.
        """
        self.plan = self._unit_plan(distinct_assignments)
        self.distinct_assignments = distinct_assignments
        self.unit_cte = None
        self.materialised = materialise or self._needs_table()
        self.id_range = None if self.materialised else self._source_id_range()
        if self.materialised or self.id_range is None:
            self._materialise()
        else:
            self.unit_cte = f"unit_values AS ({self.plan.query})"

    def _unit_plan(self, distinct_assignments: bool) -> _Plan:
        spec, sources = self.spec, self.sources
        plan = _Plan()
        plan.params = {
            "pre_start": spec.start - dt.timedelta(days=spec.pre_days),
            "start": spec.start,
            "end": spec.end,
            "stop": spec.end + dt.timedelta(days=spec.post_days),
        }
        ctes = [self._base_cte(distinct_assignments)]
        joins, values = ["assign a"], []
        base = "a" if self._units_are_base else "u"
        for index, (name, metrics) in enumerate(_metrics_by_table(spec).items()):
            if name == UNITS_SOURCE:
                values += [units_value(m, base) for m in metrics]
                for metric in metrics:
                    for kind, predicate in units_checks(metric, sources[UNITS_SOURCE], base):
                        values.append(f"CAST({predicate} AS INTEGER) AS {quote(check_column(kind, metric))}")
                        plan.checks.append((kind, metric))
                continue
            table = EventTable(index, sources[name], tuple(metrics), self._windowed(sources[name]))
            plan.tables.append(table)
            alias = f"t{index}"
            ctes.append(f"{alias} AS ({self._table_cte(table, plan)})")
            joins.append(f"FULL JOIN {alias} USING (unit_id)")
            values += [table_value(m, alias) for m in metrics]
            values += [f"{alias}.{quote(check_column(k, m))}" for k, m in plan.checks if m in metrics]
            values += [f"coalesce({alias}.{quote(c)}, 0) AS {quote(c)}" for c in counted_rows(table)]
        if "units" in sources and not self._units_are_base:
            ctes.append(units_cte(spec, sources[UNITS_SOURCE], self._units_columns(), with_variant=False))
            joins.append("LEFT JOIN u USING (unit_id)")
        values += [
            f"CAST({base}.{quote('c:' + c)} AS DOUBLE) AS {quote('cov:' + c)}" for c in self.covariates
        ]
        values += self._segment_values(ctes, joins, base)
        arm = (
            f"CASE WHEN a.assigned IS NULL THEN {UNASSIGNED} "
            "ELSE coalesce(list_extract($label_arms, list_position($labels, a.label)), -1) END"
        )
        select = ", ".join(["unit_id", f"{arm} AS arm", "a.label", *values])
        labels, label_arms = label_lists(spec)
        plan.params |= {"labels": labels, "label_arms": label_arms} | source_params(sources)
        plan.query = f"WITH {', '.join(ctes)} SELECT {select} FROM {' '.join(joins)}"
        return plan

    @property
    def _units_are_base(self) -> bool:
        """The units file holds the variant (no assignments file): it is the base of the join."""
        return "assignments" not in self.sources

    def _units_columns(self) -> list[str]:
        return [
            *(c for m in self.spec.metrics if metric_source(m) == UNITS_SOURCE and (c := metric_column(m))),
            *self.covariates,
            *(s.column for s in self.segments if s.column is not None),
        ]

    def _base_cte(self, distinct_assignments: bool) -> str:
        """``assign``: every assigned unit, its raw label and ``assigned = 1`` (with the units file's
        columns when that file holds the variant)."""
        spec = self.spec
        label = f"CAST({quote('c:' + spec.data.variant_column)} AS VARCHAR)"
        if self._units_are_base:
            units = units_cte(spec, self.sources[UNITS_SOURCE], self._units_columns(), with_variant=True)
            return f"{units}, assign AS (SELECT *, {label} AS label, 1 AS assigned FROM u)"
        source = self.sources["assignments"]
        distinct = "DISTINCT " if distinct_assignments else ""
        return (
            f"assign AS (SELECT {distinct}{source.unit_id} AS unit_id, "
            f"CAST({quote(spec.data.variant_column)} AS VARCHAR) AS label, 1 AS assigned FROM {source.sql})"
        )

    def _windowed(self, source: Source) -> bool:
        column = self.spec.data.timestamp
        return column is not None and column in source.columns

    def _table_cte(self, table: EventTable, plan: _Plan) -> str:
        """One row per unit id of an event table: metric values over the rows in the window, counts of
        rows (all, in the window, undated) and of each metric's missing, non-finite or impossible values."""
        source = table.source
        kept = self._in_window() if table.windowed else None
        rows, kept_rows, undated = row_columns(table)
        columns = [f"count(*) AS {quote(rows)}"]
        if kept is not None:
            day = self._day()
            columns += [
                f"count(*) FILTER (WHERE {kept}) AS {quote(kept_rows)}",
                f"count(*) FILTER (WHERE {day} IS NULL) AS {quote(undated)}",
            ]
        for metric in table.metrics:
            rows_filter = self._row_filter(metric, plan.params)
            counted = _both(self._window(metric) if table.windowed else None, rows_filter)
            columns += [f"{value} AS {quote(name)}" for name, value in self._unit_values(metric, counted)]
            if SEPARATOR in metric.id:  # a derived metric's rows are its declared metric's: checked there
                continue
            for kind, predicate in row_checks(metric, source):
                column = quote(check_column(kind, metric))
                columns.append(f"{count_rows(kind, predicate, _both(kept, rows_filter))} AS {column}")
                plan.checks.append((kind, metric))
        where = self._rows_read(table)
        return f"SELECT {source.unit_id} AS unit_id, {', '.join(columns)} FROM {source.sql}{where} GROUP BY 1"

    def _unit_values(self, metric: AnyMetric, counted: str | None) -> list[tuple[str, str]]:
        """(column, aggregate) of a unit's value of ``metric`` over its rows that ``counted`` keeps."""
        return [("m:" + metric.id, unit_aggregate(metric, counted))]

    def _rows_read(self, table: EventTable) -> str:
        """The WHERE clause of the event table's rows read: every row (a look reads a range of days)."""
        return ""

    def _row_filter(self, metric: AnyMetric, params: dict[str, Any]) -> str | None:
        """The metric's ``where`` as a predicate over its table's rows, its values bound as a parameter
        (compared as text; a missing value matches no ``in`` list and every ``not_in`` list)."""
        row_filter = getattr(metric, "where", None)
        if row_filter is None:
            return None
        name = f"where_{[m.id for m in self.spec.metrics].index(metric.id)}"
        params[name] = row_filter.values
        listed = f"coalesce(list_contains(${name}, CAST({quote(row_filter.column)} AS VARCHAR)), false)"
        return listed if row_filter.keeps else f"NOT {listed}"

    def _day(self) -> str:
        """The event date of a row of an event table (see :func:`date_of`)."""
        return date_of(str(self.spec.data.timestamp))

    def _in_window(self) -> str:
        """Rows in any window: pre-period, during and post."""
        return f"{self._day()} BETWEEN $pre_start AND $stop"

    def _window(self, metric: AnyMetric) -> str:
        """Rows of the metric's window (:mod:`promolab.spec.windows`); from ``start`` to the end of the
        post window for a metric that has none (ordinal scores)."""
        day, window = self._day(), window_of(self.spec, metric.id)
        if window is None:
            return f"{day} BETWEEN $start AND $stop"
        return {
            "pre": f"{day} >= $pre_start AND {day} < $start",
            "during": f"{day} BETWEEN $start AND $end",
            "post": f"{day} > $end AND {day} <= $stop",
            "total": f"{day} BETWEEN $start AND $stop",
        }[str(window)]

    def _segment_values(self, ctes: list[str], joins: list[str], base: str) -> list[str]:
        values = []
        for k, segmentation in enumerate(self.segments):
            label = quote("seg:" + segmentation.name)
            if segmentation.rfm is not None:
                source = self.sources[segmentation.rfm.source]
                ctes.append(rfm_cte(f"rfm{k}", segmentation.rfm, source))
                joins.append(f"LEFT JOIN rfm{k} USING (unit_id)")
                values.append(f"coalesce(rfm{k}.segment, 'new') AS {label}")
            else:
                column = quote("c:" + str(segmentation.column))
                values.append(f"coalesce(CAST({base}.{column} AS VARCHAR), '') AS {label}")
        return values

    def _materialise(self) -> None:
        """Store ``unit_values`` as a temporary table (later queries read it instead of the sources)."""
        self._run(f"CREATE OR REPLACE TEMP TABLE unit_values AS {self.plan.query}", self.plan.params)
        self.unit_cte = None
        self.materialised = True
        self.id_range = self._table_id_range()

    def _needs_table(self) -> bool:
        """More than one pass over the units: percentile capping, segments, row-numbered units, or more
        covariates than power sums serve (the residual pass then reads the units once per metric)."""
        percentile = any(
            (capping := getattr(m, "capping", None)) is not None and capping.absolute is None
            for m in self.spec.metrics
        )
        many = any(len(self.layout.covariates_of(name)) > MAX_POWER_COVARIATES for name in self.variables)
        return percentile or bool(self.segments) or self.spec.data.row_id or many

    def _source_id_range(self) -> tuple[int, int] | None:
        """Smallest and largest integer unit id of the assignments, when a bitmap of them is small and
        the range costs no scan (Parquet statistics, an in-memory frame); else None."""
        source = self.sources.get("assignments") or self.sources[UNITS_SOURCE]
        column = self.spec.data.unit_id
        if source.kind == "csv" or source.columns.get(column, "") not in INTEGER_TYPES:
            return None
        found = self._run(
            f"SELECT min({quote(column)}), max({quote(column)}) FROM {source.sql}", source.params
        )
        return _bitmap_range(found.fetchone())

    def _table_id_range(self) -> tuple[int, int] | None:
        kind = self._run("SELECT typeof(unit_id) FROM unit_values WHERE arm >= -1 LIMIT 1").fetchone()
        if kind is None or str(kind[0]) not in INTEGER_TYPES:
            return None
        return _bitmap_range(
            self._run("SELECT min(unit_id), max(unit_id) FROM unit_values WHERE arm >= -1").fetchone()
        )

    # ------------------------------------------------------------------ the statistics

    def compute_stats(self, log_moments: bool = False) -> None:
        """Capping thresholds, then one pass over the units for the checks and every arm's moments,
        power sums (regression adjustment), ordinal histograms and log-moments; per-segment moments.

        Raises:
            DataError: see :func:`aggregate`; repeated assignment rows of one variant are collapsed
                (the units are rebuilt once with distinct assignments) before repeats are an error.
        """
        self.caps = self._caps()
        groups = self._arm_pass(log_moments)
        assigned = [g for g in groups if g["arm"] != UNASSIGNED]
        self._check_labels(assigned)
        self._check_unit_ids(assigned)
        repeated = self._repeated(assigned)
        if repeated and "assignments" in self.sources and not self.distinct_assignments:
            self._raise_on_units_with_two_variants()
            self.build_unit_table(distinct_assignments=True, materialise=self.materialised)
            self.compute_stats(log_moments)
            return
        if repeated:
            raise DataError(self._repeat_message())
        self.quality = table_quality(
            groups, self.plan.tables, self.plan.checks, self._uncapped(), self.spec, self.so_far
        )
        analysed = [g for g in groups if g["arm"] > 0]
        self._check_values(analysed)
        by_arm = {g["arm"]: g for g in analysed}
        arms = {arm: self._arm_stats(by_arm[k], log_moments) for k, arm in enumerate(self.arms, start=1)}
        self._check_finite(arms)
        segments: dict[str, dict[str, dict[str, Moments]]] = {}
        for segmentation in self.segments:
            column = f"seg:{segmentation.name}"
            found = segments.setdefault(segmentation.name, {})
            for (segment, k), m in sorted(self._moments(self.variables, [column, "arm"]).items()):
                found.setdefault(str(segment), {})[self.arms[int(k) - 1]] = m
        covariates = tuple(f"cov:{c}" for c in self.covariates)
        self.stats = ExperimentStats(arms, self.caps, covariates, segments, self.own)

    def _arm_pass(self, log_moments: bool) -> list[dict[str, Any]]:
        """One pass over ``unit_values`` grouped by arm (at most K + 3 groups: the holdout is 0, labels the
        spec does not declare -1, unassigned event-table units -2); each group as a dict by alias."""
        check_columns = [check_column(kind, m) for kind, m in self.plan.checks]
        counts = [c for table in self.plan.tables for c in counted_rows(table)]
        values = [quote("cov:" + c) for c in self.covariates]
        values += [quote(c) for c in [*check_columns, *counts]]
        values += [quote("m:" + m.id) for m in self.ordinals]
        columns = {
            "n": "count(*)",
            "no label": "count(*) FILTER (WHERE label IS NULL)",
            "no id": "count(*) FILTER (WHERE unit_id IS NULL)",
        }
        if self.id_range is not None:
            columns["ids"] = "bitstring_agg(unit_id, $id_low, $id_high) FILTER (WHERE arm >= -1)"
        columns |= {c: f"coalesce(sum({quote(c)}), 0)" for c in [*check_columns, *counts]}
        columns |= {
            f"null id:{c}": f"coalesce(sum({quote(c)}) FILTER (WHERE unit_id IS NULL), 0)"
            for table in self.plan.tables
            for c in row_columns(table)[:1]
        }
        columns |= {f"null:{c}": f"count(*) - count({quote('cov:' + c)})" for c in self.covariates}
        columns |= moment_columns(self.layout.moment_names())
        columns |= self._power_columns()
        columns |= {
            f"hist:{m.id}": f"histogram({quote('m:' + m.id)}) FILTER (WHERE {quote('m:' + m.id)} IS NOT NULL)"
            for m in self.ordinals
        }
        if log_moments:
            columns |= self._log_columns()
        columns |= {f"top:{m.id}": f"max({quote('m:' + m.id)}, 2)" for m in self._uncapped()}
        grouped = self._grouped(["arm"], columns, ["label", *values])
        if self.id_range is None:
            sql = self._with() + grouped
        else:  # repeats: rows minus distinct ids over all arms (the union of the arms' bitmaps)
            distinct = f"(SELECT bit_count(bit_or(ids)) FROM g) AS {quote('distinct')}"
            sql = self._with(f"g AS ({grouped})") + f"SELECT g.* EXCLUDE (ids), {distinct} FROM g"
        params = self.plan.params | self._cap_params()
        if self.id_range is not None:
            params |= {"id_low": self.id_range[0], "id_high": self.id_range[1]}
        found = self._run(sql, params)
        aliases = [d[0] for d in found.description]
        return [dict(zip(aliases, row, strict=True)) for row in found.fetchall()]

    def _grouped(self, keys: Sequence[str], columns: Mapping[str, str], extra: Sequence[str] = ()) -> str:
        """``SELECT keys, columns GROUP BY keys`` over the units' capped values and ``extra`` columns."""
        values = [f"{self._capped(name)} AS {quote('m:' + name)}" for name in self.variables]
        inner = ", ".join(["unit_id", *map(quote, keys), *values, *extra])
        aggregates = ", ".join(f"{sql} AS {quote(alias)}" for alias, sql in columns.items())
        keys_sql = ", ".join(map(quote, keys))
        return f"SELECT {keys_sql}, {aggregates} FROM (SELECT {inner} FROM unit_values) GROUP BY {keys_sql}"

    def _with(self, *ctes: str) -> str:
        """``WITH`` clause of a query over ``unit_values`` (defining it when it is not a table)."""
        found = [cte for cte in (self.unit_cte, *ctes) if cte is not None]
        return f"WITH {', '.join(found)} " if found else ""

    def _power_columns(self) -> dict[str, str]:
        """Sums of the monomials of :class:`PowerSums` of each adjusted metric (the ``y``-free ones once
        per set of covariates), with compensated summation (``fsum``): their error then does not grow
        with the number of units."""
        columns = {}
        for alias, monomial in self.layout.power_monomials().items():
            factors = [quote(sql_name(v)) for v, power in monomial for _ in range(power)]
            columns[alias] = f"fsum({' * '.join(factors)})" if factors else "count(*)::DOUBLE"
        return columns

    def _uncapped(self) -> list[AnyMetric]:
        """Continuous and count metrics without capping: their largest values are checked for outliers."""
        return [
            m
            for m in self.spec.metrics
            if isinstance(m, ContinuousMetric | CountMetric)
            and getattr(m, "capping", None) is None
            and SEPARATOR not in m.id
        ]

    def _log_columns(self) -> dict[str, str]:
        """Per continuous metric: units with ``y > 0``, mean and variance of ``ln y`` over them, and
        units with ``y < 0``."""
        columns = {}
        for metric in self.spec.metrics:
            if isinstance(metric, ContinuousMetric):
                value = quote("m:" + metric.id)
                positive = f"FILTER (WHERE {value} > 0)"
                columns[f"log n:{metric.id}"] = f"count(*) {positive}"
                columns[f"log mean:{metric.id}"] = f"avg(ln({value})) {positive}"
                columns[f"log ss:{metric.id}"] = f"var_pop(ln({value})) {positive} * count(*) {positive}"
                columns[f"log negative:{metric.id}"] = f"count(*) FILTER (WHERE {value} < 0)"
        return columns

    def _arm_stats(self, group: Mapping[str, Any], log_moments: bool) -> ArmStats:
        """One arm's statistics from its row of :meth:`_arm_pass`."""
        moments = parse_moments(self.layout.moment_names(), group["n"], group)
        histograms = {
            m.id: Histogram({float(v): int(c) for v, c in (group[f"hist:{m.id}"] or {}).items()})
            for m in self.ordinals
        }
        logs = self.layout.arm_logs(group) if log_moments else {}
        return ArmStats(moments, histograms, logs, self.layout.arm_powers(group))

    # ------------------------------------------------------------------ checks

    def _check_labels(self, groups: Sequence[Mapping[str, Any]]) -> None:
        """No unit without a variant; every label one the spec declares (the labels are looked up only
        when some are not)."""
        spec = self.spec
        column = f"{self._assignments.where}: column '{printable(spec.data.variant_column)}'"
        if not groups:
            raise DataError(f"{self._assignments.where}: has no data rows; no unit is assigned to any arm")
        if any(g["no label"] for g in groups):
            missing = sum(int(g["no label"]) for g in groups)
            raise DataError(f"{column}: {missing:,} unit(s) have no variant (a missing value)")
        if any(g["arm"] == -1 for g in groups):
            undeclared = self._run(
                self._with() + "SELECT label, count(*) AS n FROM unit_values WHERE arm = -1 "
                "GROUP BY label ORDER BY n DESC, label LIMIT 5",
                self.plan.params,
            ).fetchall()
            shown = ", ".join(f"'{printable(label)}' ({n:,} units)" for label, n in undeclared)
            raise DataError(
                f"{column}: label(s) {shown} are not variants of {spec.id}; expected one of "
                f"{quoted(label_lists(spec)[0])} (map raw labels with data.variant_values)"
            )

    def _check_unit_ids(self, groups: Sequence[Mapping[str, Any]]) -> None:
        missing = sum(int(g["no id"]) for g in groups)
        if missing:
            raise DataError(
                f"{self._assignments.where}: {missing:,} row(s) have no "
                f"{printable(self.spec.data.unit_id)} (a missing value)"
            )

    @property
    def _assignments(self) -> Source:
        """The table that holds each unit's arm: the assignments file, else the units file."""
        return self.sources.get("assignments") or self.sources[UNITS_SOURCE]

    def _repeated(self, groups: Sequence[Mapping[str, Any]]) -> int:
        """Rows of assigned units beyond one per distinct unit id."""
        rows = sum(int(g["n"]) for g in groups)
        if self.id_range is not None:
            return rows - int(groups[0]["distinct"] or 0) if groups else 0
        distinct = self._with() + "SELECT count(DISTINCT unit_id) FROM unit_values WHERE arm >= -1"
        row = self._run(distinct, self.plan.params).fetchone()
        return rows - int(row[0]) if row else 0

    def _repeat_message(self) -> str:
        """Which file repeats unit ids: how many ids appear more than once, and the extra rows."""
        spec = self.spec
        found = []
        for name in ("assignments", UNITS_SOURCE):
            source = self.sources.get(name)
            if source is None or (spec.data.row_id and name == UNITS_SOURCE) or not source.unit_id:
                continue
            row = self._run(
                f"SELECT count(*), coalesce(sum(k - 1), 0), min(id) FROM (SELECT {source.unit_id} AS id, "
                f"count(*) AS k FROM {source.sql} GROUP BY 1 HAVING count(*) > 1)",
                source.params,
            ).fetchone()
            if row and row[0]:
                found.append(
                    f"{source.where}: column '{printable(spec.data.unit_id)}': {int(row[0]):,} unit id(s) "
                    f"appear more than once ({int(row[1]):,} extra row(s), e.g. {printable(row[2])!s}); the "
                    f"{name} file needs one row per unit"
                )
        return "; ".join(found) or "repeated unit ids in the assignments"

    def _check_values(self, groups: Sequence[Mapping[str, Any]]) -> None:
        """Every arm has units; no missing (unless the metric's policy allows it), non-finite or
        impossible metric value; no missing or non-finite covariate; no per-unit value that overflows."""
        sizes = {g["arm"]: int(g["n"]) for g in groups}
        empty = [arm for k, arm in enumerate(self.arms, start=1) if k not in sizes]
        if empty:
            raise DataError(f"{self._assignments.where}: arm(s) {', '.join(empty)} have no units (EMPTY_ARM)")
        small = [f"'{arm}' ({sizes[k]})" for k, arm in enumerate(self.arms, start=1) if sizes[k] < 2]
        if small:
            raise DataError(
                f"{self._assignments.where}: arm(s) {', '.join(small)} have fewer than 2 units; every arm "
                "needs at least 2 to estimate a variance (TOO_FEW_UNITS)"
            )
        problems = []
        for kind, metric in self.plan.checks:
            bad = sum(int(g[check_column(kind, metric)]) for g in groups)
            if bad and not (kind == "null" and metric.missing_policy != "error"):
                problems.append(self._value_problem(kind, metric, bad))
        problems += [
            f"{self.sources[UNITS_SOURCE].where}: covariate '{printable(c)}' is missing for {n:,} assigned "
            "unit(s); every analysed unit needs a value"
            for c in self.covariates
            if (n := sum(int(g[f"null:{c}"]) for g in groups))
        ]
        if problems:
            raise DataError(problems)

    def _check_finite(self, arms: Mapping[str, ArmStats]) -> None:
        """Means and co-moments are finite. This is how NaN and infinite values are caught (one in a unit's
        rows makes its sum, then its arm's moments, non-finite; capped and ``max`` metrics are checked row
        by row, since a cap or a maximum can hide them), and values whose squares overflow (|x| beyond
        ~1e154); :meth:`_nonfinite_problem` then counts the culprits."""
        names: set[str] = set()
        for stats in arms.values():
            m = stats.moments
            finite = np.isfinite(m.mean) & np.isfinite(np.diag(m.comoment))  # co-moments of a NaN are NaN
            if finite.all():  # variances fine: an overflowing cross product names both variables
                finite = np.isfinite(m.comoment).all(axis=1)
            names |= {name for name, ok in zip(m.names, finite, strict=True) if not ok}
        if names:
            raise DataError([self._nonfinite_problem(name) for name in sorted(names)])

    def _nonfinite_problem(self, name: str) -> str:
        """Why the moments of ``name`` are not finite: non-finite rows of its column (counted in the rows of
        assigned units in the window), units whose rows add up to infinity, or squares that overflow."""
        rows = self._count(f"NOT isfinite({quote(sql_name(name))})", "unit_values", "arm > 0")
        place = self._place(name)
        if name.startswith("cov:") or metric_source(self.spec.metric(name)) == UNITS_SOURCE:
            if rows:
                return f"{place}: not finite (NaN or infinite) for {rows:,} unit(s)"
        elif (column := metric_column(self.spec.metric(name))) is not None:
            source = self.sources[str(metric_source(self.spec.metric(name)))]
            window = self._in_window() if self._windowed(source) else "true"
            assigned = f"{source.unit_id} IN (SELECT unit_id FROM unit_values WHERE arm > 0)"
            bad = f"NOT isfinite(CAST({quote(column)} AS DOUBLE))"
            found = self._count(bad, source.sql, f"{window} AND {assigned}", source.params)
            if found:
                return f"{place}: {found:,} row(s) are not finite (NaN or infinite)"
        if rows:
            return (
                f"{place}: {rows:,} unit(s) have a value that is not finite once their rows are added up "
                "(the values are too large for a sum: check the column's unit)"
            )
        return (
            f"{place}: values so large that their sums of squares overflow; check the column's unit (a "
            "statistic computed from them would be meaningless)"
        )

    def _count(self, predicate: str, table: str, where: str, params: Mapping[str, Any] | None = None) -> int:
        """Rows of ``table`` matching ``predicate`` (diagnostics of the error path, not the main pass)."""
        sql = self._with() + f"SELECT count(*) FILTER (WHERE {predicate}) FROM {table} WHERE {where}"
        row = self._run(sql, {**self.plan.params, **(params or {})}).fetchone()
        return int(row[0]) if row else 0

    def _place(self, name: str) -> str:
        """Where a moment variable comes from: ``file: column 'amount' (metric 'revenue')``."""
        if name.startswith("cov:"):
            return f"{self.sources[UNITS_SOURCE].where}: covariate '{printable(name[4:])}'"
        metric = self.spec.metric(name)
        source = self.sources[metric_source(metric) or ""]
        column = metric_column(metric)
        rows = f"column '{printable(column)}'" if column is not None else "rows"
        return f"{source.where}: {rows} (metric '{name}')"

    def _value_problem(self, kind: str, metric: AnyMetric, rows: int) -> str:
        source = self.sources[metric_source(metric) or ""]
        column = printable(metric_column(metric) or "")
        what = CHECKS[kind] or bad_value_meaning(metric)
        accepted = "zero" if metric_source(metric) == UNITS_SOURCE else "zero or drop"
        hint = (
            f"; set the metric's missing: {accepted} to accept them"
            if kind == "null" and not isinstance(metric, OrdinalMetric)
            else ""
        )
        unit = "unit(s)" if metric_source(metric) == UNITS_SOURCE else "row(s)"
        return f"{source.where}: {rows:,} {unit} of column '{column}' are {what} (metric '{metric.id}'){hint}"

    def _raise_on_units_with_two_variants(self) -> None:
        source = self.sources["assignments"]
        column = quote(self.spec.data.variant_column)
        repeated = f"GROUP BY 1 HAVING count(DISTINCT {column}) > 1 LIMIT 3"
        example = self._run(f"SELECT {source.unit_id} FROM {source.sql} {repeated}", source.params).fetchall()
        if example:
            ids = [r[0] for r in example]
            raise DataError(f"{source.where}: units assigned to two variants, e.g. unit_id {printable(ids)}")

    # ------------------------------------------------------------------ other passes

    def daily_curve(self, metric: AnyMetric) -> dict[str, Any] | None:
        """The metric's cumulative mean per randomised unit by day (:mod:`promolab.aggregate.daily`);
        None when it has no event table with the ``data.timestamp`` column, or is not cumulative."""
        column, table = self.spec.data.timestamp, metric_source(metric)
        if column is None or table in (None, UNITS_SOURCE) or not daily.cumulative(metric):
            return None
        source = self.sources[str(table)]
        if column not in source.columns:
            return None
        day = self._day()
        window = _both(f"{day} BETWEEN $start AND $stop", self._row_filter(metric, self.plan.params))
        rows = daily.rows_sql(metric, source, self._day(), str(window))
        arms = "SELECT DISTINCT unit_id, arm FROM unit_values WHERE arm > 0"
        sums = self._run(self._with() + daily.sums_sql(rows, arms), self.plan.params).fetchall()
        order = [self.spec.reference.id, *(t.id for t in self.spec.treatments)]
        position = {arm: k for k, arm in enumerate(order, start=1)}
        sums = [(day, position[self.arms[int(k) - 1]], *values) for day, k, *values in sums]
        sizes = {arm: self.stats.arms[arm].moments.n for arm in self.arms}
        confidence = self.spec.analysis.confidence
        return daily.curve(metric.id, sums, order, sizes, confidence, self.spec.end)

    def _moments(self, names: Sequence[str], keys: Sequence[str]) -> dict[tuple[Any, ...], Moments]:
        """Moments of the (capped) ``names`` in each group of ``keys`` (assigned arms only)."""
        extra = [quote(sql_name(n)) for n in names if n not in self.variables]
        grouped = self._grouped(keys, {"n": "count(*)", **moment_columns(names)}, extra)
        found = self._run(
            self._with(f"g AS ({grouped})") + "SELECT * FROM g WHERE arm > 0",
            self.plan.params | self._cap_params(),
        )
        aliases = [d[0] for d in found.description]
        groups = [dict(zip(aliases, row, strict=True)) for row in found.fetchall()]
        return {tuple(g[k] for k in keys): parse_moments(names, g["n"], g) for g in groups}

    def residual_moments(
        self,
        metric: str,
        covariates: Sequence[str],
        arm_means: Mapping[str, Sequence[float]],
        slopes: Sequence[float],
        centre: Sequence[float],
    ) -> dict[str, ResidualMoments]:
        """Second pass for HC-robust regression adjustment of ``metric``, per arm.

        With ``e = (y - ybar_k) - b'(x - xbar_k)`` (``arm_means[arm] = [ybar_k, *xbar_k]``, ``b`` the
        slopes) and ``u = x - centre``: ``sum e^2``, ``sum e^2 u`` and ``sum e^2 u u'`` of each arm.
        """
        if not self.materialised:  # the next metrics' passes then read the table, not the sources
            self._materialise()
        covs = [quote(sql_name(c)) for c in covariates]
        p = len(covs)
        params: dict[str, Any] = {"ybar": [float(arm_means[a][0]) for a in self.arms]}
        fitted = []
        for j, cov in enumerate(covs):
            params[f"xbar{j}"] = [float(arm_means[a][1 + j]) for a in self.arms]
            params[f"b{j}"] = float(slopes[j])
            params[f"c{j}"] = float(centre[j])
            fitted.append(f"$b{j} * ({cov} - list_extract($xbar{j}, arm))")
        e = f"(({self._capped(metric)} - list_extract($ybar, arm)) - ({' + '.join(fitted) or '0'}))"
        u = [f"({cov} - $c{j})" for j, cov in enumerate(covs)]
        sums = [f"sum({e} * {e})"]
        sums += [f"sum({e} * {e} * {u[j]})" for j in range(p)]
        sums += [f"sum({e} * {e} * {u[j]} * {u[k]})" for j in range(p) for k in range(j, p)]
        rows = self._run(
            self._with() + f"SELECT arm, {', '.join(sums)} FROM unit_values WHERE arm > 0 GROUP BY arm",
            self.plan.params | params | self._cap_params(),
        ).fetchall()
        result = {}
        for row in rows:
            e2_uu = np.zeros((p, p))
            k = 2 + p
            for j in range(p):
                for m in range(j, p):
                    e2_uu[j, m] = e2_uu[m, j] = float(row[k])
                    k += 1
            result[self.arms[int(row[0]) - 1]] = ResidualMoments(
                float(row[1]), np.array(row[2 : 2 + p], dtype=float), e2_uu
            )
        return result

    # ------------------------------------------------------------------ helpers

    def _run(self, sql: str, params: Mapping[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        import duckdb

        used = {k: v for k, v in (params or {}).items() if re.search(rf"\${k}\b", sql)}
        try:
            return self.con.execute(sql, used or None)
        except duckdb.Error as error:
            raise DataError(self._explain(error)) from None

    def _explain(self, error: Exception) -> str:
        """The failing input of a query: each source is read in full on its own to find the file whose
        rows cannot be read (a value past the rows whose types were sniffed, a ragged or truncated CSV,
        a corrupt Parquet file); else the first line of DuckDB's message."""
        for source in self.sources.values():
            try:
                self.con.execute(
                    f"SELECT count(COLUMNS(*)) FROM {source.sql}", source.params or None
                ).fetchall()
            except Exception as failure:  # duckdb.Error or an OS error of the reader
                return f"{source.where}: cannot be read in full: {read_failure(failure)}"
        hint = ""
        if "Out of Memory" in str(error):
            hint = " (raise PROMOLAB_MEMORY_LIMIT, or free PROMOLAB_SPILL_DIR's disk)"
        return f"{self.spec.id}: the data could not be aggregated: {first_line(error)}{hint}"

    def _capped(self, name: str) -> str:
        column = quote("m:" + name)
        return f"LEAST({column}, $cap{self.variables.index(name)})" if name in self.caps else column

    def _cap_params(self) -> dict[str, float]:
        return {f"cap{self.variables.index(name)}": value for name, value in self.caps.items()}

    def _caps(self) -> dict[str, float]:
        caps: dict[str, float] = {}
        for metric in self.spec.metrics:
            capping = getattr(metric, "capping", None)
            if capping is None:
                continue
            if capping.absolute is not None:
                caps[metric.id] = float(capping.absolute)
            else:
                row = self._run(
                    self._with()
                    + f"SELECT quantile_cont({quote('m:' + metric.id)}, $q) FROM unit_values WHERE arm > 0",
                    self.plan.params | {"q": capping.percentile},
                ).fetchone()
                caps[metric.id] = float(row[0]) if row and row[0] is not None else 0.0
        return caps


# ---------------------------------------------------------------------- SQL pieces (no user strings)


def _metrics_by_table(spec: ExperimentSpec) -> dict[str, list[SourcedMetric]]:
    grouped: dict[str, list[SourcedMetric]] = {}
    for metric in spec.metrics:
        if not isinstance(metric, RatioMetric):
            grouped.setdefault(metric.source, []).append(metric)
    return dict(sorted(grouped.items()))


def _both(first: str | None, second: str | None) -> str | None:
    """Two optional row predicates, joined with AND."""
    if first is None or second is None:
        return first or second
    return f"({first}) AND ({second})"


def _bitmap_range(row: tuple[Any, ...] | None) -> tuple[int, int] | None:
    """``(min, max)`` of integer unit ids when a bitmap of the range fits in ``_MAX_BITMAP_BITS``."""
    if row is None or row[0] is None:
        return None
    low, high = int(row[0]), int(row[1])
    return (low, high) if high - low < _MAX_BITMAP_BITS else None
