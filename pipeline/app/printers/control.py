"""One printer's control surface: the one object the edges (its HTTP API, the CLI, MQTT,
event subscriptions) drive that printer through. Built complete by its constructor with
everything that is the printer's own (its bus, crash journal, subscriptions, history, session:
session.py); nothing is set on it from outside. It owns the file selection and the runtime
temperature offsets (both outlive a session), starts, pauses, resumes and cancels prints,
queues commands and scripts, applies this printer's part of a reload, and answers the
printer's state as frozen snapshots (snapshot.py).

Anything queued through it wakes the serial link by itself (the host core does). A request
the printer's state does not allow raises JobStateError (the HTTP API answers 409).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

import attrs
import trio

from pipeline.app.paths import config_relative, state_folder
from pipeline.app.printers import snapshot
from pipeline.app.printers.recovery import Recovery
from pipeline.app.printers.sdcard import SdControl
from pipeline.app.printers.session import PrinterSession, offline_core, render_script
from pipeline.app.printers.status import Selection, Status
from pipeline.app.reload import Reloader, ReloadReport
from pipeline.app.supervise import Supervisor
from pipeline.app.system import run_system_command
from pipeline.camera.recorder import Camera
from pipeline.config.printers import DEFAULT
from pipeline.config.reader import HostConfig
from pipeline.errors import CommandRefused
from pipeline.events.names import Event
from pipeline.events.placeholders import FiringContext
from pipeline.fanout.bus import EventBus, Subscription
from pipeline.fanout.subscriptions import SubscriptionRunner, check_custom_events
from pipeline.files.history import PrintHistory
from pipeline.hooks.chain import Pipeline
from pipeline.hooks.host_phases import SystemCommand, custom_event_names, system_commands
from pipeline.hooks.registry import build_pipeline
from pipeline.link.printer import Printer, open_printer
from pipeline.session.core import HostCore, SessionStatistics
from pipeline.session.jobs import JobResult, JobStateError
from pipeline.session.rules import shown_line
from pipeline.session.states import PrinterState

log = logging.getLogger("printpipe.service")

#: Seconds a restart waits for the cancel of the paused print to finish.
RESTART_WAIT = 30.0
#: The largest runtime temperature offset, either way (°C): OctoPrint's limit.
MAX_TEMPERATURE_OFFSET = 50.0

#: A source of more samples for /metrics: (name, kind, help, value) each.
MetricsSource = Callable[[], list[tuple[str, str, str, float]]]


class PrinterControl:
    def __init__(self, config: HostConfig, pipeline: Pipeline, bus: EventBus,
                 nursery: trio.Nursery, builtins: Mapping[str, ModuleType], *,
                 services: trio.Nursery | Supervisor | None = None,
                 history: PrintHistory | None = None,
                 metrics_sources: Mapping[str, MetricsSource] | None = None,
                 recover_file: str | None = None, failure: str | None = None) -> None:
        """`nursery` holds the printer's tasks (its session, the connection keeper);
        `services` the rest (system commands), supervised. `history`: the print history
        (`printpipe serve` keeps one per printer); `metrics_sources`: more /metrics samples
        by source (the service's MQTT bridge fills it); `recover_file`: a file outside the
        storage folder whose interrupted print may be resumed; `failure`: what ended this
        printer's previous run (its status shows it until it connects)."""
        #: The printer's name (`default` for a config's single `printer:` section).
        self.name = config.name
        #: What its log lines start with: its name when it is not the single default.
        self.label = "" if config.name == DEFAULT else f"printer {config.name}: "
        self.config = config
        self.pipeline = pipeline
        self.bus = bus
        self.history = history
        self.metrics_sources: Mapping[str, MetricsSource] = (
            metrics_sources if metrics_sources is not None else {})
        self.selected: Selection | None = None
        #: The selection the last print was started from: that job is what the API shows
        #: until another file is selected (or this one again, which starts afresh).
        self._job_selection: Selection | None = None
        #: Runtime heater offsets (the API's), kept across reconnects.
        self.temperature_offsets: dict[str, float] = {}
        #: What a reconnecting service is waiting for, shown in the status (None: nothing).
        self._waiting: str | None = None
        #: The crash journal: the interrupted print (found at start, or the moment a print
        #: ends keeping it), the session's writer.
        self.recovery = Recovery(state_folder(config), self.publish, lambda: (
            config_relative(self.config, self.config.storage.folder),
            self.config.printer.profile))
        self.recovery.named = recover_file
        self.runner = SubscriptionRunner(config.events, bus, send_gcode=self.send_gcode,
                                         context=self.firing_context)
        #: What a reload applies live; the edges register their own sections.
        self.reloader = Reloader()
        self.reloader.live("events", lambda old, new: self.runner.update(new.events))
        self._builtins = builtins
        self._nursery = nursery
        self._services = services or nursery
        self._keeper = trio.CancelScope()
        self._exiting = False  # the service is going down: no print starts or resumes
        self._line_watchers: list[Callable[[str], None]] = []
        #: Its webcam and timelapse (pipeline/camera/); `runtime` runs its task.
        self.camera = Camera(webcam=lambda: self.config.webcam,
                             timelapse=lambda: self.config.timelapse,
                             state=state_folder(config), bus=bus,
                             pipeline=lambda: self.pipeline, printing=self._printing,
                             label=self.label)
        self._session = PrinterSession(self.label, nursery, self.recovery, self._open,
                                       on_open=self._opened, on_end=self.deselect,
                                       failure=failure)
        #: The printer's SD card (sdcard.py); selecting a file on it forgets the local one.
        self.sd = SdControl(lambda: self._session.printer,
                            enabled=lambda: self.config.serial.sd.enabled,
                            local_selected=self._forget_local)

    # ---- events and configuration ---------------------------------------------------------
    def publish(self, event: Event | str, payload: dict[str, Any] | None = None) -> None:
        self.bus.publish(event, payload)

    def subscribe(self, name: str, *, events: frozenset[str] | None, size: int) -> Subscription:
        return self.bus.subscribe(name, events=events, size=size)

    def custom_events(self) -> list[str]:
        return custom_event_names(self.pipeline)

    def firing_context(self) -> FiringContext:
        """What the generic placeholders of subscriptions read."""
        return snapshot.firing_context(self._core(), self.selected)

    def reload(self, config: HostConfig) -> ReloadReport:
        """Apply `config` (this printer's, re-read by the service). A broken pipeline or
        subscription raises (ConfigErrors) and changes nothing. What can change live does at
        once (the `reloader`'s appliers: subscriptions here, keys and storage in the HTTP
        API); the report says which changed settings wait for the printer to reconnect or
        for a restart, and why."""
        pipeline = build_pipeline(config.pipeline, self._builtins)
        check_custom_events(config.events, custom_event_names(pipeline))
        old = self.config
        report = self.reloader.report(old, config, connected=self.connected)
        self.config, self.pipeline = config, pipeline
        failed = self.reloader.apply(old, config)
        self.publish(Event.SETTINGS_UPDATED)
        return attrs.evolve(report, failed=failed)

    # ---- the printer session (session.py) -------------------------------------------------
    def _open(self) -> Any:
        config = self.config
        trace = (os.path.join(state_folder(config), "serial.log") if config.serial.log
                 else None)
        return open_printer(config, self.pipeline, listeners=[self.publish],
                            offsets=self.temperature_offsets, serial_log=trace)

    def _opened(self, printer: Printer) -> None:
        if self._line_watchers:
            printer.core.line_listeners.append(self._lines)
        if printer.core.parking is not None:
            printer.core.parking.listeners.append(self.camera.parked)

    def _printing(self) -> bool:
        core = self._core()
        return core is not None and core.jobs.active

    def _core(self) -> HostCore | None:
        printer = self._session.printer
        return printer.core if printer is not None else None

    def _ready(self, *, starting: bool = False) -> Printer:
        if starting and self._exiting:
            raise JobStateError("printpipe is shutting down")
        printer = self._session.printer
        if printer is None:
            raise JobStateError("the printer is not connected")
        if not printer.core.operational:
            raise JobStateError("the printer is not operational")
        return printer

    @property
    def session(self) -> Printer | None:
        """The open printer session, for tests and tools (the edges use the methods here)."""
        return self._session.printer

    @property
    def connected(self) -> bool:
        return self._session.printer is not None

    @property
    def connecting(self) -> bool:
        return self._session.connecting

    @property
    def operational(self) -> bool:
        printer = self._session.printer
        return printer is not None and printer.core.operational

    @property
    def wanted(self) -> bool:
        """Whether a session is wanted: connect() sets it, disconnect() clears it."""
        return self._session.wanted

    @property
    def last_error(self) -> str | None:
        return self._session.last_error

    @property
    def waiting(self) -> str | None:
        return self._waiting

    def waiting_for(self, what: str | None) -> None:
        """The connection keeper says what it waits for (None: nothing)."""
        self._waiting = what

    async def connect(self) -> None:
        """Open the printer session (LinkBroken, JobStateError: session.py)."""
        await self._session.connect()

    def keep_connected(self, keeper: Callable[[PrinterControl], Awaitable[object]]) -> None:
        """Run the connection keeper (autoconnect.py) among the printer's tasks, until the
        service shuts down."""
        self._session.wanted = True

        async def keep() -> None:
            with self._keeper:
                await keeper(self)
        self._nursery.start_soon(keep)

    def stop_for_exit(self) -> bool:
        """The service is going down: a running print stops at once (the cancel path, the
        heaters off, the journal kept for `printpipe recover`); False when none runs."""
        self._keeper.cancel()
        self._exiting = True
        self.recovery.live = False  # the journal kept is offered at the next start
        return self._session.stop_for_exit()

    async def shutdown(self, grace: float) -> None:
        """Stop a running print, disconnect in order, cut after `grace` s (session.py)."""
        self.stop_for_exit()
        await self._session.shutdown(grace)

    async def cut(self, bound: float) -> None:
        """Close the link at once; its last act still switches the heaters off."""
        await self._session.cut(bound)

    async def disconnect(self) -> None:
        """Orderly: beforePrinterDisconnected, the queue drained, the link closed."""
        await self._session.disconnect()

    def abandon(self) -> None:
        """Close the link at once (a second Ctrl-C, a cancel the printer never confirms)."""
        self._session.abandon()

    async def wait_session_end(self) -> None:
        """Wait until the printer session (open or connecting) has ended; at once without one."""
        await self._session.wait_end()

    def set_temperature_offsets(self, offsets: Mapping[str, float]) -> None:
        """Offsets added to the non-zero heater targets of printed files (tool0, bed, ...);
        zero removes one. The running session sees them at once: it holds this mapping.
        ValueError, and nothing changes, when one is not within ±MAX_TEMPERATURE_OFFSET (the
        HTTP API checks first; this is the second line)."""
        for name, value in offsets.items():
            if not -MAX_TEMPERATURE_OFFSET <= value <= MAX_TEMPERATURE_OFFSET:  # NaN too
                raise ValueError(f"temperature offset {name}={value!r} is not within "
                                 f"±{MAX_TEMPERATURE_OFFSET:g}")
        for name, value in offsets.items():
            if value:
                self.temperature_offsets[name] = value
            else:
                self.temperature_offsets.pop(name, None)

    # ---- files and jobs -------------------------------------------------------------------
    def select(self, disk: str, path: str | None = None, name: str | None = None, *,
               user: str | None = None) -> Selection:
        """Select a file for printing; `user` is who selected it."""
        sel = Selection(name or os.path.basename(disk), path or os.path.basename(disk), disk,
                        os.path.getsize(disk), user=user)
        self.selected = sel
        self.publish(Event.FILE_SELECTED, sel.payload())
        return sel

    def deselect(self) -> None:
        if self.selected is not None:
            self.selected = None
            self.publish(Event.FILE_DESELECTED)

    def _forget_local(self) -> None:
        self.selected = self._job_selection = None

    async def start(self, user: str | None = None) -> None:
        """Print the selected file (a file selected on the SD card prints from there);
        JobStateError when no file or no ready printer. `user` (who starts it: a key's name,
        `cli`, `mqtt`) is the job's user from now on."""
        sel = self.selected
        if sel is None and self.sd.selected is not None:
            self._ready(starting=True)
            self.sd.start(user)
            return
        if sel is None:
            raise JobStateError("no file is selected")
        printer = self._ready(starting=True)
        if printer.core.jobs.active:
            raise JobStateError("a print is already running")
        await printer.start_print(sel.disk, name=sel.name, display_path=sel.path, user=user)
        self._job_selection = sel
        self.recovery.discard(f"a print of {sel.path} started")

    async def recover(self, user: str | None = None) -> None:
        """Resume the print a crash interrupted (app/recovery.py); JobStateError with the
        reason when there is none, its file changed, or the printer is not ready."""
        printer = self._ready(starting=True)
        if printer.core.jobs.active:
            raise JobStateError("a print is already running")
        f = await self.recovery.resume(printer, user)
        self.selected = Selection(f.name, f.path, f.disk, f.size, f.origin)
        self._job_selection = self.selected

    def pause(self) -> None:
        self._ready().core.jobs.pause()

    def resume(self) -> None:
        self._ready(starting=True).core.jobs.resume()

    def toggle_pause(self) -> None:
        jobs = self._ready().core.jobs
        if jobs.state is PrinterState.PAUSED:
            jobs.resume()
        else:
            jobs.pause()

    def cancel(self) -> None:
        self._ready().core.jobs.cancel()

    async def restart(self, user: str | None = None) -> None:
        """Cancel the paused print and start the selected file again from its beginning
        (once the cancel is done: RESTART_WAIT seconds at most)."""
        printer = self._ready()
        jobs = printer.core.jobs
        if jobs.state is not PrinterState.PAUSED:
            raise JobStateError("restart needs a paused print")
        jobs.cancel()
        await printer.wait_until(lambda: not jobs.active, RESTART_WAIT, poll=0.05)
        await self.start(user)

    async def wait_job_end(
            self,
            timeout: float = math.inf,  # noqa: ASYNC109 (answers whether it held, as Event.wait)
            ) -> JobResult | None:
        """Wait until the print has a result and the printer left the job states."""
        printer = self._session.printer
        if printer is None:
            return None
        return await printer.wait_job_end(timeout)

    async def wait_idle(self, timeout: float = math.inf) -> bool:  # noqa: ASYNC109 (as above)
        """Wait until everything queued was acknowledged (or the printer failed)."""
        printer = self._session.printer
        return printer is not None and await printer.wait_idle(timeout)

    # ---- commands and scripts -------------------------------------------------------------
    def send(self, lines: Iterable[str], tags: frozenset[str]) -> int:
        """Queue commands through the pipeline; returns how many were queued. Raises
        CommandRefused, and queues none of them, when one must not reach the printer."""
        printer = self._ready()
        lines = list(lines)
        for line in lines:
            problem = printer.core.refusal(line)
            if problem is not None:
                raise CommandRefused(f"{shown_line(line)}: {problem}")
        return printer.send(lines, tags=tags)

    def send_gcode(self, lines: list[str], tags: frozenset[str]) -> bool:
        """For gcode subscriptions: False (nothing sent) unless the printer is operational."""
        if not self.operational:
            return False
        self.send(lines, tags)
        return True

    def on_line(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with every line the printer sends (this session only)."""
        core = self._core()
        if core is not None:
            core.line_listeners.append(listener)

    def watch_lines(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call `listener` with every line the printer sends, in this session and the next
        ones, until the returned function is called. Nothing is added to the receive path
        while no one watches."""
        self._line_watchers.append(listener)
        core = self._core()
        if core is not None and self._lines not in core.line_listeners:
            core.line_listeners.append(self._lines)

        def unwatch() -> None:
            if listener in self._line_watchers:
                self._line_watchers.remove(listener)
            core = self._core()
            if not self._line_watchers and core is not None and self._lines in core.line_listeners:
                core.line_listeners.remove(self._lines)
        return unwatch

    def _lines(self, line: str) -> None:
        for listener in self._line_watchers:
            listener(line)

    def run_script(self, name: str, context: Mapping[str, Any], trigger: str) -> None:
        """Render script `name` whole, then queue it. Raises LookupError when no script has
        the name, ScriptError when it does not render (then nothing is queued)."""
        core = self._ready().core
        scripts = core.scripts
        if not scripts.has(name):
            raise LookupError(f"no script named {name!r}")
        for cmd in scripts.render(name, context):
            problem = core.refusal(cmd.line)
            if problem is not None:
                raise CommandRefused(f"script {name}: {shown_line(cmd.line)}: {problem}")
        scripts.run(name, context, trigger=trigger)

    def render_script(self, name: str, context: Mapping[str, Any]) -> list[str]:
        """The lines script `name` renders to now: with the printer's state when connected,
        else with the configured profile and nothing known. Raises LookupError / ScriptError."""
        return render_script(self._core() or offline_core(self.config, self.pipeline), name,
                             context)

    # ---- system commands ------------------------------------------------------------------
    def system_commands(self) -> list[SystemCommand]:
        """What `system.additional_commands` stages declare (OctoPrint's "plugin" source)."""
        return system_commands(self.pipeline)

    async def run_system_command(self, action: str) -> None:
        """Run the declared command `action` (`<stage id>:<action>`). Raises LookupError when
        none has that action, SystemCommandFailed when it fails."""
        for cmd in self.system_commands():
            if cmd.action == action:
                await run_system_command(cmd, self._services)  # type: ignore[arg-type]
                return
        raise LookupError(f"no system command {action!r}")

    # ---- state (snapshot.py) ---------------------------------------------------------------
    def status(self) -> Status:
        status = snapshot.status(self.config, self._core(), error=self.last_error,
                                 offsets=self.temperature_offsets, selected=self.selected,
                                 job_selection=self._job_selection, waiting=self._waiting)
        job, on_card = status.job, self.sd.selected
        if (job is not None and not job.active and on_card is not None
                and (job.file.origin, job.file.path) != ("sdcard", on_card.path)):
            # another file was selected on the SD card since: the ended job is not shown
            status = attrs.evolve(status, job=None)
        return status

    def interrupted_print(self) -> dict[str, Any] | None:
        """The print a crash interrupted (file, line, filepos, z, time, and the problem that
        keeps it from being recovered, if any), or None."""
        return self.recovery.status()

    def statistics(self) -> SessionStatistics | None:
        core = self._core()
        return core.statistics() if core is not None else None

    @property
    def current_z(self) -> float | None:
        """The Z height last sent or reported (OctoPrint's `currentZ`), None when unknown."""
        core = self._core()
        return core.tracker.z if core is not None else None

    @property
    def printing_path(self) -> str | None:
        """The path (as the job shows it) of the file being printed, None when idle."""
        core = self._core()
        if core is None or not core.jobs.active or core.jobs.job is None:
            return None
        return core.jobs.job.file.path
