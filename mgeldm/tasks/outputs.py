"""Where inference results go: ``<output_dir>/<sub>/output_NNNN/`` as in the original (SPEC D.4).

A run writes everything into a hidden temporary folder beside its final place and renames it to
the next free ``output_NNNN`` only when complete, so a failed or interrupted run leaves no
half-filled output folder, and two runs at once never share or overwrite one: the index is claimed
with an exclusive ``mkdir`` in a retry loop and the finished folder is renamed onto the claim.

Layout inside one run folder (one run = one command):

* one input, one prompt: the original's files directly inside (``gen_src.wav``, ``gen_src.png``,
  ``given_mix.wav``, ..., ``prompt.txt``) plus ``run.json``;
* several prompts: one sub-folder per prompt, ``<kk>_<prompt slug>/gen_*.wav``, the given audio
  once beside them;
* a folder of inputs: one sub-folder per input file, ``<input slug>/``, each laid out as above.

Prompts and file names reach paths only through :func:`slugify`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mgeldm.errors import UserError

TASK_SUBDIRS: dict[str, str] = {
    "total_gen": "total_gen",
    "source_extract": "src_extract",
    "partial_gen": "partial_gen_single",
    "accomp_gen": "accomp_gen",
    "partial_gen_iter": "partial_gen_iter",
}

_RUN_DIR = re.compile(r"^output_(\d{4,})$")
_PARTIAL_PREFIX = ".partial_output_"


def slugify(text: str, max_len: int = 48, fallback: str = "prompt") -> str:
    """A file-name-safe slug: ASCII letters, digits, ``-`` and ``_`` only, at most ``max_len`` chars.

    No path separators, dots or leading dashes survive, so ``..`` or ``/`` in a prompt cannot
    leave the output folder; an empty result becomes ``fallback``.
    """
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_").lower()
    slug = slug[:max_len].rstrip("_")
    return slug or fallback


def unique_slugs(texts: list[str], max_len: int = 48, fallback: str = "item") -> list[str]:
    """Slugs for several names, made distinct with ``_2``, ``_3``... where two would collide."""
    seen: dict[str, int] = {}
    out = []
    for text in texts:
        base = slugify(text, max_len, fallback)
        n = seen.get(base, 0) + 1
        seen[base] = n
        out.append(base if n == 1 else f"{base}_{n}")
    return out


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Refuse an output dir that is not a writable folder, or cannot be created; nothing is created."""
    from mgeldm.files import check_writable_dir

    return check_writable_dir(output_dir, "+output_dir", output_dir)


def next_free_index(parent: Path) -> int:
    """One more than the highest existing ``output_NNNN`` in ``parent`` (0 when there is none)."""
    highest = -1
    if parent.is_dir():
        for entry in os.scandir(parent):
            match = _RUN_DIR.match(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


class RunFolder:
    """A run's output folder, filled in a hidden temporary folder and published by :meth:`commit`.

    Use as a context manager: on an exception the temporary folder is removed.
    """

    def __init__(self, output_dir: str | os.PathLike, sub: str) -> None:
        self.parent = Path(output_dir).expanduser() / sub
        self._created: list[Path] = []
        self.tmp: Path | None = None
        self.final: Path | None = None

    def __enter__(self) -> RunFolder:
        missing = []
        probe = self.parent
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        self.parent.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first; removed again if the run fails and they stay empty
        self.tmp = Path(tempfile.mkdtemp(prefix=_PARTIAL_PREFIX, dir=self.parent))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        if exc_type is not None and self.final is None:
            for folder in self._created:
                try:
                    folder.rmdir()
                except OSError:
                    break

    def path(self, *parts: str) -> Path:
        """A path inside the (temporary) run folder; its parent folders are created."""
        assert self.tmp is not None, "RunFolder used outside its `with` block"
        for part in parts:
            if not part or part in (".", "..") or "/" in part or os.sep in part:
                raise ValueError(f"unsafe path part {part!r}")
        target = self.tmp.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_text(self, parts: tuple[str, ...], text: str) -> Path:
        target = self.path(*parts)
        target.write_text(text, encoding="utf-8")
        return target

    def write_json(self, parts: tuple[str, ...], obj: Mapping[str, Any]) -> Path:
        return self.write_text(parts, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

    def write_audio(self, parts: tuple[str, ...], key: str, wave: torch.Tensor, sample_rate: int,
                    *, extra_sample_rate: int | None = None, png: bool = True) -> list[Path]:
        """``<key>.wav`` (+ ``<key>.png``) at ``sample_rate``; with ``extra_sample_rate`` also
        ``<key>_<sr>hz.wav`` resampled to that rate."""
        from mgeldm.audio import resample, save_spectrogram_png, write_wav

        wave = wave.detach().float().cpu()
        wave = wave[None] if wave.dim() == 1 else wave
        written = [write_wav(self.path(*parts, f"{key}.wav"), wave, sample_rate)]
        if png:
            written.append(save_spectrogram_png(self.path(*parts, f"{key}.png"), wave, sample_rate))
        if extra_sample_rate and extra_sample_rate != sample_rate:
            other = resample(wave, sample_rate, extra_sample_rate)
            written.append(write_wav(self.path(*parts, f"{key}_{extra_sample_rate}hz.wav"), other, extra_sample_rate))
        return written

    def commit(self) -> Path:
        """Publish the folder as the next free ``output_NNNN``; safe against concurrent runs."""
        assert self.tmp is not None
        for _ in range(10_000):
            final = self.parent / f"output_{next_free_index(self.parent):04d}"
            try:
                os.mkdir(final)  # exclusive claim of the index
            except FileExistsError:
                continue
            try:
                os.replace(self.tmp, final)  # POSIX: a directory may replace an empty directory
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EACCES, errno.EPERM):
                    os.rmdir(final)
                    raise
                os.rmdir(final)  # platforms that refuse: free the claim, then rename
                os.rename(self.tmp, final)
            self.final = final
            self.tmp = None
            return final
        raise UserError(f"+output_dir: could not claim a free output folder in {self.parent}")
