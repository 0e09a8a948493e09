"""YAML configuration text -> frozen HostConfig (one printer) or ServiceConfig (its printers),
with every problem reported as a ConfigError that names the file, the 1-based line and the key.

The document is parsed once with strictyaml (structure only), then walked section by section
with the key tables of schema.py (parts.py reads each section and the pipeline; printers.py
each printer of `printers:` and of the printers.d drop-in files); each key, each pipeline entry
and each stage's `with:` options are validated on their own, so one pass reports as many
problems as it can. No raw YAML leaves this module. No trio, no IO (except the small file
helpers: `read_text`, `read_dropins`), and no import of `stages/`: built-in stage schemas and
phases are passed in by the caller.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import strictyaml as sy
from strictyaml import exceptions as sy_exc
from strictyaml.ruamel.error import MarkedYAMLError

from pipeline.config import nodes, printers
from pipeline.config.options import GCODE_WORD_RE
from pipeline.config.parts import PartReader
from pipeline.config.printers import ServiceConfig
from pipeline.config.schema import (  # the spec names are part of this module's API
    SECTIONS,
    TOP_LEVEL_KEYS,
    ChecksumMode,
    ErrorHandling,
    FaultSpec,
    MaxTimeoutsSpec,
    PipelineSpec,
    PrinterSpec,
    ProfileSpec,
    ResendWithoutOk,
    SerialSpec,
    SourceLocation,
    StageKind,
    StageSpec,
    TimeoutSpec,
    VirtualSpec,
    VolumeSpec,
)
from pipeline.config.sections import (
    HTTP,
    MQTT,
    STORAGE,
    HostConfig,
    read_events,
)
from pipeline.errors import ConfigError, ConfigErrors
from pipeline.gcode import split_lines
from pipeline.phases import Phase

__all__ = [
    "GCODE_WORD_RE",
    "ChecksumMode",
    "ErrorHandling",
    "FaultSpec",
    "HostConfig",
    "MaxTimeoutsSpec",
    "PipelineSpec",
    "PrinterSpec",
    "ProfileSpec",
    "ResendWithoutOk",
    "SerialSpec",
    "ServiceConfig",
    "SourceLocation",
    "StageKind",
    "StageSpec",
    "TimeoutSpec",
    "VirtualSpec",
    "VolumeSpec",
    "default_config",
    "load_config",
    "load_config_file",
    "load_service_config",
    "load_service_config_file",
    "single_printer",
]

_SERVICE_SECTIONS = {"http": HTTP, "storage": STORAGE, "mqtt": MQTT, **printers.CAMERA}


def load_service_config(text: str, path: str = "<config>", *,
                        stage_schemas: Mapping[str, sy.Validator],
                        stage_phases: Mapping[str, frozenset[Phase]] | None = None,
                        dropins: Mapping[str, str] | None = None) -> ServiceConfig:
    """Parse and validate a whole configuration document and its drop-in files (`dropins`:
    the path of each printers.d/NAME.yaml -> its text, in the order to read them).

    Raises ConfigErrors (always that type, holding one ConfigError per problem found, each
    naming the file it is in).
    """
    reader = _Reader(path, stage_schemas, stage_phases)
    config = reader.read(text, dropins or {})
    if reader.errors:
        raise ConfigErrors(reader.errors)
    assert config is not None
    return config


def load_service_config_file(path: str, *, stage_schemas: Mapping[str, sy.Validator],
                             stage_phases: Mapping[str, frozenset[Phase]] | None = None
                             ) -> ServiceConfig:
    """Read `path` and the drop-in files of the printers.d folder beside it (NAME.yaml, in
    name order; other files are ignored), and load them."""
    text = read_text(path)
    return load_service_config(text, path, stage_schemas=stage_schemas,
                               stage_phases=stage_phases, dropins=read_dropins(path))


def single_printer(config: ServiceConfig) -> HostConfig:
    """The one printer of `config`; a ConfigErrors when it has several."""
    if len(config.printers) == 1:
        return next(iter(config.printers.values()))
    where = list(config.origins.values())[1]
    names = ", ".join(config.printers)
    raise ConfigErrors([ConfigError(
        f"the configuration has several printers ({names}) and this command drives one",
        path=where.path, line=where.line)])


def load_config(text: str, path: str = "<config>", *,
                stage_schemas: Mapping[str, sy.Validator],
                stage_phases: Mapping[str, frozenset[Phase]] | None = None) -> HostConfig:
    """Parse and validate a configuration document of one printer (a `printer:` section, or
    `printers:` naming one); no drop-in files are read.

    Raises ConfigErrors (always that type, holding one ConfigError per problem found).
    """
    return single_printer(load_service_config(text, path, stage_schemas=stage_schemas,
                                              stage_phases=stage_phases))


def load_config_file(path: str, *, stage_schemas: Mapping[str, sy.Validator],
                     stage_phases: Mapping[str, frozenset[Phase]] | None = None) -> HostConfig:
    """Read `path` (UTF-8) and load it; an unreadable file is a ConfigErrors too."""
    return load_config(read_text(path), path, stage_schemas=stage_schemas,
                       stage_phases=stage_phases)


def read_text(path: str) -> str:
    """The UTF-8 text of a config file; a ConfigErrors naming it when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        raise ConfigErrors([ConfigError(f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} "
                                        "cannot be decoded", path=path, line=line)]) from exc
    except OSError as exc:
        raise ConfigErrors([ConfigError(f"cannot read the configuration: "
                                        f"{exc.strerror or exc}", path=path)]) from exc


def dropin_folder(path: str) -> pathlib.Path:
    """The printers.d folder beside the config file `path`."""
    return pathlib.Path(path).parent / printers.DROPIN_FOLDER


def read_dropins(path: str) -> dict[str, str]:
    """The drop-in files beside the config file `path`: each printers.d/*.yaml's path -> its
    text, by name (hidden files and other names are left alone; no folder, none)."""
    folder = dropin_folder(path)
    try:
        found = sorted(p for p in folder.iterdir()
                       if p.name.endswith(".yaml") and not p.name.startswith(".") and p.is_file())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigErrors([ConfigError(f"cannot read the printers folder: "
                                        f"{exc.strerror or exc}", path=str(folder))]) from exc
    texts: dict[str, str] = {}
    problems: list[ConfigError] = []
    for file in found:
        try:
            texts[str(file)] = read_text(str(file))
        except ConfigErrors as exc:
            problems.extend(exc.errors)
    if problems:
        raise ConfigErrors(problems)
    return texts


def default_config(stage_schemas: Mapping[str, sy.Validator] | None = None) -> HostConfig:
    """The configuration of an empty document."""
    return load_config("", "<defaults>", stage_schemas=stage_schemas or {})


_DISALLOWED = {
    sy_exc.FlowMappingDisallowed: "flow style ([...] or {...}) is not allowed: write a list as "
    "`- item` lines, a map as `key: value` lines, and an empty list as an empty value",
    sy_exc.AnchorTokenDisallowed: "anchors and aliases (&name, *name) are not allowed",
    sy_exc.TagTokenDisallowed: "type tags (!!int, !!str) are not allowed",
}


def _syntax_message(exc: MarkedYAMLError) -> str:
    problem = str(exc.problem or "not valid YAML")
    if isinstance(exc, sy_exc.DuplicateKeysDisallowed):
        return problem.replace("Duplicate key", "duplicate key").replace(" found", "")
    fixed = _DISALLOWED.get(type(exc))
    return fixed or (f"{exc.context}: {problem}" if exc.context else problem)


def _is_blank_document(text: str) -> bool:
    return all(not s or s.startswith("#") or s in ("---", "...")
               for s in (line.strip() for line in split_lines(text)))


class _Reader(PartReader):
    """One pass over one document (and its drop-in files); collects ConfigErrors in `errors`."""

    def document(self, text: str, what: str) -> sy.YAML | None:
        """The parsed document: a mapping, or blank (nodes.is_blank); None after errors
        (`what` says what a document that is no mapping must be)."""
        bad = nodes.bad_characters(text)
        for line, message in bad:  # the parser would raise without a line (and strictyaml
            self.error(message, line, None)  # 1.7.3 then fails on the error itself)
        if bad:
            return None
        try:
            doc = sy.load(text, sy.Any(), label=self.path)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.error(_syntax_message(exc), mark.line + 1 if mark else None, None)
            return None
        for line, key, message in nodes.escaped_controls(doc.as_marked_up()):
            self.error(message, line, key)
        if self.errors:
            return None
        if doc.is_mapping():
            return doc
        if doc.is_scalar() and _is_blank_document(text):
            return sy.load("", sy.Any(), label=self.path)
        self.error(what + ("" if doc.is_scalar() else ", not a list"), 1, None)
        return None

    def read(self, text: str, dropins: Mapping[str, str]) -> ServiceConfig | None:
        """The main document and the drop-in files (path -> text) as a ServiceConfig."""
        doc = self.document(text, "the configuration must be a mapping of sections ("
                            + ", ".join(TOP_LEVEL_KEYS) + ")")
        if doc is None:
            return None
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for name in [] if nodes.is_blank(doc) else doc.as_marked_up():
            lines[name] = line = nodes.key_line(doc, name)
            if name not in TOP_LEVEL_KEYS:
                self.error(f"unknown section {name!r} ({nodes.close(name, TOP_LEVEL_KEYS)})",
                           line, name)
            elif name == "pipeline":
                values[name] = self.pipeline(doc[name], line)
            elif name == "events":
                values[name] = read_events(self, doc[name], line)
            elif name != "printers":
                table = _SERVICE_SECTIONS.get(name) or SECTIONS[name]
                values[name] = self.section(table, doc[name], line, name)
        if self.errors:
            return None
        shared = printers.Shared.of(values)
        entries = self.all_printers(doc, lines, values.get("printer"), shared, dropins)
        if self.errors:
            return None
        http = doc["http"] if "http" in lines and doc["http"].is_mapping() else None
        http_at = (SourceLocation(self.path, nodes.key_line(http, "port"))
                   if http is not None and "port" in http.data else None)
        service, conflicts = printers.assemble(self.path, entries, shared, http_at)
        self.errors.extend(conflicts)
        return service

    def all_printers(self, doc: sy.YAML, lines: Mapping[str, int], printer: PrinterSpec | None,
                shared: printers.Shared, dropins: Mapping[str, str]) -> list[printers.Entry]:
        """The printers: a `printer:` section's, the `printers:` section's, the drop-ins'."""
        found: list[printers.Entry] = []
        if "printer" in lines and "printers" in lines:
            first, second = sorted(("printer", "printers"), key=lines.__getitem__)
            self.error(f"both printer: and printers: are given ({first}: on line {lines[first]})"
                       ": put the one printer's settings under printers: by its name, or use "
                       "printer: alone", lines[second], second)
            return found
        if "printer" in lines:
            node = doc["printer"]
            port_at = (SourceLocation(self.path, nodes.key_line(node, "port"))
                       if node.is_mapping() and "port" in node.data else None)
            found.append(printers.single_entry(printer or PrinterSpec(),
                                               SourceLocation(self.path, lines["printer"]),
                                               port_at))
        elif "printers" in lines:
            found.extend(self.printers_section(doc["printers"], lines["printers"], shared))
        for path, text in dropins.items():
            entry = self.dropin(path, text, shared)
            if entry is None:
                continue
            same = next((e for e in found if e.name == entry.name), None)
            if same is not None:
                self.error(f"printer {entry.name!r} is declared twice: at {same.where} and by "
                           f"the file {path}", same.where.line, same.prefix[:-1])
                continue
            found.append(entry)
        if found or self.errors:
            return found
        if "printers" not in lines:  # a config naming no printer: the built-in one
            found.append(printers.single_entry(PrinterSpec(), SourceLocation(self.path, 1)))
        else:
            self.error(f"printers: names no printer (give each by its name under it, or in "
                       f"{printers.DROPIN_FOLDER}/NAME.yaml)", lines["printers"], "printers")
        return found

    def printers_section(self, node: sy.YAML, line: int,
                 shared: printers.Shared) -> list[printers.Entry]:
        if nodes.is_blank(node):
            return []
        if not node.is_mapping():
            self.error("printers must map printer names to their settings", line, "printers")
            return []
        found = []
        for name in node.as_marked_up():
            key_line = nodes.key_line(node, name)
            problem = printers.name_problem(name)
            if problem:
                self.error(problem, key_line, f"printers.{name}")
                continue
            entry = printers.read_entry(self, name, node[name],
                                        SourceLocation(self.path, key_line),
                                        f"printers.{name}.", shared)
            if entry is not None:
                found.append(entry)
        return found

    def dropin(self, path: str, text: str, shared: printers.Shared) -> printers.Entry | None:
        """One drop-in file: its errors name it; its printer is named after it."""
        reader = _Reader(path, self.stage_schemas, self.stage_phases)
        file_name = path.replace("\\", "/").rsplit("/", 1)[-1]
        name = file_name.removesuffix(".yaml")
        problem = printers.name_problem(name)
        entry = None
        if problem:
            reader.error(f"{problem}: the file must be called NAME.yaml", None, None)
        else:
            doc = reader.document(text, "a printer file must hold a mapping of the printer's "
                                  "settings (" + ", ".join(printers.ENTRY_KEYS) + ")")
            if doc is not None:
                entry = printers.read_entry(reader, name, doc, SourceLocation(path, 1), "",
                                            shared)
        self.errors.extend(reader.errors)
        return entry
