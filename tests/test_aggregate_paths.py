"""The aggregation's query plans give the same statistics, and the power sums the same residual sums.

``aggregate`` reads the units in one pass (per-unit values as a common table expression, repeats found
by a bitmap of integer ids) when it can, else it materialises a table (CSV inputs, string or widely
spread ids, the daily curve). Each plan is checked against the others on the same rows, including the
repeat checks; :class:`PowerSums` against residual sums computed directly with numpy.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.reference.test_analyze_reference import make_frames, make_spec

from promolab.aggregate.duck import aggregate
from promolab.aggregate.moments import Moments, PowerSums, ResidualMoments, power_exponents
from promolab.analyze import analyze_spec
from promolab.analyze.run import analyze_stats
from promolab.errors import DataError

COVARIATES = ("pre_revenue", "pre_orders")


def _direct_residuals(y, x, slopes, centre) -> ResidualMoments:
    e = (y - y.mean()) - (x - x.mean(axis=0)) @ slopes
    u = x - centre
    e2 = e * e
    return ResidualMoments(float(e2.sum()), e2 @ u, (u * e2[:, None]).T @ u)


def _power_sums(names, y, x) -> PowerSums:
    v = np.column_stack([y, x])
    sums = [np.prod(v ** np.array(e), axis=1).sum() for e in power_exponents(x.shape[1])]
    return PowerSums(tuple(names), np.array(sums))


@settings(max_examples=60, deadline=None)
@given(
    p=st.integers(1, 3),
    n=st.integers(20, 400),
    seed=st.integers(0, 2**32 - 1),
    offset=st.floats(-3.0, 3.0),
)
def test_power_sums_give_the_residual_sums_of_any_slopes(p, n, seed, offset):
    """Zero-inflated heavy-tailed y, skewed covariates: the direct sums within 1e-9 of their scale."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.8, 2.0, (n, p)) + offset
    y = np.where(rng.random(n) < 0.3, rng.lognormal(1.0, 1.0, n), 0.0) + 0.5 * x[:, 0]
    names = ("y", *(f"x{j}" for j in range(p)))
    moments = Moments.from_values(names, np.column_stack([y, x]))
    slopes, centre = rng.normal(size=p), x.mean(axis=0) + rng.normal(size=p)
    got = _power_sums(names, y, x).residuals(moments, slopes, centre)
    want = _direct_residuals(y, x, slopes, centre)
    assert got is not None
    scale = np.abs(y - y.mean()).max() ** 2 * n * (1 + np.abs(x - centre).max()) ** 2
    assert abs(got.e2 - want.e2) <= 1e-9 * scale
    np.testing.assert_allclose(got.e2_u, want.e2_u, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(got.e2_uu, want.e2_uu, rtol=0, atol=1e-9 * scale)


def test_power_sums_decline_far_from_zero_and_merge_by_adding():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (500, 1))
    y = rng.normal(0, 1, 500) + x[:, 0]
    y = (y - y.mean()) / y.std()  # shifts below are in standard deviations
    names = ("y", "x0")
    for shift, answers in ((9.9, True), (10.1, False), (1e6, False)):
        shifted = y + shift
        moments = Moments.from_values(names, np.column_stack([shifted, x]))
        found = _power_sums(names, shifted, x).residuals(moments, np.array([1.0]), np.zeros(1))
        assert (found is not None) == answers, shift
    y = y + 3.0  # no sum near zero below
    halves = _power_sums(names, y[:200], x[:200]) + _power_sums(names, y[200:], x[200:])
    np.testing.assert_allclose(halves.sums, _power_sums(names, y, x).sums, rtol=1e-12)
    with pytest.raises(ValueError, match="cannot merge"):
        halves + PowerSums(("z", "x0"), halves.sums)


def test_ill_conditioned_power_sums_fall_back_to_the_residual_pass(monkeypatch):
    """A covariate 1e6 away from zero: the analysis makes the exact second pass, and only then."""
    frames = make_frames(seed=21, n=1500)
    shifted = frames | {"units": frames["units"].assign(pre_revenue=frames["units"]["pre_revenue"] + 1e6)}
    from promolab.aggregate import duck

    calls: list[str] = []
    original = duck.DuckAggregation.residual_moments

    def spy(self, metric, *args):
        calls.append(metric)
        return original(self, metric, *args)

    monkeypatch.setattr(duck.DuckAggregation, "residual_moments", spy)
    plain = analyze_spec(make_spec(), frames=frames, cuped=True)
    assert calls == []
    moved = analyze_spec(make_spec(), frames=shifted, cuped=True)
    assert sorted(set(calls)) == sorted(
        ["conversion", "revenue", "orders", "items", "mean_order", "max_order"]
    )
    for a, b in zip(plain.results, moved.results, strict=True):
        assert a.method == b.method
        assert b.se == pytest.approx(a.se, rel=1e-7)  # the covariate's shift does not change the fit


def test_regression_adjustment_from_the_statistics_alone_equals_the_pipeline():
    """With power sums in the statistics, a warehouse's numbers need no second pass over the units."""
    frames = make_frames(seed=22, n=1200)
    spec = make_spec()
    aggregation = aggregate(spec, frames=frames, covariates=("pre_revenue",))
    from_stats = analyze_stats(spec, aggregation.stats)
    full = analyze_spec(spec, frames=frames, cuped=True)
    assert [r.method for r in from_stats.results] == [r.method for r in full.results]
    assert "cuped-ols-hc1" in {r.method for r in from_stats.results}
    for a, b in zip(from_stats.results, full.results, strict=True):
        assert a.se == pytest.approx(b.se, rel=1e-12)
        assert a.p_value == pytest.approx(b.p_value, rel=1e-9, abs=1e-15)


# ---------------------------------------------------------------------- plans on files and frames


def _files(frames: dict[str, pd.DataFrame], folder, fmt: str) -> dict[str, object]:
    paths = {}
    for name, frame in frames.items():
        path = folder / f"{name}.{fmt}"
        frame.to_parquet(path, index=False) if fmt == "parquet" else frame.to_csv(path, index=False)
        paths[name] = path
    return paths


def _with_ids(frames: dict[str, pd.DataFrame], change) -> dict[str, pd.DataFrame]:
    return {name: frame.assign(unit_id=change(frame["unit_id"])) for name, frame in frames.items()}


PLANS = {
    # name: (input kind, id transformation, daily, expected materialised, expected bitmap)
    "parquet, integer ids": ("parquet", None, False, False, True),
    "frames, integer ids": ("frames", None, False, False, True),
    "csv, integer ids": ("csv", None, False, True, True),
    "parquet, string ids": ("parquet", lambda s: "u" + s.astype(str), False, True, False),
    "parquet, ids spread wide": ("parquet", lambda s: s * 1_000_000_007, False, True, False),
    "parquet, daily curve": ("parquet", None, True, True, True),
}


def _aggregate(plan: str, frames, tmp_path):
    kind, change, daily, *_ = PLANS[plan]
    frames = _with_ids(frames, change) if change else frames
    spec = make_spec()
    if kind == "frames":
        return aggregate(spec, frames=frames, covariates=COVARIATES, log_moments=True)
    paths = _files(frames, tmp_path, kind)
    return aggregate(spec, paths, covariates=COVARIATES, log_moments=True, daily=daily)


@pytest.fixture(scope="module")
def plan_frames():
    return make_frames(seed=23, n=2000)


@pytest.mark.parametrize("plan", list(PLANS))
def test_every_plan_gives_the_same_statistics(plan, plan_frames, tmp_path):
    reference = aggregate(
        make_spec(), frames=plan_frames, covariates=COVARIATES, daily=True, log_moments=True
    )
    got = _aggregate(plan, plan_frames, tmp_path)
    *_, materialised, bitmap = PLANS[plan]
    assert got.materialised == materialised
    assert (got.id_range is not None) == bitmap
    for arm, want in reference.stats.arms.items():
        have = got.stats.arms[arm]
        assert have.moments.n == want.moments.n
        np.testing.assert_allclose(have.moments.mean, want.moments.mean, rtol=1e-12)
        np.testing.assert_allclose(have.moments.comoment, want.moments.comoment, rtol=1e-9)
        assert have.histograms == want.histograms
        for metric, powers in want.powers.items():
            np.testing.assert_allclose(have.powers[metric].sums, powers.sums, rtol=1e-9)
        for metric, logs in want.logs.items():
            assert have.logs[metric].positive.n == logs.positive.n
            np.testing.assert_allclose(have.logs[metric].positive.mean, logs.positive.mean, rtol=1e-12)


def _defect(case: str, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    assign, units = frames["assignments"], frames["units"]
    if case == "same variant twice":
        return frames | {"assignments": pd.concat([assign, assign.iloc[::5]])}
    if case == "two variants":
        unit, variant = assign["unit_id"].iloc[0], assign["variant"].iloc[0]
        other = "pct15" if variant != "pct15" else "bogo"
        return frames | {
            "assignments": pd.concat([assign, pd.DataFrame({"unit_id": [unit], "variant": [other]})])
        }
    if case == "repeated units rows":
        return frames | {"units": pd.concat([units, units.iloc[:3]])}
    raise AssertionError(case)


@pytest.mark.parametrize("plan", [p for p in PLANS if p != "parquet, daily curve"])
@pytest.mark.parametrize("case", ["same variant twice", "two variants", "repeated units rows"])
def test_every_plan_finds_repeated_units(plan, case, plan_frames, tmp_path):
    defective = _defect(case, plan_frames)
    if case == "same variant twice":  # an exposure log: collapsed, the same statistics as without repeats
        got = _aggregate(plan, defective, tmp_path).stats
        want = aggregate(make_spec(), frames=plan_frames, covariates=COVARIATES).stats
        for arm in want.arms:
            assert got.arms[arm].moments.n == want.arms[arm].moments.n
            np.testing.assert_allclose(got.arms[arm].moments.mean, want.arms[arm].moments.mean, rtol=1e-12)
        return
    message = "units assigned to two variants" if case == "two variants" else "3 repeated unit id(s)"
    with pytest.raises(DataError, match=re.escape(message)):
        _aggregate(plan, defective, tmp_path)


def test_duckdb_draws_no_progress_bar_on_stdout(plan_frames):
    """DuckDB's progress bar (after 2 s) goes to stdout, which carries promolab's tables and JSON."""
    con = aggregate(make_spec(), frames=plan_frames).con
    settings_ = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert settings_["enable_progress_bar"] == "false"
    assert settings_["preserve_insertion_order"] == "false"
