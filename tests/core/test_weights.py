"""Missing weights: one error naming every missing piece (checkpoint, CLAP, tokenizer files), raised before any
weights are read, from the API and from infer.py; the tokenizer found where scripts/download_weights.sh puts it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mgeldm.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bare_machine(tmp_path, monkeypatch):
    """A working directory without checkpoints/, and no roberta-base in the Hugging Face cache."""
    import mgeldm.models.clap.tokenizer as tokenizer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tokenizer, "_cached_roberta_folder", lambda: None)
    return tmp_path


def _no_heavy_work(monkeypatch):
    import mgeldm.api as api
    import mgeldm.models.mgeldm as models

    def refuse(*args, **kwargs):
        raise AssertionError("weights were read before the missing files were reported")

    monkeypatch.setattr(models, "load_mgeldm", refuse)
    monkeypatch.setattr(api, "_build_conditioner", refuse)


def _assert_names_all_three(message: str, ckpt: str = "ckpt", clap: str = "clap_ckpt") -> None:
    """The API names its parameters (``ckpt``, ``clap_ckpt``), infer.py its options (``ckpt_path``, ...)."""
    assert message.startswith("missing files: ")
    assert f"; {clap}=" in message and f" {ckpt}=" in message.replace("missing files:", "")
    assert f"{ckpt}=unwrapped_DiT.ckpt: no such file" in message
    assert f"{clap}=music_audioset_epoch_15_esc_90.14.pt: no such file" in message
    assert "RoBERTa tokenizer" in message and "vocab.json and merges.txt" in message
    assert "scripts/download_weights.sh" in message


def test_api_names_every_missing_file_at_once(bare_machine, monkeypatch):
    """The README's API snippet on a machine without the weights."""
    from mgeldm.api import MGELDM

    _no_heavy_work(monkeypatch)
    with pytest.raises(UserError) as err:
        MGELDM.from_pretrained("unwrapped_DiT.ckpt", "music_audioset_epoch_15_esc_90.14.pt", device="cpu")
    _assert_names_all_three(str(err.value))


def test_infer_names_every_missing_file_in_one_line(bare_machine, monkeypatch, capsys):
    from hydra import compose, initialize_config_dir

    from mgeldm.cli.infer import run_config

    _no_heavy_work(monkeypatch)
    (bare_machine / "song.wav").write_bytes(b"")  # never read: the files are checked first
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        cfg = compose(
            "dit",
            overrides=[
                "ckpt_path=unwrapped_DiT.ckpt",
                "clap_ckpt_path=music_audioset_epoch_15_esc_90.14.pt",
                "++task=source_extract",
                "++given_wav_path=song.wav",
                "++text_prompt=vocals",
            ],
        )
    with pytest.raises(SystemExit) as exit_info:
        run_config(cfg)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("infer.py: error: "), lines
    _assert_names_all_three(lines[0][len("infer.py: error: ") :], "ckpt_path", "clap_ckpt_path")


def test_only_what_is_missing_is_named(bare_machine, clap_fixtures, reference_fixtures, monkeypatch):
    """The tokenizer in checkpoints/roberta-base (where download_weights.sh puts it) is found; the missing
    CLAP file is the only complaint; a model whose conditioner takes no checkpoint needs none."""
    from mgeldm.model_config import default_model_config, missing_inference_files
    from mgeldm.models.clap.tokenizer import find_roberta_tokenizer

    folder = bare_machine / "checkpoints" / "roberta-base"
    folder.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(clap_fixtures.path("tokenizer") / name, folder / name)
    assert find_roberta_tokenizer() == Path("checkpoints/roberta-base")
    ckpt = reference_fixtures.path("tiny_mgeldm.ckpt")
    cfg = default_model_config()  # configs/dit.yaml: CLAP at checkpoints/music_audioset_epoch_15_esc_90.14.pt
    assert [m.option for m in missing_inference_files(ckpt, cfg)] == ["clap_ckpt"]
    assert missing_inference_files(ckpt, default_model_config("quickstart_dit"), text=True) == []
