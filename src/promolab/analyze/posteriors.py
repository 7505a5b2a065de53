"""One metric's posterior of every arm's mean: the model of its kind (closed forms first, the PyMC hurdle
model for non-negative continuous metrics), an informative lift prior by importance resampling.

See :mod:`promolab.analyze.bayesian` for the models and what is reported from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from promolab.spec import ExperimentSpec
from promolab.spec.models import (
    AnyMetric,
    BinaryMetric,
    ContinuousMetric,
    CountMetric,
    OrdinalMetric,
    Prior,
    RatioMetric,
)
from promolab.stats import conjugate
from promolab.stats.conjugate import Posterior
from promolab.stats.estimators import (
    ArmSummary,
    histogram_summary,
    mean_summary,
    ratio_summary,
    top_box_summary,
)
from promolab.stats.mcmc import Array, HurdleStats, fit_hurdle
from promolab.stats.moments import ExperimentStats, LogMoments, Moments

MIN_IMPORTANCE_ESS = 400  # fewer effective draws after a lift prior reweighting: flagged


@dataclass
class Fitted:
    """Posterior of every arm's mean: draws, and closed forms when the model has them."""

    model: str
    draws: dict[str, Array]
    closed: dict[str, Posterior] | None = None
    diagnostics: dict[str, Any] | None = None

    def prob_best(self, higher: bool) -> dict[str, float]:
        arms = list(self.draws)
        if self.closed is not None:
            return dict(zip(arms, conjugate.prob_best([self.closed[a] for a in arms], higher), strict=True))
        stacked = np.column_stack([self.draws[a] for a in arms])
        winner = np.argmax(stacked if higher else -stacked, axis=1)
        return {a: float(np.mean(winner == k)) for k, a in enumerate(arms)}


def fit_metric(
    spec: ExperimentSpec, metric: AnyMetric, prior: Prior, stats: ExperimentStats, arms: list[str], size: int
) -> list[tuple[str, Fitted]]:
    """(result name, posterior) of a metric: one, or two for ordinal metrics (mean score, top box)."""
    rng = np.random.default_rng([spec.analysis.bayes.seed, stable_id(metric.id)])
    moments = {arm: stats.arms[arm].moments for arm in arms}
    closed: dict[str, Posterior]
    match metric:
        case BinaryMetric():
            a0, b0 = prior.a or 1.0, prior.b or 1.0
            closed = {
                arm: conjugate.beta_binomial(round(m.n * m.mean_of(metric.id)), m.n, a0, b0)
                for arm, m in moments.items()
            }
            return [(metric.id, _closed("beta-binomial", closed, size, rng))]
        case CountMetric():
            shape0, rate0 = prior.a or 0.5, prior.b or 0.0
            d = dispersion(list(moments.values()), metric.id)
            closed = {
                arm: conjugate.gamma_poisson(m.n * m.mean_of(metric.id), m.n, shape0, rate0, d)
                for arm, m in moments.items()
            }
            return [(metric.id, _closed(f"gamma-poisson d={d:.3g}", closed, size, rng))]
        case ContinuousMetric() if all(_logs(stats, a, metric.id).negative == 0 for a in arms):
            return [(metric.id, _hurdle(spec, metric, stats, arms))]
        case ContinuousMetric():
            normal = _normals({arm: mean_summary(m, metric.id) for arm, m in moments.items()})
            return [] if normal is None else [(metric.id, _closed("normal (has y < 0)", normal, size, rng))]
        case RatioMetric():
            num, den = metric.numerator, metric.denominator
            if any(m.mean_of(den) == 0 for m in moments.values()):
                return []  # no ratio in an arm (flagged ZERO_DENOMINATOR by the frequentist engine)
            normal = _normals({arm: ratio_summary(m, num, den) for arm, m in moments.items()})
            return [] if normal is None else [(metric.id, _closed("normal (delta)", normal, size, rng))]
        case OrdinalMetric():
            histograms = {arm: stats.arms[arm].histograms[metric.id] for arm in arms}
            normal = _normals({arm: histogram_summary(h) for arm, h in histograms.items()})
            threshold = float(metric.levels[-metric.top_box])
            boxes = {arm: top_box_summary(h, threshold) for arm, h in histograms.items()}
            top = {arm: conjugate.beta_binomial(round(b.n * b.mean), b.n) for arm, b in boxes.items()}
            mean = [] if normal is None else [(metric.id, _closed("normal (mean)", normal, size, rng))]
            return [*mean, (f"{metric.id}:top_box", _closed("beta-binomial", dict(top), size, rng))]
    raise AssertionError(metric)


def _closed(model: str, closed: dict[str, Posterior], size: int, rng: np.random.Generator) -> Fitted:
    return Fitted(model, {arm: conjugate.draws(p, size, rng) for arm, p in closed.items()}, closed)


def _hurdle(spec: ExperimentSpec, metric: AnyMetric, stats: ExperimentStats, arms: list[str]) -> Fitted:
    logs = [stats.arms[a].logs[metric.id].positive for a in arms]
    data = HurdleStats(
        units=np.array([stats.arms[a].moments.n for a in arms], dtype=float),
        buyers=np.array([m.n for m in logs], dtype=float),
        mean_log=np.array([m.mean_of("log") for m in logs]),
        var_log=np.array([m.var("log", ddof=0) if m.n else 0.0 for m in logs]),
    )
    fit = fit_hurdle(data, spec.analysis.bayes)
    flat = fit.draws.reshape(-1, len(arms))
    return Fitted(
        "hurdle (pymc)", {a: flat[:, k] for k, a in enumerate(arms)}, None, fit.diagnostics.to_dict()
    )


def _logs(stats: ExperimentStats, arm: str, metric: str) -> LogMoments:
    found = stats.arms[arm].logs.get(metric)
    if found is None:
        raise ValueError(
            f"the statistics lack the log-moments of '{metric}' (aggregate with log_moments=True)"
        )
    return found


def _normals(summaries: Mapping[str, ArmSummary]) -> dict[str, Posterior] | None:
    """The flat-prior large-sample posteriors ``N(mean, var_of_mean)`` of every arm's estimate; None
    when an arm's estimate has no spread (the frequentist result is flagged ``ZERO_VARIANCE``): a point
    mass has no density to compare."""
    if any(s.var_of_mean <= 0 for s in summaries.values()):
        return None
    return {arm: conjugate.NormalPosterior(s.mean, s.var_of_mean**0.5) for arm, s in summaries.items()}


def dispersion(moments: list[Moments], name: str) -> float:
    """Pooled within-arm variance over the overall mean of the counts, at least 1."""
    within = sum(m.comoment[m.index(name), m.index(name)] for m in moments)
    n = sum(m.n for m in moments)
    mean = sum(m.n * m.mean_of(name) for m in moments) / n
    if mean <= 0 or n <= len(moments):
        return 1.0
    return max(1.0, float(within / (n - len(moments)) / mean))


def reweighted(fitted: Fitted, prior: Prior, control: str, seed: int) -> Fitted:
    """Importance-resample the draws by the lift prior ``prod_t N(lift_t | mean, sd)``."""
    assert prior.lift is not None
    base = fitted.draws[control]
    log_w = np.zeros(len(base))
    for arm, values in fitted.draws.items():
        if arm != control:
            lift = values / base - 1
            log_w += -0.5 * ((lift - prior.lift.mean) / prior.lift.sd) ** 2
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    ess = float(1 / np.sum(w**2))
    rng = np.random.default_rng([seed, 1])
    picked = rng.choice(len(base), size=len(base), p=w)
    diagnostics = dict(fitted.diagnostics or {})
    diagnostics["importance_ess"] = ess
    diagnostics["ok"] = bool(diagnostics.get("ok", True) and ess >= MIN_IMPORTANCE_ESS)
    draws = {arm: values[picked] for arm, values in fitted.draws.items()}
    return Fitted(f"{fitted.model} + lift prior", draws, None, diagnostics)


def stable_id(text: str) -> int:
    """A seed component from a metric id that is the same in every process (``hash`` is salted)."""
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little")
