"""Builds the pipeline from config specs: built-in stages from the explicit table handed in
(pipeline/ never imports stages/), OctoPrint-style handlers by import path, with a signature
check at load so a handler that cannot take its phase's arguments fails now, not at the first
command. Errors are ConfigErrors naming the entry's file:line.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from pipeline.config.reader import PipelineSpec, StageKind, StageSpec
from pipeline.errors import ConfigError, ConfigErrors
from pipeline.hooks.chain import BoundStage, Pipeline
from pipeline.phases import Phase

_GCODE_ARGS: tuple[tuple[Any, ...], dict[str, Any]] = (
    (None, "queuing", "G1 X1", None, "G1"), {"subcode": None, "tags": frozenset()})

#: A sample call per phase (the seed's signature) used to check handlers at load time.
SAMPLE_ARGS: dict[Phase, tuple[tuple[Any, ...], dict[str, Any]]] = {
    Phase.GCODE_QUEUING: _GCODE_ARGS,
    Phase.GCODE_QUEUED: _GCODE_ARGS,
    Phase.GCODE_SENDING: _GCODE_ARGS,
    Phase.GCODE_SENT: _GCODE_ARGS,
    Phase.GCODE_SENDING_SD: _GCODE_ARGS,
    Phase.GCODE_RECEIVED: ((None, "ok"), {}),
    Phase.GCODE_ERROR: ((None, "some error"), {}),
    Phase.ATCOMMAND_QUEUING: ((None, "queuing", "pause", ""), {"tags": frozenset()}),
    Phase.ATCOMMAND_SENDING: ((None, "sending", "pause", ""), {"tags": frozenset()}),
    Phase.ACTION: ((None, "// action:x", "x"), {"name": "x", "params": ""}),
    Phase.SCRIPTS: ((None, "gcode", "afterPrintDone"), {}),
    Phase.TEMPERATURES_RECEIVED: ((None, {}), {}),
    Phase.FIRMWARE_INFO: ((None, "Marlin", {}), {}),
    Phase.FIRMWARE_CAPABILITIES: ((None, "AUTOREPORT_TEMP", True, {}), {}),
    Phase.FIRMWARE_CAPABILITY_REPORT: ((None, {}), {}),
    Phase.SERIAL_FACTORY: ((None, "/dev/ttyACM0", 115200, 10.0), {}),
    Phase.SERIAL_ADDITIONAL_PORT_NAMES: (([],), {}),
    Phase.PRINTER_HANDLE_CONNECT: ((), {"port": "/dev/ttyACM0", "baudrate": 115200,
                                        "profile": {}}),
    Phase.PRINTER_ESTIMATION_FACTORY: (("local",), {}),
    Phase.PRINTER_SDCARDUPLOAD: ((None, "a.gcode", "/files/a.gcode", print, print, print), {}),
    Phase.PRINTER_ADDITIONAL_STATE_DATA: ((), {"initial": False}),
    Phase.EVENTS_REGISTER_CUSTOM_EVENTS: ((), {}),
    Phase.FILEMANAGER_EXTENSION_TREE: ((), {}),
    Phase.FILEMANAGER_PREPROCESSOR: (("a.gcode", None), {"links": None,
                                                        "printer_profile": None,
                                                        "allow_overwrite": False}),
    Phase.SYSTEM_ADDITIONAL_COMMANDS: ((), {}),
    Phase.TIMELAPSE_CAPTURE_PRE: (("/tmp/frame-0.jpg",), {}),
    Phase.TIMELAPSE_CAPTURE_POST: (("/tmp/frame-0.jpg", True), {}),
    Phase.TIMELAPSE_EXTENSIONS: ((), {}),
}


def resolve_handler(spec: StageSpec) -> Callable[..., Any]:
    """Import `package.module:function` and check it can take the phase's arguments."""
    module_name, _, attr = spec.target.partition(":")
    path, line = spec.location.path, spec.location.line
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"cannot import handler module {module_name!r}: {exc}", path=path,
                          line=line, key="handler") from exc
    fn: Callable[..., Any] | None = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ConfigError(f"module {module_name!r} has no callable {attr!r}", path=path,
                          line=line, key="handler")
    check_signature(fn, spec)
    return fn


def check_signature(fn: Callable[..., Any], spec: StageSpec) -> None:
    sample = SAMPLE_ARGS.get(spec.phase)
    if sample is None:
        return
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: trust them
    try:
        sig.bind(*sample[0], **sample[1])
    except TypeError as exc:
        raise ConfigError(f"handler {spec.target!r} cannot be called as a {spec.phase.value} "
                          f"hook ({exc}); expected the seed's signature",
                          path=spec.location.path, line=spec.location.line,
                          key="handler") from exc


def build_stage(spec: StageSpec, builtins: Mapping[str, ModuleType]) -> BoundStage:
    if spec.kind is StageKind.BUILTIN:
        module = builtins[spec.target]
        try:
            handler = module.build(spec.options, spec.id)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"stage {spec.target!r} could not be built: {exc}",
                              path=spec.location.path, line=spec.location.line,
                              key="with") from exc
    else:
        handler = resolve_handler(spec)
    return BoundStage(spec.id, spec.phase, handler, kind=spec.kind.value, target=spec.target,
                      order=spec.order)


def build_pipeline(spec: PipelineSpec, builtins: Mapping[str, ModuleType],
                   comm: Any = None) -> Pipeline:
    """Build every enabled stage; collects every problem before raising ConfigErrors."""
    stages: dict[Phase, list[BoundStage]] = {}
    errors: list[ConfigError] = []
    for phase, specs in spec.stages.items():
        for s in specs:
            if not s.enabled:
                continue
            try:
                stages.setdefault(phase, []).append(build_stage(s, builtins))
            except ConfigError as exc:
                errors.append(exc)
    if errors:
        raise ConfigErrors(errors)
    _add_always_on(spec, builtins, stages)
    return Pipeline(stages, comm)


#: Built-in stages every pipeline has unless the config declares them itself (to order or
#: disable them): the catalogue's G-code events are published from the sent phase.
ALWAYS_ON = (("gcode_events", Phase.GCODE_SENT),)


def _add_always_on(spec: PipelineSpec, builtins: Mapping[str, ModuleType],
                   stages: dict[Phase, list[BoundStage]]) -> None:
    for name, phase in ALWAYS_ON:
        module = builtins.get(name)
        if module is None or any(s.target == name for s in spec.for_phase(phase)):
            continue
        handler = module.build({}, name)
        stages.setdefault(phase, []).append(BoundStage(
            name, phase, handler, kind=StageKind.BUILTIN.value, target=name))
