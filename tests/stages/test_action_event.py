"""The action_event stage: action commands from the firmware published as events."""

from __future__ import annotations

import logging

import pytest
from stage_fakes import FakeComm, assert_option_error, load

from pipeline.hooks.registry import build_pipeline
from pipeline.phases import Phase
from stages import BUILTIN_STAGES, action_event, stage_phases


def fire(options, line, action, **kwargs):
    """Events fired by a stage built from `options` for one action line."""
    comm = FakeComm()
    assert action_event.build(options, "act")(comm, line, action, **kwargs) is None
    return comm.events


CUSTOM = ("// action:custom", "custom")

CASES = {
    "every action by default": (
        {}, CUSTOM, {"name": "custom", "params": ""},
        [("plugin_act_action", {"action": "custom", "name": "custom", "params": "",
                                "line": "// action:custom"})]),
    "listed action": (
        {"actions": ("custom", "runout")}, ("//action:runout T0", "runout T0"),
        {"name": "runout", "params": "T0"},
        [("plugin_act_action", {"action": "runout T0", "name": "runout", "params": "T0",
                                "line": "//action:runout T0"})]),
    "unlisted action ignored": ({"actions": ("custom",)}, ("// action:pause", "pause"),
                                {"name": "pause", "params": ""}, []),
    "names match exactly": ({"actions": ("custom",)}, ("// action:Custom", "Custom"),
                            {"name": "Custom", "params": ""}, []),
    "configured event name": (
        {"event": "FilamentRunout"}, CUSTOM, {"name": "custom", "params": ""},
        [("FilamentRunout", {"action": "custom", "name": "custom", "params": "",
                             "line": "// action:custom"})]),
    "name derived when not given": (
        {"actions": ("notification",)}, ("// action:notification Hello world",
                                         "notification Hello world"), {},
        [("plugin_act_action", {"action": "notification Hello world", "name": "notification",
                                "params": "Hello world",
                                "line": "// action:notification Hello world"})]),
    "empty actions list means all": (
        {"actions": ()}, CUSTOM, {"name": "custom"},
        [("plugin_act_action", {"action": "custom", "name": "custom", "params": "",
                                "line": "// action:custom"})]),
}


@pytest.mark.parametrize(("options", "args", "kwargs", "expected"), CASES.values(),
                         ids=CASES.keys())
def test_action_event(options, args, kwargs, expected):
    assert fire(options, *args, **kwargs) == expected


def test_reacting_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="printpipe.handlers"):
        fire({}, *CUSTOM, name="custom", params="")
    (record,) = caplog.records
    assert "'custom'" in record.getMessage() and "plugin_act_action" in record.getMessage()


def test_module_contract():
    assert BUILTIN_STAGES["action_event"] is action_event
    assert stage_phases()["action_event"] == {Phase.ACTION}
    assert action_event.default_event("x") == "plugin_x_action"


def test_declared_in_yaml_and_run_by_the_chain():
    config = load("""
        pipeline:
          comm.protocol.action:
            - stage: action_event
              id: runout
              with:
                actions:
                  - filament_runout
                event: FilamentRunout
        """)
    (spec,) = config.pipeline.for_phase(Phase.ACTION)
    assert dict(spec.options) == {"actions": ("filament_runout",), "event": "FilamentRunout"}
    comm = FakeComm()
    pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES, comm=comm)
    # as the host calls it
    pipeline.call(Phase.ACTION, "//action:filament_runout 0", "filament_runout",
                  name="filament_runout", params="0")
    pipeline.call(Phase.ACTION, "//action:pause", "pause", name="pause", params="")
    assert comm.events == [("FilamentRunout", {"action": "filament_runout",
                                               "name": "filament_runout", "params": "0",
                                               "line": "//action:filament_runout 0"})]


def test_defaults_without_options_use_the_stage_id():
    config = load("""
        pipeline:
          comm.protocol.action:
            - stage: action_event
              id: printer-actions
        """)
    (spec,) = config.pipeline.for_phase(Phase.ACTION)
    assert dict(spec.options) == {"actions": ()}
    comm = FakeComm()
    action_event.build(spec.options, spec.id)(comm, *CUSTOM, name="custom", params="")
    assert [name for name, _ in comm.events] == ["plugin_printer-actions_action"]


ERRORS = {
    "actions is a string": ("""
        pipeline:
          comm.protocol.action:
            - stage: action_event
              with:
                actions: custom
        """, 6, "expected a sequence", ".with.actions"),
    "event is a list": ("""
        pipeline:
          comm.protocol.action:
            - stage: action_event
              with:
                event:
                  - a
        """, 6, "expected an event name, found a sequence", ".with.event"),
    "action name with spaces": ("""
        pipeline:
          comm.protocol.action:
            - stage: action_event
              with:
                actions:
                  - custom
                  - prompt begin
        """, 8, "expected an action name", ".with.actions[1]"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key_end"), ERRORS.values(),
                         ids=ERRORS.keys())
def test_bad_options_name_the_line(text, line, fragment, key_end):
    assert_option_error(text, line, fragment, key_end)
