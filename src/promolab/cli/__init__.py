"""The ``promolab`` command line: one sub-command per pipeline step.

Exit codes are API: 0 ok; 1 ran but the verdict failed; 2 usage, spec or data error (printed on
stderr, one line per problem, no traceback). Machine output goes to stdout or ``--json`` files;
logs and progress go to stderr. Heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from promolab import __version__
from promolab.cli.console import err, out
from promolab.errors import PromolabError, SpecError
from promolab.spec import load_spec
from promolab.spec.loader import SPEC_SUFFIXES

EXIT_USAGE = 2


class FileFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


class _ProblemLinesError(PromolabError):
    """Pre-rendered problem lines, possibly from several files."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))


class _Group(TyperGroup):
    """Turns promolab's own errors into one line per problem on stderr and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PromolabError as error:
            for line in str(error).splitlines():
                err.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None


app = typer.Typer(
    cls=_Group,
    name="promolab",
    help="Marketing experiments as code: validate, design, assign, simulate, analyze, report, review.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        out.print(f"promolab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """promolab: decision-ready answers for marketing experiments."""


SpecsArg = Annotated[
    list[Path],
    typer.Argument(help="Spec files (.yaml, .yml, .toml) or folders of them.", show_default=False),
]


@app.command()
def validate(specs: SpecsArg) -> None:
    """Check specs (every problem at once); their data files need not exist yet."""
    files = _spec_files(specs)
    problems: list[str] = []
    ids: dict[str, Path] = {}
    for path in files:
        try:
            spec = load_spec(path)
        except SpecError as error:
            problems.extend(str(error).splitlines())
            continue
        if spec.id in ids:
            problems.append(f"{path}: id: '{spec.id}' is also the id of {ids[spec.id]}")
        ids[spec.id] = path
        out.print(
            f"ok  {path}  [dim]({spec.id}: {len(spec.variants)} arms, {len(spec.metrics)} metrics)[/dim]"
        )
    if problems:
        raise _ProblemLinesError(problems)


@app.command()
def schema() -> None:
    """Print the JSON Schema of experiment specs (for editor autocompletion)."""
    from promolab.spec.models import ExperimentSpec

    print(json.dumps(ExperimentSpec.model_json_schema(), indent=2))


@app.command()
def simulate(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the tables into.")],
    units: Annotated[int, typer.Option(min=2, help="Number of units to simulate.")] = 100_000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same data).")] = 0,
    file_format: Annotated[
        FileFormat | None,
        typer.Option("--format", help="Force a file format (default: each spec path's suffix)."),
    ] = None,
) -> None:
    """Write realistic simulated data for SPEC where its data block names the files."""
    from promolab.simulate import simulate as run
    from promolab.simulate import write_simulated

    spec = load_spec(spec_path)
    data = run(spec, units=units, seed=seed)
    written = write_simulated(data, spec, out_dir, fmt=file_format.value if file_format else None)
    for name, path in written.items():
        out.print(f"{name:<12} {data.tables[name].num_rows:>10,} rows  {path}")
    err.print(f"[dim]analyse with --data-dir {out_dir}[/dim]")


@app.command()
def design(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    pre_period: Annotated[
        Path | None,
        typer.Option(help="Per-unit pre-period values (a column per metric id; covariates; cluster)."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan as JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the power curve here (.png or .svg).")] = None,
) -> None:
    """Sample size per arm, duration, MDE, power and break-even lifts of SPEC."""
    from promolab.cli.output import print_table, write_json
    from promolab.design.estimates import read_pre_period
    from promolab.design.plan import plan_design

    spec = load_spec(spec_path)
    frame = read_pre_period(pre_period) if pre_period is not None else None
    plan = plan_design(spec, frame, source=str(pre_period))
    rows: list[list[Any]] = [
        [arm, n, plan.mde_relative if arm != plan.reference else None] for arm, n in plan.per_arm.items()
    ]
    print_table(f"{spec.id}: design on '{plan.metric}'", ["arm", "units", "mde_rel"], rows)
    summary: list[list[Any]] = [
        ["total units", plan.total],
        ["days", plan.days],
        ["power", plan.power],
        ["alpha per comparison", plan.alpha_per_comparison],
        ["variance factor", plan.variance_factor],
    ]
    print_table("", ["quantity", "value"], summary)
    if plan.break_even:
        rows = [
            [arm, b.flag or b.relative_lift, b.metric_relative_lift, b.power, b.test_cost]
            for arm, b in plan.break_even.items()
        ]
        columns = ["arm", "break_even_lift", "metric_break_even_lift", "power_at_break_even", "test_cost"]
        print_table("break-even (units sold; on the metric)", columns, rows)
    if json_out is not None:
        write_json(json_out, plan.to_dict())
    if plot is not None:
        from promolab.design.curve import save_power_curve

        save_power_curve(plan, plot)
        err.print(f"wrote {plot}")


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Resolve the spec's relative data paths here (e.g. simulated data)."),
]
DataOption = Annotated[
    list[str] | None,
    typer.Option("--data", metavar="NAME=PATH", help="Use PATH for the spec's data file NAME (repeatable)."),
]


@app.command()
def assign(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Write unit_id, variant, bucket here (.parquet or .csv).")
    ],
    units: Annotated[
        Path | None,
        typer.Option(help="Units to assign (default: the spec's units file, else its assignments file)."),
    ] = None,
    data_dir: DataDirOption = None,
    data: DataOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the balance report here.")] = None,
) -> None:
    """Assign every unit of a file to an arm by deterministic hashing; report SRM and covariate balance."""
    from promolab.cli.output import print_table, write_json
    from promolab.design.assign_spec import assign_spec, assignment_balance, unit_columns
    from promolab.io import write_table
    from promolab.sources import column_names, data_paths, parse_overrides, read_frame

    spec = load_spec(spec_path)
    if units is None:
        paths = data_paths(spec, data_dir, parse_overrides(data or []))
        units = paths.get("units") or paths["assignments"]
    if out_file.suffix.lower() not in (".parquet", ".csv"):
        raise PromolabError(f"--out {out_file}: must end in .parquet or .csv")
    if out_file.resolve() == units.resolve():
        raise PromolabError(f"--out {out_file}: is the units file; promolab never overwrites its input")
    available = column_names(units, "units")
    covariates = [c for c in spec.analysis.covariates if c in available]
    frame = read_frame(units, "units", unit_columns(spec, covariates))
    try:
        assignment = assign_spec(spec, frame)
    except ValueError as error:
        raise PromolabError(f"{spec_path}: {error}") from None
    write_table(out_file, assignment.table)
    report = assignment_balance(spec, assignment, frame, covariates)
    title = f"{spec.id}: {len(frame):,} units, method {assignment.method}, salt '{assignment.salt}'"
    rows = [
        [
            r["variant"],
            r["units"],
            r["expected_share"],
            r["observed_share"],
            r["max_abs_smd"],
            r["worst_covariate"],
        ]
        for r in report.to_dicts()
    ]
    print_table(title, ["variant", "count", "expected", "observed", "max_abs_smd", "worst"], rows)
    srm = report.srm
    verdict = f"[bold red]{srm.flag}[/bold red]" if srm.flag else "ok"
    out.print(f"SRM chi2 = {srm.chi2:.3g}, df = {srm.df}, p = {srm.p_value:.3g}: {verdict}")
    missing = [c for c in spec.analysis.covariates if c not in available]
    if missing:
        err.print(f"[dim]covariates not in {units.name}, not checked: {', '.join(missing)}[/dim]")
    err.print(f"wrote {out_file}")
    if json_out is not None:
        payload = {
            "experiment": spec.id,
            "units_file": str(units),
            "salt": assignment.salt,
            "method": assignment.method,
            "srm": srm.to_dict(),
            "arms": report.to_dicts(),
            "smd": report.smd.to_dict(orient="records"),
        }
        write_json(json_out, payload)


class Method(StrEnum):
    frequentist = "frequentist"
    bayesian = "bayesian"
    both = "both"


@app.command()
def analyze(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    data_dir: DataDirOption = None,
    data: DataOption = None,
    method: Annotated[
        Method | None, typer.Option(help="Inference method (default: the spec's analysis.method).")
    ] = None,
    cuped: Annotated[
        bool, typer.Option("--cuped/--no-cuped", help="Adjust for the spec's analysis.covariates.")
    ] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    draws_out: Annotated[
        Path | None,
        typer.Option("--draws", help="Write the posterior draws of every arm's mean here (Parquet or CSV)."),
    ] = None,
    daily: Annotated[
        bool, typer.Option(help="Also the primary metric's cumulative mean by day, for the report.")
    ] = False,
) -> None:
    """Lifts with confidence intervals for every metric and arm, guardrails, SRM check and verdict."""
    from promolab.analyze import analyze_spec
    from promolab.cli.output import print_analysis, write_json
    from promolab.sources import parse_overrides

    spec = load_spec(spec_path)
    chosen = spec.analysis.method if method is None else method.value
    if draws_out is not None and chosen == "frequentist":
        raise PromolabError("--draws needs the Bayesian engine: add --method bayesian (or both)")
    if draws_out is not None and draws_out.suffix.lower() not in (".parquet", ".csv"):
        raise PromolabError(f"--draws {draws_out}: must end in .parquet or .csv")
    analysis = analyze_spec(
        spec, data_dir, parse_overrides(data or []), cuped=cuped, method=chosen, daily=daily
    )
    print_analysis(analysis)
    if json_out is not None:
        write_json(json_out, analysis.to_dict())
    if draws_out is not None and analysis.bayes is not None:
        from promolab.io import write_table

        write_table(draws_out, analysis.bayes.draws_frame())


@app.command()
def report(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for <id>.html, .md and .json.")],
    results: Annotated[
        Path | None,
        typer.Option(help="Analysis JSON from `promolab analyze --json` (else the data is analysed now)."),
    ] = None,
    draws_in: Annotated[
        Path | None,
        typer.Option("--draws", help="Posterior draws from `promolab analyze --draws`, used with --results."),
    ] = None,
    data_dir: DataDirOption = None,
    data: DataOption = None,
    method: Annotated[
        Method | None, typer.Option(help="Inference method (default: the spec's analysis.method).")
    ] = None,
) -> None:
    """Promotion-effect and ROI report of one experiment: HTML (plots embedded), Markdown and JSON."""
    from promolab.report import load_draws, load_results, malformed, write_report

    spec = load_spec(spec_path)
    if draws_in is not None and results is None:
        raise PromolabError("--draws goes with --results (without --results the analysis runs now)")
    if method is not None and results is not None:
        raise PromolabError("--method applies when report analyses the data; --results already has a method")
    draws = None
    if results is not None:
        payload, warning = load_results(results, spec)
        if warning is not None:
            err.print(f"warning: {warning}", markup=False, highlight=False)
        draws = load_draws(draws_in, spec) if draws_in is not None else None
    else:
        from promolab.analyze import analyze_spec
        from promolab.sources import parse_overrides

        chosen = spec.analysis.method if method is None else method.value
        analysis = analyze_spec(spec, data_dir, parse_overrides(data or []), method=chosen, daily=True)
        payload = analysis.to_dict()
        draws = analysis.bayes.draws if analysis.bayes is not None else None
    if results is None:
        paths = write_report(spec, payload, out_dir, draws)
    else:
        with malformed(results, "analysis", "rerun `promolab analyze --json`"):
            paths = write_report(spec, payload, out_dir, draws)
    decision = json.loads(paths["json"].read_text(encoding="utf-8"))["decision"]
    out.print(f"{decision['action'].upper()}: {decision['reason']}", markup=False, highlight=False)
    for path in paths.values():
        err.print(f"wrote {path}", markup=False, highlight=False)


@app.command()
def review(
    specs: SpecsArg,
    quarter: Annotated[
        str, typer.Option(help="Quarter as YYYYQn, e.g. 2026Q1 (by the specs' end dates), or 'all'.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for review-<quarter>.html, .md, .json.")
    ],
    reports: Annotated[
        Path | None, typer.Option(help="Folder of the <id>.json reports (default: the --out folder).")
    ] = None,
) -> None:
    """Quarterly promotion review: portfolio, totals, ROI ranking and pooled mechanic effects."""
    from promolab.report import write_review
    from promolab.report.review import quarter_of

    loaded = [load_spec(path) for path in _spec_files(specs)]
    quarters = sorted({quarter_of(s.end) for s in loaded}) if quarter == "all" else [quarter]
    for label in quarters:
        paths = write_review(loaded, label, reports or out_dir, out_dir)
        for path in paths.values():
            err.print(f"wrote {path}", markup=False, highlight=False)


def _spec_files(paths: list[Path]) -> list[Path]:
    """Expand folders to the spec files inside them (sorted); reject anything else."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SPEC_SUFFIXES)
            if not found:
                raise _ProblemLinesError(
                    [f"{path}: no spec files ({', '.join(SPEC_SUFFIXES)}) in this folder"]
                )
            files.extend(found)
        else:
            files.append(path)
    return files


def main() -> None:
    """Console-script entry point."""
    app()
