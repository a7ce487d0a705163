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
    """One file (or set of files) that is not there: the option that names it, its value, what it should be."""

    option: str
    value: Any
    problem: str
    expected: str | None = None

    def __str__(self) -> str:
        given = self.option if _unset(self.value) else f"{self.option}={self.value}"
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


def raise_if_missing(missing: list[Missing]) -> None:
    """One UserError naming every missing piece, with where to get the released ones."""
    if len(missing) == 1:
        raise UserError(f"{missing[0]}; {DOWNLOAD_HINT}")
    if missing:
        raise UserError("missing files: " + "; ".join(str(m) for m in missing) + f"; {DOWNLOAD_HINT}")
