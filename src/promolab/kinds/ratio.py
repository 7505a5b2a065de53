"""Ratio metrics (AOV, CTR): a ratio of sums of two per-unit metrics, analysed by the delta method
(frequentist) and its normal posterior (Bayesian). Not regression-adjusted; no rows of its own."""

from __future__ import annotations

from promolab.kinds.base import Fitted, Merge, PosteriorInputs, Summarise, normal_fit
from promolab.spec.models import AnyMetric, RatioMetric
from promolab.stats.estimators import ratio_summary


class Ratio:
    name = "ratio"
    proportion = False
    adjustable = False
    absent_is_zero = True

    def unit_sql(self, metric: AnyMetric, column: str | None, window: str) -> str:
        raise TypeError(
            f"ratio metric '{metric.id}' has no rows: it is formed from its numerator and denominator"
        )

    def units_sql(self, column: str) -> str:
        raise TypeError("a ratio metric is not read from the units file")

    def merge(self, metric: AnyMetric) -> Merge:
        raise TypeError(f"ratio metric '{metric.id}' has no rows of its own to merge")

    def bad_value_sql(self, metric: AnyMetric, value: str, duck_type: str) -> str | None:
        return None

    def bad_value_meaning(self, metric: AnyMetric) -> str:
        return "impossible"

    def summaries(self, metric: AnyMetric) -> list[tuple[str, Summarise, str]]:
        assert isinstance(metric, RatioMetric)
        num, den = metric.numerator, metric.denominator
        return [(metric.id, lambda s, a: ratio_summary(s.arms[a].moments, num, den), "delta-ratio")]

    def posteriors(self, metric: AnyMetric, inputs: PosteriorInputs) -> list[tuple[str, Fitted]]:
        assert isinstance(metric, RatioMetric)
        num, den = metric.numerator, metric.denominator
        moments = {arm: inputs.stats.arms[arm].moments for arm in inputs.arms}
        if any(m.mean_of(den) == 0 for m in moments.values()):
            return []  # no ratio in an arm (flagged ZERO_DENOMINATOR by the frequentist engine)
        summaries = {arm: ratio_summary(m, num, den) for arm, m in moments.items()}
        return normal_fit("normal (delta)", summaries, metric.id, inputs)


KIND = Ratio()
