"""Invariants from docs/architecture.md that a test can enforce."""

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


def test_version_builds_no_command_line():
    """``promolab --version`` answers before typer, rich and the spec models load (start-up: bench/)."""
    code = "import sys\nsys.argv = ['promolab', '--version']\nfrom promolab.entry import main\nmain()"
    loaded = _modules_after(code)
    assert not loaded & {"typer", "rich", "pydantic", "yaml", *HEAVY}, loaded & {"typer", "rich", "pydantic"}


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


def test_frequentist_analyze_never_imports_pymc_or_scipy(tmp_path):
    """scipy is 0.2 s of start-up: the frequentist path's distributions are promolab.stats.distributions."""
    simulate = ["simulate", "experiments/channel.yaml", "--out", str(tmp_path), "--units", "2000"]
    subprocess.run([sys.executable, "-m", "promolab", *simulate], capture_output=True, check=True, cwd=ROOT)
    code = (
        "from promolab.cli import app\n"
        "try:\n"
        f"    app(['analyze', 'experiments/channel.yaml', '--data-dir', {str(tmp_path)!r},"
        " '--method', 'frequentist'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    loaded = _modules_after(code)
    assert "duckdb" in loaded  # the analysis did run
    assert not loaded & {"pymc", "pytensor", "arviz", "arviz_stats", "scipy"}, loaded & set(HEAVY)


# ---------------------------------------------------------------------- layers and the module map

SRC = ROOT / "src"
# Each stage may import its own layer and the layers before it, never a later one.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "io", "format"}),
    frozenset({"spec"}),
    frozenset({"sources", "stats"}),
    frozenset({"kinds"}),
    frozenset({"design", "simulate"}),
    frozenset({"aggregate"}),
    frozenset({"analyze"}),
    frozenset({"economics"}),
    frozenset({"decision"}),
    frozenset({"report"}),
    frozenset({"api", "cli", "__main__", "entry"}),
)


def _layer(stage: str) -> int:
    return next(k for k, layer in enumerate(LAYERS) if stage in layer)


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(path: Path) -> set[str]:
    """Every promolab module a file imports, at module level or inside functions."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("promolab"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("promolab")}
    return names


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_belongs_to_a_layer():
    stages = {_stage(m) for m in _modules()} - {None}
    assert stages <= set().union(*LAYERS), stages - set().union(*LAYERS)


def test_no_stage_imports_a_later_one():
    """spec -> design -> aggregation -> analysis -> economics -> decision -> report: imports point back."""
    wrong = []
    for module, path in _modules().items():
        stage = _stage(module)
        if stage is None:  # the package root: its heavy entry points import lazily (checked above)
            continue
        for imported in _imported(path):
            target = _stage(imported)
            if target is not None and _layer(target) > _layer(stage):
                wrong.append(f"{module} imports {imported}")
    assert not wrong, wrong


def _mapped() -> set[str]:
    import re

    listed: set[str] = set()
    for line in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `promolab"):
            listed |= set(re.findall(r"`(promolab[\w.]*)`", line.split("|")[1]))
    return listed


def test_architecture_module_map_is_true():
    """docs/architecture.md's module map lists every module, and nothing that does not exist."""
    modules = set(_modules()) - {"promolab.__main__"}
    listed = _mapped()
    assert not modules - listed, f"modules missing from docs/architecture.md: {sorted(modules - listed)}"
    assert not listed - modules, f"docs/architecture.md lists missing modules: {sorted(listed - modules)}"
