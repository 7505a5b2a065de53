"""Uplift analysis: data -> per-arm sufficient statistics (DuckDB) -> estimates (pure functions).

The package is callable: ``promolab.analyze(spec, data={...})`` is :func:`promolab.api.analyze`.
"""

import sys

import promolab
from promolab.analyze.run import Analysis, analyze_spec

__all__ = ["Analysis", "analyze_spec"]

sys.modules[__name__].__class__ = promolab.Stage
