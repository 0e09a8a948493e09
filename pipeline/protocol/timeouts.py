"""The protocol engine's timeout rules: the communication timeout period (busy protocol,
temperature interval + 1 s) and what a passed deadline means: another hello, a simulated
ok, a resend again, the end of a heat-up, an M105 tickle, or the link declared dead after
too many consecutive timeouts. Pure: `now` is always passed in.

The rules work on the engine's own state, which `TimedEngine` names; the engine keeps its
deadlines itself because the hot path renews them on every line.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from pipeline.config.schema import SerialSpec, TimeoutSpec
from pipeline.gcode import Command
from pipeline.protocol.events import EngineEvent, ErrorReason, LinkState, TickleRequested
from pipeline.protocol.resend import ResendTracker

INF = float("inf")


class TimedEngine(Protocol):
    """The engine state the timeout rules read and change (HostProtocol has it)."""

    serial: SerialSpec
    state: LinkState
    printing: bool
    long_running: bool
    heating: bool
    max_hellos: int
    timeouts_total: int
    _hellos: int
    _deadline: float
    _ok_deadline: float
    _resend_ok_deadline: float
    _period: float
    _consecutive_timeouts: int
    _inflight: deque[tuple[int, Command]]
    _resend: ResendTracker
    _events: list[EngineEvent]

    def _on_ok(self, now: float) -> None: ...

    def _say_hello(self, now: float, *, counted: bool) -> None: ...

    def _fail(self, reason: ErrorReason, message: str, *, m112: bool) -> None: ...


def communication_period(timeouts: TimeoutSpec, busy: bool, temperature_interval: float
                         ) -> float:
    """How long the printer may stay silent: the busy or plain communication timeout, but at
    least one temperature interval and a second (autoreport lines are the keep-alive)."""
    base = timeouts.communication_busy if busy else timeouts.communication
    return max(base, temperature_interval + 1.0)


def apply_timeout(e: TimedEngine, now: float) -> None:
    """A deadline has passed: apply the rules (events go to `e._events`)."""
    if e._resend_ok_deadline <= now:
        e._on_ok(now)  # the resend came without its ok: this long silence proves it
        return
    if e.state is LinkState.CONNECTING:
        if e._hellos < e.max_hellos:
            e._say_hello(now, counted=True)
        else:
            e._fail(ErrorReason.CONNECTION, "There was a timeout while trying to connect to "
                    "the printer", m112=False)
        return
    if e.state is not LinkState.OPERATIONAL:
        e._deadline = INF
        return
    e._consecutive_timeouts += 1
    e.timeouts_total += 1
    most = e.serial.max_consecutive_timeouts  # per state, 0 = unlimited
    limit = (most.long_running if e.long_running
             else most.printing if e.printing else most.idle)
    if limit and e._consecutive_timeouts > limit:
        e._fail(ErrorReason.TIMEOUT, "Too many consecutive timeouts, printer still connected "
                "and alive?", m112=False)
        return
    e._deadline = e._ok_deadline = now + e._period
    inflight = e._inflight
    if e._resend.active and inflight:
        num = inflight.popleft()[0]  # resend that line again
        if num >= 0:
            e._resend.requeue(num)
    elif e.long_running and not e.heating:
        pass  # waits for its ok up to the long-running limit
    else:  # the heatup is over, or the oldest line's ok was lost: free its slot
        if inflight:
            inflight.popleft()
        if e.heating:
            e.heating = e.long_running = False
        elif e.printing:
            e._events.append(TickleRequested())
