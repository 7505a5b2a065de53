"""Closed-form Bayesian comparisons against independent references.

- Beta posteriors with whole-number parameters: exact rational arithmetic (``fractions.Fraction``).
  The CDF of Beta(a, b) at t is the binomial tail ``sum_{j>=a} C(a+b-1, j) t^j (1-t)^(a+b-1-j)``, so
  ``P(X > Y)``, ``E[max(Y - X, 0)]`` and ``P(arm k is best)`` are integrals of polynomials in ``t`` and
  ``1 - t``: sums of Beta functions, exact as fractions. This derivation shares nothing with Evan
  Miller's sum that promolab evaluates.
- Gamma posteriors with whole-number shapes: the race of two Poisson processes. ``X`` is the time of
  the ``a_x``-th event of a process of rate ``r_x``, ``Y`` of the ``a_y``-th of rate ``r_y``; ``X > Y``
  exactly when at least ``a_y`` of the first ``a_x + a_y - 1`` events of the merged process are Y's,
  each independently with probability ``r_y / (r_x + r_y)``.
- Non-integer parameters and large counts: adaptive quadrature of ``integral f_Y(t) S_X(t) dt`` (the
  other side of the integral promolab uses), to 1e-9.
- Normal posteriors: the distribution of ``X - Y`` (scipy) and quadrature of the expected shortfall.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from promolab.stats import conjugate
from promolab.stats.conjugate import BetaPosterior, GammaPosterior, NormalPosterior

# ------------------------------------------------------------------ exact rational references


def _beta_fn(p: int, q: int) -> Fraction:
    """B(p, q) = (p-1)! (q-1)! / (p+q-1)! for whole p, q >= 1."""
    return Fraction(math.factorial(p - 1) * math.factorial(q - 1), math.factorial(p + q - 1))


type Poly = dict[tuple[int, int], Fraction]  # {(i, j): c} means sum c t^i (1-t)^j


def _density(a: int, b: int) -> Poly:
    return {(a - 1, b - 1): 1 / _beta_fn(a, b)}


def _cdf(a: int, b: int) -> Poly:
    n = a + b - 1
    return {(j, n - j): Fraction(math.comb(n, j)) for j in range(a, n + 1)}


def _survival(a: int, b: int) -> Poly:
    n = a + b - 1
    return {(j, n - j): Fraction(math.comb(n, j)) for j in range(0, a)}


def _times(p: Poly, q: Poly) -> Poly:
    out: Poly = {}
    for (i1, j1), c1 in p.items():
        for (i2, j2), c2 in q.items():
            key = (i1 + i2, j1 + j2)
            out[key] = out.get(key, Fraction(0)) + c1 * c2
    return out


def _integral(p: Poly) -> Fraction:
    """integral_0^1 of the polynomial: sum c B(i+1, j+1)."""
    return sum((c * _beta_fn(i + 1, j + 1) for (i, j), c in p.items()), Fraction(0))


def exact_beta_prob_greater(x: tuple[int, int], y: tuple[int, int]) -> Fraction:
    """P(X > Y) = integral f_X F_Y."""
    return _integral(_times(_density(*x), _cdf(*y)))


def exact_beta_shortfall(x: tuple[int, int], y: tuple[int, int]) -> Fraction:
    """E[max(Y - X, 0)] = integral t f_Y(t) F_X(t) dt - integral t f_X(t) S_Y(t) dt."""
    t: Poly = {(1, 0): Fraction(1)}
    gain = _integral(_times(t, _times(_density(*y), _cdf(*x))))
    cost = _integral(_times(t, _times(_density(*x), _survival(*y))))
    return gain - cost


def exact_beta_prob_best(arms: list[tuple[int, int]]) -> list[Fraction]:
    """P(arm k has the largest rate) = integral f_k prod_{j != k} F_j."""
    found = []
    for k, arm in enumerate(arms):
        poly = _density(*arm)
        for j, other in enumerate(arms):
            if j != k:
                poly = _times(poly, _cdf(*other))
        found.append(_integral(poly))
    return found


def exact_gamma_prob_greater(x: tuple[int, Fraction], y: tuple[int, Fraction]) -> Fraction:
    """P(X > Y) for X ~ Gamma(a_x, r_x), Y ~ Gamma(a_y, r_y) with whole shapes: the Poisson race."""
    (ax, rx), (ay, ry) = x, y
    p = ry / (rx + ry)
    n = ax + ay - 1
    return sum((math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(ay, n + 1)), Fraction(0))


def exact_gamma_shortfall(x: tuple[int, Fraction], y: tuple[int, Fraction]) -> Fraction:
    """E[max(Y - X, 0)] = integral t f_Y(t) F_X(t) dt - integral t f_X(t) S_Y(t) dt, term by term.

    ``S_X(t) = sum_{k < a_x} e^{-r_x t} (r_x t)^k / k!`` and ``integral t^m e^{-c t} dt = m! / c^(m+1)``.
    """

    def moment(shape: int, rate: Fraction, power: int, other_rate: Fraction = Fraction(0)) -> Fraction:
        """integral t^power f(t) e^{-other_rate t} dt for f = Gamma(shape, rate) density."""
        m = shape - 1 + power
        return rate**shape / math.factorial(shape - 1) * math.factorial(m) / (rate + other_rate) ** (m + 1)

    def tail_moment(shape: int, rate: Fraction, other: tuple[int, Fraction]) -> Fraction:
        """integral t f(t) S_other(t) dt."""
        a, r = other
        return sum(
            (r**k / math.factorial(k) * moment(shape, rate, 1 + k, r) for k in range(a)),
            Fraction(0),
        )

    (ax, rx), (ay, ry) = x, y
    mean_y = Fraction(ay) / ry
    gain = mean_y - tail_moment(ay, ry, x)  # integral t f_Y (1 - S_X)
    cost = tail_moment(ax, rx, y)
    return gain - cost


# ------------------------------------------------------------------ Beta


BETA_PAIRS = [
    ((1, 1), (1, 1)),
    ((3, 7), (5, 4)),
    ((21, 180), (30, 171)),
    ((2, 40), (1, 3)),
    ((60, 3), (57, 8)),
    ((11, 11), (11, 11)),
]


@pytest.mark.parametrize(("x", "y"), BETA_PAIRS)
def test_beta_prob_greater_is_exact(x, y):
    assert conjugate.prob_greater(BetaPosterior(*x), BetaPosterior(*y)) == pytest.approx(
        float(exact_beta_prob_greater(x, y)), rel=1e-12, abs=1e-15
    )


@pytest.mark.parametrize(("x", "y"), BETA_PAIRS)
def test_beta_expected_shortfall_is_exact(x, y):
    assert conjugate.expected_shortfall(BetaPosterior(*x), BetaPosterior(*y)) == pytest.approx(
        float(exact_beta_shortfall(x, y)), rel=1e-10, abs=1e-15
    )


@pytest.mark.parametrize(
    "arms",
    [[(3, 7), (5, 4), (2, 9)], [(21, 180), (30, 171), (25, 176), (28, 173)], [(4, 4), (4, 4)]],
)
def test_beta_prob_best_is_exact(arms):
    found = conjugate.prob_best([BetaPosterior(*arm) for arm in arms])
    expected = [float(v) for v in exact_beta_prob_best(arms)]
    assert sum(expected) == pytest.approx(1.0, abs=1e-15)  # the reference is self-consistent
    assert found == pytest.approx(expected, rel=1e-8, abs=1e-12)


def test_beta_prob_best_lower_is_better_is_the_mirror_problem():
    arms = [(3, 7), (5, 4), (2, 9)]
    mirrored = [(b, a) for a, b in arms]  # 1 - X ~ Beta(b, a): the lowest X is the highest 1 - X
    found = conjugate.prob_best([BetaPosterior(*arm) for arm in arms], higher_is_better=False)
    assert found == pytest.approx([float(v) for v in exact_beta_prob_best(mirrored)], rel=1e-8)


def _quad_prob_greater(x: stats.rv_continuous, y: stats.rv_continuous, points: list[float]) -> float:
    """integral f_Y(t) S_X(t) dt: the mirror of the integral promolab evaluates."""
    low = min(x.ppf(1e-14), y.ppf(1e-14))
    high = max(x.isf(1e-14), y.isf(1e-14))
    value, _ = integrate.quad(
        lambda t: y.pdf(t) * x.sf(t), low, high, points=points, limit=500, epsabs=1e-13, epsrel=1e-11
    )
    return value


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ((2.5, 7.25), (4.5, 3.75)),  # no whole-number parameter: promolab falls back to quadrature
        ((0.5, 0.5), (1.5, 2.5)),  # U-shaped density
        ((30.2, 170.7), (25.9, 175.3)),
    ],
)
def test_beta_prob_greater_without_whole_parameters_matches_quadrature(x, y):
    px, py = BetaPosterior(*x), BetaPosterior(*y)
    reference = _quad_prob_greater(px.law(), py.law(), [px.mean, py.mean])
    assert conjugate.prob_greater(px, py) == pytest.approx(reference, rel=1e-8)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ((50_001.0, 950_001.0), (51_001.0, 949_001.0)),  # 5.0% vs 5.1% on a million units per arm
        ((2_001.0, 98_001.5), (2_050.5, 97_952.0)),  # one whole-number parameter on each side
        ((400_001.0, 600_001.0), (400_601.0, 599_401.0)),
    ],
)
def test_beta_prob_greater_with_large_counts_matches_quadrature(x, y):
    px, py = BetaPosterior(*x), BetaPosterior(*y)
    reference = _quad_prob_greater(px.law(), py.law(), [px.mean, py.mean])
    assert conjugate.prob_greater(px, py) == pytest.approx(reference, rel=1e-7, abs=1e-12)


# ------------------------------------------------------------------ Gamma


GAMMA_PAIRS = [
    ((1, Fraction(1)), (1, Fraction(1))),
    ((3, Fraction(2)), (5, Fraction(3))),
    ((40, Fraction(100)), (52, Fraction(100))),
    ((7, Fraction(5, 2)), (2, Fraction(1, 3))),
    ((120, Fraction(1000)), (150, Fraction(1100))),
]


@pytest.mark.parametrize(("x", "y"), GAMMA_PAIRS)
def test_gamma_prob_greater_is_exact(x, y):
    px, py = GammaPosterior(x[0], float(x[1])), GammaPosterior(y[0], float(y[1]))
    assert conjugate.prob_greater(px, py) == pytest.approx(
        float(exact_gamma_prob_greater(x, y)), rel=1e-12, abs=1e-15
    )


@pytest.mark.parametrize(("x", "y"), GAMMA_PAIRS)
def test_gamma_expected_shortfall_is_exact(x, y):
    px, py = GammaPosterior(x[0], float(x[1])), GammaPosterior(y[0], float(y[1]))
    assert conjugate.expected_shortfall(px, py) == pytest.approx(
        float(exact_gamma_shortfall(x, y)), rel=1e-10, abs=1e-15
    )


def test_gamma_posterior_is_the_conjugate_update():
    posterior = conjugate.gamma_poisson(total=37, units=20, shape0=0.5, rate0=0.0)
    assert (posterior.shape, posterior.rate) == (37.5, 20.0)
    tempered = conjugate.gamma_poisson(total=37, units=20, shape0=0.5, rate0=0.0, dispersion=2.0)
    assert (tempered.shape, tempered.rate) == (0.5 + 37 / 2, 20 / 2)  # likelihood raised to 1/d


@pytest.mark.parametrize(
    ("x", "y"), [((37.5, 20.0), (51.5, 21.0)), ((0.5, 1e-3), (1.5, 2e-3)), ((4_000.5, 1e5), (4_100.5, 1e5))]
)
def test_gamma_prob_greater_with_fractional_shapes_matches_quadrature(x, y):
    px, py = GammaPosterior(*x), GammaPosterior(*y)
    reference = _quad_prob_greater(px.law(), py.law(), [px.mean, py.mean])
    assert conjugate.prob_greater(px, py) == pytest.approx(reference, rel=1e-8, abs=1e-13)


# ------------------------------------------------------------------ Normal


@pytest.mark.parametrize(
    ("x", "y"), [((1.0, 0.3), (0.8, 0.4)), ((10.0, 1.0), (10.0, 1.0)), ((-2.0, 0.1), (3.0, 2))]
)
def test_normal_comparisons_match_the_law_of_the_difference(x, y):
    px, py = NormalPosterior(*x), NormalPosterior(*y)
    difference = stats.norm(py.mean - px.mean, math.hypot(px.sd, py.sd))  # Y - X
    assert conjugate.prob_greater(px, py) == pytest.approx(difference.cdf(0.0), rel=1e-12)
    shortfall, _ = integrate.quad(lambda d: d * difference.pdf(d), 0.0, np.inf, epsabs=1e-13)
    assert conjugate.expected_shortfall(px, py) == pytest.approx(shortfall, rel=1e-9, abs=1e-14)


def test_normal_prob_best_matches_monte_carlo_free_two_arm_form():
    arms = [NormalPosterior(1.0, 0.3), NormalPosterior(0.8, 0.4)]
    found = conjugate.prob_best(arms)
    assert found[0] == pytest.approx(conjugate.prob_greater(arms[0], arms[1]), rel=1e-9)


# ------------------------------------------------------------------ the tests can fail


def test_the_rational_reference_detects_an_off_by_one_posterior():
    """A posterior that forgot the prior's pseudo-count differs from the reference beyond tolerance."""
    right = float(exact_beta_prob_greater((21, 180), (30, 171)))
    wrong = conjugate.prob_greater(BetaPosterior(20, 179), BetaPosterior(30, 171))
    assert abs(wrong - right) > 1e-3


# ------------------------------------------------------------------ properties


counts = st.integers(min_value=0, max_value=400)


@st.composite
def beta_arms(draw: st.DrawFn) -> BetaPosterior:
    trials = draw(st.integers(min_value=1, max_value=2_000))
    successes = draw(st.integers(min_value=0, max_value=trials))
    return conjugate.beta_binomial(successes, trials)


@settings(max_examples=60, deadline=None)
@given(beta_arms(), beta_arms())
def test_beta_comparisons_are_complementary_and_antisymmetric(x, y):
    assert conjugate.prob_greater(x, y) + conjugate.prob_greater(y, x) == pytest.approx(1.0, abs=1e-9)
    # E[max(Y-X,0)] - E[max(X-Y,0)] = E[Y] - E[X]
    assert conjugate.expected_shortfall(x, y) - conjugate.expected_shortfall(y, x) == pytest.approx(
        y.mean - x.mean, abs=1e-9
    )
    two = conjugate.prob_best([x, y])
    assert two[0] == pytest.approx(conjugate.prob_greater(x, y), abs=1e-7)


@settings(max_examples=60, deadline=None)
@given(counts, counts, st.integers(min_value=1, max_value=500), st.integers(min_value=1, max_value=500))
def test_gamma_comparisons_are_complementary_and_antisymmetric(total_x, total_y, units_x, units_y):
    x, y = conjugate.gamma_poisson(total_x, units_x), conjugate.gamma_poisson(total_y, units_y)
    assert conjugate.prob_greater(x, y) + conjugate.prob_greater(y, x) == pytest.approx(1.0, abs=1e-12)
    assert conjugate.expected_shortfall(x, y) - conjugate.expected_shortfall(y, x) == pytest.approx(
        y.mean - x.mean, rel=1e-9, abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=500), st.integers(min_value=0, max_value=499), beta_arms())
def test_one_more_success_raises_the_probability_of_beating(trials, successes, other):
    successes = min(successes, trials - 1)
    before = conjugate.prob_greater(conjugate.beta_binomial(successes, trials), other)
    after = conjugate.prob_greater(conjugate.beta_binomial(successes + 1, trials), other)
    assert after >= before - 1e-12
