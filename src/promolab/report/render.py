"""Report rendering: self-contained HTML (figures embedded, every user string escaped) and Markdown.

Templates live in ``promolab/report/templates``; Jinja2 autoescapes the HTML, and the Markdown filter
``md`` escapes what Markdown would interpret (including raw HTML) in user text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np

from promolab.errors import printable
from promolab.report import plots

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#<>~])")


def md_escape(text: object) -> str:
    """Text safe inside Markdown tables and paragraphs (no raw HTML, no markup, no column breaks, no
    line breaks: control characters are shown as escapes)."""
    return printable(_MD_SPECIAL.sub(r"\\\1", str(text)))


def money(value: float | None, currency: str = "") -> str:
    return "–" if value is None else f"{value:,.0f} {currency}".strip()


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:+.{digits}f}%"


def interval(ci: Any, kind: str = "money", currency: str = "") -> str:
    if ci is None:
        return "–"
    if kind == "pct":
        return f"[{pct(ci[0])}, {pct(ci[1])}]"
    if kind == "num":
        return f"[{ci[0]:.3g}, {ci[1]:.3g}]"
    return f"[{money(ci[0])}, {money(ci[1])}] {currency}".strip()


def number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


@cache
def _environment(kind: str) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("promolab.report", "templates"),
        autoescape=kind == "html",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(md=md_escape, money=money, pct=pct, interval=interval, number=number)
    return env


def figures(
    report: Mapping[str, Any], draws: Mapping[str, Mapping[str, np.ndarray]] | None
) -> dict[str, Any]:
    """Every figure of one experiment's report (base64 PNG, or None when there is nothing to draw)."""
    economics = report["economics"]
    currency = economics["currency"] if economics else ""
    primary_draws = (draws or {}).get(report["primary"])
    return {
        "forest": plots.forest(report["results"]),
        "posterior": (
            plots.posterior(primary_draws, report["reference"], report["primary"]) if primary_draws else None
        ),
        "waterfalls": [
            plots.roi_waterfall(arm, currency)
            for arm in (economics["arms"] if economics else [])
            if arm["net_profit"]["value"] is not None and arm["promotion_cost"]["value"]  # costs to show
        ],
        "price": plots.price_profit(report["price_response"], currency) if report["price_response"] else None,
        "cumulative": plots.cumulative(report["daily"]) if report["daily"] else None,
    }


def render_html(report: Mapping[str, Any], images: Mapping[str, Any]) -> str:
    return str(_environment("html").get_template("report.html.j2").render(r=report, img=images))


def render_markdown(report: Mapping[str, Any]) -> str:
    return str(_environment("md").get_template("report.md.j2").render(r=report))


def render_review_html(review: Mapping[str, Any], images: Mapping[str, Any]) -> str:
    return str(_environment("html").get_template("review.html.j2").render(v=review, img=images))


def render_review_markdown(review: Mapping[str, Any]) -> str:
    return str(_environment("md").get_template("review.md.j2").render(v=review))
