"""Turn pydantic's validation errors into promolab problems with specific, hinted messages."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from promolab.errors import PathPart, Problem

_TAG = re.compile(r"^<.*>$")
_QUOTED = re.compile(r"'([^']*)'")


def did_you_mean(got: object, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``got``, else ``''``.

    >>> did_you_mean("variantz", ["variants", "metrics"])
    " (did you mean 'variants'?)"
    """
    close = difflib.get_close_matches(str(got), choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def problems_from_validation(error: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """One :class:`Problem` per pydantic error, union tags dropped from paths."""
    return [_problem(detail, root) for detail in error.errors(include_url=False)]


def _problem(detail: Any, root: type[BaseModel]) -> Problem:
    loc: tuple[PathPart, ...] = detail["loc"]
    path = tuple(p for p in loc if not (isinstance(p, str) and (_TAG.match(p) or p == "[key]")))
    kind, got = detail["type"], detail.get("input")
    if "[key]" in loc:
        return Problem(path, f"keys here must be text: quote them in YAML (e.g. '{got}'), got {got!r}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(path, f"must be a mapping of fields (key: value), got {_short(got)}")
    if kind == "extra_forbidden":
        allowed = _fields_at(root, loc[:-1])
        hint = did_you_mean(loc[-1], allowed)
        return Problem(path, f"unknown key '{loc[-1]}'{hint}; allowed: {', '.join(allowed)}")
    if kind == "string_pattern_mismatch" and detail["ctx"]["pattern"].startswith("^[a-z0-9]"):
        return Problem(path, f"must be a lowercase slug (a-z, 0-9, '-', '_'), got {_short(got)}")
    if kind == "missing":
        return Problem(path, "required field is missing")
    if kind == "literal_error":
        choices = _QUOTED.findall(detail["ctx"]["expected"])
        hint = did_you_mean(got, choices)
        return Problem(path, f"must be one of {', '.join(choices)}, got {got!r}{hint}")
    message = detail["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    if kind.startswith("value_error") or kind == "assertion_error":
        return Problem(path, message)
    return Problem(path, f"{message}, got {_short(got)}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(root: type[BaseModel], loc: tuple[PathPart, ...]) -> list[str]:
    """Field names of the model at ``loc`` (walking annotations and union tags), or []."""
    current: Any = root
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    model = _as_model(current)
    return list(model.model_fields) if model is not None else []


def _step(annotation: Any, part: PathPart) -> Any:
    model = _as_model(annotation)
    if isinstance(part, str) and _TAG.match(part):
        return _union_member(annotation, part)
    if model is not None:
        field = model.model_fields.get(str(part))
        return field.annotation if field is not None else None
    args = typing.get_args(_strip(annotation))
    origin = typing.get_origin(_strip(annotation))
    if origin in (list, tuple) and isinstance(part, int):
        return args[0]
    if origin is dict:
        return args[1]
    return None


def _strip(annotation: Any) -> Any:
    """Remove Annotated wrappers and ``X | None``."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _as_model(annotation: Any) -> type[BaseModel] | None:
    stripped = _strip(annotation)
    return stripped if isinstance(stripped, type) and issubclass(stripped, BaseModel) else None


def _union_member(annotation: Any, tag: str) -> Any:
    """The member of a tagged union whose ``Tag`` is ``tag``."""
    for member in typing.get_args(_strip(annotation)):
        for meta in getattr(member, "__metadata__", ()):
            if getattr(meta, "tag", None) == tag:
                return typing.get_args(member)[0]
    return None
