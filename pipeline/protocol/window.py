"""The send window, one of the engine's parts: how many lines may be in flight, and the exact
account of those that are.

`InFlight` holds every line written and not yet acknowledged, oldest first, as
(number or -1, command, bytes on the wire, time sent), and their byte total. It answers:

- which lines an ok acknowledges: `ok N<k>` (ADVANCED_OK) every line up to line k; an ok that
  carries temperatures (M105's answer) every line up to the newest probe, else the oldest
  M105; any other ok without a number, with ADVANCED_OK known, up to the oldest unnumbered
  line (or nothing: a stray); without ADVANCED_OK, the oldest line (Marlin answers in order);
- which lines a `Resend: N` takes back (every numbered line from N on: they will be resent);
- whether a line of so many bytes fits the firmware's RX buffer (the bytes beyond the line
  being processed stay below `rx_buffer`).

`SendWindow` owns that account and the limit: a fixed `serial.send_window`, or auto: one
line (ping-pong) unless the firmware is known to keep the rest of a line after a line error
(Klipper), then its command-queue slots learned from ADVANCED_OK's `B` (`firmware_bufsize`
without ADVANCED_OK, else one line); one line after any error until a run of clean
acknowledgements, and while a long-running command is in flight. A framed line that would
put more than `rx_buffer - 1` unacknowledged bytes behind the line being processed is held
until an ok makes room.

Why auto is ping-pong on Marlin: its gcode_line_error() empties the RX buffer, so the rest of
a line arriving then is read unnumbered, unchecked, cut at its first `*`: from the command
letter on it runs as that command. No framing helps, and only an ok says a line was checked.

Without ADVANCED_OK a plain ok does not say which line it acknowledges, so a lost one would
leave a line counted in flight for good (the window one line smaller for the rest of the
print). With more than one line allowed and no ADVANCED_OK, the window asks for a sync every
SYNC_INTERVAL: one line of the window is then the engine's own M105, whose `ok T:` answer
acknowledges every line up to it.

Pure: no IO, no trio, no clock.
"""

from __future__ import annotations

from collections import deque

from pipeline.config.schema import SerialSpec
from pipeline.gcode import Command
from pipeline.protocol.settings import HEATUP_GCODES

#: cmd_type of the engine's own lines (extra hellos, probes): never `last_acked`.
INTERNAL = "printpipe:internal"

Entry = tuple[int, Command, int, float]  # (number or -1, command, bytes, time sent)
Held = tuple[int, Command, bytes]        # (number or -1, command, the framed line)
#: After an error, this many clean acknowledgements at one line in flight before the window
#: opens again.
CLEAN_RUN = 2
#: Without ADVANCED_OK and with more than one line allowed: seconds between syncs.
SYNC_INTERVAL = 1.0


class InFlight:
    __slots__ = ("bytes", "entries", "room")

    def __init__(self, rx_buffer: int) -> None:
        self.entries: deque[Entry] = deque()
        self.bytes = 0
        #: Bytes that may wait behind the line being processed (one RX byte stays free).
        self.room = rx_buffer - 1

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def fits(self, nbytes: int) -> bool:
        """A line of `nbytes` may be written now without overflowing the RX buffer."""
        e = self.entries
        return not e or self.bytes - e[0][2] + nbytes <= self.room

    def add(self, n: int, cmd: Command, nbytes: int, now: float) -> None:
        self.entries.append((n, cmd, nbytes, now))
        self.bytes += nbytes

    # ---- which lines an ok acknowledges (a count from the oldest; 0: none) ---------------------
    def through_number(self, k: int) -> int:
        """`ok N<k>`: up to and including line k; 0 when k is not in flight (a stale ok)."""
        for i, entry in enumerate(self.entries):
            if entry[0] == k:
                return i + 1
        return 0

    def through_gcode(self, gcode: str) -> int:
        for i, entry in enumerate(self.entries):
            if entry[1].gcode == gcode:
                return i + 1
        return 0

    def through_answer_of_m105(self) -> int:
        """`ok T:..`: the answer of an M105. Up to the newest probe when one is in flight (a
        probe goes out only when every line before it is overdue: their answers, earlier
        probes' included, were lost), else up to the oldest M105."""
        entries = self.entries
        for i in range(len(entries) - 1, -1, -1):
            cmd = entries[i][1]
            if cmd.cmd_type is INTERNAL and cmd.gcode == "M105":
                return i + 1
        return self.through_gcode("M105")

    def through_unnumbered(self) -> int:
        """An ok without a number: up to the oldest unnumbered line (M105s answer with
        temperatures and are matched by `through_gcode`)."""
        for i, entry in enumerate(self.entries):
            if entry[0] < 0 and entry[1].gcode != "M105":
                return i + 1
        return 0

    # ---- taking lines back -------------------------------------------------------------------
    def drop_from(self, n: int) -> int:
        """`Resend: n`: forget every numbered line from n on (they go out again from the
        history); returns how many were dropped."""
        kept: deque[Entry] = deque()
        dropped = 0
        for entry in self.entries:
            if entry[0] >= n:
                dropped += 1
                self.bytes -= entry[2]
            else:
                kept.append(entry)
        self.entries = kept
        return dropped

    def numbers(self) -> list[int]:
        return [entry[0] for entry in self.entries]


class SendWindow:
    """The account of the lines in flight and how many more may go."""

    __slots__ = ("_fixed", "_long_gcodes", "_next_sync", "_recover_from", "_recovering",
                 "acked_count", "advanced_ok", "bufsize", "heating", "held",
                 "inflight", "keeps_partial_lines", "last_acked", "last_b", "limit",
                 "long_running", "slots", "syncing")

    def __init__(self, serial: SerialSpec) -> None:
        self.inflight = InFlight(serial.rx_buffer)
        self._fixed = 0 if serial.send_window == "auto" else int(serial.send_window)
        self.bufsize = serial.firmware_bufsize or 0
        self._long_gcodes = frozenset(serial.long_running_commands)
        #: The firmware never throws away the rest of a line: auto may open.
        self.keeps_partial_lines = False
        self.slots = 0              # the firmware's command-queue slots, from ADVANCED_OK's B
        self.advanced_ok = False    # oks carry N/P/B
        self.last_b: bytes | str | None = None  # the last B an ok carried
        self.long_running = self.heating = False  # such a line waits for its ok
        self.held: Held | None = None  # framed, waiting for RX room
        self._recovering = 0        # clean acks still needed at one line after an error
        self._recover_from = 0      # ... of lines numbered from this one on
        #: The most recent command the printer acknowledged (acks come in order), never one
        #: of the engine's own lines (extra hellos, probes).
        self.last_acked: Command | None = None
        self.acked_count = 0
        self.syncing = False        # plain oks with more than one line: syncs are due
        self._next_sync = SYNC_INTERVAL
        self.limit = 1
        self.update_limit()

    # ---- the limit -------------------------------------------------------------------------
    @property
    def credit(self) -> int:
        """How many more lines may be sent before an ok comes back."""
        if self.held is not None:
            return 0
        return self.limit - len(self.inflight.entries)

    @property
    def in_flight(self) -> int:
        """Lines written (or framed and held for RX room) and not yet acknowledged."""
        return len(self.inflight.entries) + (self.held is not None)

    def update_limit(self) -> None:
        """The limit from what is known: call when one of its inputs changes."""
        if self._recovering or self.long_running:
            limit = 1
        elif self._fixed:
            limit = self._fixed
        elif not self.keeps_partial_lines:
            limit = 1
        elif self.slots:
            limit = self.slots
        else:
            limit = self.bufsize or 1
        self.limit = limit
        self.syncing = (self._fixed or limit) > 1 and not self.advanced_ok

    def learn(self, b: str | bytes) -> None:
        """ADVANCED_OK's `B` (free queue slots, the acknowledged line still in it)."""
        self.last_b = b
        self.advanced_ok = True
        slots = int(b) + 1
        if slots > self.slots:
            self.slots = slots
        self.update_limit()

    def numbered_ok(self) -> None:
        """An ok with an `N`: the firmware speaks ADVANCED_OK."""
        if not self.advanced_ok:
            self.advanced_ok = True
            self.update_limit()

    def partial_lines(self, keeps: bool) -> None:
        if keeps != self.keeps_partial_lines:
            self.keeps_partial_lines = keeps
            self.update_limit()

    def recover(self, n: int) -> None:
        """A resend from line n: one line in flight until n and a run of clean lines after it
        are acknowledged."""
        self._recovering = CLEAN_RUN
        self._recover_from = n if n >= 0 else 0
        self.update_limit()

    def long_line(self, heating: bool) -> None:
        """A long-running (`heating`: heat-and-wait) line went out."""
        self.long_running = True
        if heating:
            self.heating = True
        self.update_limit()

    def sync_due(self, now: float) -> bool:
        """Time for a sync (see the module's text); the caller sends it at once."""
        if not self.syncing or now < self._next_sync or self.credit <= 0:
            return False
        self._next_sync = now + SYNC_INTERVAL
        return not self.inflight.through_gcode("M105")

    # ---- lines going out ---------------------------------------------------------------------
    def admit(self, n: int, cmd: Command, data: bytes, now: float) -> bytes:
        """Account for a framed line; b"" when it must wait for RX room (it is held)."""
        inflight = self.inflight
        entries = inflight.entries
        nbytes = len(data)
        if not entries:
            self._next_sync = now + SYNC_INTERVAL
        elif inflight.bytes - entries[0][2] + nbytes > inflight.room:
            self.held = (n, cmd, data)
            return b""
        entries.append((n, cmd, nbytes, now))
        inflight.bytes += nbytes
        return data

    def release_held(self) -> Held | None:
        """The held line, once an ok has made room for it (the caller admits it)."""
        held = self.held
        if held is not None and self.inflight.fits(len(held[2])):
            self.held = None
            return held
        return None

    def take_held(self) -> Held | None:
        held, self.held = self.held, None
        return held

    # ---- acknowledgements ----------------------------------------------------------------
    def plain_ok(self) -> int:
        """How many lines a plain `ok` (or `wait`) acknowledges: with ADVANCED_OK command oks
        carry N/P/B, so a bare ok is an unnumbered line's."""
        if self.advanced_ok:
            return self.inflight.through_unnumbered()
        return 1 if self.inflight.entries else 0

    def temperature_ok(self) -> int:
        """How many lines `ok T:..` (M105's answer) acknowledges."""
        count = self.inflight.through_answer_of_m105()
        if not count and not self.advanced_ok and self.inflight.entries:
            count = 1  # a firmware that adds temperatures to other oks: in order
        return count

    def ack(self, count: int, now: float) -> float:
        """The `count` oldest lines are acknowledged; returns when the last of them was
        sent."""
        inflight = self.inflight
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
        if not entries:  # nothing in flight: nothing is counted that was acknowledged
            self._next_sync = now + SYNC_INTERVAL
        if self.long_running:  # a long-running line may just have been acknowledged
            self.recheck_long_running()
        if self._recovering and last_n >= self._recover_from:
            self._recovering -= 1  # a clean acknowledgement of a line from the resend on
            if not self._recovering:
                self.update_limit()
        return t

    def recheck_long_running(self) -> None:
        """Long-running (heating) only while such a command still waits for its ok."""
        gcodes = {e[1].gcode for e in self.inflight.entries}
        self.heating = not gcodes.isdisjoint(HEATUP_GCODES)
        self.long_running = self.heating or not gcodes.isdisjoint(self._long_gcodes)
        if not self.long_running:
            self.update_limit()

    # ---- taking lines back -----------------------------------------------------------------
    def resend_from(self, n: int) -> None:
        """`Resend: n` was accepted: the lines from n on never reached the queue."""
        self.inflight.drop_from(n)
        held = self.held
        if held is not None and held[0] >= 0:
            self.held = None
        if self.long_running:
            self.recheck_long_running()

    def forget(self) -> int:
        """Nothing is in flight any more (connect, reset, a cancel giving up on the lines
        the printer does not acknowledge: their late oks are ignored); returns how many
        lines there were."""
        n = self.in_flight
        self.inflight.clear()
        self.held = None
        self._recovering = 0
        self.long_running = self.heating = False
        self.update_limit()
        return n

    def reset(self) -> None:
        """A new connection: nothing is known about the firmware."""
        self.slots, self.advanced_ok, self.last_b = 0, False, None
        self.forget()
