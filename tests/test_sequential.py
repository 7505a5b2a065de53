"""Sequential inference (:mod:`promolab.stats.sequential`) against published tables, an independent
integration and seeded A/A simulations.

Independent references:

- Lan-DeMets boundaries, two-sided alpha = 0.05 split equally, 5 equally spaced looks: ldbounds
  ``ldBounds(5, iuse=1, alpha=0.05)`` / gsDesign ``gsDesign(k=5, test.type=2, alpha=0.025,
  sfu=sfLDOF)$upper$bound`` (O'Brien-Fleming type) and ``iuse=2`` / ``sfu=sfLDPocock`` (Pocock type),
  as printed to 4 decimals. The same numbers were recomputed for this file with Genz's integration
  (``scipy.stats.multivariate_normal(cov=sqrt(t_j / t_k), abseps=1e-9).cdf(c, lower_limit=-c)``,
  solving one look at a time): 4.876885, 3.357012, 2.680280, 2.289817, 2.031032 and 2.437977,
  2.426814, 2.410194, 2.396645, 2.385982.
- Crossing probabilities: Genz's integration for uneven looks, and a Monte Carlo of the Brownian
  motion ``B(t_k)`` (independent normal increments), never promolab's own recursion.
- The mSPRT ratio at ``V = tau^2 = 1``, ``theta_hat = 3``: ``sqrt(1/2) exp(9/4)`` by hand.

Simulation tolerances: a rate from ``R`` replicates has binomial sd ``sqrt(p (1 - p) / R)``; bounds
are 4 sd (Monte Carlo of boundaries) or 3 sd (A/A runs: 0.0207 above alpha = 0.05 at R = 1000).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from promolab.stats.sequential import (
    Spending,
    always_valid_p_value,
    always_valid_p_values,
    confidence_sequence,
    obrien_fleming_spending,
    optimal_rho,
    pocock_spending,
    sequential_sizing,
    spending_boundaries,
    stopping_probabilities,
)

type Array = npt.NDArray[np.float64]

ALPHA = 0.05
EQUAL_5 = (0.2, 0.4, 0.6, 0.8, 1.0)
PUBLISHED = {  # ldbounds ldBounds(5, iuse=1 or 2, alpha=0.05); gsDesign sfLDOF / sfLDPocock (module doc)
    "obrien-fleming": (obrien_fleming_spending, (4.8769, 3.3569, 2.6803, 2.2898, 2.0310)),
    "pocock": (pocock_spending, (2.4380, 2.4268, 2.4101, 2.3966, 2.3859)),
}
SPENDINGS = [pytest.param(f, id=name) for name, (f, _) in PUBLISHED.items()]
DAYS, PER_DAY, RUNS = 28, 100, 1000  # A/A: 28 daily looks, 100 units per arm and day, 1000 runs
AA_LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def _rng(label: str) -> np.random.Generator:
    """A Generator seeded from the check's label (never tuned)."""
    return np.random.default_rng([20260301, zlib.crc32(label.encode())])


# ---------------------------------------------------------------------------- group-sequential bounds


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_boundaries_match_published_lan_demets_tables(name):
    spending, published = PUBLISHED[name]
    assert spending_boundaries(EQUAL_5, ALPHA, spending) == pytest.approx(published, abs=1e-3)


@pytest.mark.parametrize("spending", SPENDINGS)
@pytest.mark.parametrize("fractions", [(0.3, 0.7, 1.0), (0.15, 0.4, 0.45), (0.5, 0.501, 1.0)])
def test_uneven_looks_spend_alpha_by_genz_integration(spending: Spending, fractions):
    """``1 - P(|Z_j| < c_j, j <= k)`` by Genz's algorithm, ``Cov(Z_j, Z_k) = sqrt(t_j / t_k)``. Genz's
    randomised integration is itself only good to about 1e-5 when two looks are 0.001 apart (a
    correlation of 0.999: four seeds gave 0.049991 to 0.050000 for a spent 0.05), so that case is
    compared within 3e-5 with a fixed seed; the others within 1e-6."""
    bounds = spending_boundaries(fractions, ALPHA, spending)
    t = np.array(fractions)
    tolerance = 3e-5 if np.diff(t).min() < 0.01 else 1e-6
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    for k in range(1, len(t) + 1):
        mvn = stats.multivariate_normal(np.zeros(k), cov[:k, :k], seed=k, abseps=1e-9, releps=1e-9)
        crossed = 1 - mvn.cdf(bounds[:k], lower_limit=-bounds[:k])
        assert crossed == pytest.approx(spending(t[k - 1], ALPHA), abs=tolerance)


def _brownian_z(fractions: tuple[float, ...], draws: int, label: str) -> Array:
    """``Z_k = B(t_k) / sqrt(t_k)`` for ``draws`` standard Brownian paths (draws x looks)."""
    t = np.array(fractions)
    steps = np.sqrt(np.diff(t, prepend=0.0))
    paths = np.cumsum(_rng(label).standard_normal((draws, len(t))) * steps, axis=1)
    return paths / np.sqrt(t)


@pytest.mark.parametrize("spending", SPENDINGS)
@pytest.mark.parametrize("fractions", [EQUAL_5, (0.15, 0.4, 0.45, 0.9)])
def test_crossing_probability_under_null_equals_spent_alpha(spending: Spending, fractions):
    draws = 1_000_000
    z = _brownian_z(fractions, draws, f"crossing {spending.__name__} {fractions}")
    crossed = np.cumsum(np.abs(z) >= spending_boundaries(fractions, ALPHA, spending), axis=1) > 0
    for k, t in enumerate(fractions):
        spent = spending(t, ALPHA)
        assert crossed[:, k].mean() == pytest.approx(spent, abs=4 * math.sqrt(spent * (1 - spent) / draws))


def test_boundaries_depend_only_on_past_looks():
    """Recomputing with the information actually observed leaves earlier boundaries as they were."""
    full = spending_boundaries((0.2, 0.45, 0.7, 1.0))
    assert spending_boundaries((0.2, 0.45)) == pytest.approx(full[:2], abs=1e-12)
    assert spending_boundaries((0.2, 0.45, 0.8, 1.0))[:2] == pytest.approx(full[:2], abs=1e-12)


def test_a_look_that_can_spend_nothing_never_stops():
    """O'Brien-Fleming type at t = 0.01 spends 4 Phi(-22.4 * 10) ~ 1e-110: no finite boundary."""
    bounds = spending_boundaries((0.01, 1.0))
    assert bounds[0] == math.inf
    assert bounds[1] == pytest.approx(stats.norm.isf(ALPHA / 2), abs=1e-6)


# ---------------------------------------------------------------------------------------- A/A runs


def _aa_looks(draw: Callable[[np.random.Generator, tuple[int, ...]], Array], label: str):
    """Per run and day: the difference in means (treatment - control) of all units so far, its
    unpooled standard error and the units in both arms. Arms have the same distribution: truth 0."""
    units = _rng(label)
    data = draw(units, (RUNS, 2, DAYS * PER_DAY))
    n = PER_DAY * np.arange(1, DAYS + 1)
    estimates, ses = np.empty((RUNS, DAYS)), np.empty((RUNS, DAYS))
    for day, count in enumerate(n):
        seen = data[:, :, :count]
        means, variances = seen.mean(axis=2), seen.var(axis=2, ddof=1)
        estimates[:, day] = means[:, 1] - means[:, 0]
        ses[:, day] = np.sqrt(variances.sum(axis=1) / count)
    return estimates, ses, 2 * n


DATA = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "lognormal": lambda rng, shape: rng.lognormal(0.0, 1.0, shape),
}


@pytest.fixture(scope="module", params=list(DATA))
def aa_looks(request):
    return _aa_looks(DATA[request.param], f"aa {request.param}")


def test_confidence_sequence_keeps_alpha_over_28_looks_where_naive_ci_does_not(aa_looks):
    estimates, ses, n = aa_looks
    rho = optimal_rho(n[-1], ALPHA)
    excluded = np.zeros(RUNS, dtype=bool)
    for run, day in np.ndindex(RUNS, DAYS):
        low, high = confidence_sequence(estimates[run, day], ses[run, day], n[day], rho, ALPHA)
        excluded[run] |= not low <= 0 <= high
    naive = (np.abs(estimates / ses) > stats.norm.isf(ALPHA / 2)).any(axis=1)
    assert excluded.mean() <= AA_LIMIT
    assert naive.mean() > 0.15


def test_msprt_p_value_rarely_ever_drops_below_alpha(aa_looks):
    estimates, ses, _ = aa_looks
    tau = 2 * float(np.median(ses[:, -1]))  # effects of about twice the final standard error
    final = [always_valid_p_values(e, s, tau)[-1] for e, s in zip(estimates, ses, strict=True)]
    assert np.mean(np.array(final) <= ALPHA) <= AA_LIMIT


# ---------------------------------------------------------------------------- confidence sequences


def _width_ratio(n: float, rho: float, alpha: float) -> float:
    """Confidence-sequence width over the fixed-horizon normal interval's at the same se (se = 1)."""
    low, high = confidence_sequence(0.0, 1.0, n, rho, alpha)
    return (high - low) / (2 * stats.norm.isf(alpha / 2))


@given(
    alpha=st.floats(0.001, 0.3),
    planned=st.floats(10, 1e7),
    n=st.floats(1, 1e8),
)
def test_confidence_sequence_is_wider_than_fixed_and_narrowest_at_planned_n(alpha, planned, n):
    rho = optimal_rho(planned, alpha)
    assert _width_ratio(n, rho, alpha) > 1
    assert _width_ratio(planned, rho, alpha) <= _width_ratio(n, rho, alpha) * (1 + 1e-12)
    for other in (rho * 0.9, rho * 1.1):  # and no other rho is narrower at the planned n
        assert _width_ratio(planned, rho, alpha) <= _width_ratio(planned, other, alpha)


@given(alpha=st.floats(0.001, 0.3), planned=st.floats(10, 1e7))
def test_optimal_rho_is_close_to_the_papers_closed_form(alpha, planned):
    """Waudby-Smith et al.: ``rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / t_opt`` (one fixed-point
    step); the exact minimiser's width is no larger and the two differ by < 0.1% in width."""
    paper = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / planned)
    ours = optimal_rho(planned, alpha)
    assert _width_ratio(planned, ours, alpha) <= _width_ratio(planned, paper, alpha) * (1 + 1e-12)
    assert _width_ratio(planned, paper, alpha) == pytest.approx(_width_ratio(planned, ours, alpha), rel=1e-3)


def test_confidence_sequence_scales_with_the_unit():
    """Cents instead of dollars, and a shifted level: the interval moves and scales exactly."""
    rho = optimal_rho(5000)
    low, high = confidence_sequence(0.8, 0.3, 2000, rho)
    low_c, high_c = confidence_sequence(1e6 + 80.0, 30.0, 2000, rho)
    assert (low_c - 1e6, high_c - 1e6) == pytest.approx((100 * low, 100 * high), rel=1e-9)


# ------------------------------------------------------------------------------------------- mSPRT


def test_msprt_p_value_matches_the_ratio_by_hand():
    assert always_valid_p_value(3.0, 1.0, 1.0) == pytest.approx(1 / (math.sqrt(0.5) * math.exp(2.25)))
    assert always_valid_p_value(0.0, 1.0, 1.0) == 1.0  # Lambda = sqrt(1/2) < 1
    assert always_valid_p_value(3.0, 1.0, 1.0, previous=0.01) == 0.01


@given(
    st.lists(
        st.tuples(st.floats(-1e3, 1e3), st.floats(1e-3, 1e3)),
        min_size=1,
        max_size=40,
    ),
    st.floats(1e-3, 1e3),
)
def test_msprt_p_values_never_increase(looks, tau):
    estimates, ses = zip(*looks, strict=True)
    p = always_valid_p_values(estimates, ses, tau)
    assert len(p) == len(looks)
    assert all(0 <= x <= 1 for x in p)
    assert all(b <= a for a, b in itertools.pairwise(p))


# -------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_alpha_outside_unit_interval_is_rejected(alpha):
    for call in (
        lambda: optimal_rho(1000, alpha),
        lambda: confidence_sequence(0.0, 1.0, 100, 0.1, alpha),
        lambda: spending_boundaries(EQUAL_5, alpha),
    ):
        with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
            call()


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.5, 0.5, 1.0), "strictly increasing"),
        ((0.6, 0.4, 1.0), "strictly increasing"),
        ((0.0, 1.0), r"in \(0, 1\]"),
        ((0.5, 1.2), r"in \(0, 1\]"),
        ((), "at least one look"),
    ],
)
def test_bad_information_fractions_are_rejected(fractions, message):
    with pytest.raises(ValueError, match=message):
        spending_boundaries(fractions)


@pytest.mark.parametrize("se", [0.0, -1.0, math.nan, math.inf])
def test_nonpositive_standard_error_is_rejected(se):
    with pytest.raises(ValueError, match="se must be a finite number > 0"):
        confidence_sequence(0.0, se, 100, 0.1)
    with pytest.raises(ValueError, match="se must be a finite number > 0"):
        always_valid_p_value(0.0, se, 1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: confidence_sequence(0.0, 1.0, 0, 0.1), "n must be"),
        (lambda: confidence_sequence(0.0, 1.0, 100, 0.0), "rho must be"),
        (lambda: confidence_sequence(math.nan, 1.0, 100, 0.1), "estimate must be a finite number"),
        (lambda: optimal_rho(0), "planned_n must be"),
        (lambda: always_valid_p_value(0.0, 1.0, 0.0), "tau must be"),
        (lambda: always_valid_p_value(0.0, 1.0, 1.0, previous=1.5), r"previous must be a p-value"),
    ],
)
def test_other_bad_input_is_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------- sizing under an effect


def _brownian_first_stops(
    fractions: list[float], bounds: list[float], drift: float, paths: int, seed: int
) -> npt.NDArray[np.float64]:
    """Monte Carlo share of paths whose first ``|Z_k| >= c_k`` is look k (``B`` with mean drift t)."""
    rng = np.random.default_rng(seed)
    steps = np.diff([0.0, *fractions])
    b = np.cumsum(rng.standard_normal((paths, len(fractions))) * np.sqrt(steps) + drift * steps, axis=1)
    crossed = np.abs(b / np.sqrt(fractions)) >= np.array(bounds)
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    return np.array([np.mean(first == k) for k in range(len(fractions))])


@pytest.mark.parametrize("spending", [obrien_fleming_spending, pocock_spending], ids=["obf", "pocock"])
def test_stopping_probabilities_under_an_effect_match_brownian_paths(
    spending: Callable[[float, float], float],
) -> None:
    """Under a drift of 3 (Z's mean at t = 1), each look's first-crossing probability from the
    recursion equals that of 400,000 simulated paths within 4 standard errors; at no drift they sum
    to alpha."""
    fractions = [0.15, 0.4, 0.55, 0.8, 1.0]
    bounds = list(spending_boundaries(fractions, 0.05, spending))
    assert stopping_probabilities(fractions, bounds).sum() == pytest.approx(0.05, abs=1e-7)
    exact = stopping_probabilities(fractions, bounds, drift=3.0)
    simulated = _brownian_first_stops(fractions, bounds, 3.0, 400_000, seed=3)
    se = np.sqrt(exact * (1 - exact) / 400_000)
    assert np.all(np.abs(simulated - exact) <= 4 * se + 1e-12)


def test_sequential_sizing_reproduces_the_published_inflation_factors() -> None:
    """Classical boundaries at K equal looks, two-sided alpha 0.05, power 0.9 (Jennison and Turnbull
    2000, Tables 2.1 and 2.3): Pocock's constant C_P(4) = 2.361 and C_P(5) = 2.413 need 1.183 and
    1.207 times the fixed sample (SAS PROC SEQDESIGN's Example 3 prints 118% for K = 4); O'Brien and
    Fleming's C_B(5) sqrt(5 / k), C_B(5) = 2.040, needs 1.026."""
    drift = stats.norm.isf(0.025) + stats.norm.isf(0.1)
    cases = [
        ([2.361] * 4, 1.183),
        ([2.413] * 5, 1.207),
        ([2.040 * math.sqrt(5 / k) for k in range(1, 6)], 1.026),
    ]
    for bounds, published in cases:
        fractions = [k / len(bounds) for k in range(1, len(bounds) + 1)]
        assert stopping_probabilities(fractions, bounds).sum() == pytest.approx(0.05, abs=1e-4)
        assert sequential_sizing(fractions, bounds, drift, 0.9)[0] == pytest.approx(published, abs=1.5e-3)


def test_sequential_sizing_reaches_the_target_power_on_simulated_paths() -> None:
    """Lan-DeMets spending at five equal looks: Brownian paths at the maximum information found reach
    90% power (within 4 standard errors of 400,000 paths), and use on average the fraction found, at
    that effect and at none."""
    fractions = [0.2, 0.4, 0.6, 0.8, 1.0]
    drift = stats.norm.isf(0.025) + stats.norm.isf(0.1)
    for spending in (obrien_fleming_spending, pocock_spending):
        bounds = list(spending_boundaries(fractions, 0.05, spending))
        inflation, at_effect, at_zero = sequential_sizing(fractions, bounds, drift, 0.9)
        assert 1.0 < inflation < 1.25
        stops = _brownian_first_stops(fractions, bounds, math.sqrt(inflation) * drift, 400_000, seed=4)
        assert stops.sum() == pytest.approx(0.9, abs=4 * math.sqrt(0.09 / 400_000))
        expected = float(np.dot(stops, fractions) + 1 - stops.sum())
        assert at_effect == pytest.approx(expected, abs=3e-3)
        null_stops = _brownian_first_stops(fractions, bounds, 0.0, 400_000, seed=5)
        assert at_zero == pytest.approx(float(np.dot(null_stops, fractions) + 1 - null_stops.sum()), abs=1e-3)
