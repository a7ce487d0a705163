"""Task defaults on models other than the released one: the overlap keeps its share of the DiT window, and a
checkpoint that carries its config runs through the API and infer.py with no model-config argument."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mgeldm.tasks.tasks import RELEASED_WINDOW_SECONDS, TASKS, task_defaults
from mgeldm.tasks.windowing import overlap_frames

TASK_DEFAULTS = {name: row.defaults for name, row in TASKS.items()}

REPO = Path(__file__).resolve().parents[2]


def test_released_window_keeps_the_original_settings():
    for task in TASKS:
        assert task_defaults(task, RELEASED_WINDOW_SECONDS) == TASK_DEFAULTS[task]
        assert task_defaults(task) == TASK_DEFAULTS[task]
    assert (TASK_DEFAULTS["total_gen"].overlap, TASK_DEFAULTS["source_extract"].overlap) == (7.0, 3.0)


@pytest.mark.parametrize(
    "frames, ratio, sample_rate", [(16, 64, 16000), (128, 64, 16000), (100, 64, 16000), (100, 2048, 16000)]
)
def test_scaled_overlap_fits_any_window(frames, ratio, sample_rate):
    """The tiny (0.064 s), quickstart (0.512 s), reference fixture (0.4 s) and released (12.8 s) windows."""
    window_s = frames * ratio / sample_rate
    for task in TASKS:
        d = task_defaults(task, window_s)
        assert d.overlap == pytest.approx(TASK_DEFAULTS[task].overlap * window_s / RELEASED_WINDOW_SECONDS)
        assert (d.steps, d.cfg_scale, d.repaint_n) == (
            TASK_DEFAULTS[task].steps,
            TASK_DEFAULTS[task].cfg_scale,
            TASK_DEFAULTS[task].repaint_n,
        )
        assert 0 < overlap_frames(d.overlap, sample_rate / ratio, frames) < frames


def _compose(name: str, overrides=()):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return compose(name, overrides=list(overrides))


@pytest.fixture(scope="module")
def carried_checkpoints(tmp_path_factory):
    """Random-weight checkpoints of the tiny and the quickstart model, each carrying its model config, as
    unwrap_model.py writes them."""
    from omegaconf import OmegaConf

    from mgeldm.checkpoints import write_state_dict
    from mgeldm.models.mgeldm import build_mgeldm

    root = tmp_path_factory.mktemp("carried")
    out = {}
    for name in ("default_dit_tiny", "quickstart_dit"):
        cfg = OmegaConf.to_container(_compose(name).model, resolve=True)
        if cfg.get("track_norm") == "measure":  # train_dit.py writes measured numbers; any non-trivial ones do here
            tracks, channels = int(cfg["MGELDM"]["num_tracks"]), int(cfg["MGELDM"]["io_channels"])
            cfg["track_norm"] = {
                "mean": [[0.1 * t] * channels for t in range(tracks)],
                "std": [[1.0 + t] * channels for t in range(tracks)],
            }
        torch.manual_seed(0)
        out[name] = write_state_dict(build_mgeldm(cfg).state_dict(), root / f"{name}.ckpt", model_config=cfg)
    return out


def test_api_runs_every_task_with_default_overlap(carried_checkpoints):
    from mgeldm.api import MGELDM

    m = MGELDM.from_pretrained(carried_checkpoints["default_dit_tiny"], device="cpu")  # no model_config
    window_s = m.runner.facts.window_seconds
    assert window_s == pytest.approx(16 * 64 / 16000)
    assert m.settings("source_extract").overlap == pytest.approx(3.0 * window_s / RELEASED_WINDOW_SECONDS)
    wave = 0.1 * torch.sin(torch.arange(4000) / 5.0)
    assert m.generate(None, seconds=0.2, steps=1, seed=0)["gen_mix"].shape == (1, 3200)
    for task in ("source_extract", "partial_gen", "accomp_gen"):
        assert m.run(task, audio=wave, sr=16000, steps=1, seed=0)[
            "gen_mix" if task != "source_extract" else "gen_src"
        ].shape == (1, 4000)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("default_dit_tiny", ["++task=total_gen", "++gen_audio_dur=0.2"]),
        ("quickstart_dit", ["++task=source_extract", "++given_wav_path={song}", "++text_prompt=The sound of bass."]),
    ],
)
def test_infer_needs_no_config_name_for_a_carried_config(carried_checkpoints, tmp_path, name, overrides):
    """`python infer.py ckpt_path=... +task=...` (configs/dit.yaml, whose CLAP the quickstart's MiniLM needs not)."""
    import soundfile as sf

    from mgeldm.cli.infer import parse_options

    sf.write(tmp_path / "song.wav", (0.1 * torch.sin(torch.arange(8000) / 5.0)).numpy(), 16000)
    cfg = _compose(
        "dit",
        [
            f"ckpt_path={carried_checkpoints[name]}",
            f"++output_dir={tmp_path / 'out'}",
            *(o.format(song=tmp_path / "song.wav") for o in overrides),
        ],
    )
    opts = parse_options(cfg)
    task = opts.task
    window_s = opts.model_cfg["segment_length"] * 64 / 16000
    assert opts.settings.overlap == pytest.approx(TASK_DEFAULTS[task].overlap * window_s / RELEASED_WINDOW_SECONDS)
    assert opts.clap_ckpt_path is None and opts.model_cfg == _carried(carried_checkpoints[name])


def _carried(path):
    from mgeldm.checkpoints import read_model_config

    return read_model_config(path)


def test_prompts_on_a_model_without_conditioner_say_so(carried_checkpoints, tmp_path):
    """The tiny model has no conditioner: a prompt is refused naming that, not a CLAP file to get."""
    from mgeldm.api import MGELDM
    from mgeldm.cli.infer import parse_options
    from mgeldm.errors import UserError

    m = MGELDM.from_pretrained(carried_checkpoints["default_dit_tiny"], device="cpu")
    with pytest.raises(UserError, match="no conditioner"):
        m.generate("drums", seconds=0.2, steps=1)
    cfg = _compose(
        "dit",
        [
            f"ckpt_path={carried_checkpoints['default_dit_tiny']}",
            "++task=total_gen",
            "++text_prompt=drums",
            f"++output_dir={tmp_path / 'out'}",
        ],
    )
    with pytest.raises(UserError, match="no conditioner"):
        parse_options(cfg)
