"""Continuous metrics: ``agg`` (sum, mean or max) of ``column`` over a unit's rows. Welch's test of the
means; the PyMC hurdle model (purchase probability x log-normal amount, on sufficient statistics) for
non-negative values, the normal posterior of the mean when some values are negative (refunds)."""

from __future__ import annotations

import numpy as np

from promolab.kinds.base import Fitted, Merge, PosteriorInputs, Summarise, normal_fit
from promolab.spec.models import AnyMetric
from promolab.stats.estimators import mean_summary
from promolab.stats.mcmc import HurdleStats, fit_hurdle
from promolab.stats.moments import LogMoments

SQL_AGG = {"sum": "sum", "mean": "avg", "max": "max"}  # ``agg`` -> DuckDB aggregate
MERGE: dict[str, Merge] = {"sum": "sum", "mean": "mean", "max": "max"}  # ``agg`` -> its partials' merge


class Continuous:
    name = "continuous"
    proportion = False
    adjustable = True
    absent_is_zero = True

    def unit_sql(self, metric: AnyMetric, column: str | None, window: str) -> str:
        return f"{SQL_AGG[getattr(metric, 'agg', 'sum')]}(CAST({column} AS DOUBLE)){window}"

    def units_sql(self, column: str) -> str:
        return f"coalesce(CAST({column} AS DOUBLE), 0)"

    def merge(self, metric: AnyMetric) -> Merge:
        return MERGE[getattr(metric, "agg", "sum")]

    def bad_value_sql(self, metric: AnyMetric, value: str, duck_type: str) -> str | None:
        return None

    def bad_value_meaning(self, metric: AnyMetric) -> str:
        return "negative"

    def summaries(self, metric: AnyMetric) -> list[tuple[str, Summarise, str]]:
        return [(metric.id, lambda s, a: mean_summary(s.arms[a].moments, metric.id), "welch-t")]

    def posteriors(self, metric: AnyMetric, inputs: PosteriorInputs) -> list[tuple[str, Fitted]]:
        if all(_logs(inputs, arm, metric.id).negative == 0 for arm in inputs.arms):
            return [(metric.id, _hurdle(metric, inputs))]
        moments = {arm: inputs.stats.arms[arm].moments for arm in inputs.arms}
        summaries = {arm: mean_summary(m, metric.id) for arm, m in moments.items()}
        return normal_fit("normal (has y < 0)", summaries, metric.id, inputs)


def _hurdle(metric: AnyMetric, inputs: PosteriorInputs) -> Fitted:
    arms, stats = inputs.arms, inputs.stats
    logs = [stats.arms[a].logs[metric.id].positive for a in arms]
    data = HurdleStats(
        units=np.array([stats.arms[a].moments.n for a in arms], dtype=float),
        buyers=np.array([m.n for m in logs], dtype=float),
        mean_log=np.array([m.mean_of("log") for m in logs]),
        var_log=np.array([m.var("log", ddof=0) if m.n else 0.0 for m in logs]),
    )
    fit = fit_hurdle(data, inputs.spec.analysis.bayes)
    flat = fit.draws.reshape(-1, len(arms))
    return Fitted(
        "hurdle (pymc)", {a: flat[:, k] for k, a in enumerate(arms)}, None, fit.diagnostics.to_dict()
    )


def _logs(inputs: PosteriorInputs, arm: str, metric: str) -> LogMoments:
    found = inputs.stats.arms[arm].logs.get(metric)
    if found is None:
        raise ValueError(
            f"the statistics lack the log-moments of '{metric}' (aggregate with log_moments=True)"
        )
    return found


KIND = Continuous()
