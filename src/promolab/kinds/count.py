"""Count metrics: the number of a unit's rows (or the sum of ``column``). Welch's test of the means;
Gamma-Poisson posteriors (prior ``Gamma(a, b)``, default Jeffreys ``Gamma(0.5, 0)``) tempered by the
pooled dispersion ``d = max(1, s^2 / mean)``, so over-dispersed counts keep honest intervals."""

from __future__ import annotations

from promolab.kinds.base import Fitted, Merge, PosteriorInputs, Summarise, closed_fit
from promolab.spec.models import AnyMetric
from promolab.stats import conjugate
from promolab.stats.estimators import mean_summary
from promolab.stats.moments import Moments


class Count:
    name = "count"
    proportion = False
    adjustable = True
    absent_is_zero = True

    def unit_sql(self, metric: AnyMetric, column: str | None, window: str) -> str:
        return f"sum(CAST({column} AS DOUBLE)){window}" if column else f"count(*){window}"

    def units_sql(self, column: str) -> str:
        return f"coalesce(CAST({column} AS DOUBLE), 0)"

    def merge(self, metric: AnyMetric) -> Merge:
        return "sum"

    def bad_value_sql(self, metric: AnyMetric, value: str, duck_type: str) -> str | None:
        return None if getattr(metric, "column", None) is None else f"{value} < 0"

    def bad_value_meaning(self, metric: AnyMetric) -> str:
        return "negative"

    def summaries(self, metric: AnyMetric) -> list[tuple[str, Summarise, str]]:
        return [(metric.id, lambda s, a: mean_summary(s.arms[a].moments, metric.id), "welch-t")]

    def posteriors(self, metric: AnyMetric, inputs: PosteriorInputs) -> list[tuple[str, Fitted]]:
        shape0, rate0 = inputs.prior.a or 0.5, inputs.prior.b or 0.0
        moments = {arm: inputs.stats.arms[arm].moments for arm in inputs.arms}
        d = dispersion(list(moments.values()), metric.id)
        closed = {
            arm: conjugate.gamma_poisson(m.n * m.mean_of(metric.id), m.n, shape0, rate0, d)
            for arm, m in moments.items()
        }
        return [(metric.id, closed_fit(f"gamma-poisson d={d:.3g}", closed, inputs))]


def dispersion(moments: list[Moments], name: str) -> float:
    """Pooled within-arm variance over the overall mean of the counts, at least 1."""
    within = sum(m.comoment[m.index(name), m.index(name)] for m in moments)
    n = sum(m.n for m in moments)
    mean = sum(m.n * m.mean_of(name) for m in moments) / n
    if mean <= 0 or n <= len(moments):
        return 1.0
    return max(1.0, float(within / (n - len(moments)) / mean))


KIND = Count()
