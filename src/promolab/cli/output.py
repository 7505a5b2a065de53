"""One place that turns results into JSON files and terminal tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from promolab import format as text
from promolab.cli.console import err, out, plain
from promolab.errors import printable
from promolab.io import json_text, write_text

MAX_SEGMENTS_SHOWN = 12  # larger segmentations (RFM cells) are in the JSON only

if TYPE_CHECKING:
    from promolab.analyze import Analysis
    from promolab.analyze.segments import SegmentLift, SegmentResult
    from promolab.decision import Decision


def write_json(target: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON (NaN/inf become null) atomically, and say where on stderr."""
    write_text(target, json_text(payload))
    err.print(f"wrote {plain(target)}")


def fmt(value: Any, name: str = "") -> str:
    """A table cell by the meaning its column name carries (:mod:`promolab.format` does the work):
    ``p_*`` p-values, ``rel*``/``*lift`` signed percent, ``power*``/``*share*`` percent."""
    if value is None:
        return text.MISSING
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if name.startswith("p_"):
        return text.p_value(value)
    if "rel" in name or name.endswith("lift"):
        return text.percent(value, 2, signed=True)
    if name.startswith("power") or "share" in name:
        return text.percent(value)
    return text.number(value, 4)


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print rows under ``columns``; values formatted by :func:`fmt` keyed on the column name."""
    table = Table(title=Text(printable(title)), title_justify="left", show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="left" if column in ("arm", "metric", "variant") else "right")
    for row in rows:
        table.add_row(
            *(Text(printable(fmt(value, column))) for value, column in zip(row, columns, strict=True))
        )
    out.print(table)


def print_analysis(analysis: Analysis, decisions: list[Decision]) -> None:
    """The analysis as tables: SRM first (loud when flagged), lifts, guardrails, then each decision with a
    verdict line per arm."""
    srm = analysis.srm
    if srm.flag is not None:
        out.print(
            f"[bold red]{srm.flag}[/bold red]: arm counts differ from the design (p = {srm.p_value:.2g})"
        )
    if analysis.method != "bayesian":
        _print_frequentist(analysis)
    if analysis.bayes is not None:
        _print_bayes(analysis)
    out.print(f"SRM p = {srm.p_value:.3g}.")
    for decision in decisions:
        chosen = f" {decision.variant}" if decision.variant else ""
        out.print(f"Verdict ({decision.rule}): {decision.action.upper()}{chosen}: {plain(decision.reason)}")
        for arm in decision.arms:
            out.print(f"  {plain(arm.line)}")


def _print_frequentist(analysis: Analysis) -> None:
    """Lifts (the flat result table, frequentist columns) and guardrails of the frequentist engine."""
    from promolab.analyze import table

    rows = analysis.to_dicts()
    shown = len(table.SHOWN)
    covariates = list(analysis.covariates)
    if any(r.adjusted_for and r.adjusted_for[-1].endswith("@pre") for r in analysis.results):
        covariates.append("each metric's own pre-period")
    adjusted = f"; lifts regression-adjusted for {', '.join(covariates)}" if covariates else ""
    windows = " and other windows" if any(r.role == "window" for r in analysis.results) else ""
    print_table(
        f"{analysis.experiment}: lifts (p adjusted: Holm primary, BH secondary{windows}{adjusted})",
        table.headers(rows)[:shown],
        [table.cells(row)[:shown] for row in rows],
    )
    if analysis.segments:
        _print_segment_tests(analysis)
    if analysis.guardrails:
        checks = [
            [g.metric, g.variant, g.margin, g.p_value, "pass" if g.passed else "FAIL"]
            for g in analysis.guardrails
        ]
        print_table(
            "guardrails (one-sided non-inferiority)",
            ["metric", "variant", "margin", "p_value", "result"],
            checks,
        )


def _print_segment_tests(analysis: Analysis) -> None:
    """Each segment's own lift of the primary metric, and Cochran's Q test per segmentation and arm."""
    shown = [
        s
        for s in analysis.segments
        if _segment_count(analysis.segments, s.segmentation) <= MAX_SEGMENTS_SHOWN
    ]
    columns = ["segmentation", "segment", "variant", "n", "abs_diff", "rel_lift", "p_value"]
    rows = [
        [s.segmentation, s.segment, s.variant, s.n_control + s.n_variant, s.abs_diff, s.rel_lift, s.p_value]
        for s in shown
    ]
    if rows:
        print_table("segment lifts of the primary metric (each segment alone, p unadjusted)", columns, rows)
    for h in analysis.heterogeneity:
        out.print(
            f"{plain(h.variant)} by {plain(h.segmentation)}: Cochran's Q = {h.q:.3g} on {h.df} df, "
            f"p = {text.p_value(h.p_value)} ({h.segments} segments)"
        )


def _print_bayes(analysis: Analysis) -> None:
    """Posterior table, flagged fits first, then segment lifts."""
    bayes = analysis.bayes
    assert bayes is not None
    if bayes.flagged:
        out.print(
            f"[bold red]MODEL_DIAGNOSTICS_FAILED[/bold red]: {', '.join(bayes.flagged)} "
            "(r-hat > 1.01, low ESS or divergences): do not trust these rows"
        )
    level = f"{bayes.hdi_prob:.0%}"
    columns = ["metric", "variant", "model", "rel_lift_mean", f"rel {level} HDI", "P(beat)", "P(best)"]
    columns += ["exp. loss", "decision"]
    rows = [
        [
            r.metric,
            r.variant,
            r.model,
            r.rel_lift_mean,
            _interval(r.rel_hdi),
            r.prob_beat_control,
            r.prob_best,
            r.expected_loss,
            r.decision,
        ]
        for r in bayes.results
    ]
    rope = f", ROPE ±{bayes.rope:.1%}" if bayes.rope else ""
    print_table(f"{analysis.experiment}: Bayesian uplift{rope}", columns, rows)
    shown = [
        s for s in bayes.segments if _segment_count(bayes.segments, s.segmentation) <= MAX_SEGMENTS_SHOWN
    ]
    hidden = sorted({s.segmentation for s in bayes.segments} - {s.segmentation for s in shown})
    if hidden:
        out.print(
            f"segment lifts of {', '.join(hidden)}: more than {MAX_SEGMENTS_SHOWN} segments, see --json"
        )
    if shown:
        columns = [
            "segmentation",
            "segment",
            "variant",
            "n",
            "raw diff",
            "pooled diff",
            f"{level} HDI",
            "P(>0)",
        ]
        rows = [
            [
                s.segmentation,
                s.segment,
                s.variant,
                s.n_control + s.n_variant,
                s.raw_abs_diff,
                s.abs_mean,
                f"[{s.abs_hdi[0]:.4g}, {s.abs_hdi[1]:.4g}]",
                s.prob_positive,
            ]
            for s in shown
        ]
        print_table("segment-level uplift of the primary metric (partial pooling)", columns, rows)


def _segment_count(segments: Sequence[SegmentResult | SegmentLift], segmentation: str) -> int:
    return len({s.segment for s in segments if s.segmentation == segmentation})


def _interval(bounds: tuple[float, float] | None) -> str:
    return "—" if bounds is None else f"[{bounds[0]:+.2%}, {bounds[1]:+.2%}]"
