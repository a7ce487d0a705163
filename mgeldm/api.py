"""The Python API of MGE-LDM inference; ``infer.py`` is a thin layer over it.

    from mgeldm.api import MGELDM
    m = MGELDM.from_pretrained("unwrapped_DiT.ckpt", "music_audioset_epoch_15_esc_90.14.pt")
    song = m.generate("Lo-fi hip hop beat with mellow jazzy chords", seconds=30, seed=0)
    stems = m.extract(wave, sr, ["The sound of vocals", "The sound of drums"])
    stems["gen_src"]          # (2, L) at m.sample_rate (16 kHz): vocals, drums

Every task method returns a dict of 16 kHz waveforms keyed like the original's wav names
(``gen_src``, ``gen_submix``, ``gen_mix``, ...), each (N, L) with one row per prompt; the given
audio comes back unchanged (mono, 16 kHz) under ``given_mix`` / ``given_wav``.
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

from mgeldm.errors import UserError
from mgeldm.tasks import tasks as T
from mgeldm.tasks.tasks import SamplingSettings, TaskRunner
from mgeldm.weights import CLAP_FILE, DIT_FILE, Missing, file_problem, raise_if_missing

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

Prompt = str | None
Prompts = Prompt | Sequence[Prompt]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit device must be available."""
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"+device={name}: expected auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"+device={name}: CUDA is not available here; use +device=auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"+device={name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UserError(f"+device={name}: MPS is not available here; use +device=auto or cpu")
    elif dev.type != "cpu":
        raise UserError(f"+device={name}: expected auto, cpu, cuda, cuda:N or mps")
    return dev


def resolve_precision(precision: str) -> torch.dtype | None:
    if str(precision) not in PRECISIONS:
        raise UserError(f"+precision={precision}: expected one of {', '.join(PRECISIONS)}")
    return PRECISIONS[str(precision)]


def check_chunked(chunked: Any) -> bool | None:
    """``chunked``: None / "auto" (one VAE pass up to the fixed limit), True or False."""
    if chunked is None or (isinstance(chunked, str) and chunked.strip().lower() == "auto"):
        return None
    if not isinstance(chunked, bool):
        raise UserError(f"+chunked={chunked}: expected true, false or auto")
    return chunked


def default_model_config(config_name: str = "dit", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``model`` node of ``configs/<config_name>.yaml`` (Hydra-composed) as a plain dict."""
    from mgeldm.config import compose_config

    return compose_config(config_name, overrides)["model"]


def _plain(cfg: Any) -> dict[str, Any]:
    """A Mapping / OmegaConf node / yaml path -> plain dict."""
    if isinstance(cfg, (str, os.PathLike)):
        from omegaconf import OmegaConf

        path = Path(cfg)
        if not path.is_file():
            raise UserError(f"model config {path}: no such file")
        cfg = OmegaConf.load(path)
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def conditioner_node(model_cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The conditioner node (``model.conditioner.clap_text``), or None when the config has none."""
    node = (model_cfg.get("conditioner") or {})
    node = node.get("clap_text", node) if isinstance(node, Mapping) else None
    return dict(node) if node else None


def conditioner_ckpt(model_cfg: Mapping[str, Any]) -> str | None:
    node = conditioner_node(model_cfg) or {}
    return (node.get("config") or {}).get("clap_ckpt_path")


def takes_clap_ckpt(model_cfg: Mapping[str, Any]) -> bool:
    """Whether the config's conditioner reads a checkpoint file (LAION-CLAP does; the quickstart's MiniLM not)."""
    node = conditioner_node(model_cfg)
    return node is not None and "clap_ckpt_path" in (node.get("config") or {})


def with_conditioner_ckpt(model_cfg: Mapping[str, Any], clap_ckpt: str | os.PathLike | None) -> dict[str, Any]:
    """A copy of ``model_cfg`` whose conditioner reads ``clap_ckpt`` (when given, and when the conditioner
    reads a checkpoint at all: a config without one keeps running without it)."""
    cfg = dict(model_cfg)
    node = conditioner_node(cfg)
    if clap_ckpt is None or not takes_clap_ckpt(cfg):
        return cfg
    node["config"] = {**(node.get("config") or {}), "clap_ckpt_path": str(clap_ckpt)}
    cfg["conditioner"] = {**(cfg.get("conditioner") or {}), "clap_text": node}
    return cfg


MAX_CHANNELS = 8  # more channels than this is taken for a length when guessing the layout of 2-D audio


def channels_first(wave: Tensor, name: str = "given audio") -> Tensor:
    """A 2-D waveform as (channels, samples): (C, L) stays, (L, C) as ``sf.read`` returns it is transposed.

    The channel axis is the one with at most ``MAX_CHANNELS`` entries; when both or neither axis is
    that short the layout is ambiguous and refused.
    """
    rows, cols = wave.shape
    if rows <= MAX_CHANNELS < cols:
        return wave
    if cols <= MAX_CHANNELS < rows:
        return wave.T
    raise UserError(f"{name}: shape {tuple(wave.shape)} is ambiguous; expected (channels, samples) or "
                    f"(samples, channels) with at most {MAX_CHANNELS} channels and more samples than that")


def checkpoint_model_config(ckpt: str | os.PathLike, fallback: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model config to build ``ckpt`` with: the one it carries, else ``fallback``, else ``configs/dit.yaml``'s.

    A carried config describes the weights (sizes, per-track statistics), so it wins; only the conditioner
    checkpoint path of ``fallback`` (e.g. ``clap_ckpt_path=`` on the command line) is applied to it.
    """
    from mgeldm.checkpoints import read_model_config

    carried = read_model_config(ckpt)
    if carried is None:
        return dict(fallback) if fallback is not None else default_model_config()
    clap = conditioner_ckpt(fallback) if fallback is not None else None
    return with_conditioner_ckpt(carried, clap) if clap else carried


def missing_inference_files(ckpt: str | os.PathLike | None, model_cfg: Mapping[str, Any], *,
                            text: bool = False, conditioner: bool = True) -> list[Missing]:
    """Every file that loading ``ckpt`` with ``model_cfg`` needs and that is not there (see :mod:`mgeldm.weights`).

    The checkpoint always; with ``conditioner`` (it is built from the config) and a CLAP conditioner, its
    checkpoint and the RoBERTa tokenizer files when the checkpoint is set (the conditioner is then built) or
    ``text`` says prompts need it.
    """
    from mgeldm.models.clap.tokenizer import tokenizer_problem

    missing = []
    problem = file_problem(ckpt)
    if problem:
        missing.append(Missing("ckpt_path", ckpt, problem, f"an unwrapped MGE-LDM checkpoint such as {DIT_FILE}"))
    clap = conditioner_ckpt(model_cfg)
    if conditioner and takes_clap_ckpt(model_cfg) and (text or clap is not None):
        problem = file_problem(clap)
        if problem:
            missing.append(Missing("clap_ckpt_path", clap, problem, f"LAION's music CLAP checkpoint {CLAP_FILE}"))
        tokenizer = (conditioner_node(model_cfg).get("config") or {}).get("tokenizer_path")
        problem = tokenizer_problem(tokenizer)
        if problem:
            missing.append(Missing("RoBERTa tokenizer", None, problem))
    return missing


def inference_model_config(ckpt: str | os.PathLike | None, fallback: Mapping[str, Any] | None,
                           clap_ckpt: str | os.PathLike | None = None, *, text: bool = False,
                           conditioner: bool = True) -> dict[str, Any]:
    """The model config to load ``ckpt`` with (:func:`checkpoint_model_config`, with ``clap_ckpt`` applied),
    after checking that every file it needs is there (:func:`missing_inference_files`): one UserError names
    all missing ones, before any weights are read."""
    readable = file_problem(ckpt) is None
    cfg = checkpoint_model_config(ckpt, fallback) if readable else dict(fallback or default_model_config())
    cfg = with_conditioner_ckpt(cfg, clap_ckpt)
    raise_if_missing(missing_inference_files(ckpt, cfg, text=text, conditioner=conditioner))
    return cfg


def prepare_audio(audio: Tensor | np.ndarray, sr: int, target_sr: int, name: str = "given audio") -> Tensor:
    """A (C, L), (L, C) or (L,) waveform at ``sr`` -> mono (L,) float32 at ``target_sr``, checked."""
    from mgeldm.audio import check_audio, resample, to_mono

    wave = torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio).detach().float().cpu()
    if wave.dim() not in (1, 2):
        raise UserError(f"{name}: expected (channels, samples), (samples, channels) or (samples,); "
                        f"got {tuple(wave.shape)}")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise UserError(f"{name}: sample rate {sr!r}; expected a positive integer")
    if wave.dim() == 2:
        wave = channels_first(wave, name)
    check_audio(wave, name)
    mono = resample(to_mono(wave), int(sr), target_sr)[0]
    check_audio(mono, name)
    return mono


class MGELDM:
    """A loaded MGE-LDM (DiT + VAE) with its conditioner, ready for the five tasks."""

    def __init__(self, model: torch.nn.Module, conditioner: Any = None, *, device: str | torch.device = "auto",
                 precision: str = "fp32", model_config: Mapping[str, Any] | None = None,
                 progress: bool = False, compile: bool = False, chunked: bool | None = None) -> None:
        self.device = resolve_device(device)
        self.precision = str(precision)
        self.model = model.to(self.device).eval().requires_grad_(False)
        dtype = resolve_precision(precision)
        if dtype is not None:
            # Keep the DiT's weights in the compute dtype, so each forward reads them once at half the
            # bytes (autocast alone would re-cast fp32 weights every call); the VAE stays fp32.
            self.model.model_dit.to(dtype)
        self.conditioner = conditioner.to(self.device) if conditioner is not None else None
        self.model_config = dict(model_config) if model_config is not None else None
        self.runner = TaskRunner(self.model, device=self.device, autocast_dtype=resolve_precision(precision),
                                 progress=progress, compile=bool(compile), chunked=check_chunked(chunked))
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
        The conditioner is ``conditioner`` when given, else it
        is built from the config's conditioner node with ``clap_ckpt`` as its checkpoint (when
        neither is set, only unconditional generation is available). ``compile`` runs the DiT through
        torch.compile (CUDA graphs on CUDA); the first window pays the compilation. ``chunked``: None
        runs the VAE in one pass up to ``WHOLE_PASS_MAX_SECONDS`` (10 minutes) and in chunks beyond,
        True always in chunks (less memory, slightly different audio near the joins), False never.
        Every file it needs (the checkpoint; for a CLAP conditioner its checkpoint and roberta-base's
        tokenizer files) is checked first, and one error names all that are missing.
        """
        from mgeldm.models.mgeldm import load_mgeldm

        dev = resolve_device(device)
        resolve_precision(precision)
        explicit = _plain(model_config) if model_config is not None else None
        cfg = inference_model_config(ckpt, explicit, clap_ckpt, conditioner=conditioner is None)
        node = conditioner_node(cfg)
        if conditioner is None and node is not None:
            # A CLAP node needs its checkpoint; other conditioners (e.g. the quickstart's) build as they are.
            if conditioner_ckpt(cfg) or not takes_clap_ckpt(cfg):
                conditioner = build_conditioner_from(cfg, dev)
        model = load_mgeldm(ckpt, cfg)
        return cls(model, conditioner, device=dev, precision=precision, model_config=cfg, progress=progress,
                   compile=compile, chunked=chunked)

    # -- facts ----------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.runner.sample_rate

    @property
    def timings(self) -> T.Timings:
        return self.runner.timings

    # -- conditions -----------------------------------------------------------------------------
    def embed_prompts(self, prompts: Prompts) -> Tensor:
        """Prompts -> (N, G) condition vectors; a None prompt is the zero (unconditional) vector."""
        items = [prompts] if prompts is None or isinstance(prompts, str) else list(prompts)
        if not items:
            raise UserError("+text_prompt: no prompt given")
        for p in items:
            if p is not None and not isinstance(p, str):
                raise UserError(f"+text_prompt: {p!r} is not a string; expected text or a list of texts")
        out = torch.zeros(len(items), self.runner.cond_dim)
        texts = [(i, p) for i, p in enumerate(items) if p is not None]
        if texts:
            if self.conditioner is None:
                raise UserError(self._no_conditioner("text prompts"))
            with torch.inference_mode():
                emb = self.conditioner.embed_text([p for _, p in texts]).float().cpu()
            out[[i for i, _ in texts]] = emb
        return out

    def embed_audio(self, audio: Tensor | np.ndarray, sr: int) -> Tensor:
        """Query by example: the conditioner's audio embedding of a reference clip -> (1, G)."""
        if self.conditioner is None:
            raise UserError(self._no_conditioner("audio queries"))
        target = getattr(self.conditioner, "sample_rate", None) or sr
        wave = prepare_audio(audio, sr, int(target), "query audio")
        with torch.inference_mode():
            return self.conditioner.embed_audio(wave[None].to(self.device), int(target)).float().cpu().reshape(1, -1)

    def _no_conditioner(self, what: str) -> str:
        if self.model_config is not None and conditioner_node(self.model_config) is None:
            return (f"this model has no conditioner (its config has no model.conditioner): {what} cannot be used; "
                    "it generates without prompts (None)")
        return f"clap_ckpt_path: not set; {what} need the CLAP checkpoint {CLAP_FILE}"

    def _cond(self, prompts: Prompts, query: tuple[Tensor | np.ndarray, int] | None) -> Tensor:
        if query is not None:
            return self.embed_audio(*query)
        return self.embed_prompts(prompts)

    # -- randomness -----------------------------------------------------------------------------
    def generator(self, seed: int | None = None) -> torch.Generator:
        """A generator on the model's device seeded with ``seed`` (a fresh random seed when None)."""
        if seed is None:
            seed = secrets.randbits(63)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"+seed={seed}: expected an integer >= 0")
        self.last_seed = int(seed)
        gen = torch.Generator(device=self.device if self.device.type != "mps" else "cpu")
        gen.manual_seed(int(seed))
        return gen

    # -- tasks ----------------------------------------------------------------------------------
    def settings(self, task: str, **kw: Any) -> SamplingSettings:
        """The task's defaults (the original scripts' values, the overlap scaled to this model's window, see
        :func:`mgeldm.tasks.tasks.task_defaults`) with the given non-None overrides."""
        base = T.task_defaults(task, self.runner.window_seconds)
        names = {"steps": "steps", "cfg_scale": "cfg_scale", "overlap": "overlap_dur", "overlap_dur": "overlap_dur",
                 "repaint_n": "repaint_n", "eta": "eta", "t_min": "t_min", "sampler": "sampler"}
        unknown = sorted(set(kw) - set(names))
        if unknown:
            raise UserError(f"sampling options {unknown}: unknown; expected some of {sorted(names)}")
        values = {f: getattr(base, f) for f in set(names.values())}
        for key, value in kw.items():
            if value is not None:
                values[names[key]] = value
        settings = SamplingSettings(**values)
        settings.check()
        return settings

    def run(self, task: str, *, prompts: Prompts = None, audio: Tensor | None = None, sr: int | None = None,
            seconds: float | None = None, query: tuple[Tensor | np.ndarray, int] | None = None,
            encode_sample: bool = False, seed: int | None = None, generator: torch.Generator | None = None,
            **sampling: Any) -> dict[str, Tensor]:
        """Run one task by name (what the CLI calls). ``sampling``: steps, cfg_scale, overlap, repaint_n, eta,
        sampler (``"ddim"``, the default and the original's, ``"dpmpp_2m"`` or ``"heun"``)."""
        if task not in T.TASKS:
            raise UserError(f"+task={task}: unknown task; expected one of {', '.join(T.TASKS)}")
        settings = self.settings(task, **sampling)
        if task == "partial_gen_iter" and isinstance(prompts, str):
            prompts = split_iter_prompts(prompts)
        cond = self._cond(prompts, query)
        gen = generator if generator is not None else self.generator(seed)
        self.runner.encode_sample = bool(encode_sample)
        if task == "total_gen":
            if seconds is None:
                raise UserError("+gen_audio_dur: missing; total_gen needs a duration in seconds")
            return T.total_gen(self.runner, cond, float(seconds), settings, gen)
        if audio is None or sr is None:
            raise UserError(f"+given_wav_path: missing; {task} needs given audio")
        wave = prepare_audio(audio, sr, self.sample_rate)
        return T.TASK_FUNCTIONS[task](self.runner, wave, cond, settings, gen)

    def run_songs(self, task: str, songs: Sequence[Tensor | np.ndarray], sr: int, *, prompts: Prompts = None,
                  query: tuple[Tensor | np.ndarray, int] | None = None, encode_sample: bool = False,
                  seeds: Sequence[int] | None = None, generators: Sequence[torch.Generator] | None = None,
                  **sampling: Any) -> list[dict[str, Tensor]]:
        """Run a given-track task (source_extract, partial_gen, accomp_gen) on several songs in shared DiT
        batches: one result dict per song, each what :meth:`run` returns for that song alone with its seed
        (up to float round-off). ``seeds`` (one per song; fresh ones when None, kept in ``last_seeds``) or
        ``generators``; the prompts apply to every song."""
        if task not in T.GIVEN_TASKS:
            raise UserError(f"+task={task}: several songs in one batch run for {', '.join(T.GIVEN_TASKS)}")
        settings = self.settings(task, **sampling)
        songs = list(songs)
        if not songs:
            raise UserError("given audio: no songs")
        gens = list(generators) if generators is not None else self._song_generators(seeds, len(songs))
        if len(gens) != len(songs):
            raise UserError(f"{len(songs)} songs need {len(songs)} seeds or generators; got {len(gens)}")
        cond = self._cond(prompts, query)
        self.runner.encode_sample = bool(encode_sample)
        waves = [prepare_audio(a, sr, self.sample_rate, f"song {i}") for i, a in enumerate(songs)]
        return T.given_task_songs(task, self.runner, waves, cond, settings, gens)

    def _song_generators(self, seeds: Sequence[int] | None, count: int) -> list[torch.Generator]:
        seeds = [None] * count if seeds is None else list(seeds)
        gens = [self.generator(seed) for seed in seeds]
        self.last_seeds = [int(g.initial_seed()) for g in gens]
        return gens

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
        return T.extract_latents(self.runner, torch.as_tensor(mix_latent), cond, settings, gen)

    def extract_latents_songs(self, mix_latents: Sequence[Tensor], prompts: Prompts, *,
                              seeds: Sequence[int] | None = None, **sampling: Any) -> list[Tensor]:
        """:meth:`extract_latents` of several mixes (C, F_s) in shared batches, one seed per mix."""
        settings = self.settings("source_extract", **sampling)
        cond = self.embed_prompts(prompts)
        gens = self._song_generators(seeds, len(mix_latents))
        if len(gens) != len(mix_latents):
            raise UserError(f"{len(mix_latents)} mixes need {len(mix_latents)} seeds; got {len(gens)}")
        return T.extract_latents_songs(self.runner, [torch.as_tensor(z) for z in mix_latents], cond, settings, gens)

    @torch.inference_mode()
    def predict_x0(self, clean: Tensor, t: Tensor, cond: Tensor, generator: torch.Generator | None = None,
                   cfg_scale: float = 1.0) -> Tensor:
        """One denoiser call: the DiT's clean estimate of every track from a noised input.

        ``clean`` (B, K, C, T) AE latents of the tracks, ``t`` (B, K) per-track diffusion time (0 = given
        clean), ``cond`` (B, K, G) condition vectors (zeros = none). The tracks are noised in the DiT's
        space with noise from ``generator``; returns the x0 estimate (B, K, C, T) in the AE's space.
        """
        from mgeldm.diffusion.schedule import alpha_sigma, expand_t, noisy, x0_from_v

        b, k, c, frames = clean.shape
        z0 = self.model.ae_to_dit(clean.reshape(b, k * c, frames).float().to(self.device))
        eps = torch.randn(z0.shape, generator=generator, device=generator.device if generator else "cpu")
        t = torch.as_tensor(t, dtype=torch.float32, device=self.device)
        zt = noisy(z0, eps.to(z0), t)
        with self.runner._autocast():
            v = self.model.model_dit(zt, t, cond.to(self.device, torch.float32), cfg_scale=cfg_scale).float()
        alpha, sigma = alpha_sigma(expand_t(t, zt))
        x0 = self.model.dit_to_ae(x0_from_v(zt, v, alpha, sigma))
        return x0.reshape(b, k, c, frames).cpu()

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


def split_iter_prompts(text: str) -> list[str]:
    """``"a; b; c"`` -> ["a", "b", "c"]; at least two non-empty prompts."""
    parts = [p.strip() for p in str(text).split(";")]
    if len(parts) < 2 or any(not p for p in parts):
        raise UserError(f"+text_prompt={text!r}: partial_gen_iter expects at least 2 non-empty prompts separated by ';'")
    return parts


def build_conditioner_from(model_cfg: Mapping[str, Any], device: torch.device) -> Any:
    """Build the conditioner of ``model_cfg`` (on ``device``); its errors are UserErrors."""
    from mgeldm.models.conditioners import build_conditioner

    node = conditioner_node(model_cfg)
    if node is None:
        raise UserError("model config: no `conditioner.clap_text` node")
    return build_conditioner(node, device=str(device))
