"""Promotion economics: hand-computed cases for every mechanic, break-even and monotonicity
properties, and the uncertainty against the closed-form variance of a linear quantity.

Per-arm statistics are built directly (``Moments`` with chosen means), so every expected number
below is arithmetic on the means written in the test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from promolab.economics.promotion import conditional_draws, normal_draws, promotion_economics
from promolab.spec import spec_from_dict
from promolab.stats.moments import Moments

N = 1000  # units per arm


def make_spec(variant: dict, economics: dict | None = None, metrics: list[dict] | None = None, **extra):
    metrics = metrics or [
        {"id": "conversion", "kind": "binary", "source": "orders"},
        {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
    ]
    return spec_from_dict(
        {
            "id": "econ-test",
            "name": "economics test",
            "unit": "customer",
            "start": "2026-01-05",
            "end": "2026-01-25",
            "variants": [{"id": "control", "kind": "control", "weight": 0.5}, {**variant, "weight": 0.5}],
            "metrics": metrics,
            "primary": "revenue",
            "economics": {"unit_price": 40, "unit_cost": 24, **(economics or {})},
            "data": {"assignments": "a.parquet", "tables": {"orders": "o.parquet"}},
            **extra,
        }
    )


def arm(n: int = N, sd: float = 1.0, **means: float) -> Moments:
    """Moments with the given means and independent unit-level sds ``sd``."""
    names = tuple(means)
    return Moments(names, n, np.array(list(means.values()), float), np.eye(len(names)) * sd**2 * (n - 1))


def value(result, name: str) -> float:
    return result.arms[0].quantities[name].value


# ---------------------------------------------------------------------- every mechanic by hand


def test_percent_off_with_units_at_list_price():
    # 20% off on a 40 list price: customers pay 32 a unit. Control pays 40: U0 = 4.0 / 40 = 0.1;
    # arm U1 = 4.8 / 32 = 0.15. Discount 8 x 0.15 = 1.2 per unit -> 1200; subsidy = 1200 x 0.1 / 0.15 = 800.
    # Margin: control 4 - 24 x 0.1 = 1.6, arm 4.8 - 24 x 0.15 = 1.2 -> incremental -400; fixed 100.
    spec = make_spec({"id": "pct20", "kind": "discount", "mechanic": "percent_off", "value": 20},
                     {"fixed_cost": {"pct20": 100}})  # fmt: skip
    result = promotion_economics(
        spec, {"control": arm(conversion=0.05, revenue=4.0), "pct20": arm(conversion=0.07, revenue=4.8)}
    )
    expected = {
        "incremental_revenue": 800,
        "incremental_units": 50,
        "incremental_conversions": 20,
        "discount_cost": 1200,
        "subsidy": 800,
        "incremental_sales_discount": 400,
        "incremental_margin": -400,
        "promotion_cost": 1300,
        "net_profit": -500,
        "roi": -500 / 1300,
        "cost_per_incremental_conversion": 1300 / 20,
    }
    for name, number in expected.items():
        assert value(result, name) == pytest.approx(number, rel=1e-12), name
    # break-even: (u0 (p - c) + fixed / n) / (u0 (p - d - c)) - 1 = (1.6 + 0.1) / 0.8 - 1
    assert result.arms[0].break_even_lift == pytest.approx(1.125, rel=1e-12)
    assert result.arms[0].observed_units_lift == pytest.approx(0.5, rel=1e-12)


MEASURED = [
    {"id": "conversion", "kind": "binary", "source": "orders"},
    {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
    {"id": "units", "kind": "count", "source": "orders", "column": "quantity"},
    {"id": "orders", "kind": "count", "source": "orders"},
    {
        "id": "redemptions",
        "kind": "count",
        "source": "orders",
        "column": "redeemed",
        "role": "treatment_only",
    },
    {
        "id": "discount",
        "kind": "continuous",
        "source": "orders",
        "column": "discount",
        "role": "treatment_only",
    },
]
MEASURED_ECONOMICS = {"units": "units", "redemptions": "redemptions", "discount": "discount"}
CONTROL = {
    "conversion": 0.05,
    "revenue": 4.0,
    "units": 0.1,
    "orders": 0.05,
    "redemptions": 0.0,
    "discount": 0.0,
}


@pytest.mark.parametrize(
    ("variant", "arm_means", "expected"),
    [
        (  # amount off: measured discount 0.9 per unit, revenue 5.0, units 0.15
            {"id": "save10", "kind": "discount", "mechanic": "amount_off", "value": 10},
            {"revenue": 5.0, "units": 0.15, "orders": 0.07, "redemptions": 0.06, "discount": 0.6},
            # margin 5 - 3.6 = 1.4 vs 1.6 -> -200; cost 600; subsidy 600 x 0.1/0.15 = 400
            {"net_profit": -200, "promotion_cost": 600, "subsidy": 400, "roi": -200 / 600},
        ),
        (  # BOGO: 0.3 units a unit, 0.06 orders; revenue 6.0 after free units (discount 3.0)
            {"id": "bogo", "kind": "discount", "mechanic": "bogo"},
            {"revenue": 6.0, "units": 0.3, "orders": 0.06, "redemptions": 0.06, "discount": 3.0},
            # margin 6 - 7.2 = -1.2 vs 1.6 -> -2800; cost 3000; subsidy 3000 x 0.1 / 0.3 = 1000
            {"net_profit": -2800, "promotion_cost": 3000, "subsidy": 1000, "incremental_units": 200},
        ),
        (  # bundle 3 for 100 (cut 20 per bundle): discount measured 0.8
            {"id": "trio", "kind": "discount", "mechanic": "bundle", "items": 3, "bundle_price": 100},
            {"revenue": 5.6, "units": 0.16, "orders": 0.06, "redemptions": 0.04, "discount": 0.8},
            # margin 5.6 - 3.84 = 1.76 vs 1.6 -> +160; cost 800; subsidy 800 x 0.1 / 0.16 = 500
            {"net_profit": 160, "promotion_cost": 800, "subsidy": 500, "roi": 0.2},
        ),
        (  # coupon of 5: 0.04 redemptions a unit -> discount 0.2
            {"id": "coupon5", "kind": "discount", "mechanic": "coupon", "value": 5},
            {"revenue": 4.6, "units": 0.12, "orders": 0.06, "redemptions": 0.04, "discount": 0.2},
            # margin 4.6 - 2.88 = 1.72 vs 1.6 -> +120; cost 200; ROI 0.6
            {"net_profit": 120, "promotion_cost": 200, "roi": 0.6, "incremental_revenue": 600},
        ),
        (  # gift costing 3 per redeemed order, no price cut: 0.05 redemptions -> 150 gifts
            {"id": "tote", "kind": "discount", "mechanic": "gift", "gift_cost": 3},
            {"revenue": 4.4, "units": 0.11, "orders": 0.055, "redemptions": 0.05, "discount": 0.0},
            # margin 4.4 - 2.64 = 1.76 vs 1.6 -> +160; minus gifts 150 -> +10; cost 150
            {"net_profit": 10, "gift_shipping_cost": 150, "promotion_cost": 150, "subsidy": 0},
        ),
        (  # free shipping at 4 per redeemed order
            {"id": "ship", "kind": "discount", "mechanic": "free_shipping", "shipping_cost": 4},
            {"revenue": 4.8, "units": 0.12, "orders": 0.06, "redemptions": 0.06, "discount": 0.0},
            # margin 4.8 - 2.88 = 1.92 vs 1.6 -> +320; shipping 240 -> +80; ROI 80 / 240
            {"net_profit": 80, "gift_shipping_cost": 240, "roi": 1 / 3},
        ),
    ],
)
def test_measured_mechanics(variant, arm_means, expected):
    spec = make_spec(variant, MEASURED_ECONOMICS, MEASURED)
    treated = {**CONTROL, **arm_means, "conversion": 0.06}
    result = promotion_economics(spec, {"control": arm(**CONTROL), variant["id"]: arm(**treated)})
    for name, number in expected.items():
        assert value(result, name) == pytest.approx(number, rel=1e-12, abs=1e-9), name
    # the decomposition: subsidy + discount on incremental sales = the discount given
    parts = value(result, "subsidy") + value(result, "incremental_sales_discount")
    assert parts == pytest.approx(value(result, "discount_cost"), rel=1e-12)


def test_channel_contact_cost_and_ad_creative_iroas():
    # e-mail at 0.05 a contact: 1000 contacts -> 50; revenue 4.2 vs 4.0 at list price (U = R / 40)
    spec = make_spec({"id": "email", "kind": "channel", "channel": "email", "cost_per_contact": 0.05})
    result = promotion_economics(spec, {"control": arm(conversion=0.05, revenue=4.0),
                                        "email": arm(conversion=0.052, revenue=4.2)})  # fmt: skip
    # margin per unit: 4.2 x (1 - 24/40) = 1.68 vs 1.6 -> +80; minus 50 contacts -> +30
    assert value(result, "net_profit") == pytest.approx(30, rel=1e-12)
    assert value(result, "contact_cost") == pytest.approx(50, rel=1e-12)
    assert "iroas" not in result.arms[0].quantities  # no media spend: iROAS undefined

    ad = make_spec({"id": "ugc", "kind": "ad_creative", "creative": "c1", "headline": "h"},
                   {"media_cost": {"ugc": 400}})  # fmt: skip
    result = promotion_economics(ad, {"control": arm(conversion=0.05, revenue=4.0),
                                      "ugc": arm(conversion=0.06, revenue=5.0)})  # fmt: skip
    assert value(result, "iroas") == pytest.approx(1000 / 400, rel=1e-12)  # incremental revenue / media
    assert value(result, "net_profit") == pytest.approx(1000 * 0.4 - 400, rel=1e-12)


def test_generic_treatment_costs_per_unit_and_per_order():
    # a product change costing 0.02 per user and 0.5 per order; 1000 users per arm, orders 0.10 vs 0.12
    spec = make_spec(
        {"id": "feature", "kind": "treatment", "cost_per_unit": 0.02, "cost_per_order": 0.5},
        metrics=[
            {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
            {"id": "orders", "kind": "count", "source": "orders"},
        ],
    )
    result = promotion_economics(spec, {"control": arm(orders=0.10, revenue=4.0),
                                        "feature": arm(orders=0.12, revenue=4.4)})  # fmt: skip
    # margin: 1000 x 0.4 x (1 - 24/40) = 160; per-order cost 1000 x 0.12 x 0.5 = 60; per user 20
    assert value(result, "contact_cost") == pytest.approx(20, rel=1e-12)
    assert value(result, "gift_shipping_cost") == pytest.approx(60, rel=1e-12)
    assert value(result, "net_profit") == pytest.approx(160 - 60 - 20, rel=1e-12)
    assert value(result, "discount_cost") == 0
    free = make_spec({"id": "gate", "kind": "treatment"})  # no costs declared: none invented
    plain = _economics_of(free, 4.4)
    assert value(plain, "promotion_cost") == 0
    assert value(plain, "net_profit") == pytest.approx(1000 * 0.4 * (1 - 24 / 40), rel=1e-12)


def _economics_of(spec, revenue: float):
    treated = spec.treatments[0].id
    return promotion_economics(spec, {"control": arm(conversion=0.05, revenue=4.0),
                                      treated: arm(conversion=0.05, revenue=revenue)})  # fmt: skip


def test_price_point_units_come_from_each_arms_own_price():
    spec = spec_from_dict(  # a price test: every arm is a price point, the reference at 40
        {
            "id": "price-test",
            "name": "price test",
            "unit": "customer",
            "start": "2026-01-05",
            "end": "2026-01-25",
            "variants": [
                {"id": "p40", "kind": "price_point", "price": 40, "weight": 0.5, "reference": True},
                {"id": "p45", "kind": "price_point", "price": 45, "weight": 0.5},
            ],
            "metrics": [{"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"}],
            "primary": "revenue",
            "economics": {"unit_cost": 24},
            "data": {"assignments": "a.parquet", "tables": {"orders": "o.parquet"}},
        }
    )
    result = promotion_economics(spec, {"p40": arm(revenue=4.0), "p45": arm(revenue=4.05)})
    # U: 4.0 / 40 = 0.1 and 4.05 / 45 = 0.09; margins 1.6 and 4.05 - 2.16 = 1.89 -> +290
    assert value(result, "net_profit") == pytest.approx(290, rel=1e-12)
    assert value(result, "incremental_units") == pytest.approx(-10, rel=1e-12)
    assert value(result, "promotion_cost") == 0


# ---------------------------------------------------------------------- properties


@settings(max_examples=80, deadline=None)
@given(
    percent=st.floats(1, 39),  # below the 40% margin, so the arm can pay
    fixed=st.floats(0, 5_000),
    units0=st.floats(0.01, 2.0),
)
def test_net_profit_is_zero_at_the_break_even_lift_and_rises_with_lift(percent, fixed, units0):
    spec = make_spec({"id": "promo", "kind": "discount", "mechanic": "percent_off", "value": percent},
                     {"fixed_cost": {"promo": fixed}})  # fmt: skip
    control = arm(conversion=0.05, revenue=40 * units0)
    first = promotion_economics(spec, {"control": control, "promo": control})
    lift = first.arms[0].break_even_lift
    assert lift is not None
    paid = 40 * (1 - percent / 100)

    def net_at(units_lift: float) -> float:
        treated = arm(conversion=0.05, revenue=paid * units0 * (1 + units_lift))
        return value(
            promotion_economics(spec, {"control": control, "promo": treated}, size=200), "net_profit"
        )

    scale = N * units0 * 40  # revenue of the arm at list price: the size of the numbers involved
    assert net_at(lift) == pytest.approx(0.0, abs=1e-9 * scale)
    assert net_at(lift - 0.05) < net_at(lift) < net_at(lift + 0.05)


def test_pure_discount_break_even_is_d_over_m_minus_d():
    # 20% off (d = 8) on a 40% margin (m = 16): +100% units, the worked example
    spec = make_spec({"id": "pct20", "kind": "discount", "mechanic": "percent_off", "value": 20})
    control = arm(conversion=0.05, revenue=4.0)
    result = promotion_economics(spec, {"control": control, "pct20": control})
    assert result.arms[0].break_even_lift == pytest.approx(8 / (16 - 8), rel=1e-12)


# ---------------------------------------------------------------------- uncertainty


def test_frequentist_interval_of_net_profit_matches_the_linear_variance():
    """net = n (R1 - c U1 - R0 + c U0) - F is linear: its sd is exact from the arm covariances."""
    spec = make_spec({"id": "pct20", "kind": "discount", "mechanic": "percent_off", "value": 20},
                     {"units": "units"}, [*MEASURED[:3]])  # fmt: skip
    cov = np.array([[0.04, 0.0, 0.0], [0.0, 9.0, 0.25], [0.0, 0.25, 0.01]])  # conversion, revenue, units
    n = 5000
    moments = {
        "control": Moments(("conversion", "revenue", "units"), n, np.array([0.05, 4.0, 0.1]), cov * (n - 1)),
        "pct20": Moments(("conversion", "revenue", "units"), n, np.array([0.06, 4.6, 0.14]), cov * (n - 1)),
    }
    result = promotion_economics(spec, moments, confidence=0.95, size=200_000)
    a = np.array([0.0, 1.0, -24.0])
    sd = n * math.sqrt(2 * a @ cov @ a / n)
    low, high = result.arms[0].quantities["net_profit"].ci
    assert (high - low) / 2 == pytest.approx(1.959964 * sd, rel=0.01)  # 200k draws: MC error ~0.3%
    assert result.arms[0].quantities["net_profit"].prob_positive == pytest.approx(
        float(stats.norm.cdf(value(result, "net_profit") / sd)), abs=0.004
    )


def test_conditional_draws_keep_the_joint_law_of_the_means():
    """Anchor draws from the anchor's own normal law + conditional normal = the joint normal law."""
    rng = np.random.default_rng(3)
    cov = np.array([[9.0, 0.25, 0.3], [0.25, 0.01, 0.004], [0.3, 0.004, 0.05]])
    n = 400
    moments = Moments(("revenue", "units", "conversion"), n, np.array([4.0, 0.1, 0.05]), cov * (n - 1))
    names = ["conversion", "revenue", "units"]
    anchor = rng.normal(4.0, math.sqrt(9.0 / n), 200_000)
    joint = conditional_draws(moments, names, "revenue", anchor, rng)
    direct = normal_draws(moments, names, 200_000, rng)
    for a_name in names:
        for b_name in names:
            got = np.cov(joint[a_name], joint[b_name])[0, 1]
            want = np.cov(direct[a_name], direct[b_name])[0, 1]
            assert got == pytest.approx(want, rel=0.03, abs=1e-7), (a_name, b_name)


# ---------------------------------------------------------------------- references that cost money


def two_arm_spec(
    reference: dict, arm: dict, economics: dict | None = None, metrics: list[dict] | None = None
):
    """A spec whose reference arm is not an untreated control (it has its own costs)."""
    return spec_from_dict(
        {
            "id": "ref-costs",
            "name": "reference with costs",
            "unit": "customer",
            "start": "2026-01-05",
            "end": "2026-01-25",
            "variants": [{**reference, "weight": 0.5, "reference": True}, {**arm, "weight": 0.5}],
            "metrics": metrics
            or [
                {"id": "conversion", "kind": "binary", "source": "orders"},
                {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
            ],
            "primary": "revenue",
            "economics": {"unit_price": 40, "unit_cost": 24, **(economics or {})},
            "data": {"assignments": "a.parquet", "tables": {"orders": "o.parquet"}},
        }
    )


def test_a_reference_channel_pays_its_own_contacts_and_fixed_cost():
    # e-mail (0.02 a contact, fixed 500) against SMS (0.10 a contact, fixed 100), 1000 units each.
    # Revenue 4.0 -> 4.3 at list price: margins 1.6 and 4.3 x 0.4 = 1.72 -> +120.
    # Extra contact (0.10 - 0.02) x 1000 = 80; fixed 100 - 500 = -400 -> cost -320, net 120 - 80 + 400 = 440.
    spec = two_arm_spec(
        {"id": "email", "kind": "channel", "channel": "email", "cost_per_contact": 0.02},
        {"id": "sms", "kind": "channel", "channel": "sms", "cost_per_contact": 0.10},
        {"fixed_cost": {"email": 500, "sms": 100}},
    )
    result = promotion_economics(spec, {"email": arm(conversion=0.05, revenue=4.0),
                                        "sms": arm(conversion=0.06, revenue=4.3)})  # fmt: skip
    assert value(result, "contact_cost") == pytest.approx(80, rel=1e-12)
    assert value(result, "fixed_media_cost") == pytest.approx(-400, rel=1e-12)
    assert value(result, "promotion_cost") == pytest.approx(-320, rel=1e-12)
    assert value(result, "net_profit") == pytest.approx(440, rel=1e-12)
    assert value(result, "incremental_margin") == pytest.approx(120, rel=1e-12)


def test_a_discounted_reference_subsidy_is_the_extra_discount_on_baseline_units():
    # 10% off (cut 4, pays 36) against 20% off (cut 8, pays 32). U0 = 3.6 / 36 = 0.1, U1 = 4.8 / 32 = 0.15.
    # Discounts 0.4 and 1.2 per unit -> +800; subsidy (8 - 4) x 0.1 x 1000 = 400, rest 400.
    spec = two_arm_spec(
        {"id": "pct10", "kind": "discount", "mechanic": "percent_off", "value": 10},
        {"id": "pct20", "kind": "discount", "mechanic": "percent_off", "value": 20},
    )
    result = promotion_economics(spec, {"pct10": arm(conversion=0.05, revenue=3.6),
                                        "pct20": arm(conversion=0.06, revenue=4.8)})  # fmt: skip
    assert value(result, "discount_cost") == pytest.approx(800, rel=1e-12)
    assert value(result, "subsidy") == pytest.approx(400, rel=1e-12)
    assert value(result, "incremental_sales_discount") == pytest.approx(400, rel=1e-12)
    # margins 3.6 - 2.4 = 1.2 and 4.8 - 3.6 = 1.2: no gain; the waterfall opens at margin + discount
    assert value(result, "net_profit") == pytest.approx(0, abs=1e-9)


def test_creatives_with_equal_media_spend_have_no_iroas():
    spec = two_arm_spec(
        {"id": "product", "kind": "ad_creative", "creative": "a", "headline": "h"},
        {"id": "ugc", "kind": "ad_creative", "creative": "b", "headline": "h"},
        {"media_cost": {"product": 1000, "ugc": 1000}, "fixed_cost": {"ugc": 300}},
    )
    result = promotion_economics(spec, {"product": arm(conversion=0.05, revenue=4.0),
                                        "ugc": arm(conversion=0.05, revenue=4.5)})  # fmt: skip
    assert "iroas" not in result.arms[0].quantities  # no extra media spend buys the extra revenue
    assert value(result, "net_profit") == pytest.approx(500 * 0.4 - 300, rel=1e-12)


def test_equal_budgets_in_arms_of_unequal_realised_size_spend_nothing_extra():
    """Budgets are planned amounts: arms of equal weight and equal media and fixed budgets that reached
    1000 and 1100 units by chance have no incremental spend, so no iROAS (with the reason) and no
    fixed and media cost; the spend per randomised unit of an arm is its budget per planned unit."""
    spec = two_arm_spec(
        {"id": "product", "kind": "ad_creative", "creative": "a", "headline": "h"},
        {"id": "ugc", "kind": "ad_creative", "creative": "b", "headline": "h"},
        {"media_cost": {"product": 800, "ugc": 800}, "fixed_cost": {"product": 300, "ugc": 300}},
    )
    result = promotion_economics(spec, {"product": arm(n=1000, conversion=0.05, revenue=4.0),
                                        "ugc": arm(n=1100, conversion=0.05, revenue=4.5)})  # fmt: skip
    assert "iroas" not in result.arms[0].quantities
    assert "does not plan more media spend" in result.arms[0].not_applicable["iroas"]
    assert value(result, "fixed_media_cost") == 0
    assert value(result, "promotion_cost") == 0
    # margin only: 1100 x (4.5 - 4.0) x (1 - 24/40) = 220
    assert value(result, "net_profit") == pytest.approx(220, rel=1e-12)


def test_a_larger_media_budget_is_the_incremental_spend_of_iroas():
    """Unequal budgets: the extra spend is the difference of the budgets per planned unit (weights 0.5,
    2100 analysed units: 1050 planned each) over the arm's units: 1100 x (1500 - 1000) / 1050."""
    spec = two_arm_spec(
        {"id": "product", "kind": "ad_creative", "creative": "a", "headline": "h"},
        {"id": "ugc", "kind": "ad_creative", "creative": "b", "headline": "h"},
        {"media_cost": {"product": 1000, "ugc": 1500}},
    )
    result = promotion_economics(spec, {"product": arm(n=1000, conversion=0.05, revenue=4.0),
                                        "ugc": arm(n=1100, conversion=0.05, revenue=4.5)})  # fmt: skip
    spend = 1100 * 500 / 1050
    assert value(result, "fixed_media_cost") == pytest.approx(spend, rel=1e-12)
    assert value(result, "iroas") == pytest.approx(1100 * 0.5 / spend, rel=1e-12)
    assert result.arms[0].not_applicable == {}


@pytest.mark.parametrize(
    ("variant", "revenue", "expected"),
    [
        # amount off 10 (units_per_order 2: 5 per unit), no redemptions metric: every order redeems.
        # U = 4.5 / 35 ; orders = U / 2 ; discount = 10 x orders
        (
            {"id": "save10", "kind": "discount", "mechanic": "amount_off", "value": 10},
            4.5,
            10 * (4.5 / 35) / 2,
        ),
        ({"id": "c5", "kind": "discount", "mechanic": "coupon", "value": 5}, 4.5, 5 * (4.5 / 37.5) / 2),
        # BOGO buy 1 get 1: half of every unit's list price is the cut (20); U = 4.5 / 20
        ({"id": "bogo", "kind": "discount", "mechanic": "bogo"}, 4.5, 20 * 4.5 / 20),
    ],
)
def test_nominal_discounts_without_measured_metrics(variant, revenue, expected):
    spec = make_spec(variant, {"units_per_order": 2})
    result = promotion_economics(
        spec,
        {"control": arm(conversion=0.05, revenue=4.0), variant["id"]: arm(conversion=0.06, revenue=revenue)},
    )
    assert value(result, "discount_cost") == pytest.approx(N * expected, rel=1e-12)


def test_declared_redemptions_drive_the_coupon_cost():
    # coupon of 5 with 0.01 redemptions per unit and no discount metric: 5 x 0.01 x 1000 = 50
    metrics = [m for m in MEASURED if m["id"] != "discount"]
    spec = make_spec({"id": "c5", "kind": "discount", "mechanic": "coupon", "value": 5},
                     {"units": "units", "redemptions": "redemptions"}, metrics)  # fmt: skip
    means = {k: v for k, v in CONTROL.items() if k != "discount"}
    treated = {**means, "revenue": 4.4, "units": 0.11, "orders": 0.055, "redemptions": 0.01}
    result = promotion_economics(spec, {"control": arm(**means), "c5": arm(**treated)})
    assert value(result, "discount_cost") == pytest.approx(50, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    contact=st.floats(0, 0.2),  # the reference channel's cost per contact
    fixed=st.tuples(st.floats(0, 3_000), st.floats(0, 3_000)),
    paid=st.floats(20, 39),  # measured price paid per unit sold in the arm
    gift=st.floats(0, 3),  # gift cost per unit sold
    units0=st.floats(0.02, 1.0),
)
def test_net_profit_is_zero_at_the_break_even_lift_with_costs_on_both_sides(
    contact, fixed, paid, gift, units0
):
    """Measured discount and gifts, contact and fixed costs on the reference too."""
    metrics = [m for m in MEASURED if m["id"] != "orders"]
    spec = two_arm_spec(
        {"id": "ref", "kind": "channel", "channel": "email", "cost_per_contact": contact},
        {"id": "gift", "kind": "discount", "mechanic": "gift", "gift_cost": 1.0},
        {"units": "units", "redemptions": "redemptions", "discount": "discount",
         "fixed_cost": {"ref": fixed[0], "gift": fixed[1]}},
        metrics,
    )  # fmt: skip
    # gift_cost 1 per redeemed order and ``gift`` redemptions per unit sold: ``gift`` per unit sold
    reference = {
        "conversion": 0.05,
        "revenue": 40 * units0,
        "units": units0,
        "redemptions": 0.0,
        "discount": 0.0,
    }

    def treated(units: float) -> Moments:
        return arm(conversion=0.05, revenue=paid * units, units=units, redemptions=gift * units,
                   discount=(40 - paid) * units)  # fmt: skip

    first = promotion_economics(spec, {"ref": arm(**reference), "gift": treated(units0)}, size=200)
    lift = first.arms[0].break_even_lift
    margin = paid - 24 - gift  # contribution per unit sold
    if margin <= 0:
        assert lift is None
        return
    assert lift is not None
    at = promotion_economics(spec, {"ref": arm(**reference), "gift": treated(units0 * (1 + lift))}, size=200)
    scale = N * units0 * 40 + sum(fixed)
    assert value(at, "net_profit") == pytest.approx(0.0, abs=1e-9 * scale)


def test_units_sold_from_revenue_plus_face_value_on_measured_redemptions():
    # $10 off, 1 unit per order: control 0.1 orders at 40 (revenue 4.0); the arm sells 0.12 orders, half
    # of them with the coupon: revenue 40 x 0.12 - 10 x 0.06 = 4.2, units (4.2 + 0.6) / 40 = 0.12.
    metrics = [m for m in MEASURED if m["id"] not in ("units", "discount")]
    spec = make_spec({"id": "save10", "kind": "discount", "mechanic": "amount_off", "value": 10},
                     {"redemptions": "redemptions"}, metrics)  # fmt: skip
    control = {"conversion": 0.05, "revenue": 4.0, "orders": 0.1, "redemptions": 0.0}
    treated = {"conversion": 0.06, "revenue": 4.2, "orders": 0.12, "redemptions": 0.06}
    result = promotion_economics(spec, {"control": arm(**control), "save10": arm(**treated)})
    assert value(result, "incremental_units") == pytest.approx(20, rel=1e-12)
    assert value(result, "discount_cost") == pytest.approx(600, rel=1e-12)
    assert value(result, "net_profit") == pytest.approx(
        1000 * ((4.2 - 24 * 0.12) - (4.0 - 24 * 0.1)), rel=1e-12
    )
