"""Design planning: solve-back, monotonicity, simulated power, break-even and pre-period estimates."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from typer.testing import CliRunner

import promolab
from promolab.cli import app
from promolab.design import estimates
from promolab.design.breakeven import ArmEconomics, break_even
from promolab.design.plan import plan_design
from promolab.spec import spec_from_dict, spec_to_dict
from promolab.stats.sizing import Outcome, minimum_detectable_effect, power, sample_size

from .conftest import EXAMPLES, example_paths

outcomes = st.one_of(
    st.builds(Outcome, mean=st.floats(0.01, 0.6)),
    st.builds(Outcome, mean=st.floats(0.5, 100), sd=st.floats(0.5, 200)),
)


@settings(max_examples=80, deadline=None)
@given(outcome=outcomes, rel=st.floats(0.02, 0.3), target=st.floats(0.5, 0.95), share=st.floats(0.1, 0.5))
def test_power_to_n_to_power_solves_back(outcome, rel, target, share):
    effect = rel * outcome.mean
    total = sample_size(outcome, effect, share, share, target_power=target)
    assert power(outcome, effect, share * total, share * total) >= target - 1e-9
    assume(total > 2 / share + 1)  # below that the floor of 2 units per arm decides, not the power
    assert power(outcome, effect, share * (total - 1), share * (total - 1)) < target + 1e-9


@settings(max_examples=80, deadline=None)
@given(outcome=outcomes, n=st.integers(200, 10**6), target=st.floats(0.5, 0.95))
def test_mde_to_n_to_mde_solves_back(outcome, n, target):
    mde = minimum_detectable_effect(outcome, n, n, target_power=target)
    assume(not outcome.is_binary or outcome.mean + mde < 1)
    total = sample_size(outcome, mde, 0.5, 0.5, target_power=target)
    assert abs(total / 2 - n) <= 1
    assert power(outcome, mde, n, n) == pytest.approx(target, abs=1e-7)


@settings(max_examples=60, deadline=None)
@given(outcome=outcomes, rel=st.floats(0.02, 0.2), bigger=st.floats(1.05, 3.0), target=st.floats(0.5, 0.9))
def test_n_falls_as_mde_grows_and_rises_with_power(outcome, rel, bigger, target):
    small = sample_size(outcome, rel * outcome.mean, 0.5, 0.5, target_power=target)
    large = sample_size(outcome, min(rel * bigger, 0.9) * outcome.mean, 0.5, 0.5, target_power=target)
    assert large <= small
    assert sample_size(outcome, rel * outcome.mean, 0.5, 0.5, target_power=min(target + 0.05, 0.99)) >= small


@settings(max_examples=60, deadline=None)
@given(outcome=outcomes, n=st.integers(100, 10**6), rel=st.floats(0.01, 0.5))
def test_power_is_monotone_in_n_and_effect_and_symmetric_for_continuous(outcome, n, rel):
    effect = rel * outcome.mean
    if outcome.is_binary and outcome.mean + 2 * effect >= 1:
        return
    assert power(outcome, effect, 2 * n, 2 * n) >= power(outcome, effect, n, n)
    assert power(outcome, 2 * effect, n, n) >= power(outcome, effect, n, n)
    if not outcome.is_binary:
        assert power(outcome, -effect, n, n) == pytest.approx(power(outcome, effect, n, n), abs=1e-12)


def test_simulated_power_of_a_planned_binary_design_matches_the_plan():
    """Exact binomial draws, unpooled z-test at the planned n: empirical power within 2 points."""
    p, lift, alpha = 0.08, 0.1, 0.05
    effect = p * lift
    total = sample_size(Outcome(mean=p), effect, 0.5, 0.5, alpha=alpha, target_power=0.8)
    n = math.ceil(total / 2)
    rng = np.random.default_rng(2026)
    reps = 20_000
    x_c, x_t = rng.binomial(n, p, reps), rng.binomial(n, p + effect, reps)
    p_c, p_t = x_c / n, x_t / n
    z = (p_t - p_c) / np.sqrt(p_c * (1 - p_c) / n + p_t * (1 - p_t) / n)
    empirical = np.mean(np.abs(z) > stats.norm.isf(alpha / 2))
    planned = power(Outcome(mean=p), effect, n, n, alpha=alpha)
    assert abs(empirical - planned) < 0.02


def test_simulated_power_of_heavy_tailed_revenue_matches_the_plan():
    """Zero-inflated log-normal revenue, Welch z-test at the planned n: within 2 points of the plan."""
    rng = np.random.default_rng(7)
    buy, mu, sigma = 0.1, 3.0, 1.0
    mean = buy * math.exp(mu + sigma**2 / 2)
    sd = math.sqrt(buy * math.exp(2 * mu + 2 * sigma**2) - mean**2)
    lift = 0.15
    total = sample_size(Outcome(mean=mean, sd=sd), lift * mean, 0.5, 0.5)
    n = math.ceil(total / 2)
    reps = 3000

    def arm(scale: float) -> tuple[np.ndarray, np.ndarray]:
        values = (rng.random((reps, n)) < buy) * rng.lognormal(mu, sigma, (reps, n)) * scale
        return values.mean(axis=1), values.var(axis=1, ddof=1)

    m_c, v_c = arm(1.0)
    m_t, v_t = arm(1 + lift)
    z = (m_t - m_c) / np.sqrt(v_c / n + v_t / n)
    empirical = np.mean(np.abs(z) > stats.norm.isf(0.025))
    planned = power(Outcome(mean=mean, sd=sd * math.sqrt((1 + (1 + lift) ** 2) / 2)), lift * mean, n, n)
    assert abs(empirical - planned) < 0.02


@pytest.mark.parametrize(
    ("discount", "margin_share", "expected"), [(0.2, 0.4, 1.0), (0.1, 0.4, 1 / 3), (0.15, 0.45, 0.5)]
)
def test_break_even_of_a_percent_discount_is_d_over_m_minus_d(discount, margin_share, expected):
    price = 40.0
    reference = ArmEconomics(price=price, cost_per_unit_sold=0.0)
    arm = ArmEconomics(price=price, cost_per_unit_sold=discount * price)
    unit_cost = price * (1 - margin_share)
    result = break_even(arm, reference, unit_cost, units_sold=0.3, n_arm=10_000)
    assert result.relative_lift == pytest.approx(expected)

    # profit is exactly zero at the break-even lift, and monotone in lift
    def profit(lift: float) -> float:
        return 0.3 * (1 + lift) * (price - discount * price - unit_cost) - 0.3 * (price - unit_cost)

    assert profit(result.relative_lift) == pytest.approx(0.0, abs=1e-12)
    assert profit(result.relative_lift - 0.01) < 0 < profit(result.relative_lift + 0.01)
    assert result.subsidy == pytest.approx(10_000 * 0.3 * discount * price)


def test_break_even_includes_contact_and_fixed_costs():
    reference = ArmEconomics(price=28.0, cost_per_unit_sold=0.0)
    sms = ArmEconomics(
        price=28.0, cost_per_unit_sold=0.0, contact_cost=0.06, fixed_cost=1000.0, spread_units=10_000
    )
    result = break_even(sms, reference, unit_cost=12.0, units_sold=0.05, n_arm=10_000)
    # incremental margin u0 * L * 16 must pay 0.06 + 0.1 per unit
    assert result.relative_lift == pytest.approx(0.16 / (0.05 * 16))
    assert result.test_cost == pytest.approx(10_000 * 0.06 + 1000.0)


def test_never_paying_promotion_is_flagged_not_given_a_number():
    plan = plan_design(promolab.load_spec(EXAMPLES / "spring-discount.yaml"))
    bogo = plan.break_even["bogo"]  # a free unit per two costs 20 on a 18 margin
    assert bogo.relative_lift is None
    assert bogo.flag == "NEVER_PAYS"
    # 15% off $40 = $6 per unit on an $18 margin, plus $2,000 fixed spread over the arm's units,
    # each buying 4.1 / 40 units: L* = (6 + 2000 / n / u0) / (18 - 6)
    u0, n = 4.1 / 40, plan.per_arm["pct15"]
    assert plan.break_even["pct15"].relative_lift == pytest.approx((6 + 2000 / n / u0) / 12)


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.stem)
def test_every_example_can_be_planned(path):
    plan = plan_design(promolab.load_spec(path))
    assert plan.total >= sum(plan.per_arm.values())
    assert plan.power >= promolab.load_spec(path).design.power - 1e-9


def test_plan_uses_bonferroni_over_treatment_arms_and_unequal_weights():
    spec = promolab.load_spec(EXAMPLES / "channel.yaml")
    plan = plan_design(spec)
    assert plan.alpha_per_comparison == pytest.approx(0.05 / 3)
    assert plan.per_arm["email"] == pytest.approx(3 * plan.per_arm["holdout"], abs=3)
    outcome = Outcome(mean=1.5, sd=12.0)
    effect = 0.08 * 1.5
    assert power(outcome, effect, plan.per_arm["holdout"], plan.per_arm["sms"], 0.05 / 3, "larger") >= 0.8


def test_cuped_and_cluster_factors_scale_the_sample_size():
    raw = spec_to_dict(promolab.load_spec(EXAMPLES / "spring-discount.yaml"))
    base = plan_design(spec_from_dict(raw))
    raw["design"]["cuped_r2"] = 0.36
    cuped = plan_design(spec_from_dict(raw))
    assert cuped.total == pytest.approx(base.total * 0.64, rel=1e-3)
    raw["design"]["cluster"] = {"column": "store_id", "icc": 0.01, "mean_size": 51}
    clustered = plan_design(spec_from_dict(raw))
    assert clustered.total == pytest.approx(base.total * 0.64 * 1.5, rel=1e-3)
    assert clustered.clusters == math.ceil(clustered.total / 51)


def test_total_units_plans_the_mde_that_sizes_back_to_the_same_total():
    raw = spec_to_dict(promolab.load_spec(EXAMPLES / "channel.yaml"))
    raw["design"].pop("mde")
    raw["design"]["total_units"] = 400_000
    fixed = plan_design(spec_from_dict(raw))
    assert fixed.power == 0.8
    raw["design"].pop("total_units")
    raw["design"]["mde"] = {"relative": fixed.mde_relative}
    sized = plan_design(spec_from_dict(raw))
    assert abs(sized.total - 400_000) <= len(sized.per_arm) + 1


def test_duration_rounds_up_to_whole_weeks():
    plan = plan_design(promolab.load_spec(EXAMPLES / "price-points.yaml"))
    assert plan.days is not None
    assert plan.days % 7 == 0
    assert plan.days >= plan.total / 15_000


def test_r_squared_matches_statsmodels_ols():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x1": rng.normal(size=500), "x2": rng.exponential(size=500)})
    frame["revenue"] = 2 + frame.x1 - 0.5 * frame.x2 + rng.normal(size=500)
    expected = sm.OLS(frame.revenue, sm.add_constant(frame[["x1", "x2"]])).fit().rsquared
    assert estimates.r_squared(frame, "revenue", ["x1", "x2"], "t") == pytest.approx(expected, rel=1e-10)


def test_icc_anova_matches_the_hand_computation_and_recovers_a_known_icc():
    frame = pd.DataFrame({"y": [1.0, 2, 3, 4, 6, 8, 5, 5], "store": [1, 1, 1, 2, 2, 2, 3, 3]})
    # by hand: grand mean 4.25; group means 2, 6, 5 (n 3, 3, 2)
    msb = (3 * (2 - 4.25) ** 2 + 3 * (6 - 4.25) ** 2 + 2 * (5 - 4.25) ** 2) / 2
    msw = ((1 + 0 + 1) + (4 + 0 + 4) + 0) / 5
    m0 = (8 - (9 + 9 + 4) / 8) / 2
    assert estimates.icc_anova(frame, "y", "store", "t") == pytest.approx(
        (msb - msw) / (msb + (m0 - 1) * msw)
    )
    rng = np.random.default_rng(3)
    stores = np.repeat(np.arange(400), 50)
    y = rng.normal(0, math.sqrt(0.05), 400)[stores] + rng.normal(0, math.sqrt(0.95), len(stores))
    icc = estimates.icc_anova(pd.DataFrame({"y": y, "s": stores}), "y", "s", "t")
    assert abs(icc - 0.05) < 0.015


def test_ratio_outcome_from_pre_period_uses_the_delta_method():
    rng = np.random.default_rng(5)
    impressions = rng.poisson(6, 20_000)
    clicks = rng.binomial(impressions, 0.02)
    frame = pd.DataFrame({"clicks": clicks, "impressions": impressions})
    spec = promolab.load_spec(EXAMPLES / "ad-creative.yaml")
    outcome = estimates.outcome_from_data(spec.metric("ctr"), frame, "t")
    assert outcome.mean == pytest.approx(clicks.sum() / impressions.sum())
    # variance of the ratio of sums over many resamples of 2,000 units vs the delta-method sd
    samples = rng.integers(0, 20_000, (2000, 2000))
    ratios = clicks[samples].sum(axis=1) / impressions[samples].sum(axis=1)
    assert np.std(ratios) == pytest.approx(outcome.sd / math.sqrt(2000), rel=0.08)


def test_design_cli_writes_the_documented_json_and_a_plot(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "design",
            str(EXAMPLES / "spring-discount.yaml"),
            "--json",
            str(tmp_path / "d.json"),
            "--plot",
            str(tmp_path / "curve.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "d.json").read_text())
    assert {"per_arm", "total", "days", "mde_relative", "mde_absolute", "power", "break_even"} <= set(plan)
    assert set(plan["break_even"]["pct15"]) >= {"relative_lift", "power"}
    assert plan["total"] == sum(plan["per_arm"].values())
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_design_cli_estimates_from_a_pre_period_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 50_000
    pre = rng.gamma(0.3, 20, n)
    frame = pd.DataFrame(
        {"pre_revenue": pre, "revenue": 0.5 * pre + rng.gamma(0.3, 10, n), "conversion": rng.random(n) < 0.08}
    )
    frame.to_csv(tmp_path / "pre.csv", index=False)
    result = CliRunner().invoke(
        app,
        [
            "design",
            str(EXAMPLES / "spring-discount.yaml"),
            "--pre-period",
            str(tmp_path / "pre.csv"),
            "--json",
            str(tmp_path / "d.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "d.json").read_text())
    assert plan["inputs"]["baseline_source"].endswith("pre.csv")
    assert plan["baseline_mean"] == pytest.approx(frame.revenue.mean())
    expected_r2 = np.corrcoef(frame.pre_revenue, frame.revenue)[0, 1] ** 2
    assert plan["inputs"]["cuped_r2"] == pytest.approx(expected_r2, rel=1e-9)


def test_design_cli_missing_baseline_is_a_clear_error(tmp_path):
    raw = spec_to_dict(promolab.load_spec(EXAMPLES / "spring-discount.yaml"))
    raw["design"]["baseline"] = {}
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(promolab.dump_spec(spec_from_dict(raw)))
    result = CliRunner().invoke(app, ["design", str(spec_file)])
    assert result.exit_code == 2
    assert "no baseline for metric 'revenue'" in result.stderr
