"""The service: what `printpipe print` and `printpipe serve` run. One nursery holds the event
bus's subscribers (config subscriptions, HTTP event streams), the printer session when one is
connected, and the file selection; everything publishes to one EventBus.

Startup is published once the subscribers listen; leaving `open_service` disconnects the
printer in order, publishes Shutdown (the last event) and gives running system commands their
grace period. A printer link that fails ends the session, never the service.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any, AsyncIterator, Callable, Mapping

import attrs
import trio

from pipeline.fanout.bus import EventBus
from pipeline.hooks.chain import Pipeline
from pipeline.config.reader import HostConfig
from pipeline.errors import ConfigError, HostError
from pipeline.events.names import Event
from pipeline.phases import Phase
from pipeline.events.placeholders import FiringContext
from pipeline.session.jobs import JobStateError
from pipeline.hooks.registry import build_pipeline
from pipeline.link.printer import Printer, open_printer
from pipeline.fanout.subscriptions import SubscriptionRunner, check_custom_events, now_iso

log = logging.getLogger("printpipe.service")


@attrs.frozen
class Selection:
    """The file selected for printing: `path` as events and the API show it, `disk` on disk."""

    name: str
    path: str
    disk: str
    size: int
    origin: str = "local"

    def payload(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "origin": self.origin}


class Service:
    def __init__(self, config: HostConfig, pipeline: Pipeline, bus: EventBus,
                 nursery: trio.Nursery, builtins: Mapping[str, ModuleType] | None = None) -> None:
        self.config = config
        self.builtins = builtins or {}
        #: Re-reads the configuration (set by `printpipe serve`; raises ConfigErrors).
        self.loader: Callable[[], HostConfig] | None = None
        self.pipeline = pipeline
        self.bus = bus
        self.nursery = nursery
        self.printer: Printer | None = None
        self.selected: Selection | None = None
        #: Runtime heater offsets (the API's), kept across reconnects.
        self.temperature_offsets: dict[str, float] = {}
        self.last_error: str | None = None
        self.runner = SubscriptionRunner(config.events, bus, send_gcode=self.send_gcode,
                                         context=self.firing_context)
        self._stop: trio.Event | None = None
        self._ended: trio.Event | None = None

    # ---- events ---------------------------------------------------------------------------
    def publish(self, event: Event | str, payload: dict[str, Any] | None = None) -> None:
        self.bus.publish(event, payload)

    def custom_events(self) -> list[str]:
        return _custom_events(self.pipeline)

    def firing_context(self) -> FiringContext:
        sel = self.selected
        core = self.printer.core if self.printer else None
        job = core.jobs.job if core else None
        return FiringContext(
            current_z=core.tracker.z if core else None,
            filename=sel.name if sel else None, filepath=sel.path if sel else None,
            origin=sel.origin if sel else None,
            progress=job.progress * 100 if job is not None else None, now=now_iso())

    def send_gcode(self, lines: list[str], tags: frozenset[str]) -> bool:
        printer = self.printer
        if printer is None or not printer.core.operational:
            return False
        printer.send(lines, tags=tags)
        return True

    def reload(self) -> bool:
        """Re-read the config. A broken one raises (ConfigErrors) and changes nothing. The
        new pipeline, scripts and serial settings apply from the next connect; subscriptions
        at once. Returns whether a printer session still runs the old settings."""
        if self.loader is None:
            raise ConfigError("this service was not started from a config file")
        config = self.loader()
        pipeline = build_pipeline(config.pipeline, self.builtins)
        check_custom_events(config.events, _custom_events(pipeline))
        self.config, self.pipeline = config, pipeline
        self.runner.update(config.events)
        self.publish(Event.SETTINGS_UPDATED)
        return self.printer is not None

    # ---- the printer session --------------------------------------------------------------
    @property
    def connecting(self) -> bool:
        return self.printer is None and self._ended is not None and not self._ended.is_set()

    async def connect(self) -> Printer:
        """Open the printer session (a task of the service); raises LinkBroken on failure,
        JobStateError while another connect is still under way."""
        if self.printer is not None:
            return self.printer
        if self.connecting:
            raise JobStateError("the printer is connecting")
        self._stop, self._ended = trio.Event(), trio.Event()
        return await self.nursery.start(self._session, self._stop, self._ended)

    async def _session(self, stop: trio.Event, ended: trio.Event, *,
                       task_status: trio.TaskStatus[Printer] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with open_printer(self.config, self.pipeline,
                                    listeners=[self.publish]) as printer:
                printer.core.set_temperature_offsets(self.temperature_offsets)
                self.printer, started = printer, True
                self.last_error = None
                task_status.started(printer)
                async with trio.open_nursery() as watch:
                    watch.start_soon(_cancel_when, stop, watch.cancel_scope)
                    watch.start_soon(_cancel_when, printer.link.closed, watch.cancel_scope)
                self.last_error = printer.core.error
        except HostError as exc:
            if not started:
                raise
            self.last_error = str(exc)
            log.error("printer session ended: %s", exc)
        finally:
            self.printer = None
            ended.set()

    async def disconnect(self) -> None:
        """Orderly: beforePrinterDisconnected runs, the queue drains (bounded), link closes."""
        if self._stop is not None and self._ended is not None and self.printer is not None:
            self._stop.set()
            await self._ended.wait()

    def set_temperature_offsets(self, offsets: dict[str, float]) -> None:
        self.temperature_offsets.update(offsets)
        if self.printer is not None:
            self.printer.core.set_temperature_offsets(self.temperature_offsets)

    # ---- files and jobs -------------------------------------------------------------------
    def select(self, disk: str, path: str | None = None, name: str | None = None) -> Selection:
        sel = Selection(name or os.path.basename(disk), path or os.path.basename(disk), disk,
                        os.path.getsize(disk))
        self.selected = sel
        self.publish(Event.FILE_SELECTED, sel.payload())
        return sel

    def deselect(self) -> None:
        if self.selected is not None:
            self.selected = None
            self.publish(Event.FILE_DESELECTED)

    async def start_print(self, user: str | None = None) -> None:
        """Print the selected file; JobStateError when no file or no ready printer."""
        printer, sel = self.printer, self.selected
        if sel is None:
            raise JobStateError("no file is selected")
        if printer is None or not printer.core.operational:
            raise JobStateError("the printer is not connected")
        if printer.core.jobs.active:
            raise JobStateError("a print is already running")
        await printer.start_print(sel.disk, name=sel.name, display_path=sel.path, user=user)


def _custom_events(pipeline: Pipeline) -> list[str]:
    return [f"plugin_{st.id}_{name}" for st, names in
            pipeline.call(Phase.EVENTS_REGISTER_CUSTOM_EVENTS)
            for name in (names or ()) if isinstance(name, str)]


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


@asynccontextmanager
async def open_service(config: HostConfig, *, builtins: Mapping[str, ModuleType] | None = None
                       ) -> AsyncIterator[Service]:
    """Build the pipeline, start the subscribers, publish Startup; on the way out disconnect,
    publish Shutdown and let system commands finish within the grace period."""
    if builtins is None:
        from stages import BUILTIN_STAGES as builtins  # the edge may know stages/
    pipeline = build_pipeline(config.pipeline, builtins)
    bus = EventBus(clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        service = Service(config, pipeline, bus, nursery, builtins)
        check_custom_events(config.events, service.custom_events())
        await nursery.start(service.runner.run)
        bus.publish(Event.STARTUP)
        try:
            yield service
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(15):
                    await service.disconnect()
                bus.publish(Event.SHUTDOWN)
