"""The warehouse route (:mod:`promolab.aggregate.portable`): ``promolab sql SPEC --dialect D`` gives one
query; run by DuckDB, SQLite and Spark on the same data, its rows analysed by ``promolab analyze --stats``
give ``promolab analyze``'s results to 1e-9 (every metric kind, CUPED, guardrails, percentile caps over
windows, column and RFM segments, the holdout); what the query cannot translate, and data or statistics
that the checks refuse, stop with one line."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from promolab.cli import app

from .conftest import EXAMPLES, arrow_keeping_nan, data_required

SPECS = {"spring": "spring-discount.yaml", "coupon": "coupon-email.yaml", "channel": "channel.yaml"}
FILES = {
    "assignments": "assignments",
    "units": "customers",
    "orders": "orders",
    "survey": "survey",
    "unsubscribes": "unsubscribes",
    "pre_orders": "pre_orders",
}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each spec's simulated data, and its analysis by promolab's own engine (frequentist)."""
    found = {}
    for name, spec in SPECS.items():
        folder = tmp_path_factory.mktemp(name)
        code, output = _run(
            "simulate", str(EXAMPLES / spec), "--units", "6000", "--seed", "5", "-o", str(folder)
        )
        assert code == 0, output
        code, output = _run(
            "analyze",
            str(EXAMPLES / spec),
            "--data-dir",
            str(folder),
            "--method",
            "frequentist",
            "--json",
            str(folder / "expected.json"),
        )
        assert code == 0, output
        found[name] = folder
    return found


def _tables(folder: Path) -> dict[str, Path]:
    data = next(p for p in (folder / "data").iterdir() if p.is_dir())
    return {
        name: data / f"{file}.parquet" for name, file in FILES.items() if (data / f"{file}.parquet").exists()
    }


def _query(spec: str | Path, dialect: str, tmp_path: Path) -> str:
    out = tmp_path / f"{dialect}.sql"
    code, output = _run("sql", str(EXAMPLES / spec), "--dialect", dialect, "--out", str(out))
    assert code == 0, output
    return out.read_text()


def _duckdb(query: str, tables: dict[str, Path]) -> pd.DataFrame:
    with duckdb.connect() as con:
        for name, path in tables.items():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
        return con.execute(query).df()


def _sqlite(query: str, tables: dict[str, Path]) -> pd.DataFrame:
    with sqlite3.connect(":memory:") as con:
        for name, path in tables.items():
            pd.read_parquet(path).to_sql(name, con, index=False)
        return pd.read_sql_query(query, con)


ENGINES: dict[str, Callable[[str, dict[str, Path]], pd.DataFrame]] = {"duckdb": _duckdb, "sqlite": _sqlite}


def _assert_same_analysis(found: dict, expected: dict) -> None:
    assert [(r["metric"], r["variant"]) for r in found["results"]] == [
        (r["metric"], r["variant"]) for r in expected["results"]
    ]
    for result, reference in zip(found["results"], expected["results"], strict=True):
        assert result["method"] == reference["method"]
        for key in (
            "abs_diff",
            "se",
            "p_value",
            "p_value_adjusted",
            "control_mean",
            "variant_mean",
            "rel_lift",
        ):
            if reference[key] is None:
                assert result[key] is None, (result["metric"], key)
            else:
                assert result[key] == pytest.approx(reference[key], rel=1e-9, abs=1e-12), (
                    result["metric"],
                    key,
                )
    assert [(g["metric"], g["variant"], g["passed"]) for g in found["guardrails"]] == [
        (g["metric"], g["variant"], g["passed"]) for g in expected["guardrails"]
    ]
    assert found["decision"]["action"] == expected["decision"]["action"]
    assert found["caps"].keys() == expected["caps"].keys()
    for metric, cap in expected["caps"].items():
        assert found["caps"][metric] == pytest.approx(cap, rel=1e-12)
    _assert_same_segments(found["segments"], expected["segments"])


def _assert_same_segments(found: dict, expected: dict) -> None:
    """Every segment's lift and every heterogeneity test, in the same order, to 1e-9."""
    for name, keys, values in (
        ("rows", ("segmentation", "segment", "variant"), ("abs_diff", "se", "p_value", "rel_lift")),
        ("heterogeneity", ("segmentation", "variant"), ("q", "p_value")),
    ):
        assert [tuple(r[k] for k in keys) for r in found[name]] == [
            tuple(r[k] for k in keys) for r in expected[name]
        ]
        for row, reference in zip(found[name], expected[name], strict=True):
            for key in values:
                if reference[key] is None:
                    assert row[key] is None
                else:
                    assert row[key] == pytest.approx(reference[key], rel=1e-9, abs=1e-12), (name, key)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_warehouse_query_gives_the_analysis_of_the_rows(
    simulated: dict[str, Path], tmp_path: Path, engine: str, name: str
) -> None:
    folder, spec = simulated[name], str(EXAMPLES / SPECS[name])
    rows = ENGINES[engine](_query(SPECS[name], engine, tmp_path), _tables(folder))
    stats = tmp_path / "stats.csv"
    rows.to_csv(stats, index=False)
    code, output = _run(
        "analyze",
        spec,
        "--stats",
        str(stats),
        "--method",
        "frequentist",
        "--json",
        str(tmp_path / "found.json"),
    )
    assert code == 0, output
    _assert_same_analysis(
        json.loads((tmp_path / "found.json").read_text()), json.loads((folder / "expected.json").read_text())
    )


@pytest.mark.parametrize("dialect", ["postgres", "trino"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_postgres_and_trino_translations_run_on_duckdb_and_give_the_analysis(
    simulated: dict[str, Path], tmp_path: Path, dialect: str, name: str
) -> None:
    """No PostgreSQL or Trino here: DuckDB reads both syntaxes, so their translations are run by it, which
    checks that sqlglot's output keeps the query's meaning (windows, quantiles, RFM days, segments)."""
    rows = _duckdb(_query(SPECS[name], dialect, tmp_path), _tables(simulated[name]))
    code, output = _analyse_rows(EXAMPLES / SPECS[name], rows, tmp_path)
    assert code == 0, output
    _assert_same_analysis(
        json.loads((tmp_path / "found.json").read_text()),
        json.loads((simulated[name] / "expected.json").read_text()),
    )


def test_a_table_without_the_timestamp_counts_every_row(simulated: dict[str, Path], tmp_path: Path) -> None:
    """``promolab sql --untimed survey``: the survey has no ``ts`` column, so all its answers count, as
    the DuckDB engine counts them; an unknown name is refused."""
    tables = _tables(simulated["spring"])
    survey = tmp_path / "survey.parquet"
    pd.read_parquet(tables["survey"]).drop(columns=["ts"]).to_parquet(survey)
    tables = {**tables, "survey": survey}
    spec = EXAMPLES / SPECS["spring"]
    expected = tmp_path / "expected.json"
    code, output = _run(
        "analyze", str(spec), "--data-dir", str(simulated["spring"]), "--data", f"survey={survey}",
        "--method", "frequentist", "--json", str(expected),
    )  # fmt: skip
    assert code == 0, output
    out = tmp_path / "untimed.sql"
    code, output = _run("sql", str(spec), "--dialect", "sqlite", "--untimed", "survey", "--out", str(out))
    assert code == 0, output
    code, output = _analyse_rows(spec, _sqlite(out.read_text(), tables), tmp_path)
    assert code == 0, output
    _assert_same_analysis(json.loads((tmp_path / "found.json").read_text()), json.loads(expected.read_text()))
    code, output = _run("sql", str(spec), "--dialect", "sqlite", "--untimed", "surveys")
    assert code == 2
    assert "--untimed: 'surveys' is not an event table" in output


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_dialects_query_parses_back_and_has_no_approximate_quantile(tmp_path: Path, name: str) -> None:
    """sqlglot turns PERCENTILE_CONT into approximate quantiles for Spark and Trino: the query must not
    use it (exact quantiles by numbering the sorted values; Spark's exact ``percentile``)."""
    import sqlglot

    from promolab.aggregate.portable import DIALECTS

    for dialect in DIALECTS:
        query = _query(SPECS[name], dialect, tmp_path)
        sqlglot.parse_one(query, read=dialect)
        assert "approx" not in query.lower(), dialect
        assert "percentile_cont" not in query.lower(), dialect


def _require_spark() -> None:
    """PySpark is installed by the set-up; under CI it must be there."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if data_required():
            pytest.fail("PySpark is not installed: `make` installs the '.[test,spark]' extras")
        pytest.skip("PySpark is not installed (`make` installs it)")


def test_the_spark_engine_gives_the_duckdb_engines_analysis(
    simulated: dict[str, Path], tmp_path: Path
) -> None:
    """``analyze --engine spark`` on CSV inputs (spring: segments, scores, CUPED) and on Parquet (channel:
    percentile caps in three windows, Spark's own ``percentile``): Spark (local mode, PySpark installed
    by the set-up; under CI it must be there) runs the Spark dialect of the query; the analysis equals
    DuckDB's to 1e-9."""
    _require_spark()
    spec = str(EXAMPLES / SPECS["spring"])
    code, output = _run(
        "simulate", spec, "--units", "4000", "--seed", "6", "--format", "csv", "-o", str(tmp_path)
    )
    assert code == 0, output
    folder = tmp_path / "data" / "spring"
    survey = folder / "survey.csv"  # a table without data.timestamp: every answer counts, on both engines
    pd.read_csv(survey).drop(columns=["ts"]).to_csv(survey, index=False)
    orders = pd.read_csv(folder / "orders.csv")  # two files, their columns in other orders: read by name
    (folder / "orders").mkdir()
    orders.iloc[: len(orders) // 2].to_csv(folder / "orders" / "part-0.csv", index=False)
    orders.iloc[len(orders) // 2 :][orders.columns[::-1]].to_csv(
        folder / "orders" / "part-1.csv", index=False
    )
    files = {"units": "customers"} | {
        name: name for name in ("assignments", "orders", "survey", "pre_orders")
    }
    data = [
        argument for name, file in files.items() for argument in ("--data", f"{name}={folder / file}.csv")
    ] + ["--data", f"orders={folder / 'orders'}"]
    runs = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.json"
        code, output = _run(
            "analyze",
            spec,
            *data,
            "--method",
            "frequentist",
            "--engine",
            engine,
            "--json",
            str(out),
        )
        assert code == 0, output
        runs[engine] = json.loads(out.read_text())
    _assert_same_analysis(runs["spark"], runs["duckdb"])
    out = tmp_path / "channel.json"
    customers = f"units=file://{simulated['channel'] / 'data' / 'channel' / 'customers.parquet'}"
    channel = ["analyze", str(EXAMPLES / SPECS["channel"]), "--data-dir", str(simulated["channel"])]
    channel += ["--data", customers]  # a URI, handed to Spark as written
    code, output = _run(*channel, "--method", "frequentist", "--engine", "spark", "--json", str(out))
    assert code == 0, output
    _assert_same_analysis(
        json.loads(out.read_text()), json.loads((simulated["channel"] / "expected.json").read_text())
    )


def _analyse_rows(
    spec: Path, rows: pd.DataFrame, tmp_path: Path, method: str = "frequentist"
) -> tuple[int, str]:
    stats = tmp_path / "stats.csv"
    rows.to_csv(stats, index=False)
    out = tmp_path / "found.json"
    return _run("analyze", str(spec), "--stats", str(stats), "--method", method, "--json", str(out))


def _assert_same_bayes(found: dict, expected: dict) -> None:
    """The posteriors of every metric and arm: closed forms to 1e-9; PyMC's hurdle model, sampled with
    the same seed from log-moments that agree to 1e-13, to 1e-6."""
    for result, reference in zip(found["results"], expected["results"], strict=True):
        posterior, wanted = result["bayes"], reference["bayes"]
        assert (posterior is None) == (wanted is None), result["metric"]
        if wanted is None:
            continue
        assert posterior["model"] == wanted["model"]
        rel = 1e-6 if "pymc" in wanted["model"] else 1e-9
        for key in ("prob_beat_control", "expected_loss", "control_mean", "variant_mean"):
            assert posterior[key] == pytest.approx(wanted[key], rel=rel, abs=1e-12), (result["metric"], key)


def test_the_bayesian_analysis_of_the_rows_and_on_spark(simulated: dict[str, Path], tmp_path: Path) -> None:
    """The query's log-moments feed the hurdle model: ``--method bayesian`` on its rows (DuckDB) and
    with ``--engine spark`` gives the posteriors of ``analyze``."""
    spec, folder = EXAMPLES / SPECS["coupon"], simulated["coupon"]
    expected = tmp_path / "bayes.json"
    code, output = _run(
        "analyze", str(spec), "--data-dir", str(folder), "--method", "bayesian", "--json", str(expected)
    )
    assert code == 0, output
    reference = json.loads(expected.read_text())
    rows = _duckdb(_query(SPECS["coupon"], "duckdb", tmp_path), _tables(folder))
    code, output = _analyse_rows(spec, rows, tmp_path, "bayesian")
    assert code == 0, output
    _assert_same_bayes(json.loads((tmp_path / "found.json").read_text()), reference)
    _require_spark()
    out = tmp_path / "spark.json"
    code, output = _run(
        "analyze", str(spec), "--data-dir", str(folder), "--method", "bayesian", "--engine", "spark",
        "--json", str(out),
    )  # fmt: skip
    assert code == 0, output
    _assert_same_bayes(json.loads(out.read_text()), reference)


def test_the_holdout_is_assigned_but_neither_analysed_nor_in_the_caps(
    simulated: dict[str, Path], tmp_path: Path
) -> None:
    """Spring with a 10% holdout and a percentile cap on revenue: held-out units with huge orders would
    move the cap and the arms if the query counted them; the route equals ``analyze`` on every engine."""
    raw = yaml.safe_load((EXAMPLES / SPECS["spring"]).read_text())
    raw["design"]["holdout"] = 0.1
    next(m for m in raw["metrics"] if m["id"] == "revenue")["capping"] = {"percentile": 0.99}
    spec = tmp_path / "spring-holdout.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    tables = _tables(simulated["spring"])
    assignments = pd.read_parquet(tables["assignments"])
    held = assignments["unit_id"].max() + 1 + pd.RangeIndex(600)
    orders = pd.read_parquet(tables["orders"])
    extra = orders.head(len(held)).assign(unit_id=held, amount=10_000.0)
    data = {
        **tables,
        "assignments": tmp_path / "assignments.parquet",
        "orders": tmp_path / "orders.parquet",
    }
    pd.concat([assignments, pd.DataFrame({"unit_id": held, "variant": "holdout"})]).to_parquet(
        data["assignments"]
    )
    pd.concat([orders, extra]).to_parquet(data["orders"])
    overrides = [argument for name, path in data.items() for argument in ("--data", f"{name}={path}")]
    expected = tmp_path / "expected.json"
    code, output = _run("analyze", str(spec), *overrides, "--method", "frequentist", "--json", str(expected))
    assert code == 0, output
    reference = json.loads(expected.read_text())
    assert reference["caps"]["revenue"] < 10_000  # the held-out orders are not in promolab's own cap
    for engine, run in ENGINES.items():
        code, output = _analyse_rows(spec, run(_query(spec, engine, tmp_path), data), tmp_path)
        assert code == 0, (engine, output)
        _assert_same_analysis(json.loads((tmp_path / "found.json").read_text()), reference)


def test_bad_assignments_and_units_stop_the_route_with_one_line(
    simulated: dict[str, Path], tmp_path: Path
) -> None:
    """Data the DuckDB engine refuses, run through the query: a unit with two variants (its rows would
    count in both arms), a units table that repeats an id (the join would count the unit twice)."""
    tables = _tables(simulated["spring"])
    assignments = pd.read_parquet(tables["assignments"])
    customers = pd.read_parquet(tables["units"])
    first = assignments.iloc[[0]]
    other = "bogo" if first["variant"].iloc[0] != "bogo" else "control"
    cases = {
        "assignments": (
            pd.concat([assignments, first.assign(variant=other), first]),
            "1 unit(s) assigned to two variants",
        ),
        "units": (pd.concat([customers, customers.iloc[[5, 9]]]), "the units table repeats 2 unit id(s)"),
    }
    query = _query(SPECS["spring"], "duckdb", tmp_path)
    for name, (frame, message) in cases.items():
        broken = tmp_path / f"{name}.parquet"
        frame.to_parquet(broken)
        code, output = _analyse_rows(
            EXAMPLES / SPECS["spring"], _duckdb(query, {**tables, name: broken}), tmp_path
        )
        assert code == 2, (name, output)
        assert message in output, (name, output)
        code, output = _run(
            "analyze", str(EXAMPLES / SPECS["spring"]), "--data-dir", str(simulated["spring"]),
            "--data", f"{name}={broken}", "--method", "frequentist",
        )  # fmt: skip
        assert code == 2, (name, "promolab's own engine refuses it too", output)


def test_what_the_query_cannot_translate_or_the_checks_refuse_stops_with_one_line(
    simulated: dict[str, Path], tmp_path: Path
) -> None:
    spring = str(EXAMPLES / SPECS["spring"])
    code, output = _run("sql", str(EXAMPLES / "hillstrom.yaml"), "--dialect", "postgres")
    assert code == 2
    assert "data.row_id: the warehouse query needs a unit id column" in output
    crowded = yaml.safe_load((EXAMPLES / SPECS["spring"]).read_text())
    crowded["analysis"]["covariates"] = ["pre_revenue", "recency_days", "frequency", "tenure"]
    (tmp_path / "crowded.yaml").write_text(yaml.safe_dump(crowded, sort_keys=False))
    code, output = _run("sql", str(tmp_path / "crowded.yaml"), "--dialect", "duckdb")
    assert code == 2
    assert "the warehouse query serves at most 3" in " ".join(output.split())
    code, output = _run("sql", str(tmp_path / "crowded.yaml"), "--dialect", "duckdb", "--no-cuped")
    assert code == 0, output  # without CUPED the covariates are not read
    code, output = _run("sql", spring, "--dialect", "duckdb", "--untimed", "orders")
    assert code == 2
    assert "only tables read by ordinal scores alone may lack it" in " ".join(output.split())
    own = yaml.safe_load((EXAMPLES / SPECS["spring"]).read_text())  # naming the simulated files
    files = {name: str(path) for name, path in _tables(simulated["spring"]).items()}
    events = {name: path for name, path in files.items() if name not in ("assignments", "units")}
    own["data"] |= {"assignments": files["assignments"], "units": files["units"], "tables": events}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(own, sort_keys=False))
    orders = _tables(simulated["spring"])["orders"]
    before = orders.read_bytes()
    code, output = _run("sql", str(tmp_path / "own.yaml"), "--dialect", "duckdb", "--out", str(orders))
    assert code == 2, output
    assert "promolab never overwrites its inputs" in " ".join(output.split())
    assert orders.read_bytes() == before
    code, output = _run("sql", spring, "--dialect", "oracle-9i")
    assert code == 2
    assert "--dialect: expected one of" in output
    code, output = _run("sql", spring, "--dialect", "duckdb", "--table", "clicks=x.y")
    assert code == 2
    assert "--table: expected NAME=TABLE" in output
    tables = _tables(simulated["spring"])
    rows = _duckdb(_query(SPECS["spring"], "duckdb", tmp_path), tables)
    cases = {
        "another spec's statistics": (rows.drop(columns=["mean:0"]), "lacks column(s) mean:0"),
        "a label that is no variant": (
            rows.assign(label=rows["label"].replace("bogo", "b0g0")),
            "label 'b0g0' is not a variant",
        ),
        "a unit with two variants": (
            rows.assign(**{"labelled units": rows["labelled units"] + 1}),
            "1 unit(s) assigned to two variants",
        ),
        "assignment rows without an id": (
            rows.assign(**{"no id": 2}),
            "2 assignment row(s) have no unit_id",
        ),
        "an unlabelled unit": (rows.assign(**{"no label": 1}), "1 unit(s) have no variant"),
        "an infinite pre-period amount": (
            rows.assign(**{"bad amounts:pre_orders": 1}),
            "1 row(s) of 'pre_orders' column 'amount' are missing or not finite",
        ),
        "missing revenue values": (
            rows.assign(**{"null:revenue": 3}),
            "metric 'revenue': 3 missing value(s)",
        ),
        "a NaN mean": (rows.assign(**{"mean:1": float("nan")}), "mean:1 missing or not finite"),
        "an empty count": (rows.assign(n=None), "column 'n' holds 'None', not a number of units"),
        "a statistic that is text": (
            rows.assign(**{"mean:1": "abc"}),
            "column 'mean:1' holds 'abc', not a number",
        ),
        "an arm without units": (rows[rows["label"] != "save10"], "no units of arm(s) save10"),
    }
    for case, (frame, message) in cases.items():
        stats = tmp_path / "stats.parquet"
        frame.to_parquet(stats)
        code, output = _run("analyze", spring, "--stats", str(stats), "--method", "frequentist")
        assert code == 2, (case, output)
        assert message in output, (case, output)
        assert "Traceback" not in output
    code, output = _run("analyze", spring, "--stats", str(tmp_path / "stats.parquet"), "--daily")
    assert code == 2
    assert "--daily cannot go with it" in output


# ---------------------------------------------------------------------- small data at the edges

SMALL = {
    "id": "edges",
    "name": "edges",
    "hypothesis": "h",
    "owner": "o",
    "unit": "customer",
    "start": "2026-03-01",
    "end": "2026-03-28",
    "variants": [
        {"id": "control", "kind": "control", "weight": 0.5},
        {"id": "treat", "kind": "discount", "mechanic": "percent_off", "value": 10, "weight": 0.5},
    ],
    "metrics": [{"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"}],
    "primary": "revenue",
    "design": {"mde": {"relative": 0.1}},
}


def _small_case(name: str) -> tuple[dict, dict[str, pd.DataFrame]]:
    """A spec and its frames, each at one edge the review of the query found (module docstring)."""
    import copy
    import datetime as dt

    import numpy as np

    spec = copy.deepcopy(SMALL)
    rng = np.random.default_rng(2)
    n = 48
    labels = ["control", "treat"]
    orders = pd.DataFrame({"unit_id": range(n), "amount": rng.gamma(2, 10, n)})
    frames: dict[str, pd.DataFrame] = {}
    if name == "cap between order statistics":  # h = 19 * 0.93 = 17.67: the cap interpolates
        n = 20
        orders = pd.DataFrame({"unit_id": range(n), "amount": [10.0 * i for i in range(n)]})
        spec["metrics"][0]["capping"] = {"percentile": 0.93}
    elif name == "rfm in sixths":  # n k / 6 whole for 24 units: DuckDB's quantile_disc was one off
        spec["analysis"] = {"segments": [{"rfm": {"source": "pre_orders", "bins": 6}}]}
        day = dt.date(2026, 3, 1)
        frames["pre_orders"] = pd.DataFrame(
            {
                "unit_id": range(24),
                "date": [day - dt.timedelta(days=i + 1) for i in range(24)],
                "amount": [10.0 * (i + 1) for i in range(24)],
            }
        )
    elif name == "two raw labels of one arm":
        spec["data"] = {"variant_values": {"c": "control", "c2": "control", "t": "treat"}}
        spec["analysis"] = {"segments": [{"column": "channel"}]}
        labels = ["c", "c2", "t", "t"]
        frames["units"] = pd.DataFrame({"unit_id": range(n), "channel": ["web", "app"] * (n // 2)})
    elif name == "text times with an offset":  # 02:00 at +05:00 on the start day is the day before in UTC
        spec["data"] = {"timestamp": "ts"}
        spec["post_days"] = 3
        days = ["2026-03-01T02:00:00+05:00", "2026-03-10T12:00:00+00:00", "2026-03-29T01:00:00-03:00"]
        orders = orders.assign(ts=(days * n)[:n])
    elif name == "a repeated units-file id no one is assigned":
        spec["analysis"] = {"covariates": ["pre"]}
        frames["units"] = pd.DataFrame({"unit_id": [*range(n), 999, 999], "pre": rng.gamma(2, 5, n + 2)})
    elif name == "a covariate far from zero":  # a signup year: sums about 0 would cancel
        spec["analysis"] = {"covariates": ["signup_year"]}
        year = rng.integers(2015, 2026, n).astype(float)
        frames["units"] = pd.DataFrame({"unit_id": range(n), "signup_year": year})
        orders = orders.assign(amount=50 + 2 * (year - 2020) + rng.normal(0, 5, n))
    elif name == "segment names that look like numbers":
        spec["analysis"] = {"segments": [{"column": "store"}]}
        frames["units"] = pd.DataFrame({"unit_id": range(n), "store": ["7", "7.0", "8"] * (n // 3)})
    frames["assignments"] = pd.DataFrame({"unit_id": range(n), "variant": (labels * n)[:n]})
    frames["orders"] = orders
    return spec, frames


def _write_small(spec: dict, frames: dict[str, pd.DataFrame], folder: Path) -> tuple[Path, dict[str, Path]]:
    """The frames as Parquet files (NaN kept apart from NULL) and a spec naming them."""
    import pyarrow.parquet as pq

    tables = {name: folder / f"{name}.parquet" for name in frames}
    for name, frame in frames.items():
        pq.write_table(arrow_keeping_nan(frame), tables[name])
    events = {name: str(path) for name, path in tables.items() if name not in ("assignments", "units")}
    data = dict(spec.get("data", {}), assignments=str(tables["assignments"]), tables=events)
    if "units" in tables:
        data["units"] = str(tables["units"])
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(dict(spec, data=data), sort_keys=False))
    return path, tables


@pytest.mark.parametrize(
    "case",
    [
        "cap between order statistics",
        "rfm in sixths",
        "two raw labels of one arm",
        "segment names that look like numbers",
        "text times with an offset",
        "a repeated units-file id no one is assigned",
        "a covariate far from zero",
    ],
)
def test_the_query_agrees_with_the_engine_at_the_edges(tmp_path: Path, case: str) -> None:
    spec, tables = _write_small(*_small_case(case), tmp_path)
    expected = tmp_path / "expected.json"
    code, output = _run("analyze", str(spec), "--method", "frequentist", "--json", str(expected))
    assert code == 0, output
    for engine, run in ENGINES.items():
        code, output = _analyse_rows(spec, run(_query(spec, engine, tmp_path), tables), tmp_path)
        assert code == 0, (engine, output)
        _assert_same_analysis(
            json.loads((tmp_path / "found.json").read_text()), json.loads(expected.read_text())
        )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("an infinite amount under a cap", "value(s) in 'amount' are not finite"),
        ("a NaN amount under a maximum", "value(s) in 'amount' are not finite"),
        ("a missing units-file value", "metric 'ltv': 1 missing value(s) in 'ltv'"),
        ("survey answers off the levels that average to one", "impossible value(s) in 'score'"),
    ],
)
def test_values_the_engine_refuses_stop_the_route_too(tmp_path: Path, case: str, message: str) -> None:
    """A cap or a maximum would hide a NaN or an infinity (``LEAST(inf, cap)`` is the cap); a units-file
    metric's missing value under ``missing: error`` would count as 0."""
    spec, frames = _small_case("plain")
    amounts = frames["orders"]["amount"].to_numpy().copy()
    if case.startswith("an infinite"):
        spec["metrics"][0]["capping"] = {"absolute": 150.0}
        amounts[3] = float("inf")
    elif case.startswith("a NaN"):
        spec["metrics"][0]["agg"] = "max"
        amounts[5] = float("nan")
    elif case.startswith("survey"):  # a unit answering 1 and 9 averages to a level, 5
        spec["metrics"].append(
            {"id": "sat", "kind": "ordinal", "source": "survey", "column": "score", "levels": [1, 2, 3, 4, 5]}
        )
        frames["survey"] = pd.DataFrame({"unit_id": [0, 0, 1, 2], "score": [1, 9, 4, 5]})
    else:
        spec["metrics"].append({"id": "ltv", "kind": "continuous", "source": "units", "column": "ltv"})
        frames["units"] = pd.DataFrame(
            {
                "unit_id": range(48),
                "ltv": pd.Series([None if i == 3 else 1.0 for i in range(48)], dtype=object),
            }
        )
    frames["orders"] = frames["orders"].assign(amount=amounts)
    path, tables = _write_small(spec, frames, tmp_path)
    code, output = _run("analyze", str(path), "--method", "frequentist")
    assert code == 2, output
    for engine, run in ENGINES.items():
        code, output = _analyse_rows(path, run(_query(path, engine, tmp_path), tables), tmp_path)
        assert code == 2, (engine, output)
        if engine == "sqlite" and case.startswith("a NaN"):  # SQLite stores a NaN as NULL
            message = "1 missing value(s) in 'amount'"
        assert message in " ".join(output.split()), (engine, output)
