"""Seeded item sampling shared by the latent and audio datasets, and their weighted concatenation.

An item's randomness comes only from ``(seed, epoch, index)``: never the clock, never the worker id, so a
run reproduces whatever ``num_workers`` is and a resumed run (same epoch) continues the same stream.
Each dataset implements ``sample(rng)``; ``__getitem__(i)`` is ``sample(rng(seed, epoch, i))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item: a SeedSequence of ``(seed, epoch, index)``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


class SeededDataset(Dataset):
    """A virtual-epoch dataset of ``num_examples`` random draws, each seeded by its index."""

    def __init__(self, num_examples: int, seed: int = 0) -> None:
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch (the training loop does) so epochs differ but stay reproducible."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_examples:
            raise IndexError(index)
        return self.sample(item_rng(self.seed, self.epoch, index))

    def sample(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError


class WeightedConcatDataset(SeededDataset):
    """Several datasets as one of length ``sum(len)``.

    Shuffle mode: each item picks a dataset with probability proportional to its ``num_examples`` and
    draws from it with the item's own generator. Otherwise round-robin: item i comes from dataset
    ``i % n`` (its item ``i % len``), as the original's validation interleaving.
    """

    def __init__(self, datasets: Sequence[SeededDataset], shuffle: bool = True, seed: int = 0) -> None:
        if not datasets:
            raise ValueError("WeightedConcatDataset needs at least one dataset")
        super().__init__(sum(len(d) for d in datasets), seed)
        self.datasets = list(datasets)
        self.shuffle = shuffle
        sizes = np.array([len(d) for d in self.datasets], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for d in self.datasets:
            d.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_examples:
            raise IndexError(index)
        if not self.shuffle:
            d = self.datasets[index % len(self.datasets)]
            return d[index % len(d)]
        return self.sample(item_rng(self.seed, self.epoch, index))

    def sample(self, rng: np.random.Generator) -> dict:
        k = int(rng.choice(len(self.datasets), p=self.weights))
        return self.datasets[k].sample(rng)
