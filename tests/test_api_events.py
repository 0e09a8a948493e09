"""The HTTP event stream (Server-Sent Events) and `printpipe serve` as a process: a print
started over HTTP streams PrintStarted ... PrintDone, clients open and close, a client that
stops reading is dropped without slowing the printer, and SIGTERM shuts down in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import httpx
import trio
from conftest import ROOT
from http_fixtures import KEY, serve_for_test

from pipeline.app.http import stream as stream_endpoint


async def read_events(response, into: list) -> None:
    """Read the stream to its end: httpx's body iterators are async generators that trio
    warns about when left half-consumed (encode/httpx#3686), so callers end the stream from
    the server side instead of leaving the loop early."""
    name = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            into.append((name, json.loads(line[6:])))


async def test_the_stream_delivers_a_print_started_over_http(tmp_path):
    gcode = tmp_path / "cube.gcode"
    gcode.write_text("G28\nG1 Z0.2 F300\nG1 X10 Y10 E1 F1200\nG1 Z0.4\nG1 X20 E2\n")
    async with serve_for_test(tmp_path) as srv:
        wanted = "PrintStarted,PrintDone,ZChange,FileSelected,PrinterStateChanged"
        got: list = []
        async with srv.client.stream("GET", f"/api/events?events={wanted}") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_events, r, got)
                await trio.sleep(0.1)
                up = await srv.client.post("/api/files/local", data={"select": "true"},
                                           files={"file": ("cube.gcode", gcode.read_bytes())})
                assert up.status_code == 201
                start = await srv.client.post("/api/job", json={"command": "start"})
                assert start.status_code == 204
                with trio.fail_after(20):
                    while "PrintDone" not in [n for n, _ in got]:
                        await trio.sleep(0.05)
                srv.serving.stop()  # ends the stream; the reader returns at its end
        names = [n for n, _ in got]
        assert names[0] == "FileSelected"
        assert names.index("PrintStarted") < names.index("ZChange") < names.index("PrintDone")
        assert set(names) <= set(wanted.split(","))  # the filter holds
        done = dict(got)["PrintDone"]
        assert done["name"] == "cube.gcode" and done["time"] > 0
        states = [p["state_id"] for n, p in got if n == "PrinterStateChanged"]
        assert "PRINTING" in states


async def test_clients_opening_and_closing_are_events(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["ClientOpened", "ClientAuthed", "ClientClosed"])
        async with srv.client.stream("GET", "/api/events") as r:
            assert r.status_code == 200
            await rec.wait_for("ClientAuthed")
        await rec.wait_for("ClientClosed")
        opened, authed, closed = (rec.of(n)[0].payload for n in
                                  ("ClientOpened", "ClientAuthed", "ClientClosed"))
        assert opened == {"remoteAddress": "127.0.0.1"} == closed
        assert authed == {"remoteAddress": "127.0.0.1", "username": "master"}
        r = await srv.client.get("/api/events?events=PrintDon")
        assert r.status_code == 400 and "PrintDon" in r.json()["error"]


async def test_a_client_that_stops_reading_is_dropped_and_never_slows_the_printer(
        tmp_path, monkeypatch):
    monkeypatch.setattr(stream_endpoint, "WRITE_DEADLINE", 0.5)
    monkeypatch.setattr(stream_endpoint, "STREAM_QUEUE", 16)
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["ClientClosed"])
        host, port = srv.url.rsplit("//", 1)[1].split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(f"GET /api/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: {KEY}\r\n\r\n"
                              .encode())
        with trio.fail_after(5):
            while not any(s.name.startswith("http ") for s in srv.service.bus.statistics()):
                await trio.sleep(0.01)
        blob = "x" * 2000
        with trio.testing.assert_no_checkpoints():  # publishing never waits for anyone
            for i in range(3000):
                srv.service.publish("PositionUpdate", {"x": i, "pad": blob})
        r = await srv.client.post("/api/printer/command", json={"commands": ["M117 alive"]})
        assert r.status_code == 204
        with trio.fail_after(10):
            while "M117 alive" not in srv.service.session.virtual.firmware.accepted:
                await trio.sleep(0.02)
        await rec.wait_for("ClientClosed", timeout=10)
        assert not any(s.name.startswith("http ") for s in srv.service.bus.statistics())
        await stream.aclose()


async def test_event_streams_end_cleanly_at_shutdown(tmp_path):
    ended = trio.Event()
    got: list = []
    async with (serve_for_test(tmp_path) as srv,
                httpx.AsyncClient(base_url=srv.url, headers={"X-Api-Key": KEY}) as c,
                c.stream("GET", "/api/events") as r,
                trio.open_nursery() as nursery):
        async def reader() -> None:
            await read_events(r, got)  # raises if the body is cut mid-chunk
            ended.set()
        nursery.start_soon(reader)
        await trio.sleep(0.2)
        srv.serving.stop()
        with trio.fail_after(5):
            await ended.wait()
    assert ended.is_set()


def test_printpipe_serve_starts_answers_and_stops_in_order_on_sigterm(tmp_path):
    marks = tmp_path / "marks.txt"
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        printer:
          port: virtual
        http:
          port: 0
        storage:
          folder: {tmp_path}/files
          state: {tmp_path}/state
        events:
          subscriptions:
            - event: Disconnecting
              type: system
              command: sh -c 'echo disconnecting >> {marks}'
            - event: Shutdown
              type: system
              command: sh -c 'echo shutdown >> {marks}'
        """))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "serve", "-c", str(cfg)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        try:
            lines = []
            for _ in range(5):
                lines.append(proc.stdout.readline())
                if "serving the API on" in lines[-1]:
                    break
            url = lines[-1].rsplit(" ", 1)[-1].strip()
            key = next(line.strip() for line in lines
                       if len(line.strip()) == 43)  # the generated key
            assert oct(os.stat(tmp_path / "state" / "keys.json").st_mode & 0o777) == "0o600"
            for _ in range(100):
                r = httpx.get(f"{url}/api/printer", headers={"X-Api-Key": key})
                if r.status_code == 200:
                    break
                import time
                time.sleep(0.05)
            assert r.status_code == 200 and r.json()["state"]["text"] == "Operational"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        err = proc.stderr.read()
    assert key not in err  # the key is shown once on the console, never logged
    # both ran (they are separate processes, so their order is not fixed)
    assert sorted(marks.read_text().splitlines()) == ["disconnecting", "shutdown"]
