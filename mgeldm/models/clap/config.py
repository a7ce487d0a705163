"""Sizes of a LAION-CLAP model (HTSAT audio encoder + RoBERTa text encoder, no fusion), read from a Mapping.

The Mapping is the ``config`` block of ``configs/model/conditioner/laion_clap.yaml``:
``audio`` (front end), ``htsat`` (Swin encoder), ``text`` (RoBERTa config keys), ``audio_embed_dim``,
``joint_embed_dim`` and ``max_text_length``. The fixture README's blocks (``audio_cfg``, ``htsat_*``,
``text_config_*``) have the same keys, so tests pass them in unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import ClapAudioConfig, ClapTextConfig

from mgeldm.errors import UserError


def _plain(value: Any) -> Any:
    """Mappings -> dict, sequences -> list, recursively (so OmegaConf containers work like YAML)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def _require(block: Mapping, key: str, where: str) -> Any:
    if key not in block or block[key] is None:
        raise UserError(f"CLAP config: '{where}.{key}' is missing")
    return block[key]


@dataclass(frozen=True)
class ClapSizes:
    """Everything that decides the shapes and the front end of the model."""

    sample_rate: int
    clip_samples: int
    n_fft: int
    hop_size: int
    mel_bins: int
    fmin: float
    fmax: float
    htsat: dict[str, Any]
    text: dict[str, Any]
    audio_embed_dim: int
    joint_embed_dim: int
    max_text_length: int

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> "ClapSizes":
        cfg = _plain(cfg)
        audio = _require(cfg, "audio", "config")
        htsat = dict(_require(cfg, "htsat", "config"))
        text = dict(_require(cfg, "text", "config"))
        sizes = cls(
            sample_rate=int(_require(audio, "sample_rate", "audio")),
            clip_samples=int(_require(audio, "clip_samples", "audio")),
            n_fft=int(_require(audio, "window_size", "audio")),
            hop_size=int(_require(audio, "hop_size", "audio")),
            mel_bins=int(_require(audio, "mel_bins", "audio")),
            fmin=float(audio.get("fmin", 0.0)),
            fmax=float(audio.get("fmax", 0.0)),
            htsat=htsat,
            text=text,
            audio_embed_dim=int(_require(cfg, "audio_embed_dim", "config")),
            joint_embed_dim=int(_require(cfg, "joint_embed_dim", "config")),
            max_text_length=int(_require(cfg, "max_text_length", "config")),
        )
        sizes._validate()
        return sizes

    @property
    def n_frames(self) -> int:
        """STFT frames of one clip (center=True)."""
        return self.clip_samples // self.hop_size + 1

    def _validate(self) -> None:
        h = self.htsat
        for key in ("spec_size", "patch_size", "patch_stride", "embed_dim", "depths", "num_heads", "window_size"):
            _require(h, key, "htsat")
        if h.get("ape", False):
            raise UserError("CLAP config: 'htsat.ape: true' (absolute position embedding) is not supported")
        if len(h["depths"]) != len(h["num_heads"]):
            raise UserError("CLAP config: 'htsat.depths' and 'htsat.num_heads' must have the same length")
        if h.get("norm_before_mlp", "ln") != "ln":
            raise UserError("CLAP config: only 'htsat.norm_before_mlp: ln' is supported")
        num_features = int(h["embed_dim"]) * 2 ** (len(h["depths"]) - 1)
        if num_features != self.audio_embed_dim:
            raise UserError(
                f"CLAP config: 'audio_embed_dim' is {self.audio_embed_dim} but htsat gives "
                f"embed_dim*2**(stages-1) = {num_features}"
            )
        spec = int(h["spec_size"])
        if spec % self.mel_bins:
            raise UserError(f"CLAP config: 'htsat.spec_size' {spec} is not a multiple of 'audio.mel_bins'")
        freq_ratio = spec // self.mel_bins
        if self.n_frames > spec * freq_ratio:
            raise UserError(
                f"CLAP config: {self.n_frames} STFT frames do not fit the {spec}x{spec} Swin input "
                f"(at most {spec * freq_ratio})"
            )
        for key in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
            "layer_norm_eps",
            "pad_token_id",
        ):
            _require(self.text, key, "text")

    def audio_config(self) -> ClapAudioConfig:
        """transformers' config for ClapAudioEncoder (eval-time sizes; dropouts are off in eval anyway)."""
        h = self.htsat
        stride = h["patch_stride"]
        return ClapAudioConfig(
            spec_size=int(h["spec_size"]),
            patch_size=int(h["patch_size"]),
            patch_stride=tuple(stride) if isinstance(stride, (list, tuple)) else int(stride),
            patch_embeds_hidden_size=int(h["embed_dim"]),
            depths=list(h["depths"]),
            num_attention_heads=list(h["num_heads"]),
            window_size=int(h["window_size"]),
            mlp_ratio=float(h.get("mlp_ratio", 4.0)),
            qkv_bias=bool(h.get("qkv_bias", True)),
            enable_patch_layer_norm=bool(h.get("patch_norm", True)),
            layer_norm_eps=float(h.get("layer_norm_eps", 1e-5)),
            num_mel_bins=self.mel_bins,
            hidden_size=self.audio_embed_dim,
            projection_dim=self.joint_embed_dim,
            enable_fusion=False,
            drop_path_rate=0.0,
            hidden_act="gelu",
        )

    def text_config(self) -> ClapTextConfig:
        """transformers' config for ClapTextModel. layer_norm_eps comes from our config (RoBERTa: 1e-5),
        never from ClapTextConfig's default (1e-12)."""
        keys = {k: v for k, v in self.text.items() if k not in ("architectures", "model_type")}
        keys["projection_dim"] = self.joint_embed_dim
        return ClapTextConfig(**keys)
