"""Difference-in-differences for promotions switched on at one date in some units (stores, regions).

Model (two-way fixed effects, a single start date): ``y_it = a_i + g_t + d D_it + e_it`` with
``D_it = 1`` for a treated unit in a period on or after the start. ``d`` is the average effect on the
treated per unit and period (ATT). Fitted by least squares with standard errors clustered by unit
(CR1, t with ``G - 1`` degrees of freedom; equal to statsmodels'). With few clusters, above all few
treated ones, clustered errors can be too small (Cameron, Gelbach and Miller 2008): below
``MIN_CLUSTERS`` units the p-value comes from the wild cluster bootstrap with the null imposed (WCR,
Webb's six-point weights) and the interval from the unrestricted wild bootstrap-t; with a single
treated or a single control unit there is no valid standard error at all, and the result says so
(``FEW_CLUSTERS``) instead of printing one.

On two units and two periods ``d`` equals the classic 2 x 2 difference of differences (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

type Array = npt.NDArray[np.float64]

MIN_CLUSTERS = 42  # below this many units, inference by the wild cluster bootstrap
BOOTSTRAP_DRAWS = 9999
SEED = 20260101
FEW_CLUSTERS = "FEW_CLUSTERS"  # one treated or one control unit: no standard error exists
WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])


@dataclass(frozen=True)
class DidResult:
    """The ATT per treated unit and period, its uncertainty and how it was computed."""

    att: float
    se: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    method: str  # "twfe-cluster" | "twfe-wild-bootstrap" | "twfe"
    treated_units: int
    control_units: int
    periods: int
    flags: tuple[str, ...] = ()


def did_2x2(
    before_treated: float, after_treated: float, before_control: float, after_control: float
) -> float:
    """``(after - before)`` of the treated minus that of the controls."""
    return (after_treated - before_treated) - (after_control - before_control)


def twfe(
    panel: pd.DataFrame,
    outcome: str,
    unit: str,
    period: str,
    treated: str,
    confidence: float = 0.95,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = SEED,
    weight: str | None = None,
) -> DidResult:
    """Two-way fixed-effects DiD of ``outcome`` on the 0/1 column ``treated`` (the unit is treated in
    that period) with unit and period effects; inference as in the module docstring. With ``weight``
    (a positive column), weighted least squares: every row's outcome and design scaled by the square
    root of its weight, and the same inference on the scaled regression.

    Raises:
        ValueError: a balanced panel is not needed, but every unit needs >= 1 row before and after the
            start, and ``treated`` must be 0/1 and switch on once per treated unit (a single start).
    """
    frame = panel[[outcome, unit, period, treated, *([weight] if weight else [])]].dropna()
    d = frame[treated].to_numpy(dtype=float)
    _check_single_start(frame, unit, period, treated)
    ever = frame.groupby(unit)[treated].transform("max").to_numpy() > 0
    units_treated = frame.loc[ever, unit].nunique()
    units_control = frame.loc[~ever, unit].nunique()
    root = np.sqrt(frame[weight].to_numpy(dtype=float)) if weight else np.ones(len(frame))
    y = frame[outcome].to_numpy(dtype=float) * root
    x = _design(frame, unit, period, d) * root[:, None]
    projection = _Projection.of(x)
    beta = projection.pinv @ y
    residuals = y - x @ beta
    att = float(beta[0])
    base = DidResult(att, None, None, None, "twfe", units_treated, units_control, frame[period].nunique())
    if min(units_treated, units_control) < 2:
        return _replace(base, flags=(FEW_CLUSTERS,))
    groups = pd.factorize(frame[unit])[0]
    se = float(_cluster_se(projection, residuals, groups)[0])
    clusters = units_treated + units_control
    if clusters >= MIN_CLUSTERS:
        from scipy import stats

        q = float(stats.t.ppf(0.5 + confidence / 2, clusters - 1))
        p = float(2 * stats.t.sf(abs(att / se), clusters - 1))
        return _replace(base, se=se, ci=(att - q * se, att + q * se), p_value=p, method="twfe-cluster")
    p, ci = _wild_bootstrap(projection, y, groups, att, se, confidence, draws, seed)
    return _replace(base, se=se, ci=ci, p_value=p, method="twfe-wild-bootstrap")


def _replace(result: DidResult, **changes: object) -> DidResult:
    from dataclasses import replace

    return replace(result, **changes)  # type: ignore[arg-type]


def _check_single_start(frame: pd.DataFrame, unit: str, period: str, treated: str) -> None:
    values = set(frame[treated].unique().tolist())
    if not values <= {0, 1}:
        raise ValueError(f"column '{treated}' must be 0/1 (treated in that period), got {sorted(values)[:5]}")
    starts = frame[frame[treated] == 1].groupby(unit)[period].min()
    if starts.nunique() > 1:
        raise ValueError(
            f"treated units start on {starts.nunique()} different periods: a single start date is needed "
            "(staggered starts need group-time effects, not two-way fixed effects)"
        )
    if len(starts):
        after = frame.loc[frame[unit].isin(starts.index) & (frame[period] >= starts.iloc[0]), treated]
        if (after == 0).any():
            raise ValueError(f"column '{treated}' switches off again: a promotion must stay on once started")


def _design(frame: pd.DataFrame, unit: str, period: str, d: Array) -> Array:
    """``[D, unit dummies, period dummies (first dropped)]``: the unit dummies carry the intercept."""
    units = pd.get_dummies(frame[unit], dtype=float).to_numpy()
    periods = pd.get_dummies(frame[period], dtype=float).to_numpy()[:, 1:]
    return np.column_stack([d, units, periods])


@dataclass(frozen=True)
class _Projection:
    """A design ``X`` with its pseudo-inverse ``X^+ = (X'X)^+ X'`` (one small eigenproblem, not an SVD
    of ``X``) and rank."""

    x: Array
    pinv: Array
    rank: int

    @classmethod
    def of(cls, x: Array) -> _Projection:
        gram = x.T @ x
        return cls(
            x, np.linalg.pinv(gram, hermitian=True) @ x.T, int(np.linalg.matrix_rank(gram, hermitian=True))
        )

    def factor(self, clusters: int) -> float:
        """CR1 small-sample factor ``G/(G-1) (N-1)/(N-K)`` (statsmodels' ``cov_type="cluster"``)."""
        n = self.x.shape[0]
        return clusters / (clusters - 1) * (n - 1) / (n - self.rank)


def _cluster_se(projection: _Projection, residuals: Array, groups: npt.NDArray[np.int64]) -> Array:
    """CR1 standard error of the first coefficient, per column of ``residuals``: with ``u`` the first
    row of ``X^+``, ``se^2 = c sum_g (sum_(i in g) u_i e_i)^2``, ``c`` the CR1 factor."""
    g = int(groups.max()) + 1
    weighted = projection.pinv[0][:, None] * residuals.reshape(len(groups), -1)
    sums = np.zeros((g, weighted.shape[1]))
    np.add.at(sums, groups, weighted)
    return np.sqrt(projection.factor(g) * np.sum(sums * sums, axis=0))


BATCH = 1000  # bootstrap draws computed together


def _wild_bootstrap(
    projection: _Projection,
    y: Array,
    groups: npt.NDArray[np.int64],
    att: float,
    se: float,
    confidence: float,
    draws: int,
    seed: int,
) -> tuple[float, tuple[float, float]]:
    """p-value of ``d = 0`` by the restricted wild cluster bootstrap (WCR) of the t-statistic, and the
    interval by the unrestricted one (bootstrap-t), Webb's six-point weights drawn per cluster.

    Every bootstrap quantity is linear in the ``G`` cluster weights ``w``, so each draw costs ``G^2``,
    not a regression: with ``u`` the first row of ``X^+`` and ``M = I - X X^+``, a draw
    ``y* = f + e * w`` (``f`` a fit in the span of ``X``) has ``d* = u'f + a'w`` with
    ``a_h = sum_(i in h) u_i e_i``, and cluster scores ``s* = A w`` with
    ``A[g, h] = sum_(i in g) u_i (M (e * 1_h))_i``; ``se*^2 = c |s*|^2`` as in :func:`_cluster_se`."""
    rng = np.random.default_rng(seed)
    g = int(groups.max()) + 1
    x, pinv = projection.x, projection.pinv
    u = pinv[0]
    onehot = (groups[:, None] == np.arange(g)[None, :]).astype(float)
    factor = projection.factor(g)
    restricted = x[:, 1:] @ (_Projection.of(x[:, 1:]).pinv @ y)
    fitted = x @ (pinv @ y)

    def linear_parts(fit: Array) -> tuple[float, Array, Array]:
        e = y - fit
        spread = e[:, None] * onehot
        residual = spread - x @ (pinv @ spread)
        return float(u @ fit), (u * e) @ onehot, onehot.T @ (u[:, None] * residual)

    (base0, a0, s0), (base1, a1, s1) = linear_parts(restricted), linear_parts(fitted)
    t_null, t_alt = [], []
    for first in range(0, draws, BATCH):
        weights = rng.choice(WEBB, size=(g, min(BATCH, draws - first)))  # clusters x draws
        t_null.append((base0 + a0 @ weights) / np.sqrt(factor * np.sum((s0 @ weights) ** 2, axis=0)))
        t_alt.append((base1 + a1 @ weights - att) / np.sqrt(factor * np.sum((s1 @ weights) ** 2, axis=0)))
    null, alt = np.concatenate(t_null), np.concatenate(t_alt)
    p = float((1 + np.sum(np.abs(null) >= abs(att / se))) / (draws + 1))
    tail = (1 - confidence) / 2
    low_q, high_q = np.quantile(alt, [tail, 1 - tail])
    return p, (float(att - high_q * se), float(att - low_q * se))


@dataclass(frozen=True)
class EventStudy:
    """Effects by period relative to the start (``-1``, the last period before it, is the reference),
    and the joint test that every lead is zero (parallel pre-trends)."""

    estimates: dict[int, tuple[float, float, tuple[float, float]]]  # k -> (estimate, se, interval)
    pretrend_p_value: float | None
    clusters: int
    flags: tuple[str, ...] = ()


def event_study(
    panel: pd.DataFrame,
    outcome: str,
    unit: str,
    period: str,
    treated: str,
    leads: int,
    lags: int,
    confidence: float = 0.95,
    weight: str | None = None,
) -> EventStudy:
    """Two-way fixed effects with one dummy per relative period ``k`` of the treated units, from
    ``-leads`` to ``lags`` (``k = -1`` left out; periods further out are binned into the end dummies),
    errors clustered by unit; the pre-trend test is the Wald F test of the leads ``k <= -2`` with the
    clustered covariance (``G - 1`` denominator degrees of freedom). With fewer than ``MIN_CLUSTERS``
    units the clustered test is only approximate (``FEW_CLUSTERS``)."""
    import statsmodels.api as sm

    frame = (
        panel[[outcome, unit, period, treated, *([weight] if weight else [])]].dropna().reset_index(drop=True)
    )
    _check_single_start(frame, unit, period, treated)
    position = {p: k for k, p in enumerate(sorted(frame[period].unique()))}
    index = frame[period].map(position)
    starts = frame[frame[treated] == 1].groupby(unit)[period].min()
    if starts.empty:
        raise ValueError(f"no treated period in column '{treated}'")
    start = position[starts.iloc[0]]
    ever = frame[unit].isin(starts.index).to_numpy()
    relative = np.clip(index.to_numpy() - start, -leads, lags)
    ks = [k for k in range(-leads, lags + 1) if k != -1]
    dummies = np.column_stack([(ever & (relative == k)).astype(float) for k in ks])
    x = np.column_stack([dummies, _design(frame, unit, period, np.zeros(len(frame)))[:, 1:]])
    groups = pd.factorize(frame[unit])[0]
    weights = frame[weight].to_numpy(float) if weight else 1.0
    fit = sm.WLS(frame[outcome].to_numpy(float), x, weights=weights).fit(
        cov_type="cluster", cov_kwds={"groups": groups}, use_t=True
    )
    intervals = fit.conf_int(alpha=1 - confidence)
    estimates = {
        k: (float(fit.params[j]), float(fit.bse[j]), (float(intervals[j, 0]), float(intervals[j, 1])))
        for j, k in enumerate(ks)
    }
    lead_columns = [j for j, k in enumerate(ks) if k <= -2]
    p = None
    if lead_columns:
        restriction = np.zeros((len(lead_columns), x.shape[1]))
        restriction[np.arange(len(lead_columns)), lead_columns] = 1.0
        p = float(fit.f_test(restriction).pvalue)
    clusters = int(groups.max()) + 1
    flags = (FEW_CLUSTERS,) if clusters < MIN_CLUSTERS else ()
    return EventStudy(estimates, p, clusters, flags)


@dataclass(frozen=True)
class GroupTimeResult:
    """Staggered starts (Callaway and Sant'Anna 2021, never-treated controls, no covariates): each
    cohort's effect in each period on or after its start, and their average weighted by cohort size."""

    att: float
    se: float
    ci: tuple[float, float] | None  # None (and no p-value) when the influence functions are all 0
    p_value: float | None
    cells: dict[tuple[object, object], float]  # (cohort start, period) -> ATT(g, t)
    cohorts: dict[object, int]  # cohort start -> units
    controls: int


def group_time(
    panel: pd.DataFrame, outcome: str, unit: str, period: str, start: str, confidence: float = 0.95
) -> GroupTimeResult:
    """ATT(g, t) for every cohort ``g`` (units whose ``start`` period is ``g``; a missing ``start``:
    never treated) and period ``t >= g``: the cohort's mean change of ``outcome`` from ``g - 1`` (its
    last untreated period) to ``t`` minus the never-treated units' mean change over the same periods.
    Never naive two-way fixed effects, whose weights go negative when effects grow with time since the
    start (Goodman-Bacon 2021).

    The overall ATT averages the cells weighted by cohort size; its standard error comes from the
    units' influence functions (each unit's terms summed over cells: clustered by unit), normal
    interval. A balanced panel is required: every unit observed in every period.

    Raises:
        ValueError: an unbalanced panel, no never-treated unit, or a cohort starting in the first period.
    """
    from scipy import stats

    wide = panel.pivot(index=unit, columns=period, values=outcome)
    if wide.isna().any().any():
        raise ValueError("group-time effects need a balanced panel: every unit in every period")
    periods = list(wide.columns)
    starts = panel.groupby(unit)[start].first().reindex(wide.index)
    never = starts.isna().to_numpy()
    if not never.any():
        raise ValueError("group-time effects need never-treated units as controls")
    values = wide.to_numpy(dtype=float)
    influence = np.zeros(len(wide))
    cells: dict[tuple[object, object], float] = {}
    weights: dict[tuple[object, object], int] = {}
    cohorts = {g: int((starts == g).sum()) for g in sorted(starts.dropna().unique())}
    for g, size in cohorts.items():
        base = periods.index(g) - 1
        if base < 0:
            raise ValueError(f"cohort starting in {g} has no period before its start")
        members = (starts == g).to_numpy()
        for t in periods[base + 1 :]:
            change = values[:, periods.index(t)] - values[:, base]
            cells[(g, t)] = float(change[members].mean() - change[never].mean())
            weights[(g, t)] = size
    total = sum(weights.values())
    for (g, t), size in weights.items():
        members = (starts == g).to_numpy()
        change = values[:, periods.index(t)] - values[:, periods.index(g) - 1]
        term = np.zeros(len(wide))
        term[members] = (change[members] - change[members].mean()) / members.sum()
        term[never] = -(change[never] - change[never].mean()) / never.sum()
        influence += size / total * term
    att = sum(size / total * cells[cell] for cell, size in weights.items())
    se = float(np.sqrt(np.sum(influence**2)))
    if se == 0:  # every unit changed exactly like its group: no spread to test against
        return GroupTimeResult(float(att), se, None, None, cells, cohorts, int(never.sum()))
    q = float(stats.norm.ppf(0.5 + confidence / 2))
    p = float(2 * stats.norm.sf(abs(att / se)))
    return GroupTimeResult(float(att), se, (att - q * se, att + q * se), p, cells, cohorts, int(never.sum()))
