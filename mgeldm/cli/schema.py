"""Typed checks of a composed config, run by every CLI before it reads a large file or writes anything; the
scalar rules are :mod:`mgeldm.checks`'.

A table maps dotted keys to a :class:`Rule` (``*`` stands for any one key, e.g. ``data.train.*.num_examples``).
A key absent from the config is skipped (the code's default applies) and a key the table does not name is
not checked here: Hydra refuses keys the config does not have, and each CLI checks its nested model node
by building the model on the meta device. Values are checked as the code reads them: a number may be
written as a string that parses (``1e-4`` in a yaml file is a string), a boolean must be true or false.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mgeldm import checks
from mgeldm.errors import UserError


@dataclass(frozen=True)
class Rule:
    """What a value must be: ``expected`` (words for the error line) and the test itself."""

    expected: str
    accepts: Callable[[Any], bool]

    def check(self, key: str, value: Any) -> None:
        if not self.accepts(value):
            raise UserError(f"{key}={show(value)}: expected {self.expected}")


def show(value: Any) -> str:
    """A value as a user would write it on the command line (strings quoted)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


def _bounds(lo: float | None, hi: float | None, above: float | None, below: float | None) -> str:
    parts = [
        f">= {lo:g}" if lo is not None else "",
        f"> {above:g}" if above is not None else "",
        f"<= {hi:g}" if hi is not None else "",
        f"< {below:g}" if below is not None else "",
    ]
    return " and ".join(p for p in parts if p)


def _in_bounds(x: float, lo, hi, above, below) -> bool:
    return (
        (lo is None or x >= lo)
        and (hi is None or x <= hi)
        and (above is None or x > above)
        and (below is None or x < below)
    )


def integer(lo: int | None = None, hi: int | None = None) -> Rule:
    def accepts(v: Any) -> bool:
        x = checks.parse_number(v)
        is_int = checks.is_integer(v) and not isinstance(v, float)
        is_int = is_int or (isinstance(v, str) and v.strip().lstrip("+-").isdigit())
        return x is not None and is_int and _in_bounds(x, lo, hi, None, None)

    bounds = _bounds(lo, hi, None, None)
    return Rule("an integer" + (f" {bounds}" if bounds else ""), accepts)


def number(
    lo: float | None = None, hi: float | None = None, *, above: float | None = None, below: float | None = None
) -> Rule:
    def accepts(v: Any) -> bool:
        x = checks.parse_number(v)
        return x is not None and _in_bounds(x, lo, hi, above, below)

    bounds = _bounds(lo, hi, above, below)
    return Rule("a number" + (f" {bounds}" if bounds else ""), accepts)


def boolean() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))  # checks.boolean's rule


def text() -> Rule:
    return Rule("a non-empty text", lambda v: isinstance(v, str) and bool(v.strip()))


def choice(*values: Any) -> Rule:
    names = ", ".join(show(v) if not isinstance(v, str) else v for v in values)
    return Rule(f"one of {names}", lambda v: not isinstance(v, bool) and v in values)


def optional(rule: Rule) -> Rule:
    return Rule(f"{rule.expected} or null", lambda v: v is None or rule.accepts(v))


def one_of(*rules: Rule) -> Rule:
    return Rule(" or ".join(r.expected for r in rules), lambda v: any(r.accepts(v) for r in rules))


def list_of(rule: Rule, length: int | None = None) -> Rule:
    what = f"a list of {length}" if length else "a list"

    def accepts(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and (length is None or len(v) == length) and all(rule.accepts(x) for x in v)

    return Rule(f"{what} ({rule.expected} each)", accepts)


def mapping() -> Rule:
    return Rule("a mapping (key: value)", lambda v: isinstance(v, Mapping))


def prefixed(prefix: str, table: Mapping[str, Rule]) -> dict[str, Rule]:
    """``table`` with every key under ``prefix`` (e.g. a recipe table under ``trainer.recipe``)."""
    return {f"{prefix}.{k}": r for k, r in table.items()}


def _matches(node: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield path, node
        return
    if not isinstance(node, Mapping):
        return
    head, rest = parts[0], parts[1:]
    keys = list(node) if head == "*" else [head] if head in node else []
    for k in keys:
        yield from _matches(node[k], rest, f"{path}.{k}" if path else str(k))


def check_config(cfg: Mapping[str, Any], table: Mapping[str, Rule]) -> None:
    """Apply every rule of ``table`` to the values of ``cfg`` it names; the first mistake is one UserError."""
    for pattern, rule in table.items():
        for key, value in _matches(cfg, pattern.split("."), ""):
            rule.check(key, value)
