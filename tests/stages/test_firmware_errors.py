"""The firmware_errors stage: errors containing a configured phrase are handled, others not."""

from __future__ import annotations

import logging

import pytest
from stage_fakes import FakeComm, assert_option_error, load

from pipeline.hooks.registry import build_pipeline
from pipeline.phases import Phase
from stages import BUILTIN_STAGES, firmware_errors, stage_phases

SEED = ("fan error", "Bed Missing")

CASES = {
    "phrase as written": ("fan error on E0", True),
    "other case": ("FAN ERROR", True),
    "configured in another case": ("bed missing", True),
    "inside a longer text": ("Printer halted: BED MISSING, check wiring", True),
    "unrelated error": ("Thermal Runaway, system stopped! Heater_ID: 0", None),
    "partial phrase": ("fan", None),
    "empty message": ("", None),
}


@pytest.mark.parametrize(("message", "expected"), CASES.values(), ids=CASES.keys())
def test_firmware_errors(message, expected):
    handler = firmware_errors.build({"handled": SEED}, "errors")
    assert handler(FakeComm(), message) is expected


def test_handled_errors_are_logged(caplog):
    handler = firmware_errors.build({"handled": SEED}, "errors")
    with caplog.at_level(logging.DEBUG, logger="printpipe.handlers"):
        assert handler(FakeComm(), "Fan Error", "extra", more=1) is True
        assert handler(FakeComm(), "MINTEMP triggered") is None
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "'Fan Error'" in record.getMessage() and "'errors'" in record.getMessage()


def test_needs_a_phrase():
    with pytest.raises(ValueError):
        firmware_errors.build({"handled": ("  ",)}, "errors")


def test_module_contract():
    assert BUILTIN_STAGES["firmware_errors"] is firmware_errors
    assert stage_phases()["firmware_errors"] == {Phase.GCODE_ERROR}


def test_declared_in_yaml_and_run_by_the_chain():
    config = load("""
        pipeline:
          comm.protocol.gcode.error:
            - stage: firmware_errors
              with:
                handled:
                  - fan error
                  - '  Bed Missing  '
        """)
    (spec,) = config.pipeline.for_phase(Phase.GCODE_ERROR)
    assert spec.options["handled"] == ("fan error", "Bed Missing")
    pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES, comm=FakeComm())
    ((_, handled),) = pipeline.call(Phase.GCODE_ERROR, "Bed missing!")
    assert handled is True
    ((_, handled),) = pipeline.call(Phase.GCODE_ERROR, "Heating failed")
    assert handled is None


ERRORS = {
    "handled is a string": ("""
        pipeline:
          comm.protocol.gcode.error:
            - stage: firmware_errors
              with:
                handled: fan error
        """, 6, "expected a sequence", ".with.handled"),
    "an item is a list": ("""
        pipeline:
          comm.protocol.gcode.error:
            - stage: firmware_errors
              with:
                handled:
                  - fan error
                  - - nested
        """, 8, "expected a piece of error text, found a sequence", ".with.handled[1]"),
    "blank phrase": ("""
        pipeline:
          comm.protocol.gcode.error:
            - stage: firmware_errors
              with:
                handled:
                  - fan error
                  - ''
        """, 8, "expected a piece of error text, found ''", ".with.handled[1]"),
    "handled missing": ("""
        pipeline:
          comm.protocol.gcode.error:
            - stage: firmware_errors
        """, 4, "required key(s) 'handled' not found", ".with"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key_end"), ERRORS.values(),
                         ids=ERRORS.keys())
def test_bad_options_name_the_line(text, line, fragment, key_end):
    assert_option_error(text, line, fragment, key_end)
