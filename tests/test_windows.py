"""The time and product axes: pre / during / post / total windows, CUPED on a metric's own pre-period,
the decomposition of the net incremental margin, and the simulator's pull-forward, cannibalisation
and halo effects recovered within their intervals. References: pandas on the same rows (Udacity
``ab_data``), statsmodels' OLS with HC1 errors, closed forms of the simulator's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

import promolab
from promolab.analyze import Analysis
from promolab.analyze.run import analyze_spec
from promolab.decision import decide
from promolab.economics import evaluate
from promolab.errors import DataError, SpecError
from promolab.simulate import simulate
from promolab.spec import spec_from_dict

from .conftest import shared_file

# ---------------------------------------------------------------------- Udacity ab_data against pandas

AB_WINDOWS = {  # 2017-01-02 .. 2017-01-24: a week before, nine days, a week after
    "pre": ("2017-01-02", "2017-01-08"),
    "during": ("2017-01-09", "2017-01-17"),
    "post": ("2017-01-18", "2017-01-24"),
    "total": ("2017-01-09", "2017-01-24"),
}


@pytest.fixture(scope="module")
def ab() -> dict[str, pd.DataFrame]:
    rows = pd.read_csv(shared_file("ab_data.csv.gz"))
    groups = rows.groupby("user_id")["group"].nunique()
    rows = rows[rows["user_id"].isin(groups.index[groups == 1])]
    assignments = rows.drop_duplicates("user_id")[["user_id", "group"]]
    return {"assignments": assignments, "visits": rows}


def _ab_spec(**changes) -> dict:
    spec = {
        "id": "ab-windows", "name": "ab_data windows", "unit": "user",
        "start": "2017-01-09", "end": "2017-01-17", "pre_days": 7, "post_days": 7,
        "variants": [{"id": "control", "kind": "control", "weight": 0.5},
                     {"id": "treatment", "kind": "treatment", "weight": 0.5}],
        "metrics": [
            {"id": "visits", "kind": "count", "source": "visits"},
            {"id": "converted", "kind": "binary", "source": "visits", "column": "converted"},
            {"id": "conversions", "kind": "count", "source": "visits", "column": "converted"},
            {"id": "new_page_visits", "kind": "count", "source": "visits",
             "where": {"column": "landing_page", "in": ["new_page"]}},
        ],
        "primary": "conversions",
        "data": {"assignments": "a.csv", "tables": {"visits": "v.csv"}, "unit_id": "user_id",
                 "variant_column": "group", "timestamp": "timestamp"},
    }  # fmt: skip
    spec.update(changes)
    return spec


def _pandas_per_unit(ab: dict[str, pd.DataFrame], window: str) -> pd.DataFrame:
    """Every metric's per-user value over the rows dated in ``window``, 0 for users without rows."""
    rows = ab["visits"]
    day = pd.to_datetime(rows["timestamp"]).dt.normalize()
    first, last = (pd.Timestamp(d) for d in AB_WINDOWS[window])
    rows = rows[day.between(first, last)]
    grouped = rows.groupby("user_id")
    values = pd.DataFrame(
        {
            "visits": grouped.size(),
            "converted": grouped["converted"].max(),
            "conversions": grouped["converted"].sum(),
            "new_page_visits": rows[rows["landing_page"] == "new_page"].groupby("user_id").size(),
        }
    )
    users = ab["assignments"].set_index("user_id")
    return values.reindex(users.index).fillna(0.0).assign(group=users["group"])


def test_every_window_equals_pandas_on_the_same_rows(ab):
    analysis = analyze_spec(spec_from_dict(_ab_spec()), frames=ab, cuped=False)
    for window in AB_WINDOWS:
        expected = _pandas_per_unit(ab, window)
        for metric in ("visits", "converted", "conversions", "new_page_visits"):
            name = metric if window == "during" else f"{metric}@{window}"
            for arm, moments in analysis.arms.items():
                values = expected.loc[expected["group"] == arm, metric]
                assert moments.n == len(values)
                assert moments.mean_of(name) == pytest.approx(values.mean(), rel=1e-12), (name, arm)
                assert moments.var(name) == pytest.approx(values.var(), rel=1e-9), (name, arm)


def test_rows_outside_every_window_are_left_out_and_counted(ab):
    narrow = _ab_spec(start="2017-01-12", end="2017-01-15", pre_days=2, post_days=3)
    analysis = analyze_spec(spec_from_dict(narrow), frames=ab, cuped=False)
    day = pd.to_datetime(ab["visits"]["timestamp"]).dt.normalize()
    inside = day.between(pd.Timestamp("2017-01-10"), pd.Timestamp("2017-01-18"))
    counted = analysis.data_quality.tables["visits"]
    assert counted.outside_window_rows == int((~inside).sum())
    assert counted.analysed_rows == int(inside.sum())


def test_results_carry_their_window_and_total_uses_the_covariance(ab):
    analysis = analyze_spec(spec_from_dict(_ab_spec()), frames=ab, cuped=False)
    rows = {r.metric: r for r in analysis.results}
    assert rows["visits"].window == "during"
    assert rows["visits"].role == "secondary"
    assert rows["conversions"].role == "primary"
    assert (rows["visits@post"].window, rows["visits@total"].window) == ("post", "total")
    assert {rows["visits@post"].role, rows["visits@total"].role} == {"window"}
    assert not any(name.endswith("@pre") for name in rows)  # a covariate, not a result
    for arm_moments in analysis.arms.values():  # the per-unit identity the total's interval rests on
        d, p, t = "visits", "visits@post", "visits@total"
        expected = arm_moments.var(d) + arm_moments.var(p) + 2 * arm_moments.cov(d, p)
        assert arm_moments.var(t) == pytest.approx(expected, rel=1e-9)
    total = _pandas_per_unit(ab, "total")
    by_arm = {arm: total.loc[total["group"] == arm, "visits"] for arm in ("control", "treatment")}
    se = np.sqrt(sum(v.var() / len(v) for v in by_arm.values()))
    assert rows["visits@total"].se == pytest.approx(se, rel=1e-9)
    assert rows["visits@total"].abs_diff == pytest.approx(
        by_arm["treatment"].mean() - by_arm["control"].mean(), rel=1e-9
    )


def test_a_metric_declared_in_the_total_window_is_judged_there(ab):
    raw = _ab_spec()
    raw["metrics"][2]["window"] = "total"
    analysis = analyze_spec(spec_from_dict(raw), frames=ab, cuped=False)
    rows = {r.metric: r for r in analysis.results}
    assert rows["conversions"].window == "total"
    assert rows["conversions"].role == "primary"
    assert rows["conversions@during"].window == "during"
    total = _pandas_per_unit(ab, "total")
    mean = total.loc[total["group"] == "treatment", "conversions"].mean()
    assert rows["conversions"].variant_mean == pytest.approx(mean, rel=1e-12)


def test_simulated_rows_after_every_window_are_left_out_and_counted():
    spec = spec_from_dict(_axes_spec(EFFECTS))
    frames = _frames(spec, 2000, 6)
    analysis = analyze_spec(spec, frames=frames)
    after = frames["orders"]["ts"] >= pd.Timestamp("2026-06-15")  # end + post_days + 1
    assert after.sum() > 0
    assert analysis.data_quality.tables["orders"].outside_window_rows == int(after.sum())


def test_windows_round_trip_through_the_json(ab):
    analysis = analyze_spec(spec_from_dict(_ab_spec()), frames=ab)
    assert Analysis.from_dict(analysis.to_dict()) == analysis
    assert {r["window"] for r in analysis.to_dict()["results"]} == {"during", "post", "total"}


# ---------------------------------------------------------------------- CUPED on the own pre-period


def _axes_spec(effects: dict | None = None, **changes) -> dict:
    spec = {
        "id": "axes", "name": "time and product axes", "unit": "customer",
        "start": "2026-05-04", "end": "2026-05-31", "pre_days": 28, "post_days": 14,
        "variants": [{"id": "control", "kind": "control", "weight": 0.5},
                     {"id": "promo", "kind": "treatment", "weight": 0.5, "cost_per_unit": 0.5}],
        "metrics": [
            {"id": "orders", "kind": "count", "source": "orders"},
            {"id": "promoted", "kind": "count", "source": "orders",
             "where": {"column": "category", "in": ["snacks"]}},
            {"id": "substitutes", "kind": "count", "source": "orders",
             "where": {"column": "category", "in": ["crisps"]}},
            {"id": "others", "kind": "count", "source": "orders",
             "where": {"column": "category", "not_in": ["snacks", "crisps"]}},
            {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
            {"id": "units_sold", "kind": "count", "source": "orders", "column": "quantity"},
        ],
        "primary": "orders",
        "economics": {"unit_price": 4, "unit_cost": 2.6, "units": "units_sold",
                      "promoted": {"column": "category", "in": ["snacks"], "substitutes": ["crisps"]}},
        "data": {"assignments": "a.parquet", "tables": {"orders": "o.parquet"}, "timestamp": "ts"},
        "simulation": {"purchase_prob": 0.5, "orders_per_buyer": 3.0,
                       "categories": {"snacks": 0.3, "crisps": 0.2, "other": 0.5},
                       "effects": {"promo": effects or {}}},
    }  # fmt: skip
    spec.update(changes)
    return spec


EFFECTS = {"conversion": 0.3, "cannibalisation": 0.3, "halo": 0.05, "pull_forward": 0.4}


def _true_lifts(b: float, c: float, halo: float, f: float) -> dict[str, float]:
    """Relative lifts of order counts the simulator's model implies (shares 0.3 / 0.2 / 0.5, 28 days
    of promotion, 14 after): see promolab.simulate.timeline."""
    lost = c * b * 0.3
    extra = 0.3 * b - lost + 0.5 * halo  # extra orders per day during, as a share of the reference's
    return {
        "promoted": b,
        "substitutes": -lost / 0.2,
        "others": halo,
        "orders": extra,
        "orders@post": -f * 28 * extra / 14,
    }


def _frames(spec, units: int, seed: int) -> dict[str, pd.DataFrame]:
    data = simulate(spec, units, seed)
    return {name: data.frame(name) for name in data.tables}


def test_cuped_on_the_own_pre_period_equals_statsmodels_ols_hc1():
    spec = spec_from_dict(_axes_spec(EFFECTS))
    frames = _frames(spec, 3000, 5)
    analysis = analyze_spec(spec, frames=frames)
    orders = frames["orders"].merge(frames["assignments"], on="unit_id")
    day = orders["ts"].dt.normalize()
    in_pre = day.between(pd.Timestamp("2026-04-06"), pd.Timestamp("2026-05-03"))
    pre = orders[in_pre].groupby("unit_id")["amount"].sum()
    in_post = day.between(pd.Timestamp("2026-06-01"), pd.Timestamp("2026-06-14"))
    post = orders[in_post].groupby("unit_id")["amount"].sum()
    units = frames["assignments"].set_index("unit_id")
    per_unit = units.assign(x=pre.reindex(units.index).fillna(0.0), y=post.reindex(units.index).fillna(0.0))
    fit = smf.ols("y ~ C(variant, Treatment('control')) + x", data=per_unit).fit(cov_type="HC1")
    term = "C(variant, Treatment('control'))[T.promo]"
    row = next(r for r in analysis.results if r.metric == "revenue@post")
    assert row.method == "cuped-ols-hc1"
    assert row.adjusted_for == ("revenue@pre",)
    assert row.abs_diff == pytest.approx(fit.params[term], rel=1e-9)
    assert row.se == pytest.approx(fit.bse[term], rel=1e-9)


def _with_a_launch(raw: dict, units: int) -> dict:
    """Results of the spec with a metric of a product launched with the promotion (category 'new':
    half the other-category orders from the start on), which has no pre-period sales."""
    raw["metrics"].append(
        {"id": "launch", "kind": "count", "source": "orders", "where": {"column": "category", "in": ["new"]}}
    )
    spec = spec_from_dict(raw)
    frames = _frames(spec, units, 2)
    orders = frames["orders"]
    launched = (orders["ts"] >= pd.Timestamp("2026-05-04")) & (orders["category"] == "other")
    orders.loc[launched & (orders.index % 2 == 0), "category"] = "new"
    return {r.metric: r for r in analyze_spec(spec, frames=frames).results}


def test_a_pre_period_value_that_never_varies_is_not_a_covariate():
    """A product launched with the promotion has no pre-period sales: its metric is analysed without
    that covariate (it would be singular), the others keep theirs."""
    rows = _with_a_launch(_axes_spec(EFFECTS), 2000)
    assert rows["launch"].adjusted_for == ()
    assert rows["launch"].flags == ()
    assert rows["launch"].method == "welch-t"
    assert rows["others"].adjusted_for == ("others@pre",)


# ---------------------------------------------------------------------- recovery and calibration


def _coverage_bounds(runs: int, level: float) -> tuple[float, float]:
    """99.8% binomial range of the share of ``runs`` intervals covering at ``level``."""
    low, high = stats.binom.ppf([0.001, 0.999], runs, level)
    return low / runs, high / runs


RUNS = 150


def test_pull_forward_cannibalisation_and_halo_are_recovered_within_their_intervals():
    spec = spec_from_dict(_axes_spec(EFFECTS))
    truth = _true_lifts(0.3, 0.3, 0.05, 0.4)
    covered = dict.fromkeys(truth, 0)
    for seed in range(RUNS):
        rows = {r.metric: r for r in analyze_spec(spec, frames=_frames(spec, 4000, seed)).results}
        for name, lift in truth.items():
            low, high = rows[name].rel_ci
            covered[name] += low <= lift <= high
    low, high = _coverage_bounds(RUNS, 0.95)
    for name, hits in covered.items():
        assert low <= hits / RUNS <= high, (name, hits / RUNS)


def test_a_a_tests_reject_at_alpha_in_every_window():
    spec = spec_from_dict(_axes_spec())
    names = ("orders", "orders@post", "orders@total", "revenue", "revenue@post", "revenue@total")
    rejected = dict.fromkeys(names, 0)
    for seed in range(RUNS):
        rows = {r.metric: r for r in analyze_spec(spec, frames=_frames(spec, 2000, 10_000 + seed)).results}
        for name in names:
            rejected[name] += rows[name].p_value < 0.05
    low, high = _coverage_bounds(RUNS, 0.05)
    for name, hits in rejected.items():
        assert low <= hits / RUNS <= high, (name, hits / RUNS)


# ---------------------------------------------------------------------- the decomposition


def test_the_decomposition_adds_up_to_the_net_incremental_margin():
    spec = spec_from_dict(_axes_spec(EFFECTS))
    result = promolab.analyze(spec, data=_frames(spec, 80_000, 3))  # each part about 4 se from 0
    arm = result.economics().arms[0]
    parts = arm.decomposition
    assert list(parts) == ["promoted", "cannibalised", "halo", "pull_forward"]
    net = arm.quantities["incremental_margin"].value
    assert sum(p.value for p in parts.values()) == pytest.approx(net, rel=1e-9, abs=1e-6)
    for part in parts.values():
        assert part.ci is not None
        assert part.ci[0] < part.value < part.ci[1]
    assert parts["promoted"].ci[0] > 0
    assert parts["cannibalised"].ci[1] < 0
    assert parts["pull_forward"].ci[1] < 0


def test_a_bump_that_is_all_pull_forward_nets_to_nothing_and_stops():
    effects = {"conversion": 0.3, "pull_forward": 1.0}
    spec = spec_from_dict(_axes_spec(effects, decision={"metric": "profit", "prob_positive": 0.9}))
    result = promolab.analyze(spec, data=_frames(spec, 20_000, 4))
    arm = result.economics().arms[0]
    net = arm.quantities["incremental_margin"]
    bump = sum(arm.decomposition[p].value for p in ("promoted", "cannibalised", "halo"))
    assert arm.decomposition["promoted"].ci[0] > 0  # a clear bump during the promotion ...
    assert net.ci[0] < 0 < net.ci[1]
    assert net.ci[1] < bump
    assert arm.decomposition["pull_forward"].ci[1] < 0
    assert result.decision.action == "stop"
    assert decide(spec, result.analysis, evaluate(spec, result.analysis)).action == "stop"


# ---------------------------------------------------------------------- spec checks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"post_days": 0, "window": "post"}, "'post' needs post_days > 0"),
        ({"timestamp": None, "window": "total"}, "needs dated event rows"),
        ({"capping": {"percentile": 0.99}}, "without its own 'where' and 'capping'"),
        ({"categories": {"snacks": 0.5, "crisps": 0.2}}, "shares must sum to 1"),
        ({"categories": {"snacks": 0.5, "other": 0.5}}, "unknown category 'crisps'"),
    ],
)
def test_window_and_decomposition_mistakes_are_spec_errors(change, message):
    raw = _axes_spec()
    if "post_days" in change:
        raw["post_days"] = change["post_days"]
    if "timestamp" in change:
        raw["data"]["timestamp"] = None
        raw.pop("simulation")
    if "window" in change:
        raw["metrics"][0]["window"] = change["window"]
    if "capping" in change:
        raw["metrics"][4]["capping"] = change["capping"]
    if "categories" in change:
        raw["simulation"]["categories"] = change["categories"]
    with pytest.raises(SpecError) as error:
        spec_from_dict(raw)
    assert message in str(error.value)


# ---------------------------------------------------------------------- curve, report, review


def test_the_daily_lift_curve_runs_through_the_post_window_and_ends_at_the_total_result():
    spec = spec_from_dict(_axes_spec(EFFECTS, primary="revenue"))
    frames = _frames(spec, 3000, 8)
    analysis = analyze_spec(spec, frames=frames, cuped=False, daily=True)
    curve = analysis.daily
    assert curve["days"][0] == "2026-05-04"
    assert curve["days"][-1] == "2026-06-14"
    assert curve["end"] == "2026-05-31"
    total = next(r for r in analysis.results if r.metric == "revenue@total")
    lift = curve["lift"]["promo"]
    assert lift["abs_diff"][-1] == pytest.approx(total.abs_diff, rel=1e-9)
    assert (lift["abs_lower"][-1], lift["abs_upper"][-1]) == pytest.approx(total.abs_ci, rel=1e-9)
    assert (lift["rel_lower"][-1], lift["rel_upper"][-1]) == pytest.approx(total.rel_ci, rel=1e-9)
    during = next(r for r in analysis.results if r.metric == "revenue")
    last_day = curve["days"].index("2026-05-31")
    assert lift["abs_diff"][last_day] == pytest.approx(during.abs_diff, rel=1e-9)


def test_the_report_shows_where_the_lift_came_from_and_the_review_counts_net(tmp_path):
    from promolab.report import build_report, build_review, write_report

    spec = spec_from_dict(_axes_spec(EFFECTS, primary="revenue"))
    analysis = analyze_spec(spec, frames=_frames(spec, 3000, 9))
    report = build_report(spec, analysis)
    sources = report["lift_sources"][0]
    assert [r["part"] for r in sources["rows"]] == ["promoted", "cannibalised", "halo", "pull_forward", "net"]
    parts = sum(r["value"] for r in sources["rows"][:-1])
    assert parts == pytest.approx(sources["rows"][-1]["value"], rel=1e-9)
    written = write_report(spec, analysis, tmp_path)
    html = written.paths["html"].read_text()
    assert "Where the lift came from" in html
    assert 'data-field="margin_net"' in html
    assert "Where the lift came from" in written.paths["md"].read_text()
    review = build_review([report], "2026Q2", spec.analysis.bayes)
    row = review["portfolio"][0]
    assert row["lift_metric"] == "revenue@total"
    net = next(r for r in report["results"] if r["metric"] == "revenue@total")
    assert row["lift"] == net["rel_lift"]
    assert row["net_profit"] == report["economics"]["arms"][0]["net_profit"]["value"]
    assert any("net of the dip" in note for note in review["notes"])


def test_the_example_runs_through_the_command_line_with_saved_results(tmp_path):
    """simulate -> analyze --json -> report --results on the example with windows and a product split:
    the saved results (with their windows) are read back and reported."""
    from typer.testing import CliRunner

    from promolab.cli import app

    from .conftest import EXAMPLES

    spec = str(EXAMPLES / "snack-promo.yaml")
    runner = CliRunner()
    steps = [
        ["simulate", spec, "--units", "3000", "--seed", "2", "--out", str(tmp_path)],
        ["analyze", spec, "--data-dir", str(tmp_path), "--daily", "--json", str(tmp_path / "a.json")],
        ["report", spec, "--results", str(tmp_path / "a.json"), "-o", str(tmp_path / "reports")],
    ]
    for step in steps:
        result = runner.invoke(app, step)
        assert result.exit_code == 0, (step[0], result.output)
    report = (tmp_path / "reports" / "snack-promo-2026" / "snack-promo-2026.md").read_text()
    assert "revenue (post)" in report
    assert "post window (pull-forward, carry-over)" in report


def test_a_promoted_column_missing_from_the_orders_names_the_spec_field():
    raw = _axes_spec(EFFECTS)
    spec = spec_from_dict(raw)
    frames = _frames(spec, 500, 1)
    raw["economics"]["promoted"]["column"] = "aisle"
    raw["simulation"].pop("categories")
    with pytest.raises(DataError, match=r"missing column 'aisle' \(economics\.promoted\.column\)"):
        analyze_spec(spec_from_dict(raw), frames=frames)


def test_ordinal_scores_are_not_split_into_windows(spring_spec):
    """A score is not a sum over days, so it has no post or total rows, even when its survey table is
    dated (as the simulator dates it): its answers are counted once, from start to the end of the post
    window."""
    spec = spring_spec.model_copy(update={"post_days": 14})
    data = simulate(spec, 3000, 1)
    assert "ts" in data.frame("survey").columns
    frames = {k: data.frame(k) for k in data.tables}
    rows = {r.metric: r for r in analyze_spec(spec, frames=frames, method="frequentist").results}
    assert "satisfaction" in rows
    assert rows["satisfaction"].window is None
    assert not [name for name in rows if name.startswith("satisfaction@")]
    assert rows["revenue@post"].window == "post"
    raw = _axes_spec()
    raw["metrics"].append(
        {"id": "score", "kind": "ordinal", "source": "orders", "column": "quantity", "levels": [1, 2, 3],
         "window": "post"}
    )  # fmt: skip
    with pytest.raises(SpecError, match="ordinal scores are not measured in windows"):
        spec_from_dict(raw)


def test_a_promoted_value_that_no_order_has_is_an_error_not_a_halo():
    raw = _axes_spec(EFFECTS)
    spec = spec_from_dict(raw)
    frames = _frames(spec, 500, 1)
    raw["economics"]["promoted"]["in"] = ["Snacks"]  # the data says 'snacks'
    raw["simulation"].pop("categories")
    with pytest.raises(DataError, match=r"no row with 'Snacks' \(economics.promoted\); its most frequent"):
        analyze_spec(spec_from_dict(raw), frames=frames)


# ---------------------------------------------------------------------- review findings, pinned


def test_bayesian_money_uses_the_draws_of_the_window_it_counts():
    """With a post window the money is over 'total': its Bayesian draws must be revenue@total's, not
    the promotion's (which would drop the dip: a promotion that only pulled sales forward would earn)."""
    spec = spec_from_dict(_axes_spec({"conversion": 0.3, "pull_forward": 1.0}, primary="revenue"))
    analysis = analyze_spec(spec, frames=_frames(spec, 6000, 4), method="both")
    draws = analysis.bayes.draws
    money = evaluate(spec, analysis)
    assert money.method == "bayesian"
    point = evaluate(spec, analysis, draws={"revenue": draws["revenue"]})  # no total draws: frequentist
    assert point.method == "frequentist"
    bayes_total = money.arms[0].quantities["incremental_revenue"].value
    n = analysis.arms["promo"].n
    expected = n * (np.mean(draws["revenue@total"]["promo"]) - np.mean(draws["revenue@total"]["control"]))
    assert bayes_total == pytest.approx(expected, rel=1e-9)


def test_a_capped_revenue_gets_no_window_split_and_says_why():
    raw = _axes_spec(EFFECTS)
    raw["economics"].pop("promoted")
    raw["metrics"][4]["capping"] = {"percentile": 0.99}
    spec = spec_from_dict(raw)
    money = evaluate(spec, analyze_spec(spec, frames=_frames(spec, 2000, 1)))
    assert money.arms[0].decomposition == {}
    assert any("No split of the margin by window: revenue is capped" in note for note in money.notes)


def test_other_windows_of_secondary_metrics_join_the_false_discovery_family():
    from promolab.stats.multiplicity import benjamini_hochberg, holm

    spec = spec_from_dict(_axes_spec(EFFECTS, primary="revenue"))
    results = analyze_spec(spec, frames=_frames(spec, 3000, 2)).results
    secondary = [
        r for r in results if r.role == "secondary" or (r.role == "window" and "revenue" not in r.metric)
    ]
    assert len(secondary) == 5 * 3  # five secondary metrics, each in three windows
    adjusted = benjamini_hochberg([r.p_value for r in secondary])
    assert [r.p_value_adjusted for r in secondary] == pytest.approx(adjusted, rel=1e-12)
    total = next(r for r in results if r.metric == "revenue@total")  # the primary's: its own family
    assert total.p_value_adjusted == pytest.approx(holm([total.p_value])[0], rel=1e-12)


def test_pre_days_without_a_timestamp_is_a_spec_error():
    raw = _axes_spec()
    raw["data"]["timestamp"] = None
    raw["post_days"] = 0
    raw.pop("simulation")
    raw["economics"].pop("promoted")
    with pytest.raises(SpecError, match=r"pre_days: needs data\.timestamp"):
        spec_from_dict(raw)


def test_power_sums_without_a_covariate_equal_those_computed_without_it():
    from promolab.stats.moments import PowerSums, power_exponents

    rng = np.random.default_rng(1)
    values = {"y": rng.normal(size=200), "a": rng.normal(size=200), "b": rng.normal(size=200)}

    def sums(names: tuple[str, ...]) -> PowerSums:
        columns = [values[n] for n in names]
        monomials = [
            np.prod([c**e for c, e in zip(columns, exps, strict=True)], axis=0)
            for exps in power_exponents(len(names) - 1)
        ]
        return PowerSums(names, np.array([m.sum() for m in monomials]))

    assert sums(("y", "a", "b")).without("b").sums == pytest.approx(sums(("y", "a")).sums, rel=1e-12)
    assert sums(("y", "a", "b")).without("a").sums == pytest.approx(sums(("y", "b")).sums, rel=1e-12)


def test_a_constant_pre_period_takes_no_second_pass(monkeypatch):
    """The pre-period value dropped for a launch-time product is taken out of the power sums already
    computed, not recomputed by a pass over the units."""
    from promolab.aggregate import duck

    def refuse(*args, **kwargs):
        raise AssertionError("a residual pass over the units ran")

    monkeypatch.setattr(duck.DuckAggregation, "residual_moments", refuse)
    raw = _axes_spec(EFFECTS, analysis={"covariates": ["pre_revenue"]})
    raw["data"]["units"] = "u.parquet"
    rows = _with_a_launch(raw, 1500)
    assert rows["launch"].method == "cuped-ols-hc1"
    assert rows["launch"].adjusted_for == ("pre_revenue",)
    assert rows["launch@post"].adjusted_for == ("pre_revenue",)
    assert rows["others"].adjusted_for == ("pre_revenue", "others@pre")
