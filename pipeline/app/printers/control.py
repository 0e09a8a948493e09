"""The control surface: the one object the edges (HTTP API, CLI, event subscriptions) drive
the printer through. It opens and closes the printer session (a task of the printer's own
nursery: nothing but the printer runs there), stops it when the service stops, owns the
file selection and the runtime temperature offsets (both outlive a session), starts, pauses,
resumes and cancels prints, queues commands and scripts, and answers the printer's state as
frozen snapshots.

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
from pipeline.app.printers.recovery import Recovery
from pipeline.app.printers.status import JobStatus, Selection, Status
from pipeline.app.reload import Reloader, ReloadReport
from pipeline.app.supervise import Supervisor
from pipeline.app.system import run_system_command
from pipeline.config.reader import HostConfig
from pipeline.errors import CommandRefused, ConfigError, HostError
from pipeline.events.names import Event
from pipeline.events.placeholders import FiringContext
from pipeline.fanout.bus import EventBus, Subscription
from pipeline.fanout.subscriptions import SubscriptionRunner, check_custom_events, now_iso
from pipeline.files.history import PrintHistory
from pipeline.hooks.chain import Pipeline
from pipeline.hooks.host_phases import (
    SystemCommand,
    additional_state_data,
    custom_event_names,
    system_commands,
)
from pipeline.hooks.registry import build_pipeline
from pipeline.link.printer import Printer, load_scripts, open_printer
from pipeline.link.serial import LAST_ACT
from pipeline.session.core import HostCore, SessionStatistics
from pipeline.session.jobs import JobResult, JobStateError, Outcome
from pipeline.session.rules import shown_line
from pipeline.session.states import PrinterState

log = logging.getLogger("printpipe.service")

#: Seconds a restart waits for the cancel of the paused print to finish.
RESTART_WAIT = 30.0
#: The largest runtime temperature offset, either way (°C): OctoPrint's limit.
MAX_TEMPERATURE_OFFSET = 50.0


class Control:
    def __init__(self, config: HostConfig, pipeline: Pipeline, bus: EventBus,
                 nursery: trio.Nursery, builtins: Mapping[str, ModuleType], *,
                 services: trio.Nursery | Supervisor | None = None) -> None:
        """`nursery` holds the printer's tasks (sessions, the connection keeper); `services`
        the rest (system commands), supervised."""
        self.config = config
        self.pipeline = pipeline
        self.bus = bus
        #: Re-reads the configuration (set by `printpipe serve`; raises ConfigErrors).
        self.loader: Callable[[], HostConfig] | None = None
        self.selected: Selection | None = None
        #: The selection the last print was started from: that job is what the API shows
        #: until another file is selected (or this one again, which starts afresh).
        self._job_selection: Selection | None = None
        #: Runtime heater offsets (the API's), kept across reconnects.
        self.temperature_offsets: dict[str, float] = {}
        self.last_error: str | None = None
        #: Whether a printer session is wanted: connect() sets it, disconnect() clears it
        #: (`printpipe serve` reconnects while it holds: pipeline/app/autoconnect.py).
        self.wanted = False
        #: What a reconnecting service is waiting for, shown in the status (None: nothing).
        self.waiting: str | None = None
        #: The crash journal: the interrupted print found at start, the session's writer.
        self.recovery = Recovery(state_folder(config), self.publish, lambda: (
            config_relative(self.config, self.config.storage.folder),
            self.config.printer.profile))
        #: The print history (`printpipe serve` keeps one in the state folder).
        self.history: PrintHistory | None = None
        #: More statistics for /metrics, by source (the MQTT bridge): each returns
        #: (name, kind, help, value) samples.
        self.metrics_sources: dict[str, Callable[[], list[tuple[str, str, str, float]]]] = {}
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
        self._printer: Printer | None = None
        self._stop: trio.Event | None = None
        self._ended: trio.Event | None = None
        self._line_watchers: list[Callable[[str], None]] = []

    # ---- events and configuration ---------------------------------------------------------
    def publish(self, event: Event | str, payload: dict[str, Any] | None = None) -> None:
        self.bus.publish(event, payload)

    def subscribe(self, name: str, *, events: frozenset[str] | None, size: int) -> Subscription:
        return self.bus.subscribe(name, events=events, size=size)

    def custom_events(self) -> list[str]:
        return custom_event_names(self.pipeline)

    def firing_context(self) -> FiringContext:
        """What the generic placeholders of subscriptions read."""
        sel = self.selected
        core = self._core()
        job = core.jobs.job if core else None
        return FiringContext(
            current_z=core.tracker.z if core else None,
            filename=sel.name if sel else None, filepath=sel.path if sel else None,
            origin=sel.origin if sel else None,
            progress=job.progress * 100 if job is not None else None, now=now_iso())

    def reload(self) -> ReloadReport:
        """Re-read the config. A broken one raises (ConfigErrors) and changes nothing. What
        can change live does at once (the `reloader`'s appliers: subscriptions here, keys and
        storage in the HTTP API); the report says which changed settings wait for the printer
        to reconnect or for a restart, and why."""
        if self.loader is None:
            raise ConfigError("this service was not started from a config file")
        config = self.loader()
        pipeline = build_pipeline(config.pipeline, self._builtins)
        check_custom_events(config.events, custom_event_names(pipeline))
        old = self.config
        report = self.reloader.report(old, config, connected=self._printer is not None)
        self.config, self.pipeline = config, pipeline
        failed = self.reloader.apply(old, config)
        self.publish(Event.SETTINGS_UPDATED)
        return attrs.evolve(report, failed=failed)

    # ---- the printer session --------------------------------------------------------------
    def _core(self) -> HostCore | None:
        return self._printer.core if self._printer is not None else None

    def _ready(self, *, starting: bool = False) -> Printer:
        if starting and self._exiting:
            raise JobStateError("printpipe is shutting down")
        printer = self._printer
        if printer is None:
            raise JobStateError("the printer is not connected")
        if not printer.core.operational:
            raise JobStateError("the printer is not operational")
        return printer

    @property
    def session(self) -> Printer | None:
        """The open printer session, for tests and tools (the edges use the methods here)."""
        return self._printer

    @property
    def connected(self) -> bool:
        return self._printer is not None

    @property
    def connecting(self) -> bool:
        return self._printer is None and self._ended is not None and not self._ended.is_set()

    @property
    def operational(self) -> bool:
        return self._printer is not None and self._printer.core.operational

    async def connect(self) -> None:
        """Open the printer session; raises LinkBroken when the printer cannot be reached,
        JobStateError while another connect is still under way."""
        self.wanted = True
        if self._printer is not None:
            return
        if self.connecting:
            raise JobStateError("the printer is connecting")
        self._stop, self._ended = trio.Event(), trio.Event()
        await self._nursery.start(self._session, self._stop, self._ended)

    async def _session(self, stop: trio.Event, ended: trio.Event, *,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            config = self.config
            trace = (os.path.join(state_folder(config), "serial.log") if config.serial.log
                     else None)
            async with open_printer(config, self.pipeline, listeners=[self.publish],
                                    offsets=self.temperature_offsets,
                                    serial_log=trace) as printer:
                self._printer, started = printer, True
                if self._line_watchers:
                    printer.core.line_listeners.append(self._lines)
                self.last_error = None
                printer.core.journal.enabled = True  # polled by recovery.follow below
                task_status.started()
                async with trio.open_nursery() as watch:
                    watch.start_soon(_cancel_when, stop, watch.cancel_scope)
                    watch.start_soon(_cancel_when, printer.link.closed, watch.cancel_scope)
                    watch.start_soon(self.recovery.follow, printer.core.journal)
                self.last_error = printer.core.error
        except HostError as exc:
            if not started:
                raise
            self.last_error = str(exc)
            log.error("printer session ended: %s", exc)
        finally:
            if started and self._printer is not None:
                await self.recovery.flush(self._printer.core.journal)
            self._printer = None
            self.deselect()  # as OctoPrint: a closed connection has no file selected
            ended.set()

    def keep_connected(self, keeper: Callable[[Control], Awaitable[object]]) -> None:
        """Run the connection keeper (app/autoconnect.py) among the printer's tasks, until
        the service shuts down."""
        async def keep() -> None:
            with self._keeper:
                await keeper(self)
        self._nursery.start_soon(keep)

    def stop_for_exit(self) -> bool:
        """The service is going down: a running print stops at once (the cancel path, the
        heaters off, the journal kept for `printpipe recover`); False when none runs."""
        self._keeper.cancel()
        self.wanted, self._exiting = False, True
        return self._printer is not None and self._printer.stop_for_exit()

    async def shutdown(self, grace: float) -> None:
        """Stop a running print (stop_for_exit), then disconnect in order; what is left after
        `grace` seconds is cut (the link's last act still gets the heaters off)."""
        self.stop_for_exit()
        with trio.move_on_after(grace):
            await self.disconnect()
        if self._printer is not None:
            log.warning("the printer did not finish its stop within %g s: disconnecting", grace)
            await self.cut(LAST_ACT + 1)

    async def cut(self, bound: float) -> None:
        """Close the link at once (`abandon`): its last act still switches the heaters off of
        a print running; wait for that, `bound` seconds at most."""
        self.abandon()
        with trio.move_on_after(bound):
            await self.wait_session_end()

    async def disconnect(self) -> None:
        """Orderly: beforePrinterDisconnected runs, the queue drains (bounded), link closes."""
        self.wanted = False
        if self._stop is not None and self._ended is not None and self._printer is not None:
            self._stop.set()
            await self._ended.wait()

    def abandon(self) -> None:
        """Close the link at once, without beforePrinterDisconnected or draining the queue:
        for a printer that stopped answering (a second Ctrl-C, a cancel it never confirms)."""
        self.wanted = False
        if self._printer is not None:
            self._printer.nursery.cancel_scope.cancel()

    async def wait_session_end(self) -> None:
        """Wait until the printer session (open or connecting) has ended; at once without one."""
        if self._ended is not None:
            await self._ended.wait()

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

    async def start(self, user: str | None = None) -> None:
        """Print the selected file; JobStateError when no file or no ready printer. `user`
        (who starts it: a key's name, `cli`, `mqtt`) is the job's user from now on."""
        sel = self.selected
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
        printer = self._printer
        if printer is None:
            return None
        return await printer.wait_job_end(timeout)

    async def wait_idle(self, timeout: float = math.inf) -> bool:  # noqa: ASYNC109 (as above)
        """Wait until everything queued was acknowledged (or the printer failed)."""
        printer = self._printer
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

    # ---- state ----------------------------------------------------------------------------
    def status(self) -> Status:
        core = self._core()
        profile = self.config.printer.profile
        known = [f"tool{n}" for n in range(profile.extruders)]
        known += ["bed"] * profile.heated_bed + ["chamber"] * profile.heated_chamber
        temps: dict[str, dict[str, float | None]] = {}
        if core is not None:  # a heater is shown once the printer reported it (OctoPrint's way)
            temps = {name: t for name, t in core.tracker.temperature_payload().items()
                     if t["actual"] is not None and name in known}
        offsets = self.temperature_offsets
        temps = {name: {**t, "offset": offsets.get(name, 0)} for name, t in temps.items()}
        if core is None:
            state = (PrinterState.CLOSED_WITH_ERROR if self.last_error
                     else PrinterState.OFFLINE)
            return Status(state, False, self.last_error, temps, None, self.selected, {},
                          self.waiting)
        return Status(core.state, True, core.error or self.last_error, temps,
                      self._job_status(core), self.selected,
                      additional_state_data(core.pipeline))

    def _job_status(self, core: HostCore) -> JobStatus | None:
        """The running job, or the ended one while its file is still the selection."""
        jobs = core.jobs
        job, result = jobs.job, jobs.result
        if job is None or (not jobs.active and self.selected is not self._job_selection):
            return None
        if result is None:
            return JobStatus(job.file, job.progress, job.pos, job.line_no, jobs.elapsed(),
                             jobs.time_left(), jobs.active)
        done = result.outcome is Outcome.DONE  # its times stop with it
        return JobStatus(job.file, 1.0 if done else job.progress, job.pos, job.line_no,
                         result.time, 0.0 if done else None, jobs.active, result)

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


def offline_core(config: HostConfig, pipeline: Pipeline) -> HostCore:
    """A host core with no printer behind it: what scripts render to without a printer."""
    return HostCore(config, pipeline, clock=lambda: 0.0, scripts=load_scripts(config))


def render_script(core: HostCore, name: str, context: Mapping[str, Any]) -> list[str]:
    """The lines script `name` renders to in `core`'s state. Raises LookupError when no
    script (and no `comm.protocol.scripts` stage) has the name, ScriptError when it breaks."""
    if not core.scripts.has(name):
        known = ", ".join(core.scripts.names()) or "none"
        raise LookupError(f"no script named {name!r} (known: {known})")
    return [cmd.line for cmd in core.scripts.render(name, context)]


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
