"""The comm.protocol.scripts phase contract: 2-, 3-, 4-tuples, ordering, variables, tags."""

from __future__ import annotations

import logging

from pipeline.hooks.chain import BoundStage, Pipeline
from pipeline.hooks.script_phase import script_additions
from pipeline.phases import Phase


def stage(id_, ret):
    def handler(comm_instance, script_type, script_name, *args, **kwargs):
        if script_type == "gcode" and script_name == "afterPrinterConnected":
            return ret
        return None
    return BoundStage(id_, Phase.SCRIPTS, handler)


def lines(cmds):
    return [c.line for c in cmds]


def test_two_three_and_four_tuples_with_seed_ordering():
    p = Pipeline({Phase.SCRIPTS: [
        stage("a", ("M117 a-pre", "M117 a-post")),
        stage("b", (["M117 b-pre1", "M117 b-pre2"], None, {"myvariable": 42})),
        stage("c", ("M117 c-pre\n  M117 c-pre2 ; comment\n", ["M117 c-post"], None,
                    {"extra:tag"})),
    ]})
    add = script_additions(p, "afterPrinterConnected")
    assert lines(add.prefix) == ["M117 c-pre", "M117 c-pre2", "M117 b-pre1", "M117 b-pre2",
                                 "M117 a-pre"]
    assert lines(add.postfix) == ["M117 a-post", "M117 c-post"]
    assert add.variables == {"b": {"myvariable": 42}}
    assert add.prefix[0].tags == {"plugin:c", "extra:tag"}
    assert add.postfix[0].tags == {"plugin:a"}


def test_other_scripts_and_bad_shapes_add_nothing(caplog):
    p = Pipeline({Phase.SCRIPTS: [stage("bad", ("only one",)), stage("worse", "M117 x"),
                                  stage("ok", ("M117 fine", None))]})
    assert script_additions(p, "beforePrintStarted").prefix == ()
    with caplog.at_level(logging.ERROR):
        add = script_additions(p, "afterPrinterConnected")
    assert lines(add.prefix) == ["M117 fine"]
    assert "'bad'" in caplog.text and "'worse'" in caplog.text
    assert p.for_phase(Phase.SCRIPTS)[0].counters.errors == 1
