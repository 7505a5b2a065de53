"""Money of a rollout: the effect on units sold turned into revenue, margin, cost and ROI.

The units metric (``economics.units``, else the primary) is units sold. With ``T`` the effect on units
over the measured windows (``total``: the promotion and its post window, so net of the dip), ``T_d``
over the promotion, ``A`` the units the treated units sold during the promotion, ``p`` the list price
(``unit_price``), ``c`` the unit cost, and from the promotion's mechanic ``d`` the price cut and ``g``
the other cost per unit sold (gifts, shipping; per order / ``units_per_order``)::

    incremental units    = T
    incremental revenue  = p T - d A                  (units sold during the promotion paid p - d)
    incremental margin   = (p - c) T - (d + g) A
    promotion cost       = (d + g) A + k n + fixed + media      (k: cost per treated unit, n units)
    subsidy              = (d + g) (A - T_d)          (given on the units that would have sold anyway)
    net profit           = incremental margin - k n - fixed - media
    ROI = net profit / promotion cost;  iROAS = incremental revenue / media

Everything but ``T`` and ``T_d`` is known, so each quantity is linear in one effect and its interval
is the effect's interval mapped through it (ROI's too: its cost is known).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from promolab.analyze.rollout import RolloutAnalysis
from promolab.design.breakeven import arm_economics
from promolab.economics.promotion import Estimate, mechanic_of
from promolab.errors import DataError
from promolab.spec.rollout import RolloutSpec


@dataclass(frozen=True)
class RolloutEconomics:
    """The promotion's money over its measured windows, each with its interval."""

    currency: str
    mechanic: str
    units_metric: str
    window: str  # the window money is counted over: "total" (net of the dip) or "during"
    quantities: dict[str, Estimate]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "quantities": {k: asdict(v) for k, v in self.quantities.items()}}


def rollout_economics(spec: RolloutSpec, analysis: RolloutAnalysis) -> RolloutEconomics | None:
    """The money of the rollout, or None without economics or a unit price."""
    econ = spec.economics
    if econ is None or econ.unit_price is None:
        return None
    metric = spec.units_metric
    window: Literal["total", "during"] = "total" if analysis.result(metric, "post") is not None else "during"
    net, during = analysis.result(metric, window), analysis.result(metric, "during")
    if net is None or during is None:
        raise DataError(
            f"the analysis of {analysis.experiment} has no '{metric}' effect over the {window} window; "
            "rerun promolab analyze"
        )
    arm = arm_economics(spec.promotion, econ, econ.unit_price, units=1)
    price, cut = econ.unit_price, arm.price_cut + (econ.unit_price - arm.price)
    extra = arm.cost_per_unit_sold - arm.price_cut
    margin = price - (econ.unit_cost or 0.0)
    sold = during.actual
    per_unit = (cut + extra) * sold
    fixed = econ.fixed_cost.get(spec.promotion.id, 0.0)
    media = econ.media_cost.get(spec.promotion.id, 0.0)
    overhead = arm.contact_cost * net.units + fixed + media
    cost = per_unit + overhead

    def linear(slope: float, offset: float, effect: float, ci: tuple[float, float] | None) -> Estimate:
        interval = None if ci is None else tuple(sorted((slope * ci[0] + offset, slope * ci[1] + offset)))
        return Estimate(slope * effect + offset, interval)  # type: ignore[arg-type]

    quantities = {
        "incremental_units": linear(1.0, 0.0, net.total, net.total_ci),
        "incremental_revenue": linear(price, -cut * sold, net.total, net.total_ci),
        "incremental_margin": linear(margin, -per_unit, net.total, net.total_ci),
        "promotion_cost": Estimate(cost),
        "subsidy": linear(-(cut + extra), per_unit, during.total, during.total_ci),
        "net_profit": linear(margin, -per_unit - overhead, net.total, net.total_ci),
    }
    notes = [
        f"'{metric}' is read as units sold (economics.units, else the primary metric); money is counted "
        f"over the {'promotion and its post window (net of the dip)' if window == 'total' else 'promotion'}."
    ]
    if cost > 0:
        quantities["roi"] = linear(margin / cost, (-per_unit - overhead) / cost, net.total, net.total_ci)
    if media > 0:
        quantities["iroas"] = linear(price / media, -cut * sold / media, net.total, net.total_ci)
    if econ.unit_cost is None:
        notes.append("No unit_cost: margin is counted as revenue (unit cost 0).")
    return RolloutEconomics(econ.currency, mechanic_of(spec.promotion), metric, window, quantities, notes)
