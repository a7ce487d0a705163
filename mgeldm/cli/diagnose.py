"""``python diagnose.py overfit|latents ...``: does a DiT recipe learn? Scores in latent space, with a bar.

``overfit`` trains the configured recipe (the real ``train_dit.py`` run, checkpoints every ``--every`` steps)
on the first ``--songs`` songs of a pre-encoded corpus, then scores every checkpoint on those songs (or on
``--eval-split``) with the latent scores of :mod:`mgeldm.evaluation.latent`. A small FiLM conv regressor
(:mod:`mgeldm.evaluation.baseline`), trained on the same batches, is scored at the same steps: the bar a
recipe has to beat. ``latents`` scores unwrapped or training checkpoints on a pre-encoded split.

    python diagnose.py overfit --config-name quickstart_dit --latents OUT/latents --ae OUT/checkpoints/autoencoder.ckpt
    \\
        --songs 2 --steps 1500 --every 250 --out runs/overfit [-- Hydra overrides of the recipe]
    python diagnose.py latents OUT/checkpoints/mgeldm.ckpt --latents OUT/latents --split valid
    python diagnose.py regressor --config-name quickstart_dit --latents OUT/latents --steps 1500 --out regressor.pt

``regressor`` trains the regressor alone on the first ``--steps`` batches a ``train_dit.py`` run of the same config,
overrides and seed draws (the same samples as that DiT), and saves it for scoring elsewhere (the quickstart report).

One JSON line per checkpoint on stdout; ``overfit`` also writes ``<out>/overfit.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mgeldm.checkpoints import checkpoint_step
from mgeldm.cli.boundary import run_tool
from mgeldm.data.prompts import canonical_prompt
from mgeldm.errors import UserError

PROG = "diagnose.py"


def compose(config_name: str, overrides: Sequence[str]) -> dict[str, Any]:
    from mgeldm.config import compose_config

    return compose_config(config_name, overrides)


# ------------------------------------------------------------------------------------------ data


def _train_entries(cfg: Mapping[str, Any]) -> dict[str, dict]:
    entries = {k: dict(v) for k, v in ((cfg.get("data") or {}).get("train") or {}).items() if v is not None}
    if not entries:
        raise UserError("data.train: the config names no corpus to train on")
    return entries


def eval_songs(cfg: Mapping[str, Any], latents: Path, split: str | None, count: int | None):
    """LatentSongs of the first training corpus: ``split`` (default: the training split), first ``count``."""
    from mgeldm.data.latent_datasets import MixSubmixSourceLatentDataset
    from mgeldm.evaluation.latent import songs_from_corpus
    from mgeldm.models.mgeldm import model_facts

    name, entry = next(iter(_train_entries(cfg).items()))
    folder = Path(entry.get("data_dir") or latents / entry.get("subdir", name))
    split = entry.get("split", "train") if split is None else split
    ds = MixSubmixSourceLatentDataset(
        data_dir=folder,
        split=split,
        segment_length=model_facts(cfg["model"]).window,
        num_examples=1,
        zero_diff_threshold=None,
        num_tracks_debug=count,
        zero_latent_path=str(latents / "zero_latent.npy"),
    )
    return songs_from_corpus(ds.tracks)


def silence_from(latents: Path) -> torch.Tensor:
    import numpy as np

    path = latents / "zero_latent.npy"
    if not path.is_file():
        raise UserError(f"--latents {latents}: no zero_latent.npy (expected the output folder of pre_encode.py)")
    return torch.from_numpy(np.load(path).astype("float32")).reshape(-1, 1)


# ------------------------------------------------------------------------------------------ models


def api_model(state: Mapping[str, torch.Tensor], model_cfg: Mapping[str, Any], conditioner: Any, where: Any):
    from mgeldm.api import MGELDM
    from mgeldm.models.mgeldm import mgeldm_from_state

    return MGELDM(mgeldm_from_state(state, model_cfg, where), conditioner, device="cpu", model_config=model_cfg)


def checkpoint_models(path: Path, conditioner: Any, fallback_cfg: Mapping[str, Any], weights: Sequence[str]):
    """(weights name, API model) for a training checkpoint (``ema`` and/or ``online``) or an unwrapped file."""
    from mgeldm.training.unwrap import checkpoint_kind, load_training_checkpoint, unwrap_state

    ckpt = None
    try:
        ckpt = load_training_checkpoint(path)
    except UserError:
        pass
    if ckpt is not None and checkpoint_kind(ckpt["state_dict"]) == "mgeldm" and "loops" in ckpt:
        cfg = ckpt.get("model_config") if isinstance(ckpt.get("model_config"), dict) else fallback_cfg
        return [
            (w, api_model(unwrap_state(ckpt, "mgeldm", use_ema=w == "ema", path=path), cfg, conditioner, path))
            for w in weights
        ]
    from mgeldm.checkpoints import read_state_dict
    from mgeldm.model_config import checkpoint_model_config

    cfg = checkpoint_model_config(path, fallback_cfg)
    return [("file", api_model(read_state_dict(path), cfg, conditioner, path))]


def build_conditioner(model_cfg: Mapping[str, Any]):
    from mgeldm.model_config import conditioner_node
    from mgeldm.models.conditioners import build_conditioner as build

    node = conditioner_node(model_cfg)
    if node is None:
        raise UserError("model config: no conditioner node; prompts cannot be embedded")
    return build(node, device="cpu")


def score_row(model: Any, songs, silence: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    from mgeldm.evaluation.latent import latent_scores

    scores = latent_scores(
        model,
        songs,
        canonical_prompt,
        steps=args.sample_steps,
        cfg_scale=args.cfg_scale,
        overlap=args.overlap,
        seed=args.seed,
        silence=silence,
    )
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}


# ------------------------------------------------------------------------------------------ overfit


def overfit_config(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    overrides = [
        f"save_dir={out / 'run'}",
        f"data.data_dir={args.latents}",
        f"autoencoder_ckpt_path={args.ae}",
        f"trainer.batch_size={args.batch}",
        f"trainer.pl_trainer.max_steps={args.steps}",
        "trainer.pl_trainer.max_time=null",
        "trainer.pl_trainer.max_epochs=-1",
        f"trainer.checkpoint_every_n_steps={args.every}",
        "trainer.save_top_k=-1",
        "trainer.demo.every_n_steps=0",
        "trainer.monitor.every_n_steps=0",
        "logger=csv",
        f"++seed={args.seed}",
        "ckpt_path=null",
        *args.overrides,
    ]
    cfg = compose(args.config_name, overrides)
    for entry in cfg["data"]["train"].values():
        if entry is not None:
            entry["num_tracks_debug"] = int(args.songs)
    cfg["data"].pop("valid", None)
    return cfg


def baseline_batches(cfg: Mapping[str, Any], steps: int) -> Iterator[dict]:
    """The first ``steps`` batches of the training stream (the same datasets and order as the DiT's run)."""
    from mgeldm.cli.train import make_loader
    from mgeldm.cli.train_dit import build_datasets

    train_set, _ = build_datasets(cfg, mix_only=False, seed=int(cfg["seed"]), ae_hash=None)
    for i, batch in enumerate(make_loader(train_set, dict(cfg["trainer"]))):
        if i >= steps:
            return
        yield batch


def run_baseline(cfg: Mapping[str, Any], conditioner: Any, songs, silence, stats, args) -> dict[int, dict]:
    """Train the regressor on the DiT's batches; its scores at every ``--every`` steps."""
    from mgeldm.evaluation.baseline import regressor_estimates, train_regressor
    from mgeldm.evaluation.latent import score_estimates

    rows = {}

    def score(step: int, net) -> None:
        est = regressor_estimates(net, stats, songs, conditioner.embed_text, canonical_prompt)
        scores = score_estimates(songs, est, silence)
        rows[step] = {k: round(scores[k], 4) for k in ("latent_prompt_accuracy", "latent_rel_mse")}

    train_regressor(
        baseline_batches(cfg, args.steps),
        stats,
        conditioner,
        cond_dim=int(cfg["model"]["MGELDM"]["global_cond_dim"]),
        seed=args.seed,
        every=args.every,
        on_checkpoint=score,
    )
    return rows


def regressor_cmd(args: argparse.Namespace) -> None:
    """Train the regressor on the DiT run's batches (config, overrides and seed alike) and save it."""
    from mgeldm.cli.train_dit import build_datasets
    from mgeldm.data.latent_stats import measure_track_stats
    from mgeldm.evaluation.baseline import save_regressor, train_regressor
    from mgeldm.training.callbacks import write_line

    sizes = [f"trainer.batch_size={args.batch}"] if args.batch else []
    cfg = compose(args.config_name, [f"data.data_dir={args.latents}", *sizes, f"++seed={args.seed}", *args.overrides])
    steps = args.steps or int(cfg["trainer"]["pl_trainer"]["max_steps"])
    conditioner = build_conditioner(cfg["model"])
    train_set, _ = build_datasets(cfg, mix_only=False, seed=int(cfg["seed"]), ae_hash=None)
    stats = measure_track_stats(train_set, 256)
    start = time.perf_counter()

    def progress(step: int, _net) -> None:
        rate = step / max(time.perf_counter() - start, 1e-9)
        write_line(PROG, f"regressor step {step:,}/{steps:,} | {rate:.2f} steps/s")

    net, _ = train_regressor(
        baseline_batches(cfg, steps),
        stats,
        conditioner,
        cond_dim=int(cfg["model"]["MGELDM"]["global_cond_dim"]),
        seed=args.seed,
        every=max(1, steps // 10),
        on_checkpoint=progress,
        device=args.device,
    )
    save_regressor(args.out, net, stats, steps=steps)
    write_line(PROG, f"regressor: {steps:,} steps in {time.perf_counter() - start:.1f} s -> {args.out}")


def overfit(args: argparse.Namespace) -> list[dict[str, Any]]:
    from mgeldm.cli.train_dit import run as train_dit

    start = time.perf_counter()
    cfg = overfit_config(args)
    run_dir = Path(args.out) / "run"
    if (run_dir / "checkpoints").exists():
        raise UserError(f"--out {args.out}: holds an earlier run ({run_dir}); choose a new folder")
    latents = Path(args.latents)
    silence = silence_from(latents)
    train_dit(cfg)
    trained_cfg = json.loads(json.dumps(cfg))
    ckpts = sorted((p for p in (run_dir / "checkpoints").glob("step*.ckpt")), key=lambda p: checkpoint_step(p) or 0)
    conditioner = build_conditioner(cfg["model"])
    songs = eval_songs(cfg, latents, args.eval_split, args.eval_songs if args.eval_split else args.songs)
    rows = []
    for path in ckpts:
        for weights, model in checkpoint_models(path, conditioner, trained_cfg["model"], args.weights):
            row = {"step": checkpoint_step(path), "weights": weights, **score_row(model, songs, silence, args)}
            print(json.dumps({k: v for k, v in row.items() if k != "per_stem"}), flush=True)
            rows.append(row)
    if args.baseline:
        from mgeldm.cli.train_dit import build_datasets
        from mgeldm.data.latent_stats import measure_track_stats

        train_set, _ = build_datasets(cfg, mix_only=False, seed=int(cfg["seed"]), ae_hash=None)
        stats = measure_track_stats(train_set, 256)
        for step, scores in run_baseline(cfg, conditioner, songs, silence, stats, args).items():
            row = {"step": step, "weights": "baseline", **scores}
            print(json.dumps(row), flush=True)
            rows.append(row)
    summary = {
        "config_name": args.config_name,
        "overrides": args.overrides,
        "songs": args.songs,
        "steps": args.steps,
        "batch": args.batch,
        "seed": args.seed,
        "eval_split": args.eval_split,
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    from mgeldm.files import write_text_atomic

    write_text_atomic(Path(args.out) / "overfit.json", json.dumps(summary, indent=1) + "\n")
    return rows


def latents_cmd(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Score checkpoints and regressor files on a pre-encoded split; one JSON line each."""
    if not args.checkpoints and not args.regressor:
        raise UserError("latents: name at least one checkpoint or --regressor FILE")
    cfg = compose(args.config_name, [])
    latents = Path(args.latents)
    silence = silence_from(latents)
    songs = eval_songs(cfg, latents, args.split, args.songs)
    rows = []
    for ckpt in args.checkpoints:
        path = Path(ckpt)
        if not path.is_file():
            raise UserError(f"{ckpt}: no such checkpoint file")
        conditioner = None
        for weights, model in checkpoint_models(path, None, cfg["model"], args.weights):
            if conditioner is None:
                conditioner = build_conditioner(model.model_config)
            model.conditioner = conditioner
            rows.append(
                _print_row(
                    args, {"checkpoint": str(path), "weights": weights, **score_row(model, songs, silence, args)}
                )
            )
    embed = build_conditioner(cfg["model"]).embed_text if args.regressor else None  # the config's text encoder
    for file in args.regressor:
        rows.append(_print_row(args, {"regressor": str(file), **regressor_row(file, embed, songs, silence)}))
    return rows


def regressor_row(file: str, embed: Any, songs, silence: torch.Tensor) -> dict[str, Any]:
    """The latent scores of a ``diagnose.py regressor`` file, its prompts embedded by ``embed``."""
    from mgeldm.evaluation.baseline import load_regressor, regressor_estimates
    from mgeldm.evaluation.latent import score_estimates

    net, stats, steps = load_regressor(file)
    scores = score_estimates(songs, regressor_estimates(net, stats, songs, embed, canonical_prompt), silence)
    return {"steps": steps, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}}


def _print_row(args: argparse.Namespace, row: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(row if args.per_stem else {k: v for k, v in row.items() if k != "per_stem"}), flush=True)
    return row


# ------------------------------------------------------------------------------------------ CLI


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config-name", default="quickstart_dit", help="the recipe's config (default quickstart_dit)")
    p.add_argument("--latents", required=True, help="pre_encode.py's output folder (holds zero_latent.npy)")
    p.add_argument("--sample-steps", type=int, default=4, help="DDIM steps of the extraction (default 4)")
    p.add_argument("--cfg-scale", type=float, default=2.0, help="classifier-free guidance (default 2)")
    p.add_argument("--overlap", type=float, default=0.128, help="seconds of window overlap (default 0.128)")
    p.add_argument("--seed", type=int, default=0, help="training and sampling seed (default 0)")
    p.add_argument(
        "--weights",
        nargs="+",
        default=["ema"],
        choices=["ema", "online"],
        help="which weights of a training checkpoint to score (default ema)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    sub = p.add_subparsers(dest="command", required=True)
    o = sub.add_parser("overfit", help="train a recipe on a few songs and score every checkpoint")
    _common(o)
    o.add_argument("--ae", required=True, help="the unwrapped AE that encoded the latents")
    o.add_argument("--songs", type=int, default=2, help="train on the first K songs (default 2)")
    o.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    o.add_argument("--every", type=int, default=250, help="checkpoint and score every N steps (default 250)")
    o.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    o.add_argument("--eval-split", default=None, help="score on this split instead of the training songs")
    o.add_argument("--eval-songs", type=int, default=None, help="with --eval-split: its first N songs (default all)")
    o.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the conv regressor")
    o.add_argument("--out", required=True, help="a new folder for the run and overfit.json")
    o.add_argument("overrides", nargs="*", help="Hydra overrides of the recipe (after --)")
    r = sub.add_parser("regressor", help="train the regressor alone on a DiT run's batches and save it")
    _common(r)
    r.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps = batches of the DiT run (default: the config's trainer.pl_trainer.max_steps)",
    )
    r.add_argument("--batch", type=int, default=None, help="batch size (default: the config's trainer.batch_size)")
    r.add_argument("--out", required=True, help="the file to write (torch, weights only)")
    r.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    r.add_argument("overrides", nargs="*", help="the DiT run's Hydra overrides (after --)")
    s = sub.add_parser("latents", help="score checkpoints on a pre-encoded split")
    _common(s)
    s.add_argument("checkpoints", nargs="*", metavar="CKPT", help="unwrapped or training checkpoints")
    s.add_argument("--split", default="valid", help="the split to score (default valid)")
    s.add_argument("--songs", type=int, default=None, help="its first N songs (default all)")
    s.add_argument("--per-stem", action="store_true", help="print the scores of every stem class too")
    s.add_argument(
        "--regressor",
        action="append",
        default=[],
        metavar="FILE",
        help="a file of `diagnose.py regressor` to score too (the bar; repeatable)",
    )
    return p


def _check(args: argparse.Namespace) -> None:
    for name in ("steps", "every", "batch", "songs", "sample_steps"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value}: expected an integer >= 1")
    if args.command == "overfit" and args.steps % args.every:
        raise UserError(f"--steps {args.steps}: expected a multiple of --every {args.every}")
    if not Path(args.latents).is_dir():
        raise UserError(f"--latents {args.latents}: not a folder (expected pre_encode.py's output)")
    if getattr(args, "ae", None) and not Path(args.ae).is_file():
        raise UserError(f"--ae {args.ae}: no such file (expected the unwrapped AE)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def work() -> None:
        _check(args)
        {"overfit": overfit, "latents": latents_cmd, "regressor": regressor_cmd}[args.command](args)

    return run_tool(PROG, work)


if __name__ == "__main__":
    sys.exit(main())
