"""pipeline.app.http.server over real sockets on 127.0.0.1: a write the client never takes is
aborted after the write deadline, a slow reader is not, and shutdown aborts the connections
still open after the grace period, though hypercorn shields its socket writes."""

from __future__ import annotations

import socket

import httpx
import pytest
import trio
from http_fixtures import read_until_reset
from hypercorn.config import Config

from pipeline.app.http import server as http_server
from pipeline.app.http.server import Connection, serve_http

SMALL = 4096  # socket buffers, so a client that stops reading stalls the writer at once


async def connected_pair(rcvbuf: int = SMALL) -> tuple[Connection, trio.socket.SocketType]:
    """A server-side Connection and a raw client socket with a small receive buffer."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = trio.socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await client.connect(listener.getsockname())
    accepted, _ = await listener.accept()
    listener.close()
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL)
    return Connection(trio.SocketStream(accepted)), client


async def test_a_write_the_client_never_takes_is_aborted_after_the_deadline(
        monkeypatch, caplog):
    monkeypatch.setattr(http_server, "WRITE_DEADLINE", 0.5)
    conn, client = await connected_pair()
    start = trio.current_time()
    with pytest.raises(trio.BrokenResourceError), trio.fail_after(5):
        await conn.send_all(b"x" * 4_000_000)
    elapsed = trio.current_time() - start
    assert 0.5 <= elapsed < 1.5
    assert conn.socket.fileno() == -1
    assert "took no data for 0.5 s: connection dropped" in caplog.text
    with pytest.raises(ConnectionResetError):  # aborted with a reset, not a polite FIN
        await read_until_reset(client)
    client.close()
    with pytest.raises(trio.ClosedResourceError):  # later writes fail at once
        await conn.send_all(b"more")


async def test_the_deadline_fires_inside_a_shielded_write(monkeypatch):
    # what hypercorn's TCPServer.protocol_send does around every write
    monkeypatch.setattr(http_server, "WRITE_DEADLINE", 0.3)
    conn, client = await connected_pair()
    with trio.fail_after(5), trio.CancelScope(shield=True), \
            pytest.raises(trio.BrokenResourceError):
        await conn.send_all(b"x" * 4_000_000)
    client.close()


async def test_a_slow_reader_keeps_its_connection(monkeypatch):
    # the deadline is on progress: the whole write takes several deadlines, each step less
    monkeypatch.setattr(http_server, "WRITE_DEADLINE", 0.2)
    conn, client = await connected_pair()
    data = b"y" * 100_000
    got = bytearray()

    async def slow_reader() -> None:
        while len(got) < len(data):
            await trio.sleep(0.05)
            got.extend(await client.recv(SMALL))

    start = trio.current_time()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_reader)
            await conn.send_all(data)
    assert trio.current_time() - start > 3 * 0.2
    assert bytes(got) == data
    await conn.aclose()
    client.close()


async def endless(scope, receive, send) -> None:
    """An ASGI app that streams until the connection ends."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        await send({"type": "http.response.body", "body": b"z" * 65536, "more_body": True})


async def start_server(nursery, app, stop: trio.Event, done: trio.Event,
                       graceful: float = 0.5, concurrency: int = 4,
                       busy: bool = False, keep_alive: float = 5.0) -> tuple[str, int]:
    """serve_http(app) on 127.0.0.1 in `nursery` until `stop`; `done` once it returned. With
    `busy` a print runs (as far as the pacer knows)."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = graceful
    config.keep_alive_timeout = keep_alive

    async def run(task_status) -> None:
        await serve_http(app, config, shutdown_trigger=stop.wait, concurrency=concurrency,
                         busy=lambda: busy, task_status=task_status)
        done.set()

    urls = await nursery.start(run)
    host, port = urls[0].rsplit("//", 1)[1].split(":")
    return host, int(port)


async def test_shutdown_aborts_what_is_still_open_after_the_grace(monkeypatch, caplog):
    monkeypatch.setattr(http_server, "WRITE_DEADLINE", 4.0)  # not what ends it here
    stop, done = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, endless, stop, done)
        client = trio.socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL)
        await client.connect(address)
        await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(0.3)  # the app fills the buffers and blocks in a shielded write
        stop.set()
        start = trio.current_time()
        with trio.fail_after(5):
            await done.wait()
    assert 0.5 <= trio.current_time() - start < 2
    assert "aborting 1 HTTP connection(s) still open at shutdown" in caplog.text
    with pytest.raises(ConnectionResetError):
        await read_until_reset(client)
    client.close()


async def failing(scope, receive, send) -> None:
    """An ASGI app that fails on /early before answering and on /late half-way through."""
    if scope["path"] == "/late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
    if scope["path"] != "/fine":
        raise RuntimeError(f"broken at {scope['path']}\nsecond line")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_an_app_exception_stays_in_its_request_and_is_one_line(caplog):
    stop, done = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        host, port = await start_server(nursery, failing, stop, done)
        base = f"http://{host}:{port}"
        for _ in range(2):
            assert (await client.get(f"{base}/early")).status_code == 500
            with pytest.raises(httpx.RemoteProtocolError):  # ended mid-body: no valid answer
                await client.get(f"{base}/late")
            r = await client.get(f"{base}/fine")
            assert (r.status_code, r.text) == (200, "ok")
        stop.set()
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert [r.getMessage() for r in failures] == [
        "HTTP GET /early failed: RuntimeError: broken at /early second line",
        "HTTP GET /late failed: RuntimeError: broken at /late second line"] * 2
    assert all(r.exc_info is None for r in caplog.records)
