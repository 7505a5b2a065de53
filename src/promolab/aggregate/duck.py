"""DuckDB aggregation: event rows -> one value per unit and metric -> per-arm sufficient statistics.

Per-unit values (one pass over each event table, ``GROUP BY`` unit):

- binary: 1 when the unit has a row in ``source`` (with ``column``: a row where it is true), else 0;
- continuous: ``agg`` (sum, mean, max) of ``column`` over the unit's rows, 0 without rows;
- count: number of rows (with ``column``: its sum), 0 without rows;
- ordinal: mean of the unit's responses; units without a response are missing, not 0;
- ratio: no value of its own; the analysis uses its numerator's and denominator's values.
Metrics with ``source: units`` read the units file's column directly. The per-unit values are reduced
to :class:`~promolab.aggregate.moments.ExperimentStats` in one query with the data checks when
possible; they are materialised as a table only when more passes are needed (see
:class:`DuckAggregation`).

Identifiers from the spec are quoted; file paths, labels and numbers are bound as parameters: no SQL
is assembled from user strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promolab.aggregate.moments import (
    MAX_POWER_COVARIATES,
    ArmStats,
    ExperimentStats,
    Histogram,
    LogMoments,
    Moments,
    PowerSums,
    ResidualMoments,
    power_exponents,
)
from promolab.errors import DataError
from promolab.sources import require_file
from promolab.spec import ExperimentSpec
from promolab.spec.models import (
    AnyMetric,
    BinaryMetric,
    ContinuousMetric,
    CountMetric,
    OrdinalMetric,
    RatioMetric,
    Rfm,
    Segmentation,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

HOLDOUT_LABEL = "holdout"
_SQL_AGG = {"sum": "sum", "mean": "avg", "max": "max"}
_SIGNED = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
_INTEGER_TYPES = (*_SIGNED, *(f"U{t}" for t in _SIGNED))
_NUMERIC_TYPES = (*_INTEGER_TYPES, "FLOAT", "DOUBLE", "DECIMAL", "BOOLEAN")
_MAX_BITMAP_BITS = 1 << 27  # 16 MB per label: unit ids spread wider are checked by count(DISTINCT)


def quote(identifier: str) -> str:
    """A SQL identifier, double-quoted with inner quotes doubled."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class _Source:
    """One input table: its SQL (a table function with a bound path, or a registered view)."""

    name: str
    sql: str
    where: str
    columns: dict[str, str]
    params: dict[str, Any]
    kind: str  # "parquet", "csv" or "frame"


def aggregate(
    spec: ExperimentSpec,
    paths: Mapping[str, Path] | None = None,
    frames: Mapping[str, pd.DataFrame] | None = None,
    covariates: Sequence[str] = (),
    segments: Sequence[Segmentation] = (),
    log_moments: bool = False,
    daily: bool = False,
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

    Raises:
        DataError: missing files or columns, wrong types, undeclared variants, units with two
            variants, empty arms, negative counts, ordinal scores outside the levels.
    """
    import duckdb

    # No progress bar: DuckDB draws it on stdout, which carries promolab's tables and JSON.
    con = duckdb.connect(config={"preserve_insertion_order": False})
    con.execute("SET enable_progress_bar = false")
    sources = _open_sources(con, spec, paths or {}, frames or {}, segments)
    _check_columns(spec, sources, covariates, segments)
    aggregation = DuckAggregation(spec, con, sources, covariates, segments)
    aggregation.build_unit_table(distinct_assignments=False, materialise=daily)
    aggregation.compute_stats(log_moments)
    if daily:
        aggregation.daily = aggregation.daily_curve(spec.metric(spec.primary))
    return aggregation


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
        sources: Mapping[str, _Source],
        covariates: Sequence[str],
        segments: Sequence[Segmentation] = (),
    ) -> None:
        self.spec, self.con, self.sources = spec, con, sources
        self.covariates = tuple(covariates)
        self.segments = tuple(segments)
        self.arms = [v.id for v in spec.variants]
        valued = [m for m in spec.metrics if not isinstance(m, RatioMetric)]
        self.variables = [m.id for m in valued if not isinstance(m, OrdinalMetric)]
        self.ordinals = [m for m in valued if isinstance(m, OrdinalMetric)]
        self.caps: dict[str, float] = {}
        self.stats = ExperimentStats({})
        self.daily: dict[str, Any] | None = None
        self.distinct_assignments = False
        self.materialised = False
        self.unit_query = ""  # the SELECT of unit_values
        self.unit_cte: str | None = None  # unit_values as a CTE when not materialised
        self.params: dict[str, Any] = {}
        self.id_range: tuple[int, int] | None = None

    def build_unit_table(self, distinct_assignments: bool, materialise: bool = False) -> None:
        """Create ``unit_values``: unit, arm (1-based; 0 = holdout; -1 = undeclared), label, values,
        checks, covariates, segments; a common table expression of the next queries when one pass
        suffices, else a temporary table.

        Assignment rows are joined as they are (fast); with ``distinct_assignments`` repeated rows of a
        unit with the same variant (an exposure log) are collapsed first.
        """
        spec, sources = self.spec, self.sources
        units_columns = [
            *(c for m in spec.metrics if _source(m) == "units" and (c := _column(m))),
            *self.covariates,
            *(s.column for s in self.segments if s.column is not None),
        ]
        ctes: list[str] = []
        if "units" in sources:
            with_variant = "assignments" not in sources
            ctes.append(_units_cte(spec, sources["units"], units_columns, with_variant))
        distinct = "DISTINCT " if distinct_assignments else ""
        ctes.append(
            f"assign AS (SELECT {distinct}{self._assign_unit_id()} AS unit_id, "
            f"CAST({quote(spec.data.variant_column)} AS VARCHAR) AS label FROM {self._assign_from()})"
        )
        joins, values = ["assign a"], []
        for t, (table, metrics) in enumerate(_metrics_by_table(spec).items()):
            if table == "units":
                values += [_units_value(m) for m in metrics]
                values += [
                    f"CAST({bad} AS INTEGER) AS {quote('check:' + m.id)}"
                    for m in metrics
                    if (bad := _bad_value(m, "u."))
                ]
                continue
            alias = f"t{t}"
            aggregates = ["1 AS present", *(f"{_unit_aggregate(m)} AS {quote(m.id)}" for m in metrics)]
            aggregates += [
                f"{check} AS {quote('check:' + m.id)}" for m in metrics if (check := _row_check(m))
            ]
            ctes.append(
                f"{alias} AS (SELECT {quote(spec.data.unit_id)} AS unit_id, {', '.join(aggregates)} "
                f"FROM {sources[table].sql} GROUP BY 1)"
            )
            joins.append(f"LEFT JOIN {alias} USING (unit_id)")
            values += [_table_value(m, alias) for m in metrics]
            values += [f"{alias}.{quote('check:' + m.id)}" for m in metrics if _row_check(m)]
        if "units" in sources:
            joins.append("LEFT JOIN u USING (unit_id)")
        values += [f"CAST(u.{quote(c)} AS DOUBLE) AS {quote('cov:' + c)}" for c in self.covariates]
        for k, segmentation in enumerate(self.segments):
            label = quote("seg:" + segmentation.name)
            if segmentation.rfm is not None:
                ctes.append(_rfm_cte(f"rfm{k}", segmentation.rfm, sources[segmentation.rfm.source], spec))
                joins.append(f"LEFT JOIN rfm{k} USING (unit_id)")
                values.append(f"coalesce(rfm{k}.segment, 'new') AS {label}")
            else:
                values.append(
                    f"coalesce(CAST(u.{quote(str(segmentation.column))} AS VARCHAR), '') AS {label}"
                )
        arm = "coalesce(list_extract($label_arms, list_position($labels, a.label)), -1)"
        select = ", ".join(["a.unit_id", f"{arm} AS arm", "a.label", *values])
        labels, label_arms = _label_lists(spec)
        self.params = {"labels": labels, "label_arms": label_arms, "start": spec.start}
        self.params |= _source_params(sources)
        self.distinct_assignments = distinct_assignments
        self.unit_query = f"WITH {', '.join(ctes)} SELECT {select} FROM {' '.join(joins)}"
        self.unit_cte = None
        self.materialised = materialise or self._needs_table()
        self.id_range = None if self.materialised else self._source_id_range()
        if self.materialised or self.id_range is None:
            self._materialise()
        else:
            self.unit_cte = f"unit_values AS ({self.unit_query})"

    def _materialise(self) -> None:
        """Store ``unit_values`` as a temporary table (later queries read it instead of the sources)."""
        self._run(f"CREATE OR REPLACE TEMP TABLE unit_values AS {self.unit_query}", self.params)
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
        many = len(self.covariates) > MAX_POWER_COVARIATES
        return percentile or bool(self.segments) or self.spec.data.row_id or many

    def _source_id_range(self) -> tuple[int, int] | None:
        """Smallest and largest integer unit id of the assignments, when a bitmap of them is small and
        the range costs no scan (Parquet statistics, an in-memory frame); else None."""
        source = self.sources.get("assignments") or self.sources["units"]
        column = self.spec.data.unit_id
        if source.kind == "csv" or not source.columns.get(column, "").startswith(_INTEGER_TYPES):
            return None
        found = self._run(
            f"SELECT min({quote(column)}), max({quote(column)}) FROM {source.sql}", source.params
        )
        return _bitmap_range(found.fetchone())

    def _table_id_range(self) -> tuple[int, int] | None:
        kind = self._run("SELECT typeof(unit_id) FROM unit_values LIMIT 1").fetchone()
        if kind is None or not str(kind[0]).startswith(_INTEGER_TYPES):
            return None
        return _bitmap_range(self._run("SELECT min(unit_id), max(unit_id) FROM unit_values").fetchone())

    def _assign_from(self) -> str:
        return self.sources["assignments"].sql if "assignments" in self.sources else "u"

    def _assign_unit_id(self) -> str:
        return quote(self.spec.data.unit_id) if "assignments" in self.sources else "unit_id"

    def compute_stats(self, log_moments: bool = False) -> None:
        """Capping thresholds, then one pass over the units for the checks and every arm's moments,
        power sums (regression adjustment), ordinal histograms and log-moments; per-segment moments.

        Raises:
            DataError: see :func:`aggregate`; repeated assignment rows of one variant are collapsed
                (the units are rebuilt once with distinct assignments) before repeats are an error.
        """
        self.caps = self._caps()
        groups = self._arm_pass(log_moments)
        self._check_labels(groups)
        self._check_unit_ids(groups)
        repeated = self._repeated(groups)
        if repeated and "assignments" in self.sources and not self.distinct_assignments:
            self._raise_on_units_with_two_variants()
            self.build_unit_table(distinct_assignments=True, materialise=self.materialised)
            self.compute_stats(log_moments)
            return
        if repeated:
            raise DataError(
                f"{self.sources['units'].where}: {repeated:,} repeated unit id(s); "
                "the units file needs one row per unit"
            )
        self._check_values(groups)
        by_arm = {g["arm"]: g for g in groups}
        arms = {arm: self._arm_stats(by_arm[k], log_moments) for k, arm in enumerate(self.arms, start=1)}
        segments: dict[str, dict[str, dict[str, Moments]]] = {}
        for segmentation in self.segments:
            column = f"seg:{segmentation.name}"
            found = segments.setdefault(segmentation.name, {})
            for (segment, k), m in sorted(self._moments(self.variables, [column, "arm"]).items()):
                found.setdefault(str(segment), {})[self.arms[int(k) - 1]] = m
        covariates = tuple(f"cov:{c}" for c in self.covariates)
        self.stats = ExperimentStats(arms, self.caps, covariates, segments)

    def _arm_pass(self, log_moments: bool) -> list[dict[str, Any]]:
        """One pass over ``unit_values`` grouped by arm (at most K + 2 groups: the holdout is 0, labels the
        spec does not declare -1); each group as a dict by column alias."""
        values = [quote("cov:" + c) for c in self.covariates]
        values += [quote("check:" + m.id) for m in self._checked]
        values += [quote(m.id) for m in self.ordinals]
        columns = {
            "n": "count(*)",
            "no label": "count(*) FILTER (WHERE label IS NULL)",
            "no id": "count(*) FILTER (WHERE unit_id IS NULL)",
        }
        if self.id_range is not None:
            columns["ids"] = "bitstring_agg(unit_id, $id_low, $id_high)"
        columns |= {f"check:{m.id}": f"coalesce(sum({quote('check:' + m.id)}), 0)" for m in self._checked}
        columns |= {
            f"null:{c}": f"count(*) FILTER (WHERE {quote('cov:' + c)} IS NULL)" for c in self.covariates
        }
        columns |= _moment_columns(self._moment_names())
        columns |= self._power_columns()
        columns |= {
            f"hist:{m.id}": f"histogram({quote(m.id)}) FILTER (WHERE {quote(m.id)} IS NOT NULL)"
            for m in self.ordinals
        }
        if log_moments:
            columns |= self._log_columns()
        grouped = self._grouped(["arm"], columns, ["label", *values])
        if self.id_range is None:
            sql = self._with() + grouped
        else:  # repeats: rows minus distinct ids over all arms (the union of the arms' bitmaps)
            distinct = f"(SELECT bit_count(bit_or(ids)) FROM g) AS {quote('distinct')}"
            sql = self._with(f"g AS ({grouped})") + f"SELECT g.* EXCLUDE (ids), {distinct} FROM g"
        params = self.params | self._cap_params()
        if self.id_range is not None:
            params |= {"id_low": self.id_range[0], "id_high": self.id_range[1]}
        found = self._run(sql, params)
        aliases = [d[0] for d in found.description]
        return [dict(zip(aliases, row, strict=True)) for row in found.fetchall()]

    def _grouped(self, keys: Sequence[str], columns: Mapping[str, str], extra: Sequence[str] = ()) -> str:
        """``SELECT keys, columns GROUP BY keys`` over the units' capped values and ``extra`` columns."""
        values = [f"{self._capped(name)} AS {quote(name)}" for name in self.variables]
        inner = ", ".join(["unit_id", *map(quote, keys), *values, *extra])
        aggregates = ", ".join(f"{sql} AS {quote(alias)}" for alias, sql in columns.items())
        keys_sql = ", ".join(map(quote, keys))
        return f"SELECT {keys_sql}, {aggregates} FROM (SELECT {inner} FROM unit_values) GROUP BY {keys_sql}"

    def _with(self, *ctes: str) -> str:
        """``WITH`` clause of a query over ``unit_values`` (defining it when it is not a table)."""
        found = [cte for cte in (self.unit_cte, *ctes) if cte is not None]
        return f"WITH {', '.join(found)} " if found else ""

    def _moment_names(self) -> list[str]:
        return [*self.variables, *(f"cov:{c}" for c in self.covariates)]

    def _power_columns(self) -> dict[str, str]:
        """Sums of the monomials of :class:`PowerSums` (the ``y``-free ones once for all metrics), with
        compensated summation (``fsum``): their error then does not grow with the number of units."""
        if not self._with_powers:
            return {}
        covs = [quote("cov:" + c) for c in self.covariates]
        columns = {}
        for exponent in power_exponents(len(covs)):
            for name in self.variables if exponent[0] else [""]:
                factors = [quote(name)] * exponent[0]
                factors += [c for c, power in zip(covs, exponent[1:], strict=True) for _ in range(power)]
                alias = f"pow:{name}:{''.join(map(str, exponent))}"
                columns[alias] = f"fsum({' * '.join(factors)})" if factors else "count(*)::DOUBLE"
        return columns

    @property
    def _with_powers(self) -> bool:
        return 0 < len(self.covariates) <= MAX_POWER_COVARIATES

    def _log_columns(self) -> dict[str, str]:
        """Per continuous metric: units with ``y > 0``, mean and variance of ``ln y`` over them, and
        units with ``y < 0``."""
        columns = {}
        for metric in self.spec.metrics:
            if isinstance(metric, ContinuousMetric):
                value = quote(metric.id)
                positive = f"FILTER (WHERE {value} > 0)"
                columns[f"log n:{metric.id}"] = f"count(*) {positive}"
                columns[f"log mean:{metric.id}"] = f"avg(ln({value})) {positive}"
                columns[f"log var:{metric.id}"] = f"var_pop(ln({value})) {positive}"
                columns[f"log negative:{metric.id}"] = f"count(*) FILTER (WHERE {value} < 0)"
        return columns

    def _arm_stats(self, group: Mapping[str, Any], log_moments: bool) -> ArmStats:
        """One arm's statistics from its row of :meth:`_arm_pass`."""
        moments = _parse_moments(self._moment_names(), group["n"], group)
        histograms = {
            m.id: Histogram({float(v): int(c) for v, c in (group[f"hist:{m.id}"] or {}).items()})
            for m in self.ordinals
        }
        logs = {}
        if log_moments:
            for metric in self.spec.metrics:
                if isinstance(metric, ContinuousMetric):
                    k = int(group[f"log n:{metric.id}"])
                    mean, var = group[f"log mean:{metric.id}"] or 0.0, group[f"log var:{metric.id}"] or 0.0
                    positive = Moments(("log",), k, np.array([mean]), np.array([[var * k]]))
                    logs[metric.id] = LogMoments(positive, int(group[f"log negative:{metric.id}"]))
        powers = {}
        if self._with_powers:
            names = tuple(f"cov:{c}" for c in self.covariates)
            for name in self.variables:
                sums = [
                    group[f"pow:{name if e[0] else ''}:{''.join(map(str, e))}"]
                    for e in power_exponents(len(names))
                ]
                powers[name] = PowerSums((name, *names), np.array(sums, dtype=float))
        return ArmStats(moments, histograms, logs, powers)

    def _check_labels(self, groups: Sequence[Mapping[str, Any]]) -> None:
        """No unit without a variant; every label one the spec declares (the labels are looked up only
        when some are not)."""
        spec = self.spec
        column = spec.data.variant_column
        if any(g["no label"] for g in groups):
            raise DataError(f"{column}: some units have no variant (a missing value in the assignments)")
        if any(g["arm"] == -1 for g in groups):
            undeclared = self._run(
                self._with() + "SELECT label, count(*) AS n FROM unit_values WHERE arm = -1 "
                "GROUP BY label ORDER BY n DESC, label LIMIT 5",
                self.params,
            ).fetchall()
            shown = ", ".join(f"'{label}' ({n:,} units)" for label, n in undeclared)
            raise DataError(
                f"{column}: label(s) {shown} are not variants of {spec.id}; expected one of "
                f"{', '.join(map(repr, _label_lists(spec)[0]))} (map raw labels with data.variant_values)"
            )

    def _check_unit_ids(self, groups: Sequence[Mapping[str, Any]]) -> None:
        missing = sum(int(g["no id"]) for g in groups)
        if missing:
            where = (self.sources.get("assignments") or self.sources["units"]).where
            raise DataError(f"{where}: {missing:,} row(s) have no {self.spec.data.unit_id} (a missing value)")

    def _repeated(self, groups: Sequence[Mapping[str, Any]]) -> int:
        """Rows of ``unit_values`` beyond one per distinct unit id."""
        rows = sum(int(g["n"]) for g in groups)
        if self.id_range is not None:
            return rows - int(groups[0]["distinct"] or 0) if groups else 0
        distinct = self._with() + "SELECT count(DISTINCT unit_id) FROM unit_values"
        row = self._run(distinct, self.params).fetchone()
        return rows - int(row[0]) if row else 0

    def _check_values(self, groups: Sequence[Mapping[str, Any]]) -> None:
        """Every arm has units; no impossible metric value; no missing covariate."""
        present = {g["arm"] for g in groups}
        empty = [arm for k, arm in enumerate(self.arms, start=1) if k not in present]
        if empty:
            raise DataError(f"arm(s) {', '.join(empty)} have no units in the data (EMPTY_ARM)")
        problems = [
            f"{self.sources[_source(metric) or ''].where}: {bad:,} row(s) of column '{_column(metric)}' are "
            f"{_row_check_meaning(metric)} (metric '{metric.id}')"
            for metric in self._checked
            if (bad := sum(int(g[f"check:{metric.id}"]) for g in groups))
        ]
        problems += [
            f"units: covariate '{c}' is missing for {n:,} assigned unit(s); every analysed unit needs a value"
            for c in self.covariates
            if (n := sum(int(g[f"null:{c}"]) for g in groups))
        ]
        if problems:
            raise DataError("\n".join(problems))

    @property
    def _checked(self) -> list[AnyMetric]:
        """Metrics with a per-row value check (a ``check:<id>`` column in ``unit_values``)."""
        return [m for m in self.spec.metrics if _bad_value(m) is not None]

    def _raise_on_units_with_two_variants(self) -> None:
        column = quote(self.spec.data.variant_column)
        example = self._run(
            f"SELECT {self._assign_unit_id()} FROM {self._assign_from()} GROUP BY 1 "
            f"HAVING count(DISTINCT {column}) > 1 LIMIT 3",
            _source_params(self.sources),
        ).fetchall()
        if example:
            ids = [r[0] for r in example]
            raise DataError(f"assignments: units assigned to two variants, e.g. unit_id {ids}")

    def daily_curve(self, metric: AnyMetric) -> dict[str, Any] | None:
        """Cumulative mean per randomised unit of ``metric`` at the end of each day, per arm.

        Day ``d`` counts the metric's rows up to ``d``: the value summed (count, continuous ``sum``), or
        units with a first qualifying row by ``d`` (binary). Uncapped. None when the metric has no
        event table with the ``data.timestamp`` column, or is not cumulative (``mean``/``max``).
        """
        column, table = self.spec.data.timestamp, _source(metric)
        cumulative = isinstance(metric, BinaryMetric | CountMetric) or (
            isinstance(metric, ContinuousMetric) and metric.agg == "sum"
        )
        if column is None or table in (None, "units") or not cumulative:
            return None
        source = self.sources[str(table)]
        if column not in source.columns:
            return None
        day = f"CAST({quote(column)} AS DATE)"
        unit = quote(self.spec.data.unit_id)
        raw = _column(metric)
        if isinstance(metric, BinaryMetric):
            hit = f"WHERE CAST({quote(raw)} AS BOOLEAN)" if raw else ""
            first = f"min({day}) AS day"
            rows = f"SELECT {unit} AS unit_id, {first}, 1.0 AS value FROM {source.sql} {hit} GROUP BY 1"
        else:
            value = f"CAST({quote(raw)} AS DOUBLE)" if raw else "1.0"
            rows = f"SELECT {unit} AS unit_id, {day} AS day, {value} AS value FROM {source.sql}"
        arms = "arms AS (SELECT DISTINCT unit_id, arm FROM unit_values WHERE arm > 0)"
        found = self._run(
            self._with(f"r AS ({rows})", arms) + "SELECT r.day, arms.arm, sum(r.value) FROM r "
            "JOIN arms USING (unit_id) WHERE r.day IS NOT NULL GROUP BY ALL ORDER BY 1",
            self.params,
        ).fetchall()
        days = sorted({r[0] for r in found})
        totals = {arm: [0.0] * len(days) for arm in self.arms}
        for when, k, total in found:
            totals[self.arms[int(k) - 1]][days.index(when)] = float(total)
        sizes = {arm: self.stats.arms[arm].moments.n for arm in self.arms}
        return {
            "metric": metric.id,
            "days": [d.isoformat() for d in days],
            "arms": {arm: (np.cumsum(t) / sizes[arm]).tolist() for arm, t in totals.items()},
        }

    def _moments(self, names: Sequence[str], keys: Sequence[str]) -> dict[tuple[Any, ...], Moments]:
        """Moments of the (capped) ``names`` in each group of ``keys`` (assigned arms only)."""
        extra = [quote(n) for n in names if n not in self.variables]
        grouped = self._grouped(keys, {"n": "count(*)", **_moment_columns(names)}, extra)
        found = self._run(
            self._with(f"g AS ({grouped})") + "SELECT * FROM g WHERE arm > 0",
            self.params | self._cap_params(),
        )
        aliases = [d[0] for d in found.description]
        groups = [dict(zip(aliases, row, strict=True)) for row in found.fetchall()]
        return {tuple(g[k] for k in keys): _parse_moments(names, g["n"], g) for g in groups}

    def residual_moments(
        self,
        metric: str,
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
        p = len(self.covariates)
        covs = [quote(f"cov:{c}") for c in self.covariates]
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
            self.params | params | self._cap_params(),
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
            raise DataError(
                f"{self.spec.id}: the data could not be aggregated: {_first_line(error)}"
            ) from None

    def _capped(self, name: str) -> str:
        column = quote(name)
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
                    + f"SELECT quantile_cont({quote(metric.id)}, $q) FROM unit_values WHERE arm > 0",
                    self.params | {"q": capping.percentile},
                ).fetchone()
                caps[metric.id] = float(row[0]) if row and row[0] is not None else 0.0
        return caps


# ---------------------------------------------------------------------- SQL pieces (no user strings)


def _source(metric: AnyMetric) -> str | None:
    """The table a metric reads (None for ratio metrics)."""
    return None if isinstance(metric, RatioMetric) else metric.source


def _column(metric: AnyMetric) -> str | None:
    """The column a metric reads, if any."""
    return None if isinstance(metric, RatioMetric) else metric.column


def _metrics_by_table(spec: ExperimentSpec) -> dict[str, list[AnyMetric]]:
    grouped: dict[str, list[AnyMetric]] = {}
    for metric in spec.metrics:
        source = _source(metric)
        if source is not None:
            grouped.setdefault(source, []).append(metric)
    return dict(sorted(grouped.items()))


def _unit_aggregate(metric: AnyMetric) -> str:
    """Aggregate of one unit's rows in an event table."""
    column = quote(raw) if (raw := _column(metric)) else None
    match metric:
        case BinaryMetric():
            return f"max(CAST({column} AS BOOLEAN)::INTEGER)" if column else "1"
        case ContinuousMetric():
            return f"{_SQL_AGG[metric.agg]}(CAST({column} AS DOUBLE))"
        case CountMetric():
            return f"sum(CAST({column} AS DOUBLE))" if column else "count(*)"
        case OrdinalMetric():
            return f"avg(CAST({column} AS DOUBLE))"
    raise AssertionError(metric)


def _bad_value(metric: AnyMetric, prefix: str = "") -> str | None:
    """Predicate of an impossible value: a negative count, an ordinal score outside the levels."""
    match metric:
        case CountMetric(column=str(column)):
            return f"{prefix}{quote(column)} < 0"
        case OrdinalMetric():
            levels = ", ".join(str(level) for level in metric.levels)  # ints validated by the spec
            return f"{prefix}{quote(metric.column)} NOT IN ({levels})"
    return None


def _row_check(metric: AnyMetric) -> str | None:
    """Per-unit count of impossible rows of an event table."""
    bad = _bad_value(metric)
    return None if bad is None else f"count(*) FILTER (WHERE {bad})"


def _row_check_meaning(metric: AnyMetric) -> str:
    if isinstance(metric, OrdinalMetric):
        return f"not one of the levels {list(metric.levels)}"
    return "negative"


def _table_value(metric: AnyMetric, alias: str) -> str:
    value = f"{alias}.{quote(metric.id)}"
    if isinstance(metric, OrdinalMetric):
        return f"{value} AS {quote(metric.id)}"
    return f"coalesce(CAST({value} AS DOUBLE), 0) AS {quote(metric.id)}"


def _units_value(metric: AnyMetric) -> str:
    column = f"u.{quote(_column(metric) or '')}"
    if isinstance(metric, BinaryMetric):
        return f"coalesce(CAST({column} AS BOOLEAN)::DOUBLE, 0) AS {quote(metric.id)}"
    if isinstance(metric, OrdinalMetric):
        return f"CAST({column} AS DOUBLE) AS {quote(metric.id)}"
    return f"coalesce(CAST({column} AS DOUBLE), 0) AS {quote(metric.id)}"


def _units_cte(spec: ExperimentSpec, source: _Source, columns: Sequence[str], with_variant: bool) -> str:
    """The units table with its id as ``unit_id`` (1-based row number with ``data.row_id``)."""
    unit_id = "row_number() OVER ()" if spec.data.row_id else quote(spec.data.unit_id)
    keep = [*columns, spec.data.variant_column] if with_variant else list(columns)
    selected = "".join(f", {quote(c)}" for c in dict.fromkeys(keep))
    return f"u AS (SELECT {unit_id} AS unit_id{selected} FROM {source.sql})"


def _rfm_cte(name: str, rfm: Rfm, source: _Source, spec: ExperimentSpec) -> str:
    """RFM cell of each unit with pre-period orders (before ``spec.start``), e.g. ``R5F3M2``.

    recency = days from the last order to the start, frequency = orders, monetary = their sum. Each
    score is 1 + the number of the ``bins - 1`` quantile cuts (``quantile_disc`` at ``1/bins``, ...)
    the value beats: below a recency cut, above a frequency or monetary cut. Ties share a score.
    """
    cuts = ", ".join(f"{k / rfm.bins!r}" for k in range(1, rfm.bins))
    date = f"CAST({quote(rfm.date)} AS DATE)"
    units = (
        f"SELECT {quote(spec.data.unit_id)} AS unit_id, date_diff('day', max({date}), $start) AS r, "
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


def _label_lists(spec: ExperimentSpec) -> tuple[list[str], list[int]]:
    """Raw labels the data may hold and the 1-based arm of each (0: the holdout)."""
    position = {v.id: k for k, v in enumerate(spec.variants, start=1)}
    mapping = spec.data.variant_values or {v.id: v.id for v in spec.variants}
    labels, arms = [str(raw) for raw in mapping], [position[arm] for arm in mapping.values()]
    if spec.design.holdout > 0 and HOLDOUT_LABEL not in labels:
        labels.append(HOLDOUT_LABEL)
        arms.append(0)
    return labels, arms


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


# ---------------------------------------------------------------------- sources and their columns


def _open_sources(
    con: duckdb.DuckDBPyConnection,
    spec: ExperimentSpec,
    paths: Mapping[str, Path],
    frames: Mapping[str, pd.DataFrame],
    segments: Sequence[Segmentation] = (),
) -> dict[str, _Source]:
    needed = {"assignments"} if spec.data.assignments else set()
    needed |= {s for m in spec.metrics if (s := _source(m)) is not None}
    needed |= {s.rfm.source for s in segments if s.rfm is not None}
    if spec.data.assignments is None or spec.analysis.covariates or any(s.column for s in segments):
        needed.add("units")
    sources = {}
    for k, name in enumerate(sorted(needed)):
        param = f"path{k}"
        if name in frames:
            view = f"frame_{k}"
            con.register(view, frames[name])
            sql, where, kind = quote(view), f"DataFrame '{name}'", "frame"
            params: dict[str, Any] = {}
        elif name in paths:
            path = require_file(paths[name], name)
            kind = "parquet" if path.suffix.lower() == ".parquet" else "csv"
            sql, where, params = f"read_{kind}(${param})", str(path), {param: str(path)}
        else:
            raise DataError(
                f"{spec.id}: no '{name}' data (the spec's data block names none, and none was given)"
            )
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {sql}", params or None).fetchall()
        except Exception as error:  # duckdb.Error, but also OS errors surfaced by the reader
            raise DataError(f"{where}: cannot read the {name} file: {_first_line(error)}") from None
        sources[name] = _Source(name, sql, where, {str(r[0]): str(r[1]) for r in described}, params, kind)
    return sources


def _source_params(sources: Mapping[str, _Source]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for source in sources.values():
        params |= source.params
    return params


def _check_columns(
    spec: ExperimentSpec,
    sources: Mapping[str, _Source],
    covariates: Sequence[str],
    segments: Sequence[Segmentation] = (),
) -> None:
    """Every column the spec reads exists, with a numeric (or boolean) type where one is needed."""
    problems: list[str] = []
    assign = sources.get("assignments") or sources["units"]
    needed: list[tuple[_Source, str, bool]] = [(assign, spec.data.variant_column, False)]
    if not (spec.data.row_id and assign.name == "units"):
        needed.append((assign, spec.data.unit_id, False))
    for metric in spec.metrics:
        source = _source(metric)
        if source is None:
            continue
        if source != "units":
            needed.append((sources[source], spec.data.unit_id, False))
        if (column := _column(metric)) is not None:
            needed.append((sources[source], column, True))
    if covariates:
        units = sources["units"]
        if not spec.data.row_id:
            needed.append((units, spec.data.unit_id, False))
        needed += [(units, c, True) for c in covariates]
    for segmentation in segments:
        if segmentation.column is not None:
            needed.append((sources["units"], segmentation.column, False))
        if (rfm := segmentation.rfm) is not None:
            table = sources[rfm.source]
            needed += [(table, spec.data.unit_id, False), (table, rfm.date, False), (table, rfm.amount, True)]
    for table, name, numeric in {(t.name, c, n): (t, c, n) for t, c, n in needed}.values():
        kind = table.columns.get(name)
        if kind is None:
            problems.append(
                f"{table.where}: missing column '{name}'; columns are {', '.join(map(repr, table.columns))}"
            )
        elif numeric and not kind.startswith(_NUMERIC_TYPES):
            problems.append(f"{table.where}: column '{name}' must be numeric, got {kind}")
    if problems:
        raise DataError("\n".join(problems))


def _moment_columns(names: Sequence[str]) -> dict[str, str]:
    """Aggregates of :class:`Moments`: ``mean:i`` and ``comoment:i:j`` (population covariance, i <= j)."""
    columns = {f"mean:{i}": f"avg({quote(name)})" for i, name in enumerate(names)}
    columns |= {
        f"comoment:{i}:{j}": f"covar_pop({quote(names[i])}, {quote(names[j])})"
        for i in range(len(names))
        for j in range(i, len(names))
    }
    return columns


def _parse_moments(names: Sequence[str], n: int, group: Mapping[str, Any]) -> Moments:
    """:class:`Moments` from the :func:`_moment_columns` of one group (``n`` rows)."""
    d = len(names)
    mean = np.array([group[f"mean:{i}"] for i in range(d)], dtype=float)
    comoment = np.zeros((d, d))
    for i in range(d):
        for j in range(i, d):
            comoment[i, j] = comoment[j, i] = float(group[f"comoment:{i}:{j}"]) * n
    return Moments(tuple(names), int(n), mean, comoment)


def _bitmap_range(row: tuple[Any, ...] | None) -> tuple[int, int] | None:
    """``(min, max)`` of integer unit ids when a bitmap of the range fits in ``_MAX_BITMAP_BITS``."""
    if row is None or row[0] is None:
        return None
    low, high = int(row[0]), int(row[1])
    return (low, high) if high - low < _MAX_BITMAP_BITS else None
