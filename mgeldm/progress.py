"""Progress a person can read: a tqdm bar on a terminal, plain lines in a log file or a pipe.

tqdm redraws its bar with carriage returns and moves the cursor for nested bars; written to a file
those become hundreds of garbled lines. Every progress display of the project goes through
:func:`progress_bar`:

* on a terminal (the stream is a TTY): a tqdm bar, as usual;
* elsewhere: an outer loop prints plain lines (``desc: 12/40 song, 3.1 song/s``) at most every
  :data:`LINE_SECONDS` seconds and one when it ends; a nested bar (``nested=True``, e.g. the steps
  inside one window) prints nothing. No line holds a carriage return or an escape code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

LINE_SECONDS = 30.0


def on_terminal(stream: IO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where tqdm draws) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced by an object without isatty
        return False


class LineProgress:
    """The small part of tqdm's interface the project uses, writing whole lines to ``file``."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        desc: str = "",
        total: int | None = None,
        unit: str = "it",
        disable: bool = False,
        file: IO | None = None,
        line_seconds: float = LINE_SECONDS,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.desc, self.total, self.unit, self.disable = desc, total, unit, disable
        self.file = file
        self.line_seconds = float(line_seconds)
        self.n = 0
        self.start = self.last_line = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.last_line >= self.line_seconds:
            self.last_line = now
            self._line()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.disable and self.n:
            self._line(done=True)

    def _line(self, done: bool = False) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        rate = f"{self.n / elapsed:.2f} {self.unit}/s"
        text = f"{self.desc}: {count} {self.unit}, {rate}" + (f", done in {elapsed:.1f} s" if done else "")
        print(text, file=self.file if self.file is not None else sys.stderr, flush=True)


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    disable: bool = False,
    nested: bool = False,
    file: IO | None = None,
) -> Any:
    """A tqdm bar on a terminal, else a :class:`LineProgress` (silent when ``nested``); see the module docstring."""
    if on_terminal(file):
        from tqdm.auto import tqdm

        return tqdm(
            iterable,
            desc=desc,
            total=total,
            unit=unit,
            disable=disable,
            leave=not nested,
            dynamic_ncols=True,
            file=file,
        )
    return LineProgress(iterable, desc=desc, total=total, unit=unit, disable=disable or nested, file=file)
