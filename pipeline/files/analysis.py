"""A light, streaming G-code analyser: print time, filament per tool and bounding boxes.

`Analyser` is sans-IO: the caller reads the file and `feed()`s byte chunks of any size (a line
may straddle two chunks), then calls `finish()` for a frozen `Analysis`. Only the current
partial line is held, never the file, so 200 MB uploads are fine; a UTF-8 byte order mark at
the start is skipped. It must not import trio nor open files. The model is deliberately simple
(no acceleration, homing and heating are free, arcs are straight lines, units are mm), in the
spirit of OctoPrint's own gcodeAnalysis.
"""

from __future__ import annotations

import math
import re
from typing import Any

import attrs

from pipeline.errors import LocalProtocolError

# One word: a letter, then a number ("X10", "E-.5", "F 3000"). Only for lines that str.split()
# cannot cut into words ("G1X10Y5", "G1 X 10"): a regex per line costs five splits.
_WORD_RE = re.compile(r"[A-Z]\s*[-+]?(?:\d+\.?\d*|\.\d+)")
# The commands that matter, zero-padded spellings included; everything else is skipped.
_COMMANDS = {code: code for code in ("G0", "G1", "G2", "G3", "G4", "G28", "G90", "G91", "G92",
                                     "M82", "M83")}
_COMMANDS.update({"G00": "G0", "G01": "G1", "G02": "G2", "G03": "G3", "G04": "G4"})
_MOVES = frozenset(("G0", "G1", "G2", "G3"))  # arcs are straight lines to their end point
_AREA_KEYS = ("minX", "maxX", "minY", "maxY", "minZ", "maxZ")
DEFAULT_FEEDRATE = 3000.0  # mm/min, until the file sets F
# A line longer than this is junk (binary, a missing newline); the rest of it is dropped so
# that a file without newlines cannot make us hold all of it.
MAX_LINE = 4096
_BOM = "\xef\xbb\xbf"  # a UTF-8 byte order mark, as latin-1 decodes it


@attrs.frozen
class Analysis:
    """The result of one analysis; areas are None when nothing (extruding) moved."""

    lines: int
    estimated_print_time: float
    filament: dict[str, dict[str, float]]
    printing_area: dict[str, float] | None
    dimensions: dict[str, float] | None
    travel_area: dict[str, float] | None
    travel_dimensions: dict[str, float] | None = None

    def to_api(self) -> dict[str, Any]:
        """Return OctoPrint's gcodeAnalysis model plus `lines`; absent areas are left out."""
        out: dict[str, Any] = {
            "estimatedPrintTime": self.estimated_print_time,
            "filament": {tool: dict(v) for tool, v in self.filament.items()},
            "lines": self.lines,
        }
        for key, value in (("printingArea", self.printing_area),
                           ("dimensions", self.dimensions),
                           ("travelArea", self.travel_area),
                           ("travelDimensions", self.travel_dimensions)):
            if value is not None:
                out[key] = dict(value)
        return out


def _area(box: list[float]) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    if box[0] > box[1]:  # never updated: still (inf, -inf)
        return None, None
    area = dict(zip(_AREA_KEYS, box, strict=True))
    dims = {"width": box[1] - box[0], "depth": box[3] - box[2], "height": box[5] - box[4]}
    return area, dims


def _include(box: list[float], x: float, y: float, z: float) -> None:
    if x < box[0]:
        box[0] = x
    if x > box[1]:
        box[1] = x
    if y < box[2]:
        box[2] = y
    if y > box[3]:
        box[3] = y
    if z < box[4]:
        box[4] = z
    if z > box[5]:
        box[5] = z


def _empty_box() -> list[float]:
    return [math.inf, -math.inf] * 3


@attrs.define(eq=False)
class Analyser:
    """Streams G-code bytes into running totals.

    Args:
        filament_diameter: mm, for the volume in cm³.
        max_feedrate_mm_s: optional per-axis speed caps, keys "x", "y", "z", "e" (mm/s).
        speed_factor: feedrate multiplier (1.0 = 100 %, like M220 S100).

    Raises:
        ValueError: a diameter or speed factor that is not positive.
    """

    filament_diameter: float = attrs.field(default=1.75, kw_only=True)
    max_feedrate_mm_s: dict[str, float] | None = attrs.field(default=None, kw_only=True)
    speed_factor: float = attrs.field(default=1.0, kw_only=True)
    _tail: str = attrs.field(default="", init=False)
    _started: bool = attrs.field(default=False, init=False)  # past a leading BOM
    _done: bool = attrs.field(default=False, init=False)
    _lines: int = attrs.field(default=0, init=False)
    _time: float = attrs.field(default=0.0, init=False)
    _pos: list[float] = attrs.field(factory=lambda: [0.0, 0.0, 0.0, 0.0], init=False)
    _speed: float = attrs.field(default=0.0, init=False)  # mm/s, speed_factor applied
    _f_word: str = attrs.field(default="", init=False)  # the last "F..." word seen
    _rel_xyz: bool = attrs.field(default=False, init=False)
    _rel_e: bool = attrs.field(default=False, init=False)
    _tool: str = attrs.field(default="tool0", init=False)
    _extruded: dict[str, float] = attrs.field(factory=dict, init=False)
    _print_box: list[float] = attrs.field(factory=_empty_box, init=False)
    _travel_box: list[float] = attrs.field(factory=_empty_box, init=False)

    @property
    def buffered(self) -> int:
        """Characters of an unfinished line held back (at most MAX_LINE)."""
        return len(self._tail)

    def __attrs_post_init__(self) -> None:
        if self.filament_diameter <= 0 or self.speed_factor <= 0:
            raise ValueError("filament_diameter and speed_factor must be positive")
        self._speed = DEFAULT_FEEDRATE * self.speed_factor / 60

    def feed(self, data: bytes) -> None:
        """Analyse a chunk of the file; an incomplete last line waits for the next chunk.

        Raises:
            LocalProtocolError: after `finish()`.
        """
        if self._done:
            raise LocalProtocolError("feed() after finish()")
        # latin-1 maps every byte to one character: never fails, and a chunk boundary can
        # never split a character. Junk only lands in comments or unknown words.
        text = self._tail + data.decode("latin-1")
        if not self._started:
            if len(text) < len(_BOM) and _BOM.startswith(text):
                self._tail = text  # maybe a BOM cut by the chunk boundary: wait for more
                return
            self._started = True
            text = text.removeprefix(_BOM)
        lines = text.split("\n")
        tail = lines.pop()
        self._tail = tail if len(tail) <= MAX_LINE else tail[:MAX_LINE]
        line = self._line
        for text in lines:
            line(text)

    def finish(self) -> Analysis:
        """Analyse the last (unterminated) line and return the totals; feeding then ends."""
        if not self._done:
            self._done = True
            self._line(self._tail)
            self._tail = ""
        area = math.pi * (self.filament_diameter / 2) ** 2
        filament = {tool: {"length": max(mm, 0.0), "volume": max(mm, 0.0) * area / 1000}
                    for tool, mm in sorted(self._extruded.items())}
        printing, dims = _area(self._print_box)
        travel, travel_dims = _area(self._travel_box)
        return Analysis(lines=self._lines, estimated_print_time=self._time, filament=filament,
                        printing_area=printing, dimensions=dims, travel_area=travel,
                        travel_dimensions=travel_dims)

    # -- one line ------------------------------------------------------------------------

    def _line(self, text: str) -> None:
        cut = text.find(";")
        if cut >= 0:
            text = text[:cut]
        cut = text.find("*")  # a checksum, as in a logged "N12 G1 X5*87"
        if cut >= 0:
            text = text[:cut]
        words = text.upper().split()
        if not words:
            return
        self._lines += 1
        if words[0][0] == "N":  # a line number, maybe glued to the command: "N12G1X5"
            words = words[1:] if words[0][1:].isdigit() else _words(" ".join(words))[1:]
            if not words:
                return
        head = words[0]
        code = _COMMANDS.get(head)
        if code is None:
            if head[0] == "T" and head[1:].isdigit():
                self._tool = f"tool{int(head[1:])}"
                return
            if head[0] != "G" or head[1:].isdigit():
                return  # an M code, or anything else we do not model
            words = _words(" ".join(words))  # "G1X10Y5": glued words
            code = _COMMANDS.get(words[0]) if words else None
        if code in _MOVES:
            if not self._move(words):
                self._move(_words(" ".join(words)))  # "G1 X 10": split words
        elif code == "G28":
            self._home(words)
        elif code == "G92":
            self._set_position(words)
        elif code == "G4":
            self._dwell(words)
        elif code == "G90" or code == "G91":
            self._rel_xyz = self._rel_e = code == "G91"
        elif code == "M82" or code == "M83":
            self._rel_e = code == "M83"

    def _move(self, words: list[str]) -> bool:
        """Apply one G0-G3; False (and no change) if a word is not a letter and a number."""
        pos = self._pos
        x0, y0, z0, e0 = pos
        x, y, z, e = pos
        rel = self._rel_xyz
        f_word = ""
        try:
            for word in words[1:]:
                letter = word[0]
                if letter == "X":
                    x = x0 + float(word[1:]) if rel else float(word[1:])
                elif letter == "Y":
                    y = y0 + float(word[1:]) if rel else float(word[1:])
                elif letter == "Z":
                    z = z0 + float(word[1:]) if rel else float(word[1:])
                elif letter == "E":
                    e = e0 + float(word[1:]) if self._rel_e else float(word[1:])
                elif letter == "F":
                    f_word = word
                elif letter in "0123456789+-.":
                    return False  # a number without its letter: "G1 F 3000"
        except ValueError:
            return False
        if not math.isfinite(x + y + z + e):
            return True  # "XNAN" and friends: junk, skip the line
        if f_word and f_word != self._f_word:  # slicers repeat F: parse each spelling once
            self._f_word = f_word
            if (feed := _number(f_word)) is not None and feed > 0:
                self._speed = feed * self.speed_factor / 60
        dx, dy, dz, de = x - x0, y - y0, z - z0, e - e0
        if de:
            self._extruded[self._tool] = self._extruded.get(self._tool, 0.0) + de
        dist = math.sqrt(dx * dx + dy * dy + dz * dz)
        if dist:
            pos[0], pos[1], pos[2], pos[3] = x, y, z, e
            _include(self._travel_box, x, y, z)
            if de > 0:
                _include(self._print_box, x0, y0, z0)
                _include(self._print_box, x, y, z)
        elif de:
            pos[3] = e
            dist = abs(de)
        else:
            return True
        speed = self._speed
        if self.max_feedrate_mm_s:
            for axis, delta in zip("xyze", (dx, dy, dz, de), strict=True):
                cap = self.max_feedrate_mm_s.get(axis)
                if cap and delta:
                    speed = min(speed, cap * dist / abs(delta))
        self._time += dist / speed
        return True

    def _home(self, words: list[str]) -> None:
        # "G28 X0 Y0" and "G28 X Y" both home X and Y: look at letters only.
        named = [i for i, axis in enumerate("XYZ") if any(w[0] == axis for w in words[1:])]
        for i in named or (0, 1, 2):
            self._pos[i] = 0.0
        _include(self._travel_box, *self._pos[:3])

    def _set_position(self, words: list[str]) -> None:
        if len(words) == 1:  # bare G92: every axis is zero here (RepRap wiki semantics)
            self._pos[:] = [0.0, 0.0, 0.0, 0.0]
            return
        for word in words[1:]:
            i = "XYZE".find(word[0])
            if i >= 0 and (value := _number(word)) is not None:
                self._pos[i] = value

    def _dwell(self, words: list[str]) -> None:
        millis = seconds = None  # as in Marlin, S (seconds) wins over P (milliseconds)
        for word in words[1:]:
            if word[0] == "P":
                millis = _number(word)
            elif word[0] == "S":
                seconds = _number(word)
        wait = seconds if seconds is not None else (millis or 0.0) / 1000
        self._time += max(wait, 0.0)


def _words(text: str) -> list[str]:
    return ["".join(w.split()) for w in _WORD_RE.findall(text)]


def _number(word: str) -> float | None:
    try:
        value = float(word[1:])
    except ValueError:
        return None
    return value if math.isfinite(value) else None
