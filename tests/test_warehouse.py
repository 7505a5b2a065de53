"""The warehouse route (:mod:`promolab.aggregate.portable`): ``promolab sql SPEC --dialect D`` gives one
query; run by DuckDB, SQLite and Spark on the same data, its rows analysed by ``promolab analyze --stats``
give ``promolab analyze``'s results to 1e-9 (every metric kind, CUPED, guardrails); what the query cannot
translate, and statistics that the checks refuse, stop with one line."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from promolab.cli import app

from .conftest import EXAMPLES, data_required

SPECS = {"spring": "spring-discount.yaml", "coupon": "coupon-email.yaml"}
FILES = {
    "assignments": "assignments",
    "units": "customers",
    "orders": "orders",
    "survey": "survey",
    "unsubscribes": "unsubscribes",
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


def _query(spec: str, dialect: str, tmp_path: Path) -> str:
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


def test_the_spark_engine_gives_the_duckdb_engines_analysis(tmp_path: Path) -> None:
    """``analyze --engine spark`` on CSV inputs: Spark (local mode, PySpark installed by the set-up; under
    CI it must be there) runs the Spark dialect of the query; the analysis equals DuckDB's to 1e-9."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if data_required():
            pytest.fail("PySpark is not installed: `make` installs the '.[test,spark]' extras")
        pytest.skip("PySpark is not installed (`make` installs it)")
    spec = str(EXAMPLES / SPECS["spring"])
    code, output = _run(
        "simulate", spec, "--units", "4000", "--seed", "6", "--format", "csv", "-o", str(tmp_path)
    )
    assert code == 0, output
    folder = tmp_path / "data" / "spring"
    files = {"units": "customers"} | {
        name: name for name in ("assignments", "orders", "survey", "pre_orders")
    }
    data = [
        argument for name, file in files.items() for argument in ("--data", f"{name}={folder / file}.csv")
    ]
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


def test_what_the_query_cannot_translate_or_the_checks_refuse_stops_with_one_line(
    simulated: dict[str, Path], tmp_path: Path
) -> None:
    spring = str(EXAMPLES / SPECS["spring"])
    code, output = _run("sql", str(EXAMPLES / "channel.yaml"), "--dialect", "postgres")
    assert code == 2
    assert "metrics[1].capping.percentile: a percentile cap has no portable SQL" in output
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
        "a unit assigned twice": (rows.assign(n=rows["n"] + 1), "1 unit(s) assigned more than once"),
        "missing revenue values": (
            rows.assign(**{"null:revenue": 3}),
            "metric 'revenue': 3 missing value(s)",
        ),
        "a NaN mean": (rows.assign(**{"mean:1": float("nan")}), "mean:1 missing or not finite"),
        "an arm without units": (rows[rows["label"] != "save10"], "no units of arm(s) save10"),
    }
    for case, (frame, message) in cases.items():
        stats = tmp_path / "stats.parquet"
        frame.to_parquet(stats)
        code, output = _run("analyze", spring, "--stats", str(stats), "--method", "frequentist")
        assert code == 2, (case, output)
        assert message in output, (case, output)
        assert "Traceback" not in output
    code, output = _run("analyze", spring, "--stats", str(tmp_path / "stats.parquet"), "--method", "bayesian")
    assert code == 2
    assert "frequentist" in output
    code, output = _run("analyze", spring, "--stats", str(tmp_path / "stats.parquet"), "--daily")
    assert code == 2
    assert "--daily cannot go with it" in output
