"""The data of each day's look at a running test, reading every event row once (``promolab monitor``).

A look at day ``d`` analyses the data as they stood at the end of ``d``: every event row dated up to
``d``. A unit's value of a metric aggregates its rows, so it is kept as a *partial* that merges over
disjoint sets of rows (:meth:`promolab.kinds.base.Kind.merge`): sums, counts and check counts add,
maxima take the larger, a mean keeps its sum and its number of values. The state is those partials per
unit and event table, i.e. the event-table half of ``unit_values``. The first look reads every row up
to its day (the pre-period, which CUPED's own-history covariates need, and undated rows, which the
checks count); each later look reads only the rows dated after the last day read, aggregates them per
unit and merges them in (a full outer join on the unit id). A look's statistics then come from the
state as those of any aggregation do (:class:`~promolab.aggregate.duck.DuckAggregation`): the
assignments and units file joined, the checks, capping and one pass for the moments. A look costs its
new rows plus one pass over the units, whatever the test's age.

The state persists in a DuckDB file (:class:`LookState`) with the spec's hash, the inputs' fingerprint
and each look's results, so a daily run reads only the new day. Event tables are taken as append-only
(the usual event log): rows of days already read are not read again, but they are counted (one pass
over the date column, skipping nothing: about 0.1 s for 5 million rows), and a different count (rows
that arrived late, a re-export) is refused, as is any change of the spec or of the assignments and
units files. Writes go to a copy that replaces the file at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promolab.aggregate.checks import EventTable
from promolab.aggregate.duck import DuckAggregation, _Plan
from promolab.aggregate.inputs import quote
from promolab.aggregate.values import unit_partials
from promolab.errors import DataError, printable
from promolab.kinds import kind_of
from promolab.sources import DataPath, input_files
from promolab.spec import ExperimentSpec
from promolab.spec.models import AnyMetric
from promolab.stats.moments import ExperimentStats

if TYPE_CHECKING:
    import duckdb

    from promolab.aggregate.inputs import Source

STORE = "looks_state"  # the attached database holding the state
LAST_DATE = dt.date(9999, 12, 30)  # the day after it is still a date: "no upper bound"
FORMAT = 2  # version of the state file's layout (2: inputs fingerprinted file by file)


class LookAggregation(DuckAggregation):
    """Per-unit partials merged day by day (module docstring); :meth:`stats` of the rows read so far."""

    def __init__(
        self,
        spec: ExperimentSpec,
        con: duckdb.DuckDBPyConnection,
        sources: Mapping[str, Source],
        covariates: Sequence[str],
        own_covariates: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(spec, con, sources, covariates, (), own_covariates)
        self.reading: tuple[dt.date | None, dt.date] | None = None  # (after, through) while reading
        self.so_far = True

    def read(self, after: dt.date | None, through: dt.date) -> dict[str, int]:
        """Merge the event rows dated after ``after`` through ``through`` into the state (``after``
        None: every row through ``through``, and the undated ones). Returns the rows read per table."""
        plan = self._dated_plan()
        self.reading = (after, through)
        try:
            params = plan.params | _range_params(after, through)
            read = {}
            for table in plan.tables:
                rows = self._table_cte(table, _Plan(params=params))
                read[table.source.name] = self._merge(table, rows, params)
            return read
        finally:
            self.reading = None

    def stats_now(self) -> ExperimentStats:
        """The per-arm statistics of the rows read so far (every check of :meth:`compute_stats`)."""
        self.build_unit_table(self.distinct_assignments, materialise=True)
        self.compute_stats()
        return self.stats

    def last_day(self, after: dt.date | None, through: dt.date = LAST_DATE) -> dt.date | None:
        """The last date of an event row dated after ``after`` through ``through`` (None: no such
        row); only those rows are read when the date column can skip row groups."""
        plan = self._dated_plan()
        params = _range_params(after, through)
        days = []
        for t in plan.tables:
            where = self._dated_between(t, after, through)
            query = f"SELECT max({self._day()}) FROM {t.source.sql} WHERE {where}"
            days.append(self._run(query, t.source.params | params).fetchone())
        found = [d[0] for d in days if d is not None and d[0] is not None]
        return max(found) if found else None

    def has_rows_after(self, day: dt.date) -> bool:
        """Some event row is dated after ``day``: the data are complete through ``day``."""
        plan = self._dated_plan()
        params = _range_params(day, LAST_DATE)
        for t in plan.tables:
            where = self._dated_between(t, day, LAST_DATE)
            if self._run(
                f"SELECT 1 FROM {t.source.sql} WHERE {where} LIMIT 1", t.source.params | params
            ).fetchone():
                return True
        return False

    @contextmanager
    def provisionally(self) -> Iterator[None]:
        """Rows read inside the block are forgotten after it: the state is as it was before."""
        kept = self._state_tables()
        for name in kept:
            copy, state = f"{STORE}.{quote('keep_' + name)}", f"{STORE}.{quote(name)}"
            self._run(f"CREATE OR REPLACE TABLE {copy} AS SELECT * FROM {state}")
        try:
            yield
        finally:
            for name in self._state_tables():
                self._run(f"DROP TABLE {STORE}.{quote(name)}")
            for name in kept:
                self._run(f"ALTER TABLE {STORE}.{quote('keep_' + name)} RENAME TO {quote(name)}")

    def _state_tables(self) -> list[str]:
        rows = self._run(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = $db AND regexp_matches(table_name, '^t[0-9]+$')",
            {"db": STORE},
        ).fetchall()
        return [str(r[0]) for r in rows]

    def rows_through(self, day: dt.date) -> dict[str, int]:
        """Rows of each event table dated through ``day`` (and undated): what the looks through ``day``
        read, to notice rows that arrive late for days already read."""
        plan = self._dated_plan()
        params = _range_params(None, day)
        found = {}
        for t in plan.tables:
            where = self._dated_between(t, None, day)
            row = self._run(
                f"SELECT count(*) FROM {t.source.sql} WHERE {where}", t.source.params | params
            ).fetchone()
            found[t.source.name] = int(row[0]) if row else 0
        return found

    def _dated_plan(self) -> _Plan:
        """The plan of ``unit_values``, after checking that every event table it reads is dated."""
        plan = self._unit_plan(distinct_assignments=False)
        for table in plan.tables:
            if not table.windowed:
                raise DataError(
                    f"{table.source.where}: has no '{self.spec.data.timestamp}' column (data.timestamp): "
                    "its rows cannot be dated, so no look can tell which of them it has"
                )
        return plan

    # ------------------------------------------------------------------ hooks of DuckAggregation

    def _table_cte(self, table: EventTable, plan: _Plan) -> str:
        query = super()._table_cte(table, plan)  # also registers the table's checks in the plan
        return query if self.reading else self._finished(table)

    def _unit_values(self, metric: AnyMetric, counted: str | None) -> list[tuple[str, str]]:
        return unit_partials(metric, counted) if self.reading else super()._unit_values(metric, counted)

    def _rows_read(self, table: EventTable) -> str:
        if self.reading is None:
            return ""
        after, through = self.reading
        return " WHERE " + self._dated_between(table, after, through)

    def _dated_between(self, table: EventTable, after: dt.date | None, through: dt.date) -> str:
        """Rows dated after ``after`` through ``through`` (``after`` None: every row through
        ``through``, and the undated ones). A date or time column is compared as it is stored (the
        same rows, since its day grows with it), which lets DuckDB skip the Parquet row groups outside
        the range by their statistics; text is read as a date first
        (:func:`promolab.aggregate.sql.date_of`)."""
        column = str(self.spec.data.timestamp)
        stored = _STORED.get(table.source.columns.get(column, ""))
        if stored is None:
            value, since, until = self._day(), "$after", "$through"
            lower, upper = f"{value} > {since}", f"{value} <= {until}"
        else:
            value = quote(column)
            lower, upper = f"{value} >= CAST($since AS {stored})", f"{value} < CAST($until AS {stored})"
        if after is None:
            return f"({upper} OR {value} IS NULL)"
        return f"{lower} AND {upper}"

    # ------------------------------------------------------------------ the state

    def _state(self, table: EventTable) -> str:
        return f"{STORE}.{quote(f't{table.index}')}"

    def _finished(self, table: EventTable) -> str:
        """The state of a table as its per-unit values: a mean is its sum over its count."""
        means = [m.id for m in table.metrics if kind_of(m).merge(m) == "mean"]
        divided = ", ".join(
            f"{quote('m:' + m)} / nullif({quote('n:' + m)}, 0) AS {quote('m:' + m)}" for m in means
        )
        replace = f" REPLACE ({divided})" if means else ""
        return f"SELECT *{replace} FROM {self._state(table)}"

    def _merge(self, table: EventTable, rows: str, params: Mapping[str, Any]) -> int:
        """Merge the per-unit partials of ``rows`` into the table's state; returns the rows read."""
        state = self._state(table)
        exists = self._run(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = $db AND table_name = $name",
            {"db": STORE, "name": f"t{table.index}"},
        ).fetchone()
        self._run(f"CREATE OR REPLACE TEMP TABLE new_rows AS {rows}", params)
        read = self._run(f"SELECT coalesce(sum({quote(f'rows:{table.index}')}), 0) FROM new_rows").fetchone()
        if not exists or not exists[0]:
            self._run(f"CREATE TABLE {state} AS SELECT * FROM new_rows")
        else:
            names = [r[0] for r in self._run("SELECT name FROM pragma_table_info('new_rows')").fetchall()]
            merged = ", ".join(_merged(name, table.metrics) for name in names if name != "unit_id")
            self._run(
                f"CREATE OR REPLACE TEMP TABLE merged AS SELECT unit_id, {merged} "
                f"FROM {state} s FULL JOIN new_rows d USING (unit_id)"
            )
            self._run(f"DELETE FROM {state}")
            self._run(f"INSERT INTO {state} SELECT * FROM merged")
        return int(read[0]) if read else 0


_STORED = {  # DuckDB type of a date or time column -> the type its range bounds are cast to
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMP_S": "TIMESTAMP",
    "TIMESTAMP_MS": "TIMESTAMP",
    "TIMESTAMP_NS": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
}


def _range_params(after: dt.date | None, through: dt.date) -> dict[str, Any]:
    """Bounds of the rows dated after ``after`` through ``through``: as dates, and as the first day
    after ``after`` and the first day after ``through`` (midnight, UTC for zoned times)."""
    since = None if after is None else after + dt.timedelta(days=1)
    return {"after": after, "through": through, "since": since, "until": through + dt.timedelta(days=1)}


def _merged(column: str, metrics: Sequence[AnyMetric]) -> str:
    """The merge of a state column ``s`` with the new rows' ``d``: counts add; a metric's partial by its
    kind (NULL, a unit without rows, is the identity)."""
    s, d = f"s.{quote(column)}", f"d.{quote(column)}"
    rule = "sum"
    if column.startswith("m:"):
        metric = next(m for m in metrics if m.id == column[2:])
        rule = kind_of(metric).merge(metric)
    if rule == "max":
        value = f"greatest({s}, {d})"
    elif column.startswith("m:"):
        value = f"coalesce({s} + {d}, {s}, {d})"
    else:
        value = f"coalesce({s}, 0) + coalesce({d}, 0)"
    return f"{value} AS {quote(column)}"


class LookState:
    """The looks' state file: its identity (spec hash, inputs' fingerprint), the last day read and each
    look's stored results, in the database attached as ``STORE``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, where: str) -> None:
        self.con, self.where = con, where

    def check(self, identity: Mapping[str, Any]) -> None:
        """Refuse a state written for another spec or other inputs (``identity``), or by a newer
        promolab; a new state records ``identity``."""
        stored = self._meta("identity")
        if stored is None:
            self._set("identity", identity)
            self._set("format", FORMAT)
            return
        if self._meta("format") != FORMAT:
            raise DataError(
                f"{self.where}: written by another promolab version's monitor: remove it to start over"
            )
        if stored.get("experiment") != identity.get("experiment"):
            raise DataError(
                f"{self.where}: holds the looks of experiment '{printable(str(stored.get('experiment')))}', "
                "not this one: choose another --state (or --json folder)"
            )
        for key, value in identity.items():
            if stored.get(key) != value:
                raise DataError(
                    f"{self.where}: was written with another {_described(key)}: "
                    "remove the state file, or pass --rebuild, to read the data again from the start"
                )

    def last_read(self) -> tuple[dt.date | None, dict[str, int]]:
        """The last day read, and the rows each event table had through it."""
        found = self._meta("last_read")
        if found is None:
            return None, {}
        return dt.date.fromisoformat(found["day"]), dict(found["rows"])

    def record(self, look: Mapping[str, Any]) -> None:
        """A look's results (``look["date"]`` its day)."""
        self.con.execute(
            f"INSERT INTO {STORE}.looks VALUES ($day, $look)",
            {"day": dt.date.fromisoformat(look["date"]), "look": json.dumps(look)},
        )

    def mark_read(self, day: dt.date, rows_through_day: Mapping[str, int]) -> None:
        """``day`` as the last day read, with the rows each event table had through it."""
        self._set("last_read", {"day": day.isoformat(), "rows": dict(rows_through_day)})

    def looks(self) -> list[dict[str, Any]]:
        rows = self.con.execute(f"SELECT look FROM {STORE}.looks ORDER BY day").fetchall()
        return [json.loads(r[0]) for r in rows]

    def _meta(self, key: str) -> Any:
        row = self.con.execute(f"SELECT value FROM {STORE}.meta WHERE key = $key", {"key": key}).fetchone()
        return None if row is None else json.loads(row[0])

    def _set(self, key: str, value: Any) -> None:
        self.con.execute(f"DELETE FROM {STORE}.meta WHERE key = $key", {"key": key})
        self.con.execute(
            f"INSERT INTO {STORE}.meta VALUES ($key, $value)", {"key": key, "value": json.dumps(value)}
        )


@contextmanager
def attached(con: duckdb.DuckDBPyConnection, path: Path | None, rebuild: bool = False) -> Iterator[LookState]:
    """The state attached as ``STORE``: in memory without ``path``; else a copy of ``path`` (new, or
    emptied with ``rebuild``) that replaces it when the block ends without an error."""
    if path is None:
        con.execute(f"ATTACH ':memory:' AS {STORE}")
        _create(con)
        yield LookState(con, "the looks' state")
        return
    if path.exists() and not path.is_file():
        raise DataError(f"{printable(path)}: the looks' state must be a file")
    if not path.parent.is_dir():
        raise DataError(f"{printable(path)}: its folder does not exist")
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    copy = Path(name)
    try:
        copy.unlink()
        if path.exists() and not rebuild:
            shutil.copyfile(path, copy)
        try:
            con.execute(f"ATTACH $path AS {STORE}", {"path": str(copy)})
        except Exception as error:  # duckdb.Error: not a DuckDB file
            raise DataError(f"{printable(path)}: not a looks' state file ({error})") from None
        _check_layout(con, printable(path))
        _create(con)
        yield LookState(con, printable(path))
        con.execute(f"DETACH {STORE}")
        os.replace(copy, path)
    finally:
        copy.unlink(missing_ok=True)


def _check_layout(con: duckdb.DuckDBPyConnection, where: str) -> None:
    """An attached file is new (no tables) or has a state's tables (``meta``, ``looks``, ``t<k>``) with
    its identity: any other DuckDB database is refused, not written into."""
    tables = {
        str(r[0])
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = $db", {"db": STORE}
        ).fetchall()
    }
    if not tables:
        return
    ours = {"meta", "looks"} <= tables and all(t in ("meta", "looks") or t[1:].isdigit() for t in tables)
    if ours:
        columns = con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = $db AND table_name = 'meta'",
            {"db": STORE},
        ).fetchall()
        ours = [c[0] for c in columns] == ["key", "value"]
    if ours:
        ours = con.execute(f"SELECT count(*) FROM {STORE}.meta WHERE key = 'identity'").fetchone() == (1,)
    if not ours:
        raise DataError(f"{where}: a DuckDB database that is not a looks' state file; choose another --state")


def _create(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS {STORE}.meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute(f"CREATE TABLE IF NOT EXISTS {STORE}.looks (day DATE PRIMARY KEY, look VARCHAR)")


def file_identity(paths: Mapping[str, DataPath]) -> dict[str, list[Any]]:
    """Each input's files (a file, a folder's or a pattern's) with their size and modification time
    (ns), by data name.

    Raises:
        DataError: a remote input, whose change promolab cannot see.
    """
    found = {}
    for name, path in sorted(paths.items()):
        files = input_files(path, name).files
        if not all(isinstance(f, Path) for f in files):
            raise DataError(
                f"{printable(path)}: a looks' state needs the {name} as local files (it records their "
                "size and time, to refuse a state built from other ones); copy them here, or run without "
                "--state"
            )
        found[name] = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if isinstance(f, Path)]
    return found


def _described(key: str) -> str:
    return {"spec": "version of the spec", "files": "assignments or units file", "cuped": "--cuped setting"}[
        key
    ]
