"""The host core: one printer session as a sans-IO object (no trio, no IO, no clock reads).

It wires the session's parts, each the one owner of its facts: `states` (printer state and
error), `queues` (queued commands and markers), `tracker` (tool, temperatures, position),
`jobs` (the print job and the file source), `sd` (the printer's SD card, its prints and
uploads; `sd_lane` gives it the link's turn), `scripts`, `rules` and `reactions`; and it runs
the command path: the pipeline's command phases, the built-in rules, the protocol engine.
The serial link (pipeline/link/serial.py) only moves bytes in and out of `receive_data`,
`data_to_send`, `on_written` and `handle_timeout`; anything queued from outside calls
`wake` (set by the link), so no caller has to remember to wake the link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from pipeline.config.camera import TimelapseMode
from pipeline.config.reader import HostConfig
from pipeline.events.names import Event
from pipeline.gcode import NO_TAGS, Command, strip_comment
from pipeline.hooks.chain import Pipeline
from pipeline.hooks.scripts import ScriptSet
from pipeline.phases import Phase
from pipeline.protocol.engine import HostProtocol
from pipeline.protocol.events import LinkState
from pipeline.session.filejob import file_line
from pipeline.session.guard import Refused, WireGuard
from pipeline.session.jobs import JobControl
from pipeline.session.queues import CommandQueues
from pipeline.session.reactions import EngineReactions
from pipeline.session.recovery import PrintJournal
from pipeline.session.rules import CommandRules
from pipeline.session.script_runner import ScriptRunner
from pipeline.session.sd.card import SdCard
from pipeline.session.sd.lane import SdLane
from pipeline.session.states import PrinterState, PrinterStates
from pipeline.session.tracking import Tracker
from pipeline.timelapse.park import Parking

Listener = Callable[[Any, dict[str, Any]], None]
S = PrinterState
INF = float("inf")
log = logging.getLogger("printpipe.host")


@attrs.frozen
class SessionStatistics:
    """Counters of one session (for /metrics)."""

    lines_sent: int
    lines_acked: int
    resends: int
    timeouts: int
    queued_manual: int
    queued_job: int
    in_flight: int
    send_window: int     # lines that may be in flight now
    probes: int          # numbered probes sent after a missing ok


_NO_OFFSETS: Mapping[str, float] = MappingProxyType({})


def _nothing() -> None:
    pass


class HostCore:
    def __init__(self, config: HostConfig, pipeline: Pipeline, *, clock: Callable[[], float],
                 scripts: ScriptSet | None = None,
                 offsets: Mapping[str, float] = _NO_OFFSETS) -> None:
        """`offsets` are the runtime temperature offsets by heater (tool0, bed, chamber); the
        caller owns them (they outlive the session) and hands the same mapping to each one."""
        self.config = config
        self.pipeline = pipeline
        self.clock = clock
        s, profile = config.serial, config.printer.profile
        self.engine = HostProtocol(
            s, profile,
            received_hook=pipeline.filter_received if pipeline.received else None)
        self.listeners: list[Listener] = []
        self.line_listeners: list[Callable[[str], None]] = []
        #: Called whenever something was queued from outside the link (the link sets it).
        self.wake: Callable[[], None] = _nothing
        self.states = PrinterStates(self._state_changed)
        self.queues = CommandQueues()
        self.tracker = Tracker(profile, self.engine.capabilities)
        #: The last checks before the wire (one line, finite numbers, heater limits).
        self.guard = WireGuard(s, profile)
        self.scripts = ScriptRunner(scripts=scripts, pipeline=pipeline, profile=profile,
                                    tracker=self.tracker, sink=self, fire=self.fire)
        self.jobs = JobControl(states=self.states, sink=self, fire=self.fire, clock=clock,
                               serial=s, pipeline=pipeline, engine=self.engine,
                               tracker=self.tracker, run_script=self.scripts.run,
                               check_script=lambda name, context: self.scripts.checked(
                                   name, context, self.refusal),
                               queue_script=self.scripts.queue,
                               on_fail=self._print_failed)
        self.rules = CommandRules(serial=s, profile=profile, tracker=self.tracker,
                                  offsets=offsets, jobs=self.jobs, scripts=self.scripts,
                                  lane=self, fire=self.fire, pipeline=pipeline,
                                  guard=self.guard)
        self.sd = SdCard(serial=s, sink=self, fire=self.fire, jobs=self.jobs, clock=clock)
        self.jobs.blocker = lambda: ("a file is being uploaded to the SD card"
                                     if self.sd.upload is not None else None)
        self.sd_lane = SdLane(self.sd, pipeline=pipeline, engine=self.engine,
                              canonical=self.guard.canonical,
                              emergency=self.rules.emergency,
                              queues_empty=lambda: self.queues.empty, fire=self.fire)
        self.sd.process = self.sd_lane.process
        self.engine.probe_line = self.sd_lane.probe
        self.reactions = EngineReactions(
            printer=config.printer, serial=s, states=self.states, sink=self,
            queues=self.queues, fire=self.fire, jobs=self.jobs, tracker=self.tracker,
            scripts=self.scripts, pipeline=pipeline, engine=self.engine,
            on_line=self._line_received, sd=self.sd)
        #: The crash journal's view of the print: fed every written command while active.
        self.journal = PrintJournal(self.jobs, self.engine, self.tracker,
                                    interval=config.storage.journal_interval)
        self._special = self.rules.special
        self._emergency = self.rules.emergency
        self._sent_watch = self.tracker.tracked | {"M73"}
        self._oob = bytearray()
        self._canonical = self.guard.canonical
        #: The last file line the guard read on its way in: a string is immutable, so the same
        #: object reaching the wire needs no second reading (a stage's new text gets one).
        self._checked = ""
        self._written: list[Command] = []
        self._cancel_until = INF  # a cancel gives up on unanswered lines at this time
        # With no queuing/queued stages a plain file line needs no phase work at all.
        self._plain = not pipeline.queuing and not pipeline.queued
        #: Steady timelapse frames (parking.py), when on: fed every file line.
        self.parking: Parking | None = None
        tl = config.timelapse
        if tl.park.enabled and tl.mode is TimelapseMode.ZCHANGE and config.webcam.snapshot:
            self.parking = Parking(tl.park, profile, sink=self, clock=clock,
                                   render=lambda name, extra: self.scripts.render(
                                       name, extra, trigger="trigger:timelapse.park"))
            self.parking.wake = lambda: self.wake()  # noqa: PLW0108 (the link sets wake later)

    # ---- state and publishing -------------------------------------------------------------
    @property
    def state(self) -> PrinterState:
        return self.states.state

    @property
    def error(self) -> str | None:
        return self.states.error

    def fire(self, event: Any, payload: dict[str, Any] | None = None) -> None:
        for listener in self.listeners:
            listener(event, payload or {})

    def _state_changed(self, new: PrinterState) -> None:
        self._cancel_until = (self.clock() + self.config.serial.timeouts.cancel
                              if new is S.CANCELLING else INF)
        parking = self.parking
        if parking is not None:
            if new is S.STARTING:
                parking.reset()
            elif new is not S.PRINTING and not parking.released:
                parking.release()  # no print to hold for a frame any more
        self.fire(Event.PRINTER_STATE_CHANGED, {"state_id": new.name, "state_string": new.value})

    def _print_failed(self) -> None:
        """The link or the printer failed the print: the journal keeps what was acknowledged
        until now (JobControl calls this before it records the failure)."""
        self.journal.settle()

    def _line_received(self, line: str) -> None:
        for listener in self.line_listeners:
            listener(line)

    @property
    def has_urgent_output(self) -> bool:
        """Bytes that go out regardless of the ok window (emergency, hello, out-of-band)."""
        return bool(self._oob) or self.engine.has_output

    @property
    def failed(self) -> bool:
        """The engine gave up: the link must flush its output and close."""
        return self.engine.state is LinkState.ERROR

    @property
    def operational(self) -> bool:
        return self.engine.state is LinkState.OPERATIONAL

    @property
    def window_full(self) -> bool:
        """No more lines may go out until an ok comes back (urgent bytes still may)."""
        return self.engine.credit <= 0 and not self.has_urgent_output

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing waiting for an ok, no upload to the SD card running."""
        return (self.queues.empty and self.engine.in_flight == 0 and not self.engine.resending
                and self.sd.upload is None)

    def statistics(self) -> SessionStatistics:
        e = self.engine
        return SessionStatistics(e.sent_count, e.window.acked_count, e.resends.requests,
                                 e.deadlines.timeouts_total, len(self.queues.manual),
                                 len(self.queues.job), e.in_flight, e.window.limit,
                                 e.deadlines.probes_total)

    # ---- connecting -----------------------------------------------------------------------
    def connect(self) -> None:
        self.states.to(PrinterState.CONNECTING)
        self.fire(Event.CONNECTING)
        self.engine.connect(self.clock())

    def disconnected(self, reason: str | None = None) -> None:
        """The link is closed (by us or by the device)."""
        if self.jobs.job is not None:
            self.jobs.fail(self.error or reason or "disconnected")
        self.sd.disconnected(self.error or reason or "disconnected")
        if self.state is PrinterState.ERROR or reason:
            if reason:
                self.states.fail(reason)
            self.states.to(PrinterState.CLOSED_WITH_ERROR)
        else:
            self.states.to(PrinterState.OFFLINE)
        self.fire(Event.DISCONNECTED)

    # ---- queuing ----------------------------------------------------------------------------
    def enqueue(self, line: str | Command, *, tags: frozenset[str] = NO_TAGS,
                cmd_type: str | None = None, part_of_job: bool = False) -> bool:
        """Queue a command through the queuing phase and the rules. False when dropped or
        refused (not operational, suppressed, or its cmd_type is already queued)."""
        if isinstance(line, Command):
            cmd = line
        else:
            text = strip_comment(line)
            if not text:
                return False
            cmd = Command.parse(text, cmd_type=cmd_type, tags=tags)
        try:  # read as the firmware will, as it enters (`m112` is M112); the wire checks again
            cmd = self.guard.entering(cmd)
        except Refused as exc:
            self._refuse(cmd, str(exc))
            return False
        if not (self.operational or cmd.gcode in self._emergency):
            return False
        queued = False
        for c in self._queuing(cmd):
            if self.queues.put(c, part_of_job=part_of_job):
                queued = True
                if self.pipeline.queued:
                    self.pipeline.notify(Phase.GCODE_QUEUED, c)
        if queued:
            self.wake()
        return queued

    def add_marker(self, fn: Callable[[], None],
                   until: Callable[[], bool] | None = None) -> None:
        """Run `fn` in order with the job queue, once everything before it is acknowledged
        (and `until()` is true, when given: nothing after it goes out before)."""
        self.queues.add_marker(fn, until)
        self.wake()

    def drop_file_commands(self) -> None:
        self.queues.drop_file_commands()

    def _queuing(self, cmd: Command) -> list[Command]:
        """The queuing phase plus the built-in rules; [] when nothing is left to queue."""
        p = self.pipeline
        cmds = p.run(Phase.GCODE_QUEUING, cmd) if p.queuing else [cmd]
        if len(cmds) == 1 and cmds[0].gcode not in self._special and cmds[0].gcode is not None:
            return cmds
        out: list[Command] = []
        for c in cmds:
            out += self.rules.apply(c)
        return out

    def refusal(self, line: str) -> str | None:
        """Why `line` would be refused on its way to the printer, or None (for callers that
        answer a request: nothing is queued)."""
        text = strip_comment(line)
        if not text:
            return None
        cmd = Command.parse(text)
        return self.guard.refusal(cmd.line, cmd.gcode)

    def _refuse(self, cmd: Command, problem: str) -> None:
        """A command the guard stopped: say so, and fail the print if the file asked for it."""
        self.rules.suppress(cmd, problem, "error")
        jobs = self.jobs
        if "source:file" in cmd.tags and jobs.active and self.state is not S.CANCELLING:
            where = file_line(cmd)
            jobs.cancel(error=f"line {where} of the file: {problem}" if where else problem)

    # ---- the emergency lane (CommandRules) -------------------------------------------------------
    def out_of_band(self, cmd: Command) -> bool:
        """An emergency-parser command goes out at once, outside the queue and the window."""
        if not (self.engine.capabilities.get("EMERGENCY_PARSER") and self.operational):
            return False
        self._oob += self.engine.send_out_of_band(cmd, self.clock())
        self.wake()
        return True

    def emergency_stop(self) -> None:
        """M112: raw and numbered, heaters off, then the link closes in Error."""
        self.fire(Event.ESTOP)
        self.reactions.handle(self.engine.emergency_stop())
        self.wake()

    # ---- sending ------------------------------------------------------------------------------
    def _next_command(self) -> Command | None:
        if self.sd.upload is not None:  # the SD upload's commands, once the queues drained
            owns, up_cmd = self.sd_lane.next_command()
            if owns:
                return up_cmd
        q = self.queues
        if q.manual or q.job:
            cmd = q.take(self.engine.in_flight)
            if cmd is not None or q.job:
                return cmd  # None: a marker waits for everything before it to be acked
        jobs = self.jobs
        src = jobs.source
        while src is not None:
            cmd = src.next_command()
            if cmd is None:
                if src.done:
                    jobs.file_done()
                    return self._next_command()
                return None
            line = cmd.line
            try:  # read as the firmware will, as it enters: the rules see what it runs
                checked = self._canonical(line, cmd.gcode)
            except Refused as exc:
                self._refuse(cmd, str(exc))  # fails the print with the file's line
                src = jobs.source
                continue
            if checked is not line:
                cmd = Command.parse(checked, tags=cmd.tags)
            self._checked = checked  # the wire need not read this very string again
            plain = self._plain and cmd.gcode not in self._special and cmd.gcode is not None
            if self.parking is not None and self.parking.before(cmd):
                # the park block is queued: this line follows it, unchanged
                for c in [cmd] if plain else self._queuing(cmd):
                    q.job.append(c)
                return self._next_command()
            if plain:
                return cmd  # the hot path: nothing to run
            cmds = self._queuing(cmd)
            if not cmds:
                src = jobs.source  # the command may have paused the job
                continue
            if self.pipeline.queued:
                for c in cmds:
                    self.pipeline.notify(Phase.GCODE_QUEUED, c)
            if len(cmds) > 1:
                q.put_first(cmds[1:])
            return cmds[0]
        return None

    def data_to_send(self) -> bytes:
        """Everything that may be written now. Call `on_written()` once it is written."""
        engine = self.engine
        out = engine.take_output()
        if self._oob:
            out += bytes(self._oob)
            self._oob.clear()
        if engine.state is not LinkState.OPERATIONAL:
            return out
        now = self.clock()
        if self.sd.upload is not None and self.sd_lane.binary:
            return out + self.sd_lane.data_to_send(now)  # the binary transfer owns the link
        p = self.pipeline
        written = self._written
        canonical = self._canonical
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
            line = cmd.line
            if line is not self._checked:  # a file line the guard read as it entered
                try:  # the wire gets exactly the line the guard read and checked
                    wire = canonical(line, cmd.gcode)
                except Refused as exc:
                    self._refuse(cmd, str(exc))
                    continue
                if wire is not line:
                    cmd = Command.parse(wire, cmd_type=cmd.cmd_type, tags=cmd.tags)
            if cmd.gcode == "M155" and "source:sdupload" not in cmd.tags:
                self.tracker.sending(cmd)
            out += engine.send(cmd, now)
            written.append(cmd)
        if self.sd.upload is not None and self.sd_lane.binary and engine.in_flight == 0:
            out += self.sd_lane.data_to_send(now)
        return out

    def on_written(self) -> None:
        """The bytes from `data_to_send` reached the port: run the sent phase."""
        written = self._written
        if not written:
            return
        p = self.pipeline
        watch = self._sent_watch
        if self.journal.active:
            self.journal.trail.extend(written)
        for cmd in written:
            if p.sent:
                p.notify(Phase.GCODE_SENT, cmd)
            if cmd.gcode in watch and "source:sdupload" not in cmd.tags:
                if cmd.gcode == "M73":
                    self.jobs.m73(cmd)
                else:
                    self.tracker.sent(cmd)
        written.clear()

    # ---- temperature polling -------------------------------------------------------------
    def poll_interval(self) -> float:
        """Seconds until the next M105 poll: the target-set interval while idle with a heater
        set, the plain one otherwise (OctoPrint's rule)."""
        t = self.config.serial.timeouts
        if self.jobs.source is None and self.tracker.heater_set:
            return t.temperature_target_set
        return t.temperature

    def poll_temperature(self) -> None:
        """M105 now, unless the printer autoreports or is busy with a long command."""
        w = self.engine.window
        if (self.operational and not self.tracker.autoreport and not w.long_running
                and not w.heating and self.sd.upload is None):
            self.enqueue("M105", cmd_type="temperature_poll",
                         tags=frozenset({"trigger:comm.poll_temperature"}))

    # ---- receiving and timeouts -------------------------------------------------------------
    @property
    def deadline(self) -> float:
        if self.sd.upload is not None and self.sd_lane.binary:
            return self.sd_lane.deadline
        d = self.engine.deadline
        c = self.jobs.capture_deadline
        if self._cancel_until < c and self.engine.in_flight:
            c = self._cancel_until
        if self.parking is not None and self.parking.hold_until < c:
            c = self.parking.hold_until
        return c if c < d else d

    def receive_data(self, data: bytes) -> None:
        if self.sd.upload is not None and self.sd_lane.binary and data:
            data = self.sd_lane.receive_data(data, self.clock())
            if not data:
                return
        events = self.engine.receive_data(data, self.clock())
        if events:
            self.reactions.handle(events)

    def handle_timeout(self) -> None:
        now = self.clock()
        if self.sd.upload is not None and self.sd_lane.binary:
            self.sd_lane.handle_timeout(now)
            return
        if self.jobs.capture_deadline <= now:
            self.jobs.capture_timeout()
        if self.parking is not None and self.parking.hold_until <= now:
            self.parking.timed_out()
        if self._cancel_until <= now and self.engine.in_flight:
            # the printer does not answer: the cancel must end anyway
            n = self.engine.abandon_in_flight()
            self._cancel_until = now + self.config.serial.timeouts.cancel
            log.warning("cancelling: the printer acknowledged none of the last %d lines "
                        "within %.0f s; giving up on them", n,
                        self.config.serial.timeouts.cancel)
        events = self.engine.handle_timeout(self.clock())
        if events:
            self.reactions.handle(events)
