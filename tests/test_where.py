"""Row filters on event metrics (``where: {column, in | not_in}``): one orders table gives promoted-item
revenue, the rest of the basket and buyers of a category. Every number equals pandas on the same rows."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

import promolab
from promolab.errors import DataError, SpecError
from promolab.spec import dump_spec, spec_from_dict

PROMOTED = ["shoes", "bags"]


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n, k = 3000, 9000
    assignments = pd.DataFrame({"unit_id": np.arange(n), "variant": rng.choice(["control", "b"], n)})
    orders = pd.DataFrame(
        {
            "unit_id": rng.integers(0, n, k),
            "amount": rng.gamma(2, 10, k).round(2),
            "category": rng.choice(["shoes", "bags", "hats", None], k, p=[0.4, 0.3, 0.2, 0.1]),
            "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(-5, 33, k), unit="D"),
        }
    )
    return {"assignments": assignments, "orders": orders}


def _spec(**changes) -> dict:
    spec = {
        "id": "where-test", "name": "row filters", "unit": "customer",
        "start": "2026-01-01", "end": "2026-01-28",
        "variants": [{"id": "control", "kind": "control", "weight": 0.5},
                     {"id": "b", "kind": "treatment", "weight": 0.5}],
        "metrics": [
            {"id": "promoted", "kind": "continuous", "source": "orders", "column": "amount",
             "where": {"column": "category", "in": PROMOTED}},
            {"id": "rest", "kind": "continuous", "source": "orders", "column": "amount",
             "where": {"column": "category", "not_in": PROMOTED}},
            {"id": "hat_buyer", "kind": "binary", "source": "orders",
             "where": {"column": "category", "in": ["hats"]}},
            {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
        ],
        "primary": "revenue",
    }  # fmt: skip
    spec.update(changes)
    return spec


def _per_unit(data, mask: pd.Series, value: str) -> pd.Series:
    rows = data["orders"][mask]
    if value == "binary":
        per = rows.groupby("unit_id").size().clip(upper=1).astype(float)
    else:
        per = rows.groupby("unit_id")["amount"].sum()
    return per.reindex(data["assignments"]["unit_id"], fill_value=0.0)


def _check_means(result, data, window: pd.Series) -> None:
    arms = data["assignments"].set_index("unit_id")["variant"]
    category = data["orders"]["category"]
    expected = {
        "promoted": (category.isin(PROMOTED), "amount"),
        "rest": (~category.isin(PROMOTED), "amount"),  # a missing category is in every not_in list
        "hat_buyer": (category.eq("hats"), "binary"),
        "revenue": (pd.Series(True, index=category.index), "amount"),
    }
    rows = {(r.metric, r.variant): r for r in result.analysis.results}
    for metric, (mask, value) in expected.items():
        per = _per_unit(data, mask & window, value)
        for arm, field in (("control", "control_mean"), ("b", "variant_mean")):
            want = per[arms.reindex(per.index).to_numpy() == arm].mean()
            assert getattr(rows[(metric, "b")], field) == pytest.approx(want, rel=1e-12), (metric, arm)


def test_filtered_metrics_equal_pandas_on_the_same_rows(data):
    result = promolab.analyze(_spec(), data=data)
    _check_means(result, data, pd.Series(True, index=data["orders"].index))


def test_filters_combine_with_the_test_window(data):
    result = promolab.analyze(_spec(), data=data, timestamp="ts")
    ts = data["orders"]["ts"]
    window = ts.between(pd.Timestamp("2026-01-01"), pd.Timestamp("2026-01-28 23:59:59"))
    _check_means(result, data, window)


def test_csv_input_gives_the_same_filtered_results(data, tmp_path):
    files = {}
    for name, frame in data.items():
        files[name] = tmp_path / f"{name}.csv"
        frame.to_csv(files[name], index=False)
    from_files = promolab.analyze(_spec(), data=files).analysis
    from_frames = promolab.analyze(_spec(), data=data).analysis
    for a, b in zip(from_files.results, from_frames.results, strict=True):
        assert a.variant_mean == pytest.approx(b.variant_mean, rel=1e-12)
        assert a.p_value == pytest.approx(b.p_value, rel=1e-9)


def test_a_spec_with_filters_round_trips_through_yaml():
    spec = spec_from_dict(_spec(data={"assignments": "a.parquet", "tables": {"orders": "o.parquet"}}))
    text = dump_spec(spec)
    dumped = yaml.safe_load(text)
    assert dumped["metrics"][0]["where"] == {"column": "category", "in": PROMOTED}  # written as users do
    assert dumped["metrics"][1]["where"] == {"column": "category", "not_in": PROMOTED}
    assert spec_from_dict(dumped) == spec


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"column": "category", "in": ["a"], "not_in": ["b"]}, "give 'in' (values to keep) or 'not_in'"),
        ({"column": "category"}, "give 'in' (values to keep) or 'not_in'"),
        ({"column": "category", "in": []}, "at least 1 item"),
        ({"column": "category", "in": [True]}, "in"),
        ({"column": "category", "in": [1.5]}, "in"),
    ],
)
def test_malformed_filters_are_spec_errors(where, message):
    raw = _spec(data={"assignments": "a.parquet", "tables": {"orders": "o.parquet"}})
    raw["metrics"][0]["where"] = where
    with pytest.raises(SpecError, match="where") as error:
        spec_from_dict(raw)
    assert message in str(error.value)


def test_a_filter_on_a_units_file_metric_is_refused():
    raw = _spec(data={"assignments": "a.parquet", "units": "u.parquet", "tables": {"orders": "o.parquet"}})
    raw["metrics"].append(
        {
            "id": "vip",
            "kind": "binary",
            "source": "units",
            "column": "vip",
            "where": {"column": "tier", "in": [1]},
        }
    )
    with pytest.raises(SpecError, match="filters the rows of an event table"):
        spec_from_dict(raw)


def test_a_filter_column_that_is_missing_or_decimal_stops_the_analysis(data):
    missing = copy.deepcopy(data)
    missing["orders"] = missing["orders"].drop(columns="category")
    with pytest.raises(DataError, match="missing column 'category'"):
        promolab.analyze(_spec(), data=missing)
    decimal = copy.deepcopy(data)
    decimal["orders"]["category"] = 1.5
    with pytest.raises(DataError, match=r"column 'category' \(metrics.promoted.where\) holds DOUBLE"):
        promolab.analyze(_spec(), data=decimal)
