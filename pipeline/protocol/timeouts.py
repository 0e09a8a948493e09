"""The protocol engine's timeout rules (a part of HostProtocol, kept in its own module):
the deadlines (communication, ok, resend-without-ok), the communication timeout period
(busy protocol, temperature interval + 1 s), and what a passed deadline means: another
hello, a simulated ok, a resend again, the end of a heat-up, an M105 tickle, or the link
declared dead after too many consecutive timeouts. Pure: `now` is always passed in.
"""

from __future__ import annotations

from pipeline.protocol.events import ErrorReason, LinkState, TickleRequested

INF = float("inf")
NO_EVENTS: tuple = ()


class TimeoutRules:
    """Mixed into HostProtocol; uses its state (`_inflight`, `_resend`, flags, deadlines)."""

    @property
    def deadline(self) -> float:
        """The time at which `handle_timeout` must be called if nothing arrives before."""
        d = self._deadline
        if self._resend_ok_deadline < d:
            d = self._resend_ok_deadline
        # OctoPrint applies the ok deadline only while printing; a lost ok of an idle command
        # then stalls forever when autoreport lines keep the link "alive". Any line in flight
        # that is not a long-running command gets it here.
        if (self._inflight and not self.long_running and not self.heating
                and self._ok_deadline < d):
            d = self._ok_deadline
        return d

    def _update_period(self) -> None:
        """The communication timeout: call whenever busy mode or the temperature interval
        changes (it is read on every line, so it is kept, not computed)."""
        t = self.serial.timeouts
        base = t.communication_busy if self.busy_active else t.communication
        self._period = max(base, self._temp_interval + 1.0)


    # ---- timeouts ----------------------------------------------------------------------------
    def handle_timeout(self, now: float) -> list:
        """Apply the timeout rules if `deadline` has passed; returns the events."""
        if now < self.deadline:
            return NO_EVENTS  # type: ignore[return-value]
        if self._resend_ok_deadline <= now:
            self._on_ok(now)
            return self._take_events()
        if self.state is LinkState.CONNECTING:
            if self._hellos < self.max_hellos:
                self._say_hello(now, counted=True)
            else:
                self._fail(ErrorReason.CONNECTION, "There was a timeout while trying to "
                           "connect to the printer", m112=False)
            return self._take_events()
        if self.state is not LinkState.OPERATIONAL:
            self._deadline = INF
            return NO_EVENTS  # type: ignore[return-value]
        self._consecutive_timeouts += 1
        self.timeouts_total += 1
        most = self.serial.max_consecutive_timeouts  # per state, 0 = unlimited
        limit = (most.long_running if self.long_running
                 else most.printing if self.printing else most.idle)
        if limit and self._consecutive_timeouts > limit:
            self._fail(ErrorReason.TIMEOUT, "Too many consecutive timeouts, printer still "
                       "connected and alive?", m112=False)
            return self._take_events()
        self._deadline = self._ok_deadline = now + self._period
        inflight = self._inflight
        if self._resend.active and inflight:
            num = inflight.popleft()[0]  # resend that line again
            if num >= 0:
                self._resend.requeue(num)
        elif self.long_running and not self.heating:
            pass  # waits for its ok up to the long-running limit
        else:  # the heatup is over, or the oldest line's ok was lost: free its slot
            if inflight:
                inflight.popleft()
            if self.heating:
                self.heating = self.long_running = False
            elif self.printing:
                self._events.append(TickleRequested())
        return self._take_events()
