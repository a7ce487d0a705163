"""``python infer.py --config-name dit +task=... ckpt_path=...``: the command line over :mod:`mgeldm.api`.

Order of work, so that a mistake costs nothing: read and check every option and input file (with the API's
own checks: one owner per rule, the parameters renamed to this tool's flags by :data:`FLAGS`), then load the
model, then generate into a hidden folder, then publish it as ``output_NNNN``. Errors, Ctrl-C (exit 130),
SIGTERM (exit 143) and running out of memory are one line each (:mod:`mgeldm.cli.boundary`); an interrupted
run leaves no output folder.

Options passed with ``+`` (the original's) have their defaults here, not in the yaml: see
:data:`OPTION_HELP` (what ``python infer.py --help`` prints).
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mgeldm import checks
from mgeldm.cli.boundary import Messages
from mgeldm.cli.hydra_args import hydra_cli, plain_config
from mgeldm.errors import OptionError

PROG = "infer.py"
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
# The one table from the API's parameter names (and this tool's own) to the flags a user types.
FLAGS: dict[str, str] = {
    **{name: f"+{name}" for name in OPTIONS},
    "steps": "+num_steps",
    "overlap": "+overlap_dur",
    "seconds": "+gen_audio_dur",
    "prompts": "+text_prompt",
    "audio": "+given_wav_path",
    "query": "+query_wav_path",
    "ckpt": "ckpt_path",
    "clap_ckpt": "clap_ckpt_path",
}
MESSAGES = Messages(
    FLAGS,
    interrupted="; no output folder was written",
    out_of_memory="try +precision=bf16, fewer prompts in one call, +chunked=true (the VAE in chunks) or +device=cpu",
)
# Tests only: the name of a signal (KILL, TERM, INT) that a run sends itself once its hidden output
# folder exists, a deterministic point at which to interrupt it.
SIGNAL_TEST_ENV = "MGELDM_TEST_SIGNAL_IN_OUTPUT"


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
    settings: Any  # mgeldm.api.SamplingSettings: steps, cfg_scale, overlap, repaint_n, eta, sampler
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


def _audio_files(folder: Path) -> list[Path]:
    import soundfile as sf

    exts = {f".{e.lower()}" for e in sf.available_formats()} | {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )
    if not files:
        raise OptionError("audio", f"the folder holds no audio files ({', '.join(sorted(exts)[:6])}, ...)", folder)
    return files


def _readable_file(value: Any, name: str, what: str) -> Path:
    if checks.is_null(value):
        raise OptionError(name, f"not set; expected {what}")
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise OptionError(name, "no such file", value)
    if not os.access(path, os.R_OK):
        raise OptionError(name, "not readable", value)
    return path


def _load_input(path: Path, sample_rate: int, name: str) -> GivenInput:
    from mgeldm.audio import load_audio
    from mgeldm.inputs import prepare_audio

    wave, sr = load_audio(_readable_file(path, name, "an audio file"))
    mono = prepare_audio(wave, sr, sample_rate, name=f"audio {path}")
    return GivenInput(path=path, wave=mono, sample_rate=sr, channels=int(wave.shape[0]))


def _query(cfg: Mapping, task: str, prompts: list[str | None]) -> tuple[str | None, tuple[Any, int] | None]:
    """+query_wav_path -> (path, (waveform, rate)) or (None, None)."""
    from mgeldm.audio import load_audio
    from mgeldm.inputs import check_query, prepare_audio

    value = cfg.get("query_wav_path", None)
    if checks.is_null(value):
        return None, None
    check_query(task, prompts, value)
    path = _readable_file(value, "query", "a reference audio clip")
    wave, sr = load_audio(path)
    prepare_audio(wave, sr, sr, name=f"audio {path}")  # the checks; the conditioner resamples it itself
    return str(path), (wave, sr)


def _clap_path(model_cfg: Mapping, text: bool) -> Path | None:
    """The conditioner checkpoint (already checked to exist when it is needed), or None."""
    from mgeldm.model_config import conditioner_ckpt, conditioner_node, takes_clap_ckpt

    if text and conditioner_node(model_cfg) is None:
        raise OptionError(
            "prompts",
            "this model has no conditioner (its config has no model.conditioner); it "
            "generates without prompts: leave +text_prompt and +query_wav_path out",
        )
    clap = conditioner_ckpt(model_cfg)
    return Path(str(clap)).expanduser() if takes_clap_ckpt(model_cfg) and not checks.is_null(clap) else None


def _given_inputs(cfg: Mapping, task: str, sample_rate: int) -> tuple[str | None, list[GivenInput], bool]:
    """+given_wav_path -> (path, loaded inputs, is a folder). Every file is read and checked now."""
    from mgeldm.tasks.tasks import TASKS

    value = cfg.get("given_wav_path", None)
    if TASKS[task].given is None:
        return (None if checks.is_null(value) else str(value)), [], False  # total_gen ignores it, as the original
    if checks.is_null(value):
        raise OptionError("audio", f"missing; {task} needs an audio file or a folder of them")
    path = Path(str(value)).expanduser()
    if path.is_dir():
        return str(path), [_load_input(p, sample_rate, "audio") for p in _audio_files(path)], True
    return str(path), [_load_input(path, sample_rate, "audio")], False


def usage() -> str:
    """The text of ``python infer.py --help``."""
    from mgeldm.cli.hydra_args import usage_text
    from mgeldm.tasks.tasks import RELEASED_WINDOW_SECONDS, TASKS
    from mgeldm.weights import CLAP_FILE, DIT_FILE, WEIGHTS_DIR

    options = [
        ("ckpt_path=FILE", f"the unwrapped MGE-LDM checkpoint (the released one: {WEIGHTS_DIR}/{DIT_FILE})"),
        (
            "clap_ckpt_path=FILE",
            f"LAION's music CLAP (default {WEIGHTS_DIR}/{CLAP_FILE}; a model with "
            "another conditioner, e.g. the quickstart's, needs none)",
        ),
        *((f"+{name}=", text) for name, text in OPTION_HELP),
    ]
    defaults = [
        f"  {task:<17} {d.steps} / {d.cfg_scale:g} / {d.overlap:g} / {d.repaint_n}"
        for task, d in ((name, row.defaults) for name, row in TASKS.items())
    ]
    notes = [
        f"task defaults, steps / cfg_scale / overlap_dur s / repaint_n (for the released {RELEASED_WINDOW_SECONDS:g} s "
        "window; the overlap is scaled to another model's window: overlap x window / "
        f"{RELEASED_WINDOW_SECONDS:g} s):",
        *defaults,
        "A checkpoint written by unwrap_model.py carries its model config: no --config-name needed.",
    ]
    examples = [
        f"python infer.py ckpt_path={WEIGHTS_DIR}/{DIT_FILE} +task=source_extract +given_wav_path=song.wav "
        "\"+text_prompt='The sound of vocals'\"",
        "python infer.py ckpt_path=quickstart_out/checkpoints/mgeldm.ckpt +task=source_extract "
        "+given_wav_path=my_song.wav \"+text_prompt='The sound of bass.'\" +num_steps=4 +cfg_scale=2",
    ]
    return usage_text(
        "python infer.py ckpt_path=FILE +task=TASK [+key=value ...]",
        "Runs one of MGE-LDM's five tasks; each run writes a new <output_dir>/<task>/output_NNNN/ "
        "(wavs, pngs, prompt.txt, run.json).",
        options,
        examples,
        notes,
    )


def _model_config(cfg: Mapping, text: bool) -> dict[str, Any]:
    """The model config to load the checkpoint with; every missing file (checkpoint, CLAP, tokenizer) is named
    in one line before anything is loaded."""
    from mgeldm.model_config import inference_model_config

    node = cfg.get("model")
    if not isinstance(node, Mapping):
        raise OptionError("model", "missing (expected a `model` node, e.g. from configs/model/dit.yaml)")
    return inference_model_config(cfg.get("ckpt_path", None), dict(node), text=text)


def _sampling(cfg: Mapping, task: str, model_cfg: Mapping) -> tuple[Any, float | None]:
    """The sampler's settings (the task's defaults for this model with the options given, checked by the API's
    rules) and, for total_gen, the duration."""
    from mgeldm.models.mgeldm import model_facts
    from mgeldm.tasks.tasks import sampling_settings
    from mgeldm.tasks.windowing import check_gen_duration

    facts = model_facts(model_cfg)
    settings = sampling_settings(
        task,
        facts,
        steps=cfg.get("num_steps"),
        cfg_scale=cfg.get("cfg_scale"),
        overlap=cfg.get("overlap_dur"),
        repaint_n=cfg.get("repaint_n"),
        eta=cfg.get("eta"),
        sampler=cfg.get("sampler"),
    )
    if task != "total_gen":
        return settings, None
    seconds = checks.number("seconds", _value(cfg, "gen_audio_dur", DEFAULT_GEN_DUR))
    check_gen_duration(seconds, facts.sample_rate, facts.ratio)
    return settings, seconds


def _value(cfg: Mapping, key: str, default: Any) -> Any:
    value = cfg.get(key, None)
    return default if value is None else value


def _runtime(cfg: Mapping) -> dict[str, Any]:
    """Where and how the run computes and what it writes besides the task's results."""
    from mgeldm.inputs import check_chunked, compute_dtype, resolve_device

    seed, output_sr = cfg.get("seed", None), cfg.get("output_sr", None)
    device = str(cfg.get("device", None) or "auto")
    precision = str(cfg.get("precision", None) or "fp32")
    resolve_device(device)
    compute_dtype(precision)
    return dict(
        seed=None if seed is None else checks.seed(seed),
        device=device,
        precision=precision,
        output_sr=None if output_sr is None else checks.integer("output_sr", output_sr, 1),
        encode_sample=checks.boolean("encode_sample", _value(cfg, "encode_sample", False)),
        compile=checks.boolean("compile", _value(cfg, "compile", False)),
        save_png=checks.boolean("save_png", _value(cfg, "save_png", True)),
        chunked=check_chunked(cfg.get("chunked", None)),
    )


def parse_options(cfg: Mapping) -> InferOptions:
    """Check every option and input of ``cfg`` (the composed Hydra config); builds no model."""
    from mgeldm.inputs import prompt_list
    from mgeldm.models.mgeldm import model_facts
    from mgeldm.tasks.outputs import TASK_SUBDIRS, check_output_dir
    from mgeldm.tasks.tasks import check_task

    cfg = plain_config(cfg) if not isinstance(cfg, dict) else cfg
    task = cfg.get("task", None)
    if task is None:
        raise OptionError("task", f"missing; expected one of {', '.join(TASK_SUBDIRS)}")
    check_task(task)
    value = cfg.get("text_prompt", None)
    prompts = prompt_list(value, task)
    text = any(p is not None for p in prompts) or not checks.is_null(cfg.get("query_wav_path", None))
    model_cfg = _model_config(cfg, text)
    query_path, query = _query(cfg, task, prompts)
    clap_path = _clap_path(model_cfg, text)
    (settings, seconds), runtime = _sampling(cfg, task, model_cfg), _runtime(cfg)
    given, inputs, is_folder = _given_inputs(cfg, task, model_facts(model_cfg).sample_rate)
    output_dir = check_output_dir(str(cfg.get("output_dir", None) or DEFAULT_OUTPUT_DIR), TASK_SUBDIRS[task])
    return InferOptions(
        task=task,
        ckpt_path=Path(str(cfg.get("ckpt_path"))).expanduser(),
        clap_ckpt_path=clap_path,
        prompts=prompts,
        several_prompts=isinstance(value, list) and len(prompts) > 1 and task != "partial_gen_iter",
        inputs=inputs,
        input_is_folder=is_folder,
        given_wav_path=given,
        query_wav_path=query_path,
        query=query,
        output_dir=output_dir,
        model_cfg=model_cfg,
        settings=settings,
        gen_audio_dur=seconds,
        **runtime,
    )


# ---------------------------------------------------------------------------------------------
# running


def _versions() -> dict[str, str]:
    import numpy
    import torch

    import mgeldm

    out = {
        "mgeldm": mgeldm.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
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
    s = opts.settings
    lines += [
        f"overlap_dur: {s.overlap}",
        f"cfg_scale: {s.cfg_scale}",
        f"num_steps: {s.steps}",
        f"repaint_n: {s.repaint_n}",
        f"eta: {s.eta}",
        f"sampler: {s.sampler}",
        f"seed: {seed}",
    ]
    return "\n".join(lines) + "\n"


def _load_model(opts: InferOptions):
    import warnings

    from mgeldm.api import MGELDM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # legacy weight_norm deprecation in the VAE
        return MGELDM.from_pretrained(
            opts.ckpt_path,
            opts.clap_ckpt_path,
            device=opts.device,
            precision=opts.precision,
            model_config=opts.model_cfg,
            progress=True,
            compile=opts.compile,
            chunked=opts.chunked,
        )


@dataclass
class _Writer:
    """Writes the results of one run into its (hidden) run folder and lists what it wrote."""

    folder: Any  # mgeldm.tasks.outputs.RunFolder
    opts: InferOptions
    sample_rate: int
    prompt_folders: list[str] | None
    written: list[str] = field(default_factory=list)

    def _save(self, parts: tuple[str, ...], key: str, wave) -> None:
        for p in self.folder.write_audio(
            parts, key, wave, self.sample_rate, extra_sample_rate=self.opts.output_sr, png=self.opts.save_png
        ):
            self.written.append(str(p.relative_to(self.folder.tmp)))

    def text(self, parts: tuple[str, ...], text: str) -> None:
        self.written.append(str(self.folder.write_text(parts, text).relative_to(self.folder.tmp)))

    def results(self, base: tuple[str, ...], results: Mapping[str, Any]) -> None:
        """One song's results: one file per key, or one folder per prompt when there are several."""
        from mgeldm.tasks.outputs import slugify

        opts = self.opts
        for key, wave in results.items():
            if key.startswith("given_") or opts.task == "partial_gen_iter" or not self.prompt_folders:
                name = key
                if opts.task == "partial_gen_iter" and key.startswith("gen_src_"):
                    name = f"{key}_{slugify(str(opts.prompts[int(key.rsplit('_', 1)[1])]), 32)}"
                self._save(base, name, wave[0] if wave.shape[0] == 1 else wave)
            else:
                for i, row in enumerate(wave):
                    self._save(base + (self.prompt_folders[i],), key, row)
        for i, p in enumerate(opts.prompts if self.prompt_folders else ()):
            self.text(base + (self.prompt_folders[i], "prompt.txt"), f"text_prompt: {p}\n")


def _folders(opts: InferOptions) -> tuple[list[str] | None, list[str] | None]:
    """(one folder per prompt, one folder per input file), each only when there are several."""
    from mgeldm.tasks.outputs import unique_slugs

    prompts = (
        [f"{i:02d}_{s}" for i, s in enumerate(unique_slugs([str(p) for p in opts.prompts], fallback="prompt"))]
        if opts.several_prompts
        else None
    )
    inputs = unique_slugs([i.path.stem for i in opts.inputs], fallback="input") if opts.input_is_folder else None
    return prompts, inputs


def _run_info(
    opts: InferOptions, model, seed: int, times: dict[str, float], audio_seconds: float, written: list[str]
) -> dict[str, Any]:
    import torch

    sr = model.sample_rate
    return {
        "task": opts.task,
        "settings": _settings_info(opts),
        "seed": seed,
        "inputs": [
            {
                "path": str(i.path),
                "sample_rate": i.sample_rate,
                "channels": i.channels,
                "seconds": round(i.wave.shape[-1] / sr, 4),
            }
            for i in opts.inputs
        ],
        "device": str(model.device)
        + (f" ({torch.cuda.get_device_name(model.device)})" if model.device.type == "cuda" else ""),
        "precision": opts.precision,
        "sample_rate": sr,
        "timings": {"load_s": round(times["load_s"], 4), "run_s": round(times["run_s"], 4), **model.timings.as_dict()},
        "audio_seconds": round(audio_seconds, 4),
        "real_time_factor": round(times["run_s"] / audio_seconds, 5) if audio_seconds else None,
        "versions": _versions(),
        "command": sys.argv,
        "outputs": sorted(written),
        "model_config": opts.model_cfg,
    }


def _settings_info(opts: InferOptions) -> dict[str, Any]:
    """The options of the run, by their command-line names (run.json's ``settings``)."""
    out = {
        f.name: (str(v) if isinstance(v, Path) else v)
        for f in fields(opts)
        if f.name not in ("inputs", "query", "model_cfg", "settings")
        for v in [getattr(opts, f.name)]
    }
    s = opts.settings
    return {
        **out,
        "num_steps": s.steps,
        "cfg_scale": s.cfg_scale,
        "overlap_dur": s.overlap,
        "repaint_n": s.repaint_n,
        "eta": s.eta,
        "sampler": s.sampler,
    }


def run(opts: InferOptions) -> Path:
    """Load the model, run the task on every input, publish the output folder; returns its path."""
    from mgeldm.tasks.outputs import TASK_SUBDIRS, RunFolder

    t0 = time.perf_counter()
    model = _load_model(opts)
    times = {"load_s": time.perf_counter() - t0}
    seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    prompt_folders, input_folders = _folders(opts)
    with RunFolder(opts.output_dir, TASK_SUBDIRS[opts.task]) as folder:
        _test_signal_point()
        writer = _Writer(folder, opts, model.sample_rate, prompt_folders)
        t_run, audio_seconds = time.perf_counter(), 0.0
        kw = dict(
            prompts=opts.prompts,
            query=opts.query,
            encode_sample=opts.encode_sample,
            generator=model.generator(seed),
            settings=opts.settings,
        )
        if opts.task == "total_gen":
            writer.results((), model.run(opts.task, seconds=opts.gen_audio_dur, **kw))
            audio_seconds = opts.gen_audio_dur * len(opts.prompts)
        for n, given in enumerate(opts.inputs):  # one song at a time, all drawing from one generator
            writer.results(
                (input_folders[n],) if input_folders else (),
                model.run(opts.task, audio=given.wave, sr=model.sample_rate, **kw),
            )
            audio_seconds += given.wave.shape[-1] / model.sample_rate
        times["run_s"] = time.perf_counter() - t_run
        folder.write_text(("prompt.txt",), _prompt_txt(opts, seed, prompt_folders))
        writer.written += ["prompt.txt", "run.json"]
        folder.write_json(("run.json",), _run_info(opts, model, seed, times, audio_seconds, writer.written))
        final = folder.commit()
    rtf = times["run_s"] / audio_seconds if audio_seconds else float("nan")
    print(
        f"{opts.task}: wrote {len(writer.written)} files to {final} | {audio_seconds:.1f} s of audio in "
        f"{times['run_s']:.1f} s (real-time factor {rtf:.3f}, model load {times['load_s']:.1f} s) on {model.device}, "
        f"seed {seed}",
        flush=True,
    )
    return final


def _test_signal_point() -> None:
    name = os.environ.get(SIGNAL_TEST_ENV)
    if name:
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


CLI = hydra_cli(
    PROG,
    lambda cfg: run(parse_options(cfg)),
    config_name="dit",
    options=(*OPTIONS, "ckpt_path", "clap_ckpt_path"),
    usage=usage,
    messages=MESSAGES,
)
main, run_config = CLI.main, CLI.run_config

if __name__ == "__main__":
    raise SystemExit(main())
