"""The MQTT bridge by values: the `mqtt:` section (defaults, errors with lines), the topics
and payloads (OctoPrint-MQTT's shapes), what a status poll publishes (changes only), Home
Assistant discovery, the command parsers, the driver's bounded backlog, and a service whose
broker is unreachable (it prints, and counts what it could not publish)."""

from __future__ import annotations

import json

import pytest
import trio
from conftest import load_yaml, run_cli
from http_fixtures import serve_for_test
from mqtt_fixtures import free_port
from sample_prints import file_lines, write_sample

from pipeline.app.mqtt.client import TrioMqtt
from pipeline.app.mqtt.commands import Reply, gcode_lines, job_action, reply_message
from pipeline.app.mqtt.discovery import discovery_messages, node_id
from pipeline.app.mqtt.topics import Changes, Message, availability, event_message
from pipeline.app.printers.status import JobStatus, Status
from pipeline.config.mqtt import MqttSpec
from pipeline.errors import ConfigErrors
from pipeline.session.filejob import JobFile
from pipeline.session.states import PrinterState

SPEC = MqttSpec()


# ---- the section --------------------------------------------------------------------------

def test_no_mqtt_section_no_bridge_and_an_empty_one_is_all_defaults():
    assert load_yaml("printer:\n  port: virtual\n").mqtt is None
    spec = load_yaml("mqtt:\n").mqtt
    assert spec == MqttSpec()
    assert (spec.host, spec.port, spec.base_topic, spec.qos) == ("localhost", 1883,
                                                                 "octoPrint/", 0)
    assert spec.events is None and not spec.commands and not spec.discovery.enabled
    assert spec.retain.events == ("ZChange", "FirmwareData") and spec.retain.progress
    assert not spec.tls.active


def test_values_are_read():
    spec = load_yaml("""\
mqtt:
  host: broker.lan
  port: 8883
  username: printer
  password: secret
  client_id: farm-3
  base_topic: farm/3/
  qos: 1
  events:
    - PrintDone
    - PrintFailed
    - Dwelling
  commands: true
  retain:
    events:
    progress: false
  tls:
    ca_file: ca.crt
  discovery:
    enabled: true
""").mqtt
    assert (spec.host, spec.port, spec.username, spec.password, spec.client_id) == (
        "broker.lan", 8883, "printer", "secret", "farm-3")
    assert spec.events == ("PrintDone", "PrintFailed", "Dwelling")  # as the bus names it
    assert spec.qos == 1 and spec.commands
    assert spec.retain.events == () and not spec.retain.progress and spec.retain.temperature
    assert spec.tls.active and spec.tls.ca_file == "ca.crt" and spec.discovery.enabled


ERRORS = {
    "port": ("  port: 0\n", 2, "port must be 1..65535"),
    "base topic without slash": ("  base_topic: farm\n", 2, "'farm' must end with /"),
    "wildcard in base topic": ("  base_topic: farm/+/\n", 2, "must not contain the MQTT"),
    "qos 2": ("  qos: 2\n", 2, "qos must be 0 or 1"),
    "unknown event": ("  events:\n    - PrintDon\n", 3, "unknown event 'PrintDon'"),
    "unknown retained event": ("  retain:\n    events:\n      - Zchange\n", 4,
                               "unknown event 'Zchange'"),
    "unknown key": ("  hots: x\n", 2, "unknown key 'hots' in mqtt (did you mean 'host'?)"),
    "unknown tls key": ("  tls:\n    ca: x\n", 3, "unknown key 'ca' in mqtt.tls"),
    "blank client id": ("  client_id: ' '\n", 2, "client_id must not be empty"),
    "commands not a flag": ("  commands: maybe\n", 2, "commands"),
    "keepalive": ("  keepalive: 1\n", 2, "keepalive must be at least 5"),
}


@pytest.mark.parametrize(("body", "line", "fragment"), ERRORS.values(), ids=ERRORS.keys())
def test_errors_name_the_line_and_the_problem(body, line, fragment):
    with pytest.raises(ConfigErrors) as info:
        load_yaml("mqtt:\n" + body)
    (error,) = info.value.errors
    assert error.line == line and fragment in str(error), str(error)


# ---- topics and payloads --------------------------------------------------------------------

def test_events_carry_their_payload_plus_event_and_whole_second_timestamp():
    msg = event_message(SPEC, "Connected", {"port": "VIRTUAL", "baudrate": 250000}, 1517190629.7)
    assert msg.topic == "octoPrint/event/Connected" and not msg.retain and msg.qos == 0
    assert json.loads(msg.payload) == {"port": "VIRTUAL", "baudrate": 250000,
                                       "_event": "Connected", "_timestamp": 1517190629}


def test_zchange_and_firmware_data_are_retained_as_the_plugin_does_and_the_list_filters():
    assert event_message(SPEC, "ZChange", {"new": 0.2, "old": None}, 0).retain
    picky = MqttSpec(events=("PrintDone",), base_topic="farm/3/")
    assert event_message(picky, "ZChange", {}, 0) is None
    assert event_message(picky, "PrintDone", {}, 0).topic == "farm/3/event/PrintDone"
    assert event_message(MqttSpec(events=()), "PrintDone", {}, 0) is None


def test_availability_is_retained_qos_1():
    assert availability(SPEC, True) == Message("octoPrint/mqtt", b"connected", True, 1)
    assert availability(SPEC, False) == Message("octoPrint/mqtt", b"disconnected", True, 1)


def status(state=PrinterState.OPERATIONAL, progress=None, tool0=(21.0, 0.0), time_left=None):
    job = None if progress is None else JobStatus(
        JobFile("cube.gcode", "prints/cube.gcode", 100), progress, 10, 3, 12.4, time_left,
        state is PrinterState.PRINTING)
    temps = {"tool0": {"actual": tool0[0], "target": tool0[1], "offset": 0},
             "bed": {"actual": None, "target": None, "offset": 0}}
    return Status(state, True, None, temps, job, None, {})


def _by_topic(msgs):
    return {m.topic: json.loads(m.payload) for m in msgs}


def test_a_poll_publishes_progress_temperatures_and_state_then_only_changes():
    changes = Changes(SPEC)
    first = _by_topic(changes.messages(status(), 100.0))
    assert first == {
        "octoPrint/progress/printing": {"progress": 0, "location": "", "path": "",
                                        "_timestamp": 100},
        "octoPrint/temperature/tool0": {"actual": 21.0, "target": 0.0, "_timestamp": 100},
        "octoPrint/state": {"state": "Operational", "error": None, "progress": 0,
                            "print_time": None, "time_left": None, "file": None,
                            "_timestamp": 100},
    }  # the bed reported nothing yet: nothing published for it
    assert changes.messages(status(), 101.0) == []
    assert changes.messages(status(tool0=(21.05, 0.0)), 102.0) == []  # under the threshold
    moved = changes.messages(status(tool0=(21.1, 0.0)), 103.0)
    assert [m.topic for m in moved] == ["octoPrint/temperature/tool0"]
    target = changes.messages(status(tool0=(21.1, 200.0)), 104.0)
    assert _by_topic(target)["octoPrint/temperature/tool0"]["target"] == 200.0
    changes.forget()
    assert len(changes.messages(status(tool0=(21.1, 200.0)), 105.0)) == 3


def test_progress_is_whole_percent_with_the_file_and_state_has_time_left():
    changes = Changes(SPEC)
    msgs = _by_topic(changes.messages(status(PrinterState.PRINTING, 0.234, time_left=95.2), 0))
    assert msgs["octoPrint/progress/printing"] == {"progress": 23, "location": "local",
                                                   "path": "prints/cube.gcode", "_timestamp": 0}
    state = msgs["octoPrint/state"]
    assert (state["state"], state["progress"], state["time_left"], state["print_time"],
            state["file"]) == ("Printing", 23.4, 95, 12, "prints/cube.gcode")
    # the same percent, a few seconds less left: nothing new
    assert changes.messages(status(PrinterState.PRINTING, 0.2341, time_left=91), 1) == []
    later = changes.messages(status(PrinterState.PRINTING, 0.2341, time_left=85), 2)
    assert [m.topic for m in later] == ["octoPrint/state"]


def test_retain_per_kind_and_kinds_switched_off():
    spec = load_yaml("mqtt:\n  temperature: false\n  retain:\n    state: false\n").mqtt
    msgs = Changes(spec).messages(status(), 0)
    assert {m.topic: m.retain for m in msgs} == {"octoPrint/progress/printing": True,
                                                 "octoPrint/state": False}


# ---- discovery ------------------------------------------------------------------------------

def test_discovery_names_one_device_and_buttons_only_with_commands():
    msgs = discovery_messages(SPEC, "printpipe-pi.local", ["tool0", "bed"])
    assert all(m.retain and m.topic.startswith("homeassistant/") for m in msgs)
    assert {m.topic.split("/")[1] for m in msgs} == {"sensor"}
    assert {m.topic.split("/")[2] for m in msgs} == {"printpipe-pi_local"}
    with_buttons = discovery_messages(MqttSpec(commands=True), "x", ["tool0"])
    buttons = [json.loads(m.payload) for m in with_buttons if "/button/" in m.topic]
    assert [b["payload_press"] for b in buttons] == ["pause", "resume", "cancel"]
    assert node_id("###") == "printpipe"


# ---- commands -------------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "expected"), [
    (b"G28", ["G28"]), (b"G28\nM105\n", ["G28", "M105"]), (b"  G28 \r\n\n M105", ["G28", "M105"]),
    (b"", "no command"), (b"\n \n", "no command"), (b"\xff", "not UTF-8"),
    (b"M105\n" * 101, "at most 100"),
])
def test_gcode_payloads(payload, expected):
    if isinstance(expected, list):
        assert gcode_lines(payload) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            gcode_lines(payload)


@pytest.mark.parametrize(("payload", "expected"), [
    (b"pause", "pause"), (b" Cancel\n", "cancel"), (b"start", "start"), (b"toggle", "toggle"),
    (b'{"command": "cancel"}', "cancel"), (b'{"command": "pause"}', "toggle"),
    (b'{"command": "pause", "action": "resume"}', "resume"),
    (b'{"command": "pause", "action": "cancel"}', "action"),
    (b"{nope", "malformed JSON"), (b"[]", "unknown job command"), (b'{"command": 1}', "command"),
    (b"jump", "unknown job command 'jump'"), (b"\xc3", "not UTF-8"),
    (b'{"command": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    (b'{"command": "\\udfff"}', "lone surrogate"),
])
def test_job_payloads(payload, expected):
    if expected in ("pause", "cancel", "start", "toggle", "resume"):
        assert job_action(payload) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            job_action(payload)


def test_a_reply_names_the_command_and_says_why():
    msg = reply_message(SPEC, "octoPrint/command/gcode", b"M104 S999",
                        Reply(False, "M104 S999: target 999 °C is above the hotend limit"), 5)
    assert msg.topic == "octoPrint/command/reply" and not msg.retain
    assert json.loads(msg.payload) == {
        "topic": "octoPrint/command/gcode", "command": "M104 S999", "ok": False,
        "error": "M104 S999: target 999 °C is above the hotend limit", "_timestamp": 5}


# ---- the driver never waits -----------------------------------------------------------------

async def test_publishing_never_waits_it_drops_and_counts():
    mqtt = TrioMqtt(SPEC, "t", None, limit=2, on_connect=lambda: None)
    msg = Message("a/b", b"x")
    assert not mqtt.publish_nowait(msg)  # no connection
    mqtt.connected = True
    mqtt._sent = 2  # two still waiting to be written: the backlog is full
    assert not mqtt.publish_nowait(msg)
    assert (mqtt.dropped, mqtt.published) == (2, 0)


async def test_an_unreachable_broker_costs_the_print_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.app.mqtt.bridge.STATUS_INTERVAL", 0.1)
    port = free_port()  # nothing listens there
    path, expected = write_sample(tmp_path, 300)
    async with serve_for_test(tmp_path, f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n") as srv:
        control = srv.service
        control.select(path, "job.gcode")
        await control.start()
        result = await control.wait_job_end(60)
        assert result is not None and result.error is None
        accepted = list(control.session.virtual.firmware.accepted)
        with trio.fail_after(10):  # a status poll (or the print's events) dropped
            while True:
                metrics = (await srv.client.get("/metrics")).text
                dropped = next(line for line in metrics.splitlines()
                               if line.startswith("printpipe_mqtt_messages_dropped_total "))
                if float(dropped.split()[1]) > 0:
                    break
                await trio.sleep(0.05)
    assert file_lines(accepted, expected) == expected
    assert "printpipe_mqtt_connected 0" in metrics


def test_the_readme_example_loads():
    import pathlib
    import re
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## MQTT"):readme.index("## HTTP API")]
    (example,) = [b for b in re.findall(r"```yaml\n(.*?)```", section, re.S)
                  if b.startswith("mqtt:")]
    spec = load_yaml(example).mqtt
    assert spec.host == "broker.lan" and spec.retain.events == ("ZChange", "FirmwareData")
    assert spec.tls.active and not spec.commands


def test_a_tls_file_that_cannot_be_read_stops_the_start_with_a_config_error(tmp_path):
    config = tmp_path / "printpipe.yaml"
    config.write_text(f"storage:\n  state: {tmp_path}/state\n  folder: {tmp_path}/files\n"
                      "http:\n  port: 0\nmqtt:\n  tls:\n    ca_file: missing-ca.crt\n")
    result = run_cli("serve", "-c", str(config))
    assert result.returncode != 0
    assert f"[mqtt.tls] cannot use the TLS files {tmp_path}/missing-ca.crt" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("profile", "heaters"), [
    ({}, ["tool0", "bed"]),
    ({"extruders": 2, "heated_bed": False}, ["tool0", "tool1"]),
    ({"extruders": 2, "shared_nozzle": True, "heated_chamber": True},
     ["tool0", "bed", "chamber"]),
])
def test_discovery_names_the_profiles_heaters_before_any_report(profile, heaters):
    from pipeline.config.schema import ProfileSpec
    assert ProfileSpec(**profile).heaters() == heaters
