"""Bayesian uplift of every metric and treatment arm, from per-arm statistics only.

Model of each metric kind (closed forms first, MCMC only where there is none):

- binary: Beta-Binomial (prior ``Beta(a, b)``, default ``Beta(1, 1)``); P(beat), expected loss and
  P(best) exact (:mod:`promolab.stats.conjugate`).
- count: Gamma-Poisson (prior ``Gamma(a, b)``, default Jeffreys ``Gamma(0.5, 0)``), tempered by the
  dispersion ``d = max(1, s^2 / mean)`` pooled within arms, so over-dispersed counts (orders per
  customer) keep honest intervals; exact comparisons.
- continuous, non-negative (revenue): the PyMC hurdle model on sufficient statistics
  (:mod:`promolab.stats.mcmc`); comparisons from the posterior draws. A continuous metric with
  negative values (refunds) falls back to the normal model below.
- ratio (AOV, CTR) and ordinal (mean score): a normal posterior ``N(estimate, se^2)`` from the
  delta-method moments of the frequentist engine, i.e. the flat-prior large-sample posterior; exact
  comparisons. (Ordinal scores are bounded and many, so the mean's normal approximation is accurate at
  the sample sizes of marketing tests; an ordered-logistic model would add little and cost MCMC.)

Informative lift priors (``analysis.bayes.priors.<metric>.lift``, e.g. from past experiments) multiply
the default arm priors: posterior draws are importance-weighted by ``prod_t N(lift_t | mean, sd)`` over
treatment arms and resampled; the effective sample size of the weights is reported, and comparisons
then come from the draws.

Every entry: posterior means, HDIs (ArviZ, at ``analysis.confidence``) of the absolute and relative
lift, P(variant beats control), P(best arm), the expected loss of shipping it instead of control
(``E[max(control - variant, 0)]`` in the metric's units, for "higher is better"), and a decision against
the region of practical equivalence ``|relative lift| <= rope``: better, worse, equivalent, undecided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promolab.analyze.posteriors import Fitted, fit_metric, reweighted
from promolab.analyze.segments import SegmentResult, pooled_segments
from promolab.spec import ExperimentSpec
from promolab.spec.models import (
    Prior,
)
from promolab.spec.windows import split_id
from promolab.stats import conjugate
from promolab.stats.conjugate import Posterior
from promolab.stats.intervals import hdi
from promolab.stats.mcmc import Array
from promolab.stats.moments import ExperimentStats

DEFAULT_PROB = 0.95  # P(beat control) and P(non-inferior) needed to ship, unless decision.prob_positive


@dataclass(frozen=True)
class BayesResult:
    """One metric x treatment arm."""

    metric: str
    variant: str
    model: str
    control_mean: float
    variant_mean: float
    abs_mean: float
    abs_hdi: tuple[float, float]
    rel_lift_mean: float | None  # None when the reference's posterior reaches 0 or below
    rel_hdi: tuple[float, float] | None
    prob_beat_control: float
    prob_best: float
    expected_loss: float
    decision: str
    diagnostics: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``"bayes"`` object of a results entry."""
        return {
            "model": self.model,
            "prob_beat_control": self.prob_beat_control,
            "prob_best": self.prob_best,
            "expected_loss": self.expected_loss,
            "control_mean": self.control_mean,
            "variant_mean": self.variant_mean,
            "abs_mean": self.abs_mean,
            "abs_hdi": list(self.abs_hdi),
            "rel_lift_mean": self.rel_lift_mean,
            "rel_hdi": None if self.rel_hdi is None else list(self.rel_hdi),
            "decision": self.decision,
            "diagnostics": self.diagnostics,
        }


@dataclass(frozen=True)
class BayesGuardrail:
    """Posterior probability that one guardrail metric of one arm stays within its allowed drop."""

    metric: str
    variant: str
    margin: str
    prob_noninferior: float
    passed: bool


@dataclass
class BayesAnalysis:
    """Results, guardrails, segment results, and posterior draws of each arm's mean
    (``draws[metric][arm]``, the same draw index across arms of a metric)."""

    hdi_prob: float
    rope: float
    threshold: float
    results: list[BayesResult]
    guardrails: list[BayesGuardrail] = field(default_factory=list)
    segments: list[SegmentResult] = field(default_factory=list)
    draws: dict[str, dict[str, Array]] = field(default_factory=dict, compare=False)  # not in the JSON

    @property
    def flagged(self) -> list[str]:
        """Entries (``metric/variant``) and segment fits (``segments:name/variant``) whose sampler
        diagnostics failed."""
        entries = [
            f"{r.metric}/{r.variant}"
            for r in self.results
            if r.diagnostics is not None and not r.diagnostics.get("ok", True)
        ]
        fits = {f"segments:{s.segmentation}/{s.variant}" for s in self.segments if not s.diagnostics["ok"]}
        return entries + sorted(fits)

    def draws_frame(self) -> Any:
        """Long table of the draws: metric, arm, draw, mean."""
        import pandas as pd

        parts = [
            pd.DataFrame({"metric": metric, "arm": arm, "draw": np.arange(len(values)), "mean": values})
            for metric, arms in self.draws.items()
            for arm, values in arms.items()
        ]
        return pd.concat(parts, ignore_index=True)


def bayes_results(spec: ExperimentSpec, stats: ExperimentStats) -> BayesAnalysis:
    """Posterior summaries of every metric x treatment arm, and segment-level uplift."""
    settings = spec.analysis.bayes
    hdi_prob = spec.analysis.confidence
    arms = [spec.reference.id, *(t.id for t in spec.treatments)]
    control = spec.reference.id
    size = settings.chains * settings.draws
    results: list[BayesResult] = []
    draws: dict[str, dict[str, Array]] = {}
    for metric in spec.metrics:
        if spec.role(metric.id) in ("treatment_only", "covariate", "component"):
            continue
        prior = settings.priors.get(split_id(metric.id)[0]) or Prior()  # a window's: its metric's
        higher = metric.direction == "higher"
        fits = []
        for name, fitted in fit_metric(spec, metric, prior, stats, arms, size):
            if prior.lift is not None:
                fitted = reweighted(fitted, prior, control, settings.seed)
            draws[name] = fitted.draws
            fits.append((name, fitted, fitted.prob_best(higher)))
        results += [  # arm by arm, as the frequentist results
            _summary(name, arm, control, fitted, best[arm], higher, hdi_prob, settings.rope)
            for arm in arms[1:]
            for name, fitted, best in fits
        ]
    segments = [
        s
        for segmentation, found in stats.segments.items()
        for s in pooled_segments(spec, segmentation, found, arms, hdi_prob)
    ]
    threshold = _threshold(spec)
    guardrails = _guardrails(spec, draws, threshold)
    return BayesAnalysis(hdi_prob, settings.rope, threshold, results, guardrails, segments, draws)


def _threshold(spec: ExperimentSpec) -> float:
    chosen = spec.decision.prob_positive if spec.decision is not None else None
    return DEFAULT_PROB if chosen is None else chosen


def _guardrails(
    spec: ExperimentSpec, draws: Mapping[str, Mapping[str, Array]], threshold: float
) -> list[BayesGuardrail]:
    """P(variant - control >= -max_absolute_drop) or P(variant / control - 1 >= -max_relative_drop),
    signs flipped for "lower is better" metrics; passes at ``threshold``."""
    control = spec.reference.id
    found = []
    for guardrail in spec.guardrails:
        if guardrail.metric not in draws:  # no posterior (no spread, no denominator): not shown
            found += [
                BayesGuardrail(guardrail.metric, t.id, "no posterior to test the margin", 0.0, False)
                for t in spec.treatments
            ]
            continue
        sign = 1 if spec.metric(guardrail.metric).direction == "higher" else -1
        arms = draws[guardrail.metric]
        for arm in (t.id for t in spec.treatments):
            c, t = arms[control], arms[arm]
            if guardrail.max_absolute_drop is not None:
                margin = f"absolute drop <= {guardrail.max_absolute_drop:g}"
                prob = float(np.mean(sign * (t - c) >= -guardrail.max_absolute_drop))
            else:  # t / c - 1 >= -r (higher) or <= r (lower), written without dividing by c
                assert guardrail.max_relative_drop is not None
                margin = f"relative drop <= {guardrail.max_relative_drop:.1%}"
                bound = (1 - sign * guardrail.max_relative_drop) * c
                prob = float(np.mean(sign * (t - bound) >= 0) if np.all(c > 0) else 0.0)
            found.append(BayesGuardrail(guardrail.metric, arm, margin, prob, prob >= threshold))
    return found


# ---------------------------------------------------------------------- summaries


def _summary(
    name: str,
    arm: str,
    control: str,
    fitted: Fitted,
    prob_best: float,
    higher: bool,
    hdi_prob: float,
    rope: float,
) -> BayesResult:
    c, t = fitted.draws[control], fitted.draws[arm]
    absolute = t - c
    relative = t / c - 1 if np.all(c > 0) else None  # a reference at or below 0: no relative lift
    if fitted.closed is not None:
        pc, pt = fitted.closed[control], fitted.closed[arm]
        beat = conjugate.prob_greater(pt, pc) if higher else conjugate.prob_greater(pc, pt)
        loss = conjugate.expected_shortfall(pt, pc) if higher else conjugate.expected_shortfall(pc, pt)
        means = (_mean(pc), _mean(pt))
    else:
        beat = float(np.mean(t > c) if higher else np.mean(t < c))
        loss = float(np.mean(np.maximum(c - t, 0) if higher else np.maximum(t - c, 0)))
        means = (float(np.mean(c)), float(np.mean(t)))
    rel_hdi = None if relative is None else hdi(relative, hdi_prob)
    return BayesResult(
        metric=name,
        variant=arm,
        model=fitted.model,
        control_mean=means[0],
        variant_mean=means[1],
        abs_mean=means[1] - means[0],
        abs_hdi=hdi(absolute, hdi_prob),
        rel_lift_mean=None if relative is None else float(np.mean(relative)),
        rel_hdi=rel_hdi,
        prob_beat_control=beat,
        prob_best=prob_best,
        expected_loss=loss,
        decision="undefined" if rel_hdi is None else rope_decision(rel_hdi, rope, higher),
        diagnostics=fitted.diagnostics,
    )


def _mean(posterior: Posterior) -> float:
    return float(posterior.mean)


def rope_decision(rel_hdi: tuple[float, float], rope: float, higher: bool = True) -> str:
    """HDI + ROPE rule (Kruschke): better / worse when the HDI clears the ROPE, equivalent inside it."""
    low, high = rel_hdi if higher else (-rel_hdi[1], -rel_hdi[0])
    if low > rope:
        return "better"
    if high < -rope:
        return "worse"
    if rope > 0 and -rope <= low and high <= rope:
        return "equivalent"
    return "undecided"
