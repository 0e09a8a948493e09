"""The print history (files/history.py): each print's file, outcome, duration and end time in
`<state>/history.json`, bounded, written atomically; `/api/files` entries get OctoPrint's
`prints` and `/api/job` its `lastPrintTime` / `averagePrintTime` from it, also after a
restart."""

from __future__ import annotations

import json
import logging

import trio
from http_fixtures import serve_for_test

from pipeline.files.history import (
    FILE_NAME,
    FileStatistics,
    Outcome,
    PrintHistory,
    PrintRecord,
    folder_prints,
)
from pipeline.virtual.pair import sample_gcode


def rec(path: str, outcome: Outcome, duration: float, ended: float) -> PrintRecord:
    return PrintRecord(path, outcome, duration, ended, user="master")


def test_statistics_count_as_octoprint_does(tmp_path):
    history = PrintHistory(str(tmp_path))
    assert history.of("a.gcode") == FileStatistics(0, 0, None, None, None)
    assert history.of("a.gcode").prints() is None
    history.record(rec("a.gcode", Outcome.SUCCESS, 100.0, 1000.0))
    history.record(rec("b.gcode", Outcome.SUCCESS, 7.0, 1001.0))
    history.record(rec("a.gcode", Outcome.SUCCESS, 200.0, 1002.0))
    history.record(rec("a.gcode", Outcome.CANCELLED, 5.0, 1003.0))
    stats = history.of("a.gcode")
    assert (stats.success, stats.failure) == (2, 1)
    assert stats.last_print_time == 200.0          # the newest successful print
    assert stats.average_print_time == 150.0       # successful prints only
    # the last print failed: it has no printTime, as in OctoPrint
    assert stats.prints() == {"success": 2, "failure": 1,
                              "last": {"date": 1003.0, "success": False}}
    assert history.of("b.gcode").prints() == {
        "success": 1, "failure": 0, "last": {"date": 1001.0, "success": True, "printTime": 7.0}}
    assert folder_prints([stats.prints(), None, history.of("b.gcode").prints()]) == {
        "success": 3, "failure": 1, "last": {"date": 1003.0, "success": False}}


def test_it_survives_a_restart_and_stays_bounded(tmp_path):
    history = PrintHistory(str(tmp_path), limit=3)
    for n in range(5):
        history.record(rec(f"{n}.gcode", Outcome.FAILURE, n, 1000.0 + n))
    again = PrintHistory(str(tmp_path), limit=3)
    assert [r.path for r in again.records] == ["2.gcode", "3.gcode", "4.gcode"]
    assert again.records == history.records
    saved = json.loads((tmp_path / FILE_NAME).read_text())
    assert len(saved["prints"]) == 3 and saved["prints"][-1]["outcome"] == "failure"
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temp file left


def test_an_unreadable_history_starts_empty_and_says_so(tmp_path, caplog):
    for text in ("{not json", '{"prints": [{"path": 3}]}', '{"prints": 5}', "[]"):
        (tmp_path / FILE_NAME).write_text(text)
        with caplog.at_level(logging.WARNING, logger="printpipe.history"):
            assert PrintHistory(str(tmp_path)).records == []
        assert "print history starts empty" in caplog.text
        caplog.clear()


SMALL = sample_gcode(150, seed=5)
SLOW = "virtual:\n  faults:\n    ok_delay: 0.002\n"


async def entry(srv, path: str) -> dict:
    r = await srv.client.get(f"/api/files/local/{path}")
    assert r.status_code == 200
    return r.json()


async def test_prints_and_last_print_time_feed_the_api_and_survive_a_restart(tmp_path):
    async with serve_for_test(tmp_path, SLOW) as srv:
        rec_ = srv.events(["PrintDone", "PrintCancelled"])
        r = await srv.client.post("/api/files/local", data={"print": "true", "path": "box"},
                                  files={"file": ("cube.gcode", SMALL.encode())})
        assert r.status_code == 201
        done = await rec_.wait_for("PrintDone", timeout=30)
        with trio.fail_after(10):
            while ("prints" not in (info := await entry(srv, "box/cube.gcode"))
                   or (await srv.client.get("/api/job")).json()["state"] != "Operational"):
                await trio.sleep(0.02)
        assert info["prints"] == {"success": 1, "failure": 0, "last": {
            "date": info["prints"]["last"]["date"], "success": True,
            "printTime": done.payload["time"]}}
        job = (await srv.client.get("/api/job")).json()["job"]
        assert job["lastPrintTime"] == done.payload["time"] == job["averagePrintTime"]
        # a cancelled print counts as a failure and has no printTime
        r = await srv.client.post("/api/files/local/box/cube.gcode",
                                  json={"command": "select", "print": True})
        assert r.status_code == 204
        with trio.fail_after(10):
            while not (await srv.client.get("/api/job")).json()["progress"]["completion"]:
                await trio.sleep(0.01)
        await srv.client.post("/api/job", json={"command": "cancel"})
        await rec_.wait_for("PrintCancelled", timeout=30)
        with trio.fail_after(10):
            while (await entry(srv, "box/cube.gcode"))["prints"]["failure"] != 1:
                await trio.sleep(0.02)
        before = (await entry(srv, "box/cube.gcode"))["prints"]
        assert before["last"]["success"] is False and "printTime" not in before["last"]
        folder = (await srv.client.get("/api/files?recursive=true")).json()["files"][0]
        assert folder["prints"] == {"success": 1, "failure": 1, "last": before["last"]}
    async with serve_for_test(tmp_path) as srv:  # a restart: the history is read back
        assert (await entry(srv, "box/cube.gcode"))["prints"] == before
        r = await srv.client.post("/api/files/local/box/cube.gcode", json={"command": "select"})
        assert r.status_code == 204
        job = (await srv.client.get("/api/job")).json()["job"]
        assert job["lastPrintTime"] == done.payload["time"]
    records = json.loads((tmp_path / "state" / FILE_NAME).read_text())["prints"]
    assert [(r["path"], r["outcome"], r["user"]) for r in records] == [
        ("box/cube.gcode", "success", "master"), ("box/cube.gcode", "cancelled", "master")]
