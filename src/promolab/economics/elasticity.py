"""Price response of a price-point test: demand, revenue and profit per price, and price elasticities.

Input per arm ``k`` (sufficient statistics): list price ``p_k`` (currency per unit sold), ``n_k``
randomised units, mean units sold per randomised unit ``q_k`` and its sample variance ``var_k``
(ddof 1). Arms are independent; every interval is normal-based at level ``confidence``, with
``z = Phi^-1(1/2 + confidence/2)`` and ``se_k = sqrt(var_k / n_k)`` the standard error of ``q_k``.

- Demand: ``q_k +- z se_k``. Revenue ``R_k`` per randomised unit: the measured revenue paid when
  given (with its variance and covariance with units sold), else ``p_k q_k``; profit ``R_k - c q_k``
  (``c`` the unit cost) with ``Var = (Var R + c^2 var_k - 2 c Cov(R, q)) / n_k``.
- Arc (midpoint) elasticity between adjacent prices ``p1 < p2``::

      E = ((q2 - q1) / ((q1 + q2) / 2)) / ((p2 - p1) / ((p1 + p2) / 2))
        = K (q2 - q1) / (q1 + q2),   K = (p1 + p2) / (p2 - p1)

  with the delta-method variance ``(dE/dq1)^2 se_1^2 + (dE/dq2)^2 se_2^2`` (independent arms),
  ``dE/dq1 = -2 K q2 / (q1 + q2)^2`` and ``dE/dq2 = 2 K q1 / (q1 + q2)^2``.
- Log-log elasticity: the slope ``b`` of the weighted least-squares line of ``y_k = log q_k`` on
  ``x_k = log p_k`` with weights ``w_k = 1 / Var(log q_k)``, ``Var(log q_k) ~ var_k / (n_k q_k^2)``
  (delta method)::

      b = sum w (x - xbar)(y - ybar) / S,   S = sum w (x - xbar)^2,   Var(b) = 1 / S

  (``xbar``, ``ybar`` weighted means). The variances are taken as known: ``Var(b)`` is not rescaled
  by the residual chi-square, so departures from a constant elasticity do not widen the interval.
  With 2 prices the line passes through both points and ``b = (log q2 - log q1) / (log p2 - log p1)``.
  With 3 or more prices the residual sum ``sum w (y - a - b x)^2`` is a chi-square with ``k - 2`` df
  under constant elasticity and could be reported as a lack-of-fit test; it is not computed here.
- ``prob_profit_max``: ``draws`` independent normal draws of every arm's mean profit per
  randomised unit (seeded ``numpy`` Generator), and the share of draws in which each price has the
  highest profit. The shares sum to 1; their Monte Carlo
  standard error is at most ``sqrt(0.25 / draws)`` (0.0035 at 20,000 draws).

The delta-method intervals need every ``q_k`` many standard errors from 0 (coefficient of variation
``se_k / q_k`` below ~0.1); at larger values the log and ratio linearisations understate the width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from promolab.errors import DataError, Problem
from promolab.stats.estimators import quantile


@dataclass(frozen=True)
class PricePoint:
    """Sufficient statistics of one price arm."""

    id: str  # variant id
    price: float  # list price per unit sold (currency)
    n: int  # randomised units in the arm
    demand: float  # mean units sold per randomised unit
    demand_var: float  # sample variance (ddof 1) of units sold per randomised unit
    revenue: float | None = None  # mean revenue paid per randomised unit (default: price x demand)
    revenue_var: float | None = None  # its sample variance (ddof 1)
    revenue_demand_cov: float | None = None  # sample covariance of revenue paid and units sold

    def profit_law(self, unit_cost: float) -> tuple[float, float, float, float]:
        """Revenue, its standard error, profit ``R - c q`` and its standard error (per randomised unit)."""
        if self.revenue is None or self.revenue_var is None or self.revenue_demand_cov is None:
            revenue, revenue_var, cov = self.price * self.demand, self.price**2 * self.demand_var, None
        else:
            revenue, revenue_var, cov = self.revenue, self.revenue_var, self.revenue_demand_cov
        covariance = self.price * self.demand_var if cov is None else cov
        profit_var = revenue_var + unit_cost**2 * self.demand_var - 2 * unit_cost * covariance
        return (
            revenue,
            math.sqrt(revenue_var / self.n),
            revenue - unit_cost * self.demand,
            math.sqrt(max(profit_var, 0.0) / self.n),
        )


@dataclass(frozen=True)
class PriceRow:
    """One tested price: demand, revenue and profit per randomised unit with intervals."""

    id: str
    price: float
    demand: float
    demand_ci: tuple[float, float]
    revenue: float  # revenue paid per randomised unit (price * demand when not measured)
    revenue_ci: tuple[float, float]
    profit: float  # revenue - unit_cost * demand
    profit_ci: tuple[float, float]
    prob_profit_max: float  # P(this price has the highest expected profit)


@dataclass(frozen=True)
class ArcElasticity:
    """Midpoint elasticity between two adjacent tested prices (``low`` has the lower price)."""

    low: str
    high: str
    elasticity: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class PriceResponse:
    """Rows sorted by price, arc elasticities between neighbours, and the log-log elasticity."""

    rows: list[PriceRow]
    arcs: list[ArcElasticity]
    loglog: float  # slope of log demand on log price
    loglog_ci: tuple[float, float]
    loglog_method: str  # one sentence: how it was estimated

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (intervals as 2-item lists)."""
        return _with_lists(asdict(self))


def price_response(
    points: Sequence[PricePoint],
    unit_cost: float,
    confidence: float = 0.95,
    draws: int = 20_000,
    seed: int = 0,
) -> PriceResponse:
    """Demand, revenue, profit and elasticities of a price-point test (formulas in the module docstring).

    Args:
        points: one per tested price, in any order.
        unit_cost: cost per unit sold (currency), for profit.
        confidence: interval level, e.g. 0.95.
        draws: normal draws per arm for ``prob_profit_max``.
        seed: seed of the ``numpy`` Generator behind those draws.

    Raises:
        DataError: fewer than 2 points; a price, demand or demand variance that is not > 0;
            ``n < 2``; two points with the same price. Every problem is reported at once.

    >>> result = price_response(
    ...     [PricePoint("a", 40.0, 1000, 0.5, 0.8), PricePoint("b", 50.0, 2000, 0.3, 0.5)], unit_cost=20.0
    ... )
    >>> round(result.arcs[0].elasticity, 12), round(result.loglog, 4)
    (-2.25, -2.2892)
    """
    _check(points)
    ordered = sorted(points, key=lambda point: point.price)
    z = quantile(0.5 + confidence / 2, None)
    se = [math.sqrt(point.demand_var / point.n) for point in ordered]
    shares = _prob_profit_max(ordered, unit_cost, draws, seed)
    rows = [_row(point, s, unit_cost, z, share) for point, s, share in zip(ordered, se, shares, strict=True)]
    arcs = [
        _arc(low, high, se_low, se_high, z)
        for low, high, se_low, se_high in zip(ordered, ordered[1:], se, se[1:], strict=False)
    ]
    slope, slope_se = _loglog(ordered)
    method = (
        f"Weighted least squares of log demand on log price over {len(ordered)} prices with weights "
        "n q^2 / var (delta method), standard error from these known variances without residual "
        "rescaling, normal interval."
    )
    return PriceResponse(rows, arcs, slope, (slope - z * slope_se, slope + z * slope_se), method)


def _check(points: Sequence[PricePoint]) -> None:
    if len(points) < 2:
        ids = ", ".join(repr(point.id) for point in points)
        raise DataError(f"price points: need at least 2 tested prices, got {len(points)} ({ids or 'none'})")
    problems = []
    first_at: dict[float, PricePoint] = {}
    for k, point in enumerate(points):
        where = ("points", k)
        for field, value in (("price", point.price), ("demand", point.demand)):
            if not value > 0:  # also catches NaN
                problems.append(Problem((*where, field), f"variant '{point.id}': must be > 0, got {value}"))
        if not point.demand_var > 0:
            problems.append(
                Problem(
                    (*where, "demand_var"),
                    f"variant '{point.id}': must be > 0 (zero variance leaves no interval), "
                    f"got {point.demand_var}",
                )
            )
        if point.n < 2:
            problems.append(Problem((*where, "n"), f"variant '{point.id}': must be >= 2, got {point.n}"))
        other = first_at.setdefault(point.price, point)
        if other is not point:
            problems.append(
                Problem(
                    (*where, "price"),
                    f"variant '{point.id}': price {point.price} repeats variant '{other.id}'; "
                    "each tested price needs its own arm",
                )
            )
    if problems:
        raise DataError([problem.render() for problem in problems])


def _row(point: PricePoint, se: float, unit_cost: float, z: float, share: float) -> PriceRow:
    revenue, revenue_se, profit, profit_se = point.profit_law(unit_cost)
    return PriceRow(
        id=point.id,
        price=point.price,
        demand=point.demand,
        demand_ci=(point.demand - z * se, point.demand + z * se),
        revenue=revenue,
        revenue_ci=(revenue - z * revenue_se, revenue + z * revenue_se),
        profit=profit,
        profit_ci=(profit - z * profit_se, profit + z * profit_se),
        prob_profit_max=share,
    )


def _arc(low: PricePoint, high: PricePoint, se_low: float, se_high: float, z: float) -> ArcElasticity:
    q1, q2 = low.demand, high.demand
    k = (low.price + high.price) / (high.price - low.price)
    total = q1 + q2
    elasticity = k * (q2 - q1) / total
    grad_q1 = -2 * k * q2 / total**2
    grad_q2 = 2 * k * q1 / total**2
    se = math.hypot(grad_q1 * se_low, grad_q2 * se_high)
    return ArcElasticity(low.id, high.id, elasticity, (elasticity - z * se, elasticity + z * se))


def _loglog(points: Sequence[PricePoint]) -> tuple[float, float]:
    """WLS slope of log demand on log price and its standard error ``1 / sqrt(S)`` (known variances)."""
    x = np.log([point.price for point in points])
    y = np.log([point.demand for point in points])
    w = np.array([point.n * point.demand**2 / point.demand_var for point in points])
    dx = x - np.average(x, weights=w)
    dy = y - np.average(y, weights=w)
    s = float(w @ dx**2)
    return float(w @ (dx * dy)) / s, 1 / math.sqrt(s)


def _prob_profit_max(points: Sequence[PricePoint], unit_cost: float, draws: int, seed: int) -> list[float]:
    laws = [point.profit_law(unit_cost) for point in points]
    profit = np.array([law[2] for law in laws])
    se = np.array([law[3] for law in laws])
    rng = np.random.default_rng(seed)
    best = np.argmax(profit + se * rng.standard_normal((draws, len(points))), axis=1)
    return [float(count) / draws for count in np.bincount(best, minlength=len(points))]


def _with_lists(value: Any) -> Any:
    """``value`` with every tuple turned into a list, recursively (JSON arrays)."""
    if isinstance(value, dict):
        return {key: _with_lists(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_with_lists(item) for item in value]
    return value
