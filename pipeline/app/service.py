"""The service above the printers: what `printpipe print`, `send`, `recover` and `serve` run.
It owns the printers by name (each one's own nursery and control: printers/runtime.py), the
one MQTT connection (every printer under its own base topic: mqtt/hub.py), the reload of the
whole config, and the hooks through which `serve` gives each printer its HTTP app. Code that
acts on a printer receives that printer's control from here; nothing looks a printer up
globally.

Isolation: each printer runs as one task of the service's nursery. A failure that escapes a
printer's nursery (a printer session's own failures already end only that session) ends that
printer's task only: it is logged with the printer's name, the printer is started again after
a back-off (supervise.py's delays), and meanwhile its API answers why; the other printers
print on. A reload that adds a printer starts only that one, one that removes a printer stops
only that one; a changed printer applies what it can live (reload.py), the others are not
touched.

Leaving `open_service` stops every printer at once (each: a running print stops, the printer
disconnects in order, Shutdown is its bus's last event).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType, ModuleType

import trio

from pipeline.app.mqtt.hub import MqttHub
from pipeline.app.mqtt.topics import Topics
from pipeline.app.paths import state_folder
from pipeline.app.printers.control import MetricsSource, PrinterControl
from pipeline.app.printers.runtime import (
    DISCONNECT_GRACE,
    EXIT_GRACE,
    SIGNAL_GRACE,
    announce,
    duration,
    log_print,
    open_printer_runtime,
)
from pipeline.app.reload import ServiceReload
from pipeline.app.supervise import RESTART_MAX, RESTART_MIN, Supervisor, what_failed
from pipeline.config.printers import ServiceConfig
from pipeline.config.reader import HostConfig
from pipeline.config.schema import SourceLocation
from pipeline.errors import ConfigError
from pipeline.fanout.subscriptions import check_custom_events
from pipeline.files.history import PrintHistory
from pipeline.hooks.host_phases import custom_event_names
from pipeline.hooks.registry import build_pipeline
from stages import BUILTIN_STAGES

__all__ = ["DISCONNECT_GRACE", "EXIT_GRACE", "SIGNAL_GRACE", "Service", "ServiceReload",
           "duration", "log_print", "one_printer", "open_service", "open_services"]

log = logging.getLogger("printpipe.service")

#: Called with a printer's control once it runs (attach) and as it stops (detach).
Hook = Callable[[PrinterControl], None]


def one_printer(config: HostConfig) -> ServiceConfig:
    """The service config of a single printer's config."""
    return ServiceConfig(config.path, MappingProxyType({config.name: config}), config.http,
                         config.mqtt, config.storage,
                         MappingProxyType({config.name: SourceLocation(config.path, 1)}))


class Service:
    def __init__(self, config: ServiceConfig, nursery: trio.Nursery,
                 builtins: Mapping[str, ModuleType], *,
                 loader: Callable[[], ServiceConfig] | None = None,
                 histories: bool = False, recover_file: str | None = None) -> None:
        """`histories`: each printer keeps its print history (`printpipe serve`)."""
        self.config = config
        self._nursery = nursery
        self._builtins = builtins
        self._loader = loader
        self._histories = histories
        self._recover_file = recover_file
        #: The running printers by name, in the config's order.
        self.printers: dict[str, PrinterControl] = {}
        #: Why a printer is not running (its tasks failed; it starts again soon), by name.
        self.failures: dict[str, str] = {}
        self._stops: dict[str, trio.Event] = {}
        self._done: dict[str, trio.Event] = {}
        self._attach: list[tuple[Hook, Hook]] = [(self._attach_mqtt, self._detach_mqtt)]
        self._metrics: dict[str, dict[str, MetricsSource]] = {}
        #: The one MQTT connection, every printer bridged over it under its own base topic.
        self.mqtt = MqttHub(Supervisor(nursery, "the MQTT bridge",  # type: ignore[arg-type]
                                       restart=True), config.path, self._metrics)
        self.mqtt.printer_bases = printer_availability(config)
        self.mqtt.start(config.mqtt)
        #: Seconds each printer gets to disconnect in order when the service stops.
        self.grace = DISCONNECT_GRACE

    @property
    def default(self) -> PrinterControl | None:
        """The printer `/api/...` without a prefix serves (config.default), if running."""
        name = self.config.default
        return None if name is None else self.printers.get(name)

    def printer(self, name: str | None = None) -> PrinterControl:
        """The printer named `name` (None: the default one); ConfigError naming the printers
        when there is no such printer."""
        name = name or self.config.default
        if name is None or name not in self.config.printers:
            known = ", ".join(self.config.printers)
            what = f"no printer named {name!r}" if name else "no default printer"
            raise ConfigError(f"{what}: the printers are {known}")
        control = self.printers.get(name)
        if control is None:
            raise ConfigError(f"printer {name!r} is not running: "
                              f"{self.failures.get(name, 'starting')}")
        return control

    def on_printer(self, attach: Hook, detach: Hook) -> None:
        """Call `attach(control)` for every printer that runs (now and later) and `detach`
        as it stops."""
        self._attach.append((attach, detach))
        for control in self.printers.values():
            attach(control)

    # ---- the printers' tasks --------------------------------------------------------------
    async def start_printer(self, name: str) -> PrinterControl:
        """Start printer `name` of the config in its own task; its control once it runs."""
        stop, done = trio.Event(), trio.Event()
        self._stops[name], self._done[name] = stop, done
        control: PrinterControl = await self._nursery.start(self._run_printer, name, stop, done)
        return control

    def stop_printer(self, name: str) -> None:
        """Stop printer `name` (a print running stops; it disconnects in order)."""
        stop = self._stops.pop(name, None)
        if stop is not None:
            stop.set()

    async def _run_printer(self, name: str, stop: trio.Event, done: trio.Event, *,
                           task_status: trio.TaskStatus[PrinterControl]) -> None:
        """Run printer `name` until `stop`; a failure before its first start is raised to
        the caller, a later one restarts it after the back-off."""
        status = _Started(task_status)
        failure: str | None = None
        delay = RESTART_MIN
        try:
            while not stop.is_set():
                began = trio.current_time()
                try:
                    await self._run_once(name, stop, failure, status)
                    return
                except Exception as exc:  # the boundary: one printer's failure is its own
                    if not status.done:
                        raise
                    if trio.current_time() - began >= RESTART_MAX:
                        delay = RESTART_MIN
                    failure = f"the printer's tasks failed: {what_failed(exc)}"
                    self.failures[name] = failure
                    log.error("printer %s: %s; starting it again in %g s (the other printers "
                              "print on)", name, failure, delay)
                    log.debug("printer %s failed", name, exc_info=exc)
                with trio.move_on_after(delay):
                    await stop.wait()
                delay = min(delay * 2, RESTART_MAX)
        finally:
            self.failures.pop(name, None)
            done.set()

    async def _start_added(self, name: str) -> None:
        """A printer a reload added: one that cannot start is logged, the service goes on."""
        try:
            await self.start_printer(name)
        except Exception as exc:  # noqa: BLE001 (the boundary: a new printer's failure is its own)
            log.error("printer %s: could not start: %s", name, what_failed(exc))

    async def _run_once(self, name: str, stop: trio.Event, failure: str | None,
                        task_status: _Started) -> None:
        config = self.config.printers[name]
        history = PrintHistory(state_folder(config)) if self._histories else None
        metrics = self._metrics.setdefault(name, {})
        async with open_printer_runtime(config, builtins=self._builtins, history=history,
                                        metrics_sources=metrics, failure=failure,
                                        recover_file=self._recover_file) as control:
            self.printers[name] = control
            try:
                for attach, _detach in list(self._attach):
                    attach(control)
                await announce(control)
                self.failures.pop(name, None)
                task_status.started(control)
                await stop.wait()
                await control.shutdown(self.grace)
            finally:
                if not stop.is_set():  # a failure ends it: its API says so until it is known
                    self.failures.setdefault(name, "its tasks failed and are stopping")
                if self.printers.get(name) is control:
                    del self.printers[name]
                # every hook: one registered after this start (on_printer) attached it too
                for _attach, detach in list(self._attach):
                    detach(control)

    def _attach_mqtt(self, control: PrinterControl) -> None:
        """Each printer is bridged over the service's MQTT connection under its own base."""
        self.mqtt.attach(control)
        apply = self.mqtt.reconfigure(control)
        control.reloader.live("mqtt", apply)
        control.reloader.live("mqtt_base", apply)

    def _detach_mqtt(self, control: PrinterControl) -> None:
        self.mqtt.detach(control)

    # ---- the whole service ------------------------------------------------------------------
    def stop_for_exit(self) -> bool:
        """Every running print stops at once; whether one ran."""
        stopped = [control.stop_for_exit() for control in self.printers.values()]
        return any(stopped)

    async def shutdown(self, grace: float) -> None:
        """Every printer stops its print and disconnects in order, all at once."""
        async with trio.open_nursery() as nursery:
            for control in list(self.printers.values()):
                nursery.start_soon(control.shutdown, grace)

    async def cut(self, bound: float) -> None:
        """Close every printer's link at once (each one's last act: heaters off)."""
        async with trio.open_nursery() as nursery:
            for control in list(self.printers.values()):
                nursery.start_soon(control.cut, bound)

    async def stop_all(self) -> None:
        """Stop every printer and wait until each has ended."""
        for name in list(self._stops):
            self.stop_printer(name)
        for done in list(self._done.values()):
            await done.wait()
        await self.mqtt.close()

    def reload(self) -> ServiceReload:
        """Re-read the config. A broken one raises (ConfigErrors) and changes nothing. Each
        printer still in it applies its part (PrinterControl.reload); a printer added starts,
        one removed stops, the others are not touched."""
        if self._loader is None:
            raise ConfigError("this service was not started from a config file")
        new = self._loader()
        for config in new.printers.values():  # all checked before anything changes
            pipeline = build_pipeline(config.pipeline, self._builtins)
            check_custom_events(config.events, custom_event_names(pipeline))
        old, self.config = self.config, new
        self.mqtt.printer_bases = printer_availability(new)
        reports = {name: control.reload(new.printers[name])
                   for name, control in list(self.printers.items()) if name in new.printers}
        removed = tuple(name for name in old.printers if name not in new.printers)
        added = tuple(name for name in new.printers if name not in old.printers)
        for name in removed:
            log.info("reload: printer %s removed: stopping it", name)
            self.stop_printer(name)
        for name in added:
            log.info("reload: printer %s added: starting it", name)
            self._nursery.start_soon(self._start_added, name)
        return ServiceReload(reports, added, removed)


@asynccontextmanager
async def open_services(config: ServiceConfig, *,
                        builtins: Mapping[str, ModuleType] = BUILTIN_STAGES,
                        loader: Callable[[], ServiceConfig] | None = None,
                        histories: bool = False,
                        recover_file: str | None = None) -> AsyncIterator[Service]:
    """Start every printer of `config` (each announced: Startup, the crash journal); on the way
    out stop them all (a print running stops, each disconnects in order)."""
    async with trio.open_nursery() as nursery:
        service = Service(config, nursery, builtins, loader=loader, histories=histories,
                          recover_file=recover_file)
        try:
            for name in config.printers:
                await service.start_printer(name)
            try:
                yield service
            except BaseException:
                service.grace = EXIT_GRACE  # going down by an exception: be quick
                raise
        finally:
            with trio.CancelScope(shield=True):
                await service.stop_all()


@asynccontextmanager
async def open_service(config: HostConfig, *,
                       builtins: Mapping[str, ModuleType] = BUILTIN_STAGES,
                       recover_file: str | None = None) -> AsyncIterator[PrinterControl]:
    """A service of the one printer `config` describes (`printpipe print`, `send`,
    `recover`): its control. `recover_file` is a file outside the storage folder whose
    interrupted print may be resumed (the user named it: `printpipe recover FILE`)."""
    async with open_services(one_printer(config), builtins=builtins,
                             recover_file=recover_file) as service:
        yield service.printer(config.name)


class _Started:
    """A printer's task_status: reports its first start only (a restart reports nothing)."""

    def __init__(self, status: trio.TaskStatus[PrinterControl]) -> None:
        self._status = status
        self.done = False

    def started(self, value: PrinterControl) -> None:
        if not self.done:
            self.done = True
            self._status.started(value)


def printer_availability(config: ServiceConfig) -> frozenset[str]:
    """Where each printer of `config` says over MQTT whether it runs (`<its base>mqtt`)."""
    return frozenset(Topics(c.mqtt_base).availability for c in config.printers.values()
                     if c.mqtt_base)
