"""PyMC models written on sufficient statistics, so sampling cost does not grow with rows.

Hurdle model of a non-negative per-unit value (revenue per customer), every arm ``k`` at once::

    buyers_k ~ Binomial(n_k, p_k)                       p_k ~ Beta(1, 1)
    log(y) | y > 0 ~ Normal(mu_k, sigma_k)               mu_k ~ Normal(0, 10), sigma_k ~ HalfNormal(2.5)
    mean per unit  = p_k exp(mu_k + sigma_k^2 / 2)

The log-normal part enters through its sufficient statistics (buyers ``b``, mean ``m`` and population
variance ``v`` of the log values): ``sum log N(l_i | mu, sigma) = -b log sigma - b (v + (m - mu)^2) /
(2 sigma^2) + const``, a ``pm.Potential``. The same model on raw rows gives the same posterior (bench).

Partial pooling across segments (non-centred, one treatment arm at a time)::

    d_s ~ Normal(theta_s, se_s)      theta_s = mu + tau z_s,   z_s ~ Normal(0, 1)
    mu ~ Normal(0, 1), tau ~ HalfNormal(0.5)       (lifts in units of the overall control mean)

The hierarchy samples with ``target_accept`` at least 0.99 (funnels diverge at larger steps).
Sampling: NUTS with the sampler named in the spec (``pymc`` by default: pymc 6 would silently pick
nutpie when installed), the spec's seed, ``init="adapt_diag"`` from moment-based initial values (the
sufficient-statistic likelihood is sharp; jitter can start chains far out). PyTensor caches the compiled
C code of each model graph in its compile directory (``~/.pytensor``), so only the first run on a
machine pays the compilation. Chains run one after the other in this process (``cores=1``): forking
worker processes from one that has run DuckDB's threads risks deadlocks, and a forkserver costs more
than it saves on models this small. Diagnostics: largest r-hat, smallest bulk ESS (ArviZ), divergences.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from promolab.spec.models import Bayes

RHAT_LIMIT = 1.01
HIERARCHY_ACCEPT = 0.99  # small steps for the funnel of a hierarchy (divergences are still reported)
ESS_PER_CHAIN = 100  # bulk ESS below 100 per chain fails (Vehtari et al. 2021)

type Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Diagnostics:
    """Convergence of one fit; ``ok`` is False when any check fails (the output flags it)."""

    rhat: float
    ess_bulk: float
    divergences: int
    chains: int
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.rhat <= RHAT_LIMIT and self.ess_bulk >= ESS_PER_CHAIN * self.chains and not self.divergences
        )

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "rhat": self.rhat,
            "ess_bulk": self.ess_bulk,
            "divergences": self.divergences,
            "seconds": self.seconds,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class HurdleStats:
    """Per-arm sufficient statistics of the hurdle model (arrays over arms)."""

    units: Array
    buyers: Array
    mean_log: Array
    var_log: Array


@dataclass(frozen=True)
class Fit:
    """Posterior draws, shape (chains, draws, k), of the quantity of interest, and diagnostics."""

    draws: Array
    diagnostics: Diagnostics


def fit_hurdle(stats: HurdleStats, settings: Bayes) -> Fit:
    """Posterior of the mean value per unit of every arm (see the module docstring)."""
    import pymc as pm
    import pytensor.tensor as pt

    k = len(stats.units)
    buyers = stats.buyers
    with pm.Model() as model:
        p = pm.Beta("p", 1.0, 1.0, shape=k)
        mu = pm.Normal("mu", 0.0, 10.0, shape=k)
        sigma = pm.HalfNormal("sigma", 2.5, shape=k)
        pm.Binomial("buyers", n=stats.units, p=p, observed=buyers)
        spread = stats.var_log + (stats.mean_log - mu) ** 2
        pm.Potential("log_amounts", pt.sum(-buyers * pt.log(sigma) - buyers * spread / (2 * sigma**2)))
        pm.Deterministic("mean", p * pt.exp(mu + sigma**2 / 2))
    start = {
        "p": np.clip(buyers / stats.units, 1e-6, 1 - 1e-6),
        "mu": stats.mean_log,
        "sigma": np.sqrt(np.maximum(stats.var_log, 1e-6)),
    }
    return sample(model, start, settings, ["p", "mu", "sigma", "mean"], "mean")


def fit_partial_pooling(estimates: Array, errors: Array, settings: Bayes) -> Fit:
    """Posterior of each segment's lift ``theta_s`` from its estimate and standard error (same units)."""
    import pymc as pm

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        tau = pm.HalfNormal("tau", 0.5)
        z = pm.Normal("z", 0.0, 1.0, shape=len(estimates))
        theta = pm.Deterministic("theta", mu + tau * z)
        pm.Normal("estimates", mu=theta, sigma=errors, observed=estimates)
    weights = 1 / errors**2
    pooled = float(np.sum(weights * estimates) / np.sum(weights))
    start = {"mu": pooled, "tau": 0.1, "z": np.zeros(len(estimates))}
    cautious = settings.model_copy(update={"target_accept": max(settings.target_accept, HIERARCHY_ACCEPT)})
    return sample(model, start, cautious, ["mu", "tau", "theta"], "theta")


def sample(
    model: object, start: Mapping[str, object], settings: Bayes, checked: list[str], target: str
) -> Fit:
    """NUTS draws of ``target`` (chains, draws, k) and diagnostics over the variables in ``checked``."""
    import arviz_stats
    import pymc as pm

    began = time.perf_counter()
    with model, _quiet("pymc"):  # type: ignore[attr-defined]
        trace = pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=1,  # chains in turn in this process: forking after DuckDB ran threads can deadlock
            nuts_sampler=settings.sampler,
            target_accept=settings.target_accept,
            random_seed=settings.seed,
            initvals=start,
            init="adapt_diag",
            progressbar=False,
            compute_convergence_checks=False,
        )
    seconds = time.perf_counter() - began
    posterior = trace.posterior
    arrays = [np.asarray(posterior[name]).reshape(settings.chains, settings.draws, -1) for name in checked]
    columns = [a[:, :, j] for a in arrays for j in range(a.shape[2])]
    rhat = max(float(arviz_stats.rhat(c, chain_axis=0, draw_axis=1)) for c in columns)
    ess = min(float(arviz_stats.ess(c, method="bulk", chain_axis=0, draw_axis=1)) for c in columns)
    divergences = int(np.asarray(trace.sample_stats["diverging"]).sum())
    diagnostics = Diagnostics(rhat, ess, divergences, settings.chains, seconds)
    draws = np.asarray(posterior[target], dtype=float).reshape(settings.chains, settings.draws, -1)
    return Fit(draws, diagnostics)


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence a library's progress messages (warnings and errors still show)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)
