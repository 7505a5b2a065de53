"""Regression adjustment (CUPED) from sufficient statistics, equal to OLS with HC1 standard errors.

Model, over all analysed units: ``y = a_k + b'(x - xbar) + e`` for a unit of arm ``k`` (one
intercept per arm, one common slope vector ``b``, covariates centred at their overall mean ``xbar``).
This is OLS of ``y`` on treatment dummies and centred covariates, reparametrised: the dummy
coefficient of arm ``t`` is ``a_t - a_c`` and ``a_k`` is arm ``k``'s adjusted mean.

From per-arm moments: ``b = S_W^-1 s_W`` with the pooled within-arm co-moments ``S_W = sum_k C_k[x, x]``
and ``s_W = sum_k C_k[x, y]``; ``a_k = ybar_k - b'(xbar_k - xbar)``. The HC1 covariance is
``N / (N - K - p) B^-1 M B^-1`` with the bread ``B = Z'Z`` (from the moments) and the meat
``M = sum e_i^2 z_i z_i'`` (:class:`~promolab.stats.moments.ResidualMoments`, from the arms'
power sums or an exact second pass over the units), ``z_i = (arm dummies, x_i - xbar)``. Tests compare
with statsmodels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from promolab.stats.moments import Matrix, Moments, ResidualMoments, Vector


@dataclass(frozen=True)
class CupedFit:
    """Point estimates of the adjusted model for one metric (first pass)."""

    arms: tuple[str, ...]
    slopes: Vector
    centre: Vector
    adjusted_means: Vector
    arm_means: dict[str, list[float]]


def fit(moments: Mapping[str, Moments], metric: str, covariates: Sequence[str]) -> CupedFit:
    """Common slopes and adjusted arm means from each arm's moments of ``metric`` and ``covariates``.

    Raises:
        ValueError: the covariates are collinear within arms (their pooled co-moment is singular).
    """
    arms = tuple(moments)
    y = next(m.index(metric) for m in moments.values())
    x = [moments[arms[0]].index(c) for c in covariates]
    within_xx = sum(m.comoment[np.ix_(x, x)] for m in moments.values())
    within_xy = sum(m.comoment[x, y] for m in moments.values())
    if np.linalg.matrix_rank(within_xx) < len(x):
        names = [c.removeprefix("cov:") for c in covariates]
        raise ValueError(f"covariates {names} are constant or collinear within arms")
    slopes = np.linalg.solve(within_xx, within_xy)
    counts = np.array([m.n for m in moments.values()], dtype=float)
    x_means = np.array([m.mean[x] for m in moments.values()])
    centre = counts @ x_means / counts.sum()
    y_means = np.array([m.mean[y] for m in moments.values()])
    adjusted = y_means - (x_means - centre) @ slopes
    arm_means = {arm: [float(y_means[k]), *map(float, x_means[k])] for k, arm in enumerate(arms)}
    return CupedFit(arms, slopes, centre, adjusted, arm_means)


def hc1_covariance(
    moments: Mapping[str, Moments],
    covariates: Sequence[str],
    fitted: CupedFit,
    residuals: Mapping[str, ResidualMoments],
) -> Matrix:
    """HC1 covariance of ``(a_1 .. a_K, b)`` (arm intercepts then slopes), ``N / (N - K - p) B^-1 M B^-1``."""
    arms, k, p = fitted.arms, len(fitted.arms), len(covariates)
    bread, meat = np.zeros((k + p, k + p)), np.zeros((k + p, k + p))
    for i, arm in enumerate(arms):
        m, r = moments[arm], residuals[arm]
        x = [m.index(c) for c in covariates]
        shift = m.mean[x] - fitted.centre
        bread[i, i] = m.n
        bread[i, k:] = bread[k:, i] = m.n * shift
        bread[k:, k:] += m.comoment[np.ix_(x, x)] + m.n * np.outer(shift, shift)
        meat[i, i] = r.e2
        meat[i, k:] = meat[k:, i] = r.e2_u
        meat[k:, k:] += r.e2_uu
    inverse = np.linalg.inv(bread)
    n = sum(moments[arm].n for arm in arms)
    return (n / (n - k - p)) * inverse @ meat @ inverse
