"""A spec's assignment: which method of :mod:`promolab.design.assignment` its design block asks for.

- ``design.cluster`` set: whole clusters are assigned (dealt within ``design.strata`` when given);
- else ``design.strata`` set: complete randomisation within blocks;
- ``design.rerandomise: N`` (without clusters): the best balanced of N salts on ``analysis.covariates``;
- else plain hash assignment. The salt is ``design.salt``, by default the spec id; ``design.holdout``
  holds out that share of buckets.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from promolab.design.assignment import (
    Assignment,
    assign_clusters,
    assign_stratified,
    assign_units,
    rerandomise,
)
from promolab.design.balance import BalanceReport, balance_report
from promolab.errors import DataError
from promolab.spec import ExperimentSpec


def spec_arms(spec: ExperimentSpec) -> list[tuple[str, float]]:
    """(variant id, weight) in spec order."""
    return [(v.id, v.weight) for v in spec.variants]


def unit_columns(spec: ExperimentSpec, balance_covariates: Sequence[str] = ()) -> list[str]:
    """Columns of the units file the assignment (and its balance report) reads."""
    design = spec.design
    ids = [] if spec.data.row_id else [spec.data.unit_id]
    cluster = [design.cluster.column] if design.cluster else []
    covariates = list(spec.analysis.covariates) if design.rerandomise else []
    return list(dict.fromkeys([*ids, *cluster, *design.strata, *covariates, *balance_covariates]))


def with_unit_ids(spec: ExperimentSpec, units: pd.DataFrame) -> pd.DataFrame:
    """``units`` with the id column the spec names; 1-based row numbers when ``data.row_id``."""
    if not spec.data.row_id:
        return units
    if spec.data.unit_id in units.columns:
        raise DataError(
            f"units: data.row_id numbers the rows, but the file already has a '{spec.data.unit_id}' column"
        )
    return units.assign(**{spec.data.unit_id: pd.RangeIndex(1, len(units) + 1)})


def assign_spec(spec: ExperimentSpec, units: pd.DataFrame) -> Assignment:
    """Assign every unit of ``units`` (one row per unit, with :func:`unit_columns`) as the spec says.

    Raises:
        DataError: missing columns, bad or repeated ids, strata varying within a cluster.
        ValueError: weights or holdout that the bucket mapping cannot honour.
    """
    design, arms = spec.design, spec_arms(spec)
    units = with_unit_ids(spec, units)
    salt, id_column = design.salt or spec.id, spec.data.unit_id
    if design.cluster is not None:
        return assign_clusters(
            units, arms, design.cluster.column, salt, id_column, design.strata, design.holdout
        )
    if design.rerandomise:
        return rerandomise(
            units,
            arms,
            spec.analysis.covariates,
            design.rerandomise,
            salt,
            id_column,
            design.strata,
            design.holdout,
            spec.reference.id,
        )
    if design.strata:
        return assign_stratified(units, arms, design.strata, salt, id_column, design.holdout)
    return assign_units(units[id_column], arms, salt, design.holdout)


def assignment_balance(
    spec: ExperimentSpec, assignment: Assignment, units: pd.DataFrame, covariates: Sequence[str]
) -> BalanceReport:
    """SRM test and covariate SMDs of an assignment made by :func:`assign_spec`.

    Cluster designs are tested on cluster counts, with cluster means of numeric covariates (the first
    value of others): units of a cluster share their arm, so they are not independent draws.
    """
    frame = units[list(covariates)].reset_index(drop=True)
    frame["variant"] = assignment.table["variant"].to_numpy()
    if spec.design.cluster is not None:
        column = spec.design.cluster.column
        frame[column] = units[column].to_numpy()
        frame = frame.groupby(column, sort=False, observed=True).agg(
            {"variant": "first", **{c: _cluster_summary(frame[c]) for c in covariates}}
        )
    return balance_report(frame, "variant", assignment.shares, covariates, spec.reference.id)


def _cluster_summary(values: pd.Series) -> str:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return "mean" if numeric else "first"
