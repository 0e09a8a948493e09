"""MQTT commands that must not run, against a real mosquitto (tests/mqtt_fixtures.py) and the
virtual printer's record: a retained command (the broker hands it over again at every
connect) is answered, cleared and never run; an oversized payload, a deeply nested JSON one
(it used to end the bridge, losing the next command) and a command with a line break other
than \\n and \\r are refused; every command gets its reply, at once, even a refused one."""

from __future__ import annotations

import json

import attrs
import pytest
import trio
from http_fixtures import serve_for_test
from mqtt_fixtures import start_mosquitto, watching
from test_line_breaks import INJECTED, SEPARATORS
from test_mqtt_broker import BASE, mqtt_yaml

from pipeline.app.mqtt.client import Received, TrioMqtt
from pipeline.app.mqtt.commands import MAX_PAYLOAD, RETAINED
from pipeline.app.mqtt.topics import Message
from pipeline.config.mqtt import MqttSpec

GCODE, JOB, REPLY = BASE + "command/gcode", BASE + "command/job", BASE + "command/reply"
COMMANDS = "  commands: true\n"


@pytest.fixture
def broker(tmp_path):
    b = start_mosquitto(tmp_path)
    yield b
    b.stop()


def accepted(srv) -> list[str]:
    return list(srv.service.session.virtual.firmware.accepted)


class Asker:
    """Publishes commands and waits (briefly: an answer comes at once) for each reply."""

    def __init__(self, watch) -> None:
        self.watch = watch
        self.seen: list[Received] = []

    async def reply(self, timeout: float = 3.0) -> dict:
        m = await self.watch.wait_for(REPLY, lambda m: m not in self.seen, timeout)
        self.seen.append(m)
        return json.loads(m.payload)

    async def ask(self, topic: str, payload: bytes) -> dict:
        self.watch.publish(topic, payload)
        return await self.reply()


async def test_a_retained_command_is_answered_cleared_and_never_run(tmp_path, broker):
    async with watching(broker.port) as watch:
        # left on the broker before the service connects: delivered at its subscription, as
        # it would be again after every reconnect
        assert watch.mqtt.publish_nowait(Message(GCODE, b"M117 retained", retain=True, qos=1))
        await watch.wait_for(GCODE)
        async with serve_for_test(tmp_path, mqtt_yaml(broker.port, COMMANDS)) as srv:
            asker = Asker(watch)
            answer = await asker.reply(timeout=10)
            assert answer == {**answer, "topic": GCODE, "command": "M117 retained",
                              "ok": False, "error": RETAINED}
            live = await asker.ask(GCODE, b"M117 live")
            assert live["ok"] is True
            await srv.service.wait_idle(10)
            async with watching(broker.port, GCODE) as late:  # what the broker still keeps
                await trio.sleep(0.3)
                kept = [m for m in late.on(GCODE) if m.retain and m.payload]
            done = accepted(srv)
    assert kept == []
    assert "M117 live" in done and "M117 retained" not in done
    assert len(watch.on(REPLY)) == 2  # the clearing (an empty message) is no command


async def test_bounded_payloads_and_line_breaks_are_refused_and_each_gets_a_reply(
        tmp_path, broker):
    async with watching(broker.port) as watch, \
            serve_for_test(tmp_path, mqtt_yaml(broker.port, COMMANDS)) as srv:
        await watch.wait_for(BASE + "state")  # subscribed: it subscribes before publishing
        asker = Asker(watch)
        deep = b'{"command": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        answer = await asker.ask(JOB, deep)  # this one used to end the bridge
        assert answer["ok"] is False and "nested too deeply" in answer["error"]
        after = await asker.ask(GCODE, b"M117 still answered")  # at once, not in 5 s
        assert after["ok"] is True
        nested = await asker.ask(JOB, b'{"command": "pause", "x": [[[["deep"]]]]}')
        assert nested["ok"] is False and "nested too deeply (at most 4 levels)" in \
            nested["error"]
        big = b'{"command": "pause", "pad": "' + b"x" * MAX_PAYLOAD + b'"}'
        answer = await asker.ask(JOB, big)
        assert answer == {**answer, "ok": False, "error": (
            f"the payload is {len(big)} bytes: a command may have {MAX_PAYLOAD}")}
        surrogate = await asker.ask(JOB, b'{"command": "\\ud800"}')
        assert surrogate["ok"] is False and "lone surrogate" in surrogate["error"]
        for name, sep in SEPARATORS.items():
            answer = await asker.ask(GCODE, f"M117 a{sep}{INJECTED}\n".encode())
            assert answer["ok"] is False, name
            assert "one command is one line" in answer["error"] and "\n" not in answer["error"]
        await srv.service.wait_idle(10)
        done = accepted(srv)
    assert "M117 still answered" in done
    assert not [a for a in done if "M104" in a or a.startswith("M117 a")]


def test_a_command_that_finds_the_inbox_full_is_answered_not_dropped():
    overflowed: list[Received] = []
    mqtt = TrioMqtt(MqttSpec(host="127.0.0.1", port=1), "test", None, limit=10,
                    on_connect=lambda: None, inbox=1, on_overflow=overflowed.append)

    @attrs.frozen
    class PahoMessage:
        topic: str
        payload: bytes
        retain: bool = False

    mqtt._message(None, None, PahoMessage(GCODE, b"M117 one"))
    mqtt._message(None, None, PahoMessage(GCODE, b"M117 two"))
    assert mqtt.inbox.receive_nowait() == Received(GCODE, b"M117 one", False)
    assert overflowed == [Received(GCODE, b"M117 two", False)]
