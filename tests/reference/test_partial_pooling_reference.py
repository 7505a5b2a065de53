"""The PyMC segment hierarchy against its exact posterior.

For ``d_s ~ N(theta_s, se_s)``, ``theta_s ~ N(mu, tau)``, ``mu ~ N(0, 1)``, ``tau ~ HalfNormal(0.5)``
(the model of ``promolab.stats.mcmc.fit_partial_pooling``) the posterior is exact given ``tau``
(Gelman et al., Bayesian Data Analysis, 3rd ed., section 5.4): ``d | tau ~ N(0, diag(se^2 + tau^2) +
11')`` gives ``p(tau | d)`` on a fine grid, and ``mu | tau, d`` and ``theta_s | mu, tau, d`` are normal.
Mixing over the grid gives each ``theta_s``'s posterior mean and sd, computed here with scipy only.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from promolab.spec.models import Bayes
from promolab.stats.mcmc import fit_partial_pooling

MU_SD, TAU_SCALE = 1.0, 0.5


def exact_posterior(d: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and sd of every ``theta_s`` by quadrature over ``tau``."""
    taus = np.linspace(1e-6, 3.0, 6_001)
    log_post = np.empty(len(taus))
    means = np.empty((len(taus), len(d)))
    variances = np.empty((len(taus), len(d)))
    for i, tau in enumerate(taus):
        cov = np.diag(se**2 + tau**2) + MU_SD**2
        log_post[i] = stats.halfnorm.logpdf(tau, scale=TAU_SCALE) + stats.multivariate_normal.logpdf(
            d, mean=np.zeros(len(d)), cov=cov
        )
        v = se**2 + tau**2
        mu_var = 1 / (1 / MU_SD**2 + np.sum(1 / v))
        mu_hat = mu_var * np.sum(d / v)
        shrink = (1 / tau**2) / (1 / se**2 + 1 / tau**2)  # weight of mu in theta_s's conditional mean
        means[i] = (1 - shrink) * d + shrink * mu_hat
        variances[i] = 1 / (1 / se**2 + 1 / tau**2) + shrink**2 * mu_var
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    mean = w @ means
    sd = np.sqrt(w @ (variances + means**2) - mean**2)
    return mean, sd


@pytest.mark.parametrize(
    ("d", "se"),
    [
        # five channels, little heterogeneity (the spring-discount example's situation)
        (np.array([0.05, 0.16, 0.07, -0.03, -0.06]), np.array([0.05, 0.08, 0.07, 0.09, 0.08])),
        # eight segments with real differences and uneven precision
        (
            np.array([0.28, 0.08, -0.03, 0.07, -0.01, 0.01, 0.18, 0.12]),
            np.array([0.15, 0.10, 0.16, 0.11, 0.09, 0.11, 0.10, 0.18]),
        ),
    ],
)
def test_hierarchy_matches_the_exact_posterior(d, se):
    """Means within 0.1 posterior sd and sds within 10%: the Monte Carlo error of 4,000 draws with an
    ESS near 1,000 is about 0.03 sd for a mean and 2-3% for an sd."""
    fit = fit_partial_pooling(d, se, Bayes(draws=2000, tune=1000, chains=2, seed=7))
    theta = fit.draws.reshape(-1, len(d))
    mean, sd = exact_posterior(d, se)
    np.testing.assert_array_less(np.abs(theta.mean(axis=0) - mean), 0.1 * sd)
    np.testing.assert_allclose(theta.std(axis=0), sd, rtol=0.10)
    assert fit.diagnostics.rhat <= 1.01
