"""The sanitize_temperatures stage: out-of-range actual readings dropped, the rest untouched."""

from __future__ import annotations

import logging
import math

import pytest
from stage_fakes import FakeComm, assert_option_error, load

from pipeline.hooks.registry import build_pipeline
from pipeline.phases import Phase
from stages import BUILTIN_STAGES, sanitize_temperatures, stage_phases

NAN = math.nan


def build(**options):
    return sanitize_temperatures.build(options, "sanitize")


CASES = {
    "sane readings kept": (
        {}, {"T0": (210.1, 210.0), "B": (59.8, 60.0)}, {"T0": (210.1, 210.0), "B": (59.8, 60.0)}),
    "too hot dropped": (
        {}, {"T0": (999.0, 210.0), "B": (60.0, 60.0)}, {"B": (60.0, 60.0)}),
    "too cold dropped": (
        {}, {"T0": (-273.1, 0.0), "T1": (21.0, 0.0)}, {"T1": (21.0, 0.0)}),
    "not a number dropped": ({}, {"T0": (NAN, 200.0), "B": (30.0, None)}, {"B": (30.0, None)}),
    "range ends are sane": ({}, {"T0": (400.0, 0.0), "B": (-20.0, 0.0)},
                            {"T0": (400.0, 0.0), "B": (-20.0, 0.0)}),
    "missing actual kept": ({}, {"T0": (None, 200.0)}, {"T0": (None, 200.0)}),
    "targets are not checked": ({}, {"T0": (25.0, 999.0)}, {"T0": (25.0, 999.0)}),
    "custom sensors checked too": ({}, {"T0": (25.0, 0.0), "P": (1234.0, None)},
                                   {"T0": (25.0, 0.0)}),
    "everything bogus gives an empty dict": ({}, {"T0": (-500.0, 0.0), "B": (1e6, 0.0)}, {}),
    "the seed's 1..300 range": ({"min": 1.0, "max": 300.0},
                                {"T0": (0.5, 0.0), "T1": (300.0, 0.0), "B": (301.0, 0.0)},
                                {"T1": (300.0, 0.0)}),
    "only min given": ({"min": 10.0}, {"T0": (5.0, 0.0), "B": (390.0, 0.0)},
                       {"B": (390.0, 0.0)}),
}


@pytest.mark.parametrize(("options", "temps", "expected"), CASES.values(), ids=CASES.keys())
def test_sanitize(options, temps, expected):
    before = dict(temps)
    assert build(**options)(FakeComm(), temps) == expected
    assert temps.keys() == before.keys()  # the caller's dict is never changed


def test_unchanged_report_is_returned_as_is():
    temps = {"T0": (200.0, 200.0)}
    assert build()(None, temps) is temps


def test_drops_are_logged_at_debug(caplog):
    with caplog.at_level(logging.DEBUG, logger="printpipe.handlers"):
        build()(FakeComm(), {"T0": (999.0, 0.0)}, "extra", more=1)
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    assert "'sanitize'" in record.getMessage() and "999.0" in record.getMessage()


def test_module_contract():
    assert BUILTIN_STAGES["sanitize_temperatures"] is sanitize_temperatures
    assert stage_phases()["sanitize_temperatures"] == {Phase.TEMPERATURES_RECEIVED}


def test_declared_in_yaml_with_a_range():
    config = load("""
        pipeline:
          comm.protocol.temperatures.received:
            - stage: sanitize_temperatures
              with:
                min: 1
                max: 300.5
        """)
    (spec,) = config.pipeline.for_phase(Phase.TEMPERATURES_RECEIVED)
    assert dict(spec.options) == {"min": 1.0, "max": 300.5}
    pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES, comm=FakeComm())
    ((stage, result),) = pipeline.call(Phase.TEMPERATURES_RECEIVED,
                                       {"T0": (0.0, 0.0), "B": (300.5, 0.0)})
    assert stage.id == "sanitize_temperatures"
    assert result == {"B": (300.5, 0.0)}


def test_defaults_without_options():
    config = load("""
        pipeline:
          comm.protocol.temperatures.received:
            - stage: sanitize_temperatures
        """)
    (spec,) = config.pipeline.for_phase(Phase.TEMPERATURES_RECEIVED)
    assert dict(spec.options) == {"min": -20.0, "max": 400.0}


ERRORS = {
    "max not a number": ("""
        pipeline:
          comm.protocol.temperatures.received:
            - stage: sanitize_temperatures
              with:
                min: 0
                max: hot
        """, 7, "expected a float, found 'hot'", ".with.max"),
    "min a list": ("""
        pipeline:
          comm.protocol.temperatures.received:
            - stage: sanitize_temperatures
              with:
                min:
                  - 0
        """, 6, "expected a float", ".with.min"),
    "infinite max": ("""
        pipeline:
          comm.protocol.temperatures.received:
            - stage: sanitize_temperatures
              with:
                max: inf
        """, 6, "expected a finite number", ".with.max"),
    "min above max": ("""
        pipeline:
          comm.protocol.temperatures.received:
            - stage: sanitize_temperatures
              with:
                min: 300
                max: 250
        """, 5, "min (300) must be below max (250)", ".with"),
    "unknown option": ("""
        pipeline:
          comm.protocol.temperatures.received:
            - stage: sanitize_temperatures
              with:
                maximum: 250
        """, 6, "unknown key", ".with.maximum"),
    "wrong phase": ("""
        pipeline:
          comm.protocol.gcode.received:
            - stage: sanitize_temperatures
        """, 4, "cannot run in comm.protocol.gcode.received", ".stage"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key_end"), ERRORS.values(),
                         ids=ERRORS.keys())
def test_bad_options_name_the_line(text, line, fragment, key_end):
    assert_option_error(text, line, fragment, key_end)
