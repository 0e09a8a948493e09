"""The slicers' request sequences, recorded as each sends them to OctoPrint, replayed with
httpx against a real `printpipe serve`, every step asserting what the slicer reads:

- PrusaSlicer (and its forks): the version check (`text` must start with "OctoPrint"), then
  "upload" (print=false) and "upload and print" (print=true) into a folder (`path`);
- Cura's OctoPrint plugin: key check through `/api/settings`, passive login, profiles,
  connection, the printer and job polls, upload with select, print through the Location URL,
  pause and resume; run after another print ended, so the job must show Cura's file.

The prints really run on the virtual printer, which must receive every file line once, in
order. (Home Assistant and octorest use their real libraries: test_client_libraries.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import httpx
import trio
from http_fixtures import KEY, lines_received, reported_temperatures, serve_for_test

from pipeline.virtual.pair import expected_commands, sample_gcode

GCODE = sample_gcode(400, seed=7)
EARLIER = sample_gcode(120, seed=8)
LONG = sample_gcode(1000, seed=9)


@attrs.frozen
class Step:
    """One recorded request and what the client reads from its answer."""

    name: str
    method: str
    path: str
    status: int
    check: Callable[[httpx.Response], bool] = lambda r: True
    json: Any = None
    data: dict[str, str] | None = None
    file: tuple[str, str] | None = None      # (name, text) as the `file` part


async def replay(client: httpx.AsyncClient, steps: list[Step],
                 saved: dict[str, httpx.Response]) -> None:
    """Send each step; a wrong status or a failed check names the step. A path in braces
    (`{upload}`) is the Location header of that earlier step's answer."""
    for step in steps:
        path = step.path
        if path.startswith("{"):
            path = saved[path.strip("{}")].headers["Location"]
        files = {"file": (step.file[0], step.file[1].encode(), "application/octet-stream")} \
            if step.file else None
        r = await client.request(step.method, path, json=step.json, data=step.data,
                                 files=files)
        assert r.status_code == step.status, (step.name, r.status_code, r.text)
        assert step.check(r), (step.name, r.text)
        saved[step.name] = r


def body(r: httpx.Response) -> Any:
    return r.json()


PRUSASLICER = [
    Step("version", "GET", "/api/version", 200,
         lambda r: body(r)["text"].startswith("OctoPrint") and "api" in body(r)),
    Step("upload", "POST", "/api/files/local", 201,
         lambda r: body(r)["done"] and body(r)["effectivePrint"] is False
         and "Location" in r.headers,
         data={"print": "false", "path": "prusa"}, file=("upload only.gcode", EARLIER)),
    Step("upload and print", "POST", "/api/files/local", 201,
         lambda r: body(r)["effectivePrint"] is True and body(r)["effectiveSelect"] is True,
         data={"print": "true", "path": "prusa"}, file=("benchy part.gcode", GCODE)),
]


async def test_prusaslicer_upload_then_upload_and_print(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["Upload", "FileAdded", "PrintStarted", "PrintDone"])
        async with httpx.AsyncClient(base_url=srv.url, headers={"X-Api-Key": KEY}) as prusa:
            await replay(prusa, PRUSASLICER, {})
            done = await rec.wait_for("PrintDone", timeout=60)
            job = (await prusa.get("/api/job")).json()
        assert done.payload["path"] == "prusa/benchy part.gcode"
        assert job["job"]["file"]["path"] == "prusa/benchy part.gcode"
        assert job["progress"]["completion"] == 100 and job["job"]["user"] == "master"
        uploads = [e.payload for e in rec.of("Upload")]
        assert [(u["name"], u["print"], u["effective_print"]) for u in uploads] == [
            ("upload only.gcode", False, False), ("benchy part.gcode", True, True)]
        assert rec.names().index("FileAdded") < rec.names().index("PrintStarted")
        assert lines_received(srv, GCODE) == expected_commands(GCODE)


def job_file(name: str) -> Callable[[httpx.Response], bool]:
    return lambda r: body(r)["job"]["file"]["name"] == name


CURA_CONNECT = [
    Step("version", "GET", "/api/version", 200, lambda r: "server" in body(r)),
    Step("settings (validates the key)", "GET", "/api/settings", 200,
         lambda r: body(r)["feature"]["sdSupport"] is True
         and body(r)["webcam"]["webcamEnabled"] is False),
    Step("login", "POST", "/api/login", 200, lambda r: body(r)["name"] == "master",
         json={"passive": True}),
    Step("profiles", "GET", "/api/printerprofiles", 200,
         lambda r: all("heatedBed" in p and "axes" in p
                       for p in body(r)["profiles"].values())),
    Step("connection", "GET", "/api/connection", 200,
         lambda r: body(r)["current"]["state"] == "Operational"),
    Step("printer poll", "GET", "/api/printer", 200,
         lambda r: body(r)["state"]["flags"]["ready"] is True
         and all(isinstance(t["actual"], float) for t in body(r)["temperature"].values())),
    Step("job poll", "GET", "/api/job", 200, job_file("earlier.gcode")),
    Step("upload with select", "POST", "/api/files/local", 201,
         lambda r: body(r)["effectiveSelect"] is True and body(r)["effectivePrint"] is False,
         data={"select": "true", "print": "false"}, file=("cura.gcode", LONG)),
    # the selected file, not the print that ended before (a failure before)
    Step("job after upload", "GET", "/api/job", 200,
         lambda r: job_file("cura.gcode")(r) and body(r)["state"] == "Operational"
         and body(r)["progress"]["completion"] is None),
    Step("print the upload", "POST", "{upload with select}", 204,
         json={"command": "select", "print": True}),
]
CURA_PAUSE = [
    Step("pause", "POST", "/api/job", 204, json={"command": "pause", "action": "pause"}),
]
CURA_PAUSED = [
    Step("printer poll, paused", "GET", "/api/printer", 200,
         lambda r: body(r)["state"]["flags"]["paused"] is True),
    Step("job poll, paused", "GET", "/api/job", 200,
         lambda r: body(r)["state"] == "Paused"
         and 0 < body(r)["progress"]["completion"] < 100
         and isinstance(body(r)["progress"]["printTime"], int)),
    Step("resume", "POST", "/api/job", 204, json={"command": "pause", "action": "resume"}),
]


async def test_cura_after_another_print_uploads_selects_prints_and_pauses(tmp_path):
    async with serve_for_test(tmp_path, "virtual:\n  faults:\n    ok_delay: 0.001\n") as srv:
        rec = srv.events(["PrintStarted", "PrintPaused", "PrintResumed", "PrintDone"])
        r = await srv.client.post("/api/files/local", data={"print": "true"},
                                  files={"file": ("earlier.gcode", EARLIER.encode())})
        assert r.status_code == 201
        await rec.wait_for("PrintDone", timeout=30)
        await reported_temperatures(srv.client)
        with trio.fail_after(10):  # Finishing (afterPrintDone) comes before Operational
            while (await srv.client.get("/api/job")).json()["state"] != "Operational":
                await trio.sleep(0.02)
        saved: dict[str, httpx.Response] = {}
        async with httpx.AsyncClient(base_url=srv.url, headers={"X-Api-Key": KEY}) as cura:
            await replay(cura, CURA_CONNECT, saved)
            await rec.wait_for("PrintStarted", count=2)
            with trio.fail_after(10):
                while not (await cura.get("/api/job")).json()["progress"]["completion"]:
                    await trio.sleep(0.01)
            await replay(cura, CURA_PAUSE, saved)
            await rec.wait_for("PrintPaused")
            await replay(cura, CURA_PAUSED, saved)
            await rec.wait_for("PrintDone", timeout=60, count=2)
            job = (await cura.get("/api/job")).json()
        assert job["job"]["file"]["name"] == "cura.gcode"
        assert job["progress"]["completion"] == 100
        assert lines_received(srv, LONG) == expected_commands(LONG)
