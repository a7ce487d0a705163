"""Progress displays: a tqdm bar on a terminal, whole plain lines in a log file or a pipe."""

from __future__ import annotations

import io

import torch

from mgeldm.progress import LineProgress, on_terminal, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _no_control_codes(text: str) -> bool:
    return "\r" not in text and "\x1b" not in text


def test_a_log_gets_one_plain_line_per_loop():
    log = io.StringIO()
    assert not on_terminal(log)
    items = list(progress_bar(range(5), desc="pre-encode slakh2100", unit="track", file=log))
    assert items == [0, 1, 2, 3, 4]
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pre-encode slakh2100: 5/5 track, ") and "done in" in lines[0]
    assert _no_control_codes(log.getvalue())


def test_nested_and_disabled_bars_print_nothing_in_a_log():
    log = io.StringIO()
    with progress_bar(total=3, desc="window 1", unit="step", nested=True, file=log) as bar:
        for _ in range(3):
            bar.update(1)
    list(progress_bar(range(3), desc="evaluate", disable=True, file=log))
    assert log.getvalue() == ""


def test_a_long_loop_prints_intermediate_lines():
    log = io.StringIO()
    bar = LineProgress(total=4, desc="synth corpus", unit="song", file=log, line_seconds=0.0)
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert all(line.startswith("synth corpus: ") for line in lines) and "done in" in lines[-1]
    assert [line.split(":")[1].split()[0] for line in lines] == ["1/4", "2/4", "3/4", "4/4", "4/4"]


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm.auto import tqdm

    term = _Terminal()
    bar = progress_bar(range(2), desc="evaluate", file=term)
    assert isinstance(bar, tqdm)
    list(bar)
    assert "evaluate" in term.getvalue()


def test_sampler_progress_in_a_log_has_no_cursor_codes(capfd):
    """The sampler's own bar (disable_progress=False) writes to stderr, which is no terminal here."""
    from mgeldm.diffusion.samplers import Known, sample_ddim
    from mgeldm.diffusion.schedule import sampling_times

    def denoiser(x, t):
        return torch.zeros_like(x)

    sample_ddim(
        denoiser,
        torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0)),
        sampling_times(3),
        Known(3),
        disable=False,
    )
    err = capfd.readouterr().err
    assert _no_control_codes(err), repr(err[:200])
    assert "sampling: 3/3 step" in err
