"""The last checks before the wire, for every command from every source (file, script, API,
subscription, handler): one line (no line break, NUL or other control character), short
enough for the firmware's buffer with its line number and checksum, only finite numbers,
and heater targets within the profile's limits (0, off, is always allowed).

`WireGuard.refusal(line)` answers why a command must not be written, or None. It runs on
every printed line, so a plain move costs a length test, `isprintable()`, two substring
tests and a set lookup; the rest runs only for the rare commands that need it. Pure.
"""

from __future__ import annotations

import math
import re

from pipeline.config.schema import ProfileSpec, SerialSpec
from pipeline.gcode import param_value

#: Worst-case framing the engine adds: "N" + 9 digits + " " before, "*" + 3 digits + "\n".
FRAMING = 16

#: Heater target commands, the heater kind whose limit applies, and the words that set a
#: target (M104/M109 B is the autotemp maximum).
HEATERS: dict[str, tuple[str, str]] = {
    "M104": ("hotend", "SRB"), "M109": ("hotend", "SRB"),
    "M140": ("bed", "SR"), "M190": ("bed", "SR"),
    "M141": ("chamber", "SR"), "M191": ("chamber", "SR"),
}
#: Commands whose argument is free text (a message or a file name), not numbers.
TEXT_COMMANDS = frozenset({"M0", "M1", "M16", "M23", "M28", "M30", "M32", "M33", "M117",
                           "M118", "M928"})
# A parameter word whose value is not a number a firmware should ever see: inf, nan.
_NON_FINITE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]\s*[-+]?(?:inf|nan)", re.IGNORECASE)
# C0 and C1 control characters, and Unicode's line and paragraph separators: no part of a
# command, whatever the firmware would make of it (str.splitlines() cuts at \x85 and U+2028/9).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class WireGuard:
    def __init__(self, serial: SerialSpec, profile: ProfileSpec) -> None:
        self.max_line = serial.max_line_length
        #: Lines up to this long need no measuring: they fit with any framing.
        self.short_line = serial.max_line_length - FRAMING
        limits = profile.limits
        self.limits = {"hotend": limits.hotend, "bed": limits.bed, "chamber": limits.chamber}

    def refusal(self, line: str, gcode: str | None) -> str | None:
        """Why `line` (its G-code word `gcode`) must not reach the printer, or None."""
        if len(line) > self.short_line or not line.isprintable():
            problem = self._line_problem(line)
            if problem:
                return problem
        if ("n" in line or "N" in line) and gcode not in TEXT_COMMANDS:
            m = _NON_FINITE.search(line)
            if m:
                return f"{m.group(0).strip()!r} is not a finite number"
        if gcode in HEATERS:
            return self._heater_problem(line, gcode)
        return None

    def _line_problem(self, line: str) -> str | None:
        m = _CONTROL.search(line)
        if m:
            return (f"it contains a control character ({m.group(0)!r} at {m.start()}): one "
                    "command is one line")
        if len(line.encode("utf-8")) > self.short_line:
            return (f"it is {len(line.encode('utf-8'))} bytes long; with its line number and "
                    f"checksum the firmware takes at most {self.max_line} "
                    "(serial.max_line_length)")
        return None  # printable after all: non-ASCII text is fine

    def _heater_problem(self, line: str, gcode: str) -> str | None:
        kind, words = HEATERS[gcode]
        limit = self.limits[kind]
        for word in words:
            if word not in line:
                continue
            value = param_value(line, word)
            if value is None:
                continue
            if not math.isfinite(value) or value < 0:
                return f"{word}{value:g} is not a temperature"
            if value > limit:
                return (f"target {value:g} °C is above the {kind} limit of {limit:g} °C "
                        f"(printer.profile.limits.{kind})")
        return None

    def clamp(self, kind: str, target: float) -> float:
        """`target` at most the limit of heater `kind` (for offsets added by the host)."""
        return min(target, self.limits[kind])
