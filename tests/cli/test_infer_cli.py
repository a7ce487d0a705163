"""``infer.py`` end to end on a tiny model: the original README's command lines as written, the
output folders they promise, bit-exact seeds, and one-line errors that leave no folder.

The tiny model is built here: the reference fixture's VAE with a DiT whose condition width is the
tiny CLAP fixture's (README sizes), saved as an unwrapped checkpoint; its model config is a
``model/tiny_cli.yaml`` in a ``--config-dir``. The README commands run through bash with only the
shell variables' values changed (tiny durations and steps) and those extras appended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]

# The three command lines of the original README (Inference section), verbatim.
README_COMMANDS = {
    "total_gen": r"""CUDA_VISIBLE_DEVICES=$GPU \
python infer.py \
    --config-name $CONFIG_NAME \
    +task=$TASK \
    ckpt_path=${CKPT_PATH} \
    +gen_audio_dur=${GEN_AUDIO_DUR} \
    +given_wav_path=${GIVEN_WAV_PATH} \
    "+text_prompt='${TEXT_PROMPT}'" \
    +num_steps=${NUM_STEPS} \
    +cfg_scale=${CFG_SCALE} \
    +overlap_dur=${OVERLAP_DUR} \
    +repaint_n=${REPAINT_N} \
    +output_dir=${OUTPUT_DIR}""",
    "given": r"""CUDA_VISIBLE_DEVICES=$GPU \
python infer.py \
    --config-name $CONFIG_NAME \
    +task=$TASK \
    ckpt_path=${CKPT_PATH} \
    +given_wav_path=${GIVEN_WAV_PATH} \
    "+text_prompt='${TEXT_PROMPT}'" \
    +num_steps=${NUM_STEPS} \
    +cfg_scale=${CFG_SCALE} \
    +overlap_dur=${OVERLAP_DUR} \
    +repaint_n=${REPAINT_N} \
    +output_dir=${OUTPUT_DIR}""",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, reference_fixtures, clap_fixtures):
    """A tiny CLAP-conditioned MGE-LDM saved as files: checkpoint, model yaml, work dir, a song."""
    from mgeldm.checkpoints import read_state_dict, write_state_dict
    from mgeldm.models.mgeldm import build_mgeldm

    ref, clap = reference_fixtures.readme, clap_fixtures.readme
    root = tmp_path_factory.mktemp("infer_cli")
    conditioner = {"type": "laion_clap", "config": clap_fixtures.clap_config(clap_ckpt_path=None)}
    model = {
        "sample_rate": ref["sample_rate"],
        "segment_length": 100,
        "pretransform": {**ref["pretransform"], "autoencoder": ref["autoencoder"]},
        "MGELDM": {**ref["mgeldm"], "global_cond_dim": clap["joint_embed_shape"]},
        "conditioner": {"clap_text": conditioner},
    }
    (root / "conf" / "model").mkdir(parents=True)
    (root / "conf" / "model" / "tiny_cli.yaml").write_text(yaml.safe_dump(model))
    torch.manual_seed(0)
    state = build_mgeldm(model).state_dict()
    state.update(
        {
            k: v
            for k, v in read_state_dict(reference_fixtures.path("tiny_mgeldm.ckpt")).items()
            if k.startswith("pretransform.")
        }
    )
    write_state_dict(state, root / "tiny_dit.ckpt")

    work = root / "work"  # the "repository root" the README commands run in
    work.mkdir()
    (work / "infer.py").symlink_to(REPO / "infer.py")
    (work / "configs").symlink_to(REPO / "configs")
    (work / "data_sample").mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(0.7 * 44100)) / 44100
    song = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], 1)
    song += 0.01 * rng.standard_normal(song.shape)
    sf.write(work / "data_sample" / "song.wav", song.astype(np.float32), 44100, subtype="FLOAT")
    frame_rate = ref["sample_rate"] / ref["autoencoder"]["downsampling_ratio"]
    return {
        "root": root,
        "work": work,
        "ckpt": root / "tiny_dit.ckpt",
        "model": model,
        "clap_ckpt": clap_fixtures.path("tiny_clap.pt"),
        "sr": ref["sample_rate"],
        "window_s": 100 / frame_rate,
        "song": work / "data_sample" / "song.wav",
    }


def _run_readme(tiny, which: str, env_vars: dict[str, str], extra: str = "") -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GPU": "0",
        "CONFIG_NAME": "dit",
        "CKPT_PATH": str(tiny["ckpt"]),
        "OUTPUT_DIR": "./outputs_infer/",
        "PYTHONPATH": str(REPO),
        **env_vars,
    }
    tail = (
        f" hydra.searchpath=[file://{tiny['root'] / 'conf'}] model=tiny_cli clap_ckpt_path={tiny['clap_ckpt']} "
        f"++seed=0 {extra}"
    )
    cmd = README_COMMANDS[which] + tail
    return subprocess.run(["bash", "-c", cmd], cwd=tiny["work"], env=env, capture_output=True, text=True, timeout=600)


def _wav(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data[:, 0], sr


def _new_folder(parent: Path, before: set[str]) -> Path:
    new = sorted(set(os.listdir(parent)) - before)
    assert len(new) == 1, new
    return parent / new[0]


@pytest.mark.slow
@pytest.mark.clap
def test_readme_total_gen_exact_duration_and_seed(tiny):
    """README total_gen command: 1.0 s gives exactly 1.0 s; the same seed gives the same bytes."""
    out = tiny["work"] / "outputs_infer" / "total_gen"
    before = set(os.listdir(out)) if out.exists() else set()
    values = {
        "TASK": "total_gen",
        "GEN_AUDIO_DUR": "1.0",
        "GIVEN_WAV_PATH": "null",
        "TEXT_PROMPT": "Lo-fi hip hop beat with mellow jazzy chords and a smooth bassline",
        "NUM_STEPS": "2",
        "CFG_SCALE": "6.0",
        "OVERLAP_DUR": "0.3",
        "REPAINT_N": "2",
    }
    first = _run_readme(tiny, "total_gen", values)
    assert first.returncode == 0, first.stderr
    assert "real-time factor" in first.stdout
    folder = _new_folder(out, before)
    assert folder.name.startswith("output_")
    for key in ("gen_mix", "gen_submix", "gen_src"):
        wave, sr = _wav(folder / f"{key}.wav")
        assert sr == tiny["sr"] and wave.shape[0] == tiny["sr"]  # exactly 1.0 s (overlap 0.3 s > half window)
        assert (folder / f"{key}.png").stat().st_size > 0
    prompt = (folder / "prompt.txt").read_text()
    assert "Lo-fi hip hop" in prompt and "num_steps: 2" in prompt
    info = json.loads((folder / "run.json").read_text())
    assert info["seed"] == 0 and info["settings"]["overlap_dur"] == 0.3 and info["timings"]["windows"] >= 3
    assert sorted(os.listdir(tiny["work"])) == ["configs", "data_sample", "infer.py", "outputs_infer"]

    second = _run_readme(tiny, "total_gen", values)
    assert second.returncode == 0, second.stderr
    again = _new_folder(out, before | {folder.name})
    assert again != folder
    for key in ("gen_mix", "gen_submix", "gen_src"):
        assert (folder / f"{key}.wav").read_bytes() == (again / f"{key}.wav").read_bytes()


@pytest.mark.slow
@pytest.mark.clap
@pytest.mark.parametrize(
    "task,sub,files",
    [
        ("source_extract", "src_extract", ["gen_src", "gen_submix", "given_mix"]),
        ("partial_gen", "partial_gen_single", ["gen_src", "gen_mix", "gen_mix_sum", "given_wav"]),
    ],
)
def test_readme_given_track_commands(tiny, task, sub, files):
    """README source_extract / partial_gen commands on a 44.1 kHz stereo file: 16 kHz outputs of the
    input's duration, the given audio saved unchanged, gen_mix_sum = given + gen_src."""
    from mgeldm.audio import load_audio, resample, to_mono

    values = {
        "TASK": task,
        "GIVEN_WAV_PATH": "data_sample/song.wav",
        "TEXT_PROMPT": "The sound of vocals",
        "NUM_STEPS": "2",
        "CFG_SCALE": "10.0",
        "OVERLAP_DUR": "0.1",
        "REPAINT_N": "1",
    }
    out = tiny["work"] / "outputs_infer" / sub
    before = set(os.listdir(out)) if out.exists() else set()
    proc = _run_readme(tiny, "given", values, extra="+output_sr=44100")
    assert proc.returncode == 0, proc.stderr
    folder = _new_folder(out, before)
    wave, sr = load_audio(tiny["song"])
    expected = resample(to_mono(wave), sr, tiny["sr"])[0].numpy()
    for key in files:
        got, got_sr = _wav(folder / f"{key}.wav")
        assert got_sr == tiny["sr"] and got.shape == expected.shape
        assert (folder / f"{key}.png").exists()
        assert _wav(folder / f"{key}_44100hz.wav")[1] == 44100
    given = _wav(folder / f"{files[-1]}.wav")[0]
    assert np.abs(given - expected).max() <= 1.5 / 32768  # unchanged up to PCM_16
    if task == "partial_gen":
        total = _wav(folder / "gen_mix_sum.wav")[0]
        src = _wav(folder / "gen_src.wav")[0]
        ok = (np.abs(src) < 0.999) & (np.abs(total) < 0.999)  # PCM_16 clips, as the original's writer
        assert ok.sum() >= 100 and np.abs(total - (given + src))[ok].max() <= 3 / 32768


@pytest.mark.slow
@pytest.mark.clap
def test_several_prompts_folder_input_and_iterative(tiny):
    """A list of prompts over a folder of inputs (one sub-folder per input and prompt, slugs only),
    accomp_gen on a clip shorter than one window, and partial_gen_iter with ';'-separated prompts."""
    inputs = tiny["root"] / "inputs"
    inputs.mkdir()
    sf.write(inputs / "a b.wav", 0.2 * np.sin(np.arange(5000) / 7.0), 22050)
    sf.write(inputs / "c.flac", 0.2 * np.cos(np.arange(9000) / 5.0), 16000)
    out = tiny["root"] / "multi"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [
        sys.executable,
        "infer.py",
        "--config-name",
        "dit",
        "--config-dir",
        str(tiny["root"] / "conf"),
        "model=tiny_cli",
        f"ckpt_path={tiny['ckpt']}",
        f"clap_ckpt_path={tiny['clap_ckpt']}",
        "+num_steps=2",
        "+overlap_dur=0.1",
        "++seed=1",
        f"+output_dir={out}",
    ]
    proc = subprocess.run(
        base
        + ["+task=source_extract", f"+given_wav_path={inputs}", "+text_prompt=['vocals','../../etc/drums','vocals']"],
        cwd=tiny["work"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    folder = out / "src_extract" / "output_0000"
    names = {str(p.relative_to(folder)) for p in folder.rglob("*.wav")}
    assert {
        "a_b/given_mix.wav",
        "c/given_mix.wav",
        "a_b/00_vocals/gen_src.wav",
        "a_b/01_etc_drums/gen_src.wav",
        "a_b/02_vocals_2/gen_submix.wav",
        "c/02_vocals_2/gen_src.wav",
    } <= names
    assert _wav(folder / "a_b" / "01_etc_drums" / "gen_src.wav")[0].shape[0] == round(5000 * 16000 / 22050)
    assert _wav(folder / "c" / "00_vocals" / "gen_src.wav")[0].shape[0] == 9000
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert "a_b/00_vocals/prompt.txt" in files and json.loads((folder / "run.json").read_text())["outputs"] == files
    assert f"wrote {len(files)} files" in proc.stdout

    short = tiny["root"] / "short.wav"
    short_len = int(0.5 * tiny["window_s"] * tiny["sr"])
    sf.write(short, 0.3 * np.sin(np.arange(short_len) / 3.0), tiny["sr"])
    # scripts/infer_accomp_gen.sh as shipped, its variables set from the environment
    script_env = {
        **env,
        "CKPT_PATH": str(tiny["ckpt"]),
        "CLAP_CKPT_PATH": str(tiny["clap_ckpt"]),
        "OUTPUT_DIR": str(out),
        "GIVEN_WAV_PATH": str(short),
        "NUM_STEPS": "2",
        "OVERLAP_DUR": "0.1",
        "SEED": "1",
        "TEXT_PROMPT": "piano trio",
    }
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "infer_accomp_gen.sh"),
            f"hydra.searchpath=[file://{tiny['root'] / 'conf'}]",
            "model=tiny_cli",
        ],
        env=script_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    folder = out / "accomp_gen" / "output_0000"
    for key in ("gen_submix", "gen_mix", "given_wav"):
        assert _wav(folder / f"{key}.wav")[0].shape[0] == short_len

    proc = subprocess.run(
        [
            sys.executable,
            "infer.py",
            "--config-name",
            "default_dit_scratch",
            *base[4:],
            "+task=partial_gen_iter",
            f"+given_wav_path={short}",
            "+text_prompt='The sound of drums; Jazz piano'",
            "+save_png=false",
        ],
        cwd=tiny["work"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    folder = out / "partial_gen_iter" / "output_0000"
    wavs = sorted(p.name for p in folder.glob("*.wav"))
    assert wavs == ["gen_mix.wav", "gen_src_0_the_sound_of_drums.wav", "gen_src_1_jazz_piano.wav", "given_wav.wav"]
    assert not list(folder.glob("*.png"))  # +save_png=false
    assert list((out / "accomp_gen" / "output_0000").glob("*.png"))  # the default writes them
    mix = _wav(folder / "gen_mix.wav")[0]
    singles = [_wav(folder / w)[0] for w in wavs if w != "gen_mix.wav"]
    ok = np.all([np.abs(x) < 0.999 for x in singles + [mix]], axis=0)  # PCM_16 clips
    assert all(x.shape == (short_len,) for x in singles + [mix])
    assert ok.sum() == 0 or np.abs(mix - sum(singles))[ok].max() <= 4 / 32768  # the sum itself: test_tasks


def test_scripts_are_valid_bash_with_the_original_settings():
    expected = {
        "infer_total_gen.sh": ("total_gen", 250, 10.0, 7.0, 1),
        "infer_src_ext.sh": ("source_extract", 250, 10.0, 3.0, 1),
        "infer_partial_gen.sh": ("partial_gen", 100, 10.0, 6.0, 1),
        "infer_accomp_gen.sh": ("accomp_gen", 100, 4.0, 5.0, 2),
        "infer_partial_gen_iter.sh": ("partial_gen_iter", 20, 2.0, 3.0, 2),
    }
    for name, (task, steps, cfg, overlap, repaint) in expected.items():
        path = REPO / "scripts" / name
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
        text = path.read_text()
        for line in (
            f'TASK="{task}"',
            f"NUM_STEPS=${{NUM_STEPS:-{steps}}}",
            f"CFG_SCALE=${{CFG_SCALE:-{cfg}}}",
            f"OVERLAP_DUR=${{OVERLAP_DUR:-{overlap}}}",
            f"REPAINT_N=${{REPAINT_N:-{repaint}}}",
        ):
            assert line in text, (name, line)


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit code 2, no output folder


def _compose(tiny, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return compose(
            "dit", overrides=[f"hydra.searchpath=[file://{tiny['root'] / 'conf'}]", "model=tiny_cli", *overrides]
        )


@pytest.fixture(scope="module")
def bad_files(tiny):
    root = tiny["root"] / "bad"
    root.mkdir()
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(root / "silent.wav", np.zeros(8000, np.float32), 16000)
    nan = np.full(8000, 0.1, np.float32)
    nan[10] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    (root / "text.wav").write_text("not audio")
    (root / "text.ckpt").write_text("not a checkpoint")
    (root / "a_file").write_text("x")
    (root / "empty_folder").mkdir()
    return root


GOOD = ["+task=source_extract", "+given_wav_path={song}", "+text_prompt=vocals", "+num_steps=1", "+overlap_dur=0.1"]

BAD_CASES = {
    "missing wav": (["+given_wav_path={bad}/nope.wav"], "nope.wav"),
    "unreadable wav": (["+given_wav_path={bad}/text.wav"], "text.wav"),
    "empty wav": (["+given_wav_path={bad}/empty.wav"], "empty"),
    "silent wav": (["+given_wav_path={bad}/silent.wav"], "silence"),
    "nan wav": (["+given_wav_path={bad}/nan.wav"], "NaN"),
    "empty folder": (["+given_wav_path={bad}/empty_folder"], "no audio files"),
    "unknown task": (["+task=separate"], "+task=separate"),
    "no given wav": (["+given_wav_path=null"], "+given_wav_path"),
    "missing ckpt": (["ckpt_path={bad}/nope.ckpt"], "nope.ckpt"),
    "wrong ckpt file": (["ckpt_path={bad}/text.ckpt"], "text.ckpt"),
    "AE-only ckpt": (["ckpt_path={ae_ckpt}"], "autoencoder"),
    "wrong size ckpt": (["ckpt_path={ref_ckpt}"], "does not fit"),
    "CLAP ckpt not CLAP": (["clap_ckpt_path={ae_ckpt}"], "tiny_ae.ckpt"),
    "zero steps": (["+num_steps=0"], "+num_steps"),
    "negative steps": (["+num_steps=-3"], "+num_steps"),
    "zero duration": (["+task=total_gen", "+gen_audio_dur=0"], "+gen_audio_dur"),
    "negative duration": (["+task=total_gen", "+gen_audio_dur=-2.5"], "+gen_audio_dur"),
    "duration below one latent frame": (["+task=total_gen", "+gen_audio_dur=0.00001"], "one latent frame"),
    "overlap >= window": (["+overlap_dur={window_s}"], "+overlap_dur"),
    "prompt not a string": (["+text_prompt=123"], "+text_prompt"),
    "prompt list not strings": (["+text_prompt=[1,2]"], "+text_prompt"),
    "one iter prompt": (["+task=partial_gen_iter", "+text_prompt=drums"], "+text_prompt"),
    "unwritable output dir": (["+output_dir={bad}/a_file/sub"], "+output_dir"),
    "output dir cannot be created": (["+output_dir=/proc/mgeldm_no_such/out"], "+output_dir=/proc/mgeldm_no_such"),
    "bad device": (["+device=tpu"], "+device"),
    "bad precision": (["+precision=fp8"], "+precision"),
    "repaint zero": (["+repaint_n=0"], "+repaint_n"),
    "no clap path": (["clap_ckpt_path=null"], "clap_ckpt_path"),
    "missing clap file": (["clap_ckpt_path={bad}/nope.pt"], "nope.pt"),
    "query and text": (["+query_wav_path={song}"], "+query_wav_path"),
    "missing query": (["+text_prompt=null", "+query_wav_path={bad}/nope.wav"], "nope.wav"),
    "silent query": (["+text_prompt=null", "+query_wav_path={bad}/silent.wav"], "silence"),
    "chunked not a boolean": (["+chunked=maybe"], "+chunked=maybe"),
    "unknown sampler": (["+sampler=euler"], "+sampler=euler: expected one of ddim, dpmpp_2m, heun"),
    "ODE sampler with RePaint": (["+sampler=dpmpp_2m", "+repaint_n=2"], "+repaint_n=2: RePaint"),
    "ODE sampler with eta": (["+sampler=heun", "+eta=0.3"], "+eta=0.3"),
}


@pytest.mark.clap
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_line_no_folder(tiny, bad_files, reference_fixtures, case, capsys):
    from mgeldm.cli.infer import run_config

    overrides, needle = BAD_CASES[case]
    fill = {
        "song": tiny["song"],
        "bad": bad_files,
        "window_s": tiny["window_s"],
        "ae_ckpt": reference_fixtures.path("tiny_ae.ckpt"),
        "ref_ckpt": reference_fixtures.path("tiny_mgeldm.ckpt"),
    }
    out = tiny["root"] / ("out_" + "".join(c if c.isalnum() else "_" for c in case))
    args = {
        o.split("=", 1)[0]: o
        for o in [f"ckpt_path={tiny['ckpt']}", f"clap_ckpt_path={tiny['clap_ckpt']}", f"+output_dir={out}", *GOOD]
    }
    args.update({o.split("=", 1)[0]: o for o in overrides})
    args = {k: v.format(**fill) for k, v in args.items()}
    cfg = _compose(tiny, list(args.values()))
    with pytest.raises(SystemExit) as exit_info:
        run_config(cfg)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert len(lines) == 1 and lines[0].startswith("infer.py: error: "), lines
    assert needle in lines[0]
    assert not out.exists() or not any(out.rglob("output_*"))


def _quick_run_args(tiny, out: Path) -> list[str]:
    """A total_gen run without text (so no CLAP to build): about a second on a CPU."""
    return [
        f"hydra.searchpath=[file://{tiny['root'] / 'conf'}]",
        "model=tiny_cli",
        f"ckpt_path={tiny['ckpt']}",
        "clap_ckpt_path=null",
        "+task=total_gen",
        "+gen_audio_dur=0.2",
        "+num_steps=1",
        "+overlap_dur=0.1",
        "+text_prompt=null",
        f"+output_dir={out}",
        "++seed=0",
    ]


@pytest.fixture(scope="module")
def umask_022_run(tiny):
    """One quick run under umask 022 (wavs, pngs, a resampled copy): its output folder and printed summary."""
    import contextlib
    import io

    from mgeldm.cli.infer import parse_options, run

    out = tiny["root"] / "umask"
    stdout = io.StringIO()
    previous = os.umask(0o022)
    try:
        with contextlib.redirect_stdout(stdout):
            folder = run(parse_options(_compose(tiny, _quick_run_args(tiny, out)[1:] + ["+output_sr=22050"])))
    finally:
        os.umask(previous)
    return out, folder, stdout.getvalue()


@pytest.mark.clap
def test_outputs_honour_the_umask(umask_022_run):
    """Files 0644 and folders 0755 under umask 022, like any other program's (not mkstemp's 0600 / 0700)."""
    import stat

    out, folder, _ = umask_022_run
    entries = [out, out / "total_gen", folder, *folder.rglob("*")]
    modes = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in entries}
    expected = {str(p.relative_to(out)): oct(0o755 if p.is_dir() else 0o644) for p in entries}
    assert modes == expected
    assert {"gen_mix.wav", "gen_mix.png", "gen_mix_22050hz.wav", "run.json", "prompt.txt"} <= {p.name for p in entries}


@pytest.mark.clap
def test_sampler_option_reaches_the_run_and_its_records(tiny):
    from mgeldm.cli.infer import parse_options, run

    out = tiny["root"] / "sampler"
    opts = parse_options(_compose(tiny, _quick_run_args(tiny, out)[1:] + ["+sampler=dpmpp_2m", "+save_png=false"]))
    assert opts.settings.sampler == "dpmpp_2m"
    folder = run(opts)
    assert "sampler: dpmpp_2m" in (folder / "prompt.txt").read_text().splitlines()
    assert json.loads((folder / "run.json").read_text())["settings"]["sampler"] == "dpmpp_2m"
    default = parse_options(_compose(tiny, _quick_run_args(tiny, out)[1:]))
    assert default.settings.sampler == "ddim"


@pytest.mark.clap
def test_summary_counts_every_file_written(umask_022_run):
    _, folder, stdout = umask_022_run
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert f"wrote {len(files)} files to {folder}" in stdout
    assert json.loads((folder / "run.json").read_text())["outputs"] == files


@pytest.mark.clap
def test_sigterm_removes_the_partial_folder(tiny, monkeypatch, capsys):
    """SIGTERM, sent once the hidden output folder exists, ends the run like Ctrl-C: one line, no folders."""
    import signal

    from mgeldm.cli.infer import SIGNAL_TEST_ENV, run_config

    def unhandled(signum, frame):
        pytest.fail("SIGTERM reached the test: infer does not handle it")

    previous = signal.signal(signal.SIGTERM, unhandled)
    out = tiny["root"] / "sigterm"
    monkeypatch.setenv(SIGNAL_TEST_ENV, "TERM")
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_config(_compose(tiny, _quick_run_args(tiny, out)[1:] + ["+save_png=false"]))
    finally:
        assert signal.signal(signal.SIGTERM, previous) is unhandled  # infer restored the handler
    assert exit_info.value.code == 143
    captured = capsys.readouterr()
    assert (captured.out + captured.err).splitlines() == [
        "infer.py: error: terminated (SIGTERM); no output folder was written"
    ]
    assert not out.exists()  # neither the partial folder nor the folders the run created


@pytest.mark.slow
@pytest.mark.clap
def test_rerun_removes_the_partial_folder_of_a_killed_run(tiny):
    """kill -9 once the hidden output folder exists leaves it; the next run removes it and publishes output_0000."""
    from mgeldm.cli.infer import SIGNAL_TEST_ENV

    out = tiny["root"] / "sigkill"
    cmd = [sys.executable, "infer.py", "--config-name", "dit", *_quick_run_args(tiny, out), "+save_png=false"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run(
        cmd, cwd=tiny["work"], env={**env, SIGNAL_TEST_ENV: "KILL"}, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -9, killed.stderr
    (stale,) = (out / "total_gen").iterdir()
    assert stale.name.startswith(".partial_output_")
    again = subprocess.run(cmd, cwd=tiny["work"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (out / "total_gen").iterdir()) == ["output_0000"]


@pytest.mark.slow
@pytest.mark.clap
def test_bad_input_through_hydra_is_exactly_one_line(tiny, bad_files):
    """The whole stdout + stderr of a failing run is the one line: no Hydra or logging noise."""
    out = tiny["root"] / "hydra_bad"
    proc = subprocess.run(
        [
            sys.executable,
            "infer.py",
            "--config-name",
            "dit",
            "--config-dir",
            str(tiny["root"] / "conf"),
            "model=tiny_cli",
            f"ckpt_path={tiny['ckpt']}",
            "+task=source_extract",
            f"+given_wav_path={bad_files}/silent.wav",
            f"+output_dir={out}",
            "+num_step=3",
        ],
        cwd=tiny["work"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).splitlines()
    assert len(lines) == 1 and "+num_step" in lines[0], lines
    assert not out.exists()
    assert not (tiny["work"] / "outputs").exists() and not (tiny["work"] / ".hydra").exists()


@pytest.mark.clap
@pytest.mark.parametrize("task", ["total_gen", "source_extract"])
def test_at_most_five_project_calls_from_the_parsed_options_to_the_sampling_loop(tiny, monkeypatch, task):
    """cli/infer.run -> MGELDM.run -> run_task -> sample_latents -> sample_windows -> sample_ddim: the path a
    reader follows from the command line to the loop, and the one settings value that travels along it."""
    import soundfile as sf

    import mgeldm
    from mgeldm.cli.infer import parse_options, run
    from mgeldm.diffusion import windows

    package, chains, seen = str(Path(mgeldm.__file__).parent), [], []
    ddim = windows.SAMPLERS["ddim"]

    def spy(*args, **kwargs):
        names, frame = [], sys._getframe(1)
        while frame is not None and frame.f_code is not run.__code__:
            if frame.f_code.co_filename.startswith(package):
                names.append(frame.f_code.co_name)
            frame = frame.f_back
        chains.append([*names[::-1], "sample_ddim"])
        seen.append(sys._getframe(1).f_locals["settings"])  # sample_windows' settings
        return ddim(*args, **kwargs)

    monkeypatch.setitem(windows.SAMPLERS, "ddim", spy)
    out = tiny["root"] / f"chain_{task}"
    args = _quick_run_args(tiny, out)[1:] + ["+save_png=false"]
    if task == "source_extract":
        sf.write(tiny["root"] / "chain.wav", (0.1 * torch.sin(torch.arange(3200) / 5.0)).numpy(), 16000)
        args = [a for a in args if not a.startswith(("+task", "+gen_audio_dur"))]
        args += ["+task=source_extract", f"+given_wav_path={tiny['root'] / 'chain.wav'}"]
    opts = parse_options(_compose(tiny, args))
    run(opts)
    assert chains and all(chain == chains[0] for chain in chains)
    assert len(chains[0]) <= 5, chains[0]
    print(" -> ".join(chains[0]))
    assert chains[0][:2] == ["run", "run_task"] and chains[0][-2:] == ["sample_windows", "sample_ddim"]
    assert all(s is opts.settings for s in seen)
