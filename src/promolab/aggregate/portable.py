"""The aggregation as one SQL query a warehouse runs (``promolab sql``), and its result read back as
per-arm statistics (``promolab analyze --stats``).

A team that may not connect tools to its warehouse runs one query there and gives promolab the few rows
it returns. The query is written once in standard SQL (``CASE`` inside aggregates, ``CAST``, ``COALESCE``,
joins, ``GROUP BY``) and translated to the warehouse's dialect by sqlglot. It mirrors the DuckDB
aggregation (:mod:`promolab.aggregate.duck`):

- per event table, one row per unit: each metric's value over its rows in its window (``CAST(ts AS
  DATE)``, in the warehouse's session time zone), with its ``where`` filter and missing-value policy,
  and the count of its missing values;
- per assigned unit: those values (0 without rows; no response for scores), the units file's
  covariates and metrics, and absolute caps;
- per raw arm label: the number of units and of distinct unit ids, the moments (``mean:<i>``, and the
  population co-moments ``comoment:<i>:<j>`` centred on the arm's means, so that they do not cancel),
  CUPED's power sums, each score's count per level, and the missing values of every metric and covariate.

Reading the rows back checks what the DuckDB engine checks from the same counts: every label a variant,
every variant present, no unit assigned twice, no missing value where the policy is ``error``, scores
that are levels. Not translated, and refused by name: percentile caps (a quantile per dialect), the
holdout, row-numbered units files and segments; a unit's score is its one answer (several answers
averaging to a value between levels are counted and refused).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promolab.aggregate.layout import StatsLayout
from promolab.aggregate.sql import moment_columns, parse_moments, sql_name
from promolab.errors import DataError, Problem, SpecError, printable
from promolab.kinds import kind_of
from promolab.spec import ExperimentSpec
from promolab.spec.models import (
    UNITS_SOURCE,
    AnyMetric,
    BinaryMetric,
    OrdinalMetric,
    RatioMetric,
    SourcedMetric,
)
from promolab.spec.windows import expand, window_of
from promolab.stats.moments import ArmStats, ExperimentStats, Histogram

DIALECTS = (
    "duckdb",
    "postgres",
    "bigquery",
    "snowflake",
    "spark",
    "databricks",
    "redshift",
    "trino",
    "sqlite",
)


def warehouse_query(spec: ExperimentSpec, dialect: str, tables: Mapping[str, str], cuped: bool = True) -> str:
    """The aggregation query of ``spec`` in ``dialect``; ``tables``: data name -> the warehouse table
    holding it (``assignments``, ``units`` and the event tables); ``cuped``: with the covariates' sums.

    Raises:
        SpecError: a spec feature the query does not translate (module docstring).
        DataError: an unknown dialect, or a data name without a table.
    """
    import sqlglot

    if dialect not in DIALECTS:
        raise DataError(f"--dialect: expected one of {', '.join(DIALECTS)}, got '{printable(dialect)}'")
    _refuse_untranslated(spec)
    expanded = expand(spec)
    query = _Query(expanded, StatsLayout.of(expanded, cuped), tables).sql()
    return str(sqlglot.transpile(query, read="duckdb", write=dialect, pretty=True)[0])


def read_stats_table(spec: ExperimentSpec, path: Path, cuped: bool = True) -> ExperimentStats:
    """The per-arm statistics from the rows :func:`warehouse_query` returned, saved as CSV or Parquet.

    Raises:
        DataError: an unreadable file, missing columns, or data the checks refuse (module docstring).
    """
    import duckdb

    from promolab.sources import input_files

    found = input_files(path, "statistics")
    try:
        with duckdb.connect() as con:
            result = con.execute(f"SELECT * FROM read_{found.kind}($p)", {"p": [str(f) for f in found.files]})
            names = [str(d[0]) for d in result.description]
            rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    except duckdb.Error as error:
        raise DataError(f"{found.where}: cannot read the statistics: {error}") from None
    return stats_from_rows(spec, rows, found.where, cuped)


def stats_from_rows(
    spec: ExperimentSpec, rows: Sequence[Mapping[str, Any]], where: str, cuped: bool = True
) -> ExperimentStats:
    """The per-arm statistics from :func:`warehouse_query`'s rows (``where`` names them in messages),
    checked as the DuckDB engine checks its own.

    Raises:
        DataError: missing columns, or data the checks refuse (module docstring).
    """
    from promolab.aggregate.duck import _label_lists

    spec = expand(spec)
    layout = StatsLayout.of(spec, cuped)
    expected = _Query(spec, layout, {}).columns()
    given = {str(name).lower() for row in rows[:1] for name in row}
    missing = [c for c in expected if rows and c.lower() not in given]
    if missing:
        raise DataError(
            f"{where}: lacks column(s) {', '.join(missing[:5])}: not the result of `promolab sql` for this "
            "spec (the spec, --no-cuped and the covariates must be the same)"
        )
    labels, positions = _label_lists(spec)
    arm_of = {label: spec.variants[k - 1].id for label, k in zip(labels, positions, strict=True) if k > 0}
    arms: dict[str, ArmStats] = {}
    for row in rows:
        lowered = {str(name).lower(): value for name, value in row.items()}
        group = {name: lowered[name.lower()] for name in expected}
        label = str(group["label"])
        if label not in arm_of:
            raise DataError(f"{where}: label '{printable(label)}' is not a variant of {spec.id}")
        _check_row(spec, layout, group, where, label)
        moments = parse_moments(layout.moment_names(), int(group["n"]), group)
        histograms = {m.id: _histogram(m, group) for m in layout.ordinals}
        arms[arm_of[label]] = ArmStats(moments, histograms, {}, layout.arm_powers(group))
    absent = [v.id for v in spec.variants if v.id not in arms]
    if absent:
        raise DataError(f"{where}: no units of arm(s) {', '.join(absent)}")
    shared = tuple(f"cov:{c}" for c in layout.covariates)
    return ExperimentStats({v.id: arms[v.id] for v in spec.variants}, {}, shared, {}, dict(layout.own))


# ---------------------------------------------------------------------- the query


class _Query:
    """The query's pieces for one spec (see the module docstring)."""

    def __init__(self, spec: ExperimentSpec, layout: StatsLayout, tables: Mapping[str, str]) -> None:
        self.spec, self.layout, self.tables = spec, layout, tables
        self.events = _metrics_by_table(spec)

    def sql(self) -> str:
        """Every input's table is read once; the query's own names start with ``promolab_`` so that no
        warehouse table is shadowed."""
        ctes = [f"promolab_assign AS ({self._assignments()})"]
        joins = ["promolab_assign a"]
        for k, (table, metrics) in enumerate(self.events.items()):
            ctes.append(f"promolab_t{k} AS ({self._event_table(table, metrics)})")
            joins.append(f"LEFT JOIN promolab_t{k} t{k} ON t{k}.unit_id = a.unit_id")
        if self._reads_units():
            ctes.append(f"promolab_u AS ({self._units()})")
            joins.append("LEFT JOIN promolab_u u ON u.unit_id = a.unit_id")
        values = ", ".join(self._unit_values())
        ctes.append(f"promolab_units AS (SELECT a.label, a.unit_id, {values} FROM {' '.join(joins)})")
        ctes.append(
            f"promolab_means AS (SELECT label, {self._aggregates()} FROM promolab_units GROUP BY label)"
        )
        spread = ", ".join(f"{sql} AS {_q(alias)}" for alias, sql in self._comoments().items())
        ctes.append(
            "promolab_spread AS (SELECT units.label, "
            f"{spread or 'count(*) AS ' + _q('units')} FROM promolab_units units "
            "JOIN promolab_means means ON means.label = units.label GROUP BY units.label)"
        )
        select = ", ".join(["means.*", *(f"spread.{_q(alias)}" for alias in self._comoments())])
        return (
            f"WITH {', '.join(ctes)} SELECT {select} FROM promolab_means means "
            "JOIN promolab_spread spread ON spread.label = means.label"
        )

    def columns(self) -> list[str]:
        """Every column the query returns (and the reader needs)."""
        return ["label", *self._aggregate_columns(), *self._comoments()]

    # ---- inputs

    def _table(self, name: str) -> str:
        if name not in self.tables:
            raise DataError(f"no warehouse table for the '{name}' data: give --table {name}=SCHEMA.TABLE")
        return self.tables[name]

    def _assignments(self) -> str:
        data, unit = self.spec.data, _q(self.spec.data.unit_id)
        source = "assignments" if data.assignments else UNITS_SOURCE
        variant = _q(data.variant_column)
        return f"SELECT {unit} AS unit_id, CAST({variant} AS VARCHAR) AS label FROM {self._table(source)}"

    def _reads_units(self) -> bool:
        return bool(self.layout.covariates) or any(m.source == UNITS_SOURCE for m in _sourced(self.spec))

    def _units(self) -> str:
        columns = [
            *self.layout.covariates,
            *(str(m.column) for m in _sourced(self.spec) if m.source == UNITS_SOURCE),
        ]
        picked = "".join(f", {_q(c)}" for c in dict.fromkeys(columns))
        return f"SELECT {_q(self.spec.data.unit_id)} AS unit_id{picked} FROM {self._table(UNITS_SOURCE)}"

    def _event_table(self, table: str, metrics: Sequence[SourcedMetric]) -> str:
        parts = []
        for metric in metrics:
            kept = self._kept(metric)
            parts += [f"{sql} AS {_q(alias)}" for alias, sql in _partials(metric, kept).items()]
            if (column := metric.column) is not None:
                null = f"({kept}) AND {_q(column)} IS NULL" if kept else f"{_q(column)} IS NULL"
                parts.append(f"sum(CASE WHEN {null} THEN 1 ELSE 0 END) AS {_q('null:' + metric.id)}")
            if (impossible := _impossible(metric)) is not None:
                bad = f"({kept}) AND {impossible}" if kept else impossible
                parts.append(f"sum(CASE WHEN {bad} THEN 1 ELSE 0 END) AS {_q('bad:' + metric.id)}")
        unit = _q(self.spec.data.unit_id)
        return f"SELECT {unit} AS unit_id, {', '.join(parts)} FROM {self._table(table)} GROUP BY {unit}"

    def _kept(self, metric: SourcedMetric) -> str | None:
        """The rows a metric counts: its window (with ``data.timestamp``) and its ``where`` filter."""
        conditions = []
        window = window_of(self.spec, metric.id)
        timestamp = self.spec.data.timestamp
        if timestamp is not None:
            day = f"CAST({_q(timestamp)} AS DATE)"
            start, end = self.spec.start, self.spec.end
            stop = end + dt.timedelta(days=self.spec.post_days)
            pre = start - dt.timedelta(days=self.spec.pre_days)
            low, high = {
                "pre": (pre, start - dt.timedelta(days=1)),
                "during": (start, end),
                "post": (end + dt.timedelta(days=1), stop),
            }.get(str(window), (start, stop))
            conditions.append(f"{day} BETWEEN DATE '{low.isoformat()}' AND DATE '{high.isoformat()}'")
        if (rows := getattr(metric, "where", None)) is not None:
            listed = f"CAST({_q(rows.column)} AS VARCHAR) IN ({', '.join(_literal(v) for v in rows.values)})"
            conditions.append(
                f"coalesce({listed}, FALSE)" if rows.keeps else f"NOT coalesce({listed}, FALSE)"
            )
        return " AND ".join(f"({c})" for c in conditions) or None

    # ---- per unit

    def _unit_values(self) -> list[str]:
        values = []
        for k, metrics in enumerate(self.events.values()):
            for metric in metrics:
                values.append(f"{self._capped(metric, _finished(metric, f't{k}'))} AS {_q('m:' + metric.id)}")
                for check in ("null", "bad"):
                    if metric.column is not None and (check == "null" or _impossible(metric) is not None):
                        name = _q(f"{check}:{metric.id}")
                        values.append(f"coalesce(t{k}.{name}, 0) AS {name}")
        for metric in _sourced(self.spec):
            if metric.source == UNITS_SOURCE:
                value = f"CAST(u.{_q(str(metric.column))} AS DOUBLE)"
                if isinstance(metric, BinaryMetric):
                    value = f"CAST(CAST(u.{_q(str(metric.column))} AS INTEGER) AS DOUBLE)"
                if kind_of(metric).absent_is_zero:
                    value = f"coalesce({value}, 0)"
                values.append(f"{self._capped(metric, value)} AS {_q('m:' + metric.id)}")
        values += [f"CAST(u.{_q(c)} AS DOUBLE) AS {_q('cov:' + c)}" for c in self.layout.covariates]
        return values

    def _capped(self, metric: AnyMetric, value: str) -> str:
        capping = getattr(metric, "capping", None)
        return value if capping is None else f"LEAST({value}, {float(capping.absolute)!r})"

    # ---- per arm

    def _aggregate_columns(self) -> list[str]:
        return list(self._aggregate_map())

    def _aggregate_map(self) -> dict[str, str]:
        names = self.layout.moment_names()
        columns = {"n": "count(*)", "distinct units": "count(DISTINCT unit_id)"}
        columns |= {alias: sql for alias, sql in moment_columns(names).items() if alias.startswith("mean:")}
        for alias, monomial in self.layout.power_monomials().items():
            factors = [_q(sql_name(v)) for v, power in monomial for _ in range(power)]
            columns[alias] = f"sum({' * '.join(factors)})" if factors else "CAST(count(*) AS DOUBLE)"
        for metric in self.layout.ordinals:
            value = _q("m:" + metric.id)
            for level in metric.levels:
                columns[f"hist:{metric.id}:{level}"] = f"sum(CASE WHEN {value} = {level} THEN 1 ELSE 0 END)"
            levels = ", ".join(str(level) for level in metric.levels)
            columns[f"off levels:{metric.id}"] = (
                f"sum(CASE WHEN {value} IS NOT NULL AND {value} NOT IN ({levels}) THEN 1 ELSE 0 END)"
            )
        for sourced in _sourced(self.spec):
            if sourced.source != UNITS_SOURCE and sourced.column is not None:
                columns[f"null:{sourced.id}"] = f"sum({_q('null:' + sourced.id)})"
                if _impossible(sourced) is not None:
                    columns[f"bad:{sourced.id}"] = f"sum({_q('bad:' + sourced.id)})"
        columns |= {f"null:cov:{c}": f"count(*) - count({_q('cov:' + c)})" for c in self.layout.covariates}
        return columns

    def _aggregates(self) -> str:
        return ", ".join(f"{sql} AS {_q(alias)}" for alias, sql in self._aggregate_map().items())

    def _comoments(self) -> dict[str, str]:
        """Population co-moments, centred on the arm's means (``sum(dx dy) / n``)."""
        names = self.layout.moment_names()
        columns = {}
        for i in range(len(names)):
            for j in range(i, len(names)):
                x = f"(units.{_q(sql_name(names[i]))} - means.{_q(f'mean:{i}')})"
                y = f"(units.{_q(sql_name(names[j]))} - means.{_q(f'mean:{j}')})"
                columns[f"comoment:{i}:{j}"] = f"sum({x} * {y}) / count(*)"
        return columns


# ---------------------------------------------------------------------- SQL pieces


def _q(name: str) -> str:
    """A quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def _literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _sourced(spec: ExperimentSpec) -> list[SourcedMetric]:
    return [m for m in spec.metrics if not isinstance(m, RatioMetric)]


def _metrics_by_table(spec: ExperimentSpec) -> dict[str, list[SourcedMetric]]:
    grouped: dict[str, list[SourcedMetric]] = {}
    for metric in _sourced(spec):
        if metric.source != UNITS_SOURCE:
            grouped.setdefault(metric.source, []).append(metric)
    return dict(sorted(grouped.items()))


def _value(metric: SourcedMetric) -> str:
    """The metric's row value as a number (0 for a missing one with ``missing: zero``)."""
    if metric.column is None:
        return "1"
    value = f"CAST({_q(metric.column)} AS DOUBLE)"
    if isinstance(metric, BinaryMetric):
        value = f"CAST(CAST({_q(metric.column)} AS INTEGER) AS DOUBLE)"
    return f"coalesce({value}, 0)" if metric.missing_policy == "zero" else value


def _impossible(metric: SourcedMetric) -> str | None:
    """A row value the metric cannot have: a binary value other than 0/1 (as text, whatever the column's
    type), a negative count; None when any value is possible or the metric reads no column."""
    if metric.column is None:
        return None
    column = _q(metric.column)
    if isinstance(metric, BinaryMetric):
        forms = ", ".join(
            _literal(v) for v in ("0", "1", "0.0", "1.0", "true", "false", "TRUE", "FALSE", "t", "f")
        )
        return f"{column} IS NOT NULL AND CAST({column} AS VARCHAR) NOT IN ({forms})"
    if kind_of(metric).name == "count":
        return f"CAST({column} AS DOUBLE) < 0"
    return None


def _partials(metric: SourcedMetric, kept: str | None) -> dict[str, str]:
    """A unit's aggregate(s) of ``metric`` over its kept rows, by its kind's merge rule: a sum, a maximum,
    or a mean as its sum and count (``CASE`` inside the aggregate: standard SQL)."""
    value = _value(metric)
    inside = value if kept is None else f"CASE WHEN {kept} THEN {value} END"
    rule = kind_of(metric).merge(metric)
    if rule in ("max", "sum"):
        return {"v:" + metric.id: f"{rule}({inside})"}
    return {"s:" + metric.id: f"sum({inside})", "c:" + metric.id: f"count({inside})"}


def _finished(metric: SourcedMetric, alias: str) -> str:
    """A unit's value from its table's aggregates: a mean as sum over count; 0 without rows unless the
    kind says no rows is no response."""
    if kind_of(metric).merge(metric) == "mean":
        value = f"{alias}.{_q('s:' + metric.id)} / NULLIF({alias}.{_q('c:' + metric.id)}, 0)"
    else:
        value = f"{alias}.{_q('v:' + metric.id)}"
    return f"coalesce({value}, 0)" if kind_of(metric).absent_is_zero else value


def _refuse_untranslated(spec: ExperimentSpec) -> None:
    problems = []
    for k, metric in enumerate(spec.metrics):
        capping = getattr(metric, "capping", None)
        if capping is not None and capping.absolute is None:
            problems.append(
                Problem(
                    ("metrics", k, "capping", "percentile"),
                    "a percentile cap has no portable SQL: give "
                    "capping.absolute, or analyse with promolab's own engine",
                )
            )
    if spec.design.holdout > 0:
        problems.append(Problem(("design", "holdout"), "the warehouse query has no holdout arm yet"))
    if spec.data.row_id:
        problems.append(Problem(("data", "row_id"), "the warehouse query needs a unit id column"))
    if problems:
        raise SpecError(problems)


def _check_row(
    spec: ExperimentSpec, layout: StatsLayout, row: Mapping[str, Any], where: str, label: str
) -> None:
    """What the DuckDB engine refuses, from the counts of one label's row."""
    problems = []
    statistics = [k for k in row if k.startswith(("mean:", "comoment:", "pow:"))]
    broken = [k for k in statistics if row[k] is None or not np.isfinite(float(row[k]))]
    if broken:
        problems.append(
            f"{', '.join(broken[:3])} missing or not finite (a NaN or infinite value in the data, or "
            "a column that is not numeric)"
        )
    if int(row["n"]) != int(row["distinct units"]):
        problems.append(f"{int(row['n']) - int(row['distinct units']):,} unit(s) assigned more than once")
    for metric in _sourced(spec):
        if metric.source == UNITS_SOURCE or metric.column is None:
            continue
        missing, bad = int(row[f"null:{metric.id}"] or 0), int(row.get(f"bad:{metric.id}") or 0)
        if missing and metric.missing_policy == "error":
            problems.append(f"metric '{metric.id}': {missing:,} missing value(s) in '{metric.column}'")
        if bad:
            problems.append(f"metric '{metric.id}': {bad:,} impossible value(s) in '{metric.column}' "
                            f"({kind_of(metric).bad_value_meaning(metric)})")  # fmt: skip
    for c in layout.covariates:
        if int(row[f"null:cov:{c}"] or 0):
            problems.append(f"covariate '{c}': {int(row[f'null:cov:{c}']):,} missing value(s)")
    for metric in layout.ordinals:
        if int(row[f"off levels:{metric.id}"] or 0):
            problems.append(
                f"metric '{metric.id}': units whose answers average between levels; analyse the rows "
                "with promolab's own engine"
            )
    if problems:
        raise DataError([f"{where}: label '{printable(label)}': {p}" for p in problems])


def _histogram(metric: OrdinalMetric, group: Mapping[str, Any]) -> Histogram:
    counts = {float(level): int(group[f"hist:{metric.id}:{level}"] or 0) for level in metric.levels}
    return Histogram({value: count for value, count in counts.items() if count})
