"""The one place where every command-line tool meets its user: printing, exit codes, signals, logging.

Inside :func:`user_boundary` (every entry point runs its work there, the Hydra ones through
:func:`mgeldm.cli.hydra_args.run_app`, the argparse tools through :func:`run_tool`):

* a :class:`mgeldm.errors.UserError` is one line on stderr, ``<prog>: error: <message>``, exit code 2; one
  that names parameters (:class:`mgeldm.errors.OptionError`) names them as this tool spells them (its
  ``flags`` table maps the Python parameter names of the library to the tool's own, e.g. ``overlap`` ->
  ``+overlap_dur``);
* Hydra's and OmegaConf's own errors (no such config, an unknown key) are one line too, exit code 2;
* Ctrl-C is one line and exit code 130, SIGTERM one line and exit code 143 (SIGTERM is turned into the
  :class:`Terminated` exception, so ``finally`` blocks and context managers clean up on the way out);
* running out of memory (host or GPU) is one line with the tool's hint, exit code 2;
* anything else is a bug and keeps its traceback;
* warnings and notes of the library (the ``mgeldm`` logger) are printed as plain lines on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgeldm.errors import UserError, print_error


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException like KeyboardInterrupt, so no ``except Exception`` swallows it."""


@dataclass(frozen=True)
class Messages:
    """What one tool says beyond its errors: the flags of its options (Python name -> the tool's spelling),
    what an interruption leaves behind, and what to try when memory runs out."""

    flags: Mapping[str, str] = field(default_factory=dict)
    interrupted: str = ""
    out_of_memory: str = "try a smaller batch or another device"


class _StderrLines(logging.Handler):
    """Each record as one plain line on the stderr of the moment (so a redirected or captured stderr gets it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(" ".join(self.format(record).split("\n")) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never end a run
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """The library's ``mgeldm`` logger prints its records as plain lines on stderr (once per process).

    Hydra's quiet logging (``configs/quiet_hydra.yaml``) disables every logger that exists when a run starts,
    which silences third-party chatter and, with it, the library's own loggers: those are enabled again here.
    """
    for name, child in list(logging.root.manager.loggerDict.items()):
        if (name == "mgeldm" or name.startswith("mgeldm.")) and isinstance(child, logging.Logger):
            child.disabled = False
    logger = logging.getLogger("mgeldm")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        handler = _StderrLines()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (the previous handler is restored afterwards)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_out_of_memory(exc: BaseException) -> bool:
    """Host memory (MemoryError) or a device's (torch's OutOfMemoryError)."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def _hydra_error(exc: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(exc, (HydraException, OmegaConfBaseException))


def _exit(prog: str, message: str, code: int = 2) -> None:
    print_error(prog, message)
    raise SystemExit(code)


@contextlib.contextmanager
def user_boundary(prog: str, messages: Messages = Messages(), *, config_dirs: Iterable[Path] = ()) -> Iterator[None]:
    """Run the body as ``prog`` behind the boundary of the module docstring (raises SystemExit on a failure)."""
    with logging_configured(), _boundary(prog, messages, config_dirs):
        yield


@contextlib.contextmanager
def logging_configured() -> Iterator[None]:
    """:func:`configure_logging` while inside; the ``mgeldm`` logger as it was afterwards (a tool run in-process)."""
    logger = logging.getLogger("mgeldm")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    configure_logging()
    try:
        yield
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


@contextlib.contextmanager
def _boundary(prog: str, messages: Messages, config_dirs: Iterable[Path]) -> Iterator[None]:
    try:
        with sigterm_unwinds():
            yield
    except UserError as exc:
        _exit(prog, exc.spelled(messages.flags))
    except KeyboardInterrupt:
        _exit(prog, "interrupted" + messages.interrupted, 130)
    except Terminated:
        _exit(prog, "terminated (SIGTERM)" + messages.interrupted, 143)
    except Exception as exc:
        if is_out_of_memory(exc):
            _exit(prog, f"out of memory; {messages.out_of_memory}")
        if not _hydra_error(exc):
            raise  # a bug, not a user mistake: keep the traceback
        from mgeldm.cli.hydra_args import describe_hydra_error

        _exit(prog, describe_hydra_error(exc, config_dirs=config_dirs))


def run_tool(prog: str, work: Callable[[], Any], messages: Messages = Messages()) -> int:
    """Run ``work()`` behind :func:`user_boundary`; the exit code (0 when it returns) instead of an exit."""
    try:
        with user_boundary(prog, messages):
            work()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
