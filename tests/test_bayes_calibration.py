"""Calibration of the Bayesian models: simulation-based calibration (SBC) and interval coverage.

Simulation-based calibration (Talts et al. 2018, "Validating Bayesian inference algorithms with
simulation-based calibration", arXiv:1804.06788). Draw a parameter from the prior, data from the model,
and ``L`` posterior draws given those data: if the posterior is right, the rank of the true parameter
among the draws (0..L) is uniform, whatever the data. The ranks of many replicates are grouped into
equal bins and compared with the uniform by a chi-square test; uniformity is rejected at ``p < 0.001``.
With the fixed seeds below (derived from each check's label, never tuned) a correct model fails one rank
test with probability 0.001. Every check also ranks the truth against deliberately wrong posteriors of
the same simulated data (a prior lost, Poisson data tempered, the log-normal mean without its
``sigma^2 / 2``), which must give ``p < 0.001``: the same criterion has the power to see a wrong model.

- Beta-Binomial and Gamma-Poisson (:mod:`promolab.stats.conjugate`): 4,000 replicates, 99 draws each
  from :func:`conjugate.draws` (the function the analysis draws with), 20 bins of 5 ranks.
- Hurdle model (:func:`mcmc.fit_hurdle`): 200 replicates from the model's own priors, 99 thinned NUTS
  draws each, 5 bins of 20 ranks, for ``p``, ``mu``, ``sigma`` and the mean per unit. The model has no
  pooling across arms, so its posterior factorises over arms: one fit of 50 arms is 50 independent
  replicates, and 200 replicates cost 4 fits of ~3 s instead of 200 of ~1.2 s (mostly graph rewriting).
  ``fit_hurdle`` returns draws of the mean only; a spy on ``pm.sample`` keeps the whole trace (checked
  to hold the same draws of the mean).
  Simulated data sets with fewer than ``MIN_BUYERS`` buyers are redrawn. Selecting on the *data* keeps
  the ranks uniform (the rank is uniform given every data set); selecting on the parameters would not.
  Arms with a handful of buyers give the sampler a funnel and divergences (which the diagnostics flag),
  and a divergent arm would spoil the step size of the 49 others in its fit.

Coverage at a known truth: many two-arm experiments with fixed rates and a fixed relative lift; the 95%
HDI (:func:`promolab.stats.intervals.hdi`, as reported in ``rel_hdi``) of ``variant / control - 1`` from
4,000 posterior draws must cover the true lift. At these sample sizes the posterior is close to normal
(Bernstein-von Mises), so a correct model covers at the nominal 95%; the number of covering replicates is
then Binomial(R, 0.95), and the rate must fall in that law's central 99.9% interval ([0.9335, 0.9655] at
R = 2,000). The counts check runs on over-dispersed (negative binomial) counts: tempered by the
dispersion (:func:`promolab.kinds.count.dispersion`, pooled variance / mean) the Gamma-Poisson posterior
covers at 95%; the textbook Poisson posterior (dispersion 1) must fall below the band, which shows the
tempering matters. The binary check's wrong posterior has a prior as heavy as the data at the control
rate.

Hurdle reference: given ``sigma`` the hurdle posterior of ``mu`` is normal (normal prior, normal
likelihood), so ``p(sigma | data)`` on a fine grid of ``log sigma`` gives exact posterior moments of
``mu``, ``sigma`` and ``mu + sigma^2 / 2``; ``p`` is exactly ``Beta(1 + b, 1 + n - b)`` and independent
of them. The mean per unit ``p exp(mu + sigma^2 / 2)`` has *no* finite posterior mean: the likelihood
decays only like ``sigma^-(b-1)`` in ``sigma`` and the HalfNormal(2.5) prior like
``exp(-sigma^2 / 12.5)``, slower than ``exp(sigma^2 / 2)`` grows. So its check is on
``log(mean) = log p + mu + sigma^2 / 2``, whose moments are finite and exact.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import special, stats

from promolab.kinds.count import dispersion
from promolab.spec.models import Bayes
from promolab.stats import conjugate, mcmc
from promolab.stats.intervals import hdi
from promolab.stats.moments import Moments

type Array = npt.NDArray[np.float64]
type IntArray = npt.NDArray[np.int64]

RANK_P_MIN = 0.001  # chi-square p-value below which ranks are not uniform
CONFIDENCE = 0.95
BAND_PROB = 0.999  # coverage must lie in this central interval of Binomial(R, CONFIDENCE)


def _rng(label: str) -> np.random.Generator:
    """A Generator seeded from the check's label: deterministic and independent across checks."""
    return np.random.default_rng([20260101, zlib.crc32(label.encode())])


def _rank_p_value(ranks: IntArray, n_draws: int, bins: int) -> float:
    """Chi-square p-value of ranks in 0..n_draws against the uniform, grouped into ``bins`` equal bins."""
    assert (n_draws + 1) % bins == 0, "every bin must hold the same number of possible ranks"
    counts = np.bincount(ranks * bins // (n_draws + 1), minlength=bins)
    return float(stats.chisquare(counts).pvalue)


def _ranks(truth: Array, draws: Array) -> IntArray:
    """Rank of each replicate's truth among its draws (replicates x draws)."""
    return np.sum(draws < truth[:, None], axis=1)


def _coverage_band(reps: int) -> tuple[float, float]:
    """Central ``BAND_PROB`` interval of the covering share of a calibrated interval over ``reps``."""
    low, high = stats.binom.interval(BAND_PROB, reps, CONFIDENCE)
    return low / reps, high / reps


# ---------------------------------------------------------------------- SBC of the closed forms

SBC_REPS = 4000
SBC_DRAWS = 99  # ranks 0..99: 20 bins of 5 ranks, 200 replicates expected per bin
SBC_BINS = 20


def _conjugate_rank_p(
    truth: Array, posteriors: Sequence[conjugate.Posterior], rng: np.random.Generator
) -> float:
    draws = np.array([conjugate.draws(p, SBC_DRAWS, rng) for p in posteriors])
    return _rank_p_value(_ranks(truth, draws), SBC_DRAWS, SBC_BINS)


def test_beta_binomial_sbc_ranks_are_uniform():
    """Prior Beta(3, 12) (mean 0.2), 40 trials: the prior weighs about a third of the data."""
    a0, b0, trials = 3.0, 12.0, 40
    rng = _rng("sbc beta-binomial")
    theta = rng.beta(a0, b0, SBC_REPS)
    successes = rng.binomial(trials, theta)
    right = [conjugate.beta_binomial(s, trials, a0, b0) for s in successes]
    default_prior = [conjugate.beta_binomial(s, trials) for s in successes]  # Beta(1, 1): prior lost
    p_right = _conjugate_rank_p(theta, right, rng)
    p_wrong = _conjugate_rank_p(theta, default_prior, rng)
    assert p_right > RANK_P_MIN, f"Beta-Binomial ranks not uniform: chi-square p = {p_right:.2g}"
    assert p_wrong < RANK_P_MIN, f"SBC missed a posterior with the wrong prior: p = {p_wrong:.2g}"


def test_gamma_poisson_sbc_ranks_are_uniform():
    """Prior Gamma(4, rate 2) (mean 2 per unit), 5 units: the prior weighs 2 units against 5.

    Wrong posteriors: the prior's rate lost (Gamma(4, 0): 40% too high) and Poisson data tempered as if
    over-dispersed (d = 2: twice the variance). Not the default Jeffreys prior: its Poisson posterior is
    (nearly) probability-matching, i.e. its ranks are close to uniform given every rate, so no prior
    averages them into anything SBC could see (10 other seeds: p-values 0.02 to 0.91).
    """
    shape0, rate0, units = 4.0, 2.0, 5
    rng = _rng("sbc gamma-poisson")
    rate = rng.gamma(shape0, 1 / rate0, SBC_REPS)
    totals = rng.poisson(units * rate)

    def rank_p(prior_rate: float, dispersion: float = 1.0) -> float:
        posteriors = [conjugate.gamma_poisson(t, units, shape0, prior_rate, dispersion) for t in totals]
        return _conjugate_rank_p(rate, posteriors, rng)

    p_right = rank_p(rate0)
    p_wrong = {"rate0 lost": rank_p(0.0), "d = 2": rank_p(rate0, 2.0)}
    assert p_right > RANK_P_MIN, f"Gamma-Poisson ranks not uniform: chi-square p = {p_right:.2g}"
    assert all(p < RANK_P_MIN for p in p_wrong.values()), f"SBC missed a wrong posterior: {p_wrong}"


# ---------------------------------------------------------------------- coverage of the relative lift

COVERAGE_REPS = 2000
POSTERIOR_DRAWS = 4000  # what the analysis draws by default (2 chains x 2,000)


def _lift_coverage(
    lift: float,
    control: Sequence[conjugate.Posterior],
    variant: Sequence[conjugate.Posterior],
    rng: np.random.Generator,
) -> float:
    """Share of replicates whose HDI of ``variant / control - 1`` covers ``lift``."""
    covered = 0
    for c, v in zip(control, variant, strict=True):
        relative = conjugate.draws(v, POSTERIOR_DRAWS, rng) / conjugate.draws(c, POSTERIOR_DRAWS, rng) - 1
        low, high = hdi(relative, CONFIDENCE)
        covered += low <= lift <= high
    return covered / len(control)


def test_beta_binomial_lift_interval_covers_the_truth():
    """Conversion 10% vs 11.5% (lift +15%), 5,000 units per arm, default Beta(1, 1) prior."""
    rate, lift, n = 0.10, 0.15, 5000
    rng = _rng("coverage beta-binomial")
    successes = rng.binomial(n, [rate, rate * (1 + lift)], (COVERAGE_REPS, 2))

    def coverage_with_prior(a0: float, b0: float) -> float:
        control = [conjugate.beta_binomial(s, n, a0, b0) for s in successes[:, 0]]
        variant = [conjugate.beta_binomial(s, n, a0, b0) for s in successes[:, 1]]
        return _lift_coverage(lift, control, variant, rng)

    band = _coverage_band(COVERAGE_REPS)
    coverage = coverage_with_prior(1.0, 1.0)
    wrong = coverage_with_prior(rate * n, (1 - rate) * n)  # as heavy as the data, at the control rate
    assert band[0] <= coverage <= band[1], f"coverage {coverage:.4f} outside {band}"
    assert wrong < band[0], f"coverage {wrong:.4f} with a prior as heavy as the data at the control rate"


NB_SHAPE = 0.8  # negative binomial counts: variance = mean + mean^2 / shape (~5x the mean here)


def _count_moments(counts: IntArray) -> list[Moments]:
    """One ``Moments`` of ``orders`` per replicate row of ``counts`` (centred sums)."""
    mean = counts.mean(axis=1)
    comoment = ((counts - mean[:, None]) ** 2).sum(axis=1)
    return [
        Moments(("orders",), counts.shape[1], np.array([m]), np.array([[c]]))
        for m, c in zip(mean, comoment, strict=True)
    ]


def test_gamma_poisson_lift_interval_needs_the_dispersion():
    """Orders per unit: negative binomial, mean 3 vs 3.3 (lift +10%), 1,000 units per arm, Jeffreys prior.

    With the pooled dispersion (~4.9) the interval covers at 95%; the plain Poisson posterior is
    ``sqrt(4.9)`` times too narrow and covers about ``2 Phi(1.96 / sqrt(4.9)) - 1 = 0.62`` of the time.
    """
    mean, lift, n = 3.0, 0.10, 1000
    rng = _rng("coverage gamma-poisson overdispersed")
    means = np.array([mean, mean * (1 + lift)])
    counts = rng.negative_binomial(
        NB_SHAPE, NB_SHAPE / (NB_SHAPE + means[:, None, None]), (2, COVERAGE_REPS, n)
    )
    control, variant = _count_moments(counts[0]), _count_moments(counts[1])
    dispersions = [dispersion([c, v], "orders") for c, v in zip(control, variant, strict=True)]

    def posteriors(arm: list[Moments], tempered: bool) -> list[conjugate.Posterior]:
        return [
            conjugate.gamma_poisson(m.n * m.mean_of("orders"), m.n, dispersion=d if tempered else 1.0)
            for m, d in zip(arm, dispersions, strict=True)
        ]

    band = _coverage_band(COVERAGE_REPS)
    coverage = _lift_coverage(lift, posteriors(control, True), posteriors(variant, True), rng)
    poisson = _lift_coverage(lift, posteriors(control, False), posteriors(variant, False), rng)
    assert band[0] <= coverage <= band[1], f"tempered coverage {coverage:.4f} outside {band}"
    assert poisson < band[0], f"untempered coverage {poisson:.4f} is not below {band}: tempering untested"


# ---------------------------------------------------------------------- hurdle model (PyMC)

HURDLE_PARAMETERS = ("p", "mu", "sigma", "mean")
MU_SD, SIGMA_SCALE = 10.0, 2.5  # the priors inside mcmc.fit_hurdle


@pytest.fixture
def traces(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every trace ``pm.sample`` returns during the test (``fit_hurdle`` returns draws of ``mean`` only;
    the checks need ``p``, ``mu`` and ``sigma`` as well)."""
    import pymc as pm

    found: list[Any] = []
    sample = pm.sample

    def spy(*args: Any, **kwargs: Any) -> Any:
        found.append(sample(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(pm, "sample", spy)
    return found


def _hurdle_posterior(
    data: mcmc.HurdleStats, settings: Bayes, traces: list[Any]
) -> tuple[dict[str, Array], mcmc.Diagnostics]:
    """Draws (all chains x arms) of every hurdle parameter, from one ``fit_hurdle`` call."""
    fit = mcmc.fit_hurdle(data, settings)
    arms = len(data.units)
    posterior = traces[-1].posterior
    draws = {name: np.asarray(posterior[name], dtype=float).reshape(-1, arms) for name in HURDLE_PARAMETERS}
    np.testing.assert_array_equal(draws["mean"], fit.draws.reshape(-1, arms))  # the spy saw this fit
    return draws, fit.diagnostics


def _exact_hurdle(
    units: float, buyers: float, mean_log: float, var_log: float
) -> dict[str, tuple[float, float]]:
    """Exact posterior (mean, sd) of ``p``, ``mu``, ``sigma`` and ``log(mean)`` of one arm.

    ``mu | sigma ~ N(m_s, t_s^2)`` with ``t_s^2 = 1 / (1 / 10^2 + b / sigma^2)``, ``m_s = t_s^2 b m /
    sigma^2``, and ``p(sigma | data) ~ HalfNormal(sigma; 2.5) sigma^(1-b) exp(-b v / (2 sigma^2))
    N(m; 0, 10^2 + sigma^2 / b)``, on 4,001 points of ``log sigma`` over +-12 approximate posterior sds.
    """
    b, m, v = buyers, mean_log, var_log
    log_sigma = np.log(v) / 2 + np.linspace(-12, 12, 4001) / np.sqrt(2 * b)
    sigma = np.exp(log_sigma)
    log_w = (
        stats.halfnorm.logpdf(sigma, scale=SIGMA_SCALE)
        + (2 - b) * log_sigma  # sigma^(1-b), times the Jacobian sigma of the log-sigma grid
        - b * v / (2 * sigma**2)
        + stats.norm.logpdf(m, 0.0, np.sqrt(MU_SD**2 + sigma**2 / b))
    )
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    t2 = 1 / (1 / MU_SD**2 + b / sigma**2)
    mu_s = t2 * b * m / sigma**2
    g_s = mu_s + sigma**2 / 2  # E[mu + sigma^2 / 2 | sigma]; its variance given sigma is t2
    g_mean = float(w @ g_s)
    g_var = float(w @ (t2 + g_s**2)) - g_mean**2
    a1, b1 = 1 + b, 1 + units - b  # Beta(a1, b1) posterior of p
    log_p_mean = float(special.digamma(a1) - special.digamma(a1 + b1))
    log_p_var = float(special.polygamma(1, a1) - special.polygamma(1, a1 + b1))

    def moments(values: Array, variance: Array | float = 0.0) -> tuple[float, float]:
        mean = float(w @ values)
        return mean, float(np.sqrt(w @ (values**2 + variance) - mean**2))

    return {
        "p": (float(stats.beta.mean(a1, b1)), float(stats.beta.std(a1, b1))),
        "mu": moments(mu_s, t2),
        "sigma": moments(sigma),
        "log_mean": (log_p_mean + g_mean, float(np.sqrt(log_p_var + g_var))),
    }


def _agrees(draws: Array, exact: tuple[float, float]) -> bool:
    """Mean within 0.1 exact posterior sd and sd within 10%: with ~2,000+ effective draws the Monte Carlo
    error is ~0.02 sd for a mean and 2-3% for an sd."""
    mean, sd = exact
    return abs(float(draws.mean()) - mean) < 0.1 * sd and abs(float(draws.std()) / sd - 1) < 0.10


# (units, buyers, mean of log amounts, population variance of log amounts)
REFERENCE_ARMS = ((5000.0, 1000.0, 3.4, 0.49), (60.0, 12.0, 3.0, 0.6))


@pytest.mark.slow
def test_hurdle_posterior_matches_the_exact_posterior(traces: list[Any]):
    """A large arm (1,000 buyers of 5,000) and a small one (12 of 60, where the priors count), one fit."""
    data = mcmc.HurdleStats(*np.array(REFERENCE_ARMS).T)
    draws, diagnostics = _hurdle_posterior(data, Bayes(draws=2000, tune=1000, chains=2, seed=11), traces)
    assert diagnostics.ok, diagnostics
    draws["log_mean"] = np.log(draws["mean"])
    for k, arm in enumerate(REFERENCE_ARMS):
        exact = _exact_hurdle(*arm)
        for name, reference in exact.items():
            found = draws[name][:, k]
            assert _agrees(found, reference), (
                f"arm {arm}: {name} mean {found.mean():.5g} sd {found.std():.4g}, exact {reference}"
            )
        without_variance = np.log(draws["p"][:, k]) + draws["mu"][:, k]  # the mean as p exp(mu)
        assert not _agrees(without_variance, exact["log_mean"]), f"arm {arm}: p exp(mu) passed as the mean"


# ---------------------------------------------------------------------- SBC of the hurdle model

HURDLE_UNITS = 500
MIN_BUYERS = 10  # data sets with fewer buyers are redrawn (see the module docstring)
HURDLE_FITS, HURDLE_ARMS_PER_FIT = 4, 50
HURDLE_THIN = 5  # 495 NUTS draws thinned to 99: ranks 0..99, 5 bins of 20 ranks
HURDLE_DRAWS = SBC_DRAWS * HURDLE_THIN
HURDLE_BINS = 5


def _simulate_hurdle(rng: np.random.Generator, arms: int) -> tuple[dict[str, Array], mcmc.HurdleStats]:
    """``arms`` replicates: parameters from the priors of ``fit_hurdle``, then buyers among
    ``HURDLE_UNITS`` units and their log amounts, reduced to sufficient statistics."""
    p = rng.beta(1.0, 1.0, 2 * arms)
    mu = rng.normal(0.0, MU_SD, 2 * arms)
    sigma = np.abs(rng.normal(0.0, SIGMA_SCALE, 2 * arms))
    buyers = rng.binomial(HURDLE_UNITS, p)
    kept = np.flatnonzero(buyers >= MIN_BUYERS)[:arms]  # a selection on the data only
    assert len(kept) == arms, "too few simulated data sets with enough buyers"
    p, mu, sigma, buyers = p[kept], mu[kept], sigma[kept], buyers[kept]
    owner = np.repeat(np.arange(arms), buyers)
    logs = rng.normal(mu[owner], sigma[owner])
    mean_log = np.bincount(owner, logs, arms) / buyers
    var_log = np.bincount(owner, (logs - mean_log[owner]) ** 2, arms) / buyers
    truth = {"p": p, "mu": mu, "sigma": sigma, "mean": p * np.exp(mu + sigma**2 / 2)}
    data = mcmc.HurdleStats(np.full(arms, float(HURDLE_UNITS)), buyers.astype(float), mean_log, var_log)
    return truth, data


@pytest.mark.slow
def test_hurdle_sbc_ranks_are_uniform(traces: list[Any]):
    """200 replicates in 4 fits of 50 independent arms; 495 draws per fit thinned to 99."""
    rng = _rng("sbc hurdle")
    ranks: dict[str, list[IntArray]] = {name: [] for name in (*HURDLE_PARAMETERS, "p exp(mu)")}
    for fit in range(HURDLE_FITS):
        truth, data = _simulate_hurdle(rng, HURDLE_ARMS_PER_FIT)
        settings = Bayes(draws=HURDLE_DRAWS, tune=500, chains=1, seed=fit)
        draws, diagnostics = _hurdle_posterior(data, settings, traces)
        assert diagnostics.divergences == 0, diagnostics
        assert diagnostics.ess_bulk >= HURDLE_DRAWS / HURDLE_THIN, diagnostics  # thinned ~independent
        draws["p exp(mu)"] = draws["p"] * np.exp(draws["mu"])  # the mean without sigma^2 / 2
        truth["p exp(mu)"] = truth["mean"]
        for name, found in ranks.items():
            found.append(_ranks(truth[name], draws[name][HURDLE_THIN - 1 :: HURDLE_THIN].T))
    p_values = {
        name: _rank_p_value(np.concatenate(found), SBC_DRAWS, HURDLE_BINS) for name, found in ranks.items()
    }
    wrong = p_values.pop("p exp(mu)")
    assert all(p > RANK_P_MIN for p in p_values.values()), f"hurdle ranks not uniform: {p_values}"
    assert wrong < RANK_P_MIN, f"SBC missed the mean without sigma^2 / 2: p = {wrong:.2g}"
