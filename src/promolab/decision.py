"""The one decision rule: a verdict per treatment arm and one for the experiment (ship / iterate / stop).

Evidence on the primary metric, per arm against the reference, by the analysis method:

- frequentist: ``better`` / ``worse`` when the Holm-adjusted p-value is below ``1 - confidence`` (by
  the sign of the difference and the metric's direction), else ``no difference``;
- Bayesian: ``better`` when P(arm beats the reference) >= the threshold (``decision.prob_positive``,
  default 0.95), ``worse`` when P(beat) <= 1 - threshold; a fit whose sampler diagnostics failed is
  ``untestable``;
- a result without an estimate (flags such as ``ZERO_VARIANCE``) is ``untestable``.

With a post window (``post_days``), a primary metric better during the promotion but not over the
promotion and its post window (``<primary>@total``) takes the finding of that net effect: a bump
bought ahead is no win.

Guardrails (non-inferiority, by the same method) must all pass. With ``decision.metric: profit`` (or
``roi``) and economics, the money rule decides: an arm **pays** when P(net profit > 0) >= the
threshold (``decision.prob_positive``, default the analysis confidence).

Per arm: **ship** (better, or pays under the money rule, and every guardrail passes); **iterate**
(better or paying but a guardrail fails; better but does not pay; untestable); **stop** otherwise,
saying when the reference arm is significantly better. The experiment ships the best shippable arm
(the money target, else the largest primary difference, else P(best)); else iterates when an arm
does; else stops. A sample-ratio mismatch makes every verdict **iterate**: the data cannot be
trusted until the mismatch is explained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from promolab import format as fmt
from promolab.spec import ExperimentSpec
from promolab.spec.windows import derived_id

if TYPE_CHECKING:
    from promolab.analyze import Analysis
    from promolab.analyze.rollout import RolloutAnalysis
    from promolab.economics.promotion import ArmEconomicsResult, PromotionEconomics
    from promolab.economics.rollout import RolloutEconomics
    from promolab.spec.rollout import RolloutSpec

type Action = Literal["ship", "iterate", "stop"]
type Finding = Literal["better", "worse", "no_difference", "untestable"]
type Rule = Literal["frequentist", "bayesian"]

ECONOMIC = ("profit", "roi")


@dataclass(frozen=True)
class Evidence:
    """What the analysis says of one arm's primary metric (in the rule's own terms)."""

    finding: Finding
    text: str  # e.g. "revenue -18.0% (Holm p = 0.0030)"
    rank: tuple[float, float]  # larger is better: (direction-signed difference, 0) or (P(best), P(beat))


@dataclass(frozen=True)
class ArmVerdict:
    """One treatment arm's verdict, its evidence and its money."""

    variant: str
    action: Action
    finding: Finding
    pays: bool | None  # None: no money rule (no economics)
    failed_guardrails: tuple[str, ...]
    net_profit: float | None
    roi: float | None
    prob_profit: float | None  # P(net profit > 0)
    line: str  # "pct20: stop, revenue -18.0% (Holm p = 0.0030); loses 5,281 USD (ROI -136%, ...)"


@dataclass(frozen=True)
class Decision:
    """The experiment's verdict (``variant``: the arm to ship, if any), why, and every arm's verdict."""

    action: Action
    variant: str | None
    reason: str
    rule: str  # "frequentist" | "bayesian", and "+ profit" / "+ roi" with the money rule
    arms: tuple[ArmVerdict, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "arms": [asdict(a) for a in self.arms]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        arms = tuple(
            ArmVerdict(**{**a, "failed_guardrails": tuple(a["failed_guardrails"])}) for a in data["arms"]
        )
        return cls(data["action"], data["variant"], data["reason"], data["rule"], arms)


def decide(
    spec: ExperimentSpec,
    analysis: Analysis,
    economics: PromotionEconomics | None = None,
    rule: Rule | None = None,
) -> Decision:
    """Apply the spec's decision rule to an analysis (and its economics): see the module docstring.

    ``rule`` picks the statistical evidence (default: Bayesian when the analysis method is
    ``bayesian``, else frequentist); ``--method both`` decides once with each.
    """
    rule = rule or ("bayesian" if analysis.method == "bayesian" else "frequentist")
    if rule == "bayesian" and analysis.bayes is None:
        raise ValueError("the Bayesian rule needs an analysis with the Bayesian engine")
    target = spec.decision.metric if spec.decision is not None else spec.primary
    money = economics if target in ECONOMIC else None
    evidence = (
        _bayes_evidence(spec, analysis) if rule == "bayesian" else _frequentist_evidence(spec, analysis)
    )
    failed = _failed_guardrails(analysis, rule)
    threshold = _money_threshold(spec)
    srm = analysis.srm.flag is not None
    arms = tuple(
        _arm_verdict(t.id, evidence[t.id], failed.get(t.id, ()), money, economics, threshold, srm)
        for t in spec.treatments
    )
    name = rule + (f" + {target}" if money is not None else "")
    return _experiment(spec, arms, evidence, money, target, threshold, srm, name)


# ---------------------------------------------------------------------- evidence


def _frequentist_evidence(spec: ExperimentSpec, analysis: Analysis) -> dict[str, Evidence]:
    found = _frequentist_findings(spec, analysis, spec.primary)
    total = derived_id(spec.primary, "total")
    if not any(r.metric == total for r in analysis.results):
        return found
    net = _frequentist_findings(spec, analysis, total)
    return {arm: _net_of_the_dip(evidence, net[arm]) for arm, evidence in found.items()}


def _frequentist_findings(spec: ExperimentSpec, analysis: Analysis, metric: str) -> dict[str, Evidence]:
    """The evidence of every arm's result of ``metric`` (untestable without one)."""
    alpha = 1 - spec.analysis.confidence
    sign = 1 if spec.metric(spec.primary).direction == "higher" else -1
    found = {t.id: Evidence("untestable", f"no result of {metric}", (0, 0)) for t in spec.treatments}
    for result in (r for r in analysis.results if r.metric == metric):
        p, diff = result.p_value_adjusted, result.abs_diff
        if p is None or diff is None:
            flags = ", ".join(result.flags)
            found[result.variant] = Evidence("untestable", f"{metric} cannot be tested ({flags})", (0, 0))
            continue
        lift = fmt.percent(result.rel_lift, signed=True) if result.rel_lift is not None else fmt.number(diff)
        text = f"{metric} {lift} ({fmt.p_equals(p, 'Holm p')})"
        finding: Finding = "no_difference" if p >= alpha else ("better" if sign * diff > 0 else "worse")
        found[result.variant] = Evidence(finding, text, (sign * diff, 0.0))
    return found


def _net_of_the_dip(evidence: Evidence, net: Evidence | None) -> Evidence:
    """A primary metric better during the promotion but not over the promotion and its post window
    (``<primary>@total``) is no win: the bump was bought ahead (pull-forward), so the finding is that
    of the net effect, with both in the text."""
    if net is None or evidence.finding != "better" or net.finding == "better":
        return evidence
    return Evidence(net.finding, f"{evidence.text}, but net of the dip {net.text}", net.rank)


def _bayes_evidence(spec: ExperimentSpec, analysis: Analysis) -> dict[str, Evidence]:
    assert analysis.bayes is not None
    threshold = analysis.bayes.threshold
    flagged = set(analysis.bayes.flagged)
    found = {
        t.id: Evidence("untestable", f"no posterior of {spec.primary} (an arm has no spread)", (0, 0))
        for t in spec.treatments
    }
    net: dict[str, Evidence] = {}
    for result in analysis.bayes.results:
        if result.metric not in (spec.primary, derived_id(spec.primary, "total")):
            continue
        beat = result.prob_beat_control
        lift = "" if result.rel_lift_mean is None else f" {fmt.percent(result.rel_lift_mean, signed=True)}"
        text = f"{result.metric}{lift} (P(better) = {beat:.3f}, P(best) = {result.prob_best:.3f})"
        finding: Finding = (
            "better" if beat >= threshold else "worse" if beat <= 1 - threshold else "no_difference"
        )
        if f"{result.metric}/{result.variant}" in flagged:
            finding, text = "untestable", f"the {result.metric} model failed its diagnostics"
        target = found if result.metric == spec.primary else net
        target[result.variant] = Evidence(finding, text, (result.prob_best, beat))
    return {arm: _net_of_the_dip(evidence, net.get(arm)) for arm, evidence in found.items()}


def _failed_guardrails(analysis: Analysis, rule: Rule) -> dict[str, tuple[str, ...]]:
    rows = analysis.bayes.guardrails if rule == "bayesian" and analysis.bayes else analysis.guardrails
    failed: dict[str, tuple[str, ...]] = {}
    for row in rows:
        if not row.passed:
            failed[row.variant] = (*failed.get(row.variant, ()), row.metric)
    return failed


def _money_threshold(spec: ExperimentSpec) -> float:
    if spec.decision is not None and spec.decision.prob_positive is not None:
        return spec.decision.prob_positive
    return spec.analysis.confidence


# ---------------------------------------------------------------------- verdicts


def _arm_verdict(
    variant: str,
    evidence: Evidence,
    failed: tuple[str, ...],
    money: PromotionEconomics | None,
    economics: PromotionEconomics | None,
    threshold: float,
    srm: bool,
) -> ArmVerdict:
    arm = economics.arm(variant) if economics is not None else None
    profit = arm.quantities["net_profit"] if arm is not None else None
    roi = arm.quantities["roi"].value if arm is not None else None
    prob = profit.prob_positive if profit is not None else None
    pays = None if money is None else (prob or 0.0) >= threshold
    action = _arm_action(evidence.finding, pays, failed, srm)
    line = f"{variant}: {action}, {_finding_text(evidence)}"
    if failed:
        line += f"; guardrail(s) {', '.join(failed)} not shown non-inferior"
    if arm is not None and economics is not None:
        line += f"; {_money_text(arm, economics.currency)}"
    if srm:
        line += "; sample-ratio mismatch"
    value = profit.value if profit is not None else None
    return ArmVerdict(variant, action, evidence.finding, pays, failed, value, roi, prob, line)


def _arm_action(finding: Finding, pays: bool | None, failed: tuple[str, ...], srm: bool) -> Action:
    if srm or finding == "untestable":
        return "iterate"
    promising = finding == "better" if pays is None else pays
    if promising:
        return "iterate" if failed else "ship"
    return "iterate" if finding == "better" else "stop"  # better, but does not pay: change the offer


def _finding_text(evidence: Evidence) -> str:
    words = {
        "better": "significantly better",
        "worse": "significantly WORSE than the reference",
        "no_difference": "no significant difference",
        "untestable": "cannot be decided",
    }[evidence.finding]
    return f"{words}: {evidence.text}"


def _money_text(arm: ArmEconomicsResult, currency: str) -> str:
    profit = arm.quantities["net_profit"]
    if profit.value is None:
        return "net profit unknown"
    verb = "earns" if profit.value >= 0 else "loses"
    roi = arm.quantities["roi"].value
    details = [f"ROI {fmt.percent(roi, 0, signed=True)}"] if roi is not None else []
    if profit.prob_positive is not None:
        details.append(f"P(profit > 0) = {profit.prob_positive:.2f}")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"{verb} {fmt.money(abs(profit.value), currency)}{suffix}"


def _experiment(
    spec: ExperimentSpec,
    arms: tuple[ArmVerdict, ...],
    evidence: dict[str, Evidence],
    money: PromotionEconomics | None,
    target: str,
    threshold: float,
    srm: bool,
    rule: str,
) -> Decision:
    if srm:
        reason = "Sample-ratio mismatch: explain it and rerun the test before deciding."
        return Decision("iterate", None, reason, rule, arms)

    def rank(arm: ArmVerdict) -> tuple[float, ...]:
        if money is None:
            return evidence[arm.variant].rank
        value = arm.roi if target == "roi" else arm.net_profit
        return (float("-inf") if value is None else value, arm.net_profit or 0.0)

    shipped = [a for a in arms if a.action == "ship"]
    if shipped:
        best = max(shipped, key=rank)
        return Decision("ship", best.variant, _ship_reason(spec, best, money, threshold), rule, arms)
    iterating = [a for a in arms if a.action == "iterate"]
    if iterating:
        best = max(iterating, key=rank)
        return Decision("iterate", None, _iterate_reason(spec, best, money, threshold), rule, arms)
    worse = [a.variant for a in arms if a.finding == "worse"]
    paying = "" if money is None else f", and none pays for itself with P >= {threshold:g}"
    if worse:
        reason = (
            f"The reference arm {spec.reference.id} wins: {', '.join(worse)} significantly worse on "
            f"{spec.primary}{paying}."
        )
    else:
        reason = f"No arm lifts {spec.primary}{paying}."
    return Decision("stop", None, reason, rule, arms)


def _ship_reason(
    spec: ExperimentSpec, best: ArmVerdict, money: PromotionEconomics | None, threshold: float
) -> str:
    if money is None:
        return f"{best.variant}: {spec.primary} significantly better and every guardrail passes."
    return (
        f"{best.variant} pays for itself: P(net profit > 0) = {best.prob_profit:.3f} >= {threshold:g}, "
        f"net profit {fmt.money(best.net_profit, money.currency)}; every guardrail passes."
    )


def _iterate_reason(
    spec: ExperimentSpec, arm: ArmVerdict, money: PromotionEconomics | None, threshold: float
) -> str:
    if arm.finding == "untestable":
        return f"{arm.variant}: {spec.primary} cannot be decided; fix the data or the model and rerun."
    guardrails = ", ".join(arm.failed_guardrails)
    if arm.pays and guardrails:
        return (
            f"{arm.variant} pays for itself (P(net profit > 0) = {arm.prob_profit:.3f}) but fails the "
            f"guardrail(s) {guardrails}."
        )
    if guardrails:
        return f"{arm.variant}: {spec.primary} significantly better, but fails the guardrail(s) {guardrails}."
    found = money.arm(arm.variant) if money is not None else None
    units = ""
    if found is not None and found.observed_units_lift is not None:
        even = "never" if found.break_even_lift is None else fmt.percent(found.break_even_lift, signed=True)
        units = (
            f"; units {fmt.percent(found.observed_units_lift, signed=True)} against a break-even of {even}"
        )
    return (
        f"{arm.variant} lifts {spec.primary} but does not pay for itself "
        f"(P(net profit > 0) = {arm.prob_profit or 0.0:.3f}{units})."
    )


# ---------------------------------------------------------------------- rollouts


def decide_rollout(
    spec: RolloutSpec, analysis: RolloutAnalysis, economics: RolloutEconomics | None = None
) -> Decision:
    """The same rule for a promotion that was not randomised (one "arm": the promotion).

    Evidence is the primary metric's effect over the promotion and its post window (``total``; the
    promotion alone without a post window): ``better`` / ``worse`` when its interval excludes 0 (by
    the metric's direction), ``untestable`` without an interval. The money rule (``decision.metric:
    profit`` or ``roi``) needs the net profit's interval above 0. A failed diagnostic (pre-trends,
    pre-period fit, autocorrelation, too few units) makes the verdict **iterate**: the estimate's
    assumptions are in doubt.
    """
    target = spec.decision.metric if spec.decision is not None else spec.primary
    window: Literal["total", "during"] = (
        "total" if analysis.result(spec.primary, "total") is not None else "during"
    )
    effect = analysis.result(spec.primary, window)
    assert effect is not None
    finding = _rollout_finding(effect.att_ci, spec.metric(spec.primary).direction)
    quantities = economics.quantities if economics is not None else {}
    profit = quantities.get("net_profit")
    money = target in ECONOMIC and profit is not None
    pays = None if not money else profit is not None and profit.ci is not None and profit.ci[0] > 0
    action = "iterate" if analysis.doubts else _arm_action(finding, pays, (), False)
    level = fmt.percent(analysis.confidence, 0)
    low, high = effect.rel_ci or (None, None)
    interval = fmt.interval(low, high, "percent", signed=True)
    lift = fmt.percent(effect.rel_lift, 1, signed=True)
    text = f"{spec.primary} {lift} over the {window} window ({level} interval {interval})"
    evidence = Evidence(finding, text, (0.0, 0.0))
    roi = quantities.get("roi")
    line = f"{spec.promotion.id}: {action}, {_finding_text(evidence)}"
    if profit is not None and profit.value is not None and economics is not None:
        verb = "earns" if profit.value >= 0 else "loses"
        line += f"; {verb} {fmt.money(abs(profit.value), economics.currency)}"
        if profit.ci is not None:
            line += f" ({level} interval {fmt.interval(profit.ci[0], profit.ci[1], 'money')})"
    arm = ArmVerdict(
        spec.promotion.id, action, finding, pays, (), profit.value if profit else None,
        roi.value if roi else None, None, line,
    )  # fmt: skip
    rule = f"{analysis.method}" + (f" + {target}" if money else "")
    return Decision(
        action,
        spec.promotion.id if action == "ship" else None,
        _rollout_reason(spec, arm, analysis),
        rule,
        (arm,),
    )


def _rollout_finding(ci: tuple[float, float] | None, direction: str) -> Finding:
    if ci is None:
        return "untestable"
    sign = 1 if direction == "higher" else -1
    if sign * ci[0] > 0 and sign * ci[1] > 0:
        return "better"
    if sign * ci[0] < 0 and sign * ci[1] < 0:
        return "worse"
    return "no_difference"


def _rollout_reason(spec: RolloutSpec, arm: ArmVerdict, analysis: RolloutAnalysis) -> str:
    if analysis.doubts:
        return (
            f"The estimate's assumptions are in doubt ({'; '.join(analysis.doubts)}): check before deciding."
        )
    if arm.action == "ship":
        paying = " and pays for itself" if arm.pays else ""
        return f"The promotion lifted {spec.primary}{paying}: run it again."
    if arm.finding == "untestable":
        return f"{spec.primary} has no interval: the design cannot decide (see the diagnostics)."
    if arm.finding == "better":
        return f"The promotion lifted {spec.primary} but does not pay for itself."
    if arm.finding == "worse":
        return f"The promotion lowered {spec.primary}."
    return f"No effect on {spec.primary} could be shown."
