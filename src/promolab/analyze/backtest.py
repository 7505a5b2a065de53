"""Design of a planned rollout from history: placebo backtests and a ranking of control units.

The history is the panel before ``start``. A **placebo backtest** pretends the promotion ran in a past
window of the same length with the spec's treated units and estimates it
by the spec's method (``auto``'s choice). No promotion ran then, so every estimate is pure error:

- the root mean square of the placebo effects over the promotion window, ``e``, is the estimator's
  error on this panel, and the effect it would detect with power ``1 - beta`` at level ``alpha`` is
  ``MDE = (z_(1 - alpha/2) + z_(1 - beta)) e`` (per treated unit and period; relative to the treated
  units' mean level);
- the share of backtests whose interval excludes 0 is the method's false-positive rate on this panel
  (nominal: ``alpha``), a check of its intervals on the user's own data (None when some backtest has
  no interval: too few units for one).

Backtest windows start at every ``step`` periods from the middle of the history on (the first half is
always fitting data), at most ``MAX_BACKTESTS`` of them. **Control units** are ranked by how well each
alone tracks the treated units' mean before the start: the correlation of the two series, with the
weight a synthetic control of the whole history gives each unit.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from promolab.aggregate.panel import Panel, read_panel
from promolab.analyze.rollout import choose_method, estimate_metric
from promolab.errors import DataError
from promolab.spec.rollout import RolloutSpec, next_period, period_start
from promolab.stats import synthetic

MAX_BACKTESTS = 30
SHOWN_CONTROLS = 10


def rollout_design(spec: RolloutSpec, path: Path | pd.DataFrame) -> dict[str, Any]:
    """Placebo backtests of the primary metric and the control ranking (module docstring)."""
    from statistics import NormalDist

    panel = read_panel(spec, path, history=True)
    method, reason = choose_method(spec, panel)
    promotion = _promotion_periods(spec)
    starts = _backtest_starts(len(panel.periods), promotion)
    if not starts:
        raise DataError(
            f"{panel.where}: {len(panel.periods)} {spec.rollout.grain}s of history cannot hold a placebo "
            f"promotion of {promotion} after a fitting half: move rollout.pre_start earlier"
        )
    errors, rejections, untestable = [], 0, 0
    for first in starts:
        periods = list(panel.periods[: first + promotion])
        windows = {"pre": periods[:first], "during": periods[first:], "post": [], "total": periods[first:]}
        kept = panel.frame[panel.frame["period"].isin(periods)]
        trial = dataclasses.replace(panel, frame=kept, periods=tuple(periods))
        (during,), _, _ = estimate_metric(method, spec, trial, spec.primary, windows, diagnose=False)
        errors.append(during.att)
        untestable += during.att_ci is None
        rejections += during.att_ci is not None and not (during.att_ci[0] <= 0 <= during.att_ci[1])
    rms = math.sqrt(float(np.mean(np.square(errors))))
    z = NormalDist().inv_cdf(1 - spec.design.alpha / 2) + NormalDist().inv_cdf(spec.design.power)
    level = float(panel.frame.loc[panel.frame["unit"].isin(panel.treated), spec.primary].mean())
    mde = z * rms
    return {
        "experiment": spec.id,
        "kind": "rollout",
        "metric": spec.primary,
        "method": method,
        "reason": reason,
        "history_periods": len(panel.periods),
        "promotion_periods": promotion,
        "backtests": len(starts),
        "placebo_rms_error": rms,
        "mde": mde,
        "mde_relative": mde / level if level else None,
        "treated_mean_level": level,
        "false_positive_rate": None if untestable else rejections / len(starts),
        "backtests_without_interval": untestable,
        "alpha": spec.design.alpha,
        "power": spec.design.power,
        "controls": rank_controls(panel, spec.primary),
    }


def _promotion_periods(spec: RolloutSpec) -> int:
    """Periods of the promotion at the spec's grain."""
    day, count = period_start(spec.start, spec.rollout.grain), 0
    while day <= spec.end:
        count, day = count + 1, next_period(day, spec.rollout.grain)
    return count


def _backtest_starts(periods: int, length: int) -> list[int]:
    """Placebo starts: from the middle of the history to the last one that fits, evenly thinned."""
    first, last = max(periods // 2, 2), periods - length
    if last < first:
        return []
    starts = list(range(first, last + 1))
    if len(starts) > MAX_BACKTESTS:
        picks = np.linspace(0, len(starts) - 1, MAX_BACKTESTS).round().astype(int)
        starts = [starts[i] for i in sorted(set(picks))]
    return starts


def rank_controls(panel: Panel, metric: str) -> list[dict[str, Any]]:
    """Untreated units by the correlation of their history with the treated units' mean (with their
    synthetic-control weight), best first; the first ``SHOWN_CONTROLS``."""
    if not panel.controls:
        return []
    wide = panel.frame.pivot(index="period", columns="unit", values=metric).sort_index()
    target = wide[list(panel.treated)].mean(axis=1).to_numpy()
    donors = wide[list(panel.controls)].to_numpy()
    weights = synthetic.weights(target, donors) if len(panel.controls) >= 2 else np.ones(1)
    rows: list[dict[str, Any]] = []
    for k, unit in enumerate(panel.controls):
        series = donors[:, k]
        spread = float(np.std(series) * np.std(target))
        correlation = (
            float(np.mean((series - series.mean()) * (target - target.mean())) / spread)
            if spread > 0
            else None
        )
        rows.append({"unit": unit, "correlation": correlation, "weight": float(weights[k])})
    rows.sort(key=lambda r: -(r["correlation"] if r["correlation"] is not None else -2))
    return rows[:SHOWN_CONTROLS]
