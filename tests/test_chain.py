"""The gcode-phase return contract (seed 002), ordering, isolation and counters of the chain."""

from __future__ import annotations

import logging

import octo_handlers as h
import pytest

from pipeline.gcode import Command
from pipeline.hooks.chain import BoundStage, Pipeline
from pipeline.phases import Phase

Q, S = Phase.GCODE_QUEUING, Phase.GCODE_SENDING


def run(phase, handlers, line, cmd_type=None, tags=frozenset({"source:api"})):
    stages = [BoundStage(f"s{i}", phase, fn) for i, fn in enumerate(handlers)]
    p = Pipeline({phase: stages})
    return p.run(phase, Command.parse(line, cmd_type=cmd_type, tags=tags)), stages


@pytest.mark.parametrize(("handler", "line", "expected"), [
    (h.record, "G1 X1", [("G1 X1", None)]),                       # None: unchanged
    (h.as_string, "M117 hi", [("M117 rewritten", None)]),         # str: replaced
    (h.rewrite_m107, "M107", [("M106 S0", None)]),                # 1-tuple: replaced
    (h.rewrite_m107, "G1 X1", [("G1 X1", None)]),                 # 1-tuple, same text
    (h.suppress_m300, "M300 S440", []),                           # (None,): suppressed
    (h.retype, "M105", [("M105", "my_type")]),                    # 2-tuple: new type
    (h.expand_foo, "@foo bar", [("M105", "temperature_poll"), ("M110", None),
                                ("M117 echo foo: @foo bar", None)]),  # list: expansion
])
def test_queuing_return_variants(handler, line, expected):
    out, _ = run(Q, [handler], line)
    assert [(c.line, c.cmd_type) for c in out] == expected


def test_rewrite_adds_tags_and_reparses_gcode():
    out, _ = run(Q, [h.rewrite_m107], "M107")
    (cmd,) = out
    assert cmd.gcode == "M106"
    assert {"source:api", "source:rewrite", "phase:queuing", "plugin:s0"} <= cmd.tags


def test_three_tuple_adds_tags():
    out, _ = run(Q, [h.tag_it], "G28")
    assert out[0].tags == {"source:api", "my_custom_tag"}
    assert out[0].line == "G28"


def test_suppression_stops_later_stages():
    h.calls.clear()
    out, stages = run(Q, [h.suppress_m300, h.record], "M300")
    assert out == [] and h.calls == []
    assert stages[0].counters.suppressions == 1


def test_each_handler_sees_every_command_of_the_working_list():
    h.calls.clear()
    out, _ = run(Q, [h.expand_foo, h.record], "@foo x")
    assert [c[1] for c in h.calls] == ["M105", "M110", "M117 echo foo: @foo x"]
    assert len(out) == 3


@pytest.mark.parametrize("handler", [h.explode, h.four_tuple])
def test_raising_or_wrong_shape_is_logged_with_id_and_skipped(handler, caplog):
    h.calls.clear()
    with caplog.at_level(logging.ERROR, logger="printpipe.pipeline"):
        out, stages = run(Q, [handler, h.record], "G1 X5")
    assert [c.line for c in out] == ["G1 X5"]          # the command survived
    assert h.calls and h.calls[0][1] == "G1 X5"         # the next stage still ran
    assert stages[0].counters.errors == 1
    assert "'s0'" in caplog.text and Q.value in caplog.text


def test_list_outside_queuing_is_refused_and_original_kept(caplog):
    with caplog.at_level(logging.ERROR, logger="printpipe.pipeline"):
        out, stages = run(S, [h.list_anywhere], "G1 X5")
    assert [c.line for c in out] == ["G1 X5"]
    assert stages[0].counters.errors == 1
    assert "outside the queuing phase" in caplog.text


def test_handlers_receive_the_seed_arguments():
    h.calls.clear()
    run(S, [h.record], "M80.1", cmd_type="power", tags=frozenset({"source:file"}))
    assert h.calls == [("sending", "M80.1", "power", "M80", "1", frozenset({"source:file"}))]


def test_counters_and_statistics():
    p = Pipeline({Q: [BoundStage("m107", Q, h.rewrite_m107, kind="handler",
                                 target="octo_handlers:rewrite_m107")]})
    for line in ("M107", "G1 X1", "M107"):
        p.run_command_phase(Q, p.queuing, Command.parse(line))
    (stats,) = p.statistics()
    assert (stats.id, stats.calls, stats.rewrites, stats.errors) == ("m107", 3, 2, 0)
    assert stats.time_ms >= 0


def test_observing_phase_ignores_returns_and_survives_errors():
    h.calls.clear()
    p = Pipeline({Phase.GCODE_SENT: [BoundStage("x", Phase.GCODE_SENT, h.explode),
                                     BoundStage("m106", Phase.GCODE_SENT, h.sent_m106)]})
    p.notify(Phase.GCODE_SENT, Command.parse("M106 S0"))
    assert h.calls == [("sent_m106", "sent", "M106 S0")]


def test_received_filter_rewrites_and_drops():
    def drop(comm, line):
        return None if line == "junk" else line
    p = Pipeline({Phase.GCODE_RECEIVED: [BoundStage("up", Phase.GCODE_RECEIVED,
                                                    h.received_upper),
                                         BoundStage("drop", Phase.GCODE_RECEIVED, drop)]})
    assert p.filter_received("echo:hello") == "ECHO:HELLO"
    assert p.filter_received("junk") is None
    assert p.filter_received("ok") == "ok"


def test_subcode_and_tags_are_passed_by_keyword_as_the_seed_does():
    seen = []

    def hook(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
        seen.append((args, kwargs))

    run(S, [hook], "M80.1", tags=frozenset({"t"}))
    assert seen == [((), {"subcode": "1", "tags": frozenset({"t"})})]


@pytest.mark.parametrize("phase", [Q, Phase.GCODE_SENT])
def test_a_slow_stage_shows_in_its_time_counter(phase):
    import time

    def slow(comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
        time.sleep(0.002)

    p = Pipeline({phase: [BoundStage("slow", phase, slow), BoundStage("fast", phase, h.record)]})
    for _ in range(32):  # through the host's entry points: one run in 8 is timed
        if phase is Q:
            p.run(phase, Command.parse("G1 X1"))
        else:
            p.notify(phase, Command.parse("G1 X1"))
    slow_s, fast_s = p.statistics()
    assert slow_s.calls == fast_s.calls == 32
    assert slow_s.time_ms > 40 and slow_s.time_ms > 10 * fast_s.time_ms
