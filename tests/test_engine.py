"""The embedded engine's limits (:func:`promolab.aggregate.duck.engine_limits`): DuckDB works within a
memory limit (``PROMOLAB_MEMORY_LIMIT``) and spills to ``PROMOLAB_SPILL_DIR``; a limit that is not a
size stops the command with one line."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from promolab.aggregate.duck import engine_limits
from promolab.cli import app
from promolab.errors import DataError

from .conftest import EXAMPLES


def _setting(name: str) -> str:
    with duckdb.connect(config=engine_limits()) as con:
        row = con.execute(f"SELECT current_setting('{name}')").fetchone()
    assert row is not None
    return str(row[0])


def test_duckdb_works_within_the_memory_limit_and_spills_where_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMOLAB_MEMORY_LIMIT", raising=False)
    assert _setting("memory_limit") == "1.3 GiB"  # 1.5 GB
    monkeypatch.setenv("PROMOLAB_MEMORY_LIMIT", "800MB")
    monkeypatch.setenv("PROMOLAB_SPILL_DIR", str(tmp_path / "spill"))
    assert _setting("memory_limit") == "762.9 MiB"
    assert _setting("temp_directory") == str(tmp_path / "spill")


def test_a_memory_limit_that_is_not_a_size_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = str(EXAMPLES / "channel.yaml")
    assert CliRunner().invoke(app, ["simulate", spec, "--units", "400", "-o", str(tmp_path)]).exit_code == 0
    for bad in ("lots", "1KB", "0GB"):
        monkeypatch.setenv("PROMOLAB_MEMORY_LIMIT", bad)
        with pytest.raises(DataError, match=r"expected a size of at least 100MB"):
            engine_limits()
    monkeypatch.setenv("PROMOLAB_MEMORY_LIMIT", "")  # empty: the default
    assert engine_limits()["memory_limit"] == "1.5GB"
    monkeypatch.setenv("PROMOLAB_MEMORY_LIMIT", "lots")
    result = CliRunner().invoke(app, ["analyze", spec, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        "PROMOLAB_MEMORY_LIMIT: expected a size of at least 100MB such as 1.5GB or 800MB, got 'lots'"
        in result.output
    )
