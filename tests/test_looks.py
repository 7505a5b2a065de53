"""The looks' incremental aggregation (:mod:`promolab.aggregate.looks`): the statistics of a look built
day by day from merged per-unit partials equal those of a fresh aggregation of the data cut at the
look's day, for every metric kind, CUPED (shared and own-history covariates) and percentile capping;
a resumed state equals one run; a state of another spec or changed inputs is refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import promolab
from promolab.aggregate.duck import aggregate, connect
from promolab.aggregate.looks import LookAggregation, attached
from promolab.analyze.monitor import monitor_spec
from promolab.analyze.run import own_covariates
from promolab.errors import DataError
from promolab.simulate import simulate, write_simulated
from promolab.spec.models import Capping, ContinuousMetric, Guardrail
from promolab.spec.windows import expand
from promolab.stats.moments import ExperimentStats

from .conftest import EXAMPLES, assert_same_looks

LOOK_DAYS = (0, 1, 6, 27)  # days after start: the first look, the next, a week, the end


def _spec() -> promolab.ExperimentSpec:
    """Spring discount with every per-unit aggregate (sum, mean, max, count, 0/1, ratio, ordinal
    mean), a percentile cap, a pre-period and a shared covariate."""
    spec = promolab.load_spec(EXAMPLES / "spring-discount.yaml")
    extra = (
        ContinuousMetric(id="avg_amount", kind="continuous", source="orders", column="amount", agg="mean"),
        ContinuousMetric(id="max_amount", kind="continuous", source="orders", column="amount", agg="max"),
    )
    metrics = tuple(
        m.model_copy(update={"capping": Capping(percentile=0.99)}) if m.id == "revenue" else m
        for m in spec.metrics
    )
    analysis = spec.analysis.model_copy(update={"segments": ()})
    guardrails = (
        Guardrail(metric="satisfaction", max_relative_drop=0.05),
        Guardrail(metric="aov", max_relative_drop=0.1),
    )
    return spec.model_copy(
        update={"metrics": metrics + extra, "pre_days": 14, "analysis": analysis, "guardrails": guardrails}
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[promolab.ExperimentSpec, dict[str, Path]]:
    """Simulated data with pre-period orders (a fifth of the orders again, 20 days earlier)."""
    spec = _spec()
    folder = tmp_path_factory.mktemp("looks")
    paths = write_simulated(simulate(spec, 3000, seed=11), spec, folder)
    orders = pd.read_parquet(paths["orders"])
    earlier = orders.sample(frac=0.2, random_state=1).assign(ts=lambda f: f["ts"] - pd.Timedelta(days=20))
    pd.concat([orders, earlier]).to_parquet(paths["orders"])
    return spec, paths


def _cut(paths: dict[str, Path], day: dt.date, folder: Path) -> dict[str, Path]:
    """The event tables with only the rows dated through ``day``."""
    cut = dict(paths)
    for name in ("orders", "survey"):
        frame = pd.read_parquet(paths[name])
        cut[name] = folder / f"{name}-{day}.parquet"
        frame[frame["ts"].dt.date <= day].to_parquet(cut[name])
    return cut


def _assert_same(found: ExperimentStats, expected: ExperimentStats) -> None:
    assert found.caps == pytest.approx(expected.caps, rel=1e-12)
    assert set(found.arms) == set(expected.arms)
    for arm, stats in expected.arms.items():
        got = found.arms[arm]
        assert got.moments.names == stats.moments.names
        assert got.moments.n == stats.moments.n
        np.testing.assert_allclose(got.moments.mean, stats.moments.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.moments.comoment, stats.moments.comoment, rtol=1e-9, atol=1e-9)
        assert got.histograms.keys() == stats.histograms.keys()
        for name, histogram in stats.histograms.items():
            assert got.histograms[name] == histogram
        assert got.powers.keys() == stats.powers.keys()
        for name, powers in stats.powers.items():
            np.testing.assert_allclose(got.powers[name].sums, powers.sums, rtol=1e-9, atol=1e-9)


def test_each_look_equals_a_fresh_aggregation_of_the_data_cut_at_its_day(
    written: tuple[promolab.ExperimentSpec, dict[str, Path]], tmp_path: Path
) -> None:
    spec, paths = written
    expanded = expand(spec)
    covariates, own = spec.analysis.covariates, own_covariates(expanded)
    assert own, "the spec must have own-history covariates for this test"
    con, sources = connect(expanded, paths, {}, covariates)
    looks = LookAggregation(expanded, con, sources, covariates, own)
    after = None
    with attached(con, None):
        for offset in range(max(LOOK_DAYS) + 1):
            day = spec.start + dt.timedelta(days=offset)
            looks.read(after, day)
            after = day
            if offset not in LOOK_DAYS:
                continue
            fresh = aggregate(expanded, _cut(paths, day, tmp_path), covariates=covariates, own_covariates=own)
            _assert_same(looks.stats_now(), fresh.stats)


def test_a_resumed_state_gives_the_looks_of_one_run(
    written: tuple[promolab.ExperimentSpec, dict[str, Path]], tmp_path: Path
) -> None:
    """Monitoring through day 10 and then resuming from the state file equals one run through the
    data; the resumed run reads only the days after the state's last day."""
    spec, paths = written
    one_run = monitor_spec(spec, overrides=paths)
    state = tmp_path / "looks.state.duckdb"
    cut = _cut(paths, spec.start + dt.timedelta(days=10), tmp_path)
    early = monitor_spec(spec, overrides=cut, state=state)
    assert [look["date"] for look in early["looks"]][-1] == (spec.start + dt.timedelta(days=10)).isoformat()
    resumed = monitor_spec(spec, overrides=paths, state=state)
    assert_same_looks(resumed, one_run)
    assert len(resumed["looks"]) == 28


def test_a_state_of_another_spec_or_changed_rows_is_refused(
    written: tuple[promolab.ExperimentSpec, dict[str, Path]], tmp_path: Path
) -> None:
    spec, paths = written
    state = tmp_path / "looks.state.duckdb"
    cut = _cut(paths, spec.start + dt.timedelta(days=3), tmp_path)
    monitor_spec(spec, overrides=cut, state=state)
    before = state.read_bytes()
    other = spec.model_copy(update={"hypothesis": "another"})
    with pytest.raises(DataError, match="another version of the spec"):
        monitor_spec(other, overrides=cut, state=state)
    with pytest.raises(DataError, match="another --cuped setting"):
        monitor_spec(spec, overrides=cut, state=state, cuped=False)
    orders = pd.read_parquet(cut["orders"])
    late = orders[orders["ts"].dt.date == spec.start].iloc[:1]
    pd.concat([orders, late]).to_parquet(cut["orders"])  # a row of the first day arrives late
    with pytest.raises(DataError, match="changed since"):
        monitor_spec(spec, overrides=cut, state=state)
    orders.iloc[1:].to_parquet(cut["orders"])  # a row read before is gone
    with pytest.raises(DataError, match="changed since"):
        monitor_spec(spec, overrides=cut, state=state)
    assert state.read_bytes() == before  # a refused run leaves the state as it was
    rebuilt = monitor_spec(spec, overrides=cut, state=state, rebuild=True)
    assert len(rebuilt["looks"]) == 4


@pytest.mark.parametrize("stored", ["csv-with-offsets", "parquet-zoned"])
def test_looks_read_text_and_zoned_times_as_they_read_naive_parquet_times(
    written: tuple[promolab.ExperimentSpec, dict[str, Path]], tmp_path: Path, stored: str
) -> None:
    """The same rows with times as text carrying a UTC offset (CSV: no row-group skipping) or as
    zoned Parquet times (bounds cast to TIMESTAMPTZ) give the same looks as naive Parquet times."""
    spec, paths = written
    other = dict(paths)
    for name in ("orders", "survey"):
        frame = pd.read_parquet(paths[name])
        zoned = frame.assign(ts=frame["ts"].dt.tz_localize("UTC").dt.tz_convert("America/New_York"))
        if stored == "csv-with-offsets":
            other[name] = tmp_path / f"{name}.csv"
            zoned.assign(ts=zoned["ts"].map(lambda t: t.isoformat())).to_csv(other[name], index=False)
        else:
            other[name] = tmp_path / f"{name}.parquet"
            zoned.to_parquet(other[name])
    through = spec.start + dt.timedelta(days=9)
    assert_same_looks(
        monitor_spec(spec, overrides=other, through=through),
        monitor_spec(spec, overrides=paths, through=through),
    )


def test_the_newest_day_is_provisional_until_later_rows_exist(
    written: tuple[promolab.ExperimentSpec, dict[str, Path]], tmp_path: Path
) -> None:
    """An export taken at noon of day 10: the day-10 look is shown, marked provisional, and not kept;
    the next run, with the whole of day 10 and day 11, resumes without a refusal and equals one run."""
    spec, paths = written
    state = tmp_path / "looks.state.duckdb"
    noon = pd.Timestamp(spec.start + dt.timedelta(days=9)) + pd.Timedelta(hours=12)
    partial = dict(paths)
    for name in ("orders", "survey"):
        frame = pd.read_parquet(paths[name])
        partial[name] = tmp_path / f"{name}-noon.parquet"
        frame[frame["ts"] < noon].to_parquet(partial[name])
    early = monitor_spec(spec, overrides=partial, state=state)
    assert [look["provisional"] for look in early["looks"]] == [False] * 9 + [True]
    day11 = spec.start + dt.timedelta(days=10)
    resumed = monitor_spec(spec, overrides=_cut(paths, day11, tmp_path), state=state)
    assert [look["provisional"] for look in resumed["looks"]] == [False] * 10 + [True]
    assert_same_looks(resumed, monitor_spec(spec, overrides=_cut(paths, day11, tmp_path)))


def test_state_files_that_are_not_this_tests_are_refused_untouched(
    written: tuple[promolab.ExperimentSpec, dict[str, Path]], tmp_path: Path
) -> None:
    import duckdb

    spec, paths = written
    through = spec.start + dt.timedelta(days=2)
    with pytest.raises(DataError, match="its folder does not exist"):
        monitor_spec(spec, overrides=paths, state=tmp_path / "missing" / "s.duckdb", through=through)
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE meta (k INTEGER)")
    before = other.read_bytes()
    with pytest.raises(DataError, match="not a looks' state file"):
        monitor_spec(spec, overrides=paths, state=other, through=through)
    assert other.read_bytes() == before
    state = tmp_path / "looks.state.duckdb"
    monitor_spec(spec, overrides=paths, state=state, through=through)
    renamed = spec.model_copy(update={"id": "another-test"})
    with pytest.raises(DataError, match="holds the looks of experiment 'spring-discount-2026'"):
        monitor_spec(renamed, overrides=paths, state=state, through=through)
    with pytest.raises(DataError, match="no look yet"):
        monitor_spec(spec, overrides=paths, through=spec.start - dt.timedelta(days=1))
