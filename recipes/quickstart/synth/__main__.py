"""CLI: ``python -m recipes.quickstart.synth --out DIR --seed S --n-train N --n-valid N --n-test N --seconds MIN
[MAX]``."""

from __future__ import annotations

import argparse
import sys
import time

from mgeldm.audio import SAMPLE_RATE
from mgeldm.cli.boundary import run_tool
from mgeldm.errors import UserError
from recipes.quickstart.synth.corpus import CorpusSettings, generate_corpus
from recipes.quickstart.synth.midi import DEFAULT_CLASSES, INSTRUMENT_CLASSES

PROG = "python -m recipes.quickstart.synth"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Write a seeded multitrack corpus in the Slakh2100 layout.")
    p.add_argument("--out", required=True, help="corpus root folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-valid", type=int, default=8)
    p.add_argument("--n-test", type=int, default=8)
    p.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        default=[10.0, 20.0],
        metavar="S",
        help="song length: one value, or MIN MAX to draw uniformly (whole bars)",
    )
    p.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    p.add_argument(
        "--classes",
        default=",".join(DEFAULT_CLASSES),
        help=f"comma-separated inst_class names to draw from; known: {', '.join(INSTRUMENT_CLASSES)}",
    )
    p.add_argument(
        "--timbre",
        default="plain",
        choices=("plain", "varied"),
        help="plain: the SoundFont's sounds as they are; varied: every program of each class's family, "
        "octave shifts, velocity, detuning, EQ, drive and room (recipes/quickstart/synth/timbre.py)",
    )
    p.add_argument(
        "--soundfont", default=None, help="a General MIDI .sf2 to render with (default: pretty_midi's TimGM6mb.sf2)"
    )
    p.add_argument("--workers", type=int, default=1, help="rendering processes (files do not depend on it)")
    p.add_argument("--overwrite", action="store_true", help="replace a corpus made with other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_tool(PROG, lambda: _generate(args))


def _generate(args: argparse.Namespace) -> None:
    if len(args.seconds) not in (1, 2):
        raise UserError(f"--seconds {args.seconds}: expected one value or MIN MAX")
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    unknown = [c for c in classes if c not in INSTRUMENT_CLASSES]
    if unknown:
        raise UserError(f"--classes: unknown {unknown}; known: {list(INSTRUMENT_CLASSES)}")
    settings = CorpusSettings(
        seed=args.seed,
        n_train=args.n_train,
        n_valid=args.n_valid,
        n_test=args.n_test,
        min_seconds=args.seconds[0],
        max_seconds=args.seconds[-1],
        sample_rate=args.sample_rate,
        classes=classes,
        timbre=args.timbre,
        soundfont=args.soundfont,
    )
    t0 = time.perf_counter()
    result = generate_corpus(
        args.out, settings, workers=args.workers, overwrite=args.overwrite, progress=not args.quiet
    )
    print(
        f"{args.out}: {len(result['tracks'])} songs ({result['written']} written, {result['kept']} kept) "
        f"in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
