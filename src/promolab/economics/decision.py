"""The spec's decision rule as ship / iterate / stop, with the reason in one sentence.

- ``decision.metric: profit`` (or ``roi``): ship the arm with the highest net profit (or ROI) among
  those with P(net profit > 0) >= ``decision.prob_positive`` (default: the analysis confidence) whose
  guardrails pass; **iterate** when an arm lifts the primary metric but does not pay for itself (change
  the offer); **stop** when nothing lifts the primary metric.
- ``decision.metric`` a declared metric (or no decision block): the analysis verdict decides; an arm
  that improved the primary metric but failed a guardrail means **iterate**.
- A sample-ratio mismatch always means **iterate**: the data cannot be trusted until it is explained.

It reads the analysis JSON payload (``promolab analyze --json``), so a saved result can be decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from promolab.economics.promotion import ArmEconomicsResult, PromotionEconomics
from promolab.spec.models import ExperimentSpec

ECONOMIC = ("profit", "roi")


@dataclass(frozen=True)
class PromotionDecision:
    action: Literal["ship", "iterate", "stop"]
    variant: str | None
    reason: str


def promotion_decision(
    spec: ExperimentSpec, payload: Mapping[str, Any], economics: PromotionEconomics | None
) -> PromotionDecision:
    """Apply the spec's decision rule to an analysis payload and its economics."""
    if payload["srm"]["flag"]:
        return PromotionDecision(
            "iterate", None, "Sample-ratio mismatch: explain it and rerun the test before deciding."
        )
    target = spec.decision.metric if spec.decision is not None else spec.primary
    lifted = _primary_improved(spec, payload)
    if target in ECONOMIC and economics is not None:
        return _economic_decision(spec, payload, economics, target, lifted)
    verdict = payload["decision"]
    if verdict["ship"] is not None:
        return PromotionDecision("ship", verdict["ship"], f"{verdict['reason']}.")
    if lifted:
        return PromotionDecision(
            "iterate", None, f"{', '.join(lifted)} lift {spec.primary}, but {verdict['reason']}."
        )
    return PromotionDecision("stop", None, f"{verdict['reason']}.")


def _economic_decision(
    spec: ExperimentSpec,
    payload: Mapping[str, Any],
    economics: PromotionEconomics,
    target: str,
    lifted: list[str],
) -> PromotionDecision:
    threshold = _threshold(spec, payload)
    failed = _failed_guardrails(payload)
    pays = [a for a in economics.arms if (a.quantities["net_profit"].prob_positive or 0.0) >= threshold]
    paying = [arm for arm in pays if not failed.get(arm.variant)]
    key = "net_profit" if target == "profit" else "roi"

    def rank(arm: ArmEconomicsResult) -> tuple[float, float]:
        """The target (ROI, or net profit), then net profit; an unknown ROI ranks below every known one."""
        value, profit = arm.quantities[key].value, arm.quantities["net_profit"].value or 0.0
        return (float("-inf") if value is None else value, profit)

    if pays and not paying:
        blocked = max(pays, key=rank)
        return PromotionDecision(
            "iterate",
            None,
            f"{blocked.variant} pays for itself (P(net profit > 0) = "
            f"{blocked.quantities['net_profit'].prob_positive:.3f}) but fails the guardrail(s) "
            f"{', '.join(failed[blocked.variant])}.",
        )
    if paying:
        best = max(paying, key=rank)
        profit = best.quantities["net_profit"]
        return PromotionDecision(
            "ship",
            best.variant,
            f"{best.variant} pays for itself: P(net profit > 0) = {profit.prob_positive:.3f} "
            f">= {threshold:g}, net profit {profit.value:,.0f} {economics.currency}; every guardrail passes.",
        )
    arms = [arm for name in lifted if (arm := economics.arm(name)) is not None]
    if arms:
        arm = max(arms, key=rank)
        profit = arm.quantities["net_profit"]
        units = (
            ""
            if arm.observed_units_lift is None
            else f"; units {arm.observed_units_lift:+.1%} against a break-even of "
            + ("never" if arm.break_even_lift is None else f"{arm.break_even_lift:+.1%}")
        )
        return PromotionDecision(
            "iterate",
            None,
            f"{arm.variant} lifts {spec.primary} but does not pay for itself "
            f"(P(net profit > 0) = {profit.prob_positive or 0.0:.3f}{units}).",
        )
    return PromotionDecision(
        "stop", None, f"No arm lifts {spec.primary}, and none pays for itself with P >= {threshold:g}."
    )


def _threshold(spec: ExperimentSpec, payload: Mapping[str, Any]) -> float:
    if spec.decision is not None and spec.decision.prob_positive is not None:
        return spec.decision.prob_positive
    return spec.analysis.confidence


def _failed_guardrails(payload: Mapping[str, Any]) -> dict[str, list[str]]:
    """Variant -> the guardrail metrics it failed (the Bayesian checks when the method is Bayesian)."""
    rows = payload["guardrails"]
    if payload.get("method") == "bayesian":
        rows = payload["bayes"]["guardrails"]
    failed: dict[str, list[str]] = {}
    for row in rows:
        if not row["passed"]:
            failed.setdefault(row["variant"], []).append(row["metric"])
    return failed


def _primary_improved(spec: ExperimentSpec, payload: Mapping[str, Any]) -> list[str]:
    """Arms whose primary metric improved: significantly (Holm), or with P(beat) >= the threshold."""
    alpha = 1 - spec.analysis.confidence
    sign = 1 if spec.metric(spec.primary).direction == "higher" else -1
    threshold = _threshold(spec, payload)
    improved = []
    for row in payload["results"]:
        if row["metric"] != spec.primary:
            continue
        bayes = row.get("bayes")
        if payload.get("method") == "bayesian" and bayes is not None:
            better = bayes["prob_beat_control"] >= threshold
        else:
            p, diff = row["p_value_adjusted"], row["abs_diff"]
            better = p is not None and diff is not None and p < alpha and sign * diff > 0
        if better:
            improved.append(row["variant"])
    return improved
