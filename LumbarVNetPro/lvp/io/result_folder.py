"""A result folder always holds one run's result, whole: staged, locked, swapped in at once.

``lvp infer`` writes a case's files into a fresh hidden sibling of the target folder
(``.tmp-<pid>-<name>-<token>``) and, once everything including ``report.json`` is written, swaps
it with the target in one step:

* on Linux with ``renameat2(RENAME_EXCHANGE)`` (ext4, xfs, btrfs, tmpfs): the two folders are
  exchanged atomically; the previous result, now in the temporary name, is then removed;
* elsewhere: the previous result is renamed aside (``.old-<pid>-<name>-<token>``), the new one
  renamed into place, the old one removed. A crash between the two renames leaves no target
  folder but both results whole; the next run into that folder restores the previous one first.

So a reader of the target sees the previous result or the new one, never a mixture; files the
new run does not write (``report.html`` after ``--no-html``) are gone with the previous result.

Two runs into one folder: an advisory lock (``.<name>.lock`` beside the target; ``flock`` on
POSIX, ``msvcrt.locking`` on Windows) is held from before the input is read until the swap. A
second run does not wait: it fails at once with :class:`~lvp.errors.OutputError` naming the
process holding the lock (waiting would silently replace the first run's result).

Temporaries of killed runs (``.tmp-*`` / ``.old-*`` of this target whose process is dead) are
removed by the next run into the same folder, under the lock.

An existing target is replaced only when it is an LVP result (it holds an LVP ``report.json``, or
only file names LVP writes) or empty: a user's folder of other files is refused, never deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

from lvp.errors import OutputError

TEMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
# What an LVP result folder may hold (an earlier version also left ``.tmp-*`` files on a crash).
KNOWN_OUTPUTS = frozenset({
    "report.json", "report.html", "segmentation.nii.gz", "segmentation.seg.nrrd", "semantic.nii.gz",
    "segmentation.dcm", "sr.dcm", "seg.dcm",
})


def lock_path(target: Path) -> Path:
    """The lock file of a result folder: a hidden sibling (the folder itself is swapped)."""
    return target.parent / f".{target.name}.lock"


def is_lvp_result(folder: Path) -> bool:
    """Whether ``folder`` holds an LVP result (so a new run may replace it)."""
    report = folder / "report.json"
    if report.is_file():
        try:
            if json.loads(report.read_text(encoding="utf-8")).get("schema") == "lvp-report":
                return True
        except (OSError, ValueError, AttributeError):
            pass
    return all(p.name in KNOWN_OUTPUTS or p.name.startswith(TEMP_PREFIX) for p in folder.iterdir())


def check_output_dir(path: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Check that ``path`` can receive a result, before any work is spent; return it resolved.

    Refused with :class:`OutputError`: a path that is a file, a path under a file, a location
    that cannot be written, an existing folder holding other things than an LVP result, and a
    folder holding one of the run's ``inputs`` (the result replaces the folder as a whole).
    """
    target = Path(path).expanduser()
    target = target.resolve() if target.is_symlink() else Path(os.path.abspath(target))
    if Path(os.path.realpath(os.getcwd())).is_relative_to(os.path.realpath(target)):
        raise OutputError(f"the output folder {target} is the current folder or holds it; a run replaces its output "
                          "folder as a whole: choose a sub-folder, e.g. -o results")
    for item in inputs:
        if item is not None and Path(os.path.realpath(item)).is_relative_to(os.path.realpath(target)):
            raise OutputError(f"the input {item} lies inside the output folder {target}, which a run replaces as a "
                              "whole; choose another output folder")
    if target.exists() and not target.is_dir():
        raise OutputError(f"the output path {target} is a file, not a folder; choose a folder name")
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"the output folder {target} cannot be created: {existing} is a file")
    if not _can_write_in(existing):
        raise OutputError(f"the output folder {target} cannot be written: no file can be created in {existing} "
                          "(read-only or no permission; a result is written beside the folder and swapped in, "
                          "so its parent folder must be writable); choose another output folder")
    if target.is_dir():
        try:
            if not is_lvp_result(target):
                others = sorted(p.name for p in target.iterdir()
                                if p.name not in KNOWN_OUTPUTS and not p.name.startswith(TEMP_PREFIX))
                raise OutputError(
                    f"the output folder {target} holds files that are not an LVP result ({', '.join(others[:3])}"
                    f"{', ...' if len(others) > 3 else ''}); a run replaces its output folder as a whole, so "
                    "choose an empty or new folder"
                )
        except PermissionError:
            raise OutputError(f"the output folder {target} cannot be read (permission denied)") from None
    return target


def _can_write_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried: permissions, read-only mounts, ACLs)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return True


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (ours counts as alive)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # pragma: no cover - Windows
        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # type: ignore[attr-defined]
        if handle:
            ctypes.windll.kernel32.CloseHandle(handle)  # type: ignore[attr-defined]
            return True
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user
    return True


def _temp_pid(name: str, target_name: str) -> int | None:
    """The PID in ``.tmp-<pid>-<target>-<token>`` / ``.old-...`` names of ``target_name``, else None."""
    for prefix in (TEMP_PREFIX, OLD_PREFIX):
        if name.startswith(prefix):
            pid, sep, rest = name[len(prefix):].partition("-")
            if sep and pid.isdigit() and rest.rsplit("-", 1)[0] == target_name:
                return int(pid)
    return None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2``); False where not supported."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _Lock:
    """An exclusive, non-blocking advisory lock on a file (kept; removing lock files races)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh: IO[str] | None = None

    def acquire(self, what: Path) -> None:
        try:
            fh = open(self.path, "a+", encoding="utf-8")  # held until release()
        except OSError as err:
            raise OutputError(f"the output folder {what} cannot be locked ({err.strerror}: {self.path})") from None
        if not _try_lock(fh):
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise OutputError(f"the output folder {what} is being written by another lvp run ({holder}); "
                              "wait for it to finish or choose another output folder")
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        self.fh = fh

    def release(self) -> None:
        if self.fh is not None:
            with contextlib.suppress(OSError):
                self.fh.seek(0)
                self.fh.truncate()
            _unlock(self.fh)
            self.fh.close()
            self.fh = None


def _try_lock(fh: IO[str]) -> bool:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fh: IO[str]) -> None:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        with contextlib.suppress(OSError):
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    import fcntl

    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class ResultFolder:
    """Context manager: lock ``target``, give a staging folder to write in, swap it in on commit.

    >>> with ResultFolder(out) as folder:      # doctest: +SKIP
    ...     write_everything(folder.staging)
    ...     folder.commit()

    Leaving the block without :meth:`commit` (an error, SIGTERM) removes the staging folder and
    leaves the target as it was.
    """

    def __init__(self, target: str | Path, inputs: Iterable[str | Path | None] = ()):
        self.target = check_output_dir(target, inputs)
        self.staging: Path = self.target  # set by __enter__
        self._lock = _Lock(lock_path(self.target))
        self._token = secrets.token_hex(4)
        self.committed = False

    def _temp(self, prefix: str) -> Path:
        return self.target.parent / f"{prefix}{os.getpid()}-{self.target.name}-{self._token}"

    def __enter__(self) -> ResultFolder:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"the output folder {self.target} cannot be created: {err.strerror}") from None
        self._lock.acquire(self.target)
        staging = self._temp(TEMP_PREFIX)
        try:
            self.clean_stale()
            check_output_dir(self.target)  # again, under the lock
            staging.mkdir()
            self.staging = staging
        except BaseException:
            # SIGTERM (raised as an exception) can land here, after the mkdir: __exit__ will not
            # run for a failed __enter__, so the staging folder is removed here.
            try:
                _remove(staging)
            finally:
                self._lock.release()
            raise
        return self

    def clean_stale(self) -> list[Path]:
        """Remove temporaries of dead runs into this folder; restore a result a crash left aside."""
        removed = []
        leftovers = [(p, _temp_pid(p.name, self.target.name)) for p in self.target.parent.iterdir()]
        dead = [(p, pid) for p, pid in leftovers if pid is not None and not pid_alive(pid)]
        if not self.target.exists():
            # A crash between "old result aside" and "new result in": put the old one back.
            old = sorted((p for p, _ in dead if p.name.startswith(OLD_PREFIX)), key=lambda p: p.stat().st_mtime)
            if old:
                os.rename(old[-1], self.target)
                dead = [(p, pid) for p, pid in dead if p != old[-1]]
        for path, _ in dead:
            _remove(path)
            removed.append(path)
        return removed

    def commit(self) -> None:
        """Swap the staging folder in as the target (atomic where the system allows)."""
        try:
            if not self.target.exists():
                os.rename(self.staging, self.target)
            elif _exchange(self.staging, self.target):
                _remove(self.staging)  # now the previous result
            else:
                old = self._temp(OLD_PREFIX)
                os.rename(self.target, old)
                os.rename(self.staging, self.target)
                _remove(old)
        except OSError as err:
            raise OutputError(f"the result could not be moved into {self.target} ({err.strerror}); the folder "
                              "keeps its previous content") from None
        self.committed = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if not self.committed:
                _remove(self.staging)
        finally:
            self._lock.release()
