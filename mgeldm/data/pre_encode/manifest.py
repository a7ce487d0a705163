"""Merging a corpus's ``manifest.json`` once every shard has reported."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from mgeldm.data.corpora.base import CorpusReader, TrackRef
from mgeldm.data.pre_encode.layout import MANIFEST_NAME, SHARDS_DIR, shard_file, track_rel, track_summary
from mgeldm.data.pre_encode.records import RunInfo
from mgeldm.files import write_bytes_atomic

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1


def merge_manifest(
    root: Path, reader: CorpusReader, refs: Sequence[TrackRef], num_shards: int, info: RunInfo
) -> Path | None:
    """Write ``<corpus>/manifest.json`` once every shard has reported; None while some are missing."""
    corpus_dir = root / reader.out_name
    shard_files = [shard_file(corpus_dir, i, num_shards) for i in range(num_shards)]
    if not all(p.is_file() for p in shard_files):
        return None
    skipped = {}
    for p in shard_files:
        for item in json.loads(p.read_text())["skipped"]:
            skipped[(item["folder"], item["source"])] = item
    skipped_folders = {folder for folder, _ in skipped}
    tracks, missing, frames = [], [], 0
    for ref in refs:
        folder = root / ref.out_rel
        rel = track_rel(reader, ref)
        if folder.is_dir():
            entry = {"folder": rel, "source": ref.source_id, **track_summary(folder, reader.mix_only)}
            frames += int(entry["frames"])
            tracks.append(entry)
        elif rel not in skipped_folders:
            missing.append(rel)
    if missing:
        log.warning(
            f"{reader.out_name}: {len(missing)} tracks neither encoded nor skipped "
            f"(first: {missing[0]}); rerun to finish"
        )
        return None
    ae_rate = info.autoencoder["sample_rate"] / info.autoencoder["downsampling_ratio"]
    manifest = {
        "format": MANIFEST_FORMAT,
        "corpus": reader.out_name,
        "reader": reader.key,
        "mix_only": reader.mix_only,
        "autoencoder": info.autoencoder,
        "embedder": info.embedder,
        "versions": info.versions(),
        "summary": {"tracks": len(tracks), "hours": round(frames / ae_rate / 3600.0, 4), "skipped": len(skipped)},
        "tracks": tracks,
        "skipped": [skipped[k] for k in sorted(skipped)],
    }
    path = corpus_dir / MANIFEST_NAME
    write_bytes_atomic(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    shutil.rmtree(corpus_dir / SHARDS_DIR, ignore_errors=True)
    return path
