"""Audio I/O: formats, channels, resampling quality, atomic writes, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from mgeldm.audio import check_audio, load_audio, load_mono, resample, save_spectrogram_png, to_mono, write_wav
from mgeldm.errors import UserError


def _tone(freq: float, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_load_any_soundfile_format_as_channels_first(tmp_path, fmt):
    stereo = np.stack([_tone(440, 22050, 0.5), _tone(660, 22050, 0.5)], axis=1)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, stereo, 22050, format=fmt)
    wave, sr = load_audio(path)
    assert sr == 22050 and wave.shape[0] == 2 and wave.dtype == torch.float32
    assert abs(wave.shape[1] - stereo.shape[0]) <= 1024  # OGG may pad the last page


def test_load_mono_downmixes_and_resamples(tmp_path):
    left, right = _tone(440, 44100, 1.0), -_tone(440, 44100, 1.0)
    sf.write(tmp_path / "x.wav", np.stack([left, right], 1), 44100, subtype="FLOAT")
    mono, sr = load_mono(tmp_path / "x.wav", 16000)
    assert sr == 16000 and mono.shape == (16000,) and mono.abs().max() < 1e-6  # opposite channels cancel
    native, sr = load_mono(tmp_path / "x.wav")
    assert sr == 44100 and native.shape == (44100,)


def test_resample_keeps_a_tone_and_rejects_aliases():
    sr_in, sr_out = 48000, 16000
    wave = torch.from_numpy(_tone(1000, sr_in, 1.0) + _tone(12000, sr_in, 1.0))[None]
    out = resample(wave, sr_in, sr_out)[0].numpy()
    spec = np.abs(np.fft.rfft(out[2000:-2000] * np.hanning(len(out) - 4000)))
    freqs = np.fft.rfftfreq(len(out) - 4000, 1 / sr_out)
    peak = freqs[np.argmax(spec)]
    assert abs(peak - 1000) < 5
    # 12 kHz is above the new Nyquist (8 kHz): a good resampler removes it instead of folding it to 4 kHz
    alias = spec[np.argmin(np.abs(freqs - 4000))]
    assert alias < 1e-3 * spec.max()


def test_resample_batched_shape():
    x = torch.randn(2, 3, 4800)
    assert resample(x, 48000, 16000).shape == (2, 3, 1600)


def test_to_mono():
    assert to_mono(torch.ones(5)).shape == (1, 5)
    assert torch.equal(to_mono(torch.tensor([[1.0, 3.0], [3.0, 5.0]])), torch.tensor([[2.0, 4.0]]))


def test_write_wav_atomic_pcm16(tmp_path):
    wave = torch.from_numpy(_tone(440, 16000, 0.25))
    path = write_wav(tmp_path / "out.wav", wave, 16000)
    info = sf.info(path)
    assert info.subtype == "PCM_16" and info.samplerate == 16000 and info.frames == 4000
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    back, _ = load_audio(path)
    assert (back[0] - wave).abs().max() < 1e-4


@pytest.mark.parametrize(
    "wave, words",
    [(torch.zeros(1, 0), "empty"), (torch.tensor([[0.0, float("nan")]]), "NaN"), (torch.zeros(1, 100), "silence")],
)
def test_check_audio_refusals(wave, words):
    with pytest.raises(UserError, match=words):
        check_audio(wave, "given.wav")


def test_unreadable_audio_is_one_line(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    with pytest.raises(UserError) as info:
        load_audio(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="no such file"):
        load_audio(tmp_path / "absent.wav")


def test_truncated_files_warn_in_one_line(tmp_path, capsys, warnings_on_stderr):
    """A WAV whose header declares 5 s but holds 1.67 s (libsndfile trims its frame count to the file)."""
    sf.write(tmp_path / "full.wav", _tone(440, 16000, 5.0), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 26720 * 2])
    wave, sr = load_audio(tmp_path / "full.wav")
    assert wave.shape == (1, 80000) and capsys.readouterr().err == ""
    wave, sr = load_audio(tmp_path / "cut.wav")
    assert wave.shape == (1, 26720)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "cut.wav: truncated" in lines[0] and "5.00 s" in lines[0] and "1.67 s" in lines[0]


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile has no MP3 support")
def test_truncated_mp3_warns(tmp_path, capsys, warnings_on_stderr):
    sf.write(tmp_path / "full.mp3", _tone(440, 16000, 5.0), 16000)
    data = (tmp_path / "full.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 3])
    load_audio(tmp_path / "full.mp3")
    assert "truncated" not in capsys.readouterr().err
    load_audio(tmp_path / "cut.mp3")
    assert [line for line in capsys.readouterr().err.splitlines() if "truncated" in line]


def test_spectrogram_png(tmp_path):
    path = save_spectrogram_png(tmp_path / "s.png", torch.from_numpy(_tone(440, 16000, 0.5)), 16000)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
