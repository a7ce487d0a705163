"""Writing a seeded multitrack corpus in the Slakh2100 layout.

    <root>/synth_corpus.json                      settings and the list of tracks (written last)
    <root>/{train,validation,test}/TrackNNNNN/
        metadata.yaml                             Slakh-style: stems: {Sxx: {inst_class, program_num, ...}}
        all_src.mid, MIDI/Sxx.mid                 the notes of every stem (rendered or not)
        stems/Sxx.wav                             mono PCM-16, only for stems with audio_rendered: true
        mix.wav                                   the sum of the rendered stems

Track numbers run over the splits in order (train, validation, test), as in Slakh2100. Every song comes
from its own generator, seeded by (seed, split, index), so the same seed gives bit-identical files;
songs whose key, mode, tempo and progression repeat an earlier song are redrawn, so no two songs are
alike and no test song is a training song. A track is built in a temporary folder and renamed into
place; a track already on disk with the same fingerprint is kept (only missing tracks are rendered).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
import yaml

from mgeldm.audio import SAMPLE_RATE
from mgeldm.errors import UserError
from mgeldm.files import atomic_folder, write_text_atomic
from recipes.quickstart.synth.midi import CANONICAL_CLASS, DEFAULT_CLASSES, Song, generate_song
from recipes.quickstart.synth.render import render_instrument, soundfont_path
from recipes.quickstart.synth.timbre import TIMBRES, apply_effects, vary_song

CORPUS_VERSION = 2  # 2: the timbre and soundfont settings (a plain corpus has version 1's files)
SPLITS = ("train", "validation", "test")
MANIFEST = "synth_corpus.json"
TAIL_SECONDS = 0.5  # room for the release of the last notes
TARGET_RMS_DB = (-24.0, -18.0)  # per-stem level over its active frames, drawn per stem
PEAK = 0.9  # mix and stems are scaled together so nothing exceeds this
SUBTYPE = "PCM_16"


@dataclass(frozen=True)
class CorpusSettings:
    seed: int
    n_train: int
    n_valid: int
    n_test: int
    min_seconds: float = 10.0
    max_seconds: float = 20.0
    sample_rate: int = SAMPLE_RATE
    classes: tuple[str, ...] = DEFAULT_CLASSES
    timbre: str = "plain"  # "varied": recipes/quickstart/synth/timbre.py
    soundfont: str | None = None  # None: pretty_midi's TimGM6mb.sf2

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["classes"] = list(self.classes)
        d["version"] = CORPUS_VERSION
        return d


@dataclass
class TrackPlan:
    split: str
    name: str
    song: Song
    fingerprint: str


def plan_corpus(settings: CorpusSettings) -> list[TrackPlan]:
    """Draw every song (MIDI only, cheap), in a fixed order, redrawing songs that repeat another."""
    if settings.min_seconds <= 0 or settings.max_seconds < settings.min_seconds:
        raise UserError(f"--seconds {settings.min_seconds} {settings.max_seconds}: expected 0 < MIN <= MAX")
    if settings.seed < 0:
        raise UserError(f"--seed {settings.seed}: expected a non-negative integer")
    if settings.timbre not in TIMBRES:
        raise UserError(f"--timbre {settings.timbre}: expected one of {', '.join(TIMBRES)}")
    if settings.soundfont is not None and not os.path.isfile(settings.soundfont):
        raise UserError(f"--soundfont {settings.soundfont}: no such file (expected a .sf2 SoundFont)")
    if len({CANONICAL_CLASS.get(c, c) for c in settings.classes}) < 2:
        raise UserError(f"--classes {list(settings.classes)}: name at least two instrument classes")
    counts = dict(zip(SPLITS, (settings.n_train, settings.n_valid, settings.n_test)))
    if any(n < 0 for n in counts.values()):
        raise UserError(f"song counts {counts}: expected non-negative numbers")
    plans: list[TrackPlan] = []
    seen: set[tuple] = set()
    number = 1
    for split_code, split in enumerate(SPLITS):
        for i in range(counts[split]):
            for attempt in range(1000):
                ss = np.random.SeedSequence(settings.seed, spawn_key=(split_code, i, attempt))
                song = generate_song(
                    np.random.default_rng(ss),
                    min_seconds=settings.min_seconds,
                    max_seconds=settings.max_seconds,
                    classes=settings.classes,
                )
                if song.signature() not in seen and _distinct_rendered(song) >= 2:
                    break
            else:  # pragma: no cover - needs tens of thousands of songs
                raise UserError(
                    f"could not draw a song distinct from the {len(seen)} before it with "
                    f"classes {list(settings.classes)}; ask for fewer songs or more classes"
                )
            seen.add(song.signature())
            if settings.timbre == "varied":
                vary_song(
                    song,
                    np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(split_code, i, attempt, 1))),
                )
            plans.append(TrackPlan(split, f"Track{number:05d}", song, song.fingerprint()))
            number += 1
    return plans


def _distinct_rendered(song: Song) -> int:
    """Sources a Slakh reader will see: rendered stems with notes, grouped by canonical class."""
    return len(
        {CANONICAL_CLASS.get(s.inst_class, s.inst_class) for s in song.stems if s.rendered and s.instrument.notes}
    )


def _active_rms(x: np.ndarray, frame: int = 1024) -> float:
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-20))
    rms = np.sqrt(np.mean(x[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))
    active = rms[rms > 1e-4]
    return float(np.sqrt(np.mean(active**2))) if len(active) else 0.0


def render_song(
    song: Song, sample_rate: int, *, timbre: str = "plain", soundfont: str | None = None
) -> tuple[list[np.ndarray | None], np.ndarray, list[float]]:
    """Stems (None where not rendered), their mix and each stem's gain, all scaled to peak <= PEAK; with
    ``timbre="varied"`` each stem goes through its drawn effects (:func:`timbre.apply_effects`) first."""
    n = int(np.ceil((song.seconds + TAIL_SECONDS) * sample_rate))
    seed = int(song.fingerprint()[:16], 16)
    level_rng = np.random.default_rng(seed)
    stems: list[np.ndarray | None] = []
    gains: list[float] = []
    for k, stem in enumerate(song.stems):
        if not stem.rendered:
            stems.append(None)
            gains.append(0.0)
            continue
        audio = render_instrument(stem.instrument, sample_rate, n, soundfont=soundfont)
        if timbre == "varied":
            fx_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,)))
            audio = apply_effects(audio, sample_rate, fx_rng, is_drum=stem.is_drum)
        rms = _active_rms(audio)
        gain = 10 ** (level_rng.uniform(*TARGET_RMS_DB) / 20) / rms if rms > 0 else 1.0
        stems.append(audio * np.float32(gain))
        gains.append(float(gain))
    rendered = [s for s in stems if s is not None]
    mix = np.sum(rendered, axis=0, dtype=np.float32)
    peak = max([float(np.abs(mix).max())] + [float(np.abs(s).max()) for s in rendered])
    scale = PEAK / peak if peak > PEAK else 1.0
    stems = [None if s is None else (s * np.float32(scale)).astype(np.float32) for s in stems]
    mix = (mix * np.float32(scale)).astype(np.float32)
    return stems, mix, [g * scale for g in gains]


def _metadata(
    plan: TrackPlan,
    gains: list[float],
    stems: list[np.ndarray | None],
    sr: int,
    n_samples: int,
    soundfont: str | None = None,
) -> dict:
    song = plan.song
    entries = {}
    for k, (stem, gain, audio) in enumerate(zip(song.stems, gains, stems)):
        entry = {
            "audio_rendered": stem.rendered,
            "inst_class": stem.inst_class,
            "is_drum": stem.is_drum,
            "midi_program_name": stem.program_name,
            "midi_saved": True,
            "plugin_name": os.path.basename(soundfont or soundfont_path()),
            "program_num": stem.program,
            "role": stem.role,
        }
        if audio is not None:
            entry["gain"] = round(gain, 6)
            entry["rms_db"] = round(20 * float(np.log10(_active_rms(audio) + 1e-12)), 3)
        entries[f"S{k:02d}"] = entry
    return {
        "UUID": plan.fingerprint[:32],
        "audio_dir": "stems",
        "midi_dir": "MIDI",
        "normalized": True,
        "target_peak": PEAK,
        "stems": entries,
        "synth": {
            "fingerprint": plan.fingerprint,
            "sample_rate": sr,
            "tempo": song.tempo,
            "key": ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"][song.tonic],
            "mode": song.mode,
            "progression": list(song.progression),
            "n_bars": song.n_bars,
            "section_bars": song.section_bars,
            "seconds": round(n_samples / sr, 4),
        },
    }


def _write_midi(song: Song, folder: Path) -> None:
    import pretty_midi

    (folder / "MIDI").mkdir()
    for k, stem in enumerate(song.stems):
        pm = pretty_midi.PrettyMIDI(initial_tempo=song.tempo)
        pm.instruments.append(stem.instrument)
        pm.write(str(folder / "MIDI" / f"S{k:02d}.mid"))
    song.to_pretty_midi().write(str(folder / "all_src.mid"))


def is_complete(folder: Path, fingerprint: str) -> bool:
    meta = folder / "metadata.yaml"
    if not meta.is_file() or not (folder / "mix.wav").is_file():
        return False
    try:
        data = yaml.safe_load(meta.read_text())
        return data["synth"]["fingerprint"] == fingerprint
    except Exception:
        return False


def write_track(
    plan: TrackPlan, root: Path, sample_rate: int, timbre: str = "plain", soundfont: str | None = None
) -> str:
    """Render and write one track atomically; returns 'kept' or 'written'."""
    final = root / plan.split / plan.name
    if is_complete(final, plan.fingerprint):
        return "kept"
    with atomic_folder(final) as tmp:
        (tmp / "stems").mkdir()
        stems, mix, gains = render_song(plan.song, sample_rate, timbre=timbre, soundfont=soundfont)
        for k, audio in enumerate(stems):
            if audio is not None:
                sf.write(str(tmp / "stems" / f"S{k:02d}.wav"), audio, sample_rate, subtype=SUBTYPE)
        sf.write(str(tmp / "mix.wav"), mix, sample_rate, subtype=SUBTYPE)
        _write_midi(plan.song, tmp)
        meta = _metadata(plan, gains, stems, sample_rate, len(mix), soundfont)
        (tmp / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return "written"


def _check_out_dir(root: Path, settings: CorpusSettings, overwrite: bool) -> None:
    manifest = root / MANIFEST
    if not manifest.is_file():
        stray = [s for s in SPLITS if (root / s).exists()]
        if stray and not overwrite:
            raise UserError(
                f"{root}: has {stray} folders but no {MANIFEST}; not a synthetic corpus "
                "folder (choose another --out or pass --overwrite)"
            )
        return
    old = json.loads(manifest.read_text()).get("settings", {})
    if old != settings.as_dict():
        if not overwrite:
            raise UserError(
                f"{manifest}: the corpus there was made with other settings; choose another --out or pass --overwrite"
            )
        for split in SPLITS:
            shutil.rmtree(root / split, ignore_errors=True)
        manifest.unlink()


def _quiet_worker() -> None:
    """A rendering worker leaves Ctrl-C to the parent and dies silently when the pool terminates it (a forked worker
    would otherwise inherit the tool's SIGTERM handler and print a traceback at every pool exit)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _job(args: tuple[TrackPlan, str, int, str, str | None]) -> tuple[str, str]:
    plan, root, sr, timbre, soundfont = args
    return plan.name, write_track(plan, Path(root), sr, timbre, soundfont)


def _manifest(settings: CorpusSettings, plans: Sequence[TrackPlan]) -> dict:
    """The corpus manifest: the settings and, per track, its split, name, fingerprint and rendered classes."""
    return {
        "settings": settings.as_dict(),
        "tracks": [
            {
                "split": p.split,
                "name": p.name,
                "fingerprint": p.fingerprint,
                "classes": sorted({s.inst_class for s in p.song.stems if s.rendered}),
            }
            for p in plans
        ],
    }


def generate_corpus(
    root: str | os.PathLike,
    settings: CorpusSettings,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generate (or complete) the corpus under root.

    Returns the manifest saved as JSON plus counts of tracks 'written' now and 'kept' from disk.
    """
    from mgeldm.progress import progress_bar

    root = Path(root)
    plans = plan_corpus(settings)  # validates the settings before anything is written
    root.mkdir(parents=True, exist_ok=True)
    _check_out_dir(root, settings, overwrite)
    jobs = [(p, str(root), settings.sample_rate, settings.timbre, settings.soundfont) for p in plans]
    bar = progress_bar(total=len(jobs), desc="synth corpus", unit="song", disable=not progress)
    results: dict[str, str] = {}

    def consume(it: Iterator[tuple[str, str]]) -> None:
        for name, state in it:
            results[name] = state
            bar.update(1)

    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers, initializer=_quiet_worker) as pool:
            consume(pool.imap_unordered(_job, jobs))
    else:
        consume(map(_job, jobs))
    bar.close()
    manifest = _manifest(settings, plans)
    write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=1))
    return {
        **manifest,
        "written": sum(v == "written" for v in results.values()),
        "kept": sum(v == "kept" for v in results.values()),
    }


__all__: Sequence[str] = ("CorpusSettings", "generate_corpus", "plan_corpus", "render_song", "write_track")
