"""The files inference with the released model needs, where they are looked for, and one error naming every
missing one.

Three pieces, none of them in this repository (``scripts/download_weights.sh`` fetches them into
``checkpoints/`` when the machine has a network; nothing downloads at run time):

* the released MGE-LDM checkpoint ``unwrapped_DiT.ckpt`` (DiT + VAE), ``ckpt_path=``;
* LAION's music CLAP checkpoint ``music_audioset_epoch_15_esc_90.14.pt``, ``clap_ckpt_path=``;
* roberta-base's tokenizer files ``vocab.json`` and ``merges.txt`` (CLAP's text side), looked for in the
  CLAP conditioner's ``tokenizer_path``, else in ``checkpoints/roberta-base``, else in the Hugging Face cache.

Paths are relative to the working directory, like ``clap_ckpt_path``'s default in ``configs/dit.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgeldm.errors import UserError

WEIGHTS_DIR = Path("checkpoints")
DIT_FILE = "unwrapped_DiT.ckpt"
CLAP_FILE = "music_audioset_epoch_15_esc_90.14.pt"
TOKENIZER_DIR = WEIGHTS_DIR / "roberta-base"
TOKENIZER_FILES = ("vocab.json", "merges.txt")
DOWNLOAD_HINT = f"bash scripts/download_weights.sh fetches the released files into {WEIGHTS_DIR}/"


@dataclass(frozen=True)
class Missing:
    """One file (or set of files) that is not there: the parameter that names it (its Python name, e.g. ``ckpt``;
    None for a file no parameter names), its value, what is wrong, and what it should be."""

    option: str | None
    value: Any
    problem: str
    expected: str | None = None
    what: str = ""  # the words for a file no parameter names

    def line(self, flags: Mapping[str, str]) -> str:
        """``<option>=<value>: <problem> (expected ...)`` with the option spelled as ``flags`` spells it."""
        name = flags.get(self.option, self.option) if self.option else self.what
        given = name if _unset(self.value) else f"{name}={self.value}"
        return f"{given}: {self.problem}" + (f" (expected {self.expected})" if self.expected else "")


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none"))


def file_problem(value: Any) -> str | None:
    """Why ``value`` is not a readable file ("not set", "no such file", "not readable"), or None."""
    if _unset(value):
        return "not set"
    path = Path(str(value)).expanduser()
    if not path.is_file():
        return "no such file"
    if not os.access(path, os.R_OK):
        return "not readable"
    return None


class MissingFiles(UserError):
    """Every missing piece in one line, with where to get the released ones."""

    def __init__(self, missing: list[Missing]) -> None:
        self.missing = list(missing)
        super().__init__(self.spelled({}))

    def spelled(self, flags: Mapping[str, str]) -> str:
        lines = [m.line(flags) for m in self.missing]
        text = lines[0] if len(lines) == 1 else "missing files: " + "; ".join(lines)
        return f"{text}; {DOWNLOAD_HINT}"


def raise_if_missing(missing: list[Missing]) -> None:
    """Raise :class:`MissingFiles` when anything is missing."""
    if missing:
        raise MissingFiles(missing)
