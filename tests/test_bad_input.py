"""Malformed specs, data and command lines: every one stops with exit 2 and one clear line.

Each case builds its inputs in ``in/`` (a small simulated experiment, then one defect), runs the real
CLI entry point, and asserts the product rule for bad input:

- exit code 2, no traceback (no exception other than ``SystemExit`` escapes);
- exactly one line on stderr, ``error: ...``, naming the culprit (file, field or column, option);
- no output file written (``out/`` stays empty);
- every input file byte-identical afterwards.

The cases cover the trust issue's list (non-finite values, ids that do not join, outputs over inputs,
unreadable files, spec limits, degenerate arms) and more; ``test_internal_names_*`` checks the other
side: names that used to collide with internal columns now give the right numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from promolab.cli import app
from promolab.simulate import simulate, write_simulated
from promolab.spec import spec_from_dict

from .conftest import arrow_keeping_nan

runner = CliRunner()

BASE = {
    "id": "bad-input",
    "name": "Bad input",
    "unit": "customer",
    "start": "2026-03-01",
    "end": "2026-03-28",
    "variants": [
        {"id": "control", "kind": "control", "weight": 0.5},
        {"id": "pct10", "kind": "discount", "mechanic": "percent_off", "value": 10, "weight": 0.5},
    ],
    "metrics": [
        {"id": "conversion", "kind": "binary", "source": "orders"},
        {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
        {"id": "items", "kind": "count", "source": "orders", "column": "quantity"},
        {"id": "redeemed", "kind": "binary", "source": "orders", "column": "redeemed"},
        {
            "id": "satisfaction",
            "kind": "ordinal",
            "source": "survey",
            "column": "score",
            "levels": [1, 2, 3, 4, 5],
        },
    ],
    "primary": "revenue",
    "economics": {"unit_price": 40, "unit_cost": 22},
    "design": {"mde": {"relative": 0.1}, "baseline": {"revenue": {"mean": 4.0, "sd": 15.0}}},
    "analysis": {"covariates": ["pre_revenue"]},
    "data": {
        "timestamp": "ts",
        "assignments": "assignments.parquet",
        "units": "units.parquet",
        "tables": {"orders": "orders.parquet", "survey": "survey.parquet"},
    },
    "simulation": {"purchase_prob": 0.3, "survey_rate": 0.5},
}


@pytest.fixture(scope="module")
def base_data(tmp_path_factory) -> Path:
    """The base experiment's data files (600 units), written once for the module."""
    folder = tmp_path_factory.mktemp("base")
    spec = spec_from_dict(BASE)
    write_simulated(simulate(spec, units=600, seed=7), spec, folder)
    return folder


@dataclass
class Work:
    """One case's folders: ``inp`` (the inputs) and ``out`` (where outputs are asked for)."""

    inp: Path
    out: Path

    @property
    def spec(self) -> Path:
        return self.inp / "spec.yaml"

    def write_spec(self, raw: dict[str, Any] | None = None, text: str | None = None) -> Path:
        self.spec.write_text(text if text is not None else yaml.safe_dump(raw or BASE, sort_keys=False))
        return self.spec

    def changed_spec(self, change: Callable[[dict[str, Any]], object]) -> Path:
        raw = json.loads(json.dumps(BASE))
        change(raw)
        return self.write_spec(raw)

    def frame(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.inp / f"{name}.parquet")

    def put(self, name: str, frame: pd.DataFrame, fmt: str = "parquet") -> Path:
        """Replace a data file; as CSV, the spec is pointed at ``<name>.csv``."""
        (self.inp / f"{name}.parquet").unlink(missing_ok=True)
        path = self.inp / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
            raw = yaml.safe_load(self.spec.read_text())
            if name in ("assignments", "units"):
                raw["data"][name] = path.name
            else:
                raw["data"]["tables"][name] = path.name
            self.write_spec(raw)
        else:
            pq.write_table(arrow_keeping_nan(frame), path)
        return path

    def analyze(self, *extra: str) -> list[str]:
        return ["analyze", str(self.spec), "--json", str(self.out / "analysis.json"), *extra]

    def results(self) -> Path:
        """A valid saved analysis of the base data (made with the Python API)."""
        from promolab.analyze import analyze_spec
        from promolab.io import json_text
        from promolab.spec import load_spec

        path = self.inp / "results.json"
        path.write_text(json_text(analyze_spec(load_spec(self.spec)).to_dict()))
        return path


CASES: dict[str, tuple[Callable[[Work], list[str]], tuple[str, ...]]] = {}


def case(name: str, *culprit: str) -> Callable[[Callable[[Work], list[str]]], Callable[[Work], list[str]]]:
    """Register a case: it builds its inputs and returns the command line; ``culprit`` are the
    fragments the error line must contain."""

    def register(build: Callable[[Work], list[str]]) -> Callable[[Work], list[str]]:
        assert name not in CASES, name
        CASES[name] = (build, culprit)
        return build

    return register


def _spec_case(
    name: str, change: Callable[[dict[str, Any]], object], *culprit: str, command: str = "validate"
):
    def build(w: Work) -> list[str]:
        w.changed_spec(change)
        if command == "design":
            return ["design", str(w.spec), "--json", str(w.out / "plan.json")]
        if command == "simulate":
            return ["simulate", str(w.spec), "--out", str(w.out / "sim"), "--units", "500"]
        return [command, str(w.spec)]

    case(name, "spec.yaml", *culprit)(build)


def _text_case(name: str, text: Callable[[str], str], *culprit: str, suffix: str = "yaml"):
    def build(w: Work) -> list[str]:
        path = w.inp / f"spec.{suffix}"
        base = yaml.safe_dump(BASE, sort_keys=False)
        path.write_bytes(text(base).encode("utf-8", "surrogateescape"))
        return ["validate", str(path)]

    case(name, f"spec.{suffix}", *culprit)(build)


def _data_case(name: str, change: Callable[[Work], object], *culprit: str, extra: tuple[str, ...] = ()):
    def build(w: Work) -> list[str]:
        change(w)
        return w.analyze(*extra)

    case(name, *culprit)(build)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[int(last) if last.isdigit() else last] = value

    return change


def _cells(table: str, column: str, value: object, rows: int = 3) -> Callable[[Work], None]:
    """Put ``value`` into the first ``rows`` rows of a column (Parquet keeps NaN, inf and NULL apart)."""

    def change(w: Work) -> None:
        frame = w.frame(table)
        series = frame[column]
        if value is None:  # a nullable column, so that the value is NULL, not NaN
            nullable = {"b": "boolean", "i": "Int64", "f": "Float64"}.get(series.dtype.kind, "object")
            frame[column] = series.astype(nullable)
            frame.loc[frame.index[:rows], column] = pd.NA
        else:
            if series.dtype == bool or (series.dtype.kind == "i" and isinstance(value, float)):
                frame[column] = series.astype(float if isinstance(value, float) else np.int64)
            frame.loc[frame.index[:rows], column] = value
        w.put(table, frame)

    return change


# ---------------------------------------------------------------------- malformed specs

_text_case("yaml-syntax", lambda t: t + "variants: [\n", "invalid YAML")
_text_case(
    "yaml-deep-nesting", lambda t: t + "tags: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested more than"
)
_text_case(
    "toml-deep-nesting",
    lambda t: 'id = "x"\ntags = ' + "[" * 20_000 + "]" * 20_000 + "\n",
    "nested",
    suffix="toml",
)
_text_case("nul-byte", lambda t: t.replace("Bad input", "Bad\x00input"), "NUL byte")
_text_case("impossible-date", lambda t: t.replace("2026-03-28", "2026-02-30"), "end", "date")
_text_case(
    "billion-laughs",
    lambda t: (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n"
            for a, b in zip("abcdefgh", "bcdefghi", strict=False)
        )
        + t
    ),
    "aliases",
)
_text_case("too-large", lambda t: t + "#" + "x" * (1 << 20) + "\n", "bytes")
_text_case("not-utf8-spec", lambda t: t.replace("Bad input", "Bad \udce9"), "UTF-8")
_spec_case("unknown-key", _set("primry", "revenue"), "primry", "did you mean 'primary'")
_spec_case("percent-off-150", _set("variants.1.value", 150), "variants[1].value", "(0, 100)")
_spec_case(
    "inf-guardrail-margin",
    lambda r: r.update(guardrails=[{"metric": "items", "max_absolute_drop": float("inf")}]),
    "max_absolute_drop",
)
_spec_case("nan-mde", _set("design.mde", {"relative": float("nan")}), "design.mde.relative")
_spec_case(
    "inf-lift-prior",
    _set("analysis.bayes", {"priors": {"conversion": {"lift": {"mean": float("inf"), "sd": 0.1}}}}),
    "lift.mean",
)
_spec_case("rope-inf", _set("analysis.bayes", {"rope": float("inf")}), "rope")
_spec_case("huge-heterogeneity", _set("simulation.heterogeneity", 1e300), "heterogeneity")
_spec_case("huge-clusters", _set("simulation.clusters", 10**10), "clusters")
_spec_case("rerandomise-1e9", _set("design.rerandomise", 10**9), "rerandomise")
_spec_case("400-digit-integer", _set("design.daily_units", 10**400), "daily_units")
_spec_case("too-many-levels", _set("metrics.4.levels", list(range(500))), "levels")
_spec_case(
    "variant-named-holdout",
    lambda r: (r["variants"][1].update(id="holdout"), r["design"].update(holdout=0.1)),
    "holdout",
)
_spec_case(
    "weight-without-a-bucket",
    lambda r: r.update(
        variants=[
            {"id": "control", "kind": "control", "weight": 0.99999},
            {"id": "pct10", "kind": "discount", "mechanic": "percent_off", "value": 10, "weight": 0.00001},
        ]
    ),
    "variants",
    "bucket",
)
_spec_case("post-days-past-the-calendar", lambda r: r.update(end="9999-12-30", post_days=30), "post_days")
_spec_case(
    "table-named-assignments",
    _set("data.tables.assignments", "x.parquet"),
    "data.tables.assignments",
    "reserved",
)
_spec_case(
    "drop-on-a-units-column",
    lambda r: r["metrics"].append(
        {"id": "spend", "kind": "continuous", "source": "units", "column": "pre_revenue", "missing": "drop"}
    ),
    "metrics[5].missing",
)
_spec_case("zero-on-an-ordinal", _set("metrics.4.missing", "zero"), "metrics[4].missing")
_spec_case("nul-in-a-data-path", _set("data.units", "units\x00.parquet"), "data.units")
_spec_case("wrong-kind", _set("metrics.0.kind", "binery"), "metrics[0].kind", "did you mean 'binary'")
_spec_case("text-for-a-number", _set("economics.unit_price", "forty"), "economics.unit_price")
_spec_case(
    "unreachable-mde", _set("design.mde", {"relative": 1e-12}), "design.mde", "out of reach", command="design"
)
_spec_case(
    "relative-mde-on-a-zero-baseline",
    _set("design.baseline.revenue", {"mean": 0.0, "sd": 15.0}),
    "design.mde.relative",
    "positive baseline",
    command="design",
)
_spec_case(
    "total-units-1",
    lambda r: r.update(design={"total_units": 1, "baseline": {"revenue": {"mean": 4.0, "sd": 15.0}}}),
    "design.total_units",
    command="design",
)
_spec_case(
    "simulate-with-a-dotdot-path",
    _set("data.units", "../units.parquet"),
    "data.units",
    "leads outside",
    command="simulate",
)


# ---------------------------------------------------------------------- malformed data

_data_case(
    "nan-in-a-metric-column", _cells("orders", "amount", np.nan), "orders.parquet", "'amount'", "not finite"
)
_data_case(
    "inf-in-a-metric-column", _cells("orders", "amount", np.inf), "orders.parquet", "'amount'", "not finite"
)
_data_case("overflow-on-summing", _cells("orders", "amount", 1e308, rows=60), "orders.parquet", "'amount'")
_data_case(
    "square-overflow", _cells("orders", "amount", 1e200, rows=60), "orders.parquet", "'amount'", "overflow"
)
_data_case("nan-covariate", _cells("units", "pre_revenue", np.nan), "units.parquet", "'pre_revenue'")
_data_case(
    "inf-covariate", _cells("units", "pre_revenue", np.inf), "units.parquet", "'pre_revenue'", "not finite"
)
_data_case(
    "null-in-a-metric-column",
    _cells("orders", "amount", None),
    "orders.parquet",
    "'amount'",
    "missing (NULL)",
    "missing: zero or drop",
)
_data_case(
    "binary-column-holding-2", _cells("orders", "redeemed", 2), "orders.parquet", "'redeemed'", "not 0/1"
)
_data_case(
    "binary-column-holding-minus-1",
    _cells("orders", "redeemed", -1),
    "orders.parquet",
    "'redeemed'",
    "not 0/1",
)
_data_case("negative-count", _cells("orders", "quantity", -2), "orders.parquet", "'quantity'", "negative")
_data_case("ordinal-outside-the-levels", _cells("survey", "score", 9), "survey.parquet", "'score'", "levels")
_data_case(
    "null-unit-id-in-the-assignments",
    _cells("assignments", "unit_id", None),
    "assignments.parquet",
    "no unit_id",
)
_data_case("null-unit-id-in-the-units-file", _cells("units", "unit_id", None), "units.parquet", "no unit_id")
_data_case(
    "null-variant", _cells("assignments", "variant", None), "assignments.parquet", "'variant'", "no variant"
)


@case("duplicate-csv-header", "orders.csv", "'amount'", "more than once")
def _(w: Work) -> list[str]:
    path = w.put("orders", w.frame("orders"), fmt="csv")
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("quantity", "amount")
    path.write_text("\n".join(lines) + "\n")
    return w.analyze()


@case("duplicate-csv-header-in-another-case", "orders.csv", "'Amount'", "more than once")
def _(w: Work) -> list[str]:
    path = w.put("orders", w.frame("orders"), fmt="csv")
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("discount", "Amount")
    path.write_text("\n".join(lines) + "\n")
    return w.analyze()


def _max_metric(w: Work) -> None:
    raw = yaml.safe_load(w.spec.read_text())
    metric = {"id": "biggest", "kind": "continuous", "source": "orders", "column": "discount", "agg": "max"}
    raw["metrics"].append(metric)
    w.write_spec(raw)
    _cells("orders", "discount", -np.inf)(w)


def _capped_metric(w: Work) -> None:
    raw = yaml.safe_load(w.spec.read_text())
    raw["metrics"][1]["capping"] = {"absolute": 500}
    w.write_spec(raw)
    _cells("orders", "amount", np.nan)(w)


_data_case("minus-inf-under-a-maximum", _max_metric, "orders.parquet", "'discount'", "not finite")
_data_case("nan-under-a-cap", _capped_metric, "orders.parquet", "'amount'", "not finite")


@case("duplicate-parquet-field", "orders.parquet", "'amount'", "more than once")
def _(w: Work) -> list[str]:
    frame = w.frame("orders")
    table = pa.table([*pa.Table.from_pandas(frame, preserve_index=False).columns, pa.array(frame["amount"])],
                     names=[*frame.columns, "amount"])  # fmt: skip
    pq.write_table(table, w.inp / "orders.parquet")
    return w.analyze()


def _ids(table: str, change: Callable[[pd.Series], pd.Series]) -> Callable[[Work], None]:
    def apply(w: Work) -> None:
        frame = w.frame(table)
        frame["unit_id"] = change(frame["unit_id"])
        w.put(table, frame)

    return apply


_data_case(
    "float-ids-beyond-2-53", _ids("orders", lambda s: s.astype(float) + 2.0**60), "orders.parquet", "2^53"
)
_data_case(
    "fractional-float-ids", _ids("orders", lambda s: s.astype(float) + 0.5), "orders.parquet", "whole numbers"
)
_data_case(
    "text-ids-against-integer-ids",
    _ids("orders", lambda s: "u" + s.astype(str)),
    "orders.parquet",
    "do not join",
)
_data_case(
    "no-order-matches-an-assigned-unit",
    _ids("orders", lambda s: s + 10_000_000),
    "orders.parquet",
    "none of its",
)


@case("every-order-outside-the-window", "orders.parquet", "test window")
def _(w: Work) -> list[str]:
    frame = w.frame("orders")
    frame["ts"] = pd.Timestamp("2019-01-01")
    w.put("orders", frame)
    return w.analyze()


@case("timestamp-column-missing", "orders.parquet", "'ts'", "data.timestamp")
def _(w: Work) -> list[str]:
    w.put("orders", w.frame("orders").drop(columns="ts"))
    return w.analyze()


@case("timestamp-of-numbers", "orders.parquet", "'ts'", "dates or times")
def _(w: Work) -> list[str]:
    frame = w.frame("orders")
    frame["ts"] = np.arange(len(frame))
    w.put("orders", frame)
    return w.analyze()


@case(
    "id-repeated-three-times", "units.csv", "'unit_id'", "1 unit id(s) appear more than once (2 extra row(s)"
)
def _(w: Work) -> list[str]:
    units = w.frame("units").merge(w.frame("assignments"), on="unit_id")
    units = pd.concat([units, units.iloc[[5, 5]]])
    raw = json.loads(json.dumps(BASE))
    del raw["data"]["assignments"]
    w.write_spec(raw)
    w.put("units", units, fmt="csv")
    (w.inp / "assignments.parquet").unlink()
    return w.analyze()


@case("unit-in-two-arms", "assignments.parquet", "two variants")
def _(w: Work) -> list[str]:
    assign = w.frame("assignments")
    row = assign.iloc[[0]].assign(variant="pct10" if assign["variant"].iloc[0] == "control" else "control")
    w.put("assignments", pd.concat([assign, row]))
    return w.analyze()


@case("undeclared-label", "assignments.parquet", "'pct15'", "not variants")
def _(w: Work) -> list[str]:
    assign = w.frame("assignments")
    assign.loc[assign.index[:4], "variant"] = "pct15"
    w.put("assignments", assign)
    return w.analyze()


@case("empty-arm", "assignments.parquet", "EMPTY_ARM")
def _(w: Work) -> list[str]:
    w.put("assignments", w.frame("assignments").assign(variant="control"))
    return w.analyze()


@case("one-unit-in-an-arm", "assignments.parquet", "'pct10' (1)", "TOO_FEW_UNITS")
def _(w: Work) -> list[str]:
    assign = w.frame("assignments").assign(variant="control")
    assign.loc[assign.index[0], "variant"] = "pct10"
    w.put("assignments", assign)
    return w.analyze()


@case("collinear-covariates", "pre_revenue", "collinear")
def _(w: Work) -> list[str]:
    w.put("units", w.frame("units").assign(pre_revenue=3.0))
    return w.analyze()


@case("one-survey-answer-in-an-arm", "satisfaction", "TOO_FEW_UNITS")
def _(w: Work) -> list[str]:
    arms = w.frame("assignments").set_index("unit_id")["variant"]
    survey = w.frame("survey")
    treated = survey[survey["unit_id"].map(arms) == "pct10"]
    w.put("survey", pd.concat([survey[survey["unit_id"].map(arms) == "control"], treated.iloc[:1]]))
    return w.analyze()


@case("ragged-csv", "orders.csv", "could not be split")
def _(w: Work) -> list[str]:
    path = w.put("orders", w.frame("orders"), fmt="csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:3], lines[3] + ",1,2,3", lines[4].split(",")[0], *lines[5:]]) + "\n")
    return w.analyze()


@case("corrupt-parquet", "orders.parquet", "cannot read")
def _(w: Work) -> list[str]:
    path = w.inp / "orders.parquet"
    path.write_bytes(path.read_bytes()[:200])
    return w.analyze()


@case("header-only-csv", "orders.csv", "no data rows")
def _(w: Work) -> list[str]:
    w.put("orders", w.frame("orders").iloc[:0], fmt="csv")
    return w.analyze()


@case("empty-file", "orders.csv", "empty")
def _(w: Work) -> list[str]:
    path = w.put("orders", w.frame("orders"), fmt="csv")
    path.write_text("")
    return w.analyze()


@case("conversion-error-past-the-sniffed-rows", "orders.csv", "'amount'")
def _(w: Work) -> list[str]:
    frame = w.frame("orders")
    frame = pd.concat([frame] * 120, ignore_index=True)  # beyond the 20,480 rows the type sniffer reads
    frame["amount"] = frame["amount"].astype(str)
    frame.loc[frame.index[-1], "amount"] = "n/a"
    w.put("orders", frame, fmt="csv")
    return w.analyze()


@case("list-typed-metric-column", "orders.parquet", "'amount'", "must be numeric")
def _(w: Work) -> list[str]:
    frame = w.frame("orders")
    frame["amount"] = [[float(v)] for v in frame["amount"]]
    w.put("orders", frame)
    return w.analyze()


@case("data-folder-without-data-files", "orders.parquet", "folder holds no .parquet or .csv file")
def _(w: Work) -> list[str]:
    (w.inp / "orders.parquet").unlink()
    (w.inp / "orders.parquet").mkdir()
    return w.analyze()


@case("symlink-loop", "orders.parquet", "loop")
def _(w: Work) -> list[str]:
    (w.inp / "orders.parquet").unlink()
    os.symlink(w.inp / "other.parquet", w.inp / "orders.parquet")
    os.symlink(w.inp / "orders.parquet", w.inp / "other.parquet")
    return w.analyze()


@case("data-file-missing", "orders.parquet", "not found")
def _(w: Work) -> list[str]:
    (w.inp / "orders.parquet").unlink()
    return w.analyze()


@case("data-file-of-another-format", "orders.txt", ".parquet, .csv, .csv.gz or .csv.zst")
def _(w: Work) -> list[str]:
    (w.inp / "orders.txt").write_text("unit_id,amount\n1,2\n")
    return [*w.analyze(), "--data", f"orders={w.inp / 'orders.txt'}"]


# ---------------------------------------------------------------------- outputs over inputs, paths


@case("analyze-json-onto-the-spec", "--json", "spec.yaml", "never overwrites")
def _(w: Work) -> list[str]:
    return ["analyze", str(w.spec), "--json", str(w.spec)]


@case("analyze-json-onto-a-data-file", "--json", "orders.parquet", "never overwrites")
def _(w: Work) -> list[str]:
    return ["analyze", str(w.spec), "--json", str(w.inp / "orders.parquet")]


@case("analyze-json-onto-a-data-file-through-a-link", "--json", "orders.parquet", "never overwrites")
def _(w: Work) -> list[str]:
    os.link(w.inp / "orders.parquet", w.out / "hard-link.json")
    return ["analyze", str(w.spec), "--json", str(w.out / "hard-link.json")]


@case("analyze-draws-onto-a-data-file", "--draws", "units.parquet", "never overwrites")
def _(w: Work) -> list[str]:
    return ["analyze", str(w.spec), "--method", "bayesian", "--draws", str(w.inp / "units.parquet")]


@case("analyze-json-and-draws-on-one-path", "--draws", "--json")
def _(w: Work) -> list[str]:
    target = str(w.out / "x.csv")
    return ["analyze", str(w.spec), "--method", "both", "--json", target, "--draws", target]


@case("analyze-json-is-a-folder", "--json", "is a folder")
def _(w: Work) -> list[str]:
    (w.out / "analysis.json").mkdir()
    return w.analyze()


@case("analyze-json-below-a-file", "--json", "is not a folder")
def _(w: Work) -> list[str]:
    return ["analyze", str(w.spec), "--json", str(w.inp / "orders.parquet" / "x.json")]


@case("assign-out-onto-the-units-file", "--out", "units.parquet", "never overwrites")
def _(w: Work) -> list[str]:
    return ["assign", str(w.spec), "--out", str(w.inp / "units.parquet")]


@case("assign-out-onto-the-assignments-file", "--out", "assignments.parquet", "never overwrites")
def _(w: Work) -> list[str]:
    return ["assign", str(w.spec), "--out", str(w.inp / "assignments.parquet")]


@case("assign-json-onto-the-spec", "--json", "spec.yaml", "never overwrites")
def _(w: Work) -> list[str]:
    return ["assign", str(w.spec), "--out", str(w.out / "a.parquet"), "--json", str(w.spec)]


@case("assign-covariate-not-finite", "units.parquet", "'pre_revenue'", "non-finite")
def _(w: Work) -> list[str]:
    _cells("units", "pre_revenue", np.inf)(w)
    return ["assign", str(w.spec), "--out", str(w.out / "a.parquet")]


@case("design-json-onto-the-spec", "--json", "spec.yaml", "never overwrites")
def _(w: Work) -> list[str]:
    return ["design", str(w.spec), "--json", str(w.spec)]


@case("design-json-onto-the-pre-period", "--json", "units.parquet", "never overwrites")
def _(w: Work) -> list[str]:
    pre = str(w.inp / "units.parquet")
    return ["design", str(w.spec), "--pre-period", pre, "--json", pre]


@case("design-plot-of-an-unknown-format", "--plot", ".png")
def _(w: Work) -> list[str]:
    return ["design", str(w.spec), "--plot", str(w.out / "curve.txt")]


@case("design-pre-period-with-infinity", "pre.parquet", "'revenue'", "infinite")
def _(w: Work) -> list[str]:
    pre = pd.DataFrame({"revenue": np.r_[np.random.default_rng(1).gamma(1, 4, 300), np.inf]})
    pre.to_parquet(w.inp / "pre.parquet")
    return ["design", str(w.spec), "--pre-period", str(w.inp / "pre.parquet")]


@case("design-pre-period-constant", "pre.parquet", "'revenue'", "does not vary")
def _(w: Work) -> list[str]:
    pd.DataFrame({"revenue": np.full(300, 4.0)}).to_parquet(w.inp / "pre.parquet")
    return ["design", str(w.spec), "--pre-period", str(w.inp / "pre.parquet")]


@case("simulate-out-is-a-file", "--out", "is a file")
def _(w: Work) -> list[str]:
    target = w.inp / "not-a-folder.txt"
    target.write_text("x")
    return ["simulate", str(w.spec), "--out", str(target)]


@case("simulate-into-the-spec-folder-with-real-data", "--out", "never overwrites")
def _(w: Work) -> list[str]:
    return ["simulate", str(w.spec), "--out", str(w.inp), "--units", "500"]


@case("simulate-units-out-of-range", "--units")
def _(w: Work) -> list[str]:
    return ["simulate", str(w.spec), "--out", str(w.out / "sim"), "--units", "1000000000000"]


@case("report-out-holding-its-results", "--out", "bad-input.json", "holds an input")
def _(w: Work) -> list[str]:
    results = w.results()
    folder = w.inp / "bad-input"
    folder.mkdir()
    moved = folder / "bad-input.json"
    results.rename(moved)
    return ["report", str(w.spec), "--results", str(moved), "-o", str(w.inp)]


@case("report-out-is-a-file", "--out", "is a file")
def _(w: Work) -> list[str]:
    return ["report", str(w.spec), "--results", str(w.results()), "-o", str(w.inp / "orders.parquet")]


@case("review-out-is-a-file", "--out", "is a file")
def _(w: Work) -> list[str]:
    return ["review", str(w.spec), "--quarter", "2026Q1", "-o", str(w.inp / "orders.parquet")]


@case("review-year-0", "--quarter", "year")
def _(w: Work) -> list[str]:
    return ["review", str(w.spec), "--quarter", "0000Q1", "-o", str(w.out / "r")]


@case("review-report-with-text-for-a-number", "bad-input.json", "roi")
def _(w: Work) -> list[str]:
    from promolab.analyze import Analysis
    from promolab.report import build_report
    from promolab.spec import load_spec

    report = build_report(load_spec(w.spec), Analysis.from_dict(json.loads(w.results().read_text())))
    report["economics"]["arms"][0]["roi"]["value"] = "abc"
    folder = w.inp / "reports" / "bad-input"
    folder.mkdir(parents=True)
    (folder / "bad-input.json").write_text(json.dumps(report))
    return [
        "review",
        str(w.spec),
        "--quarter",
        "2026Q1",
        "--reports",
        str(w.inp / "reports"),
        "-o",
        str(w.out / "r"),
    ]


def _results_case(name: str, edit: Callable[[str], str], *culprit: str) -> None:
    def build(w: Work) -> list[str]:
        path = w.results()
        path.write_bytes(edit(path.read_text()).encode("utf-8", "surrogateescape"))
        return ["report", str(w.spec), "--results", str(path), "-o", str(w.out / "r")]

    case(name, "results.json", *culprit)(build)


def _payload(change: Callable[[dict[str, Any]], object]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        payload = json.loads(text)
        change(payload)
        return json.dumps(payload)

    return edit


_results_case("results-nested-deeply", lambda t: "[" * 100_000 + "]" * 100_000, "nested too deeply")
_results_case(
    "results-400-digit-integer", lambda t: re.sub(r'"n": \d+', '"n": ' + "9" * 400, t, count=1), "digits"
)
_results_case(
    "results-nan-means",
    _payload(lambda p: p["arms"]["control"].update(mean=[float("nan")] * len(p["arms"]["control"]["mean"]))),
    "arms.control.mean",
)
_results_case("results-negative-n", _payload(lambda p: p["arms"]["control"].update(n=-300)), "arms.control.n")
_results_case(
    "results-comoment-of-the-wrong-shape",
    _payload(lambda p: p["arms"]["control"].update(comoment=[[1.0]])),
    "arms.control",
    "comoment",
)
_results_case(
    "results-reversed-interval",
    _payload(lambda p: p["results"][0].update(rel_ci=[0.5, -0.2])),
    "results[0]",
    "rel_ci",
)


def _shipping(arm: str) -> dict[str, Any]:
    """A saved verdict shipping ``arm`` (as `promolab analyze --json` writes it)."""
    return {"action": "ship", "variant": arm, "reason": "edited by hand", "rule": "frequentist", "arms": []}


_results_case("results-not-json", lambda t: t[: len(t) // 2], "not JSON")
_results_case(
    "results-of-another-experiment", _payload(lambda p: p.update(experiment="other")), "experiment", "'other'"
)
_results_case("results-not-utf8", lambda t: t.replace("bad-input", "bad-\udce9nput", 1), "UTF-8")
_results_case(
    "results-ship-an-undeclared-arm",
    _payload(lambda p: p.update(decision=_shipping("bogus-arm"))),
    "decision.variant",
    "not a treatment arm",
)
_results_case(
    "results-ship-the-reference",
    _payload(lambda p: p.update(decision=_shipping("control"))),
    "decision.variant",
    "not a treatment arm",
)


def _unsupported_ship(payload: dict[str, Any]) -> None:
    for row in payload["results"]:
        row["p_value_adjusted"] = 0.9
    payload["decision"] = _shipping("pct10")


_results_case(
    "results-ship-what-the-results-do-not-support",
    _payload(_unsupported_ship),
    "decision.variant",
    "not better",
)
_results_case(
    "results-unknown-metric-rows",
    _payload(lambda p: p["results"][0].update(metric="nope")),
    "results",
    "nope",
)


def _draws_case(name: str, metric: str, mean: object, *culprit: str) -> None:
    def build(w: Work) -> list[str]:
        path = w.inp / "draws.csv"
        draws = {"metric": metric, "arm": ["control", "pct10"] * 150, "draw": np.repeat(np.arange(150), 2)}
        pd.DataFrame({**draws, "mean": mean}).to_csv(path, index=False)
        return [
            "report",
            str(w.spec),
            "--results",
            str(w.results()),
            "--draws",
            str(path),
            "-o",
            str(w.out / "r"),
        ]

    case(name, "draws.csv", *culprit)(build)


_draws_case("draws-with-text", "revenue", "x", "'mean'")
_draws_case("draws-of-an-undeclared-metric", "nope", 1.0, "'nope'")


# ---------------------------------------------------------------------- usage


@case("usage-negative-units", "--units", "--help")
def _(w: Work) -> list[str]:
    return ["simulate", str(w.spec), "--out", str(w.out / "sim"), "--units", "-3"]


@case("usage-data-without-equals", "--data", "NAME=PATH")
def _(w: Work) -> list[str]:
    return [*w.analyze(), "--data", "orders"]


@case("usage-data-of-an-unknown-name", "--data", "'clicks'")
def _(w: Work) -> list[str]:
    return [*w.analyze(), "--data", f"clicks={w.inp / 'orders.parquet'}"]


@case("usage-method-with-results", "--method", "--results")
def _(w: Work) -> list[str]:
    return [
        "report",
        str(w.spec),
        "--results",
        str(w.results()),
        "--method",
        "bayesian",
        "-o",
        str(w.out / "r"),
    ]


@case("usage-draws-without-results", "--draws", "--results")
def _(w: Work) -> list[str]:
    return ["report", str(w.spec), "--draws", str(w.inp / "units.parquet"), "-o", str(w.out / "r")]


@case("usage-unknown-command", "'analyse'")
def _(w: Work) -> list[str]:
    return ["analyse", str(w.spec)]


# ---------------------------------------------------------------------- the checks


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def test_there_are_at_least_eighty_cases():
    assert len(CASES) >= 80, len(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line_naming_the_culprit(name, base_data, tmp_path):
    build, culprit = CASES[name]
    work = Work(tmp_path / "in", tmp_path / "out")
    shutil.copytree(base_data, work.inp)
    work.out.mkdir()
    work.write_spec()
    argv = build(work)
    before = _digests(work.inp)
    outputs_before = _digests(work.out)
    result = runner.invoke(app, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output + result.stderr
    assert result.exit_code == 2, (result.exit_code, result.stdout[-500:], result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for fragment in culprit:
        assert fragment in lines[0], (fragment, lines[0])
    assert _digests(work.inp) == before, "an input was modified"
    assert _digests(work.out) == outputs_before, "an output was written"
