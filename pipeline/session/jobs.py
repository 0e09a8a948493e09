"""Print-job control as OctoPrint has it, sans-IO: start, finish, pause, resume, cancel and
failure, with the position capture (M400 + M114, bounded wait) for pause and cancel.

State changes ride in the host's job queue as markers that run once everything before them
is acknowledged, so a state follows the printer, not the enqueueing. Every moment where a
G-code script belongs calls `moment()` (one place; the scripts issue plugs in there), and
every moment where an event belongs fires it on the host.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Any, Callable

import attrs

from pipeline.errors import HostError
from pipeline.events.names import Event
from pipeline.gcode import Command
from pipeline.session.filejob import FileJob, file_position
from pipeline.phases import Phase

if TYPE_CHECKING:
    from pipeline.session.core import HostCore

log = logging.getLogger("printpipe.job")
INF = float("inf")


class JobStateError(HostError):
    """A job command the current state does not allow (the HTTP API answers 409)."""


class Moment(enum.Enum):
    """Where G-code scripts plug into a job (seed 000's script names)."""

    BEFORE_PRINT_STARTED = "beforePrintStarted"
    AFTER_PRINT_DONE = "afterPrintDone"
    AFTER_PRINT_PAUSED = "afterPrintPaused"
    BEFORE_PRINT_RESUMED = "beforePrintResumed"
    AFTER_PRINT_CANCELLED = "afterPrintCancelled"


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


@attrs.frozen
class Marker:
    """A job-queue entry that runs `fn` once every command before it is acknowledged."""

    fn: Callable[[], None]


class JobControl:
    def __init__(self, host: HostCore) -> None:
        from pipeline.session.core import PrinterState as S
        self.S = S
        self.host = host
        self.job: FileJob | None = None
        self.result: JobResult | None = None
        self.pause_record: dict[str, Any] | None = None
        self.cancel_record: dict[str, Any] | None = None
        self.capture_deadline = INF
        self.estimator: Any = None
        self.moment: Callable[[Moment, dict[str, Any]], None] = lambda m, ctx: None
        self._capture: str | None = None
        self._after_capture: Callable[[], None] | None = None
        self._started_at = 0.0
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._last_filepos: int | None = None
        self._busy = {S.STARTING, S.PRINTING, S.PAUSING, S.PAUSED, S.RESUMING, S.CANCELLING,
                      S.FINISHING}

    # ---- queries -------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.job is not None and self.host.state in self._busy

    def elapsed(self) -> float:
        now = self.host.clock()
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
                return result[0] if isinstance(result, tuple) else result
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
        pos = file_position(self.host.engine.last_acked)
        if pos is not None:
            self._last_filepos = pos
        return self._last_filepos

    # ---- start and finish ------------------------------------------------------------------
    def start(self, job: FileJob) -> None:
        h = self.host
        if not h.operational or self.active:
            raise JobStateError(f"cannot start a print while {h.state.value}")
        self.job, self.result = job, None
        self.estimator = None
        for _, factory in h.pipeline.call(Phase.PRINTER_ESTIMATION_FACTORY, "local"):
            if callable(factory):
                self.estimator = factory("local")
                break
        self.pause_record = self.cancel_record = None
        self._last_filepos = None
        self._started_at, self._paused_at, self._paused_total = h.clock(), None, 0.0
        h.set_state(self.S.STARTING)
        h.engine.printing = True
        h.enqueue("M110 N0", part_of_job=True, tags=frozenset({"trigger:comm.start_print"}))
        h.fire(Event.PRINT_STARTED, self.payload())
        self.moment(Moment.BEFORE_PRINT_STARTED, {"event": self.payload()})
        h.add_marker(self._to_printing)

    def _to_printing(self) -> None:
        if self.host.state in (self.S.STARTING, self.S.RESUMING):
            self.host.set_state(self.S.PRINTING)
            self.host.job_source = self.job

    def file_done(self) -> None:
        """The host found the end of the file."""
        h = self.host
        h.job_source = None
        h.set_state(self.S.FINISHING)
        h.enqueue("M400", part_of_job=True, tags=frozenset({"trigger:comm.finish_print"}))
        h.add_marker(self._finished)

    def _finished(self) -> None:
        h = self.host
        t = self.elapsed()
        # Every file line was acknowledged before this marker: the position is the file's end.
        self.result = JobResult(Outcome.DONE, t, self.job.pos if self.job else None)
        h.fire(Event.PRINT_DONE, self.payload(time=t))
        self.moment(Moment.AFTER_PRINT_DONE, {"event": self.payload(time=t)})
        h.add_marker(self._to_operational)

    def _to_operational(self) -> None:
        h = self.host
        h.engine.printing = False
        h.job_source = None
        if h.state in self._busy:
            h.set_state(self.S.OPERATIONAL)

    # ---- pause and resume ----------------------------------------------------------------------
    def pause(self, *, capture: bool | None = None, scripts: bool = True) -> None:
        h = self.host
        if h.state not in (self.S.PRINTING, self.S.STARTING, self.S.RESUMING):
            raise JobStateError(f"cannot pause while {h.state.value}")
        self._paused_at = h.clock()
        h.job_source = None  # the file stops at once
        h.set_state(self.S.PAUSING)
        if capture is None:
            capture = h.config.serial.log_position_on_pause
        if capture:
            self._capture_position("pause", self._paused)
        else:
            self._paused(scripts=scripts)

    def _paused(self, *, scripts: bool = True) -> None:
        h = self.host
        extra = {"position": (self.pause_record or {}).get("position"),
                 "fileposition": self.job.pos if self.job else None,
                 "progress": self.job.progress if self.job else None}
        h.fire(Event.PRINT_PAUSED, self.payload(**extra))
        if scripts:
            self.moment(Moment.AFTER_PRINT_PAUSED, {"event": self.payload(**extra),
                                                    **self._record_context("pause")})
        h.add_marker(self._to_paused)

    def _to_paused(self) -> None:
        if self.host.state is self.S.PAUSING:
            self.host.set_state(self.S.PAUSED)

    def paused_by_printer(self) -> None:
        """`// action:paused`: the printer paused itself; no scripts, no capture."""
        if self.host.state in (self.S.PRINTING, self.S.STARTING, self.S.RESUMING):
            self._paused_at = self.host.clock()
            self.host.job_source = None
            self.host.set_state(self.S.PAUSED)
            self.host.fire(Event.PRINT_PAUSED, self.payload())

    def resume(self, *, scripts: bool = True) -> None:
        h = self.host
        if h.state not in (self.S.PAUSED, self.S.PAUSING):
            raise JobStateError(f"cannot resume while {h.state.value}")
        if self._paused_at is not None:
            self._paused_total += h.clock() - self._paused_at
            self._paused_at = None
        h.set_state(self.S.RESUMING)
        h.fire(Event.PRINT_RESUMED, self.payload())
        if scripts:
            self.moment(Moment.BEFORE_PRINT_RESUMED, {"event": self.payload(),
                                                      **self._record_context("pause")})
        h.add_marker(self._to_printing)

    # ---- cancel and failure ----------------------------------------------------------------------
    def cancel(self, *, firmware_error: str | None = None, capture: bool | None = None) -> None:
        h = self.host
        if not self.active or h.state in (self.S.CANCELLING,):
            raise JobStateError(f"nothing to cancel while {h.state.value}")
        extra = {"firmwareError": firmware_error} if firmware_error else {}
        self._acked_filepos()  # remembered before the capture's commands are acknowledged
        h.fire(Event.PRINT_CANCELLING, self.payload(**extra))
        h.set_state(self.S.CANCELLING)
        h.job_source = None
        h.drop_file_commands()
        if h.config.serial.abort_heatup_on_cancel:
            h.enqueue("M108", tags=frozenset({"trigger:abort_heatup"}))
        if capture is None:
            capture = h.config.serial.log_position_on_cancel
        if capture:
            self._capture_position("cancel", self._cancelled)
        else:
            self._cancelled()

    def _cancelled(self) -> None:
        h = self.host
        t = self.elapsed()
        pos = self._acked_filepos()
        self.result = JobResult(Outcome.CANCELLED, t, pos)
        extra = {"time": t, "fileposition": pos,
                 "progress": self.job.progress if self.job else None,
                 "position": (self.cancel_record or {}).get("position")}
        h.fire(Event.PRINT_CANCELLED, self.payload(**extra))
        self.moment(Moment.AFTER_PRINT_CANCELLED, {"event": self.payload(**extra),
                                                   **self._record_context("cancel")})
        h.fire(Event.PRINT_FAILED, self.payload(time=t, reason="cancelled"))
        h.add_marker(self._to_operational)

    def fail(self, error: str) -> None:
        """The link or the printer failed mid-print: the job ends in Error, position kept."""
        if self.job is None or self.result is not None:
            return
        t = self.elapsed()
        self.result = JobResult(Outcome.ERROR, t, self._acked_filepos(), error)
        self.host.job_source = None
        self.host.engine.printing = False
        self.host.fire(Event.PRINT_FAILED, self.payload(time=t, reason="error", error=error))

    # ---- position capture ------------------------------------------------------------------------
    def _capture_position(self, kind: str, then: Callable[[], None]) -> None:
        h = self.host
        tags = frozenset({f"trigger:{kind}", "trigger:record_position"})
        h.enqueue("M400", part_of_job=True, tags=tags)
        h.add_marker(lambda: self._arm_capture(kind, then))
        h.enqueue("M114", part_of_job=True, tags=tags)

    def _arm_capture(self, kind: str, then: Callable[[], None]) -> None:
        self._capture, self._after_capture = kind, then
        self.capture_deadline = self.host.clock() + self.host.config.serial.timeouts.position_wait

    def on_position(self, position: dict[str, Any]) -> None:
        if self._capture is None:
            return
        t = self.host.tracker
        record = {"position": position, "temperature": t.temperature_payload(), "fan": t.fan}
        if self._capture == "pause":
            self.pause_record = record
        else:
            self.cancel_record = record
        self._capture_done()

    def capture_timeout(self) -> None:
        log.warning("Did not receive parseable position data from printer within %ss, "
                    "continuing without it", self.host.config.serial.timeouts.position_wait)
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
        try:
            if name == "pause":
                self.pause()
            elif name == "paused":
                self.paused_by_printer()
            elif name == "resume":
                self.resume()
            elif name == "resumed":
                if self.host.state is self.S.PAUSED:
                    self._paused_total += self.host.clock() - (self._paused_at or 0.0)
                    self._paused_at = None
                    self.host.set_state(self.S.PRINTING)
                    self.host.job_source = self.job
            elif name == "cancel":
                self.cancel()
        except JobStateError as exc:
            log.info("action:%s ignored: %s", name, exc)

    def pausing_command(self, cmd: Command) -> None:
        """A pausing command (M0/M1/M25) passed the queuing phase while printing."""
        if self.host.state is self.S.PRINTING and not (
                "trigger:pause" in cmd.tags or "trigger:cancel" in cmd.tags):
            log.info("Pausing print job due to command %s", cmd.line)
            self.pause()

    def m73(self, cmd: Command) -> None:
        job = self.job
        if job is None or not self.host.config.serial.trust_m73:
            return
        p, r = cmd.param("P"), cmd.param("R")
        if p is not None:
            job.m73_progress = min(max(p / 100.0, 0.0), 1.0)
        if r is not None:
            job.m73_left = r * 60.0
