"""Frequentist lift of the primary metric in each segment, and a test of whether it differs by segment.

For each segmentation (a units-file column, or RFM cells) and treatment arm, every segment with at
least ``MIN_SEGMENT_UNITS`` units and some variation in every arm gets its own comparison (Welch for
means, unpooled z for a binary metric; no multiplicity adjustment: segment rows are descriptive).
Whether the lift differs across segments is Cochran's Q test of the segment differences ``d_i``
with inverse-variance weights ``w_i = 1 / se_i^2``::

    Q = sum_i w_i (d_i - d_w)^2,   d_w = sum_i w_i d_i / sum_i w_i,   df = k - 1,   p = P(Chi2(df) >= Q)

A small p says the lift is not the same in every segment (heterogeneity); a large one says the data
cannot tell the segments apart, not that they are equal. (The Bayesian engine instead pools the
segment lifts partially: ``promolab.analyze.bayesian``.)
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from promolab.spec import ExperimentSpec
from promolab.spec.models import BinaryMetric, OrdinalMetric, RatioMetric
from promolab.stats.distributions import chi2_sf
from promolab.stats.estimators import compare, mean_summary, proportion_summary
from promolab.stats.intervals import hdi
from promolab.stats.mcmc import fit_partial_pooling
from promolab.stats.moments import ExperimentStats, Moments

MIN_SEGMENT_UNITS = 30  # per arm: below this a segment's normal approximation is not trusted


@dataclass(frozen=True)
class SegmentLift:
    """The primary metric's lift of one arm in one segment."""

    segmentation: str
    segment: str
    variant: str
    n_control: int
    n_variant: int
    abs_diff: float
    se: float
    abs_ci: tuple[float, float]
    rel_lift: float | None
    p_value: float


@dataclass(frozen=True)
class Heterogeneity:
    """Cochran's Q test that one arm's lift is the same in every segment of a segmentation."""

    segmentation: str
    variant: str
    segments: int
    q: float
    df: int
    p_value: float


def usable_segments(
    found: Mapping[str, Mapping[str, Moments]], arms: list[str], metric: str
) -> dict[str, Mapping[str, Moments]]:
    """Segments with ``MIN_SEGMENT_UNITS`` units and some variation of ``metric`` in every arm."""
    return {
        segment: by_arm
        for segment, by_arm in found.items()
        if all(a in by_arm and by_arm[a].n >= MIN_SEGMENT_UNITS and by_arm[a].var(metric) > 0 for a in arms)
    }


def segment_lifts(
    spec: ExperimentSpec, stats: ExperimentStats
) -> tuple[list[SegmentLift], list[Heterogeneity]]:
    """Every segment's lift and each segmentation's heterogeneity test (see the module docstring)."""
    metric = spec.metric(spec.primary)
    if isinstance(metric, RatioMetric | OrdinalMetric):
        return [], []  # segment moments hold per-unit values only
    summary = proportion_summary if isinstance(metric, BinaryMetric) else mean_summary
    control = spec.reference.id
    arms = [control, *(t.id for t in spec.treatments)]
    lifts: list[SegmentLift] = []
    tests: list[Heterogeneity] = []
    for segmentation, found in stats.segments.items():
        usable = usable_segments(found, arms, metric.id)
        for arm in arms[1:]:
            rows = []
            for segment in sorted(usable):
                c = summary(usable[segment][control], metric.id)
                t = summary(usable[segment][arm], metric.id)
                got = compare(c, t, spec.analysis.confidence)
                if got.p_value is None or got.abs_ci is None or not got.se > 0:
                    continue
                rows.append(
                    SegmentLift(
                        segmentation,
                        segment,
                        arm,
                        c.n,
                        t.n,
                        got.abs_diff,
                        got.se,
                        got.abs_ci,
                        got.rel_lift,
                        got.p_value,
                    )
                )
            lifts += rows
            if len(rows) >= 2:
                weights = np.array([1 / r.se**2 for r in rows])
                diffs = np.array([r.abs_diff for r in rows])
                pooled = float(weights @ diffs / weights.sum())
                q = float(weights @ (diffs - pooled) ** 2)
                df = len(rows) - 1
                p = float(chi2_sf(q, df))
                tests.append(Heterogeneity(segmentation, arm, len(rows), q, df, p))
    return lifts, tests


# ---------------------------------------------------------------------- partial pooling (Bayesian)


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


def pooled_segments(
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
