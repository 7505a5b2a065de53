"""Sizing against independent references: statsmodels' power functions and closed forms.

Each expected value is computed here by the named statsmodels call on the same inputs; the method
is the same (normal approximation), so sample sizes agree within one unit and powers to 1e-9.
"""

from __future__ import annotations

import math

import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower, normal_power_het
from statsmodels.stats.proportion import power_proportions_2indep

from promolab.stats.sizing import Outcome, design_effect, minimum_detectable_effect, power, sample_size

ALTERNATIVES = ("two-sided", "larger", "smaller")


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize(
    ("mean", "sd", "delta", "ratio"), [(4.1, 19.0, 0.205, 1.0), (10, 2, 0.4, 3.0), (1.5, 12, 0.3, 0.25)]
)
def test_continuous_power_and_n_match_normal_ind_power(mean, sd, delta, ratio, alternative):
    """statsmodels.stats.power.NormalIndPower().power / solve_power(effect_size=delta/sd, ratio=n2/n1)."""
    effect = delta if alternative != "smaller" else -delta
    outcome = Outcome(mean=mean, sd=sd)
    reference = NormalIndPower().power(
        effect / sd, nobs1=5000, alpha=0.05, ratio=ratio, alternative=alternative
    )
    assert power(outcome, effect, 5000, 5000 * ratio, alternative=alternative) == pytest.approx(
        reference, abs=1e-9
    )
    nobs1 = NormalIndPower().solve_power(
        effect / sd, alpha=0.05, power=0.8, ratio=ratio, alternative=alternative
    )
    share_c, share_t = 1 / (1 + ratio), ratio / (1 + ratio)
    total = sample_size(outcome, effect, share_c, share_t, alternative=alternative)
    assert abs(total * share_c - nobs1) <= 1 + 1e-9
    assert abs(total - nobs1 * (1 + ratio)) <= 1 / share_c + 1e-9


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize(("p", "diff", "ratio"), [(0.08, 0.004, 1.0), (0.03, 0.006, 3.0), (0.5, -0.02, 0.5)])
def test_binary_pooled_null_power_matches_power_proportions_2indep(p, diff, ratio, alternative):
    """statsmodels.stats.proportion.power_proportions_2indep(diff, prop2=p, nobs1, ratio) (pooled null).

    statsmodels' sample 1 is the treated arm (p1 = p2 + diff), sample 2 the control.
    """
    n_treated = 20_000
    reference = power_proportions_2indep(
        diff, p, n_treated, ratio=ratio, alpha=0.05, alternative=alternative, return_results=False
    )
    ours = power(
        Outcome(mean=p), diff, n_treated * ratio, n_treated, alternative=alternative, pooled_null=True
    )
    assert ours == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize(
    ("p", "diff", "n_c", "n_t"), [(0.08, 0.004, 30_000, 30_000), (0.2, -0.01, 10_000, 40_000)]
)
def test_binary_unpooled_power_matches_normal_power_het(p, diff, n_c, n_t):
    """statsmodels.stats.power.normal_power_het with std_null = std_alternative (unpooled z-test)."""
    se = math.sqrt(p * (1 - p) / n_c + (p + diff) * (1 - p - diff) / n_t)
    reference = normal_power_het(abs(diff), 1, 0.05, std_null=se, std_alternative=se, alternative="two-sided")
    assert power(Outcome(mean=p), diff, n_c, n_t) == pytest.approx(reference, abs=1e-9)


def test_binary_sample_size_matches_closed_form():
    """Closed form, unpooled, one-sided (no second tail): n = (z_a + z_b)^2 (p1 q1 + p2 q2) / d^2 per arm."""
    p1, p2 = 0.10, 0.11
    z = stats.norm.isf(0.05) + stats.norm.ppf(0.8)
    per_arm = z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2
    total = sample_size(Outcome(mean=p1), p2 - p1, 0.5, 0.5, alternative="larger")
    assert total == math.ceil(2 * per_arm - 1e-6) or abs(total / 2 - per_arm) <= 1


def test_mde_closed_form_for_one_sided_continuous():
    """One-sided MDE = (z_{1-a} + z_{power}) * sd * sqrt(1/n_c + 1/n_t) exactly."""
    outcome = Outcome(mean=50, sd=30, variance_factor=0.7)
    expected = (stats.norm.isf(0.05) + stats.norm.ppf(0.9)) * 30 * math.sqrt(0.7 * (1 / 1000 + 1 / 3000))
    assert minimum_detectable_effect(
        outcome, 1000, 3000, target_power=0.9, alternative="larger"
    ) == pytest.approx(expected, rel=1e-9)


def test_design_effect_closed_forms():
    """1 + (m - 1) ICC for equal clusters; 1 + ((1 + cv^2) m - 1) ICC (Eldridge et al. 2006)."""
    assert design_effect(100, 0.02) == pytest.approx(1 + 99 * 0.02)
    assert design_effect(100, 0.02, size_cv=0.5) == pytest.approx(1 + (1.25 * 100 - 1) * 0.02)
    assert design_effect(1, 0.3) == 1.0
