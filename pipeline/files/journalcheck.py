"""Whether a crash journal read from disk may be trusted, before anything of it is shown or
sent. A journal is a file anyone with write access to the state folder could have written,
so every field is checked: known fields of known types and nothing else, every number finite
and in range for the printer's profile (positions within its volume plus a margin, heater
targets within its limits, a tool it has, fan 0..255, a feed rate above 0 and bounded), the
file inside the storage folder (no `..`, no absolute path elsewhere, no symlink out of it),
and the resume offset at the start of a line of that file, within it, with the line number
it records. Each refusal is one line naming the field and the problem (`JournalRefused`).

The record's layout is pipeline/session/recovery.py's `Journal.to_json`; this module checks
the raw JSON object, before it becomes a `Journal`. Blocking file IO: run `place` and
`check_offset` in a thread from trio.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from typing import Any

from pipeline.config.schema import ProfileSpec
from pipeline.errors import HostError

#: Millimetres beyond the profile's volume a recorded X/Y/Z may lie (origins at the bed's
#: centre, probe offsets, parking positions); below the bed Z may go this far only.
MARGIN = 100.0
BELOW_BED = 10.0
#: The largest extruder position (mm of filament) and feed rate (mm/min) a journal may hold.
MAX_E = 1e6
MAX_FEED = 1e5
#: The latest time a journal may carry (seconds since 1970: the year 5138).
MAX_TIME = 1e11
MAX_TEXT = 4096
MAX_COUNT = 2**53
#: Bytes read at a time while counting the lines before the resume offset.
CHUNK = 1 << 20

_TOP = ("version", "time", "filepos", "line", "file", "state")
_FILE = ("disk", "name", "path", "size", "mtime_ns", "origin")
_STATE = ("x", "y", "z", "e", "f", "relative_axes", "relative_e", "fan", "tool", "hotends",
          "bed")


class JournalRefused(HostError):
    """A journal that must not be used: one line naming the field and the problem."""


class JournalElsewhere(JournalRefused):
    """The journal's file lies outside the storage folder (a `printpipe print` of a file
    elsewhere): only the user may name it (`printpipe recover FILE`), so it is kept."""


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else f"{text[:32]}... ({len(text)} characters)"


def _fields(where: str, v: Any, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise JournalRefused(f"{where or 'the journal'} {_show(v)} is not an object")
    for key in v:
        if key not in keys:
            raise JournalRefused(f"{where}{'.' if where else ''}{_show(key)[1:-1]} is not a "
                                 "field of a print journal")
    missing = [f"{where}{'.' if where else ''}{key}" for key in keys if key not in v]
    if missing:
        raise JournalRefused(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             "missing")
    return v


def _number(where: str, v: Any, low: float, high: float, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise JournalRefused(f"{where} {_show(v)} is not a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise JournalRefused(f"{where} {v!r} is not a finite number")
    if not low <= v <= high:
        raise JournalRefused(f"{where} {_show(v)} is outside {what}")
    return float(v)


def _optional(where: str, v: Any, low: float, high: float, what: str) -> None:
    if v is not None:
        _number(where, v, low, high, what)


def _count(where: str, v: Any, high: int = MAX_COUNT) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise JournalRefused(f"{where} {_show(v)} is not a whole number")
    if not 0 <= v <= high:
        raise JournalRefused(f"{where} {_show(v)} is outside 0..{high}")
    return v


def _text(where: str, v: Any) -> str:
    if not isinstance(v, str):
        raise JournalRefused(f"{where} {_show(v)} is not a string")
    if not v or len(v) > MAX_TEXT or not v.isprintable():
        raise JournalRefused(f"{where} {_show(v)} is not a printable name of at most "
                             f"{MAX_TEXT} characters")
    return v


def _flag(where: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise JournalRefused(f"{where} {_show(v)} is not true or false")


def check_record(data: Any, profile: ProfileSpec) -> None:
    """Raise JournalRefused unless `data` is a journal of this printer's profile."""
    if isinstance(data, dict) and "version" in data and (
            data["version"] != 1 or isinstance(data["version"], bool)):
        raise JournalRefused(f"version {_show(data['version'])} is not a known journal version")
    top = _fields("", data, _TOP)
    _number("time", top["time"], 0, MAX_TIME, "0..1e11 seconds")
    f = _fields("file", top["file"], _FILE)
    for key in ("disk", "name", "path"):
        _text(f"file.{key}", f[key])
    if f["origin"] != "local":
        raise JournalRefused(f"file.origin {_show(f['origin'])} is not 'local'")
    size = _count("file.size", f["size"])
    _count("file.mtime_ns", f["mtime_ns"], 2**63)
    filepos = _count("filepos", top["filepos"])
    if filepos > size:
        raise JournalRefused(f"filepos {filepos} is past the end of {f['path']} ({size} bytes)")
    line = _count("line", top["line"])
    if not 1 <= line <= filepos:  # every line ends in at least one byte
        raise JournalRefused(f"line {line} cannot end by filepos {filepos}")
    _check_state(_fields("state", top["state"], _STATE), profile)


def _check_state(s: Mapping[str, Any], profile: ProfileSpec) -> None:
    vol, limits = profile.volume, profile.limits
    for axis, size in (("x", vol.width), ("y", vol.depth)):
        reach = size + MARGIN
        _optional(f"state.{axis}", s[axis], -reach, reach,
                  f"±{reach:g} mm (the printer's volume of {size:g} mm plus {MARGIN:g})")
    _optional("state.z", s["z"], -BELOW_BED, vol.height + MARGIN,
              f"-{BELOW_BED:g}..{vol.height + MARGIN:g} mm (the printer's height plus "
              f"{MARGIN:g})")
    _optional("state.e", s["e"], -MAX_E, MAX_E, f"±{MAX_E:g} mm")
    f = s["f"]
    _optional("state.f", f, 0, MAX_FEED, f"0..{MAX_FEED:g} mm/min")
    if f is not None and f <= 0:
        raise JournalRefused(f"state.f {_show(f)} is not a feed rate (it must be above 0)")
    _flag("state.relative_axes", s["relative_axes"])
    _flag("state.relative_e", s["relative_e"])
    _count("state.fan", s["fan"], 255)
    tools = profile.extruders
    has = f"a tool of this printer (printer.profile.extruders: {tools})"
    if _count("state.tool", s["tool"]) >= tools:
        raise JournalRefused(f"state.tool {s['tool']} is not {has}")
    hotends = s["hotends"]
    if not isinstance(hotends, dict):
        raise JournalRefused(f"state.hotends {_show(hotends)} is not an object")
    if len(hotends) > tools:
        raise JournalRefused(f"state.hotends has {len(hotends)} entries for {tools} tools")
    for key, target in hotends.items():
        if not (isinstance(key, str) and key.isdigit() and key.isascii() and int(key) < tools):
            raise JournalRefused(f"state.hotends.{_show(key)[1:-1]} is not {has}")
        _heater(f"state.hotends.{key}", target, "hotend", limits.hotend)
    if s["bed"] is not None:
        _heater("state.bed", s["bed"], "bed", limits.bed)


def _heater(where: str, v: Any, kind: str, limit: float) -> None:
    _number(where, v, 0, limit, f"0..{limit:g} °C (printer.profile.limits.{kind})")


def place(disk: str, storage: str, named: str | None = None) -> str:
    """The real path of the journal's file, which must lie inside the storage folder (or be
    the file the user named, `printpipe recover FILE`); raises JournalRefused."""
    if not os.path.isabs(disk):
        raise JournalRefused(f"file.disk {disk!r} is not an absolute path")
    if ".." in disk.split(os.sep):
        raise JournalRefused(f"file.disk {disk!r} climbs out of its folder ('..')")
    real, root = os.path.realpath(disk), os.path.realpath(storage)
    if real.startswith(root + os.sep):
        return real
    if named is not None and real == os.path.realpath(named):
        return real
    written = os.path.normpath(disk)
    if any(written.startswith(r + os.sep) for r in (root, os.path.abspath(storage))):
        raise JournalRefused(f"file.disk {disk!r} leads out of the storage folder {root} "
                             f"through a link (to {real})")
    if named is not None:
        raise JournalRefused(f"file.disk {disk!r} is not {named}, the file named to resume")
    raise JournalElsewhere(f"file.disk {disk!r} is outside the storage folder {root} (if "
                           f"that is the file you printed: printpipe recover {disk})")


def check_offset(real: str, filepos: int, line: int, shown: str) -> None:
    """Raise JournalRefused unless `filepos` starts a line of the regular file at `real` (or
    is its end) and `line` lines end by it. Reads the file up to `filepos`."""
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO would block a plain open
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JournalRefused(f"file.disk {real!r} is not a regular file")
        if filepos > st.st_size:
            raise JournalRefused(f"filepos {filepos} is past the end of {shown} "
                                 f"({st.st_size} bytes)")
        lines, left, last = 0, filepos, b"\n"
        while left:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            left -= len(chunk)
            last = chunk[-1:]
        if last != b"\n":
            if filepos != st.st_size:
                raise JournalRefused(f"filepos {filepos} is not at the start of a line of "
                                     f"{shown}")
            lines += 1  # the last line, without a line break
        if lines != line:
            raise JournalRefused(f"line {line} does not match filepos {filepos}: {lines} "
                                 f"lines of {shown} end by it")
