"""The send window and the exact in-flight account, on the sans-IO engine with bytes and
explicit `now` values: one case per rule (window sizes: ping-pong for Marlin, `ok N`, resends,
RX bytes, stale `start` lines, fragments, long-running holds, the lost-ok probe and its
bounds)."""

from __future__ import annotations

import pytest
from pairs import feed

from pipeline.config.reader import MaxTimeoutsSpec, SerialSpec, TimeoutSpec
from pipeline.gcode import Command, frame
from pipeline.protocol import events as ee
from pipeline.protocol.engine import HostProtocol
from pipeline.protocol.events import ErrorReason, LinkState

HELLO = frame(0, "M110 N0")
ADVANCED = "ok N0 P15 B3"  # Marlin's answer to the hello with ADVANCED_OK and BUFSIZE 4
MARLIN = "Marlin 2.1.2"
#: Klipper keeps the rest of a line after a line error (it asks for no resends): auto may open.
KEEPS = "Klipper"
#: A fixed window: every rule below (acks, resends, RX bytes, long-running) applies as for auto.
WINDOW = {"send_window": 4}


def engine(**serial) -> HostProtocol:
    return HostProtocol(SerialSpec(**serial))


def connected(answer: str = ADVANCED, firmware: str = MARLIN, **serial) -> HostProtocol:
    e = engine(**serial)
    e.connect(0)
    assert e.take_output() == HELLO
    feed(e, answer, now=0.0)
    assert e.state is LinkState.OPERATIONAL
    feed(e, f"FIRMWARE_NAME:{firmware} PROTOCOL_VERSION:1.0", now=0.0)
    e.printing = True
    return e


def send(e: HostProtocol, line: str, now: float = 1.0) -> bytes:
    return e.send(Command.parse(line), now)


def fill(e: HostProtocol, count: int, now: float = 1.0) -> list[bytes]:
    return [send(e, f"G1 X{i}", now) for i in range(1, count + 1)]


def pump(e: HostProtocol, now: float = 1.0) -> list[bytes]:
    out = []
    while (r := e.next_resend(now)) is not None:
        out.append(r[0])
    return out


# ---- the window's size -----------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "firmware", "serial", "window"), [
    (ADVANCED, MARLIN, {}, 1),              # auto with Marlin: ping-pong (its RX flush cuts lines)
    ("ok N0 P15 B7", MARLIN, {}, 1),
    ("ok", MARLIN, {"firmware_bufsize": 4}, 1),
    (ADVANCED, "Prusa-Firmware 3.13.0", {}, 1),
    (ADVANCED, KEEPS, {}, 4),               # a firmware that keeps partial lines: B3 + the line
    ("ok N0 P15 B7", KEEPS, {}, 8),
    ("ok", KEEPS, {}, 1),                   # no ADVANCED_OK: one line
    ("ok", KEEPS, {"firmware_bufsize": 4}, 4),  # ... unless the config says BUFSIZE
    (ADVANCED, KEEPS, {"firmware_detection": False}, 1),  # not told: ping-pong
    (ADVANCED, MARLIN, {"send_window": 1}, 1),            # a number fixes it
    (ADVANCED, MARLIN, {"send_window": 6}, 6),
])
def test_window_size(answer, firmware, serial, window):
    e = connected(answer, firmware, **serial)
    assert e.window.limit == window and e.credit == window


def test_auto_stays_at_one_line_with_marlin_however_large_its_queue():
    e = connected()
    for i in range(1, 6):
        assert e.window.limit == 1 and e.credit == 1
        send(e, f"G1 X{i}")
        assert e.credit == 0, "no byte behind a line Marlin has not checked yet"
        feed(e, f"ok N{i} P15 B3")
    assert e.window.slots == 4 and e.window.acked_count == 5


def test_queue_slots_are_learned_from_later_oks_too():
    e = connected("ok", KEEPS)
    assert e.window.limit == 1
    send(e, "G1 X1")
    feed(e, "ok N1 P15 B3")
    assert e.window.advanced_ok and e.window.slots == 4 and e.window.limit == 4


# ---- acknowledgements ---------------------------------------------------------------------------

def test_ok_n_acknowledges_every_line_up_to_n():
    e = connected()
    fill(e, 4)
    feed(e, "ok N3 P15 B1")  # the oks of lines 1 and 2 were lost
    assert e.in_flight == 1 and e.window.acked_count == 3
    assert e.last_acked == Command.parse("G1 X3")
    feed(e, "ok N4 P15 B3")
    assert e.in_flight == 0 and e.last_acked == Command.parse("G1 X4")


@pytest.mark.parametrize("stray", ["ok N9 P15 B3", "ok P15 B3", "ok"])
def test_an_ok_for_no_line_in_flight_acknowledges_nothing(stray):
    """A stale ok N, or an ok without a number while only numbered lines are in flight (the
    answer to a fragment Marlin read after flushing its RX buffer)."""
    e = connected()
    fill(e, 3)
    feed(e, stray)
    assert e.in_flight == 3 and e.window.acked_count == 0


def test_an_unnumbered_line_is_acknowledged_by_an_ok_without_number():
    e = connected()
    e.printing = False
    send(e, "G28")  # idle: unnumbered
    feed(e, "ok P15 B3")
    assert e.in_flight == 0 and e.last_acked == Command.parse("G28")


def test_an_ok_with_temperatures_acknowledges_up_to_the_m105():
    e = connected()
    fill(e, 2)
    send(e, "M105")
    feed(e, "ok T:20.0 /0.0 B:20.0 /0.0 @:0")  # M105 answers without N, in order
    assert e.in_flight == 0 and e.last_acked == Command.parse("M105")


# ---- resends ------------------------------------------------------------------------------

def test_a_resend_takes_the_lines_from_n_back_and_one_line_goes_out_at_a_time():
    e = connected(**WINDOW)
    lines = fill(e, 4)
    feed(e, "Error:checksum mismatch, Last Line: 1", "Resend: 2")
    assert e.in_flight == 1, "line 1 still waits for its ok; 2..4 will be resent"
    assert pump(e) == [], "the resend's own ok first"
    feed(e, "ok")  # the resend's ok: acknowledges no line
    assert e.in_flight == 1 and e.window.acked_count == 0
    assert e.window.limit == 1 and pump(e) == []  # line 1 still in flight: no room
    feed(e, "ok N1 P15 B3")
    assert pump(e) == [lines[1]]
    feed(e, "ok N2 P15 B3")
    assert pump(e) == [lines[2]]
    feed(e, "ok N3 P15 B3")
    assert e.window.limit == 4, "a clean run: the window opens again"
    assert pump(e) == [lines[3]]
    feed(e, "ok N4 P15 B3")
    assert e.in_flight == 0 and e.window.acked_count == 4 and not e.resending


LINE_ERROR = "Error:Line Number is not Last Line Number+1, Last Line: 0"


def test_repeats_before_the_line_goes_out_again_change_nothing():
    """Lines 2 and 3 arrive after Marlin flushed its RX buffer and ask for line 1 again:
    it has not gone out again yet, so nothing was lost."""
    e = connected()
    lines = fill(e, 3)
    feed(e, "Error:checksum mismatch, Last Line: 0", "Resend: 1", "ok")
    feed(e, LINE_ERROR, "Resend: 1", "ok", LINE_ERROR, "Resend: 1", "ok")
    assert pump(e) == [lines[0]]
    for n in (1, 2, 3):
        feed(e, f"ok N{n} P15 B3")
        assert pump(e) == ([lines[n]] if n < 3 else [])
    assert e.in_flight == 0 and e.window.acked_count == 3 and e.resends.requests == 3


def test_a_resent_line_cut_by_a_flush_is_resent_at_once():
    """Line 1 went out again, then line 3 (behind the bad line on the wire) arrived and its
    flush destroyed the copy: the repeated `Resend: 1` is honoured at once, not taken for
    a duplicate (which left the print waiting for a probe)."""
    e = connected(**WINDOW)
    lines = fill(e, 3)
    feed(e, "Error:checksum mismatch, Last Line: 0", "Resend: 1", "ok")
    assert pump(e) == [lines[0]]
    feed(e, LINE_ERROR, "Resend: 1", "ok")
    assert pump(e) == [lines[0]], "sent again at once"
    assert e.in_flight == 1 and e.deadlines.probes_total == 0
    feed(e, "ok N1 P15 B3")
    assert pump(e) == [lines[1]]
    feed(e, "ok N2 P15 B3")
    assert pump(e) == [lines[2]]
    feed(e, "ok N3 P15 B3")
    assert e.in_flight == 0 and e.window.acked_count == 3 and not e.resending


def test_a_probe_answered_by_a_resend_is_honoured():
    """The copy of line 1 was lost on the wire: the probe (line 2, the next line) makes
    Marlin ask for line 1 once more, and it goes out at once."""
    e = connected(**WINDOW)
    lines = fill(e, 2, now=1.0)
    feed(e, "Error:checksum mismatch, Last Line: 0", "Resend: 1", "ok", now=1.0)
    assert pump(e, 1.0) == [lines[0]]
    e.handle_timeout(e.deadline)
    probe = e.take_output()
    assert probe == lines[1], "the probe is the next line: never a number past it"
    feed(e, LINE_ERROR, "Resend: 1", "ok", now=1.2)
    assert pump(e, 1.2) == [lines[0]]
    feed(e, "ok N1 P15 B3", now=1.3)
    assert pump(e, 1.3) == [lines[1]]
    feed(e, "ok N2 P15 B3", now=1.4)
    assert e.in_flight == 0 and e.window.acked_count == 2 and e.deadlines.probes_total == 1


def test_fragment_ok_while_a_resend_is_pending_acknowledges_nothing():
    e = connected()
    fill(e, 3)
    feed(e, "Error:checksum mismatch, Last Line: 0", "Resend: 1", "ok")
    feed(e, 'echo:Unknown command: "1.5 Y2*99"', "ok P15 B3")  # a fragment's answer
    assert e.resending and e.in_flight == 0 and e.window.acked_count == 0


def test_resend_without_ok_detect_gives_up_waiting_for_it():
    e = connected(timeouts=TimeoutSpec(resend_ok=0.5))
    lines = fill(e, 1, now=5.0)
    feed(e, "Resend: 1", now=5.0)
    assert e.next_resend(5.0) is None
    e.handle_timeout(5.5)
    assert pump(e, 5.5) == lines


# ---- RX bytes --------------------------------------------------------------------------------

def test_lines_beyond_the_rx_buffer_wait_for_an_ok():
    e = connected()
    line = "G1 X100.000 Y100.000 Z0.300 E1.23456 F1800"
    sent = [send(e, line) for _ in range(3)]
    assert [len(b) for b in sent] == [49, 49, 49]  # 98 bytes behind the first: they fit
    assert send(e, line) == b"", "147 bytes behind the first would overflow 127"
    assert e.in_flight == 4 and e.credit == 0 and e.window.inflight.bytes == 147
    feed(e, "ok N1 P15 B3")
    assert e.take_output() == frame(4, line), "the held line goes out once there is room"
    assert e.in_flight == 3 and e.window.inflight.bytes == 147


# ---- a stale `start` ----------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "window"), [(ADVANCED, 4), ("ok", 1)])
def test_a_stale_start_never_makes_the_window_larger(answer, window):
    e = engine(send_window=window)
    e.connect(0)
    e.take_output()
    feed(e, "start", now=0.0)
    assert e.take_output() == HELLO, "answered with another hello"
    feed(e, answer, now=0.0)
    assert e.in_flight == 1 and e.credit == window - 1, "the second hello is in flight"
    send(e, "M115")
    feed(e, answer)  # the second hello's ok
    assert e.in_flight == 1 and e.last_acked is None
    feed(e, "ok N1 P15 B3" if answer == ADVANCED else "ok")
    assert e.in_flight == 0 and e.last_acked == Command.parse("M115")


# ---- long-running commands ---------------------------------------------------------------------

@pytest.mark.parametrize("command", ["G28", "M109 S200", "G4 S5", "M400", "M600"])
def test_long_running_commands_hold_the_window_at_one(command):
    e = connected(**WINDOW)
    send(e, command)
    assert e.window.limit == 1 and e.credit == 0
    feed(e, "ok N1 P15 B3", now=2.0)
    assert e.window.limit == 4 and e.credit == 4


# ---- lost oks: the probe -----------------------------------------------------------------------

def test_a_lost_ok_is_probed_with_the_next_line_number():
    e = connected()
    fill(e, 2, now=1.0)
    feed(e, "ok N1 P15 B3", now=1.0)  # line 2's ok is lost
    assert e.deadline == pytest.approx(1.05), "at least 0.05 s, four times the recent latency"
    assert not e.handle_timeout(1.05)
    assert e.take_output() == frame(3, "M105")
    feed(e, "ok T:20.0 /0.0", now=1.6)  # line 2 had arrived: the probe's answer covers both
    assert e.in_flight == 0 and e.last_acked == Command.parse("G1 X2")
    assert e.deadlines.probes_total == 1


def test_a_lost_line_is_resent_after_the_probe():
    e = connected()
    lines = fill(e, 1, now=1.0)
    e.handle_timeout(1.5)
    assert e.take_output() == frame(2, "M105")
    feed(e, "Error:Line Number is not Last Line Number+1, Last Line: 0", "Resend: 1", "ok",
         now=1.6)
    assert pump(e, 1.6) == lines  # then the probe line, as the history has it
    feed(e, "ok N1 P15 B3", now=1.7)
    assert pump(e, 1.7) == [frame(2, "M105")]
    feed(e, "ok T:20.0 /0.0", now=1.8)
    assert e.in_flight == 0 and e.window.acked_count == 2


def test_a_line_held_for_rx_room_is_the_probe():
    """The held line already has the next number: it goes out as the probe (never a new
    number ahead of it, which the printer would refuse)."""
    e = connected()
    line = "G1 X100.000 Y100.000 Z0.300 E1.23456 F1800"
    for _ in range(3):
        send(e, line, now=1.0)
    assert send(e, line, now=1.0) == b""
    e.handle_timeout(e.deadline)
    assert e.take_output() == frame(4, line)
    assert e.current_line == 5 and e.in_flight == 4


def test_probes_back_off_and_the_link_fails_with_a_clear_message():
    e = connected(max_consecutive_timeouts=MaxTimeoutsSpec(printing=3))
    fill(e, 1, now=1.0)
    t, waits = 1.0, []
    for n in (2, 3, 4):  # each probe is a new line, never line 1 again
        d = e.deadline
        waits.append(round(d - t, 6))
        t = d
        assert not e.handle_timeout(t)
        assert e.take_output() == frame(n, "M105")
    assert waits == [0.05, 0.5, 0.5]
    events = e.handle_timeout(e.deadline)
    failure = next(x for x in events if isinstance(x, ee.LinkFailed))
    assert failure.reason is ErrorReason.TIMEOUT
    assert "line 1 (G1 X1)" in failure.message and "3 probes unanswered" in failure.message


def test_busy_lines_postpone_the_probe():
    e = connected()
    send(e, "G28", now=1.0)
    for t in range(2, 60, 2):
        feed(e, "echo:busy: processing", now=float(t))
        assert not e.handle_timeout(float(t) + 0.9)
    assert e.deadlines.probes_total == 0


@pytest.mark.parametrize(("command", "earliest"), [("G4 S5", 36.0), ("M109 S200", 30.0),
                                                   ("G28", 30.0)])
def test_long_running_commands_get_the_long_deadline(command, earliest):
    """No probe before the communication timeout (30 s after the last line from the printer,
    at 0 s here), a G4 not before its wait is over."""
    e = connected()
    send(e, command, now=1.0)
    assert e.deadline >= earliest - 1e-9
    e.handle_timeout(earliest - 0.01)
    assert e.deadlines.probes_total == 0


def test_a_heatup_reporting_its_wait_is_never_probed():
    e = connected()
    send(e, "M109 S210", now=1.0)
    for t in range(2, 200):
        feed(e, f"T:{t / 2:.1f} /210.0 B:20.0 /0.0 W:?", now=float(t))
        e.handle_timeout(float(t))
    assert e.deadlines.probes_total == 0 and e.window.heating


def test_a_lost_ok_of_a_long_command_is_probed_despite_autoreport_lines():
    e = connected()
    feed(e, "Cap:AUTOREPORT_TEMP:1", "ok", now=0.5)
    send(e, "M400", now=1.0)
    t = 1.0
    while e.deadlines.probes_total == 0 and t < 120:
        t += 1.0
        feed(e, " T:20.0 /0.0 B:20.0 /0.0 @:0", now=t)
        e.handle_timeout(t)
    assert e.deadlines.probes_total == 1 and t <= 32
    feed(e, "ok T:20.0 /0.0", now=t)
    assert e.in_flight == 0 and e.last_acked == Command.parse("M400")


def test_an_out_of_band_m108_is_acknowledged_by_its_own_ok_only():
    """Marlin acts on M108 as it arrives and queues it behind the lines before it: their
    `ok N` never covers it, its own `ok P.. B..` does."""
    e = connected()
    fill(e, 2)
    e.send_out_of_band(Command.parse("M108"), 1.0)
    feed(e, "ok N2 P15 B3")
    assert e.in_flight == 1
    feed(e, "ok P15 B3")
    assert e.in_flight == 0 and e.last_acked == Command.parse("M108")


def test_abandon_in_flight_empties_the_account():
    e = connected(**WINDOW)
    fill(e, 3)
    assert e.abandon_in_flight() == 3
    assert e.in_flight == 0 and e.window.inflight.bytes == 0 and e.credit == 4
