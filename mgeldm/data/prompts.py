"""Text prompts built from stem labels: the original's 25 templates and its label rules.

Labels are lower-cased with "_" as a space; two labels join as "a and b", three or more with an Oxford
comma ("a, b, and c"). One template is drawn uniformly with the caller's generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TEMPLATES: tuple[str, ...] = (
    "The sound of {labels}.",
    "The instrumental sound of {labels}.",
    "Only {labels}.",
    "{labels} sounds.",
    "Instrumental {labels}.",
    "Stem of {labels}.",
    "Pure {labels}.",
    "Audio of {labels}.",
    "{labels} part.",
    "{labels} stem.",
    "{labels} segment.",
    "{labels}",
    "Only {labels}",
    "{labels} stem",
    "{labels} track",
    "{labels} audio",
    "Stem: {labels}",
    "Track: {labels}",
    "Audio: {labels}",
    "The music of {labels}.",
    "The performance of {labels}.",
    "The track of {labels}.",
    "The audio track of {labels}.",
    "The {labels}",
    "Audio elements: {labels}.",
)


def normalize_label(label: str) -> str:
    """``"Electric_Guitar"`` -> ``"electric guitar"``."""
    return label.replace("_", " ").lower()


def join_labels(labels: Sequence[str]) -> str:
    """Normalise and join: one as is, two with "and", three or more with an Oxford comma."""
    names = [normalize_label(x) for x in labels]
    if not names:
        raise ValueError("cannot build a prompt from an empty label list")
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return ", ".join(names[:-1]) + f", and {names[-1]}"


def make_prompt(labels: Sequence[str], rng: np.random.Generator) -> str:
    """One of the 25 templates, drawn uniformly, filled with the joined labels."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return template.format(labels=join_labels(labels))


CANONICAL_TEMPLATE = TEMPLATES[0]  # "The sound of {labels}.": the prompt evaluations use


def canonical_prompt(label: str) -> str:
    """The evaluation prompt of one stem label: ``"Synth_Lead"`` -> ``"The sound of synth lead."``."""
    return CANONICAL_TEMPLATE.format(labels=normalize_label(label))
