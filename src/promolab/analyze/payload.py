"""The analysis JSON (``promolab analyze --json``) read back: its structure and every number checked.

A saved analysis feeds reports and reviews without the data, so it is an input like any other: a
hand-edited or truncated file must stop with a message naming the field (``arms.control.n: must be at
least 2``), never produce a report from NaN means, negative counts or a co-moment matrix of the wrong
shape. Fields promolab does not read are allowed (files from later versions); the ones it reads are
validated here.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from promolab.errors import DataError, format_path, printable

Finite = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=10**12)]
Interval = tuple[Finite, Finite]
MAX_MEAN_SQUARED_SUM = 1e300  # n * mean^2 beyond this overflows the sums the economics forms


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=False)


class SavedMoments(_Model):
    """One arm's moments: ``n >= 2`` units, a finite mean per name, a square symmetric co-moment matrix
    with a non-negative diagonal."""

    names: list[str] = Field(min_length=1)
    n: Annotated[int, Field(ge=2, le=10**12)]
    mean: list[Finite]
    comoment: list[list[Finite]]

    @model_validator(mode="after")
    def _shapes(self) -> SavedMoments:
        d = len(self.names)
        if len(self.mean) != d:
            raise ValueError(f"mean has {len(self.mean)} values for {d} names")
        if len(self.comoment) != d or any(len(row) != d for row in self.comoment):
            raise ValueError(f"comoment must be a {d} x {d} matrix (one row and column per name)")
        for i in range(d):
            if self.comoment[i][i] < 0:
                raise ValueError(f"comoment[{i}][{i}] is a sum of squares, got {self.comoment[i][i]:g}")
            for j in range(i):
                a, b = self.comoment[i][j], self.comoment[j][i]
                if abs(a - b) > 1e-9 * max(abs(a), abs(b), 1e-300):
                    raise ValueError(f"comoment is not symmetric at [{i}][{j}]")
        if any(self.n * m * m > MAX_MEAN_SQUARED_SUM for m in self.mean):
            raise ValueError("means too large for their sums to be finite")
        return self


class SavedResult(_Model):
    metric: str
    variant: str
    role: str
    n_control: Count
    n_variant: Count
    control_mean: Finite | None
    variant_mean: Finite | None
    abs_diff: Finite | None
    se: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None
    abs_ci: Interval | None
    rel_lift: Finite | None
    rel_ci: Interval | None
    p_value: Probability | None
    p_value_adjusted: Probability | None
    method: str
    flags: list[str] = Field(default_factory=list)
    rel_se_log: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    window: Literal["during", "post", "total"] | None = None
    adjusted_for: list[str] = Field(default_factory=list)
    bayes: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SavedResult:
        for name in ("abs_ci", "rel_ci"):
            bounds = getattr(self, name)
            if bounds is not None and bounds[0] > bounds[1]:
                raise ValueError(f"{name}: the lower bound {bounds[0]:g} is above the upper {bounds[1]:g}")
        return self


class SavedSrm(_Model):
    chi2: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    p_value: Probability
    flag: bool


class SavedDecision(_Model):
    action: Literal["ship", "iterate", "stop"]
    variant: str | None
    reason: str


class SavedGuardrail(_Model):
    metric: str
    variant: str
    margin: str
    p_value: Probability | None
    passed: bool


class SavedDaily(_Model):
    metric: str
    days: list[dt.date]
    arms: dict[str, list[Finite]]

    @model_validator(mode="after")
    def _aligned(self) -> SavedDaily:
        for arm, values in self.arms.items():
            if len(values) != len(self.days):
                raise ValueError(f"arms.{arm} has {len(values)} values for {len(self.days)} days")
        return self


class SavedLookResult(_Model):
    metric: str
    variant: str
    role: Literal["primary", "guardrail"]
    estimate: Finite | None
    ci_lower: float | None  # an infinite boundary leaves the interval unbounded
    ci_upper: float | None
    p_value: Probability | None
    crossed: bool


class SavedLook(_Model):
    date: dt.date
    n: Count
    fraction: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    results: list[SavedLookResult]
    action: Literal["continue", "stop_win", "stop_harm", "stop_futility"]


class SavedMonitor(_Model):
    """The fields of ``promolab monitor --json`` that reports read."""

    experiment: str
    spec_hash: str
    metric: str
    method: Literal["always_valid", "group_sequential"]
    looks: list[SavedLook] = Field(min_length=1)
    verdict: Literal["continue", "stop_win", "stop_harm", "stop_futility"]
    stopped_on: dt.date | None


class SavedAnalysis(_Model):
    """The fields of an analysis payload that reports, reviews and decisions read."""

    experiment: str
    reference: str
    spec_hash: str
    srm: SavedSrm
    results: list[SavedResult] = Field(min_length=1)
    arms: dict[str, SavedMoments] = Field(min_length=2)
    guardrails: list[SavedGuardrail]
    decision: SavedDecision | None = None  # written by the CLI; reports decide again
    method: Literal["frequentist", "bayesian", "both"] = "frequentist"
    daily: SavedDaily | None = None
    caps: dict[str, Finite] = Field(default_factory=dict)


def check_saved_analysis(payload: object, source: str) -> None:
    """Raise a :class:`DataError` naming the first malformed field of a saved analysis payload."""
    check_saved(SavedAnalysis, payload, source, "analysis, rerun `promolab analyze --json`")


def check_saved(model: type[BaseModel], payload: object, source: str, what: str) -> None:
    """Validate ``payload`` with ``model``; a :class:`DataError` names the first bad field and how many
    more there are: ``results.json: arms.control.n: must be ... ; not a valid promolab <what>``."""
    try:
        model.model_validate(payload)
    except ValidationError as error:
        details = error.errors(include_url=False)
        first = details[0]
        more = f" (and {len(details) - 1} more problem(s))" if len(details) > 1 else ""
        raise DataError(
            printable(
                f"{source}: {format_path(first['loc'])}: {_message(first)}{more}; not a valid promolab {what}"
            )
        ) from None


def _message(detail: Any) -> str:
    text = str(detail["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
    got = detail.get("input")
    if detail["type"] == "missing" or isinstance(got, dict | list):
        return text
    shown = repr(got)
    if isinstance(got, float) and not math.isfinite(got):
        shown = str(got)
    return f"{text}, got {shown[:40]}"
