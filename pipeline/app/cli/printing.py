"""`printpipe print`: print one file on the configured printer with a live progress bar on a
terminal (plain progress lines otherwise); Ctrl-C cancels the print cleanly. It runs the whole
service (events and subscriptions included): Startup before the print, Shutdown after it.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from typing import TextIO

import trio

from pipeline.config.reader import HostConfig
from pipeline.session.jobs import JobStateError, Outcome
from pipeline.app.service import open_service
from pipeline.link.printer import Printer


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


async def _report(printer: Printer, out: TextIO, tty: bool) -> None:
    jobs = printer.core.jobs
    last_lines, last_t = 0, trio.current_time()
    interval = 0.25 if tty else 5.0
    while True:
        await trio.sleep(interval)
        job = jobs.job
        if job is None:
            continue
        now = trio.current_time()
        rate = (job.line_no - last_lines) / max(now - last_t, 1e-6)
        last_lines, last_t = job.line_no, now
        elapsed = jobs.elapsed()
        line = progress_line(job.progress, job.line_no, rate, elapsed, jobs.time_left())
        if tty:
            out.write("\r" + line)
        else:
            out.write(line + "\n")
        out.flush()


async def run_print(config: HostConfig, path: str, *, out: TextIO = sys.stdout) -> int:
    if not os.path.isfile(path):
        print(f"printpipe: no such file: {path}", file=sys.stderr)
        return 2
    tty = out.isatty()
    async with open_service(config) as service:
        printer = await service.connect()
        jobs = printer.core.jobs
        service.select(os.path.abspath(path), os.path.basename(path))
        await service.start_print()
        job = jobs.job
        assert job is not None
        interrupted = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_report, printer, out, tty)

            async def cancel_on_sigint() -> None:
                nonlocal interrupted
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        interrupted = True
                        out.write("\ncancelling the print...\n")
                        try:
                            jobs.cancel()
                            printer.link.wake()
                        except JobStateError:
                            pass
            nursery.start_soon(cancel_on_sigint)
            result = await printer.wait_job_end()
            nursery.cancel_scope.cancel()
        elapsed = result.time if result else 0.0
        if tty:
            out.write("\r" + progress_line(job.progress, job.line_no, 0.0, elapsed, 0.0) + "\n")
        if result is None or result.outcome is Outcome.ERROR:
            why = (result.error if result else None) or printer.core.error or "unknown error"
            print(f"printpipe: print failed: {why} (last acknowledged file position "
                  f"{result.filepos if result else None})", file=sys.stderr)
            return 1
        if result.outcome is Outcome.CANCELLED:
            print(f"print cancelled after {_duration(elapsed)} at file position "
                  f"{result.filepos}", file=out)
            return 130 if interrupted else 1
        rate = job.line_no / elapsed if elapsed > 0 else 0.0
        print(f"done: {job.file.name}, {job.line_no} lines in {_duration(elapsed)} "
              f"({rate:.0f} lines/s)", file=out)
        return 0
