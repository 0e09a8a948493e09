"""Several printers in one configuration: the `printers:` section and the drop-in files of
`printers.d/`, read into a `ServiceConfig` that holds one complete `HostConfig` per printer.

A printer's entry holds what `printer:` holds (port, baudrate, profile) and its own sections:
`serial`, `virtual`, `storage`, `webcam` and `timelapse` merge key by key over the top-level
ones; `pipeline`,
`scripts` and `events` replace the top-level ones whole; `http: port:` and `mqtt: base_topic:`
are its own. With several printers each keeps its state in `<storage.state>/<name>` (but the
printer of a `printer:` section, which keeps the folder it had alone) and publishes under
`<mqtt.base_topic><name>/`. Then the checks between printers: no two share a port, an HTTP port
(or the main one), a state folder or an MQTT base topic; each such error names both.

Reads through the document reader's narrow interface (`EntryReader`); reader.py walks the
files. No trio, no IO.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

import attrs
import strictyaml as sy

from pipeline.config import nodes
from pipeline.config.camera import TimelapseSpec, WebcamSpec
from pipeline.config.mqtt import MqttSpec
from pipeline.config.options import Section, option, optional_integer, options
from pipeline.config.schema import (
    SECTIONS,
    PipelineSpec,
    PrinterSpec,
    ScriptsSpec,
    SerialSpec,
    SourceLocation,
    VirtualSpec,
)
from pipeline.config.sections import (
    STORAGE,
    EventsSpec,
    HostConfig,
    HttpSpec,
    StorageSpec,
    read_events,
)
from pipeline.errors import ConfigError

#: A printer's name: it names its drop-in file, its state folder, its MQTT topics and its URL.
NAME_RE = re.compile(r"[a-z0-9-]{1,32}")
#: The folder of drop-in files beside the main config file, one printer per NAME.yaml.
DROPIN_FOLDER = "printers.d"
#: The name of the printer of a `printer:` section (or of a config that names none).
DEFAULT = "default"


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a printer, or None."""
    if NAME_RE.fullmatch(name):
        return None
    return (f"printer name {name!r} must be 1 to 32 characters of a-z, 0-9 and '-' (it names "
            "the printer's files, topics and URL)")


def _own_port(value: int | None) -> str | None:
    return None if value is None or 0 <= value <= 65535 else "must be 0..65535"


@attrs.frozen
class PrinterHttpSpec:
    """`http:` under a printer: its own OctoPrint-compatible port (the main http section's
    host, key and limits apply). 0 picks a free port (for tests)."""

    port: int | None = optional_integer(_own_port)


@attrs.frozen
class PrinterMqttSpec:
    """`mqtt:` under a printer: its base topic (the connection is the top-level mqtt's)."""

    base_topic: str | None = option(None, sy.Str(), check=options(MqttSpec)["base_topic"].check)


_PRINTER = SECTIONS["printer"]
#: The camera sections: top-level defaults a printer's entry overrides key by key.
CAMERA = {"webcam": Section.of(WebcamSpec), "timelapse": Section.of(TimelapseSpec)}
_MERGED = {"serial": SECTIONS["serial"], "virtual": SECTIONS["virtual"], "storage": STORAGE,
           **CAMERA}
_OWN = {"scripts": SECTIONS["scripts"], "http": Section.of(PrinterHttpSpec),
        "mqtt": Section.of(PrinterMqttSpec)}
#: The keys of a printer's entry.
ENTRY_KEYS = (*_PRINTER.fields, "serial", "virtual", "pipeline", "scripts", "events", "storage",
              "http", "mqtt", "webcam", "timelapse")
#: The nested keys whose lines the checks between printers point at.
_CHECKED = ("http.port", "storage.state", "mqtt.base_topic")


class EntryReader(nodes.Reporter, Protocol):
    """What reading a printer's entry needs of the document reader."""

    def section(self, section: Section, node: sy.YAML, line: int, keypath: str,
                base: Any = None) -> Any: ...

    def pipeline(self, node: sy.YAML, line: int, where: str = "pipeline") -> PipelineSpec | None:
        ...


@attrs.frozen
class Shared:
    """The top-level sections: what every printer that does not give its own gets."""

    serial: SerialSpec
    virtual: VirtualSpec
    pipeline: PipelineSpec
    scripts: ScriptsSpec
    events: EventsSpec
    http: HttpSpec
    storage: StorageSpec
    mqtt: MqttSpec | None
    webcam: WebcamSpec = WebcamSpec()
    timelapse: TimelapseSpec = TimelapseSpec()

    @classmethod
    def of(cls, sections: Mapping[str, Any]) -> Shared:
        """The top-level sections read (by name), with the defaults of those not given."""
        return cls(sections.get("serial") or SerialSpec(), sections.get("virtual") or VirtualSpec(),
                   sections.get("pipeline") or PipelineSpec(),
                   sections.get("scripts") or ScriptsSpec(), sections.get("events") or EventsSpec(),
                   sections.get("http") or HttpSpec(), sections.get("storage") or StorageSpec(),
                   sections.get("mqtt"), sections.get("webcam") or WebcamSpec(),
                   sections.get("timelapse") or TimelapseSpec())


@attrs.frozen
class Entry:
    """One printer as its entry declares it, before the shared sections are applied."""

    name: str
    where: SourceLocation            # its name's line (line 1 of a drop-in file)
    prefix: str                      # its keys' path: "printers.NAME." or "" in a drop-in
    printer: PrinterSpec
    own: Mapping[str, Any]           # its own sections (serial, virtual, storage merged)
    lines: Mapping[str, SourceLocation]  # port, http.port, storage.state, mqtt.base_topic
    keeps_state: bool = False        # a `printer:` section's: keeps the shared state folder


def read_entry(reader: EntryReader, name: str, node: sy.YAML, where: SourceLocation,
               prefix: str, shared: Shared) -> Entry | None:
    """One printer's entry (a mapping, or blank for all defaults); None after errors."""
    if not nodes.is_blank(node) and not node.is_mapping():
        what = f"{prefix[:-1]} must be" if prefix else "a printer file must hold"
        reader.error(f"{what} a mapping of the printer's settings ({', '.join(ENTRY_KEYS)})",
                     where.line, prefix[:-1] or None)
        return None
    before = len(reader.errors)
    printer: dict[str, Any] = {}
    own: dict[str, Any] = {}
    lines: dict[str, SourceLocation] = {}
    for key in [] if nodes.is_blank(node) else node.as_marked_up():
        line, value, keypath = nodes.key_line(node, key), node[key], prefix + key
        field = _PRINTER.fields.get(key)
        if isinstance(field, Section):
            printer[key] = reader.section(field, value, line, keypath)
        elif field is not None:
            printer[key] = reader.field(field, value, line, keypath)
        elif key in _MERGED:
            own[key] = reader.section(_MERGED[key], value, line, keypath, getattr(shared, key))
        elif key in _OWN:
            own[key] = reader.section(_OWN[key], value, line, keypath)
        elif key == "pipeline":
            own[key] = reader.pipeline(value, line, keypath)
        elif key == "events":
            own[key] = read_events(reader, value, line, keypath)
        else:
            hint = ("the settings of `printer:` go straight under the printer's name"
                    if key == "printer" else nodes.close(key, ENTRY_KEYS))
            reader.error(f"unknown key {key!r} in printer {name!r} ({hint})", line, keypath)
            continue
        lines[key] = SourceLocation(reader.path, line)
        if key == "mqtt" and shared.mqtt is None:
            reader.error("a printer's mqtt: sets its base topic; the broker is the top-level "
                         "mqtt: section, which this config does not have", line, keypath)
        if value.is_mapping():
            for sub in value.as_marked_up():
                if f"{key}.{sub}" in _CHECKED:
                    lines[f"{key}.{sub}"] = SourceLocation(reader.path,
                                                           nodes.key_line(value, sub))
    if len(reader.errors) > before:
        return None
    return Entry(name, where, prefix, PrinterSpec(**printer), MappingProxyType(own),
                 MappingProxyType(lines))


def single_entry(printer: PrinterSpec, where: SourceLocation,
                 port_at: SourceLocation | None = None) -> Entry:
    """The printer of a `printer:` section (or the built-in one of a config naming none)."""
    return Entry(DEFAULT, where, "printer.", printer, MappingProxyType({}),
                 MappingProxyType({"port": port_at or where}), keeps_state=True)


@attrs.frozen
class ServiceConfig:
    """The whole configuration of a service: its printers, each a complete HostConfig (in the
    order written: the main file's, then the drop-ins' by name), and what they share."""

    path: str
    printers: Mapping[str, HostConfig] = attrs.field(hash=False)
    #: The main HTTP port's settings (host, key and limits apply to the printers' ports too).
    http: HttpSpec
    #: The MQTT connection, when the config has an `mqtt:` section.
    mqtt: MqttSpec | None
    #: The top-level storage: the service's own state (keys.json, uuid) and the shared files.
    storage: StorageSpec
    #: Where each printer is declared (its name's line, or line 1 of its drop-in file).
    origins: Mapping[str, SourceLocation] = attrs.field(hash=False)

    @property
    def default(self) -> str | None:
        """The printer `/api/...` without a prefix serves: `default`, else the only one."""
        if DEFAULT in self.printers:
            return DEFAULT
        return next(iter(self.printers)) if len(self.printers) == 1 else None


def assemble(path: str, entries: list[Entry], shared: Shared,
             http_at: SourceLocation | None) -> tuple[ServiceConfig, list[ConfigError]]:
    """The service config of `entries` over `shared`, and every conflict between printers
    (`http_at`: where the main http.port is set, if it is)."""
    several = len(entries) > 1
    configs = {e.name: _host_config(path, e, shared, several) for e in entries}
    service = ServiceConfig(path, MappingProxyType(configs), shared.http, shared.mqtt,
                            shared.storage, MappingProxyType({e.name: e.where for e in entries}))
    main = f"set at {http_at}" if http_at else "the default"
    return service, _conflicts(entries, configs, shared.http.port, main)


def _host_config(path: str, entry: Entry, shared: Shared, several: bool) -> HostConfig:
    own = entry.own
    storage: StorageSpec = own.get("storage", shared.storage)
    if several and not entry.keeps_state and "storage.state" not in entry.lines:
        storage = attrs.evolve(storage, state=f"{shared.storage.state.rstrip('/')}/{entry.name}")
    http = own.get("http")
    mqtt_base = None
    if shared.mqtt is not None:
        mqtt_base = own["mqtt"].base_topic if "mqtt" in own else None
        mqtt_base = mqtt_base or shared.mqtt.base_topic + (f"{entry.name}/" if several else "")
    return HostConfig(path, entry.printer, own.get("serial", shared.serial),
                      own.get("virtual", shared.virtual), own.get("pipeline", shared.pipeline),
                      own.get("scripts", shared.scripts), own.get("events", shared.events),
                      shared.http, storage, shared.mqtt, name=entry.name,
                      http_port=None if http is None else http.port, mqtt_base=mqtt_base,
                      webcam=own.get("webcam", shared.webcam),
                      timelapse=own.get("timelapse", shared.timelapse))


def _folder(path: str) -> str:
    """A folder as written, compared: repeated and trailing slashes and ./ parts dropped."""
    return re.sub(r"/(?:\./)+|//+", "/", path + "/").rstrip("/") or "/"


def _conflicts(entries: list[Entry], configs: Mapping[str, HostConfig], main_port: int,
               main: str) -> list[ConfigError]:
    problems: list[ConfigError] = []
    first: dict[tuple[str, Any], tuple[str, SourceLocation]] = {}
    for entry in entries:
        config = configs[entry.name]
        own_port = config.http_port
        port = config.printer.port
        checks = [("port", "port", None if port == "virtual" else port),
                  ("HTTP port", "http.port", own_port or None),
                  ("state folder", "storage.state", _folder(config.storage.state)),
                  ("MQTT base topic", "mqtt.base_topic", config.mqtt_base)]
        for what, key, value in checks:
            if value is None:
                continue
            at = entry.lines.get(key, entry.where)
            other, other_at = first.setdefault((what, value), (entry.name, at))
            if other != entry.name:
                hint = ("; give each printer its /dev/serial/by-id/ name" if key == "port" else "")
                problems.append(ConfigError(
                    f"printers {other!r} and {entry.name!r} have the same {what} {value} "
                    f"({other!r} at {other_at}){hint}",
                    path=at.path, line=at.line, key=entry.prefix + key))
        if own_port and own_port == main_port:
            at = entry.lines.get("http.port", entry.where)
            problems.append(ConfigError(
                f"printer {entry.name!r}: its http.port {own_port} is the main http.port ({main}): "
                "give it another port, or none",
                path=at.path, line=at.line, key=entry.prefix + "http.port"))
    return problems
