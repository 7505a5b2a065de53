"""Balance of an assignment: sample-ratio mismatch (SRM) and covariate balance (SMD).

SRM is Pearson's chi-square goodness-of-fit test of the arm counts ``n_k`` (total ``N``) against the
design shares ``p_k = w_k / sum(w)``, without continuity correction::

    chi2 = sum_k (n_k - N p_k)^2 / (N p_k),   df = K - 1,   p_value = P(Chi2(df) >= chi2)

It is flagged ``SRM_DETECTED`` when ``p_value < threshold`` (default 0.001: the check runs on every
experiment, and a mismatch means a broken assignment or logging pipeline, so false alarms must be rare).
With cluster assignment count clusters, not units: units of a cluster are not independent draws.

The standardised mean difference of a covariate between an arm ``t`` and the reference arm ``c`` is::

    smd = (mean_t - mean_c) / sqrt((var_t + var_c) / 2)

with sample variances (ddof = 1) over each arm's non-missing values. A categorical covariate (any
non-numeric, non-boolean column) gives one SMD per level, computed on the 0/1 indicator of the level
(its share); missing values form a level of their own. When both variances are 0 the SMD is 0 if the
means are equal (identical constant columns) and +-inf if they differ (the arms are separated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from promolab.errors import DataError

SRM_THRESHOLD = 0.001
SRM_FLAG = "SRM_DETECTED"
MISSING_LEVEL = "<missing>"
SMD_COLUMNS = ("variant", "covariate", "level", "mean", "reference_mean", "smd")


@dataclass(frozen=True)
class SrmResult:
    """Chi-square test of the arm counts against the design shares.

    Attributes:
        counts: units (or clusters) per arm, in the order of the weights.
        expected_shares: design share of each arm, ``w_k / sum(w)``.
        observed_shares: ``n_k / N``.
        n: total count ``N``.
        chi2: Pearson's statistic.
        df: degrees of freedom, arms - 1.
        p_value: upper tail of the chi-square distribution at ``chi2``.
        threshold: flag when ``p_value`` is below this.
        flag: ``SRM_DETECTED`` when flagged, else None.
    """

    counts: dict[str, int]
    expected_shares: dict[str, float]
    observed_shares: dict[str, float]
    n: int
    chi2: float
    df: int
    p_value: float
    threshold: float
    flag: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return asdict(self)


def srm_test(
    counts: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Test the observed arm counts against the design weights (sample-ratio mismatch).

    Args:
        counts: observed units per arm; arms of ``weights`` absent here count 0.
        weights: design weight of every arm (a holdout too, if it is counted); normalised to sum 1.
        threshold: significance level of the flag, in (0, 1).

    Returns:
        The statistic, its p-value and ``flag="SRM_DETECTED"`` when ``p_value < threshold``.

    Raises:
        ValueError: fewer than 2 arms, a weight that is not positive, or a threshold outside (0, 1).
        DataError: a counted arm that has no weight, a negative count, or no units at all.

    >>> result = srm_test({"a": 5050, "b": 4950}, {"a": 0.5, "b": 0.5})
    >>> round(result.chi2, 6), result.df, result.flag
    (1.0, 1, None)
    """
    if len(weights) < 2:
        raise ValueError(f"srm_test: weights need at least 2 arms, got {len(weights)}")
    if not all(math.isfinite(w) and w > 0 for w in weights.values()):
        raise ValueError(f"srm_test: weights must be positive, got {dict(weights)}")
    if not 0 < threshold < 1:
        raise ValueError(f"srm_test: threshold must be in (0, 1), got {threshold:g}")
    unknown = [arm for arm in counts if arm not in weights]
    if unknown:
        raise DataError(f"variant counts: {_quoted(unknown)} not among the arms {_quoted(weights)}")
    observed = np.array([counts.get(arm, 0) for arm in weights], dtype=np.int64)
    if (observed < 0).any():
        raise DataError(f"variant counts: must be >= 0, got {dict(counts)}")
    n = int(observed.sum())
    if n == 0:
        raise DataError("variant counts: no units in any arm")
    shares = np.array(list(weights.values()), dtype=np.float64)
    shares /= shares.sum()
    expected = n * shares
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    df = len(weights) - 1
    p_value = float(stats.chi2.sf(chi2, df))
    return SrmResult(
        counts=dict(zip(weights, observed.tolist(), strict=True)),
        expected_shares=dict(zip(weights, shares.tolist(), strict=True)),
        observed_shares=dict(zip(weights, (observed / n).tolist(), strict=True)),
        n=n,
        chi2=chi2,
        df=df,
        p_value=p_value,
        threshold=threshold,
        flag=SRM_FLAG if p_value < threshold else None,
    )


def standardised_mean_differences(
    frame: pd.DataFrame, variant_column: str, covariates: Sequence[str], reference: str
) -> pd.DataFrame:
    """SMD of every covariate (every level of a categorical one) between each arm and the reference.

    Args:
        frame: one row per unit with the arm in ``variant_column`` and the covariates.
        variant_column: column holding the arm of each unit; when categorical, its categories are
            the arms (an arm without units is an error) and rows without a category are ignored.
        covariates: numeric, boolean or categorical columns of ``frame``; none gives no rows.
        reference: the arm every other arm is compared with.

    Returns:
        One row per (arm, covariate, level), arms in sorted (categorical: category) order, with
        columns ``variant``, ``covariate``, ``level`` (missing for numeric covariates), ``mean`` (of the
        arm), ``reference_mean`` and ``smd``.

    Raises:
        DataError: no rows, missing columns, the reference arm absent, or an arm with fewer than 2
            non-missing values of a covariate.
    """
    _require_columns(frame, [variant_column, *covariates])
    if frame.empty:
        raise DataError("balance: no units")
    if not covariates:
        return pd.DataFrame(columns=list(SMD_COLUMNS))
    matrix, keys = _indicator_matrix(frame, covariates)
    grouped = matrix.groupby(frame[variant_column], observed=False, sort=True)
    means, variances, counts = grouped.mean(), grouped.var(ddof=1), grouped.count()
    if reference not in means.index:
        raise DataError(f"balance: reference arm '{reference}' has no units; arms: {_quoted(means.index)}")
    short = counts.stack()[lambda count: count < 2]
    if not short.empty:
        (arm, column), got = next(iter(short.items()))
        raise DataError(
            f"balance: arm '{arm}' needs >= 2 non-missing values of '{keys[column][0]}', got {got}"
        )
    arms = [arm for arm in means.index if arm != reference]
    diff = means.loc[arms] - means.loc[reference]
    scale = np.sqrt((variances.loc[arms] + variances.loc[reference]) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        smd = (diff / scale).where(scale > 0, np.sign(diff) * np.inf).where(diff != 0, 0.0)
    rows = [
        (arm, covariate, level, means.at[arm, column], means.at[reference, column], smd.at[arm, column])
        for arm in arms
        for column, (covariate, level) in enumerate(keys)
    ]
    return pd.DataFrame(rows, columns=list(SMD_COLUMNS))


def _indicator_matrix(
    frame: pd.DataFrame, covariates: Sequence[str]
) -> tuple[pd.DataFrame, list[tuple[str, str | None]]]:
    """Float columns 0, 1, ...: each numeric covariate as is, each level of a categorical one as 0/1.

    Returns the matrix and the (covariate, level) of each column, level None for numeric ones.
    """
    columns: list[pd.Series] = []
    keys: list[tuple[str, str | None]] = []
    for covariate in covariates:
        values = frame[covariate]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            columns.append(values.astype(np.float64))
            keys.append((covariate, None))
            continue
        levels = values.astype(object).where(values.notna(), MISSING_LEVEL).astype(str)
        for level in sorted(levels.unique()):
            columns.append((levels == level).astype(np.float64))
            keys.append((covariate, level))
    return pd.concat(columns, axis=1, ignore_index=True), keys


@dataclass(frozen=True)
class BalanceReport:
    """SRM test and covariate balance of one assignment.

    Attributes:
        srm: the sample-ratio mismatch test.
        smd: standardised mean differences (see :func:`standardised_mean_differences`).
        reference: the arm the SMDs compare with.
    """

    srm: SrmResult
    smd: pd.DataFrame
    reference: str

    def to_dicts(self) -> list[dict[str, Any]]:
        """One row per arm: counts, shares, SRM verdict and its worst-balanced covariate."""
        rows = []
        for arm, units in self.srm.counts.items():
            own = self.smd[self.smd["variant"] == arm]
            worst = None if own.empty else own.loc[own["smd"].abs().idxmax()]
            rows.append(
                {
                    "variant": arm,
                    "units": units,
                    "expected_share": self.srm.expected_shares[arm],
                    "observed_share": self.srm.observed_shares[arm],
                    "srm_p_value": self.srm.p_value,
                    "srm_flag": self.srm.flag,
                    "max_abs_smd": None if worst is None else abs(float(worst["smd"])),
                    "worst_covariate": None if worst is None else _covariate_name(worst),
                }
            )
        return rows

    def to_frame(self) -> pd.DataFrame:
        """:meth:`to_dicts` as a DataFrame."""
        return pd.DataFrame(self.to_dicts())


def balance_report(
    frame: pd.DataFrame,
    variant_column: str,
    weights: Mapping[str, float],
    covariates: Sequence[str],
    reference: str,
    threshold: float = SRM_THRESHOLD,
) -> BalanceReport:
    """SRM test of the arm counts of ``frame`` and the SMDs of ``covariates``.

    Args:
        frame: one row per unit (per cluster for cluster designs) with its arm and covariates.
        variant_column: column holding the arm.
        weights: design share of every arm, a holdout included when ``frame`` has one
            (``Assignment.shares`` gives the exact shares of an assignment).
        covariates: columns to check balance on; may be empty.
        reference: the arm every other arm is compared with.
        threshold: significance level of the SRM flag.
    """
    _require_columns(frame, [variant_column, *covariates])
    counts = frame[variant_column].value_counts(sort=False)
    srm = srm_test({str(arm): int(n) for arm, n in counts.items() if n > 0}, weights, threshold)
    smd = standardised_mean_differences(frame, variant_column, covariates, reference)
    return BalanceReport(srm=srm, smd=smd, reference=reference)


def _covariate_name(row: pd.Series) -> str:
    return str(row["covariate"]) if pd.isna(row["level"]) else f"{row['covariate']}={row['level']}"


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], place: str = "balance") -> None:
    """Raise a DataError naming every column of ``columns`` that ``frame`` lacks."""
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{place}: missing column(s) {_quoted(missing)}; columns are {_quoted(frame.columns)}"
        )


def _quoted(names: Any) -> str:
    return ", ".join(f"'{name}'" for name in names)
