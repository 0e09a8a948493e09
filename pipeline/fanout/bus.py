"""The event bus: one publisher side that never blocks or fails, and per-subscriber bounded
queues (trio memory channels). A subscriber that does not keep up loses events (counted, and
logged once per burst) instead of stalling the serial link. Each subscriber gets events in
publish order. Events published before Startup are held and delivered right after it;
Shutdown is the last event any subscriber receives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import attrs
import trio

log = logging.getLogger("printpipe.events")

STARTUP = "Startup"
SHUTDOWN = "Shutdown"


@attrs.frozen
class BusEvent:
    name: str
    payload: dict[str, Any]
    time: float


@attrs.frozen
class SubscriberStats:
    name: str
    delivered: int
    dropped: int
    queued: int


class Subscription:
    """One subscriber: iterate it (`async for ev in sub`) or call `receive()`."""

    def __init__(self, bus: EventBus, name: str, events: frozenset[str] | None,
                 size: int) -> None:
        self.bus = bus
        self.name = name
        self.events = events
        self._send, self._recv = trio.open_memory_channel[BusEvent](size)
        self.delivered = 0
        self.dropped = 0
        self._in_burst = False

    def _offer(self, ev: BusEvent) -> None:
        if self.events is not None and ev.name not in self.events and ev.name != SHUTDOWN:
            return
        try:
            self._send.send_nowait(ev)
        except trio.WouldBlock:
            self.dropped += 1
            if not self._in_burst:
                self._in_burst = True
                log.warning("%sevent subscriber %r is not keeping up: dropping events "
                            "(first dropped: %s)", self.bus.label, self.name, ev.name)
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.dropped += 1
            return
        self._in_burst = False
        self.delivered += 1

    async def receive(self) -> BusEvent:
        return await self._recv.receive()

    def receive_nowait(self) -> BusEvent:
        """The next event if one is waiting; raises trio.WouldBlock otherwise."""
        return self._recv.receive_nowait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> BusEvent:
        try:
            ev = await self._recv.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        return ev

    def close(self) -> None:
        self.bus.unsubscribe(self)
        self._send.close()

    def stats(self) -> SubscriberStats:
        return SubscriberStats(self.name, self.delivered, self.dropped,
                               self._recv.statistics().current_buffer_used)


class EventBus:
    def __init__(self, clock: Any = None, label: str = "") -> None:
        """`label` starts its log lines (`printer NAME: ` when the service has several)."""
        self.label = label
        self._order: list[Subscription] = []  # subscription order is delivery order
        self._held: list[BusEvent] | None = []  # until Startup
        self._closed = False
        self._clock = clock or (lambda: 0.0)

    def subscribe(self, name: str, *, events: Iterable[str] | None = None,
                  size: int = 256) -> Subscription:
        sub = Subscription(self, name, frozenset(events) if events is not None else None,
                           max(1, size))
        self._order.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._order:
            self._order.remove(sub)

    def publish(self, name: str, payload: dict[str, Any] | None = None) -> None:
        """Never blocks, never raises: slow subscribers lose the event instead."""
        if self._closed:
            return
        ev = BusEvent(str(name), dict(payload or {}), self._clock())
        if self._held is not None and ev.name != STARTUP:
            self._held.append(ev)
            return
        if ev.name == STARTUP and self._held is not None:
            held, self._held = self._held, None
            self._deliver(ev)
            for h in held:
                self._deliver(h)
            return
        self._deliver(ev)
        if ev.name == SHUTDOWN:
            self._closed = True
            for sub in list(self._order):
                sub._send.close()

    def _deliver(self, ev: BusEvent) -> None:
        for sub in self._order:
            sub._offer(ev)

    def statistics(self) -> list[SubscriberStats]:
        return [s.stats() for s in self._order]
