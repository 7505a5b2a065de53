"""One place that turns results into JSON files and terminal tables."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from promolab.cli.console import err, out
from promolab.io import write_text

if TYPE_CHECKING:
    from promolab.analyze import Analysis


def write_json(target: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON (NaN/inf become null) atomically, and say where on stderr."""
    write_text(target, json.dumps(_clean(payload), indent=2) + "\n")
    err.print(f"wrote {target}")


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt(value: Any, name: str = "") -> str:
    """Format a number by the meaning its name carries: ``rel_*``/``*_relative``/power as %."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if name.startswith("p_"):
        return "<0.0001" if value < 1e-4 else f"{value:.4f}"
    if "rel" in name or name.startswith("power") or name.endswith("lift"):
        return f"{value:+.2%}" if "lift" in name or "rel" in name else f"{value:.1%}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print rows under ``columns``; values formatted by :func:`fmt` keyed on the column name."""
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="left" if column in ("arm", "metric", "variant") else "right")
    for row in rows:
        table.add_row(*(fmt(value, column) for value, column in zip(row, columns, strict=True)))
    out.print(table)


def print_analysis(analysis: Analysis) -> None:
    """The analysis as tables: SRM first (loud when flagged), lifts, guardrails, verdict."""
    srm = analysis.srm
    if srm.flag is not None:
        out.print(
            f"[bold red]{srm.flag}[/bold red]: arm counts differ from the design (p = {srm.p_value:.2g})"
        )
    columns = [
        "metric",
        "variant",
        "control_mean",
        "variant_mean",
        "abs_diff",
        "rel_lift",
        "rel_ci",
        "p_value",
    ]
    rows = [
        [
            r.metric,
            r.variant,
            r.control_mean,
            r.variant_mean,
            r.abs_diff,
            r.rel_lift,
            _interval(r.rel_ci),
            r.p_value_adjusted,
        ]
        for r in analysis.results
    ]
    adjusted = f", adjusted for {', '.join(analysis.covariates)}" if analysis.covariates else ""
    print_table(
        f"{analysis.experiment}: lifts (p adjusted: Holm primary, BH secondary{adjusted})", columns, rows
    )
    if analysis.guardrails:
        rows = [
            [g.metric, g.variant, g.margin, g.p_value, "pass" if g.passed else "FAIL"]
            for g in analysis.guardrails
        ]
        print_table(
            "guardrails (one-sided non-inferiority)",
            ["metric", "variant", "margin", "p_value", "result"],
            rows,
        )
    verdict = analysis.verdict
    decision = "do not ship" if verdict.ship is None else f"ship {verdict.ship}"
    out.print(f"SRM p = {srm.p_value:.3g}. Verdict: {decision} ({verdict.reason})")


def _interval(bounds: tuple[float, float] | None) -> str:
    return "—" if bounds is None else f"[{bounds[0]:+.2%}, {bounds[1]:+.2%}]"
