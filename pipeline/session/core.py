"""The host core: one printer session as a sans-IO object (no trio, no IO, no clock reads).

It owns the command queues (manual commands with cmd_type de-duplication, job commands, and a
job source the print streamer plugs in), runs the pipeline's command phases and the built-in
command rules (emergency, blocked, ignored, no heated bed...), drives the protocol engine and
turns its events into printer state and published events. The serial link (link.py) only
moves bytes in and out of `receive_data`, `data_to_send`, `on_written` and `handle_timeout`.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pipeline.hooks.chain import Pipeline
from pipeline.config.reader import HostConfig
from pipeline.protocol.events import LinkState
from pipeline.events.names import Event
from pipeline.gcode import NO_TAGS, Command, strip_comment, tool_number
from pipeline.phases import Phase
from pipeline.session.jobs import JobControl, Marker
from pipeline.session.rules import OFFSET_TARGETS, CommandRules
from pipeline.session.states import PrinterState
from pipeline.session.reactions import EngineReactions
from pipeline.session.script_runner import ScriptRunner
from pipeline.protocol.engine import HostProtocol
from pipeline.session.tracking import Tracker

if TYPE_CHECKING:
    from pipeline.hooks.scripts import ScriptSet

log = logging.getLogger("printpipe.host")


class JobSource(Protocol):
    """What the print streamer offers the host: the next file command, or None for now."""

    def next_command(self) -> Command | None: ...


Listener = Callable[[Event, dict[str, Any]], None]
OFFSET_WORDS = frozenset(OFFSET_TARGETS)


class HostCore:
    def __init__(self, config: HostConfig, pipeline: Pipeline, *,
                 clock: Callable[[], float], scripts: ScriptSet | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.clock = clock
        self.engine = HostProtocol(
            config.serial, config.printer.profile,
            received_hook=pipeline.filter_received if pipeline.received else None)
        self.tracker = Tracker(config.printer.profile)
        self.state = PrinterState.OFFLINE
        self.error: str | None = None
        self.listeners: list[Listener] = []
        self.line_listeners: list[Callable[[str], None]] = []
        self.job_source: JobSource | None = None
        self.autoreport_temperature = False
        self._queue: deque[Command] = deque()
        self._queued_types: set[str] = set()
        self._job_queue: deque[Command] = deque()
        self._oob = bytearray()
        self._written: list[Command] = []
        self.rules = CommandRules(self)
        self._special = self.rules.special
        self._emergency = self.rules.emergency
        self.jobs = JobControl(self)
        self.scripts = ScriptRunner(self, scripts)
        self.jobs.moment = lambda moment, ctx: self.scripts.run(moment.value, ctx)
        # Tool changes run beforeToolChange/afterToolChange around T<n> at queuing.
        self._tool_scripts = bool(pipeline.for_phase(Phase.SCRIPTS)) or (
            scripts is not None and (scripts.has("beforeToolChange")
                                     or scripts.has("afterToolChange")))
        if self._tool_scripts:
            self._special = self._special | {"T"}
        self._queued_tool = 0
        self._base_special = self._special
        #: Runtime temperature offsets by heater (tool0, bed, chamber), set through the API.
        self.temperature_offsets: dict[str, float] = {}
        # With no queuing/queued stages a plain file line needs no phase work at all.
        self._plain = not pipeline.queuing and not pipeline.queued
        self._reactions = EngineReactions(self)

    # ---- publishing ---------------------------------------------------------------------
    def fire(self, event: Event, payload: dict[str, Any] | None = None) -> None:
        for listener in self.listeners:
            listener(event, payload or {})

    def set_state(self, new: PrinterState) -> None:
        if new is not self.state:
            self.state = new
            self.fire(Event.PRINTER_STATE_CHANGED,
                      {"state_id": new.name, "state_string": new.value})

    def add_marker(self, fn: Callable[[], None]) -> None:
        """Run `fn` in order with the job queue, once everything before it is acknowledged."""
        self._job_queue.append(Marker(fn))  # type: ignore[arg-type]

    def drop_file_commands(self) -> None:
        """A cancel: forget file commands still waiting in the job queue."""
        self._job_queue = deque(c for c in self._job_queue
                                if c.__class__ is Marker or "source:file" not in c.tags)

    @property
    def has_urgent_output(self) -> bool:
        """Bytes that go out regardless of the ok window (emergency, hello, out-of-band)."""
        return bool(self._oob) or bool(self.engine._out)

    @property
    def failed(self) -> bool:
        """The engine gave up: the link must flush its output and close."""
        return self.engine.state is LinkState.ERROR

    @property
    def operational(self) -> bool:
        return self.engine.state is LinkState.OPERATIONAL

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing waiting for an ok."""
        return (not self._queue and not self._job_queue and self.engine.in_flight == 0
                and not self.engine.resending)

    def plugin_state(self, initial: bool = False) -> dict[str, Any]:
        """`printer.additional_state_data`: what stages add under `plugins.<id>`."""
        return {st.id: data for st, data in
                self.pipeline.call(Phase.PRINTER_ADDITIONAL_STATE_DATA, initial=initial)
                if isinstance(data, dict)}

    def custom_events(self) -> list[str]:
        """`events.register_custom_events`: `plugin_<id>_<name>` for every name returned."""
        return [f"plugin_{st.id}_{name}" for st, names in
                self.pipeline.call(Phase.EVENTS_REGISTER_CUSTOM_EVENTS)
                for name in (names or ()) if isinstance(name, str)]

    # ---- connecting -----------------------------------------------------------------------
    def connect(self) -> None:
        self.set_state(PrinterState.CONNECTING)
        self.fire(Event.CONNECTING)
        self.engine.connect(self.clock())

    def disconnected(self, reason: str | None = None) -> None:
        """The link is closed (by us or by the device)."""
        if self.jobs.job is not None:
            self.jobs.fail(self.error or reason or "disconnected")
        if self.state is PrinterState.ERROR or reason:
            self.error = self.error or reason
            self.set_state(PrinterState.CLOSED_WITH_ERROR)
        else:
            self.set_state(PrinterState.OFFLINE)
        self.fire(Event.DISCONNECTED)

    # ---- queuing ----------------------------------------------------------------------------
    def enqueue(self, line: str | Command, *, tags: frozenset[str] = NO_TAGS,
                cmd_type: str | None = None, part_of_job: bool = False) -> bool:
        """Queue a command through the queuing phase. False when dropped or refused."""
        if isinstance(line, Command):
            cmd = line
        else:
            text = strip_comment(line)
            if not text:
                return False
            cmd = Command.parse(text, cmd_type=cmd_type, tags=tags)
        forced = cmd.gcode in self._emergency
        if not (self.operational or forced):
            return False
        cmds = self._queuing(cmd)
        target = self._job_queue if part_of_job else self._queue
        ok = False
        for c in cmds:
            t = c.cmd_type
            if t is not None:
                if t in self._queued_types:
                    continue  # OctoPrint's rule: the new command of a queued type is dropped
                self._queued_types.add(t)
            target.append(c)
            ok = True
            if self.pipeline.queued:
                self.pipeline.notify(Phase.GCODE_QUEUED, c)
        return ok

    def _queuing(self, cmd: Command) -> list[Command]:
        """The queuing phase plus the built-in rules; [] when nothing is left to queue."""
        p = self.pipeline
        cmds = p.run(Phase.GCODE_QUEUING, cmd) if p.queuing else [cmd]
        if len(cmds) == 1 and cmds[0].gcode not in self._special and cmds[0].gcode is not None:
            return cmds
        out = []
        for c in cmds:
            if not self.rules.allow(c):
                continue
            if self.temperature_offsets and c.gcode in OFFSET_WORDS:
                c = self.rules.offset_target(c, self.temperature_offsets)
            if c.gcode == "T" and self._tool_scripts:
                new = tool_number(c.line)
                if new is not None and new != self._queued_tool:
                    old, self._queued_tool = self._queued_tool, new
                    out += self.scripts.tool_change(c, old, new)
                    continue
            out.append(c)
        return out

    def set_temperature_offsets(self, offsets: dict[str, float]) -> None:
        """Offsets added to the heater targets printed files set; with none, temperature
        commands stay off the rules path."""
        self.temperature_offsets = {k: v for k, v in offsets.items() if v}
        self._special = self._base_special | (OFFSET_WORDS if self.temperature_offsets
                                              else frozenset())

    def write_out_of_band(self, cmd: Command) -> None:
        """An emergency-parser command goes out at once, outside the queue and the window."""
        self._oob += self.engine.send_out_of_band(cmd, self.clock())

    def emergency_stop(self) -> None:
        """M112: raw and numbered, heaters off, then the link closes in Error."""
        self.fire(Event.ESTOP)
        self.handle_events(self.engine.emergency_stop())

    # ---- sending ------------------------------------------------------------------------------
    def _next_command(self) -> Command | None:
        if self._queue:
            cmd = self._queue.popleft()
            if cmd.cmd_type is not None:
                self._queued_types.discard(cmd.cmd_type)
            return cmd
        jq = self._job_queue
        while jq:
            item = jq[0]
            if item.__class__ is Marker:
                if self.engine.in_flight:
                    return None  # the marker waits for everything before it to be acked
                jq.popleft()
                item.fn()  # type: ignore[attr-defined]
                continue
            return jq.popleft()
        src = self.job_source
        while src is not None:
            cmd = src.next_command()
            if cmd is None:
                if src.done:  # type: ignore[attr-defined]
                    self.jobs.file_done()
                    return self._next_command()
                return None
            if self._plain and cmd.gcode not in self._special and cmd.gcode is not None:
                return cmd  # the hot path: nothing to run, nothing to check
            cmds = self._queuing(cmd)
            if not cmds:
                src = self.job_source  # the command may have paused the job
                continue
            if self.pipeline.queued:
                for c in cmds:
                    self.pipeline.notify(Phase.GCODE_QUEUED, c)
            if len(cmds) > 1:
                self._job_queue.extendleft(reversed(cmds[1:]))
            return cmds[0]
        return None

    def data_to_send(self) -> bytes:
        """Everything that may be written now. Call `on_written()` once it is written."""
        engine = self.engine
        out = engine.take_output() if engine._out else b""
        if self._oob:
            out += bytes(self._oob)
            self._oob.clear()
        if engine.state is not LinkState.OPERATIONAL:
            return out
        now = self.clock()
        p = self.pipeline
        written = self._written
        while engine.credit > 0:
            if engine.resending:
                r = engine.next_resend(now)
                if r is None:
                    break
                out += r[0]
                written.append(r[1])
                continue
            cmd = self._next_command()
            if cmd is None:
                break
            if cmd.gcode is None and cmd.line.startswith("@"):
                self.rules.sending_atcommand(cmd)  # never written to the printer
                continue
            if p.sending:
                cmds = p.run(Phase.GCODE_SENDING, cmd)
                if not cmds:
                    continue
                cmd = cmds[0]
            if cmd.gcode == "M155":
                self.tracker.sending(cmd, self)
            out += engine.send(cmd, now)
            written.append(cmd)
        return out

    def on_written(self) -> None:
        """The bytes from `data_to_send` reached the port: run the sent phase."""
        written = self._written
        if not written:
            return
        p = self.pipeline
        tracked = self.tracker.tracked
        for cmd in written:
            if p.sent:
                p.notify(Phase.GCODE_SENT, cmd)
            if cmd.gcode in tracked:
                self.tracker.sent(cmd, self)
        written.clear()

    # ---- receiving and timeouts -------------------------------------------------------------
    @property
    def deadline(self) -> float:
        d = self.engine.deadline
        c = self.jobs.capture_deadline
        return c if c < d else d

    def receive_data(self, data: bytes) -> None:
        events = self.engine.receive_data(data, self.clock())
        if events:
            self.handle_events(events)

    def handle_timeout(self) -> None:
        if self.jobs.capture_deadline <= self.clock():
            self.jobs.capture_timeout()
        events = self.engine.handle_timeout(self.clock())
        if events:
            self.handle_events(events)

    def handle_events(self, events: list) -> None:
        dispatch = self._reactions.dispatch
        for ev in events:
            dispatch[type(ev)](ev)

    def clear_queues(self) -> None:
        """Forget every queued command (the printer reset itself)."""
        self._queue.clear()
        self._queued_types.clear()
        self._job_queue.clear()
