"""Steady timelapse frames (`timelapse.park`): the file's position as its own lines set it, the
layer change it sees coming, and the block the session queues before that layer's first
extruding move.

The block: the `timelapsePark` script (retract, lift, travel to the park position, M400), a
marker that tells the listeners the head is parked once the printer acknowledged everything
up to the M400, a marker that holds the job until the frame is shot (`release`) or `wait`
seconds have passed, then the exact position, feed rate and extrusion state the file had
(absolute moves back, the retraction pushed back in relative E, the file's E and axis modes
and feed rate restored). Then the held file line goes out unchanged.

A layer is the Z of an extruding move (E forward with X or Y): retraction hops and travel
lifts do not extrude, so they are no layers. Fed only file lines, and only when steady frames
are on, so a printer without them pays nothing per line. Pure: no trio, no IO.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from pipeline.config.camera import ParkSpec
from pipeline.config.schema import ProfileSpec
from pipeline.errors import ScriptError
from pipeline.gcode import Command, param_value

log = logging.getLogger("printpipe.timelapse")

INF = float("inf")
SCRIPT = "timelapsePark"
_MOVES = frozenset({"G0", "G1", "G2", "G3"})
_WATCHED = _MOVES | {"G90", "G91", "M82", "M83", "G92", "G28"}
_EPSILON = 1e-4
TAGS = frozenset({"source:script", f"script:{SCRIPT}", "trigger:timelapse.park"})


@attrs.frozen
class Parked:
    """What the listeners hear when the head waits for a frame."""

    layer: int
    z: float
    release: Callable[[], None] = attrs.field(eq=False, repr=False)


class Sink(Protocol):
    """How the block is queued: the session's (its queuing phase, rules and job queue)."""

    def enqueue(self, line: str | Command, *, tags: frozenset[str] = ...,
                cmd_type: str | None = None, part_of_job: bool = False) -> bool: ...

    def add_marker(self, fn: Callable[[], None],
                   until: Callable[[], bool] | None = None) -> None: ...


def _fmt(value: float) -> str:
    """A coordinate as G-code writes it: at most 5 decimals, no trailing zeros."""
    text = f"{value:.5f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class Parking:
    def __init__(self, spec: ParkSpec, profile: ProfileSpec, *, sink: Sink,
                 render: Callable[[str, Mapping[str, Any]], list[Command]],
                 clock: Callable[[], float]) -> None:
        self.spec = spec
        self._sink = sink
        self._render = render
        self._clock = clock
        self._park_y = profile.volume.depth if spec.y is None else spec.y
        #: Who hears that the head is parked (the camera); each must call `release` once.
        self.listeners: list[Callable[[Parked], None]] = []
        self.reset()

    def reset(self) -> None:
        """A new print: nothing known about the position or the layers."""
        self.pos: dict[str, float | None] = dict.fromkeys("xyze")
        self.f: float | None = None
        self.relative_axes = False
        self.relative_e = False
        self.layer_z: float | None = None
        self.layers = 0
        self.parks = 0
        self.hold_until = INF
        self.released = True

    # ---- the file's position ------------------------------------------------------------
    def before(self, cmd: Command) -> bool:
        """A file line is about to go out: track it; True when it is the first extruding move
        of a layer that gets a frame, and the park block was queued before it."""
        g = cmd.gcode
        if g not in _WATCHED:
            return False
        if g not in _MOVES:
            self._mode(g, cmd.line)
            return False
        line = cmd.line
        pos = self.pos
        before = (pos["x"], pos["y"], pos["z"], self.f)
        extruding = False
        rel = self.relative_axes
        for axis, letter in (("x", "X"), ("y", "Y"), ("z", "Z")):
            if letter in line:
                v = param_value(line, letter)
                if v is not None:
                    old = pos[axis]
                    pos[axis] = (old + v if old is not None else None) if rel else v
        if "E" in line:
            e = param_value(line, "E")
            if e is not None:
                if rel or self.relative_e:
                    extruding = e > 0
                else:
                    old = pos["e"]
                    extruding = old is not None and e > old
                    pos["e"] = e
        if "F" in line:
            f = param_value(line, "F")
            if f is not None:
                self.f = f
        if not extruding or ("X" not in line and "Y" not in line):
            return False
        z = pos["z"]
        if z is None or (self.layer_z is not None and abs(z - self.layer_z) < _EPSILON):
            return False
        self.layer_z = z
        self.layers += 1
        if (self.layers - 1) % self.spec.every:
            return False
        x, y, old_z, f = before
        if x is None or y is None or old_z is None:
            log.warning("steady frame of layer %d skipped: the file's X/Y/Z are not known yet",
                        self.layers)
            return False
        return self._park(x, y, old_z, f, z)

    def _mode(self, g: str, line: str) -> None:
        if g == "G90":
            self.relative_axes = False
        elif g == "G91":
            self.relative_axes = True
        elif g == "M82":
            self.relative_e = False
        elif g == "M83":
            self.relative_e = True
        elif g == "G92":
            for axis in "xyze":
                if axis.upper() in line:
                    self.pos[axis] = param_value(line, axis.upper())
            if not any(a in line for a in "XYZE"):
                self.pos = dict.fromkeys("xyze", 0.0)
        elif g == "G28":  # homed axes are where the firmware's homing put them: unknown
            named = [a for a in "xyz" if a.upper() in line]
            for axis in named or "xyz":
                self.pos[axis] = None

    # ---- the block ------------------------------------------------------------------------
    def _park(self, x: float, y: float, z: float, f: float | None, layer_z: float) -> bool:
        s = self.spec
        context = {"park": {"x": s.x, "y": self._park_y, "lift": s.lift, "retract": s.retract,
                            "retract_speed": s.retract_speed, "travel_speed": s.travel_speed,
                            "z_speed": s.z_speed, "layer": self.layers, "z": layer_z}}
        try:
            cmds = self._render(SCRIPT, context)
        except ScriptError as exc:
            log.error("steady frame of layer %d skipped: %s", self.layers, exc)
            return False
        sink = self._sink
        for cmd in cmds:
            sink.enqueue(cmd, part_of_job=True)
        if not cmds or cmds[-1].gcode != "M400":
            sink.enqueue(Command.parse("M400", tags=TAGS), part_of_job=True)
        self.parks += 1
        self.released = False
        layer = self.layers
        sink.add_marker(lambda: self._parked(layer, layer_z))
        sink.add_marker(self._resumed, until=lambda: self.released)
        for line in self.restore_lines(x, y, z, f):
            sink.enqueue(Command.parse(line, tags=TAGS), part_of_job=True)
        return True

    def restore_lines(self, x: float, y: float, z: float, f: float | None) -> list[str]:
        """Back to the file's exact position, feed rate and modes (the park script leaves
        the printer in G90, and in M83 when it retracted)."""
        s = self.spec
        out = ["G90", f"G1 X{_fmt(x)} Y{_fmt(y)} F{_fmt(s.travel_speed)}",
               f"G1 Z{_fmt(z)} F{_fmt(s.z_speed)}"]
        if s.retract:
            out += ["M83", f"G1 E{_fmt(s.retract)} F{_fmt(s.retract_speed)}"]
        out.append("M83" if self.relative_e else "M82")
        if f is not None:
            out.append(f"G1 F{_fmt(f)}")
        if self.relative_axes:
            out.append("G91")
        return out

    def _parked(self, layer: int, z: float) -> None:
        """Everything up to the M400 is acknowledged: the head waits at the park position."""
        if self.released:
            return  # the print stopped meanwhile
        self.hold_until = self._clock() + self.spec.wait
        if not self.listeners:
            self.release()
            return
        frame = Parked(layer, z, self.release)
        for listener in self.listeners:
            try:
                listener(frame)
            except Exception:
                log.exception("a steady-frame listener failed; the print goes on")
                self.release()

    def _resumed(self) -> None:
        self.hold_until = INF

    def release(self) -> None:
        """The frame is shot (or given up): the restore lines and the file go on."""
        self.released = True
        self.hold_until = INF
        self.wake()

    def timed_out(self) -> None:
        log.warning("steady frame: no frame within %.0f s; the print goes on without it",
                    self.spec.wait)
        self.release()

    #: Set by the session: wakes the link when the hold ends.
    wake: Callable[[], None] = staticmethod(lambda: None)
