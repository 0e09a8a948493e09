"""`POST /api/system/reload`: what changed applies at once where it can (the API key, the Host
names, the body limit, the storage folder, subscriptions), and the answer says exactly which
changed settings wait for the printer to reconnect or for a restart, and why. First the
decision table on its own (app/reload.py), then against a real server."""

from __future__ import annotations

import httpx
import pytest
import trio
from conftest import load_yaml
from http_fixtures import KEY, config_text, serve_for_test

from pipeline.app.reload import Reloader, Takes, changed_keys

NEW_KEY = "a-new-key-0123456789abcdef"
BASE = "printer:\n  port: virtual\nserial:\n  timeouts:\n    communication: 30\n"

#: edit of BASE: (changed keys, connected, what each takes)
CASES = {
    "nothing": (BASE, True, {}),
    "comment and blank lines only (declarations move, nothing changes)": (
        "# a comment\n\n" + BASE + "# the end\n", True, {}),
    "baud rate, connected": (BASE.replace("port: virtual", "port: virtual\n  baudrate: 250000"),
                             True, {"printer.baudrate": Takes.RECONNECT}),
    "baud rate, not connected: the next connect uses it": (
        BASE.replace("port: virtual", "port: virtual\n  baudrate: 250000"), False,
        {"printer.baudrate": Takes.LIVE}),
    "a serial timeout": (BASE.replace("30", "20"), True,
                         {"serial.timeouts.communication": Takes.RECONNECT}),
    "http port": (BASE + "http:\n  port: 5001\n", True, {"http.port": Takes.RESTART}),
    "state folder": (BASE + "storage:\n  state: /tmp/elsewhere\n", False,
                     {"storage.state": Takes.RESTART}),
    "storage folder without an applier: read at start only": (
        BASE + "storage:\n  folder: /tmp/elsewhere\n", False,
        {"storage.folder": Takes.RESTART}),
    "a subscription (the control registers events live)": (
        BASE + "events:\n  subscriptions:\n    - event: Home\n      type: gcode\n"
               "      command: M117 homed\n", True, {"events.subscriptions": Takes.LIVE}),
}


@pytest.mark.parametrize(("text", "connected", "want"), CASES.values(), ids=CASES.keys())
def test_what_a_reload_applies_and_what_waits(text, connected, want):
    old, new = load_yaml(BASE, "a.yaml"), load_yaml(text, "a.yaml")
    reloader = Reloader()
    called = []
    reloader.live("events", lambda o, n: called.append("events"))
    report = reloader.report(old, new, connected=connected)
    assert {c.key: c.takes for c in report.changes} == want
    assert all(c.why for c in report.changes if c.takes is not Takes.LIVE)
    answer = report.to_json()
    assert answer["reconnect_needed"] is (Takes.RECONNECT in want.values())
    assert answer["restart_needed"] is (Takes.RESTART in want.values())
    reloader.apply(old, new)
    assert called == (["events"] if "events.subscriptions" in want else [])


def test_a_new_section_registers_as_live_with_one_line():
    old = load_yaml(BASE, "a.yaml")
    new = load_yaml(BASE + "storage:\n  folder: /tmp/elsewhere\n", "a.yaml")
    reloader, seen = Reloader(), []
    reloader.live("storage.folder", lambda o, n: seen.append(n.storage.folder))  # the line
    report = reloader.report(old, new, connected=True)
    assert [(c.key, c.takes) for c in report.changes] == [("storage.folder", Takes.LIVE)]
    assert reloader.apply(old, new) == () and seen == ["/tmp/elsewhere"]


def test_an_applier_that_fails_is_reported_and_the_others_still_run():
    old = load_yaml(BASE, "a.yaml")
    new = load_yaml(BASE + "http:\n  body_limit: 10\n  host_names:\n    - a.lan\n", "a.yaml")
    reloader, seen = Reloader(), []

    def broken(o, n):
        raise OSError(28, "No space left on device")
    reloader.live("http.body_limit", broken)
    reloader.live("http.host_names", lambda o, n: seen.append(n.http.host_names))
    failed = reloader.apply(old, new)
    assert [(c.key, c.why) for c in failed] == [("http.body_limit",
                                                 "[Errno 28] No space left on device")]
    assert seen == [("a.lan",)]


def test_changed_keys_go_down_to_the_leaves():
    old = load_yaml(BASE, "a.yaml")
    new = load_yaml(BASE.replace("30", "20") + "http:\n  api_key: " + NEW_KEY + "\n", "b.yaml")
    assert changed_keys(old, new) == ["serial.timeouts.communication", "http.api_key"]


# ---- against a real server ----------------------------------------------------------------------
def rewrite(srv, tmp_path, *, key: str = KEY, printer: str = "") -> None:
    text = config_text(tmp_path, key=key)
    if printer:
        text = text.replace("  port: virtual\n", f"  port: virtual\n{printer}", 1)
    with open(srv.config_path, "w") as f:
        f.write(text)


async def reload(srv, key: str = KEY) -> dict:
    r = await srv.client.post("/api/system/reload", headers={"X-Api-Key": key})
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_new_api_key_works_at_once_and_the_old_one_is_refused(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        rewrite(srv, tmp_path, key=NEW_KEY)
        answer = await reload(srv)
        assert answer["changed"] == ["http.api_key"] and answer["applied"] == ["http.api_key"]
        assert answer["reconnect_needed"] is False and answer["restart_needed"] is False
        assert answer["reconnect"] == [] and answer["restart"] == []
        old = await srv.client.get("/api/version", headers={"X-Api-Key": KEY})
        assert old.status_code == 403
        new = await srv.client.get("/api/version", headers={"X-Api-Key": NEW_KEY})
        assert new.status_code == 200
        # application keys keep working: they are the key store's, not the config's
        token = srv.api.keys.request("Home Assistant", None)
        app_key = srv.api.keys.approve(token).key
        assert (await srv.client.get("/api/job", headers={"X-Api-Key": app_key})
                ).status_code == 200
        srv.api.keys.revoke("Home Assistant")  # and a revoked one stops at once
        assert (await srv.client.get("/api/job", headers={"X-Api-Key": app_key})
                ).status_code == 403


async def test_reload_answers_what_waits_for_a_reconnect_or_a_restart_and_why(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        nothing = await reload(srv)  # connected, nothing changed: no reconnect needed
        assert nothing["changed"] == [] and nothing["reconnect_needed"] is False
        rewrite(srv, tmp_path, printer="  baudrate: 250000\n")
        with open(srv.config_path) as f:
            text = f.read().replace("  port: 0\n", "  port: 5999\n")
        with open(srv.config_path, "w") as f:
            f.write(text)
        answer = await reload(srv)
        assert answer["changed"] == ["printer.baudrate", "http.port"]
        assert [c["key"] for c in answer["reconnect"]] == ["printer.baudrate"]
        assert "connect" in answer["reconnect"][0]["why"]
        assert [c["key"] for c in answer["restart"]] == ["http.port"]
        assert "binds" in answer["restart"][0]["why"]
        assert answer["reconnect_needed"] is True and answer["restart_needed"] is True
        assert (await srv.client.get("/api/version")).status_code == 200  # still on the old port


async def test_reconnect_settings_apply_at_the_next_connect_when_disconnected(tmp_path):
    async with serve_for_test(tmp_path, connect=False) as srv:
        rewrite(srv, tmp_path, printer="  baudrate: 250000\n")
        answer = await reload(srv)
        assert answer["applied"] == ["printer.baudrate"]
        assert answer["reconnect_needed"] is False
        assert srv.service.config.printer.baudrate == 250000


async def test_storage_folder_subscriptions_host_names_and_body_limit_apply_live(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post("/api/files/local", files={"file": ("old.gcode", b"G28\n")})
        assert r.status_code == 201
        text = config_text(tmp_path).replace(f"{tmp_path}/files", f"{tmp_path}/other")
        text += ("events:\n  subscriptions:\n    - event: Home\n      type: gcode\n"
                 "      command: M117 homed\n")
        text = text.replace("  port: 0\n", "  port: 0\n  host_names:\n    - printer.lan\n"
                                           "  body_limit: 100000\n")
        with open(srv.config_path, "w") as f:
            f.write(text)
        answer = await reload(srv)
        assert set(answer["applied"]) == {"events.subscriptions", "http.body_limit",
                                          "http.host_names", "storage.folder"}
        assert answer["reconnect_needed"] is False and answer["restart_needed"] is False
        listing = (await srv.client.get("/api/files")).json()["files"]
        assert listing == []  # the new, empty folder
        r = await srv.client.post("/api/files/local", files={"file": ("new.gcode", b"G28\n")})
        assert r.status_code == 201
        assert (tmp_path / "other" / "new.gcode").read_bytes() == b"G28\n"
        assert (tmp_path / "files" / "old.gcode").exists()  # the old folder is left as it was
        await srv.client.post("/api/printer/command", json={"commands": ["G28"]})
        with trio.fail_after(10):  # the new subscription runs
            while "M117 homed" not in srv.service.session.virtual.firmware.accepted:
                await trio.sleep(0.02)
        async with httpx.AsyncClient(base_url=srv.url, headers={"X-Api-Key": KEY}) as c:
            assert (await c.get("/api/version", headers={"Host": "evil.example"})
                    ).status_code == 421
            assert (await c.get("/api/version", headers={"Host": "printer.lan"})
                    ).status_code == 200
            big = await c.post("/api/files/local",
                               files={"file": ("big.gcode", b"G1 X1\n" * 20000)})
            assert big.status_code == 413
