"""Runs named G-code scripts as pipeline inputs: builds the seed's context from the host's
state, asks the `comm.protocol.scripts` stages for prefixes, postfixes and variables, renders
the whole script first (an error sends nothing and names the script and line), and queues
the lines tagged `source:script`, `script:<name>` and the trigger. `GcodeScript<Name>Running`
fires when everything before the script is acknowledged (its first line goes out next) and
`...Finished` when its last line is acknowledged. A script that fails to render sends
nothing and is logged with its name and line. Pure: no IO, no trio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.config.schema import ProfileSpec
from pipeline.errors import ScriptError
from pipeline.gcode import Command
from pipeline.hooks.chain import Pipeline
from pipeline.hooks.script_phase import script_additions
from pipeline.hooks.scripts import ScriptSet, profile_context
from pipeline.phases import Phase
from pipeline.session.queues import CommandSink, Publish
from pipeline.session.tracking import Tracker

log = logging.getLogger("printpipe.scripts")

#: Scripts that fire no GcodeScript* events (they run around every tool change).
QUIET = frozenset({"beforeToolChange", "afterToolChange"})


def event_name(script: str, when: str) -> str:
    return f"GcodeScript{script[:1].upper()}{script[1:]}{when}"


def position_context(position: Mapping[str, Any] | None) -> dict[str, Any]:
    """A position as scripts see it: x, y, z, e, f, t always present, any may be None."""
    p = dict.fromkeys("xyzeft")
    if position:
        p.update({k: position.get(k) for k in "xyzeft"})
    return p


def temperature_context(temps: Mapping[str, Any] | None) -> dict[Any, Any]:
    """`{0: {actual, target}, 1: ..., "b": ..., "c": ...}` from the API-style map."""
    out: dict[Any, Any] = {}
    for key, value in (temps or {}).items():
        if key.startswith("tool") and key[4:].isdigit():
            out[int(key[4:])] = dict(value)
        elif key in ("bed", "chamber"):
            out[key[0]] = dict(value)
    return out


class ScriptRunner:
    def __init__(self, *, scripts: ScriptSet | None, pipeline: Pipeline, profile: ProfileSpec,
                 tracker: Tracker, sink: CommandSink, fire: Publish) -> None:
        self.scripts = scripts
        self._pipeline = pipeline
        self._profile = profile
        self._tracker = tracker
        self._sink = sink
        self._fire = fire

    def has(self, name: str) -> bool:
        """A script of this name exists, or `comm.protocol.scripts` stages may supply it."""
        return ((self.scripts is not None and self.scripts.has(name))
                or bool(self._pipeline.for_phase(Phase.SCRIPTS)))

    def names(self) -> list[str]:
        """The scripts known by name (files, config, bundled)."""
        return self.scripts.names() if self.scripts is not None else []

    def profile_context(self) -> dict[str, Any]:
        p = self._profile
        return profile_context(p.extruders, p.shared_nozzle, p.heated_bed, p.heated_chamber,
                               p.volume.width, p.volume.depth, p.volume.height, p.name)

    def context(self, name: str, extra: Mapping[str, Any] | None = None,
                plugins: Mapping[str, Any] | None = None) -> dict[str, Any]:
        t = self._tracker
        ctx: dict[str, Any] = {
            "printer_profile": self.profile_context(),
            "last_position": position_context(t.position_payload()),
            "last_temperature": temperature_context(t.temperature_payload()),
            "last_fanspeed": t.fan,
            "relative_axes_requested": t.relative_axes,
            "relative_extruder_requested": t.relative_extruder,
            "script": {"type": "gcode", "name": name},
            "plugins": dict(plugins or {}),
            "event": None,
        }
        for key, value in (extra or {}).items():
            if key.endswith("_position"):
                value = position_context(value)
            elif key.endswith("_temperature"):
                value = temperature_context(value)
            ctx[key] = value
        return ctx

    def render(self, name: str, extra: Mapping[str, Any] | None = None,
               trigger: str = "trigger:comm.send_gcode_script") -> list[Command]:
        """The commands `name` stands for now (prefixes, script, postfixes), or raise
        ScriptError. Nothing is queued."""
        adds = script_additions(self._pipeline, name)
        lines: list[str] = []
        if self.scripts is not None and self.scripts.has(name):
            lines = self.scripts.render(name, self.context(name, extra, adds.variables))
        tags = frozenset({"source:script", f"script:{name}", trigger})
        return ([c._replace(tags=c.tags | tags) for c in adds.prefix]
                + [Command.parse(line, tags=tags) for line in lines]
                + [c._replace(tags=c.tags | tags) for c in adds.postfix])

    def checked(self, name: str, extra: Mapping[str, Any] | None,
                refusal: Callable[[str], str | None], *,
                trigger: str = "trigger:comm.send_gcode_script") -> list[Command]:
        """The commands `name` stands for now, every one of them passing `refusal` (the
        session's guard), or ScriptError naming the command refused and why. Nothing is
        queued: a script that must run whole or not at all (the recovery prologue)."""
        cmds = self.render(name, extra, trigger)
        for i, cmd in enumerate(cmds, 1):
            problem = refusal(cmd.line)
            if problem is not None:
                raise ScriptError(f"its command {i} of {len(cmds)}, {cmd.line!r}, is refused: "
                                  f"{problem}", script=name)
        return cmds

    def run(self, name: str, extra: Mapping[str, Any] | None = None, *,
            trigger: str = "trigger:comm.send_gcode_script") -> bool:
        """Render and queue `name`; False (and nothing queued) when it failed to render."""
        try:
            cmds = self.render(name, extra, trigger)
        except ScriptError as exc:
            log.error("G-code script not sent: %s", exc)
            return False
        self.queue(name, cmds, (extra or {}).get("event"))
        return True

    def queue(self, name: str, cmds: list[Command], payload: Any) -> None:
        """Queue rendered commands as part of the job, between the script's events."""
        sink, fire = self._sink, self._fire
        if name not in QUIET:
            sink.add_marker(lambda: fire(event_name(name, "Running"), payload))
        for cmd in cmds:
            sink.enqueue(cmd, part_of_job=True)
        if name not in QUIET:
            sink.add_marker(lambda: fire(event_name(name, "Finished"), payload))

    def tool_change(self, cmd: Command, old: int, new: int) -> list[Command]:
        """[beforeToolChange lines, T<n>, afterToolChange lines] (seed 000)."""
        out: list[Command] = []
        for name in ("beforeToolChange", None, "afterToolChange"):
            if name is None:
                out.append(cmd)
                continue
            try:
                out += self.render(name, {"tool": {"old": old, "new": new}},
                                   trigger="trigger:comm.change_tool")
            except ScriptError as exc:
                log.error("G-code script not sent: %s", exc)
        return out
