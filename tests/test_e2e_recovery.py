"""Resume after a crash, end to end with real processes: the virtual printer runs on its own
(`printpipe virtual --record`, so its record of accepted lines outlives the host), the host
(`printpipe print`, or `printpipe serve` printing an upload) is killed with SIGKILL mid-print,
and the print is recovered (`printpipe recover`, or a restarted `serve` and POST /api/job
recover). The printer's record then shows every file line before the kill, the recovery
prologue rendered from the journal, and the file from the first line the journal had not seen
acknowledged to its end: no line skipped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import ROOT, run_cli

from pipeline.gcode import strip_comment
from pipeline.hooks.scripts import ScriptSet, profile_context
from pipeline.session.recovery import Journal, recovery_context

KEY = "recovery-test-key-0123456789"
#: What a (re)connect (the SD card: M21, M27, M20) and the end of a print add around the file:
#: left out of the comparison.
SESSION = ("M110", "M115", "M155", "M105", "M400", "M113", "M21", "M27", "M20")


def job_text(moves: int = 300) -> str:
    """Heat, home, then `moves` extruding moves (absolute E, so every line is unique) with a
    layer change every 60 and the fan on."""
    lines = ["; recovery test", "M140 S60", "M104 S200", "M190 S60", "M109 S200", "G28", "G90",
             "M82", "G92 E0", "G1 Z0.3 F1200", "M106 S200"]
    e, z = 0.0, 0.3
    for i in range(moves):
        if i and i % 60 == 0:
            z = round(z + 0.2, 1)
            lines.append(f"G1 Z{z} F1200 ; layer change")
        e += 0.05
        lines.append(f"G1 X{i % 90 + 5} Y{(i * 7) % 90 + 5} E{e:.3f} F1800")
    return "\n".join(lines) + "\n"


#: The printer process's extra settings: Marlin's serial model, where a move takes 5 ms; the
#: host then keeps four lines in flight (`send_window: 4`: no line errors in this bench, so
#: no line is cut; auto would be ping-pong on Marlin).
MARLIN = "  marlin:\n    enabled: true\n    move_time: 0.005\n"


@pytest.fixture
def bench(tmp_path, request) -> Iterator[dict[str, object]]:
    """The printer process (slow oks, fast heaters), a host config and the job file."""
    link, record = tmp_path / "printer", tmp_path / "record.txt"
    (tmp_path / "virtual.yaml").write_text(
        "virtual:\n  heat_rate: 1000\n  faults:\n    ok_delay: 0.004\n"
        + getattr(request, "param", ""))
    cfg = tmp_path / "host.yaml"
    cfg.write_text(f"printer:\n  port: {link}\nstorage:\n  folder: {tmp_path}/files\n"
                   f"  state: {tmp_path}/state\n  journal_interval: 0.2\nhttp:\n"
                   f"  host: 127.0.0.1\n  port: 0\n  api_key: {KEY}\n"
                   + ("serial:\n  send_window: 4\n" if getattr(request, "param", "") else ""))
    job = tmp_path / "job.gcode"
    # long enough (about 1.3 s) that the journal, written every 0.2 s here (it polls every
    # 0.25 s; once a second by default), is seen past the first layer change well before the
    # print ends, even on a loaded machine
    job.write_text(job_text(300))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "virtual", "-c",
                             str(tmp_path / "virtual.yaml"), "--link", str(link), "--record",
                             str(record)], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(link), "the virtual printer's link")
        yield {"cfg": cfg, "record": record, "job": job, "journal": tmp_path / "state" /
               "journal.json", "printer": proc}
    finally:
        proc.terminate()
        proc.wait(5)


def wait_for(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


def file_commands(text: str) -> list[str]:
    return [c for c in (strip_comment(line) for line in text.splitlines()) if c]


def recorded(record) -> list[str]:
    return [x for x in record.read_text().splitlines() if x.split(" ", 1)[0] not in SESSION]


def kill_mid_print(proc: subprocess.Popen[str], bench: dict[str, object]) -> Journal:
    """SIGKILL `proc` once the printer took a good part of the file and a journal with a
    layer above the first exists; returns that journal as the killed host left it."""
    record, journal = bench["record"], bench["journal"]
    commands = file_commands(bench["job"].read_text())

    def far_enough() -> bool:
        if not journal.exists():
            return False
        return (json.loads(journal.read_text())["state"]["z"] or 0) >= 0.5 and \
            len(recorded(record)) >= len(commands) // 3

    try:
        wait_for(far_enough, "journal past the first layer")
    except AssertionError as exc:   # say what the host and the printer had done by then
        lines = recorded(record)
        raise AssertionError(f"{exc}: journal {journal.exists()}, printer took {len(lines)} of "
                             f"{len(commands)} file lines, host exit {proc.poll()}") from None
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    time.sleep(0.2)  # the printer process writes its record every 50 ms
    assert len(recorded(record)) < len(commands), "the print ended before the kill"
    return Journal.from_json(json.loads(journal.read_text()))


def check_record(bench: dict[str, object], journal: Journal) -> None:
    """Every file line before the kill, the prologue, the rest of the file from the first
    line the journal had not seen acknowledged; nothing skipped, nothing else."""
    check_resumed(bench["job"].read_text(), recorded(bench["record"]), journal)
    assert not bench["journal"].exists()                        # the print ended: cleared


def check_resumed(text: str, lines: list[str], journal: Journal) -> None:
    """`lines` (what the printer took, without SESSION commands) are the file `text` from
    its first line, then the prologue rendered from `journal`, then the file from the first
    line the journal had not seen acknowledged to its end: nothing skipped, nothing else."""
    commands = file_commands(text)
    prologue = ScriptSet.load(None, {}).render("beforePrintRecovered", {
        "printer_profile": profile_context(), "recovery": recovery_context(journal)})
    cut = next(i for i in range(len(lines)) if lines[i:i + len(prologue)] == prologue)
    before, after = lines[:cut], lines[cut + len(prologue):]
    assert before == commands[:len(before)]                    # in order from the first line
    # the first line not acknowledged, by the journal's line number in the file
    first = len(file_commands("\n".join(text.splitlines()[:journal.line])))
    assert 0 < first <= len(before)                             # never past what the printer had
    assert after == commands[first:]                            # then on to the end, exactly


@pytest.mark.parametrize("bench", ["", MARLIN], indirect=True, ids=["ping-pong", "marlin"])
def test_kill_9_of_printpipe_print_then_printpipe_recover(bench):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "print", "-c",
                             str(bench["cfg"]), str(bench["job"])], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    journal = kill_mid_print(proc, bench)
    # the file lies outside the storage folder: resumed only when the user names it
    out = run_cli("recover", "-c", str(bench["cfg"]), str(bench["job"]))
    assert out.returncode == 0, out.stderr
    assert "a print was interrupted: job.gcode at line" in out.stderr
    assert out.stdout.startswith("recovering job.gcode\n") and "done: job.gcode" in out.stdout
    time.sleep(0.2)
    check_record(bench, journal)
    again = run_cli("recover", "-c", str(bench["cfg"]))        # nothing left to recover
    assert again.returncode == 1
    assert again.stderr.startswith("printpipe: there is no interrupted print to recover")


@contextlib.contextmanager
def serving(cfg) -> Iterator[tuple[subprocess.Popen[str], httpx.Client]]:
    with subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "serve", "-c", str(cfg)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as proc:
        try:
            line = ""
            while "serving the API on" not in line:
                line = proc.stdout.readline()
                assert line, "printpipe serve ended before it served"
            url = line.rsplit(" ", 1)[-1].strip()
            with httpx.Client(base_url=url, headers={"X-Api-Key": KEY}, timeout=10) as client:
                wait_for(lambda: client.get("/api/printer").status_code == 200, "connect")
                yield proc, client
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("recover", ["cli", "http"])
def test_kill_9_of_printpipe_serve_then_recover(bench, recover):
    """`printpipe recover`, or a restarted `printpipe serve` that shows the interrupted print
    in GET /api/job and resumes it on POST /api/job recover."""
    with serving(bench["cfg"]) as (proc, client):
        r = client.post("/api/files/local", data={"print": "true"},
                        files={"file": ("job.gcode", bench["job"].read_bytes())})
        assert r.status_code == 201, r.text
        journal = kill_mid_print(proc, bench)
    if recover == "cli":
        out = run_cli("recover", "-c", str(bench["cfg"]))
        assert out.returncode == 0, out.stderr
        assert "done: job.gcode" in out.stdout
        time.sleep(0.2)
        check_record(bench, journal)
        return
    with serving(bench["cfg"]) as (proc, client):
        shown = client.get("/api/job").json()["recovery"]
        assert shown["file"]["path"] == "job.gcode" and shown["problem"] is None
        assert (shown["line"], shown["filepos"], shown["z"]) == (
            journal.line, journal.filepos, journal.state["z"])
        assert client.post("/api/job", json={"command": "recover"}).status_code == 204
        wait_for(lambda: client.get("/api/job").json()["progress"]["completion"] == 100
                 and client.get("/api/printer").json()["state"]["text"] == "Operational",
                 "end of the recovered print", timeout=30)
        assert "recovery" not in client.get("/api/job").json()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    time.sleep(0.2)
    check_record(bench, journal)


def test_printpipe_recover_refuses_a_changed_file_and_a_corrupt_journal_in_one_line(tmp_path):
    cfg = tmp_path / "host.yaml"
    cfg.write_text(f"storage:\n  state: {tmp_path}/state\n  folder: {tmp_path}\n")
    job = tmp_path / "job.gcode"
    job.write_text(job_text(20))
    st = job.stat()
    state = {"x": 1.0, "y": 1.0, "z": 0.3, "e": 0.1, "f": 1800.0, "relative_axes": False,
             "relative_e": False, "fan": 0, "tool": 0, "hotends": {}, "bed": None}
    from pipeline.session.recovery import FileIdentity
    data = Journal(FileIdentity(str(job), "job.gcode", "job.gcode", st.st_size + 1,
                                st.st_mtime_ns), 100, 12, state, 0.0).to_json()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "journal.json").write_text(json.dumps(data))
    out = run_cli("recover", "-c", str(cfg))
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        f"printpipe: cannot recover the print of job.gcode: the file changed since (it had "
        f"{st.st_size + 1} bytes, now {st.st_size})")
    assert "Traceback" not in out.stderr
    (tmp_path / "state" / "journal.json").write_text('{"version": 1, "file": ')
    out = run_cli("recover", "-c", str(cfg))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    aside = next((tmp_path / "state").glob("journal.json.bad-*"))
    assert out.stderr.splitlines() == [
        (f"ERROR printpipe.journal: the print journal {tmp_path}/state/journal.json is not "
         f"JSON (Expecting value: line 1 column 24 (char 23)); set aside as {aside}; nothing "
         "can be recovered from it"),
        f"printpipe: there is no interrupted print to recover (no journal in {tmp_path}/state)"]


def test_printpipe_recover_exits_1_with_the_reason_for_a_failing_prologue_or_hostile_journal(
        tmp_path):
    """A prologue that does not render: exit 1 with the script's line, nothing started, the
    journal kept for a fixed script. A journal whose offset is mid-line: exit 1 with that one
    line, the journal set aside."""
    files = tmp_path / "files"
    files.mkdir()
    job = files / "job.gcode"
    job.write_text(job_text(20))
    cfg = tmp_path / "host.yaml"
    cfg.write_text(f"storage:\n  state: {tmp_path}/state\n  folder: {files}\nscripts:\n  gcode:\n"
                   "    beforePrintRecovered: |\n      M104 S{{ recovery.hotends[0] }}\n"
                   "      G92 Z{{ recovery.z + recovery.nothing }}\n")
    st, text = job.stat(), job.read_text()
    filepos = len("".join(text.splitlines(True)[:15]))
    state = {"x": 5.0, "y": 5.0, "z": 0.3, "e": 0.2, "f": 1800.0, "relative_axes": False,
             "relative_e": False, "fan": 0, "tool": 0, "hotends": {0: 200.0}, "bed": 60.0}
    from pipeline.session.recovery import FileIdentity
    journal = tmp_path / "state" / "journal.json"
    journal.parent.mkdir()
    prologue_fails = "cannot recover the print of job.gcode: script beforePrintRecovered:2: "
    mid_line = f"{journal}: filepos {filepos - 2} is not at the start of a line of job.gcode"
    for pos, why, kept in ((filepos, prologue_fails, True), (filepos - 2, mid_line, False)):
        journal.write_text(json.dumps(Journal(FileIdentity(
            str(job), "job.gcode", "job.gcode", st.st_size, st.st_mtime_ns), pos, 15, state,
            0.0).to_json()))
        out = run_cli("recover", "-c", str(cfg))
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert why in out.stderr, out.stderr
        assert "recovering" not in out.stdout and journal.exists() is kept
    assert next(journal.parent.glob("journal.json.bad-*"))  # the hostile one, set aside
