"""Built-in stage `temperature_offsets`: adds per-heater offsets to the targets that printed
files set, as OctoPrint's temperature offsets do (file lines only, unless told otherwise).

    - stage: temperature_offsets
      with:
        tools:            # tool number -> offset, °C
          0: 5
          1: -2.5
        bed: 3            # offset for M140/M190 (default 0)
        chamber: 0        # offset for M141/M191 (default 0)
        default_tool: 0   # the current tool until a T<n> command is seen (default 0)
        all_sources: false  # true: offset every command, not only `source:file` ones

Runs in comm.protocol.gcode.queuing. M104/M109 take the offset of the tool in their T
parameter, else of the current tool; the stage follows tool changes itself from the T<n>
commands it sees (from any source). M140/M190 take `bed`, M141/M191 `chamber`. The offset is
added to the first S and the first R value; a target of 0 (heater off) or an offset of 0 leaves
the line alone.
The rest of the line is kept as written and the new value is written compactly (`215`,
`212.5`), not with OctoPrint's `%f`. Any other command returns None after one set lookup.
No IO; the only state is the current tool.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import strictyaml as sy

from pipeline.gcode import param_value, tool_number
from pipeline.phases import Phase
from stages.options import Comm, Rewrite

NAME = "temperature_offsets"
PHASES: frozenset[Phase] = frozenset({Phase.GCODE_QUEUING})

_TOOL_CODES = frozenset({"M104", "M109"})
_BED_CODES = frozenset({"M140", "M190"})
_CHAMBER_CODES = frozenset({"M141", "M191"})
_WATCHED = _TOOL_CODES | _BED_CODES | _CHAMBER_CODES | {"T"}
# An S or R parameter (not the tail of a word) and its number.
_TARGET_RE = re.compile(r"(?<![A-Za-z])([SRsr])\s*([-+]?[0-9]*\.?[0-9]+)")
_FILE = "source:file"


class _Offset(sy.Float):  # type: ignore[misc]  # strictyaml has no types
    rule_description = "a float"

    def validate_scalar(self, chunk: Any) -> float:
        value: float = super().validate_scalar(chunk)
        if not math.isfinite(value):
            chunk.expecting_but_found("when expecting a finite number of degrees",
                                      f"found {chunk.contents!r}")
        return value


class _Tool(sy.Int):  # type: ignore[misc]  # strictyaml has no types
    rule_description = "a tool number"

    def validate_scalar(self, chunk: Any) -> int:
        text = chunk.contents.strip()
        if not (text.isascii() and text.isdigit()):
            chunk.expecting_but_found("when expecting a tool number (0 or more)",
                                      f"found {chunk.contents!r}")
        return int(text)


SCHEMA: sy.Validator = sy.Map({
    sy.Optional("tools", default={}): sy.EmptyDict() | sy.MapPattern(_Tool(), _Offset()),
    sy.Optional("bed", default=0.0): _Offset(),
    sy.Optional("chamber", default=0.0): _Offset(),
    sy.Optional("default_tool", default=0): _Tool(),
    sy.Optional("all_sources", default=False): sy.Bool(),
})


def compact(value: float) -> str:
    """A temperature as G-code wants it: `215`, `212.5`, `-3.25` (at most 3 decimals)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def shift_targets(cmd: str, offset: float) -> str:
    """`cmd` with the offset added to its first S and first R value (0 stays 0)."""
    parts: list[str] = []
    seen = ""
    end = 0
    for m in _TARGET_RE.finditer(cmd):
        letter = m.group(1).upper()
        if letter in seen:
            continue
        seen += letter
        value = float(m.group(2))
        if value != 0:
            parts += (cmd[end:m.start(2)], compact(value + offset))
            end = m.end(2)
    return "".join(parts) + cmd[end:] if parts else cmd


def build(options: Mapping[str, Any], stage_id: str) -> Callable[..., Rewrite]:
    """Return the queuing-phase handler for the configured offsets."""
    tools = {int(t): float(o) for t, o in (options.get("tools") or {}).items()}
    bed = float(options.get("bed", 0.0))
    chamber = float(options.get("chamber", 0.0))
    all_sources = bool(options.get("all_sources", False))
    current = int(options.get("default_tool", 0))

    def temperature_offsets(comm_instance: Comm | None, phase: str, cmd: str,
                            cmd_type: str | None, gcode: str | None, subcode: str | None = None,
                            tags: frozenset[str] | None = None, *args: Any,
                            **kwargs: Any) -> Rewrite:
        nonlocal current
        if gcode not in _WATCHED:
            return None
        if gcode == "T":
            tool = tool_number(cmd)
            if tool is not None:
                current = tool
            return None
        if not all_sources and (tags is None or _FILE not in tags):
            return None
        if gcode in _TOOL_CODES:
            t_param = param_value(cmd, "T")
            offset = tools.get(current if t_param is None else int(t_param), 0.0)
        elif gcode in _BED_CODES:
            offset = bed
        else:
            offset = chamber
        if offset == 0:
            return None
        new = shift_targets(cmd, offset)
        return None if new == cmd else (new,)

    temperature_offsets.__qualname__ = f"{NAME}[{stage_id}]"
    return temperature_offsets
