"""The report's picture of the extractions: ``<out>/extraction_examples.png``.

One row per stem class (the first song, by name, that contains it and has an extraction), three panels: the
mixture (``<eval>/mix/<song>.wav``), the true stem (``<eval>/ref/<stem>/<song>.wav``) and the trained model's
extraction (``<eval>/pred/<stem>/<song>.wav``, written by ``collect``). Each panel is the log-mel spectrogram the
scores see (:mod:`mgeldm.metrics.logmel`: the report's front end, floored at the song's excerpt floor), in dB
relative to the mel peak of the song's mixture, on one scale for every panel: from that peak (0 dB) down to the
floor (``floor_db_below_mix_peak`` below it), with one colour bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mgeldm.metrics.logmel import LogMelConfig, excerpt_floor, floored_log, mel_magnitudes
from recipes.quickstart.evalset import read_songs, stem_folder

PANELS = ("mixture", "true stem", "extraction")


def example_files(
    eval_dir: str | Path, classes: Sequence[str], pred_folder: str = "pred"
) -> list[tuple[str, str, tuple[Path, Path, Path]]]:
    """``(label, song, (mixture, true stem, extraction))`` for each stem class that some song with an extraction
    contains: the first such song by name."""
    root = Path(eval_dir)
    songs = read_songs(root)
    rows = []
    for label in classes:
        for song in sorted(songs):
            files = (
                root / "mix" / f"{song}.wav",
                root / "ref" / stem_folder(label) / f"{song}.wav",
                root / pred_folder / stem_folder(label) / f"{song}.wav",
            )
            if label in songs[song]["labels"] and all(f.is_file() for f in files):
                rows.append((label, song, files))
                break
    return rows


def relative_db(waves: Sequence[torch.Tensor], cfg: LogMelConfig) -> list[torch.Tensor]:
    """The floored log-mel spectrograms of one song's signals (the first its mixture), in dB re the mixture's peak."""
    mels = [mel_magnitudes(w, cfg) for w in waves]
    floor = excerpt_floor(mels[0], cfg)
    peak = floored_log(mels[0].amax(), floor)
    return [20 * (floored_log(m, floor) - peak) for m in mels]


def _draw_row(axes, label: str, song: str, db: Sequence[torch.Tensor], cfg: LogMelConfig, depth: float):
    image = None
    for ax, title, spec in zip(axes, PANELS, db):
        seconds = spec.shape[-1] * cfg.hop_length / cfg.sample_rate
        image = ax.imshow(
            spec.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-depth,
            vmax=0.0,
            extent=(0, seconds, 0, cfg.n_mels),
            interpolation="nearest",
        )
        ax.set_title(f"{label} · {song}: {title}", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("mel band", fontsize=8)
    return image


def _figure(n_rows: int):
    """The figure, its (n_rows, 3) panels and the axes of its one colour bar (fixed margins, in inches)."""
    import matplotlib.pyplot as plt

    height = 2.2 * n_rows + 0.9
    fig, axes = plt.subplots(n_rows, len(PANELS), figsize=(13, height), squeeze=False)
    top, bottom = 1 - 0.35 / height, 0.55 / height
    fig.subplots_adjust(left=0.05, right=0.9, top=top, bottom=bottom, hspace=0.45, wspace=0.12)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=8)
    return fig, axes, fig.add_axes((0.915, bottom, 0.012, top - bottom))


def extraction_examples(
    eval_dir: str | Path, classes: Sequence[str], out_path: str | Path, sample_rate: int, pred_folder: str = "pred"
) -> Path | None:
    """Write the picture (atomically) and return its path; None (nothing written) when no stem class has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mgeldm.audio import load_mono
    from mgeldm.files import atomic_path

    rows = example_files(eval_dir, classes, pred_folder)
    if not rows:
        return None
    cfg = LogMelConfig(sample_rate=sample_rate)
    depth = float(cfg.floor_db_below_mix_peak)
    fig, axes, bar = _figure(len(rows))
    try:
        for row_axes, (label, song, files) in zip(axes, rows):
            db = relative_db([load_mono(f, sample_rate)[0] for f in files], cfg)
            image = _draw_row(row_axes, label, song, db, cfg, depth)
        fig.colorbar(image, cax=bar, label="dB re the mel peak of the song's mixture")
        path = Path(out_path)
        with atomic_path(path) as tmp:
            fig.savefig(str(tmp), format="png", dpi=80)
    finally:
        plt.close(fig)
    return path
