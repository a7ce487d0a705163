"""The non-diffusion bar of the overfit diagnostic: a small FiLM conv regressor, mix latent -> source latent.

It sees what the DiT sees in an extraction: the mix window and the source condition (the training blend
of the source's audio/label embedding and its prompt's text embedding), and regresses the source window
with MSE. It is trained on the same datasets for the same number of samples as the DiT it is compared
with. A DiT recipe that cannot match it on its own training songs is not learning the task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgeldm.evaluation.latent import LatentSong
from mgeldm.models.tracks import CLAP_KEYS, LATENT_KEYS, MIX, SRC


class FiLMConvRegressor(nn.Module):
    """Residual 1-D convs over the mix latent, each modulated (scale, shift) by the condition."""

    def __init__(self, channels: int, cond_dim: int, width: int = 128, depth: int = 6) -> None:
        super().__init__()
        self.inp = nn.Conv1d(channels, width, 3, padding=1)
        self.convs = nn.ModuleList([nn.Conv1d(width, width, 3, padding=1) for _ in range(depth)])
        self.films = nn.ModuleList([nn.Linear(cond_dim, 2 * width) for _ in range(depth)])
        self.out = nn.Conv1d(width, channels, 1)

    def forward(self, mix: Tensor, cond: Tensor) -> Tensor:
        h = self.inp(mix)
        for conv, film in zip(self.convs, self.films):
            scale, shift = film(cond)[..., None].chunk(2, dim=1)
            h = h + conv(F.silu(F.group_norm(h, 8) * (1 + scale) + shift))
        return self.out(h)


class Standardizer:
    """Per-channel (x - mean) / std of one track's AE latents (from ``measure_track_stats`` numbers)."""

    def __init__(self, stats: Mapping[str, Any], track: int, device: str | torch.device = "cpu") -> None:
        self.mean = torch.tensor(stats["mean"][track], dtype=torch.float32, device=device)[:, None]
        self.std = torch.tensor(stats["std"][track], dtype=torch.float32, device=device)[:, None]

    def fwd(self, z: Tensor) -> Tensor:
        return (z - self.mean) / self.std

    def inv(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean


def train_regressor(
    batches: Iterable[Mapping[str, Any]],
    stats: Mapping[str, Any],
    conditioner: Any,
    *,
    cond_dim: int,
    seed: int = 0,
    lr: float = 1e-3,
    every: int = 0,
    on_checkpoint: Callable[[int, FiLMConvRegressor], None] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[FiLMConvRegressor, list[float]]:
    """Fit the regressor on ``batches`` (collated latent-dataset items; one optimizer step each) on ``device``.

    Returns the model (on the CPU) and its training losses; ``on_checkpoint(step, model)`` is called every
    ``every`` steps and after the last. The source condition is drawn as in DiT training.
    """
    from mgeldm.training.dit_module import blend_source_condition

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mix_norm, src_norm = Standardizer(stats, MIX, device), Standardizer(stats, SRC, device)
    net = FiLMConvRegressor(int(len(stats["mean"][0])), cond_dim).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    losses = []
    for batch in batches:
        src_audio = batch[CLAP_KEYS[SRC]].float()
        u = torch.rand(src_audio.shape[0], 2, generator=gen) + 1e-6
        with torch.no_grad():
            cond = blend_source_condition(
                src_audio, list(batch["src_prompt"]), conditioner, u / u.sum(-1, keepdim=True)
            )
        pred = net(mix_norm.fwd(batch[LATENT_KEYS[MIX]].float().to(device)), cond.to(device))
        loss = F.mse_loss(pred, src_norm.fwd(batch[LATENT_KEYS[SRC]].float().to(device)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if on_checkpoint is not None and every and len(losses) % every == 0:
            on_checkpoint(len(losses), net.eval())
            net.train()
    if on_checkpoint is not None and losses and not (every and len(losses) % every == 0):
        on_checkpoint(len(losses), net.eval())
    return net.cpu().eval(), losses


REGRESSOR_FORMAT = 1


def save_regressor(path: Any, net: FiLMConvRegressor, stats: Mapping[str, Any], *, steps: int) -> None:
    """The regressor, its latent statistics and its training steps in one file (written atomically)."""
    from mgeldm.files import atomic_path

    info = {
        "format": REGRESSOR_FORMAT,
        "channels": net.inp.in_channels,
        "cond_dim": net.films[0].in_features,
        "width": net.inp.out_channels,
        "depth": len(net.convs),
        "steps": int(steps),
        "stats": {
            "mean": [list(map(float, r)) for r in stats["mean"]],
            "std": [list(map(float, r)) for r in stats["std"]],
        },
        "state_dict": net.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(info, tmp)


def load_regressor(path: Any) -> tuple[FiLMConvRegressor, dict[str, Any], int]:
    """(regressor in eval mode, its statistics, its training steps) of a :func:`save_regressor` file."""
    from mgeldm.errors import UserError

    try:
        info = torch.load(path, map_location="cpu", weights_only=True)
        net = FiLMConvRegressor(int(info["channels"]), int(info["cond_dim"]), int(info["width"]), int(info["depth"]))
        net.load_state_dict(info["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"{path}: not a regressor file written by `diagnose.py regressor` ({str(exc).splitlines()[0][:80]})"
        ) from None
    return net.eval(), info["stats"], int(info["steps"])


@torch.no_grad()
def regressor_estimates(
    net: FiLMConvRegressor, stats: Mapping[str, Any], songs: Sequence[LatentSong], embed: Any, prompt: Any
) -> dict[str, dict[str, Tensor]]:
    """{song: {label: estimated source latent (C, F)}} for every stem of every song."""
    mix_norm, src_norm = Standardizer(stats, MIX), Standardizer(stats, SRC)
    out = {}
    for song in songs:
        labels = sorted(song.sources)
        cond = embed([prompt(label) for label in labels]).float()
        mix = mix_norm.fwd(song.mix.float())[None].expand(len(labels), -1, -1)
        est = src_norm.inv(net(mix, cond))
        out[song.name] = {label: est[i] for i, label in enumerate(labels)}
    return out
