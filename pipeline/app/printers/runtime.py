"""One printer's own nursery: what runs for it and for nothing else. Two nurseries: the
printer's (its session, link, journal writer and connection keeper) and, inside it, its
services' (its event bus's subscribers: config subscriptions, the print log and history;
system commands). Every service task runs supervised (supervise.py): its failure is logged in
one line naming the printer and it starts again, and never ends the printer's tasks. Its
control (control.py) is what `open_printer_runtime` yields.

`announce` publishes Startup once the service's own subscribers listen and loads the crash
journal; leaving `open_printer_runtime` stops a running print (the cancel path, heaters off,
journal kept), disconnects the printer in order, publishes Shutdown (the last event) and gives
running system commands their grace period. Every print's start and end (done, failed,
cancelled) is logged with its file and duration, and the printer's name when there are
several.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from types import ModuleType

import trio

from pipeline.app.printers.control import MetricsSource, PrinterControl
from pipeline.app.supervise import Supervisor, supervised
from pipeline.config.printers import DEFAULT
from pipeline.config.reader import HostConfig
from pipeline.events.names import Event
from pipeline.fanout.bus import BusEvent, EventBus, Subscription
from pipeline.fanout.subscriptions import check_custom_events
from pipeline.files.history import Outcome, PrintHistory, PrintRecord
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

log = logging.getLogger("printpipe.service")
print_log = logging.getLogger("printpipe.print")
_PRINT_EVENTS = frozenset({Event.PRINT_STARTED, Event.PRINT_DONE, Event.PRINT_FAILED,
                           Event.PRINT_CANCELLED})


@asynccontextmanager
async def open_printer_runtime(config: HostConfig, *,
                               builtins: Mapping[str, ModuleType] = BUILTIN_STAGES,
                               history: PrintHistory | None = None,
                               metrics_sources: Mapping[str, MetricsSource] | None = None,
                               recover_file: str | None = None,
                               failure: str | None = None) -> AsyncIterator[PrinterControl]:
    """Build the printer's pipeline, bus and control, start its subscribers; the caller
    attaches what else listens and then calls `announce`. On the way out disconnect, publish
    Shutdown and let system commands finish within the grace period."""
    pipeline = build_pipeline(config.pipeline, builtins)
    label = "" if config.name == DEFAULT else f"printer {config.name}: "
    bus = EventBus(clock=trio.current_time, label=label)
    async with trio.open_nursery() as printer:  # the printer's tasks, and nothing else
        async with trio.open_nursery() as nursery:
            control = PrinterControl(config, pipeline, bus, printer, builtins,
                                     services=Supervisor(nursery, f"{label}a system command"),
                                     history=history, metrics_sources=metrics_sources,
                                     recover_file=recover_file, failure=failure)
            check_custom_events(config.events, control.custom_events())
            await nursery.start(partial(supervised, f"{label}the event subscriptions",
                                        control.runner.run, started=True))
            # subscribed before Startup, so Shutdown reaches it however soon it comes
            nursery.start_soon(supervised, f"{label}the print log", _log_prints,
                               bus.subscribe("printlog", events=_PRINT_EVENTS, size=64), label)
            await nursery.start(partial(supervised, f"{label}the timelapse",
                                        control.camera.run, started=True))
            if history is not None:
                await nursery.start(partial(supervised, f"{label}the print history",
                                            record_prints, control, history, started=True))
            grace = EXIT_GRACE  # going down by an exception (or a cancel): be quick
            try:
                yield control
                grace = DISCONNECT_GRACE
            finally:
                with trio.CancelScope(shield=True):
                    await control.shutdown(grace)
                    bus.publish(Event.SHUTDOWN)
        printer.cancel_scope.cancel()  # the connection keeper


async def announce(control: PrinterControl) -> None:
    """Publish Startup (every subscriber listens by now), then load the crash journal: an
    interrupted print is logged and published (PrintInterrupted)."""
    control.publish(Event.STARTUP)
    await control.recovery.load()


async def record_prints(control: PrinterControl, history: PrintHistory, *,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Adds every print's end (PrintDone, PrintFailed) to the history, off the event loop."""
    sub = control.subscribe("history", events=frozenset(_ENDS), size=64)
    task_status.started()
    try:
        async for ev in sub:
            if ev.name not in _ENDS:  # Shutdown
                continue
            p = ev.payload
            reason = p.get("reason")
            outcome = (Outcome.SUCCESS if ev.name == Event.PRINT_DONE
                       else Outcome.CANCELLED if reason == "cancelled" else Outcome.FAILURE)
            rec = PrintRecord(str(p.get("path")), outcome, float(p.get("time") or 0.0),
                              time.time(), str(p.get("origin") or "local"), p.get("user"))
            try:
                await trio.to_thread.run_sync(history.record, rec)
            except OSError as exc:  # a full or read-only card must not stop the service
                log.error("could not write the print history %s: %s", history.path, exc)
    finally:
        sub.close()


_ENDS = (Event.PRINT_DONE, Event.PRINT_FAILED)


async def _log_prints(sub: Subscription, label: str = "") -> None:
    """One log line for each print's start and end, until the bus closes after Shutdown."""
    async for ev in sub:
        log_print(ev, label)


def log_print(ev: BusEvent, label: str = "") -> None:
    p = ev.payload
    took = p.get("time")
    after = f" after {duration(took)}" if isinstance(took, int | float) else ""
    name = p.get("path") or p.get("name")
    if ev.name == Event.PRINT_STARTED:
        print_log.info("%sprint started: %s", label, name)
    elif ev.name == Event.PRINT_DONE:
        print_log.info("%sprint done: %s in %s", label, name, duration(took or 0))
    elif ev.name == Event.PRINT_CANCELLED:
        print_log.warning("%sprint cancelled: %s%s", label, name, after)
    elif ev.name == Event.PRINT_FAILED:  # (Shutdown reaches every subscriber too)
        print_log.error("%sprint failed: %s%s: %s", label, name, after,
                        p.get("error") or p.get("reason"))


def duration(seconds: float | None) -> str:
    """"1:02:03" or "02:03"; "--:--" when unknown."""
    if seconds is None or math.isinf(seconds):
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"
