"""Scoring separated or generated stems against references, with baseline rows (what ``evaluate.py`` runs).

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

Log-Mel floor: every row of a file is floored at that file's excerpt floor (:mod:`mgeldm.metrics.logmel`):
``logmel.floor_db_below_mix_peak`` dB under the mel peak of its mixture (mix_dir), or of its reference when
no mixture is given (defaults in ``configs/evaluate.yaml``). Each Log-Mel figure comes with its ``_absfloor`` twin
(``logmel_l1_absfloor``, ``logmel_l1_ratio_vs_mix_absfloor``), floored at the absolute ``logmel.floor`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgeldm.audio import SAMPLE_RATE, load_mono
from mgeldm.errors import OptionError, UserError
from mgeldm.metrics.bootstrap import summarize
from mgeldm.metrics.logmel import ABSFLOOR, LogMelConfig, excerpt_floor, mel_l1, mel_magnitudes, ratio_to_baseline
from mgeldm.metrics.sisdr import si_sdr, si_sdr_improvement

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
PER_FILE_METRICS = ("si_sdr", "si_sdri", "logmel_l1", "logmel_l1_ratio_vs_mix", "museval_sdr")
SET_METRICS = ("fad",)
KNOWN_METRICS = PER_FILE_METRICS + SET_METRICS
DEFAULT_METRICS = ("si_sdr", "logmel_l1")
ROWS = ("model", "mixture", "silence", "oracle")
NEEDS_MIX = ("si_sdri", "logmel_l1_ratio_vs_mix")
MEL_METRICS = ("logmel_l1", "logmel_l1_ratio_vs_mix")


def reported_metrics(metrics: Sequence[str]) -> list[str]:
    """The per-file figures of the requested ``metrics``: each Log-Mel one followed by its ``_absfloor`` twin."""
    return [
        name for m in metrics if m in PER_FILE_METRICS for name in ((m, m + ABSFLOOR) if m in MEL_METRICS else (m,))
    ]


@dataclass
class Pair:
    rel: str
    group: str
    pred: Path
    ref: Path
    mix: Path | None = None
    oracle: Path | None = None


# --------------------------------------------------------------------------------------------- pairing


def _audio_files(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in AUDIO_EXTS and not p.name.startswith(".")
    }


def _require_dir(path: str | None, option: str) -> Path:
    if not path:
        raise OptionError(option, "missing; expected a folder of audio files")
    p = Path(str(path))
    if not p.is_dir():
        raise OptionError(option, "not a folder", p)
    return p


def _unpaired(preds: Mapping[str, Path], refs: Mapping[str, Path], pred_root: Path, ref_root: Path) -> None:
    only_pred, only_ref = sorted(set(preds) - set(refs)), sorted(set(refs) - set(preds))
    parts = []
    if only_pred:
        parts.append(f"{len(only_pred)} in {pred_root} without a reference (first: {only_pred[0]})")
    if only_ref:
        parts.append(f"{len(only_ref)} in {ref_root} without a prediction (first: {only_ref[0]})")
    if parts:
        raise UserError("unpaired files: " + "; ".join(parts) + " — files are paired by relative path")


def _baselines(pair: Pair, mix_root: Path | None, oracle_root: Path | None) -> Pair:
    parts = pair.rel.split("/")
    if mix_root is not None:
        pair.mix = next((c for c in (mix_root / pair.rel, mix_root / parts[-1]) if c.is_file()), None)
        if pair.mix is None:
            raise OptionError("mix_dir", f"no mixture for {pair.rel} (looked for {pair.rel} and {parts[-1]})", mix_root)
    if oracle_root is not None:
        pair.oracle = oracle_root / pair.rel
        if not pair.oracle.is_file():
            raise OptionError("oracle_dir", f"no oracle file for {pair.rel}", oracle_root)
    return pair


def pair_files(pred_dir: str, ref_dir: str, mix_dir: str | None = None, oracle_dir: str | None = None) -> list[Pair]:
    """Match predictions and references by relative path; one-line UserError on any unpaired file."""
    pred_root, ref_root = _require_dir(pred_dir, "pred_dir"), _require_dir(ref_dir, "ref_dir")
    preds, refs = _audio_files(pred_root), _audio_files(ref_root)
    if not preds:
        raise OptionError("pred_dir", f"no audio files ({', '.join(AUDIO_EXTS)})", pred_root)
    _unpaired(preds, refs, pred_root, ref_root)
    mix_root = _require_dir(mix_dir, "mix_dir") if mix_dir else None
    oracle_root = _require_dir(oracle_dir, "oracle_dir") if oracle_dir else None
    pairs = []
    for rel in sorted(preds):
        parts = rel.split("/")
        pairs.append(
            _baselines(Pair(rel, parts[0] if len(parts) > 1 else "all", preds[rel], refs[rel]), mix_root, oracle_root)
        )
    return pairs


def align(*signals: torch.Tensor) -> list[torch.Tensor]:
    """Trim every signal to the shortest one (the stated alignment rule)."""
    n = min(s.shape[-1] for s in signals)
    return [s[..., :n] for s in signals]


def pair_signals(pair: Pair, sample_rate: int) -> dict[str, torch.Tensor]:
    """Every signal of a pair (model, ref, mixture, oracle, silence), mono at ``sample_rate``, aligned."""
    files = {"model": pair.pred, "ref": pair.ref, "mixture": pair.mix, "oracle": pair.oracle}
    sig = {row: load_mono(path, sample_rate)[0] for row, path in files.items() if path is not None}
    sig = dict(zip(sig, align(*sig.values())))
    sig["silence"] = torch.zeros_like(sig["ref"])
    return sig


# --------------------------------------------------------------------------------------------- per file


def _museval_sdr(est: torch.Tensor, ref: torch.Tensor, sample_rate: int) -> float:
    try:
        import museval
    except ImportError:
        raise UserError("metric museval_sdr: the museval package is not installed (pip install museval)") from None
    sdr, _, _, _ = museval.evaluate(
        ref.numpy()[None, :, None], est.numpy()[None, :, None], win=sample_rate, hop=sample_rate
    )
    return float(np.nanmedian(sdr))


def _mel_metrics(
    metrics: Sequence[str], mels: Mapping[str, torch.Tensor], floors: Mapping[str, torch.Tensor], row: str
) -> dict[str, float]:
    """Log-Mel L1 of ``row`` and its ratio to the mixture's, from mel spectrograms computed once per signal, under
    each floor of ``floors`` (suffix of the figure's name -> floor)."""
    out = {}
    for suffix, floor in floors.items():
        l1 = float(mel_l1(mels[row], mels["ref"], floor))
        if "logmel_l1" in metrics:
            out["logmel_l1" + suffix] = l1
        if "logmel_l1_ratio_vs_mix" in metrics and "mixture" in mels:
            out["logmel_l1_ratio_vs_mix" + suffix] = ratio_to_baseline(
                l1, float(mel_l1(mels["mixture"], mels["ref"], floor))
            )
    return out


def excerpt_floors(mels: Mapping[str, torch.Tensor], cfg: LogMelConfig) -> dict[str, torch.Tensor]:
    """The floors of one file's signals: the excerpt's (of its mixture, else of its reference) and the absolute one
    (the ``_absfloor`` figures), by the suffix of the figures' names."""
    base = mels.get("mixture", mels["ref"])
    return {"": excerpt_floor(base, cfg), ABSFLOOR: excerpt_floor(base, cfg.absolute())}


def file_metrics(
    metrics: Sequence[str],
    sig: Mapping[str, torch.Tensor],
    row: str,
    sample_rate: int,
    mels: Mapping[str, torch.Tensor],
    floors: Mapping[str, torch.Tensor],
) -> dict[str, float]:
    """Per-file metrics of the estimate ``sig[row]``; ``mels`` holds the mel spectrograms of the signals and
    ``floors`` the file's floors (:func:`excerpt_floors`)."""
    est, ref, mix = sig[row], sig["ref"], sig.get("mixture")
    out: dict[str, float] = {}
    if "si_sdr" in metrics:
        out["si_sdr"] = float(si_sdr(est, ref))
    if "si_sdri" in metrics and mix is not None:
        out["si_sdri"] = float(si_sdr_improvement(est, ref, mix))
    if mels:
        out.update(_mel_metrics(metrics, mels, floors, row))
    if "museval_sdr" in metrics:
        out["museval_sdr"] = _museval_sdr(est, ref, sample_rate)
    return out


# --------------------------------------------------------------------------------------------- the run


@dataclass
class Settings:
    """What an evaluation computes and how it summarises."""

    metrics: Sequence[str] = DEFAULT_METRICS
    sample_rate: int = SAMPLE_RATE
    logmel: LogMelConfig | None = None
    n_boot: int = 1000
    seed: int = 0

    def mel_config(self) -> LogMelConfig:
        cfg = self.logmel or LogMelConfig(sample_rate=self.sample_rate)
        return (
            cfg
            if cfg.sample_rate == self.sample_rate
            else LogMelConfig(**{**cfg.as_dict(), "sample_rate": self.sample_rate})
        )


@dataclass
class _Embeddings:
    """FAD embeddings per (row, group), and of the references per group."""

    embedder: Any
    rows: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    refs: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, sig: Mapping[str, torch.Tensor], group: str, sample_rate: int) -> None:
        for row in ROWS:
            if row in sig:
                self.rows.setdefault((row, group), []).append(self.embedder.embed(sig[row], sample_rate))
        self.refs.setdefault(group, []).append(self.embedder.embed(sig["ref"], sample_rate))


def _check_metrics(pairs: Sequence[Pair], metrics: Sequence[str]) -> None:
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise OptionError("metrics", f"unknown {unknown}; expected some of {list(KNOWN_METRICS)}")
    needs_mix = [m for m in metrics if m in NEEDS_MIX]
    if needs_mix and any(p.mix is None for p in pairs):
        raise OptionError("metrics", f"{needs_mix} need the mixtures: give the folder of mixtures (mix_dir)")


def _score_pair(pair: Pair, settings: Settings, embeddings: _Embeddings | None) -> dict:
    sig = pair_signals(pair, settings.sample_rate)
    cfg = settings.mel_config()
    uses_mel = any(m in settings.metrics for m in MEL_METRICS)
    mels = {k: mel_magnitudes(v, cfg) for k, v in sig.items()} if uses_mel else {}
    floors = excerpt_floors(mels, cfg) if uses_mel else {}
    entry = {"file": pair.rel, "group": pair.group, "samples": int(sig["ref"].shape[-1])}
    for row in ROWS:
        if row in sig:
            entry[row] = file_metrics(settings.metrics, sig, row, settings.sample_rate, mels, floors)
    if embeddings is not None:
        embeddings.add(sig, pair.group, settings.sample_rate)
    return entry


def _table(entries: Sequence[dict], rows: Sequence[str], settings: Settings) -> dict:
    """Per row and per-file metric: mean, std and bootstrap interval over ``entries``."""
    out: dict[str, dict] = {}
    for row in rows:
        out[row] = {}
        for m in reported_metrics(settings.metrics):
            vals = [e[row][m] for e in entries if row in e and m in e[row]]
            if vals:
                out[row][m] = summarize(vals, n_boot=settings.n_boot, seed=settings.seed)
    return out


def _fad_block(emb: _Embeddings, groups: Sequence[str], rows: Sequence[str]) -> dict:
    from mgeldm.metrics.frechet import fad

    def safe_fad(a: list[np.ndarray], b: list[np.ndarray]) -> float | None:
        x, y = np.concatenate(a), np.concatenate(b)
        return fad(x, y) if len(x) >= 2 and len(y) >= 2 else None

    out: dict = {"embedder": emb.embedder.name, "sub_fad": {}, "fad": {}}
    for row in rows:
        per_group = {g: safe_fad(emb.rows[(row, g)], emb.refs[g]) for g in groups if (row, g) in emb.rows}
        vals = [v for v in per_group.values() if v is not None]
        per_group["mean"] = float(np.mean(vals)) if vals else None
        out["sub_fad"][row] = per_group
        out["fad"][row] = safe_fad(
            [e for g in groups for e in emb.rows.get((row, g), [])], [e for g in groups for e in emb.refs[g]]
        )
    return out


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _floor_rule(cfg: LogMelConfig) -> str:
    absolute = f"log10(max(mel, {cfg.floor:g}))"
    if cfg.floor_db_below_mix_peak is None:
        return f"{absolute}, the absolute floor alone (the _absfloor figures too)"
    return (
        f"log10(max(mel, F)), F = max({cfg.floor:g}, the mel peak of the file's mixture (of its reference "
        f"without mix_dir) - {cfg.floor_db_below_mix_peak:g} dB), one F for every row of the file; "
        f"the _absfloor figures: {absolute}"
    )


def _result(per_file: list[dict], pairs: Sequence[Pair], settings: Settings) -> dict:
    groups = sorted({p.group for p in pairs})
    rows = [r for r in ROWS if any(r in e for e in per_file)]
    return {
        "settings": {
            "sample_rate": settings.sample_rate,
            "alignment": "mono down-mix, soxr HQ resampling, then trim to the shortest signal",
            "pairing": "by path relative to pred_dir/ref_dir; group = first folder, else 'all'",
            "logmel": settings.mel_config().as_dict(),
            "logmel_floor": _floor_rule(settings.mel_config()),
            "si_sdr": "zero-mean SI-SDR in dB; undefined (null) for silent estimates or references",
            "bootstrap": {"n_boot": settings.n_boot, "confidence": 0.95, "seed": settings.seed, "method": "percentile"},
            "metrics": list(settings.metrics),
        },
        "n_files": len(per_file),
        "groups": {
            g: {
                "n_files": sum(e["group"] == g for e in per_file),
                "rows": _table([e for e in per_file if e["group"] == g], rows, settings),
            }
            for g in groups
        },
        "overall": {"n_files": len(per_file), "rows": _table(per_file, rows, settings)},
        "per_file": per_file,
    }


def evaluate_pairs(
    pairs: Sequence[Pair],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    sample_rate: int = SAMPLE_RATE,
    logmel: LogMelConfig | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    embedder_factory: Callable[[], object] | None = None,
    progress: bool = False,
) -> dict:
    """Compute every metric for every pair and row; returns the JSON-ready result."""
    from mgeldm.progress import progress_bar

    settings = Settings(list(metrics), sample_rate, logmel, n_boot, seed)
    _check_metrics(pairs, settings.metrics)
    embedder = embedder_factory() if "fad" in metrics and embedder_factory else None
    if "fad" in metrics and embedder is None:
        raise OptionError("metrics", "fad needs an embedder: fad.embedder=vggish|clap|melstats")
    embeddings = _Embeddings(embedder) if embedder is not None else None
    per_file = [
        _score_pair(pair, settings, embeddings)
        for pair in progress_bar(pairs, desc="evaluate", unit="file", disable=not progress)
    ]
    result = _result(per_file, pairs, settings)
    if embeddings is not None:
        result["fad"] = _fad_block(
            embeddings, sorted({p.group for p in pairs}), [r for r in ROWS if any(r in e for e in per_file)]
        )
    return _clean(result)


# --------------------------------------------------------------------------------------------- the report


def _fmt(s: dict | None) -> str:
    if not s or s.get("mean") is None:
        return "—"
    return f"{s['mean']:.3f} ± {s['std']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}] (n={s['n']})"


def _fad_markdown(result: dict) -> list[str]:
    f = result["fad"]
    groups = list(result["groups"])
    lines = [
        f"## FAD ({f['embedder']} embeddings)",
        "",
        "| row | " + " | ".join(f"sub-FAD {g}" for g in groups) + " | sub-FAD mean | FAD all |",
        "|---|" + "---|" * (len(groups) + 2),
    ]

    def num(v: float | None) -> str:
        return "—" if v is None else f"{v:.4f}"

    for row, per in f["sub_fad"].items():
        lines.append(
            f"| {row} | "
            + " | ".join(num(per.get(g)) for g in groups)
            + f" | {num(per.get('mean'))} | {num(f['fad'].get(row))} |"
        )
    return lines + [""]


def markdown(result: dict) -> str:
    """One table per group (and overall): rows = model/baselines, columns = metrics."""
    metrics = reported_metrics(result["settings"]["metrics"])
    lines = [
        "# Evaluation",
        "",
        f"{result['n_files']} files at {result['settings']['sample_rate']} Hz; "
        f"{result['settings']['alignment']}. Cells: mean ± std [bootstrap 95 % CI] (n).",
        "",
    ]
    if any(m in MEL_METRICS for m in metrics):
        lines += [f"Log-Mel floor: {result['settings']['logmel_floor']}.", ""]
    sections = [(f"Stem / prompt: {g}", b) for g, b in result["groups"].items()] + [("Overall", result["overall"])]
    for title, block in sections:
        lines += [f"## {title}", "", "| row | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        for row, vals in block["rows"].items():
            lines.append(f"| {row} | " + " | ".join(_fmt(vals.get(m)) for m in metrics) + " |")
        lines.append("")
    if "fad" in result:
        lines += _fad_markdown(result)
    return "\n".join(lines)


def output_paths(output: str) -> tuple[Path, Path]:
    """``X.json`` -> (X.json, X.md); anything else is a folder holding evaluation.json / evaluation.md."""
    p = Path(str(output))
    if p.suffix.lower() == ".json":
        return p, p.with_suffix(".md")
    return p / "evaluation.json", p / "evaluation.md"
