"""`printpipe print`: print one file on the configured printer with a live progress bar on a
terminal (plain progress lines otherwise), with the heaters while they heat and the time left
measured from the print's own rate. Ctrl-C cancels the print cleanly; a printer that does not
send a byte for `serial.timeouts.silence` seconds (3) while cancelling is let go (one that
answers gets the time the cancel takes: its heaters are switched off), and a second Ctrl-C
quits (after the heaters-off of a print still running, a second at most). SIGTERM (a
shutdown) stops the print at once for `printpipe recover` (no more file lines, the cancel path
with the heaters off, the journal kept) and exits 143 within about 5 s. It runs
the whole service (events and subscriptions included): Startup before the print, Shutdown
after it.
A missing file or one that is not G-code text exits 2 before anything starts.
`printpipe recover` resumes the print a crash interrupted and follows it the same way.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from functools import partial
from typing import TextIO

import attrs
import trio

from pipeline.app.cli.interrupts import Interrupts
from pipeline.app.printers.control import PrinterControl
from pipeline.app.service import SIGNAL_GRACE, duration, open_service
from pipeline.app.startup import INTERRUPTED, TERMINATED
from pipeline.config.reader import HostConfig
from pipeline.link.serial import LAST_ACT
from pipeline.session.filejob import SNIFF, not_gcode
from pipeline.session.jobs import JobStateError, Outcome

#: A heater this far (°C) under its target is heating.
HEATING_MARGIN = 2.0
#: Time left is measured from the print's own progress once it has moved this far (a
#: fraction) for at least MEASURE_AFTER seconds; the slicer's estimate is shown, as such, before.
MEASURE_FROM = 0.01
MEASURE_AFTER = 5.0


def heating(temperatures: Mapping[str, Mapping[str, float | None]]) -> str:
    """"tool0 154/210°C bed 58/60°C" for the heaters still under their targets, or ""."""
    shown = []
    for name, t in temperatures.items():
        actual, target = t.get("actual"), t.get("target")
        if target and actual is not None and actual < target - HEATING_MARGIN:
            shown.append(f"{name} {actual:.0f}/{target:.0f}°C")
    return " ".join(shown)


@attrs.define
class Estimate:
    """Time left from the print's measured progress: the rate since progress started to move
    (heating and homing before it do not count), once it has moved for long enough."""

    moving_since: float | None = None     # elapsed seconds when progress first moved
    moving_from: float = 0.0              # the progress then

    def left(self, progress: float, elapsed: float, slicer: float | None) -> str:
        if self.moving_since is None:
            if progress > 0:
                self.moving_since, self.moving_from = elapsed, progress
        else:
            moved = progress - self.moving_from
            took = elapsed - self.moving_since
            if moved >= MEASURE_FROM and took >= MEASURE_AFTER:
                return f"left {duration(took / moved * (1.0 - progress))}"
        if slicer is None:
            return "left --:--"
        return f"left ~{duration(slicer)} (slicer)"


def progress_line(progress: float, lines: int, rate: float, elapsed: float, left: str,
                  heat: str = "", *, width: int = 30) -> str:
    filled = int(progress * width)
    bar = "#" * filled + "-" * (width - filled)
    doing = f"heating {heat}" if heat else f"{lines} lines  {rate:7.0f} lines/s"
    return (f"[{bar}] {progress * 100:5.1f}%  {doing}  elapsed {duration(elapsed)}  {left}")


async def _report(control: PrinterControl, out: TextIO, tty: bool) -> None:
    last_lines, last_t = 0, trio.current_time()
    interval = 0.25 if tty else 5.0
    estimate = Estimate()
    width = 0
    while True:
        await trio.sleep(interval)
        status = control.status()
        job = status.job
        if job is None:
            continue
        now = trio.current_time()
        rate = (job.lines - last_lines) / max(now - last_t, 1e-6)
        last_lines, last_t = job.lines, now
        line = progress_line(job.progress, job.lines, rate, job.elapsed,
                             estimate.left(job.progress, job.elapsed, job.time_left),
                             heating(status.temperatures))
        if tty:  # pad over a longer line drawn before
            out.write("\r" + line.ljust(width))
            width = len(line)
        else:
            out.write(line + "\n")
        out.flush()


async def _until_silent(control: PrinterControl, scope: trio.CancelScope, silence: float) -> None:
    """Cancel `scope` once the printer has sent no line for `silence` seconds (a printer that
    stopped answering never confirms the cancel)."""
    heard = [trio.Event()]
    control.on_line(lambda _line: heard[0].set())
    while True:
        with trio.move_on_after(silence) as silent:
            await heard[0].wait()
        if silent.cancelled_caught:
            scope.cancel()
            return
        heard[0] = trio.Event()


def _stop_now(control: PrinterControl, interrupts: Interrupts, out: TextIO) -> None:
    """Ctrl-C before a print runs: close the link at once and end the command."""
    out.write("\nstopping (Ctrl-C again to quit at once)\n")
    control.abandon()
    interrupts.stop()


async def unprintable(path: str) -> str | None:
    """Why the file at `path` cannot be printed (missing, not G-code text); None when it can.
    Checked before connecting: nothing reaches the printer."""
    file = trio.Path(path)
    if not await file.is_file():
        return f"no such file: {path}"
    async with await file.open("rb") as f:
        return not_gcode(path, await f.read(SNIFF))


async def run_print(config: HostConfig, path: str, interrupts: Interrupts, *,
                    out: TextIO = sys.stdout) -> int:
    refused = await unprintable(path)
    if refused is not None:
        print(f"printpipe: {refused}", file=sys.stderr)
        return 2
    file = trio.Path(path)
    async with open_service(config) as control:
        interrupts.on_first = partial(_stop_now, control, interrupts, out)
        interrupts.last_words = partial(control.cut, LAST_ACT + 0.5)
        await control.connect()
        control.select(str(await file.absolute()), file.name)
        await control.start(user="cli")
        return await _follow(control, out, file.name, interrupts)


async def run_recover(config: HostConfig, file: str | None, interrupts: Interrupts, *,
                      out: TextIO = sys.stdout) -> int:
    """`printpipe recover [FILE]`: resume the print a crash interrupted (exit 1, with the
    reason, when there is none, its journal is refused, its file changed or its prologue
    cannot run), then follow it as `printpipe print` does. FILE: the print's file, when it
    lies outside the storage folder."""
    async with open_service(config, recover_file=file) as control:
        if control.interrupted_print() is None:
            print(f"printpipe: there is no interrupted print to recover (no journal in "
                  f"{control.recovery.file.folder})", file=sys.stderr)
            return 1
        interrupts.on_first = partial(_stop_now, control, interrupts, out)
        interrupts.last_words = partial(control.cut, LAST_ACT + 0.5)
        await control.connect()
        try:
            await control.recover()
        except JobStateError as exc:
            print(f"printpipe: {exc}", file=sys.stderr)
            return 1
        job = control.status().job
        print(f"recovering {job.file.path if job else '?'}", file=out)
        return await _follow(control, out, job.file.name if job else "?", interrupts)


async def _follow(control: PrinterControl, out: TextIO, name: str, interrupts: Interrupts) -> int:
    """Show the running print's progress until it ends; its exit code. Ctrl-C cancels it."""
    tty = out.isatty()
    silence = control.config.serial.timeouts.silence
    waiting = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        def cancel_print() -> None:
            out.write("\ncancelling the print (Ctrl-C again to quit at once)...\n")
            with contextlib.suppress(JobStateError):  # nothing left to cancel
                control.cancel()
            nursery.start_soon(_until_silent, control, waiting, silence)

        def stop_print() -> None:  # SIGTERM: a shutdown
            out.write("\nSIGTERM: stopping the print; `printpipe recover` resumes it\n")
            control.stop_for_exit()
            waiting.cancel()

        interrupts.on_first = cancel_print
        interrupts.on_term = stop_print
        nursery.start_soon(_report, control, out, tty)
        with waiting:
            result = await control.wait_job_end()
        nursery.cancel_scope.cancel()
    if interrupts.terminated:
        await control.shutdown(SIGNAL_GRACE)
        print("printpipe: stopped by SIGTERM; the journal is kept: `printpipe recover` "
              "resumes the print", file=sys.stderr)
        return TERMINATED
    if waiting.cancelled_caught:
        control.abandon()
        print(f"\nprintpipe: the printer sent nothing for {silence:g} s while "
              "cancelling: disconnected without waiting for it to confirm the cancel",
              file=sys.stderr)
        return INTERRUPTED
    status = control.status()
    job = status.job
    elapsed = result.time if result else 0.0
    if tty and job is not None:
        out.write("\r" + progress_line(job.progress, job.lines, 0.0, elapsed, "left 00:00")
                  + "\n")
    if result is None or result.outcome is Outcome.ERROR:
        why = (result.error if result else None) or status.error or "unknown error"
        print(f"printpipe: print failed: {why} (last acknowledged file position "
              f"{result.filepos if result else None})", file=sys.stderr)
        return 1
    if result.outcome is Outcome.CANCELLED:
        print(f"print cancelled after {duration(elapsed)} at file position "
              f"{result.filepos}", file=out)
        return INTERRUPTED if interrupts.count else 1
    lines = job.lines if job else 0
    name = job.file.name if job else name
    rate = lines / elapsed if elapsed > 0 else 0.0
    print(f"done: {name}, {lines} lines in {duration(elapsed)} ({rate:.0f} lines/s)",
          file=out)
    return 0
