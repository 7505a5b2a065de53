"""One metric's posterior of every arm's mean: the model of its kind (:mod:`promolab.kinds`: closed forms
first, the PyMC hurdle model for non-negative continuous metrics), and an informative lift prior by
importance resampling.

See :mod:`promolab.analyze.bayesian` for the models and what is reported from them.
"""

from __future__ import annotations

import numpy as np

from promolab.kinds import Fitted, PosteriorInputs, kind_of
from promolab.spec import ExperimentSpec
from promolab.spec.models import AnyMetric, Prior
from promolab.stats.moments import ExperimentStats

MIN_IMPORTANCE_ESS = 400  # fewer effective draws after a lift prior reweighting: flagged


def fit_metric(
    spec: ExperimentSpec, metric: AnyMetric, prior: Prior, stats: ExperimentStats, arms: list[str], size: int
) -> list[tuple[str, Fitted]]:
    """(result name, posterior) of a metric by its kind: one, or two for ordinal metrics (mean score, top
    box); seeded by the spec's seed and the metric id."""
    rng = np.random.default_rng([spec.analysis.bayes.seed, stable_id(metric.id)])
    return kind_of(metric).posteriors(metric, PosteriorInputs(spec, prior, stats, arms, size, rng))


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
