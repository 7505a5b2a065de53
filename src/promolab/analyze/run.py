"""``analyze_spec``: the spec's data aggregated once, then every estimate from the statistics alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from promolab import __version__
from promolab.aggregate.layout import own_covariates
from promolab.aggregate.quality import DataQuality
from promolab.analyze import table
from promolab.analyze.frequentist import GuardrailResult, LiftResult, guardrail_results, lift_results
from promolab.analyze.segments import Heterogeneity, SegmentLift, segment_lifts
from promolab.design.srm import SrmResult, srm_test
from promolab.errors import DataError
from promolab.sources import DataPath, data_paths
from promolab.spec import ExperimentSpec, spec_hash
from promolab.spec.windows import expand
from promolab.stats.moments import ExperimentStats, Moments

if TYPE_CHECKING:
    import pandas as pd

    from promolab.analyze.bayesian import BayesAnalysis

type Method = Literal["frequentist", "bayesian", "both"]


@dataclass(frozen=True)
class Analysis:
    """Everything one analysis produced, and what produced it."""

    experiment: str
    spec_hash: str
    version: str
    reference: str
    srm: SrmResult
    results: list[LiftResult]
    guardrails: list[GuardrailResult]
    caps: dict[str, float]
    covariates: tuple[str, ...]
    method: Method = "frequentist"
    bayes: BayesAnalysis | None = None
    arms: dict[str, Moments] = field(default_factory=dict)  # per-arm moments (economics reads them)
    daily: dict[str, Any] | None = None  # the primary metric's cumulative mean by day (reports)
    data_quality: DataQuality = field(default_factory=DataQuality)  # rows left out, and why
    segments: list[SegmentLift] = field(default_factory=list)  # frequentist lift per segment
    heterogeneity: list[Heterogeneity] = field(default_factory=list)  # does the lift differ by segment?

    def to_dicts(self) -> list[dict[str, Any]]:
        """One flat mapping per metric x treatment arm (:mod:`promolab.analyze.table`): the source of
        :meth:`to_frame`, :meth:`to_markdown`, :meth:`to_html` and the CLI table."""
        return table.rows(self)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.to_dicts())

    def to_markdown(self) -> str:
        return table.markdown(self.to_dicts())

    def to_html(self) -> str:
        return table.html(self.to_dicts())

    def _repr_html_(self) -> str:
        return self.to_html()

    def _result_rows(self) -> list[dict[str, Any]]:
        """The JSON ``results``: every result's fields, with a ``bayes`` object when the Bayesian engine
        ran."""
        bayes = {(b.metric, b.variant): b.to_json() for b in (self.bayes.results if self.bayes else [])}
        rows = []
        for result in self.results:
            row = asdict(result)
            if self.bayes is not None:
                row["bayes"] = bayes.get((result.metric, result.variant))
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload of ``promolab analyze --json``."""
        return {
            "experiment": self.experiment,
            "reference": self.reference,
            "spec_hash": self.spec_hash,
            "promolab_version": self.version,
            "srm": {**self.srm.to_dict(), "flag": self.srm.flag is not None, "code": self.srm.flag},
            "covariates": list(self.covariates),
            "caps": self.caps,
            "results": self._result_rows(),
            "arms": {arm: moments.to_dict() for arm, moments in self.arms.items()},
            "daily": self.daily,
            "data_quality": self.data_quality.to_dict(),
            "segments": {
                "rows": [asdict(s) for s in self.segments],
                "heterogeneity": [asdict(h) for h in self.heterogeneity],
            },
            "guardrails": [asdict(g) for g in self.guardrails],
            "method": self.method,
            **(self._bayes_dict() if self.bayes is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Analysis:
        """The analysis a :meth:`to_dict` payload describes (``from_dict(d).to_dict() == d``; posterior
        draws are not in the payload). Validate a file with ``check_saved_analysis`` first."""
        srm = {k: v for k, v in data["srm"].items() if k in SrmResult.__dataclass_fields__}
        bayes = data.get("bayes")
        segments = data.get("segments") or {}
        return cls(
            experiment=data["experiment"],
            spec_hash=data["spec_hash"],
            version=data.get("promolab_version", "unknown"),
            reference=data["reference"],
            srm=SrmResult(**{**srm, "flag": data["srm"]["code"]}),
            results=[_dataclass(LiftResult, row) for row in data["results"]],
            guardrails=[_dataclass(GuardrailResult, row) for row in data["guardrails"]],
            caps=dict(data.get("caps", {})),
            covariates=tuple(data.get("covariates", ())),
            method=data.get("method", "frequentist"),
            bayes=None if bayes is None else _bayes_from_dict(bayes, data["results"]),
            arms={arm: Moments.from_dict(m) for arm, m in data["arms"].items()},
            daily=data.get("daily"),
            data_quality=DataQuality.from_dict(data.get("data_quality") or {}),
            segments=[_dataclass(SegmentLift, row) for row in segments.get("rows", [])],
            heterogeneity=[_dataclass(Heterogeneity, row) for row in segments.get("heterogeneity", [])],
        )

    def _bayes_dict(self) -> dict[str, Any]:
        assert self.bayes is not None
        return {
            "bayes": {
                "hdi_prob": self.bayes.hdi_prob,
                "rope": self.bayes.rope,
                "threshold": self.bayes.threshold,
                "flagged": self.bayes.flagged,
                "guardrails": [asdict(g) for g in self.bayes.guardrails],
                "segments": [asdict(s) for s in self.bayes.segments],
            }
        }


def analyze_spec(
    spec: ExperimentSpec,
    data_dir: str | Path | None = None,
    overrides: Mapping[str, DataPath] | None = None,
    frames: Mapping[str, pd.DataFrame] | None = None,
    cuped: bool = True,
    method: Method | None = None,
    daily: bool = False,
) -> Analysis:
    """Analyse the spec's data (files, or pandas DataFrames by data name in ``frames``).

    Args:
        spec: the experiment.
        data_dir: folder the spec's relative data paths resolve against.
        overrides: data name -> file, replacing the spec's path.
        frames: data name -> DataFrame, used instead of files.
        cuped: adjust for ``analysis.covariates`` when the spec declares some (frequentist engine).
        method: ``frequentist``, ``bayesian`` or ``both`` (default: the spec's ``analysis.method``).
        daily: also the primary metric's cumulative mean by day (needs ``data.timestamp``).
    """
    from promolab.aggregate.duck import aggregate

    method = method or spec.analysis.method
    covariates = spec.analysis.covariates if cuped else ()
    segments = spec.analysis.segments
    paths = data_paths(spec, data_dir, overrides)
    expanded = expand(spec)
    own = own_covariates(expanded) if cuped else {}
    aggregation = aggregate(
        expanded, paths, frames, covariates, segments, method != "frequentist", daily, own
    )
    analysis = analyze_stats(spec, aggregation.stats, aggregation.residual_moments, method)
    return replace(analysis, daily=aggregation.daily, data_quality=aggregation.quality)


def analyze_table(
    spec: ExperimentSpec, path: Path, cuped: bool = True, method: Method | None = None
) -> Analysis:
    """The analysis from the per-arm statistics a warehouse returned for ``promolab sql``'s query
    (:func:`promolab.aggregate.portable.read_stats_table`), with the same ``cuped`` setting."""
    from promolab.aggregate.portable import read_stats_table

    stats = read_stats_table(spec, path, cuped)
    return analyze_stats(spec, stats, None, method or spec.analysis.method)


def analyze_on_spark(
    spec: ExperimentSpec,
    data_dir: str | Path | None = None,
    overrides: Mapping[str, DataPath] | None = None,
    cuped: bool = True,
    method: Method | None = None,
) -> Analysis:
    """The analysis with the aggregation run by Spark (:mod:`promolab.aggregate.spark`)."""
    from promolab.aggregate.spark import spark_stats

    stats = spark_stats(spec, data_paths(spec, data_dir, overrides), cuped)
    return analyze_stats(spec, stats, None, method or spec.analysis.method)


def analyze_stats(
    spec: ExperimentSpec, stats: ExperimentStats, residual_pass: Any = None, method: Method | None = None
) -> Analysis:
    """The analysis from per-arm statistics alone. Regression adjustment needs the arms' power sums, or
    ``residual_pass`` (a second pass over the units) when they are absent or would cancel."""
    method = method or spec.analysis.method
    check_sample(spec, stats)
    declared, spec = spec, expand(spec)
    counts = {arm: s.moments.n for arm, s in stats.arms.items()}
    srm = srm_test(counts, {v.id: v.weight for v in spec.variants})
    paired = lift_results(spec, stats, residual_pass)
    guardrails = guardrail_results(spec, paired)
    results = [result for result, _ in paired]
    lifts, heterogeneity = segment_lifts(spec, stats)
    bayes = None
    if method != "frequentist":
        from promolab.analyze.bayesian import bayes_results

        bayes = bayes_results(spec, stats)
    return Analysis(
        experiment=spec.id,
        spec_hash=spec_hash(declared),
        version=__version__,
        reference=spec.reference.id,
        srm=srm,
        results=results,
        guardrails=guardrails,
        caps=dict(stats.caps),
        covariates=tuple(c.removeprefix("cov:") for c in stats.covariates),
        method=method,
        bayes=bayes,
        arms={arm: s.moments for arm, s in stats.arms.items()},
        segments=lifts,
        heterogeneity=heterogeneity,
    )


def _dataclass[T](cls: type[T], data: Mapping[str, Any]) -> T:
    """A result dataclass from its JSON row: its own fields only, JSON lists back to tuples."""
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields})


def _bayes_from_dict(data: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> BayesAnalysis:
    from promolab.analyze.bayesian import BayesAnalysis, BayesGuardrail, BayesResult
    from promolab.analyze.segments import SegmentResult

    results = [
        _dataclass(BayesResult, {**row["bayes"], "metric": row["metric"], "variant": row["variant"]})
        for row in rows
        if row.get("bayes") is not None
    ]
    return BayesAnalysis(
        hdi_prob=data["hdi_prob"],
        rope=data["rope"],
        threshold=data["threshold"],
        results=results,
        guardrails=[_dataclass(BayesGuardrail, g) for g in data["guardrails"]],
        segments=[_dataclass(SegmentResult, s) for s in data["segments"]],
    )


MIN_UNITS = 2  # per arm: a variance (ddof 1) needs two values


def check_sample(spec: ExperimentSpec, stats: ExperimentStats) -> None:
    """Enough units for every estimate: each arm of the spec present with >= 2 units, >= 2 responses per
    arm for each ordinal metric, and more units than the regression adjustment has parameters.

    Raises:
        DataError: naming the arm and metric, with the code ``TOO_FEW_UNITS``.
    """
    problems = []
    missing = [v.id for v in spec.variants if v.id not in stats.arms]
    if missing:
        raise DataError(f"arm(s) {', '.join(missing)} have no statistics (EMPTY_ARM)")
    for arm, arm_stats in stats.arms.items():
        if arm_stats.moments.n < MIN_UNITS:
            problems.append(
                f"arm '{arm}' has {arm_stats.moments.n} unit(s); every arm needs at least {MIN_UNITS} to "
                "estimate a variance (TOO_FEW_UNITS)"
            )
        for metric, histogram in arm_stats.histograms.items():
            if histogram.n < MIN_UNITS:
                problems.append(
                    f"metric '{metric}': arm '{arm}' has {histogram.n} response(s); a mean score needs at "
                    f"least {MIN_UNITS} per arm (TOO_FEW_UNITS)"
                )
    total = sum(s.moments.n for s in stats.arms.values())
    slopes = len(stats.covariates) + bool(stats.own)  # the shared covariates and a pre-period value
    if slopes and total <= len(stats.arms) + slopes:
        problems.append(
            f"{total} units cannot fit {len(stats.arms)} arm means and {slopes} covariate "
            "slope(s) (TOO_FEW_UNITS); analyse without covariates (--no-cuped)"
        )
    if problems:
        raise DataError(problems)
