"""Rules that relate several fields of a structurally valid spec. All problems are collected."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

from promolab.errors import Problem, SpecError
from promolab.spec.buckets import WEIGHT_TOLERANCE, bucket_ranges
from promolab.spec.models import (
    ECONOMIC_QUANTITIES,
    UNITS_SOURCE,
    AmountOff,
    BinaryMetric,
    Bundle,
    CountMetric,
    Coupon,
    Economics,
    OrdinalMetric,
    PricePointVariant,
    RatioMetric,
)

if TYPE_CHECKING:
    from promolab.spec.models import AnyMetric, ExperimentSpec


def raise_on_problems(spec: ExperimentSpec) -> None:
    """Raise :class:`SpecError` listing every cross-field problem of ``spec``, if any."""
    problems = list(consistency_problems(spec))
    if problems:
        raise SpecError(problems)


def consistency_problems(spec: ExperimentSpec) -> Iterator[Problem]:
    """Yield every cross-field problem, in spec order."""
    yield from _dates(spec)
    yield from _variants(spec)
    yield from _buckets(spec)
    yield from _metrics(spec)
    yield from _guardrails(spec)
    yield from _offers(spec)
    yield from _economics(spec)
    yield from _promoted(spec)
    yield from _design(spec)
    yield from _decision(spec)
    yield from _bayes(spec)
    yield from _sequential(spec)
    yield from _data(spec)
    yield from _simulation(spec)


def _dates(spec: ExperimentSpec) -> Iterator[Problem]:
    if spec.end < spec.start:
        yield Problem(("end",), f"must be on or after start ({spec.start}), got {spec.end}")
    if spec.pre_days > 0 and spec.data.timestamp is None:
        yield Problem(
            ("pre_days",), "needs data.timestamp: without dates no row can be told to be before start"
        )
    if (spec.start - dt.date.min).days < spec.pre_days:
        yield Problem(("pre_days",), f"start ({spec.start}) - {spec.pre_days} days is before the first date")
    if (dt.date.max - spec.end).days < spec.post_days:
        yield Problem(("post_days",), f"end ({spec.end}) + {spec.post_days} days is past the last date")


def _buckets(spec: ExperimentSpec) -> Iterator[Problem]:
    """The hash assignment can honour the weights and the holdout (what ``promolab assign`` needs)."""
    ids = [v.id for v in spec.variants]
    total = sum(v.weight for v in spec.variants)
    if len(ids) < 2 or len(set(ids)) < len(ids) or abs(total - 1) > WEIGHT_TOLERANCE:
        return  # reported by _variants
    try:
        bucket_ranges([(v.id, v.weight) for v in spec.variants], spec.design.holdout)
    except ValueError as error:
        field = ("design", "holdout") if str(error).startswith("holdout") else ("variants",)
        yield Problem(field, str(error).partition(": ")[2])


def _duplicates(ids: list[str], field: str) -> Iterator[Problem]:
    seen: set[str] = set()
    for index, item in enumerate(ids):
        if item in seen:
            yield Problem((field, index, "id"), f"duplicate id '{item}'")
        seen.add(item)


def _variants(spec: ExperimentSpec) -> Iterator[Problem]:
    if len(spec.variants) < 2:
        yield Problem(("variants",), f"needs at least 2 arms to compare, got {len(spec.variants)}")
    yield from _duplicates([v.id for v in spec.variants], "variants")
    controls = [i for i, v in enumerate(spec.variants) if v.kind == "control"]
    flagged = [i for i, v in enumerate(spec.variants) if v.reference and v.kind != "control"]
    for index in controls[1:]:
        yield Problem(("variants", index, "kind"), "only one variant may be the control")
    if controls:
        for index in flagged:
            yield Problem(
                ("variants", index, "reference"),
                "'reference: true' is only for specs without a control variant",
            )
    elif not flagged:
        yield Problem(
            ("variants",),
            "no reference arm: add a variant with kind 'control', or mark one 'reference: true'",
        )
    else:
        for index in flagged[1:]:
            yield Problem(("variants", index, "reference"), "only one variant may be the reference")
    total = sum(v.weight for v in spec.variants)
    if abs(total - 1) > WEIGHT_TOLERANCE:
        yield Problem(("variants",), f"weights must sum to 1, got {total:.6g}")


def _metrics(spec: ExperimentSpec) -> Iterator[Problem]:
    if not spec.metrics:
        yield Problem(("metrics",), "needs at least 1 metric, got none")
    yield from _duplicates([m.id for m in spec.metrics], "metrics")
    kinds = {m.id: m.kind for m in spec.metrics}
    if spec.primary not in kinds:
        yield Problem(("primary",), _unknown("metric", spec.primary, kinds))
    guarded = {g.metric for g in spec.guardrails}
    for index, metric in enumerate(spec.metrics):
        where = ("metrics", index)
        expected = "primary" if metric.id == spec.primary else ("guardrail" if metric.id in guarded else None)
        if metric.role is not None and expected is not None and metric.role != expected:
            yield Problem(
                (*where, "role"),
                f"'{metric.id}' is the {expected} metric, got role '{metric.role}'",
            )
        if metric.role == "primary" and metric.id != spec.primary:
            yield Problem((*where, "role"), f"role 'primary' but spec.primary is '{spec.primary}'")
        if metric.role == "guardrail" and metric.id not in guarded:
            yield Problem((*where, "role"), "role 'guardrail' needs a guardrails entry with its margin")
        if isinstance(metric, OrdinalMetric) and metric.top_box >= len(metric.levels):
            yield Problem(
                (*where, "top_box"),
                f"must be below the number of levels ({len(metric.levels)}), got {metric.top_box}",
            )
        yield from _missing(metric, where)
        yield from _row_filter(metric, where)
        yield from _window(spec, metric, where)
        if isinstance(metric, RatioMetric):
            for part in ("numerator", "denominator"):
                target = getattr(metric, part)
                if target not in kinds:
                    yield Problem((*where, part), _unknown("metric", target, kinds))
                elif kinds[target] in ("ratio", "ordinal"):
                    yield Problem(
                        (*where, part),
                        f"must be a binary, continuous or count metric, got {kinds[target]} '{target}'",
                    )
        else:
            yield from _source(spec, metric, where)


def _row_filter(metric: AnyMetric, where: tuple[str | int, ...]) -> Iterator[Problem]:
    """``where`` filters an event table's rows: a units-file metric has one row per unit."""
    if not isinstance(metric, RatioMetric) and metric.where is not None and metric.source == UNITS_SOURCE:
        yield Problem(
            (*where, "where"),
            "filters the rows of an event table; a units-file metric has one row per unit (filter "
            "the units file before, or read the metric from an event table)",
        )


def _window(spec: ExperimentSpec, metric: AnyMetric, where: tuple[str | int, ...]) -> Iterator[Problem]:
    """A post or total window needs dated event rows and post days; a ratio's parts share a window."""
    if isinstance(metric, RatioMetric):
        parts = [m for m in spec.metrics if m.id in (metric.numerator, metric.denominator)]
        windows = {getattr(m, "window", "during") for m in parts}
        if len(windows) > 1:
            yield Problem(
                where, f"numerator and denominator are measured in different windows ({sorted(windows)})"
            )
        return
    if metric.window == "during":
        return
    if isinstance(metric, OrdinalMetric):
        yield Problem((*where, "window"), "ordinal scores are not measured in windows: leave it out")
    elif metric.source == UNITS_SOURCE or spec.data.timestamp is None:
        yield Problem(
            (*where, "window"),
            f"'{metric.window}' needs dated event rows (an event table and data.timestamp)",
        )
    elif spec.post_days == 0:
        yield Problem((*where, "window"), f"'{metric.window}' needs post_days > 0")


def _promoted(spec: ExperimentSpec) -> Iterator[Problem]:
    """``economics.promoted`` splits revenue (and units) read from one orders table, uncapped and
    unfiltered, so that the parts add up to the whole."""
    from promolab.spec.windows import additive, decomposed

    econ = spec.economics
    if econ is None or econ.promoted is None:
        return
    metrics = {m.id: m for m in spec.metrics}
    found = [metrics[name] for name in decomposed(spec) if name in metrics]
    for metric in found:
        source = getattr(metric, "source", UNITS_SOURCE)
        if source == UNITS_SOURCE or isinstance(metric, RatioMetric | OrdinalMetric):
            yield Problem(
                ("economics", "promoted"),
                f"splits the metric '{metric.id}' by product: it must be read from an orders table "
                f"(data.tables), got source '{source}'",
            )
        elif not additive(metric):
            yield Problem(
                ("economics", "promoted"),
                f"splits the metric '{metric.id}' by product: the parts add up to it only for a sum "
                "without its own 'where' and 'capping'",
            )
    overlap = set(econ.promoted.in_) & set(econ.promoted.substitutes)
    if overlap:
        yield Problem(
            ("economics", "promoted", "substitutes"),
            f"{sorted(map(str, overlap))} are listed as promoted and as substitutes",
        )


def _missing(metric: AnyMetric, where: tuple[str | int, ...]) -> Iterator[Problem]:
    """``missing`` applies to a column, and each choice to the kinds it makes sense for."""
    if isinstance(metric, RatioMetric) or metric.missing is None:
        return
    if metric.column is None:
        yield Problem(
            (*where, "missing"), "applies to a metric's column; this metric counts rows, it has none"
        )
    elif isinstance(metric, OrdinalMetric) and metric.missing == "zero":
        yield Problem(
            (*where, "missing"), "an ordinal score has no zero; a missing score is no response (drop)"
        )
    elif metric.missing == "drop" and metric.source == UNITS_SOURCE and not isinstance(metric, OrdinalMetric):
        yield Problem(
            (*where, "missing"),
            "'drop' leaves event rows out; a unit of the units file cannot leave one metric only "
            "(that would bias it): use 'zero' or 'error'",
        )


def _source(spec: ExperimentSpec, metric: object, where: tuple[str | int, ...]) -> Iterator[Problem]:
    source = getattr(metric, "source")  # noqa: B009 - every non-ratio metric has one
    if source == UNITS_SOURCE:
        if spec.data.units is None:
            yield Problem((*where, "source"), "source 'units' needs a data.units file")
        if isinstance(metric, BinaryMetric | CountMetric) and metric.column is None:
            yield Problem((*where, "column"), "a metric read from 'units' needs a column")
    elif source not in spec.data.tables:
        tables = {**dict.fromkeys(spec.data.tables), UNITS_SOURCE: None}
        yield Problem((*where, "source"), _unknown("table", source, tables))


def _guardrails(spec: ExperimentSpec) -> Iterator[Problem]:
    kinds = {m.id: m for m in spec.metrics}
    seen: set[str] = set()
    for index, guardrail in enumerate(spec.guardrails):
        where = ("guardrails", index, "metric")
        if guardrail.metric not in kinds:
            yield Problem(where, _unknown("metric", guardrail.metric, kinds))
        elif guardrail.metric == spec.primary:
            yield Problem(where, f"'{guardrail.metric}' is the primary metric; it cannot be a guardrail")
        elif spec.role(guardrail.metric) == "treatment_only":
            yield Problem(where, f"'{guardrail.metric}' is treatment_only; it cannot be a guardrail")
        if guardrail.metric in seen:
            yield Problem(where, f"'{guardrail.metric}' has two guardrails entries")
        seen.add(guardrail.metric)
    primary = kinds.get(spec.primary)
    if primary is not None and primary.role == "treatment_only":
        yield Problem(("primary",), "a treatment_only metric cannot be primary")


def _offers(spec: ExperimentSpec) -> Iterator[Problem]:
    """Offer parameters against their own minimum spend and, when given, the list price."""
    unit_price = spec.economics.unit_price if spec.economics is not None else None
    for index, variant in enumerate(spec.variants):
        where = ("variants", index)
        if isinstance(variant, AmountOff | Coupon):
            ceiling, what = (
                (variant.min_spend, "min_spend")
                if variant.min_spend is not None
                else (unit_price, "economics.unit_price")
            )
            if ceiling is not None and variant.value >= ceiling:
                yield Problem(
                    (*where, "value"),
                    f"{variant.mechanic} must be below {what} ({ceiling:g}), got {variant.value:g}",
                )
        if isinstance(variant, Bundle) and unit_price is not None:
            full = variant.items * unit_price
            if variant.bundle_price >= full:
                yield Problem(
                    (*where, "bundle_price"),
                    f"must be below items x unit_price ({full:g}), got {variant.bundle_price:g}",
                )


def _economics(spec: ExperimentSpec) -> Iterator[Problem]:
    econ = spec.economics
    if econ is None:
        return
    yield from unit_cost_problems(econ)
    ids = {v.id: None for v in spec.variants}
    for field in ("fixed_cost", "media_cost"):
        for key in getattr(econ, field):
            if key not in ids:
                yield Problem(("economics", field, key), _unknown("variant", key, ids))
    priced = econ.unit_price is not None or all(isinstance(v, PricePointVariant) for v in spec.variants)
    if econ.unit_cost and not priced and econ.units is None:
        yield Problem(
            ("economics", "unit_cost"),
            "needs unit_price (or a units metric in economics.units) to count the units sold it costs",
        )
    metrics = {m.id: m for m in spec.metrics}
    for field, kinds in ECONOMIC_METRICS.items():
        name = getattr(econ, field)
        if name is None:
            continue
        if name not in metrics:
            yield Problem(("economics", field), _unknown("metric", name, metrics))
        elif metrics[name].kind not in kinds:
            yield Problem(
                ("economics", field),
                f"'{name}' is a {metrics[name].kind} metric; expected {' or '.join(kinds)}",
            )


ECONOMIC_METRICS = {  # economics field -> metric kinds it may name
    "revenue": ("continuous",),
    "units": ("count", "continuous"),
    "orders": ("count",),
    "redemptions": ("count",),
    "discount": ("continuous",),
    "conversion": ("binary",),
}


def unit_cost_problems(econ: Economics) -> Iterator[Problem]:
    """A unit cost at or above the list price (every spec kind's economics)."""
    if econ.unit_price is not None and econ.unit_cost is not None and econ.unit_cost >= econ.unit_price:
        yield Problem(
            ("economics", "unit_cost"),
            f"must be below unit_price ({econ.unit_price:g}), got {econ.unit_cost:g}",
        )


def _design(spec: ExperimentSpec) -> Iterator[Problem]:
    metrics = {m.id: m for m in spec.metrics}
    alpha, confidence = spec.design.alpha, spec.analysis.confidence
    if spec.design.alternative == "two-sided" and abs(alpha - (1 - confidence)) > 1e-9:
        yield Problem(
            ("design", "alpha"),
            f"{alpha:g} disagrees with analysis.confidence {confidence:g}: the test would be sized at one "
            f"error rate and analysed at another; set analysis.confidence: {1 - alpha:g} "
            f"(or design.alpha: {1 - confidence:g})",
        )
    if spec.design.metric is not None and spec.design.metric not in metrics:
        yield Problem(("design", "metric"), _unknown("metric", spec.design.metric, metrics))
    if spec.design.mde is not None and spec.design.total_units is not None:
        yield Problem(
            ("design",), "give 'mde' (to size the test) or 'total_units' (to get its MDE), not both"
        )
    for key, baseline in spec.design.baseline.items():
        where = ("design", "baseline", key)
        metric = metrics.get(key)
        if metric is None:
            yield Problem(where, _unknown("metric", key, metrics))
        elif isinstance(metric, BinaryMetric) and baseline.rate is None:
            yield Problem(where, f"binary metric '{key}' needs a 'rate', got mean/sd")
        elif not isinstance(metric, BinaryMetric) and baseline.rate is not None:
            yield Problem(where, f"{metric.kind} metric '{key}' needs 'mean' and 'sd', got a rate")


def _decision(spec: ExperimentSpec) -> Iterator[Problem]:
    if spec.decision is None:
        return
    target = spec.decision.metric
    allowed = {**{m.id: None for m in spec.metrics}, **dict.fromkeys(ECONOMIC_QUANTITIES)}
    if target not in allowed:
        yield Problem(("decision", "metric"), _unknown("metric or economic quantity", target, allowed))
    elif target in ECONOMIC_QUANTITIES and spec.economics is None:
        yield Problem(("decision", "metric"), f"'{target}' needs an economics block")


def _bayes(spec: ExperimentSpec) -> Iterator[Problem]:
    metrics = {m.id: m for m in spec.metrics}
    for key, prior in spec.analysis.bayes.priors.items():
        where = ("analysis", "bayes", "priors", key)
        metric = metrics.get(key)
        if metric is None:
            yield Problem(where, _unknown("metric", key, metrics))
        elif (prior.a is not None or prior.b is not None) and not isinstance(
            metric, BinaryMetric | CountMetric
        ):
            yield Problem(
                where, f"'a'/'b' set Beta (binary) or Gamma (count) priors; '{key}' is {metric.kind}"
            )
        elif isinstance(metric, BinaryMetric) and prior.b == 0:
            yield Problem((*where, "b"), "a Beta prior needs b > 0")
    tables = dict.fromkeys(spec.data.tables)
    for index, segmentation in enumerate(spec.analysis.segments):
        at: tuple[str | int, ...] = ("analysis", "segments", index)
        if segmentation.column is not None and spec.data.units is None and spec.data.assignments:
            yield Problem((*at, "column"), "segment columns are read from data.units, which is not set")
        if segmentation.rfm is not None and segmentation.rfm.source not in tables:
            yield Problem((*at, "rfm", "source"), _unknown("data table", segmentation.rfm.source, tables))
    names = [s.name for s in spec.analysis.segments]
    for index, name in enumerate(names):
        if name in names[:index]:
            yield Problem(("analysis", "segments", index), f"segmentation '{name}' is listed twice")


def _sequential(spec: ExperimentSpec) -> Iterator[Problem]:
    settings, where = spec.analysis.sequential, ("analysis", "sequential")
    outside = [d.isoformat() for d in settings.looks if not spec.start <= d <= spec.end]
    if outside:
        yield Problem(
            (*where, "looks"), f"looks must fall from start to end ({spec.start} to {spec.end}): {outside}"
        )
    mde = spec.design.mde
    if settings.futility and spec.design.metric not in (None, spec.primary):
        yield Problem(
            (*where, "futility"),
            "rules out design.mde.relative on the primary metric, but the design sizes "
            f"'{spec.design.metric}'",
        )
    elif settings.futility and (mde is None or mde.relative is None):
        yield Problem(
            (*where, "futility"),
            "needs design.mde.relative: the smallest lift worth finding, which futility rules out",
        )


def _data(spec: ExperimentSpec) -> Iterator[Problem]:
    data = spec.data
    for reserved, owner in ((UNITS_SOURCE, "data.units"), ("assignments", "data.assignments")):
        if reserved in data.tables:
            yield Problem(
                ("data", "tables", reserved),
                f"'{reserved}' is reserved for the {owner} file; name this table otherwise",
            )
    ids = {v.id: None for v in spec.variants}
    for raw, variant_id in (data.variant_values or {}).items():
        if variant_id not in ids:
            yield Problem(("data", "variant_values", raw), _unknown("variant", variant_id, ids))
    if data.variant_values is not None:
        missing = sorted(set(ids) - set(data.variant_values.values()))
        if missing:
            yield Problem(("data", "variant_values"), f"no raw label maps to variant(s) {missing}")
    if data.row_id and data.assignments is not None:
        yield Problem(
            ("data", "row_id"),
            "row ids only work when the units file also holds the variant (drop 'assignments')",
        )
    if data.units is None and any(spec.analysis.covariates):
        yield Problem(("analysis", "covariates"), "covariates are read from data.units, which is not set")


def _simulation(spec: ExperimentSpec) -> Iterator[Problem]:
    sim = spec.simulation
    if sim is None:
        return
    ids = {v.id: None for v in spec.variants}
    metrics = {m.id: None for m in spec.metrics}
    tables = dict.fromkeys(spec.data.tables)
    for key in sim.tables:
        if key not in tables:
            yield Problem(("simulation", "tables", key), _unknown("data table", key, tables))
    for key, table in sim.tables.items():
        if table.per is not None and table.per not in tables:
            yield Problem(("simulation", "tables", key, "per"), _unknown("data table", table.per, tables))
    if sim.categories and abs(sum(sim.categories.values()) - 1) > WEIGHT_TOLERANCE:
        yield Problem(
            ("simulation", "categories"), f"shares must sum to 1, got {sum(sim.categories.values()):.6g}"
        )
    promoted = spec.economics.promoted if spec.economics is not None else None
    if sim.categories and promoted is not None:
        for value in (*promoted.in_, *promoted.substitutes):
            if str(value) not in sim.categories:
                yield Problem(
                    ("simulation", "categories"),
                    _unknown("category", str(value), sim.categories) + " (economics.promoted names it)",
                )
    for key in sim.unit_rates:
        if key not in metrics:
            yield Problem(("simulation", "unit_rates", key), _unknown("metric", key, metrics))
    for variant_id, effect in sim.effects.items():
        where = ("simulation", "effects", variant_id)
        if variant_id not in ids:
            yield Problem(where, _unknown("variant", variant_id, ids))
        for key in effect.rates:
            if key not in tables:
                yield Problem((*where, "rates", key), _unknown("data table", key, tables))
        for key in effect.metrics:
            if key not in metrics:
                yield Problem((*where, "metrics", key), _unknown("metric", key, metrics))


def _unknown(what: str, got: str, known: Collection[str]) -> str:
    """Message for a reference to an undeclared name, with a did-you-mean hint."""
    from promolab.spec.hints import did_you_mean

    names = ", ".join(f"'{k}'" for k in known) or "none declared"
    return f"unknown {what} '{got}'{did_you_mean(got, list(known))}; declared: {names}"
