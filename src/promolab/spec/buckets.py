"""The bucket layout of hash assignment: which of the 10,000 hash buckets each arm (and the holdout) owns.

It is part of what makes a spec valid (weights that round to no bucket, an arm named ``holdout`` beside
a holdout), so ``promolab validate`` rejects what ``promolab assign`` would; the hashing itself is in
:mod:`promolab.design.assignment`. Pure Python: importing it costs nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from promolab.errors import quoted

BUCKETS = 10_000
HOLDOUT = "holdout"
WEIGHT_TOLERANCE = 1e-6

type Arms = Sequence[tuple[str, float]]


def bucket_ranges(arms: Arms, holdout: float = 0.0) -> dict[str, range]:
    """Buckets of each label: the arms in order, then ``holdout`` when it has buckets (step 4).

    Args:
        arms: (arm id, weight) in spec order; weights positive and summing to 1.
        holdout: share of buckets held out: 0, or in [0.00005, 0.99995) so that it rounds to at
            least one bucket and leaves one.

    Raises:
        ValueError: fewer than 2 arms, repeated ids, bad weights or holdout, an arm named
            ``holdout`` beside a holdout, or an arm whose weight rounds to no bucket.

    >>> bucket_ranges([("control", 0.5), ("treatment", 0.5)], holdout=0.05)
    {'control': range(0, 4750), 'treatment': range(4750, 9500), 'holdout': range(9500, 10000)}
    """
    names = _checked_arm_names(arms)
    in_range = 0 <= holdout < 1  # False for NaN too
    held = math.floor(BUCKETS * holdout + 0.5) if in_range else 0
    if not in_range or (holdout > 0 and held == 0) or held == BUCKETS:
        half = 0.5 / BUCKETS  # a holdout must round to at least one bucket and leave one
        raise ValueError(f"holdout: must be 0 or in [{half:g}, {1 - half:g}), got {holdout:g}")
    if held > 0 and HOLDOUT in names:
        raise ValueError(
            f"arms: an arm is named '{HOLDOUT}', the holdout's label; rename it or drop the holdout"
        )
    kept = BUCKETS - held
    bounds = [0, *(math.floor(kept * c + 0.5) for c in cumulative_shares(arms))]
    ranges = {name: range(lo, hi) for name, (lo, hi) in zip(names, itertools.pairwise(bounds), strict=True)}
    empty = [name for name, buckets in ranges.items() if not buckets]
    if empty:
        raise ValueError(
            f"arms: {quoted(empty)} get no bucket of {kept}; a weight must be >= {0.5 / kept:.2g} "
            "of the total"
        )
    return ranges | ({HOLDOUT: range(kept, BUCKETS)} if held else {})


def _checked_arm_names(arms: Arms) -> list[str]:
    names = [name for name, _ in arms]
    weights = [weight for _, weight in arms]
    if len(names) < 2:
        raise ValueError(f"arms: need at least 2, got {len(names)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"arms: ids must be unique, got {quoted(repeated)} more than once")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"arms: weights must be positive, got {weights}")
    if abs(sum(weights) - 1) > WEIGHT_TOLERANCE:
        raise ValueError(f"arms: weights must sum to 1, got {sum(weights):.6g}")
    return names


def cumulative_shares(arms: Arms) -> list[float]:
    """``c_k = (w_1 + ... + w_k) / (w_1 + ... + w_K)``, summed left to right; ``c_K`` is exactly 1."""
    sums = list(itertools.accumulate(weight for _, weight in arms))
    return [s / sums[-1] for s in sums]
