"""Where an experiment's data files are: the spec's ``data`` block, a data folder and explicit overrides.

Names are ``assignments``, ``units`` and the spec's event-table names. A relative spec path resolves
against ``data_dir`` when given (simulated data), else against the spec's folder; an override
``name=path`` replaces the spec's path for that name (relative to the working directory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from promolab.errors import DataError
from promolab.spec import ExperimentSpec, resolve_data_path

if TYPE_CHECKING:
    import pandas as pd

READABLE_SUFFIXES = (".parquet", ".csv")


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
    spec: ExperimentSpec, data_dir: str | Path | None = None, overrides: Mapping[str, Path] | None = None
) -> dict[str, Path]:
    """Absolute path of every data file the spec names, with overrides applied.

    Raises:
        DataError: an override names no data file of the spec.
    """
    named = {"assignments": spec.data.assignments, "units": spec.data.units, **spec.data.tables}
    paths = {name: resolve_data_path(spec, path, data_dir) for name, path in named.items() if path}
    for name, path in (overrides or {}).items():
        if name not in named:
            raise DataError(
                f"--data {name}=...: '{name}' is not a data file of {spec.id}; "
                f"names are {', '.join(repr(n) for n in named)}"
            )
        paths[name] = path.resolve()
    return paths


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a readable CSV or Parquet file, else a DataError saying what is wrong."""
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    if path.suffix.lower() not in READABLE_SUFFIXES:
        raise DataError(f"{path}: {what} file must be .parquet or .csv, got '{path.suffix}'")
    return path


def column_names(path: Path, what: str) -> list[str]:
    """Column names of a CSV or Parquet file, read from its header or schema only."""
    import pandas as pd
    import pyarrow.parquet as pq

    require_file(path, what)
    try:
        if path.suffix.lower() == ".parquet":
            return list(pq.read_schema(path).names)
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the {what} file: {error}") from None


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
        raise DataError(f"{path}: cannot read the {what} file: {error}") from None
