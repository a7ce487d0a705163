"""The five inference tasks of MGE-LDM (docs/compatibility.md#sampling-and-the-five-tasks) over any length of audio.

Every task is one function over a :class:`TaskRunner` (the loaded model, its device and precision)
and condition vectors ``cond`` (N, G): one row per prompt, placed on the task's text track with
zeros on the other tracks. The N prompts run as one batch and share the encoding of the given
audio. Songs are sampled window by window (:mod:`mgeldm.diffusion.windows`), and the VAE encodes and
decodes each track in one pass, as the original does, up to :data:`WHOLE_PASS_MAX_SECONDS` of audio; only longer songs (or a
runner built with ``chunked=True``) go through the VAE in cross-faded chunks, which bounds memory but
changes the result near the chunk joins.

Results are dicts of 16 kHz waveforms (N, L), keyed by the original's wav names (``gen_src``, ...);
the given audio comes back unchanged under ``given_mix`` / ``given_wav`` as (1, L).

Several songs can share the DiT's batches (:func:`given_task_songs`, :func:`extract_latents_songs`):
their k-th windows run together, each song drawing from its own generator, so each gets what it
gets alone up to float round-off.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from mgeldm.diffusion.samplers import sampler_problem
from mgeldm.diffusion.schedule import T_MIN
from mgeldm.diffusion.windows import WindowedSampler, track_conditions
from mgeldm.errors import OptionError
from mgeldm.models.mgeldm import ModelFacts
from mgeldm.models.tracks import MIX, SRC, SUBMIX, track_channels
from mgeldm.tasks.windowing import check_gen_duration, overlap_frames, seconds_to_frames, seconds_to_samples

TASKS = ("total_gen", "source_extract", "partial_gen", "accomp_gen", "partial_gen_iter")
# Longest audio the VAE encodes/decodes in one pass by default (the original's behaviour at any length).
# A fixed length, not a memory probe, so a result never depends on the machine it was computed on.
# The full VAE's decoder needs about 0.05 GB per second of audio in one pass (fp32, measured on CPU at
# 8 s and 16 s), so about 30 GB at this limit; ``chunked=True`` bounds it for smaller machines.
WHOLE_PASS_MAX_SECONDS = 600.0


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: object, minimum: float = -math.inf) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value >= minimum)


@dataclass(frozen=True)
class SamplingSettings:
    """Sampler settings of one task call: steps, classifier-free guidance scale, window overlap in seconds,
    RePaint repeats, DDIM noise, the last sampling time and the sampler (the original's command line calls
    them +num_steps, +cfg_scale, +overlap_dur, +repaint_n, +eta)."""

    steps: int
    cfg_scale: float
    overlap: float
    repaint_n: int = 1
    eta: float = 0.0
    t_min: float = T_MIN
    sampler: str = "ddim"

    def check(self) -> None:
        """Refuse a bad value (:class:`mgeldm.errors.OptionError` naming the parameter)."""
        checks = (("steps", _is_count, "expected an integer >= 1"),
                  ("repaint_n", _is_count, "expected an integer >= 1"),
                  ("cfg_scale", _is_number, "expected a finite number"),
                  ("overlap", lambda v: _is_number(v, 0.0), "expected a number of seconds >= 0"),
                  ("eta", lambda v: _is_number(v, 0.0), "expected a number >= 0"))
        for name, ok, expected in checks:
            if not ok(getattr(self, name)):
                raise OptionError(name, expected, getattr(self, name))
        problem = sampler_problem(self.sampler, self.repaint_n, self.eta)
        if problem is not None:
            name, value, what = problem
            raise OptionError(name, what, value)


# The settings of the original's scripts: steps / cfg / overlap s / repaint_n, for the released model,
# whose DiT window is RELEASED_WINDOW_SECONDS long. :func:`task_defaults` adapts them to other windows.
TASK_DEFAULTS: dict[str, SamplingSettings] = {
    "total_gen": SamplingSettings(250, 10.0, 7.0, 1),
    "source_extract": SamplingSettings(250, 10.0, 3.0, 1),
    "partial_gen": SamplingSettings(100, 10.0, 6.0, 1),
    "accomp_gen": SamplingSettings(100, 4.0, 5.0, 2),
    "partial_gen_iter": SamplingSettings(20, 2.0, 3.0, 2),
}
RELEASED_WINDOW_SECONDS = 12.8  # 100 latent frames x 2048 samples at 16 kHz


def check_task(task: Any, allowed: Sequence[str] = TASKS, problem: str = "unknown task; expected one of") -> str:
    """``task`` when it is one of ``allowed``, else an OptionError (``task``)."""
    if not isinstance(task, str) or task not in allowed:
        raise OptionError("task", f"{problem} {', '.join(allowed)}", task)
    return task


SAMPLING_PARAMETERS = ("steps", "cfg_scale", "overlap", "repaint_n", "eta", "t_min", "sampler")


def sampling_settings(task: str, facts: ModelFacts, **sampling: Any) -> SamplingSettings:
    """The defaults of ``task`` for a model with these ``facts`` (:func:`task_defaults`), with the given non-None
    ``sampling`` parameters (:data:`SAMPLING_PARAMETERS`), checked; the overlap must be shorter than a window."""
    unknown = sorted(set(sampling) - set(SAMPLING_PARAMETERS))
    if unknown:
        raise TypeError(f"unknown sampling parameters {unknown}; expected some of {list(SAMPLING_PARAMETERS)}")
    check_task(task)
    settings = replace(task_defaults(task, facts.window_seconds),
                       **{k: v for k, v in sampling.items() if v is not None})
    settings.check()
    overlap_frames(settings.overlap, facts.frame_rate, facts.window)
    return settings


def task_defaults(task: str, window_seconds: float | None = None) -> SamplingSettings:
    """The default settings of ``task`` for a model whose DiT window lasts ``window_seconds``.

    For the released 12.8 s window (or ``None``) they are the original scripts' values. For another window
    the overlap keeps its share of the window (``overlap * window / 12.8 s``: source extraction's 3 s become
    0.12 s of a 0.512 s window), so the defaults run on any model; the other settings stay as they are.
    """
    base = TASK_DEFAULTS[task]
    if window_seconds is None or math.isclose(window_seconds, RELEASED_WINDOW_SECONDS):
        return base
    return replace(base, overlap=round(base.overlap * window_seconds / RELEASED_WINDOW_SECONDS, 6))


@dataclass
class Timings:
    """Seconds spent per phase, accumulated over a run."""

    encode: float = 0.0
    sample: float = 0.0
    decode: float = 0.0
    windows: int = 0
    model_calls: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"encode_s": round(self.encode, 4), "sample_s": round(self.sample, 4),
                "decode_s": round(self.decode, 4), "windows": self.windows, "model_calls": self.model_calls}


@dataclass
class TaskRunner:
    """A loaded :class:`mgeldm.models.mgeldm.MGELDMNet` with where and how to run it.

    ``autocast_dtype`` (bf16/fp16) applies to the DiT only; the VAE and the sampler state stay fp32.
    ``chunked``: None (default) runs the VAE in one pass up to :data:`WHOLE_PASS_MAX_SECONDS` and in
    chunks beyond (or always, when the model config sets ``pretransform.chunked: true``); True always
    chunks, False never does. ``decode_chunk`` / ``chunk_overlap`` are the chunks' latent frames and
    cross-fade frames.
    ``compile`` runs the DiT through ``torch.compile`` (on CUDA in "reduce-overhead" mode, i.e. CUDA
    graphs: every window has the same shape, so one graph serves the whole song and kernel launches
    stop dominating the bandwidth-bound forward).
    """

    model: torch.nn.Module
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    autocast_dtype: torch.dtype | None = None
    encode_sample: bool = False
    progress: bool = False
    chunked: bool | None = None
    decode_chunk: int = 128
    chunk_overlap: int = 4
    compile: bool = False
    timings: Timings = field(default_factory=Timings)
    _compiled: Callable | None = field(default=None, repr=False)

    # -- model facts (the model's own: its rate, window, ratio, tracks, channels, condition width) -----------
    @property
    def facts(self) -> ModelFacts:
        return self.model.facts

    sample_rate = property(lambda self: self.facts.sample_rate)
    window = property(lambda self: self.facts.window)
    ratio = property(lambda self: self.facts.ratio)
    frame_rate = property(lambda self: self.facts.frame_rate)
    window_seconds = property(lambda self: self.facts.window_seconds)
    num_tracks = property(lambda self: self.model.num_tracks)
    channels = property(lambda self: self.model.io_channels)
    cond_dim = property(lambda self: self.model.cond_dim)

    def _sync(self) -> None:
        """Wait for queued GPU work, so the phase timings measure the work and not its launch."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    # -- VAE ------------------------------------------------------------------------------------
    def use_chunks(self, frames: int) -> bool:
        """Whether a VAE pass over ``frames`` latent frames runs in chunks (see ``chunked``)."""
        if self.chunked is not None:
            return bool(self.chunked)
        whole_max = math.floor(WHOLE_PASS_MAX_SECONDS * self.frame_rate)
        return bool(getattr(self.model.pretransform, "chunked", False)) or frames > whole_max

    def _chunking(self, frames: int) -> dict:
        if not self.use_chunks(frames):
            return {"chunked": False}
        return {"chunked": True, "chunk_size": self.decode_chunk, "overlap": self.chunk_overlap}

    def padded_length(self, samples: int) -> int:
        """Samples after padding to whole latent frames and to at least one window."""
        frames = max(math.ceil(samples / self.ratio), self.window)
        return frames * self.ratio

    @torch.inference_mode()
    def encode(self, wave: Tensor, generator: torch.Generator | None, track: int | None = None) -> Tensor:
        """(L,) or (1, L) audio at the model rate -> latent (1, C, F), F >= one window.

        The audio is zero-padded at the end to whole frames and at least one window (trimmed again
        after decoding). The VAE mean is used unless ``encode_sample`` (the original's sampling).
        With ``track`` the latent is mapped into the DiT's space for that track (the model's per-track
        normalisation, when it has one).
        """
        start = time.perf_counter()
        wave = wave.reshape(1, 1, -1).float()
        padded = torch.nn.functional.pad(wave, (0, self.padded_length(wave.shape[-1]) - wave.shape[-1]))
        frames = padded.shape[-1] // self.ratio
        z = self.model.pretransform.encode(padded.to(self.device), sample=self.encode_sample,
                                           generator=generator, **self._chunking(frames))
        self._sync()
        self.timings.encode += time.perf_counter() - start
        return z.float() if track is None else self.model.to_dit_space(z.float(), track)

    @torch.inference_mode()
    def decode(self, z: Tensor, samples: int, track: int | None = None) -> Tensor:
        """Latents (N, C, F) of one track -> audio (N, samples), one item at a time (see ``chunked``).

        With ``track``, ``z`` is in the DiT's space of that track and is mapped back first."""
        start = time.perf_counter()
        chunking = self._chunking(z.shape[-1])
        out = []
        for item in z:
            audio = self.model.decode_track(item[None].to(self.device), track, **chunking)
            out.append(audio.reshape(-1)[:samples].float().cpu())
        self.timings.decode += time.perf_counter() - start
        return torch.stack(out)

    def decode_tracks(self, z: Tensor, tracks: tuple[int, ...], samples: int) -> dict[int, Tensor]:
        return {k: self.decode(track_channels(z, k, self.channels), samples, k) for k in tracks}

    # -- DiT ------------------------------------------------------------------------------------
    def global_embed(self, cond: Tensor, track: int) -> Tensor:
        """(N, G) condition vectors -> (N, K, G) with ``cond`` on ``track`` and zeros elsewhere."""
        if cond.ndim != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"condition vectors are {tuple(cond.shape)}; the model expects (N, {self.cond_dim}) "
                             "(is the conditioner's width the DiT's global_cond_dim?)")
        return track_conditions(cond.to(self.device, torch.float32), track, self.num_tracks)

    def _dit(self) -> Callable:
        if not self.compile:
            return self.model.model_dit
        if self._compiled is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._compiled = torch.compile(self.model.model_dit, mode=mode, dynamic=False)
        return self._compiled

    def denoiser(self, global_embed: Tensor, cfg_scale: float) -> Callable[[Tensor, Tensor], Tensor]:
        dit = self._dit()

        def call(x: Tensor, t: Tensor) -> Tensor:
            self.timings.model_calls += 1
            with self._autocast():
                v = dit(x, t, global_embed, cfg_scale=cfg_scale)
            # A CUDA graph's output buffer is overwritten by its next replay: hand out a copy.
            return v.float().clone() if self.compile else v.float()

        return call

    @torch.inference_mode()
    def predict_x0(self, clean: Tensor, t: Tensor, cond: Tensor, generator: torch.Generator | None = None,
                   cfg_scale: float = 1.0) -> Tensor:
        """One denoiser call: the DiT's clean estimate of every track (B, K, C, T), from AE latents ``clean``
        noised in the DiT's space at per-track times ``t`` (B, K) with noise from ``generator``; ``cond``
        (B, K, G) condition vectors. Returned in the AE's space."""
        from mgeldm.diffusion.schedule import alpha_sigma, expand_t, noisy, x0_from_v

        b, k, c, frames = clean.shape
        z0 = self.model.ae_to_dit(clean.reshape(b, k * c, frames).float().to(self.device))
        eps = torch.randn(z0.shape, generator=generator, device=generator.device if generator else "cpu")
        t = torch.as_tensor(t, dtype=torch.float32, device=self.device)
        zt = noisy(z0, eps.to(z0), t)
        with self._autocast():
            v = self.model.model_dit(zt, t, cond.to(self.device, torch.float32), cfg_scale=cfg_scale).float()
        alpha, sigma = alpha_sigma(expand_t(t, zt))
        return self.model.dit_to_ae(x0_from_v(zt, v, alpha, sigma)).reshape(b, k, c, frames).cpu()

    @torch.inference_mode()
    def sample(self, cond: Tensor, cond_track: int, frames: int, settings: SamplingSettings,
               generator: torch.Generator | None, *, given_z: Tensor | None = None,
               given_track: int | None = None, desc: str = "windows") -> Tensor:
        """Sample a song of ``frames`` latent frames window by window -> (N, K*C, max(frames, window)).

        Joint generation when ``given_z`` is None, else generation around the clean ``given_track``
        (``given_z`` (1 or N, C, >= frames)).
        """
        return self.sample_songs(cond, cond_track, [frames], settings, [generator],
                                 given_z=None if given_z is None else [given_z], given_track=given_track,
                                 desc=desc)[0]

    @torch.inference_mode()
    def sample_songs(self, cond: Tensor, cond_track: int, frames: Sequence[int], settings: SamplingSettings,
                     generators: Sequence[torch.Generator | None], *, given_z: Sequence[Tensor] | None = None,
                     given_track: int | None = None, desc: str = "windows") -> list[Tensor]:
        """:meth:`sample` for several songs at once, each with its own generator; the N prompts of ``cond``
        apply to every song. Returns one (N, K*C, max(frames_s, window)) per song (the songs' windows share
        the DiT's batches: :class:`mgeldm.diffusion.windows.WindowedSampler`)."""
        settings.check()
        start = time.perf_counter()
        embed = self.global_embed(cond, cond_track)
        sampler = WindowedSampler(self.window, overlap_frames(settings.overlap, self.frame_rate, self.window),
                                  self.num_tracks, settings.steps, settings.eta, settings.t_min, settings.repaint_n,
                                  settings.sampler, self.device, self.progress)
        zs = sampler.sample(lambda n: self.denoiser(embed.repeat(n, 1, 1), settings.cfg_scale), cond.shape[0],
                            self.channels, frames, generators, given_z=given_z, given_track=given_track, desc=desc)
        self.timings.windows += sampler.windows
        self._sync()
        self.timings.sample += time.perf_counter() - start
        return zs


# ---------------------------------------------------------------------------------------------
# The tasks


def _as_wave(wave: Tensor) -> Tensor:
    wave = wave.detach().float().cpu()
    if wave.dim() == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.dim() != 1:
        raise ValueError(f"given audio must be mono (L,) or (1, L) at the model rate; got {tuple(wave.shape)}")
    return wave


def total_gen(runner: TaskRunner, cond: Tensor, seconds: float, settings: SamplingSettings,
              generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Generate mix, submix and source of ``seconds`` seconds from text on the mix track.

    Returns ``gen_mix``, ``gen_submix``, ``gen_src``, each (N, round(seconds * 16000)).
    """
    check_gen_duration(seconds, runner.sample_rate, runner.ratio)
    frames = seconds_to_frames(seconds, runner.frame_rate)
    samples = seconds_to_samples(seconds, runner.sample_rate)
    z = runner.sample(cond, MIX, frames, settings, generator, desc="total_gen")
    dec = runner.decode_tracks(z, (MIX, SUBMIX, SRC), samples)
    return {"gen_mix": dec[MIX], "gen_submix": dec[SUBMIX], "gen_src": dec[SRC]}


def _given_songs(runner: TaskRunner, waves: Sequence[Tensor], cond: Tensor, settings: SamplingSettings,
                 generators: Sequence[torch.Generator | None], given_track: int, cond_track: int,
                 outputs: tuple[int, ...], desc: str) -> list[tuple[dict[int, Tensor], Tensor]]:
    """Encode each song's given track, sample all songs together, decode each: [(decoded tracks, wave)]."""
    waves = [_as_wave(w) for w in waves]
    given = [runner.encode(w, g, given_track) for w, g in zip(waves, generators)]
    frames = [math.ceil(w.shape[-1] / runner.ratio) for w in waves]
    zs = runner.sample_songs(cond, cond_track, frames, settings, generators, given_z=given, given_track=given_track,
                             desc=desc)
    return [(runner.decode_tracks(z, outputs, w.shape[-1]), w) for z, w in zip(zs, waves)]


def _given_task(runner: TaskRunner, wave: Tensor, cond: Tensor, settings: SamplingSettings,
                generator: torch.Generator | None, given_track: int, cond_track: int, outputs: tuple[int, ...],
                desc: str) -> tuple[dict[int, Tensor], Tensor]:
    return _given_songs(runner, [wave], cond, settings, [generator], given_track, cond_track, outputs, desc)[0]


@dataclass(frozen=True)
class GivenTask:
    """A task that generates around one given track: which track is given, which gets the text, what is
    decoded, and how the decoded tracks and the given wave (L,) become the result dict."""

    given_track: int
    cond_track: int
    outputs: tuple[int, ...]
    results: Callable[[dict[int, Tensor], Tensor], dict[str, Tensor]]


GIVEN_TASKS: dict[str, GivenTask] = {
    "source_extract": GivenTask(MIX, SRC, (SRC, SUBMIX), lambda dec, wave: {
        "gen_src": dec[SRC], "gen_submix": dec[SUBMIX], "given_mix": wave[None]}),
    "partial_gen": GivenTask(SUBMIX, SRC, (SRC, MIX), lambda dec, wave: {
        "gen_src": dec[SRC], "gen_mix": dec[MIX], "gen_mix_sum": wave[None] + dec[SRC], "given_wav": wave[None]}),
    "accomp_gen": GivenTask(SRC, SUBMIX, (SUBMIX, MIX), lambda dec, wave: {
        "gen_submix": dec[SUBMIX], "gen_mix": dec[MIX], "given_wav": wave[None]}),
}


def given_task_songs(task: str, runner: TaskRunner, waves: Sequence[Tensor], cond: Tensor,
                     settings: SamplingSettings,
                     generators: Sequence[torch.Generator | None]) -> list[dict[str, Tensor]]:
    """Run ``task`` (one of :data:`GIVEN_TASKS`) on several songs (L,) at once, one generator each.

    The songs' windows run in shared batches (see :meth:`TaskRunner.sample_songs`): each song's result
    is the one it gets alone with its generator, up to float round-off. One result dict per song.
    """
    spec = GIVEN_TASKS[task]
    done = _given_songs(runner, waves, cond, settings, generators, spec.given_track, spec.cond_track, spec.outputs,
                        task)
    return [spec.results(dec, wave) for dec, wave in done]


def extract_latents(runner: TaskRunner, mix_z: Tensor, cond: Tensor, settings: SamplingSettings,
                    generator: torch.Generator | None = None) -> Tensor:
    """Source extraction in latent space: AE latents of a mix (C, F) -> AE latents of each source (N, C, F).

    The same windows and sampler as :func:`source_extract`, without the VAE: for scores that the
    decoder cannot cap (the latents are compared with the true stems' latents).
    """
    return extract_latents_songs(runner, [mix_z], cond, settings, [generator])[0]


def extract_latents_songs(runner: TaskRunner, mix_zs: Sequence[Tensor], cond: Tensor, settings: SamplingSettings,
                          generators: Sequence[torch.Generator | None]) -> list[Tensor]:
    """:func:`extract_latents` of several mixes at once (their windows batched), one generator each."""
    given = []
    for mix_z in mix_zs:
        if mix_z.dim() != 2 or mix_z.shape[0] != runner.channels:
            raise ValueError(f"mix latent must be (C={runner.channels}, F); got {tuple(mix_z.shape)}")
        if mix_z.shape[-1] < runner.window:
            raise ValueError(f"mix latent of {mix_z.shape[-1]} frames is shorter than one window "
                             f"({runner.window} frames)")
        given.append(runner.model.ae_to_dit(mix_z.float()[None].to(runner.device), MIX))
    frames = [mix_z.shape[-1] for mix_z in mix_zs]
    zs = runner.sample_songs(cond, SRC, frames, settings, generators, given_z=given, given_track=MIX,
                             desc="extract_latents")
    return [runner.model.dit_to_ae(track_channels(z, SRC, runner.channels)[..., :f], SRC).float().cpu()
            for z, f in zip(zs, frames)]


def source_extract(runner: TaskRunner, wave: Tensor, cond: Tensor, settings: SamplingSettings,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Extract the source described by each row of ``cond`` from the mix ``wave`` (L,).

    Returns ``gen_src``, ``gen_submix`` (N, L) and ``given_mix`` (1, L), the input unchanged.
    """
    return given_task_songs("source_extract", runner, [wave], cond, settings, [generator])[0]


def partial_gen(runner: TaskRunner, wave: Tensor, cond: Tensor, settings: SamplingSettings,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Add the source described by ``cond`` to the submix ``wave`` (source imputation).

    Returns ``gen_src``, ``gen_mix`` (the decoded mix track), ``gen_mix_sum`` (= given + gen_src),
    each (N, L), and ``given_wav`` (1, L), the input unchanged.
    """
    return given_task_songs("partial_gen", runner, [wave], cond, settings, [generator])[0]


def accomp_gen(runner: TaskRunner, wave: Tensor, cond: Tensor, settings: SamplingSettings,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Generate an accompaniment (submix, text on the submix track) for the source ``wave``.

    Returns ``gen_submix``, ``gen_mix`` (N, L) and ``given_wav`` (1, L), the input unchanged.
    """
    return given_task_songs("accomp_gen", runner, [wave], cond, settings, [generator])[0]


def partial_gen_iter(runner: TaskRunner, wave: Tensor, cond: Tensor, settings: SamplingSettings,
                     generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Add one source per row of ``cond``, in order, each on top of the previous result.

    Iteration k runs partial generation on the current submix and adds its source to it.
    Returns ``gen_src_<k>`` (1, L) for k = 0..N-1, ``gen_mix`` = given + sum of the sources, and
    ``given_wav`` (1, L), the input unchanged.
    """
    if cond.shape[0] < 2:
        raise ValueError(f"partial_gen_iter needs at least 2 condition rows (one per step); got {cond.shape[0]}")
    original = _as_wave(wave)
    current = original
    results: dict[str, Tensor] = {}
    for k in range(cond.shape[0]):
        dec, _ = _given_task(runner, current, cond[k:k + 1], settings, generator, SUBMIX, SRC, (SRC,),
                             f"partial_gen_iter {k + 1}/{cond.shape[0]}")
        results[f"gen_src_{k}"] = dec[SRC]
        current = current + dec[SRC][0]
    results["gen_mix"] = current[None]
    results["given_wav"] = original[None]
    return results


TASK_FUNCTIONS = {
    "source_extract": source_extract,
    "partial_gen": partial_gen,
    "accomp_gen": accomp_gen,
    "partial_gen_iter": partial_gen_iter,
}
