"""AE recipe (docs/compatibility.md#autoencoder-training): generator/discriminator alternation, loss weights, clipping,
exact resume."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from mgeldm.config import compose_config
from mgeldm.training.ae_module import AETrainingModule
from mgeldm.training.callbacks import AtomicCheckpointIO
from mgeldm.training.fake_data import FakeAudioDataset

TINY = compose_config("default_ae_tiny")


def _module(**over) -> AETrainingModule:
    from mgeldm.models.autoencoder import build_autoencoder

    torch.manual_seed(0)
    recipe = {**TINY["trainer"]["recipe"], "seed": 0, **over}
    return AETrainingModule(build_autoencoder(TINY["model"]), recipe)


def test_generator_loss_is_the_weighted_sum():
    m = _module()
    m.setup_rng("cpu")
    reals = torch.stack([FakeAudioDataset(2, length=2048)[i]["mix_wav"] for i in range(2)])
    out = m.generator_losses(reals)
    expected = 2.0 * out["mrstft"] + 0.12 * out["adv"] + 5.0 * out["fm"] + 1e-4 * out["kl"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    quick = _module(use_discriminator=False)
    assert quick.discriminator is None and quick.is_generator_step()


def _fit(m, steps, tmp, ckpt_path=None, every=None):
    cbs = []
    if every:
        cbs.append(
            pl.callbacks.ModelCheckpoint(dirpath=str(tmp), every_n_train_steps=every, save_last=True, save_top_k=-1)
        )
    tr = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=bool(every),
        callbacks=cbs,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
    )
    from torchdata.stateful_dataloader import StatefulDataLoader

    tr.fit(m, StatefulDataLoader(FakeAudioDataset(8, length=2048), batch_size=2, drop_last=True), ckpt_path=ckpt_path)
    return tr


@pytest.mark.slow
def test_alternation_and_exact_resume(tmp_path):
    ref = _module()
    _fit(ref, 10, tmp_path / "ref")
    opt_g, opt_d = ref.trainer.optimizers
    # 10 batches: 5 generator steps, 5 discriminator steps, each scheduler counts its own
    assert [s.last_epoch for s in (c.scheduler for c in ref.trainer.lr_scheduler_configs)] == [5, 5]
    assert int(ref.autoencoder_ema.step) == 5
    assert 0 in ref.last_grad_norms and 1 in ref.last_grad_norms
    first = _module()
    _fit(first, 6, tmp_path / "run", every=3)
    resumed = _module()
    _fit(resumed, 10, tmp_path / "run2", ckpt_path=str(tmp_path / "run" / "last.ckpt"))
    a, b = ref.state_dict(), resumed.state_dict()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, diff[:5]
