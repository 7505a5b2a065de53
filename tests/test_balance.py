"""SRM test and covariate balance (promolab.design.balance)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from promolab.design.assignment import assign_units
from promolab.design.balance import (
    SRM_FLAG,
    balance_report,
    srm_test,
    standardised_mean_differences,
)
from promolab.errors import DataError

# --------------------------------------------------------------------------- SRM


@given(
    counts=st.lists(st.integers(0, 10**7), min_size=2, max_size=6),
    raw_weights=st.lists(st.floats(0.01, 1.0), min_size=6, max_size=6),
)
def test_chi2_and_p_value_equal_scipy_chisquare(counts, raw_weights):
    if sum(counts) == 0:
        counts = [1, *counts[1:]]
    arms = [f"arm{i}" for i in range(len(counts))]
    weights = dict(zip(arms, raw_weights, strict=False))
    result = srm_test(dict(zip(arms, counts, strict=True)), weights)
    shares = np.array(list(weights.values())) / sum(weights.values())
    reference = stats.chisquare(counts, f_exp=sum(counts) * shares)
    assert result.chi2 == pytest.approx(reference.statistic, rel=1e-12, abs=1e-12)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)
    assert result.df == len(counts) - 1
    assert result.n == sum(counts)


def test_srm_reference_value():
    # R: chisq.test(c(5100, 4900), p = c(0.5, 0.5)) -> X-squared = 4, df = 1, p-value = 0.0455
    result = srm_test({"control": 5100, "treatment": 4900}, {"control": 0.5, "treatment": 0.5})
    assert result.chi2 == pytest.approx(4.0, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(2 / math.sqrt(2)), rel=1e-12)  # P(|Z| > 2)
    assert result.flag is None
    assert result.observed_shares == {"control": 0.51, "treatment": 0.49}


def test_srm_detects_a_one_percent_imbalance_at_a_million_units():
    observed = np.random.default_rng(20260301).multinomial(1_000_000, [0.505, 0.495])
    result = srm_test(
        {"control": int(observed[0]), "treatment": int(observed[1])}, {"control": 0.5, "treatment": 0.5}
    )
    assert result.p_value < 0.001
    assert result.flag == SRM_FLAG


def test_srm_false_alarm_rate_is_nominal_on_fair_splits():
    replications, n = 2_000, 20_000
    weights = {"control": 0.5, "a": 0.3, "b": 0.2}
    draws = np.random.default_rng(11).multinomial(n, list(weights.values()), size=replications)
    results = [srm_test(dict(zip(weights, row.tolist(), strict=True)), weights) for row in draws]
    p_values = np.array([r.p_value for r in results])
    flagged = sum(r.flag == SRM_FLAG for r in results)
    assert flagged == int((p_values < 0.001).sum())
    assert stats.binomtest(flagged, replications, 0.001).pvalue > 0.001
    assert 0.035 <= (p_values < 0.05).mean() <= 0.065
    assert stats.kstest(p_values, "uniform").pvalue > 0.001


def test_srm_on_a_hash_assignment_with_holdout_uses_its_shares():
    arms = [("a", 1 / 3), ("b", 1 / 3), ("c", 1 / 3)]
    result = assign_units(np.arange(200_000), arms, "exp", holdout=0.1)
    counts = result.table["variant"].value_counts().to_dict()
    srm = srm_test(counts, result.shares)
    assert srm.flag is None
    assert srm.expected_shares == pytest.approx(result.shares, rel=1e-12)
    assert srm.df == 3


def test_srm_threshold_and_missing_arms():
    result = srm_test({"a": 520, "b": 480}, {"a": 0.5, "b": 0.5}, threshold=0.25)
    assert result.flag == SRM_FLAG
    assert result.threshold == 0.25
    empty_arm = srm_test({"a": 100}, {"a": 0.5, "b": 0.5})
    assert empty_arm.counts == {"a": 100, "b": 0}
    assert empty_arm.flag == SRM_FLAG


@pytest.mark.parametrize(
    ("counts", "weights", "error", "message"),
    [
        ({"a": 1}, {"a": 1.0}, ValueError, "weights need at least 2 arms, got 1"),
        ({"a": 1}, {"a": 1.0, "b": 0.0}, ValueError, "weights must be positive"),
        (
            {"a": 1, "x": 2},
            {"a": 0.5, "b": 0.5},
            DataError,
            "variant counts: 'x' not among the arms 'a', 'b'",
        ),
        ({"a": -1, "b": 2}, {"a": 0.5, "b": 0.5}, DataError, "variant counts: must be >= 0"),
        ({"a": 0}, {"a": 0.5, "b": 0.5}, DataError, "variant counts: no units in any arm"),
    ],
)
def test_srm_errors(counts, weights, error, message):
    with pytest.raises(error, match=message):
        srm_test(counts, weights)


def test_srm_threshold_must_be_a_probability():
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\), got 0"):
        srm_test({"a": 1, "b": 1}, {"a": 0.5, "b": 0.5}, threshold=0)


# --------------------------------------------------------------------------- SMD


def _smd(treated: np.ndarray, control: np.ndarray) -> float:
    """The formula, straight from numpy."""
    scale = math.sqrt((np.var(treated, ddof=1) + np.var(control, ddof=1)) / 2)
    return float((np.mean(treated) - np.mean(control)) / scale)


@given(
    control=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=40),
    treated=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=40),
)
def test_numeric_smd_matches_the_formula(control, treated):
    scale = math.sqrt((np.var(treated, ddof=1) + np.var(control, ddof=1)) / 2)
    # sd > 1e-3 x the largest |value|: both variance algorithms then agree to ~1e-12 relative
    assume(scale > 1e-3 * max(abs(v) for v in control + treated))
    frame = pd.DataFrame({"arm": ["c"] * len(control) + ["t"] * len(treated), "x": control + treated})
    got = standardised_mean_differences(frame, "arm", ["x"], "c")
    assert got.shape == (1, 6)
    assert got.at[0, "smd"] == pytest.approx(_smd(np.array(treated), np.array(control)), rel=1e-9)


def test_smd_table_for_numeric_boolean_and_categorical_covariates():
    frame = pd.DataFrame(
        {
            "arm": ["c", "c", "c", "c", "t", "t", "t", "t", "u", "u"],
            "spend": [1.0, 2.0, 3.0, 4.0, 2.0, 3.0, 4.0, 5.0, np.nan, 1.0],
            "member": [True, False, True, False, True, True, True, False, False, True],
            "segment": ["new", "new", "old", None, "old", "old", "new", "old", "new", "old"],
        }
    )
    frame.loc[8, "spend"] = 0.0
    got = standardised_mean_differences(frame, "arm", ["spend", "member", "segment"], "c")
    assert list(got.columns) == ["variant", "covariate", "level", "mean", "reference_mean", "smd"]
    t = got[got["variant"] == "t"]
    t = t.set_index(["covariate", t["level"].fillna("")])
    assert t.at[("spend", ""), "smd"] == pytest.approx(
        _smd(np.array([2, 3, 4, 5.0]), np.array([1, 2, 3, 4.0]))
    )
    assert t.at[("member", ""), "mean"] == 0.75
    c_segment = np.array(["new", "new", "old", "<missing>"])
    t_segment = np.array(["old", "old", "new", "old"])
    for level in ("<missing>", "new", "old"):
        expected = _smd((t_segment == level).astype(float), (c_segment == level).astype(float))
        assert t.at[("segment", level), "smd"] == pytest.approx(expected)
    assert list(got["variant"].unique()) == ["t", "u"]


def test_smd_of_constant_columns_is_zero_or_infinite():
    frame = pd.DataFrame({"arm": ["c", "c", "t", "t", "u", "u"], "x": [1.0, 1.0, 1.0, 1.0, 2.0, 2.0]})
    got = standardised_mean_differences(frame, "arm", ["x"], "c").set_index("variant")["smd"]
    assert got["t"] == 0.0
    assert got["u"] == math.inf


def test_smd_is_invariant_to_shift_and_scale():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"arm": rng.choice(["c", "t"], 5_000), "revenue": rng.gamma(0.5, 20.0, 5_000)})
    base = standardised_mean_differences(frame, "arm", ["revenue"], "c")["smd"].iloc[0]
    moved = frame.assign(revenue=1e6 + 100 * frame["revenue"])  # shifted by 1e6, in cents
    # Centred variances: 2.5e-12 relative here; sum_sq - sum**2 / n would be off by ~3e-10.
    moved_smd = standardised_mean_differences(moved, "arm", ["revenue"], "c")["smd"].iloc[0]
    assert moved_smd == pytest.approx(base, rel=1e-10)


def test_no_covariates_give_an_empty_table():
    frame = pd.DataFrame({"arm": ["c", "t"]})
    assert standardised_mean_differences(frame, "arm", [], "c").empty


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"arm": ["t", "t"], "x": [1.0, 2.0]}), "reference arm 'c' has no units; arms: 't'"),
        (
            pd.DataFrame({"arm": ["c", "c", "t"], "x": [1.0, 2.0, 3.0]}),
            "arm 't' needs >= 2 non-missing values of 'x', got 1",
        ),
        (
            pd.DataFrame({"arm": pd.Categorical(["c", "c"], categories=["c", "t"]), "x": [1.0, 2.0]}),
            "arm 't' needs >= 2 non-missing values of 'x', got 0",
        ),
        (pd.DataFrame({"arm": [], "x": []}), "balance: no units"),
        (pd.DataFrame({"arm": ["c"]}), r"balance: missing column\(s\) 'x'; columns are 'arm'"),
    ],
)
def test_smd_errors(frame, message):
    with pytest.raises(DataError, match=message):
        standardised_mean_differences(frame, "arm", ["x"], "c")


# --------------------------------------------------------------------------- report


def test_balance_report_rows_per_arm():
    rng = np.random.default_rng(2)
    n = 4_000
    frame = pd.DataFrame(
        {
            "variant": rng.choice(["control", "promo", "holdout"], n, p=[0.45, 0.45, 0.1]),
            "pre_revenue": rng.gamma(1.0, 30.0, n),
            "segment": rng.choice(["new", "loyal"], n),
        }
    )
    weights = {"control": 0.45, "promo": 0.45, "holdout": 0.1}
    report = balance_report(frame, "variant", weights, ["pre_revenue", "segment"], "control")
    rows = report.to_dicts()
    assert [r["variant"] for r in rows] == ["control", "promo", "holdout"]
    assert sum(r["units"] for r in rows) == n
    control, promo = rows[0], rows[1]
    assert control["max_abs_smd"] is None
    assert control["worst_covariate"] is None
    promo_smd = report.smd[report.smd["variant"] == "promo"]
    assert promo["max_abs_smd"] == promo_smd["smd"].abs().max()
    assert promo["worst_covariate"] in {"pre_revenue", "segment=new", "segment=loyal"}
    assert promo["srm_p_value"] == report.srm.p_value
    assert report.to_frame().shape == (3, 8)


def test_balance_report_rejects_labels_without_weight():
    frame = pd.DataFrame({"variant": ["control", "promo", "holdout"], "x": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match="variant counts: 'holdout' not among the arms 'control', 'promo'"):
        balance_report(frame, "variant", {"control": 0.5, "promo": 0.5}, [], "control")
