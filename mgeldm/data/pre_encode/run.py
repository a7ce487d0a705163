"""The run: every corpus, this shard's songs not complete yet, encoded and written one track folder at a time;
broken songs skipped and reported; then the shard's report and the manifest merge."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mgeldm.data.corpora.base import BrokenSong, CorpusReader, CorpusReport, TrackRef
from mgeldm.data.pre_encode.encoder import TrackEncoder
from mgeldm.data.pre_encode.layout import (
    forget_partial,
    is_complete,
    save_zero_latent,
    shard_file,
    track_rel,
    track_summary,
    write_track_folder,
)
from mgeldm.data.pre_encode.manifest import merge_manifest
from mgeldm.data.pre_encode.records import RunInfo
from mgeldm.data.pre_encode.reencode import prepare_root
from mgeldm.data.pre_encode.shards import CorpusPlan, plan_corpora
from mgeldm.data.pre_encode.tracks import encode_track
from mgeldm.files import write_bytes_atomic

# Test hook: with MGELDM_TEST_STOP_AFTER_TRACKS=N the process kills itself (SIGKILL, like `kill -9`) right after
# writing its N-th track folder, so a test knows exactly where the run died.
STOP_AFTER_TRACKS_ENV = "MGELDM_TEST_STOP_AFTER_TRACKS"


def pre_encode(
    readers: Sequence[CorpusReader],
    save_root: str | os.PathLike,
    *,
    encoder: TrackEncoder | None,
    info: RunInfo | None,
    num_shards: int = 1,
    shard_id: int = 0,
    dry_run: bool = False,
    echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> list[CorpusReport]:
    """Encode every song of ``readers`` under ``save_root`` (this shard's share); return the reports.

    ``encoder``/``info`` may be None for a dry run, which only lists what would be done.
    """
    root = Path(save_root)
    plans = plan_corpora(readers, num_shards, shard_id)
    if dry_run:
        return [_dry_run(root, plan, echo) for plan in plans]
    prepare_root(root, plans, info, reencode=encoder.settings.reencode)
    save_zero_latent(root, encoder)
    after_track = _kill_hook()
    return [encode_corpus(root, plan, encoder, info, (shard_id, num_shards), echo, after_track) for plan in plans]


def _dry_run(root: Path, plan: CorpusPlan, echo: Callable[[str], None]) -> CorpusReport:
    todo = [r for r in plan.mine if not is_complete(root, r)]
    echo(_listing_line(plan, todo))
    for ref in todo:
        echo(f"  would encode {ref.source_id} -> {ref.out_rel}")
    return CorpusReport(plan.reader.out_name)


def _listing_line(plan: CorpusPlan, todo: list[TrackRef]) -> str:
    return (
        f"{plan.reader.out_name}: {len(plan.refs)} songs, this shard {len(plan.mine)}, "
        f"already complete {len(plan.mine) - len(todo)}"
    )


def encode_corpus(
    root: Path,
    plan: CorpusPlan,
    encoder: TrackEncoder,
    info: RunInfo,
    shard: tuple[int, int],
    echo: Callable[[str], None],
    after_track: Callable[[], None],
) -> CorpusReport:
    """Encode this shard's songs of one corpus that are not complete yet, then report and merge the manifest."""
    reader = plan.reader
    report = CorpusReport(reader.out_name)
    todo = [r for r in plan.mine if not is_complete(root, r)]
    echo(_listing_line(plan, todo))
    skipped = []
    for ref in _progress(todo, reader.out_name, encoder.settings.progress):
        try:
            track = reader.load(ref)
            files = encode_track(track, encoder, mix_only=reader.mix_only)
        except BrokenSong as err:
            forget_partial(root / ref.out_rel)
            skipped.append(_skip(report, reader, ref, ref.source_id, err))
            continue
        write_track_folder(root / ref.out_rel, files)
        report.add_song(track.seconds)
        after_track()
    todo_set = set(todo)
    for ref in plan.mine:
        if ref not in todo_set:  # complete from an earlier run: counted, not re-read
            frames = track_summary(root / ref.out_rel, reader.mix_only)["frames"]
            report.add_song(frames * encoder.ratio / encoder.ae_sr)
        for source in ref.dropped:
            duplicate = BrokenSong("duplicate", f"{ref.source_id} is read instead")
            skipped.append(_skip(report, reader, ref, source, duplicate))
    shard_id, num_shards = shard
    shard_path = shard_file(root / reader.out_name, shard_id, num_shards)
    write_bytes_atomic(shard_path, json.dumps({"skipped": skipped}, indent=1).encode())
    merged = merge_manifest(root, reader, plan.refs, num_shards, info)
    echo(report.summary() + ("" if merged else " (manifest waits for the other shards)"))
    return report


def _skip(report: CorpusReport, reader: CorpusReader, ref: TrackRef, source: str, err: BrokenSong) -> dict:
    """Report a skipped file (one warning line) and return its manifest entry."""
    report.skip(source, err)
    return {"folder": track_rel(reader, ref), "source": source, "reason": err.reason, "detail": err.detail}


def _kill_hook() -> Callable[[], None]:
    """What runs after each written track folder: nothing, or the test hook of ``STOP_AFTER_TRACKS_ENV``."""
    value = os.environ.get(STOP_AFTER_TRACKS_ENV)
    if not value:
        return lambda: None
    limit, written = int(value), 0

    def after_track() -> None:
        nonlocal written
        written += 1
        if written >= limit:
            os.kill(os.getpid(), signal.SIGKILL)

    return after_track


def _progress(items: list, name: str, enabled: bool):
    if not enabled or not items:
        return items
    from mgeldm.progress import progress_bar

    return progress_bar(items, desc=f"pre-encode {name}", unit="track")
