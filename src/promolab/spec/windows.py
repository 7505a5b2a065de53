"""The time and product axes of a spec: each event metric measured in its windows, and the revenue
split by product for the economics' decomposition, as derived metrics of an *expanded* spec.

With ``data.timestamp``, an event row dated ``d`` falls in

- ``pre``: ``start - pre_days <= d < start`` (the metric's own CUPED covariate),
- ``during``: ``start <= d <= end``,
- ``post``: ``end < d <= end + post_days`` (the dip after the promotion),
- ``total``: ``during`` and ``post`` (the net effect).

A metric's own row is measured in its declared ``window``. :func:`expand` adds, for every event
metric (and every ratio of two), a derived metric per other window (``revenue@post``, ``revenue@total``
when ``post_days > 0``; ``revenue@pre`` when ``pre_days > 0``), and with ``economics.promoted`` the
revenue (and units) metric's promoted, substitute and other rows during the promotion
(``revenue@promoted``, ...). Derived ids hold ``@``, which no declared id may, so they never clash.
Derived metrics are computed like declared ones; only the analysis decides what to report.
"""

from __future__ import annotations

from collections.abc import Iterator

from promolab.spec.models import (
    UNITS_SOURCE,
    AnyMetric,
    BinaryMetric,
    ContinuousMetric,
    CountMetric,
    DerivedRole,
    Economics,
    ExperimentSpec,
    OrdinalMetric,
    RatioMetric,
    RowFilter,
)

SEPARATOR = "@"
PARTS = ("promoted", "substitutes", "other")  # the decomposition's product groups, during the promotion


def derived_id(metric_id: str, tag: str) -> str:
    """``revenue@post``: the metric ``metric_id`` in a window, or a product group of it."""
    return f"{metric_id}{SEPARATOR}{tag}"


def split_id(metric_id: str) -> tuple[str, str | None]:
    """``("revenue", "post")`` for ``revenue@post``; ``("revenue", None)`` for a declared id."""
    base, _, tag = metric_id.partition(SEPARATOR)
    return base, tag or None


def derived_role(metric_id: str) -> DerivedRole:
    """``window`` (a reported row), ``covariate`` (pre-period) or ``component`` (decomposition) of a
    derived metric's id."""
    tag = split_id(metric_id)[1]
    if tag == "pre":
        return "covariate"
    return "component" if tag in PARTS else "window"


def windowed(spec: ExperimentSpec, metric: AnyMetric) -> bool:
    """The metric is measured in windows: a binary, count or continuous event-table metric (or a ratio
    of two) with ``data.timestamp``. Ordinal scores are not (a survey answer is not a sum over days,
    and survey tables need no timestamp): they count the answers dated from ``start`` to
    ``end + post_days`` when their table is dated."""
    if spec.data.timestamp is None or isinstance(metric, OrdinalMetric):
        return False
    if isinstance(metric, RatioMetric):
        parts = [spec.metric(metric.numerator), spec.metric(metric.denominator)]
        return all(windowed(spec, part) for part in parts)
    return metric.source != UNITS_SOURCE


def window_of(spec: ExperimentSpec, metric_id: str) -> str | None:
    """The window a (declared or derived) metric is measured in; None for an undated metric."""
    base, tag = split_id(metric_id)
    metric = spec.metric(base)
    if not windowed(spec, metric):
        return None
    if tag in PARTS:
        return "during"
    if tag is not None:
        return tag
    if isinstance(metric, RatioMetric):
        return window_of(spec, metric.numerator)
    return metric.window


def pre_covariate(spec: ExperimentSpec, metric_id: str) -> str | None:
    """The derived pre-period metric that adjusts ``metric_id`` (CUPED on its own history), when the
    spec has ``pre_days`` and the metric's rows are dated; ratios and ordinals have none."""
    base = split_id(metric_id)[0]
    metric = spec.metric(base)
    if spec.pre_days == 0 or not isinstance(metric, BinaryMetric | ContinuousMetric | CountMetric):
        return None
    return derived_id(base, "pre") if windowed(spec, metric) else None


def expand(spec: ExperimentSpec) -> ExperimentSpec:
    """The spec with its derived metrics, each metric's windows right after it and the product split
    last (module docstring); the spec itself when it has none. Not validated again: derived metrics
    are copies of validated ones."""
    if any(SEPARATOR in m.id for m in spec.metrics):  # already expanded
        return spec
    metrics = [m for metric in spec.metrics for m in (metric, *_windows(spec, metric))]
    metrics += _components(spec)
    if len(metrics) == len(spec.metrics):
        return spec
    return spec.model_copy(update={"metrics": tuple(metrics)})


def _windows(spec: ExperimentSpec, metric: AnyMetric) -> Iterator[AnyMetric]:
    """The metric in each window other than its own: during, post and total with ``post_days``, and
    its pre-period (a covariate) with ``pre_days``."""
    if not windowed(spec, metric):
        return
    windows = (["during", "post", "total"] if spec.post_days > 0 else []) + (
        ["pre"] if spec.pre_days > 0 else []
    )
    for window in windows:
        if window == window_of(spec, metric.id):
            continue
        if window == "pre" and pre_covariate(spec, metric.id) is None:
            continue
        yield _in_window(spec, metric, window)


def _in_window(spec: ExperimentSpec, metric: AnyMetric, window: str) -> AnyMetric:
    new_id = derived_id(metric.id, window)
    if isinstance(metric, RatioMetric):
        parts = {p: _part_in(spec, getattr(metric, p), window) for p in ("numerator", "denominator")}
        return metric.model_copy(update={"id": new_id, "role": None, **parts})
    return metric.model_copy(update={"id": new_id, "role": None, "window": window})


def _part_in(spec: ExperimentSpec, metric_id: str, window: str) -> str:
    """The id of a ratio's numerator or denominator in ``window`` (itself when that is its own)."""
    return metric_id if window_of(spec, metric_id) == window else derived_id(metric_id, window)


def money_metrics(spec: ExperimentSpec) -> dict[str, str | None]:
    """The metrics behind revenue, units sold, orders, redeemed orders, discount and conversions
    (declared in ``economics``, else the metrics named so; None: derived by the economics)."""
    economics = spec.economics or Economics()
    kinds = {m.id: m.kind for m in spec.metrics}

    def named(name: str, kind: str) -> str | None:
        return name if kinds.get(name) == kind else None

    return {
        "revenue": economics.revenue or named("revenue", "continuous") or spec.primary,
        "units": economics.units,
        "orders": economics.orders or named("orders", "count"),
        "redemptions": economics.redemptions,
        "discount": economics.discount,
        "conversion": economics.conversion or named("conversion", "binary"),
    }


def additive(metric: AnyMetric) -> bool:
    """A metric whose value over a set of rows is the sum of its values over any partition of them
    (an uncapped, unfiltered count or continuous sum): only such money metrics can be split into
    parts that add up to the whole."""
    if not isinstance(metric, ContinuousMetric | CountMetric):
        return False
    summed = getattr(metric, "agg", "sum") == "sum"
    return summed and metric.capping is None and metric.where is None


def split_money(spec: ExperimentSpec) -> list[str]:
    """The money metrics that margin depends on (every one but conversions), which must be
    :func:`additive` for the net margin to be split by window or product."""
    found = [name for key, name in money_metrics(spec).items() if key != "conversion" and name is not None]
    return list(dict.fromkeys(found))


def decomposed(spec: ExperimentSpec) -> list[str]:
    """Declared metrics the economics splits by product: the additive money metrics (every one but
    conversions), whose parts add up to them."""
    economics = spec.economics
    if economics is None or economics.promoted is None:
        return []
    return split_money(spec)


def _components(spec: ExperimentSpec) -> list[AnyMetric]:
    """The money metrics split by product during the promotion (``economics.promoted``)."""
    economics = spec.economics
    if economics is None or economics.promoted is None:
        return []
    promoted = economics.promoted
    filters = {
        "promoted": RowFilter(column=promoted.column, in_=promoted.in_),
        "other": RowFilter(column=promoted.column, not_in=(*promoted.in_, *promoted.substitutes)),
    }
    if promoted.substitutes:
        filters["substitutes"] = RowFilter(column=promoted.column, in_=promoted.substitutes)
    found = []
    for metric_id in decomposed(spec):
        metric = spec.metric(metric_id)
        for part, row_filter in filters.items():
            update = {"id": derived_id(metric_id, part), "role": None, "window": "during"}
            found.append(metric.model_copy(update=update | {"where": row_filter}))
    return found
