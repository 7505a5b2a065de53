"""Sizing a test that ``promolab monitor`` watches: its maximum and expected sample size against the
fixed design (``promolab design``).

The monitor's looks fall at calendar fractions ``t_k`` of the test (every day from ``start`` to
``end``, or ``analysis.sequential.looks``) and reject when ``|Z_k| >= c_k``: the confidence sequence's
half-width in standard errors (``always_valid``) or the Lan-DeMets boundaries (``group_sequential``),
two-sided at the monitor's alpha per arm. The fixed design of ``n`` units has ``E[Z] = z_(1 - alpha/s)
+ z_(power)`` at its MDE (its own alpha per comparison; ``s`` = 2 two-sided, 1 one-sided); the looks
over a maximum of ``R n`` units see ``sqrt(R)`` times that drift at ``t = 1``. ``R`` is set so that the
looks reach the fixed design's power (:func:`promolab.stats.sequential.sequential_sizing`); the
expected number of units is ``R n E[t at stop]``, under the MDE and under no difference.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from statistics import NormalDist

from promolab.design.plan import DesignPlan
from promolab.spec.models import ExperimentSpec
from promolab.stats import sequential


@dataclass(frozen=True)
class SequentialPlan:
    """The monitored test's sizes in units, against the fixed design's ``fixed_total``."""

    method: str
    spending: str | None
    looks: int
    fixed_total: int
    inflation: float  # maximum sample size over the fixed design's
    max_total: int
    expected_total_at_mde: float
    expected_total_at_zero: float


def sequential_plan(spec: ExperimentSpec, plan: DesignPlan) -> SequentialPlan:
    """Maximum and expected units of the monitored test against the fixed design ``plan`` (module
    docstring). The fixed design's drift uses its own alpha per comparison and sidedness; the looks
    test as ``promolab monitor`` does: two-sided at ``(1 - analysis.confidence) / treatment arms``."""
    settings = spec.analysis.sequential
    fractions = look_fractions(spec)
    alpha = (1 - spec.analysis.confidence) / len(spec.treatments)
    if settings.method == "group_sequential":
        spending = sequential.spending_function(settings.spending)
        bounds = list(sequential.spending_boundaries(fractions, alpha, spending))
    else:
        rho = sequential.optimal_rho(1.0, alpha)
        bounds = [sequential.confidence_sequence(0.0, 1.0, t, rho, alpha)[1] for t in fractions]
    normal = NormalDist()
    sides = 2 if plan.alternative == "two-sided" else 1
    drift = normal.inv_cdf(1 - plan.alpha_per_comparison / sides) + normal.inv_cdf(plan.power)
    inflation, at_mde, at_zero = sequential.sequential_sizing(fractions, bounds, drift, plan.power)
    fixed_total = plan.total
    return SequentialPlan(
        method=settings.method,
        spending=settings.spending if settings.method == "group_sequential" else None,
        looks=len(fractions),
        fixed_total=fixed_total,
        inflation=inflation,
        max_total=math.ceil(inflation * fixed_total - 1e-9),
        expected_total_at_mde=inflation * fixed_total * at_mde,
        expected_total_at_zero=inflation * fixed_total * at_zero,
    )


def look_fractions(spec: ExperimentSpec) -> list[float]:
    """Calendar fractions of the monitor's planned looks (every day by default)."""
    planned = (spec.end - spec.start).days + 1
    days = spec.analysis.sequential.looks or [spec.start + dt.timedelta(days=k) for k in range(planned)]
    return [calendar_fraction(spec, day) for day in days]


def calendar_fraction(spec: ExperimentSpec, day: dt.date) -> float:
    """The share of the test's days run by the end of ``day``: ``min((day - start + 1) / (end - start
    + 1), 1)``, a look's information fraction (:mod:`promolab.analyze.monitor`)."""
    return min(((day - spec.start).days + 1) / ((spec.end - spec.start).days + 1), 1.0)
