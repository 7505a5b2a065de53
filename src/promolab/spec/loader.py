"""Read, write and fingerprint experiment specs (YAML or TOML)."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from promolab.errors import PathPart, Problem, SpecError
from promolab.spec.hints import problems_from_validation
from promolab.spec.models import ExperimentSpec
from promolab.spec.rollout import RolloutSpec

type AnySpec = ExperimentSpec | RolloutSpec

SPEC_SUFFIXES = (".yaml", ".yml", ".toml")
LineMap = dict[tuple[PathPart, ...], int]
MAX_SPEC_BYTES = 1 << 20  # a spec is a page of text; 1 MiB is far beyond any real one
MAX_NODES = 100_000  # values in a spec once YAML aliases are expanded ("billion laughs" stops here)
MAX_DEPTH = 64  # nesting levels of mappings and lists


def load_spec(path: str | Path, default_data: Mapping[str, Any] | None = None) -> ExperimentSpec:
    """Load and validate a spec file; raise :class:`SpecError` listing every problem.

    Relative data paths in the spec resolve against the spec file's folder. ``default_data`` is the
    ``data`` block of a spec file that has none (the notebook API makes one from its DataFrames).
    """
    path = Path(path)
    raw, lines = _read(path)
    if default_data is not None and isinstance(raw, dict) and "data" not in raw:
        raw = {**raw, "data": dict(default_data)}
    spec = spec_from_dict(raw, source=str(path), lines=lines)
    spec._source = str(absolute(path))
    return spec


def load(path: str | Path) -> AnySpec:
    """Load either kind of spec: a randomised experiment, or a rollout (a spec with a ``rollout``
    block, :mod:`promolab.spec.rollout`)."""
    path = Path(path)
    raw, lines = _read(path)
    spec: AnySpec
    if isinstance(raw, dict) and "rollout" in raw:
        spec = _validated(RolloutSpec, raw, str(path), lines)
    else:
        spec = _validated(ExperimentSpec, raw, str(path), lines)
    spec._source = str(absolute(path))
    return spec


def spec_from_dict(raw: object, source: str | None = None, lines: LineMap | None = None) -> ExperimentSpec:
    """Validate a mapping (as parsed from YAML/TOML/JSON) into a spec."""
    if isinstance(raw, dict) and "rollout" in raw:
        message = "this is a rollout spec (it has a 'rollout' block): load it with promolab.spec.load"
        raise SpecError([Problem(("rollout",), message)], source)
    return _validated(ExperimentSpec, raw, source, lines)


def _validated[M: (ExperimentSpec, RolloutSpec)](
    model: type[M], raw: object, source: str | None, lines: LineMap | None
) -> M:
    if raw is None:
        raise SpecError(
            [Problem((), "the spec is empty; expected a mapping of fields (id, name, ...)")], source
        )
    if not isinstance(raw, dict):
        raise SpecError(
            [Problem((), f"a spec must be a mapping of fields, got {type(raw).__name__}")], source
        )
    _check_depth(raw, source or "<spec>")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = problems_from_validation(error, model)
        raise SpecError(problems).with_source(source or "<spec>", lines or {}) from None
    except SpecError as error:
        raise error.with_source(source or "<spec>", lines or {}) from None


def spec_to_dict(spec: AnySpec) -> dict[str, Any]:
    """Plain JSON-compatible mapping of the spec with defaults left out (what a user writes)."""
    return spec.model_dump(mode="json", exclude_defaults=True, by_alias=True)


def dump_spec(spec: ExperimentSpec) -> str:
    """YAML text of the spec; ``load_spec`` of it gives an equal spec.

    Non-ASCII text is written as is, unless that would not read back identically (YAML folds
    characters such as U+0085 NEL into line breaks): then every such character is escaped.
    """
    data = spec_to_dict(spec)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if yaml.safe_load(text) != data:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
    return text


def spec_hash(spec: AnySpec) -> str:
    """sha256 of the spec's canonical JSON (all fields, sorted keys): identifies what produced a result.

    -0.0 is written as 0.0, so specs that compare equal hash equal.
    """
    fields = spec.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return value + 0.0  # -0.0 + 0.0 == 0.0
    return value


def resolve_data_path(spec: AnySpec, path: str, data_dir: str | Path | None = None) -> Path:
    """Absolute path of a data file named in the spec.

    A relative path resolves against ``data_dir`` when given (e.g. simulated data), else against the
    spec file's folder (else the working directory for specs built in Python).
    """
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    base = Path(data_dir) if data_dir is not None else Path(spec._source or "x").parent
    return absolute(base / candidate)


def absolute(path: Path) -> Path:
    """``path`` resolved (links followed); only made absolute when it cannot be (a loop of links), so
    that the later read names the problem."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def with_data(spec: ExperimentSpec, **changes: object) -> ExperimentSpec:
    """A copy of the spec with fields of its ``data`` block replaced (validated again)."""
    raw = spec.model_dump(mode="json", by_alias=True)
    raw["data"] = {**raw["data"], **changes}
    updated = spec_from_dict(raw, source=spec._source)
    updated._source = spec._source
    return updated


# --------------------------------------------------------------------------- parsing


def _read(path: Path) -> tuple[object, LineMap]:
    if path.suffix not in SPEC_SUFFIXES:
        raise SpecError(
            [
                Problem(
                    (),
                    f"expected a {', '.join(SPEC_SUFFIXES)} file, got '{path.suffix or path.name}'",
                )
            ],
            str(path),
        )
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            message = f"the file is {path.stat().st_size:,} bytes; a spec may have at most {MAX_SPEC_BYTES:,}"
            raise SpecError([Problem((), message)], str(path))
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise SpecError([Problem((), f"cannot read the file: {reason}")], str(path)) from None
    except UnicodeDecodeError as error:
        message = f"the file is not UTF-8 text (byte {error.start}); save it as UTF-8"
        raise SpecError([Problem((), message)], str(path)) from None
    if "\x00" in text:
        raise SpecError([Problem((), "the file holds a NUL byte; a spec is plain text")], str(path))
    if path.suffix == ".toml":
        try:
            raw: object = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise SpecError([Problem((), f"invalid TOML: {error}")], str(path)) from None
        except RecursionError:
            raise SpecError([Problem((), _too_deep())], str(path)) from None
        _check_depth(raw, str(path))
        return raw, {}
    return _read_yaml(text, str(path))


def _too_deep() -> str:
    return f"nested more than {MAX_DEPTH} levels deep; a spec is a few levels of mappings and lists"


def _check_depth(raw: object, source: str) -> None:
    """Refuse values nested deeper than ``MAX_DEPTH`` (walked without recursion)."""
    stack: list[tuple[object, int]] = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise SpecError([Problem((), _too_deep())], source)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one) and leaves dates as
    text, so that the spec model parses them (``2026-02-30`` is then a located problem, not a crash)."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping used as a key
            raise yaml.constructor.ConstructorError(
                None, None, "found unhashable key (a list or mapping used as a key)", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(text: str, source: str) -> tuple[object, LineMap]:
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        if node is not None:
            _check_size(node, source)
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise SpecError([Problem((), f"invalid YAML: {error.problem}", line)], source) from None
    except yaml.YAMLError as error:  # e.g. a reader error: characters YAML does not allow
        raise SpecError([Problem((), f"invalid YAML: {error}".splitlines()[0])], source) from None
    except RecursionError:
        raise SpecError([Problem((), _too_deep())], source) from None
    lines: LineMap = {}
    if node is not None:
        _index_lines(node, (), lines, set())
    return raw, lines


def _check_size(root: yaml.Node, source: str) -> None:
    """Refuse a document nested deeper than ``MAX_DEPTH`` or holding more than ``MAX_NODES`` values once
    its aliases are expanded (each node's expanded size is computed once, without recursion)."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        children = _children(node)
        if depth > MAX_DEPTH and children:
            raise SpecError([Problem((), _too_deep(), node.start_mark.line + 1)], source)
        if done:
            size[id(node)] = 1 + sum(size.get(id(child), 1) for child in children)
            if size[id(node)] > MAX_NODES:
                message = f"holds more than {MAX_NODES:,} values once its aliases are expanded"
                raise SpecError([Problem((), message, node.start_mark.line + 1)], source)
        elif id(node) not in size:
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in children if id(child) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _index_lines(node: yaml.Node, path: tuple[PathPart, ...], lines: LineMap, open_nodes: set[int]) -> None:
    """Record the 1-based line of every mapping key and sequence item below ``node``.

    ``open_nodes`` holds the nodes on the current path, so a self-referencing alias is not followed.
    """
    if id(node) in open_nodes:
        return
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            lines[child] = key_node.start_mark.line + 1
            _index_lines(value_node, child, lines, open_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(item, (*path, index), lines, open_nodes)
    open_nodes.discard(id(node))
