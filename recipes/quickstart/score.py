"""Score checkpoints on a quickstart's held-out songs: how far does more training take the recipe?

``python -m recipes.quickstart.score dit --eval-dir OUT/eval --output curve.json CKPT [CKPT ...]``
extracts every stem class of every held-out song with each unwrapped MGE-LDM checkpoint (the canonical
prompts, as the report) and writes, per checkpoint, the report's ``logmel_l1_ratio_vs_mix`` and
``prompt_accuracy``, overall and per stem. ``ae`` does the same for unwrapped autoencoder checkpoints with
the oracle ratio and oracle prompt accuracy (the true stems through the AE round trip: the best any extractor
can reach in audio with that AE). ``scripts/quickstart_curve.sh`` trains for
longer with periodic checkpoints and calls this.

The metric is the report's (Log-Mel L1 of ``configs/evaluate.yaml``'s defaults, floored relative to the mel peak
of each song's mixture, ratio to the mixture's distance, closest-stem rule for the accuracy), computed in memory:
the report scores 16-bit wav files, so the two differ by the quantisation only. Each figure also comes with its
absolute-floor twin (``logmel_l1_ratio_vs_mix_absfloor``, ``prompt_accuracy_absfloor``), as in the report.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mgeldm.audio import SAMPLE_RATE
from mgeldm.checkpoints import checkpoint_step
from mgeldm.cli.boundary import run_tool
from mgeldm.config import compose_config
from mgeldm.errors import UserError
from mgeldm.files import write_text_atomic
from mgeldm.metrics.closest import share
from mgeldm.metrics.logmel import ABSFLOOR
from recipes.quickstart.evalset import load_songs, prompt_list
from recipes.quickstart.runs import Hits, add_hits, closest_hits, floor_configs

PROG = "python -m recipes.quickstart.score"

Estimator = Callable[[str, torch.Tensor, Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]


def _summary(ratios: Mapping[str, Mapping[str, list[float]]], hits: Hits, label: str | None = None) -> dict[str, float]:
    """The mean ratio and the accuracy under each floor, of one stem label (or of all when None)."""

    def pick(per_label: Mapping[str, list]) -> list:
        return list(per_label.get(label, [])) if label else [x for v in per_label.values() for x in v]

    out = {}
    for suffix in ratios:
        every = pick(ratios[suffix])
        out["logmel_l1_ratio_vs_mix" + suffix] = sum(every) / len(every)
        out["prompt_accuracy" + suffix] = share(pick(hits.get(suffix, {})))
    return out


def score(
    estimate: Estimator, songs: Mapping[str, tuple[torch.Tensor, Mapping[str, torch.Tensor]]], sample_rate: int
) -> dict[str, Any]:
    """Ratio to the mixture and closest-stem accuracy of ``estimate(song, mix, stems) -> {label: estimate}``, under
    the excerpt's floor and the absolute floor (``_absfloor``)."""
    from mgeldm.metrics.logmel import logmel_l1_ratio_vs_mix

    configs = floor_configs(sample_rate)
    ratios: dict[str, dict[str, list[float]]] = {suffix: {} for suffix in configs}
    hits: Hits = {}
    for song, (mix, stems) in songs.items():
        for label, est in estimate(song, mix, stems).items():
            for suffix, cfg in configs.items():
                ratios[suffix].setdefault(label, []).append(logmel_l1_ratio_vs_mix(est, stems[label], mix, cfg))
            add_hits(hits, label, closest_hits(est, stems, label, mix, sample_rate))
    n_pairs = sum(len(v) for v in ratios[""].values())
    if not n_pairs:
        raise UserError("no (song, stem) pair to score")
    return {
        **_summary(ratios, hits),
        "n_pairs": n_pairs,
        "per_stem": {label: _summary(ratios, hits, label) for label in sorted(ratios[""])},
    }


def dit_estimator(
    ckpt: str,
    cfg: Mapping,
    classes: Sequence[str],
    sample_rate: int,
    *,
    steps: int,
    cfg_scale: float,
    overlap: float,
    seed: int,
    device: str,
) -> Estimator:
    """Source extraction with the canonical prompt of every class (one batched call per song)."""
    from mgeldm.api import MGELDM

    model = MGELDM.from_pretrained(ckpt, model_config=cfg["model"], device=device)
    pairs = prompt_list(classes)

    def estimate(song: str, mix: torch.Tensor, stems: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = (
            model.extract(
                mix[None],
                sample_rate,
                [p for _, p in pairs],
                steps=steps,
                cfg_scale=cfg_scale,
                overlap=overlap,
                seed=seed,
            )["gen_src"]
            .float()
            .cpu()
        )
        return {label: out[k] for k, (label, _) in enumerate(pairs) if label in stems}

    return estimate


ORACLE_KEYS = tuple(
    m + suffix for m in ("logmel_l1_ratio_vs_mix", "prompt_accuracy") for suffix in ("", ABSFLOOR)
)  # an AE row's metrics are the oracle's


def ae_estimator(ckpt: str, cfg: Mapping, sample_rate: int) -> Estimator:
    """The true stems (at ``sample_rate``) through the AE round trip (the oracle of the report)."""
    from mgeldm.api import Autoencoder

    ae = Autoencoder.from_pretrained(ckpt, cfg["model"])
    return lambda song, mix, stems: {label: ae.round_trip(wave, sample_rate) for label, wave in stems.items()}


def score_checkpoints(
    kind: str,
    ckpts: Sequence[str],
    eval_dir: str,
    *,
    config_name: str | None = None,
    classes: Sequence[str] = (),
    sample_rate: int = SAMPLE_RATE,
    steps: int = 4,
    cfg_scale: float = 2.0,
    overlap: float = 0.128,
    seed: int = 0,
    device: str = "cpu",
    overrides: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """One row per checkpoint (``kind`` is ``dit`` or ``ae``), in the order given."""
    if kind not in ("dit", "ae"):
        raise UserError(f"kind {kind!r}: expected dit or ae")
    missing = [c for c in ckpts if not Path(c).is_file()]
    if missing:
        raise UserError(f"{missing[0]}: no such checkpoint file")
    cfg = compose_config(config_name or ("quickstart_dit" if kind == "dit" else "quickstart_ae"), overrides)
    songs = load_songs(eval_dir, sample_rate)
    if kind == "dit" and not classes:
        classes = sorted({label for _, stems in songs.values() for label in stems})
    rows = []
    for ckpt in ckpts:
        if kind == "dit":
            est = dit_estimator(
                ckpt,
                cfg,
                classes,
                sample_rate,
                steps=steps,
                cfg_scale=cfg_scale,
                overlap=overlap,
                seed=seed,
                device=device,
            )
        else:
            est = ae_estimator(ckpt, cfg, sample_rate)
        row = {"checkpoint": str(ckpt), "step": checkpoint_step(ckpt), **score(est, songs, sample_rate)}
        if kind == "ae":
            row = {("oracle_" + k if k in ORACLE_KEYS else k): v for k, v in row.items()}
            row["per_stem"] = {label: {"oracle_" + k: x for k, x in v.items()} for label, v in row["per_stem"].items()}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "per_stem"}), flush=True)
    return rows


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per checkpoint: the overall metrics (each beside its absolute-floor twin), then the ratio of each
    stem class."""
    ratio = "logmel_l1_ratio_vs_mix" if "logmel_l1_ratio_vs_mix" in rows[0] else "oracle_logmel_l1_ratio_vs_mix"
    metrics = [
        m + suffix
        for m in (ratio, "prompt_accuracy", "oracle_prompt_accuracy")
        for suffix in ("", ABSFLOOR)
        if m + suffix in rows[0]
    ]
    labels = sorted({label for r in rows for label in r["per_stem"]})
    head = ["checkpoint", "step", *metrics, *(f"{ratio}: {label}" for label in labels)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [Path(r["checkpoint"]).name, "—" if r["step"] is None else str(r["step"])]
        cells += [f"{r[m]:.3f}" for m in metrics]
        cells += [f"{r['per_stem'][label][ratio]:.3f}" if label in r["per_stem"] else "—" for label in labels]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "kind", choices=("dit", "ae"), help="dit: unwrapped MGE-LDM checkpoints; ae: unwrapped AE checkpoints"
    )
    p.add_argument("ckpts", nargs="+", help="checkpoint files, scored in this order")
    p.add_argument("--eval-dir", required=True, help="a quickstart's <out>/eval")
    p.add_argument("--output", default=None, help="write the rows as JSON here and a markdown table beside it")
    p.add_argument("--config-name", default=None, help="quickstart_dit (dit) / quickstart_ae (ae) by default")
    p.add_argument("--classes", default="", help="comma-separated stem classes to prompt (default: those of the songs)")
    p.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--overlap", type=float, default=0.128, help="seconds of overlap between DiT windows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--override", action="append", default=[], help="a Hydra override of the config (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def work() -> None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        rows = score_checkpoints(
            args.kind,
            args.ckpts,
            args.eval_dir,
            config_name=args.config_name,
            classes=classes,
            sample_rate=args.sample_rate,
            steps=args.steps,
            cfg_scale=args.cfg_scale,
            overlap=args.overlap,
            seed=args.seed,
            device=args.device,
            overrides=args.override,
        )
        if args.output:
            out = Path(args.output)
            write_text_atomic(out, json.dumps(rows, indent=1) + "\n")
            write_text_atomic(out.with_suffix(".md"), markdown(rows))
            print(markdown(rows))

    return run_tool(PROG, work)


if __name__ == "__main__":
    raise SystemExit(main())
