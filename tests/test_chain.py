"""The gcode-phase return contract (seed 002), ordering, isolation and counters of the chain."""

from __future__ import annotations

import logging

import octo_handlers as h
import pytest

from pipeline.hooks.chain import BoundStage, Pipeline
from pipeline.gcode import Command
from pipeline.phases import Phase

Q, S = Phase.GCODE_QUEUING, Phase.GCODE_SENDING


def run(phase, handlers, line, cmd_type=None, tags=frozenset({"source:api"})):
    stages = [BoundStage(f"s{i}", phase, fn) for i, fn in enumerate(handlers)]
    p = Pipeline({phase: stages})
    out = p.run_command_phase(phase, p.for_phase(phase),
                              Command.parse(line, cmd_type=cmd_type, tags=tags))
    return out, stages


@pytest.mark.parametrize("handler, line, expected", [
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
    p.notify_phase(Phase.GCODE_SENT, p.sent, Command.parse("M106 S0"))
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


def _p(comm, phase, cmd, cmd_type, gcode, subcode=None, tags=None, *args, **kwargs):
    return None


def _star(comm, phase, cmd, cmd_type, gcode, *args):
    return None


def _kw(comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
    return kwargs.get("tags")


def _kw_unused(comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
    return None


def _args_used(comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
    return args


def _kwonly(comm, phase, cmd, cmd_type, gcode, *, subcode=None, tags=None):
    return None


@pytest.mark.parametrize("fn, positional", [(_p, True), (_star, True), (_kw, False),
                                            (_kwonly, False), (h.record, True),
                                            (_kw_unused, True), (_args_used, False),
                                            (h.rewrite_m107, True), (h.sent_m106, False)])
def test_positional_call_only_where_it_binds_the_same(fn, positional):
    from pipeline.hooks.registry import takes_positional
    assert takes_positional(fn) is positional


def test_positional_and_keyword_calls_see_the_same_arguments():
    h.calls.clear()
    st = BoundStage("r", S, h.record, positional=True)
    p = Pipeline({S: [st]})
    p.run_command_phase(S, p.sending, Command.parse("M80.1", tags=frozenset({"t"})))
    st.positional = False
    p.run_command_phase(S, p.sending, Command.parse("M80.1", tags=frozenset({"t"})))
    assert h.calls[0] == h.calls[1] == ("sending", "M80.1", None, "M80", "1", frozenset({"t"}))


def test_a_slow_stage_shows_in_its_time_counter():
    import time

    def slow(comm, phase, cmd, cmd_type, gcode, *args):
        time.sleep(0.002)

    p = Pipeline({Q: [BoundStage("slow", Q, slow, positional=True),
                      BoundStage("fast", Q, h.record, positional=True)]})
    for _ in range(32):
        p.run_command_phase(Q, p.queuing, Command.parse("G1 X1"))
    slow_s, fast_s = p.statistics()
    assert slow_s.calls == fast_s.calls == 32
    assert slow_s.time_ms > 40 and slow_s.time_ms > 10 * fast_s.time_ms


@pytest.mark.parametrize("handlers", [
    [h.record, _kw_unused, h.record],
    [h.rewrite_m107, h.record],
    [h.record, h.suppress_m300, h.record],
    [h.expand_foo, h.record, h.rewrite_m107],
    [h.explode, h.record],
    [h.record, h.four_tuple, h.tag_it],
    [h.retype, h.as_string, _kw],
], ids=["all-pass", "rewrite", "suppress", "expand", "raise", "bad-shape", "retype"])
@pytest.mark.parametrize("line", ["G1 X1", "M107", "M300 S1", "@foo x", "M105", "M117 hi"])
def test_generated_runner_matches_the_generic_chain(handlers, line):
    from pipeline.hooks.registry import takes_positional

    def build():
        return Pipeline({Q: [BoundStage(f"s{i}", Q, fn, positional=takes_positional(fn))
                             for i, fn in enumerate(handlers)]})
    fast, slow = build(), build()
    for _ in range(20):  # past the sampled (generic, timed) run too
        got = fast.run(Q, Command.parse(line, tags=frozenset({"source:api"})))
        want = slow.run_command_phase(Q, slow.queuing,
                                      Command.parse(line, tags=frozenset({"source:api"})))
        assert got == want
    strip = lambda stats: [(s.id, s.calls, s.rewrites, s.suppressions, s.errors)  # noqa: E731
                           for s in stats]
    assert strip(fast.statistics()) == strip(slow.statistics())


@pytest.mark.parametrize("handlers", [[h.record, h.record], [h.record, h.explode, h.record]])
def test_generated_observer_matches_the_generic_chain(handlers, caplog):
    def build():
        return Pipeline({Phase.GCODE_SENT: [BoundStage(f"s{i}", Phase.GCODE_SENT, fn)
                                            for i, fn in enumerate(handlers)]})
    fast, slow = build(), build()
    h.calls.clear()
    for _ in range(16):
        fast.notify(Phase.GCODE_SENT, Command.parse("G1 X1"))
    fast_calls, h.calls[:] = list(h.calls), []
    for _ in range(16):
        slow.notify_phase(Phase.GCODE_SENT, slow.sent, Command.parse("G1 X1"))
    assert fast_calls == h.calls
    assert [(s.calls, s.errors) for s in fast.statistics()] == \
        [(s.calls, s.errors) for s in slow.statistics()]


def test_generated_runner_is_built_from_the_template_only():
    from pipeline.hooks.fastpath import compile_phase
    st = BoundStage("x; import os", Q, h.record, positional=True)  # odd ids never reach code
    runner = compile_phase([st], "queuing", observe=False)
    assert runner(None, "G1", None, "G1", None, frozenset()) is None
    assert runner.__code__.co_filename == "<printpipe phase runner: queuing>"
