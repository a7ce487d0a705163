"""The checks of single values a user hands the project: one function per rule, each returning the value in
its plain Python type or raising :class:`mgeldm.errors.OptionError` naming the parameter.

Every entry point, the Python API and the pre-encoding settings use these; ``mgeldm.cli.schema`` builds its
typed option tables on them. ``True`` and ``False`` are never numbers here, and an integer-valued float
(``4.0``, as YAML and Hydra may write ``4``) counts as an integer.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from mgeldm.errors import OptionError


def is_integer(value: Any) -> bool:
    """An int (numpy's too), or a float with an integer value; never a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())


def is_number(value: Any) -> bool:
    """A finite int or float (numpy's too); never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def is_count(value: Any) -> bool:
    """An int >= 1 written as one (not ``4.0``, not a bool): a setting stored as it is given."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def is_positive(value: Any) -> bool:
    """A finite number > 0."""
    return is_number(value) and value > 0


def parse_number(value: Any) -> float | None:
    """A finite number as a float, also from a text that reads as one (YAML reads ``1e-4`` as text); else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return float(value) if is_number(value) else None


def _shown(value: Any) -> Any:
    return repr(value) if isinstance(value, str) else value


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an int, at least ``minimum`` when given."""
    expected = "expected an integer" + (f" >= {minimum}" if minimum is not None else "")
    if not is_integer(value):
        raise OptionError(name, expected, _shown(value))
    if minimum is not None and int(value) < minimum:
        raise OptionError(name, expected, value)
    return int(value)


def count(name: str, value: Any) -> int:
    """An integer >= 1 (steps, repeats, songs, workers)."""
    return integer(name, value, 1)


def number(name: str, value: Any, minimum: float | None = None, what: str = "a number") -> float:
    """``value`` as a finite float, at least ``minimum`` when given (``what`` names it in the message:
    ``expected a number of seconds >= 0``)."""
    expected = f"expected {what}" + (f" >= {minimum:g}" if minimum is not None else "")
    if not is_number(value):
        raise OptionError(
            name, "expected a finite number" if minimum is None and what == "a number" else expected, _shown(value)
        )
    if minimum is not None and float(value) < minimum:
        raise OptionError(name, expected, value)
    return float(value)


def boolean(name: str, value: Any) -> bool:
    """``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise OptionError(name, "expected true or false", repr(value))
    return value


def choice(name: str, value: Any, allowed: tuple[str, ...] | list[str], problem: str = "expected one of") -> str:
    """One of ``allowed`` (strings)."""
    if not isinstance(value, str) or value not in allowed:
        raise OptionError(name, f"{problem} {', '.join(allowed)}", value)
    return value


def seed(value: Any, name: str = "seed") -> int:
    """A seed: an integer >= 0."""
    if isinstance(value, float) or not is_integer(value) or int(value) < 0:
        raise OptionError(name, "expected an integer >= 0", value)
    return int(value)


def is_null(value: Any) -> bool:
    """None, or a string a user types for nothing: empty, ``null`` or ``none`` (any case)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none"))
