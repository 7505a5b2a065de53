"""The CLI commands' rollout branch: a spec with a ``rollout`` block is simulated, designed, analysed
and reported by the quasi-experimental pipeline (:mod:`promolab.analyze.rollout`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from promolab.cli.console import err, out, plain
from promolab.cli.output import print_table, write_json
from promolab.errors import PromolabError, printable
from promolab.sources import DataPath
from promolab.spec.rollout import RolloutSpec


def summary(spec: RolloutSpec) -> str:
    """What ``validate`` prints beside a rollout spec."""
    treated = spec.rollout.treated
    units = f"column '{treated.column}'" if not isinstance(treated, tuple) else f"{len(treated)} treated"
    return f"({spec.id}: rollout, {units}, method {spec.rollout.method}, {len(spec.metrics)} metrics)"


def simulate(spec: RolloutSpec, target: Path, out_dir: Path, units: int | None, seed: int) -> None:
    """Write a simulated panel to ``target`` (where ``--data-dir`` finds the spec's ``data.panel``)."""
    from promolab.io import write_table
    from promolab.simulate.rollout import simulate_rollout

    try:
        frame = simulate_rollout(spec, seed, units)
    except ValueError as error:
        raise PromolabError(str(error)) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    write_table(target, frame)
    out.print(f"{'panel':<12} {len(frame):>10,} rows  {plain(target)}")
    err.print(f"analyse with --data-dir {plain(out_dir)}", style="dim")


def design(spec: RolloutSpec, panel: DataPath, json_out: Path | None) -> None:
    """Placebo backtests on the history before ``start`` and the control ranking."""
    from promolab.analyze.backtest import rollout_design

    plan = rollout_design(spec, panel)
    rows: list[list[Any]] = [
        ["method", plan["method"]],
        ["history periods", plan["history_periods"]],
        ["placebo backtests", plan["backtests"]],
        ["placebo rms error", plan["placebo_rms_error"]],
        ["mde per unit and period", plan["mde"]],
        ["mde_rel", plan["mde_relative"]],
        ["false positive share", plan["false_positive_rate"]],
    ]
    print_table(f"{spec.id}: design on '{plan['metric']}' ({plan['reason']})", ["quantity", "value"], rows)
    controls = [[c["unit"], c["correlation"], c["weight"]] for c in plan["controls"]]
    if controls:
        print_table("best-matching untreated units", ["unit", "correlation", "weight_share"], controls)
    if json_out is not None:
        write_json(json_out, plan)


def analyze(spec: RolloutSpec, panel: DataPath, json_out: Path | None) -> None:
    """Estimate, decide and print; the JSON has the analysis, economics and decision."""
    from promolab.analyze.rollout import analyze_rollout
    from promolab.decision import decide_rollout
    from promolab.economics.rollout import rollout_economics

    analysis = analyze_rollout(spec, panel)
    economics = rollout_economics(spec, analysis)
    decision = decide_rollout(spec, analysis, economics)
    rows = [
        [
            r.metric,
            r.period,
            r.att,
            _pair(r.att_ci),
            r.total,
            r.rel_lift,
            _pair(r.rel_ci, "percent"),
            r.p_value,
        ]
        for r in analysis.results
    ]
    columns = ["metric", "window", "att", "att_ci", "total", "rel_lift", "rel_ci", "p_value"]
    print_table(f"{spec.id}: {analysis.method} ({analysis.reason})", columns, rows)
    if economics is not None:
        money = [
            [k, _shown(k, q.value), _pair(q.ci, "percent" if k == "roi" else "number")]
            for k, q in economics.quantities.items()
        ]
        print_table(
            f"money ({economics.currency}, {economics.window} window)",
            ["quantity", "value", "interval"],
            money,
        )
    out.print(f"evidence: {analysis.evidence}")
    for doubt in analysis.doubts:
        out.print(f"  [bold red]{plain(doubt)}[/bold red]")
    out.print(f"{decision.action.upper()}: {plain(decision.reason)}")
    out.print(f"  {plain(decision.arms[0].line)}")
    if json_out is not None:
        payload = analysis.to_dict() | {"economics": economics.to_dict() if economics else None}
        write_json(json_out, payload | {"decision": decision.to_dict()})


def _check_saved(spec: RolloutSpec, analysis: Any, results: Path) -> None:
    """The saved analysis is this spec's, with every metric in every window the spec measures; a
    warning when it was made from another version of the spec (the report then says so)."""
    from promolab.errors import DataError
    from promolab.spec import spec_hash

    where = printable(results)
    if analysis.experiment != spec.id:
        raise DataError(f"{where}: holds the analysis of '{analysis.experiment}', not {spec.id}")
    windowed = spec.post_days and not analysis.diagnostics.get("staggered")
    periods = ("during", "post", "total") if windowed else ("during",)
    missing = [f"{m.id} ({p})" for m in spec.metrics for p in periods if analysis.result(m.id, p) is None]
    if missing:
        raise DataError(
            f"{where}: has no result for {', '.join(missing[:5])}: the spec changed since; rerun "
            "`promolab analyze --json`"
        )
    if analysis.spec_hash != spec_hash(spec):
        err.print(
            f"warning: {where} was made from another version of {spec.id}'s spec; the report says so "
            "(rerun `promolab analyze --json` for numbers of this version)",
            markup=False,
        )


def _pair(ci: tuple[float, float] | None, style: str = "number") -> str | None:
    from promolab import format as text

    if ci is None:
        return None
    return (
        text.interval(ci[0], ci[1], style, signed=True)
        if style == "percent"
        else text.interval(ci[0], ci[1], style)
    )


def _shown(quantity: str, value: float | None) -> str | float | None:
    """ROI as a signed percent; every other quantity as the table formats numbers."""
    from promolab import format as text

    return text.percent(value, 1, signed=True) if quantity == "roi" else value


def report(spec: RolloutSpec, out_dir: Path, results: Path | None, panel: DataPath | None) -> dict[str, Any]:
    """Write the rollout's report from saved results or a fresh analysis; its decision."""
    from promolab.analyze.rollout import RolloutAnalysis, analyze_rollout
    from promolab.report import malformed
    from promolab.report.rollout import write_rollout_report

    if results is not None:
        with malformed(results, "rollout analysis", "rerun `promolab analyze --json`"):
            analysis = RolloutAnalysis.from_dict(json.loads(results.read_text(encoding="utf-8")))
            _check_saved(spec, analysis, results)
            paths, decision = write_rollout_report(spec, analysis, out_dir)
    else:
        assert panel is not None
        paths, decision = write_rollout_report(spec, analyze_rollout(spec, panel), out_dir)
    for path in paths.values():
        err.print(f"wrote {plain(path)}")
    return decision
