"""The one exception type for mistakes a user can make.

Raise ``UserError`` where the code knows what was expected; the entry points print its
message as a single line and exit non-zero, without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input (file, option, checkpoint), described in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
