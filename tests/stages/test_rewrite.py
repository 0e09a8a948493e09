"""The rewrite stage: rule semantics, return values, and its schema's line-numbered errors."""

from __future__ import annotations

import pytest
from stage_fakes import assert_option_error, call, load

from pipeline.phases import Phase
from stages import BUILTIN_STAGES, rewrite, stage_schemas


def build(*rules: dict) -> object:
    return rewrite.build({"rules": tuple(rules)}, "rewrite")


FAN_OFF = {"gcode": "M107", "replace": "M106 S0"}

CASES = {
    "gcode rule replaces the whole command": ([FAN_OFF], "M107", ("M106 S0",)),
    "gcode rule ignores other commands": ([FAN_OFF], "M106 S255", None),
    "gcode rule matches the word exactly": ([FAN_OFF], "M1070", None),
    "gcode rule with parameters": ([FAN_OFF], "M107 P1", ("M106 S0",)),
    "empty replace suppresses": ([{"gcode": "M300", "replace": ""}], "M300 S440 P200", (None,)),
    "non-gcode lines pass gcode rules": ([FAN_OFF], "@pause", None),
    "pattern with a group": ([{"pattern": r"^M104 S(\d+)$", "replace": r"M104 S\1 T0"}],
                             "M104 S210", ("M104 S210 T0",)),
    "pattern not matching": ([{"pattern": r"^M104 S(\d+)$", "replace": r"M104 S\1 T0"}],
                             "M140 S60", None),
    "pattern substituting to nothing suppresses": ([{"pattern": r"^M117.*", "replace": ""}],
                                                   "M117 Hello", (None,)),
    "pattern matching without a change": ([{"pattern": "G1", "replace": "G1"}], "G1 X1", None),
    "pattern on a non-gcode line": ([{"pattern": "^@pause$", "replace": "M0"}], "@pause",
                                    ("M0",)),
    "first matching rule wins (pattern first)": (
        [{"pattern": "^M107$", "replace": "M106 S1"}, FAN_OFF], "M107", ("M106 S1",)),
    "first matching rule wins (gcode first)": (
        [FAN_OFF, {"pattern": "^M107$", "replace": "M106 S1"}], "M107", ("M106 S0",)),
    "earlier rule for the same word wins": (
        [FAN_OFF, {"gcode": "M107", "replace": "M106 S9"}], "M107", ("M106 S0",)),
    "subcode rule matches its subcode only": (
        [{"gcode": "M80.1", "replace": "M80"}], "M80.1", ("M80",)),
    "subcode rule leaves other subcodes": (
        [{"gcode": "M80.1", "replace": "M80"}], "M80.2", None),
    "word rule covers every subcode": ([{"gcode": "M80", "replace": "M81"}], "M80.3", ("M81",)),
    "T rule matches any tool": ([{"gcode": "T", "replace": "T0"}], "T1", ("T0",)),
}


@pytest.mark.parametrize(("rules", "cmd", "expected"), CASES.values(), ids=CASES.keys())
def test_rewrite(rules, cmd, expected):
    assert call(build(*rules), cmd) == expected


def test_sending_phase_and_cmd_type_are_accepted():
    handler = build(FAN_OFF)
    assert call(handler, "M107", cmd_type="fan", phase="sending") == ("M106 S0",)
    assert handler(None, "sending", "M107", None, "M107", None, None, "x", y=1) == ("M106 S0",)


def test_module_contract():
    assert BUILTIN_STAGES["rewrite"] is rewrite
    assert {Phase.GCODE_QUEUING, Phase.GCODE_SENDING} == rewrite.PHASES
    assert stage_schemas()["rewrite"] is rewrite.SCHEMA


def test_rules_from_yaml_build_a_working_handler():
    config = load(r"""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: rewrite
              with:
                rules:
                  - gcode: M107
                    replace: M106 S0
                  - pattern: '^M104 S(?P<t>\d+)'
                    replace: 'M104 S\g<t> ; was M104'
                  - gcode: M300
                    replace:
        """)
    (spec,) = config.pipeline.for_phase(Phase.GCODE_QUEUING)
    handler = rewrite.build(spec.options, spec.id)
    assert call(handler, "M107") == ("M106 S0",)
    assert call(handler, "M104 S200") == ("M104 S200 ; was M104",)
    assert call(handler, "M300 S1") == (None,)
    assert call(handler, "G28") is None


ERRORS = {
    "invalid regex": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: rewrite
              with:
                rules:
                  - gcode: M107
                    replace: M106 S0
                  - pattern: 'M10(4'
                    replace: M104
        """, 9, "expected a Python regular expression", ".with.rules[1].pattern"),
    "template refers to a missing group": ("""
        pipeline:
          comm.protocol.gcode.sending:
            - stage: rewrite
              with:
                rules:
                  - pattern: '^M104 S(\\d+)'
                    replace: 'M104 S\\2'
        """, 7, "does not fit the pattern", ".with.rules[0]"),
    "both gcode and pattern": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: rewrite
              with:
                rules:
                  - gcode: M107
                    pattern: M107
                    replace: M106 S0
        """, 7, "exactly one of `gcode:` or `pattern:`", ".with.rules[0]"),
    "neither gcode nor pattern": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: rewrite
              with:
                rules:
                  - replace: M106 S0
        """, 7, "exactly one of `gcode:` or `pattern:`", ".with.rules[0]"),
    "bad gcode word": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: rewrite
              with:
                rules:
                  # the fan
                  - gcode: m107
                    # lower case is not G-code
                    replace: M106 S0
        """, 8, "expected a G-code word", ".with.rules[0].gcode"),
    "missing replace": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: rewrite
              with:
                rules:
                  - gcode: M107
        """, 7, "required key(s) 'replace' not found", ".with.rules[0]"),
    "no rules": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: rewrite
        """, 4, "required key(s) 'rules' not found", ".with"),
    "multi-line replace": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: rewrite
              with:
                rules:
                  - gcode: M107
                    replace: |
                      M106 S0
                      M400
        """, 8, "expected a single command", ".with.rules[0].replace"),
    "wrong phase": ("""
        pipeline:
          comm.protocol.gcode.sent:
            - stage: rewrite
              with:
                rules:
                  - gcode: M107
                    replace: M106 S0
        """, 4, "cannot run in comm.protocol.gcode.sent", ".stage"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key_end"), ERRORS.values(),
                         ids=ERRORS.keys())
def test_schema_errors_name_the_line(text, line, fragment, key_end):
    assert_option_error(text, line, fragment, key_end)
