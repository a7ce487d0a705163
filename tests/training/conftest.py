"""Small builders shared by the training tests (tiny DiT from the fixture README, fake data)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

# Used only when the fixture set is absent (and not required): the same tiny sizes.
_FALLBACK_DIT = {
    "io_channels": 8,
    "num_tracks": 3,
    "embed_dim": 32,
    "global_cond_dim": 16,
    "timestep_features_dim": 16,
    "depth": 2,
    "num_heads": 3,
}


class DiTOnly(nn.Module):
    """Stand-in for MGELDM with just ``model_dit`` (the training module needs nothing else)."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        from mgeldm.models.dit import build_dit

        self.model_dit = build_dit(cfg)


class FakeConditioner:
    """Text embedder: a fixed vector per prompt; "" gives a NON-zero vector (like CLAP(""))."""

    def __init__(self, dim: int) -> None:
        self.dim, self.sample_rate, self.calls = dim, None, []

    def embed_text(self, texts):
        self.calls.append(list(texts))
        out = []
        for t in texts:
            g = torch.Generator().manual_seed(sum(map(ord, t)) + 1)
            out.append(torch.nn.functional.normalize(torch.randn(self.dim, generator=g), dim=0))
        return torch.stack(out)

    def to(self, device=None, dtype=None):
        return self


@pytest.fixture
def tiny_cfg(reference_readme_if_present) -> dict:
    """The tiny DiT sizes of the reference fixture set (found through ``MGELDM_REFERENCE_FIXTURES``)."""
    readme = reference_readme_if_present
    return dict(readme["mgeldm"]) if readme else dict(_FALLBACK_DIT)


def make_batch(cfg: dict, b: int = 4, frames: int = 12, mix_only: bool = False, seed: int = 0) -> dict:
    from torch.utils.data import default_collate

    from mgeldm.training.fake_data import FakeLatentDataset

    ds = FakeLatentDataset(
        b, channels=cfg["io_channels"], frames=frames, clap_dim=cfg["global_cond_dim"], seed=seed, mix_only=mix_only
    )
    return default_collate([ds[i] for i in range(b)])
