"""The per-experiment report's content (``report.json``): everything the HTML and Markdown show.

Built from an :class:`~promolab.analyze.Analysis` (analysed now, or read back from ``analyze --json``)
and the spec, so a saved result can be reported without the data: the economics
(:func:`promolab.economics.evaluate`, Bayesian when posterior draws of the revenue metric are given),
the decision (:func:`promolab.decision.decide`: one verdict per arm and one for the experiment; both
rules with ``--method both``), the design recap (planned against achieved sample), and, for price-point
tests, the price response.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from promolab import __version__
from promolab.analyze import Analysis
from promolab.decision import Decision, decide
from promolab.economics import evaluate
from promolab.economics.elasticity import PricePoint, price_response
from promolab.economics.promotion import economics_sources, mechanic_of
from promolab.spec.models import ExperimentSpec, PricePointVariant
from promolab.spec.windows import expand, split_id, window_of
from promolab.stats.moments import Moments

type Draws = Mapping[str, Mapping[str, np.ndarray]]  # metric -> arm -> posterior draws of the mean


def build_report(
    spec: ExperimentSpec,
    analysis: Analysis,
    draws: Draws | None = None,
    monitoring: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report's content as a JSON-ready mapping (see the module docstring); ``monitoring``: the
    looks of ``promolab monitor``, reported as they are."""
    payload = analysis.to_dict()
    arms = analysis.arms
    confidence = spec.analysis.confidence
    economics = evaluate(spec, analysis, draws)
    revenue_metric = economics_sources(spec)[0].revenue if economics is not None else None
    notes: list[str] = []
    if economics is not None:
        notes += economics.notes
        notes += [
            f"{a.variant}: {quantity} not reported: {why}."
            for a in economics.arms
            for quantity, why in a.not_applicable.items()
        ]
        notes.append(_uncertainty_note(economics.method, confidence))
    notes += [f"Data: {line}." for line in analysis.data_quality.warnings()]
    decision = decide(spec, analysis, economics)
    decisions = _both_rules(spec, analysis, economics) if analysis.method == "both" else None
    if any(str(row.get("method", "")).startswith("cuped") for row in payload["results"]):
        notes.append(
            "The economics uses every arm's unadjusted means; the metric table's lifts are CUPED-adjusted, "
            "so the two differ by the chance imbalance the adjustment removes."
        )
    if payload.get("daily") is None:
        notes.append(
            "No cumulative curve: it needs data.timestamp on the primary metric's event table and "
            "`analyze --daily` (report runs it when it analyses the data itself)."
        )
    return {
        "experiment": spec.id,
        "name": spec.name,
        "hypothesis": spec.hypothesis,
        "owner": spec.owner,
        "start": spec.start.isoformat(),
        "end": spec.end.isoformat(),
        "primary": spec.primary,
        "metric_info": _metric_info(spec),
        "revenue_metric": revenue_metric,
        "confidence": confidence,
        "reference": spec.reference.id,
        "variants": [
            {"id": v.id, "name": v.name or v.id, "mechanic": mechanic_of(v), "channel": v.channel}
            for v in spec.variants
        ],
        "promolab_version": __version__,
        "spec_hash": payload["spec_hash"],
        "decision": decision.to_dict(),
        "decisions": decisions,
        "headline": _headline(spec, payload, decision.variant, economics.to_dict() if economics else None),
        "method": analysis.method,
        "design": _design_recap(spec, arms),
        "srm": payload["srm"],
        "results": payload["results"],
        "guardrails": payload["guardrails"],
        "bayes": payload.get("bayes"),
        "segments": _largest_segments((payload.get("bayes") or {}).get("segments") or []),
        "segment_tests": {
            **_largest_segments(payload["segments"]["rows"]),
            "heterogeneity": [
                {**h, "differs": h["p_value"] < 1 - confidence} for h in payload["segments"]["heterogeneity"]
            ],
        },
        "economics": economics.to_dict() if economics is not None else None,
        "lift_sources": _lift_sources(economics.to_dict()) if economics is not None else [],
        "price_response": _price_response(spec, arms),
        "daily": payload.get("daily"),
        "monitoring": dict(monitoring) if monitoring is not None else None,
        "notes": notes,
    }


PART_LABELS = {
    "promoted": "promoted items",
    "cannibalised": "cannibalised substitutes",
    "halo": "halo on the rest of the basket",
    "during": "during the promotion",
    "pull_forward": "post window (pull-forward, carry-over)",
}


def _lift_sources(economics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per arm, where the net incremental margin came from: each part with its interval, then the net
    (the parts add up to it); arms without a decomposition are left out."""
    found = []
    for arm in economics["arms"]:
        parts = arm.get("decomposition") or {}
        if not parts:
            continue
        rows = [{"part": p, "label": PART_LABELS[p], **estimate} for p, estimate in parts.items()]
        net = {"part": "net", "label": "net incremental margin", **arm["incremental_margin"]}
        found.append({"variant": arm["variant"], "rows": [*rows, net]})
    return found


def _both_rules(spec: ExperimentSpec, analysis: Analysis, economics: Any) -> dict[str, dict[str, Any]]:
    """``--method both``: the verdict of each rule, side by side."""
    rules: tuple[Literal["frequentist", "bayesian"], ...] = ("frequentist", "bayesian")
    found: dict[str, Decision] = {rule: decide(spec, analysis, economics, rule) for rule in rules}
    return {rule: d.to_dict() for rule, d in found.items()}


def _headline(
    spec: ExperimentSpec, payload: Mapping[str, Any], chosen: str | None, economics: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Primary lift (and ROI) of the shipped arm, else of the arm with the largest primary lift."""
    sign = 1 if spec.metric(spec.primary).direction == "higher" else -1
    rows = [r for r in payload["results"] if r["metric"] == spec.primary]
    row = next((r for r in rows if r["variant"] == chosen), None) or max(
        rows, key=lambda r: sign * (r["rel_lift"] if r["rel_lift"] is not None else float("-inf"))
    )
    arm = next((a for a in (economics or {}).get("arms", []) if a["variant"] == row["variant"]), None)
    free_goods = spec.economics is not None and not spec.economics.unit_cost
    return {
        "variant": row["variant"],
        "rel_lift": row["rel_lift"],
        "rel_ci": row["rel_ci"],
        "roi": arm["roi"]["value"] if arm else None,
        "roi_ci": arm["roi"]["ci"] if arm else None,
        "net_profit": arm["net_profit"]["value"] if arm else None,
        "caveat": (
            "ROI and net profit assume the goods cost nothing (economics.unit_cost is 0 or missing): every "
            "extra sale counts as pure margin, so they are upper bounds."
            if arm and free_goods
            else None
        ),
    }


def _metric_info(spec: ExperimentSpec) -> dict[str, dict[str, Any]]:
    """How each result row's metric is labelled and shown: name, unit, and percent / money / number
    (binary metrics and top boxes are shares: percent, differences in percentage points)."""
    currency = spec.economics.currency if spec.economics is not None else ""
    info = {}
    for metric in expand(spec).metrics:
        base = spec.metric(split_id(metric.id)[0])
        shown = base.format or ("percent" if base.kind == "binary" else "number")
        unit = base.unit or (currency if shown == "money" else "")
        window = window_of(spec, metric.id) if spec.post_days > 0 else split_id(metric.id)[1]
        label = (base.name or base.id) + (f" ({window})" if window else "")
        info[metric.id] = {"label": label, "unit": unit, "format": shown}
        if base.kind == "ordinal":
            top = f"{label}: top {base.top_box}"
            info[f"{metric.id}:top_box"] = {"label": top, "unit": "", "format": "percent"}
    return info


SEGMENTS_SHOWN = 8  # largest segments per segmentation and arm in the report (all are in the JSON)


def _largest_segments(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The largest segments of each segmentation and arm, and how many were left out of the table."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["segmentation"], row["variant"]), []).append(row)
    shown = [
        row
        for group in groups.values()
        for row in sorted(group, key=lambda r: -(r["n_control"] + r["n_variant"]))[:SEGMENTS_SHOWN]
    ]
    return {"rows": shown, "omitted": len(rows) - len(shown)}


def _uncertainty_note(method: str, confidence: float) -> str:
    if method == "bayesian":
        return (
            f"Intervals ({confidence:.0%}, equal-tailed) and P(> 0) of the economics come from the Bayesian "
            "posterior draws of revenue, with the other means drawn from their normal regression on revenue."
        )
    return (
        f"Intervals ({confidence:.0%}, equal-tailed) and P(> 0) of the economics come from the normal "
        "sampling distribution of every arm's means (the delta method's law, simulated with 20,000 draws)."
    )


SHORTFALL = 0.9  # achieved below this share of the planned units per arm gets a comment


def _design_recap(spec: ExperimentSpec, arms: Mapping[str, Moments]) -> dict[str, Any]:
    """Planned units per arm (``promolab design``) against the units analysed, with a sentence when the
    test fell short: the lift it could detect instead (the MDE grows as ``sqrt(planned / achieved)``)."""
    from promolab.design.plan import plan_design
    from promolab.errors import PromolabError

    achieved = {arm: m.n for arm, m in arms.items()}
    try:
        plan = plan_design(spec)
    except PromolabError:  # no baseline to plan from: report the achieved sample alone
        note = (
            "No planned sample size: the spec's design block gives nothing to plan from (`promolab design`)."
        )
        return {"planned": None, "achieved": achieved, "note": note, "shortfall": None}
    share = min(achieved[arm] / planned for arm, planned in plan.per_arm.items() if planned)
    shortfall = None
    if share < SHORTFALL:
        total, planned_total = sum(achieved.values()), sum(plan.per_arm.values())
        shortfall = (
            f"The test reached {share:.0%} of its planned sample ({total:,} of {planned_total:,} units)"
        )
        if plan.mde_relative is not None:
            detectable = plan.mde_relative / math.sqrt(share)
            shortfall += (
                f": it could detect a lift of about {detectable:.1%} on {plan.metric} with {plan.power:.0%} "
                f"power, not the planned {plan.mde_relative:.1%}. A lift smaller than that may be missed."
            )
        else:
            shortfall += "."
    return {
        "planned": plan.per_arm,
        "achieved": achieved,
        "metric": plan.metric,
        "mde_relative": plan.mde_relative,
        "power": plan.power,
        "note": None,
        "shortfall": shortfall,
    }


def _price_response(spec: ExperimentSpec, arms: Mapping[str, Moments]) -> dict[str, Any] | None:
    """Demand, revenue, profit and elasticity at each tested price (price-point tests)."""
    if not all(isinstance(v, PricePointVariant) for v in spec.variants) or spec.economics is None:
        return None
    sources, _ = economics_sources(spec)
    points = []
    for variant in spec.variants:
        assert isinstance(variant, PricePointVariant)
        moments = arms[variant.id]
        revenue = sources.revenue
        units = sources.units
        if units is None:  # units sold are revenue at list price: no separate measurement
            demand, var = moments.mean_of(revenue) / variant.price, moments.var(revenue) / variant.price**2
            points.append(PricePoint(variant.id, variant.price, moments.n, demand, var))
            continue
        points.append(
            PricePoint(
                variant.id,
                variant.price,
                moments.n,
                moments.mean_of(units),
                moments.var(units),
                moments.mean_of(revenue),
                moments.var(revenue),
                moments.cov(revenue, units),
            )
        )
    response = price_response(points, spec.economics.unit_cost or 0.0, spec.analysis.confidence)
    return response.to_dict()
