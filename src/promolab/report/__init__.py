"""promolab.report: per-experiment reports and the quarterly promotion review.

``write_report`` turns an analysis payload into ``<id>.html`` (self-contained), ``<id>.md`` and
``<id>.json`` (the report content, for pipelines and for the review); ``write_review`` reads those
JSON files for every experiment that ended in a quarter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from promolab.io import json_text, write_text
from promolab.report.build import build_report
from promolab.report.render import (
    figures,
    render_html,
    render_markdown,
    render_review_html,
    render_review_markdown,
)
from promolab.report.review import build_review, in_quarter
from promolab.spec.models import Bayes, ExperimentSpec

REVIEW_SAMPLER = Bayes(draws=1000, tune=1000, chains=2)  # the mechanic model: ESS ~1000, 2x faster

__all__ = [
    "build_report",
    "build_review",
    "in_quarter",
    "load_draws",
    "load_results",
    "write_report",
    "write_review",
]


def write_report(
    spec: ExperimentSpec,
    payload: Mapping[str, Any],
    out_dir: str | Path,
    draws: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> dict[str, Path]:
    """Write the experiment's HTML, Markdown and JSON report into ``out_dir``; return the paths."""
    report = build_report(spec, payload, draws)
    out = Path(out_dir)
    paths = {kind: out / f"{spec.id}.{kind}" for kind in ("html", "md", "json")}
    write_text(paths["json"], json_text(report))
    write_text(paths["md"], render_markdown(report))
    write_text(paths["html"], render_html(report, figures(report, draws)))
    return paths


def write_review(
    specs: list[ExperimentSpec], quarter: str, reports_dir: str | Path, out_dir: str | Path
) -> dict[str, Path]:
    """Write ``review-<quarter>.html``, ``.md`` and ``.json`` from the quarter's ``<id>.json`` reports."""
    from promolab.errors import DataError
    from promolab.report import plots

    chosen = in_quarter(specs, quarter)
    if not chosen:
        raise DataError(f"no experiment ended in {quarter} (by the specs' 'end' dates)")
    missing = [s.id for s in chosen if not (Path(reports_dir) / f"{s.id}.json").is_file()]
    if missing:
        raise DataError(
            f"{reports_dir}: no report for {', '.join(missing)}; "
            f"run `promolab report SPEC -o {reports_dir}` first"
        )
    reports = [json.loads((Path(reports_dir) / f"{s.id}.json").read_text(encoding="utf-8")) for s in chosen]
    review = build_review(
        reports, quarter, Bayes(), chosen[0].analysis.confidence
    )  # default sampler settings
    out = Path(out_dir)
    paths = {kind: out / f"review-{quarter}.{kind}" for kind in ("html", "md", "json")}
    images = {"mechanics": plots.mechanics(review["mechanics"]["effects"]) if review["mechanics"] else None}
    write_text(paths["json"], json_text(review))
    write_text(paths["md"], render_review_markdown(review))
    write_text(paths["html"], render_review_html(review, images))
    return paths


def load_draws(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Posterior draws saved by ``promolab analyze --draws`` (metric, arm, draw, mean), by metric and arm."""
    from promolab.sources import read_frame

    frame = read_frame(Path(path), "posterior draws", ["metric", "arm", "draw", "mean"])
    draws: dict[str, dict[str, np.ndarray]] = {}
    for (metric, arm), rows in frame.sort_values("draw").groupby(["metric", "arm"], sort=False):
        draws.setdefault(str(metric), {})[str(arm)] = rows["mean"].to_numpy(dtype=float)
    return draws


def load_results(path: str | Path, spec: ExperimentSpec) -> dict[str, Any]:
    """An analysis payload saved by ``promolab analyze --json``, checked against ``spec``."""
    from promolab.errors import DataError

    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise DataError(f"{path}: cannot read the results file ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(payload, dict) or "results" not in payload or "arms" not in payload:
        raise DataError(
            f"{path}: not a promolab analysis (expected 'results' and 'arms'; rerun analyze --json)"
        )
    if payload.get("experiment") != spec.id:
        raise DataError(f"{path}: results of '{payload.get('experiment')}', but the spec is '{spec.id}'")
    return payload
