"""The built-in synthetic corpus: seeded, Slakh2100 layout, readable by the Slakh reader, real drums."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from recipes.quickstart.synth.__main__ import main as synth_main
from recipes.quickstart.synth.corpus import CorpusSettings, generate_corpus, plan_corpus
from recipes.quickstart.synth.midi import CANONICAL_CLASS, INSTRUMENT_CLASSES, generate_song
from recipes.quickstart.synth.render import render_instrument

SETTINGS = CorpusSettings(seed=3, n_train=3, n_valid=1, n_test=2, min_seconds=2.0, max_seconds=3.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "corpus"
    generate_corpus(root, SETTINGS, progress=False)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_bit_identical_files_and_another_seed_does_not(corpus, tmp_path):
    again = tmp_path / "again"
    generate_corpus(again, SETTINGS, workers=2, progress=False)  # worker count must not matter
    assert _files(corpus) == _files(again)
    other = plan_corpus(CorpusSettings(**{**SETTINGS.__dict__, "seed": 4}))
    assert {p.fingerprint for p in other}.isdisjoint(p.fingerprint for p in plan_corpus(SETTINGS))


def test_slakh_layout_and_metadata(corpus):
    manifest = json.loads((corpus / "synth_corpus.json").read_text())
    assert [t["split"] for t in manifest["tracks"]] == ["train"] * 3 + ["validation"] + ["test"] * 2
    names = sorted(p.name for split in ("train", "validation", "test") for p in (corpus / split).iterdir())
    assert names == [f"Track{i:05d}" for i in range(1, 7)]
    midi_only = 0
    for track in (corpus / "train").iterdir():
        meta = yaml.safe_load((track / "metadata.yaml").read_text())
        assert meta["audio_dir"] == "stems" and isinstance(meta["stems"], dict)
        mix, sr = sf.read(track / "mix.wav", dtype="float64")
        assert sr == SETTINGS.sample_rate and mix.ndim == 1
        assert SETTINGS.min_seconds * 0.5 < len(mix) / sr < SETTINGS.max_seconds * 2 + 1
        total = np.zeros_like(mix)
        for stem_id, info in meta["stems"].items():
            assert {"inst_class", "program_num", "is_drum", "audio_rendered"} <= set(info)
            assert info["inst_class"] in INSTRUMENT_CLASSES
            assert isinstance(info["is_drum"], bool) and info["is_drum"] == (info["inst_class"] == "Drums")
            assert (track / "MIDI" / f"{stem_id}.mid").is_file()
            wav = track / "stems" / f"{stem_id}.wav"
            assert wav.is_file() == info["audio_rendered"]
            midi_only += not info["audio_rendered"]
            if info["audio_rendered"]:
                stem, stem_sr = sf.read(wav, dtype="float64")
                assert stem_sr == sr and stem.shape == mix.shape and np.abs(stem).max() > 1e-3
                total += stem
        # mix = sum of the rendered stems, up to 16-bit rounding of each file
        assert np.abs(total - mix).max() <= (len(meta["stems"]) + 1) / 32768
    assert midi_only >= 1  # this seed has a MIDI-only stem (audio_rendered: false), as Slakh does


def test_slakh_reader_reads_the_corpus(corpus):
    slakh = pytest.importorskip("mgeldm.data.corpora.slakh")
    reader = slakh.SlakhReader(corpus)
    refs = reader.refs()
    assert [r.split for r in refs] == ["train"] * 3 + ["valid"] + ["test"] * 2
    for ref in refs:
        track = reader.load(ref)
        meta = yaml.safe_load((ref.path / "metadata.yaml").read_text())
        expected = {
            CANONICAL_CLASS.get(s["inst_class"], s["inst_class"]) for s in meta["stems"].values() if s["audio_rendered"]
        }
        assert set(track.stems) == expected and len(expected) >= 2
        assert track.sample_rate == SETTINGS.sample_rate


def test_classes_songs_distinct_and_test_never_in_train():
    plans = plan_corpus(CorpusSettings(seed=0, n_train=40, n_valid=5, n_test=10, min_seconds=4, max_seconds=8))
    classes = Counter(
        CANONICAL_CLASS.get(s.inst_class, s.inst_class) for p in plans for s in p.song.stems if s.rendered
    )
    assert len(classes) >= 5, classes
    assert len({p.song.signature() for p in plans}) == len(plans)
    assert len({p.fingerprint for p in plans}) == len(plans)
    train = {p.fingerprint for p in plans if p.split == "train"}
    assert train.isdisjoint(p.fingerprint for p in plans if p.split == "test")
    # arrangements: some part is silent for at least a whole section in most songs
    enters_or_leaves = 0
    for p in plans:
        s = p.song
        for stem in s.stems:
            played = {int(n.start // s.bar_seconds) for n in stem.instrument.notes}
            enters_or_leaves += len(played) < s.n_bars
    assert enters_or_leaves > len(plans) // 2
    assert len({p.song.tempo for p in plans}) > 10 and len({p.song.tonic for p in plans}) > 6


def _flatness(audio: np.ndarray) -> float:
    n = len(audio) // 1024
    frames = audio[: n * 1024].reshape(n, 1024) * np.hanning(1024)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    power = power[power.sum(1) > 1e-6 * power.sum(1).max()]
    return float(np.mean(np.exp(np.mean(np.log(power), 1)) / np.mean(power, 1)))


def test_drums_are_percussion_not_a_piano():
    for seed in range(40):
        song = generate_song(np.random.default_rng(seed), min_seconds=2, max_seconds=3)
        drums = [s for s in song.stems if s.is_drum]
        if drums:
            break
    inst = drums[0].instrument
    audio = render_instrument(inst, 16000, 16000 * 3)
    as_piano = copy.deepcopy(inst)
    as_piano.is_drum, as_piano.program = False, 0
    piano = render_instrument(as_piano, 16000, 16000 * 3)
    assert np.abs(audio).max() > 0.01
    # noise-like drum kit spectra are far flatter than the tonal piano playing the same keys
    assert _flatness(audio) > 0.05 and _flatness(audio) > 20 * _flatness(piano)


def test_rerun_keeps_tracks_and_other_settings_are_refused(corpus, capsys):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*.wav")}
    assert generate_corpus(corpus, SETTINGS, progress=False)["kept"] == 6
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*.wav")} == before
    rc = synth_main(
        ["--out", str(corpus), "--seed", "9", "--n-train", "1", "--n-valid", "0", "--n-test", "0", "--quiet"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "other settings" in err[0]


def test_cli_writes_a_corpus(tmp_path, capsys):
    out = tmp_path / "c"
    rc = synth_main(
        [
            "--out",
            str(out),
            "--seed",
            "1",
            "--n-train",
            "1",
            "--n-valid",
            "0",
            "--n-test",
            "1",
            "--seconds",
            "2",
            "--classes",
            "Drums,Bass,Piano,Guitar,Synth Lead",
            "--quiet",
        ]
    )
    assert rc == 0
    assert (out / "train" / "Track00001" / "mix.wav").is_file()
    assert (out / "test" / "Track00002" / "metadata.yaml").is_file()
    assert synth_main(["--out", str(out), "--seconds", "1", "2", "3"]) == 2
    assert synth_main(["--out", str(tmp_path / "d"), "--classes", "Kazoo"]) == 2
