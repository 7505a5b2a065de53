"""Frequentist segment lifts and Cochran's Q heterogeneity test (promolab.analyze.segments).

References: each segment's comparison against scipy's Welch test on the segment's raw values; Q and
its p-value against statsmodels' fixed-effect meta-analysis (``combine_effects``); calibration: with
the same lift in every segment the test rejects at its nominal rate.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from promolab.analyze.segments import segment_lifts
from promolab.spec import spec_from_dict
from promolab.stats.moments import ArmStats, ExperimentStats, Moments

SEGMENTS = ("north", "south", "east", "west")


def _spec():
    return spec_from_dict(
        {
            "id": "segments",
            "name": "segments",
            "unit": "customer",
            "start": "2026-01-01",
            "end": "2026-01-28",
            "variants": [
                {"id": "control", "kind": "control", "weight": 0.5},
                {"id": "pct10", "kind": "discount", "mechanic": "percent_off", "value": 10, "weight": 0.5},
            ],
            "metrics": [{"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"}],
            "primary": "revenue",
            "analysis": {"segments": [{"column": "region"}]},
            "data": {"assignments": "a.parquet", "units": "u.parquet", "tables": {"orders": "o.parquet"}},
        }
    )


def _values(rng, lifts: dict[str, float], n: int) -> dict[str, dict[str, np.ndarray]]:
    """segment -> arm -> per-unit revenue (log-normal-ish, the arm's lift added to the mean)."""
    return {
        s: {"control": rng.gamma(2.0, 5.0, n), "pct10": rng.gamma(2.0, 5.0, n) + lifts[s]} for s in SEGMENTS
    }


def _stats(values: dict[str, dict[str, np.ndarray]]) -> ExperimentStats:
    segments = {
        s: {a: Moments.from_values(["revenue"], v) for a, v in arms.items()} for s, arms in values.items()
    }
    arms = {
        a: ArmStats(Moments.from_values(["revenue"], np.concatenate([values[s][a] for s in SEGMENTS])))
        for a in ("control", "pct10")
    }
    return ExperimentStats(arms, segments={"region": segments})


def test_segment_rows_are_welch_tests_and_q_is_the_fixed_effect_meta_analysis():
    rng = np.random.default_rng(3)
    values = _values(rng, {"north": 0.0, "south": 1.0, "east": 2.5, "west": 0.5}, 400)
    lifts, tests = segment_lifts(_spec(), _stats(values))
    assert [r.segment for r in lifts] == sorted(SEGMENTS)
    for row in lifts:
        c, t = values[row.segment]["control"], values[row.segment]["pct10"]
        ref = stats.ttest_ind(t, c, equal_var=False)
        assert row.abs_diff == pytest.approx(t.mean() - c.mean(), rel=1e-12)
        assert row.se == pytest.approx((t.mean() - c.mean()) / ref.statistic, rel=1e-10)
        assert row.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    (test,) = tests
    meta = combine_effects(np.array([r.abs_diff for r in lifts]), np.array([r.se**2 for r in lifts]))
    assert test.q == pytest.approx(meta.q, rel=1e-12)
    assert test.df == 3
    assert test.p_value == pytest.approx(stats.chi2.sf(meta.q, 3), rel=1e-12)
    assert test.p_value < 1e-3  # lifts of 0 to 2.5 on a mean of 10 with 400 units per arm


def test_q_test_rejects_at_its_nominal_rate_when_every_segment_has_the_same_lift():
    """1,000 experiments with a lift of 1.0 in every segment: rejections at 5% must fall inside the
    Binomial(1000, 0.05) central 99.9% band, [0.029, 0.074]; a test that cannot fail would not."""
    rng = np.random.default_rng(11)
    rejections = [
        segment_lifts(_spec(), _stats(_values(rng, dict.fromkeys(SEGMENTS, 1.0), 300)))[1][0].p_value < 0.05
        for _ in range(1000)
    ]
    low, high = stats.binom.ppf([0.0005, 0.9995], 1000, 0.05) / 1000
    assert low <= np.mean(rejections) <= high, np.mean(rejections)


def test_small_or_constant_segments_are_left_out():
    rng = np.random.default_rng(5)
    values = _values(rng, dict.fromkeys(SEGMENTS, 1.0), 400)
    values["west"] = {a: v[:10] for a, v in values["west"].items()}  # under 30 units per arm
    values["east"]["control"] = np.full(400, 3.0)  # no variation in one arm
    lifts, tests = segment_lifts(_spec(), _stats(values))
    assert {r.segment for r in lifts} == {"north", "south"}
    assert tests[0].segments == 2
