"""Break-even lift of a promotion and the cost of testing it (planning-time economics).

Per randomised unit over the test window, with list price ``p``, unit cost ``c`` and ``u0`` units
sold per unit in the reference arm, an arm's profit is::

    profit = u0 * (1 + L) * (p - d - c) - k

where ``d`` is the arm's promotion cost per unit sold (discount, free units, gift or shipping cost
per order / units_per_order; for a price point, ``p_ref - p``) and ``k`` the cost per randomised
unit that does not scale with sales (cost per contact, plus fixed and media cost spread over the
arm's units). The break-even lift ``L*`` in units sold makes the arm's profit equal the reference
arm's: for a pure per-unit discount, ``L* = d / (p - c - d)`` (20% off on a 40% margin: +100%).

The subsidy during the test is what the discount gives to customers who would have bought anyway:
``n_arm * u0 * d``; the test cost adds contact, fixed and media costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from promolab.spec.models import (
    AnyVariant,
    Economics,
)


@dataclass(frozen=True)
class ArmEconomics:
    """Per-unit economics of one arm (currency of the spec)."""

    price: float  # list price per unit sold
    cost_per_unit_sold: float  # d: promotion cost per unit sold
    price_cut: float = 0.0  # part of d the customer sees as a lower price (not gifts or shipping)
    contact_cost: float = 0.0  # cost per randomised unit (cost per contact)
    fixed_cost: float = 0.0  # fixed + media cost of the arm
    spread_units: int = 1  # units the fixed cost is spread over

    @property
    def cost_per_unit(self) -> float:
        """k: cost per randomised unit that does not scale with sales."""
        return self.contact_cost + self.fixed_cost / self.spread_units


@dataclass(frozen=True)
class BreakEven:
    """Break-even lift of one arm, and what testing it costs."""

    relative_lift: float | None  # L* in units sold; None when the arm can never pay (margin <= 0)
    subsidy: float  # discount given during the test to customers who would have bought anyway
    test_cost: float  # subsidy + contact + fixed + media cost of the arm during the test


def arm_economics(
    variant: AnyVariant, economics: Economics, reference_price: float, units: int
) -> ArmEconomics:
    """Price, per-unit-sold cost and per-randomised-unit cost of ``variant``.

    ``units`` spreads the arm's fixed and media costs (``economics.horizon_units`` when given).
    """
    price = variant.list_price(reference_price)
    cut = variant.price_cut(reference_price, economics.units_per_order)
    return ArmEconomics(
        price=price,
        cost_per_unit_sold=cut + variant.cost_per_redeemed_order() / economics.units_per_order,
        price_cut=cut,
        contact_cost=variant.cost_per_randomised_unit(),
        fixed_cost=economics.fixed_cost.get(variant.id, 0.0) + economics.media_cost.get(variant.id, 0.0),
        spread_units=economics.horizon_units or units,
    )


def paid_revenue_lift(arm: ArmEconomics, reference: ArmEconomics, units_lift: float) -> float:
    """Relative change in revenue paid per unit when units sold change by ``units_lift``."""
    return (1 + units_lift) * (arm.price - arm.price_cut) / (reference.price - reference.price_cut) - 1


def break_even_lift(
    margin_per_unit_sold: float, cost_per_unit: float, reference_profit: float, units0: float
) -> float | None:
    """``L*`` solving ``u0 (1 + L) m - k = profit_ref``: the units lift at which the arm earns what the
    reference arm earns per randomised unit (``m`` margin per unit sold after the promotion's per-unit
    costs, ``k`` cost per randomised unit). None when the arm can never pay (``m <= 0``, no sales)."""
    if not margin_per_unit_sold > 0 or not units0 > 0:
        return None
    return (reference_profit + cost_per_unit) / (units0 * margin_per_unit_sold) - 1


def break_even(
    arm: ArmEconomics, reference: ArmEconomics, unit_cost: float, units_sold: float, n_arm: int
) -> BreakEven:
    """Break-even lift of ``arm`` against ``reference`` with ``units_sold`` units per unit (u0).

    >>> ref = ArmEconomics(price=40, cost_per_unit_sold=0)
    >>> pct20 = ArmEconomics(price=40, cost_per_unit_sold=8)
    >>> break_even(pct20, ref, unit_cost=24, units_sold=1.0, n_arm=1000).relative_lift  # 20% off, 40% margin
    1.0
    """
    margin = arm.price - arm.cost_per_unit_sold - unit_cost
    reference_profit = (
        units_sold * (reference.price - reference.cost_per_unit_sold - unit_cost) - reference.cost_per_unit
    )
    lift = break_even_lift(margin, arm.cost_per_unit, reference_profit, units_sold)
    below_reference = max(reference.price - arm.price, 0.0)  # a lower price point is a discount too
    subsidy = n_arm * units_sold * (arm.cost_per_unit_sold + below_reference)
    test_cost = subsidy + n_arm * arm.contact_cost + arm.fixed_cost
    return BreakEven(relative_lift=lift, subsidy=subsidy, test_cost=test_cost)
