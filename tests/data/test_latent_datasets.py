"""Latent datasets on synthetic pre-encoded folders whose values encode where they come from."""

import json

import numpy as np
import pytest
import torch

import _data_helpers as H
from mgeldm.config import compose_config
from mgeldm.data.latent_datasets import (
    MixSubmixSourceLatentDataset,
    MTGJamendoLatentDataset,
    build_latent_datasets,
    clap_column,
    salient_offset,
)
from mgeldm.data.prompts import TEMPLATES, join_labels
from mgeldm.data.seeded import WeightedConcatDataset
from mgeldm.errors import UserError

SEG = 16
C, D = 8, 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """slakh2100/train with 3 good tracks (markers 1-3) and 4 bad ones (markers 10-13)."""
    root = tmp_path_factory.mktemp("latents")
    np.save(root / "zero_latent.npy", np.zeros(C, np.float32))
    split = root / "slakh2100" / "train"
    H.write_latent_track(split / "track00000", marker=1, frames=200, labels=["Piano", "Bass", "Strings"])
    H.write_latent_track(split / "track00001", marker=2, frames=300, labels=["vocals", "drums", "bass", "other"])
    H.write_latent_track(split / "track00002", marker=3, frames=SEG, labels=["Electric_Guitar", "Organ"])  # T == S
    H.write_latent_track(split / "track00003", marker=10, frames=200, labels=["A", "B"], nan=True)
    H.write_latent_track(split / "track00004", marker=11, frames=SEG - 1, labels=["A", "B"])  # too short
    H.write_latent_track(split / "track00005", marker=12, frames=200, labels=["other", "Other_Keys"])  # no source
    H.write_latent_track(split / "track00006", marker=13, frames=200, labels=["A", "B"])
    (split / "track00006" / "comb0" / "src.npy").write_bytes(b"broken")  # one bad comb, the other is fine
    (split / ".track00007.partial").mkdir()  # an interrupted pre-encoding leaves this: never read
    return root


def _ds(root, **kw):
    args = dict(
        data_dir=root / "slakh2100",
        split="train",
        segment_length=SEG,
        num_examples=64,
        zero_latent_path=root / "zero_latent.npy",
        seed=0,
    )
    args.update(kw)
    return MixSubmixSourceLatentDataset(**args)


def test_items_shapes_dtypes_and_alignment(corpus, capsys, warnings_on_stderr):
    ds = _ds(corpus)
    err = capsys.readouterr().err
    assert [t.name for t in ds.tracks] == ["track00000", "track00001", "track00002", "track00006"]
    for name in ("track00003", "track00004", "track00005"):
        assert f"skip slakh2100/{name}" in err
    assert "skip slakh2100/track00006/comb0" in err
    assert len(ds) == 64
    for i in range(len(ds)):
        item = ds[i]
        for key in ("mix_latent", "src_latent", "submix_latent"):
            assert item[key].shape == (C, SEG) and item[key].dtype == np.float32
        for key in ("mix_clap", "src_clap", "submix_clap"):
            assert item[key].shape == (D,) and item[key].dtype == np.float32
        o = int(item["src_latent"][0, 0])
        assert np.array_equal(item["mix_latent"][0], np.arange(o, o + SEG))
        assert np.array_equal(item["submix_latent"][0], np.arange(o, o + SEG))
        k = int(item["src_latent"][2, 0])
        assert item["submix_latent"][2, 0] == 100 + k and item["mix_latent"][2, 0] == -1
        assert item["src_clap"][2] == k and item["submix_clap"][2] == 100 + k
        marker = item["mix_latent"][1, 0]
        assert item["src_latent"][1, 0] == marker == item["mix_clap"][1]
        assert marker in (1, 2, 3, 13)  # never a skipped track
        if marker == 13:
            assert k == 1  # its broken comb0 is never drawn


def test_clap_column_formula(corpus):
    ds = _ds(corpus, num_examples=200, ae_comp_ratio=2048, ae_sample_rate=16000)
    seen = set()
    for item in (ds[i] for i in range(len(ds))):
        o = int(item["src_latent"][0, 0])
        n_sec = {1: 200, 2: 300, 3: SEG, 13: 200}[int(item["mix_latent"][1, 0])] * 2048 // 16000 - 10
        j = min(int(o * 2048 / 16000), max(1, n_sec) - 1)
        assert item["mix_clap"][0] == item["src_clap"][0] == item["submix_clap"][0] == j
        seen.add(j)
    assert len(seen) > 3
    assert clap_column(125, 50, 2048, 16000) == 16 and clap_column(124, 50, 2048, 16000) == 15
    assert clap_column(1000, 20, 2048, 16000) == 19


def test_prompts_labels_and_other_rule(corpus):
    ds = _ds(corpus, num_examples=300)
    labels = {
        1: ["Piano", "Bass", "Strings"],
        2: ["vocals", "drums", "bass", "other"],
        3: ["Electric_Guitar", "Organ"],
        13: ["A", "B"],
    }
    srcs = set()
    for item in (ds[i] for i in range(len(ds))):
        names = labels[int(item["mix_latent"][1, 0])]
        src = names[int(item["src_latent"][2, 0])]
        srcs.add(src)
        others = [x for x in names if x != src]
        assert item["src_prompt"] in {t.format(labels=join_labels([src])) for t in TEMPLATES}
        assert item["submix_prompt"] in {t.format(labels=join_labels(others)) for t in TEMPLATES}
    assert "other" not in srcs and {"Piano", "vocals", "Electric_Guitar"} <= srcs
    # "other" still appears in submix prompts (Oxford comma with three labels)
    assert any("vocals, drums, and other" in ds[i]["submix_prompt"] for i in range(len(ds)))


def test_seeded_reproducibility_epochs_and_workers(corpus):
    ds = _ds(corpus, num_examples=24)
    a = [ds[i] for i in range(24)]
    again = _ds(corpus, num_examples=24)
    b = [again[i] for i in reversed(range(24))][::-1]  # access order does not matter
    for x, y in zip(a, b):
        assert all(np.array_equal(x[k], y[k]) for k in x if k.endswith(("latent", "clap")))
        assert x["src_prompt"] == y["src_prompt"] and x["submix_prompt"] == y["submix_prompt"]
    other_seed = _ds(corpus, num_examples=24, seed=1)
    assert any(not np.array_equal(a[i]["src_latent"], other_seed[i]["src_latent"]) for i in range(24))
    ds.set_epoch(1)
    assert any(not np.array_equal(a[i]["src_latent"], ds[i]["src_latent"]) for i in range(24))
    ds.set_epoch(0)
    loader0 = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=0)
    loader2 = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context="fork")
    for b0, b2 in zip(loader0, loader2):
        assert torch.equal(b0["src_latent"], b2["src_latent"]) and b0["src_prompt"] == b2["src_prompt"]
        assert isinstance(b0["src_prompt"], list) and b0["mix_latent"].shape == (8, C, SEG)


def test_mmap_gives_the_same_items(corpus):
    a, b = _ds(corpus, num_examples=16), _ds(corpus, num_examples=16, mmap=True)
    assert isinstance(b.tracks[0].mix, np.memmap)
    for i in range(16):
        assert np.array_equal(a[i]["submix_latent"], b[i]["submix_latent"])


def test_mix_only_mode(corpus):
    ds = _ds(corpus, num_examples=32, return_mix_only=True)
    # in mix-only mode combs are not needed: the no-source track is usable, the NaN/short ones are not
    assert sorted(int(t.mix[1, 0]) for t in ds.tracks) == [1, 2, 3, 12, 13]
    for item in (ds[i] for i in range(32)):
        assert item["src_prompt"] == "" and item["submix_prompt"] == ""
        assert not item["src_latent"].any() and not item["src_clap"].any()
        assert np.array_equal(item["submix_latent"], item["mix_latent"])
        assert np.array_equal(item["submix_clap"], item["mix_clap"])
        assert item["mix_latent"][2, 0] == -1


def test_salient_offset_avoids_silence():
    latent = np.zeros((C, 400), np.float32)
    latent[:, 300:] = 1.0  # only the end is "not silence"
    rng = np.random.default_rng(0)
    offsets = [salient_offset(latent, SEG, np.zeros(C, np.float32), 0.1, rng, num_tries=200) for _ in range(50)]
    assert all(o > 300 - SEG for o in offsets)
    never = [salient_offset(np.zeros((C, 400), np.float32), SEG, np.zeros(C), 0.1, np.random.default_rng(1), 15)]
    assert 0 <= never[0] < 400 - SEG
    with pytest.raises(ValueError):
        salient_offset(np.zeros((C, SEG - 1)), SEG, None, None, rng)


def test_mtg_dataset_splits_by_subfolder(tmp_path):
    np.save(tmp_path / "zero_latent.npy", np.zeros(C, np.float32))
    for k in range(3):
        H.write_latent_track(tmp_path / "mtg_jamendo" / f"{k:02d}" / f"{1000 + k}", marker=k, frames=64, labels=None)
    kw = dict(
        data_dir=tmp_path / "mtg_jamendo",
        segment_length=SEG,
        num_examples=30,
        zero_latent_path=tmp_path / "zero_latent.npy",
        num_valid_subdirs=1,
    )
    train = MTGJamendoLatentDataset(split="train", **kw)
    valid = MTGJamendoLatentDataset(split="valid", **kw)
    assert {int(train[i]["mix_latent"][1, 0]) for i in range(30)} == {0, 1}
    assert {int(valid[i]["mix_latent"][1, 0]) for i in range(30)} == {2}
    with pytest.raises(UserError, match="mixtures only"):
        MTGJamendoLatentDataset(split="train", return_mix_only=False, **kw)


def test_manifest_autoencoder_check(corpus, tmp_path, capsys, warnings_on_stderr):
    _ds(corpus, expected_ae_hash="abc")  # no manifest: warns, accepts
    assert "no manifest.json" in capsys.readouterr().err
    manifest = corpus / "slakh2100" / "manifest.json"
    manifest.write_text(json.dumps({"autoencoder": {"sha256": "abc" * 10}}))
    try:
        _ds(corpus, expected_ae_hash="abc" * 10)
        with pytest.raises(UserError, match="encoded with autoencoder abcabc.*re-run pre_encode.py"):
            _ds(corpus, expected_ae_hash="def" * 10)
    finally:
        manifest.unlink()


def test_build_from_the_original_config_names(corpus, capsys, warnings_on_stderr):
    (corpus / "mtg_jamendo").mkdir(exist_ok=True)
    for k in range(3):
        H.write_latent_track(corpus / "mtg_jamendo" / f"{k:02d}" / "1", marker=50 + k, frames=64, labels=None)
    cfg = compose_config("default_dit_mix_pretrain")["data"]  # configs/data/multi_latent_pretrain.yaml
    cfg["data_dir"] = str(corpus)
    cfg["train"]["mtg_jamendo"]["num_valid_subdirs"] = 1
    ds = build_latent_datasets(cfg, segment_length=SEG, mix_only=True, seed=3)
    err = capsys.readouterr().err
    assert "data.train.musdb18" in err and "left out" in err  # absent corpora are left out, loudly
    assert isinstance(ds, WeightedConcatDataset) and len(ds) == 32000 + 1280000
    assert ds.weights == pytest.approx([32000 / 1312000, 1280000 / 1312000])
    markers = [int(ds[i]["mix_latent"][1, 0]) for i in range(200)]
    assert 150 < sum(m >= 50 for m in markers) < 200  # p(MTG) = 0.976 here
    with pytest.raises(UserError, match="mixtures only"):
        build_latent_datasets(cfg, segment_length=SEG, mix_only=False)
    nomix = compose_config("default_dit")["data"]  # configs/data/multi_latent_pretrain_nomix.yaml
    assert {k: v["num_examples"] for k, v in nomix["train"].items()} == {
        "slakh2100": 64000,
        "musdb18": 64000,
        "moisesdb": 64000,
        "medleydb2": 64000,
        "other_tracks": 64000,
    }
    nomix["data_dir"] = None
    with pytest.raises(UserError, match="data.data_dir"):
        build_latent_datasets(nomix, segment_length=SEG)


def test_concat_round_robin_and_proportions(corpus):
    a = _ds(corpus, num_examples=100)
    b = _ds(corpus, num_examples=300, return_mix_only=True)
    rr = WeightedConcatDataset([a, b], shuffle=False)
    assert rr[0]["src_prompt"] != "" and rr[1]["src_prompt"] == "" and rr[2]["src_prompt"] != ""
    mixed = WeightedConcatDataset([a, b], shuffle=True, seed=5)
    from_b = sum(mixed[i]["src_prompt"] == "" for i in range(400))
    assert 260 < from_b < 340  # 300 expected
