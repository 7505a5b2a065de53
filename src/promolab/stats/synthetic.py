"""Synthetic control (Abadie, Diamond and Hainmueller 2010) for a promotion switched on in one unit.

The synthetic unit is ``Y0 w``: donor series weighted by ``w >= 0``, ``sum w = 1``, the weights that
minimise the treated unit's pre-period squared error ``||y1 - Y0 w||^2`` (see :func:`weights`). The
effect in each post period is ``y1 - Y0 w``; the ATT their mean. Inference by placebo permutation:
every donor in turn plays the treated unit against the other donors; the p-value is the treated
unit's rank among all units by the ratio of post- to pre-period RMSPE, ``rank / (J + 1)`` (so the
smallest attainable p-value with ``J`` donors is ``1 / (J + 1)``). Several treated units: each gets
its own synthetic control and the ATT is their mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

type Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SyntheticFit:
    """One treated unit's synthetic control."""

    unit: str
    weights: dict[str, float]  # donor -> weight (>= 0, summing to 1; zeros left out)
    gaps: Array  # treated minus synthetic, every period (pre then post)
    pre_rmspe: float
    post_rmspe: float

    @property
    def ratio(self) -> float:
        """Post- over pre-period RMSPE (infinite for a perfect pre-period fit with a post gap)."""
        return self.post_rmspe / self.pre_rmspe if self.pre_rmspe > 0 else math.inf


@dataclass(frozen=True)
class SyntheticResult:
    """The ATT per treated unit and post period, the fits, and the placebo p-value."""

    att: float
    fits: list[SyntheticFit]
    p_value: float | None  # None with several treated units (see ``placebo_p_value``)
    placebo_ratios: dict[str, float]


def weights(pre_treated: Array, pre_donors: Array) -> Array:
    """Convex weights of the donors (columns of ``pre_donors``) that best fit ``pre_treated``:
    non-negative least squares on the system with the row ``M 1'w = M`` appended (``M = 1e4 ||Y0||``,
    so the sum-to-one constraint binds to about 1e-8), then normalised; tested against SLSQP on the
    constrained problem."""
    from scipy.optimize import nnls

    j = pre_donors.shape[1]
    scale = 1e4 * max(float(np.linalg.norm(pre_donors)), 1.0)
    system = np.vstack([pre_donors, np.full((1, j), scale)])
    target = np.append(pre_treated, scale)
    w, _ = nnls(system, target, maxiter=50 * j)
    return np.asarray(w / w.sum(), dtype=float)


def fit(series: pd.DataFrame, treated: str, donors: list[str], start: object) -> SyntheticFit:
    """Synthetic control of ``treated`` from ``donors``: columns of ``series`` (index: periods, in
    order); periods from ``start`` on are the post period."""
    pre = series.index < start
    if pre.sum() < 2 or (~pre).sum() < 1:
        raise ValueError("a synthetic control needs >= 2 periods before the start and >= 1 after it")
    w = weights(series.loc[pre, treated].to_numpy(float), series.loc[pre, donors].to_numpy(float))
    gaps = series[treated].to_numpy(float) - series[donors].to_numpy(float) @ w
    pre_rmspe = float(np.sqrt(np.mean(gaps[pre] ** 2)))
    post_rmspe = float(np.sqrt(np.mean(gaps[~pre] ** 2)))
    shown = {d: float(v) for d, v in zip(donors, w, strict=True) if v > 1e-6}
    return SyntheticFit(treated, shown, gaps, pre_rmspe, post_rmspe)


def synthetic_control(series: pd.DataFrame, treated: list[str], start: object) -> SyntheticResult:
    """Fit every treated unit against the untreated columns; placebo p-value for one treated unit."""
    donors = [c for c in series.columns if c not in treated]
    if len(donors) < 2:
        raise ValueError(f"a synthetic control needs >= 2 untreated units, got {len(donors)}")
    pre = np.asarray(series.index < start)
    fits = [fit(series, unit, donors, start) for unit in treated]
    att = float(np.mean([np.mean(f.gaps[~pre]) for f in fits]))
    if len(treated) > 1:
        return SyntheticResult(att, fits, None, {})
    placebos = {d: fit(series, d, [o for o in donors if o != d], start).ratio for d in donors}
    return SyntheticResult(att, fits, placebo_p_value(fits[0].ratio, placebos), placebos)


def placebo_p_value(ratio: float, placebos: dict[str, float]) -> float:
    """Share of units (the treated one and every placebo) whose RMSPE ratio is at least the treated
    unit's: ``rank / (J + 1)``."""
    values = [ratio, *placebos.values()]
    return sum(v >= ratio for v in values) / len(values)
