"""The CLI through its real entry point: exit codes, stdout/stderr split, no tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
from typer.testing import CliRunner

from promolab import __version__
from promolab.cli import app

from .conftest import EXAMPLES

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"promolab {__version__}"


def test_validate_every_example_folder():
    result = runner.invoke(app, ["validate", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok ") == len(list(EXAMPLES.glob("*.yaml")))


def test_validate_reports_every_problem_on_stderr_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (EXAMPLES / "spring-discount.yaml").read_text()
    bad.write_text(text.replace("value: 15,", "value: 150,").replace("primary: revenue", "primry: revenue"))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert any("variants[1].value: percent_off must be in (0, 100), got 150" in line for line in lines)
    assert any("primry: unknown key 'primry' (did you mean 'primary'?)" in line for line in lines)
    assert all(line.startswith(f"error: {bad}:") for line in lines)
    assert "Traceback" not in result.output


def test_validate_rejects_two_specs_with_one_id(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        shutil.copy(EXAMPLES / "spring-discount.yaml", tmp_path / name)
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "id: 'spring-discount-2026' is also the id of" in result.stderr


def test_validate_missing_file_and_empty_folder(tmp_path):
    missing = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "nope.yaml: cannot read the file" in missing.stderr
    empty = runner.invoke(app, ["validate", str(tmp_path)])
    assert empty.exit_code == 2
    assert "no spec files" in empty.stderr


def test_schema_is_json_schema_with_every_variant_kind():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"PercentOff", "Bogo", "ChannelVariant", "OrdinalMetric"} <= set(schema["$defs"])
    assert schema["additionalProperties"] is False


def test_simulate_writes_the_spec_tables(tmp_path):
    spec = EXAMPLES / "spring-discount.yaml"
    result = runner.invoke(
        app, ["simulate", str(spec), "--units", "3000", "--seed", "5", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    orders = pd.read_parquet(tmp_path / "data/spring/orders.parquet")
    assert {"unit_id", "amount", "discount", "redeemed", "quantity", "ts"} <= set(orders.columns)
    again = tmp_path / "again"
    runner.invoke(app, ["simulate", str(spec), "--units", "3000", "--seed", "5", "--out", str(again)])
    pd.testing.assert_frame_equal(orders, pd.read_parquet(again / "data/spring/orders.parquet"))


def test_simulate_csv_on_request(tmp_path):
    spec = EXAMPLES / "channel.yaml"
    result = runner.invoke(
        app, ["simulate", str(spec), "--units", "500", "--out", str(tmp_path), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data/channel/orders.csv").exists()
    assert not list(tmp_path.rglob("*.parquet"))


def test_usage_error_exits_2():
    result = runner.invoke(app, ["simulate", str(EXAMPLES / "channel.yaml"), "--units", "-3", "--out", "x"])
    assert result.exit_code == 2


def test_console_script_runs_outside_the_test_process(tmp_path):
    exe = shutil.which("promolab") or str(__import__("pathlib").Path(sys.executable).with_name("promolab"))
    done = subprocess.run(
        [exe, "validate", str(tmp_path / "x.yaml")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "cannot read the file" in done.stderr
