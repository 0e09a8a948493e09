"""The crash journal's content and the recovery prologue's values, sans-IO.

While a print runs, `PrintJournal` follows what the printer acknowledged. The session hands
it every command it writes (`trail`); at each `poll` it finds the engine's `last_acked` in that
trail and applies everything up to it to a `MachineState` (X/Y/Z/E, absolute or relative
modes, feed rate, fan, heater targets, tool): the state after the last *acknowledged* line,
not the last sent one (with a send window several lines are in flight). `Journal` is the
record persisted as JSON (file identity, byte offset and line of the last acknowledged file
line, that state); `JournalPolicy` decides when to write it (at most about once a second, at
once at a layer change, only when something changed) and when to clear it (the print finished
or was cancelled; a print that failed because the link or the printer went away keeps it).
`recovery_context` is what the `beforePrintRecovered` script sees as `recovery`.

Pure: no IO, no trio, no clock reads (the caller passes `now` and the wall time).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from pipeline.errors import HostError
from pipeline.gcode import Command, param_value, tool_number
from pipeline.hooks.scripts import Plain
from pipeline.session.filejob import file_line, file_position
from pipeline.session.tracking import Tracker

VERSION = 1
#: The script that restores the machine before a recovered print continues.
PROLOGUE = "beforePrintRecovered"
_PROLOGUE_TAG = f"script:{PROLOGUE}"
#: A trail this long without the acknowledged command in it (it should never happen) is cut
#: to its newest TRAIL_KEEP commands, applying the rest, so memory stays bounded.
TRAIL_LIMIT = 200_000
TRAIL_KEEP = 1_000
_WORDS = re.compile(r"([XYZEFxyzef])\s*([-+]?[0-9]*\.?[0-9]+)")


class JournalError(HostError):
    """A journal that cannot be read or used (corrupt, or its file changed)."""


class MachineState:
    """What the printer was doing after a given command: the values recovery restores.

    Modes follow Marlin: G90/G91 switch every axis, E included; M82/M83 then switch E alone.
    """

    def __init__(self) -> None:
        self.x: float | None = None
        self.y: float | None = None
        self.z: float | None = None
        self.e: float | None = None
        self.feedrate: float | None = None
        self.relative_axes = False
        self.relative_e = False
        self.fan = 0
        self.tool = 0
        self.hotends: dict[int, float] = {}
        self.bed: float | None = None
        self._apply: dict[str | None, Callable[[Command], None]] = {
            "G0": self._move, "G1": self._move, "G92": self._set, "G28": self._home,
            "G90": self._absolute, "G91": self._relative, "M82": self._e_absolute,
            "M83": self._e_relative, "M104": self._hotend, "M109": self._hotend,
            "M140": self._bed, "M190": self._bed, "M106": self._fan, "M107": self._fan_off,
            "T": self._tool,
        }

    def apply(self, cmd: Command) -> None:
        fn = self._apply.get(cmd.gcode)
        if fn is not None:
            fn(cmd)

    def _move(self, cmd: Command) -> None:
        for letter, text in _WORDS.findall(cmd.line):
            value = float(text)
            axis = letter.lower()
            if axis == "f":
                self.feedrate = value
                continue
            relative = self.relative_e if axis == "e" else self.relative_axes
            if relative:
                old = getattr(self, axis)
                value = (old if old is not None else 0.0) + value
            setattr(self, axis, value)

    def _set(self, cmd: Command) -> None:
        for letter, text in _WORDS.findall(cmd.line):
            if letter.lower() != "f":
                setattr(self, letter.lower(), float(text))

    def _home(self, cmd: Command) -> None:
        axes = [a for a in "xyz" if a.upper() in cmd.line[3:].upper()]
        for axis in axes or "xyz":
            setattr(self, axis, None)  # wherever home is: unknown until the next move

    def _absolute(self, cmd: Command) -> None:
        self.relative_axes = self.relative_e = False

    def _relative(self, cmd: Command) -> None:
        self.relative_axes = self.relative_e = True

    def _e_absolute(self, cmd: Command) -> None:
        self.relative_e = False

    def _e_relative(self, cmd: Command) -> None:
        self.relative_e = True

    def _hotend(self, cmd: Command) -> None:
        s = param_value(cmd.line, "S")
        target = s if s is not None else param_value(cmd.line, "R")
        if target is not None:
            t = param_value(cmd.line, "T")
            self.hotends[int(t) if t is not None else self.tool] = target

    def _bed(self, cmd: Command) -> None:
        s = param_value(cmd.line, "S")
        target = s if s is not None else param_value(cmd.line, "R")
        if target is not None:
            self.bed = target

    def _fan(self, cmd: Command) -> None:
        if param_value(cmd.line, "P") in (None, 0.0):  # the part-cooling fan only
            s = param_value(cmd.line, "S")
            self.fan = 255 if s is None else max(0, min(255, round(s)))

    def _fan_off(self, cmd: Command) -> None:
        if param_value(cmd.line, "P") in (None, 0.0):
            self.fan = 0

    def _tool(self, cmd: Command) -> None:
        n = tool_number(cmd.line)
        if n is not None:
            self.tool = n

    def values(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "z": self.z, "e": self.e, "f": self.feedrate,
                "relative_axes": self.relative_axes, "relative_e": self.relative_e,
                "fan": self.fan, "tool": self.tool,
                "hotends": dict(sorted(self.hotends.items())), "bed": self.bed}

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> MachineState:
        state = cls()
        state.x, state.y, state.z, state.e = v["x"], v["y"], v["z"], v["e"]
        state.feedrate, state.fan, state.tool, state.bed = v["f"], v["fan"], v["tool"], v["bed"]
        state.relative_axes, state.relative_e = v["relative_axes"], v["relative_e"]
        state.hotends = dict(v["hotends"])
        return state


@attrs.frozen
class FileIdentity:
    """Which file a journal belongs to: where it is on disk, how it is shown, and what it
    was (size and modification time, to refuse a file that changed since)."""

    disk: str
    name: str
    path: str
    size: int
    mtime_ns: int
    origin: str = "local"


@attrs.frozen
class Journal:
    """The persisted record of an interrupted print."""

    file: FileIdentity
    filepos: int           # the byte after the last acknowledged file line
    line: int              # that line's number in the file (1-based)
    state: Mapping[str, Any]   # MachineState.values() after it
    time: float            # wall-clock seconds when it was taken

    def to_json(self) -> dict[str, Any]:
        f = self.file
        return {"version": VERSION, "time": self.time, "filepos": self.filepos,
                "line": self.line, "state": {**self.state, "hotends": {
                    str(k): v for k, v in self.state["hotends"].items()}},
                "file": {"disk": f.disk, "name": f.name, "path": f.path, "size": f.size,
                         "mtime_ns": f.mtime_ns, "origin": f.origin}}

    @classmethod
    def from_json(cls, data: Any) -> Journal:
        """Raises JournalError naming what is wrong."""
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if data.get("version") != VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            f, s = data["file"], data["state"]
            file = FileIdentity(_str(f["disk"]), _str(f["name"]), _str(f["path"]),
                                _int(f["size"]), _int(f["mtime_ns"]), _str(f["origin"]))
            state: dict[str, Any] = {k: _num(s[k]) for k in ("x", "y", "z", "e", "f", "bed")}
            state.update(relative_axes=_bool(s["relative_axes"]),
                         relative_e=_bool(s["relative_e"]), fan=_int(s["fan"]),
                         tool=_int(s["tool"]),
                         hotends={int(k): _real(v) for k, v in _dict(s["hotends"]).items()})
            return cls(file, _int(data["filepos"]), _int(data["line"]), state,
                       _real(data["time"]))
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise JournalError(f"the print journal is not valid ({what})") from None

    def problem(self) -> str | None:
        """Why this journal cannot be recovered whatever the file, or None."""
        if self.state["z"] is None:
            return (f"the print of {self.file.path} was interrupted before its first move in Z; "
                    "start it again")
        return None

    def payload(self) -> dict[str, Any]:
        """The PrintInterrupted payload (names.py lists the keys)."""
        f, s = self.file, self.state
        return {"name": f.name, "path": f.path, "origin": f.origin, "size": f.size,
                "filepos": self.filepos, "line": self.line, "time": self.time,
                "position": {k: s[k] for k in "xyzef"}, "relative_e": s["relative_e"],
                "fan": s["fan"], "tool": s["tool"], "targets": _targets(s)}

    def summary(self) -> str:
        return (f"{self.file.path} at line {self.line} (byte {self.filepos}), "
                f"Z {self.state['z']}")


def _targets(s: Mapping[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {f"tool{k}": v for k, v in s["hotends"].items()}
    out["bed"] = s["bed"]
    return out


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{v!r} is not a string")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TypeError(f"{v!r} is not a count")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{v!r} is not true or false")
    return v


def _real(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise TypeError(f"{v!r} is not a number")
    return float(v)


def _num(v: Any) -> float | None:
    return None if v is None else _real(v)


def _dict(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise TypeError(f"{v!r} is not an object")
    return v


def recovery_context(journal: Journal) -> dict[str, Any]:
    """The `recovery` variable of the beforePrintRecovered script: numbers rounded to 4
    places and printed plain. JournalError for a number that is not finite."""
    s, f = journal.state, journal.file

    def r(v: float | None) -> Plain | None:
        if v is not None and not math.isfinite(v):
            raise JournalError(f"the print journal holds {v!r}, not a finite number")
        return None if v is None else Plain(round(v, 4))

    return {"file": {"name": f.name, "path": f.path, "origin": f.origin, "size": f.size},
            "line": journal.line, "filepos": journal.filepos,
            "x": r(s["x"]), "y": r(s["y"]), "z": r(s["z"]), "e": r(s["e"]), "f": r(s["f"]),
            "relative_extruder": s["relative_e"], "fan": s["fan"], "tool": s["tool"],
            "hotends": {k: r(v) for k, v in s["hotends"].items() if v},
            "bed": r(s["bed"]) if s["bed"] else None}


class JobView(Protocol):
    """What the journal reads of job control."""

    @property
    def result(self) -> Any: ...


class AckView(Protocol):
    @property
    def last_acked(self) -> Command | None: ...


class PrintJournal:
    """Follows one print for the journal: the commands written since the last poll, and the
    machine state after the last acknowledged one."""

    def __init__(self, jobs: JobView, engine: AckView, tracker: Tracker, *,
                 interval: float = 1.0) -> None:
        self._jobs = jobs
        self._engine = engine
        self._tracker = tracker
        #: The session extends this with every command it writes while `active`.
        self.trail: deque[Command] = deque()
        #: Someone polls this journal (the service's writer task): only then does a print
        #: make it active, so that the trail never grows unread.
        self.enabled = False
        self.active = False
        #: The print failed (`settle`): nothing acknowledged since is the print's.
        self.settled = False
        self.file: FileIdentity | None = None
        self.state = MachineState()
        self.filepos: int | None = None
        self.line: int | None = None
        self.interval = interval  # storage.journal_interval
        self.policy = JournalPolicy(interval)

    def begin(self, file: FileIdentity, resume: Journal | None = None) -> None:
        """A print starts, from what the session knows now, or a recovered one continues
        from `resume`."""
        self.trail.clear()
        self.state = (MachineState.from_values(resume.state) if resume is not None
                      else _tracked_state(self._tracker))
        self.file, self.active = file, self.enabled
        self.settled = False
        self.filepos = resume.filepos if resume else None
        self.line = resume.line if resume else None
        self.policy = JournalPolicy(self.interval)

    def catch_up(self) -> None:
        """Apply what was acknowledged since the last call (see the module's docstring), up
        to the newest file line among it: when the last acknowledged command is not a file
        line (a temperature poll, a cancel's commands), the file lines before it count too
        (the printer answers in order); nothing more once the print failed (`settle`)."""
        if self.settled:
            return
        last = self._engine.last_acked
        trail = self.trail
        if last is not None:
            for i in range(len(trail) - 1, -1, -1):
                if trail[i] is last:
                    for j in range(i, -1, -1):
                        pos = file_position(trail[j])
                        if pos is not None:
                            self.filepos, self.line = pos, file_line(trail[j])
                            self._apply(j + 1)
                            return
                    break
        if len(trail) > TRAIL_LIMIT:  # never expected: bound the memory anyway
            self._apply(len(trail) - TRAIL_KEEP)

    def settle(self) -> None:
        """The link or the printer failed the print: catch up with what the printer
        acknowledged until now, and stop there. What it acknowledges later (a printer that
        reset answers the resynchronisation) comes after lines it lost, which must not count
        as taken for preceding an acknowledged command."""
        if self.active and not self.settled:
            self.catch_up()
            self.settled = True

    def _apply(self, count: int) -> None:
        trail, state = self.trail, self.state
        for _ in range(count):
            cmd = trail.popleft()
            if _PROLOGUE_TAG not in cmd.tags:  # the prologue restores this very state
                state.apply(cmd)

    def record(self, wall: float) -> Journal | None:
        if self.file is None or self.filepos is None or self.line is None:
            return None  # no file line acknowledged yet: nothing to resume
        return Journal(self.file, self.filepos, self.line, self.state.values(), wall)

    def poll(self, now: float, wall: float) -> tuple[str, dict[str, Any] | None] | None:
        """("write", json), ("clear", None) or None, as the policy says."""
        if not self.active:
            return None
        self.catch_up()
        result = self._jobs.result
        if result is not None:
            self.active = False
            self.trail.clear()
            if not result.interrupted:
                return ("clear", None)
            journal = self.record(wall)
            return ("write", journal.to_json()) if journal is not None else None
        journal = self.record(wall)
        if journal is not None and self.policy.due(journal, now):
            return ("write", journal.to_json())
        return None


def _tracked_state(t: Tracker) -> MachineState:
    """The state before a print's first line, as the session tracked it (targets and fan
    set before the print count)."""
    s = MachineState()
    s.z, s.feedrate, s.fan, s.tool = t.z, t.feedrate, int(t.fan), t.tool
    s.relative_axes, s.relative_e = t.relative_axes, t.relative_extruder
    s.hotends = {n: v[1] for n, v in t.tools.items() if v[1] is not None}
    s.bed = t.bed[1]
    return s


class JournalPolicy:
    """When to write: only when the record changed; at once when Z changed (a layer change)
    unless the last write was one too (a spiral print changes Z all the time), else at most
    once per `interval` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last: Journal | None = None
        self._at = -math.inf
        self._layer = False  # the last write carried a new Z

    def due(self, journal: Journal, now: float) -> bool:
        last = self._last
        if last is not None and attrs.evolve(journal, time=last.time) == last:
            return False
        layer = last is None or journal.state["z"] != last.state["z"]
        if not (layer and not self._layer) and now - self._at < self.interval:
            return False
        self._last, self._at, self._layer = journal, now, layer
        return True
