"""How the parts of one configuration document are read: a section of options (each key
validated, range-checked and converted, over a base spec key by key when one is given), the
pipeline's phases and stage entries (each stage's `with:` options against its own schema), and
strictyaml's validation errors turned into ConfigErrors with the line and key path.

`PartReader` is what reader.py's document reader is made of and what the section readers
(sections.py, printers.py) get as their `Reporter`. No trio, no IO, no import of `stages/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
import strictyaml as sy

from pipeline.config import nodes
from pipeline.config.options import Field, Section
from pipeline.config.schema import (
    ENTRY_VALIDATORS,
    HANDLER_RE,
    RETIRED,
    STAGE_ENTRY_KEYS,
    STAGE_ID_RE,
    PipelineSpec,
    SourceLocation,
    StageKind,
    StageSpec,
    freeze_options,
    sort_stages,
)
from pipeline.errors import ConfigError
from pipeline.phases import NOT_PHASES, PHASE_BY_NAME, Phase

_GENERIC_FOUND = {"found arbitrary text", "found an arbitrary integer", "found an arbitrary number"}
_EMPTY_OPTIONS: Mapping[str, Any] = MappingProxyType({})

class PartReader:
    """Reads the parts of one document, collecting ConfigErrors in `errors` (a
    nodes.Reporter)."""

    def __init__(self, path: str, stage_schemas: Mapping[str, sy.Validator],
                 stage_phases: Mapping[str, frozenset[Phase]] | None) -> None:
        self.path = path
        self.stage_schemas = stage_schemas
        self.stage_phases = stage_phases or {}
        self.errors: list[ConfigError] = []

    def error(self, message: str, line: int | None, key: str | None) -> None:
        self.errors.append(ConfigError(message, path=self.path, line=line, key=key))

    # -- strictyaml errors -----------------------------------------------------------------

    def yaml_error(self, exc: sy.YAMLValidationError, line: int | None, key: str | None,
                   *, synthetic: bool = False, where: str = "") -> None:
        """Convert a validation error; unless `synthetic`, locate it through its pointer."""
        found = None
        if not synthetic:
            line, key, found = _locate(exc, line, key)
        context = exc.context or ""
        problem = exc.problem or ""
        if context.startswith("when expecting "):
            if problem in _GENERIC_FOUND and found is not None:
                problem = f"found {found!r}"
            message = f"expected {context[len('when expecting '):]}, {problem}"
        else:
            message = problem.replace("unexpected key not in schema", "unknown key")
        self.error(f"{message} {where}" if where else message, line, key)

    def validate(self, node: sy.YAML, validator: sy.Validator, line: int, key: str,
                 where: str = "") -> bool:
        try:
            node.revalidate(validator)
        except sy.YAMLValidationError as exc:
            self.yaml_error(exc, line, key, where=where)
            return False
        return True

    # -- document and sections -------------------------------------------------------------

    def section(self, section: Section, node: sy.YAML, line: int, keypath: str,
                base: Any = None) -> Any:
        """`node` read into section.spec; the keys it gives replace those of `base` (a spec of
        the same section, key by key down its subsections) or of the defaults."""
        if nodes.is_blank(node):
            return section.spec() if base is None else base
        if not node.is_mapping():
            self.error(f"{keypath} must be a mapping of settings", line, keypath)
            return None
        before = len(self.errors)
        kwargs: dict[str, Any] = {}
        for key in node.as_marked_up():
            key_line = nodes.key_line(node, key)
            where = f"{keypath}.{key}"
            field = section.fields.get(key)
            if field is None and where in RETIRED:
                self.error(RETIRED[where], key_line, where)
            elif field is None:
                hint = nodes.close(key, list(section.fields))
                self.error(f"unknown key {key!r} in {keypath} ({hint})", key_line, where)
            elif isinstance(field, Section):
                kwargs[key] = self.section(field, node[key], key_line, where,
                                           None if base is None else getattr(base, key))
            else:
                kwargs[key] = self.field(field, node[key], key_line, where)
        if len(self.errors) > before:
            return None
        return section.spec(**kwargs) if base is None else attrs.evolve(base, **kwargs)

    def field(self, field: Field, node: sy.YAML, line: int, keypath: str) -> Any:
        if not self.validate(node, field.validator, line, keypath):
            return None
        value = node.data
        if field.item_check is not None and value:
            seq = node.as_marked_up()
            for i, item in enumerate(value):
                problem = field.item_check(item)
                if problem:
                    self.error(problem, seq.lc.item(i)[0] + 1, f"{keypath}[{i}]")
        if field.check is not None:
            problem = field.check(value)
            if problem:
                self.error(f"{keypath.rsplit('.', 1)[-1]} {problem}", line, keypath)
        return field.convert(value) if field.convert is not None else value

    # -- pipeline --------------------------------------------------------------------------

    def pipeline(self, node: sy.YAML, line: int, where: str = "pipeline") -> PipelineSpec | None:
        if nodes.is_blank(node):
            return PipelineSpec()
        if not node.is_mapping():
            self.error("pipeline must map phase names to lists of stages", line, where)
            return None
        stages: dict[Phase, tuple[StageSpec, ...]] = {}
        seen: dict[Phase, int] = {}
        for name in node.as_marked_up():
            key_line = nodes.key_line(node, name)
            keypath = f"{where}.{name}"
            phase = self.phase(name, key_line, keypath)
            if phase is None:
                continue
            if phase in seen:
                self.error(f"phase {phase.value} is declared twice (first on line {seen[phase]})",
                           key_line, keypath)
                continue
            seen[phase] = key_line
            entries = node[name]
            if nodes.is_blank(entries):
                continue
            if not entries.is_sequence():
                self.error(f"{phase.value} needs a list of stage entries (`- stage: ...`)",
                           key_line, keypath)
                continue
            specs = self.entries(phase, entries, keypath)
            if specs:
                stages[phase] = sort_stages(specs)
        return PipelineSpec(MappingProxyType(stages))

    def phase(self, name: str, line: int, keypath: str) -> Phase | None:
        short = name[len("octoprint."):] if name.startswith("octoprint.") else name
        phase = PHASE_BY_NAME.get(short)
        if phase is not None:
            return phase
        if short in NOT_PHASES:
            self.error(f"{short} is not a printpipe phase: {NOT_PHASES[short]}", line, keypath)
        else:
            self.error(f"unknown phase {short!r} ({nodes.close(short, list(PHASE_BY_NAME))})",
                       line, keypath)
        return None

    def entries(self, phase: Phase, node: sy.YAML, keypath: str) -> list[StageSpec]:
        specs: list[StageSpec] = []
        first_line: dict[str, int] = {}
        seq = node.as_marked_up()
        for i in range(len(seq)):
            line = seq.lc.item(i)[0] + 1
            spec = self.entry(phase, node[i], line, f"{keypath}[{i}]")
            if spec is None:
                continue
            if spec.id in first_line:
                self.error(f"duplicate stage id {spec.id!r} in {phase.value} (first on line "
                           f"{first_line[spec.id]}); give one of them another `id:`",
                           line, f"{keypath}[{i}].id")
                continue
            first_line[spec.id] = line
            specs.append(spec)
        return specs

    def entry(self, phase: Phase, node: sy.YAML, line: int, keypath: str) -> StageSpec | None:
        if not node.is_mapping():
            self.error("a stage entry must be a mapping with `stage:` or `handler:`", line, keypath)
            return None
        before = len(self.errors)
        raw: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key in node.as_marked_up():
            lines[key] = key_line = nodes.key_line(node, key)
            where = f"{keypath}.{key}"
            if key not in STAGE_ENTRY_KEYS:
                hint = nodes.close(key, STAGE_ENTRY_KEYS)
                self.error(f"unknown key {key!r} in a stage entry ({hint})", key_line, where)
            elif key == "with":
                raw[key] = node[key]
            elif self.validate(node[key], ENTRY_VALIDATORS[key], key_line, where):
                raw[key] = node[key].data

        if ("stage" in lines) == ("handler" in lines):
            self.error("a stage entry needs exactly one of `stage:` (a built-in) or "
                       "`handler:` (\"package.module:function\")", line, keypath)
            return None
        kind = StageKind.BUILTIN if "stage" in lines else StageKind.HANDLER
        target: str | None = raw.get(kind.value)
        options: Mapping[str, Any] = _EMPTY_OPTIONS
        options_location = None
        if "with" in lines:
            options_location = SourceLocation(self.path, lines["with"])
        if target is None:
            pass  # its type error is already reported
        elif kind is StageKind.HANDLER:
            if not HANDLER_RE.fullmatch(target):
                self.error(f"handler must look like \"package.module:function\", not {target!r}",
                           lines["handler"], f"{keypath}.handler")
            if "with" in lines:
                self.error("`with:` options are only for built-in stages (a handler gets none)",
                           lines["with"], f"{keypath}.with")
        elif target not in self.stage_schemas:
            known = ", ".join(sorted(self.stage_schemas)) or "none"
            self.error(f"unknown built-in stage {target!r} (known stages: {known})",
                       lines["stage"], f"{keypath}.stage")
        else:
            supported = self.stage_phases.get(target)
            if supported is not None and phase not in supported:
                names = ", ".join(sorted(p.value for p in supported))
                self.error(f"stage {target!r} cannot run in {phase.value} (it runs in: {names})",
                           lines["stage"], f"{keypath}.stage")
            options = self.options(target, raw.get("with"), lines.get("with", line),
                                   f"{keypath}.with")

        stage_id: str | None = raw.get("id")
        if stage_id is None and target is not None:
            stage_id = target.rsplit(":", 1)[-1]
        elif stage_id is not None and not STAGE_ID_RE.fullmatch(stage_id):
            self.error(f"stage id {stage_id!r} may only use letters, digits, '_', '-', '.', ':'",
                       lines["id"], f"{keypath}.id")
        if len(self.errors) > before or target is None or stage_id is None:
            return None  # what is missing was reported with its line
        return StageSpec(
            phase=phase, kind=kind, target=target, id=stage_id, order=raw.get("order"),
            enabled=raw.get("enabled", True), options=options,
            location=SourceLocation(self.path, line), options_location=options_location)

    def options(self, name: str, node: sy.YAML | None, line: int,
                keypath: str) -> Mapping[str, Any]:
        schema = self.stage_schemas[name]
        where = f"(options of stage {name!r})"
        if node is not None and not nodes.is_blank(node):
            if not self.validate(node, schema, line, keypath, where):
                return _EMPTY_OPTIONS
            return freeze_options(node.data)
        try:  # no options given: an empty map still reports required ones, fills defaults
            data = sy.dirty_load("{}", schema, label=self.path, allow_flow_style=True).data
        except sy.YAMLValidationError as exc:
            self.yaml_error(exc, line, keypath, synthetic=True, where=where)
            return _EMPTY_OPTIONS
        return freeze_options(data)


def _locate(exc: sy.YAMLValidationError, line: int | None,
            key: str | None) -> tuple[int | None, str | None, str | None]:
    """(line, key path, offending scalar text) of a validation error.

    strictyaml's problem_mark counts trailing comment lines into the failing node, so walk the
    error's pointer through the parsed document and read ruamel's exact key/item positions
    instead. Falls back to problem_mark (then to the caller's line) if that is not possible.
    """
    try:
        chunk = exc._chunk  # strictyaml 1.7.3 internals (pinned); guarded by the fallback
        node = chunk._ruamelparsed
        parts: list[str] = []
        found_line = None
        for kind, index in chunk._pointer._indices:
            if kind in ("val", "key"):
                name = index[0]
                found_line = node.lc.key(name)[0] + 1
                parts.append(f".{name}" if parts else name)
                node = node[name] if kind == "val" else name
            elif kind == "index":
                found_line = node.lc.item(index)[0] + 1
                parts.append(f"[{index}]")
                node = node[index]
            else:
                break
        found = node if isinstance(node, str) else None
        if found_line is None:
            return line, key, found
        return found_line, "".join(parts), found
    except (AttributeError, KeyError, IndexError, TypeError):
        mark = getattr(exc, "problem_mark", None)
        return (mark.line + 1 if mark is not None else line), key, None
