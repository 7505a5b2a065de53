"""The notebook API (``promolab.analyze``, ``promolab.design``) and the notebook example that uses it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

import promolab
from promolab.analyze import Analysis, analyze_spec
from promolab.decision import decide
from promolab.design.plan import plan_design
from promolab.economics import evaluate
from promolab.errors import SpecError
from promolab.simulate import simulate

from .conftest import EXAMPLES, ROOT

SPRING = EXAMPLES / "spring-discount.yaml"


@pytest.fixture(scope="module")
def frames() -> dict:
    data = simulate(promolab.load_spec(EXAMPLES / "channel.yaml"), 4000, seed=5)
    return {name: data.frame(name) for name in data.tables}


def test_the_notebook_example_runs(tmp_path):
    """Every code cell of examples/notebook.ipynb, in order, in a fresh interpreter."""
    import json

    notebook = json.loads((ROOT / "examples" / "notebook.ipynb").read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 5
    script = tmp_path / "notebook.py"
    script.write_text("\n\n".join(cells) + "\n", encoding="utf-8")
    env = {**os.environ, "PROMOLAB_EXAMPLE_OUT": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "customers per arm" in done.stdout
    assert "pct20: " in done.stdout  # the per-arm verdict line
    assert (tmp_path / "notebook-discount" / "notebook-discount.html").is_file()


def test_analyze_from_a_path_equals_the_pipeline_functions(frames):
    result = promolab.analyze(EXAMPLES / "channel.yaml", data=frames)
    spec = promolab.load_spec(EXAMPLES / "channel.yaml")
    direct = analyze_spec(spec, frames=frames)
    assert result.analysis.to_dict() == direct.to_dict()
    assert result.economics() == evaluate(spec, direct)
    assert result.decision == decide(spec, direct, evaluate(spec, direct))
    assert result.to_dicts() == direct.to_dicts()


def test_a_spec_without_a_data_block_takes_its_tables_from_data(frames):
    raw = yaml.safe_load((EXAMPLES / "channel.yaml").read_text())
    data_block = raw.pop("data")
    renamed = {
        name: f.rename(columns={data_block.get("unit_id", "unit_id"): "uid"}) for name, f in frames.items()
    }
    with_block = promolab.analyze(EXAMPLES / "channel.yaml", data=frames).analysis
    without = promolab.analyze(raw, data=renamed, unit_id="uid", timestamp=data_block.get("timestamp"))
    assert [r.p_value for r in without.analysis.results] == [r.p_value for r in with_block.results]
    with pytest.raises(SpecError, match="data"):
        promolab.analyze(raw)


def test_stage_packages_stay_packages_and_design_is_callable():
    assert promolab.analyze.Analysis is Analysis
    spec = promolab.load_spec(SPRING)
    assert promolab.design(spec) == plan_design(spec)
    assert promolab.design(SPRING) == plan_design(spec)


def test_notebook_display_shows_the_verdict_lines_escaped(frames):
    result = promolab.analyze(EXAMPLES / "channel.yaml", data=frames)
    shown = result._repr_html_()
    assert all(arm.line.split(":")[0] in shown for arm in result.decision.arms)
    assert "<table" in shown
    assert result.to_markdown().startswith(f"**{result.decision.action.upper()}**")


def test_economics_rows_use_the_same_flat_interval_names(frames):
    result = promolab.analyze(EXAMPLES / "channel.yaml", data=frames)
    money = result.economics()
    rows = money.to_dicts()
    for row, arm in zip(rows, money.arms, strict=True):
        profit = arm.quantities["net_profit"]
        assert (row["net_profit"], row["net_profit_ci_lower"], row["net_profit_ci_upper"]) == (
            profit.value, *profit.ci,
        )  # fmt: skip
        assert row["net_profit_prob_positive"] == profit.prob_positive
    assert list(money.to_frame()["variant"]) == [a.variant for a in money.arms]
    assert money.to_markdown().count("\n") == 2 + len(money.arms)


def test_a_frequentist_analysis_with_its_daily_curve_round_trips_exactly():
    import json

    from promolab.io import json_text

    spec = promolab.load_spec(SPRING)
    data = simulate(spec, 4000, seed=8)
    analysis = analyze_spec(
        spec, frames={n: data.frame(n) for n in data.tables}, method="frequentist", daily=True
    )
    assert analysis.daily is not None
    assert analysis.segments  # the spec's segmentations, each segment alone
    assert Analysis.from_dict(json.loads(json_text(analysis.to_dict()))) == analysis
