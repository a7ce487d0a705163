"""Atomic file writes, and the clean-up of the temporaries that killed writes leave behind.

Every file the project writes in one piece (checkpoints, unwrapped models, reports, manifests) goes through
:func:`atomic_path`: the content is written under a hidden temporary name beside the target, made durable
(fsync), then renamed over the target, so a reader never sees a half-written file. It also holds the checks of an
input file or output folder that every entry point makes before it starts.

The temporary is created like any other file (``open(..., 0o666)``, so the umask and a folder's default ACL
decide its permissions: 0644 under umask 022), never with ``mkstemp``'s private 0600.

Its name, ``.<target name>.<host>.<pid>.<8 hex>.tmp``, records the writer, so a later run can tell the
temporary of a killed write (its writer process is gone) from one that is being written right now.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mgeldm.errors import UserError

PACKAGE_PARENT = Path(__file__).resolve().parents[1]  # the folder holding mgeldm/: a checkout's root

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
# Written by earlier versions: pre-encoding's ``.<name>.<pid>.partial`` (this host), and
# ``tempfile.mkstemp``'s ``.<name>.<8 chars>.tmp``, which names no writer.
_OLD_PID_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.partial$")
_OLD_MKSTEMP_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def host_name() -> str:
    """This machine's name, reduced to letters, digits and '-' (it becomes part of file names)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _process_start() -> float:
    """When this process started (wall clock), from /proc; the import time of this module elsewhere."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_STARTED = _process_start()


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale_temporary(path: Path, target: str | None = None, *, folder: bool = False) -> bool:
    """True for a temporary file (or, with ``folder``, a temporary folder) of this project's naming whose
    writer is gone.

    ``target`` restricts the answer to temporaries of that name. Stale means: the writer (named in the
    temporary's name) ran on this host and its process no longer exists; for the writer-less file names of
    earlier versions, last modified before this process started. A temporary of another host is never stale.
    """
    name = path.name
    match = _TEMP.match(name)
    if folder:
        return (
            match is not None
            and match["host"] == host_name()
            and not pid_alive(int(match["pid"]))
            and (target is None or match["name"] == target)
            and path.is_dir()
            and not path.is_symlink()
        )
    if match:
        stale = match["host"] == host_name() and not pid_alive(int(match["pid"]))
    elif (match := _OLD_PID_TEMP.match(name)) is not None:
        stale = not pid_alive(int(match["pid"]))
    elif (match := _OLD_MKSTEMP_TEMP.match(name)) is not None:
        try:
            stale = path.stat().st_mtime < _STARTED
        except OSError:
            return False
    else:
        return False
    return stale and (target is None or match["name"] == target) and path.is_file() and not path.is_symlink()


def remove_stale_temporaries(
    parent: str | os.PathLike, target: str | None = None, *, folders: bool = False
) -> list[Path]:
    """Delete the stale temporary files (or, with ``folders``, folders; see :func:`is_stale_temporary`)
    directly in ``parent``; returns them."""
    import shutil

    parent = Path(parent)
    try:
        entries = [parent / e.name for e in os.scandir(parent) if e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for path in entries:
        if is_stale_temporary(path, target, folder=folders):
            try:
                shutil.rmtree(path) if folders else path.unlink()
            except FileNotFoundError:  # another process cleaned it first
                continue
            removed.append(path)
    return removed


def temporary_name(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path`` for this process (see the module docstring)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{host_name()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _create(tmp: Path) -> int:
    """Create ``tmp`` exclusively with mode 0o666 minus the umask; returns that mode."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it is fsynced and renamed over ``path``.

    On an exception the temporary is removed and ``path`` keeps its old content. Stale temporaries of
    ``path`` from killed writes are removed first. Whatever the writer does to the file (some libraries
    re-create it), it ends with the permissions any new file gets here (0o666 minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, target=path.name)
    tmp = temporary_name(path)
    mode = _create(tmp)
    try:
        yield tmp
        os.chmod(tmp, mode)
        _fsync(tmp)
        os.replace(tmp, path)
        try:
            _fsync(path.parent)  # the rename itself survives a crash
        except OSError:  # some file systems cannot fsync a folder
            pass
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_folder(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a hidden temporary folder to fill; on success it is renamed to ``path`` in one step.

    The folder is ``.<name>.<host>.<pid>.<8 hex>.tmp`` beside ``path`` (see :func:`temporary_name`); on an
    exception it is removed. When ``path`` exists by then, ``replace`` decides: True deletes it first (a
    stale or outdated copy), False keeps it and drops the new one (another process finished the same job).
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, target=path.name, folders=True)
    tmp = temporary_name(path)
    tmp.mkdir(mode=0o777)
    try:
        yield tmp
        if path.exists() and replace:
            shutil.rmtree(path)
        if not path.exists():
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def check_writable_dir(path: str | os.PathLike, option: str, value: Any = None) -> Path:
    """A folder that exists and is writable, or can be created: nothing is created here.

    ``option`` (and ``value``, what the user gave when ``path`` is derived from it) name it in the error line.
    """
    path = Path(os.path.expanduser(str(path)))
    given = f"{option}={path if value is None else value}"
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"{given}: {probe} is a file; expected a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be created ({probe} is not writable)"
        raise UserError(f"{given}: {what}; expected a writable folder")
    return path


def check_readable_file(path: Any, option: str, what: str) -> Path:
    """An existing, readable file (``what`` says what it should be, for the error line)."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise UserError(f"{option}={path}: no such file; expected {what}")
    if not os.access(p, os.R_OK):
        raise UserError(f"{option}={path}: not readable")
    return p
