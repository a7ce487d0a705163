"""The re-encode policy: one save root holds one encoder's latents; a rerun with another encoder is refused unless
``reencode`` starts the run's corpora over."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from mgeldm.data.pre_encode.layout import ENCODING_NAME, MANIFEST_NAME, PARTIAL_PREFIX, PARTIAL_SUFFIX
from mgeldm.data.pre_encode.records import RunInfo
from mgeldm.data.pre_encode.shards import CorpusPlan
from mgeldm.errors import UserError
from mgeldm.files import write_bytes_atomic

OLD_SUFFIX = ".old" + PARTIAL_SUFFIX  # a corpus folder set aside by ``reencode``, then deleted


def encoding_record(info: RunInfo) -> dict:
    """What ``encoding.json`` holds: the autoencoder and the embedder (their hashes) of every latent of a root."""
    return {"autoencoder": info.autoencoder, "embedder": info.embedder}


def earlier_records(root: Path) -> dict[Path, dict]:
    """The records of earlier runs into ``root``: its ``encoding.json`` and every corpus ``manifest.json``."""
    manifests = sorted(p for p in root.glob(f"*/{MANIFEST_NAME}") if not p.parent.name.startswith(PARTIAL_PREFIX))
    found = {}
    for path in [root / ENCODING_NAME, *manifests]:
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            found[path] = {"autoencoder": dict(data["autoencoder"]), "embedder": dict(data["embedder"])}
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"{path}: not a pre-encoding record (no autoencoder and embedder); move it out of +save_root_dir"
            ) from None
    return found


def encoder_difference(old: dict, new: dict) -> str | None:
    """How an earlier record differs from this run's, in words; None for the same autoencoder and embedder."""
    before, now = str(old["autoencoder"].get("sha256")), str(new["autoencoder"]["sha256"])
    if before != now:
        return f"autoencoder {before[:12]}… (this run: {now[:12]}…)"
    if old["embedder"] != new["embedder"]:
        return f"embedder {_embedder_words(old['embedder'])} (this run: {_embedder_words(new['embedder'])})"
    return None


def _embedder_words(embedder: dict) -> str:
    hashes = ",".join(str(h)[:12] for _, h in sorted(dict(embedder.get("sha256") or {}).items()))
    return f"{embedder.get('type')} dim {embedder.get('dim')}" + (f" weights {hashes}…" if hashes else "")


def prepare_root(root: Path, plans: Sequence[CorpusPlan], info: RunInfo, *, reencode: bool) -> None:
    """Before the first track: every latent of a root must come from one autoencoder and embedder.

    A root whose ``encoding.json`` or a corpus manifest names another one is refused, unless ``reencode``:
    then the run's corpus folders are deleted first (the whole folder, all shards' tracks, so that no old track
    is ever taken for a finished one), which is refused while the root holds other corpora of the old encoder.
    ``reencode`` also deletes this shard's tracks made with the same encoder, so that every track is encoded
    again. Then ``encoding.json`` records this run's encoder.
    """
    new = encoding_record(info)
    records = earlier_records(root)
    foreign = {p: d for p, old in records.items() if (d := encoder_difference(old, new))}
    if foreign and not reencode:
        path, what = next(iter(foreign.items()))
        raise UserError(
            f"{path}: {root} holds latents made with {what}; one root holds one encoder's latents: "
            "pass pre_encode.reencode=true to encode this run's corpora again from scratch, "
            "or choose another +save_root_dir"
        )
    _remove_set_aside(root)
    if reencode and foreign:
        same = {p.parent.name for p in records if p.name == MANIFEST_NAME and p not in foreign}
        _delete_corpora(root, [plan.reader.out_name for plan in plans], same)
    if reencode:
        for ref in (ref for plan in plans for ref in plan.mine):
            shutil.rmtree(root / ref.out_rel, ignore_errors=True)
    write_bytes_atomic(root / ENCODING_NAME, (json.dumps(new, indent=2) + "\n").encode())


def _delete_corpora(root: Path, names: Sequence[str], same_encoder: set[str]) -> None:
    """Delete the corpus folders ``names`` (renamed aside first: one atomic step for concurrent shards); refuse
    while the root holds another corpus not known to come from this run's encoder (``same_encoder``)."""
    others = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in names and p.name not in same_encoder
    )
    if others:
        raise UserError(
            f"pre_encode.reencode: {root} also holds {others}, not made with this run's encoder and not "
            "in +extract_dataset; encode them in this run too or move them out of the root"
        )
    for name in names:
        if (root / name).is_dir():
            aside = root / f"{PARTIAL_PREFIX}{name}.{os.getpid()}{OLD_SUFFIX}"
            os.replace(root / name, aside)
            shutil.rmtree(aside, ignore_errors=True)


def _remove_set_aside(root: Path) -> None:
    """Delete corpus folders a killed ``reencode`` left set aside (concurrent deletions tolerate each other)."""
    for path in root.glob(f"{PARTIAL_PREFIX}*{OLD_SUFFIX}"):
        shutil.rmtree(path, ignore_errors=True)
