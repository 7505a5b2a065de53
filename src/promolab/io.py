"""Atomic file output: a reader never sees a half-written file, and a failed write leaves none.

- :func:`atomic_path` / :func:`write_text` / :func:`write_with`: one file, written beside its target and
  renamed onto it.
- :func:`publish_folder`: several files that belong together (a report's HTML, Markdown and JSON). They
  are written into a fresh hidden run folder; the public name is a symbolic link that is switched to the
  new run folder in one rename, so a kill or a full disk leaves the previous run's files or the new
  run's, never a mix. Run folders of interrupted runs are removed by the next run.
- :func:`check_outputs`: no output may be one of the command's inputs (promolab never overwrites what it
  was given), and a folder output must not be an existing file.

Every ``OSError`` of a write (read-only folder, full disk) becomes an :class:`OutputError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from promolab.errors import OutputError, printable

if TYPE_CHECKING:
    import pandas as pd

RUN_PREFIX = ".run-"  # hidden run folders of publish_folder: ``.<name>.run-<id>``


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename."""
    target = Path(target)
    with _writing(target):
        _make_folder(target.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _writing(target):
            tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; outputs get the permissions open() gives
        yield tmp
        with _writing(target):
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Turn a file-system failure while writing ``target`` into one clear :class:`OutputError`."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputError(f"{printable(target)}: cannot write ({reason})") from None


def _make_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{printable(folder)}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp, _writing(Path(target)):
        tmp.write_text(text, encoding="utf-8")


def json_text(payload: object) -> str:
    """``payload`` as indented JSON; NaN and infinities become null, NumPy scalars plain numbers."""
    return json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n"


def _finite(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_with(target: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp, _writing(Path(target)):
        writer(tmp)


def write_table(target: str | Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as Parquet or CSV (by the suffix of ``target``) atomically, without its index."""
    if Path(target).suffix.lower() == ".csv":
        write_with(target, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        write_with(target, lambda tmp: frame.to_parquet(tmp, index=False))


def publish_folder(target: str | Path, files: Mapping[str, str]) -> dict[str, Path]:
    """Write ``files`` (file name -> UTF-8 text) as the folder ``target``, all of one run or none.

    ``target`` is a symbolic link to a hidden run folder beside it (``.<name>.run-<id>``); the link is
    replaced in one rename once every file is written, then the previous run folder is removed. Runs
    that publish the same folder at once take turns (a lock file ``.<name>.lock`` beside it).

    Returns:
        The path of each file through ``target``.

    Raises:
        OutputError: ``target`` is an existing file or folder, or a link to anything but one of its own
            run folders (promolab never deletes what it did not make), or a write fails.
    """
    target = Path(target)
    with _writing(target):
        _make_folder(target.parent)
    with _writing(target), _locked(target.parent / f".{target.name}.lock"):
        previous = _own_run(target)
        _remove_stale_runs(target, previous)
        run = target.parent / f".{target.name}{RUN_PREFIX}{uuid.uuid4().hex[:12]}"
        run.mkdir()
        try:
            for name, text in files.items():
                _write_durably(run / name, text)
            link = target.parent / f".{target.name}.link-{uuid.uuid4().hex[:12]}"
            os.symlink(run.name, link)
            os.replace(link, target)
        except BaseException:
            shutil.rmtree(run, ignore_errors=True)
            raise
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    return {name: target / name for name in files}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) while the block runs."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _own_run(target: Path) -> Path | None:
    """The run folder ``target`` links to (None when there is no ``target`` yet).

    Raises:
        OutputError: ``target`` is anything else (a file, a folder, a link elsewhere).
    """
    if not target.exists() and not target.is_symlink():
        return None
    pointed = os.readlink(target) if target.is_symlink() else None
    ours = pointed is not None and pointed.startswith(f".{target.name}{RUN_PREFIX}") and "/" not in pointed
    if not ours:
        raise OutputError(
            f"{printable(target)}: exists and is not a promolab output folder (a link to one of its own "
            "runs); promolab does not replace it: move it away or choose another --out"
        )
    return target.parent / str(pointed)


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _remove_stale_runs(target: Path, current: Path | None) -> None:
    """Remove run folders and links of ``target`` left by interrupted runs (not the current one)."""
    for path in target.parent.glob(f".{target.name}.*"):
        rest = path.name[len(target.name) + 1 :]
        if not (rest.startswith(RUN_PREFIX) or rest.startswith(".link-")) or path == current:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def check_writable(target: Path, option: str, folder: bool) -> None:
    """Fail before any work when ``target`` cannot be written: a file output that is an existing folder,
    a folder output that is an existing file, or a nearest existing parent that is not a writable folder.

    Raises:
        OutputError: naming the option and the path.
    """
    if not folder and target.is_dir():
        raise OutputError(f"{option} {printable(target)}: is a folder; expected a file to write")
    if folder and target.exists() and not target.is_dir():
        raise OutputError(f"{option} {printable(target)}: is a file; expected a folder")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {printable(target)}: {printable(parent)} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {printable(target)}: the folder {printable(parent)} is not writable")


def check_outputs(
    inputs: Iterable[Path | None],
    files: Mapping[str, Path | None] | None = None,
    folders: Mapping[str, Path | None] | None = None,
) -> None:
    """No output is one of the inputs: a file output is not an input file (by resolved path, or the same
    file through another name), and a folder output that a run replaces holds no input.

    Args:
        inputs: every file the command reads.
        files: option name (``--json``) -> the file it writes (None: not asked for).
        folders: option name -> a folder replaced as a whole (:func:`publish_folder`).

    Raises:
        OutputError: naming the option, the path and the input it would overwrite.
    """
    read = [Path(p) for p in inputs if p is not None]
    for option, output in (files or {}).items():
        for source in read:
            if output is not None and same_file(Path(output), source):
                raise OutputError(
                    f"{option} {printable(output)}: is an input of this command ({printable(source)}); "
                    "promolab never overwrites its inputs"
                )
    for option, folder in (folders or {}).items():
        for source in read:
            if folder is not None and _inside(source, Path(folder)):
                raise OutputError(
                    f"{option}: {printable(folder)} would be replaced, but it holds an input of this command "
                    f"({printable(source)}); write elsewhere or move the input out first"
                )


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (equal once resolved, or the same inode); False for a loop."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a symlink loop: cannot be the same as a readable input
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False
