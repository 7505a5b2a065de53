"""Where an experiment's data files are: the spec's ``data`` block, a data folder and explicit overrides.

Names are ``assignments``, ``units`` and the spec's event-table names (a rollout's: ``panel``). A
relative spec path resolves against ``data_dir`` when given (simulated data), else against the spec's
folder; an override ``name=path`` replaces the spec's path for that name (relative to the working
directory). A URI (``s3://``, ``gs://``, ``https://``, ``hdfs://``, ``file://``...) is a
:class:`RemoteInput`, handed to the engine as written.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from promolab.errors import DataError, first_line, printable
from promolab.spec import AnySpec, RolloutSpec, resolve_data_path
from promolab.spec.loader import absolute

if TYPE_CHECKING:
    import pandas as pd

READABLE_SUFFIXES = (".parquet", ".csv")
TABLE_KINDS = {".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv", ".csv.zst": "csv"}  # suffix -> reader
GLOB_CHARACTERS = frozenset("*?[")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # two letters at least: not a Windows drive (C:/)


class RemoteInput(str):
    """A URI handed to the engine as written: DuckDB reads it through its file systems (``file://``
    built in; ``s3://``, ``gs://``, ``https://`` through its httpfs extension, which it loads itself and
    which reads credentials from DuckDB secrets or the environment), Spark through Hadoop's (``s3a://``,
    ``hdfs://``, ``abfss://``...). It names a file or a glob pattern (DuckDB lists the pattern's
    files); not a folder, whose listing and Hive partitions are read from local folders only. Its kind
    comes from its suffix."""

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def local(self) -> Path | None:
        """The local path of a ``file:`` URI (outputs must not land on it); None for other schemes."""
        if not self.lower().startswith("file:"):
            return None
        return Path("/" + self[len("file:") :].lstrip("/"))

    def kind(self, what: str) -> str:
        """``parquet`` or ``csv`` from the suffix.

        Raises:
            DataError: any other suffix.
        """
        kind = table_kind(self)
        if kind is None:
            raise DataError(
                f"{printable(self)}: a remote {what} input must end with .parquet, .csv, .csv.gz or "
                ".csv.zst (a file, or a pattern such as s3://bucket/orders/*.parquet)"
            )
        return kind


DataPath = Path | RemoteInput


def data_path(text: str) -> DataPath:
    """A :class:`RemoteInput` for a URI, else a ``Path``."""
    return RemoteInput(text) if _URI.match(text) else Path(text)


@dataclass(frozen=True)
class InputFiles:
    """The files of one input table: a file, a folder of them (read recursively: Hive partitions such
    as ``day=2026-03-01/`` become columns), or a glob pattern; all Parquet or all CSV (plain, ``.gz``
    or ``.zst``)."""

    given: DataPath
    files: tuple[DataPath, ...]
    kind: str  # "parquet" or "csv"
    folder: bool

    @property
    def where(self) -> str:
        """The input as the user named it, for messages."""
        many = f" ({len(self.files)} files)" if len(self.files) > 1 else ""
        return printable(self.given) + many


def input_files(path: DataPath, what: str) -> InputFiles:
    """The files of the input ``path`` (a file, a folder or a glob pattern), checked: some file, every
    one a readable kind, one kind, none empty, each once (by its real path: a link to a file read already
    is not read again). In a folder (and a folder a pattern matches), files and folders whose names start
    with ``.`` or ``_`` (Spark's ``_SUCCESS`` and ``_temporary/``, notebook checkpoints) and other
    suffixes (``.crc``) are not data. A path that exists is never a pattern; in one that does not, only
    the part below its deepest existing folder is.

    A :class:`RemoteInput` is listed by DuckDB when it is a pattern, and read by the engine unchecked.

    Raises:
        DataError: saying which file or pattern, and what is wrong.
    """
    if isinstance(path, RemoteInput):
        return _remote_files(path, what)
    where, folder = printable(path), path.is_dir()
    if path.exists():
        files = _data_files(path) if folder else [path]
        if folder and not files:
            raise DataError(f"{where}: the {what} folder holds no .parquet or .csv file")
    elif GLOB_CHARACTERS & set(str(path)):
        files = [f for match in _matches(path) for f in (_data_files(match) if match.is_dir() else [match])]
        if not files:
            raise DataError(f"{where}: the {what} pattern matches no file")
    else:
        broken = " (a broken symbolic link, or a loop of links)" if path.is_symlink() else ""
        raise DataError(f"{where}: {what} file not found{broken}")
    files = list({os.path.realpath(f): f for f in files}.values())
    unknown = [f for f in files if table_kind(f) is None]
    if unknown:
        raise DataError(
            f"{printable(unknown[0])}: {what} file must be .parquet, .csv, .csv.gz or .csv.zst, "
            f"got '{printable(''.join(unknown[0].suffixes[-2:]))}'"
        )
    kinds = {table_kind(f) for f in files}
    if len(kinds) > 1:
        raise DataError(f"{where}: the {what} files mix Parquet and CSV; give one kind")
    empty = [f for f in files if f.stat().st_size == 0]
    if empty:
        raise DataError(f"{printable(empty[0])}: the {what} file is empty (0 bytes)")
    return InputFiles(path, tuple(sorted(files)), str(kinds.pop()), folder)


def _remote_files(uri: RemoteInput, what: str) -> InputFiles:
    """A remote file, or the files DuckDB's ``glob`` lists for a remote pattern."""
    kind = uri.kind(what)
    files = [uri]
    if GLOB_CHARACTERS & set(uri):
        import duckdb

        try:
            with duckdb.connect() as con:
                listed = con.execute(
                    "SELECT file FROM glob($uri) ORDER BY file", {"uri": str(uri)}
                ).fetchall()
        except duckdb.Error as error:
            raise DataError(
                f"{printable(uri)}: cannot list the {what} files: {engine_reason(error)}"
            ) from None
        files = [RemoteInput(str(row[0])) for row in listed]
        if not files:
            raise DataError(f"{printable(uri)}: the {what} pattern matches no file")
    return InputFiles(uri, tuple(files), kind, folder=False)


def engine_reason(error: BaseException) -> str:
    """The first line of the engine's error, with the remedy when DuckDB could not load httpfs."""
    reason = first_line(error)
    if "httpfs" in reason:
        reason += (
            " (DuckDB reads s3://, gs:// and https:// through its httpfs extension, which it could not "
            "load: run INSTALL httpfs where its extension repository is reachable, or use --engine spark)"
        )
    return reason


def _matches(pattern: Path) -> list[Path]:
    """The paths a pattern matches, but none below a ``.`` or ``_`` folder or named so; the pattern's
    existing leading folders are taken literally, and ``**`` walks without following links to folders."""
    base = pattern
    while not base.exists() and base != base.parent:
        base = base.parent
    rest = pattern.relative_to(base)
    if "**" in rest.parts:
        paths = [Path(root) / n for root, dirs, names in os.walk(base) for n in [*dirs, *names]]
        patterns = (str(rest), str(rest).replace("**" + os.sep, ""))  # ``**/`` may match no folder
        found = [p for p in paths if any(fnmatch.fnmatch(str(p.relative_to(base)), r) for r in patterns)]
    else:
        found = [Path(p) for p in glob.glob(os.path.join(glob.escape(str(base)), str(rest)))]
    return sorted(
        p for p in found if not any(part.startswith((".", "_")) for part in p.relative_to(base).parts)
    )


def _data_files(folder: Path) -> list[Path]:
    """A folder's data files, recursively, without following links to folders (no loops)."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        found += [Path(root) / n for n in sorted(names) if not n.startswith((".", "_"))]
    return [f for f in found if table_kind(f) is not None]


def table_kind(path: DataPath) -> str | None:
    """``parquet`` or ``csv`` by the file's suffix (``.csv.gz`` and ``.csv.zst`` are CSV); None when
    neither."""
    name = path.name.lower()
    return next((kind for suffix, kind in TABLE_KINDS.items() if name.endswith(suffix)), None)


def parse_overrides(items: Sequence[str]) -> dict[str, DataPath]:
    """``["units=path/x.csv", ...]`` -> ``{"units": Path("path/x.csv")}`` (a URI stays a
    :class:`RemoteInput`); DataError on a bad item."""
    overrides: dict[str, DataPath] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise DataError(f"--data: expected NAME=PATH (e.g. units=customers.csv), got '{item}'")
        overrides[name.strip()] = data_path(path.strip())
    return overrides


def data_paths(
    spec: AnySpec, data_dir: str | Path | None = None, overrides: Mapping[str, DataPath] | None = None
) -> dict[str, DataPath]:
    """Absolute path of every data file the spec names (a URI as written), with overrides applied.

    Raises:
        DataError: an override names no data file of the spec.
    """
    named: dict[str, str | None] = (
        {"panel": spec.data.panel}
        if isinstance(spec, RolloutSpec)
        else {"assignments": spec.data.assignments, "units": spec.data.units, **spec.data.tables}
    )
    paths: dict[str, DataPath] = {
        name: RemoteInput(path) if _URI.match(path) else resolve_data_path(spec, path, data_dir)
        for name, path in named.items()
        if path
    }
    for name, path in (overrides or {}).items():
        if name not in named:
            raise DataError(
                f"--data {name}=...: '{name}' is not a data file of {spec.id}; "
                f"names are {', '.join(repr(n) for n in named)}"
            )
        paths[name] = path if isinstance(path, RemoteInput) else absolute(path)
    return paths


def require_file(path: DataPath, what: str) -> Path:
    """``path`` if it is a readable local CSV or Parquet file, else a DataError saying what is wrong."""
    where = printable(path)
    if isinstance(path, RemoteInput):
        raise DataError(
            f"{where}: the {what} file must be a local file here (remote inputs are read by the "
            "aggregation of analyze and monitor)"
        )
    if path.is_dir():
        raise DataError(f"{where}: the {what} file is a folder; expected a .parquet or .csv file")
    if not path.is_file():
        broken = " (a broken symbolic link, or a loop of links)" if path.is_symlink() else ""
        raise DataError(f"{where}: {what} file not found{broken}")
    if path.suffix.lower() not in READABLE_SUFFIXES:
        raise DataError(f"{where}: {what} file must be .parquet or .csv, got '{printable(path.suffix)}'")
    if path.stat().st_size == 0:
        raise DataError(f"{where}: the {what} file is empty (0 bytes)")
    return path


def column_names(path: DataPath, what: str) -> list[str]:
    """Column names of a CSV or Parquet file, read from its header or schema only."""
    import pyarrow.parquet as pq

    path = require_file(path, what)
    try:
        if path.suffix.lower() == ".parquet":
            names = list(pq.read_schema(path).names)
        else:
            with open(path, newline="", encoding="utf-8") as handle:
                names = next(csv.reader(handle), [])
    except (OSError, ValueError, csv.Error) as error:
        raise DataError(f"{printable(path)}: cannot read the {what} file: {first_line(error)}") from None
    refuse_repeated_names(names, printable(path))
    if not names:
        raise DataError(f"{printable(path)}: the {what} file is empty (no header)")
    return names


def read_frame(path: DataPath, what: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file with pandas (only ``columns``, when given).

    Raises:
        DataError: the file is missing or unreadable, or lacks one of ``columns``.
    """
    import pandas as pd

    wanted = list(dict.fromkeys(columns)) if columns is not None else None
    if wanted is not None:
        available = column_names(path, what)
        missing = [c for c in wanted if c not in available]
        if missing:
            raise DataError(
                f"{path}: {what} file lacks column(s) {', '.join(repr(c) for c in missing)}; "
                f"it has {', '.join(repr(c) for c in available)}"
            )
    path = require_file(path, what)
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path, columns=wanted)
        return pd.read_csv(path, usecols=wanted)
    except (OSError, ValueError) as error:
        raise DataError(f"{printable(path)}: cannot read the {what} file: {first_line(error)}") from None


def require_finite(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    """Numeric ``columns`` of ``frame`` hold no NaN and no infinity (a balance or a stratum computed
    from them would be meaningless).

    Raises:
        DataError: naming the file, the column and the number of bad rows.
    """
    import numpy as np
    import pandas as pd

    problems = []
    for column in dict.fromkeys(columns):
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        bad = int((~np.isfinite(series.to_numpy(dtype=float, na_value=np.nan))).sum())
        if bad:
            problems.append(
                f"{printable(path)}: column '{printable(column)}' has {bad:,} missing or non-finite value(s)"
            )
    if problems:
        raise DataError(problems)


def refuse_repeated_names(names: Sequence[str], where: str) -> None:
    """Every column name once, ignoring case (DuckDB reads ``Amount`` and ``amount`` as one name, and a
    repeated name would silently read the first column).

    Raises:
        DataError: naming the file and the repeated names.
    """
    seen: dict[str, list[str]] = {}
    for name in names:
        seen.setdefault(name.lower(), []).append(name)
    repeated = sorted(
        ", ".join(f"'{printable(n)}'" for n in group) for group in seen.values() if len(group) > 1
    )
    if repeated:
        raise DataError(
            f"{where}: column name(s) {'; '.join(repeated)} appear more than once (names are compared "
            "ignoring case); every column needs its own name"
        )
