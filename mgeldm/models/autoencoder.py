"""The Oobleck-style VAE (docs/compatibility.md#the-autoencoder): encoder, VAE bottleneck, decoder, and the frozen
pretransform.

State-dict keys are those of the original (``encoder.layers.i...``, ``decoder.layers.i...``, with
``weight_g`` / ``weight_v`` for every convolution), so its checkpoints load strictly.

Audio ``(B, io_channels, L)`` with ``L`` a multiple of ``downsampling_ratio`` encodes to latents
``(B, latent_dim, L / ratio)``; the encoder itself emits ``2 * latent_dim`` channels (mean ‖ scale).

Chunked mode (``encode_audio`` / ``decode_audio`` with ``chunked=True``) bounds memory for long
inputs: windows of ``chunk_size`` latent frames, hop ``chunk_size - overlap``, cross-faded with the
two halves of a periodic Bartlett window of length ``2 * overlap`` (latent domain when encoding,
sample domain when decoding; the fades of neighbouring chunks sum to one, which needs
``2 * overlap <= chunk_size``). Encoding zero-pads the end of the audio, decoding reflect-pads the
latents, as the original does. Chunks are processed ``max_batch_size`` windows at a time and
overlap-added straight into the output (full size, 180 s on an H200: peak 7.5 GiB -> 1.8 GiB for
decoding, about 25 % slower). Two deliberate differences from the original: an input that fits in
one window is processed in one pass (the original padded it, and crashed when reflect padding
was longer than the latents), and the original's ``2 * overlap > chunk_size`` (three windows over
one frame, fades no longer summing to one) is refused.

Inference speed-ups, both opt-in on the model and outputs-preserving: ``fold_weight_norm()``
(compute each conv's weight once; the pretransform does it) and ``fuse_activations()`` (one
compiled kernel per SnakeBeta on CUDA, ~1.5x on an H200).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mgeldm.audio import SAMPLE_RATE
from mgeldm.errors import UserError
from mgeldm.nn.activations import SnakeBeta
from mgeldm.nn.conv import WNConv1d, WNConvTranspose1d, fold_weight_norm, unfold_weight_norm

__all__ = [
    "AudioAutoencoder",
    "AutoencoderPretransform",
    "DecoderBlock",
    "EncoderBlock",
    "OobleckDecoder",
    "OobleckEncoder",
    "ResidualUnit",
    "VAEBottleneck",
    "build_autoencoder",
    "build_pretransform",
    "vae_kl",
]

DEFAULT_SAMPLE_RATE = SAMPLE_RATE  # used only when an AE config omits `sample_rate`
_STD_FLOOR = 1e-4  # sigma = softplus(scale) + 1e-4


def _activation(use_snake: bool, channels: int) -> nn.Module:
    return SnakeBeta(channels) if use_snake else nn.ELU()


# ----------------------------------------------------------------------------------- blocks


class ResidualUnit(nn.Module):
    """act → WNConv1d(k7, dilation d) → act → WNConv1d(k1), plus the input."""

    def __init__(self, channels: int, dilation: int, use_snake: bool = True) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _activation(use_snake, channels),
            WNConv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation),
            _activation(use_snake, channels),
            WNConv1d(channels, channels, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x) + x


class EncoderBlock(nn.Module):
    """Three residual units (d = 1, 3, 9), act, then a strided WNConv1d dividing the length by ``stride``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, use_snake: bool = True) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ResidualUnit(in_channels, 1, use_snake),
            ResidualUnit(in_channels, 3, use_snake),
            ResidualUnit(in_channels, 9, use_snake),
            _activation(use_snake, in_channels),
            WNConv1d(in_channels, out_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class DecoderBlock(nn.Module):
    """act, a WNConvTranspose1d multiplying the length by ``stride``, then residual units (d = 1, 3, 9)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, use_snake: bool = True) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _activation(use_snake, in_channels),
            WNConvTranspose1d(
                in_channels, out_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
            ),
            ResidualUnit(out_channels, 1, use_snake),
            ResidualUnit(out_channels, 3, use_snake),
            ResidualUnit(out_channels, 9, use_snake),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class OobleckEncoder(nn.Module):
    """``layers``: WNConv1d(k7) · EncoderBlock × len(strides) · act · WNConv1d(k3) → ``latent_dim`` channels."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        latent_dim: int,
        c_mults: Sequence[int],
        strides: Sequence[int],
        use_snake: bool = True,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in [1, *c_mults]]
        layers: list[nn.Module] = [WNConv1d(in_channels, widths[0], kernel_size=7, padding=3)]
        layers += [EncoderBlock(widths[i], widths[i + 1], strides[i], use_snake) for i in range(len(strides))]
        layers += [_activation(use_snake, widths[-1]), WNConv1d(widths[-1], latent_dim, kernel_size=3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class OobleckDecoder(nn.Module):
    """``layers``: WNConv1d(k7) · DecoderBlock × len(strides) · act · WNConv1d(k7, no bias) · Tanh/Identity."""

    def __init__(
        self,
        out_channels: int,
        channels: int,
        latent_dim: int,
        c_mults: Sequence[int],
        strides: Sequence[int],
        use_snake: bool = True,
        final_tanh: bool = False,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in [1, *c_mults]]
        layers: list[nn.Module] = [WNConv1d(latent_dim, widths[-1], kernel_size=7, padding=3)]
        layers += [
            DecoderBlock(widths[i], widths[i - 1], strides[i - 1], use_snake) for i in range(len(strides), 0, -1)
        ]
        layers += [
            _activation(use_snake, widths[0]),
            WNConv1d(widths[0], out_channels, kernel_size=7, padding=3, bias=False),
            nn.Tanh() if final_tanh else nn.Identity(),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


# ------------------------------------------------------------------------------- bottleneck


def vae_kl(mean: Tensor, std: Tensor) -> Tensor:
    """KL term of the original: mean over (batch, time) of Σ_channels (μ² + σ² − log σ² − 1), no ½."""
    var = std * std
    return (mean * mean + var - torch.log(var) - 1).sum(1).mean()


class VAEBottleneck(nn.Module):
    """Splits ``2C`` channels into mean μ and scale s; σ = softplus(s) + 1e-4; z = μ + σ·ε (or μ)."""

    def encode(
        self, x: Tensor, return_info: bool = False, sample: bool = True, generator: torch.Generator | None = None
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        mean, scale = x.chunk(2, dim=1)
        std = F.softplus(scale) + _STD_FLOOR
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = noise * std + mean
        else:
            z = mean
        if not return_info:
            return z
        return z, {"kl": vae_kl(mean, std), "mean": mean, "std": std}

    def decode(self, z: Tensor) -> Tensor:
        return z


# ------------------------------------------------------------------------------ autoencoder


def _sub_batches(x: Tensor, size: int | bool | None) -> Iterator[Tensor]:
    if not size or int(size) >= x.shape[0]:
        yield x
        return
    yield from x.split(int(size), dim=0)


class AudioAutoencoder(nn.Module):
    """Encoder + VAE bottleneck + decoder with the original's module names."""

    def __init__(
        self,
        encoder: OobleckEncoder,
        decoder: OobleckDecoder,
        bottleneck: VAEBottleneck,
        *,
        latent_dim: int,
        downsampling_ratio: int,
        io_channels: int,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        soft_clip: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.bottleneck = bottleneck
        self.latent_dim = int(latent_dim)
        self.downsampling_ratio = int(downsampling_ratio)
        self.io_channels = int(io_channels)
        self.sample_rate = int(sample_rate)
        self.soft_clip = bool(soft_clip)

    # -- checks ------------------------------------------------------------------------------
    def _check_audio(self, audio: Tensor, what: str) -> None:
        if audio.dim() != 3 or audio.shape[1] != self.io_channels:
            raise ValueError(
                f"{what}: expected audio of shape (batch, {self.io_channels}, samples), got {tuple(audio.shape)}"
            )
        if audio.shape[-1] == 0 or audio.shape[-1] % self.downsampling_ratio:
            raise ValueError(
                f"{what}: audio length {audio.shape[-1]} is not a positive multiple of the "
                f"autoencoder's downsampling ratio {self.downsampling_ratio}; pad it first"
            )

    def _check_latents(self, z: Tensor, what: str) -> None:
        if z.dim() != 3 or z.shape[1] != self.latent_dim or z.shape[-1] == 0:
            raise ValueError(
                f"{what}: expected latents of shape (batch, {self.latent_dim}, frames), got {tuple(z.shape)}"
            )

    # -- one pass ----------------------------------------------------------------------------
    def encode(
        self,
        audio: Tensor,
        return_info: bool = False,
        sample: bool = True,
        generator: torch.Generator | None = None,
        iterate_batch: int | bool | None = None,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Audio → latents (a VAE sample, or the mean with ``sample=False``), plus
        ``{"kl", "mean", "std"}`` with ``return_info``. ``iterate_batch=n`` runs the encoder n items at a time."""
        self._check_audio(audio, "AudioAutoencoder.encode")
        raw = (
            torch.cat([self.encoder(a) for a in _sub_batches(audio, iterate_batch)])
            if iterate_batch
            else self.encoder(audio)
        )
        return self.bottleneck.encode(raw, return_info=return_info, sample=sample, generator=generator)

    def decode(self, z: Tensor, iterate_batch: int | bool | None = None) -> Tensor:
        """Latents ``(B, latent_dim, T)`` → audio ``(B, io_channels, T * ratio)``."""
        self._check_latents(z, "AudioAutoencoder.decode")
        z = self.bottleneck.decode(z)
        out = torch.cat([self.decoder(b) for b in _sub_batches(z, iterate_batch)]) if iterate_batch else self.decoder(z)
        return torch.tanh(out) if self.soft_clip else out

    # -- long inputs -------------------------------------------------------------------------
    def encode_audio(
        self,
        audio: Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        chunked: bool = False,
        chunk_size: int = 128,
        overlap: int = 4,
        max_batch_size: int = 1,
        iterate_batch: int | bool | None = None,
    ) -> Tensor:
        """Encode audio of any length that is a multiple of the ratio, optionally in cross-faded chunks.

        ``chunk_size`` / ``overlap`` are in latent frames. Returns the mean unless ``sample=True``.
        """
        self._check_audio(audio, "AudioAutoencoder.encode_audio")
        if not chunked:
            return self.encode(audio, sample=sample, generator=generator, iterate_batch=iterate_batch)
        r = self.downsampling_ratio

        def encode_chunks(chunks: Tensor) -> Tensor:
            return self.encode(chunks, sample=sample, generator=generator)

        return _chunked(
            audio,
            audio.shape[-1] // r,
            chunk_size,
            overlap,
            r,
            1,
            encode_chunks,
            max_batch_size,
            pad_mode="constant",
            whole=lambda: encode_chunks(audio),
        )

    def decode_audio(
        self,
        z: Tensor,
        *,
        chunked: bool = False,
        chunk_size: int = 128,
        overlap: int = 4,
        max_batch_size: int = 1,
        iterate_batch: int | bool | None = None,
    ) -> Tensor:
        """Decode latents, optionally in cross-faded chunks (memory bounded by ``chunk_size``)."""
        self._check_latents(z, "AudioAutoencoder.decode_audio")
        if not chunked:
            return self.decode(z, iterate_batch=iterate_batch)
        r = self.downsampling_ratio
        return _chunked(
            z,
            z.shape[-1],
            chunk_size,
            overlap,
            1,
            r,
            self.decode,
            max_batch_size,
            pad_mode="reflect",
            whole=lambda: self.decode(z),
        )

    # -- inference helpers -------------------------------------------------------------------
    def fold_weight_norm(self) -> AudioAutoencoder:
        """Cache every conv's effective weight (same outputs, same state dict); undone by ``train()``."""
        fold_weight_norm(self)
        return self

    def unfold_weight_norm(self) -> AudioAutoencoder:
        unfold_weight_norm(self)
        return self

    def fuse_activations(self, enabled: bool = True) -> AudioAutoencoder:
        """Run every SnakeBeta as one compiled kernel on CUDA in inference (opt-in, ~1.5x on an H200)."""
        for m in self.modules():
            if isinstance(m, SnakeBeta):
                m.fused = enabled
        return self


def _chunked(
    x: Tensor,
    frames: int,
    chunk_size: int,
    overlap: int,
    in_per_frame: int,
    out_per_frame: int,
    fn: Callable[[Tensor], Tensor],
    max_batch_size: int,
    *,
    pad_mode: str,
    whole: Callable[[], Tensor],
) -> Tensor:
    """Run ``fn`` over windows of ``chunk_size`` frames of ``x`` and overlap-add the cross-faded results.

    ``x`` holds ``frames * in_per_frame`` steps on its last axis, ``fn`` maps ``n`` frames of input to
    ``n * out_per_frame`` output steps. Padding (``pad_mode``) extends ``x`` so the windows tile it; the
    output is cut back to ``frames * out_per_frame``. With a single window, ``whole()`` is used instead:
    one window needs as much memory as one pass, and this avoids decoding artificial padding.
    """
    _check_chunking(chunk_size, overlap, max_batch_size)
    hop = chunk_size - overlap
    n_chunks = max(1, math.ceil((frames - chunk_size) / hop) + 1)
    if n_chunks == 1:
        return whole()
    pad = (chunk_size + hop * (n_chunks - 1) - frames) * in_per_frame
    if pad:
        x = F.pad(x, (0, pad), mode=pad_mode)

    bsz = x.shape[0]
    layout = _ChunkLayout(
        n_chunks, frames * out_per_frame, chunk_size * out_per_frame, hop * out_per_frame, overlap * out_per_frame
    )
    out: Tensor | None = None
    # Each forward sees at most max_batch_size windows: whole chunks across the batch when they fit.
    chunks_per_call = max(1, max_batch_size // bsz)
    for first in range(0, n_chunks, chunks_per_call):
        group = range(first, min(first + chunks_per_call, n_chunks))
        stacked = torch.cat([x[..., i * hop * in_per_frame : (i * hop + chunk_size) * in_per_frame] for i in group])
        if stacked.shape[0] <= max_batch_size:
            y = fn(stacked)  # (len(group) * B, C, span), chunk-major
        else:
            y = torch.cat([fn(part) for part in stacked.split(max_batch_size)])
        if out is None:
            out = y.new_zeros((bsz, y.shape[1], layout.total))
        layout.add(out, y, group)
    assert out is not None
    return out


def _check_chunking(chunk_size: int, overlap: int, max_batch_size: int) -> None:
    """Reject window settings :func:`_chunked` cannot tile and cross-fade."""
    if chunk_size < 1 or not 0 <= 2 * overlap <= chunk_size:
        # With 2 * overlap > chunk_size a frame lies under three windows and the fades no longer sum to 1.
        raise ValueError(
            f"chunked AE: need chunk_size >= 1 and 0 <= 2 * overlap <= chunk_size, "
            f"got chunk_size={chunk_size}, overlap={overlap}"
        )
    if max_batch_size < 1:
        raise ValueError(f"chunked AE: max_batch_size must be >= 1, got {max_batch_size}")


class _ChunkLayout:
    """Where each chunk's output goes and how it fades in and out (see :func:`_chunked`), in output steps."""

    def __init__(self, n_chunks: int, total: int, span: int, step: int, ramp: int) -> None:
        self.n_chunks, self.total, self.span, self.step, self.ramp = n_chunks, total, span, step, ramp
        self.fades: tuple[Tensor, Tensor] | None = None

    def _fade(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.fades is None:
            win = torch.bartlett_window(2 * self.ramp, device=y.device, dtype=torch.float32).to(y.dtype)
            self.fades = (win[: self.ramp], win[self.ramp :])
        return self.fades

    def add(self, out: Tensor, y: Tensor, group: range) -> None:
        """Overlap-add the chunks ``group`` of ``y`` (chunk-major) into ``out``; ``y`` is not modified."""
        bsz, ramp, span = out.shape[0], self.ramp, self.span
        fade_in, fade_out = self._fade(y) if ramp else (y.new_ones(0), y.new_ones(0))
        for k, i in enumerate(group):
            yi, head = y[k * bsz : (k + 1) * bsz], i * self.step
            lo = ramp if i > 0 else 0
            hi = span - ramp if i < self.n_chunks - 1 else self.total - head  # only the last window can stick out
            if lo:
                out[..., head : head + lo] += yi[..., :lo] * fade_in
            out[..., head + lo : head + hi] += yi[..., lo:hi]
            if i < self.n_chunks - 1 and ramp:
                out[..., head + hi : head + span] += yi[..., hi:] * fade_out


# ----------------------------------------------------------------------------- pretransform


class AutoencoderPretransform(nn.Module):
    """The frozen VAE seen by the DiT: ``encode`` = encode_audio(·)/scale, ``decode`` = decode_audio(z·scale).

    Unlike the original, ``encode`` returns the VAE *mean* unless ``sample=True`` is asked for: the
    original sampled at inference although its training latents were means (difference 3 of docs/compatibility.md).
    The inner model stays in eval mode even when the parent is put in training mode.
    """

    def __init__(
        self,
        model: AudioAutoencoder,
        *,
        scale: float = 1.0,
        model_half: bool = False,
        iterate_batch: int | bool = False,
        chunked: bool = False,
        enable_grad: bool = False,
        fold: bool = True,
        fuse: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.scale = float(scale)
        self.model_half = bool(model_half)
        self.iterate_batch = iterate_batch
        self.chunked = bool(chunked)
        self.enable_grad = bool(enable_grad)
        self.downsampling_ratio = model.downsampling_ratio
        self.encoded_channels = model.latent_dim
        self.io_channels = model.io_channels
        self.sample_rate = model.sample_rate
        self.model.requires_grad_(self.enable_grad).eval()
        if self.model_half:
            self.model.half()
        if fold and not self.enable_grad:
            self.model.fold_weight_norm()
        self.model.fuse_activations(fuse)

    def train(self, mode: bool = True) -> AutoencoderPretransform:
        self.training = mode  # the wrapped VAE is frozen: it stays in eval mode
        return self

    def _dtype(self) -> torch.dtype:
        return self.model.decoder.layers[0].weight_v.dtype

    def _grad(self) -> Any:
        return nullcontext() if self.enable_grad else torch.no_grad()

    def encode(
        self,
        audio: Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        chunked: bool | None = None,
        **chunk_kwargs: Any,
    ) -> Tensor:
        """Audio ``(B, io_channels, L)`` → latents ``(B, C, L / ratio)`` divided by ``scale``."""
        chunked = self.chunked if chunked is None else chunked
        with self._grad():
            z = self.model.encode_audio(
                audio.to(self._dtype()),
                sample=sample,
                generator=generator,
                chunked=chunked,
                iterate_batch=self.iterate_batch,
                **chunk_kwargs,
            )
        z = z.to(audio.dtype) if audio.is_floating_point() else z.float()
        return z / self.scale if self.scale != 1.0 else z

    def decode(self, z: Tensor, *, chunked: bool | None = None, **chunk_kwargs: Any) -> Tensor:
        """Latents ``(B, C, T)`` → audio ``(B, io_channels, T * ratio)`` (``z * scale`` is decoded)."""
        chunked = self.chunked if chunked is None else chunked
        x = z * self.scale if self.scale != 1.0 else z
        with self._grad():
            out = self.model.decode_audio(
                x.to(self._dtype()), chunked=chunked, iterate_batch=self.iterate_batch, **chunk_kwargs
            )
        return out.to(z.dtype)


# ---------------------------------------------------------------------------------- building


def _node(cfg: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(cfg, Mapping):
        raise UserError(f"autoencoder config: `{where}` must be a mapping, got {type(cfg).__name__}")
    if key not in cfg:
        raise UserError(f"autoencoder config: missing `{where}.{key}`")
    return cfg[key]


def _check_keys(cfg: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise UserError(
            f"autoencoder config: unknown key(s) {unknown} in `{where}` (expected some of {sorted(allowed)})"
        )


def _int_list(value: Any, where: str) -> list[int]:
    try:
        out = [int(v) for v in value]
    except (TypeError, ValueError):
        raise UserError(f"autoencoder config: `{where}` must be a list of integers, got {value!r}") from None
    if not out or any(v < 1 for v in out):
        raise UserError(f"autoencoder config: `{where}` must be a non-empty list of positive integers")
    return out


_NET_KEYS = {"channels", "c_mults", "strides", "latent_dim", "use_snake", "requires_grad", "antialias_activation"}
_ENC_KEYS = _NET_KEYS | {"in_channels"}
_DEC_KEYS = _NET_KEYS | {"out_channels", "final_tanh", "soft_clip", "use_nearest_upsample"}
_AE_KEYS = {
    "encoder",
    "decoder",
    "bottleneck",
    "latent_dim",
    "downsampling_ratio",
    "io_channels",
    "sample_rate",
    "in_channels",
    "out_channels",
    "pretransform",
}


def _net_args(cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
    c_mults = _int_list(_node(cfg, "c_mults", where), f"{where}.c_mults")
    strides = _int_list(_node(cfg, "strides", where), f"{where}.strides")
    if len(c_mults) != len(strides):
        raise UserError(f"autoencoder config: `{where}.c_mults` and `{where}.strides` must have the same length")
    if any(s % 2 for s in strides):
        raise UserError(
            f"autoencoder config: `{where}.strides` must all be even (got {strides}); odd strides "
            "do not divide/multiply lengths exactly"
        )
    for flag in ("antialias_activation", "use_nearest_upsample"):
        if cfg.get(flag, False):
            raise UserError(f"autoencoder config: `{where}.{flag}: true` is not supported (the original never uses it)")
    return {
        "channels": int(_node(cfg, "channels", where)),
        "latent_dim": int(_node(cfg, "latent_dim", where)),
        "c_mults": c_mults,
        "strides": strides,
        "use_snake": bool(cfg.get("use_snake", False)),
    }


def _check_latent_shape(enc: Mapping[str, Any], dec: Mapping[str, Any], latent_dim: int, ratio: int) -> None:
    """Check the encoder/decoder arguments (from :func:`_net_args`) against ``latent_dim`` and
    ``downsampling_ratio``."""
    if enc["latent_dim"] != 2 * latent_dim:
        raise UserError(
            f"autoencoder config: `encoder.latent_dim` must be 2 * latent_dim = {2 * latent_dim} "
            f"(mean and scale), got {enc['latent_dim']}"
        )
    if dec["latent_dim"] != latent_dim:
        raise UserError(
            f"autoencoder config: `decoder.latent_dim` must equal latent_dim = {latent_dim}, got {dec['latent_dim']}"
        )
    if math.prod(enc["strides"]) != ratio or math.prod(dec["strides"]) != ratio:
        raise UserError(
            f"autoencoder config: `downsampling_ratio` {ratio} must equal the product of the "
            f"encoder strides {enc['strides']} and of the decoder strides {dec['strides']}"
        )


def build_autoencoder(cfg: Mapping[str, Any]) -> AudioAutoencoder:
    """Build the VAE from a plain mapping: the fixture README's ``autoencoder`` block or
    ``configs/model/autoencoder.yaml`` (``encoder``, ``decoder``, ``bottleneck``, ``latent_dim``,
    ``downsampling_ratio``, ``io_channels`` [, ``sample_rate``])."""
    _check_keys(cfg, _AE_KEYS, "autoencoder")
    if cfg.get("pretransform"):
        raise UserError("autoencoder config: a nested `pretransform` inside the autoencoder is not supported")
    enc_cfg, dec_cfg = _node(cfg, "encoder", "autoencoder"), _node(cfg, "decoder", "autoencoder")
    _check_keys(enc_cfg, _ENC_KEYS, "autoencoder.encoder")
    _check_keys(dec_cfg, _DEC_KEYS, "autoencoder.decoder")
    bottleneck_type = _node(_node(cfg, "bottleneck", "autoencoder"), "type", "autoencoder.bottleneck")
    if bottleneck_type != "vae":
        raise UserError(f"autoencoder config: `bottleneck.type` must be 'vae', got {bottleneck_type!r}")

    latent_dim = int(_node(cfg, "latent_dim", "autoencoder"))
    io_channels = int(_node(cfg, "io_channels", "autoencoder"))
    ratio = int(_node(cfg, "downsampling_ratio", "autoencoder"))
    enc, dec = _net_args(enc_cfg, "autoencoder.encoder"), _net_args(dec_cfg, "autoencoder.decoder")
    _check_latent_shape(enc, dec, latent_dim, ratio)
    in_channels = int(enc_cfg.get("in_channels", io_channels))
    out_channels = int(dec_cfg.get("out_channels", io_channels))
    if in_channels != io_channels or out_channels != io_channels:
        raise UserError(
            f"autoencoder config: encoder.in_channels ({in_channels}) and decoder.out_channels "
            f"({out_channels}) must equal io_channels ({io_channels})"
        )

    encoder = OobleckEncoder(in_channels=in_channels, **enc)
    decoder = OobleckDecoder(out_channels=out_channels, final_tanh=bool(dec_cfg.get("final_tanh", False)), **dec)
    model = AudioAutoencoder(
        encoder,
        decoder,
        VAEBottleneck(),
        latent_dim=latent_dim,
        downsampling_ratio=ratio,
        io_channels=io_channels,
        sample_rate=int(cfg.get("sample_rate", DEFAULT_SAMPLE_RATE)),
        soft_clip=bool(dec_cfg.get("soft_clip", False)),
    )
    for part, part_cfg in ((encoder, enc_cfg), (decoder, dec_cfg)):
        if not part_cfg.get("requires_grad", True):
            part.requires_grad_(False)
    return model


_PRE_KEYS = {"iterate_batch", "scale", "model_half", "chunked", "enable_grad", "autoencoder", "ae_config", "type"}


def build_pretransform(
    cfg: Mapping[str, Any], ae_cfg: Mapping[str, Any], *, fold: bool = True, fuse: bool = False
) -> AutoencoderPretransform:
    """Build the frozen pretransform: ``cfg`` = the ``pretransform`` block (scale, model_half,
    iterate_batch, chunked, enable_grad; a nested ``autoencoder``/``ae_config`` is ignored here),
    ``ae_cfg`` = the autoencoder block. ``fold`` caches the weight-normed weights; ``fuse`` compiles
    each SnakeBeta into one CUDA kernel at first use (~1.5x on GPU, same values)."""
    if not isinstance(cfg, Mapping):
        raise UserError(f"pretransform config must be a mapping, got {type(cfg).__name__}")
    _check_keys(cfg, _PRE_KEYS, "pretransform")
    if cfg.get("type", "autoencoder") != "autoencoder":
        raise UserError(f"pretransform config: `type` must be 'autoencoder', got {cfg.get('type')!r}")
    iterate_batch = cfg.get("iterate_batch", False)  # true means 1, as in the original (int(True))
    if iterate_batch and int(iterate_batch) < 1:
        raise UserError("pretransform config: `iterate_batch` must be false, true or a positive sub-batch size")
    return AutoencoderPretransform(
        build_autoencoder(ae_cfg),
        scale=float(cfg.get("scale", 1.0)),
        model_half=bool(cfg.get("model_half", False)),
        iterate_batch=int(iterate_batch) if iterate_batch else False,
        chunked=bool(cfg.get("chunked", False)),
        enable_grad=bool(cfg.get("enable_grad", False)),
        fold=fold,
        fuse=fuse,
    )
