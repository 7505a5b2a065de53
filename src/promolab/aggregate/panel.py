"""A rollout's panel read once by DuckDB: every metric summed per unit and period of the spec's grain,
from ``rollout.pre_start`` to the end of the post window, with the checks that keep a wrong number out.

Refused with a :class:`DataError` naming the file and column: a missing or non-numeric column, rows
whose date does not parse or whose unit id is empty, missing or non-finite metric values, treated ids
that no row has, a treated column that is not 0/1, and a panel that is not balanced (every unit needs
every period: the estimators compare the same periods across units).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from promolab.aggregate.duck import engine_limits
from promolab.aggregate.inputs import Source, file_source, frame_source, is_numeric, quote
from promolab.aggregate.sql import date_of
from promolab.errors import DataError, printable, quoted
from promolab.sources import DataPath, RemoteInput
from promolab.spec.rollout import TreatedColumn, next_period, period_start

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from promolab.spec.rollout import RolloutSpec

TREATED = "__treated"  # the panel frame's 0/1 column of the treated column form
SHOWN = 5  # examples named in a message


@dataclass(frozen=True)
class Panel:
    """Per unit and period sums of every metric (and means of the regressors) of a rollout.

    ``frame`` has columns ``unit`` (text), ``period`` (the period's first day), one per metric id and
    regressor, and ``__treated`` (0/1) with the treated column form. ``starts`` maps each treated unit
    to its first promoted period (the spec's start, or the column's first 1).
    """

    frame: pd.DataFrame
    treated: tuple[str, ...]
    controls: tuple[str, ...]
    periods: tuple[dt.date, ...]
    starts: dict[str, dt.date]
    rows: int  # rows read in the fitting and measured periods
    where: str  # the file, for messages

    @property
    def staggered(self) -> bool:
        """Treated units started in different periods."""
        return len(set(self.starts.values())) > 1


def read_panel(spec: RolloutSpec, path: DataPath | pd.DataFrame, history: bool = False) -> Panel:
    """Read, check and aggregate the panel (a file, or a DataFrame from a notebook) for ``spec``; with
    ``history``, only the periods before ``start`` (a planned rollout's design)."""
    import duckdb

    con = duckdb.connect(config=engine_limits())
    try:
        if isinstance(path, Path | RemoteInput):
            source = file_source(con, "panel", path)
        else:
            source = frame_source(con, "panel", path, "panel_frame")
        _check_columns(spec, source)
        last = spec.start - dt.timedelta(days=1) if history else spec.stop
        _check_rows(con, spec, source, last)
        frame = _aggregate(con, spec, source, last)
    finally:
        con.close()
    return _panel(spec, frame, source.where, last)


def _value_columns(spec: RolloutSpec) -> dict[str, str]:
    """Output name -> panel column of every numeric input (metrics, regressors, treated column)."""
    columns = {m.id: m.column for m in spec.metrics}
    columns |= {r: r for r in spec.rollout.regressors}
    if isinstance(spec.rollout.treated, TreatedColumn):
        columns[TREATED] = spec.rollout.treated.column
    return columns


def _check_columns(spec: RolloutSpec, source: Source) -> None:
    problems = []
    for name in (spec.data.unit_id, spec.data.timestamp):
        if name not in source.columns:
            problems.append(f"{source.where}: no column '{printable(name)}' ({_field(spec, name)})")
    for name, column in _value_columns(spec).items():
        if column not in source.columns:
            problems.append(f"{source.where}: no column '{printable(column)}' ({_field(spec, name)})")
        elif not is_numeric(source.columns[column]):
            problems.append(
                f"{source.where}: column '{printable(column)}' ({_field(spec, name)}) holds "
                f"{source.columns[column]}; expected numbers"
            )
    if problems:
        raise DataError(problems)


def _field(spec: RolloutSpec, name: str) -> str:
    """The spec field that names a column, for messages."""
    if name == TREATED:
        return "rollout.treated.column"
    if name in spec.rollout.regressors:
        return "rollout.regressors"
    if name == spec.data.unit_id:
        return "data.unit_id"
    if name == spec.data.timestamp:
        return "data.timestamp"
    return f"metric '{name}'"


def _window_sql(spec: RolloutSpec, last: dt.date) -> tuple[str, dict[str, object]]:
    """Rows from ``pre_start`` to ``last``."""
    return f"{date_of(spec.data.timestamp)} BETWEEN $first AND $last", {
        "first": spec.rollout.pre_start,
        "last": last,
    }


def _check_rows(con: duckdb.DuckDBPyConnection, spec: RolloutSpec, source: Source, last: dt.date) -> None:
    """Undated rows, empty unit ids, and missing or non-finite values in the measured periods."""
    ts, unit = quote(spec.data.timestamp), quote(spec.data.unit_id)
    counts = [
        f"COUNT(*) FILTER (WHERE {ts} IS NOT NULL AND {date_of(spec.data.timestamp)} IS NULL)",
        f"COUNT(*) FILTER (WHERE {ts} IS NULL)",
    ]
    inside, params = _window_sql(spec, last)
    values = _value_columns(spec)
    counts.append(f"COUNT(*) FILTER (WHERE ({inside}) AND {unit} IS NULL)")
    for column in values.values():
        value = f"CAST({quote(column)} AS DOUBLE)"
        counts.append(f"COUNT(*) FILTER (WHERE ({inside}) AND ({value} IS NULL OR NOT isfinite({value})))")
    flag = quote(values.get(TREATED, "")) if TREATED in values else "0"
    counts.append(f"COUNT(*) FILTER (WHERE ({inside}) AND CAST({flag} AS DOUBLE) NOT IN (0, 1))")
    row = con.execute(f"SELECT {', '.join(counts)} FROM {source.sql}", {**source.params, **params}).fetchone()
    assert row is not None
    unparsed, undated, no_unit, *bad, not_flags = (int(v) for v in row)
    problems = []
    if not_flags:
        column = printable(values[TREATED])
        problems.append(f"{not_flags:,} rows have a '{column}' (rollout.treated.column) that is not 0 or 1")
    repeated = con.execute(
        f"SELECT CAST({unit} AS VARCHAR), CAST({ts} AS VARCHAR), COUNT(*) OVER () FROM {source.sql} "
        f"WHERE {inside} GROUP BY {unit}, {ts} HAVING COUNT(*) > 1 LIMIT 1",
        {**source.params, **params},
    ).fetchone()
    if repeated:
        problems.append(
            f"{int(repeated[2]):,} ('{printable(spec.data.unit_id)}', '{printable(spec.data.timestamp)}') "
            f"pairs are on more than one row (e.g. '{printable(repeated[0])}' at {printable(repeated[1])}); "
            "a panel has one row per unit and time: sum them first, or drop the duplicates"
        )
    if unparsed:
        problems.append(f"{unparsed:,} rows have a '{printable(spec.data.timestamp)}' that is not a date")
    if undated:
        problems.append(f"{undated:,} rows have no '{printable(spec.data.timestamp)}'")
    if no_unit:
        problems.append(f"{no_unit:,} rows in the measured periods have no '{printable(spec.data.unit_id)}'")
    for (name, column), count in zip(values.items(), bad, strict=True):
        if count:
            problems.append(
                f"{count:,} rows in the measured periods have a missing or non-finite "
                f"'{printable(column)}' ({_field(spec, name)}); a rollout needs every value"
            )
    if problems:
        raise DataError([f"{source.where}: {p}" for p in problems])


def _aggregate(
    con: duckdb.DuckDBPyConnection, spec: RolloutSpec, source: Source, last: dt.date
) -> pd.DataFrame:
    """One row per unit and period: metric sums, regressor means, the treated column's maximum."""
    inside, params = _window_sql(spec, last)
    grain = spec.rollout.grain
    period = f"CAST(date_trunc('{grain}', {date_of(spec.data.timestamp)}) AS DATE)"
    parts = []
    for name, column in _value_columns(spec).items():
        value = f"CAST({quote(column)} AS DOUBLE)"
        how = "AVG" if name in spec.rollout.regressors else ("MAX" if name == TREATED else "SUM")
        parts.append(f"{how}({value}) AS {quote(name)}")
    sql = (
        f"SELECT CAST({quote(spec.data.unit_id)} AS VARCHAR) AS unit, {period} AS period, "
        f"COUNT(*) AS __rows, COUNT(DISTINCT {date_of(spec.data.timestamp)}) AS __dates, {', '.join(parts)} "
        f"FROM {source.sql} WHERE {inside} GROUP BY 1, 2 ORDER BY 1, 2"
    )
    frame = con.execute(sql, {**source.params, **params}).df()
    frame["period"] = [d.date() if hasattr(d, "date") else d for d in frame["period"]]
    return frame


def _panel(spec: RolloutSpec, frame: pd.DataFrame, where: str, last: dt.date) -> Panel:
    if frame.empty:
        raise DataError(f"{where}: no rows dated {spec.rollout.pre_start} to {last}")
    units = sorted(frame["unit"].unique())
    treated, starts = _treated(spec, frame, units, where, last < spec.start)
    periods = _periods(spec.rollout.pre_start, last, spec.rollout.grain)
    _check_balance(frame, units, periods, where, spec.rollout.grain)
    _check_dates(frame, where, spec.rollout.grain)
    rows = int(frame.pop("__rows").sum())
    controls = tuple(u for u in units if u not in set(treated))
    return Panel(frame, treated, controls, periods, starts, rows, where)


def _treated(
    spec: RolloutSpec, frame: pd.DataFrame, units: list[str], where: str, history: bool
) -> tuple[tuple[str, ...], dict[str, dt.date]]:
    """The treated units and the first period each was promoted in (the column form needs the
    promotion's periods: a planned rollout lists its units)."""
    given = spec.rollout.treated
    first = period_start(spec.start, spec.rollout.grain)
    if not isinstance(given, TreatedColumn):
        unknown = [t for t in given if t not in set(units)]
        if unknown:
            from promolab.spec.hints import did_you_mean

            hint = did_you_mean(unknown[0], units)
            raise DataError(
                f"{where}: rollout.treated names {quoted(unknown[:SHOWN])}, which no row of "
                f"'{printable(spec.data.unit_id)}' has{hint} ({len(units)} units in the panel)"
            )
        return tuple(given), dict.fromkeys(given, first)
    if history:
        raise DataError(f"{where}: a planned rollout's design needs rollout.treated as a list of unit ids")
    flags = frame[TREATED]
    if not flags.isin([0, 1]).all():
        raise DataError(
            f"{where}: column '{printable(given.column)}' (rollout.treated.column) must be 0 or 1"
        )
    on = frame[flags == 1]
    if on.empty:
        raise DataError(
            f"{where}: column '{printable(given.column)}' is 1 in no measured period: no unit is treated"
        )
    starts = {str(u): d for u, d in on.groupby("unit")["period"].min().items()}
    early = sorted(u for u, d in starts.items() if d < first)
    if early:
        raise DataError(
            f"{where}: units {quoted(early[:SHOWN])} are promoted before start ({spec.start}); "
            "move start or rollout.pre_start so the fitting period has no promotion"
        )
    last = period_start(spec.end, spec.rollout.grain)
    late = sorted({str(u) for u in on.loc[on["period"] > last, "unit"]})
    if late:
        raise DataError(
            f"{where}: column '{printable(given.column)}' is 1 after end ({spec.end}) for "
            f"{quoted(late[:SHOWN])}; the post window has no promotion: move end, or set the column to 0"
        )
    promoted = frame[frame["unit"].isin(starts)]
    gaps = promoted[
        (promoted["period"] >= promoted["unit"].map(starts))
        & (promoted[TREATED] == 0)
        & (promoted["period"] <= last)
    ]
    if not gaps.empty:
        raise DataError(
            f"{where}: column '{printable(given.column)}' switches off before end for "
            f"'{printable(gaps.iloc[0]['unit'])}' ({gaps.iloc[0]['period']}); a promotion stays on from a "
            "unit's start to end"
        )
    if len(set(starts.values())) == 1 and next(iter(starts.values())) != first:
        raise DataError(
            f"{where}: column '{printable(given.column)}' turns on in the {spec.rollout.grain} of "
            f"{next(iter(starts.values()))}, but start is {spec.start}: make them agree"
        )
    return tuple(sorted(starts)), starts


def _periods(first: dt.date, last: dt.date, grain: str) -> tuple[dt.date, ...]:
    """Every period from ``first`` to ``last``."""
    day, periods = first, []
    while day <= last:
        periods.append(period_start(day, grain))
        day = next_period(periods[-1], grain)
    return tuple(periods)


def _check_dates(frame: pd.DataFrame, where: str, grain: str) -> None:
    """Within each period every unit has as many dates as the unit with the most (a week with a missing
    day would otherwise be read as a week of low sales)."""
    most = frame.groupby("period")["__dates"].transform("max")
    short = frame[frame.pop("__dates") < most]
    if short.empty:
        return
    first = short.iloc[0]
    raise DataError(
        f"{where}: {len(short)} unit-{grain}s have fewer dates than other units in the same {grain} (e.g. "
        f"'{printable(first['unit'])}' in the {grain} of {first['period']}); a rollout needs every unit on "
        "every date: fill true zeros in the file, or drop the unit"
    )


def _check_balance(
    frame: pd.DataFrame, units: list[str], periods: tuple[dt.date, ...], where: str, grain: str
) -> None:
    """Every unit has a row in every period (no gaps the estimators would read as zero sales)."""
    counts = frame.groupby("unit")["period"].nunique()
    short = counts[counts < len(periods)]
    if short.empty:
        return
    unit = str(short.index[0])
    have = set(frame.loc[frame["unit"] == unit, "period"])
    missing = [str(p) for p in periods if p not in have][:SHOWN]
    raise DataError(
        f"{where}: {len(short)} of {len(units)} units lack rows in some {grain}s of the periods read "
        f"(e.g. '{printable(unit)}' has none for {', '.join(missing)}); a rollout "
        "needs every unit in every period: fill true zeros in the file, or drop the unit"
    )
