"""The design plan of a spec: sample size per arm, duration, MDE, power and break-even lifts.

Conventions (docs/design.md "Design"): one comparison per treatment arm against the reference arm; with
several treatment arms the family-wise error is controlled by Bonferroni (alpha / k per
comparison). Holm's procedure, which the analysis uses, rejects at least whatever Bonferroni
rejects, so power planned at alpha / k is a lower bound of the power the analysis achieves.
Units in a holdout are counted in the total but in no comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from promolab import __version__
from promolab.design import estimates
from promolab.design.breakeven import ArmEconomics, arm_economics, break_even, paid_revenue_lift
from promolab.errors import DataError, Problem, SpecError
from promolab.spec import spec_hash
from promolab.spec.models import (
    AnyMetric,
    BinaryMetric,
    ContinuousMetric,
    ExperimentSpec,
    PricePointVariant,
)
from promolab.stats.sizing import Outcome, minimum_detectable_effect, power, sample_size


@dataclass(frozen=True)
class ArmBreakEven:
    """Break-even of one treatment arm and the power of the planned test at it."""

    relative_lift: float | None  # lift in units sold at which the arm's profit equals the reference's
    metric_relative_lift: float | None  # the same point on the design metric's scale
    power: float | None  # power of the planned test when the true effect is the break-even one
    units_to_detect: int | None  # total units that would give the target power at break-even
    subsidy: float  # discounts given during the test to customers who would have bought anyway
    test_cost: float  # subsidy + contact, fixed and media costs during the test
    flag: str | None = None  # NEVER_PAYS: the promotion cost per unit sold eats the whole margin


@dataclass(frozen=True)
class DesignPlan:
    """What a test needs: per-arm sizes, duration, detectable effect and power."""

    experiment: str
    metric: str
    metric_kind: str
    reference: str
    alternative: str
    pooled_null: bool
    per_arm: dict[str, int]
    total: int
    days: int | None
    clusters: int | None
    mde_relative: float | None  # None when the baseline mean is <= 0 (a relative lift is undefined)
    mde_absolute: float
    power: float
    alpha_per_comparison: float
    baseline_mean: float
    baseline_sd: float
    variance_factor: float
    inputs: dict[str, Any]
    break_even: dict[str, ArmBreakEven] = field(default_factory=dict)
    test_cost: float | None = None
    provenance: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the ``promolab design --json`` output)."""
        return asdict(self)

    def outcome(self) -> Outcome:
        """The planned metric's reference outcome, variance factor included."""
        sd = None if self.metric_kind == "binary" else self.baseline_sd
        return Outcome(mean=self.baseline_mean, sd=sd, variance_factor=self.variance_factor)


def plan_design(
    spec: ExperimentSpec, pre_period: pd.DataFrame | None = None, source: str = "pre-period"
) -> DesignPlan:
    """Size ``spec``'s test on its design metric from the spec's baseline or pre-period data."""
    design = spec.design
    metric = spec.metric(design.metric or spec.primary)
    inputs: dict[str, Any] = {}
    outcome = _outcome(spec, metric, pre_period, source, inputs)
    k = len(spec.treatments)
    alpha = design.alpha / k if design.correction == "bonferroni" and k > 1 else design.alpha
    shares = {v.id: v.weight * (1 - design.holdout) for v in spec.variants}
    ref = spec.reference.id
    sign = -1.0 if design.alternative == "smaller" else 1.0
    settings: dict[str, Any] = {
        "alpha": alpha,
        "alternative": design.alternative,
        "pooled_null": design.pooled_null,
    }

    if design.mde is not None:
        if design.mde.relative is not None and outcome.mean <= 0:
            raise _problem(
                spec,
                ("design", "mde", "relative"),
                f"a relative MDE needs a positive baseline mean of '{metric.id}', got {outcome.mean:g}; "
                "give mde.absolute",
            )
        effect = sign * (design.mde.absolute or (design.mde.relative or 0.0) * outcome.mean)
        with _sizing_problem(spec, ("design", "mde")):
            n_all = max(
                sample_size(outcome, effect, shares[ref], shares[t.id], target_power=design.power, **settings)
                for t in spec.treatments
            )
        per_arm = {v: math.ceil(share * n_all - 1e-9) for v, share in shares.items()}
        achieved = min(
            power(outcome, effect, per_arm[ref], per_arm[t.id], **settings) for t in spec.treatments
        )
    elif design.total_units is not None:
        per_arm = {v: math.floor(share * design.total_units) for v, share in shares.items()}
        small = [arm for arm, n in per_arm.items() if n < 2]
        if small:
            raise _problem(
                spec,
                ("design", "total_units"),
                f"{design.total_units:,} units give arm(s) {', '.join(small)} fewer than 2 units",
            )
        with _sizing_problem(spec, ("design", "total_units")):
            effect = max(
                (
                    minimum_detectable_effect(
                        outcome, per_arm[ref], per_arm[t.id], target_power=design.power, **settings
                    )
                    for t in spec.treatments
                ),
                key=abs,
            )
        achieved = design.power
    else:
        raise SpecError(
            [Problem(("design",), "give 'mde' (to size the test) or 'total_units' (to get its MDE)")]
        )

    holdout = math.ceil(design.holdout * sum(per_arm.values()) / (1 - design.holdout) - 1e-9)
    total = sum(per_arm.values()) + holdout
    inputs["holdout_units"] = holdout
    plan_break_even = _break_even(spec, metric, outcome, per_arm, settings, design.power)
    return DesignPlan(
        experiment=spec.id,
        metric=metric.id,
        metric_kind=metric.kind,
        reference=ref,
        alternative=design.alternative,
        pooled_null=design.pooled_null,
        per_arm=per_arm,
        total=total,
        days=_days(spec, total),
        clusters=math.ceil(total / inputs["mean_cluster_size"]) if "mean_cluster_size" in inputs else None,
        mde_relative=effect / outcome.mean if outcome.mean > 0 else None,
        mde_absolute=effect,
        power=achieved,
        alpha_per_comparison=alpha,
        baseline_mean=outcome.mean,
        baseline_sd=math.sqrt(outcome.variance()),
        variance_factor=outcome.variance_factor,
        inputs=inputs,
        break_even=plan_break_even,
        test_cost=sum(b.test_cost for b in plan_break_even.values()) if plan_break_even else None,
        provenance={"spec_hash": spec_hash(spec), "promolab_version": __version__},
    )


def _problem(spec: ExperimentSpec, path: tuple[str, ...], message: str) -> SpecError:
    """A problem of the spec found while planning, named with the spec's file."""
    return SpecError([Problem(path, message)], spec._source)


@contextmanager
def _sizing_problem(spec: ExperimentSpec, path: tuple[str, ...]) -> Iterator[None]:
    """An effect that no sample size detects (or a rate pushed out of (0, 1)) as a spec problem."""
    try:
        yield
    except ValueError as error:
        raise _problem(spec, path, str(error)) from None


def _outcome(
    spec: ExperimentSpec,
    metric: AnyMetric,
    pre_period: pd.DataFrame | None,
    source: str,
    inputs: dict[str, Any],
) -> Outcome:
    """The metric's reference-arm outcome with its CUPED and cluster variance factor."""
    design = spec.design
    needed = [metric.numerator, metric.denominator] if metric.kind == "ratio" else [metric.id]
    if pre_period is not None and all(c in pre_period.columns for c in needed):
        base = estimates.outcome_from_data(metric, pre_period, source)
        inputs["baseline_source"] = source
    elif metric.id in design.baseline:
        base = estimates.outcome_from_baseline(metric, design.baseline[metric.id])
        inputs["baseline_source"] = "design.baseline"
    else:
        raise SpecError(
            [
                Problem(
                    ("design", "baseline", metric.id),
                    f"no baseline for metric '{metric.id}': add design.baseline.{metric.id} "
                    f"or give a pre-period file with column(s) {needed}",
                )
            ]
        )
    r2 = _cuped_r2(spec, metric, pre_period, source, inputs)
    deff = _design_effect(spec, metric, pre_period, source, inputs)
    inputs.update(cuped_r2=r2, design_effect=deff)
    return Outcome(mean=base.mean, sd=base.sd, variance_factor=(1 - r2) * deff)


def _cuped_r2(
    spec: ExperimentSpec,
    metric: AnyMetric,
    pre_period: pd.DataFrame | None,
    source: str,
    inputs: dict[str, Any],
) -> float:
    covariates = spec.analysis.covariates
    if spec.design.cuped_r2 is not None:
        inputs["cuped_r2_source"] = "design.cuped_r2"
        return spec.design.cuped_r2
    if not covariates or pre_period is None or metric.kind == "ratio":
        return 0.0
    if not all(c in pre_period.columns for c in (*covariates, metric.id)):
        return 0.0
    inputs["cuped_r2_source"] = source
    return estimates.r_squared(pre_period, metric.id, covariates, source)


def _design_effect(
    spec: ExperimentSpec,
    metric: AnyMetric,
    pre_period: pd.DataFrame | None,
    source: str,
    inputs: dict[str, Any],
) -> float:
    cluster = spec.design.cluster
    if cluster is None:
        return 1.0
    icc, size, cv = cluster.icc, cluster.mean_size, cluster.size_cv
    if pre_period is not None and cluster.column in pre_period.columns:
        if icc is None:
            icc = estimates.icc_anova(pre_period, metric.id, cluster.column, source)
        if size is None:
            size, cv = estimates.cluster_sizes(pre_period, cluster.column, source)
    if icc is None or size is None:
        raise DataError(
            f"design.cluster needs 'icc' and 'mean_size', or a pre-period file with column "
            f"'{cluster.column}' to estimate them"
        )
    inputs.update(icc=icc, mean_cluster_size=size, cluster_size_cv=cv)
    return 1 + ((1 + cv**2) * size - 1) * icc


def _days(spec: ExperimentSpec, total: int) -> int | None:
    if spec.design.daily_units is None:
        return None
    days = math.ceil(total / spec.design.daily_units)
    return 7 * math.ceil(days / 7) if spec.design.round_to_weeks else days


def _break_even(
    spec: ExperimentSpec,
    metric: AnyMetric,
    outcome: Outcome,
    per_arm: dict[str, int],
    settings: dict[str, Any],
    target_power: float,
) -> dict[str, ArmBreakEven]:
    econ = spec.economics
    ref = spec.reference
    ref_price = ref.price if isinstance(ref, PricePointVariant) else (econ.unit_price if econ else None)
    if econ is None or econ.unit_cost is None or ref_price is None:
        return {}
    units_sold = _units_sold(metric, outcome, ref_price, econ.units_per_order)
    reference = arm_economics(ref, econ, ref_price, per_arm[ref.id])
    out: dict[str, ArmBreakEven] = {}
    for variant in spec.treatments:
        arm = arm_economics(variant, econ, ref_price, per_arm[variant.id])
        be = break_even(arm, reference, econ.unit_cost, units_sold, per_arm[variant.id])
        metric_lift = (
            None if be.relative_lift is None else _metric_lift(metric, arm, reference, be.relative_lift)
        )
        at_power, n_needed = _power_at(
            outcome,
            metric_lift,
            per_arm[ref.id],
            per_arm[variant.id],
            settings,
            target_power,
            spec.design.holdout,
            variant.weight,
            ref.weight,
        )
        flag = "NEVER_PAYS" if be.relative_lift is None else None
        out[variant.id] = ArmBreakEven(
            be.relative_lift, metric_lift, at_power, n_needed, be.subsidy, be.test_cost, flag
        )
    return out


def _units_sold(metric: AnyMetric, outcome: Outcome, price: float, units_per_order: float) -> float:
    """Units sold per randomised unit in the reference arm, read off the design metric's baseline.

    Continuous metrics are taken as revenue (units = mean / price), count metrics as units, binary
    metrics as buyers of ``units_per_order`` units each. docs/design.md "Design" states this assumption.
    """
    if isinstance(metric, ContinuousMetric):
        return outcome.mean / price
    if isinstance(metric, BinaryMetric):
        return outcome.mean * units_per_order
    return outcome.mean


def _metric_lift(metric: AnyMetric, arm: ArmEconomics, reference: ArmEconomics, units_lift: float) -> float:
    if isinstance(metric, ContinuousMetric):
        return paid_revenue_lift(arm, reference, units_lift)
    return units_lift


def _power_at(
    outcome: Outcome,
    metric_lift: float | None,
    n_control: int,
    n_treatment: int,
    settings: dict[str, Any],
    target_power: float,
    holdout: float,
    weight_treatment: float,
    weight_control: float,
) -> tuple[float | None, int | None]:
    if metric_lift is None or metric_lift == 0:
        return None, None
    effect = metric_lift * outcome.mean
    try:
        at = power(outcome, effect, n_control, n_treatment, **settings)
        needed = sample_size(
            outcome,
            effect,
            weight_control * (1 - holdout),
            weight_treatment * (1 - holdout),
            target_power=target_power,
            **settings,
        )
    except ValueError:  # impossible effect (a rate beyond 1) or unreachable power
        return None, None
    return at, needed
