"""Frequentist uplift of every metric and treatment arm and the guardrails, from statistics only.

Families: Holm across treatment arms on the primary metric (family-wise error), Benjamini-Hochberg
across all secondary metric x arm results (false discovery rate). Guardrails are one-sided
non-inferiority tests at ``alpha = 1 - confidence``; each must pass on its own (an intersection-union
rule needs no adjustment), so their adjusted p-value is the raw one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from promolab.analyze import cuped
from promolab.errors import DataError
from promolab.kinds import kind_of
from promolab.spec import ExperimentSpec
from promolab.spec.models import AnyMetric, BinaryMetric, OrdinalMetric, RatioMetric
from promolab.spec.windows import split_id, window_of
from promolab.stats.estimators import (
    ZERO_DENOMINATOR,
    ZERO_VARIANCE,
    ArmSummary,
    Comparison,
    NonFiniteStatisticError,
    compare,
    constant_rate_noninferiority_p,
    mann_whitney_p,
    noninferiority_p,
)
from promolab.stats.moments import ExperimentStats, PowerSums, ResidualMoments
from promolab.stats.multiplicity import adjust_present, benjamini_hochberg, holm

type ResidualPass = Callable[
    [str, tuple[str, ...], Mapping[str, list[float]], list[float], list[float]], dict[str, ResidualMoments]
]


@dataclass(frozen=True)
class LiftResult:
    """One metric x treatment arm. ``method``: welch-t, z-unpooled, delta-ratio or cuped-ols-hc1."""

    metric: str
    variant: str
    role: str
    n_control: int
    n_variant: int
    control_mean: float | None
    variant_mean: float | None
    abs_diff: float | None
    se: float | None
    abs_ci: tuple[float, float] | None
    rel_lift: float | None
    rel_ci: tuple[float, float] | None
    p_value: float | None
    p_value_adjusted: float | None
    method: str
    mann_whitney_p_value: float | None = None
    flags: tuple[str, ...] = ()  # stable codes: ZERO_VARIANCE, NONPOSITIVE_REFERENCE, ... (estimators)
    rel_se_log: float | None = None  # standard error of log(1 + rel_lift), behind rel_ci (None without it)
    window: str | None = None  # during | post | total, with data.timestamp (None: undated rows)
    adjusted_for: tuple[str, ...] = ()  # covariates of the regression adjustment (a pre-period: m@pre)


@dataclass(frozen=True)
class GuardrailResult:
    """Non-inferiority of one guardrail metric for one arm."""

    metric: str
    variant: str
    margin: str
    p_value: float | None
    passed: bool
    flags: tuple[str, ...] = ()  # why there is no p-value (the lift result's flags)


def lift_results(
    spec: ExperimentSpec, stats: ExperimentStats, residual_pass: ResidualPass | None
) -> list[tuple[LiftResult, Comparison | None]]:
    """Results of every metric and arm, regression-adjusted when ``stats`` has covariates and the HC1
    residual sums can be had: from the arms' power sums, else from ``residual_pass`` (a second pass)."""
    confidence = spec.analysis.confidence
    reference = spec.reference.id
    raw: list[tuple[LiftResult, Comparison | None]] = []
    for metric in spec.metrics:
        role = spec.role(metric.id)
        if role in ("treatment_only", "covariate", "component"):
            continue
        window = window_of(spec, metric.id)
        if (
            _covariates(stats, metric.id)
            and kind_of(metric).adjustable
            and (residual_pass or _has_powers(stats, metric.id))
        ):
            covariates = ", ".join(c.removeprefix("cov:") for c in _covariates(stats, metric.id))
            try:
                raw += [
                    (replace(result, window=window), comparison)
                    for result, comparison in _cuped_results(spec, stats, metric, residual_pass)
                ]
            except NonFiniteStatisticError as error:
                raise NonFiniteStatisticError(
                    f"metric '{metric.id}' adjusted for {covariates}: {error} (values so large that the "
                    "regression's sums overflow: check the covariates' units, or analyse with --no-cuped)"
                ) from None
            continue
        for arm in (t.id for t in spec.treatments):
            for name, summarise, method in kind_of(metric).summaries(metric):
                if isinstance(metric, RatioMetric) and _zero_denominator(stats, metric, (reference, arm)):
                    undefined = _undefined(name, arm, role, method, stats, reference, ZERO_DENOMINATOR)
                    raw.append((replace(undefined, window=window), None))
                    continue
                control, variant = summarise(stats, reference), summarise(stats, arm)
                try:
                    comparison = compare(control, variant, confidence)
                except NonFiniteStatisticError as error:
                    raise NonFiniteStatisticError(f"metric '{name}', arm '{arm}': {error}") from None
                extra = None
                if isinstance(metric, OrdinalMetric) and name == metric.id:
                    extra = mann_whitney_p(
                        stats.arms[reference].histograms[metric.id], stats.arms[arm].histograms[metric.id]
                    )
                result = replace(_result(name, arm, role, comparison, method, extra), window=window)
                raw.append((result, comparison))
    return _adjust(spec, raw)


def guardrail_results(
    spec: ExperimentSpec, results: list[tuple[LiftResult, Comparison | None]]
) -> list[GuardrailResult]:
    """One-sided non-inferiority test of every guardrail for every treatment arm."""
    alpha = 1 - spec.analysis.confidence
    found = []
    for guardrail in spec.guardrails:
        higher = spec.metric(guardrail.metric).direction == "higher"
        margin = (
            f"absolute drop <= {guardrail.max_absolute_drop:g}"
            if guardrail.max_absolute_drop is not None
            else f"relative drop <= {guardrail.max_relative_drop:.1%}"
        )
        binary = isinstance(spec.metric(guardrail.metric), BinaryMetric)
        for result, comparison in results:
            if result.metric != guardrail.metric:
                continue
            p = None
            if comparison is not None and ZERO_VARIANCE in comparison.flags and binary:
                p = constant_rate_noninferiority_p(comparison, higher, guardrail.max_absolute_drop)
            elif comparison is not None:
                p = noninferiority_p(
                    comparison, higher, guardrail.max_absolute_drop, guardrail.max_relative_drop
                )
            passed = p is not None and p < alpha
            found.append(GuardrailResult(result.metric, result.variant, margin, p, passed, result.flags))
    return found


# ---------------------------------------------------------------------- helpers


def _cuped_results(
    spec: ExperimentSpec, stats: ExperimentStats, metric: AnyMetric, residual_pass: ResidualPass | None
) -> list[tuple[LiftResult, Comparison | None]]:
    moments = {arm: s.moments for arm, s in stats.arms.items()}
    covariates = _covariates(stats, metric.id)
    try:
        fitted = cuped.fit(moments, metric.id, covariates)
    except ValueError as error:
        raise DataError(
            f"metric '{metric.id}': cannot adjust for covariates: {error}; drop one from "
            "analysis.covariates, or analyse with --no-cuped"
        ) from None
    residuals = _residuals(stats, metric.id, fitted, residual_pass)
    covariance = cuped.hc1_covariance(moments, covariates, fitted, residuals)
    index = {arm: k for k, arm in enumerate(fitted.arms)}
    reference = spec.reference.id
    c = index[reference]
    control = ArmSummary(moments[reference].n, float(fitted.adjusted_means[c]), float(covariance[c, c]), None)
    found: list[tuple[LiftResult, Comparison | None]] = []
    for arm in (t.id for t in spec.treatments):
        k = index[arm]
        variant = ArmSummary(moments[arm].n, float(fitted.adjusted_means[k]), float(covariance[k, k]), None)
        comparison = compare(control, variant, spec.analysis.confidence, float(covariance[c, k]))
        result = _result(metric.id, arm, spec.role(metric.id), comparison, "cuped-ols-hc1")
        adjusted_for = tuple(c.removeprefix("cov:") for c in covariates)
        found.append((replace(result, adjusted_for=adjusted_for), comparison))
    return found


def _covariates(stats: ExperimentStats, metric: str) -> tuple[str, ...]:
    """The covariates adjusting ``metric``: the shared ones, and its own pre-period value unless that is
    constant within every arm (nothing to learn from: a metric new in this test, a discount that the
    pre-period never had)."""
    found = stats.covariates_of(metric)
    own = stats.own.get(metric)
    if own is not None and all(s.moments.var(own, ddof=0) == 0 for s in stats.arms.values()):
        return stats.covariates
    return found


def _powers(stats: ExperimentStats, metric: str) -> dict[str, PowerSums] | None:
    """Every arm's power sums of ``metric`` and exactly the adjustment's covariates, in their order
    (those of a dropped pre-period value taken out); None when an arm lacks them."""
    names = (metric, *_covariates(stats, metric))
    found = {}
    for arm, arm_stats in stats.arms.items():
        sums = arm_stats.powers.get(metric)
        own = stats.own.get(metric)
        if sums is not None and own in sums.names and own not in names:
            sums = sums.without(own)
        if sums is None or sums.names != names:
            return None
        found[arm] = sums
    return found


def _has_powers(stats: ExperimentStats, metric: str) -> bool:
    return _powers(stats, metric) is not None


def _residuals(
    stats: ExperimentStats, metric: str, fitted: cuped.CupedFit, residual_pass: ResidualPass | None
) -> Mapping[str, ResidualMoments]:
    """HC1 residual sums of every arm: from the power sums when all are well-conditioned, else a pass."""
    powers = _powers(stats, metric)
    if powers is not None:
        found = {
            arm: powers[arm].residuals(s.moments, fitted.slopes, fitted.centre)
            for arm, s in stats.arms.items()
        }
        if all(r is not None for r in found.values()):
            return {arm: r for arm, r in found.items() if r is not None}
    if residual_pass is None:
        raise DataError(
            f"{metric}: its power sums would cancel (a mean far from zero against its spread, or covariates "
            "that explain it almost exactly); regression adjustment needs a residual pass over the units"
        )
    covariates = _covariates(stats, metric)
    return residual_pass(metric, covariates, fitted.arm_means, fitted.slopes.tolist(), fitted.centre.tolist())


def _result(
    name: str, arm: str, role: str, comparison: Comparison, method: str, mann_whitney: float | None = None
) -> LiftResult:
    return LiftResult(
        metric=name,
        variant=arm,
        role=role,
        n_control=comparison.control.n,
        n_variant=comparison.variant.n,
        control_mean=comparison.control.mean,
        variant_mean=comparison.variant.mean,
        abs_diff=comparison.abs_diff,
        se=comparison.se,
        abs_ci=comparison.abs_ci,
        rel_lift=comparison.rel_lift,
        rel_ci=comparison.rel_ci,
        p_value=comparison.p_value,
        p_value_adjusted=comparison.p_value,
        method=method,
        mann_whitney_p_value=mann_whitney,
        flags=comparison.flags,
        rel_se_log=comparison.se_log if comparison.rel_ci is not None else None,
    )


def _zero_denominator(stats: ExperimentStats, metric: RatioMetric, arms: tuple[str, str]) -> bool:
    return any(stats.arms[arm].moments.mean_of(metric.denominator) == 0 for arm in arms)


def _undefined(
    name: str, arm: str, role: str, method: str, stats: ExperimentStats, reference: str, flag: str
) -> LiftResult:
    """A result that has no estimate (e.g. a ratio whose denominator is 0 in an arm): counts and the flag."""
    return LiftResult(
        metric=name,
        variant=arm,
        role=role,
        n_control=stats.arms[reference].moments.n,
        n_variant=stats.arms[arm].moments.n,
        control_mean=None,
        variant_mean=None,
        abs_diff=None,
        se=None,
        abs_ci=None,
        rel_lift=None,
        rel_ci=None,
        p_value=None,
        p_value_adjusted=None,
        method=method,
        flags=(flag,),
    )


def _adjust(
    spec: ExperimentSpec, raw: list[tuple[LiftResult, Comparison | None]]
) -> list[tuple[LiftResult, Comparison | None]]:
    """Holm on the primary metric's arms; Benjamini-Hochberg across the secondary results and the other
    windows of every metric but the primary (``orders@post``); Holm across the arms of each other window
    of the primary (``revenue@total``, which the decision reads net of the dip). Untestable results,
    without a p-value, are not members of a family."""
    adjusted = [result for result, _ in raw]
    primary_windows = [r.role == "window" and split_id(r.metric)[0] == spec.primary for r in adjusted]
    families = [
        ([i for i, r in enumerate(adjusted) if r.role == "primary"], holm),
        (
            [
                i
                for i, r in enumerate(adjusted)
                if r.role == "secondary" or (r.role == "window" and not primary_windows[i])
            ],
            benjamini_hochberg,
        ),
        *(
            ([i for i, r in enumerate(adjusted) if r.metric == name], holm)
            for name in dict.fromkeys(r.metric for i, r in enumerate(adjusted) if primary_windows[i])
        ),
    ]
    for members, method in families:
        found = adjust_present([adjusted[i].p_value for i in members], method)
        for i, p in zip(members, found, strict=True):
            adjusted[i] = replace(adjusted[i], p_value_adjusted=p)
    return [(result, comparison) for result, (_, comparison) in zip(adjusted, raw, strict=True)]
