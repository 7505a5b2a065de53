"""Estimators for promotions that were not randomised (issue 17, first slice): difference-in-differences
(two-way fixed effects, clustered and wild-bootstrap inference) and synthetic control (convex weights,
placebo permutation). References: statsmodels, closed forms, Mastering 'Metrics' (Angrist and Pischke,
ch. 5) on the 1930 Mississippi banks, simulated panels with known effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from promolab.stats.did import FEW_CLUSTERS, did_2x2, twfe
from promolab.stats.synthetic import placebo_p_value, synthetic_control, weights

from .conftest import shared_file


def _panel(
    seed: int, units: int, treated: int, effect: float, periods: int = 20, start: int = 14
) -> pd.DataFrame:
    """Stores x days: store and day effects, a common trend, AR-free noise; ``treated`` stores get
    ``effect`` from day ``start`` on."""
    rng = np.random.default_rng(seed)
    store = rng.normal(0, 2, units)
    day = rng.normal(0, 1, periods) + 0.05 * np.arange(periods)
    shock = rng.normal(0, 0.4, units)  # store-level shock common to its post days (why clustering matters)
    rows = []
    for i in range(units):
        for t in range(periods):
            d = int(i < treated and t >= start)
            post = shock[i] if t >= start else 0.0
            rows.append((f"s{i:02d}", t, d, store[i] + day[t] + effect * d + post + rng.normal()))
    return pd.DataFrame(rows, columns=["store", "day", "promoted", "sales"])


def _coverage_range(runs: int, level: float) -> tuple[float, float]:
    low, high = stats.binom.ppf([0.001, 0.999], runs, level)
    return low / runs, high / runs


# ---------------------------------------------------------------------- difference-in-differences


def test_twfe_equals_statsmodels_with_errors_clustered_by_unit():
    panel = _panel(1, units=50, treated=20, effect=1.5)
    result = twfe(panel, "sales", "store", "day", "promoted")
    fit = smf.ols("sales ~ promoted + C(store) + C(day)", panel).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(panel["store"])[0]}, use_t=True
    )
    assert result.method == "twfe-cluster"
    assert result.att == pytest.approx(fit.params["promoted"], rel=1e-9)
    assert result.se == pytest.approx(fit.bse["promoted"], rel=1e-9)
    assert result.ci == pytest.approx(tuple(fit.conf_int().loc["promoted"]), rel=1e-9)
    assert result.p_value == pytest.approx(fit.pvalues["promoted"], rel=1e-6)


def test_two_units_and_two_periods_give_the_classic_difference_of_differences():
    panel = pd.DataFrame(
        {"unit": ["a", "a", "b", "b"], "t": [0, 1, 0, 1], "d": [0, 1, 0, 0], "y": [10.0, 14.0, 7.0, 8.5]}
    )
    result = twfe(panel, "y", "unit", "t", "d")
    assert result.att == pytest.approx(did_2x2(10.0, 14.0, 7.0, 8.5), rel=1e-12)
    assert result.se is None  # one treated and one control unit: no standard error exists
    assert result.flags == (FEW_CLUSTERS,)


def test_the_1930_mississippi_banks_match_mastering_metrics():
    """Banks in business on July 1 (Mastering 'Metrics table 5.1): the Sixth district, whose Fed lent
    freely in the 1930 panic, against the Eighth. 2 x 2 DiD for 1930-31: 19 banks; the regression DiD on
    1929-1934 with year effects: 20.5 (the book's estimate). Two districts: no valid standard error."""
    banks = pd.read_csv(shared_file("banks.csv"))
    july = banks[(banks["month"] == 7) & (banks["day"] == 1)].set_index("year")
    assert (
        did_2x2(
            july.loc[1930, "bib6"], july.loc[1931, "bib6"], july.loc[1930, "bib8"], july.loc[1931, "bib8"]
        )
        == 19
    )
    panel = pd.concat(
        [
            pd.DataFrame({"district": "sixth", "year": july.index, "banks": july["bib6"].to_numpy()}),
            pd.DataFrame({"district": "eighth", "year": july.index, "banks": july["bib8"].to_numpy()}),
        ]
    )
    panel["lending"] = ((panel["district"] == "sixth") & (panel["year"] >= 1931)).astype(int)
    result = twfe(panel, "banks", "district", "year", "lending")
    assert result.att == pytest.approx(20.5, abs=1e-9)
    assert result.flags == (FEW_CLUSTERS,)
    assert result.ci is None


def test_staggered_or_switching_treatment_is_refused():
    panel = _panel(2, units=6, treated=3, effect=1.0)
    staggered = panel.copy()
    staggered.loc[(staggered["store"] == "s00") & (staggered["day"] == 13), "promoted"] = 1
    with pytest.raises(ValueError, match="single start date"):
        twfe(staggered, "sales", "store", "day", "promoted")
    switching = panel.copy()
    switching.loc[(switching["store"] == "s00") & (switching["day"] == 19), "promoted"] = 0
    with pytest.raises(ValueError, match="switches off"):
        twfe(switching, "sales", "store", "day", "promoted")


RUNS = 150


def test_few_clusters_wild_bootstrap_rejects_at_alpha_and_covers():
    """12 stores (4 promoted): the wild cluster bootstrap rejects a null effect at about alpha and its
    interval covers the true effect at about 95% (measured: 0.04 and 0.93 over 150 panels)."""
    rejected = covered = 0
    for seed in range(RUNS):
        null = twfe(_panel(100 + seed, 12, 4, 0.0), "sales", "store", "day", "promoted", draws=999)
        rejected += null.p_value < 0.05
        shifted = twfe(_panel(500 + seed, 12, 4, 1.0), "sales", "store", "day", "promoted", draws=999)
        covered += shifted.ci[0] <= 1.0 <= shifted.ci[1]
    low, high = _coverage_range(RUNS, 0.05)
    assert low <= rejected / RUNS <= high
    low, high = _coverage_range(RUNS, 0.95)
    assert low <= covered / RUNS <= high


# ---------------------------------------------------------------------- synthetic control


def test_a_treated_unit_that_is_a_convex_mix_of_donors_is_recovered_exactly():
    rng = np.random.default_rng(3)
    periods = pd.RangeIndex(30)
    donors = pd.DataFrame(rng.normal(0, 1, (30, 6)).cumsum(axis=0) + 50, index=periods)
    donors.columns = [f"d{j}" for j in range(6)]
    mix = np.array([0.5, 0.3, 0.2, 0, 0, 0])
    series = donors.assign(treated=donors.to_numpy() @ mix + np.where(periods >= 20, 2.0, 0.0))
    result = synthetic_control(series, ["treated"], 20)
    fit = result.fits[0]
    assert fit.weights == pytest.approx({"d0": 0.5, "d1": 0.3, "d2": 0.2}, abs=1e-5)
    assert fit.pre_rmspe < 1e-5
    assert result.att == pytest.approx(2.0, abs=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_weights_are_the_constrained_least_squares_optimum(seed):
    """Against scipy's SLSQP on the constrained problem: convex weights, and an objective no larger."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    donors = rng.normal(0, 1, (30, 12)).cumsum(axis=0) + 100
    treated = donors @ rng.dirichlet(np.ones(12)) * 0.9 + rng.normal(0, 1, 30) + 10
    w = weights(treated, donors)
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    reference = minimize(
        lambda v: np.sum((treated - donors @ v) ** 2),
        np.full(12, 1 / 12),
        method="SLSQP",
        bounds=[(0, 1)] * 12,
        constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}],
        options={"ftol": 1e-14, "maxiter": 2000},
    )
    ours = np.sum((treated - donors @ w) ** 2)
    assert ours <= reference.fun * (1 + 1e-7)
    assert w == pytest.approx(reference.x, abs=1e-4)


def test_placebo_p_value_is_the_rank_among_all_units():
    assert placebo_p_value(3.0, {"a": 1.0, "b": 4.0, "c": 2.0}) == pytest.approx(2 / 4)
    assert placebo_p_value(5.0, {"a": 1.0, "b": 4.0}) == pytest.approx(1 / 3)


def test_placebo_inference_rejects_at_about_alpha_without_an_effect():
    """Factor-model panels (two latent trends, 19 donors), no effect: P(p <= 0.10) about 10%."""
    rejected = 0
    for seed in range(RUNS):
        rng = np.random.default_rng(900 + seed)
        factors = rng.normal(0, 1, (40, 2)).cumsum(axis=0)
        loadings = rng.uniform(0.2, 1.0, (2, 20))
        values = 100 + factors @ loadings + rng.normal(0, 0.5, (40, 20))
        series = pd.DataFrame(values, columns=[f"u{j}" for j in range(20)])
        rejected += synthetic_control(series, ["u0"], 30).p_value <= 0.10
    low, high = _coverage_range(RUNS, 0.10)
    assert low <= rejected / RUNS <= high


def test_the_uk_after_the_2016_referendum():
    """Quarterly real GDP, the UK against 20 countries, the referendum in 2016 Q2 (start 2016 Q3). The
    UK ends up below its synthetic control and has the largest post/pre RMSPE ratio of all 21 units (the
    smallest p-value a placebo test with 20 donors can give). Published analyses (CausalPy's example;
    Born et al. 2019, 'The costs of economic nationalism', 1.7-2.5% of GDP by end-2018) agree on the
    sign; this series runs to 2022, through the pandemic, so its average gap is larger."""
    gdp = pd.read_csv(shared_file("GDP_in_dollars_billions.csv"), parse_dates=["Time"]).set_index("Time")
    start = pd.Timestamp("2016-07-01")
    result = synthetic_control(gdp, ["UK"], start)
    fit = result.fits[0]
    assert sum(fit.weights.values()) == pytest.approx(1.0, abs=1e-9)
    assert fit.pre_rmspe < 0.01 * gdp["UK"].mean()  # a close pre-referendum fit
    assert result.att < 0
    assert result.p_value == pytest.approx(1 / 21)
    end_2018 = gdp.index <= pd.Timestamp("2018-10-01")
    post = (gdp.index >= start) & end_2018
    synthetic = gdp["UK"].to_numpy() - fit.gaps
    shortfall = 1 - gdp["UK"].to_numpy()[post].sum() / synthetic[post].sum()
    assert 0.0 < shortfall < 0.06


# ---------------------------------------------------------------------- interrupted time series


def _series(
    seed: int, periods: int = 120, start: int = 96, effect: float = 0.0, rho: float = 0.0
) -> pd.DataFrame:
    """A weekly-seasonal daily series with a trend; ``effect`` added from ``start`` on; AR(1) noise."""
    rng = np.random.default_rng(seed)
    noise = np.zeros(periods)
    for t in range(periods):
        noise[t] = (rho * noise[t - 1] if t else 0.0) + rng.normal(0, 2)
    t = np.arange(periods)
    dow = t % 7
    sales = 100 + 0.2 * t + np.array([0, 1, 2, 3, 5, 9, 4])[dow] + noise + effect * (t >= start)
    return pd.DataFrame({"day": t, "dow": dow, "sales": sales})


def test_its_pointwise_intervals_equal_statsmodels_prediction_intervals():
    import statsmodels.api as sm

    from promolab.stats.its import interrupted_time_series

    data = _series(1, effect=5.0)
    result = interrupted_time_series(data, "sales", "day", 96, season="dow")
    design = np.column_stack(
        [np.ones(120), np.arange(120.0), pd.get_dummies(data["dow"], dtype=float).to_numpy()[:, 1:]]
    )
    fit = sm.OLS(data["sales"].to_numpy()[:96], design[:96]).fit()
    frame = fit.get_prediction(design[96:]).summary_frame(alpha=0.05)
    actual = data["sales"].to_numpy()[96:]
    assert result.forecast == pytest.approx(frame["mean"].to_numpy(), rel=1e-12)
    assert result.pointwise_ci[:, 0] == pytest.approx(actual - frame["obs_ci_upper"].to_numpy(), rel=1e-9)
    assert result.pointwise_ci[:, 1] == pytest.approx(actual - frame["obs_ci_lower"].to_numpy(), rel=1e-9)


def test_its_cumulative_interval_covers_at_its_level():
    """The cumulative effect's interval carries the forecasts' shared parameter error: it covers the
    true cumulative effect (24 days x 5) at about 95%."""
    from promolab.stats.its import interrupted_time_series

    covered = 0
    for seed in range(RUNS):
        result = interrupted_time_series(_series(2000 + seed, effect=5.0), "sales", "day", 96, season="dow")
        low, high = result.windows["total"][1].ci
        covered += low <= 24 * 5.0 <= high
    low, high = _coverage_range(RUNS, 0.95)
    assert low <= covered / RUNS <= high


def test_its_flags_autocorrelated_residuals():
    from promolab.stats.its import AUTOCORRELATED, interrupted_time_series

    assert interrupted_time_series(_series(3, rho=0.8), "sales", "day", 96, season="dow").flags == (
        AUTOCORRELATED,
    )
    assert interrupted_time_series(_series(3), "sales", "day", 96, season="dow").flags == ()


def test_excess_deaths_in_england_and_wales_in_2020():
    """Monthly deaths 2006-2019 (trend, month, temperature) forecast 2020: the ONS counted about 75,000
    deaths above the five-year average in 2020; the forecast's cumulative excess is of that size and its
    interval excludes zero."""
    from promolab.stats.its import interrupted_time_series

    deaths = pd.read_csv(shared_file("deaths_and_temps_england_wales.csv"), parse_dates=["date"])
    year = (pd.Timestamp("2020-01-01"), pd.Timestamp("2020-12-01"))
    result = interrupted_time_series(
        deaths, "deaths", "date", year[0], season="month", regressors=["temp"], windows={"2020": year}
    )
    cumulative = result.windows["2020"][1]
    assert cumulative.ci[0] > 0
    assert cumulative.ci[0] <= 75_000 <= cumulative.ci[1]
    assert cumulative.value == pytest.approx(75_000, rel=0.15)
    assert result.flags == ()


def test_event_study_equals_a_statsmodels_formula_fit():
    from promolab.stats.did import event_study

    panel = _panel(5, units=50, treated=20, effect=1.5)
    study = event_study(panel, "sales", "store", "day", "promoted", leads=3, lags=4)
    treated = panel["store"].isin([f"s{i:02d}" for i in range(20)])
    relative = (panel["day"] - 14).clip(-3, 4)
    for k in (-3, -2, 0, 1, 2, 3, 4):
        panel[f"k{k + 3}"] = (treated & (relative == k)).astype(float)
    formula = "sales ~ " + " + ".join(f"k{k + 3}" for k in (-3, -2, 0, 1, 2, 3, 4)) + " + C(store) + C(day)"
    fit = smf.ols(formula, panel).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(panel["store"])[0]}, use_t=True
    )
    for k in (-3, -2, 0, 4):
        estimate, se, _ = study.estimates[k]
        assert estimate == pytest.approx(fit.params[f"k{k + 3}"], rel=1e-8, abs=1e-10)
        assert se == pytest.approx(fit.bse[f"k{k + 3}"], rel=1e-8)
    wald = fit.f_test("k0 = 0, k1 = 0")
    assert study.pretrend_p_value == pytest.approx(float(wald.pvalue), rel=1e-8)


def test_the_pretrend_test_is_calibrated_and_sees_a_diverging_trend():
    from promolab.stats.did import event_study

    rejected = 0
    for seed in range(RUNS):
        panel = _panel(3000 + seed, units=50, treated=20, effect=1.0)
        rejected += event_study(panel, "sales", "store", "day", "promoted", 4, 3).pretrend_p_value < 0.05
    low, high = _coverage_range(RUNS, 0.05)
    assert low <= rejected / RUNS <= high
    diverging = _panel(7, units=50, treated=20, effect=1.0)
    early = diverging["store"].isin([f"s{i:02d}" for i in range(20)]) & (diverging["day"] < 14)
    diverging.loc[early, "sales"] += 0.25 * (diverging.loc[early, "day"] - 14)  # catching up before
    assert event_study(diverging, "sales", "store", "day", "promoted", 4, 3).pretrend_p_value < 0.001


def _staggered(seed: int, per_cohort: int = 20) -> tuple[pd.DataFrame, float]:
    """Stores starting the promotion on day 6, on day 10, or never (12 days); the effect grows by 0.5
    a day since the start. Returns the panel and the true size-weighted ATT over the cells t >= g."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for cohort in (6, 10, None):
        for i in range(per_cohort):
            store = rng.normal(0, 2)
            for t in range(12):
                effect = 0.5 * (t - cohort + 1) if cohort is not None and t >= cohort else 0.0
                rows.append((f"{cohort}-{i}", t, cohort, store + 0.3 * t + effect + rng.normal()))
    for cohort in (6, 10):
        truth += [0.5 * (t - cohort + 1) for t in range(cohort, 12)]
    frame = pd.DataFrame(rows, columns=["store", "day", "start", "sales"])
    return frame, float(np.mean(truth))  # equal cohort sizes: every cell weighs the same


def test_group_time_effects_equal_the_cohort_differences_and_cover_the_truth():
    from promolab.stats.did import group_time

    panel, truth = _staggered(1)
    result = group_time(panel, "sales", "store", "day", "start")
    wide = panel.pivot(index="store", columns="day", values="sales")
    starts = panel.groupby("store")["start"].first()
    cohort, never = starts == 6, starts.isna()
    change = wide[9] - wide[5]
    assert result.cells[(6, 9)] == pytest.approx(change[cohort].mean() - change[never].mean(), rel=1e-12)
    assert result.cohorts == {6: 20, 10: 20}
    covered = 0
    for seed in range(RUNS):
        panel, truth = _staggered(4000 + seed)
        low, high = group_time(panel, "sales", "store", "day", "start").ci
        covered += low <= truth <= high
    low, high = _coverage_range(RUNS, 0.95)
    assert low <= covered / RUNS <= high


# ---------------------------------------------------------------------- a simulated rollout, three ways


def test_a_simulated_rollout_is_recovered_by_each_method():
    """Six of 30 stores run +10% for four weeks, then -4% for two: on log sales, DiD against the other
    stores, a synthetic control per promoted store and an ITS of one promoted store all recover
    log(1.1) during the promotion, and the ITS sees the dip after it."""
    from promolab.simulate.rollout import rollout_panel, true_effects
    from promolab.stats.its import interrupted_time_series

    panel = rollout_panel(1)
    frame = panel.frame.assign(log_sales=np.log(panel.frame["sales"]))
    lift, dip = np.log(1.1), np.log(0.96)
    until_end = frame[frame["day"] <= panel.end]
    did = twfe(until_end, "log_sales", "store", "day", "promoted", draws=1999)
    assert did.ci[0] <= lift <= did.ci[1]
    assert did.att == pytest.approx(lift, abs=0.01)
    wide = until_end.pivot(index="day", columns="store", values="log_sales")
    assert synthetic_control(wide, panel.treated, panel.start).att == pytest.approx(lift, abs=0.015)
    store = frame[frame["store"] == panel.treated[0]]
    windows = {"during": (panel.start, panel.end), "post": (panel.end + 1, panel.stop)}
    its = interrupted_time_series(store, "log_sales", "day", panel.start, season="weekday", windows=windows)
    during, post = its.windows["during"][0], its.windows["post"][0]
    assert during.ci[0] <= lift <= during.ci[1]
    assert post.ci[0] <= dip <= post.ci[1]
    truth = true_effects(panel)
    assert truth["during"] > 0 > truth["post"]
    assert truth["total"] == pytest.approx((28 * truth["during"] + 14 * truth["post"]) / 42, rel=1e-9)
