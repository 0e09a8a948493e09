"""The push socket (`/sockjs/websocket`) against a real server, with a real websocket client
(trio-websocket): passive login and auth, `connected`, `history`, `current` during a print with
progress moving, events, throttle, subscribe, refusals, anonymous-mode guards, shutdown, and a
client that stops reading, which never slows the print and is dropped."""

from __future__ import annotations

import itertools
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import attrs
import pytest
import trio
from conftest import load_yaml
from http_fixtures import KEY, config_text, serve_for_test
from sample_prints import write_sample
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
)
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws_events

from pipeline.app.http import server as http_server
from pipeline.app.http.push import login as push_login
from pipeline.app.http.push import sockjs
from pipeline.app.keys import KeyStore

SLOW_MOVES = "virtual:\n  faults:\n    ok_delay: 0.002\n"
REPORT_EVERY_SECOND = "serial:\n  timeouts:\n    temperature_autoreport: 1\n"
#: `sockjs.BASE_RATE` in the print tests (OctoPrint's 0.5 s would need prints of seconds to
#: see several `current` messages and their spacing).
RATE = 0.1
#: Lines of the print tests' file: about a second at SLOW_MOVES (many RATEs).
PRINT_LINES = 500


def ws_url(srv) -> str:
    return srv.url.replace("http://", "ws://") + "/sockjs/websocket"


@asynccontextmanager
async def open_push(srv, url: str | None = None, **options) -> AsyncIterator[WebSocketConnection]:
    """trio-websocket's client on the push socket (or `url`). When the server closes first,
    its reader stops at the TCP close without closing its own socket (and `aclose` then
    returns early), so the stream is closed here."""
    async with open_websocket_url(url or ws_url(srv), **options) as ws:
        try:
            yield ws
        finally:
            stream = ws._stream
    await stream.aclose()


async def login(srv) -> str:
    """A passive login with the key; returns the `auth` value."""
    r = await srv.client.post("/api/login", json={"passive": True})
    assert r.status_code == 200
    body = r.json()
    return f"{body['name']}:{body['session']}"


async def collect(ws, into: list) -> None:
    """Every message until the socket closes, as (kind, payload)."""
    try:
        while True:
            message = json.loads(await ws.get_message())
            into.extend(message.items())
    except ConnectionClosed:
        pass


async def silent_for(ws, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        await ws.get_message()
        return False
    return True


async def upload_and_print(srv, tmp_path, lines: int) -> None:
    path, _ = write_sample(tmp_path, lines)
    with open(path, "rb") as f:
        r = await srv.client.post("/api/files/local", data={"print": "true"},
                                  files={"file": ("job.gcode", f.read())})
    assert r.status_code == 201


def of(got: list, kind: str) -> list:
    return [p for k, p in got if k == kind]


async def test_login_auth_history_and_current_with_progress_during_a_print(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sockjs, "BASE_RATE", RATE)
    async with serve_for_test(tmp_path, SLOW_MOVES + REPORT_EVERY_SECOND) as srv:
        r = await srv.client.post("/api/login", json={"passive": True})
        body = r.json()
        assert body["name"] == "master" and len(body["session"]) == 32
        assert {"active", "admin", "groups", "permissions", "needs", "roles"} <= set(body)
        got: list = []
        async with open_push(srv) as ws, trio.open_nursery() as nursery:
            nursery.start_soon(collect, ws, got)
            await ws.send_message(json.dumps({"auth": f"master:{body['session']}"}))
            with trio.fail_after(5):
                while not of(got, "history"):
                    await trio.sleep(0.02)
            await upload_and_print(srv, tmp_path, PRINT_LINES)
            with trio.fail_after(30):
                while not any(e["type"] == "PrintDone" for e in of(got, "event")):
                    await trio.sleep(0.05)
            with trio.fail_after(10):  # a temperature report (every second) among the lines
                while not any("T:" in line for c in of(got, "current") for line in c["logs"]):
                    await trio.sleep(0.05)
            srv.serving.stop()  # the socket closes cleanly: 1001, going away
        assert ws.closed.code == 1001
    kinds = [k for k, _ in got]
    assert kinds[0] == "connected" and kinds[1] == "history"
    connected = got[0][1]
    assert connected["version"] == "1.11.0" and "apikey" not in connected
    history = got[1][1]
    assert history["state"]["text"] == "Operational"
    assert {"job", "progress", "currentZ", "offsets", "temps", "logs", "messages",
            "serverTime"} <= set(history)
    printing = [c for c in of(got, "current") if c["state"]["text"] == "Printing"]
    completions = [c["progress"]["completion"] for c in printing]
    assert len(completions) >= 3 and completions == sorted(completions)
    assert completions[0] < completions[-1]  # progress moves
    assert printing[-1]["job"]["file"]["name"] == "job.gcode"
    assert printing[-1]["busyFiles"] == [{"origin": "local", "path": "job.gcode"}]
    assert printing[-1]["currentZ"] is not None
    logs = [line for c in of(got, "current") for line in c["logs"]]  # the printer's lines
    assert any(line.startswith("Recv: ") and "T:" in line for line in logs)  # temperatures
    assert max(len(c["logs"]) for c in printing) <= sockjs.MAX_LOG_LINES
    times = [c["serverTime"] for c in of(got, "current")]
    assert min(b - a for a, b in itertools.pairwise(times)) >= RATE * 0.9  # rate limit
    events = [e["type"] for e in of(got, "event")]
    assert events.index("PrintStarted") < events.index("PrintDone")
    done = next(e["payload"] for e in of(got, "event") if e["type"] == "PrintDone")
    assert done["name"] == "job.gcode"


async def unauthenticated(srv, into: dict) -> None:
    """A socket that never authenticates: what it gets after `connected`, how long after,
    and how it was closed."""
    async with open_push(srv) as ws:
        await ws.get_message()
        opened = trio.current_time()
        into["message"] = json.loads(await ws.get_message())
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    into["after"] = trio.current_time() - opened
    into["closed"] = ws.closed


async def test_before_auth_nothing_but_connected_and_a_wrong_auth_is_closed(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sockjs, "AUTH_WAIT", 2.0)
    caplog.set_level(logging.INFO, "printpipe.http")
    no_auth: dict = {}
    async with serve_for_test(tmp_path) as srv, trio.open_nursery() as nursery:
        rec = srv.events(["ClientOpened", "ClientAuthed"])
        async with open_push(srv) as ws:
            assert "connected" in json.loads(await ws.get_message())
            await rec.wait_for("ClientOpened")
            # no auth at all: closed after AUTH_WAIT (meanwhile, the sockets below)
            nursery.start_soon(unauthenticated, srv, no_auth)
            srv.service.publish("PositionUpdate", {"x": 1})
            assert await silent_for(ws, 0.5)  # no event, no history, no current
            await ws.send_message(json.dumps({"auth": "master:0123456789abcdef"}))
            assert json.loads(await ws.get_message()) == {"reauthRequired": {"reason": "stale"}}
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
        assert ws.closed.code == 1008
        assert ws.closed.reason.startswith("unknown or expired session")
        async with open_push(srv) as ws:
            await ws.get_message()
            await ws.send_message(json.dumps({"auth": "no colon"}))
            await ws.get_message()
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
        assert ws.closed.code == 1008 and "name:session" in ws.closed.reason
        async with open_push(srv) as ws:  # nonsense is ignored, logged once
            await ws.get_message()
            for bad in ("not json", "[1]", '{"throttle": 0}', '{"throttle": 1e400}',
                        '{"subscribe": 3}'):
                await ws.send_message(bad)
            assert await silent_for(ws, 0.5)
            assert caplog.text.count("ignored a message") == 1
            assert "ignored throttle" not in caplog.text
            await ws.send_message(json.dumps({"throttle": 2, "pad": "x" * sockjs.MAX_MESSAGE}))
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
        assert ws.closed.code == 1009 and ws.closed.reason.startswith("a message of 65")
        async with open_push(srv) as ws:  # the reason is cut to what a close frame holds
            await ws.get_message()
            await ws.send_message(json.dumps({"auth": "é" * 100 + ":0123"}))
            await ws.get_message()
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
        assert ws.closed.code == 1008 and len(ws.closed.reason.encode()) <= 123
        # another user's name with a real session is refused too
        auth = await login(srv)
        async with open_push(srv) as ws:
            await ws.get_message()
            await ws.send_message(json.dumps({"auth": "someone" + auth[6:]}))
            await ws.get_message()
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
        assert ws.closed.code == 1008
        with trio.fail_after(10):
            while "closed" not in no_auth:
                await trio.sleep(0.05)
        assert not rec.of("ClientAuthed")
    assert no_auth["message"] == {"reauthRequired": {"reason": "stale"}}
    assert 1.5 < no_auth["after"] < 4
    assert no_auth["closed"].code == 1008
    assert no_auth["closed"].reason.startswith("no auth within 2 s")


async def test_throttle_and_subscribe_shape_what_each_socket_gets(tmp_path, monkeypatch):
    monkeypatch.setattr(sockjs, "BASE_RATE", RATE)
    async with serve_for_test(tmp_path, SLOW_MOVES) as srv:
        rec = srv.events(["ClientAuthed"])
        plain: list = []
        slow: list = []
        done_only: list = []
        async with (open_push(srv) as a,
                    open_push(srv) as b,
                    open_push(srv) as c,
                    trio.open_nursery() as nursery):
            for ws, into, extra in ((a, plain, {}), (b, slow, {"throttle": 3}),
                                    (c, done_only, {"subscribe": {"state": False,
                                                                  "events": ["PrintDone"]}})):
                nursery.start_soon(collect, ws, into)
                await ws.send_message(json.dumps({"auth": await login(srv), **extra}))
            await rec.wait_for("ClientAuthed", timeout=5, count=3)
            await upload_and_print(srv, tmp_path, PRINT_LINES)
            with trio.fail_after(30):
                while not of(done_only, "event"):
                    await trio.sleep(0.05)
            await c.send_message(json.dumps({"subscribe": {"state": True}}))
            with trio.fail_after(5):
                while not of(done_only, "history"):
                    await trio.sleep(0.05)
            srv.serving.stop()
    gaps = [b - a for a, b in itertools.pairwise(m["serverTime"] for m in of(slow, "current"))]
    assert gaps and min(gaps) >= 3 * RATE * 0.95  # 3 x RATE
    assert len(of(plain, "current")) > len(of(slow, "current"))
    assert [k for k, _ in done_only][:3] == ["connected", "event", "history"]
    assert of(done_only, "event")[0]["type"] == "PrintDone"


def test_connected_tells_versions_and_no_key(tmp_path):
    config = load_yaml(config_text(tmp_path), "a.yaml")
    other = attrs.evolve(config, http=attrs.evolve(config.http, api_key="another-key-0123456"))
    first, second = (sockjs.connected_payload(SimpleNamespace(
        config=c, version="1.2.3", control=SimpleNamespace(name="default")))
                     for c in (config, other))
    assert first == second  # the config hash is of everything but the key
    assert first["version"] == "1.11.0" and "printpipe 1.2.3" in first["display_version"]
    assert KEY not in json.dumps(first) and "apikey" not in first
    assert first["printer"] == "default"  # printpipe's: which printer this socket is


def test_sessions_go_stale_and_die_with_their_key(tmp_path, monkeypatch):
    now = [0.0]
    sessions = push_login.Sessions(clock=lambda: now[0])
    keys = KeyStore(str(tmp_path), configured_key=KEY)
    token = sessions.issue("master", KEY)
    assert sessions.check("master", token, keys, anonymous=False)
    assert not sessions.check("other", token, keys, anonymous=False)
    now[0] = push_login.SESSION_STALE - 1  # used just now: alive for another SESSION_STALE
    assert sessions.check("master", token, keys, anonymous=False)
    now[0] += push_login.SESSION_STALE + 1
    assert not sessions.check("master", token, keys, anonymous=False)
    changed = KeyStore(str(tmp_path), configured_key="another-key-0123456789")
    token = sessions.issue("master", KEY)
    assert not sessions.check("master", token, changed, anonymous=False)  # the key changed
    anonymous = sessions.issue("anonymous", None)
    assert sessions.check("anonymous", anonymous, keys, anonymous=True)
    assert not sessions.check("anonymous", anonymous, keys, anonymous=False)
    monkeypatch.setattr(push_login, "MAX_SESSIONS", 3)
    tokens = []
    for _ in range(4):
        now[0] += 1
        tokens.append(sessions.issue("master", KEY))
    assert not sessions.check("master", tokens[0], keys, anonymous=False)  # least recent
    assert all(sessions.check("master", t, keys, anonymous=False) for t in tokens[1:])


async def raw_handshake(srv, headers: list[tuple[bytes, bytes]], *, host: str = "127.0.0.1",
                        rcvbuf: int | None = None):
    """A websocket opened by hand (wsproto frames, a raw socket): returns the socket, the
    connection and the first events (AcceptConnection or RejectConnection first)."""
    _, port = srv.url.rsplit(":", 1)
    sock = trio.socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", int(port)))
    conn = WSConnection(ConnectionType.CLIENT)
    await sock.send(conn.send(ws_events.Request(host=host, target="/sockjs/websocket",
                                                extra_headers=headers)))
    got: list = []
    with trio.fail_after(5):
        while not got:
            conn.receive_data(await sock.recv(65536))
            got.extend(conn.events())
    return sock, conn, got


async def rejection(srv, headers: list[tuple[bytes, bytes]], *,
                    host: str = "127.0.0.1") -> tuple[int, bytes]:
    """The status and body of a refused websocket handshake."""
    sock, conn, got = await raw_handshake(srv, headers, host=host)
    with sock:
        assert isinstance(got[0], ws_events.RejectConnection)
        with trio.fail_after(5):
            while not (got and isinstance(got[-1], ws_events.RejectData)
                       and got[-1].body_finished):
                conn.receive_data(await sock.recv(65536) or None)
                got.extend(conn.events())
        body = b"".join(bytes(e.data) for e in got if isinstance(e, ws_events.RejectData))
        return got[0].status_code, body


async def test_anonymous_mode_guards_the_socket_as_the_rest(tmp_path):
    async with serve_for_test(tmp_path, key=None, http_yaml="allow_anonymous: true") as srv:
        _, port = srv.url.rsplit(":", 1)
        status, body = await rejection(srv, [(b"Origin", b"http://evil.example")])
        assert status == 403 and b"Origin must match its Host" in body
        status, body = await rejection(srv, [], host="evil.example")  # DNS rebinding
        assert status == 421 and b"evil.example" in body
        r = await srv.client.post("/api/login", json={"passive": True})
        auth = f"anonymous:{r.json()['session']}"
        async with open_push(srv, extra_headers=[
                (b"Origin", f"http://127.0.0.1:{port}".encode())]) as ws:
            await ws.get_message()
            await ws.send_message(json.dumps({"auth": auth}))
            assert "history" in json.loads(await ws.get_message())
            listeners = srv.service.session.core.line_listeners
            assert listeners  # the socket's terminal lines
        with trio.fail_after(5):  # closed: nothing is left on the receive path
            while listeners:
                await trio.sleep(0.02)


async def test_a_socket_that_stops_reading_never_slows_the_print_and_is_dropped(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(http_server, "WRITE_DEADLINE", 1.0)
    async with serve_for_test(tmp_path, SLOW_MOVES) as srv:
        rec = srv.events(["PrintDone", "ClientClosed"])
        start = trio.current_time()
        await upload_and_print(srv, tmp_path, PRINT_LINES)
        await rec.wait_for("PrintDone", timeout=30)
        alone = trio.current_time() - start

        auth = await login(srv)
        sock, conn, got = await raw_handshake(srv, [], rcvbuf=4096)
        with sock:
            assert isinstance(got[0], ws_events.AcceptConnection)
            await sock.send(conn.send(ws_events.TextMessage(data=json.dumps({"auth": auth}))))
            with trio.fail_after(5):
                while not any(s.name.startswith("push ") and s.delivered
                              for s in srv.service.bus.statistics()):
                    srv.service.publish("PositionUpdate", {"pad": "x"})
                    await trio.sleep(0.05)
            start = trio.current_time()
            await upload_and_print(srv, tmp_path, PRINT_LINES)
            blob = "x" * 2000
            for i in range(3000):  # megabytes for a client that reads nothing
                srv.service.publish("PositionUpdate", {"x": i, "pad": blob})
            await rec.wait_for("PrintDone", timeout=30, count=2)
            stalled = trio.current_time() - start
            await rec.wait_for("ClientClosed", timeout=10)
    assert stalled < alone * 1.5 + 1.0  # about the same time
    assert not any(s.name.startswith("push ") for s in srv.service.bus.statistics())
    # dropped when its queue overflowed, or when a write made no progress for the deadline
    assert (("client push 127.0.0.1" in caplog.text and "not keeping up" in caplog.text)
            or "took no data for 1 s" in caplog.text)


async def test_timelapse_message_carries_the_config_and_follows_each_change(
        tmp_path, monkeypatch):
    """OctoPrint's `{"timelapse": config}` after auth (the config GET /api/timelapse shows),
    again after POST /api/timelapse changes it, and `{"timelapse": null}` once it is off."""
    monkeypatch.setattr(sockjs, "BASE_RATE", RATE)
    cam = ("webcam:\n  snapshot: http://127.0.0.1:9/snapshot.jpg\n"
           "timelapse:\n  mode: zchange\n  fps: 10\n  post_roll: 2\n")
    async with serve_for_test(tmp_path, cam, connect=False) as srv:
        auth = await login(srv)
        got: list = []
        async with open_push(srv) as ws, trio.open_nursery() as nursery:
            nursery.start_soon(collect, ws, got)
            with trio.fail_after(5):
                while not of(got, "connected"):
                    await trio.sleep(0.02)
            assert of(got, "timelapse") == []  # nothing before auth
            await ws.send_message(json.dumps({"auth": auth}))
            with trio.fail_after(5):
                while not of(got, "timelapse"):
                    await trio.sleep(0.02)
            listed = (await srv.client.get("/api/timelapse")).json()["config"]
            first = of(got, "timelapse")[0]
            assert first == listed
            assert first == {"type": "zchange", "postRoll": 2.0, "fps": 10,
                             "renderAfterPrint": True, "retractionZHop": 0.0,
                             "minDelay": first["minDelay"], "park": False}
            r = await srv.client.post("/api/timelapse", json={"type": "timed", "interval": 3})
            assert r.status_code == 200
            with trio.fail_after(5):
                while len(of(got, "timelapse")) < 2:
                    await trio.sleep(0.02)
            timed = of(got, "timelapse")[1]
            assert timed == r.json()["config"]
            assert timed["type"] == "timed" and timed["interval"] == 3.0
            assert "retractionZHop" not in timed
            r = await srv.client.post("/api/timelapse", json={"type": "off"})
            assert r.status_code == 200
            with trio.fail_after(5):
                while len(of(got, "timelapse")) < 3:
                    await trio.sleep(0.02)
            assert of(got, "timelapse")[2] is None
            srv.serving.stop()
    assert [k for k, _ in got].count("timelapse") == 3  # once per change, not per `current`
