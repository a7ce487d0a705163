"""What a training run prints: readable progress lines (step, loss, steps/s, time left), no cursor codes,
none of Lightning's banners, tips or its warning about a validation_step without validation data."""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from mgeldm.training.callbacks import SUMMARY_NAME, ProgressLines

REPO = Path(__file__).resolve().parents[2]
CHATTER = ("Tip:", "GPU available", "TPU available", "Trainer.fit` stopped", "val_dataloader")


@pytest.fixture
def train_here():
    """Run a training CLI in this process on a tiny config (compose + run); restores the environment."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    environ = dict(os.environ)  # Lightning's seed_everything exports PL_GLOBAL_SEED

    def call(module, config: str, *overrides: str) -> None:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
            cfg = compose(config, overrides=["trainer.logger=none", *overrides])
        module.run(OmegaConf.to_container(cfg, resolve=True))

    yield call
    os.environ.clear()
    os.environ.update(environ)


@pytest.mark.parametrize("kind", ["dit", "ae"])
def test_training_prints_progress_lines_and_no_chatter(kind, train_here, tmp_path, capfd, caplog):
    import mgeldm.cli.train_ae as train_ae
    import mgeldm.cli.train_dit as train_dit

    module, config, prog = {
        "dit": (train_dit, "default_dit_tiny", "train_dit.py"),
        "ae": (train_ae, "default_ae_tiny", "train_ae.py"),
    }[kind]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_here(module, config, f"save_dir={tmp_path}", "trainer.pl_trainer.max_steps=3")
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert re.fullmatch(rf"{prog}: step 1/3 \| loss \d+\.\d{{4}} \| 0:\d\d elapsed", lines[0]), lines
    assert re.fullmatch(
        rf"{prog}: stopped at step 3 \(max_steps=3 reached\) \| 0:\d\d of training "
        r"\| loss \d+\.\d{4}",
        lines[-1],
    ), lines
    assert "\r" not in out + err and "\x1b" not in out + err
    shown = out + err + caplog.text + "\n".join(str(w.message) for w in caught)
    assert not [c for c in CHATTER if c in shown], shown
    # the run's numbers for reports: steps, the rate over the steps after the first, why it stopped
    summary = json.loads((tmp_path / SUMMARY_NAME).read_text())
    assert summary["steps"] == 3 and summary["first_step"] in (0, 1) and summary["stopped"] == "max_steps=3 reached"
    assert summary["seconds"] > 0 and summary["steps_per_second"] == pytest.approx(
        (3 - summary["first_step"]) / summary["seconds"], rel=0.05
    )


def test_progress_can_be_turned_off(train_here, tmp_path, capfd):
    import mgeldm.cli.train_dit as train_dit

    train_here(
        train_dit,
        "default_dit_tiny",
        f"save_dir={tmp_path}",
        "trainer.pl_trainer.max_steps=2",
        "trainer.progress=false",
    )
    assert "train_dit.py:" not in capfd.readouterr().out


def _trainer(step: int, max_steps: int, loss: float | None, remaining: float | None = None):
    from pytorch_lightning.callbacks import Timer

    timer = Timer(duration="00:01:00:00")
    timer.time_remaining = lambda *a, **k: remaining
    callbacks = [timer] if remaining is not None else []
    metrics = {"train/loss": loss} if loss is not None else {}
    return SimpleNamespace(
        global_step=step,
        max_steps=max_steps,
        callback_metrics=metrics,
        callbacks=callbacks,
        is_global_zero=True,
        interrupted=False,
    )


def test_progress_line_rate_and_time_left():
    """Time left is the sooner of max_steps at the measured rate and the max_time budget."""
    bar = ProgressLines("train_dit.py", every_n_steps=100, min_seconds=0.0, file=io.StringIO())
    bar._first = (1, 1000.0)
    # 200 steps in 100 s: 2 steps/s; 9,799 steps left = 4,899.5 s; the time budget (600 s) is sooner
    assert (
        bar.line(_trainer(201, 10_000, 0.25, remaining=600.0), 201, 1100.0)
        == "step 201/10,000 | loss 0.2500 | 2.00 steps/s | 1:40 elapsed | 10:00 left"
    )
    assert (
        bar.line(_trainer(201, 10_000, None), 201, 1100.0)
        == "step 201/10,000 | 2.00 steps/s | 1:40 elapsed | 1:21:40 left"
    )
    assert bar.line(_trainer(201, -1, 0.5), 201, 1100.0) == "step 201 | loss 0.5000 | 2.00 steps/s | 1:40 elapsed"
