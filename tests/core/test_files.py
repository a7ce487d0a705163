"""Atomic writes honour the umask; the temporaries of killed writes are removed, live ones never."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
import torch

from mgeldm.checkpoints import read_state_dict, write_state_dict
from mgeldm.files import remove_stale_temporaries, temporary_name, write_bytes_atomic, write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test, restored afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path, umask, mask, expected):
    umask(mask)
    state = {"w": torch.arange(4.0)}
    written = [
        write_text_atomic(tmp_path / "report.md", "# report\n"),
        write_bytes_atomic(tmp_path / "manifest.json", b"{}"),
        write_state_dict(state, tmp_path / "unwrapped.ckpt"),
        write_state_dict(state, tmp_path / "unwrapped.safetensors"),
    ]
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what any program creates under this umask
    assert _mode(plain) == expected
    assert {p.name: _mode(p) for p in written} == {p.name: expected for p in written}
    assert torch.equal(read_state_dict(tmp_path / "unwrapped.safetensors")["w"], state["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in written] + ["plain.txt"])


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, killed_writer):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    dead = killed_writer(folder / "last.ckpt")
    killed = [p for p in folder.iterdir()]
    assert len(killed) == 1 and killed[0].name.startswith(".last.ckpt.") and f".{dead}." in killed[0].name
    live = temporary_name(folder / "last.ckpt")  # this process is writing it right now
    live.write_bytes(b"being written")
    other_host = folder / f".last.ckpt.some-other-node.{dead}.0123abcd.tmp"  # its writer may be alive there
    other_host.write_bytes(b"x")
    old_partial = folder / f".manifest.json.{dead}.partial"  # pre-encoding's name in earlier versions
    old_partial.write_bytes(b"x")
    old_mkstemp = folder / ".step00000020.ckpt.k2x_9qam.tmp"  # earlier versions' mkstemp name, no writer named
    old_mkstemp.write_bytes(b"x")
    past = time.time() - 3600
    os.utime(old_mkstemp, (past, past))
    recent_mkstemp = folder / ".step00000030.ckpt.a7b3c9d1.tmp"  # modified after this process started: kept
    recent_mkstemp.write_bytes(b"x")
    os.utime(recent_mkstemp, (time.time() + 60, time.time() + 60))
    (folder / ".track00001.partial").mkdir()  # a folder, never a file temporary
    keep = [live, other_host, recent_mkstemp, folder / ".track00001.partial", folder / "last.ckpt", folder / ".hidden"]
    (folder / "last.ckpt").write_bytes(b"complete")
    (folder / ".hidden").write_bytes(b"x")

    removed = remove_stale_temporaries(folder)
    assert sorted(removed) == sorted([killed[0], old_partial, old_mkstemp])
    assert sorted(folder.iterdir()) == sorted(keep)
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_an_atomic_write_removes_its_own_stale_temporaries_only(tmp_path, killed_writer):
    killed_writer(tmp_path / "a.json")
    killed_writer(tmp_path / "b.json")
    write_text_atomic(tmp_path / "a.json", "{}")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0].startswith(".b.json.") and names[1:] == ["a.json"]


def test_wav_and_png_writes_remove_the_temporaries_of_killed_writes(tmp_path, killed_writer):
    """Audio and spectrogram files are written by the one atomic writer (fsync, rename), so the temporary a
    killed write of ``x.wav`` left behind is removed by the next write of ``x.wav``."""
    from mgeldm.audio import save_spectrogram_png, write_wav

    killed_writer(tmp_path / "gen_src.wav")
    killed_writer(tmp_path / "gen_src.png")
    wave = torch.sin(torch.arange(4000.0) / 5)
    write_wav(tmp_path / "gen_src.wav", wave, 16000)
    save_spectrogram_png(tmp_path / "gen_src.png", wave, 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen_src.png", "gen_src.wav"]


def test_atomic_folder_publishes_whole_folders_and_cleans_up_after_killed_ones(tmp_path):
    import signal
    import subprocess
    import sys

    from mgeldm.files import atomic_folder

    code = (
        "import os, signal, sys\n"
        "from mgeldm.files import atomic_folder\n"
        "with atomic_folder(sys.argv[1]) as tmp:\n"
        "    (tmp / 'mix.npy').write_bytes(b'half a track')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "track00000")],
        cwd=repo,
        env=dict(os.environ, PYTHONPATH=str(repo)),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    assert [p.name.startswith(".track00000.") for p in tmp_path.iterdir()] == [True]  # the killed one's folder
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "track00000") as tmp:
            (tmp / "mix.npy").write_bytes(b"x")
            raise RuntimeError("a failed write publishes nothing")
    assert list(tmp_path.iterdir()) == []  # neither the failed folder nor the killed writer's is left
    with atomic_folder(tmp_path / "track00000") as tmp:
        (tmp / "mix.npy").write_bytes(b"first")
    with atomic_folder(tmp_path / "track00000", replace=False) as tmp:
        (tmp / "mix.npy").write_bytes(b"second")  # another writer finished first: kept as it is
    assert (tmp_path / "track00000" / "mix.npy").read_bytes() == b"first"
    with atomic_folder(tmp_path / "track00000") as tmp:
        (tmp / "mix.npy").write_bytes(b"third")  # replace: the new folder wins
    assert [p.name for p in tmp_path.iterdir()] == ["track00000"]
    assert (tmp_path / "track00000" / "mix.npy").read_bytes() == b"third"
