"""No connection ends the service: hostile bytes on raw sockets against a real `printpipe serve`
while the virtual printer prints. Each connection is answered with an error or closed; after
each one the server still answers, the print goes on, and at its end the printer has received
every file line once, in order. Every failure is logged as one line without a traceback."""

from __future__ import annotations

import logging
import os
import socket

import trio
from http_fixtures import lines_received, serve_for_test

from pipeline.app.http import server as http_server
from pipeline.virtual.pair import expected_commands, sample_gcode

#: ok_delay 0.003 s a move: the print lasts about 2 s, longer than the payloads take
GCODE = sample_gcode(700, seed=21)
SLOW = "virtual:\n  faults:\n    ok_delay: 0.003\n"

WEBSOCKET = (b"GET /sockjs/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
             b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")
H2C = (b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GARBAGE = bytes(range(256)) * 4 + os.urandom(1024)

PAYLOADS = [
    # h11's LocalProtocolError escaped the connection task and ended the service
    ("websocket upgrade and one more byte", WEBSOCKET + b"X"),
    ("websocket upgrade elsewhere and one more byte",
     WEBSOCKET.replace(b"/sockjs/websocket", b"/nowhere") + b"X"),
    ("websocket upgrade and garbage frames", WEBSOCKET + GARBAGE),
    ("h2c upgrade", H2C),
    ("h2c upgrade and garbage", H2C + GARBAGE),
    ("HTTP/2 preface", H2_PREFACE),
    ("HTTP/2 preface and garbage", H2_PREFACE + GARBAGE),
    ("binary garbage", GARBAGE),
    ("a lone surrogate in the request line",
     "GET /api/\udcff HTTP/1.1\r\nHost: a\r\n\r\n".encode("utf-8", "surrogateescape")),
    ("invalid UTF-8 in the request line", b"GET /api/\xed\xa0\x80 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("invalid UTF-8 in a header",
     b"GET /api/version HTTP/1.1\r\nHost: a\r\nX-Api-Key: \xed\xa0\x80\xff\r\n\r\n"),
    ("a truncated request", b"GET /api/version HTTP/1.1\r\nHo"),
    ("a truncated body",
     b"POST /api/files/local HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{"),
]


async def send_and_close(address: tuple[str, int], payload: bytes) -> bytes:
    """Send `payload` as one packet, half-close, and read what the server answers until it
    ends the connection (a reset counts as the end)."""
    sock = trio.socket.socket()
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await sock.connect(address)
        await sock.send(payload)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        with trio.fail_after(5):
            while chunk := await sock.recv(65536):
                answer += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return answer


async def test_hostile_connections_end_alone_and_the_print_goes_on_exact(
        tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(http_server, "EOF_GRACE", 0.3)  # HTTP/2 after h2c waits for it
    caplog.set_level(logging.DEBUG, logger="printpipe.http")
    async with serve_for_test(tmp_path, SLOW) as srv:
        host, port = srv.url.rsplit("/", 1)[1].rsplit(":", 1)
        rec = srv.events(["PrintStarted", "PrintDone", "PrintFailed"])
        r = await srv.client.post("/api/files/local", data={"print": "true"},
                                  files={"file": ("hostile.gcode", GCODE.encode())})
        assert r.status_code == 201, r.text
        await rec.wait_for("PrintStarted")
        answers = {}
        for name, payload in PAYLOADS:
            answers[name] = await send_and_close((host, int(port)), payload)
            r = await srv.client.get("/api/version")
            assert r.status_code == 200, (name, r.text)
            assert not rec.of("PrintDone") and not rec.of("PrintFailed"), \
                f"the print ended before {name!r}: make the file longer"
        await rec.wait_for("PrintDone", timeout=60)
        assert not rec.of("PrintFailed")
        assert lines_received(srv, GCODE) == expected_commands(GCODE)
    assert answers["websocket upgrade and one more byte"].startswith(b"HTTP/1.1 4")
    assert answers["binary garbage"] == b"" or answers["binary garbage"].startswith(b"HTTP/1.1 4")
    http_logs = [rec for rec in caplog.records if rec.name.startswith("printpipe.http")]
    dropped = [rec.getMessage() for rec in http_logs if "dropped:" in rec.getMessage()]
    assert any("LocalProtocolError" in line for line in dropped), dropped
    for record in http_logs:
        assert record.exc_info is None and "\n" not in record.getMessage(), record.getMessage()
