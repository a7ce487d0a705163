"""The settings of an encoding (``configs/pre_encode/default.yaml``) and their checks, made before anything is
written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mgeldm import checks
from mgeldm.errors import UserError

CLAP_HOP_SECONDS = 1.0  # the only hop training reads: the column of second j for a window starting at second j
PAD_MODES = ("repeat", "zero")
CLAP_SOURCES = ("audio", "labels")


@dataclass
class EncodeSettings:
    """Numbers of the encoding; their defaults (the original's) are ``configs/pre_encode/default.yaml``'s, read by
    :meth:`from_mapping`."""

    batch_size: int  # signals per AE call (a song's mix, sources and submixes)
    clap_batch_size: int  # windows per embedder call
    clap_window_seconds: float
    clap_hop_seconds: float  # must be 1.0: see CLAP_HOP_SECONDS
    short_clip_pad: str  # clips shorter than a window: "repeat" (laion_clap's repeatpad) or "zero"
    chunked: str | bool  # AE chunked encoding: true, false, or "auto" (songs above chunk_min_seconds)
    chunk_min_seconds: float
    chunk_size: int  # latent frames per chunk (131 s at 16 kHz / 2048)
    chunk_overlap: int  # latent frames cross-faded between chunks
    progress: bool
    reencode: bool  # encode every track of the run's corpora again (see ``prepare_root``)
    # What the *_clap.npy columns hold: "audio" = the embedder's audio embedding of each window (CLAP, the
    # original); "labels" = the embedder's *text* embedding of the labels the signal really contains (mix: all,
    # source: its own, submix: the others), the same column for every second. The stand-in for a text-only
    # embedder (the quickstart's MiniLM), where the stems' labels are known.
    clap_from: str
    label_template: str  # the text embedded in "labels" mode ({labels}: "drums, bass, and piano")

    def __post_init__(self) -> None:
        """Refuse, before anything is written, a setting that would fail or be misread mid-run."""
        problem = self.problem()
        if problem:
            raise UserError(f"pre_encode.{problem}")

    def problem(self) -> str | None:
        """``"<name>: <value>; expected …"`` for the first bad setting, else None."""
        rules = [
            (("progress", "reencode"), lambda v: isinstance(v, bool), "true or false"),
            (("chunked",), lambda v: isinstance(v, bool) or v == "auto", "true, false or auto"),
            (("batch_size", "clap_batch_size", "chunk_size"), checks.is_count, "a whole number >= 1"),
            (
                ("chunk_overlap",),
                lambda v: checks.is_count(v) and v < self.chunk_size,
                f"a whole number in [1, chunk_size={self.chunk_size})",
            ),
            (("clap_window_seconds", "chunk_min_seconds"), checks.is_positive, "a number of seconds > 0"),
            (
                ("clap_hop_seconds",),
                lambda v: checks.is_number(v) and v == CLAP_HOP_SECONDS,
                f"{CLAP_HOP_SECONDS} (training reads one embedding column per second of latent, so column j must "
                "embed the window that starts at second j)",
            ),
            (("short_clip_pad",), lambda v: v in PAD_MODES, f"one of {list(PAD_MODES)}"),
            (("clap_from",), lambda v: v in CLAP_SOURCES, f"one of {list(CLAP_SOURCES)}"),
        ]
        for names, ok, expected in rules:
            for name in names:
                if not ok(getattr(self, name)):
                    return f"{name}: {getattr(self, name)!r}; expected {expected}"
        return None

    @classmethod
    def from_mapping(cls, node: Mapping | None) -> "EncodeSettings":
        """The defaults of ``configs/pre_encode/default.yaml`` with the settings of ``node``."""
        from mgeldm.config import config_file

        node = dict(node or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(node) - known)
        if unknown:
            raise UserError(f"pre_encode: unknown settings {unknown}; expected some of {sorted(known)}")
        return cls(**{**config_file("pre_encode/default.yaml"), **node})
