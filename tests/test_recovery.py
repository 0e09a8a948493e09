"""The crash journal's content and the recovery prologue, sans-IO (pipeline/session/recovery.py):
the machine state commands leave, the journal record and its JSON, when it is written and
cleared, that it follows the last *acknowledged* line, and the beforePrintRecovered script
rendered from its values."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from pairs import pair, start

from pipeline.gcode import Command
from pipeline.hooks.scripts import ScriptSet
from pipeline.session.filejob import file_line
from pipeline.session.jobs import JobResult, Outcome
from pipeline.session.recovery import (
    FileIdentity,
    Journal,
    JournalError,
    JournalPolicy,
    MachineState,
    PrintJournal,
    recovery_context,
)
from pipeline.virtual.pair import expected_commands, sample_gcode


def state_after(*lines: str) -> dict[str, Any]:
    s = MachineState()
    for line in lines:
        s.apply(Command.parse(line))
    return s.values()


@pytest.mark.parametrize(("lines", "expected"), [
    (["G1 X10 Y20 Z0.3 E1.5 F1800"], {"x": 10.0, "y": 20.0, "z": 0.3, "e": 1.5, "f": 1800.0}),
    (["G0 Z5", "G1 X1"], {"z": 5.0, "x": 1.0}),
    (["G1X10Y20Z0.4"], {"x": 10.0, "y": 20.0, "z": 0.4}),                # words without spaces
    (["M83", "G1 E1", "G1 E0.5"], {"e": 1.5, "relative_e": True}),        # relative E adds up
    (["G1 E5", "G92 E0", "G1 E0.2"], {"e": 0.2}),                          # G92 sets
    (["G91", "G1 Z0.2", "G1 Z0.2"], {"z": 0.4, "relative_axes": True, "relative_e": True}),
    (["G91", "M82"], {"relative_axes": True, "relative_e": False}),       # M82 after G91: E only
    (["G91", "G90"], {"relative_axes": False, "relative_e": False}),      # Marlin: G90 is all
    (["G1 X5 Y5 Z1", "G28 X Y"], {"x": None, "y": None, "z": 1.0}),        # homed: unknown
    (["G1 X5 Y5 Z1", "G28"], {"x": None, "y": None, "z": None}),
    (["M104 S210", "M140 S60"], {"hotends": {0: 210.0}, "bed": 60.0}),
    (["M109 R200", "M190 R55"], {"hotends": {0: 200.0}, "bed": 55.0}),     # wait for R
    (["T1", "M104 S215", "M104 T0 S190"], {"tool": 1, "hotends": {0: 190.0, 1: 215.0}}),
    (["M106 S127.5"], {"fan": 128}),
    (["M106"], {"fan": 255}),                                             # Marlin: no S is full
    (["M106 S255", "M106 P1 S0"], {"fan": 255}),                          # another fan
    (["M106 S255", "M107"], {"fan": 0}),
    (["M117 Z9 E9 X9", "M400"], {"z": None, "e": None, "x": None}),       # not a move
])
def test_machine_state_follows_what_commands_do(lines, expected):
    got = state_after(*lines)
    assert {k: got[k] for k in expected} == expected


# ---- the record --------------------------------------------------------------------------

FILE = FileIdentity("/data/files/cube.gcode", "cube.gcode", "cube.gcode", 1234, 1_700_000_000_123)


def journal(**state: Any) -> Journal:
    values = state_after("M140 S60", "M104 S210", "G1 X10 Y20 Z0.6 E12.5 F1800", "M106 S255")
    values.update(state)
    return Journal(FILE, filepos=400, line=12, state=values, time=1_700_000_100.5)


def test_the_journal_round_trips_through_json():
    j = journal()
    data = j.to_json()
    assert data["version"] == 1 and data["state"]["hotends"] == {"0": 210.0}
    assert Journal.from_json(data) == j
    assert j.payload()["targets"] == {"tool0": 210.0, "bed": 60.0}
    assert j.payload()["position"] == {"x": 10.0, "y": 20.0, "z": 0.6, "e": 12.5, "f": 1800.0}


def _broken(change) -> dict[str, Any]:
    data = journal().to_json()
    change(data)
    return data


@pytest.mark.parametrize(("data", "message"), [
    ([1, 2], "not a JSON object"),
    (_broken(lambda d: d.update(version=7)), "unknown version 7"),
    (_broken(lambda d: d.pop("filepos")), "missing 'filepos'"),
    (_broken(lambda d: d["file"].pop("mtime_ns")), "missing 'mtime_ns'"),
    (_broken(lambda d: d.update(line="12")), "'12' is not a count"),
    (_broken(lambda d: d.update(filepos=-1)), "-1 is not a count"),
    (_broken(lambda d: d["state"].update(z=math.nan)), "nan is not a number"),
    (_broken(lambda d: d["state"].update(z=True)), "True is not a number"),
    (_broken(lambda d: d["state"].update(relative_e=1)), "1 is not true or false"),
    (_broken(lambda d: d["state"].update(hotends=[210])), "[210] is not an object"),
    (_broken(lambda d: d["file"].update(path=None)), "None is not a string"),
])
def test_a_broken_journal_is_refused_naming_the_problem(data, message):
    with pytest.raises(JournalError, match="the print journal is not valid") as exc:
        Journal.from_json(data)
    assert message in str(exc.value)


def test_a_journal_without_z_cannot_be_recovered():
    assert journal().problem() is None
    assert "before its first move in Z" in journal(z=None).problem()


# ---- the prologue ------------------------------------------------------------------------

def render(j: Journal, extruders: int = 1) -> list[str]:
    from pipeline.hooks.scripts import profile_context
    ctx = {"printer_profile": profile_context(extruders=extruders),
           "recovery": recovery_context(j)}
    return ScriptSet.load(None, {}).render("beforePrintRecovered", ctx)


def test_the_bundled_prologue_heats_homes_x_y_and_restores_z_e_fan_and_feed_rate():
    assert render(journal()) == [
        "M140 S60", "M104 T0 S210", "M190 S60", "M109 T0 S210",
        "G91", "G1 Z2 F600", "G90", "G92 Z2.6",      # lift, then say where Z is: never homed
        "G28 X Y",
        "G1 X10 Y20 F3000", "G1 Z0.6 F600",
        "M82", "G92 E12.5", "M106 S255", "G1 F1800"]


def test_the_prologue_with_relative_e_no_bed_no_fan_and_two_tools():
    j = journal(relative_e=True, bed=None, fan=0, tool=1, hotends={0: 0.0, 1: 215.0},
                x=None, z=0.30000000000000004)
    lines = render(j, extruders=2)
    assert lines[:3] == ["M104 T1 S215", "M109 T1 S215", "T1"]  # tool 0 is off: left so
    assert "G92 Z2.3" in lines and "G1 Z0.3 F600" in lines      # rounded, never 0.300000..04
    assert not any(x.startswith("G1 X") for x in lines)           # X unknown: no move to it
    assert lines[-4:] == ["M83", "G92 E0", "M107", "G1 F1800"]


def test_a_configured_prologue_replaces_the_bundled_one():
    ctx = {"recovery": recovery_context(journal())}
    scripts = ScriptSet.load(None, {"beforePrintRecovered":
                                    "G92 Z{{ recovery.z }}\nM117 from line {{ recovery.line }}"})
    assert scripts.render("beforePrintRecovered", ctx) == ["G92 Z0.6", "M117 from line 12"]


def test_check_renders_the_prologue_against_its_sample():
    assert ScriptSet.check_all(None, {}) == []


# ---- when it is written ------------------------------------------------------------------

def test_the_policy_writes_at_most_once_a_second_but_at_once_when_z_changes():
    policy = JournalPolicy()
    j = journal()
    assert policy.due(j, 0.0)
    assert not policy.due(attrs.evolve(j, time=5.0), 0.3)            # nothing changed
    moved = attrs.evolve(j, filepos=500, line=13)
    assert not policy.due(moved, 0.5)                                # changed, too soon
    assert policy.due(moved, 1.0)
    layer = attrs.evolve(j, filepos=600, line=14, state={**j.state, "z": 0.8})
    assert policy.due(layer, 1.1)                                    # a layer change: at once
    spiral = attrs.evolve(j, filepos=700, line=15, state={**j.state, "z": 0.81})
    assert not policy.due(spiral, 1.3)       # Z changes line after line: once a second
    assert policy.due(spiral, 2.1)
    assert not policy.due(attrs.evolve(spiral, line=16, filepos=800), 2.5)
    assert policy.due(attrs.evolve(spiral, line=16, filepos=800), 3.1)
    assert policy.due(attrs.evolve(spiral, line=17, filepos=900, state={**j.state, "z": 1}),
                      3.2)                   # the next layer after a steady one: at once


class FakeEngine:
    last_acked: Command | None = None


class FakeJobs:
    result: JobResult | None = None


def file_cmd(line: str, n: int, pos: int) -> Command:
    return Command.parse(line, tags=frozenset({"source:file", f"filepos:{pos}",
                                               f"fileline:{n}"}))


def following() -> tuple[PrintJournal, FakeEngine, FakeJobs]:
    from pipeline.config.schema import ProfileSpec
    from pipeline.session.tracking import Tracker
    engine, jobs = FakeEngine(), FakeJobs()
    pj = PrintJournal(jobs, engine, Tracker(ProfileSpec(), {}))
    pj.enabled = True
    pj.begin(FILE)
    return pj, engine, jobs


def test_the_journal_holds_the_last_acknowledged_line_not_the_last_sent():
    pj, engine, _ = following()
    cmds = [file_cmd("G1 Z0.2 E1", 1, 10), file_cmd("G1 X5 E2", 2, 20),
            file_cmd("G1 Z0.4 E3", 3, 30), file_cmd("G1 X6 E4", 4, 40)]
    pj.trail.extend(cmds)                       # all four written, a window of four
    assert pj.poll(0.0, 100.0) is None          # nothing acknowledged: nothing to resume
    engine.last_acked = cmds[1]
    kind, data = pj.poll(1.0, 101.0)
    assert kind == "write" and (data["line"], data["filepos"]) == (2, 20)
    assert (data["state"]["z"], data["state"]["e"], data["state"]["x"]) == (0.2, 2.0, 5.0)
    engine.last_acked = Command.parse("M105")   # a poll between: not a file line, no change
    assert pj.poll(2.5, 102.5) is None
    engine.last_acked = cmds[3]
    _, data = pj.poll(3.0, 103.0)
    assert (data["line"], data["state"]["z"], data["state"]["e"]) == (4, 0.4, 4.0)
    assert not pj.trail                         # what is applied is let go


def test_file_lines_acknowledged_before_a_command_of_the_host_count():
    """The last acknowledged command is the heaters-off of a shutdown (or a temperature
    poll): the file lines before it were acknowledged too; it itself is not applied."""
    pj, engine, _ = following()
    cmds = [file_cmd("G1 Z0.2 E1", 1, 10), file_cmd("M104 S210", 2, 20),
            file_cmd("G1 X5 E2", 3, 30)]
    off = Command.parse("M104 T0 S0", tags=frozenset({"trigger:exit"}))
    pj.trail.extend([*cmds, off])
    engine.last_acked = off
    _, data = pj.poll(0.0, 100.0)
    assert (data["line"], data["filepos"], data["state"]["x"]) == (3, 30, 5.0)
    assert data["state"]["hotends"] == {"0": 210.0}  # (JSON keys)


def test_a_journal_nobody_polls_records_nothing():
    """A session without the service's writer (the CLI's tools, the Pair) keeps no trail."""
    p = pair()
    job = start(p, "G1 Z1\n" * 50)
    p.core.journal.begin(FILE)
    p.run_until(lambda: job.done)
    assert not p.core.journal.active and not p.core.journal.trail


def test_the_trail_stays_bounded_if_the_acknowledged_command_is_never_in_it(monkeypatch):
    import pipeline.session.recovery as recovery
    monkeypatch.setattr(recovery, "TRAIL_LIMIT", 100)
    monkeypatch.setattr(recovery, "TRAIL_KEEP", 10)
    pj, engine, _ = following()
    pj.trail.extend(file_cmd(f"G1 X{i}", i, i * 10) for i in range(1, 102))
    engine.last_acked = file_cmd("G1 X1", 1, 10)   # equal, but not the one written
    pj.catch_up()
    assert len(pj.trail) == 10 and pj.state.x == 91.0


def test_the_prologue_itself_never_enters_the_recorded_state():
    pj, engine, _ = following()
    pj.begin(FILE, resume=journal())
    prologue = [Command.parse(x, tags=frozenset({"script:beforePrintRecovered"}))
                for x in ("G91", "G1 Z2", "G90", "G92 Z2.6", "G28 X Y")]
    first = file_cmd("G1 X11 E12.6", 13, 420)
    pj.trail.extend([*prologue, first])
    engine.last_acked = first
    _, data = pj.poll(0.0, 0.0)
    assert (data["line"], data["state"]["z"], data["state"]["x"]) == (13, 0.6, 11.0)
    assert data["state"]["relative_axes"] is False


@pytest.mark.parametrize(("outcome", "interrupted", "expected"), [
    (Outcome.DONE, False, "clear"),
    (Outcome.CANCELLED, False, "clear"),
    (Outcome.ERROR, False, "clear"),     # the file's own line was refused: no use resuming it
    (Outcome.ERROR, True, "write"),      # the link or the printer went away: keep it
    (Outcome.CANCELLED, True, "write"),  # stopped because the host stops: keep it too
])
def test_an_ended_print_clears_its_journal_unless_it_was_interrupted(outcome, interrupted,
                                                                    expected):
    pj, engine, jobs = following()
    cmd = file_cmd("G1 Z0.2", 1, 10)
    pj.trail.append(cmd)
    engine.last_acked = cmd
    assert pj.poll(0.0, 0.0)[0] == "write"
    jobs.result = JobResult(outcome, 1.0, 10, interrupted=interrupted)
    assert pj.poll(0.1, 0.1)[0] == expected
    assert not pj.active and pj.poll(2.0, 2.0) is None


def test_a_failed_print_keeps_what_the_printer_had_acknowledged_when_it_failed():
    """Four lines in flight when the printer resets: it acknowledged the first, lost the
    others, and answers the host's resynchronisation after that. The journal settles where
    the print failed: the M110 acknowledged later does not make the lost lines count."""
    pj, engine, jobs = following()
    cmds = [file_cmd(f"G1 X{i} Z0.2", i, i * 10) for i in range(1, 5)]
    pj.trail.extend(cmds)
    engine.last_acked = cmds[0]
    pj.settle()                                   # JobControl.fail, at the reset
    resync = Command.parse("M110 N0")
    pj.trail.append(resync)
    engine.last_acked = resync
    jobs.result = JobResult(Outcome.ERROR, 1.0, 10, "reset", interrupted=True)
    kind, data = pj.poll(0.0, 100.0)
    assert kind == "write" and (data["line"], data["state"]["x"]) == (1, 1.0)


def test_a_printer_that_resets_with_lines_in_flight_leaves_its_last_executed_line():
    """On the Pair, Marlin's model with four lines in flight resets after 40 commands: the
    journal's line is the last file line the printer executed before it reset."""
    p = pair("virtual:\n  marlin:\n    enabled: true\n  faults:\n    reset_after: 40\n"
             "serial:\n  send_window: 4\n")
    before = len(p.fw.accepted)
    text = "G28\nG1 Z0.2 F1200\n" + "".join(f"G1 X{i} Y{i} F1800\n" for i in range(1, 80))
    start(p, text)
    pj = p.core.journal
    pj.enabled = True
    pj.begin(FILE)
    p.run_until(lambda: p.core.jobs.result is not None)
    p.run_until(lambda: p.core.idle)  # the resynchronisation acknowledged too
    kind, data = pj.poll(p.clock.now, 0.0)
    executed = [x for x in p.fw.accepted[before:40] if x.startswith("G1 X")]
    assert kind == "write" and p.core.engine.in_flight == 0
    assert text.splitlines()[data["line"] - 1] == executed[-1]


@pytest.mark.parametrize("yaml", ["", "serial:\n  send_window: 4\n",
                                  ("virtual:\n  marlin:\n    enabled: true\n"
                                   "serial:\n  send_window: 4\n")])
def test_on_a_session_the_journal_matches_the_file_up_to_the_acknowledged_line(yaml):
    """A whole print on the in-memory Pair, one line in flight and four (a fixed window, on
    the plain model and on Marlin's, whose oks acknowledge up to a line number): at every
    poll, the recorded state is exactly what the file's lines up to the recorded one leave."""
    text = sample_gcode(3000)
    p = pair(yaml)
    job = start(p, text)
    pj = p.core.journal
    pj.enabled = True
    pj.begin(FILE)
    pj.policy = JournalPolicy(interval=0.0)  # the manual clock stands still: every change
    keys = ("x", "y", "z", "e", "f", "relative_axes", "relative_e", "fan")
    by_line = {}
    n = 0
    for i, raw in enumerate(text.splitlines(), 1):
        if expected_commands(raw):
            n += 1
            by_line[i] = n
    commands = expected_commands(text)
    seen: list[int] = []
    in_flight = polls = 0
    while job.line_no < 2900:
        out = p.core.data_to_send()      # Pair.step, with polls while lines are in flight
        if out:
            p.core.on_written()
            p.fw.receive_data(out, p.clock.now)
        polls += 1
        if polls % 37 == 0:
            in_flight = max(in_flight, p.core.engine.in_flight)
            action = pj.poll(p.clock.now, 0.0)
            if action is not None:
                data = action[1]
                assert data["line"] == file_line(p.core.engine.last_acked)
                expected = state_after(*commands[:by_line[data["line"]]])
                assert {k: data["state"][k] for k in keys} == {k: expected[k] for k in keys}
                seen.append(data["line"])
        back = p.fw.data_to_send(p.clock.now)
        if back:
            p.core.receive_data(back)
        elif not out:
            p.run_until(p.step)  # a wait in the firmware: let the clock move
    assert len(set(seen)) > 10
    assert in_flight == (4 if yaml else 1)


# ---- all or nothing ----------------------------------------------------------------------

def recovered_pair(prologue: str | None) -> tuple[Any, list[bytes], list[str]]:
    """A connected Pair whose beforePrintRecovered is `prologue` (None: the bundled one);
    returns it with what was on its wire and its events so far."""
    scripts = ScriptSet.load(None, {} if prologue is None else
                             {"beforePrintRecovered": prologue})
    p = pair(scripts=scripts)
    wire, events = list(p.wire), p.event_names()
    return p, wire, events


@pytest.mark.parametrize(("prologue", "why"), [
    # a line the guard refuses, from an overridden script
    ("M140 S{{ recovery.bed }}\nM104 S999\nG92 Z{{ recovery.z }}",
     "script beforePrintRecovered: its command 2 of 3, 'M104 S999', is refused: "),
    # a script that fails to render at its second line
    ("M140 S{{ recovery.bed }}\nG92 Z{{ recovery.nothing.here }}",
     "script beforePrintRecovered:2: "),
])
def test_a_prologue_that_fails_sends_nothing_and_says_why(prologue, why):
    from pairs import file_job

    from pipeline.session.jobs import JobStateError
    p, wire, events = recovered_pair(prologue)
    with pytest.raises(JobStateError) as exc:
        p.core.jobs.start(file_job("G1 X1 E1\nG1 X2 E2\n"), recovery=recovery_context(journal()))
    message = str(exc.value)
    assert message.startswith(f"cannot recover the print of test.gcode: {why}"), message
    assert message.endswith("; nothing was sent") and "\n" not in message
    while p.step():
        pass
    assert p.wire == wire and p.event_names() == events         # not a byte, not an event
    assert p.core.state.value == "Operational" and p.core.jobs.job is None
    assert not p.core.jobs.active and p.core.journal.file is None


def test_the_bundled_prologue_goes_out_whole_then_the_file():
    """The control for the test above: the same Pair and start, a prologue that passes."""
    from pairs import file_job
    p, _, _ = recovered_pair(None)
    before = len(p.fw.accepted)
    p.core.jobs.start(file_job("G1 X1 E1\nG1 X2 E2\n"), recovery=recovery_context(journal()))
    p.run_until(lambda: p.core.jobs.result is not None and not p.core.jobs.active)
    accepted = [x for x in p.fw.accepted[before:] if not x.startswith(("M105", "M110", "M113"))]
    assert accepted == [*render(journal()), "G1 X1 E1", "G1 X2 E2", "M400"]


def test_prologue_numbers_are_plain_decimals_and_non_finite_ones_are_refused():
    lines = render(journal(x=0.00001, y=123456.78901, e=1e16, f=1e-7))
    assert "G1 X0 Y123456.789 F3000" in lines and "G92 E10000000000000000" in lines
    assert lines[-1] == "G1 F0" and not any("e+" in x or "e-" in x for x in lines)
    with pytest.raises(JournalError, match="inf, not a finite number"):
        recovery_context(journal(z=math.inf))
