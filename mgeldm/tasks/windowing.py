"""Seconds to latent frames, and the checks of the durations a user gives (a generation's length, the
window overlap); the windows themselves are planned by :mod:`mgeldm.diffusion.windows`."""

from __future__ import annotations

import math

from mgeldm.errors import OptionError

# Tolerance for float products such as 6.4 s x 7.8125 frames/s = 50.000000000000007 frames.
_EPS = 1e-6


def seconds_to_frames(seconds: float, frame_rate: float) -> int:
    """Frames needed to cover ``seconds`` (ceil, robust to float round-off): 30 s -> 235 at 7.8125/s."""
    return max(0, math.ceil(seconds * frame_rate - _EPS))


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """Samples of a duration, rounded to the nearest sample."""
    return int(round(seconds * sample_rate))


def check_gen_duration(seconds: float, sample_rate: int, ratio: int) -> None:
    """Refuse a generation length below one latent frame (``ratio`` samples, 0.128 s for the full VAE)."""
    if not math.isfinite(seconds) or seconds_to_samples(seconds, sample_rate) < ratio:
        raise OptionError(
            "seconds",
            f"expected a duration in seconds of at least one latent frame ({ratio / sample_rate:g} s)",
            seconds,
        )


def overlap_frames(overlap: float, frame_rate: float, window: int) -> int:
    """The overlap of ``overlap`` seconds in frames, ``ceil(overlap * frame_rate)`` as the original (3 s -> 24,
    7 s -> 55). Raises :class:`mgeldm.errors.OptionError` (``overlap``) unless ``0 <= overlap < window``.
    """
    if not math.isfinite(overlap) or overlap < 0:
        raise OptionError("overlap", "expected a number of seconds >= 0", overlap)
    frames = seconds_to_frames(overlap, frame_rate)
    if frames >= window:
        raise OptionError(
            "overlap",
            f"{frames} frames is not shorter than one window ({window} frames = "
            f"{window / frame_rate:g} s); expected less than {window / frame_rate:g} s",
            overlap,
        )
    return frames
