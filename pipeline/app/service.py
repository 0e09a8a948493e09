"""The service: what `printpipe print`, `printpipe send` and `printpipe serve` run. One nursery
holds the event bus's subscribers (config subscriptions, HTTP event streams, the MQTT bridge
when the config has `mqtt:`) and the printer session when one is connected; everything
publishes to one EventBus, and the edges drive it all through the `Control` that
`open_service` yields.

Startup is published once the subscribers listen; leaving `open_service` disconnects the
printer in order, publishes Shutdown (the last event) and gives running system commands their
grace period. A printer link that fails ends the session, never the service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import ModuleType

import trio

from pipeline.app.control import Control
from pipeline.app.mqtt.bridge import MqttService
from pipeline.config.reader import HostConfig
from pipeline.events.names import Event
from pipeline.fanout.bus import EventBus
from pipeline.fanout.subscriptions import check_custom_events
from pipeline.hooks.registry import build_pipeline
from stages import BUILTIN_STAGES

#: Seconds the orderly disconnect at shutdown may take.
DISCONNECT_GRACE = 15.0


@asynccontextmanager
async def open_service(config: HostConfig, *,
                       builtins: Mapping[str, ModuleType] = BUILTIN_STAGES,
                       ) -> AsyncIterator[Control]:
    """Build the pipeline, start the subscribers, publish Startup; on the way out disconnect,
    publish Shutdown and let system commands finish within the grace period."""
    pipeline = build_pipeline(config.pipeline, builtins)
    bus = EventBus(clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        control = Control(config, pipeline, bus, nursery, builtins)
        check_custom_events(config.events, control.custom_events())
        await nursery.start(control.runner.run)
        mqtt = MqttService(control, nursery)
        mqtt.start(config.mqtt)
        control.reloader.live("mqtt", mqtt.reconfigure)
        bus.publish(Event.STARTUP)
        control.recovery.load()  # an interrupted print: logged, PrintInterrupted
        try:
            yield control
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(DISCONNECT_GRACE):
                    await control.disconnect()
                bus.publish(Event.SHUTDOWN)
