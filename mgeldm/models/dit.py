"""The three-track diffusion transformer of MGE-LDM (``model_dit``), docs/compatibility.md#the-diffusion-transformer.

Input x (B, K*C, T) holds K tracks of C latent channels (track-major: mix, submix, source), t is the
diffusion time per sample (B,) or per track (B, K), global_embed (B, K, G) one CLAP vector per track.
The output is the v prediction (B, K*C, T).

Data flow (D = K*E, N = T + 1):
  t -> Fourier features per track (cos first) -> grouped MLP -> one timestep token (B, D), prepended
  CLAP (B, K, G) -> grouped MLP (no bias) -> c (B, D); track k's vector feeds only slice k of c
  x -> x + PreConv(x) -> project_in -> [token ; x] -> 24 AdaGN blocks (RoPE self-attention + GLU FF,
  modulated by c, per-track channel slices) -> project_out -> drop token -> + PostConv

Precision: under autocast the matmuls run in bf16/fp16 while the Fourier features, the RoPE
angles and rotation, the group-norm statistics and the residual stream stay float32 (the original
kept the residual in the autocast dtype; float32 is the safer choice for fp16 training). A model
cast to another dtype without autocast runs entirely in that dtype. Output dtype = x's dtype.

Speed: RoPE cos/sin are built once per forward; the norm and AdaGN modulation are one affine map
on the big tensor; attention is ``F.scaled_dot_product_attention`` (flash kernel on CUDA); there is
no data-dependent Python control flow, so ``torch.compile(model, fullgraph=True)`` traces it whole.
``gradient_checkpointing`` (flag or attribute) recomputes each block in backward.

State-dict names and shapes are the original's (``full_mgeldm_state_dict.tsv`` without ``model_dit.``).
The grouped 1x1 convolutions keep ``nn.Conv1d`` parameters (names, shapes, default init); they run as the
grouped conv when gradients are recorded and as one batched matmul over the groups when not (the same map).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mgeldm import checks
from mgeldm.errors import UserError
from mgeldm.nn.norms import GroupNorm
from mgeldm.nn.rotary import RotaryEmbedding, apply_rotary

FF_MULT = 4  # FF hidden width = 4 * D (fixed in the original)


def grouped_conv1x1(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """Apply a kernel-1, ``groups=K`` Conv1d to per-sample vectors x (B, K*in) -> (B, K*out).

    Group k's input slice maps only to its output slice, exactly as the conv on (B, K*in, 1). Two ways to
    compute it, picked by whether autograd records the call (a fact fixed per call site, so torch.compile
    keeps one graph): when it does, ``F.conv1d`` with groups (the original's op), whose weight gradient is
    computed in the parameter's own (K*out, in, 1) layout, so nothing is copied into it, and whose input
    gradient is fast; when it does not (sampling), one batched matmul over the K groups on a view of the
    weight, the fastest forward (benchmarks/bench_grouped_conv.py measures the three ways).
    """
    x = x.to(conv.weight.dtype)  # a bf16/fp64 model gets float32 features; under autocast the op casts anyway
    if torch.is_grad_enabled() and (conv.weight.requires_grad or x.requires_grad):
        return F.conv1d(x[:, :, None], conv.weight, conv.bias, groups=conv.groups)[:, :, 0]
    k, b = conv.groups, x.shape[0]
    w = conv.weight.view(k, conv.out_channels // k, conv.in_channels // k)
    y = torch.bmm(w, x.reshape(b, k, -1).permute(1, 2, 0)).permute(2, 0, 1).reshape(b, -1)
    return y if conv.bias is None else y + conv.bias


def _grouped_mlp(num_tracks: int, d_in: int, d_hidden: int, d_out: int, bias: bool) -> nn.Sequential:
    """Sequential whose indices 1 and 3 are the grouped convs (the original's key layout)."""
    return nn.Sequential(
        nn.Identity(),  # index 0: the original's reshape to (B, K*in, 1); no parameters
        nn.Conv1d(d_in, d_hidden, 1, groups=num_tracks, bias=bias),
        nn.SiLU(),
        nn.Conv1d(d_hidden, d_out, 1, groups=num_tracks, bias=bias),
    )


def _run_grouped_mlp(mlp: nn.Sequential, x: Tensor) -> Tensor:
    return grouped_conv1x1(F.silu(grouped_conv1x1(x, mlp[1])), mlp[3])


class FourierFeatures(nn.Module):
    """Learned random Fourier features: [cos(2π t W), sin(2π t W)] with W (F/2, 1)."""

    def __init__(self, out_features: int, std: float = 1.0) -> None:
        super().__init__()
        if out_features % 2:
            raise UserError(f"timestep_features_dim must be even, got {out_features}")
        self.weight = nn.Parameter(torch.randn(out_features // 2, 1) * std)

    def forward(self, t: Tensor) -> Tensor:
        """t (...,) -> (..., F), float32. Element-wise (the inner dim is 1), so autocast can't lower it."""
        f = (2 * math.pi * t.float())[..., None] * self.weight[:, 0].float()
        return torch.cat((f.cos(), f.sin()), dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RoPE on q and k, no mask; q|k|v split, head-outer channels."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.to_qkv(x).view(b, n, 3, self.num_heads, self.head_dim)
        # RoPE on q and k together; cos/sin (N, 1, 1, rot) broadcast over (q|k, heads).
        qk = apply_rotary(qkv[:, :, :2], cos[:, None, None, :], sin[:, None, None, :])
        q, k = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2)  # (B, H, N, hd) views
        v = qkv[:, :, 2].transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))


class GLU(nn.Module):
    """proj -> value (first half) * SiLU(gate (second half))."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.silu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = FF_MULT) -> None:
        super().__init__()
        inner = dim * mult
        # Indices 1 and 3 of the original are parameter-free (dropout 0 / identity).
        self.ff = nn.Sequential(GLU(dim, inner), nn.Identity(), nn.Linear(inner, dim), nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return self.ff(x)


class TransformerBlock(nn.Module):
    """AdaGN block: per-track modulation from c, group-norm over the window, gated residuals.

    x <- x + Attn(GN(x)(1+s_a) + b_a) * sigmoid(1 - g_a)
    x <- x + FF  (GN(x)(1+s_f) + b_f) * sigmoid(1 - g_f)
    """

    def __init__(self, dim: int, num_heads: int, num_groups: int, conv_kernel: int = 0) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.pre_norm = GroupNorm(dim, num_groups)
        self.self_attn = SelfAttention(dim, num_heads)
        self.ff_norm = GroupNorm(dim, num_groups)
        self.ff = FeedForward(dim)
        self.to_scale_shift_gate = nn.Sequential(
            nn.Identity(),  # index 0: reshape in the original
            nn.SiLU(),
            nn.Conv1d(dim, 6 * dim, 1, groups=num_groups, bias=False),
        )
        # Not in the original (conv_kernel 0): a depthwise convolution over the frame tokens added to the FF's
        # input, a linear filter along time that attention learns only slowly (zero-initialised: starts as off).
        self.conv = nn.Conv1d(dim, dim, conv_kernel, padding=conv_kernel // 2, groups=dim) if conv_kernel else None

    def modulation(self, cond: Tensor) -> Tensor:
        """c (B, D) -> (6, B, 1, D): scale_a, shift_a, gate_a, scale_f, shift_f, gate_f.

        Each group's 6*E outputs are 6 chunks of E in that order; chunk j of all groups,
        concatenated track-major, is modulation j.
        """
        b, d = cond.shape
        m = grouped_conv1x1(F.silu(cond), self.to_scale_shift_gate[2])
        m = m.view(b, self.num_groups, 6, d // self.num_groups).permute(2, 0, 1, 3)
        return m.reshape(6, b, 1, d)

    def forward(self, x: Tensor, cond: Tensor, cos: Tensor, sin: Tensor, prefix: int = 1) -> Tensor:
        """``prefix``: the prepended tokens before the frames (the optional convolution skips them)."""
        scale_a, shift_a, gate_a, scale_f, shift_f, gate_f = self.modulation(cond)
        h = self.self_attn(self.pre_norm.modulate(x, scale_a, shift_a), cos, sin)
        x = torch.addcmul(x, h, torch.sigmoid(1.0 - gate_a.float()).to(x.dtype))
        h = self.ff_norm.modulate(x, scale_f, shift_f)
        if self.conv is not None:
            frames = h[:, prefix:]
            filtered = self.conv(frames.transpose(1, 2).to(self.conv.weight.dtype)).transpose(1, 2).to(h.dtype)
            h = torch.cat((h[:, :prefix], frames + filtered), dim=1)
        h = self.ff(h)
        return torch.addcmul(x, h, torch.sigmoid(1.0 - gate_f.float()).to(x.dtype))


class ContinuousTransformer(nn.Module):
    """project_in -> prepend tokens -> blocks -> project_out (keys ``transformer.*``)."""

    def __init__(
        self, dim_in: int, dim: int, depth: int, num_heads: int, num_groups: int, conv_kernel: int = 0
    ) -> None:
        super().__init__()
        head_dim = dim // num_heads
        rot_dim = max(head_dim // 2, 32)
        if rot_dim > head_dim:
            raise UserError(f"head dim {head_dim} (embed_dim*num_tracks/num_heads) must be >= 32 for RoPE")
        self.layers = nn.ModuleList([TransformerBlock(dim, num_heads, num_groups, conv_kernel) for _ in range(depth)])
        self.project_in = nn.Linear(dim_in, dim, bias=False)
        self.project_out = nn.Linear(dim, dim_in, bias=False)
        self.rotary_pos_emb = RotaryEmbedding(rot_dim)
        self.gradient_checkpointing = False

    def forward(self, x: Tensor, prepend: Tensor, cond: Tensor) -> Tensor:
        """x (B, T, dim_in), prepend (B, P, dim), cond (B, dim) -> (B, P+T, dim_in)."""
        # Residual stream kept in the input's dtype (float32 under autocast) for stable sums.
        h = torch.cat((prepend.to(x.dtype), self.project_in(x).to(x.dtype)), dim=1)
        cos, sin = self.rotary_pos_emb.cos_sin(h.shape[1], device=h.device)
        prefix = prepend.shape[1]
        for layer in self.layers:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                h = checkpoint(layer, h, cond, cos, sin, prefix, use_reentrant=False)
            else:
                h = layer(h, cond, cos, sin, prefix)
        return self.project_out(h)


def _checked_options(patch_size: int, cond_token: bool, conv_kernel: int) -> tuple[int, bool, int]:
    """Check the options the original lacks (all off by default) and return them normalised.

    patch_size: 1 in the original (one token per latent frame); p > 1 puts p consecutive frames of all tracks in
    one token (project_in/out widen to p*K*C), so a window of T frames costs T/p tokens.
    cond_token: off in the original (the conditions reach the blocks only through AdaGN); on, the condition
    vector c is also prepended as a token after the timestep token, so attention can read the prompt.
    conv_kernel: 0 in the original; an odd k adds a zero-initialised depthwise conv over the frame tokens to
    each block's feed-forward input.
    """
    if not checks.is_integer(patch_size) or patch_size < 1:
        raise UserError(f"DiT config (MGELDM node): patch_size={patch_size!r}; expected an integer >= 1")
    if not checks.is_integer(conv_kernel) or conv_kernel < 0 or (conv_kernel and conv_kernel % 2 == 0):
        raise UserError(
            f"DiT config (MGELDM node): conv_kernel={conv_kernel!r}; expected 0 (off) or an odd integer >= 1"
        )
    return int(patch_size), bool(cond_token), int(conv_kernel)


class MGEDiT(nn.Module):
    """The three-track DiT. See the module docstring; docs/compatibility.md#the-diffusion-transformer for every
    detail."""

    def __init__(
        self,
        *,
        io_channels: int = 64,
        num_tracks: int = 3,
        embed_dim: int = 512,
        global_cond_dim: int = 512,
        timestep_features_dim: int = 256,
        depth: int = 24,
        num_heads: int = 48,
        gradient_checkpointing: bool = False,
        adagn_timestep: bool = False,
        patch_size: int = 1,
        cond_token: bool = False,
        conv_kernel: int = 0,
    ) -> None:
        super().__init__()
        k = num_tracks
        dim = embed_dim * k
        if dim % num_heads:
            raise UserError(f"embed_dim*num_tracks = {dim} is not divisible by num_heads {num_heads}")
        self.io_channels = io_channels
        self.num_tracks = num_tracks
        self.global_cond_dim = global_cond_dim
        self.embed_dim = embed_dim
        self.dim = dim
        self.depth = depth
        self.num_heads = num_heads
        # Off in the original: t reaches the blocks only through the prepended token. On, each track's
        # timestep embedding is also added to its condition slice before the AdaGN modulation, so every
        # block sees its track's noise level directly (no new weights: the same timestep MLP feeds both).
        self.adagn_timestep = bool(adagn_timestep)
        self.patch_size, self.cond_token, self.conv_kernel = _checked_options(patch_size, cond_token, conv_kernel)
        c_in = io_channels * k

        # Registration order = the original's state_dict order.
        self.timestep_features = FourierFeatures(timestep_features_dim)
        self.to_timestep_embed = _grouped_mlp(k, k * timestep_features_dim, dim, dim, bias=True)
        self.to_global_embed = _grouped_mlp(k, k * global_cond_dim, k * global_cond_dim, dim, bias=False)
        self.transformer = ContinuousTransformer(
            c_in * self.patch_size, dim, depth, num_heads, num_groups=k, conv_kernel=self.conv_kernel
        )
        self.preprocess_conv = nn.Conv1d(c_in, c_in, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(c_in, c_in, 1, bias=False)
        self.gradient_checkpointing = gradient_checkpointing
        self._init_weights()

    @property
    def gradient_checkpointing(self) -> bool:
        """Recompute each block in backward (saves activation memory in training)."""
        return self.transformer.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, value: bool) -> None:
        self.transformer.gradient_checkpointing = bool(value)

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Zero-init the branch outputs and pre/post convs, then halve every parameter
        (docs/compatibility.md#the-diffusion-transformer)."""
        zero = [self.preprocess_conv.weight, self.postprocess_conv.weight]
        for layer in self.transformer.layers:
            zero += [layer.self_attn.to_out.weight, layer.ff.ff[2].weight, layer.ff.ff[2].bias]
            zero += [layer.to_scale_shift_gate[2].weight]
            if layer.conv is not None:
                zero += [layer.conv.weight, layer.conv.bias]
        for p in zero:
            p.zero_()
        for p in self.parameters():
            p.mul_(0.5)

    # ------------------------------------------------------------------ forward

    def _expand_t(self, t: Tensor | float, batch: int, device: torch.device) -> Tensor:
        """t as (B, K) float32: a scalar or (B,) is shared by all tracks."""
        t = torch.as_tensor(t, dtype=torch.float32, device=device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.dim() == 1:
            t = t[:, None].expand(t.shape[0], self.num_tracks)
        if t.shape != (batch, self.num_tracks):
            raise ValueError(f"t must be (B,) or (B, {self.num_tracks}) with B={batch}, got {tuple(t.shape)}")
        return t

    def cfg_dropout(self, global_embed: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
        """Replace each (sample, track) CLAP vector by zeros with probability ``prob``."""
        b, k = global_embed.shape[:2]
        gen_device = generator.device if generator is not None else global_embed.device
        drop = torch.rand((b, k, 1), generator=generator, device=gen_device).to(global_embed.device) < prob
        return global_embed.masked_fill(drop, 0.0)

    def _forward(self, x: Tensor, t: Tensor, global_embed: Tensor) -> Tensor:
        """One pass: x (B, K*C, T), t (B, K), global_embed (B, K, G) -> (B, K*C, T)."""
        b = x.shape[0]
        out_dtype = x.dtype
        if not torch.is_autocast_enabled(x.device.type):
            # No autocast: run in the weights' dtype (a model cast to bf16 / fp64 with fp32 inputs).
            x = x.to(self.preprocess_conv.weight.dtype)
        temb = _run_grouped_mlp(self.to_timestep_embed, self.timestep_features(t).reshape(b, -1))
        cond = _run_grouped_mlp(self.to_global_embed, global_embed.reshape(b, -1))
        if self.adagn_timestep:
            cond = cond + temb.to(cond.dtype)

        xt = x.transpose(1, 2)  # (B, T, K*C) view
        xt = xt + F.linear(xt, self.preprocess_conv.weight[:, :, 0])
        frames, p = xt.shape[1], self.patch_size
        tokens = xt.reshape(b, frames // p, p * xt.shape[2]) if p > 1 else xt  # p frames per token
        prepend = torch.stack((temb, cond.to(temb.dtype)), 1) if self.cond_token else temb[:, None, :]
        out = self.transformer(tokens, prepend, cond)[:, prepend.shape[1] :]  # drop the prepended tokens
        out = out.reshape(b, frames, -1) if p > 1 else out
        out = out + F.linear(out, self.postprocess_conv.weight[:, :, 0])
        return out.transpose(1, 2).to(out_dtype).contiguous()

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        global_embed: Tensor | None,
        cfg_scale: float = 1.0,
        cfg_dropout_prob: float = 0.0,
        scale_phi: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """v-hat (B, K*C, T).

        * ``t`` (B,) is shared by all tracks; (B, K) gives each track its own time.
        * ``global_embed`` None means all-zero conditions (unconditional).
        * Training mode with ``cfg_dropout_prob`` > 0: each (sample, track) condition is zeroed with
          that probability (``generator`` makes it reproducible; torch.compile cannot trace a
          generator, so with ``fullgraph=True`` call ``cfg_dropout`` before the compiled model and
          pass ``cfg_dropout_prob=0``).
        * ``cfg_scale`` != 1: the batch is doubled, the second half with all-zero conditions, and
          ``v_u + s (v_c - v_u)`` is returned. ``scale_phi`` != 0 then applies the CFG rescale of
          stable-audio-tools: with std over the channel dim (unbiased),
          ``v = phi * v_cfg * std(v_c) / std(v_cfg) + (1 - phi) * v_cfg``.
        """
        b = x.shape[0]
        expected_c = self.io_channels * self.num_tracks
        if x.dim() != 3 or x.shape[1] != expected_c or x.shape[2] % self.patch_size:
            raise ValueError(
                f"x must be (B, {expected_c}, T) with T a multiple of patch_size={self.patch_size}, "
                f"got {tuple(x.shape)}"
            )
        t = self._expand_t(t, b, x.device)
        if global_embed is None:
            global_embed = x.new_zeros(b, self.num_tracks, self.global_cond_dim)
        if global_embed.shape != (b, self.num_tracks, self.global_cond_dim):
            raise ValueError(
                f"global_embed must be (B, {self.num_tracks}, {self.global_cond_dim}), got {tuple(global_embed.shape)}"
            )
        if self.training and cfg_dropout_prob > 0.0:
            global_embed = self.cfg_dropout(global_embed, cfg_dropout_prob, generator)

        if cfg_scale == 1.0:
            return self._forward(x, t, global_embed)
        return self._forward_cfg(x, t, global_embed, cfg_scale, scale_phi)

    def _forward_cfg(self, x: Tensor, t: Tensor, global_embed: Tensor, cfg_scale: float, scale_phi: float) -> Tensor:
        """Classifier-free guidance: one pass on the doubled batch (second half unconditional), then
        ``v_u + s (v_c - v_u)`` in float32, CFG-rescaled when ``scale_phi`` != 0 (see :meth:`forward`)."""
        both = self._forward(
            torch.cat((x, x)), torch.cat((t, t)), torch.cat((global_embed, torch.zeros_like(global_embed)))
        )
        cond_out, uncond_out = both.float().chunk(2)
        out = uncond_out + (cond_out - uncond_out) * cfg_scale
        if scale_phi != 0.0:
            rescaled = out * (cond_out.std(dim=1, keepdim=True) / out.std(dim=1, keepdim=True))
            out = scale_phi * rescaled + (1.0 - scale_phi) * out
        return out.to(x.dtype)


_REQUIRED = (
    "io_channels",
    "num_tracks",
    "embed_dim",
    "global_cond_dim",
    "timestep_features_dim",
    "depth",
    "num_heads",
)
# Keys the node may carry that the DiT itself does not use (the MGELDM wrapper reads them).
_ACCEPTED = set(_REQUIRED) | {
    "global_cond_grouped",
    "norm_type",
    "use_t_emb_trackwise",
    "diffusion_objective",
    "global_cond_keys",
    "gradient_checkpointing",
    "adagn_timestep",
    "patch_size",
    "cond_token",
    "conv_kernel",
}


def build_dit(cfg: Mapping[str, Any]) -> MGEDiT:
    """Build ``MGEDiT`` from the fixture README "mgeldm" block or the ``MGELDM`` node of configs/model/dit.yaml."""
    unknown = sorted(set(cfg.keys()) - _ACCEPTED)
    if unknown:
        raise UserError(f"DiT config (MGELDM node): unknown keys {unknown}; expected some of {sorted(_ACCEPTED)}")
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise UserError(f"DiT config (MGELDM node): missing keys {missing}")
    # Only the variants the original can actually run are supported (docs/compatibility.md#the-diffusion-transformer,
    # difference 5).
    if not cfg.get("global_cond_grouped", True):
        raise UserError("DiT config: global_cond_grouped must be true (the ungrouped path is broken in the original)")
    if cfg.get("norm_type", "groupnorm") != "groupnorm":
        raise UserError(f"DiT config: norm_type must be 'groupnorm', got {cfg.get('norm_type')!r}")
    if not cfg.get("use_t_emb_trackwise", True):
        raise UserError("DiT config: use_t_emb_trackwise must be true")
    if cfg.get("diffusion_objective", "v") != "v":
        raise UserError(f"DiT config: diffusion_objective must be 'v', got {cfg.get('diffusion_objective')!r}")
    return MGEDiT(
        io_channels=int(cfg["io_channels"]),
        num_tracks=int(cfg["num_tracks"]),
        embed_dim=int(cfg["embed_dim"]),
        global_cond_dim=int(cfg["global_cond_dim"]),
        timestep_features_dim=int(cfg["timestep_features_dim"]),
        depth=int(cfg["depth"]),
        num_heads=int(cfg["num_heads"]),
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing", False)),
        adagn_timestep=_flag(cfg, "adagn_timestep"),
        patch_size=cfg.get("patch_size", 1),
        cond_token=_flag(cfg, "cond_token"),
        conv_kernel=cfg.get("conv_kernel", 0),
    )


def _flag(cfg: Mapping[str, Any], key: str) -> bool:
    """An optional boolean key of the MGELDM node (absent = False); anything but a boolean is refused."""
    value = cfg.get(key, False)
    if not isinstance(value, bool):
        raise UserError(f"DiT config (MGELDM node): {key}={value!r}; expected true or false")
    return value
