"""A/A calibration of the frequentist estimators: simulated experiments with a known truth.

Every check simulates thousands of experiments from a fixed, seeded ``numpy`` Generator (the seed of a
check is derived from its label, never tuned), reduces each simulated arm to the sufficient statistics
the analysis reads (:class:`Moments` from centred sums, :class:`Histogram` counts, CUPED
:class:`ResidualMoments`), and runs the real estimator functions on them, one replicate at a time. The
unit-level data are drawn as ``reps x n`` arrays and reduced along axis 1, so the file runs in seconds.

Asserted for every metric kind, at ``alpha = 0.05`` / 95% confidence:

- false-positive rate (share of A/A replicates with two-sided ``p_value < 0.05``) in [0.035, 0.065];
- coverage of the true difference (0 in A/A) by ``abs_ci`` in [0.935, 0.965];
- coverage of the true relative lift (0 in A/A) by ``rel_ci`` in [0.935, 0.965] where it is defined.

Monte Carlo error: a rate estimated from R replicates has binomial sd ``sqrt(0.05 * 0.95 / R)``:
0.0069 at R = 1000, 0.0049 at R = 2000, 0.0034 at R = 4000. The bounds (+-0.015) are thus ~2 sd at
1,000 replicates, ~3 sd at 2,000 and ~4 sd at 4,000; every check uses at least 2,000 replicates.
A failure here means the estimator is miscalibrated for that kind, not that the bounds are too tight:
do not widen them or re-pick seeds to make a check pass.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from promolab.analyze import cuped
from promolab.stats.estimators import (
    ArmSummary,
    Comparison,
    compare,
    histogram_summary,
    mann_whitney_p,
    mean_summary,
    proportion_summary,
    ratio_summary,
    top_box_summary,
)
from promolab.stats.moments import Histogram, Moments, ResidualMoments

pytestmark = pytest.mark.slow

type Array = npt.NDArray[np.float64]

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
FPR_BOUNDS = (0.035, 0.065)
COVERAGE_BOUNDS = (0.935, 0.965)
CHUNK = 250  # replicates simulated at once (bounds memory: 250 x 20,000 floats = 40 MB)


def _rng(label: str) -> np.random.Generator:
    """A Generator seeded from the check's label: deterministic and independent across checks."""
    return np.random.default_rng([20240611, zlib.crc32(label.encode())])


def _moments(names: tuple[str, ...], data: Array) -> list[Moments]:
    """One :class:`Moments` per replicate of ``data`` (reps x n x k), with centred co-moments."""
    if data.ndim == 2:
        data = data[:, :, None]
    mean = data.mean(axis=1)
    centred = data - mean[:, None, :]
    comoment = centred.transpose(0, 2, 1) @ centred
    return [Moments(names, data.shape[1], m, c) for m, c in zip(mean, comoment, strict=True)]


def _histograms(counts: npt.NDArray[np.int64], levels: tuple[float, ...]) -> list[Histogram]:
    """One :class:`Histogram` per replicate row of ``counts`` (levels never observed are left out)."""
    return [Histogram({v: int(c) for v, c in zip(levels, row, strict=True) if c}) for row in counts]


def _in(bounds: tuple[float, float], value: float) -> bool:
    return bounds[0] <= value <= bounds[1]


@dataclass(frozen=True)
class Calibration:
    """Rejection and coverage rates of one estimator over the simulated experiments."""

    label: str
    reps: int
    fpr: float
    abs_coverage: float
    rel_coverage: float | None

    @classmethod
    def of(
        cls, label: str, comparisons: list[Comparison], true_diff: float = 0.0, true_rel: float | None = 0.0
    ) -> Calibration:
        p = np.array([c.p_value for c in comparisons])
        abs_ci = np.array([c.abs_ci for c in comparisons])
        rel_coverage = None
        if true_rel is not None:
            assert all(c.rel_ci is not None for c in comparisons), f"{label}: relative interval undefined"
            rel_ci = np.array([c.rel_ci for c in comparisons])
            rel_coverage = float(np.mean((rel_ci[:, 0] <= true_rel) & (true_rel <= rel_ci[:, 1])))
        return cls(
            label,
            len(comparisons),
            float(np.mean(p < ALPHA)),
            float(np.mean((abs_ci[:, 0] <= true_diff) & (true_diff <= abs_ci[:, 1]))),
            rel_coverage,
        )

    def __str__(self) -> str:
        rel = "n/a" if self.rel_coverage is None else f"{self.rel_coverage:.4f}"
        return (
            f"{self.label} ({self.reps} reps): FPR {self.fpr:.4f}, abs coverage {self.abs_coverage:.4f}, "
            f"rel coverage {rel}"
        )

    def check(self, null_is_true: bool = True) -> None:
        """Assert the calibration bounds (the false-positive rate only when the null holds)."""
        problems = []
        if null_is_true and not _in(FPR_BOUNDS, self.fpr):
            problems.append(f"FPR {self.fpr:.4f} outside {FPR_BOUNDS}")
        if not _in(COVERAGE_BOUNDS, self.abs_coverage):
            problems.append(f"abs_ci coverage {self.abs_coverage:.4f} outside {COVERAGE_BOUNDS}")
        if self.rel_coverage is not None and not _in(COVERAGE_BOUNDS, self.rel_coverage):
            problems.append(f"rel_ci coverage {self.rel_coverage:.4f} outside {COVERAGE_BOUNDS}")
        assert not problems, f"{self}: {'; '.join(problems)}"


def _two_arm(
    label: str,
    reps: int,
    draw: Callable[[np.random.Generator, int, int], Array],
    summarise: Callable[[Moments], ArmSummary],
    names: tuple[str, ...],
    n_control: int,
    n_variant: int,
    draw_variant: Callable[[np.random.Generator, int, int], Array] | None = None,
) -> list[Comparison]:
    """Simulate ``reps`` experiments (unit data per arm from ``draw``) and compare their summaries."""
    rng = _rng(label)
    draw_variant = draw_variant or draw
    comparisons = []
    for start in range(0, reps, CHUNK):
        size = min(CHUNK, reps - start)
        control = _moments(names, draw(rng, size, n_control))
        variant = _moments(names, draw_variant(rng, size, n_variant))
        comparisons += [
            compare(summarise(c), summarise(v), CONFIDENCE) for c, v in zip(control, variant, strict=True)
        ]
    return comparisons


# ---------------------------------------------------------------------- unit-level data generators


def _binary(rng: np.random.Generator, reps: int, n: int, p: float = 0.05) -> Array:
    return (rng.random((reps, n)) < p).astype(float)


def _normal(rng: np.random.Generator, reps: int, n: int) -> Array:
    return rng.normal(50.0, 12.0, (reps, n))


# Zero-inflated lognormal revenue: 90% of units spend nothing, spenders spend lognormal(0, 1.2).
# Skewness ~28 and kurtosis ~3,300 per unit. The mean difference of two equal arms is symmetric in A/A,
# so the FPR and abs_ci are fine even at 200/arm; the relative interval (a log ratio of two skewed
# means) is not: its coverage was ~0.90 at 200/arm and ~0.932 at 1,000/arm (20,000-replicate pilot
# runs), ~0.947 at 5,000/arm, which is what the CLT needs here. Unequal arms lose the symmetry:
# 20/80 at 2,000/8,000 gave FPR ~0.058 / rel coverage ~0.940 (pilot), 4,000/16,000 FPR ~0.056 /
# rel ~0.944, so the unequal case uses 20,000 units in total.
REVENUE_SPEND_SHARE = 0.1
REVENUE_SIGMA = 1.2


def _revenue(rng: np.random.Generator, reps: int, n: int) -> Array:
    spends = rng.random((reps, n)) < REVENUE_SPEND_SHARE
    return np.where(spends, rng.lognormal(0.0, REVENUE_SIGMA, (reps, n)), 0.0)


def _poisson(rng: np.random.Generator, reps: int, n: int) -> Array:
    return rng.poisson(2.0, (reps, n)).astype(float)


def _negative_binomial(rng: np.random.Generator, reps: int, n: int) -> Array:
    """Mean 3, shape 0.8: variance 3 + 9 / 0.8 = 14.25 (overdispersed counts, many zeros)."""
    shape, mean = 0.8, 3.0
    return rng.negative_binomial(shape, shape / (shape + mean), (reps, n)).astype(float)


ORDER_VALUE_SHAPE, ORDER_VALUE_SCALE = 2.0, 25.0  # gamma order values, mean 50 (the true AOV)


def _orders_and_revenue(rng: np.random.Generator, reps: int, n: int) -> Array:
    """Per unit (revenue, orders): overdispersed order counts (mean 0.4), each order a gamma value."""
    shape, mean = 0.5, 0.4
    orders = rng.negative_binomial(shape, shape / (shape + mean), (reps, n)).astype(float)
    revenue = rng.gamma(ORDER_VALUE_SHAPE * orders, ORDER_VALUE_SCALE)
    return np.stack([revenue, orders], axis=2)


# ---------------------------------------------------------------------- tests


def test_vectorised_moments_equal_from_values():
    data = _orders_and_revenue(_rng("moments"), 3, 500)
    for row, fast in zip(data, _moments(("revenue", "orders"), data), strict=True):
        exact = Moments.from_values(("revenue", "orders"), row)
        assert fast.n == exact.n
        np.testing.assert_allclose(fast.mean, exact.mean, rtol=1e-12)
        np.testing.assert_allclose(fast.comoment, exact.comoment, rtol=1e-10)


def test_binary_proportion_is_calibrated():
    """Conversion p = 0.05, 2,000 units per arm (~100 conversions): unpooled Wald z."""
    comparisons = _two_arm(
        "binary", 4000, _binary, lambda m: proportion_summary(m, "converted"), ("converted",), 2000, 2000
    )
    Calibration.of("binary p=0.05 n=2000/arm", comparisons).check()


def test_continuous_normal_mean_is_calibrated():
    comparisons = _two_arm(
        "normal", 4000, _normal, lambda m: mean_summary(m, "basket"), ("basket",), 500, 500
    )
    Calibration.of("normal n=500/arm", comparisons).check()


def test_heavy_tailed_revenue_mean_is_calibrated():
    comparisons = _two_arm(
        "revenue", 4000, _revenue, lambda m: mean_summary(m, "revenue"), ("revenue",), 5000, 5000
    )
    Calibration.of("zero-inflated lognormal revenue n=5000/arm", comparisons).check()


def test_revenue_tail_is_heavy_enough_to_matter():
    """Guards the simulation itself: at 200/arm the relative interval visibly undercovers (~0.90)."""
    comparisons = _two_arm(
        "revenue small", 4000, _revenue, lambda m: mean_summary(m, "revenue"), ("revenue",), 200, 200
    )
    result = Calibration.of("revenue n=200/arm", comparisons)
    assert result.rel_coverage is not None
    assert result.rel_coverage < COVERAGE_BOUNDS[0], result


def test_unequal_allocation_revenue_is_calibrated():
    """20/80 split of the heavy-tailed revenue metric (4,000 control vs 16,000 variant units)."""
    comparisons = _two_arm(
        "revenue 20/80", 4000, _revenue, lambda m: mean_summary(m, "revenue"), ("revenue",), 4000, 16000
    )
    Calibration.of("revenue 20/80 n=4000/16000", comparisons).check()


@pytest.mark.parametrize(
    ("label", "draw"),
    [("poisson mean 2", _poisson), ("negative binomial mean 3 shape 0.8", _negative_binomial)],
)
def test_count_mean_is_calibrated(label: str, draw: Callable[[np.random.Generator, int, int], Array]):
    comparisons = _two_arm(label, 4000, draw, lambda m: mean_summary(m, "items"), ("items",), 1000, 1000)
    Calibration.of(f"{label} n=1000/arm", comparisons).check()


def test_ratio_delta_method_is_calibrated():
    """AOV = mean(revenue) / mean(orders) per unit, 4,000 units per arm (~1,600 orders per arm)."""
    comparisons = _two_arm(
        "ratio",
        4000,
        _orders_and_revenue,
        lambda m: ratio_summary(m, "revenue", "orders"),
        ("revenue", "orders"),
        4000,
        4000,
    )
    Calibration.of("AOV ratio n=4000/arm", comparisons).check()


ORDINAL_LEVELS = (1.0, 2.0, 3.0, 4.0, 5.0)
ORDINAL_PROBS = (0.08, 0.12, 0.25, 0.35, 0.20)


def test_ordinal_scores_are_calibrated():
    """Scores 1-5 of 400 responders per arm: mean (Welch), top-2-box (Wald z) and Mann-Whitney."""
    rng = _rng("ordinal")
    reps, n = 4000, 400
    means, top_boxes, mann_whitney = [], [], []
    for start in range(0, reps, CHUNK):
        size = min(CHUNK, reps - start)
        control = _histograms(rng.multinomial(n, ORDINAL_PROBS, size), ORDINAL_LEVELS)
        variant = _histograms(rng.multinomial(n, ORDINAL_PROBS, size), ORDINAL_LEVELS)
        for c, v in zip(control, variant, strict=True):
            means.append(compare(histogram_summary(c), histogram_summary(v), CONFIDENCE))
            top_boxes.append(compare(top_box_summary(c, 4.0), top_box_summary(v, 4.0), CONFIDENCE))
            mann_whitney.append(mann_whitney_p(c, v))
    Calibration.of("ordinal mean n=400/arm", means).check()
    Calibration.of("ordinal top-2-box n=400/arm", top_boxes).check()
    fpr = float(np.mean(np.array(mann_whitney) < ALPHA))
    assert _in(FPR_BOUNDS, fpr), f"Mann-Whitney FPR {fpr:.4f} outside {FPR_BOUNDS} ({reps} reps)"


def _cuped_data(rng: np.random.Generator, reps: int, n: int) -> Array:
    """Per unit (y, x): pre-period x ~ gamma (mean 20, sd 10), y = 5 + 0.7 x + noise, corr(y, x) = 0.7.

    The noise variance (51 on average, so var(y) = 49 + 51 = 100) grows with x, so the HC1 sandwich
    matters (homoscedastic OLS errors would be wrong).
    """
    x = rng.gamma(4.0, 5.0, (reps, n))
    noise = rng.normal(0.0, 1.0, (reps, n)) * np.sqrt(51.0 * x / 20.0)
    return np.stack([5.0 + 0.7 * x + noise, x], axis=2)


def _residual_moments(data: Array, fitted: cuped.CupedFit, arm: str) -> ResidualMoments:
    """``e = (y - ybar_k) - b'(x - xbar_k)``, ``u = x - centre``: sums of e^2, e^2 u and e^2 u u'."""
    ybar, *xbar = fitted.arm_means[arm]
    e = (data[:, 0] - ybar) - (data[:, 1:] - np.array(xbar)) @ fitted.slopes
    u = data[:, 1:] - fitted.centre
    e2 = e**2
    return ResidualMoments(float(e2.sum()), e2 @ u, (u * e2[:, None]).T @ u)


def test_cuped_is_calibrated():
    """Regression adjustment (rho 0.7, heteroscedastic) exactly as frequentist._cuped_results does it."""
    rng = _rng("cuped")
    reps, n, names, covariates = 2000, 1000, ("y", "cov:x"), ("cov:x",)
    adjusted, raw = [], []
    for start in range(0, reps, CHUNK):
        size = min(CHUNK, reps - start)
        data = {arm: _cuped_data(rng, size, n) for arm in ("control", "variant")}
        arm_moments = {arm: _moments(names, d) for arm, d in data.items()}
        for r in range(size):
            moments = {arm: m[r] for arm, m in arm_moments.items()}
            fitted = cuped.fit(moments, "y", covariates)
            residuals = {arm: _residual_moments(data[arm][r], fitted, arm) for arm in moments}
            covariance = cuped.hc1_covariance(moments, covariates, fitted, residuals)
            c, k = fitted.arms.index("control"), fitted.arms.index("variant")
            control = ArmSummary(n, float(fitted.adjusted_means[c]), float(covariance[c, c]), None)
            variant = ArmSummary(n, float(fitted.adjusted_means[k]), float(covariance[k, k]), None)
            adjusted.append(compare(control, variant, CONFIDENCE, float(covariance[c, k])))
            raw.append(compare(*(mean_summary(moments[a], "y") for a in ("control", "variant")), CONFIDENCE))
    Calibration.of("CUPED rho=0.7 n=1000/arm", adjusted).check()
    # the adjustment is really applied: the standard error shrinks by about sqrt(1 - rho^2) = 0.71
    se_ratio = float(np.mean([a.se / b.se for a, b in zip(adjusted, raw, strict=True)]))
    assert 0.66 < se_ratio < 0.76, se_ratio


def test_coverage_with_a_true_effect():
    """Non-A/A: skewed gamma baskets (shape 2, mean 40), the variant multiplies every unit by 1.05.

    True difference 2.0, true relative lift 0.05; arms then differ in variance too (Welch).
    """

    def control(rng: np.random.Generator, reps: int, n: int) -> Array:
        return rng.gamma(2.0, 20.0, (reps, n))

    def variant(rng: np.random.Generator, reps: int, n: int) -> Array:
        return 1.05 * rng.gamma(2.0, 20.0, (reps, n))

    comparisons = _two_arm(
        "effect", 4000, control, lambda m: mean_summary(m, "basket"), ("basket",), 800, 800, variant
    )
    result = Calibration.of("gamma +5% n=800/arm", comparisons, true_diff=2.0, true_rel=0.05)
    result.check(null_is_true=False)
    assert result.fpr > 0.2, f"{result}: a real 5% lift should often be detected"
