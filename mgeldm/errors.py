"""The one exception type for mistakes a user can make, and the one line every entry point prints for it.

Raise ``UserError`` where the code knows what was expected; the entry points print its message as a single
line, ``<prog>: error: <message>`` (argparse's style), and exit with code 2, without a traceback
(:mod:`mgeldm.cli.boundary`). A bad value of one parameter is an :class:`OptionError`: the library names the
parameter as Python does, and a command-line tool shows it in its own spelling.

A bug of the calling code (a tensor of the wrong shape handed to a model, a contract of a function broken)
is not a user mistake: it is a ``ValueError`` or ``TypeError`` and keeps its traceback.
"""

import sys
from collections.abc import Mapping
from typing import Any, NoReturn

_UNSET = object()


class UserError(Exception):
    """A problem with the user's input (file, option, checkpoint), described in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))

    def spelled(self, flags: Mapping[str, str]) -> str:
        """The message as a command-line tool shows it (``flags``: Python parameter name -> the tool's
        spelling); subclasses that name parameters rewrite them, a plain message stays as it is."""
        return str(self)


class OptionError(UserError):
    """A bad value of one parameter: ``<name>=<value>: <problem>`` (``<name>: <problem>`` without a value).

    ``name`` is the library's (Python) name of the parameter; :meth:`spelled` writes the same line with a
    command-line tool's spelling of it, e.g. ``steps=0: ...`` as ``+num_steps=0: ...``.
    """

    def __init__(self, name: str, problem: str, value: Any = _UNSET) -> None:
        self.name, self.problem, self.value = name, problem, value
        super().__init__(self._line(name))

    def _line(self, name: str) -> str:
        given = name if self.value is _UNSET else f"{name}={self.value}"
        return f"{given}: {self.problem}"

    def spelled(self, flags: Mapping[str, str]) -> str:
        """The message with the parameter named as ``flags`` (Python name -> the tool's spelling) names it."""
        return " ".join(self._line(flags.get(self.name, self.name)).split())


class Cancelled(Exception):
    """A run stopped by its caller's cancel check (``should_cancel`` of :meth:`mgeldm.api.MGELDM.run`), between two
    denoiser calls; nothing of the run is returned."""


def error_line(prog: str, message: str) -> str:
    """``<prog>: error: <message>`` on one line."""
    return f"{prog}: error: " + " ".join(str(message).split())


def print_error(prog: str, message: str) -> int:
    """Print :func:`error_line` on stderr (after flushing stdout); returns 2, the exit code of a user error."""
    sys.stdout.flush()
    print(error_line(prog, message), file=sys.stderr, flush=True)
    return 2


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    """Print :func:`error_line` on stderr and exit with ``code``."""
    print_error(prog, message)
    sys.exit(code)
