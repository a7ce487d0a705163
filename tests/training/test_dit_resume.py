"""The DiT CLI on the tiny config: loss falls, SIGKILL + `ckpt_path=last` resume is bitwise exact."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[2]


def _cmd(save_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train_dit.py"),
        "--config-name",
        "default_dit_tiny",
        f"save_dir={save_dir}",
        "trainer.logger=none",
        *extra,
    ]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("WANDB_MODE", None)
    return env


def _run(save_dir: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    out = subprocess.run(_cmd(save_dir, *extra), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _state(ckpt: Path) -> dict:
    c = torch.load(ckpt, map_location="cpu", weights_only=False)
    return c


def _assert_same(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    sa, sb = a["state_dict"], b["state_dict"]
    assert sa.keys() == sb.keys()
    diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not diff, f"{len(diff)} tensors differ, e.g. {diff[:3]}"
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"]):
        for pa, pb in zip(oa["state"].values(), ob["state"].values()):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert a["mgeldm_rng"]["per_rank"][0]["extra"] == b["mgeldm_rng"]["per_rank"][0]["extra"]


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_exact(tmp_path, killed_writer):
    # 16 batches per epoch, 2 loader workers: the kill lands in the second epoch, mid-epoch
    steps = ["trainer.pl_trainer.max_steps=40", "trainer.num_workers=2"]
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    _run(ref_dir, *steps, "trainer.logger=csv")
    header = next((ref_dir / "logs").rglob("metrics.csv")).read_text().splitlines()[0].split(",")
    for col in (
        "train/loss",
        "train/loss_mix",
        "train/loss_submix",
        "train/loss_src",
        "train/lr",
        "train/grad_norm",
        "train/samples_per_s",
        "train/nonfinite_steps",
    ):
        assert col in header, col
    # the interrupted run SIGKILLs itself right after last.ckpt of step 20 is on disk (a hook for tests)
    err = tmp_path / "killed_run.stderr"
    with open(err, "w") as f:
        proc = subprocess.Popen(
            _cmd(run_dir, *steps),
            cwd=REPO,
            env={**_env(), "MGELDM_TEST_KILL_AT_STEP": "20"},
            stdout=subprocess.DEVNULL,
            stderr=f,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=300)
        finally:  # its loader workers die with it, not seconds later
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, err.read_text()[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 20
    killed_writer(run_dir / "checkpoints" / "step00000015.ckpt")  # as if that save had been killed mid-write
    _run(run_dir, *steps, "ckpt_path=last")
    _assert_same(_state(ref_dir / "checkpoints" / "last.ckpt"), _state(last))
    assert not [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]  # resume cleaned it


@pytest.fixture
def run_here():
    """``run_here(save_dir, *overrides) -> last.ckpt``: train_dit.py's ``run`` on the tiny config in this process.

    Each call builds everything afresh (model, conditioner and its cache, loaders), so only the files on
    disk carry over from one call to the next, as between two processes, without an interpreter start-up.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mgeldm.cli.train_dit import run

    environ = dict(os.environ)  # Lightning's seed_everything exports PL_GLOBAL_SEED

    def call(save_dir: Path, *overrides: str) -> dict:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
            cfg = compose("default_dit_tiny", overrides=[f"save_dir={save_dir}", "trainer.logger=none", *overrides])
        run(OmegaConf.to_container(cfg, resolve=True))
        return _state(save_dir / "checkpoints" / "last.ckpt")

    yield call
    os.environ.clear()
    os.environ.update(environ)


class _StopAt(pl.Callback):
    """What Lightning's Timer does when ``max_time`` is up: ask the fit loop to stop after the current batch."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


@pytest.mark.slow
def test_extending_a_finished_run_continues_its_data_stream(tmp_path, run_here, monkeypatch):
    """22 steps, then the same run extended to 30 (ckpt_path=last), equals 30 straight steps, bitwise, whether
    the first run ended by max_steps or by a stop request (max_time's way).

    16 batches an epoch: step 22 is mid-way through the second epoch, between two periodic saves (every 5)."""
    import mgeldm.cli.train_dit as train_dit

    straight = run_here(tmp_path / "straight", "trainer.pl_trainer.max_steps=30")
    assert run_here(tmp_path / "max_steps", "trainer.pl_trainer.max_steps=22")["global_step"] == 22
    build = train_dit.build_trainer
    with monkeypatch.context() as patch:
        patch.setattr(
            train_dit,
            "build_trainer",
            lambda tcfg, save_dir, callbacks, **kw: build(tcfg, save_dir, [*callbacks, _StopAt(22)], **kw),
        )
        assert run_here(tmp_path / "stopped", "trainer.pl_trainer.max_steps=30")["global_step"] == 22
    for name in ("max_steps", "stopped"):
        _assert_same(straight, run_here(tmp_path / name, "trainer.pl_trainer.max_steps=30", "ckpt_path=last"))


@pytest.mark.slow
def test_resume_with_text_conditioning_is_bitwise_exact(tmp_path, run_here):
    """Text prompts blended into the source condition, as in every shipped DiT recipe; the resumed run
    starts with an empty prompt cache, so it embeds prompts in other company than the uninterrupted run."""
    from mgeldm.models.conditioners import SentenceEncoder, register_conditioner

    class BatchDependentMiniLM(SentenceEncoder):
        """The bundled MiniLM, each embedding nudged by the mean of the batch it is computed in: a plain
        exaggeration of what padding and blocked matrix products do to the last bits of a real encoder."""

        def _encode(self, texts):
            out = super()._encode(texts)
            return out + 1e-3 * out.mean(dim=0, keepdim=True)

    register_conditioner("batch_dependent_minilm_for_test")(lambda config, device: BatchDependentMiniLM(device=device))
    text = [
        "trainer.recipe.text_conditioning=true",
        "model.MGELDM.global_cond_dim=384",
        "model.conditioner={clap_text: {type: batch_dependent_minilm_for_test}}",
    ]
    straight = run_here(tmp_path / "straight", *text, "trainer.pl_trainer.max_steps=30")
    run_here(tmp_path / "resumed", *text, "trainer.pl_trainer.max_steps=22")
    periodic = tmp_path / "resumed" / "checkpoints" / "step00000020.ckpt"
    _assert_same(
        straight, run_here(tmp_path / "resumed", *text, "trainer.pl_trainer.max_steps=30", f"ckpt_path={periodic}")
    )


@pytest.mark.slow
def test_resume_with_missing_checkpoint_file_is_one_line_error(tmp_path):
    out = subprocess.run(
        _cmd(tmp_path, "ckpt_path=/nonexistent/x.ckpt"),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("train_dit.py: error: ckpt_path: /nonexistent/x.ckpt")


@pytest.mark.slow
def test_missing_autoencoder_is_one_line_error(tmp_path):
    out = subprocess.run(
        _cmd(tmp_path, "require_autoencoder=true"), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert "autoencoder_ckpt_path: missing" in out.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_data_root_without_tracks_is_one_line_error(tmp_path):
    import numpy as np

    (tmp_path / "root" / "slakh2100" / "train").mkdir(parents=True)
    np.save(tmp_path / "root" / "zero_latent.npy", np.zeros(8, np.float32))
    out = subprocess.run(
        _cmd(
            tmp_path / "run",
            "~data.fake",
            f"+data.data_dir={tmp_path / 'root'}",
            "+data.train.slakh2100.subdir=slakh2100",
            "+data.train.slakh2100.split=train",
            "+data.train.slakh2100.num_examples=8",
        ),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("train_dit.py: error:") and "no usable track" in last
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unwrapped_file_as_resume_checkpoint_is_refused(tmp_path):
    from mgeldm.checkpoints import write_state_dict
    from mgeldm.cli.train import resolve_resume
    from mgeldm.errors import UserError

    path = write_state_dict({"model_dit.w": torch.ones(2)}, tmp_path / "unwrapped.ckpt")
    with pytest.raises(UserError, match="unwrapped model, not a training checkpoint.*pretrained_ckpt_path"):
        resolve_resume(str(path), tmp_path, "mgeldm")
    torch.save({"state_dict": {"autoencoder.w": torch.ones(1)}, "loops": {}}, tmp_path / "ae.ckpt")
    with pytest.raises(UserError, match="of the autoencoder run, not of mgeldm training"):
        resolve_resume(str(tmp_path / "ae.ckpt"), tmp_path, "mgeldm")
    assert resolve_resume(str(tmp_path / "ae.ckpt"), tmp_path, "autoencoder") == str(tmp_path / "ae.ckpt")
    assert resolve_resume("last", tmp_path, "mgeldm") is None  # nothing to resume yet: fresh run
    assert resolve_resume(None, tmp_path, "mgeldm") is None


@pytest.mark.slow
def test_last_checkpoint_holds_the_final_step(tmp_path):
    _run(tmp_path, "trainer.pl_trainer.max_steps=7")  # periodic saves every 5 steps
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 7
