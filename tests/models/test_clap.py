"""LAION-CLAP reimplementation against outputs of laion_clap itself (tiny randomised model), plus the
loader's key layout on the full-size model (meta device) and its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from mgeldm.errors import UserError
from mgeldm.models.clap import IGNORED, ClapSizes, LaionClap, build_clap_model, export_safetensors, load_clap
from mgeldm.models.clap import tokenizer as clap_tokenizer
from mgeldm.models.clap.embedder import fit_to_clip
from mgeldm.models.clap.loader import DERIVED, ignored_reason, map_laion_key, read_clap_file

REPO = Path(__file__).resolve().parents[2]
FULL_YAML = REPO / "configs" / "model" / "conditioner" / "laion_clap.yaml"

# Tolerances stated in the fixture README.
LOGMEL_DB = 1e-3
INTER_ABS, INTER_REL = 1e-4, 1e-4
EMB_COS, EMB_ABS = 0.9999, 1e-4


def tiny_config(fx, **overrides) -> dict:
    """The conditioner config for the fixture's tiny model, with small batches so that the audio batching is
    exercised by the fixture cases."""
    return fx.clap_config(audio_batch_size=2, **overrides)


@pytest.fixture(scope="module")
def tiny(clap_fixtures) -> LaionClap:
    return LaionClap.from_config(tiny_config(clap_fixtures))


def assert_intermediate(out, ref, name):
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    excess = ((out - ref).abs() - (INTER_ABS + INTER_REL * ref.abs())).max().item()
    assert excess <= 0, f"{name}: exceeds 1e-4 + 1e-4|ref| by {excess:.3e}"


def assert_embeddings(out, ref, name):
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    cos = F.cosine_similarity(out.double(), ref.double(), dim=-1)
    diff = (out.double() - ref.double()).abs().amax(dim=-1)
    assert cos.min().item() >= EMB_COS, f"{name}: cosine {cos.tolist()}"
    assert diff.max().item() <= EMB_ABS, f"{name}: max |diff| per row {diff.tolist()}"


# ------------------------------------------------------------------ fixture cases (laion_clap outputs)


@pytest.mark.clap
def test_tokens_exact(tiny, clap_fixtures):
    ids, mask = tiny.tokenizer(clap_fixtures.readme["prompts"])
    assert torch.equal(ids, clap_fixtures.cases["text_input_ids"])
    assert torch.equal(mask, clap_fixtures.cases["text_attention_mask"])


@pytest.mark.clap
def test_tokenizer_from_vocab_and_merges_only(clap_fixtures, tmp_path):
    src = clap_fixtures.path(clap_fixtures.readme["tokenizer"]["dir"])
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    tok = clap_tokenizer.ClapTokenizer(tmp_path, clap_fixtures.cases["text_input_ids"].shape[1])
    ids, _ = tok(clap_fixtures.readme["prompts"])
    assert torch.equal(ids, clap_fixtures.cases["text_input_ids"])


def _run_audio(clap: LaionClap, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
    """embed_audio once, capturing the log-mel, the Swin input and the HTSAT embedding on the way."""
    captured: dict[str, torch.Tensor] = {}
    model = clap.model

    def keep(name, value):
        captured.setdefault(name, []).append(value.detach().clone())

    hooks = [
        model.frontend.register_forward_hook(lambda m, a, out: keep("logmel", out)),
        model.audio_encoder.patch_embed.register_forward_pre_hook(lambda m, a: keep("swin", a[0])),
        model.audio_projection.register_forward_pre_hook(lambda m, a: keep("htsat", a[0])),
    ]
    try:
        embedding = clap.embed_audio(waveform, clap.sample_rate)
    finally:
        for hook in hooks:
            hook.remove()
    out = {name: torch.cat(values) for name, values in captured.items()}
    out["embedding"] = embedding
    return out


@pytest.fixture(scope="module")
def audio_run(tiny, clap_fixtures):
    return _run_audio(tiny, clap_fixtures.cases["audio_waveform"])


@pytest.fixture(scope="module")
def short_run(tiny, clap_fixtures):
    return _run_audio(tiny, clap_fixtures.cases["audio_short_waveform"])


@pytest.mark.clap
def test_logmel(audio_run, short_run, clap_fixtures):
    for run, ref in ((audio_run, "audio_logmel"), (short_run, "audio_short_logmel")):
        expected = clap_fixtures.cases[ref]
        assert run["logmel"].shape == expected.shape, ref
        err = (run["logmel"] - expected).abs().max().item()
        assert err <= LOGMEL_DB, f"{ref}: {err:.3e} dB"


@pytest.mark.clap
def test_swin_input_and_htsat_embedding(audio_run, clap_fixtures):
    assert_intermediate(audio_run["swin"], clap_fixtures.cases["audio_swin_input"], "swin input")
    assert_intermediate(audio_run["htsat"], clap_fixtures.cases["audio_htsat_embedding"], "HTSAT embedding")


@pytest.mark.clap
def test_audio_embeddings(audio_run, clap_fixtures):
    out = audio_run["embedding"]
    assert out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(out.shape[0]), atol=1e-5)
    assert_embeddings(out, clap_fixtures.cases["audio_embedding"], "audio embedding")


@pytest.mark.clap
def test_short_clip_is_repeat_padded(tiny, short_run, clap_fixtures):
    short = clap_fixtures.cases["audio_short_waveform"]
    clip = clap_fixtures.readme["audio_cfg"]["clip_samples"]
    padded = tiny.prepare_audio(short, tiny.sample_rate)
    reps = clip // short.shape[-1]
    assert padded.shape == (short.shape[0], clip)
    assert torch.equal(padded[:, : reps * short.shape[-1]], short.repeat(1, reps))
    assert torch.count_nonzero(padded[:, reps * short.shape[-1] :]) == 0
    assert torch.equal(tiny.prepare_audio(short[0], tiny.sample_rate), padded)  # (L,) is one clip
    assert_embeddings(short_run["embedding"], clap_fixtures.cases["audio_short_embedding"], "short-clip embedding")


@pytest.mark.clap
def test_text_pooler_and_embeddings(tiny, clap_fixtures):
    prompts = clap_fixtures.readme["prompts"]
    ids, mask = tiny.tokenizer(prompts)
    with torch.no_grad():
        pooled = tiny.model.text_pooled(ids, mask)
    assert_intermediate(pooled, clap_fixtures.cases["text_pooler_output"], "text pooler output")
    assert_embeddings(tiny.embed_text(prompts), clap_fixtures.cases["text_embedding"], "text embedding")


@pytest.mark.clap
def test_text_cache_and_order(tiny, clap_fixtures):
    prompts = clap_fixtures.readme["prompts"]
    ref = clap_fixtures.cases["text_embedding"]
    tiny._cache.clear()
    order = [3, 1, 3, 0]
    out = tiny.embed_text([prompts[i] for i in order])
    assert len(tiny._cache) == 3
    assert_embeddings(out, ref[order], "reordered prompts with a duplicate")
    assert torch.equal(out[0], out[2])
    again = tiny.embed_text([prompts[1]])
    assert torch.equal(again[0], out[1])
    assert tiny.embed_text([]).shape == (0, tiny.dim)
    with pytest.raises(TypeError):  # a single string is a bug of the calling code
        tiny.embed_text("not a list")


@pytest.mark.clap
def test_downmix_and_resample(tiny, clap_fixtures):
    wave = clap_fixtures.cases["audio_waveform"][:1]
    stereo = torch.stack([wave, wave], dim=1)  # (1, 2, L): identical channels down-mix to the same clip
    assert torch.equal(tiny.prepare_audio(stereo, tiny.sample_rate), wave)
    half_rate = tiny.sample_rate // 2
    clips = tiny.prepare_audio(wave[:, ::2], half_rate)
    assert clips.shape == wave.shape
    with pytest.raises(ValueError):  # shapes no caller should pass: bugs, with their traceback
        tiny.prepare_audio(torch.zeros(1, 0), tiny.sample_rate)
    with pytest.raises(ValueError):
        tiny.prepare_audio(torch.zeros(1, 1, 1, 5), tiny.sample_rate)


@pytest.mark.clap
def test_long_clip_crop_is_seeded(tiny, clap_fixtures):
    waves = clap_fixtures.cases["audio_waveform"]
    long = torch.cat([waves, waves.flip(-1)], dim=-1)  # (3, 2*clip)
    clip = clap_fixtures.readme["audio_cfg"]["clip_samples"]
    a = tiny.prepare_audio(long, tiny.sample_rate, generator=torch.Generator().manual_seed(7))
    b = tiny.prepare_audio(long, tiny.sample_rate, generator=torch.Generator().manual_seed(7))
    c = tiny.prepare_audio(long, tiny.sample_rate, generator=torch.Generator().manual_seed(8))
    assert a.shape == (3, clip) and torch.equal(a, b) and not torch.equal(a, c)
    # without a generator, crop_seed decides: same input, same crop
    assert torch.equal(tiny.prepare_audio(long, tiny.sample_rate), tiny.prepare_audio(long, tiny.sample_rate))
    # every row is a contiguous window of its input
    for row, src in zip(a, long):
        start = int(torch.nonzero((src.unfold(0, clip, 1)[:, :8] == row[:8]).all(dim=1))[0])
        assert torch.equal(src[start : start + clip], row)


@pytest.mark.clap
def test_per_second_windows(tiny, clap_fixtures):
    waves = clap_fixtures.cases["audio_waveform"]
    sr = tiny.sample_rate
    clip = clap_fixtures.readme["audio_cfg"]["clip_samples"]
    track = torch.cat([waves[0], waves[1, : sr + sr // 2]])  # window + 1.5 s -> 1 window
    out = tiny.embed_audio_windows(track, sr)
    assert out.shape == (1, tiny.dim)
    assert_embeddings(out, clap_fixtures.cases["audio_embedding"][:1], "window 0")
    with pytest.raises(UserError, match="too short"):
        tiny.embed_audio_windows(track[: clip + sr // 2], sr)


def test_fit_to_clip_rules():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(1, 4, dtype=torch.float32)[None]  # length 3
    assert fit_to_clip(x, 8, g).tolist() == [[1, 2, 3, 1, 2, 3, 0, 0]]
    assert fit_to_clip(x, 3, g).tolist() == [[1, 2, 3]]
    x = torch.arange(10, dtype=torch.float32).repeat(50, 1)
    out = fit_to_clip(x, 4, torch.Generator().manual_seed(1))
    assert torch.equal(out[:, 1:] - out[:, :-1], torch.ones(50, 3))
    assert len(set(out[:, 0].tolist())) > 1  # per-row offsets
    assert torch.equal(out, fit_to_clip(x, 4, torch.Generator().manual_seed(1)))


@pytest.mark.clap
def test_bfloat16_model_keeps_float32_front_end(clap_fixtures):
    clap = LaionClap.from_config(tiny_config(clap_fixtures)).to(dtype=torch.bfloat16)
    assert clap.model.frontend.melW.dtype == torch.float32
    assert clap.model.dtype == torch.bfloat16
    out = clap.embed_text(clap_fixtures.readme["prompts"][:3])
    assert out.dtype == torch.float32
    cos = F.cosine_similarity(out, clap_fixtures.cases["text_embedding"][:3], dim=-1)
    assert cos.min().item() > 0.999


# ------------------------------------------------------------------ loader


@pytest.mark.clap
def test_loader_layouts_and_safetensors_round_trip(tiny, clap_fixtures, tmp_path):
    sizes = tiny.model.sizes
    raw = torch.load(clap_fixtures.path("tiny_clap.pt"), map_location="cpu", weights_only=True)
    ids, mask = tiny.tokenizer(clap_fixtures.readme["prompts"][:2])
    ref = tiny.model.embed_tokens(ids, mask)
    # without the module. prefix, with an optimizer entry, without the stray position_ids
    state = {k.removeprefix("module."): v for k, v in raw["state_dict"].items()}
    del state["text_branch.embeddings.position_ids"]
    torch.save({"epoch": 3, "optimizer": {"state": {}, "param_groups": []}, "state_dict": state}, tmp_path / "a.pt")
    model = load_clap(tmp_path / "a.pt", sizes)
    assert torch.equal(model.embed_tokens(ids, mask), ref)
    export_safetensors(model, tmp_path / "clap.safetensors")
    again = load_clap(tmp_path / "clap.safetensors", sizes)
    assert torch.equal(again.embed_tokens(ids, mask), ref)
    reference = tiny.model.state_dict()
    loaded = again.state_dict()
    assert set(loaded) == set(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def _one_line_user_error(call) -> str:
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message
    return message


@pytest.mark.clap
def test_loader_errors_are_one_line(tiny, clap_fixtures, tmp_path):
    sizes = tiny.model.sizes
    data = clap_fixtures.path("tiny_clap.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    assert "truncated" in _one_line_user_error(lambda: load_clap(tmp_path / "truncated.pt", sizes))
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 10)
    _one_line_user_error(lambda: load_clap(tmp_path / "noise.pt", sizes))
    torch.save({"epoch": 1, "weights": [1, 2]}, tmp_path / "foreign.pt")
    assert "state_dict" in _one_line_user_error(lambda: load_clap(tmp_path / "foreign.pt", sizes))
    torch.save({"state_dict": {"model_dit.x": torch.zeros(2)}}, tmp_path / "dit.pt")
    assert "LAION-CLAP" in _one_line_user_error(lambda: load_clap(tmp_path / "dit.pt", sizes))
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00")
    _one_line_user_error(lambda: load_clap(tmp_path / "bad.safetensors", sizes))
    _one_line_user_error(lambda: load_clap(tmp_path / "absent.pt", sizes))

    raw = torch.load(clap_fixtures.path("tiny_clap.pt"), map_location="cpu", weights_only=True)
    state = dict(raw["state_dict"])
    del state["module.audio_branch.norm.weight"]
    state["module.audio_branch.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "edited.pt")
    msg = _one_line_user_error(lambda: load_clap(tmp_path / "edited.pt", sizes))
    assert "1 missing (audio_encoder.norm.weight)" in msg and "1 unexpected (audio_branch.extra.weight)" in msg
    # a model of other sizes: mis-shaped keys
    other = dict(tiny_config(clap_fixtures)["text"], hidden_size=2 * sizes.text["hidden_size"])
    other_sizes = ClapSizes.from_mapping(tiny_config(clap_fixtures, text=other))
    assert "mis-shaped" in _one_line_user_error(lambda: load_clap(clap_fixtures.path("tiny_clap.pt"), other_sizes))


def test_config_errors(tmp_path):
    cfg = yaml.safe_load(FULL_YAML.read_text())["config"]
    assert "audio_embed_dim" in _one_line_user_error(
        lambda: ClapSizes.from_mapping(dict(cfg, audio_embed_dim=cfg["audio_embed_dim"] + 1))
    )
    assert "clap_ckpt_path" in _one_line_user_error(lambda: LaionClap.from_config(cfg))
    assert "ape" in _one_line_user_error(lambda: ClapSizes.from_mapping(dict(cfg, htsat=dict(cfg["htsat"], ape=True))))
    missing = {k: v for k, v in cfg.items() if k != "text"}
    assert "text" in _one_line_user_error(lambda: ClapSizes.from_mapping(missing))


def test_tokenizer_not_found_is_one_line(tmp_path, monkeypatch):
    assert "vocab.json" in _one_line_user_error(lambda: clap_tokenizer.load_roberta_tokenizer(tmp_path))
    monkeypatch.setattr(clap_tokenizer, "HF_REPO", "mgeldm-tests/no-such-tokenizer")
    monkeypatch.setattr(clap_tokenizer, "TOKENIZER_DIR", tmp_path / "no-such-folder")
    msg = _one_line_user_error(lambda: clap_tokenizer.load_roberta_tokenizer(None))
    assert "tokenizer_path" in msg and "Hugging Face cache" in msg and "no-such-folder" in msg


# ------------------------------------------------------------------ full-size layout (meta device)


def _tsv_shapes(tsv: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in tsv.read_text().splitlines()[1:]:
        if not line or line.startswith("#"):
            continue
        key, _dtype, shape = line.split("\t")
        shapes[key.removeprefix("module.")] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    return shapes


def test_full_size_keys_match_released_layout(reference_file):
    tsv = _tsv_shapes(reference_file("laion_clap_htsat_base_state_dict.tsv"))
    sizes = ClapSizes.from_mapping(yaml.safe_load(FULL_YAML.read_text())["config"])
    model = build_clap_model(sizes, "meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}

    mapped: dict[str, tuple[int, ...]] = {}
    for key, shape in tsv.items():
        targets = map_laion_key(key)
        reason = ignored_reason(key)
        assert bool(targets) != bool(reason), f"{key}: mapped={targets} ignored={reason}"
        for target, chunk in targets:
            expect = shape if chunk is None else (shape[0] // len(targets), *shape[1:])
            assert target not in mapped, f"{target} mapped twice"
            mapped[target] = expect
    for key, shape in ours.items():
        if key in DERIVED:
            continue
        assert key in mapped, f"model key {key} has no source in the released file"
        assert mapped[key] == shape, f"{key}: file gives {mapped[key]}, model has {shape}"
    assert set(mapped) <= set(ours), sorted(set(mapped) - set(ours))[:5]
    ignored = {k for k in tsv if ignored_reason(k)}
    assert {ignored_reason(k) for k in ignored} == set(IGNORED)
    assert len(ignored) == 2 + 8 + 4 + 8 + 1  # logit scales, transforms, tscam/head, 8 attn_masks, position_ids
    numel = lambda shape: int(torch.tensor(shape).prod()) if shape else 1  # noqa: E731
    used_in_file = sum(numel(shape) for key, shape in tsv.items() if not ignored_reason(key))
    assert used_in_file == sum(numel(ours[k]) for k in ours if k not in DERIVED)


def test_full_size_from_omegaconf():
    omegaconf = pytest.importorskip("omegaconf")
    node = omegaconf.OmegaConf.load(FULL_YAML)
    sizes = ClapSizes.from_mapping(node.config)
    model = build_clap_model(sizes, "meta")
    assert model.audio_projection[0].in_features == node.config.audio_embed_dim
    assert model.text_model.config.layer_norm_eps == node.config.text.layer_norm_eps
    assert model.audio_encoder.patch_embed.proj.stride == tuple(node.config.htsat.patch_stride)


def test_read_clap_file_strips_module_prefix(tmp_path):
    torch.save({"epoch": 1, "state_dict": {"module.logit_scale_a": torch.zeros(())}}, tmp_path / "x.pt")
    assert list(read_clap_file(tmp_path / "x.pt")) == ["logit_scale_a"]
