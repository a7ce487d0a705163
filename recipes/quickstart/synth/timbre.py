"""Timbre variety for the synthetic corpus (``--timbre varied``): what one small SoundFont does not vary by itself.

A model trained on one SoundFont's 30-odd presets meets unheard timbres in any other source. ``varied`` widens
what a class sounds like, in two places, each drawn from its own generator so the notes of the plain corpus stay
the ones its seed gives:

* the notes (:func:`vary_song`, before the song's fingerprint is taken): every General MIDI program of the class's
  family (eight per melodic class, the SoundFont's eight drum kits), pitched parts moved by an octave now and
  then (within the instrument's register), and each part's velocities scaled (softer or harder playing);
* the audio (:func:`apply_effects`, per rendered stem): a detuning of up to 40 cents, a tilt EQ and sometimes a
  low-pass, sometimes a soft-clipping drive, and sometimes a room (exponentially decaying noise as the impulse
  response). Every effect keeps the stem's length and is a deterministic function of the stem and its draw.
"""

from __future__ import annotations

import numpy as np

TIMBRES = ("plain", "varied")

# inst_class -> every program of its General MIDI family (0-based), or the drum kits TimGM6mb holds
FAMILIES: dict[str, tuple[int, ...]] = {
    "Drums": (0, 8, 16, 24, 25, 32, 40, 48),
    "Bass": tuple(range(32, 40)),
    "Piano": tuple(range(0, 8)),
    "Guitar": tuple(range(24, 32)),
    "Organ": tuple(range(16, 24)),
    "Strings": tuple(range(40, 46)),
    "Strings (continued)": tuple(range(48, 56)),
    "Synth Lead": tuple(range(80, 88)),
    "Synth Pad": tuple(range(88, 96)),
    "Brass": tuple(range(56, 64)),
    "Reed": tuple(range(64, 72)),
}
OCTAVE_SHIFT = {"chords": (-12, 0, 0, 12), "melody": (-12, 0, 0, 12), "bass": (0, 0, 12), "pad": (-12, 0, 12)}
PITCH_RANGE = (24, 100)
VELOCITY_SCALE = (0.6, 1.25)
DETUNE_CENTS = 40.0
REVERB_SECONDS = (0.15, 0.9)  # RT60 range of the room
REVERB_WET = (0.08, 0.35)


def vary_song(song, rng: np.random.Generator) -> None:
    """Redraw each stem's program within its family, shift pitched parts by octaves and scale velocities
    (in place; the caller fingerprints the song afterwards)."""
    import pretty_midi

    for stem in song.stems:
        family = FAMILIES.get(stem.inst_class)
        if family:
            stem.program = int(family[int(rng.integers(len(family)))])
            stem.instrument.program = stem.program
        shift = 0 if stem.is_drum else int(rng.choice(OCTAVE_SHIFT.get(stem.role, (0,))))
        pitches = [n.pitch for n in stem.instrument.notes]
        if pitches and not (PITCH_RANGE[0] <= min(pitches) + shift and max(pitches) + shift <= PITCH_RANGE[1]):
            shift = 0
        scale = float(rng.uniform(*VELOCITY_SCALE))
        stem.instrument.notes = [
            pretty_midi.Note(
                velocity=int(np.clip(round(n.velocity * scale), 1, 127)),
                pitch=n.pitch + shift,
                start=n.start,
                end=n.end,
            )
            for n in stem.instrument.notes
        ]


def _detune(x: np.ndarray, cents: float) -> np.ndarray:
    """Resample so the pitch moves by ``cents`` (and the tempo with it), cut or zero-padded to the same length."""
    import soxr

    ratio = 2.0 ** (cents / 1200.0)
    y = soxr.resample(x.astype(np.float64), 1.0, 1.0 / ratio, quality="HQ").astype(np.float32)
    return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))


def _eq(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A tilt EQ (low and high shelves about 800 Hz, each +-6 dB) and, half the time, a 2nd-order low-pass."""
    from scipy.signal import butter, sosfilt

    low = sosfilt(butter(1, 800, "lowpass", fs=sr, output="sos"), x)
    high = x - low
    y = low * 10 ** (rng.uniform(-6, 6) / 20) + high * 10 ** (rng.uniform(-6, 6) / 20)
    if rng.random() < 0.5:
        y = sosfilt(butter(2, rng.uniform(2500, 0.45 * sr), "lowpass", fs=sr, output="sos"), y)
    return y.astype(np.float32)


def _drive(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft clipping at a drawn drive, scaled back to the input's peak."""
    peak = float(np.abs(x).max())
    if peak <= 0:
        return x
    g = 10 ** (rng.uniform(6, 20) / 20) / peak
    y = np.tanh(x * g)
    return (y * (peak / max(float(np.abs(y).max()), 1e-12))).astype(np.float32)


def _room(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A room: the dry signal plus its convolution with decaying noise (RT60 drawn), at a drawn wet level."""
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(*REVERB_SECONDS)
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir /= np.sqrt(np.sum(ir**2)) + 1e-12
    wet = fftconvolve(x, ir)[: len(x)]
    w = rng.uniform(*REVERB_WET)
    return ((1 - w) * x + w * wet).astype(np.float32)


def apply_effects(x: np.ndarray, sr: int, rng: np.random.Generator, *, is_drum: bool) -> np.ndarray:
    """One stem through the drawn chain (detune for pitched parts, EQ, sometimes drive, sometimes a room)."""
    if not is_drum:
        x = _detune(x, rng.uniform(-DETUNE_CENTS, DETUNE_CENTS))
    x = _eq(x, sr, rng)
    if rng.random() < 0.25:
        x = _drive(x, rng)
    if rng.random() < 0.5:
        x = _room(x, sr, rng)
    return x.astype(np.float32)
