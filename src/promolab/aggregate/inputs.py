"""The input tables of an aggregation, checked before any statistic is computed.

A source is a CSV or Parquet file (read by DuckDB's table functions with its path bound as a parameter)
or a registered pandas DataFrame. Before the statistics query runs, every source is described once and
checked, so that no column is misread:

- each column the spec reads exists, once (a repeated CSV header or Parquet field is an error: DuckDB
  would silently read the first), with a numeric or boolean type where a number is needed;
- the unit ids of every table have one kind: integers (integral floats up to 2^53 count as integers and
  are read as BIGINT; beyond 2^53 a float cannot tell neighbouring ids apart), or text. Mixing integers
  and text between tables is an error naming both files (the join would match nothing).

Identifiers are quoted; paths and values are bound as parameters: no SQL is built from user strings.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promolab.errors import DataError, first_line, printable, quoted
from promolab.sources import (
    DataPath,
    InputFiles,
    RemoteInput,
    engine_reason,
    input_files,
    refuse_repeated_names,
)
from promolab.spec import ExperimentSpec
from promolab.spec.models import UNITS_SOURCE, AnyMetric, OrdinalMetric, RatioMetric, Segmentation
from promolab.spec.windows import PARTS, split_id, split_money

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

_SIGNED = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
INTEGER_TYPES = (*_SIGNED, *(f"U{t}" for t in _SIGNED))
FLOAT_TYPES = ("FLOAT", "DOUBLE")
NUMERIC_TYPES = (*INTEGER_TYPES, *FLOAT_TYPES, "BOOLEAN")  # with DECIMAL(p,s): see is_numeric
_DECIMAL = re.compile(r"^DECIMAL\(\d+,(\d+)\)$")
MAX_EXACT_FLOAT_ID = 2**53  # beyond this, a float id cannot tell neighbouring integers apart


def quote(identifier: str) -> str:
    """A SQL identifier, double-quoted with inner quotes doubled."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class Source:
    """One input table: its SQL (a table function with a bound path, or a registered view), where it
    came from (for messages), its columns and types, and the SQL that reads its unit id (the column,
    cast to BIGINT when it holds integral floats; set by :func:`check_unit_ids`)."""

    name: str
    sql: str
    where: str
    columns: dict[str, str]
    params: dict[str, Any]
    kind: str  # "parquet", "csv" or "frame"
    unit_id: str = ""


def is_numeric(duck_type: str) -> bool:
    """A scalar number or boolean (not a list of them: ``DOUBLE[]`` is not numeric).

    >>> [is_numeric(t) for t in ("DOUBLE", "DECIMAL(18,3)", "BOOLEAN", "DOUBLE[]", "VARCHAR")]
    [True, True, True, False, False]
    """
    return duck_type in NUMERIC_TYPES or _DECIMAL.match(duck_type) is not None


def id_kind(duck_type: str) -> str:
    """``integer``, ``float`` or ``text`` for a DuckDB column type, else the type itself.

    >>> [id_kind(t) for t in ("BIGINT", "DECIMAL(18,0)", "DOUBLE", "VARCHAR", "DATE", "BIGINT[]")]
    ['integer', 'integer', 'float', 'text', 'DATE', 'BIGINT[]']
    """
    decimal = _DECIMAL.match(duck_type)
    if duck_type in INTEGER_TYPES or (decimal is not None and decimal.group(1) == "0"):
        return "integer"
    if duck_type in FLOAT_TYPES or decimal is not None:
        return "float"
    if duck_type == "VARCHAR":
        return "text"
    return duck_type


def metric_source(metric: AnyMetric) -> str | None:
    """The table a metric reads (None for ratio metrics)."""
    return None if isinstance(metric, RatioMetric) else metric.source


def metric_column(metric: AnyMetric) -> str | None:
    """The column a metric reads, if any."""
    return None if isinstance(metric, RatioMetric) else metric.column


def open_sources(
    con: duckdb.DuckDBPyConnection,
    spec: ExperimentSpec,
    paths: Mapping[str, DataPath],
    frames: Mapping[str, pd.DataFrame],
    segments: Sequence[Segmentation] = (),
) -> dict[str, Source]:
    """Describe every table the spec needs (files or DataFrames), refusing repeated column names."""
    needed = {"assignments"} if spec.data.assignments else set()
    needed |= {s for m in spec.metrics if (s := metric_source(m)) is not None}
    needed |= {s.rfm.source for s in segments if s.rfm is not None}
    if spec.data.assignments is None or spec.analysis.covariates or any(s.column for s in segments):
        needed.add(UNITS_SOURCE)
    sources = {}
    for k, name in enumerate(sorted(needed)):
        if name in frames:
            sources[name] = frame_source(con, name, frames[name], f"frame_{k}")
        elif name in paths:
            sources[name] = file_source(con, name, paths[name], f"path{k}")
        else:
            raise DataError(
                f"{spec.id}: no '{name}' data (the spec's data block names none, and none was given)"
            )
    return sources


def frame_source(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame, view: str) -> Source:
    """The DataFrame ``frame`` registered as the view ``view``: the input table ``name``."""
    where = f"DataFrame '{name}'"
    refuse_repeated_names([str(c) for c in frame.columns], where)
    con.register(view, frame)
    return Source(name, quote(view), where, _described(con, name, quote(view), where, {}), {}, "frame")


def file_source(con: duckdb.DuckDBPyConnection, name: str, path: DataPath, param: str = "path0") -> Source:
    """The input ``path`` (a CSV or Parquet file, a folder of them or a glob pattern; CSV may be ``.gz``
    or ``.zst``) as the input table ``name``, its columns described. Several files are read as one
    table: each must have the same columns (by name, in any order), none twice; a folder's Hive
    partitions (``key=value/`` below it) are columns, and may not repeat a column of the files."""
    found = input_files(path, name)
    where = found.where
    try:  # before DuckDB reads them: DuckDB renames a repeated column x to x_1, and fills missing ones
        headers = [_raw_header(con, found.kind, f) for f in found.files]
    except DataError:
        raise
    except Exception as error:  # duckdb.Error, but also OS errors surfaced by the reader
        raise DataError(f"{where}: cannot read the {name} file: {engine_reason(error)}") from None
    _check_same_columns(found, headers)
    options = ", union_by_name = true" if len(found.files) > 1 else ""
    if found.kind == "parquet":
        options += f", hive_partitioning = {'true' if _partitions(found, headers[0]) else 'false'}"
    files = [str(f) for f in found.files]
    sql = f"read_{found.kind}(${param}{options})"
    params: dict[str, Any] = {param: files if len(files) > 1 else files[0]}
    return Source(name, sql, where, _described(con, name, sql, where, params), params, found.kind)


def _check_same_columns(found: InputFiles, headers: list[list[str]]) -> None:
    """Each file's columns once, and the same columns in every file (a missing one is not read as NULL)."""
    for file, header in zip(found.files, headers, strict=True):
        refuse_repeated_names(header, printable(file))
    first = set(headers[0])
    for file, header in zip(found.files[1:], headers[1:], strict=True):
        if set(header) != first:
            missing, extra = sorted(first - set(header)), sorted(set(header) - first)
            differences = "; ".join(
                f"{label} {', '.join(repr(c) for c in columns)}"
                for label, columns in (("lacks", missing), ("adds", extra))
                if columns
            )
            raise DataError(
                f"{printable(file)}: {differences} against {printable(found.files[0])}: the files of one "
                "table need the same columns"
            )


def _partitions(found: InputFiles, columns: list[str]) -> bool:
    """Whether a folder of Parquet files has Hive partitions (``key=value/`` below it); refused when a
    key repeats a column of the files, or when the folder itself sits in ``key=value/`` folders (DuckDB
    would read those too)."""
    if not found.folder:
        return False
    if not isinstance(found.given, Path):
        return False
    keys = {
        part.split("=", 1)[0]
        for file in found.files
        if isinstance(file, Path)
        for part in file.relative_to(found.given).parent.parts
        if "=" in part
    }
    if not keys:
        return False
    clash = sorted(keys & set(columns))
    if clash:
        raise DataError(
            f"{found.where}: its partition folders ({clash[0]}=...) repeat the files' column '{clash[0]}'"
        )
    above = [part for part in found.given.parts if "=" in part]
    if above:
        raise DataError(
            f"{found.where}: sits in the folder '{printable(above[0])}', which would be read as a partition "
            "too: move the data, or give its files as a pattern"
        )
    return True


def _described(
    con: duckdb.DuckDBPyConnection, name: str, sql: str, where: str, params: dict[str, Any]
) -> dict[str, str]:
    """Column name -> DuckDB type of a table, or a DataError naming the unreadable file."""
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {sql}", params or None).fetchall()
    except Exception as error:  # duckdb.Error, but also OS errors surfaced by the reader
        raise DataError(f"{where}: cannot read the {name} file: {engine_reason(error)}") from None
    return {str(r[0]): str(r[1]) for r in described}


def _raw_header(con: duckdb.DuckDBPyConnection, kind: str, path: DataPath) -> list[str]:
    """Column names as the file writes them (DuckDB renames a repeated name ``x`` to ``x_1``)."""
    if kind == "parquet":
        rows = con.execute(
            "SELECT name, coalesce(num_children, 0) FROM parquet_schema($raw)", {"raw": str(path)}
        ).fetchall()
        return _top_level([(str(name), int(children)) for name, children in rows])
    # The header itself, split with the dialect DuckDB sniffs: ``LIMIT 1`` over DuckDB's parallel reader
    # returns *a* row, not necessarily the first (the demo once read a data row as the header).
    dialect = con.execute("SELECT Delimiter, Quote FROM sniff_csv($raw)", {"raw": str(path)}).fetchone()
    delimiter, quote_char = (str(dialect[0]), str(dialect[1])) if dialect else (",", '"')
    delimiter = delimiter if len(delimiter) == 1 else ","  # sniff_csv says '(empty)' for none
    quote_char = quote_char if len(quote_char) == 1 else '"'
    if isinstance(path, RemoteInput) or path.name.lower().endswith(".zst"):
        return _first_line_header(con, path, delimiter, quote_char)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle, delimiter=delimiter, quotechar=quote_char), [])


def _first_line_header(
    con: duckdb.DuckDBPyConnection, path: DataPath, delimiter: str, quote_char: str
) -> list[str]:
    """The first line of a zstd or remote CSV file (read by DuckDB, one thread), split as CSV: a quoted
    header spanning lines is read as far as its first line."""
    row = con.execute(
        "SELECT content FROM read_csv($raw, header = false, all_varchar = true, columns = "
        "{'content': 'VARCHAR'}, delim = '\x01', quote = '', escape = '', parallel = false) LIMIT 1",
        {"raw": str(path)},
    ).fetchone()
    line = str(row[0]).lstrip("\ufeff") if row else ""
    return next(csv.reader([line], delimiter=delimiter, quotechar=quote_char), [])


def _top_level(schema: list[tuple[str, int]]) -> list[str]:
    """The column names of a Parquet schema listed depth first as (name, number of children), the root
    first: its children, each followed by its own descendants."""
    names, position = [], 1

    def skip(at: int) -> int:
        end = at + 1
        for _ in range(schema[at][1]):
            end = skip(end)
        return end

    for _ in range(schema[0][1]):
        names.append(schema[position][0])
        position = skip(position)
    return names


def check_columns(
    con: duckdb.DuckDBPyConnection,
    spec: ExperimentSpec,
    sources: Mapping[str, Source],
    covariates: Sequence[str],
    segments: Sequence[Segmentation] = (),
) -> None:
    """Every column the spec reads exists, with a numeric (or boolean) type where one is needed.

    Raises:
        DataError: one line per missing or mistyped column (a file with no data rows, or a CSV whose
            rows have different numbers of fields, is named as such).
    """
    problems = [
        f"{source.where} ({source.name} file): could not be split into columns: are some rows longer or "
        f"shorter than the header? (read as the one column '{printable(next(iter(source.columns)))}')"
        for source in sources.values()
        if _ragged(source)
    ]
    if problems:
        raise DataError(problems)
    filters = {
        row_filter.column: _filter_field(m)
        for m in spec.metrics
        if (row_filter := getattr(m, "where", None)) is not None
    }
    for source, name, numeric in _needed_columns(spec, sources, covariates, segments):
        kind = source.columns.get(name)
        if kind is None:
            field = f" ({filters[name]})" if name in filters else ""
            problems.append(
                f"{source.where} ({source.name} file): missing column '{printable(name)}'{field}; "
                f"columns are {quoted(map(printable, source.columns))}"
            )
        elif numeric and not is_numeric(kind):
            empty = _row_count(con, source) == 0
            problems.append(
                f"{source.where} ({source.name} file): has no data rows (a header only)"
                if empty
                else f"{source.where} ({source.name} file): column '{printable(name)}' must be numeric, "
                f"got {kind}"
            )
    problems += _timestamp_problems(spec, sources)
    problems += _filter_problems(spec, sources)
    if problems:
        raise DataError(list(dict.fromkeys(problems)))
    _check_promoted_values(con, spec, sources)


SHOWN_VALUES = 10  # values of a column listed when a promoted value is not among them


def _check_promoted_values(
    con: duckdb.DuckDBPyConnection, spec: ExperimentSpec, sources: Mapping[str, Source]
) -> None:
    """Every value ``economics.promoted`` lists occurs in the orders table: a misspelt one would move
    its sales into the halo (the rest of the basket) without a word.

    Raises:
        DataError: naming the values not found and some that are there.
    """
    promoted = spec.economics.promoted if spec.economics is not None else None
    if promoted is None:
        return
    named = [str(v) for v in (*promoted.in_, *promoted.substitutes)]
    for table in {metric_source(spec.metric(m)) for m in split_money(spec)} - {None, UNITS_SOURCE}:
        source = sources[str(table)]
        column = f"CAST({quote(promoted.column)} AS VARCHAR)"
        present = f"SELECT DISTINCT {column} FROM {source.sql} WHERE list_contains($named, {column})"
        counts = f"SELECT {column} AS v, count(*) AS n FROM {source.sql} GROUP BY 1 ORDER BY n DESC"
        try:
            found = con.execute(present, {**source.params, "named": named}).fetchall()
            missing = sorted(set(named) - {str(row[0]) for row in found})
            seen = (
                con.execute(f"{counts} LIMIT {SHOWN_VALUES}", source.params or None).fetchall()
                if missing
                else []
            )
        except Exception as error:  # duckdb.Error or an OS error of the reader
            raise DataError(f"{source.where} ({table} file): cannot be read: {first_line(error)}") from None
        if missing:
            raise DataError(
                f"{source.where} ({table} file): column '{printable(promoted.column)}' has no row with "
                f"{quoted(missing)} (economics.promoted); its most frequent values are "
                f"{quoted(printable(row[0]) for row in seen)} (values are compared as text, case included)"
            )


FILTER_TYPES = ("VARCHAR", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER",
                "USMALLINT", "UTINYINT", "BOOLEAN")  # fmt: skip


def _filter_problems(spec: ExperimentSpec, sources: Mapping[str, Source]) -> list[str]:
    """A metric's ``where`` compares its column as text: it must hold text or whole numbers (a decimal
    column would compare '1.0' against '1')."""
    problems = []
    for metric in spec.metrics:
        row_filter = getattr(metric, "where", None)
        source = metric_source(metric)
        if row_filter is None or source is None or source == UNITS_SOURCE:
            continue
        kind = sources[source].columns.get(row_filter.column)
        if kind is not None and kind not in FILTER_TYPES:
            problems.append(
                f"{sources[source].where} ({source} file): column '{printable(row_filter.column)}' "
                f"({_filter_field(metric)}) holds {kind}; filter on a column of text or whole numbers"
            )
    return problems


def _filter_field(metric: AnyMetric) -> str:
    """The spec field behind a row filter: the metric's ``where``, or ``economics.promoted.column``
    for the product split's derived metrics (``revenue@promoted``)."""
    base, tag = split_id(metric.id)
    return "economics.promoted.column" if tag in PARTS else f"metrics.{base}.where"


DATE_TYPES = ("DATE", "TIMESTAMP", "VARCHAR")


def dated_tables(spec: ExperimentSpec) -> set[str]:
    """Event tables read by a binary, count or continuous metric: with ``data.timestamp`` they must have
    it. Tables read only by ordinal scores (survey answers) may lack it: they are not windowed."""
    return {
        str(m.source)
        for m in spec.metrics
        if not isinstance(m, RatioMetric | OrdinalMetric) and m.source != UNITS_SOURCE
    }


def _timestamp_problems(spec: ExperimentSpec, sources: Mapping[str, Source]) -> list[str]:
    """With ``data.timestamp``, every event table read by a binary, count or continuous metric has that
    column (its rows are counted in the test window only), holding dates or times (or text read as
    dates). Tables read only by ordinal scores (survey answers) may lack it: they are not windowed."""
    column = spec.data.timestamp
    if column is None:
        return []
    problems = [
        f"{sources[name].where} ({name} file): no column '{printable(column)}' (data.timestamp), so its "
        "rows cannot be limited to the test window; columns are "
        f"{quoted(map(printable, sources[name].columns))}"
        for name in sorted(dated_tables(spec))
        if column not in sources[name].columns
    ]
    problems += [
        f"{source.where}: column '{printable(column)}' (data.timestamp) must hold dates or times, "
        f"got {source.columns[column]}"
        for source in sources.values()
        if source.name not in ("assignments", UNITS_SOURCE)  # one row per unit: never windowed
        and column in source.columns
        and not source.columns[column].startswith(DATE_TYPES)
    ]
    return problems


def _needed_columns(
    spec: ExperimentSpec,
    sources: Mapping[str, Source],
    covariates: Sequence[str],
    segments: Sequence[Segmentation],
) -> list[tuple[Source, str, bool]]:
    """(table, column, must be numeric) of every column the aggregation reads."""
    assign = sources.get("assignments") or sources[UNITS_SOURCE]
    needed: list[tuple[Source, str, bool]] = [(assign, spec.data.variant_column, False)]
    if not (spec.data.row_id and assign.name == UNITS_SOURCE):
        needed.append((assign, spec.data.unit_id, False))
    for metric in spec.metrics:
        source = metric_source(metric)
        if source is None:
            continue
        if source != UNITS_SOURCE:
            needed.append((sources[source], spec.data.unit_id, False))
        if (column := metric_column(metric)) is not None:
            needed.append((sources[source], column, True))
        if (row_filter := getattr(metric, "where", None)) is not None and source != UNITS_SOURCE:
            needed.append((sources[source], row_filter.column, False))
    if covariates:
        units = sources[UNITS_SOURCE]
        if not spec.data.row_id:
            needed.append((units, spec.data.unit_id, False))
        needed += [(units, c, True) for c in covariates]
    for segmentation in segments:
        if segmentation.column is not None:
            needed.append((sources[UNITS_SOURCE], segmentation.column, False))
        if (rfm := segmentation.rfm) is not None:
            table = sources[rfm.source]
            needed += [(table, spec.data.unit_id, False), (table, rfm.date, False), (table, rfm.amount, True)]
    return list({(t.name, c, n): (t, c, n) for t, c, n in needed}.values())


def _ragged(source: Source) -> bool:
    """A CSV read as one column whose name holds a delimiter: its rows have different field counts."""
    return (
        source.kind == "csv"
        and len(source.columns) == 1
        and any(d in next(iter(source.columns)) for d in ",;\t|")
    )


def _row_count(con: duckdb.DuckDBPyConnection, source: Source) -> int:
    row = con.execute(f"SELECT count(*) FROM {source.sql}", source.params or None).fetchone()
    return int(row[0]) if row else 0


def check_unit_ids(
    con: duckdb.DuckDBPyConnection, spec: ExperimentSpec, sources: Mapping[str, Source]
) -> dict[str, Source]:
    """The sources with the SQL that reads their unit ids, after checking that the ids join.

    Every table's ids are integers or every table's are text; float ids must be whole numbers within
    +-2^53 (they are then read as BIGINT). Units numbered by row (``data.row_id``) have integer ids.

    Raises:
        DataError: ids of different kinds in two tables (naming both files), non-integral or too
            large float ids, ids of another type (dates, ...).
    """
    column = spec.data.unit_id
    checked: dict[str, Source] = {}
    kinds: dict[str, Source] = {}
    problems: list[str] = []
    for name, source in sources.items():
        if spec.data.row_id and name == UNITS_SOURCE:
            checked[name] = source
            kinds.setdefault("integer", source)
            continue
        if column not in source.columns:  # only the assignments' variant table may lack it
            checked[name] = source
            continue
        if name == UNITS_SOURCE and "assignments" in sources:
            problems += _missing_id_problems(con, source, column)
        kind = id_kind(source.columns[column])
        sql = quote(column)
        if kind == "float":
            problems += _float_id_problems(con, source, column)
            kind, sql = "integer", f"CAST({quote(column)} AS BIGINT)"
        elif kind not in ("integer", "text"):
            problems.append(
                f"{source.where}: unit ids in column '{printable(column)}' are {kind}; "
                "expected integers or text"
            )
        kinds.setdefault(kind, source)
        checked[name] = _with_unit_id(source, sql)
    if len(kinds) > 1 and not problems:
        (a_kind, a), (b_kind, b) = list(kinds.items())[:2]
        problems.append(
            f"unit ids do not join: {a.where} has {a_kind} ids but {b.where} has {b_kind} ids in "
            f"'{printable(column)}'; store them with one type in every table"
        )
    if problems:
        raise DataError(problems)
    return checked


def _with_unit_id(source: Source, sql: str) -> Source:
    return replace(source, unit_id=sql)


def _float_id_problems(con: duckdb.DuckDBPyConnection, source: Source, column: str) -> list[str]:
    """Float unit ids that are not whole numbers, not finite, or beyond 2^53 (an example of each)."""
    value = f"CAST({quote(column)} AS DOUBLE)"
    bad = f"NOT isfinite({value}) OR {value} <> trunc({value}) OR abs({value}) > {MAX_EXACT_FLOAT_ID}"
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE {bad}), any_value({value}) FILTER (WHERE {bad}) FROM {source.sql}",
        source.params or None,
    ).fetchone()
    if row is None or not row[0]:
        return []
    return [
        f"{source.where}: {int(row[0]):,} unit id(s) in '{printable(column)}' are not whole numbers within "
        f"+-2^53 (e.g. {row[1]!r}); float ids must be integers that a float holds exactly"
    ]


def _missing_id_problems(con: duckdb.DuckDBPyConnection, source: Source, column: str) -> list[str]:
    """Rows of the units file without an id (they could belong to no unit: the file is corrupt)."""
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE {quote(column)} IS NULL) FROM {source.sql}", source.params or None
    ).fetchone()
    missing = int(row[0]) if row else 0
    if not missing:
        return []
    return [f"{source.where}: {missing:,} row(s) have no {printable(column)} (a missing value)"]


def check_rfm_values(
    con: duckdb.DuckDBPyConnection, sources: Mapping[str, Source], segments: Sequence[Segmentation]
) -> None:
    """The pre-period orders behind RFM segments have finite amounts (an infinite amount would put its
    unit in the top monetary bin without a word).

    Raises:
        DataError: naming the file, the column and the number of rows.
    """
    problems = []
    for segmentation in segments:
        if (rfm := segmentation.rfm) is None:
            continue
        source = sources[rfm.source]
        amount = f"CAST({quote(rfm.amount)} AS DOUBLE)"
        row = con.execute(
            f"SELECT count(*) FILTER (WHERE NOT isfinite({amount}) OR {amount} IS NULL) FROM {source.sql}",
            source.params or None,
        ).fetchone()
        if row and row[0]:
            problems.append(
                f"{source.where}: {int(row[0]):,} row(s) of column '{printable(rfm.amount)}' are missing or "
                "not finite (RFM segments need every pre-period order's amount)"
            )
    if problems:
        raise DataError(problems)
