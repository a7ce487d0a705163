"""Per-track latent statistics of a training distribution (for the DiT's optional per-track normalisation).

The statistics are measured on windows drawn from the training datasets themselves (a weighted
concatenation draws each corpus in proportion to its ``num_examples``), so when several corpora are
combined each one weighs as much as it does in training. They are drawn with their own seeded
generator: measuring never changes the training stream.
"""

from __future__ import annotations

import numpy as np

from mgeldm.models.tracks import LATENT_KEYS

STATS_SEED = 20251130  # any fixed number: the statistics must not depend on the run's seed


def measure_track_stats(dataset, num_windows: int = 1024, *, scale: float = 1.0) -> dict[str, list[list[float]]]:
    """Mean and standard deviation per track and latent channel over ``num_windows`` training windows.

    ``dataset.sample(rng)`` gives items with the three latent windows (C, T); the latents are divided by
    ``scale`` (the pretransform's) first, so the numbers describe what the DiT would otherwise see.
    Returns ``{"mean": [[C] x K], "std": [[C] x K]}``; a channel that never varies gets std 1.
    """
    if num_windows < 1:
        raise ValueError(f"num_windows must be >= 1, got {num_windows}")
    rng = np.random.default_rng(STATS_SEED)
    sums = sq = None
    count = 0
    for _ in range(int(num_windows)):
        item = dataset.sample(rng)
        z = np.stack([np.asarray(item[k], dtype=np.float64) for k in LATENT_KEYS]) / float(scale)  # (K, C, T)
        sums = z.sum(-1) if sums is None else sums + z.sum(-1)
        sq = (z**2).sum(-1) if sq is None else sq + (z**2).sum(-1)
        count += z.shape[-1]
    mean = sums / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    std = np.where(std > 1e-6, std, 1.0)
    return {"mean": np.round(mean, 6).tolist(), "std": np.round(std, 6).tolist()}
