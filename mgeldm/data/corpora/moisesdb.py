"""MoisesDB (``<root>/<track id>/data.json`` + one folder of wavs per stem).

Each stem folder is one source: its wavs are mono-summed (padded to the longest), ``other_keys`` is
renamed ``synths``; stem folders are read in sorted order. Train/test come from the seeded 90/10 split
of the original (sklearn ``train_test_split(sorted ids, test_size=0.1, random_state=42)``), reproduced
here with numpy only, order included: track numbers follow the split's permuted order, as there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from mgeldm.data.corpora.base import BrokenSong, CorpusReader, StemCollector, Track, TrackRef

T = TypeVar("T")
LABEL_ALIASES = {"other_keys": "synths"}
SPLIT_SEED = 42
TEST_FRACTION = 0.1


def seeded_split(
    items: Sequence[T], test_size: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> tuple[list[T], list[T]]:
    """sklearn's ``train_test_split(items, test_size, random_state=seed)`` (ShuffleSplit semantics).

    ``n_test = ceil(test_size * n)``; one ``RandomState(seed).permutation(n)``; test = its first
    ``n_test`` entries, train = the rest, both in permuted order.
    """
    n = len(items)
    n_test = math.ceil(test_size * n)
    perm = np.random.RandomState(seed).permutation(n)
    return [items[i] for i in perm[n_test:]], [items[i] for i in perm[:n_test]]


class MoisesReader(CorpusReader):
    key = "moisesdb"
    out_name = "moisesdb"
    layout = "<track id>/data.json with a folder of wavs per stem"
    song_marker = "data.json"

    def __init__(self, root, split_seed: int = SPLIT_SEED) -> None:
        super().__init__(root)
        self.split_seed = split_seed

    def refs(self) -> list[TrackRef]:
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        train, test = seeded_split(names, TEST_FRACTION, self.split_seed)
        refs = []
        for split, names_in_split in (("train", train), ("test", test)):
            refs += [self._ref(split, i, name, self.root / name) for i, name in enumerate(names_in_split)]
        return refs

    def files(self, ref: TrackRef):
        return None, sorted(ref.path.rglob("*.wav"))

    def read(self, ref: TrackRef) -> Track:
        stem_dirs = sorted(p for p in ref.path.iterdir() if p.is_dir())
        if not (ref.path / "data.json").is_file():
            raise BrokenSong("bad metadata", f"{ref.source_id}: no data.json")
        collector = StemCollector()
        for stem_dir in stem_dirs:
            files = sorted(stem_dir.glob("*.wav"))
            if not files:
                raise BrokenSong("empty stem", f"{ref.source_id}/{stem_dir.name}: no wav files")
            label = LABEL_ALIASES.get(stem_dir.name, stem_dir.name)
            for f in files:
                collector.add(label, f)
        return collector.track(ref.source_id)
