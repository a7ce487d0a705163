"""The MGELDM wrapper: the three-track DiT (``model_dit``) over the frozen VAE (``pretransform``).

Its state dict is the unwrapped checkpoint layout of SPEC G: ``model_dit.*`` + ``pretransform.model.*``.
The conditioner (CLAP or another embedder) is not part of it: it has its own checkpoint and is built
by ``mgeldm.models.conditioners.build_conditioner``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mgeldm.checkpoints import describe_mismatch, read_state_dict
from mgeldm.errors import UserError
from mgeldm.models.autoencoder import AutoencoderPretransform, build_pretransform
from mgeldm.models.dit import MGEDiT, build_dit

DIT_PREFIX = "model_dit."
AE_PREFIX = "pretransform.model."


class MGELDM(nn.Module):
    """The DiT and the VAE it works in; tensors in, tensors out."""

    def __init__(self, model_dit: MGEDiT, pretransform: AutoencoderPretransform, *, sample_rate: int,
                 segment_length: int) -> None:
        super().__init__()
        self.model_dit = model_dit
        self.pretransform = pretransform
        self.sample_rate = int(sample_rate)
        self.segment_length = int(segment_length)

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
    def downsampling_ratio(self) -> int:
        return int(self.pretransform.downsampling_ratio)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.downsampling_ratio


def _get(cfg: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise UserError(f"model config: missing `{where}{key}`")
    return cfg[key]


def build_mgeldm(model_cfg: Mapping[str, Any]) -> MGELDM:
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
    return MGELDM(dit, pretransform, sample_rate=model_cfg.get("sample_rate", 16000),
                  segment_length=model_cfg.get("segment_length", 100))


def load_mgeldm(ckpt_path: str | os.PathLike, model_cfg: Mapping[str, Any]) -> MGELDM:
    """Build the model of ``model_cfg`` and load an unwrapped MGE-LDM checkpoint into it (strict).

    The model is built on the meta device and the checkpoint's tensors are assigned to it, so the
    1.2 B-parameter model is neither initialised nor held twice in memory.
    """
    state = read_state_dict(ckpt_path)
    if not any(k.startswith(DIT_PREFIX) for k in state):
        kind = "an autoencoder checkpoint" if any(k.startswith("encoder.") for k in state) else "not an MGE-LDM model"
        raise UserError(
            f"checkpoint {ckpt_path}: {kind}; expected an unwrapped MGE-LDM checkpoint with "
            f"`{DIT_PREFIX}*` and `{AE_PREFIX}*` entries (unwrap_model.py +type=mgeldm writes one)"
        )
    with torch.device("meta"):
        model = build_mgeldm(model_cfg)
    problem = describe_mismatch({k: v.shape for k, v in model.state_dict().items()}, state)
    if problem:
        raise UserError(f"checkpoint {ckpt_path} does not fit the configured MGE-LDM model: {problem}")
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        # Some tensor is not in the state dict (a non-persistent buffer): build for real instead.
        model = build_mgeldm(model_cfg)
        model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)
