"""Promotion economics of every treatment arm against the reference arm, with uncertainty.

Per randomised unit of arm ``k`` (means over the arm's ``n_k`` units; currency of the spec)::

    R_k  revenue paid (net of any discount: what customers paid)
    U_k  units sold            (the ``economics.units`` metric, else R_k / (p_k - d_k): list price net
                                of the arm's nominal price cut per unit sold)
    O_k  orders                (``economics.orders``, else U_k / units_per_order)
    D_k  redeemed orders       (``economics.redemptions``, else O_k: every order redeems)
    Q_k  discount given        (``economics.discount``, else nominal: face value x D_k for amount-off
                                and coupons, the cut per unit sold x U_k for percent-off, BOGO, bundles)
    G_k  gift / shipping cost  = cost per redeemed order x D_k
    K_k  cost per contact (channels);  F_k = (fixed_k + media_k) / (w_k N)  (the arm's budgets per
                                planned unit: weight w_k of N = sum n / sum w analysed units)
    margin_k  = R_k - c U_k                    (gross margin after the discount; c = unit cost)
    profit_k  = margin_k - G_k - K_k - F_k     (contribution per randomised unit)

Test totals over the arm's ``n_k`` units, every amount against the reference arm ``0`` (what the arm
spends or earns per randomised unit minus what the reference does)::

    incremental revenue / units / conversions / margin = n_k (x_k - x_0)
    promotion cost   = n_k ((Q + G + K + F)_k - (Q + G + K + F)_0)
    subsidy          = n_k (Q_k / U_k - Q_0 / U_0) U_0   (the extra discount per unit sold on the units
                        the reference arm shows would have sold anyway); on incremental sales: the rest
    net profit       = n_k (profit_k - profit_0)
    ROI = net profit / promotion cost;  iROAS = incremental revenue / extra media spend, where the extra
    spend n_k (media_k / (w_k N) - media_0 / (w_0 N)) is the difference of the planned budgets per
    planned unit: equal budgets for equal weights spend nothing extra, whatever sizes the arms reached
    by chance, so iROAS is then not applicable (and says why);
    cost per incremental conversion = promotion cost / incremental conversions
    break-even lift  = (profit_0 + K_k + F_k) / (U_0 m_k) - 1,  m_k = (margin_k - G_k) / U_k
                       (net profit is zero when U_k reaches U_0 (1 + lift) at the same m_k)

The discount is already inside ``R_k`` (amounts are what customers paid), so net profit never
subtracts it again; subsidy and cost of incremental sales decompose it beside the net figure.

With a post window (``post_days`` and dated rows) every metric above is read in its ``total`` window
(``revenue@total``, :mod:`promolab.spec.windows`): money is net of the dip after the promotion. Where the
net incremental margin came from (``decomposition``): the same book on the sources of each part, the
promoted items, their substitutes and the other items during the promotion (``economics.promoted``;
else the promotion as a whole) and the post window; ``n_k (margin_k - margin_0)`` of each. Margin is
linear in the sources' means and the parts' rows partition the total window's rows, so the parts add
up to the incremental margin, draw by draw.

Uncertainty comes from draws of every arm's vector of means: ``frequentist``: the normal sampling
distribution of the means (``N(m, S / n)`` from the per-arm co-moments: the delta method's law,
simulated so ratios such as ROI need no linearisation); ``bayesian``: the revenue metric's posterior
draws, with the other means drawn from their normal regression on revenue (so their correlation
with revenue is kept). Intervals are equal-tailed at the analysis confidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from promolab import format as text
from promolab.design.breakeven import ArmEconomics, arm_economics, break_even_lift
from promolab.spec.models import (
    AmountOff,
    AnyVariant,
    Coupon,
    Economics,
    ExperimentSpec,
)
from promolab.spec.windows import PARTS, additive, derived_id, money_metrics, split_money, window_of
from promolab.stats.moments import Moments

if TYPE_CHECKING:
    from promolab.analyze import Analysis

type Array = npt.NDArray[np.float64]
type Values = Mapping[str, Array]  # variable -> values (one per draw, or a single point)

DRAWS = 20_000
SEED = 20260101


@dataclass(frozen=True)
class Estimate:
    """A quantity, its interval at the analysis confidence, and P(quantity > 0) when it has draws."""

    value: float | None
    ci: tuple[float, float] | None = None
    prob_positive: float | None = None


@dataclass(frozen=True)
class ArmEconomicsResult:
    """Economics of one treatment arm against the reference (test totals over the arm's units)."""

    variant: str
    mechanic: str
    units: int
    quantities: dict[str, Estimate]
    break_even_lift: float | None  # relative lift in units sold at which net profit is zero
    observed_units_lift: float | None  # None when units sold are unknown (no price, no units metric)
    not_applicable: dict[str, str] = field(default_factory=dict)  # quantity -> why it has no value
    decomposition: dict[str, Estimate] = field(default_factory=dict)  # part -> its incremental margin


@dataclass(frozen=True)
class PromotionEconomics:
    """Every treatment arm's economics, how uncertainty was computed, and the assumptions made."""

    currency: str
    reference: str
    method: str
    confidence: float
    arms: list[ArmEconomicsResult]
    notes: list[str] = field(default_factory=list)

    def arm(self, variant: str) -> ArmEconomicsResult | None:
        return next((a for a in self.arms if a.variant == variant), None)

    def to_dicts(self) -> list[dict[str, Any]]:
        """One flat row per treatment arm: each quantity with ``*_ci_lower`` / ``*_ci_upper`` and, where
        it has draws, ``*_prob_positive`` (the names of the analysis table's intervals)."""
        rows = []
        for a in self.arms:
            row: dict[str, Any] = {"variant": a.variant, "mechanic": a.mechanic, "units": a.units}
            parts = {f"margin_{part}": q for part, q in a.decomposition.items()}
            for name, q in (a.quantities | parts).items():
                low, high = q.ci or (None, None)
                row |= {name: q.value, f"{name}_ci_lower": low, f"{name}_ci_upper": high}
                if q.prob_positive is not None:
                    row[f"{name}_prob_positive"] = q.prob_positive
            row |= {"break_even_lift": a.break_even_lift, "observed_units_lift": a.observed_units_lift}
            rows.append(row)
        return rows

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_dicts())

    def to_markdown(self) -> str:
        """Net profit, its interval, P(profit > 0) and ROI per arm, in the spec's currency."""
        lines = [
            f"| arm | net profit ({self.currency}) | interval | P(profit > 0) | ROI |",
            "|---|---|---|---|---|",
        ]
        for a in self.arms:
            profit, roi = a.quantities["net_profit"], a.quantities["roi"]
            low, high = profit.ci or (None, None)
            lines.append(
                f"| {a.variant} | {text.money(profit.value)} | {text.interval(low, high, 'money')} | "
                f"{text.probability(profit.prob_positive)} | {text.percent(roi.value, 0, signed=True)} |"
            )
        return "\n".join(lines) + "\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "reference": self.reference,
            "method": self.method,
            "confidence": self.confidence,
            "notes": self.notes,
            "arms": [
                {
                    "variant": a.variant,
                    "mechanic": a.mechanic,
                    "units": a.units,
                    "break_even_lift": a.break_even_lift,
                    "observed_units_lift": a.observed_units_lift,
                    "not_applicable": a.not_applicable,
                    "decomposition": {
                        part: {"value": q.value, "ci": q.ci, "prob_positive": q.prob_positive}
                        for part, q in a.decomposition.items()
                    },
                    **{
                        name: {"value": q.value, "ci": q.ci, "prob_positive": q.prob_positive}
                        for name, q in a.quantities.items()
                    },
                }
                for a in self.arms
            ],
        }


# ---------------------------------------------------------------------- which metric is what


@dataclass(frozen=True)
class _Sources:
    """Moment names of the metrics the economics reads (None: derived, see the module docstring)."""

    revenue: str
    units: str | None
    orders: str | None
    redemptions: str | None
    discount: str | None
    conversion: str | None


def economics_sources(spec: ExperimentSpec) -> tuple[_Sources, list[str]]:
    """The metrics behind R, U, O, D, Q and conversions, and a note for every derived one."""
    economics = spec.economics or Economics()
    named = money_metrics(spec)
    revenue, conversion, orders = str(named["revenue"]), named["conversion"], named["orders"]
    cuts = any(_price_cut(spec, v) != 0 for v in spec.variants)  # NaN (no price known) counts
    gifts = any(v.cost_per_redeemed_order() > 0 for v in spec.variants)
    notes = [f"Revenue is the metric '{revenue}': what customers paid, net of every discount."]
    if economics.units is None and economics.discount is not None:
        notes.append("Units sold are (revenue paid + discount) / list price: the list value of the sales.")
    elif economics.units is None and math.isnan(_reference_price(spec)):
        notes.append(
            "No unit_price and no units metric: units sold, subsidy and break-even lifts are not reported."
        )
    elif economics.units is None:
        notes.append(
            "Units sold are revenue at list price (revenue / (list price - the arm's nominal price cut)): "
            "declare economics.units to measure them."
        )
    else:
        notes.append(
            f"Units sold (and the cost of goods, unit_cost x units) come from the metric '{economics.units}'."
        )
    notes += _discount_notes(spec, economics, cuts)
    if gifts and economics.redemptions is None:
        notes.append(
            "Per-order costs (gifts, shipping, a treatment's cost_per_order) are paid on every order of the "
            "arm (no redemptions metric)."
        )
    if not economics.unit_cost:
        notes.append("unit_cost is zero or missing: the cost of goods is zero, so margins equal revenue.")
    if conversion is None:
        notes.append("No binary conversion metric: incremental conversions are not reported.")
    capped = [
        m.id for m in spec.metrics if m.id in (revenue, economics.units) and getattr(m, "capping", None)
    ]
    if capped:
        notes.append(
            f"{', '.join(capped)} winsorised at the spec's capping threshold, as in the metric table: "
            "money totals use the capped values."
        )
    notes.append(
        "Every cost is counted against the reference arm: what the arm spends minus what the reference "
        "spends per randomised unit, over the arm's units. Fixed and media costs are budgets: each arm's "
        "is spread over its planned units (its weight of the units analysed), so equal budgets for equal "
        "weights cost nothing extra whatever sizes the arms reached. The subsidy is the extra discount "
        "per unit sold "
        "on the units the reference arm sold (those sales would have happened anyway)."
    )
    sources = _Sources(
        revenue, economics.units, orders, economics.redemptions, economics.discount, conversion
    )
    return sources, notes


def _discount_notes(spec: ExperimentSpec, economics: Economics, cuts: bool) -> list[str]:
    if not cuts or economics.discount is not None:
        return []
    notes = [
        "Discounts are nominal (no discount metric): amount-off and coupon face value per redeemed order "
        "(every order when no redemptions metric is declared), percent-off, BOGO and bundle cuts on every "
        "unit sold: an upper bound; declare economics.discount to measure them."
    ]
    if any(isinstance(v, AmountOff | Coupon) and v.min_spend is not None for v in spec.variants):
        notes.append(
            "min_spend is not modelled in nominal discounts: orders below it are costed as redeemed."
        )
    return notes


# ---------------------------------------------------------------------- the per-unit book


def _per_unit(
    values: Values, variant: AnyVariant, spec: ExperimentSpec, sources: _Sources, planned: float
) -> dict[str, Array]:
    """R, U, Q, G, K, fixed and media cost, margin and profit per randomised unit of one arm planned to
    have ``planned`` units (its weight of the analysed total: module docstring)."""
    economics = spec.economics or Economics()
    nominal = arm_economics(variant, economics, _reference_price(spec), units=1)
    revenue = values[sources.revenue]
    units = _units_sold(values, variant, nominal, sources)
    orders = values[sources.orders] if sources.orders else units / economics.units_per_order
    redeemed = values[sources.redemptions] if sources.redemptions else orders
    discount = (
        values[sources.discount] if sources.discount else _nominal_discount(variant, nominal, units, redeemed)
    )
    gifts = _scaled(variant.cost_per_redeemed_order(), redeemed)
    contact = _scaled(variant.cost_per_randomised_unit(), revenue, 1.0)
    fixed = _scaled(economics.fixed_cost.get(variant.id, 0.0) / planned, revenue, 1.0)
    media = _scaled(economics.media_cost.get(variant.id, 0.0) / planned, revenue, 1.0)
    margin = revenue - _scaled(economics.unit_cost or 0.0, units)
    book = {
        "revenue": revenue,
        "units": units,
        "discount": discount,
        "gifts": gifts,
        "contact": contact,
        "fixed": fixed,
        "media": media,
        "margin": margin,
        "profit": margin - gifts - contact - fixed - media,
    }
    if sources.conversion:
        book["conversions"] = values[sources.conversion]
    return book


def _units_sold(values: Values, variant: AnyVariant, nominal: ArmEconomics, sources: _Sources) -> Array:
    """Units sold: the units metric; else list value / list price, the list value being revenue paid
    plus the discount (measured, or an amount-off's face value on measured redemptions or orders);
    else revenue / (list price - nominal cut per unit sold)."""
    revenue = values[sources.revenue]
    if sources.units:
        return values[sources.units]
    if sources.discount:
        return (revenue + values[sources.discount]) / nominal.price
    per_order = sources.redemptions or sources.orders
    face = variant.order_discount()
    if face is not None and per_order:
        return (revenue + face * values[per_order]) / nominal.price
    return revenue / (nominal.price - nominal.price_cut)


def _nominal_discount(variant: AnyVariant, nominal: ArmEconomics, units: Array, redeemed: Array) -> Array:
    """Discount given when no discount metric is declared: an amount-off or coupon's face value per
    redeemed order; a percent-off, BOGO or bundle cut per unit sold (every unit at the offer)."""
    face = variant.order_discount()
    if face is not None:
        return _scaled(face, redeemed)
    return _scaled(nominal.price_cut, units)


def _scaled(rate: float, quantity: Array, per: float | None = None) -> Array:
    """``rate x quantity`` (or the constant ``rate`` when ``per`` is given), and exactly zero when the
    rate is zero, even where the quantity is unknown (NaN units without a list price)."""
    if rate == 0:
        return np.zeros_like(quantity)
    return np.full_like(quantity, rate) if per is not None else rate * quantity


def _price_cut(spec: ExperimentSpec, variant: AnyVariant) -> float:
    """The arm's nominal price cut per unit sold (0 for gifts, shipping, channels, creatives)."""
    economics = spec.economics or Economics()
    return arm_economics(variant, economics, _reference_price(spec), units=1).price_cut


def _reference_price(spec: ExperimentSpec) -> float:
    """List price of the reference arm; NaN when unknown (quantities that need it are then not
    reported, and a note says so)."""
    economics = spec.economics or Economics()
    return spec.reference.list_price(math.nan if economics.unit_price is None else economics.unit_price)


COSTS = ("discount", "gifts", "contact", "fixed", "media")  # promotion costs, per randomised unit


def _arm_totals(arm: dict[str, Array], ref: dict[str, Array], n: int) -> dict[str, Array]:
    """Test totals of one arm against the reference, over the arm's ``n`` units: every amount is the
    arm's minus what the reference arm spends or earns per randomised unit (module docstring)."""
    delta = {key: n * (arm[key] - ref[key]) for key in ("revenue", "units", "margin", *COSTS)}
    cost = sum((delta[key] for key in COSTS), np.zeros_like(delta["revenue"]))
    per_unit_sold = _per_sale(arm["discount"], arm["units"]) - _per_sale(ref["discount"], ref["units"])
    subsidy = n * per_unit_sold * ref["units"]
    net = n * (arm["profit"] - ref["profit"])
    totals = {
        "incremental_revenue": delta["revenue"],
        "incremental_units": delta["units"],
        "incremental_margin": delta["margin"],
        "discount_cost": delta["discount"],
        "subsidy": subsidy,
        "incremental_sales_discount": delta["discount"] - subsidy,
        "gift_shipping_cost": delta["gifts"],
        "contact_cost": delta["contact"],
        "fixed_media_cost": delta["fixed"] + delta["media"],
        "promotion_cost": cost,
        "net_profit": net,
        "roi": _safe_ratio(net, cost),
    }
    if np.all(delta["media"] > 0):
        totals["iroas"] = delta["revenue"] / delta["media"]
    if "conversions" in arm:
        conversions = n * (arm["conversions"] - ref["conversions"])
        totals["incremental_conversions"] = conversions
        totals["cost_per_incremental_conversion"] = _safe_ratio(cost, conversions)
    return totals


def _safe_ratio(a: Array, b: Array) -> Array:
    """a / b, NaN where b <= 0 (a ratio to no cost, no sales or no incremental conversion is undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _per_sale(amount: Array, units: Array) -> Array:
    """An amount per unit sold: 0 when the amount is 0 (no discount needs no sales), else a / units."""
    return np.where(amount == 0, 0.0, _safe_ratio(amount, units))


# ---------------------------------------------------------------------- draws of the means


def normal_draws(moments: Moments, names: list[str], size: int, rng: np.random.Generator) -> dict[str, Array]:
    """Draws of the arm's means of ``names`` from ``N(m, S / n)`` (their large-sample law)."""
    index = [moments.index(name) for name in names]
    mean = moments.mean[index]
    cov = moments.comoment[np.ix_(index, index)] / (moments.n - 1) / moments.n
    sample = rng.multivariate_normal(mean, cov, size=size, method="eigh")
    return {name: sample[:, j] for j, name in enumerate(names)}


def conditional_draws(
    moments: Moments, names: list[str], anchor: str, anchor_draws: Array, rng: np.random.Generator
) -> dict[str, Array]:
    """Means of ``names`` drawn given posterior draws of the ``anchor`` mean: the normal regression
    ``m_j | m_a ~ N(m_j + S_ja / S_aa (m_a - m_a_hat), (S_jj - S_ja^2 / S_aa) / n)``, jointly."""
    others = [name for name in names if name != anchor]
    a = moments.index(anchor)
    idx = [moments.index(name) for name in others]
    cov = moments.comoment / (moments.n - 1) / moments.n
    s_aa = cov[a, a]
    beta = cov[idx, a] / s_aa if s_aa > 0 else np.zeros(len(idx))
    residual = cov[np.ix_(idx, idx)] - np.outer(beta, beta) * s_aa
    centre = moments.mean[idx] + np.outer(anchor_draws - moments.mean[a], beta)
    noise = rng.multivariate_normal(np.zeros(len(idx)), residual, size=len(anchor_draws), method="eigh")
    drawn = centre + noise
    return {anchor: anchor_draws} | {name: drawn[:, j] for j, name in enumerate(others)}


# ---------------------------------------------------------------------- the public function


def evaluate(
    spec: ExperimentSpec, analysis: Analysis, draws: Mapping[str, Mapping[str, Array]] | None = None
) -> PromotionEconomics | None:
    """The spec's promotion economics of an analysis (None without an ``economics`` block).

    ``draws`` (metric -> arm -> posterior draws of the mean; default: the analysis's own, when its
    Bayesian engine ran) make the uncertainty Bayesian when they hold the revenue metric.
    """
    if spec.economics is None:
        return None
    if draws is None and analysis.bayes is not None:
        draws = analysis.bayes.draws
    return promotion_economics(spec, analysis.arms, spec.analysis.confidence, draws)


def promotion_economics(
    spec: ExperimentSpec,
    arms: Mapping[str, Moments],
    confidence: float = 0.95,
    draws: Mapping[str, Mapping[str, Array]] | None = None,
    size: int = DRAWS,
    seed: int = SEED,
) -> PromotionEconomics:
    """Economics of every treatment arm (module docstring). Posterior draws of the means (metric ->
    arm -> draws) switch the uncertainty to the Bayesian posterior when they hold the revenue metric
    of the money's window (``revenue@total`` with a post window: the draws of the window the money is
    counted in, never another's)."""
    declared, notes = economics_sources(spec)
    economics = spec.economics or Economics()
    measured = set(next(iter(arms.values())).names)
    sources = _in_window(spec, declared, "total", measured) or declared  # net of the post window's dip
    parts = _parts(spec, declared, measured)
    revenue_draws = None if draws is None else draws.get(sources.revenue)
    if sources is not declared:
        notes.append(
            f"Money is counted over the promotion and the {spec.post_days} days after it (window 'total'): "
            "net of the dip when customers bought ahead."
        )
        if not parts:
            capped = [n for n in split_money(spec) if not additive(spec.metric(n))]
            notes.append(
                f"No split of the margin by window: {', '.join(capped)} is capped, filtered or not a sum, "
                "so its values in the windows would not add up to the total."
            )
    names = sorted({s for src in (sources, *parts.values()) for s in vars(src).values() if s is not None})
    rng = np.random.default_rng(seed)
    reference = spec.reference
    points = {arm: {n: np.array([m.mean_of(n)]) for n in names} for arm, m in arms.items()}
    if revenue_draws is not None:
        method = "bayesian"
        sampled = {
            arm: conditional_draws(arms[arm], names, sources.revenue, np.asarray(revenue_draws[arm]), rng)
            for arm in arms
        }
    else:
        method = "frequentist"
        sampled = {arm: normal_draws(arms[arm], names, size, rng) for arm in arms}
    planned = _planned_units(spec, arms)
    books = {
        key: {arm: _per_unit(values[arm], spec.variant(arm), spec, sources, planned[arm]) for arm in arms}
        for key, values in (("point", points), ("draws", sampled))
    }
    margins = {
        key: {
            part: {
                arm: _per_unit(values[arm], spec.variant(arm), spec, found, planned[arm])["margin"]
                for arm in arms
            }
            for part, found in parts.items()
        }
        for key, values in (("point", points), ("draws", sampled))
    }
    tail = (1 - confidence) / 2
    results = []
    for variant in spec.treatments:
        arm = variant.id
        n = arms[arm].n
        point = _arm_totals(books["point"][arm], books["point"][reference.id], n)
        drawn = _arm_totals(books["draws"][arm], books["draws"][reference.id], n)
        centre = drawn if method == "bayesian" else point  # posterior means, or estimates at the means
        quantities = {name: _estimate(centre[name], drawn[name], tail) for name in point}
        split = {}
        for part, drawn_margins in margins["draws"].items():
            drawn_part = n * (drawn_margins[arm] - drawn_margins[reference.id])
            point_part = n * (margins["point"][part][arm] - margins["point"][part][reference.id])
            split[part] = _estimate(drawn_part if method == "bayesian" else point_part, drawn_part, tail)
        mine, ref = books["point"][arm], books["point"][reference.id]
        lift = float(_safe_ratio(mine["units"], ref["units"])[0]) - 1
        results.append(
            ArmEconomicsResult(
                variant=arm,
                mechanic=mechanic_of(variant),
                units=n,
                quantities=quantities,
                break_even_lift=_break_even(mine, ref),
                observed_units_lift=lift if math.isfinite(lift) else None,
                not_applicable=_not_applicable(economics, arm, reference.id, "iroas" in point),
                decomposition={PART_NAMES[part]: estimate for part, estimate in split.items()},
            )
        )
    return PromotionEconomics(economics.currency, reference.id, method, confidence, results, notes)


#: The decomposition's parts of the net incremental margin, by the tag of their variables.
PART_NAMES = {
    "promoted": "promoted",
    "substitutes": "cannibalised",
    "other": "halo",
    "during": "during",
    "post": "pull_forward",
}


def _in_window(spec: ExperimentSpec, sources: _Sources, tag: str, measured: set[str]) -> _Sources | None:
    """The sources measured in a window or product group (``tag``), or None when the revenue metric
    has no such variable; metrics without one (conversions in a product group) are left out."""
    found: dict[str, str | None] = {}
    for key, name in vars(sources).items():
        tagged = None if name is None else derived_id(name, tag)
        own = name is not None and window_of(spec, name) == tag
        found[key] = name if own else (tagged if tagged in measured else None)
    revenue = found.pop("revenue")
    if revenue is None:
        return None
    return _Sources(revenue, **found)


def _parts(spec: ExperimentSpec, sources: _Sources, measured: set[str]) -> dict[str, _Sources]:
    """Where the net incremental margin came from: the promoted items, their substitutes and the rest
    of the basket during the promotion (with ``economics.promoted``; else the promotion as a whole),
    and the post window (pull-forward). Empty when there is nothing to split. The parts' margins
    add up to the net one: margin is linear in the sources' means, and the parts' rows partition the
    net window's rows."""
    if not all(additive(spec.metric(name)) for name in split_money(spec)):
        return {}  # capped or averaged money: its parts would not add up (a note says so)
    tags = [*PARTS] if spec.economics is not None and spec.economics.promoted is not None else ["during"]
    if window_of(spec, sources.revenue) is not None and spec.post_days > 0:
        tags.append("post")
    elif tags == ["during"]:
        return {}
    found = {tag: _in_window(spec, sources, tag, measured) for tag in tags}
    return {tag: part for tag, part in found.items() if part is not None}


def _planned_units(spec: ExperimentSpec, arms: Mapping[str, Moments]) -> dict[str, float]:
    """Units each arm was planned to have: its weight of the analysed units ``N = sum n / sum w``."""
    weights = {v.id: v.weight for v in spec.variants if v.id in arms}
    total = sum(arms[arm].n for arm in weights) / sum(weights.values())
    return {arm: weight * total for arm, weight in weights.items()}


def _not_applicable(economics: Economics, arm: str, reference: str, has_iroas: bool) -> dict[str, str]:
    """Why a quantity is not reported, for a reader who expected one."""
    if has_iroas or not economics.media_cost:  # iROAS is expected only where media spend is declared
        return {}
    return {
        "iroas": "the arm does not plan more media spend per planned unit than the reference arm, so there "
        "is no incremental spend to return on"
    }


def _estimate(centre: Array, drawn: Array, tail: float) -> Estimate:
    """Value (the mean of ``centre``: one point estimate, or the posterior draws), interval, P(> 0)."""
    finite = drawn[np.isfinite(drawn)]
    centred = centre[np.isfinite(centre)]
    if len(centred) < 0.99 * len(centre):  # a ratio whose denominator is (or may be) 0: no value
        return Estimate(None)
    value = float(np.mean(centred))
    if len(finite) < 0.99 * len(drawn):  # the ratio's denominator crosses zero: no interval
        return Estimate(value)
    lo, hi = np.quantile(finite, [tail, 1 - tail])
    return Estimate(value, (float(lo), float(hi)), float(np.mean(finite > 0)))


def _break_even(arm: Mapping[str, Array], ref: Mapping[str, Array]) -> float | None:
    """Units lift at which the arm earns what the reference earns per randomised unit, at the arm's
    measured margin and gift cost per unit sold (so net profit is zero exactly there)."""
    per_sale = arm["margin"] - arm["gifts"]
    margin = float(_per_sale(per_sale, arm["units"])[0])
    price_paid = float(_per_sale(arm["revenue"], arm["units"])[0])
    if abs(margin) <= 1e-9 * abs(price_paid):  # a zero margin up to rounding: the arm never pays
        margin = 0.0
    cost = float((arm["contact"] + arm["fixed"] + arm["media"])[0])
    lift = break_even_lift(margin, cost, float(ref["profit"][0]), float(ref["units"][0]))
    return lift if lift is not None and math.isfinite(lift) else None


def mechanic_of(variant: AnyVariant) -> str:
    """The promotion mechanic of an arm: a discount mechanic, or the arm's kind."""
    return str(getattr(variant, "mechanic", variant.kind))
