"""Inputs beyond one file (:func:`promolab.sources.input_files`): a folder of Parquet files with Hive
partitions, a glob pattern over CSV files, gzip and zstd compressed CSV, and URIs handed to the engine
(``file://`` here; ``s3://`` needs DuckDB's httpfs) all give the single file's analysis exactly;
patterns that match nothing, folders without data, mixed kinds and empty files are refused with the
file named."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import promolab
from promolab.cli import app

from .conftest import EXAMPLES

SPEC = EXAMPLES / "channel.yaml"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    result = CliRunner().invoke(
        app, ["simulate", str(SPEC), "--units", "4000", "--seed", "3", "-o", str(folder)]
    )
    assert result.exit_code == 0, result.output
    return folder


def _orders(simulated: Path) -> Path:
    return simulated / "data" / "channel" / "orders.parquet"


def _analysis(simulated: Path, orders: str, out: Path) -> tuple[int, str, dict]:
    args = [
        "analyze",
        str(SPEC),
        "--data-dir",
        str(simulated),
        "--data",
        f"orders={orders}",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output, json.loads(out.read_text()) if result.exit_code == 0 else {}


def _write(orders: Path, target: Path, query: str, options: str) -> None:
    with duckdb.connect() as con:
        con.execute(f"COPY ({query.format(orders=orders)}) TO '{target}' ({options})")


def _assert_same_results(found: dict, expected: dict) -> None:
    for result, reference in zip(found["results"], expected["results"], strict=True):
        assert result["metric"] == reference["metric"]
        assert result["variant"] == reference["variant"]
        for key in ("abs_diff", "se", "p_value", "control_mean", "variant_mean"):
            assert result[key] == pytest.approx(reference[key], rel=1e-12, abs=1e-15), (result["metric"], key)


@pytest.mark.parametrize(
    ("layout", "given"),
    [
        ("hive-partitioned Parquet folder", "hive"),
        ("gzip CSV", "orders.csv.gz"),
        ("zstd CSV", "orders.csv.zst"),
        ("glob over two CSV files", "split/orders-*.csv"),
    ],
)
def test_other_layouts_give_the_single_files_analysis(
    simulated: Path, tmp_path: Path, layout: str, given: str
) -> None:
    rows = "SELECT * FROM read_parquet('{orders}')"
    orders = _orders(simulated)
    if layout.startswith("hive"):
        _write(orders, tmp_path / "hive", "SELECT *, CAST(ts AS DATE) AS day FROM read_parquet('{orders}')",
               "FORMAT parquet, PARTITION_BY (day)")  # fmt: skip
        (tmp_path / "hive" / "_SUCCESS").write_text("")  # Spark's marker is not data
    elif layout.startswith("glob"):
        (tmp_path / "split").mkdir()
        _write(
            orders, tmp_path / "split" / "orders-a.csv", rows + " WHERE unit_id % 2 = 0", "FORMAT csv, HEADER"
        )
        _write(
            orders, tmp_path / "split" / "orders-b.csv", rows + " WHERE unit_id % 2 = 1", "FORMAT csv, HEADER"
        )
    else:
        compression = "gzip" if given.endswith(".gz") else "zstd"
        _write(orders, tmp_path / given, rows, f"FORMAT csv, HEADER, COMPRESSION {compression}")
    code, output, found = _analysis(simulated, str(tmp_path / given), tmp_path / "found.json")
    assert code == 0, output
    _, _, expected = _analysis(simulated, str(orders), tmp_path / "expected.json")
    _assert_same_results(found, expected)


@pytest.mark.parametrize("given", ["file://{folder}/orders-a.parquet", "file://{folder}/orders-*.parquet"])
def test_uris_are_handed_to_the_engine(simulated: Path, tmp_path: Path, given: str) -> None:
    """A URI is read by DuckDB as written (a pattern listed by DuckDB's glob); one file of two, or both."""
    rows = "SELECT * FROM read_parquet('{orders}')"
    orders = _orders(simulated)
    _write(orders, tmp_path / "orders-a.parquet", rows + " WHERE unit_id % 2 = 0", "FORMAT parquet")
    _write(orders, tmp_path / "orders-b.parquet", rows + " WHERE unit_id % 2 = 1", "FORMAT parquet")
    code, output, found = _analysis(simulated, given.format(folder=tmp_path), tmp_path / "found.json")
    assert code == 0, output
    local = tmp_path / ("orders-a.parquet" if "*" not in given else "orders-*.parquet")
    _, _, expected = _analysis(simulated, str(local), tmp_path / "expected.json")
    _assert_same_results(found, expected)
    uri = given.format(folder=tmp_path)
    notebook = promolab.analyze(str(SPEC), data={"orders": uri}, data_dir=simulated, method="frequentist")
    assert notebook.analysis.results[0].p_value == pytest.approx(found["results"][0]["p_value"], rel=1e-12)
    target = tmp_path / "orders-a.parquet"  # the input itself, or a file the pattern matches
    code, output, _ = _analysis(simulated, uri, target)
    assert code == 2, output
    assert "promolab never overwrites its inputs" in " ".join(output.split())


def test_remote_inputs_the_engine_cannot_read_stop_with_one_line(simulated: Path, tmp_path: Path) -> None:
    """Without DuckDB's httpfs extension (no internet here), or with a bucket that does not exist, an
    ``s3://`` input is one error line naming it; a URI without a table suffix, a pattern matching
    nothing, and commands that read one local file say what they expect."""
    cases = {
        "s3://promolab-no-such-bucket/o/*.parquet": "s3://promolab-no-such-bucket/o/*.parquet: cannot",
        "https://example.invalid/orders.parquet": "https://example.invalid/orders.parquet: cannot read",
        "s3://bucket/orders/": "a remote orders input must end with .parquet",
        f"file://{tmp_path}/none-*.parquet": "the orders pattern matches no file",
    }
    for given, message in cases.items():
        code, output, _ = _analysis(simulated, given, tmp_path / "found.json")
        assert code == 2, (given, output)
        assert message in " ".join(output.split()), (given, output)
        assert "Traceback" not in output
    result = CliRunner().invoke(
        app,
        [
            "assign",
            str(SPEC),
            "--data",
            "units=s3://bucket/customers.parquet",
            "--out",
            str(tmp_path / "a.csv"),
        ],
    )
    assert result.exit_code == 2
    assert "the units file must be a local file here" in result.output


def test_inputs_that_cannot_be_read_as_one_table_are_refused(simulated: Path, tmp_path: Path) -> None:
    orders = _orders(simulated)
    (tmp_path / "empty-folder").mkdir()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write(orders, mixed / "a.parquet", "SELECT * FROM read_parquet('{orders}')", "FORMAT parquet")
    _write(orders, mixed / "b.csv", "SELECT * FROM read_parquet('{orders}')", "FORMAT csv, HEADER")
    with_empty = tmp_path / "with-empty"
    with_empty.mkdir()
    _write(orders, with_empty / "a.parquet", "SELECT * FROM read_parquet('{orders}')", "FORMAT parquet")
    (with_empty / "b.parquet").write_bytes(b"")
    cases = {
        str(tmp_path / "nothing-*.csv"): "pattern matches no file",
        str(tmp_path / "empty-folder"): "folder holds no .parquet or .csv file",
        str(mixed): "mix Parquet and CSV",
        str(with_empty): "b.parquet: the orders file is empty (0 bytes)",
    }
    for given, message in cases.items():
        code, output, _ = _analysis(simulated, given, tmp_path / "out.json")
        assert code == 2, (given, output)
        assert message in output, (given, output)
        assert "Traceback" not in output


def test_a_file_is_read_once_and_spark_scratch_folders_not_at_all(simulated: Path, tmp_path: Path) -> None:
    """A link to a file already in the folder, a link to the folder itself (a loop), Spark's unfinished
    ``_temporary/`` output and notebook checkpoints: the folder still reads as the single file."""
    orders = _orders(simulated)
    folder = tmp_path / "orders"
    for sub in ("", "_temporary/0/task_1", ".ipynb_checkpoints"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        _write(
            orders,
            folder / sub / "part-0.parquet",
            "SELECT * FROM read_parquet('{orders}')",
            "FORMAT parquet",
        )
    (folder / "latest.parquet").symlink_to(folder / "part-0.parquet")
    (folder / "loop").symlink_to(folder)
    code, output, found = _analysis(simulated, str(folder), tmp_path / "found.json")
    assert code == 0, output
    code, output, pattern = _analysis(simulated, str(folder / "**" / "*.parquet"), tmp_path / "pattern.json")
    assert code == 0, output
    _, _, expected = _analysis(simulated, str(orders), tmp_path / "expected.json")
    for got in (found, pattern):
        assert [r["abs_diff"] for r in got["results"]] == pytest.approx(
            [r["abs_diff"] for r in expected["results"]], rel=1e-12
        )


def test_files_that_disagree_on_their_columns_are_refused_not_filled_with_nulls(
    simulated: Path, tmp_path: Path
) -> None:
    orders = _orders(simulated)
    rows = "SELECT * FROM read_parquet('{orders}')"
    cases = {
        "renamed-id": (
            "SELECT * RENAME (unit_id AS customer_id) FROM read_parquet('{orders}')",
            "lacks 'unit_id'",
        ),
        "no-amount": ("SELECT * EXCLUDE (amount) FROM read_parquet('{orders}')", "lacks 'amount'"),
        "repeated": ("SELECT *, amount * 0 AS amount FROM read_parquet('{orders}')", "repeated"),
    }
    for case, (query, message) in cases.items():
        folder = tmp_path / case
        folder.mkdir()
        _write(orders, folder / "a.csv", rows, "FORMAT csv, HEADER")
        _write(orders, folder / "b.csv", query, "FORMAT csv, HEADER")
        code, output, _ = _analysis(simulated, str(folder), tmp_path / "out.json")
        assert code == 2, (case, output)
        assert "b.csv" in output, (case, output)
        assert message in output, (case, output)


def test_paths_with_pattern_characters_and_partitions_that_clash(simulated: Path, tmp_path: Path) -> None:
    """A folder named with brackets is a path, not a pattern; a partition key that repeats a column of
    the files is refused; an output inside an input folder is refused before anything is written."""
    orders = _orders(simulated)
    bracketed = tmp_path / "run [final]"
    bracketed.mkdir()
    _write(orders, bracketed / "orders.parquet", "SELECT * FROM read_parquet('{orders}')", "FORMAT parquet")
    code, output, _ = _analysis(simulated, str(bracketed / "orders.parquet"), tmp_path / "a.json")
    assert code == 0, output
    code, output, _ = _analysis(simulated, str(bracketed / "*.parquet"), tmp_path / "b.json")
    assert code == 0, output
    clash = tmp_path / "clash"
    _write(
        orders,
        clash,
        "SELECT *, CAST(ts AS DATE) AS day FROM read_parquet('{orders}')",
        "FORMAT parquet, PARTITION_BY (day), WRITE_PARTITION_COLUMNS true",
    )
    code, output, _ = _analysis(simulated, str(clash), tmp_path / "c.json")
    assert code == 2
    assert "repeat the files' column 'day'" in output
    hive = tmp_path / "hive"
    _write(
        orders,
        hive,
        "SELECT *, CAST(ts AS DATE) AS day FROM read_parquet('{orders}')",
        "FORMAT parquet, PARTITION_BY (day)",
    )
    before = sorted(p.name for p in hive.rglob("*"))
    code, output, _ = _analysis(simulated, str(hive), hive / "analysis.json")
    assert code == 2
    assert "is in the input" in output
    assert sorted(p.name for p in hive.rglob("*")) == before
