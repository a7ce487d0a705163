"""Fréchet distance between Gaussians fitted to embeddings: FAD and the per-stem sub-FAD.

d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}). The trace of the matrix square root is
computed as the sum of square roots of the eigenvalues of S1^{1/2} S2 S1^{1/2}, a symmetric positive
semi-definite matrix, in float64 with negative round-off eigenvalues clipped to zero. This avoids the
complex results and failures of a general sqrtm on near-singular covariances.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def gaussian_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) embeddings, N >= 2."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"gaussian_stats: need (N >= 2, D) embeddings, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shapes {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape} disagree")
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1
    w = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt, 0.0))


def fad(pred_embeddings: np.ndarray, ref_embeddings: np.ndarray) -> float:
    """Fréchet Audio Distance between two sets of frame embeddings, (N1, D) and (N2, D)."""
    return frechet_distance(*gaussian_stats(pred_embeddings), *gaussian_stats(ref_embeddings))


def sub_fad(pred_by_stem: Mapping[str, np.ndarray], ref_by_stem: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per-stem FAD (the paper's sub-FAD protocol: each stem class against its own references),
    plus their mean under the key "mean". Stems missing from either side are skipped."""
    out = {k: fad(pred_by_stem[k], ref_by_stem[k]) for k in sorted(pred_by_stem) if k in ref_by_stem}
    if out:
        out["mean"] = float(np.mean(list(out.values())))
    return out
