"""Multiple-testing adjustments of p-values (same results as statsmodels ``multipletests``).

A hypothesis that could not be tested (p-value None: no variation) is not a member of the family: it
keeps None, and the others are adjusted among themselves (:func:`adjust_present`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down family-wise adjustment: ``max_{j <= i} min(1, (m - j + 1) p_(j))``."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg false-discovery-rate adjustment: ``min_{j >= i} min(1, m p_(j) / j)``."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def adjust_present(
    p_values: Sequence[float | None], method: Callable[[Sequence[float]], list[float]]
) -> list[float | None]:
    """``method`` over the p-values that exist; None stays None."""
    present = [(i, p) for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = list(p_values)
    if present:
        for (i, _), p in zip(present, method([p for _, p in present]), strict=True):
            adjusted[i] = p
    return adjusted
