"""Recovery through the HTTP API and the service (a real server on 127.0.0.1 with the virtual
printer on a pty): an interrupted print's journal is published as PrintInterrupted and shown
by GET /api/job; POST /api/job recover resumes it (the prologue, then the file after the
journal's line) or answers 409 with the reason (no journal, its file changed or was
modified, a print running); a corrupt journal is reported and set aside, never a traceback; a
print keeps its journal while it runs and clears it when it ends."""

from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any

import trio
from conftest import load_yaml
from http_fixtures import config_text, serve_for_test

import pipeline.app.printers.runtime as runtime_module
import pipeline.app.service as service_module
from pipeline.events.names import PAYLOAD_KEYS, Event
from pipeline.fanout.bus import EventBus
from pipeline.session.recovery import FileIdentity, Journal

TEXT = "G28\nG90\nM82\nG1 Z0.3 F1200\n" + "".join(
    f"G1 X{i} Y{i} E{i * 0.1:.1f} F1800\n" for i in range(1, 41))


#: the virtual printer heats ten times faster (the recovery prologue waits for its targets)
FAST_HEAT = "virtual:\n  heat_rate: 400\n"


def accepted(srv) -> list[str]:
    return list(srv.service.session.virtual.firmware.accepted)


def stored_job(tmp_path, text: str = TEXT) -> str:
    folder = tmp_path / "files"
    folder.mkdir(exist_ok=True)
    path = folder / "job.gcode"
    path.write_text(text)
    return str(path)


def write_journal(tmp_path, disk: str, line: int = 14) -> Journal:
    """The journal a print of `disk` interrupted after its file line `line` would leave."""
    st = os.stat(disk)
    data = pathlib.Path(disk).read_bytes()
    filepos = sum(len(x) + 1 for x in data.split(b"\n")[:line])
    n = line - 4  # the four header lines
    state = {"x": float(n), "y": float(n), "z": 0.3, "e": round(n * 0.1, 1), "f": 1800.0,
             "relative_axes": False, "relative_e": False, "fan": 0, "tool": 0,
             "hotends": {0: 200.0}, "bed": 50.0}
    journal = Journal(FileIdentity(disk, "job.gcode", "job.gcode", st.st_size, st.st_mtime_ns),
                      filepos, line, state, 1_800_000_000.0)
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / "journal.json").write_text(json.dumps(journal.to_json()))
    return journal


async def wait_until(predicate, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_recover_resumes_after_the_journal_line_with_the_prologue_first(tmp_path):
    disk = stored_job(tmp_path)
    write_journal(tmp_path, disk, line=14)
    async with serve_for_test(tmp_path, FAST_HEAT) as srv:  # the prologue heats to 200/50
        shown = (await srv.client.get("/api/job")).json()
        assert shown["recovery"] == {
            "file": {"name": "job.gcode", "path": "job.gcode", "origin": "local",
                     "size": len(TEXT)},
            "line": 14, "filepos": len("".join(TEXT.splitlines(True)[:14])), "z": 0.3,
            "time": 1_800_000_000.0, "problem": None}
        assert shown["job"]["file"]["name"] is None and shown["state"] == "Operational"
        r = await srv.client.post("/api/job", json={"command": "recover"})
        assert r.status_code == 204, r.text
        done = srv.events(["PrintDone"])
        await done.wait_for("PrintDone")
        acc = [x for x in accepted(srv) if not x.startswith(("M105", "M113", "M155"))]
        start = acc.index("M140 S50")
        assert acc[start:start + 15] == [
            "M140 S50", "M104 T0 S200", "M190 S50", "M109 T0 S200", "G91",
            "G1 Z2 F600", "G90", "G92 Z2.3", "G28 X Y", "G1 X10 Y10 F3000", "G1 Z0.3 F600",
            "M82", "G92 E1", "M107", "G1 F1800"]
        rest = [x for x in acc[start + 15:] if x.startswith("G1 X")]
        assert rest == [f"G1 X{i} Y{i} E{i * 0.1:.1f} F1800" for i in range(11, 41)]
        assert "G1 X10 Y10 E1.0 F1800" not in acc  # line 14 was acknowledged: not again
        job = (await srv.client.get("/api/job")).json()
        assert "recovery" not in job and job["job"]["file"]["path"] == "job.gcode"
        assert job["progress"]["completion"] == 100
        await wait_until(lambda: not (tmp_path / "state" / "journal.json").exists())  # cleared


async def test_recover_is_refused_when_the_file_changed_or_there_is_nothing(tmp_path):
    disk = stored_job(tmp_path)
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post("/api/job", json={"command": "recover"})
        assert r.status_code == 409
        assert r.json()["error"].startswith("there is no interrupted print to recover")
    write_journal(tmp_path, disk)
    with open(disk, "a") as f:
        f.write("G1 X99\n")
    async with serve_for_test(tmp_path) as srv:
        assert (await srv.client.get("/api/job")).json()["recovery"]["problem"] == (
            f"cannot recover the print of job.gcode: the file changed since (it had "
            f"{len(TEXT)} bytes, now {len(TEXT) + 7})")
        r = await srv.client.post("/api/job", json={"command": "recover"})
        assert r.status_code == 409 and "the file changed since" in r.json()["error"]
    stored_job(tmp_path, TEXT.replace("X1 ", "X2 "))  # same size, written again
    os.utime(disk, ns=(1, 1))
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post("/api/job", json={"command": "recover"})
        assert r.status_code == 409
        assert r.json()["error"].startswith(
            "cannot recover the print of job.gcode: the file was modified since (at 1970-01-01")
        os.remove(disk)
        r = await srv.client.post("/api/job", json={"command": "recover"})
        assert r.status_code == 409
        assert r.json()["error"] == (f"cannot recover the print of job.gcode: {disk}: "
                                     "No such file or directory")
        assert accepted(srv).count("G28 X Y") == 0  # nothing was sent


async def test_recover_with_a_prologue_the_guard_refuses_sends_nothing_and_answers_why(
        tmp_path):
    """An overridden beforePrintRecovered with a target over the hotend limit: 409 naming the
    command, nothing of the prologue or the file reaches the printer, the journal stays."""
    disk = stored_job(tmp_path)
    write_journal(tmp_path, disk)
    prologue = ("scripts:\n  gcode:\n    beforePrintRecovered: |\n      M140 S{{ recovery.bed }}\n"
                "      M104 S999\n      G92 Z{{ recovery.z }}\n")
    async with serve_for_test(tmp_path, prologue) as srv:
        before = accepted(srv)
        r = await srv.client.post("/api/job", json={"command": "recover"})
        assert r.status_code == 409
        assert r.json()["error"].startswith(
            "cannot recover the print of job.gcode: script beforePrintRecovered: its command 2 "
            "of 3, 'M104 S999', is refused: ")
        assert r.json()["error"].endswith("; nothing was sent")
        job = (await srv.client.get("/api/job")).json()
        assert job["state"] == "Operational" and job["recovery"]["line"] == 14  # kept
        await srv.client.post("/api/printer/command", json={"command": "M400"})
        await wait_until(lambda: accepted(srv)[-1:] == ["M400"])  # the link went on
        sent = [x for x in accepted(srv)[len(before):]
                if not x.startswith(("M105", "M113", "M155", "M400"))]
        assert sent == []
        assert (tmp_path / "state" / "journal.json").exists()


async def test_recover_while_printing_answers_409(tmp_path):
    disk = stored_job(tmp_path, TEXT + "G4 P3000\n")
    async with serve_for_test(tmp_path) as srv:
        await srv.client.post("/api/files/local/job.gcode", json={"command": "select",
                                                                   "print": True})
        write_journal(tmp_path, disk)
        await srv.service.recovery.load()
        r = await srv.client.post("/api/job", json={"command": "recover"})
        assert (r.status_code, r.json()["error"]) == (409, "a print is already running")
        await srv.client.post("/api/job", json={"command": "cancel"})


async def test_a_corrupt_journal_is_reported_in_one_line_and_set_aside(tmp_path, caplog):
    (tmp_path / "state").mkdir()
    for bad, why in ((b"{\"file\": {\"na", "is not JSON"),
                     (b"{\"version\": 1}", "time, filepos, line, file, state are missing"),
                     (b"\xff\xfe[]", "is not JSON")):
        (tmp_path / "state" / "journal.json").write_bytes(bad)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="printpipe.journal"):
            async with serve_for_test(tmp_path) as srv:
                assert "recovery" not in (await srv.client.get("/api/job")).json()
                r = await srv.client.post("/api/job", json={"command": "recover"})
                assert r.status_code == 409
        (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert why in message and "set aside as" in message and "\n" not in message
        assert not any(r.exc_info for r in caplog.records)
        assert not (tmp_path / "state" / "journal.json").exists()
    aside = [p for p in os.listdir(tmp_path / "state") if p.startswith("journal.json.bad-")]
    assert aside  # kept for a look, out of the way


async def test_print_interrupted_is_published_at_start_with_the_journal(tmp_path, monkeypatch):
    journal = write_journal(tmp_path, stored_job(tmp_path))
    seen: list[Any] = []

    class RecordingBus(EventBus):  # subscribed before the service publishes anything
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.append(self.subscribe("recovery-test", size=1000))

    monkeypatch.setattr(runtime_module, "EventBus", RecordingBus)
    path = tmp_path / "printpipe.yaml"
    path.write_text(config_text(tmp_path))
    async with service_module.open_service(load_yaml(path.read_text(), str(path))):
        with trio.fail_after(10):
            events = [await seen[0].receive(), await seen[0].receive()]
    assert [e.name for e in events] == ["Startup", "PrintInterrupted"]
    payload = events[1].payload
    assert set(payload) == set(PAYLOAD_KEYS[Event.PRINT_INTERRUPTED])
    assert payload == journal.payload()
    assert (payload["line"], payload["position"]["z"], payload["targets"]) == (
        14, 0.3, {"tool0": 200.0, "bed": 50.0})


async def test_a_print_keeps_its_journal_while_it_runs_and_a_cancel_clears_it(tmp_path):
    text = "G28\nG1 Z0.2 F1200\n" + "G1 X1 E0.1\nG1 X2 E0.2\n" * 5 + "G4 P2000\nG1 X9\n"
    stored_job(tmp_path, text)
    journal = tmp_path / "state" / "journal.json"
    async with serve_for_test(tmp_path) as srv:
        dwell = srv.events(["Dwelling"])
        await srv.client.post("/api/files/local/job.gcode", json={"command": "select",
                                                                   "print": True})
        await dwell.wait_for("Dwelling")
        await wait_until(journal.exists)
        data = json.loads(journal.read_text())
        assert data["line"] == 12 and data["state"]["z"] == 0.2  # the last acknowledged line
        assert data["file"]["path"] == "job.gcode"
        assert data["file"]["disk"] == str(tmp_path / "files" / "job.gcode")
        cancelled = srv.events(["PrintCancelled"])
        await srv.client.post("/api/job", json={"command": "cancel"})
        await cancelled.wait_for("PrintCancelled")
        await wait_until(lambda: not journal.exists())


async def test_starting_another_print_discards_the_interrupted_one(tmp_path, caplog):
    write_journal(tmp_path, stored_job(tmp_path))
    async with serve_for_test(tmp_path) as srv:
        assert "recovery" in (await srv.client.get("/api/job")).json()
        done = srv.events(["PrintDone"])
        r = await srv.client.post("/api/files/local/job.gcode", json={"command": "select",
                                                                       "print": True})
        assert r.status_code == 204
        assert "recovery" not in (await srv.client.get("/api/job")).json()
        assert ("the journal of the interrupted print of job.gcode is discarded: a print of "
                "job.gcode started") in caplog.text
        await done.wait_for("PrintDone")
        await wait_until(lambda: not (tmp_path / "state" / "journal.json").exists())


async def test_a_printer_that_vanishes_mid_print_leaves_a_journal_of_its_last_line(tmp_path):
    """The link fails (the printer is unplugged after 40 commands): the print fails, and the
    journal the session leaves holds the last file line the printer acknowledged."""
    stored_job(tmp_path)
    async with serve_for_test(tmp_path, "virtual:\n  faults:\n    disconnect_after: 40\n") \
            as srv:
        core, firmware = srv.service.session.core, srv.service.session.virtual.firmware
        failed = srv.events(["PrintFailed"])
        await srv.client.post("/api/files/local/job.gcode", json={"command": "select",
                                                                   "print": True})
        await failed.wait_for("PrintFailed")
        journal = tmp_path / "state" / "journal.json"
        await wait_until(lambda: srv.service.session is None)  # the session ended
    data = json.loads(journal.read_text())
    assert core.jobs.result.interrupted and data["filepos"] == core.jobs.result.filepos
    last = TEXT.splitlines()[data["line"] - 1]
    assert last.startswith("G1 X") and last in firmware.accepted
    assert (data["state"]["x"], data["state"]["z"]) == (float(last.split()[1][1:]), 0.3)
