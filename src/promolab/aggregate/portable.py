"""The aggregation as one SQL query a warehouse runs (``promolab sql``), and its result read back as
per-arm statistics (``promolab analyze --stats``).

A team that may not connect tools to its warehouse runs one query there and gives promolab the few rows
it returns. The query is written once in standard SQL (``CASE`` inside aggregates, ``CAST``, ``COALESCE``,
joins, window functions, ``GROUP BY``) and translated to the warehouse's dialect by sqlglot. It mirrors
the DuckDB aggregation (:mod:`promolab.aggregate.duck`):

- assignments: distinct (unit, label) pairs (an exposure log's repeated rows collapse);
- per event table, one row per unit: each metric's value over its rows in its window (``CAST(ts AS
  DATE)``, in the warehouse's session time zone), with its ``where`` filter and missing-value policy,
  and the count of its missing values;
- per assigned unit: those values (0 without rows; no response for scores), the units file's
  covariates and metrics, segment labels (a units-file column, or the RFM cell of its pre-period
  orders), and absolute caps; then percentile caps pooled over the analysed arms;
- per raw arm label: the number of units, the moments (``mean:<i>``, and the population co-moments
  ``comoment:<i>:<j>`` centred on the arm's means, so that they do not cancel), CUPED's power sums, each
  score's count per level, the missing values of every metric and covariate, and the log-moments of
  continuous metrics (Bayesian hurdle model); on every row, the checks over all labels and the caps;
- with ``analysis.segments``, one more row per label and segment (``segmentation``, ``segment``) with
  the metrics' moments.

Reading the rows back checks what the DuckDB engine checks from the same counts: every label a variant
(the holdout's label is skipped), every variant present, no assignment row without a unit id or a
label, no unit with two variants, no repeated id in the units table, no missing value where the policy
is ``error``, scores that are levels, RFM amounts present and finite. Not translated, and refused by
name: row-numbered units files (a warehouse table has no row order). A unit's score is its one answer
(several answers averaging to a value between levels are counted and refused).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promolab.aggregate.inputs import dated_tables
from promolab.aggregate.layout import HOLDOUT_LABEL, StatsLayout, label_lists
from promolab.aggregate.sql import moment_columns, parse_moments, rfm_cells, sql_name
from promolab.errors import DataError, Problem, SpecError, first_line, printable
from promolab.kinds import kind_of
from promolab.spec import ExperimentSpec
from promolab.spec.models import (
    UNITS_SOURCE,
    AnyMetric,
    BinaryMetric,
    OrdinalMetric,
    RatioMetric,
    Rfm,
    SourcedMetric,
)
from promolab.spec.windows import expand, window_of
from promolab.stats.moments import MAX_POWER_COVARIATES, ArmStats, ExperimentStats, Histogram, Moments

SEGMENT_KEYS = ("label", "segmentation", "segment")
UNDECLARED = "undeclared label: "  # a raw label no variant claims (no arm id has a space)
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


def warehouse_query(
    spec: ExperimentSpec,
    dialect: str,
    tables: Mapping[str, str],
    cuped: bool = True,
    untimed: Collection[str] = (),
) -> str:
    """The aggregation query of ``spec`` in ``dialect``; ``tables``: data name -> the warehouse table
    holding it (``assignments``, ``units`` and the event tables); ``cuped``: with the covariates' sums;
    ``untimed``: event tables without the ``data.timestamp`` column, whose rows all count (as the DuckDB
    engine counts them).

    Raises:
        SpecError: a spec feature the query does not translate (module docstring).
        DataError: an unknown dialect, or a data name without a table.
    """
    import sqlglot

    if dialect not in DIALECTS:
        raise DataError(f"--dialect: expected one of {', '.join(DIALECTS)}, got '{printable(dialect)}'")
    refuse_untranslated(spec, cuped)
    refuse_untimed(spec, untimed)
    expanded = expand(spec)
    query = _Query(expanded, StatsLayout.of(expanded, cuped), tables, dialect, frozenset(untimed)).sql()
    return str(sqlglot.transpile(query, read="duckdb", write=dialect, pretty=True)[0])


def default_tables(spec: ExperimentSpec) -> dict[str, str]:
    """Each data name of ``spec`` as its own warehouse table (``promolab sql`` without ``--table``)."""
    names = {"assignments": spec.data.assignments, UNITS_SOURCE: spec.data.units, **spec.data.tables}
    return {name: name for name, path in names.items() if path}


def read_stats_table(spec: ExperimentSpec, path: Path, cuped: bool = True) -> ExperimentStats:
    """The per-arm statistics from the rows :func:`warehouse_query` returned, saved as CSV or Parquet.

    Raises:
        DataError: an unreadable file, missing columns, or data the checks refuse (module docstring).
    """
    import duckdb

    from promolab.sources import input_files

    found = input_files(path, "statistics")
    files = {"p": [str(f) for f in found.files]}
    try:
        with duckdb.connect() as con:
            source = f"read_{found.kind}($p)"
            if found.kind == "csv":  # names stay text: segment '7.0' is not segment '7', label '01' not 1
                header = [
                    str(d[0]) for d in con.execute(f"DESCRIBE SELECT * FROM {source}", files).fetchall()
                ]
                named = [n for n in header if n.lower() in SEGMENT_KEYS]
                types = ", ".join(f"{_literal(n)}: 'VARCHAR'" for n in named)
                source = f"read_csv($p, types = {{{types}}})" if named else source
            result = con.execute(f"SELECT * FROM {source}", files)
            names = [str(d[0]) for d in result.description]
            rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    except duckdb.Error as error:
        raise DataError(f"{found.where}: cannot read the statistics: {first_line(error)}") from None
    return stats_from_rows(spec, rows, found.where, cuped)


def stats_from_rows(
    spec: ExperimentSpec, rows: Sequence[Mapping[str, Any]], where: str, cuped: bool = True
) -> ExperimentStats:
    """The per-arm statistics from :func:`warehouse_query`'s rows (``where`` names them in messages),
    checked as the DuckDB engine checks its own.

    Raises:
        DataError: missing columns, or data the checks refuse (module docstring).
    """
    spec = expand(spec)
    layout = StatsLayout.of(spec, cuped)
    query = _Query(spec, layout, default_tables(spec))
    expected = query.columns()
    given = {str(name).lower() for row in rows[:1] for name in row}
    missing = [c for c in expected if rows and c.lower() not in given]
    if missing:
        raise DataError(
            f"{where}: lacks column(s) {', '.join(missing[:5])}: not the result of `promolab sql` for this "
            "spec (the spec, --no-cuped and the covariates must be the same)"
        )
    groups = [_numeric({name: _lowered(row)[name.lower()] for name in expected}, where) for row in rows]
    segment_rows = [g for g in groups if g.get("segmentation") is not None]
    groups = [g for g in groups if g.get("segmentation") is None]
    if groups:
        _check_assignments(spec, groups[0], where)
    ids = {v.id for v in spec.variants}
    arms: dict[str, ArmStats] = {}
    for group in groups:
        label = str(group["label"])
        if label == HOLDOUT_LABEL and spec.design.holdout > 0:  # assigned, not analysed
            continue
        if label.startswith(UNDECLARED) or label not in ids:
            raw = printable(label.removeprefix(UNDECLARED))
            raise DataError(
                f"{where}: label '{raw}' is not a variant of {spec.id} (map raw labels with "
                "data.variant_values)"
            )
        if label in arms:
            raise DataError(f"{where}: arm '{printable(label)}' has two rows: not one result of the query")
        _check_row(spec, layout, group, where, label)
        moments = parse_moments(layout.moment_names(), _count(group, where), group)
        histograms = {m.id: _histogram(m, group) for m in layout.ordinals}
        powers = layout.arm_powers(group, about_means=True)
        arms[label] = ArmStats(moments, histograms, layout.arm_logs(group), powers)
    absent = [v.id for v in spec.variants if v.id not in arms]
    if absent:
        raise DataError(f"{where}: no units of arm(s) {', '.join(absent)}")
    caps = {m.id: float(cap) for m in _sourced(spec) if (cap := _absolute(m)) is not None}
    caps |= {m.id: float(groups[0][f"cap:{m.id}"]) for m in query.percentile_capped}
    shared = tuple(f"cov:{c}" for c in layout.covariates)
    segments = _segments(spec, layout, segment_rows, where)
    return ExperimentStats(
        {v.id: arms[v.id] for v in spec.variants}, caps, shared, segments, dict(layout.own)
    )


def _segments(
    spec: ExperimentSpec, layout: StatsLayout, rows: Sequence[Mapping[str, Any]], where: str
) -> dict[str, dict[str, dict[str, Moments]]]:
    """Each segmentation's segments' moments by arm, ordered as the DuckDB engine orders them (by
    segment, then arm). A missing segment value is the segment '' (a CSV keeps it as an empty cell)."""
    order = {v.id: k for k, v in enumerate(spec.variants)}
    found: dict[str, dict[str, dict[str, Moments]]] = {s.name: {} for s in spec.analysis.segments}
    keyed = sorted(
        ((str(row["segmentation"]), _segment_name(row["segment"]), str(row["label"]), row) for row in rows),
        key=lambda item: (item[0], item[1], order.get(item[2], -1)),
    )
    for segmentation, segment, arm, row in keyed:
        if arm not in order or segmentation not in found:
            raise DataError(
                f"{where}: a segment row of '{printable(arm)}' in '{printable(segmentation)}': not this "
                "spec's"
            )
        found[segmentation].setdefault(segment, {})[arm] = parse_moments(
            layout.variables, _count(row, where), row
        )
    return found


def _segment_name(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _numeric(row: dict[str, Any], where: str) -> dict[str, Any]:
    """The row with every statistic a float (a warehouse may return decimals, a CSV text), or None.

    Raises:
        DataError: a statistic that is not a number, named with its row's label.
    """
    for name, value in row.items():
        if name in SEGMENT_KEYS or value is None:
            continue
        try:
            row[name] = float(value)
        except (TypeError, ValueError):
            label = printable(str(row.get("label")))
            raise DataError(
                f"{where}: label '{label}': column '{printable(name)}' holds '{printable(str(value))}', "
                "not a number"
            ) from None
    return row


def _count(row: Mapping[str, Any], where: str) -> int:
    """A row's ``n``: a whole number of units.

    Raises:
        DataError: an empty, negative or fractional count.
    """
    n = row["n"]
    if n is None or not np.isfinite(n) or n < 0 or n != int(n):
        label = printable(str(row.get("label")))
        raise DataError(f"{where}: label '{label}': column 'n' holds '{n}', not a number of units")
    return int(n)


def _lowered(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row by lower-case column name (warehouses may fold the case of unquoted names)."""
    return {str(name).lower(): value for name, value in row.items()}


# ---------------------------------------------------------------------- the query


class _Query:
    """The query's pieces for one spec (see the module docstring)."""

    def __init__(
        self,
        spec: ExperimentSpec,
        layout: StatsLayout,
        tables: Mapping[str, str],
        dialect: str = "duckdb",
        untimed: frozenset[str] = frozenset(),
    ) -> None:
        self.spec, self.layout, self.tables, self.dialect = spec, layout, tables, dialect
        self.untimed = untimed
        self.events = _metrics_by_table(spec)
        self.percentile_capped = [m for m in _sourced(spec) if _percentile(m) is not None]

    def sql(self) -> str:
        """Every input's table is read once; the query's own names start with ``promolab_`` so that no
        warehouse table is shadowed."""
        ctes = [
            f"promolab_rows AS ({self._assignments()})",
            "promolab_assign AS (SELECT DISTINCT unit_id, label FROM promolab_rows)",
        ]
        joins = ["promolab_assign a"]
        for k, (table, metrics) in enumerate(self.events.items()):
            ctes.append(f"promolab_t{k} AS ({self._event_table(table, metrics)})")
            joins.append(f"LEFT JOIN promolab_t{k} t{k} ON t{k}.unit_id = a.unit_id")
        if self._reads_units():
            ctes.append(f"promolab_u AS ({self._units()})")
            joins.append("LEFT JOIN promolab_u u ON u.unit_id = a.unit_id")
        for k, segmentation in enumerate(self.spec.analysis.segments):
            if (rfm := segmentation.rfm) is not None:
                ctes.append(f"promolab_rfm{k} AS ({self._rfm(rfm)})")
                joins.append(f"LEFT JOIN promolab_rfm{k} rfm{k} ON rfm{k}.unit_id = a.unit_id")
        values = self._unit_values()
        listed = ", ".join(f"{sql} AS {_q(alias)}" for alias, sql in values.items())
        arm = f"{self._arm_of('a.label')} AS label"
        ctes.append(f"promolab_raw AS (SELECT {arm}, a.unit_id, {listed} FROM {' '.join(joins)})")
        ctes += self._caps()
        ctes.append(f"promolab_units AS ({self._capped_units(values)})")
        ctes.append(
            f"promolab_means AS (SELECT label, {self._aggregates()} FROM promolab_units GROUP BY label)"
        )
        spread = ", ".join(f"{sql} AS {_q(alias)}" for alias, sql in self._comoments().items())
        ctes.append(
            "promolab_spread AS (SELECT units.label, "
            f"{spread or 'count(*) AS ' + _q('units')} FROM promolab_units units "
            "JOIN promolab_means means ON means.label = units.label GROUP BY units.label)"
        )
        checks = ", ".join(f"{sql} AS {_q(alias)}" for alias, sql in self._checks().items())
        ctes.append(f"promolab_checks AS (SELECT {checks})")
        select = ["means.*", *(f"spread.{_q(alias)}" for alias in self._comoments()), "checks.*"]
        joins = [
            "JOIN promolab_spread spread ON spread.label = means.label",
            "CROSS JOIN promolab_checks checks",
        ]
        if self.percentile_capped:
            select.append("caps.*")
            joins.append("CROSS JOIN promolab_caps caps")
        arms = f"SELECT {', '.join(select)} FROM promolab_means means {' '.join(joins)}"
        if not self.spec.analysis.segments:
            return f"WITH {', '.join(ctes)} {arms}"
        ctes += self._segment_ctes()
        nothing = "CAST(NULL AS VARCHAR)"
        arms = f"SELECT *, {nothing} AS segmentation, {nothing} AS segment FROM ({arms}) arms"
        return f"WITH {', '.join(ctes)} {arms} UNION ALL {self._segment_rows()}"

    def columns(self) -> list[str]:
        """Every column the query returns (and the reader needs)."""
        caps = [f"cap:{m.id}" for m in self.percentile_capped]
        segments = ["segmentation", "segment"] if self.spec.analysis.segments else []
        return ["label", *self._aggregate_columns(), *self._comoments(), *self._checks(), *caps, *segments]

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

    def _arm_of(self, label: str) -> str:
        """The arm id of a raw ``label`` (several labels may map to one arm; the holdout's is
        ``holdout``); an undeclared label as ``UNDECLARED`` + the label, which no arm id can equal."""
        labels, positions = label_lists(self.spec)
        arms = [self.spec.variants[k - 1].id if k > 0 else HOLDOUT_LABEL for k in positions]
        cases = " ".join(
            f"WHEN {_literal(raw)} THEN {_literal(arm)}" for raw, arm in zip(labels, arms, strict=True)
        )
        return f"CASE {label} {cases} ELSE {_literal(UNDECLARED)} || {label} END"

    def _checks(self) -> dict[str, str]:
        """Counts over all labels (one row): assignment rows without a unit id or a label, distinct
        (unit, label) pairs against distinct units (a unit with two labels), units-file rows against its
        distinct ids (a repeated id would count its unit twice), RFM amounts missing or not finite."""
        checks = {
            "no id": "(SELECT count(*) - count(unit_id) FROM promolab_rows)",
            "no label": "(SELECT count(*) - count(label) FROM promolab_rows)",
            "labelled units": "(SELECT count(*) FROM promolab_assign WHERE unit_id IS NOT NULL)",
            "assigned units": "(SELECT count(DISTINCT unit_id) FROM promolab_assign)",
        }
        if self._reads_units():
            checks["repeated units rows"] = (  # among assigned units: the join would count them twice
                "(SELECT count(*) - count(DISTINCT unit_id) FROM promolab_u "
                "WHERE unit_id IN (SELECT unit_id FROM promolab_assign))"
            )
        for segmentation in self.spec.analysis.segments:
            if (rfm := segmentation.rfm) is not None:  # NaN fails the test whether it sorts first or last
                amount = f"CAST({_q(rfm.amount)} AS DOUBLE)"
                checks[f"bad amounts:{rfm.source}"] = (
                    f"(SELECT count(*) FROM {self._table(rfm.source)} "
                    f"WHERE {amount} IS NULL OR NOT (ABS({amount}) <= 1e308))"
                )
        return checks

    def _reads_units(self) -> bool:
        return (
            bool(self.layout.covariates)
            or any(m.source == UNITS_SOURCE for m in _sourced(self.spec))
            or any(s.column is not None for s in self.spec.analysis.segments)
        )

    def _units(self) -> str:
        columns = [
            *self.layout.covariates,
            *(str(m.column) for m in _sourced(self.spec) if m.source == UNITS_SOURCE),
            *(str(s.column) for s in self.spec.analysis.segments if s.column is not None),
        ]
        picked = "".join(f", {_q(c)}" for c in dict.fromkeys(columns))
        return f"SELECT {_q(self.spec.data.unit_id)} AS unit_id{picked} FROM {self._table(UNITS_SOURCE)}"

    def _event_table(self, table: str, metrics: Sequence[SourcedMetric]) -> str:
        parts = []
        for metric in metrics:
            kept = self._kept(metric)
            parts += [f"{sql} AS {_q(alias)}" for alias, sql in _partials(metric, kept).items()]
            for check, term in _row_checks(metric, _q(str(metric.column))).items():
                summed = f"CASE WHEN {kept} THEN {term} END" if kept else term
                parts.append(f"sum({summed}) AS {_q(f'{check}:{metric.id}')}")
        unit = _q(self.spec.data.unit_id)
        return f"SELECT {unit} AS unit_id, {', '.join(parts)} FROM {self._table(table)} GROUP BY {unit}"

    def _day(self, column: str) -> str:
        """The date of a date, time or text column as the DuckDB engine dates it (``date_of``): through
        a time with a zone, so that text with an offset is dated in the session's zone (UTC on Spark).
        SQLite has no such type (the cast would read '2026-03-01' as the number 2026); its ``DATE()``,
        which sqlglot writes for a cast to a date, moves an offset to UTC itself."""
        if self.dialect == "sqlite":
            return f"CAST({column} AS DATE)"
        return f"CAST(CAST({column} AS TIMESTAMPTZ) AS DATE)"

    def _kept(self, metric: SourcedMetric) -> str | None:
        """The rows a metric counts: its window (with ``data.timestamp``) and its ``where`` filter."""
        conditions = []
        window = window_of(self.spec, metric.id)
        timestamp = self.spec.data.timestamp
        if timestamp is not None and metric.source not in self.untimed:
            day = self._day(_q(timestamp))
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

    def _unit_values(self) -> dict[str, str]:
        """Each unit's value of every metric (absolute caps applied; percentile caps come after, from
        :meth:`_caps`), its check counts and covariates, by alias."""
        values = {}
        for k, metrics in enumerate(self.events.values()):
            for metric in metrics:
                value = f"CAST({_finished(metric, f't{k}')} AS DOUBLE)"  # not an integer mean (Redshift)
                values["m:" + metric.id] = self._absolute_cap(metric, value)
                for check in _row_checks(metric, "x"):
                    name = f"{check}:{metric.id}"
                    values[name] = f"coalesce(t{k}.{_q(name)}, 0)"
        for metric in _sourced(self.spec):
            if metric.source == UNITS_SOURCE:
                column = f"u.{_q(str(metric.column))}"
                value = f"CAST({column} AS DOUBLE)"
                if isinstance(metric, BinaryMetric):
                    value = f"CAST(CAST({column} AS INTEGER) AS DOUBLE)"
                if kind_of(metric).absent_is_zero:
                    value = f"coalesce({value}, 0)"
                values["m:" + metric.id] = self._absolute_cap(metric, value)
                for check, term in _row_checks(metric, column).items():
                    values[f"{check}:{metric.id}"] = f"coalesce({term}, 0)"
        values |= {f"cov:{c}": f"CAST(u.{_q(c)} AS DOUBLE)" for c in self.layout.covariates}
        for k, segmentation in enumerate(self.spec.analysis.segments):
            alias = "seg:" + segmentation.name
            if segmentation.rfm is not None:
                values[alias] = f"coalesce(rfm{k}.segment, 'new')"
            else:
                values[alias] = f"coalesce(CAST(u.{_q(str(segmentation.column))} AS VARCHAR), '')"
        return values

    def _rfm(self, rfm: Rfm) -> str:
        """Each unit's RFM cell from its orders before the start, as the DuckDB engine's
        (:func:`promolab.aggregate.sql.rfm_cells`, the same SQL)."""
        day, start = self._day(_q(rfm.date)), f"DATE '{self.spec.start.isoformat()}'"
        unit = _q(self.spec.data.unit_id)
        units = (
            f"SELECT {unit} AS unit_id, date_diff('day', max({day}), {start}) AS r, count(*) AS f, "
            f"sum(CAST({_q(rfm.amount)} AS DOUBLE)) AS m FROM {self._table(rfm.source)} "
            f"WHERE {day} < {start} GROUP BY {unit}"
        )
        return rfm_cells(units, rfm.bins)

    def _absolute_cap(self, metric: AnyMetric, value: str) -> str:
        cap = _absolute(metric)
        return value if cap is None else f"LEAST({value}, {float(cap)!r})"

    def _caps(self) -> list[str]:
        """One CTE per percentile cap, its quantile over the units of the analysed arms (not the holdout,
        not undeclared labels), as DuckDB's ``quantile_cont``: with ``h = (n - 1) p``, the order
        statistics ``x_(floor h)`` and ``x_(ceil h)`` (0-based) interpolated linearly; 0 without values.
        Spark and Databricks run their exact ``percentile`` aggregate, which interpolates the same way;
        other dialects number the sorted values (sqlglot would turn ``PERCENTILE_CONT`` into an
        approximate quantile in Trino and Spark). Then ``promolab_caps``: one row of every cap."""
        if not self.percentile_capped:
            return []
        analysed = ", ".join(_literal(v.id) for v in self.spec.variants)
        ctes, caps = [], []
        for k, metric in enumerate(self.percentile_capped):
            value, share = _q("m:" + metric.id), f"CAST({_percentile(metric)!r} AS DOUBLE)"
            kept = f"FROM promolab_raw WHERE label IN ({analysed}) AND {value} IS NOT NULL"
            if self.dialect in ("spark", "databricks"):
                ctes.append(f"promolab_cap{k} AS (SELECT percentile({value}, {share}) AS cap {kept})")
            else:
                ranked = (
                    f"SELECT {value} AS v, ROW_NUMBER() OVER (ORDER BY {value}) - 1 AS r, "
                    f"(COUNT(*) OVER () - 1) * {share} AS h {kept}"
                )
                below, above = "r <= h AND h < r + 1", "r >= h AND r - 1 < h"  # r = floor(h), ceil(h)
                ctes.append(
                    f"promolab_cap{k} AS (SELECT max(CASE WHEN {below} THEN v END) + "
                    f"max(CASE WHEN {below} THEN h - r END) * (max(CASE WHEN {above} THEN v END) - "
                    f"max(CASE WHEN {below} THEN v END)) AS cap FROM ({ranked}) ranked)"
                )
            caps.append(f"coalesce(promolab_cap{k}.cap, 0) AS {_q('cap:' + metric.id)}")
        sources = " CROSS JOIN ".join(f"promolab_cap{k}" for k in range(len(self.percentile_capped)))
        return [*ctes, f"promolab_caps AS (SELECT {', '.join(caps)} FROM {sources})"]

    def _capped_units(self, values: Mapping[str, str]) -> str:
        """The units' values with the percentile caps applied."""
        if not self.percentile_capped:
            return "SELECT * FROM promolab_raw"
        capped = {"m:" + m.id for m in self.percentile_capped}
        columns = [
            f"LEAST(raw.{_q(alias)}, caps.{_q('cap:' + alias[2:])}) AS {_q(alias)}"
            if alias in capped
            else f"raw.{_q(alias)}"
            for alias in values
        ]
        joined = "promolab_raw raw CROSS JOIN promolab_caps caps"
        return f"SELECT raw.label, raw.unit_id, {', '.join(columns)} FROM {joined}"

    # ---- per segment

    def _segment_ctes(self) -> list[str]:
        """Per analysed label and segment of every segmentation: the metrics' means and co-moments."""
        analysed = ", ".join(_literal(v.id) for v in self.spec.variants)
        variables = ", ".join(_q(sql_name(v)) for v in self.layout.variables)
        stacked = " UNION ALL ".join(
            f"SELECT label, {_literal(s.name)} AS segmentation, {_q('seg:' + s.name)} AS segment, "
            f"{variables} FROM promolab_units WHERE label IN ({analysed})"
            for s in self.spec.analysis.segments
        )
        keys = ", ".join(SEGMENT_KEYS)
        means = ", ".join(
            f"avg({_q(sql_name(v))}) AS {_q(f'mean:{i}')}" for i, v in enumerate(self.layout.variables)
        )
        joined = " AND ".join(f"means.{k} = seg.{k}" for k in SEGMENT_KEYS)
        spread = ", ".join(f"{sql} AS {_q(alias)}" for alias, sql in self._comoments(segments=True).items())
        grouped = ", ".join(f"seg.{k}" for k in SEGMENT_KEYS)
        return [
            f"promolab_seg AS ({stacked})",
            f"promolab_seg_means AS (SELECT {keys}, count(*) AS n, {means} "
            f"FROM promolab_seg GROUP BY {keys})",
            f"promolab_seg_spread AS (SELECT {grouped}, {spread} FROM promolab_seg seg "
            f"JOIN promolab_seg_means means ON {joined} GROUP BY {grouped})",
        ]

    def _segment_rows(self) -> str:
        """The segments' rows, in the arms' columns (NULL where a segment has no statistic)."""
        means = {"n", *SEGMENT_KEYS, *(f"mean:{i}" for i in range(len(self.layout.variables)))}
        spread = set(self._comoments(segments=True))
        columns = [
            f"means.{_q(c)}" if c in means else f"spread.{_q(c)}" if c in spread else f"NULL AS {_q(c)}"
            for c in self.columns()
        ]
        joined = " AND ".join(f"spread.{k} = means.{k}" for k in SEGMENT_KEYS)
        return (
            f"SELECT {', '.join(columns)} FROM promolab_seg_means means "
            f"JOIN promolab_seg_spread spread ON {joined}"
        )

    # ---- per arm

    def _aggregate_columns(self) -> list[str]:
        return list(self._aggregate_map())

    def _aggregate_map(self) -> dict[str, str]:
        names = self.layout.moment_names()
        columns = {"n": "count(*)"}
        columns |= {alias: sql for alias, sql in moment_columns(names).items() if alias.startswith("mean:")}
        for metric in self.layout.ordinals:
            value = _q("m:" + metric.id)
            for level in metric.levels:
                columns[f"hist:{metric.id}:{level}"] = f"sum(CASE WHEN {value} = {level} THEN 1 ELSE 0 END)"
            levels = ", ".join(str(level) for level in metric.levels)
            columns[f"off levels:{metric.id}"] = (
                f"sum(CASE WHEN {value} IS NOT NULL AND {value} NOT IN ({levels}) THEN 1 ELSE 0 END)"
            )
        for name in self.layout.continuous:  # the hurdle model's log-moments (ln y of y > 0)
            value = _q("m:" + name)
            columns[f"log n:{name}"] = f"sum(CASE WHEN {value} > 0 THEN 1 ELSE 0 END)"
            columns[f"log mean:{name}"] = f"avg(CASE WHEN {value} > 0 THEN LN({value}) END)"
            columns[f"log negative:{name}"] = f"sum(CASE WHEN {value} < 0 THEN 1 ELSE 0 END)"
        for sourced in _sourced(self.spec):
            for check in _row_checks(sourced, "x"):
                name = f"{check}:{sourced.id}"
                columns[name] = f"sum({_q(name)})"
        columns |= {f"null:cov:{c}": f"count(*) - count({_q('cov:' + c)})" for c in self.layout.covariates}
        return columns

    def _aggregates(self) -> str:
        return ", ".join(f"{sql} AS {_q(alias)}" for alias, sql in self._aggregate_map().items())

    def _comoments(self, segments: bool = False) -> dict[str, str]:
        """Sums centred on the group's means (so that they do not cancel), from a join of the rows and
        the means: population co-moments (``sum(dx dy) / n``) of every moment name per label, of the
        metrics only per segment (``segments``: the rows come from ``seg``); per label also CUPED's power
        sums and the log-moments' sum of squares."""
        names = self.layout.variables if segments else self.layout.moment_names()
        rows = "seg" if segments else "units"
        columns = {}
        for i in range(len(names)):
            for j in range(i, len(names)):
                x = f"({rows}.{_q(sql_name(names[i]))} - means.{_q(f'mean:{i}')})"
                y = f"({rows}.{_q(sql_name(names[j]))} - means.{_q(f'mean:{j}')})"
                columns[f"comoment:{i}:{j}"] = f"sum({x} * {y}) / count(*)"
        index = {name: i for i, name in enumerate(names)}
        for alias, monomial in [] if segments else self.layout.power_monomials().items():
            factors = [  # about the arm's means: sums about 0 cancel for a mean far from zero
                f"(units.{_q(sql_name(v))} - means.{_q(f'mean:{index[v]}')})"
                for v, power in monomial
                for _ in range(power)
            ]
            columns[alias] = f"sum({' * '.join(factors)})" if factors else "CAST(count(*) AS DOUBLE)"
        for name in [] if segments else self.layout.continuous:  # the log-moments' sum of squares
            value = f"units.{_q('m:' + name)}"
            deviation = f"(LN({value}) - means.{_q(f'log mean:{name}')})"
            columns[f"log ss:{name}"] = f"sum(CASE WHEN {value} > 0 THEN {deviation} * {deviation} END)"
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


def _percentile(metric: AnyMetric) -> float | None:
    capping = getattr(metric, "capping", None)
    return None if capping is None else capping.percentile


def _absolute(metric: AnyMetric) -> float | None:
    capping = getattr(metric, "capping", None)
    return None if capping is None else capping.absolute


def _value(metric: SourcedMetric) -> str:
    """The metric's row value as a number (0 for a missing one with ``missing: zero``)."""
    if metric.column is None:
        return "1"
    value = f"CAST({_q(metric.column)} AS DOUBLE)"
    if isinstance(metric, BinaryMetric):
        value = f"CAST(CAST({_q(metric.column)} AS INTEGER) AS DOUBLE)"
    return f"coalesce({value}, 0)" if metric.missing_policy == "zero" else value


def _row_checks(metric: SourcedMetric, column: str) -> dict[str, str]:
    """(check, a row's term over the SQL ``column``) of a metric reading a column, summed per unit and
    per label, as the DuckDB engine's ``value_checks``: counts of missing and of impossible values (a
    binary value other than 0/1, as text whatever the column's type; a negative count); and, where a
    cap or a maximum would hide a NaN or an infinity (``LEAST(NaN, cap)`` is the cap), the sum of the
    values (``finite``), which is not finite exactly when one of them is not. No row predicate finds a
    NaN portably: engines sort it first, last or not at all, and DuckDB folds ``x <= c`` to true from
    Parquet statistics, which leave NaN out."""
    if metric.column is None:
        return {}
    checks = {"null": f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END"}
    hidden = getattr(metric, "capping", None) is not None or getattr(metric, "agg", None) == "max"
    if hidden and not isinstance(metric, BinaryMetric):
        checks["finite"] = f"CAST({column} AS DOUBLE)"
    if isinstance(metric, OrdinalMetric):
        levels = ", ".join(str(level) for level in metric.levels)
        checks["bad"] = f"CASE WHEN CAST({column} AS DOUBLE) NOT IN ({levels}) THEN 1 ELSE 0 END"
    elif isinstance(metric, BinaryMetric):  # Trino writes a double 1.0 as '1.0E0'
        forms = ", ".join(
            _literal(v)
            for v in ("0", "1", "0.0", "1.0", "0.0E0", "1.0E0", "true", "false", "TRUE", "FALSE", "t", "f")
        )
        checks["bad"] = (
            f"CASE WHEN {column} IS NOT NULL AND CAST({column} AS VARCHAR) NOT IN ({forms}) THEN 1 ELSE 0 END"
        )
    elif kind_of(metric).name == "count":
        checks["bad"] = f"CASE WHEN CAST({column} AS DOUBLE) < 0 THEN 1 ELSE 0 END"
    return checks


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


def refuse_untranslated(spec: ExperimentSpec, cuped: bool = True) -> None:
    """Raises SpecError for what the query does not translate (module docstring): row-numbered units
    files, and more covariates than power sums serve (the DuckDB engine then adjusts from a second pass
    over the rows, which a warehouse's few rows cannot give)."""
    problems = []
    if spec.data.row_id:
        problems.append(Problem(("data", "row_id"), "the warehouse query needs a unit id column"))
    expanded = expand(spec)
    layout = StatsLayout.of(expanded, cuped)
    crowded = [
        name
        for name in layout.variables
        if layout.adjusted(name) and len(layout.covariates_of(name)) > MAX_POWER_COVARIATES
    ]
    if crowded:
        problems.append(
            Problem(
                ("analysis", "covariates"),
                f"'{crowded[0]}' would be adjusted for {len(layout.covariates_of(crowded[0]))} covariates "
                f"(its own pre-period value included); the warehouse query serves at most "
                f"{MAX_POWER_COVARIATES}: give fewer, or use --no-cuped, or analyse with promolab's own "
                "engine",
            )
        )
    if problems:
        raise SpecError(problems)


def refuse_untimed(spec: ExperimentSpec, untimed: Collection[str]) -> None:
    """Raises DataError unless every ``untimed`` table is an event table read only by ordinal scores:
    the DuckDB engine counts every row of those, and refuses other tables without ``data.timestamp``."""
    for name in untimed:
        if name not in spec.data.tables:
            raise DataError(f"--untimed: '{printable(name)}' is not an event table of {spec.id}")
        if name in dated_tables(spec):
            raise DataError(
                f"the {name} table has no column '{printable(str(spec.data.timestamp))}' (data.timestamp), "
                "so its rows cannot be limited to the test window; only tables read by ordinal scores alone "
                "may lack it"
            )


def _check_assignments(spec: ExperimentSpec, checks: Mapping[str, Any], where: str) -> None:
    """What the DuckDB engine refuses in the assignments: rows without a unit id or a variant, units
    with two variants, units-file ids that repeat."""
    problems = []
    if int(checks["no id"] or 0):
        problems.append(
            f"{int(checks['no id']):,} assignment row(s) have no {spec.data.unit_id} (a missing value)"
        )
    if int(checks["no label"] or 0):
        problems.append(f"{int(checks['no label']):,} unit(s) have no variant (a missing value)")
    twice = int(checks["labelled units"] or 0) - int(checks["assigned units"] or 0)
    if twice:
        problems.append(f"{twice:,} unit(s) assigned to two variants")
    if int(checks.get("repeated units rows") or 0):
        problems.append(f"the units table repeats {int(checks['repeated units rows']):,} unit id(s)")
    for segmentation in spec.analysis.segments:
        if (rfm := segmentation.rfm) is not None and int(checks[f"bad amounts:{rfm.source}"] or 0):
            problems.append(
                f"{int(checks[f'bad amounts:{rfm.source}']):,} row(s) of '{rfm.source}' column "
                f"'{printable(rfm.amount)}' are missing or not finite (RFM segments need every "
                "pre-period order's amount)"
            )
    if problems:
        raise DataError([f"{where}: {p}" for p in problems])


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
    for metric in _sourced(spec):
        checks = _row_checks(metric, "x")
        counts = {check: int(row[f"{check}:{metric.id}"] or 0) for check in checks if check != "finite"}
        column = f"'{printable(str(metric.column))}'"
        if counts.get("null") and metric.missing_policy == "error":
            problems.append(f"metric '{metric.id}': {counts['null']:,} missing value(s) in {column}")
        if counts.get("bad"):
            problems.append(f"metric '{metric.id}': {counts['bad']:,} impossible value(s) in {column} "
                            f"({kind_of(metric).bad_value_meaning(metric)})")  # fmt: skip
        total = row.get(f"finite:{metric.id}", 0.0)
        if "finite" in checks and (total is None or not np.isfinite(float(total))):
            problems.append(
                f"metric '{metric.id}': value(s) in {column} are not finite (NaN or infinite), which its cap "
                "or maximum would hide"
            )
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
