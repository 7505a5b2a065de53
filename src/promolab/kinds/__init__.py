"""Metric kinds, one module each, in a registry: adding a kind is one module here and one spec model.

Every kind implements :class:`~promolab.kinds.base.Kind`: its per-unit SQL and value checks (read by
:mod:`promolab.aggregate.values`), its frequentist summaries and whether CUPED applies (read by
:mod:`promolab.analyze.frequentist`), its posterior (read by :mod:`promolab.analyze.posteriors`) and
whether its estimates are shares (read by the tables). ``tests/test_every_kind.py`` runs the same checks
over every kind in :data:`KINDS`.
"""

from __future__ import annotations

from promolab.kinds import binary, continuous, count, ordinal, ratio
from promolab.kinds.base import Fitted, Kind, PosteriorInputs
from promolab.spec.models import METRIC_KINDS, AnyMetric

KINDS: dict[str, Kind] = {
    kind.name: kind for kind in (binary.KIND, continuous.KIND, count.KIND, ratio.KIND, ordinal.KIND)
}
assert set(KINDS) == set(METRIC_KINDS), "every metric kind of the spec has a module here"


def kind_of(metric: AnyMetric) -> Kind:
    """The kind behind a metric."""
    return KINDS[metric.kind]


__all__ = ["KINDS", "Fitted", "Kind", "PosteriorInputs", "kind_of"]
