"""The tap stage: counts commands by G-code word in any G-code phase, changes nothing."""

from __future__ import annotations

import logging

import pytest
from stage_fakes import FakeComm, UntouchableComm, assert_option_error, call, load

from pipeline.gcode import Command
from pipeline.hooks.registry import build_pipeline
from pipeline.phases import GCODE_PHASES, Phase
from stages import BUILTIN_STAGES, stage_phases, tap

CASES = {
    "nothing yet": ([], {}, 0),
    "one command": (["G28"], {"G28": 1}, 1),
    "by word, parameters ignored": (["G1 X1", "G1 X2 E0.1", "G0 Z5"], {"G1": 2, "G0": 1}, 3),
    "subcodes count under their word": (["M80.1", "M80"], {"M80": 2}, 2),
    "tool changes count as T": (["T0", "T1"], {"T": 2}, 2),
    "lines without a word count under None": (["@pause", "hello"], {None: 2}, 2),
}


@pytest.mark.parametrize(("commands", "counts", "total"), CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("phase", [p.short for p in GCODE_PHASES])
def test_tap_counts(commands, counts, total, phase):
    handler = tap.build({}, "tap")
    assert [call(handler, c, FakeComm(), phase=phase) for c in commands] == [None] * len(commands)
    assert handler.counts == counts
    assert handler.total == total


def test_without_log_the_comm_is_never_touched(caplog):
    handler = tap.build({"log": False}, "tap")
    with caplog.at_level(logging.DEBUG):
        assert call(handler, "G1 X1", UntouchableComm()) is None
    assert caplog.records == []
    assert handler.total == 1


def test_log_writes_each_command_at_debug(caplog):
    handler = tap.build({"log": True}, "probe")
    with caplog.at_level(logging.DEBUG, logger="printpipe.handlers"):
        call(handler, "M104 S200", FakeComm(), phase="sent", tags=frozenset({"source:file"}))
        handler(FakeComm(), "sent", "G28", None, "G28", None, None, "extra", more=1)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG] * 2
    first = caplog.records[0].getMessage()
    assert "'probe'" in first and "M104 S200" in first and "source:file" in first
    assert handler.counts == {"M104": 1, "G28": 1}


def test_reset_and_separate_counts():
    first, second = tap.build({}, "a"), tap.build({}, "b")
    call(first, "G1 X1")
    assert (first.total, second.total) == (1, 0)
    first.reset()
    assert first.counts == {} and first.total == 0


def test_module_contract():
    assert BUILTIN_STAGES["tap"] is tap
    assert stage_phases()["tap"] == set(GCODE_PHASES)


def test_declared_in_yaml_in_every_gcode_phase():
    config = load("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: tap
          comm.protocol.gcode.queued:
            - stage: tap
          comm.protocol.gcode.sending:
            - stage: tap
              id: tap_sending
          comm.protocol.gcode.sent:
            - stage: tap
              with:
                log: yes
        """)
    options = {p: dict(config.pipeline.for_phase(p)[0].options) for p in GCODE_PHASES}
    assert options[Phase.GCODE_QUEUING] == {"log": False}
    assert options[Phase.GCODE_SENT] == {"log": True}
    pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES, comm=FakeComm())
    cmd = Command.parse("G1 X1", tags=frozenset({"source:api"}))
    assert pipeline.run_command_phase(Phase.GCODE_QUEUING, pipeline.queuing, cmd) == [cmd]
    pipeline.notify_phase(Phase.GCODE_SENT, pipeline.sent, cmd)
    pipeline.notify_phase(Phase.GCODE_SENT, pipeline.sent, cmd)
    assert pipeline.queuing[0].handler.counts == {"G1": 1}
    assert pipeline.sent[0].handler.total == 2
    assert isinstance(pipeline.sent[0].handler, tap.LoggingTap)
    assert pipeline.sending[0].handler.total == 0
    assert pipeline.queuing[0].counters.rewrites == 0


ERRORS = {
    "log not a boolean": ("""
        pipeline:
          comm.protocol.gcode.sent:
            - stage: tap
              with:
                log: loud
        """, 6, "expected a boolean value", ".with.log"),
    "log is a list": ("""
        pipeline:
          comm.protocol.gcode.sent:
            - stage: tap
              with:
                log:
                  - yes
        """, 6, "expected a bool, found a sequence", ".with.log"),
    "unknown option": ("""
        pipeline:
          comm.protocol.gcode.sent:
            - stage: tap
              with:
                verbose: yes
        """, 6, "unknown key", ".with.verbose"),
    "wrong phase": ("""
        pipeline:
          comm.protocol.gcode.received:
            - stage: tap
        """, 4, "cannot run in comm.protocol.gcode.received", ".stage"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key_end"), ERRORS.values(),
                         ids=ERRORS.keys())
def test_bad_options_name_the_line(text, line, fragment, key_end):
    assert_option_error(text, line, fragment, key_end)
