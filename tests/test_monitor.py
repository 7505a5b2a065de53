"""``promolab monitor``: daily looks at a running test that keep the chance of ever crossing at alpha
(A/A simulations through the daily curve), against naive peeking; the command's output."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import promolab
from promolab.aggregate.daily import curve
from promolab.analyze.monitor import monitor
from promolab.cli import app
from promolab.simulate.looks import daily_sums
from promolab.spec.models import Sequential

from .conftest import EXAMPLES

START = dt.date(2026, 3, 1)
ALPHA = 0.05


def _spec(days: int, method: str = "always_valid") -> promolab.ExperimentSpec:
    spec = promolab.load_spec(EXAMPLES / "spring-discount.yaml")
    analysis = spec.analysis.model_copy(update={"sequential": Sequential(method=method)})  # type: ignore[arg-type]
    return spec.model_copy(
        update={"start": START, "end": START + dt.timedelta(days=days - 1), "analysis": analysis}
    )


def _aa_curve(rng: np.random.Generator, days: int, units: int, heavy: bool, lift: float = 0.0) -> dict:
    sums = daily_sums(rng, START, days, units, lift, heavy)
    return curve("revenue", sums, ["control", "pct15"], {"control": units, "pct15": units}, 0.95, START)


@pytest.mark.parametrize("heavy", [False, True], ids=["bernoulli-amounts", "heavy-tailed"])
def test_always_valid_looks_every_day_keep_alpha_while_naive_peeking_does_not(heavy: bool) -> None:
    """400 A/A tests looked at on each of 28 days: the confidence sequence ever excludes 0 in at most
    alpha of them (3 binomial sd: 0.033), the pointwise 95% interval in far more."""
    rng = np.random.default_rng(7 if heavy else 8)
    runs, days, spec = 400, 28, _spec(28)
    crossed = naive = 0
    for _ in range(runs):
        daily = _aa_curve(rng, days, 500, heavy)
        found = monitor(spec, daily)
        crossed += found["verdict"] != "continue"
        lift = daily["lift"]["pct15"]
        naive += any(lo > 0 or hi < 0 for lo, hi in zip(lift["abs_lower"], lift["abs_upper"], strict=True))
    assert crossed / runs <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert naive / runs > 0.15


def test_group_sequential_looks_keep_alpha() -> None:
    """200 A/A tests with O'Brien-Fleming-type spending over 7 daily looks: at most alpha cross."""
    rng = np.random.default_rng(9)
    runs, spec = 200, _spec(7, "group_sequential")
    crossed = sum(monitor(spec, _aa_curve(rng, 7, 500, True))["verdict"] != "continue" for _ in range(runs))
    assert crossed / runs <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / runs)


def test_a_real_lift_stops_for_a_win_and_a_real_drop_for_harm() -> None:
    rng = np.random.default_rng(10)
    daily = _aa_curve(rng, 28, 2000, False)
    for sign, action in ((1, "stop_win"), (-1, "stop_harm")):
        shifted = {**daily, "lift": {"pct15": dict(daily["lift"]["pct15"])}}
        lift = shifted["lift"]["pct15"]
        lift["abs_diff"] = [d + sign * 0.5 * (i + 1) for i, d in enumerate(lift["abs_diff"])]
        found = monitor(_spec(28), shifted)
        assert found["verdict"] == action
        first = next(look for look in found["looks"] if look["action"] != "continue")
        assert first["date"] < found["looks"][-1]["date"]


def test_the_monitor_command_writes_every_look(tmp_path: Path) -> None:
    runner = CliRunner()
    spec = EXAMPLES / "spring-discount.yaml"
    assert runner.invoke(app, ["simulate", str(spec), "--units", "5000", "-o", str(tmp_path)]).exit_code == 0
    result = runner.invoke(
        app,
        ["monitor", str(spec), "--data-dir", str(tmp_path), "--json", str(tmp_path / "m.json"),
         "--plot", str(tmp_path / "m.png")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    found = json.loads((tmp_path / "m.json").read_text())
    assert len(found["looks"]) == 28
    look = found["looks"][-1]
    assert {r["variant"] for r in look["results"]} == {"pct15", "save10", "bogo"}
    assert {"metric", "variant", "estimate", "ci_lower", "ci_upper", "p_value", "crossed"} <= set(
        look["results"][0]
    )
    assert found["verdict"] in ("continue", "stop_win", "stop_harm")
    rollout = runner.invoke(app, ["monitor", str(EXAMPLES / "north-rollout.yaml")])
    assert rollout.exit_code == 2
