"""Scale-invariant signal-to-distortion ratio (SI-SDR, Le Roux et al. 2019) and its improvement.

SI-SDR(e, r) = 10 log10(|a r|^2 / |e - a r|^2) with a = <e, r> / |r|^2, after removing each signal's
mean. It is undefined for an all-zero estimate or reference; those give NaN here (callers skip NaN).
"""

from __future__ import annotations

import torch

SILENCE_ENERGY = 1e-10  # signals with less total energy than this are treated as silent


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, *, zero_mean: bool = True) -> torch.Tensor:
    """SI-SDR in dB over the last axis; (..., T) and (..., T) -> (...). NaN where undefined."""
    if estimate.shape != reference.shape:
        raise ValueError(f"si_sdr: shapes differ {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    e = estimate.double()
    r = reference.double()
    if zero_mean:
        e = e - e.mean(dim=-1, keepdim=True)
        r = r - r.mean(dim=-1, keepdim=True)
    r_energy = (r * r).sum(-1)
    e_energy = (e * e).sum(-1)
    alpha = (e * r).sum(-1) / r_energy.clamp_min(SILENCE_ENERGY)
    target = alpha.unsqueeze(-1) * r
    noise = e - target
    ratio = (target * target).sum(-1) / (noise * noise).sum(-1).clamp_min(1e-20)
    out = 10 * torch.log10(ratio.clamp_min(1e-20))
    undefined = (r_energy < SILENCE_ENERGY) | (e_energy < SILENCE_ENERGY)
    return torch.where(undefined, torch.full_like(out, float("nan")), out).to(estimate.dtype)


def si_sdr_improvement(
    estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor, *, zero_mean: bool = True
) -> torch.Tensor:
    """SI-SDRi = SI-SDR(estimate, reference) - SI-SDR(mixture, reference), in dB."""
    return si_sdr(estimate, reference, zero_mean=zero_mean) - si_sdr(mixture, reference, zero_mean=zero_mean)
