"""Simulated experiment data for any spec: units, assignments, orders, surveys and event tables.

The model (docs/cli.md "Simulator" has the full description):

- Each unit has a latent pre-period score ``z_pre`` and an in-period score
  ``z_in = pre_corr * z_pre + sqrt(1 - pre_corr^2) * e``, both N(0, 1). The in-period propensity is
  ``min(exp(h * z_in - h^2 / 2) * store effect, 8) / E[min(exp(h * z - h^2 / 2), 8)]``
  (``h`` = heterogeneity; mean 1; the cap at 8x the average keeps probabilities below 1).
- P(purchase) = purchase_prob * propensity * (1 + conversion lift) * (price / ref_price)^elasticity.
  Configured lifts hold exactly while purchase_prob * (1 + lift) * 8 / E[...] <= 1 (a rate x lift
  up to about 0.12 at h = 1); beyond that probabilities are clipped at 1 and lifts shrink a little.
- A buyer places 1 + Poisson(orders_per_buyer - 1) orders; each order's list value is
  price * LogNormal(log(units_median), units_sigma) * (1 + basket lift): heavy-tailed, with many
  zero-spend units. Offers then discount redeemed orders (see :mod:`promolab.simulate.offers`).
- Survey scores: a random ``survey_rate`` of units answer; latent N(score shift, 1) cut into the
  ordinal levels so the reference arm's shares rise with the level; dated (uniform over the test and post
  window) when the spec has ``data.timestamp``.

Every component draws from its own seeded stream, so a table's values do not change when another
table is added to the spec.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import stats

from promolab.simulate import timeline
from promolab.simulate.offers import priced_orders
from promolab.spec.models import (
    UNITS_SOURCE,
    BinaryMetric,
    ContinuousMetric,
    CountMetric,
    ExperimentSpec,
    OrdinalMetric,
    PricePointVariant,
    SimEffect,
    SimTable,
    Simulation,
)

CHANNELS = ("email", "paid_social", "paid_search", "store", "push")
CHANNEL_SHARES = (0.4, 0.2, 0.15, 0.15, 0.1)
REGIONS = ("north", "south", "east", "west")
STANDARD_COVARIATES = ("pre_revenue", "frequency", "recency_days", "channel", "region", "store_id")
PRE_ORDERS_MEAN = 2.0  # pre-period orders of an average unit
RECENCY_MEAN_DAYS = 60.0
PROPENSITY_CAP = 8.0  # in-period propensity is capped at 8x the average unit's


@dataclass(frozen=True)
class SimulatedData:
    """Simulated tables by name: ``assignments``, ``units`` and each of the spec's data tables."""

    tables: dict[str, pa.Table]

    def frame(self, name: str) -> Any:
        """One table as a pandas DataFrame."""
        return self.tables[name].to_pandas()


@dataclass(frozen=True)
class _Arms:
    """Per-arm parameters, indexed by the arm's position in ``spec.variants``."""

    price: np.ndarray
    purchase_mult: np.ndarray
    basket_mult: np.ndarray
    redemption: np.ndarray
    score_shift: np.ndarray
    effects: list[SimEffect]


def simulate(spec: ExperimentSpec, units: int, seed: int) -> SimulatedData:
    """Simulate ``units`` units of the experiment; deterministic for ``seed``."""
    if units < len(spec.variants):
        raise ValueError(f"units must be at least the number of arms ({len(spec.variants)}), got {units}")
    params = spec.simulation or Simulation()
    arms = _arm_parameters(spec, params)
    arm = _stream(seed, "assignment").choice(
        len(spec.variants), size=units, p=[v.weight for v in spec.variants]
    )
    z_pre, propensity, store_id = _latent(params, units, _stream(seed, "latent"))
    covariates, pre_orders = _covariates(spec, params, z_pre, store_id, _stream(seed, "pre-period"))
    if timeline.applies(spec, params):
        pre = _propensity(params.heterogeneity, z_pre)
        orders = timeline.orders(spec, params, arm, propensity, pre, arms, _stream(seed, "orders"))
        during = {k: v[orders["_window"] == "during"] for k, v in orders.items()}
        buyer = np.bincount(during["owner"], minlength=units) > 0
    else:
        buyer = _stream(seed, "purchase").random(units) < np.clip(
            params.purchase_prob * propensity * arms.purchase_mult[arm], 0, 1
        )
        orders = during = _orders(spec, params, arms, arm, buyer, _stream(seed, "orders"))
    per_unit = _per_unit_outcomes(spec, params, arms, arm, propensity, buyer, during, seed)
    event_counts: dict[str, np.ndarray] = {}
    tables = {
        name: pre_orders
        if kind.kind == "pre_orders"
        else _table(spec, name, kind, orders, event_counts, arm, arms, params, seed)
        for name, kind in _table_kinds(spec, params).items()
    }
    tables["units"] = _units_table(spec, arm, covariates, per_unit, units)
    tables["assignments"] = pa.table(
        {spec.data.unit_id: np.arange(1, units + 1), spec.data.variant_column: _labels(spec, arm)}
    )
    return SimulatedData(tables)


def _stream(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# --------------------------------------------------------------------------- arms and population


def _arm_parameters(spec: ExperimentSpec, params: Simulation) -> _Arms:
    default_price = _item_price(spec, params)
    prices = np.array([v.price if isinstance(v, PricePointVariant) else default_price for v in spec.variants])
    ref = spec.reference
    ref_price = ref.price if isinstance(ref, PricePointVariant) else default_price
    price_factor = (prices / ref_price) ** params.price_elasticity
    effects = [params.effects.get(v.id, SimEffect()) for v in spec.variants]
    return _Arms(
        price=prices,
        purchase_mult=np.array([1 + e.conversion for e in effects]) * price_factor,
        basket_mult=np.array([1 + e.basket for e in effects]),
        redemption=np.array([e.redemption for e in effects]),
        score_shift=np.array([e.score for e in effects]),
        effects=effects,
    )


def _latent(
    params: Simulation, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre-period score, in-period propensity (mean 1) and store id of each unit."""
    h, rho = params.heterogeneity, params.pre_corr
    z_pre = rng.standard_normal(n)
    z_in = rho * z_pre + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    store_id = rng.integers(1, params.clusters + 1, size=n)
    store_log = rng.normal(0.0, params.cluster_sd, size=params.clusters + 1)
    store_mult = np.exp(store_log - params.cluster_sd**2 / 2)
    return z_pre, _propensity(h, z_in, store_mult[store_id]), store_id


def _propensity(h: float, z: np.ndarray, store: np.ndarray | float = 1.0) -> np.ndarray:
    """``min(exp(h z - h^2 / 2) * store, cap) / E[min(exp(h Z - h^2 / 2), cap)]`` (mean about 1)."""
    raw = np.exp(h * z - h**2 / 2) * store
    return np.minimum(raw, PROPENSITY_CAP) / _capped_mean(h, PROPENSITY_CAP)


def _capped_mean(h: float, cap: float) -> float:
    """E[min(X, cap)] for X = exp(h Z - h^2/2), Z ~ N(0, 1): Phi(k - h) + cap * (1 - Phi(k)).

    with k = (log(cap) + h^2 / 2) / h; equals 1 when h = 0.
    """
    if h == 0:
        return min(1.0, cap)
    k = (np.log(cap) + h**2 / 2) / h
    return float(stats.norm.cdf(k - h) + cap * stats.norm.sf(k))


def _covariates(
    spec: ExperimentSpec,
    params: Simulation,
    z_pre: np.ndarray,
    store_id: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], pa.Table]:
    """Pre-period covariates of every unit, and the pre-period order rows they summarise."""
    n, h = len(z_pre), params.heterogeneity
    pre_propensity = np.exp(h * z_pre - h**2 / 2)
    frequency = rng.poisson(PRE_ORDERS_MEAN * pre_propensity)
    owner = np.repeat(np.arange(n), frequency)
    values = _basket_values(rng, len(owner), params) * _item_price(spec, params)
    pre_revenue = np.round(np.bincount(owner, weights=values, minlength=n), 2)
    gap = np.ceil(rng.exponential(RECENCY_MEAN_DAYS / pre_propensity))
    covariates = {
        "pre_revenue": pre_revenue,
        "frequency": frequency,
        "recency_days": np.where(frequency > 0, np.clip(gap, 1, 365), 365).astype(np.int64),
        "channel": np.asarray(CHANNELS)[rng.choice(len(CHANNELS), size=n, p=CHANNEL_SHARES)],
        "region": np.asarray(REGIONS)[rng.integers(0, len(REGIONS), size=n)],
        "store_id": store_id,
    }
    for name in spec.analysis.covariates:  # covariates the spec names but the standard set lacks
        if name not in covariates:
            covariates[name] = np.round(pre_revenue * rng.lognormal(0.0, 0.25, size=n), 2)
    return covariates, _pre_orders(spec, owner, values, covariates["recency_days"], rng)


def _pre_orders(
    spec: ExperimentSpec, owner: np.ndarray, values: np.ndarray, recency: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """Rows (unit id, date, amount) of the pre-period orders: a unit's first row is its last order,
    ``recency_days`` before the start; the others fall uniformly between that and 365 days before."""
    days = recency[owner] + np.floor(rng.random(len(owner)) * (366 - recency[owner])).astype(np.int64)
    first = np.r_[True, owner[1:] != owner[:-1]] if len(owner) else np.zeros(0, dtype=bool)
    days[first] = recency[owner[first]]
    dates = np.datetime64(spec.start, "D") - days.astype("timedelta64[D]")
    return pa.table({spec.data.unit_id: owner + 1, "date": dates, "amount": np.round(values, 2)})


def _item_price(spec: ExperimentSpec, params: Simulation) -> float:
    """List price of one unit outside price-point arms."""
    return (spec.economics.unit_price if spec.economics else None) or params.item_price


def _basket_values(rng: np.random.Generator, size: int, params: Simulation) -> np.ndarray:
    """Units per order, continuous and heavy-tailed: LogNormal(log(units_median), units_sigma)."""
    return rng.lognormal(np.log(params.units_median), params.units_sigma, size=size)


# --------------------------------------------------------------------------- in-period outcomes


def _orders(
    spec: ExperimentSpec,
    params: Simulation,
    arms: _Arms,
    arm: np.ndarray,
    buyer: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    n_orders = np.where(buyer, 1 + rng.poisson(params.orders_per_buyer - 1, size=len(buyer)), 0)
    owner = np.repeat(np.arange(len(buyer)), n_orders)
    order_arm = arm[owner]
    price = arms.price[order_arm]
    list_amount = price * _basket_values(rng, len(owner), params) * arms.basket_mult[order_arm]
    takes_offer = rng.random(len(owner)) < arms.redemption[order_arm]
    priced = priced_orders(spec.variants, order_arm, list_amount, arms.price, takes_offer)
    return {"owner": owner, "ts": _timestamps(spec, rng, len(owner)), **priced}


def _time_column(spec: ExperimentSpec) -> str:
    """The event-time column of simulated tables: the spec's ``data.timestamp``, else ``ts``."""
    return spec.data.timestamp or "ts"


def _timestamps(spec: ExperimentSpec, rng: np.random.Generator, size: int) -> np.ndarray:
    """Uniform over the test window plus ``post_days``, in whole seconds."""
    start = np.datetime64(dt.datetime.combine(spec.start, dt.time()), "s")
    seconds = ((spec.end - spec.start).days + 1 + spec.post_days) * 86_400
    return start + rng.integers(0, seconds, size=size).astype("timedelta64[s]")


def _per_unit_outcomes(
    spec: ExperimentSpec,
    params: Simulation,
    arms: _Arms,
    arm: np.ndarray,
    propensity: np.ndarray,
    buyer: np.ndarray,
    orders: dict[str, np.ndarray],
    seed: int,
) -> dict[str, np.ndarray]:
    """Per-unit columns for metrics read from the units file (``source: units``)."""
    n = len(arm)
    out: dict[str, np.ndarray] = {}
    for metric in spec.metrics:
        if getattr(metric, "source", None) != UNITS_SOURCE:
            continue
        column = str(getattr(metric, "column"))  # noqa: B009 - checked: units metrics have one
        rng = _stream(seed, f"units-metric:{metric.id}")
        rate = params.unit_rates.get(metric.id)
        if isinstance(metric, BinaryMetric) and rate is not None:
            lift = np.array([1 + e.metrics.get(metric.id, 0.0) for e in arms.effects])[arm]
            out[column] = (rng.random(n) < np.clip(rate * propensity * lift, 0, 1)).astype(np.int64)
        elif isinstance(metric, BinaryMetric):
            out[column] = buyer.astype(np.int64)
        elif isinstance(metric, ContinuousMetric):
            out[column] = np.round(np.bincount(orders["owner"], weights=orders["amount"], minlength=n), 2)
        elif isinstance(metric, CountMetric):
            out[column] = np.bincount(orders["owner"], minlength=n)
        elif isinstance(metric, OrdinalMetric):
            scores = _scores(metric, arms, arm, rng).astype(float)
            out[column] = np.where(rng.random(n) < params.survey_rate, scores, np.nan)
    return out


def _scores(metric: OrdinalMetric, arms: _Arms, arm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ordinal scores: latent N(shift, 1) cut so the reference shares are proportional to 1..k."""
    k = len(metric.levels)
    shares = np.arange(1, k + 1) / (k * (k + 1) / 2)
    cuts = stats.norm.ppf(np.cumsum(shares)[:-1])
    latent = rng.standard_normal(len(arm)) + arms.score_shift[arm]
    return np.asarray(metric.levels)[np.searchsorted(cuts, latent)]


# --------------------------------------------------------------------------- tables


def _table_kinds(spec: ExperimentSpec, params: Simulation) -> dict[str, SimTable]:
    """How each data table is simulated: declared, else 'survey' for ordinal sources, else 'orders'."""
    survey_sources = {m.source for m in spec.metrics if isinstance(m, OrdinalMetric)}
    kinds = {
        name: params.tables.get(name, SimTable(kind="survey" if name in survey_sources else "orders"))
        for name in spec.data.tables
    }
    # event tables thinned from another table must come after it
    return dict(sorted(kinds.items(), key=lambda item: item[1].per is not None))


def _table(
    spec: ExperimentSpec,
    name: str,
    kind: SimTable,
    orders: dict[str, np.ndarray],
    event_counts: dict[str, np.ndarray],
    arm: np.ndarray,
    arms: _Arms,
    params: Simulation,
    seed: int,
) -> pa.Table:
    """One data table; event tables record their per-unit counts in ``event_counts``."""
    rng = _stream(seed, f"table:{name}")
    uid = spec.data.unit_id
    if kind.kind == "orders":
        columns: dict[str, Any] = {
            "order_id": np.arange(1, len(orders["owner"]) + 1),
            uid: orders["owner"] + 1,
            **{
                _time_column(spec) if k == "ts" else k: v
                for k, v in orders.items()
                if k != "owner" and not k.startswith("_")
            },
        }
        return _with_metric_columns(spec, name, pa.table(columns), orders["amount"], rng)
    if kind.kind == "survey":
        metric = next(m for m in spec.metrics if isinstance(m, OrdinalMetric) and m.source == name)
        responders = np.flatnonzero(rng.random(len(arm)) < params.survey_rate)
        scores = _scores(metric, arms, arm[responders], rng)
        survey = pa.table({uid: responders + 1, metric.column: scores})
        if spec.data.timestamp is None:
            return survey
        return survey.append_column(_time_column(spec), pa.array(_timestamps(spec, rng, len(responders))))
    counts = _event_counts(name, kind, arm, arms, event_counts, rng)
    event_counts[name] = counts
    owner = np.repeat(np.arange(len(arm)), counts)
    table = pa.table({uid: owner + 1, _time_column(spec): _timestamps(spec, rng, len(owner))})
    return _with_metric_columns(spec, name, table, np.full(len(owner), params.item_price), rng)


def _event_counts(
    name: str,
    kind: SimTable,
    arm: np.ndarray,
    arms: _Arms,
    event_counts: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    lift = np.array([1 + e.rates.get(name, 0.0) for e in arms.effects])[arm]
    if kind.per is not None and kind.prob is not None:
        parent = event_counts[kind.per]
        return rng.binomial(parent, np.clip(kind.prob * lift, 0, 1))
    return rng.poisson(float(kind.rate or 0.0) * lift)


def _with_metric_columns(
    spec: ExperimentSpec, name: str, table: pa.Table, scale: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """Add value columns that metrics read from this table but the simulator does not model."""
    for metric in spec.metrics:
        column = getattr(metric, "column", None)
        if getattr(metric, "source", None) == name and column and column not in table.column_names:
            values = np.round(scale * rng.lognormal(-0.125, 0.5, size=len(scale)), 2)
            table = table.append_column(column, pa.array(values))
    return table


def _units_table(
    spec: ExperimentSpec,
    arm: np.ndarray,
    covariates: dict[str, np.ndarray],
    per_unit: dict[str, np.ndarray],
    n: int,
) -> pa.Table:
    columns: dict[str, Any] = {} if spec.data.row_id else {spec.data.unit_id: np.arange(1, n + 1)}
    columns.update(covariates)
    columns.update(per_unit)
    if spec.data.assignments is None:
        columns[spec.data.variant_column] = _labels(spec, arm)
    return pa.table(columns)


def _labels(spec: ExperimentSpec, arm: np.ndarray) -> np.ndarray:
    """Arm labels as the data holds them (raw labels when ``data.variant_values`` maps them)."""
    raw = {v: k for k, v in reversed(list((spec.data.variant_values or {}).items()))}
    return np.asarray([raw.get(v.id, v.id) for v in spec.variants])[arm]
