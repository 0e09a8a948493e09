"""Prints over Marlin's serial model (pipeline/virtual/marlin.py) on the in-memory Pair with
its manual clock: simulated 250000 baud, 1 ms per move, a 128-byte RX buffer and BUFSIZE 4.
The model itself (Marlin's line reader, the rest of a line cut by a line error read as a
line of its own), then the default (ping-pong: no fragment runs) and a window's throughput
and exactness under faults, lost oks and lost lines at the worst moments, long-running
commands, cancel on a dead link, and a hypothesis run of random fault mixes."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pairs import pair, start

from pipeline.config.schema import FaultSpec, MarlinModelSpec, VirtualSpec
from pipeline.gcode import frame
from pipeline.protocol.window import INTERNAL
from pipeline.session.jobs import Outcome
from pipeline.session.states import PrinterState as S
from pipeline.virtual.firmware import LineError
from pipeline.virtual.marlin import MarlinFirmware
from pipeline.virtual.pair import Pair, expected_commands, sample_gcode
from pipeline.virtual.reader import line_buffer, runs_as_command
from pipeline.virtual.spec import FirmwareSpec

MARLIN = "virtual:\n  marlin:\n    enabled: true\n"
BYTES_PER_S = 25000.0  # 250000 baud, 10 bits a byte
#: What the host itself sends around a print, allowed between file commands.
HOST = {"M110 N0", "M115", "M155 S2", "M105", "M400", "M113 S2", "M113 S0", "M114", "M108",
        "M21", "M27 S1", "M20 L"}  # (the last three: the SD card at connect)


def firmware(**marlin) -> MarlinFirmware:
    return MarlinFirmware(FirmwareSpec(virtual=VirtualSpec(
        marlin=MarlinModelSpec(enabled=True, **marlin))))


def delivered(accepted: list[str], expected: list[str]) -> bool:
    """Every expected command exactly once, in order, and nothing else but host commands."""
    it = iter(expected)
    nxt = next(it, None)
    for a in accepted:
        if a == nxt:
            nxt = next(it, None)
        elif a not in HOST:
            return False
    return nxt is None


def without_fragments(fw: MarlinFirmware) -> list[str]:
    """What the firmware took, less the rests of cut lines (each came before its whole line)."""
    out = list(fw.accepted)
    for cmd in fw.fragment_lines:
        out.remove(cmd)
    return out


def run_print(p: Pair, text: str, limit: float = 600.0,
              check: Callable[[], None] | None = None) -> float:
    """Print `text`; the simulated seconds it took. `check` runs after every step."""
    t0 = p.clock.now
    start(p, text)
    done = lambda: p.core.jobs.result is not None and not p.core.jobs.active  # noqa: E731
    if check is None:
        p.run_until(done, max_time=limit)
    else:
        def watch() -> bool:
            check()
            return done()
        p.run_until(watch, max_time=limit)
    return p.clock.now - t0


def wire_limit(commands: list[str]) -> float:
    """Lines per second the wire carries when every byte is a file line's."""
    nbytes = sum(len(frame(i + 1, c)) for i, c in enumerate(commands))
    return len(commands) / (nbytes / BYTES_PER_S)


# ---- the model ------------------------------------------------

def test_oks_carry_line_planner_and_queue_room():
    fw = firmware()
    fw.data_to_send(1.0)
    fw.receive_data(frame(0, "M110 N0") + frame(1, "G1 X1"), 1.0)
    out = fw.data_to_send(2.0).decode()
    assert "ok N0 P16 B3\n" in out and "ok N1 P15 B3\n" in out


def test_bytes_beyond_a_full_rx_buffer_are_lost():
    fw = firmware(bufsize=1)
    fw.data_to_send(0.0)
    fw.receive_data(frame(1, "G4 S10"), 0.0)  # the one queue slot is busy for 10 s
    fw.receive_data(b"".join(frame(n, "G1 X100.000 Y100.000") for n in range(2, 12)), 0.1)
    fw.data_to_send(5.0)
    assert fw.max_rx == 127 and fw.rx_lost > 0


def test_a_line_error_flushes_the_rx_buffer_and_asks_for_a_resend():
    fw = firmware(bufsize=1)
    fw.data_to_send(0.0)
    fw.receive_data(frame(1, "G4 S1"), 0.0)
    bad = frame(2, "G1 X2").replace(b"X2", b"X3")
    fw.receive_data(bad + frame(3, "G1 X3") + frame(4, "G1 X4"), 0.1)
    out = fw.data_to_send(3.0).decode()
    assert "Error:checksum mismatch, Last Line: 1\nResend: 2\nok\n" in out
    assert fw.flushed == len(frame(3, "G1 X3") + frame(4, "G1 X4"))
    assert fw.accepted == ["G4 S1"]


def test_a_duplicate_of_the_last_line_is_dropped_without_a_word():
    fw = firmware()
    fw.data_to_send(0.0)
    fw.receive_data(frame(1, "G1 X1"), 0.0)
    fw.receive_data(frame(1, "G1 X1"), 0.1)
    out = fw.data_to_send(1.0).decode()
    assert fw.accepted == ["G1 X1"] and out.count("ok") == 1 and "Error" not in out


@pytest.mark.parametrize(("raw", "kept"), [
    (b"G1 X1 Y2*33", b"G1 X1 Y2*33"),
    (b"G1 X1 ; move*12", b"G1 X1 "),          # a comment lasts to the end of the line
    (b"M117 a\\;b", b"M117 a;b"),            # an escaped ; is kept, the backslash is not
    (b"G1 X1\x08\x082", b"G1 2"),              # backspaces erase
    (b"\x08\x08G1", b"G1"),                     # ... nothing when there is nothing
    (b"G1 " + b"X1 " * 40 + b"Y9", (b"G1 " + b"X1 " * 40)[:95]),  # MAX_CMD_SIZE 96
])
def test_the_reader_keeps_what_marlin_keeps(raw, kept):
    assert line_buffer(raw) == kept


@pytest.mark.parametrize(("line", "runs"), [
    (b"G1 X10 Y20*57", True), (b" M104 S200*7", True), (b"T1 S200*9", True),
    (b"g1 x1", True), (b"G 1 X1", True), (b"N12 G1 X1*3", True),
    (b"1 X10 Y20*57", False), (b"X10 Y20*57", False), (b"0*57", False), (b"*57", False),
    (b"G*1", False), (b"N12G1 X1", False), (b"S200", False),
])
def test_which_lines_marlins_parser_runs(line, runs):
    assert runs_as_command(line) is runs


def test_the_rest_of_a_line_cut_by_a_line_error_runs_as_a_command():
    """Marlin empties the RX buffer on a line error; the rest of the line that was arriving
    has no number, so nothing checks it, and its parser runs it up to the `*`."""
    fw = firmware(bufsize=1, read_interval=0)
    fw.data_to_send(0.0)
    fw.receive_data(frame(1, "G4 S1"), 0.0)        # the queue's one slot, for a second
    bad = frame(2, "G1 X2").replace(b"X2", b"X5")
    third = frame(3, "G1 X3 Y3")
    fw.receive_data(bad + third[:3], 0.1)          # "N3 " of line 3 waits behind the bad line
    fw.data_to_send(2.0)                           # line 2 fails: the buffer is flushed
    assert fw.flushed == 3 and fw.fragments == 0
    fw.receive_data(third[3:], 2.0)                # the rest of line 3 arrives
    fw.data_to_send(3.0)
    assert fw.fragments == fw.fragments_run == 1
    assert fw.fragment_commands == ["G1 X3 Y3"] and fw.accepted == ["G4 S1", "G1 X3 Y3"]


def test_a_flush_between_whole_lines_cuts_nothing():
    fw = firmware(bufsize=1, read_interval=0)
    fw.data_to_send(0.0)
    fw.receive_data(frame(1, "G4 S1"), 0.0)
    fw.receive_data(frame(2, "G1 X2").replace(b"X2", b"X5") + frame(3, "G1 X3"), 0.1)
    fw.data_to_send(2.0)
    fw.receive_data(frame(2, "G1 X2") + frame(3, "G1 X3"), 2.0)
    fw.data_to_send(3.0)
    assert fw.fragments == 0 and fw.accepted == ["G4 S1", "G1 X2", "G1 X3"]


# ---- throughput and exactness ------------------------------------------------

def test_the_default_runs_no_fragment_and_prints_exactly_with_corrupted_lines():
    """20,000 lines at 250 kbaud with 1% corrupted lines plus 0.1% lost oks, the default
    window: no rest of a cut line enters the queue, the print is exact, and it keeps 55% of
    the wire's limit (ping-pong; clean it reaches about 62%)."""
    text = sample_gcode(20000, seed=1)
    expected = expected_commands(text)
    p = pair(MARLIN, faults=FaultSpec(seed=3, corrupt_rate=0.01, lost_ok_rate=0.001))
    took = run_print(p, text)
    assert p.core.jobs.result.outcome is Outcome.DONE
    assert p.core.engine.resends.requests >= 150, "the faults did happen"
    assert p.fw.fragments == 0 and p.fw.fragments_run == 0
    assert delivered(p.fw.accepted, expected)
    assert p.fw.rx_lost == 0 and p.fw.max_queue <= 1
    assert len(expected) / took >= 0.45 * wire_limit(expected), len(expected) / took


def test_a_window_on_marlin_runs_fragments():
    """What the default avoids: with lines behind a line that fails, the line error's flush
    cuts the next one and its rest runs as a command, out of place."""
    p = pair(MARLIN + "serial:\n  send_window: 4\n",
             faults=FaultSpec(seed=3, corrupt_rate=0.02))
    run_print(p, sample_gcode(3000, seed=1))
    assert p.fw.fragments_run > 0 and p.fw.fragment_commands[0].startswith("G1 ")
    assert not delivered(p.fw.accepted, expected_commands(sample_gcode(3000, seed=1)))


def test_a_window_fills_the_wire_where_nothing_is_cut():
    """With no line errors (a firmware that keeps partial lines has none to fear) a window
    of the queue's slots reaches 85% of the wire and beats ping-pong."""
    text = sample_gcode(3000, seed=1)
    expected = expected_commands(text)
    window = pair(MARLIN + "serial:\n  send_window: 4\n")
    fast = run_print(window, text)
    assert delivered(window.fw.accepted, expected) and window.fw.rx_lost == 0
    assert window.fw.max_queue <= 4
    assert len(expected) / fast >= 0.85 * wire_limit(expected)
    assert fast < 0.8 * run_print(pair(MARLIN), text)


# ---- lost oks and lost lines ------------------------------------------------

def lose_ok_of(p: Pair, text: str) -> None:
    """The firmware's ok for the first execution of `text` never reaches the host."""
    fw = p.fw
    assert isinstance(fw, MarlinFirmware)
    finish = fw._finish
    lost = []

    def losing(ok: str, now: float) -> None:
        current = fw._cmdq[0][1] if fw._cmdq else None
        finish(ok, now)
        if current == text and not lost:
            lost.append(ok)
            out = fw._out
            for i in range(len(out) - 1, -1, -1):
                if out[i].startswith("ok"):
                    del out[i]
                    break

    fw._finish = losing  # type: ignore[method-assign]


def lose_line(p: Pair, text: str) -> None:
    """The first numbered line carrying `text` vanishes on the wire."""
    fw = p.fw
    handle = fw._handle
    lost = []

    def losing(line: bytes, now: float) -> None:
        if not lost and line.startswith(b"N") and f" {text}*".encode() in line:
            lost.append(line)
            return
        handle(line, now)

    fw._handle = losing  # type: ignore[method-assign]


def cut_resent(p: Pair, rate: float, seed: int = 0) -> list[int]:
    """A line behind a bad one arrives after the flush just as the resent line waits in the
    RX buffer: with probability `rate` (once per line number) the resent line is destroyed
    by that line's error and flush before it is read. Returns the numbers cut."""
    fw = p.fw
    assert isinstance(fw, MarlinFirmware)
    take = fw._take_line
    rnd = random.Random(seed)
    seen: set[int] = set()
    cut: list[int] = []

    def taking(raw: bytes, t: float) -> None:
        line = raw.strip()
        if line[:1] == b"N" and b" " in line:
            n = int(line[1:line.index(b" ")])
            if n in seen and n == fw._last_n + 1 and n not in cut and rnd.random() < rate:
                cut.append(n)
                fw._line_error(LineError.LINE_NUMBER)  # a late line's error: flushed
                return
            seen.add(n)
        take(raw, t)

    fw._take_line = taking  # type: ignore[method-assign]
    return cut


def test_a_resent_line_destroyed_by_a_flush_costs_no_probe():
    """With a window on Marlin, every first resend of a line is destroyed by the flush of a
    late line behind the bad one: the repeated `Resend:` is honoured at once, the print is
    exact and no probe (no deadline) is needed."""
    text = sample_gcode(2000, seed=1)
    p = pair(MARLIN + "serial:\n  send_window: 4\n", faults=FaultSpec(seed=3, corrupt_rate=0.01))
    cut = cut_resent(p, 1.0)
    run_print(p, text)
    assert len(cut) >= 10 and p.core.jobs.result.outcome is Outcome.DONE
    assert delivered(without_fragments(p.fw), expected_commands(text))
    assert p.core.engine.deadlines.probes_total == 0


TEXT = "G28\nG1 Z0.3\n" + "".join(f"G1 X{i} Y{i} E0.1\n" for i in range(1, 60))
LAST = "G1 X59 Y59 E0.1"


@pytest.mark.parametrize(("fault", "text"), [
    (lose_ok_of, LAST), (lose_ok_of, "M400"), (lose_ok_of, "G1 X30 Y30 E0.1"),
    (lose_line, LAST), (lose_line, "G1 X30 Y30 E0.1"),
], ids=["ok-of-last-line", "ok-of-final-M400", "ok-mid-print", "last-line", "line-mid-print"])
def test_lost_oks_and_lines_are_recovered_exactly(fault, text):
    p = pair(MARLIN)
    fault(p, text)
    took = run_print(p, TEXT)
    assert p.core.jobs.result.outcome is Outcome.DONE
    assert delivered(p.fw.accepted, expected_commands(TEXT))
    # in moments: the probe's deadline, or the busy period (3 s) for the final M400
    assert took < (5.0 if text == "M400" else 2.0)


@pytest.mark.parametrize("busy_lines", [True, False])
def test_long_running_commands_never_trigger_a_probe(busy_lines):
    p = pair(MARLIN)
    if not busy_lines:
        p.send("M113 S0")
    text = "G28\nM109 S200\nG4 S5\nG1 X1\nM400\nG1 X2\n"
    run_print(p, text)
    assert p.core.jobs.result.outcome is Outcome.DONE
    assert delivered(p.fw.accepted, expected_commands(text))
    assert p.core.engine.deadlines.probes_total == 0


@pytest.mark.parametrize("command", ["G28", "M400", "M109 S200"])
def test_a_lost_ok_of_a_long_running_command_is_recovered_with_autoreport_on(command):
    p = pair(MARLIN)
    assert p.core.tracker.autoreport
    text = f"G1 X1\n{command}\nG1 X2\n"
    lose_ok_of(p, command)
    run_print(p, text, limit=60.0)
    assert p.core.jobs.result.outcome is Outcome.DONE
    assert delivered(p.fw.accepted, expected_commands(text))
    assert p.core.engine.deadlines.probes_total >= 1


def test_cancel_ends_within_seconds_when_the_printer_stops_answering():
    p = pair(MARLIN)
    start(p, sample_gcode(2000, seed=2))
    p.run_until(lambda: len(p.fw.accepted) > 200)
    p.fw.receive_data = lambda data, now: None  # type: ignore[method-assign]
    t0 = p.clock.now
    p.core.jobs.cancel()
    p.run_until(lambda: not p.core.jobs.active, max_time=60)
    # serial.timeouts.cancel (5 s): the cancel gives up on the unanswered lines and ends as a
    # cancel, before the probes' back-off would declare the link dead
    assert p.clock.now - t0 == pytest.approx(5.0)
    assert p.core.jobs.result.outcome is Outcome.CANCELLED
    assert p.core.state is S.OPERATIONAL and not p.core.failed


@pytest.mark.parametrize(("yaml", "why", "within"), [
    ("serial:\n  timeouts:\n    ok_ceiling: 40\n", "kept talking", 60.0),
    ("serial:\n  timeouts:\n    temperature_autoreport: 0\n", "probes unanswered", 60.0),
], ids=["talking", "silent"])
def test_the_end_of_a_print_never_waits_forever_for_lines_in_flight(yaml, why, within):
    """The final M400's ok is lost and the printer goes deaf: silent, the probes back off
    and the link fails; still sending temperature reports, it fails at
    `serial.timeouts.ok_ceiling`. Either way the message names the line that went
    unanswered, and the job ends."""
    p = pair(MARLIN + yaml)
    lose_ok_of(p, "M400")
    handle = p.fw._handle

    def deaf_after_m400(line: bytes, now: float) -> None:
        if "M400" not in p.fw.accepted:
            handle(line, now)

    p.fw._handle = deaf_after_m400  # type: ignore[method-assign]
    took = run_print(p, TEXT, limit=120.0)
    result = p.core.jobs.result
    assert result.outcome is Outcome.ERROR and p.core.failed
    assert "acknowledged nothing since line" in result.error and "(M400)" in result.error
    assert why in result.error
    assert took < within


# ---- random fault mixes ------------------------------------------------

FAULTS = st.builds(FaultSpec, seed=st.integers(0, 10_000),
                   corrupt_rate=st.sampled_from([0.0, 0.01, 0.05]),
                   lost_ok_rate=st.sampled_from([0.0, 0.01, 0.03]),
                   lost_line_rate=st.sampled_from([0.0, 0.01, 0.03]),
                   busy_rate=st.sampled_from([0.0, 0.02]))
WINDOWS = st.sampled_from(["auto", "1", "2", "4"])
SAMPLE = sample_gcode(300, seed=5)


@settings(max_examples=25, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(FAULTS, WINDOWS, st.sampled_from([0.0, 0.3, 1.0]))
def test_random_faults_deliver_exactly_once_in_order(faults, window, cut):
    """Whatever the mix, every file command arrives once, in order; the host never has more
    lines unacknowledged than the queue has slots, nor more bytes behind the line being
    processed than the RX buffer holds (probes aside), and the RX buffer never overflows;
    also when late lines' flushes destroy resent lines (`cut`). With the default no rest of
    a cut line runs; with a window on Marlin they may (and only they come on top of the
    file's commands)."""
    p = pair(MARLIN + f"serial:\n  send_window: {window}\n", faults=faults)
    cut_resent(p, cut, faults.seed)
    engine = p.core.engine

    def invariants() -> None:
        entries = [e for e in engine.window.inflight.entries if e[1].cmd_type is not INTERNAL]
        assert len(entries) <= 4
        if entries:
            assert sum(e[2] for e in entries) - entries[0][2] <= 127

    run_print(p, SAMPLE, check=invariants)
    assert p.core.jobs.result.outcome is Outcome.DONE, p.core.jobs.result
    assert p.core.state is S.OPERATIONAL
    assert isinstance(p.fw, MarlinFirmware)
    if window in ("auto", "1"):
        assert p.fw.fragments_run == 0
    assert delivered(without_fragments(p.fw), expected_commands(SAMPLE))
    assert p.fw.rx_lost == 0
