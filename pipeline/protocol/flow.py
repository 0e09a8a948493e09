"""Flow control for the protocol engine (a mixin of `HostProtocol`): the send window and the
exact account of the lines in flight.

- The window's limit: a fixed `serial.send_window`, or auto: one line (ping-pong) unless the
  firmware is known to keep the rest of a line after a line error (Klipper), then its
  command-queue slots learned from ADVANCED_OK's `B` (`firmware_bufsize` without ADVANCED_OK,
  else one line); one line after any error until a run of clean acknowledgements, and while
  a long-running command is in flight.

  Why: Marlin's gcode_line_error() empties the RX buffer, so the rest of a line arriving then
  is read unnumbered, unchecked, cut at its first `*`: from the command letter on it runs as
  that command. No framing helps (that rest is what the numbered line runs; comments, escapes
  and backspaces only make the reader keep less), and only an ok says a line was checked.
- The RX rule: a framed line that would put more than `rx_buffer - 1` unacknowledged bytes
  behind the line being processed is held until an ok makes room.
- Acknowledgements (window.py says which lines an ok covers), resends (the lines from N on
  leave the account), the ok deadline (a few times the recent ok latency, at least 0.5 s,
  longer for long-running commands) and the lost-ok probe.

Pure: no IO, no trio, no clock reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pipeline.config.schema import ChecksumMode, ResendWithoutOk, SerialSpec
from pipeline.gcode import Command, encode_plain, frame, param_value
from pipeline.protocol.events import EngineEvent, ErrorReason
from pipeline.protocol.resend import ResendTracker
from pipeline.protocol.settings import HEATUP_GCODES
from pipeline.protocol.timeouts import communication_period
from pipeline.protocol.window import INTERNAL, InFlight

INF = float("inf")
_PROBE = Command.parse("M105", cmd_type=INTERNAL)
#: After an error, this many clean acknowledgements at one line in flight before the window
#: opens again.
CLEAN_RUN = 2
MIN_OK_TIMEOUT = 0.5  # the shortest wait for an ok before a probe


class FlowControl:
    """The window, the acknowledgements and the probe, on the engine's state."""

    # State owned and initialised by HostProtocol; declared here for the methods below.
    serial: SerialSpec
    capabilities: Mapping[str, bool]
    long_running: bool
    heating: bool
    busy_active: bool
    current_line: int
    last_acked: Command | None
    acked_count: int
    sent_count: int
    probes_total: int
    slots: int
    advanced_ok: bool
    keeps_partial_lines: bool
    printing: bool
    _fixed: int
    _limit: int
    _recovering: int
    _recover_from: int
    _inflight: InFlight
    _held: tuple[int, Command, bytes] | None
    _resend: ResendTracker
    _expect_resend_ok: bool
    _resend_ok_deadline: float
    _out: bytearray
    _events: list[EngineEvent]
    _deadline: float
    _ok_deadline: float
    _ok_floor: float
    _latency: float
    _last_b: bytes | str | None
    _probes: int
    _period: float
    _consecutive_timeouts: int
    _long_running: frozenset[str]
    _flagged: frozenset[str]
    _temp_interval: float
    _update_period: Callable[[], None]

    def _fail(self, reason: ErrorReason, message: str, *, m112: bool) -> None:
        raise NotImplementedError  # provided by HostProtocol

    @property
    def resend_requests(self) -> int:
        """Resend requests the firmware made (for /metrics)."""
        return self._resend.requests

    # ---- state and credit -------------------------------------------------------------
    @property
    def credit(self) -> int:
        """How many more lines may be sent before an ok comes back."""
        if self._held is not None:
            return 0
        return self._limit - len(self._inflight.entries)

    @property
    def in_flight(self) -> int:
        """Lines written (or framed and held for RX room) and not yet acknowledged."""
        return len(self._inflight.entries) + (self._held is not None)

    @property
    def in_flight_bytes(self) -> int:
        return self._inflight.bytes

    @property
    def window(self) -> int:
        """How many lines may be in flight now."""
        return self._limit

    @property
    def resending(self) -> bool:
        """True while history lines wait to be resent: no new line may go out."""
        return self._resend.pending

    def _update_limit(self) -> None:
        """The window's limit from what is known: call when one of its inputs changes."""
        if self._recovering or self.long_running:
            self._limit = 1
        elif self._fixed:
            self._limit = self._fixed
        elif not self.keeps_partial_lines:
            self._limit = 1
        elif self.slots:
            self._limit = self.slots
        else:
            self._limit = self.serial.firmware_bufsize or 1

    def _arm(self, now: float) -> None:
        """Set the oldest line's ok deadline: a few times the recent ok latency, at least
        MIN_OK_TIMEOUT; the communication period while a long-running command is in flight
        (the busy one when the firmware reports the busy protocol: it says `busy:` every few
        seconds while it works; busy lines and heat-up reports extend it), and never before
        a G4's wait is over."""
        base = 4.0 * self._latency
        if base < MIN_OK_TIMEOUT:
            base = MIN_OK_TIMEOUT
        if self.long_running:
            period = self._period
            if (not self.busy_active and self.serial.busy_protocol
                    and self.capabilities.get("BUSY_PROTOCOL")):
                period = communication_period(self.serial.timeouts, True, self._temp_interval)
            if base < period:
                base = period
        d = now + base
        self._ok_deadline = d if d > self._ok_floor else self._ok_floor

    def _admit(self, n: int, cmd: Command, data: bytes, now: float) -> bytes:
        """Account for a framed line that waits for its ok; b"" when it must wait for RX room
        first (it is held, and goes out through `take_output` once an ok makes room)."""
        inflight = self._inflight
        entries = inflight.entries
        nbytes = len(data)
        if entries and inflight.bytes - entries[0][2] + nbytes > inflight.room:
            self._held = (n, cmd, data)
            return b""
        if not entries:
            base = 4.0 * self._latency
            self._ok_deadline = now + (base if base > MIN_OK_TIMEOUT else MIN_OK_TIMEOUT)
        entries.append((n, cmd, nbytes, now))
        inflight.bytes += nbytes
        g = cmd.gcode
        if g in self._flagged:
            self._flag(cmd, now)
        return data

    def _flag(self, cmd: Command, now: float) -> None:
        """A long-running, heat-up or M155 command went out."""
        g = cmd.gcode
        if g in self._long_running:
            self.long_running = True
            if g == "G4":
                p, s = param_value(cmd.line, "P"), param_value(cmd.line, "S")
                wait = (p / 1000.0) if p is not None else (s or 0.0)
                self._deadline = max(self._deadline, now + self._period + wait)
                self._ok_floor = max(self._ok_floor, now + self._period + wait)
        elif g in HEATUP_GCODES:
            self.long_running = self.heating = True
        elif g == "M155" and self.capabilities.get("AUTOREPORT_TEMP"):
            s = param_value(cmd.line, "S")  # autoreport: the communication timeout follows it
            self._temp_interval = s if s else self.serial.timeouts.temperature
            self._update_period()
            return
        else:
            return
        self._update_limit()
        self._arm(now)  # a long-running line in flight: the long deadline

    def _release_held(self, now: float) -> None:
        held = self._held
        if held is not None and self._inflight.fits(len(held[2])):
            self._held = None
            self._out += self._admit(held[0], held[1], held[2], now)

    def next_resend(self, now: float) -> tuple[bytes, Command] | None:
        """The next history line to resend, verbatim with its number, if credit allows."""
        if self.credit <= 0 or not self._resend.pending or self._expect_resend_ok:
            return None  # (the resend's own ok first: then no later ok can be taken for it)
        n, line = self._resend.take()
        cmd = Command.parse(line)
        self.sent_count += 1
        return self._admit(n, cmd, frame(n, line), now), cmd

    def probe(self, now: float) -> None:
        """The oldest line's ok is overdue: send one numbered line beyond the window, the next
        line the printer expects (`N<next> M105`, or the next line waiting to be resent). If
        the earlier line arrived, the printer acknowledges both; if not, it asks for a resend.
        Never the last line again: Marlin 2.1.2+ drops a duplicate of the last line silently."""
        self._probes += 1
        self.probes_total += 1
        held = self._held
        if held is not None:  # numbered already: it is the line the printer expects next
            n, cmd, data = held
            self._held = None
        elif self._resend.pending:
            n, line = self._resend.take()
            cmd = Command.parse(line)
            data = frame(n, line)
        elif self.serial.checksum is ChecksumMode.NEVER:
            n, cmd, data = -1, _PROBE, encode_plain(_PROBE.line)
        else:
            n = self.current_line
            self._resend.record(n, _PROBE.line)
            self.current_line = n + 1
            cmd, data = _PROBE, frame(n, _PROBE.line)
        self._inflight.add(n, cmd, len(data), now)
        self._out += data
        self.sent_count += 1
        if cmd.gcode in self._flagged:
            self._flag(cmd, now)
        self._arm(now)  # back off: each probe in a row waits twice as long as the last
        self._ok_deadline = now + (self._ok_deadline - now) * (1 << min(self._probes - 1, 2))

    def _forget_in_flight(self) -> None:
        self._inflight.clear()
        self._held = None
        self._expect_resend_ok = False
        self._resend_ok_deadline = INF
        self._recovering = self._probes = 0
        self._ok_floor = 0.0
        self._update_limit()

    def abandon_in_flight(self) -> int:
        """Give up on every line in flight (a cancel that must end although the printer does
        not answer); returns how many there were. Late oks of them are ignored."""
        n = self.in_flight
        self._forget_in_flight()
        if self.long_running:
            self.long_running = self.heating = False
            self._update_limit()
        return n

    def _learn(self, b: str | bytes) -> None:
        """ADVANCED_OK's `B` (free queue slots, the acknowledged line still in it)."""
        self.advanced_ok = True
        slots = int(b) + 1
        if slots > self.slots:
            self.slots = slots
            self._update_limit()

    # ---- acknowledgements ----------------------------------------------------------------
    def _on_ok(self, now: float) -> None:
        """A plain `ok` (or `wait`): the resend's own ok, or the oldest line's."""
        self._resend_ok_deadline = INF
        if self._expect_resend_ok:
            self._expect_resend_ok = False
            return
        inflight = self._inflight
        # with ADVANCED_OK command oks carry N/P/B: a bare ok is an unnumbered line's
        count = (inflight.through_unnumbered() if self.advanced_ok
                 else 1 if inflight.entries else 0)
        if count:
            self._ack(count, now)

    def _on_advanced_ok(self, n: int, b: bytes | str | None, now: float) -> None:
        """`ok N<n> P.. B..`: every line up to n; without N, the oldest unnumbered line."""
        self._resend_ok_deadline = INF
        if b is not None and b != self._last_b:  # (it rarely changes: parsed only then)
            self._last_b = b
            self._learn(b)
        entries = self._inflight.entries
        if n >= 0:
            self.advanced_ok = True
            if entries and entries[0][0] == n:
                self._ack(1, now)
                return
            count = self._inflight.through_number(n)
        else:
            count = self._inflight.through_unnumbered()
        if count:
            self._ack(count, now)

    def _on_temperature_ok(self, n: int, b: int | None, now: float) -> None:
        """`ok T:..`: M105's answer, in order: every line up to the oldest M105."""
        self._resend_ok_deadline = INF
        if n >= 0:
            self._on_advanced_ok(n, None if b is None else str(b), now)
            return
        count = self._inflight.through_answer_of_m105()
        if not count and not self.advanced_ok and self._inflight.entries:
            count = 1  # a firmware that adds temperatures to other oks: in order
        if count:
            self._ack(count, now)

    def _ack(self, count: int, now: float) -> None:
        """The `count` oldest lines in flight are acknowledged."""
        inflight = self._inflight
        entries = inflight.entries
        if count == 1:  # the hot path
            last_n, c, nbytes, t = entries.popleft()
            inflight.bytes -= nbytes
            if c.cmd_type is not INTERNAL:
                self.last_acked = c
        else:
            cmd = None
            last_n, t = -1, now
            for _ in range(count):
                last_n, c, nbytes, t = entries.popleft()
                inflight.bytes -= nbytes
                if c.cmd_type is not INTERNAL:
                    cmd = c
            if cmd is not None:
                self.last_acked = cmd
        self.acked_count += count
        self._consecutive_timeouts = self._probes = 0
        if self.long_running:  # a long-running line may just have been acknowledged
            self._recheck_long_running()
        else:
            self._latency += (now - t - self._latency) * 0.125
        if self._recovering and last_n >= self._recover_from:
            self._recovering -= 1  # a clean acknowledgement of a line from the resend on
            if not self._recovering:
                self._update_limit()
        if entries:
            self._arm(now)
        else:
            self._ok_floor = 0.0
        if self._resend.active:
            self._resend.on_ok()
        if self._held is not None:
            self._release_held(now)

    def _alive(self, now: float) -> None:
        """A busy line or a heat-up report: the oldest line is being processed."""
        self._ok_deadline = now + self._period
        self._consecutive_timeouts = self._probes = 0

    def _recheck_long_running(self) -> None:
        """Long-running (heating) only while such a command still waits for its ok."""
        gcodes = {e[1].gcode for e in self._inflight.entries}
        self.heating = not gcodes.isdisjoint(HEATUP_GCODES)
        self.long_running = self.heating or not gcodes.isdisjoint(self._long_running)
        if not self.long_running:
            self._ok_floor = 0.0
            self._update_limit()

    # ---- resends and errors ----------------------------------------------------------------
    def _on_resend(self, n: int, now: float) -> None:
        if n >= 0:  # "Resend" without a number: nothing to resend, but the ok rules apply
            verdict = self._resend.request(n, self.current_line, self._inflight.numbers())
            if verdict is ResendTracker.LOOP:
                self._fail(ErrorReason.RESEND_LOOP, f"Printer keeps requesting line {n} again "
                           "and again, communication stuck", m112=True)
                return
            if verdict is ResendTracker.NO_HISTORY and self.printing:
                self._fail(ErrorReason.RESEND, f"Should resend line {n} but no sufficient "
                           "history is available, can't resend", m112=True)
                return
            if verdict is ResendTracker.ACCEPTED:
                # the lines from n on never reached the queue: they go out again
                self._inflight.drop_from(n)
                held = self._held
                if held is not None and held[0] >= 0:
                    self._held = None
                if self.long_running:
                    self._recheck_long_running()
                if self._inflight.entries:
                    self._arm(now)
            self._recover(n)
        mode = self.serial.resend_without_ok  # OctoPrint applies it to every Resend: line
        if mode is not ResendWithoutOk.ALWAYS:
            self._expect_resend_ok = True
            if mode is ResendWithoutOk.DETECT:
                self._resend_ok_deadline = now + self.serial.timeouts.resend_ok

    def _no_resend_ok(self) -> None:
        self._expect_resend_ok = False
        self._resend_ok_deadline = INF

    def _recover(self, n: int) -> None:
        """A resend from line n: one line in flight until n and a run of clean lines after it
        are acknowledged."""
        self._recovering = CLEAN_RUN
        self._recover_from = n if n >= 0 else 0
        self._update_limit()

