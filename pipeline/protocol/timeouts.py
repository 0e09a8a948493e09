"""The protocol engine's timeout rules: the communication timeout period (busy protocol,
temperature interval + 1 s) and what a passed deadline means: another hello, a resend that
came without its ok, a lost ok probed for (one numbered line, backing off), an M105 tickle
of a silent printer, or the link declared dead after too many consecutive timeouts. Pure:
`now` is always passed in.

The rules work on the engine's own state, which `TimedEngine` names; the engine keeps its
deadlines itself because the hot path renews them on every line.
"""

from __future__ import annotations

from typing import Protocol

from pipeline.config.schema import SerialSpec, TimeoutSpec
from pipeline.protocol.events import EngineEvent, ErrorReason, LinkState, TickleRequested
from pipeline.protocol.window import InFlight

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
    _inflight: InFlight
    _probes: int
    _events: list[EngineEvent]

    def probe(self, now: float) -> None: ...

    def _no_resend_ok(self) -> None: ...

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
        e._no_resend_ok()  # the resend came without its ok: this long silence proves it
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
    entries = e._inflight.entries
    if limit and e._consecutive_timeouts > limit:
        if entries:
            n, cmd = entries[0][0], entries[0][1]
            what = f"line {n} ({cmd.line})" if n >= 0 else cmd.line
            e._fail(ErrorReason.TIMEOUT, f"The printer acknowledged nothing since {what} was "
                    f"sent {now - entries[0][3]:.1f} s ago, {e._probes} probes unanswered: "
                    "is it still connected and alive?", m112=False)
        else:
            e._fail(ErrorReason.TIMEOUT, "Too many consecutive timeouts, printer still "
                    "connected and alive?", m112=False)
        return
    e._deadline = now + e._period
    if entries:  # the oldest line's ok is overdue: lost, or the line itself was lost
        e.probe(now)
    elif e.printing:
        e._events.append(TickleRequested())
