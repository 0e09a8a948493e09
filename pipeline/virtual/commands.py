"""The virtual firmware's G-code handlers (a mixin of `VirtualFirmware`).

Each handler takes the command text (no line number, checksum or comment) and `now`, may
append lines to the output, and returns the ok line to send, or None when it started a wait
(the ok then comes from `_end_wait`). Unknown commands get Marlin's `echo:Unknown command`.
Pure state changes only: no IO, no trio, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.gcode import param_value
from pipeline.virtual.sd.commands import SdMixin, sd_handlers
from pipeline.virtual.spec import FirmwareSpec
from pipeline.virtual.thermal import (
    HeaterKind,
    HeaterState,
    WaitMode,
    format_report,
    retarget,
    wait_end,
)
from pipeline.virtual.waits import Wait, WaitKind

if TYPE_CHECKING:
    from pipeline.config.schema import FaultSpec
    from pipeline.virtual.thermal import Thermals

_WORD_RE = re.compile(r"([GMT])(\d+)")
# One findall per move instead of one param_value per axis: G0/G1 are the hot path.
_AXIS_VALUE_RE = re.compile(r"(?<![A-Za-z])([XYZE])\s*([-+]?[0-9]*\.?[0-9]+)")
_AXIS_LETTER_RE = re.compile(r"(?<![A-Za-z])([XYZE])")
_M118_FLAG_RE = re.compile(r"([AEP])(\d)(?:\s+|$)")
_AXIS_INDEX = {"X": 0, "Y": 1, "Z": 2, "E": 3}
# Steps per mm used for M114's `Count` section (typical Cartesian values).
_STEPS = (80.0, 80.0, 400.0)
# Shortest M155 interval honoured (Marlin takes whole seconds; tests want it faster).
_MIN_AUTOREPORT = 0.0005

_NOOP = frozenset(
    "G20 G21 M0 M1 M17 M18 M73 M75 M76 M77 M80 M81 M84 M92 M106 M107 M108 M201 M203 M204 "
    "M205 M206 M220 M221 M300 M400 M410 M420 M500 M501 M502 M503 M851 M876 M900".split())

Handler = Callable[["CommandsMixin", str, float], "str | None"]


class CommandsMixin(SdMixin):
    """G-code semantics on top of the firmware core's state (see firmware.py); the SD card's
    commands come from sd/commands.py."""

    # State owned and initialised by VirtualFirmware; declared here for the handlers.
    spec: FirmwareSpec
    _faults: FaultSpec
    _caps: dict[str, bool]
    _th: Thermals
    _out: list[str]
    _tools: list[HeaterState]
    _bed: HeaterState | None
    _chamber: HeaterState | None
    _tool: int
    _pos: list[float]
    _relative: bool
    _relative_e: bool
    _autoreport: float
    _next_auto: float | None
    _busy_interval: float
    _last_n: int

    def _start_wait(self, wait: Wait, now: float) -> None:
        raise NotImplementedError  # provided by VirtualFirmware

    def _dispatch(self, text: str, now: float) -> str | None:
        if self.card.saving is not None and not self._sd_line:
            return self._sd_save(text)  # M28: every line goes to the file until M29
        m = _WORD_RE.match(text)
        if m is None:
            return self._unknown(text)
        if m.group(1) == "T":
            return self._tool_change(int(m.group(2)))
        word = m.group(0)
        handler = _HANDLERS.get(word)
        if handler is None:
            word = m.group(1) + str(int(m.group(2)))   # G01 -> G1
            handler = _HANDLERS.get(word)
            if handler is None:
                return "ok" if word in _NOOP else self._unknown(text)
        return handler(self, text, now)

    def _unknown(self, text: str) -> str:
        self._out.append(f'echo:Unknown command: "{text}"')
        return "ok"

    def _temperature_text(self, now: float) -> str:
        return format_report(self._tools, self._tool, self._bed, self._chamber, now, self._th)

    # ------------------------------------------------------------ motion

    def _move(self, text: str, now: float) -> str | None:
        pos = self._pos
        relative, relative_e = self._relative, self._relative_e
        for letter, value in _AXIS_VALUE_RE.findall(text, 2):
            i = _AXIS_INDEX[letter]
            if relative_e if i == 3 else relative:
                pos[i] += float(value)
            else:
                pos[i] = float(value)
        return self._moved(now)

    def _moved(self, now: float) -> str | None:
        """A move was taken: its ok now, or after `ok_delay` (the Marlin model plans it)."""
        delay = self._faults.ok_delay
        if delay > 0:
            self._start_wait(Wait(WaitKind.MOVE, now + delay), now)
            return None
        return "ok"

    def _home(self, text: str, now: float) -> str:
        axes = {_AXIS_INDEX[a] for a in _AXIS_LETTER_RE.findall(text, 3) if a != "E"}
        for i in axes or (0, 1, 2):
            self._pos[i] = 0.0
        return "ok"

    def _set_position(self, text: str, now: float) -> str:
        values = _AXIS_VALUE_RE.findall(text, 3)
        if not values:
            self._pos = [0.0, 0.0, 0.0, 0.0]
        for letter, value in values:
            self._pos[_AXIS_INDEX[letter]] = float(value)
        return "ok"

    def _absolute(self, text: str, now: float) -> str:
        self._relative = self._relative_e = False
        return "ok"

    def _relative_mode(self, text: str, now: float) -> str:
        self._relative = self._relative_e = True
        return "ok"

    def _e_absolute(self, text: str, now: float) -> str:
        self._relative_e = False
        return "ok"

    def _e_relative(self, text: str, now: float) -> str:
        self._relative_e = True
        return "ok"

    def _dwell(self, text: str, now: float) -> str | None:
        seconds = param_value(text, "S")
        if seconds is None:
            ms = param_value(text, "P")
            seconds = 0.0 if ms is None else ms / 1000.0
        if seconds <= 0:
            return "ok"
        self._start_wait(Wait(WaitKind.DWELL, now + seconds, busy=True), now)
        return None

    def _position(self, text: str, now: float) -> str:
        x, y, z, e = self._pos
        self._out.append(
            f"X:{x:.2f} Y:{y:.2f} Z:{z:.2f} E:{e:.2f} Count X:{round(x * _STEPS[0])} "
            f"Y:{round(y * _STEPS[1])} Z:{round(z * _STEPS[2])}")
        return "ok"

    # ------------------------------------------------------------ tools and heaters

    def _tool_change(self, n: int) -> str:
        if n >= len(self._tools):
            self._out.append(f"echo:T{n} Invalid extruder")
        else:
            self._tool = n
        return "ok"

    def _target_tool(self, text: str) -> int | None:
        """The T parameter of M104/M109 (default: current tool); None if out of range."""
        t = param_value(text, "T")
        if t is None:
            return self._tool
        n = int(t)
        if 0 <= n < len(self._tools):
            return n
        self._out.append(f"echo:{text.split(None, 1)[0]} Invalid extruder {n}")
        return None

    def _set_heater(self, kind: HeaterKind, index: int, target: float,
                    now: float) -> HeaterState | None:
        """Retarget a heater; returns its new state, or None if the printer lacks it."""
        th = self._th
        if kind is HeaterKind.TOOL:
            st = retarget(self._tools[index], target, now, th)
            self._tools[index] = st
        elif kind is HeaterKind.BED:
            if self._bed is None:
                return None
            st = self._bed = retarget(self._bed, target, now, th)
        else:
            if self._chamber is None:
                return None
            st = self._chamber = retarget(self._chamber, target, now, th)
        return st

    def _heat(self, text: str, now: float, kind: HeaterKind,
              wait: bool) -> str | None:
        index = 0
        if kind is HeaterKind.TOOL:
            tool = self._target_tool(text)
            if tool is None:
                return "ok"
            index = tool
        mode = WaitMode.HEAT_ONLY
        target = param_value(text, "S")
        if wait:
            r = param_value(text, "R")
            if r is not None:
                target, mode = r, WaitMode.BOTH_WAYS
        if target is None:
            return "ok"
        st = self._set_heater(kind, index, target, now)
        if st is None or not wait:
            return "ok"
        end = wait_end(st, now, mode, self._th)
        if end is None:
            return "ok"
        self._start_wait(Wait(WaitKind.HEAT, end, reports=True, busy=True), now)
        return None

    def _m104(self, text: str, now: float) -> str | None:
        return self._heat(text, now, HeaterKind.TOOL, False)

    def _m109(self, text: str, now: float) -> str | None:
        return self._heat(text, now, HeaterKind.TOOL, True)

    def _m140(self, text: str, now: float) -> str | None:
        return self._heat(text, now, HeaterKind.BED, False)

    def _m190(self, text: str, now: float) -> str | None:
        return self._heat(text, now, HeaterKind.BED, True)

    def _m141(self, text: str, now: float) -> str | None:
        return self._heat(text, now, HeaterKind.CHAMBER, False)

    def _m191(self, text: str, now: float) -> str | None:
        return self._heat(text, now, HeaterKind.CHAMBER, True)

    def _report_temperatures(self, text: str, now: float) -> str:
        return "ok " + self._temperature_text(now)

    def _autoreport_temperatures(self, text: str, now: float) -> str:
        if not self._caps.get("AUTOREPORT_TEMP"):
            return self._unknown(text)
        s = param_value(text, "S")
        if s is not None:
            self._autoreport = s = 0.0 if s <= 0 else max(_MIN_AUTOREPORT, s)
            self._next_auto = now + s if s > 0 else None
        return "ok"

    # ------------------------------------------------------------ host protocol

    def _firmware_info(self, text: str, now: float) -> str:
        spec = self.spec
        self._out.append(
            f"FIRMWARE_NAME:{spec.virtual.firmware_name} "
            "SOURCE_CODE_URL:https://example.invalid/printpipe PROTOCOL_VERSION:1.0 "
            f"MACHINE_TYPE:Virtual EXTRUDER_COUNT:{len(self._tools)} "
            "UUID:00000000-0000-4000-8000-000000000000")
        caps = dict(spec.capabilities) | self.sd_capabilities()
        self._out.extend(f"Cap:{name}:{int(on)}" for name, on in caps.items())
        return "ok"

    def _busy_interval_cmd(self, text: str, now: float) -> str:
        s = param_value(text, "S")
        if s is not None:
            self._busy_interval = min(60.0, max(0.0, s))
        return "ok"

    def _set_line_number(self, text: str, now: float) -> str:
        n = param_value(text, "N")
        if n is not None:
            self._last_n = int(n)
        return "ok"

    def _message(self, text: str, now: float) -> str:
        self._out.append("echo:" + text[4:].strip())
        return "ok"

    def _serial_print(self, text: str, now: float) -> str:
        rest = text[4:].lstrip()
        echo = action = False
        while (m := _M118_FLAG_RE.match(rest)) is not None:
            if m.group(2) == "1":
                echo = echo or m.group(1) == "E"
                action = action or m.group(1) == "A"
            rest = rest[m.end():]
        self._out.append(("echo:" if echo else "") + ("//" if action else "") + rest)
        return "ok"

    def _restart(self, text: str, now: float) -> str:
        self._out.append(f"Resend: {self._last_n + 1}")
        return "ok"


def _handlers() -> dict[str, Handler]:
    c = CommandsMixin
    return {
        "G0": c._move, "G1": c._move, "G2": c._move, "G3": c._move, "G4": c._dwell,
        "G28": c._home, "G90": c._absolute, "G91": c._relative_mode, "G92": c._set_position,
        "M82": c._e_absolute, "M83": c._e_relative,
        "M104": c._m104, "M109": c._m109, "M140": c._m140, "M190": c._m190,
        "M141": c._m141, "M191": c._m191,
        "M105": c._report_temperatures, "M155": c._autoreport_temperatures,
        "M114": c._position, "M115": c._firmware_info, "M113": c._busy_interval_cmd,
        "M110": c._set_line_number, "M117": c._message, "M118": c._serial_print,
        "M999": c._restart, **sd_handlers(),
    }


_HANDLERS: dict[str, Handler] = _handlers()
