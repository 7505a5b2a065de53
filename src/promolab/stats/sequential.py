"""Sequential inference for a two-arm difference in means: looks at the data as they arrive.

Every function takes, at each look, the estimate ``theta_hat`` (treatment minus control, in the
metric's unit) and its standard error ``se`` (same unit), both computed elsewhere from sufficient
statistics. Three families, all two-sided:

- always-valid confidence sequences (Waudby-Smith, Arnold, Wu, Wang, Ramdas 2024, "Time-uniform central
  limit theory and asymptotic confidence sequences", Ann. Statist.; arXiv 2103.06476): an interval at
  every ``n`` that covers the truth at all looks at once with probability ``>= 1 - alpha``
  (asymptotically), however often and whenever one looks;
- mixture SPRT always-valid p-values (Johari, Koomen, Pekelis, Walsh 2022, "Always valid inference:
  continuous monitoring of A/B tests", Oper. Res.): ``P(p_n <= alpha for some n) <= alpha`` under
  no difference;
- group-sequential boundaries by Lan-DeMets alpha spending, for a few planned looks at information
  fractions ``t_1 < ... < t_K <= 1``: reject at look ``k`` when ``|Z_k| >= c_k``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

type Array = npt.NDArray[np.float64]
type Spending = Callable[[float, float], float]  # (information fraction t, alpha) -> alpha spent by t

TAIL = 8.5  # |z| beyond which the continuing density is dropped: P(|Z| > 8.5) = 2e-17
# Grid of the recursive integration: Simpson's rule with steps of at most 1/POINTS_PER_SD of the
# increments' sd. Crossing probabilities then agree with Genz's multivariate normal integration within
# 1e-7 (tested to 1e-6). The grid is capped at MAX_INTERVALS per look (the kernel is grid x grid):
# increments of information below about (2 c_k sqrt(t_k) POINTS_PER_SD / MAX_INTERVALS)^2 ~ 3e-4 of
# the total get a coarser step; at 1e-5 (2/3 of an sd) they still agreed within 1e-6.
POINTS_PER_SD = 8
MAX_INTERVALS = 2000


def optimal_rho(planned_n: float, alpha: float = 0.05) -> float:
    """The tuning ``rho`` of :func:`confidence_sequence` that makes its width smallest at ``planned_n``.

    With ``x = n rho^2`` the half-width is ``se sqrt(2 (x + 1) / x log(sqrt(x + 1) / alpha))``, smallest
    where ``x = -2 log(alpha) + log(1 + x)``, i.e. ``x = -W_(-1)(-alpha^2 / e) - 1`` (``W_(-1)`` the lower
    branch of Lambert's W). The paper's closed form ``x = -2 log(alpha) + log(1 - 2 log(alpha))`` is one
    fixed-point step from ``-2 log(alpha)``: 7.94 instead of 8.21 at ``alpha = 0.05``, a width 0.003%
    larger. ``planned_n`` counts observations in the unit ``n`` will use (e.g. units in both arms).
    """
    from scipy import special

    _check_alpha(alpha)
    _check_positive("planned_n", planned_n)
    x = -special.lambertw(-(alpha**2) / math.e, k=-1).real - 1
    return math.sqrt(x / planned_n)


def confidence_sequence(
    estimate: float, se: float, n: float, rho: float, alpha: float = 0.05
) -> tuple[float, float]:
    """Two-sided ``1 - alpha`` asymptotic confidence sequence at a look with ``n`` observations.

    Theorem 2.2 of Waudby-Smith et al. (the two-sided normal-mixture boundary, Robbins' mixture with
    ``N(0, rho^2)`` mixing)::

        theta_hat +- sigma_hat sqrt(2 (n rho^2 + 1) / (n^2 rho^2) log(sqrt(n rho^2 + 1) / alpha))

    with ``sigma_hat = se sqrt(n)`` the per-observation sd. For a difference in means with a fixed
    allocation, ``n`` is the number of units in both arms and ``n se^2`` estimates
    ``var_t / p_t + var_c / p_c`` (``p`` the arms' shares). Only ``n rho^2`` enters: ``n`` and the
    ``planned_n`` of :func:`optimal_rho` may count in any unit, the same for both.

    Returns:
        (lower, upper), in the unit of ``estimate``.
    """
    _check_alpha(alpha)
    _check_finite("estimate", estimate)
    for name, value in (("se", se), ("n", n), ("rho", rho)):
        _check_positive(name, value)
    x = n * rho**2
    half = se * math.sqrt(2 * (x + 1) / x * math.log(math.sqrt(x + 1) / alpha))
    return estimate - half, estimate + half


def always_valid_p_value(estimate: float, se: float, tau: float, previous: float = 1.0) -> float:
    """The mixture SPRT p-value of no difference after one more look: ``min(previous, 1 / Lambda_n)``.

    For a normal estimate with variance ``V = se^2`` and a ``N(0, tau^2)`` mixture over the difference
    (``tau`` in the unit of ``estimate``; the scale of effects worth finding), the mixture likelihood
    ratio is ``Lambda_n = sqrt(V / (V + tau^2)) exp(tau^2 theta_hat^2 / (2 V (V + tau^2)))`` (Johari et
    al.), computed on the log scale so that it never overflows. ``previous`` is the p-value of the last
    look (1 before the first).
    """
    _check_finite("estimate", estimate)
    _check_positive("se", se)
    _check_positive("tau", tau)
    if not 0 <= previous <= 1:
        raise ValueError(f"previous must be a p-value in [0, 1], got {previous!r}")
    variance, mixing = se**2, tau**2
    log_ratio = 0.5 * math.log(variance / (variance + mixing)) + mixing * estimate**2 / (
        2 * variance * (variance + mixing)
    )
    return min(previous, math.exp(-max(log_ratio, 0.0)))


def always_valid_p_values(estimates: Sequence[float], ses: Sequence[float], tau: float) -> list[float]:
    """:func:`always_valid_p_value` run over the looks in order: non-increasing, one per look."""
    p_values, p = [], 1.0
    for estimate, se in zip(estimates, ses, strict=True):
        p = always_valid_p_value(estimate, se, tau, p)
        p_values.append(p)
    return p_values


def obrien_fleming_spending(t: float, alpha: float) -> float:
    """Two-sided alpha spent by information fraction ``t``, O'Brien-Fleming type (Lan and DeMets 1983).

    Each side spends ``2 - 2 Phi(z_(1 - a/2) / sqrt(t))`` with ``a = alpha / 2``, as ldbounds'
    ``ldBounds(t, iuse=1, alpha=0.05)`` and gsDesign's ``sfLDOF`` with ``alpha=0.025`` per side do,
    whose tables :func:`spending_boundaries` reproduces: in total ``4 - 4 Phi(z_(1 - alpha/4) / sqrt(t))``.
    (Spending ``2 - 2 Phi(z_(1 - alpha/2) / sqrt(t))`` in total instead spends more early.)
    """
    from scipy import stats

    return float(4 * stats.norm.sf(stats.norm.isf(alpha / 4) / math.sqrt(t)))


def pocock_spending(t: float, alpha: float) -> float:
    """Two-sided alpha spent by information fraction ``t``, Pocock type: ``alpha log(1 + (e - 1) t)``
    (Lan and DeMets 1983), half on each side."""
    return alpha * math.log1p((math.e - 1) * t)


def spending_function(name: str) -> Spending:
    """The spending function of its name in specs: ``obrien_fleming`` or ``pocock``."""
    functions = {"obrien_fleming": obrien_fleming_spending, "pocock": pocock_spending}
    if name not in functions:
        raise ValueError(f"spending must be one of {sorted(functions)}, got {name!r}")
    return functions[name]


def spending_boundaries(
    fractions: Sequence[float], alpha: float = 0.05, spending: Spending = obrien_fleming_spending
) -> Array:
    """Two-sided symmetric z boundaries ``c_k`` for looks at information fractions ``t_1 < ... < t_K``.

    Under no difference the z statistics are ``Z_k = B(t_k) / sqrt(t_k)``, ``B`` a standard Brownian
    motion, so ``Cov(Z_j, Z_k) = sqrt(t_j / t_k)`` for ``j <= k``. Each ``c_k`` solves
    ``P(|Z_j| < c_j for j < k, |Z_k| >= c_k) = spending(t_k) - spending(t_(k-1))``, computed by the
    recursive numerical integration of Armitage, McPherson and Rowe (1969) over the density of
    ``B(t_(k-1))`` on the paths not yet stopped (Jennison and Turnbull 2000, ch. 19). ``c_k`` depends
    on the looks up to ``k`` only: recompute with the fractions actually observed, and with
    ``t_K = 1`` at the final look to spend all of ``alpha``. A look that may spend no alpha (below
    ``1e-15``) gets ``inf``.

    Args:
        fractions: information at each look over the planned total (e.g. ``se_planned^2 / se_k^2``).
        spending: two-sided alpha spent by ``t``, e.g. :func:`obrien_fleming_spending`.
    """
    _check_alpha(alpha)
    times = _check_fractions(fractions)
    nodes, weights = np.zeros(1), np.ones(1)  # B(0) = 0: a unit mass before the first look
    bounds, spent, previous = [], 0.0, 0.0
    for k, t in enumerate(times):
        target = spending(t, alpha) - spent
        spent += target
        step = t - previous
        c = _boundary(nodes, weights, t, step, target)
        bounds.append(c)
        if k + 1 < len(times):
            nodes, weights = _continuing(nodes, weights, t, step, min(step, times[k + 1] - t), c)
        previous = t
    return np.array(bounds)


def stopping_probabilities(fractions: Sequence[float], bounds: Sequence[float], drift: float = 0.0) -> Array:
    """``P(the first look with |Z_k| >= c_k is look k)`` for each look, when ``B(t)`` has mean
    ``drift t`` (``drift`` = the mean of ``Z`` at information fraction 1; 0: no difference), by the
    recursion of :func:`spending_boundaries`."""
    times = _check_fractions(fractions)
    if len(bounds) != len(times):
        raise ValueError(f"need one bound per look: {len(times)} looks, {len(bounds)} bounds")
    nodes, weights = np.zeros(1), np.ones(1)
    found, previous = [], 0.0
    for k, (t, c) in enumerate(zip(times, bounds, strict=True)):
        step = t - previous
        found.append(_crossing(nodes, weights, t, step, c, drift))
        if k + 1 < len(times):
            nodes, weights = _continuing(nodes, weights, t, step, min(step, times[k + 1] - t), c, drift)
        previous = t
    return np.array(found)


def sequential_sizing(
    fractions: Sequence[float], bounds: Sequence[float], fixed_drift: float, target_power: float
) -> tuple[float, float, float]:
    """How much information looks need against the fixed design, and how much they use on average.

    With ``fixed_drift = z_(1 - alpha/2) + z_(power)``, the mean of the fixed design's ``Z`` at the
    effect it is sized for, the looks at ``fractions`` of a maximum ``R`` times the fixed information
    see ``B`` with drift ``sqrt(R) fixed_drift``. Returns ``R`` (the maximum sample size over the fixed
    design's) at which they cross with ``target_power``, and the expected fraction of that maximum
    used, ``E[t at stop]`` (1 when no look crosses), under the effect and under no difference.
    """
    from scipy import optimize

    def power_at(inflation: float) -> float:
        return float(stopping_probabilities(fractions, bounds, math.sqrt(inflation) * fixed_drift).sum())

    high = 1.0
    while power_at(high) < target_power:
        high *= 2
        if high > 1e4:
            raise ValueError(
                "the looks cannot reach the target power: a boundary is infinite at the last look"
            )
    inflation = (
        high
        if high == 1.0
        else float(optimize.brentq(lambda r: power_at(r) - target_power, high / 2, high, xtol=1e-8))
    )

    def expected(drift: float) -> float:
        stops = stopping_probabilities(fractions, bounds, drift)
        return float(np.dot(stops, fractions) + (1 - stops.sum()) * 1.0)

    return inflation, expected(math.sqrt(inflation) * fixed_drift), expected(0.0)


def _crossing(nodes: Array, weights: Array, t: float, step: float, c: float, drift: float = 0.0) -> float:
    """``P(not stopped before, |B(t)| >= c sqrt(t))`` with ``B(t) = u + N(drift step, step)`` from the
    nodes ``u`` of the continuing density (``weights`` = quadrature weight x density)."""
    from scipy import stats

    edge, sd, shift = c * math.sqrt(t), math.sqrt(step), drift * step
    tails = stats.norm.sf((edge - nodes - shift) / sd) + stats.norm.sf((edge + nodes + shift) / sd)
    return float(weights @ tails)


def _boundary(nodes: Array, weights: Array, t: float, step: float, target: float) -> float:
    """The ``c`` whose crossing probability (:func:`_crossing`, decreasing in ``c``) is ``target``."""
    from scipy import optimize

    if _crossing(nodes, weights, t, step, TAIL) >= target:
        return math.inf
    return float(
        optimize.brentq(lambda c: _crossing(nodes, weights, t, step, c) - target, 0.0, TAIL, xtol=1e-10)
    )


def _continuing(
    nodes: Array, weights: Array, t: float, step: float, next_step: float, c: float, drift: float = 0.0
) -> tuple[Array, Array]:
    """Nodes and weights of the density of ``B(t)`` on the paths continuing past ``|B(t)| < c sqrt(t)``:
    ``f(b) = sum_u weight_u phi((b - u - drift step) / sqrt(step)) / sqrt(step)`` on a Simpson grid
    whose step resolves both this increment and the next (module constants)."""
    from scipy import stats

    half = min(c, TAIL) * math.sqrt(t)
    resolution = math.sqrt(min(step, next_step)) / POINTS_PER_SD
    intervals = min(2 * math.ceil(half / resolution), MAX_INTERVALS)
    grid = np.linspace(-half, half, intervals + 1)
    simpson = np.ones(intervals + 1)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    simpson *= (grid[1] - grid[0]) / 3
    sd = math.sqrt(step)
    density = stats.norm.pdf((grid[:, None] - nodes[None, :] - drift * step) / sd) @ weights / sd
    return grid, simpson * density


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    times = [float(t) for t in fractions]
    if not times:
        raise ValueError("fractions must hold at least one look, got none")
    if not all(0 < t <= 1 for t in times):
        raise ValueError(f"fractions must lie in (0, 1], got {times}")
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"fractions must be strictly increasing, got {times}")
    return times
