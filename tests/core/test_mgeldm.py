"""The MGELDM wrapper: configs, the full-size layout, loading the original's checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mgeldm.checkpoints import write_state_dict
from mgeldm.errors import UserError
from mgeldm.models.mgeldm import build_mgeldm, load_mgeldm

REPO = Path(__file__).resolve().parents[2]


def fixture_model_config(readme: dict) -> dict:
    """The fixture's README blocks arranged as configs/model/dit.yaml arranges them."""
    pretransform = dict(readme["pretransform"], autoencoder=readme["autoencoder"])
    return {"sample_rate": readme["sample_rate"], "pretransform": pretransform, "MGELDM": readme["mgeldm"]}


def compose_dit(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return compose(config_name="dit", overrides=list(overrides))


@pytest.mark.reference
@pytest.mark.parametrize("name", ["tiny_mgeldm.ckpt", "tiny_mgeldm.safetensors"])
def test_fixture_checkpoint_reproduces_the_original(reference_fixtures, ref_close, name):
    cases = reference_fixtures.cases
    model = load_mgeldm(reference_fixtures.path(name), fixture_model_config(reference_fixtures.readme))
    with torch.no_grad():
        out = model.model_dit(cases["dit_x"], cases["dit_t3"], global_embed=cases["dit_cond"])
        ref_close(out, cases["dit_out_t3"], "dit_out_t3 through load_mgeldm")
        ref_close(model.pretransform.decode(cases["ae_latent"]), cases["ae_decoded"], "ae_decoded through load_mgeldm")
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


@pytest.mark.reference
def test_save_load_round_trip_is_bit_identical(reference_fixtures, tmp_path):
    cfg = fixture_model_config(reference_fixtures.readme)
    cases = reference_fixtures.cases
    model = load_mgeldm(reference_fixtures.path("tiny_mgeldm.ckpt"), cfg)
    for suffix in (".ckpt", ".safetensors"):
        again = load_mgeldm(write_state_dict(model.state_dict(), tmp_path / f"m{suffix}"), cfg)
        with torch.no_grad():
            a = model.model_dit(cases["dit_x"], cases["dit_t3"], global_embed=cases["dit_cond"])
            b = again.model_dit(cases["dit_x"], cases["dit_t3"], global_embed=cases["dit_cond"])
        assert torch.equal(a, b)


@pytest.mark.reference
def test_wrong_checkpoints_are_one_line(reference_fixtures):
    cfg = fixture_model_config(reference_fixtures.readme)
    with pytest.raises(UserError, match="autoencoder checkpoint") as info:
        load_mgeldm(reference_fixtures.path("tiny_ae.ckpt"), cfg)
    assert "\n" not in str(info.value)
    deeper = dict(cfg, MGELDM=dict(cfg["MGELDM"], depth=cfg["MGELDM"]["depth"] + 1))
    with pytest.raises(UserError, match="missing") as info:
        load_mgeldm(reference_fixtures.path("tiny_mgeldm.ckpt"), deeper)
    assert "\n" not in str(info.value)
    wider = dict(cfg, MGELDM=dict(cfg["MGELDM"], embed_dim=cfg["MGELDM"]["embed_dim"] * 2))
    with pytest.raises(UserError, match="wrong shape"):
        load_mgeldm(reference_fixtures.path("tiny_mgeldm.ckpt"), wider)


def _read_tsv(tsv: Path) -> dict[str, tuple[tuple[int, ...], str, str]]:
    rows = {}
    for line in tsv.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, shape, dtype, kind = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        rows[name] = (dims, dtype, kind)
    return rows


def test_full_size_model_matches_the_released_layout(reference_file):
    rows = _read_tsv(reference_file("full_mgeldm_state_dict.tsv"))
    cfg = OmegaConf.to_container(compose_dit().model, resolve=True)
    with torch.device("meta"):
        model = build_mgeldm(cfg)
    state = model.state_dict()
    assert list(rows) == list(state), "names or their order differ from full_mgeldm_state_dict.tsv"
    params = dict(model.named_parameters())
    for name, (shape, dtype, kind) in rows.items():
        assert tuple(state[name].shape) == shape, name
        assert str(state[name].dtype).removeprefix("torch.") == dtype, name
        assert (name in params) == (kind == "param"), name
    assert len(state) == 641
    assert (
        sum(p.numel() for p in model.parameters()) == 1_179_151_361
    )  # docs/compatibility.md#the-diffusion-transformer
    assert sum(t.numel() for t in state.values()) == 1_179_225_105


def test_config_overrides_reach_the_model():
    cfg = compose_dit("model.MGELDM.depth=2", "model.MGELDM.num_heads=8", "clap_ckpt_path=/x/clap.pt")
    assert cfg.model.conditioner.clap_text.config.clap_ckpt_path == "/x/clap.pt"
    with torch.device("meta"):
        model = build_mgeldm(OmegaConf.to_container(cfg.model, resolve=True))
    assert len(model.model_dit.transformer.layers) == 2
    legacy = compose_dit("model.conditioner.clap_text.config.clap_ckpt_path=/y/clap.pt")
    assert legacy.model.conditioner.clap_text.config.clap_ckpt_path == "/y/clap.pt"


def test_mismatched_latent_width_is_refused():
    cfg = OmegaConf.to_container(compose_dit("model.MGELDM.io_channels=32").model, resolve=True)
    with torch.device("meta"), pytest.raises(UserError, match="io_channels"):
        build_mgeldm(cfg)


# ----------------------------------------------------------------------------- per-track normalisation


def _norm_node(k: int, c: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"mean": torch.randn(k, c, generator=g).tolist(), "std": (torch.rand(k, c, generator=g) + 0.5).tolist()}


@pytest.mark.reference
def test_track_norm_maps_each_track_and_adds_no_state(reference_fixtures):
    cfg = fixture_model_config(reference_fixtures.readme)
    plain = build_mgeldm(cfg)
    k, c = plain.num_tracks, plain.io_channels
    node = _norm_node(k, c)
    normed = build_mgeldm({**cfg, "track_norm": node})
    assert normed.state_dict().keys() == plain.state_dict().keys()  # statistics never enter the state dict
    z = torch.randn(2, k * c, 5)
    mean, std = torch.tensor(node["mean"]), torch.tensor(node["std"])
    for track in range(k):
        one = z[:, track * c : (track + 1) * c]
        want = (one - mean[track, :, None]) / std[track, :, None]
        torch.testing.assert_close(normed.to_dit_space(one, track), want)
        torch.testing.assert_close(normed.from_dit_space(want, track), one)
    torch.testing.assert_close(normed.to_dit_space(z)[:, c : 2 * c], normed.to_dit_space(z[:, c : 2 * c], 1))
    assert torch.equal(plain.to_dit_space(z), z)  # no statistics: the original's identity
    scale = float(cfg["pretransform"].get("scale", 1.0))
    torch.testing.assert_close(normed.ae_to_dit(z * scale), normed.to_dit_space(z))
    torch.testing.assert_close(normed.dit_to_ae(normed.ae_to_dit(z)), z)


@pytest.mark.reference
@pytest.mark.parametrize(
    "node, match",
    [
        ("measure", "expected null, or mean/std"),
        ({"mean": [[0.0]], "std": [[1.0]]}, "shape"),
        ("zero-std", "must be > 0"),
        ("nan", "non-finite"),
    ],
)
def test_track_norm_config_is_checked(reference_fixtures, node, match):
    cfg = fixture_model_config(reference_fixtures.readme)
    k, c = cfg["MGELDM"]["num_tracks"], cfg["MGELDM"]["io_channels"]
    if node == "zero-std":
        node = {"mean": [[0.0] * c] * k, "std": [[0.0] * c] * k}
    elif node == "nan":
        node = {"mean": [[float("nan")] * c] * k, "std": [[1.0] * c] * k}
    with pytest.raises(UserError, match=match):
        build_mgeldm({**cfg, "track_norm": node})


@pytest.mark.reference
@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_unwrapped_file_carries_its_model_config(reference_fixtures, tmp_path, suffix):
    """The config (with the statistics) travels with the weights and is what from_pretrained builds."""
    from mgeldm.api import MGELDM
    from mgeldm.checkpoints import read_model_config, read_state_dict

    cfg = fixture_model_config(reference_fixtures.readme)
    cfg = {
        **cfg,
        "segment_length": 100,
        "track_norm": _norm_node(cfg["MGELDM"]["num_tracks"], cfg["MGELDM"]["io_channels"]),
    }
    model = load_mgeldm(reference_fixtures.path("tiny_mgeldm.ckpt"), fixture_model_config(reference_fixtures.readme))
    path = write_state_dict(model.state_dict(), tmp_path / f"m{suffix}", model_config=cfg)
    assert read_model_config(path) == cfg
    assert read_state_dict(path).keys() == model.state_dict().keys()
    if suffix == ".ckpt":  # the original's way of reading still works, weights-only
        assert set(torch.load(path, weights_only=True)["state_dict"]) == set(model.state_dict())
    loaded = MGELDM.from_pretrained(path, device="cpu")  # no model config given
    assert loaded.model.track_norm is not None
    torch.testing.assert_close(loaded.model.track_norm.mean, torch.tensor(cfg["track_norm"]["mean"]))
    plain = write_state_dict(model.state_dict(), tmp_path / f"plain{suffix}")
    assert read_model_config(plain) is None  # released files: the fallback applies
