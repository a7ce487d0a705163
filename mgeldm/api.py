"""The Python API of MGE-LDM inference; ``infer.py`` is a thin layer over it.

    from mgeldm.api import MGELDM
    m = MGELDM.from_pretrained("unwrapped_DiT.ckpt", "music_audioset_epoch_15_esc_90.14.pt")
    song = m.generate("Lo-fi hip hop beat with mellow jazzy chords", seconds=30, seed=0)
    stems = m.extract(wave, sr, ["The sound of vocals", "The sound of drums"])
    stems["gen_src"]          # (2, L) at m.sample_rate (16 kHz): vocals, drums

Every task method returns a dict of 16 kHz waveforms keyed like the original's wav names
(``gen_src``, ``gen_submix``, ``gen_mix``, ...), each (N, L) with one row per prompt; the given
audio comes back unchanged (mono, 16 kHz) under ``given_mix`` / ``given_wav``.

Every argument is checked where it enters here (with :mod:`mgeldm.checks`, :mod:`mgeldm.inputs` and
:meth:`SamplingSettings.check`); a bad value is an :class:`mgeldm.errors.OptionError` naming the parameter as
it is written in Python (``steps=0: expected an integer >= 1``). The command line maps these names to its own
flags (``+num_steps``) in one table (``mgeldm.cli.infer.FLAGS``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mgeldm import checks
from mgeldm.errors import Cancelled, OptionError, UserError
from mgeldm.inputs import (
    Prompts,
    as_mono,
    check_chunked,
    check_query,
    compute_dtype,
    prepare_audio,
    prompt_list,
    resolve_device,
)
from mgeldm.model_config import (
    conditioner_ckpt,
    conditioner_node,
    inference_model_config,
    plain_model_config,
    takes_clap_ckpt,
)
from mgeldm.tasks.tasks import (
    SamplingSettings,
    Task,
    TaskRunner,
    Timings,
    check_settings,
    check_task,
    extract_latents_songs,
    planned_steps,
    run_task,
    sampling_settings,
)
from mgeldm.tasks.windowing import check_gen_duration, seconds_to_frames
from mgeldm.weights import CLAP_FILE

__all__ = ["MGELDM", "Autoencoder", "SamplingSettings"]


def _build_conditioner(model_cfg: Mapping[str, Any], device: torch.device) -> Any:
    """Build the conditioner of ``model_cfg`` (on ``device``); its errors are UserErrors."""
    from mgeldm.models.conditioners import build_conditioner

    node = conditioner_node(model_cfg)
    if node is None:
        raise UserError("model config: no `conditioner.clap_text` node")
    return build_conditioner(node, device=str(device))


# --------------------------------------------------------------------------------------------- the model


class MGELDM:
    """A loaded MGE-LDM (DiT + VAE) with its conditioner, ready for the five tasks."""

    def __init__(
        self,
        model: torch.nn.Module,
        conditioner: Any = None,
        *,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        model_config: Mapping[str, Any] | None = None,
        progress: bool = False,
        compile: bool = False,
        chunked: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = str(precision)
        dtype = compute_dtype(precision)
        self.model = model.to(self.device).eval().requires_grad_(False)
        if dtype is not None:
            # Keep the DiT's weights in the compute dtype, so each forward reads them once at half the
            # bytes (autocast alone would re-cast fp32 weights every call); the VAE stays fp32.
            self.model.model_dit.to(dtype)
        self.conditioner = conditioner.to(self.device) if conditioner is not None else None
        self.model_config = dict(model_config) if model_config is not None else None
        self.runner = TaskRunner(
            self.model,
            device=self.device,
            autocast_dtype=dtype,
            progress=progress,
            compile=checks.boolean("compile", compile),
            chunked=check_chunked(chunked),
        )
        self.last_seed: int | None = None
        self.last_seeds: list[int] = []
        if self.conditioner is not None and int(self.conditioner.dim) != self.model.cond_dim:
            raise UserError(
                f"conditioner width {self.conditioner.dim} does not match the DiT's global_cond_dim "
                f"{self.model.cond_dim}"
            )

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        ckpt: str | os.PathLike,
        clap_ckpt: str | os.PathLike | None = None,
        *,
        conditioner: Any = None,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        model_config: Mapping[str, Any] | str | os.PathLike | None = None,
        progress: bool = False,
        compile: bool = False,
        chunked: bool | None = None,
    ) -> MGELDM:
        """Load an unwrapped MGE-LDM checkpoint (.ckpt / .safetensors).

        The model is built from the config the checkpoint carries (``unwrap_model.py`` writes it beside
        the weights); for a checkpoint without one (the released weights) from ``model_config``, the
        ``model`` node of a Hydra config (a mapping or a yaml file), by default ``configs/dit.yaml``'s.
        The conditioner is ``conditioner`` when given, else it is built from the config's conditioner node
        with ``clap_ckpt`` as its checkpoint (when neither is set, only unconditional generation is
        available). ``compile`` runs the DiT through torch.compile (CUDA graphs on CUDA); the first window
        pays the compilation. ``chunked``: None runs the VAE in one pass up to ``WHOLE_PASS_MAX_SECONDS``
        (10 minutes) and in chunks beyond, True always in chunks (less memory, slightly different audio near
        the joins), False never. Every file it needs (the checkpoint; for a CLAP conditioner its checkpoint
        and roberta-base's tokenizer files) is checked first, and one error names all that are missing.
        """
        from mgeldm.models.mgeldm import load_mgeldm

        dev = resolve_device(device)
        compute_dtype(precision)
        explicit = plain_model_config(model_config) if model_config is not None else None
        cfg = inference_model_config(ckpt, explicit, clap_ckpt, conditioner=conditioner is None)
        if conditioner is None and conditioner_node(cfg) is not None:
            # A CLAP node needs its checkpoint; other conditioners (e.g. the quickstart's) build as they are.
            if conditioner_ckpt(cfg) or not takes_clap_ckpt(cfg):
                conditioner = _build_conditioner(cfg, dev)
        model = load_mgeldm(ckpt, cfg)
        return cls(
            model,
            conditioner,
            device=dev,
            precision=precision,
            model_config=cfg,
            progress=progress,
            compile=compile,
            chunked=chunked,
        )

    @classmethod
    def untrained(
        cls,
        model_config: Mapping[str, Any],
        autoencoder_ckpt: str | os.PathLike,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> MGELDM:
        """The model of ``model_config`` with the DiT as initialised (seeded) and the trained VAE of
        ``autoencoder_ckpt`` (an unwrapped AE): the "untrained" baseline of a recipe, no conditioner."""
        from mgeldm.checkpoints import load_weights, read_state_dict
        from mgeldm.models.mgeldm import build_mgeldm

        cfg = plain_model_config(model_config)
        torch.manual_seed(checks.seed(seed))
        model = build_mgeldm(cfg)
        load_weights(
            model.pretransform.model,
            read_state_dict(autoencoder_ckpt),
            what="an autoencoder checkpoint",
            path=autoencoder_ckpt,
        )
        return cls(model, device=device, model_config=cfg)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights as an unwrapped checkpoint (.ckpt / .safetensors) that carries the model config."""
        from mgeldm.checkpoints import write_state_dict

        return write_state_dict(self.model.state_dict(), path, model_config=self.model_config)

    # -- facts ----------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.runner.facts.sample_rate

    @property
    def timings(self) -> Timings:
        """Seconds per phase (encode, sample, decode), windows and model calls, summed over the calls so far."""
        return self.runner.timings

    # -- conditions -----------------------------------------------------------------------------
    def embed_prompts(self, prompts: Prompts) -> Tensor:
        """Prompts -> (N, G) condition vectors; a None prompt is the zero (unconditional) vector."""
        items = prompt_list(prompts)
        out = torch.zeros(len(items), self.model.cond_dim)
        texts = [(i, p) for i, p in enumerate(items) if p is not None]
        if texts:
            self._need_conditioner("prompts", "text prompts")
            with torch.inference_mode():
                emb = self.conditioner.embed_text([p for _, p in texts]).float().cpu()
            out[[i for i, _ in texts]] = emb
        return out

    def embed_audio(self, audio: Tensor | np.ndarray, sr: int) -> Tensor:
        """Query by example: the conditioner's audio embedding of a reference clip -> (1, G)."""
        self._need_conditioner("query", "audio queries")
        target = getattr(self.conditioner, "sample_rate", None) or sr
        wave = prepare_audio(audio, sr, int(target), "query")
        with torch.inference_mode():
            return self.conditioner.embed_audio(wave[None].to(self.device), int(target)).float().cpu().reshape(1, -1)

    def _need_conditioner(self, name: str, what: str) -> None:
        if self.conditioner is not None:
            return
        if self.model_config is not None and conditioner_node(self.model_config) is None:
            raise OptionError(
                name,
                f"this model has no conditioner (its config has no model.conditioner): {what} "
                "cannot be used; it generates without prompts (None)",
            )
        raise OptionError("clap_ckpt", f"not set; {what} need the CLAP checkpoint {CLAP_FILE}")

    def _cond(self, prompts: list[str | None], query: tuple[Tensor | np.ndarray, int] | None) -> Tensor:
        if query is not None:
            return self.embed_audio(*query)
        return self.embed_prompts(prompts)

    # -- randomness -----------------------------------------------------------------------------
    def generator(self, seed: int | None = None) -> torch.Generator:
        """A generator on the model's device seeded with ``seed`` (a fresh random seed when None)."""
        seed = checks.seed(secrets.randbits(63) if seed is None else seed)
        self.last_seed = seed
        gen = torch.Generator(device=self.device if self.device.type != "mps" else "cpu")
        gen.manual_seed(seed)
        return gen

    def _song_generators(self, seeds: Sequence[int] | None, count: int) -> list[torch.Generator]:
        seeds = [None] * count if seeds is None else list(seeds)
        if len(seeds) != count:
            raise OptionError("seeds", f"{count} songs need {count} seeds; got {len(seeds)}")
        gens = [self.generator(seed) for seed in seeds]
        self.last_seeds = [int(g.initial_seed()) for g in gens]
        return gens

    # -- tasks ----------------------------------------------------------------------------------
    def settings(self, task: str, **sampling: Any) -> SamplingSettings:
        """The task's defaults (the original scripts' values, the overlap scaled to this model's window, see
        :func:`mgeldm.tasks.tasks.task_defaults`) with the given non-None ``sampling`` parameters (steps,
        cfg_scale, overlap, repaint_n, eta, t_min, sampler), checked."""
        return sampling_settings(task, self.runner.facts, **sampling)

    def _settings(self, task: str, settings: SamplingSettings | None, sampling: Mapping[str, Any]) -> SamplingSettings:
        if settings is None:
            return self.settings(task, **sampling)
        if sampling:
            raise TypeError(f"give settings= or sampling parameters ({', '.join(sampling)}), not both")
        return check_settings(settings, self.runner.facts)

    def run(
        self,
        task: str,
        *,
        prompts: Prompts = None,
        audio: Tensor | np.ndarray | None = None,
        sr: int | None = None,
        seconds: float | None = None,
        query: tuple[Tensor | np.ndarray, int] | None = None,
        encode_sample: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        settings: SamplingSettings | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        **sampling: Any,
    ) -> dict[str, Tensor]:
        """Run one task by name (what the CLI calls). The sampling settings: ``settings`` (from :meth:`settings`),
        or the parameters of :meth:`settings` (steps, cfg_scale, overlap, repaint_n, eta, t_min, sampler:
        ``"ddim"``, the default and the original's, ``"dpmpp_2m"`` or ``"heun"``) over the task's defaults.
        ``on_progress(done, total)`` is called after every sampling step (windows x steps); ``should_cancel()``
        is asked then too, and True stops the run with :class:`mgeldm.errors.Cancelled`."""
        row = check_task(task)
        settings = self._settings(task, settings, sampling)
        check_query(task, prompts, query)
        cond = self._cond(prompt_list(prompts, task), query)
        gen = generator if generator is not None else self.generator(seed)
        self.runner.encode_sample = checks.boolean("encode_sample", encode_sample)
        if row.given is None:
            if seconds is None:
                raise OptionError("seconds", "missing; total_gen needs a duration in seconds")
            seconds = checks.number("seconds", seconds)
            check_gen_duration(seconds, self.sample_rate, self.runner.facts.ratio)
            with self._watch(
                row,
                settings,
                [seconds_to_frames(seconds, self.runner.facts.frame_rate)],
                cond,
                on_progress,
                should_cancel,
            ):
                return run_task(self.runner, row, cond, settings, [gen], seconds=seconds)[0]
        if audio is None or sr is None:
            raise OptionError("audio", f"missing; {task} needs given audio")
        wave = prepare_audio(audio, sr, self.sample_rate)
        with self._watch(row, settings, self._frames([wave]), cond, on_progress, should_cancel):
            return run_task(self.runner, row, cond, settings, [gen], waves=[wave])[0]

    def run_songs(
        self,
        task: str,
        songs: Sequence[Tensor | np.ndarray],
        sr: int,
        *,
        prompts: Prompts = None,
        query: tuple[Tensor | np.ndarray, int] | None = None,
        encode_sample: bool = False,
        seeds: Sequence[int] | None = None,
        generators: Sequence[torch.Generator] | None = None,
        settings: SamplingSettings | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        **sampling: Any,
    ) -> list[dict[str, Tensor]]:
        """Run a given-track task (source_extract, partial_gen, accomp_gen) on several songs in shared DiT
        batches: one result dict per song, each what :meth:`run` returns for that song alone with its seed
        (up to float round-off). ``seeds`` (one per song; fresh ones when None, kept in ``last_seeds``) or
        ``generators``; the prompts apply to every song; ``on_progress`` and ``should_cancel`` as for :meth:`run`."""
        row = check_task(task, ("source_extract", "partial_gen", "accomp_gen"), "several songs in one batch run for")
        settings = self._settings(task, settings, sampling)
        songs = list(songs)
        if not songs:
            raise OptionError("songs", "no songs given")
        gens = list(generators) if generators is not None else self._song_generators(seeds, len(songs))
        if len(gens) != len(songs):
            raise OptionError("generators", f"{len(songs)} songs need {len(songs)} generators; got {len(gens)}")
        cond = self._cond(prompt_list(prompts), query)
        self.runner.encode_sample = checks.boolean("encode_sample", encode_sample)
        waves = [prepare_audio(a, sr, self.sample_rate, f"songs[{i}]") for i, a in enumerate(songs)]
        with self._watch(row, settings, self._frames(waves), cond, on_progress, should_cancel):
            return run_task(self.runner, row, cond, settings, gens, waves=waves)

    def _frames(self, waves: Sequence[Tensor]) -> list[int]:
        return [-(-w.shape[-1] // self.runner.facts.ratio) for w in waves]

    @contextlib.contextmanager
    def _watch(
        self,
        row: Task,
        settings: SamplingSettings,
        frames: list[int],
        cond: Tensor,
        on_progress: Callable[[int, int], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> Iterator[None]:
        """While a task runs: ``on_progress(done, total)`` and ``should_cancel()`` after every sampling step."""
        for name, hook in (("on_progress", on_progress), ("should_cancel", should_cancel)):
            if hook is not None and not callable(hook):
                raise OptionError(name, "expected a function", repr(hook))
        if on_progress is None and should_cancel is None:
            yield
            return
        total, done = planned_steps(self.runner, row, settings, frames, cond.shape[0]), 0

        def step(songs: int) -> None:
            nonlocal done
            done += songs
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"cancelled after {done} of {total} sampling steps")
            if on_progress is not None:
                on_progress(done, total)

        self.runner.step_hook = step
        try:
            yield
        finally:
            self.runner.step_hook = None

    def extract_songs(
        self, songs: Sequence[Tensor | np.ndarray], sr: int, prompts: Prompts, **kw: Any
    ) -> list[dict[str, Tensor]]:
        """Source extraction of several songs (all at rate ``sr``) in shared batches: one :meth:`extract`
        result per song (``seeds=[...]`` one per song)."""
        return self.run_songs("source_extract", songs, sr, prompts=prompts, **kw)

    def generate(self, prompt: Prompts, seconds: float, **kw: Any) -> dict[str, Tensor]:
        """Total generation: ``gen_mix``, ``gen_submix``, ``gen_src`` of ``seconds`` each (N, L)."""
        return self.run("total_gen", prompts=prompt, seconds=seconds, **kw)

    def extract(self, audio: Tensor | np.ndarray, sr: int, prompts: Prompts, **kw: Any) -> dict[str, Tensor]:
        """Source extraction: ``gen_src`` / ``gen_submix`` (N, L) per prompt, ``given_mix`` (1, L)."""
        return self.run("source_extract", prompts=prompts, audio=audio, sr=sr, **kw)

    def add_part(self, audio: Tensor | np.ndarray, sr: int, prompt: Prompts, **kw: Any) -> dict[str, Tensor]:
        """Partial generation: ``gen_src``, ``gen_mix``, ``gen_mix_sum`` (N, L), ``given_wav`` (1, L)."""
        return self.run("partial_gen", prompts=prompt, audio=audio, sr=sr, **kw)

    def accompany(self, audio: Tensor | np.ndarray, sr: int, prompt: Prompts, **kw: Any) -> dict[str, Tensor]:
        """Accompaniment generation: ``gen_submix``, ``gen_mix`` (N, L), ``given_wav`` (1, L)."""
        return self.run("accomp_gen", prompts=prompt, audio=audio, sr=sr, **kw)

    def add_parts_iteratively(
        self, audio: Tensor | np.ndarray, sr: int, prompts: str | Sequence[str], **kw: Any
    ) -> dict[str, Tensor]:
        """Iterative partial generation: ``gen_src_<k>`` per prompt, ``gen_mix``, ``given_wav``."""
        return self.run("partial_gen_iter", prompts=prompts, audio=audio, sr=sr, **kw)

    # -- latent space (scores the decoder cannot cap) ------------------------------------------------
    @torch.inference_mode()
    def encode_latents(self, audio: Tensor | np.ndarray, sr: int) -> Tensor:
        """Audio -> the AE's latents (C, F): the VAE mean, unscaled, as ``pre_encode.py`` writes them."""
        wave = prepare_audio(audio, sr, self.sample_rate)
        z = self.runner.encode(wave, None) * float(self.model.pretransform.scale)  # padded to >= one window
        frames = -(-wave.shape[-1] // self.runner.facts.ratio)
        return z[0, :, :frames].float().cpu()

    def extract_latents(
        self,
        mix_latent: Tensor,
        prompts: Prompts,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        **sampling: Any,
    ) -> Tensor:
        """Source extraction on AE latents: mix (C, F) -> one source latent (N, C, F) per prompt.

        ``sampling`` as for :meth:`extract` (steps, cfg_scale, overlap, ...); the defaults are the task's.
        """
        gen = generator if generator is not None else self.generator(seed)
        return self._extract_latents([mix_latent], prompts, [gen], sampling)[0]

    def extract_latents_songs(
        self, mix_latents: Sequence[Tensor], prompts: Prompts, *, seeds: Sequence[int] | None = None, **sampling: Any
    ) -> list[Tensor]:
        """:meth:`extract_latents` of several mixes (C, F_s) in shared batches, one seed per mix."""
        return self._extract_latents(mix_latents, prompts, self._song_generators(seeds, len(mix_latents)), sampling)

    def _extract_latents(
        self, mix_latents: Sequence[Tensor], prompts: Prompts, gens: list[torch.Generator], sampling: Mapping[str, Any]
    ) -> list[Tensor]:
        settings = self.settings("source_extract", **sampling)
        window, channels = self.runner.facts.window, self.model.io_channels
        zs = [torch.as_tensor(z) for z in mix_latents]
        for i, z in enumerate(zs):
            if z.dim() != 2 or z.shape[0] != channels or z.shape[-1] < window:
                raise OptionError(
                    "mix_latent",
                    f"expected (C={channels}, F >= {window} frames, one window); got "
                    f"{tuple(z.shape)}" + (f" (mix {i})" if len(zs) > 1 else ""),
                )
        return extract_latents_songs(self.runner, zs, self.embed_prompts(prompts), settings, gens)

    @torch.inference_mode()
    def predict_x0(
        self, clean: Tensor, t: Tensor, cond: Tensor, generator: torch.Generator | None = None, cfg_scale: float = 1.0
    ) -> Tensor:
        """One denoiser call: the DiT's clean estimate of every track from a noised input.

        ``clean`` (B, K, C, T) AE latents of the tracks, ``t`` (B, K) per-track diffusion time (0 = given
        clean), ``cond`` (B, K, G) condition vectors (zeros = none). The tracks are noised in the DiT's
        space with noise from ``generator``; returns the x0 estimate (B, K, C, T) in the AE's space.
        """
        return self.runner.predict_x0(clean, t, cond, generator, cfg_scale)


class Autoencoder:
    """A loaded VAE (an unwrapped autoencoder checkpoint): audio through its latents and back."""

    def __init__(self, model: torch.nn.Module, *, device: str | torch.device = "cpu") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls,
        ckpt: str | os.PathLike,
        model_config: Mapping[str, Any] | str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
    ) -> Autoencoder:
        """Build the VAE of ``model_config`` (the ``model`` node of an AE config, e.g. ``configs/default_ae.yaml``'s,
        or a yaml file of it) and load ``ckpt`` into it, strictly."""
        from mgeldm.checkpoints import load_weights, read_state_dict
        from mgeldm.models.autoencoder import build_autoencoder

        model = build_autoencoder(plain_model_config(model_config))
        load_weights(model, read_state_dict(ckpt), what="an autoencoder checkpoint", path=ckpt)
        return cls(model, device=device)

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @torch.inference_mode()
    def round_trip(self, audio: Tensor | np.ndarray, sr: int) -> Tensor:
        """Audio -> the VAE's mean latents -> audio: mono (L,) at :attr:`sample_rate`, as long as the input (padded
        to whole latent frames for the pass, cut back after)."""
        wave = as_mono(audio, sr, self.sample_rate)
        length, ratio = wave.shape[-1], int(self.model.downsampling_ratio)
        padded = torch.nn.functional.pad(wave, (0, -length % ratio))[None, None].to(self.device)
        return self.model.decode_audio(self.model.encode_audio(padded))[0, 0, :length].float().cpu()
