"""``evaluate.py``: score separated / generated stems against references, with baseline rows.

Pairing: every audio file (.wav/.flac/.ogg/.mp3) under ``pred_dir`` is matched by its path relative to
``pred_dir`` with the same path under ``ref_dir``; a file on one side only is an error (one line).
The group ("stem/prompt") of a file is its first folder (``bass/Track00041.wav`` -> ``bass``); files
directly in the folder form the group ``all``. The mixture of a file is ``mix_dir/<same path>`` or else
``mix_dir/<file name>``; the oracle (AE round trip of the reference) is ``oracle_dir/<same path>``.

Alignment: all signals of a pair are down-mixed to mono, resampled to ``sample_rate`` (default
16 kHz, soxr HQ) and trimmed to the shortest of them (no padding, no time shift).

Rows per group: ``model`` (the predictions) and the baselines ``mixture`` (needs mix_dir), ``silence``
(an all-zero estimate) and ``oracle`` (needs oracle_dir). Per-file metrics are summarised by mean, std
and a seeded bootstrap 95 % interval; FAD is one value per group and row (sub-FAD) and over all files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from mgeldm.audio import load_audio, resample, to_mono
from mgeldm.cli.hydra_args import hydra_cli
from mgeldm.cli.schema import boolean, check_config, choice, integer, number, optional, prefixed, text
from mgeldm.errors import UserError
from mgeldm.files import check_writable_dir, write_text_atomic
from mgeldm.metrics.bootstrap import summarize
from mgeldm.metrics.logmel import LogMelConfig, log_mel
from mgeldm.metrics.sisdr import si_sdr, si_sdr_improvement

PROG = "evaluate.py"
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
PER_FILE_METRICS = ("si_sdr", "si_sdri", "logmel_l1", "logmel_l1_ratio_vs_mix", "museval_sdr")
SET_METRICS = ("fad",)
KNOWN_METRICS = PER_FILE_METRICS + SET_METRICS
DEFAULT_METRICS = ("si_sdr", "logmel_l1")
ROWS = ("model", "mixture", "silence", "oracle")

# Top-level keys evaluate.py reads: `key=`, `+key=` and `++key=` all set them.
OPTIONS = ("pred_dir", "ref_dir", "mix_dir", "oracle_dir", "metrics", "output", "sample_rate", "vggish_weights",
           "progress")
RULES = {
    **{k: optional(text()) for k in ("pred_dir", "ref_dir", "mix_dir", "oracle_dir", "output", "vggish_weights")},
    "sample_rate": optional(integer(1)),
    "progress": boolean(),
    "bootstrap.n_boot": integer(1),
    "bootstrap.seed": integer(),
    **prefixed("logmel", {"n_fft": integer(1), "hop_length": integer(1), "win_length": integer(1),
                          "n_mels": integer(1), "f_min": number(0), "f_max": optional(number(above=0)),
                          "power": number(above=0), "floor": number(above=0)}),
    "fad.embedder": choice("vggish", "clap", "melstats"),
    "fad.device": text(),
}


@dataclass
class Pair:
    rel: str
    group: str
    pred: Path
    ref: Path
    mix: Path | None = None
    oracle: Path | None = None


def _audio_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in AUDIO_EXTS and not p.name.startswith(".")}


def _require_dir(path: str | None, option: str) -> Path:
    if not path:
        raise UserError(f"+{option}: missing; expected a folder of audio files")
    p = Path(str(path))
    if not p.is_dir():
        raise UserError(f"+{option}={p}: not a folder")
    return p


def pair_files(pred_dir: str, ref_dir: str, mix_dir: str | None = None,
               oracle_dir: str | None = None) -> list[Pair]:
    """Match predictions and references by relative path; one-line UserError on any unpaired file."""
    pred_root, ref_root = _require_dir(pred_dir, "pred_dir"), _require_dir(ref_dir, "ref_dir")
    preds, refs = _audio_files(pred_root), _audio_files(ref_root)
    if not preds:
        raise UserError(f"+pred_dir={pred_root}: no audio files ({', '.join(AUDIO_EXTS)})")
    only_pred = sorted(set(preds) - set(refs))
    only_ref = sorted(set(refs) - set(preds))
    if only_pred or only_ref:
        parts = []
        if only_pred:
            parts.append(f"{len(only_pred)} in {pred_root} without a reference (first: {only_pred[0]})")
        if only_ref:
            parts.append(f"{len(only_ref)} in {ref_root} without a prediction (first: {only_ref[0]})")
        raise UserError("unpaired files: " + "; ".join(parts) + " — files are paired by relative path")
    mix_root = _require_dir(mix_dir, "mix_dir") if mix_dir else None
    oracle_root = _require_dir(oracle_dir, "oracle_dir") if oracle_dir else None
    pairs = []
    for rel in sorted(preds):
        parts = rel.split("/")
        pair = Pair(rel, parts[0] if len(parts) > 1 else "all", preds[rel], refs[rel])
        if mix_root is not None:
            cands = [mix_root / rel, mix_root / parts[-1]]
            pair.mix = next((c for c in cands if c.is_file()), None)
            if pair.mix is None:
                raise UserError(f"+mix_dir={mix_root}: no mixture for {rel} (looked for {rel} and {parts[-1]})")
        if oracle_root is not None:
            pair.oracle = oracle_root / rel
            if not pair.oracle.is_file():
                raise UserError(f"+oracle_dir={oracle_root}: no oracle file for {rel}")
        pairs.append(pair)
    return pairs


def load_eval_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """Mono, resampled to the evaluation rate: (L,) float32."""
    wave, sr = load_audio(path)
    return resample(to_mono(wave), sr, sample_rate)[0]


def align(*signals: torch.Tensor) -> list[torch.Tensor]:
    """Trim every signal to the shortest one (the stated alignment rule)."""
    n = min(s.shape[-1] for s in signals)
    return [s[..., :n] for s in signals]


def _museval_sdr(est: torch.Tensor, ref: torch.Tensor, sample_rate: int) -> float:
    try:
        import museval
    except ImportError:
        raise UserError("metric museval_sdr: the museval package is not installed (pip install museval)") from None
    sdr, _, _, _ = museval.evaluate(ref.numpy()[None, :, None], est.numpy()[None, :, None], win=sample_rate,
                                    hop=sample_rate)
    return float(np.nanmedian(sdr))


def _file_metrics(metrics: Sequence[str], est: torch.Tensor, ref: torch.Tensor, mix: torch.Tensor | None,
                  sample_rate: int, mels: Mapping[str, torch.Tensor], row: str) -> dict[str, float]:
    """Per-file metrics of one estimate; ``mels`` holds the log-mel spectrograms computed once per signal."""
    out: dict[str, float] = {}
    if "si_sdr" in metrics:
        out["si_sdr"] = float(si_sdr(est, ref))
    if "si_sdri" in metrics and mix is not None:
        out["si_sdri"] = float(si_sdr_improvement(est, ref, mix))
    if mels:
        l1 = float((mels[row] - mels["ref"]).abs().mean())
        if "logmel_l1" in metrics:
            out["logmel_l1"] = l1
        if "logmel_l1_ratio_vs_mix" in metrics and "mixture" in mels:
            out["logmel_l1_ratio_vs_mix"] = l1 / max(float((mels["mixture"] - mels["ref"]).abs().mean()), 1e-12)
    if "museval_sdr" in metrics:
        out["museval_sdr"] = _museval_sdr(est, ref, sample_rate)
    return out


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def evaluate_pairs(pairs: Sequence[Pair], *, metrics: Sequence[str] = DEFAULT_METRICS, sample_rate: int = 16000,
                   logmel: LogMelConfig | None = None, n_boot: int = 1000, seed: int = 0,
                   embedder_factory: Callable[[], object] | None = None,
                   progress: bool = False) -> dict:
    """Compute every metric for every pair and row; returns the JSON-ready result."""
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise UserError(f"+metrics: unknown {unknown}; expected some of {list(KNOWN_METRICS)}")
    needs_mix = [m for m in metrics if m in ("si_sdri", "logmel_l1_ratio_vs_mix")]
    if needs_mix and any(p.mix is None for p in pairs):
        raise UserError(f"+metrics {needs_mix}: need the mixtures, give +mix_dir=FOLDER")
    cfg = logmel or LogMelConfig(sample_rate=sample_rate)
    if cfg.sample_rate != sample_rate:
        cfg = LogMelConfig(**{**cfg.as_dict(), "sample_rate": sample_rate})
    embedder = embedder_factory() if "fad" in metrics and embedder_factory else None
    if "fad" in metrics and embedder is None:
        raise UserError("+metrics contains fad: choose an embedder with fad.embedder=vggish|clap|melstats")
    from mgeldm.progress import progress_bar

    uses_mel = any(m in metrics for m in ("logmel_l1", "logmel_l1_ratio_vs_mix"))
    per_file: list[dict] = []
    emb: dict[tuple[str, str], list[np.ndarray]] = {}   # (row, group) -> embeddings
    emb_ref: dict[str, list[np.ndarray]] = {}
    for pair in progress_bar(pairs, desc="evaluate", unit="file", disable=not progress):
        sig = {"model": load_eval_audio(pair.pred, sample_rate), "ref": load_eval_audio(pair.ref, sample_rate)}
        if pair.mix is not None:
            sig["mixture"] = load_eval_audio(pair.mix, sample_rate)
        if pair.oracle is not None:
            sig["oracle"] = load_eval_audio(pair.oracle, sample_rate)
        names = list(sig)
        sig = dict(zip(names, align(*sig.values())))
        sig["silence"] = torch.zeros_like(sig["ref"])
        mix = sig.get("mixture")
        mels = {k: log_mel(v, cfg) for k, v in sig.items()} if uses_mel else {}
        entry = {"file": pair.rel, "group": pair.group, "samples": int(sig["ref"].shape[-1])}
        for row in ROWS:
            if row in sig:
                entry[row] = _file_metrics(metrics, sig[row], sig["ref"], mix, sample_rate, mels, row)
                if embedder is not None:
                    emb.setdefault((row, pair.group), []).append(embedder.embed(sig[row], sample_rate))
        if embedder is not None:
            emb_ref.setdefault(pair.group, []).append(embedder.embed(sig["ref"], sample_rate))
        per_file.append(entry)

    groups = sorted({p.group for p in pairs})
    rows_present = [r for r in ROWS if any(r in e for e in per_file)]
    file_metrics = [m for m in metrics if m in PER_FILE_METRICS]

    def table(entries: list[dict]) -> dict:
        out = {}
        for row in rows_present:
            out[row] = {}
            for m in file_metrics:
                vals = [e[row][m] for e in entries if row in e and m in e[row]]
                if vals:
                    out[row][m] = summarize(vals, n_boot=n_boot, seed=seed)
        return out

    result = {
        "settings": {
            "sample_rate": sample_rate,
            "alignment": "mono down-mix, soxr HQ resampling, then trim to the shortest signal",
            "pairing": "by path relative to pred_dir/ref_dir; group = first folder, else 'all'",
            "logmel": cfg.as_dict(),
            "si_sdr": "zero-mean SI-SDR in dB; undefined (null) for silent estimates or references",
            "bootstrap": {"n_boot": n_boot, "confidence": 0.95, "seed": seed, "method": "percentile"},
            "metrics": list(metrics),
        },
        "n_files": len(per_file),
        "groups": {g: {"n_files": sum(e["group"] == g for e in per_file),
                       "rows": table([e for e in per_file if e["group"] == g])} for g in groups},
        "overall": {"n_files": len(per_file), "rows": table(per_file)},
        "per_file": per_file,
    }
    if embedder is not None:
        result["fad"] = _fad_block(emb, emb_ref, groups, rows_present, embedder)
    return _clean(result)


def _fad_block(emb, emb_ref, groups, rows, embedder) -> dict:
    from mgeldm.metrics.frechet import fad

    def safe_fad(a: list[np.ndarray], b: list[np.ndarray]) -> float | None:
        x, y = np.concatenate(a), np.concatenate(b)
        return fad(x, y) if len(x) >= 2 and len(y) >= 2 else None

    out: dict = {"embedder": embedder.name, "sub_fad": {}, "fad": {}}
    for row in rows:
        per_group = {g: safe_fad(emb[(row, g)], emb_ref[g]) for g in groups if (row, g) in emb}
        vals = [v for v in per_group.values() if v is not None]
        per_group["mean"] = float(np.mean(vals)) if vals else None
        out["sub_fad"][row] = per_group
        out["fad"][row] = safe_fad([e for g in groups for e in emb.get((row, g), [])],
                                   [e for g in groups for e in emb_ref[g]])
    return out


def _fmt(s: dict | None) -> str:
    if not s or s.get("mean") is None:
        return "—"
    return f"{s['mean']:.3f} ± {s['std']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}] (n={s['n']})"


def markdown(result: dict) -> str:
    """One table per group (and overall): rows = model/baselines, columns = metrics."""
    metrics = [m for m in result["settings"]["metrics"] if m in PER_FILE_METRICS]
    lines = ["# Evaluation", "",
             f"{result['n_files']} files at {result['settings']['sample_rate']} Hz; "
             f"{result['settings']['alignment']}. Cells: mean ± std [bootstrap 95 % CI] (n).", ""]
    sections = [(f"Stem / prompt: {g}", b) for g, b in result["groups"].items()] + [("Overall", result["overall"])]
    for title, block in sections:
        lines += [f"## {title}", "", "| row | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        for row, vals in block["rows"].items():
            lines.append(f"| {row} | " + " | ".join(_fmt(vals.get(m)) for m in metrics) + " |")
        lines.append("")
    if "fad" in result:
        f = result["fad"]
        groups = list(result["groups"])
        lines += [f"## FAD ({f['embedder']} embeddings)", "",
                  "| row | " + " | ".join(f"sub-FAD {g}" for g in groups) + " | sub-FAD mean | FAD all |",
                  "|---|" + "---|" * (len(groups) + 2)]
        num = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
        for row, per in f["sub_fad"].items():
            lines.append(f"| {row} | " + " | ".join(num(per.get(g)) for g in groups)
                         + f" | {num(per.get('mean'))} | {num(f['fad'].get(row))} |")
        lines.append("")
    return "\n".join(lines)


def output_paths(output: str) -> tuple[Path, Path]:
    """``X.json`` -> (X.json, X.md); anything else is a folder holding evaluation.json / evaluation.md."""
    p = Path(str(output))
    if p.suffix.lower() == ".json":
        return p, p.with_suffix(".md")
    return p / "evaluation.json", p / "evaluation.md"


def usage() -> str:
    """The text of ``python evaluate.py --help``."""
    from mgeldm.cli.hydra_args import usage_text

    options = [("+pred_dir=DIR", "the estimates: audio files, paired with ref_dir's by relative path (required)"),
               ("+ref_dir=DIR", "the references (required)"),
               ("+mix_dir=DIR", "the mixtures: the mixture row, si_sdri and logmel_l1_ratio_vs_mix"),
               ("+oracle_dir=DIR", "e.g. the AE round trip of the references: the oracle row"),
               ("+metrics=[a,b]", f"default [{','.join(DEFAULT_METRICS)}]; known: {', '.join(KNOWN_METRICS)}"),
               ("+output=PATH", "X.json (and X.md beside it), or a folder for evaluation.json/.md (required)"),
               ("+sample_rate=HZ", "the rate everything is compared at (default 16000)"),
               ("fad.embedder=NAME", "melstats (default) | vggish (+vggish_weights=FILE) | clap"),
               ("progress=false", "no progress display"),
               ("logmel.<key>=V", "Log-Mel front end; bootstrap.n_boot / bootstrap.seed: the 95 % intervals")]
    examples = ["python evaluate.py +pred_dir=out/pred +ref_dir=data/ref +output=out/evaluation.json",
                "python evaluate.py +pred_dir=out/pred +ref_dir=data/ref +mix_dir=data/mix "
                "\"+metrics=[si_sdr,si_sdri,logmel_l1_ratio_vs_mix]\" +output=out/"]
    return usage_text("python evaluate.py +pred_dir=DIR +ref_dir=DIR +output=PATH [key=value ...]",
                      "Scores estimated stems against references per group (a file's first folder, e.g. bass/), "
                      "with mixture, silence and oracle rows, mean, std and bootstrap intervals.", options, examples)


def run(cfg: Mapping) -> dict:
    """Entry point behind ``evaluate.py``; cfg is the Hydra config (plain Mapping access)."""
    check_config(cfg, RULES)
    get = cfg.get
    if not get("output"):
        raise UserError("+output: missing; expected a .json file or a folder for evaluation.json/.md")
    check_writable_dir(output_paths(get("output"))[0].parent, "+output", get("output"))
    metrics = get("metrics") or list(DEFAULT_METRICS)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.strip("[]").split(",") if m.strip()]
    metrics = [str(m) for m in metrics]
    sample_rate = int(get("sample_rate") or 16000)
    pairs = pair_files(get("pred_dir"), get("ref_dir"), get("mix_dir"), get("oracle_dir"))
    fad_cfg = dict(get("fad") or {})
    factory = None
    if "fad" in metrics:
        from mgeldm.metrics.embedders import build_embedder

        name = str(fad_cfg.get("embedder", "melstats"))
        options = {"weights": get("vggish_weights") or fad_cfg.get("vggish_weights"),
                   "conditioner": fad_cfg.get("clap_conditioner"), "device": fad_cfg.get("device", "cpu")}
        factory = lambda: build_embedder(name, options)  # noqa: E731
    boot = dict(get("bootstrap") or {})
    result = evaluate_pairs(pairs, metrics=metrics, sample_rate=sample_rate,
                            logmel=LogMelConfig.from_mapping(get("logmel"), sample_rate=sample_rate),
                            n_boot=int(boot.get("n_boot", 1000)), seed=int(boot.get("seed", 0)),
                            embedder_factory=factory, progress=bool(get("progress", True)))
    json_path, md_path = output_paths(get("output"))
    write_text_atomic(json_path, json.dumps(result, indent=1))
    write_text_atomic(md_path, markdown(result))
    print(f"wrote {json_path} and {md_path}")
    return result


CLI = hydra_cli(PROG, run, config_name="evaluate", options=OPTIONS, usage=usage)
main, run_config = CLI.main, CLI.run_config

if __name__ == "__main__":
    raise SystemExit(main())
