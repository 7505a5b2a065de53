"""Interrupted time series: one treated series judged against its own forecast (no control units).

The counterfactual is an OLS model fitted on the periods before the start only:
``y_t = b0 + b1 t + season_t + c'x_t + e_t`` (a linear trend, one dummy per season level such as the
day of week or the month, optional regressors ``x``; ``e`` independent with variance ``s^2``). After
the start, the effect of period ``t`` is ``y_t - yhat_t``. Intervals are prediction intervals (the
parameters' uncertainty plus the period's own noise), t with ``n - k`` degrees of freedom:

- pointwise: ``Var(y_t - yhat_t) = s^2 + x_t' V x_t``;
- cumulative over periods ``P``: ``Var(sum (y_t - yhat_t)) = |P| s^2 + S' V S``, ``S = sum_P x_t``
  (the forecasts share the parameters, so their errors are correlated: never the sum of pointwise
  variances); the average is the cumulative divided by ``|P|``.

``V`` is the OLS covariance of the parameters. Autocorrelated errors make these intervals too narrow;
the result carries the lag-1 autocorrelation of the pre-period residuals and flags it
(``AUTOCORRELATED``) above ``MAX_AUTOCORRELATION``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

type Array = npt.NDArray[np.float64]

MAX_AUTOCORRELATION = 0.3
AUTOCORRELATED = "AUTOCORRELATED"


@dataclass(frozen=True)
class Effect:
    """An effect over some periods with its interval."""

    value: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class ItsResult:
    """Forecast, pointwise effects, and the average and cumulative effect of each post window."""

    periods: list[object]  # the post periods, in order
    actual: Array
    forecast: Array
    pointwise_ci: Array  # post periods x 2: interval of each period's effect
    windows: dict[str, tuple[Effect, Effect]]  # name -> (average, cumulative)
    residual_autocorrelation: float
    flags: tuple[str, ...]


def interrupted_time_series(
    frame: pd.DataFrame,
    outcome: str,
    time: str,
    start: object,
    season: str | None = None,
    regressors: Sequence[str] = (),
    windows: dict[str, tuple[object, object]] | None = None,
    confidence: float = 0.95,
) -> ItsResult:
    """ITS of ``outcome`` (rows in ``time`` order) with the counterfactual fitted before ``start``.

    Args:
        season: a column whose levels get one dummy each (day of week, month), or None.
        regressors: numeric columns entering the model (e.g. temperature).
        windows: name -> (first, last) period (inclusive) to report the average and cumulative effect
            of, e.g. ``{"during": (start, end), "post": (end + 1, stop)}``; default: every period
            from ``start`` on, as ``"total"``.
    """
    import statsmodels.api as sm
    from scipy import stats

    data = frame.sort_values(time).reset_index(drop=True)
    x = _design(data, season, regressors)
    before = (data[time] < start).to_numpy()
    if before.sum() <= x.shape[1] + 1:
        raise ValueError(f"{before.sum()} periods before the start cannot fit {x.shape[1]} parameters")
    y = data[outcome].to_numpy(dtype=float)
    fitted = sm.OLS(y[before], x[before]).fit()
    params, cov, scale = fitted.params, fitted.cov_params(), float(fitted.scale)
    df = int(fitted.df_resid)
    q = float(stats.t.ppf(0.5 + confidence / 2, df))
    after = ~before
    forecast = x[after] @ params
    gaps = y[after] - forecast
    var = scale + np.einsum("ij,jk,ik->i", x[after], cov, x[after])
    pointwise = np.column_stack([gaps - q * np.sqrt(var), gaps + q * np.sqrt(var)])
    post_time = data.loc[after, time].to_numpy()
    spans = windows or {"total": (post_time[0], post_time[-1])}
    effects = {
        name: _window_effect(gaps, x[after], cov, scale, q, (post_time >= first) & (post_time <= last))
        for name, (first, last) in spans.items()
    }
    residuals = np.asarray(fitted.resid)
    rho = float(np.corrcoef(residuals[:-1], residuals[1:])[0, 1])
    flags = (AUTOCORRELATED,) if abs(rho) > MAX_AUTOCORRELATION else ()
    return ItsResult(list(post_time), y[after], forecast, pointwise, effects, rho, flags)


def _design(data: pd.DataFrame, season: str | None, regressors: Sequence[str]) -> Array:
    """``[1, t, season dummies (first level dropped), regressors]``, ``t`` the row's position."""
    columns = [np.ones(len(data)), np.arange(len(data), dtype=float)]
    if season is not None:
        dummies = pd.get_dummies(data[season].astype("category"), dtype=float).to_numpy()[:, 1:]
        columns += list(dummies.T)
    columns += [data[r].to_numpy(dtype=float) for r in regressors]
    return np.column_stack(columns)


def _window_effect(
    gaps: Array, x: Array, cov: Array, scale: float, q: float, inside: npt.NDArray[np.bool_]
) -> tuple[Effect, Effect]:
    """(average, cumulative) effect over the periods ``inside`` (module docstring)."""
    count = int(inside.sum())
    if count == 0:
        raise ValueError("a window holds no period after the start")
    total = float(gaps[inside].sum())
    summed = x[inside].sum(axis=0)
    se = float(np.sqrt(count * scale + summed @ cov @ summed))
    cumulative = Effect(total, (total - q * se, total + q * se))
    average = Effect(total / count, (cumulative.ci[0] / count, cumulative.ci[1] / count))
    return average, cumulative
