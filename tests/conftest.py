"""Shared fixtures: repository paths, the example specs and the real datasets in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import settings

import promolab

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "experiments"
SHARED_DATA = ROOT.parent / "shared" / "data"


def example_paths() -> list[Path]:
    """Every example experiment spec shipped in experiments/ (randomised; rollouts are apart)."""
    return [p for p in _examples() if not _is_rollout(p)]


def rollout_example_paths() -> list[Path]:
    """Every example rollout spec (a promotion that was not randomised) in experiments/."""
    return [p for p in _examples() if _is_rollout(p)]


def _examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".toml"))


def _is_rollout(path: Path) -> bool:
    return any(line.startswith("rollout:") for line in path.read_text(encoding="utf-8").splitlines())


def data_required() -> bool:
    """The real datasets must be there: under CI (``CI=true``) or with ``PROMOLAB_REQUIRE_DATA=1``."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get(
        "PROMOLAB_REQUIRE_DATA", ""
    ) not in ("", "0")


def shared_file(name: str) -> Path:
    """A real dataset from ../shared/data. When it is missing, the test is skipped with the reason (a
    fresh clone on its own), or fails under CI and with ``PROMOLAB_REQUIRE_DATA=1``."""
    path = SHARED_DATA / name
    if not path.exists():
        reason = (
            f"real dataset {path} is missing: tests read it from ../shared/data beside the project "
            "(see ../shared/data/SOURCES.md); it is not copied into the repository"
        )
        if data_required():
            pytest.fail(reason + " (required: CI or PROMOLAB_REQUIRE_DATA is set)")
        pytest.skip(reason)
    return path


@pytest.fixture
def spring_spec() -> promolab.ExperimentSpec:
    return promolab.load_spec(EXAMPLES / "spring-discount.yaml")


# No property test is timed (speed is measured in bench/): hypothesis' 200 ms deadline only failed
# tests on a loaded machine. CI runs every property test on hypothesis' fixed derandomised examples
# (reproducible runs); locally each run explores new examples.
settings.register_profile("promolab", deadline=None)
settings.register_profile("ci", parent=settings.get_profile("promolab"), derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "promolab")


def arrow_keeping_nan(frame: pd.DataFrame) -> pa.Table:
    """An Arrow table (for Parquet files) that keeps NaN, a float, apart from NULL, a missing value:
    pandas' own conversion turns NaN into NULL. Object columns of numbers and None become floats."""
    columns = {}
    for name in frame.columns:
        values = frame[name]
        numbers = values.dtype == object and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
        )
        if numbers:
            columns[name] = pa.array([None if v is None else float(v) for v in values], type=pa.float64())
        elif values.dtype == np.float64:
            columns[name] = pa.array(values.to_numpy(), from_pandas=False)
        else:
            columns[name] = pa.Array.from_pandas(values)
    return pa.table(columns)


def assert_same_looks(found: dict, expected: dict) -> None:
    """The same looks and actions, numbers to 1e-9 (sums merged in another order)."""
    assert [(look["date"], look["n"], look["action"]) for look in found["looks"]] == [
        (look["date"], look["n"], look["action"]) for look in expected["looks"]
    ]
    for look, other in zip(found["looks"], expected["looks"], strict=True):
        for result, reference in zip(look["results"], other["results"], strict=True):
            for key, value in reference.items():
                if isinstance(value, float):
                    assert result[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (look["date"], key)
                else:
                    assert result[key] == value, (look["date"], key)
    assert found["verdict"] == expected["verdict"]
