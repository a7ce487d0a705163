"""Every text the quickstart embeds, and the table of their embeddings that stands in for MiniLM.

The quickstart conditions on the offline MiniLM sentence encoder (``configs/model/conditioner/minilm.yaml``).
Where that package cannot be carried (a GPU machine without network: ``scripts/quickstart.sh --gpu``, or
``--text-table`` anywhere), every stage reads the same vectors from a table precomputed on a CPU
(``configs/model/conditioner/quickstart_table.yaml``, the ``embedding_table`` conditioner). The table must hold
each text a run embeds (:func:`quickstart_texts`):

- pre-encoding (``pre_encode.clap_from: labels``): the label text of every signal, i.e. ``label_template``
  filled with the joined labels of a mix, a source or a submix. The synthetic songs order their stems by role,
  not by class, so every ordered selection of distinct classes is included;
- DiT training: the source prompts (``make_prompt([label])``: each of the 25 templates with each class);
- inference and the latent scores: the canonical prompts, the paraphrases and the demo prompts of
  ``partial_gen`` and ``total_gen`` (:data:`DEMO_PROMPTS`).

After changing any of these (a class, a template, a paraphrase, a demo prompt), write the table again on a CPU
with MiniLM installed and commit it (a test compares the committed table with this list)::

    python -m recipes.quickstart.report table --classes "Drums,Bass,Piano,Guitar,Synth Lead"
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations
from pathlib import Path

from mgeldm.data.prompts import CANONICAL_TEMPLATE, TEMPLATES, canonical_prompt, join_labels
from recipes.quickstart.evalset import PARTIAL_LABEL, paraphrase_list, prompt_list

TABLE_CONDITIONER = "model/conditioner/quickstart_table.yaml"  # the table's conditioner node (and its path)
ENCODER_CONDITIONER = "model/conditioner/minilm.yaml"  # the encoder the table stands in for
TOTAL_GEN_LABELS = ("Drums", "Bass", "Piano")

# The prompts of the demo runs of scripts/quickstart.sh: partial_gen adds the stem each eval song is missing
# (its submix leaves out PARTIAL_LABEL when present), total_gen makes a whole mix from text.
DEMO_PROMPTS: dict[str, str] = {
    "partial_gen": canonical_prompt(PARTIAL_LABEL),
    "total_gen": CANONICAL_TEMPLATE.format(labels=join_labels(TOTAL_GEN_LABELS)),
}


def label_texts(classes: Sequence[str], label_template: str) -> list[str]:
    """Pre-encoding's texts: ``label_template`` with every ordered selection of distinct ``classes``."""
    return [
        label_template.format(labels=join_labels(list(sel)))
        for n in range(1, len(classes) + 1)
        for sel in permutations(classes, n)
    ]


def training_prompts(classes: Sequence[str]) -> list[str]:
    """DiT training's source prompts: every template of ``mgeldm.data.prompts`` with each class."""
    return [t.format(labels=join_labels([c])) for c in classes for t in TEMPLATES]


def inference_prompts(classes: Sequence[str]) -> list[str]:
    """The prompts of the quickstart's inference runs and scores: canonical, paraphrases, demos."""
    return [p for _, p in prompt_list(classes)] + [p for _, p in paraphrase_list(classes)] + list(DEMO_PROMPTS.values())


def pre_encode_label_template() -> str:
    """The label template of the quickstart's pre-encoding (``configs/quickstart_ae.yaml``'s ``pre_encode``)."""
    from mgeldm.config import compose_config

    return str(compose_config("quickstart_ae")["pre_encode"]["label_template"])


def quickstart_texts(classes: Sequence[str], label_template: str | None = None) -> list[str]:
    """Every distinct text a quickstart run with ``classes`` embeds, in a fixed order."""
    template = pre_encode_label_template() if label_template is None else label_template
    texts = label_texts(classes, template) + training_prompts(classes) + inference_prompts(classes)
    return list(dict.fromkeys(texts))


def table_path() -> Path:
    """The committed table (the path of the table conditioner's config, resolved as the conditioner does)."""
    from mgeldm.config import config_file
    from mgeldm.models.conditioners import table_file

    return table_file(config_file(TABLE_CONDITIONER)["config"]["path"])


def write_table(classes: Sequence[str], out: str | Path | None = None) -> tuple[Path, int]:
    """Embed :func:`quickstart_texts` with MiniLM (on the CPU) into ``out`` (default: the committed table);
    returns (path, number of texts)."""
    from mgeldm.config import config_file
    from mgeldm.models.conditioners import build_conditioner, write_embedding_table

    texts = quickstart_texts(classes)
    encoder = build_conditioner(config_file(ENCODER_CONDITIONER), device="cpu")
    return write_embedding_table(encoder, texts, out or table_path()), len(texts)


def missing_texts(classes: Sequence[str], path: str | Path | None = None) -> list[str]:
    """The texts of a run with ``classes`` that the table at ``path`` (default: the committed one) lacks."""
    from mgeldm.models.conditioners import EmbeddingTable

    table = EmbeddingTable(path or table_path())
    return [t for t in quickstart_texts(classes) if t not in table.rows]
