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

import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promolab.analyze.segments import usable_segments
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
from promolab.stats.intervals import hdi
from promolab.stats.mcmc import Array, HurdleStats, fit_hurdle, fit_partial_pooling
from promolab.stats.moments import ExperimentStats, LogMoments, Moments

MIN_IMPORTANCE_ESS = 400  # fewer effective draws after a lift prior reweighting: flagged
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
class SegmentResult:
    """Partially pooled lift of one treatment arm in one segment (the primary metric)."""

    segmentation: str
    segment: str
    variant: str
    n_control: int
    n_variant: int
    raw_abs_diff: float
    raw_se: float
    abs_mean: float
    abs_hdi: tuple[float, float]
    rel_lift_mean: float | None
    prob_positive: float
    diagnostics: dict[str, Any]


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
    draws: dict[str, dict[str, Array]] = field(default_factory=dict)

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
        if spec.role(metric.id) == "treatment_only":
            continue
        prior = settings.priors.get(metric.id) or Prior()
        higher = metric.direction == "higher"
        fits = []
        for name, fitted in _fit_metric(spec, metric, prior, stats, arms, size):
            if prior.lift is not None:
                fitted = _reweighted(fitted, prior, control, settings.seed)
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
        for s in _segment_results(spec, segmentation, found, arms, hdi_prob)
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


# ---------------------------------------------------------------------- one metric's posterior


@dataclass
class _Fitted:
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


def _fit_metric(
    spec: ExperimentSpec, metric: AnyMetric, prior: Prior, stats: ExperimentStats, arms: list[str], size: int
) -> list[tuple[str, _Fitted]]:
    """(result name, posterior) of a metric: one, or two for ordinal metrics (mean score, top box)."""
    rng = np.random.default_rng([spec.analysis.bayes.seed, _stable_id(metric.id)])
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
            d = _dispersion(list(moments.values()), metric.id)
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


def _closed(model: str, closed: dict[str, Posterior], size: int, rng: np.random.Generator) -> _Fitted:
    return _Fitted(model, {arm: conjugate.draws(p, size, rng) for arm, p in closed.items()}, closed)


def _hurdle(spec: ExperimentSpec, metric: AnyMetric, stats: ExperimentStats, arms: list[str]) -> _Fitted:
    logs = [stats.arms[a].logs[metric.id].positive for a in arms]
    data = HurdleStats(
        units=np.array([stats.arms[a].moments.n for a in arms], dtype=float),
        buyers=np.array([m.n for m in logs], dtype=float),
        mean_log=np.array([m.mean_of("log") for m in logs]),
        var_log=np.array([m.var("log", ddof=0) if m.n else 0.0 for m in logs]),
    )
    fit = fit_hurdle(data, spec.analysis.bayes)
    flat = fit.draws.reshape(-1, len(arms))
    return _Fitted(
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


def _dispersion(moments: list[Moments], name: str) -> float:
    """Pooled within-arm variance over the overall mean of the counts, at least 1."""
    within = sum(m.comoment[m.index(name), m.index(name)] for m in moments)
    n = sum(m.n for m in moments)
    mean = sum(m.n * m.mean_of(name) for m in moments) / n
    if mean <= 0 or n <= len(moments):
        return 1.0
    return max(1.0, float(within / (n - len(moments)) / mean))


def _reweighted(fitted: _Fitted, prior: Prior, control: str, seed: int) -> _Fitted:
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
    return _Fitted(f"{fitted.model} + lift prior", draws, None, diagnostics)


# ---------------------------------------------------------------------- summaries


def _summary(
    name: str,
    arm: str,
    control: str,
    fitted: _Fitted,
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


# ---------------------------------------------------------------------- segments


def _segment_results(
    spec: ExperimentSpec,
    segmentation: str,
    found: Mapping[str, Mapping[str, Moments]],
    arms: list[str],
    hdi_prob: float,
) -> list[SegmentResult]:
    """Partially pooled lift of the primary metric in every segment with ``MIN_SEGMENT_UNITS`` units
    and some variation in every arm (smaller segments have no trustworthy standard error: skipped)."""
    metric, control = spec.primary, arms[0]
    if isinstance(spec.metric(metric), RatioMetric | OrdinalMetric):
        return []  # segment moments hold per-unit values only
    usable = usable_segments(found, arms, metric)
    if len(usable) < 2:
        return []
    overall = functools.reduce(operator.add, (arms[control] for arms in usable.values()))
    scale = abs(overall.mean_of(metric)) or 1.0
    segments = sorted(usable)
    results = []
    for arm in arms[1:]:
        diffs, errors = [], []
        for s in segments:
            c, t = usable[s][control], usable[s][arm]
            diffs.append(t.mean_of(metric) - c.mean_of(metric))
            errors.append((t.var(metric) / t.n + c.var(metric) / c.n) ** 0.5)
        d, e = np.array(diffs), np.array(errors)
        fit = fit_partial_pooling(d / scale, e / scale, spec.analysis.bayes)
        theta = fit.draws.reshape(-1, len(segments)) * scale
        for j, s in enumerate(segments):
            base = usable[s][control].mean_of(metric)
            results.append(
                SegmentResult(
                    segmentation=segmentation,
                    segment=s,
                    variant=arm,
                    n_control=usable[s][control].n,
                    n_variant=usable[s][arm].n,
                    raw_abs_diff=float(d[j]),
                    raw_se=float(errors[j]),
                    abs_mean=float(np.mean(theta[:, j])),
                    abs_hdi=hdi(theta[:, j], hdi_prob),
                    rel_lift_mean=float(np.mean(theta[:, j]) / base) if base else None,
                    prob_positive=float(np.mean(theta[:, j] > 0)),
                    diagnostics=fit.diagnostics.to_dict(),
                )
            )
    return results


def _stable_id(text: str) -> int:
    """A seed component from a metric id that is the same in every process (``hash`` is salted)."""
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little")
