"""The built-in multitrack corpus: generated MIDI songs rendered with a General MIDI SoundFont,
written in the Slakh2100 layout (``python -m recipes.quickstart.synth --help``)."""

from recipes.quickstart.synth.corpus import CorpusSettings, generate_corpus, plan_corpus
from recipes.quickstart.synth.midi import DEFAULT_CLASSES, INSTRUMENT_CLASSES, generate_song

__all__ = ["CorpusSettings", "generate_corpus", "plan_corpus", "generate_song", "DEFAULT_CLASSES", "INSTRUMENT_CLASSES"]
