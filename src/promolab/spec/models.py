"""Pydantic models of an experiment spec: the contract every later step reads.

Models are frozen and forbid unknown keys. Structural rules (types, ranges, required fields) live on
the fields; rules that relate several fields live in :mod:`promolab.spec.checks` and run once the
structure is valid. Tagged unions route on ``kind`` (and ``mechanic`` for discounts); a value that
matches no member is routed to a fallback model whose only job is to say which values are allowed.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
Column = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]
FilePath = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]
Probability = Annotated[float, Field(gt=0, lt=1)]
MAX_MONEY = 1e12  # per unit, per order or per arm: amounts beyond this are typing errors, and they would
#                   overflow sums of squares over millions of units
Money = Annotated[float, Field(ge=0, le=MAX_MONEY)]
PositiveMoney = Annotated[float, Field(gt=0, le=MAX_MONEY)]
MAX_COUNT = 10**12  # units, days, draws: integers beyond this cannot be meant (and overflow floats' 2^53)
Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]
MAX_ITEMS = 200  # entries of a list in a spec (arms, metrics, levels, covariates, ...)
Lift = Annotated[float, Field(gt=-1, le=100)]  # a relative lift: -100% (exclusive) to +10,000%

Channel = Literal[
    "email",
    "sms",
    "push",
    "paid_social",
    "paid_search",
    "display",
    "direct_mail",
    "store",
    "in_app",
]
UNIT_KINDS = ("customer", "session", "store", "region", "user", "device", "market")
ECONOMIC_QUANTITIES = ("profit", "roi")
#: Table name that means "one row per unit" (the ``data.units`` file).
UNITS_SOURCE = "units"


class SpecModel(BaseModel):
    """Base of every spec model: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _tag(name: str) -> Tag:
    """Union tags are wrapped in <> so error paths can drop them (no field or id contains '<')."""
    return Tag(f"<{name}>")


def _route(key: str, allowed: tuple[str, ...]) -> Any:
    """Discriminator that reads ``key`` and routes unknown values to the ``<?>`` fallback."""

    def pick(value: Any) -> str:
        got = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        return f"<{got}>" if got in allowed else "<?>"

    return Discriminator(pick)


# --------------------------------------------------------------------------- variants


class _VariantBase(SpecModel):
    id: Slug
    weight: float = Field(gt=0, le=1, description="Share of units assigned to this arm.")
    name: str | None = None
    description: str | None = None
    reference: bool = Field(
        default=False, description="Compare every other arm with this one (only without a control)."
    )
    channel: Channel | None = Field(default=None, description="Channel the arm is delivered on.")

    # What an arm's offer costs: every kind answers these (the economics and the design's break-even
    # read them, never the kind), in the spec's currency.

    def list_price(self, reference_price: float) -> float:
        """List price per unit sold in this arm (a price point's own; else the reference price)."""
        return reference_price

    def price_cut(self, price: float, units_per_order: float) -> float:
        """Money off per unit sold that the customer sees, at list price ``price``."""
        return 0.0

    def order_discount(self) -> float | None:
        """Face value taken off each redeemed order (amount-off, coupons); None for other kinds."""
        return None

    def cost_per_redeemed_order(self) -> float:
        """What each redeemed order costs the company beyond the price (gift, shipping, ...)."""
        return 0.0

    def cost_per_randomised_unit(self) -> float:
        """What each randomised unit costs whatever it buys (a contact, a treatment's delivery)."""
        return 0.0


class ControlVariant(_VariantBase):
    """The untreated arm: business as usual."""

    kind: Literal["control"]


class PricePointVariant(_VariantBase):
    """A list price tested against other prices."""

    kind: Literal["price_point"]
    price: PositiveMoney

    def list_price(self, reference_price: float) -> float:
        return self.price


class _DiscountBase(_VariantBase):
    kind: Literal["discount"]


class PercentOff(_DiscountBase):
    """``value`` percent off the order, 0 < value < 100."""

    mechanic: Literal["percent_off"]
    value: float

    @field_validator("value")
    @classmethod
    def _in_open_percent_range(cls, value: float) -> float:
        if not 0 < value < 100:
            raise ValueError(f"percent_off must be in (0, 100), got {value:g}")
        return value

    def price_cut(self, price: float, units_per_order: float) -> float:
        return price * self.value / 100


class AmountOff(_DiscountBase):
    """``value`` off an order of at least ``min_spend``."""

    mechanic: Literal["amount_off"]
    value: PositiveMoney
    min_spend: PositiveMoney | None = None

    def price_cut(self, price: float, units_per_order: float) -> float:
        return self.value / units_per_order

    def order_discount(self) -> float | None:
        return self.value


class Bogo(_DiscountBase):
    """Buy ``buy`` units, get ``get`` more free."""

    mechanic: Literal["bogo"]
    buy: int = Field(default=1, ge=1, le=1000)
    get: int = Field(default=1, ge=1, le=1000)

    def price_cut(self, price: float, units_per_order: float) -> float:
        return price * self.get / (self.buy + self.get)


class Bundle(_DiscountBase):
    """``items`` units sold together for ``bundle_price``."""

    mechanic: Literal["bundle"]
    items: int = Field(ge=2, le=1000)
    bundle_price: PositiveMoney

    def price_cut(self, price: float, units_per_order: float) -> float:
        return (self.items * price - self.bundle_price) / self.items


class Coupon(_DiscountBase):
    """A coupon of face ``value`` redeemable on orders of at least ``min_spend``."""

    mechanic: Literal["coupon"]
    value: PositiveMoney
    min_spend: PositiveMoney | None = None

    def price_cut(self, price: float, units_per_order: float) -> float:
        return self.value / units_per_order

    def order_discount(self) -> float | None:
        return self.value


class Gift(_DiscountBase):
    """A free gift costing the company ``gift_cost`` per redeemed order."""

    mechanic: Literal["gift"]
    gift_cost: PositiveMoney

    def cost_per_redeemed_order(self) -> float:
        return self.gift_cost


class FreeShipping(_DiscountBase):
    """Shipping waived; the company pays ``shipping_cost`` per redeemed order."""

    mechanic: Literal["free_shipping"]
    shipping_cost: PositiveMoney

    def cost_per_redeemed_order(self) -> float:
        return self.shipping_cost


class AdCreative(_VariantBase):
    """An ad creative; media spend goes in ``economics.media_cost``."""

    kind: Literal["ad_creative"]
    creative: Annotated[str, StringConstraints(min_length=1)]
    headline: Annotated[str, StringConstraints(min_length=1)]
    asset: str | None = None


class ChannelVariant(_VariantBase):
    """A contact channel with its cost per contacted unit."""

    kind: Literal["channel"]
    channel: Channel
    cost_per_contact: Money

    def cost_per_randomised_unit(self) -> float:
        return self.cost_per_contact


class TreatmentVariant(_VariantBase):
    """Any other change: a product feature, a game gate, a promotion whose mechanic is not modelled.

    Costs are optional: ``cost_per_unit`` is paid for every randomised unit of the arm (delivering the
    change), ``cost_per_order`` for every order (redeemed order, with ``economics.redemptions``).
    """

    kind: Literal["treatment"]
    cost_per_unit: Money = Field(default=0.0, description="Cost of treating one randomised unit.")
    cost_per_order: Money = Field(default=0.0, description="Cost of each (redeemed) order of the arm.")

    def cost_per_redeemed_order(self) -> float:
        return self.cost_per_order

    def cost_per_randomised_unit(self) -> float:
        return self.cost_per_unit


class _UnknownVariant(SpecModel):
    """Fallback for an unknown ``kind``: fails on ``kind`` with the allowed values."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["control", "price_point", "discount", "ad_creative", "channel", "treatment"]


class _UnknownMechanic(SpecModel):
    """Fallback for a discount with an unknown ``mechanic``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    mechanic: Literal["percent_off", "amount_off", "bogo", "bundle", "coupon", "gift", "free_shipping"]


DISCOUNT_MECHANICS: dict[str, type[_DiscountBase]] = {
    "percent_off": PercentOff,
    "amount_off": AmountOff,
    "bogo": Bogo,
    "bundle": Bundle,
    "coupon": Coupon,
    "gift": Gift,
    "free_shipping": FreeShipping,
}

_Discount = Annotated[
    Annotated[PercentOff, _tag("percent_off")]
    | Annotated[AmountOff, _tag("amount_off")]
    | Annotated[Bogo, _tag("bogo")]
    | Annotated[Bundle, _tag("bundle")]
    | Annotated[Coupon, _tag("coupon")]
    | Annotated[Gift, _tag("gift")]
    | Annotated[FreeShipping, _tag("free_shipping")]
    | Annotated[_UnknownMechanic, _tag("?"), SkipJsonSchema()],
    _route("mechanic", tuple(DISCOUNT_MECHANICS)),
]

VARIANT_KINDS = ("control", "price_point", "discount", "ad_creative", "channel", "treatment")

_TaggedVariant = Annotated[
    Annotated[ControlVariant, _tag("control")]
    | Annotated[PricePointVariant, _tag("price_point")]
    | Annotated[_Discount, _tag("discount")]
    | Annotated[AdCreative, _tag("ad_creative")]
    | Annotated[ChannelVariant, _tag("channel")]
    | Annotated[TreatmentVariant, _tag("treatment")]
    | Annotated[_UnknownVariant, _tag("?"), SkipJsonSchema()],
    _route("kind", VARIANT_KINDS),
]

# --------------------------------------------------------------------------- metrics


class Capping(SpecModel):
    """Winsorise per-unit values at one threshold pooled over all arms: a percentile or a value."""

    percentile: float | None = Field(default=None, gt=0.5, lt=1)
    absolute: PositiveMoney | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Capping:
        if (self.percentile is None) == (self.absolute is None):
            raise ValueError("give exactly one of 'percentile' (e.g. 0.99) or 'absolute'")
        return self


Role = Literal["primary", "secondary", "guardrail", "treatment_only"]
DerivedRole = Literal["window", "covariate", "component"]  # of derived metrics (spec.windows)


class _MetricBase(SpecModel):
    id: Slug
    name: str | None = None
    description: str | None = None
    role: Role | None = Field(
        default=None,
        description="Derived when omitted: 'primary' for spec.primary, 'guardrail' for metrics "
        "named in guardrails, else 'secondary'.",
    )
    direction: Literal["higher", "lower"] = Field(default="higher", description="Which way is better.")
    unit: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        default=None, description="Unit of the values, shown beside them ('thousand USD', 'rounds')."
    )
    format: Literal["number", "percent", "money"] | None = Field(
        default=None,
        description="How values are shown: 'percent' (the default for binary metrics and top boxes), "
        "'money' (with economics.currency), else 'number'.",
    )


MissingPolicy = Literal["error", "zero", "drop"]


FilterValue = StrictInt | Annotated[StrictStr, StringConstraints(min_length=1, max_length=200)]


class RowFilter(SpecModel):
    """The rows of an event table a metric counts: those whose ``column`` is one of ``in`` (or, with
    ``not_in``, none of them). Values are compared as text; a row whose ``column`` is missing matches no
    ``in`` list and every ``not_in`` list."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)
    column: Column
    in_: tuple[FilterValue, ...] | None = Field(
        default=None, alias="in", min_length=1, max_length=MAX_ITEMS, description="Values to keep."
    )
    not_in: tuple[FilterValue, ...] | None = Field(
        default=None, min_length=1, max_length=MAX_ITEMS, description="Values to leave out."
    )

    @model_validator(mode="after")
    def _one_list(self) -> RowFilter:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError("give 'in' (values to keep) or 'not_in' (values to leave out), one of them")
        return self

    @property
    def values(self) -> list[str]:
        """The listed values, as the text they are compared as."""
        return [str(v) for v in (self.in_ if self.in_ is not None else self.not_in or ())]

    @property
    def keeps(self) -> bool:
        """True for an ``in`` list (keep the listed values), False for ``not_in``."""
        return self.in_ is not None


Window = Literal["during", "post", "total"]


class _SourcedMetric(_MetricBase):
    source: Slug = Field(description="A table in data.tables, or 'units' for per-unit columns.")
    window: Window = Field(
        default="during",
        description="Event rows counted (with data.timestamp): 'during' start..end, 'post' the post_days "
        "after end, 'total' both. The verdict and guardrails read this window.",
    )
    where: RowFilter | None = Field(
        default=None, description="Only the event-table rows whose column is (or is not) in a list."
    )
    missing: MissingPolicy | None = Field(
        default=None,
        description="What a missing (NULL) value in `column` means: 'error' (the default), 'zero', or "
        "'drop' (event tables: the row is left out; ordinal metrics: no response, their default).",
    )

    @property
    def missing_policy(self) -> MissingPolicy:
        """``missing`` as declared, else 'drop' for ordinal scores (no response) and 'error' otherwise."""
        if self.missing is not None:
            return self.missing
        return "drop" if getattr(self, "kind", None) == "ordinal" else "error"


class BinaryMetric(_SourcedMetric):
    """1 when the unit has at least one row in ``source`` (or its ``column`` is true), else 0."""

    kind: Literal["binary"]
    column: Column | None = None


class ContinuousMetric(_SourcedMetric):
    """Per-unit ``agg`` of ``column`` over the unit's rows; units with no rows count as 0."""

    kind: Literal["continuous"]
    column: Column
    agg: Literal["sum", "mean", "max"] = "sum"
    capping: Capping | None = None


class CountMetric(_SourcedMetric):
    """Number of the unit's rows in ``source`` (or the sum of ``column``); 0 when none."""

    kind: Literal["count"]
    column: Column | None = None
    capping: Capping | None = None


class RatioMetric(_MetricBase):
    """Ratio of sums of two declared metrics (e.g. AOV = revenue / orders), delta-method variance."""

    kind: Literal["ratio"]
    numerator: Slug
    denominator: Slug


class OrdinalMetric(_SourcedMetric):
    """An ordered score such as 1-5 satisfaction; units without a response are missing, not 0."""

    kind: Literal["ordinal"]
    column: Column
    levels: tuple[Annotated[int, Field(ge=-1_000_000, le=1_000_000)], ...] = Field(
        max_length=101, description="At least 2 levels (at most 101), strictly increasing."
    )
    top_box: int = Field(default=2, ge=1, description="How many top levels count as 'satisfied'.")

    @field_validator("levels")
    @classmethod
    def _strictly_increasing(cls, levels: tuple[int, ...]) -> tuple[int, ...]:
        if any(b <= a for a, b in itertools.pairwise(levels)):
            raise ValueError(f"levels must be strictly increasing, got {list(levels)}")
        return levels


AnyVariant = (
    ControlVariant
    | PricePointVariant
    | PercentOff
    | AmountOff
    | Bogo
    | Bundle
    | Coupon
    | Gift
    | FreeShipping
    | AdCreative
    | ChannelVariant
    | TreatmentVariant
)
AnyMetric = BinaryMetric | ContinuousMetric | CountMetric | RatioMetric | OrdinalMetric
SourcedMetric = BinaryMetric | ContinuousMetric | CountMetric | OrdinalMetric  # read from a table


class _UnknownMetric(SpecModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["binary", "continuous", "count", "ratio", "ordinal"]


METRIC_KINDS = ("binary", "continuous", "count", "ratio", "ordinal")

_TaggedMetric = Annotated[
    Annotated[BinaryMetric, _tag("binary")]
    | Annotated[ContinuousMetric, _tag("continuous")]
    | Annotated[CountMetric, _tag("count")]
    | Annotated[RatioMetric, _tag("ratio")]
    | Annotated[OrdinalMetric, _tag("ordinal")]
    | Annotated[_UnknownMetric, _tag("?"), SkipJsonSchema()],
    _route("kind", METRIC_KINDS),
]

if TYPE_CHECKING:  # type checkers see the members; pydantic sees the tagged unions with fallbacks
    Variant = AnyVariant
    Metric = AnyMetric
else:
    Variant = _TaggedVariant
    Metric = _TaggedMetric

# --------------------------------------------------------------------------- guardrails, economics


class Guardrail(SpecModel):
    """Non-inferiority margin of a metric: how far it may move in its harmful direction."""

    metric: Slug
    max_relative_drop: float | None = Field(default=None, gt=0, lt=1)
    max_absolute_drop: float | None = Field(default=None, gt=0, le=MAX_MONEY)

    @model_validator(mode="after")
    def _exactly_one_margin(self) -> Guardrail:
        if (self.max_relative_drop is None) == (self.max_absolute_drop is None):
            raise ValueError("give exactly one of 'max_relative_drop' or 'max_absolute_drop'")
        return self


class Promoted(SpecModel):
    """The promoted products of an orders table: rows whose ``column`` is one of ``in``; ``substitutes``
    (same column) are the products they may take sales from; every other row is the rest of the basket."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)
    column: Column
    in_: tuple[FilterValue, ...] = Field(
        alias="in", min_length=1, max_length=MAX_ITEMS, description="Values of the promoted products."
    )
    substitutes: tuple[FilterValue, ...] = Field(
        default=(), max_length=MAX_ITEMS, description="Values of the products they substitute for."
    )


class Economics(SpecModel):
    """Money side of the test, in ``currency`` per unit sold unless stated."""

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    unit_price: PositiveMoney | None = Field(default=None, description="List price per unit sold.")
    unit_cost: Money | None = Field(default=None, description="Cost of goods per unit sold.")
    fixed_cost: dict[Slug, Money] = Field(
        default_factory=dict, description="Fixed cost of running each arm (creative, set-up)."
    )
    media_cost: dict[Slug, Money] = Field(
        default_factory=dict, description="Media spend per arm (for iROAS)."
    )
    units_per_order: float = Field(
        default=1.0, ge=1, description="Mean units per order (per-order costs to per-unit)."
    )
    horizon_units: Count | None = Field(
        default=None, gt=0, description="Units a shipped promotion reaches (amortises fixed costs)."
    )
    revenue: Slug | None = Field(
        default=None, description="Continuous metric of revenue paid (default: 'revenue', else primary)."
    )
    units: Slug | None = Field(
        default=None, description="Count metric of units sold (default: revenue at list price)."
    )
    orders: Slug | None = Field(
        default=None, description="Count metric of orders (default: units / units_per_order)."
    )
    redemptions: Slug | None = Field(
        default=None, description="Count metric of orders that redeemed the offer (default: every order)."
    )
    discount: Slug | None = Field(
        default=None, description="Continuous metric of discount given (default: the nominal discount)."
    )
    conversion: Slug | None = Field(
        default=None, description="Binary metric of converting units (default: 'conversion')."
    )
    promoted: Promoted | None = Field(
        default=None,
        description="Promoted products: splits the incremental margin into promoted items, cannibalised "
        "substitutes, halo on the rest of the basket and pull-forward from the post window.",
    )


# --------------------------------------------------------------------------- design, analysis


class Mde(SpecModel):
    """Minimum detectable effect, relative (0.05 = +5%) or absolute (in the metric's unit)."""

    relative: float | None = Field(default=None, gt=0, le=100)
    absolute: float | None = Field(default=None, gt=0, le=MAX_MONEY)

    @model_validator(mode="after")
    def _exactly_one(self) -> Mde:
        if (self.relative is None) == (self.absolute is None):
            raise ValueError("give exactly one of 'relative' or 'absolute'")
        return self


class Baseline(SpecModel):
    """Expected control-arm behaviour of a metric: a ``rate`` (binary) or ``mean`` and ``sd``."""

    rate: Probability | None = None
    mean: float | None = Field(default=None, ge=-MAX_MONEY, le=MAX_MONEY)
    sd: float | None = Field(default=None, gt=0, le=MAX_MONEY)

    @model_validator(mode="after")
    def _rate_or_moments(self) -> Baseline:
        if (self.rate is None) == (self.mean is None or self.sd is None):
            raise ValueError("give either 'rate', or both 'mean' and 'sd'")
        return self


class ClusterDesign(SpecModel):
    """Cluster randomisation (stores, regions): all units of a cluster share an arm."""

    column: Column = Field(description="Cluster id column of the units (or pre-period) file.")
    icc: float | None = Field(default=None, ge=0, lt=1, description="Intra-cluster correlation.")
    mean_size: float | None = Field(default=None, ge=1, le=1e9, description="Mean units per cluster.")
    size_cv: float = Field(default=0.0, ge=0, le=10, description="Coefficient of variation of sizes.")


class Design(SpecModel):
    """Inputs to sample-size, MDE, power and duration planning, and to assignment."""

    metric: Slug | None = Field(default=None, description="Metric to size for (default: primary).")
    alpha: Probability = 0.05
    power: Probability = 0.8
    alternative: Literal["two-sided", "larger", "smaller"] = "two-sided"
    correction: Literal["bonferroni", "none"] = Field(
        default="bonferroni", description="Family-wise correction over treatment arms."
    )
    pooled_null: bool = Field(
        default=False, description="Binary metrics: pooled variance under the null (statsmodels')."
    )
    mde: Mde | None = None
    total_units: Count | None = Field(
        default=None, description="Units available: plan the MDE for this size."
    )
    daily_units: Count | None = Field(default=None, description="New units entering per day.")
    round_to_weeks: bool = False
    baseline: dict[Slug, Baseline] = Field(default_factory=dict)
    cuped_r2: float | None = Field(
        default=None, ge=0, lt=1, description="Variance explained by analysis.covariates."
    )
    cluster: ClusterDesign | None = None
    salt: str | None = Field(default=None, description="Assignment salt (default: the spec id).")
    holdout: float = Field(default=0.0, ge=0, lt=1, description="Share of units held out of the test.")
    strata: tuple[Column, ...] = Field(default=(), max_length=10, description="Block on these unit columns.")
    rerandomise: int | None = Field(
        default=None, ge=2, le=10_000, description="Try this many salts; keep the best balanced."
    )


class LiftPrior(SpecModel):
    """Normal prior on every treatment arm's relative lift, e.g. from past experiments."""

    mean: float = Field(default=0.0, gt=-1, description="Prior mean relative lift (0.02 = +2%).")
    sd: float = Field(gt=0, description="Prior sd of the relative lift.")


class Prior(SpecModel):
    """Prior of one metric (defaults: Beta(1, 1) rates, Gamma(0.5, 0) Poisson rates, flat lift)."""

    a: float | None = Field(default=None, gt=0, description="Beta a (binary) or Gamma shape (count).")
    b: float | None = Field(default=None, ge=0, description="Beta b (binary, > 0) or Gamma rate (count).")
    lift: LiftPrior | None = None


class Rfm(SpecModel):
    """Recency, frequency and monetary quantile scores from pre-period orders."""

    source: Slug = Field(description="A table in data.tables: one row per pre-period order.")
    date: Column = Field(default="date", description="Order date column.")
    amount: Column = Field(default="amount", description="Order amount column.")
    bins: int = Field(default=5, ge=2, le=10, description="Quantile bins per score (5: quintiles).")


class Segmentation(SpecModel):
    """A way to slice units: a units-file column (channel, region) or built-in RFM scores."""

    column: Column | None = Field(default=None, description="Units-file column naming the segment.")
    rfm: Rfm | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Segmentation:
        if (self.column is None) == (self.rfm is None):
            raise ValueError("give exactly one of 'column' or 'rfm'")
        return self

    @property
    def name(self) -> str:
        return "rfm" if self.rfm is not None else str(self.column)


class Bayes(SpecModel):
    """Settings of the Bayesian analysis (``analysis.method: bayesian`` or ``both``)."""

    rope: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Half-width of the region of practical equivalence (relative lift).",
    )
    priors: dict[Slug, Prior] = Field(default_factory=dict, description="Priors by metric id.")
    draws: int = Field(default=2000, ge=100, le=100_000, description="Posterior draws per chain.")
    tune: int = Field(default=1000, ge=100, le=100_000, description="MCMC tuning steps per chain.")
    chains: int = Field(default=2, ge=1, le=16)
    target_accept: float = Field(default=0.9, gt=0.5, lt=1)
    sampler: Literal["pymc", "nutpie"] = Field(default="pymc", description="NUTS implementation.")
    seed: int = Field(default=20260101, ge=0, lt=2**32, description="Random seed of every draw.")


class Sequential(SpecModel):
    """How ``promolab monitor`` looks at a running test (the primary metric and the guardrails)."""

    method: Literal["always_valid", "group_sequential"] = Field(
        default="always_valid",
        description="always_valid: confidence sequences and mixture-SPRT p-values, any number of looks; "
        "group_sequential: Lan-DeMets alpha spending over the looks.",
    )
    spending: Literal["obrien_fleming", "pocock"] = Field(
        default="obrien_fleming", description="group_sequential: the alpha-spending function's type."
    )
    looks: tuple[dt.date, ...] = Field(
        default=(), description="The planned looks' dates, from start to end (default: every day)."
    )
    futility: bool = Field(
        default=False,
        description="Stop for futility when every arm's interval excludes design.mde.relative (needs it).",
    )

    @field_validator("looks")
    @classmethod
    def _increasing_looks(cls, looks: tuple[dt.date, ...]) -> tuple[dt.date, ...]:
        if list(looks) != sorted(set(looks)):
            raise ValueError("list each look's date once, in increasing order")
        return looks


class Analysis(SpecModel):
    """How the analysis runs."""

    covariates: tuple[Column, ...] = Field(
        default=(), max_length=50, description="Pre-period columns of the units table for CUPED."
    )
    confidence: Probability = 0.95
    method: Literal["frequentist", "bayesian", "both"] = "frequentist"
    bayes: Bayes = Field(default_factory=Bayes)
    sequential: Sequential = Field(default_factory=Sequential, description="promolab monitor's rule.")
    segments: tuple[Segmentation, ...] = Field(
        default=(), max_length=10, description="Segmentations for partially pooled segment-level uplift."
    )


class Decision(SpecModel):
    """The rule that turns results into ship / iterate / stop."""

    metric: Slug = Field(description="A declared metric, or 'profit' or 'roi'.")
    prob_positive: Probability | None = Field(
        default=None, description="Ship when P(metric improves) reaches this (Bayesian)."
    )


class Data(SpecModel):
    """Where the experiment's data lives; relative paths resolve against the spec's folder."""

    assignments: FilePath | None = Field(
        default=None,
        description="unit_id, variant per unit; omit when the units file has the variant.",
    )
    units: FilePath | None = Field(default=None, description="One row per unit: id and covariates.")
    tables: dict[Slug, FilePath] = Field(default_factory=dict, description="Event tables by name.")
    unit_id: Column = Field(default="unit_id", description="Unit id column in every table.")
    variant_column: Column = Field(default="variant", description="Arm column of the assignments.")
    timestamp: Column | None = Field(
        default=None, description="Date or time column of event tables (the report's cumulative curve)."
    )
    variant_values: dict[str, Slug] | None = Field(
        default=None, description="Maps raw arm labels in the data to variant ids."
    )
    row_id: bool = Field(
        default=False,
        description="The units file has no id column: its 1-based row number is the id.",
    )

    @model_validator(mode="after")
    def _has_assignments(self) -> Data:
        if self.assignments is None and self.units is None:
            raise ValueError("give 'assignments' or a 'units' file that holds the variant column")
        return self


# --------------------------------------------------------------------------- simulation


class SimEffect(SpecModel):
    """True effect of one arm in simulated data (relative lifts against the reference arm)."""

    conversion: Lift = Field(default=0.0, description="Relative lift in P(purchase).")
    basket: Lift = Field(default=0.0, description="Relative lift in units per order.")
    redemption: float = Field(
        default=1.0, ge=0, le=1, description="Share of the arm's orders that redeem the offer."
    )
    score: float = Field(default=0.0, ge=-10, le=10, description="Shift of latent satisfaction, in sd units.")
    rates: dict[Slug, Lift] = Field(
        default_factory=dict, description="Relative lift of event-table rates (e.g. clicks)."
    )
    metrics: dict[Slug, Lift] = Field(
        default_factory=dict,
        description="Relative lift of binary metrics in simulation.unit_rates.",
    )
    pull_forward: float = Field(
        default=0.0, ge=0, le=1, description="Share of the arm's extra orders taken from the post window."
    )
    cannibalisation: float = Field(
        default=0.0, ge=0, le=1, description="Share of the extra promoted-item orders taken from substitutes."
    )
    halo: Lift = Field(default=0.0, description="Relative lift of the other categories' orders.")


class SimTable(SpecModel):
    """How one data table is simulated."""

    kind: Literal["orders", "survey", "events", "pre_orders"] = Field(
        description="pre_orders: the pre-period orders behind pre_revenue/frequency/recency_days."
    )
    rate: float | None = Field(default=None, gt=0, le=1000, description="events: mean rows per unit.")
    per: Slug | None = Field(default=None, description="events: thin this table's rows instead.")
    prob: Probability | None = Field(default=None, description="events with 'per': keep prob.")

    @model_validator(mode="after")
    def _events_rate(self) -> SimTable:
        if self.kind == "events" and (self.rate is None) == (self.per is None or self.prob is None):
            raise ValueError("events tables need 'rate', or 'per' and 'prob'")
        return self


class Simulation(SpecModel):
    """Parameters of ``promolab simulate``; see docs/cli.md "Simulator"."""

    purchase_prob: Probability = Field(default=0.08, description="Reference P(>= 1 order).")
    orders_per_buyer: float = Field(default=1.3, ge=1, le=100, description="Mean orders of a buyer.")
    units_median: float = Field(default=1.5, ge=1, le=1000, description="Median units per order.")
    units_sigma: float = Field(default=0.8, gt=0, le=3, description="Log-sd of units per order.")
    item_price: PositiveMoney = Field(default=25.0, description="Used when economics has none.")
    heterogeneity: float = Field(default=1.0, ge=0, le=3, description="Log-sd of unit propensity.")
    pre_corr: float = Field(default=0.8, ge=0, lt=1, description="Latent pre/in-period corr.")
    survey_rate: Probability = Field(default=0.3)
    clusters: int = Field(default=50, ge=1, le=1_000_000, description="Number of stores units belong to.")
    cluster_sd: float = Field(default=0.2, ge=0, le=3, description="Log-sd of store propensity.")
    price_elasticity: float = Field(
        default=-1.5, ge=-20, le=20, description="d log P(purchase) / d log price, for price-point arms."
    )
    tables: dict[Slug, SimTable] = Field(default_factory=dict)
    unit_rates: dict[Slug, Probability] = Field(
        default_factory=dict,
        description="Per-unit binary metrics drawn on their own (e.g. visit) at this reference rate; "
        "other binary metrics are 'has purchased'.",
    )
    effects: dict[Slug, SimEffect] = Field(default_factory=dict)
    categories: dict[Annotated[str, StringConstraints(min_length=1, max_length=200)], Probability] = Field(
        default_factory=dict,
        description="Product categories of simulated orders and their reference shares (sum 1); default "
        "with economics.promoted: 30% promoted, 20% substitutes, 50% 'other'.",
    )


# --------------------------------------------------------------------------- the spec


class SpecFile(SpecModel):
    """What every kind of spec file has: who and what it is, its dates, and where it was loaded from."""

    id: Slug
    name: Annotated[str, StringConstraints(min_length=1)]
    hypothesis: str | None = None
    owner: str | None = None
    unit: Literal["customer", "session", "store", "region", "user", "device", "market"]
    start: dt.date
    end: dt.date

    _source: str | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Specs are equal when their fields are: where a spec was loaded from does not matter."""
        return type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # dict fields make specs unhashable anyway


class ExperimentSpec(SpecFile):
    """A marketing experiment declared as code. Build with :func:`promolab.load_spec`."""

    pre_days: int = Field(
        default=0, ge=0, le=3650, description="Days before 'start' measured as each metric's pre-period."
    )
    post_days: int = Field(default=0, ge=0, le=3650, description="Days after 'end' still measured.")
    variants: tuple[Variant, ...] = Field(max_length=MAX_ITEMS, description="At least 2 arms.")
    metrics: tuple[Metric, ...] = Field(max_length=MAX_ITEMS, description="At least 1 metric.")
    primary: Slug
    guardrails: tuple[Guardrail, ...] = Field(default=(), max_length=MAX_ITEMS)
    economics: Economics | None = None
    design: Design = Field(default_factory=Design)
    analysis: Analysis = Field(default_factory=Analysis)
    decision: Decision | None = None
    data: Data
    simulation: Simulation | None = None
    tags: tuple[str, ...] = Field(default=(), max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        from promolab.spec.checks import raise_on_problems

        raise_on_problems(self)
        return self

    # ---- lookups used by every later step (cheap, derived, never stored)

    @property
    def reference(self) -> AnyVariant:
        """The arm every other arm is compared with."""
        for variant in self.variants:
            if variant.kind == "control" or variant.reference:
                return variant
        raise AssertionError("validated specs always have a reference arm")

    @property
    def treatments(self) -> list[AnyVariant]:
        """Every arm except the reference, in declaration order."""
        ref = self.reference.id
        return [v for v in self.variants if v.id != ref]

    def variant(self, variant_id: str) -> AnyVariant:
        return next(v for v in self.variants if v.id == variant_id)

    def metric(self, metric_id: str) -> AnyMetric:
        return next(m for m in self.metrics if m.id == metric_id)

    def role(self, metric_id: str) -> Role | DerivedRole:
        """Role of a metric: declared, else derived from ``primary`` and ``guardrails``; a derived
        metric's (``revenue@post``) is ``window``, ``covariate`` or ``component``
        (:mod:`promolab.spec.windows`)."""
        from promolab.spec.windows import derived_role, split_id

        base, tag = split_id(metric_id)
        if tag is not None:  # a derived metric (revenue@post): a treatment_only metric's stays so
            return "treatment_only" if self.role(base) == "treatment_only" else derived_role(metric_id)
        declared = self.metric(metric_id).role
        if declared is not None:
            return declared
        if metric_id == self.primary:
            return "primary"
        if any(g.metric == metric_id for g in self.guardrails):
            return "guardrail"
        return "secondary"
