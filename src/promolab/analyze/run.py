"""``analyze_spec``: the spec's data aggregated once, then every estimate from the statistics alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promolab import __version__
from promolab.aggregate.moments import ExperimentStats
from promolab.analyze.frequentist import (
    GuardrailResult,
    LiftResult,
    Verdict,
    decide,
    guardrail_results,
    lift_results,
)
from promolab.design.srm import SrmResult, srm_test
from promolab.sources import data_paths
from promolab.spec import ExperimentSpec, spec_hash

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Analysis:
    """Everything one analysis produced, and what produced it."""

    experiment: str
    spec_hash: str
    version: str
    srm: SrmResult
    results: list[LiftResult]
    guardrails: list[GuardrailResult]
    verdict: Verdict
    caps: dict[str, float]
    covariates: tuple[str, ...]

    def to_dicts(self) -> list[dict[str, Any]]:
        """One mapping per metric x treatment arm (the JSON ``results``)."""
        return [asdict(result) for result in self.results]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.to_dicts())

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload of ``promolab analyze --json``."""
        return {
            "experiment": self.experiment,
            "spec_hash": self.spec_hash,
            "promolab_version": self.version,
            "srm": {**self.srm.to_dict(), "flag": self.srm.flag is not None, "code": self.srm.flag},
            "covariates": list(self.covariates),
            "caps": self.caps,
            "results": self.to_dicts(),
            "guardrails": [asdict(g) for g in self.guardrails],
            "decision": asdict(self.verdict),
        }


def analyze_spec(
    spec: ExperimentSpec,
    data_dir: str | Path | None = None,
    overrides: Mapping[str, Path] | None = None,
    frames: Mapping[str, pd.DataFrame] | None = None,
    cuped: bool = True,
) -> Analysis:
    """Analyse the spec's data (files, or pandas DataFrames by data name in ``frames``).

    Args:
        spec: the experiment.
        data_dir: folder the spec's relative data paths resolve against.
        overrides: data name -> file, replacing the spec's path.
        frames: data name -> DataFrame, used instead of files.
        cuped: adjust for ``analysis.covariates`` when the spec declares some.
    """
    from promolab.aggregate.duck import aggregate

    covariates = spec.analysis.covariates if cuped else ()
    paths = data_paths(spec, data_dir, overrides)
    aggregation = aggregate(spec, paths, frames, covariates)
    return analyze_stats(spec, aggregation.stats, aggregation.residual_moments)


def analyze_stats(spec: ExperimentSpec, stats: ExperimentStats, residual_pass: Any = None) -> Analysis:
    """The analysis from per-arm statistics alone (``residual_pass`` enables regression adjustment)."""
    counts = {arm: s.moments.n for arm, s in stats.arms.items()}
    srm = srm_test(counts, {v.id: v.weight for v in spec.variants})
    paired = lift_results(spec, stats, residual_pass)
    guardrails = guardrail_results(spec, paired)
    results = [result for result, _ in paired]
    return Analysis(
        experiment=spec.id,
        spec_hash=spec_hash(spec),
        version=__version__,
        srm=srm,
        results=results,
        guardrails=guardrails,
        verdict=decide(spec, results, guardrails, srm),
        caps=dict(stats.caps),
        covariates=tuple(c.removeprefix("cov:") for c in stats.covariates),
    )
