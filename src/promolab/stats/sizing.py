"""Power, sample size and MDE of one treatment-vs-reference comparison (normal approximation).

Model: the estimate of the difference of means ``delta_hat`` is normal with standard error
``se1 = sqrt(f * (var_t / n_t + var_c / n_c))`` under the alternative, where ``f`` is the variance
factor (CUPED ``1 - R^2`` times the cluster design effect). The test rejects when
``|delta_hat| > z * se0``, with ``se0`` the standard error under the null. Power (two-sided) is::

    Phi((|delta| - z * se0) / se1) + Phi((-|delta| - z * se0) / se1),   z = Phi^-1(1 - alpha / 2)

and one-sided tests use ``z = Phi^-1(1 - alpha)`` and only the tail in the tested direction.
By default ``se0 = se1`` (unpooled variances: the Welch / unpooled z-test promolab's analysis runs).
``pooled_null=True`` uses the pooled proportion under the null for binary metrics instead, as
statsmodels' ``power_proportions_2indep`` does.

Binary metrics recompute the treated arm's variance ``p_t (1 - p_t)`` from the effect; other kinds
use the same per-unit sd in both arms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import optimize, stats

Alternative = Literal["two-sided", "larger", "smaller"]
MAX_UNITS = 10**12  # sample sizes beyond this are reported as unreachable


@dataclass(frozen=True)
class Outcome:
    """Per-unit outcome of a metric in the reference arm.

    Attributes:
        mean: reference mean per unit (the rate, for a binary metric).
        sd: per-unit standard deviation; ``None`` marks a binary metric (sd = sqrt(p (1 - p))).
        variance_factor: multiplier of the variance: CUPED ``1 - R^2`` x cluster design effect.
    """

    mean: float
    sd: float | None = None
    variance_factor: float = 1.0

    @property
    def is_binary(self) -> bool:
        return self.sd is None

    def variance(self, abs_effect: float = 0.0) -> float:
        """Per-unit variance of an arm whose mean is ``mean + abs_effect`` (before the factor)."""
        if self.sd is None:
            p = self.mean + abs_effect
            return p * (1 - p)
        return self.sd**2

    def check_effect(self, abs_effect: float) -> None:
        if self.is_binary and not 0 < self.mean + abs_effect < 1:
            raise ValueError(
                f"a rate of {self.mean:g} moved by {abs_effect:+g} leaves (0, 1); the effect is impossible"
            )


def _critical(alpha: float, alternative: Alternative) -> float:
    return float(stats.norm.isf(alpha / 2 if alternative == "two-sided" else alpha))


def standard_errors(
    outcome: Outcome, abs_effect: float, n_control: float, n_treatment: float, pooled_null: bool = False
) -> tuple[float, float]:
    """(se under the null, se under the alternative) of the difference of means."""
    var_c, var_t = outcome.variance(), outcome.variance(abs_effect)
    se1 = math.sqrt(outcome.variance_factor * (var_t / n_treatment + var_c / n_control))
    if not (pooled_null and outcome.is_binary):
        return se1, se1
    p_pool = (n_control * outcome.mean + n_treatment * (outcome.mean + abs_effect)) / (
        n_control + n_treatment
    )
    var_pool = p_pool * (1 - p_pool)
    se0 = math.sqrt(outcome.variance_factor * var_pool * (1 / n_treatment + 1 / n_control))
    return se0, se1


def power(
    outcome: Outcome,
    abs_effect: float,
    n_control: float,
    n_treatment: float,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    pooled_null: bool = False,
) -> float:
    """Probability that the test rejects when the true difference is ``abs_effect``.

    >>> round(power(Outcome(mean=10.0, sd=2.0), 0.5, 252, 252), 4)
    0.8013
    """
    outcome.check_effect(abs_effect)
    se0, se1 = standard_errors(outcome, abs_effect, n_control, n_treatment, pooled_null)
    z = _critical(alpha, alternative)
    upper = stats.norm.cdf((abs_effect - z * se0) / se1)
    lower = stats.norm.cdf((-abs_effect - z * se0) / se1)
    if alternative == "larger":
        return float(upper)
    if alternative == "smaller":
        return float(lower)
    return float(upper + lower)


def sample_size(
    outcome: Outcome,
    abs_effect: float,
    share_control: float,
    share_treatment: float,
    alpha: float = 0.05,
    target_power: float = 0.8,
    alternative: Alternative = "two-sided",
    pooled_null: bool = False,
) -> int:
    """Smallest total number of units N (all arms) giving ``target_power`` to this comparison.

    The comparison sees ``share_control * N`` and ``share_treatment * N`` units (shares of all arms,
    so other arms may take the rest). Solved exactly on the power function (Brent's method), then
    rounded up.
    """
    if abs_effect == 0:
        raise ValueError("an effect of 0 cannot be detected; give a non-zero MDE")

    def shortfall(total: float) -> float:
        return (
            power(
                outcome,
                abs_effect,
                share_control * total,
                share_treatment * total,
                alpha,
                alternative,
                pooled_null,
            )
            - target_power
        )

    low = 2 / min(share_control, share_treatment)
    if shortfall(low) >= 0:
        return math.ceil(low)
    if shortfall(MAX_UNITS) < 0:
        raise ValueError(
            f"power {target_power:g} is out of reach for an effect of {abs_effect:g} "
            f"(it would need more than {MAX_UNITS:.0e} units, or the test looks the other way)"
        )
    total = optimize.brentq(shortfall, low, MAX_UNITS, xtol=1e-6, rtol=1e-12)
    return math.ceil(total - 1e-6)


def minimum_detectable_effect(
    outcome: Outcome,
    n_control: float,
    n_treatment: float,
    alpha: float = 0.05,
    target_power: float = 0.8,
    alternative: Alternative = "two-sided",
    pooled_null: bool = False,
) -> float:
    """Smallest absolute effect (in the tested direction) detected with ``target_power``."""
    sign = -1.0 if alternative == "smaller" else 1.0
    ceiling = (1 - outcome.mean) if outcome.is_binary else math.inf
    if sign < 0 and outcome.is_binary:
        ceiling = outcome.mean

    def shortfall(size: float) -> float:
        return (
            power(outcome, sign * size, n_control, n_treatment, alpha, alternative, pooled_null)
            - target_power
        )

    high = _bracket(outcome, n_control, n_treatment, alpha, target_power, alternative, ceiling)
    if shortfall(high) < 0:
        raise ValueError(
            f"no effect reaches power {target_power:g} with {n_control:g} + {n_treatment:g} units"
        )
    return sign * float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12, rtol=1e-12))


def _bracket(
    outcome: Outcome,
    n_control: float,
    n_treatment: float,
    alpha: float,
    target_power: float,
    alternative: Alternative,
    ceiling: float,
) -> float:
    """An effect size above the MDE: 2x the equal-variance closed form, capped below ``ceiling``."""
    z = _critical(alpha, alternative) + float(stats.norm.ppf(target_power))
    var = max(outcome.variance(), 0.25 if outcome.is_binary else 0.0)
    guess = 2 * z * math.sqrt(outcome.variance_factor * var * (1 / n_control + 1 / n_treatment))
    return min(guess, ceiling * (1 - 1e-9))


def design_effect(mean_cluster_size: float, icc: float, size_cv: float = 0.0) -> float:
    """Variance inflation of cluster randomisation: ``1 + ((1 + cv^2) * m - 1) * icc``.

    ``m`` is the mean cluster size and ``cv`` the coefficient of variation of cluster sizes
    (Eldridge, Ashby & Kerry 2006); with equal sizes it is the familiar ``1 + (m - 1) * icc``.

    >>> design_effect(20, 0.05)
    1.95
    """
    return 1 + ((1 + size_cv**2) * mean_cluster_size - 1) * icc
