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

With autocorrelated residuals (lag-1 autocorrelation above ``MAX_AUTOCORRELATION``, flagged
``AUTOCORRELATED``: a demand shock lasts) the errors are ARMA(1, 1) (an AR(1) shock seen through
independent noise), fitted with the regression by statsmodels' state-space ``SARIMAX``. The forecast
is its conditional mean given the fitting period; the forecast errors' covariance is
``s_u^2 L L' + X V X'``, ``L[h, j] = psi_(h-j)`` the ARMA's moving-average weights (``psi_0 = 1``),
``V`` the regression coefficients' covariance. Without autocorrelation ``L = I``: the OLS case above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

type Array = npt.NDArray[np.float64]

MAX_AUTOCORRELATION = 0.3
MIN_ARMA_DF = 10  # fewer residual degrees of freedom cannot fit ARMA errors: OLS errors, still flagged
AUTOCORRELATED = "AUTOCORRELATED"


@dataclass(frozen=True)
class Effect:
    """An effect over some periods with its interval."""

    value: float
    ci: tuple[float, float]
    p_value: float  # two-sided, of no effect over the periods (t with n - k degrees of freedom)


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
    residuals = np.asarray(fitted.resid)
    rho = float(np.corrcoef(residuals[:-1], residuals[1:])[0, 1])
    flags = (AUTOCORRELATED,) if abs(rho) > MAX_AUTOCORRELATION else ()
    params, cov, scale = fitted.params, fitted.cov_params(), float(fitted.scale)
    df = int(fitted.df_resid)
    after = ~before
    forecast = x[after] @ params
    weights = np.zeros(int(after.sum()))
    weights[0] = 1.0
    if flags and before.sum() - x.shape[1] - 3 >= MIN_ARMA_DF:
        forecast, weights, cov, scale, df = _arma_errors(y[before], x[before], x[after])
    q = float(stats.t.ppf(0.5 + confidence / 2, df))
    gaps = y[after] - forecast
    covariance = _forecast_covariance(x[after], cov, scale, weights)
    sd = np.sqrt(np.diag(covariance))
    pointwise = np.column_stack([gaps - q * sd, gaps + q * sd])
    post_time = data.loc[after, time].to_numpy()
    spans = windows or {"total": (post_time[0], post_time[-1])}
    effects = {
        name: _window_effect(gaps, covariance, df, q, (post_time >= first) & (post_time <= last))
        for name, (first, last) in spans.items()
    }
    return ItsResult(list(post_time), y[after], forecast, pointwise, effects, rho, flags)


def _design(data: pd.DataFrame, season: str | None, regressors: Sequence[str]) -> Array:
    """``[1, t, season dummies (first level dropped), regressors]``, ``t`` the row's position."""
    columns = [np.ones(len(data)), np.arange(len(data), dtype=float)]
    if season is not None:
        dummies = pd.get_dummies(data[season].astype("category"), dtype=float).to_numpy()[:, 1:]
        columns += list(dummies.T)
    columns += [data[r].to_numpy(dtype=float) for r in regressors]
    return np.column_stack(columns)


def _arma_errors(y: Array, x: Array, x_after: Array) -> tuple[Array, Array, Array, float, int]:
    """Regression with ARMA(1, 1) errors (``SARIMAX``, no constant beyond ``x``'s): the forecast, the
    moving-average weights ``psi``, the regression coefficients' covariance, the innovation variance
    and the residual degrees of freedom."""
    import warnings

    from statsmodels.tsa.arima_process import arma2ma
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the fit is checked below
        fitted = SARIMAX(y, exog=x, order=(1, 0, 1)).fit(disp=False)
    k = x.shape[1]
    params = np.asarray(fitted.params)
    phi, theta, scale = float(params[k]), float(params[k + 1]), float(params[k + 2])
    forecast = np.asarray(fitted.get_forecast(len(x_after), exog=x_after).predicted_mean)
    weights = arma2ma(np.array([1.0, -phi]), np.array([1.0, theta]), lags=len(x_after))
    cov = np.asarray(fitted.cov_params())[:k, :k]
    return forecast, np.asarray(weights, dtype=float), cov, scale, len(y) - k - 3


def _forecast_covariance(x_after: Array, cov: Array, scale: float, weights: Array) -> Array:
    """Covariance of the forecast errors of every period after the start (module docstring)."""
    h = np.arange(len(x_after))
    steps = h[:, None] - h[None, :]
    noise = np.where(steps >= 0, weights[np.clip(steps, 0, None)], 0.0)
    return np.asarray(scale * noise @ noise.T + x_after @ cov @ x_after.T)


def _window_effect(
    gaps: Array, covariance: Array, df: int, q: float, inside: npt.NDArray[np.bool_]
) -> tuple[Effect, Effect]:
    """(average, cumulative) effect over the periods ``inside``: the sum's variance is the sum of the
    forecast errors' covariance over those periods (module docstring)."""
    from scipy import stats

    count = int(inside.sum())
    if count == 0:
        raise ValueError("a window holds no period after the start")
    total = float(gaps[inside].sum())
    se = float(np.sqrt(covariance[np.ix_(inside, inside)].sum()))
    p = float(2 * stats.t.sf(abs(total) / se, df))
    cumulative = Effect(total, (total - q * se, total + q * se), p)
    average = Effect(total / count, (cumulative.ci[0] / count, cumulative.ci[1] / count), p)
    return average, cumulative
