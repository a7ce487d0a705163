"""``python evaluate.py +pred_dir=… +ref_dir=… +metrics=[…] +output=…``: the command line over
:mod:`mgeldm.evaluation.stems` (pairing, alignment, baseline rows and the report are documented there)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from mgeldm.audio import SAMPLE_RATE
from mgeldm.cli.boundary import Messages
from mgeldm.cli.hydra_args import hydra_cli
from mgeldm.cli.schema import boolean, check_config, choice, integer, number, optional, prefixed, text
from mgeldm.errors import OptionError
from mgeldm.evaluation.stems import DEFAULT_METRICS, KNOWN_METRICS, evaluate_pairs, markdown, output_paths, pair_files
from mgeldm.files import check_writable_dir, write_text_atomic
from mgeldm.metrics.logmel import LogMelConfig

PROG = "evaluate.py"
# Top-level keys evaluate.py reads: `key=`, `+key=` and `++key=` all set them.
OPTIONS = (
    "pred_dir",
    "ref_dir",
    "mix_dir",
    "oracle_dir",
    "metrics",
    "output",
    "sample_rate",
    "vggish_weights",
    "progress",
)
RULES = {
    **{k: optional(text()) for k in ("pred_dir", "ref_dir", "mix_dir", "oracle_dir", "output", "vggish_weights")},
    "sample_rate": optional(integer(1)),
    "progress": boolean(),
    "bootstrap.n_boot": integer(1),
    "bootstrap.seed": integer(),
    **prefixed(
        "logmel",
        {
            "n_fft": integer(1),
            "hop_length": integer(1),
            "win_length": integer(1),
            "n_mels": integer(1),
            "f_min": number(0),
            "f_max": optional(number(above=0)),
            "power": number(above=0),
            "floor": number(above=0),
            "floor_db_below_mix_peak": optional(number(above=0)),
        },
    ),
    "fad.embedder": choice("vggish", "clap", "melstats"),
    "fad.device": text(),
}


def usage() -> str:
    """The text of ``python evaluate.py --help``."""
    from mgeldm.cli.hydra_args import usage_text

    options = [
        ("+pred_dir=DIR", "the estimates: audio files, paired with ref_dir's by relative path (required)"),
        ("+ref_dir=DIR", "the references (required)"),
        ("+mix_dir=DIR", "the mixtures: the mixture row, si_sdri and logmel_l1_ratio_vs_mix"),
        ("+oracle_dir=DIR", "e.g. the AE round trip of the references: the oracle row"),
        ("+metrics=[a,b]", f"default [{','.join(DEFAULT_METRICS)}]; known: {', '.join(KNOWN_METRICS)}"),
        ("+output=PATH", "X.json (and X.md beside it), or a folder for evaluation.json/.md (required)"),
        ("+sample_rate=HZ", f"the rate everything is compared at (default {SAMPLE_RATE})"),
        ("fad.embedder=NAME", "melstats (default) | vggish (+vggish_weights=FILE) | clap"),
        ("progress=false", "no progress display"),
        ("logmel.<key>=V", "Log-Mel front end; bootstrap.n_boot / bootstrap.seed: the 95 % intervals"),
        (
            "logmel.floor_db_below_mix_peak=DB",
            "the Log-Mel floor, DB under the mel peak of each file's "
            "mixture (of its reference without +mix_dir); null: the absolute logmel.floor alone. The figures "
            "with the absolute floor are reported beside (logmel_l1_absfloor, ...)",
        ),
    ]
    examples = [
        "python evaluate.py +pred_dir=out/pred +ref_dir=data/ref +output=out/evaluation.json",
        "python evaluate.py +pred_dir=out/pred +ref_dir=data/ref +mix_dir=data/mix "
        '"+metrics=[si_sdr,si_sdri,logmel_l1_ratio_vs_mix]" +output=out/',
    ]
    return usage_text(
        "python evaluate.py +pred_dir=DIR +ref_dir=DIR +output=PATH [key=value ...]",
        "Scores estimated stems against references per group (a file's first folder, e.g. bass/), "
        "with mixture, silence and oracle rows, mean, std and bootstrap intervals.",
        options,
        examples,
    )


def _metrics(value) -> list[str]:
    metrics = value or list(DEFAULT_METRICS)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.strip("[]").split(",") if m.strip()]
    return [str(m) for m in metrics]


def _fad_embedder(cfg: Mapping):
    """What builds the FAD embedder (``fad.embedder``), or None."""
    from mgeldm.metrics.embedders import build_fad_embedder

    fad_cfg = dict(cfg.get("fad") or {})
    name = str(fad_cfg.get("embedder", "melstats"))
    options = {
        "weights": cfg.get("vggish_weights") or fad_cfg.get("vggish_weights"),
        "conditioner": fad_cfg.get("clap_conditioner"),
        "device": fad_cfg.get("device", "cpu"),
    }
    return lambda: build_fad_embedder(name, options)


def _logmel(cfg: Mapping, sample_rate: int) -> LogMelConfig:
    """``logmel.*`` as a LogMelConfig at the evaluation rate; an unknown key is an error naming it."""
    given = dict(cfg.get("logmel") or {})
    unknown = sorted(k for k in given if k not in LogMelConfig.__dataclass_fields__ or k == "sample_rate")
    if unknown:
        raise OptionError(
            f"logmel.{unknown[0]}",
            "unknown key; expected one of "
            + ", ".join(k for k in LogMelConfig.__dataclass_fields__ if k != "sample_rate"),
        )
    return LogMelConfig.from_mapping(given, sample_rate=sample_rate)


def run(cfg: Mapping) -> dict:
    """Entry point behind ``evaluate.py``; cfg is the Hydra config (plain Mapping access)."""
    check_config(cfg, RULES)
    get = cfg.get
    if not get("output"):
        raise OptionError("output", "missing; expected a .json file or a folder for evaluation.json/.md")
    check_writable_dir(output_paths(get("output"))[0].parent, "+output", get("output"))
    metrics = _metrics(get("metrics"))
    sample_rate = int(get("sample_rate") or SAMPLE_RATE)
    pairs = pair_files(get("pred_dir"), get("ref_dir"), get("mix_dir"), get("oracle_dir"))
    factory = _fad_embedder(cfg) if "fad" in metrics else None
    boot = dict(get("bootstrap") or {})
    result = evaluate_pairs(
        pairs,
        metrics=metrics,
        sample_rate=sample_rate,
        logmel=_logmel(cfg, sample_rate),
        n_boot=int(boot.get("n_boot", 1000)),
        seed=int(boot.get("seed", 0)),
        embedder_factory=factory,
        progress=bool(get("progress", True)),
    )
    json_path, md_path = output_paths(get("output"))
    write_text_atomic(json_path, json.dumps(result, indent=1))
    write_text_atomic(md_path, markdown(result))
    print(f"wrote {json_path} and {md_path}")
    return result


MESSAGES = Messages({name: f"+{name}" for name in OPTIONS})
CLI = hydra_cli(PROG, run, config_name="evaluate", options=OPTIONS, usage=usage, messages=MESSAGES)
main, run_config = CLI.main, CLI.run_config

if __name__ == "__main__":
    raise SystemExit(main())
