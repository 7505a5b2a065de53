"""The aggregation's query plans give the same statistics, and the power sums the same residual sums.

``aggregate`` reads the units in one pass (per-unit values as a common table expression, repeats found
by a bitmap of integer ids) when it can, else it materialises a table (CSV inputs, string or widely
spread ids, the daily curve). Each plan is checked against the others on the same rows, including the
repeat checks; :class:`PowerSums` against residual sums computed directly with numpy.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.reference.test_analyze_reference import ARMS, make_frames, make_spec, ols_hc1, per_unit

from promolab.aggregate.duck import aggregate
from promolab.analyze import analyze_spec
from promolab.analyze.run import analyze_stats
from promolab.errors import DataError
from promolab.stats.moments import ExperimentStats, Moments, PowerSums, ResidualMoments, power_exponents

COVARIATES = ("pre_revenue", "pre_orders")


def _direct_residuals(y, x, slopes, centre) -> ResidualMoments:
    """The residual sums written out, in extended precision (numpy's longdouble)."""
    y, x = np.asarray(y, dtype=np.longdouble), np.asarray(x, dtype=np.longdouble)
    e = (y - y.mean()) - (x - x.mean(axis=0)) @ np.asarray(slopes, dtype=np.longdouble)
    u = x - np.asarray(centre, dtype=np.longdouble)
    e2 = e * e
    return ResidualMoments(e2.sum(), e2 @ u, (u * e2[:, None]).T @ u)


def _assert_residuals(got: ResidualMoments, y, x, slopes, centre, precision: float) -> None:
    """``got`` equals the extended-precision residual sums within ``precision`` of the sums of absolute
    terms."""
    want = _direct_residuals(y, x, slopes, centre)
    e2 = ((y - y.mean()) - (x - x.mean(axis=0)) @ slopes) ** 2
    u = np.abs(x - centre)
    assert abs(got.e2 - float(want.e2)) <= precision * e2.sum()
    np.testing.assert_array_less(np.abs(got.e2_u - want.e2_u.astype(float)), precision * (e2 @ u) + 1e-300)
    scale = (u * e2[:, None]).T @ u
    np.testing.assert_array_less(np.abs(got.e2_uu - want.e2_uu.astype(float)), precision * scale + 1e-300)


def _power_sums(names, y, x) -> PowerSums:
    v = np.column_stack([y, x]).astype(np.longdouble)
    sums = [np.prod(v ** np.array(e), axis=1).sum() for e in power_exponents(x.shape[1])]
    return PowerSums(tuple(names), np.array(sums, dtype=float))


def _case(p: int, n: int, seed: int, offset: float, fit: float):
    """Heavy-tailed covariates ``offset`` sds from zero; zero-inflated y explained by them to ``fit``."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0.0, 1.0, (n, p))
    x = (x - x.mean(axis=0)) / x.std(axis=0) + offset
    noise = np.where(rng.random(n) < 0.3, rng.lognormal(0.0, 1.0, n), 0.0)
    y = x[:, 0] + (1 - fit) * 20 * (noise - noise.mean()) / noise.std() + offset
    names = ("y", *(f"x{j}" for j in range(p)))
    return names, y, x


@settings(max_examples=80, deadline=None)
@given(
    p=st.integers(1, 3),
    n=st.integers(30, 400),
    seed=st.integers(0, 2**32 - 1),
    offset=st.floats(-30.0, 30.0),
    fit=st.sampled_from([0.0, 0.9, 0.99, 0.999, 0.9999, 1 - 1e-6]),
)
def test_power_sums_give_accurate_residual_sums_or_decline(p, n, seed, offset, fit):
    """Near and past the guard (offsets up to 30 sd, y explained up to 1 - 1e-6): when the power sums
    answer, they equal the extended-precision sums within 1e-9 of the sums of absolute terms."""
    names, y, x = _case(p, n, seed, offset, fit)
    moments = Moments.from_values(names, np.column_stack([y, x]))
    slopes = np.linalg.lstsq(np.column_stack([np.ones(n), x]), y, rcond=None)[0][1:]
    centre = x.mean(axis=0)
    got = _power_sums(names, y, x).residuals(moments, slopes, centre)
    if got is None:
        return
    _assert_residuals(got, y, x, slopes, centre, 1e-9)


@settings(max_examples=60, deadline=None)
@given(
    p=st.integers(1, 3),
    n=st.integers(30, 300),
    seed=st.integers(0, 2**32 - 1),
    offset=st.floats(-1e6, 1e6),
    fit=st.sampled_from([0.0, 0.9, 0.999]),
)
def test_power_sums_about_the_means_answer_however_far_from_zero(p, n, seed, offset, fit):
    """Sums about the arm's means (the warehouse query's, whose origin is its own ``mean:<i>``) never
    cancel through the means: a million sd from zero they still answer, and equal the extended-precision
    residual sums of the raw values within 1e-9 plus the data's own precision: a value ``|v|`` far from
    zero is known to ``|v| eps``, which moves a residual ``e`` by that much (a second pass over the rows
    in doubles has the same floor)."""
    names, y, x = _case(p, n, seed, offset, fit)
    values = np.column_stack([y, x])
    moments = Moments.from_values(names, values)
    origin = moments.mean
    slopes = np.linalg.lstsq(np.column_stack([np.ones(n), x]), y, rcond=None)[0][1:]
    centre = x.mean(axis=0)
    centred = _power_sums(names, y - origin[0], x - origin[1:])
    got = PowerSums(centred.names, centred.sums, origin).residuals(moments, slopes, centre)
    assert got is not None or fit == 0.999  # a near-perfect fit may still decline (S_yy / S_ee)
    if got is None:
        return
    e = (y - y.mean()) - (x - x.mean(axis=0)) @ slopes
    rounding = (
        8 * np.finfo(float).eps * np.abs(values).max() * (1 + np.abs(slopes).sum()) / np.sqrt(np.mean(e**2))
    )
    _assert_residuals(got, y, x, slopes, centre, 1e-9 + rounding)
    with pytest.raises(ValueError, match="different origins"):
        _ = PowerSums(centred.names, centred.sums, origin) + centred


@pytest.mark.parametrize(
    ("offset", "noise", "answers"),
    [(15.0, None, True), (18.0, None, False), (1e6, None, False), (0.0, 0.03, True), (0.0, 0.001, False)],
)
def test_power_sums_decline_when_they_would_cancel(offset, noise, answers):
    """Guard ``(1 + r)^4 S_yy / S_ee <= 1e5``: y independent of x (``S_ee ~ S_yy``) passes 15 sd from
    zero, not 18 sd; y = x + noise passes with noise sd 0.03 (``S_yy / S_ee ~ 1e3``), not 0.001 (1e6)."""
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 1.0, (2000, 1))
    y = rng.normal(0.0, 1.0, 2000) if noise is None else x[:, 0] + rng.normal(0.0, noise, 2000)
    y = (y - y.mean()) / y.std() + offset
    names = ("y", "x0")
    moments = Moments.from_values(names, np.column_stack([y, x]))
    slopes = np.linalg.lstsq(np.column_stack([np.ones(len(y)), x]), y, rcond=None)[0][1:]
    found = _power_sums(names, y, x).residuals(moments, slopes, x.mean(axis=0))
    assert (found is not None) == answers


def test_power_sums_decline_a_constant_variable_or_other_units_and_merge_by_adding():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (500, 1))
    y = rng.normal(3, 1, 500) + x[:, 0]
    names = ("y", "x0")
    moments = Moments.from_values(names, np.column_stack([y, x]))
    sums = _power_sums(names, y, x)
    slopes, centre = np.array([1.0]), np.zeros(1)
    assert sums.residuals(moments, slopes, centre) is not None
    half = _power_sums(names, y[:250], x[:250])
    assert half.residuals(moments, slopes, centre) is None  # sums of other units than the moments
    ones = np.full(500, 2.0)
    constant = Moments.from_values(names, np.column_stack([ones, x]))
    assert _power_sums(names, ones, x).residuals(constant, slopes, centre) is None
    merged = _power_sums(names, y[:200], x[:200]) + _power_sums(names, y[200:], x[200:])
    np.testing.assert_allclose(merged.sums, sums.sums, rtol=1e-12)
    with pytest.raises(ValueError, match="cannot merge"):
        merged + PowerSums(("z", "x0"), merged.sums)


def _without_powers(stats: ExperimentStats) -> ExperimentStats:
    return dataclasses.replace(
        stats, arms={arm: dataclasses.replace(s, powers={}) for arm, s in stats.arms.items()}
    )


def test_power_sums_equal_the_exact_residual_pass():
    """HC1 errors from the power sums equal those of the exact second pass over the same units."""
    frames = make_frames(seed=22, n=1200)
    spec = make_spec()
    aggregation = aggregate(spec, frames=frames, covariates=COVARIATES)
    from_powers = analyze_stats(spec, aggregation.stats)
    from_pass = analyze_stats(spec, _without_powers(aggregation.stats), aggregation.residual_moments)
    methods = [r.method for r in from_powers.results]
    assert methods == [r.method for r in from_pass.results]
    assert methods.count("cuped-ols-hc1") == 6 * 3  # six adjustable metrics x three arms
    for a, b in zip(from_powers.results, from_pass.results, strict=True):
        assert a.se == pytest.approx(b.se, rel=1e-10)
        assert a.p_value == pytest.approx(b.p_value, rel=1e-8, abs=1e-300)


def test_partial_or_reordered_power_sums_are_not_used():
    """Merging statistics where one side has no power sums keeps none (HC1 from half the units would be
    wrong): without a residual pass the metric is analysed unadjusted, as any statistics without them."""
    frames = make_frames(seed=24, n=1500)
    spec = make_spec()
    half = len(frames["assignments"]) // 2
    first = frames | {"assignments": frames["assignments"].iloc[:half]}
    second = frames | {"assignments": frames["assignments"].iloc[half:]}
    a = aggregate(spec, frames=first, covariates=("pre_revenue",)).stats
    b = aggregate(spec, frames=second, covariates=("pre_revenue",)).stats
    merged = a + _without_powers(b)
    assert all(not s.powers for s in merged.arms.values())
    assert {r.method for r in analyze_stats(spec, merged).results} == {"welch-t", "z-unpooled", "delta-ratio"}
    both = a + b
    whole = aggregate(spec, frames=frames, covariates=("pre_revenue",)).stats
    for arm in whole.arms:
        for metric, powers in whole.arms[arm].powers.items():
            np.testing.assert_allclose(both.arms[arm].powers[metric].sums, powers.sums, rtol=1e-12)
    reordered = aggregate(spec, frames=frames, covariates=COVARIATES).stats
    swapped = dataclasses.replace(reordered, covariates=tuple(reversed(reordered.covariates)))
    assert "cuped-ols-hc1" not in {r.method for r in analyze_stats(spec, swapped).results}
    shifted = frames | {"units": frames["units"].assign(pre_revenue=frames["units"]["pre_revenue"] + 1e6)}
    far = aggregate(spec, frames=shifted, covariates=("pre_revenue",)).stats
    with pytest.raises(DataError, match="would cancel"):
        analyze_stats(spec, far)


def test_ill_conditioned_power_sums_fall_back_to_one_table_and_equal_statsmodels(monkeypatch):
    """A covariate 1e6 away from zero: the exact second pass runs, over a table materialised once, and
    equals statsmodels' OLS with HC1 errors on the shifted rows."""
    frames = make_frames(seed=21, n=1500)
    shifted = frames | {"units": frames["units"].assign(pre_revenue=frames["units"]["pre_revenue"] + 1e6)}
    from promolab.aggregate import duck

    calls: list[tuple[str, bool]] = []
    original = duck.DuckAggregation.residual_moments

    def spy(self, metric, *args):
        calls.append((metric, self.materialised))
        return original(self, metric, *args)

    monkeypatch.setattr(duck.DuckAggregation, "residual_moments", spy)
    spec = make_spec(analysis={"covariates": ["pre_revenue"]})
    analyze_spec(spec, frames=frames, cuped=True)
    assert calls == []
    moved = analyze_spec(spec, frames=shifted, cuped=True)
    assert sorted(m for m, _ in calls) == sorted(
        ["conversion", "revenue", "orders", "items", "mean_order", "max_order"]
    )
    table = per_unit(shifted)
    for metric in ("revenue", "conversion"):
        fit = ols_hc1(table, metric, ARMS, ("pre_revenue",))
        for k, arm in enumerate(ARMS[1:], start=1):
            got = next(r for r in moved.results if r.metric == metric and r.variant == arm)
            assert got.method == "cuped-ols-hc1"
            assert got.se == pytest.approx(fit.bse[k], rel=1e-8)
            assert got.abs_diff == pytest.approx(fit.params[k], rel=1e-8, abs=1e-8 * fit.bse[k])


def test_more_covariates_than_power_sums_serve_use_the_residual_pass():
    """Four covariates: no power sums, a materialised table and the exact pass; equal to statsmodels."""
    frames = make_frames(seed=25, n=1500)
    units = frames["units"]
    rng = np.random.default_rng(25)
    extra = {f"z{j}": rng.normal(0, 1, len(units)) + units["pre_revenue"] / 50 for j in range(2)}
    frames = frames | {"units": units.assign(**extra)}
    covariates = ("pre_revenue", "pre_orders", "z0", "z1")
    spec = make_spec(analysis={"covariates": list(covariates)})
    aggregation = aggregate(spec, frames=frames, covariates=covariates)
    assert aggregation.materialised
    assert all(not s.powers for s in aggregation.stats.arms.values())
    analysis = analyze_spec(spec, frames=frames, cuped=True)
    fit = ols_hc1(per_unit(frames), "revenue", ARMS, covariates)
    for k, arm in enumerate(ARMS[1:], start=1):
        got = next(r for r in analysis.results if r.metric == "revenue" and r.variant == arm)
        assert got.se == pytest.approx(fit.bse[k], rel=1e-8)


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


def _assert_same_stats(got: ExperimentStats, expected: ExperimentStats) -> None:
    assert list(got.arms) == list(expected.arms)
    for arm, want in expected.arms.items():
        have = got.arms[arm]
        assert have.moments.n == want.moments.n
        np.testing.assert_allclose(have.moments.mean, want.moments.mean, rtol=1e-12)
        np.testing.assert_allclose(have.moments.comoment, want.moments.comoment, rtol=1e-9)
        assert have.histograms == want.histograms
        for metric, powers in want.powers.items():
            np.testing.assert_allclose(have.powers[metric].sums, powers.sums, rtol=1e-9)
        assert have.powers.keys() == want.powers.keys()
        assert have.logs.keys() == want.logs.keys()
        for metric, logs in want.logs.items():
            assert have.logs[metric].positive.n == logs.positive.n
            np.testing.assert_allclose(have.logs[metric].positive.mean, logs.positive.mean, rtol=1e-12)


@pytest.mark.parametrize("plan", list(PLANS))
def test_every_plan_gives_the_same_statistics(plan, plan_frames, tmp_path):
    reference = aggregate(
        make_spec(), frames=plan_frames, covariates=COVARIATES, daily=True, log_moments=True
    )
    got = _aggregate(plan, plan_frames, tmp_path)
    *_, materialised, bitmap = PLANS[plan]
    assert got.materialised == materialised
    assert (got.id_range is not None) == bitmap
    _assert_same_stats(got.stats, reference.stats)


def test_raw_labels_mapped_to_arms_and_holdout_rows_give_the_arms_statistics(plan_frames):
    """``data.variant_values`` maps two raw labels to control; holdout rows count in no arm."""
    assign = plan_frames["assignments"]
    raw = assign["variant"].where(assign["variant"] != "control", np.where(assign.index % 2, "ctl", "base"))
    rng = np.random.default_rng(3)
    held = pd.DataFrame({"unit_id": assign["unit_id"].max() + 1 + np.arange(300), "variant": "holdout"})
    units = pd.concat(
        [plan_frames["units"], held[["unit_id"]].assign(pre_revenue=rng.gamma(1, 20, 300), pre_orders=1)]
    )
    mapped = plan_frames | {"assignments": pd.concat([assign.assign(variant=raw), held]), "units": units}
    mapping = {"ctl": "control", "base": "control", "pct15": "pct15", "save10": "save10", "bogo": "bogo"}
    spec = make_spec(
        design={"alpha": 0.05, "power": 0.8, "mde": {"relative": 0.05}, "holdout": 0.1},
        data={**make_spec().data.model_dump(exclude_none=True), "variant_values": mapping},
    )
    got = aggregate(spec, frames=mapped, covariates=COVARIATES, log_moments=True)
    assert not got.materialised
    want = aggregate(make_spec(), frames=plan_frames, covariates=COVARIATES, log_moments=True).stats
    _assert_same_stats(got.stats, want)


def test_a_wrong_variant_column_is_a_quick_clear_error():
    """Every unit with its own label (an id column named as the variant column): the undeclared labels
    are named, without a statistic (or a bitmap) per label."""
    frames = make_frames(seed=26, n=20000)
    frames = frames | {
        "assignments": frames["assignments"].assign(variant=lambda f: "v" + f["unit_id"].astype(str))
    }
    with pytest.raises(DataError, match=r"label\(s\) 'v\d+' \(1 units\).*are not variants"):
        aggregate(make_spec(), frames=frames, covariates=COVARIATES)


@pytest.mark.parametrize("dtype", ["Int64", "float64"])
def test_a_missing_unit_id_is_named(plan_frames, dtype):
    assign = plan_frames["assignments"].astype({"unit_id": dtype})
    assign.loc[assign.index[:2], "unit_id"] = None
    with pytest.raises(DataError, match=r"DataFrame 'assignments': 2 row\(s\) have no unit_id"):
        aggregate(make_spec(), frames=plan_frames | {"assignments": assign}, covariates=COVARIATES)


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
        want = aggregate(make_spec(), frames=plan_frames, covariates=COVARIATES, log_moments=True).stats
        _assert_same_stats(got, want)
        return
    message = (
        "units assigned to two variants" if case == "two variants" else "3 unit id(s) appear more than once"
    )
    with pytest.raises(DataError, match=re.escape(message)):
        _aggregate(plan, defective, tmp_path)


def test_duckdb_draws_no_progress_bar_on_stdout(plan_frames):
    """DuckDB's progress bar (after 2 s) goes to stdout, which carries promolab's tables and JSON."""
    con = aggregate(make_spec(), frames=plan_frames).con
    settings_ = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert settings_["enable_progress_bar"] == "false"
    assert settings_["preserve_insertion_order"] == "false"
