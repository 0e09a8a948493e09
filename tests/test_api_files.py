"""The Files endpoints against a real server with the virtual printer: uploads (PrusaSlicer's and
Cura's forms), listing, info, download, folders, select / move / copy / delete, the analysis,
the events with their payload keys, and every refusal (keys, bad bodies, paths leaving the
storage, the file being printed)."""

from __future__ import annotations

import os

import trio
from http_fixtures import serve_for_test

from pipeline.events.names import PAYLOAD_KEYS, Event

CUBE = (b"; a small cube\nG28\nG1 Z0.2 F300\nG1 X10 Y10 E1 F1200\nG1 X20 E2\n"
        b"G1 Y20 E3\nG1 Z0.4\n")
# a print that stays busy for a few seconds (dwells), long enough to poke at it
LONG = b"G28\n" + b"G4 P250\n" * 40 + b"G1 X1\n"


def check_payload(event) -> None:
    """Only catalogue keys, and every key the catalogue does not mark optional."""
    keys = set(PAYLOAD_KEYS[Event(event.name)])
    optional = {"userdata"}
    assert set(event.payload) <= keys, (event.name, event.payload)
    assert keys - optional <= set(event.payload), (event.name, event.payload)


async def upload(srv, name: str, data: bytes = CUBE, **fields):
    return await srv.client.post("/api/files/local", files={"file": (name, data)}, data=fields)


def storage_files(srv) -> list[str]:
    root = srv.api.storage.root
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, _dirs, files in os.walk(root) for n in files)


async def wait_idle(srv, timeout: float = 15) -> None:
    with trio.fail_after(timeout):
        while srv.service.session.core.jobs.active:
            await trio.sleep(0.02)


async def test_keys_are_required(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        for headers, status in (({"X-Api-Key": ""}, 401), ({"X-Api-Key": "wrong-key-0123456789"},
                                                            403)):
            for method, url in (("GET", "/api/files"), ("GET", "/api/files/local/a.gcode"),
                                ("DELETE", "/api/files/local/a.gcode"),
                                ("GET", "/downloads/files/local/a.gcode")):
                r = await srv.client.request(method, url, headers=headers)
                assert r.status_code == status and "error" in r.json()
            r = await srv.client.post("/api/files/local", headers=headers,
                                      files={"file": ("a.gcode", CUBE)})
            assert r.status_code == status
        assert storage_files(srv) == []  # nothing was written


async def test_upload_list_info_analysis_and_download(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        ev = srv.events()
        r = await upload(srv, "my cube;v2.gcode", userdata='{"slicer": "test"}')
        assert r.status_code == 201
        body = r.json()
        local = body["files"]["local"]
        assert body["done"] is True and body["effectiveSelect"] is False
        assert body["effectivePrint"] is False
        assert (local["name"], local["path"], local["origin"]) == (
            "my cube_v2.gcode", "my cube_v2.gcode", "local")
        assert local["display"] == "my cube;v2.gcode"
        resource = f"{srv.url}/api/files/local/my%20cube_v2.gcode"
        assert r.headers["location"] == local["refs"]["resource"] == resource
        assert local["refs"]["download"] == f"{srv.url}/downloads/files/local/my%20cube_v2.gcode"
        finished = await ev.wait_for("MetadataAnalysisFinished")
        names = ev.names()
        assert names[:3] == ["FileAdded", "UpdatedFiles", "Upload"]
        assert names.index("MetadataAnalysisStarted") < names.index("MetadataAnalysisFinished")
        for event in ev.seen:
            check_payload(event)
        added, upload_ev = ev.of("FileAdded")[0].payload, ev.of("Upload")[0].payload
        assert added == {"storage": "local", "path": "my cube_v2.gcode",
                         "name": "my cube_v2.gcode", "type": ["machinecode", "gcode"]}
        assert upload_ev["target"] == "local" and upload_ev["userdata"] == {"slicer": "test"}
        assert ev.of("UpdatedFiles")[0].payload == {"type": "printables"}
        result = finished.payload["result"]
        assert result["lines"] == 6 and result["estimatedPrintTime"] > 0
        assert result["filament"]["tool0"]["length"] == 3.0
        assert result["printingArea"]["maxX"] == 20.0

        listing = (await srv.client.get("/api/files")).json()
        local = (await srv.client.get("/api/files/local")).json()
        # free space moves with whatever else writes to the disk meanwhile
        assert {**listing, "free": 0} == {**local, "free": 0}
        assert listing["free"] > 0 and listing["total"] >= listing["free"]
        (entry,) = listing["files"]
        assert entry["type"] == "machinecode" and entry["typePath"] == ["machinecode", "gcode"]
        assert entry["size"] == len(CUBE) and isinstance(entry["date"], int)
        assert entry["gcodeAnalysis"] == result and entry["userdata"] == {"slicer": "test"}
        info = await srv.client.get("/api/files/local/my cube_v2.gcode")
        assert info.status_code == 200 and info.json() == entry
        down = await srv.client.get(entry["refs"]["download"])
        assert down.status_code == 200 and down.content == CUBE
        # uploading again overwrites, and the new content is analysed again
        r = await upload(srv, "my cube_v2.gcode", b"G28\nG1 X5 E1\n")
        assert r.status_code == 201
        await ev.wait_for("MetadataAnalysisFinished", count=2)
        again = (await srv.client.get("/api/files/local/my cube_v2.gcode")).json()
        assert again["gcodeAnalysis"]["lines"] == 2 and "userdata" not in again
        assert [n for n in storage_files(srv) if not n.startswith(".")] == ["my cube_v2.gcode"]


async def test_prusaslicer_upload_with_print_prints_on_the_virtual_printer(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        ev = srv.events()
        # PrusaSlicer: `path` is the parent folder, `print` "true", no `select`
        r = await srv.client.post("/api/files/local", files={"file": ("cube.gcode", CUBE)},
                                  data={"print": "true", "path": "prusa/"})
        assert r.status_code == 201
        assert r.json()["effectiveSelect"] is True and r.json()["effectivePrint"] is True
        done = await ev.wait_for("PrintDone")
        assert (done.payload["path"], done.payload["name"]) == ("prusa/cube.gcode", "cube.gcode")
        names = ev.names()
        assert names.index("FolderAdded") < names.index("FileAdded") < names.index("Upload")
        assert names.index("FileSelected") < names.index("PrintStarted") < names.index("PrintDone")
        assert ev.of("FolderAdded")[0].payload == {"storage": "local", "path": "prusa",
                                                   "name": "prusa"}
        up = ev.of("Upload")[0].payload
        assert (up["select"], up["print"], up["effective_select"], up["effective_print"]) == (
            False, True, True, True)
        assert up["path"] == "prusa/cube.gcode"
        for event in ev.seen:
            if event.name in ("Upload", "FileAdded", "FolderAdded", "FileSelected"):
                check_payload(event)
        tree = (await srv.client.get("/api/files?recursive=true")).json()["files"]
        assert tree[0]["name"] == "prusa" and tree[0]["type"] == "folder"
        assert [c["path"] for c in tree[0]["children"]] == ["prusa/cube.gcode"]
        flat = (await srv.client.get("/api/files")).json()["files"]
        assert "children" not in flat[0] and flat[0]["size"] == len(CUBE)


async def test_the_file_being_printed_is_protected(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        ev = srv.events()
        assert (await upload(srv, "other.gcode")).status_code == 201
        r = await upload(srv, "long.gcode", LONG, path="jobs", select="true", print="true")
        assert r.json()["effectivePrint"] is True
        assert srv.service.session.core.jobs.active
        for method, url, kwargs in (
                ("DELETE", "/api/files/local/jobs/long.gcode", {}),
                ("DELETE", "/api/files/local/jobs", {}),
                ("POST", "/api/files/local/jobs/long.gcode",
                 {"json": {"command": "move", "destination": "moved.gcode"}}),
                ("POST", "/api/files/local/jobs", {"json": {"command": "move",
                                                            "destination": "j2"}}),
                ("POST", "/api/files/local/other.gcode", {"json": {"command": "select"}})):
            r = await srv.client.request(method, url, **kwargs)
            assert r.status_code == 409, (method, url, r.text)
            assert "error" in r.json()
        r = await upload(srv, "long.gcode", b"G28\n", path="jobs")
        assert r.status_code == 409 and "printed" in r.json()["error"]
        # uploading with print=true while printing: stored, neither selected nor printed
        r = await upload(srv, "later.gcode", print="true")
        assert r.status_code == 201
        assert (r.json()["effectiveSelect"], r.json()["effectivePrint"]) == (False, False)
        assert srv.service.selected.path == "jobs/long.gcode"
        # copying is fine while printing
        r = await srv.client.post("/api/files/local/jobs/long.gcode",
                                  json={"command": "copy", "destination": ""})
        assert r.status_code == 201 and r.json()["path"] == "long.gcode"
        assert (await srv.client.post("/api/job", json={"command": "cancel"})).status_code == 204
        await wait_idle(srv)
        assert "jobs/long.gcode" in storage_files(srv)
        assert ev.of("PrintCancelled") or ev.of("PrintFailed")
        assert not ev.of("FileRemoved") and not ev.of("FileMoved")


async def test_select_and_print_commands(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        ev = srv.events()
        await upload(srv, "cube.gcode")
        r = await srv.client.post("/api/files/local/cube.gcode", json={"command": "select"})
        assert r.status_code == 204 and srv.service.selected.path == "cube.gcode"
        r = await srv.client.post("/api/files/local/cube.gcode",
                                  json={"command": "select", "print": True})
        assert r.status_code == 204
        done = await ev.wait_for("PrintDone")
        assert done.payload["path"] == "cube.gcode"
        await wait_idle(srv)
        r = await srv.client.post("/api/files/local/current", json={"command": "unselect"})
        assert r.status_code == 204 and srv.service.selected is None
        r = await srv.client.post("/api/files/local/current", json={"command": "unselect"})
        assert r.status_code == 409
        assert ev.of("FileDeselected")


async def test_without_a_printer_uploads_still_succeed_but_do_not_print(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        ev = srv.events()
        r = await upload(srv, "cube.gcode", select="true", print="true")
        assert r.status_code == 201
        assert (r.json()["effectiveSelect"], r.json()["effectivePrint"]) == (True, False)
        assert srv.service.selected.path == "cube.gcode"
        r = await srv.client.post("/api/files/local/cube.gcode",
                                  json={"command": "select", "print": True})
        assert r.status_code == 409 and "not connected" in r.json()["error"]
        assert not ev.of("PrintStarted")


async def test_folders_listing_and_deleting(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        ev = srv.events()
        r = await srv.client.post("/api/files/local", data={"foldername": "parts"})
        assert r.status_code == 201
        assert r.json() == {"done": True, "folder": {
            "name": "parts", "path": "parts", "origin": "local",
            "refs": {"resource": f"{srv.url}/api/files/local/parts"}}}
        assert r.headers["location"] == f"{srv.url}/api/files/local/parts"
        r = await srv.client.post("/api/files/local", data={"foldername": "small", "path": "parts"})
        assert r.status_code == 201 and r.json()["folder"]["path"] == "parts/small"
        r = await srv.client.post("/api/files/local", data={"foldername": "parts"})
        assert r.status_code == 409
        r = await srv.client.post("/api/files/local", data={"foldername": "x", "path": "nope"})
        assert r.status_code == 404
        await upload(srv, "a.gcode", path="parts/small", select="true")
        await upload(srv, "b.gcode", path="parts")
        info = (await srv.client.get("/api/files/local/parts")).json()
        assert info["type"] == "folder" and info["typePath"] == ["folder"]
        assert info["size"] == 2 * len(CUBE)
        assert [c["name"] for c in info["children"]] == ["b.gcode", "small"]
        assert "children" not in info["children"][1]
        deep = (await srv.client.get("/api/files/local/parts?recursive=true")).json()
        assert deep["children"][1]["children"][0]["path"] == "parts/small/a.gcode"
        assert srv.service.selected.path == "parts/small/a.gcode"
        r = await srv.client.delete("/api/files/local/parts")
        assert r.status_code == 204 and srv.service.selected is None
        assert (await srv.client.get("/api/files/local/parts")).status_code == 404
        assert (await srv.client.get("/api/files")).json()["files"] == []
        removed = ev.of("FolderRemoved")
        assert [e.payload for e in removed] == [{"storage": "local", "path": "parts",
                                                 "name": "parts"}]
        for name in ("FolderAdded", "FolderRemoved", "FileDeselected"):
            assert ev.of(name)
            check_payload(ev.of(name)[0])


async def test_delete_a_file(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        ev = srv.events()
        await upload(srv, "cube.gcode", select="true")
        await ev.wait_for("MetadataAnalysisFinished")
        r = await srv.client.delete("/api/files/local/cube.gcode")
        assert r.status_code == 204 and srv.service.selected is None
        removed = ev.of("FileRemoved")[0]
        check_payload(removed)
        assert removed.payload["path"] == "cube.gcode"
        assert ev.names()[-3:] == ["FileRemoved", "FileDeselected", "UpdatedFiles"]
        assert (await srv.client.delete("/api/files/local/cube.gcode")).status_code == 404
        assert (await srv.client.get("/api/files/local/cube.gcode")).status_code == 404
        assert [n for n in storage_files(srv) if not n.startswith(".")] == []


async def test_move_and_copy(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        ev = srv.events()
        await upload(srv, "cube.gcode", select="true")
        await ev.wait_for("MetadataAnalysisFinished")
        await srv.client.post("/api/files/local", data={"foldername": "box"})

        async def cmd(path, **body):
            return await srv.client.post(f"/api/files/local/{path}", json=body)

        r = await cmd("cube.gcode", command="copy", destination="box")
        assert r.status_code == 201 and r.json()["path"] == "box/cube.gcode"
        assert r.headers["location"] == f"{srv.url}/api/files/local/box/cube.gcode"
        assert (await cmd("cube.gcode", command="copy", destination="box")).status_code == 409
        r = await cmd("cube.gcode", command="move", destination="renamed.gcode")
        assert r.status_code == 201 and r.json()["name"] == "renamed.gcode"
        assert srv.service.selected.path == "renamed.gcode"  # the selection follows the move
        moved = ev.of("FileMoved")[0]
        check_payload(moved)
        assert (moved.payload["source_path"], moved.payload["destination_path"]) == (
            "cube.gcode", "renamed.gcode")
        r = await cmd("box", command="move", destination="crate")
        assert r.status_code == 201 and r.json()["path"] == "crate"
        check_payload(ev.of("FolderMoved")[0])
        assert (await cmd("renamed.gcode", command="move",
                          destination="nowhere/x.gcode")).status_code == 404
        assert (await cmd("renamed.gcode", command="move",
                          destination="crate/cube.gcode")).status_code == 409
        assert (await cmd("renamed.gcode", command="move", destination="x.txt")).status_code == 415
        assert (await cmd("crate", command="move", destination="crate/in")).status_code == 400
        assert (await cmd("renamed.gcode", command="move")).status_code == 400
        assert (await cmd("missing.gcode", command="copy", destination="a.gcode")
                ).status_code == 404
        # analyses travel with moves and copies; nothing is analysed again
        listing = (await srv.client.get("/api/files?recursive=true")).json()["files"]
        assert [e["path"] for e in listing] == ["crate", "renamed.gcode"]
        assert listing[1]["gcodeAnalysis"]["lines"] == 6
        assert listing[0]["children"][0]["gcodeAnalysis"]["lines"] == 6
        await trio.sleep(0.1)
        assert len(ev.of("MetadataAnalysisStarted")) == 1
        assert [e.name for e in ev.seen].count("FileAdded") == 2  # the upload and the copy


async def test_bad_requests(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        await upload(srv, "cube.gcode")
        url = "/api/files/local/cube.gcode"
        for kwargs, status, words in (
                ({"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 400,
                 "malformed JSON"),
                ({"content": b"{}", "headers": {"Content-Type": "text/plain"}}, 400,
                 "Content-Type"),
                ({"json": {"command": "slice"}}, 400, "unknown command"),
                ({"json": {"print": True}}, 400, "'command' is required"),
                ({"json": {"command": "select", "print": "maybe"}}, 400, "true or false"),
        ):
            r = await srv.client.post(url, **kwargs)
            assert r.status_code == status and words in r.json()["error"], r.text
        r = await srv.client.post("/api/files/local", data={"select": "true"})
        assert r.status_code == 400 and "foldername" in r.json()["error"]
        r = await srv.client.post("/api/files/local", json={"file": "x"})
        assert r.status_code == 400 and "multipart" in r.json()["error"]
        r = await upload(srv, "model.stl", b"solid x\n")
        assert r.status_code == 415
        r = await upload(srv, "a.gcode", userdata="{not json")
        assert r.status_code == 400 and "userdata" in r.json()["error"]
        r = await upload(srv, "a.gcode", select="perhaps")
        assert r.status_code == 400 and "select" in r.json()["error"]
        r = await srv.client.post("/api/files/local", data={"foldername": "f"}, files={
            "file": ("", b"")})
        assert r.status_code == 400
        for url in ("/api/files/usb", "/api/files/sdcard/cube.gcode",
                    "/api/files/local/missing.gcode", "/downloads/files/local/missing.gcode"):
            assert (await srv.client.get(url)).status_code == 404, url
        r = await srv.client.post("/api/files/local", data={"foldername": "d"})
        assert (await srv.client.post("/api/files/local/d", json={"command": "select"})
                ).status_code == 400
        assert (await srv.client.delete("/api/files/local/")).status_code == 400
        assert (await srv.client.post("/api/files/local/", json={
            "command": "move", "destination": "d"})).status_code == 400
        # refused uploads leave no temp file behind
        assert [n for n in storage_files(srv) if not n.startswith(".metadata")] == ["cube.gcode"]


async def test_paths_never_leave_the_storage(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.gcode").write_bytes(b"M112\n")
    async with serve_for_test(tmp_path, connect=False) as srv:
        root = srv.api.storage.root
        os.symlink(outside, os.path.join(root, "link"))
        os.symlink(outside / "secret.gcode", os.path.join(root, "secret.gcode"))
        for path in ("%2e%2e/outside/secret.gcode", "..%2Foutside%2Fsecret.gcode",
                     "a/%2e%2e/%2e%2e/outside/secret.gcode", "link/secret.gcode",
                     "secret.gcode", "link", ".metadata.json"):
            for method, url in (("GET", f"/api/files/local/{path}"),
                                ("DELETE", f"/api/files/local/{path}"),
                                ("GET", f"/downloads/files/local/{path}")):
                r = await srv.client.request(method, url)
                assert r.status_code in (400, 404), (method, url, r.status_code)
            r = await srv.client.post(f"/api/files/local/{path}",
                                      json={"command": "move", "destination": "mine.gcode"})
            assert r.status_code in (400, 404), (path, r.status_code)
        r = await srv.client.get("/api/files/local//etc/passwd")
        assert r.status_code == 404  # an absolute path means the storage folder's own etc/
        for path in ("../../", "../outside", "link", "/../x"):
            r = await upload(srv, "evil.gcode", path=path)
            assert r.status_code == 400, (path, r.text)
        r = await srv.client.post("/api/files/local", data={"foldername": "x", "path": "link"})
        assert r.status_code == 400
        r = await srv.client.post("/api/files/local", data={"foldername": "../x"})
        assert r.status_code == 201 and r.json()["folder"]["path"] == "x"  # only its name
        r = await upload(srv, "../../evil.gcode")
        assert r.status_code == 201 and r.json()["files"]["local"]["path"] == "evil.gcode"
        r = await srv.client.post("/api/files/local/evil.gcode",
                                  json={"command": "copy", "destination": "link/evil.gcode"})
        assert r.status_code == 400
        assert sorted(os.listdir(outside)) == ["secret.gcode"]
        assert (outside / "secret.gcode").read_bytes() == b"M112\n"
        assert sorted(os.listdir(tmp_path)) == ["files", "outside", "printpipe.yaml", "state"]
        listed = [e["name"] for e in (await srv.client.get("/api/files")).json()["files"]]
        assert listed == ["evil.gcode", "x"]
