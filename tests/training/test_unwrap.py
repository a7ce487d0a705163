"""unwrap_model: EMA export of our checkpoints and of the original's (OmegaConf model_config), type checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mgeldm.config import compose_config
from mgeldm.errors import UserError
from mgeldm.training.unwrap import load_training_checkpoint, unwrap_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _tiny_model_cfg() -> dict:
    return compose_config("default_dit_tiny")["model"]


def _our_dit_checkpoint(tmp_path: Path):
    from mgeldm.models.mgeldm import build_mgeldm
    from mgeldm.training.dit_module import DiTTrainingModule

    torch.manual_seed(0)
    m = DiTTrainingModule(build_mgeldm(_tiny_model_cfg()), {})
    for _ in range(3):  # make EMA and online weights differ
        with torch.no_grad():
            for p in m.diffusion.model_dit.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        m.diffusion_ema.update()
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": m.state_dict(), "loops": {}, "global_step": 3}, path)
    return m, path


def test_unwrap_our_dit_checkpoint_exports_ema_and_loads(tmp_path):
    from mgeldm.models.mgeldm import load_mgeldm

    m, path = _our_dit_checkpoint(tmp_path)
    out = unwrap_checkpoint(path, "mgeldm", tmp_path / "dit", model_cfg=_tiny_model_cfg())
    assert out.name == "dit.ckpt"
    loaded = load_mgeldm(out, _tiny_model_cfg())  # what infer.py uses
    ema = m.diffusion_ema.ema_model.state_dict()
    online = m.diffusion.model_dit.state_dict()
    got = loaded.model_dit.state_dict()
    assert all(torch.equal(got[k], ema[k]) for k in ema)
    assert any(not torch.equal(got[k], online[k]) for k in online if online[k].is_floating_point())
    ae = m.diffusion.pretransform.model.state_dict()
    assert all(torch.equal(loaded.pretransform.model.state_dict()[k], ae[k]) for k in ae)
    st = unwrap_checkpoint(path, "mgeldm", tmp_path / "dit", model_cfg=_tiny_model_cfg(), use_safetensors=True)
    assert st.suffix == ".safetensors"
    from mgeldm.checkpoints import read_state_dict

    a, b = read_state_dict(out), read_state_dict(st)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


_HYDRA_APP = """
import hydra, torch

@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    print("run", cfg.run_name)  # like the original's logging: resolves (and caches) ${now:...}
    state = torch.load(cfg.state_path, weights_only=True)
    torch.save({"state_dict": state, "model_config": cfg.model}, cfg.out_path)

main()
"""


def _hydra_main_checkpoint(tmp_path: Path, state: dict) -> Path:
    """A checkpoint saved the way the original's training saves one: ``model_config`` is ``cfg.model`` of a
    ``@hydra.main`` run whose config uses ``${now:...}``, so its pickle carries Hydra's resolver cache."""
    app = tmp_path / "app"
    (app / "conf").mkdir(parents=True)
    (app / "app.py").write_text(_HYDRA_APP)
    config = {
        "run_name": "mgeldm_${now:%Y-%m-%d_%H-%M-%S}",
        "model": _tiny_model_cfg(),
        "state_path": str(tmp_path / "state.pt"),
        "out_path": str(tmp_path / "orig_hydra.ckpt"),
        "hydra": {"run": {"dir": str(tmp_path / "outputs" / "${now:%Y-%m-%d}" / "${now:%H-%M-%S}")}},
    }
    (app / "conf" / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(state, tmp_path / "state.pt")
    out = subprocess.run(
        [sys.executable, "app.py"],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, HYDRA_FULL_ERROR="1"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return tmp_path / "orig_hydra.ckpt"


@pytest.mark.slow
def test_unwrap_checkpoint_of_a_hydra_main_run(tmp_path):
    import collections

    from omegaconf import DictConfig

    from mgeldm.checkpoints import read_state_dict

    m, _ = _our_dit_checkpoint(tmp_path)
    path = _hydra_main_checkpoint(tmp_path, m.state_dict())
    ckpt = load_training_checkpoint(path)
    cfg = ckpt["model_config"]
    assert isinstance(cfg, DictConfig) and cfg.MGELDM.embed_dim == _tiny_model_cfg()["MGELDM"]["embed_dim"]
    cache = cfg._get_root()._metadata.resolver_cache  # Hydra's cached ${now:...} values came through
    assert type(cache) is collections.defaultdict and cache.default_factory is dict and "now" in cache
    out = unwrap_checkpoint(path, "mgeldm", tmp_path / "dit", model_cfg=_tiny_model_cfg())
    got = read_state_dict(out)
    ema = m.diffusion_ema.ema_model.state_dict()
    assert all(torch.equal(got["model_dit." + k], v) for k, v in ema.items())
    online = m.diffusion.model_dit.state_dict()
    assert any(not torch.equal(got["model_dit." + k], v) for k, v in online.items() if v.is_floating_point())


def test_a_resolver_cache_never_builds_anything_but_a_dict(tmp_path):
    """The defaultdict stand-in of the allow-list accepts Hydra's ``defaultdict(dict)`` only."""
    import collections

    for factory in (int, os.getcwd):
        path = tmp_path / f"{factory.__name__}.ckpt"
        torch.save({"state_dict": {"diffusion.w": torch.ones(1)}, "x": collections.defaultdict(factory)}, path)
        with pytest.raises(UserError, match="not a readable training checkpoint"):
            load_training_checkpoint(path)


def test_wrong_type_is_refused_clearly(tmp_path):
    _, path = _our_dit_checkpoint(tmp_path)
    with pytest.raises(
        UserError, match=r"is a DiT \(mgeldm\) training checkpoint, not autoencoder; pass \+type=mgeldm"
    ):
        unwrap_checkpoint(path, "autoencoder", tmp_path / "ae")
    torch.save({"state_dict": {"encoder.layers.0.weight": torch.ones(1)}}, tmp_path / "unwrapped.ckpt")
    with pytest.raises(UserError, match="neither an AE nor a DiT training checkpoint"):
        unwrap_checkpoint(tmp_path / "unwrapped.ckpt", "autoencoder", tmp_path / "ae")


def _original_style(fixtures, kind: str):
    """A Lightning checkpoint laid out as the original code writes it, from the fixture's unwrapped weights."""
    from omegaconf import OmegaConf

    from mgeldm.checkpoints import read_state_dict

    cfg = OmegaConf.create(
        {
            "model_type": "autoencoder" if kind == "autoencoder" else "mgeldm",
            "model": dict(fixtures.readme["autoencoder"]),
            "sample_rate": 16000,
        }
    )
    if kind == "autoencoder":
        ema = read_state_dict(fixtures.path("tiny_ae.ckpt"))
        sd = {f"autoencoder.{k}": v + 1 for k, v in ema.items()}
        sd.update({f"autoencoder_ema.online_model.{k}": v + 1 for k, v in ema.items()})
        sd.update({f"autoencoder_ema.ema_model.{k}": v for k, v in ema.items()})
        sd.update(
            {
                "autoencoder_ema.initted": torch.tensor(True),
                "autoencoder_ema.step": torch.tensor(7),
                "discriminator.discriminators.0.convs.0.conv.weight": torch.zeros(2, 2, 3, 9),
                "losses_disc.0.fir.weight": torch.zeros(1, 1, 101),
            }
        )
        return {"state_dict": sd, "model_config": cfg}, ema
    full = read_state_dict(fixtures.path("tiny_mgeldm.ckpt"))
    sd = {
        f"diffusion.{k}": (v + 1 if k.startswith("model_dit.") and v.is_floating_point() else v)
        for k, v in full.items()
    }
    sd.update(
        {f"diffusion_ema.ema_model.{k[len('model_dit.') :]}": v for k, v in full.items() if k.startswith("model_dit.")}
    )
    sd.update({"diffusion_ema.initted": torch.tensor(True), "diffusion_ema.step": torch.tensor(7)})
    return {"state_dict": sd, "model_config": cfg, "epoch": 0, "global_step": 7}, full


@pytest.mark.reference
@pytest.mark.parametrize("kind", ["autoencoder", "mgeldm"])
def test_unwrap_original_checkpoint_with_omegaconf_config(reference_fixtures, tmp_path, kind):
    ckpt, expected = _original_style(reference_fixtures, kind)
    path = tmp_path / "orig.ckpt"
    torch.save(ckpt, path)
    out = unwrap_checkpoint(path, kind, tmp_path / "out")
    from mgeldm.checkpoints import read_state_dict

    got = read_state_dict(out)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    # the OmegaConf model_config came through weights_only loading
    assert load_training_checkpoint(path)["model_config"]["model_type"] in ("autoencoder", "mgeldm")


def test_arbitrary_pickles_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"autoencoder.x": torch.ones(1)}, "model_config": Evil()}, path)
    with pytest.raises(UserError, match="not a readable training checkpoint"):
        load_training_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_unwrap_cli_original_command_line(tmp_path):
    _, path = _our_dit_checkpoint(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [
            sys.executable,
            "unwrap_model.py",
            "--config-name",
            "default_dit_tiny",
            "+type=mgeldm",
            f"ckpt_path={path}",
            "+use_safetensors=false",
            f"+output_name={tmp_path / 'cli_dit'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "cli_dit.ckpt").is_file()
    # round trip: the unwrapped file runs in infer.py (source extraction on a short clip)
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "mix.wav", (0.1 * np.random.default_rng(0).standard_normal(8000)).astype("float32"), 16000)
    inf = subprocess.run(
        [
            sys.executable,
            "infer.py",
            "--config-name",
            "default_dit_tiny",
            f"ckpt_path={tmp_path / 'cli_dit.ckpt'}",
            "+task=source_extract",
            f"+given_wav_path={tmp_path / 'mix.wav'}",
            "+num_steps=2",
            "+overlap_dur=0.016",
            f"+output_dir={tmp_path / 'infer'}",
            "+device=cpu",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inf.returncode == 0, inf.stderr[-2000:]
    assert list((tmp_path / "infer").rglob("gen_src.wav"))
    bad = subprocess.run(
        [
            sys.executable,
            "unwrap_model.py",
            "--config-name",
            "default_ae",
            "+type=autoencoder",
            f"ckpt_path={path}",
            f"+output_name={tmp_path / 'x'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "pass +type=mgeldm" in bad.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_train_ae_cli_then_unwrap(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = subprocess.run(
        [
            sys.executable,
            "train_ae.py",
            "--config-name",
            "default_ae_tiny",
            f"save_dir={tmp_path}",
            "trainer.pl_trainer.max_steps=4",
            "logger=none",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    out = subprocess.run(
        [
            sys.executable,
            "unwrap_model.py",
            "--config-name",
            "default_ae_tiny",
            "+type=autoencoder",
            f"ckpt_path={ckpt}",
            "+use_safetensors=true",
            f"+output_name={tmp_path / 'ae'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    from mgeldm.checkpoints import read_state_dict

    state = read_state_dict(tmp_path / "ae.safetensors")
    ema = {
        k[len("autoencoder_ema.ema_model.") :]: v
        for k, v in load_training_checkpoint(ckpt)["state_dict"].items()
        if k.startswith("autoencoder_ema.ema_model.")
    }
    assert state.keys() == ema.keys() and all(torch.equal(state[k], ema[k]) for k in ema)


def test_unwrapped_weights_carry_the_training_model_config(tmp_path):
    """The training checkpoint's model config (e.g. measured statistics) is written beside the weights, and
    wins over the command line's model node, which may still say `measure`."""
    from mgeldm.checkpoints import read_model_config

    m, path = _our_dit_checkpoint(tmp_path)
    cfg = _tiny_model_cfg()
    k, c = cfg["MGELDM"]["num_tracks"], cfg["MGELDM"]["io_channels"]
    trained = {**cfg, "track_norm": {"mean": [[0.5] * c] * k, "std": [[2.0] * c] * k}}
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_config"] = trained
    torch.save(ckpt, path)
    for safetensors in (False, True):
        out = unwrap_checkpoint(
            path, "mgeldm", tmp_path / "dit", model_cfg={**cfg, "track_norm": "measure"}, use_safetensors=safetensors
        )
        assert read_model_config(out) == trained
