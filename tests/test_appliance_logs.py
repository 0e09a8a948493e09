"""What a Pi owner reads: the progress bar (heating, a time left measured from the print), the
log lines (syslog priorities under journald, prints logged, no whole key) and the serial trace
(every line in and out, rotated at its size)."""

from __future__ import annotations

import io
import logging
import os

import pytest
import trio
from conftest import load_yaml, open_printer
from http_fixtures import serve_for_test
from sample_prints import write_sample
from test_e2e_print import cli_on_a_tty

from pipeline.app.cli.logs import JournalFormatter, setup_logging
from pipeline.app.cli.printing import Estimate, heating, progress_line
from pipeline.app.service import log_print
from pipeline.app.startup import announce_key
from pipeline.fanout.bus import BusEvent


@pytest.mark.parametrize(("temperatures", "shown"), [
    ({"tool0": {"actual": 154.2, "target": 210.0}, "bed": {"actual": 50.0, "target": 60.0}},
     "tool0 154/210°C bed 50/60°C"),
    ({"tool0": {"actual": 209.0, "target": 210.0}, "bed": {"actual": 22.0, "target": 0.0}}, ""),
    ({"tool0": {"actual": None, "target": 210.0}}, ""),        # nothing reported yet
    ({"tool0": {"actual": 25.0, "target": None}}, ""),
], ids=["both-heating", "at-target-and-off", "no-report", "no-target"])
def test_heating_shows_the_heaters_under_their_targets(temperatures, shown):
    assert heating(temperatures) == shown


def test_the_bar_shows_heating_instead_of_a_rate_of_zero():
    line = progress_line(0.0, 12, 0.0, 40.0, "left --:--", "tool0 154/210°C")
    assert "heating tool0 154/210°C" in line and "lines/s" not in line
    assert "12 lines" in progress_line(0.1, 12, 300.0, 40.0, "left --:--")


def test_time_left_is_measured_from_the_print_once_it_moved():
    estimate = Estimate()
    # heating for 60 s: no progress, the slicer's estimate shown as such
    assert estimate.left(0.0, 60.0, 900.0) == "left ~15:00 (slicer)"
    assert estimate.left(0.0, 60.0, None) == "left --:--"
    assert estimate.left(0.001, 61.0, 900.0) == "left ~15:00 (slicer)"   # starts to move
    assert estimate.left(0.005, 63.0, 900.0) == "left ~15:00 (slicer)"   # too little yet
    # 10 % in 6 s: the file takes about a minute, whatever M73 R said
    assert estimate.left(0.101, 67.0, 900.0) == "left 00:53"


def test_the_cli_bar_shows_the_printer_heating(tmp_path):
    path = tmp_path / "heat.gcode"
    path.write_text("M104 S200\nM109 S200\nG1 X10\n")
    config = tmp_path / "printer.yaml"   # heats in about 2 s, not 4.5 s (40 °C/s)
    config.write_text("printer:\n  port: virtual\nvirtual:\n  heat_rate: 90\n")
    code, shown, err = cli_on_a_tty("print", "-c", str(config), str(path))
    assert code == 0, err
    assert "heating tool0 " in shown and "/200°C" in shown


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("printpipe.print", level, __file__, 1, message, None, None)


@pytest.mark.parametrize(("level", "prefix"), [
    (logging.ERROR, "<3>"), (logging.WARNING, "<4>"), (logging.INFO, "<6>"),
    (logging.DEBUG, "<7>"), (logging.CRITICAL, "<2>")])
def test_journal_lines_carry_syslog_priorities(level, prefix):
    text = JournalFormatter("%(name)s: %(message)s").format(record(level, "a\nb"))
    assert text == f"{prefix}printpipe.print: a\n{prefix}b"   # every line of it


def test_under_journald_the_handler_writes_priorities(monkeypatch):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
        setup_logging(service=True, force=True)
        assert isinstance(root.handlers[0].formatter, JournalFormatter)
        assert logging.getLogger("printpipe.print").getEffectiveLevel() == logging.INFO
        monkeypatch.delenv("JOURNAL_STREAM")
        setup_logging(force=True)
        assert not isinstance(root.handlers[0].formatter, JournalFormatter)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("printpipe.print").setLevel(logging.NOTSET)


def test_a_generated_key_never_goes_to_the_journal_in_full(monkeypatch):
    key = "Y9NL7CKZPW5ITFbs0pleXVu1sRngqdmBnrxlEm3HTRs"  # (nor anywhere: test_check_secrets)
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    out = io.StringIO()
    announce_key(key, True, False, "/var/lib/printpipe/state/keys.json", out)
    assert key not in out.getvalue() and key[:4] in out.getvalue()
    assert "sudo printpipe keys show" in out.getvalue()


@pytest.mark.parametrize(("name", "payload", "level", "text"), [
    ("PrintStarted", {"path": "cube.gcode"}, logging.INFO, "print started: cube.gcode"),
    ("PrintDone", {"path": "cube.gcode", "time": 3725.2}, logging.INFO,
     "print done: cube.gcode in 1:02:05"),
    ("PrintCancelled", {"path": "cube.gcode", "time": 65}, logging.WARNING,
     "print cancelled: cube.gcode after 01:05"),
    ("PrintFailed", {"path": "cube.gcode", "time": 5, "error": "Thermal Runaway"},
     logging.ERROR, "print failed: cube.gcode after 00:05: Thermal Runaway"),
    ("Shutdown", {}, None, None),
])
def test_prints_are_logged_with_file_and_duration(caplog, name, payload, level, text):
    with caplog.at_level(logging.INFO, logger="printpipe.print"):
        log_print(BusEvent(name, payload, 0.0))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == (
        [(level, text)] if text else [])


async def test_a_print_through_the_service_logs_start_and_end(tmp_path, caplog):
    path, _ = write_sample(tmp_path, 50)
    with caplog.at_level(logging.INFO, logger="printpipe.print"):
        async with serve_for_test(tmp_path) as srv:
            control = srv.service
            control.select(path)
            await control.start()
            await control.wait_job_end(20)
            await trio.sleep(0.1)
    messages = [r.getMessage() for r in caplog.records if r.name == "printpipe.print"]
    assert messages[0] == "print started: job.gcode"
    assert messages[1].startswith("print done: job.gcode in 00:0")


async def test_the_serial_trace_has_every_line_and_rotates_at_its_size(tmp_path):
    config = load_yaml("serial:\n  log: true\n  log_size: 4096\n")
    trace = tmp_path / "state" / "serial.log"
    async with open_printer(config, serial_log=str(trace)) as printer:
        printer.send([f"M117 line {n}" for n in range(200)])
        assert await printer.wait_idle(20)
    older = tmp_path / "state" / "serial.log.1"
    assert older.exists()
    for path in (trace, older):
        assert os.path.getsize(path) <= 4096
    text = older.read_text() + trace.read_text()
    assert " - Send: M117 line 199\n" in text and " - Recv: ok" in text
    assert text.rstrip().endswith("Connection closed")


async def test_the_service_traces_to_its_state_folder_when_asked(tmp_path):
    async with serve_for_test(tmp_path, "serial:\n  log: true\n") as srv:
        assert srv.service.operational
    assert "Recv: FIRMWARE_NAME" in (tmp_path / "state" / "serial.log").read_text()


async def test_a_service_left_at_once_still_ends(tmp_path):
    # the print log subscribes before Startup: a Shutdown published before its task first
    # ran still ends it (it used to wait forever on a bus that had closed)
    from pipeline.app.service import open_service
    with trio.fail_after(10):
        async with open_service(load_yaml(f"storage:\n  state: {tmp_path}/state\n")):
            pass
