"""Deterministic assignment of units to arms by hashing, reproducible by an app or a SQL warehouse.

Hash assignment (``assign_units``):

1. ``key = salt + ":" + unit_id``, encoded as UTF-8. The salt defaults to the experiment ``id``
   (``design.salt`` overrides it). Integer ids are written in base 10 with no padding or decimals
   (``42``, ``-7``); string ids are used exactly as given (no trimming, no case folding). An id column
   must be all integers or all strings, without missing values or repeats.
2. ``h`` = the first 8 bytes of ``SHA-256(key)`` read as an unsigned big-endian 64-bit integer (the first
   16 hex digits of the hex digest).
3. ``bucket = h mod 10000``, an integer in 0..9999.
4. Labels own contiguous bucket ranges. The holdout takes the top ``H = floor(10000 * holdout + 0.5)``
   buckets, ``10000 - H`` .. 9999, labelled ``holdout``. The other ``B = 10000 - H`` buckets go to the
   ``K`` arms in spec order: arm ``k`` gets buckets ``b_(k-1)`` .. ``b_k - 1``, where ``b_0 = 0``,
   ``b_k = floor(B * c_k + 0.5)`` (round half up) and ``c_k = (w_1 + ... + w_k) / (w_1 + ... + w_K)``,
   summed left to right in IEEE double precision, so ``c_K = 1`` and ``b_K = B``. Every arm must get at
   least one bucket. Four arms of weight 0.25 with holdout 0.05 get buckets 0..2374, 2375..4749,
   4750..7124 and 7125..9499; the holdout gets 9500..9999.

A unit's arm depends on its own key only: the same unit and salt always get the same arm, adding units
never moves existing ones, and different salts give independent assignments. Changing the weights or
the holdout moves units between arms: fix them before the test starts. In DuckDB::

    ('0x' || left(sha256(salt || ':' || CAST(unit_id AS VARCHAR)), 16))::UBIGINT % 10000

With only signed 64-bit integers, take ``hi`` and ``lo`` as the integers of hex digits 1-8 and 9-16:
``bucket = ((hi % 10000) * 7296 + lo) % 10000`` (7296 = 2^32 mod 10000).

Stratified assignment (``assign_stratified``) is complete randomisation within blocks. Units in
holdout buckets are held out as above. The others are grouped into blocks by their strata values
(missing values are a level of their own). Within a block of ``n`` units, units are ordered by ``h``
(ties by unit id). The unit of rank ``r`` (0-based) gets arm ``k`` when
``floor(n * c_(k-1) + u) <= r < floor(n * c_k + u)``, where ``u = (S >> 11) / 2^53`` and ``S`` is the sum
of the block's ``h`` modulo 2^64. Each arm gets ``floor(n w_k)`` or ``ceil(n w_k)`` units of every block.
The offset ``u`` spreads the rounding so each arm averages exactly ``n w_k`` over blocks; plain rounding
would always favour the same arms.

Cluster assignment (``assign_clusters``) applies either rule to cluster ids instead of unit ids: every
unit takes its cluster's bucket and arm. With strata, clusters are dealt within blocks, and the strata
must be constant within each cluster.

Rerandomisation (``rerandomise``) tries the salts ``f"{base_salt}:{i}"`` for ``i = 0 .. tries - 1``. It
keeps the first salt whose largest absolute standardised mean difference (covariates against the
reference arm, holdout excluded; see :mod:`promolab.design.balance`) is smallest. ``Assignment.salt``
records that salt, so the plain method run with it reproduces the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from promolab.design.balance import _require_columns, standardised_mean_differences
from promolab.errors import DataError, quoted
from promolab.spec.buckets import BUCKETS, HOLDOUT, bucket_ranges, cumulative_shares

__all__ = ["BUCKETS", "HOLDOUT", "Assignment", "assign_clusters", "assign_stratified", "assign_units",
           "bucket_ranges", "rerandomise"]  # fmt: skip
# Ids hashed per batch: bounds the memory of the rendered keys (~20 MB per batch for 30-byte keys).
_CHUNK = 1 << 18
_VARIANT = "__variant__"  # column of the arm beside the covariates while rerandomising

type Arms = Sequence[tuple[str, float]]
type UnitIds = pd.Series | pd.Index | np.ndarray | Sequence[int] | Sequence[str]
type Codes = npt.NDArray[np.int64]
type Hashes = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Assignment:
    """The arm of every unit and what reproduces it.

    Attributes:
        table: one row per unit, in input order: ``unit_id`` (as given), ``variant`` (categorical:
            the arms in spec order, then ``holdout`` when there is one) and ``bucket`` (int16: the
            hash bucket of the unit under ``salt``, or of its cluster for cluster methods).
        salt: the salt of the hashes (after rerandomisation, the chosen one).
        method: ``hash``, ``stratified``, ``cluster`` or ``cluster-stratified``, prefixed with
            ``rerandomised-`` by :func:`rerandomise`; this method with ``salt`` reproduces ``table``.
        shares: expected share of each label: its bucket share for ``hash`` and ``cluster``, the
            arm's weight times the non-holdout bucket share when dealt within blocks. These are the
            weights of an SRM test (of cluster counts for cluster methods).
    """

    table: pd.DataFrame
    salt: str
    method: str
    shares: dict[str, float]


def assign_units(unit_ids: UnitIds, arms: Arms, salt: str, holdout: float = 0.0) -> Assignment:
    """Assign each unit by the bucket of its hash (the module's definition, steps 1-4).

    Args:
        unit_ids: unique ids, all integers or all strings.
        arms: (arm id, weight) in spec order; weights positive and summing to 1.
        salt: hash salt, by default the experiment id.
        holdout: share of buckets held out, in [0, 1).

    Raises:
        DataError: no ids, missing or mixed-type ids, or repeated ids.
        ValueError: invalid arms or holdout (see :func:`bucket_ranges`).
    """
    ranges = bucket_ranges(arms, holdout)
    ids = _unique_ids(unit_ids, f"units.{getattr(unit_ids, 'name', None) or 'unit_id'}")
    bucket = _hashes(ids, salt) % BUCKETS
    return Assignment(
        _table(ids, _bucket_codes(bucket, ranges), ranges, bucket), salt, "hash", _bucket_shares(ranges)
    )


def assign_stratified(
    units: pd.DataFrame,
    arms: Arms,
    strata: Sequence[str],
    salt: str,
    unit_id_column: str = "unit_id",
    holdout: float = 0.0,
) -> Assignment:
    """Complete randomisation within blocks of equal strata values (see the module docstring).

    Every block's arm counts are within 1 of ``n * w_k``; units in holdout buckets are held out first.

    Args:
        units: one row per unit with ``unit_id_column`` and the strata columns.
        arms: (arm id, weight) in spec order; weights positive and summing to 1.
        strata: columns whose combined values form the blocks; none makes one block.
        salt: hash salt, by default the experiment id.
        unit_id_column: column of unique unit ids.
        holdout: share of buckets held out, in [0, 1).

    Raises:
        DataError: missing columns, no units, missing, mixed-type or repeated unit ids.
        ValueError: invalid arms or holdout.
    """
    ranges = bucket_ranges(arms, holdout)
    _require_columns(units, [unit_id_column, *strata], "units")
    ids = _unique_ids(units[unit_id_column], f"units.{unit_id_column}")
    h = _hashes(ids, salt)
    codes = _dealt_codes(h, _blocks(units, strata), ids, arms, ranges)
    return Assignment(
        _table(ids, codes, ranges, h % BUCKETS), salt, "stratified", _dealt_shares(arms, ranges)
    )


def assign_clusters(
    units: pd.DataFrame,
    arms: Arms,
    cluster_column: str,
    salt: str,
    unit_id_column: str = "unit_id",
    strata: Sequence[str] = (),
    holdout: float = 0.0,
) -> Assignment:
    """Assign whole clusters (stores, regions): hash the cluster id; all its units share the arm.

    Args:
        units: one row per unit with ``unit_id_column``, ``cluster_column`` and the strata columns.
        arms: (arm id, weight) in spec order; weights positive and summing to 1.
        cluster_column: column of cluster ids, all integers or all strings.
        salt: hash salt, by default the experiment id.
        unit_id_column: column of unique unit ids.
        strata: deal clusters within blocks of these columns (constant within each cluster) instead
            of by bucket range.
        holdout: share of buckets (clusters) held out, in [0, 1).

    Raises:
        DataError: missing columns, no units, bad unit or cluster ids, strata varying within a cluster.
        ValueError: invalid arms or holdout.
    """
    ranges = bucket_ranges(arms, holdout)
    _require_columns(units, [unit_id_column, cluster_column, *strata], "units")
    ids = _unique_ids(units[unit_id_column], f"units.{unit_id_column}")
    cluster_of, uniques = pd.factorize(_checked_ids(units[cluster_column], f"units.{cluster_column}"))
    clusters = pd.Series(uniques)
    h = _hashes(clusters, salt)
    bucket = h % BUCKETS
    if strata:
        unit_blocks = _blocks(units, strata)
        varying = pd.Series(unit_blocks).groupby(cluster_of).nunique() > 1
        if varying.any():
            example = clusters.iloc[int(varying.idxmax())]
            raise DataError(
                f"units.{cluster_column}: strata {quoted(strata)} must be constant within a cluster, "
                f"got several values in cluster {example!r}"
            )
        blocks = np.empty(len(clusters), dtype=np.int64)
        blocks[cluster_of] = unit_blocks
        codes = _dealt_codes(h, blocks, clusters, arms, ranges)
        method, shares = "cluster-stratified", _dealt_shares(arms, ranges)
    else:
        codes, method, shares = _bucket_codes(bucket, ranges), "cluster", _bucket_shares(ranges)
    return Assignment(_table(ids, codes[cluster_of], ranges, bucket[cluster_of]), salt, method, shares)


def rerandomise(
    units: pd.DataFrame,
    arms: Arms,
    covariates: Sequence[str],
    tries: int,
    base_salt: str,
    unit_id_column: str = "unit_id",
    strata: Sequence[str] = (),
    holdout: float = 0.0,
    reference: str | None = None,
) -> Assignment:
    """Best balanced of ``tries`` assignments with salts ``f"{base_salt}:{i}"``, i = 0 .. tries - 1.

    Balance is the largest absolute SMD over covariates (levels of categorical ones) and arms
    against ``reference``, holdout excluded; the first salt with the smallest value wins. Salts under
    which an arm has fewer than 2 values of a covariate are skipped. Standard errors that ignore the
    rerandomisation are conservative; adjusting for the same covariates (CUPED) recovers the precision.

    Args:
        units: one row per unit with ``unit_id_column``, the covariates and the strata columns.
        arms: (arm id, weight) in spec order; weights positive and summing to 1.
        covariates: numeric, boolean or categorical columns to balance.
        tries: number of salts to try, >= 1.
        base_salt: salts are ``f"{base_salt}:{i}"``.
        unit_id_column: column of unique unit ids.
        strata: deal within these blocks (:func:`assign_stratified`) instead of by bucket range.
        holdout: share of buckets held out, in [0, 1).
        reference: arm the SMDs compare with; by default the first arm.

    Returns:
        The chosen assignment; ``salt`` is the chosen salt, ``method`` is ``rerandomised-`` + the
        method that reproduces it.

    Raises:
        DataError: missing columns or bad unit ids, or no salt gives every arm 2 values of each covariate.
        ValueError: ``tries`` < 1, an unknown reference, invalid arms or holdout.
    """
    reference = arms[0][0] if reference is None else reference
    if tries < 1:
        raise ValueError(f"tries: must be >= 1, got {tries}")
    if reference not in [name for name, _ in arms]:
        raise ValueError(
            f"reference: must be one of the arms {quoted(n for n, _ in arms)}, got '{reference}'"
        )
    _require_columns(units, [unit_id_column, *covariates], "units")
    best: tuple[float, Assignment] | None = None
    for i in range(tries):
        salt = f"{base_salt}:{i}"
        candidate = (
            assign_stratified(units, arms, strata, salt, unit_id_column, holdout)
            if strata
            else assign_units(units[unit_id_column], arms, salt, holdout)
        )
        try:
            score = _max_abs_smd(candidate, units, arms, covariates, reference)
        except DataError:
            continue  # an arm has < 2 values of a covariate under this salt: not a candidate
        if best is None or score < best[0]:
            best = (score, candidate)
    if best is None:
        raise DataError(
            f"rerandomise: none of {tries} salts gives every arm >= 2 values of each of {quoted(covariates)}"
        )
    return replace(best[1], method=f"rerandomised-{best[1].method}")


def _max_abs_smd(
    assignment: Assignment, units: pd.DataFrame, arms: Arms, covariates: Sequence[str], reference: str
) -> float:
    """Largest |SMD| over covariates and arms; holdout rows fall outside the arm categories."""
    frame = units[list(covariates)].reset_index(drop=True)
    frame[_VARIANT] = assignment.table["variant"].cat.set_categories([name for name, _ in arms])
    smd = standardised_mean_differences(frame, _VARIANT, covariates, reference)["smd"]
    return float(smd.abs().max())


def _checked_ids(values: UnitIds, what: str) -> pd.Series:
    """``values`` as a Series of all-integer or all-string ids without missing values."""
    series = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if series.empty:
        raise DataError(f"{what}: no ids to assign")
    missing = series.isna()
    if missing.any():
        rows = ", ".join(str(i) for i in np.flatnonzero(missing)[:3])
        raise DataError(f"{what}: {int(missing.sum())} missing ids (rows {rows}, counted from 0)")
    kind = pd.api.types.infer_dtype(series, skipna=False)
    if kind not in ("integer", "string"):
        raise DataError(f"{what}: must be all integers or all strings, got {kind} values")
    return series


def _unique_ids(values: UnitIds, what: str) -> pd.Series:
    series = _checked_ids(values, what)
    repeated = series.duplicated()
    if repeated.any():
        ids = series[repeated].unique()
        examples = ", ".join(repr(v) for v in ids[:3].tolist())
        raise DataError(
            f"{what}: must be unique; {len(ids):,} id(s) appear more than once ({int(repeated.sum()):,} "
            f"extra row(s), e.g. {examples})"
        )
    return series


def _hashes(ids: pd.Series, salt: str) -> Hashes:
    """``h`` of every id (steps 1-2): the first 8 bytes of SHA-256 of ``salt:id``, big-endian."""
    # hashlib in a list comprehension costs ~0.65 us per id on one core, rendering included (measured,
    # 1M ids in 0.65 s). A numpy SHA-256 needs over 0.8 us per id in array operations alone, and threads
    # do not help: hashlib holds the GIL for inputs under 2 KiB. 10M ids take ~7 s on one core.
    out = np.empty(len(ids), dtype=np.uint64)
    prefix = f"{salt}:"
    sha256 = hashlib.sha256
    for start in range(0, len(ids), _CHUNK):
        chunk = ids.iloc[start : start + _CHUNK].tolist()
        digests = b"".join([sha256((prefix + str(u)).encode()).digest()[:8] for u in chunk])
        out[start : start + len(chunk)] = np.frombuffer(digests, dtype=">u8")
    return out


def _bucket_codes(bucket: Hashes, ranges: dict[str, range]) -> Codes:
    """Index into ``ranges`` of the label owning each bucket."""
    stops = np.array([r.stop for r in ranges.values()], dtype=np.uint64)
    return np.searchsorted(stops, bucket, side="right").astype(np.int64)


def _bucket_shares(ranges: dict[str, range]) -> dict[str, float]:
    return {label: len(buckets) / BUCKETS for label, buckets in ranges.items()}


def _dealt_shares(arms: Arms, ranges: dict[str, range]) -> dict[str, float]:
    held = len(ranges.get(HOLDOUT, range(0)))
    kept = (BUCKETS - held) / BUCKETS
    weights = dict(arms)
    total = sum(weights.values())
    return {label: kept * weights[label] / total if label in weights else held / BUCKETS for label in ranges}


def _blocks(units: pd.DataFrame, strata: Sequence[str]) -> Codes:
    """Block number of each row: one per combination of strata values, missing values included."""
    if not strata:
        return np.zeros(len(units), dtype=np.int64)
    return units.groupby(list(strata), dropna=False, sort=False, observed=True).ngroup().to_numpy(np.int64)


def _dealt_codes(h: Hashes, blocks: Codes, ids: pd.Series, arms: Arms, ranges: dict[str, range]) -> Codes:
    """Holdout by bucket, then the other rows dealt within their blocks; codes index ``ranges``."""
    in_test = h % BUCKETS < ranges[arms[-1][0]].stop
    codes = np.full(len(h), len(arms), dtype=np.int64)  # the holdout's index, used only when it exists
    codes[in_test] = _deal(h[in_test], blocks[in_test], ids[in_test], cumulative_shares(arms))
    return codes


def _deal(h: Hashes, blocks: Codes, ids: pd.Series, cumulative: list[float]) -> Codes:
    """Arm index of each row: rank r in its block of n gets arm k when floor(n c_(k-1) + u) <= r < ..."""
    if len(h) == 0:
        return np.zeros(0, dtype=np.int64)
    frame = pd.DataFrame({"block": blocks, "h": h, "id": ids.to_numpy()})
    order = frame.sort_values(["block", "h", "id"]).index.to_numpy()
    sorted_blocks = blocks[order]
    starts = np.flatnonzero(np.r_[True, sorted_blocks[1:] != sorted_blocks[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    total = np.add.reduceat(h[order], starts)  # uint64 addition wraps: the sum modulo 2^64
    offset = (total >> np.uint64(11)).astype(np.float64) * 2.0**-53
    size_of_row, offset_of_row = np.repeat(sizes, sizes).astype(np.float64), np.repeat(offset, sizes)
    dealt = np.zeros(len(order), dtype=np.int64)
    for c in cumulative[:-1]:
        dealt += rank >= np.floor(size_of_row * c + offset_of_row)
    codes = np.empty_like(dealt)
    codes[order] = dealt
    return codes


def _table(ids: pd.Series, codes: Codes, ranges: dict[str, range], bucket: Hashes) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unit_id": ids,
            "variant": pd.Categorical.from_codes(codes, categories=list(ranges)),
            "bucket": bucket.astype(np.int16),
        }
    )
