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

from promolab import format as text
from promolab.errors import printable
from promolab.report import plots

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#<>~])")


def md_escape(text: object) -> str:
    """Text safe inside Markdown tables and paragraphs (no raw HTML, no markup, no column breaks, no
    line breaks: control characters are shown as escapes)."""
    return printable(_MD_SPECIAL.sub(r"\\\1", str(text)))


def pct(value: float | None, digits: int = 1) -> str:
    return text.percent(value, digits, signed=True)


def interval(ci: Any, kind: str = "money", currency: str = "") -> str:
    """``[low, high]`` of a JSON interval: ``pct`` signed percent, ``num`` numbers, else money."""
    low, high = ci if ci is not None else (None, None)
    if kind == "pct":
        return text.interval(low, high, "percent", signed=True)
    if kind == "num":
        return text.interval(low, high, "number")
    return f"{text.interval(low, high, 'money')} {currency}".strip()


def metric_value(value: float | None, info: Mapping[str, Any], difference: bool = False) -> str:
    """A metric's mean (or a difference of two means) in the metric's format: shares as percent
    (differences in percentage points), other values to four significant digits."""
    if info["format"] == "percent":
        return text.points(value) if difference else text.percent(value)
    return text.number(value, 4, signed=difference)


def metric_label(name: str, info: Mapping[str, Any]) -> str:
    return f"{info['label']} ({info['unit']})" if info["unit"] else str(info["label"])


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
    env.filters.update(
        md=md_escape,
        money=text.money,
        pct=pct,
        points=text.points,
        percent=text.percent,
        interval=interval,
        number=text.number,
        p=text.p_value,
        prob=text.probability,
        metric_value=metric_value,
        metric_label=metric_label,
    )
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
        "lift_sources": [plots.lift_sources(arm, currency) for arm in report.get("lift_sources", [])],
        "price": plots.price_profit(report["price_response"], currency) if report["price_response"] else None,
        "cumulative": plots.cumulative(report["daily"]) if report["daily"] else None,
        "sequence": plots.sequence(report["monitoring"]) if report.get("monitoring") else None,
    }


def render_html(report: Mapping[str, Any], images: Mapping[str, Any]) -> str:
    return str(_environment("html").get_template("report.html.j2").render(r=report, img=images))


def render_markdown(report: Mapping[str, Any]) -> str:
    return _ending(str(_environment("md").get_template("report.md.j2").render(r=report)))


def render_rollout_html(report: Mapping[str, Any], images: Mapping[str, Any]) -> str:
    return str(_environment("html").get_template("rollout.html.j2").render(r=report, img=images))


def render_rollout_markdown(report: Mapping[str, Any]) -> str:
    return _ending(str(_environment("md").get_template("rollout.md.j2").render(r=report)))


def render_review_html(review: Mapping[str, Any], images: Mapping[str, Any]) -> str:
    return str(_environment("html").get_template("review.html.j2").render(v=review, img=images))


def render_review_markdown(review: Mapping[str, Any]) -> str:
    return _ending(str(_environment("md").get_template("review.md.j2").render(v=review)))


def _ending(text: str) -> str:
    """Markdown files end with one newline."""
    return text.rstrip("\n") + "\n"
