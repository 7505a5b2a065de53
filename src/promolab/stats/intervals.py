"""Intervals of posterior draws, shared by the Bayesian analysis, economics and the quarterly review."""

from __future__ import annotations

from typing import Any

import numpy as np


def hdi(values: Any, prob: float) -> tuple[float, float]:
    """Highest-density interval of 1-d draws (ArviZ ``arviz_stats.hdi``, ``prob`` passed explicitly)."""
    import arviz_stats

    low, high = np.asarray(arviz_stats.hdi(np.asarray(values, dtype=float), prob=prob), dtype=float)
    return float(low), float(high)
