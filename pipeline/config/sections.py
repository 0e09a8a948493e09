"""The service sections of the configuration: `events` (subscriptions), `http` and `storage`.

Spec values whose fields declare their options (as in schema.py), and the reader of `events`:
validated as one map whose keys come from those declarations, it checks each subscription's
event names and placeholders at load time, so a broken subscription is a config error with its
line instead of a silent skip at run time. No trio, no IO.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
import strictyaml as sy

from pipeline.config.camera import TimelapseSpec, WebcamSpec
from pipeline.config.mqtt import MqttSpec
from pipeline.config.nodes import Reporter, is_blank, key_line
from pipeline.config.nodes import event_problem as event_problem  # where the API finds it
from pipeline.config.options import (
    Section,
    at_least,
    briefly,
    flag,
    frozen_map,
    integer,
    number,
    option,
    options,
    positive,
    text,
)
from pipeline.config.schema import (
    PipelineSpec,
    PrinterSpec,
    ScriptsSpec,
    SerialSpec,
    SourceLocation,
    VirtualSpec,
)
from pipeline.events.names import PAYLOAD_KEYS, catalogue_event
from pipeline.events.placeholders import GENERIC, field_roots, split_argv

_MUST_BE_POSITIVE = briefly(positive, "must be positive")


class SubscriptionType(enum.Enum):
    GCODE = "gcode"    # commands go through the pipeline like any other
    SYSTEM = "system"  # commands run as subprocesses


@attrs.frozen
class SubscriptionSpec:
    """One subscription; `event`, `command` and `type` are read by hand, the rest are options."""

    events: tuple[str, ...]
    commands: tuple[str, ...]
    type: SubscriptionType
    location: SourceLocation
    name: str | None = option(None, sy.Str())
    enabled: bool = flag(True)
    debug: bool = flag(False)
    shell: bool = flag(False)
    cwd: str | None = option(None, sy.Str())
    timeout: float = number(60.0, _MUST_BE_POSITIVE)
    env: Mapping[str, str] = option(MappingProxyType({}), sy.MapPattern(sy.Str(), sy.Str()),
                                    convert=frozen_map, hash=False)

    @property
    def label(self) -> str:
        """How logs name it: its name, or its events, and where it is declared."""
        what = repr(self.name) if self.name else "on " + ",".join(self.events)
        return f"subscription {what} ({self.location})"


@attrs.frozen
class EventsSpec:
    """The events section; `subscriptions` is read by hand, the rest are options."""

    enabled: bool = flag(True)
    subscriptions: tuple[SubscriptionSpec, ...] = ()
    #: System commands running at once; further firings wait (up to `max_waiting`).
    max_concurrent: int = integer(4, briefly(at_least(1), "must be at least 1"))
    max_waiting: int = integer(64, briefly(at_least(0), "must be at least 0"))
    #: Seconds commands still running at shutdown get to finish.
    shutdown_grace: float = number(5.0, _MUST_BE_POSITIVE)


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be 0..65535"


def _api_key(value: str | None) -> str | None:
    return None if value is None or len(value) >= 16 else "must be at least 16 characters"


_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")


def _host_name(value: str) -> str | None:
    if _HOST_NAME.fullmatch(value):
        return None
    return (f"{value!r} is not a host name (give a bare name such as printpipe.local: "
            "no scheme, port or path)")


def _host_names(names: list[str] | None) -> tuple[str, ...]:
    """Compared as the Host header is: lower case, without a trailing dot."""
    return tuple(name.lower().rstrip(".") for name in names or ())


@attrs.frozen
class HttpSpec:
    host: str = text("127.0.0.1")
    port: int = integer(5000, _port)
    api_key: str | None = option(None, sy.EmptyNone() | sy.Str(), check=_api_key)
    body_limit: int = integer(1024 * 1024 * 1024, at_least(1))  # bytes; past it: 413
    #: Serve without a key (only allowed on a loopback address).
    allow_anonymous: bool = flag(False)
    #: The names clients may use in the Host header besides IP addresses and localhost; checked
    #: when serving without keys, or whenever names are given (defeats DNS rebinding).
    host_names: tuple[str, ...] = option((), sy.EmptyList() | sy.Seq(sy.Str()),
                                         convert=_host_names, item_check=_host_name)
    #: Requests handled at once (a connection's turn: from reading a request to the start of
    #: its answer); one client gets at most half of them. Others wait their turn, and get
    #: 503 with Retry-After after waiting a second: the printer's link keeps its share.
    max_concurrent_requests: int = integer(4, at_least(1))


@attrs.frozen
class StorageSpec:
    """`folder` holds printable files; `state` holds keys.json and other service state.
    Relative paths are relative to the config file."""

    folder: str = text("~/.printpipe/files")
    state: str = text("~/.printpipe/state")
    #: Seconds between writes of the print journal (<state>/journal.json) while a print runs
    #: and changes; a layer change is written at once.
    journal_interval: float = number(1.0, positive)


@attrs.frozen
class HostConfig:
    """One printer's whole configuration (the shared sections applied): one value, read once,
    never mutated. A config with several printers is a ServiceConfig (printers.py) of these."""

    path: str
    printer: PrinterSpec
    serial: SerialSpec
    virtual: VirtualSpec
    pipeline: PipelineSpec
    scripts: ScriptsSpec = ScriptsSpec()
    events: EventsSpec = EventsSpec()
    http: HttpSpec = HttpSpec()
    storage: StorageSpec = StorageSpec()
    #: The MQTT bridge, when the config has an `mqtt:` section.
    mqtt: MqttSpec | None = None
    #: The printer's name (`default` for a config with one `printer:` section).
    name: str = "default"
    #: The printer's own OctoPrint-compatible HTTP port (`http: port:` under its name), if any.
    http_port: int | None = None
    #: Its MQTT base topic when MQTT is on (mqtt.base_topic for one printer, mqtt.base_topic +
    #: NAME/ by default when there are several), else None.
    mqtt_base: str | None = None
    #: Its camera and timelapse (config/camera.py).
    webcam: WebcamSpec = WebcamSpec()
    timelapse: TimelapseSpec = TimelapseSpec()


HTTP = Section.of(HttpSpec)
STORAGE = Section.of(StorageSpec)
MQTT = Section.of(MqttSpec)


def _optional_keys(spec: type) -> dict[sy.Optional, sy.Validator]:
    """The strictyaml keys of `spec`'s options, for a section validated as one sy.Map."""
    return {sy.Optional(key): field.validator for key, field in options(spec).items()}


_STR_OR_LIST = sy.Str() | sy.Seq(sy.Str())
SUBSCRIPTION = sy.Map({
    "event": _STR_OR_LIST, "command": _STR_OR_LIST,
    "type": sy.Enum([t.value for t in SubscriptionType]),
    **_optional_keys(SubscriptionSpec),
})
EVENTS_KEYS = sy.Map({
    **_optional_keys(EventsSpec),
    sy.Optional("subscriptions"): sy.EmptyList() | sy.Seq(SUBSCRIPTION),
})
_SYSTEM_ONLY = ("shell", "cwd", "timeout", "env")


def _payload_keys(events: tuple[str, ...]) -> frozenset[str] | None:
    """Keys every listed event's payload may carry; None when one is not known at load."""
    keys: frozenset[str] | None = None
    for name in events:
        ev = catalogue_event(name)
        if ev is None:
            return None
        these = frozenset(PAYLOAD_KEYS[ev])
        keys = these if keys is None else keys & these
    return keys


def read_events(reader: Reporter, node: sy.YAML, line: int,
                keypath: str = "events") -> EventsSpec | None:
    """The events section: validated as one map, then its options, then each subscription."""
    if is_blank(node):
        return EventsSpec()
    if not reader.validate(node, EVENTS_KEYS, line, keypath):
        return None
    data = node.data
    before = len(reader.errors)
    settings = _options(reader, EventsSpec, node, keypath)
    subs = []
    if data.get("subscriptions"):
        seq = node["subscriptions"]
        for i, item in enumerate(seq):
            sub = _subscription(reader, item, seq.as_marked_up().lc.item(i)[0] + 1,
                                f"{keypath}.subscriptions[{i}]")
            if sub is not None:
                subs.append(sub)
    if len(reader.errors) > before:
        return None
    return EventsSpec(subscriptions=tuple(subs), **settings)


def _options(reader: Reporter, spec: type, node: sy.YAML, keypath: str) -> dict[str, Any]:
    """The options of `spec` that the (validated) mapping `node` sets, each read as declared."""
    data = node.data
    return {key: reader.field(field, node[key], key_line(node, key), f"{keypath}.{key}")
            for key, field in options(spec).items() if key in data}


def _as_tuple(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _subscription(reader: Reporter, node: sy.YAML, line: int,
                  keypath: str) -> SubscriptionSpec | None:
    data = node.data
    before = len(reader.errors)
    kind = SubscriptionType(data["type"])
    events = _as_tuple(data["event"])
    commands = _as_tuple(data["command"])
    ev_line = key_line(node, "event")
    if not events:
        reader.error("event must name at least one event", ev_line, f"{keypath}.event")
    for name in events:
        problem = event_problem(name)
        if problem:
            reader.error(problem, ev_line, f"{keypath}.event")
    cmd_line = key_line(node, "command")
    if not commands:
        reader.error("command must give at least one command", cmd_line, f"{keypath}.command")
    known = _payload_keys(events)
    for cmd in commands:
        try:
            roots = field_roots(cmd)
            if kind is SubscriptionType.SYSTEM and not data.get("shell"):
                split_argv(cmd)
        except ValueError as exc:
            reader.error(f"command {cmd!r}: {exc}", cmd_line, f"{keypath}.command")
            continue
        for root in roots:
            if root in GENERIC or known is None or root in known:
                continue
            which = ", ".join(sorted(known)) or "none"
            reader.error(f"unknown placeholder {{{root}}} in {cmd!r}: not a generic "
                         f"placeholder ({', '.join(GENERIC)}) nor a payload key of "
                         f"{', '.join(events)} (payload keys: {which})",
                         cmd_line, f"{keypath}.command")
    if kind is SubscriptionType.GCODE:
        for key in _SYSTEM_ONLY:
            if key in data:
                reader.error(f"{key} is only for system subscriptions", key_line(node, key),
                             f"{keypath}.{key}")
    settings = _options(reader, SubscriptionSpec, node, keypath)
    if len(reader.errors) > before:
        return None
    return SubscriptionSpec(events, commands, kind, SourceLocation(reader.path, line), **settings)
