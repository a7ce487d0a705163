"""Checkpoint I/O: both unwrapped formats, atomic writes, one-line errors on a wrong file."""

from __future__ import annotations

import os
import pickle
import warnings

import pytest
import torch
from torch import nn

from mgeldm.checkpoints import add_prefix, load_weights, read_state_dict, strip_prefix, write_state_dict
from mgeldm.errors import UserError


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_round_trip_is_bit_identical(tmp_path, suffix):
    model = _tiny()
    path = write_state_dict(model.state_dict(), tmp_path / f"m{suffix}")
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))
    load_weights(other, read_state_dict(path), what="the tiny test model", path=path)
    x = torch.randn(5, 4)
    assert torch.equal(model(x), other(x))
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]  # no temporary file left behind


def test_ckpt_layout_is_the_originals(tmp_path):
    path = write_state_dict(_tiny().state_dict(), tmp_path / "m.ckpt")
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["state_dict"] and set(raw["state_dict"]) == {"0.weight", "0.bias", "2.weight"}


def test_mismatch_is_one_readable_line(tmp_path):
    state = _tiny().state_dict()
    state["extra.weight"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(7, 4)
    del state["2.weight"]
    with pytest.raises(UserError) as info:
        load_weights(_tiny(), state, what="the tiny test model", path=tmp_path / "x.ckpt")
    msg = str(info.value)
    assert "\n" not in msg
    assert "1 missing (2.weight)" in msg and "1 unexpected (extra.weight)" in msg
    assert "1 wrong shape (0.weight (7, 4) vs (3, 4))" in msg and "the tiny test model" in msg


def test_long_mismatch_lists_only_a_few_names():
    state = {f"k{i}": torch.zeros(1) for i in range(50)}
    with pytest.raises(UserError) as info:
        load_weights(_tiny(), state, what="the tiny test model")
    assert "50 unexpected" in str(info.value) and str(info.value).count("k") < 12


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_unreadable_files_are_one_line(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        read_state_dict(path)
    assert str(info.value).startswith(f"checkpoint {path}") and "\n" not in str(info.value)


class _RunsCode:
    """Unpickling this runs ``touch <marker>``: a checkpoint that would execute code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_refused_pickle_is_one_whole_line_without_torch_warnings(tmp_path, how):
    path, marker = tmp_path / "evil.ckpt", tmp_path / "ran"
    payload = {"state_dict": {"w": torch.zeros(2)}, "hook": _RunsCode(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))  # torch.load warns about protocol 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError) as info:
            read_state_dict(path)
    message = str(info.value)
    assert not caught, [str(w.message) for w in caught]
    assert not marker.exists()  # never unpickled with code
    assert "\n" not in message and "\x1b" not in message and "Re-running" not in message
    assert message.startswith(f"checkpoint {path}: ") and message.endswith("or .safetensors file")
    if how == "torch.save":
        assert "refused: besides tensors it holds Python objects (posix.system)" in message


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_state_dict(tmp_path / "absent.safetensors")


def test_truncated_safetensors(tmp_path):
    path = write_state_dict(_tiny().state_dict(), tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError):
        read_state_dict(path)


def test_prefix_helpers():
    state = {"model_dit.a": torch.zeros(1), "pretransform.model.b": torch.ones(1)}
    assert set(strip_prefix(state, "model_dit.")) == {"a"}
    assert set(add_prefix(strip_prefix(state, "pretransform.model."), "x.")) == {"x.b"}


@pytest.mark.reference
def test_fixture_checkpoints_read_in_both_formats(reference_fixtures):
    a = read_state_dict(reference_fixtures.path("tiny_mgeldm.ckpt"))
    b = read_state_dict(reference_fixtures.path("tiny_mgeldm.safetensors"))
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("model_dit.") for k in a) and any(k.startswith("pretransform.model.") for k in a)
    ae = read_state_dict(reference_fixtures.path("tiny_ae.ckpt"))
    assert set(ae) == set(strip_prefix(a, "pretransform.model."))
