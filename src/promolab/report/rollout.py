"""The report of a rollout: the effect per metric and window, the money, the diagnostics and the
treated units' series beside their counterfactual, as ``<out>/<id>/`` (HTML, Markdown, JSON) like an
experiment's report, so that the quarterly review reads both kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promolab import __version__
from promolab.analyze.rollout import RolloutAnalysis
from promolab.decision import decide_rollout
from promolab.economics.rollout import rollout_economics
from promolab.io import json_text, publish_folder
from promolab.spec import spec_hash
from promolab.spec.rollout import RolloutSpec

EVIDENCE = {
    "did": "difference-in-differences against untreated units",
    "synthetic_control": "synthetic control from untreated units",
    "its": "interrupted time series (the treated units' own past)",
}


def build_rollout_report(spec: RolloutSpec, analysis: RolloutAnalysis) -> dict[str, Any]:
    """The report content (``<id>.json``) of a rollout."""
    economics = rollout_economics(spec, analysis)
    decision = decide_rollout(spec, analysis, economics)
    return {
        "kind": "rollout",
        "experiment": spec.id,
        "name": spec.name,
        "hypothesis": spec.hypothesis,
        "owner": spec.owner,
        "start": str(spec.start),
        "end": str(spec.end),
        "stop": str(spec.stop),
        "spec_hash": analysis.spec_hash,  # what produced the numbers: the review flags a stale one
        "stale": analysis.spec_hash != spec_hash(spec),
        "promolab_version": __version__,
        "primary": spec.primary,
        "confidence": analysis.confidence,
        "promotion": {
            "id": spec.promotion.id,
            "name": spec.promotion.name or spec.name,
            "mechanic": economics.mechanic
            if economics
            else str(getattr(spec.promotion, "mechanic", spec.promotion.kind)),
            "channel": spec.promotion.channel,
        },
        "method": analysis.method,
        "method_text": EVIDENCE[analysis.method],
        "reason": analysis.reason,
        "evidence": analysis.evidence,
        "doubts": analysis.doubts,
        "results": [
            r | {"name": spec.metric(r["metric"]).name or r["metric"]} for r in analysis.to_dict()["results"]
        ],
        "diagnostics": analysis.diagnostics,
        "series": analysis.series,
        "economics": economics.to_dict() if economics else None,
        "decision": decision.to_dict(),
    }


def write_rollout_report(
    spec: RolloutSpec, analysis: RolloutAnalysis, out_dir: str | Path
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the rollout's HTML, Markdown and JSON report as ``out_dir/<id>/``; the paths and decision."""
    from promolab.report import plots
    from promolab.report.render import render_rollout_html, render_rollout_markdown

    report = build_rollout_report(spec, analysis)
    images = {
        metric: plots.counterfactual(line, metric, report["start"], report["end"], report["stop"])
        for metric, line in report["series"].items()
    }
    files = {
        f"{spec.id}.json": json_text(report),
        f"{spec.id}.md": render_rollout_markdown(report),
        f"{spec.id}.html": render_rollout_html(report, images),
    }
    written = publish_folder(Path(out_dir) / spec.id, files)
    return {Path(name).suffix[1:]: path for name, path in written.items()}, report["decision"]
