"""The public Python API is small and says so: ``mgeldm.api.__all__`` names everything a user or a recipe calls,
validators live in :mod:`mgeldm.inputs` and :mod:`mgeldm.checks`, and the model's methods are the tasks, their
several-song forms, loading, the latent methods and the facts a run reports."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import mgeldm.api as api

REPO = Path(__file__).resolve().parents[2]
MGELDM_PUBLIC = {
    "from_pretrained",
    "untrained",
    "save",  # loading and saving
    "generate",
    "extract",
    "add_part",
    "accompany",
    "add_parts_iteratively",
    "run",  # the five tasks, by name
    "extract_songs",
    "run_songs",  # several songs in shared batches
    "encode_latents",
    "extract_latents",
    "extract_latents_songs",
    "predict_x0",  # latent space
    "embed_prompts",
    "embed_audio",  # the conditions
    "settings",
    "sample_rate",
    "timings",
    "generator",  # the settings, the facts of a run, its randomness
}


def test_all_is_complete_and_holds_only_what_users_call():
    defined = {
        name
        for name, value in vars(api).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == "mgeldm.api"
    }
    assert set(api.__all__) == defined | {"SamplingSettings"}
    assert all(hasattr(api, name) for name in api.__all__)


def test_the_model_has_the_methods_it_documents():
    assert {name for name in dir(api.MGELDM) if not name.startswith("_")} == MGELDM_PUBLIC


def test_recipes_and_benchmarks_import_from_the_api_only_what_it_exports():
    used = set()
    for path in [*(REPO / "recipes").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mgeldm.api":
                used |= {alias.name for alias in node.names}
    assert used and used <= set(api.__all__)
