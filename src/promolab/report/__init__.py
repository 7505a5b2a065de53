"""promolab.report: per-experiment reports and the quarterly promotion review.

``write_report`` turns an analysis payload into the folder ``<out>/<id>/`` holding ``<id>.html``
(self-contained), ``<id>.md`` and ``<id>.json`` (the report content, for pipelines and for the review);
``write_review`` reads those JSON files for every experiment that ended in a quarter and writes
``<out>/review-<quarter>/``. Each folder is published in one step (:func:`promolab.io.publish_folder`):
its files always come from one run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promolab.analyze import Analysis
from promolab.analyze.payload import check_saved, check_saved_analysis
from promolab.decision import decide
from promolab.errors import printable
from promolab.io import json_text, publish_folder
from promolab.report.build import build_report
from promolab.report.render import (
    figures,
    render_html,
    render_markdown,
    render_review_html,
    render_review_markdown,
)
from promolab.report.review import SavedReport, SavedRollout, build_review, in_quarter
from promolab.spec import AnySpec, RolloutSpec, spec_hash
from promolab.spec.models import Bayes, ExperimentSpec
from promolab.spec.windows import expand

REVIEW_SAMPLER = Bayes(draws=1000, tune=1000, chains=2)  # the mechanic model: ESS ~1000, 2x faster

__all__ = [
    "build_report",
    "build_review",
    "in_quarter",
    "load_draws",
    "load_results",
    "report_json",
    "write_report",
    "write_review",
]

MAX_INTEGER_DIGITS = 30  # integers in promolab's JSON are counts; longer ones cannot be meant


@dataclass(frozen=True)
class WrittenReport:
    """The files of one report and the decision it carries."""

    paths: dict[str, Path]
    decision: dict[str, Any]


def report_json(reports_dir: str | Path, experiment: str) -> Path:
    """Where ``promolab report -o reports_dir`` put the report content of ``experiment``."""
    return Path(reports_dir) / experiment / f"{experiment}.json"


@contextmanager
def malformed(path: str | Path, what: str, rerun: str) -> Iterator[None]:
    """Turn a structural error met while reading a user's saved file into a DataError naming it."""
    from promolab.errors import DataError

    try:
        yield
    except (
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        AttributeError,
        OverflowError,
        RecursionError,
        np.linalg.LinAlgError,
    ) as error:
        raise DataError(
            f"{path}: a malformed promolab {what} ({type(error).__name__}: {error}); {rerun}"
        ) from None


def write_report(
    spec: ExperimentSpec,
    analysis: Analysis,
    out_dir: str | Path,
    draws: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    monitoring: Mapping[str, Any] | None = None,
) -> WrittenReport:
    """Write the experiment's HTML, Markdown and JSON report as the folder ``out_dir/<id>/`` (with the
    looks of ``promolab monitor``, when given)."""
    report = build_report(spec, analysis, draws, monitoring)
    files = {
        f"{spec.id}.json": json_text(report),
        f"{spec.id}.md": render_markdown(report),
        f"{spec.id}.html": render_html(report, figures(report, draws)),
    }
    written = publish_folder(Path(out_dir) / spec.id, files)
    return WrittenReport({Path(name).suffix[1:]: path for name, path in written.items()}, report["decision"])


def write_review(
    specs: list[AnySpec], quarter: str, reports_dir: str | Path, out_dir: str | Path
) -> dict[str, Path]:
    """Write ``review-<quarter>.html``, ``.md`` and ``.json`` from the quarter's ``<id>.json`` reports."""
    from promolab.errors import DataError
    from promolab.report import plots

    chosen = in_quarter(specs, quarter)
    if not chosen:
        raise DataError(f"no experiment ended in {quarter} (by the specs' 'end' dates)")
    missing = [s.id for s in chosen if not report_json(reports_dir, s.id).is_file()]
    if missing:
        raise DataError(
            f"{printable(reports_dir)}: no report for {', '.join(missing)}; "
            f"run `promolab report SPEC -o {printable(reports_dir)}` first"
        )
    rerun = f"rerun `promolab report SPEC -o {printable(reports_dir)}`"
    reports = []
    for spec in chosen:
        rollout = isinstance(spec, RolloutSpec)
        path = report_json(reports_dir, spec.id)
        report = _read_json(path, "report", ROLLOUT_KEYS if rollout else REPORT_KEYS, rerun)
        check_saved(SavedRollout if rollout else SavedReport, report, printable(path), f"report, {rerun}")
        reports.append(report)
    with malformed(reports_dir, "report in this folder", rerun):
        review = build_review(reports, quarter, REVIEW_SAMPLER, chosen[0].analysis.confidence)
    stale = [s.id for s, r in zip(chosen, reports, strict=True) if r.get("spec_hash") != spec_hash(s)]
    if stale:
        review["notes"].append(f"Reports made from an earlier version of the spec: {', '.join(stale)}.")
    images = {"mechanics": plots.mechanics(review["mechanics"]["effects"]) if review["mechanics"] else None}
    name = f"review-{quarter}"
    files = {
        f"{name}.json": json_text(review),
        f"{name}.md": render_review_markdown(review),
        f"{name}.html": render_review_html(review, images),
    }
    written = publish_folder(Path(out_dir) / name, files)
    return {Path(file).suffix[1:]: path for file, path in written.items()}


MONITOR_KEYS = ("experiment", "spec_hash", "method", "looks", "verdict")
RESULT_KEYS = ("experiment", "reference", "spec_hash", "srm", "results", "guardrails", "arms")
MIN_DRAWS = 100  # fewer posterior draws cannot carry P(profit > 0) or an interval
REPORT_KEYS = ("experiment", "name", "end", "decision", "primary", "reference", "variants", "results",
               "economics", "revenue_metric", "confidence")  # fmt: skip
ROLLOUT_KEYS = ("kind", "experiment", "name", "end", "decision", "primary", "promotion", "method", "evidence",
                "results", "economics")  # fmt: skip


def load_draws(path: str | Path, spec: ExperimentSpec) -> dict[str, dict[str, np.ndarray]]:
    """Posterior draws saved by ``promolab analyze --draws`` (metric, arm, draw, mean), by metric and
    arm; every arm of the spec with the same number of draws per metric."""
    from promolab.errors import DataError
    from promolab.sources import read_frame

    frame = read_frame(Path(path), "posterior draws", ["metric", "arm", "draw", "mean"])
    where = printable(path)
    if frame.empty:
        raise DataError(f"{where}: the posterior draws file has no rows")
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(frame["mean"]) and not pd.api.types.is_bool_dtype(frame["mean"])
    if not numeric or not np.isfinite(frame["mean"].to_numpy(dtype=float, na_value=np.nan)).all():
        raise DataError(f"{where}: posterior draws must be finite numbers in column 'mean'")
    if frame.duplicated(["metric", "arm", "draw"]).any():
        raise DataError(f"{where}: a (metric, arm, draw) appears twice")
    draws: dict[str, dict[str, np.ndarray]] = {}
    for (metric, arm), rows in frame.sort_values("draw").groupby(["metric", "arm"], sort=False):
        draws.setdefault(str(metric), {})[str(arm)] = rows["mean"].to_numpy(dtype=float)
    metrics = expand(spec).metrics  # with their windows (revenue@post)
    unknown = sorted(set(draws) - {m.id for m in metrics} - {f"{m.id}:top_box" for m in metrics})
    if unknown:
        raise DataError(
            f"{where}: column 'metric' names metric(s) {printable(unknown)} that {spec.id} does not declare"
        )
    arms = {v.id for v in spec.variants}
    for metric, by_arm in draws.items():
        if min(len(v) for v in by_arm.values()) < MIN_DRAWS:
            raise DataError(f"{where}: metric '{metric}' has fewer than {MIN_DRAWS} draws per arm")
        if set(by_arm) != arms or len({len(v) for v in by_arm.values()}) != 1:
            counts = ", ".join(f"{printable(arm)}: {len(v)}" for arm, v in sorted(by_arm.items()))
            raise DataError(
                f"{where}: metric '{metric}' needs the same number of draws for every arm of {spec.id} "
                f"({', '.join(sorted(arms))}); found {counts}"
            )
    return draws


def _read_json(path: Path, what: str, keys: tuple[str, ...], rerun: str) -> dict[str, Any]:
    """A JSON object with at least ``keys``, or a DataError saying how to make a fresh one."""
    from promolab.errors import DataError

    try:
        payload = json.loads(
            path.read_text(encoding="utf-8"), parse_int=_bounded_int, parse_constant=_no_constant
        )
    except OSError as error:
        raise DataError(f"{printable(path)}: cannot read the {what} ({error.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{printable(path)}: not UTF-8 text; not a promolab {what}") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{printable(path)}: not JSON (line {error.lineno}: {error.msg})") from None
    except RecursionError:
        raise DataError(f"{printable(path)}: nested too deeply to be a promolab {what}; {rerun}") from None
    except ValueError as error:
        raise DataError(f"{printable(path)}: {error}; not a promolab {what}") from None
    missing = [key for key in keys if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise DataError(f"{path}: not a promolab {what} (missing {', '.join(missing)}); {rerun}")
    return dict(payload)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _no_constant(name: str) -> float:
    """NaN and Infinity are read as floats so that the schema names the field holding them."""
    return float(name.replace("Infinity", "inf"))


def load_monitor(path: str | Path, spec: ExperimentSpec) -> tuple[dict[str, Any], str | None]:
    """The looks saved by ``promolab monitor --json``, checked and matched against ``spec``, and a
    warning when the spec changed since."""
    from promolab.analyze.payload import SavedMonitor, check_saved
    from promolab.errors import DataError

    where = printable(path)
    rerun = "rerun `promolab monitor SPEC --json`"
    payload = _read_json(Path(path), "monitor output", MONITOR_KEYS, rerun)
    check_saved(SavedMonitor, payload, where, f"monitor output, {rerun}")
    if payload["experiment"] != spec.id:
        raise DataError(
            f"{where}: experiment: looks at '{printable(payload['experiment'])}', but the spec is '{spec.id}'"
        )
    stale = None
    if payload["spec_hash"] != spec_hash(spec):
        stale = f"{where}: the looks were taken with an earlier version of the spec; {rerun}"
    return payload, stale


def load_results(path: str | Path, spec: ExperimentSpec) -> tuple[Analysis, str | None]:
    """The analysis saved by ``promolab analyze --json``, checked (structure, numbers) and matched
    against ``spec``, and a warning when the spec changed since (same arms and metrics: still usable).
    Its decision is made again from its results (a saved verdict is checked, never trusted)."""
    from promolab.errors import DataError

    where = printable(path)
    rerun = "rerun `promolab analyze --json`"
    payload = _read_json(Path(path), "analysis", RESULT_KEYS, rerun)
    check_saved_analysis(payload, where)
    if payload["experiment"] != spec.id:
        raise DataError(
            f"{where}: experiment: results of '{printable(payload['experiment'])}', but the spec is "
            f"'{spec.id}'"
        )
    if payload["reference"] != spec.reference.id:
        raise DataError(
            f"{where}: reference: analysed against '{printable(payload['reference'])}', but the spec's "
            f"reference arm is '{spec.reference.id}'; {rerun}"
        )
    arms = {v.id for v in spec.variants}
    if set(payload["arms"]) != arms:
        raise DataError(
            f"{where}: arms: analysed arms {printable(sorted(payload['arms']))} differ from the spec's "
            f"{sorted(arms)}; {rerun}"
        )
    names = {tuple(data["names"]) for data in payload["arms"].values()}
    if len(names) != 1:
        raise DataError(f"{where}: arms: the arms' statistics name different variables; {rerun}")
    metrics = expand(spec).metrics  # with their windows (revenue@post) and product split
    valued = {m.id for m in metrics if m.kind in ("binary", "continuous", "count")}
    missing = sorted(valued - set(next(iter(names))))
    if missing:
        raise DataError(f"{where}: arms: no statistics of metric(s) {', '.join(missing)}; {rerun}")
    declared = {m.id for m in metrics} | {f"{m.id}:top_box" for m in metrics if m.kind == "ordinal"}
    treatments = {t.id for t in spec.treatments}
    strays = sorted(
        {f"{row['metric']}/{row['variant']}" for row in payload["results"]}
        - {f"{m}/{t}" for m in declared for t in treatments}
    )
    if strays:
        raise DataError(
            f"{where}: results: rows of metrics or arms the spec does not declare: "
            f"{printable(strays[:5])}; {rerun}"
        )
    with malformed(path, "analysis", rerun):
        analysis = Analysis.from_dict(payload)
    shipped = (payload.get("decision") or {}).get("variant")
    if (problem := _unsupported_ship(shipped, spec, analysis)) is not None:
        raise DataError(f"{where}: decision.variant: {problem}; {rerun}")
    if payload["spec_hash"] != spec_hash(spec):
        return analysis, f"{where}: the spec changed since this analysis (different spec hash)"
    return analysis, None


def _unsupported_ship(ship: str | None, spec: ExperimentSpec, analysis: Analysis) -> str | None:
    """Why a saved verdict's arm does not follow from the saved results (None when it does): it must be
    a treatment arm, with no sample-ratio mismatch, and, unless the money rule decides (which the saved
    results cannot show), better on the primary metric by the decision rule's own evidence."""
    if ship is None:
        return None
    if ship not in {t.id for t in spec.treatments}:
        return f"'{printable(ship)}' is not a treatment arm of {spec.id}"
    if analysis.srm.flag is not None:
        return f"'{printable(ship)}' is shipped despite a sample-ratio mismatch"
    if spec.decision is not None and spec.decision.metric in ("profit", "roi") and spec.economics:
        return None
    verdict = next(a for a in decide(spec, analysis).arms if a.variant == ship)
    if verdict.finding != "better":
        return f"'{printable(ship)}' is not better on {spec.primary} in the saved results"
    return None
