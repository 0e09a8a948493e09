"""The push socket over SockJS's framed websocket transport (`/sockjs/<server>/<session>/
websocket`) against a real server, with a real websocket client (trio-websocket) speaking the
framing: `/sockjs/info`, the passive login with a form body, `o`, `a[...]` messages
(`connected`, `history`, `current`, events), `h` heartbeats, `c[code,"reason"]` closes; and
OctoPrint's own `octoprint_client` when it is importable."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from http_fixtures import serve_for_test
from test_api_push import RATE, SLOW_MOVES, open_push
from trio_websocket import ConnectionClosed

from pipeline.app.http.push import framing, sockjs


def sockjs_url(srv) -> str:
    return srv.url.replace("http://", "ws://") + "/sockjs/042/3f2ab9c1/websocket"


async def form_login(srv) -> str:
    """The passive login as `octoprint_client` sends it: a form body, `passive=True`."""
    r = await srv.client.post("/api/login", data={"passive": "True"})
    assert r.status_code == 200, r.text
    body = r.json()
    return f"{body['name']}:{body['session']}"


async def frames(ws, into: list[str]) -> None:
    try:
        while True:
            into.append(await ws.get_message())
    except ConnectionClosed:
        pass


def messages(got: list[str]) -> list[tuple[str, Any]]:
    """The (kind, payload) of every `a[...]` frame's messages."""
    out = []
    for frame in got:
        if frame.startswith("a"):
            for message in json.loads(frame[1:]):
                out.extend(message.items())
    return out


def send_frame(*items: dict) -> str:
    return json.dumps([json.dumps(item) for item in items])


async def test_sockjs_info_needs_no_key_and_says_websocket(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        r = await srv.client.get("/sockjs/info", headers={"X-Api-Key": ""})
        assert r.status_code == 200
        info = r.json()
        assert info["websocket"] is True and info["cookie_needed"] is False
        assert isinstance(info["entropy"], int)
        assert "no-cache" in r.headers["cache-control"]


async def test_form_and_json_passive_logins_both_answer_200(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        assert (await form_login(srv)).startswith("master:")
        r = await srv.client.post("/api/login", json={"passive": True})
        assert r.status_code == 200 and r.json()["session"]
        r = await srv.client.post("/api/login", data={"user": "", "pass": ""})
        assert r.status_code == 200  # `user` present: OctoPrint's other login, answered so
        r = await srv.client.post("/api/login", data={"nothing": "1"})
        assert r.status_code == 400 and "passive" in r.json()["error"]


async def test_framed_socket_open_auth_history_current_event_and_close(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sockjs, "BASE_RATE", RATE)
    async with serve_for_test(tmp_path, SLOW_MOVES) as srv:
        auth = await form_login(srv)
        got: list[str] = []
        async with open_push(srv, url=sockjs_url(srv)) as ws, trio.open_nursery() as nursery:
            nursery.start_soon(frames, ws, got)
            with trio.fail_after(5):
                while not messages(got):
                    await trio.sleep(0.02)
            await ws.send_message(send_frame(  # "Dwell": OctoPrint's docs' name for Dwelling
                {"throttle": 1}, {"subscribe": {"state": True, "events": ["Home", "Dwell"]}},
                {"auth": auth}))
            with trio.fail_after(5):
                while "history" not in dict(messages(got)):
                    await trio.sleep(0.02)
            r = await srv.client.post("/api/printer/command", json={"commands": ["G28", "G4 P0"]})
            assert r.status_code == 204
            with trio.fail_after(10):
                while not any(k == "event" and p["type"] == "Dwelling" for k, p in messages(got)):
                    await trio.sleep(0.02)
                while "current" not in dict(messages(got)):
                    await trio.sleep(0.02)
            srv.serving.stop()
    assert got[0] == "o"
    assert all(f == "o" or f[0] in "ac" for f in got)  # nothing unframed
    kinds = [k for k, _ in messages(got)]
    assert kinds[:2] == ["connected", "history"]
    assert [p["type"] for k, p in messages(got) if k == "event"] == ["Home", "Dwelling"]
    assert got[-1] == 'c[1001, "printpipe is shutting down"]'
    assert ws.closed.code == 1001


async def test_heartbeats_while_silent_and_a_bad_auth_closes_with_a_close_frame(
        tmp_path, monkeypatch):
    monkeypatch.setattr(framing.SockJS, "heartbeat", 0.1)
    async with serve_for_test(tmp_path, connect=False) as srv:
        async with open_push(srv, url=sockjs_url(srv)) as ws:
            assert await ws.get_message() == "o"
            assert json.loads((await ws.get_message())[1:])[0].keys() == {"connected"}
            with trio.fail_after(2):
                beats = [await ws.get_message() for _ in range(3)]
            assert beats == ["h", "h", "h"]
            await ws.send_message(send_frame({"auth": "master:nosuchsession"}))
            got = []
            with trio.fail_after(2):
                while not got or not got[-1].startswith("c"):
                    got.append(await ws.get_message())
            got = [f for f in got if f != "h"]
            assert json.loads(got[0][1:]) == [{"reauthRequired": {"reason": "stale"}}]
            code, reason = json.loads(got[-1][1:])
            assert code == 1008 and "log in again" in reason
            with pytest.raises(ConnectionClosed):  # closed: nothing more
                await ws.get_message()
        assert ws.closed.code == 1008


async def test_octoprint_client_connects_logs_in_and_hears_events(tmp_path, monkeypatch):
    """OctoPrint 1.11.8's own client library, unchanged (`pip install --no-deps
    octoprint==1.11.8`: it needs only requests and websocket-client). It runs threads of its
    own; their callbacks only record what they got."""
    client_lib = pytest.importorskip("octoprint_client")
    monkeypatch.setattr(sockjs, "BASE_RATE", RATE)
    async with serve_for_test(tmp_path) as srv:
        host = srv.url.removeprefix("http://")
        client = client_lib.Client(f"http://{host}", srv.client.headers["X-Api-Key"])
        seen: list[tuple[str, Any]] = []
        heard = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def on_message(ws, kind, payload):
            seen.append((kind, payload))
            if kind == "event" and payload["type"] == "Home":
                trio.from_thread.run_sync(heard.set, trio_token=token)

        socket = await trio.to_thread.run_sync(
            lambda: client.create_socket(on_message=on_message))
        try:
            with trio.fail_after(10):
                while "history" not in dict(seen):
                    await trio.sleep(0.05)
                r = await srv.client.post("/api/printer/command", json={"command": "G28"})
                assert r.status_code == 204
                await heard.wait()
                while "current" not in dict(seen):
                    await trio.sleep(0.05)
        finally:
            # its `disconnect` waits 3 s for the close reply that its own reader thread
            # takes (websocket-client's `close` timeout): closed with a short timeout instead;
            # its daemon thread ends with the server
            await trio.to_thread.run_sync(lambda: socket._ws.close(timeout=0.1))
        assert [k for k, _ in seen][:2] == ["connected", "history"]
