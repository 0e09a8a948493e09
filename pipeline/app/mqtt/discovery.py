"""Home Assistant MQTT discovery, as values: the retained `<prefix>/<component>/<node>/<object>/
config` messages that make a printer one device with sensors for its state, progress, time
left and each heater's temperature and target, and (when commands are on) buttons for pause,
resume and cancel. Every entity reads its printer's own topics and is available while
`<base>mqtt` says connected. With several printers each is its own device (its node id, unique
ids and device identifiers carry its name, its device name too) and is available only while
both its own `<base>mqtt` and the service's connection topic say connected.

Pure: no IO, no trio.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pipeline.app.mqtt.topics import CONNECTED, DISCONNECTED, Message, Topics, to_json
from pipeline.config.mqtt import MqttSpec

_NOT_ID = re.compile(r"[^A-Za-z0-9_-]+")
#: The pause / resume / cancel buttons: (object id, name, payload sent to <base>command/job).
BUTTONS = (("pause", "Pause", "pause"), ("resume", "Resume", "resume"),
           ("cancel", "Cancel", "cancel"))


def node_id(client_id: str) -> str:
    """The discovery node id: the client id with what a topic id may not hold replaced."""
    return _NOT_ID.sub("_", client_id).strip("_") or "printpipe"


def _value(key: str) -> str:
    return "{{ value_json.%s }}" % key  # noqa: UP031 (Jinja braces read better this way)


def discovery_messages(spec: MqttSpec, client_id: str, heaters: Iterable[str], *,
                       printer: str | None = None,
                       service_topic: str | None = None) -> list[Message]:
    """The config messages for the device `client_id`, one per entity, retained. `printer`:
    the printer's name when it is one of several (`spec.base_topic` is then its own base);
    `service_topic`: the connection's availability topic, when it is not the printer's."""
    node = node_id(client_id) + (f"_{node_id(printer)}" if printer else "")
    topics = Topics(spec.base_topic)
    name = spec.discovery.name + (f" {printer}" if printer else "")
    device = {"identifiers": [f"printpipe_{node}"], "name": name,
              "manufacturer": "printpipe", "model": "3D printer host"}
    common: dict[str, Any] = {"device": device}
    if service_topic is None or service_topic == topics.availability:
        common |= {"availability_topic": topics.availability, "payload_available": CONNECTED,
                   "payload_not_available": DISCONNECTED}
    else:
        common |= {"availability": [{"topic": topic, "payload_available": CONNECTED,
                                     "payload_not_available": DISCONNECTED}
                                    for topic in (service_topic, topics.availability)],
                   "availability_mode": "all"}
    entities: list[tuple[str, str, dict[str, Any]]] = [
        ("sensor", "state", {"name": "State", "state_topic": topics.state,
                             "value_template": _value("state"),
                             "json_attributes_topic": topics.state,
                             "icon": "mdi:printer-3d"}),
        ("sensor", "progress", {"name": "Progress", "state_topic": topics.progress,
                                "value_template": _value("progress"),
                                "unit_of_measurement": "%", "state_class": "measurement",
                                "icon": "mdi:file-percent"}),
        ("sensor", "time_left", {"name": "Time left", "state_topic": topics.state,
                                 "value_template": _value("time_left"),
                                 "device_class": "duration", "unit_of_measurement": "s"}),
    ]
    for heater in heaters:
        for key, label in (("actual", ""), ("target", " target")):
            entities.append(("sensor", f"{heater}_{key}", {
                "name": f"{heater}{label}", "state_topic": topics.temperature(heater),
                "value_template": _value(key), "device_class": "temperature",
                "unit_of_measurement": "°C", "state_class": "measurement"}))
    if spec.commands:
        for object_id, name, payload in BUTTONS:
            entities.append(("button", object_id, {"name": name, "command_topic": topics.job,
                                                   "payload_press": payload, "qos": 1}))
    prefix = spec.discovery.prefix
    return [Message(f"{prefix}/{component}/{node}/{object_id}/config",
                    to_json({**config, "unique_id": f"printpipe_{node}_{object_id}",
                             "object_id": f"{node}_{object_id}", **common}),
                    retain=True, qos=1)
            for component, object_id, config in entities]
