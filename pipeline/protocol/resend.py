"""Resend bookkeeping for the protocol engine: the history of numbered lines and the rules for
answering `Resend: N` (stale duplicates, leftovers after a reset, the repeat limit).

Pure data structure, no IO. The engine asks `request()` for a verdict and `take()` for the
next line to resend; the ok window stays the engine's business.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable


def _is_line_number_error(text: str) -> bool:
    low = text.lower()
    return "line number" in low or "expected line" in low


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
        self._dup_budget = 0
        self.requests = 0            # every resend request seen (statistics)
        self.last_error: str | None = None

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
        self._dup_budget = 0
        self.last_error = None

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def note_error(self, text: str) -> None:
        self.last_error = text

    def request(self, n: int, current_line: int, inflight: Iterable[int]) -> Verdict:
        """The printer asked for line `n`; `current_line` is the next unused number;
        `inflight` the numbers of the lines still waiting for their ok (-1: unnumbered)."""
        self.requests += 1
        error, self.last_error = self.last_error, None  # each request consumes its error line
        if not self._queue and n == current_line:
            return Verdict.IGNORED  # it got line n-1 twice, or a leftover after a reset
        if (n == self._last_request and self._dup_budget > 0
                and (error is None or _is_line_number_error(error))):
            self._dup_budget -= 1   # the firmware complaining about lines already in flight
            return Verdict.IGNORED
        if n == self._last_request:
            self._repeats += 1
            if self._repeats >= self._max_repeats:
                return Verdict.LOOP
        else:
            self._repeats = 0
        self._last_request = n
        h = self._history
        if n > current_line or (n < current_line and (
                not h or n < self._first or current_line != self._first + len(h))):
            return Verdict.NO_HISTORY
        self.active = True
        self._queue = deque(range(n, current_line))  # empty for n == current_line: all arrived
        self._dup_budget = sum(1 for x in inflight if x > n)
        return Verdict.ACCEPTED

    def take(self) -> tuple[int, str]:
        n = self._queue.popleft()
        return n, self._history[n - self._first]

    def requeue(self, n: int) -> None:
        """Send line `n` again first (a timeout during an active resend)."""
        if self._queue and n >= self._queue[0]:
            return  # still queued: it goes out again anyway
        if self._first <= n < self._first + len(self._history):
            self._queue.appendleft(n)

    def on_ok(self) -> None:
        if self.active and not self._queue:
            self.active = False
