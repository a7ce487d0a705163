"""Where inference results go: ``<output_dir>/<sub>/output_NNNN/`` as in the original
(docs/compatibility.md#sampling-and-the-five-tasks).

A run writes everything into a hidden temporary folder beside its final place and renames it to
the next free ``output_NNNN`` only when complete, so a failed or interrupted run leaves no
half-filled output folder, and two runs at once never share or overwrite one: the index is claimed
with an exclusive ``mkdir`` in a retry loop and the finished folder is renamed onto the claim.
The hidden folder is named ``.partial_output_<pid>.<host>.<random>``; a run killed outright
(``kill -9``, power loss) cannot remove its own, so every run first removes those of dead processes
of its host.

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
import secrets
import shutil
import tempfile
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mgeldm.errors import OptionError
from mgeldm.files import host_name, pid_alive

TASK_SUBDIRS: dict[str, str] = {
    "total_gen": "total_gen",
    "source_extract": "src_extract",
    "partial_gen": "partial_gen_single",
    "accomp_gen": "accomp_gen",
    "partial_gen_iter": "partial_gen_iter",
}

_RUN_DIR = re.compile(r"^output_(\d{4,})$")
_PARTIAL_PREFIX = ".partial_output_"
_PARTIAL_NAME = re.compile(r"^\.partial_output_(\d+)\.([A-Za-z0-9-]*)\.")


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


def _missing_folders(path: Path) -> list[Path]:
    """The folders of ``path`` (itself included) that do not exist yet, deepest first."""
    missing = []
    probe = path
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this run created (deepest first) as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _make_folders(path: Path, option: str) -> list[Path]:
    """``mkdir -p path``; returns the folders it created (deepest first). Failure -> OptionError (output_dir)."""
    missing = _missing_folders(path)
    existing = missing[-1].parent if missing else path
    if existing.exists() and not existing.is_dir():
        raise OptionError("output_dir", f"{existing} is a file; expected a folder", option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise OptionError(
            "output_dir",
            f"cannot create {exc.filename or path} ({exc.strerror or type(exc).__name__}); expected a writable folder",
            option,
        ) from None
    return missing


def check_output_dir(output_dir: str | os.PathLike, sub: str | None = None) -> Path:
    """Refuse an output dir (and its ``sub`` folder) that cannot be created or written, by creating them
    and a temporary file in them now, before any model is loaded; everything created here is removed."""
    path = Path(output_dir).expanduser()
    target = path / sub if sub else path
    created = _make_folders(target, str(output_dir))
    try:
        fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OptionError(
            "output_dir",
            f"{target} is not writable ({exc.strerror or type(exc).__name__}); expected a writable folder",
            output_dir,
        ) from None
    finally:
        _remove_empty(created)
    return path


def _partial_prefix() -> str:
    """The hidden run folder's name up to its random part: who owns it (pid and host)."""
    return f"{_PARTIAL_PREFIX}{os.getpid()}.{host_name()}."


def remove_stale_partials(parent: Path) -> list[Path]:
    """Remove the hidden run folders in ``parent`` left by dead processes of this host; returns them.

    A folder of another host (a shared file system) or of a live process is left alone.
    """
    removed = []
    host = host_name()
    for entry in os.scandir(parent):
        match = _PARTIAL_NAME.match(entry.name)
        if (
            match
            and match.group(2) == host
            and entry.is_dir(follow_symlinks=False)
            and not pid_alive(int(match.group(1)))
        ):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _new_folder(parent: Path, prefix: str) -> Path:
    """A new folder ``<prefix><random>`` in ``parent``, created like any other folder: mode 0777 less the
    umask (``tempfile.mkdtemp``'s would stay 0700 once renamed, unreadable to the group)."""
    while True:
        folder = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return folder


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
        self.option = str(output_dir)
        self.parent = Path(output_dir).expanduser() / sub
        self._created: list[Path] = []
        self.tmp: Path | None = None
        self.final: Path | None = None

    def __enter__(self) -> RunFolder:
        # deepest first; removed again if the run fails and they stay empty
        self._created = _make_folders(self.parent, self.option)
        remove_stale_partials(self.parent)
        try:
            self.tmp = _new_folder(self.parent, _partial_prefix())
        except OSError as exc:
            _remove_empty(self._created)
            raise OptionError(
                "output_dir",
                f"cannot create a folder in {self.parent} ({exc.strerror or type(exc).__name__})",
                self.option,
            ) from None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        if exc_type is not None and self.final is None:
            _remove_empty(self._created)

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

    def write_audio(
        self,
        parts: tuple[str, ...],
        key: str,
        wave: torch.Tensor,
        sample_rate: int,
        *,
        extra_sample_rate: int | None = None,
        png: bool = True,
    ) -> list[Path]:
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
        raise OptionError("output_dir", f"could not claim a free output folder in {self.parent}")
