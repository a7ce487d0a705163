"""The MGE-LDM network (:class:`MGELDMNet`): the three-track DiT (``model_dit``) over the frozen VAE (``pretransform``).

Its state dict is the unwrapped checkpoint layout of docs/compatibility.md#checkpoints: ``model_dit.*`` +
``pretransform.model.*``.
The conditioner (CLAP or another embedder) is not part of it: it has its own checkpoint and is built
by ``mgeldm.models.conditioners.build_conditioner``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mgeldm.audio import SAMPLE_RATE
from mgeldm.checkpoints import AE_PREFIX, DIT_PREFIX, describe_mismatch, read_state_dict, unwrapped_kind
from mgeldm.errors import UserError
from mgeldm.models.autoencoder import AutoencoderPretransform, build_pretransform
from mgeldm.models.dit import MGEDiT, build_dit

SEGMENT_LENGTH = 100  # latent frames per DiT window of the released model (12.8 s), for a config without one


@dataclass(frozen=True)
class ModelFacts:
    """What inference needs to know of a model before building it."""

    sample_rate: int
    window: int  # latent frames per DiT window
    ratio: int  # audio samples per latent frame

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.ratio

    @property
    def window_seconds(self) -> float:
        return self.window / self.frame_rate


def model_facts(model_cfg: Mapping[str, Any]) -> ModelFacts:
    """(sample rate, window, ratio) of a model config, without building the model; the one owner of the
    defaults of a config that names no rate or window."""
    try:
        ratio = int(model_cfg["pretransform"]["autoencoder"]["downsampling_ratio"])
        return ModelFacts(
            int(model_cfg.get("sample_rate", SAMPLE_RATE)), int(model_cfg.get("segment_length", SEGMENT_LENGTH)), ratio
        )
    except (KeyError, TypeError, ValueError):
        raise UserError(
            "model config: expected sample_rate, segment_length and pretransform.autoencoder.downsampling_ratio"
        ) from None


class TrackNorm:
    """Per-track, per-channel affine map between the pretransform's latents and the DiT's space.

    ``z_dit = (z - mean[k]) / std[k]`` for track k (mix, submix, source). The numbers come from the
    model config (``model.track_norm``, measured on the training data by ``train_dit.py``), never from
    the state dict, so checkpoints keep the original's keys. Without it the DiT sees the pretransform's
    latents as they are (the original: one ``pretransform.scale`` for every track).
    """

    def __init__(self, mean: Any, std: Any, *, num_tracks: int, channels: int) -> None:
        # plain numbers on the CPU (also when the model is built on the meta device); moved per call
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device="cpu")
        self.std = torch.as_tensor(std, dtype=torch.float32, device="cpu")
        shape = (num_tracks, channels)
        for name, value in (("mean", self.mean), ("std", self.std)):
            if tuple(value.shape) != shape:
                raise UserError(
                    f"model.track_norm.{name}: shape {tuple(value.shape)}; expected {list(shape)} "
                    "(tracks x latent channels)"
                )
            if not torch.isfinite(value).all():
                raise UserError(f"model.track_norm.{name}: holds non-finite numbers")
        if not (self.std > 0).all():
            raise UserError("model.track_norm.std: every value must be > 0")

    @classmethod
    def from_config(cls, node: Any, *, num_tracks: int, channels: int) -> TrackNorm | None:
        if node is None:
            return None
        if not isinstance(node, Mapping) or not {"mean", "std"} <= set(node):
            raise UserError(
                f"model.track_norm: {str(node)[:60]!r}; expected null, or mean/std lists per track "
                "(train_dit.py writes them when given `measure`)"
            )
        return cls(node["mean"], node["std"], num_tracks=num_tracks, channels=channels)

    def as_config(self) -> dict[str, list[list[float]]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def _affine(self, z: Tensor, track: int | None) -> tuple[Tensor, Tensor]:
        mean, std = (
            (self.mean.reshape(-1), self.std.reshape(-1)) if track is None else (self.mean[track], self.std[track])
        )
        return mean.to(z.device, z.dtype)[:, None], std.to(z.device, z.dtype)[:, None]

    def normalize(self, z: Tensor, track: int | None = None) -> Tensor:
        """(B, C, T) latents of ``track`` (or (B, K*C, T) of all tracks when None) -> the DiT's space."""
        mean, std = self._affine(z, track)
        return (z - mean) / std

    def denormalize(self, z: Tensor, track: int | None = None) -> Tensor:
        mean, std = self._affine(z, track)
        return z * std + mean


class MGELDMNet(nn.Module):
    """The DiT and the VAE it works in; tensors in, tensors out."""

    def __init__(
        self,
        model_dit: MGEDiT,
        pretransform: AutoencoderPretransform,
        *,
        sample_rate: int,
        segment_length: int,
        track_norm: TrackNorm | None = None,
    ) -> None:
        super().__init__()
        self.model_dit = model_dit
        self.pretransform = pretransform
        self.sample_rate = int(sample_rate)
        self.segment_length = int(segment_length)
        self.track_norm = track_norm

    def to_dit_space(self, z: Tensor, track: int | None = None) -> Tensor:
        """Pretransform latents of one track (B, C, T), or of all tracks (B, K*C, T) -> the DiT's space."""
        return z if self.track_norm is None else self.track_norm.normalize(z, track)

    def from_dit_space(self, z: Tensor, track: int | None = None) -> Tensor:
        """The inverse of :meth:`to_dit_space`."""
        return z if self.track_norm is None else self.track_norm.denormalize(z, track)

    def ae_to_dit(self, z: Tensor, track: int | None = None) -> Tensor:
        """The AE's own latents (VAE means, as ``pre_encode.py`` writes them) -> the DiT's space."""
        scale = float(self.pretransform.scale)
        return self.to_dit_space(z / scale if scale != 1.0 else z, track)

    def dit_to_ae(self, z: Tensor, track: int | None = None) -> Tensor:
        """The inverse of :meth:`ae_to_dit`."""
        scale = float(self.pretransform.scale)
        z = self.from_dit_space(z, track)
        return z * scale if scale != 1.0 else z

    def decode_track(self, z: Tensor, track: int | None, **chunking: Any) -> Tensor:
        """Latents of one track (B, C, T) in the DiT's space of ``track`` (None: already in the pretransform's
        space) -> audio (B, io_channels, T * ratio); ``chunking`` goes to the pretransform's decoder."""
        return self.pretransform.decode(z if track is None else self.from_dit_space(z, track), **chunking)

    @property
    def io_channels(self) -> int:
        """Latent channels per track."""
        return int(self.model_dit.io_channels)

    @property
    def num_tracks(self) -> int:
        return int(self.model_dit.num_tracks)

    @property
    def cond_dim(self) -> int:
        """Width of the per-track condition vectors the DiT expects."""
        return int(self.model_dit.global_cond_dim)

    @property
    def facts(self) -> ModelFacts:
        """Its rate, window and downsampling ratio."""
        return ModelFacts(self.sample_rate, self.segment_length, int(self.pretransform.downsampling_ratio))


def _get(cfg: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise UserError(f"model config: missing `{where}{key}`")
    return cfg[key]


def build_mgeldm(model_cfg: Mapping[str, Any]) -> MGELDMNet:
    """Build the model from ``configs/model/dit.yaml`` (blocks ``pretransform``, ``MGELDM``)."""
    pre_cfg = _get(model_cfg, "pretransform", "model.")
    ae_cfg = _get(pre_cfg, "autoencoder", "model.pretransform.")
    pretransform = build_pretransform(pre_cfg, ae_cfg)
    dit = build_dit(_get(model_cfg, "MGELDM", "model."))
    if int(dit.io_channels) != int(pretransform.encoded_channels):
        raise UserError(
            f"model config: MGELDM.io_channels={dit.io_channels} but the autoencoder has "
            f"{pretransform.encoded_channels} latent channels; they must be equal"
        )
    norm = TrackNorm.from_config(model_cfg.get("track_norm"), num_tracks=dit.num_tracks, channels=dit.io_channels)
    facts = model_facts(model_cfg)
    if facts.window % dit.patch_size:
        raise UserError(
            f"model config: segment_length={facts.window} is not a multiple of MGELDM.patch_size={dit.patch_size}"
        )
    return MGELDMNet(dit, pretransform, sample_rate=facts.sample_rate, segment_length=facts.window, track_norm=norm)


def load_mgeldm(path: str | os.PathLike, model_cfg: Mapping[str, Any]) -> MGELDMNet:
    """Build the model of ``model_cfg`` and load an unwrapped MGE-LDM checkpoint into it (strict).

    The model is built on the meta device and the checkpoint's tensors are assigned to it, so the
    1.2 B-parameter model is neither initialised nor held twice in memory.
    """
    return mgeldm_from_state(read_state_dict(path), model_cfg, path)


def mgeldm_from_state(
    state: Mapping[str, torch.Tensor], model_cfg: Mapping[str, Any], where: Any = "state dict"
) -> MGELDMNet:
    """Build the model of ``model_cfg`` with the unwrapped ``state`` (``model_dit.*`` + ``pretransform.model.*``)."""
    found = unwrapped_kind(state)
    if found != "mgeldm":
        kind = "an autoencoder checkpoint" if found == "autoencoder" else "not an MGE-LDM model"
        raise UserError(
            f"checkpoint {where}: {kind}; expected an unwrapped MGE-LDM checkpoint with "
            f"`{DIT_PREFIX}*` and `{AE_PREFIX}*` entries (unwrap_model.py +type=mgeldm writes one)"
        )
    with torch.device("meta"):
        model = build_mgeldm(model_cfg)
    problem = describe_mismatch({k: v.shape for k, v in model.state_dict().items()}, state)
    if problem:
        raise UserError(f"checkpoint {where} does not fit the configured MGE-LDM model: {problem}")
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        # Some tensor is not in the state dict (a non-persistent buffer): build for real instead.
        model = build_mgeldm(model_cfg)
        model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)
