"""The folder layout of a save root: file names, track folders written whole under a temporary name and read
back, the zero latent, the shard reports' paths."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mgeldm.data.corpora.base import CorpusReader, TrackRef
from mgeldm.files import atomic_folder, write_bytes_atomic

if TYPE_CHECKING:
    from mgeldm.data.pre_encode.encoder import TrackEncoder

MANIFEST_NAME = "manifest.json"
SHARDS_DIR = ".shards"
PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"
ZERO_LATENT_NAME = "zero_latent.npy"
ENCODING_NAME = "encoding.json"


def partial_dir(final: Path) -> Path:
    return final.parent / f"{PARTIAL_PREFIX}{final.name}{PARTIAL_SUFFIX}"


def forget_partial(final: Path) -> None:
    tmp = partial_dir(final)
    if tmp.exists():
        shutil.rmtree(tmp)


def write_track_folder(final: Path, files: Mapping[str, object]) -> None:
    """Write every file under a temporary folder name, then rename it to ``final`` in one step; a complete
    folder another process wrote meanwhile is kept (``mgeldm.files.atomic_folder``)."""
    forget_partial(final)
    with atomic_folder(final, replace=False) as tmp:
        for rel, content in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, np.ndarray):
                np.save(path, np.ascontiguousarray(content, dtype=np.float32))
            else:
                path.write_text(json.dumps(content, indent=4))


def save_zero_latent(root: Path, encoder: TrackEncoder) -> Path:
    import io

    buf = io.BytesIO()
    np.save(buf, encoder.zero_latent().astype(np.float32))
    path = root / ZERO_LATENT_NAME
    write_bytes_atomic(path, buf.getvalue())
    return path


def track_summary(folder: Path, mix_only: bool) -> dict[str, object]:
    """What the manifest says about one complete track folder (read from its files, cheaply)."""
    mix = np.load(folder / "mix.npy", mmap_mode="r")
    clap = np.load(folder / "mix_clap.npy", mmap_mode="r")
    entry: dict[str, object] = {"frames": int(mix.shape[-1]), "clap_frames": int(clap.shape[-1])}
    if not mix_only:
        labels = []
        k = 0
        while (folder / f"comb{k}" / "comb_info.json").is_file():
            labels.append(json.loads((folder / f"comb{k}" / "comb_info.json").read_text())["src_label"])
            k += 1
        entry["labels"] = labels
    return entry


def is_complete(root: Path, ref: TrackRef) -> bool:
    return (root / ref.out_rel).is_dir()


def track_rel(reader: CorpusReader, ref: TrackRef) -> str:
    """The track folder relative to its corpus folder (``train/track00003``)."""
    return ref.out_rel[len(reader.out_name) + 1 :]


def shard_file(corpus_dir: Path, shard_id: int, num_shards: int) -> Path:
    return corpus_dir / SHARDS_DIR / f"shard{shard_id:03d}-of-{num_shards:03d}.json"
