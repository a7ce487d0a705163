"""The held-out monitor of DiT training (``trainer.monitor``, mgeldm.evaluation.monitor) on default_dit_tiny and a
small pre-encoded corpus: its scores in the CSV log at the configured steps, the best checkpoint and best.json
(unwrap_model.py reads it), bitwise the same weights with the monitor on and off, resume, and its mistakes
refused in one line before the first step."""

from __future__ import annotations

import csv
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
C, G = 8, 16  # default_dit_tiny's latent channels and condition width
LABELS = ("bass", "drums", "piano")


class _Text:
    """A text embedder: a fixed unit vector per text."""

    dim = G

    def embed_text(self, texts):
        out = [torch.randn(G, generator=torch.Generator().manual_seed(sum(map(ord, t)))) for t in texts]
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)


def _song(folder: Path, frames: int, seed: int) -> None:
    """One pre-encoded song as pre_encode.py lays it out: mix + one comb per stem (source, submix, CLAP columns)."""
    rng = np.random.default_rng(seed)
    stems = {label: rng.standard_normal((C, frames)).astype(np.float32) + i for i, label in enumerate(LABELS)}
    mix = sum(stems.values())
    folder.mkdir(parents=True)
    np.save(folder / "mix.npy", mix)
    np.save(folder / "mix_clap.npy", rng.standard_normal((G, 2)).astype(np.float32))
    for k, (label, src) in enumerate(stems.items()):
        comb = folder / f"comb{k}"
        comb.mkdir()
        for name, z in (("src", src), ("submix", mix - src)):
            np.save(comb / f"{name}.npy", z)
            np.save(comb / f"{name}_clap.npy", rng.standard_normal((G, 2)).astype(np.float32))
        (comb / "comb_info.json").write_text(
            json.dumps({"src_label": label, "submix_label_list": [x for x in LABELS if x != label]})
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """latents/slakh2100/{train: 3 songs, valid: 2 songs}, zero_latent.npy, and a text-embedding table."""
    from mgeldm.data.prompts import canonical_prompt
    from mgeldm.models.conditioners import write_embedding_table

    root = tmp_path_factory.mktemp("latents")
    np.save(root / "zero_latent.npy", np.zeros(C, np.float32))
    for i in range(3):
        _song(root / "slakh2100" / "train" / f"song{i}", 64, i)
    for i in range(2):
        _song(root / "slakh2100" / "valid" / f"song{i}", 40, 100 + i)
    write_embedding_table(_Text(), [canonical_prompt(label) for label in LABELS], root / "table.npz")
    return root


def _overrides(root: Path, save_dir: Path, *extra: str) -> list[str]:
    return [
        f"save_dir={save_dir}",
        "+data=multi_latent_pretrain_nomix",
        "~data.fake",
        f"data.data_dir={root}",
        "data.num_examples_train=64",
        f"model.conditioner={{clap_text:{{type:embedding_table,config:{{path:'{root / 'table.npz'}'}}}}}}",
        "trainer.pl_trainer.max_steps=10",
        "trainer.logger=csv",
        *extra,
    ]


@pytest.fixture
def train(corpus):
    """``train(save_dir, *overrides) -> last.ckpt's dict``: train_dit.py's ``run`` in this process."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mgeldm.cli.train_dit import run

    environ = dict(os.environ)  # Lightning's seed_everything exports PL_GLOBAL_SEED

    def call(save_dir: Path, *extra: str) -> dict:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
            cfg = compose("default_dit_tiny", overrides=_overrides(corpus, save_dir, *extra))
        run(OmegaConf.to_container(cfg, resolve=True))
        return torch.load(save_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)

    yield call
    os.environ.clear()
    os.environ.update(environ)


def _rows(save_dir: Path) -> list[dict]:
    """The rows of every metrics.csv of the run (a resumed run logs to a new version folder)."""
    rows = []
    for path in sorted((save_dir / "logs").rglob("metrics.csv")):
        with open(path) as f:
            rows += list(csv.DictReader(f))
    return rows


def _same_weights(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])] == []
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"]):
        for pa, pb in zip(oa["state"].values(), ob["state"].values()):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)


@pytest.mark.slow
def test_monitor_logs_keeps_the_best_and_leaves_training_alone(tmp_path, train, capsys):
    """Every 4 steps and at the last (10): the scores (and an x0 probe) in metrics.csv, one line each; best.json
    names the best-scoring steps' checkpoints, unwrap_model.py unwraps the best; the weights are those of the same
    run without the monitor."""
    on = train(
        tmp_path / "on",
        "trainer.monitor.every_n_steps=4",
        "trainer.monitor.save_top_k=2",
        "trainer.monitor.x0_times=[0.5]",
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if "monitor at step" in line]
    assert [line.split(" | ")[0] for line in lines] == [f"train_dit.py: monitor at step {s}" for s in (4, 8, 10)]
    rows = {int(r["step"]): r for r in _rows(tmp_path / "on") if r.get("val/latent_rel_mse")}
    assert sorted(rows) == [4, 8, 10]
    for row in rows.values():
        assert 0 <= float(row["val/latent_prompt_accuracy"]) <= 1 and float(row["val/latent_rel_mse"]) > 0
        assert float(row["val/x0_error_t0.5"]) > 0 and float(row["val/x0_error_t0.5_uncond"]) > 0
        assert all(
            row[f"val/latent_rel_mse_{label}"] and row[f"val/latent_prompt_accuracy_{label}"] for label in LABELS
        )
    best = json.loads((tmp_path / "on" / "checkpoints" / "best.json").read_text())
    best_step = min(rows, key=lambda s: float(rows[s]["val/latent_rel_mse"]))
    assert best["step"] == best_step and best["metric"] == "val/latent_rel_mse" and best["mode"] == "min"
    assert best["value"] == pytest.approx(float(rows[best_step]["val/latent_rel_mse"]))
    assert [e["step"] for e in best["top_k"]] == sorted(rows, key=lambda s: float(rows[s]["val/latent_rel_mse"]))[:2]
    kept = sorted(p.name for p in (tmp_path / "on" / "checkpoints").glob("best-step*.ckpt"))
    assert kept == sorted(e["file"] for e in best["top_k"])
    from mgeldm.evaluation.monitor import best_checkpoint

    path = best_checkpoint(tmp_path / "on" / "checkpoints")
    assert Path(best["path"]) == path.resolve() and torch.load(path, weights_only=False)["global_step"] == best_step

    _same_weights(train(tmp_path / "off"), on)  # the same run without the monitor

    sys_argv = sys.argv
    try:
        sys.argv = [
            "unwrap_model.py",
            "--config-name",
            "dit",
            "+type=mgeldm",
            f"ckpt_path={path}",
            f"+output_name={tmp_path / 'best_unwrapped'}",
            "+use_safetensors=false",
        ]
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(REPO / "unwrap_model.py"), run_name="__main__")
        assert done.value.code in (0, None)
    finally:
        sys.argv = sys_argv
    from mgeldm.checkpoints import read_state_dict

    unwrapped = read_state_dict(tmp_path / "best_unwrapped.ckpt")
    ema = torch.load(path, weights_only=False)["state_dict"]
    key = next(k for k in unwrapped if k.startswith("model_dit."))
    assert torch.equal(unwrapped[key], ema["diffusion_ema.ema_model." + key.removeprefix("model_dit.")])


@pytest.mark.slow
def test_monitor_resumes_its_ranking(tmp_path, train):
    """6 steps, then ckpt_path=last to 10: the same scores at 4, 8, 10 and the same best.json as 10 straight."""
    flags = ("trainer.monitor.every_n_steps=4", "trainer.monitor.metric=latent_prompt_accuracy")
    straight = train(tmp_path / "straight", *flags)
    train(tmp_path / "resumed", *flags, "trainer.pl_trainer.max_steps=6")
    resumed = train(tmp_path / "resumed", *flags, "ckpt_path=last")
    _same_weights(straight, resumed)
    scores = [
        {int(r["step"]): r["val/latent_rel_mse"] for r in _rows(tmp_path / name) if r.get("val/latent_rel_mse")}
        for name in ("straight", "resumed")
    ]
    assert scores[0] == {s: v for s, v in scores[1].items() if s != 6} and sorted(scores[0]) == [4, 8, 10]
    records = [
        json.loads((tmp_path / name / "checkpoints" / "best.json").read_text()) for name in ("straight", "resumed")
    ]
    assert records[0]["mode"] == "max"
    assert {k: v for k, v in records[0].items() if k != "path"} == {k: v for k, v in records[1].items() if k != "path"}


@pytest.mark.slow
def test_monitor_under_ddp_scores_on_rank_0_and_every_rank_keeps_the_same_best(corpus, tmp_path):
    """2 CPU processes (gloo): one line and one CSV row per scored step, the best checkpoint written once."""
    run = tmp_path / "ddp"
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "train_dit.py"),
            "--config-name",
            "default_dit_tiny",
            *_overrides(corpus, run),
            "trainer.pl_trainer.max_steps=4",
            "trainer.monitor.every_n_steps=2",
            "trainer.pl_trainer.devices=2",
            "trainer.pl_trainer.strategy=ddp",
        ],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert [line.split(" | ")[0] for line in out.stdout.splitlines() if "monitor at step" in line] == [
        "train_dit.py: monitor at step 2",
        "train_dit.py: monitor at step 4",
    ]
    assert sorted(int(r["step"]) for r in _rows(run) if r.get("val/latent_rel_mse")) == [2, 4]
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert (run / "checkpoints" / best["file"]).is_file() and best["step"] in (2, 4)


def _fails(argv: list[str], monkeypatch, capsys) -> str:
    """``python train_dit.py <argv>`` in this process: exit code 2 after one line, which is returned."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["train_dit.py", "--config-name", "default_dit_tiny", *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "train_dit.py"), run_name="__main__")
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and "error: " in lines[0], lines
    return lines[0]


MISTAKES = {
    "every_n_steps -1": (["trainer.monitor.every_n_steps=-1"], "trainer.monitor.every_n_steps=-1"),
    "songs 0": (["trainer.monitor.songs=0"], "trainer.monitor.songs=0"),
    "metric": (["trainer.monitor.metric=loss"], "trainer.monitor.metric='loss'"),
    "x0 time 2": (["trainer.monitor.x0_times=[0.5,2]"], "trainer.monitor.x0_times"),
    "unknown key": (["+trainer.monitor.every=5"], "trainer.monitor.every: unknown key"),
    "steps 0": (["trainer.monitor.every_n_steps=2", "trainer.monitor.steps=0"], "trainer.monitor.steps=0"),
    "overlap": (
        ["trainer.monitor.every_n_steps=2", "trainer.monitor.overlap_seconds=1"],
        "trainer.monitor.overlap_seconds=1",
    ),
    "missing split": (
        ["trainer.monitor.every_n_steps=2", "trainer.monitor.split=test"],
        "trainer.monitor.split='test'",
    ),
    "no conditioner": (["trainer.monitor.every_n_steps=2", "model.conditioner=null"], "model.conditioner: none"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_monitor_mistakes_are_one_line_before_training(case, corpus, tmp_path, monkeypatch, capsys):
    argv, needle = MISTAKES[case]
    line = _fails([*_overrides(corpus, tmp_path / "run"), *argv], monkeypatch, capsys)
    assert needle in line, line
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_monitor_needs_songs_with_synthetic_data(corpus, tmp_path, monkeypatch, capsys):
    table = f"model.conditioner={{clap_text:{{type:embedding_table,config:{{path:'{corpus / 'table.npz'}'}}}}}}"
    line = _fails([f"save_dir={tmp_path / 'run'}", table, "trainer.monitor.every_n_steps=2"], monkeypatch, capsys)
    assert "trainer.monitor.data_dir: null and data.fake has no songs" in line, line
