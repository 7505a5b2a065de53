"""Experiment specs as code: pydantic models, YAML/TOML loading, canonical hashing.

The spec is declarative, validated on load and never mutated; every later step reads it.
"""

from promolab.spec.loader import (
    AnySpec,
    dump_spec,
    load,
    load_spec,
    resolve_data_path,
    spec_from_dict,
    spec_hash,
    spec_to_dict,
    with_data,
)
from promolab.spec.models import AnyMetric, AnyVariant, ExperimentSpec
from promolab.spec.rollout import RolloutSpec

__all__ = [
    "AnyMetric",
    "AnySpec",
    "AnyVariant",
    "ExperimentSpec",
    "RolloutSpec",
    "dump_spec",
    "load",
    "load_spec",
    "resolve_data_path",
    "spec_from_dict",
    "spec_hash",
    "spec_to_dict",
    "with_data",
]
