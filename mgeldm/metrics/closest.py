"""Which stem of a song an estimate is closest to, and the share of estimates closest to their own stem.

The prompt accuracy of an extraction: an estimate prompted with one stem is right when, of all the stems of
its song, that stem is the nearest to it (the song's stems are the candidates, not the mixture). Under the
Log-Mel L1 (:func:`logmel_distance`) every candidate is compared with the floor of the song's excerpt, that of
its mixture (:func:`mgeldm.metrics.logmel.excerpt_floor`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from mgeldm.metrics.logmel import LogMelConfig, excerpt_floor, mel_l1, mel_magnitudes

Distance = Callable[[torch.Tensor, torch.Tensor], float]


def closest_stem(estimate: torch.Tensor, stems: Mapping[str, torch.Tensor], distance: Distance) -> str:
    """The label of the stem nearest to ``estimate`` under ``distance`` (the first of equals in ``stems``' order)."""
    if not stems:
        raise ValueError("closest_stem: no stems to compare with")
    dist = {label: float(distance(estimate, stem)) for label, stem in stems.items()}
    return min(dist, key=dist.get)


def logmel_distance(cfg: LogMelConfig = LogMelConfig(), mixture: torch.Tensor | None = None) -> Distance:
    """Log-Mel L1 between two signals trimmed to the shorter one, both floored at the floor of the excerpt whose
    mixture is ``mixture`` (one floor for every pair; without a mixture, that of the second signal, the reference).
    """
    mix_floor = None if mixture is None else excerpt_floor(mel_magnitudes(mixture, cfg), cfg)

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        n = min(a.shape[-1], b.shape[-1])
        ref = mel_magnitudes(b[..., :n], cfg)
        floor = excerpt_floor(ref, cfg) if mix_floor is None else mix_floor
        return float(mel_l1(mel_magnitudes(a[..., :n], cfg), ref, floor))

    return distance


def share(hits: Sequence[bool]) -> float:
    """The share of true values (an accuracy); NaN for none."""
    return float(sum(hits) / len(hits)) if hits else math.nan
