"""``promolab assign``: the spec's method, reproducibility, balance report and clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from promolab.cli import app
from promolab.design.assignment import assign_units
from promolab.spec import load_spec

from .conftest import EXAMPLES

runner = CliRunner()
SPRING = EXAMPLES / "spring-discount.yaml"


@pytest.fixture(scope="module")
def spring_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spring")
    result = runner.invoke(app, ["simulate", str(SPRING), "--units", "4000", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def _write_spec(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_assign_from_the_spec_units_file_matches_the_documented_hash(spring_dir, tmp_path):
    out = tmp_path / "assignment.parquet"
    report = tmp_path / "balance.json"
    args = ["assign", str(SPRING), "--data-dir", str(spring_dir), "--out", str(out), "--json", str(report)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    units = pd.read_parquet(spring_dir / "data/spring/customers.parquet")
    assert table["unit_id"].tolist() == units["unit_id"].tolist()
    spec = load_spec(SPRING)
    expected = assign_units(units["unit_id"], [(v.id, v.weight) for v in spec.variants], spec.id).table
    assert table["variant"].astype(str).tolist() == expected["variant"].astype(str).tolist()
    payload = json.loads(report.read_text())
    assert payload["salt"] == spec.id
    assert payload["method"] == "hash"
    assert sum(arm["units"] for arm in payload["arms"]) == len(units)
    assert {row["covariate"] for row in payload["smd"]} == {"pre_revenue"}
    assert "SRM chi2" in result.stdout


def test_assign_is_reproducible_and_writes_csv(spring_dir, tmp_path):
    units = spring_dir / "data/spring/customers.parquet"
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (first, second):
        result = runner.invoke(app, ["assign", str(SPRING), "--units", str(units), "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()
    assert list(pd.read_csv(first).columns) == ["unit_id", "variant", "bucket"]


def test_assign_clusters_with_strata_and_holdout(tmp_path):
    text = (EXAMPLES / "spring-discount.yaml").read_text()
    spec = _write_spec(
        tmp_path,
        text.replace(
            "  daily_units: 20000\n", "  daily_units: 20000\n  cluster: {column: store}\n  strata: [region]\n"
        ),
    )
    stores = pd.DataFrame({"store": range(80), "region": [i % 4 for i in range(80)]})
    units = stores.loc[stores.index.repeat(25)].reset_index(drop=True)
    units.insert(0, "unit_id", range(1, len(units) + 1))
    units["pre_revenue"] = units["store"] * 1.0
    units_file = tmp_path / "units.parquet"
    units.to_parquet(units_file)
    out = tmp_path / "out.parquet"
    report = tmp_path / "balance.json"
    args = ["assign", str(spec), "--units", str(units_file), "--out", str(out), "--json", str(report)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out).assign(store=units["store"], region=units["region"])
    assert (table.groupby("store")["variant"].nunique() == 1).all()
    per_region = table.drop_duplicates("store").groupby(["region", "variant"], observed=True).size()
    assert per_region.between(5, 5).all()  # 20 stores per region dealt exactly 5 to each of 4 arms
    payload = json.loads(report.read_text())
    assert payload["method"] == "cluster-stratified"
    assert payload["srm"]["n"] == 80  # clusters, not units, are the SRM's draws


def test_assign_rerandomised_records_the_chosen_salt(spring_dir, tmp_path):
    text = SPRING.read_text().replace("  daily_units: 20000\n", "  daily_units: 20000\n  rerandomise: 20\n")
    spec = _write_spec(tmp_path, text)
    units = pd.read_parquet(spring_dir / "data/spring/customers.parquet").head(200)
    units_file = tmp_path / "units.csv"
    units.to_csv(units_file, index=False)
    out, report = tmp_path / "out.parquet", tmp_path / "balance.json"
    args = ["assign", str(spec), "--units", str(units_file), "--out", str(out), "--json", str(report)]
    assert runner.invoke(app, args).exit_code == 0
    payload = json.loads(report.read_text())
    assert payload["method"] == "rerandomised-hash"
    salt = payload["salt"]
    assert salt.startswith("spring-discount-2026:")
    spec_obj = load_spec(spec)
    again = assign_units(units["unit_id"], [(v.id, v.weight) for v in spec_obj.variants], salt).table
    assert pd.read_parquet(out)["variant"].astype(str).tolist() == again["variant"].astype(str).tolist()


def test_assign_row_id_spec_numbers_rows(tmp_path):
    spec = EXAMPLES / "hillstrom.yaml"
    rows = pd.DataFrame(
        {
            "recency": [1, 2, 3, 4] * 10,
            "history": range(40),
            "mens": [0, 1] * 20,
            "womens": [1, 0] * 20,
            "newbie": [0, 0, 1, 1] * 10,
            "segment": ["No E-Mail"] * 40,
        }
    )
    units_file = tmp_path / "hill.csv"
    rows.to_csv(units_file, index=False)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["assign", str(spec), "--data", f"units={units_file}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["unit_id"].tolist() == list(range(1, 41))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--units", "missing.parquet"], "missing.parquet: units file not found"),
        (["--data", "nonsense"], "--data: expected NAME=PATH"),
        (["--data", "stock=x.csv"], "'stock' is not a data file of spring-discount-2026"),
    ],
)
def test_assign_bad_inputs_exit_2_without_traceback(spring_dir, tmp_path, extra, message):
    args = [
        "assign",
        str(SPRING),
        "--data-dir",
        str(spring_dir),
        "--out",
        str(tmp_path / "o.parquet"),
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_assign_missing_id_column_and_repeated_ids(tmp_path):
    units_file = tmp_path / "units.csv"
    pd.DataFrame({"customer": [1, 2]}).to_csv(units_file, index=False)
    result = runner.invoke(
        app, ["assign", str(SPRING), "--units", str(units_file), "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2
    assert "lacks column(s) 'unit_id'; it has 'customer'" in result.stderr
    pd.DataFrame({"unit_id": [1, 2, 2]}).to_csv(units_file, index=False)
    result = runner.invoke(
        app, ["assign", str(SPRING), "--units", str(units_file), "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2
    assert "appear more than once" in result.stderr
    assert not (tmp_path / "o.csv").exists()


def test_assign_never_overwrites_its_input(spring_dir):
    units = spring_dir / "data/spring/customers.parquet"
    before = units.read_bytes()
    result = runner.invoke(app, ["assign", str(SPRING), "--units", str(units), "--out", str(units)])
    assert result.exit_code == 2
    assert "never overwrites its input" in result.stderr
    assert units.read_bytes() == before


def test_assign_weight_too_small_for_a_bucket(tmp_path, spring_dir):
    text = (
        SPRING.read_text()
        .replace("weight: 0.25}", "weight: 0.33333}", 3)
        .replace("mechanic: bogo, weight: 0.25", "mechanic: bogo, weight: 0.00001")
    )
    spec = _write_spec(tmp_path, text)
    units = spring_dir / "data/spring/customers.parquet"
    result = runner.invoke(
        app, ["assign", str(spec), "--units", str(units), "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2, result.output
    assert "get no bucket" in result.stderr
