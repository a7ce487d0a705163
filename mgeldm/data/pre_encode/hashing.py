"""Hashes of weights (independent of the file format) and of files: which autoencoder and embedder made the
latents."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import torch


def state_dict_sha256(state: Mapping[str, torch.Tensor] | torch.nn.Module) -> str:
    """A hash of weights (names, dtypes, shapes, values) that does not depend on the file format.

    The same AE weights read from an ``.ckpt``, a ``.safetensors`` or the ``pretransform.model.*`` part of a
    DiT checkpoint give the same hash, so a training run can check which AE encoded its latents.
    """
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
