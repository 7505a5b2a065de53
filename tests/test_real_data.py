"""Real experiments: promolab's analysis against references computed here with pandas, scipy, statsmodels.

Two public randomised tests, read from ../shared/data (never copied into the repository):

- Hillstrom's MineThatData e-mail test: 64,000 customers, one row each, arms in ``segment``.
- The fast-food promotions test: 137 stores randomised to three promotions, one row per store and
  week. The store is the randomised unit, so every standard error must count stores (43 / 47 / 47),
  not the 548 weekly rows.

Every reference is computed inline from the CSV (no hard-coded results except the published arm
sizes); where promolab runs the same method the numbers must agree to 1e-8 relative.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats import proportion  # not its test_* function: pytest would collect it
from typer.testing import CliRunner

import promolab
from promolab.cli import app

from .conftest import EXAMPLES, shared_file

runner = CliRunner()
HILLSTROM = EXAMPLES / "hillstrom.yaml"
FAST_FOOD = EXAMPLES / "fast-food.yaml"
COOKIE_CATS = EXAMPLES / "cookie-cats.yaml"
REL = 1e-8
Z95 = stats.norm.ppf(0.975)

HILLSTROM_ARMS = {"No E-Mail": "no_email", "Mens E-Mail": "mens_email", "Womens E-Mail": "womens_email"}
HILLSTROM_METRICS = {"visit": "binary", "conversion": "binary", "spend": "continuous"}
EMAILS = ("mens_email", "womens_email")
PROMOS = {1: "promo1", 2: "promo2", 3: "promo3"}
WEEKS = 4  # weekly rows per store in the fast-food data
RESULT_FIELDS = {
    "metric",
    "variant",
    "n_control",
    "n_variant",
    "control_mean",
    "variant_mean",
    "abs_diff",
    "abs_ci",
    "se",
    "rel_lift",
    "rel_ci",
    "p_value",
    "p_value_adjusted",
    "method",
}


# --------------------------------------------------------------------------- helpers


def _analyze(spec_path: Path, *, cuped: bool, **overrides: Path) -> Any:
    """promolab's Python analysis of ``spec_path`` with data files overridden by name."""
    from promolab.analyze import analyze_spec  # imported here so the spec tests run on their own

    return analyze_spec(promolab.load_spec(spec_path), data_dir=None, overrides=overrides, cuped=cuped)


def _by_key(analysis: Any) -> dict[tuple[str, str], Any]:
    """Results keyed by (metric, variant); each pair must appear exactly once."""
    keyed = {(r.metric, r.variant): r for r in analysis.results}
    assert len(keyed) == len(analysis.results), "a (metric, variant) pair is reported twice"
    return keyed


def _close(got: float, expected: float) -> None:
    assert got == pytest.approx(expected, rel=REL, abs=0), (got, expected)


def _cli_json(out: Path, spec_path: Path, *extra: str) -> dict[str, Any]:
    """``promolab analyze SPEC ... --json OUT`` through the CLI; the JSON payload it wrote."""
    result = runner.invoke(app, ["analyze", str(spec_path), *extra, "--json", str(out)])
    assert result.exit_code in (0, 1), result.output  # 1: ran, but the verdict failed
    assert "Traceback" not in result.output
    return json.loads(out.read_text())


def _hillstrom_cuped_spec(folder: Path) -> Path:
    """A copy of the Hillstrom spec adjusting for history and recency only."""
    text = HILLSTROM.read_text()
    line = "analysis: {covariates: [recency, history, mens, womens, newbie]}"
    assert line in text, "the Hillstrom example's covariates line changed; update this test"
    path = folder / "hillstrom-cuped.yaml"
    path.write_text(text.replace(line, "analysis: {covariates: [history, recency]}"))
    return path


# --------------------------------------------------------------------------- data and fixtures


@pytest.fixture(scope="module")
def hillstrom_csv() -> Path:
    return shared_file("hillstrom.csv")


@pytest.fixture(scope="module")
def hillstrom(hillstrom_csv) -> pd.DataFrame:
    frame = pd.read_csv(hillstrom_csv)
    frame["arm"] = frame["segment"].map(HILLSTROM_ARMS)
    assert frame["arm"].notna().all()
    return frame


@pytest.fixture(scope="module")
def fast_food_csv() -> Path:
    return shared_file("WA_Marketing-Campaign.csv")


@pytest.fixture(scope="module")
def weekly(fast_food_csv) -> pd.DataFrame:
    return pd.read_csv(fast_food_csv)


@pytest.fixture(scope="module")
def store_totals(weekly) -> pd.DataFrame:
    """One row per store: its arm and its sales over the four weeks (thousands)."""
    return weekly.groupby(["LocationID", "Promotion"], as_index=False)["SalesInThousands"].sum()


@pytest.fixture(scope="module")
def hillstrom_plain(hillstrom_csv):
    return _by_key(_analyze(HILLSTROM, cuped=False, units=hillstrom_csv))


@pytest.fixture(scope="module")
def fast_food(fast_food_csv):
    return _analyze(FAST_FOOD, cuped=True, assignments=fast_food_csv, sales=fast_food_csv)


# --------------------------------------------------------------------------- specs


def test_real_data_specs_validate():
    result = runner.invoke(app, ["validate", str(HILLSTROM), str(FAST_FOOD), str(COOKIE_CATS)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok ") == 3
    spec = promolab.load_spec(FAST_FOOD)
    assert spec.unit == "store"
    assert spec.reference.id == "promo1"
    assert [v.id for v in spec.treatments] == ["promo2", "promo3"]
    assert sum(v.weight for v in spec.variants) == pytest.approx(1, abs=1e-6)
    assert spec.data.unit_id == "LocationID"
    assert spec.data.assignments != spec.data.tables["sales"]  # two names, so simulated data can fill both


# --------------------------------------------------------------------------- Hillstrom


def test_hillstrom_arm_sizes_are_the_published_ones(hillstrom):
    assert len(hillstrom) == 64_000
    assert hillstrom["arm"].value_counts().to_dict() == {
        "womens_email": 21_387,
        "mens_email": 21_307,
        "no_email": 21_306,
    }


def test_hillstrom_per_arm_n_and_means(hillstrom, hillstrom_plain):
    assert set(hillstrom_plain) == {(m, t) for m in HILLSTROM_METRICS for t in EMAILS}
    counts = hillstrom["arm"].value_counts()
    means = hillstrom.groupby("arm")[list(HILLSTROM_METRICS)].mean()
    for (metric, variant), row in hillstrom_plain.items():
        assert (row.n_control, row.n_variant) == (counts["no_email"], counts[variant])
        _close(row.control_mean, means.loc["no_email", metric])
        _close(row.variant_mean, means.loc[variant, metric])


def test_hillstrom_unadjusted_lifts_match_scipy_and_statsmodels(hillstrom, hillstrom_plain):
    control = hillstrom[hillstrom["arm"] == "no_email"]
    for (metric, variant), row in hillstrom_plain.items():
        y0, y1 = control[metric], hillstrom.loc[hillstrom["arm"] == variant, metric]
        if HILLSTROM_METRICS[metric] == "binary":
            ref = proportion.test_proportions_2indep(
                y1.sum(), len(y1), y0.sum(), len(y0), method="wald", compare="diff", correction=False
            )
            diff, se, p = ref.diff, float(np.sqrt(ref.variance)), ref.pvalue
            lo, hi = diff - Z95 * se, diff + Z95 * se
            assert row.method == "z-unpooled"
        else:
            ref = stats.ttest_ind(y1, y0, equal_var=False)
            diff = y1.mean() - y0.mean()
            se, p = diff / ref.statistic, ref.pvalue
            lo, hi = ref.confidence_interval(0.95)
            assert row.method == "welch-t"
        _close(row.abs_diff, diff)
        _close(row.se, se)
        _close(row.p_value, p)
        _close(row.abs_ci[0], lo)
        _close(row.abs_ci[1], hi)
        _close(row.rel_lift, diff / y0.mean())
        assert row.p_value <= row.p_value_adjusted <= 1


@pytest.mark.parametrize(
    "covariates",
    [("history", "recency"), ("recency", "history", "mens", "womens", "newbie")],
    ids=["history-recency", "spec-covariates"],
)
def test_hillstrom_cuped_matches_ols_with_hc1(hillstrom, hillstrom_csv, tmp_path, covariates):
    spec = _hillstrom_cuped_spec(tmp_path) if len(covariates) == 2 else HILLSTROM
    assert tuple(promolab.load_spec(spec).analysis.covariates) == covariates
    results = _by_key(_analyze(spec, cuped=True, units=hillstrom_csv))
    design = pd.DataFrame({t: (hillstrom["arm"] == t).astype(float) for t in EMAILS})
    for name in covariates:
        design[name] = hillstrom[name] - hillstrom[name].mean()  # centred at the overall mean
    design = sm.add_constant(design)
    for metric in HILLSTROM_METRICS:
        fit = sm.OLS(hillstrom[metric].astype(float), design).fit(cov_type="HC1")
        ci = fit.conf_int(alpha=0.05)
        for variant in EMAILS:
            row = results[(metric, variant)]
            assert row.method == "cuped-ols-hc1"
            _close(row.abs_diff, fit.params[variant])
            _close(row.se, fit.bse[variant])
            _close(row.p_value, fit.pvalues[variant])  # normal reference (statsmodels' robust default)
            _close(row.abs_ci[0], ci.loc[variant, 0])
            _close(row.abs_ci[1], ci.loc[variant, 1])
            _close(row.control_mean, fit.params["const"])
            _close(row.variant_mean, fit.params["const"] + fit.params[variant])


def test_hillstrom_cli_json_adjusts_by_default_and_not_with_no_cuped(hillstrom, hillstrom_csv, tmp_path):
    data = ["--data", f"units={hillstrom_csv}"]
    adjusted = _cli_json(tmp_path / "adjusted.json", HILLSTROM, *data)
    plain = _cli_json(tmp_path / "plain.json", HILLSTROM, *data, "--no-cuped")
    for payload in (adjusted, plain):
        assert payload["experiment"] == "hillstrom-email-2008"
        assert not payload["srm"]["flag"]
        assert payload["srm"]["p_value"] > 0.5  # 21,306 / 21,307 / 21,387 against equal thirds
        assert len(payload["results"]) == len(HILLSTROM_METRICS) * len(EMAILS)
        assert all(set(row) >= RESULT_FIELDS for row in payload["results"])
    assert {row["method"] for row in adjusted["results"]} == {"cuped-ols-hc1"}
    assert {row["method"] for row in plain["results"]} == {"z-unpooled", "welch-t"}
    spend = next(r for r in plain["results"] if (r["metric"], r["variant"]) == ("spend", "mens_email"))
    means = hillstrom.groupby("arm")["spend"].mean()
    _close(spend["abs_diff"], means["mens_email"] - means["no_email"])


# --------------------------------------------------------------------------- fast food


def test_fast_food_data_is_randomised_by_store(weekly, store_totals):
    assert len(weekly) == 548
    assert (weekly.groupby("LocationID")["Promotion"].nunique() == 1).all()
    assert (weekly.groupby("LocationID").size() == WEEKS).all()
    assert store_totals["Promotion"].value_counts().sort_index().tolist() == [43, 47, 47]


def test_fast_food_results_are_welch_tests_on_store_totals(store_totals, fast_food_csv, tmp_path):
    data = ["--data", f"assignments={fast_food_csv}", "--data", f"sales={fast_food_csv}"]
    payload = _cli_json(tmp_path / "fast-food.json", FAST_FOOD, *data)
    assert payload["experiment"] == "fast-food-promotions"
    assert not payload["srm"]["flag"]  # stores, 43 / 47 / 47, against equal thirds
    rows = {(r["metric"], r["variant"]): r for r in payload["results"]}
    assert set(rows) == {("sales", "promo2"), ("sales", "promo3")}
    control = store_totals.loc[store_totals["Promotion"] == 1, "SalesInThousands"]
    for promotion in (2, 3):
        treated = store_totals.loc[store_totals["Promotion"] == promotion, "SalesInThousands"]
        row = rows[("sales", PROMOS[promotion])]
        ref = stats.ttest_ind(treated, control, equal_var=False)
        diff = treated.mean() - control.mean()
        assert row["method"] == "welch-t"
        assert (row["n_control"], row["n_variant"]) == (43, 47)  # stores, not weekly rows
        _close(row["control_mean"], control.mean())
        _close(row["variant_mean"], treated.mean())
        _close(row["abs_diff"], diff)
        _close(row["se"], diff / ref.statistic)
        _close(row["p_value"], ref.pvalue)
        lo, hi = ref.confidence_interval(0.95)
        _close(row["abs_ci"][0], lo)
        _close(row["abs_ci"][1], hi)


def test_fast_food_store_level_interval_is_wider_than_naive_weekly_rows(weekly, fast_food):
    """Treating the 548 weekly rows as independent units understates the uncertainty about twofold.

    Every store has four weeks, so the naive analysis of weekly means estimates the same relative
    lift; scaled to four-week totals its standard error is about half the store-level one, because
    a store's weeks are strongly correlated. promolab must report the store-level interval.
    """
    results = _by_key(fast_food)
    control = weekly.loc[weekly["Promotion"] == 1, "SalesInThousands"]
    for promotion in (2, 3):
        treated = weekly.loc[weekly["Promotion"] == promotion, "SalesInThousands"]
        naive = stats.ttest_ind(treated, control, equal_var=False)
        naive_diff = treated.mean() - control.mean()
        naive_se_per_store = WEEKS * naive_diff / naive.statistic
        row = results[("sales", PROMOS[promotion])]
        _close(row.abs_diff, WEEKS * naive_diff)  # same estimate ...
        _close(row.rel_lift, treated.mean() / control.mean() - 1)
        assert row.se > 1.5 * naive_se_per_store  # ... but the honest, wider interval
        assert row.abs_ci[1] - row.abs_ci[0] > 1.5 * WEEKS * np.diff(naive.confidence_interval(0.95))[0]
        assert row.p_value > naive.pvalue
    assert results[("sales", "promo2")].p_value > 1e-3  # the naive rows claim p < 1e-9


def test_fast_food_frame_has_one_row_per_result(fast_food):
    frame = fast_food.to_frame()
    assert len(frame) == len(fast_food.results) == 2
    flat = RESULT_FIELDS - {"abs_ci", "rel_ci"}
    assert set(frame.columns) >= flat | {"abs_ci_lower", "abs_ci_upper", "rel_ci_lower", "rel_ci_upper"}
    assert frame.set_index("variant")["n_variant"].to_dict() == {"promo2": 47, "promo3": 47}
    payload = fast_food.to_dict()
    assert payload["experiment"] == "fast-food-promotions"
    assert [r["variant"] for r in payload["results"]] == frame["variant"].tolist()
    for row, saved in zip(fast_food.to_dicts(), payload["results"], strict=True):
        assert (row["rel_ci_lower"], row["rel_ci_upper"]) == tuple(saved["rel_ci"])
    markdown = fast_food.to_markdown()
    assert markdown.splitlines()[0].startswith("| metric | arm | reference mean |")
    assert fast_food._repr_html_() == fast_food.to_html()
    assert "<td>promo2</td>" in fast_food.to_html()


# --------------------------------------------------------------------------- Cookie Cats


@pytest.fixture(scope="module")
def cookie_cats_csv() -> Path:
    return shared_file("cookie_cats.csv")


def test_cookie_cats_retention_is_an_unpooled_z_test_and_the_reference_wins(cookie_cats_csv, tmp_path):
    """gate_40 loses 7-day retention (p = 0.0016 in the published analyses): the verdict must say that
    the reference arm wins and name gate_40 as significantly worse, not just "not better"."""
    players = pd.read_csv(cookie_cats_csv)
    payload = _cli_json(tmp_path / "cookie.json", COOKIE_CATS, "--data", f"units={cookie_cats_csv}")
    rows = {(r["metric"], r["variant"]): r for r in payload["results"]}
    for metric in ("retention_7", "retention_1"):
        by_arm = players.groupby("version")[metric].agg(["mean", "count"])
        p0, n0 = by_arm.loc["gate_30"]
        p1, n1 = by_arm.loc["gate_40"]
        se = np.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
        row = rows[(metric, "gate_40")]
        _close(row["abs_diff"], p1 - p0)
        _close(row["se"], se)
        _close(row["p_value"], 2 * stats.norm.sf(abs(p1 - p0) / se))
    assert rows[("retention_7", "gate_40")]["p_value"] == pytest.approx(0.0016, abs=5e-5)
    decision = payload["decision"]
    assert decision["action"] == "stop"
    assert "reference arm gate_30 wins: gate_40 significantly worse on retention_7" in decision["reason"]
    (arm,) = decision["arms"]
    assert arm["finding"] == "worse"
    assert arm["line"].startswith("gate_40: stop, significantly WORSE than the reference")


def test_cookie_cats_extreme_player_is_warned_about(cookie_cats_csv):
    """One player has 49,854 rounds, the next 2,961: the analysis says so (and still analyses)."""
    players = pd.read_csv(cookie_cats_csv)
    top, runner_up = players["sum_gamerounds"].nlargest(2)
    analysis = _analyze(COOKIE_CATS, cuped=False, units=cookie_cats_csv)
    assert analysis.data_quality.largest["rounds"] == (top, runner_up)
    (warning,) = [w for w in analysis.data_quality.warnings() if "'rounds'" in w]
    assert f"one unit has {top:,}, {top / runner_up:.1f} times the next largest ({runner_up:,})" in warning


def test_cookie_cats_arms_are_generic_treatments():
    spec = promolab.load_spec(COOKIE_CATS)
    assert {v.kind for v in spec.variants} == {"treatment"}
    assert all(v.cost_per_randomised_unit() == 0 for v in spec.variants)
