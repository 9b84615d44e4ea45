"""Safe outputs: a result appears complete under its final name, or not at all, and nothing else is lost.

Every writer in ladsim writes to a temporary sibling and renames it into place when complete, so an
interrupted run never leaves a half-written file or run directory behind. Run directories follow stricter rules
(``claimed_dir``):

* the output is checked before any work starts (``check_out_dir``, ``check_out_file``): it must not be the
  working directory or one of its parents, its nearest existing ancestor must be a writable directory, and an
  existing output is replaced only with ``overwrite`` and only when it is a directory ladsim wrote itself
  (it carries the marker file ``MARKER``), never a regular file, a device or a user's own directory;
* the output is claimed exclusively when work starts (``mkdir`` plus a lock file created with ``O_EXCL``), so
  of two processes writing the same path exactly one proceeds and the other fails at once;
* JSON is strict: ``NaN`` and infinities are written as ``null`` (``to_jsonable``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MARKER = ".ladsim-run"  # written into every run directory; --overwrite replaces only directories holding it
LOCK = ".ladsim-lock"  # created exclusively in a claimed output while a process writes it


class OutputError(OSError):
    """An output path that must not or cannot be written (reported as one line by the CLI)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _check_parent_writable(out: Path, flag: str) -> None:
    """The nearest existing ancestor of ``out`` must be a directory we can create entries in.

    Probed by creating (and at once removing) a hidden directory: permission bits say nothing for root, and
    ``/proc``-like file systems refuse regardless of them.
    """
    ancestor = _nearest_existing(out.parent if str(out.parent) else Path("."))
    if not ancestor.is_dir():
        raise OutputError(f"{flag} {out}: {ancestor} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ladsim-probe.", dir=ancestor))
    except OSError as err:
        raise OutputError(f"{flag} {out}: cannot write in {ancestor} ({err.strerror or err})") from None


def _is_cwd_or_parent(out: Path) -> bool:
    try:
        target = out.resolve()
        return Path.cwd().resolve().is_relative_to(target)
    except OSError:
        return False


def is_ladsim_dir(path: Path) -> bool:
    """Whether ``path`` is a directory ladsim wrote (it holds ``MARKER``)."""
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


def check_out_dir(out: str | os.PathLike, overwrite: bool, flag: str = "--out", unique: bool = False) -> Path:
    """Validate a run directory before any work starts; raises ``FileExistsError`` or ``OutputError``.

    ``unique``: ``out`` is a proposed default name that the claim moves past (``-2``, ``-3``, ...) when another
    process takes it first, so its existence is no error; only the parent must be writable.
    """
    out = Path(out)
    if not str(out) or _is_cwd_or_parent(out):
        raise OutputError(f"{flag} {str(out) or repr('')} is the working directory or one of its parents; "
                          f"choose a new directory")
    if (out.exists() or out.is_symlink()) and not unique:
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it or choose another {flag}")
        if out.is_symlink() or not out.is_dir():
            raise OutputError(f"{flag} {out} exists and is not a directory; --overwrite replaces only "
                              f"directories ladsim wrote")
        if not is_ladsim_dir(out):
            raise OutputError(f"{flag} {out} is not a ladsim run directory (no {MARKER} file); --overwrite "
                              f"replaces only directories ladsim wrote, so remove or rename it yourself")
    _check_parent_writable(out, flag)
    return out


def check_out_file(path: str | os.PathLike, flag: str = "--json") -> Path:
    """Validate an output file path before any work starts (not a directory, parent writable)."""
    path = Path(path)
    if not str(path) or path.is_dir():
        raise OutputError(f"{flag} {path} is a directory; give a file path")
    if path.exists() and not path.is_file():
        raise OutputError(f"{flag} {path} exists and is not a regular file")
    _check_parent_writable(path, flag)
    return path


def unique_path(stem: str | os.PathLike) -> Path:
    """``stem``, or ``stem-2``, ``stem-3``, ... : the first that does not exist yet (default run names).

    The name is only a proposal: ``claimed_dir(..., unique=True)`` claims it exclusively and moves on to the
    next suffix when another process took it first.
    """
    stem = Path(stem)
    candidate, i = stem, 1
    while candidate.exists() or candidate.is_symlink():
        i += 1
        candidate = stem.with_name(f"{stem.name}-{i}")
    return candidate


def _create_lock(directory: Path, out: Path) -> None:
    try:
        fd = os.open(directory / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise OutputError(f"another ladsim process is writing {out} (or one was killed: remove "
                          f"{directory / LOCK})") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.getpid()}\n")


def _claim(out: Path, overwrite: bool, unique: bool) -> tuple[Path, bool]:
    """Claim ``out`` for this process; returns ``(out, created)``. A new directory is created with ``mkdir``
    (exclusive) and locked; an existing ladsim directory (``overwrite``) is locked."""
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out
    for i in range(2, 10_000):
        if overwrite and is_ladsim_dir(out):
            _create_lock(out, out)
            return out, False
        try:
            os.mkdir(out)
        except FileExistsError:
            if not unique:
                raise OutputError(f"{out} was created by another process meanwhile; choose another --out") from None
            out = base.with_name(f"{base.name}-{i}")
            continue
        _create_lock(out, out)
        return out, True
    raise OutputError(f"no free name for {base}")


class _Claim:
    """What ``claimed_dir`` yields: ``tmp`` (write here) and ``out`` (the final path, chosen when claimed)."""

    def __init__(self, tmp: Path, out: Path) -> None:
        self.tmp, self.out = tmp, out


@contextmanager
def claimed_dir(out: str | os.PathLike, overwrite: bool = False, unique: bool = False) -> Iterator[_Claim]:
    """Yield a fresh temporary directory beside ``out`` (``claim.tmp``); on success it is renamed to the final
    path ``claim.out`` (with ``unique`` it can differ from ``out``).

    ``out`` is validated (``check_out_dir``) and claimed exclusively on entry. On any exception
    (``KeyboardInterrupt`` and ``SystemExit`` included) the temporary directory is removed and ``out`` is left
    exactly as it was.
    """
    out = check_out_dir(out, overwrite, unique=unique)
    out, created = _claim(out, overwrite, unique)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except BaseException:
        _release(out, created)
        raise
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700); a result is as readable as any file
    try:
        (tmp / MARKER).write_text("written by ladsim; `--overwrite` may replace this directory\n")
        yield _Claim(tmp, out)
        _commit(tmp, out, created)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _release(out, created)
        raise


def _release(out: Path, created: bool) -> None:
    (out / LOCK).unlink(missing_ok=True)
    if created:
        try:
            out.rmdir()
        except OSError:
            pass


def _commit(tmp: Path, out: Path, created: bool) -> None:
    if created:  # `out` is our empty claimed directory: rename(2) replaces an empty directory atomically
        (out / LOCK).unlink()
        os.replace(tmp, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old.tmp", dir=out.parent))
    os.replace(out, trash)  # the old run, lock included, moves aside in one step
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(trash, out)
        (out / LOCK).unlink(missing_ok=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a directory; give a file path")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600)
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def to_jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON ``null``: unknown), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (non-finite numbers as ``null``), atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False)
    with atomic_file(path) as tmp:
        tmp.write_text(text + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text``, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
