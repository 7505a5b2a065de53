"""The names of an experiment's per-arm statistics, shared by every engine that computes them (the
DuckDB aggregation, the portable warehouse query) and by what reads them back.

Moment variables are the metrics with a per-unit value (not ratios, not ordinal scores) in spec order,
then the covariates as ``cov:<column>``; moments come as ``mean:<i>`` and ``comoment:<i>:<j>``
(:func:`promolab.aggregate.sql.moment_columns`). Each regression-adjusted metric has the power sums
of :class:`~promolab.stats.moments.PowerSums` over itself and its covariates (the units file's, then its
own pre-period value), as ``pow:<metric>:<exponents>`` (``pow:<covariates>:<exponents>`` for the
monomials without the metric, shared by the metrics with the same covariates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promolab.kinds import kind_of
from promolab.spec import ExperimentSpec
from promolab.spec.models import ContinuousMetric, OrdinalMetric, RatioMetric
from promolab.spec.windows import pre_covariate
from promolab.stats.moments import MAX_POWER_COVARIATES, LogMoments, Moments, PowerSums, power_exponents

HOLDOUT_LABEL = "holdout"


def label_lists(spec: ExperimentSpec) -> tuple[list[str], list[int]]:
    """Raw labels the data may hold and the 1-based arm of each (0: the holdout)."""
    position = {v.id: k for k, v in enumerate(spec.variants, start=1)}
    mapping = spec.data.variant_values or {v.id: v.id for v in spec.variants}
    labels, arms = [str(raw) for raw in mapping], [position[arm] for arm in mapping.values()]
    if spec.design.holdout > 0 and HOLDOUT_LABEL not in labels:
        labels.append(HOLDOUT_LABEL)
        arms.append(0)
    return labels, arms


@dataclass(frozen=True)
class StatsLayout:
    """The statistics' names of ``spec`` with shared ``covariates`` (units-file columns) and each
    metric's ``own`` pre-period covariate."""

    spec: ExperimentSpec
    covariates: tuple[str, ...] = ()
    own: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: ExperimentSpec, cuped: bool) -> StatsLayout:
        """The layout of an expanded ``spec`` analysed with (or without) ``cuped``: its covariates
        and its metrics' own pre-period values."""
        if not cuped:
            return cls(spec)
        return cls(spec, tuple(spec.analysis.covariates), own_covariates(spec))

    @property
    def variables(self) -> list[str]:
        """Metrics with a per-unit value in the moments: not ratios, not ordinal scores."""
        return [m.id for m in self.spec.metrics if not isinstance(m, RatioMetric | OrdinalMetric)]

    @property
    def ordinals(self) -> list[OrdinalMetric]:
        return [m for m in self.spec.metrics if isinstance(m, OrdinalMetric)]

    def moment_names(self) -> list[str]:
        return [*self.variables, *(f"cov:{c}" for c in self.covariates)]

    def covariates_of(self, name: str) -> tuple[str, ...]:
        """Moment names of the covariates adjusting ``name``: the units file's, then its pre-period."""
        shared = tuple(f"cov:{c}" for c in self.covariates)
        own = self.own.get(name)
        return shared if own is None else (*shared, own)

    def with_powers(self, name: str) -> bool:
        return 0 < len(self.covariates_of(name)) <= MAX_POWER_COVARIATES and self.adjusted(name)

    def adjusted(self, name: str) -> bool:
        """A metric the analysis regression-adjusts: an adjustable kind, reported (not a covariate or a
        decomposition component)."""
        return kind_of(self.spec.metric(name)).adjustable and self.spec.role(name) not in (
            "covariate",
            "component",
            "treatment_only",
        )

    def power_alias(self, name: str, exponent: Sequence[int]) -> str:
        key = name if exponent[0] else "|".join(self.covariates_of(name))
        return f"pow:{key}:{''.join(map(str, exponent))}"

    def power_monomials(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """Alias -> the monomial as (variable, power) pairs (empty: the count) of every power sum."""
        monomials = {}
        for name in self.variables:
            if not self.with_powers(name):
                continue
            variables = (name, *self.covariates_of(name))
            for exponent in power_exponents(len(variables) - 1):
                factors = tuple((v, e) for v, e in zip(variables, exponent, strict=True) if e)
                monomials[self.power_alias(name, exponent)] = factors
        return monomials

    @property
    def continuous(self) -> list[str]:
        """Metrics with log-moments (the Bayesian hurdle model of continuous metrics)."""
        return [m.id for m in self.spec.metrics if isinstance(m, ContinuousMetric)]

    def arm_logs(self, group: Mapping[str, Any]) -> dict[str, LogMoments]:
        """Every continuous metric's log-moments from one arm's statistics: ``log n:<metric>`` units with
        ``y > 0``, the mean (``log mean``) and sum of squared deviations (``log ss``) of their ``ln y``,
        and ``log negative`` units with ``y < 0``."""
        logs = {}
        for name in self.continuous:
            k = int(group[f"log n:{name}"] or 0)
            mean, spread = group[f"log mean:{name}"] or 0.0, group[f"log ss:{name}"] or 0.0
            positive = Moments(("log",), k, np.array([float(mean)]), np.array([[float(spread)]]))
            logs[name] = LogMoments(positive, int(group[f"log negative:{name}"] or 0))
        return logs

    def arm_powers(self, group: Mapping[str, Any], about_means: bool = False) -> dict[str, PowerSums]:
        """Every adjusted metric's power sums from one arm's statistics by alias; ``about_means``: sums
        about the arm's means (``mean:<i>`` of the same row), as the warehouse query takes them."""
        powers = {}
        moment_names = self.moment_names()
        for name in self.variables:
            if self.with_powers(name):
                names = (name, *self.covariates_of(name))
                sums = [group[self.power_alias(name, e)] for e in power_exponents(len(names) - 1)]
                origin = None
                if about_means:
                    origin = np.array([float(group[f"mean:{moment_names.index(v)}"]) for v in names])
                powers[name] = PowerSums(names, np.array(sums, dtype=float), origin)
        return powers


def own_covariates(spec: ExperimentSpec) -> dict[str, str]:
    """Metric -> its pre-period metric, for every reported metric of an expanded spec that CUPED can
    adjust with its own history (``pre_days`` > 0; :func:`promolab.spec.windows.pre_covariate`)."""
    found = {}
    for metric in spec.metrics:
        pre = pre_covariate(spec, metric.id)
        reported = spec.role(metric.id) not in ("covariate", "component")
        if pre is not None and reported and kind_of(metric).adjustable:
            found[metric.id] = pre
    return found
