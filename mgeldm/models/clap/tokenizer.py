"""RoBERTa byte-level BPE tokenizer for CLAP text, from local files only (never downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mgeldm.errors import UserError

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
    found = [try_to_load_from_cache(HF_REPO, name) for name in ("vocab.json", "merges.txt")]
    if all(isinstance(p, str) for p in found) and Path(found[0]).parent == Path(found[1]).parent:
        return Path(found[0]).parent
    return None


def load_roberta_tokenizer(tokenizer_path: str | os.PathLike | None = None):
    """``tokenizer_path`` (a folder with vocab.json + merges.txt, or tokenizer.json) if given,
    else ``roberta-base`` from the local Hugging Face cache. Files are checked here because
    transformers silently builds an empty tokenizer when it finds none."""
    from transformers import RobertaTokenizer

    if tokenizer_path is not None:
        folder = Path(tokenizer_path).expanduser()
        has_files = (folder / "tokenizer.json").is_file() or (
            (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
        )
        if not has_files:
            raise UserError(
                f"CLAP tokenizer_path {folder} must be a folder holding roberta-base's vocab.json and merges.txt"
            )
    else:
        folder = _cached_roberta_folder()
        if folder is None:
            raise UserError(
                "no RoBERTa tokenizer found: set the CLAP conditioner's tokenizer_path to a folder with "
                f"roberta-base's vocab.json and merges.txt, or put '{HF_REPO}' into the Hugging Face cache "
                f"({_hf_cache_dir()})"
            )
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
