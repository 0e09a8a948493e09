"""Firmware reply lines: pure classifiers and parsers for ONE received line.

ok/wait/start/busy, resend requests, error lines (joining, classes, FAQ tags), `//` debug and
action lines, temperatures, M114 positions, M115 firmware info, `Cap:` lines and invalid-tool
reports. Every function takes a line already stripped of its line ending. Regexes are compiled
once at import; no IO, no trio, no logging.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import NamedTuple

import attrs

_FLOAT = r"[-+]?[0-9]*\.?[0-9]+"

# ok / wait / start / busy


def is_ok(line: str) -> bool:
    """Any line starting with `ok` acknowledges a command (`parse_ok` reads what it says)."""
    return line.startswith("ok")


class OkFields(NamedTuple):
    """What an ok line says: the line number it acknowledges (ADVANCED_OK's `N`, -1 without),
    the free command-queue slots (`B`, None without), whether it carries temperatures (M105's
    answer), and whether it is nothing but flow control (`ok`, `ok N12 P15 B3`)."""

    n: int
    b: int | None
    temperatures: bool
    bare: bool


_OK_FIELDS_RE = re.compile(r"ok(?: N(\d+))?(?: P(\d+))?(?: B(\d+))? *")
_PLAIN_OK = OkFields(-1, None, False, True)


def parse_ok(line: str) -> OkFields | None:
    """The fields of an ok line; None when the line is not an ok."""
    if line == "ok":
        return _PLAIN_OK
    if not line.startswith("ok"):
        return None
    m = _OK_FIELDS_RE.match(line)
    assert m is not None  # every group is optional
    n, b = m.group(1), m.group(3)
    rest = line[m.end():]
    return OkFields(-1 if n is None else int(n), None if b is None else int(b),
                    bool(rest) and is_temperature_line(" " + rest), not rest)


def is_wait(line: str) -> bool:
    """Repetier-style `wait` (treated like an ok by the engine)."""
    return line == "wait"


_OK_PAYLOAD_MARKERS = ("T:", "T0:", "B:", "C:", "X:", "NAME:")


def ok_is_consumed(line: str) -> bool:
    """True when an ok/wait line carries nothing for the content parsers."""
    if line == "ok" or line == "wait":
        return True
    return not any(marker in line for marker in _OK_PAYLOAD_MARKERS)


def is_start(line: str) -> bool:
    """The firmware (re)started: the line is exactly `start`."""
    return line == "start"


def is_busy(line: str) -> bool:
    """Marlin busy protocol keep-alive (`echo:busy: processing`, `busy:processing`)."""
    return line.startswith(("echo:busy:", "busy:"))


# Resend requests

_RESEND_NUMBER_RE = re.compile(r"(?:N:?)?(\d+)")


def parse_resend(line: str) -> int | None:
    """The requested line number of a `Resend:`/`rs` line; -1 without a number; None otherwise."""
    lower = line.lower()
    if not lower.startswith(("resend", "rs")):
        return None
    m = _RESEND_NUMBER_RE.search(line)
    return int(m.group(1)) if m else -1


# Errors

_DIGIT_ERROR_RE = re.compile(r"^\d+$")
_KILL_TEXT_RE = re.compile(
    r"Heating failed|Thermal Runaway|Thermal Malfunction|MAXTEMP triggered|MINTEMP triggered"
    r"|Invalid extruder number|Watchdog barked|KILL caused",
    re.IGNORECASE,
)


def error_text(line: str) -> str | None:
    """The message of an error line (`Error:`, `!!`, Repetier `fatal:`), else None.

    `fatal:` lines keep their prefix so that `classify_error` sees them as FATAL.
    """
    if line[:6].lower() == "error:":
        return line[6:].strip()
    if line.startswith("!!"):
        return line[2:].strip()
    if line.startswith("fatal:"):
        return line.strip()
    return None


def error_needs_next_line(text: str) -> bool:
    """True when the error message continues on the next received line."""
    return _DIGIT_ERROR_RE.match(text) is not None or _KILL_TEXT_RE.search(text) is not None


def join_error(first: str, next_line: str) -> str:
    """Join an error message with its continuation line.

    Digit form (`Error:0` + `: Extruder switched off...`): the next line is appended, directly
    when it starts with `:`, else after one space. Kill texts: the next line, its `Error:` prefix
    dropped, is joined with " - ".
    """
    nxt = next_line.strip()
    if _DIGIT_ERROR_RE.match(first):
        if not nxt or nxt.startswith(":"):
            return first + nxt
        return f"{first} {nxt}"
    if nxt[:6].lower() == "error:":
        nxt = nxt[6:].strip()
    return f"{first} - {nxt}" if nxt else first


class ErrorClass(enum.Enum):
    """What the engine does with an error message."""

    RECOVERABLE = "recoverable"          # simulate an ok; the next line provokes a resend
    RESEND = "resend"                    # remember it, wait for the printer's Resend:
    SD = "sd"                            # SD card trouble: ignored by the error handler
    UNKNOWN_COMMAND = "unknown_command"  # ignored
    FATAL = "fatal"                      # fatal path whatever the error-handling mode
    OTHER = "other"                      # hooks, then the configured error handling


_ERROR_CLASSES: tuple[tuple[ErrorClass, tuple[str, ...]], ...] = (
    (ErrorClass.RECOVERABLE, ("no line number with checksum", "missing linenumber")),
    (ErrorClass.RESEND, ("line number", "linenumber", "checksum", "format error",
                         "expected line")),
    (ErrorClass.SD, ("volume.init", "openroot", "workdir", "error writing to file",
                     "cannot open", "open failed", "cannot enter")),
    (ErrorClass.UNKNOWN_COMMAND, ("unknown command",)),
    (ErrorClass.FATAL, ("kill() called", "fatal:")),
)


def classify_error(text: str) -> ErrorClass:
    """Classify an error message by case-insensitive substrings, first class wins."""
    lower = text.lower()
    for cls, needles in _ERROR_CLASSES:
        if any(n in lower for n in needles):
            return cls
    return ErrorClass.OTHER


_FAQ_TAGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("firmware-mintemp", ("mintemp",)),
    ("firmware-maxtemp", ("maxtemp",)),
    ("firmware-thermal-runaway", ("runaway",)),
    ("firmware-heating-failed", ("heating failed",)),
    ("firmware-probing-failed", ("probing failed", "bed leveling", "reference point",
                                 "bltouch")),
)


def faq_tag(text: str) -> str | None:
    """The OctoPrint FAQ tag (`firmware-<tag>`) matching an error message, or None."""
    lower = text.lower()
    for tag, needles in _FAQ_TAGS:
        if any(n in lower for n in needles):
            return tag
    return None


# `//` debug lines and action commands


def is_debug(line: str) -> bool:
    """Host-directed debug/action line (`//...`)."""
    return line.startswith("//")


def parse_action(line: str) -> tuple[str, str] | None:
    """(name, params) of `//action:<name> <params>` (`// action:` too); None for anything else.

    An empty action name (`//action:`) gives None.
    """
    if not line.startswith("//"):
        return None
    rest = line[2:].strip()
    if not rest.startswith("action:"):
        return None
    name, _, params = rest[7:].strip().partition(" ")
    if not name:
        return None
    return name, params.strip()


# Temperatures

Reading = tuple[float | None, float | None]  # (actual, target)
Temps = dict[str, Reading]

# The target may not run into a word, `.` or `:` (so "T:210 31pS_XYZ:5" has no target 31).
_TEMP_TOKEN_RE = re.compile(
    rf"(?:^|\s)(B|C|T\d*|\w+):\s*({_FLOAT})(?:\s*/?\s*({_FLOAT})(?![\w.:]))?")
_TOOL_KEY_RE = re.compile(r"T\d+")


def is_temperature_line(line: str) -> bool:
    """A temperature report (M105 answer or autoreport).

    Tool markers (` T:`, `T:`, ` T0:`, `T0:`) always count; bed-only markers (` B:`, `B:`)
    count only when no `A:` occurs in the line (keeps Marlin's M114 `Count: A: B: C:` tail out
    while Prusa's ambient `A:` sensor next to `T:` still counts).
    """
    if " T:" in line or " T0:" in line or line.startswith(("T:", "T0:")):
        return True
    return (" B:" in line or line.startswith("B:")) and "A:" not in line


def parse_temperatures(line: str) -> Temps:
    """sensor -> (actual, target) for every sensor token; first occurrence of a sensor wins."""
    temps: Temps = {}
    for m in _TEMP_TOKEN_RE.finditer(line):
        key = m.group(1)
        if key in temps:
            continue
        target = m.group(3)
        temps[key] = (float(m.group(2)), float(target) if target is not None else None)
    return temps


def canonical_tools(temps: Mapping[str, Reading], current_tool: int) -> Temps:
    """A new dict with the bare `T` key resolved to a numbered tool key.

    Only `T` -> `T<current_tool>`; `T` with `T0` -> `T` dropped (copied to `T<current_tool>` if
    that key is missing); `T` with `T1...` but no `T0` (Smoothieware) -> `T` becomes `T0`.
    """
    if "T" not in temps:
        return dict(temps)
    has_tools = any(_TOOL_KEY_RE.fullmatch(k) for k in temps)
    current_key = f"T{current_tool}"
    if not has_tools:
        return {(current_key if k == "T" else k): v for k, v in temps.items()}
    if "T0" in temps:
        out = {k: v for k, v in temps.items() if k != "T"}
        if current_key not in out:
            out[current_key] = temps["T"]
        return out
    return {("T0" if k == "T" else k): v for k, v in temps.items()}


# Position (M114)

_POSITION_RE = re.compile(
    rf"X:\s*(?P<x>{_FLOAT})\s*Y:\s*(?P<y>{_FLOAT})\s*Z:\s*(?P<z>{_FLOAT})\s*"
    rf"(?:E:\s*(?P<e>{_FLOAT})|(?P<multi>(?:E\d+:\s*{_FLOAT}\s*)+))"
)
_EXTRUDER_RE = re.compile(rf"E\d+:\s*({_FLOAT})")


@attrs.frozen(slots=True)
class Position:
    """A position reported by the printer; `extruders` holds E0, E1, ... when reported so."""

    x: float | None
    y: float | None
    z: float | None
    e: float | None
    extruders: tuple[float, ...] = ()


def parse_position(line: str) -> Position | None:
    """The M114 position in `line` (an E value is required), or None. With one E per
    extruder, `e` is None and `extruders` holds them (the session knows the current tool)."""
    if "X:" not in line or "Y:" not in line or "Z:" not in line:
        return None
    m = _POSITION_RE.search(line)
    if m is None:
        return None
    x, y, z = float(m.group("x")), float(m.group("y")), float(m.group("z"))
    single = m.group("e")
    if single is not None:
        return Position(x, y, z, float(single))
    extruders = tuple(float(v) for v in _EXTRUDER_RE.findall(m.group("multi")))
    return Position(x, y, z, None, extruders)


# Firmware info (M115) and capabilities

_FIRMWARE_KEY_RE = re.compile(r"(?:^|\s+)([A-Z][A-Z0-9_]*):")


def parse_firmware_info(line: str) -> dict[str, str] | None:
    """KEY -> value of an M115 answer (`NAME:` in the line, or Malyan's leading `NAME.`).

    Text before the first key (such as a leading `ok`) is dropped. None when the line is not an
    M115 answer or yields no key at all.
    """
    if line.startswith("NAME."):
        line = "NAME:" + line[5:]
    elif "NAME:" not in line:
        return None
    matches = list(_FIRMWARE_KEY_RE.finditer(line))
    if not matches:
        return None
    info: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        info[m.group(1)] = line[m.end():end].strip()
    return info


def firmware_name(info: dict[str, str]) -> str | None:
    """FIRMWARE_NAME, or Malyan's `NAME VER`; None when neither is there."""
    name = info.get("FIRMWARE_NAME")
    if name is not None:
        return name
    name = info.get("NAME")
    if name is not None and "malyan" in name.lower():
        ver = info.get("VER", "")
        return f"{name} {ver}".strip()
    return None


def is_capability_line(line: str) -> bool:
    """A `Cap:NAME:0|1` line of the M115 capability report (any case of `cap:`)."""
    return line[:4].lower() == "cap:"


def parse_capability(line: str) -> tuple[str, bool] | None:
    """(NAME, enabled) of a well-formed `Cap:NAME:0|1` line, else None."""
    if line[:4].lower() != "cap:":
        return None
    parts = line[4:].split(":")
    if len(parts) != 2:
        return None
    name, flag = parts[0].strip(), parts[1].strip()
    if not name or flag not in ("0", "1"):
        return None
    return name.upper(), flag == "1"


# Invalid tool

_INVALID_TOOL_RE = re.compile(r"(?<![A-Za-z0-9])T(\d+)")
_INVALID_TOOL_AFTER_RE = re.compile(r"invalid extruder\s*(?:number)?\s*:?\s*T?(\d+)",
                                    re.IGNORECASE)


def parse_invalid_tool(line: str) -> int | None:
    """The tool of an "invalid extruder" report (`echo:T3 Invalid extruder` -> 3).

    -1 when the text is there but names no tool; None when the text is not there.
    """
    if "invalid extruder" not in line.lower():
        return None
    m = _INVALID_TOOL_RE.search(line) or _INVALID_TOOL_AFTER_RE.search(line)
    return int(m.group(1)) if m else -1
