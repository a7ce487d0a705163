"""The five tasks and the Python API on the reference fixture's tiny MGE-LDM (loaded from its file)
with a small deterministic text conditioner: durations, CLAP placement, the given track, batching,
chunked decoding, seeds, outputs folder handling."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import mgeldm.tasks.tasks as tasks
from mgeldm.api import MGELDM
from mgeldm.errors import UserError
from mgeldm.inputs import compute_dtype, resolve_device, split_iter_prompts
from mgeldm.tasks.outputs import RunFolder, check_output_dir, slugify, unique_slugs


class HashConditioner:
    """Deterministic stand-in for CLAP: a unit vector seeded by the prompt's characters."""

    sample_rate = 8000

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def embed_text(self, texts):
        self.calls.append(list(texts))
        rows = []
        for t in texts:
            g = torch.Generator().manual_seed(sum((i + 1) * ord(c) for i, c in enumerate(t)) + 1)
            rows.append(torch.randn(self.dim, generator=g))
        v = torch.stack(rows)
        return v / v.norm(dim=-1, keepdim=True)

    def embed_audio(self, audio, sample_rate, *, generator=None):
        assert sample_rate == self.sample_rate
        v = torch.full((audio.shape[0], self.dim), 1.0) * audio.abs().mean(-1, keepdim=True).cpu()
        return v / v.norm(dim=-1, keepdim=True)

    def to(self, device=None, dtype=None):
        return self


@pytest.fixture(scope="module")
def model_cfg(reference_fixtures):
    rd = reference_fixtures.readme
    return {
        "sample_rate": rd["sample_rate"],
        "segment_length": 100,
        "pretransform": {**rd["pretransform"], "autoencoder": rd["autoencoder"]},
        "MGELDM": rd["mgeldm"],
    }


@pytest.fixture(scope="module")
def mge(reference_fixtures, model_cfg):
    cond = HashConditioner(reference_fixtures.readme["mgeldm"]["global_cond_dim"])
    return MGELDM.from_pretrained(
        reference_fixtures.path("tiny_mgeldm.ckpt"), conditioner=cond, device="cpu", model_config=model_cfg
    )


FAST = dict(steps=2, cfg_scale=2.0, overlap=0.1)


def _song(seconds: float, sr: int, channels: int = 2) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return torch.stack([0.3 * torch.sin(2 * math.pi * (200 + 50 * c) * t) for c in range(channels)])


@pytest.mark.reference
def test_total_gen_exact_duration_and_seed(mge):
    kw = {**FAST, "overlap": 0.3, "repaint_n": 2}  # overlap above half a window (difference 8 of docs/compatibility.md)
    mge.runner.timings = tasks.Timings()
    a = mge.generate("lo-fi beat", 0.45, seed=3, **kw)
    assert set(a) == {"gen_mix", "gen_submix", "gen_src"}
    assert all(v.shape == (1, round(0.45 * 16000)) for v in a.values())
    assert mge.timings.windows == 2  # 113 frames: [0, 100) then a right-aligned window of 13 new frames
    b = mge.generate("lo-fi beat", 0.45, seed=3, **kw)
    assert all(torch.equal(a[k], b[k]) for k in a)
    short = mge.generate(None, 0.1, seed=0, **FAST)  # shorter than one window: padded, then trimmed
    assert short["gen_src"].shape == (1, 1600)
    other = mge.generate(None, 0.1, seed=1, **FAST)
    assert not torch.equal(short["gen_mix"], other["gen_mix"])


@pytest.mark.reference
@pytest.mark.parametrize(
    "method,given_key,keys",
    [
        ("extract", "given_mix", {"gen_src", "gen_submix"}),
        ("add_part", "given_wav", {"gen_src", "gen_mix", "gen_mix_sum"}),
        ("accompany", "given_wav", {"gen_submix", "gen_mix"}),
    ],
)
@pytest.mark.parametrize("seconds", [0.15, 0.93])
def test_given_tasks_durations_and_given_unchanged(mge, method, given_key, keys, seconds):
    from mgeldm.audio import resample, to_mono

    song = _song(seconds, 44100)
    out = getattr(mge, method)(song, 44100, ["a", "b"], seed=0, **FAST)
    expected = resample(to_mono(song), 44100, 16000)
    assert set(out) == keys | {given_key}
    assert torch.equal(out[given_key], expected)  # the given audio comes back unchanged
    for k in keys:
        assert out[k].shape == (2, expected.shape[-1])
        assert torch.isfinite(out[k]).all()
    if method == "add_part":
        assert torch.allclose(out["gen_mix_sum"], expected + out["gen_src"])


@pytest.mark.reference
def test_api_takes_audio_as_sf_read_returns_it(mge):
    """(samples, channels), as ``sf.read`` returns it, is the same song as (channels, samples)."""
    song = _song(0.3, 44100)
    first = mge.extract(song, 44100, "x", seed=0, **FAST)
    as_read = mge.extract(song.T.numpy(), 44100, "x", seed=0, **FAST)
    assert first["gen_src"].shape == (1, round(0.3 * 16000))
    assert all(torch.equal(first[k], as_read[k]) for k in first)
    column = mge.extract(song[:1].T, 44100, "x", seed=0, **FAST)  # (L, 1)
    assert column["given_mix"].shape == (1, round(0.3 * 16000))
    for ambiguous in (torch.randn(4, 6), torch.randn(100, 200)):
        with pytest.raises(UserError, match="ambiguous"):
            mge.extract(ambiguous, 16000, "x", **FAST)


@pytest.mark.reference
def test_iterative_partial_generation(mge):
    song = _song(0.3, 16000, 1)[0]
    out = mge.add_parts_iteratively(song, 16000, "drums ; piano;bass", seed=0, **FAST)
    assert set(out) == {"gen_src_0", "gen_src_1", "gen_src_2", "gen_mix", "given_wav"}
    assert torch.equal(out["given_wav"][0], song)
    total = song + out["gen_src_0"][0] + out["gen_src_1"][0] + out["gen_src_2"][0]
    assert torch.allclose(out["gen_mix"][0], total, atol=1e-6)
    with pytest.raises(UserError, match="at least 2"):
        mge.add_parts_iteratively(song, 16000, "drums", **FAST)
    assert split_iter_prompts(" a ;b ") == ["a", "b"]


def _spy_dit(monkeypatch, mge):
    seen = []
    dit = mge.model.model_dit
    original = dit.forward

    def spy(x, t, global_embed, *args, **kwargs):
        seen.append((x.shape, t.clone(), global_embed.clone()))
        return original(x, t, global_embed, *args, **kwargs)

    monkeypatch.setattr(dit, "forward", spy)
    return seen


@pytest.mark.reference
@pytest.mark.parametrize(
    "task,text_track,given_track",
    [
        ("total_gen", 0, None),
        ("source_extract", 2, 0),
        ("partial_gen", 2, 1),
        ("accomp_gen", 1, 2),
        ("partial_gen_iter", 2, 1),
    ],
)
def test_condition_placement_and_given_time(mge, monkeypatch, task, text_track, given_track):
    seen = _spy_dit(monkeypatch, mge)
    prompts = "x; y" if task == "partial_gen_iter" else ["x", "y"]
    if task == "total_gen":
        mge.run(task, prompts=prompts, seconds=0.2, seed=0, **FAST)
    else:
        mge.run(task, prompts=prompts, audio=_song(0.2, 16000, 1), sr=16000, seed=0, **FAST)
    assert seen
    for shape, t, embed in seen:
        assert shape[-1] == mge.model.segment_length  # every window is a whole window
        others = [k for k in range(3) if k != text_track]
        assert embed[:, others].abs().max() == 0  # zeros on the other tracks
        assert (embed[:, text_track].norm(dim=-1) > 0.99).all()
        if given_track is None:
            assert (t == t[:, :1]).all()  # joint: one shared t
        else:
            assert (t[:, given_track] == 0).all() and (t[:, [k for k in range(3) if k != given_track]] > 0).all()


@pytest.mark.reference
def test_given_latent_stays_clean_and_mix_encoded_once(mge, monkeypatch):
    runner = mge.runner
    calls = []
    encode = mge.model.pretransform.encode

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return encode(*args, **kwargs)

    monkeypatch.setattr(mge.model.pretransform, "encode", counting)
    wave = _song(0.9, 16000, 1)[0]
    z = runner.encode(wave, None)
    assert (
        len(calls) == 1 and calls[0]["sample"] is False
    )  # the VAE mean by default (difference 3 of docs/compatibility.md)
    cond = mge.embed_prompts(["a", "b", "c"])
    frames = math.ceil(wave.numel() / runner.facts.ratio)
    settings = tasks.SamplingSettings(steps=2, cfg_scale=1.0, overlap=0.2, repaint_n=2)
    out = tasks.sample_latents(
        runner, tasks.TASKS["source_extract"], cond, settings, [torch.Generator().manual_seed(0)], [frames], [z]
    )[0]
    c = runner.model.io_channels
    assert out.shape == (3, 3 * c, z.shape[-1])
    assert torch.equal(out[:, :c], z.expand(3, -1, -1))  # given channels are the clean latent
    calls.clear()
    mge.extract(wave, 16000, ["a", "b", "c"], seed=0, **FAST)
    assert len(calls) == 1  # three prompts share one encoding of the mix


@pytest.mark.reference
def test_encode_sample_option(mge):
    wave = _song(0.3, 16000, 1)[0]
    runner = mge.runner
    runner.encode_sample = False
    mean_a, mean_b = runner.encode(wave, torch.Generator().manual_seed(0)), runner.encode(wave, None)
    runner.encode_sample = True
    try:
        sampled = runner.encode(wave, torch.Generator().manual_seed(0))
    finally:
        runner.encode_sample = False
    assert torch.equal(mean_a, mean_b) and not torch.equal(mean_a, sampled)


def _spy_vae(monkeypatch, pre):
    """Record the ``chunked`` argument of every VAE encode/decode call."""
    seen = []
    for name in ("encode", "decode"):
        original = getattr(pre, name)

        def spy(x, *, _original=original, _name=name, **kwargs):
            seen.append((_name, kwargs.get("chunked")))
            return _original(x, **kwargs)

        monkeypatch.setattr(pre, name, spy)
    return seen


@pytest.mark.reference
def test_vae_runs_in_one_pass_like_the_original(mge, monkeypatch):
    """Above the old 128-frame threshold the task's VAE passes are the direct one-pass encode/decode."""
    runner, pre = mge.runner, mge.model.pretransform
    frames = 2 * 128 + 7
    z = torch.randn(2, runner.model.io_channels, frames, generator=torch.Generator().manual_seed(0))
    samples = frames * runner.facts.ratio - 5
    with torch.inference_mode():
        whole = torch.cat([pre.decode(z[i : i + 1], chunked=False) for i in range(2)]).reshape(2, -1)[:, :samples]
    assert torch.equal(runner.decode(z, samples), whole)
    wave = _song(frames * runner.facts.ratio / runner.facts.sample_rate, runner.facts.sample_rate, 1)[0]
    with torch.inference_mode():
        direct = pre.encode(wave.reshape(1, 1, -1), sample=False, chunked=False)
    assert torch.equal(runner.encode(wave, None), direct)

    seen = _spy_vae(monkeypatch, pre)
    mge.extract(wave, runner.facts.sample_rate, "x", seed=0, **FAST)
    assert seen and all(chunked is False for _, chunked in seen), seen


@pytest.mark.reference
def test_vae_chunks_beyond_the_limit_or_on_request(mge, monkeypatch):
    runner, pre = mge.runner, mge.model.pretransform
    limit = math.floor(tasks.WHOLE_PASS_MAX_SECONDS * runner.facts.frame_rate)
    assert tasks.WHOLE_PASS_MAX_SECONDS == 600.0  # documented in the README: 10 minutes on every machine
    assert not runner.use_chunks(limit) and runner.use_chunks(limit + 1)
    monkeypatch.setattr(pre, "chunked", True)  # model.pretransform.chunked=true still asks for chunks
    assert runner.use_chunks(10)
    monkeypatch.setattr(pre, "chunked", False)

    frames = 2 * 128 + 7
    z = torch.randn(1, runner.model.io_channels, frames, generator=torch.Generator().manual_seed(1))
    whole = runner.decode(z, frames * runner.facts.ratio)
    chunked = MGELDM(mge.model, mge.conditioner, device="cpu", chunked=True)
    seen = _spy_vae(monkeypatch, pre)
    audio = chunked.runner.decode(z, frames * runner.facts.ratio)
    assert seen == [("decode", True)] and audio.shape == whole.shape and not torch.equal(audio, whole)
    assert not MGELDM(mge.model, mge.conditioner, device="cpu", chunked=False).runner.use_chunks(limit + 1)
    with pytest.raises(UserError, match=r"^chunked=maybe: expected true, false or auto$"):
        MGELDM(mge.model, mge.conditioner, device="cpu", chunked="maybe")


@pytest.mark.reference
def test_query_by_example_and_precision(mge, monkeypatch, reference_fixtures, model_cfg):
    seen = _spy_dit(monkeypatch, mge)
    query = (_song(0.5, 44100, 1), 44100)
    out = mge.run("source_extract", query=query, audio=_song(0.2, 16000, 1), sr=16000, seed=0, **FAST)
    expected = mge.embed_audio(*query)
    assert torch.allclose(seen[0][2][0, 2], expected[0])
    assert out["gen_src"].shape == (1, 3200)
    from mgeldm.models.mgeldm import load_mgeldm

    model = load_mgeldm(reference_fixtures.path("tiny_mgeldm.ckpt"), model_cfg)
    bf16 = MGELDM(model, mge.conditioner, device="cpu", precision="bf16")
    assert next(bf16.model.model_dit.parameters()).dtype == torch.bfloat16
    res = bf16.generate("x", 0.2, seed=0, **FAST)
    ref = mge.generate("x", 0.2, seed=0, **FAST)
    assert torch.isfinite(res["gen_mix"]).all() and res["gen_mix"].shape == ref["gen_mix"].shape


def test_device_and_precision_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type in ("cpu", "mps")
    assert resolve_device("cpu").type == "cpu"
    for bad in ("cuda", "tpu"):
        with pytest.raises(UserError, match=r"^device=(cuda|tpu): "):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    assert compute_dtype("bf16") is torch.bfloat16 and compute_dtype("fp32") is None
    with pytest.raises(UserError, match=r"^precision=int8: expected one of fp32, bf16, fp16$"):
        compute_dtype("int8")


@pytest.mark.reference
def test_bad_api_inputs(mge):
    with pytest.raises(UserError, match="silence"):
        mge.extract(torch.zeros(1000), 16000, "x", **FAST)
    with pytest.raises(UserError, match="NaN"):
        mge.extract(torch.full((1000,), float("nan")), 16000, "x", **FAST)
    with pytest.raises(UserError, match="not a string"):
        mge.extract(_song(0.2, 16000), 16000, [3], **FAST)
    with pytest.raises(UserError, match="^steps=0: expected an integer >= 1$"):
        mge.generate("x", 1.0, steps=0)
    with pytest.raises(UserError, match="^seconds=-1.0: "):
        mge.generate("x", -1.0, **FAST)
    frame_s = mge.runner.facts.ratio / mge.sample_rate  # one latent frame: 4 ms for the tiny VAE
    for too_short in (0.00001, frame_s * 0.9):
        with pytest.raises(UserError, match=r"^seconds=.*one latent frame"):
            mge.generate(None, too_short, **FAST)
    assert mge.generate(None, frame_s, seed=0, **FAST)["gen_mix"].shape == (1, mge.runner.facts.ratio)
    with pytest.raises(UserError, match="^overlap=0.5: .* not shorter than one window"):
        mge.generate("x", 1.0, steps=2, overlap=0.5)
    with pytest.raises(UserError, match="unknown task"):
        mge.run("separate")


# ---------------------------------------------------------------------------------------------
# samplers and several songs in one batch


@pytest.mark.reference
@pytest.mark.parametrize("sampler,calls_per_window", [("ddim", 3), ("dpmpp_2m", 3), ("heun", 5)])
def test_sampler_option(mge, monkeypatch, sampler, calls_per_window):
    seen = _spy_dit(monkeypatch, mge)
    song = _song(0.3, 16000, 1)
    mge.runner.timings = tasks.Timings()
    out = mge.extract(song, 16000, "x", seed=0, steps=3, cfg_scale=2.0, overlap=0.1, sampler=sampler)
    assert len(seen) == calls_per_window == mge.timings.model_calls  # 0.3 s is one window
    assert all((t[:, tasks.MIX] == 0).all() for _, t, _ in seen)  # the given mix is clean at every call
    assert torch.isfinite(out["gen_src"]).all()
    if sampler != "ddim":
        ddim = mge.extract(song, 16000, "x", seed=0, steps=3, cfg_scale=2.0, overlap=0.1)
        assert not torch.allclose(out["gen_src"], ddim["gen_src"])


@pytest.mark.reference
def test_sampler_option_refusals(mge):
    song = _song(0.2, 16000, 1)
    with pytest.raises(UserError, match=r"^sampler=euler: expected one of ddim, dpmpp_2m, heun$"):
        mge.extract(song, 16000, "x", sampler="euler", **FAST)
    # accomp_gen's default repaint_n is 2 (the original's script): the ODE solvers refuse it in one line.
    with pytest.raises(UserError, match=r"^repaint_n=2: RePaint .* sampler=ddim"):
        mge.accompany(song, 16000, "x", sampler="dpmpp_2m", **FAST)
    with pytest.raises(UserError, match=r"^eta=0.5: .*sampler=ddim"):
        mge.extract(song, 16000, "x", sampler="heun", eta=0.5, **FAST)
    out = mge.accompany(song, 16000, "x", sampler="dpmpp_2m", repaint_n=1, seed=0, **FAST)
    assert out["gen_mix"].shape == (1, 3200)
    with pytest.raises(TypeError, match="unknown sampling parameters"):  # a misspelt keyword is a bug
        mge.extract(song, 16000, "x", samplr="heun")


# Three lengths: window k of the songs has overlaps 0/0/0, then 25 (0.93 s) and 50 (0.6 s), then 42 (0.93 s only).
SONG_SECONDS = (0.93, 0.3, 0.6)


@pytest.mark.reference
@pytest.mark.parametrize("sampler,repaint_n", [("ddim", 2), ("dpmpp_2m", 1)])
def test_songs_in_one_batch_equal_one_song_at_a_time(mge, sampler, repaint_n):
    songs = [_song(s, 16000, 1)[0] * (1 + i) for i, s in enumerate(SONG_SECONDS)]
    kw = dict(steps=3, cfg_scale=2.0, overlap=0.1, repaint_n=repaint_n, sampler=sampler)
    mge.runner.timings = tasks.Timings()
    alone = [mge.extract(song, 16000, ["a", "b"], seed=10 + i, **kw) for i, song in enumerate(songs)]
    calls_alone = mge.timings.model_calls
    mge.runner.timings = tasks.Timings()
    batched = mge.extract_songs(songs, 16000, ["a", "b"], seeds=[10, 11, 12], **kw)
    assert mge.last_seeds == [10, 11, 12]
    assert mge.timings.windows == 3 + 1 + 2  # every window of every song, once
    assert mge.timings.model_calls < calls_alone  # windows shared batches
    assert len(batched) == len(songs)
    for one, many in zip(alone, batched):
        assert set(one) == set(many)
        for key in one:
            _assert_same_up_to_round_off(many[key], one[key])
    # A song's result depends on its own seed only, not on its neighbours.
    swapped = mge.extract_songs(songs[::-1], 16000, ["a", "b"], seeds=[12, 11, 10], **kw)
    _assert_same_up_to_round_off(swapped[2]["gen_src"], batched[0]["gen_src"])
    other_seed = mge.extract_songs(songs[:1], 16000, ["a", "b"], seeds=[99], **kw)
    assert (other_seed[0]["gen_src"] - batched[0]["gen_src"]).abs().max() > 0.1 * batched[0]["gen_src"].abs().max()


def _assert_same_up_to_round_off(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float round-off: batched matmuls of another batch size may round differently, and the
    tiny random model's steps and decoder amplify it (to about 1e-5 of its outputs' scale, which is ~1e3)."""
    assert a.shape == b.shape
    assert (a - b).abs().max() <= 1e-4 * max(1.0, b.abs().max().item())


@pytest.mark.reference
@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "heun"])
def test_sampling_reads_no_tensor_value_on_the_host(model_cfg, monkeypatch, sampler):
    """The window loop, the samplers and the DiT run on meta tensors, which have no values: any read on the
    host (``.item()``, ``float(t)``, ``if t``, ``.cpu()``), a host sync per step on a GPU, would raise here."""
    from mgeldm.models.mgeldm import build_mgeldm

    autocast_enabled = torch.is_autocast_enabled
    monkeypatch.setattr(
        torch, "is_autocast_enabled", lambda *a: False if a and a[0] == "meta" else autocast_enabled(*a)
    )
    with torch.device("meta"):
        model = build_mgeldm(model_cfg).eval()
    runner = tasks.TaskRunner(model, device=torch.device("meta"))
    c = runner.model.io_channels
    settings = tasks.SamplingSettings(4, 3.0, 0.1, 1, eta=0.0, sampler=sampler)
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    zs = tasks.sample_latents(
        runner,
        tasks.TASKS["source_extract"],
        torch.randn(2, runner.model.cond_dim),
        settings,
        gens,
        [250, 130],
        [torch.randn(1, c, 250), torch.randn(1, c, 130)],
    )
    assert [z.shape for z in zs] == [(2, 3 * c, 250), (2, 3 * c, 130)] and zs[0].is_meta
    if sampler == "ddim":  # the stochastic paths too: eta noise, overlap noise, RePaint
        z = tasks.sample_latents(
            runner,
            tasks.TASKS["total_gen"],
            torch.randn(1, runner.model.cond_dim),
            tasks.SamplingSettings(3, 3.0, 0.1, 2, eta=0.5),
            gens[:1],
            [250],
        )[0]
        assert z.is_meta and z.shape == (1, 3 * c, 250)


@pytest.mark.reference
def test_latent_extraction_of_several_mixes_in_one_batch(mge):
    c = mge.runner.model.io_channels
    mixes = [torch.randn(c, f, generator=torch.Generator().manual_seed(f)) for f in (130, 100, 260)]
    kw = dict(steps=2, cfg_scale=2.0, overlap=0.1)
    alone = [mge.extract_latents(z, ["a"], seed=i, **kw) for i, z in enumerate(mixes)]
    batched = mge.extract_latents_songs(mixes, ["a"], seeds=[0, 1, 2], **kw)
    for one, many, z in zip(alone, batched, mixes):
        assert many.shape == (1, c, z.shape[-1])
        _assert_same_up_to_round_off(many, one)


@pytest.mark.reference
def test_bad_song_batches(mge):
    song = _song(0.2, 16000, 1)[0]
    with pytest.raises(UserError, match="2 songs need 2 seeds"):
        mge.extract_songs([song, song], 16000, "x", seeds=[1], **FAST)
    with pytest.raises(UserError, match=r"^task=total_gen: several songs"):
        mge.run_songs("total_gen", [song], 16000, prompts="x")
    with pytest.raises(UserError, match=r"^songs\[1\]: is digital silence"):
        mge.extract_songs([song, torch.zeros(100)], 16000, "x", seeds=[1, 2], **FAST)
    with pytest.raises(UserError, match="no songs"):
        mge.extract_songs([], 16000, "x")


# ---------------------------------------------------------------------------------------------
# output folders


def test_slugs_are_safe_and_bounded():
    assert slugify("../../etc/passwd") == "etc_passwd"
    assert slugify("The sound of the Drums.") == "the_sound_of_the_drums"
    assert slugify("café — guitarra española") == "cafe_guitarra_espanola"
    assert slugify("") == "prompt" and slugify("///") == "prompt"
    assert len(slugify("a" * 500)) <= 48
    assert unique_slugs(["x", "X", "y"]) == ["x", "x_2", "y"]
    for s in (slugify(".."), slugify("a/b\\c"), slugify("-rf")):
        assert "/" not in s and "\\" not in s and ".." not in s and not s.startswith("-")


def test_run_folders_are_atomic_and_never_shared(tmp_path):
    def publish(i, results):
        with RunFolder(tmp_path, "src_extract") as f:
            f.write_text(("prompt.txt",), str(i))
            results.append(f.commit())

    results: list = []
    threads = [threading.Thread(target=publish, args=(i, results)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = sorted(p.name for p in results)
    assert names == [f"output_{i:04d}" for i in range(8)]
    assert sorted(p.read_text() for p in (tmp_path / "src_extract").glob("output_*/prompt.txt")) == [
        str(i) for i in range(8)
    ]
    assert not [p for p in (tmp_path / "src_extract").iterdir() if p.name.startswith(".")]

    with pytest.raises(RuntimeError):
        with RunFolder(tmp_path / "new", "total_gen") as f:
            f.write_text(("prompt.txt",), "x")
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()  # nothing left behind


def test_partial_folders_of_dead_runs_are_removed(tmp_path):
    """A run killed with SIGKILL leaves its hidden folder; the next run removes it (and only such folders)."""
    code = (
        "import os, signal, sys\nfrom mgeldm.tasks.outputs import RunFolder\n"
        "with RunFolder(sys.argv[1], 'total_gen') as f:\n"
        "    f.write_text(('prompt.txt',), 'x')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=repo,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": repo},
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    parent = tmp_path / "total_gen"
    (stale,) = [p for p in parent.iterdir() if p.name.startswith(".partial_output_")]
    assert stale.name.startswith(f".partial_output_{proc.pid}.")
    host = stale.name.split(".")[2]
    kept = [
        parent / f".partial_output_{os.getpid()}.{host}.live",  # a live run of this host
        parent / f".partial_output_{proc.pid}.{host}x.other",  # a run of another host (shared disk)
        parent / ".partial_output_oldstyle",
    ]  # no owner recorded
    for folder in kept:
        folder.mkdir()
    with RunFolder(tmp_path, "total_gen") as f:
        f.write_text(("prompt.txt",), "y")
        final = f.commit()
    assert not stale.exists() and all(p.exists() for p in kept)
    assert final.name == "output_0000" and (final / "prompt.txt").read_text() == "y"


def test_output_dir_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="output_dir"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(UserError, match="output_dir"):
        check_output_dir(tmp_path / "file" / "sub")
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    assert check_output_dir(tmp_path / "a", "src_extract") == tmp_path / "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe folders and file are gone


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_output_dir_that_cannot_be_created_is_refused_before_any_work():
    """/proc passes a writability check (os.access, for root) but refuses new folders: the check creates them."""
    for target in ("/proc/mgeldm_test_out", "/proc/mgeldm_test_out/sub"):
        with pytest.raises(UserError, match=r"^output_dir=/proc/mgeldm_test_out.*cannot create"):
            check_output_dir(target, "src_extract")
    with pytest.raises(UserError, match="cannot create"):
        RunFolder("/proc/mgeldm_test_out", "src_extract").__enter__()


def test_readme_api_snippet_defines_every_name():
    """The README's Python API example runs as written: every name is defined before use, every method exists."""
    import ast
    import builtins
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme.split("### Python API", 1)[1], re.S).group(1)
    defined = set(dir(builtins))
    for stmt in ast.parse(code).body:
        nodes = list(ast.walk(stmt))
        used = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert used <= defined, f"{ast.unparse(stmt)!r} uses undefined {sorted(used - defined)}"
        defined |= {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        defined |= {
            a.asname or a.name.split(".")[0]
            for n in nodes
            if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in n.names
        }
        for n in nodes:
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "m":
                assert hasattr(MGELDM, n.attr), f"MGELDM has no {n.attr}"


def test_default_model_config_and_clap_path():
    from mgeldm.model_config import conditioner_ckpt, default_model_config, with_conditioner_ckpt

    cfg = default_model_config()  # configs/dit.yaml's model node, as infer.py composes it
    assert cfg["segment_length"] > 0 and cfg["MGELDM"]["num_tracks"] == 3
    default = "checkpoints/music_audioset_epoch_15_esc_90.14.pt"  # configs/dit.yaml's clap_ckpt_path
    assert conditioner_ckpt(cfg) == default
    moved = with_conditioner_ckpt(cfg, "/x/clap.pt")
    assert conditioner_ckpt(moved) == "/x/clap.pt" and conditioner_ckpt(cfg) == default


@pytest.mark.slow
@pytest.mark.reference
def test_compiled_dit_matches_eager(mge):
    """``compile=True`` (torch.compile; CUDA graphs on CUDA) gives the eager result."""
    song = _song(0.5, 16000, 1)[0]
    eager = mge.extract(song, 16000, ["a", "b"], seed=0, **FAST)
    compiled = MGELDM(mge.model, mge.conditioner, device="cpu", compile=True)
    out = compiled.extract(song, 16000, ["a", "b"], seed=0, **FAST)
    assert compiled.runner._compiled is not None
    for key in eager:
        scale = max(1.0, eager[key].abs().max().item())
        assert (out[key] - eager[key]).abs().max().item() <= 1e-4 * scale, key


@pytest.mark.reference
def test_progress_counts_windows_times_steps_and_a_cancel_stops_the_run(mge):
    """``on_progress(done, total)`` after every sampling step (windows x denoiser calls per song), the same result
    as without it; ``should_cancel`` stops between two steps with Cancelled and leaves no hook behind."""
    from mgeldm.diffusion.windows import plan_windows
    from mgeldm.errors import Cancelled, OptionError
    from mgeldm.tasks.windowing import overlap_frames

    facts = mge.runner.facts
    wave = _song(2.5 * facts.window_seconds, mge.sample_rate, 1)[0]
    overlap = overlap_frames(FAST["overlap"], facts.frame_rate, facts.window)

    def windows(samples: int) -> int:
        return len(plan_windows(math.ceil(samples / facts.ratio), facts.window, overlap))

    seen: list[tuple[int, int]] = []
    out = mge.extract(wave, mge.sample_rate, ["a", "b"], seed=0, on_progress=lambda d, t: seen.append((d, t)), **FAST)
    total = windows(wave.numel()) * FAST["steps"]
    assert seen == [(d, total) for d in range(1, total + 1)] and windows(wave.numel()) == 3
    assert torch.equal(out["gen_src"], mge.extract(wave, mge.sample_rate, ["a", "b"], seed=0, **FAST)["gen_src"])
    seen.clear()
    short = wave[: facts.window * facts.ratio]
    mge.extract_songs(
        [wave, short], mge.sample_rate, "a", seeds=[0, 1], on_progress=lambda d, t: seen.append((d, t)), **FAST
    )
    assert seen[-1] == (total + FAST["steps"], total + FAST["steps"]) and len(seen) < total + FAST["steps"]
    seen.clear()
    mge.add_parts_iteratively(
        short, mge.sample_rate, "a; b", seed=0, on_progress=lambda d, t: seen.append((d, t)), **FAST, repaint_n=2
    )
    assert seen[-1] == (2 * ((FAST["steps"] - 1) * 2 + 1),) * 2  # two prompts, RePaint on the given track
    asked = []
    with pytest.raises(Cancelled, match=f"cancelled after 2 of {total} sampling steps"):
        mge.extract(
            wave, mge.sample_rate, "a", seed=0, should_cancel=lambda: asked.append(1) or len(asked) >= 2, **FAST
        )
    assert mge.runner.step_hook is None
    with pytest.raises(OptionError, match="on_progress=3: expected a function"):
        mge.extract(wave, mge.sample_rate, "a", on_progress=3, **FAST)
