"""Closed-form posteriors of one arm's mean and exact comparisons between arms.

- Beta(a, b) for a conversion rate (Beta-Binomial: ``a = a0 + successes``, ``b = b0 + failures``).
- Gamma(shape, rate) for a Poisson rate (Gamma-Poisson: ``shape = a0 + sum(y)``, ``rate = b0 + n``).
- Normal(mean, sd) for a mean known through its delta-method moments (ratio and ordinal metrics).

``prob_greater(x, y) = P(X > Y)`` is exact: Evan Miller's finite sum for Beta posteriors (when one of the
four shape parameters is a whole number; otherwise adaptive quadrature of ``f_X(t) F_Y(t)``), the
regularised incomplete beta function for Gammas (``X/(X+Y)`` of unit-rate Gammas is Beta-distributed) and
the normal CDF for Normals. ``expected_shortfall(x, y) = E[max(Y - X, 0)]``, Chris Stucchio's expected
loss of choosing X when Y may be better, is exact through the size-biased identity
``E[Y 1{Y > X}] = E[Y] P(Y+ > X)``, where ``Y+`` is Y's size-biased law (Beta(a+1, b), Gamma(shape+1, rate)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

_TAIL = 1e-13  # quadrature range: where every posterior keeps all but this mass

if TYPE_CHECKING:
    from scipy import stats


@dataclass(frozen=True)
class BetaPosterior:
    """Beta(a, b): a rate after ``a - a0`` successes and ``b - b0`` failures."""

    a: float
    b: float

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    def law(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.beta(self.a, self.b)

    def size_biased(self) -> BetaPosterior:
        """The law with density ``t f(t) / E[T]``."""
        return BetaPosterior(self.a + 1, self.b)


@dataclass(frozen=True)
class GammaPosterior:
    """Gamma(shape, rate) of a Poisson rate (mean ``shape / rate``)."""

    shape: float
    rate: float

    @property
    def mean(self) -> float:
        return self.shape / self.rate

    def law(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.gamma(self.shape, scale=1 / self.rate)

    def size_biased(self) -> GammaPosterior:
        return GammaPosterior(self.shape + 1, self.rate)


@dataclass(frozen=True)
class NormalPosterior:
    """Normal(mean, sd): a flat-prior posterior of a mean with standard error ``sd``."""

    mean: float
    sd: float

    def law(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.norm(self.mean, self.sd)


type Posterior = BetaPosterior | GammaPosterior | NormalPosterior


def beta_binomial(successes: float, trials: float, a0: float = 1.0, b0: float = 1.0) -> BetaPosterior:
    """Beta(a0 + successes, b0 + trials - successes)."""
    return BetaPosterior(a0 + successes, b0 + trials - successes)


def gamma_poisson(
    total: float, units: float, shape0: float = 0.5, rate0: float = 0.0, dispersion: float = 1.0
) -> GammaPosterior:
    """Gamma(shape0 + total / d, rate0 + units / d) for ``total`` events over ``units`` units.

    ``d = dispersion`` (variance / mean of the per-unit counts, at least 1) tempers the Poisson
    likelihood for over-dispersed counts (a quasi-Poisson posterior: same mean, variance times ``d``);
    ``d = 1`` is the textbook conjugate update.
    """
    d = max(dispersion, 1.0)
    return GammaPosterior(shape0 + total / d, rate0 + units / d)


def prob_greater(x: Posterior, y: Posterior) -> float:
    """P(X > Y) for independent posteriors of the same family (exact; see the module docstring)."""
    from scipy import special

    if isinstance(x, BetaPosterior) and isinstance(y, BetaPosterior):
        return _beta_prob_greater(x, y)
    if isinstance(x, GammaPosterior) and isinstance(y, GammaPosterior):
        # X > Y  <=>  Gy / (Gy + Gx) < y.rate / (x.rate + y.rate), with Gx = x.rate X ~ Gamma(x.shape, 1).
        return float(special.betainc(y.shape, x.shape, y.rate / (x.rate + y.rate)))
    if isinstance(x, NormalPosterior) and isinstance(y, NormalPosterior):
        return float(special.ndtr((x.mean - y.mean) / math.hypot(x.sd, y.sd)))
    raise TypeError(f"cannot compare {type(x).__name__} with {type(y).__name__}")


def expected_shortfall(x: Posterior, y: Posterior) -> float:
    """E[max(Y - X, 0)]: what choosing X loses on average when Y is better (Stucchio's expected loss)."""
    from scipy import special

    if isinstance(x, NormalPosterior) and isinstance(y, NormalPosterior):
        m, s = y.mean - x.mean, math.hypot(x.sd, y.sd)
        return m * float(special.ndtr(m / s)) + s * math.exp(-0.5 * (m / s) ** 2) / math.sqrt(2 * math.pi)
    if isinstance(x, BetaPosterior | GammaPosterior) and isinstance(y, BetaPosterior | GammaPosterior):
        # E[Y 1{Y > X}] - E[X 1{Y > X}] = E[Y] P(Y+ > X) - E[X] P(Y > X+)
        gain = y.mean * prob_greater(y.size_biased(), x) - x.mean * prob_greater(y, x.size_biased())
        return max(gain, 0.0)  # the exact value is >= 0; rounding can leave -1e-17
    raise TypeError(f"cannot compare {type(x).__name__} with {type(y).__name__}")


def prob_best(posteriors: Sequence[Posterior], higher_is_better: bool = True) -> list[float]:
    """P(arm k has the best mean) for each k: ``integral f_k(t) prod_{j != k} F_j(t) dt`` by quadrature.

    With ``higher_is_better=False`` the best arm has the lowest mean (``F`` replaced by ``1 - F``).
    """
    from scipy import integrate

    laws = [p.law() for p in posteriors]
    low = min(float(law.ppf(_TAIL)) for law in laws)
    high = max(float(law.isf(_TAIL)) for law in laws)
    centres = sorted(float(law.mean()) for law in laws)

    def integrand(t: float, k: int) -> float:
        others = [law.cdf(t) if higher_is_better else law.sf(t) for j, law in enumerate(laws) if j != k]
        return float(laws[k].pdf(t) * np.prod(others))

    found = []
    for k in range(len(laws)):
        value, _ = integrate.quad(
            integrand, low, high, args=(k,), points=centres, limit=500, epsabs=1e-12, epsrel=1e-10
        )
        found.append(value)
    total = sum(found)
    return [min(max(v / total, 0.0), 1.0) for v in found]  # normalise the quadrature's ~1e-10 error


def draws(posterior: Posterior, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` independent draws of the posterior mean."""
    match posterior:
        case BetaPosterior(a=a, b=b):
            return rng.beta(a, b, size)
        case GammaPosterior(shape=shape, rate=rate):
            return rng.gamma(shape, 1 / rate, size)
        case NormalPosterior(mean=mean, sd=sd):
            return rng.normal(mean, sd, size)
    raise TypeError(posterior)


# ---------------------------------------------------------------------- Beta: Evan Miller's sum


def _beta_prob_greater(x: BetaPosterior, y: BetaPosterior) -> float:
    """P(X > Y) by the shortest of four equivalent forms of Miller's sum, or quadrature."""
    forms = [  # (whole-number parameter iterated, P(X > Y) from the sum)
        (x.a, lambda: _miller(y, x)),  # P(X > Y), iterating over X's a
        (y.a, lambda: 1.0 - _miller(x, y)),  # 1 - P(Y > X), over Y's a
        (y.b, lambda: _miller(BetaPosterior(x.b, x.a), BetaPosterior(y.b, y.a))),  # P(1-Y > 1-X)
        (x.b, lambda: 1.0 - _miller(BetaPosterior(y.b, y.a), BetaPosterior(x.b, x.a))),
    ]
    whole = [(count, form) for count, form in forms if float(count).is_integer()]
    if not whole:
        return _quadrature_prob_greater(x, y)
    _, form = min(whole, key=lambda item: item[0])
    return min(max(form(), 0.0), 1.0)


def _miller(a: BetaPosterior, b: BetaPosterior) -> float:
    """P(B > A) = sum_{i=0}^{b.a - 1} B(a.a + i, a.b + b.b) / ((b.b + i) B(1 + i, b.b) B(a.a, a.b)).

    Evan Miller, "Formulas for Bayesian A/B testing" (2015); ``b.a`` must be a whole number.
    """
    from scipy import special

    i = np.arange(int(b.a), dtype=float)
    log_terms = (
        special.betaln(a.a + i, a.b + b.b)
        - np.log(b.b + i)
        - special.betaln(1 + i, b.b)
        - special.betaln(a.a, a.b)
    )
    return float(np.exp(special.logsumexp(log_terms)))


def _quadrature_prob_greater(x: Posterior, y: Posterior) -> float:
    """P(X > Y) = integral f_X(t) F_Y(t) dt (for non-integer Beta parameters)."""
    return prob_best([x, y])[0]
