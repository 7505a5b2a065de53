"""Simulated rollout panels: stores x days of sales, with a promotion switched on in some stores for a
window and a dip after it, for the estimators of non-randomised promotions (:mod:`promolab.stats.did`,
:mod:`promolab.stats.synthetic`, :mod:`promolab.stats.its`).

Sales of store ``i`` on day ``t``: ``level_i * (1 + trend t) * weekday_(t mod 7) * common_t *
(1 + effect_it) + noise``, with store levels log-normal, a weekday profile (weekends busier), a common
AR(1) demand shock ``common_t`` (what controls are for), and independent noise. Treated stores get
``effect_it = lift`` during the promotion and ``-dip`` in the ``post_days`` after it (customers bought
ahead), 0 otherwise. :func:`true_effects` gives the effects the panel was built with, in sales.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from promolab.spec.rollout import RolloutSpec

WEEKDAY = np.array([0.9, 0.85, 0.9, 0.95, 1.1, 1.3, 1.0])  # Monday .. Sunday, mean 1


@dataclass(frozen=True)
class RolloutPanel:
    """The panel (``store``, ``day``, ``weekday``, ``promoted`` 0/1 on promotion days, ``sales``), the
    treated stores, and the promotion's first and last day and the post window's last day."""

    frame: pd.DataFrame
    treated: list[str]
    start: int
    end: int
    stop: int
    expected: pd.DataFrame  # the same rows' sales without the promotion (their expectation)


def rollout_panel(
    seed: int,
    stores: int = 30,
    treated: int = 6,
    days: int = 140,
    start: int = 98,
    length: int = 28,
    post_days: int = 14,
    lift: float = 0.1,
    dip: float = 0.04,
    noise: float = 0.05,
    level: float = 1000.0,
) -> RolloutPanel:
    """A panel of ``stores`` stores over ``days`` days; the first ``treated`` stores run the promotion
    from day ``start`` for ``length`` days; then ``post_days`` of dip; later days are plain."""
    rng = np.random.default_rng(seed)
    levels = level * rng.lognormal(0, 0.4, stores)
    t = np.arange(days)
    common = np.zeros(days)
    for d in range(1, days):
        common[d] = 0.9 * common[d - 1] + rng.normal(0, 0.02)
    base = levels[:, None] * (1 + 0.001 * t) * WEEKDAY[t % 7] * np.exp(common)[None, :]
    end, stop = start + length - 1, start + length - 1 + post_days
    effect = np.zeros((stores, days))
    effect[:treated, start : end + 1] = lift
    effect[:treated, end + 1 : stop + 1] = -dip
    sales = base * (1 + effect) + rng.normal(0, noise, (stores, days)) * base
    names = [f"s{i:03d}" for i in range(stores)]
    frame = pd.DataFrame(
        {
            "store": np.repeat(names, days),
            "day": np.tile(t, stores),
            "weekday": np.tile(t % 7, stores),
            "promoted": (effect > 0).astype(int).ravel(),
            "sales": sales.ravel(),
        }
    )
    expected = frame[["store", "day"]].assign(sales=base.ravel(), effect=(base * effect).ravel())
    return RolloutPanel(frame, names[:treated], start, end, stop, expected)


def true_effects(panel: RolloutPanel) -> dict[str, float]:
    """Mean effect in sales per treated store and day: during the promotion, in the post window, and
    over both (the net), given the common shocks the panel drew."""
    expected = panel.expected[panel.expected["store"].isin(panel.treated)]
    during = expected["day"].between(panel.start, panel.end)
    post = expected["day"].between(panel.end + 1, panel.stop)
    return {
        "during": float(expected.loc[during, "effect"].mean()),
        "post": float(expected.loc[post, "effect"].mean()) if post.any() else 0.0,
        "total": float(expected.loc[during | post, "effect"].mean()),
    }


def simulate_rollout(spec: RolloutSpec, seed: int = 0, units: int | None = None) -> pd.DataFrame:
    """A daily panel for ``spec`` from ``rollout.pre_start`` to the end of its post window: the spec's
    unit id and date columns, one column per metric (each its own panel drawn as above, with the
    ``simulation`` block's level, lift, dip and noise), the treated column of the column form, and
    each regressor as unrelated noise. Treated units are the spec's list (else the first fifth)."""
    from promolab.spec.rollout import PanelSimulation, TreatedColumn

    settings = spec.simulation or PanelSimulation()
    count = units or settings.units
    listed = spec.rollout.treated
    treated = (
        list(listed)
        if not isinstance(listed, TreatedColumn)
        else [f"s{i:03d}" for i in range(max(1, count // 5))]
    )
    if count <= len(treated):
        raise ValueError(f"--units {count}: needs more units than the {len(treated)} treated")
    names = treated + [f"c{i:03d}" for i in range(count - len(treated))]
    first = spec.rollout.pre_start
    shape = {
        "stores": count,
        "treated": len(treated),
        "days": (spec.stop - first).days + 1,
        "start": (spec.start - first).days,
        "length": (spec.end - spec.start).days + 1,
        "post_days": spec.post_days,
        "lift": settings.lift,
        "dip": settings.dip,
        "noise": settings.noise,
        "level": settings.level,
    }
    frame = pd.DataFrame()
    for k, metric in enumerate(spec.metrics):
        drawn = rollout_panel(seed + 1000 * k, **shape).frame  # type: ignore[arg-type]
        if frame.empty:
            rename = dict(zip([f"s{i:03d}" for i in range(count)], names, strict=True))
            frame[spec.data.unit_id] = drawn["store"].map(rename)
            frame[spec.data.timestamp] = [first + dt.timedelta(days=int(d)) for d in drawn["day"]]
            if isinstance(listed, TreatedColumn):
                frame[listed.column] = drawn["promoted"]
        frame[metric.column] = drawn["sales"].round(2)
    rng = np.random.default_rng(seed)
    for name in spec.rollout.regressors:
        frame[name] = rng.normal(0, 1, len(frame)).round(3)
    return frame
