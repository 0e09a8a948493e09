"""The service sections of the configuration: `events` (subscriptions), `http` and `storage`.

Spec values and key tables as in schema.py, plus the reader of `events.subscriptions`,
which checks event names and placeholders at load time so a broken subscription is a config
error with its line instead of a silent skip at run time. No trio, no IO.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Any, Mapping

import attrs
import strictyaml as sy

from pipeline.config.nodes import Reporter, close, is_blank, key_line
from pipeline.config.schema import (
    Field, PipelineSpec, PrinterSpec, ScriptsSpec, Section, SerialSpec, SourceLocation,
    VirtualSpec, at_least, non_blank, positive,
)
from pipeline.events.names import (
    CUSTOM_EVENT_RE, PAYLOAD_KEYS, SCRIPT_EVENT_RE, catalogue_event, known_names,
)
from pipeline.events.placeholders import GENERIC, field_roots, split_argv


class SubscriptionType(enum.Enum):
    GCODE = "gcode"    # commands go through the pipeline like any other
    SYSTEM = "system"  # commands run as subprocesses


@attrs.frozen
class SubscriptionSpec:
    events: tuple[str, ...]
    commands: tuple[str, ...]
    type: SubscriptionType
    location: SourceLocation
    name: str | None = None
    enabled: bool = True
    debug: bool = False
    shell: bool = False
    cwd: str | None = None
    timeout: float = 60.0
    env: Mapping[str, str] = attrs.field(factory=lambda: MappingProxyType({}), hash=False)

    @property
    def label(self) -> str:
        """How logs name it: its name, or its events, and where it is declared."""
        what = repr(self.name) if self.name else "on " + ",".join(self.events)
        return f"subscription {what} ({self.location})"


@attrs.frozen
class EventsSpec:
    enabled: bool = True
    subscriptions: tuple[SubscriptionSpec, ...] = ()
    #: System commands running at once; further firings wait (up to `max_waiting`).
    max_concurrent: int = 4
    max_waiting: int = 64
    #: Seconds commands still running at shutdown get to finish.
    shutdown_grace: float = 5.0


@attrs.frozen
class HttpSpec:
    host: str = "127.0.0.1"
    port: int = 5000
    api_key: str | None = None
    body_limit: int = 1024 * 1024 * 1024  # bytes; uploads past it get 413
    #: Serve without a key (only allowed on a loopback address).
    allow_anonymous: bool = False


@attrs.frozen
class StorageSpec:
    """`folder` holds printable files; `state` holds keys.json and other service state.
    Relative paths are relative to the config file."""

    folder: str = "~/.printpipe/files"
    state: str = "~/.printpipe/state"


@attrs.frozen
class HostConfig:
    """The whole configuration: one value, read once, never mutated."""

    path: str
    printer: PrinterSpec
    serial: SerialSpec
    virtual: VirtualSpec
    pipeline: PipelineSpec
    scripts: ScriptsSpec = ScriptsSpec()
    events: EventsSpec = EventsSpec()
    http: HttpSpec = HttpSpec()
    storage: StorageSpec = StorageSpec()


HTTP = Section(HttpSpec, {
    "host": Field(sy.Str(), check=non_blank),
    "port": Field(sy.Int(), check=lambda v: None if 0 <= v <= 65535 else "must be 0..65535"),
    "api_key": Field(sy.EmptyNone() | sy.Str(), check=lambda v: None if v is None or len(v) >= 16
                     else "must be at least 16 characters"),
    "body_limit": Field(sy.Int(), check=at_least(1)),
    "allow_anonymous": Field(sy.Bool()),
})

STORAGE = Section(StorageSpec, {
    "folder": Field(sy.Str(), check=non_blank),
    "state": Field(sy.Str(), check=non_blank),
})

_STR_OR_LIST = sy.Str() | sy.Seq(sy.Str())
SUBSCRIPTION = sy.Map({
    "event": _STR_OR_LIST, "command": _STR_OR_LIST,
    "type": sy.Enum([t.value for t in SubscriptionType]),
    sy.Optional("name"): sy.Str(), sy.Optional("enabled"): sy.Bool(),
    sy.Optional("debug"): sy.Bool(), sy.Optional("shell"): sy.Bool(),
    sy.Optional("cwd"): sy.Str(), sy.Optional("timeout"): sy.Float(),
    sy.Optional("env"): sy.MapPattern(sy.Str(), sy.Str()),
})
EVENTS_KEYS = sy.Map({
    sy.Optional("enabled"): sy.Bool(),
    sy.Optional("subscriptions"): sy.EmptyList() | sy.Seq(SUBSCRIPTION),
    sy.Optional("max_concurrent"): sy.Int(), sy.Optional("max_waiting"): sy.Int(),
    sy.Optional("shutdown_grace"): sy.Float(),
})
_SYSTEM_ONLY = ("shell", "cwd", "timeout", "env")


def event_problem(name: str) -> str | None:
    """Why `name` cannot be subscribed to, or None (custom names are checked at start)."""
    if catalogue_event(name) or SCRIPT_EVENT_RE.fullmatch(name) or CUSTOM_EVENT_RE.fullmatch(name):
        return None
    return f"unknown event {name!r} ({close(name, known_names())})"


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


def read_events(reader: Reporter, node: sy.YAML, line: int) -> EventsSpec | None:
    if is_blank(node):
        return EventsSpec()
    if not reader.validate(node, EVENTS_KEYS, line, "events"):
        return None
    data = node.data
    before = len(reader.errors)
    for key, low in (("max_concurrent", 1), ("max_waiting", 0)):
        if key in data and data[key] < low:
            reader.error(f"{key} must be at least {low}", key_line(node, key), f"events.{key}")
    if "shutdown_grace" in data and positive(data["shutdown_grace"]):
        reader.error("shutdown_grace must be positive", key_line(node, "shutdown_grace"),
                     "events.shutdown_grace")
    subs = []
    if data.get("subscriptions"):
        seq = node["subscriptions"]
        for i, item in enumerate(seq):
            sub = _subscription(reader, item, seq.as_marked_up().lc.item(i)[0] + 1,
                                f"events.subscriptions[{i}]")
            if sub is not None:
                subs.append(sub)
    if len(reader.errors) > before:
        return None
    extra = {k: data[k] for k in ("enabled", "max_concurrent", "max_waiting", "shutdown_grace")
             if k in data}
    return EventsSpec(subscriptions=tuple(subs), **extra)


def _as_tuple(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _subscription(reader: Reporter, node: sy.YAML, line: int, keypath: str) -> SubscriptionSpec | None:
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
    if "timeout" in data and positive(data["timeout"]):
        reader.error("timeout must be positive", key_line(node, "timeout"), f"{keypath}.timeout")
    if len(reader.errors) > before:
        return None
    opt = {k: data[k] for k in ("name", "enabled", "debug", "shell", "cwd", "timeout")
           if k in data}
    if "env" in data:
        opt["env"] = MappingProxyType(dict(data["env"]))
    return SubscriptionSpec(events, commands, kind, SourceLocation(reader.path, line), **opt)
