"""Real OctoPrint client libraries against a real `printpipe serve`: octorest (requests, run
in a worker thread, each call one step) and pyoctoprintapi as Home Assistant drives it (asyncio,
in its own process: tests/ha_client.py). Every step asserts what the client relies on,
including the failures seen before: the job showing the last finished file after another was
selected, and heaters reported as `{actual: null, target: null}` right after connect."""

from __future__ import annotations

import io
import json
import os
import sys
from functools import partial

import octorest
import trio
from http_fixtures import KEY, lines_received, serve_for_test, serve_printers_for_test

from pipeline.virtual.pair import expected_commands, sample_gcode

HERE = os.path.dirname(os.path.abspath(__file__))
FIRST = sample_gcode(150, seed=11)
SECOND = sample_gcode(250, seed=12)
SLOW = "virtual:\n  faults:\n    ok_delay: 0.002\n"
#: temperatures autoreported every second, so HA's first seconds after connect (a report
#: from the connect, then an autoreport) are watched in 1.3 s instead of 2.5
HA = SLOW + "serial:\n  timeouts:\n    temperature_autoreport: 1\n"
HA_WINDOW = "1.3"


async def call(fn, *args, **kwargs):
    """One blocking octorest call, off the event loop (the server runs on it)."""
    return await trio.to_thread.run_sync(partial(fn, *args, **kwargs))


async def until(fn, check, timeout: float = 30.0):
    with trio.fail_after(timeout):
        while not check(value := await call(fn)):
            await trio.sleep(0.05)
    return value


def ended(job: dict) -> bool:
    """Done and back to Operational (Finishing comes between: afterPrintDone runs there)."""
    return job["progress"]["completion"] == 100 and job["state"] == "Operational"


async def test_octorest_connects_uploads_selects_starts_and_reads_the_job(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        client = await call(octorest.OctoRest, url=srv.url, apikey=KEY)  # GET /api/version
        assert client.version["text"].startswith("OctoPrint")
        assert await call(client.state) == "Closed"
        await call(client.connect)
        await until(client.state, lambda s: s == "Operational", 15)
        printer = await call(client.printer)
        assert printer["state"]["flags"]["operational"] is True
        assert all(isinstance(t["actual"], float) for t in printer["temperature"].values())
        for name, text in (("first.gcode", FIRST), ("second.gcode", SECOND)):
            up = await call(client.upload, (name, io.BytesIO(text.encode())))
            assert up["done"] is True and up["files"]["local"]["name"] == name
        names = [f["name"] for f in (await call(client.files))["files"]]
        assert sorted(names) == ["first.gcode", "second.gcode"]
        # the first file prints to its end
        await call(client.select, "first.gcode", print=True)
        done = await until(client.job_info, ended)
        assert done["job"]["file"]["name"] == "first.gcode"
        # selecting the second shows the second, not the finished first (a failure before)
        await call(client.select, "second.gcode")
        job = await call(client.job_info)
        assert job["job"]["file"]["name"] == "second.gcode"
        assert job["progress"]["completion"] is None and job["job"]["user"] == "master"
        await call(client.start)
        done = await until(client.job_info, ended)
        assert done["job"]["file"]["name"] == "second.gcode"
        assert done["progress"]["printTimeLeft"] == 0
        await trio.sleep(1.1)
        assert (await call(client.job_info))["progress"] == done["progress"]  # frozen
        assert lines_received(srv, SECOND) == expected_commands(SECOND)
        await call(client.disconnect)
        await until(client.state, lambda s: s == "Closed", 15)
        job = await call(client.job_info)
        assert job["state"] == "Offline" and job["job"]["file"]["name"] is None


async def home_assistant(url: str, scenario: str) -> list[dict]:
    done = await trio.run_process(
        [sys.executable, os.path.join(HERE, "ha_client.py"), url, KEY, scenario, HA_WINDOW],
        capture_stdout=True, capture_stderr=True, check=False)
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line]
    assert done.returncode == 0, (lines, done.stderr.decode()[-2000:])
    return [line for line in lines if " on http" not in line["step"]]  # (which URL, which)


async def test_home_assistant_with_pyoctoprintapi(tmp_path):
    async with serve_for_test(tmp_path, HA, connect=False) as srv:
        steps = await home_assistant(srv.url, "setup")
        assert [s["step"] for s in steps] == ["app keys enabled", "server", "discovery",
                                              "webcam", "tracking"]
        steps = await home_assistant(srv.url, "connect")
        assert [s["step"] for s in steps] == ["connect", "sensors after connect"]
        assert steps[-1]["tool0"] > 0 and steps[-1]["bed"] > 0
        r = await srv.client.post("/api/files/local", data={"print": "true"},
                                  files={"file": ("ha.gcode", sample_gcode(4000).encode())})
        assert r.status_code == 201
        steps = await home_assistant(srv.url, "print")
        assert [s["step"] for s in steps] == ["printing", "paused", "resumed", "cancelled"]


async def test_home_assistant_with_pyoctoprintapi_on_printer_two_of_three_both_ways(tmp_path):
    """Home Assistant's setup and its coordinator's first seconds against printer b of a, b,
    c: by b's own port, then by its prefix on the main port (pyoctoprintapi's `path`), in one
    run; each way sees b (its uuid) and b's heaters, never a or c."""
    async with serve_printers_for_test(tmp_path, own_ports=("b",), extra_yaml=HA,
                                       connect=False) as farm:
        urls = f"{farm.url('b', 'port')},{farm.url('b', 'prefix')}"
        steps = await home_assistant(urls, "setup,connect")
        assert [s["step"] for s in steps] == [
            "app keys enabled", "server", "discovery", "webcam", "tracking", "connect",
            "sensors after connect"] * 2
        uuids = [s["uuid"] for s in steps if s["step"] == "discovery"]
        assert uuids[0] == uuids[1] == farm.serving.apis["b"].uuid
        assert all(farm.control(n).operational is (n == "b") for n in ("a", "b", "c"))
