"""Load LAION-CLAP weights as released (``music_audioset_epoch_15_esc_90.14.pt``) into ``ClapModel``.

The released file is ``{"epoch": ..., "state_dict": {"module.<laion key>": tensor}}`` (other top-level
entries are ignored). ``map_laion_key`` renames laion_clap's keys to ours (transformers' CLAP names);
the keys inference does not need are skipped by name (``IGNORED``), and anything else missing,
unexpected or mis-shaped is one ``UserError`` line. A converted ``.safetensors`` (our keys) can be
written with ``export_safetensors`` and is read back by the same ``load_clap``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from mgeldm.errors import UserError
from mgeldm.files import atomic_path
from mgeldm.models.clap.config import ClapSizes
from mgeldm.models.clap.model import ClapModel

# laion_clap keys that embeddings do not use, by the reason they are skipped.
IGNORED: dict[str, str] = {
    "contrastive temperature (training only)": r"logit_scale_[at]",
    "training-loss MLPs": r"(text|audio)_transform\..+",
    "AudioSet tagging head": r"audio_branch\.(tscam_conv|head)\..+",
    "shifted-window masks (recomputed each forward)": r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask",
    "stray position_ids buffer (recomputed)": r"text_branch\.embeddings\.position_ids",
}
_IGNORED_RE = re.compile("|".join(f"(?:{p})" for p in IGNORED.values()))

# Our buffers that the file does not hold; built from the config instead.
DERIVED = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")

_SWIN_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_QKV = ("query", "key", "value")

_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"audio_branch\.spectrogram_extractor\.stft\.conv_(real|imag)\.weight"), r"frontend.conv_\1"),
    (re.compile(r"audio_branch\.logmel_extractor\.melW"), "frontend.melW"),
    (re.compile(r"audio_branch\.bn0\.(.+)"), r"audio_encoder.batch_norm.\1"),
    (re.compile(r"audio_branch\.(patch_embed|norm)\.(.+)"), r"audio_encoder.\1.\2"),
    (re.compile(r"audio_branch\.layers\.(\d+)\.downsample\.(.+)"), r"audio_encoder.layers.\1.downsample.\2"),
    (re.compile(r"text_branch\.(.+)"), r"text_model.\1"),
    (re.compile(r"((?:text|audio)_projection\.[02]\.(?:weight|bias))"), r"\1"),
]
_BLOCK_RE = re.compile(r"audio_branch\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias|relative_position_\w+)")


def ignored_reason(laion_key: str) -> str | None:
    """Why a laion_clap key is skipped, or None if it is needed."""
    for reason, pattern in IGNORED.items():
        if re.fullmatch(pattern, laion_key):
            return reason
    return None


def map_laion_key(laion_key: str) -> list[tuple[str, int | None]]:
    """Our key(s) for one laion_clap key (without ``module.``), each with the chunk of dim 0 it takes
    (the fused qkv splits in three, in q, k, v order) or None for the whole tensor. [] if unknown or ignored."""
    if _IGNORED_RE.fullmatch(laion_key):
        return []
    m = _BLOCK_RE.fullmatch(laion_key)
    if m:
        stage, block, name, leaf = m.groups()
        prefix = f"audio_encoder.layers.{stage}.blocks.{block}."
        if name == "attn.qkv":
            return [(f"{prefix}attention.self.{part}.{leaf}", i) for i, part in enumerate(_QKV)]
        if name == "attn" and leaf.startswith("relative_position"):
            return [(f"{prefix}attention.self.{leaf}", None)]
        if name in _SWIN_BLOCK:
            return [(f"{prefix}{_SWIN_BLOCK[name]}.{leaf}", None)]
        return []
    for pattern, target in _RULES:
        if pattern.fullmatch(laion_key):
            return [(pattern.sub(target, laion_key), None)]
    return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _short(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def read_clap_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The flat state dict of a released .pt (``state_dict`` entry, ``module.`` stripped) or a .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CLAP checkpoint {path} does not exist (expected music_audioset_epoch_15_esc_90.14.pt)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # truncated / not safetensors
            raise UserError(f"CLAP checkpoint {path} is not a readable .safetensors file ({_first_line(exc)})")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:
        raise UserError(f"CLAP checkpoint {path} is truncated or not a PyTorch checkpoint ({_first_line(exc)})")
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"CLAP checkpoint {path} holds no 'state_dict' of tensors (expected laion_clap's .pt layout)")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def convert_laion_state_dict(
    laion: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], *, source: str = "CLAP checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename/split laion_clap keys to ours and check them against ``expected`` (our key -> shape).
    Keys already in our naming (a converted .safetensors) pass through unchanged."""
    out: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in laion.items():
        if key in expected:
            out[key] = tensor
            continue
        if _IGNORED_RE.fullmatch(key):
            continue
        targets = map_laion_key(key)
        if not targets:
            unexpected.append(key)
        for target, chunk in targets:
            out[target] = tensor if chunk is None else tensor.chunk(len(targets), dim=0)[chunk]
    missing = [k for k in expected if k not in out and k not in DERIVED]
    shaped = [
        f"{k} {list(out[k].shape)} vs {list(expected[k])}"
        for k in expected
        if k in out and tuple(out[k].shape) != tuple(expected[k])
    ]
    if not any(k.startswith(("frontend.", "audio_encoder.", "text_model.")) for k in out):
        raise UserError(f"{source} does not look like a LAION-CLAP checkpoint (no audio_branch./text_branch. keys)")
    if missing or unexpected or shaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_short(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_short(unexpected)})")
        if shaped:
            parts.append(f"{len(shaped)} mis-shaped ({_short(shaped, 2)})")
        raise UserError(f"{source} does not match the configured CLAP sizes: " + "; ".join(parts))
    return out


def _derived_buffers(sizes: ClapSizes) -> dict[str, torch.Tensor]:
    n = int(sizes.text["max_position_embeddings"])
    return {
        "text_model.embeddings.position_ids": torch.arange(n)[None],
        "text_model.embeddings.token_type_ids": torch.zeros(1, n, dtype=torch.long),
    }


def build_clap_model(sizes: ClapSizes, device: str | torch.device = "meta") -> ClapModel:
    """The network with uninitialised (meta) or default-initialised weights."""
    with torch.device(device):
        model = ClapModel(sizes)
    return model.eval().requires_grad_(False)


def load_clap(path: str | os.PathLike, sizes: ClapSizes, *, device: str | torch.device = "cpu") -> ClapModel:
    """Build ``ClapModel`` for ``sizes`` and fill it from a released .pt or a converted .safetensors."""
    model = build_clap_model(sizes, "meta")
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state = convert_laion_state_dict(read_clap_file(path), expected, source=f"CLAP checkpoint {path}")
    state.update(_derived_buffers(sizes))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a buffer transformers does not save; should never happen
        raise RuntimeError(f"CLAP model tensors left uninitialised after loading: {_short(leftover)}")
    return model.to(device).eval().requires_grad_(False)


def export_safetensors(model: ClapModel, path: str | os.PathLike) -> None:
    """Write the converted weights (our keys) to ``path`` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items() if k not in DERIVED}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
