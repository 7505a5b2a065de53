"""The one number formatter of the CLI tables, the reports and the verdict lines.

- money: thousands separators, no decimals, then the currency (``-5,281 USD``);
- rates and relative lifts: percent (``12.3%``, ``+4.1%``); differences of two proportions:
  percentage points (``+1.2 pp``);
- p-values: four decimals, ``<0.0001`` below;
- other numbers: three significant digits, thousands separators from 1,000 up.

A missing value (``None``) is an en dash everywhere.
"""

from __future__ import annotations

import math

MISSING = "–"


def money(value: float | None, currency: str = "") -> str:
    """``-5,281 USD``: rounded to the unit of currency."""
    if value is None:
        return MISSING
    return f"{_rounded(value, 0):,.0f} {currency}".strip()


def percent(value: float | None, digits: int = 1, signed: bool = False) -> str:
    """A share or relative change as percent: ``0.123`` -> ``12.3%`` (``+12.3%`` when ``signed``)."""
    if value is None:
        return MISSING
    sign = "+" if signed else ""
    return f"{_rounded(value * 100, digits):{sign},.{digits}f}%"


def points(value: float | None, digits: int = 2) -> str:
    """A difference of two proportions in percentage points: ``0.0123`` -> ``+1.23 pp``."""
    return MISSING if value is None else f"{_rounded(value * 100, digits):+.{digits}f} pp"


def p_value(value: float | None) -> str:
    return MISSING if value is None else ("<0.0001" if value < 1e-4 else f"{value:.4f}")


def p_equals(value: float | None, name: str = "p") -> str:
    """``p = 0.0016``, or ``p < 0.0001`` below four decimals."""
    if value is None:
        return f"{name} {MISSING}"
    return f"{name} < 0.0001" if value < 1e-4 else f"{name} = {value:.4f}"


def probability(value: float | None) -> str:
    """A probability to three decimals (``0.965``; ``<0.001`` and ``>0.999`` at the ends)."""
    if value is None:
        return MISSING
    if 0 < value < 5e-4:
        return "<0.001"
    if 0.9995 <= value < 1:
        return ">0.999"
    return f"{value:.3f}"


def number(value: float | None, digits: int = 3, signed: bool = False) -> str:
    """Three significant digits; whole numbers with separators from 1,000 up (``49,854``)."""
    if value is None:
        return MISSING
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:{'+' if signed else ''},}"
    if not math.isfinite(value):
        return str(value)
    sign = "+" if signed else ""
    if abs(value) >= 10**digits:
        return f"{_rounded(value, 0):{sign},.0f}"
    return f"{value:{sign}.{digits}g}"


def interval(low: float | None, high: float | None, shown: str = "number", **options: object) -> str:
    """``[low, high]`` with both ends in one of this module's styles (``money``, ``percent``, ``points``,
    ``number``) and its options."""
    style = {"money": money, "percent": percent, "points": points, "number": number}[shown]
    if low is None or high is None:
        return MISSING
    return f"[{style(low, **options)}, {style(high, **options)}]"  # type: ignore[operator]


def _rounded(value: float, digits: int) -> float:
    """``value`` rounded as printed, a negative that rounds to zero printed as 0 (never ``-0``)."""
    shown = round(value, digits)
    return 0.0 if shown == 0 else shown
