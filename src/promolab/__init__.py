"""promolab: marketing experiments as code, with decision-ready statistics.

``import promolab`` stays light: the spec layer loads on first use of ``promolab.load_spec`` and the
others, the analysis libraries (pandas, DuckDB, scipy, PyMC) only in the commands that need them.
In a notebook, ``promolab.analyze(spec, data={...})`` and ``promolab.design(spec)`` are the CLI's
commands as functions (:mod:`promolab.api`): the stage packages are callable.
"""

import importlib
import types
from typing import TYPE_CHECKING, Any

from promolab.errors import DataError, PromolabError, SpecError

if TYPE_CHECKING:
    from promolab.spec import ExperimentSpec, dump_spec, load_spec, spec_hash

__version__ = "0.1.0"

ENTRY_POINTS = ("analyze", "design")  # stage packages that are also notebook functions
SPEC_NAMES = ("ExperimentSpec", "dump_spec", "load_spec", "spec_hash")


class Stage(types.ModuleType):
    """A stage package that is also its notebook entry point: calling ``promolab.analyze(...)`` calls
    :func:`promolab.api.analyze` (``promolab.design(...)``: :func:`promolab.api.design`), while
    ``promolab.analyze.Analysis`` and the other module attributes stay where they are."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from promolab import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def __getattr__(name: str) -> Any:
    """``promolab.analyze`` and ``promolab.design`` before their packages are imported: import them;
    ``promolab.rollout`` and ``promolab.monitor``: the notebook functions for rollouts and for looks at
    a running test (:mod:`promolab.api`)."""
    if name in ENTRY_POINTS:
        return importlib.import_module(f"promolab.{name}")
    if name in SPEC_NAMES:  # the spec layer (pydantic models) is built on first use
        return getattr(importlib.import_module("promolab.spec"), name)
    if name in ("rollout", "monitor"):
        from promolab import api

        return getattr(api, name)
    raise AttributeError(f"module 'promolab' has no attribute {name!r}")


__all__ = [
    "DataError",
    "ExperimentSpec",
    "PromolabError",
    "SpecError",
    "__version__",
    "analyze",
    "design",
    "dump_spec",
    "load_spec",
    "monitor",
    "rollout",
    "spec_hash",
]
