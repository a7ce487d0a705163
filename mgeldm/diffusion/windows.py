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

:func:`sample_windows` samples several songs at once: window k of every song whose window k has the same
overlap runs in one batch (songs x rows), each song drawing from its own generator, so each song gets the
computation and the random numbers it gets alone (equal up to float round-off of the batched matmuls).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mgeldm.diffusion.samplers import SAMPLERS, Denoiser, Known, SamplingSettings, denoiser_calls
from mgeldm.diffusion.schedule import sampling_times
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


def sample_windows(
    make_denoiser: Callable[[int], Denoiser],
    settings: SamplingSettings,
    frames: Sequence[int],
    generators: Sequence[torch.Generator | None],
    *,
    rows: int,
    channels: int,
    num_tracks: int,
    window: int,
    overlap: int,
    given_track: int | None = None,
    given_z: Sequence[Tensor] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "windows",
    on_step: Callable[[int], None] | None = None,
) -> list[Tensor]:
    """Sample songs of ``frames`` latent frames window by window with the sampler ``settings`` name: one
    (rows, K*C, max(frames_s, window)) per song, song s drawing from ``generators[s]``. ``make_denoiser(n)``: the
    denoiser of ``n`` songs (their ``rows`` stacked song by song). Joint generation when ``given_z`` is None, else
    around the clean ``given_track`` of each song (``given_z[s]`` (1 or rows, C, >= frames_s)). ``overlap`` is in
    frames; RePaint only harmonises what is known, so joint generation's first window runs with ``repaint_n = 1``.
    ``on_step(n)`` follows every denoiser call, ``n`` the songs whose window it advanced (:func:`window_steps`)."""
    assert len(generators) == len(frames) and (given_z is None or len(given_z) == len(frames))
    shape, givens = (rows, num_tracks * channels), [None] * len(frames) if given_z is None else list(given_z)
    songs = [_start_song(n, window, overlap, shape, g, z, device) for n, g, z in zip(frames, generators, givens)]
    times = sampling_times(settings.steps, settings.t_min)
    for group in _window_groups(songs, desc, progress):
        noise, known = _window_inputs(group, num_tracks, given_track, device)
        repaint_n = settings.repaint_n if known.context is not None or known.clean is not None else 1
        gens = [song.generator for song, _ in group]
        gen, denoise = gens[0] if len(gens) == 1 else gens, make_denoiser(len(group))
        calls = denoiser_calls(settings.sampler, settings.steps, repaint_n)
        label = f"window {group[0][1].index + 1}"
        with progress_bar(total=calls, unit="step", desc=label, nested=True, disable=not progress) as bar:
            x0 = SAMPLERS[settings.sampler](
                denoise,
                noise,
                times,
                known,
                eta=settings.eta,
                repaint_n=repaint_n,
                generator=gen,
                callback=lambda _: _step(bar, on_step, len(group)),
            )
        for (song, w), part in zip(group, x0.float().split(noise.shape[0] // len(group))):
            song.out[..., w.new_start : w.end] = part[..., w.overlap :]
    return [song.out for song in songs]


def _step(bar, on_step: Callable[[int], None] | None, songs: int) -> None:
    bar.update(1)
    if on_step is not None:
        on_step(songs)


def window_steps(frames: Sequence[int], window: int, overlap: int, settings: SamplingSettings, given: bool) -> int:
    """The denoiser steps of :func:`sample_windows` over songs of ``frames`` frames, counted per song and window
    (a batched call that advances n songs' windows counts n): what a progress display counts to."""
    return sum(
        denoiser_calls(settings.sampler, settings.steps, settings.repaint_n if (w.overlap or given) else 1)
        for count in frames
        for w in plan_windows(count, window, overlap)
    )


def _start_song(
    frames: int,
    window: int,
    overlap: int,
    shape: tuple[int, int],
    generator: torch.Generator | None,
    given_z: Tensor | None,
    device: torch.device | str,
) -> _Song:
    """A song of ``frames`` frames before sampling: its windows, zero latents (rows, K*C, covered frames), its
    given track's latents on the device, one row each."""
    plan = plan_windows(frames, window, overlap)
    out = torch.zeros(*shape, plan[-1].end, device=device)
    given = None if given_z is None else given_z.to(device).float().expand(shape[0], -1, -1)
    return _Song(plan, out, generator, given)


def _window_groups(songs: list[_Song], desc: str, progress: bool) -> Iterator[list[tuple[_Song, Window]]]:
    """Round k: the songs' k-th windows, grouped by their overlap (equal windows batch together)."""
    rounds = max(len(song.plan) for song in songs)
    for k in progress_bar(range(rounds), desc=desc, unit="window", disable=not progress):
        groups: dict[int, list[tuple[_Song, Window]]] = {}
        for song in songs:
            if k < len(song.plan):
                groups.setdefault(song.plan[k].overlap, []).append((song, song.plan[k]))
        yield from groups.values()


def _window_inputs(
    group: list[tuple[_Song, Window]], num_tracks: int, given_track: int | None, device: torch.device | str
) -> tuple[Tensor, Known]:
    """The starting noise of one window of each song of ``group`` (from each song's generator) and what the
    window knows: the context from the song's earlier windows and its given track."""
    noise = []
    for song, w in group:
        g = song.generator
        shape = (song.out.shape[0], song.out.shape[1], w.new)
        noise.append(torch.randn(shape, generator=g, device=g.device if g is not None else device).to(device))
    context = torch.cat([song.out[..., w.start : w.new_start] for song, w in group]) if group[0][1].overlap else None
    given = None if group[0][0].given_z is None else torch.cat([s.given_z[..., w.new_start : w.end] for s, w in group])
    return torch.cat(noise), Known(num_tracks, context=context, given_track=given_track, given_z=given)
