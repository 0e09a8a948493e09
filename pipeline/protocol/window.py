"""The send window: the exact account of the lines in flight and how many more may go.

`InFlight` holds every line written and not yet acknowledged, oldest first, as
(number or -1, command, bytes on the wire, time sent), and their byte total. It answers:

- which lines an ok acknowledges: `ok N<k>` (ADVANCED_OK) every line up to line k; an ok that
  carries temperatures (M105's answer) every line up to the oldest M105; any other ok without
  a number, with ADVANCED_OK known, up to the oldest unnumbered line (or nothing: a stray);
  without ADVANCED_OK, the oldest line (Marlin answers in order);
- which lines a `Resend: N` takes back (every numbered line from N on: they will be resent);
- whether a line of so many bytes fits the firmware's RX buffer (the bytes beyond the line
  being processed stay below `rx_buffer`).

The window's limit (how many lines) is the engine's: it depends on what the firmware reported,
errors and long-running commands. Pure: no IO, no trio, no clock.
"""

from __future__ import annotations

from collections import deque

from pipeline.gcode import Command

#: cmd_type of the engine's own lines (extra hellos, probes): never `last_acked`.
INTERNAL = "printpipe:internal"

Entry = tuple[int, Command, int, float]  # (number or -1, command, bytes, time sent)


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
