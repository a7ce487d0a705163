"""``python infer.py --config-name dit +task=... ckpt_path=...``: the logic behind the Hydra entry.

Order of work, so that a mistake costs nothing: read and check every option and input file,
then load the model, then generate into a hidden folder, then publish it as ``output_NNNN``.
A ``UserError`` anywhere becomes one line on stderr and exit code 2, with no output folder.
Ctrl-C (exit 130) and SIGTERM (exit 143) remove the hidden partial folder the same way.

Options passed with ``+`` (the original's) have their defaults here, not in the yaml: see
:data:`OPTION_HELP` (what ``python infer.py --help`` prints).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mgeldm.errors import UserError, fail

PROG = "infer.py"
GIVEN_TASKS = ("source_extract", "partial_gen", "accomp_gen", "partial_gen_iter")
DEFAULT_OUTPUT_DIR = "./outputs_infer/"
DEFAULT_GEN_DUR = 30.0
# The `+` options: name, what it takes and its default.
OPTION_HELP: tuple[tuple[str, str], ...] = (
    ("task", "total_gen | source_extract | partial_gen | accomp_gen | partial_gen_iter (required)"),
    ("given_wav_path", "an audio file (any format, rate, channels) or a folder of them; every task but total_gen"),
    ("text_prompt", "text; ['a','b'] for several prompts in one batch; 'a; b' for partial_gen_iter"),
    ("gen_audio_dur", f"seconds to generate (total_gen; default {DEFAULT_GEN_DUR:g})"),
    ("query_wav_path", "a reference clip whose CLAP audio embedding replaces the text prompt"),
    ("output_dir", f"where output_NNNN/ folders are written (default {DEFAULT_OUTPUT_DIR})"),
    ("num_steps", "sampling steps (default: the task's, below)"),
    ("cfg_scale", "classifier-free guidance scale (default: the task's)"),
    ("overlap_dur", "seconds shared by consecutive windows, below one window (default: the task's, scaled)"),
    ("repaint_n", "RePaint repeats per step (default: the task's)"),
    ("eta", "DDIM noise, 0 = deterministic (default 0)"),
    ("sampler", "ddim (default, the original's) | dpmpp_2m | heun (ODE solvers: fewer steps; need repaint_n 1, eta 0)"),
    ("seed", "integer; a random one is drawn and recorded in run.json when absent"),
    ("device", "auto (cuda > mps > cpu, default) | cpu | cuda | cuda:N | mps"),
    ("precision", "fp32 (default) | bf16 | fp16 (the DiT's compute precision)"),
    ("encode_sample", "true: sample the VAE encoding as the original (default false: its mean)"),
    ("output_sr", "also write every result at this rate (e.g. 44100)"),
    ("compile", "true: torch.compile the DiT (CUDA graphs on CUDA); a one-off compilation (default false)"),
    ("save_png", "false: wavs only, no spectrogram png beside each (default true)"),
    ("chunked", "auto (default): the VAE in one pass up to 10 min of audio, in chunks beyond | true | false"),
)
OPTIONS = tuple(name for name, _ in OPTION_HELP)
# Tests only: the name of a signal (KILL, TERM, INT) that a run sends itself once its hidden output
# folder exists, a deterministic point at which to interrupt it.
SIGNAL_TEST_ENV = "MGELDM_TEST_SIGNAL_IN_OUTPUT"


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException like KeyboardInterrupt, so no ``except Exception`` swallows it."""


@dataclass
class GivenInput:
    path: Path
    wave: Any  # (L,) float32 at the model rate
    sample_rate: int  # the file's own rate
    channels: int


@dataclass
class InferOptions:
    task: str
    ckpt_path: Path
    clap_ckpt_path: Path | None
    prompts: list[str | None]
    several_prompts: bool
    gen_audio_dur: float | None
    inputs: list[GivenInput]
    input_is_folder: bool
    given_wav_path: str | None
    query_wav_path: str | None
    query: tuple[Any, int] | None
    num_steps: int
    cfg_scale: float
    overlap_dur: float
    repaint_n: int
    eta: float
    sampler: str
    output_dir: Path
    device: str
    precision: str
    seed: int | None
    encode_sample: bool
    output_sr: int | None
    compile: bool = False
    save_png: bool = True
    chunked: bool | None = None
    model_cfg: dict[str, Any] = field(repr=False, default_factory=dict)


# ---------------------------------------------------------------------------------------------
# option checking (no model is built here)


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none"))


def _number(cfg: Mapping, key: str, default: float | None, *, positive: bool = False,
            minimum: float | None = None) -> float | None:
    value = cfg.get(key, None)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"+{key}={value!r}: expected a number")
    if positive and value <= 0:
        raise UserError(f"+{key}={value}: expected a number > 0")
    if minimum is not None and value < minimum:
        raise UserError(f"+{key}={value}: expected a number >= {minimum:g}")
    return float(value)


def _integer(cfg: Mapping, key: str, default: int | None, *, minimum: int | None = None) -> int | None:
    value = cfg.get(key, None)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"+{key}={value!r}: expected an integer")
    if minimum is not None and value < minimum:
        raise UserError(f"+{key}={value}: expected an integer >= {minimum}")
    return value


def _boolean(cfg: Mapping, key: str, default: bool) -> bool:
    value = cfg.get(key, None)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UserError(f"+{key}={value!r}: expected true or false")
    return value


def _prompts(value: Any, task: str) -> tuple[list[str | None], bool]:
    """+text_prompt -> (prompts, several). A string is one prompt (split on ';' for partial_gen_iter)."""
    from omegaconf import ListConfig

    if isinstance(value, ListConfig):
        value = list(value)
    if value is None:
        if task == "partial_gen_iter":
            raise UserError("+text_prompt: missing; partial_gen_iter needs prompts like '+text_prompt=\"a; b\"'")
        return [None], False
    if isinstance(value, str):
        if task == "partial_gen_iter":
            from mgeldm.api import split_iter_prompts

            return split_iter_prompts(value), False
        return [value], False
    if isinstance(value, list):
        if not value:
            raise UserError("+text_prompt=[]: expected at least one prompt")
        for item in value:
            if not isinstance(item, str):
                raise UserError(f"+text_prompt: {item!r} is not a string; expected text or a list of texts")
        if task == "partial_gen_iter":
            if len(value) < 2 or any(not v.strip() for v in value):
                raise UserError("+text_prompt: partial_gen_iter expects at least 2 non-empty prompts")
            return [v.strip() for v in value], False
        return list(value), len(value) > 1
    raise UserError(f"+text_prompt={value!r}: is not a string; expected text (quote it) or a list of texts")


def _audio_files(folder: Path) -> list[Path]:
    import soundfile as sf

    exts = {f".{e.lower()}" for e in sf.available_formats()} | {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts)
    if not files:
        raise UserError(f"+given_wav_path={folder}: the folder holds no audio files ({', '.join(sorted(exts)[:6])}, ...)")
    return files


def _load_input(path: Path, sample_rate: int, name: str) -> GivenInput:
    from mgeldm.audio import check_audio, load_audio, resample, to_mono

    if not path.exists():
        raise UserError(f"{name}={path}: no such file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{name}={path}: not readable")
    wave, sr = load_audio(path)
    check_audio(wave, str(path))
    mono = resample(to_mono(wave), sr, sample_rate)[0]
    check_audio(mono, str(path))
    return GivenInput(path=path, wave=mono, sample_rate=sr, channels=int(wave.shape[0]))


def _model_facts(model_cfg: Mapping) -> tuple[int, int, int]:
    """(sample_rate, window frames, downsampling ratio) from the model config, without building it."""
    try:
        sr = int(model_cfg.get("sample_rate", 16000))
        window = int(model_cfg.get("segment_length", 100))
        ratio = int(model_cfg["pretransform"]["autoencoder"]["downsampling_ratio"])
    except (KeyError, TypeError, ValueError):
        raise UserError("model config: expected sample_rate, segment_length and "
                        "pretransform.autoencoder.downsampling_ratio") from None
    return sr, window, ratio


def _model_config(cfg: Mapping) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    try:
        model_cfg = cfg.get("model")
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else model_cfg
    except Exception as exc:
        raise UserError(f"model config: cannot be resolved ({str(exc).splitlines()[0]})") from None
    if not isinstance(model_cfg, Mapping):
        raise UserError("model config: missing (expected a `model` node, e.g. from configs/model/dit.yaml)")
    return dict(model_cfg)


def _readable_file(value: Any, name: str, what: str) -> Path:
    if _is_null(value):
        raise UserError(f"{name}: not set; expected {what}")
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise UserError(f"{name}={value}: no such file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{name}={value}: not readable")
    return path


def _query(cfg: Mapping, task: str, prompts: list[str | None]) -> tuple[str | None, tuple[Any, int] | None]:
    """+query_wav_path -> (path, (waveform, rate)) or (None, None)."""
    from mgeldm.audio import check_audio, load_audio

    value = cfg.get("query_wav_path", None)
    if _is_null(value):
        return None, None
    if task == "partial_gen_iter":
        raise UserError("+query_wav_path: not supported by partial_gen_iter (it takes one text prompt per step)")
    if any(p is not None for p in prompts):
        raise UserError("+query_wav_path: give either +text_prompt or +query_wav_path, not both")
    path = _readable_file(value, "+query_wav_path", "a reference audio clip")
    wave, sr = load_audio(path)
    check_audio(wave, str(path))
    return str(path), (wave, sr)


def _clap_path(model_cfg: Mapping, text: bool) -> Path | None:
    """The conditioner checkpoint (already checked to exist when it is needed), or None."""
    from mgeldm.api import conditioner_ckpt, conditioner_node, takes_clap_ckpt

    if text and conditioner_node(model_cfg) is None:
        raise UserError("+text_prompt: this model has no conditioner (its config has no model.conditioner); "
                        "it generates without prompts: leave +text_prompt and +query_wav_path out")
    clap = conditioner_ckpt(model_cfg)
    return Path(str(clap)).expanduser() if takes_clap_ckpt(model_cfg) and not _is_null(clap) else None


def _given_inputs(cfg: Mapping, task: str, sample_rate: int) -> tuple[str | None, list[GivenInput], bool]:
    """+given_wav_path -> (path, loaded inputs, is a folder). Every file is read and checked now."""
    value = cfg.get("given_wav_path", None)
    if task not in GIVEN_TASKS:
        return (None if _is_null(value) else str(value)), [], False  # total_gen ignores it, as the original
    if _is_null(value):
        raise UserError(f"+given_wav_path: missing; {task} needs an audio file or a folder of them")
    path = Path(str(value)).expanduser()
    if path.is_dir():
        return str(path), [_load_input(p, sample_rate, "+given_wav_path") for p in _audio_files(path)], True
    return str(path), [_load_input(path, sample_rate, "+given_wav_path")], False


def usage() -> str:
    """The text of ``python infer.py --help``."""
    from mgeldm.cli.hydra_args import usage_text
    from mgeldm.tasks.tasks import RELEASED_WINDOW_SECONDS, TASK_DEFAULTS
    from mgeldm.weights import CLAP_FILE, DIT_FILE, WEIGHTS_DIR

    options = [("ckpt_path=FILE", f"the unwrapped MGE-LDM checkpoint (the released one: {WEIGHTS_DIR}/{DIT_FILE})"),
               ("clap_ckpt_path=FILE", f"LAION's music CLAP (default {WEIGHTS_DIR}/{CLAP_FILE}; a model with "
                                       "another conditioner, e.g. the quickstart's, needs none)"),
               *((f"+{name}=", text) for name, text in OPTION_HELP)]
    defaults = [f"  {task:<17} {d.steps} / {d.cfg_scale:g} / {d.overlap_dur:g} / {d.repaint_n}"
                for task, d in TASK_DEFAULTS.items()]
    notes = [f"task defaults, steps / cfg_scale / overlap_dur s / repaint_n (for the released {RELEASED_WINDOW_SECONDS:g} s "
             "window; the overlap is scaled to another model's window: overlap x window / "
             f"{RELEASED_WINDOW_SECONDS:g} s):", *defaults,
             "A checkpoint written by unwrap_model.py carries its model config: no --config-name needed."]
    examples = [f"python infer.py ckpt_path={WEIGHTS_DIR}/{DIT_FILE} +task=source_extract +given_wav_path=song.wav "
                "\"+text_prompt='The sound of vocals'\"",
                "python infer.py ckpt_path=quickstart_out/checkpoints/mgeldm.ckpt +task=source_extract "
                "+given_wav_path=my_song.wav \"+text_prompt='The sound of bass.'\" +num_steps=4 +cfg_scale=2"]
    return usage_text("python infer.py ckpt_path=FILE +task=TASK [+key=value ...]",
                      "Runs one of MGE-LDM's five tasks; each run writes a new <output_dir>/<task>/output_NNNN/ "
                      "(wavs, pngs, prompt.txt, run.json).", options, examples, notes)


def parse_options(cfg: Mapping) -> InferOptions:
    """Check every option and input of ``cfg`` (the composed Hydra config); builds no model."""
    from mgeldm.api import check_chunked, inference_model_config, resolve_device, resolve_precision
    from mgeldm.tasks.outputs import TASK_SUBDIRS, check_output_dir
    from mgeldm.tasks.tasks import TASKS, task_defaults
    from mgeldm.tasks.windowing import check_gen_duration, overlap_frames

    task = cfg.get("task", None)
    if task is None:
        raise UserError(f"+task: missing; expected one of {', '.join(TASKS)}")
    if not isinstance(task, str) or task not in TASKS:
        raise UserError(f"+task={task}: unknown task; expected one of {', '.join(TASKS)}")
    prompts, several = _prompts(cfg.get("text_prompt", None), task)
    text = any(p is not None for p in prompts) or not _is_null(cfg.get("query_wav_path", None))
    # every missing file (checkpoint, CLAP, tokenizer) in one line, before anything is loaded
    model_cfg = inference_model_config(cfg.get("ckpt_path", None), _model_config(cfg), text=text)
    ckpt = Path(str(cfg.get("ckpt_path"))).expanduser()
    sample_rate, window, ratio = _model_facts(model_cfg)

    defaults = task_defaults(task, window * ratio / sample_rate)
    steps = _integer(cfg, "num_steps", defaults.steps, minimum=1)
    cfg_scale = _number(cfg, "cfg_scale", defaults.cfg_scale)
    overlap = _number(cfg, "overlap_dur", defaults.overlap_dur, minimum=0.0)
    overlap_frames(overlap, sample_rate / ratio, window)
    repaint_n = _integer(cfg, "repaint_n", defaults.repaint_n, minimum=1)
    eta = _number(cfg, "eta", defaults.eta, minimum=0.0)
    sampler = str(cfg.get("sampler", None) or defaults.sampler)
    replace(defaults, steps=steps, cfg_scale=cfg_scale, overlap_dur=overlap, repaint_n=repaint_n, eta=eta,
            sampler=sampler).check()
    output_sr = _integer(cfg, "output_sr", None, minimum=1)
    seed = _integer(cfg, "seed", None, minimum=0)
    encode_sample = _boolean(cfg, "encode_sample", False)
    compile_dit = _boolean(cfg, "compile", False)
    save_png = _boolean(cfg, "save_png", True)
    chunked = check_chunked(cfg.get("chunked", None))
    device = str(cfg.get("device", None) or "auto")
    resolve_device(device)
    precision = str(cfg.get("precision", None) or "fp32")
    resolve_precision(precision)
    gen_dur = _number(cfg, "gen_audio_dur", DEFAULT_GEN_DUR) if task == "total_gen" else None
    if gen_dur is not None:
        check_gen_duration(gen_dur, sample_rate, ratio)

    query_path, query = _query(cfg, task, prompts)
    clap_path = _clap_path(model_cfg, text)
    given, inputs, is_folder = _given_inputs(cfg, task, sample_rate)
    output_dir = check_output_dir(str(cfg.get("output_dir", None) or DEFAULT_OUTPUT_DIR), TASK_SUBDIRS[task])

    return InferOptions(task=task, ckpt_path=ckpt, clap_ckpt_path=clap_path, prompts=prompts, several_prompts=several,
                        gen_audio_dur=gen_dur, inputs=inputs, input_is_folder=is_folder, given_wav_path=given,
                        query_wav_path=query_path, query=query, num_steps=steps, cfg_scale=cfg_scale,
                        overlap_dur=overlap, repaint_n=repaint_n, eta=eta, sampler=sampler, output_dir=output_dir,
                        device=device, precision=precision, seed=seed, encode_sample=encode_sample, output_sr=output_sr,
                        compile=compile_dit, save_png=save_png, chunked=chunked, model_cfg=model_cfg)


# ---------------------------------------------------------------------------------------------
# running


def _versions() -> dict[str, str]:
    import numpy
    import torch

    import mgeldm

    out = {"mgeldm": mgeldm.__version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__}
    for name in ("hydra", "omegaconf", "soundfile", "soxr"):
        try:
            out[name] = str(__import__(name).__version__)
        except Exception:
            pass
    return out


def _prompt_txt(opts: InferOptions, seed: int, folders: list[str] | None) -> str:
    lines = [f"task: {opts.task}", f"given_wav_path: {opts.given_wav_path}"]
    if opts.query_wav_path:
        lines.append(f"query_wav_path: {opts.query_wav_path}")
    if opts.task == "partial_gen_iter":
        lines.append("text_prompt: " + "; ".join(str(p) for p in opts.prompts))
    else:
        for i, p in enumerate(opts.prompts):
            where = f" -> {folders[i]}/" if folders else ""
            lines.append(f"text_prompt: {p}{where}")
    if opts.task == "total_gen":
        lines.append(f"gen_audio_dur: {opts.gen_audio_dur}")
    lines += [f"overlap_dur: {opts.overlap_dur}", f"cfg_scale: {opts.cfg_scale}", f"num_steps: {opts.num_steps}",
              f"repaint_n: {opts.repaint_n}", f"eta: {opts.eta}", f"sampler: {opts.sampler}", f"seed: {seed}"]
    return "\n".join(lines) + "\n"


def run(opts: InferOptions) -> Path:
    """Load the model, run the task on every input, publish the output folder; returns its path."""
    import torch

    from mgeldm.api import MGELDM
    from mgeldm.tasks.outputs import TASK_SUBDIRS, RunFolder, slugify, unique_slugs

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # legacy weight_norm deprecation in the VAE
        model = MGELDM.from_pretrained(opts.ckpt_path, opts.clap_ckpt_path, device=opts.device,
                                       precision=opts.precision, model_config=opts.model_cfg, progress=True,
                                       compile=opts.compile, chunked=opts.chunked)
    load_s = time.perf_counter() - t0
    sr = model.sample_rate
    seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    generator = model.generator(seed)
    sampling = dict(steps=opts.num_steps, cfg_scale=opts.cfg_scale, overlap=opts.overlap_dur,
                    repaint_n=opts.repaint_n, eta=opts.eta, sampler=opts.sampler)
    prompt_folders = ([f"{i:02d}_{s}" for i, s in enumerate(unique_slugs([str(p) for p in opts.prompts],
                                                                         fallback="prompt"))]
                      if opts.several_prompts else None)
    input_folders = unique_slugs([i.path.stem for i in opts.inputs], fallback="input") if opts.input_is_folder else None
    written: list[str] = []
    audio_seconds = 0.0
    t_run = time.perf_counter()

    with RunFolder(opts.output_dir, TASK_SUBDIRS[opts.task]) as folder:
        _test_signal_point()

        def save(parts: tuple[str, ...], key: str, wave: torch.Tensor) -> None:
            for p in folder.write_audio(parts, key, wave, sr, extra_sample_rate=opts.output_sr,
                                          png=opts.save_png):
                written.append(str(p.relative_to(folder.tmp)))

        jobs = opts.inputs if opts.task != "total_gen" else [None]
        for n, given in enumerate(jobs):
            base = (input_folders[n],) if input_folders else ()
            kw: dict[str, Any] = dict(prompts=opts.prompts, query=opts.query, encode_sample=opts.encode_sample,
                                      generator=generator, **sampling)
            if given is None:
                results = model.run(opts.task, seconds=opts.gen_audio_dur, **kw)
                audio_seconds += opts.gen_audio_dur * len(opts.prompts)
            else:
                results = model.run(opts.task, audio=given.wave, sr=sr, **kw)
                audio_seconds += given.wave.shape[-1] / sr
            for key, wave in results.items():
                if key.startswith("given_") or opts.task == "partial_gen_iter" or not prompt_folders:
                    name = key
                    if opts.task == "partial_gen_iter" and key.startswith("gen_src_"):
                        k = int(key.rsplit("_", 1)[1])
                        name = f"{key}_{slugify(str(opts.prompts[k]), 32)}"
                    save(base, name, wave[0] if wave.shape[0] == 1 else wave)
                else:
                    for i, row in enumerate(wave):
                        save(base + (prompt_folders[i],), key, row)
            if prompt_folders:
                for i, p in enumerate(opts.prompts):
                    txt = folder.write_text(base + (prompt_folders[i], "prompt.txt"), f"text_prompt: {p}\n")
                    written.append(str(txt.relative_to(folder.tmp)))

        run_s = time.perf_counter() - t_run
        folder.write_text(("prompt.txt",), _prompt_txt(opts, seed, prompt_folders))
        written += ["prompt.txt", "run.json"]
        info = {
            "task": opts.task,
            "settings": {f.name: (str(v) if isinstance(v, Path) else v) for f in fields(opts)
                         if f.name not in ("inputs", "query", "model_cfg") for v in [getattr(opts, f.name)]},
            "seed": seed,
            "inputs": [{"path": str(i.path), "sample_rate": i.sample_rate, "channels": i.channels,
                        "seconds": round(i.wave.shape[-1] / sr, 4)} for i in opts.inputs],
            "device": str(model.device) + (f" ({torch.cuda.get_device_name(model.device)})"
                                           if model.device.type == "cuda" else ""),
            "precision": opts.precision,
            "sample_rate": sr,
            "timings": {"load_s": round(load_s, 4), "run_s": round(run_s, 4), **model.timings.as_dict()},
            "audio_seconds": round(audio_seconds, 4),
            "real_time_factor": round(run_s / audio_seconds, 5) if audio_seconds else None,
            "versions": _versions(),
            "command": sys.argv,
            "outputs": sorted(written),
            "model_config": opts.model_cfg,
        }
        folder.write_json(("run.json",), info)
        final = folder.commit()

    rtf = run_s / audio_seconds if audio_seconds else float("nan")
    print(f"{opts.task}: wrote {len(written)} files to {final} | {audio_seconds:.1f} s of audio in {run_s:.1f} s "
          f"(real-time factor {rtf:.3f}, model load {load_s:.1f} s) on {model.device}, seed {seed}", flush=True)
    return final


def _test_signal_point() -> None:
    name = os.environ.get(SIGNAL_TEST_ENV)
    if name:
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (the partial output folder is removed on the way out)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(cfg: Mapping) -> None:
    """Hydra task function: every ``UserError`` becomes one line on stderr and exit code 2."""
    try:
        with _sigterm_unwinds():
            run(parse_options(cfg))
    except UserError as exc:
        fail(PROG, str(exc))
    except KeyboardInterrupt:
        fail(PROG, "interrupted; no output folder was written", 130)
    except Terminated:
        fail(PROG, "terminated (SIGTERM); no output folder was written", 143)
    except Exception as exc:
        if not (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"):
            raise  # a bug, not a user mistake: keep the traceback
        fail(PROG, f"out of memory on +device={cfg.get('device', None) or 'auto'}; "
             "try +precision=bf16, fewer prompts in one call, +chunked=true (the VAE in chunks) or +device=cpu")
