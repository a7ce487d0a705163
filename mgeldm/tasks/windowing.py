"""Cutting a song into DiT windows (SPEC D.4), as pure functions over latent frame counts.

The DiT sees windows of ``window`` frames (100 = 12.8 s). A song of ``F`` frames is covered by
windows that start at 0, H, 2H, ... with hop ``H = window - overlap``; each later window re-uses its
first frames from what is already produced (the outpainting context) and adds the rest. The last
window is right-aligned at ``F - window`` and takes as context everything before its new frames, so
every window is exactly ``window`` frames long (the DiT's GroupNorm statistics depend on the length)
and the new frames of all windows add up to exactly ``F``.

Unlike the original (SPEC I.8) this holds for every ``0 <= overlap < window``, including overlaps
above half a window (6.4 s), and for songs shorter than one window, which are padded to one window
and trimmed afterwards (``plan_windows`` covers ``max(F, window)`` frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mgeldm.errors import OptionError

# Tolerance for float products such as 6.4 s x 7.8125 frames/s = 50.000000000000007 frames.
_EPS = 1e-6


@dataclass(frozen=True)
class Window:
    """One DiT window: frames ``[start, start + length)`` of the (padded) song.

    The first ``overlap`` frames are context copied from earlier windows; the remaining ``new``
    frames are what this window contributes to the output.
    """

    index: int
    start: int
    overlap: int
    length: int

    @property
    def new(self) -> int:
        return self.length - self.overlap

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def new_start(self) -> int:
        """First frame (song coordinates) this window contributes."""
        return self.start + self.overlap


def seconds_to_frames(seconds: float, frame_rate: float) -> int:
    """Frames needed to cover ``seconds`` (ceil, robust to float round-off): 30 s -> 235 at 7.8125/s."""
    return max(0, math.ceil(seconds * frame_rate - _EPS))


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """Samples of a duration, rounded to the nearest sample."""
    return int(round(seconds * sample_rate))


def check_gen_duration(seconds: float, sample_rate: int, ratio: int) -> None:
    """Refuse a generation length below one latent frame (``ratio`` samples, 0.128 s for the full VAE)."""
    if not math.isfinite(seconds) or seconds_to_samples(seconds, sample_rate) < ratio:
        raise OptionError("seconds", f"expected a duration in seconds of at least one latent frame "
                          f"({ratio / sample_rate:g} s)", seconds)


def overlap_frames(overlap: float, frame_rate: float, window: int) -> int:
    """The overlap of ``overlap`` seconds in frames, ``ceil(overlap * frame_rate)`` as the original (3 s -> 24,
    7 s -> 55). Raises :class:`mgeldm.errors.OptionError` (``overlap``) unless ``0 <= overlap < window``.
    """
    if not math.isfinite(overlap) or overlap < 0:
        raise OptionError("overlap", "expected a number of seconds >= 0", overlap)
    frames = seconds_to_frames(overlap, frame_rate)
    if frames >= window:
        raise OptionError("overlap", f"{frames} frames is not shorter than one window ({window} frames = "
                          f"{window / frame_rate:g} s); expected less than {window / frame_rate:g} s", overlap)
    return frames


def plan_windows(total_frames: int, window: int, overlap: int) -> list[Window]:
    """The windows covering ``max(total_frames, window)`` frames, each exactly ``window`` long.

    Window 0 starts at 0 with no context; window k starts at ``k * (window - overlap)`` with
    ``overlap`` context frames; the last one is right-aligned and its context is everything before
    its new frames (at least ``overlap``). The ``new`` counts add up to ``max(total_frames, window)``.
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, {window}), got {overlap}")
    if total_frames <= 0:
        raise ValueError(f"total_frames must be positive, got {total_frames}")
    covered = max(total_frames, window)
    windows = [Window(0, 0, 0, window)]
    produced = window
    while produced < covered:
        start = min(produced - overlap, covered - window)
        windows.append(Window(len(windows), start, produced - start, window))
        produced = start + window
    return windows


def covered_frames(windows: list[Window]) -> int:
    """Frames produced by a plan (the sum of the windows' new frames)."""
    return sum(w.new for w in windows)
