"""Atomic text writes (a reader never sees a half-written report: temporary name beside it, then rename), and
the checks of an input file or output folder that every entry point makes before it starts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from mgeldm.errors import UserError


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
