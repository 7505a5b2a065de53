"""The quarterly promotion review: every experiment that ended in a quarter, side by side.

Reads the per-experiment report content (``<id>.json`` written by ``promolab report``) and builds:

- the portfolio: one row per treatment arm (mechanic, channel, primary lift, revenue lift, ROI,
  net profit with its interval, the experiment's decision), ranked by ROI;
- totals over the quarter's arms (incremental revenue, promotion cost, net profit; ROI of the sum);
- the mechanic comparison: each arm's relative lift of revenue per randomised unit (the economics'
  revenue metric, so every experiment measures the same thing; the primary metric when an experiment
  has no economics) partially pooled across experiments by mechanic (:mod:`promolab.analyze.portfolio`).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promolab import __version__
from promolab.analyze.payload import SavedResult
from promolab.errors import DataError
from promolab.spec import AnySpec
from promolab.spec.models import Bayes

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
Amount = Annotated[float, Field(ge=-1e15, le=1e15, allow_inf_nan=False)]  # money: sums stay finite


class _Estimate(BaseModel):
    value: Amount | None
    ci: tuple[Amount, Amount] | None = None
    prob_positive: Annotated[float, Field(ge=0, le=1)] | None = None


class _ArmMoney(BaseModel):
    variant: str
    roi: _Estimate
    net_profit: _Estimate
    incremental_revenue: _Estimate
    promotion_cost: _Estimate


class _Economics(BaseModel):
    currency: str
    arms: list[_ArmMoney]


class _Variant(BaseModel):
    id: str
    name: str
    mechanic: str
    channel: str | None


class _Decision(BaseModel):
    action: Literal["ship", "iterate", "stop"]
    variant: str | None
    reason: str


class SavedReport(BaseModel):
    """The fields of a report's ``<id>.json`` that the review reads, with their numbers checked."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    experiment: str
    name: str
    end: dt.date
    decision: _Decision
    primary: str
    reference: str
    variants: list[_Variant] = Field(min_length=2)
    results: list[SavedResult] = Field(min_length=1)
    economics: _Economics | None
    revenue_metric: str | None
    confidence: Annotated[float, Field(gt=0, lt=1)]


class _Promotion(BaseModel):
    id: str
    name: str
    mechanic: str
    channel: str | None


class _WindowResult(BaseModel):
    metric: str
    period: Literal["during", "post", "total"]
    rel_lift: Amount | None
    rel_ci: tuple[Amount, Amount] | None


class _RolloutMoney(BaseModel):
    currency: str
    quantities: dict[str, _Estimate]


class SavedRollout(BaseModel):
    """The fields of a rollout report's ``<id>.json`` that the review reads."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    kind: Literal["rollout"]
    experiment: str
    name: str
    end: dt.date
    decision: _Decision
    primary: str
    promotion: _Promotion
    method: str
    evidence: Literal["moderate", "weak"]
    results: list[_WindowResult] = Field(min_length=1)
    economics: _RolloutMoney | None


def quarter_bounds(label: str) -> tuple[dt.date, dt.date]:
    """First and last day of ``YYYYQn`` (``2026Q1`` -> 2026-01-01, 2026-03-31)."""
    match = _QUARTER.match(label)
    if match is None:
        raise DataError(f"--quarter {label!r}: expected YYYYQn, e.g. 2026Q1")
    year, quarter = int(match[1]), int(match[2])
    if year < dt.MINYEAR:
        raise DataError(f"--quarter {label!r}: the year must be between {dt.MINYEAR} and {dt.MAXYEAR}")
    last_month = 3 * quarter
    return dt.date(year, last_month - 2, 1), dt.date(
        year, last_month, calendar.monthrange(year, last_month)[1]
    )


def quarter_of(day: dt.date) -> str:
    """``YYYYQn`` of a date."""
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def in_quarter[S: AnySpec](specs: Sequence[S], label: str) -> list[S]:
    """The experiments whose ``end`` falls in the quarter, by end date then id."""
    first, last = quarter_bounds(label)
    return sorted((s for s in specs if first <= s.end <= last), key=lambda s: (s.end, s.id))


def build_review(
    reports: Sequence[Mapping[str, Any]], quarter: str, settings: Bayes, confidence: float = 0.95
) -> dict[str, Any]:
    """The review's content (module docstring) from the quarter's report contents."""
    rows = [row for report in reports for row in _portfolio_rows(report)]
    rows.sort(key=lambda r: (r["roi"] is None, -(r["roi"] or 0.0)))  # arms without an ROI last
    promotions = [row for row in rows if row["mechanic"] != "price_point"]
    lifts = [_arm_lift(row) for row in promotions if row["lift_se"] is not None]
    pooling = None
    notes = [
        "Mechanics are compared on the relative lift of revenue per randomised unit (the primary "
        "metric for experiments without economics), partially pooled across experiments: "
        "log(1 + lift) ~ N(mu_mechanic + sigma z, se), mu_mechanic = mu0 + tau w. A mechanic seen in "
        "one arm is pulled towards the across-mechanic mean.",
        "Price-point arms are alternatives to one another, not promotions: they are listed in the "
        "portfolio but left out of the totals and of the mechanic comparison.",
        "Totals are test totals: what the quarter's tests earned and cost against their reference arms.",
    ]
    if any(row["evidence"] != RANDOMISED for row in rows):
        notes.append(
            "Rollouts (promotions that were not randomised) are listed with the strength of their evidence "
            "and counted in the totals (against their counterfactual), but left out of the mechanic "
            "comparison: their lifts rest on assumptions (parallel trends, a stable pre-period fit) that a "
            "randomised test does not need."
        )
    if any(str(row["lift_metric"]).endswith("@total") for row in rows):
        notes.append(
            "Experiments that measured a post window are counted net of the dip after the promotion: "
            "their revenue lift is over the promotion and the post window (metric@total), and their "
            "money figures too."
        )
    if lifts:
        from promolab.analyze.portfolio import pool_mechanics

        pooling = pool_mechanics(lifts, settings, confidence).to_dict()
        if pooling["flags"]:
            notes.append("The mechanic model's sampler diagnostics failed: treat its estimates with care.")
    return {
        "quarter": quarter,
        "promolab_version": __version__,
        "experiments": [
            {
                "experiment": r["experiment"],
                "name": r["name"],
                "end": r["end"],
                "decision": r["decision"],
                "primary": r["primary"],
                "evidence": _evidence(r),
            }
            for r in reports
        ],
        "portfolio": rows,
        "totals": _totals(promotions),
        "mechanics": pooling,
        "notes": notes,
    }


RANDOMISED = "strong (randomised)"


def _evidence(report: Mapping[str, Any]) -> str:
    """Strength of evidence: randomised tests are strong; a rollout's is its analysis's grade."""
    if report.get("kind") != "rollout":
        return RANDOMISED
    return f"{report['evidence']} ({report['method'].replace('_', ' ')})"


def _portfolio_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    if report.get("kind") == "rollout":
        return [_rollout_row(report)]
    economics = report["economics"] or {"arms": []}
    by_arm = {a["variant"]: a for a in economics["arms"]}
    variants = {v["id"]: v for v in report["variants"]}
    revenue_metric = report["revenue_metric"] or report["primary"]
    rows = []
    for variant in (v for v in report["variants"] if v["id"] != report["reference"]):
        arm = variant["id"]
        primary = _result(report, report["primary"], arm)
        net = _result(report, f"{revenue_metric}@total", arm)  # net of the post window's dip
        compared = net or _result(report, revenue_metric, arm) or primary
        money = by_arm.get(arm)
        rows.append(
            {
                "experiment": report["experiment"],
                "variant": arm,
                "name": variants[arm]["name"],
                "mechanic": variants[arm]["mechanic"],
                "channel": variants[arm]["channel"],
                "primary": report["primary"],
                "primary_lift": primary["rel_lift"] if primary else None,
                "primary_ci": primary["rel_ci"] if primary else None,
                "lift_metric": compared["metric"] if compared else None,
                "lift": compared["rel_lift"] if compared else None,
                "lift_se": compared.get("rel_se_log") if compared else None,
                "roi": money["roi"]["value"] if money else None,
                "net_profit": money["net_profit"]["value"] if money else None,
                "net_profit_ci": money["net_profit"]["ci"] if money else None,
                "prob_profit": money["net_profit"]["prob_positive"] if money else None,
                "incremental_revenue": money["incremental_revenue"]["value"] if money else None,
                "promotion_cost": money["promotion_cost"]["value"] if money else None,
                "currency": economics.get("currency"),
                "decision": _arm_action(report["decision"], arm),
                "shipped": report["decision"]["variant"] == arm,
                "evidence": RANDOMISED,
            }
        )
    return rows


def _rollout_row(report: Mapping[str, Any]) -> dict[str, Any]:
    """A rollout's one row: the promotion against its counterfactual, net of the dip when measured."""
    results = {(r["metric"], r["period"]): r for r in report["results"]}
    primary = results.get((report["primary"], "total")) or results.get((report["primary"], "during"))
    economics = report["economics"]
    money = economics["quantities"] if economics else {}

    def value(name: str) -> Any:
        return money[name]["value"] if name in money else None

    promotion = report["promotion"]
    return {
        "experiment": report["experiment"],
        "variant": promotion["id"],
        "name": promotion["name"],
        "mechanic": promotion["mechanic"],
        "channel": promotion["channel"],
        "primary": report["primary"],
        "primary_lift": primary["rel_lift"] if primary else None,
        "primary_ci": primary["rel_ci"] if primary else None,
        "lift_metric": None,  # a rollout measures its own metrics: no revenue per randomised unit
        "lift": None,
        "lift_se": None,
        "roi": value("roi"),
        "net_profit": value("net_profit"),
        "net_profit_ci": money["net_profit"]["ci"] if "net_profit" in money else None,
        "prob_profit": None,
        "incremental_revenue": value("incremental_revenue"),
        "promotion_cost": value("promotion_cost"),
        "currency": economics["currency"] if economics else None,
        "decision": report["decision"]["action"],
        "shipped": report["decision"]["action"] == "ship",
        "evidence": _evidence(report),
    }


def _arm_action(decision: Mapping[str, Any], arm: str) -> str:
    """The arm's own verdict (reports before per-arm verdicts: the experiment's)."""
    verdicts = decision.get("arms") or []
    return next((str(a["action"]) for a in verdicts if a.get("variant") == arm), str(decision["action"]))


def _result(report: Mapping[str, Any], metric: str, arm: str) -> Mapping[str, Any] | None:
    return next((r for r in report["results"] if r["metric"] == metric and r["variant"] == arm), None)


def _arm_lift(row: Mapping[str, Any]) -> Any:
    from promolab.analyze.portfolio import ArmLift

    # ArmLift takes the relative-scale se; pool_mechanics divides it by (1 + lift) again
    relative_se = row["lift_se"] * (1 + row["lift"])
    return ArmLift(row["experiment"], row["variant"], row["mechanic"], row["lift"], relative_se)


def _totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sums over the arms whose profit and cost are known, per currency (ROI of the sums)."""
    totals: dict[str, Any] = {}
    known = [r for r in rows if r["net_profit"] is not None and r["promotion_cost"] is not None]
    for currency in sorted({r["currency"] for r in known}):
        mine = [r for r in known if r["currency"] == currency]
        profit = sum(r["net_profit"] for r in mine)
        cost = sum(r["promotion_cost"] for r in mine)
        totals[currency] = {
            "arms": len(mine),
            "incremental_revenue": sum(r["incremental_revenue"] for r in mine),
            "promotion_cost": cost,
            "net_profit": profit,
            "roi": profit / cost if cost > 0 else None,
        }
    return totals
