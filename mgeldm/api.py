"""The Python API of MGE-LDM inference; ``infer.py`` is a thin layer over it.

    from mgeldm.api import MGELDM
    m = MGELDM.from_pretrained("unwrapped_DiT.ckpt", "music_audioset_epoch_15_esc_90.14.pt")
    song = m.generate("Lo-fi hip hop beat with mellow jazzy chords", seconds=30, seed=0)
    stems = m.extract(wave, sr, ["The sound of vocals", "The sound of drums"])
    stems["gen_src"]          # (2, L) at m.sample_rate (16 kHz): vocals, drums

Every task method returns a dict of 16 kHz waveforms keyed like the original's wav names
(``gen_src``, ``gen_submix``, ``gen_mix``, ...), each (N, L) with one row per prompt; the given
audio comes back unchanged (mono, 16 kHz) under ``given_mix`` / ``given_wav``.

Every argument is checked here, once; a bad value is an :class:`mgeldm.errors.OptionError` naming the
parameter as it is written in Python (``steps=0: expected an integer >= 1``). The command line maps these
names to its own flags (``+num_steps``) in one table (``mgeldm.cli.infer.FLAGS``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mgeldm.errors import OptionError, UserError
from mgeldm.model_config import (checkpoint_model_config, conditioner_ckpt, conditioner_node, default_model_config,
                                 inference_model_config, missing_inference_files, plain_model_config,
                                 takes_clap_ckpt, with_conditioner_ckpt)
from mgeldm.tasks.tasks import (GIVEN_TASKS, TASK_FUNCTIONS, SamplingSettings, TaskRunner, Timings, check_task,
                                extract_latents, extract_latents_songs, given_task_songs, sampling_settings, total_gen)
from mgeldm.weights import CLAP_FILE

__all__ = ["MGELDM", "Autoencoder", "resolve_device", "compute_dtype", "check_chunked", "check_seed", "prompt_list",
           "split_iter_prompts", "prepare_audio", "channels_first", "default_model_config", "conditioner_node",
           "conditioner_ckpt", "takes_clap_ckpt", "with_conditioner_ckpt", "checkpoint_model_config",
           "missing_inference_files", "inference_model_config"]

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_CHANNELS = 8  # more channels than this is taken for a length when guessing the layout of 2-D audio

Prompt = str | None
Prompts = Prompt | Sequence[Prompt]


# --------------------------------------------------------------------------------------------- the checks


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit device must be available."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise OptionError("device", "expected auto, cpu, cuda, cuda:N or mps", name) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", "CUDA is not available here; use auto or cpu", name)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise OptionError("device", f"only {torch.cuda.device_count()} CUDA device(s) visible", name)
    if dev.type == "mps" and not _mps_available():
        raise OptionError("device", "MPS is not available here; use auto or cpu", name)
    if dev.type not in ("cpu", "cuda", "mps"):
        raise OptionError("device", "expected auto, cpu, cuda, cuda:N or mps", name)
    return dev


def compute_dtype(precision: str) -> torch.dtype | None:
    """The DiT's compute dtype for ``precision`` (fp32: None, bf16, fp16)."""
    if str(precision) not in PRECISIONS:
        raise OptionError("precision", f"expected one of {', '.join(PRECISIONS)}", precision)
    return PRECISIONS[str(precision)]


def check_chunked(chunked: Any) -> bool | None:
    """``chunked``: None / "auto" (one VAE pass up to the fixed limit), True or False."""
    if chunked is None or (isinstance(chunked, str) and chunked.strip().lower() == "auto"):
        return None
    if not isinstance(chunked, bool):
        raise OptionError("chunked", "expected true, false or auto", chunked)
    return chunked


def check_seed(seed: Any) -> int:
    """A seed: an integer >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError("seed", "expected an integer >= 0", seed)
    return int(seed)


def split_iter_prompts(text: str) -> list[str]:
    """``"a; b; c"`` -> ["a", "b", "c"]; at least two non-empty prompts."""
    return _iter_prompts([p for p in str(text).split(";")], repr(text))


def _iter_prompts(items: Sequence[Any], shown: Any) -> list[str]:
    if len(items) < 2 or any(not isinstance(p, str) or not p.strip() for p in items):
        raise OptionError("prompts", "partial_gen_iter expects at least 2 non-empty prompts separated by ';'", shown)
    return [p.strip() for p in items]


def prompt_list(prompts: Prompts, task: str | None = None) -> list[str | None]:
    """The prompts of one call as a list: None (unconditional) -> [None]; a text -> [text]; a list -> its items
    (texts or None). For ``partial_gen_iter`` (one prompt per step): ``"a; b"`` or a list of at least two texts."""
    if task == "partial_gen_iter":
        if prompts is None:
            raise OptionError("prompts", "missing; partial_gen_iter needs at least 2 prompts separated by ';'")
        return split_iter_prompts(prompts) if isinstance(prompts, str) else _iter_prompts(list(prompts), prompts)
    if prompts is None or isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise OptionError("prompts", "is not a string; expected text (quote it) or a list of texts", prompts)
    if not prompts:
        raise OptionError("prompts", "no prompt given", "[]")
    for p in prompts:
        if p is not None and not isinstance(p, str):
            raise OptionError("prompts", f"{p!r} is not a string; expected text or a list of texts")
    return list(prompts)


def channels_first(wave: Tensor, name: str = "audio") -> Tensor:
    """A 2-D waveform as (channels, samples): (C, L) stays, (L, C) as ``sf.read`` returns it is transposed.

    The channel axis is the one with at most ``MAX_CHANNELS`` entries; when both or neither axis is
    that short the layout is ambiguous and refused.
    """
    rows, cols = wave.shape
    if rows <= MAX_CHANNELS < cols:
        return wave
    if cols <= MAX_CHANNELS < rows:
        return wave.T
    raise OptionError(name, f"shape {tuple(wave.shape)} is ambiguous; expected (channels, samples) or "
                            f"(samples, channels) with at most {MAX_CHANNELS} channels and more samples than that")


def as_mono(audio: Tensor | np.ndarray, sr: int, target_sr: int, name: str = "audio") -> Tensor:
    """A (C, L), (L, C) or (L,) waveform at ``sr`` -> mono (L,) float32 at ``target_sr`` (``name``: the parameter,
    or the file, it came from)."""
    from mgeldm.audio import resample, to_mono

    wave = torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio).detach().float().cpu()
    if wave.dim() not in (1, 2):
        raise OptionError(name, f"expected (channels, samples), (samples, channels) or (samples,); got "
                                f"{tuple(wave.shape)}")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise OptionError("sr", "expected a positive integer", repr(sr))
    wave = channels_first(wave, name) if wave.dim() == 2 else wave
    return resample(to_mono(wave), int(sr), target_sr)[0]


def prepare_audio(audio: Tensor | np.ndarray, sr: int, target_sr: int, name: str = "audio") -> Tensor:
    """:func:`as_mono`, refusing empty, non-finite or silent audio: what a task is given."""
    from mgeldm.audio import check_audio

    check_audio(torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio), name)
    mono = as_mono(audio, sr, target_sr, name)
    check_audio(mono, name)
    return mono


def build_conditioner_from(model_cfg: Mapping[str, Any], device: torch.device) -> Any:
    """Build the conditioner of ``model_cfg`` (on ``device``); its errors are UserErrors."""
    from mgeldm.models.conditioners import build_conditioner

    node = conditioner_node(model_cfg)
    if node is None:
        raise UserError("model config: no `conditioner.clap_text` node")
    return build_conditioner(node, device=str(device))


# --------------------------------------------------------------------------------------------- the model


class MGELDM:
    """A loaded MGE-LDM (DiT + VAE) with its conditioner, ready for the five tasks."""

    def __init__(self, model: torch.nn.Module, conditioner: Any = None, *, device: str | torch.device = "auto",
                 precision: str = "fp32", model_config: Mapping[str, Any] | None = None,
                 progress: bool = False, compile: bool = False, chunked: bool | None = None) -> None:
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
        self.runner = TaskRunner(self.model, device=self.device, autocast_dtype=dtype, progress=progress,
                                 compile=bool(compile), chunked=check_chunked(chunked))
        self.last_seed: int | None = None
        self.last_seeds: list[int] = []
        if self.conditioner is not None and int(self.conditioner.dim) != self.runner.cond_dim:
            raise UserError(f"conditioner width {self.conditioner.dim} does not match the DiT's global_cond_dim "
                            f"{self.runner.cond_dim}")

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, ckpt: str | os.PathLike, clap_ckpt: str | os.PathLike | None = None, *,
                        conditioner: Any = None, device: str | torch.device = "auto", precision: str = "fp32",
                        model_config: Mapping[str, Any] | str | os.PathLike | None = None,
                        progress: bool = False, compile: bool = False, chunked: bool | None = None) -> MGELDM:
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
                conditioner = build_conditioner_from(cfg, dev)
        model = load_mgeldm(ckpt, cfg)
        return cls(model, conditioner, device=dev, precision=precision, model_config=cfg, progress=progress,
                   compile=compile, chunked=chunked)

    @classmethod
    def untrained(cls, model_config: Mapping[str, Any], autoencoder_ckpt: str | os.PathLike, *, seed: int = 0,
                  device: str | torch.device = "cpu") -> MGELDM:
        """The model of ``model_config`` with the DiT as initialised (seeded) and the trained VAE of
        ``autoencoder_ckpt`` (an unwrapped AE): the "untrained" baseline of a recipe, no conditioner."""
        from mgeldm.checkpoints import load_weights, read_state_dict
        from mgeldm.models.mgeldm import build_mgeldm

        cfg = plain_model_config(model_config)
        torch.manual_seed(check_seed(seed))
        model = build_mgeldm(cfg)
        load_weights(model.pretransform.model, read_state_dict(autoencoder_ckpt), what="an autoencoder checkpoint",
                     path=autoencoder_ckpt)
        return cls(model, device=device, model_config=cfg)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights as an unwrapped checkpoint (.ckpt / .safetensors) that carries the model config."""
        from mgeldm.checkpoints import write_state_dict

        return write_state_dict(self.model.state_dict(), path, model_config=self.model_config)

    # -- facts ----------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.runner.sample_rate

    @property
    def timings(self) -> Timings:
        return self.runner.timings

    # -- conditions -----------------------------------------------------------------------------
    def embed_prompts(self, prompts: Prompts) -> Tensor:
        """Prompts -> (N, G) condition vectors; a None prompt is the zero (unconditional) vector."""
        items = prompt_list(prompts)
        out = torch.zeros(len(items), self.runner.cond_dim)
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
            raise OptionError(name, f"this model has no conditioner (its config has no model.conditioner): {what} "
                                    "cannot be used; it generates without prompts (None)")
        raise OptionError("clap_ckpt", f"not set; {what} need the CLAP checkpoint {CLAP_FILE}")

    def _cond(self, prompts: list[str | None], query: tuple[Tensor | np.ndarray, int] | None) -> Tensor:
        if query is not None:
            return self.embed_audio(*query)
        return self.embed_prompts(prompts)

    # -- randomness -----------------------------------------------------------------------------
    def generator(self, seed: int | None = None) -> torch.Generator:
        """A generator on the model's device seeded with ``seed`` (a fresh random seed when None)."""
        seed = check_seed(secrets.randbits(63) if seed is None else seed)
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

    def run(self, task: str, *, prompts: Prompts = None, audio: Tensor | None = None, sr: int | None = None,
            seconds: float | None = None, query: tuple[Tensor | np.ndarray, int] | None = None,
            encode_sample: bool = False, seed: int | None = None, generator: torch.Generator | None = None,
            **sampling: Any) -> dict[str, Tensor]:
        """Run one task by name (what the CLI calls). ``sampling``: steps, cfg_scale, overlap, repaint_n, eta,
        sampler (``"ddim"``, the default and the original's, ``"dpmpp_2m"`` or ``"heun"``)."""
        check_task(task)
        settings = self.settings(task, **sampling)
        cond = self._cond(prompt_list(prompts, task), query)
        gen = generator if generator is not None else self.generator(seed)
        self.runner.encode_sample = bool(encode_sample)
        if task == "total_gen":
            if seconds is None:
                raise OptionError("seconds", "missing; total_gen needs a duration in seconds")
            return total_gen(self.runner, cond, float(seconds), settings, gen)
        if audio is None or sr is None:
            raise OptionError("audio", f"missing; {task} needs given audio")
        wave = prepare_audio(audio, sr, self.sample_rate)
        return TASK_FUNCTIONS[task](self.runner, wave, cond, settings, gen)

    def run_songs(self, task: str, songs: Sequence[Tensor | np.ndarray], sr: int, *, prompts: Prompts = None,
                  query: tuple[Tensor | np.ndarray, int] | None = None, encode_sample: bool = False,
                  seeds: Sequence[int] | None = None, generators: Sequence[torch.Generator] | None = None,
                  **sampling: Any) -> list[dict[str, Tensor]]:
        """Run a given-track task (source_extract, partial_gen, accomp_gen) on several songs in shared DiT
        batches: one result dict per song, each what :meth:`run` returns for that song alone with its seed
        (up to float round-off). ``seeds`` (one per song; fresh ones when None, kept in ``last_seeds``) or
        ``generators``; the prompts apply to every song."""
        check_task(task, tuple(GIVEN_TASKS), "several songs in one batch run for")
        settings = self.settings(task, **sampling)
        songs = list(songs)
        if not songs:
            raise OptionError("songs", "no songs given")
        gens = list(generators) if generators is not None else self._song_generators(seeds, len(songs))
        if len(gens) != len(songs):
            raise OptionError("generators", f"{len(songs)} songs need {len(songs)} generators; got {len(gens)}")
        cond = self._cond(prompt_list(prompts), query)
        self.runner.encode_sample = bool(encode_sample)
        waves = [prepare_audio(a, sr, self.sample_rate, f"songs[{i}]") for i, a in enumerate(songs)]
        return given_task_songs(task, self.runner, waves, cond, settings, gens)

    def extract_songs(self, songs: Sequence[Tensor | np.ndarray], sr: int, prompts: Prompts,
                      **kw: Any) -> list[dict[str, Tensor]]:
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

    def add_parts_iteratively(self, audio: Tensor | np.ndarray, sr: int, prompts: str | Sequence[str],
                              **kw: Any) -> dict[str, Tensor]:
        """Iterative partial generation: ``gen_src_<k>`` per prompt, ``gen_mix``, ``given_wav``."""
        return self.run("partial_gen_iter", prompts=prompts, audio=audio, sr=sr, **kw)

    # -- latent space (scores the decoder cannot cap) ------------------------------------------------
    @torch.inference_mode()
    def encode_latents(self, audio: Tensor | np.ndarray, sr: int) -> Tensor:
        """Audio -> the AE's latents (C, F): the VAE mean, unscaled, as ``pre_encode.py`` writes them."""
        wave = prepare_audio(audio, sr, self.sample_rate)
        z = self.runner.encode(wave, None) * float(self.model.pretransform.scale)  # padded to >= one window
        frames = -(-wave.shape[-1] // self.runner.ratio)
        return z[0, :, :frames].float().cpu()

    def extract_latents(self, mix_latent: Tensor, prompts: Prompts, *, seed: int | None = None,
                        generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        """Source extraction on AE latents: mix (C, F) -> one source latent (N, C, F) per prompt.

        ``sampling`` as for :meth:`extract` (steps, cfg_scale, overlap, ...); the defaults are the task's.
        """
        settings = self.settings("source_extract", **sampling)
        cond = self.embed_prompts(prompts)
        gen = generator if generator is not None else self.generator(seed)
        return extract_latents(self.runner, torch.as_tensor(mix_latent), cond, settings, gen)

    def extract_latents_songs(self, mix_latents: Sequence[Tensor], prompts: Prompts, *,
                              seeds: Sequence[int] | None = None, **sampling: Any) -> list[Tensor]:
        """:meth:`extract_latents` of several mixes (C, F_s) in shared batches, one seed per mix."""
        settings = self.settings("source_extract", **sampling)
        cond = self.embed_prompts(prompts)
        gens = self._song_generators(seeds, len(mix_latents))
        return extract_latents_songs(self.runner, [torch.as_tensor(z) for z in mix_latents], cond, settings, gens)

    @torch.inference_mode()
    def predict_x0(self, clean: Tensor, t: Tensor, cond: Tensor, generator: torch.Generator | None = None,
                   cfg_scale: float = 1.0) -> Tensor:
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
    def from_pretrained(cls, ckpt: str | os.PathLike, model_config: Mapping[str, Any] | str | os.PathLike, *,
                        device: str | torch.device = "cpu") -> Autoencoder:
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
