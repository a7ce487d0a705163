"""Window plans (docs/compatibility.md#sampling-and-the-five-tasks, difference 8): exact totals for any length and any
overlap below one window."""

import math

import pytest

from mgeldm.diffusion.windows import covered_frames, plan_windows
from mgeldm.errors import UserError
from mgeldm.tasks.windowing import overlap_frames, seconds_to_frames, seconds_to_samples

FRAME_RATE = 16000 / 2048  # 7.8125 latent frames per second (docs/compatibility.md#constants)
S = 100


def _check_plan(frames: int, window: int, overlap: int) -> None:
    plan = plan_windows(frames, window, overlap)
    total = max(frames, window)
    assert covered_frames(plan) == total
    assert plan[0].start == 0 and plan[0].overlap == 0
    assert plan[-1].end == total
    produced = 0
    for w in plan:
        assert w.length == window  # the DiT always sees whole windows
        assert w.start >= 0
        assert w.new_start == produced  # contiguous, no gap, no double write
        if w.index > 0:
            assert overlap <= w.overlap < window
        produced = w.new_start + w.new
    # same window count as the original's formula when its bookkeeping is valid
    if frames > window:
        assert len(plan) == math.ceil((frames - window) / (window - overlap)) + 1


@pytest.mark.parametrize("overlap", [0, 1, 24, 40, 47, 50, 51, 55, 75, 90, 98, 99])
@pytest.mark.parametrize("frames", [1, 37, 99, 100, 101, 149, 150, 199, 200, 235, 300, 1000, 1407])
def test_plan_covers_exactly(frames, overlap):
    _check_plan(frames, S, overlap)


@pytest.mark.parametrize("window", [1, 2, 7, 16])
def test_plan_small_windows_every_overlap(window):
    for overlap in range(window):
        for frames in range(1, 5 * window + 3):
            _check_plan(frames, window, overlap)


def test_overlaps_above_half_window_are_exact():
    # difference 8 of docs/compatibility.md: the original returns 205 of 235 frames (30 s, 7 s overlap) and 220 of 300.
    seven = overlap_frames(7.0, FRAME_RATE, S)
    assert seven == 55
    assert covered_frames(plan_windows(seconds_to_frames(30.0, FRAME_RATE), S, seven)) == 235
    assert covered_frames(plan_windows(300, S, seven)) == 300
    plan = plan_windows(300, S, 80)
    assert [w.start for w in plan] == [0, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200]


def test_short_inputs_are_one_padded_window():
    plan = plan_windows(20, S, 40)
    assert len(plan) == 1 and plan[0].start == 0 and plan[0].length == S


def test_last_window_is_right_aligned():
    plan = plan_windows(235, S, 40)
    assert [(w.start, w.overlap) for w in plan] == [(0, 0), (60, 40), (120, 40), (135, 85)]


@pytest.mark.parametrize(
    "seconds,frames", [(3.0, 24), (5.0, 40), (6.0, 47), (7.0, 55), (6.4, 50), (0.0, 0), (0.128, 1), (12.672, 99)]
)
def test_overlap_frames_like_the_original(seconds, frames):
    assert overlap_frames(seconds, FRAME_RATE, S) == frames


@pytest.mark.parametrize("seconds", [12.8, 13.0, 100.0, -1.0, float("nan"), float("inf")])
def test_overlap_must_be_below_one_window(seconds):
    with pytest.raises(UserError, match="^overlap="):
        overlap_frames(seconds, FRAME_RATE, S)


def test_durations():
    assert seconds_to_frames(30.0, FRAME_RATE) == 235
    assert seconds_to_frames(12.8, FRAME_RATE) == 100
    assert seconds_to_frames(5.0, FRAME_RATE) == 40
    assert seconds_to_samples(5.0, 16000) == 80000
    assert seconds_to_samples(0.1, 16000) == 1600


@pytest.mark.parametrize("args", [(0, S, 0), (10, S, S), (10, S, -1), (10, 0, 0)])
def test_plan_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        plan_windows(*args)
