"""What each arm's offer does to an order: the discount given and whether it was redeemed.

All amounts are in the spec's currency. ``list_amount`` is the order value at list price; the
customer pays ``list_amount - discount``. Gift and free-shipping offers cost the company money but
give no price discount, so their ``discount`` is 0 and only ``redeemed`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from promolab.spec.models import AmountOff, AnyVariant, Bogo, Bundle, Coupon, PercentOff


class OfferOutcome(NamedTuple):
    discount: np.ndarray  # currency per order, 0 <= discount <= list_amount
    redeemed: np.ndarray  # bool per order


def apply_offer(
    variant: AnyVariant,
    list_amount: np.ndarray,
    quantity: np.ndarray,
    unit_price: float,
    takes_offer: np.ndarray,
) -> OfferOutcome:
    """Discount and redemption per order for ``variant``.

    ``takes_offer`` marks orders whose customer uses the offer if eligible (the arm's redemption
    rate); eligibility (minimum spend, enough units for BOGO or a bundle) is decided here.
    """
    if variant.kind != "discount":
        return OfferOutcome(np.zeros_like(list_amount), np.zeros(list_amount.shape, dtype=bool))
    eligible, discount = _eligible_discount(variant, list_amount, quantity, unit_price)
    redeemed = takes_offer & eligible
    return OfferOutcome(np.where(redeemed, np.minimum(discount, list_amount), 0.0), redeemed)


def _eligible_discount(
    variant: AnyVariant, list_amount: np.ndarray, quantity: np.ndarray, unit_price: float
) -> tuple[np.ndarray, np.ndarray]:
    everyone = np.ones(list_amount.shape, dtype=bool)
    if isinstance(variant, PercentOff):
        return everyone, list_amount * variant.value / 100
    if isinstance(variant, AmountOff | Coupon):
        floor = variant.min_spend if variant.min_spend is not None else 0.0
        return list_amount >= floor, np.full(list_amount.shape, variant.value)
    if isinstance(variant, Bogo):
        sets = quantity // (variant.buy + variant.get)
        return sets > 0, sets * variant.get * unit_price
    if isinstance(variant, Bundle):
        bundles = quantity // variant.items
        saving = max(variant.items * unit_price - variant.bundle_price, 0.0)
        return bundles > 0, bundles * saving
    return everyone, np.zeros_like(list_amount)  # gift, free shipping: a cost, not a price cut


def priced_orders(
    variants: Sequence[AnyVariant],
    order_arm: np.ndarray,
    list_amount: np.ndarray,
    prices: np.ndarray,
    takes_offer: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each order's ``quantity`` (list amount over its arm's price, at least 1), the ``amount`` paid,
    the ``discount`` and whether the offer was ``redeemed``, under its arm's offer (``order_arm``: the
    arm's position in ``variants``; ``prices``: each arm's list price)."""
    quantity = np.maximum(1, np.rint(list_amount / prices[order_arm])).astype(np.int64)
    discount = np.zeros(len(order_arm))
    redeemed = np.zeros(len(order_arm), dtype=bool)
    for index, variant in enumerate(variants):
        rows = order_arm == index
        outcome = apply_offer(
            variant, list_amount[rows], quantity[rows], float(prices[index]), takes_offer[rows]
        )
        discount[rows], redeemed[rows] = outcome.discount, outcome.redeemed
    return {
        "quantity": quantity,
        "amount": np.round(list_amount - discount, 2),
        "discount": np.round(discount, 2),
        "redeemed": redeemed,
    }
