"""The results as one flat table: a row per metric x treatment arm, and its text forms.

:func:`rows` is the single source of every tabular view (``Analysis.to_dicts``, ``to_frame``,
``to_markdown``, ``to_html``, ``_repr_html_`` and the CLI table). Intervals are flat
(``*_ci_lower`` / ``*_ci_upper``); Bayesian columns carry the same names with a ``bayes_`` prefix
(``bayes_rel_lift``, ``bayes_rel_ci_lower``, ...) beside ``prob_beat_control`` and ``prob_best``.
Cells are formatted by :mod:`promolab.format`: proportions (binary metrics, top boxes) as percent
with differences in percentage points, lifts as signed percent, p-values to four decimals.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from promolab import format as fmt

if TYPE_CHECKING:
    from promolab.analyze.run import Analysis

PROPORTION_METHODS = ("z-unpooled",)  # estimates of a proportion: shown as percent / pp
SHOWN = {  # column -> header of the text forms
    "metric": "metric",
    "variant": "arm",
    "control_mean": "reference mean",
    "variant_mean": "arm mean",
    "abs_diff": "difference",
    "rel_lift": "lift",
    "rel_ci": "lift interval",
    "p_value_adjusted": "p (adjusted)",
}
BAYES_SHOWN = {"bayes_rel_lift": "posterior lift", "bayes_rel_ci": "HDI", "prob_beat_control": "P(beat)"}


def rows(analysis: Analysis) -> list[dict[str, Any]]:
    """One flat mapping per metric x treatment arm (see the module docstring)."""
    bayes = {(b.metric, b.variant): b for b in (analysis.bayes.results if analysis.bayes else [])}
    found = []
    for result in analysis.results:
        row = asdict(result)
        for name in ("abs_ci", "rel_ci"):
            low, high = row.pop(name) or (None, None)
            row[f"{name}_lower"], row[f"{name}_upper"] = low, high
        row["flags"] = ", ".join(result.flags)
        posterior = bayes.get((result.metric, result.variant))
        if analysis.bayes is not None:
            low, high = (posterior.rel_hdi if posterior else None) or (None, None)
            row |= {
                "bayes_model": posterior.model if posterior else None,
                "bayes_rel_lift": posterior.rel_lift_mean if posterior else None,
                "bayes_rel_ci_lower": low,
                "bayes_rel_ci_upper": high,
                "prob_beat_control": posterior.prob_beat_control if posterior else None,
                "prob_best": posterior.prob_best if posterior else None,
                "expected_loss": posterior.expected_loss if posterior else None,
                "rope_decision": posterior.decision if posterior else None,
            }
        found.append(row)
    return found


def headers(table: Sequence[dict[str, Any]]) -> list[str]:
    shown = dict(SHOWN)
    if table and "prob_beat_control" in table[0]:
        shown |= BAYES_SHOWN
    return list(shown.values())


def cells(row: dict[str, Any]) -> list[str]:
    """The row's shown columns as text (the same in the terminal, Markdown and HTML)."""
    share = row["method"] in PROPORTION_METHODS
    mean = fmt.percent if share else fmt.number
    found = [
        str(row["metric"]),
        str(row["variant"]),
        mean(row["control_mean"]),
        mean(row["variant_mean"]),
        fmt.points(row["abs_diff"]) if share else fmt.number(row["abs_diff"], signed=True),
        fmt.percent(row["rel_lift"], signed=True),
        fmt.interval(row["rel_ci_lower"], row["rel_ci_upper"], "percent", signed=True),
        fmt.p_value(row["p_value_adjusted"]) + (f" {row['flags']}" if row["flags"] else ""),
    ]
    if "prob_beat_control" in row:
        prob = row["prob_beat_control"]
        found += [
            fmt.percent(row["bayes_rel_lift"], signed=True),
            fmt.interval(row["bayes_rel_ci_lower"], row["bayes_rel_ci_upper"], "percent", signed=True),
            fmt.MISSING if prob is None else f"{prob:.3f}",
        ]
    return found


def markdown(table: Sequence[dict[str, Any]]) -> str:
    """A Markdown table (``|`` in names escaped)."""
    names = headers(table)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(row)) + " |")
    return "\n".join(lines) + "\n"


def html(table: Sequence[dict[str, Any]]) -> str:
    """An HTML table, every cell escaped."""
    head = "".join(f"<th>{html_lib.escape(n)}</th>" for n in headers(table))
    body = "".join(
        "<tr>" + "".join(f"<td>{html_lib.escape(c)}</td>" for c in cells(row)) + "</tr>" for row in table
    )
    return f'<table class="promolab-results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
