"""Uplift analysis: data -> per-arm sufficient statistics (DuckDB) -> estimates (pure functions)."""

from promolab.analyze.run import Analysis, analyze_spec

__all__ = ["Analysis", "analyze_spec"]
