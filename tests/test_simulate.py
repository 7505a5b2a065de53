"""The simulator: deterministic per seed, realistic shapes, and it recovers configured effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import promolab
from promolab.simulate import simulate, write_simulated
from promolab.spec import spec_from_dict, spec_to_dict

from .conftest import example_paths

Z = 4.0  # |deviation| allowed, in standard errors (false alarm ~6e-5 per check)


def _spec_with(spring: promolab.ExperimentSpec, **simulation: object) -> promolab.ExperimentSpec:
    raw = spec_to_dict(spring)
    raw["simulation"] = simulation
    return spec_from_dict(raw)


def _per_unit(data, spec) -> pd.DataFrame:
    """Assignments joined with per-unit revenue, orders and list value."""
    orders = data.frame("orders")
    orders["list_amount"] = orders["amount"] + orders["discount"]
    per_unit = orders.groupby("unit_id").agg(
        revenue=("amount", "sum"), list_revenue=("list_amount", "sum"), orders=("order_id", "size")
    )
    frame = data.frame("assignments").merge(per_unit, on="unit_id", how="left").fillna(0.0)
    frame["buyer"] = frame["orders"] > 0
    return frame


def _log_ratio_z(treated: np.ndarray, control: np.ndarray, expected_ratio: float) -> float:
    """z-score of log(mean ratio) against log(expected), delta-method standard error."""
    m1, m0 = treated.mean(), control.mean()
    se = np.sqrt(treated.var(ddof=1) / (len(treated) * m1**2) + control.var(ddof=1) / (len(control) * m0**2))
    return float((np.log(m1 / m0) - np.log(expected_ratio)) / se)


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.stem)
def test_every_example_simulates_every_table(path, tmp_path):
    spec = promolab.load_spec(path)
    data = simulate(spec, units=5_000, seed=7)
    written = write_simulated(data, spec, tmp_path)
    expected = {"units"} if spec.data.assignments is None else {"assignments", "units"}
    if spec.data.units is None:
        expected.discard("units")
    assert set(written) == expected | set(spec.data.tables)
    assert all(p.exists() and p.stat().st_size > 0 for p in written.values())


def test_same_seed_same_data_other_seed_other_data(spring_spec):
    first = simulate(spring_spec, units=20_000, seed=11)
    again = simulate(spring_spec, units=20_000, seed=11)
    other = simulate(spring_spec, units=20_000, seed=12)
    for name, table in first.tables.items():
        assert table.equals(again.tables[name]), name
    assert not first.tables["orders"].equals(other.tables["orders"])


def test_arm_shares_within_binomial_bounds(spring_spec):
    n = 200_000
    variants = simulate(spring_spec, units=n, seed=3).frame("assignments")["variant"]
    for variant in spring_spec.variants:
        observed = int((variants == variant.id).sum())
        lo, hi = stats.binom.ppf([1e-5, 1 - 1e-5], n, variant.weight)
        assert lo <= observed <= hi, variant.id


def test_revenue_is_heavy_tailed_with_many_zero_units(spring_spec):
    frame = _per_unit(simulate(spring_spec, units=100_000, seed=5), spring_spec)
    assert 0.85 < (frame["revenue"] == 0).mean() < 0.95
    buyers = frame.loc[frame["buyer"], "revenue"]
    assert stats.skew(buyers) > 2  # log-normal baskets: long right tail


def test_recovers_conversion_and_basket_lift_of_an_offer_free_arm(spring_spec):
    raw = spec_to_dict(spring_spec)
    raw["variants"][1] = {
        "id": "pct15",
        "kind": "channel",
        "channel": "sms",
        "cost_per_contact": 0.05,
        "weight": 0.25,
    }
    raw["simulation"] = {"effects": {"pct15": {"conversion": 0.2, "basket": 0.1}}}
    spec = spec_from_dict(raw)
    frame = _per_unit(simulate(spec, units=400_000, seed=21), spec)
    treated, control = frame[frame.variant == "pct15"], frame[frame.variant == "control"]
    assert abs(_log_ratio_z(treated.buyer.to_numpy(float), control.buyer.to_numpy(float), 1.2)) < Z
    assert abs(_log_ratio_z(treated.revenue.to_numpy(), control.revenue.to_numpy(), 1.2 * 1.1)) < Z
    # and the test has power: a wrong truth (no lift) is rejected
    assert abs(_log_ratio_z(treated.buyer.to_numpy(float), control.buyer.to_numpy(float), 1.0)) > Z


def test_percent_off_discounts_redeemed_orders_by_exactly_the_percentage(spring_spec):
    spec = _spec_with(spring_spec, effects={"pct15": {"redemption": 0.6}})
    data = simulate(spec, units=100_000, seed=8)
    orders = data.frame("orders").merge(data.frame("assignments"), on="unit_id")
    pct = orders[orders.variant == "pct15"]
    redeemed = pct[pct.redeemed]
    list_amount = redeemed.amount + redeemed.discount
    np.testing.assert_allclose(redeemed.discount, 0.15 * list_amount, atol=0.011)
    assert abs(pct.redeemed.mean() - 0.6) < Z * np.sqrt(0.24 / len(pct))
    assert not orders[orders.variant == "control"].redeemed.any()
    # expected paid revenue ratio: 1 - 15% x 0.6 (no other effect configured)
    frame = _per_unit(data, spec)
    treated, control = frame[frame.variant == "pct15"], frame[frame.variant == "control"]
    assert abs(_log_ratio_z(treated.revenue.to_numpy(), control.revenue.to_numpy(), 1 - 0.15 * 0.6)) < Z


def test_amount_off_respects_min_spend_and_bogo_gives_free_units(spring_spec):
    data = simulate(spring_spec, units=200_000, seed=9)
    orders = data.frame("orders").merge(data.frame("assignments"), on="unit_id")
    orders["list_amount"] = orders.amount + orders.discount
    save = orders[orders.variant == "save10"]
    assert (save.loc[save.redeemed, "discount"] == 10).all()
    assert (save.loc[save.redeemed, "list_amount"] >= 50 - 1e-9).all()
    assert not save.loc[save.list_amount < 50 - 0.01, "redeemed"].any()
    bogo = orders[(orders.variant == "bogo") & orders.redeemed]
    np.testing.assert_allclose(bogo.discount, (bogo.quantity // 2) * 40.0)


def test_survey_score_shift_matches_the_ordered_normal_model(spring_spec):
    spec = _spec_with(spring_spec, effects={"pct15": {"score": 0.3}}, survey_rate=0.5)
    data = simulate(spec, units=200_000, seed=13)
    survey = data.frame("survey").merge(data.frame("assignments"), on="unit_id")
    levels = np.arange(1, 6)
    cuts = stats.norm.ppf(np.cumsum(levels / levels.sum())[:-1])
    for variant, shift in (("control", 0.0), ("pct15", 0.3)):
        probs = np.diff(np.concatenate([[0.0], stats.norm.cdf(cuts - shift), [1.0]]))
        mean, sd = levels @ probs, np.sqrt(((levels - levels @ probs) ** 2) @ probs)
        scores = survey.loc[survey.variant == variant, "score"]
        assert abs(scores.mean() - mean) < Z * sd / np.sqrt(len(scores)), variant


def test_click_rate_lift_is_recovered_for_the_ad_creative_example():
    from .conftest import EXAMPLES

    spec = promolab.load_spec(EXAMPLES / "ad-creative.yaml")
    data = simulate(spec, units=300_000, seed=4)
    arms = data.frame("assignments").set_index("unit_id")["variant"]
    impressions = data.frame("impressions")["unit_id"].map(arms).value_counts()
    clicks = data.frame("clicks")["unit_id"].map(arms).value_counts()
    ctr = clicks / impressions
    se = np.sqrt(1 / clicks["lifestyle"] + 1 / clicks["product"])  # Poisson-binomial counts
    assert abs(np.log(ctr["lifestyle"] / ctr["product"]) - np.log(1.12)) < Z * se


def test_pre_period_spend_correlates_with_in_period_spend(spring_spec):
    data = simulate(spring_spec, units=100_000, seed=2)
    frame = _per_unit(data, spring_spec).merge(data.frame("units"), on="unit_id")
    # CUPED needs a real pre/in-period link: Pearson r ~ 0.13 at the defaults (r^2 ~ 1.7% variance)
    assert np.corrcoef(frame.pre_revenue, frame.revenue)[0, 1] > 0.08


def test_row_id_specs_write_no_id_column_and_raw_labels():
    from .conftest import EXAMPLES

    spec = promolab.load_spec(EXAMPLES / "hillstrom.yaml")
    units = simulate(spec, units=3_000, seed=1).frame("units")
    assert "unit_id" not in units.columns
    assert set(units["segment"]) == {"No E-Mail", "Mens E-Mail", "Womens E-Mail"}
    assert {"visit", "conversion", "spend", "recency", "history"} <= set(units.columns)
    converted = units["conversion"] == 1
    assert (units.loc[converted, "spend"] > 0).all()
    assert (units.loc[~converted, "spend"] == 0).all()


def test_csv_and_parquet_hold_the_same_rows(spring_spec, tmp_path):
    data = simulate(spring_spec, units=2_000, seed=6)
    as_parquet = write_simulated(data, spring_spec, tmp_path / "p")
    as_csv = write_simulated(data, spring_spec, tmp_path / "c", fmt="csv")
    for name in as_parquet:
        left = pd.read_parquet(as_parquet[name])
        right = pd.read_csv(as_csv[name])
        assert len(left) == len(right), name
        assert list(left.columns) == list(right.columns), name
        numeric = left.select_dtypes("number").columns
        np.testing.assert_allclose(left[numeric].to_numpy(float), right[numeric].to_numpy(float))


def test_capped_propensity_mean_matches_monte_carlo():
    from promolab.simulate.engine import PROPENSITY_CAP, _capped_mean

    z = np.random.default_rng(0).standard_normal(2_000_000)
    for h in (0.0, 0.6, 1.0, 1.5):
        draws = np.minimum(np.exp(h * z - h**2 / 2), PROPENSITY_CAP)
        se = draws.std() / np.sqrt(len(z))
        assert abs(_capped_mean(h, PROPENSITY_CAP) - draws.mean()) < Z * se + 1e-12, h
