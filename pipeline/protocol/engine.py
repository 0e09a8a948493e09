"""The sans-IO protocol engine (h11's model): bytes in, events and bytes out, no IO, no trio.

`HostProtocol` is the one place where the connection's state changes, read top to bottom:
the handshake, line numbers and XOR checksums (OctoPrint's when-to-number rules), sending,
receiving, the timeout rules and the emergency stop. It composes four parts, each the owner
of its own state behind a narrow interface:

- `SendWindow` (window.py): the lines in flight, what an ok acknowledges, the window's limit,
  the line held for RX room, long-running flags, the last acknowledged command;
- `ResendTracker` (resend.py): the history of numbered lines, the verdicts on `Resend: N`,
  the lines queued to go out again and the resend's own ok;
- `Deadlines` (timeouts.py): the communication and ok deadlines, the ok latency, busy mode,
  and the probe policy (when a passed deadline means a probe, a tickle or a dead link);
- `ReplyReader` (reader.py): bytes to lines, what each line is, the firmware report.

It does not own queues, the pipeline or the print job (the session does) and never reads a
clock: every call that needs time takes `now`. Plain `ok` lines are handled without allocating.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from pipeline.config.schema import ChecksumMode, ProfileSpec, ResendWithoutOk, SerialSpec
from pipeline.errors import LocalProtocolError
from pipeline.gcode import Command, encode_plain, frame, param_value
from pipeline.protocol import replies
from pipeline.protocol.events import (
    ActionCommand,
    BusyDetected,
    CapabilityReport,
    Connected,
    EngineEvent,
    ErrorReason,
    FirmwareErrorLine,
    FirmwareInfo,
    LinkFailed,
    LinkState,
    PrinterReset,
    Received,
    StateChanged,
    TickleRequested,
)
from pipeline.protocol.reader import Reply, ReplyReader
from pipeline.protocol.report import Content
from pipeline.protocol.resend import ResendTracker
from pipeline.protocol.settings import HEATUP_GCODES, firmware_tweaks
from pipeline.protocol.timeouts import INF, Deadlines, Timeout
from pipeline.protocol.window import INTERNAL, SendWindow

__all__ = ["HEATUP_GCODES", "HostProtocol"]

NO_EVENTS: Sequence[EngineEvent] = ()
_M112 = Command.parse("M112")
_BED_OFF = Command.parse("M140 S0")
_PROBE = Command.parse("M105", cmd_type=INTERNAL)
# `ok N<line> P<planner free> B<queue free>` (ADVANCED_OK), read straight from the bytes.
_ADVANCED_OK = re.compile(rb"ok(?: N(\d+))?(?: P(\d+))?(?: B(\d+))? *")


class HostProtocol:
    """The engine. Feed it bytes with `receive_data`, ask it to frame commands with `send`,
    call `handle_timeout` when `deadline` has passed, and write whatever `take_output` gives.
    It reads the config's values as they are: `serial`, and the `profile`'s heaters."""

    def __init__(self, serial: SerialSpec = SerialSpec(), profile: ProfileSpec = ProfileSpec(),
                 *, max_hellos: int = 3,
                 received_hook: Callable[[str], str | None] | None = None) -> None:
        self.serial, self.profile = serial, profile
        self.max_hellos = max_hellos  # hellos sent before the connection attempt fails
        self.state = LinkState.OFFLINE
        self.printing = False          # set by the session's job control: a print is active
        self.current_line = 1
        self.firmware_info_received = False
        self.firmware_name: str | None = None
        #: The session's line for a probe or sync instead of M105, or None (SD uploads).
        self.probe_line: Callable[[], Command | None] | None = None
        self._checksum_requiring = frozenset(serial.checksum_requiring_commands)  # per line
        self._long_running = frozenset(serial.long_running_commands)
        self._flagged = self._long_running | HEATUP_GCODES | {"M155"}
        self.checksum_always = serial.checksum is ChecksumMode.ALWAYS
        self.checksum_unknown = False  # Prusa: unknown commands are numbered too
        self.unknown_need_ack = False
        self.sent_count = 0
        # the parts
        self.reader = ReplyReader(received_hook)
        self.capabilities = self.reader.report.capabilities  # the same dict, kept up to date
        self.window = SendWindow(serial)
        self.resends = ResendTracker(serial.resend_history_size, serial.max_consecutive_resends)
        self.deadlines = Deadlines(serial, self.capabilities)
        self._out = bytearray()
        self._events: list[EngineEvent] = []
        self._hellos = 0
        self._hellos_out = 0  # hellos written since connect(): extras are answered later

    # ---- what the session reads (the parts are public, read-only to anyone else) ---------
    @property
    def credit(self) -> int:
        """How many more lines may be sent before an ok comes back."""
        return self.window.credit

    @property
    def in_flight(self) -> int:
        """Lines written (or framed and held for RX room) and not yet acknowledged."""
        return self.window.in_flight

    @property
    def resending(self) -> bool:
        """True while history lines wait to be resent: no new line may go out."""
        return self.resends.pending

    @property
    def last_acked(self) -> Command | None:
        """The most recent command the printer acknowledged (never one of the engine's own
        lines: extra hellos, probes)."""
        return self.window.last_acked

    @property
    def deadline(self) -> float:
        """The time at which `handle_timeout` must be called if nothing arrives before.
        Any line in flight has an ok deadline (OctoPrint applies one only while printing;
        a lost ok of an idle command then stalls forever when autoreport lines keep the
        link "alive")."""
        d = self.deadlines.next(bool(self.window.inflight.entries))
        r = self.resends.ok_deadline
        return r if r < d else d

    @property
    def has_output(self) -> bool:
        """The engine has bytes of its own to write (see `take_output`)."""
        return bool(self._out)

    def take_output(self) -> bytes:
        """Bytes the engine itself wants written (hellos, probes, held lines, emergency)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _set_state(self, new: LinkState) -> None:
        old, self.state = self.state, new
        if old is not new:
            self._events.append(StateChanged(old, new))

    def _take_events(self) -> Sequence[EngineEvent]:
        ev = self._events
        if not ev:
            return NO_EVENTS
        self._events = []
        return ev

    # ---- connecting -------------------------------------------------------------------------
    def connect(self, now: float) -> None:
        """The port is open: start the handshake (the hello goes to `take_output`)."""
        self._set_state(LinkState.CONNECTING)
        self.current_line = 1
        self.resends.clear()
        self.window.reset()
        self.deadlines.forget()
        self._hellos_out = 0
        if not self.serial.wait_for_start:
            self._say_hello(now, counted=True)
        else:
            self.deadlines.comm = now + self.serial.timeouts.detection * self.max_hellos

    def _say_hello(self, now: float, *, counted: bool) -> None:
        if counted:
            self._hellos += 1
        hello = Command.parse(self.serial.hello_command)
        self._out += frame(self._number(hello), hello.line)
        self._hellos_out += 1
        self.deadlines.comm = now + self.serial.timeouts.detection

    def _on_connected(self, fields: replies.OkFields | None, now: float) -> None:
        self._set_state(LinkState.OPERATIONAL)
        w = self.window
        w.forget()
        # A `start` waiting when the port opened was answered with another hello: each hello
        # beyond the one this ok answered gets its own ok later, so it counts as in flight.
        hello = Command.parse(self.serial.hello_command, cmd_type=INTERNAL)
        for _ in range(self._hellos_out - 1):
            w.inflight.add(0, hello, len(frame(0, hello.line)), now)
        self._hellos = self._hellos_out = 0
        if fields is not None and fields.b is not None:
            w.learn(str(fields.b))
        d = self.deadlines
        d.heard(now)
        if w.inflight.entries:
            d.first_in_flight(now)
        self._events.append(Connected())

    def _on_start(self, now: float) -> None:
        if self.state is LinkState.CONNECTING:
            self._say_hello(now, counted=False)
        elif self.state is LinkState.OPERATIONAL:
            self.window.forget()
            self.resends.clear()
            self.deadlines.forget()
            self.deadlines.reset()
            self.current_line = 1
            self._events.append(PrinterReset(idle=not self.printing))

    def _on_firmware_info(self, info: dict[str, str]) -> None:
        self.firmware_info_received = True
        name = self.firmware_name = replies.firmware_name(info)
        if self.serial.firmware_detection:
            tweaks = firmware_tweaks(name, self.serial.checksum)
            self.checksum_always = self.checksum_always or tweaks.checksum_always
            self.checksum_unknown = tweaks.checksum_unknown
            self.unknown_need_ack = tweaks.unknown_need_ack
            self.window.partial_lines(tweaks.keeps_partial_lines)
        self._events.append(FirmwareInfo(name, info))

    # ---- sending ---------------------------------------------------------------------------
    def _number(self, cmd: Command) -> int:
        """Take the next line number for `cmd` and record it (an M110's N sets the counter)."""
        if cmd.gcode == "M110":
            n = param_value(cmd.line, "N")
            self.current_line = int(n) if n is not None else 0
            self.resends.clear()
        n = self.current_line
        self.resends.record(n, cmd.line)
        self.current_line = n + 1
        return n

    def needs_number(self, cmd: Command) -> bool:
        g = cmd.gcode
        if g in self._checksum_requiring:
            return True
        if (g is None and not self.checksum_unknown) or self.serial.checksum is ChecksumMode.NEVER:
            return False
        return self.checksum_always or self.printing or not self.firmware_info_received

    def send(self, cmd: Command, now: float) -> bytes:
        """Frame one command for the wire and account for it (history, window, flags)."""
        if self.state is not LinkState.OPERATIONAL:
            raise LocalProtocolError(f"cannot send {cmd.line!r} while {self.state.value}")
        if self.needs_number(cmd):
            if cmd.gcode == "M110":
                n = self._number(cmd)
            else:  # _number() inlined: the hot path of every printed line
                n = self.current_line
                self.resends.record(n, cmd.line)
                self.current_line = n + 1
            data = frame(n, cmd.line)
        else:
            n = -1
            data = encode_plain(cmd.line)
        self.sent_count += 1
        if cmd.gcode is not None or self.unknown_need_ack:
            return self._admit(n, cmd, data, now)
        return data

    def _admit(self, n: int, cmd: Command, data: bytes, now: float) -> bytes:
        """Account for a line that waits for its ok (b"": held for RX room)."""
        w = self.window
        if not w.inflight.entries:
            self.deadlines.first_in_flight(now)
        out = w.admit(n, cmd, data, now)
        if out and cmd.gcode in self._flagged:
            self._flag(cmd, now)
        return out

    def _flag(self, cmd: Command, now: float) -> None:
        """A long-running, heat-up or M155 command went out."""
        g = cmd.gcode
        d = self.deadlines
        if g == "M155":
            if self.capabilities.get("AUTOREPORT_TEMP"):
                s = param_value(cmd.line, "S")  # autoreport: the communication timeout follows
                d.temperature_interval(s or 0.0)
            return
        self.window.long_line(g in HEATUP_GCODES)
        if g == "G4":
            p, s = param_value(cmd.line, "P"), param_value(cmd.line, "S")
            d.dwell(now, (p / 1000.0) if p is not None else (s or 0.0), True)
        else:
            d.arm(now, True)  # a long-running line in flight: the long deadline

    def next_resend(self, now: float) -> tuple[bytes, Command] | None:
        """The next history line to resend, verbatim with its number, if credit allows."""
        r = self.resends
        if self.window.credit <= 0 or not r.pending or r.awaiting_ok:
            return None  # (the resend's own ok first: then no later ok can be taken for it)
        n, line = r.take()
        cmd = Command.parse(line)
        self.sent_count += 1
        return self._admit(n, cmd, frame(n, line), now), cmd

    def _internal_m105(self) -> tuple[int, bytes]:
        """The engine's own M105 (a probe or a sync), numbered as the next line."""
        if self.serial.checksum is ChecksumMode.NEVER:
            return -1, encode_plain(_PROBE.line)
        n = self.current_line
        self.resends.record(n, _PROBE.line)
        self.current_line = n + 1
        return n, frame(n, _PROBE.line)

    def _own_line(self) -> tuple[int, Command, bytes]:
        """The line the engine sends of its own accord (a probe, a sync): `probe_line`'s when
        it has one (an SD upload's next line: anything else would be written to the file),
        else M105."""
        cmd = self.probe_line() if self.probe_line is not None else None
        if cmd is None:
            n, data = self._internal_m105()
            return n, _PROBE, data
        n = self.current_line
        self.resends.record(n, cmd.line)
        self.current_line = n + 1
        return n, cmd, frame(n, cmd.line)

    def _probe(self, now: float) -> None:
        """The oldest line's ok is overdue: send one numbered line beyond the window, the line
        the printer expects next if every line in flight arrived: the line held for RX room
        (numbered already), else the next line waiting to be resent, else `N<next> M105`.
        If the earlier lines arrived, the printer acknowledges them with it; if not, it asks
        for a resend. Never a line in flight again: Marlin 2.1.2+ drops a repeat of its last
        line silently."""
        w = self.window
        held = w.take_held()
        if held is not None:
            n, cmd, data = held
        elif self.resends.pending:
            n, line = self.resends.take()
            cmd = Command.parse(line)
            data = frame(n, line)
        else:
            n, cmd, data = self._own_line()
        w.inflight.add(n, cmd, len(data), now)
        self._out += data
        self.sent_count += 1
        if cmd.gcode in self._flagged:
            self._flag(cmd, now)
        self.deadlines.probed(now, w.long_running)

    def _sync(self, now: float) -> None:
        """A sync (window.py): the engine's M105 as the next line of the window."""
        n, cmd, data = self._own_line()
        self.window.inflight.add(n, cmd, len(data), now)
        self._out += data
        self.sent_count += 1

    def send_out_of_band(self, cmd: Command, now: float | None = None) -> bytes:
        """An emergency-parser command (M108, M410): written at once, outside the window. The
        firmware acts on it as it arrives, and queues it too: its ok comes after those of
        the lines written before it."""
        data = encode_plain(cmd.line)
        d = self.deadlines
        t = d.comm - d.period if now is None else now
        if not self.window.inflight.entries:  # else the oldest line's deadline stands
            d.out_of_band(t)
        self.window.inflight.add(-1, cmd, len(data), t)
        return data

    def abandon_in_flight(self) -> int:
        """Give up on every line in flight (a cancel that must end although the printer does
        not answer); returns how many there were. Late oks of them are ignored."""
        self.resends.ok_arrived()
        self.deadlines.forget()
        return self.window.forget()

    # ---- failing ----------------------------------------------------------------------------
    def _write_emergency(self) -> None:
        """Raw and numbered M112, then every heater off (numbered), outside the ok window."""
        out = self._out
        out += b"M112\n"
        out += frame(self._number(_M112), _M112.line)
        heaters = [Command.parse(f"M104 T{i} S0") for i in range(self.profile.extruders)]
        if self.profile.heated_bed:
            heaters.append(_BED_OFF)
        for c in heaters:
            out += frame(self._number(c), c.line)

    def emergency_stop(self) -> Sequence[EngineEvent]:
        """M112: raw and numbered M112, heaters off, then ERROR. Output via `take_output`."""
        self._write_emergency()
        self._fail(ErrorReason.EMERGENCY, "Closing serial port due to emergency stop M112.",
                   m112=False)
        return self._take_events()

    def fail(self, reason: ErrorReason, message: str) -> Sequence[EngineEvent]:
        """The host gives up on the printer (fatal firmware error handling, etc.)."""
        self._fail(reason, message, m112=True)
        return self._take_events()

    def _fail(self, reason: ErrorReason, message: str, *, m112: bool) -> None:
        if self.state is LinkState.ERROR:
            return
        if (m112 and self.serial.send_m112_on_error and self.state is LinkState.OPERATIONAL
                and reason not in (ErrorReason.CONNECTION, ErrorReason.TIMEOUT)):
            self._write_emergency()
        self._set_state(LinkState.ERROR)
        self.deadlines.stop()
        self.resends.ok_arrived()
        self._events.append(LinkFailed(reason, message))

    # ---- timeouts -------------------------------------------------------------------------
    def handle_timeout(self, now: float) -> Sequence[EngineEvent]:
        """Apply the timeout rules (timeouts.py) if `deadline` has passed; returns the events."""
        if now < self.deadline:
            return NO_EVENTS
        if self.resends.ok_deadline <= now:
            self.resends.ok_arrived()  # the resend came without its ok: this silence proves it
        elif self.state is LinkState.CONNECTING:
            if self._hellos < self.max_hellos:
                self._say_hello(now, counted=True)
            else:
                self._fail(ErrorReason.CONNECTION, "There was a timeout while trying to "
                           "connect to the printer", m112=False)
        elif self.state is not LinkState.OPERATIONAL:
            self.deadlines.stop()
        else:
            self._timeout(now)
        return self._take_events()

    def _timeout(self, now: float) -> None:
        w = self.window
        entries = w.inflight.entries
        most = self.serial.max_consecutive_timeouts  # per state, 0 = unlimited
        limit = (most.long_running if w.long_running
                 else most.printing if self.printing else most.idle)
        verdict = self.deadlines.timeout(now, bool(entries), limit)
        if verdict is Timeout.PROBE:
            self._probe(now)
        elif verdict is Timeout.TICKLE:
            if self.printing:
                self._events.append(TickleRequested())
        elif verdict is not Timeout.NOTHING:
            if not entries:
                self._fail(ErrorReason.TIMEOUT, "Too many consecutive timeouts, printer still "
                           "connected and alive?", m112=False)
                return
            self._fail(ErrorReason.TIMEOUT, self.deadlines.dead_message(
                verdict, entries[0], now), m112=False)

    # ---- receiving --------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> Sequence[EngineEvent]:
        """Feed bytes from the port (b"" = the port reached EOF). Returns the events."""
        if not data:
            self._fail(ErrorReason.CONNECTION, "the serial port closed (EOF)", m112=False)
            return self._take_events()
        rd = self.reader
        if not rd.buffer and data[-1:] == b"\n" and data.count(b"\n") == 1:
            self._line(data.rstrip(b"\r\n"), now)  # the common case: exactly one line
        else:
            for raw in rd.lines(data):
                self._line(raw, now)
        return self._take_events()

    def _line(self, raw: bytes, now: float) -> None:
        if self.state is not LinkState.OPERATIONAL:
            if self.state is LinkState.ERROR:
                return
        elif raw == b"ok":
            if self.reader.plain:  # the hot path: the oldest line's ok
                self._on_ok(now)
                return
        elif raw.startswith(b"ok ") and self.reader.plain:
            m = _ADVANCED_OK.fullmatch(raw)
            if m is not None:  # ok N<line> P<planner> B<queue>: the hot path with ADVANCED_OK
                n, b = m.group(1), m.group(3)
                self._on_numbered_ok(-1 if n is None else int(n), b, now)
                return
        rd = self.reader
        line = rd.decode(raw)
        if not line:
            return
        d = self.deadlines
        d.heard(now)
        w = self.window
        if not w.inflight.entries:
            d.idle_line()
        kind, value = rd.read(line)
        if self.resends.awaiting_ok and not line.startswith("ok"):
            self.resends.ok_arrived()  # a resend came without its ok: this line proves it
        if kind is Reply.BUSY:
            if d.busy(now, self.serial.busy_protocol and self.state is LinkState.OPERATIONAL):
                self._events.append(BusyDetected())
            return
        ev = self._events
        if kind is not Reply.OK or value is None or not value.bare:  # type: ignore[attr-defined]
            ev.append(Received(line))  # (a flow-control ok is no event, either path)
        if w.heating and " W:" in line:
            d.alive(now)  # Marlin's heat-up report: M109/M190 still waits
        if kind is Reply.OK:
            fields: replies.OkFields | None = value  # type: ignore[assignment]
            if self.state is LinkState.CONNECTING:
                self._on_connected(fields, now)
                return
            if fields is None or (fields.n < 0 and fields.b is None and not fields.temperatures):
                self._on_ok(now)  # "wait", or a plain "ok"
            elif fields.temperatures:  # M105's answer (numbered or not, never an N)
                self._on_temperature_ok(fields, now)
            else:
                self._on_numbered_ok(fields.n, None if fields.b is None else str(fields.b),
                                     now)
            if replies.ok_is_consumed(line):
                self._end_cap_report()
                return
        elif kind is Reply.RESEND:
            self._on_resend(value, now)  # type: ignore[arg-type]
            return
        elif kind is Reply.ERROR:
            self._on_error(value, now)  # type: ignore[arg-type]
            return
        elif kind is Reply.ACTION:
            action: tuple[str, str] = value  # type: ignore[assignment]
            ev.append(ActionCommand(line, action[0], action[1]))
            return
        elif kind is not Reply.CONTENT:
            return
        report = rd.report
        if report.in_cap_report and not replies.is_capability_line(line):
            self._end_cap_report()
        content = report.parse(line, ev)
        if content is Content.FIRMWARE_INFO and not self.firmware_info_received:
            self._on_firmware_info(report.info)
        elif content is Content.START:
            self._on_start(now)

    def _end_cap_report(self) -> None:
        if self.reader.report.end_cap_report():
            self._events.append(CapabilityReport(dict(self.capabilities)))

    # ---- acknowledgements ----------------------------------------------------------------
    def _on_ok(self, now: float) -> None:
        """A plain `ok` (or `wait`): the resend's own ok, or the oldest line's."""
        r = self.resends
        if r.awaiting_ok:
            r.ok_arrived()
        else:
            count = self.window.plain_ok()
            if count:
                self._ack(count, now)
                return
        self.deadlines.heard(now)
        self._end_cap_report()

    def _on_numbered_ok(self, n: int, b: bytes | str | None, now: float) -> None:
        """`ok N<n> P.. B..`: every line up to n; without N, the oldest unnumbered line."""
        w = self.window
        if self.resends.awaiting_ok:
            self.resends.ok_arrived()
        if b is not None and b != w.last_b:  # (it rarely changes: parsed only then)
            w.learn(b)
        if n >= 0:
            if not w.advanced_ok:
                w.numbered_ok()
            entries = w.inflight.entries
            count = 1 if entries and entries[0][0] == n else w.inflight.through_number(n)
        else:
            count = w.inflight.through_unnumbered()
        if count:
            self._ack(count, now)
            return
        self.deadlines.heard(now)
        self._end_cap_report()

    def _on_temperature_ok(self, fields: replies.OkFields, now: float) -> None:
        """`ok T:..`: M105's answer, in order: every line up to the M105 it answers."""
        if fields.n >= 0:
            self._on_numbered_ok(fields.n, None if fields.b is None else str(fields.b), now)
            return
        count = self.window.temperature_ok()
        if count:
            self._ack(count, now)

    def _ack(self, count: int, now: float) -> None:
        """The `count` oldest lines in flight are acknowledged."""
        w = self.window
        was_long = w.long_running
        sent = w.ack(count, now)
        self.deadlines.acked(now, sent, bool(w.inflight.entries), w.long_running, was_long)
        if self.resends.active:
            self.resends.on_ok()
        if w.held is not None:
            held = w.release_held()
            if held is not None:
                self._out += self._admit(held[0], held[1], held[2], now)
        elif w.syncing and w.sync_due(now):
            self._sync(now)
        if self.reader.report.in_cap_report:
            self._end_cap_report()

    # ---- resends and errors ----------------------------------------------------------------
    def _on_resend(self, n: int, now: float) -> None:
        r = self.resends
        if n >= 0:  # "Resend" without a number: nothing to resend, but the ok rules apply
            w = self.window
            verdict = r.request(n, self.current_line, w.inflight.numbers())
            if verdict is ResendTracker.LOOP:
                self._fail(ErrorReason.RESEND_LOOP, f"Printer keeps requesting line {n} again "
                           "and again, communication stuck", m112=True)
                return
            if verdict is ResendTracker.NO_HISTORY and self.printing:
                self._fail(ErrorReason.RESEND, f"Should resend line {n} but no sufficient "
                           "history is available, can't resend", m112=True)
                return
            if verdict is ResendTracker.ACCEPTED:
                w.resend_from(n)  # the lines from n on never reached the queue
                self.deadlines.answered()
                if w.inflight.entries:
                    self.deadlines.arm(now, w.long_running)
            w.recover(n)
        mode = self.serial.resend_without_ok  # OctoPrint applies it to every Resend: line
        if mode is not ResendWithoutOk.ALWAYS:
            r.expect_ok(now + self.serial.timeouts.resend_ok
                        if mode is ResendWithoutOk.DETECT else INF)

    def _on_error(self, text: str, now: float) -> None:
        kind = replies.classify_error(text)
        if kind is replies.ErrorClass.RECOVERABLE:
            if self.window.inflight.entries:  # the line was taken as it was: simulate its ok
                self._ack(1, now)
        elif kind is replies.ErrorClass.RESEND:
            self.resends.note_error(text)
        elif kind not in (replies.ErrorClass.SD, replies.ErrorClass.UNKNOWN_COMMAND):
            self._events.append(FirmwareErrorLine(text, kind is replies.ErrorClass.FATAL))

