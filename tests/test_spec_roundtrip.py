"""Every example spec loads; YAML and TOML forms round-trip to equal models and equal hashes; specs are
frozen; the hash ignores key order and spelling of defaults but not content."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

import promolab
from promolab.spec import dump_spec, load_spec, spec_from_dict, spec_hash, spec_to_dict

from .conftest import example_paths

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "experiments"
EXAMPLES = example_paths()  # randomised experiments; rollout specs round-trip in test_rollout
SPRING = EXAMPLES_DIR / "spring-discount.yaml"

example = pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])


def test_there_are_examples() -> None:
    assert EXAMPLES, f"no *.yaml or *.toml spec in {EXAMPLES_DIR}"
    assert SPRING in EXAMPLES


@example
def test_example_loads(path: Path) -> None:
    spec = load_spec(path)
    assert isinstance(spec, promolab.ExperimentSpec)
    assert spec.reference not in spec.treatments
    assert len(spec.treatments) == len(spec.variants) - 1


@example
def test_yaml_model_yaml_model_is_equal(path: Path, tmp_path: Path) -> None:
    first = load_spec(path)
    text = dump_spec(first)
    copy = tmp_path / path.name.replace(".toml", ".yaml")
    copy.write_text(text, encoding="utf-8")
    second = load_spec(copy)

    assert spec_to_dict(second) == spec_to_dict(first)
    assert spec_hash(second) == spec_hash(first)
    assert dump_spec(second) == text  # dumping is a fixed point
    # As models (no file involved): parse the original and the dump the same way.
    original = spec_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert spec_from_dict(yaml.safe_load(text)) == original


# --------------------------------------------------------------------------- TOML

SPRING_TOML = """\
# The spring example, as TOML.
id = "spring-discount-2026"
name = "Spring discount mechanics"
hypothesis = "A 15% discount lifts revenue enough to pay for itself."
owner = "growth-team"
unit = "customer"
start = 2026-03-01
end = 2026-03-28
primary = "revenue"

[[variants]]
id = "control"
kind = "control"
weight = 0.25

[[variants]]
id = "pct15"
kind = "discount"
mechanic = "percent_off"
value = 15
weight = 0.25

[[variants]]
id = "save10"
kind = "discount"
mechanic = "amount_off"
value = 10
min_spend = 50
weight = 0.25

[[variants]]
id = "bogo"
kind = "discount"
mechanic = "bogo"
weight = 0.25

[[metrics]]
id = "conversion"
kind = "binary"
source = "orders"

[[metrics]]
id = "revenue"
kind = "continuous"
source = "orders"
column = "amount"
agg = "sum"

[[metrics]]
id = "orders"
kind = "count"
source = "orders"

[[metrics]]
id = "aov"
kind = "ratio"
numerator = "revenue"
denominator = "orders"

[[metrics]]
id = "satisfaction"
kind = "ordinal"
source = "survey"
column = "score"
levels = [1, 2, 3, 4, 5]

[[metrics]]
id = "units_sold"
kind = "count"
source = "orders"
column = "quantity"

[[metrics]]
id = "discount"
kind = "continuous"
source = "orders"
column = "discount"
role = "treatment_only"

[[metrics]]
id = "redemptions"
kind = "count"
source = "orders"
column = "redeemed"
role = "treatment_only"

[[guardrails]]
metric = "satisfaction"
max_relative_drop = 0.05

[economics]
currency = "USD"
unit_price = 40
unit_cost = 22
fixed_cost = { pct15 = 2000, save10 = 2000, bogo = 2000 }
units = "units_sold"
discount = "discount"
redemptions = "redemptions"

[design]
alpha = 0.05
power = 0.8
mde = { relative = 0.05 }
daily_units = 20000
baseline = { conversion = { rate = 0.08 }, revenue = { mean = 4.1, sd = 19.0 } }

[analysis]
covariates = ["pre_revenue"]
method = "both"
bayes = { rope = 0.01 }
segments = [{ column = "channel" }, { rfm = { source = "pre_orders" } }]

[decision]
metric = "profit"
prob_positive = 0.95

[data]
timestamp = "ts"
assignments = "data/spring/assignments.parquet"
units = "data/spring/customers.parquet"

[data.tables]
orders = "data/spring/orders.parquet"
survey = "data/spring/survey.parquet"
pre_orders = "data/spring/pre_orders.parquet"

[simulation]
purchase_prob = 0.08
units_median = 1.2
tables = { pre_orders = { kind = "pre_orders" } }

[simulation.effects]
pct15 = { conversion = 0.18, basket = 0.04, redemption = 0.9, score = 0.05 }
save10 = { conversion = 0.10, basket = 0.12, redemption = 0.8 }
bogo = { conversion = 0.12, basket = 0.35, redemption = 0.85, score = 0.1 }
"""


def test_toml_form_of_the_spring_spec_loads_equal_to_the_yaml_one(tmp_path: Path) -> None:
    toml_path = tmp_path / "spring-discount.toml"
    toml_path.write_text(SPRING_TOML, encoding="utf-8")
    from_toml = load_spec(toml_path)
    from_yaml = load_spec(SPRING)
    assert spec_to_dict(from_toml) == spec_to_dict(from_yaml)
    assert spec_hash(from_toml) == spec_hash(from_yaml)
    # Same content, same spec: where it was read from must not make two specs unequal.
    assert from_toml == from_yaml


def _toml_value(value: Any) -> str:
    """A tiny TOML writer for plain spec data: everything inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(raw: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {_toml_value(value)}\n" for key, value in raw.items())


@example
def test_toml_conversion_of_every_example_has_the_same_hash(path: Path, tmp_path: Path) -> None:
    spec = load_spec(path)
    toml_path = tmp_path / (path.stem + ".toml")
    toml_path.write_text(to_toml(spec_to_dict(spec)), encoding="utf-8")
    again = load_spec(toml_path)
    assert spec_to_dict(again) == spec_to_dict(spec)
    assert spec_hash(again) == spec_hash(spec)


# --------------------------------------------------------------------------- hashing


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


def spring_raw() -> dict[str, Any]:
    return yaml.safe_load(SPRING.read_text(encoding="utf-8"))


def test_hash_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", spec_hash(load_spec(SPRING)))


@example
def test_hash_is_stable_across_key_order(path: Path) -> None:
    raw = spec_to_dict(load_spec(path))
    reordered = _reverse_keys(raw)
    assert list(reordered) != list(raw)
    assert spec_hash(spec_from_dict(reordered)) == spec_hash(spec_from_dict(raw))
    assert spec_hash(spec_from_dict(raw)) == spec_hash(load_spec(path))


def test_hash_ignores_defaults_written_out() -> None:
    raw = spring_raw()
    explicit = spring_raw()
    explicit["post_days"] = 0
    explicit["variants"][0]["reference"] = False
    explicit["metrics"][0]["direction"] = "higher"
    explicit["design"]["alternative"] = "two-sided"
    assert spec_hash(spec_from_dict(explicit)) == spec_hash(spec_from_dict(raw))
    assert spec_from_dict(explicit) == spec_from_dict(raw)


def test_hash_changes_when_a_weight_changes() -> None:
    raw = spring_raw()
    before = spec_hash(spec_from_dict(raw))
    raw["variants"][0]["weight"] = 0.3
    raw["variants"][1]["weight"] = 0.2
    after = spec_from_dict(raw)
    assert spec_hash(after) != before
    assert spec_hash(after) == spec_hash(spec_from_dict(raw))  # and is deterministic


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(("name",), "Spring discount mechanics v2", id="name"),
        pytest.param(("variants", 1, "value"), 20, id="percent-off"),
        pytest.param(("design", "power"), 0.9, id="power"),
        pytest.param(("simulation", "purchase_prob"), 0.09, id="simulation"),
    ],
)
def test_hash_changes_with_any_content(field: tuple[str | int, ...], value: object) -> None:
    raw = spring_raw()
    before = spec_hash(spec_from_dict(raw))
    node: Any = raw
    for part in field[:-1]:
        node = node[part]
    node[field[-1]] = value
    assert spec_hash(spec_from_dict(raw)) != before


def test_variant_order_matters_to_the_hash() -> None:
    raw = spring_raw()
    before = spec_hash(spec_from_dict(raw))
    raw["variants"] = list(reversed(raw["variants"]))
    assert spec_hash(spec_from_dict(raw)) != before


# --------------------------------------------------------------------------- frozen


@pytest.mark.parametrize(
    ("target", "field", "value"),
    [
        pytest.param(lambda s: s, "id", "other", id="spec.id"),
        pytest.param(lambda s: s, "primary", "conversion", id="spec.primary"),
        pytest.param(lambda s: s.variants[1], "weight", 0.5, id="variant.weight"),
        pytest.param(lambda s: s.metrics[0], "source", "survey", id="metric.source"),
        pytest.param(lambda s: s.design, "alpha", 0.1, id="design.alpha"),
        pytest.param(lambda s: s.economics, "unit_price", 1.0, id="economics.unit_price"),
        pytest.param(lambda s: s.data, "units", None, id="data.units"),
    ],
)
def test_specs_are_frozen(target: Any, field: str, value: object) -> None:
    spec = load_spec(SPRING)
    obj = target(spec)
    before = getattr(obj, field)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(obj, field, value)
    assert getattr(obj, field) == before


# --------------------------------------------------------------------------- text survives dumping


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Spring\u0085sale", id="next-line-U+0085"),
        pytest.param("line\u2028separator", id="line-separator-U+2028"),
        pytest.param("tab\there", id="tab"),
        pytest.param("quotes ' and \"", id="quotes"),
        pytest.param("été 🎉 ∑", id="non-ascii"),
        pytest.param("  padded  ", id="padded"),
        pytest.param("yes", id="yaml-boolean-word"),
        pytest.param("2026-03-01", id="date-like"),
        pytest.param("two\nlines", id="newline"),
    ],
)
def test_dump_keeps_every_character(text: str, tmp_path: Path) -> None:
    raw = spring_raw()
    raw["name"] = text
    raw["hypothesis"] = text
    spec = spec_from_dict(raw)
    path = tmp_path / "text.yaml"
    path.write_text(dump_spec(spec), encoding="utf-8")
    loaded = load_spec(path)
    assert (loaded.name, loaded.hypothesis) == (text, text)
    assert spec_hash(loaded) == spec_hash(spec)


def test_negative_zero_hashes_like_zero():
    raw = yaml.safe_load((EXAMPLES_DIR / "spring-discount.yaml").read_text())
    raw["economics"]["fixed_cost"]["pct15"] = -0.0
    negative = spec_from_dict(raw)
    raw["economics"]["fixed_cost"]["pct15"] = 0.0
    assert spec_hash(negative) == spec_hash(spec_from_dict(raw))
