"""Atomic checkpoint IO, demo rendering with the EMA weights, mixed precision smoke runs."""

from __future__ import annotations

import os
import stat

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from mgeldm.config import compose_config
from mgeldm.training.callbacks import AEDemoCallback, AtomicCheckpointIO, DiTDemoCallback

DIT_TINY = compose_config("default_dit_tiny")
AE_TINY = compose_config("default_ae_tiny")


def test_atomic_checkpoint_io_keeps_old_file_on_failure(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        io.save_checkpoint({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp left behind


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoints_get_the_mode_of_any_new_file(tmp_path, mask, expected):
    """Not mkstemp's private 0600: others on a shared machine read checkpoints as the umask allows."""
    old = os.umask(mask)
    try:
        AtomicCheckpointIO().save_checkpoint({"a": torch.ones(2)}, tmp_path / "checkpoints" / "last.ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "checkpoints" / "last.ckpt").stat().st_mode) == expected


def _dit_module():
    from mgeldm.models.mgeldm import build_mgeldm
    from mgeldm.training.dit_module import DiTTrainingModule

    torch.manual_seed(0)
    return DiTTrainingModule(build_mgeldm(DIT_TINY["model"]), {"seed": 0})


def test_dit_demo_renders_with_ema_weights(tmp_path, monkeypatch):
    from mgeldm.training.fake_data import FakeLatentDataset

    m = _dit_module()
    m.diffusion_ema.update()
    with torch.no_grad():  # online weights now differ from the EMA copy
        for p in m.diffusion.model_dit.parameters():
            p.add_(1.0)
    used = []
    orig = type(m.diffusion_ema.ema_model).forward

    def spy(self, *a, **k):
        used.append(self is m.diffusion_ema.ema_model)
        return orig(self, *a, **k)

    monkeypatch.setattr(type(m.diffusion_ema.ema_model), "forward", spy)
    ds = FakeLatentDataset(2, channels=8, frames=16, clap_dim=16)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    cb = DiTDemoCallback(tmp_path, 1, num_demos=1, steps=2, demo_batch=batch)
    files = cb.render(m, 5)
    assert used and all(used)
    wavs = sorted(p.name for p in files)
    assert wavs == ["00_mix.wav", "00_mix.wav", "00_src.wav", "00_src.wav", "00_submix.wav", "00_submix.wav"]
    assert (tmp_path / "00000005" / "total_gen" / "cfg_3" / "00_src.png").is_file()
    assert (tmp_path / "00000005" / "extraction" / "cfg_3" / "00_mix.wav").is_file()


def test_dit_demo_samples_with_the_windowed_sampler_of_inference():
    """The demo has no sampling code of its own: its latents are what inference's sampling gives the same
    (EMA) DiT for the same conditions, settings and generator."""
    from dataclasses import replace

    from mgeldm.models.mgeldm import MGELDMNet
    from mgeldm.models.tracks import MIX, SRC
    from mgeldm.tasks.tasks import TASKS, SamplingSettings, TaskRunner, sample_latents
    from mgeldm.training.fake_data import FakeLatentDataset

    m = _dit_module()
    batch = torch.utils.data.default_collate(
        [FakeLatentDataset(2, channels=8, frames=16, clap_dim=16)[i] for i in range(2)]
    )
    cb = DiTDemoCallback("unused", 1, num_demos=2, steps=3, cfg_scale=2.0, seed=7, demo_batch=batch)
    demo = cb.sample(m)
    ema = MGELDMNet(
        m.ema_model_dit(),
        m.diffusion.pretransform,
        sample_rate=m.diffusion.sample_rate,
        segment_length=m.diffusion.segment_length,
    )
    runner = TaskRunner(ema)
    settings = SamplingSettings(steps=3, cfg_scale=2.0, overlap=0.0)
    gen = torch.Generator().manual_seed(7)
    cond = torch.zeros(2, runner.model.cond_dim)  # no conditioner: unconditional prompts
    total = sample_latents(runner, replace(TASKS["total_gen"], text=SRC), cond, settings, [gen], [16])[0]
    extraction = sample_latents(
        runner, TASKS["source_extract"], cond, settings, [gen], [16], [m.latents(batch)[:, :8]]
    )[0]
    assert TASKS["source_extract"].given == MIX
    assert torch.equal(demo["total_gen"], total) and torch.equal(demo["extraction"], extraction)


def _ae_module(**over):
    from mgeldm.models.autoencoder import build_autoencoder
    from mgeldm.training.ae_module import AETrainingModule

    torch.manual_seed(0)
    return AETrainingModule(build_autoencoder(AE_TINY["model"]), {**AE_TINY["trainer"]["recipe"], "seed": 0, **over})


def test_ae_demo_writes_reconstructions(tmp_path):
    m = _ae_module()
    cb = AEDemoCallback(tmp_path, torch.randn(1, 1, 1024) * 0.1, every_n_steps=1)
    files = cb.render(m, 3)
    assert sorted(p.name for p in files) == ["00_real.wav", "00_recon.wav"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16-mixed"])  # 16-mixed: GPU only (Lightning falls back on CPU)
def test_mixed_precision_smoke_both_modules(tmp_path, precision):
    from mgeldm.training.fake_data import FakeAudioDataset, FakeLatentDataset

    def trainer():
        return pl.Trainer(
            accelerator="cpu",
            precision=precision,
            max_steps=4,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )

    ae = _ae_module()
    trainer().fit(
        ae,
        DataLoader(FakeAudioDataset(8, length=1024), batch_size=2),
        val_dataloaders=DataLoader(FakeAudioDataset(2, length=1024), batch_size=2),
    )
    assert ae.global_step == 4 and ae.nonfinite_total == 0
    dit = _dit_module()
    ds = FakeLatentDataset(16, channels=8, frames=16, clap_dim=16)
    trainer().fit(dit, DataLoader(ds, batch_size=4), val_dataloaders=DataLoader(ds, batch_size=4))
    assert dit.global_step == 4 and dit.nonfinite_total == 0


@pytest.mark.parametrize("fused", [False, True])
def test_fp16_gradscaler_clip_sees_unscaled_norm(fused):
    """With a GradScaler (16-mixed) the clip hook must see the true gradient norm, also with fused AdamW."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    from mgeldm.training.fake_data import FakeLatentDataset

    norms = {}
    for prec in ("32-true", "16-mixed"):
        m = _dit_module()
        m.recipe["optimizer"]["fused"] = fused
        plugins = [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))] if prec == "16-mixed" else []
        pl.Trainer(
            accelerator="cpu",
            max_steps=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            plugins=plugins,
        ).fit(m, DataLoader(FakeLatentDataset(4, channels=8, frames=16, clap_dim=16), batch_size=4))
        norms[prec] = float(m.last_grad_norms[0])
    assert norms["16-mixed"] == pytest.approx(norms["32-true"], rel=0.05), norms
