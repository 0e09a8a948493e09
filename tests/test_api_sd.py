"""The SD card over the HTTP API end to end: a real `printpipe serve` on 127.0.0.1 with the
virtual printer on a pty. An upload through `POST /api/files/sdcard` is stored locally and
copied to the card exactly; the card's files are listed (alone and with the local ones),
selected and printed with `/api/job` showing the SD job and its progress, deleted; the card
released (the push stream's `sdReady` too), refused while released, mounted again; and with
SD support off the endpoints answer 404 and `/api/printer` has no `sd`."""

from __future__ import annotations

import trio
from http_fixtures import serve_for_test
from test_e2e_sd import FAST

from pipeline.app.http.push.sockjs import state_payload
from pipeline.gcode import split_lines, strip_comment
from pipeline.virtual.pair import sample_gcode


async def _until(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def _listed(client, name: str | None) -> list[dict]:
    """Wait until the card's listing has `name` (None: is empty); the listing."""
    with trio.fail_after(10):
        while True:
            files = (await client.get("/api/files/sdcard")).json()["files"]
            if (name in [f["name"] for f in files]) if name else not files:
                return files
            await trio.sleep(0.05)


async def test_upload_list_print_and_delete_over_http(tmp_path):
    text = sample_gcode(1500, seed=4)
    async with serve_for_test(tmp_path, FAST) as srv:
        c, control = srv.client, srv.service
        await _until(lambda: control.sd.ready)
        fw = control.session.virtual.firmware
        r = await c.get("/api/printer")
        assert r.json()["sd"] == {"ready": True}
        assert r.json()["state"]["flags"]["sdReady"] is True
        assert (await c.get("/api/printer/sd")).json() == {"ready": True}
        assert (await c.get("/api/settings")).json()["feature"]["sdSupport"] is True

        r = await c.post("/api/files/sdcard", files={"file": ("Part One.gcode", text.encode())})
        assert r.status_code == 201, r.text
        body = r.json()
        remote = body["files"]["sdcard"]["name"]
        assert body["done"] is False and remote == "partone.gco"
        assert body["files"]["local"]["path"] == "Part One.gcode"
        assert r.headers["location"].endswith("/api/files/sdcard/partone.gco")
        assert (tmp_path / "files" / "Part One.gcode").read_text() == text
        assert await control.sd.wait_upload(30) == ("Part One.gcode", remote, "")
        stored = bytes(fw.card.find(remote).data)
        if not stored.startswith(text.encode()[:20]):  # text mode: as printed, no comments
            assert stored == b"".join(c_.encode() + b"\r\n" for c_ in
                                      map(strip_comment, split_lines(text)) if c_)
        else:
            assert stored == text.encode()

        files = await _listed(c, remote)
        (entry,) = files
        assert entry["origin"] == "sdcard" and entry["path"] == remote
        assert entry["size"] == len(stored)
        assert entry["refs"] == {"resource": f"{srv.url}/api/files/sdcard/{remote}"}
        assert (await c.get(f"/api/files/sdcard/{remote}")).json() == entry
        both = (await c.get("/api/files", params={"recursive": "true"})).json()["files"]
        assert sorted((f["origin"], f["path"]) for f in both) == [
            ("local", "Part One.gcode"), ("sdcard", remote)]
        assert "free" in (await c.get("/api/files")).json()

        r = await c.post(f"/api/files/sdcard/{remote}", json={"command": "select",
                                                               "print": True})
        assert r.status_code == 204, r.text
        seen: list[dict] = []
        with trio.fail_after(20):
            while True:
                job = (await c.get("/api/job")).json()
                seen.append(job)
                if job["state"] == "Operational" and job["progress"]["completion"] == 100:
                    break
                await trio.sleep(0.02)
        moving = [j for j in seen if j["state"] == "Printing"
                  and 0 < (j["progress"]["completion"] or 0) < 100]
        assert moving, [j["state"] for j in seen]
        assert moving[0]["progress"]["filepos"] > 0
        assert all(j["job"]["file"]["origin"] == "sdcard" and j["job"]["file"]["path"] == remote
                   for j in moving)
        assert fw.sd_executed > 1000

        assert (await c.post("/api/files/sdcard/nosuch.gco",
                             json={"command": "select"})).status_code == 404
        assert (await c.delete(f"/api/files/sdcard/{remote}")).status_code == 204
        await _listed(c, None)
        assert fw.card.find(remote) is None


async def test_release_refresh_and_init(tmp_path):
    async with serve_for_test(tmp_path, FAST) as srv:
        c, control = srv.client, srv.service
        await _until(lambda: control.sd.ready)
        assert state_payload(srv.api, control.status())["state"]["flags"]["sdReady"] is True
        assert (await c.post("/api/printer/sd", json={"command": "release"})).status_code == 204
        await _until(lambda: not control.sd.ready)
        assert state_payload(srv.api, control.status())["state"]["flags"]["sdReady"] is False
        assert (await c.get("/api/printer/sd")).json() == {"ready": False}
        assert (await c.get("/api/printer")).json()["sd"] == {"ready": False}
        r = await c.post("/api/printer/sd", json={"command": "refresh"})
        assert r.status_code == 409 and "not ready" in r.json()["error"]
        r = await c.post("/api/files/sdcard", files={"file": ("a.gcode", b"G28\n")})
        assert r.status_code == 409
        assert (await c.get("/api/files/sdcard")).json() == {"files": []}
        assert (await c.post("/api/printer/sd", json={"command": "init"})).status_code == 204
        await _until(lambda: control.sd.ready)
        assert (await c.post("/api/printer/sd", json={"command": "refresh"})).status_code == 204
        r = await c.post("/api/printer/sd", json={"command": "format"})
        assert r.status_code == 400


async def test_sd_support_off(tmp_path):
    async with serve_for_test(tmp_path, "serial:\n  sd:\n    enabled: false\n") as srv:
        c = srv.client
        assert "sd" not in (await c.get("/api/printer")).json()
        assert (await c.get("/api/printer/sd")).status_code == 404
        assert (await c.get("/api/files/sdcard")).status_code == 404
        files = (await c.get("/api/files")).json()["files"]
        assert all(f["origin"] == "local" for f in files)
        assert (await c.get("/api/settings")).json()["feature"]["sdSupport"] is False


async def test_select_then_start_pause_and_cancel_through_the_job(tmp_path):
    async with serve_for_test(tmp_path, FAST) as srv:
        c, control = srv.client, srv.service
        await _until(lambda: control.sd.ready)
        fw = control.session.virtual.firmware
        fw.card.create("long.gco").data += sample_gcode(20000).encode()
        r = await c.post("/api/files/local", files={"file": ("small.gcode", b"G28\nG1 X1\n")},
                         data={"print": "true"})
        assert r.json()["effectivePrint"] is True
        assert (await control.wait_job_end(10)).outcome.value == "done"
        assert (await c.get("/api/job")).json()["job"]["file"]["origin"] == "local"
        assert (await c.post("/api/printer/sd", json={"command": "refresh"})).status_code == 204
        await _listed(c, "long.gco")
        r = await c.post("/api/files/sdcard/long.gco", json={"command": "select"})
        assert r.status_code == 204, r.text
        await _until(lambda: control.sd.selected is not None)
        job = (await c.get("/api/job")).json()
        assert job["state"] == "Operational"  # the local print ended is no longer shown
        assert job["progress"]["completion"] is None
        assert (job["job"]["file"]["origin"], job["job"]["file"]["name"]) == ("sdcard",
                                                                              "long.gco")
        assert (await c.post("/api/job", json={"command": "start"})).status_code == 204
        await _until(lambda: fw.card.printing)
        assert (await c.post("/api/job", json={"command": "pause",
                                               "action": "pause"})).status_code == 204
        await _until(lambda: control.status().state.value == "Paused")
        assert not fw.card.printing
        assert (await c.post("/api/job", json={"command": "cancel"})).status_code == 204
        await control.wait_job_end(10)
        job = (await c.get("/api/job")).json()
        assert job["job"]["file"]["origin"] == "sdcard" and job["state"] == "Operational"
        assert job["progress"]["completion"] is None  # reset after a cancel, as OctoPrint
        assert "M524" in fw.accepted
