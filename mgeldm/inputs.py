"""What a user hands the Python API, checked where it enters the library: the device, the precision, the VAE's
chunking, the prompts and the audio. :mod:`mgeldm.api` calls these on its arguments; a command-line tool calls
the same functions on its options before it loads a model. Each refuses a bad value with an
:class:`mgeldm.errors.OptionError` naming the parameter as it is written in Python."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mgeldm import checks
from mgeldm.errors import OptionError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_CHANNELS = 8  # more channels than this is taken for a length when guessing the layout of 2-D audio

Prompt = str | None
Prompts = Prompt | Sequence[Prompt]


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit device must be available."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise OptionError("device", "expected auto, cpu, cuda, cuda:N or mps", name) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", "CUDA is not available here; use auto or cpu", name)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise OptionError("device", f"only {torch.cuda.device_count()} CUDA device(s) visible", name)
    if dev.type == "mps" and not _mps_available():
        raise OptionError("device", "MPS is not available here; use auto or cpu", name)
    if dev.type not in ("cpu", "cuda", "mps"):
        raise OptionError("device", "expected auto, cpu, cuda, cuda:N or mps", name)
    return dev


def compute_dtype(precision: str) -> torch.dtype | None:
    """The DiT's compute dtype for ``precision`` (fp32: None, bf16, fp16)."""
    if str(precision) not in PRECISIONS:
        raise OptionError("precision", f"expected one of {', '.join(PRECISIONS)}", precision)
    return PRECISIONS[str(precision)]


def check_chunked(chunked: Any) -> bool | None:
    """``chunked``: None / "auto" (one VAE pass up to the fixed limit), True or False."""
    if chunked is None or (isinstance(chunked, str) and chunked.strip().lower() == "auto"):
        return None
    if not isinstance(chunked, bool):
        raise OptionError("chunked", "expected true, false or auto", chunked)
    return chunked


def split_iter_prompts(text: str) -> list[str]:
    """``"a; b; c"`` -> ["a", "b", "c"]; at least two non-empty prompts."""
    return _iter_prompts([p for p in str(text).split(";")], repr(text))


def _iter_prompts(items: Sequence[Any], shown: Any) -> list[str]:
    if len(items) < 2 or any(not isinstance(p, str) or not p.strip() for p in items):
        raise OptionError("prompts", "partial_gen_iter expects at least 2 non-empty prompts separated by ';'", shown)
    return [p.strip() for p in items]


def prompt_list(prompts: Prompts, task: str | None = None) -> list[str | None]:
    """The prompts of one call as a list: None (unconditional) -> [None]; a text -> [text]; a list -> its items
    (texts or None). For ``partial_gen_iter`` (one prompt per step): ``"a; b"`` or a list of at least two texts."""
    if task == "partial_gen_iter":
        if prompts is None:
            raise OptionError("prompts", "missing; partial_gen_iter needs at least 2 prompts separated by ';'")
        return split_iter_prompts(prompts) if isinstance(prompts, str) else _iter_prompts(list(prompts), prompts)
    if prompts is None or isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise OptionError("prompts", "is not a string; expected text (quote it) or a list of texts", prompts)
    if not prompts:
        raise OptionError("prompts", "no prompt given", "[]")
    for p in prompts:
        if p is not None and not isinstance(p, str):
            raise OptionError("prompts", f"{p!r} is not a string; expected text or a list of texts")
    return list(prompts)


def channels_first(wave: Tensor, name: str = "audio") -> Tensor:
    """A 2-D waveform as (channels, samples): (C, L) stays, (L, C) as ``sf.read`` returns it is transposed.

    The channel axis is the one with at most ``MAX_CHANNELS`` entries; when both or neither axis is
    that short the layout is ambiguous and refused.
    """
    rows, cols = wave.shape
    if rows <= MAX_CHANNELS < cols:
        return wave
    if cols <= MAX_CHANNELS < rows:
        return wave.T
    raise OptionError(
        name,
        f"shape {tuple(wave.shape)} is ambiguous; expected (channels, samples) or "
        f"(samples, channels) with at most {MAX_CHANNELS} channels and more samples than that",
    )


def as_mono(audio: Tensor | np.ndarray, sr: int, target_sr: int, name: str = "audio") -> Tensor:
    """A (C, L), (L, C) or (L,) waveform at ``sr`` -> mono (L,) float32 at ``target_sr`` (``name``: the parameter,
    or the file, it came from)."""
    from mgeldm.audio import resample, to_mono

    wave = torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio).detach().float().cpu()
    if wave.dim() not in (1, 2):
        raise OptionError(
            name, f"expected (channels, samples), (samples, channels) or (samples,); got {tuple(wave.shape)}"
        )
    if not checks.is_count(sr):
        raise OptionError("sr", "expected a positive integer", repr(sr))
    wave = channels_first(wave, name) if wave.dim() == 2 else wave
    return resample(to_mono(wave), int(sr), target_sr)[0]


def prepare_audio(audio: Tensor | np.ndarray, sr: int, target_sr: int, name: str = "audio") -> Tensor:
    """:func:`as_mono`, refusing empty, non-finite or silent audio: what a task is given."""
    from mgeldm.audio import check_audio

    check_audio(torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio), name)
    mono = as_mono(audio, sr, target_sr, name)
    check_audio(mono, name)
    return mono


def check_query(task: str, prompts: Prompts, query: Any) -> None:
    """A query clip (audio in place of text) goes with one-step tasks and without text prompts."""
    if query is None:
        return
    if task == "partial_gen_iter":
        raise OptionError("query", "not supported by partial_gen_iter (it takes one text prompt per step)")
    if prompts is not None and (isinstance(prompts, str) or any(p is not None for p in prompts)):
        raise OptionError("query", "give either text prompts or a query clip, not both")
