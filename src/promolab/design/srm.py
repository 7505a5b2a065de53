"""Sample-ratio mismatch (SRM): are the arm counts what the design's weights promise?

Pearson's chi-square goodness-of-fit test of the arm counts ``n_k`` (total ``N``) against the design
shares ``p_k = w_k / sum(w)``, without continuity correction::

    chi2 = sum_k (n_k - N p_k)^2 / (N p_k),   df = K - 1,   p_value = P(Chi2(df) >= chi2)

It is flagged ``SRM_DETECTED`` when ``p_value < threshold`` (default 0.001: the check runs on every
experiment, and a mismatch means a broken assignment or logging pipeline, so false alarms must be rare).
With cluster assignment count clusters, not units: units of a cluster are not independent draws.
Light on purpose (no pandas, no scipy.stats): every analysis runs it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from promolab.errors import DataError, quoted
from promolab.stats.distributions import chi2_sf

SRM_THRESHOLD = 0.001
SRM_FLAG = "SRM_DETECTED"


@dataclass(frozen=True)
class SrmResult:
    """Chi-square test of the arm counts against the design shares.

    Attributes:
        counts: units (or clusters) per arm, in the order of the weights.
        expected_shares: design share of each arm, ``w_k / sum(w)``.
        observed_shares: ``n_k / N``.
        n: total count ``N``.
        chi2: Pearson's statistic.
        df: degrees of freedom, arms - 1.
        p_value: upper tail of the chi-square distribution at ``chi2``.
        threshold: flag when ``p_value`` is below this.
        flag: ``SRM_DETECTED`` when flagged, else None.
    """

    counts: dict[str, int]
    expected_shares: dict[str, float]
    observed_shares: dict[str, float]
    n: int
    chi2: float
    df: int
    p_value: float
    threshold: float
    flag: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return asdict(self)


def srm_test(
    counts: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Test the observed arm counts against the design weights (sample-ratio mismatch).

    Args:
        counts: observed units per arm; arms of ``weights`` absent here count 0.
        weights: design weight of every arm (a holdout too, if it is counted); normalised to sum 1.
        threshold: significance level of the flag, in (0, 1).

    Returns:
        The statistic, its p-value and ``flag="SRM_DETECTED"`` when ``p_value < threshold``.

    Raises:
        ValueError: fewer than 2 arms, a weight that is not positive, or a threshold outside (0, 1).
        DataError: a counted arm that has no weight, a negative count, or no units at all.

    >>> result = srm_test({"a": 5050, "b": 4950}, {"a": 0.5, "b": 0.5})
    >>> round(result.chi2, 6), result.df, result.flag
    (1.0, 1, None)
    """
    if len(weights) < 2:
        raise ValueError(f"srm_test: weights need at least 2 arms, got {len(weights)}")
    if not all(math.isfinite(w) and w > 0 for w in weights.values()):
        raise ValueError(f"srm_test: weights must be positive, got {dict(weights)}")
    if not 0 < threshold < 1:
        raise ValueError(f"srm_test: threshold must be in (0, 1), got {threshold:g}")
    unknown = [arm for arm in counts if arm not in weights]
    if unknown:
        raise DataError(f"variant counts: {quoted(unknown)} not among the arms {quoted(weights)}")
    observed = np.array([counts.get(arm, 0) for arm in weights], dtype=np.int64)
    if (observed < 0).any():
        raise DataError(f"variant counts: must be >= 0, got {dict(counts)}")
    n = int(observed.sum())
    if n == 0:
        raise DataError("variant counts: no units in any arm")
    shares = np.array(list(weights.values()), dtype=np.float64)
    shares /= shares.sum()
    expected = n * shares
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    df = len(weights) - 1
    p_value = float(chi2_sf(chi2, df))
    return SrmResult(
        counts=dict(zip(weights, observed.tolist(), strict=True)),
        expected_shares=dict(zip(weights, shares.tolist(), strict=True)),
        observed_shares=dict(zip(weights, (observed / n).tolist(), strict=True)),
        n=n,
        chi2=chi2,
        df=df,
        p_value=p_value,
        threshold=threshold,
        flag=SRM_FLAG if p_value < threshold else None,
    )
