"""The effect of a rollout (a promotion that was not randomised) on every metric, in each window.

Windows: ``during`` (``start`` to ``end``), ``post`` (the ``post_days`` after it: the dip) and ``total``
(both: the net effect). Per metric and window: ``att``, the average effect per treated unit and period,
``total = att x treated units x periods`` (the sum over the window), their intervals, the relative
lift ``att / counterfactual mean`` (its interval divides the att's by the counterfactual mean, taken as
known) and a p-value of no effect. Methods (``rollout.method``; ``auto`` picks by the data and says why):

- ``did``: difference-in-differences against the untreated units (:mod:`promolab.stats.did`): two-way
  fixed effects on the pre-period and the window (errors clustered by unit; the wild cluster bootstrap
  below 42 units); the event study's pre-trend test is the diagnostic. ``scale: relative`` divides each
  unit by its pre-period mean ``b_i`` and weights it by ``b_i``, so the ATT times the treated units' mean
  ``b`` is the mean of ``b_i x`` their percent effects. Staggered starts (the treated column switches on
  in different periods) get group-time effects over the promoted unit-periods; no post window.
- ``synthetic_control``: the treated units' mean series against a convex combination of the untreated
  units fitted on the pre-period (:mod:`promolab.stats.synthetic`). Inference by placebos: every
  untreated unit, fitted from the others, gives a placebo effect; the statistic is ``|mean gap over the
  window| / pre-period RMSPE``; the p-value is the treated unit's rank among the ``J + 1``; the interval
  inverts that test for a constant effect: ``att -+ a_(k) x RMSPE_treated``, ``a_(k)`` the ``k``-th
  largest placebo statistic, ``k = floor(alpha (J + 1) - 1) + 1``. Fewer than ``1 / alpha - 1``
  untreated units give no interval at that level (``FEW_DONORS``).
- ``its``: the treated units' mean series forecast from its own pre-period (trend, day of week or
  month, yearly Fourier terms with two years of history, regressors; :mod:`promolab.stats.its`);
  with untreated units present, their mean series is a regressor.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from promolab.aggregate.panel import Panel, read_panel
from promolab.errors import DataError
from promolab.sources import DataPath
from promolab.spec import spec_hash
from promolab.spec.rollout import RolloutSpec, period_start
from promolab.stats import did, its, synthetic

type Period = Literal["during", "post", "total"]
CONTROLS = "__controls"  # the ITS regressor: the untreated units' mean series
FEW_DONORS = "FEW_DONORS"
PRE_TREND = "PRE_TREND"  # the event study rejects parallel pre-trends
POOR_FIT = "POOR_FIT"  # the synthetic control misses the pre-period by more than MAX_PRE_MISS
MAX_PRE_MISS = 0.1  # pre-period RMSPE relative to the treated mean level
YEAR_DAYS = 365.25


@dataclass(frozen=True)
class WindowEffect:
    """The effect on one metric over one window (module docstring)."""

    metric: str
    period: Period
    att: float
    att_ci: tuple[float, float] | None
    total: float
    total_ci: tuple[float, float] | None
    rel_lift: float | None
    rel_ci: tuple[float, float] | None
    p_value: float | None
    actual: float  # the treated units' sum over the window
    units: int
    periods: int


@dataclass(frozen=True)
class RolloutAnalysis:
    """Every metric's effect per window, the method and why, diagnostics, and the treated units' mean
    series beside its counterfactual (for the report's plot; None where the method has none)."""

    experiment: str
    spec_hash: str
    method: str
    reason: str
    confidence: float
    results: list[WindowEffect]
    diagnostics: dict[str, Any]
    series: dict[str, dict[str, list[Any]]]
    evidence: str  # "moderate" | "weak": how far the design supports a causal reading
    doubts: list[str] = field(default_factory=list)  # failed diagnostics, in words

    def result(self, metric: str, period: Period) -> WindowEffect | None:
        return next((r for r in self.results if r.metric == metric and r.period == period), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "kind": "rollout",
            "spec_hash": self.spec_hash,
            "method": self.method,
            "reason": self.reason,
            "confidence": self.confidence,
            "results": [asdict(r) for r in self.results],
            "diagnostics": self.diagnostics,
            "evidence": self.evidence,
            "doubts": self.doubts,
            "series": self.series,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutAnalysis:
        results = [
            WindowEffect(**{**r, **{k: _pair(r[k]) for k in ("att_ci", "total_ci", "rel_ci")}})
            for r in data["results"]
        ]
        return cls(
            data["experiment"],
            data["spec_hash"],
            data["method"],
            data["reason"],
            float(data["confidence"]),
            results,
            dict(data["diagnostics"]),
            dict(data["series"]),
            data["evidence"],
            list(data["doubts"]),
        )


def _pair(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


def analyze_rollout(spec: RolloutSpec, path: DataPath | pd.DataFrame) -> RolloutAnalysis:
    """Read the panel (a file or a DataFrame) and estimate every metric's effect by the spec's method."""
    panel = read_panel(spec, path)
    method, reason = choose_method(spec, panel)
    windows = windows_of(spec, panel)
    results: list[WindowEffect] = []
    diagnostics: dict[str, Any] = {
        "treated_units": list(panel.treated),
        "control_units": len(panel.controls),
        "periods": {name: len(periods) for name, periods in windows.items()},
        "rows": panel.rows,
        "grain": spec.rollout.grain,
        "staggered": panel.staggered,
        "metrics": {},
    }
    series: dict[str, dict[str, list[Any]]] = {}
    for metric in spec.metrics:
        effects, detail, line = estimate_metric(method, spec, panel, metric.id, windows)
        results += effects
        diagnostics["metrics"][metric.id] = detail
        series[metric.id] = line
    evidence, doubts = _evidence(method, diagnostics["metrics"][spec.primary], panel)
    return RolloutAnalysis(
        spec.id, spec_hash(spec), method, reason, spec.analysis.confidence, results, diagnostics, series,
        evidence, doubts,
    )  # fmt: skip


def estimate_metric(
    method: str,
    spec: RolloutSpec,
    panel: Panel,
    metric: str,
    windows: Mapping[str, list[dt.date]],
    diagnose: bool = True,
) -> tuple[list[WindowEffect], dict[str, Any], dict[str, list[Any]]]:
    """One metric's effects by ``method`` over ``windows`` (``pre`` and the measured ones), its
    diagnostics (the event study only with ``diagnose``) and its mean series beside the counterfactual."""
    try:
        return ESTIMATORS[method](spec, panel, metric, windows, diagnose)
    except ValueError as error:  # what the estimator cannot fit on this panel (too little history, ...)
        raise DataError(f"{panel.where}: {method} on '{metric}': {error}") from None


def choose_method(spec: RolloutSpec, panel: Panel) -> tuple[str, str]:
    """The method and, in words, why (the spec's choice, or ``auto``'s reading of the data)."""
    method = spec.rollout.method
    n_treated, n_controls = len(panel.treated), len(panel.controls)
    minimum = _min_donors(spec.analysis.confidence)
    if method != "auto":
        _check_method(method, panel, minimum)
        return method, f"rollout.method: {method}"
    if n_controls == 0:
        return "its", "no untreated unit in the panel: the treated series is forecast from its own past"
    if panel.staggered:
        return "did", "treated units started in different periods: group-time difference-in-differences"
    if n_treated == 1 and n_controls >= minimum:
        return "synthetic_control", (
            f"one treated unit and {n_controls} untreated: a weighted combination of untreated units "
            "fitted to its own past (synthetic control), with placebo inference"
        )
    if n_treated >= 2 and n_controls >= 2:
        return "did", (
            f"{n_treated} treated and {n_controls} untreated units: difference-in-differences, its "
            "parallel-trend assumption checked by the event study"
        )
    return "its", (
        f"{n_treated} treated and only {n_controls} untreated unit(s): the treated series is forecast "
        "from its own past, with the untreated units' mean as a regressor"
    )


def _min_donors(confidence: float) -> int:
    """Untreated units a placebo interval at ``confidence`` needs: ``J + 1 >= 1 / alpha``."""
    return math.ceil(1 / (1 - confidence) - 1 - 1e-9)


def _check_method(method: str, panel: Panel, minimum: int) -> None:
    where = f"{panel.where}: rollout.method {method}"
    if method == "did" and len(panel.controls) < 1:
        raise DataError(f"{where} needs untreated units in the panel; it has none (use its)")
    if method == "synthetic_control":
        if len(panel.controls) < 2:
            raise DataError(f"{where} needs >= 2 untreated units, got {len(panel.controls)} (use its)")
        if panel.staggered:
            raise DataError(f"{where} needs one start for every treated unit (use did for staggered starts)")
    if method == "its" and panel.staggered:
        raise DataError(f"{where} needs one start for every treated unit (use did for staggered starts)")


def windows_of(spec: RolloutSpec, panel: Panel) -> dict[str, list[dt.date]]:
    """Periods of the fitting period (``pre``) and of each measured window."""
    grain = spec.rollout.grain
    start, after_end = period_start(spec.start, grain), spec.end + dt.timedelta(days=1)
    windows = {
        "pre": [p for p in panel.periods if p < start],
        "during": [p for p in panel.periods if start <= p < after_end],
        "post": [p for p in panel.periods if p >= after_end],
    }
    windows["total"] = windows["during"] + windows["post"]
    if len(windows["pre"]) < 2:
        raise DataError(f"{panel.where}: {len(windows['pre'])} {grain}(s) before start; the fit needs >= 2")
    return windows


def measured(windows: Mapping[str, list[dt.date]]) -> list[Period]:
    """The windows to report: ``total`` only beside a post window (else it is ``during``)."""
    return ["during", "post", "total"] if windows["post"] else ["during"]


def _effect(
    metric: str,
    period: Period,
    att: float,
    ci: tuple[float, float] | None,
    p: float | None,
    actual_mean: float,
    units: int,
    periods: int,
) -> WindowEffect:
    """A window's effect from its per-unit-period ATT (``actual_mean``: the treated units' mean)."""
    scale = units * periods
    base = actual_mean - att
    relative = base != 0 and math.isfinite(base)
    return WindowEffect(
        metric=metric,
        period=period,
        att=att,
        att_ci=ci,
        total=att * scale,
        total_ci=None if ci is None else (ci[0] * scale, ci[1] * scale),
        rel_lift=att / base if relative else None,
        rel_ci=None if ci is None or not relative else _ordered(ci[0] / base, ci[1] / base),
        p_value=p,
        actual=actual_mean * scale,
        units=units,
        periods=periods,
    )


def _ordered(a: float, b: float) -> tuple[float, float]:
    return (min(a, b), max(a, b))


def _wide(panel: Panel, metric: str) -> pd.DataFrame:
    """Periods x units of one metric."""
    return panel.frame.pivot(index="period", columns="unit", values=metric).sort_index()


def _series(wide: pd.DataFrame, panel: Panel, counterfactual: list[float | None]) -> dict[str, list[Any]]:
    actual = wide[list(panel.treated)].mean(axis=1)
    return {
        "period": [str(p) for p in wide.index],
        "actual": [float(v) for v in actual],
        "counterfactual": counterfactual,
    }


# --------------------------------------------------------------------------- difference-in-differences


def _did(
    spec: RolloutSpec, panel: Panel, metric: str, windows: Mapping[str, list[dt.date]], diagnose: bool = True
) -> tuple[list[WindowEffect], dict[str, Any], dict[str, list[Any]]]:
    frame = panel.frame[["unit", "period", metric]].copy()
    treated = frame["unit"].isin(panel.treated).to_numpy()
    wide = _wide(panel, metric)
    if panel.staggered:
        return _group_time(spec, panel, metric, frame, wide)
    factor, weight = 1.0, None
    if spec.rollout.scale == "relative":
        base = _pre_means(wide, windows["pre"], panel.where, metric)
        frame[metric] = frame[metric] / frame["unit"].map(base)
        frame["weight"] = frame["unit"].map(base)
        factor, weight = float(base[list(panel.treated)].mean()), "weight"
    confidence = spec.analysis.confidence
    effects, methods = [], {}
    for period in measured(windows):
        keep = frame["period"].isin([*windows["pre"], *windows[period]]).to_numpy()
        sub = frame[keep].assign(
            d=(treated[keep] & frame.loc[keep, "period"].isin(windows[period])).astype(int)
        )
        fit = did.twfe(sub, metric, "unit", "period", "d", confidence, weight=weight)
        methods[period] = {"method": fit.method, "se": fit.se, "flags": list(fit.flags)}
        mean = float(wide.loc[windows[period], list(panel.treated)].to_numpy().mean())
        ci = None if fit.ci is None else (fit.ci[0] * factor, fit.ci[1] * factor)
        effects.append(
            _effect(
                metric,
                period,
                fit.att * factor,
                ci,
                fit.p_value,
                mean,
                len(panel.treated),
                len(windows[period]),
            )
        )
    study = _event_study(frame, treated, windows, metric, confidence, weight) if diagnose else {}
    cf = _did_counterfactual(wide, panel, windows["pre"], spec.rollout.scale == "relative")
    return effects, {"estimators": methods, **study}, _series(wide, panel, cf)


def _event_study(
    frame: pd.DataFrame,
    treated: np.ndarray,
    windows: Mapping[str, list[dt.date]],
    metric: str,
    confidence: float,
    weight: str | None,
) -> dict[str, Any]:
    """Leads and lags (up to 8 leads) and the pre-trend test's p-value."""
    marked = frame.assign(d=(treated & frame["period"].isin(windows["total"])).astype(int))
    leads = min(len(windows["pre"]) - 1, 8)
    lags = len(windows["total"]) - 1
    study = did.event_study(marked, metric, "unit", "period", "d", leads, lags, confidence, weight)
    return {
        "pretrend_p_value": study.pretrend_p_value,
        "event_study": {str(k): {"estimate": e, "ci": list(ci)} for k, (e, _, ci) in study.estimates.items()},
        "event_study_flags": list(study.flags),
    }


def _did_counterfactual(
    wide: pd.DataFrame, panel: Panel, pre: list[dt.date], relative: bool
) -> list[float | None]:
    """The treated mean had it moved like the untreated units: in levels ``treated_pre + (control_t -
    control_pre)``; relative, ``treated_pre x`` the untreated units' mean index (each unit over its
    own pre-period mean)."""
    treated = wide[list(panel.treated)].mean(axis=1)
    controls = wide[list(panel.controls)]
    if relative:
        shifted = treated.loc[pre].mean() * (controls / controls.loc[pre].mean()).mean(axis=1)
    else:
        shifted = treated.loc[pre].mean() + controls.mean(axis=1) - controls.loc[pre].mean().mean()
    return [float(v) for v in shifted]


def _pre_means(wide: pd.DataFrame, pre: list[dt.date], where: str, metric: str) -> pd.Series:
    """Every unit's pre-period mean: the base of the relative scale (must be positive)."""
    base = wide.loc[pre].mean()
    bad = base[~(base > 0)]
    if not bad.empty:
        raise DataError(
            f"{where}: unit '{bad.index[0]}' has a pre-period mean of '{metric}' of {bad.iloc[0]:g}; the "
            "relative scale divides by it: use rollout.scale: level"
        )
    return base


def _group_time(
    spec: RolloutSpec, panel: Panel, metric: str, frame: pd.DataFrame, wide: pd.DataFrame
) -> tuple[list[WindowEffect], dict[str, Any], dict[str, list[Any]]]:
    """Staggered starts: Callaway-Sant'Anna over the promoted periods (each unit's start to ``end``);
    ``total`` is the ATT times the promoted unit-periods. The post window is not estimated."""
    last = period_start(spec.end, spec.rollout.grain)
    kept = frame[frame["period"] <= last]
    starts = kept["unit"].map(panel.starts)
    fit = did.group_time(
        kept.assign(start=starts), metric, "unit", "period", "start", spec.analysis.confidence
    )
    promoted = [(u, p) for u in panel.treated for p in wide.index if panel.starts[u] <= p <= last]
    mean = float(np.mean([wide.at[p, u] for u, p in promoted]))
    effect = _effect(metric, "during", fit.att, fit.ci, fit.p_value, mean, 1, len(promoted))
    detail = {
        "estimators": {"during": {"method": "group-time", "se": fit.se, "flags": []}},
        "cohorts": {str(g): n for g, n in fit.cohorts.items()},
        "unit_periods": len(promoted),
        "pretrend_p_value": None,
        "note": "staggered starts: one effect over every treated unit's promoted periods (start to end); "
        "the post window is not estimated",
    }
    return (
        [dataclasses.replace(effect, units=len(panel.treated))],
        detail,
        _series(wide, panel, [None] * len(wide)),
    )


# --------------------------------------------------------------------------- synthetic control


def _synthetic(
    spec: RolloutSpec, panel: Panel, metric: str, windows: Mapping[str, list[dt.date]], diagnose: bool = True
) -> tuple[list[WindowEffect], dict[str, Any], dict[str, list[Any]]]:
    wide = _wide(panel, metric)
    treated_name = "__treated_mean"
    series = wide[list(panel.controls)].assign(**{treated_name: wide[list(panel.treated)].mean(axis=1)})
    start = windows["total"][0]
    donors = list(panel.controls)
    fitted = synthetic.fit(series, treated_name, donors, start)
    placebos = {d: synthetic.fit(series, d, [o for o in donors if o != d], start) for d in donors}
    alpha = 1 - spec.analysis.confidence
    k = math.floor(alpha * (len(donors) + 1) - 1 + 1e-12) + 1
    effects = []
    for period in measured(windows):
        inside = np.asarray(series.index.isin(windows[period]))
        att = float(fitted.gaps[inside].mean())
        stat = abs(att) / fitted.pre_rmspe if fitted.pre_rmspe > 0 else math.inf
        others = sorted(
            (abs(p.gaps[inside].mean()) / p.pre_rmspe if p.pre_rmspe > 0 else math.inf)
            for p in placebos.values()
        )[::-1]
        p_value = (1 + sum(bool(o >= stat) for o in others)) / (len(others) + 1)
        ci = None
        if 1 <= k <= len(others) and math.isfinite(others[k - 1]):
            half = float(others[k - 1] * fitted.pre_rmspe)
            ci = (att - half, att + half)
        mean = float(series.loc[windows[period], treated_name].mean())
        effects.append(
            _effect(metric, period, att, ci, p_value, mean, len(panel.treated), len(windows[period]))
        )
    level = float(series.loc[windows["pre"], treated_name].abs().mean())
    ratios = {d: p.ratio for d, p in placebos.items()}
    detail = {
        "weights": dict(sorted(fitted.weights.items(), key=lambda kv: -kv[1])),
        "pre_rmspe": fitted.pre_rmspe,
        "pre_rmspe_relative": fitted.pre_rmspe / level if level > 0 else None,
        "rmspe_ratio": fitted.ratio,
        "rmspe_ratio_p_value": synthetic.placebo_p_value(fitted.ratio, ratios),
        "placebos": len(donors),
        "flags": [FEW_DONORS] if k < 1 else [],
    }
    synthetic_line = series[treated_name].to_numpy() - fitted.gaps
    return effects, detail, _series(wide, panel, [float(v) for v in synthetic_line])


# --------------------------------------------------------------------------- interrupted time series


def _its(
    spec: RolloutSpec, panel: Panel, metric: str, windows: Mapping[str, list[dt.date]], diagnose: bool = True
) -> tuple[list[WindowEffect], dict[str, Any], dict[str, list[Any]]]:
    wide = _wide(panel, metric)
    data = pd.DataFrame({"period": wide.index, "y": wide[list(panel.treated)].mean(axis=1).to_numpy()})
    regressors = list(spec.rollout.regressors)
    for name in regressors:
        values = panel.frame[panel.frame["unit"].isin(panel.treated)].groupby("period")[name].mean()
        data[name] = values.reindex(wide.index).to_numpy()
    if panel.controls:
        data[CONTROLS] = wide[list(panel.controls)].mean(axis=1).to_numpy()
        regressors.append(CONTROLS)
    season = _season(spec, data, len(windows["pre"]))
    regressors += _yearly(spec, data, windows["pre"])
    spans: dict[str, tuple[object, object]] = {w: (windows[w][0], windows[w][-1]) for w in measured(windows)}
    fit = its.interrupted_time_series(
        data, "y", "period", windows["total"][0], season, regressors, spans, spec.analysis.confidence
    )
    effects = []
    for period in measured(windows):
        average, _ = fit.windows[period]
        mean = float(data.loc[data["period"].isin(windows[period]), "y"].mean())
        units, periods = len(panel.treated), len(windows[period])
        effects.append(
            _effect(metric, period, average.value, average.ci, average.p_value, mean, units, periods)
        )
    detail = {
        "season": season,
        "regressors": [r if r != CONTROLS else "untreated units' mean" for r in regressors],
        "residual_autocorrelation": fit.residual_autocorrelation,
        "flags": list(fit.flags),
        "pointwise_ci": [[float(a), float(b)] for a, b in fit.pointwise_ci],
    }
    line: list[float | None] = [None] * len(windows["pre"]) + [float(v) for v in fit.forecast]
    return effects, detail, _series(wide, panel, line)


def _season(spec: RolloutSpec, data: pd.DataFrame, pre_periods: int) -> str | None:
    """Day of week at a daily grain; month at a monthly grain with two years of history; else none."""
    grain = spec.rollout.grain
    if grain == "day" and pre_periods >= 14:
        data["season"] = [p.weekday() for p in data["period"]]
        return "season"
    if grain == "month" and pre_periods >= 24:
        data["season"] = [p.month for p in data["period"]]
        return "season"
    return None


def _yearly(spec: RolloutSpec, data: pd.DataFrame, pre: list[dt.date]) -> list[str]:
    """Two Fourier pairs of the day of the year, with two years of daily or weekly history."""
    if spec.rollout.grain not in ("day", "week") or (pre[-1] - pre[0]).days < 2 * YEAR_DAYS:
        return []
    names = []
    angle = np.array([p.timetuple().tm_yday for p in data["period"]]) * 2 * np.pi / YEAR_DAYS
    for harmonic in (1, 2):
        for name, wave in (("sin", np.sin), ("cos", np.cos)):
            column = f"__year_{name}{harmonic}"
            data[column] = wave(harmonic * angle)
            names.append(column)
    return names


ESTIMATORS = {"did": _did, "synthetic_control": _synthetic, "its": _its}

# --------------------------------------------------------------------------- evidence


def _evidence(method: str, detail: Mapping[str, Any], panel: Panel) -> tuple[str, list[str]]:
    """How strongly the design supports a causal reading, and which diagnostics failed."""
    doubts = []
    pretrend = detail.get("pretrend_p_value")
    if method == "did" and pretrend is not None and pretrend < 0.05:
        doubts.append(f"{PRE_TREND}: the event study rejects parallel pre-trends (p = {pretrend:.3g})")
    flags = [f for e in detail.get("estimators", {}).values() for f in e["flags"]]
    if did.FEW_CLUSTERS in flags:
        doubts.append(f"{did.FEW_CLUSTERS}: one treated or one untreated unit: no standard error exists")
    miss = detail.get("pre_rmspe_relative")
    if method == "synthetic_control" and miss is not None and miss > MAX_PRE_MISS:
        doubts.append(f"{POOR_FIT}: the synthetic control misses the pre-period by {miss:.0%} of its level")
    if FEW_DONORS in detail.get("flags", []):
        doubts.append(f"{FEW_DONORS}: too few untreated units for a placebo interval at this confidence")
    if its.AUTOCORRELATED in detail.get("flags", []):
        rho = detail["residual_autocorrelation"]
        doubts.append(
            f"{its.AUTOCORRELATED}: the forecast errors are autocorrelated (lag-1 {rho:.2f}); they are "
            "modelled as ARMA(1, 1), but a lasting shock makes week-long forecasts less certain than shown"
        )
    controlled = method != "its" or bool(panel.controls)
    return ("moderate" if controlled and not doubts else "weak"), doubts
