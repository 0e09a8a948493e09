"""The read_m115 stage: M115 answers parsed and reported, every line passed on unchanged."""

from __future__ import annotations

import logging

import pytest
from stage_fakes import FakeComm, UntouchableComm, assert_option_error, load

from pipeline.hooks.registry import build_pipeline
from pipeline.phases import Phase
from stages import BUILTIN_STAGES, read_m115, stage_phases

MARLIN = ("FIRMWARE_NAME:Marlin 2.1.2 (Github) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin "
          "PROTOCOL_VERSION:1.0 MACHINE_TYPE:Ender-3 Pro EXTRUDER_COUNT:1")

CASES = {
    "Marlin answer": (MARLIN, "Marlin 2.1.2 (Github)", "Ender-3 Pro"),
    "answer after ok": ("ok FIRMWARE_NAME:Prusa-Firmware 3.13 MACHINE_TYPE:MK3S",
                        "Prusa-Firmware 3.13", "MK3S"),
    "no machine type": ("FIRMWARE_NAME:Klipper PROTOCOL_VERSION:1.0", "Klipper", None),
    "Malyan dot form": ("NAME. Malyan VER: 2.9 MODEL: M200 HW: HA02", "Malyan 2.9", None),
}


@pytest.mark.parametrize(("line", "name", "machine"), CASES.values(), ids=CASES.keys())
def test_m115_answers_are_read(line, name, machine, caplog):
    handler = read_m115.build({}, "m115")
    with caplog.at_level(logging.INFO, logger="printpipe.handlers"):
        assert handler(FakeComm(), line) is line
    assert handler.info is not None
    assert handler.machine_type == machine
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert repr(name) in record.getMessage() and repr(machine) in record.getMessage()


OTHER_LINES = ["ok", "ok T:210.0 /210.0 B:60.0 /60.0", "echo:busy: processing", "start",
               "Cap:AUTOREPORT_TEMP:1", "// action:pause", "NAMEPLATE is not an answer", ""]


@pytest.mark.parametrize("line", OTHER_LINES)
def test_other_lines_pass_untouched_without_touching_comm(line):
    handler = read_m115.build({}, "m115")
    assert handler(UntouchableComm(), line) is line
    assert handler.info is None and handler.machine_type is None


def test_info_keeps_the_last_answer():
    handler = read_m115.build({}, "m115")
    comm = FakeComm()
    handler(comm, MARLIN)
    handler(comm, "ok")
    assert handler.info["MACHINE_TYPE"] == "Ender-3 Pro"
    assert handler.info["EXTRUDER_COUNT"] == "1"
    handler(comm, "FIRMWARE_NAME:Marlin MACHINE_TYPE:Voron", "extra", more=1)
    assert handler.machine_type == "Voron"
    assert comm.events == []  # no `event:` option, no event


def test_event_option_publishes_the_answer():
    handler = read_m115.build({"event": "MachineTypeReported"}, "m115")
    comm = FakeComm()
    handler(comm, MARLIN)
    ((name, payload),) = comm.events
    assert name == "MachineTypeReported"
    assert payload["firmware_name"] == "Marlin 2.1.2 (Github)"
    assert payload["machine_type"] == "Ender-3 Pro"
    assert payload["data"]["PROTOCOL_VERSION"] == "1.0"


def test_module_contract():
    assert BUILTIN_STAGES["read_m115"] is read_m115
    assert stage_phases()["read_m115"] == {Phase.GCODE_RECEIVED}


def test_declared_in_yaml_and_run_by_the_chain():
    config = load("""
        pipeline:
          comm.protocol.gcode.received:
            - stage: read_m115
              id: machine
              with:
                event: plugin_machine_type
        """)
    (spec,) = config.pipeline.for_phase(Phase.GCODE_RECEIVED)
    assert (spec.id, dict(spec.options)) == ("machine", {"event": "plugin_machine_type"})
    comm = FakeComm()
    pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES, comm=comm)
    assert pipeline.filter_received(MARLIN) == MARLIN
    assert pipeline.filter_received("ok") == "ok"
    (stage,) = pipeline.received
    assert stage.handler.machine_type == "Ender-3 Pro"
    assert [name for name, _ in comm.events] == ["plugin_machine_type"]
    assert (stage.counters.rewrites, stage.counters.suppressions) == (0, 0)


def test_no_options_means_no_event():
    config = load("pipeline:\n  comm.protocol.gcode.received:\n    - stage: read_m115\n")
    (spec,) = config.pipeline.for_phase(Phase.GCODE_RECEIVED)
    assert dict(spec.options) == {}


ERRORS = {
    "event is a list": ("""
        pipeline:
          comm.protocol.gcode.received:
            - stage: read_m115
              with:
                event:
                  - one
        """, 6, "expected an event name, found a sequence", ".with.event"),
    "event with spaces": ("""
        pipeline:
          comm.protocol.gcode.received:
            - stage: read_m115
              with:
                # what to publish
                event: machine type
        """, 7, "expected an event name", ".with.event"),
    "wrong phase": ("""
        pipeline:
          comm.protocol.gcode.sent:
            - stage: read_m115
        """, 4, "cannot run in comm.protocol.gcode.sent", ".stage"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key_end"), ERRORS.values(),
                         ids=ERRORS.keys())
def test_bad_options_name_the_line(text, line, fragment, key_end):
    assert_option_error(text, line, fragment, key_end)
