# %% [markdown]
# # promolab in a notebook
#
# The CLI's commands as functions: `promolab.design(spec)` and `promolab.analyze(spec, data={...})`,
# then `.economics()`, `.decision` and `.report(folder)`. Open this file as a notebook (Jupytext or
# VS Code read the `# %%` cells), or run it as a script: `python examples/notebook.py`.
#
# The spec is a Python mapping here, exactly what a YAML file in `experiments/` would hold, without a
# `data` block: the DataFrames below are the data.

# %%
import os
from pathlib import Path

import numpy as np
import pandas as pd

import promolab

spec = {
    "id": "notebook-discount",
    "name": "20% off for lapsed customers",
    "unit": "customer",
    "start": "2026-03-01",
    "end": "2026-03-28",
    "variants": [
        {"id": "control", "kind": "control", "weight": 0.5},
        {"id": "pct20", "kind": "discount", "mechanic": "percent_off", "value": 20, "weight": 0.5},
    ],
    "metrics": [
        {"id": "conversion", "kind": "binary", "source": "orders"},
        {"id": "revenue", "kind": "continuous", "source": "orders", "column": "amount"},
    ],
    "primary": "revenue",
    "economics": {"currency": "USD", "unit_price": 40, "unit_cost": 22},
    "design": {"mde": {"relative": 0.1}, "daily_units": 2000,
               "baseline": {"revenue": {"mean": 4.0, "sd": 14.0}}},
    "decision": {"metric": "profit"},
}  # fmt: skip

# %% [markdown]
# ## Design: how many customers, for how long?

# %%
plan = promolab.design(spec)
print(f"{plan.per_arm['pct20']:,} customers per arm, {plan.days} days, MDE {plan.mde_relative:.1%}")

# %% [markdown]
# ## The data: one row per customer in `assignments`, one row per order in `orders`
# (simulated here; in practice, your own DataFrames).

# %%
rng = np.random.default_rng(2026)
n = 40_000
assignments = pd.DataFrame({"unit_id": np.arange(n), "variant": rng.choice(["control", "pct20"], n)})
buys = rng.random(n) < np.where(assignments["variant"] == "pct20", 0.12, 0.10)
buyers = assignments.loc[buys, "unit_id"].to_numpy()
orders = pd.DataFrame({"unit_id": buyers, "amount": rng.gamma(2.0, 20.0, len(buyers)).round(2)})

# %% [markdown]
# ## Analysis, economics and the decision

# %%
result = promolab.analyze(spec, data={"assignments": assignments, "orders": orders})
result.to_frame()[["metric", "variant", "rel_lift", "rel_ci_lower", "rel_ci_upper", "p_value_adjusted"]]

# %%
money = result.economics()
profit = money.arms[0].quantities["net_profit"]
print(f"net profit {profit.value:,.0f} {money.currency}, P(profit > 0) = {profit.prob_positive:.2f}")

# %%
print(result.decision.action, "-", result.decision.reason)
for arm in result.decision.arms:
    print(" ", arm.line)

# %% [markdown]
# ## The report (HTML with plots, Markdown, JSON)

# %%
folder = Path(os.environ.get("PROMOLAB_EXAMPLE_OUT", "build/notebook"))
paths = result.report(folder)
print("report:", paths["html"])
