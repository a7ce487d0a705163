"""Every default has one owner: the training recipes and the pre-encoding settings are read from the yaml files
users edit (no copy in the code), and the shared yaml pieces (the tiny VAE, the CPU trainer keys, a corpus
entry) are composed into the configs that use them, not copied."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import mgeldm.config as config
from mgeldm.config import compose_config

REPO = Path(__file__).resolve().parents[2]


def _edit(path: Path, keys: list[str], value) -> None:
    data = yaml.safe_load(path.read_text())
    node = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_recipe_and_pre_encode_defaults_are_the_yaml_files(tmp_path, monkeypatch):
    from mgeldm.data.pre_encode import EncodeSettings
    from mgeldm.models.autoencoder import build_autoencoder
    from mgeldm.models.mgeldm import build_mgeldm
    from mgeldm.training.ae_module import AETrainingModule
    from mgeldm.training.dit_module import DiTTrainingModule

    dit_model, ae_model = compose_config("default_dit_tiny")["model"], compose_config("default_ae_tiny")["model"]
    configs = tmp_path / "configs"
    shutil.copytree(config.CONFIG_DIR, configs)
    _edit(configs / "trainer" / "dit.yaml", ["recipe", "optimizer", "lr"], 0.123)
    _edit(configs / "trainer" / "autoencoder.yaml", ["recipe", "kl_weight"], 0.5)
    _edit(configs / "pre_encode" / "default.yaml", ["batch_size"], 7)
    monkeypatch.setattr(config, "CONFIG_DIR", configs)
    assert DiTTrainingModule(build_mgeldm(dit_model), {}).recipe["optimizer"]["lr"] == 0.123
    assert AETrainingModule(build_autoencoder(ae_model), {"use_discriminator": False}).recipe["kl_weight"] == 0.5
    assert EncodeSettings.from_mapping({}).batch_size == 7
    assert EncodeSettings.from_mapping({"batch_size": 2}).batch_size == 2


def test_text_conditioning_is_a_recipe_key_of_the_module():
    """trainer.recipe.text_conditioning (in configs/trainer/dit.yaml) is the module's own switch, not a key the
    CLI has to remove before the module's unknown-key check; unknown keys are still refused."""
    from mgeldm.errors import UserError
    from mgeldm.models.mgeldm import build_mgeldm
    from mgeldm.training.dit_module import DiTTrainingModule

    model = build_mgeldm(compose_config("default_dit_tiny")["model"])
    conditioner = object()
    assert DiTTrainingModule(model, {"text_conditioning": True}, conditioner=conditioner).conditioner is conditioner
    assert DiTTrainingModule(model, {"text_conditioning": False}, conditioner=conditioner).conditioner is None
    with pytest.raises(UserError, match="unknown key `text_condition`"):
        DiTTrainingModule(model, {"text_condition": False})


def test_shared_pieces_are_composed_not_copied():
    tiny_ae = yaml.safe_load((REPO / "configs" / "model" / "tiny_autoencoder.yaml").read_text())
    assert compose_config("default_ae_tiny")["model"] == tiny_ae
    assert compose_config("default_dit_tiny")["model"]["pretransform"]["autoencoder"] == tiny_ae
    cpu = yaml.safe_load((REPO / "configs" / "compute" / "cpu.yaml").read_text())
    for name in ("default_ae_tiny", "default_dit_tiny", "quickstart_ae", "quickstart_dit"):
        trainer = compose_config(name)["trainer"]
        assert {k: trainer["pl_trainer"][k] for k in cpu["pl_trainer"]} == cpu["pl_trainer"], name
        assert (trainer["num_workers"], trainer["pin_memory"], trainer["demo"]["every_n_steps"]) == (0, False, 0), name
    texts = [
        (REPO / "configs" / f).read_text()
        for f in (
            "default_ae_tiny.yaml",
            "default_dit_tiny.yaml",
            "quickstart_ae.yaml",
            "quickstart_dit.yaml",
            "trainer/tiny_cpu.yaml",
        )
    ]
    assert not any(
        "num_workers" in t or "enable_model_summary" in t or "c_mults: [1, 2, 4], strides: [2, 4, 8]" in t
        for t in texts
    )
    latent = compose_config("default_dit")["data"]["train"]
    assert {e["num_examples"] for e in latent.values()} == {64000} and "subdir: slakh2100" not in (
        REPO / "configs" / "data" / "corpus" / "latent.yaml"
    ).read_text()
    assert compose_config("default_dit_scratch")["model"] == compose_config("dit")["model"]


def test_the_sample_rate_has_one_owner():
    """16 kHz is written once, as mgeldm.audio.SAMPLE_RATE: every default rate of the library and the recipes
    reads it (a literal 16000 stands only as the value of a named module constant, like VGGish's own rate)."""
    import ast

    from mgeldm.audio import SAMPLE_RATE

    assert SAMPLE_RATE == 16000
    stray = []
    for path in [*sorted((REPO / "mgeldm").rglob("*.py")), *sorted((REPO / "recipes").rglob("*.py"))]:
        tree = ast.parse(path.read_text())
        named = {
            id(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
        }
        stray += [
            f"{path.relative_to(REPO)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value == 16000 and id(node) not in named
        ]
    assert stray == []


def test_the_window_fallback_has_one_owner():
    """A model config without segment_length gets models.mgeldm.SEGMENT_LENGTH, through model_facts: no other
    code writes its own fallback window."""
    import ast

    stray = []
    for path in [*sorted((REPO / "mgeldm").rglob("*.py")), *sorted((REPO / "recipes").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "segment_length"
                and isinstance(node.args[1], ast.Constant)
            ):
                stray.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert stray == []
