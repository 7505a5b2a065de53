"""``promolab monitor``'s looks (:mod:`promolab.analyze.monitor`): intervals against the closed forms
and published boundaries, the actions (win, harm on the primary or a guardrail, futility), planned
looks, the command and its state file, and what it refuses. The A/A calibration by metric kind is in
``test_monitor_calibration.py``."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import promolab
from promolab.analyze.monitor import monitor_spec, sequential_looks
from promolab.cli import app
from promolab.errors import DataError, SpecError
from promolab.simulate.looks import DAYS, monitored_two_arms
from promolab.spec.models import Guardrail, Mde, Sequential
from promolab.stats.sequential import optimal_rho

from .conftest import EXAMPLES, assert_same_looks

START = dt.date(2026, 3, 1)


def _spec(**sequential: Any) -> promolab.ExperimentSpec:
    """Spring discount cut to control and pct15, 28 days from START, revenue primary, no guardrails."""
    return monitored_two_arms(
        promolab.load_spec(EXAMPLES / "spring-discount.yaml"), START, Sequential(**sequential)
    )


def _looks(series: dict[str, list[tuple[float, float, float]]], days: int = DAYS) -> list[dict[str, Any]]:
    """Recorded looks: metric -> (estimate, se, reference mean) of pct15 on each day."""
    return [
        {
            "date": (START + dt.timedelta(days=d)).isoformat(),
            "n": 2000,
            "series": [
                {"metric": m, "variant": "pct15", "estimate": v[d][0], "se": v[d][1], "control_mean": v[d][2]}
                for m, v in series.items()
            ],
        }
        for d in range(days)
    ]


def test_the_confidence_sequence_is_the_closed_form_at_the_calendar_fraction() -> None:
    """Half-width ``se sqrt(2 (x + 1) / x log(sqrt(x + 1) / alpha))`` with ``x = t x*``, ``t = day / 28``;
    the mixture p-value is below alpha exactly when the interval excludes 0."""
    revenue = [(0.07 * (d + 1), 0.1 * math.sqrt(d + 1), 4.0) for d in range(DAYS)]
    found = sequential_looks(_spec(), _looks({"revenue": revenue}))
    x_star = optimal_rho(1.0, 0.05) ** 2
    for d, look in enumerate(found["looks"]):
        result = look["results"][0]
        x = (d + 1) / DAYS * x_star
        half = revenue[d][1] * math.sqrt(2 * (x + 1) / x * math.log(math.sqrt(x + 1) / 0.05))
        assert result["ci_lower"] == pytest.approx(revenue[d][0] - half, rel=1e-12)
        assert result["ci_upper"] == pytest.approx(revenue[d][0] + half, rel=1e-12)
        crossed_so_far = any(r["results"][0]["crossed"] for r in found["looks"][: d + 1])
        assert (result["p_value"] <= 0.05) == crossed_so_far
        assert look["fraction"] == pytest.approx((d + 1) / DAYS)
    crossed = [look["results"][0]["crossed"] for look in found["looks"]]
    assert not crossed[0]
    assert crossed[-1]


def test_group_sequential_boundaries_at_four_planned_looks_are_gsdesigns() -> None:
    """O'Brien-Fleming-type spending at weekly looks (t = 1/4 ... 1): gsDesign's sfLDOF two-sided 0.05
    boundaries 4.3326, 2.9631, 2.3590, 2.0141; the other days are not looks."""
    weekly = tuple(START + dt.timedelta(days=7 * k + 6) for k in range(4))
    spec = _spec(method="group_sequential", looks=weekly)
    recorded = [
        look
        for look in _looks({"revenue": [(0.0, 1.0, 4.0)] * DAYS})
        if look["date"] in {d.isoformat() for d in weekly}
    ]
    found = sequential_looks(spec, recorded)
    bounds = [look["results"][0]["ci_upper"] for look in found["looks"]]
    assert bounds == pytest.approx([4.3326, 2.9631, 2.3590, 2.0141], abs=1e-3)


@pytest.mark.parametrize(("sign", "action"), [(1, "stop_win"), (-1, "stop_harm")])
def test_a_clear_lift_stops_for_a_win_and_a_clear_drop_for_harm(sign: int, action: str) -> None:
    revenue = [(sign * 0.5 * (d + 1), 0.5 * math.sqrt(d + 1), 4.0) for d in range(DAYS)]
    found = sequential_looks(_spec(), _looks({"revenue": revenue}))
    assert found["verdict"] == action
    first = next(look for look in found["looks"] if look["action"] != "continue")
    assert found["stopped_on"] == first["date"] < found["looks"][-1]["date"]
    assert all(look["action"] == action for look in found["looks"] if look["date"] >= first["date"])


def test_a_guardrail_stops_for_harm_only_beyond_its_allowed_drop() -> None:
    """Satisfaction may drop 5% of the reference's 4.0 (0.2): a drop shown to be at least 0.3 stops
    the test; a drop of 0.1 shown with certainty does not."""
    spec = _spec().model_copy(
        update={"guardrails": (Guardrail(metric="satisfaction", max_relative_drop=0.05),)}
    )
    flat = [(0.0, 0.3, 4.0)] * DAYS
    for drop, stops in ((-0.6, True), (-0.1, False)):
        satisfaction = [(drop, 0.005 + 0.1 / math.sqrt(d + 1), 4.0) for d in range(DAYS)]
        found = sequential_looks(spec, _looks({"revenue": flat, "satisfaction": satisfaction}))
        assert (found["verdict"] == "stop_harm") is stops
        guardrail = [r for r in found["looks"][-1]["results"] if r["role"] == "guardrail"]
        assert guardrail[0]["crossed"] is stops


def test_futility_stops_when_the_interval_rules_out_the_mde() -> None:
    """With ``futility`` and a 5% MDE: a flat revenue measured ever more precisely stops for futility
    once the interval's top is below 5% of the reference mean; without ``futility`` it continues."""
    revenue = [(0.0, 0.2 / math.sqrt(d + 1), 4.0) for d in range(DAYS)]
    design = _spec().design.model_copy(update={"mde": Mde(relative=0.05)})
    spec = _spec(futility=True).model_copy(update={"design": design})
    found = sequential_looks(spec, _looks({"revenue": revenue}))
    assert found["verdict"] == "stop_futility"
    stop = next(look for look in found["looks"] if look["action"] != "continue")
    assert stop["results"][0]["ci_upper"] < 0.05 * 4.0
    assert sequential_looks(_spec(), _looks({"revenue": revenue}))["verdict"] == "continue"


def test_spec_checks_refuse_looks_outside_the_test_and_futility_without_a_relative_mde() -> None:
    spec = promolab.load_spec(EXAMPLES / "spring-discount.yaml")
    raw = spec.model_dump(mode="json", exclude_none=True)
    raw["analysis"]["sequential"] = {"looks": ["2026-02-01"], "futility": True}
    raw["design"]["mde"] = {"absolute": 1.0}
    with pytest.raises(SpecError) as raised:
        promolab.ExperimentSpec.model_validate(raw)
    text = str(raised.value)
    assert "analysis.sequential.looks" in text
    assert "2026-02-01" in text
    assert "analysis.sequential.futility" in text
    assert "design.mde.relative" in text
    raw["design"] |= {"mde": {"relative": 0.05}, "metric": "conversion"}
    raw["analysis"]["sequential"] = {"futility": True}
    with pytest.raises(SpecError, match="but the design sizes 'conversion'"):
        promolab.ExperimentSpec.model_validate(raw)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("monitor")
    spec = EXAMPLES / "spring-discount.yaml"
    result = CliRunner().invoke(app, ["simulate", str(spec), "--units", "5000", "-o", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def test_the_command_writes_every_look_and_keeps_its_state_beside_the_json(
    simulated: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    spec = EXAMPLES / "spring-discount.yaml"
    out = tmp_path / "m.json"
    args = [
        "monitor",
        str(spec),
        "--data-dir",
        str(simulated),
        "--json",
        str(out),
        "--plot",
        str(tmp_path / "m.png"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "m.state.duckdb").is_file()
    found = json.loads(out.read_text())
    assert len(found["looks"]) == 28
    look = found["looks"][-1]
    assert look["n"] == 5000
    assert {(r["metric"], r["role"]) for r in look["results"]} == {
        ("revenue", "primary"),
        ("satisfaction", "guardrail"),
    }
    assert {r["variant"] for r in look["results"]} == {"pct15", "save10", "bogo"}
    assert {"metric", "variant", "estimate", "ci_lower", "ci_upper", "p_value", "crossed"} <= set(
        look["results"][0]
    )
    assert found["verdict"] == look["action"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert_same_looks(json.loads(out.read_text()), found)


def test_the_command_refuses_what_it_cannot_look_at(simulated: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    rollout = runner.invoke(app, ["monitor", str(EXAMPLES / "north-rollout.yaml")])
    assert rollout.exit_code == 2
    spec = promolab.load_spec(EXAMPLES / "spring-discount.yaml")
    undated = spec.model_copy(
        update={"data": spec.data.model_copy(update={"timestamp": None}), "pre_days": 0}
    )
    with pytest.raises(DataError, match=r"needs data\.timestamp"):
        monitor_spec(undated, simulated)
    by_units = spec.model_copy(update={"primary": "pre_revenue_metric"})
    metrics = (
        *spec.metrics,
        promolab.load_spec(EXAMPLES / "spring-discount.yaml")
        .metrics[1]
        .model_copy(update={"id": "pre_revenue_metric", "source": "units", "column": "pre_revenue"}),
    )
    with pytest.raises(DataError, match="read from the units file"):
        monitor_spec(by_units.model_copy(update={"metrics": metrics}), simulated)
    state = tmp_path / "bad.state.duckdb"
    state.write_text("not a database")
    result = runner.invoke(
        app,
        [
            "monitor",
            str(EXAMPLES / "spring-discount.yaml"),
            "--data-dir",
            str(simulated),
            "--state",
            str(state),
        ],
    )
    assert result.exit_code == 2
    assert "not a looks' state file" in result.output
    assert state.read_text() == "not a database"


def test_design_sizes_the_monitored_test_and_the_report_shows_its_looks(tmp_path: Path) -> None:
    """The coupon example's weekly O'Brien-Fleming looks need about 2% more units at most and fewer
    on average at the MDE; its report carries the looks and their plot; a monitor file of another
    experiment, or a malformed one, stops the report with one line."""
    runner = CliRunner()
    spec = EXAMPLES / "coupon-email.yaml"
    design = runner.invoke(app, ["design", str(spec), "--json", str(tmp_path / "design.json")])
    assert design.exit_code == 0, design.output
    sized = json.loads((tmp_path / "design.json").read_text())["sequential"]
    assert sized["method"] == "group_sequential"
    assert sized["looks"] == 4
    assert 1.0 < sized["inflation"] < 1.05
    assert sized["expected_total_at_mde"] < sized["fixed_total"] < sized["max_total"]
    data = tmp_path / "data"
    assert runner.invoke(app, ["simulate", str(spec), "--units", "6000", "-o", str(data)]).exit_code == 0
    looks = tmp_path / "monitor.json"
    watched = runner.invoke(app, ["monitor", str(spec), "--data-dir", str(data), "--json", str(looks)])
    assert watched.exit_code == 0, watched.output
    assert [look["date"] for look in json.loads(looks.read_text())["looks"]] == [
        "2026-05-10",
        "2026-05-17",
        "2026-05-24",
        "2026-05-31",
    ]
    args = ["report", str(spec), "--data-dir", str(data), "-o", str(tmp_path / "reports")]
    reported = runner.invoke(app, [*args, "--monitor", str(looks)])
    assert reported.exit_code in (0, 1), reported.output
    folder = tmp_path / "reports" / "coupon-email-2026-05"
    assert (
        json.loads((folder / "coupon-email-2026-05.json").read_text())["monitoring"]["looks"][0]["date"]
        == "2026-05-10"
    )
    assert (
        "intervals of the primary difference at every look"
        in (folder / "coupon-email-2026-05.html").read_text()
    )
    other = json.loads(looks.read_text()) | {"experiment": "another-test"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused = runner.invoke(app, [*args, "--monitor", str(tmp_path / "other.json")])
    assert refused.exit_code == 2
    assert "looks at 'another-test'" in refused.output
    broken = json.loads(looks.read_text())
    broken["looks"][0]["fraction"] = 2.0
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    refused = runner.invoke(app, [*args, "--monitor", str(tmp_path / "broken.json")])
    assert refused.exit_code == 2
    assert "looks[0].fraction: must be less than or equal to 1" in refused.output


def test_the_notebook_function_takes_dataframes_and_gives_the_commands_looks(simulated: Path) -> None:
    spec = promolab.load_spec(EXAMPLES / "spring-discount.yaml")
    files = {
        name: simulated / path
        for name, path in {
            "assignments": spec.data.assignments,
            "units": spec.data.units,
            **spec.data.tables,
        }.items()
        if path
    }
    frames = {name: pd.read_parquet(path) for name, path in files.items() if name in ("orders", "survey")}
    through = spec.start + dt.timedelta(days=4)
    from_frames = promolab.monitor(spec, frames, data_dir=simulated, through=through)
    from_files = monitor_spec(spec, simulated, through=through)
    assert from_frames == from_files
    assert [look["date"] for look in from_frames["looks"]][-1] == through.isoformat()
    with pytest.raises(DataError, match="needs the assignments and units as files"):
        promolab.monitor(
            spec,
            {"assignments": pd.read_parquet(files["assignments"])},
            data_dir=simulated,
            state=simulated / "s.duckdb",
        )


def test_a_table_without_rows_yet_leaves_its_metric_without_an_estimate_until_it_has_some(
    tmp_path: Path,
) -> None:
    """Unsubscribes start on the third day or later: the looks before have no estimate for that
    guardrail (all units are 0 so far), later ones have; ids that match no assigned unit stay an error."""
    spec = promolab.load_spec(EXAMPLES / "coupon-email.yaml")
    daily = spec.analysis.model_copy(update={"sequential": Sequential(method="always_valid")})
    spec = spec.model_copy(update={"analysis": daily})
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["simulate", str(EXAMPLES / "coupon-email.yaml"), "--units", "30000", "-o", str(tmp_path)]
        ).exit_code
        == 0
    )
    path = tmp_path / "data" / "coupon-email" / "unsubscribes.parquet"
    rows = pd.read_parquet(path)
    rows = rows[rows["ts"].dt.date >= spec.start + dt.timedelta(days=2)]
    rows.to_parquet(path)
    found = monitor_spec(spec, tmp_path, through=spec.start + dt.timedelta(days=5))
    estimates = [
        next(r["estimate"] for r in look["results"] if r["metric"] == "unsubscribed")
        for look in found["looks"]
    ]
    first = (rows["ts"].dt.date.min() - spec.start).days
    assert first >= 2
    assert estimates[:first] == [None] * first
    assert all(e is not None for e in estimates[first:])
    rows.assign(unit_id=rows["unit_id"] + 10**9).to_parquet(path)
    with pytest.raises(DataError, match="is of a unit in the assignments"):
        monitor_spec(spec, tmp_path, through=spec.start + dt.timedelta(days=5))


@pytest.mark.parametrize("alternative", ["two-sided", "larger"])
def test_at_the_sized_maximum_the_looks_reach_the_designs_power(alternative: str) -> None:
    """The coupon test sized one- or two-sided: 200,000 Brownian paths whose drift at t = 1 is the MDE
    over the standard error of the sized maximum (from the design's baseline sd, 50/50 arms) cross the
    monitor's two-sided boundaries at the four weekly looks in the design's share of paths."""
    from promolab.design.plan import plan_design
    from promolab.design.sequential import look_fractions, sequential_plan
    from promolab.stats.sequential import spending_boundaries

    spec = promolab.load_spec(EXAMPLES / "coupon-email.yaml")
    spec = spec.model_copy(update={"design": spec.design.model_copy(update={"alternative": alternative})})
    plan = plan_design(spec)
    sized = sequential_plan(spec, plan)
    variance = plan.baseline_sd**2
    drift = abs(plan.mde_absolute) / math.sqrt(4 * variance / sized.max_total)
    fractions = look_fractions(spec)
    bounds = spending_boundaries(fractions, 1 - spec.analysis.confidence)
    rng = np.random.default_rng(18)
    steps = np.diff([0.0, *fractions])
    paths = np.cumsum(rng.standard_normal((200_000, 4)) * np.sqrt(steps) + drift * steps, axis=1)
    crossed = (np.abs(paths / np.sqrt(fractions)) >= bounds).any(axis=1).mean()
    assert crossed == pytest.approx(
        plan.power, abs=4 * math.sqrt(plan.power * (1 - plan.power) / 200_000) + 2e-3
    )
