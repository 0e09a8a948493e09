"""Real clients, by their documented requests (ecosystem.md 6.3): PrusaSlicer uploads with
`print=true`, Cura validates, uploads with select, prints through the Location URL and drives
the job; Home Assistant polls job and printer. The prints really run on the virtual printer."""

from __future__ import annotations

import httpx
import trio
from http_fixtures import serve_for_test

from pipeline.virtual.pair import expected_commands, sample_gcode

GCODE = sample_gcode(400, seed=7)


def file_lines_received(srv) -> list[str]:
    wanted = set(expected_commands(GCODE))
    return [line for line in srv.service.session.virtual.firmware.accepted if line in wanted]


async def test_prusaslicer_version_check_and_upload_with_print(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["Upload", "FileAdded", "UpdatedFiles", "PrintStarted", "PrintDone"])
        async with httpx.AsyncClient(base_url=srv.url,
                                     headers={"X-Api-Key": srv.key}) as prusa:
            version = await prusa.get("/api/version")
            assert version.status_code == 200
            body = version.json()
            assert "api" in body and body["text"].startswith("OctoPrint")
            r = await prusa.post("/api/files/local",
                                 data={"print": "true", "path": "prusa"},
                                 files={"file": ("benchy part.gcode", GCODE.encode(),
                                                 "application/octet-stream")})
            assert r.status_code == 201, r.text
            assert r.json()["done"] is True and r.json()["effectivePrint"] is True
        done = await rec.wait_for("PrintDone", timeout=60)
        assert done.payload["path"] == "prusa/benchy part.gcode"
        upload = rec.of("Upload")[0].payload
        assert upload["print"] is True and upload["effective_print"] is True
        assert rec.names().index("FileAdded") < rec.names().index("PrintStarted")
        assert file_lines_received(srv) == expected_commands(GCODE)


async def test_cura_connects_uploads_selects_prints_and_pauses(tmp_path):
    # 1 ms a move: the print lasts long enough to be paused midway, not before its first line
    async with serve_for_test(tmp_path, "virtual:\n  faults:\n    ok_delay: 0.001\n") as srv:
        rec = srv.events(["PrintStarted", "PrintPaused", "PrintResumed", "PrintDone"])
        async with httpx.AsyncClient(base_url=srv.url,
                                     headers={"X-Api-Key": srv.key}) as cura:
            assert (await cura.get("/api/settings")).status_code == 200  # validates the key
            assert "server" in (await cura.get("/api/version")).json()
            assert (await cura.post("/api/login", json={"passive": True})).status_code == 200
            profiles = (await cura.get("/api/printerprofiles")).json()["profiles"]
            assert all("heatedBed" in p and "axes" in p for p in profiles.values())
            r = await cura.post("/api/files/local", data={"select": "true", "print": "false"},
                                files={"file": ("cura.gcode", GCODE.encode())})
            assert r.status_code == 201, r.text
            location = r.headers["Location"]
            assert r.json()["effectiveSelect"] is True and r.json()["effectivePrint"] is False
            job = (await cura.get("/api/job")).json()
            assert job["job"]["file"]["name"] == "cura.gcode" and job["state"] == "Operational"
            r = await cura.post(location, json={"command": "select", "print": True})
            assert r.status_code == 204, r.text
            await rec.wait_for("PrintStarted")
            with trio.fail_after(10):
                while not (await cura.get("/api/job")).json()["progress"]["completion"]:
                    await trio.sleep(0.01)
            r = await cura.post("/api/job", json={"command": "pause", "action": "pause"})
            assert r.status_code == 204
            await rec.wait_for("PrintPaused")
            printer = (await cura.get("/api/printer")).json()
            assert printer["state"]["flags"]["paused"] is True
            job = (await cura.get("/api/job")).json()
            assert job["state"] == "Paused" and 0 < job["progress"]["completion"] < 100
            assert job["progress"]["printTime"] is not None
            r = await cura.post("/api/job", json={"command": "pause", "action": "resume"})
            assert r.status_code == 204
            await rec.wait_for("PrintDone", timeout=60)
            job = (await cura.get("/api/job")).json()
            assert job["job"]["file"]["name"] == "cura.gcode"
        assert file_lines_received(srv) == expected_commands(GCODE)


async def test_home_assistant_polls_job_and_printer_and_cancels(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["PrintStarted", "PrintCancelled"])
        async with httpx.AsyncClient(base_url=srv.url + "/",
                                     headers={"X-Api-Key": srv.key}) as ha:
            r = await ha.post(srv.url + "//api/files/local",
                              files={"file": ("ha.gcode", GCODE.encode())},
                              data={"print": "true"})
            assert r.status_code == 201
            await rec.wait_for("PrintStarted")
            job = (await ha.get(srv.url + "//api/job")).json()
            for key in ("completion", "printTime", "printTimeLeft"):
                assert key in job["progress"]
            assert {"name", "origin", "size"} <= set(job["job"]["file"])
            assert "estimatedPrintTime" in job["job"]
            printer = (await ha.get(srv.url + "//api/printer")).json()
            assert printer["state"]["flags"]["printing"] is True
            for name in ("tool0", "bed"):
                assert {"actual", "target", "offset"} <= set(printer["temperature"][name])
            r = await ha.post(srv.url + "//api/job", json={"command": "cancel"})
            assert r.status_code == 204
            await rec.wait_for("PrintCancelled", timeout=30)
            with trio.fail_after(10):
                while (await ha.get(srv.url + "//api/job")).json()["state"] != "Operational":
                    await trio.sleep(0.05)
