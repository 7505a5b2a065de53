"""Report figures as base64 PNG (embedded in the HTML, so one file holds the whole report).

Each function takes the report content (``report.json`` pieces) and returns a PNG as base64 text, or
None when the report has nothing to draw.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

WIDTH = 7.5  # inches: fits a laptop screen and an A4 page at 110 dpi


def _figure(height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, height), dpi=110)
    return fig, ax


def _encode(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def forest(results: Sequence[Mapping[str, Any]]) -> str | None:
    """Relative lift and its interval for every metric x arm, one row each."""
    rows = [r for r in results if r.get("rel_lift") is not None and r.get("rel_ci") is not None]
    labels = [f"{r['metric']} · {r['variant']}" for r in rows]
    lifts = [(r["rel_lift"], *r["rel_ci"]) for r in rows]
    return _intervals(labels, lifts, "relative lift vs reference (%)", "o", "#1f4e79")


def _intervals(
    labels: Sequence[str], values: Sequence[tuple[float, float, float]], xlabel: str, marker: str, colour: str
) -> str | None:
    """One row per label: a relative value and its interval (fractions, drawn in %), top to bottom."""
    if not values:
        return None
    fig, ax = _figure(0.8 + 0.33 * len(values))
    y = np.arange(len(values))[::-1]
    centre, lo, hi = (np.array(column) * 100 for column in zip(*values, strict=True))
    ax.errorbar(centre, y, xerr=[centre - lo, hi - centre], fmt=marker, color=colour, capsize=3)
    ax.axvline(0, color="#888", lw=1)
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.6, len(values) - 0.4)  # half a row of air: no marker sits on the frame
    ax.margins(x=0.06)
    ax.set_xlabel(xlabel)
    return _encode(fig)


def posterior(draws: Mapping[str, np.ndarray], reference: str, metric: str) -> str | None:
    """Posterior density of each arm's relative lift on ``metric`` (histogram of the draws)."""
    if reference not in draws or len(draws) < 2:
        return None
    fig, ax = _figure(2.8)
    base = np.asarray(draws[reference])
    for arm, values in draws.items():
        if arm != reference:
            lift = (np.asarray(values) / base - 1) * 100
            ax.hist(lift, bins=80, density=True, alpha=0.5, label=arm)
    ax.axvline(0, color="#888", lw=1)
    ax.set_xlabel(f"relative lift of {metric} vs {reference} (%)")
    ax.set_yticks([])
    ax.legend(frameon=False)
    return _encode(fig)


WATERFALL_STEPS = (  # (label, economics quantity, sign)
    ("subsidy", "subsidy", -1),
    ("discount on incremental sales", "incremental_sales_discount", -1),
    ("gifts & shipping", "gift_shipping_cost", -1),
    ("contact cost", "contact_cost", -1),
    ("fixed & media", "fixed_media_cost", -1),
)


def waterfall_steps(arm: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Bars from the incremental margin before promotion costs down to net profit (they sum to it);
    cost categories the arm does not have (exactly 0) are left out."""
    costs = [(label, sign * (arm[key]["value"] or 0.0)) for label, key, sign in WATERFALL_STEPS]
    start = arm["net_profit"]["value"] - sum(v for _, v in costs)
    return [("margin before promotion costs", start), *((label, v) for label, v in costs if v != 0)]


def roi_waterfall(arm: Mapping[str, Any], currency: str) -> str:
    """Incremental margin -> subsidy -> discounts -> other costs -> net profit, for one arm."""
    steps = waterfall_steps(arm)
    fig, ax = _figure(3.0)
    level = 0.0
    for i, (_, value) in enumerate(steps):
        bottom = level if i else 0.0
        colour = "#2e7d32" if value >= 0 else "#c62828"
        ax.bar(i, value, bottom=bottom, color=colour)
        level = bottom + value
    net = arm["net_profit"]["value"]
    ax.bar(len(steps), net, color="#1f4e79")
    ax.axhline(0, color="#888", lw=1)
    ax.margins(x=0.04, y=0.12)  # bars never touch the frame
    labels = [label for label, _ in steps] + ["net profit"]
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(currency)
    ax.set_title(arm["variant"], fontsize=10)
    return _encode(fig)


def lift_sources(arm: Mapping[str, Any], currency: str) -> str:
    """Where one arm's net incremental margin came from: a bar per part stacked from zero (green up,
    red down) with its interval at the bar's end, and the net bar."""
    rows = arm["rows"]
    fig, ax = _figure(3.0)
    level = 0.0
    for i, row in enumerate(rows[:-1]):
        value = row["value"] or 0.0
        ax.bar(i, value, bottom=level, color="#2e7d32" if value >= 0 else "#c62828")
        if row.get("ci"):
            end = level + value
            bounds = [[value - row["ci"][0]], [row["ci"][1] - value]]
            ax.errorbar(i, end, yerr=bounds, color="#333", capsize=3)
        level += value
    net = rows[-1]
    ax.bar(len(rows) - 1, net["value"] or 0.0, color="#1f4e79")
    if net.get("ci"):
        ax.errorbar(
            len(rows) - 1,
            net["value"],
            yerr=[[net["value"] - net["ci"][0]], [net["ci"][1] - net["value"]]],
            color="#333",
            capsize=3,
        )
    ax.axhline(0, color="#888", lw=1)
    ax.margins(x=0.04, y=0.12)
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"incremental margin ({currency})")
    ax.set_title(f"{arm['variant']}: where the lift came from", fontsize=10)
    return _encode(fig)


def price_profit(response: Mapping[str, Any], currency: str) -> str:
    """Profit per randomised unit at each tested price, with its interval."""
    rows = response["rows"]
    fig, ax = _figure(2.8)
    prices = np.array([r["price"] for r in rows])
    profit = np.array([r["profit"] for r in rows])
    lo = np.array([r["profit_ci"][0] for r in rows])
    hi = np.array([r["profit_ci"][1] for r in rows])
    ax.errorbar(prices, profit, yerr=[profit - lo, hi - profit], fmt="o-", color="#1f4e79", capsize=3)
    ax.set_xlabel(f"price ({currency})")
    ax.set_ylabel(f"profit per unit ({currency})")
    return _encode(fig)


def mechanics(effects: Sequence[Mapping[str, Any]]) -> str | None:
    """Pooled typical lift of each mechanic with its HDI."""
    labels = [f"{e['mechanic']} ({e['arms']})" for e in effects]
    lifts = [(e["rel_lift_mean"], *e["rel_hdi"]) for e in effects]
    return _intervals(labels, lifts, "typical relative revenue lift (%)", "s", "#6a1b9a")


def cumulative(daily: Mapping[str, Any]) -> str:
    """Each treatment arm's cumulative relative lift of the primary metric by day with its pointwise
    interval, the post window shaded; without lifts (results saved by older versions), each arm's
    cumulative mean per randomised unit."""
    import matplotlib.dates as mdates

    fig, ax = _figure(2.8)
    days = np.array(daily["days"], dtype="datetime64[D]")
    lifts = daily.get("lift")
    if lifts:
        for arm, lift in lifts.items():
            centre = np.array([np.nan if v is None else v * 100 for v in lift["rel_lift"]])
            low = np.array([np.nan if v is None else v * 100 for v in lift["rel_lower"]])
            high = np.array([np.nan if v is None else v * 100 for v in lift["rel_upper"]])
            (line,) = ax.plot(days, centre, label=arm)
            ax.fill_between(days, low, high, color=line.get_color(), alpha=0.15, lw=0)
        ax.axhline(0, color="#888", lw=1)
        level = f"{daily.get('confidence', 0.95):.0%}"
        ax.set_ylabel(f"cumulative lift of {daily['metric']} (%)\npointwise {level} intervals", fontsize=8)
    else:
        for arm, values in daily["arms"].items():
            ax.plot(days, values, label=arm)
        ax.set_ylabel(f"cumulative {daily['metric']} per unit")
    end = np.datetime64(daily["end"], "D") if daily.get("end") else None
    if end is not None and len(days) and days[-1] > end:
        half_day = np.timedelta64(12, "h")
        ax.axvspan(end + half_day, days[-1] + half_day, color="#999", alpha=0.15)
        ax.text(end + np.timedelta64(18, "h"), ax.get_ylim()[1], " post window", va="top", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    ax.legend(frameon=False, fontsize=8)
    return _encode(fig)


def counterfactual(series: Mapping[str, Any], metric: str, start: str, end: str, stop: str) -> str:
    """The treated units' mean of a metric per period beside its counterfactual (what the method says
    it would have been without the promotion), the promotion shaded and the post window lighter."""
    import matplotlib.dates as mdates

    fig, ax = _figure(3.0)
    periods = np.array(series["period"], dtype="datetime64[D]")
    ax.plot(periods, series["actual"], color="#1f4e79", lw=1.2, label="treated units (mean)")
    shown = np.array([np.nan if v is None else v for v in series["counterfactual"]], dtype=float)
    ax.plot(periods, shown, color="#c0504d", lw=1.2, ls="--", label="counterfactual")
    first, last, after = (np.datetime64(day, "D") for day in (start, end, stop))
    ax.axvspan(first, last + np.timedelta64(1, "D"), color="#f9a825", alpha=0.18, lw=0, label="promotion")
    if after > last:
        ax.axvspan(
            last + np.timedelta64(1, "D"), after + np.timedelta64(1, "D"), color="#999", alpha=0.15, lw=0
        )
    ax.set_ylabel(f"{metric} per unit and period", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    ax.legend(frameon=False, fontsize=8)
    return _encode(fig)


def sequence(found: Mapping[str, Any]) -> str:
    """Each treatment arm's difference by day with its always-valid (or boundary-adjusted) interval, and
    the first look that stopped the test (``promolab monitor``'s looks)."""
    import matplotlib.dates as mdates

    fig, ax = _figure(3.0)
    days = np.array([look["date"] for look in found["looks"]], dtype="datetime64[D]")
    primary = [[r for r in look["results"] if r["role"] == "primary"] for look in found["looks"]]
    arms = [r["variant"] for r in primary[0]] if primary else []
    for k, arm in enumerate(arms):
        rows = [results[k] for results in primary]
        centre, low, high = (
            np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
            for key in ("estimate", "ci_lower", "ci_upper")
        )
        (line,) = ax.plot(days, centre, label=arm, marker="o" if len(days) <= 10 else None, ms=3)
        ax.fill_between(days, low, high, color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(0, color="#888", lw=1)
    stop = next((look for look in found["looks"] if look["action"] != "continue"), None)
    if stop is not None:
        ax.axvline(np.datetime64(stop["date"], "D"), color="firebrick", lw=1, ls="--")
        ax.text(
            np.datetime64(stop["date"], "D"), ax.get_ylim()[1], f" {stop['action']}", va="top", fontsize=8
        )
    method = str(found["method"]).replace("_", " ")
    ax.set_ylabel(f"difference in {found['metric']} per unit\n{method} intervals", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    ax.legend(frameon=False, fontsize=8)
    return _encode(fig)
