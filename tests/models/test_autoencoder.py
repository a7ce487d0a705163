"""The Oobleck VAE: reference outputs of the original, the full-size layout, weight-norm folding,
chunked encode/decode, the VAE bottleneck and the pretransform wrapper.

Small models use the fixture README's "autoencoder" block; the full size comes from
configs/model/autoencoder.yaml and is built on the meta device (no memory, no init cost).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from mgeldm.checkpoints import load_weights, read_state_dict, strip_prefix
from mgeldm.errors import UserError
from mgeldm.models.autoencoder import (
    AudioAutoencoder,
    VAEBottleneck,
    build_autoencoder,
    build_pretransform,
    vae_kl,
)
from mgeldm.nn.activations import SnakeBeta, snake_beta
from mgeldm.nn.conv import WNConv1d, WNConvTranspose1d

REPO_ROOT = Path(__file__).resolve().parents[2]
FULL_CONFIG = REPO_ROOT / "configs" / "model" / "autoencoder.yaml"
AE_PREFIX = "pretransform.model."


def _randomised(model: AudioAutoencoder, seed: int = 0) -> AudioAutoencoder:
    """Random, non-trivial weights: g != ||v|| and alpha/beta != 0, so every term of the formulas matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("weight_g"):
                p.mul_(torch.empty(p.shape).uniform_(0.5, 1.5, generator=gen))
    return model.eval()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: extra OpenMP threads only add contention on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_cfg(reference_fixtures) -> dict:
    return reference_fixtures.readme["autoencoder"]


@pytest.fixture()
def tiny(tiny_cfg) -> AudioAutoencoder:
    return _randomised(build_autoencoder(tiny_cfg))


# ----------------------------------------------------------------------------- reference


@pytest.mark.reference
def test_reference_tiny_ae(reference_fixtures, ref_close):
    readme, cases = reference_fixtures.readme, reference_fixtures.cases
    path = reference_fixtures.path("tiny_ae.ckpt")
    ae = build_autoencoder(readme["autoencoder"]).eval()
    load_weights(ae, read_state_dict(path), what="the tiny Oobleck VAE", path=path)
    with torch.no_grad():
        ref_close(ae.encoder(cases["ae_audio"]), cases["ae_encoder_raw"], "ae_encoder_raw")
        ref_close(ae.decode(cases["ae_latent"]), cases["ae_decoded"], "ae_decoded")
        mean = ae.encode(cases["ae_audio"], sample=False)
    ref_close(mean, cases["ae_encoder_raw"][:, : ae.latent_dim], "VAE mean = first half of ae_encoder_raw")


@pytest.mark.reference
def test_reference_pretransform_inside_mgeldm_checkpoint(reference_fixtures, ref_close):
    readme, cases = reference_fixtures.readme, reference_fixtures.cases
    full = read_state_dict(reference_fixtures.path("tiny_mgeldm.ckpt"))
    ae_state = strip_prefix(full, AE_PREFIX)
    assert ae_state, "tiny_mgeldm.ckpt holds no pretransform.model.* entries"
    pre = build_pretransform(readme["pretransform"], readme["autoencoder"])
    load_weights(pre.model, ae_state, what="the tiny VAE inside tiny_mgeldm.ckpt")
    latent_dim = pre.encoded_channels
    ref_close(pre.encode(cases["ae_audio"]), cases["ae_encoder_raw"][:, :latent_dim], "pretransform.encode (mean)")
    ref_close(pre.decode(cases["ae_latent"]), cases["ae_decoded"], "pretransform.decode")
    # The pretransform folds its weight norm, and the keys seen from MGELDM are pretransform.model.*
    assert all(m.is_folded for m in pre.modules() if isinstance(m, (WNConv1d, WNConvTranspose1d)))
    assert sorted(pre.state_dict()) == sorted("model." + k for k in ae_state)


# ------------------------------------------------------------------------ full-size layout


def _tsv_rows(tsv: Path, prefix: str) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in tsv.read_text().splitlines():
        if line.startswith("#") or not line.startswith(prefix):
            continue
        name, shape, dtype, _kind = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        rows.append((name[len(prefix) :], dims, dtype))
    return rows


def test_full_size_layout_matches_released_checkpoint(reference_file):
    tsv = reference_file("full_mgeldm_state_dict.tsv")
    cfg = yaml.safe_load(FULL_CONFIG.read_text())
    with torch.device("meta"):
        ae = build_autoencoder(cfg)
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in ae.state_dict().items()]
    assert ours == _tsv_rows(tsv, AE_PREFIX)
    assert not list(ae.buffers())
    # docs/compatibility.md#the-autoencoder parameter counts
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(ae), count(ae.encoder), count(ae.decoder)) == (156_110_721, 77_988_992, 78_121_729)
    assert (ae.downsampling_ratio, ae.latent_dim, ae.io_channels, ae.sample_rate) == (2048, 64, 1, 16000)


# ----------------------------------------------------------------------------- building blocks


def test_weight_norm_layout_and_formula():
    conv, convt = WNConv1d(3, 5, kernel_size=4), WNConvTranspose1d(3, 5, kernel_size=4, stride=2)
    assert list(conv.state_dict()) == ["bias", "weight_g", "weight_v"]
    assert conv.weight_g.shape == (5, 1, 1) and convt.weight_g.shape == (3, 1, 1)  # (in,1,1) for transpose
    with torch.no_grad():
        conv.weight_g.uniform_(0.5, 2.0)
        convt.weight_g.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 16)
    for m, op in ((conv, nn.functional.conv1d), (convt, nn.functional.conv_transpose1d)):
        v, g = m.weight_v, m.weight_g
        w = g * v / v.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
        kwargs = {"stride": m.stride}
        torch.testing.assert_close(m(x), op(x, w, m.bias, **kwargs), atol=1e-6, rtol=1e-6)


def test_snakebeta_formula_and_fast_path():
    act = SnakeBeta(4)
    with torch.no_grad():
        act.alpha.copy_(torch.tensor([0.0, 0.5, -1.0, 2.0]))
        act.beta.copy_(torch.tensor([0.0, -0.5, 1.0, 0.3]))
    x = torch.randn(2, 4, 33)
    a, b = act.alpha.exp()[None, :, None], act.beta.exp()[None, :, None]
    expected = x + 1.0 / (b + 1e-9) * torch.sin(a * x) ** 2
    with_grad = act(x)
    assert with_grad.requires_grad
    with torch.no_grad():
        fast = act(x)
    torch.testing.assert_close(with_grad.detach(), expected.detach(), atol=1e-6, rtol=1e-6)
    assert torch.equal(fast, with_grad.detach())  # the in-place path computes the same values
    assert list(act.state_dict()) == ["alpha", "beta"]


def test_snakebeta_memory_lean_backward_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    alpha = (0.4 * torch.randn(3, dtype=torch.float64, generator=gen)).requires_grad_()
    beta = (0.4 * torch.randn(3, dtype=torch.float64, generator=gen)).requires_grad_()
    assert torch.autograd.gradcheck(snake_beta, (x, alpha, beta))
    g = torch.randn(2, 3, 9, dtype=torch.float64, generator=gen)

    def plain(x, alpha, beta):
        a, b = alpha.exp()[None, :, None], beta.exp()[None, :, None]
        return x + 1.0 / (b + 1e-9) * torch.sin(a * x) ** 2

    expected = torch.autograd.grad((plain(x, alpha, beta) * g).sum(), (x, alpha, beta))
    got = torch.autograd.grad((snake_beta(x, alpha, beta) * g).sum(), (x, alpha, beta))
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, atol=1e-12, rtol=1e-12)
    # Only some inputs needing a gradient works too (frozen activation, or a constant input).
    x_only = torch.autograd.grad(snake_beta(x, alpha.detach(), beta.detach()).sum(), x)[0]
    torch.testing.assert_close(x_only, torch.autograd.grad(plain(x, alpha.detach(), beta.detach()).sum(), x)[0])


# -------------------------------------------------------------------------- weight-norm folding


def test_fold_keeps_outputs_and_state_dict(tiny):
    audio = torch.randn(2, tiny.io_channels, 6 * tiny.downsampling_ratio)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    with torch.no_grad():
        z_in = torch.randn(2, tiny.latent_dim, 6, generator=torch.Generator().manual_seed(1))
        z_ref, a_ref = tiny.encode(audio, sample=False), tiny.decode(z_in)
        tiny.fold_weight_norm()
        # Tolerance: none. The folded weight is the very tensor the unfolded path computes per call.
        assert torch.equal(tiny.encode(audio, sample=False), z_ref)
        assert torch.equal(tiny.decode(z_in), a_ref)
    after = tiny.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    # The cache really is used: changing weight_v in place without reloading leaves outputs alone...
    conv = tiny.decoder.layers[0]
    with torch.no_grad():
        conv.weight_v.mul_(2.0).add_(0.1)
        assert torch.equal(tiny.decode(z_in), a_ref)
    # ...while loading a state dict refreshes the fold.
    tiny.load_state_dict(before)
    other = _randomised(copy.deepcopy(tiny).unfold_weight_norm(), seed=5)
    tiny.load_state_dict(other.state_dict())
    assert conv.is_folded
    with torch.no_grad():
        torch.testing.assert_close(tiny.decode(z_in), other.decode(z_in), atol=0, rtol=0)


def test_train_mode_unfolds_so_gradients_reach_g_and_v(tiny):
    tiny.fold_weight_norm().train()
    assert not any(m.is_folded for m in tiny.modules() if isinstance(m, (WNConv1d, WNConvTranspose1d)))
    audio = torch.randn(1, tiny.io_channels, 2 * tiny.downsampling_ratio)
    z, info = tiny.encode(audio, return_info=True, generator=torch.Generator().manual_seed(0))
    (tiny.decode(z).square().mean() + info["kl"]).backward()
    assert tiny.encoder.layers[0].weight_g.grad is not None and tiny.decoder.layers[0].weight_v.grad is not None


# ------------------------------------------------------------------------------- chunked mode


class _LocalEncoder(nn.Module):
    """A frame-local stand-in for the encoder: no receptive field across frames."""

    def __init__(self, ratio: int, io_channels: int, out_channels: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Conv1d(io_channels, out_channels, 1)

    def forward(self, x):
        return self.proj(nn.functional.avg_pool1d(x, self.ratio) * 3.0 + 1.0)


class _LocalDecoder(nn.Module):
    def __init__(self, ratio: int, latent_dim: int, io_channels: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Conv1d(latent_dim, io_channels, 1)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, z):
        self.calls.append(tuple(z.shape))
        ramp = torch.linspace(0.5, 1.5, self.ratio, dtype=z.dtype)  # varies inside each frame
        return (self.proj(z).repeat_interleave(self.ratio, dim=-1) + 2.0) * ramp.repeat(z.shape[-1])


@pytest.mark.parametrize(
    "frames,chunk,overlap,max_batch",
    [
        (37, 8, 3, 1),
        (37, 8, 3, 4),
        (40, 10, 0, 1),
        (16, 9, 2, 2),
        (5, 8, 2, 1),
        (30, 6, 3, 3),
    ],
)
def test_chunked_cross_fade_is_a_partition_of_unity(tiny, frames, chunk, overlap, max_batch):
    """With frame-local networks every window sees exactly what one pass sees, so chunked and one pass
    must agree everywhere up to float rounding: wrong fade weights, offsets or padding would show."""
    r, bsz = tiny.downsampling_ratio, 3
    tiny.encoder = _LocalEncoder(r, tiny.io_channels, 2 * tiny.latent_dim)
    tiny.decoder = _LocalDecoder(r, tiny.latent_dim, tiny.io_channels)
    audio = torch.randn(bsz, tiny.io_channels, frames * r)
    z = torch.randn(bsz, tiny.latent_dim, frames)
    kw = dict(chunked=True, chunk_size=chunk, overlap=overlap, max_batch_size=max_batch)
    with torch.no_grad():
        torch.testing.assert_close(tiny.encode_audio(audio, **kw), tiny.encode_audio(audio), atol=1e-5, rtol=1e-5)
        one_pass = tiny.decode_audio(z)
        tiny.decoder.calls.clear()
        torch.testing.assert_close(tiny.decode_audio(z, **kw), one_pass, atol=1e-5, rtol=1e-5)
    if frames > chunk:  # memory bound: no decoder call sees more than max_batch windows of chunk frames
        assert all(c[-1] == chunk and c[0] <= max_batch for c in tiny.decoder.calls)


def test_chunked_fade_weights_are_bartlett(tiny):
    """A decoder returning ones for chunk-constant latents exposes the fade itself: inside the overlap
    the output is fade_out * a + fade_in * b, with the periodic Bartlett halves."""
    r = tiny.downsampling_ratio
    tiny.decoder = _LocalDecoder(r, tiny.latent_dim, tiny.io_channels)
    with torch.no_grad():
        tiny.decoder.proj.weight.zero_()
        tiny.decoder.proj.bias.zero_()
    frames, chunk, overlap = 14, 8, 2  # exactly two windows: [0, 8) and [6, 14)
    ramp = torch.linspace(0.5, 1.5, r).repeat(frames)
    out = tiny.decode_audio(torch.zeros(1, tiny.latent_dim, frames), chunked=True, chunk_size=chunk, overlap=overlap)
    # Both windows decode to 2 * ramp, so the fades must sum to one.
    torch.testing.assert_close(out[0, 0], 2.0 * ramp)
    # Now make the second window decode differently: the mix inside the overlap reveals the weights.
    calls = []

    def decode_by_window(z, iterate_batch=None):
        calls.append(len(calls))
        return torch.full((z.shape[0], tiny.io_channels, z.shape[-1] * r), float(len(calls)))

    tiny.decode = decode_by_window
    out = AudioAutoencoder.decode_audio(
        tiny, torch.zeros(1, tiny.latent_dim, frames), chunked=True, chunk_size=chunk, overlap=overlap
    )[0, 0]
    n = overlap * r
    w = torch.arange(n, dtype=torch.float32) / n  # fade-in of the 2nd window: 0, 1/n, ..., (n-1)/n
    expected = torch.cat([torch.ones(6 * r), 1.0 * (1 - w) + 2.0 * w, torch.full(((frames - 8) * r,), 2.0)])
    torch.testing.assert_close(out, expected)


def _influence_radius(fn, length: int, per_frame: int, probe_frame: int) -> int:
    """How many frames away from a perturbed input frame the output of ``fn`` changes."""
    gen = torch.Generator().manual_seed(3)
    shape_in = fn.in_shape(length)
    x = torch.randn(shape_in, generator=gen)
    x2 = x.clone()
    x2[..., probe_frame * fn.in_per_frame] += 1.0
    with torch.no_grad():
        y = fn(x)
        diff = (fn(x2) - y).abs().amax(dim=(0, 1))
    hit = (diff > 1e-6 * y.abs().max()).nonzero().flatten()
    lo, hi = hit.min().item() // per_frame, hit.max().item() // per_frame
    return max(probe_frame - lo, hi - probe_frame) + 2


def _safe_frames(frames: int, chunk: int, overlap: int, margin: int) -> list[int]:
    """Frames where chunked must equal one pass: the weight-1 part of a window, ``margin`` frames from
    any window edge and from the padding after the signal; the start of the signal is shared by both."""
    hop = chunk - overlap
    n = max(1, math.ceil((frames - chunk) / hop) + 1)
    safe = []
    for i in range(n):
        start, end = i * hop, min(i * hop + chunk, frames)
        lo = 0 if i == 0 else start + max(overlap, margin)
        hi = end - max(overlap if i < n - 1 else 0, margin)
        safe += list(range(lo, hi))
    return safe


def test_chunked_matches_one_pass_away_from_window_edges(tiny):
    """Real (tiny, random-weight) networks: a window's output near its edges depends on the padding
    there, so chunked ≠ one pass inside the overlaps. Away from the edges by more than the receptive
    field, and on the weight-1 part of a window, the values must agree to float rounding (1e-5 relative)."""
    r, L, C = tiny.downsampling_ratio, tiny.latent_dim, tiny.io_channels
    probe = 40

    class Enc:
        in_per_frame = r

        @staticmethod
        def in_shape(n):
            return (1, C, n * r)

        def __call__(self, x):
            return tiny.encode(x, sample=False)

    class Dec:
        in_per_frame = 1

        @staticmethod
        def in_shape(n):
            return (1, L, n)

        def __call__(self, z):
            return tiny.decode(z)

    margin_enc = _influence_radius(Enc(), 2 * probe, 1, probe)
    margin_dec = _influence_radius(Dec(), 2 * probe, r, probe)
    margin = max(margin_enc, margin_dec)
    assert margin < probe, "receptive field larger than the probe signal; enlarge `probe`"
    overlap = 4
    chunk = 2 * margin + 3 * overlap + 4
    frames = 3 * chunk - 5  # a ragged end: the last window is padded
    gen = torch.Generator().manual_seed(11)
    audio = torch.randn(2, C, frames * r, generator=gen)
    z = torch.randn(2, L, frames, generator=gen)
    kw = dict(chunked=True, chunk_size=chunk, overlap=overlap, max_batch_size=2)
    safe = torch.tensor(_safe_frames(frames, chunk, overlap, margin))
    assert len(safe) > frames // 3
    with torch.no_grad():
        z_one, z_chk = tiny.encode_audio(audio), tiny.encode_audio(audio, **kw)
        a_one, a_chk = tiny.decode_audio(z), tiny.decode_audio(z, **kw)
    assert z_chk.shape == z_one.shape and a_chk.shape == a_one.shape
    tol_z, tol_a = 1e-5 * z_one.abs().max().item(), 1e-5 * a_one.abs().max().item()
    assert (z_chk[..., safe] - z_one[..., safe]).abs().max() <= tol_z
    samples = (safe[:, None] * r + torch.arange(r)).flatten()
    assert (a_chk[..., samples] - a_one[..., samples]).abs().max() <= tol_a
    # ...and the comparison has teeth: the overlaps do differ (edge effects), so `safe` is not vacuous.
    assert (z_chk - z_one).abs().max() > tol_z


def test_chunked_mode_supports_autograd(tiny):
    """The cross-fade never writes into a network output, so gradients flow through chunked passes."""
    r = tiny.downsampling_ratio
    audio = torch.randn(1, tiny.io_channels, 12 * r, requires_grad=True)
    z = tiny.encode_audio(audio, chunked=True, chunk_size=6, overlap=2)
    tiny.decode_audio(z, chunked=True, chunk_size=6, overlap=2).square().mean().backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    assert tiny.decoder.layers[0].weight_v.grad is not None


def test_chunk_arguments_are_checked(tiny):
    z = torch.randn(1, tiny.latent_dim, 20)
    for chunk, overlap in ((8, 8), (8, 5), (8, -1), (0, 0)):  # 2 * overlap > chunk: three windows per frame
        with pytest.raises(ValueError):
            tiny.decode_audio(z, chunked=True, chunk_size=chunk, overlap=overlap)


# ------------------------------------------------------------------------------ VAE bottleneck


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.expm1(y))


def test_kl_hand_checked_case():
    e = math.e
    # (B=1, C=2, T=2): frame 0 has μ=(1, 0), σ=(1, e); frame 1 has μ=(2, 0), σ=(1, 1).
    mean = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]], dtype=torch.float64)
    std = torch.tensor([[[1.0, 1.0], [e, 1.0]]], dtype=torch.float64)
    # Σ_c (μ² + σ² − log σ² − 1): frame 0 → 1 + (e² − 2 − 1) = e² − 2; frame 1 → 4. Mean over frames, no ½.
    expected = ((e * e - 2) + 4) / 2
    assert vae_kl(mean, std).item() == pytest.approx(expected, rel=1e-12)
    raw = torch.cat([mean, _inverse_softplus(std - 1e-4)], dim=1)  # what the encoder would emit
    _, info = VAEBottleneck().encode(raw, return_info=True, sample=False)
    assert info["kl"].item() == pytest.approx(expected, rel=1e-9)
    torch.testing.assert_close(info["std"], std)
    assert torch.equal(info["mean"], mean)


def test_sample_vs_mean_and_seeded_sampling(tiny):
    r = tiny.downsampling_ratio
    audio = torch.randn(2, tiny.io_channels, 5 * r)
    with torch.no_grad():
        raw = tiny.encoder(audio)
        mean = tiny.encode(audio, sample=False)
        s1 = tiny.encode(audio, generator=torch.Generator().manual_seed(7))
        s2 = tiny.encode(audio, generator=torch.Generator().manual_seed(7))
        s3 = tiny.encode(audio, generator=torch.Generator().manual_seed(8))
        _, info = tiny.encode(audio, return_info=True, sample=False)
    assert mean.shape == (2, tiny.latent_dim, 5) and torch.equal(mean, raw[:, : tiny.latent_dim])
    assert torch.equal(s1, s2) and not torch.equal(s1, s3) and not torch.equal(s1, mean)
    std = torch.nn.functional.softplus(raw[:, tiny.latent_dim :]) + 1e-4
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(s1, mean + std * eps)
    torch.testing.assert_close(info["std"], std)


def test_shapes_and_bad_lengths(tiny):
    r = tiny.downsampling_ratio
    for frames in (1, 3):
        audio = torch.randn(2, tiny.io_channels, frames * r)
        z = tiny.encode_audio(audio)
        assert z.shape == (2, tiny.latent_dim, frames)
        assert tiny.decode_audio(z).shape == audio.shape
    for bad in (r + 1, r // 2, 0):
        audio = torch.randn(1, tiny.io_channels, bad)
        with pytest.raises(ValueError, match="multiple"):  # shape bugs of the calling code keep their traceback
            tiny.encode(audio)
        with pytest.raises(ValueError, match="multiple"):
            tiny.encode_audio(audio, chunked=True)
    with pytest.raises(ValueError):
        tiny.encode(torch.randn(1, tiny.io_channels + 1, r))
    with pytest.raises(ValueError):
        tiny.decode(torch.randn(1, tiny.latent_dim + 1, 3))


def test_iterate_batch_gives_the_same_result(tiny):
    audio = torch.randn(3, tiny.io_channels, 4 * tiny.downsampling_ratio)
    with torch.no_grad():
        z = tiny.encode(audio, sample=False)
        torch.testing.assert_close(tiny.encode(audio, sample=False, iterate_batch=2), z)
        torch.testing.assert_close(tiny.decode(z, iterate_batch=1), tiny.decode(z))


# -------------------------------------------------------------------------------- pretransform


def test_pretransform_scale_mean_and_frozen(tiny_cfg):
    pre = build_pretransform({"scale": 2.0, "chunked": False}, tiny_cfg)
    _randomised(pre.model)
    pre.model.fold_weight_norm()
    r = pre.downsampling_ratio
    audio = torch.randn(2, pre.io_channels, 3 * r)
    with torch.no_grad():
        mean = pre.model.encode(audio, sample=False)
    assert torch.equal(
        pre.encode(audio), mean / 2.0
    )  # the mean by default (original: a sample, difference 3 of docs/compatibility.md)
    sampled = pre.encode(audio, sample=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(sampled, mean / 2.0)
    z = torch.randn(2, pre.encoded_channels, 3)
    with torch.no_grad():
        torch.testing.assert_close(pre.decode(z), pre.model.decode(2.0 * z))
    assert not pre.decode(z).requires_grad
    assert not any(p.requires_grad for p in pre.parameters())
    pre.train()
    assert pre.training and not pre.model.training  # the VAE stays frozen in eval mode
    assert (pre.downsampling_ratio, pre.encoded_channels) == (tiny_cfg["downsampling_ratio"], tiny_cfg["latent_dim"])


def test_pretransform_chunked_flag_is_used(tiny_cfg):
    pre = build_pretransform({"chunked": True}, tiny_cfg)
    calls = []
    pre.model.decoder.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[-1]))
    pre.decode(torch.randn(1, pre.encoded_channels, 300))
    assert calls and max(calls) == 128  # default chunk of 128 latent frames
    calls.clear()
    pre.decode(torch.randn(1, pre.encoded_channels, 300), chunked=False)
    assert calls == [300]


def test_config_errors_are_user_errors(tiny_cfg):
    bad = copy.deepcopy(tiny_cfg)
    bad["downsampling_ratio"] = tiny_cfg["downsampling_ratio"] * 2
    with pytest.raises(UserError, match="downsampling_ratio"):
        build_autoencoder(bad)
    bad = copy.deepcopy(tiny_cfg)
    bad["encoder"]["latent_dim"] = tiny_cfg["latent_dim"]
    with pytest.raises(UserError, match="encoder.latent_dim"):
        build_autoencoder(bad)
    bad = copy.deepcopy(tiny_cfg)
    bad["decoder"]["chanels"] = 8
    with pytest.raises(UserError, match="chanels"):
        build_autoencoder(bad)
    bad = copy.deepcopy(tiny_cfg)
    del bad["bottleneck"]
    with pytest.raises(UserError, match="bottleneck"):
        build_autoencoder(bad)
    with pytest.raises(UserError, match="scal"):
        build_pretransform({"scal": 1.0}, tiny_cfg)


def test_fused_activation_flag_is_safe_everywhere(tiny, monkeypatch):
    """The fused path is CUDA-only; on CPU the flag changes nothing, and where compilation fails the
    eager values come back with one warning."""
    import mgeldm.nn.activations as act_mod

    z = torch.randn(1, tiny.latent_dim, 4)
    with torch.no_grad():
        ref = tiny.decode(z)
        tiny.fuse_activations()
        assert all(m.fused for m in tiny.modules() if isinstance(m, SnakeBeta))
        assert torch.equal(tiny.decode(z), ref)

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(act_mod, "_fused_kernel", None)
    monkeypatch.setattr(act_mod, "_fused_broken", False)
    monkeypatch.setattr(torch, "compile", broken_compile)
    act = SnakeBeta(3)
    x = torch.randn(2, 3, 5)
    with pytest.warns(RuntimeWarning, match="fused SnakeBeta unavailable"):
        out = act_mod._fused_snake(x, act.alpha.detach(), act.beta.detach())
    with torch.no_grad():
        assert torch.equal(out, act(x))


def test_elu_variant_builds_and_runs(tiny_cfg):
    """use_snake: false swaps SnakeBeta for ELU at the same Sequential indices (no alpha/beta keys)."""
    cfg = copy.deepcopy(tiny_cfg)
    cfg["encoder"]["use_snake"] = cfg["decoder"]["use_snake"] = False
    ae = build_autoencoder(cfg).eval()
    assert not any(k.endswith((".alpha", ".beta")) for k in ae.state_dict())
    assert isinstance(ae.encoder.layers[-2], nn.ELU) and isinstance(ae.decoder.layers[-3], nn.ELU)
    audio = torch.randn(1, ae.io_channels, 2 * ae.downsampling_ratio)
    with torch.no_grad():
        assert ae.decode(ae.encode(audio, sample=False)).shape == audio.shape
