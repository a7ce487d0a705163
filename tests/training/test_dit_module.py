"""The DiT recipe (docs/compatibility.md#dit-training): masking, timestep dropout, CFG dropout, blending, mix-only fix,
skip logic."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mgeldm.diffusion.schedule import alpha_sigma
from mgeldm.training.dit_module import DiTTrainingModule, NonFiniteLossError
from mgeldm.training.losses import masked_mse

_spec = importlib.util.spec_from_file_location("training_conftest", Path(__file__).with_name("conftest.py"))
_h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_h)


def _module(cfg, **recipe):
    m = DiTTrainingModule(_h.DiTOnly(cfg), recipe)
    m.setup_rng("cpu")
    return m


def test_mixture_only_masks_source_loss_and_zeroes_its_condition(tiny_cfg):
    cond = _h.FakeConditioner(tiny_cfg["global_cond_dim"])
    m = DiTTrainingModule(
        _h.DiTOnly(tiny_cfg),
        {"mixture_only_pretraining": True, "timestep_dropout_prob": 0.0, "cfg_dropout_prob": 0.0},
        conditioner=cond,
    )
    m.setup_rng("cpu")
    batch = _h.make_batch(tiny_cfg, mix_only=True)
    out = m.compute_loss(batch)
    out["v_hat"].retain_grad()
    out["loss"].backward()
    c = tiny_cfg["io_channels"]
    grad = out["v_hat"].grad
    assert grad[:, 2 * c :].abs().max().item() == 0.0  # source track: no gradient from the loss
    assert grad[:, : 2 * c].abs().min().item() > 0.0  # mix and submix: trained
    assert torch.all(out["cond"][:, 2] == 0)  # zeros, not CLAP("")
    assert torch.all(out["mask"][:, 2] == 0) and torch.all(out["mask"][:, :2] == 1)


def test_without_mixture_only_the_source_is_trained(tiny_cfg):
    m = _module(tiny_cfg, timestep_dropout_prob=0.0, cfg_dropout_prob=0.0)
    out = m.compute_loss(_h.make_batch(tiny_cfg, mix_only=True))
    out["v_hat"].retain_grad()
    out["loss"].backward()
    c = tiny_cfg["io_channels"]
    assert out["v_hat"].grad[:, 2 * c :].abs().min().item() > 0.0


def test_empty_prompt_uses_audio_clap_only(tiny_cfg):
    cond = _h.FakeConditioner(tiny_cfg["global_cond_dim"])
    m = DiTTrainingModule(_h.DiTOnly(tiny_cfg), {"cfg_dropout_prob": 0.0}, conditioner=cond)
    m.setup_rng("cpu")
    batch = _h.make_batch(tiny_cfg, mix_only=True)  # src prompts "" and src_clap = 0
    assert torch.all(m.assemble_conditioning(batch)[:, 2] == 0)
    assert cond.calls == []  # CLAP("") is never embedded


def test_loss_is_masked_v_objective(tiny_cfg):
    m = _module(tiny_cfg, timestep_dropout_prob=0.75, cfg_dropout_prob=0.0)
    batch = _h.make_batch(tiny_cfg, b=8)
    out = m.compute_loss(batch)
    z0 = m.latents(batch)
    t = out["t"]
    a, s = alpha_sigma(t.repeat_interleave(tiny_cfg["io_channels"], dim=1)[..., None])
    # z0 = α z_t − σ v and the loss is the masked MSE of v
    torch.testing.assert_close(a * out["z_t"] - s * out["v"], z0, atol=1e-5, rtol=1e-5)
    assert out["loss"].item() == pytest.approx(masked_mse(out["v_hat"], out["v"], out["mask"], 3).item(), rel=1e-6)
    assert torch.all(t >= 0)


def test_timestep_dropout_clamps_exactly_one_track(tiny_cfg):
    m = _module(tiny_cfg, timestep_dropout_prob=1.0)
    t, mask = m.draw_timesteps(300)
    zero = t == 0
    assert torch.all(zero.sum(1) == 1)  # exactly one given track per sample
    assert torch.equal(zero, mask == 0)  # its loss is masked
    others = t[~zero].view(300, 2)
    assert torch.all(others[:, 0] == others[:, 1]) and torch.all(others >= 0.02)
    counts = zero.sum(0).float() / 300
    assert torch.all((counts > 0.25) & (counts < 0.42))  # uniform over the three tracks
    m0 = _module(tiny_cfg, timestep_dropout_prob=0.0)
    t0, mask0 = m0.draw_timesteps(200)
    assert torch.all(mask0 == 1) and torch.all(t0 == t0[:, :1]) and torch.all(t0 >= 0.02)
    mp = _module(tiny_cfg, timestep_dropout_prob=0.75)
    tp, _ = mp.draw_timesteps(4000)
    frac = (tp == 0).any(1).float().mean().item()
    assert 0.72 < frac < 0.78


def test_given_track_is_fed_clean(tiny_cfg):
    m = _module(tiny_cfg, timestep_dropout_prob=1.0, cfg_dropout_prob=0.0)
    batch = _h.make_batch(tiny_cfg, b=6)
    out = m.compute_loss(batch)
    z0, c = m.latents(batch), tiny_cfg["io_channels"]
    for i in range(6):
        k = int((out["t"][i] == 0).nonzero()[0, 0])
        assert torch.equal(out["z_t"][i, k * c : (k + 1) * c], z0[i, k * c : (k + 1) * c])


def test_cfg_dropout_zeroes_whole_track_vectors(tiny_cfg):
    batch = _h.make_batch(tiny_cfg, b=8)
    full = _module(tiny_cfg, cfg_dropout_prob=1.0).compute_loss(batch)["cond"]
    assert torch.all(full == 0)
    none = _module(tiny_cfg, cfg_dropout_prob=0.0).compute_loss(batch)["cond"]
    assert torch.all(none.abs().sum(-1) > 0)
    m = _module(tiny_cfg, cfg_dropout_prob=0.4)
    big = _h.make_batch(tiny_cfg, b=512)
    cond = m.compute_loss(big)["cond"]
    dropped = cond.abs().sum(-1) == 0  # (B, K)
    assert 0.35 < dropped.float().mean().item() < 0.45
    kept = ~dropped
    ref = m.assemble_conditioning(big)  # different blend draw, but mix/submix vectors are fixed
    assert torch.equal(cond[:, :2][kept[:, :2]], ref[:, :2][kept[:, :2]])
    # eval mode: no dropout
    m.eval()
    assert torch.all(m.compute_loss(batch)["cond"].abs().sum(-1) > 0)


@pytest.mark.parametrize("per_batch", [False, True])
def test_audio_text_blend_per_sample_or_per_batch(tiny_cfg, per_batch):
    g = tiny_cfg["global_cond_dim"]

    class Basis(_h.FakeConditioner):
        def embed_text(self, texts):
            return torch.eye(g)[1].expand(len(texts), g).clone()

    m = DiTTrainingModule(_h.DiTOnly(tiny_cfg), {"blend_per_batch": per_batch}, conditioner=Basis(g))
    m.setup_rng("cpu")
    batch = _h.make_batch(tiny_cfg, b=16)
    batch["src_clap"] = torch.eye(g)[0].expand(16, g).clone()
    src = m.assemble_conditioning(batch)[:, 2]
    w_a, w_t = src[:, 0], src[:, 1]
    torch.testing.assert_close(w_a + w_t, torch.ones(16))
    assert torch.all(src[:, 2:] == 0)
    if per_batch:
        assert torch.allclose(w_a, w_a[:1].expand(16))
    else:
        assert w_a.std().item() > 0.05
    torch.testing.assert_close(m.assemble_conditioning(batch)[:, 0], batch["mix_clap"])


def test_nonfinite_loss_skips_and_stops(tiny_cfg):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    batch = _h.make_batch(tiny_cfg, b=2)
    batch["mix_latent"][0, 0, 0] = float("nan")
    m = DiTTrainingModule(_h.DiTOnly(tiny_cfg), {"max_nonfinite_steps": 3})
    before = {k: v.clone() for k, v in m.diffusion.state_dict().items()}
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(NonFiniteLossError, match="3 steps in a row"):
        trainer.fit(m, DataLoader([batch] * 10, batch_size=None, collate_fn=lambda x: x))
    assert m.nonfinite_total == 3
    after = m.diffusion.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_activation_checkpointing_switch_gives_same_gradients(tiny_cfg):
    batch = _h.make_batch(tiny_cfg, b=4)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        m = _module(tiny_cfg, activation_checkpointing=ckpt)
        assert m.diffusion.model_dit.gradient_checkpointing is ckpt
        m.compute_loss(batch)["loss"].backward()
        grads.append([p.grad.clone() for p in m.diffusion.model_dit.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_rank_seed_depends_on_rank(tiny_cfg):
    from types import SimpleNamespace

    m = _module(tiny_cfg, seed=5)
    assert m.rank_seed == 5
    m._trainer = SimpleNamespace(global_rank=3)
    assert m.rank_seed == 5 + 3000


# ----------------------------------------------------------------------------- task_mix (the task patterns)


@pytest.mark.parametrize(
    "pattern, given, kept", [("extract", 0, 2), ("partial", 1, 2), ("accomp", 2, 1), ("total", None, 0)]
)
def test_task_pattern_gives_its_track_and_keeps_only_its_condition(tiny_cfg, pattern, given, kept):
    cond = _h.FakeConditioner(tiny_cfg["global_cond_dim"])
    m = DiTTrainingModule(_h.DiTOnly(tiny_cfg), {"task_mix": {pattern: 1.0}, "cfg_dropout_prob": 0.0}, conditioner=cond)
    m.setup_rng("cpu")
    out = m.compute_loss(_h.make_batch(tiny_cfg, b=8))
    t, mask, c = out["t"], out["mask"], out["cond"]
    others = [k for k in range(3) if k != given]
    if given is not None:
        assert torch.all(t[:, given] == 0) and torch.all(mask[:, given] == 0)
    assert torch.all(t[:, others] > 0) and torch.all(mask[:, others] == 1)
    assert torch.all(c[:, [k for k in range(3) if k != kept]] == 0)  # only the prompted track is conditioned
    assert torch.all(c[:, kept].abs().sum(-1) > 0)


def test_task_pattern_condition_dropout_gives_the_unconditional_case(tiny_cfg):
    m = _module(tiny_cfg, task_mix={"extract": 1.0}, cfg_dropout_prob=0.5)
    out = m.compute_loss(_h.make_batch(tiny_cfg, b=64))
    dropped = (out["cond"][:, 2].abs().sum(-1) == 0).float().mean().item()
    assert 0.3 < dropped < 0.7
    m.diffusion.model_dit.eval()  # evaluation never drops
    out = m.compute_loss(_h.make_batch(tiny_cfg, b=64))
    assert torch.all(out["cond"][:, 2].abs().sum(-1) > 0)


def test_task_mix_draws_patterns_in_proportion(tiny_cfg):
    m = _module(tiny_cfg, task_mix={"extract": 3.0, "total": 1.0}, cfg_dropout_prob=0.0)
    given, keep, _ = m.draw_task_patterns(4000)
    extract = given[:, 0].float().mean().item()
    assert abs(extract - 0.75) < 0.03
    assert torch.all(given[:, 1:] == 0)  # no other track is ever given
    assert torch.equal(keep[:, 2], given[:, 0]) and torch.equal(keep[:, 0], ~given[:, 0])


def test_original_pattern_is_the_original_draw(tiny_cfg):
    m = _module(tiny_cfg, task_mix={"original": 1.0}, timestep_dropout_prob=0.75, cfg_dropout_prob=0.4)
    given, keep, drop = m.draw_task_patterns(4000)
    assert abs(given.any(1).float().mean().item() - 0.75) < 0.03  # one given track in 75 % of samples
    assert torch.all(given.sum(1) <= 1) and torch.all(keep)
    assert abs(drop.float().mean().item() - 0.4) < 0.03  # each condition dropped alone


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"extract": -1}, "number >= 0"),
        ({"extrct": 1}, "unknown pattern"),
        ({"extract": 0}, "sum to 0"),
        ([1, 2], "mapping"),
        ({"extract": True}, "number >= 0"),
    ],
)
def test_task_mix_refuses_bad_values(tiny_cfg, bad, match):
    from mgeldm.errors import UserError

    with pytest.raises(UserError, match=match):
        _module(tiny_cfg, task_mix=bad)


def test_task_mix_refused_with_mixture_only_pretraining(tiny_cfg):
    from mgeldm.errors import UserError

    with pytest.raises(UserError, match="mixture_only_pretraining"):
        _module(tiny_cfg, task_mix={"extract": 1}, mixture_only_pretraining=True)


def test_latents_go_through_the_models_track_norm(tiny_cfg):
    from mgeldm.models.mgeldm import TrackNorm

    c = tiny_cfg["io_channels"]
    m = _module(tiny_cfg)
    batch = _h.make_batch(tiny_cfg)
    raw = m.latents(batch)
    mean = torch.randn(3, c)
    std = torch.rand(3, c) + 0.5
    norm = TrackNorm(mean, std, num_tracks=3, channels=c)
    m.diffusion.to_dit_space = norm.normalize  # what MGELDM does with a track_norm
    got = m.latents(batch)
    for k in range(3):
        torch.testing.assert_close(
            got[:, k * c : (k + 1) * c], (raw[:, k * c : (k + 1) * c] - mean[k, :, None]) / std[k, :, None]
        )


def test_timestep_shift_moves_draws_toward_noise(tiny_cfg):
    """s = 1 keeps the original's draw; s > 1 maps each draw t to s t / (1 + (s - 1) t): the same Sobol draws,
    monotone, endpoints kept, and the median moves from 1/2 to s / (1 + s)."""
    plain, shifted = _module(tiny_cfg), _module(tiny_cfg, timestep_shift=3.0)
    t0, t3 = plain.draw_t(2000), shifted.draw_t(2000)
    torch.testing.assert_close(t3, 3 * t0 / (1 + 2 * t0))
    assert torch.all(t3 >= t0) and t3.max() <= 1.0
    assert abs(t0.median().item() - 0.5) < 0.02 and abs(t3.median().item() - 0.75) < 0.02
    tt, _ = _module(tiny_cfg, timestep_shift=3.0, timestep_dropout_prob=0.0).draw_timesteps(500)
    assert tt.median().item() > 0.7  # the original draw is shifted too
    out = _module(tiny_cfg, timestep_shift=3.0, task_mix={"extract": 1.0}).compute_loss(_h.make_batch(tiny_cfg, b=64))
    assert out["t"][:, 2].median().item() > 0.7  # and the task patterns' draw


def test_task_t1_trains_a_pattern_at_pure_noise(tiny_cfg):
    """task_t1 {extract: p}: a share p of the extraction rows gets t = 1 on its noised tracks, the other patterns
    keep their draw; without it the draws (and the random stream) are the original's."""
    m = _module(tiny_cfg, task_mix={"extract": 1.0, "total": 1.0}, task_t1={"extract": 1.0}, cfg_dropout_prob=0.0)
    out = m.compute_loss(_h.make_batch(tiny_cfg, b=64))
    extract = out["t"][:, 0] == 0  # the mix given: the extraction rows
    assert extract.any() and (~extract).any()
    assert torch.all(out["t"][extract][:, 1:] == 1.0)
    assert torch.all(out["t"][~extract] < 1.0)
    half = _module(tiny_cfg, task_mix={"extract": 1.0}, task_t1={"extract": 0.5}, cfg_dropout_prob=0.0)
    t = half.compute_loss(_h.make_batch(tiny_cfg, b=400))["t"][:, 2]
    assert 0.4 < (t == 1.0).float().mean().item() < 0.6
    plain = _module(tiny_cfg, task_mix={"extract": 1.0}).compute_loss(_h.make_batch(tiny_cfg, b=8))
    again = _module(tiny_cfg, task_mix={"extract": 1.0}, task_t1={}).compute_loss(_h.make_batch(tiny_cfg, b=8))
    assert torch.equal(plain["t"], again["t"]) and torch.equal(plain["z_t"], again["z_t"])


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"total": 0.5}, "not a task pattern"),
        ({"extract": 1.5}, "probability"),
        ([0.5], "mapping"),
        ({"extract": True}, "probability"),
    ],
)
def test_task_t1_refuses_bad_values(tiny_cfg, bad, match):
    from mgeldm.errors import UserError

    with pytest.raises(UserError, match=match):
        _module(tiny_cfg, task_mix={"extract": 1.0}, task_t1=bad)
