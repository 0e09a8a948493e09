"""What the MQTT bridge publishes, as values: topic names and payloads in OctoPrint-MQTT's
default shapes (`<base>event/<Event>`, `<base>progress/printing`, `<base>temperature/<heater>`,
`<base>mqtt`), plus printpipe's retained `<base>state` for Home Assistant.

Pure functions of their arguments (and `Changes`, which remembers what was last published so
that only changes go out): no IO, no trio, no clock; the bridge passes the time in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from pipeline.app.printers.status import Status
from pipeline.config.mqtt import MqttSpec

#: The availability topic's payloads (OctoPrint-MQTT's `mqtt` topic and its last will).
CONNECTED = "connected"
DISCONNECTED = "disconnected"
#: A heater's actual temperature is published again once it moved this much (°C; the plugin's
#: `temperatureThreshold` default). Any change of a target is published.
TEMPERATURE_THRESHOLD = 0.1
#: Seconds of change in the time left before `<base>state` is published again for it alone.
TIME_LEFT_STEP = 10


@attrs.frozen
class Message:
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0


@attrs.frozen
class Topics:
    """The topic names under one base (which ends with /)."""

    base: str

    def event(self, name: str) -> str:
        return f"{self.base}event/{name}"

    def temperature(self, heater: str) -> str:
        return f"{self.base}temperature/{heater}"

    @property
    def progress(self) -> str:
        return f"{self.base}progress/printing"

    @property
    def availability(self) -> str:
        return f"{self.base}mqtt"

    @property
    def state(self) -> str:
        return f"{self.base}state"

    @property
    def gcode(self) -> str:
        return f"{self.base}command/gcode"

    @property
    def job(self) -> str:
        return f"{self.base}command/job"

    @property
    def reply(self) -> str:
        return f"{self.base}command/reply"


def to_json(data: Mapping[str, Any]) -> bytes:
    """Compact JSON; anything JSON does not know (a path object, an enum) as its text."""
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def stamped(data: Mapping[str, Any], timestamp: float) -> bytes:
    """`data` as JSON with OctoPrint-MQTT's `_timestamp` (whole Unix seconds)."""
    return to_json({**data, "_timestamp": int(timestamp)})


def availability(spec: MqttSpec | str, online: bool) -> Message:
    """`<base>mqtt` (of `spec`'s base, or the base given): connected / disconnected, retained,
    QoS 1 (also the last will)."""
    base = spec if isinstance(spec, str) else spec.base_topic
    return Message(Topics(base).availability,
                   (CONNECTED if online else DISCONNECTED).encode(), retain=True, qos=1)


def event_message(spec: MqttSpec, name: str, payload: Mapping[str, Any],
                  timestamp: float) -> Message | None:
    """`<base>event/<name>`: the payload plus `_event` and `_timestamp`; None when the config's
    `events` list leaves the event out."""
    if spec.events is not None and name not in spec.events:
        return None
    body = stamped({**payload, "_event": name}, timestamp)
    return Message(Topics(spec.base_topic).event(name), body,
                   retain=name in spec.retain.events, qos=spec.qos)


def progress_payload(status: Status) -> dict[str, Any]:
    """OctoPrint-MQTT's print progress: whole percent, the file's storage and path ("" idle)."""
    job = status.job
    if job is None:
        return {"progress": 0, "location": "", "path": ""}
    return {"progress": round(job.progress * 100), "location": job.file.origin,
            "path": job.file.path}


def state_payload(status: Status) -> dict[str, Any]:
    """printpipe's `<base>state`: state text, progress (percent, one decimal), seconds printed
    and left (null when not known), the file's path; what Home Assistant's sensors read."""
    job = status.job
    time_left = job.time_left if job is not None and job.active else None
    return {
        "state": status.state.value,
        "error": status.error,
        "progress": round(job.progress * 100, 1) if job is not None else 0,
        "print_time": round(job.elapsed) if job is not None else None,
        "time_left": round(time_left) if time_left is not None else None,
        "file": job.file.path if job is not None else None,
    }


def _temperature_moved(old: tuple[float | None, float | None] | None,
                       new: tuple[float | None, float | None]) -> bool:
    if old is None:
        return True
    (a0, t0), (a1, t1) = old, new
    if (a0 is None) != (a1 is None) or t0 != t1:
        return True
    return a0 is not None and a1 is not None and abs(a1 - a0) >= TEMPERATURE_THRESHOLD


@attrs.define(eq=False)
class Changes:
    """What was last published per topic, so that a status poll sends only what changed.
    `forget()` after a reconnect makes the next poll send everything again."""

    spec: MqttSpec
    _progress: tuple[Any, ...] | None = None
    _state: tuple[Any, ...] | None = None
    _temps: dict[str, tuple[float | None, float | None]] = attrs.Factory(dict)

    def forget(self) -> None:
        self._progress = self._state = None
        self._temps.clear()

    def messages(self, status: Status, timestamp: float) -> list[Message]:
        """The messages `status` calls for, given what was published before."""
        spec, topics = self.spec, Topics(self.spec.base_topic)
        out: list[Message] = []
        if spec.progress:
            body = progress_payload(status)
            key = tuple(body.values())
            if key != self._progress:
                self._progress = key
                out.append(Message(topics.progress, stamped(body, timestamp),
                                   retain=spec.retain.progress, qos=spec.qos))
        if spec.temperature:
            for heater, values in status.temperatures.items():
                actual, target = values.get("actual"), values.get("target")
                if actual is None and target is None:
                    continue  # nothing reported yet (the plugin skips these too)
                new = (actual, target)
                if _temperature_moved(self._temps.get(heater), new):
                    self._temps[heater] = new
                    out.append(Message(topics.temperature(heater),
                                       stamped({"actual": actual, "target": target},
                                               timestamp),
                                       retain=spec.retain.temperature, qos=spec.qos))
        body = state_payload(status)
        left = body["time_left"]
        key = (*(v for k, v in body.items() if k not in ("time_left", "print_time")),
               None if left is None else left // TIME_LEFT_STEP)
        if key != self._state:
            self._state = key
            out.append(Message(topics.state, stamped(body, timestamp),
                               retain=spec.retain.state, qos=spec.qos))
        return out
