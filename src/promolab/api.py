"""The notebook API, the shape of the CLI: ``promolab.analyze(spec, data={...})``, ``promolab.design(spec)``,
``promolab.monitor(spec, data={...})``.

``promolab.analyze`` returns an :class:`Experiment`: the analysis (``.analysis``, and its table through
``to_frame()`` / ``to_markdown()`` / ``_repr_html_``), ``.economics()``, ``.decision`` and
``.report(folder)``, each computed once from the stage before it, exactly as ``promolab analyze`` and
``promolab report`` compute them.

``data`` maps data names (``assignments``, ``units`` and the spec's event tables) to pandas DataFrames or
files. A spec used only from a notebook may leave out its ``data`` block: one is made from ``data``'s
names (``unit_id``, ``variant_column`` and ``timestamp`` name the columns).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promolab.spec import ExperimentSpec, RolloutSpec, load, load_spec, spec_from_dict

if TYPE_CHECKING:
    import pandas as pd

    from promolab.analyze import Analysis
    from promolab.analyze.rollout import RolloutAnalysis
    from promolab.analyze.run import Method
    from promolab.decision import Decision
    from promolab.design.plan import DesignPlan
    from promolab.economics import PromotionEconomics
    from promolab.economics.rollout import RolloutEconomics
    from promolab.sources import DataPath

type SpecLike = ExperimentSpec | str | Path | Mapping[str, Any]
type DataLike = Mapping[str, "pd.DataFrame | str | Path"]
RESERVED = ("assignments", "units")


@dataclass(frozen=True)
class Experiment:
    """One analysed experiment: its spec, its analysis, and the later stages on demand."""

    spec: ExperimentSpec
    analysis: Analysis
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def economics(self) -> PromotionEconomics | None:
        """Incremental revenue, margin, costs, ROI with intervals (None without an economics block)."""
        if "economics" not in self._cache:
            from promolab.economics import evaluate

            self._cache["economics"] = evaluate(self.spec, self.analysis)
        found: PromotionEconomics | None = self._cache["economics"]
        return found

    @cached_property
    def decision(self) -> Decision:
        """The spec's decision rule: a verdict per arm and one for the experiment."""
        from promolab.decision import decide

        return decide(self.spec, self.analysis, self.economics())

    def report(self, folder: str | Path) -> dict[str, Path]:
        """Write the HTML, Markdown and JSON report as ``folder/<id>/``; the paths by format."""
        from promolab.report import write_report

        draws = self.analysis.bayes.draws if self.analysis.bayes is not None else None
        return write_report(self.spec, self.analysis, folder, draws).paths

    def to_dicts(self) -> list[dict[str, Any]]:
        return self.analysis.to_dicts()

    def to_frame(self) -> pd.DataFrame:
        return self.analysis.to_frame()

    def to_markdown(self) -> str:
        lines = [f"**{self.decision.action.upper()}** · {self.decision.reason}", ""]
        lines += [f"- {arm.line}" for arm in self.decision.arms]
        return "\n".join(lines) + "\n\n" + self.analysis.to_markdown()

    def _repr_html_(self) -> str:
        import html

        verdicts = "".join(f"<li>{html.escape(arm.line)}</li>" for arm in self.decision.arms)
        head = f"<p><strong>{self.decision.action.upper()}</strong> · {html.escape(self.decision.reason)}</p>"
        return f"{head}<ul>{verdicts}</ul>{self.analysis.to_html()}"


def analyze(
    spec: SpecLike,
    data: DataLike | None = None,
    *,
    data_dir: str | Path | None = None,
    method: Method | None = None,
    cuped: bool = True,
    daily: bool = False,
    unit_id: str = "unit_id",
    variant_column: str = "variant",
    timestamp: str | None = None,
) -> Experiment:
    """Analyse an experiment from a notebook (``promolab analyze`` as a function).

    Args:
        spec: a spec file, a mapping as a spec file would hold, or a loaded spec.
        data: data name -> DataFrame or file, replacing (or, without a ``data`` block, making) the spec's.
        data_dir: folder the spec's relative data paths resolve against.
        method: ``frequentist``, ``bayesian`` or ``both`` (default: the spec's).
        cuped: adjust for the spec's covariates.
        daily: also the primary metric's cumulative mean by day.
        unit_id: the unit id column, for a spec without a ``data`` block.
        variant_column: the arm column of the assignments, for a spec without a ``data`` block.
        timestamp: the date column of event tables, for a spec without a ``data`` block.
    """
    from promolab.analyze.run import analyze_spec

    data = dict(data or {})
    loaded = _spec(spec, data, {"unit_id": unit_id, "variant_column": variant_column, "timestamp": timestamp})
    frames = {name: value for name, value in data.items() if not isinstance(value, str | Path)}
    files = {name: _data_path(value) for name, value in data.items() if isinstance(value, str | Path)}
    analysis = analyze_spec(loaded, data_dir, files, frames, cuped=cuped, method=method, daily=daily)
    return Experiment(loaded, analysis)


@dataclass(frozen=True)
class Rollout:
    """One analysed rollout (a promotion that was not randomised): spec, analysis, money, decision."""

    spec: RolloutSpec
    analysis: RolloutAnalysis

    @cached_property
    def economics(self) -> RolloutEconomics | None:
        """Incremental units, revenue, margin, cost, ROI with intervals (None without a unit price)."""
        from promolab.economics.rollout import rollout_economics

        return rollout_economics(self.spec, self.analysis)

    @cached_property
    def decision(self) -> Decision:
        from promolab.decision import decide_rollout

        return decide_rollout(self.spec, self.analysis, self.economics)

    def report(self, folder: str | Path) -> dict[str, Path]:
        """Write the HTML, Markdown and JSON report as ``folder/<id>/``; the paths by format."""
        from promolab.report.rollout import write_rollout_report

        return write_rollout_report(self.spec, self.analysis, folder)[0]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.analysis.to_dict()["results"])


def rollout(
    spec: RolloutSpec | str | Path,
    panel: pd.DataFrame | str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
) -> Rollout:
    """Analyse a rollout from a notebook (``promolab analyze`` of a rollout spec as a function).

    Args:
        spec: a rollout spec file or a loaded rollout spec.
        panel: the panel as a DataFrame or file (default: the spec's ``data.panel``).
        data_dir: folder the spec's relative panel path resolves against.
    """
    from promolab.analyze.rollout import analyze_rollout
    from promolab.errors import Problem, SpecError
    from promolab.sources import data_paths

    loaded = spec if isinstance(spec, RolloutSpec) else load(spec)
    if not isinstance(loaded, RolloutSpec):
        raise SpecError(
            [Problem((), "not a rollout spec (no 'rollout' block): use promolab.analyze")], str(spec)
        )
    if panel is None:
        source: pd.DataFrame | DataPath = data_paths(loaded, data_dir)["panel"]
    else:
        source = _data_path(panel) if isinstance(panel, str | Path) else panel
    return Rollout(loaded, analyze_rollout(loaded, source))


def monitor(
    spec: SpecLike,
    data: DataLike | None = None,
    *,
    data_dir: str | Path | None = None,
    state: str | Path | None = None,
    rebuild: bool = False,
    cuped: bool = True,
    through: dt.date | None = None,
    unit_id: str = "unit_id",
    variant_column: str = "variant",
    timestamp: str | None = None,
) -> dict[str, Any]:
    """Every look at a running test (``promolab monitor`` as a function): ``looks`` (each with its
    results per metric and arm and its action), ``verdict`` and ``stopped_on``; the arguments as for
    :func:`analyze`, and ``state``, ``rebuild``, ``through`` as the command's options."""
    from promolab.analyze.monitor import monitor_spec

    data = dict(data or {})
    loaded = _spec(spec, data, {"unit_id": unit_id, "variant_column": variant_column, "timestamp": timestamp})
    frames = {name: value for name, value in data.items() if not isinstance(value, str | Path)}
    files = {name: _data_path(value) for name, value in data.items() if isinstance(value, str | Path)}
    where = None if state is None else Path(state)
    return monitor_spec(loaded, data_dir, files, where, rebuild, cuped, through, frames)


def design(spec: SpecLike) -> DesignPlan:
    """The spec's design (``promolab design`` as a function): units per arm, duration, MDE, power."""
    from promolab.design.plan import plan_design

    return plan_design(_spec(spec, _named_in(spec), {}))


def _named_in(spec: SpecLike) -> dict[str, None]:
    """The data names a spec mapping's metrics read (planning reads no data, but a spec names it)."""
    metrics = spec.get("metrics", []) if isinstance(spec, Mapping) else []
    sources = {m.get("source") for m in metrics if isinstance(m, Mapping)} - {None, "units"}
    return dict.fromkeys(["assignments", *sorted(str(s) for s in sources)])


def _spec(spec: SpecLike, data: Mapping[str, Any], columns: Mapping[str, Any]) -> ExperimentSpec:
    """A validated spec; a ``data`` block made from ``data``'s names when the spec has none."""
    if isinstance(spec, ExperimentSpec):
        return spec
    default = _data_block(data, columns) if data else None
    if isinstance(spec, Mapping):
        raw = dict(spec)
        if default is not None and "data" not in raw:
            raw["data"] = default
        return spec_from_dict(raw)
    return load_spec(spec, default)


def _data_block(data: Mapping[str, Any], columns: Mapping[str, Any]) -> dict[str, Any]:
    """A spec ``data`` block naming every given table (paths are placeholders: the frames replace them)."""
    block: dict[str, Any] = {k: v for k, v in columns.items() if v is not None}
    block |= {name: f"{name}.parquet" for name in RESERVED if name in data}
    block["tables"] = {name: f"{name}.parquet" for name in data if name not in RESERVED}
    return block


def _data_path(value: str | Path) -> DataPath:
    """A file given by path or URI (a URI stays one: ``Path`` would turn ``s3://b`` into ``s3:/b``)."""
    from promolab.sources import data_path

    return data_path(value) if isinstance(value, str) else value
