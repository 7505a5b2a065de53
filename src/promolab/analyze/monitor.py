"""Looking at a running test every day without inflating false positives (``promolab monitor``).

A look at day ``d`` is the test's analysis on the data as they stood at ``d``
(:mod:`promolab.aggregate.looks`): every metric kind, CUPED included, gives each treatment arm's
estimate ``theta_d`` (difference from the reference, in the metric's unit) and its standard error
``se_d``. The primary metric and every guardrail are followed; ``Z_d = theta_d / se_d``.

**Time.** Under no difference ``Z_d`` behaves like Brownian motion observed at information times that
grow with the data: the variance ``se_d^2`` of a cumulative metric's sum per unit (binary, count,
continuous sum or max: values accumulate over fixed units), the information ``1 / se_d^2`` of a mean or
a ratio (orders, responses accumulate). Either grows about linearly with the days, so a look's
information fraction is its calendar fraction ``t_d = min(days run / days planned, 1)`` (days from
``start`` to ``end``): known before the data, the same for every metric, and 1 at the planned end.

- ``always_valid``: the asymptotic confidence sequence ``theta_d -+ se_d sqrt(2 (x + 1) / x log(sqrt(x +
  1) / alpha))`` with ``x = t_d x*`` (:func:`~promolab.stats.sequential.confidence_sequence`; ``x*``
  makes it tightest at the planned end, :func:`~promolab.stats.sequential.optimal_rho`), and the
  mixture-SPRT p-value with the same mixing, ``min`` over the looks so far: it is below ``alpha``
  exactly when the sequence excludes 0.
- ``group_sequential``: Lan-DeMets boundaries ``c_k`` (O'Brien-Fleming or Pocock type) at the looks'
  fractions; each depends only on the looks before it, so a look's boundary never changes later. The
  interval is ``theta_d -+ c_d se_d``. ``analysis.sequential.looks`` (dates) restricts the looks.

**Actions.** Each treatment arm is tested at ``alpha / arms`` (Bonferroni) on the primary and on each
guardrail. ``stop_harm``: the primary's interval lies on its worse side of 0, or a guardrail's beyond
its allowed drop (``max_absolute_drop``, or ``max_relative_drop`` times the reference's mean at that
look); ``stop_win``: the primary's lies on its better side; ``stop_futility`` (with
``analysis.sequential.futility``): every arm's interval, relative to the reference's mean, lies below
``design.mde.relative``; else ``continue``. The first stop is the verdict.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promolab.design.sequential import calendar_fraction
from promolab.errors import DataError
from promolab.sources import DataPath
from promolab.spec import ExperimentSpec
from promolab.spec.models import UNITS_SOURCE, Sequential
from promolab.spec.windows import window_of
from promolab.stats import sequential

if TYPE_CHECKING:
    import pandas as pd

    from promolab.aggregate.looks import LookAggregation

ACTIONS = ("continue", "stop_win", "stop_harm", "stop_futility")


def monitor_spec(
    spec: ExperimentSpec,
    data_dir: str | Path | None = None,
    overrides: Mapping[str, DataPath] | None = None,
    state: Path | None = None,
    rebuild: bool = False,
    cuped: bool = True,
    through: dt.date | None = None,
    frames: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """Read the days not read yet, record their looks (in ``state``, when given) and return every look.

    Args:
        spec: the experiment (its event tables need ``data.timestamp``).
        data_dir: folder the spec's relative data paths resolve against.
        overrides: data name -> file, replacing the spec's path.
        state: the looks' state file (read, then replaced); None keeps it in memory for this run.
        rebuild: start the state over (read every day again).
        cuped: adjust for covariates (``analysis.covariates`` and each metric's pre-period).
        through: look only through this day (the data's last day by default), e.g. to replay the test
            as it stood then.
        frames: data name -> DataFrame, used instead of files (a state file needs the assignments and
            units as files: their fingerprint).

    Raises:
        DataError: a metric that cannot be looked at by day, a state file of another spec or other
            inputs, or data the analysis refuses (see :func:`promolab.aggregate.duck.aggregate`).
    """
    from promolab.aggregate.duck import connect
    from promolab.aggregate.layout import own_covariates
    from promolab.aggregate.looks import LookAggregation, attached, file_identity
    from promolab.sources import data_paths
    from promolab.spec.loader import spec_hash
    from promolab.spec.windows import expand

    followed = _followed(spec)
    expanded = expand(_with_only(spec, followed))
    paths = data_paths(spec, data_dir, overrides)
    if spec.data.timestamp is None:
        raise DataError(f"{spec.id}: monitor needs data.timestamp, the column dating the event rows")
    covariates = spec.analysis.covariates if cuped else ()
    frames = dict(frames or {})
    if state is not None and frames.keys() & {"assignments", "units"}:
        raise DataError(
            "a looks' state file needs the assignments and units as files (it records their fingerprint)"
        )
    con, sources = connect(expanded, paths, frames, covariates)
    aggregation = LookAggregation(
        expanded, con, sources, covariates, own_covariates(expanded) if cuped else {}
    )
    static = {
        name: path for name, path in paths.items() if name in ("assignments", "units") and name not in frames
    }
    identity = {
        "experiment": spec.id,
        "spec": spec_hash(spec),
        "files": file_identity(static),
        "cuped": cuped,
    }
    with attached(con, state, rebuild) as store:
        store.check(identity)
        last, rows = store.last_read()
        if last is not None and (now := aggregation.rows_through(last)) != rows:
            raise DataError(
                f"{store.where}: the event rows dated through {last.isoformat()}, the last day read, changed "
                f"since (then {rows}, now {now}: rows arrived late or were replaced); pass --rebuild to read "
                "every day again"
            )
        final = _last_look_day(spec, aggregation, last, through)
        newest = final is not None and not aggregation.has_rows_after(final)
        provisional = None
        for day in _days(spec, last, final):
            if newest and day == final:  # its rows may still be arriving: looked at, not kept
                with aggregation.provisionally():
                    aggregation.read(last, day)
                    if _is_look(spec.analysis.sequential, day):
                        provisional = _look(expanded, followed, aggregation, day) | {"provisional": True}
                break
            read = aggregation.read(last, day)
            rows = {name: rows.get(name, 0) + count for name, count in read.items()}
            last = day
            if _is_look(spec.analysis.sequential, day):
                store.record(_look(expanded, followed, aggregation, day))
        if last is not None:
            store.mark_read(last, rows)
        recorded = [look for look in store.looks() if through is None or look["date"] <= through.isoformat()]
        recorded += [provisional] if provisional is not None else []
    if not recorded:
        raise DataError(
            f"{spec.id}: no look yet: the event tables have no rows dated from start ({spec.start}) "
            + (f"through {through}" if through else "on")
        )
    return sequential_looks(spec, recorded)


def sequential_looks(spec: ExperimentSpec, recorded: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The sequential results and actions of the recorded looks (``{date, n, series: [{metric, variant,
    estimate, se, control_mean}]}``, in date order; module docstring)."""
    settings = spec.analysis.sequential
    arms = [t.id for t in spec.treatments]
    alpha = (1 - spec.analysis.confidence) / len(arms)
    fractions = [calendar_fraction(spec, dt.date.fromisoformat(r["date"])) for r in recorded]
    keys = list(dict.fromkeys((s["metric"], s["variant"]) for look in recorded for s in look["series"]))
    results = {
        key: _series_results([_point(look, key) for look in recorded], fractions, alpha, settings)
        for key in keys
    }
    looks, verdict, stopped = [], "continue", None
    for i, look in enumerate(recorded):
        found = [{"metric": m, "variant": v, **results[(m, v)][i]} for m, v in keys]
        for result in found:
            result["role"] = "primary" if result["metric"] == spec.primary else "guardrail"
        action = _action(spec, found, look)
        if verdict == "continue" and action != "continue":
            verdict, stopped = action, look["date"]
        looks.append(
            {
                "date": look["date"],
                "n": look["n"],
                "fraction": fractions[i],
                "provisional": bool(look.get("provisional")),
                "results": found,
                "action": verdict,
            }
        )
    from promolab.spec.loader import spec_hash

    return {
        "experiment": spec.id,
        "spec_hash": spec_hash(spec),
        "metric": spec.primary,
        "guardrails": [g.metric for g in spec.guardrails],
        "method": settings.method,
        "spending": settings.spending if settings.method == "group_sequential" else None,
        "alpha_per_arm": alpha,
        "looks": looks,
        "verdict": verdict,
        "stopped_on": stopped,
    }


# ---------------------------------------------------------------------- reading the looks


def _followed(spec: ExperimentSpec) -> list[str]:
    """The primary metric and the guardrails' metrics, each once; refused when one cannot change by day."""
    names = list(dict.fromkeys([spec.primary, *(g.metric for g in spec.guardrails)]))
    for name in names:
        metric = spec.metric(name)
        if getattr(metric, "source", None) == UNITS_SOURCE:
            raise DataError(
                f"{spec.id}: metric '{name}' is read from the units file: it does not change by day, so "
                "there is nothing to look at (monitor follows the primary metric and the guardrails)"
            )
        window = window_of(spec, name)
        if window in ("pre", "post"):
            raise DataError(
                f"{spec.id}: metric '{name}' counts the {window} window: monitor looks during the test"
            )
    return names


def _with_only(spec: ExperimentSpec, followed: Sequence[str]) -> ExperimentSpec:
    """The spec with only the followed metrics and the parts of the ratios among them: a look reads
    no other table."""
    names = set(followed)
    for name in followed:
        names.update(
            n for n in (getattr(spec.metric(name), a, None) for a in ("numerator", "denominator")) if n
        )
    return spec.model_copy(update={"metrics": tuple(m for m in spec.metrics if m.id in names)})


def _last_look_day(
    spec: ExperimentSpec, aggregation: LookAggregation, read: dt.date | None, through: dt.date | None
) -> dt.date | None:
    """The last day with event rows after the last day ``read``, up to ``end`` (and ``through``); None
    when there is none from ``start`` on."""
    last = aggregation.last_day(read, min(spec.end, through or spec.end))
    return None if last is None or last < spec.start else last


def _days(spec: ExperimentSpec, last: dt.date | None, final: dt.date | None) -> list[dt.date]:
    """Days not read yet: from ``start`` (or the day after ``last``) through ``final``."""
    if final is None:
        return []
    first = spec.start if last is None else last + dt.timedelta(days=1)
    return [first + dt.timedelta(days=k) for k in range((final - first).days + 1)]


def _is_look(settings: Sequential, day: dt.date) -> bool:
    return not settings.looks or day in settings.looks


def _look(
    expanded: ExperimentSpec, followed: Sequence[str], aggregation: LookAggregation, day: dt.date
) -> dict[str, Any]:
    """The followed metrics' estimates at a look, from the rows read through ``day``; none yet for a
    score with fewer than two answers in an arm."""
    from promolab.analyze.frequentist import lift_results
    from promolab.analyze.run import MIN_UNITS

    stats = aggregation.stats_now()
    unready = {
        name
        for arm in stats.arms.values()
        for name, histogram in arm.histograms.items()
        if name in followed and histogram.n < MIN_UNITS
    }
    ready = expanded.model_copy(update={"metrics": tuple(m for m in expanded.metrics if m.id not in unready)})
    series: list[dict[str, Any]] = [
        {"metric": name, "variant": t.id, "estimate": None, "se": None, "control_mean": None}
        for name in sorted(unready)
        for t in expanded.treatments
    ]
    for result, _ in lift_results(ready, stats, aggregation.residual_moments):
        if result.metric in followed:
            series.append(
                {
                    "metric": result.metric,
                    "variant": result.variant,
                    "estimate": result.abs_diff,
                    "se": result.se,
                    "control_mean": result.control_mean,
                }
            )
    return {"date": day.isoformat(), "n": sum(s.moments.n for s in stats.arms.values()), "series": series}


# ---------------------------------------------------------------------- the sequential results


def _point(look: Mapping[str, Any], key: tuple[str, str]) -> tuple[float | None, float | None, float | None]:
    """(estimate, se, reference mean) of one metric and arm at a look."""
    for s in look["series"]:
        if (s["metric"], s["variant"]) == key:
            return s["estimate"], s["se"], s["control_mean"]
    return None, None, None


def _series_results(
    points: Sequence[tuple[float | None, float | None, float | None]],
    fractions: Sequence[float],
    alpha: float,
    settings: Sequential,
) -> list[dict[str, Any]]:
    """One metric and arm's result at each look (estimate, interval, p-value, reference mean)."""
    usable = [i for i, (estimate, se, _) in enumerate(points) if estimate is not None and se]
    found = [_empty(points[i][2]) for i in range(len(points))]
    if settings.method == "group_sequential":
        kept = _increasing(usable, fractions)
        if not kept:
            return found
        bounds = _boundaries(tuple(fractions[i] for i in kept), alpha, settings.spending)
        for i, c in zip(kept, bounds, strict=True):
            estimate, se, reference = points[i]
            found[i] = _bounded(float(estimate), float(se), float(c), reference)  # type: ignore[arg-type]
        return found
    rho = sequential.optimal_rho(1.0, alpha)
    p_value = 1.0
    for i in usable:
        estimate, se, reference = float(points[i][0]), float(points[i][1]), points[i][2]  # type: ignore[arg-type]
        low, high = sequential.confidence_sequence(estimate, se, fractions[i], rho, alpha)
        mixing = math.sqrt(fractions[i]) * rho * se
        p_value = sequential.always_valid_p_value(estimate, se, mixing, p_value)
        found[i] = {"estimate": estimate, "ci_lower": low, "ci_upper": high, "p_value": p_value,
                    "crossed": not (low <= 0 <= high), "control_mean": reference}  # fmt: skip
    return found


def _increasing(usable: list[int], fractions: Sequence[float]) -> list[int]:
    """The usable looks whose information fraction grew since the previous kept look."""
    kept: list[int] = []
    for i in usable:
        if not kept or fractions[i] > fractions[kept[-1]]:
            kept.append(i)
    return kept


def _bounded(estimate: float, se: float, c: float, reference: float | None) -> dict[str, Any]:
    finite = math.isfinite(c)
    low, high = (estimate - c * se, estimate + c * se) if finite else (-math.inf, math.inf)
    return {"estimate": estimate, "ci_lower": low, "ci_upper": high, "p_value": None,
            "crossed": finite and abs(estimate / se) >= c, "control_mean": reference}  # fmt: skip


def _empty(reference: float | None) -> dict[str, Any]:
    return {"estimate": None, "ci_lower": None, "ci_upper": None, "p_value": None, "crossed": False,
            "control_mean": reference}  # fmt: skip


@functools.lru_cache(maxsize=256)
def _boundaries(fractions: tuple[float, ...], alpha: float, spending: str) -> tuple[float, ...]:
    """Lan-DeMets boundaries at ``fractions`` (kept: every run of a daily test has the same ones, and the
    recursive integration takes about 70 ms for 28 looks)."""
    return tuple(
        float(c)
        for c in sequential.spending_boundaries(fractions, alpha, sequential.spending_function(spending))
    )


# ---------------------------------------------------------------------- actions


def _action(spec: ExperimentSpec, results: list[dict[str, Any]], look: Mapping[str, Any]) -> str:
    """The look's action (module docstring); marks each guardrail result ``crossed`` when harm is shown."""
    better = 1 if spec.metric(spec.primary).direction == "higher" else -1
    primary = [r for r in results if r["role"] == "primary"]
    harm = any(r["crossed"] and better * r["estimate"] < 0 for r in primary)
    for guardrail in spec.guardrails:
        for r in results:
            if r["metric"] == guardrail.metric and r["role"] == "guardrail":
                r["crossed"] = _guardrail_harm(spec, guardrail, r)
                harm = harm or r["crossed"]
    if harm:
        return "stop_harm"
    if any(r["crossed"] for r in primary):
        return "stop_win"
    if spec.analysis.sequential.futility and primary and all(_futile(spec, r, better) for r in primary):
        return "stop_futility"
    return "continue"


def _guardrail_harm(spec: ExperimentSpec, guardrail: Any, result: Mapping[str, Any]) -> bool:
    """The interval lies beyond the guardrail's allowed drop, on the metric's worse side."""
    if result["ci_lower"] is None:
        return False
    allowed = guardrail.max_absolute_drop
    if allowed is None:
        if result["control_mean"] is None:
            return False
        allowed = guardrail.max_relative_drop * abs(result["control_mean"])
    higher = spec.metric(guardrail.metric).direction == "higher"
    return result["ci_upper"] < -allowed if higher else result["ci_lower"] > allowed


def _futile(spec: ExperimentSpec, result: Mapping[str, Any], better: int) -> bool:
    """The interval, relative to the reference's mean, excludes ``design.mde.relative`` on the better side."""
    mde = spec.design.mde
    reference = result["control_mean"]
    if result["ci_lower"] is None or mde is None or mde.relative is None or not reference:
        return False
    best = result["ci_upper"] if better > 0 else -result["ci_lower"]
    return best / abs(reference) < mde.relative
