"""The strip_comments stage: comments cut, empty lines suppressed, everything else untouched."""

from __future__ import annotations

import pytest

from pipeline.config.reader import load_config
from pipeline.gcode import parse_gcode
from pipeline.phases import Phase
from stages import BUILTIN_STAGES, stage_phases, stage_schemas, strip_comments


@pytest.fixture
def handler():
    return strip_comments.build({}, "strip_comments")


def call(handler, cmd, phase="queuing"):
    gcode, subcode = parse_gcode(cmd)
    return handler(None, phase, cmd, None, gcode, subcode=subcode, tags=frozenset())


CASES = {
    "comment cut": ("G1 X10 ; move", ("G1 X10",)),
    "comment without space": ("M104 S200;heat", ("M104 S200",)),
    "comment-only line suppressed": ("; layer 2", (None,)),
    "comment after whitespace suppressed": ("   ;note", (None,)),
    "empty line suppressed": ("", (None,)),
    "blank line suppressed": ("   ", (None,)),
    "plain command unchanged": ("G28", None),
    "escaped semicolon kept": ("M117 a\\;b", None),
}


@pytest.mark.parametrize(("cmd", "expected"), CASES.values(), ids=CASES.keys())
def test_strip_comments(handler, cmd, expected):
    assert call(handler, cmd) == expected


def test_same_result_in_the_sending_phase(handler):
    assert call(handler, "G1 X1 ; a", phase="sending") == ("G1 X1",)


def test_accepts_extra_positional_and_keyword_arguments(handler):
    assert handler(None, "queuing", "G1 ;x", None, "G1", None, None, "extra", more=1) == ("G1",)


def test_module_contract():
    assert BUILTIN_STAGES["strip_comments"] is strip_comments
    assert strip_comments.NAME == "strip_comments"
    assert {Phase.GCODE_QUEUING, Phase.GCODE_SENDING} == strip_comments.PHASES
    assert stage_phases()["strip_comments"] == strip_comments.PHASES


def test_declared_in_config_without_options():
    config = load_config("pipeline:\n  comm.protocol.gcode.sending:\n    - stage: strip_comments\n",
                         "t.yaml", stage_schemas=stage_schemas(), stage_phases=stage_phases())
    (spec,) = config.pipeline.for_phase(Phase.GCODE_SENDING)
    handler = strip_comments.build(spec.options, spec.id)
    assert call(handler, "G4 P100 ; wait") == ("G4 P100",)
