"""The sans-IO virtual Marlin 2 firmware: line framing, resends, time, waits and faults.

`VirtualFirmware` takes bytes from the host (`receive_data`) and hands back the bytes the
printer would have sent by a given time (`data_to_send`). It never does IO and never reads a
clock: every call carries `now` (monotonic seconds) and `next_deadline()` says when output
becomes due without new input. The G-code handlers live in `commands.py` (a mixin), the heat
model in `thermal.py`, the fault spec and dice in `faults.py`.
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque

from pipeline.gcode import checksum, strip_comment
from pipeline.virtual.commands import CommandsMixin
from pipeline.virtual.faults import FaultDice, FaultKind
from pipeline.virtual.sd.commands import silent
from pipeline.virtual.spec import FirmwareSpec
from pipeline.virtual.thermal import HeaterState, Thermals, retarget
from pipeline.virtual.waits import Wait, WaitKind

__all__ = ["FirmwareSpec", "LineError", "VirtualFirmware", "WaitKind"]

_NUMBER_RE = re.compile(rb"N(\d+)\s*")
_M110_N_RE = re.compile(rb"(?<![A-Za-z])N\s*(\d+)")
_EMERGENCY_RE = re.compile(rb"(?:N\d+\s*)?(M108|M112)(?!\d)")

BUSY_LINE = "echo:busy: processing"
NOISE_LINE = "echo:printpipe virtual noise (injected, harmless)"
KILL_LINES = ("echo:EMERGENCY SHUTDOWN DETECTED. KILLED.", "Error:Printer halted. kill() called!")
FATAL_LINES = ("Error:Thermal Runaway, system stopped! Heater_ID: 0",
               "Error:Printer halted. kill() called!")


class LineError(enum.Enum):
    """Marlin's line-framing errors; the value is the text before `, Last Line: <n>`."""

    CHECKSUM_MISMATCH = "checksum mismatch"
    LINE_NUMBER = "Line Number is not Last Line Number+1"
    NO_CHECKSUM = "No Checksum with line number"


class VirtualFirmware(CommandsMixin):
    """A Marlin-2-like printer as a pure state machine over (bytes in, now) -> bytes out."""

    def __init__(self, spec: FirmwareSpec = FirmwareSpec(), *, now: float = 0.0) -> None:
        self.spec = spec
        self.accepted: list[str] = []
        self.killed = False
        self.disconnect_requested = False
        faults = spec.virtual.faults
        self._th = Thermals(spec.ambient, spec.virtual.heat_rate, spec.cool_rate)
        self._faults = faults
        self._dice = FaultDice(faults)
        self._roll_corrupt = self._dice.active(FaultKind.CORRUPT)
        self._roll_lost = self._dice.active(FaultKind.LOST_LINE)
        self._drop_duplicates = False  # Marlin 2.1.2+: a repeat of the last line is dropped
        self._line_n: int | None = None  # the number of the line being handled
        self._roll_after = any(self._dice.active(k) for k in
                               (FaultKind.LOST_OK, FaultKind.BUSY, FaultKind.NOISE))
        self._after_counts = {faults.reset_after, faults.disconnect_after,
                              faults.fatal_after} - {None}
        self._sd_init()
        self._caps = dict(spec.capabilities) | self.sd_capabilities()
        self._out: list[str] = []
        self._inbuf = b""
        self._backlog: deque[bytes] = deque()
        self._executed = 0
        profile = spec.profile
        self._tools = [HeaterState(spec.ambient, now)] * max(1, profile.extruders)
        self._bed = HeaterState(spec.ambient, now) if profile.heated_bed else None
        self._chamber = HeaterState(spec.ambient, now) if profile.heated_chamber else None
        self._boot(now)

    # ---------------------------------------------------------------- public API

    def receive_data(self, data: bytes, now: float) -> None:
        """Take bytes from the host (any chunking; lines end in \\n, \\r\\n or \\r)."""
        if self.killed:
            return
        if self._wait is not None or self._next_auto is not None or self._sd_at is not None:
            self._advance(now)
        if self.bft is not None:
            data = self.feed_binary(self._inbuf + data)
            self._inbuf = b""
            if not data:
                return
        if self._inbuf:
            data = self._inbuf + data
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        lines = data.split(b"\n")
        self._inbuf = lines.pop()
        for i, raw in enumerate(lines):
            line = raw.strip()
            if not line:
                continue
            if b"M1" in line and self._emergency(line, now):
                return
            if self._wait is not None:
                self._backlog.append(line)
            else:
                self._handle(line, now)
            if self.killed:
                return  # type: ignore[unreachable]  # mypy misses that _handle() can kill
            if self.bft is not None:  # M28 B1: what follows is binary
                rest = b"\n".join([*lines[i + 1:], self._inbuf])
                self._inbuf = b""
                if rest:
                    self.receive_data(rest, now)
                return

    def data_to_send(self, now: float) -> bytes:
        """Everything the printer has said by `now` (time-driven output first); b"" if none."""
        if not self.killed and (self._wait is not None or self._next_auto is not None
                                or self._sd_at is not None):
            self._advance(now)
        out = self._out
        if not out:
            return b""
        out.append("")
        data = "\n".join(out).encode("latin-1", "replace")
        out.clear()
        return data

    def next_deadline(self) -> float | None:
        """The earliest time new output becomes due without new input, or None."""
        if self.killed:
            return None
        best = math.inf
        if self._wait is not None:
            best = self._wait.end
            if self._next_report is not None and self._next_report < best:
                best = self._next_report
            if self._next_busy is not None and self._next_busy < best:
                best = self._next_busy
        if self._next_auto is not None and self._next_auto < best:
            best = self._next_auto
        if self._sd_at is not None and self._sd_at < best:
            best = self._sd_at
        return None if best == math.inf else best

    # ---------------------------------------------------------------- state

    def _boot(self, now: float) -> None:
        """Power-on state (also after a simulated reset): line 0, tool 0, origin, no waits."""
        spec = self.spec
        self._last_n = 0
        self._tool = 0
        self._pos = [0.0, 0.0, 0.0, 0.0]
        self._relative = False
        self._relative_e = False
        self._autoreport = 0.0
        self._next_auto: float | None = None
        self._busy_interval = spec.busy_interval if self._caps.get("BUSY_PROTOCOL") else 0.0
        self._wait: Wait | None = None
        self._next_report: float | None = None
        self._next_busy: float | None = None
        self._backlog.clear()
        card = self.card
        card.mounted = card.printing = False
        card.selected = card.saving = None
        self.bft = None
        self._sd_step_at = self._sd_report_at = self._sd_at = None
        th = self._th
        self._tools = [retarget(t, 0.0, now, th) for t in self._tools]
        if self._bed is not None:
            self._bed = retarget(self._bed, 0.0, now, th)
        if self._chamber is not None:
            self._chamber = retarget(self._chamber, 0.0, now, th)
        self._out.append("start")
        self._out.append(f"echo:{spec.virtual.firmware_name} (printpipe virtual printer)")

    # ---------------------------------------------------------------- lines

    def _emergency(self, line: bytes, now: float) -> bool:
        """Marlin's emergency parser: M112 kills at once, M108 ends a heat wait at once.

        Returns True when the printer is now dead (stop reading). M108 still goes on to be
        queued and executed like any line (it gets its ok in order).
        """
        m = _EMERGENCY_RE.match(line)
        if m is None:
            return False
        if m.group(1) == b"M112":
            self._kill(self._command_text(line), now)
            return True
        if self._wait is not None and self._wait.kind is WaitKind.HEAT:
            self._end_wait(now)
        return False

    def _handle(self, line: bytes, now: float) -> None:
        """Check the framing of one stripped line and execute it (or ask for a resend)."""
        if line[0] == 78:  # b"N"
            m = _NUMBER_RE.match(line)
            if m is not None:
                self._handle_numbered(line, int(m.group(1)), m.end(), now)
                return
        star = line.find(b"*")
        cmd = line[:star].rstrip() if star >= 0 else line
        text = cmd.decode("latin-1")
        if ";" in text:
            text = strip_comment(text)
            if not text:
                return
        self._line_n = None
        self._execute(text, now)

    def _handle_numbered(self, line: bytes, n: int, start: int, now: float) -> None:
        star = line.rfind(b"*")
        body = line[start:star] if star >= 0 else line[start:]
        is_m110 = body.startswith(b"M110") and not body[4:5].isdigit()
        if is_m110:
            nm = _M110_N_RE.search(body, 4)
            if nm is not None:
                n = int(nm.group(1))
        elif self._roll_lost and self._dice.roll(FaultKind.LOST_LINE):
            return  # lost on the wire: the printer never saw it
        elif n != self._last_n + 1:
            if self._drop_duplicates and self._last_n - 1 <= n <= self._last_n:
                return  # a resend already in transit: Marlin drops it without a word
            self._line_error(LineError.LINE_NUMBER)
            return
        if star < 0:
            self._line_error(LineError.NO_CHECKSUM)
            return
        try:
            given = int(line[star + 1:])
        except ValueError:
            given = -1
        if given != checksum(line[:star]) or (
                self._roll_corrupt and not is_m110 and self._dice.roll(FaultKind.CORRUPT)):
            self._line_error(LineError.CHECKSUM_MISMATCH)
            return
        self._last_n = n
        text = body.rstrip().decode("latin-1")
        if ";" in text:
            text = strip_comment(text)
        self._line_n = n
        if not text:
            self._empty_line(now)
            return
        self._execute(text, now)

    def _empty_line(self, now: float) -> None:
        self._out.append("ok")

    def _line_error(self, err: LineError) -> None:
        last = self._last_n
        self._out.append(f"Error:{err.value}, Last Line: {last}")
        self._out.append(f"Resend: {last + 1}")
        if not self._faults.resend_without_ok:
            self._out.append("ok")

    @staticmethod
    def _command_text(line: bytes) -> str:
        """The command of a raw line without `N<n>` and `*<cs>` (for `accepted`)."""
        m = _NUMBER_RE.match(line)
        if m is not None:
            line = line[m.end():]
        star = line.find(b"*")
        if star >= 0:
            line = line[:star]
        return line.strip().decode("latin-1")

    # ---------------------------------------------------------------- execution

    def _execute(self, text: str, now: float) -> None:
        self.accepted.append(text)
        self._executed += 1
        ok = self._dispatch(text, now)
        if ok is not None:
            self._finish(ok, now)

    def _finish(self, ok: str, now: float) -> None:
        """Emit a command's ok (with the per-command faults) and fire the `*_after` faults."""
        if not ok:
            return  # a command from the SD card: the host gets no ok for it
        out = self._out
        if self._roll_after:
            dice = self._dice
            if dice.roll(FaultKind.BUSY):
                out.extend([BUSY_LINE] * self._faults.busy_lines)
            if not dice.roll(FaultKind.LOST_OK):
                out.append(ok)
            if dice.roll(FaultKind.NOISE):
                out.append(NOISE_LINE)
        else:
            out.append(ok)
        if self._executed in self._after_counts:
            self._after_faults(now)

    def _after_faults(self, now: float) -> None:
        f = self._faults
        n = self._executed
        if f.disconnect_after == n:
            self.disconnect_requested = True
        if f.fatal_after == n:
            self._out.extend(FATAL_LINES)
            self._die()
        elif f.reset_after == n:
            self._boot(now)

    def _kill(self, text: str, now: float) -> None:
        self.accepted.append(text)
        self._executed += 1
        self._out.extend(KILL_LINES)
        self._die()

    def _die(self) -> None:
        self.killed = True
        self._wait = None
        self._next_report = self._next_busy = self._next_auto = None
        self._backlog.clear()
        self._inbuf = b""

    # ---------------------------------------------------------------- time

    def _start_wait(self, wait: Wait, now: float) -> None:
        """Block until `wait.end`; later lines queue in the backlog meanwhile."""
        if self._sd_line:
            wait = silent(wait)
        self._wait = wait
        end = wait.end
        ri = self.spec.wait_report_interval
        self._next_report = now + ri if wait.reports and ri > 0 and now + ri < end else None
        bi = self._busy_interval
        self._next_busy = now + bi if wait.busy and bi > 0 and now + bi < end else None

    def _end_wait(self, t: float) -> None:
        """The wait is over at `t`: its ok, then the buffered lines (until the next wait)."""
        wait = self._wait
        assert wait is not None
        self._wait = None
        self._next_report = self._next_busy = None
        self._finish(wait.ok, t)
        backlog = self._backlog
        while backlog and self._wait is None and not self.killed:
            self._handle(backlog.popleft(), t)
        self._sd_waited(t)

    def _advance(self, now: float) -> None:
        """Fire every time-driven output due by `now`, oldest first, in firmware time."""
        while not self.killed:
            auto = self._next_auto
            wait = self._wait
            sd = self._sd_at
            if wait is not None:
                t = wait.end
                rep, busy = self._next_report, self._next_busy
                if rep is not None and rep <= t:
                    t = rep
                if busy is not None and busy < t:
                    t = busy
                if auto is not None and auto <= t:
                    t = auto
            elif auto is not None:
                t = auto
            elif sd is None:
                return
            else:
                t = sd
            if sd is not None and sd < t:
                t = sd
            if t > now:
                return
            if t == sd:
                self._sd_due(t)
            elif t == auto:
                self._out.append(" " + self._temperature_text(t))
                self._next_auto = t + self._autoreport
            elif wait is not None and t == self._next_report:
                self._out.append(f" {self._temperature_text(t)} W:?")
                nxt = t + self.spec.wait_report_interval
                self._next_report = nxt if nxt < wait.end else None
            elif wait is not None and t == self._next_busy:
                self._out.append(BUSY_LINE)
                nxt = t + self._busy_interval
                self._next_busy = nxt if nxt < wait.end else None
            else:
                self._end_wait(t)
