"""Rendering one stem's MIDI notes to mono audio with TinySoundFont and pretty_midi's GM SoundFont.

TinySoundFont is deterministic C code: the same notes at the same rate give the same samples.
It writes interleaved stereo float32; we down-mix to mono by averaging the two channels.
Drums play on MIDI channel 10 (index 9) with the percussion bank (128), else they come out as piano.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pretty_midi

DRUM_CHANNEL = 9
MELODIC_CHANNEL = 0
PERCUSSION_BANK = 128


def soundfont_path() -> str:
    """The General MIDI SoundFont bundled with pretty_midi (TimGM6mb.sf2)."""
    path = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
    if not os.path.isfile(path):
        from mgeldm.errors import UserError

        raise UserError(f"{path}: pretty_midi's bundled TimGM6mb.sf2 is missing; reinstall pretty_midi")
    return path


@functools.lru_cache(maxsize=2)
def _soundfont_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _synth(sample_rate: int, sf_path: str | None):
    import tinysoundfont  # imported here: only rendering needs it

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(_soundfont_bytes(sf_path or soundfont_path()))
    return synth, sfid


def render_instrument(
    instrument: pretty_midi.Instrument, sample_rate: int, n_samples: int, *, soundfont: str | None = None
) -> np.ndarray:
    """Render the notes of one pretty_midi Instrument to a mono float32 array of n_samples.

    A fresh synthesizer is made for each stem, so a stem never depends on what was rendered before.
    Notes are placed at the nearest sample; events past n_samples are dropped.
    """
    synth, sfid = _synth(sample_rate, soundfont)
    if instrument.is_drum:
        chan = DRUM_CHANNEL
        synth.program_select(chan, sfid, PERCUSSION_BANK, instrument.program, is_drums=True)
    else:
        chan = MELODIC_CHANNEL
        synth.program_select(chan, sfid, 0, instrument.program)
    # (sample, order, pitch, velocity): note-offs (order 0) before note-ons at the same sample.
    events: list[tuple[int, int, int, int]] = []
    for n in instrument.notes:
        events.append((int(round(n.start * sample_rate)), 1, n.pitch, n.velocity))
        events.append((int(round(n.end * sample_rate)), 0, n.pitch, 0))
    events.sort()
    out = np.zeros(2 * n_samples, dtype=np.float32)
    pos = 0
    for at, kind, pitch, vel in events:
        at = min(at, n_samples)
        if at > pos:
            out[2 * pos : 2 * at] = np.frombuffer(synth.generate(at - pos), dtype=np.float32)
            pos = at
        if pos >= n_samples:
            break
        if kind == 1:
            synth.noteon(chan, pitch, vel)
        else:
            synth.noteoff(chan, pitch)
    if pos < n_samples:
        out[2 * pos :] = np.frombuffer(synth.generate(n_samples - pos), dtype=np.float32)
    return out.reshape(n_samples, 2).mean(axis=1, dtype=np.float32)
