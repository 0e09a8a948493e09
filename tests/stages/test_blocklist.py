"""The blocklist stage: listed commands suppressed (quietly or with an event), others untouched."""

from __future__ import annotations

import logging

import pytest
from stage_fakes import FakeComm, UntouchableComm, assert_option_error, call, load

from pipeline.gcode import Command
from pipeline.hooks.registry import build_pipeline
from pipeline.phases import Phase
from stages import BUILTIN_STAGES, blocklist, stage_phases

DROP = (None,)
WORDS = ("M300", "M80.1", "T2", "G29")

CASES = {
    "listed word": ("M300 S440 P200", DROP),
    "listed word, no parameters": ("G29", DROP),
    "listed word covers its subcodes": ("M300.2 S1", DROP),
    "word must match exactly": ("M3000", None),
    "subcode entry blocks that subcode": ("M80.1", DROP),
    "subcode entry leaves the bare word": ("M80", None),
    "subcode entry leaves other subcodes": ("M80.2", None),
    "tool entry blocks that tool": ("T2", DROP),
    "tool entry leaves other tools": ("T1", None),
    "tool entry leaves T20": ("T20", None),
    "unlisted command": ("G1 X10", None),
    "not G-code": ("@pause", None),
    "lower case is another word": ("m300", None),
}


@pytest.mark.parametrize(("cmd", "expected"), CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("phase", ["queuing", "sending"])
def test_blocklist(cmd, expected, phase):
    handler = blocklist.build({"commands": WORDS}, "block")
    assert call(handler, cmd, FakeComm(), phase=phase) == expected


def test_bare_t_blocks_every_tool_change():
    handler = blocklist.build({"commands": ("T",)}, "block")
    assert [call(handler, c) for c in ("T0", "T7", "M104 T1 S200")] == [DROP, DROP, None]


def test_drop_is_quiet():
    comm = FakeComm()
    assert call(blocklist.build({"commands": WORDS, "mode": "drop"}, "b"), "M300", comm) == DROP
    assert comm.events == []


def test_reject_fires_command_suppressed_and_warns(caplog):
    comm = FakeComm()
    handler = blocklist.build({"commands": WORDS, "mode": "reject"}, "no-beeps")
    with caplog.at_level(logging.INFO, logger="printpipe.handlers"):
        assert call(handler, "M300 S440 P200", comm) == DROP
        assert call(handler, "G1 X1", comm) is None
    ((name, payload),) = comm.events
    assert name == "CommandSuppressed"
    assert payload["command"] == "M300 S440 P200"
    assert payload["severity"] == "error"
    assert payload["message"].endswith("blocked by stage 'no-beeps'")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.getMessage() == payload["message"]


@pytest.mark.parametrize(("printing", "expected"), [(True, DROP), (False, None)])
def test_only_while_printing(printing, expected):
    comm = FakeComm(printing=printing)
    handler = blocklist.build({"commands": WORDS, "only_while_printing": True}, "b")
    assert call(handler, "M300", comm) == expected
    assert comm.printing_asked == 1


@pytest.mark.parametrize("cmd", ["G1 X1 Y1 E0.1", "M105", "T1", "M80", "M80.2", "@pause"])
def test_hot_path_never_touches_comm(cmd):
    handler = blocklist.build({"commands": WORDS, "mode": "reject",
                               "only_while_printing": True}, "b")
    assert call(handler, cmd, UntouchableComm()) is None


def test_module_contract():
    assert BUILTIN_STAGES["blocklist"] is blocklist
    assert stage_phases()["blocklist"] == {Phase.GCODE_QUEUING, Phase.GCODE_SENDING}


def test_declared_in_yaml_with_defaults():
    config = load("pipeline:\n  comm.protocol.gcode.queuing:\n    - stage: blocklist\n"
                  "      with:\n        commands:\n          - M300\n")
    (spec,) = config.pipeline.for_phase(Phase.GCODE_QUEUING)
    assert dict(spec.options) == {"commands": ("M300",), "mode": "drop",
                                  "only_while_printing": False}


@pytest.mark.parametrize(("mode", "events"), [("drop", 0), ("reject", 1)])
def test_both_modes_count_as_suppressions_in_the_chain(mode, events):
    config = load(f"""
        pipeline:
          comm.protocol.gcode.sending:
            - stage: blocklist
              id: quiet
              with:
                commands:
                  - M300
                  - M80.1
                mode: {mode}
                only_while_printing: yes
        """)
    (spec,) = config.pipeline.for_phase(Phase.GCODE_SENDING)
    assert spec.options["only_while_printing"] is True
    comm = FakeComm(printing=True)
    pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES, comm=comm)
    run = pipeline.run_command_phase
    assert run(Phase.GCODE_SENDING, pipeline.sending, Command.parse("M300 S1")) == []
    assert run(Phase.GCODE_SENDING, pipeline.sending, Command.parse("M80.1")) == []
    assert [c.line for c in run(Phase.GCODE_SENDING, pipeline.sending,
                                 Command.parse("M80"))] == ["M80"]
    (stage,) = pipeline.sending
    assert (stage.counters.calls, stage.counters.suppressions) == (3, 2)
    assert len(comm.events) == 2 * events


ERRORS = {
    "only_while_printing not a boolean": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: blocklist
              with:
                commands:
                  - M300
                only_while_printing: maybe
        """, 8, "expected a boolean value", ".with.only_while_printing"),
    "commands is a string": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: blocklist
              with:
                commands: M300
        """, 6, "expected a sequence", ".with.commands"),
    "not a G-code word": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: blocklist
              with:
                commands:
                  - M300
                  # lower case is not G-code
                  - m112
        """, 9, "expected a G-code word", ".with.commands[1]"),
    "unknown mode": ("""
        pipeline:
          comm.protocol.gcode.sending:
            - stage: blocklist
              with:
                commands:
                  - M300
                mode: explode
        """, 8, "expected one of: drop, reject", ".with.mode"),
    "no commands": ("""
        pipeline:
          comm.protocol.gcode.sending:
            - stage: blocklist
        """, 4, "required key(s) 'commands' not found", ".with"),
    "wrong phase": ("""
        pipeline:
          comm.protocol.gcode.sent:
            - stage: blocklist
              with:
                commands:
                  - M300
        """, 4, "cannot run in comm.protocol.gcode.sent", ".stage"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key_end"), ERRORS.values(),
                         ids=ERRORS.keys())
def test_bad_options_name_the_line(text, line, fragment, key_end):
    assert_option_error(text, line, fragment, key_end)
