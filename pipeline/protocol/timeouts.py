"""The deadlines and the probe policy, one of the engine's parts: when the printer has been
silent too long, when the oldest line's ok is overdue, and what a passed deadline means.

- The communication deadline: the busy or plain communication period after the last line
  from the printer (at least a temperature interval and a second: autoreport lines are the
  keep-alive). With nothing in flight, passing it is a timeout (an M105 tickle while
  printing; after `max_consecutive_timeouts` in a row the link is declared dead).
- The oldest line's ok deadline: four times the recent ok latency, at least MIN_OK_TIMEOUT;
  for a long-running command the busy period from the moment it is the oldest line when the
  firmware speaks the busy protocol (`Cap:BUSY_PROTOCOL:1` or a busy line seen), else the
  communication period; never before a G4's wait is over. Busy lines and heat-up reports
  (`W:`) say the firmware works on it: each pushes the deadline one busy period on.
- When the ok deadline passes, the engine sends a probe. While the printer stays silent,
  later probes back off (0.5, 1, 2, 2 s ...) and each counts as a timeout. While it keeps
  talking (temperature reports, stray lines) the probe waits unread behind a long command:
  no timeout is counted and the next probe waits a communication period; the link fails
  only when nothing has been acknowledged (nor reported busy) for `timeouts.ok_ceiling`.

Pure: `now` is always passed in, nothing here reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from pipeline.config.schema import SerialSpec, TimeoutSpec
from pipeline.protocol.window import Entry

INF = float("inf")
MIN_OK_TIMEOUT = 0.05  # the shortest wait for an ok before the first probe
BACKOFF = 0.5         # ... and before each later one while the printer is silent


def communication_period(timeouts: TimeoutSpec, busy: bool, temperature_interval: float
                         ) -> float:
    """How long the printer may stay silent: the busy or plain communication timeout, but at
    least one temperature interval and a second (autoreport lines are the keep-alive)."""
    base = timeouts.communication_busy if busy else timeouts.communication
    return max(base, temperature_interval + 1.0)


class Timeout(enum.Enum):
    """What a passed deadline means (the engine acts on it)."""

    NOTHING = "nothing"     # re-armed: the printer is alive
    PROBE = "probe"         # the oldest line's ok is overdue: send a probe
    TICKLE = "tickle"       # silent with nothing in flight while printing: ask for M105
    SILENT = "silent"       # dead: too many timeouts in a row without a word
    CEILING = "ceiling"     # dead: talking, but nothing acknowledged for ok_ceiling


class Deadlines:
    """The communication deadline, the oldest line's ok deadline and the probe policy."""

    __slots__ = ("_capabilities", "_serial", "_temp_interval", "_timeouts", "busy_active",
                 "comm", "consecutive", "floor", "latency", "ok", "period", "probe_time",
                 "probes", "probes_total", "progress", "talked", "timeouts_total")

    def __init__(self, serial: SerialSpec, capabilities: Mapping[str, bool]) -> None:
        self._serial = serial
        self._timeouts = serial.timeouts
        self._capabilities = capabilities  # the firmware report's, kept up to date there
        self.busy_active = False      # a busy line was seen: the busy period applies
        self._temp_interval = serial.timeouts.temperature  # M155 S<n> (autoreport) sets it
        self.period = 0.0
        self._update_period()
        self.comm = INF               # the communication deadline
        self.ok = INF                 # the oldest line's ok deadline (while one is in flight)
        self.floor = 0.0              # a G4 in flight: no probe before its wait is over
        self.latency = 0.0            # recent ok latency (moving average)
        self.progress = 0.0           # the last ack, busy line or heat-up report
        self.probes = 0               # probes since the last progress
        self.probe_time = 0.0         # when the last probe went out
        self.talked = False           # a line came since the last probe
        self.consecutive = 0          # timeouts in a row without a word from the printer
        self.timeouts_total = 0       # for /metrics
        self.probes_total = 0

    def _update_period(self) -> None:
        self.period = communication_period(self._timeouts, self.busy_active,
                                           self._temp_interval)

    def next(self, in_flight: bool) -> float:
        """When a timeout is due: the communication deadline, or the ok deadline when it
        is sooner and lines are in flight."""
        if in_flight and self.ok < self.comm:
            return self.ok
        return self.comm

    def stop(self) -> None:
        self.comm = self.ok = INF

    # ---- what the printer says ---------------------------------------------------------------
    def heard(self, now: float) -> None:
        """Any line from the printer."""
        self.comm = now + self.period
        self.talked = True

    def idle_line(self) -> None:
        """A line while nothing is in flight: the printer is there."""
        self.consecutive = 0

    def busy(self, now: float, detect: bool) -> bool:
        """A busy line (`detect`: the busy protocol is on): the printer works on the oldest
        line. True when this is the first one (busy mode starts)."""
        first = detect and not self.busy_active
        if first:
            self.busy_active = True
            self._update_period()
        self.alive(now)
        return first

    def alive(self, now: float) -> None:
        """A busy line or a heat-up report: the oldest line is being processed."""
        self.ok = now + self._keepalive()
        self.comm = now + self.period
        self.progress = now
        self.consecutive = self.probes = 0

    def _keepalive(self) -> float:
        return communication_period(self._timeouts, self._serial.busy_protocol,
                                    self._temp_interval)

    def temperature_interval(self, seconds: float) -> None:
        """M155 S<n> went out to a printer that autoreports (0: back to polling)."""
        self._temp_interval = seconds if seconds else self._timeouts.temperature
        self._update_period()

    def reset(self) -> None:
        """The printer reset: it forgot M113, the next busy line is detected again."""
        self.busy_active = False
        self._update_period()

    # ---- the ok deadline ----------------------------------------------------------------
    def _base(self) -> float:
        base = 4.0 * self.latency
        return base if base > MIN_OK_TIMEOUT else MIN_OK_TIMEOUT

    def first_in_flight(self, now: float) -> None:
        """A line went out with nothing else in flight."""
        base = 4.0 * self.latency  # (_base() inlined: every line at ping-pong comes here)
        self.ok = now + (base if base > MIN_OK_TIMEOUT else MIN_OK_TIMEOUT)
        self.progress = now

    def out_of_band(self, now: float) -> None:
        """An emergency command went out with nothing in flight: its ok may take a while
        (M108 ends a wait first)."""
        self.ok = now + self.period
        self.progress = now

    def arm(self, now: float, long_running: bool) -> None:
        """The oldest line's ok deadline, from `now` (it just became the oldest, or a
        long-running line went out)."""
        base = self._base()
        if long_running:
            period = self.period
            if (not self.busy_active and self._serial.busy_protocol
                    and self._capabilities.get("BUSY_PROTOCOL")):
                period = communication_period(self._timeouts, True, self._temp_interval)
            if base < period:
                base = period
        d = now + base
        self.ok = d if d > self.floor else self.floor

    def dwell(self, now: float, wait: float, long_running: bool) -> None:
        """A G4 of `wait` seconds went out: no probe before it is over."""
        self.arm(now, long_running)
        end = self.ok + wait
        self.floor = max(self.floor, end)
        self.ok = max(self.ok, end)
        self.comm = max(self.comm, end)

    def acked(self, now: float, sent: float, remaining: bool, long_running: bool,
              was_long: bool) -> None:
        """Lines were acknowledged, the last of them sent at `sent`; `remaining`: others are
        still in flight (`long_running`: one of them is; `was_long`: one of the acknowledged
        ones may have been, its wait is no ok latency)."""
        self.comm = now + self.period
        self.consecutive = self.probes = 0
        if not was_long:
            self.latency += (now - sent - self.latency) * 0.125
        if remaining:
            self.progress = now
            self.arm(now, long_running)
        else:
            self.floor = 0.0

    def answered(self) -> None:
        """The printer answered (a resend request): no probe is unanswered."""
        self.consecutive = self.probes = 0

    def forget(self) -> None:
        """Nothing is in flight any more."""
        self.floor = 0.0
        self.probes = 0

    # ---- a passed deadline ----------------------------------------------------------------
    def timeout(self, now: float, in_flight: bool, limit: int) -> Timeout:
        """The deadline `next()` named has passed: what it means. `limit`: the timeouts in a
        row tolerated in the current state (0: unlimited)."""
        self.timeouts_total += 1
        if in_flight and self.probes and self.talked:
            # alive: the probe waits unread behind a long command
            ceiling = self._timeouts.ok_ceiling
            if ceiling and now - self.progress >= ceiling:
                return Timeout.CEILING
            again = self.probe_time + self.period
            if again > now:
                self.ok = self._talking(again)
                return Timeout.NOTHING
            return Timeout.PROBE
        self.consecutive += 1
        if limit and self.consecutive > limit:
            return Timeout.SILENT
        self.comm = now + self.period
        return Timeout.PROBE if in_flight else Timeout.TICKLE

    def _talking(self, again: float) -> float:
        """The next deadline while the printer keeps talking: the next probe, or the
        ceiling if that comes first."""
        ceiling = self._timeouts.ok_ceiling
        if ceiling and self.progress + ceiling < again:
            return self.progress + ceiling
        return again

    def probed(self, now: float, long_running: bool) -> None:
        """A probe went out: the next one backs off, or waits a communication period while
        the printer keeps talking."""
        self.probes += 1
        self.probes_total += 1
        self.probe_time = now
        talked, self.talked = self.talked, False
        if self.probes > 1 and talked:
            self.ok = self._talking(now + self.period)
            return
        self.arm(now, long_running)
        wait = now + BACKOFF * (1 << min(max(self.probes - 2, 0), 2))  # 0.5, 0.5, 1, 2, 2 s
        if self.ok < wait:
            self.ok = wait

    def dead_message(self, verdict: Timeout, oldest: Entry, now: float) -> str:
        """Why the link is declared dead, naming the line that went unanswered."""
        n, cmd, _, sent = oldest
        what = f"line {n} ({cmd.line})" if n >= 0 else cmd.line
        if verdict is Timeout.SILENT:
            why = f"{self.probes} probes unanswered: is it still connected and alive?"
        else:
            why = ("it kept talking but said nothing of it for serial.timeouts.ok_ceiling "
                   f"({self._timeouts.ok_ceiling:g} s)")
        ago = now - sent
        return f"The printer acknowledged nothing since {what} was sent {ago:.1f} s ago, {why}"
