"""Property tests: randomly generated VALID specs validate, round-trip through YAML, and have one reference.

The strategies build plain spec dicts (what a user writes) that satisfy every rule of
:mod:`promolab.spec.checks` by construction: weights summing to 1, one reference arm, discount values below
their ceilings, metric sources that exist, guardrails with one margin, baselines matching metric kinds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promolab
from promolab.errors import format_path
from promolab.spec import dump_spec, load_spec, spec_from_dict, spec_hash, spec_to_dict

SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

CHANNELS = ["email", "sms", "push", "paid_social", "paid_search", "display", "direct_mail", "store", "in_app"]
UNITS = ["customer", "session", "store", "region", "user", "device", "market"]
MECHANICS = ["percent_off", "amount_off", "bogo", "bundle", "coupon", "gift", "free_shipping"]

# Slugs, including ones YAML would read as something else when unquoted.
slugs = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,11}", fullmatch=True) | st.sampled_from(
    ["no", "yes", "on", "off", "null", "true", "y", "n", "123", "0x1f", "1_000", "0o17", "1e3", "nan"]
)
# U+0085 (NEL) is left out: dump_spec loses it (see test_spec_roundtrip::test_dump_keeps_every_character).
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x85"), min_size=1, max_size=24)


def finite(low: float, high: float, **kwargs: Any) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False, **kwargs)


fractions = finite(0.01, 0.95)  # share of a ceiling, strictly below it


def unique_slugs(size: int, avoid: tuple[str, ...] = ()) -> st.SearchStrategy[list[str]]:
    return st.lists(slugs.filter(lambda s: s not in avoid), min_size=size, max_size=size, unique=True)


# --------------------------------------------------------------------------- variants


@st.composite
def treatment_arm(draw: st.DrawFn, arm_id: str, unit_price: float | None) -> dict[str, Any]:
    """A non-control arm with valid parameters (discount values below min_spend / unit_price)."""
    kind = draw(st.sampled_from(["price_point", "discount", "ad_creative", "channel"]))
    arm: dict[str, Any] = {"id": arm_id, "kind": kind}
    if kind == "price_point":
        arm["price"] = draw(finite(0.01, 1000))
    elif kind == "ad_creative":
        arm["creative"] = draw(texts)
        arm["headline"] = draw(texts)
        if draw(st.booleans()):
            arm["asset"] = draw(texts)
    elif kind == "channel":
        arm["channel"] = draw(st.sampled_from(CHANNELS))
        arm["cost_per_contact"] = draw(finite(0, 2))
    else:
        mechanic = draw(st.sampled_from(MECHANICS))
        arm["mechanic"] = mechanic
        if mechanic == "percent_off":
            arm["value"] = draw(finite(0, 100, exclude_min=True, exclude_max=True))
        elif mechanic in ("amount_off", "coupon"):
            min_spend = draw(st.none() | finite(1, 1000))
            ceiling = min_spend if min_spend is not None else unit_price
            if min_spend is not None:
                arm["min_spend"] = min_spend
            arm["value"] = ceiling * draw(fractions) if ceiling is not None else draw(finite(0.01, 1000))
        elif mechanic == "bogo":
            arm["buy"] = draw(st.integers(1, 4))
            arm["get"] = draw(st.integers(1, 4))
        elif mechanic == "bundle":
            items = draw(st.integers(2, 6))
            arm["items"] = items
            full = items * unit_price if unit_price is not None else None
            arm["bundle_price"] = full * draw(fractions) if full is not None else draw(finite(0.01, 1000))
        elif mechanic == "gift":
            arm["gift_cost"] = draw(finite(0.01, 100))
        else:
            arm["shipping_cost"] = draw(finite(0.01, 50))
    if kind != "channel" and draw(st.booleans()):
        arm["channel"] = draw(st.sampled_from(CHANNELS))
    return arm


@st.composite
def weights(draw: st.DrawFn, n: int) -> list[float]:
    """``n`` positive weights summing to 1: normalised draws, the last one fixed as 1 - sum(others)."""
    raw = draw(st.lists(finite(0.05, 1), min_size=n, max_size=n))
    total = sum(raw)
    head = [r / total for r in raw[:-1]]
    return [*head, 1 - sum(head)]


# --------------------------------------------------------------------------- metrics


@st.composite
def sourced_metric(draw: st.DrawFn, metric_id: str, sources: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["binary", "continuous", "count", "ordinal"]))
    source = draw(st.sampled_from(sources))
    metric: dict[str, Any] = {"id": metric_id, "kind": kind, "source": source}
    column = draw(st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True))
    if kind in ("continuous", "ordinal") or source == "units" or draw(st.booleans()):
        metric["column"] = column
    if kind == "continuous":
        metric["agg"] = draw(st.sampled_from(["sum", "mean", "max"]))
    if kind in ("continuous", "count") and draw(st.booleans()):
        metric["capping"] = draw(
            st.fixed_dictionaries({"percentile": finite(0.5, 1, exclude_min=True, exclude_max=True)})
            | st.fixed_dictionaries({"absolute": finite(0.01, 1e4)})
        )
    if kind == "ordinal":
        levels = sorted(draw(st.sets(st.integers(-5, 10), min_size=2, max_size=7)))
        metric["levels"] = levels
        metric["top_box"] = draw(st.integers(1, len(levels) - 1))
    if draw(st.booleans()):
        metric["direction"] = draw(st.sampled_from(["higher", "lower"]))
    return metric


def baseline_for(kind: str) -> st.SearchStrategy[dict[str, float]]:
    if kind == "binary":
        return st.fixed_dictionaries({"rate": finite(0.001, 0.999)})
    return st.fixed_dictionaries({"mean": finite(-100, 100), "sd": finite(0.01, 100)})


# --------------------------------------------------------------------------- the spec


@st.composite
def valid_specs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid spec dict and the id of its reference arm."""
    n = draw(st.integers(2, 6))
    arm_ids = draw(unique_slugs(n))
    with_control = draw(st.booleans())
    ref_index = draw(st.integers(0, n - 1))

    economics: dict[str, Any] | None = None
    unit_price: float | None = None
    if draw(st.booleans()):
        unit_price = draw(st.none() | finite(1, 500))
        economics = {"currency": draw(st.sampled_from(["USD", "EUR", "GBP", "JPY"]))}
        if unit_price is not None:
            economics["unit_price"] = unit_price
            if draw(st.booleans()):
                economics["unit_cost"] = unit_price * draw(finite(0, 0.95))
        elif draw(st.booleans()):
            economics["unit_cost"] = 0.0  # a positive cost needs a price to count the units it costs
        for field in ("fixed_cost", "media_cost"):
            chosen = draw(st.lists(st.sampled_from(arm_ids), unique=True, max_size=n))
            if chosen:
                economics[field] = {arm: draw(finite(0, 1e5)) for arm in chosen}

    variants = []
    for index, (arm_id, weight) in enumerate(zip(arm_ids, draw(weights(n)), strict=True)):
        if index == ref_index and with_control:
            arm: dict[str, Any] = {"id": arm_id, "kind": "control"}
        else:
            arm = draw(treatment_arm(arm_id, unit_price))
            if index == ref_index:
                arm["reference"] = True
        arm["weight"] = weight
        variants.append(arm)

    tables = draw(unique_slugs(draw(st.integers(1, 3)), avoid=("units",)))
    has_units = draw(st.booleans())
    has_assignments = not has_units or draw(st.booleans())
    data: dict[str, Any] = {"tables": {t: f"data/{t}.parquet" for t in tables}}
    if has_units:
        data["units"] = "data/units.parquet"
    if has_assignments:
        data["assignments"] = "data/assignments.parquet"

    sources = [*tables, "units"] if has_units else tables
    n_metrics = draw(st.integers(1, 5))
    metric_ids = draw(unique_slugs(n_metrics + 1))
    metrics = [draw(sourced_metric(m, sources)) for m in metric_ids[:n_metrics]]
    plain = [m["id"] for m in metrics if m["kind"] != "ordinal"]
    if plain and draw(st.booleans()):
        metrics.append(
            {
                "id": metric_ids[-1],
                "kind": "ratio",
                "numerator": draw(st.sampled_from(plain)),
                "denominator": draw(st.sampled_from(plain)),
            }
        )
    kinds = {m["id"]: m["kind"] for m in metrics}
    ids = list(kinds)
    primary = draw(st.sampled_from(ids))
    guarded = draw(st.lists(st.sampled_from([m for m in ids if m != primary] or [primary]), unique=True))
    guarded = [m for m in guarded if m != primary]
    guardrails = [
        draw(
            st.fixed_dictionaries({"metric": st.just(m), "max_relative_drop": finite(0.01, 0.99)})
            | st.fixed_dictionaries({"metric": st.just(m), "max_absolute_drop": finite(0.01, 100)})
        )
        for m in guarded
    ]
    for metric in metrics:  # declared roles, consistent with primary and guardrails
        if draw(st.booleans()):
            if metric["id"] == primary:
                metric["role"] = "primary"
            elif metric["id"] in guarded:
                metric["role"] = "guardrail"
            else:
                metric["role"] = draw(st.sampled_from(["secondary", "treatment_only"]))

    start = draw(st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)))
    spec: dict[str, Any] = {
        "id": draw(slugs),
        "name": draw(texts),
        "unit": draw(st.sampled_from(UNITS)),
        "start": start,
        "end": start + dt.timedelta(days=draw(st.integers(0, 120))),
        "variants": variants,
        "metrics": metrics,
        "primary": primary,
        "data": data,
    }
    if draw(st.booleans()):
        spec["hypothesis"] = draw(texts)
    if draw(st.booleans()):
        spec["post_days"] = draw(st.integers(0, 30))
    if guardrails:
        spec["guardrails"] = guardrails
    if economics is not None:
        spec["economics"] = economics

    design: dict[str, Any] = {
        "alpha": draw(finite(0.001, 0.2)),
        "power": draw(finite(0.5, 0.99)),
        "alternative": draw(st.sampled_from(["two-sided", "larger", "smaller"])),
    }
    if draw(st.booleans()):
        design["mde"] = draw(
            st.fixed_dictionaries({"relative": finite(0.001, 1)})
            | st.fixed_dictionaries({"absolute": finite(0.001, 100)})
        )
    if draw(st.booleans()):
        design["daily_units"] = draw(st.integers(1, 10**6))
    with_baseline = draw(st.lists(st.sampled_from(ids), unique=True))
    if with_baseline:
        design["baseline"] = {m: draw(baseline_for(kinds[m])) for m in with_baseline}
    spec["design"] = design

    analysis: dict[str, Any] = {"confidence": 1 - design["alpha"]}  # design and analysis agree
    if has_units and draw(st.booleans()):
        analysis["covariates"] = draw(st.lists(st.sampled_from(["pre_revenue", "tenure", "age"])))
    spec["analysis"] = analysis
    if draw(st.booleans()):
        choices = [*ids, "profit", "roi"] if economics is not None else ids
        spec["decision"] = {"metric": draw(st.sampled_from(choices))}
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(arm_ids), unique=True))
        spec["simulation"] = {
            "purchase_prob": draw(finite(0.01, 0.5)),
            "effects": {arm: {"conversion": draw(finite(-0.5, 1))} for arm in chosen},
        }
    if draw(st.booleans()):
        spec["tags"] = draw(st.lists(texts, max_size=3))
    return spec, arm_ids[ref_index]


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(case=valid_specs())
def test_generated_specs_validate_with_one_reference(case: tuple[dict[str, Any], str]) -> None:
    raw, reference = case
    spec = spec_from_dict(raw)
    assert spec.reference.id == reference
    flagged = [v.id for v in spec.variants if v.kind == "control" or v.reference]
    assert flagged == [reference]
    assert [v.id for v in spec.treatments] == [v["id"] for v in raw["variants"] if v["id"] != reference]
    assert abs(sum(v.weight for v in spec.variants) - 1) <= 1e-9
    assert spec.role(spec.primary) == "primary"


@SETTINGS
@given(case=valid_specs())
def test_generated_specs_round_trip_through_yaml(
    case: tuple[dict[str, Any], str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    spec = spec_from_dict(case[0])
    text = dump_spec(spec)

    again = spec_from_dict(yaml.safe_load(text))
    assert again == spec
    assert spec_hash(again) == spec_hash(spec)

    path = tmp_path_factory.mktemp("roundtrip") / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_spec(path)  # the strict loader, as the CLI reads it
    assert spec_to_dict(loaded) == spec_to_dict(spec)
    assert spec_hash(loaded) == spec_hash(spec)
    assert dump_spec(loaded) == text


@SETTINGS
@given(case=valid_specs())
def test_plain_dict_form_round_trips(case: tuple[dict[str, Any], str]) -> None:
    spec = spec_from_dict(case[0])
    assert spec_from_dict(spec_to_dict(spec)) == spec
    assert spec_from_dict(spec.model_dump(mode="json")) == spec


@SETTINGS
@given(case=valid_specs(), factor=finite(1.02, 1.5), index=st.integers(0, 5))
def test_breaking_the_weight_sum_is_reported(
    case: tuple[dict[str, Any], str], factor: float, index: int
) -> None:
    raw, _ = case
    arm = raw["variants"][index % len(raw["variants"])]
    arm["weight"] = min(arm["weight"] * factor, 1.0)
    with pytest.raises(promolab.SpecError) as info:
        spec_from_dict(raw)
    assert [(format_path(p.path), p.message.split(",")[0]) for p in info.value.problems] == [
        ("variants", "weights must sum to 1")
    ]
