"""Binary metrics: 1 when the unit has a row (or a true ``column``), else 0. Shares of units: the
unpooled z-test; Beta-Binomial posteriors (prior ``Beta(a, b)``, default ``Beta(1, 1)``)."""

from __future__ import annotations

from promolab.kinds.base import Fitted, Merge, PosteriorInputs, Summarise, closed_fit
from promolab.spec.models import AnyMetric
from promolab.stats import conjugate
from promolab.stats.estimators import proportion_summary


class Binary:
    name = "binary"
    proportion = True
    adjustable = True
    absent_is_zero = True

    def unit_sql(self, metric: AnyMetric, column: str | None, window: str) -> str:
        return f"max(CAST({column} AS BOOLEAN)::INTEGER){window}" if column else f"max(1){window}"

    def units_sql(self, column: str) -> str:
        return f"coalesce(CAST({column} AS BOOLEAN)::DOUBLE, 0)"

    def merge(self, metric: AnyMetric) -> Merge:
        return "max"

    def bad_value_sql(self, metric: AnyMetric, value: str, duck_type: str) -> str | None:
        return (
            None
            if duck_type == "BOOLEAN" or getattr(metric, "column", None) is None
            else f"{value} NOT IN (0, 1)"
        )

    def bad_value_meaning(self, metric: AnyMetric) -> str:
        return "not 0/1 or true/false"

    def summaries(self, metric: AnyMetric) -> list[tuple[str, Summarise, str]]:
        return [(metric.id, lambda s, a: proportion_summary(s.arms[a].moments, metric.id), "z-unpooled")]

    def posteriors(self, metric: AnyMetric, inputs: PosteriorInputs) -> list[tuple[str, Fitted]]:
        a0, b0 = inputs.prior.a or 1.0, inputs.prior.b or 1.0
        moments = {arm: inputs.stats.arms[arm].moments for arm in inputs.arms}
        closed = {
            arm: conjugate.beta_binomial(round(m.n * m.mean_of(metric.id)), m.n, a0, b0)
            for arm, m in moments.items()
        }
        return [(metric.id, closed_fit("beta-binomial", closed, inputs))]


KIND = Binary()
