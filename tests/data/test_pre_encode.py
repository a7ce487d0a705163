"""pre_encode on tiny fake corpora with the tiny fixture AE and a cheap deterministic embedder (the real tiny
CLAP in one test): layout, shapes, comb_info, skips, resume after SIGKILL, shards, dry run, CLI."""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import _data_helpers as H
from mgeldm.audio import resample
from mgeldm.data.corpora.moisesdb import seeded_split
from mgeldm.data.corpora.registry import build_reader
from mgeldm.data.latent_datasets import MixSubmixSourceLatentDataset
from mgeldm.data.pre_encode.encoder import TrackEncoder, pad_clip
from mgeldm.data.pre_encode.hashing import state_dict_sha256
from mgeldm.data.pre_encode.records import RunInfo, autoencoder_info, embedder_info
from mgeldm.data.pre_encode.run import STOP_AFTER_TRACKS_ENV, pre_encode
from mgeldm.data.pre_encode.settings import EncodeSettings
from mgeldm.errors import UserError

REPO = H.Path(__file__).resolve().parents[2]
SEC = 0.3  # songs are short: the tiny AE costs ~0.1-0.3 s of CPU per second of audio per signal
COMB_FILES = {"src.npy", "src_clap.npy", "submix.npy", "submix_clap.npy", "comb_info.json"}


@pytest.fixture(scope="module")
def ae(reference_fixtures):
    return H.load_tiny_ae(reference_fixtures.root)


def _encoder(ae, embedder=None, **settings):
    settings = {"progress": False, "batch_size": 16, **settings}
    return TrackEncoder(ae, embedder or H.TinyEmbedder(), EncodeSettings.from_mapping(settings))


TINY_NODE = {"target": "_data_helpers:tiny_embedder", "config": {"dim": 8}}  # what the CLI runs get


def _info(ae, enc):
    return RunInfo(autoencoder_info(ae), embedder_info(TINY_NODE, enc.embedder))


def _run(readers, out, ae, *, reencode=False, **kw):
    enc = _encoder(ae, reencode=reencode)
    return pre_encode(readers, out, encoder=enc, info=_info(ae, enc), echo=lambda s: None, **kw)


@pytest.fixture(scope="module")
def all_corpora(tmp_path_factory, ae, warnings_on_stderr_module):
    """Every corpus once, pre-encoded; returns (source root, output root, stderr of the run)."""
    src, out = tmp_path_factory.mktemp("corpora"), tmp_path_factory.mktemp("latents")
    readers = [build_reader(key, make(src / key, SEC)) for key, make in H.MAKERS.items()]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        reports = _run(readers, out, ae)
    return src, out, err.getvalue(), reports


def _files(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_layout_shapes_and_comb_info(all_corpora, ae):
    src, out, err, _ = all_corpora
    frames = int(SEC * 16000) // 64
    expected_tracks = {
        "slakh2100/train/track00000": ["Piano", "Bass", "Strings"],
        "slakh2100/valid/track00000": ["Guitar", "Organ"],
        "musdb18/train/track00000": ["vocals", "drums", "bass", "other"],
        "musdb18/test/track00000": ["vocals", "drums", "bass", "other"],
        "medleydbv2/track00000": ["electric_bass", "male_singer"],
        "other_tracks/track00000": ["guitar", "lead_vocals"],
    }
    train, test = seeded_split(sorted(H.MOISES_IDS))
    for split, ids in (("train", train), ("test", test)):
        for i, tid in enumerate(ids):
            if tid != "2e3f":  # the broken one leaves a gap in the numbering
                expected_tracks[f"moisesdb/{split}/track{i:05d}"] = ["drums", "synths", "vocals"]
    assert len(expected_tracks) == 10
    for rel, labels in expected_tracks.items():
        folder = out / rel
        want = {"mix.npy", "mix_clap.npy"} | {f"comb{k}/{f}" for k in range(len(labels)) for f in COMB_FILES}
        assert _files(folder) == want, rel
        for name in ("mix.npy", "comb0/src.npy", "comb0/submix.npy"):
            z = np.load(folder / name)
            assert z.shape == (8, frames) and z.dtype == np.float32
        for name in ("mix_clap.npy", "comb0/src_clap.npy", "comb0/submix_clap.npy"):
            c = np.load(folder / name)
            assert c.shape == (8, 1) and c.dtype == np.float32  # a short song: one column of the padded clip
        for k, label in enumerate(labels):
            text = (folder / f"comb{k}" / "comb_info.json").read_text()
            assert json.loads(text) == {
                "src_label": label,
                "submix_label_list": [x for x in labels if x != label],
                "wav_sr_ori": H.SR,
                "sample_rate_ae": 16000,
                "sample_rate_clap": 48000,
            }
            assert text.startswith('{\n    "src_label"')  # json indent 4, as the original
    mtg = {p.relative_to(out / "mtg_jamendo").as_posix() for p in (out / "mtg_jamendo").rglob("mix.npy")}
    assert mtg == {"00/1000/mix.npy", "01/1001/mix.npy", "01/2000/mix.npy", "02/1002/mix.npy"}
    assert _files(out / "mtg_jamendo" / "00" / "1000") == {"mix.npy", "mix_clap.npy"}
    zero = np.load(out / "zero_latent.npy")
    with torch.no_grad():
        ref = ae.encode_audio(torch.zeros(1, 1, 16000 * 20), sample=False)[0, :, 100]  # the original's 20 s
    assert zero.shape == (8,) and np.allclose(zero, ref.numpy(), atol=1e-6)
    assert not any(p.name.endswith(".partial") or p.name == ".shards" for p in out.rglob("*"))


def _close(out, ref):
    """Batched and single encodes differ by float rounding: within 2e-5 of the latent range."""
    assert out.shape == ref.shape and np.abs(out - ref).max() <= 2e-5 * max(1.0, np.abs(ref).max())


def test_latents_are_vae_means_of_each_signal(all_corpora, ae):
    src, out, _, _ = all_corpora
    reader = build_reader("other_tracks", src / "other_tracks")
    track = reader.load(reader.refs()[0])
    g, v = track.stems["guitar"], track.stems["lead_vocals"]

    def enc(w):
        x = resample(w[None], H.SR, 16000)
        x = x[:, : x.shape[-1] // 64 * 64]
        with torch.no_grad():
            return ae.encode_audio(x[None], sample=False)[0].numpy()

    folder = out / "other_tracks" / "track00000"
    _close(np.load(folder / "mix.npy"), enc(g + v))
    _close(np.load(folder / "comb0/src.npy"), enc(g))
    _close(np.load(folder / "comb0/submix.npy"), enc(v))
    _close(np.load(folder / "comb1/src.npy"), enc(v))
    emb = H.TinyEmbedder()
    clip = pad_clip(resample((g + v)[None], H.SR, 48000)[0], 480000, "repeat")
    np.testing.assert_allclose(
        np.load(folder / "mix_clap.npy")[:, 0], emb.embed_audio(clip[None], 48000)[0].numpy(), atol=1e-6
    )


def test_one_broken_song_per_corpus_is_skipped_and_reported(all_corpora):
    _, out, err, reports = all_corpora
    expected = {
        "slakh2100": ("Track00002", "missing file"),
        "musdb18": ("B - Broken", "unreadable"),
        "moisesdb": ("2e3f", "single stem"),
        "medleydbv2": ("Broken_Song", "bad metadata"),
        "mtg_jamendo": ("01/empty.wav", "empty stem"),
        "other_tracks": ("song_b", "non-finite samples"),
    }
    skip_lines = [line for line in err.splitlines() if line.startswith("skip ")]
    assert len(skip_lines) == 6
    for report in reports:
        source, reason = expected[report.name]
        assert [(s, r) for s, r, _ in report.skipped] == [(source, reason)]
        assert f"1 skipped ({reason}: 1)" in report.summary()
        assert any(line.startswith(f"skip {report.name}/{source}: {reason}") for line in skip_lines)
        manifest = json.loads((out / report.name / "manifest.json").read_text())
        assert [(s["source"], s["reason"]) for s in manifest["skipped"]] == [(source, reason)]
        assert manifest["summary"]["tracks"] == report.songs
    slakh = json.loads((out / "slakh2100" / "manifest.json").read_text())
    assert slakh["tracks"][0] == {
        "folder": "train/track00000",
        "source": "Track00001",
        "frames": int(SEC * 16000) // 64,
        "clap_frames": 1,
        "labels": ["Piano", "Bass", "Strings"],
    }
    assert slakh["skipped"][0]["folder"] == "train/track00001"  # numbering keeps the gap of the skipped song
    assert "time" not in json.dumps(slakh).lower()


def test_datasets_read_the_output_and_check_the_ae(all_corpora, ae):
    _, out, _, _ = all_corpora
    h = state_dict_sha256(ae)
    assert json.loads((out / "musdb18" / "manifest.json").read_text())["autoencoder"]["sha256"] == h
    kw = dict(
        data_dir=out / "musdb18",
        split="train",
        segment_length=16,
        num_examples=8,
        zero_latent_path=out / "zero_latent.npy",
    )
    ds = MixSubmixSourceLatentDataset(expected_ae_hash=h, **kw)
    item = ds[0]
    assert item["mix_latent"].shape == (8, 16) and item["mix_clap"].shape == (8,)
    assert "other" not in item["src_prompt"].lower()
    with pytest.raises(UserError, match="encoded with autoencoder"):
        MixSubmixSourceLatentDataset(expected_ae_hash="0" * 64, **kw)


def test_clap_windows_per_second():
    class _Stub:
        sample_rate, downsampling_ratio = 16000, 64

        def to(self, device):
            return self

        def eval(self):
            return self

    enc = TrackEncoder(_Stub(), H.TinyEmbedder(), EncodeSettings.from_mapping({"progress": False}))
    w = torch.arange(int(12.7 * 48000), dtype=torch.float32)
    wins = enc.windows(w)
    assert len(wins) == 2 and [int(x[0]) for x in wins] == [0, 48000] and all(x.numel() == 480000 for x in wins)
    assert len(enc.windows(torch.ones(int(10.5 * 48000)))) == 1  # the original found no window here and crashed
    short = enc.windows(torch.ones(3 * 48000))[0]
    assert short.numel() == 480000 and short[: 9 * 48000].eq(1).all() and short[9 * 48000 :].eq(0).all()
    assert pad_clip(torch.ones(4), 10, "zero").tolist() == [1] * 4 + [0] * 6


def test_chunked_encode_matches_one_pass(ae, monkeypatch):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(H.tone(3.0, 220, sr=16000)[:, 0] + 0.05 * rng.standard_normal(48000).astype(np.float32))[None]
    one = _encoder(ae, chunked=False).latents(x, 16000)
    calls = []
    encode = ae.encode_audio
    monkeypatch.setattr(ae, "encode_audio", lambda a, **kw: calls.append(a.shape[-1]) or encode(a, **kw))
    chunked = _encoder(ae, chunked=True, chunk_size=256, chunk_overlap=64).latents(x, 16000)
    assert one.shape == chunked.shape == (1, 8, 750)
    assert calls == [256 * 64] * 4  # windows at frames 0, 192, 384 and the right-aligned 494
    # Stated tolerance (overlap >= 64 frames): max error <= 2 % of max|z|, mean <= 0.1 %; only the seams differ.
    err = np.abs(one - chunked).max(axis=1)[0] / np.abs(one).max()
    assert err.max() < 0.02 and err.mean() < 1e-3, (err.max(), err.mean())
    assert err[: 192 - 64].max() < 1e-5 and err[-100:].max() < 1e-5  # away from the seams: the one-pass values


def test_dry_run_writes_nothing(tmp_path):
    src = H.make_other_tracks(tmp_path / "src", SEC)
    lines = []
    pre_encode(
        [build_reader("other_tracks", src)], tmp_path / "out", encoder=None, info=None, dry_run=True, echo=lines.append
    )
    assert not (tmp_path / "out").exists()
    assert lines[0].startswith("other_tracks: 2 songs") and "would encode song_a -> other_tracks/track00000" in lines[1]


def _many_songs(root, n=6):
    for i in range(n):
        H.write(root / f"song_{i}" / "bass.wav", H.tone(SEC, 100 + 10 * i, seed=i))
        H.write(root / f"song_{i}" / "keys.wav", H.tone(SEC, 600 + 10 * i, seed=50 + i))
    return root


def test_two_shards_equal_one_run(tmp_path, ae):
    src = _many_songs(tmp_path / "src")
    reader = build_reader("other_tracks", src)
    _run([reader], tmp_path / "full", ae)
    _run([reader], tmp_path / "sharded", ae, num_shards=2, shard_id=1)
    assert not (tmp_path / "sharded" / "other_tracks" / "manifest.json").exists()  # waits for shard 0
    _run([reader], tmp_path / "sharded", ae, num_shards=2, shard_id=0)
    assert H.tree(tmp_path / "full") == H.tree(tmp_path / "sharded")
    with pytest.raises(UserError, match="shard_id"):
        _run([reader], tmp_path / "x", ae, num_shards=2, shard_id=2)


def _conf_dir(tmp_path, reference_fixtures):
    conf = tmp_path / "conf"
    (conf / "model" / "conditioner").mkdir(parents=True)
    readme = reference_fixtures.readme
    (conf / "model" / "tiny_ae.yaml").write_text(
        yaml.safe_dump({**readme["autoencoder"], "sample_rate": readme["sample_rate"]})
    )
    (conf / "model" / "conditioner" / "tiny_test.yaml").write_text(yaml.safe_dump(TINY_NODE))
    return conf


def _cli(conf, src, out, reference_fixtures, *extra):
    return [
        sys.executable,
        str(REPO / "pre_encode.py"),
        "--config-name",
        "default_ae",
        "--config-dir",
        str(conf),
        "model=tiny_ae",
        "model/conditioner@embedder=tiny_test",
        f"ckpt_path={reference_fixtures.path('tiny_ae.ckpt')}",
        f"+save_root_dir={out}",
        "+extract_dataset=[other_tracks]",
        f"+data_dirs.other_tracks={src}",
        "pre_encode.progress=false",
        "pre_encode.batch_size=16",
        *extra,
    ]


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(H.Path(__file__).parent), str(REPO)]), **extra}
    return env if STOP_AFTER_TRACKS_ENV in extra else {k: v for k, v in env.items() if k != STOP_AFTER_TRACKS_ENV}


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, ae, reference_fixtures):
    src = _many_songs(tmp_path / "src", n=8)
    _run([build_reader("other_tracks", src)], tmp_path / "clean", ae)
    conf, out = _conf_dir(tmp_path, reference_fixtures), tmp_path / "killed"
    # The test hook kills the run (SIGKILL, as `kill -9`) right after its 3rd track folder: a known point.
    killed = subprocess.run(
        _cli(conf, src, out, reference_fixtures),
        env=_env(**{STOP_AFTER_TRACKS_ENV: "3"}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    split = out / "other_tracks"
    assert sorted(p.name for p in split.iterdir()) == ["track00000", "track00001", "track00002"]
    # A kill in the middle of a write leaves the next track's temporary folder behind (as this version names
    # it, with the dead writer's pid, and as earlier versions named it).
    from mgeldm.files import host_name

    gone = subprocess.Popen(["true"])
    gone.wait()  # a writer process that no longer exists
    for name in (f".track00003.{host_name()}.{gone.pid}.0123abcd.tmp", ".track00003.partial"):
        (split / name / "comb0").mkdir(parents=True)
        (split / name / "mix.npy").write_bytes(b"half a file")
    rerun = subprocess.run(
        _cli(conf, src, out, reference_fixtures), env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "already complete 3" in rerun.stderr
    assert H.tree(tmp_path / "clean") == H.tree(out)  # same files, identical bytes (manifest included)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / ".hydra").exists()


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path, reference_fixtures):
    conf = _conf_dir(tmp_path, reference_fixtures)
    bad = _cli(conf, tmp_path, tmp_path / "out", reference_fixtures)
    bad[bad.index("+extract_dataset=[other_tracks]")] = "+extract_dataset=[nope]"
    res = subprocess.run(bad + ["+dry_run=true"], env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert (
        res.stderr.strip().splitlines()[-1].startswith("pre_encode.py: error: extract_dataset: unknown corpus 'nope'")
    )


@pytest.mark.clap
@pytest.mark.slow
def test_real_tiny_clap_embeds_the_padded_clip(tmp_path, ae, clap_fixtures):
    from mgeldm.models.conditioners import build_conditioner

    clap = build_conditioner({"type": "laion_clap", "config": clap_fixtures.clap_config()})
    src = tmp_path / "src"
    H.write(src / "song" / "a.wav", H.tone(SEC, 300, seed=1))
    H.write(src / "song" / "b.wav", H.tone(SEC, 900, seed=2))
    enc = _encoder(ae, clap)
    pre_encode(
        [build_reader("other_tracks", src)], tmp_path / "out", encoder=enc, info=_info(ae, enc), echo=lambda s: None
    )
    folder = tmp_path / "out" / "other_tracks" / "track00000"
    mix_clap = np.load(folder / "mix_clap.npy")
    assert mix_clap.shape == (clap_fixtures.readme["joint_embed_shape"], 1)
    track = build_reader("other_tracks", src).load(build_reader("other_tracks", src).refs()[0])
    mix = resample((track.stems["a"] + track.stems["b"])[None], H.SR, 48000)
    ref = clap.embed_audio(pad_clip(mix[0], 480000)[None], 48000)[0].numpy()
    np.testing.assert_allclose(mix_clap[:, 0], ref, atol=1e-5)
    assert abs(np.linalg.norm(mix_clap[:, 0]) - 1) < 1e-4
    assert json.loads((folder / "comb0" / "comb_info.json").read_text())["sample_rate_clap"] == 48000


class _TextOnlyEmbedder:
    """A text-only conditioner (like the quickstart's MiniLM): no sample_rate, a distinct vector per text."""

    dim = 6
    sample_rate = None

    def __init__(self):
        self.texts = []

    def to(self, device=None, dtype=None):
        return self

    def embed_text(self, texts):
        self.texts += list(texts)
        g = [torch.Generator().manual_seed(sum(map(ord, t)) * 7 + len(t)) for t in texts]
        v = torch.stack([torch.randn(self.dim, generator=x) for x in g])
        return v / v.norm(dim=-1, keepdim=True)

    def embed_audio(self, audio, sample_rate, *, generator=None):
        raise AssertionError("labels mode must not embed audio")


@pytest.mark.slow
def test_clap_from_labels_embeds_the_labels_of_each_signal(tmp_path, ae):
    seconds = 12.5  # two columns: floor(12.5 - 10)
    reader = build_reader("slakh2100", H.make_slakh(tmp_path / "slakh", seconds))
    emb = _TextOnlyEmbedder()
    enc = _encoder(ae, emb, clap_from="labels", label_template="The sound of {labels}.")
    info = RunInfo(autoencoder_info(ae), embedder_info({"type": "text_only"}, emb))
    pre_encode([reader], tmp_path / "out", encoder=enc, info=info, echo=lambda s: None)
    folder = tmp_path / "out" / "slakh2100" / "train" / "track00000"
    labels = ["Piano", "Bass", "Strings"]
    ref = lambda text: emb.embed_text([text])[0].numpy()  # noqa: E731
    mix = np.load(folder / "mix_clap.npy")
    assert mix.shape == (6, 2) and np.allclose(mix, ref("The sound of piano, bass, and strings.")[:, None], atol=1e-6)
    for k, label in enumerate(labels):
        others = [x for x in labels if x != label]
        src, sub = np.load(folder / f"comb{k}" / "src_clap.npy"), np.load(folder / f"comb{k}" / "submix_clap.npy")
        assert src.shape == sub.shape == (6, 2)
        assert np.allclose(src, ref(f"The sound of {label.lower()}.")[:, None], atol=1e-6)
        assert np.allclose(sub, ref(f"The sound of {others[0].lower()} and {others[1].lower()}.")[:, None], atol=1e-6)
        assert not np.allclose(src, sub)
    assert json.loads((folder / "comb0" / "comb_info.json").read_text())["sample_rate_clap"] is None
    assert json.loads((tmp_path / "out" / "slakh2100" / "manifest.json").read_text())["embedder"]["sample_rate"] is None


def test_clap_from_is_checked(ae):
    with pytest.raises(UserError, match="clap_from"):
        EncodeSettings.from_mapping({"clap_from": "text"})
    with pytest.raises(UserError, match="text-only"):
        TrackEncoder(ae, _TextOnlyEmbedder(), EncodeSettings.from_mapping({"clap_from": "audio"}))


# --------------------------------------------------------------------------------------------- checked at start


@pytest.mark.parametrize(
    "setting, value, words",
    [
        ("clap_hop_seconds", 2.0, "one embedding column per second"),
        ("short_clip_pad", "mirror", "'repeat', 'zero'"),
        ("chunked", "maybe", "true, false or auto"),
        ("progress", "yes", "true or false"),
        ("reencode", 1, "true or false"),
        ("batch_size", 0, ">= 1"),
        ("chunk_overlap", 2048, "chunk_size=1024"),
    ],
)
def test_settings_are_refused_at_start(setting, value, words):
    with pytest.raises(UserError, match=f"^pre_encode.{setting}: ") as info:
        EncodeSettings.from_mapping({setting: value})
    assert words in str(info.value)


@pytest.mark.slow
def test_cli_refuses_a_bad_setting_before_writing(tmp_path, reference_fixtures):
    conf, out = _conf_dir(tmp_path, reference_fixtures), tmp_path / "out"
    src = _many_songs(tmp_path / "src", n=1)
    res = subprocess.run(
        _cli(conf, src, out, reference_fixtures, "pre_encode.chunked=maybe"),
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "pre_encode.py: error: pre_encode.chunked: 'maybe'; expected true, false or auto"
    ]
    assert not out.exists()


def test_empty_or_wrong_layout_roots_write_nothing(tmp_path, ae):
    from mgeldm.data.corpora.registry import READERS

    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    good = build_reader("other_tracks", _many_songs(tmp_path / "src", n=1))
    for key in READERS:
        with pytest.raises(UserError, match=f"^data_dirs.{key}: {empty} holds no song in the {key} layout"):
            _run([good, build_reader(key, empty)], out, ae)
    musdb = H.make_musdb(tmp_path / "musdb", SEC)  # train/ and test/ of song folders, but no Slakh metadata
    with pytest.raises(UserError, match="holds no song in the slakh2100 layout"):
        _run([good, build_reader("slakh2100", musdb)], out, ae)
    assert not out.exists()


def test_manifest_does_not_depend_on_where_the_corpus_lies(tmp_path, ae):
    here = H.make_medleydb(tmp_path / "a" / "medley", SEC)
    (here / "Broken_Song" / "Broken_Song_METADATA.yaml").unlink()  # the reading error names the missing file
    there = shutil.copytree(here, tmp_path / "elsewhere" / "deeper" / "medley")
    _run([build_reader("medleydbV2", here)], tmp_path / "out_a", ae)
    _run([build_reader("medleydbV2", there)], tmp_path / "out_b", ae)
    manifest = json.loads((tmp_path / "out_a" / "medleydbv2" / "manifest.json").read_text())
    assert [s["reason"] for s in manifest["skipped"]] == ["bad metadata"]
    assert "Broken_Song/Broken_Song_METADATA.yaml" in manifest["skipped"][0]["detail"]
    assert H.tree(tmp_path / "out_a") == H.tree(tmp_path / "out_b")


# --------------------------------------------------------------------------------------------- one encoder per root


def _another_ae(ae):
    other = copy.deepcopy(ae)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    return other


def test_another_autoencoder_is_refused_and_reencode_starts_over(tmp_path, ae):
    reader = build_reader("other_tracks", _many_songs(tmp_path / "src", n=3))
    other, out, fresh = _another_ae(ae), tmp_path / "out", tmp_path / "fresh"
    _run([reader], out, ae)
    before = H.tree(out)
    with pytest.raises(UserError, match=r"encoding.json: .* autoencoder .* pre_encode.reencode=true"):
        _run([reader], out, other)
    assert H.tree(out) == before
    legacy = shutil.copytree(out, tmp_path / "legacy")
    (legacy / "encoding.json").unlink()  # a root written before encoding.json existed: its manifests tell
    with pytest.raises(UserError, match=r"manifest.json: .* autoencoder"):
        _run([reader], legacy, other)
    (out / "other_tracks" / "manifest.json").unlink()  # as after a run killed before its manifest
    with pytest.raises(UserError, match=r"encoding.json: .* autoencoder"):
        _run([reader], out, other)
    _run([reader], out, other, reencode=True)
    _run([reader], fresh, other)
    assert H.tree(out) == H.tree(fresh)  # every track, zero_latent.npy and the records: the new AE's


def test_reencode_with_the_same_autoencoder_encodes_every_track_again(tmp_path, ae):
    reader = build_reader("other_tracks", _many_songs(tmp_path / "src", n=2))
    out = tmp_path / "out"
    _run([reader], out, ae)
    clean = H.tree(out)
    np.save(out / "other_tracks" / "track00001" / "mix.npy", np.zeros((8, 3), np.float32))
    _run([reader], out, ae)
    assert H.tree(out) != clean  # a plain rerun keeps finished tracks
    _run([reader], out, ae, reencode=True)
    assert H.tree(out) == clean


def test_reencode_refuses_a_root_with_other_corpora_of_the_old_autoencoder(tmp_path, ae):
    tracks = build_reader("other_tracks", _many_songs(tmp_path / "src", n=1))
    H.write(tmp_path / "mixes" / "a.wav", H.tone(SEC, 300))
    mixes = build_reader("mixtures", tmp_path / "mixes")
    out = tmp_path / "out"
    _run([tracks, mixes], out, ae)
    before = H.tree(out)
    with pytest.raises(UserError, match=r"reencode: .* also holds \['mixtures'\]"):
        _run([tracks], out, _another_ae(ae), reencode=True)
    assert H.tree(out) == before


# --------------------------------------------------------------------------------------------- mixtures


def test_mtg_low_quality_copies_are_the_same_song(tmp_path, ae):
    src = tmp_path / "mtg"
    H.write(src / "00" / "1201.low.wav", H.tone(SEC, 200, seed=1))  # only the low-quality copy
    H.write(src / "01" / "1300.low.wav", H.tone(SEC, 300, seed=2))
    H.write(src / "01" / "1300.wav", H.tone(SEC, 310, seed=3))  # the full-quality file is read
    H.write(src / "02" / "1400.wav", H.tone(SEC, 400, seed=4))
    _run([build_reader("mtgjamendo", src)], tmp_path / "out", ae)
    manifest = json.loads((tmp_path / "out" / "mtg_jamendo" / "manifest.json").read_text())
    assert [(t["folder"], t["source"]) for t in manifest["tracks"]] == [
        ("00/1201", "00/1201.low.wav"),
        ("01/1300", "01/1300.wav"),
        ("02/1400", "02/1400.wav"),
    ]
    assert [(s["folder"], s["source"], s["reason"]) for s in manifest["skipped"]] == [
        ("01/1300", "01/1300.low.wav", "duplicate")
    ]
    assert manifest["summary"] == {"tracks": 3, "hours": manifest["summary"]["hours"], "skipped": 1}


def test_mixtures_in_sub_folders_reach_training(tmp_path, ae):
    src, out = tmp_path / "mixes", tmp_path / "out"
    H.write(src / "top.wav", H.tone(SEC, 200, seed=1))
    H.write(src / "album" / "song.wav", H.tone(SEC, 300, seed=2))
    H.write(src / "album" / "disc 2" / "song.flac", H.tone(SEC, 400, seed=3))
    _run([build_reader("mixtures", src)], out, ae)
    ds = MixSubmixSourceLatentDataset(
        data_dir=out / "mixtures",
        split=None,
        segment_length=16,
        num_examples=4,
        return_mix_only=True,
        zero_latent_path=out / "zero_latent.npy",
        expected_ae_hash=state_dict_sha256(ae),
    )
    assert len(ds.tracks) == 3 and ds[0]["mix_latent"].shape == (8, 16)
    manifest = json.loads((out / "mixtures" / "manifest.json").read_text())
    assert [(t["folder"], t["source"]) for t in manifest["tracks"]] == [
        ("track00000", "album/disc 2/song.flac"),
        ("track00001", "album/song.wav"),
        ("track00002", "top.wav"),
    ]


# --------------------------------------------------------------------------------------------- the recipe


def test_script_passes_extra_overrides_through(tmp_path):
    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\n\' "$a"; done > "$ARGS_OUT"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
        "ARGS_OUT": str(tmp_path / "args"),
        "OTHER_DIR": str(tmp_path / "my songs"),
    }
    extra = ["pre_encode.reencode=true", "+device=cuda:1", "pre_encode.label_template=it's {labels}"]
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / "pre_encode_script.sh"), "other_tracks", "1", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[0] == "pre_encode.py" and args[-len(extra) :] == extra
    assert f"+data_dirs.other_tracks={tmp_path / 'my songs'}" in args
