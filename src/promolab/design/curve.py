"""Power curve of a planned design: power against the true relative lift, one line per arm."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from promolab.design.plan import DesignPlan
from promolab.errors import DataError
from promolab.io import write_with
from promolab.stats.sizing import Alternative, power


def power_curve(plan: DesignPlan, points: int = 61) -> dict[str, np.ndarray]:
    """Relative lifts (key ``lift``) and the power of each treatment arm at them."""
    outcome = plan.outcome()
    alternative: Alternative = plan.alternative  # type: ignore[assignment]
    if plan.mde_relative is None:
        raise DataError(
            f"{plan.experiment}: the power curve is drawn against the relative lift, which is undefined "
            f"for a baseline mean of {plan.baseline_mean:g}"
        )
    top = 2.5 * abs(plan.mde_relative)
    if outcome.is_binary:  # keep the treated rate inside (0, 1)
        top = min(top, 0.999 * (1 - outcome.mean) / outcome.mean, 0.999)
    low = 0.0 if alternative == "larger" else -top
    lifts = np.linspace(low, 0.0 if alternative == "smaller" else top, points)
    n_ref = plan.per_arm[plan.reference]
    curves: dict[str, np.ndarray] = {"lift": lifts}
    for arm, n in plan.per_arm.items():
        if arm != plan.reference:
            curves[arm] = np.array(
                [
                    power(
                        outcome,
                        lift * outcome.mean,
                        n_ref,
                        n,
                        plan.alpha_per_comparison,
                        alternative,
                        plan.pooled_null,
                    )
                    for lift in lifts
                ]
            )
    return curves


def save_power_curve(plan: DesignPlan, target: str | Path) -> None:
    """Write the power curve as PNG or SVG (by the file suffix), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    curves = power_curve(plan)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for arm, values in curves.items():
        if arm != "lift":
            ax.plot(curves["lift"] * 100, values, label=arm)
    ax.axhline(plan.power, color="grey", lw=0.8, ls=":")
    low, high = curves["lift"][0], curves["lift"][-1]
    for arm, point in plan.break_even.items():
        lift = point.metric_relative_lift
        if lift is not None and low <= lift <= high:
            ax.axvline(lift * 100, color="firebrick", lw=0.8, ls="-.")
            ax.annotate(f"break-even {arm}", (lift * 100, 0.05), rotation=90, fontsize=7, color="firebrick")
    ax.axvline((plan.mde_relative or 0.0) * 100, color="grey", lw=0.8, ls="--", label="planned MDE")
    ax.set(
        xlabel=f"true relative lift in {plan.metric} (%)",
        ylabel="power",
        ylim=(0, 1.01),
        title=f"{plan.experiment}: power at {sum(plan.per_arm.values()):,} units",
    )
    ax.legend(frameon=False)
    fig.tight_layout()
    suffix = Path(target).suffix.lstrip(".") or "png"
    write_with(target, lambda tmp: fig.savefig(tmp, format=suffix))
    plt.close(fig)
