"""mgeldm.checks: the one module of scalar checks (entry points, the API, the settings of pre-encoding)."""

from __future__ import annotations

import numpy as np
import pytest

from mgeldm import checks
from mgeldm.errors import OptionError


@pytest.mark.parametrize(
    "value,integer,number",
    [
        (3, True, True),
        (np.int64(3), True, True),
        (4.0, True, True),
        (2.5, False, True),
        (np.float32(0.5), False, True),
        (True, False, False),
        (False, False, False),
        ("3", False, False),
        (None, False, False),
        (float("nan"), False, False),
        (float("inf"), False, False),
    ],
)
def test_what_counts_as_an_integer_and_a_number(value, integer, number):
    assert checks.is_integer(value) is integer
    assert checks.is_number(value) is number


@pytest.mark.parametrize(
    "call,line",
    [
        (lambda: checks.count("steps", 0), "steps=0: expected an integer >= 1"),
        (lambda: checks.count("steps", "4"), "steps='4': expected an integer >= 1"),
        (lambda: checks.integer("output_sr", True, 1), "output_sr=True: expected an integer >= 1"),
        (lambda: checks.number("cfg_scale", float("inf")), "cfg_scale=inf: expected a finite number"),
        (lambda: checks.number("eta", -1, 0.0), "eta=-1: expected a number >= 0"),
        (
            lambda: checks.number("overlap", "x", 0.0, "a number of seconds"),
            "overlap='x': expected a number of seconds >= 0",
        ),
        (lambda: checks.boolean("compile", 1), "compile=1: expected true or false"),
        (lambda: checks.choice("sampler", "euler", ("ddim", "heun")), "sampler=euler: expected one of ddim, heun"),
        (lambda: checks.seed(-2), "seed=-2: expected an integer >= 0"),
        (lambda: checks.seed(1.0), "seed=1.0: expected an integer >= 0"),
    ],
)
def test_each_rule_refuses_in_one_line_naming_the_parameter(call, line):
    with pytest.raises(OptionError) as err:
        call()
    assert str(err.value) == line and "\n" not in line


def test_accepted_values_come_back_in_plain_types():
    assert checks.count("steps", 4.0) == 4 and type(checks.count("steps", np.int32(4))) is int
    assert checks.number("cfg_scale", 2) == 2.0 and type(checks.number("cfg_scale", 2)) is float
    assert checks.seed(np.int64(7)) == 7 and checks.boolean("x", False) is False
    assert checks.parse_number("1e-4") == pytest.approx(1e-4) and checks.parse_number("nan") is None
    assert checks.parse_number(True) is None and checks.parse_number("abc") is None
    assert [checks.is_null(v) for v in (None, "", " null ", "None", "x", 0)] == [True, True, True, True, False, False]


def test_predicates_of_settings_stored_as_given():
    assert [checks.is_count(v) for v in (1, np.int64(3), 0, 4.0, True, "2")] == [True, True, False, False, False, False]
    assert [checks.is_positive(v) for v in (0.5, 2, 0, -1, True, float("inf"))] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
