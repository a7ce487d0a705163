import numpy as np
import pytest

from mgeldm.data.prompts import TEMPLATES, join_labels, make_prompt, normalize_label


def test_25_distinct_templates_with_the_spec_wording():
    assert len(TEMPLATES) == 25 and len(set(TEMPLATES)) == 25
    assert all("{labels}" in t for t in TEMPLATES)
    assert TEMPLATES[0] == "The sound of {labels}."
    assert TEMPLATES[10] == "{labels} segment."
    assert TEMPLATES[11] == "{labels}"
    assert TEMPLATES[18] == "Audio: {labels}"
    assert TEMPLATES[24] == "Audio elements: {labels}."


def test_label_rules_and_oxford_comma():
    assert normalize_label("Electric_Guitar") == "electric guitar"
    assert join_labels(["Piano"]) == "piano"
    assert join_labels(["Piano", "male_singer"]) == "piano and male singer"
    assert join_labels(["Bass", "Drums", "Strings"]) == "bass, drums, and strings"
    assert join_labels(["a", "b", "c", "d"]) == "a, b, c, and d"
    with pytest.raises(ValueError):
        join_labels([])


def test_templates_drawn_uniformly_and_reproducibly():
    rng = np.random.default_rng(0)
    prompts = [make_prompt(["Bass", "Drums", "Strings"], rng) for _ in range(2000)]
    expected = {t.format(labels="bass, drums, and strings") for t in TEMPLATES}
    assert set(prompts) == expected
    counts = np.array([prompts.count(p) for p in expected])
    assert counts.min() > 40 and counts.max() < 130  # 80 expected each
    again = np.random.default_rng(0)
    assert [make_prompt(["Bass", "Drums", "Strings"], again) for _ in range(2000)] == prompts
