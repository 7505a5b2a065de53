"""Looking at a running test every day without inflating false positives (``promolab monitor``).

Each day's look reads the primary metric's cumulative curve (:mod:`promolab.aggregate.daily`): per
treatment arm, the difference ``S_d`` of cumulative means per randomised unit against the reference
and its standard error ``se_d``. With the units fixed and their values accumulating, ``S_d`` is a sum
of daily increments, so under no difference ``Z_d = S_d / se_d`` behaves like Brownian motion in the
*variance time* ``V_d = se_d^2``: ``Corr(Z_j, Z_k) = sqrt(V_j / V_k)`` (exact with independent daily
increments, conservative when a unit's days are positively correlated). The information fraction of a
look is ``t_d = V_d / V_plan``, where ``V_plan`` is the variance at the test's ``end`` (extrapolated
linearly in days while the test runs).

- ``always_valid``: the asymptotic confidence sequence (:func:`promolab.stats.sequential.
  confidence_sequence`) with the mixing ``x = t_d x*``, ``x*`` tightest at ``t = 1``; and the
  mixture-SPRT p-value of the drift ``mu = S / V`` (``se(mu) = 1 / sqrt(V)``, mixing variance
  ``tau^2 = x* / V_plan``), running minimum over looks.
- ``group_sequential``: Lan-DeMets boundaries (O'Brien-Fleming or Pocock type) for the fractions
  observed so far, recomputed at every look; the interval is the boundary-adjusted ``S_d -+ c_d se_d``.

With several treatment arms each is looked at with ``alpha / arms`` (Bonferroni). The action of a look:
``stop_win`` when an arm's interval excludes 0 on the better side (by the metric's direction),
``stop_harm`` on the worse side, else ``continue``; the first stop is final.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from promolab.spec.models import ExperimentSpec
from promolab.stats import sequential

ACTIONS = ("continue", "stop_win", "stop_harm")


def monitor(spec: ExperimentSpec, daily: Mapping[str, Any]) -> dict[str, Any]:
    """Every daily look of the primary metric's curve, its results and action, and the verdict."""
    settings = spec.analysis.sequential
    arms = list(daily["lift"])
    alpha = (1 - spec.analysis.confidence) / max(len(arms), 1)
    days = [dt.date.fromisoformat(d) for d in daily["days"]]
    inside = [d for d in days if d <= spec.end]
    planned = (spec.end - spec.start).days + 1
    better = 1 if spec.metric(spec.primary).direction == "higher" else -1
    per_arm = {arm: _arm_looks(daily["lift"][arm], len(inside), planned, alpha, settings) for arm in arms}
    looks, verdict = [], "continue"
    for i, day in enumerate(inside):
        results = []
        for arm in arms:
            look = per_arm[arm][i]
            results.append({"metric": spec.primary, "variant": arm, **look})
        action = _action(results, better)
        if verdict == "continue":
            verdict = action
        looks.append({"date": day.isoformat(), "results": results, "action": verdict})
    return {
        "experiment": spec.id,
        "metric": spec.primary,
        "method": settings.method,
        "spending": settings.spending if settings.method == "group_sequential" else None,
        "alpha_per_arm": alpha,
        "looks": looks,
        "verdict": verdict,
    }


def _arm_looks(
    lift: Mapping[str, list[float | None]], count: int, planned: int, alpha: float, settings: Any
) -> list[dict[str, Any]]:
    """One arm's look results for the first ``count`` days (``planned`` days in the test)."""
    estimates, ses = lift["abs_diff"][:count], lift["abs_se"][:count]
    known = [i for i in range(count) if ses[i] is not None and estimates[i] is not None]
    if not known:
        return [_empty() for _ in range(count)]
    last = known[-1]
    v_plan = max(ses[last] ** 2 * planned / (last + 1), max(ses[i] ** 2 for i in known))  # type: ignore[operator]
    fractions = {i: min(ses[i] ** 2 / v_plan, 1.0) for i in known}  # type: ignore[operator]
    looks = [_empty() for _ in range(count)]
    if settings.method == "group_sequential":
        increasing = _increasing(known, fractions)
        bounds = sequential.spending_boundaries(
            [fractions[i] for i in increasing], alpha, _spending(settings.spending)
        )
        for i, c in zip(increasing, bounds, strict=True):
            looks[i] = _bounded(float(estimates[i]), float(ses[i]), float(c))  # type: ignore[arg-type]
        return looks
    x_star = sequential.optimal_rho(1.0, alpha) ** 2
    tau = math.sqrt(x_star / v_plan)
    p_value = 1.0
    for i in known:
        estimate, se = float(estimates[i]), float(ses[i])  # type: ignore[arg-type]
        low, high = sequential.confidence_sequence(estimate, se, fractions[i], math.sqrt(x_star), alpha)
        p_value = sequential.always_valid_p_value(estimate / se**2, 1 / se, tau, p_value)
        looks[i] = {"estimate": estimate, "ci_lower": low, "ci_upper": high, "p_value": p_value,
                    "crossed": not (low <= 0 <= high)}  # fmt: skip
    return looks


def _increasing(known: list[int], fractions: Mapping[int, float]) -> list[int]:
    """The looks whose information fraction grew since the previous kept look."""
    kept: list[int] = []
    for i in known:
        if not kept or fractions[i] > fractions[kept[-1]]:
            kept.append(i)
    return kept


def _bounded(estimate: float, se: float, c: float) -> dict[str, Any]:
    z = estimate / se
    crossed = math.isfinite(c) and abs(z) >= c
    low, high = (estimate - c * se, estimate + c * se) if math.isfinite(c) else (-math.inf, math.inf)
    return {"estimate": estimate, "ci_lower": low, "ci_upper": high, "p_value": None, "crossed": crossed}


def _empty() -> dict[str, Any]:
    return {"estimate": None, "ci_lower": None, "ci_upper": None, "p_value": None, "crossed": False}


def _spending(name: str) -> sequential.Spending:
    return sequential.obrien_fleming_spending if name == "obrien_fleming" else sequential.pocock_spending


def _action(results: list[dict[str, Any]], better: int) -> str:
    """``stop_harm`` when an arm is shown worse, else ``stop_win`` when one is shown better."""
    crossed = [r for r in results if r["crossed"]]
    if any(better * r["estimate"] < 0 for r in crossed):
        return "stop_harm"
    if crossed:
        return "stop_win"
    return "continue"
