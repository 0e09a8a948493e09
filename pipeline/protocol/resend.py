"""The resend tracker, one of the engine's parts: the history of numbered lines, the verdicts
on `Resend: N` and the lines queued to go out again, and whether the resend's own ok is still
to come.

The rules for a repeated `Resend: N`. After a line error Marlin empties its RX buffer: a line
already behind the bad one on the wire arrives afterwards, is refused in turn and asks for N
again, and each flush may destroy whatever else waits in the buffer.

- While line N still waits in the queue (not written again yet) a repeat changes nothing: every
  line from N on goes out again anyway.
- Once N has been written again, a repeat is honoured at once: the flush that provoked it may
  have destroyed the copy, and only a repeat says so. If the copy survived, the firmware takes
  it and drops the second as a duplicate of its last line (older Marlin asks for N+1, which
  the engine ignores: it is the next line anyway).
- A repeat counts towards `max_consecutive_resends` only beyond the lines that could still
  arrive: those that were in flight behind N when it was first asked for, each of which may
  provoke one repeat.

Pure data structure, no IO. The engine asks `request()` for a verdict and `take()` for the
next line to resend; the send window stays the window's business.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable

INF = float("inf")


class Verdict(enum.Enum):
    ACCEPTED = "accepted"      # lines from N on are queued for resending
    IGNORED = "ignored"        # a stale or leftover request: nothing to do
    NO_HISTORY = "no_history"  # N is older than the history (or in the future)
    LOOP = "loop"              # the same line asked for too often in a row


class ResendTracker:
    ACCEPTED = Verdict.ACCEPTED
    IGNORED = Verdict.IGNORED
    NO_HISTORY = Verdict.NO_HISTORY
    LOOP = Verdict.LOOP

    def __init__(self, size: int = 50, max_repeats: int = 10) -> None:
        self._history: deque[str] = deque(maxlen=size)
        self._first = 1              # the line number of _history[0]
        self._queue: deque[int] = deque()
        self._max_repeats = max_repeats
        self.active = False
        self._last_request: int | None = None
        self._repeats = 0
        self._stale = 0              # lines behind the requested one that may still arrive
        self.requests = 0            # every resend request seen (statistics)
        self.last_error: str | None = None
        #: A `Resend:` came and its own ok has not yet: no line may take an ok before it.
        self.awaiting_ok = False
        #: When to stop waiting for that ok (`resend_without_ok: detect`), else inf.
        self.ok_deadline = INF

    def record(self, n: int, line: str) -> None:
        """Remember numbered line `n` (numbers are consecutive between clears)."""
        h = self._history
        if not h or n != self._first + len(h):
            h.clear()
            self._first = n
        elif len(h) == h.maxlen:
            self._first += 1
        h.append(line)

    def clear(self) -> None:
        """Line numbers were reset (M110, printer reset): forget everything."""
        self._history.clear()
        self._queue.clear()
        self.active = False
        self._last_request = None
        self._repeats = 0
        self._stale = 0
        self.last_error = None
        self.ok_arrived()

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def note_error(self, text: str) -> None:
        self.last_error = text

    def request(self, n: int, current_line: int, inflight: Iterable[int]) -> Verdict:
        """The printer asked for line `n`; `current_line` is the next unused number;
        `inflight` the numbers of the lines still waiting for their ok (-1: unnumbered)."""
        self.requests += 1
        self.last_error = None  # each request consumes its error line
        queue = self._queue
        if not queue and n == current_line:
            return Verdict.IGNORED  # it got line n-1 twice, or a leftover after a reset
        if n == self._last_request:
            if self._stale > 0:
                self._stale -= 1    # a line that was behind n arrived after the flush
            else:
                self._repeats += 1
                if self._repeats >= self._max_repeats:
                    return Verdict.LOOP
            if queue and queue[0] == n:
                return Verdict.IGNORED  # n goes out again anyway: nothing was lost
        else:
            self._repeats = 0
        h = self._history
        if n > current_line or (n < current_line and (
                not h or n < self._first or current_line != self._first + len(h))):
            return Verdict.NO_HISTORY
        if n != self._last_request:
            self._stale = sum(1 for x in inflight if x > n)
        self._last_request = n
        self.active = True
        self._queue = deque(range(n, current_line))  # empty for n == current_line: all arrived
        return Verdict.ACCEPTED

    def take(self) -> tuple[int, str]:
        n = self._queue.popleft()
        return n, self._history[n - self._first]

    def line(self, n: int) -> str | None:
        """Line `n` as the history has it (None when it is not there)."""
        i = n - self._first
        return self._history[i] if 0 <= i < len(self._history) else None

    def on_ok(self) -> None:
        if self.active and not self._queue:
            self.active = False

    # ---- the resend's own ok ------------------------------------------------------------
    def expect_ok(self, deadline: float) -> None:
        """A `Resend:` line: its own ok follows (by `deadline`, inf to wait for it)."""
        self.awaiting_ok = True
        self.ok_deadline = deadline

    def ok_arrived(self) -> None:
        """The resend's ok came, or something proved it will not."""
        self.awaiting_ok = False
        self.ok_deadline = INF
