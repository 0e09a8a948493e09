"""The `mqtt:` section: the broker the MQTT bridge (pipeline/app/mqtt/) publishes to, what it
publishes and retains, Home Assistant discovery and commands in.

Declared once on the spec fields (options.py), read by the generic section reader with line
numbers. File paths (TLS) are kept as written: the bridge resolves and opens them, since this
layer does no IO. No trio.
"""

from __future__ import annotations

import re

import attrs
import strictyaml as sy

from pipeline.config.nodes import event_problem
from pipeline.config.options import (
    at_least,
    briefly,
    flag,
    integer,
    non_blank,
    option,
    subsection,
    text,
)
from pipeline.events.names import canonical

#: OctoPrint-MQTT retains these events (its `broker.retain` default).
RETAINED_EVENTS = ("ZChange", "FirmwareData")
#: What a topic level may not hold when we publish to it (MQTT's wildcards; NUL).
_NOT_IN_TOPIC = re.compile(r"[#+\x00]")


def _topic_part(value: str) -> str | None:
    if _NOT_IN_TOPIC.search(value):
        return f"{value!r} must not contain the MQTT wildcards # or + (or NUL)"
    return None


def _base_topic(value: str) -> str | None:
    return _topic_part(value) or (None if value.endswith("/") else
                                  f"{value!r} must end with / (octoPrint/ is the default)")


def _client_id(value: str | None) -> str | None:
    if value is None:
        return None
    return non_blank(value) or (None if len(value.encode()) <= 65535 else "is too long")


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "must be 1..65535"


def _event_tuple(names: list[str] | None) -> tuple[str, ...]:
    """The names as events are published ("Dwell" is Dwelling); an empty value is none."""
    return tuple(canonical(n) for n in names or ())


def _events(names: list[str] | None) -> tuple[str, ...] | None:
    return None if names is None else _event_tuple(names)


@attrs.frozen
class TlsSpec:
    """TLS to the broker: on when `enabled` or any file is given. `ca_file` is the CA that
    signed the broker's certificate (the system's CAs when absent); `cert_file`/`key_file` a
    client certificate for brokers that ask for one. Relative to the config file's folder."""

    enabled: bool = flag(False)
    ca_file: str | None = option(None, sy.Str(), check=non_blank)
    cert_file: str | None = option(None, sy.Str(), check=non_blank)
    key_file: str | None = option(None, sy.Str(), check=non_blank)
    #: Skip checking the broker's host name against its certificate (a broker by IP address).
    insecure: bool = flag(False)

    @property
    def active(self) -> bool:
        return self.enabled or any((self.ca_file, self.cert_file, self.key_file))


@attrs.frozen
class RetainSpec:
    """Which messages the broker keeps for late subscribers, per kind."""

    events: tuple[str, ...] = option(RETAINED_EVENTS, sy.EmptyList() | sy.Seq(sy.Str()),
                                     convert=_event_tuple, item_check=event_problem)
    progress: bool = flag(True)
    temperature: bool = flag(True)
    state: bool = flag(True)


@attrs.frozen
class DiscoverySpec:
    """Home Assistant MQTT discovery: retained config messages under `prefix`."""

    enabled: bool = flag(False)
    prefix: str = option("homeassistant", sy.Str(),
                         check=lambda v: non_blank(v) or _topic_part(v))
    #: The device's name in Home Assistant.
    name: str = text("printpipe")


@attrs.frozen
class MqttSpec:
    host: str = text("localhost")
    port: int = integer(1883, _port)
    username: str | None = option(None, sy.Str())
    password: str | None = option(None, sy.Str())
    #: The MQTT client id; also names the Home Assistant device. printpipe-<host name> when
    #: absent.
    client_id: str | None = option(None, sy.Str(), check=_client_id)
    keepalive: int = integer(60, briefly(at_least(5), "must be at least 5 (seconds)"))
    base_topic: str = option("octoPrint/", sy.Str(), check=_base_topic)
    qos: int = integer(0, lambda v: None if v in (0, 1) else "must be 0 or 1")
    #: Event names published to <base>event/<name>; all when absent.
    events: tuple[str, ...] | None = option(None, sy.EmptyList() | sy.Seq(sy.Str()),
                                            convert=_events, item_check=event_problem)
    progress: bool = flag(True)
    temperature: bool = flag(True)
    #: Messages waiting for the broker before new ones are dropped (counted).
    queue: int = integer(1000, briefly(at_least(1), "must be at least 1"))
    #: Accept <base>command/gcode and <base>command/job (off: give the broker an ACL first).
    commands: bool = flag(False)
    retain: RetainSpec = subsection(RetainSpec)
    tls: TlsSpec = subsection(TlsSpec)
    discovery: DiscoverySpec = subsection(DiscoverySpec)
