"""The quickstart's report, and its helper commands for ``scripts/quickstart.sh``.

``python -m recipes.quickstart.report <command> ...``:

- ``prepare``: the held-out (test) songs of the built-in corpus as evaluation folders (:mod:`.evalset`).
- ``init-dit``: an unwrapped MGE-LDM checkpoint with the trained AE and the DiT at initialisation (the
  "untrained" baseline, run through the very same inference and evaluation; :mod:`.baselines`).
- ``oracle``: the reference stems through the AE round trip (``oracle/<stem>/<song>.wav``).
- ``latent``: the latent-space scores of a checkpoint on the evaluation songs.
- ``prompts``: the prompts of a run as a Hydra list (canonical or paraphrases); ``all``: those two lists and the
  demo prompts of partial_gen and total_gen, one per line (:mod:`.texts`).
- ``table``: the table of every text a run embeds, embedded with MiniLM on the CPU (:mod:`.texts`; the committed
  ``recipes/quickstart/text_embeddings.npz`` by default); ``--check``: only say whether it holds them all.
- ``collect``: copies the source-extraction outputs of an ``infer.py`` run into ``<dest>/<stem>/<song>.wav``
  (the layout ``evaluate.py`` pairs with ``ref/``; :mod:`.runs`).
- ``report``: ``quickstart_report.json`` / ``.md`` from the ``evaluate.py`` results and the extraction runs (the
  trained DiT's, its paraphrase run and the untrained DiT's), and ``extraction_examples.png`` (:mod:`.figures`).

Prompt accuracy: an extraction is "right" when its Log-Mel L1 distance to the prompted stem is smaller than
to every other stem of the song (the song's stems, not the mixture, are the candidates). Every Log-Mel figure is
floored at the excerpt's floor, ``floor_db_below_mix_peak`` dB under the mel peak of the song's mixture (the
defaults of ``configs/evaluate.yaml``), and comes with its ``_absfloor`` twin, floored at the absolute ``floor`` alone
(:mod:`mgeldm.metrics.logmel`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgeldm.audio import SAMPLE_RATE
from mgeldm.cli.boundary import run_tool
from mgeldm.files import write_text_atomic
from mgeldm.metrics.closest import share
from mgeldm.metrics.logmel import ABSFLOOR, LogMelConfig
from recipes.quickstart.evalset import PARAPHRASES, paraphrase_list, prompt_list, read_songs, stem_folder

PROG = "python -m recipes.quickstart.report"
RATIO_NAMES = (
    "logmel_l1_ratio_vs_mix",
    "untrained_logmel_l1_ratio_vs_mix",
    "oracle_logmel_l1_ratio_vs_mix",
    "silence_logmel_l1_ratio_vs_mix",
)
ACCURACY_NAMES = ("prompt_accuracy", "untrained_prompt_accuracy", "oracle_prompt_accuracy", "paraphrase_accuracy")
FLOORS = ("", ABSFLOOR)  # the excerpt's floor (the names as they are) and the absolute floor alone
# every figure of the report, overall and per stem (the latent scores come on top when given)
METRIC_NAMES = tuple(m + f for m in RATIO_NAMES + ACCURACY_NAMES for f in FLOORS) + (
    "si_sdr_improvement_db",
    "oracle_si_sdr_improvement_db",
)
__all__ = [
    "METRIC_NAMES",
    "PARAPHRASES",
    "TARGETS",
    "build_report",
    "markdown",
    "main",
    "paraphrase_list",
    "prompt_list",
]


def _row_mean(block: Mapping, row: str, metric: str) -> float:
    value = ((block.get("rows") or {}).get(row) or {}).get(metric) or {}
    mean = value.get("mean")
    return float(mean) if mean is not None else float("nan")


LATENT_KEYS = (
    "latent_prompt_accuracy",
    "latent_rel_mse",
    "regressor_latent_prompt_accuracy",
    "regressor_latent_rel_mse",
    "x0_error_t0.05",
    "x0_error_t0.05_uncond",
    "x0_error_t0.4",
    "x0_error_t0.4_uncond",
    "x0_error_t0.8",
    "x0_error_t0.8_uncond",
    "x0_error_t1",
    "x0_error_t1_uncond",
)


def _metrics(
    block: Mapping, ublock: Mapping, hits: Mapping[str, Sequence[bool]], lat: Mapping[str, Any]
) -> dict[str, float]:
    """The report's numbers of one group (a stem class, or all): the evaluation rows under both floors, the
    accuracies (``hits``: accuracy name -> that group's hits) and the latent scores."""
    out = {k: float(lat[k]) for k in LATENT_KEYS if k in lat}
    for f in FLOORS:
        ratio = "logmel_l1_ratio_vs_mix" + f
        out.update(
            {
                ratio: _row_mean(block, "model", ratio),
                "untrained_" + ratio: _row_mean(ublock, "model", ratio),
                "oracle_" + ratio: _row_mean(block, "oracle", ratio),
                "silence_" + ratio: _row_mean(block, "silence", ratio),
            }
        )
    out.update({m + f: share(hits.get(m + f, [])) for m in ACCURACY_NAMES for f in FLOORS})
    out.update(
        {
            "si_sdr_improvement_db": _row_mean(block, "model", "si_sdri"),
            "oracle_si_sdr_improvement_db": _row_mean(block, "oracle", "si_sdri"),
        }
    )
    return out


def _flat(hits: Mapping[str, list[bool]]) -> list[bool]:
    return [h for v in hits.values() for h in v]


def accuracy_hits(prefix: str, hits: Mapping[str, Mapping[str, list[bool]]]) -> dict[str, Mapping[str, list[bool]]]:
    """``{floor suffix: {label: hits}}`` (:mod:`.runs`) as ``{accuracy name: {label: hits}}``, e.g. with the prefix
    ``prompt_accuracy``: ``prompt_accuracy`` and ``prompt_accuracy_absfloor``."""
    return {prefix + suffix: per_label for suffix, per_label in hits.items()}


def build_report(
    *,
    evaluation: Mapping,
    untrained: Mapping,
    hits: Mapping[str, Mapping[str, list[bool]]],
    stage_seconds: Mapping[str, float],
    wall_seconds: float,
    n_songs: int,
    latent: Mapping[str, Any] | None = None,
) -> dict:
    """The report's JSON: every figure overall and per stem, and the targets. ``hits``: per accuracy name of
    :data:`ACCURACY_NAMES` (and its ``_absfloor`` twin), ``{stem label: one bool per pair}``; ``latent``: the
    latent scores (overall and the per-stem accuracy and MSE)."""
    label_of = {stem_folder(label): label for per_label in hits.values() for label in per_label}
    latent = latent or {}
    per_stem = {}
    for group, block in sorted(evaluation["groups"].items()):
        label = label_of.get(group, group)
        per_stem[label] = _metrics(
            block,
            untrained["groups"].get(group, {}),
            {name: per_label.get(label, []) for name, per_label in hits.items()},
            (latent.get("per_stem") or {}).get(label, {}),
        )
    overall = _metrics(
        evaluation["overall"],
        untrained["overall"],
        {name: _flat(per_label) for name, per_label in hits.items()},
        latent,
    )
    report = {
        "wall_seconds": float(wall_seconds),
        **overall,
        "per_stem": per_stem,
        "n_songs": int(n_songs),
        "n_pairs": int(evaluation["n_files"]),
        "stage_seconds": {k: float(v) for k, v in stage_seconds.items()},
    }
    if "regressor_steps" in latent:
        report["regressor_steps"] = int(latent["regressor_steps"])
    report["targets"] = targets(report)
    return report


@dataclass(frozen=True)
class Target:
    """``metric op bound``, overall or for every stem class (its worst class)."""

    metric: str
    op: str
    bound: float | str  # a number, or the name of the report's figure that is the bar (the regressor's)
    every_stem: bool = False

    @property
    def name(self) -> str:
        bar = f" vs {self.bound}" if isinstance(self.bound, str) else ""
        return self.metric + bar + (" (every stem class)" if self.every_stem else "")

    def bar(self, report: Mapping) -> float:
        return float(report.get(self.bound, math.nan)) if isinstance(self.bound, str) else float(self.bound)

    def value(self, report: Mapping) -> float:
        if not self.every_stem:
            return float(report.get(self.metric, math.nan))
        values = [v[self.metric] for v in report["per_stem"].values() if not math.isnan(v.get(self.metric, math.nan))]
        worst = max if self.op.startswith("<") else min
        return float(worst(values)) if values else math.nan

    def met(self, report: Mapping) -> bool:
        value, bar = self.value(report), self.bar(report)
        return not (math.isnan(value) or math.isnan(bar)) and _OPS[self.op](value, bar)


_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b}
TARGETS = (  # the targets of the full CPU run (held-out songs); the accuracies under the excerpt's floor
    Target("latent_prompt_accuracy", ">=", 0.9),
    Target("latent_rel_mse", "<=", 0.5),
    Target("latent_rel_mse", "<=", 0.7, every_stem=True),
    Target("prompt_accuracy", ">=", 0.85),
    Target("oracle_prompt_accuracy", ">=", 0.95),
    Target("paraphrase_accuracy", ">=", 0.8),
    Target("si_sdr_improvement_db", ">", 0.0),
    Target("latent_prompt_accuracy", ">=", "regressor_latent_prompt_accuracy"),  # the conv regressor, same samples
    Target("latent_rel_mse", "<=", "regressor_latent_rel_mse"),
)


def targets(report: Mapping) -> dict[str, dict[str, Any]]:
    """Per target: its text, the value reached (the worst stem class's for a per-stem target) and whether met."""
    return {
        t.name: {"target": f"{t.op} {_bound_text(t, report)}", "value": t.value(report), "met": t.met(report)}
        for t in TARGETS
    }


def _bound_text(t: Target, report: Mapping) -> str:
    return f"{t.bound} ({_num(t.bar(report))})" if isinstance(t.bound, str) else f"{t.bound:g}"


def _num(v: float) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _table(names: Sequence[str], report: Mapping) -> list[str]:
    """A markdown table: one row for all pairs and one per stem class, one column per metric of ``names``."""
    return [
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| **all** | " + " | ".join(_num(report.get(m)) for m in names) + " |",
    ] + [
        f"| {label} | " + " | ".join(_num(vals.get(m)) for m in names) + " |"
        for label, vals in report["per_stem"].items()
    ]


def _accuracy_section(report: Mapping) -> list[str]:
    names = [
        k
        for k in (
            "latent_prompt_accuracy",
            "latent_rel_mse",
            "regressor_latent_prompt_accuracy",
            "regressor_latent_rel_mse",
        )
        if k in report
    ]
    names += [m + f for m in ACCURACY_NAMES for f in FLOORS]
    return [
        "",
        "## Prompt accuracy per stem class",
        "",
        "Latent scores compare the extracted source latent with the true stems' AE latents (the decoder cannot "
        "cap them); the audio accuracies are under the excerpt's floor and, `_absfloor`, the absolute floor "
        "alone; `oracle_`: the true stems through the AE round trip, the most any extractor can reach in audio "
        "with this AE.",
        "",
    ] + _table(names, report)


def _latent_section(report: Mapping) -> list[str]:
    times = [k[len("x0_error_t") :] for k in report if k.startswith("x0_error_t") and not k.endswith("_uncond")]
    return [
        "",
        "## The DiT's clean estimate",
        "",
        "x0 error: the DiT's clean estimate of the source in one call at diffusion time t (mix given), relative "
        "to silence's error, with the prompt and without.",
        "",
        "| t | " + " | ".join(times) + " |",
        "|---|" + "---|" * len(times),
        "| x0 error, prompt | " + " | ".join(_num(report[f"x0_error_t{t}"]) for t in times) + " |",
        "| x0 error, no condition | " + " | ".join(_num(report[f"x0_error_t{t}_uncond"]) for t in times) + " |",
    ]


def _closing_sections(report: Mapping, extra: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Targets (full run)", "", "| metric | target | reached |", "|---|---|---|"]
    lines += [
        f"| {name} | {t['target']} | {'yes' if t['met'] else 'no'} ({_num(t['value'])}) |"
        for name, t in report["targets"].items()
    ]
    if extra.get("examples"):
        lines += [
            "",
            "## Extraction examples",
            "",
            "Per stem class, one song: the mixture, the true stem and the extraction as the scores see them "
            "(log-mel, dB re the song's mixture peak down to the floor).",
            "",
            f"![extraction examples]({extra['examples']})",
        ]
    lines += _training_lines(report)
    lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["stage_seconds"].items()]
    if extra.get("paraphrases"):
        lines += ["", "## Paraphrases (never seen in training)", ""]
        lines += [f"- {label}: " + "; ".join(f'"{p}"' for p in ps) for label, ps in extra["paraphrases"].items()]
    if extra.get("files"):
        lines += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in extra["files"].items()]
    return lines


def _training_lines(report: Mapping) -> list[str]:
    """Each training stage's budget and rate, the checkpoint unwrapped, the extraction sampler."""
    training, lines = report.get("training") or {}, []
    rows = [(name, training[k]) for k, name in (("ae", "autoencoder"), ("dit", "DiT")) if k in training]
    if rows:
        lines += [
            "",
            "## Training (budgets in steps)",
            "",
            "| stage | steps | seconds | steps/s |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {r['steps']:,} | {r['seconds']:.0f} | {_num(r.get('steps_per_second'))} |" for name, r in rows
        ]
    if "regressor_steps" in report:
        lines += ["", f"The conv regressor (the bar) trained on the DiT's first {report['regressor_steps']:,} batches."]
    if "unwrapped" in training:
        u = training["unwrapped"]
        lines += [
            "",
            f"Unwrapped: `{u['checkpoint']}` (step {u['step']:,}), the best {u['metric']} "
            f"({_num(u['value'])}) of the monitor on the validation songs.",
        ]
    if "extraction_sampler" in report:
        x = report["extraction_sampler"]
        lines += [
            "",
            f"Extraction sampler of every score: {x['steps']} step(s), CFG {x['cfg_scale']:g}, "
            f"{x['overlap_seconds']:g} s overlap.",
        ]
    return lines


def markdown(report: Mapping, extra: Mapping[str, Any]) -> str:
    cfg = LogMelConfig()  # the report's floors (runs.floor_configs): configs/evaluate.yaml's defaults
    lines = [
        "# MGE-LDM quickstart report",
        "",
        f"{report['n_songs']} held-out songs, {report['n_pairs']} (song, stem) pairs; wall time "
        f"{report['wall_seconds']:.0f} s ({extra.get('mode', '')}).",
        "",
        "Log-Mel L1 ratio = Log-Mel L1(estimate, true stem) / Log-Mel L1(mixture, true stem), mean over pairs "
        "(lower is better; the mixture itself scores 1). Prompt accuracy: share of pairs whose extraction is "
        "closer (Log-Mel L1) to the prompted stem than to every other stem of the song; paraphrase accuracy: "
        f"the same with {extra.get('n_paraphrases', 5)} wordings per stem never seen in training, on the first "
        f"{extra.get('n_para_songs', report['n_songs'])} songs. Log-Mel magnitudes are floored "
        f"{cfg.floor_db_below_mix_peak:g} dB under the mel peak of the song's mixture (estimate, true stem and "
        "mixture alike: a faint noise floor in a silent stretch costs what a listener hears of it); the "
        f"`_absfloor` figures floor them at {cfg.floor:g} instead.",
        "",
        *_table(RATIO_NAMES + ("si_sdr_improvement_db", "oracle_si_sdr_improvement_db"), report),
    ]
    lines += _accuracy_section(report)
    lines += [
        "",
        "## Log-Mel ratios under the absolute floor",
        "",
        *_table([m + ABSFLOOR for m in RATIO_NAMES], report),
    ]
    if any(k.startswith("x0_error_t") for k in report):
        lines += _latent_section(report)
    return "\n".join(lines + _closing_sections(report, extra)) + "\n"


def training_record(runs: str | None, unwrapped: str | None) -> dict[str, Any]:
    """Each training stage's steps, seconds and steps/s (``<runs>/<stage>/train_summary.json``), the regressor's
    steps, and which DiT checkpoint was unwrapped (``<runs>/dit/checkpoints/best.json``)."""
    from mgeldm.checkpoints import BEST_JSON

    record: dict[str, Any] = {}
    if not runs:
        return record
    for stage in ("ae", "dit"):
        path = Path(runs) / stage / "train_summary.json"
        if path.is_file():
            record[stage] = json.loads(path.read_text())
    best = Path(runs) / "dit" / "checkpoints" / BEST_JSON
    if best.is_file():
        info = json.loads(best.read_text())
        record["unwrapped"] = {
            "checkpoint": info["file"],
            "step": info["step"],
            "metric": info["metric"],
            "value": info["value"],
            "file": unwrapped,
        }
    return record


def read_stages(path: str | None) -> dict[str, float]:
    stages: dict[str, float] = {}
    if path and Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            if "\t" in line:
                name, sec = line.split("\t", 1)
                stages[name] = stages.get(name, 0.0) + float(sec)
    return stages


# --------------------------------------------------------------------------------------------- the commands


def _classes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _hydra_str(prompt: str) -> str:
    return "'" + prompt.replace("'", "") + "'"


def _hydra_list(prompts: Sequence[str]) -> str:
    return "[" + ",".join(_hydra_str(p) for p in prompts) + "]"


def _prepare(args: argparse.Namespace) -> None:
    from recipes.quickstart.evalset import prepare

    songs = prepare(
        args.corpus,
        args.eval_dir,
        args.n_songs,
        args.sample_rate,
        pngs=not args.no_png,
        seconds=args.seconds,
        para_songs=args.para_songs,
        split=args.split,
    )
    print(f"{args.eval_dir}: {len(songs)} songs, {sum(len(s['labels']) for s in songs.values())} stems")


def _init_dit(args: argparse.Namespace) -> None:
    from recipes.quickstart.baselines import init_dit

    print(f"wrote {init_dit(args.config_name, args.ae, args.out, args.seed, args.overrides, args.like)}")


def _oracle(args: argparse.Namespace) -> None:
    from recipes.quickstart.baselines import oracle

    print(f"{oracle(args.config_name, args.ae, args.eval_dir, args.sample_rate, args.overrides)} oracle stems")


def _latent(args: argparse.Namespace) -> None:
    from recipes.quickstart.baselines import latent

    scores = latent(
        args.ckpt,
        args.eval_dir,
        args.sample_rate,
        steps=args.steps,
        cfg_scale=args.cfg_scale,
        overlap=args.overlap,
        device=args.device,
        regressor=args.regressor,
    )
    write_text_atomic(Path(args.output), json.dumps(scores, indent=1) + "\n")
    print(json.dumps({k: v for k, v in scores.items() if k != "per_stem"}))


def _prompts(args: argparse.Namespace) -> None:
    from recipes.quickstart.texts import DEMO_PROMPTS

    classes = _classes(args.classes)
    lists = {"canonical": prompt_list, "paraphrase": paraphrase_list}
    if args.kind in lists:
        print(_hydra_list([p for _, p in lists[args.kind](classes)]))
        return
    for kind in lists:  # all: one line each, in this order (scripts/quickstart.sh reads them so)
        print(_hydra_list([p for _, p in lists[kind](classes)]))
    for prompt in DEMO_PROMPTS.values():
        print(_hydra_str(prompt))


def _text_table(args: argparse.Namespace) -> None:
    from mgeldm.errors import UserError
    from recipes.quickstart.texts import missing_texts, table_path, write_table

    classes = _classes(args.classes)
    if args.check:
        missing = missing_texts(classes, args.out)
        if missing:
            raise UserError(
                f"{args.out or table_path()}: no embedding for {missing[0]!r} ({len(missing)} texts "
                f"missing); write it again: {PROG} table --classes '{args.classes}'"
            )
        print(f"{args.out or table_path()}: holds every text of the run")
        return
    path, n = write_table(classes, args.out)
    print(f"wrote {path}: {n} texts, {path.stat().st_size} bytes")


def _collect(args: argparse.Namespace) -> None:
    from recipes.quickstart.runs import collect

    labels = [label for label, _ in prompt_list(_classes(args.classes))]
    print(f"{collect(args.run_dir, args.eval_dir, args.dest, labels)} extractions -> {args.dest}")


def _hits(args: argparse.Namespace, classes: Sequence[str]) -> dict[str, Mapping[str, list[bool]]]:
    """Every accuracy's hits (:func:`accuracy_hits`) from the runs and the oracle stems."""
    from recipes.quickstart.runs import accuracy, oracle_accuracy

    canonical, sr = prompt_list(classes), args.sample_rate
    return {
        **accuracy_hits("prompt_accuracy", accuracy(args.extract_run, args.eval_dir, canonical, sr)),
        **accuracy_hits("untrained_prompt_accuracy", accuracy(args.untrained_run, args.eval_dir, canonical, sr)),
        **accuracy_hits(
            "paraphrase_accuracy",
            accuracy(args.paraphrase_run, args.eval_dir, paraphrase_list(classes), sr, mix_folder="mix_para"),
        ),
        **accuracy_hits("oracle_prompt_accuracy", oracle_accuracy(args.eval_dir, sr)),
    }


def _report(args: argparse.Namespace) -> None:
    from recipes.quickstart.figures import extraction_examples
    from recipes.quickstart.runs import latest_run

    classes = _classes(args.classes)
    report = build_report(
        evaluation=json.loads(Path(args.evaluation).read_text()),
        untrained=json.loads(Path(args.untrained_evaluation).read_text()),
        hits=_hits(args, classes),
        stage_seconds=read_stages(args.stages),
        wall_seconds=time.time() - args.start_time,
        n_songs=len(read_songs(args.eval_dir)),
        latent=json.loads(Path(args.latent_scores).read_text()) if args.latent_scores else None,
    )
    report["training"] = training_record(args.runs, args.unwrapped)
    if args.sampler:
        report["extraction_sampler"] = {
            "steps": int(args.sampler[0]),
            "cfg_scale": float(args.sampler[1]),
            "overlap_seconds": float(args.sampler[2]),
        }
    out = Path(args.out)
    write_text_atomic(out / "quickstart_report.json", json.dumps(report, indent=1) + "\n")
    png = extraction_examples(args.eval_dir, classes, out / "extraction_examples.png", args.sample_rate)
    n_para = len(list((Path(args.eval_dir) / "mix_para").glob("*.wav")))
    extra = {
        "mode": args.mode,
        "n_paraphrases": 5,
        "n_para_songs": n_para,
        "examples": png and png.name,
        "paraphrases": {c: list(PARAPHRASES[c]) for c in classes if c in PARAPHRASES},
        "files": {
            "evaluation (trained)": args.evaluation,
            "evaluation (untrained)": args.untrained_evaluation,
            "source extraction run": str(latest_run(args.extract_run)),
            "untrained extraction run": str(latest_run(args.untrained_run)),
            "paraphrase run": str(latest_run(args.paraphrase_run)),
        },
    }
    write_text_atomic(out / "quickstart_report.md", markdown(report, extra))
    print((out / "quickstart_report.md").read_text())


def _extraction_settings(args: argparse.Namespace) -> None:
    """The report's extraction sampler: the monitor's of ``configs/quickstart_dit.yaml`` (with the run's overrides)."""
    from mgeldm.config import compose_config

    monitor = compose_config(args.config_name, args.overrides)["trainer"]["monitor"]
    print(int(monitor["steps"]), float(monitor["cfg_scale"]), float(monitor["overlap_seconds"]))


def _best_checkpoint(args: argparse.Namespace) -> None:
    from mgeldm.evaluation.monitor import best_checkpoint

    print(best_checkpoint(args.folder))


COMMANDS = {
    "prepare": _prepare,
    "init-dit": _init_dit,
    "oracle": _oracle,
    "latent": _latent,
    "prompts": _prompts,
    "table": _text_table,
    "collect": _collect,
    "report": _report,
    "extraction-settings": _extraction_settings,
    "best-checkpoint": _best_checkpoint,
}


def _add_evaluation_commands(sub) -> None:
    a = sub.add_parser("prepare")
    a.add_argument("--corpus", required=True)
    a.add_argument("--eval-dir", required=True)
    a.add_argument("--n-songs", type=int, default=8)
    a.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    a.add_argument("--no-png", action="store_true")
    a.add_argument("--seconds", type=float, default=None, help="evaluate an excerpt of this length per song")
    a.add_argument("--para-songs", type=int, default=None, help="songs of the paraphrase runs (mix_para/)")
    a.add_argument("--split", default="test", choices=("test", "valid"), help="which held-out songs (default test)")
    a = sub.add_parser("latent", help="latent-space extraction scores of an unwrapped MGE-LDM on the eval songs")
    a.add_argument("--ckpt", required=True)
    a.add_argument("--eval-dir", required=True)
    a.add_argument("--output", required=True, help="the JSON file to write")
    a.add_argument("--steps", type=int, default=4)
    a.add_argument("--cfg-scale", type=float, default=2.0)
    a.add_argument("--overlap", type=float, default=0.128)
    a.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    a.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    a.add_argument("--regressor", default=None, help="a `diagnose.py regressor` file, scored on the same songs")


def _add_baseline_commands(sub) -> None:
    a = sub.add_parser("init-dit")
    a.add_argument("--config-name", default="quickstart_dit")
    a.add_argument("--ae", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--like", default=None, help="a trained unwrapped model whose config the baseline takes")
    a.add_argument("overrides", nargs="*")
    a = sub.add_parser("oracle")
    a.add_argument("--config-name", default="quickstart_ae")
    a.add_argument("--ae", required=True)
    a.add_argument("--eval-dir", required=True)
    a.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    a.add_argument("overrides", nargs="*")


def _add_run_commands(sub) -> None:
    a = sub.add_parser(
        "prompts",
        help="print the prompts of a run as a Hydra list (canonical | paraphrase), or "
        "both lists and the two demo prompts, one per line (all)",
    )
    a.add_argument("kind", choices=("canonical", "paraphrase", "all"))
    a.add_argument("--classes", required=True)
    a = sub.add_parser(
        "extraction-settings",
        help="print the extraction sampler of the report (steps, CFG, overlap "
        "seconds): the monitor's in the DiT config",
    )
    a.add_argument("--config-name", default="quickstart_dit")
    a.add_argument("overrides", nargs="*")
    a = sub.add_parser("best-checkpoint", help="print the checkpoint a run's best.json names")
    a.add_argument("folder", help="a DiT run's checkpoints/ folder")
    a = sub.add_parser("table", help="write the table of every text a run embeds (MiniLM, on the CPU)")
    a.add_argument("--classes", required=True)
    a.add_argument(
        "--out",
        default=None,
        help="the .npz to write (default: the committed table of configs/model/conditioner/quickstart_table.yaml)",
    )
    a.add_argument("--check", action="store_true", help="write nothing; fail unless the table holds every text")
    a = sub.add_parser("collect")
    for flag in ("--run-dir", "--eval-dir", "--dest", "--classes"):
        a.add_argument(flag, required=True)
    _add_report_command(sub)


def _add_report_command(sub) -> None:
    a = sub.add_parser("report")
    for flag in (
        "--out",
        "--eval-dir",
        "--evaluation",
        "--untrained-evaluation",
        "--extract-run",
        "--paraphrase-run",
        "--classes",
    ):
        a.add_argument(flag, required=True)
    a.add_argument(
        "--untrained-run",
        required=True,
        help="the infer.py output folder of the untrained DiT's extraction (untrained_prompt_accuracy)",
    )
    a.add_argument("--stages", default=None)
    a.add_argument("--start-time", type=float, required=True, help="epoch seconds when the quickstart started")
    a.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    a.add_argument("--mode", default="")
    a.add_argument("--latent-scores", default=None, help="the JSON written by the `latent` command")
    a.add_argument(
        "--runs",
        default=None,
        help="the runs folder: <runs>/{ae,dit}/train_summary.json (steps, steps/s) "
        "and <runs>/dit/checkpoints/best.json (the checkpoint unwrapped)",
    )
    a.add_argument("--unwrapped", default=None, help="the unwrapped DiT the runs were made with")
    a.add_argument(
        "--sampler",
        nargs=3,
        default=None,
        metavar=("STEPS", "CFG", "OVERLAP"),
        help="the extraction sampler of the runs",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG)
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_evaluation_commands(sub)
    _add_baseline_commands(sub)
    _add_run_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_tool(PROG, lambda: COMMANDS[args.cmd](args))


if __name__ == "__main__":
    raise SystemExit(main())
