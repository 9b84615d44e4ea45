"""Safe outputs: a result appears complete under its final name, or not at all, and nothing else is lost.

Every writer in ladsim writes to a temporary sibling and renames it into place when complete, so an
interrupted run never leaves a half-written file or run directory behind. Run directories follow stricter rules
(``claimed_dir``):

* the output is checked before any work starts (``check_out_dir``, ``check_out_file``): it must not be the
  working directory or one of its parents, its nearest existing ancestor must be a writable directory, and an
  existing output is replaced only with ``overwrite`` and only when it is a directory ladsim wrote itself
  (it carries the marker file ``MARKER``), never a regular file, a device or a user's own directory;
* the output is claimed exclusively when work starts (``mkdir`` plus a lock file that appears already locked
  with ``flock``), so of two processes writing the same path exactly one proceeds and the other fails at once;
* whatever a run claimed or created (its output directory, the parent directories it made, its temporary
  directory) is removed again on every exit path that Python sees (exceptions, ``KeyboardInterrupt``,
  ``SystemExit``); a process that dies where Python cannot clean up (``SIGKILL``, a C library calling
  ``exit``) holds its ``flock`` no longer, so the next run to the same output recognizes the abandoned claim,
  takes it over and removes what the dead run left (``claimed_dir``);
* the marker ``MARKER`` is trusted only as a regular file (no symlink, one link) holding exactly
  ``MARKER_TEXT``, the text ladsim writes;
* JSON is strict: ``NaN`` and infinities are written as ``null`` (``to_jsonable``).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MARKER = ".ladsim-run"  # written into every run directory; --overwrite replaces only directories holding it
MARKER_TEXT = "written by ladsim; `--overwrite` may replace this directory\n"  # the marker's exact contents
LOCK = ".ladsim-lock"  # in a claimed output while a process writes it; flock-ed by that process


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


def is_marker(path: Path) -> bool:
    """Whether ``path`` is a marker ladsim wrote: a regular file (not a symlink), with one link, holding exactly
    ``MARKER_TEXT`` (a file a user named ``.ladsim-run``, or a link to one, is not trusted)."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size != len(MARKER_TEXT.encode()):
            return False
        with open(path, "rb") as handle:
            return handle.read() == MARKER_TEXT.encode()
    except OSError:
        return False


def is_ladsim_dir(path: Path) -> bool:
    """Whether ``path`` is a directory ladsim wrote: a real directory (not a symlink) holding a true marker."""
    return path.is_dir() and not path.is_symlink() and is_marker(path / MARKER)


def make_parents(path: Path) -> list[Path]:
    """Create the missing ancestors of ``path`` one by one; return those this call created, outermost first
    (a directory another process creates meanwhile is not ours). Undo with :func:`remove_created`."""
    missing = []
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            break
        missing.append(parent)
    created = []
    try:
        for parent in reversed(missing):
            try:
                os.mkdir(parent)
            except FileExistsError:
                continue
            created.append(parent)
    except BaseException:
        remove_created(created)
        raise
    return created


def remove_created(directories: list[Path]) -> None:
    """Remove the directories :func:`make_parents` created, innermost first, each only while it is empty."""
    for directory in reversed(directories):
        try:
            os.rmdir(directory)
        except OSError:
            return  # not empty (someone else's files now live there) or gone: leave it and its parents


def check_out_dir(out: str | os.PathLike, overwrite: bool, flag: str = "--out", unique: bool = False) -> Path:
    """Validate a run directory before any work starts; raises ``FileExistsError`` or ``OutputError``.

    ``unique``: ``out`` is a proposed default name that the claim moves past (``-2``, ``-3``, ...) when another
    process takes it first, so its existence is no error; only the parent must be writable.
    """
    out = Path(out)
    if not str(out) or _is_cwd_or_parent(out):
        raise OutputError(f"{flag} {str(out) or repr('')} is the working directory or one of its parents; "
                          f"choose a new directory")
    if (out.exists() or out.is_symlink()) and not unique and not is_abandoned_claim(out):
        if is_claimed(out):
            raise OutputError(f"another ladsim process is writing {out}; wait for it or choose another {flag}")
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


class _Lock:
    """The lock file of a claimed output, held with ``flock`` through the open file ``fd`` for as long as the
    claim lasts: the kernel releases it when the process ends, however it ends."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def note(self, tmp: Path) -> None:
        """Record the claim's temporary directory, so that whoever takes over an abandoned claim removes it."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n{tmp.name}\n".encode(), 0)

    def release(self, unlink: bool = True) -> None:
        """Remove the lock file (while still holding it; ``unlink=False``: leave it) and let go of the lock.
        Releasing twice is harmless."""
        if self.fd < 0:
            return
        try:
            if unlink and _same_file(self.fd, self.path):
                self.path.unlink()
        finally:
            os.close(self.fd)
            self.fd = -1


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _create_lock(directory: Path, out: Path) -> _Lock:
    """A new lock file in ``directory``, locked before it appears (made under a hidden name, locked, then linked
    into place with ``link(2)``, which fails when a lock is already there); else :func:`_take_over`."""
    fd, name = tempfile.mkstemp(prefix=f"{LOCK}.", suffix=".new", dir=directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            os.link(name, directory / LOCK)
        except FileExistsError:
            os.close(fd)
            fd = -1
            return _take_over(directory, out)
        return _Lock(directory / LOCK, fd)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    finally:
        os.unlink(name)


def _held(path: Path) -> bool:
    """Whether some live process holds the lock file ``path`` (a process that died holds nothing)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def is_claimed(out: Path) -> bool:
    """Whether a live process holds ``out``'s lock (it is writing there now)."""
    return out.is_dir() and not out.is_symlink() and _held(out / LOCK)


def is_abandoned_claim(out: Path) -> bool:
    """Whether ``out`` is an output a dead process claimed and never filled: a real directory holding only an
    unheld lock file (the claim is free again; :func:`claimed_dir` takes it over)."""
    try:
        if out.is_symlink() or not out.is_dir():
            return False
        return sorted(os.listdir(out)) == [LOCK] and not _held(out / LOCK)
    except OSError:
        return False


def _take_over(directory: Path, out: Path) -> _Lock:
    """Take the lock of ``directory`` over from a process that died holding it, and remove the temporary
    directory it had noted; ``OutputError`` while the lock is held by a live process."""
    path = directory / LOCK
    busy = OutputError(f"another ladsim process is writing {out}; wait for it or choose another --out")
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        raise busy from None  # released meanwhile: the other process just finished or failed
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise busy from None
    if not _same_file(fd, path):  # the holder released (unlinked) it between our open and our flock
        os.close(fd)
        raise busy
    noted = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()[1:2]
    tmp = out.parent / noted[0] if noted else None
    if tmp is not None and tmp.name.startswith(f".{out.name}.") and tmp.name.endswith(".tmp") \
            and tmp.is_dir() and not tmp.is_symlink() and is_ladsim_dir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return _Lock(path, fd)


def _claim(out: Path, overwrite: bool, unique: bool) -> tuple[Path, bool, _Lock, list[Path]]:
    """Claim ``out`` for this process; returns ``(out, created, lock, parents)``. A new directory is created
    with ``mkdir`` (exclusive) and locked; an existing ladsim directory (``overwrite``) is locked; an abandoned
    claim (:func:`is_abandoned_claim`) is taken over as if created. ``parents``: the ancestors this call
    created (removed again when the claim is released without a result)."""
    parents = make_parents(out)
    base = out
    try:
        for i in range(2, 10_000):
            if overwrite and is_ladsim_dir(out):
                return out, False, _create_lock(out, out), parents
            try:
                os.mkdir(out)
            except FileExistsError:
                if is_abandoned_claim(out):
                    return out, True, _take_over(out, out), parents
                if not unique:
                    raise OutputError(f"{out} was created by another process meanwhile; choose another --out") \
                        from None
                out = base.with_name(f"{base.name}-{i}")
                continue
            try:
                return out, True, _create_lock(out, out), parents
            except BaseException:
                os.rmdir(out)
                raise
        raise OutputError(f"no free name for {base}")
    except BaseException:
        remove_created(parents)
        raise


class _Claim:
    """What ``claimed_dir`` yields: ``tmp`` (write here) and ``out`` (the final path, chosen when claimed)."""

    def __init__(self, tmp: Path, out: Path) -> None:
        self.tmp, self.out = tmp, out


@contextmanager
def claimed_dir(out: str | os.PathLike, overwrite: bool = False, unique: bool = False) -> Iterator[_Claim]:
    """Yield a fresh temporary directory beside ``out`` (``claim.tmp``); on success it is renamed to the final
    path ``claim.out`` (with ``unique`` it can differ from ``out``).

    ``out`` is validated (``check_out_dir``) and claimed exclusively on entry. On any exception
    (``KeyboardInterrupt`` and ``SystemExit`` included) the temporary directory, the claimed directory when
    this call created it, and every parent directory it created are removed, and the lock released: ``out``
    and its parents are left exactly as they were. A claim abandoned by a process that died (its lock no
    longer held) is taken over, and its temporary directory removed.
    """
    out = check_out_dir(out, overwrite, unique=unique)
    out, created, lock, parents = _claim(out, overwrite, unique)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        lock.note(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700); a result is as readable as any file
        (tmp / MARKER).write_text(MARKER_TEXT)
        yield _Claim(tmp, out)
        _commit(tmp, out, created, lock)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _release(out, created, lock, parents)
        raise


def _release(out: Path, created: bool, lock: _Lock, parents: list[Path]) -> None:
    lock.release()
    if created:
        try:
            out.rmdir()
        except OSError:
            pass
    remove_created(parents)


def _commit(tmp: Path, out: Path, created: bool, lock: _Lock) -> None:
    if created:  # `out` is our empty claimed directory: rename(2) replaces an empty directory atomically
        lock.release()
        os.replace(tmp, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old.tmp", dir=out.parent))
    os.replace(out, trash)  # the old run, lock included, moves aside in one step
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(trash, out)
        raise
    lock.release(unlink=False)  # the lock file went aside with the old run
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically. On any exception the
    temporary file and the parent directories this call created are removed."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a directory; give a file path")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists")
    parents = make_parents(path)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600)
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        remove_created(parents)
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
