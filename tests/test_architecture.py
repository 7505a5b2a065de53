"""Invariants from ARCHITECTURE.md that a test can enforce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pymc", "pytensor", "arviz", "matplotlib", "pandas", "duckdb", "scipy")


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return {name.split(".")[0] for name in done.stdout.split()}


def test_import_promolab_is_light():
    loaded = _modules_after("import promolab")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_validate_never_imports_pymc_or_analysis_libraries():
    code = (
        "import sys\n"
        "from promolab.cli import app\n"
        "try:\n"
        "    app(['validate', 'experiments'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    loaded = _modules_after(code)
    assert not loaded & {"pymc", "pytensor", "arviz", "duckdb"}, loaded & set(HEAVY)


def test_frequentist_analyze_never_imports_pymc(tmp_path):
    code = (
        "from promolab.cli import app\n"
        "try:\n"
        f"    app(['simulate', 'experiments/channel.yaml', '--out', {str(tmp_path)!r}, '--units', '2000'],"
        " standalone_mode=False)\n"
        f"    app(['analyze', 'experiments/channel.yaml', '--data-dir', {str(tmp_path)!r},"
        " '--method', 'frequentist'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    loaded = _modules_after(code)
    assert "duckdb" in loaded  # the analysis did run
    assert not loaded & {"pymc", "pytensor", "arviz", "arviz_stats"}, loaded & set(HEAVY)
