"""MGEDiT: reference outputs of the original, the full-size key layout, and behavioural invariants.

Model sizes come from the fixture README ("mgeldm" block) or configs/model/dit.yaml (full size).
Invariant tests use the fixture's (non-trivial) weights, so the modulation and zero-init branches
are active and a wrong wiring would show.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mgeldm.checkpoints import load_weights, read_state_dict, strip_prefix
from mgeldm.errors import UserError
from mgeldm.models.dit import MGEDiT, _run_grouped_mlp, build_dit, grouped_conv1x1
from mgeldm.nn.norms import GroupNorm
from mgeldm.nn.rotary import RotaryEmbedding, apply_rotary

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_tiny(fixtures, filename: str = "tiny_mgeldm.ckpt") -> MGEDiT:
    model = build_dit(fixtures.readme["mgeldm"])
    state = strip_prefix(read_state_dict(fixtures.path(filename)), "model_dit.")
    load_weights(model, state, what="the tiny MGE-LDM DiT", path=fixtures.path(filename))
    return model.eval()


@pytest.fixture(scope="module")
def tiny(reference_fixtures) -> MGEDiT:
    return _load_tiny(reference_fixtures)


@pytest.fixture()
def inputs(reference_fixtures):
    c = reference_fixtures.cases
    return c["dit_x"], c["dit_t3"], c["dit_cond"]


# ----------------------------------------------------------------------------- reference


@pytest.mark.reference
@pytest.mark.parametrize("filename", ["tiny_mgeldm.ckpt", "tiny_mgeldm.safetensors"])
def test_reference_outputs(reference_fixtures, ref_close, filename):
    model = _load_tiny(reference_fixtures, filename)
    c = reference_fixtures.cases
    with torch.no_grad():
        ref_close(model(c["dit_x"], c["dit_t3"], global_embed=c["dit_cond"]), c["dit_out_t3"], "dit_out_t3")
        ref_close(model(c["dit_x"], c["dit_t1"], global_embed=c["dit_cond"]), c["dit_out_t1"], "dit_out_t1")
        out = model(c["dit_x"], c["dit_t3"], global_embed=c["dit_cond"], cfg_scale=3.0)
        ref_close(out, c["dit_out_t3_cfg3"], "dit_out_t3_cfg3")


@pytest.mark.reference
def test_state_dict_order_matches_checkpoint(reference_fixtures, tiny):
    state = strip_prefix(read_state_dict(reference_fixtures.path("tiny_mgeldm.safetensors")), "model_dit.")
    assert sorted(state) == sorted(tiny.state_dict())
    ckpt = strip_prefix(read_state_dict(reference_fixtures.path("tiny_mgeldm.ckpt")), "model_dit.")
    assert list(ckpt) == list(tiny.state_dict())


# ----------------------------------------------------------------------------- full size


def _full_cfg():
    omegaconf = pytest.importorskip("omegaconf")
    return omegaconf.OmegaConf.load(REPO_ROOT / "configs" / "model" / "dit.yaml").MGELDM


def _tsv_rows(tsv: Path) -> dict[str, tuple[tuple[int, ...], str, str]]:
    rows = {}
    for line in tsv.read_text().splitlines():
        if line.startswith("#") or not line.startswith("model_dit."):
            continue
        name, shape, dtype, kind = line.split("\t")
        rows[name[len("model_dit.") :]] = (
            tuple(int(s) for s in shape.strip("()").split(",") if s.strip()),
            dtype,
            kind,
        )
    return rows


def test_full_size_layout_matches_released_checkpoint(reference_file):
    with torch.device("meta"):
        model = build_dit(_full_cfg())
    rows = _tsv_rows(reference_file("full_mgeldm_state_dict.tsv"))
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    state = model.state_dict()
    assert len(state) == len(rows) == 276
    assert list(state) == list(rows)
    for name, (shape, dtype, kind) in rows.items():
        tensor = params.get(name, buffers.get(name))
        assert tensor is not None, name
        assert tuple(tensor.shape) == shape, name
        assert str(tensor.dtype) == f"torch.{dtype}", name
        assert (name in params) == (kind == "param"), name
    assert sum(p.numel() for p in model.parameters()) == 1_023_040_640
    assert model.dim // model.num_heads == 32 and model.transformer.rotary_pos_emb.dim == 32


# ----------------------------------------------------------------------------- init


def test_init_zero_and_halved(reference_fixtures):
    torch.manual_seed(1)
    model = build_dit(reference_fixtures.readme["mgeldm"])
    for layer in model.transformer.layers:
        assert layer.self_attn.to_out.weight.abs().max() == 0
        assert layer.ff.ff[2].weight.abs().max() == 0 and layer.ff.ff[2].bias.abs().max() == 0
        assert layer.to_scale_shift_gate[2].weight.abs().max() == 0
        assert torch.all(layer.pre_norm.gamma == 0.5) and torch.all(layer.ff_norm.gamma == 0.5)
        assert torch.all(layer.pre_norm.beta == 0)
    assert model.preprocess_conv.weight.abs().max() == 0 and model.postprocess_conv.weight.abs().max() == 0
    # Default nn.Linear init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); halved it stays within half that bound.
    w = model.transformer.project_in.weight
    bound = 1 / math.sqrt(w.shape[1])
    assert w.abs().max() <= 0.5 * bound and w.abs().max() > 0.4 * bound
    # Fourier weights: N(0,1) * 0.5 (with 8 values only a loose check of the scale).
    assert 0.1 < model.timestep_features.weight.std() < 1.0
    inv_freq = model.transformer.rotary_pos_emb.inv_freq
    torch.testing.assert_close(inv_freq, 10000 ** (-torch.arange(0, 32, 2).float() / 32))
    # Even at init the project_in -> project_out path is active.
    x = torch.randn(2, model.io_channels * model.num_tracks, 7)
    out = model(x, torch.rand(2), torch.randn(2, model.num_tracks, model.global_cond_dim))
    assert out.shape == x.shape and out.abs().max() > 0


# ----------------------------------------------------------------------------- components


@pytest.mark.parametrize("grad", [True, False])
def test_grouped_conv_matches_conv1d(grad):
    """Both ways of computing it (autograd recording or not) are the grouped Conv1d, values and gradients."""
    conv = torch.nn.Conv1d(12, 18, 1, groups=3, bias=True)
    x = torch.randn(4, 12, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(grouped_conv1x1(x, conv), conv(x_ref[:, :, None])[:, :, 0])
    grad_out = torch.randn(4, 18)
    grouped_conv1x1(x, conv).backward(grad_out)
    ours = [conv.weight.grad.clone(), conv.bias.grad.clone(), x.grad]
    conv.zero_grad()
    conv(x_ref[:, :, None])[:, :, 0].backward(grad_out)
    for a, b in zip(ours, [conv.weight.grad, conv.bias.grad, x_ref.grad]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("batch", [2, 8])
@pytest.mark.parametrize("input_grad", [False, True])
def test_grouped_conv_weight_gradient_lands_in_place(batch, input_grad):
    """The weight's gradient is computed in the parameter's (K*out, in, 1) layout: the backward copies no
    weight-sized tensor (an einsum's backward cloned it into that layout, a fixed cost at every step)."""
    from torch.profiler import ProfilerActivity, profile

    conv = torch.nn.Conv1d(3 * 64, 3 * 96, 1, groups=3, bias=False)
    y = grouped_conv1x1(torch.randn(batch, 3 * 64, requires_grad=input_grad), conv)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        y.backward(torch.ones_like(y))
    size = conv.weight.numel()
    copies = [
        (e.name, e.input_shapes)
        for e in prof.events()
        if e.name in ("aten::copy_", "aten::clone", "aten::contiguous")
        and any(math.prod(shape) == size for shape in e.input_shapes if shape)
    ]
    assert not copies, copies
    assert conv.weight.grad.shape == conv.weight.shape and conv.weight.grad.is_contiguous()


def test_fourier_features_cos_first(tiny):
    t = torch.tensor([[0.3, 0.7, 0.1]])
    feat = tiny.timestep_features(t)
    w = tiny.timestep_features.weight[:, 0]
    f = 2 * math.pi * 0.7 * w
    torch.testing.assert_close(feat[0, 1], torch.cat((f.cos(), f.sin())))


# Float32 tolerance for "this slice did not move": different inputs in *other* slices may change how
# a BLAS library blocks the batched product (MKL's default path on AMD CPUs does), so an untouched slice can
# move by a few ulps of the values involved. 64 ulps of the largest value is far below a real leak between
# tracks (test_slice_check_catches_a_small_leak injects one of 1e-4 relative and must be caught).
SLICE_ULPS = 64


def _moved_slices(diff: torch.Tensor, scale: float, k: int, e: int) -> torch.Tensor:
    """(…, K*E) absolute differences -> (K,) bool: which track slices moved beyond float32 noise."""
    per_slice = diff.reshape(-1, k, e).amax(dim=(0, 2))
    return per_slice > SLICE_ULPS * torch.finfo(torch.float32).eps * scale


def _check_only_slice_moves(before: torch.Tensor, after: torch.Tensor, track: int, k: int, e: int) -> None:
    scale = max(before.abs().max().item(), after.abs().max().item())
    moved = _moved_slices((after - before).abs(), scale, k, e)
    assert moved[track], f"slice {track} should change"
    leaked = [j for j in range(k) if j != track and bool(moved[j])]
    assert not leaked, f"changing track {track} moved slices {leaked}"


def test_timestep_only_touches_own_track_slice(tiny):
    e, k = tiny.embed_dim, tiny.num_tracks
    t = torch.tensor([[0.2, 0.5, 0.9]])
    base = _run_grouped_mlp(tiny.to_timestep_embed, tiny.timestep_features(t).reshape(1, -1))
    t2 = t.clone()
    t2[0, 1] = 0.0
    moved = _run_grouped_mlp(tiny.to_timestep_embed, tiny.timestep_features(t2).reshape(1, -1))
    _check_only_slice_moves(base, moved, 1, k, e)


def test_zero_clap_vector_gives_zero_condition_slice(tiny, inputs):
    _, _, cond = inputs
    e, k = tiny.embed_dim, tiny.num_tracks
    for track in range(k):
        g = cond.clone()
        g[:, track] = 0
        c = _run_grouped_mlp(tiny.to_global_embed, g.reshape(g.shape[0], -1)).view(-1, k, e)
        assert torch.all(c[:, track] == 0)
        others = [j for j in range(k) if j != track]
        assert c[:, others].abs().amax() > 0


def _modulation_pairs(tiny, cond, modulation=None):
    """For each track: (modulation before, after) a random change of that track's condition, per layer."""
    k = tiny.num_tracks
    b = cond.shape[0]
    c0 = _run_grouped_mlp(tiny.to_global_embed, cond.reshape(b, -1))
    for track in range(k):
        g = cond.clone()
        g[:, track] = torch.randn_like(g[:, track])
        c1 = _run_grouped_mlp(tiny.to_global_embed, g.reshape(b, -1))
        for layer in tiny.transformer.layers:
            mod = modulation or layer.modulation
            yield track, mod(c0), mod(c1)  # (6, B, 1, D) each


def test_track_condition_modulates_only_its_slice(tiny, inputs):
    _, _, cond = inputs
    e, k = tiny.embed_dim, tiny.num_tracks
    for track, before, after in _modulation_pairs(tiny, cond):
        for j in range(6):  # each of the six modulations separately
            _check_only_slice_moves(before[j], after[j], track, k, e)


def test_slice_check_catches_a_small_leak(tiny, inputs):
    """The tolerance above is tight enough to see a 1e-4 relative cross-track leak."""
    _, _, cond = inputs
    e, k = tiny.embed_dim, tiny.num_tracks
    layer = tiny.transformer.layers[0]

    def leaky(c):  # slice j also receives 1e-4 of slice j+1: a small wiring error between tracks
        m = layer.modulation(c).reshape(6, -1, k, e)
        return (m + 1e-4 * m.roll(-1, dims=2)).reshape(6, -1, 1, k * e)

    caught = 0
    for track, before, after in _modulation_pairs(tiny, cond, modulation=leaky):
        with pytest.raises(AssertionError, match="moved slices"):
            _check_only_slice_moves(before[0], after[0], track, k, e)
        caught += 1
    assert caught == k * len(tiny.transformer.layers)


def test_modulation_chunk_order(tiny):
    """Group k's conv outputs are [scale_a, shift_a, gate_a, scale_f, shift_f, gate_f] x E."""
    layer = tiny.transformer.layers[0]
    e, k, d = tiny.embed_dim, tiny.num_tracks, tiny.dim
    cond = torch.randn(2, d)
    raw = layer.to_scale_shift_gate[2](F.silu(cond)[:, :, None])[:, :, 0].view(2, k, 6, e)
    mod = layer.modulation(cond)
    for j in range(6):
        torch.testing.assert_close(mod[j, :, 0], raw[:, :, j].reshape(2, d))


def test_groupnorm_matches_torch_group_norm():
    norm = GroupNorm(12, 3)
    with torch.no_grad():
        norm.gamma.copy_(torch.randn(12))
        norm.beta.copy_(torch.randn(12))
    x = torch.randn(2, 9, 12) * 3 + 5
    ref = F.group_norm(x.transpose(1, 2), 3, norm.gamma, norm.beta, 1e-5).transpose(1, 2)
    torch.testing.assert_close(norm(x), ref, atol=1e-5, rtol=1e-5)
    scale, shift = torch.randn(2, 1, 12), torch.randn(2, 1, 12)
    torch.testing.assert_close(norm.modulate(x, scale, shift), ref * (1 + scale) + shift, atol=1e-5, rtol=1e-5)
    # Statistics span all tokens: changing one token changes every token's output.
    x2 = x.clone()
    x2[:, 0] += 10
    assert (norm(x2)[:, 1:] - norm(x)[:, 1:]).abs().min() > 0


def test_groupnorm_sane_under_bf16_autocast():
    norm = GroupNorm(12, 3)
    x = torch.randn(2, 50, 12) * 0.01 + 100.0  # large mean, small spread: needs float32 statistics
    ref = norm(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_rotary_rotate_half_and_relative_positions():
    rope = RotaryEmbedding(32)
    cos, sin = rope.cos_sin(6)
    q = torch.randn(6, 32, dtype=torch.float64)
    k = torch.randn(6, 32, dtype=torch.float64)
    qr = apply_rotary(q, cos.double(), sin.double())
    torch.testing.assert_close(qr[0], q[0])  # position 0 (the timestep token) is not rotated
    # Rotate-half pairs dim j with j+16 at angle p*inv_freq_j.
    p, j = 3, 5
    ang = p * rope.inv_freq[j].double()
    a, b = q[p, j], q[p, j + 16]
    torch.testing.assert_close(qr[p, j], a * ang.cos() - b * ang.sin())
    torch.testing.assert_close(qr[p, j + 16], b * ang.cos() + a * ang.sin())
    # Same vectors at shifted positions keep their dot product (relative encoding).
    q2, k2 = q[1].expand(6, 32), k[3].expand(6, 32)
    d1 = (apply_rotary(q2, cos.double(), sin.double())[1] * apply_rotary(k2, cos.double(), sin.double())[3]).sum()
    d2 = (apply_rotary(q2, cos.double(), sin.double())[2] * apply_rotary(k2, cos.double(), sin.double())[4]).sum()
    torch.testing.assert_close(d1, d2)
    # Partial rotation leaves the tail untouched and keeps the dtype.
    x = torch.randn(6, 40, dtype=torch.bfloat16)
    y = apply_rotary(x, cos, sin)
    assert y.dtype == torch.bfloat16 and torch.equal(y[:, 32:], x[:, 32:])


# ----------------------------------------------------------------------------- forward behaviour


def test_one_dim_t_equals_broadcast(tiny, inputs):
    x, _, cond = inputs
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        torch.testing.assert_close(tiny(x, t, cond), tiny(x, t[:, None].expand(-1, tiny.num_tracks), cond))


def test_batch_mates_independent(tiny, inputs):
    x, t, cond = inputs
    with torch.no_grad():
        both = tiny(x, t, cond)
        alone = tiny(x[1:], t[1:], cond[1:])
        other = tiny(torch.cat((x[1:], torch.randn_like(x[:1]) * 5)), torch.cat((t[1:], t[:1])), cond.flip(0))
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(other[:1], alone, atol=1e-5, rtol=1e-5)


def test_cfg_scale_one_is_single_pass_and_combination(tiny, inputs):
    x, t, cond = inputs
    with torch.no_grad():
        cond_out = tiny(x, t, cond)
        uncond_out = tiny(x, t, torch.zeros_like(cond))
        torch.testing.assert_close(tiny(x, t, cond, cfg_scale=1.0), cond_out, atol=0, rtol=0)
        expected = uncond_out + 2.5 * (cond_out - uncond_out)
        torch.testing.assert_close(tiny(x, t, cond, cfg_scale=2.5), expected, atol=1e-5, rtol=1e-5)
        phi = 0.7
        std_c, std_g = cond_out.std(dim=1, keepdim=True), expected.std(dim=1, keepdim=True)
        rescaled = phi * expected * std_c / std_g + (1 - phi) * expected
        torch.testing.assert_close(tiny(x, t, cond, cfg_scale=2.5, scale_phi=phi), rescaled, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cond_out, uncond_out)


def test_cfg_dropout(inputs, reference_fixtures):
    model = _load_tiny(reference_fixtures).train()
    x, t, cond = inputs
    with torch.no_grad():
        zero = model(x, t, torch.zeros_like(cond))
        full = model(x, t, cond)
        torch.testing.assert_close(model(x, t, cond, cfg_dropout_prob=1.0), zero, atol=0, rtol=0)
        torch.testing.assert_close(model(x, t, cond, cfg_dropout_prob=0.0), full, atol=0, rtol=0)
        model.eval()  # no dropout outside training
        torch.testing.assert_close(model(x, t, cond, cfg_dropout_prob=1.0), full, atol=0, rtol=0)
    # Per (sample, track), reproducible with a generator, each vector either kept or zeroed.
    g = torch.randn(64, 3, 16)
    dropped = model.cfg_dropout(g, 0.5, torch.Generator().manual_seed(3))
    again = model.cfg_dropout(g, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(dropped, again)
    is_zero = (dropped == 0).all(dim=-1)
    kept = (dropped == g).all(dim=-1)
    assert torch.all(is_zero ^ kept)
    assert 0.3 < is_zero.float().mean() < 0.7
    rows_mixed = (is_zero.any(dim=1) & kept.any(dim=1)).sum()
    assert rows_mixed > 0  # tracks of one sample are dropped independently


def test_bf16_autocast_close_to_fp32(tiny, inputs):
    x, t, cond = inputs
    with torch.no_grad():
        ref = tiny(x, t, cond)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = tiny(x, t, cond)
            out_cfg = tiny(x, t, cond, cfg_scale=3.0)
    assert out.dtype == x.dtype and torch.isfinite(out).all() and torch.isfinite(out_cfg).all()
    assert (out - ref).abs().max() < 2e-2 * ref.abs().max()


@pytest.mark.reference
def test_other_weight_dtypes(reference_fixtures, inputs):
    """A model cast to float64 reproduces the reference tightly; one cast to bf16 runs and stays close."""
    x, t, cond = inputs
    ref = reference_fixtures.cases["dit_out_t3"]
    with torch.no_grad():
        out64 = _load_tiny(reference_fixtures).double()(x, t, cond)
        out16 = _load_tiny(reference_fixtures).to(torch.bfloat16)(x, t, cond)
    assert out64.dtype == torch.float32 and out16.dtype == torch.float32
    assert (out64 - ref).abs().max() < 2e-5 * ref.abs().max()
    assert (out16 - ref).abs().max() < 5e-2 * ref.abs().max()


def test_activation_checkpointing_same_grads(reference_fixtures, inputs):
    x, t, cond = inputs
    grads = []
    for flag in (False, True):
        model = _load_tiny(reference_fixtures).train()
        model.gradient_checkpointing = flag
        xi = x.clone().requires_grad_(True)
        loss = model(xi, t, cond).square().mean()
        loss.backward()
        grads.append([xi.grad] + [p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_compiles_without_graph_breaks(tiny, inputs):
    x, t, cond = inputs
    model = copy.deepcopy(tiny)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t, cond), tiny(x, t, cond))
        torch.testing.assert_close(compiled(x, t, cond, cfg_scale=3.0), tiny(x, t, cond, cfg_scale=3.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_uses_flash_attention(reference_fixtures, inputs):
    """Under bf16 autocast the attention must run on the flash kernel (no silent math fallback)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = _load_tiny(reference_fixtures).cuda()
    x, t, cond = (v.cuda() for v in inputs)
    with torch.no_grad():
        ref = model(x, t, cond)
        with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = model(x, t, cond)
    assert (out - ref).abs().max() < 2e-2 * ref.abs().max()


# ----------------------------------------------------------------------------- config


def test_build_dit_rejects_bad_config(reference_fixtures):
    base = dict(reference_fixtures.readme["mgeldm"])
    for change in (
        {"global_cond_grouped": False},
        {"norm_type": "layernorm"},
        {"use_t_emb_trackwise": False},
        {"diffusion_objective": "rectified_flow"},
        {"depht": 3},
    ):
        with pytest.raises(UserError):
            build_dit({**base, **change})
    with pytest.raises(UserError):
        build_dit({k: v for k, v in base.items() if k != "depth"})
    with pytest.raises(ValueError):
        build_dit(base)(torch.zeros(1, 5, 4), torch.zeros(1), None)


def test_adagn_timestep_option_feeds_t_to_every_block(reference_fixtures, inputs):
    """Off (the original), the blocks' modulation ignores t; on, each track's t moves its own slice only."""
    x, t, cond = inputs
    plain = _load_tiny(reference_fixtures)
    on = build_dit({**reference_fixtures.readme["mgeldm"], "adagn_timestep": True})
    on.load_state_dict(plain.state_dict(), strict=True)  # the same weights and keys
    on.eval()
    seen = {}
    for name, model in (("plain", plain), ("on", on)):

        def grab(_m, args, name=name):
            seen.setdefault(name, []).append(args[1].detach().clone())

        hook = model.transformer.layers[0].register_forward_pre_hook(grab)
        with torch.no_grad():
            model(x, t, global_embed=cond)
            t2 = t.clone()
            t2[:, 1] = (t2[:, 1] + 0.3) % 1.0
            model(x, t2, global_embed=cond)
        hook.remove()
    assert torch.equal(seen["plain"][0], seen["plain"][1])  # block condition independent of t
    e, k = on.embed_dim, on.num_tracks
    _check_only_slice_moves(seen["on"][0], seen["on"][1], 1, k, e)  # only track 1's slice moves
    with pytest.raises(UserError, match="adagn_timestep"):
        build_dit({**reference_fixtures.readme["mgeldm"], "adagn_timestep": "yes"})


def _small_dit(**options) -> MGEDiT:
    torch.manual_seed(0)
    model = MGEDiT(
        io_channels=4,
        num_tracks=3,
        embed_dim=32,
        global_cond_dim=8,
        timestep_features_dim=16,
        depth=2,
        num_heads=3,
        **options,
    )
    with torch.no_grad():  # past the zero-init, so every branch (and any mix-up of frames) shows in the output
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def test_patch_size_groups_frames_into_tokens():
    """p frames per token: the transformer sees T/p tokens of p*K*C features (frame-major), and only project_in
    and project_out change shape; a token's frames are its own (a frame of token j moves no other token's
    frames through the embedding alone)."""
    plain, patched = _small_dit(), _small_dit(patch_size=2)
    shapes = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    changed = {k for k, v in patched.state_dict().items() if tuple(v.shape) != shapes[k]}
    assert changed == {"transformer.project_in.weight", "transformer.project_out.weight"}
    assert patched.transformer.project_in.weight.shape == (96, 2 * 12)
    seen = {}
    patched.transformer.layers[0].register_forward_pre_hook(lambda _m, args: seen.update(h=args[0].detach()))
    x, t, cond = torch.randn(2, 12, 8), torch.rand(2, 3), torch.randn(2, 3, 8)
    with torch.no_grad():
        out = patched(x, t, cond)
        assert out.shape == x.shape and seen["h"].shape == (2, 1 + 4, 96)  # timestep token + 8 / 2 tokens
        xt = x.transpose(1, 2)
        pre = xt + F.linear(xt, patched.preprocess_conv.weight[:, :, 0])
        expected = patched.transformer.project_in(pre.reshape(2, 4, 24))  # frames 2j, 2j+1 -> token j
        torch.testing.assert_close(seen["h"][:, 1:], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        patched(torch.randn(1, 12, 7), torch.rand(1), None)
    for bad in (0, 1.5, "2", True):
        with pytest.raises(UserError, match="patch_size"):
            _small_dit(patch_size=bad)


def test_cond_token_lets_attention_read_the_condition():
    """cond_token prepends c after the timestep token (same weights and keys); off, the blocks' input has only
    the timestep token before the frames."""
    plain, on = _small_dit(), _small_dit(cond_token=True)
    on.load_state_dict(plain.state_dict(), strict=True)
    seen = {}
    for name, model in (("plain", plain), ("on", on)):
        model.transformer.layers[0].register_forward_pre_hook(
            lambda _m, args, name=name: seen.update({name: args[0].detach()})
        )
    x, t, cond = torch.randn(2, 12, 8), torch.rand(2, 3), torch.randn(2, 3, 8)
    with torch.no_grad():
        out_plain, out_on = plain(x, t, cond), on(x, t, cond)
        c = _run_grouped_mlp(on.to_global_embed, cond.reshape(2, -1))
    assert seen["plain"].shape[1] == 1 + 8 and seen["on"].shape[1] == 2 + 8
    torch.testing.assert_close(seen["on"][:, 1], c, rtol=1e-5, atol=1e-6)
    assert out_on.shape == out_plain.shape and not torch.allclose(out_on, out_plain)


def test_conv_kernel_filters_only_the_frame_tokens_and_starts_as_off():
    """conv_kernel k: a depthwise conv (zero-initialised) over the frame tokens, added to each block's FF input;
    a new model therefore computes what the same weights compute without it, and the conv never sees the
    prepended tokens."""
    torch.manual_seed(0)
    fresh = MGEDiT(
        io_channels=4,
        num_tracks=3,
        embed_dim=32,
        global_cond_dim=8,
        timestep_features_dim=16,
        depth=2,
        num_heads=3,
        conv_kernel=5,
    )
    assert all(float(layer.conv.weight.detach().abs().sum()) == 0 for layer in fresh.transformer.layers)
    plain = _small_dit()
    on = _small_dit(conv_kernel=5)
    missing = on.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(f"transformer.layers.{i}.conv.{p}" for i in range(2) for p in ("weight", "bias"))
    x, t, cond = torch.randn(2, 12, 8), torch.rand(2, 3), torch.randn(2, 3, 8)
    with torch.no_grad():
        for layer in on.transformer.layers:
            layer.conv.weight.zero_()
            layer.conv.bias.zero_()
        torch.testing.assert_close(on(x, t, cond), plain(x, t, cond), rtol=1e-6, atol=1e-6)
        seen = []
        on.transformer.layers[0].conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
        on.transformer.layers[0].conv.weight.normal_(0.0, 0.2)
        assert not torch.allclose(on(x, t, cond), plain(x, t, cond))
        assert seen == [(2, 96, 8)]  # the 8 frames, not the timestep token
    assert on.transformer.layers[0].conv.weight.shape == (96, 1, 5)
    for bad in (2, -1, True, 1.5):
        with pytest.raises(UserError, match="conv_kernel"):
            _small_dit(conv_kernel=bad)
