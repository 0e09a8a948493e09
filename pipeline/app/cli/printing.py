"""`printpipe print`: print one file on the configured printer with a live progress bar on a
terminal (plain progress lines otherwise); Ctrl-C cancels the print cleanly. It runs the whole
service (events and subscriptions included): Startup before the print, Shutdown after it.
A missing file or one that is not G-code text exits 2 before anything starts.
`printpipe recover` resumes the print a crash interrupted and follows it the same way.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
from typing import TextIO

import trio

from pipeline.app.control import Control
from pipeline.app.service import open_service
from pipeline.config.reader import HostConfig
from pipeline.session.filejob import SNIFF, not_gcode
from pipeline.session.jobs import JobStateError, Outcome


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def progress_line(progress: float, lines: int, rate: float, elapsed: float,
                  left: float | None, *, width: int = 30) -> str:
    filled = int(progress * width)
    bar = "#" * filled + "-" * (width - filled)
    return (f"[{bar}] {progress * 100:5.1f}%  {lines} lines  {rate:7.0f} lines/s  "
            f"elapsed {_duration(elapsed)}  left {_duration(left)}")


async def _report(control: Control, out: TextIO, tty: bool) -> None:
    last_lines, last_t = 0, trio.current_time()
    interval = 0.25 if tty else 5.0
    while True:
        await trio.sleep(interval)
        job = control.status().job
        if job is None:
            continue
        now = trio.current_time()
        rate = (job.lines - last_lines) / max(now - last_t, 1e-6)
        last_lines, last_t = job.lines, now
        line = progress_line(job.progress, job.lines, rate, job.elapsed, job.time_left)
        if tty:
            out.write("\r" + line)
        else:
            out.write(line + "\n")
        out.flush()


async def _cancel_on_signals(control: Control, out: TextIO, interrupted: list[bool]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            interrupted.append(True)
            out.write("\ncancelling the print...\n")
            with contextlib.suppress(JobStateError):  # nothing left to cancel
                control.cancel()


async def run_print(config: HostConfig, path: str, *, out: TextIO = sys.stdout) -> int:
    file = trio.Path(path)
    if not await file.is_file():
        print(f"printpipe: no such file: {path}", file=sys.stderr)
        return 2
    async with await file.open("rb") as f:
        refused = not_gcode(path, await f.read(SNIFF))
    if refused is not None:  # before connecting: nothing reaches the printer
        print(f"printpipe: {refused}", file=sys.stderr)
        return 2
    async with open_service(config) as control:
        await control.connect()
        control.select(str(await file.absolute()), file.name)
        await control.start(user="cli")
        return await _follow(control, out, file.name)


async def run_recover(config: HostConfig, *, out: TextIO = sys.stdout) -> int:
    """`printpipe recover`: resume the print a crash interrupted (exit 1, with the reason,
    when there is none or its file changed), then follow it as `printpipe print` does."""
    async with open_service(config) as control:
        if control.interrupted_print() is None:
            print(f"printpipe: there is no interrupted print to recover (no journal in "
                  f"{control.recovery.file.folder})", file=sys.stderr)
            return 1
        await control.connect()
        try:
            await control.recover()
        except JobStateError as exc:
            print(f"printpipe: {exc}", file=sys.stderr)
            return 1
        job = control.status().job
        print(f"recovering {job.file.path if job else '?'}", file=out)
        return await _follow(control, out, job.file.name if job else "?")


async def _follow(control: Control, out: TextIO, name: str) -> int:
    """Show the running print's progress until it ends; its exit code."""
    tty = out.isatty()
    interrupted: list[bool] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_report, control, out, tty)
        nursery.start_soon(_cancel_on_signals, control, out, interrupted)
        result = await control.wait_job_end()
        nursery.cancel_scope.cancel()
    status = control.status()
    job = status.job
    elapsed = result.time if result else 0.0
    if tty and job is not None:
        out.write("\r" + progress_line(job.progress, job.lines, 0.0, elapsed, 0.0) + "\n")
    if result is None or result.outcome is Outcome.ERROR:
        why = (result.error if result else None) or status.error or "unknown error"
        print(f"printpipe: print failed: {why} (last acknowledged file position "
              f"{result.filepos if result else None})", file=sys.stderr)
        return 1
    if result.outcome is Outcome.CANCELLED:
        print(f"print cancelled after {_duration(elapsed)} at file position "
              f"{result.filepos}", file=out)
        return 130 if interrupted else 1
    lines = job.lines if job else 0
    name = job.file.name if job else name
    rate = lines / elapsed if elapsed > 0 else 0.0
    print(f"done: {name}, {lines} lines in {_duration(elapsed)} ({rate:.0f} lines/s)",
          file=out)
    return 0
