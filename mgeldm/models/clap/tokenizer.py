"""RoBERTa byte-level BPE tokenizer for CLAP text, from local files only (never downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mgeldm.errors import UserError
from mgeldm.weights import TOKENIZER_DIR, TOKENIZER_FILES

HF_REPO = "roberta-base"


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except Exception:  # pragma: no cover - very old/new hub versions
        return "~/.cache/huggingface/hub"


def _cached_roberta_folder() -> Path | None:
    """The snapshot folder of ``roberta-base`` in the local HF cache if it holds vocab.json and merges.txt."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    found = [try_to_load_from_cache(HF_REPO, name) for name in TOKENIZER_FILES]
    if all(isinstance(p, str) for p in found) and Path(found[0]).parent == Path(found[1]).parent:
        return Path(found[0]).parent
    return None


def _has_tokenizer_files(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or all((folder / name).is_file() for name in TOKENIZER_FILES)


def tokenizer_problem(tokenizer_path: str | os.PathLike | None = None) -> str | None:
    """Why no RoBERTa tokenizer can be found (see :func:`find_roberta_tokenizer`), or None when one can."""
    if tokenizer_path is not None:
        folder = Path(tokenizer_path).expanduser()
        if not _has_tokenizer_files(folder):
            return f"tokenizer_path {folder} is not a folder holding roberta-base's {' and '.join(TOKENIZER_FILES)}"
        return None
    if find_roberta_tokenizer() is None:
        return (
            f"roberta-base's {' and '.join(TOKENIZER_FILES)} are neither in {TOKENIZER_DIR}/ nor in the "
            f"Hugging Face cache ({_hf_cache_dir()}), and the CLAP conditioner sets no tokenizer_path"
        )
    return None


def find_roberta_tokenizer(tokenizer_path: str | os.PathLike | None = None) -> Path | None:
    """The tokenizer folder: ``tokenizer_path`` if given, else ``checkpoints/roberta-base`` (where
    scripts/download_weights.sh puts it), else ``roberta-base`` in the local Hugging Face cache; None when
    the folder found holds no tokenizer files."""
    if tokenizer_path is not None:
        folder = Path(tokenizer_path).expanduser()
        return folder if _has_tokenizer_files(folder) else None
    if _has_tokenizer_files(TOKENIZER_DIR):
        return TOKENIZER_DIR
    return _cached_roberta_folder()


def load_roberta_tokenizer(tokenizer_path: str | os.PathLike | None = None):
    """The tokenizer of :func:`find_roberta_tokenizer`. Files are checked first because transformers silently
    builds an empty tokenizer when it finds none."""
    from transformers import RobertaTokenizer

    problem = tokenizer_problem(tokenizer_path)
    if problem:
        raise UserError(f"no RoBERTa tokenizer for CLAP: {problem}")
    folder = find_roberta_tokenizer(tokenizer_path)
    try:
        return RobertaTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise UserError(f"CLAP tokenizer folder {folder} could not be read as a RoBERTa tokenizer ({exc})")


class ClapTokenizer:
    """Texts -> (input_ids, attention_mask), padded/truncated to ``max_length`` (77 for CLAP)."""

    def __init__(self, tokenizer_path: str | os.PathLike | None, max_length: int) -> None:
        self.tokenizer = load_roberta_tokenizer(tokenizer_path)
        self.max_length = int(max_length)

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return out["input_ids"], out["attention_mask"]
