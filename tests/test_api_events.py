"""The HTTP event stream (Server-Sent Events) and `printpipe serve` as a process: a print
started over HTTP streams PrintStarted ... PrintDone, clients open and close, a client that
stops reading is dropped (its queue overflows, or a write makes no progress for the write
deadline) without slowing the printer or the other clients, and SIGTERM shuts down in order,
a stalled client connected or not."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager

import httpx
import pytest
import trio
from conftest import ROOT
from http_fixtures import KEY, read_until_reset, serve_for_test

from pipeline.app.http import server as http_server
from pipeline.app.http import stream as stream_endpoint

SMALL_RCVBUF = 4096  # a client that stops reading fills the socket buffers at once


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
    monkeypatch.setattr(http_server, "WRITE_DEADLINE", 0.5)
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


async def open_stalled_client(url: str) -> trio.socket.SocketType:
    """An event-stream client with a small receive buffer that never reads."""
    host, port = url.rsplit("//", 1)[1].split(":")
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    await sock.connect((host, int(port)))
    await sock.send(f"GET /api/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: {KEY}\r\n\r\n"
                    .encode())
    return sock


async def wait_streams(srv, count: int) -> None:
    with trio.fail_after(5):
        while sum(s.name.startswith("http ") for s in srv.service.bus.statistics()) < count:
            await trio.sleep(0.01)


async def test_a_stalled_client_is_dropped_at_the_write_deadline_while_others_keep_up(
        tmp_path, monkeypatch, caplog):
    # A slow trickle of large events: the socket buffers fill, the bus queue never does (it is
    # made large), so only the write deadline can drop the client. hypercorn shields its socket
    # writes, so before server.Connection this client stayed connected for as long as it liked.
    monkeypatch.setattr(http_server, "WRITE_DEADLINE", 2.0)
    monkeypatch.setattr(stream_endpoint, "STREAM_QUEUE", 10_000)
    got: list = []
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["ClientClosed"])
        # closed on the way out even if the test fails, or the server could not stop
        with await open_stalled_client(srv.url) as stalled:
            await wait_streams(srv, 1)
            async with (srv.client.stream("GET", "/api/events?events=PositionUpdate") as r,
                        trio.open_nursery() as nursery):
                nursery.start_soon(read_events, r, got)
                await wait_streams(srv, 2)
                start = trio.current_time()
                published, answered_while_stalled = 0, False
                with trio.fail_after(8):
                    while not rec.of("ClientClosed"):
                        srv.service.publish("PositionUpdate", {"x": published, "pad": "x" * 65536})
                        published += 1
                        if published == 10:  # half a second in: the stalled client is stuck
                            answered_while_stalled = await answers(srv, "M117 alive") and \
                                not rec.of("ClientClosed")
                        await trio.sleep(0.05)
                dropped_after = trio.current_time() - start
                with pytest.raises(ConnectionResetError):  # aborted: the client sees a reset
                    await read_until_reset(stalled)
                with trio.fail_after(5):
                    while len(got) < published:
                        await trio.sleep(0.02)
                srv.serving.stop()  # ends the reader's stream
    assert 2.0 <= dropped_after < 4.5
    assert answered_while_stalled  # the printer never waited for the stalled client
    assert [p["x"] for _, p in got] == list(range(published))  # nor did the other client
    assert "took no data for 2 s: connection dropped" in caplog.text


async def answers(srv, command: str) -> bool:
    r = await srv.client.post("/api/printer/command", json={"commands": [command]})
    with trio.fail_after(5):
        while command not in srv.service.session.virtual.firmware.accepted:
            await trio.sleep(0.01)
    return r.status_code == 204


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
        await wait_streams(srv, 1)
        srv.serving.stop()
        with trio.fail_after(5):
            await ended.wait()
    assert ended.is_set()


#: `printpipe serve` with the write deadline out of reach, so only the shutdown can drop a
#: client, and the shutdown's HTTP grace (serve.HTTP_GRACE, 2 s) shorter: the abort after it
#: is what is tested, not its length.
SERVE_WITHOUT_WRITE_DEADLINE = ("import sys; from pipeline.app.http import server; "
                                "server.WRITE_DEADLINE = 600.0; "
                                "from pipeline.app import serve; serve.HTTP_GRACE = 0.5; "
                                "from pipeline.app.cli.main import main; sys.exit(main())")


@contextmanager
def serve_process(tmp_path, *, code: str | None = None):
    """`printpipe serve` as a process (`code` replaces `-m pipeline.app.cli`), with Disconnecting
    and Shutdown subscriptions that append to marks.txt; yields (process, url, generated key)
    once the printer is Operational."""
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
    program = ["-c", code] if code else ["-m", "pipeline.app.cli"]
    with subprocess.Popen([sys.executable, *program, "serve", "-c", str(cfg)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        try:
            lines = []
            for _ in range(5):
                lines.append(proc.stdout.readline())
                if "serving the API on" in lines[-1]:
                    break
            url = lines[-1].rsplit(" ", 1)[-1].strip()
            # the generated key is never printed in full: read it where it is kept
            keys = tmp_path / "state" / "keys.json"
            for _ in range(100):
                if keys.exists():
                    break
                time.sleep(0.05)
            key = json.loads(keys.read_text())["master"]
            for _ in range(100):
                r = httpx.get(f"{url}/api/printer", headers={"X-Api-Key": key})
                if r.status_code == 200:
                    break
                time.sleep(0.05)
            assert r.status_code == 200 and r.json()["state"]["text"] == "Operational"
            yield proc, url, key
        finally:
            if proc.poll() is None:
                proc.kill()


def assert_stopped_in_order(tmp_path) -> None:
    # both ran (they are separate processes, so their order is not fixed)
    marks = tmp_path / "marks.txt"
    assert sorted(marks.read_text().splitlines()) == ["disconnecting", "shutdown"]


def test_printpipe_serve_starts_answers_and_stops_in_order_on_sigterm(tmp_path):
    with serve_process(tmp_path) as (proc, _, key):
        assert oct(os.stat(tmp_path / "state" / "keys.json").st_mode & 0o777) == "0o600"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        err = proc.stderr.read()
    assert key not in err  # the key is shown once on the console, never logged
    assert_stopped_in_order(tmp_path)


def dropped_by(metrics: str, subscriber: str) -> int | None:
    for line in metrics.splitlines():
        if line.startswith(f'printpipe_events_dropped_total{{subscriber="{subscriber}"}}'):
            return int(line.rsplit(" ", 1)[1])
    return None


def test_sigterm_stops_printpipe_serve_with_a_stalled_client_connected(tmp_path):
    with serve_process(tmp_path, code=SERVE_WITHOUT_WRITE_DEADLINE) as (proc, url, key):
        headers = {"X-Api-Key": key}
        host, port = url.rsplit("//", 1)[1].split(":")
        with socket.socket() as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
            stalled.connect((host, int(port)))
            stalled.sendall(f"GET /api/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: {key}\r\n\r\n"
                            .encode())
            name = f"http 127.0.0.1:{stalled.getsockname()[1]}"
            # thousands of ZChange events: the stream's writes stall, then its queue overflows
            # (its task is stuck in a write, so the overflow cannot end it either)
            z = [f"G1 Z{i / 10:.1f}" for i in range(1, 5001)]
            r = httpx.post(f"{url}/api/printer/command", headers=headers,
                           json={"commands": z}, timeout=20)
            assert r.status_code == 204
            for _ in range(200):
                dropped = dropped_by(httpx.get(f"{url}/metrics", headers=headers).text, name)
                if dropped:
                    break
                time.sleep(0.05)
            assert dropped, "the stream never stalled"
            time.sleep(0.3)
            assert dropped_by(httpx.get(f"{url}/metrics", headers=headers).text, name)
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            took = time.monotonic() - start
        err = proc.stderr.read()
    assert took < 6.5  # the HTTP grace (0.5 s), the disconnect, the Shutdown subscriptions
    assert f"aborting 1 HTTP connection(s) still open at shutdown: {name[5:]}" in err
    assert any("for Shutdown:" in line and "exited with 0" in line  # the log says it ran
               for line in err.splitlines())
    assert_stopped_in_order(tmp_path)
