"""Planning inputs estimated from pre-period data (one row per unit, a column per metric id).

A pre-period file holds, for each unit, the value each metric took in a comparable window before
the test (column named after the metric id; a ratio metric needs its numerator and denominator
columns), optional covariate columns (for CUPED) and an optional cluster column (for the ICC).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from promolab.errors import DataError
from promolab.kinds import kind_of
from promolab.sources import read_frame
from promolab.spec.models import AnyMetric, Baseline, RatioMetric
from promolab.stats.sizing import Outcome

MIN_ROWS = 2  # a standard deviation needs two values


def outcome_from_baseline(metric: AnyMetric, baseline: Baseline) -> Outcome:
    """Outcome from the spec's ``design.baseline`` entry."""
    if kind_of(metric).proportion:
        assert baseline.rate is not None  # checked by the spec
        return Outcome(mean=baseline.rate)
    assert baseline.mean is not None
    assert baseline.sd is not None
    return Outcome(mean=baseline.mean, sd=baseline.sd)


def outcome_from_data(metric: AnyMetric, frame: pd.DataFrame, source: str) -> Outcome:
    """Outcome of ``metric`` estimated from per-unit pre-period values.

    Ratio metrics use the delta method: the ratio of sums ``R = sum(y) / sum(x)`` has per-unit
    linearised sd ``sd(y - R x) / mean(x)``. Ordinal metrics use the mean and sd of the scores of
    respondents (missing values dropped).
    """
    if isinstance(metric, RatioMetric):
        y = _column(frame, metric.numerator, source)
        x = _column(frame, metric.denominator, source)
        if x.sum() == 0:
            raise DataError(
                f"{source}: column '{metric.denominator}' sums to 0; the ratio '{metric.id}' is undefined"
            )
        ratio = y.sum() / x.sum()
        return _checked(
            Outcome(mean=float(ratio), sd=float(np.std(y - ratio * x, ddof=1) / x.mean())), metric, source
        )
    values = _column(frame, metric.id, source, missing_allowed=not kind_of(metric).absent_is_zero)
    values = values[~np.isnan(values)]
    if len(values) < MIN_ROWS:
        raise DataError(
            f"{source}: column '{metric.id}' has {len(values)} value(s); a baseline needs {MIN_ROWS}"
        )
    if kind_of(metric).proportion:
        if not np.isin(values, (0.0, 1.0)).all():
            raise DataError(
                f"{source}: column '{metric.id}' of binary metric '{metric.id}' holds values other than 0/1"
            )
        return _checked(Outcome(mean=float(values.mean())), metric, source)
    return _checked(Outcome(mean=float(values.mean()), sd=float(values.std(ddof=1))), metric, source)


def _checked(outcome: Outcome, metric: AnyMetric, source: str) -> Outcome:
    """A baseline that can be planned on: a finite mean, and some variation (a sd > 0, a rate in (0, 1))."""
    spread = outcome.variance()
    if not (np.isfinite(outcome.mean) and np.isfinite(spread)):
        raise DataError(f"{source}: metric '{metric.id}' has no finite mean and variance (values too large)")
    if spread <= 0:
        raise DataError(
            f"{source}: metric '{metric.id}' does not vary in the pre-period (sd 0); no test can be "
            "sized on it"
        )
    return outcome


def r_squared(frame: pd.DataFrame, metric_id: str, covariates: Sequence[str], source: str) -> float:
    """R^2 of the OLS regression of the metric on the covariates (with intercept).

    CUPED / regression adjustment leaves ``1 - R^2`` of the variance (for one covariate, rho^2).
    """
    y = _column(frame, metric_id, source)
    design = np.column_stack([np.ones(len(y)), *(_column(frame, c, source) for c in covariates)])
    if len(y) <= design.shape[1]:
        raise DataError(f"{source}: {len(y)} rows cannot estimate the R^2 of {len(covariates)} covariate(s)")
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    centred = y - y.mean()
    return float(1 - residual @ residual / (centred @ centred))


def icc_anova(frame: pd.DataFrame, metric_id: str, cluster: str, source: str) -> float:
    """One-way ANOVA estimator of the intra-cluster correlation, truncated at 0.

    ``icc = (MSB - MSW) / (MSB + (m0 - 1) MSW)`` with ``m0 = (N - sum(n_i^2) / N) / (k - 1)``
    (the adjusted mean cluster size for unequal sizes; Donner 1986).
    """
    y = pd.Series(_column(frame, metric_id, source))
    groups = y.groupby(_clusters(frame, cluster, source).to_numpy())
    sizes, means = groups.size().to_numpy(float), groups.mean().to_numpy()
    k, n = len(sizes), sizes.sum()
    if k < 2:
        raise DataError(f"{source}: column '{cluster}' has fewer than 2 clusters; no ICC can be estimated")
    ss_between = float((sizes * (means - y.mean()) ** 2).sum())
    ss_within = float(((y - groups.transform("mean")) ** 2).sum())
    msb, msw = ss_between / (k - 1), ss_within / (n - k)
    m0 = (n - (sizes**2).sum() / n) / (k - 1)
    return max(0.0, (msb - msw) / (msb + (m0 - 1) * msw))


def cluster_sizes(frame: pd.DataFrame, cluster: str, source: str) -> tuple[float, float]:
    """(mean units per cluster, coefficient of variation of cluster sizes)."""
    sizes = _clusters(frame, cluster, source).value_counts().to_numpy(float)
    return float(sizes.mean()), float(sizes.std(ddof=0) / sizes.mean())


def _clusters(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    series = _raw(frame, column, source)
    missing = int(series.isna().sum())
    if missing:
        raise DataError(f"{source}: column '{column}' has {missing:,} missing cluster id(s)")
    return series


def _raw(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    if column not in frame.columns:
        raise DataError(
            f"{source}: missing column '{column}'; columns are {', '.join(map(str, frame.columns))}"
        )
    return frame[column]


def _column(frame: pd.DataFrame, column: str, source: str, missing_allowed: bool = False) -> np.ndarray:
    """A numeric column as floats: every value finite (missing values only where ``missing_allowed``:
    an ordinal score's non-response)."""
    series = _raw(frame, column, source)
    if not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        raise DataError(f"{source}: column '{column}' must be numeric, got {series.dtype}")
    values = series.to_numpy(dtype=float, na_value=np.nan)
    missing = int(np.isnan(values).sum()) if not missing_allowed else 0
    infinite = int(np.isinf(values).sum())
    if missing or infinite:
        raise DataError(
            f"{source}: column '{column}' has {missing:,} missing and {infinite:,} infinite value(s); "
            "every value must be a finite number"
        )
    return values


def read_pre_period(path: str | Path) -> pd.DataFrame:
    """Read a pre-period file (CSV or Parquet, by suffix); clear error when it cannot be read."""
    return read_frame(Path(path), "pre-period")
