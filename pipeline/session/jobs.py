"""Print-job control as OctoPrint has it, sans-IO: start, finish, pause, resume, cancel and
failure, with the position capture (M400 + M114, bounded wait) for pause and cancel.

State changes ride in the job queue as markers that run once everything before them is
acknowledged, so a state follows the printer, not the enqueueing. Every moment where a G-code
script belongs runs it (`run_script`), and every moment where an event belongs fires it.
Job control owns the job, its result and `source`, the file the session pulls lines from
while printing; the engine's `printing` mode is set here and nowhere else.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from pipeline.config.schema import SerialSpec
from pipeline.errors import HostError, ScriptError
from pipeline.events.names import Event
from pipeline.gcode import Command
from pipeline.hooks.chain import Pipeline
from pipeline.phases import Phase
from pipeline.session.filejob import FileJob, file_position
from pipeline.session.queues import CommandSink, Publish
from pipeline.session.states import JOB_STATES, PAUSABLE, PrinterState, PrinterStates
from pipeline.session.tracking import Tracker

log = logging.getLogger("printpipe.job")
INF = float("inf")
S = PrinterState


class JobStateError(HostError):
    """A job command the current state does not allow (the HTTP API answers 409)."""


class Moment(enum.Enum):
    """Where G-code scripts plug into a job (seed 000's script names)."""

    BEFORE_PRINT_STARTED = "beforePrintStarted"
    AFTER_PRINT_DONE = "afterPrintDone"
    AFTER_PRINT_PAUSED = "afterPrintPaused"
    BEFORE_PRINT_RESUMED = "beforePrintResumed"
    AFTER_PRINT_CANCELLED = "afterPrintCancelled"
    BEFORE_PRINT_RECOVERED = "beforePrintRecovered"


class Outcome(enum.Enum):
    DONE = "done"
    CANCELLED = "cancelled"
    ERROR = "error"


@attrs.frozen
class JobResult:
    outcome: Outcome
    time: float
    filepos: int | None          # the last file position the printer acknowledged
    error: str | None = None
    #: The link or the printer went away (not the file, not the user): the crash journal
    #: is kept so that the print can be recovered.
    interrupted: bool = False


class EngineView(Protocol):
    """What job control reads and sets on the protocol engine."""

    printing: bool

    @property
    def last_acked(self) -> Command | None: ...


class JobControl:
    def __init__(self, *, states: PrinterStates, sink: CommandSink, fire: Publish,
                 clock: Callable[[], float], serial: SerialSpec, pipeline: Pipeline,
                 engine: EngineView, tracker: Tracker,
                 run_script: Callable[[str, dict[str, Any]], object],
                 check_script: Callable[[str, dict[str, Any]], list[Command]],
                 queue_script: Callable[[str, list[Command], Any], None],
                 on_fail: Callable[[], None] | None = None) -> None:
        """`on_fail` is called the moment the link or the printer fails a print, before
        anything the printer acknowledges later (the crash journal settles on it)."""
        self._states = states
        self._sink = sink
        self._fire = fire
        self._clock = clock
        self._serial = serial
        self._pipeline = pipeline
        self._engine = engine
        self._tracker = tracker
        self._run_script = run_script
        #: Render a script whole and check every command (ScriptError), queue it after.
        self._check_script = check_script
        self._queue_script = queue_script
        self._on_fail = on_fail
        self.job: FileJob | None = None
        #: The file the session pulls lines from: the job while it prints, else None.
        self.source: FileJob | None = None
        self.result: JobResult | None = None
        self.pause_record: dict[str, Any] | None = None
        self.cancel_record: dict[str, Any] | None = None
        self.capture_deadline = INF
        self.estimator: Any = None
        self._capture: str | None = None
        self._after_capture: Callable[[], None] | None = None
        self._started_at = 0.0
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._last_filepos: int | None = None
        self._error: str | None = None  # why a print that is being cancelled failed
        self._keep_journal = False  # a cancel because the host stops: the print can resume
        #: Why no print may start now besides the state (an SD upload runs), or None.
        self.blocker: Callable[[], str | None] = lambda: None

    # ---- queries -------------------------------------------------------------------------
    @property
    def state(self) -> PrinterState:
        return self._states.state

    @property
    def active(self) -> bool:
        return self.job is not None and self._states.in_job

    def elapsed(self) -> float:
        now = self._clock()
        paused = self._paused_total + (now - self._paused_at if self._paused_at else 0.0)
        return max(now - self._started_at - paused, 0.0) if self.job else 0.0

    def time_left(self) -> float | None:
        """Seconds left: the `printer.estimation.factory` stage's estimator if one was
        declared (OctoPrint's `estimate(progress, printTime, cleanedPrintTime,
        statisticalTotalPrintTime, statisticalTotalPrintTimeType)`), else M73 or bytes."""
        job = self.job
        if job is None:
            return None
        elapsed = self.elapsed()
        if self.estimator is not None:
            try:
                result = self.estimator.estimate(job.progress, elapsed, elapsed, None, None)
                return result[0] if isinstance(result, tuple) else result  # type: ignore[no-any-return]
            except Exception:  # a broken estimator must not stop the print: say so once
                log.exception("the print time estimator failed; using the built-in estimate")
                self.estimator = None
        return job.time_left(elapsed)

    def payload(self, **extra: Any) -> dict[str, Any]:
        p = self.job.file.payload() if self.job else {}
        p.update(extra)
        return p

    def _acked_filepos(self) -> int | None:
        """The file position of the last acknowledged file line. Remembered, because by the
        time a job ends the last acknowledged line may be M400 or a capture's M114."""
        pos = file_position(self._engine.last_acked)
        if pos is not None:
            self._last_filepos = pos
        return self._last_filepos

    def _to(self, new: PrinterState) -> None:
        self._states.to(new)

    def _moment(self, moment: Moment, context: dict[str, Any]) -> None:
        self._run_script(moment.value, context)

    # ---- start and finish ------------------------------------------------------------------
    def start(self, job: FileJob, *, recovery: dict[str, Any] | None = None) -> None:
        """Start printing `job`. With `recovery` (session/recovery.py's `recovery_context`)
        it continues an interrupted print: beforePrintRecovered instead of beforePrintStarted,
        whole or not at all (it does not render or the guard refuses a command: JobStateError
        says why, and nothing is queued or started)."""
        state = self._states.state
        if state is not S.OPERATIONAL or self.blocker():
            raise JobStateError(f"cannot start a print while {self.blocker() or state.value}")
        prologue: list[Command] = []
        if recovery is not None:
            try:
                prologue = self._check_script(Moment.BEFORE_PRINT_RECOVERED.value, {
                    "event": job.file.payload(), "recovery": recovery})
            except ScriptError as exc:
                why = " ".join(str(exc).splitlines())
                raise JobStateError(f"cannot recover the print of {job.file.path}: {why}; "
                                    "nothing was sent") from None
        self.job, self.result = job, None
        self.estimator = None
        kind = job.file.origin  # the seed's job types: local or sdcard
        for _, factory in self._pipeline.call(Phase.PRINTER_ESTIMATION_FACTORY, kind):
            if callable(factory):
                self.estimator = factory(kind)
                break
        self.pause_record = self.cancel_record = None
        self._last_filepos = self._error = None
        self._started_at, self._paused_at, self._paused_total = self._clock(), None, 0.0
        self._to(S.STARTING)
        self._engine.printing = True
        self._sink.enqueue("M110 N0", part_of_job=True,
                           tags=frozenset({"trigger:comm.start_print"}))
        self._fire(Event.PRINT_STARTED, self.payload())
        if recovery is None:
            self._moment(Moment.BEFORE_PRINT_STARTED, {"event": self.payload()})
        else:
            self._queue_script(Moment.BEFORE_PRINT_RECOVERED.value, prologue, self.payload())
        self._device("start")
        self._sink.add_marker(self._to_printing)

    def _to_printing(self) -> None:
        if self._states.state in (S.STARTING, S.RESUMING):
            self._to(S.PRINTING)
            self.source = self.job if self.job is not None and self.job.streams else None

    def _device(self, moment: str) -> None:
        """The printer commands of an SD print's moment (none for a streamed file)."""
        tags = frozenset({f"trigger:{moment}"})
        for line in self.job.device_commands(moment) if self.job else ():
            self._sink.enqueue(line, part_of_job=True, tags=tags)

    def printer_done(self) -> None:
        """The printer finished the file itself (an SD print's `Done printing file`)."""
        state = self._states.state
        if state in (S.PAUSED, S.RESUMING):
            self._to(S.PRINTING)
        if self._states.state is S.PRINTING:
            self.file_done()

    def file_done(self) -> None:
        """The session found the end of the file."""
        self.source = None
        self._to(S.FINISHING)
        self._sink.enqueue("M400", part_of_job=True,
                           tags=frozenset({"trigger:comm.finish_print"}))
        self._sink.add_marker(self._finished)

    def _finished(self) -> None:
        t = self.elapsed()
        # Every file line was acknowledged before this marker: the position is the file's end.
        self.result = JobResult(Outcome.DONE, t, self.job.pos if self.job else None)
        self._fire(Event.PRINT_DONE, self.payload(time=t))
        self._moment(Moment.AFTER_PRINT_DONE, {"event": self.payload(time=t)})
        self._sink.add_marker(self._to_operational)

    def _to_operational(self) -> None:
        self._engine.printing = False
        self.source = None
        if self._states.state in JOB_STATES:
            self._to(S.OPERATIONAL)

    # ---- pause and resume ----------------------------------------------------------------------
    def pause(self, *, capture: bool | None = None, scripts: bool = True) -> None:
        state = self._states.state
        if state not in PAUSABLE:
            raise JobStateError(f"cannot pause while {state.value}")
        self._paused_at = self._clock()
        self.source = None  # the file stops at once
        self._to(S.PAUSING)
        self._device("pause")
        if capture is None:
            capture = self._serial.log_position_on_pause
        if capture:
            self._capture_position("pause", self._paused)
        else:
            self._paused(scripts=scripts)

    def _paused(self, *, scripts: bool = True) -> None:
        extra = {"position": (self.pause_record or {}).get("position"),
                 "fileposition": self.job.pos if self.job else None,
                 "progress": self.job.progress if self.job else None}
        self._fire(Event.PRINT_PAUSED, self.payload(**extra))
        if scripts:
            self._moment(Moment.AFTER_PRINT_PAUSED, {"event": self.payload(**extra),
                                                     **self._record_context("pause")})
        self._sink.add_marker(self._to_paused)

    def _to_paused(self) -> None:
        if self._states.state is S.PAUSING:
            self._to(S.PAUSED)

    def paused_by_printer(self) -> None:
        """`// action:paused`: the printer paused itself; no scripts, no capture."""
        if self._states.state in PAUSABLE:
            self._paused_at = self._clock()
            self.source = None
            self._to(S.PAUSED)
            self._fire(Event.PRINT_PAUSED, self.payload())

    def resume(self, *, scripts: bool = True) -> None:
        state = self._states.state
        if state not in (S.PAUSED, S.PAUSING):
            raise JobStateError(f"cannot resume while {state.value}")
        self._end_pause()
        self._to(S.RESUMING)
        self._fire(Event.PRINT_RESUMED, self.payload())
        if scripts:
            self._moment(Moment.BEFORE_PRINT_RESUMED, {"event": self.payload(),
                                                       **self._record_context("pause")})
        self._device("resume")
        self._sink.add_marker(self._to_printing)

    def resumed_by_printer(self) -> None:
        """`// action:resumed`: the printer resumed by itself; the file continues at once."""
        if self._states.state is S.PAUSED:
            self._end_pause()
            self._to(S.PRINTING)
            self.source = self.job if self.job is not None and self.job.streams else None

    def _end_pause(self) -> None:
        if self._paused_at is not None:
            self._paused_total += self._clock() - self._paused_at
            self._paused_at = None

    # ---- cancel and failure ----------------------------------------------------------------------
    def cancel(self, *, firmware_error: str | None = None, capture: bool | None = None,
               error: str | None = None, shutdown: bool = False) -> None:
        """Cancel the print. With `error` the print fails for that reason instead (a line
        the printer must not get): it stops the same way, afterPrintCancelled included (its
        bundled default switches the heaters off), and ends as an error. With `shutdown` the
        host is stopping: the result is `interrupted`, so the crash journal is kept for
        `printpipe recover`."""
        state = self._states.state
        if not self.active or state is S.CANCELLING:
            raise JobStateError(f"nothing to cancel while {state.value}")
        self._error = error
        self._keep_journal = shutdown
        extra = {"firmwareError": firmware_error} if firmware_error else {}
        self._acked_filepos()  # remembered before the capture's commands are acknowledged
        self._fire(Event.PRINT_CANCELLING, self.payload(**extra))
        self._to(S.CANCELLING)
        self.source = None
        self._sink.drop_file_commands()
        self._device("cancel")
        if self._serial.abort_heatup_on_cancel:
            self._sink.enqueue("M108", tags=frozenset({"trigger:abort_heatup"}))
        if capture is None:
            capture = self._serial.log_position_on_cancel
        if capture:
            self._capture_position("cancel", self._cancelled)
        else:
            self._cancelled()

    def _cancelled(self) -> None:
        t = self.elapsed()
        pos = self._acked_filepos()
        error = self._error
        self.result = JobResult(Outcome.ERROR if error else Outcome.CANCELLED, t, pos, error,
                                interrupted=self._keep_journal)
        extra = {"time": t, "fileposition": pos,
                 "progress": self.job.progress if self.job else None,
                 "position": (self.cancel_record or {}).get("position")}
        self._fire(Event.PRINT_CANCELLED, self.payload(**extra))
        self._moment(Moment.AFTER_PRINT_CANCELLED, {"event": self.payload(**extra),
                                                    **self._record_context("cancel")})
        failed = {"reason": "error", "error": error} if error else {"reason": "cancelled"}
        self._fire(Event.PRINT_FAILED, self.payload(time=t, **failed))
        self._sink.add_marker(self._to_operational)

    def fail(self, error: str) -> None:
        """The link or the printer failed mid-print: the job ends in Error, position kept."""
        if self.job is None or self.result is not None:
            return
        if self._on_fail is not None:
            self._on_fail()
        t = self.elapsed()
        self.result = JobResult(Outcome.ERROR, t, self._acked_filepos(), error,
                                interrupted=True)
        self.source = None
        self._engine.printing = False
        self._fire(Event.PRINT_FAILED, self.payload(time=t, reason="error", error=error))

    # ---- position capture ------------------------------------------------------------------------
    def _capture_position(self, kind: str, then: Callable[[], None]) -> None:
        tags = frozenset({f"trigger:{kind}", "trigger:record_position"})
        self._sink.enqueue("M400", part_of_job=True, tags=tags)
        self._sink.add_marker(lambda: self._arm_capture(kind, then))
        self._sink.enqueue("M114", part_of_job=True, tags=tags)

    def _arm_capture(self, kind: str, then: Callable[[], None]) -> None:
        self._capture, self._after_capture = kind, then
        self.capture_deadline = self._clock() + self._serial.timeouts.position_wait

    def on_position(self, position: dict[str, Any]) -> None:
        if self._capture is None:
            return
        t = self._tracker
        record = {"position": position, "temperature": t.temperature_payload(), "fan": t.fan}
        if self._capture == "pause":
            self.pause_record = record
        else:
            self.cancel_record = record
        self._capture_done()

    def capture_timeout(self) -> None:
        log.warning("Did not receive parseable position data from printer within %ss, "
                    "continuing without it", self._serial.timeouts.position_wait)
        self._capture_done()

    def _capture_done(self) -> None:
        then, self._after_capture, self._capture = self._after_capture, None, None
        self.capture_deadline = INF
        if then is not None:
            then()

    def _record_context(self, kind: str) -> dict[str, Any]:
        record = self.pause_record if kind == "pause" else self.cancel_record
        record = record or {}
        return {f"{kind}_position": record.get("position"),
                f"{kind}_temperature": record.get("temperature"),
                f"{kind}_fanspeed": record.get("fan")}

    # ---- triggers from the printer and the file -------------------------------------------------
    def action(self, name: str) -> None:
        """`// action:<name>` from the printer."""
        handlers: dict[str, Callable[[], None]] = {
            "pause": self.pause, "paused": self.paused_by_printer, "resume": self.resume,
            "resumed": self.resumed_by_printer, "cancel": self.cancel}
        handler = handlers.get(name)
        if handler is None:
            return
        try:
            handler()
        except JobStateError as exc:
            log.info("action:%s ignored: %s", name, exc)

    def pausing_command(self, cmd: Command) -> None:
        """A pausing command (M0/M1/M25) passed the queuing phase while printing."""
        if self._states.state is S.PRINTING and not (
                "trigger:pause" in cmd.tags or "trigger:cancel" in cmd.tags):
            log.info("Pausing print job due to command %s", cmd.line)
            self.pause()

    def m73(self, cmd: Command) -> None:
        job = self.job
        if job is None or not self._serial.trust_m73:
            return
        p, r = cmd.param("P"), cmd.param("R")
        if p is not None:
            job.m73_progress = min(max(p / 100.0, 0.0), 1.0)
        if r is not None:
            job.m73_left = r * 60.0
