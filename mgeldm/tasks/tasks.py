"""The five inference tasks of MGE-LDM (docs/compatibility.md#sampling-and-the-five-tasks) over any length of audio.

Each task is one row of :data:`TASKS` (:class:`Task`: the track given, the track the prompt conditions, the tracks
decoded, its defaults), and :func:`run_task` runs any row over a :class:`TaskRunner` (the loaded model, its device
and precision) with condition vectors ``cond`` (N, G): one row per prompt, placed on the task's text track with
zeros on the other tracks. The N prompts run as one batch and share the encoding of the given audio; several
songs share the DiT's batches too (their k-th windows run together, each song drawing from its own generator, so
each gets what it gets alone up to float round-off). Songs are sampled window by window
(:func:`mgeldm.diffusion.windows.sample_windows`); the VAE encodes and decodes each track in one pass, as the
original does, up to :data:`WHOLE_PASS_MAX_SECONDS` of audio; only longer songs (or a runner built with
``chunked=True``) go through the VAE in cross-faded chunks, which bounds memory but changes the result near the
chunk joins.

Results are dicts of waveforms (N, L) at the model rate, keyed by the original's wav names (``gen_src``, ...);
the given audio comes back unchanged under ``given_mix`` / ``given_wav`` as (1, L). The values reaching this
module are checked already (by :func:`sampling_settings` and the API); what is wrong here is a bug, asserted.
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

from mgeldm import checks
from mgeldm.diffusion.samplers import SamplingSettings
from mgeldm.diffusion.windows import plan_windows, sample_windows, track_conditions, window_steps
from mgeldm.models.mgeldm import ModelFacts
from mgeldm.models.tracks import MIX, SRC, SUBMIX, track_channels
from mgeldm.tasks.windowing import overlap_frames, seconds_to_frames, seconds_to_samples

# Longest audio the VAE encodes/decodes in one pass by default (the original's behaviour at any length).
# A fixed length, not a memory probe, so a result never depends on the machine it was computed on.
# The full VAE's decoder needs about 0.05 GB per second of audio in one pass (fp32, measured on CPU at
# 8 s and 16 s), so about 30 GB at this limit; ``chunked=True`` bounds it for smaller machines.
WHOLE_PASS_MAX_SECONDS = 600.0
RELEASED_WINDOW_SECONDS = 12.8  # 100 latent frames x 2048 samples at 16 kHz


@dataclass(frozen=True)
class Task:
    """One task, declared once: the clean track the user gives (None: total generation), the track the prompt
    conditions, the tracks decoded into the result (result name -> track), under which name the given audio comes
    back unchanged, the name of the given audio plus the generated source (partial_gen's ``gen_mix_sum``), whether
    it runs once per prompt, each on the previous result (partial_gen_iter), and its default settings: the
    original scripts' values for the released model, whose DiT window is :data:`RELEASED_WINDOW_SECONDS` long
    (:func:`task_defaults` adapts them to other windows)."""

    name: str
    given: int | None
    text: int
    outputs: tuple[tuple[str, int], ...]
    given_key: str | None
    defaults: SamplingSettings
    sum_key: str | None = None
    iterative: bool = False


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "total_gen",
            None,
            MIX,
            (("gen_mix", MIX), ("gen_submix", SUBMIX), ("gen_src", SRC)),
            None,
            SamplingSettings(250, 10.0, 7.0, 1),
        ),
        Task(
            "source_extract",
            MIX,
            SRC,
            (("gen_src", SRC), ("gen_submix", SUBMIX)),
            "given_mix",
            SamplingSettings(250, 10.0, 3.0, 1),
        ),
        Task(
            "partial_gen",
            SUBMIX,
            SRC,
            (("gen_src", SRC), ("gen_mix", MIX)),
            "given_wav",
            SamplingSettings(100, 10.0, 6.0, 1),
            sum_key="gen_mix_sum",
        ),
        Task(
            "accomp_gen",
            SRC,
            SUBMIX,
            (("gen_submix", SUBMIX), ("gen_mix", MIX)),
            "given_wav",
            SamplingSettings(100, 4.0, 5.0, 2),
        ),
        Task(
            "partial_gen_iter",
            SUBMIX,
            SRC,
            (("gen_src", SRC),),
            "given_wav",
            SamplingSettings(20, 2.0, 3.0, 2),
            iterative=True,
        ),
    )
}
SAMPLING_PARAMETERS = ("steps", "cfg_scale", "overlap", "repaint_n", "eta", "t_min", "sampler")


def check_task(
    task: Any, allowed: Sequence[str] = tuple(TASKS), problem: str = "unknown task; expected one of"
) -> Task:
    """The row of ``task`` when it is one of ``allowed``, else an OptionError (``task``)."""
    return TASKS[checks.choice("task", task, tuple(allowed), problem)]


def sampling_settings(task: str, facts: ModelFacts, **sampling: Any) -> SamplingSettings:
    """The defaults of ``task`` for a model with these ``facts`` (:func:`task_defaults`), with the given non-None
    ``sampling`` parameters (:data:`SAMPLING_PARAMETERS`), checked by :func:`check_settings`."""
    unknown = sorted(set(sampling) - set(SAMPLING_PARAMETERS))
    if unknown:
        raise TypeError(f"unknown sampling parameters {unknown}; expected some of {list(SAMPLING_PARAMETERS)}")
    check_task(task)
    return check_settings(
        replace(task_defaults(task, facts.window_seconds), **{k: v for k, v in sampling.items() if v is not None}),
        facts,
    )


def check_settings(settings: SamplingSettings, facts: ModelFacts) -> SamplingSettings:
    """``settings`` checked (:meth:`SamplingSettings.check`), the overlap also shorter than one window: the one
    place a user's sampling settings are checked. Settings already checked come back as the same object."""
    checked = settings.check()
    overlap_frames(checked.overlap, facts.frame_rate, facts.window)
    return checked


def task_defaults(task: str, window_seconds: float | None = None) -> SamplingSettings:
    """The default settings of ``task`` for a model whose DiT window lasts ``window_seconds``.

    For the released 12.8 s window (or ``None``) they are the original scripts' values. For another window
    the overlap keeps its share of the window (``overlap * window / 12.8 s``: source extraction's 3 s become
    0.12 s of a 0.512 s window), so the defaults run on any model; the other settings stay as they are.
    """
    base = TASKS[task].defaults
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
        return {
            "encode_s": round(self.encode, 4),
            "sample_s": round(self.sample, 4),
            "decode_s": round(self.decode, 4),
            "windows": self.windows,
            "model_calls": self.model_calls,
        }


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
    ``step_hook(n)``, when set, is called after every denoiser call of the sampling loop, ``n`` the songs whose
    window it advanced: where a caller's progress display and cancel check run (:func:`planned_steps` counts them).
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
    step_hook: Callable[[int], None] | None = None
    timings: Timings = field(default_factory=Timings)
    _compiled: Callable | None = field(default=None, repr=False)

    @property
    def facts(self) -> ModelFacts:
        """The model's sample rate, DiT window and frames (ratio, frame rate, window seconds)."""
        return self.model.facts

    def sync(self) -> None:
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
        whole_max = math.floor(WHOLE_PASS_MAX_SECONDS * self.facts.frame_rate)
        return bool(getattr(self.model.pretransform, "chunked", False)) or frames > whole_max

    def _chunking(self, frames: int) -> dict:
        if not self.use_chunks(frames):
            return {"chunked": False}
        return {"chunked": True, "chunk_size": self.decode_chunk, "overlap": self.chunk_overlap}

    def padded_length(self, samples: int) -> int:
        """Samples after padding to whole latent frames and to at least one window."""
        frames = max(math.ceil(samples / self.facts.ratio), self.facts.window)
        return frames * self.facts.ratio

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
        frames = padded.shape[-1] // self.facts.ratio
        z = self.model.pretransform.encode(
            padded.to(self.device), sample=self.encode_sample, generator=generator, **self._chunking(frames)
        )
        self.sync()
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

    # -- DiT ------------------------------------------------------------------------------------
    def global_embed(self, cond: Tensor, track: int) -> Tensor:
        """(N, G) condition vectors -> (N, K, G) with ``cond`` on ``track`` and zeros elsewhere."""
        if cond.ndim != 2 or cond.shape[1] != self.model.cond_dim:
            raise ValueError(
                f"condition vectors are {tuple(cond.shape)}; the model expects (N, {self.model.cond_dim}) "
                "(is the conditioner's width the DiT's global_cond_dim?)"
            )
        return track_conditions(cond.to(self.device, torch.float32), track, self.model.num_tracks)

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
    def predict_x0(
        self, clean: Tensor, t: Tensor, cond: Tensor, generator: torch.Generator | None = None, cfg_scale: float = 1.0
    ) -> Tensor:
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


# ---------------------------------------------------------------------------------------------
# The tasks


def _as_wave(wave: Tensor) -> Tensor:
    wave = wave.detach().float().cpu()
    if wave.dim() == 2 and wave.shape[0] == 1:
        wave = wave[0]
    assert wave.dim() == 1, f"given audio must be mono (L,) at the model rate; got {tuple(wave.shape)}"
    return wave


def run_task(
    runner: TaskRunner,
    task: Task,
    cond: Tensor,
    settings: SamplingSettings,
    generators: Sequence[torch.Generator | None],
    *,
    waves: Sequence[Tensor] = (),
    seconds: float | None = None,
    desc: str | None = None,
) -> list[dict[str, Tensor]]:
    """Run ``task`` on several songs at once (their windows share the DiT's batches, each song drawing from its
    own generator, so each gets what it gets alone up to float round-off), or once for ``seconds`` of total
    generation: one result dict per song, each (N, L) per result name for the N rows of ``cond``."""
    if task.iterative:
        return [_iterate(runner, task, wave, cond, settings, gen) for wave, gen in zip(waves, generators)]
    facts = runner.facts
    if task.given is None:  # total generation: one song of ``seconds``, nothing given
        frames = [seconds_to_frames(seconds, facts.frame_rate)]
        lengths = [seconds_to_samples(seconds, facts.sample_rate)]
        waves, given = [None], None
    else:
        waves = [_as_wave(w) for w in waves]
        lengths = [w.shape[-1] for w in waves]
        frames = [math.ceil(n / facts.ratio) for n in lengths]
        given = [runner.encode(w, g, task.given) for w, g in zip(waves, generators)]
    zs = sample_latents(runner, task, cond, settings, generators, frames, given, desc or task.name)
    results = []
    for z, n, wave in zip(zs, lengths, waves):
        out = {
            key: runner.decode(track_channels(z, track, runner.model.io_channels), n, track)
            for key, track in task.outputs
        }
        if task.sum_key is not None:
            out[task.sum_key] = wave[None] + out[task.outputs[0][0]]
        if task.given_key is not None:
            out[task.given_key] = wave[None]
        results.append(out)
    return results


def _iterate(
    runner: TaskRunner,
    task: Task,
    wave: Tensor,
    cond: Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """Partial generation once per row of ``cond``, in order, each adding its source to the previous result:
    ``gen_src_<k>`` (1, L) for k = 0..N-1, ``gen_mix`` = given + the sources and the given wave (1, L)."""
    step = replace(task, iterative=False, given_key=None)
    original = current = _as_wave(wave)
    out: dict[str, Tensor] = {}
    for k in range(cond.shape[0]):
        src = run_task(
            runner,
            step,
            cond[k : k + 1],
            settings,
            [generator],
            waves=[current],
            desc=f"{task.name} {k + 1}/{cond.shape[0]}",
        )[0]["gen_src"]
        out[f"gen_src_{k}"] = src
        current = current + src[0]
    return {**out, "gen_mix": current[None], task.given_key: original[None]}


def sample_latents(
    runner: TaskRunner,
    task: Task,
    cond: Tensor,
    settings: SamplingSettings,
    generators: Sequence[torch.Generator | None],
    frames: Sequence[int],
    given: Sequence[Tensor] | None = None,
    desc: str = "windows",
) -> list[Tensor]:
    """The songs' latents in the DiT's space (N, K*C, max(frames_s, window)), ``cond`` (N, G) on the task's text
    track; around the clean ``given[s]`` (1 or N, C, >= frames_s) in the DiT's space of the task's given track."""
    start, facts = time.perf_counter(), runner.facts
    embed = runner.global_embed(cond, task.text)
    overlap = overlap_frames(settings.overlap, facts.frame_rate, facts.window)
    zs = sample_windows(
        lambda n: runner.denoiser(embed.repeat(n, 1, 1), settings.cfg_scale),
        settings,
        frames,
        generators,
        rows=cond.shape[0],
        channels=runner.model.io_channels,
        num_tracks=runner.model.num_tracks,
        window=facts.window,
        overlap=overlap,
        given_track=task.given,
        given_z=given,
        device=runner.device,
        progress=runner.progress,
        desc=desc,
        on_step=runner.step_hook,
    )
    runner.timings.windows += sum(len(plan_windows(f, facts.window, overlap)) for f in frames)
    runner.sync()
    runner.timings.sample += time.perf_counter() - start
    return zs


def planned_steps(
    runner: TaskRunner, task: Task, settings: SamplingSettings, frames: Sequence[int], prompts: int
) -> int:
    """The steps (windows x denoiser calls, per song) :func:`run_task` takes on songs of ``frames`` latent frames
    with ``prompts`` rows of conditions: what ``step_hook`` counts to."""
    facts = runner.facts
    overlap = overlap_frames(settings.overlap, facts.frame_rate, facts.window)
    steps = window_steps(frames, facts.window, overlap, settings, task.given is not None)
    return steps * (prompts if task.iterative else 1)


def extract_latents_songs(
    runner: TaskRunner,
    mix_zs: Sequence[Tensor],
    cond: Tensor,
    settings: SamplingSettings,
    generators: Sequence[torch.Generator | None],
) -> list[Tensor]:
    """Source extraction in latent space: AE latents of each mix (C, F) -> AE latents of each source (N, C, F).

    The same windows and sampler as ``source_extract``, without the VAE: for scores that the decoder cannot cap
    (the latents are compared with the true stems' latents). The caller checks the latents' shapes.
    """
    channels = runner.model.io_channels
    given = [runner.model.ae_to_dit(mix_z.float()[None].to(runner.device), MIX) for mix_z in mix_zs]
    frames = [mix_z.shape[-1] for mix_z in mix_zs]
    zs = sample_latents(runner, TASKS["source_extract"], cond, settings, generators, frames, given, "extract_latents")
    return [
        runner.model.dit_to_ae(track_channels(z, SRC, channels)[..., :f], SRC).float().cpu() for z, f in zip(zs, frames)
    ]
