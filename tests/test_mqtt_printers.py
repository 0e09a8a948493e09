"""MQTT with several printers, against a real mosquitto (tests/mqtt_fixtures.py): one
connection for the service, each printer under its own base topic with its own availability,
one Home Assistant device per printer, commands on a printer's topics acting on that printer
only, and a reload stopping a printer (it says goodbye) and adding one (announced) while
the other stays."""

from __future__ import annotations

import json

import pytest
from http_fixtures import printers_text, serve_printers_for_test
from mqtt_fixtures import start_mosquitto, watching


@pytest.fixture
def broker(tmp_path):
    b = start_mosquitto(tmp_path)
    yield b
    b.stop()


def mqtt_yaml(port: int) -> str:
    return (f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n  client_id: pp-farm\n"
            "  commands: true\n  discovery:\n    enabled: true\n    name: Workshop\n")


async def test_two_printers_one_connection_each_its_topics_device_and_commands(
        tmp_path, broker):
    async with watching(broker.port) as watch:
        configs = await _farm(tmp_path, broker, watch)
        # the stop: the printer, then the service, says disconnected
        for base in ("octoPrint/", "octoPrint/b/", "octoPrint/c/"):
            await watch.wait_for(base + "mqtt", lambda m: m.payload == b"disconnected")
    # one device per printer, its name and ids naming it; available only while both the
    # service's connection and the printer say connected
    devices = {c["device"]["identifiers"][0]: c["device"]["name"] for c in configs.values()}
    assert devices == {f"printpipe_pp-farm_{n}": f"Workshop {n}" for n in ("a", "b", "c")}
    assert len({c["unique_id"] for c in configs.values()}) == len(configs) == 30
    bed = configs["homeassistant/sensor/pp-farm_b/bed_actual/config"]
    assert bed["state_topic"] == "octoPrint/b/temperature/bed"
    assert [a["topic"] for a in bed["availability"]] == ["octoPrint/mqtt", "octoPrint/b/mqtt"]
    assert bed["availability_mode"] == "all"
    pause = configs["homeassistant/button/pp-farm_a/pause/config"]
    assert pause["command_topic"] == "octoPrint/a/command/job"
    assert [m.payload for m in watch.on("octoPrint/b/mqtt")] == [b"connected", b"disconnected"]
    assert [m.payload for m in watch.on("octoPrint/mqtt")] == [b"connected", b"disconnected"]
    assert broker.log().count(" as pp-farm ") == 1  # one connection throughout


async def _farm(tmp_path, broker, watch) -> dict:
    """Two printers a and b: what each publishes, commands, then a reload removing a and
    adding c; the discovery configs seen."""
    async with serve_printers_for_test(tmp_path, ("a", "b"),
                                       extra_yaml=mqtt_yaml(broker.port)) as farm:
        for base in ("octoPrint/", "octoPrint/a/", "octoPrint/b/"):
            await watch.wait_for(base + "mqtt", connected)
        for name in ("a", "b"):
            await watch.wait_for(f"octoPrint/{name}/state")
            await watch.wait_for(f"homeassistant/button/pp-farm_{name}/cancel/config")
        # a command on a's topic acts on a only, and a answers on its own reply topic
        watch.publish("octoPrint/a/command/gcode", b"M117 for a only")
        reply = await watch.wait_for("octoPrint/a/command/reply")
        assert json.loads(reply.payload)["ok"] is True
        await farm.control("a").wait_idle(10)
        watch.publish("octoPrint/b/command/job", b"pause")
        refused = json.loads((await watch.wait_for("octoPrint/b/command/reply")).payload)
        assert refused["error"] == "cannot pause while Operational"
        assert "M117 for a only" in farm.accepted("a")
        assert "M117 for a only" not in farm.accepted("b")
        assert not watch.on("octoPrint/command/reply")
        # each printer's events under its own base
        farm.control("b").select(str(_gcode(tmp_path)))
        selected = await watch.wait_for("octoPrint/b/event/FileSelected")
        assert json.loads(selected.payload)["name"] == "x.gcode"
        assert not watch.on("octoPrint/a/event/FileSelected")
        # a reload removing a and adding c: a says goodbye, c is announced, b and the
        # service stay connected
        with open(farm.config_path, "w") as f:
            f.write(printers_text(tmp_path, ("b", "c"), extra_yaml=mqtt_yaml(broker.port)))
        async with farm.client("b") as b:
            assert (await b.post("/api/system/reload")).status_code == 200
        await watch.wait_for("octoPrint/a/mqtt", lambda m: m.payload == b"disconnected")
        await watch.wait_for("octoPrint/c/mqtt", connected)
        await watch.wait_for("homeassistant/button/pp-farm_c/cancel/config")
        return {m.topic: json.loads(m.payload) for m in watch.seen
                if m.topic.startswith("homeassistant/")}


def connected(m) -> bool:
    return m.payload == b"connected"


def _gcode(tmp_path):
    path = tmp_path / "x.gcode"
    path.write_text("G28\n")
    return path
