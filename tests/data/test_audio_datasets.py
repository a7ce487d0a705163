"""AE waveform dataset (docs/compatibility.md#training-data) on tiny fake corpora."""

import math

import numpy as np
import pytest
import torch

import _data_helpers as H
from mgeldm.config import compose_config
from mgeldm.data.audio_datasets import AudioExcerptDataset, build_audio_datasets, loudness, salient_excerpt
from mgeldm.errors import UserError

SR_AE, SEGMENT = (
    16000,
    32768,
)  # docs/compatibility.md#training-data: 2.048 s at 16 kHz, read as ceil(2.048) = 3 s excerpts


@pytest.fixture(scope="module")
def slakh(tmp_path_factory):
    root = H.make_slakh(tmp_path_factory.mktemp("slakh"), seconds=4.0)
    # a DC mixture: easy to tell from the tonal stems
    for track in ("Track00001", "Track00002"):
        H.write(root / "train" / track / "mix.wav", np.full((4 * H.SR, 1), 0.25, np.float32))
    return root


def _ds(root, **kw):
    args = dict(
        name="slakh2100",
        data_dir=root,
        sample_rate=SR_AE,
        segment_length=SEGMENT,
        num_examples=20,
        loudness_cutoff=-40.0,
        mixture_prob=0.7,
        seed=0,
    )
    args.update(kw)
    return AudioExcerptDataset(**args)


def test_items_shape_dtype_and_seeded(slakh):
    ds = _ds(slakh)
    assert [s.name for s in ds.songs] == ["Track00001"]  # Track00002 lists a stem file that does not exist
    items = [ds[i]["mix_wav"] for i in range(6)]
    assert all(x.shape == (1, SEGMENT) and x.dtype == torch.float32 for x in items)
    again = _ds(slakh)
    assert all(torch.equal(a, again[i]["mix_wav"]) for i, a in enumerate(items))
    assert not all(torch.equal(items[0], x) for x in items[1:])
    ds.set_epoch(3)
    assert any(not torch.equal(a, ds[i]["mix_wav"]) for i, a in enumerate(items))


def test_mixture_probability_picks_the_mix_file_or_stems(slakh):
    mix_only = _ds(slakh, mixture_prob=1.0)
    x = mix_only[0]["mix_wav"][0]
    assert torch.allclose(x[1000:20000], torch.full((19000,), 0.25), atol=1e-3)  # the DC mixture file
    stems_only = _ds(slakh, mixture_prob=0.0)
    for i in range(5):
        y = stems_only[i]["mix_wav"][0]
        assert y.abs().max() > 0.05 and (y[1000:20000] - 0.25).abs().max() > 0.05  # tones: sub-mixes of stems


def test_salient_excerpt_finds_the_loud_part(tmp_path):
    quiet_then_loud = np.zeros((20 * H.SR, 1), np.float32)
    quiet_then_loud[17 * H.SR :] = H.tone(3.0, 440)
    path = H.write(tmp_path / "stem.wav", quiet_then_loud)
    rng = np.random.default_rng(0)
    for _ in range(5):
        wave, sr, offset = salient_excerpt(path, 3.0, -40.0, rng, num_tries=100)
        assert sr == H.SR and wave.shape == (3 * H.SR,)
        assert offset > 14.0 and loudness(wave, sr) > -40.0


def test_loudness_is_bs1770():
    t = np.arange(48000 * 3) / 48000
    assert loudness(np.sin(2 * np.pi * 1000 * t), 48000) == pytest.approx(-3.01, abs=0.1)
    assert loudness(0.1 * np.sin(2 * np.pi * 1000 * t), 48000) == pytest.approx(-23.01, abs=0.1)
    assert loudness(np.zeros(48000 * 3), 48000) == -math.inf
    assert loudness(np.ones(100), 48000) == -math.inf  # shorter than one 400 ms block


def test_corpora_without_mix_file_and_splits(tmp_path):
    moises = H.make_moisesdb(tmp_path / "moises", 3.0)
    ds = AudioExcerptDataset(
        name="moisesdb",
        data_dir=moises,
        sample_rate=SR_AE,
        segment_length=SEGMENT,
        split="test",
        num_examples=4,
        mixture_prob=1.0,
    )
    assert len(ds.songs) == 1 and ds.songs[0].mix is None and len(ds.songs[0].stems) == 4
    assert ds[0]["mix_wav"].shape == (1, SEGMENT)
    mtg = H.make_mtg(tmp_path / "mtg", 3.0)
    valid = AudioExcerptDataset(
        name="mtg_jamendo",
        data_dir=mtg,
        sample_rate=SR_AE,
        segment_length=SEGMENT,
        split="valid",
        num_examples=4,
        num_valid_subdirs=1,
    )
    assert [s.name for s in valid.songs] == ["02/1002.wav"]
    with pytest.raises(UserError, match="train only"):
        AudioExcerptDataset(name="others", data_dir=mtg, sample_rate=SR_AE, segment_length=SEGMENT, split="valid")


def test_build_from_single_yaml(slakh):
    cfg = compose_config("default_ae")["data"]  # configs/data/single.yaml, composed
    assert {k: v["num_examples"] for k, v in cfg["train"].items()} == {
        "slakh2100": 32000,
        "musdb18": 32000,
        "moisesdb": 32000,
        "medleydb2": 32000,
        "mtg_jamendo": 256000,
        "others": 128000,
    }
    cfg["train"]["slakh2100"]["data_dir"] = str(slakh)
    ds = build_audio_datasets(cfg["train"], sample_rate=SR_AE, segment_length=SEGMENT)
    assert len(ds) == 32000 and ds[5]["mix_wav"].shape == (1, SEGMENT)
    with pytest.raises(UserError, match="data_dir null"):
        build_audio_datasets(cfg["valid"], sample_rate=SR_AE, segment_length=SEGMENT, split="valid")
