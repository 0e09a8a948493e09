"""The temperature_offsets stage: offsets added to file targets, per tool, bed and chamber."""

from __future__ import annotations

import pytest
from stage_fakes import FakeComm, UntouchableComm, assert_option_error, call, load

from pipeline.gcode import Command
from pipeline.hooks.registry import build_pipeline
from pipeline.phases import Phase
from stages import BUILTIN_STAGES, stage_phases, temperature_offsets

FILE = frozenset({"source:file", "filepos:120"})
API = frozenset({"source:api", "api:printer.command"})
OFFSETS = {"tools": {0: 5.0, 1: -2.5}, "bed": 3.0, "chamber": 0.0}


def build(**options):
    return temperature_offsets.build({**OFFSETS, **options}, "offsets")


CASES = {
    "tool 0 by default": ("M104 S210", FILE, ("M104 S215",)),
    "fraction kept": ("M104 S207.5", FILE, ("M104 S212.5",)),
    "float text written compactly": ("M109 S210.000000", FILE, ("M109 S215",)),
    "waiting R form": ("M109 R200", FILE, ("M109 R205",)),
    "S and R both": ("M109 S180 R200", FILE, ("M109 S185 R205",)),
    "tool from T parameter": ("M104 T1 S210", FILE, ("M104 T1 S207.5",)),
    "T after S": ("M104 S210 T1", FILE, ("M104 S207.5 T1",)),
    "rest of the line kept": ("M104 S200 B210 F1", FILE, ("M104 S205 B210 F1",)),
    "no space before the value": ("M104 S 200", FILE, ("M104 S 205",)),
    "lower-case parameter": ("M104 s200", FILE, ("M104 s205",)),
    "bed": ("M140 S60", FILE, ("M140 S63",)),
    "bed wait": ("M190 S60.5", FILE, ("M190 S63.5",)),
    "chamber offset 0 leaves it": ("M141 S40", FILE, None),
    "target 0 untouched": ("M104 S0", FILE, None),
    "bed target 0 untouched": ("M140 S0.0", FILE, None),
    "no target at all": ("M104 T0", FILE, None),
    "tool without an offset": ("M104 T3 S210", FILE, None),
    "only file lines": ("M104 S210", API, None),
    "untagged lines": ("M104 S210", frozenset(), None),
    "other commands": ("G1 X10 S1", FILE, None),
    "M1040 is not M104": ("M1040 S10", FILE, None),
    "not G-code": ("@pause", FILE, None),
}


@pytest.mark.parametrize(("cmd", "tags", "expected"), CASES.values(), ids=CASES.keys())
def test_temperature_offsets(cmd, tags, expected):
    assert call(build(), cmd, FakeComm(), tags=tags) == expected


def test_all_sources():
    handler = build(all_sources=True)
    assert call(handler, "M104 S210", tags=API) == ("M104 S215",)
    assert call(handler, "M140 S50", tags=None) == ("M140 S53",)


def test_chamber_and_negative_bed():
    handler = temperature_offsets.build({"bed": -5, "chamber": 2.25}, "offsets")
    assert call(handler, "M191 S40", tags=FILE) == ("M191 S42.25",)
    assert call(handler, "M140 S60", tags=FILE) == ("M140 S55",)
    assert call(handler, "M104 S200", tags=FILE) is None  # no tool offsets configured


def test_follows_tool_changes_from_any_source():
    handler = build(default_tool=1)
    steps = [("M104 S210", FILE, ("M104 S207.5",)),   # default_tool
             ("T0", API, None),
             ("M104 S210", FILE, ("M104 S215",)),
             ("T1", FILE, None),
             ("M109 S210", FILE, ("M109 S207.5",)),
             ("M104 T0 S200", FILE, ("M104 T0 S205",)),  # T parameter wins, tool unchanged
             ("M104 S200", FILE, ("M104 S197.5",))]
    assert [call(handler, cmd, tags=tags) for cmd, tags, _ in steps] == [e for *_, e in steps]


@pytest.mark.parametrize("cmd", ["G1 X1 Y2", "M105", "M106 S255", "G28", "@pause", ""])
def test_hot_path_leaves_everything_alone(cmd):
    assert call(build(), cmd, UntouchableComm(), tags=FILE) is None


COMPACT = {215.0: "215", 212.5: "212.5", 210.1 + 2.2: "212.3", -3.25: "-3.25", 0.0: "0",
           -0.0001: "0", 1.23456: "1.235", 100.0: "100"}


@pytest.mark.parametrize(("value", "text"), COMPACT.items(), ids=COMPACT.values())
def test_compact_numbers(value, text):
    assert temperature_offsets.compact(value) == text


def test_module_contract():
    assert BUILTIN_STAGES["temperature_offsets"] is temperature_offsets
    assert stage_phases()["temperature_offsets"] == {Phase.GCODE_QUEUING}


def test_declared_in_yaml_and_run_by_the_chain():
    config = load("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: temperature_offsets
              with:
                tools:
                  0: 5
                  1: -2.5
                bed: 3
        """)
    (spec,) = config.pipeline.for_phase(Phase.GCODE_QUEUING)
    assert dict(spec.options["tools"]) == {0: 5.0, 1: -2.5}
    assert (spec.options["bed"], spec.options["chamber"], spec.options["default_tool"],
            spec.options["all_sources"]) == (3.0, 0.0, 0, False)
    pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES, comm=FakeComm())
    (out,) = pipeline.run_command_phase(Phase.GCODE_QUEUING, pipeline.queuing,
                                        Command.parse("M104 T1 S210", tags=FILE))
    assert out.line == "M104 T1 S207.5" and out.gcode == "M104"
    assert {"source:file", "source:rewrite", "plugin:temperature_offsets"} <= out.tags
    (out,) = pipeline.run_command_phase(Phase.GCODE_QUEUING, pipeline.queuing,
                                        Command.parse("M140 S60", tags=API))
    assert out.line == "M140 S60"


def test_no_options_means_no_offsets():
    config = load("pipeline:\n  comm.protocol.gcode.queuing:\n    - stage: temperature_offsets\n")
    (spec,) = config.pipeline.for_phase(Phase.GCODE_QUEUING)
    assert dict(spec.options["tools"]) == {}
    handler = temperature_offsets.build(spec.options, spec.id)
    assert call(handler, "M104 S210", tags=FILE) is None


ERRORS = {
    "offset not a number": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: temperature_offsets
              with:
                tools:
                  0: 5
                  1: hot
        """, 8, "expected a float, found 'hot'", ".with.tools.1"),
    "tool not a number": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: temperature_offsets
              with:
                tools:
                  T0: 5
        """, 7, "expected a tool number", ".with.tools.T0"),
    "bed is a list": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: temperature_offsets
              with:
                bed:
                  - 5
        """, 6, "expected a float, found a sequence", ".with.bed"),
    "negative default tool": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: temperature_offsets
              with:
                chamber: 1
                default_tool: -1
        """, 7, "expected a tool number (0 or more)", ".with.default_tool"),
    "all_sources not a boolean": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: temperature_offsets
              with:
                all_sources: sometimes
        """, 6, "expected a boolean value", ".with.all_sources"),
    "nan offset": ("""
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: temperature_offsets
              with:
                bed: nan
        """, 6, "expected a finite number of degrees", ".with.bed"),
    "wrong phase": ("""
        pipeline:
          comm.protocol.gcode.sending:
            - stage: temperature_offsets
        """, 4, "cannot run in comm.protocol.gcode.sending", ".stage"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key_end"), ERRORS.values(),
                         ids=ERRORS.keys())
def test_bad_options_name_the_line(text, line, fragment, key_end):
    assert_option_error(text, line, fragment, key_end)
