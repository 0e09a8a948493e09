"""Built-in stage `gcode_events`: fires the G-code events of the catalogue (seed 001) when a
command was really sent to the printer (`comm.protocol.gcode.sent`).

Always installed (appended to the sent phase unless the config declares it itself). It runs
for every sent line, so it is one dict lookup on the G-code word for most lines, plus a `Z`
test on moves. The old values of ZChange and ToolChange come from the host's tracking, which
updates after the sent phase. EStop is not here: the emergency routine fires it (M112 goes out
of band and must not wait for this phase). Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import strictyaml as sy

from pipeline.events.names import Event
from pipeline.gcode import param_value, tool_number
from pipeline.phases import Phase
from stages.options import Comm

NAME = "gcode_events"
PHASES: frozenset[Phase] = frozenset({Phase.GCODE_SENT})
SCHEMA: sy.Validator = sy.Map({})

#: G-code word -> the event it fires, with no payload.
SIMPLE: Mapping[str, Event] = {
    "M80": Event.POWER_ON, "M81": Event.POWER_OFF, "G28": Event.HOME, "G4": Event.DWELL,
    "M0": Event.WAITING, "M1": Event.WAITING, "M226": Event.WAITING,
    "M245": Event.COOLING, "M300": Event.ALERT, "M240": Event.CONVEYOR, "M40": Event.EJECT,
    "M600": Event.FILAMENT_CHANGE, "M701": Event.FILAMENT_CHANGE,
    "M702": Event.FILAMENT_CHANGE,
}


def build(options: Mapping[str, Any], stage_id: str) -> Callable[..., None]:
    simple = dict(SIMPLE)

    def gcode_events(comm: Comm, phase: str, cmd: str, cmd_type: str | None, gcode: str | None,
                     subcode: str | None = None, tags: frozenset[str] | None = None) -> None:
        if gcode == "G1" or gcode == "G0":
            if "Z" in cmd:
                z = param_value(cmd, "Z")
                old = comm.current_z
                if z is not None and z != old:
                    comm.fire_event(Event.Z_CHANGE, {"new": z, "old": old})
            return None
        event = simple.get(gcode) if gcode is not None else None
        if event is not None:
            comm.fire_event(event)
        elif gcode == "T":
            new = tool_number(cmd)
            old = comm.current_tool
            if new is not None and new != old:
                comm.fire_event(Event.TOOL_CHANGE, {"old": old, "new": new})
        return None

    gcode_events.__qualname__ = f"{NAME}[{stage_id}]"
    return gcode_events
