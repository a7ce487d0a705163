"""Songs of any length, sampled window by window: the one windowed sampler of inference, the training demo
and every score computed from samples.

The DiT sees windows of ``window`` frames (100 = 12.8 s for the released model). A song of ``F`` frames is
covered by windows that start at 0, H, 2H, ... with hop ``H = window - overlap``; each later window re-uses its
first frames from what is already produced (the outpainting context) and adds the rest. The last window is
right-aligned at ``F - window`` and takes as context everything before its new frames, so every window is
exactly ``window`` frames long (the DiT's GroupNorm statistics depend on the length) and the new frames of all
windows add up to exactly ``F``. This holds for every ``0 <= overlap < window``, above half a window too, and
for songs shorter than one window, which are padded to one window (``plan_windows`` covers ``max(F, window)``
frames) and trimmed by the caller. (The original assumed an overlap below half a window and songs of at least
one window; see docs/compatibility.md.)

:class:`WindowedSampler` samples several songs at once: window k of every song whose window k has the same
overlap runs in one batch (songs x rows), each song drawing from its own generator, so each song gets the
computation and the random numbers it gets alone (equal up to float round-off of the batched matmuls).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mgeldm.diffusion.samplers import Denoiser, denoiser_calls, sample_given_track, sample_joint
from mgeldm.diffusion.schedule import T_MIN
from mgeldm.progress import progress_bar


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


def track_conditions(cond: Tensor, track: int, num_tracks: int) -> Tensor:
    """(N, G) condition vectors -> (N, K, G): ``cond`` on ``track``, zeros (no condition) on the others."""
    embed = cond.new_zeros(cond.shape[0], num_tracks, cond.shape[1])
    embed[:, track] = cond
    return embed


@dataclass
class _Song:
    """One song being sampled: its windows, its output latents, its generator, its given track's latents."""

    plan: list[Window]
    out: Tensor
    generator: torch.Generator | None
    given_z: Tensor | None


@dataclass
class WindowedSampler:
    """Samples songs window by window with one of :mod:`mgeldm.diffusion.samplers`' update rules.

    ``overlap`` is in frames; ``steps``, ``eta``, ``t_min``, ``repaint_n`` and ``sampler`` go to the sampler
    (RePaint only harmonises an overlap, so the first window of joint generation runs without it).
    ``windows`` counts the windows sampled so far.
    """

    window: int
    overlap: int
    num_tracks: int
    steps: int
    eta: float = 0.0
    t_min: float = T_MIN
    repaint_n: int = 1
    sampler: str = "ddim"
    device: torch.device = torch.device("cpu")
    progress: bool = False
    windows: int = 0

    def sample(self, make_denoiser: Callable[[int], Denoiser], rows: int, channels: int, frames: Sequence[int],
               generators: Sequence[torch.Generator | None], *, given_z: Sequence[Tensor] | None = None,
               given_track: int | None = None, desc: str = "windows") -> list[Tensor]:
        """One (rows, K*C, max(frames_s, window)) per song.

        ``make_denoiser(n)`` gives the denoiser of a batch of ``n`` songs (their rows stacked song by song).
        Joint generation when ``given_z`` is None, else generation around the clean ``given_track`` of each
        song (``given_z[s]`` (1 or rows, C, >= frames_s)).
        """
        if len(generators) != len(frames) or (given_z is not None and len(given_z) != len(frames)):
            raise ValueError(f"{len(frames)} songs need as many generators (got {len(generators)}) and given latents")
        songs = []
        for s, count in enumerate(frames):
            plan = plan_windows(count, self.window, self.overlap)
            out = torch.zeros(rows, self.num_tracks * channels, plan[-1].end, device=self.device)
            given = None if given_z is None else given_z[s].to(self.device).float().expand(rows, -1, -1)
            songs.append(_Song(plan, out, generators[s], given))
        for group in self._window_groups(songs, desc):
            self._sample_window(group, make_denoiser(len(group)), given_track)
            self.windows += len(group)
        return [song.out for song in songs]

    def _window_groups(self, songs: list[_Song], desc: str) -> Iterator[list[tuple[_Song, Window]]]:
        """Round k: the songs' k-th windows, grouped by their overlap (equal windows batch together)."""
        rounds = max(len(song.plan) for song in songs)
        for k in progress_bar(range(rounds), desc=desc, unit="window", disable=not self.progress):
            groups: dict[int, list[tuple[_Song, Window]]] = {}
            for song in songs:
                if k < len(song.plan):
                    groups.setdefault(song.plan[k].overlap, []).append((song, song.plan[k]))
            yield from groups.values()

    def _sample_window(self, group: list[tuple[_Song, Window]], denoise: Denoiser, given_track: int | None) -> None:
        """Sample one window of each song of ``group`` (all with the same overlap) in one batch."""
        first = group[0][1]
        noise = torch.cat([self._noise(song, w) for song, w in group])
        overlap_z = torch.cat([song.out[..., w.start:w.new_start] for song, w in group]) if first.overlap else None
        joint = group[0][0].given_z is None
        repaint_n = self.repaint_n if (first.overlap or not joint) else 1
        generators = [song.generator for song, _ in group]
        with progress_bar(total=denoiser_calls(self.sampler, self.steps, repaint_n), desc=f"window {first.index + 1}",
                          unit="step", nested=True, disable=not self.progress) as bar:
            common = dict(steps=self.steps, num_tracks=self.num_tracks, eta=self.eta, t_min=self.t_min,
                          repaint_n=repaint_n, overlap_z=overlap_z,
                          generator=generators[0] if len(generators) == 1 else generators,
                          callback=lambda _info: bar.update(1), disable_progress=True, sampler=self.sampler)
            if joint:
                x0 = sample_joint(denoise, noise, **common)
            else:
                given = torch.cat([song.given_z[..., w.new_start:w.end] for song, w in group])
                x0 = sample_given_track(denoise, noise, given, given_track, **common)
        for (song, w), part in zip(group, x0.float().split(noise.shape[0] // len(group))):
            song.out[..., w.new_start:w.end] = part[..., w.overlap:]

    def _noise(self, song: _Song, w: Window) -> Tensor:
        """The starting noise of window ``w`` of ``song`` (rows, K*C, new frames), from the song's generator."""
        g = song.generator
        noise = torch.randn((song.out.shape[0], song.out.shape[1], w.new), generator=g,
                            device=g.device if g is not None else self.device)
        return noise.to(self.device)
