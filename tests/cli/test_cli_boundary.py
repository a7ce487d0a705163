"""Every entry point's boundary, run in-process on sys.argv: a user mistake is one line on stderr with exit
code 2 and leaves nothing written (checked before any model, corpus or checkpoint is read); Hydra's own
errors are one line too; the original's spellings (`seed=`, `+seed=`, `ae_config`) work; the shipped
configs pass the checks; the infer scripts pass paths and prompts through whatever they hold."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]


def _call(entry: str, argv: list[str], monkeypatch) -> None:
    """``python <entry> <argv>`` in this process (every root script is ``raise SystemExit(main())``): returns when
    the run succeeds, raises SystemExit with its code when it fails."""
    monkeypatch.setattr(sys, "argv", [entry, *argv])
    try:
        runpy.run_path(str(REPO / entry), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def _fails(entry: str, argv: list[str], monkeypatch, capsys) -> str:
    """Run ``entry`` on ``argv``; it must exit with code 2 after exactly one output line, which is returned."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _call(entry, argv, monkeypatch)
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert exit_info.value.code == 2, lines
    assert len(lines) == 1 and "error: " in lines[0], lines
    return lines[0]


def _composed(entry: str, argv: list[str], monkeypatch, capsys) -> dict:
    """The config ``entry`` composes from ``argv`` (Hydra's --cfg job prints it and runs nothing)."""
    capsys.readouterr()
    _call(entry, [*argv, "--cfg", "job"], monkeypatch)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.fixture(scope="module")
def other_size_ckpt(tmp_path_factory) -> Path:
    """A Lightning-style DiT training checkpoint of default_dit_tiny's model with a wider DiT (48, not 32)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mgeldm.models.mgeldm import build_mgeldm

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        model_cfg = OmegaConf.to_container(compose("default_dit_tiny").model, resolve=True)
    model_cfg["MGELDM"]["embed_dim"] = 48
    state = {f"diffusion.{k}": v for k, v in build_mgeldm(model_cfg).state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "wider.ckpt"
    torch.save({"state_dict": state, "loops": {}, "model_config": model_cfg}, path)
    return path


@pytest.fixture
def work(tmp_path, monkeypatch, other_size_ckpt):
    """The working folder (the cwd of the run) with a regular file, an empty corpus and a stand-in checkpoint."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "model.ckpt").write_bytes(b"only its existence is checked before the mistakes below")
    monkeypatch.chdir(tmp_path)
    return {"tmp": tmp_path, "other": other_size_ckpt, "gpus": torch.cuda.device_count()}


DIT = ["--config-name", "default_dit_tiny", "save_dir={tmp}/run"]
AE = ["--config-name", "default_ae_tiny", "save_dir={tmp}/run"]
PRE = [
    "ckpt_path={tmp}/model.ckpt",
    "+save_root_dir={tmp}/latents",
    "+extract_dataset=[other_tracks]",
    "+data_dirs.other_tracks={tmp}/corpus",
]
UNWRAP = ["--config-name", "dit", "+type=mgeldm", "ckpt_path={tmp}/model.ckpt"]

# (entry, argv, what the error line must name)
MISTAKES = {
    "train batch_size abc": ("train_dit.py", [*DIT, "trainer.batch_size=abc"], "trainer.batch_size"),
    "train batch_size 0": ("train_dit.py", [*DIT, "trainer.batch_size=0"], "trainer.batch_size=0"),
    "train max_steps abc": ("train_dit.py", [*DIT, "trainer.pl_trainer.max_steps=abc"], "max_steps"),
    "train lr fast": ("train_dit.py", [*DIT, "trainer.recipe.optimizer.lr=fast"], "optimizer.lr"),
    "train seed abc": ("train_dit.py", [*DIT, "seed=abc"], "seed"),
    "train precision 8-bit": ("train_dit.py", [*DIT, "trainer.pl_trainer.precision=8-bit"], "precision=8-bit"),
    "train save_dir under a file": ("train_dit.py", [*DIT, "save_dir={tmp}/a_file/run"], "a_file is a file"),
    "train missing gpu": (
        "train_dit.py",
        [*DIT, "trainer.pl_trainer.accelerator=gpu", "trainer.pl_trainer.devices=[{gpus}]"],
        "trainer.pl_trainer.",
    ),
    "train resume other size": ("train_dit.py", [*DIT, "ckpt_path={other}"], "MGELDM.embed_dim (48 there, 32 here)"),
    "train bad model value": ("train_dit.py", [*DIT, "model.MGELDM.depth=two"], "model:"),
    "train ae lr fast": ("train_ae.py", [*AE, "trainer.recipe.optimizer.lr=fast"], "optimizer.lr"),
    "train ae batch_size abc": ("train_ae.py", [*AE, "trainer.batch_size=abc"], "trainer.batch_size"),
    "pre_encode num_shards two": ("pre_encode.py", [*PRE, "+num_shards=two"], "num_shards"),
    "pre_encode batch_size abc": ("pre_encode.py", [*PRE, "pre_encode.batch_size=abc"], "pre_encode.batch_size"),
    "pre_encode batch_size 0": ("pre_encode.py", [*PRE, "pre_encode.batch_size=0"], "pre_encode.batch_size=0"),
    "pre_encode window -1": ("pre_encode.py", [*PRE, "pre_encode.clap_window_seconds=-1"], "clap_window_seconds"),
    "pre_encode missing device": ("pre_encode.py", [*PRE, "+device=cuda:{gpus}"], "+device=cuda:"),
    "pre_encode root under a file": (
        "pre_encode.py",
        [*PRE, "+save_root_dir={tmp}/a_file/latents"],
        "a_file is a file",
    ),
    "unwrap output under a file": ("unwrap_model.py", [*UNWRAP, "+output_name={tmp}/a_file/sub/x"], "a_file is a file"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_mistake_is_one_line_exit_2_nothing_written(case, work, monkeypatch, capsys):
    entry, argv, needle = MISTAKES[case]
    before = sorted(os.listdir(work["tmp"]))
    line = _fails(entry, [a.format(**work) for a in argv], monkeypatch, capsys)
    assert needle.format(**work) in line, line
    assert sorted(os.listdir(work["tmp"])) == before  # no logs/, run/, latents/ or zero_latent.npy


ENTRIES = ("train_ae.py", "train_dit.py", "pre_encode.py", "unwrap_model.py", "infer.py", "evaluate.py")
# An override Hydra's grammar cannot read, per entry point (an apostrophe, non-ASCII letters, parentheses).
UNREADABLE = {
    "train_ae.py": "save_dir=/runs/müsic",
    "train_dit.py": "save_dir=/runs/(2)",
    "pre_encode.py": "+save_root_dir=/data/sång",
    "unwrap_model.py": "+output_name=/out/é",
    "infer.py": "+text_prompt='it's a jazz trio'",
    "evaluate.py": "+output=/eval/ä.json",
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_hydra_errors_are_one_line(entry, work, monkeypatch, capsys):
    """A wrong --config-name, an unknown key and an unreadable value: one line each, not Hydra's report."""
    line = _fails(entry, ["--config-name", "no_such_config"], monkeypatch, capsys)
    assert "--config-name no_such_config" in line and "default_dit" in line
    line = _fails(entry, ["trainre.batch_size=3"], monkeypatch, capsys)
    assert "trainre.batch_size: no such key" in line
    line = _fails(entry, [UNREADABLE[entry]], monkeypatch, capsys)
    assert UNREADABLE[entry] in line and "quote it" in line
    assert sorted(os.listdir(work["tmp"])) == ["a_file", "corpus", "model.ckpt"]


@pytest.mark.parametrize(
    "entry, config", [("infer.py", "dit"), ("train_dit.py", "default_dit"), ("train_dit.py", "dit")]
)
@pytest.mark.parametrize("spelling", ["seed=0", "+seed=0", "++seed=0"])
def test_seed_spellings_with_and_without_seed_in_the_config(entry, config, spelling, work, monkeypatch, capsys):
    """dit.yaml has no seed, default_dit.yaml has one: `seed=0` and `+seed=0` work with both."""
    assert _composed(entry, ["--config-name", config, spelling], monkeypatch, capsys)["seed"] == 0


def test_ae_config_names_the_autoencoder(work, monkeypatch, capsys):
    cfg = _composed(
        "infer.py",
        ["model.pretransform.ae_config.latent_dim=32", "+model.pretransform.ae_config.soft_clip_note=1"],
        monkeypatch,
        capsys,
    )
    ae = cfg["model"]["pretransform"]["autoencoder"]
    assert ae["latent_dim"] == 32 and ae["soft_clip_note"] == 1 and "ae_config" not in cfg["model"]["pretransform"]


def _compose(name: str) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return OmegaConf.to_container(compose(name), resolve=True)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("default_ae", "ae"),
        ("default_ae_tiny", "ae"),
        ("quickstart_ae", "ae"),
        ("default_dit", "dit"),
        ("default_dit_mix_pretrain", "dit"),
        ("default_dit_scratch", "dit"),
        ("default_dit_tiny", "dit"),
        ("dit", "dit"),
        ("quickstart_dit", "dit"),
        ("evaluate", "evaluate"),
    ],
)
def test_every_shipped_config_passes_the_checks(name, kind):
    """The rules accept every key and value of the configs (which reproduce the original's)."""
    from mgeldm.cli import evaluate, pre_encode, train_ae, train_dit, unwrap_model
    from mgeldm.cli.schema import check_config
    from mgeldm.cli.train import check_training_config

    cfg = _compose(name)
    if kind == "evaluate":
        check_config(cfg, evaluate.RULES)
        return
    check_training_config(cfg, train_ae.AE_RULES if kind == "ae" else train_dit.DIT_RULES)
    check_config(cfg, unwrap_model.RULES)
    if kind == "ae":
        check_config(cfg, pre_encode.RULES)


@pytest.mark.parametrize(
    "script",
    [
        "infer_src_ext.sh",
        "infer_partial_gen_iter.sh",
        *(
            pytest.param(s, marks=pytest.mark.slow)
            for s in ("infer_partial_gen.sh", "infer_accomp_gen.sh", "infer_total_gen.sh")
        ),
    ],
)
def test_infer_scripts_pass_paths_and_prompts_unchanged(script, tmp_path):
    """A GIVEN_WAV_PATH with spaces, an apostrophe, a comma and non-ASCII letters, and a prompt with an
    apostrophe reach infer.py as they are (the composed config, printed by --cfg job)."""
    given = tmp_path / "my songs" / "Bob's müsic, take (1).wav"
    prompt = "Bob's jazz piano; the drummer's brushes" if "iter" in script else 'Bob\'s "jazz" piano, [live]'
    env = {
        **os.environ,
        "GIVEN_WAV_PATH": str(given),
        "TEXT_PROMPT": prompt,
        "OUTPUT_DIR": str(tmp_path / "out dir"),
        "CKPT_PATH": str(tmp_path / "ckpt's.ckpt"),
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / script), "--cfg", "job"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["text_prompt"] == prompt
    assert cfg["output_dir"] == str(tmp_path / "out dir") and cfg["ckpt_path"] == str(tmp_path / "ckpt's.ckpt")
    if script != "infer_total_gen.sh":
        assert cfg["given_wav_path"] == str(given)
