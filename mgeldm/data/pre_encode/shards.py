"""Sharding: every corpus of the run listed (checked, nothing written) and this shard's share of its songs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mgeldm.data.corpora.base import CorpusReader, TrackRef
from mgeldm.errors import UserError


def my_refs(refs: Sequence[TrackRef], offset: int, num_shards: int, shard_id: int) -> list[TrackRef]:
    """This shard's share: positions ``offset + i`` with ``(offset + i) % num_shards == shard_id``."""
    return [r for i, r in enumerate(refs) if (offset + i) % num_shards == shard_id]


@dataclass
class CorpusPlan:
    """One corpus of the run: its reader, every song, and this shard's share."""

    reader: CorpusReader
    refs: list[TrackRef]
    mine: list[TrackRef]


def plan_corpora(readers: Sequence[CorpusReader], num_shards: int, shard_id: int) -> list[CorpusPlan]:
    """List every corpus (refusing an empty or wrong-layout root) and this shard's share, writing nothing."""
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise UserError(f"shard_id={shard_id}, num_shards={num_shards}: expected 0 <= shard_id < num_shards")
    plans, offset = [], 0
    for reader in readers:
        refs = reader.songs()
        plans.append(CorpusPlan(reader, refs, my_refs(refs, offset, num_shards, shard_id)))
        offset += len(refs)
    return plans
