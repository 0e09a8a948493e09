"""The session's built-in command rules, applied after the queuing phase's stages: emergency
commands, pausing / blocked / ignored commands, heaters the profile does not have, runtime
temperature offsets on printed files, the tool-change scripts around `T<n>`, and the
@ commands (`@pause`, `@resume`, `@cancel`, `@abort` built in; every @ command runs the
`comm.protocol.atcommand.*` phases and is never sent to the printer).

Only the rare commands in `special` come here (one set lookup on the hot path decides).
Pure: no IO, no trio.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Protocol

from pipeline.config.schema import ProfileSpec, SerialSpec
from pipeline.events.names import Event
from pipeline.gcode import Command, param_value, tool_number
from pipeline.hooks.chain import Pipeline
from pipeline.phases import Phase
from pipeline.session.guard import WireGuard
from pipeline.session.jobs import JobControl, JobStateError
from pipeline.session.queues import Publish
from pipeline.session.script_runner import ScriptRunner
from pipeline.session.tracking import Tracker

log = logging.getLogger("printpipe.host")

#: A built-in @ command is ignored when it comes from the script it would trigger again.
_ATCOMMAND_SELF = {"pause": "script:afterPrintPaused", "resume": "script:beforePrintResumed",
                   "cancel": "script:afterPrintCancelled", "abort": "script:afterPrintCancelled"}

#: Heater target commands the runtime temperature offsets apply to, and their heater.
OFFSET_TARGETS = {"M104": "tool", "M109": "tool", "M140": "bed", "M190": "bed",
                  "M141": "chamber", "M191": "chamber"}
_S_VALUE = re.compile(r"\bS(-?\d+(?:\.\d*)?)")


def shown_line(line: str, most: int = 80) -> str:
    """A command as messages show it: control characters escaped, long ones cut."""
    shown = line if line.isprintable() else repr(line)[1:-1]
    return shown if len(shown) <= most else f"{shown[:most]}... ({len(line)} characters)"


class EmergencyLane(Protocol):
    """What the rules ask of the session for emergencies."""

    def emergency_stop(self) -> None: ...

    def out_of_band(self, cmd: Command) -> bool:
        """Write `cmd` at once, outside queue and window, if the firmware has an emergency
        parser; False when it must be queued instead."""
        ...


class CommandRules:
    def __init__(self, *, serial: SerialSpec, profile: ProfileSpec, tracker: Tracker,
                 offsets: Mapping[str, float], jobs: JobControl, scripts: ScriptRunner,
                 lane: EmergencyLane, fire: Publish, pipeline: Pipeline,
                 guard: WireGuard) -> None:
        self._tracker = tracker
        self._guard = guard
        self._offsets = offsets
        self._jobs = jobs
        self._scripts = scripts
        self._lane = lane
        self._fire = fire
        self._pipeline = pipeline
        self.emergency = frozenset(serial.emergency_commands)
        self.blocked = frozenset(serial.blocked_commands)
        self.ignored = frozenset(serial.ignored_commands)
        self.pausing = frozenset(serial.pausing_commands)
        no_bed = set() if profile.heated_bed else {"M140", "M190"}
        no_chamber = set() if profile.heated_chamber else {"M141", "M191"}
        self.no_heater = frozenset(no_bed | no_chamber)
        # Tool changes run beforeToolChange/afterToolChange around T<n> at queuing.
        self._tool_scripts = scripts.has("beforeToolChange") or scripts.has("afterToolChange")
        #: The tool the queued commands end with (the sent one is the tracker's).
        self.queued_tool = 0
        #: Every G-code word a rule looks at; anything else passes untouched.
        self.special = (self.emergency | self.blocked | self.ignored | self.no_heater
                        | self.pausing | frozenset(OFFSET_TARGETS)
                        | (frozenset({"T"}) if self._tool_scripts else frozenset()))

    def apply(self, cmd: Command) -> list[Command]:
        """The commands to queue for `cmd`: [] when a rule takes it, [cmd], or the tool-change
        scripts around it."""
        if not self.allow(cmd):
            return []
        g = cmd.gcode
        if g in OFFSET_TARGETS and self._offsets:
            return [self.offset_target(cmd)]
        if g == "T" and self._tool_scripts:
            new = tool_number(cmd.line)
            if new is not None and new != self.queued_tool:
                old, self.queued_tool = self.queued_tool, new
                return self._scripts.tool_change(cmd, old, new)
        return [cmd]

    def offset_target(self, cmd: Command) -> Command:
        """A printed file's heater target plus its runtime offset (OctoPrint's temperature
        offsets): only file lines, only non-zero targets, so "heater off" stays off."""
        if "source:file" not in cmd.tags:
            return cmd
        kind = OFFSET_TARGETS[cmd.gcode or ""]
        heater = "hotend" if kind == "tool" else kind
        if kind == "tool":
            t = param_value(cmd.line, "T")
            kind = f"tool{int(t) if t is not None else self._tracker.tool}"
        offset = self._offsets.get(kind)
        m = _S_VALUE.search(cmd.line)
        if not offset or m is None or float(m.group(1)) == 0:
            return cmd
        target = float(m.group(1))
        # An offset never lifts a target over the heater's limit (the target itself is
        # checked at the wire like any other).
        raised = max(self._guard.clamp(heater, target + offset), 0.0)
        if raised != target + offset:
            log.warning("the %s offset of %g °C would set %g °C; using %g °C, the limit",
                        kind, offset, target + offset, raised)
        line = f"{cmd.line[:m.start(1)]}{raised:g}{cmd.line[m.end(1):]}"
        return Command.parse(line, cmd_type=cmd.cmd_type, tags=cmd.tags)

    def allow(self, cmd: Command) -> bool:
        """Apply the rules at queuing; False when the command must not be queued."""
        g = cmd.gcode
        if g is None and cmd.line.startswith("@"):
            self._atcommand(Phase.ATCOMMAND_QUEUING, cmd, builtin=True)
            return True  # it still passes the send loop, for the sending phase; never written
        if g == "M112":
            self._lane.emergency_stop()
            return False
        if g in self.pausing and self._jobs.active:
            self._jobs.pausing_command(cmd)
        if g in self.emergency:
            return not self._lane.out_of_band(cmd)
        if g in self.blocked:
            self.suppress(cmd, "it's configured as a blocked command", "warn")
            return False
        if g in self.ignored:
            self.suppress(cmd, "it's configured as an ignored command", "info")
            return False
        if g in self.no_heater:
            heater = "heated bed" if g in ("M140", "M190") else "heated chamber"
            self.suppress(cmd, f"the printer profile has no {heater}", "warn")
            return False
        return True

    def suppress(self, cmd: Command, why: str, severity: str) -> None:
        shown = shown_line(cmd.line)
        message = f"Not sending {shown} to printer as {why}"
        if severity == "error":
            log.warning("%s", message)
        else:
            log.info("%s", message)
        self._fire(Event.COMMAND_SUPPRESSED,
                   {"command": shown, "message": message, "severity": severity})

    def sending_atcommand(self, cmd: Command) -> None:
        """An @ command reached the send loop: its sending phase runs, nothing is written."""
        self._atcommand(Phase.ATCOMMAND_SENDING, cmd, builtin=False)

    def _atcommand(self, phase: Phase, cmd: Command, *, builtin: bool) -> None:
        name, _, params = cmd.line[1:].partition(" ")
        params = params.strip()
        self._pipeline.call(phase, phase.short, name, params, tags=cmd.tags)
        if not builtin or name not in _ATCOMMAND_SELF or _ATCOMMAND_SELF[name] in cmd.tags:
            return
        jobs = self._jobs
        actions: dict[str, Callable[[], None]] = {
            "pause": jobs.pause, "resume": jobs.resume, "cancel": jobs.cancel,
            "abort": lambda: jobs.cancel(capture=False)}
        try:
            actions[name]()
        except JobStateError as exc:
            log.info("@%s ignored: %s", name, exc)
