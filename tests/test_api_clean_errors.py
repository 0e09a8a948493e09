"""Client mistakes answer a 4xx naming the problem, never a 500, against a real server with the
virtual printer: numbers no float holds in any JSON body, odd query strings and path
parameters, names and paths over the storage's limits, the upload form's `path` sanitised as
folder names are, a config with control characters refused by reload, symlink loops in the
storage folder, and the temp files a killed upload leaves swept at start."""

from __future__ import annotations

import logging
import os

import pytest
import trio
from http_fixtures import serve_for_test

from pipeline.files.names import MAX_NAME_BYTES, MAX_PATH_BYTES, is_stale_temp

HUGE = "1" + "0" * 5000          # Python refuses to parse it (more than 4300 digits)
OVERFLOW = "1" + "0" * 400       # parses, but float() of it overflows
CUBE = b"G28\nG1 X10 Y10 E1 F1200\n"

# (endpoint, body with {n} where a number goes); every one is refused before anything happens
NUMBER_BODIES = [
    ("/api/printer/command", '{{"command": {n}}}'),
    ("/api/printer/command", '{{"commands": ["M117 {{x}}"], "parameters": {{"x": {n}}}}}'),
    ("/api/printer/tool", '{{"command": "target", "targets": {{"tool0": {n}}}}}'),
    ("/api/printer/tool", '{{"command": "offset", "offsets": {{"tool0": {n}}}}}'),
    ("/api/printer/tool", '{{"command": "extrude", "amount": {n}}}'),
    ("/api/printer/bed", '{{"command": "target", "target": {n}}}'),
    ("/api/printer/printhead", '{{"command": "jog", "x": {n}}}'),
    ("/api/printer/printhead", '{{"command": "feedrate", "factor": {n}}}'),
    ("/api/job", '{{"command": "start", "x": [{n}]}}'),
    ("/api/connection", '{{"command": "connect", "baudrate": {n}}}'),
    ("/api/files/local/cube.gcode", '{{"command": "select", "print": {n}}}'),
    ("/api/scripts/afterPrintCancelled/render", '{{"context": {{"a": {n}}}}}'),
    ("/plugin/appkeys/request", '{{"app": "x", "user": {n}}}'),
    ("/api/login", '{{"passive": {n}}}'),
]


def accepted(srv) -> list[str]:
    return list(srv.service.session.virtual.firmware.accepted)


def storage_names(srv) -> list[str]:
    root = srv.api.storage.root
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, dirs, files in os.walk(root) for n in dirs + files
                  if n != ".metadata.json")


async def test_numbers_no_float_holds_answer_400_in_every_json_body(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post("/api/files/local", files={"file": ("cube.gcode", CUBE)})
        assert r.status_code == 201
        before = len(accepted(srv))
        for url, body in NUMBER_BODIES:
            for number, words in ((HUGE, "(5001 digits; the limit is 308)"),
                                  (f"-{OVERFLOW}", "(401 digits; the limit is 308)"),
                                  ("1e400", "a number's size must stay below 1.8e308")):
                r = await srv.client.post(url, content=body.format(n=number),
                                          headers={"Content-Type": "application/json"})
                assert r.status_code == 400, (url, number[:8], r.text)
                error = r.json()["error"]
                assert error.startswith("JSON number ") and words in error, (url, error)
        assert len(accepted(srv)) == before  # nothing reached the printer
        assert srv.service.selected is None


async def test_tool_names_int_cannot_read_answer_400(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        for body in ({"command": "target", "targets": {"tool\u00b2": 200}},
                     {"command": "offset", "offsets": {"tool" + "1" * 5000: 5}},
                     {"command": "select", "tool": "tool\u0661"}):   # ARABIC-INDIC DIGIT ONE
            r = await srv.client.post("/api/printer/tool", json=body)
            assert r.status_code == 400, r.text
            assert "is not a tool name (tool0, tool1, ...)" in r.json()["error"]


@pytest.mark.parametrize("url", [
    f"/api/files?recursive={HUGE}",
    "/api/files?recursive=%00",
    "/api/files?recursive=%ff",
    f"/api/files/local/{HUGE}",
    "/api/files/local/a%00b.gcode",
    "/api/files/local/%ed%a0%80.gcode",     # a UTF-8-encoded surrogate
    "/api/files/local/" + "%c3%a9" * 200,
    "/api/files/local/" + "a/" * 600 + "x.gcode",
    f"/api/files/local/cube.gcode?recursive={HUGE}",
    f"/downloads/files/local/{'b' * 300}.gcode",
    "/api/events?events=%00",
    f"/api/events?events={HUGE}",
    f"/api/system/commands/{HUGE}",
    f"/plugin/appkeys/request/{HUGE}",
    f"/api/printer?exclude={HUGE}",
])
async def test_odd_query_strings_and_path_parameters_answer_4xx(tmp_path, url):
    async with serve_for_test(tmp_path, connect=False) as srv:
        r = await srv.client.get(url)
        assert 200 <= r.status_code < 500, (url[:60], r.status_code, r.text)
        if r.status_code >= 400:
            assert r.json()["error"] and "internal" not in r.json()["error"]


async def test_names_and_paths_over_the_limits_answer_400_naming_the_limit(tmp_path):
    name_limit = f"file and folder names are limited to {MAX_NAME_BYTES} bytes (UTF-8)"
    path_limit = f"storage paths are limited to {MAX_PATH_BYTES} bytes"
    longest = "a" * (MAX_NAME_BYTES - len(".gcode")) + ".gcode"
    async with serve_for_test(tmp_path, connect=False) as srv:
        r = await srv.client.post("/api/files/local", files={"file": (longest, CUBE)})
        assert r.status_code == 201, r.text  # exactly at the limit is fine
        for kwargs, limit in (
            ({"files": {"file": ("a" + longest, CUBE)}}, name_limit),
            ({"files": {"file": ("é" * 125 + ".gcode", CUBE)}}, name_limit),  # 256 bytes
            ({"data": {"foldername": "f" * (MAX_NAME_BYTES + 1)}}, name_limit),
            ({"data": {"foldername": "f", "path": "p" * 300}}, name_limit),
            ({"files": {"file": ("x.gcode", CUBE)}, "data": {"path": "q" * 300}}, name_limit),
            ({"files": {"file": ("x.gcode", CUBE)}, "data": {"path": "/".join(["d" * 200] * 6)}},
             path_limit),
        ):
            r = await srv.client.post("/api/files/local", **kwargs)
            assert r.status_code == 400, (kwargs.get("data"), r.text)
            assert limit in r.json()["error"], r.text
        for destination, limit in (("m" * 300 + ".gcode", name_limit),
                                   ("/".join(["n" * 250] * 5), path_limit)):
            r = await srv.client.post(f"/api/files/local/{longest}",
                                      json={"command": "copy", "destination": destination})
            assert r.status_code == 400 and limit in r.json()["error"], r.text
        for url, limit in ((f"/api/files/local/{'z' * 300}.gcode", name_limit),
                           ("/api/files/local/" + "y/" * 600, path_limit)):
            for method in ("GET", "DELETE"):
                r = await srv.client.request(method, url)
                assert r.status_code == 400 and limit in r.json()["error"], r.text
                assert len(r.json()["error"]) < 300  # the path is cut in the message
        assert storage_names(srv) == [longest]  # nothing else was created


async def test_the_upload_path_field_is_sanitised_as_folder_names(tmp_path):
    subscription = """\
        events:
          subscriptions:
            - event: Upload
              type: gcode
              command: M117 added {path}
        """
    async with serve_for_test(tmp_path, subscription) as srv:
        rec = srv.events(["Upload", "FolderAdded"])
        r = await srv.client.post("/api/files/local", files={"file": ("x.gcode", CUBE)},
                                  data={"path": "nl\nM104 S250\n/b\x07c;d"})
        assert r.status_code == 201, r.text
        path = "nl_M104 S250_/b_c_d/x.gcode"
        assert r.json()["files"]["local"]["path"] == path
        await rec.wait_for("Upload")
        assert [e.payload["path"] for e in rec.of("FolderAdded")] == ["nl_M104 S250_",
                                                                      "nl_M104 S250_/b_c_d"]
        with trio.fail_after(10):
            while f"M117 added {path}" not in accepted(srv):
                await trio.sleep(0.02)
        assert not [line for line in accepted(srv) if line.startswith("M104")]
        assert storage_names(srv) == ["nl_M104 S250_", "nl_M104 S250_/b_c_d", path]
        # the same rules as folder names: no way up, no hidden folders
        r = await srv.client.post("/api/files/local", files={"file": ("y.gcode", CUBE)},
                                  data={"path": "ok/../../up"})
        assert r.status_code == 400 and "'..'" in r.json()["error"]
        r = await srv.client.post("/api/files/local", files={"file": ("y.gcode", CUBE)},
                                  data={"path": ".hidden/..."})
        assert r.status_code == 400 and "empty" in r.json()["error"]


async def test_reload_refuses_a_config_with_control_characters(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        with open(srv.config_path, encoding="utf-8") as f:
            text = f.read()
        running = srv.service.config
        for bad, message in (("# ring\x07\n", "control character BEL (U+0007) at column 7"),
                             ('serial:\n  hello_command: "M110\\0"\n',
                              ("[serial.hello_command] control character NUL (U+0000) (written "
                              "as an escape)"))):
            with open(srv.config_path, "w", encoding="utf-8") as f:
                f.write(text + bad)
            line = text.count("\n") + bad.count("\n")
            r = await srv.client.post("/api/system/reload")
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error.startswith("the configuration was not reloaded: "), error
            assert f"{srv.config_path}:{line}: {message}" in error, error
        assert srv.service.config is running  # the running one stays


async def test_symlink_loops_in_the_storage_are_skipped_and_listing_ends(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "printpipe.storage")
    files, outside = tmp_path / "files", tmp_path / "outside"
    (files / "real").mkdir(parents=True)
    outside.mkdir()
    (files / "real" / "x.gcode").write_bytes(CUBE)
    (outside / "y.gcode").write_bytes(CUBE)
    os.symlink(".", files / "a")              # a loop to the storage folder itself
    os.symlink("..", files / "real" / "b")    # a loop to the folder above
    os.symlink(outside, files / "out")        # out of the storage folder
    os.symlink("l2", files / "l1")            # links pointing at each other
    os.symlink("l1", files / "l2")
    async with serve_for_test(tmp_path, connect=False) as srv:
        for _ in range(2):
            with trio.fail_after(10):
                r = await srv.client.get("/api/files?recursive=true")
                flat = await srv.client.get("/api/files")
            assert r.status_code == 200 and flat.status_code == 200
            (real,) = r.json()["files"]
            assert (real["name"], [c["path"] for c in real["children"]]) == (
                "real", ["real/x.gcode"])
            assert [e["name"] for e in flat.json()["files"]] == ["real"]
        with trio.fail_after(10):
            r = await srv.client.get("/api/files/local/real?recursive=true")
        assert r.status_code == 200 and [c["name"] for c in r.json()["children"]] == ["x.gcode"]
    skipped = sorted(rec.getMessage() for rec in caplog.records
                     if rec.name == "printpipe.storage")
    assert skipped == [  # each once, though listed four times
        "storage: 'a' is not listed: a symlink to a folder above it (a loop)",
        "storage: 'l1' is not listed: a loop of symlinks",
        "storage: 'l2' is not listed: a loop of symlinks",
        "storage: 'out' is not listed: a symlink pointing out of the storage folder",
        "storage: 'real/b' is not listed: a symlink to a folder above it (a loop)",
    ]


async def test_stale_upload_temps_are_removed_at_start_and_nothing_else(tmp_path):
    files, outside = tmp_path / "files", tmp_path / "outside"
    stale = [".upload-abcd1234", "sub/.upload-zz_y9k2m", ".upload-meta-0a1b2c3d",
             ".upload-q1w2e3r4/x", ".deleting-a1b2c3d4/x/y.gcode"]
    kept = ["keep.gcode", ".upload-notes", "upload-abcd1234.gcode", ".uploads-abcd1234",
            ".upload-ABCD1234", "sub/.upload-abcd12345", "sub/k.gcode"]
    for rel in stale + kept + ["../outside/.upload-abcd1234"]:
        (files / rel).parent.mkdir(parents=True, exist_ok=True)
        (files / rel).write_bytes(b"partial")
    os.symlink(outside, files / "linked")  # never followed
    async with serve_for_test(tmp_path, connect=False) as srv:
        left = storage_names(srv)
        assert sorted(left) == sorted(["linked", "sub", *kept])
        assert (outside / ".upload-abcd1234").exists()
        assert (await srv.client.get("/api/files")).status_code == 200


async def test_an_upload_streams_into_a_temp_name_the_start_sweep_removes(tmp_path):
    boundary = "sweep-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"slow.gcode\"\r\n\r\n").encode() + CUBE
    release = trio.Event()

    async def body():
        yield head
        await release.wait()
        yield f"\r\n--{boundary}--\r\n".encode()

    async with serve_for_test(tmp_path, connect=False) as srv, trio.open_nursery() as nursery:
        root = srv.api.storage.root
        responses = []

        async def post() -> None:
            responses.append(await srv.client.post(
                "/api/files/local", content=body(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        nursery.start_soon(post)
        with trio.fail_after(10):
            while not (temps := [n for n in os.listdir(root) if n.startswith(".upload")]):
                await trio.sleep(0.01)
        assert [is_stale_temp(n) for n in temps] == [True]
        release.set()
    assert responses[0].status_code == 201
    assert os.listdir(root) == ["slow.gcode"] or sorted(os.listdir(root)) == [
        ".metadata.json", "slow.gcode"]


async def test_a_path_too_long_for_the_filesystem_answers_400(tmp_path):
    deep = tmp_path
    while len(str(deep)) < 3400:  # a storage folder deep enough that PATH_MAX (4096) is near
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    async with serve_for_test(deep, connect=False) as srv:
        path = "/".join(["p" * 250] * 3)  # within the storage's limits, not the filesystem's
        r = await srv.client.post("/api/files/local", files={"file": ("x.gcode", CUBE)},
                                  data={"path": path})
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith("file name too long for the storage's filesystem")
        assert not [n for n in storage_names(srv) if n.endswith(".gcode")]
