"""Print jobs end to end over a real pty with the virtual printer: exactly once under faults,
pause/resume, cancel, failures mid-print, and `printpipe print` with its progress bar."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import trio
from conftest import ROOT, load_yaml, open_printer

from pipeline.session.core import PrinterState as S
from pipeline.session.jobs import Outcome
from pipeline.virtual.pair import expected_commands, sample_gcode

FAST = """serial:
  timeouts:
    communication: 0.5
    temperature: 0.3
    resend_ok: 0.2
"""


def write_sample(tmp_path, lines: int, seed: int = 1) -> tuple[str, list[str]]:
    text = sample_gcode(lines, seed=seed)
    path = tmp_path / "job.gcode"
    path.write_text(text)
    return str(path), expected_commands(text)


def file_lines(accepted: list[str], expected: list[str]) -> list[str]:
    wanted = set(expected)
    return [a for a in accepted if a in wanted]


async def test_20000_lines_exact_under_faults(tmp_path):
    path, expected = write_sample(tmp_path, 20000)
    # Each lost ok costs one ok timeout; keep it short (autoreport off: its interval + 1 s
    # would be the floor of the timeout).
    config = load_yaml("""serial:
  timeouts:
    communication: 0.2
    communication_busy: 0.2
    temperature: 0.01
    temperature_autoreport: 0
    resend_ok: 0.1
virtual:
  faults:
    seed: 4
    corrupt_rate: 0.01
    lost_ok_rate: 0.001
    busy_rate: 0.01
""")
    async with open_printer(config) as printer:
        await printer.start_print(path)
        result = await printer.wait_job_end(120)
        assert result is not None and result.outcome is Outcome.DONE
        assert file_lines(printer.virtual.firmware.accepted, expected) == expected
        assert printer.core.engine._resend.requests > 50  # the faults really happened
        assert printer.core.state is S.OPERATIONAL


async def test_pause_resume_gives_the_same_record(tmp_path):
    path, expected = write_sample(tmp_path, 3000, seed=2)
    async with open_printer(load_yaml(FAST)) as printer:
        jobs = printer.core.jobs
        job = await printer.start_print(path)
        assert await printer.wait_until(lambda: job.line_no >= 1200, 20, poll=0.001)
        jobs.pause()
        printer.link.wake()
        assert await printer.wait_until(lambda: printer.core.state is S.PAUSED, 15, poll=0.01)
        fw = printer.virtual.firmware
        assert fw.accepted[-2:] == ["M400", "M114"]
        assert jobs.pause_record["position"]["x"] is not None
        count = len(fw.accepted)
        await trio.sleep(0.3)
        assert len(fw.accepted) == count  # nothing moves while paused
        jobs.resume()
        printer.link.wake()
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
        printer.link.wake()
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


def test_cli_print_shows_a_progress_bar_and_exits_0():
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "print",
                             "configs/calibration-cube.gcode"], cwd=ROOT, stdout=slave,
                            stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(60) == 0, proc.stderr.read()
    os.close(master)
    text = out.decode()
    assert "\r[" in text and "lines/s" in text and "left" in text
    assert "done: calibration-cube.gcode" in text


def test_cli_print_plain_progress_when_not_a_terminal(tmp_path):
    path, _ = write_sample(tmp_path, 500)
    out = subprocess.run([sys.executable, "-m", "pipeline.app.cli", "print", path], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout and "done: job.gcode" in out.stdout


def test_cli_print_failure_exits_nonzero_with_the_reason(tmp_path):
    path, _ = write_sample(tmp_path, 3000)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("virtual:\n  faults:\n    fatal_after: 500\n")
    out = subprocess.run([sys.executable, "-m", "pipeline.app.cli", "print", "-c", str(cfg), path],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Thermal Runaway" in out.stderr and "file position" in out.stderr


def test_cli_ctrl_c_cancels_cleanly(tmp_path):
    path, _ = write_sample(tmp_path, 200000)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "print", path], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import time
    time.sleep(2.5)
    proc.send_signal(2)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "print cancelled" in out
