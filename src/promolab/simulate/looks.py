"""Daily sums of a two-arm test whose customers buy on some days: the input of the primary metric's
cumulative curve (:func:`promolab.aggregate.daily.curve`), for checking ``promolab monitor`` by
simulation without writing rows."""

from __future__ import annotations

import datetime as dt

import numpy as np


def daily_sums(
    rng: np.random.Generator, start: dt.date, days: int, units: int, lift: float = 0.0, heavy: bool = False
) -> list[tuple[dt.date, int, float, float]]:
    """``(day, arm 1 or 2, sum of the day's values, growth of the sum of squared cumulative values)``
    for a reference arm and a treatment arm of ``units`` customers each. Each day a customer buys with
    probability 0.05 (heavy: a log-normal propensity of its own, so its days are correlated) an amount
    log-normal around 20 (heavy: with log-sd 1.2); the treatment arm's amounts are ``1 + lift`` times."""
    rows = []
    for arm, scale in ((1, 1.0), (2, 1.0 + lift)):
        propensity = np.minimum(rng.lognormal(-3, 1, units), 1.0) if heavy else np.full(units, 0.05)
        buys = rng.random((units, days)) < propensity[:, None]
        amounts = scale * rng.lognormal(3, 1.2 if heavy else 0.3, (units, days)) * buys
        totals = np.cumsum(amounts, axis=1)
        squares = np.diff(np.concatenate([np.zeros((units, 1)), totals**2], axis=1), axis=1)
        rows += [
            (start + dt.timedelta(days=d), arm, float(amounts[:, d].sum()), float(squares[:, d].sum()))
            for d in range(days)
        ]
    return rows
