"""The PyMC mechanic hierarchy against its exact posterior, and the input checks of ``pool_mechanics``.

Model of ``promolab.analyze.portfolio.pool_mechanics`` on the log scale (``y_i = log(1 + rel_lift_i)``,
``s_i = se_i / (1 + rel_lift_i)``): ``y_i ~ N(mu_{m[i]} + sigma z_i, s_i)``, ``mu_m ~ N(mu0, tau)``,
``mu0 ~ N(0, 0.5)``, ``tau, sigma ~ HalfNormal(0.2)``. Given ``(tau, sigma)`` everything is Gaussian
(Gelman et al., Bayesian Data Analysis, 3rd ed., sections 5.4 and 15.4): with the latent vector
``u = (mu0, mu_1..mu_k) ~ N(0, P)``, ``P = 0.25 11' + tau^2 diag(0, 1, .., 1)``, and ``y = A u + e``,
``A = [0 | M]`` (``M`` the arm-to-mechanic indicator), ``e ~ N(0, diag(sigma^2 + s^2))``:

- ``y | tau, sigma ~ N(0, S)``, ``S = A P A' + diag(sigma^2 + s^2) = 0.25 11' + tau^2 MM' + diag(...)``;
- ``u | y, tau, sigma ~ N(P A' S^-1 y, P - P A' S^-1 A P)``.

``p(tau, sigma | y)`` is evaluated on a 2-D grid (midpoints in ``u = sqrt(x / (8 scale))``, denser near
zero where the posteriors of the spreads sit, up to 8 prior scales); mixing the conditional normals
over the grid gives exact posterior moments, with ``E[exp(mu)] = exp(m + v / 2)`` (log-normal) in
each cell. Only numpy and scipy compute the reference.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import arviz_stats
import numpy as np
import pytest
from scipy import stats

import promolab.analyze.portfolio as portfolio
from promolab.analyze.portfolio import ArmLift, MechanicPooling, pool_mechanics
from promolab.errors import DataError
from promolab.spec.models import Bayes
from promolab.stats.mcmc import Fit

# The priors as the brief states them, written out here (not imported) so that a change in the module
# shows up as a failure.
MU0_SD, TAU_SCALE, SIGMA_SCALE = 0.5, 0.2, 0.2

# A quarter: 9 treatment arms of 4 mechanics in 6 experiments (lifts -3 % to +15 %, se 1.5-4 %).
QUARTER = [
    ArmLift("q1-spring", "a", "percent_off", 0.08, 0.020),
    ArmLift("q1-easter", "b", "percent_off", 0.12, 0.030),
    ArmLift("q1-loyalty", "a", "percent_off", 0.06, 0.025),
    ArmLift("q1-spring", "b", "bogo", 0.15, 0.040),
    ArmLift("q1-bundles", "a", "bogo", 0.10, 0.035),
    ArmLift("q1-easter", "a", "free_shipping", 0.02, 0.015),
    ArmLift("q1-shipping", "a", "free_shipping", -0.01, 0.020),
    ArmLift("q1-coupons", "a", "free_shipping", 0.03, 0.020),
    ArmLift("q1-coupons", "b", "coupon", -0.03, 0.040),
]
REFERENCE_SETTINGS = Bayes(draws=2000, tune=1000, chains=2, seed=11)

# Tolerance in Monte Carlo standard errors. By the MCMC central limit theorem each (PyMC - exact) / MCSE
# is close to N(0, 1) when the sampler is right; the test makes 11 comparisons (4 mechanic means, 4
# mechanic sds, the overall mean, tau, sigma). At 4 MCSE each false alarm has probability 6.3e-5 and
# the family about 7e-4 (Bonferroni), which also leaves room for the ~10 % error of the estimated ESS.
# The grid's own quadrature error is checked to be below 0.05 MCSE, so it cannot use up the tolerance.
MCSE_MULTIPLE = 4.0


@dataclass(frozen=True)
class Exact:
    """Exact posterior moments; per-mechanic arrays follow sorted mechanic names."""

    rel_mean: np.ndarray  # E[exp(mu_m)] - 1
    rel_sd: np.ndarray  # sd of exp(mu_m)
    log_mean: np.ndarray  # E[mu_m]
    log_sd: np.ndarray  # sd of mu_m
    prob_positive: np.ndarray  # P(mu_m > 0)
    overall: float  # E[exp(mu0)] - 1
    tau: float  # E[tau]
    sigma: float  # E[sigma]


def log_scale(lifts: list[ArmLift]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``y``, ``s`` (delta method), mechanic index of each arm, sorted mechanic names."""
    mechanics = sorted({lift.mechanic for lift in lifts})
    rel = np.array([lift.rel_lift for lift in lifts])
    se = np.array([lift.se for lift in lifts])
    index = np.array([mechanics.index(lift.mechanic) for lift in lifts])
    return np.log1p(rel), se / (1 + rel), index, mechanics


def exact_posterior(
    lifts: list[ArmLift], tau_scale: float = TAU_SCALE, sigma_scale: float = SIGMA_SCALE, points: int = 300
) -> Exact:
    """Posterior moments by quadrature over ``(tau, sigma)`` and Gaussian conditioning (module docstring)."""
    y, s, index, mechanics = log_scale(lifts)
    n, k = len(y), len(mechanics)
    a = np.zeros((n, k + 1))
    a[np.arange(n), index + 1] = 1.0
    u = (np.arange(points) + 0.5) / points  # midpoints; x = 8 scale u^2, dx = 16 scale u du
    taus, sigmas = 8 * tau_scale * u**2, 8 * sigma_scale * u**2
    log_sigma_prior = stats.halfnorm.logpdf(sigmas, scale=sigma_scale) + np.log(16 * sigma_scale * u)
    log_post = np.empty((points, points))
    means = np.empty((points, points, k + 1))
    variances = np.empty((points, points, k + 1))
    for i, tau in enumerate(taus):
        p = MU0_SD**2 * np.ones((k + 1, k + 1)) + tau**2 * np.diag([0.0] + [1.0] * k)
        pa = p @ a.T  # Cov(u, y), (k + 1, n)
        cov = (a @ pa)[None] + np.eye(n)[None] * (sigmas[:, None, None] ** 2 + s[None, None, :] ** 2)
        rhs = np.broadcast_to(np.column_stack([y, pa.T]), (points, n, k + 2))
        solved = np.linalg.solve(cov, rhs)  # S^-1 [y, A P]
        alpha, gain = solved[:, :, 0], solved[:, :, 1:]
        _, logdet = np.linalg.slogdet(cov)
        log_lik = -0.5 * (alpha @ y) - 0.5 * logdet - 0.5 * n * math.log(2 * math.pi)
        log_tau_prior = stats.halfnorm.logpdf(tau, scale=tau_scale) + math.log(16 * tau_scale * u[i])
        log_post[i] = log_lik + log_tau_prior + log_sigma_prior
        means[i] = alpha @ pa.T
        variances[i] = np.diag(p)[None] - np.einsum("jr,prj->pj", pa, gain)
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    m, v = means[:, :, 1:], variances[:, :, 1:]
    log_mean = np.einsum("ij,ijk->k", w, m)
    log_sd = np.sqrt(np.einsum("ij,ijk->k", w, v + m**2) - log_mean**2)
    first = np.einsum("ij,ijk->k", w, np.exp(m + v / 2))
    second = np.einsum("ij,ijk->k", w, np.exp(2 * m + 2 * v))
    m0, v0 = means[:, :, 0], variances[:, :, 0]
    return Exact(
        rel_mean=first - 1,
        rel_sd=np.sqrt(second - first**2),
        log_mean=log_mean,
        log_sd=log_sd,
        prob_positive=np.einsum("ij,ijk->k", w, stats.norm.cdf(m / np.sqrt(v))),
        overall=float(np.sum(w * np.exp(m0 + v0 / 2))) - 1,
        tau=float(np.sum(w.sum(axis=1) * taus)),
        sigma=float(np.sum(w.sum(axis=0) * sigmas)),
    )


@dataclass(frozen=True)
class Sampled:
    """The public result and the log-scale draws behind it (chains, draws, k + 3)."""

    result: MechanicPooling
    pooled: np.ndarray


def run_with_draws(lifts: list[ArmLift], settings: Bayes) -> Sampled:
    """``pool_mechanics`` with the ``Fit`` it samples captured (a spy around ``mcmc.sample``)."""
    captured: list[Fit] = []
    real = portfolio.sample

    def spy(*args: object, **kwargs: object) -> Fit:
        fit = real(*args, **kwargs)  # type: ignore[arg-type]
        captured.append(fit)
        return fit

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(portfolio, "sample", spy)
        result = pool_mechanics(lifts, settings)
    return Sampled(result, captured[0].draws)


def mcse(draws: np.ndarray, what: str = "mean") -> float:
    """Monte Carlo standard error of the mean (sd / sqrt(ESS)) or of the sd of (chains, draws)."""
    if what == "mean":
        return float(np.std(draws) / math.sqrt(arviz_stats.ess(draws, method="mean")))
    return float(arviz_stats.mcse(draws, method="sd", chain_axis=0, draw_axis=1))


def comparisons(
    sampled: Sampled, exact: Exact, mechanics: list[str]
) -> dict[str, tuple[float, float, float]]:
    """Quantity -> (PyMC estimate, exact value, MCSE of the estimate)."""
    k, pooled = len(mechanics), sampled.pooled
    effects = {e.mechanic: e for e in sampled.result.effects}
    rows = {}
    for j, name in enumerate(mechanics):
        rel = np.expm1(pooled[:, :, j])
        rows[f"{name} rel_lift_mean"] = (effects[name].rel_lift_mean, exact.rel_mean[j], mcse(rel))
        rows[f"{name} rel sd"] = (float(np.std(rel)), exact.rel_sd[j], mcse(rel, "sd"))
    rows["overall_mean"] = (sampled.result.overall_mean, exact.overall, mcse(np.expm1(pooled[:, :, k])))
    rows["tau"] = (sampled.result.between_mechanics_sd, exact.tau, mcse(pooled[:, :, k + 1]))
    rows["sigma"] = (sampled.result.between_arms_sd, exact.sigma, mcse(pooled[:, :, k + 2]))
    return rows


def table(rows: dict[str, tuple[float, float, float]]) -> str:
    return "\n".join(
        f"{name:28} pymc {est:+.5f} exact {ref:+.5f} mcse {err:.5f} z {(est - ref) / err:+.2f}"
        for name, (est, ref, err) in rows.items()
    )


@pytest.fixture(scope="module")
def quarter() -> Sampled:
    return run_with_draws(QUARTER, REFERENCE_SETTINGS)


@pytest.mark.slow
def test_pooled_posterior_matches_the_exact_grid_posterior(quarter):
    mechanics = log_scale(QUARTER)[3]
    exact = exact_posterior(QUARTER)
    rows = comparisons(quarter, exact, mechanics)
    coarse = comparisons(quarter, exact_posterior(QUARTER, points=150), mechanics)
    for name, (_, ref, err) in rows.items():  # quadrature error far below the tolerance
        assert abs(coarse[name][1] - ref) < 0.05 * err, (name, coarse[name][1], ref, err)
    failed = [name for name, (est, ref, err) in rows.items() if abs(est - ref) > MCSE_MULTIPLE * err]
    assert not failed, f"beyond {MCSE_MULTIPLE} MCSE: {failed}\n{table(rows)}"
    effects = {e.mechanic: e for e in quarter.result.effects}
    for j, name in enumerate(mechanics):  # P(> 0): a Bernoulli mean, its MCSE bounded by 0.5 / sqrt(ESS)
        bound = MCSE_MULTIPLE * 0.5 / math.sqrt(quarter.result.diagnostics.ess_bulk)
        assert abs(effects[name].prob_positive - exact.prob_positive[j]) < bound
    assert quarter.result.diagnostics.ok, quarter.result.diagnostics


@pytest.mark.slow
def test_a_wider_tau_prior_on_the_grid_disagrees_with_pymc(quarter):
    """Mutation check: the same comparison fails against the grid posterior under tau ~ HalfNormal(1.0).
    Four mechanics say little about their spread, so tau's prior moves E[tau] from 0.085 to 0.108,
    about 15 MCSE (the single-arm coupon moves by about 3.5 MCSE, the others by less)."""
    mechanics = log_scale(QUARTER)[3]
    rows = comparisons(quarter, exact_posterior(QUARTER, tau_scale=1.0), mechanics)
    est, ref, err = rows["tau"]
    assert abs(est - ref) > 2 * MCSE_MULTIPLE * err, table(rows)


# ---------------------------------------------------------------------- unit tests


@pytest.mark.parametrize(
    ("lifts", "expected"),
    [
        ([], "lifts: expected at least one arm lift, got none"),
        (
            [ArmLift("q2-spring", "b", "bogo", 0.05, 0.0)],
            "lifts[0].se: experiment 'q2-spring', arm 'b': se must be a finite number > 0, got 0.0",
        ),
        (
            [ArmLift("q2-spring", "b", "bogo", 0.05, -0.01)],
            "arm 'b': se must be a finite number > 0, got -0.01",
        ),
        (
            [ArmLift("q2-spring", "b", "bogo", 0.05, math.nan)],
            "arm 'b': se must be a finite number > 0, got nan",
        ),
        (
            [ArmLift("q2-spring", "c", "gift", -1.0, 0.02)],
            "lifts[0].rel_lift: experiment 'q2-spring', arm 'c': rel_lift must be a finite number > -1, "
            "got -1.0",
        ),
        ([ArmLift("q2-spring", "c", "gift", -1.5, 0.02)], "rel_lift must be a finite number > -1, got -1.5"),
        (
            [ArmLift("q2-spring", "b", "bogo", 0.05, 0.02), ArmLift("q2-spring", "b", "gift", 0.01, 0.02)],
            "lifts[1]: experiment 'q2-spring', arm 'b': given twice",
        ),
    ],
)
def test_bad_lifts_raise_a_data_error_naming_the_arm(lifts, expected):
    with pytest.raises(DataError, match=re.escape(expected)):
        pool_mechanics(lifts, Bayes())


def test_every_problem_is_reported_at_once():
    lifts = [ArmLift("q2-a", "x", "bogo", -2.0, 0.02), ArmLift("q2-b", "y", "coupon", 0.01, 0.0)]
    with pytest.raises(DataError) as raised:
        pool_mechanics(lifts, Bayes())
    lines = str(raised.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("lifts[0].rel_lift: experiment 'q2-a', arm 'x'")
    assert lines[1].startswith("lifts[1].se: experiment 'q2-b', arm 'y'")


def test_prob_outside_the_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="prob must be in"):
        pool_mechanics(QUARTER, Bayes(), prob=95)


# Arms agree within their mechanic (small sigma) while mechanics differ (larger tau); "gift" and
# "bundle" each have one arm with the same estimate, +12 %, one very precise and one imprecise.
SHRINKAGE = [
    ArmLift("q3-spring", "a", "percent_off", 0.080, 0.010),
    ArmLift("q3-summer", "a", "percent_off", 0.085, 0.012),
    ArmLift("q3-loyalty", "a", "percent_off", 0.075, 0.010),
    ArmLift("q3-spring", "b", "free_shipping", 0.010, 0.010),
    ArmLift("q3-summer", "b", "free_shipping", 0.015, 0.012),
    ArmLift("q3-basket", "a", "free_shipping", 0.005, 0.010),
    ArmLift("q3-gifts", "a", "gift", 0.120, 0.005),
    ArmLift("q3-bundles", "a", "bundle", 0.120, 0.150),
]


@pytest.fixture(scope="module")
def shrinkage() -> MechanicPooling:
    """Short chains (qualitative checks only; the run may be flagged, which ``to_dict`` must show)."""
    return pool_mechanics(SHRINKAGE, Bayes(draws=500, tune=500, chains=2, seed=3), prob=0.9)


@pytest.mark.slow
def test_effects_are_sorted_with_valid_probabilities_and_intervals(shrinkage):
    means = [e.rel_lift_mean for e in shrinkage.effects]
    assert means == sorted(means, reverse=True)
    assert {e.mechanic: e.arms for e in shrinkage.effects} == {
        "percent_off": 3,
        "free_shipping": 3,
        "gift": 1,
        "bundle": 1,
    }
    for e in shrinkage.effects:
        assert 0 <= e.prob_positive <= 1
        assert e.rel_hdi[0] < e.rel_lift_mean < e.rel_hdi[1]
    assert shrinkage.between_mechanics_sd > 0
    assert shrinkage.between_arms_sd > 0


@pytest.mark.slow
def test_a_precise_single_arm_stays_and_an_imprecise_one_is_pulled_to_the_overall_mean(shrinkage):
    effects = {e.mechanic: e for e in shrinkage.effects}
    gift, bundle, overall = effects["gift"], effects["bundle"], shrinkage.overall_mean
    # Weight on the overall mean about (sigma^2 + s^2) / (sigma^2 + s^2 + tau^2) with sigma ~ 0.007 and
    # tau ~ 0.08: a few % for gift (s = 0.005), about 0.75 for bundle (s = 0.15). The exact grid
    # posterior gives gift +11.8 %, bundle +8.8 %, overall mean +7.3 %.
    assert abs(gift.rel_lift_mean - 0.12) < 0.1 * abs(0.12 - overall)
    assert abs(bundle.rel_lift_mean - overall) < 0.5 * abs(0.12 - overall)
    assert bundle.rel_hdi[1] - bundle.rel_hdi[0] > 2 * (gift.rel_hdi[1] - gift.rel_hdi[0])


@pytest.mark.slow
def test_to_dict_is_flat_and_json_ready(shrinkage):
    out = json.loads(json.dumps(shrinkage.to_dict()))
    assert [e["mechanic"] for e in out["effects"]] == [e.mechanic for e in shrinkage.effects]
    assert set(out["effects"][0]) == {"mechanic", "arms", "rel_lift_mean", "rel_hdi", "prob_positive"}
    assert out["diagnostics"]["ok"] is shrinkage.diagnostics.ok
    assert out["flags"] == ([] if shrinkage.diagnostics.ok else ["MCMC_NOT_CONVERGED"])
