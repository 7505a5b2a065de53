"""Two-arm comparisons from per-arm summaries: differences, relative lifts, tests. Pure functions.

Conventions (docs/analysis.md "Statistical methods"):

- Difference ``d = m_t - m_c`` with unpooled standard error ``se = sqrt(v_t + v_c)``, ``v = var / n``.
  Means (continuous, count, ordinal scores) use the sample variance (ddof 1) and Welch's t with
  Welch-Satterthwaite df; proportions use ``p (1 - p) / n`` and the normal distribution (unpooled Wald
  z, no continuity correction). Ratio metrics and regression-adjusted estimates are normal-based.
- Relative lift ``m_t / m_c - 1`` with a delta-method interval on ``log(m_t / m_c)``:
  ``se_log^2 = v_t / m_t^2 + v_c / m_c^2 - 2 cov / (m_t m_c)``,
  interval ``exp(log(m_t / m_c) +- z se_log) - 1``.
  It is never the absolute interval divided by the control mean. With a reference mean <= 0 the
  relative lift and its interval are undefined (None, flagged ``NONPOSITIVE_REFERENCE``); with a variant
  mean <= 0 the lift is shown but its log-scale interval is undefined (``NONPOSITIVE_VARIANT``).
- Ratio metrics ``R = mean(num) / mean(den)``: ``var(R) = (v_nn - 2 R v_nd + R^2 v_dd) / (n mean(den)^2)``.
- Degenerate input never gives a plausible number: a non-finite statistic raises
  :class:`NonFiniteStatisticError`; no variation in either arm gives no p-value and no interval
  (``ZERO_VARIANCE``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from promolab.errors import DataError
from promolab.stats.distributions import normal_ppf, normal_sf, t_ppf, t_sf
from promolab.stats.moments import Histogram, Moments

ZERO_VARIANCE = "ZERO_VARIANCE"  # neither arm varies: no standard error, so no test and no interval
NONPOSITIVE_REFERENCE = "NONPOSITIVE_REFERENCE"  # reference mean <= 0: no relative lift
NONPOSITIVE_VARIANT = "NONPOSITIVE_VARIANT"  # variant mean <= 0: no log-scale relative interval
ZERO_DENOMINATOR = "ZERO_DENOMINATOR"  # a ratio metric's denominator is 0 in an arm: no ratio


class NonFiniteStatisticError(DataError):
    """An estimator was given a NaN or infinite statistic: it refuses to compute anything from it."""


@dataclass(frozen=True)
class ArmSummary:
    """An arm's estimate: sample size, mean, variance of the mean, and df of that variance (None: normal)."""

    n: int
    mean: float
    var_of_mean: float
    df: float | None


@dataclass(frozen=True)
class Comparison:
    """Variant against control on one metric."""

    control: ArmSummary
    variant: ArmSummary
    abs_diff: float
    se: float
    df: float | None
    abs_ci: tuple[float, float] | None
    rel_lift: float | None
    rel_ci: tuple[float, float] | None
    se_log: float | None
    p_value: float | None
    flags: tuple[str, ...] = ()


def mean_summary(moments: Moments, name: str) -> ArmSummary:
    """Mean of a per-unit value with ``var / n`` (ddof 1) and df ``n - 1`` (Welch)."""
    n = moments.n
    return ArmSummary(n, moments.mean_of(name), moments.var(name, ddof=1) / n, n - 1)


def proportion_summary(moments: Moments, name: str) -> ArmSummary:
    """Share of a 0/1 per-unit value with ``p (1 - p) / n`` (normal reference)."""
    n, p = moments.n, moments.mean_of(name)
    return ArmSummary(n, p, moments.var(name, ddof=0) / n, None)


def ratio_summary(moments: Moments, numerator: str, denominator: str) -> ArmSummary:
    """Ratio of means ``R = mean(num) / mean(den)`` with its delta-method variance (normal reference).

    The linearisation is accurate when ``mean(den)`` is many standard errors from 0 (a coefficient of
    variation of ``mean(den)`` below ~0.1); :func:`compare` needs ``mean(den) != 0``.
    """
    n, mean_den = moments.n, moments.mean_of(denominator)
    if mean_den == 0:
        raise ZeroDivisionError(f"the denominator '{denominator}' is 0 in an arm")
    ratio = moments.mean_of(numerator) / mean_den
    var_units = (
        moments.var(numerator)
        - 2 * ratio * moments.cov(numerator, denominator)
        + ratio**2 * moments.var(denominator)
    )
    return ArmSummary(n, ratio, var_units / (n * mean_den**2), None)


def histogram_summary(histogram: Histogram) -> ArmSummary:
    """Mean score of responding units (ddof-1 variance, Welch df); at least 2 responses."""
    values, counts = histogram.arrays()
    n = int(counts.sum())
    if n < 2:
        raise ValueError(f"a mean score needs at least 2 responses, got {n}")
    mean = float(values @ counts) / n
    var = float(counts @ (values - mean) ** 2) / (n - 1)
    return ArmSummary(n, mean, var / n, n - 1)


def top_box_summary(histogram: Histogram, threshold: float) -> ArmSummary:
    """Share of responding units scoring at least ``threshold`` (normal reference); at least 1 response."""
    values, counts = histogram.arrays()
    n = int(counts.sum())
    if n < 1:
        raise ValueError("a top-box share needs at least 1 response, got 0")
    share = float(counts[values >= threshold].sum()) / n
    return ArmSummary(n, share, share * (1 - share) / n, None)


def compare(
    control: ArmSummary, variant: ArmSummary, confidence: float, covariance: float = 0.0
) -> Comparison:
    """Difference and relative lift of ``variant`` over ``control`` with intervals and a two-sided p-value.

    Args:
        control, variant: the arms' summaries.
        confidence: interval level, e.g. 0.95.
        covariance: covariance of the two means (0 for independent arms; non-zero after regression
            adjustment with a shared slope).

    Raises:
        NonFiniteStatisticError: a mean, variance or the covariance is NaN or infinite.
    """
    _require_finite(control, variant, covariance)
    diff = variant.mean - control.mean
    var = variant.var_of_mean + control.var_of_mean - 2 * covariance
    se = math.sqrt(max(var, 0.0))
    df = welch_df(control, variant)
    flags = [ZERO_VARIANCE] if se == 0 else []
    abs_ci, p_value = None, None
    if se > 0:
        q = quantile(0.5 + confidence / 2, df)
        abs_ci, p_value = (diff - q * se, diff + q * se), two_sided_p(diff / se, df)
    rel_lift: float | None = None
    rel_ci: tuple[float, float] | None = None
    se_log = None
    if control.mean <= 0:
        flags.append(NONPOSITIVE_REFERENCE)
    elif variant.mean <= 0:
        rel_lift = variant.mean / control.mean - 1
        flags.append(NONPOSITIVE_VARIANT)
    else:
        rel_lift = variant.mean / control.mean - 1
        se_log = math.sqrt(
            max(
                variant.var_of_mean / variant.mean**2
                + control.var_of_mean / control.mean**2
                - 2 * covariance / (variant.mean * control.mean),
                0.0,
            )
        )
        if se > 0:
            z = quantile(0.5 + confidence / 2, None)
            log_ratio = math.log(variant.mean / control.mean)
            rel_ci = (math.expm1(log_ratio - z * se_log), math.expm1(log_ratio + z * se_log))
    return Comparison(control, variant, diff, se, df, abs_ci, rel_lift, rel_ci, se_log, p_value, tuple(flags))


def _require_finite(control: ArmSummary, variant: ArmSummary, covariance: float) -> None:
    values = {
        "control mean": control.mean,
        "control variance": control.var_of_mean,
        "variant mean": variant.mean,
        "variant variance": variant.var_of_mean,
        "covariance": covariance,
    }
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise NonFiniteStatisticError(
            f"{', '.join(bad)} not finite ({', '.join(f'{values[b]!r}' for b in bad)}): no estimate is "
            "computed from it"
        )


def welch_df(control: ArmSummary, variant: ArmSummary) -> float | None:
    """Welch-Satterthwaite df ``(v_t + v_c)^2 / (v_t^2 / df_t + v_c^2 / df_c)``; None when normal-based."""
    if control.df is None or variant.df is None:
        return None
    denominator = variant.var_of_mean**2 / variant.df + control.var_of_mean**2 / control.df
    if denominator == 0:
        return None
    return (variant.var_of_mean + control.var_of_mean) ** 2 / denominator


def quantile(level: float, df: float | None) -> float:
    """Quantile of the standard normal (df None) or Student t distribution."""
    return normal_ppf(level) if df is None else t_ppf(level, df)


def upper_tail(statistic: float, df: float | None) -> float:
    """P(T >= statistic) for the standard normal (df None) or Student t."""
    return normal_sf(statistic) if df is None else t_sf(statistic, df)


def two_sided_p(statistic: float, df: float | None) -> float:
    return min(1.0, 2 * upper_tail(abs(statistic), df))


def noninferiority_p(
    comparison: Comparison,
    higher_is_better: bool,
    max_absolute_drop: float | None,
    max_relative_drop: float | None,
) -> float | None:
    """One-sided p-value of H0 "the variant is worse than the margin allows".

    Absolute margin ``M`` (higher is better): H0 ``d <= -M``, statistic ``(d + M) / se``. Relative
    margin ``r``: H0 ``m_t / m_c <= 1 - r``, statistic ``(log(m_t / m_c) - log(1 - r)) / se_log``.
    Mirrored when lower is better. None when a relative margin meets a non-positive mean, or when
    neither arm varies (no standard error).
    """
    if comparison.p_value is None:
        return None
    sign = 1.0 if higher_is_better else -1.0
    if max_absolute_drop is not None:
        statistic = (sign * comparison.abs_diff + max_absolute_drop) / comparison.se
        return upper_tail(statistic, comparison.df)
    assert max_relative_drop is not None
    if comparison.se_log is None:
        return None
    log_ratio = math.log(comparison.variant.mean / comparison.control.mean)
    bound = math.log(1 - max_relative_drop) if higher_is_better else math.log(1 + max_relative_drop)
    return upper_tail(sign * (log_ratio - bound) / comparison.se_log, None)


def constant_rate_noninferiority_p(
    comparison: Comparison, higher_is_better: bool, max_absolute_drop: float | None
) -> float | None:
    """Exact one-sided p-value of non-inferiority for a rate that did not vary: every unit of both arms
    had the same 0/1 value (no refunds at all, say), where the normal test has no standard error.

    H0 is "the harmful move is at least ``M``". With 0 events in both arms and harm an increase, H0
    needs the variant's rate ``>= M`` (plus the control's), and the probability of seeing no event
    among its ``n`` units is at most ``(1 - M)^n``: that supremum over H0 is the p-value (the
    Clopper-Pearson bound). Mirrored for all-1 rates and for harm as a decrease, with the arm whose rate
    H0 moves. None for relative margins (a relative drop of a 0 rate is undefined).
    """
    if max_absolute_drop is None:
        return None
    value = comparison.control.mean
    harm_is_increase = not higher_is_better
    moved = comparison.variant if (value == 0) == harm_is_increase else comparison.control
    return (1 - min(max_absolute_drop, 1.0)) ** moved.n


def mann_whitney_p(control: Histogram, variant: Histogram) -> float:
    """Two-sided Mann-Whitney p-value from histograms: normal approximation, tie-corrected variance,
    continuity correction 0.5 (as ``scipy.stats.mannwhitneyu(method="asymptotic")``)."""

    values = np.array(sorted(set(control.counts) | set(variant.counts)), dtype=float)
    c = np.array([control.counts.get(v, 0) for v in values], dtype=float)
    t = np.array([variant.counts.get(v, 0) for v in values], dtype=float)
    n_c, n_t = c.sum(), t.sum()
    below_c = np.concatenate(([0.0], np.cumsum(c)[:-1]))
    u_variant = float(t @ (below_c + 0.5 * c))
    n = n_c + n_t
    ties = t + c
    var = n_c * n_t / 12 * ((n + 1) - float((ties**3 - ties).sum()) / (n * (n - 1)))
    if var <= 0:
        return 1.0
    mean = n_c * n_t / 2
    statistic = (abs(u_variant - mean) - 0.5) / math.sqrt(var)
    return min(1.0, 2 * upper_tail(statistic, None))
