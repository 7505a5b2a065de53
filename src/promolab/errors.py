"""Error types shared by every step. The CLI maps each to exit code 2 with one line per problem.

A problem names the place (file, line, field path), what was expected and what was got:
``experiments/spring.yaml:12: variants[2].value: percent_off must be in (0, 100), got 150``.

User text inside a message (labels, column names, paths) may hold control characters; every line is
passed through :func:`printable` before it is shown, so a label cannot forge a line or an escape code.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathPart = str | int

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``text`` with control and format characters (newlines, ANSI escapes, bidi overrides, line
    separators) written as escapes, so it stays on one line and shows what it holds.

    >>> printable("ok\\n\\x1b[31merror: forged")
    'ok\\\\n\\\\x1b[31merror: forged'
    """
    return "".join(_escaped(char) for char in str(text))


def _escaped(char: str) -> str:
    if unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return char
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"


def first_line(error: BaseException) -> str:
    """The first line of an error message, escaped (it may quote user data)."""
    lines = str(error).strip().splitlines()
    return printable(lines[0]) if lines else type(error).__name__


def quoted(names: Iterable[object]) -> str:
    """``'a', 'b'``: names quoted and joined for a message.

    >>> quoted(["control", "pct15"])
    "'control', 'pct15'"
    """
    return ", ".join(f"'{name}'" for name in names)


def format_path(path: Sequence[PathPart]) -> str:
    """Render a field path as users write it: ``variants[2].value``.

    >>> format_path(("variants", 2, "value"))
    'variants[2].value'
    >>> format_path(())
    '<spec>'
    """
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<spec>"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where (field path and YAML line if known) and what."""

    path: tuple[PathPart, ...]
    message: str
    line: int | None = None

    def render(self, source: str | None = None) -> str:
        place = ":".join(str(p) for p in (source, self.line) if p is not None)
        parts = [place, format_path(self.path) if self.path else "", self.message]
        return ": ".join(part for part in parts if part)


class PromolabError(Exception):
    """Base of every error promolab raises on purpose (the CLI prints it without a traceback).

    ``message`` is one problem, or a sequence of problems (one line each).
    """

    def __init__(self, message: str | Sequence[str]) -> None:
        self.lines = (message,) if isinstance(message, str) else tuple(message)
        super().__init__("\n".join(self.lines))


class SpecError(PromolabError):
    """A spec is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__([p.render(source) for p in self.problems])

    def with_source(self, source: str, lines: dict[tuple[PathPart, ...], int]) -> SpecError:
        """Attach the file name and the YAML line of each problem's nearest known field."""
        located = [Problem(p.path, p.message, p.line or _nearest_line(p.path, lines)) for p in self.problems]
        return SpecError(located, source)


class DataError(PromolabError):
    """Data files are missing, unreadable, or do not match the spec."""


class OutputError(PromolabError):
    """An output cannot be written where it was asked for (it is an input, a file is not a folder, the
    folder is read-only or full)."""


def _nearest_line(path: tuple[PathPart, ...], lines: dict[tuple[PathPart, ...], int]) -> int | None:
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
