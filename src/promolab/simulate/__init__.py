"""Simulated data for any spec (``promolab simulate``): feeds the demo, tests and benchmarks."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

import pyarrow as pa

from promolab.errors import OutputError, printable
from promolab.io import write_with
from promolab.simulate.engine import SimulatedData, simulate
from promolab.sources import GLOB_CHARACTERS, RemoteInput, data_path
from promolab.spec import AnySpec, RolloutSpec
from promolab.spec.models import ExperimentSpec

__all__ = ["SimulatedData", "simulate", "simulated_paths", "write_simulated"]

FileFormat = Literal["parquet", "csv"]


def write_simulated(
    data: SimulatedData, spec: ExperimentSpec, out_dir: str | Path, fmt: FileFormat | None = None
) -> dict[str, Path]:
    """Write each table where the spec's ``data`` block names it, below ``out_dir``.

    Relative spec paths keep their folders (so ``--data-dir out_dir`` finds them later); absolute
    ones keep only their file name. ``fmt`` forces the format (and suffix); by default the spec
    path's suffix decides (``.csv`` or Parquet). Files are written atomically.
    """
    written = simulated_paths(spec, out_dir, fmt)
    for name, target in written.items():
        chosen: FileFormat = "csv" if target.suffix == ".csv" else "parquet"
        write_with(target, partial(_write_table, data.tables[name], fmt=chosen))
    return written


def simulated_paths(spec: AnySpec, out_dir: str | Path, fmt: FileFormat | None = None) -> dict[str, Path]:
    """Where :func:`write_simulated` writes each table (see there)."""
    paths = {}
    for name, spec_path in _destinations(spec).items():
        relative = Path(spec_path)
        if relative.is_absolute():
            relative = Path(relative.name)
        chosen: FileFormat = fmt or ("csv" if relative.suffix == ".csv" else "parquet")
        if (
            relative.suffix.lower() not in (".csv", ".parquet")
            or GLOB_CHARACTERS & set(spec_path)
            or isinstance(data_path(spec_path), RemoteInput)
        ):
            raise OutputError(
                f"{printable(spec._source or spec.id)}: data.{name}: '{printable(spec_path)}' is not one "
                ".parquet or .csv file; simulate writes one file per table (folders, patterns, remote "
                "URIs and compressed CSV are for real data): simulate with a spec naming single files"
            )
        if ".." in relative.parts:
            raise OutputError(
                f"{printable(spec._source or spec.id)}: data.{name}: '{printable(spec_path)}' leads outside "
                "--out; simulate writes only inside the --out folder (use a path without '..')"
            )
        paths[name] = Path(out_dir) / relative.with_suffix(".csv" if chosen == "csv" else ".parquet")
    return paths


def _destinations(spec: AnySpec) -> dict[str, str]:
    if isinstance(spec, RolloutSpec):
        return {"panel": spec.data.panel}
    data = spec.data
    named = {"assignments": data.assignments, "units": data.units}
    return {**{k: v for k, v in named.items() if v is not None}, **data.tables}


def _write_table(table: pa.Table, path: Path, *, fmt: FileFormat) -> None:
    if fmt == "csv":
        from pyarrow import csv

        csv.write_csv(table, path)
    else:
        from pyarrow import parquet

        parquet.write_table(table, path)
