"""The MQTT bridge against a real mosquitto (tests/mqtt_fixtures.py): the topics and payloads
of a whole print on the virtual printer, the retained availability topic and the last will
after `kill -9`, Home Assistant discovery, commands in and refused ones, a broker stopped and
restarted mid-print, and TLS with a generated CA."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trio
from http_fixtures import serve_for_test
from mqtt_fixtures import make_ca, start_mosquitto, watching
from sample_prints import file_lines, write_sample
from test_timelapse_e2e import config as tl_config
from test_timelapse_e2e import layered
from test_timelapse_e2e import print_file as tl_print
from webcam_fixtures import make_jpegs, needs_ffmpeg, webcam

from pipeline.app.mqtt import bridge as mqtt_bridge
from pipeline.app.mqtt import client as mqtt_client
from pipeline.events.names import PAYLOAD_KEYS, Event
from pipeline.session.jobs import Outcome
from pipeline.virtual.pair import expected_commands, sample_gcode

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


async def test_availability_is_retained_and_the_last_will_says_disconnected_after_kill_9(
        tmp_path, broker):
    from http_fixtures import config_text
    path = tmp_path / "printpipe.yaml"
    path.write_text(config_text(tmp_path, mqtt_yaml(broker.port)))
    async with watching(broker.port, BASE + "mqtt") as watch:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "pipeline.app.cli", "serve", "-c", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"connected")
            async with watching(broker.port, BASE + "mqtt") as late:
                kept = await late.wait_for(BASE + "mqtt")
            assert kept.retain and kept.payload == b"connected"
            proc.kill()  # SIGKILL: no goodbye, only the broker's last will
            await proc.wait()
            await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"disconnected")
        finally:
            proc.kill()
            await proc.wait()
    async with watching(broker.port, BASE + "mqtt") as late:
        kept = await late.wait_for(BASE + "mqtt")
    assert kept.retain and kept.payload == b"disconnected"


async def test_a_clean_shutdown_says_disconnected_too(tmp_path, broker):
    async with watching(broker.port, BASE + "mqtt") as watch:
        async with serve_for_test(tmp_path, mqtt_yaml(broker.port)):
            await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"connected")
        await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"disconnected")
    assert [m.payload for m in watch.on(BASE + "mqtt")] == [b"connected", b"disconnected"]


async def test_home_assistant_discovery_announces_one_device(tmp_path, broker):
    extra = "  commands: true\n  discovery:\n    enabled: true\n    name: Workshop printer\n"
    async with serve_for_test(tmp_path, mqtt_yaml(broker.port, extra)) as srv:
        await srv.wait_connected()
        async with watching(broker.port, "homeassistant/#") as ha:
            await ha.wait_for("homeassistant/button/pp-test/cancel/config")
            await trio.sleep(0.2)
            configs = {m.topic: json.loads(m.payload) for m in ha.seen}
            assert all(m.retain for m in ha.seen)
    assert set(configs) == {f"homeassistant/{kind}/pp-test/{name}/config" for kind, name in [
        ("sensor", "state"), ("sensor", "progress"), ("sensor", "time_left"),
        ("sensor", "tool0_actual"), ("sensor", "tool0_target"), ("sensor", "bed_actual"),
        ("sensor", "bed_target"), ("button", "pause"), ("button", "resume"),
        ("button", "cancel")]}
    devices = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
    assert len(devices) == 1
    assert json.loads(devices.pop())["name"] == "Workshop printer"
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    bed = configs["homeassistant/sensor/pp-test/bed_actual/config"]
    assert bed["state_topic"] == BASE + "temperature/bed"
    assert bed["value_template"] == "{{ value_json.actual }}"
    assert bed["availability_topic"] == BASE + "mqtt"
    pause = configs["homeassistant/button/pp-test/pause/config"]
    assert (pause["command_topic"], pause["payload_press"]) == (BASE + "command/job", "pause")
    left = configs["homeassistant/sensor/pp-test/time_left/config"]
    assert (left["state_topic"], left["device_class"]) == (BASE + "state", "duration")


async def test_no_discovery_and_no_commands_unless_asked(tmp_path, broker):
    async with watching(broker.port) as watch, \
            serve_for_test(tmp_path, mqtt_yaml(broker.port)) as srv:
        await watch.wait_for(BASE + "state")
        watch.publish(BASE + "command/gcode", b"M117 not for you")
        await watch.wait_for(BASE + "command/gcode")  # the broker passed it on (to "#" too)
        await trio.sleep(0.5)  # what a subscribed bridge takes to queue and send it
        accepted = list(srv.service.session.virtual.firmware.accepted)
    assert not [t for t in watch.topics() if t.startswith("homeassistant/")]
    assert "M117 not for you" not in accepted
    assert not watch.on(BASE + "command/reply")


async def test_commands_in_go_through_the_pipeline_and_refusals_are_answered(tmp_path, broker):
    async with watching(broker.port) as watch, \
            serve_for_test(tmp_path, mqtt_yaml(broker.port, "  commands: true\n")) as srv:
        events = srv.events(["CommandSuppressed"])
        replies = []

        async def ask(topic: str, payload: bytes) -> dict:
            watch.publish(BASE + topic, payload)
            m = await watch.wait_for(BASE + "command/reply", lambda m: m not in replies)
            replies.append(m)
            return json.loads(m.payload)

        await watch.wait_for(BASE + "state")  # subscribed: it subscribes before publishing
        ok = await ask("command/gcode", b"M117 hello from mqtt\nG28 X\n")
        assert ok["ok"] is True and ok["result"] == "queued 2 commands"
        assert ok["topic"] == BASE + "command/gcode" and "_timestamp" in ok
        hot = await ask("command/gcode", b"M104 S999")
        assert hot["ok"] is False and "hotend limit" in hot["error"]
        assert "\n" not in hot["error"]
        nan = await ask("command/gcode", b"M117 fine\nG1 Xnan")
        assert nan["ok"] is False and "G1 Xnan" in nan["error"]
        binary = await ask("command/gcode", b"\xff\xfe\x00")
        assert binary == {**binary, "ok": False, "error": "the payload is not UTF-8 text"}
        empty = await ask("command/gcode", b"  \n")
        assert empty["ok"] is False and "no command" in empty["error"]
        job = await ask("command/job", b"pause")
        assert job == {**job, "ok": False, "error": "cannot pause while Operational"}
        bad = await ask("command/job", b'{"command": 12}')
        assert bad["ok"] is False and '"command"' in bad["error"]
        unknown = await ask("command/job", b"explode")
        assert unknown["ok"] is False and "unknown job command 'explode'" in unknown["error"]
        await srv.service.wait_idle(10)
        still = await ask("command/gcode", b"M117 still here")
        assert still["ok"] is True
        await srv.service.wait_idle(10)
        accepted = list(srv.service.session.virtual.firmware.accepted)
    assert "M117 hello from mqtt" in accepted and "G28 X" in accepted
    assert "M117 still here" in accepted
    assert not [a for a in accepted if a.startswith("M104 S999") or a == "M117 fine"]
    assert not events.of("CommandSuppressed")  # refused before anything was queued


async def test_job_commands_pause_resume_and_cancel_a_print(tmp_path, broker):
    path = tmp_path / "job.gcode"  # dwells long enough to act on while they run
    path.write_text("G4 P500\nG1 X10\nG4 S1\nG1 X20\nG4 S1\n")
    async with watching(broker.port, BASE + "#") as watch, \
            serve_for_test(tmp_path, mqtt_yaml(broker.port, "  commands: true\n")) as srv:
        await watch.wait_for(BASE + "state")  # subscribed: it subscribes before publishing
        srv.service.select(str(path), "job.gcode")
        watch.publish(BASE + "command/job", b"start")
        await watch.wait_for(BASE + "event/PrintStarted")
        watch.publish(BASE + "command/job", b'{"command": "pause", "action": "pause"}')
        await watch.wait_for(BASE + "event/PrintPaused")
        watch.publish(BASE + "command/job", b"resume")
        await watch.wait_for(BASE + "event/PrintResumed")
        watch.publish(BASE + "command/job", b"cancel")
        await watch.wait_for(BASE + "event/PrintCancelled")
    assert [r["ok"] for r in watch.json(BASE + "command/reply")] == [True] * 4


def metric(text: str, name: str) -> float:
    return next(float(line.split()[1]) for line in text.splitlines()
                if line.startswith(f"printpipe_{name} "))


async def metrics_of(srv) -> str:
    return str((await srv.client.get("/metrics")).text)


async def test_a_broker_stopped_and_restarted_mid_print_loses_messages_not_the_print(
        tmp_path, broker, monkeypatch):
    # reconnect and poll faster than in production: the broker is down for a moment only
    monkeypatch.setattr(mqtt_client, "BACKOFF", (0.1, 0.4))
    monkeypatch.setattr(mqtt_bridge, "STATUS_INTERVAL", 0.2)
    text = sample_gcode(200) + "M104 S200\nG4 P4000\n" + sample_gcode(200, seed=2)
    path = tmp_path / "long.gcode"
    path.write_text(text)
    expected = expected_commands(text)
    async with watching(broker.port) as watch, \
            serve_for_test(tmp_path, mqtt_yaml(broker.port)) as srv:
        await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"connected")
        control = srv.service
        control.select(str(path), "long.gcode")
        await control.start()
        await watch.wait_for(BASE + "event/PrintStarted")
        broker.stop()
        with trio.fail_after(10):  # heating up: temperature messages to lose
            while not (metric(m := await metrics_of(srv), "mqtt_connected") == 0
                       and metric(m, "mqtt_messages_dropped_total") > 0):
                await trio.sleep(0.05)
        broker.start()
        with trio.fail_after(10):  # both clients back before the print ends
            while not (watch.mqtt.connected
                       and metric(await metrics_of(srv), "mqtt_connected") == 1):
                await trio.sleep(0.05)
        assert control.status().printing  # back mid-print: PrintDone is still to come
        result = await control.wait_job_end(60)
        assert result is not None and result.outcome is Outcome.DONE
        accepted = list(control.session.virtual.firmware.accepted)
        assert file_lines(accepted, expected) == expected  # every line once, in order
        await watch.wait_for(BASE + "event/PrintDone")  # publishing resumed
        await watch.wait_for(BASE + "progress/printing",
                             lambda m: json.loads(m.payload)["progress"] == 100)
        async with watching(broker.port, BASE + "mqtt") as late:  # the new broker knows
            kept = await late.wait_for(BASE + "mqtt")
        assert kept.retain and kept.payload == b"connected"
        metrics = (await srv.client.get("/metrics")).text
    assert metric(metrics, "mqtt_connected") == 1
    assert metric(metrics, "mqtt_messages_dropped_total") > 0
    assert metric(metrics, "mqtt_reconnects_total") >= 1
    assert metric(metrics, "mqtt_messages_published_total") > 10


async def test_tls_with_a_generated_ca(tmp_path):
    broker = start_mosquitto(tmp_path, tls=True)
    try:
        ca = f"{broker.folder}/ca.crt"
        extra = f"  tls:\n    ca_file: {ca}\n"
        yaml = mqtt_yaml(broker.tls_port, extra).replace("host: 127.0.0.1", "host: localhost")
        async with watching(broker.port) as watch, serve_for_test(tmp_path, yaml):
            await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"connected")
            await watch.wait_for(BASE + "temperature/tool0")
    finally:
        broker.stop()


async def test_tls_refuses_a_broker_its_ca_did_not_sign(tmp_path, caplog):
    broker = start_mosquitto(tmp_path, tls=True)
    try:
        other = tmp_path / "other"
        other.mkdir()
        make_ca(other)
        yaml = mqtt_yaml(broker.tls_port, f"  tls:\n    ca_file: {other}/ca.crt\n")
        async with watching(broker.port) as watch, serve_for_test(tmp_path, yaml) as srv:
            with trio.fail_after(10):
                while "CERTIFICATE_VERIFY_FAILED" not in caplog.text:
                    await trio.sleep(0.02)
            assert not watch.on(BASE + "mqtt")
            metrics = (await srv.client.get("/metrics")).text
        assert metric(metrics, "mqtt_connected") == 0
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    finally:
        broker.stop()


async def _reload(srv, text: str) -> dict:
    with open(srv.config_path, "w") as f:
        f.write(text)
    r = await srv.client.post("/api/system/reload", headers={"X-Api-Key": srv.key})
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_reload_moves_the_bridge_to_its_new_settings_at_once(tmp_path, broker):
    async with watching(broker.port) as watch, \
            serve_for_test(tmp_path, mqtt_yaml(broker.port)) as srv:
        await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"connected")
        with open(srv.config_path) as f:
            text = f.read()
        # an unusable TLS file is refused and the running bridge stays
        answer = await _reload(srv, text + "  tls:\n    ca_file: missing-ca.crt\n")
        assert [f["key"] for f in answer["failed"]] == ["mqtt"]
        assert "missing-ca.crt" in answer["failed"][0]["why"]
        answer = await _reload(srv, text.replace("client_id: pp-test",
                                                 "client_id: pp-test\n  base_topic: farm/p1/"))
        assert "mqtt.base_topic" in answer["applied"] and not answer["restart_needed"], answer
        await watch.wait_for("farm/p1/mqtt", lambda m: m.payload == b"connected")
        # the old bridge said goodbye before the new one took the client id
        assert [m.payload for m in watch.on(BASE + "mqtt")] == [b"connected", b"disconnected"]
        assert [m.payload for m in watch.on("farm/p1/mqtt")] == [b"connected"]
        answer = await _reload(srv, text.split("mqtt:")[0])   # the section removed
        assert "mqtt" in answer["applied"]
        await watch.wait_for("farm/p1/mqtt", lambda m: m.payload == b"disconnected")
        metrics = (await srv.client.get("/metrics", headers={"X-Api-Key": srv.key})).text
        assert "printpipe_mqtt_connected" not in metrics


@needs_ffmpeg
async def test_timelapse_events_reach_their_event_topics(tmp_path, broker):
    """A zchange print with a test webcam that breaks after two frames: CaptureStart/Done/
    Failed, PostRollStart/End, MovieRendering/Done on `<base>event/NAME` with their payloads;
    MovieFailed (ffmpeg failing) through the same bus the renderer publishes on."""
    (tmp_path / "jpegs").mkdir()
    frames = make_jpegs(tmp_path / "jpegs")
    async with webcam(frames) as cam, watching(broker.port) as watch, serve_for_test(
            tmp_path, mqtt_yaml(broker.port) + tl_config(cam.url, extra="  post_roll: 0.2\n")
    ) as srv:
        def breaks() -> None:
            if cam.requests > 2:
                cam.mode = "error"
        cam.on_request = breaks
        await watch.wait_for(BASE + "mqtt", lambda m: m.payload == b"connected")
        await tl_print(srv, tmp_path, layered(3))
        done = await watch.wait_for(BASE + "event/MovieDone", timeout=30)
        srv.service.camera.publish(Event.MOVIE_FAILED.value, {
            "gcode": "layers.gcode", "movie": "/x.mp4", "movie_basename": "x.mp4",
            "movie_prefix": "x", "returncode": 1, "error": "ffmpeg said no",
            "reason": "returncode"})
        failed = await watch.wait_for(BASE + "event/MovieFailed")
    names = [Event.CAPTURE_START, Event.CAPTURE_DONE, Event.CAPTURE_FAILED,
             Event.POST_ROLL_START, Event.POST_ROLL_END, Event.MOVIE_RENDERING]
    for name in names:
        (first, *_) = watch.json(BASE + "event/" + name.value)
        assert first["_event"] == name.value and isinstance(first["_timestamp"], int)
        assert set(first) - {"_event", "_timestamp"} <= set(PAYLOAD_KEYS[name]), first
    assert len(watch.on(BASE + "event/CaptureDone")) == 2
    assert "HTTP 500" in watch.json(BASE + "event/CaptureFailed")[0]["error"]
    assert watch.json(BASE + "event/PostRollStart")[0]["postroll_length"] == 2
    movie = json.loads(done.payload)
    assert movie["gcode"] == "layers.gcode" and movie["movie_basename"].endswith(".mp4")
    assert json.loads(failed.payload)["returncode"] == 1
