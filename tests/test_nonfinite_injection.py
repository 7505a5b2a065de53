"""Property: NaN, infinities, NULLs and huge values put into random cells of any metric column or
covariate never produce a verdict or a p-value computed from them.

Each example writes a small experiment as Parquet (NaN and NULL kept apart), injects bad values into a
few random cells of one column, and analyses it. Allowed outcomes:

- a :class:`DataError` (the analysis refuses the data), always for NaN and infinities;
- for NULLs the column's policy accepts (ordinal scores: no response), an analysis equal to the one of
  the same data with those values left out, and the count reported in ``data_quality``;
- for huge finite values, an analysis whose every number is finite (or a refusal).

Never: a finished analysis holding a NaN or infinite number, or one that silently differs from the
clean data's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promolab.analyze import analyze_spec
from promolab.errors import DataError
from promolab.spec import spec_from_dict

from .conftest import arrow_keeping_nan

N = 240
ARMS = ("control", "promo")
SPEC = {
    "id": "injection",
    "name": "Injection",
    "unit": "customer",
    "start": "2026-03-01",
    "end": "2026-03-28",
    "variants": [
        {"id": "control", "kind": "control", "weight": 0.5},
        {"id": "promo", "kind": "discount", "mechanic": "percent_off", "value": 10, "weight": 0.5},
    ],
    "metrics": [
        {"id": "conversion", "kind": "binary", "source": "orders"},
        {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
        {"id": "items", "kind": "count", "source": "orders", "column": "quantity"},
        {"id": "redeemed", "kind": "binary", "source": "orders", "column": "redeemed"},
        {"id": "aov", "kind": "ratio", "numerator": "revenue", "denominator": "items"},
        {"id": "score", "kind": "ordinal", "source": "survey", "column": "score", "levels": [1, 2, 3, 4, 5]},
        {"id": "visits", "kind": "count", "source": "units", "column": "visits"},
        {"id": "member", "kind": "binary", "source": "units", "column": "member"},
        {"id": "nps", "kind": "ordinal", "source": "units", "column": "nps", "levels": [0, 1, 2, 3]},
        {"id": "spend", "kind": "continuous", "source": "units", "column": "spend"},
    ],
    "primary": "revenue",
    "analysis": {"covariates": ["pre_revenue"]},
    "data": {
        "timestamp": "ts",
        "assignments": "assignments.parquet",
        "units": "units.parquet",
        "tables": {"orders": "orders.parquet", "survey": "survey.parquet"},
    },
}
# (table, column, its metric kind) of every value an injection can hit
TARGETS = [
    ("orders", "amount", "continuous"),
    ("orders", "quantity", "count"),
    ("orders", "redeemed", "binary"),
    ("survey", "score", "ordinal"),
    ("units", "visits", "count"),
    ("units", "member", "binary"),
    ("units", "nps", "ordinal"),
    ("units", "spend", "continuous"),
    ("units", "pre_revenue", "covariate"),
]
BAD = [math.nan, math.inf, -math.inf, None, 1e308, -1e308, 1e200]


def _frames(seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.arange(1, N + 1)
    arm = np.where(np.arange(N) % 2 == 0, *ARMS)
    buyers = ids[rng.random(N) < 0.5]
    owner = np.repeat(buyers, rng.integers(1, 4, len(buyers)))
    orders = pd.DataFrame(
        {
            "unit_id": owner,
            "ts": pd.Timestamp("2026-03-02") + pd.to_timedelta(rng.integers(0, 20, len(owner)), unit="D"),
            "amount": rng.gamma(2.0, 15.0, len(owner)).round(2),
            "quantity": rng.integers(1, 5, len(owner)).astype(float),
            "redeemed": rng.integers(0, 2, len(owner)).astype(float),
        }
    )
    answered = ids[rng.random(N) < 0.6]
    units = pd.DataFrame(
        {
            "unit_id": ids,
            "pre_revenue": rng.gamma(1.0, 20.0, N),
            "visits": rng.poisson(3, N).astype(float),
            "member": rng.integers(0, 2, N).astype(float),
            "nps": rng.integers(0, 4, N).astype(float),
            "spend": rng.gamma(1.0, 30.0, N),
        }
    )
    return {
        "assignments": pd.DataFrame({"unit_id": ids, "variant": arm}),
        "units": units,
        "orders": orders,
        "survey": pd.DataFrame(
            {"unit_id": answered, "score": rng.integers(1, 6, len(answered)).astype(float)}
        ),
    }


def _write(frames: dict[str, pd.DataFrame], folder) -> None:
    for name, frame in frames.items():
        pq.write_table(arrow_keeping_nan(frame), folder / f"{name}.parquet")


def _analyse(frames: dict[str, pd.DataFrame], folder):
    folder.mkdir(exist_ok=True)
    _write(frames, folder)
    spec = spec_from_dict(SPEC)
    return analyze_spec(spec, data_dir=folder)


def _numbers(value: object):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, float):
        yield value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=st.sampled_from(TARGETS),
    bad=st.sampled_from(BAD),
    rows=st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True),
    seed=st.integers(0, 3),
)
def test_injected_values_never_give_a_verdict_computed_from_them(tmp_path_factory, target, bad, rows, seed):
    table, column, kind = target
    frames = _frames(seed)
    frame = frames[table].copy()
    picked = sorted({r % len(frame) for r in rows})
    frame[column] = frame[column].astype(object)
    frame.loc[frame.index[picked], column] = bad
    folder = tmp_path_factory.mktemp("case")
    nonfinite = bad is not None and not math.isfinite(bad)
    dropped_scores = bad is None and kind == "ordinal"
    try:
        analysis = _analyse({**frames, table: frame}, folder / "bad")
    except DataError:
        assert not dropped_scores, "a missing ordinal score is no response, not an error"
        return
    assert not nonfinite, f"{bad!r} in {table}.{column} was analysed"
    assert bad is not None or dropped_scores, f"a NULL in {table}.{column} was accepted without a policy"
    payload = analysis.to_dict()
    assert all(math.isfinite(x) for x in _numbers(payload)), "a non-finite number in the results"
    assert all(r.p_value is not None or r.flags for r in analysis.results)
    if dropped_scores:
        metric = next(m["id"] for m in SPEC["metrics"] if m.get("column") == column)
        assert payload["data_quality"]["missing_values"][metric]["units_or_rows"] == len(picked)
    if dropped_scores and table == "survey":  # equal to the analysis without those answers
        clean = {**frames, table: frames[table].drop(index=frames[table].index[picked])}
        expected = _analyse(clean, folder / "clean")
        assert [r.p_value for r in analysis.results] == pytest.approx(
            [r.p_value for r in expected.results], rel=1e-12
        )
