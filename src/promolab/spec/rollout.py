"""Specs of promotions that were not randomised ("rollouts"): a promotion switched on for some units
(stores, regions) from a date, judged against its own past and against untreated units.

A rollout spec has a ``rollout`` block instead of ``variants``; its metrics are columns of one panel
file (one row per unit and period). The promotion that ran is declared as a variant would be
(``{kind: discount, mechanic: percent_off, value: 15}``), so its cost per unit sold comes from the same
mechanic models as a randomised arm's. Cross-field rules are checked on load, all problems at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from promolab.errors import Problem, SpecError, quoted
from promolab.spec.checks import unit_cost_problems
from promolab.spec.models import (
    ECONOMIC_QUANTITIES,
    MAX_ITEMS,
    UNIT_KINDS,
    Column,
    Economics,
    FilePath,
    Lift,
    Probability,
    Slug,
    SpecFile,
    SpecModel,
    Variant,
)

PROMOTION_ID = "promotion"  # the promotion's id when the spec gives none (keys of fixed/media costs)
METHODS = ("did", "synthetic_control", "its", "auto")
GRAINS = ("day", "week", "month", "quarter", "year")


class TreatedColumn(SpecModel):
    """Treated units named by a 0/1 column of the panel (1 in the periods the promotion ran)."""

    column: Column


class Rollout(SpecModel):
    """Which units ran the promotion, how to estimate its effect, and what the promotion was."""

    treated: tuple[Annotated[str, StringConstraints(min_length=1, max_length=200)], ...] | TreatedColumn = (
        Field(description="Ids of the units that ran the promotion, or {column: <0/1 column>}.")
    )
    method: Literal["did", "synthetic_control", "its", "auto"] = Field(
        default="auto",
        description="did | synthetic_control | its | auto (chosen by the data, with the reason).",
    )
    pre_start: dt.date = Field(description="First day of the fitting period before 'start'.")
    grain: Literal["day", "week", "month", "quarter", "year"] = Field(
        default="day", description="Period the panel is summed to before estimation."
    )
    promotion: Variant = Field(description="What ran, declared as a variant would be.")
    scale: Literal["relative", "level"] = Field(
        default="relative",
        description="did: compare units' sales relative to their own pre-period mean (parallel trends in "
        "percent, as multiplicative demand has them) or in levels.",
    )
    regressors: tuple[Column, ...] = Field(
        default=(), max_length=20, description="its: numeric panel columns entering the forecast."
    )

    @field_validator("treated", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        """Unit ids written as numbers (``[25, 26]``) are the ids ``"25"`` and ``"26"``: panel ids are
        read as text."""
        if isinstance(value, list | tuple):
            return tuple(str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
        return value

    @field_validator("promotion", mode="before")
    @classmethod
    def _as_arm(cls, value: Any) -> Any:
        """The promotion is an arm without an assignment weight: id and weight are filled in."""
        if isinstance(value, dict):
            return {"id": PROMOTION_ID, "weight": 1.0, **value}
        return value


class PanelMetric(SpecModel):
    """A metric read from a column of the panel, summed per unit and period."""

    id: Slug
    name: str | None = None
    description: str | None = None
    kind: Literal["continuous", "count"]
    source: Literal["panel"] = "panel"
    column: Column
    direction: Literal["higher", "lower"] = Field(default="higher", description="Which way is better.")
    unit: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None


class PanelData(SpecModel):
    """The panel file: one row per unit and period (rows of one unit and period are summed)."""

    panel: FilePath
    unit_id: Column = "unit_id"
    timestamp: Column = "date"


class PanelAnalysis(SpecModel):
    """Settings of the estimate."""

    confidence: Probability = 0.95


class RolloutDecision(SpecModel):
    """What the verdict is taken on: a declared metric, or 'profit' or 'roi'."""

    metric: Slug


class RolloutDesign(SpecModel):
    """The placebo backtests of ``promolab design``."""

    alpha: Probability = 0.05
    power: Probability = 0.8


class PanelSimulation(SpecModel):
    """How ``promolab simulate`` draws a panel for this spec (stores x days)."""

    units: int = Field(default=40, ge=3, le=100_000, description="Units in the panel (treated included).")
    level: float = Field(default=1000.0, gt=0, le=1e9, description="Median sales per unit and day.")
    lift: Lift = Field(default=0.1, description="Relative lift in sales during the promotion.")
    dip: float = Field(default=0.04, ge=0, lt=1, description="Relative drop after it (bought ahead).")
    noise: float = Field(default=0.05, ge=0, le=2, description="Sd of the daily noise, relative.")


class RolloutSpec(SpecFile):
    """A non-randomised promotion declared as code. Build with :func:`promolab.spec.load`."""

    post_days: int = Field(default=0, ge=0, le=3650, description="Days after 'end' still measured (the dip).")
    rollout: Rollout
    metrics: tuple[PanelMetric, ...] = Field(max_length=MAX_ITEMS, description="At least 1 metric.")
    primary: Slug
    economics: Economics | None = None
    analysis: PanelAnalysis = Field(default_factory=PanelAnalysis)
    design: RolloutDesign = Field(default_factory=RolloutDesign)
    decision: RolloutDecision | None = None
    data: PanelData
    simulation: PanelSimulation | None = None
    tags: tuple[str, ...] = Field(default=(), max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _consistent(self) -> RolloutSpec:
        problems = list(rollout_problems(self))
        if problems:
            raise SpecError(problems)
        return self

    def metric(self, metric_id: str) -> PanelMetric:
        return next(m for m in self.metrics if m.id == metric_id)

    @property
    def promotion(self) -> Any:
        """The promotion that ran (a variant model: its mechanic prices it)."""
        return self.rollout.promotion

    @property
    def stop(self) -> dt.date:
        """Last day measured: ``end + post_days``."""
        return self.end + dt.timedelta(days=self.post_days)

    @property
    def units_metric(self) -> str:
        """The metric counted as units sold by the economics: ``economics.units``, else the primary."""
        return (self.economics.units if self.economics else None) or self.primary


def period_start(day: dt.date, grain: str) -> dt.date:
    """First day of the ``grain`` period holding ``day`` (weeks start on Monday, as DuckDB's)."""
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if grain == "year":
        return day.replace(month=1, day=1)
    return day


def next_period(start: dt.date, grain: str) -> dt.date:
    """First day of the period after the one starting on ``start``."""
    if grain == "day":
        return start + dt.timedelta(days=1)
    if grain == "week":
        return start + dt.timedelta(days=7)
    if grain in ("month", "quarter"):
        day = start
        for _ in range(1 if grain == "month" else 3):
            day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return day
    return start.replace(year=start.year + 1)


def _aligned(spec: RolloutSpec) -> Iterator[Problem]:
    """With a coarser grain than days, every window starts and ends on period boundaries (a period
    split between windows would be counted in one of them)."""
    grain = spec.rollout.grain
    if grain == "day" or spec.stop >= dt.date.max - dt.timedelta(days=1):
        return
    one = dt.timedelta(days=1)
    bounds = {
        ("rollout", "pre_start"): spec.rollout.pre_start,
        ("start",): spec.start,
        ("end",): spec.end + one,
        ("post_days",): spec.stop + one,
    }
    for field, day in bounds.items():
        if period_start(day, grain) != day:
            what = (
                "must be the first day of a"
                if field in {("rollout", "pre_start"), ("start",)}
                else ("must end on the last day of a")
            )
            yield Problem(field, f"{what} {grain} (grain: {grain}; weeks start on Monday)")


def rollout_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """Every cross-field problem of a rollout spec, in spec order."""
    if spec.end < spec.start:
        yield Problem(("end",), f"must be on or after start ({spec.start}), got {spec.end}")
    if spec.rollout.pre_start >= spec.start:
        yield Problem(
            ("rollout", "pre_start"), f"must be before start ({spec.start}), got {spec.rollout.pre_start}"
        )
    if (dt.date.max - spec.end).days < spec.post_days:
        yield Problem(("post_days",), f"end ({spec.end}) + {spec.post_days} days is past the last date")
    yield from _aligned(spec)
    treated = spec.rollout.treated
    if isinstance(treated, tuple):
        if not treated:
            yield Problem(("rollout", "treated"), "name at least one treated unit")
        repeated = sorted({t for t in treated if treated.count(t) > 1})
        if repeated:
            yield Problem(("rollout", "treated"), f"lists {quoted(repeated)} more than once")
    promotion = spec.rollout.promotion
    if promotion.kind == "control":
        yield Problem(("rollout", "promotion", "kind"), "the promotion cannot be a control: declare what ran")
    if getattr(promotion, "mechanic", None) == "coupon" or getattr(promotion, "min_spend", None) is not None:
        yield Problem(
            ("rollout", "promotion"),
            "a coupon or a min_spend applies to some orders only, and a panel of sales does not say which: "
            "declare the promotion as amount_off without min_spend (every order), or percent_off",
        )
    ids = [m.id for m in spec.metrics]
    if not ids:
        yield Problem(("metrics",), "needs at least 1 metric")
    for index, metric_id in enumerate(ids):
        if metric_id in ids[:index]:
            yield Problem(("metrics", index, "id"), f"'{metric_id}' is declared twice")
    if spec.primary not in ids:
        yield Problem(("primary",), _unknown("metric", spec.primary, ids))
    reserved = {spec.data.unit_id, spec.data.timestamp}
    for index, metric in enumerate(spec.metrics):
        if metric.column in reserved:
            yield Problem(("metrics", index, "column"), f"'{metric.column}' is the unit id or date column")
    for index, column in enumerate(spec.rollout.regressors):
        if column in reserved or column in {m.column for m in spec.metrics}:
            yield Problem(("rollout", "regressors", index), f"'{column}' is a metric, unit id or date column")
    yield from _economics(spec, ids)
    if spec.decision is not None:
        target = spec.decision.metric
        if target != spec.primary and target not in ECONOMIC_QUANTITIES:
            yield Problem(
                ("decision", "metric"),
                f"must be the primary metric '{spec.primary}', 'profit' or 'roi', got '{target}'",
            )
        elif target in ECONOMIC_QUANTITIES and (spec.economics is None or spec.economics.unit_price is None):
            yield Problem(("decision", "metric"), f"'{target}' needs economics with a unit_price")


def _economics(spec: RolloutSpec, ids: list[str]) -> Iterator[Problem]:
    econ = spec.economics
    if econ is None:
        return
    yield from unit_cost_problems(econ)
    for field in ("fixed_cost", "media_cost"):
        for key in getattr(econ, field):
            if key != spec.promotion.id:
                yield Problem(("economics", field, key), _unknown("promotion", key, [spec.promotion.id]))
    if econ.units is not None and econ.units not in ids:
        yield Problem(("economics", "units"), _unknown("metric", econ.units, ids))
    unsupported = [
        f for f in ("revenue", "orders", "redemptions", "discount", "conversion") if getattr(econ, f)
    ]
    for field in unsupported:
        yield Problem(
            ("economics", field),
            "is not read for rollouts: the money is counted from units sold (economics.units, else the "
            "primary metric) at unit_price and unit_cost",
        )


def _unknown(what: str, got: str, known: list[str]) -> str:
    return f"unknown {what} '{got}'; expected one of {quoted(known)}" if known else f"unknown {what} '{got}'"


__all__ = ["GRAINS", "METHODS", "PROMOTION_ID", "UNIT_KINDS", "RolloutSpec", "rollout_problems"]
