"""The canonical wire end to end: respellings of an unsafe command from every source (the HTTP
API's commands, targets and script parameters, MQTT, a subscription's placeholder, a printed
file) are refused, and the virtual printer's record of what it accepted holds only canonical
lines: no heater target over its limit, no exponent, hex or non-finite number, no line the
client did not send as one command. Safe respellings reach the printer in canonical form."""

from __future__ import annotations

import json
import re

import pytest
import trio
from http_fixtures import serve_for_test
from mqtt_fixtures import start_mosquitto, watching

from pipeline.config.schema import ProfileSpec, SerialSpec
from pipeline.events.names import Event
from pipeline.gcode import Command
from pipeline.session.guard import HEATERS, WireGuard
from pipeline.wire import read

GUARD = WireGuard(SerialSpec(), ProfileSpec())
#: Respellings of a 400 °C hotend target that an older guard let through.
HOT = ["m104 s400", "M104 S 400", "M104S400", "M0104 S400", "M 104 S400", "M104 S200 S400",
       "M104 S0x190", "M104 S4e2", "M104 S65936", "M104 S-65136", "M104 S+400", "N3 M104 S400",
       "M109 R400", "M104 B400", "M145 S0 H400", "M303 E0 S400 C3", "G10 P0 S400",
       "M568 P0 S400", "M810 M104 S400", "M65640 S400", "G1 E1e9", "G92 Z1e+20",
       "M117 one\u2028M104 S400", "M117 one\x85M104 S400", "M117 one\x0bM104 S400"]
#: Safe respellings, and the canonical line the printer must get for each.
SAFE = {"m117 hello": "M117 hello", "g1 x.5 y+2": "G1 X0.5 Y2", "G01 X010": "G1 X10",
        "M106 S 0": "M106 S0", "m140s50": "M140 S50"}


def audit(record: list[str]) -> None:
    """What a printer's record may hold: canonical lines within the limits, nothing else."""
    for line in record:
        assert GUARD.canonical(line, Command.parse(line).gcode) == line, line
        assert not re.search(r"\d[eExX]|inf|nan", line.split(" ", 1)[-1]
                             if not line.startswith("M117") else ""), line
        reading = read(line)
        base = reading.code.partition(".")[0]
        for letter in HEATERS.get(base, ("", ""))[1]:
            for v in reading.words.get(letter) or ():
                assert 0 <= v <= 300, line


def accepted(srv) -> list[str]:
    return list(srv.service.session.virtual.firmware.accepted)


async def until_accepted(srv, line: str) -> None:
    with trio.fail_after(10):
        while line not in accepted(srv):
            await trio.sleep(0.02)


async def test_api_commands_targets_and_script_values(tmp_path):
    scripts = """
    scripts:
      gcode:
        heat: M104 S{{ t }}
    """
    async with serve_for_test(tmp_path, scripts) as srv:
        post = srv.client.post
        for line in HOT:
            r = await post("/api/printer/command", json={"command": line})
            assert r.status_code == 400, line
            assert "\n" not in r.json()["error"]
        r = await post("/api/printer/command", json={"commands": ["G28", *HOT[:3]]})
        assert r.status_code == 400  # nothing of that request is queued
        for t in ("1e+300", "0x190", "4e2", " 400", "400", "nan", "2e2"):
            r = await post("/api/printer/command", json={"script": "heat", "context": {"t": t}})
            assert r.status_code == 400, t
        r = await post("/api/printer/tool",
                       json={"command": "target", "targets": {"tool0": 1e300}})
        assert r.status_code == 400
        r = await post("/api/printer/command", json={"commands": list(SAFE)})
        assert r.status_code == 204
        r = await post("/api/printer/command", json={"script": "heat", "context": {"t": 0}})
        assert r.status_code == 204
        await until_accepted(srv, "M140 S50")
        await until_accepted(srv, "M104 S0")
        record = accepted(srv)
    assert [a for a in record if a in SAFE.values()] == list(SAFE.values())
    assert "G28" not in record
    audit(record)


async def test_a_subscription_placeholder_cannot_respell_a_target(tmp_path):
    subscription = """
    events:
      subscriptions:
        - event: FileSelected
          type: gcode
          command: M104 S{name}
    """
    async with serve_for_test(tmp_path, subscription) as srv:
        for name in ("4e2", "0x190", "200 S400", "400", "65936"):
            srv.service.publish(Event.FILE_SELECTED, {"name": name, "path": "x",
                                                      "origin": "local"})
        srv.service.publish(Event.FILE_SELECTED, {"name": "0", "path": "x", "origin": "local"})
        await until_accepted(srv, "M104 S0")
        record = accepted(srv)
    assert [a for a in record if a.startswith("M104")] == ["M104 S0"]
    audit(record)


@pytest.fixture
def broker(tmp_path):
    b = start_mosquitto(tmp_path)
    yield b
    b.stop()


async def test_mqtt_commands_are_read_as_the_firmware_reads_them(tmp_path, broker):
    base = "octoPrint/"
    yaml = f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  client_id: pp-w\n  commands: true\n"
    async with watching(broker.port) as watch, serve_for_test(tmp_path, yaml) as srv:
        seen: list[object] = []

        async def ask(payload: bytes) -> dict:
            watch.publish(base + "command/gcode", payload)
            m = await watch.wait_for(base + "command/reply", lambda m: m not in seen)
            seen.append(m)
            return json.loads(m.payload)

        await watch.wait_for(base + "state")
        for line in ("m104 s400", "M104 S 400", "M104 S0x190", "M104 S200 S400",
                     "M104 S65936", "M117 a\u2028M104 S400"):
            reply = await ask(line.encode())
            assert reply["ok"] is False, line
        assert (await ask(b"m117 from mqtt"))["ok"] is True
        await until_accepted(srv, "M117 from mqtt")
        record = accepted(srv)
    assert not [a for a in record if a.startswith("M104")]
    audit(record)
