"""The Bayesian engine end to end: agreement with the frequentist engine under flat priors and large
samples, exact P(beat) wired to the right counts, lift priors, ROPE decisions, segment pooling, RFM
scores against pandas, the CLI and the spec rules. Calibration (SBC, coverage) lives in
test_bayes_calibration.py, exact references of the closed forms in reference/test_conjugate_reference.py.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from typer.testing import CliRunner

from promolab.analyze import analyze_spec
from promolab.analyze.bayesian import rope_decision
from promolab.cli import app
from promolab.errors import SpecError
from promolab.spec import dump_spec, spec_from_dict

runner = CliRunner()
ARMS = ("control", "pct15", "save10")
START = date(2026, 3, 1)
BAYES_KEYS = {"prob_beat_control", "prob_best", "expected_loss", "rel_lift_mean", "rel_hdi", "abs_hdi"}


def spec_dict(**analysis: object) -> dict:
    """Three arms; a binary, a revenue (hurdle), a count, a ratio and an ordinal metric."""
    return {
        "id": "bayes-check",
        "name": "Bayes check",
        "unit": "customer",
        "start": START.isoformat(),
        "end": "2026-03-28",
        "variants": [
            {"id": "control", "kind": "control", "weight": 1 / 3},
            {"id": "pct15", "kind": "discount", "mechanic": "percent_off", "value": 15, "weight": 1 / 3},
            {"id": "save10", "kind": "discount", "mechanic": "amount_off", "value": 10, "weight": 1 / 3},
        ],
        "metrics": [
            {"id": "conversion", "kind": "binary", "source": "orders"},
            {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
            {"id": "orders", "kind": "count", "source": "orders"},
            {"id": "aov", "kind": "ratio", "numerator": "revenue", "denominator": "orders"},
            {
                "id": "satisfaction",
                "kind": "ordinal",
                "source": "survey",
                "column": "score",
                "levels": [1, 2, 3, 4, 5],
            },
        ],
        "primary": "revenue",
        "guardrails": [{"metric": "satisfaction", "max_relative_drop": 0.05}],
        "analysis": {"method": "both", **analysis},
        "data": {
            "assignments": "a.parquet",
            "units": "u.parquet",
            "tables": {"orders": "o.parquet", "survey": "s.parquet", "pre_orders": "p.parquet"},
        },
    }


def make_frames(seed: int, n: int) -> dict[str, pd.DataFrame]:
    """Units buy with P = 0.2 x lift; log-normal order amounts; Poisson(1.3) orders per buyer; scores 1-5;
    pre-period orders (dates, amounts) and a region column for segments."""
    rng = np.random.default_rng(seed)
    unit_id = np.arange(1, n + 1) * 7
    arm = rng.integers(0, len(ARMS), n)
    buy = rng.random(n) < 0.2 * np.array([1.0, 1.15, 1.05])[arm]
    count = np.where(buy, 1 + rng.poisson(0.3, n), 0)
    owner = np.repeat(np.arange(n), count)
    amount = rng.lognormal(np.log(30) + np.array([0.0, -0.05, 0.1])[arm[owner]], 0.7)
    respond = rng.random(n) < 0.3
    score = np.clip(np.round(3.2 + np.array([0, 0.2, -0.1])[arm] + rng.normal(0, 1.1, n)), 1, 5)
    k = rng.poisson(2.0, n)
    pre_owner = np.repeat(np.arange(n), k)
    days = rng.integers(1, 365, pre_owner.size)
    return {
        "assignments": pd.DataFrame({"unit_id": unit_id, "variant": np.array(ARMS)[arm]}),
        "units": pd.DataFrame(
            {
                "unit_id": unit_id,
                "region": np.array(["north", "south", "east", "west"])[rng.integers(0, 4, n)],
            }
        ),
        "orders": pd.DataFrame({"unit_id": unit_id[owner], "amount": np.round(amount, 2)}),
        "survey": pd.DataFrame({"unit_id": unit_id[respond], "score": score[respond].astype(np.int64)}),
        "pre_orders": pd.DataFrame(
            {
                "unit_id": unit_id[pre_owner],
                "date": pd.Timestamp(START) - pd.to_timedelta(days, unit="D"),
                "amount": np.round(rng.lognormal(3, 1, pre_owner.size), 2),
            }
        ),
    }


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return make_frames(seed=11, n=60_000)


@pytest.fixture(scope="module")
def analysis(frames):
    spec = spec_from_dict(spec_dict(bayes={"draws": 5000, "rope": 0.01}, segments=[{"column": "region"}]))
    return analyze_spec(spec, frames=frames, cuped=False)


# ---------------------------------------------------------------------- agreement and wiring


def test_every_entry_carries_the_bayes_object(analysis):
    payload = analysis.to_dict()
    assert payload["method"] == "both"
    for row in payload["results"]:
        assert set(row["bayes"]) >= BAYES_KEYS, row["metric"]
        lo, hi = row["bayes"]["rel_hdi"]
        assert lo <= row["bayes"]["rel_lift_mean"] <= hi
    assert {r["metric"] for r in payload["results"]} == {
        "conversion",
        "revenue",
        "orders",
        "aov",
        "satisfaction",
        "satisfaction:top_box",
    }
    json.dumps(payload)  # serialisable as it is


@pytest.mark.parametrize("metric", ["conversion", "orders", "aov", "satisfaction", "satisfaction:top_box"])
def test_flat_prior_intervals_match_the_frequentist_ones(analysis, metric):
    """Large samples, (nearly) flat priors: HDI and confidence interval coincide up to the Monte Carlo
    error of an HDI from 10,000 draws (about 1% of the width at each end); tolerance 5% of the width."""
    for row in (r for r in analysis.to_dict()["results"] if r["metric"] == metric):
        lo, hi = row["abs_ci"]
        b_lo, b_hi = row["bayes"]["abs_hdi"]
        width = hi - lo
        assert abs(b_lo - lo) <= 0.05 * width, (metric, row["variant"], (lo, hi), (b_lo, b_hi))
        assert abs(b_hi - hi) <= 0.05 * width, (metric, row["variant"], (lo, hi), (b_lo, b_hi))


def test_hurdle_revenue_interval_is_close_to_welch(analysis):
    """The hurdle model assumes log-normal amounts (true here): its interval for the revenue lift lies
    within 10% of the Welch interval's width at both ends (the models differ, not only Monte Carlo)."""
    for row in (r for r in analysis.to_dict()["results"] if r["metric"] == "revenue"):
        lo, hi = row["abs_ci"]
        b_lo, b_hi = row["bayes"]["abs_hdi"]
        assert abs(b_lo - lo) <= 0.10 * (hi - lo)
        assert abs(b_hi - hi) <= 0.10 * (hi - lo)
        assert row["bayes"]["diagnostics"]["ok"], row["bayes"]["diagnostics"]


def test_binary_prob_beat_is_the_exact_beta_probability_of_the_counts(frames, analysis):
    """P(beat) of conversion against an independent quadrature of Beta(1 + s, 1 + f) densities built
    from counts computed with pandas."""
    buyers = set(frames["orders"]["unit_id"])
    assign = frames["assignments"]
    counts = {
        arm: (int(group["unit_id"].isin(buyers).sum()), len(group))
        for arm, group in assign.groupby("variant")
    }
    sc, nc = counts["control"]
    for row in (r for r in analysis.to_dict()["results"] if r["metric"] == "conversion"):
        st, nt = counts[row["variant"]]
        control, variant = stats.beta(1 + sc, 1 + nc - sc), stats.beta(1 + st, 1 + nt - st)
        lo, hi = control.ppf(1e-12), control.isf(1e-12)
        expected, _ = integrate.quad(
            lambda t, c=control, v=variant: c.pdf(t) * v.sf(t), lo, hi, epsabs=1e-13, limit=400
        )
        assert row["bayes"]["prob_beat_control"] == pytest.approx(expected, abs=1e-9)


def test_prob_best_sums_to_one_and_ranks_like_the_means(analysis):
    bayes = analysis.bayes
    for metric in ("conversion", "revenue", "aov"):
        rows = [r for r in bayes.results if r.metric == metric]
        control_best = 1 - sum(r.prob_best for r in rows)
        assert -1e-9 <= control_best <= 1
        top = max(rows, key=lambda r: r.variant_mean)
        assert top.prob_best == max(r.prob_best for r in rows)


def test_lower_is_better_flips_the_probability():
    frames = make_frames(seed=5, n=6_000)
    higher = spec_dict(bayes={"draws": 500})
    lower = spec_dict(bayes={"draws": 500})
    lower["metrics"][0]["direction"] = "lower"
    keep = ["conversion"]
    for raw in (higher, lower):
        raw["metrics"] = [m for m in raw["metrics"] if m["id"] in keep]
        raw["primary"], raw["guardrails"] = "conversion", []
    up = analyze_spec(spec_from_dict(higher), frames=frames).bayes
    down = analyze_spec(spec_from_dict(lower), frames=frames).bayes
    for a, b in zip(up.results, down.results, strict=True):
        assert a.prob_beat_control + b.prob_beat_control == pytest.approx(1.0, abs=1e-12)
        assert b.expected_loss == pytest.approx(a.expected_loss + a.abs_mean, rel=1e-9, abs=1e-15)


def test_a_lift_prior_pulls_the_lift_and_reports_its_effective_sample_size():
    frames = make_frames(seed=5, n=6_000)
    raw = spec_dict(bayes={"draws": 4000, "priors": {"conversion": {"lift": {"mean": 0.0, "sd": 0.01}}}})
    raw["metrics"], raw["primary"], raw["guardrails"] = [raw["metrics"][0]], "conversion", []
    flat_raw = spec_dict(bayes={"draws": 4000})
    flat_raw["metrics"], flat_raw["primary"], flat_raw["guardrails"] = [raw["metrics"][0]], "conversion", []
    flat = analyze_spec(spec_from_dict(flat_raw), frames=frames).bayes
    pulled = analyze_spec(spec_from_dict(raw), frames=frames).bayes
    for f, p in zip(flat.results, pulled.results, strict=True):
        assert abs(p.rel_lift_mean) < abs(f.rel_lift_mean)
        assert p.rel_hdi[1] - p.rel_hdi[0] < f.rel_hdi[1] - f.rel_hdi[0]
        assert p.model == "beta-binomial + lift prior"
        assert 0 < p.diagnostics["importance_ess"] <= 8000
    # a prior that contradicts the data leaves few effective draws: flagged, never silently fine
    raw["analysis"]["bayes"]["priors"]["conversion"]["lift"] = {"mean": -0.5, "sd": 0.001}
    clash = analyze_spec(spec_from_dict(raw), frames=frames).bayes
    assert clash.flagged
    assert all(not r.diagnostics["ok"] for r in clash.results)


@pytest.mark.parametrize(
    ("hdi", "rope", "higher", "expected"),
    [
        ((0.02, 0.05), 0.01, True, "better"),
        ((0.005, 0.05), 0.01, True, "undecided"),
        ((-0.05, -0.02), 0.01, True, "worse"),
        ((-0.008, 0.009), 0.01, True, "equivalent"),
        ((-0.008, 0.009), 0.0, True, "undecided"),
        ((0.001, 0.002), 0.0, True, "better"),
        ((0.02, 0.05), 0.01, False, "worse"),
        ((-0.05, -0.02), 0.01, False, "better"),
    ],
)
def test_rope_decision(hdi, rope, higher, expected):
    assert rope_decision(hdi, rope, higher) == expected


# ---------------------------------------------------------------------- segments


def test_segment_lifts_shrink_towards_the_pooled_lift(analysis):
    segments = [s for s in analysis.bayes.segments if s.segmentation == "region"]
    assert {s.segment for s in segments} == {"north", "south", "east", "west"}
    assert len(segments) == 4 * 2
    for arm in ("pct15", "save10"):
        rows = [s for s in segments if s.variant == arm]
        raw = np.array([s.raw_abs_diff for s in rows])
        pooled = np.array([s.abs_mean for s in rows])
        assert np.ptp(pooled) < np.ptp(raw)  # partial pooling pulls segments together
        assert all(s.abs_hdi[0] <= s.abs_mean <= s.abs_hdi[1] for s in rows)
        assert sum(s.n_control + s.n_variant for s in rows) == sum(
            r["n_control"] + r["n_variant"]
            for r in analysis.to_dict()["results"]
            if r["metric"] == "revenue" and r["variant"] == arm
        )


def _pandas_rfm(frames: dict[str, pd.DataFrame], bins: int) -> pd.Series:
    """RFM cells as docs/analysis.md defines them, computed with pandas."""
    pre = frames["pre_orders"]
    pre = pre[pre["date"] < pd.Timestamp(START)]
    per = pre.groupby("unit_id").agg(last=("date", "max"), f=("amount", "size"), m=("amount", "sum"))
    per["r"] = (pd.Timestamp(START) - per["last"]).dt.days
    n = len(per)  # the k-th cut: the ceil(n k / bins)-th smallest value, in integers (no rounding)
    cuts = {v: [np.sort(per[v].to_numpy())[-(-n * k // bins) - 1] for k in range(1, bins)] for v in "rfm"}
    score = {
        "r": 1 + sum((per["r"] < c).astype(int) for c in cuts["r"]),
        "f": 1 + sum((per["f"] > c).astype(int) for c in cuts["f"]),
        "m": 1 + sum((per["m"] > c).astype(int) for c in cuts["m"]),
    }
    return "R" + score["r"].astype(str) + "F" + score["f"].astype(str) + "M" + score["m"].astype(str)


@pytest.mark.parametrize("bins", [4, 6, 7])
def test_rfm_cells_match_pandas(bins: int):
    """840 units with pre-period orders: ``n k / bins`` is whole for every cut of 4, 6 and 7 bins, where
    a quantile at the rounded ``k / bins`` lands one place off (DuckDB's ``quantile_disc`` did)."""
    from promolab.aggregate.duck import aggregate

    frames = make_frames(seed=2, n=3_000)
    pre = frames["pre_orders"]
    kept = pre.loc[pre["date"] < pd.Timestamp(START), "unit_id"].drop_duplicates().head(840)
    assert len(kept) == 840
    frames["pre_orders"] = pre[pre["unit_id"].isin(kept)]
    spec = spec_from_dict(spec_dict(segments=[{"rfm": {"source": "pre_orders", "bins": bins}}]))
    aggregation = aggregate(spec, frames=frames, segments=spec.analysis.segments)
    got = (
        aggregation.con.execute('SELECT unit_id, "seg:rfm" FROM unit_values')
        .df()
        .set_index("unit_id")["seg:rfm"]
    )
    expected = _pandas_rfm(frames, bins=bins).reindex(got.index).fillna("new")
    assert (got == expected).all(), pd.DataFrame({"got": got, "expected": expected})[got != expected].head()
    assert (got == "new").sum() == len(
        set(frames["assignments"]["unit_id"]) - set(frames["pre_orders"]["unit_id"])
    )


# ---------------------------------------------------------------------- CLI and spec


def _write(tmp_path, raw: dict, frames: dict[str, pd.DataFrame]) -> list[str]:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(dump_spec(spec_from_dict(raw)))
    args = ["analyze", str(spec_path)]
    for name, frame in frames.items():
        path = tmp_path / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        args += ["--data", f"{name}={path}"]
    return args


def test_cli_bayesian_writes_json_and_draws(tmp_path):
    frames = make_frames(seed=3, n=4_000)
    raw = spec_dict(bayes={"draws": 300, "tune": 300})
    raw["metrics"] = [m for m in raw["metrics"] if m["id"] not in ("revenue", "aov")]  # closed forms: fast
    raw["primary"] = "conversion"
    args = _write(tmp_path, raw, frames)
    out, draws = tmp_path / "out.json", tmp_path / "draws.parquet"
    done = runner.invoke(app, [*args, "--method", "bayesian", "--json", str(out), "--draws", str(draws)])
    assert done.exit_code == 0, done.output
    assert "Verdict (bayesian)" in done.stdout
    payload = json.loads(out.read_text())
    assert payload["method"] == "bayesian"
    assert payload["decision"]["rule"] == "bayesian"
    assert {a["variant"] for a in payload["decision"]["arms"]} == set(ARMS) - {"control"}
    table = pd.read_parquet(draws)
    assert list(table.columns) == ["metric", "arm", "draw", "mean"]
    assert len(table) == 4 * len(ARMS) * 600  # conversion, orders, satisfaction, its top box


def test_cli_draws_need_the_bayesian_engine(tmp_path):
    frames = make_frames(seed=3, n=500)
    raw = spec_dict()
    raw["analysis"]["method"] = "frequentist"
    args = _write(tmp_path, raw, frames)
    done = runner.invoke(app, [*args, "--draws", str(tmp_path / "d.parquet")])
    assert done.exit_code == 2
    assert "--draws needs the Bayesian engine" in done.stderr
    done = runner.invoke(app, [*args, "--method", "both", "--draws", str(tmp_path / "d.txt")])
    assert done.exit_code == 2
    assert "must end in .parquet or .csv" in done.stderr


@pytest.mark.parametrize(
    ("analysis", "fragment"),
    [
        ({"bayes": {"priors": {"revenu": {"lift": {"sd": 0.1}}}}}, "unknown metric 'revenu'"),
        ({"bayes": {"priors": {"revenue": {"a": 2}}}}, "'revenue' is continuous"),
        ({"bayes": {"priors": {"conversion": {"a": 2, "b": 0}}}}, "a Beta prior needs b > 0"),
        ({"segments": [{"rfm": {"source": "pre_order"}}]}, "unknown data table 'pre_order'"),
        ({"segments": [{"column": "region"}, {"column": "region"}]}, "segmentation 'region' is listed twice"),
        (
            {"segments": [{"column": "region", "rfm": {"source": "pre_orders"}}]},
            "exactly one of 'column' or 'rfm'",
        ),
        ({"bayes": {"sampler": "stan"}}, "sampler"),
    ],
)
def test_spec_rules_for_the_bayesian_blocks(analysis, fragment):
    with pytest.raises(SpecError) as caught:
        spec_from_dict(spec_dict(**analysis))
    assert fragment in str(caught.value)


# ---------------------------------------------------------------------- real data


def test_hillstrom_bayesian_uplift_of_both_emails():
    """Visit and conversion: P(beat) equals the exact Beta probability of the counts in the CSV; the
    absolute HDI and the equal-tailed relative interval lie within 5% (of the width) of the Wald and
    log-ratio intervals; spend (hurdle
    model): both e-mails beat no e-mail with P > 0.99, the sampler's diagnostics pass, and the relative
    HDI overlaps the frequentist interval."""
    from promolab import load_spec

    from .conftest import EXAMPLES, shared_file

    path = shared_file("hillstrom.csv")
    raw = pd.read_csv(path)
    spec = load_spec(EXAMPLES / "hillstrom.yaml")
    analysis = analyze_spec(spec, overrides={"units": path}, cuped=False, method="both")
    arms = {"No E-Mail": "no_email", "Mens E-Mail": "mens_email", "Womens E-Mail": "womens_email"}
    rows = {(r["metric"], r["variant"]): r for r in analysis.to_dict()["results"]}
    for metric in ("visit", "conversion"):
        counts = {arms[k]: (int(g[metric].sum()), len(g)) for k, g in raw.groupby("segment")}
        sc, nc = counts["no_email"]
        for arm in ("mens_email", "womens_email"):
            st, nt = counts[arm]
            row = rows[(metric, arm)]
            c, v = stats.beta(1 + sc, 1 + nc - sc), stats.beta(1 + st, 1 + nt - st)
            exact, _ = integrate.quad(lambda t, c=c, v=v: c.pdf(t) * v.sf(t), c.ppf(1e-12), c.isf(1e-12))
            assert row["bayes"]["prob_beat_control"] == pytest.approx(exact, abs=1e-9)
            lo, hi = row["abs_ci"]
            b_lo, b_hi = row["bayes"]["abs_hdi"]
            assert abs(b_lo - lo) <= 0.05 * (hi - lo)
            assert abs(b_hi - hi) <= 0.05 * (hi - lo)
            # the relative lift is skewed: its HDI sits left of the log-ratio interval, but the
            # equal-tailed posterior interval is the same kind of interval (log is monotone)
            draws = analysis.bayes.draws[metric]
            b_lo, b_hi = np.quantile(draws[arm] / draws["no_email"] - 1, [0.025, 0.975])
            lo, hi = row["rel_ci"]
            assert abs(b_lo - lo) <= 0.05 * (hi - lo)
            assert abs(b_hi - hi) <= 0.05 * (hi - lo)
    for arm in ("mens_email", "womens_email"):
        row = rows[("spend", arm)]
        assert row["bayes"]["prob_beat_control"] > 0.99
        assert row["bayes"]["diagnostics"]["ok"], row["bayes"]["diagnostics"]
        lo, hi = row["rel_ci"]
        b_lo, b_hi = row["bayes"]["rel_hdi"]
        assert b_lo < hi
        assert lo < b_hi


def test_analysis_round_trips_exactly_through_its_json(analysis):
    """Read back at the file edge: ``Analysis.from_dict(a.to_dict())`` is the same analysis (its JSON,
    results, guardrails, Bayesian results and segments equal; posterior draws are not in the JSON)."""
    import json

    from promolab.analyze import Analysis
    from promolab.io import json_text

    payload = json.loads(json_text(analysis.to_dict()))
    back = Analysis.from_dict(payload)
    assert back == analysis  # every field, floats to the bit (posterior draws are not compared)
    assert json.loads(json_text(back.to_dict())) == payload
    assert back.results == analysis.results
    assert back.guardrails == analysis.guardrails
    assert back.srm == analysis.srm
    assert back.data_quality == analysis.data_quality
    assert back.bayes is not None
    assert analysis.bayes is not None
    assert back.bayes.results == analysis.bayes.results
    assert back.bayes.segments == analysis.bayes.segments
    for arm, moments in analysis.arms.items():
        assert back.arms[arm].n == moments.n
        assert (back.arms[arm].mean == moments.mean).all()
        assert (back.arms[arm].comoment == moments.comoment).all()
