"""The browser threat model against a real server: without keys (http.allow_anonymous) a
request that changes something must carry what no web page can send without a CORS preflight,
the Host header must name this host (DNS rebinding), and the open application-key request
endpoint is limited per client address and never rewrites keys.json on a poll."""

from __future__ import annotations

import os

import httpx
import pytest
import trio
from http_fixtures import KEY, serve_for_test

from pipeline.app.http.context import HostCheck, host_name, preflighted

ANONYMOUS = "allow_anonymous: true"
NAMES = "host_names:\n  - printpipe.local"
CUBE = b"G28\nG1 X10 Y10 F1200\nG1 X20\n"


def accepted(srv) -> list[str]:
    return list(srv.service.session.virtual.firmware.accepted)


def stored(srv) -> list[str]:
    """Every file under the storage folder, temp files included (not the metadata index)."""
    root = srv.api.storage.root
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, _dirs, files in os.walk(root) for n in files if n != ".metadata.json")


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, False),
    ({b"content-type": b"application/x-www-form-urlencoded"}, False),
    ({b"content-type": b"multipart/form-data; boundary=x"}, False),
    ({b"content-type": b"text/plain;charset=UTF-8"}, False),
    ({b"content-type": b"text/plain; application/json"}, False),   # the essence counts
    ({b"authorization": b"Basic dXNlcjpwYXNz"}, False),  # a browser re-sends cached ones
    ({b"content-type": b"application/json"}, True),
    ({b"content-type": b"Application/JSON; charset=utf-8"}, True),
    ({b"x-requested-with": b"XMLHttpRequest"}, True),
    ({b"content-type": b"multipart/form-data; boundary=x", b"x-requested-with": b"curl"}, True),
    ({b"x-requested-with": b""}, True),       # the header's name alone needs a preflight
    ({b"x-api-key": b""}, True),              # a slicer with an empty key field
    ({b"authorization": b"Bearer "}, True),
])
def test_preflighted(headers, expected):
    assert preflighted(headers) is expected


@pytest.mark.parametrize(("host", "name", "allowed"), [
    ("localhost", "localhost", True),
    ("LocalHost:5000", "localhost", True),
    ("localhost.:5000", "localhost", True),
    ("127.0.0.1:5000", "127.0.0.1", True),
    ("[::1]:5000", "::1", True),
    ("[::1]", "::1", True),
    ("192.168.1.20:5000", "192.168.1.20", True),      # any address: it cannot be rebound
    ("printpipe.local:5000", "printpipe.local", True),
    ("PrintPipe.Local.", "printpipe.local", True),
    ("evil.example:5000", "evil.example", False),
    ("printpipe.local.evil.example", "printpipe.local.evil.example", False),
    ("localhost.evil.example", "localhost.evil.example", False),
    ("2130706433:5000", "2130706433", False),         # browsers send 127.0.0.1 for that
    ("[::1", "[::1", False),
    ("", "", False),
])
def test_host_check_allows(host, name, allowed):
    assert host_name(host) == name
    assert HostCheck(lambda *a: None, ["printpipe.local"]).allows(host) is allowed


async def test_without_keys_what_a_web_page_could_post_is_refused_and_nothing_happens(tmp_path):
    async with serve_for_test(tmp_path, key=None, http_yaml=ANONYMOUS) as srv:
        c = srv.client
        assert "X-Api-Key" not in c.headers
        reloads = srv.events(["SettingsUpdated"])
        refused = [
            # a form upload that would start a print
            ("POST", "/api/files/local", {"files": {"file": ("cube.gcode", CUBE)},
                                          "data": {"print": "true"}}),
            ("POST", "/api/printer/command", {"data": {"commands": "M300"}}),  # form-encoded
            ("POST", "/api/printer/command", {"content": b'{"commands": ["M300"]}',
                                              "headers": {"Content-Type": "text/plain"}}),
            ("POST", "/api/system/reload", {}),                               # no body at all
            ("POST", "/api/job", {"data": {"command": "start"},
                                  "headers": {"Authorization": "Basic dXNlcjpwYXNz"}}),
            ("DELETE", "/api/files/local/cube.gcode", {}),
        ]
        for method, url, kwargs in refused:
            r = await c.request(method, url, **kwargs)
            assert r.status_code == 403, (url, r.text)
            assert "application/json or an X-Requested-With header" in r.json()["error"]
        await trio.sleep(0.3)
        assert stored(srv) == []                    # no file, no temp file
        assert not {"M300", "G1 X10 Y10 F1200"} & set(accepted(srv))
        assert reloads.names() == []
        assert srv.service.status().job is None
        # reading needs nothing; JSON and X-Requested-With are what a page cannot send
        assert (await c.get("/api/printer")).status_code == 200
        r = await c.post("/api/printer/command", json={"commands": ["M300"]})
        assert r.status_code == 204
        r = await c.post("/api/files/local", files={"file": ("cube.gcode", CUBE)},
                         headers={"X-Requested-With": "PrusaSlicer"})
        assert r.status_code == 201
        assert stored(srv) == ["cube.gcode"]
        r = await c.delete("/api/files/local/cube.gcode", headers={"X-Api-Key": ""})
        assert r.status_code == 204
        with trio.fail_after(10):
            while "M300" not in accepted(srv):
                await trio.sleep(0.02)


async def test_without_keys_a_configured_key_is_still_a_key(tmp_path):
    async with serve_for_test(tmp_path, key=KEY, http_yaml=ANONYMOUS, connect=False) as srv:
        c = srv.client
        assert "X-Api-Key" not in c.headers         # serving anonymously: no key handed out
        for headers in ({"X-Api-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
            r = await c.post("/api/files/local", files={"file": ("a.gcode", CUBE)},
                             headers=headers)
            assert r.status_code == 201
        r = await c.post("/api/files/local", files={"file": ("b.gcode", CUBE)},
                         headers={"X-Api-Key": "wrong-key-0123456789"})
        assert r.status_code == 403 and r.json()["error"] == "invalid API key"
        assert stored(srv) == ["a.gcode"]


async def test_without_keys_the_host_header_must_name_this_host(tmp_path):
    async with serve_for_test(tmp_path, key=None, connect=False,
                              http_yaml=f"{ANONYMOUS}\n{NAMES}") as srv:
        c = srv.client
        port = srv.url.rsplit(":", 1)[1]
        for host in ("evil.example", f"evil.example:{port}", "printpipe.local.evil.example",
                     f"localhost.evil.example:{port}"):
            r = await c.get("/api/printer", headers={"Host": host})   # a rebound page reads
            assert r.status_code == 421, host
            assert "does not answer to the name" in r.json()["error"]
            r = await c.post("/api/files/local", files={"file": ("x.gcode", CUBE)},
                             headers={"Host": host, "X-Requested-With": "x"})
            assert r.status_code == 421
        assert stored(srv) == []
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost",
                     f"printpipe.local:{port}", "PrintPipe.local."):
            r = await c.get("/api/version", headers={"Host": host})
            assert r.status_code == 200, host


async def test_with_keys_any_host_name_works_unless_names_are_configured(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:   # a LAN slicer, any name
        for host in ("printpipe.local", "printer.fritz.box:5000", "192.168.1.20"):
            assert (await srv.client.get("/api/version", headers={"Host": host})).is_success
    async with serve_for_test(tmp_path, connect=False,
                              http_yaml=NAMES) as srv:
        for host, status in (("printpipe.local:5000", 200), ("192.168.1.20:5000", 200),
                             ("printer.fritz.box", 421)):
            r = await srv.client.get("/api/version", headers={"Host": host})
            assert r.status_code == status, host


async def test_app_key_requests_are_limited_per_address_and_polls_write_nothing(tmp_path):
    async def ask(client: httpx.AsyncClient, app: str) -> httpx.Response:
        return await client.post("/plugin/appkeys/request", json={"app": app})

    async with serve_for_test(tmp_path, connect=False) as srv:
        other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")  # another host
        async with (httpx.AsyncClient(base_url=srv.url) as one,
                    httpx.AsyncClient(base_url=srv.url, transport=other) as two):
            tokens = []
            for i in range(3):
                r = await ask(one, f"app{i}")
                assert r.status_code == 201
                tokens.append(r.json()["app_token"])
            r = await ask(one, "one too many")
            assert r.status_code == 429 and "from 127.0.0.1" in r.json()["error"]
            assert (await ask(two, "Home Assistant")).status_code == 201
            assert [r.client for r in srv.api.keys.pending()] == ["127.0.0.1"] * 3 + [
                "127.0.0.2"]
            keys_json = os.path.join(srv.api.keys.folder, "keys.json")
            before = os.stat(keys_json)
            for _ in range(5):
                for token in tokens:
                    assert (await one.get(f"/plugin/appkeys/request/{token}")).status_code == 202
            after = os.stat(keys_json)
            assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
