"""Deterministic synthetic datasets with the real datasets' item layout (docs/compatibility.md#training-data).

Used by the tiny CPU configs (``data=fake``), the tests and ``benchmarks/bench_train.py``: every item
is a pure function of (seed, index), so runs are reproducible and a resumed run sees the same data.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mgeldm.audio import SAMPLE_RATE
from mgeldm.data.seeded import SeededDataset

_LABELS = ("bass", "drums", "piano", "guitar", "vocals", "strings")


class _FakeDataset(SeededDataset):
    """The seeded virtual epoch (:class:`mgeldm.data.seeded.SeededDataset`) with a torch generator per item."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_examples:
            raise IndexError(index)
        return self.make(torch.Generator().manual_seed((self.seed * 1_000_003 + int(index)) * 1009 + self.epoch))

    def make(self, g: torch.Generator) -> dict[str, Any]:
        raise NotImplementedError


class FakeLatentDataset(_FakeDataset):
    """Items like ``MixSubmixSourceLatentDataset``: latents (C, T), CLAP vectors (G,), prompts.

    The source is a few sinusoid rows, the submix another set, and mix = submix + source, so the
    three tracks are related the way real ones are and a model can learn them. With
    ``mix_only=True`` items follow docs/compatibility.md#training-data's mix-only mode (submix = mix, src = 0, prompts
    "").
    """

    def __init__(
        self,
        num_examples: int = 64,
        *,
        channels: int = 64,
        frames: int = 100,
        clap_dim: int = 512,
        seed: int = 0,
        mix_only: bool = False,
    ) -> None:
        super().__init__(num_examples, seed)
        self.channels, self.frames, self.clap_dim, self.mix_only = channels, frames, clap_dim, bool(mix_only)

    def _signal(self, g: torch.Generator) -> torch.Tensor:
        phase = torch.rand(self.channels, 1, generator=g) * 2 * math.pi
        freq = (torch.randint(1, 4, (self.channels, 1), generator=g)).float()
        pos = torch.arange(self.frames).float()[None] / self.frames
        return torch.sin(2 * math.pi * freq * pos + phase)

    def make(self, g: torch.Generator) -> dict[str, Any]:
        src, submix = self._signal(g), 0.5 * self._signal(g)
        mix = src + submix
        claps = torch.nn.functional.normalize(torch.randn(3, self.clap_dim, generator=g), dim=-1)
        label = _LABELS[int(torch.randint(len(_LABELS), (1,), generator=g))]
        item = {
            "mix_latent": mix,
            "submix_latent": submix,
            "src_latent": src,
            "mix_clap": claps[0],
            "submix_clap": claps[1],
            "src_clap": claps[2],
            "src_prompt": f"The sound of {label}.",
            "submix_prompt": "Other parts.",
        }
        if self.mix_only:
            item.update(
                submix_latent=mix.clone(),
                src_latent=torch.zeros_like(mix),
                submix_clap=claps[0].clone(),
                src_clap=torch.zeros_like(claps[0]),
                src_prompt="",
                submix_prompt="",
            )
        return item


class FakeAudioDataset(_FakeDataset):
    """Items like the AE audio datasets: ``{"mix_wav": (1, length)}`` of decaying harmonic notes."""

    def __init__(
        self, num_examples: int = 64, *, length: int = 32768, sample_rate: int = SAMPLE_RATE, seed: int = 0
    ) -> None:
        super().__init__(num_examples, seed)
        self.length, self.sample_rate = length, sample_rate

    def make(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        t = torch.arange(self.length).float() / self.sample_rate
        f0 = 110.0 * 2 ** (torch.randint(0, 24, (1,), generator=g).float() / 12)
        wav = sum(torch.sin(2 * math.pi * f0 * h * t) / h for h in range(1, 5))
        env = torch.exp(-t * (1 + 4 * torch.rand(1, generator=g)))
        return {"mix_wav": (0.3 * wav * env)[None]}
