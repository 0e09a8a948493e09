"""The HTTP API against a real server on 127.0.0.1 (port 0) with the virtual printer on a pty:
each endpoint's happy path and its errors (no key, wrong key, bad JSON, wrong state, too
large), the application-key flow, config reload, metrics and the pipeline view."""

from __future__ import annotations

import json
import sys

import httpx
import pytest
import trio
import trio.lowlevel
from conftest import ROOT
from http_fixtures import KEY, reported_temperatures, serve_for_test

from pipeline.session.jobs import JobStateError


def accepted(srv) -> list[str]:
    return list(srv.service.session.virtual.firmware.accepted)


async def until_accepted(srv, line: str, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while line not in accepted(srv):
            await trio.sleep(0.02)


AUTH_CASES = {
    "no key": ({}, 401, "API key is required"),
    "wrong key": ({"X-Api-Key": "nope-nope-nope-nope"}, 403, "invalid API key"),
    "wrong bearer": ({"Authorization": "Bearer nope"}, 403, "invalid API key"),
}


async def test_keys_are_required_and_refusals_execute_nothing(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as bare:
            for headers, status, text in AUTH_CASES.values():
                r = await bare.post("/api/printer/command", json={"commands": ["M300"]},
                                    headers=headers)
                assert r.status_code == status and text in r.json()["error"]
            ok = await bare.get("/api/version", headers={"Authorization": f"Bearer {KEY}"})
            assert ok.status_code == 200
            ok = await bare.get(f"/api/version?apikey={KEY}")
            assert ok.status_code == 200
            probe = await bare.get("/plugin/appkeys/probe")  # open: it is how keys are got
            assert probe.status_code == 204
        await trio.sleep(0.2)
        assert "M300" not in accepted(srv)


async def test_server_identity_endpoints(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        c = srv.client
        version = (await c.get("/api/version")).json()
        assert version["api"] == "0.1" and version["text"].startswith("OctoPrint")
        server = (await c.get("/api/server")).json()
        assert "version" in server and server["safemode"] is None
        settings = (await c.get("/api/settings")).json()
        uuid = settings["plugins"]["discovery"]["upnpUuid"]
        assert settings["feature"]["sdSupport"] is True  # serial.sd.enabled by default
        assert settings["webcam"]["webcamEnabled"] is False
        assert settings["gcodeAnalysis"]["runAt"]
        assert (await c.get("/api/settings")).json()["plugins"]["discovery"]["upnpUuid"] == uuid
        login = await c.post("/api/login", json={"passive": True})
        assert login.status_code == 200 and login.json()["name"] == "master"
        bad = await c.post("/api/login", json={"remember": True})  # (any "passive" logs in)
        assert bad.status_code == 400
        profiles = (await c.get("/api/printerprofiles")).json()["profiles"]
        default = profiles["_default"]
        assert default["heatedBed"] is True
        assert {"speed", "inverted"} <= set(default["axes"]["x"])
    # the uuid is stable across restarts (Home Assistant's unique id)
    async with serve_for_test(tmp_path) as srv:
        settings = (await srv.client.get("/api/settings")).json()
        assert settings["plugins"]["discovery"]["upnpUuid"] == uuid


async def test_double_slashes_are_normalised(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.get(srv.url + "//api/printer")
        assert r.status_code == 200 and "temperature" in r.json()
        r = await srv.client.post(srv.url + "//api/printer/bed",
                                  json={"command": "target", "target": 50})
        assert r.status_code == 204
        await until_accepted(srv, "M140 S50")


async def test_printer_state_and_temperatures(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        await reported_temperatures(srv.client)  # heaters appear with the first report
        body = (await srv.client.get("/api/printer")).json()
        flags = body["state"]["flags"]
        assert body["state"]["text"] == "Operational"
        assert flags["operational"] and flags["ready"] and not flags["printing"]
        assert {"closedOrError", "error", "paused", "pausing", "cancelling", "finishing",
                "resuming", "sdReady"} <= set(flags)
        assert {"actual", "target", "offset"} <= set(body["temperature"]["tool0"])
        assert "bed" in body["temperature"]
        excluded = (await srv.client.get("/api/printer?exclude=temperature,sd")).json()
        assert set(excluded) == {"state"}


COMMANDS = {
    "commands": ("/api/printer/command", {"commands": ["M117 hello", "G28 X"]},
                 ["M117 hello", "G28 X"]),
    "one command": ("/api/printer/command",
                    {"command": "M300 S%(f)s", "parameters": {"f": 440}}, ["M300 S440"]),
    "tool target": ("/api/printer/tool", {"command": "target", "targets": {"tool0": 205}},
                    ["M104 T0 S205"]),
    "tool extrude": ("/api/printer/tool", {"command": "extrude", "amount": 5},
                     ["G91", "M83", "G1 E5 F300"]),
    "tool flowrate": ("/api/printer/tool", {"command": "flowrate", "factor": 95}, ["M221 S95"]),
    "bed target": ("/api/printer/bed", {"command": "target", "target": 60}, ["M140 S60"]),
    "jog": ("/api/printer/printhead", {"command": "jog", "x": 10, "z": -1.5, "speed": 1200},
            ["G91", "G1 X10 Z-1.5 F1200", "G90"]),
    "home": ("/api/printer/printhead", {"command": "home", "axes": ["x", "y"]}, ["G28 X0 Y0"]),
    "feedrate": ("/api/printer/printhead", {"command": "feedrate", "factor": 1.1}, ["M220 S110"]),
}


@pytest.mark.parametrize(("path", "body", "lines"), COMMANDS.values(), ids=COMMANDS.keys())
async def test_printer_commands_reach_the_printer(tmp_path, path, body, lines):
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post(path, json=body)
        assert r.status_code == 204, r.text
        await until_accepted(srv, lines[-1])
        got = accepted(srv)
        start = got.index(lines[0])
        assert got[start:start + len(lines)] == lines


ERRORS = {
    "unknown command": ("/api/job", {"command": "explode"}, 400, "unknown command 'explode'"),
    "missing field": ("/api/printer/bed", {"command": "target"}, 400, "missing field 'target'"),
    "wrong type": ("/api/printer/bed", {"command": "target", "target": "hot"}, 400, "must be"),
    "boolean is no number": ("/api/printer/bed", {"command": "target", "target": True}, 400,
                             "not a boolean"),
    "unknown tool": ("/api/printer/tool", {"command": "target", "targets": {"tool3": 200}}, 400,
                     "tool3 does not exist"),
    "bad tool name": ("/api/printer/tool", {"command": "select", "tool": "nozzle"}, 400,
                      "not a tool name"),
    "commands not strings": ("/api/printer/command", {"commands": ["G28", 5]}, 400,
                             "list of strings"),
    "bad parameters": ("/api/printer/command",
                       {"commands": ["M104 S%(t)s"], "parameters": {"x": 1}}, 400,
                       "parameters has no 't'"),
    "home axes": ("/api/printer/printhead", {"command": "home", "axes": ["q"]}, 400, "axes"),
    "pause while idle": ("/api/job", {"command": "pause", "action": "pause"}, 409, "cannot pause"),
    "cancel while idle": ("/api/job", {"command": "cancel"}, 409, "nothing to cancel"),
    "start without file": ("/api/job", {"command": "start"}, 409, "no file is selected"),
    "restart while idle": ("/api/job", {"command": "restart"}, 409, "paused"),
    "bad pause action": ("/api/job", {"command": "pause", "action": "maybe"}, 400,
                         "unknown pause action"),
    "unknown script": ("/api/printer/command", {"script": "nope"}, 404, "no script named 'nope'"),
    "not an object": ("/api/job", ["start"], 400, "expected a JSON object"),
}


@pytest.mark.parametrize(("path", "body", "status", "text"), ERRORS.values(), ids=ERRORS.keys())
async def test_bad_requests_name_the_problem(tmp_path, path, body, status, text):
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post(path, json=body)
        assert r.status_code == status, r.text
        assert text in r.json()["error"]
        assert "Traceback" not in r.text


async def test_malformed_json_and_wrong_content_type(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post("/api/job", content=b'{"command": ',
                                  headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"].startswith("malformed JSON")
        r = await srv.client.post("/api/job", content=b"command=start",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and "application/json" in r.json()["error"]
        r = await srv.client.delete("/api/job")
        assert r.status_code == 405 and "not allowed" in r.json()["error"]
        r = await srv.client.get("/api/nothing")
        assert r.status_code == 404 and r.json()["error"]


async def test_body_limit(tmp_path):
    async with serve_for_test(tmp_path, http_yaml="body_limit: 2000") as srv:
        big = {"commands": ["M117 " + "x" * 100] * 50}
        r = await srv.client.post("/api/printer/command", json=big)
        assert r.status_code == 413 and "too large" in r.json()["error"]

        async def chunks():
            for _ in range(10):
                yield b'{"commands": ["' + b"x" * 500

        r = await srv.client.post("/api/printer/command", content=chunks(),
                                  headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        await trio.sleep(0.2)
        assert not any(line.startswith("M117 x") for line in accepted(srv))


async def test_connection_disconnect_and_connect(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["Disconnecting", "Disconnected", "Connecting", "Connected"])
        conn = (await srv.client.get("/api/connection")).json()
        assert conn["current"]["state"] == "Operational" and "virtual" in conn["options"]["ports"]
        r = await srv.client.post("/api/connection", json={"command": "disconnect"})
        assert r.status_code == 204
        assert (await srv.client.get("/api/printer")).status_code == 409
        current = (await srv.client.get("/api/connection")).json()["current"]
        assert current["state"] == "Closed"  # OctoPrint's word here; the printer: "Offline"
        r = await srv.client.post("/api/printer/command", json={"commands": ["G28"]})
        assert r.status_code == 409
        r = await srv.client.post("/api/connection",
                                  json={"command": "connect", "port": "/dev/nope"})
        assert r.status_code == 400
        async with trio.open_nursery() as nursery:  # a second connect while one is under way
            nursery.start_soon(srv.service.connect)
            while not srv.service.connecting:  # set before its first checkpoint
                await trio.lowlevel.checkpoint()
            with pytest.raises(JobStateError):
                await srv.service.connect()
        await srv.client.post("/api/connection", json={"command": "disconnect"})
        r = await srv.client.post("/api/connection", json={"command": "connect"})
        assert r.status_code == 204
        assert (await srv.client.get("/api/printer")).json()["state"]["text"] == "Operational"
        r = await srv.client.post("/api/connection", json={"command": "connect"})
        assert r.status_code == 409
        await rec.wait_for("Connected", count=2)
        assert rec.names() == ["Disconnecting", "Disconnected", "Connecting", "Connected"] * 2


async def test_scripts_render_and_run(tmp_path):
    extra = """\
        scripts:
          gcode:
            hello: "M117 hi {{ who }}"
            broken: "{{ 1 / 0 }}"
        """
    async with serve_for_test(tmp_path, extra) as srv:
        r = await srv.client.post("/api/scripts/hello/render", json={"context": {"who": "ann"}})
        assert r.status_code == 200 and r.json()["lines"] == ["M117 hi ann"]
        r = await srv.client.post("/api/scripts/broken/render", json={})
        assert r.status_code == 400 and "script broken" in r.json()["error"]
        r = await srv.client.post("/api/scripts/missing/render", json={})
        assert r.status_code == 404
        assert "M117 hi ann" not in accepted(srv)  # rendering sends nothing
        r = await srv.client.post("/api/printer/command",
                                  json={"script": "hello", "context": {"who": "bob"}})
        assert r.status_code == 204
        await until_accepted(srv, "M117 hi bob")
        r = await srv.client.post("/api/printer/command", json={"script": "broken"})
        assert r.status_code == 400 and "division by zero" in r.json()["error"]


async def test_pipeline_and_metrics(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        await srv.client.post("/api/printer/command", json={"commands": ["M107"]})
        await until_accepted(srv, "M107")
        phases = (await srv.client.get("/api/pipeline")).json()["phases"]
        sent = phases["comm.protocol.gcode.sent"]
        assert sent[0]["id"] == "gcode_events" and sent[0]["calls"] > 0
        assert {"id", "order", "kind", "handler", "calls", "rewrites", "suppressions", "errors",
                "time_ms"} <= set(sent[0])
        text = (await srv.client.get("/metrics")).text
        for name in ("printpipe_lines_sent_total", "printpipe_resends_total",
                     "printpipe_timeouts_total", 'printpipe_queue_depth{queue="job"}',
                     "printpipe_events_dropped_total", "printpipe_temperature_actual_celsius"):
            assert name in text
        values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                  if line.startswith("printpipe_")}
        assert values["printpipe_lines_sent_total"] > 0
        # the plain virtual printer has no ADVANCED_OK: the auto window stays at one line
        assert values["printpipe_send_window_lines"] == 1
        assert values["printpipe_probes_total"] == 0


async def test_reload_applies_a_good_config_and_refuses_a_broken_one(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["SettingsUpdated"])
        path = srv.config_path
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text + "events:\n  subscriptions:\n    - event: Home\n      type: gcode\n"
                           "      command: M117 homed\n")
        r = await srv.client.post("/api/system/reload")
        assert r.status_code == 200 and r.json()["reloaded"] is True
        await rec.wait_for("SettingsUpdated")
        await srv.client.post("/api/printer/command", json={"commands": ["G28"]})
        await until_accepted(srv, "M117 homed")  # the new subscription runs
        with open(path, "w") as f:
            f.write(text + "serial:\n  send_window: zero\n")
        r = await srv.client.post("/api/system/reload")
        assert r.status_code == 400
        error = r.json()["error"]
        assert "printpipe.yaml:" in error and "send_window" in error
        assert len(srv.service.config.events.subscriptions) == 1  # the running one stays


async def test_application_key_flow_with_the_keys_command(tmp_path):
    async with (serve_for_test(tmp_path) as srv,
                httpx.AsyncClient(base_url=srv.url) as ha):  # Home Assistant: no key yet
        assert (await ha.get("/plugin/appkeys/probe")).status_code == 204
        r = await ha.post("/plugin/appkeys/request", json={"app": "Home Assistant",
                                                            "user": "ha"})
        assert r.status_code == 201
        token = r.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        poll = await ha.get(f"/plugin/appkeys/request/{token}")
        assert poll.status_code == 202
        proc = await trio.run_process(
            [sys.executable, "-m", "pipeline.app.cli", "keys", "-c", srv.config_path,
             "approve", token[:8]], capture_stdout=True, capture_stderr=True,
            check=False, env={"PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr
        poll = await ha.get(f"/plugin/appkeys/request/{token}")
        assert poll.status_code == 200
        key = poll.json()["api_key"]
        assert key.encode() not in proc.stdout  # the CLI shows keys redacted
        r = await ha.get("/api/settings", headers={"X-Api-Key": key})
        assert r.status_code == 200
        r = await ha.post("/api/login", json={"passive": True}, headers={"X-Api-Key": key})
        assert r.json()["name"] == "Home Assistant"
        # a denied request answers 404
        r = await ha.post("/plugin/appkeys/request", json={"app": "Other"})
        token = r.headers["Location"].rsplit("/", 1)[-1]
        srv.api.keys.deny(token)
        assert (await ha.get(f"/plugin/appkeys/request/{token}")).status_code == 404
        r = await ha.post("/plugin/appkeys/request", json={"user": "x"})
        assert r.status_code == 400


async def test_an_unexpected_error_answers_500_without_a_traceback(tmp_path, monkeypatch):
    from pipeline.app.http import printer

    async def broken(request):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(printer.ROUTES[1], "endpoint", broken)
    monkeypatch.setattr(printer.ROUTES[1], "app", __import__(
        "starlette.routing", fromlist=["request_response"]).request_response(broken))
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.get("/api/server")
        assert r.status_code == 500
        assert "secret internals" not in r.text and "Traceback" not in r.text
        assert json.loads(r.text)["error"].startswith("internal error")


async def test_temperature_offsets_apply_to_printed_files_only(tmp_path):
    gcode = "M140 S60\nM104 S200\nG28\nM104 T0 S0\nM190 S60\nG1 X5 E1\n"
    # the virtual bed heats ten times faster: the print waits for M190 S55
    async with serve_for_test(tmp_path, "virtual:\n  heat_rate: 400\n") as srv:
        rec = srv.events(["PrintDone"])
        r = await srv.client.post("/api/printer/tool",
                                  json={"command": "offset", "offsets": {"tool0": 10}})
        assert r.status_code == 204
        r = await srv.client.post("/api/printer/bed", json={"command": "offset", "offset": -5})
        assert r.status_code == 204
        temps = await reported_temperatures(srv.client)
        assert temps["tool0"]["offset"] == 10 and temps["bed"]["offset"] == -5
        await srv.client.post("/api/printer/command", json={"commands": ["M104 S150"]})
        await until_accepted(srv, "M104 S150")  # manual commands are not offset
        r = await srv.client.post("/api/files/local", data={"print": "true"},
                                  files={"file": ("t.gcode", gcode.encode())})
        assert r.status_code == 201
        await rec.wait_for("PrintDone", timeout=30)
        got = accepted(srv)
        start = got.index("M140 S55")
        assert got[start:start + 5] == ["M140 S55", "M104 S210", "G28", "M104 T0 S0", "M190 S55"]
