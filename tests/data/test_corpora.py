"""Corpus readers on tiny fake corpora in each corpus's real layout (no model involved)."""

import numpy as np
import pytest
import torch

import _data_helpers as H
from mgeldm.data.corpora.base import BrokenSong, CorpusReport
from mgeldm.data.corpora.moisesdb import seeded_split
from mgeldm.data.corpora.registry import READERS, build_reader
from mgeldm.errors import UserError

SEC = 1.0


def _load_all(reader):
    good, bad = {}, {}
    for ref in reader.refs():
        try:
            good[ref.out_rel] = (ref, reader.load(ref))
        except BrokenSong as err:
            bad[ref.out_rel] = err
    return good, bad


def test_registry_keys_and_errors(tmp_path):
    assert set(READERS) >= {"slakh2100", "musdb18hq", "moisesdb", "medleydbV2", "mtgjamendo", "other_tracks"}
    with pytest.raises(UserError, match="unknown corpus"):
        build_reader("nope", tmp_path)
    with pytest.raises(UserError, match="data_dirs.slakh2100"):
        build_reader("slakh2100", None)
    with pytest.raises(UserError, match="not a folder"):
        build_reader("slakh2100", tmp_path / "absent")


def test_slakh_groups_rendered_stems_by_class(tmp_path):
    reader = build_reader("slakh2100", H.make_slakh(tmp_path / "slakh", SEC))
    good, bad = _load_all(reader)
    assert sorted(good) == ["slakh2100/train/track00000", "slakh2100/valid/track00000"]
    assert list(bad) == ["slakh2100/train/track00001"] and bad["slakh2100/train/track00001"].reason == "missing file"
    ref, track = good["slakh2100/train/track00000"]
    assert ref.source_id == "Track00001" and track.sample_rate == H.SR
    assert list(track.stems) == ["Piano", "Bass", "Strings"]  # Drums not rendered; continued strings merged
    n = int(SEC * H.SR)
    assert all(s.shape == (n,) and s.dtype == torch.float32 for s in track.stems.values())
    strings = H.tone(SEC, 660, seed=3)[:, 0] + H.tone(SEC, 880, seed=4)[:, 0]
    np.testing.assert_allclose(track.stems["Strings"].numpy(), strings, atol=1e-4)  # flac is 16-bit
    bass = track.stems["Bass"].numpy()  # shorter stem: zero-padded to the longest
    assert np.all(bass[int(0.75 * n) :] == 0) and np.abs(bass[: int(0.75 * n)]).max() > 0.1


def test_musdb_order_and_downmix(tmp_path):
    reader = build_reader("musdb18hq", H.make_musdb(tmp_path / "musdb", SEC))
    good, bad = _load_all(reader)
    assert sorted(good) == ["musdb18/test/track00000", "musdb18/train/track00000"]
    assert bad["musdb18/train/track00001"].reason == "unreadable"
    _, track = good["musdb18/train/track00000"]
    assert list(track.stems) == ["vocals", "drums", "bass", "other"]
    assert track.stems["vocals"].dim() == 1


def test_moisesdb_split_layout_and_labels(tmp_path):
    reader = build_reader("moisesdb", H.make_moisesdb(tmp_path / "moises", SEC))
    refs = reader.refs()
    train, test = seeded_split(sorted(H.MOISES_IDS))
    assert [r.source_id for r in refs if r.split == "train"] == train
    assert [r.source_id for r in refs if r.split == "test"] == test
    assert len(test) == 1 and len(train) == 4
    assert [r.out_rel for r in refs if r.split == "train"] == [f"moisesdb/train/track{i:05d}" for i in range(4)]
    good, bad = _load_all(reader)
    assert [e.reason for e in bad.values()] == ["single stem"]
    _, track = good["moisesdb/train/track00000"]
    assert list(track.stems) == ["drums", "synths", "vocals"]  # sorted folders, other_keys -> synths
    n = H.MOISES_IDS.index(track.id)
    drums = H.tone(SEC, 80, seed=n + 10)[:, 0].copy()
    drums[: int(0.5 * SEC * H.SR)] += H.tone(0.5 * SEC, 200, seed=n + 20)[:, 0]  # summed, the short file padded
    np.testing.assert_allclose(track.stems["drums"].numpy(), drums, atol=1e-3)


@pytest.mark.parametrize("n", [2, 5, 9, 10, 11, 37, 240])
def test_seeded_split_is_sklearns(n):
    sklearn = pytest.importorskip("sklearn.model_selection")
    items = [f"track{i:03d}" for i in range(n)]
    train, test = sklearn.train_test_split(items, test_size=0.1, random_state=42)
    assert seeded_split(items) == (list(train), list(test))


def test_seeded_split_known_values():
    # RandomState(42).permutation(10) = [8 1 5 0 7 2 9 4 3 6]: one test item (ceil(1.0)), the rest in that order
    train, test = seeded_split(list(range(10)))
    assert test == [8] and train == [1, 5, 0, 7, 2, 9, 4, 3, 6]


def test_medleydb_sums_same_instrument_and_pads(tmp_path):
    reader = build_reader("medleydbV2", H.make_medleydb(tmp_path / "medley", 3.0))
    good, bad = _load_all(reader)
    assert list(good) == ["medleydbv2/track00000"] and bad["medleydbv2/track00001"].reason == "bad metadata"
    _, track = good["medleydbv2/track00000"]
    assert list(track.stems) == ["electric_bass", "male_singer"]
    n = 3 * H.SR
    assert track.stems["electric_bass"].shape == (n,)
    expected = H.tone(3.0, 60, seed=1)[:, 0].copy()
    expected[: n // 2] += H.tone(1.5, 90, seed=3)[:, 0]
    np.testing.assert_allclose(track.stems["electric_bass"].numpy(), expected, atol=1e-3)


def test_mixtures_layout(tmp_path):
    reader = build_reader("mtgjamendo", H.make_mtg(tmp_path / "mtg", SEC))
    good, bad = _load_all(reader)
    assert sorted(good) == ["mtg_jamendo/00/1000", "mtg_jamendo/01/1001", "mtg_jamendo/01/2000", "mtg_jamendo/02/1002"]
    assert list(bad) == ["mtg_jamendo/01/empty"] and bad["mtg_jamendo/01/empty"].reason == "empty stem"
    assert all(list(t.stems) == ["mix"] for _, t in good.values())


def test_mtg_low_quality_copy_is_the_song_of_its_id(tmp_path):
    H.write(tmp_path / "00" / "1201.low.wav", H.tone(SEC, 200))
    H.write(tmp_path / "01" / "1300.low.wav", H.tone(SEC, 300))
    H.write(tmp_path / "01" / "1300.wav", H.tone(SEC, 300))
    refs = build_reader("mtgjamendo", tmp_path).songs()
    assert [(r.out_rel, r.source_id, r.dropped) for r in refs] == [
        ("mtg_jamendo/00/1201", "00/1201.low.wav", ()),
        ("mtg_jamendo/01/1300", "01/1300.wav", ("01/1300.low.wav",)),
    ]


@pytest.mark.parametrize("stray", ["top.wav", "00/extra/deeper.wav"])
def test_mtg_refuses_files_outside_its_layout(tmp_path, stray):
    H.write(tmp_path / "00" / "1000.wav", H.tone(SEC, 200))
    H.write(tmp_path / stray, H.tone(SEC, 300))
    folder = (tmp_path / stray).parent
    with pytest.raises(UserError, match=f"^data_dirs.mtgjamendo: {folder} holds {H.Path(stray).name} outside"):
        build_reader("mtgjamendo", tmp_path).songs()


def test_mixtures_in_sub_folders_are_numbered_flat(tmp_path):
    for rel in ("b.wav", "a/x.flac", "a/x.wav", "a/deep/y.wav"):
        H.write(tmp_path / rel, H.tone(SEC, 200))
    refs = build_reader("mixtures", tmp_path).songs()
    assert [(r.out_rel, r.source_id, r.dropped) for r in refs] == [
        ("mixtures/track00000", "a/deep/y.wav", ()),
        ("mixtures/track00001", "a/x.flac", ("a/x.wav",)),
        ("mixtures/track00002", "b.wav", ()),
    ]


def test_other_tracks_skips_mix_and_nan(tmp_path):
    reader = build_reader("other_tracks", H.make_other_tracks(tmp_path / "other", SEC))
    good, bad = _load_all(reader)
    assert list(good) == ["other_tracks/track00000"]
    assert list(good["other_tracks/track00000"][1].stems) == ["guitar", "lead_vocals"]
    assert bad["other_tracks/track00001"].reason == "non-finite samples"


def test_report_counts_and_one_line_per_skip(capsys, warnings_on_stderr):
    report = CorpusReport("demo")
    report.add_song(1800.0)
    report.add_song(1800.0)
    report.skip("song_x", BrokenSong("single stem", "song_x has only ['vocals']"))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["skip demo/song_x: single stem: song_x has only ['vocals']"]
    assert report.summary() == "demo: 2 songs, 1.00 h, 1 skipped (single stem: 1)"
