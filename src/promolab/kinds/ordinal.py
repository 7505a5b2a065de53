"""Ordinal metrics (1-5 satisfaction): the mean response of responding units (non-responders are
missing, not 0) and the share in the top ``top_box`` levels. Welch's test of the mean score, the
unpooled z-test of the top box (and Mann-Whitney U beside them); normal posterior of the mean score,
Beta-Binomial of the top box."""

from __future__ import annotations

from promolab.kinds.base import Fitted, Merge, PosteriorInputs, Summarise, closed_fit, normal_fit
from promolab.spec.models import AnyMetric, OrdinalMetric
from promolab.stats import conjugate
from promolab.stats.estimators import histogram_summary, top_box_summary


class Ordinal:
    name = "ordinal"
    proportion = False  # the mean score; its top-box result is a share (method z-unpooled)
    adjustable = False
    absent_is_zero = False  # no response is missing, not 0

    def unit_sql(self, metric: AnyMetric, column: str | None, window: str) -> str:
        return f"avg(CAST({column} AS DOUBLE)){window}"

    def units_sql(self, column: str) -> str:
        return f"CAST({column} AS DOUBLE)"

    def merge(self, metric: AnyMetric) -> Merge:
        return "mean"

    def bad_value_sql(self, metric: AnyMetric, value: str, duck_type: str) -> str | None:
        assert isinstance(metric, OrdinalMetric)
        levels = ", ".join(str(level) for level in metric.levels)  # ints validated by the spec
        return f"{value} NOT IN ({levels})"

    def bad_value_meaning(self, metric: AnyMetric) -> str:
        assert isinstance(metric, OrdinalMetric)
        return f"not one of the levels {list(metric.levels)}"

    def summaries(self, metric: AnyMetric) -> list[tuple[str, Summarise, str]]:
        assert isinstance(metric, OrdinalMetric)
        threshold = float(metric.levels[-metric.top_box])
        return [
            (metric.id, lambda s, a: histogram_summary(s.arms[a].histograms[metric.id]), "welch-t"),
            (
                f"{metric.id}:top_box",
                lambda s, a: top_box_summary(s.arms[a].histograms[metric.id], threshold),
                "z-unpooled",
            ),
        ]

    def posteriors(self, metric: AnyMetric, inputs: PosteriorInputs) -> list[tuple[str, Fitted]]:
        assert isinstance(metric, OrdinalMetric)
        histograms = {arm: inputs.stats.arms[arm].histograms[metric.id] for arm in inputs.arms}
        mean = normal_fit(
            "normal (mean)", {arm: histogram_summary(h) for arm, h in histograms.items()}, metric.id, inputs
        )
        threshold = float(metric.levels[-metric.top_box])
        boxes = {arm: top_box_summary(h, threshold) for arm, h in histograms.items()}
        top = {arm: conjugate.beta_binomial(round(b.n * b.mean), b.n) for arm, b in boxes.items()}
        return [*mean, (f"{metric.id}:top_box", closed_fit("beta-binomial", top, inputs))]


KIND = Ordinal()
