"""The sans-IO engine driven with bytes and explicit `now` values only: no IO, no trio."""

from __future__ import annotations

import attrs
import pytest
from pairs import feed

from pipeline.config.reader import (
    ChecksumMode,
    MaxTimeoutsSpec,
    ResendWithoutOk,
    SerialSpec,
    TimeoutSpec,
)
from pipeline.config.schema import ProfileSpec
from pipeline.errors import LocalProtocolError
from pipeline.gcode import Command, frame
from pipeline.protocol import events as ee
from pipeline.protocol import replies
from pipeline.protocol.engine import HostProtocol
from pipeline.protocol.events import ErrorReason, LinkState
from pipeline.protocol.replies import Position
from pipeline.session.tracking import Tracker

HELLO = b"N0 M110 N0*125\n"
CHECKSUM_ERROR = "Error:checksum mismatch, Last Line: 0"
LINE_NUMBER_ERROR = "Error:Line Number is not Last Line Number+1, Last Line: 0"


# ---- helpers ------------------------------------------------------------------------------

def tracker_on(tool: int) -> Tracker:
    """The session's tracker with `tool` as the current tool (it owns that fact)."""
    tracker = Tracker(ProfileSpec(extruders=4), {})
    tracker.tool = tool
    return tracker


def engine(*, hook=None, profile: ProfileSpec = ProfileSpec(), max_hellos: int = 3,
           **serial) -> HostProtocol:
    """An engine for a serial section setting `serial` (SerialSpec's options by name)."""
    return HostProtocol(SerialSpec(**serial), profile, max_hellos=max_hellos,
                        received_hook=hook)


def connected(*, hook=None, **serial) -> HostProtocol:
    """An engine through the handshake at t=0: hello out, `ok` in, OPERATIONAL."""
    e = engine(hook=hook, **serial)
    e.connect(0)
    assert e.take_output() == HELLO
    events = e.receive_data(b"ok\n", 0)
    assert ee.Connected() in events
    assert ee.StateChanged(LinkState.CONNECTING, LinkState.OPERATIONAL) in events
    assert e.state is LinkState.OPERATIONAL
    return e


def of(events, kind) -> list:
    return [x for x in events if isinstance(x, kind)]


def send(e: HostProtocol, line: str, now: float = 1.0) -> bytes:
    return e.send(Command.parse(line), now)


def pump(e: HostProtocol, now: float = 1.0) -> list[bytes]:
    """What the host does after every chunk: resend history lines while credit allows."""
    out = []
    while (r := e.next_resend(now)) is not None:
        out.append(r[0])
    return out


def with_firmware(e: HostProtocol, name: str = "Marlin 2.1.2") -> list:
    return feed(e, f"FIRMWARE_NAME:{name} PROTOCOL_VERSION:1.0")


def printing(**serial) -> HostProtocol:
    e = connected(**serial)
    with_firmware(e)
    e.printing = True
    return e


def failed(events) -> ee.LinkFailed | None:
    found = of(events, ee.LinkFailed)
    return found[0] if found else None


# ---- handshake -------------------------------------------------------------------------------

def test_hello_wire_bytes_and_connecting_state():
    e = engine()
    e.connect(0)
    assert e.state is LinkState.CONNECTING
    assert e.take_output() == HELLO
    assert e.take_output() == b""
    assert e.current_line == 1


@pytest.mark.parametrize("answer", ["ok", "wait", "ok T:20.0 /0.0"])
def test_ok_or_wait_while_connecting_connects(answer):
    e = engine()
    e.connect(0)
    e.take_output()
    events = feed(e, answer)
    assert ee.Connected() in events and e.state is LinkState.OPERATIONAL
    assert e.credit == 1 and e.in_flight == 0


def test_start_while_connecting_sends_the_hello_again_without_counting_it():
    e = engine(max_hellos=2)
    e.connect(0)
    e.take_output()
    assert not of(feed(e, "start", now=1.0), ee.Connected)
    assert e.take_output() == HELLO
    assert e.deadline == 1.0 + 2.0
    # the hello after "start" was not counted: one counted retry is left
    assert not e.handle_timeout(3.0) and e.state is LinkState.CONNECTING
    assert e.take_output() == HELLO
    assert failed(e.handle_timeout(5.0)).reason is ErrorReason.CONNECTION


@pytest.mark.parametrize("max_hellos", [1, 3, 5])
def test_hello_retried_on_timeout_then_connection_failure(max_hellos):
    e = engine(max_hellos=max_hellos, timeouts=TimeoutSpec(detection=2.0))
    e.connect(0)
    hellos = [e.take_output()]
    t = 0.0
    events: list = []
    for _ in range(max_hellos):
        assert not e.handle_timeout(t + 1.99)
        t += 2.0
        events = list(e.handle_timeout(t))
        if out := e.take_output():
            hellos.append(out)
    assert hellos == [HELLO] * max_hellos
    assert failed(events) == ee.LinkFailed(
        ErrorReason.CONNECTION, "There was a timeout while trying to connect to the printer")
    assert e.state is LinkState.ERROR and e.take_output() == b""


def test_a_line_while_connecting_pushes_the_retry_out():
    e = engine()
    e.connect(0)
    e.take_output()
    feed(e, "echo: Last Updated: 2024-01-01", now=1.5)
    assert e.deadline == 1.5 + 30.0


def test_wait_for_start_sends_no_hello_until_start():
    e = engine(wait_for_start=True)
    e.connect(0)
    assert e.take_output() == b""
    assert e.deadline == 2.0 * 3
    feed(e, "start", now=1.0)
    assert e.take_output() == HELLO
    assert ee.Connected() in feed(e, "ok", now=1.1)


def test_wait_for_start_falls_back_to_hellos_when_start_never_comes():
    e = engine(wait_for_start=True)
    e.connect(0)
    assert not e.handle_timeout(5.9)
    e.handle_timeout(6.0)
    assert e.take_output() == HELLO


def test_typical_wire_start_m110_then_m115():
    e = connected()
    assert send(e, "M110 N0") == HELLO
    feed(e, "ok")
    assert send(e, "M115") == b"N1 M115*39\n"


# ---- line numbers and checksums ------------------------------------------------------------

@pytest.mark.parametrize(("n", "line", "cs"),
                         [(0, "M110 N0", 125), (1, "M115", 39), (5, "M105", 34)])
def test_checksum_values(n, line, cs):
    assert frame(n, line) == f"N{n} {line}*{cs}\n".encode()


A, P, N = ChecksumMode.ALWAYS, ChecksumMode.PRINT, ChecksumMode.NEVER


@pytest.mark.parametrize(("mode", "is_printing", "info", "command", "numbered"), [
    (P, False, False, "M110 N0", True),
    (N, False, False, "M110 N0", True),     # checksum-requiring even with "never"
    (N, True, True, "M110", True),
    (P, False, False, "G1 X1", True),       # before firmware info everything G-code is numbered
    (P, False, False, "M105", True),
    (P, False, False, "T1", True),
    (P, False, True, "G1 X1", False),       # idle after the M115 answer: plain
    (P, False, True, "M105", False),
    (P, True, True, "G1 X1", True),         # printing: numbered
    (P, True, True, "M80.1", True),
    (P, True, True, "T0", True),
    (P, True, True, "FOO", False),          # not G-code: never
    (P, True, True, "g1 X1", False),        # case-sensitive
    (P, False, False, "FOO", False),
    (P, True, True, "F3000", False),        # a bare F is no command by default
    (A, False, True, "G1 X1", True),
    (A, False, True, "FOO", False),
    (N, True, False, "G1 X1", False),
    (N, False, False, "M115", False),
])
def test_numbering_rules(mode, is_printing, info, command, numbered):
    e = connected(checksum=mode)
    e.printing, e.firmware_info_received = is_printing, info
    cmd = Command.parse(command)
    assert e.needs_number(cmd) is numbered
    data = e.send(cmd, 1.0)
    n = 0 if cmd.gcode == "M110" else 1  # M110's N (default 0) sets the counter
    assert data == (frame(n, command) if numbered else command.encode() + b"\n")
    assert e.current_line == (n + 1 if numbered else 1)


def test_m110_sets_the_counter_and_clears_the_history():
    e = printing()
    first = send(e, "G1 X1")
    feed(e, "ok")
    assert first.startswith(b"N1 ")
    send(e, "G1 X2")
    feed(e, "ok")
    data = send(e, "M110 N5")
    assert data == frame(5, "M110 N5") and data.startswith(b"N5 M110 N5*")
    feed(e, "ok")
    assert send(e, "G1 X3").startswith(b"N6 G1 X3*")
    feed(e, "ok")
    # line 2 went out before the M110: it is gone from the history
    assert failed(feed(e, "Resend: 2")).reason is ErrorReason.RESEND


def test_numbered_line_count_and_stats():
    e = printing()
    for i in range(5):
        send(e, f"G1 X{i}")
        feed(e, "ok")
    assert e.current_line == 6 and e.sent_count == 5 and e.window.acked_count == 5
    assert e.last_acked == Command.parse("G1 X4")


# ---- the ok window ---------------------------------------------------------------------------

@pytest.mark.parametrize("window", [1, 4])
def test_credit_is_window_minus_lines_in_flight(window):
    e = connected(send_window=window)
    assert e.credit == window and e.in_flight == 0
    for i in range(window):
        send(e, f"G1 X{i}")
        assert e.credit == window - i - 1 and e.in_flight == i + 1
    for i in range(window):
        feed(e, "ok")
        assert e.credit == i + 1
    assert e.credit == window


@pytest.mark.parametrize(("name", "needs_ack"), [
    ("Marlin 2.1.2 (Github)", False),
    ("Klipper v0.12.0-1", True),
    ("Prusa-Firmware 3.13.2", True),
    ("Repetier_1.0.3", False),
])
def test_unknown_commands_use_credit_only_for_klipper_and_prusa(name, needs_ack):
    e = connected()
    send(e, "FOO")
    assert e.credit == 1, "before detection unknown commands never use credit"
    with_firmware(e, name)
    assert e.firmware_name == name and e.unknown_need_ack is needs_ack
    send(e, "FOO bar")
    assert e.credit == (0 if needs_ack else 1)


def test_firmware_detection_off_keeps_defaults():
    e = connected(firmware_detection=False)
    with_firmware(e, "Klipper v0.12")
    send(e, "FOO")
    assert e.credit == 1 and e.firmware_name == "Klipper v0.12"


@pytest.mark.parametrize("window", [1, 2])
def test_stray_ok_does_not_raise_credit_above_the_window(window):
    e = connected(send_window=window)
    events = feed(e, "ok", "ok", "ok")
    assert not events
    assert e.credit == window
    send(e, "G1 X1")
    assert e.credit == window - 1


def test_chunked_input():
    e = connected()
    send(e, "M105")
    assert not e.receive_data(b"o", 1.0)
    assert e.credit == 0
    assert not e.receive_data(b"k", 1.0)
    e.receive_data(b"\n", 1.0)
    assert e.credit == 1


def test_several_lines_in_one_chunk():
    e = connected(send_window=4)
    for i in range(3):
        send(e, f"G1 X{i}")
    events = e.receive_data(b"ok\nT:20.0 /0.0 B:21.0 /0.0\nok\nok\nech", 1.0)
    assert e.credit == 4
    assert of(events, ee.Temperatures) == [ee.Temperatures({"T": (20.0, 0.0), "B": (21.0, 0.0)})]
    events = e.receive_data(b"o:hi\n", 1.0)
    assert events == [ee.Received("echo:hi")]


@pytest.mark.parametrize("data", [b"ok\r\n", b"ok\r\nT:20 /0\r\n", b"\r\nok\n"])
def test_crlf_line_endings(data):
    e = connected()
    send(e, "M105")
    events = e.receive_data(data, 1.0)
    assert e.credit == 1
    assert all("\r" not in x.line for x in of(events, ee.Received))


def test_plain_ok_gives_no_event():
    e = connected()
    send(e, "G1 X1")
    assert not e.receive_data(b"ok\n", 1.0)


def test_overlong_garbage_without_newline_is_dropped():
    e = connected()
    assert not e.receive_data(b"x" * 5000, 1.0)
    send(e, "M105")
    assert not e.receive_data(b"\nok\n", 1.0)
    assert e.credit == 1


# ---- resends ---------------------------------------------------------------------------------

@pytest.mark.parametrize("request_line", ["Resend: 2", "Resend:2", "Resend: N2", "rs 2",
                                          "rs N:2", "rs N2 expected checksum 109", "RESEND: 2"])
def test_resend_variants_give_the_exact_historic_bytes(request_line):
    e = printing()
    send(e, "G1 X1")
    feed(e, "ok")
    original = send(e, "G1 X2 E0.5")
    assert not e.resending
    events = feed(e, CHECKSUM_ERROR, request_line, "ok")
    assert not failed(events) and not of(events, ee.FirmwareErrorLine)
    assert e.resending
    r = e.next_resend(1.0)
    assert r is not None
    assert r[0] == original == frame(2, "G1 X2 E0.5")
    assert r[1] == Command.parse("G1 X2 E0.5")
    assert not e.resending and e.credit == 0
    assert e.next_resend(1.0) is None


def test_no_new_line_credit_is_used_while_resending():
    e = printing(send_window=2)
    send(e, "G1 X1")
    feed(e, CHECKSUM_ERROR, "Resend: 1", "ok")
    assert e.resending and e.credit == 1, "one line in flight after an error"
    assert pump(e) == [frame(1, "G1 X1")]
    assert not e.resending and e.credit == 0


def test_leftover_request_for_the_current_line_is_ignored():
    e = printing()
    send(e, "G1 X1")
    feed(e, "ok")
    events = feed(e, "Resend: 2", "ok")
    assert not e.resending and not failed(events)
    assert send(e, "G1 X2") == frame(2, "G1 X2")


def test_request_for_the_current_line_during_a_resend_cancels_it():
    e = printing(send_window=2)
    send(e, "G1 X1")
    send(e, "G1 X2")
    feed(e, CHECKSUM_ERROR, "Resend: 1")
    assert e.resending
    events = feed(e, "Resend: 3", "ok")  # it has everything after all
    assert not e.resending and not failed(events)


@pytest.mark.parametrize("is_printing", [True, False])
@pytest.mark.parametrize("request_line", ["Resend: 9", "Resend: 1"])
def test_no_history_fails_while_printing_and_is_forgotten_when_idle(is_printing, request_line):
    e = connected(resend_history_size=3)
    for i in range(6):  # N1..N6 before the firmware info: history holds 4..6
        send(e, f"G1 X{i}")
        feed(e, "ok")
    e.printing = is_printing
    events = feed(e, request_line)
    if is_printing:
        assert failed(events).reason is ErrorReason.RESEND
        assert e.take_output().startswith(b"M112\n")
    else:
        assert events == [ee.Received(request_line)]
        assert not e.resending and e.state is LinkState.OPERATIONAL


def test_resend_without_a_number_is_ignored_even_while_printing():
    e = printing(resend_without_ok=ResendWithoutOk.NEVER)
    send(e, "G1 X1")
    events = feed(e, "Resend")
    assert not failed(events) and not e.resending


@pytest.mark.parametrize("max_resends", [3, 10])
@pytest.mark.parametrize("m112", [True, False])
def test_same_line_requested_again_and_again_is_a_resend_loop(max_resends, m112):
    """The first request counts 0, every repeat 1 more: at `max_resends` repeats -> loop."""
    e = printing(max_consecutive_resends=max_resends, send_m112_on_error=m112)
    send(e, "G1 X1")
    for _ in range(max_resends):
        assert not failed(feed(e, CHECKSUM_ERROR, "Resend: 1", "ok"))
        assert pump(e) == [frame(1, "G1 X1")]
    events = feed(e, CHECKSUM_ERROR, "Resend: 1")
    assert failed(events) == ee.LinkFailed(
        ErrorReason.RESEND_LOOP, "Printer keeps requesting line 1 again and again, "
        "communication stuck")
    out = e.take_output()
    assert out.startswith(b"M112\nN2 M112*") if m112 else out == b""


def test_resend_without_ok_detect_a_non_ok_line_simulates_it_at_once():
    e = printing()
    original = send(e, "G1 X1", now=5.0)
    feed(e, "Resend: 1", now=5.0)
    feed(e, "T:210.0 /210.0", now=5.1)
    assert pump(e, 5.1) == [original]


def test_resend_without_ok_detect_a_real_ok_cancels_the_timer():
    e = printing()
    send(e, "G1 X1", now=5.0)
    feed(e, "Resend: 1", "ok", now=5.0)
    assert e.deadline > 30
    assert pump(e, 5.0) == [frame(1, "G1 X1")]
    assert e.in_flight == 1


def test_resent_long_running_command_is_long_running_again():
    e = printing()
    send(e, "G28")
    feed(e, CHECKSUM_ERROR, "Resend: 1", "ok")
    assert not e.window.long_running
    assert pump(e) == [frame(1, "G28")]
    assert e.window.long_running


# ---- timeouts --------------------------------------------------------------------------------

def test_deadline_moves_with_every_non_empty_line():
    e = connected()
    assert e.deadline == 30.0
    feed(e, "echo:hello", now=10.0)
    assert e.deadline == 40.0
    e.receive_data(b"\n", 20.0)
    e.receive_data(b"  \r\n", 21.0)
    assert e.deadline == 40.0
    assert not e.handle_timeout(39.9)


def test_a_line_resets_the_consecutive_timeouts():
    e = connected()
    for _ in range(2):
        e.handle_timeout(e.deadline)
    feed(e, "echo:alive", now=e.deadline - 1)
    for _ in range(2):
        assert not failed(e.handle_timeout(e.deadline))
    assert failed(e.handle_timeout(e.deadline))


def test_heatup_with_temperature_reports_never_times_out():
    e = printing()
    send(e, "M109 S210", now=1.0)
    for t in range(2, 300):
        feed(e, f"T:{t / 2:.1f} /210.0 B:60.0 /60.0 W:?", now=float(t))
        assert e.deadline > t
    assert e.window.heating
    feed(e, "ok", now=300.0)
    assert not e.window.heating and not e.window.long_running


def test_heatup_stays_heatup_until_its_own_ok_with_a_window():
    e = printing(send_window=4)
    send(e, "M104 S210", now=1.0)
    send(e, "M109 S210", now=1.0)
    send(e, "G28", now=1.0)
    feed(e, "ok", now=2.0)             # the M104's ok
    assert e.window.heating and e.window.long_running
    feed(e, "ok", now=100.0)           # the M109's
    assert not e.window.heating and e.window.long_running
    feed(e, "ok", now=110.0)           # the G28's
    assert not e.window.long_running


def test_busy_protocol_off_pushes_the_deadline_without_detection():
    e = printing(busy_protocol=False)
    send(e, "G1 X1", now=0.0)
    assert feed(e, "echo:busy: processing", now=20.0) == []
    assert not e.deadlines.busy_active and e.deadline == 50.0


def test_busy_without_colon_is_a_normal_line():
    e = printing()
    assert feed(e, "echo:busy processing") == [ee.Received("echo:busy processing")]


@pytest.mark.parametrize(("cap", "period"), [("1", 3.0), ("0", 6.0)])
def test_autoreport_interval_shortens_the_busy_timeout(cap, period):
    e = printing()  # polling every 5 s: busy timeout max(3, 5 + 1)
    feed(e, f"Cap:AUTOREPORT_TEMP:{cap}", "busy: processing", now=1.0)
    feed(e, "busy: processing", now=2.0)
    assert e.deadline == 8.0
    send(e, "M155 S2", now=2.0)
    feed(e, "ok", now=2.1)
    feed(e, "busy: processing", now=3.0)
    assert e.deadline == 3.0 + period
    send(e, "M155 S0", now=3.0)
    feed(e, "busy: processing", now=4.0)
    assert e.deadline == 10.0


def test_busy_while_connecting_is_not_detected():
    e = engine()
    e.connect(0)
    assert not of(feed(e, "echo:busy: processing"), ee.BusyDetected)
    feed(e, "ok")
    assert feed(e, "echo:busy: processing") == [ee.BusyDetected()]


@pytest.mark.parametrize(("command", "deadline"), [
    ("G4 P5000", 36.0), ("G4 S2", 33.0), ("G4 P500 S9", 31.5), ("G4", 31.0)])
def test_dwell_extends_the_deadline(command, deadline):
    e = printing()
    send(e, command, now=1.0)
    assert e.deadline == deadline
    assert not e.handle_timeout(deadline - 0.01)


@pytest.mark.parametrize("is_printing", [True, False])
def test_max_timeouts_zero_is_unlimited(is_printing):
    e = connected(max_consecutive_timeouts=MaxTimeoutsSpec(idle=0, printing=0))
    e.printing = is_printing
    for _ in range(50):
        assert not failed(e.handle_timeout(e.deadline))
    assert e.state is LinkState.OPERATIONAL


def test_no_timeout_handling_offline_or_after_error():
    e = engine()
    assert e.deadline == float("inf") and not e.handle_timeout(1e9)
    e = connected()
    e.fail(ErrorReason.FIRMWARE, "boom")
    assert e.deadline == float("inf") and not e.handle_timeout(1e9)


# ---- reply lines into events -----------------------------------------------------------------

@pytest.mark.parametrize(("tool", "line", "temps"), [
    (0, "T:210.0 /210.0 B:60.0 /60.0 @:127 B@:0", {"T0": (210.0, 210.0), "B": (60.0, 60.0)}),
    (0, "T0:200.0 /200.0 T1:180.0 /190.0 B:60.0 /60.0",
     {"T0": (200.0, 200.0), "T1": (180.0, 190.0), "B": (60.0, 60.0)}),
    (1, "T:180.0 /190.0 T0:200.0 /200.0 T1:180.0 /190.0",
     {"T0": (200.0, 200.0), "T1": (180.0, 190.0)}),
    (1, "T:150.0 /200.0", {"T1": (150.0, 200.0)}),
    (0, "T:150.0 /200.0", {"T0": (150.0, 200.0)}),
    (0, "B:55.5 /60.0", {"B": (55.5, 60.0)}),
    (0, "T:20.0 /0.0 C:30.0 /35.0", {"T0": (20.0, 0.0), "C": (30.0, 35.0)}),
    (0, "T:20.0 /0.0 F0:255.0 /255.0", {"T0": (20.0, 0.0), "F0": (255.0, 255.0)}),
    (0, "T:21.3", {"T0": (21.3, None)}),
])
def test_temperature_lines(tool, line, temps):
    e = connected()
    events = feed(e, line)
    # the engine reports what the printer wrote; the session resolves a bare T
    assert events == [ee.Received(line), ee.Temperatures(replies.parse_temperatures(line))]
    assert tracker_on(tool).canonical(events[1].temps) == temps


def test_ok_with_temperatures_acks_and_reports():
    e = connected()
    send(e, "M105")
    events = feed(e, "ok T:210.0 /210.0 B:60.0 /60.0")
    assert e.credit == 1 and e.window.acked_count == 1
    assert of(events, ee.Temperatures) == [
        ee.Temperatures({"T": (210.0, 210.0), "B": (60.0, 60.0)})]


@pytest.mark.parametrize(("tool", "line", "position"), [
    (0, "X:10.00 Y:20.00 Z:0.30 E:1.50 Count X:800 Y:1600 Z:120", Position(10.0, 20.0, 0.3, 1.5)),
    (0, "ok X:1.0 Y:2.0 Z:3.0 E:4.0", Position(1.0, 2.0, 3.0, 4.0)),
    (0, "X:1 Y:2 Z:3 E0:4 E1:5", Position(1.0, 2.0, 3.0, 4.0, (4.0, 5.0))),
    (1, "X:1 Y:2 Z:3 E0:4 E1:5", Position(1.0, 2.0, 3.0, 5.0, (4.0, 5.0))),
    (2, "X:1 Y:2 Z:3 E0:4 E1:5", Position(1.0, 2.0, 3.0, None, (4.0, 5.0))),
])
def test_position_reports(tool, line, position):
    e = connected()
    (report,) = of(feed(e, line), ee.PositionReport)
    assert attrs.evolve(report.position, e=position.e) == position
    assert tracker_on(tool).update_position(report.position)["e"] == position.e


def test_m114_count_tail_is_not_a_temperature_report():
    e = connected()
    events = feed(e, "X:0.00 Y:0.00 Z:0.00 E:0.00 Count A:0 B:0 C:0")
    assert not of(events, ee.Temperatures) and of(events, ee.PositionReport)


def test_m115_and_capability_report():
    e = connected()
    assert send(e, "M115") == b"N1 M115*39\n"
    name = "Marlin 2.1.2 (Github)"
    events = feed(e, f"FIRMWARE_NAME:{name} SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin "
                  "PROTOCOL_VERSION:1.0 MACHINE_TYPE:Ender-3 EXTRUDER_COUNT:1",
                  "Cap:AUTOREPORT_TEMP:1", "Cap:EMERGENCY_PARSER:1", "Cap:busy_protocol:0",
                  "Cap:TOO:MANY:FIELDS", "ok")
    info = of(events, ee.FirmwareInfo)
    assert len(info) == 1 and info[0].name == name
    assert info[0].data["MACHINE_TYPE"] == "Ender-3" and info[0].data["EXTRUDER_COUNT"] == "1"
    caps = {"AUTOREPORT_TEMP": True, "EMERGENCY_PARSER": True, "BUSY_PROTOCOL": False}
    assert [(c.name, c.enabled) for c in of(events, ee.CapabilityReported)] == list(caps.items())
    assert of(events, ee.CapabilityReport) == [ee.CapabilityReport(caps)]
    assert type(events[-1]) is ee.CapabilityReport, "the report ends at the ok"
    assert e.capabilities == caps and e.firmware_info_received and e.firmware_name == name
    assert e.credit == 1
    assert send(e, "M105") == b"M105\n", "idle commands are plain after the firmware info"


def test_capability_report_ends_at_the_first_non_cap_line():
    e = connected()
    events = feed(e, "Cap:AUTOREPORT_TEMP:1", "echo:done")
    assert [type(x) for x in events] == [ee.Received, ee.CapabilityReported, ee.Received,
                                         ee.CapabilityReport]


def test_only_the_first_firmware_line_counts():
    e = connected()
    with_firmware(e, "Marlin 2.1")
    events = with_firmware(e, "Klipper")
    assert not of(events, ee.FirmwareInfo) and e.firmware_name == "Marlin 2.1"


@pytest.mark.parametrize(("name", "always", "unknown_numbered"), [
    ("Repetier_1.0.3", True, False),
    ("Anet_A8_Marlin", True, False),
    ("Malyan", True, False),
    ("Prusa-Firmware 3.13.2", False, True),
    ("Marlin 2.1", False, False),
])
def test_firmware_checksum_tweaks(name, always, unknown_numbered):
    e = connected()
    with_firmware(e, name)
    assert send(e, "G1 X1").startswith(b"N") is always
    feed(e, "ok")
    e.printing = True
    assert send(e, "FOO").startswith(b"N") is unknown_numbered


def test_firmware_checksum_never_beats_repetier():
    e = connected(checksum=ChecksumMode.NEVER)
    with_firmware(e, "Repetier_1.0.3")
    assert send(e, "G1 X1") == b"G1 X1\n"


@pytest.mark.parametrize(("line", "name", "params"), [
    ("// action:pause", "pause", ""),
    ("//action:pause", "pause", ""),
    ("//action:custom a b", "custom", "a b"),
    ("// action:prompt_begin Filament runout", "prompt_begin", "Filament runout"),
])
def test_action_lines(line, name, params):
    e = connected()
    assert of(feed(e, line), ee.ActionCommand) == [ee.ActionCommand(line, name, params)]


def test_other_debug_lines_are_only_received():
    e = connected()
    assert feed(e, "// echo something", "//action:") == [ee.Received("// echo something"),
                                                          ee.Received("//action:")]


@pytest.mark.parametrize(("tool", "line", "invalid"), [
    (3, "echo:T3 Invalid extruder", 3),
    (0, "echo:T3 Invalid extruder", 3),
    (2, "Invalid extruder", 2),          # no number: the current tool (OctoPrint)
])
def test_invalid_tool(tool, line, invalid):
    e = connected()
    (report,) = of(feed(e, line), ee.InvalidTool)
    assert report.tool == (None if "T" not in line else invalid)  # None: the current one
    assert tracker_on(tool).invalid_tool(report.tool)[0] == invalid


@pytest.mark.parametrize(("lines", "error", "credit"), [
    ([CHECKSUM_ERROR], None, 0),
    ([LINE_NUMBER_ERROR], None, 0),
    (["Error:No Line Number with checksum, Last Line: 0"], None, 1),  # simulated ok
    (["Error:Missing LineNumber"], None, 1),
    (['echo:Unknown command: "FOO"'], None, 0),
    (['Error:Unknown command: "FOO"'], None, 0),
    (["Error:volume.init failed"], None, 0),
    (["Error:Something else went wrong"], ee.FirmwareErrorLine("Something else went wrong",
                                                               False), 0),
    (["!! Lost communication with MCU 'mcu'"],
     ee.FirmwareErrorLine("Lost communication with MCU 'mcu'", False), 0),
    (["Error:Printer halted. kill() called!"],
     ee.FirmwareErrorLine("Printer halted. kill() called!", True), 0),
    (["fatal: Thermistor defect"], ee.FirmwareErrorLine("fatal: Thermistor defect", True), 0),
    (["Error:Thermal Runaway, system stopped! Heater_ID: 0",
      "Error:Printer halted. kill() called!"],
     ee.FirmwareErrorLine("Thermal Runaway, system stopped! Heater_ID: 0 - Printer halted. "
                          "kill() called!", True), 0),
    (["Error:0", ": Extruder switched off. MAXTEMP triggered !"],
     ee.FirmwareErrorLine("0: Extruder switched off. MAXTEMP triggered !", False), 0),
])
def test_error_classification(lines, error, credit):
    e = connected()
    send(e, "G1 X1")
    events = feed(e, *lines)
    assert of(events, ee.FirmwareErrorLine) == ([error] if error else [])
    assert not failed(events), "the engine reports; the host decides"
    assert e.credit == credit and e.state is LinkState.OPERATIONAL


def test_ok_after_a_kill_text_is_joined_not_counted():
    e = connected()
    send(e, "G1 X1")
    events = feed(e, "Error:MINTEMP triggered, system stopped! Heater_ID: bed", "ok")
    assert of(events, ee.FirmwareErrorLine) == [
        ee.FirmwareErrorLine("MINTEMP triggered, system stopped! Heater_ID: bed - ok", False)]


@pytest.mark.parametrize("is_printing", [True, False])
def test_start_while_operational_is_a_printer_reset(is_printing):
    e = connected(send_window=4)
    e.printing = is_printing
    for i in range(3):
        send(e, f"G28 X{i}")
    feed(e, "busy: processing")
    events = feed(e, "start")
    assert of(events, ee.PrinterReset) == [ee.PrinterReset(idle=not is_printing)]
    assert e.current_line == 1 and e.in_flight == 0 and e.credit == 4
    assert not e.window.long_running and not e.resending
    assert feed(e, "busy: processing") == [ee.BusyDetected()], "M113 is gone after a reset"


def test_received_lines():
    e = connected()
    assert feed(e, "echo:SD card ok") == [ee.Received("echo:SD card ok")]


# ---- emergency stop, failure, out of band, EOF ----------------------------------------------

@pytest.mark.parametrize(("extruders", "bed", "tail"), [
    (1, True, ["M104 T0 S0", "M140 S0"]),
    (2, True, ["M104 T0 S0", "M104 T1 S0", "M140 S0"]),
    (2, False, ["M104 T0 S0", "M104 T1 S0"]),
])
def test_emergency_stop_bytes_and_error(extruders, bed, tail):
    e = connected(profile=ProfileSpec(extruders=extruders, heated_bed=bed))
    send(e, "M110 N7")
    events = e.emergency_stop()
    expected = b"M112\n" + frame(8, "M112") + b"".join(
        frame(9 + i, line) for i, line in enumerate(tail))
    assert e.take_output() == expected
    assert failed(events) == ee.LinkFailed(ErrorReason.EMERGENCY,
                                           "Closing serial port due to emergency stop M112.")
    assert ee.StateChanged(LinkState.OPERATIONAL, LinkState.ERROR) in events
    with pytest.raises(LocalProtocolError):
        send(e, "G1 X1")


@pytest.mark.parametrize(("reason", "m112", "bytes_out"), [
    (ErrorReason.FIRMWARE, True, True),
    (ErrorReason.FIRMWARE, False, False),
    (ErrorReason.TIMEOUT, True, False),
    (ErrorReason.CONNECTION, True, False),
])
def test_fail_sends_the_emergency_sequence_only_when_it_should(reason, m112, bytes_out):
    e = connected(send_m112_on_error=m112)
    events = e.fail(reason, "boom")
    assert failed(events) == ee.LinkFailed(reason, "boom")
    out = e.take_output()
    assert out == (b"M112\n" + frame(1, "M112") + frame(2, "M104 T0 S0") + frame(3, "M140 S0")
                   if bytes_out else b"")
    assert not e.fail(reason, "again"), "only the first failure counts"


def test_send_before_connecting_or_after_error_raises():
    e = engine()
    with pytest.raises(LocalProtocolError):
        send(e, "G1 X1")
    e = connected()
    e.receive_data(b"", 1.0)
    with pytest.raises(LocalProtocolError):
        send(e, "G1 X1")


def test_lines_after_an_error_are_ignored():
    e = connected()
    e.fail(ErrorReason.FIRMWARE, "boom")
    assert not feed(e, "ok", "T:20 /0", "start")


def test_out_of_band_command_is_plain_and_its_ok_comes_in_order():
    e = printing()
    send(e, "G1 X1")
    assert e.send_out_of_band(Command.parse("M108")) == b"M108\n"
    assert e.in_flight == 2 and e.credit == -1
    feed(e, "ok")
    assert e.last_acked == Command.parse("G1 X1")
    feed(e, "ok")
    assert e.last_acked == Command.parse("M108") and e.credit == 1


def test_out_of_band_on_an_idle_link_does_not_time_out_at_once():
    e = connected()
    with_firmware(e)
    send(e, "M105", now=1.0)
    feed(e, "ok", now=1.0)
    feed(e, "T:20.0 /0.0", now=99.0)
    e.send_out_of_band(Command.parse("M108"))
    assert e.deadline == 129.0
    assert not e.handle_timeout(100.0) and e.in_flight == 1
    e2 = connected()
    feed(e2, "T:20.0 /0.0", now=99.0)
    e2.send_out_of_band(Command.parse("M108"), now=100.0)
    assert e2.deadline == 129.0


def test_eof_is_a_connection_failure():
    e = connected()
    events = e.receive_data(b"", 5.0)
    assert failed(events).reason is ErrorReason.CONNECTION
    assert e.state is LinkState.ERROR and e.take_output() == b""


# ---- the received hook -----------------------------------------------------------------------

def test_hook_returning_none_drops_the_line():
    seen = []

    def hook(line):
        seen.append(line)
        return None if "junk" in line else line

    e = connected(hook=hook)
    assert not feed(e, "junk junk", now=10.0)
    assert e.deadline == 30.0, "a dropped line is no sign of life"
    assert seen[-1] == "junk junk"
    assert feed(e, "echo:fine", now=11.0) == [ee.Received("echo:fine")]


def test_hook_rewriting_to_ok_acknowledges():
    e = connected(hook=lambda line: "ok" if line == "ack" else line)
    send(e, "G1 X1")
    assert not feed(e, "ack")
    assert e.credit == 1 and e.window.acked_count == 1


def test_hook_sees_every_line_including_ok():
    seen = []
    e = connected(hook=lambda line: seen.append(line) or line)
    send(e, "G1 X1")
    feed(e, "ok", "T:20 /0")
    assert seen[-2:] == ["ok", "T:20 /0"] and e.credit == 1
