"""The ``promolab`` command line: one sub-command per pipeline step.

Exit codes are API: 0 ok; 1 ran, but the decision is one that ``report --fail-on`` asked to fail on;
2 usage, spec, data or output error (printed on stderr, one line per problem, no traceback); 3 an
internal error (a bug: one line, and the traceback with ``PROMOLAB_DEBUG=1``). Machine output goes to
stdout or ``--json`` files; logs, warnings and progress go to stderr. No command writes over one of its
inputs. Heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperGroup

from promolab import __version__
from promolab.cli.console import err, out, plain
from promolab.errors import DataError, OutputError, PromolabError, SpecError, printable
from promolab.io import check_outputs, check_writable, same_file
from promolab.spec import RolloutSpec, load
from promolab.spec.loader import SPEC_SUFFIXES, absolute

if TYPE_CHECKING:
    from promolab.analyze import Analysis
    from promolab.analyze.run import Method as Chosen
    from promolab.decision import Decision
    from promolab.economics import PromotionEconomics
    from promolab.sources import DataPath
    from promolab.spec import ExperimentSpec

EXIT_VERDICT = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
TABLE_SUFFIXES = (".parquet", ".csv")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


class Engine(StrEnum):
    duckdb = "duckdb"
    spark = "spark"


class FileFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


class _ProblemLinesError(PromolabError):
    """Pre-rendered problem lines, possibly from several files."""


class _Group(TyperGroup):
    """Turns every failure into one line per problem on stderr: usage errors, promolab's own errors and
    file-system errors exit 2; anything else is a bug (exit 3)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode") is False:  # a caller that handles errors and exit codes itself
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False  # errors come back here, to be printed as one line
        try:
            with warnings.catch_warnings():
                # numpy's overflow and invalid-value warnings: every result is checked for finiteness
                # and refused with a clear error, so the warning would only be noise before it
                warnings.simplefilter("ignore", RuntimeWarning)
                warnings.filterwarnings("ignore", module=r"(numpy|scipy|pandas|pytensor|pymc|arviz|pyspark)")
                code = super().main(*args, **kwargs)
        except typer.Abort:
            _print_errors(["aborted"])
            raise SystemExit(EXIT_USAGE) from None
        except typer.TyperException as error:  # a usage error: a bad option or argument
            ctx = getattr(error, "ctx", None)
            if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:
                out.print(ctx.get_help())
                raise SystemExit(EXIT_USAGE) from None
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            _print_errors([f"{message}{hint}"])
            raise SystemExit(getattr(error, "exit_code", EXIT_USAGE)) from None
        raise SystemExit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PromolabError as error:
            _fail(error.lines, EXIT_USAGE)
        except OSError as error:  # a file system refusing: permissions, a full disk, a symlink loop
            place = f"{printable(error.filename)}: " if error.filename else ""
            _fail([f"{place}{error.strerror or type(error).__name__}"], EXIT_USAGE)
        except MemoryError:
            _fail(["out of memory: the input is too large for this machine"], EXIT_USAGE)
        except (typer.TyperException, typer.Exit, typer.Abort, KeyboardInterrupt):
            raise  # usage errors (click prints them, exit 2), --version, Ctrl-C
        except Exception as error:
            if os.environ.get("PROMOLAB_DEBUG"):
                raise
            _fail(
                [
                    f"internal error ({type(error).__name__}: {error}); this is a bug in promolab: "
                    "rerun with PROMOLAB_DEBUG=1 for the traceback and report it"
                ],
                EXIT_INTERNAL,
            )


def _fail(lines: Any, code: int) -> None:
    _print_errors(lines)
    raise typer.Exit(code)


def _print_errors(lines: Any) -> None:
    for line in lines:
        err.print(f"error: {printable(line)}", markup=False, highlight=False, soft_wrap=True)


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
            spec = load(path)
        except SpecError as error:
            problems.extend(error.lines)
            continue
        if spec.id in ids:
            problems.append(f"{printable(path)}: id: '{spec.id}' is also the id of {printable(ids[spec.id])}")
        ids[spec.id] = path
        if isinstance(spec, RolloutSpec):
            from promolab.cli import rollout

            detail = rollout.summary(spec)
        else:
            detail = f"({spec.id}: {len(spec.variants)} arms, {len(spec.metrics)} metrics)"
        out.print(f"ok  {plain(path)}  [dim]{detail}[/dim]")
    if problems:
        raise _ProblemLinesError(problems)


@app.command()
def schema(
    rollout: Annotated[
        bool, typer.Option("--rollout", help="The schema of rollout specs (promotions not randomised).")
    ] = False,
) -> None:
    """Print the JSON Schema of experiment specs (for editor autocompletion)."""
    from promolab.spec.models import ExperimentSpec

    model = RolloutSpec if rollout else ExperimentSpec
    print(json.dumps(model.model_json_schema(), indent=2))


@app.command()
def simulate(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the tables into.")],
    units: Annotated[
        int | None,
        typer.Option(
            min=2,
            max=100_000_000,
            help="Units to simulate (default 100,000; a rollout: its simulation.units).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed (same seed, same data).")] = 0,
    file_format: Annotated[
        FileFormat | None,
        typer.Option("--format", help="Force a file format (default: each spec path's suffix)."),
    ] = None,
) -> None:
    """Write realistic simulated data for SPEC where its data block names the files."""
    from promolab.simulate import simulate as run
    from promolab.simulate import simulated_paths, write_simulated
    from promolab.sources import data_paths

    spec = load(spec_path)
    fmt: Literal["parquet", "csv"] | None = (
        "csv" if file_format == FileFormat.csv else ("parquet" if file_format == FileFormat.parquet else None)
    )
    _require_folder(out_dir, "--out")
    targets = simulated_paths(spec, out_dir, fmt)
    real = data_paths(spec).values()  # the spec's own data files: simulated tables never replace them
    _guard([spec_path, *real], {f"--out ({name})": path for name, path in targets.items()})
    if isinstance(spec, RolloutSpec):
        from promolab.cli import rollout

        rollout.simulate(spec, targets["panel"], out_dir, units, seed)
        return
    units = 100_000 if units is None else units
    if units < len(spec.variants):
        raise PromolabError(f"--units {units}: needs at least one unit per arm ({len(spec.variants)})")
    data = run(spec, units=units, seed=seed)
    written = write_simulated(data, spec, out_dir, fmt=fmt)
    for name, path in written.items():
        out.print(f"{name:<12} {data.tables[name].num_rows:>10,} rows  {plain(path)}")
    err.print(f"analyse with --data-dir {plain(out_dir)}", style="dim")


@app.command()
def design(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    pre_period: Annotated[
        Path | None,
        typer.Option(help="Per-unit pre-period values (a column per metric id; covariates; cluster)."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan as JSON here.")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write the power curve here (.png, .svg or .pdf).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A rollout: resolve its panel (the history) here.")
    ] = None,
    data: Annotated[
        list[str] | None, typer.Option("--data", metavar="NAME=PATH", help="A rollout: panel=PATH.")
    ] = None,
    sequential: Annotated[
        bool,
        typer.Option(
            help="Also size the test for promolab monitor's looks (shown anyway when the spec sets "
            "analysis.sequential)."
        ),
    ] = False,
) -> None:
    """Sample size per arm, duration, MDE, power and break-even lifts of SPEC, and with sequential
    looks their maximum and expected sample size (a rollout: placebo backtests on its history and the
    best-matching untreated units)."""
    from promolab.cli.output import print_table, write_json
    from promolab.design.estimates import read_pre_period
    from promolab.design.plan import plan_design

    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise PromolabError(f"--plot {printable(plot)}: must end in {', '.join(PLOT_SUFFIXES)}")
    spec = load(spec_path)
    if isinstance(spec, RolloutSpec):
        if pre_period is not None or plot is not None or sequential:
            raise PromolabError(
                "--pre-period, --plot and --sequential are for randomised experiments; a rollout reads "
                "its panel"
            )
        panel = _panel_path(spec, data_dir, data)
        _guard([spec_path, panel], {"--json": json_out})
        from promolab.cli import rollout

        rollout.design(spec, panel, json_out)
        return
    if data_dir is not None or data:
        raise PromolabError(
            "--data-dir and --data are for rollout specs; an experiment's design reads --pre-period"
        )
    _guard([spec_path, pre_period], {"--json": json_out, "--plot": plot})
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
    monitored = None
    if sequential or "sequential" in spec.analysis.model_fields_set:
        from promolab.design.sequential import sequential_plan

        monitored = sequential_plan(spec, plan)
        method = monitored.method.replace("_", " ") + (
            f", {monitored.spending}" if monitored.spending else ""
        )
        print_table(
            f"monitored with promolab monitor ({method}, {monitored.looks} looks)",
            ["quantity", "units", "over fixed"],
            [
                ["fixed design", monitored.fixed_total, 1.0],
                ["maximum", monitored.max_total, monitored.inflation],
                [
                    "expected at the MDE",
                    monitored.expected_total_at_mde,
                    monitored.expected_total_at_mde / plan.total,
                ],
                [
                    "expected at no effect",
                    monitored.expected_total_at_zero,
                    monitored.expected_total_at_zero / plan.total,
                ],
            ],
        )
    if json_out is not None:
        from dataclasses import asdict

        extra = {"sequential": asdict(monitored)} if monitored is not None else {}
        write_json(json_out, plan.to_dict() | extra)
    if plot is not None:
        from promolab.design.curve import save_power_curve

        save_power_curve(plan, plot)
        err.print(f"wrote {plain(plot)}")


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
    from promolab.sources import (
        column_names,
        data_paths,
        parse_overrides,
        read_frame,
        require_file,
        require_finite,
    )

    spec = load(spec_path)
    if isinstance(spec, RolloutSpec):
        raise PromolabError(
            f"{printable(spec_path)}: a rollout has no assignment: its treated units are rollout.treated"
        )
    paths = data_paths(spec, data_dir, parse_overrides(data or []))
    if units is None:
        units = require_file(paths.get("units") or paths["assignments"], "units")
    if out_file.suffix.lower() not in TABLE_SUFFIXES:
        raise PromolabError(f"--out {printable(out_file)}: must end in .parquet or .csv")
    _guard([spec_path, units, *paths.values()], {"--out": out_file, "--json": json_out})
    available = column_names(units, "units")
    covariates = [c for c in spec.analysis.covariates if c in available]
    frame = read_frame(units, "units", unit_columns(spec, covariates))
    require_finite(frame, [*covariates, *spec.design.strata], units)
    try:
        assignment = assign_spec(spec, frame)
    except ValueError as error:
        raise PromolabError(f"{printable(spec_path)}: {error}") from None
    except DataError as error:
        raise DataError([f"{printable(units)}: {line}" for line in error.lines]) from None
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
        err.print(
            f"covariates not in {plain(units.name)}, not checked: {plain(', '.join(missing))}", style="dim"
        )
    err.print(f"wrote {plain(out_file)}")
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
    engine: Annotated[
        Engine,
        typer.Option(
            envvar="PROMOLAB_ENGINE",
            help="Who aggregates the rows: duckdb (embedded), or spark (PySpark; PROMOLAB_SPARK_MASTER).",
        ),
    ] = Engine.duckdb,
    stats_in: Annotated[
        Path | None,
        typer.Option(
            "--stats",
            help="Analyse the per-arm statistics your warehouse returned for `promolab sql` (CSV or Parquet) "
            "instead of the data.",
        ),
    ] = None,
) -> None:
    """Lifts with confidence intervals for every metric and arm, guardrails, SRM check and verdict."""
    from promolab.analyze import analyze_spec
    from promolab.cli.output import print_analysis, write_json
    from promolab.economics import evaluate
    from promolab.sources import data_paths, parse_overrides

    spec = load(spec_path)
    if isinstance(spec, RolloutSpec):
        _refuse_for_rollout(
            {
                "--method": method,
                "--draws": draws_out,
                "--daily": daily or None,
                "--no-cuped": not cuped or None,
                "--stats": stats_in,
                "--engine spark": True if engine is Engine.spark else None,
            }
        )
        panel = _panel_path(spec, data_dir, data)
        _guard([spec_path, panel], {"--json": json_out})
        from promolab.cli import rollout

        rollout.analyze(spec, panel, json_out)
        return
    chosen = spec.analysis.method if method is None else method.value
    if draws_out is not None and chosen == "frequentist":
        raise PromolabError("--draws needs the Bayesian engine: add --method bayesian (or both)")
    if draws_out is not None and draws_out.suffix.lower() not in TABLE_SUFFIXES:
        raise PromolabError(f"--draws {printable(draws_out)}: must end in .parquet or .csv")
    outputs = {"--json": json_out, "--draws": draws_out}
    if stats_in is not None or engine is Engine.spark:
        analysis = _analysis_of_statistics(
            spec, spec_path, stats_in, chosen, cuped, outputs, data_dir, data, daily
        )
    else:
        overrides = parse_overrides(data or [])
        _guard([spec_path, *data_paths(spec, data_dir, overrides).values()], outputs)
        analysis = analyze_spec(spec, data_dir, overrides, cuped=cuped, method=chosen, daily=daily)
        _warn(analysis.data_quality.warnings())
        if daily and analysis.daily is None:
            _warn([f"--daily did nothing: {_no_daily_curve(spec)}"])
    economics = evaluate(spec, analysis)
    decisions = _decisions(spec, analysis, economics)
    print_analysis(analysis, decisions)
    if json_out is not None:
        extra = {"decision": decisions[-1].to_dict()}
        if len(decisions) > 1:
            extra["decisions"] = {d.rule.split(" ")[0]: d.to_dict() for d in decisions}
        if economics is not None:
            extra["economics"] = economics.to_dict()
        write_json(json_out, {**analysis.to_dict(), **extra})
    if draws_out is not None and analysis.bayes is not None:
        from promolab.io import write_table

        write_table(draws_out, analysis.bayes.draws_frame())


def _analysis_of_statistics(
    spec: ExperimentSpec,
    spec_path: Path,
    stats_in: Path | None,
    method: Chosen,
    cuped: bool,
    outputs: dict[str, Path | None],
    data_dir: Path | None,
    data: list[str] | None,
    daily: bool,
) -> Analysis:
    """``analyze --stats FILE`` (a warehouse's per-arm statistics) or ``--engine spark`` (Spark runs the
    same query on the data): the analysis of the portable query's rows."""
    from promolab.analyze.run import analyze_on_spark, analyze_table
    from promolab.sources import data_paths, parse_overrides

    what = "--stats" if stats_in is not None else "--engine spark"
    given: dict[str, object] = {"--daily": daily or None}
    if stats_in is not None:
        given |= {"--data-dir": data_dir, "--data": data or None}
    clash = [option for option, value in given.items() if value is not None]
    if clash:
        raise PromolabError(f"{what}: {', '.join(clash)} cannot go with it (the daily curve reads the rows)")
    if stats_in is not None:
        _guard([spec_path, stats_in], outputs)
        return analyze_table(spec, stats_in, cuped, method)
    overrides = parse_overrides(data or [])
    _guard([spec_path, *data_paths(spec, data_dir, overrides).values()], outputs)
    return analyze_on_spark(spec, data_dir, overrides, cuped, method)


@app.command()
def sql(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    dialect: Annotated[str, typer.Option(help="The warehouse's SQL dialect (see the docs for the list).")],
    table: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=TABLE",
            help="The warehouse table of the spec's data NAME (default: the name itself; repeatable).",
        ),
    ] = None,
    cuped: Annotated[
        bool, typer.Option("--cuped/--no-cuped", help="Include the covariates' sums (as analyze will).")
    ] = True,
    untimed: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="An event table without the spec's timestamp column: all its rows count (repeatable).",
        ),
    ] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the query here.")] = None,
) -> None:
    """The whole aggregation as one query for your warehouse: run it there, save its rows as CSV or
    Parquet, then `promolab analyze SPEC --stats FILE`."""
    from promolab.aggregate.portable import default_tables, warehouse_query

    spec = load(spec_path)
    if isinstance(spec, RolloutSpec):
        raise PromolabError(f"{printable(spec_path)}: sql is for randomised tests; a rollout reads its panel")
    tables = default_tables(spec)
    for item in table or []:
        name, sep, target = item.partition("=")
        if not sep or not target.strip() or name.strip() not in tables:
            raise PromolabError(
                f"--table: expected NAME=TABLE with NAME one of {', '.join(tables)}, got '{printable(item)}'"
            )
        tables[name.strip()] = target.strip()
    query = warehouse_query(spec, dialect, tables, cuped, untimed or ())
    if out_file is None:
        out.print(query, markup=False, highlight=False, soft_wrap=True)
        return
    from promolab.sources import data_paths

    _guard([spec_path, *data_paths(spec).values()], {"--out": out_file})
    from promolab.io import write_text

    write_text(out_file, query + "\n")
    err.print(f"wrote {plain(out_file)}")


def _no_daily_curve(spec: ExperimentSpec) -> str:
    """Why the primary metric has no cumulative curve by day."""
    from promolab.aggregate.daily import cumulative

    metric = spec.metric(spec.primary)
    source = getattr(metric, "source", None)
    if spec.data.timestamp is None:
        return "the spec has no data.timestamp column to date the rows"
    if source is None or source == "units":
        return f"the primary metric '{spec.primary}' is not read from a dated event table"
    if not cumulative(metric):
        return f"the primary metric '{spec.primary}' does not accumulate over days (a mean, maximum or score)"
    return f"the primary metric's table '{source}' has no column '{spec.data.timestamp}'"


def _decisions(
    spec: ExperimentSpec, analysis: Analysis, economics: PromotionEconomics | None
) -> list[Decision]:
    """The decision of the analysis method; with ``--method both``, the frequentist then the Bayesian."""
    from promolab.decision import decide

    if analysis.method == "both":
        return [
            decide(spec, analysis, economics, "frequentist"),
            decide(spec, analysis, economics, "bayesian"),
        ]
    return [decide(spec, analysis, economics)]


@app.command()
def monitor(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    data_dir: DataDirOption = None,
    data: DataOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every look as JSON here.")] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="The looks' state file: days read before are not read again (default: beside --json, "
            "as NAME.state.duckdb; none without --json)."
        ),
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Start the state over: read every day again.")] = False,
    through: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Look only through this day (default: the data's last day)."),
    ] = None,
    cuped: Annotated[
        bool, typer.Option("--cuped/--no-cuped", help="Adjust for covariates and each metric's pre-period.")
    ] = True,
    plot: Annotated[
        Path | None, typer.Option(help="Write the intervals over time and the stopping look here (.png).")
    ] = None,
) -> None:
    """Every daily look at the running test's primary metric and guardrails, with always-valid (or
    group-sequential) intervals, and the action: continue, stop for a win, for harm, for futility."""
    from promolab.analyze.monitor import monitor_spec
    from promolab.cli.output import print_table, write_json
    from promolab.sources import data_paths, parse_overrides

    spec = load(spec_path)
    if isinstance(spec, RolloutSpec):
        raise PromolabError(
            f"{printable(spec_path)}: monitor is for randomised tests; a rollout has no looks"
        )
    if plot is not None and plot.suffix.lower() != ".png":
        raise PromolabError(f"--plot {printable(plot)}: must end in .png")
    if state is None and json_out is not None:
        state = json_out.with_name(json_out.stem + ".state.duckdb")
    overrides = parse_overrides(data or [])
    _guard(
        [spec_path, *data_paths(spec, data_dir, overrides).values()],
        {"--json": json_out, "--plot": plot, "--state": state},
    )
    found = monitor_spec(
        spec, data_dir, overrides, state, rebuild, cuped, through.date() if through else None
    )
    rows = [
        [look["date"], r["metric"], r["variant"], r["estimate"], r["ci_lower"], r["ci_upper"], r["p_value"],
         look["action"]]
        for look in found["looks"]
        for r in look["results"]
    ]  # fmt: skip
    title = f"{spec.id}: looks by day, {found['method'].replace('_', ' ')}"
    headers = ["date", "metric", "variant", "abs_diff", "lower", "upper", "p_value", "action"]
    print_table(title, headers, rows)
    stopped = f" on {found['stopped_on']}" if found["stopped_on"] else ""
    out.print(f"verdict: {found['verdict']}{stopped}")
    if json_out is not None:
        write_json(json_out, found)
    if plot is not None:
        import base64

        from promolab.io import write_with
        from promolab.report.plots import sequence

        image = base64.b64decode(sequence(found))

        def png(tmp: Path) -> None:
            tmp.write_bytes(image)

        write_with(plot, png)
        err.print(f"wrote {plain(plot)}")


class FailOn(StrEnum):
    stop = "stop"
    iterate = "iterate"


FAILING = {FailOn.stop: ("stop",), FailOn.iterate: ("iterate", "stop")}


@app.command()
def report(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Experiment spec file.")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the report folder <id>/ (HTML, Markdown, JSON).")
    ],
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
    monitored: Annotated[
        Path | None,
        typer.Option("--monitor", help="Looks from `promolab monitor --json`: shown with their intervals."),
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when the decision is 'stop' (--fail-on stop) or 'iterate' or 'stop' "
            "(--fail-on iterate): for CI pipelines.",
        ),
    ] = None,
) -> None:
    """Promotion-effect and ROI report of one experiment: HTML (plots embedded), Markdown and JSON."""
    from promolab.report import load_draws, load_results, malformed, write_report

    spec = load(spec_path)
    if isinstance(spec, RolloutSpec):
        _refuse_for_rollout({"--method": method, "--draws": draws_in, "--monitor": monitored})
        panel = None if results is not None else _panel_path(spec, data_dir, data)
        _require_folder(out_dir, "--out")
        _guard([spec_path, results, panel], folders={"--out": out_dir / spec.id})
        from promolab.cli import rollout

        _announce(rollout.report(spec, out_dir, results, panel), fail_on)
        return
    if draws_in is not None and results is None:
        raise PromolabError("--draws goes with --results (without --results the analysis runs now)")
    monitoring = None
    if monitored is not None:
        from promolab.report import load_monitor

        monitoring, stale = load_monitor(monitored, spec)
        _warn([stale] if stale else [])
    if method is not None and results is not None:
        raise PromolabError("--method applies when report analyses the data; --results already has a method")
    inputs: list[Any] = [spec_path, results, draws_in, monitored]
    if results is None:
        from promolab.sources import data_paths, parse_overrides

        inputs += data_paths(spec, data_dir, parse_overrides(data or [])).values()
    _require_folder(out_dir, "--out")
    _guard(inputs, folders={"--out": out_dir / spec.id})
    draws = None
    if results is not None:
        analysis, warning = load_results(results, spec)
        if warning is not None:
            _warn([warning])
        draws = load_draws(draws_in, spec) if draws_in is not None else None
    else:
        from promolab.analyze import analyze_spec
        from promolab.sources import parse_overrides

        chosen = spec.analysis.method if method is None else method.value
        analysis = analyze_spec(spec, data_dir, parse_overrides(data or []), method=chosen, daily=True)
        _warn(analysis.data_quality.warnings())
        draws = analysis.bayes.draws if analysis.bayes is not None else None
    if results is None:
        written = write_report(spec, analysis, out_dir, draws, monitoring)
    else:
        with malformed(results, "analysis", "rerun `promolab analyze --json`"):
            written = write_report(spec, analysis, out_dir, draws, monitoring)
    for path in written.paths.values():
        err.print(f"wrote {plain(path)}")
    _announce(written.decision, fail_on)


def _announce(decision: dict[str, Any], fail_on: FailOn | None) -> None:
    """Print a report's decision; exit 1 when ``--fail-on`` asks to fail on it."""
    out.print(f"{decision['action'].upper()}: {plain(decision['reason'])}")
    for arm in decision["arms"]:
        out.print(f"  {plain(arm['line'])}")
    if fail_on is not None and decision["action"] in FAILING[fail_on]:
        err.print(f"--fail-on {fail_on.value}: the decision is {decision['action']}", style="bold red")
        raise typer.Exit(EXIT_VERDICT)


def _panel_path(spec: RolloutSpec, data_dir: Path | None, data: list[str] | None) -> DataPath:
    """The rollout's panel input, with ``--data-dir`` / ``--data panel=PATH`` applied."""
    from promolab.sources import data_paths, parse_overrides

    return data_paths(spec, data_dir, parse_overrides(data or []))["panel"]


def _refuse_for_rollout(options: dict[str, object]) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise PromolabError(
            f"{', '.join(given)}: not for rollout specs (they are for randomised experiments)"
        )


@app.command()
def review(
    specs: SpecsArg,
    quarter: Annotated[
        str, typer.Option(help="Quarter as YYYYQn, e.g. 2026Q1 (by the specs' end dates), or 'all'.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the review folder review-<quarter>/.")
    ],
    reports: Annotated[
        Path | None, typer.Option(help="Folder of the <id>/ report folders (default: the --out folder).")
    ] = None,
) -> None:
    """Quarterly promotion review: portfolio, totals, ROI ranking and pooled mechanic effects."""
    from promolab.report import report_json, write_review
    from promolab.report.review import quarter_of

    files = _spec_files(specs)
    loaded = [load(path) for path in files]
    quarters = sorted({quarter_of(s.end) for s in loaded}) if quarter == "all" else [quarter]
    _require_folder(out_dir, "--out")
    inputs = [*files, *(report_json(reports or out_dir, s.id) for s in loaded)]
    _guard(inputs, folders={f"--out (review-{label})": out_dir / f"review-{label}" for label in quarters})
    for label in quarters:
        paths = write_review(loaded, label, reports or out_dir, out_dir)
        for path in paths.values():
            err.print(f"wrote {plain(path)}")


def _spec_files(paths: list[Path]) -> list[Path]:
    """Expand folders to the spec files inside them (sorted); reject anything else."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SPEC_SUFFIXES)
            if not found:
                raise _ProblemLinesError(
                    [f"{printable(path)}: no spec files ({', '.join(SPEC_SUFFIXES)}) in this folder"]
                )
            files.extend(found)
        else:
            files.append(path)
    return files


def _guard(
    inputs: Any, files: dict[str, Path | None] | None = None, folders: dict[str, Path] | None = None
) -> None:
    """No output over an input (one of a folder's or a pattern's files, inside an input folder, or
    matching an input pattern), and no two outputs on one path."""
    inputs = list(inputs)
    check_outputs(_input_files(inputs), files, folders)
    _refuse_outputs_in_inputs(inputs, files or {})
    for option, path in (files or {}).items():
        if path is not None:
            check_writable(path, option, folder=False)
    for option, path in (folders or {}).items():
        check_writable(path, option, folder=True)
    chosen = [(option, path) for option, path in (files or {}).items() if path is not None]
    for k, (option, path) in enumerate(chosen):
        for other, second in chosen[:k]:
            if same_file(path, second):
                raise OutputError(f"{option} {printable(path)}: is also where {other} writes")


def _input_files(inputs: list[Any]) -> list[Path]:
    """The local inputs with the files of each folder or pattern (as the aggregation will read them);
    remote inputs cannot be where a local output goes."""
    from promolab.sources import GLOB_CHARACTERS, input_files

    found: list[Path] = []
    for path in _local(inputs):
        found.append(path)
        if path.is_dir() or (not path.exists() and GLOB_CHARACTERS & set(str(path))):
            try:
                found += [f for f in input_files(path, "input").files if isinstance(f, Path)]
            except DataError:
                continue  # the command names this input's problem when it reads it
    return found


def _refuse_outputs_in_inputs(inputs: list[Any], files: dict[str, Path | None]) -> None:
    """An output file inside an input folder, or matched by an input pattern, would be read as data."""
    import fnmatch

    from promolab.sources import GLOB_CHARACTERS

    for option, output in files.items():
        if output is None:
            continue
        target = absolute(Path(output))
        for source in _local(inputs):
            inside = source.is_dir() and target.is_relative_to(absolute(source))
            pattern = not source.exists() and bool(GLOB_CHARACTERS & set(str(source)))
            if inside or (pattern and fnmatch.fnmatch(str(target), str(absolute(source)))):
                raise OutputError(
                    f"{option} {printable(output)}: is in the input {printable(source)}, which is read as "
                    "data; write elsewhere"
                )


def _local(inputs: list[Any]) -> list[Path]:
    """The inputs that are local paths (a ``file:`` URI's path; not None, not another URI)."""
    from promolab.sources import RemoteInput

    local = [p.local if isinstance(p, RemoteInput) else p for p in inputs]
    return [Path(p) for p in local if p is not None]


def _require_folder(path: Path, option: str) -> None:
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {printable(path)}: is a file; expected a folder to write into")


def _warn(lines: list[str]) -> None:
    for line in lines:
        err.print(f"warning: {printable(line)}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    app()
