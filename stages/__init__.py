"""The built-in stages, registered in an explicit table (no discovery, no entry points).

Each module exposes NAME, PHASES, SCHEMA (its `with:` options) and build(options, stage_id).
config.load_config gets `stage_schemas()` and `stage_phases()` from here, so pipeline/ never
imports stages/.
"""

from __future__ import annotations

from types import ModuleType

import strictyaml as sy

from pipeline.phases import Phase

from . import (
    action_event,
    blocklist,
    firmware_errors,
    gcode_events,
    read_m115,
    rewrite,
    sanitize_temperatures,
    strip_comments,
    tap,
    temperature_offsets,
)

BUILTIN_STAGES: dict[str, ModuleType] = {
    strip_comments.NAME: strip_comments,
    rewrite.NAME: rewrite,
    sanitize_temperatures.NAME: sanitize_temperatures,
    read_m115.NAME: read_m115,
    firmware_errors.NAME: firmware_errors,
    action_event.NAME: action_event,
    temperature_offsets.NAME: temperature_offsets,
    blocklist.NAME: blocklist,
    tap.NAME: tap,
    gcode_events.NAME: gcode_events,
}


def stage_schemas() -> dict[str, sy.Validator]:
    """Each built-in stage's `with:` schema, by name."""
    return {name: module.SCHEMA for name, module in BUILTIN_STAGES.items()}


def stage_phases() -> dict[str, frozenset[Phase]]:
    """The phases each built-in stage may be declared in, by name."""
    return {name: module.PHASES for name, module in BUILTIN_STAGES.items()}
