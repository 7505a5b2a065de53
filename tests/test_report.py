"""Reports end to end: sections present, numbers in the HTML equal the report JSON, user text
escaped (HTML and Markdown), the HTML rendered by headless Chromium without console errors, the
quarterly review's portfolio and totals, and clear errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from promolab.cli import app
from promolab.errors import DataError
from promolab.format import money
from promolab.report.render import interval, pct
from promolab.report.review import quarter_bounds

from .conftest import EXAMPLES

runner = CliRunner()
HOSTILE = '<script>console.error("xss")</script> & "co" | *bold*'
UNITS = "20000"


def _run(*args: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output


def _experiment(tmp: Path, name: str, spec_path: Path) -> dict:
    """Simulate, analyse (frequentist, JSON) and report one spec; return the report JSON."""
    data = tmp / name
    results = str(data / "a.json")
    _run("simulate", str(spec_path), "--units", UNITS, "--seed", "3", "--out", str(data))
    _run(
        "analyze",
        str(spec_path),
        "--data-dir",
        str(data),
        "--method",
        "frequentist",
        "--daily",
        "--json",
        results,
    )
    _run("report", str(spec_path), "--results", results, "-o", str(tmp / "reports"))
    spec_id = yaml.safe_load(spec_path.read_text())["id"]
    return json.loads((tmp / "reports" / spec_id / f"{spec_id}.json").read_text())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Spring discounts (with a hostile variant name and hypothesis) and the price test, both Q1 2026."""
    tmp = tmp_path_factory.mktemp("reports")
    raw = yaml.safe_load((EXAMPLES / "spring-discount.yaml").read_text())
    raw["variants"][1]["name"] = HOSTILE
    raw["hypothesis"] = "<img src=x onerror=alert(1)> pays"
    hostile = tmp / "spring.yaml"
    hostile.write_text(yaml.safe_dump(raw))
    _experiment(tmp, "spring", hostile)
    _experiment(tmp, "price", EXAMPLES / "price-points.yaml")
    return tmp


@pytest.fixture(scope="module")
def spring(workspace) -> tuple[dict, str, str]:
    stem = workspace / "reports" / "spring-discount-2026" / "spring-discount-2026"
    return (
        json.loads(stem.with_suffix(".json").read_text()),
        stem.with_suffix(".html").read_text(),
        (stem.with_suffix(".md").read_text()),
    )


class _Cells(HTMLParser):
    """Text of every element carrying ``data-field``, by field name, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, list[str]] = {}
        self.sections: list[str] = []
        self._open: str | None = None
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "section":
            self.sections.append(attributes.get("id") or "")
        if "data-field" in attributes:
            self._open = attributes["data-field"]
            self.fields.setdefault(self._open, []).append("")

    def handle_endtag(self, tag):
        self._open = None if tag in ("td", "strong", "span", "li", "p", "div") else self._open

    def handle_data(self, data):
        if self._open is not None:
            self.fields[self._open][-1] += data


def _parse(html: str) -> _Cells:
    cells = _Cells()
    cells.feed(html)
    return cells


def test_report_has_every_section_in_order(spring):
    _, html, markdown = spring
    assert _parse(html).sections == ["decision", "design", "metrics", "economics", "segment-tests", "notes"]
    for heading in ("## Design recap", "## Metrics", "## Promotion economics", "## Method notes"):
        assert heading in markdown


def test_numbers_in_the_html_equal_the_report_json(spring):
    report, html, _ = spring
    cells = _parse(html).fields
    assert cells["rel_lift"] == [pct(r["rel_lift"], 2) for r in report["results"]]
    arms = report["economics"]["arms"]
    assert cells["net_profit"] == [money(a["net_profit"]["value"]) for a in arms]
    assert cells["roi"] == [pct(a["roi"]["value"]) for a in arms]
    assert cells["headline-lift"] == [pct(report["headline"]["rel_lift"])]
    assert cells["decision"] == [report["decision"]["reason"]]
    assert cells["action"][0].startswith(report["decision"]["action"].upper())
    assert cells["arm-verdict"] == [arm["line"] for arm in report["decision"]["arms"]]
    assert len(cells["heterogeneity"]) == len(report["segment_tests"]["heterogeneity"]) > 0


def test_decision_and_headline_come_first(spring):
    report, html, markdown = spring
    assert html.index('id="decision"') < html.index('id="design"')
    assert report["decision"]["action"] in ("ship", "iterate", "stop")
    first_bold = next(line for line in markdown.splitlines() if line.startswith("**"))
    assert first_bold.startswith(f"**{report['decision']['action'].upper()}")
    assert markdown.index(first_bold) < markdown.index("## Design recap")


def test_user_text_is_escaped_in_html_and_markdown(spring):
    _, html, markdown = spring
    assert "<script>" not in html
    assert "&lt;script&gt;console.error(&#34;xss&#34;)&lt;/script&gt; &amp; &#34;co&#34;" in html
    assert "<img src=x" not in html
    assert _parse(html).scripts == 0
    assert "<script>" not in markdown
    assert "\\<script\\>" in markdown
    assert "\\| \\*bold\\*" in markdown  # no table column break, no emphasis


def test_economics_waterfall_runs_from_margin_at_list_price_to_net_profit(spring):
    from promolab.report.plots import waterfall_steps

    assert spring[1].count('alt="ROI waterfall"') == len(spring[0]["economics"]["arms"])
    for arm in spring[0]["economics"]["arms"]:
        steps = waterfall_steps(arm)
        # first bar: the incremental margin before any discount = margin after discounts + discounts
        at_list_price = arm["incremental_margin"]["value"] + arm["discount_cost"]["value"]
        assert steps[0][1] == pytest.approx(at_list_price, rel=1e-9)
        assert sum(v for _, v in steps) == pytest.approx(arm["net_profit"]["value"], rel=1e-12)


def test_price_report_has_the_price_response(workspace):
    report = json.loads(
        (workspace / "reports" / "starter-kit-price-2026q1" / "starter-kit-price-2026q1.json").read_text()
    )
    response = report["price_response"]
    assert [row["price"] for row in response["rows"]] == [35, 40, 45]
    assert sum(row["prob_profit_max"] for row in response["rows"]) == pytest.approx(1.0)
    low, high = response["loglog_ci"]
    truth = yaml.safe_load((EXAMPLES / "price-points.yaml").read_text())["simulation"]["price_elasticity"]
    assert low < truth < high  # the simulator's elasticity of demand is recovered end to end
    html = (workspace / "reports" / "starter-kit-price-2026q1" / "starter-kit-price-2026q1.html").read_text()
    assert 'id="price"' in html
    assert 'alt="ROI waterfall"' not in html  # alternative prices have no promotion cost to decompose
    assert interval(response["loglog_ci"], "num") in html


def test_html_renders_in_headless_chromium_without_console_errors(spring, workspace, tmp_path):
    browser = (
        os.environ.get("CHROMIUM")
        or subprocess.run(
            ["sh", str(EXAMPLES.parent / "scripts" / "find-chromium")], capture_output=True, text=True
        ).stdout.strip()
    )
    if not browser:
        pytest.fail("headless Chromium is needed: run `sh scripts/find-chromium --install` (make test does)")

    def render(page: Path) -> tuple[Path, str]:
        shot = tmp_path / f"{page.stem}.png"
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return shot, done.stderr

    control = tmp_path / "control.html"  # the console check is not blind: a page that logs is caught
    control.write_text('<html><body><script>console.error("seen")</script></body></html>')
    assert "CONSOLE" in render(control)[1]
    for page in (workspace / "reports").glob("*/*.html"):
        shot, log = render(page)
        assert "CONSOLE" not in log, log
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


# ---------------------------------------------------------------------- the quarterly review


@pytest.fixture(scope="module")
def review(workspace) -> dict:
    specs = [str(workspace / "spring.yaml"), str(EXAMPLES / "price-points.yaml")]
    reports = str(workspace / "reports")
    _run("review", *specs, "--quarter", "2026Q1", "-o", reports)
    return json.loads((workspace / "reports" / "review-2026Q1" / "review-2026Q1.json").read_text())


def test_review_portfolio_covers_every_arm_ranked_by_roi(review):
    rows = review["portfolio"]
    assert {(r["experiment"], r["variant"]) for r in rows} == {
        ("spring-discount-2026", "pct15"),
        ("spring-discount-2026", "save10"),
        ("spring-discount-2026", "bogo"),
        ("starter-kit-price-2026q1", "p35"),
        ("starter-kit-price-2026q1", "p45"),
    }
    rois = [r["roi"] for r in rows]
    known = [roi for roi in rois if roi is not None]
    assert rois == known + [None] * (len(rois) - len(known))  # arms without an ROI come last
    assert known == sorted(known, reverse=True)
    shipped = [r for r in rows if r["shipped"]]
    assert all(r["decision"] == "ship" for r in shipped)


def test_review_totals_are_the_sums_of_the_portfolio(review):
    usd = review["totals"]["USD"]
    rows = [
        r
        for r in review["portfolio"]
        if r["currency"] == "USD" and r["net_profit"] is not None and r["mechanic"] != "price_point"
    ]
    assert len(rows) == usd["arms"] == 3  # price-point arms are alternatives, not promotions
    assert usd["net_profit"] == pytest.approx(sum(r["net_profit"] for r in rows), rel=1e-12)
    assert usd["promotion_cost"] == pytest.approx(sum(r["promotion_cost"] for r in rows), rel=1e-12)


def test_review_pools_every_mechanic(review, workspace):
    effects = review["mechanics"]["effects"]
    assert {e["mechanic"] for e in effects} == {"percent_off", "amount_off", "bogo"}
    assert sum(e["arms"] for e in effects) == 3
    for e in effects:
        assert e["rel_hdi"][0] < e["rel_lift_mean"] < e["rel_hdi"][1]
    html = (workspace / "reports" / "review-2026Q1" / "review-2026Q1.html").read_text()
    assert 'id="mechanics"' in html
    assert "<script>" not in html


@pytest.mark.parametrize(
    ("label", "bounds"),
    [("2026Q1", ("2026-01-01", "2026-03-31")), ("2026Q4", ("2026-10-01", "2026-12-31")),
     ("2024Q1", ("2024-01-01", "2024-03-31"))],
)  # fmt: skip
def test_quarter_bounds(label, bounds):
    assert tuple(d.isoformat() for d in quarter_bounds(label)) == bounds


@pytest.mark.parametrize("label", ["2026Q5", "2026-Q1", "Q1 2026", ""])
def test_bad_quarter_is_a_clear_error(label):
    with pytest.raises(DataError, match="expected YYYYQn"):
        quarter_bounds(label)


def test_review_without_reports_or_experiments_exits_2(tmp_path):
    missing = runner.invoke(app, ["review", str(EXAMPLES), "--quarter", "2026Q1", "-o", str(tmp_path)])
    assert missing.exit_code == 2
    assert "no report for" in missing.output
    assert "Traceback" not in missing.output
    empty = runner.invoke(app, ["review", str(EXAMPLES), "--quarter", "2030Q1", "-o", str(tmp_path)])
    assert empty.exit_code == 2
    assert "no experiment ended in 2030Q1" in empty.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"experiment": "x"}', "not a promolab analysis"),
        ('{"experiment": "x"', "not JSON"),
    ],
)
def test_report_with_a_bad_results_file_exits_2(tmp_path, content, message):
    results = tmp_path / "r.json"
    results.write_text(content)
    before = results.read_text()
    spec = str(EXAMPLES / "spring-discount.yaml")
    outcome = runner.invoke(app, ["report", spec, "--results", str(results), "-o", str(tmp_path)])
    assert outcome.exit_code == 2
    assert message in outcome.output
    assert "Traceback" not in outcome.output
    assert results.read_text() == before  # nothing the user gave is modified


def test_report_from_saved_posterior_draws_uses_the_bayesian_law(workspace, tmp_path):
    data = workspace / "spring"
    raw = yaml.safe_load((workspace / "spring.yaml").read_text())
    raw["analysis"]["segments"] = []  # segment hierarchies cost a minute here and are tested elsewhere
    spec = str(tmp_path / "spring.yaml")
    Path(spec).write_text(yaml.safe_dump(raw))
    results, draws = str(tmp_path / "a.json"), str(tmp_path / "d.parquet")
    _run(
        "analyze", spec, "--data-dir", str(data), "--method", "bayesian", "--json", results, "--draws", draws
    )
    _run("report", spec, "--results", results, "--draws", draws, "-o", str(tmp_path))
    report = json.loads((tmp_path / "spring-discount-2026" / "spring-discount-2026.json").read_text())
    assert report["economics"]["method"] == "bayesian"
    assert any("posterior draws of revenue" in note for note in report["notes"])
    for arm in report["economics"]["arms"]:
        low, high = arm["net_profit"]["ci"]
        assert low < arm["net_profit"]["value"] < high
    html = (tmp_path / "spring-discount-2026" / "spring-discount-2026.html").read_text()
    assert 'alt="posterior of the relative lift"' in html


def test_draws_without_results_is_a_usage_error(tmp_path):
    outcome = runner.invoke(
        app, ["report", str(EXAMPLES / "spring-discount.yaml"), "--draws", "d.parquet", "-o", str(tmp_path)]
    )
    assert outcome.exit_code == 2
    assert "--draws goes with --results" in outcome.output


def test_cumulative_curve_matches_the_orders_day_by_day(spring, workspace):
    report, html, _ = spring
    daily = report["daily"]
    assert daily["metric"] == "revenue"
    data = workspace / "spring" / "data" / "spring"
    orders = pd.read_parquet(data / "orders.parquet")
    assignments = pd.read_parquet(data / "assignments.parquet")
    joined = orders.merge(assignments, on="unit_id")
    arms = assignments["variant"].value_counts()
    day = daily["days"][9]
    upto = joined[joined["ts"].dt.date <= pd.Timestamp(day).date()]
    for arm, values in daily["arms"].items():
        expected = upto.loc[upto["variant"] == arm, "amount"].sum() / arms[arm]
        assert values[9] == pytest.approx(expected, rel=1e-9)
        assert values == sorted(values)  # revenue only accumulates
        total = joined.loc[joined["variant"] == arm, "amount"].sum() / arms[arm]  # every order in the test
        assert values[-1] == pytest.approx(total, rel=1e-9)
    assert 'alt="cumulative metric over time"' in html


def _broken_results(workspace: Path, tmp_path: Path, change) -> tuple[Path, object]:
    payload = json.loads((workspace / "spring" / "a.json").read_text())
    change(payload)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(payload))
    outcome = runner.invoke(
        app, ["report", str(workspace / "spring.yaml"), "--results", str(path), "-o", str(tmp_path / "r")]
    )
    return path, outcome


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p.update(experiment="other"),
            "results of 'other', but the spec is 'spring-discount-2026'",
        ),
        (lambda p: p["arms"].pop("bogo"), "analysed arms ['control', 'pct15', 'save10'] differ"),
        (lambda p: p.pop("srm"), "not a promolab analysis (missing srm)"),
        (
            lambda p: [
                a["names"].__setitem__(a["names"].index("units_sold"), "units") for a in p["arms"].values()
            ],
            "no statistics of metric(s) units_sold",
        ),
    ],
)
def test_results_that_do_not_match_the_spec_exit_2(workspace, tmp_path, change, message):
    _, outcome = _broken_results(workspace, tmp_path, change)
    assert outcome.exit_code == 2
    assert message in outcome.output
    assert "Traceback" not in outcome.output


def test_results_of_an_edited_spec_are_reported_with_a_warning(workspace, tmp_path):
    _, outcome = _broken_results(workspace, tmp_path, lambda p: p.update(spec_hash="0" * 64))
    assert outcome.exit_code == 0
    assert "warning:" in outcome.output
    assert "the spec changed since this analysis" in outcome.output


def _draws(arms: list[str], count: int, mean: float = 7.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"metric": "revenue", "arm": [a for a in arms for _ in range(count)],
         "draw": [d for _ in arms for d in range(count)], "mean": mean}
    )  # fmt: skip


ALL_ARMS = ["control", "pct15", "save10", "bogo"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (lambda: _draws(["control", "pct15"], 200), "needs the same number of draws for every arm"),
        (lambda: _draws(ALL_ARMS, 5), "fewer than 100 draws per arm"),
        (lambda: _draws(ALL_ARMS, 200, mean=float("nan")), "must be finite numbers"),
        (lambda: pd.concat([_draws(ALL_ARMS, 200), _draws(["bogo"], 1)]), "appears twice"),
    ],
)
def test_bad_draws_exit_2(workspace, tmp_path, frame, message):
    draws = tmp_path / "d.csv"
    frame().to_csv(draws, index=False)
    spec = str(workspace / "spring.yaml")
    results = str(workspace / "spring" / "a.json")
    outcome = runner.invoke(
        app, ["report", spec, "--results", results, "--draws", str(draws), "-o", str(tmp_path)]
    )
    assert outcome.exit_code == 2
    assert message in outcome.output


def test_review_with_a_corrupt_report_exits_2(workspace, tmp_path):
    specs = [str(workspace / "spring.yaml"), str(EXAMPLES / "price-points.yaml")]
    good = (workspace / "reports" / "spring-discount-2026" / "spring-discount-2026.json").read_text()
    price_report = workspace / "reports" / "starter-kit-price-2026q1" / "starter-kit-price-2026q1.json"
    for spring, price, message in [
        (good, '{"experiment": "starter-kit-price-2026q1"}', "not a promolab report (missing name"),
        ("{broken", price_report.read_text(), "not JSON"),
    ]:
        for name, text in (("spring-discount-2026", spring), ("starter-kit-price-2026q1", price)):
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f"{name}.json").write_text(text)
        outcome = runner.invoke(app, ["review", *specs, "--quarter", "2026Q1", "-o", str(tmp_path)])
        assert outcome.exit_code == 2
        assert message in outcome.output
        assert "Traceback" not in outcome.output


def test_method_with_results_is_a_usage_error(workspace, tmp_path):
    spec = str(workspace / "spring.yaml")
    results = str(workspace / "spring" / "a.json")
    outcome = runner.invoke(
        app, ["report", spec, "--results", results, "--method", "bayesian", "-o", str(tmp_path)]
    )
    assert outcome.exit_code == 2
    assert "--results already has a method" in outcome.output


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<b>x</b>", "\\<b\\>x\\</b\\>"),
        ("a | b", "a \\| b"),
        ("~~gone~~", "\\~\\~gone\\~\\~"),
        ("[l](u)", "\\[l\\](u)"),
    ],
)
def test_markdown_escape(text, escaped):
    from promolab.report.render import md_escape

    assert md_escape(text) == escaped


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(reference="pct15"), "analysed against 'pct15'"),
        (lambda p: p.update(srm={}), "a.json: srm.chi2: Field required (and 2 more problem(s))"),
        (lambda p: p["results"].clear(), "a.json: results: List should have at least 1 item"),
        (
            lambda p: p["arms"]["control"].update(n=-3),
            "a.json: arms.control.n: must be greater than or equal to 2",
        ),
    ],
)
def test_saved_results_with_another_reference_or_broken_insides_exit_2(workspace, tmp_path, change, message):
    _, outcome = _broken_results(workspace, tmp_path, change)
    assert outcome.exit_code == 2
    assert message in outcome.output
    assert "Traceback" not in outcome.output


def test_report_comments_a_short_sample_and_free_goods(tmp_path):
    """Hillstrom's spec plans ~64,000 customers and declares unit_cost 0: a 3,000-unit run must say
    what lift it could detect instead, and flag that ROI assumes goods that cost nothing."""
    import promolab
    from promolab.simulate import simulate

    spec = promolab.load_spec(EXAMPLES / "hillstrom.yaml")
    data = simulate(spec, 3000, seed=2)
    result = promolab.analyze(spec, data={name: data.frame(name) for name in data.tables})
    paths = result.report(tmp_path)
    report = json.loads(paths["json"].read_text())
    shortfall = report["design"]["shortfall"]
    assert shortfall.startswith("The test reached ")
    assert "could detect a lift of about" in shortfall
    assert "unit_cost is 0" in report["headline"]["caveat"]
    html = paths["html"].read_text()
    cells = _parse(html).fields
    assert cells["shortfall"] == [shortfall]
    assert cells["caveat"] == [report["headline"]["caveat"]]
    assert report["metric_info"]["visit"]["format"] == "percent"
    assert report["results"][0]["metric"] == "visit"
    assert cells["abs_diff"][0].endswith(" pp")  # a difference of two shares, in percentage points


def test_the_review_reads_the_saved_log_lift_error_behind_each_interval(spring):
    """``rel_se_log`` (what the mechanic pooling of the review uses) is the error behind ``rel_ci``:
    the interval is ``exp(log(1 + lift) +- z se) - 1``, so its log half-width over z gives it back."""
    import math

    from scipy.stats import norm

    report, _, _ = spring
    z = float(norm.ppf(0.5 + report["confidence"] / 2))
    checked = 0
    for row in report["results"]:
        if row["rel_ci"] is None:
            assert row["rel_se_log"] is None
            continue
        low, high = row["rel_ci"]
        assert row["rel_se_log"] == pytest.approx((math.log1p(high) - math.log1p(low)) / (2 * z), rel=1e-12)
        checked += 1
    assert checked > 0
