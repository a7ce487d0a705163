"""The one exception type for mistakes a user can make, and the one line every entry point prints for it.

Raise ``UserError`` where the code knows what was expected; the entry points print its message with
:func:`fail` as a single line, ``<prog>: error: <message>`` (argparse's style), and exit with code 2,
without a traceback.
"""

import sys
from typing import NoReturn


class UserError(Exception):
    """A problem with the user's input (file, option, checkpoint), described in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


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
