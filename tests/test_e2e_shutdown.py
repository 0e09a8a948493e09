"""SIGTERM mid-print (a `systemctl stop`, a shutdown), end to end with real processes, on the
bench of test_e2e_recovery.py (`printpipe virtual --record` as its own process): `printpipe
serve` or `printpipe print` gets SIGTERM while the printer is in the middle of the file. At
most a second of file lines reaches the printer after the signal (here: at most the print's
rate for one second, measured before the signal; in practice the lines already in flight),
the heaters are switched off after the last file line, the process exits within 5 s, and
the journal is kept: `printpipe recover` continues with exactly the first line the printer
did not take. A printer that stopped answering (SIGSTOPped) holds the exit no longer, and a
second SIGTERM quits at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import test_e2e_recovery
from conftest import ROOT, run_cli
from test_e2e_recovery import (
    MARLIN,
    file_commands,
    job_text,
    recorded,
    serving,
    wait_for,
)

from pipeline.hooks.scripts import ScriptSet, profile_context
from pipeline.session.recovery import Journal, recovery_context

bench = test_e2e_recovery.bench  # the fixture: the printer process, the config, the file

#: What the stop may send after the last file line: M108 (the cancel's), the heaters off, and
#: the bundled afterPrintCancelled (motors off, heaters off, fan off).
STOP_LINES = {"M108", "M104 T0 S0", "M140 S0", "M84", "M106 S0"}
MOVES = 450  # about 2 s of printing on this bench


def file_taken(bench) -> int:
    """How many file lines the printer has accepted so far."""
    commands = file_commands(bench["job"].read_text())
    n = 0
    for line in recorded(bench["record"]):
        if n < len(commands) and line == commands[n]:
            n += 1
    return n


def term_mid_print(proc: subprocess.Popen[str], bench) -> tuple[float, int, float]:
    """SIGTERM `proc` once the printer took a fifth of the file and the journal is past the
    first layer; returns the signal's time, the file lines taken then, and the print's rate
    (lines/s) measured just before."""
    journal, total = bench["journal"], len(file_commands(bench["job"].read_text()))
    wait_for(lambda: journal.exists() and file_taken(bench) >= total // 10, "the print's start")
    t1, n1 = time.monotonic(), file_taken(bench)
    wait_for(lambda: (json.loads(journal.read_text())["state"]["z"] or 0) >= 0.5
             and file_taken(bench) >= total // 5, "journal past the first layer")
    t2, n2 = time.monotonic(), file_taken(bench)
    proc.send_signal(signal.SIGTERM)
    return t2, n2, (n2 - n1) / (t2 - t1)


def check_stopped_then_recovered(bench, taken_at_signal: int, rate: float,
                                 *named: str) -> None:
    """The record: file lines up to the stop (at most one second's worth after the signal),
    then only the stop's lines (heaters off among them), then after `printpipe recover` the
    prologue and the file from exactly the first line the printer had not taken."""
    text = bench["job"].read_text()
    commands = file_commands(text)
    journal = Journal.from_json(json.loads(bench["journal"].read_text()))
    out = run_cli("recover", "-c", str(bench["cfg"]), *named)
    assert out.returncode == 0, out.stderr
    time.sleep(0.2)  # the printer process writes its record every 50 ms
    prologue = ScriptSet.load(None, {}).render("beforePrintRecovered", {
        "printer_profile": profile_context(), "recovery": recovery_context(journal)})
    lines = recorded(bench["record"])
    cut = next(i for i in range(len(lines)) if lines[i:i + len(prologue)] == prologue)
    stopped, after = lines[:cut], lines[cut + len(prologue):]
    taken = 0
    while taken < len(stopped) and stopped[taken] == commands[taken]:
        taken += 1
    tail = stopped[taken:]
    assert taken < len(commands), "the print ended before the signal"
    assert taken - taken_at_signal <= rate * 1.0, (taken - taken_at_signal, rate)
    assert {"M104 T0 S0", "M140 S0"} <= set(tail) and set(tail) <= STOP_LINES, tail
    first = len(file_commands("\n".join(text.splitlines()[:journal.line])))
    assert first == taken                      # the journal is exactly where the printer was
    assert after == commands[first:]           # and the print goes on from there to its end
    assert not bench["journal"].exists()


@pytest.mark.parametrize("bench", [MARLIN], indirect=True, ids=["marlin"])
def test_sigterm_of_printpipe_serve_mid_print_stops_at_once_heaters_off_then_recover(bench):
    bench["job"].write_text(job_text(MOVES))
    with serving(bench["cfg"]) as (proc, client):
        r = client.post("/api/files/local", data={"print": "true"},
                        files={"file": ("job.gcode", bench["job"].read_bytes())})
        assert r.status_code == 201, r.text
        t0, taken, rate = term_mid_print(proc, bench)
        assert proc.wait(5) == 0
        took = time.monotonic() - t0
    assert took < 5.0
    time.sleep(0.2)
    check_stopped_then_recovered(bench, taken, rate)


def test_sigterm_of_printpipe_print_mid_print_exits_143_and_recover_resumes(bench):
    bench["job"].write_text(job_text(MOVES))
    with subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "print", "-c",
                           str(bench["cfg"]), str(bench["job"])], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        try:
            t0, taken, rate = term_mid_print(proc, bench)
            assert proc.wait(5) == 143
            took = time.monotonic() - t0
            assert "stopped by SIGTERM" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert took < 5.0
    time.sleep(0.2)
    check_stopped_then_recovered(bench, taken, rate, str(bench["job"]))  # outside storage: named


@pytest.mark.parametrize("second", [False, True], ids=["one-sigterm", "two-sigterms"])
def test_a_printer_that_stopped_answering_holds_the_exit_no_longer(bench, second):
    """The printer process is frozen (SIGSTOP) just before the SIGTERM: the service still
    exits within 5 s (a second SIGTERM: at once, after its bounded heaters-off try), and the
    journal is kept."""
    bench["job"].write_text(job_text(MOVES))
    printer = bench["printer"]
    with serving(bench["cfg"]) as (proc, client):
        r = client.post("/api/files/local", data={"print": "true"},
                        files={"file": ("job.gcode", bench["job"].read_bytes())})
        assert r.status_code == 201, r.text
        wait_for(bench["journal"].exists, "the journal")
        os.kill(printer.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            if second:
                time.sleep(0.3)
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(5)
            took = time.monotonic() - t0
        finally:
            os.kill(printer.pid, signal.SIGCONT)
    assert code == (130 if second else 0)
    assert took < (2.5 if second else 5.0)
    assert bench["journal"].exists()


async def test_the_heaters_go_off_even_when_after_print_cancelled_no_longer_does_it(tmp_path):
    """In process: the stop of a shutdown with an afterPrintCancelled that only parks."""
    from http_fixtures import serve_for_test
    from sample_prints import file_lines, write_sample
    path, expected = write_sample(tmp_path, 6000)
    async with serve_for_test(tmp_path, "scripts:\n  gcode:\n    afterPrintCancelled: G1 X0\n"
                              ) as srv:
        control = srv.service
        control.select(path, "job.gcode")
        await control.start()
        printer = control.session
        await printer.wait_until(lambda: printer.core.jobs.job.line_no > 500, 20, poll=0.01)
        assert control.stop_for_exit()
        result = await control.wait_job_end(10)
        accepted = list(printer.virtual.firmware.accepted)
    assert result is not None and result.interrupted          # the journal is kept
    taken = file_lines(accepted, expected)
    assert taken == expected[:len(taken)] and len(taken) < len(expected) // 2
    last = max(i for i, line in enumerate(accepted) if line in set(expected))
    assert {"M104 T0 S0", "M140 S0", "G1 X0"} <= set(accepted[last + 1:])
