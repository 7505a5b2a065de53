"""One test module over every variant kind, discount mechanic and metric kind in the spec's registries.

Each registered kind (``VARIANT_KINDS``, ``DISCOUNT_MECHANICS``, ``METRIC_KINDS``) must have an example
here, so a new kind cannot be added without passing the same checks: the YAML round trip and a stable
repr, results unchanged by the order of the rows and by the input format (Parquet, CSV, DataFrames),
economics and a verdict for every arm, and a clear error for an arm without units.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from promolab.analyze import Analysis, analyze_spec
from promolab.decision import decide
from promolab.economics import evaluate
from promolab.errors import DataError
from promolab.kinds import KINDS
from promolab.simulate import simulate, simulated_paths, write_simulated
from promolab.spec import dump_spec, spec_from_dict
from promolab.spec.models import DISCOUNT_MECHANICS, METRIC_KINDS, VARIANT_KINDS

UNITS = 3000
ARMS: dict[str, dict[str, Any]] = {  # one example of every variant kind and discount mechanic
    "price_point": {"kind": "price_point", "price": 36},
    "percent_off": {"kind": "discount", "mechanic": "percent_off", "value": 15},
    "amount_off": {"kind": "discount", "mechanic": "amount_off", "value": 10, "min_spend": 50},
    "bogo": {"kind": "discount", "mechanic": "bogo"},
    "bundle": {"kind": "discount", "mechanic": "bundle", "items": 3, "bundle_price": 100},
    "coupon": {"kind": "discount", "mechanic": "coupon", "value": 5},
    "gift": {"kind": "discount", "mechanic": "gift", "gift_cost": 3},
    "free_shipping": {"kind": "discount", "mechanic": "free_shipping", "shipping_cost": 4},
    "ad_creative": {"kind": "ad_creative", "creative": "c1", "headline": "New look"},
    "channel": {"kind": "channel", "channel": "email", "cost_per_contact": 0.05},
    "treatment": {"kind": "treatment", "cost_per_unit": 0.01, "cost_per_order": 0.5},
}
METRICS: dict[str, dict[str, Any]] = {  # one example of every metric kind
    "binary": {"id": "conversion", "kind": "binary", "source": "orders"},
    "continuous": {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
    "count": {"id": "orders", "kind": "count", "source": "orders"},
    "ratio": {"id": "aov", "kind": "ratio", "numerator": "revenue", "denominator": "orders"},
    "ordinal": {"id": "satisfaction", "kind": "ordinal", "source": "survey", "column": "score",
                "levels": [1, 2, 3, 4, 5]},
}  # fmt: skip


def _spec(arm: str = "percent_off", primary: str = "revenue") -> Any:
    variant = {"id": "arm", "weight": 0.5, **ARMS[arm]}
    return spec_from_dict(
        {
            "id": f"every-{arm.replace('_', '-')}",
            "name": f"every kind: {arm}",
            "unit": "customer",
            "start": "2026-03-01",
            "end": "2026-03-28",
            "variants": [{"id": "control", "kind": "control", "weight": 0.5}, variant],
            "metrics": list(METRICS.values()),
            "primary": primary,
            "economics": {"currency": "USD", "unit_price": 40, "unit_cost": 22},
            "data": {
                "assignments": "data/assignments.parquet",
                "tables": {"orders": "data/orders.parquet", "survey": "data/survey.parquet"},
            },
            "simulation": {"purchase_prob": 0.3, "effects": {"arm": {"conversion": 1.1}}},
        }
    )


@cache
def _data(arm: str) -> Any:
    return simulate(_spec(arm), UNITS, seed=7)


def _frames(arm: str, shuffled: bool = False) -> dict[str, pd.DataFrame]:
    data = _data(arm)
    frames = {name: data.frame(name) for name in data.tables}
    if shuffled:
        rng = np.random.default_rng(1)
        frames = {name: f.iloc[rng.permutation(len(f))].reset_index(drop=True) for name, f in frames.items()}
    return frames


def _written(arm: str, folder: Path, fmt: str) -> dict[str, Path]:
    spec = _spec(arm)
    write_simulated(_data(arm), spec, folder, fmt)  # type: ignore[arg-type]
    return simulated_paths(spec, folder, fmt)  # type: ignore[arg-type]


def _reloaded(spec: Any) -> Any:
    """The spec read back from its YAML dump (as a model: no file, so data paths stay as written)."""
    return spec_from_dict(yaml.safe_load(dump_spec(spec)))


def _numbers(analysis: Analysis) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "bayes"} for row in analysis.to_dicts()]


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Equal results: strings and counts exactly, numbers to 1e-12 relative (CSV text vs binary)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float) or (
                isinstance(x[key], tuple) and x[key] and isinstance(x[key][0], float)
            ):
                assert x[key] == pytest.approx(y[key], rel=1e-12, abs=1e-15), (x["metric"], key)
            else:
                assert x[key] == y[key], (x["metric"], key)


# ---------------------------------------------------------------------- the registries are covered


def test_every_registered_kind_has_an_example_here():
    kinds = {a["kind"] for a in ARMS.values()} | {"control"}
    assert kinds == set(VARIANT_KINDS)
    assert {a["mechanic"] for a in ARMS.values() if a["kind"] == "discount"} == set(DISCOUNT_MECHANICS)
    assert set(METRICS) == set(METRIC_KINDS) == set(KINDS)


# ---------------------------------------------------------------------- every variant kind and mechanic


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_variant_round_trips_through_yaml_with_a_stable_repr(arm):
    spec = _spec(arm)
    again = _reloaded(spec)
    assert again == spec
    assert repr(again.variant("arm")) == repr(spec.variant("arm"))
    assert f"kind='{ARMS[arm]['kind']}'" in repr(spec.variant("arm"))


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_variant_results_do_not_depend_on_row_order_or_input_format(arm, tmp_path):
    spec = _spec(arm)
    frames = _numbers(analyze_spec(spec, frames=_frames(arm)))
    _same(frames, _numbers(analyze_spec(spec, frames=_frames(arm, shuffled=True))))
    for fmt in ("parquet", "csv"):
        paths = _written(arm, tmp_path / fmt, fmt)
        _same(frames, _numbers(analyze_spec(spec, overrides=paths)))


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_variant_has_finite_economics_and_a_verdict(arm):
    spec = _spec(arm)
    analysis = analyze_spec(spec, frames=_frames(arm))
    economics = evaluate(spec, analysis)
    assert economics is not None
    (money,) = economics.arms
    assert math.isfinite(money.quantities["net_profit"].value)
    assert math.isfinite(money.quantities["incremental_revenue"].value)
    decision = decide(spec, analysis, economics)
    (verdict,) = decision.arms
    assert verdict.variant == "arm"
    assert verdict.line.startswith(f"arm: {verdict.action}, ")
    assert "USD" in verdict.line


# ---------------------------------------------------------------------- every metric kind


@pytest.mark.parametrize("kind", sorted(METRICS))
def test_metric_kind_as_primary_gives_a_result_and_a_verdict(kind):
    metric = METRICS[kind]["id"]
    spec = _spec(primary=metric)
    analysis = analyze_spec(spec, frames=_frames("percent_off"))
    rows = [r for r in analysis.results if r.metric.split(":")[0] == metric]
    assert len(rows) == (2 if kind == "ordinal" else 1)  # the mean score and its top box
    assert all(r.p_value is not None and 0 <= r.p_value <= 1 for r in rows)
    assert decide(spec, analysis).arms[0].finding in ("better", "worse", "no_difference")


@pytest.mark.parametrize("kind", sorted(METRICS))
def test_metric_kind_repr_and_yaml_round_trip(kind):
    spec = _spec(primary=METRICS[kind]["id"])
    again = _reloaded(spec)
    assert again.metric(METRICS[kind]["id"]) == spec.metric(METRICS[kind]["id"])
    assert f"kind='{kind}'" in repr(spec.metric(METRICS[kind]["id"]))


def test_an_arm_without_units_is_a_clear_error():
    frames = _frames("percent_off")
    frames["assignments"] = frames["assignments"][frames["assignments"]["variant"] != "arm"]
    with pytest.raises(DataError, match=r"arm.*'?arm'?.*(EMPTY_ARM|no units|TOO_FEW_UNITS)"):
        analyze_spec(_spec(), frames=frames)
