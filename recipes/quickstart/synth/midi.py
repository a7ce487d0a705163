"""Seeded generation of multitrack songs as MIDI (pretty_midi objects).

A song is a key, a tempo, a four-chord progression and a handful of parts (drums, bass, chords, a
melody, sometimes a pad), each played by a General MIDI program drawn within its instrument class.
The song is cut into sections; parts enter and leave section by section. Every random choice comes
from the ``numpy.random.Generator`` passed in, so the same generator state gives the same song.
Class names follow Slakh2100's ``inst_class`` values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pretty_midi

# inst_class -> (GM programs drawn from, roles the class can play). Program numbers are 0-based.
INSTRUMENT_CLASSES: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "Drums": ((0, 8, 16, 24, 25, 32), ("drums",)),  # drum kits (bank 128 presets)
    "Bass": ((32, 33, 34, 35, 38, 39), ("bass",)),
    "Piano": ((0, 1, 2, 4, 5), ("chords", "melody")),
    "Guitar": ((24, 25, 26, 27, 29, 30), ("chords", "melody")),
    "Organ": ((16, 17, 18, 19), ("chords", "pad")),
    "Strings": ((40, 41, 42), ("melody",)),
    "Strings (continued)": ((48, 49, 50, 51), ("pad",)),
    "Synth Lead": ((80, 81, 82, 83, 84, 85, 86, 87), ("melody",)),
    "Synth Pad": ((88, 89, 90, 91, 94, 95), ("pad",)),
    "Brass": ((56, 57, 60, 61, 62, 63), ("melody",)),
    "Reed": ((64, 65, 66, 68, 71), ("melody",)),
}
DEFAULT_CLASSES: tuple[str, ...] = tuple(INSTRUMENT_CLASSES)

# Slakh maps "Strings (continued)" onto "Strings" when it groups stems: treat them as one source.
CANONICAL_CLASS = {"Strings (continued)": "Strings"}

ROLE_ORDER = ("drums", "bass", "chords", "melody", "pad")
# Chance that a song has the part at all, and that the part plays in a given section.
ROLE_SONG_PROB = {"drums": 0.92, "bass": 0.95, "chords": 1.0, "melody": 0.9, "pad": 0.4}
ROLE_SECTION_PROB = {"drums": 0.8, "bass": 0.85, "chords": 0.9, "melody": 0.7, "pad": 0.65}

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
GM_DRUM = {
    "kick": 36,
    "snare": 38,
    "clap": 39,
    "closed_hat": 42,
    "open_hat": 46,
    "ride": 51,
    "crash": 49,
    "low_tom": 45,
    "high_tom": 50,
}


@dataclass
class Stem:
    """One part of a song: its class, program and the notes it plays."""

    inst_class: str
    program: int
    is_drum: bool
    role: str
    instrument: pretty_midi.Instrument
    rendered: bool = True  # False: MIDI only, like Slakh stems without audio

    @property
    def program_name(self) -> str:
        if self.is_drum:
            return "Drums"
        return pretty_midi.program_to_instrument_name(self.program)


@dataclass
class Song:
    """A generated song: global musical choices and its stems."""

    tonic: int
    mode: str
    tempo: float
    progression: tuple[int, ...]
    n_bars: int
    section_bars: int
    stems: list[Stem] = field(default_factory=list)

    @property
    def bar_seconds(self) -> float:
        return 4 * 60.0 / self.tempo

    @property
    def seconds(self) -> float:
        return self.n_bars * self.bar_seconds

    def signature(self) -> tuple:
        """Global choices that make two songs 'alike'; the corpus keeps these unique."""
        return (self.tonic, self.mode, round(self.tempo), self.progression)

    def fingerprint(self) -> str:
        """Hash of everything that is played, note by note."""
        h = hashlib.sha256(repr(self.signature()).encode())
        for s in self.stems:
            h.update(f"{s.inst_class}|{s.program}|{s.is_drum}|{s.rendered}".encode())
            for n in s.instrument.notes:
                h.update(f"{n.pitch},{n.velocity},{n.start:.6f},{n.end:.6f};".encode())
        return h.hexdigest()

    def to_pretty_midi(self) -> pretty_midi.PrettyMIDI:
        pm = pretty_midi.PrettyMIDI(initial_tempo=self.tempo)
        pm.instruments.extend(s.instrument for s in self.stems)
        return pm


def _scale(tonic: int, mode: str) -> tuple[int, ...]:
    steps = MAJOR if mode == "major" else MINOR
    return tuple((tonic + s) % 12 for s in steps)


def _chord_pcs(song: Song, degree: int, seventh: bool) -> list[int]:
    """Pitch classes of the diatonic triad (or seventh chord) on a scale degree (0-based)."""
    scale = _scale(song.tonic, song.mode)
    n = 4 if seventh else 3
    return [scale[(degree + 2 * i) % 7] for i in range(n)]


def _progression(rng: np.random.Generator) -> tuple[int, ...]:
    """Four diatonic degrees, starting on the tonic most of the time, no immediate repeats."""
    prog = [0 if rng.random() < 0.7 else int(rng.choice([3, 5]))]
    while len(prog) < 4:
        d = int(rng.integers(0, 7))
        if d != prog[-1] and d != 6:
            prog.append(d)
    return tuple(prog)


def _note(inst: pretty_midi.Instrument, pitch: int, vel: int, start: float, end: float) -> None:
    inst.notes.append(
        pretty_midi.Note(velocity=int(np.clip(vel, 1, 127)), pitch=int(pitch), start=float(start), end=float(end))
    )


def _vel(rng: np.random.Generator, base: int, accent: bool = False) -> int:
    return int(base + (12 if accent else 0) + rng.integers(-8, 9))


def _drums(song: Song, rng, inst, bars: list[int], base_vel: int) -> None:
    beat = 60.0 / song.tempo
    kick_patterns = [(0, 8), (0, 6, 8), (0, 8, 10), (0, 3, 8, 11), (0, 4, 8, 12), (0, 7, 10)]
    kicks = kick_patterns[int(rng.integers(len(kick_patterns)))]
    snare = GM_DRUM["clap"] if rng.random() < 0.25 else GM_DRUM["snare"]
    hat = GM_DRUM["ride"] if rng.random() < 0.2 else GM_DRUM["closed_hat"]
    hat_step = int(rng.choice([2, 2, 1, 4]))  # in sixteenths
    open_hat = rng.random() < 0.4
    for bar in bars:
        t0 = bar * song.bar_seconds
        if bar % song.section_bars == 0 and rng.random() < 0.7:
            _note(inst, GM_DRUM["crash"], _vel(rng, base_vel, True), t0, t0 + 0.5)
        for step in range(16):
            t = t0 + step * beat / 4
            if step in kicks:
                _note(inst, GM_DRUM["kick"], _vel(rng, base_vel, step == 0), t, t + 0.1)
            if step in (4, 12):
                _note(inst, snare, _vel(rng, base_vel), t, t + 0.1)
            if step % hat_step == 0:
                pitch = GM_DRUM["open_hat"] if open_hat and step == 14 else hat
                _note(inst, pitch, _vel(rng, base_vel - 15, step % 4 == 0), t, t + 0.05)
        if (bar + 1) % song.section_bars == 0 and rng.random() < 0.5:  # fill into the next section
            for k, tom in enumerate((GM_DRUM["high_tom"], GM_DRUM["low_tom"])):
                t = t0 + (14 + k) * beat / 4
                _note(inst, tom, _vel(rng, base_vel), t, t + 0.1)


def _bass(song: Song, rng, inst, bars: list[int], base_vel: int) -> None:
    beat = 60.0 / song.tempo
    style = int(rng.integers(4))
    low = 28 + int(rng.integers(0, 8))
    for bar in bars:
        degree = song.progression[bar % len(song.progression)]
        pcs = _chord_pcs(song, degree, False)
        root = low + (pcs[0] - low) % 12
        fifth = low + (pcs[2] - low) % 12
        t0 = bar * song.bar_seconds
        if style == 0:  # whole notes
            _note(inst, root, _vel(rng, base_vel), t0, t0 + 4 * beat * 0.95)
        elif style == 1:  # quarter notes, root and fifth
            for b in range(4):
                p = root if b % 2 == 0 else fifth
                _note(inst, p, _vel(rng, base_vel, b == 0), t0 + b * beat, t0 + (b + 0.9) * beat)
        elif style == 2:  # driving eighths with an octave jump
            for e in range(8):
                p = root + (12 if e % 4 == 3 else 0)
                _note(inst, p, _vel(rng, base_vel, e == 0), t0 + e * beat / 2, t0 + (e + 0.8) * beat / 2)
        else:  # syncopated
            for b, d in ((0, 1.5), (1.5, 1.0), (2.5, 0.5), (3.0, 1.0)):
                p = root if b != 2.5 else fifth
                _note(inst, p, _vel(rng, base_vel, b == 0), t0 + b * beat, t0 + (b + d * 0.9) * beat)


def _voicing(pcs: list[int], low: int) -> list[int]:
    return [low + (pc - low) % 12 for pc in pcs]


def _chords(song: Song, rng, inst, bars: list[int], base_vel: int, sustained: bool) -> None:
    beat = 60.0 / song.tempo
    seventh = rng.random() < 0.4
    style = 0 if sustained else int(rng.integers(4))
    low = 52 + int(rng.integers(0, 6)) - (0 if not sustained else 4)
    for bar in bars:
        degree = song.progression[bar % len(song.progression)]
        notes = _voicing(_chord_pcs(song, degree, seventh), low)
        t0 = bar * song.bar_seconds
        if style == 0:  # one sustained chord per bar
            for p in notes:
                _note(inst, p, _vel(rng, base_vel), t0, t0 + 4 * beat * 0.98)
        elif style == 1:  # stabs on every beat
            for b in range(4):
                for p in notes:
                    _note(inst, p, _vel(rng, base_vel, b == 0), t0 + b * beat, t0 + (b + 0.6) * beat)
        elif style == 2:  # arpeggio in eighths
            seq = notes + [notes[0] + 12] + notes[::-1][1:] + [notes[0]]
            for e in range(8):
                p = seq[e % len(seq)]
                _note(inst, p, _vel(rng, base_vel, e == 0), t0 + e * beat / 2, t0 + (e + 1) * beat / 2)
        else:  # off-beat comping
            for b in (0.0, 1.5, 2.5, 3.5):
                for p in notes:
                    _note(inst, p, _vel(rng, base_vel, b == 0), t0 + b * beat, t0 + (b + 0.4) * beat)


def _melody(song: Song, rng, inst, bars: list[int], base_vel: int) -> None:
    """A two-bar motif over the scale, repeated with small variations."""
    beat = 60.0 / song.tempo
    scale = _scale(song.tonic, song.mode)
    low = 64 + int(rng.integers(0, 6))
    pitches = [p for p in range(low, low + 19) if p % 12 in scale]
    durations = [0.5, 0.5, 1.0, 1.0, 1.5, 2.0]
    motif: list[tuple[float, float, int]] = []  # (beat offset, length in beats, scale index)
    pos, idx = 0.0, int(rng.integers(2, len(pitches) - 3))
    while pos < 8.0:
        d = float(min(rng.choice(durations), 8.0 - pos))
        if rng.random() < 0.15:  # a rest
            pos += d
            continue
        motif.append((pos, d, idx))
        idx = int(np.clip(idx + rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]), 0, len(pitches) - 1))
        pos += d
    for bar in bars:
        half = bar % 2
        t0 = (bar - half) * song.bar_seconds
        shift = int(rng.choice([0, 0, 0, 1, -1]))
        for off, d, i in motif:
            if int(off // 4) != half:
                continue
            p = pitches[int(np.clip(i + shift, 0, len(pitches) - 1))]
            _note(inst, p, _vel(rng, base_vel, off % 4 == 0), t0 + off * beat, t0 + (off + d * 0.92) * beat)


def _arrangement(rng: np.random.Generator, roles: list[str], n_sections: int) -> dict[str, list[bool]]:
    """Which part plays in which section; every part plays somewhere, every section has two parts."""
    plan = {r: [bool(rng.random() < ROLE_SECTION_PROB[r]) for _ in range(n_sections)] for r in roles}
    for r in roles:
        if not any(plan[r]):
            plan[r][int(rng.integers(n_sections))] = True
    for s in range(n_sections):
        while sum(plan[r][s] for r in roles) < min(2, len(roles)):
            plan[roles[int(rng.integers(len(roles)))]][s] = True
    return plan


def _pick_classes(rng: np.random.Generator, classes: tuple[str, ...]) -> list[tuple[str, str]]:
    """(role, inst_class) pairs: distinct canonical classes, at least two parts."""
    chosen: list[tuple[str, str]] = []
    used: set[str] = set()
    for role in ROLE_ORDER:
        if rng.random() >= ROLE_SONG_PROB[role]:
            continue
        options = [c for c in classes if role in INSTRUMENT_CLASSES[c][1] and CANONICAL_CLASS.get(c, c) not in used]
        if not options:
            continue
        c = options[int(rng.integers(len(options)))]
        chosen.append((role, c))
        used.add(CANONICAL_CLASS.get(c, c))
    if len(chosen) < 2:  # too sparse: add any class that can still play something
        for role in ROLE_ORDER:
            options = [c for c in classes if role in INSTRUMENT_CLASSES[c][1] and CANONICAL_CLASS.get(c, c) not in used]
            if options and role not in {r for r, _ in chosen}:
                c = options[int(rng.integers(len(options)))]
                chosen.append((role, c))
                used.add(CANONICAL_CLASS.get(c, c))
            if len(chosen) >= 2:
                break
    return chosen


def generate_song(
    rng: np.random.Generator,
    *,
    min_seconds: float,
    max_seconds: float,
    classes: tuple[str, ...] = DEFAULT_CLASSES,
    unrendered_prob: float = 0.15,
) -> Song:
    """Draw one song. Its length is a whole number of bars close to U[min_seconds, max_seconds]."""
    unknown = [c for c in classes if c not in INSTRUMENT_CLASSES]
    if unknown:
        raise ValueError(f"unknown instrument classes {unknown}; known: {list(INSTRUMENT_CLASSES)}")
    tempo = float(rng.integers(80, 141))
    mode = "major" if rng.random() < 0.6 else "minor"
    song = Song(
        tonic=int(rng.integers(12)),
        mode=mode,
        tempo=tempo,
        progression=_progression(rng),
        n_bars=1,
        section_bars=int(rng.choice([2, 4])),
    )
    target = float(rng.uniform(min_seconds, max_seconds))
    song.n_bars = max(2, int(round(target / song.bar_seconds)))
    n_sections = -(-song.n_bars // song.section_bars)
    picks = _pick_classes(rng, classes)
    plan = _arrangement(rng, [r for r, _ in picks], n_sections)
    for role, inst_class in picks:
        programs = INSTRUMENT_CLASSES[inst_class][0]
        program = int(programs[int(rng.integers(len(programs)))])
        is_drum = role == "drums"
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name="Drums" if is_drum else inst_class)
        bars = [b for b in range(song.n_bars) if plan[role][b // song.section_bars]]
        base_vel = int(rng.integers(72, 108))
        if role == "drums":
            _drums(song, rng, inst, bars, base_vel)
        elif role == "bass":
            _bass(song, rng, inst, bars, base_vel)
        elif role == "melody":
            _melody(song, rng, inst, bars, base_vel)
        else:
            _chords(song, rng, inst, bars, base_vel, sustained=role == "pad")
        inst.notes.sort(key=lambda n: (n.start, n.pitch))
        if not inst.notes:  # a part that never plays is no stem
            continue
        song.stems.append(Stem(inst_class, program, is_drum, role, inst))
    # Like Slakh, some stems exist as MIDI only (audio_rendered: false); never the only two parts.
    if len(song.stems) > 2 and rng.random() < unrendered_prob:
        song.stems.append(_ghost_stem(song, rng, classes))
    return song


def _ghost_stem(song: Song, rng: np.random.Generator, classes: tuple[str, ...]) -> Stem:
    options = [c for c in classes if "chords" in INSTRUMENT_CLASSES[c][1]] or ["Piano"]
    c = options[int(rng.integers(len(options)))]
    program = int(INSTRUMENT_CLASSES[c][0][0])
    inst = pretty_midi.Instrument(program=program, is_drum=False, name=c)
    _chords(song, rng, inst, list(range(song.n_bars)), 60, sustained=True)
    return Stem(c, program, False, "chords", inst, rendered=False)
