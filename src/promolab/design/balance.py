"""Balance of an assignment: sample-ratio mismatch (SRM) and covariate balance (SMD).

SRM (:mod:`promolab.design.srm`) is the chi-square test of the arm counts against the design shares.

The standardised mean difference of a covariate between an arm ``t`` and the reference arm ``c`` is::

    smd = (mean_t - mean_c) / sqrt((var_t + var_c) / 2)

with sample variances (ddof = 1) over each arm's non-missing values. A categorical covariate (any
non-numeric, non-boolean column) gives one SMD per level, computed on the 0/1 indicator of the level
(its share); missing values form a level of their own. When both variances are 0 the SMD is 0 if the
means are equal (identical constant columns) and +-inf if they differ (the arms are separated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from promolab.design.srm import SRM_FLAG, SRM_THRESHOLD, SrmResult, srm_test
from promolab.errors import DataError, quoted

__all__ = ["SRM_FLAG", "SRM_THRESHOLD", "BalanceReport", "SrmResult", "balance_report", "srm_test"]

MISSING_LEVEL = "<missing>"
SMD_COLUMNS = ("variant", "covariate", "level", "mean", "reference_mean", "smd")


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
        raise DataError(f"balance: reference arm '{reference}' has no units; arms: {quoted(means.index)}")
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
        raise DataError(f"{place}: missing column(s) {quoted(missing)}; columns are {quoted(frame.columns)}")
