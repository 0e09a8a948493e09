"""Print jobs end to end over a real pty with the virtual printer: exactly once under faults,
pause/resume, cancel, failures mid-print, and `printpipe print` with its progress bar."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import trio
from conftest import ROOT, load_yaml, open_printer, run_cli
from sample_prints import file_lines, write_sample

from pipeline.session.jobs import Outcome
from pipeline.session.states import PrinterState as S

FAST = """serial:
  timeouts:
    communication: 0.5
    temperature: 0.3
    resend_ok: 0.2
"""


async def test_print_is_exact_under_faults_that_need_no_timeout(tmp_path):
    # The long run under every fault, lost oks included, is on the in-memory Pair
    # (test_print_faults.py); over the pty, faults the firmware answers at once.
    path, expected = write_sample(tmp_path, 4000)
    config = load_yaml(FAST + """virtual:
  faults:
    seed: 4
    corrupt_rate: 0.01
    busy_rate: 0.01
    error_rate: 0.01
""")
    async with open_printer(config) as printer:
        await printer.start_print(path)
        result = await printer.wait_job_end(60)
        assert result is not None and result.outcome is Outcome.DONE
        assert file_lines(printer.virtual.firmware.accepted, expected) == expected
        engine = printer.core.engine
        assert engine.resends.requests > 20  # the faults really happened
        assert engine.deadlines.timeouts_total == 0   # and none of them needed a timeout
        assert printer.core.state is S.OPERATIONAL


async def test_pause_resume_gives_the_same_record(tmp_path):
    path, expected = write_sample(tmp_path, 3000, seed=2)
    async with open_printer(load_yaml(FAST)) as printer:
        jobs = printer.core.jobs
        job = await printer.start_print(path)
        assert await printer.wait_until(lambda: job.line_no >= 1200, 20, poll=0.001)
        jobs.pause()
        assert await printer.wait_until(lambda: printer.core.state is S.PAUSED, 15, poll=0.01)
        fw = printer.virtual.firmware
        assert fw.accepted[-2:] == ["M400", "M114"]
        assert jobs.pause_record["position"]["x"] is not None
        count = len(fw.accepted)
        await trio.sleep(0.3)
        assert len(fw.accepted) == count  # nothing moves while paused
        jobs.resume()
        result = await printer.wait_job_end(30)
        assert result.outcome is Outcome.DONE
        assert file_lines(fw.accepted, expected) == expected


async def test_cancel_stops_within_bounded_lines_and_ends_operational(tmp_path):
    path, expected = write_sample(tmp_path, 5000, seed=3)
    async with open_printer(load_yaml(FAST)) as printer:
        job = await printer.start_print(path)
        assert await printer.wait_until(lambda: job.line_no >= 1000, 20, poll=0.001)
        at_cancel = job.line_no
        printer.core.jobs.cancel()
        result = await printer.wait_job_end(15)
        assert result.outcome is Outcome.CANCELLED
        assert printer.core.state is S.OPERATIONAL
        assert job.line_no - at_cancel <= 3
        sent = file_lines(printer.virtual.firmware.accepted, expected)
        assert sent == expected[:len(sent)] and len(sent) < len(expected)


async def _fails_mid_print(tmp_path, faults: str, reason: str, *states: S) -> None:
    path, expected = write_sample(tmp_path, 4000, seed=5)
    async with open_printer(load_yaml(FAST + "virtual:\n  faults:\n" + faults)) as printer:
        job = await printer.start_print(path)
        result = await printer.wait_job_end(20)
        assert result.outcome is Outcome.ERROR and reason in result.error
        assert result.filepos is not None and 0 < result.filepos < job.file.size
        assert printer.core.state in states
        # the recorded position is really where the printer got to
        done = file_lines(printer.virtual.firmware.accepted, expected)
        assert done == expected[:len(done)]


async def test_printer_reset_mid_print_ends_in_error_with_position(tmp_path):
    await _fails_mid_print(tmp_path, "    reset_after: 1500\n", "reset", S.OPERATIONAL)


async def test_vanished_port_mid_print_ends_in_error_with_position(tmp_path):
    await _fails_mid_print(tmp_path, "    disconnect_after: 1500\n", "", S.ERROR,
                           S.CLOSED_WITH_ERROR)


def cli_on_a_tty(*args: str, interrupt_when: str | None = None) -> tuple[int, str, str]:
    """Run `printpipe <args>` with its stdout on a pty (a terminal) and read it to the end;
    with `interrupt_when`, press Ctrl-C (SIGINT) once that text has appeared.
    Returns (exit code, what the terminal showed, stderr)."""
    master, slave = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", *args], cwd=ROOT,
                          stdout=slave, stderr=subprocess.PIPE, text=True) as proc:
        os.close(slave)
        shown = b""
        deadline = time.monotonic() + 60
        try:
            while select.select([master], [], [], max(deadline - time.monotonic(), 0))[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
                if interrupt_when is not None and interrupt_when.encode() in shown:
                    proc.send_signal(signal.SIGINT)
                    interrupt_when = None
            code = proc.wait(10)
            err = proc.stderr.read()
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
    return code, shown.decode(), err


def write_config(tmp_path, text: str) -> str:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    return str(cfg)


# Each move takes the virtual printer 2 ms, so a print lasts long enough for live updates.
SLOW_MOVES = "virtual:\n  faults:\n    ok_delay: 0.002\n"


def test_cli_print_shows_a_progress_bar_and_exits_0(tmp_path):
    path, _ = write_sample(tmp_path, 300)
    code, text, err = cli_on_a_tty("print", "-c", write_config(tmp_path, SLOW_MOVES), path)
    assert code == 0, err
    assert text.count("\r[") >= 2  # redrawn in place while printing, then the final bar
    assert "lines/s" in text and "left" in text
    assert "done: job.gcode" in text


def test_cli_print_plain_progress_when_not_a_terminal(tmp_path):
    path, _ = write_sample(tmp_path, 500)
    out = run_cli("print", path)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout and "done: job.gcode" in out.stdout


def test_cli_print_failure_exits_nonzero_with_the_reason(tmp_path):
    path, _ = write_sample(tmp_path, 3000)
    cfg = write_config(tmp_path, "virtual:\n  faults:\n    fatal_after: 500\n")
    out = run_cli("print", "-c", cfg, path)
    assert out.returncode == 1
    assert "Thermal Runaway" in out.stderr and "file position" in out.stderr


def test_cli_ctrl_c_cancels_cleanly(tmp_path):
    path, _ = write_sample(tmp_path, 5000)  # 10 s of slow moves: cancelled long before
    code, text, err = cli_on_a_tty("print", "-c", write_config(tmp_path, SLOW_MOVES), path,
                                   interrupt_when="\r[")
    assert code == 130, err
    assert "print cancelled" in text


def test_cli_ctrl_c_waits_for_a_printer_that_takes_long_to_finish_its_cancel(tmp_path):
    # afterPrintCancelled dwells 3.5 s: longer than the 3 s of silence after which a printer is
    # let go, but this one says busy every 2 s as Marlin does, and then switches heaters off
    path, _ = write_sample(tmp_path, 5000)
    config = write_config(tmp_path, SLOW_MOVES + "scripts:\n  gcode:\n"
                                    "    afterPrintCancelled: |\n      G4 S3.5\n      M104 S0\n")
    start = time.monotonic()
    code, text, err = cli_on_a_tty("print", "-c", config, path, interrupt_when="\r[")
    assert code == 130, err
    assert "print cancelled" in text and "sent nothing" not in err
    assert time.monotonic() - start > 3.5
