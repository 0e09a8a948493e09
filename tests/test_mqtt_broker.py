"""The MQTT bridge against a real mosquitto (tests/mqtt_fixtures.py): the topics and payloads
of a whole print on the virtual printer, the retained availability topic and the last will
after `kill -9`, Home Assistant discovery, commands in and refused ones, a broker stopped and
restarted mid-print, and TLS with a generated CA."""

from __future__ import annotations

import json

import pytest
import trio
from http_fixtures import serve_for_test
from mqtt_fixtures import start_mosquitto, watching
from sample_prints import file_lines, write_sample

from pipeline.session.jobs import Outcome

BASE = "octoPrint/"


@pytest.fixture
def broker(tmp_path):
    b = start_mosquitto(tmp_path)
    yield b
    b.stop()


def mqtt_yaml(port: int, extra: str = "") -> str:
    return f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n  client_id: pp-test\n" + extra


async def print_file(srv, path: str, timeout: float = 60):
    control = srv.service
    control.select(path, "job.gcode")
    await control.start()
    return await control.wait_job_end(timeout)


async def test_a_whole_print_publishes_octoprint_mqtt_topics_and_payloads(tmp_path, broker):
    path, expected = write_sample(tmp_path, 300)
    async with watching(broker.port) as watch, \
            serve_for_test(tmp_path, mqtt_yaml(broker.port)) as srv:
        await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"connected")
        result = await print_file(srv, path)
        assert result is not None and result.outcome is Outcome.DONE
        await watch.wait_for(BASE + "event/PrintDone")
        await watch.wait_for(BASE + "progress/printing",
                             lambda m: json.loads(m.payload)["progress"] == 100)
        await watch.wait_for(BASE + "temperature/tool0")
        accepted = list(srv.service.session.virtual.firmware.accepted)
        async with watching(broker.port) as late:  # what the broker kept
            await trio.sleep(0.3)
            late.topics()
            retained = {m.topic for m in late.seen if m.retain}
    assert file_lines(accepted, expected) == expected
    started = watch.json(BASE + "event/PrintStarted")[0]
    assert started["_event"] == "PrintStarted" and started["path"] == "job.gcode"
    assert isinstance(started["_timestamp"], int) and abs(started["_timestamp"] - time_now()) < 60
    assert not watch.on(BASE + "event/PrintStarted")[0].retain
    progress = [p["progress"] for p in watch.json(BASE + "progress/printing")]
    progress = progress[:progress.index(100) + 1]
    assert progress == sorted(progress) and progress[0] == 0
    assert {p["path"] for p in watch.json(BASE + "progress/printing") if p["progress"]} == {
        "job.gcode"}
    tool = watch.json(BASE + "temperature/tool0")
    assert tool and set(tool[-1]) == {"actual", "target", "_timestamp"}
    assert {BASE + "mqtt", BASE + "progress/printing", BASE + "temperature/tool0",
            BASE + "temperature/bed", BASE + "state"} <= retained
    assert BASE + "event/PrintStarted" not in retained
    assert json.loads(late.on(BASE + "state")[-1].payload)["state"] == "Operational"
    names = [t.rsplit("/", 1)[1] for t in watch.topics() if t.startswith(BASE + "event/")]
    assert names.index("PrintStarted") < names.index("PrintDone")
    assert watch.on(BASE + "mqtt")[0].payload == b"connected"


def time_now() -> float:
    import time
    return time.time()
