"""Summary statistics with a seeded percentile-bootstrap confidence interval of the mean."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def summarize(values: Sequence[float], *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """{mean, std, ci_low, ci_high, n} over the finite values (NaN = undefined, skipped).

    std is the sample standard deviation (ddof 1; 0 for one value). The interval is the percentile
    bootstrap of the mean over n_boot resamples drawn from numpy's Generator seeded with ``seed``.
    """
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": None, "std": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return {"mean": mean, "std": std, "ci_low": float(lo), "ci_high": float(hi), "n": n}
