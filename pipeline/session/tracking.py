"""Host-side printer state tracked from what is sent and received: the current tool (its
one owner), targets, temperatures, position (x/y/z/e from M114, f from commands), fan speed,
relative modes, whether the printer autoreports temperatures, and the tools the firmware
called invalid.

The session calls `sent` only for the G-code words in `tracked` (one set lookup per line on
the hot path). Pure: no IO, no trio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipeline.config.schema import ProfileSpec
from pipeline.gcode import Command, param_value, tool_number
from pipeline.protocol.replies import Position, Reading, canonical_tools

Temp = list[Any]  # [actual, target]


class Tracker:
    def __init__(self, profile: ProfileSpec, capabilities: Mapping[str, bool]) -> None:
        self.profile = profile
        self.capabilities = capabilities  # the firmware's, as the engine keeps them
        self.tool = 0
        self.previous_tool: int | None = None
        self.invalid_tools: set[int] = set()
        self.tools: dict[int, Temp] = {}
        self.bed: Temp = [None, None]
        self.chamber: Temp = [None, None]
        self.custom: dict[str, Temp] = {}
        self.position: dict[str, float | None] = dict.fromkeys("xyzef")
        self.z: float | None = None
        self.feedrate: float | None = None
        self.fan: float = 0.0
        self.relative_axes = False
        self.relative_extruder = False
        #: The printer reports temperatures by itself (M155 sent and AUTOREPORT_TEMP).
        self.autoreport = False
        self._sent: dict[str, Callable[[Command], None]] = {
            "T": self._tool, "G0": self._move, "G1": self._move, "G28": self._home,
            "M104": self._tool_target, "M109": self._tool_target,
            "M140": self._bed_target, "M190": self._bed_target,
            "M141": self._chamber_target, "M191": self._chamber_target,
            "M106": self._fan_on, "M107": self._fan_off,
            "G90": self._absolute, "G91": self._relative,
            "M82": self._e_absolute, "M83": self._e_relative,
        }
        self.tracked = frozenset(self._sent)  # the session skips the call for anything else

    # ---- commands -------------------------------------------------------------------------
    def sending(self, cmd: Command) -> None:
        """M155 is about to go out: autoreport is on if it asks for it and the firmware can."""
        s = param_value(cmd.line, "S")
        self.autoreport = bool(s and s > 0 and self.capabilities.get("AUTOREPORT_TEMP"))

    def sent(self, cmd: Command) -> None:
        fn = self._sent.get(cmd.gcode or "")
        if fn is not None:
            fn(cmd)

    def _tool(self, cmd: Command) -> None:
        n = tool_number(cmd.line)
        if n is None or n == self.tool:
            return
        self.previous_tool, self.tool = self.tool, n

    def _move(self, cmd: Command) -> None:
        line = cmd.line
        if "F" in line:
            f = param_value(line, "F")
            if f is not None:
                self.feedrate = self.position["f"] = f
        if "Z" in line:
            z = param_value(line, "Z")
            if z is not None:
                self.z = z  # ZChange is the gcode_events stage's (it runs before this)

    def _home(self, cmd: Command) -> None:
        f = param_value(cmd.line, "F")
        if f is not None:
            self.feedrate = self.position["f"] = f

    def _target(self, cmd: Command) -> float | None:
        s = param_value(cmd.line, "S")
        return s if s is not None else param_value(cmd.line, "R")

    def _tool_target(self, cmd: Command) -> None:
        target = self._target(cmd)
        t = param_value(cmd.line, "T")
        tool = int(t) if t is not None else self.tool
        if target is not None and tool in self.tools:
            self.tools[tool][1] = target

    def _bed_target(self, cmd: Command) -> None:
        target = self._target(cmd)
        if target is not None:
            self.bed[1] = target

    def _chamber_target(self, cmd: Command) -> None:
        target = self._target(cmd)
        if target is not None:
            self.chamber[1] = target

    def _fan_on(self, cmd: Command) -> None:
        s = param_value(cmd.line, "S")
        self.fan = int(s) if s is not None else 0

    def _fan_off(self, cmd: Command) -> None:
        self.fan = 0

    def _absolute(self, cmd: Command) -> None:
        self.relative_axes = False

    def _relative(self, cmd: Command) -> None:
        self.relative_axes = True

    def _e_absolute(self, cmd: Command) -> None:
        self.relative_extruder = False

    def _e_relative(self, cmd: Command) -> None:
        self.relative_extruder = True

    # ---- replies ------------------------------------------------------------------------------
    def canonical(self, temps: Mapping[str, Reading]) -> dict[str, Any]:
        """A reported map with the bare `T` resolved against the current tool."""
        return canonical_tools(temps, self.tool)

    def update_temperatures(self, temps: Mapping[str, Any]) -> None:
        """Apply a canonical temperature report (OctoPrint's rules for tools and sharing)."""
        current_tool = self.tool
        tool_keys = [int(k[1:]) for k in temps if k[0] == "T" and k[1:].isdigit()]
        if f"T{current_tool}" in temps or "T0" in temps:
            top = max([*tool_keys, self.profile.extruders - 1])
            for n in range(top + 1):
                reading = temps.get(f"T{n}")
                if reading is None and self.profile.shared_nozzle:
                    reading = temps.get(f"T{current_tool}") or temps.get("T0")
                if reading is not None:
                    self._apply(self.tools.setdefault(n, [None, None]), reading)
        for key, reading in temps.items():
            if key == "B":
                self._apply(self.bed, reading)
            elif key == "C":
                self._apply(self.chamber, reading)
            elif not (key[0] == "T" and key[1:].isdigit()):
                self._apply(self.custom.setdefault(key, [None, None]), reading)

    @staticmethod
    def _apply(slot: Temp, reading: Any) -> None:
        actual, target = reading
        if actual is not None:
            slot[0] = actual
        if target is not None:
            slot[1] = target

    def update_position(self, pos: Position) -> dict[str, Any]:
        """Apply an M114 report; returns the PositionUpdate payload. With one E per extruder
        the current tool's is the position's E."""
        e = pos.e
        if pos.extruders:
            e = pos.extruders[self.tool] if self.tool < len(pos.extruders) else None
        p = self.position
        p["x"], p["y"], p["z"], p["e"] = pos.x, pos.y, pos.z, e
        p["f"] = self.feedrate
        if pos.z is not None:
            self.z = pos.z
        return self.position_payload()

    def position_payload(self) -> dict[str, Any]:
        """x, y, z, e, f as last known, and t, the current tool."""
        return {**self.position, "t": self.tool}

    def invalid_tool(self, tool: int | None) -> tuple[int, int | None]:
        """The firmware rejected `tool` (None: the current one): remember it; returns the
        tool and the one to fall back to, if any."""
        if tool is None:
            tool = self.tool
        return tool, self._fallback(tool)

    def _fallback(self, tool: int) -> int | None:
        if tool != self.tool and tool in self.invalid_tools:
            return None
        self.invalid_tools.add(tool)
        if tool != self.tool:
            return None
        fallback = self.previous_tool if self.previous_tool is not None else 0
        return None if fallback == tool else fallback

    @property
    def heater_set(self) -> bool:
        """A tool or the bed has a target above room temperature."""
        targets = [t[1] for t in self.tools.values()] + [self.bed[1]]
        return any(v is not None and v > 25 for v in targets)

    def temperature_payload(self) -> dict[str, dict[str, float | None]]:
        """The `/api/printer`-style temperature map: tool0.., bed, chamber."""
        out = {f"tool{n}": {"actual": t[0], "target": t[1]} for n, t in sorted(self.tools.items())}
        if self.profile.heated_bed:
            out["bed"] = {"actual": self.bed[0], "target": self.bed[1]}
        if self.profile.heated_chamber:
            out["chamber"] = {"actual": self.chamber[0], "target": self.chamber[1]}
        return out
