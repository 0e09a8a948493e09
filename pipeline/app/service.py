"""The service: what `printpipe print`, `printpipe send` and `printpipe serve` run. Two
nurseries: the printer's (its session, link, journal writer and connection keeper: nothing
else runs there) and, inside it, the services' (the event bus's subscribers: config
subscriptions, the print log, the MQTT bridge when the config has `mqtt:`; system commands;
`serve` adds the HTTP server). Every service task runs supervised (supervise.py): its failure
is logged in one line and it starts again, and never ends the printer's tasks. Everything
publishes to one EventBus, and the edges drive it all through the `Control` that
`open_service` yields.

Startup is published once the subscribers listen; leaving `open_service` stops a running print
(the cancel path, heaters off, journal kept: Control.shutdown), disconnects the printer in
order, publishes Shutdown (the last event) and gives running system commands their grace
period. A printer link that fails ends the session, never the service. Should the process go
down with a print running anyway (an exception, a second signal), the link's last act stops
the file and switches the heaters off (link/serial.py). Every print's start and end (done,
failed, cancelled) is logged with its file and duration.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from types import ModuleType

import trio

from pipeline.app.mqtt.bridge import MqttService
from pipeline.app.printers.control import Control
from pipeline.app.supervise import Supervisor, supervised
from pipeline.config.reader import HostConfig
from pipeline.events.names import Event
from pipeline.fanout.bus import BusEvent, EventBus, Subscription
from pipeline.fanout.subscriptions import check_custom_events
from pipeline.hooks.registry import build_pipeline
from stages import BUILTIN_STAGES

#: Seconds the orderly disconnect at shutdown may take (a print running is stopped first);
#: EXIT_GRACE when the service goes down by an exception. Then the link is cut, and its last
#: act gets the heaters off (link/serial.py's LAST_ACT).
DISCONNECT_GRACE = 15.0
EXIT_GRACE = 3.0
#: Seconds the printer gets to stop in order after SIGTERM (or serve's SIGINT): the print's
#: cancel, the heaters off, beforePrinterDisconnected. Then the link is cut (its last act:
#: LAST_ACT seconds at most), so the process ends within about 5 s whatever the printer does.
SIGNAL_GRACE = 2.0

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
    async with trio.open_nursery() as printer:  # the printer's tasks, and nothing else
        async with trio.open_nursery() as nursery:
            control = Control(config, pipeline, bus, printer, builtins,
                              services=Supervisor(nursery, "a system command"))
            check_custom_events(config.events, control.custom_events())
            await nursery.start(partial(supervised, "the event subscriptions",
                                        control.runner.run, started=True))
            # subscribed before Startup, so Shutdown reaches it however soon it comes
            nursery.start_soon(supervised, "the print log", _log_prints,
                               bus.subscribe("printlog", events=_PRINT_EVENTS, size=64))
            bridges = Supervisor(nursery, "the MQTT bridge", restart=True)
            mqtt = MqttService(control, bridges)  # type: ignore[arg-type]  # supervised
            mqtt.start(config.mqtt)
            control.reloader.live("mqtt", mqtt.reconfigure)
            bus.publish(Event.STARTUP)
            control.recovery.named = recover_file
            await control.recovery.load()  # an interrupted print: logged, PrintInterrupted
            grace = EXIT_GRACE  # going down by an exception (or a cancel): be quick
            try:
                yield control
                grace = DISCONNECT_GRACE
            finally:
                with trio.CancelScope(shield=True):
                    await control.shutdown(grace)
                    bus.publish(Event.SHUTDOWN)
        printer.cancel_scope.cancel()  # the connection keeper


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
