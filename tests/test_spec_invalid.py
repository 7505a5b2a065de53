"""Invalid specs: each one is a small mutation of the valid spring example, and each must be rejected with
the specific problem (exact field path, distinctive message), every problem at once, with YAML lines."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import promolab
from promolab.errors import Problem, format_path
from promolab.spec import spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
SPRING = ROOT / "experiments" / "spring-discount.yaml"

Raw = dict[str, Any]
Mutation = Callable[[Raw], None]


def base_spec() -> Raw:
    """A fresh, valid spec dict (the spring example as plain YAML data)."""
    return yaml.safe_load(SPRING.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- mutation helpers


def _parts(path: str) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in path.split(".")]


def _parent(raw: Raw, path: str) -> tuple[Any, str | int]:
    *head, last = _parts(path)
    node: Any = raw
    for part in head:
        node = node[part]
    return node, last


def put(path: str, value: object) -> Mutation:
    """Set the value at a dotted path (``variants.1.value``), creating nothing but the last key."""

    def mutate(raw: Raw) -> None:
        node, last = _parent(raw, path)
        node[last] = copy.deepcopy(value)

    return mutate


def drop(path: str) -> Mutation:
    """Delete the key or list item at a dotted path."""

    def mutate(raw: Raw) -> None:
        node, last = _parent(raw, path)
        del node[last]

    return mutate


def append(path: str, value: object) -> Mutation:
    """Append to the list at a dotted path."""

    def mutate(raw: Raw) -> None:
        node, last = _parent(raw, path)
        node[last].append(copy.deepcopy(value))

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(raw: Raw) -> None:
        for mutation in mutations:
            mutation(raw)

    return mutate


def rejected(raw: object) -> promolab.SpecError:
    with pytest.raises(promolab.SpecError) as info:
        spec_from_dict(raw)
    return info.value


def listing(problems: tuple[Problem, ...]) -> str:
    return "\n".join(f"{format_path(p.path)}: {p.message}" for p in problems)


def assert_problem(error: promolab.SpecError, path: str, message: str, count: int | None = 1) -> None:
    """``error`` has a problem at exactly ``path`` whose text contains ``message``; ``count`` in all."""
    hits = [p for p in error.problems if format_path(p.path) == path and message in p.message]
    assert hits, f"no problem at {path!r} containing {message!r}; got:\n{listing(error.problems)}"
    if count is not None:
        assert len(error.problems) == count, listing(error.problems)
    assert f"{path}: " in str(error)


# --------------------------------------------------------------------------- variants used as replacements

W = 0.25  # every spring arm has weight 0.25


def variant(variant_id: str, **fields: object) -> dict[str, object]:
    return {"id": variant_id, "weight": W, **fields}


CASES = [
    # ---- unknown keys, with did-you-mean hints
    pytest.param(
        put("hypothesys", "typo"),
        "hypothesys",
        "unknown key 'hypothesys' (did you mean 'hypothesis'?)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        put("variants.1.valeu", 20),
        "variants[1].valeu",
        "unknown key 'valeu' (did you mean 'value'?)",
        id="unknown-key-in-variant",
    ),
    pytest.param(
        put("metrics.1.colum", "amount"),
        "metrics[1].colum",
        "unknown key 'colum' (did you mean 'column'?)",
        id="unknown-key-in-metric",
    ),
    pytest.param(
        put("economics.unit_prise", 40),
        "economics.unit_prise",
        "unknown key 'unit_prise' (did you mean 'unit_price'?)",
        id="unknown-key-in-economics",
    ),
    pytest.param(
        put("design.alpah", 0.1),
        "design.alpah",
        "unknown key 'alpah' (did you mean 'alpha'?)",
        id="unknown-key-in-design",
    ),
    pytest.param(
        put("data.tabels", {}),
        "data.tabels",
        "unknown key 'tabels' (did you mean 'tables'?)",
        id="unknown-key-in-data",
    ),
    pytest.param(
        put("guardrails.0.max_relative_dorp", 0.1),
        "guardrails[0].max_relative_dorp",
        "(did you mean 'max_relative_drop'?)",
        id="unknown-key-in-guardrail",
    ),
    pytest.param(
        put("metrics.1.capping", {"percentil": 0.99}),
        "metrics[1].capping.percentil",
        "unknown key 'percentil' (did you mean 'percentile'?); allowed: percentile, absolute",
        id="unknown-key-in-capping",
    ),
    pytest.param(
        put("simulation.effects.pct15.conversoin", 0.1),
        "simulation.effects.pct15.conversoin",
        "(did you mean 'conversion'?)",
        id="unknown-key-in-simulation-effect",
    ),
    # ---- ids
    pytest.param(
        put("id", "Spring Discount"),
        "id",
        "must be a lowercase slug (a-z, 0-9, '-', '_'), got 'Spring Discount'",
        id="bad-slug-spec-id",
    ),
    pytest.param(
        put("variants.1.id", "Pct15"),
        "variants[1].id",
        "must be a lowercase slug",
        id="bad-slug-variant-id",
    ),
    pytest.param(
        both(
            put("variants.3.id", "save10"),
            drop("economics.fixed_cost.bogo"),
            drop("simulation.effects.bogo"),
        ),
        "variants[3].id",
        "duplicate id 'save10'",
        id="duplicate-variant-id",
    ),
    pytest.param(
        append("metrics", {"id": "conversion", "kind": "binary", "source": "orders"}),
        "metrics[8].id",
        "duplicate id 'conversion'",
        id="duplicate-metric-id",
    ),
    # ---- arms, reference, weights
    pytest.param(
        put("variants.1", variant("pct15", kind="control")),
        "variants[1].kind",
        "only one variant may be the control",
        id="two-controls",
    ),
    pytest.param(
        put("variants.0", variant("control", kind="discount", mechanic="percent_off", value=5)),
        "variants",
        "no reference arm: add a variant with kind 'control', or mark one 'reference: true'",
        id="no-reference-arm",
    ),
    pytest.param(
        put("variants.1.reference", True),
        "variants[1].reference",
        "'reference: true' is only for specs without a control variant",
        id="reference-beside-control",
    ),
    pytest.param(
        both(
            put("variants.0", variant("control", kind="price_point", price=40, reference=True)),
            put("variants.2.reference", True),
        ),
        "variants[2].reference",
        "only one variant may be the reference",
        id="two-references",
    ),
    pytest.param(
        put("variants.0.weight", 0.3),
        "variants",
        "weights must sum to 1, got 1.05",
        id="weights-not-summing-to-one",
    ),
    pytest.param(
        put("variants.0.weight", 0),
        "variants[0].weight",
        "must be greater than 0, got 0",
        id="weight-zero",
    ),
    pytest.param(
        put("variants.2.weight", -0.25),
        "variants[2].weight",
        "must be greater than 0, got -0.25",
        id="weight-negative",
    ),
    pytest.param(
        put("variants.0.weight", 1.5),
        "variants[0].weight",
        "must be less than or equal to 1, got 1.5",
        id="weight-above-one",
    ),
    pytest.param(
        put("design", {"alpha": 0.1}),
        "design.alpha",
        "0.1 disagrees with analysis.confidence 0.95: the test would be sized at one error rate and "
        "analysed at another; set analysis.confidence: 0.9 (or design.alpha: 0.05)",
        id="alpha-and-confidence-disagree",
    ),
    # ---- variant kinds and mechanics
    pytest.param(
        put("variants.1.kind", "discont"),
        "variants[1].kind",
        "must be one of control, price_point, discount, ad_creative, channel, treatment, got 'discont' "
        "(did you mean 'discount'?)",
        id="unknown-variant-kind",
    ),
    pytest.param(
        drop("variants.1.kind"),
        "variants[1].kind",
        "required field is missing",
        id="variant-kind-missing",
    ),
    pytest.param(
        put("variants.1.mechanic", "percent_of"),
        "variants[1].mechanic",
        "got 'percent_of' (did you mean 'percent_off'?)",
        id="unknown-discount-mechanic",
    ),
    pytest.param(
        put("variants.1.value", 0),
        "variants[1].value",
        "percent_off must be in (0, 100), got 0",
        id="percent-off-zero",
    ),
    pytest.param(
        put("variants.1.value", 150),
        "variants[1].value",
        "percent_off must be in (0, 100), got 150",
        id="percent-off-150",
    ),
    pytest.param(
        put("variants.2.value", 50),
        "variants[2].value",
        "amount_off must be below min_spend (50), got 50",
        id="amount-off-at-min-spend",
    ),
    pytest.param(
        both(drop("variants.2.min_spend"), put("variants.2.value", 45)),
        "variants[2].value",
        "amount_off must be below economics.unit_price (40), got 45",
        id="amount-off-above-unit-price-without-min-spend",
    ),
    pytest.param(
        # The rule "the amount off must be below min_spend" does not depend on economics.
        both(drop("economics"), put("decision.metric", "revenue"), put("variants.2.value", 60)),
        "variants[2].value",
        "amount_off must be below min_spend (50), got 60",
        id="amount-off-above-min-spend-without-economics",
    ),
    pytest.param(
        put("variants.2", variant("save10", kind="discount", mechanic="coupon", value=20, min_spend=20)),
        "variants[2].value",
        "coupon must be below min_spend (20), got 20",
        id="coupon-at-min-spend",
    ),
    pytest.param(
        put("variants.3", variant("bogo", kind="discount", mechanic="bundle", items=1, bundle_price=30)),
        "variants[3].items",
        "must be greater than or equal to 2, got 1",
        id="bundle-one-item",
    ),
    pytest.param(
        put("variants.3", variant("bogo", kind="discount", mechanic="bundle", items=2, bundle_price=80)),
        "variants[3].bundle_price",
        "must be below items x unit_price (80), got 80",
        id="bundle-price-not-below-items-times-price",
    ),
    pytest.param(
        put("variants.3", variant("bogo", kind="discount", mechanic="gift", gift_cost=-5)),
        "variants[3].gift_cost",
        "must be greater than 0, got -5",
        id="gift-cost-negative",
    ),
    pytest.param(
        put("variants.1", variant("pct15", kind="price_point", price=0)),
        "variants[1].price",
        "must be greater than 0, got 0",
        id="price-point-zero",
    ),
    pytest.param(
        put("variants.0.channel", "emial"),
        "variants[0].channel",
        "got 'emial' (did you mean 'email'?)",
        id="unknown-channel",
    ),
    pytest.param(
        put("variants.1", variant("pct15", kind="channel", channel="sms")),
        "variants[1].cost_per_contact",
        "required field is missing",
        id="channel-variant-without-cost-per-contact",
    ),
    # ---- top-level fields
    pytest.param(
        put("end", dt.date(2026, 2, 1)),
        "end",
        "must be on or after start (2026-03-01), got 2026-02-01",
        id="end-before-start",
    ),
    pytest.param(
        put("unit", "custmer"),
        "unit",
        "got 'custmer' (did you mean 'customer'?)",
        id="unknown-unit",
    ),
    pytest.param(
        put("primary", "revnue"),
        "primary",
        "unknown metric 'revnue' (did you mean 'revenue'?)",
        id="primary-not-declared",
    ),
    # ---- guardrails
    pytest.param(
        put("guardrails.0.metric", "satisfacton"),
        "guardrails[0].metric",
        "unknown metric 'satisfacton' (did you mean 'satisfaction'?)",
        id="guardrail-metric-undeclared",
    ),
    pytest.param(
        put("guardrails.0.metric", "revenue"),
        "guardrails[0].metric",
        "'revenue' is the primary metric; it cannot be a guardrail",
        id="guardrail-on-primary",
    ),
    pytest.param(
        put("guardrails.0.max_absolute_drop", 0.1),
        "guardrails[0]",
        "give exactly one of 'max_relative_drop' or 'max_absolute_drop'",
        id="guardrail-with-both-margins",
    ),
    pytest.param(
        drop("guardrails.0.max_relative_drop"),
        "guardrails[0]",
        "give exactly one of 'max_relative_drop' or 'max_absolute_drop'",
        id="guardrail-without-margin",
    ),
    pytest.param(
        append("guardrails", {"metric": "satisfaction", "max_absolute_drop": 0.2}),
        "guardrails[1].metric",
        "'satisfaction' has two guardrails entries",
        id="guardrail-twice",
    ),
    # ---- metrics
    pytest.param(
        put("metrics.0.kind", "binnary"),
        "metrics[0].kind",
        "got 'binnary' (did you mean 'binary'?)",
        id="unknown-metric-kind",
    ),
    pytest.param(
        put("metrics.3.numerator", "revnue"),
        "metrics[3].numerator",
        "unknown metric 'revnue' (did you mean 'revenue'?)",
        id="ratio-numerator-undeclared",
    ),
    pytest.param(
        both(drop("economics.unit_price"), drop("economics.units")),
        "economics.unit_cost",
        "needs unit_price (or a units metric in economics.units)",
        id="economics-cost-without-price",
    ),
    pytest.param(
        put("economics.units", "unit_sold"),
        "economics.units",
        "unknown metric 'unit_sold' (did you mean 'units_sold'?)",
        id="economics-units-undeclared",
    ),
    pytest.param(
        put("economics.discount", "conversion"),
        "economics.discount",
        "'conversion' is a binary metric; expected continuous",
        id="economics-discount-wrong-kind",
    ),
    pytest.param(
        append(
            "metrics", {"id": "aov_per_order", "kind": "ratio", "numerator": "aov", "denominator": "orders"}
        ),
        "metrics[8].numerator",
        "must be a binary, continuous or count metric, got ratio 'aov'",
        id="ratio-of-a-ratio",
    ),
    pytest.param(
        put("metrics.3.denominator", "satisfaction"),
        "metrics[3].denominator",
        "must be a binary, continuous or count metric, got ordinal 'satisfaction'",
        id="ratio-of-an-ordinal",
    ),
    pytest.param(
        put("metrics.4.levels", [1, 3, 2]),
        "metrics[4].levels",
        "levels must be strictly increasing, got [1, 3, 2]",
        id="ordinal-levels-not-increasing",
    ),
    pytest.param(
        put("metrics.4.top_box", 5),
        "metrics[4].top_box",
        "must be below the number of levels (5), got 5",
        id="ordinal-top-box-too-large",
    ),
    pytest.param(
        put("metrics.0.source", "ordrs"),
        "metrics[0].source",
        "unknown table 'ordrs' (did you mean 'orders'?); declared: 'orders', 'survey', 'pre_orders', 'units'",
        id="metric-source-not-a-table",
    ),
    pytest.param(
        both(
            put("metrics.0", {"id": "conversion", "kind": "binary", "source": "units", "column": "bought"}),
            drop("data.units"),
            drop("analysis"),
        ),
        "metrics[0].source",
        "source 'units' needs a data.units file",
        id="units-source-without-data-units",
    ),
    pytest.param(
        put("metrics.0.source", "units"),
        "metrics[0].column",
        "a metric read from 'units' needs a column",
        id="binary-from-units-without-column",
    ),
    pytest.param(
        put("metrics.1.capping", {"percentile": 0.99, "absolute": 500}),
        "metrics[1].capping",
        "give exactly one of 'percentile' (e.g. 0.99) or 'absolute'",
        id="capping-with-percentile-and-absolute",
    ),
    pytest.param(
        put("metrics.4.role", "treatment_only"),
        "guardrails[0].metric",
        "'satisfaction' is treatment_only; it cannot be a guardrail",
        id="guardrail-on-treatment-only-metric",
    ),
    # ---- economics
    pytest.param(
        put("economics.unit_cost", 40),
        "economics.unit_cost",
        "must be below unit_price (40), got 40",
        id="unit-cost-not-below-unit-price",
    ),
    pytest.param(
        put("economics.fixed_cost.pct20", 100),
        "economics.fixed_cost.pct20",
        "unknown variant 'pct20' (did you mean 'pct15'?)",
        id="fixed-cost-key-not-a-variant",
    ),
    pytest.param(
        put("economics.currency", "usd"),
        "economics.currency",
        "got 'usd'",
        id="currency-not-iso-code",
    ),
    # ---- decision
    pytest.param(
        put("decision.metric", "revnue"),
        "decision.metric",
        "unknown metric or economic quantity 'revnue' (did you mean 'revenue'?)",
        id="decision-metric-unknown",
    ),
    pytest.param(
        drop("economics"),
        "decision.metric",
        "'profit' needs an economics block",
        id="decision-profit-without-economics",
    ),
    # ---- design
    pytest.param(
        put("design.baseline.revnue", {"mean": 4.0, "sd": 19.0}),
        "design.baseline.revnue",
        "unknown metric 'revnue' (did you mean 'revenue'?)",
        id="baseline-for-unknown-metric",
    ),
    pytest.param(
        put("design.baseline.revenue", {"rate": 0.1}),
        "design.baseline.revenue",
        "continuous metric 'revenue' needs 'mean' and 'sd', got a rate",
        id="baseline-rate-for-continuous-metric",
    ),
    pytest.param(
        put("design.baseline.conversion", {"mean": 0.1, "sd": 0.3}),
        "design.baseline.conversion",
        "binary metric 'conversion' needs a 'rate', got mean/sd",
        id="baseline-moments-for-binary-metric",
    ),
    pytest.param(
        put("design.mde", {"relative": 0.05, "absolute": 1.0}),
        "design.mde",
        "give exactly one of 'relative' or 'absolute'",
        id="mde-relative-and-absolute",
    ),
    pytest.param(
        put("design.metric", "revnue"),
        "design.metric",
        "unknown metric 'revnue' (did you mean 'revenue'?)",
        id="design-metric-unknown",
    ),
    pytest.param(
        put("design.total_units", 100_000),
        "design",
        "give 'mde' (to size the test) or 'total_units' (to get its MDE), not both",
        id="design-mde-and-total-units",
    ),
    # ---- data
    pytest.param(
        both(drop("data.assignments"), drop("data.units")),
        "data",
        "give 'assignments' or a 'units' file that holds the variant column",
        id="data-without-assignments-or-units",
    ),
    pytest.param(
        both(drop("data.units"), drop("analysis.segments")),
        "analysis.covariates",
        "covariates are read from data.units, which is not set",
        id="covariates-without-data-units",
    ),
    pytest.param(
        both(drop("data.units"), drop("analysis.covariates")),
        "analysis.segments[0].column",
        "segment columns are read from data.units, which is not set",
        id="segment-column-without-data-units",
    ),
    pytest.param(
        put("data.variant_values", {"c": "control", "p": "pct15", "s": "save10", "b": "bgo"}),
        "data.variant_values.b",
        "unknown variant 'bgo' (did you mean 'bogo'?)",
        id="variant-values-unknown-variant",
        # ... and bogo then has no raw label: two problems
    ),
    # ---- simulation
    pytest.param(
        put("simulation.effects.pct20", {"conversion": 0.1}),
        "simulation.effects.pct20",
        "unknown variant 'pct20' (did you mean 'pct15'?)",
        id="simulation-effect-for-unknown-variant",
    ),
]

COUNTS = {"variant-values-unknown-variant": 2, "guardrail-on-treatment-only-metric": 2}


def _case_id(param: Any) -> str:
    return param.id


@pytest.mark.parametrize(("mutation", "path", "message"), CASES)
def test_invalid_spec_is_rejected_with_the_specific_problem(
    request: pytest.FixtureRequest, mutation: Mutation, path: str, message: str
) -> None:
    raw = base_spec()
    mutation(raw)
    case = request.node.callspec.id
    assert_problem(rejected(raw), path, message, count=COUNTS.get(case, 1))


def test_enough_invalid_cases() -> None:
    assert len(CASES) >= 35
    assert len({_case_id(p) for p in CASES}) == len(CASES)


def test_the_base_spec_is_valid() -> None:
    spec = spec_from_dict(base_spec())
    assert spec.id == "spring-discount-2026"


# --------------------------------------------------------------------------- non-mapping entries


@pytest.mark.parametrize(
    ("where", "value", "internal"),
    [
        pytest.param("variants.1", "pct15", "_UnknownVariant", id="variant"),
        pytest.param("metrics.1", "revenue", "_UnknownMetric", id="metric"),
    ],
)
def test_a_list_entry_that_is_not_a_mapping_is_named_in_user_terms(
    where: str, value: str, internal: str
) -> None:
    raw = base_spec()
    put(where, value)(raw)
    error = rejected(raw)
    path = format_path(_parts(where))  # variants[1]
    assert [format_path(p.path) for p in error.problems] == [path]
    message = error.problems[0].message
    assert f"got {value!r}" in message
    # The message must not leak a private model name the user never wrote.
    assert internal not in message, message


def test_integer_raw_labels_do_not_render_an_internal_path_part() -> None:
    raw = base_spec()
    put("data.variant_values", {0: "control", 1: "pct15", 2: "save10", 3: "bogo"})(raw)
    error = rejected(raw)
    assert all(format_path(p.path).startswith("data.variant_values") for p in error.problems)
    # pydantic's internal '[key]' location marker must not reach the user.
    assert "[key]" not in str(error), str(error)


# --------------------------------------------------------------------------- every problem at once


def test_every_structural_problem_is_reported_at_once() -> None:
    raw = base_spec()
    both(
        put("hypothesys", "typo"),
        put("unit", "custmer"),
        put("variants.0.weight", 0),
        put("variants.1.value", 150),
        put("variants.3.mechanic", "bgoo"),
        put("metrics.4.levels", [3, 2]),
    )(raw)
    error = rejected(raw)
    paths = sorted(format_path(p.path) for p in error.problems)
    assert paths == sorted(
        [
            "hypothesys",
            "unit",
            "variants[0].weight",
            "variants[1].value",
            "variants[3].mechanic",
            "metrics[4].levels",
        ]
    ), listing(error.problems)
    assert len(str(error).splitlines()) == 6


def test_every_cross_field_problem_is_reported_at_once_in_spec_order() -> None:
    raw = base_spec()
    both(
        put("end", dt.date(2026, 2, 1)),
        put("variants.1.reference", True),
        put("primary", "revnue"),
        put("guardrails.0.metric", "satisfacton"),
        put("economics.unit_cost", 45),
        put("economics.fixed_cost.pct20", 1),
        put("design.baseline.revenue", {"rate": 0.1}),
        put("decision.metric", "roii"),
        put("simulation.effects.pct20", {}),
    )(raw)
    error = rejected(raw)
    assert [format_path(p.path) for p in error.problems] == [
        "end",
        "variants[1].reference",
        "primary",
        "guardrails[0].metric",
        "economics.unit_cost",
        "economics.fixed_cost.pct20",
        "design.baseline.revenue",
        "decision.metric",
        "simulation.effects.pct20",
    ], listing(error.problems)
    assert len(error.problems) == 9


# --------------------------------------------------------------------------- files


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> promolab.SpecError:
    with pytest.raises(promolab.SpecError) as info:
        promolab.load_spec(path)
    return info.value


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def test_duplicate_yaml_key_names_both_lines(tmp_path: Path) -> None:
    text = SPRING.read_text(encoding="utf-8").replace(
        "owner: growth-team\n", "owner: growth-team\nname: Another name\n"
    )
    path = write(tmp_path, "dup.yaml", text)
    error = load_error(path)
    (problem,) = error.problems
    assert problem.path == ()
    assert problem.message == "invalid YAML: duplicate key 'name' (first on line 3)"
    assert problem.line == line_of(text, "Another name")
    assert str(error) == f"{path}:{problem.line}: invalid YAML: duplicate key 'name' (first on line 3)"


def test_duplicate_key_in_a_nested_flow_mapping(tmp_path: Path) -> None:
    text = SPRING.read_text(encoding="utf-8").replace("value: 15,", "value: 15, value: 20,")
    error = load_error(write(tmp_path, "dup.yaml", text))
    (problem,) = error.problems
    assert "duplicate key 'value'" in problem.message
    assert problem.line == line_of(text, "value: 15, value: 20")


def test_yaml_syntax_error_carries_its_line(tmp_path: Path) -> None:
    text = SPRING.read_text(encoding="utf-8").replace(
        "{id: orders, kind: count, source: orders}", "{id: orders, kind: count, source: orders"
    )
    path = write(tmp_path, "broken.yaml", text)
    error = load_error(path)
    (problem,) = error.problems
    assert problem.message.startswith("invalid YAML: ")
    # The parser notices the unclosed brace on the following line.
    assert problem.line == line_of(text, "{id: aov, kind: ratio")
    assert str(error).startswith(f"{path}:{problem.line}: invalid YAML: ")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("- a\n- b\n", "list", id="list"),
        pytest.param("just a string\n", "str", id="scalar"),
        pytest.param("42\n", "int", id="number"),
    ],
)
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    error = load_error(write(tmp_path, "list.yaml", text))
    (problem,) = error.problems
    assert problem.message == f"a spec must be a mapping of fields, got {kind}"


def test_empty_yaml_file_says_it_is_empty(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "empty.yaml", "# nothing here\n"))
    (problem,) = error.problems
    assert "NoneType" not in problem.message, problem.message
    assert "empty" in problem.message, problem.message


@pytest.mark.parametrize("name", ["spec.json", "spec.yaml.bak", "spec"])
def test_wrong_file_suffix(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, SPRING.read_text(encoding="utf-8"))
    error = load_error(path)
    (problem,) = error.problems
    assert problem.message.startswith("expected a .yaml, .yml, .toml file, got ")
    assert str(error).startswith(f"{path}: expected a .yaml")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    error = load_error(path)
    assert str(error) == f"{path}: cannot read the file: No such file or directory"


def test_invalid_toml(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "spec.toml", 'id = "a"\nid = "b"\n'))
    (problem,) = error.problems
    assert problem.message.startswith("invalid TOML: ")
    assert "line 2" in problem.message


def test_file_that_is_not_utf8_is_a_spec_error(tmp_path: Path) -> None:
    text = SPRING.read_text(encoding="utf-8").replace("owner: growth-team", "owner: équipe")
    path = write(tmp_path, "latin1.yaml", text.encode("latin-1"))
    error = load_error(path)  # not a raw UnicodeDecodeError
    assert str(error).startswith(f"{path}: ")


def test_unhashable_yaml_key_is_a_spec_error(tmp_path: Path) -> None:
    text = SPRING.read_text(encoding="utf-8") + "? [a, b]\n: 1\n"
    path = write(tmp_path, "unhashable.yaml", text)
    error = load_error(path)  # not a raw TypeError
    (problem,) = error.problems
    assert problem.message.startswith("invalid YAML: ")
    assert problem.line == len(text.splitlines()) - 1


def test_self_referencing_yaml_alias_is_a_spec_error(tmp_path: Path) -> None:
    text = SPRING.read_text(encoding="utf-8") + "tags: &loop [*loop]\n"
    path = write(tmp_path, "loop.yaml", text)
    load_error(path)  # not a RecursionError


# --------------------------------------------------------------------------- line numbers


def test_problems_in_a_yaml_file_carry_the_line_of_their_field(tmp_path: Path) -> None:
    original = SPRING.read_text(encoding="utf-8")
    text = (
        original.replace("value: 15,", "value: 150,")  # structural: variants[1].value
        .replace("primary: revenue", "primary: revenue\nprimry: revenue")  # unknown key
        .replace("  daily_units: 20000", "  daily_units: 0")  # block-style nested key
    )
    path = write(tmp_path, "lines.yaml", text)
    error = load_error(path)
    where = {format_path(p.path): p.line for p in error.problems}
    assert where == {
        "variants[1].value": line_of(text, "id: pct15"),
        "primry": line_of(text, "primry:"),
        "design.daily_units": line_of(text, "daily_units: 0"),
    }, listing(error.problems)
    rendered = str(error).splitlines()
    assert (
        f"{path}:{where['variants[1].value']}: variants[1].value: percent_off must be in (0, 100), got 150"
        in (rendered)
    )


def test_cross_field_problems_carry_the_nearest_known_line(tmp_path: Path) -> None:
    original = SPRING.read_text(encoding="utf-8")
    text = original.replace("end: 2026-03-28", "end: 2026-02-28").replace(
        "  baseline: {conversion: {rate: 0.08}, revenue: {mean: 4.1, sd: 19.0}}",
        "  baseline:\n    conversion: {rate: 0.08}\n    revenue: {rate: 0.3}",
    )
    path = write(tmp_path, "cross.yaml", text)
    error = load_error(path)
    where = {format_path(p.path): p.line for p in error.problems}
    assert where == {
        "end": line_of(text, "end: 2026-02-28"),
        "design.baseline.revenue": line_of(text, "revenue: {rate: 0.3}"),
    }, listing(error.problems)
    # A missing field has no line of its own: it gets its parent's.
    text = original.replace(
        "{id: save10, kind: discount, mechanic: amount_off, value: 10, min_spend: 50,",
        "{id: save10, kind: channel, channel: sms,",
    )
    error = load_error(write(tmp_path, "missing.yaml", text))
    (problem,) = error.problems
    assert format_path(problem.path) == "variants[2].cost_per_contact"
    assert problem.line == line_of(text, "id: save10")
