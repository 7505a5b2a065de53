"""What every metric kind declares (:class:`Kind`), and the pieces its posteriors share.

A kind answers, for its metrics: the SQL of a unit's value from its event-table rows or from the units
file, which raw values are impossible, the per-arm summaries the frequentist engine compares, whether
regression adjustment (CUPED) applies, whether its estimates are shares (shown in percent), and its
posterior of every arm's mean. SQL pieces receive column expressions already quoted: no user string
reaches the SQL through a kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from promolab.spec import ExperimentSpec
from promolab.spec.models import AnyMetric, Prior
from promolab.stats import conjugate
from promolab.stats.conjugate import Posterior
from promolab.stats.estimators import ArmSummary
from promolab.stats.mcmc import Array
from promolab.stats.moments import ExperimentStats

type Summarise = Callable[[ExperimentStats, str], ArmSummary]
type Merge = Literal["sum", "max", "mean"]


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


@dataclass(frozen=True)
class PosteriorInputs:
    """What a kind's posterior reads: the spec, the metric's prior, the statistics, the arms (reference
    first), the number of draws and a seeded generator."""

    spec: ExperimentSpec
    prior: Prior
    stats: ExperimentStats
    arms: list[str]
    size: int
    rng: np.random.Generator


class Kind(Protocol):
    """A metric kind (see the module docstring)."""

    name: str
    proportion: bool  # its estimates are shares of units: percent, differences in percentage points
    adjustable: bool  # regression adjustment (CUPED) applies to its per-unit values
    absent_is_zero: bool  # a unit without rows has the value 0 (else it is missing: no response)

    def unit_sql(self, metric: AnyMetric, column: str | None, window: str) -> str:
        """Aggregate of one unit's event-table rows (``column`` quoted, missing values already handled;
        ``window`` a ``FILTER`` clause or empty)."""
        ...

    def units_sql(self, column: str) -> str:
        """A unit's value read from its units-file column (quoted)."""
        ...

    def merge(self, metric: AnyMetric) -> Merge:
        """How two partial values of :meth:`unit_sql` over disjoint rows of a unit combine: ``sum``,
        ``max``, or ``mean`` (kept as a sum and a count of values, divided at the end)."""
        ...

    def bad_value_sql(self, metric: AnyMetric, value: str, duck_type: str) -> str | None:
        """Predicate of an impossible raw value, or None when every value is possible."""
        ...

    def bad_value_meaning(self, metric: AnyMetric) -> str:
        """What an impossible value is, for the error message."""
        ...

    def summaries(self, metric: AnyMetric) -> list[tuple[str, Summarise, str]]:
        """(result name, per-arm summary, method) of each result the metric gives."""
        ...

    def posteriors(self, metric: AnyMetric, inputs: PosteriorInputs) -> list[tuple[str, Fitted]]:
        """(result name, posterior of every arm's mean) of each result with a posterior."""
        ...


def closed_fit(model: str, closed: Mapping[str, Posterior], inputs: PosteriorInputs) -> Fitted:
    """A closed-form posterior of every arm, with draws for the comparisons that need them."""
    draws = {arm: conjugate.draws(p, inputs.size, inputs.rng) for arm, p in closed.items()}
    return Fitted(model, draws, dict(closed))


def normal_posteriors(summaries: Mapping[str, ArmSummary]) -> dict[str, Posterior] | None:
    """The flat-prior large-sample posteriors ``N(mean, var_of_mean)`` of every arm's estimate; None
    when an arm's estimate has no spread (the frequentist result is flagged ``ZERO_VARIANCE``): a point
    mass has no density to compare."""
    if any(s.var_of_mean <= 0 for s in summaries.values()):
        return None
    return {arm: conjugate.NormalPosterior(s.mean, s.var_of_mean**0.5) for arm, s in summaries.items()}


def normal_fit(
    model: str, summaries: Mapping[str, ArmSummary], name: str, inputs: PosteriorInputs
) -> list[tuple[str, Fitted]]:
    """``[(name, normal posterior)]``, or nothing when an arm's estimate has no spread."""
    normal = normal_posteriors(summaries)
    return [] if normal is None else [(name, closed_fit(model, normal, inputs))]
