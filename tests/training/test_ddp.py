"""2-process DDP (gloo, CPU): ranks draw different noise/timesteps/dropout, weights stay equal (difference 10 of
docs/compatibility.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import pytorch_lightning as pl
    import torch
    from torchdata.stateful_dataloader import StatefulDataLoader
    from mgeldm.models.dit import build_dit
    from mgeldm.training.dit_module import DiTTrainingModule
    from mgeldm.training.fake_data import FakeLatentDataset

    out_dir = Path(sys.argv[1])
    cfg = {"io_channels": 8, "num_tracks": 3, "embed_dim": 32, "global_cond_dim": 16,
           "timestep_features_dim": 16, "depth": 2, "num_heads": 3}

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.model_dit = build_dit(cfg)

    class Probe(DiTTrainingModule):
        def compute_loss(self, batch, generator=None, sobol=None):
            if generator is None and not hasattr(self, "first"):
                state = self.generator.get_state().clone()
                eps = torch.randn(4, generator=self.generator)
                self.generator.set_state(state)
                self.first = {"eps": eps.tolist()}
            out = super().compute_loss(batch, generator, sobol)
            if generator is None and "t" not in self.first:
                self.first["t"] = out["t"][:, 0].tolist()
                self.first["cond_zero"] = (out["cond"].abs().sum(-1) == 0).tolist()
            return out

        def on_train_end(self):
            flat = torch.cat([p.detach().flatten() for p in self.diffusion.model_dit.parameters()])
            ema = torch.cat([p.detach().flatten() for p in self.diffusion_ema.ema_model.parameters()])
            rank = self.trainer.global_rank
            (out_dir / f"rank{rank}.json").write_text(json.dumps(
                {"first": self.first, "params": flat.double().tolist(), "ema": ema.double().tolist(),
                 "seed": self.rank_seed}))

    if __name__ == "__main__":
        m = Probe(Holder(), {"seed": 7, "cfg_dropout_prob": 0.5, "timestep_dropout_prob": 0.75,
                             "optimizer": {"lr": 1e-3}})
        ds = FakeLatentDataset(32, channels=8, frames=8, clap_dim=16)
        ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(out_dir / "ckpt"), every_n_train_steps=2, save_last=True)
        tr = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=4, logger=False, callbacks=[ckpt],
                        enable_progress_bar=False, enable_model_summary=False)
        tr.fit(m, StatefulDataLoader(ds, batch_size=4, drop_last=True))
""")


@pytest.mark.slow
def test_two_process_ddp_differs_in_noise_equal_in_weights(tmp_path):
    script = tmp_path / "ddp_probe.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MASTER_PORT=str(29500 + os.getpid() % 1000))
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["seed"] != r1["seed"]
    assert r0["first"]["eps"] != r1["first"]["eps"]  # noise differs
    assert r0["first"]["t"] != r1["first"]["t"]  # Sobol timesteps differ
    assert r0["params"] == r1["params"]  # DDP keeps the replicas identical
    assert r0["ema"] == r1["ema"]
    # the checkpoint keeps every rank's streams (gathered), so a 2-rank resume continues both exactly
    import torch

    rng = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)["mgeldm_rng"]
    per_rank = rng["per_rank"]
    assert len(per_rank) == 2
    assert per_rank[0]["extra"][0] != per_rank[1]["extra"][0]  # Sobol seeds
    assert not torch.equal(per_rank[0]["generator"], per_rank[1]["generator"])


DDP_CONFIG = textwrap.dedent("""
    # default_dit_tiny on 2 CPU processes (gloo), 2 steps
    defaults:
      - default_dit_tiny
      - _self_
    trainer:
      checkpoint_every_n_steps: 2
      pl_trainer: {devices: 2, max_steps: 2}
    data:
      fake: {num_examples: 16}
""")


@pytest.mark.slow
def test_train_dit_ddp_with_config_dir_after_the_overrides(tmp_path):
    """Lightning starts rank 1 by re-running sys.argv with overrides of its own appended: a `--config-dir`
    given after the overrides (as a script's extra arguments put it) must still parse there, and rank 1
    must find the config that only that folder holds."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "tiny_ddp.yaml").write_text(DDP_CONFIG)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MASTER_PORT=str(30500 + os.getpid() % 1000))
    cmd = [
        sys.executable,
        str(REPO / "train_dit.py"),
        "--config-name",
        "tiny_ddp",
        f"save_dir={tmp_path / 'run'}",
        "seed=3",
        "--config-dir",
        str(conf),
    ]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import torch

    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 and len(ckpt["mgeldm_rng"]["per_rank"]) == 2  # both ranks trained
