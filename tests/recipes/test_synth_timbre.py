"""The synthetic corpus' timbre variety (``--timbre varied``) and its ``--soundfont`` option."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mgeldm.errors import UserError
from recipes.quickstart.synth.corpus import CorpusSettings, plan_corpus, render_song
from recipes.quickstart.synth.render import soundfont_path
from recipes.quickstart.synth.timbre import FAMILIES, PITCH_RANGE, _detune, _room, apply_effects

PLAIN = CorpusSettings(seed=5, n_train=6, n_valid=1, n_test=1, min_seconds=2.0, max_seconds=3.0)
VARIED = dataclasses.replace(PLAIN, timbre="varied")


def _onsets(stem) -> list[tuple[float, float]]:
    return [(round(n.start, 6), round(n.end, 6)) for n in stem.instrument.notes]


def test_varied_keeps_the_songs_rhythm_and_redraws_programs_in_their_family():
    plain, varied = plan_corpus(PLAIN), plan_corpus(VARIED)
    assert [p.name for p in plain] == [p.name for p in varied]
    assert [p.fingerprint for p in plain] != [p.fingerprint for p in varied]
    programs_changed = 0
    for a, b in zip(plain, varied):
        assert [s.inst_class for s in a.song.stems] == [s.inst_class for s in b.song.stems]
        for sa, sb in zip(a.song.stems, b.song.stems):
            assert _onsets(sa) == _onsets(sb)  # the same notes in time: only pitch, level, program move
            if sb.inst_class in FAMILIES:
                assert sb.program in FAMILIES[sb.inst_class] and sb.instrument.program == sb.program
            programs_changed += sa.program != sb.program
            shifts = {nb.pitch - na.pitch for na, nb in zip(sa.instrument.notes, sb.instrument.notes)}
            assert len(shifts) <= 1 and shifts <= {-12, 0, 12}  # one octave shift per part, or none
            if shifts - {0}:
                assert all(PITCH_RANGE[0] <= n.pitch <= PITCH_RANGE[1] for n in sb.instrument.notes)
            assert all(1 <= n.velocity <= 127 for n in sb.instrument.notes)
    assert programs_changed > 0
    assert [p.fingerprint for p in varied] == [p.fingerprint for p in plan_corpus(VARIED)]  # seeded


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


def test_detune_moves_the_pitch_by_the_cents_asked_and_keeps_the_length():
    sr = 16000
    x = np.sin(2 * np.pi * 440.0 * np.arange(2 * sr) / sr).astype(np.float32)
    for cents in (-40.0, 40.0):
        y = _detune(x, cents)
        assert y.shape == x.shape and y.dtype == np.float32
        assert _peak_hz(y[:sr], sr) == pytest.approx(440.0 * 2 ** (cents / 1200), abs=1.0)


def test_room_adds_a_decaying_tail_and_effects_are_a_function_of_their_draw():
    sr = 8000
    impulse = np.zeros(sr, np.float32)
    impulse[0] = 1.0
    wet = _room(impulse, sr, np.random.default_rng(0))
    assert wet.shape == impulse.shape and np.abs(wet[100:]).sum() > 0
    assert np.abs(wet[100:1000]).mean() > np.abs(wet[-1000:]).mean()  # it decays
    x = np.random.default_rng(1).standard_normal(sr).astype(np.float32) * 0.1
    a = apply_effects(x, sr, np.random.default_rng(7), is_drum=False)
    b = apply_effects(x, sr, np.random.default_rng(7), is_drum=False)
    c = apply_effects(x, sr, np.random.default_rng(8), is_drum=False)
    assert a.shape == x.shape and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_soundfont_option_is_used_for_rendering_and_a_missing_file_is_refused(tmp_path):
    song = plan_corpus(PLAIN)[0].song
    default = render_song(song, 16000)[1]
    explicit = render_song(song, 16000, soundfont=soundfont_path())[1]
    np.testing.assert_array_equal(default, explicit)
    with pytest.raises(UserError, match="--soundfont .*no such file"):
        plan_corpus(dataclasses.replace(PLAIN, soundfont=str(tmp_path / "missing.sf2")))
    with pytest.raises(UserError, match="--timbre loud"):
        plan_corpus(dataclasses.replace(PLAIN, timbre="loud"))


def _handlers() -> tuple:
    import signal

    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_rendering_workers_leave_signals_to_the_parent():
    """Forked rendering workers must not inherit the tool's SIGTERM handler: the pool's exit terminates them, and
    an inherited handler printed a traceback from each (in the quickstart's log)."""
    import multiprocessing as mp
    import signal

    from recipes.quickstart.synth.corpus import _quiet_worker

    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # as the tool boundary installs one
    try:
        with mp.get_context("fork").Pool(1, initializer=_quiet_worker) as pool:
            assert pool.apply(_handlers) == (signal.SIG_IGN, signal.SIG_DFL)
    finally:
        signal.signal(signal.SIGTERM, previous)
