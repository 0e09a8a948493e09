"""The sans-IO protocol engine (h11's model): bytes in, events and bytes out, no IO, no trio.

`HostProtocol` owns what the wire needs: line splitting, the handshake, line numbers and XOR
checksums (OctoPrint's when-to-number rules), the resend history and resend bookkeeping, the
send window (the exact account of the lines in flight is window.py's; the limit is here: the
firmware's queue slots from ADVANCED_OK's `B`, the RX buffer's bytes, one line after an error
and while a long-running command runs), the communication/busy/ok deadlines and the timeout
rules with the lost-ok probe (timeouts.py), and the classification of every reply line.

It does not own queues, the pipeline or the print job (the session does) and never reads a
clock: every call that needs time takes `now`. Plain `ok` lines are handled without allocating.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from pipeline.config.schema import ChecksumMode, ProfileSpec, SerialSpec
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
)
from pipeline.protocol.flow import FlowControl
from pipeline.protocol.report import Content, FirmwareReport
from pipeline.protocol.resend import ResendTracker
from pipeline.protocol.settings import HEATUP_GCODES, firmware_tweaks
from pipeline.protocol.timeouts import apply_timeout, communication_period
from pipeline.protocol.window import INTERNAL, InFlight

__all__ = ["HEATUP_GCODES", "HostProtocol"]

INF = float("inf")
MAX_LINE = 4096  # a reply line longer than this is garbage (baud mismatch, reset noise)
NO_EVENTS: Sequence[EngineEvent] = ()
_M112 = Command.parse("M112")
_BED_OFF = Command.parse("M140 S0")
# `ok N<line> P<planner free> B<queue free>` (ADVANCED_OK), read straight from the bytes.
_ADVANCED_OK = re.compile(rb"ok(?: N(\d+))?(?: P(\d+))?(?: B(\d+))? *")


class HostProtocol(FlowControl):
    """The engine. Feed it bytes with `receive_data`, ask it to frame commands with `send`,
    call `handle_timeout` when `deadline` has passed, and write whatever `take_output` gives.
    It reads the config's values as they are: `serial`, and the `profile`'s heaters."""

    def __init__(self, serial: SerialSpec = SerialSpec(), profile: ProfileSpec = ProfileSpec(),
                 *, max_hellos: int = 3,
                 received_hook: Callable[[str], str | None] | None = None) -> None:
        self.serial, self.profile = serial, profile
        self.max_hellos = max_hellos  # hellos sent before the connection attempt fails
        self.received_hook = received_hook
        self.state = LinkState.OFFLINE
        self.printing = False          # set by the session's job control: a print is active
        self.current_line = 1
        self.firmware_info_received = False
        self.firmware_name: str | None = None
        self._checksum_requiring = frozenset(serial.checksum_requiring_commands)  # per line
        self._long_running = frozenset(serial.long_running_commands)
        self._flagged = self._long_running | HEATUP_GCODES | {"M155"}
        self._report = FirmwareReport()
        self.capabilities = self._report.capabilities  # the same dict, kept up to date
        self.checksum_always = serial.checksum is ChecksumMode.ALWAYS
        self.checksum_unknown = False  # Prusa: unknown commands are numbered too
        self.unknown_need_ack = False
        #: The firmware never throws away the rest of a line (see flow.py): auto may open.
        self.keeps_partial_lines = False
        self.busy_active = self.long_running = self.heating = False
        #: The most recent command the printer acknowledged (acks come in order), never one
        #: of the engine's own lines (extra hellos, probes).
        self.last_acked: Command | None = None
        self.acked_count = self.sent_count = 0
        self.probes_total = 0  # for /metrics
        self._fixed = 0 if serial.send_window == "auto" else int(serial.send_window)
        self.slots = 0          # the firmware's command-queue slots, from ADVANCED_OK's B
        self.advanced_ok = False  # oks carry N/P/B
        self._limit = 1
        self._recovering = 0    # clean acks still needed at one line after an error
        self._recover_from = 0  # ... of lines numbered from this one on
        self._inflight = InFlight(serial.rx_buffer)
        self._held: tuple[int, Command, bytes] | None = None  # framed, waiting for RX room
        self._resend = ResendTracker(serial.resend_history_size, serial.max_consecutive_resends)
        self._expect_resend_ok = False
        self._buf = bytearray()
        self._out = bytearray()
        self._events: list[EngineEvent] = []
        self._pending_error: str | None = None
        self._hellos = 0
        self._hellos_out = 0  # hellos written since connect(): extras are answered later
        self._temp_interval = serial.timeouts.temperature  # M155 S<n> (autoreport) sets it
        self._update_period()
        self._deadline = self._ok_deadline = self._resend_ok_deadline = INF
        self._ok_floor = 0.0     # a G4 in flight: no probe before its wait is over
        self._latency = 0.0      # recent ok latency (moving average)
        self._last_b: bytes | str | None = None  # the last B an ok carried
        self._probes = 0         # probes since the last acknowledgement
        self._consecutive_timeouts = 0
        self.timeouts_total = 0  # for /metrics
        self._update_limit()

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

    # ---- deadlines and timeouts (the rules are in timeouts.py) ------------------------------
    @property
    def deadline(self) -> float:
        """The time at which `handle_timeout` must be called if nothing arrives before."""
        d = self._deadline
        if self._resend_ok_deadline < d:
            d = self._resend_ok_deadline
        # OctoPrint applies the ok deadline only while printing; a lost ok of an idle command
        # then stalls forever when autoreport lines keep the link "alive". Any line in flight
        # gets it here (long-running ones a longer one, see _arm).
        if self._inflight.entries and self._ok_deadline < d:
            d = self._ok_deadline
        return d

    def _update_period(self) -> None:
        """Call whenever busy mode or the temperature interval changes (the period is read
        on every line, so it is kept, not computed)."""
        self._period = communication_period(self.serial.timeouts, self.busy_active,
                                            self._temp_interval)

    def handle_timeout(self, now: float) -> Sequence[EngineEvent]:
        """Apply the timeout rules if `deadline` has passed; returns the events."""
        if now < self.deadline:
            return NO_EVENTS
        apply_timeout(self, now)
        return self._take_events()

    @property
    def has_output(self) -> bool:
        """The engine has bytes of its own to write (see `take_output`)."""
        return bool(self._out)

    def take_output(self) -> bytes:
        """Bytes the engine itself wants written (hellos, emergency lines)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    # ---- connecting ---------------------------------------------------------------------
    def connect(self, now: float) -> None:
        """The port is open: start the handshake (the hello goes to `take_output`)."""
        self._set_state(LinkState.CONNECTING)
        self.current_line = 1
        self._resend.clear()
        self._forget_in_flight()
        self.slots, self.advanced_ok, self._last_b = 0, False, None
        self._hellos_out = 0
        self._update_limit()
        if not self.serial.wait_for_start:
            self._say_hello(now, counted=True)
        else:
            self._deadline = now + self.serial.timeouts.detection * self.max_hellos

    def _say_hello(self, now: float, *, counted: bool) -> None:
        if counted:
            self._hellos += 1
        hello = Command.parse(self.serial.hello_command)
        self._out += frame(self._number(hello), hello.line)
        self._hellos_out += 1
        self._deadline = now + self.serial.timeouts.detection

    def _number(self, cmd: Command) -> int:
        """Take the next line number for `cmd` and record it (an M110's N sets the counter)."""
        if cmd.gcode == "M110":
            n = param_value(cmd.line, "N")
            self.current_line = int(n) if n is not None else 0
            self._resend.clear()
        n = self.current_line
        self._resend.record(n, cmd.line)
        self.current_line = n + 1
        return n

    # ---- sending ---------------------------------------------------------------------------
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
                self._resend.record(n, cmd.line)
                self.current_line = n + 1
            data = frame(n, cmd.line)
        else:
            n = -1
            data = encode_plain(cmd.line)
        self.sent_count += 1
        if cmd.gcode is not None or self.unknown_need_ack:
            return self._admit(n, cmd, data, now)
        return data

    def send_out_of_band(self, cmd: Command, now: float | None = None) -> bytes:
        """An emergency-parser command (M108, M410): written at once, outside the window. The
        firmware acts on it as it arrives, and queues it too: its ok comes after those of
        the lines written before it."""
        data = encode_plain(cmd.line)
        t = self._deadline - self._period if now is None else now
        if not self._inflight.entries:  # else the ok deadline left by the last ok is stale
            self._ok_deadline = t + self._period
        self._inflight.add(-1, cmd, len(data), t)
        return data

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
        self._deadline = self._ok_deadline = self._resend_ok_deadline = INF
        self._events.append(LinkFailed(reason, message))

    # ---- receiving --------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> Sequence[EngineEvent]:
        """Feed bytes from the port (b"" = the port reached EOF). Returns the events."""
        if not data:
            self._fail(ErrorReason.CONNECTION, "the serial port closed (EOF)", m112=False)
            return self._take_events()
        buf = self._buf
        if not buf and data[-1:] == b"\n" and data.count(b"\n") == 1:
            self._line(data.rstrip(b"\r\n"), now)  # the common case: exactly one line
            return self._take_events()
        buf += data
        while True:
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > MAX_LINE:
                    del buf[:]
                break
            raw = bytes(buf[:i]).rstrip(b"\r")
            del buf[:i + 1]
            self._line(raw, now)
        return self._take_events()

    def _line(self, raw: bytes, now: float) -> None:
        if self.state is LinkState.ERROR:
            return
        if raw == b"ok":
            if (self.received_hook is None and self.state is LinkState.OPERATIONAL
                    and self._pending_error is None):
                self._deadline = now + self._period
                self._on_ok(now)
                if self._report.in_cap_report:
                    self._end_cap_report()
                return
        elif (raw.startswith(b"ok ") and self.received_hook is None
                and self.state is LinkState.OPERATIONAL and self._pending_error is None):
            m = _ADVANCED_OK.fullmatch(raw)
            if m is not None:  # ok N<line> P<planner> B<queue>: the hot path with ADVANCED_OK
                self._deadline = now + self._period
                n, b = m.group(1), m.group(3)
                self._on_advanced_ok(-1 if n is None else int(n), b, now)
                if self._report.in_cap_report:
                    self._end_cap_report()
                return
        line = raw.decode("utf-8", "replace").strip()
        if self.received_hook is not None:
            hooked = self.received_hook(line)
            line = hooked.strip() if hooked else ""
        if not line:
            return
        self._deadline = now + self._period
        if not self._inflight.entries:
            self._consecutive_timeouts = 0
        self._classify(line, now)

    def _classify(self, line: str, now: float) -> None:
        ev = self._events
        if self._expect_resend_ok and not replies.is_ok(line):
            self._no_resend_ok()  # a resend came without its ok: this line proves it won't come
        if replies.is_busy(line):
            self._alive(now)
            if (not self.busy_active and self.serial.busy_protocol
                    and self.state is LinkState.OPERATIONAL):
                self.busy_active = True
                self._update_period()
                ev.append(BusyDetected())
            return
        fields = replies.parse_ok(line)
        if fields is None or not fields.bare:  # a flow-control ok is no event, either path
            ev.append(Received(line))
        if self.heating and " W:" in line:
            self._alive(now)  # Marlin's heat-up report: M109/M190 still waits
        if self._pending_error is not None:
            text, self._pending_error = replies.join_error(self._pending_error, line), None
            self._on_error(text, now)
            return
        if replies.is_debug(line):
            action = replies.parse_action(line)
            if action is not None:
                ev.append(ActionCommand(line, action[0], action[1]))
            return
        err = replies.error_text(line)
        if err is not None:
            if replies.error_needs_next_line(err):
                self._pending_error = err
            else:
                self._on_error(err, now)
            return
        if fields is not None or replies.is_wait(line):
            if self.state is LinkState.CONNECTING:
                self._on_connected(line, now)
                return
            if fields is None or (fields.n < 0 and fields.b is None and not fields.temperatures):
                self._on_ok(now)  # "wait", or a plain "ok"
            elif fields.temperatures:  # M105's answer (numbered or not, never an N)
                self._on_temperature_ok(fields.n, fields.b, now)
            else:
                self._on_advanced_ok(fields.n, None if fields.b is None else str(fields.b),
                                     now)
            if replies.ok_is_consumed(line):
                self._end_cap_report()
                return
        else:
            n = replies.parse_resend(line)
            if n is not None:
                self._on_resend(n, now)
                return
        if self._report.in_cap_report and not replies.is_capability_line(line):
            self._end_cap_report()
        self._parse_content(line, now)

    def _on_firmware_info(self, info: dict[str, str]) -> None:
        self.firmware_info_received = True
        name = self.firmware_name = replies.firmware_name(info)
        if self.serial.firmware_detection:
            tweaks = firmware_tweaks(name, self.serial.checksum)
            self.checksum_always = self.checksum_always or tweaks.checksum_always
            self.checksum_unknown = tweaks.checksum_unknown
            self.unknown_need_ack = tweaks.unknown_need_ack
            if tweaks.keeps_partial_lines != self.keeps_partial_lines:
                self.keeps_partial_lines = tweaks.keeps_partial_lines
                self._update_limit()
        self._events.append(FirmwareInfo(name, info))

    def _end_cap_report(self) -> None:
        if self._report.end_cap_report():
            self._events.append(CapabilityReport(dict(self.capabilities)))

    def _parse_content(self, line: str, now: float) -> None:
        kind = self._report.parse(line, self._events)
        if kind is Content.FIRMWARE_INFO and not self.firmware_info_received:
            self._on_firmware_info(self._report.info)
        elif kind is Content.START:
            self._on_start(now)

    def _on_connected(self, line: str, now: float) -> None:
        self._set_state(LinkState.OPERATIONAL)
        self._forget_in_flight()
        # A `start` waiting when the port opened was answered with another hello: each hello
        # beyond the one this ok answered gets its own ok later, so it counts as in flight.
        hello = Command.parse(self.serial.hello_command, cmd_type=INTERNAL)
        for _ in range(self._hellos_out - 1):
            self._inflight.add(0, hello, len(frame(0, hello.line)), now)
        self._hellos = self._hellos_out = 0
        fields = replies.parse_ok(line)
        if fields is not None and fields.b is not None:
            self._learn(str(fields.b))
        self._deadline = now + self._period
        if self._inflight.entries:
            self._arm(now)
        self._events.append(Connected())

    def _on_start(self, now: float) -> None:
        if self.state is LinkState.CONNECTING:
            self._say_hello(now, counted=False)
        elif self.state is LinkState.OPERATIONAL:
            self._forget_in_flight()
            self._resend.clear()
            self.current_line = 1
            # the reset firmware forgot M113: the next busy line is "detected" (and answered) again
            self.long_running = self.heating = self.busy_active = False
            self._update_period()
            self._update_limit()
            self._events.append(PrinterReset(idle=not self.printing))

    def _on_error(self, text: str, now: float) -> None:
        kind = replies.classify_error(text)
        if kind is replies.ErrorClass.RECOVERABLE:
            if self._inflight.entries:  # the line was taken as it was: simulate its ok
                self._ack(1, now)
        elif kind is replies.ErrorClass.RESEND:
            self._resend.note_error(text)
        elif kind not in (replies.ErrorClass.SD, replies.ErrorClass.UNKNOWN_COMMAND):
            self._events.append(FirmwareErrorLine(text, kind is replies.ErrorClass.FATAL))
