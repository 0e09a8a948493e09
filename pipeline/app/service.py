"""The service: what `printpipe print`, `printpipe send` and `printpipe serve` run. One nursery
holds the event bus's subscribers (config subscriptions, HTTP event streams, the MQTT bridge
when the config has `mqtt:`) and the printer session when one is connected; everything
publishes to one EventBus, and the edges drive it all through the `Control` that
`open_service` yields.

Startup is published once the subscribers listen; leaving `open_service` disconnects the
printer in order, publishes Shutdown (the last event) and gives running system commands their
grace period. A printer link that fails ends the session, never the service. Every print's
start and end (done, failed, cancelled) is logged with its file and duration.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import ModuleType

import trio

from pipeline.app.control import Control
from pipeline.app.mqtt.bridge import MqttService
from pipeline.config.reader import HostConfig
from pipeline.events.names import Event
from pipeline.fanout.bus import BusEvent, EventBus, Subscription
from pipeline.fanout.subscriptions import check_custom_events
from pipeline.hooks.registry import build_pipeline
from stages import BUILTIN_STAGES

#: Seconds the orderly disconnect at shutdown may take.
DISCONNECT_GRACE = 15.0

print_log = logging.getLogger("printpipe.print")
_PRINT_EVENTS = frozenset({Event.PRINT_STARTED, Event.PRINT_DONE, Event.PRINT_FAILED,
                           Event.PRINT_CANCELLED})


@asynccontextmanager
async def open_service(config: HostConfig, *,
                       builtins: Mapping[str, ModuleType] = BUILTIN_STAGES,
                       recover_file: str | None = None) -> AsyncIterator[Control]:
    """Build the pipeline, start the subscribers, publish Startup; on the way out disconnect,
    publish Shutdown and let system commands finish within the grace period. `recover_file`
    is a file outside the storage folder whose interrupted print may be resumed (the user
    named it: `printpipe recover FILE`)."""
    pipeline = build_pipeline(config.pipeline, builtins)
    bus = EventBus(clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        control = Control(config, pipeline, bus, nursery, builtins)
        check_custom_events(config.events, control.custom_events())
        await nursery.start(control.runner.run)
        # subscribed before Startup, so Shutdown reaches it however soon it comes
        nursery.start_soon(_log_prints, bus.subscribe("printlog", events=_PRINT_EVENTS, size=64))
        mqtt = MqttService(control, nursery)
        mqtt.start(config.mqtt)
        control.reloader.live("mqtt", mqtt.reconfigure)
        bus.publish(Event.STARTUP)
        control.recovery.named = recover_file
        await control.recovery.load()  # an interrupted print: logged, PrintInterrupted
        try:
            yield control
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(DISCONNECT_GRACE):
                    await control.disconnect()
                bus.publish(Event.SHUTDOWN)


async def _log_prints(sub: Subscription) -> None:
    """One log line for each print's start and end, until the bus closes after Shutdown."""
    async for ev in sub:
        log_print(ev)


def log_print(ev: BusEvent) -> None:
    p = ev.payload
    took = p.get("time")
    after = f" after {duration(took)}" if isinstance(took, int | float) else ""
    name = p.get("path") or p.get("name")
    if ev.name == Event.PRINT_STARTED:
        print_log.info("print started: %s", name)
    elif ev.name == Event.PRINT_DONE:
        print_log.info("print done: %s in %s", name, duration(took or 0))
    elif ev.name == Event.PRINT_CANCELLED:
        print_log.warning("print cancelled: %s%s", name, after)
    elif ev.name == Event.PRINT_FAILED:  # (Shutdown reaches every subscriber too)
        print_log.error("print failed: %s%s: %s", name, after, p.get("error") or p.get("reason"))


def duration(seconds: float | None) -> str:
    """"1:02:03" or "02:03"; "--:--" when unknown."""
    if seconds is None or math.isinf(seconds):
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"
