"""Where an experiment's data files are: the spec's ``data`` block, a data folder and explicit overrides.

Names are ``assignments``, ``units`` and the spec's event-table names (a rollout's: ``panel``). A
relative spec path resolves against ``data_dir`` when given (simulated data), else against the spec's
folder; an override ``name=path`` replaces the spec's path for that name (relative to the working
directory).
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import os
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


@dataclass(frozen=True)
class InputFiles:
    """The files of one input table: a file, a folder of them (read recursively: Hive partitions such
    as ``day=2026-03-01/`` become columns), or a glob pattern; all Parquet or all CSV (plain, ``.gz``
    or ``.zst``)."""

    given: Path
    files: tuple[Path, ...]
    kind: str  # "parquet" or "csv"
    folder: bool

    @property
    def where(self) -> str:
        """The input as the user named it, for messages."""
        many = f" ({len(self.files)} files)" if len(self.files) > 1 else ""
        return printable(self.given) + many


def input_files(path: Path, what: str) -> InputFiles:
    """The files of the input ``path`` (a file, a folder or a glob pattern), checked: some file, every
    one a readable kind, one kind, none empty, each once (by its real path: a link to a file read already
    is not read again). In a folder (and a folder a pattern matches), files and folders whose names start
    with ``.`` or ``_`` (Spark's ``_SUCCESS`` and ``_temporary/``, notebook checkpoints) and other
    suffixes (``.crc``) are not data. A path that exists is never a pattern; in one that does not, only
    the part below its deepest existing folder is.

    Raises:
        DataError: saying which file or pattern, and what is wrong.
    """
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


def table_kind(path: Path) -> str | None:
    """``parquet`` or ``csv`` by the file's suffix (``.csv.gz`` and ``.csv.zst`` are CSV); None when
    neither."""
    name = path.name.lower()
    return next((kind for suffix, kind in TABLE_KINDS.items() if name.endswith(suffix)), None)


def parse_overrides(items: Sequence[str]) -> dict[str, Path]:
    """``["units=path/x.csv", ...]`` -> ``{"units": Path("path/x.csv")}``; DataError on a bad item."""
    overrides: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise DataError(f"--data: expected NAME=PATH (e.g. units=customers.csv), got '{item}'")
        overrides[name.strip()] = Path(path.strip())
    return overrides


def data_paths(
    spec: AnySpec, data_dir: str | Path | None = None, overrides: Mapping[str, Path] | None = None
) -> dict[str, Path]:
    """Absolute path of every data file the spec names, with overrides applied.

    Raises:
        DataError: an override names no data file of the spec.
    """
    named: dict[str, str | None] = (
        {"panel": spec.data.panel}
        if isinstance(spec, RolloutSpec)
        else {"assignments": spec.data.assignments, "units": spec.data.units, **spec.data.tables}
    )
    paths = {name: resolve_data_path(spec, path, data_dir) for name, path in named.items() if path}
    for name, path in (overrides or {}).items():
        if name not in named:
            raise DataError(
                f"--data {name}=...: '{name}' is not a data file of {spec.id}; "
                f"names are {', '.join(repr(n) for n in named)}"
            )
        paths[name] = absolute(path)
    return paths


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a readable CSV or Parquet file, else a DataError saying what is wrong."""
    where = printable(path)
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


def column_names(path: Path, what: str) -> list[str]:
    """Column names of a CSV or Parquet file, read from its header or schema only."""
    import pyarrow.parquet as pq

    require_file(path, what)
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


def read_frame(path: Path, what: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
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
    else:
        require_file(path, what)
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
