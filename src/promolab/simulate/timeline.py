"""Order rows on a time and product axis: a pre-period, the promotion, the weeks after it, and product
categories, with pull-forward, cannibalisation and halo effects that tests can recover.

Used for the orders tables of a spec with ``data.timestamp`` and ``pre_days``, ``economics.promoted``,
``simulation.categories`` or a pull-forward, cannibalisation or halo effect. Each unit orders as a
Poisson process: its expected orders over the promotion's ``D`` days are
``m_u = purchase_prob * orders_per_buyer * propensity_u`` (mean over units about
``purchase_prob * orders_per_buyer``); the pre-period uses the unit's pre-period propensity (correlated
``pre_corr`` with the in-period one, so CUPED has something to remove). A day of window ``w`` and a
category ``c`` of reference share ``s_c`` have the rate ``m_u / D * s_c * k`` with the arm's multiplier
``k`` (1 in the reference arm and in the pre-period); with ``b`` = the arm's ``conversion`` lift, ``S_p``,
``S_s``, ``S_o`` the shares of promoted, substitute and other categories:

- promoted during: ``1 + b`` (every category when no products are promoted);
- substitutes during: ``1 - cannibalisation * b * S_p / S_s`` (they lose that share of the extra
  promoted orders);
- other during: ``1 + halo``;
- post (every category): ``1 - pull_forward * D * E / post_days``, ``E = S_p b - (S_s extra loss) +
  S_o halo`` the extra orders per day during the promotion: the post window loses ``pull_forward`` of
  the bump. Multipliers are clipped at 0.

A week of orders after the post window (dated outside every analysed window, the reference's rates)
checks that the analysis leaves them out. An order's list value is
``price * LogNormal(log(units_median), units_sigma)`` (times the basket lift during the promotion);
the arm's offer applies to its promoted orders during the promotion only.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import numpy as np

from promolab.simulate.offers import priced_orders
from promolab.spec.models import ExperimentSpec, SimEffect, Simulation


class ArmParameters(Protocol):
    """Per-arm parameters indexed by the arm's position in ``spec.variants``."""

    @property
    def price(self) -> np.ndarray: ...
    @property
    def basket_mult(self) -> np.ndarray: ...
    @property
    def redemption(self) -> np.ndarray: ...
    @property
    def effects(self) -> list[SimEffect]: ...


OTHER = "other"
AFTER_DAYS = 7  # rows dated after every analysed window (the analysis must leave them out)
PROMOTED_SHARE, SUBSTITUTE_SHARE = 0.3, 0.2  # default category shares with economics.promoted


def applies(spec: ExperimentSpec, params: Simulation) -> bool:
    """The spec's orders are simulated on the time and product axes (module docstring)."""
    if spec.data.timestamp is None:
        return False
    promoted = spec.economics is not None and spec.economics.promoted is not None
    effects = any(e.pull_forward or e.cannibalisation or e.halo for e in params.effects.values())
    return spec.pre_days > 0 or promoted or bool(params.categories) or effects


def category_column(spec: ExperimentSpec) -> str:
    promoted = spec.economics.promoted if spec.economics is not None else None
    return promoted.column if promoted is not None else "category"


def category_shares(spec: ExperimentSpec, params: Simulation) -> dict[str, float]:
    """Reference share of each category's orders: ``simulation.categories``, else 30% promoted, 20%
    substitutes and the rest ``other`` (one unnamed category without promoted products)."""
    if params.categories:
        return dict(params.categories)
    promoted = spec.economics.promoted if spec.economics is not None else None
    if promoted is None:
        return {}
    shares = {str(v): PROMOTED_SHARE / len(promoted.in_) for v in promoted.in_}
    shares |= {str(v): SUBSTITUTE_SHARE / len(promoted.substitutes) for v in promoted.substitutes}
    shares[OTHER] = 1 - sum(shares.values())
    return shares


def groups(spec: ExperimentSpec, shares: dict[str, float]) -> dict[str, str]:
    """Category -> ``promoted``, ``substitutes`` or ``other`` (every category is promoted when no
    products are named)."""
    promoted = spec.economics.promoted if spec.economics is not None else None
    if promoted is None:
        return dict.fromkeys(shares or [""], "promoted")
    named = {str(v): "promoted" for v in promoted.in_} | {str(v): "substitutes" for v in promoted.substitutes}
    return {c: named.get(c, "other") for c in shares}


def multipliers(
    effect: SimEffect, shares: dict[str, float], grouped: dict[str, str], during: int, post: int
) -> dict[str, dict[str, float]]:
    """Window -> category -> rate multiplier of an arm with ``effect`` (module docstring)."""
    share = {
        g: sum(shares.get(c, 1.0) for c, k in grouped.items() if k == g)
        for g in ("promoted", "substitutes", "other")
    }
    b = effect.conversion
    lost = effect.cannibalisation * b * share["promoted"]
    by_group = {
        "promoted": 1 + b,
        "substitutes": 1 - lost / share["substitutes"] if share["substitutes"] else 1.0,
        "other": 1 + effect.halo,
    }
    extra = share["promoted"] * b - (lost if share["substitutes"] else 0.0) + share["other"] * effect.halo
    after = 1 - effect.pull_forward * during * extra / post if post else 1.0
    return {
        "pre": dict.fromkeys(grouped, 1.0),
        "during": {c: max(by_group[g], 0.0) for c, g in grouped.items()},
        "post": dict.fromkeys(grouped, max(after, 0.0)),
    }


def orders(
    spec: ExperimentSpec,
    params: Simulation,
    arm: np.ndarray,
    propensity: np.ndarray,
    pre_propensity: np.ndarray,
    arms: ArmParameters,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Order rows (``owner`` 0-based, ``ts``, ``quantity``, ``amount``, ``discount``, ``redeemed``, the
    category column when there are categories, and ``_window``: pre, during, post or after) of every
    unit in every window."""
    shares = category_shares(spec, params)
    grouped = groups(spec, shares)
    during, post = (spec.end - spec.start).days + 1, spec.post_days
    days = {"pre": spec.pre_days, "during": during, "post": post, "after": AFTER_DAYS}
    first = {
        "pre": spec.start - dt.timedelta(days=spec.pre_days),
        "during": spec.start,
        "post": spec.end + dt.timedelta(days=1),
        "after": spec.end + dt.timedelta(days=post + 1),
    }
    per_day = params.purchase_prob * params.orders_per_buyer / during
    table = [multipliers(e, shares, grouped, during, post) for e in arms.effects]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("owner", "ts", "category", "window")}
    for window, length in days.items():
        base = (pre_propensity if window == "pre" else propensity) * per_day * length
        for category in grouped:
            multiplier = np.array([t.get(window, t["pre"])[category] for t in table])  # after: as before
            factor = multiplier[arm] * shares.get(category, 1.0)
            counts = rng.poisson(base * factor)
            owner = np.repeat(np.arange(len(arm)), counts)
            seconds = rng.integers(0, max(length, 1) * 86_400, size=len(owner))
            start = np.datetime64(dt.datetime.combine(first[window], dt.time()), "s")
            parts["owner"].append(owner)
            parts["ts"].append(start + seconds.astype("timedelta64[s]"))
            parts["category"].append(np.full(len(owner), category, dtype=object))
            parts["window"].append(np.full(len(owner), window, dtype=object))
    owner = np.concatenate(parts["owner"])
    windows = np.concatenate(parts["window"])
    categories = np.concatenate(parts["category"])
    order_arm = arm[owner]
    price = arms.price[order_arm]
    promoted = np.array([grouped[c] == "promoted" for c in categories], dtype=bool)
    offered = (windows == "during") & promoted
    basket = np.where(windows == "during", arms.basket_mult[order_arm], 1.0)
    units = rng.lognormal(np.log(params.units_median), params.units_sigma, size=len(owner))
    list_amount = price * units * basket
    takes_offer = offered & (rng.random(len(owner)) < arms.redemption[order_arm])
    priced = priced_orders(spec.variants, order_arm, list_amount, arms.price, takes_offer)
    found = {"owner": owner, "ts": np.concatenate(parts["ts"]), **priced, "_window": windows}
    if shares:
        found[category_column(spec)] = categories.astype(str)
    return found
