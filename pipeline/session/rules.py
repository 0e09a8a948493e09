"""The host's built-in command rules, applied after the queuing phase's stages: emergency
commands, pausing / blocked / ignored commands, heaters the profile does not have, and the
@ commands (`@pause`, `@resume`, `@cancel`, `@abort` built in; every @ command runs the
`comm.protocol.atcommand.*` phases and is never sent to the printer).

Pure: no IO, no trio. Called only for the rare commands in `special` (one set lookup on the
hot path decides).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from pipeline.events.names import Event
from pipeline.gcode import Command, param_value
from pipeline.phases import Phase
from pipeline.session.jobs import JobStateError

if TYPE_CHECKING:
    from pipeline.session.core import HostCore

log = logging.getLogger("printpipe.host")

#: A built-in @ command is ignored when it comes from the script it would trigger again.
_ATCOMMAND_SELF = {"pause": "script:afterPrintPaused", "resume": "script:beforePrintResumed",
                   "cancel": "script:afterPrintCancelled", "abort": "script:afterPrintCancelled"}


#: Heater target commands the runtime temperature offsets apply to, and their heater.
OFFSET_TARGETS = {"M104": "tool", "M109": "tool", "M140": "bed", "M190": "bed",
                  "M141": "chamber", "M191": "chamber"}
_S_VALUE = re.compile(r"\bS(-?\d+(?:\.\d*)?)")


class CommandRules:
    def __init__(self, host: HostCore) -> None:
        s = host.config.serial
        profile = host.config.printer.profile
        self.host = host
        self.emergency = frozenset(s.emergency_commands)
        self.blocked = frozenset(s.blocked_commands)
        self.ignored = frozenset(s.ignored_commands)
        self.pausing = frozenset(s.pausing_commands)
        no_bed = set() if profile.heated_bed else {"M140", "M190"}
        no_chamber = set() if profile.heated_chamber else {"M141", "M191"}
        self.no_heater = frozenset(no_bed | no_chamber)
        #: Every G-code word a rule looks at; anything else passes untouched.
        self.special = self.emergency | self.blocked | self.ignored | self.no_heater | self.pausing

    def offset_target(self, cmd: Command, offsets: dict[str, float]) -> Command:
        """A printed file's heater target plus its runtime offset (OctoPrint's temperature
        offsets): only file lines, only non-zero targets, so "heater off" stays off."""
        if "source:file" not in cmd.tags:
            return cmd
        kind = OFFSET_TARGETS[cmd.gcode]  # type: ignore[index]
        if kind == "tool":
            t = param_value(cmd.line, "T")
            kind = f"tool{int(t) if t is not None else self.host.tracker.tool}"
        offset = offsets.get(kind)
        m = _S_VALUE.search(cmd.line)
        if not offset or m is None or float(m.group(1)) == 0:
            return cmd
        line = f"{cmd.line[:m.start(1)]}{float(m.group(1)) + offset:g}{cmd.line[m.end(1):]}"
        return Command.parse(line, cmd_type=cmd.cmd_type, tags=cmd.tags)

    def allow(self, cmd: Command) -> bool:
        """Apply the rules at queuing; False when the command must not be queued."""
        h = self.host
        g = cmd.gcode
        if g is None and cmd.line.startswith("@"):
            self._atcommand(Phase.ATCOMMAND_QUEUING, cmd, builtin=True)
            return True  # it still passes the send loop, for the sending phase; never written
        if g == "M112":
            h.emergency_stop()
            return False
        if g in self.pausing and h.jobs.active:
            h.jobs.pausing_command(cmd)
        if g in self.emergency:
            if h.engine.capabilities.get("EMERGENCY_PARSER") and h.operational:
                h.write_out_of_band(cmd)
                return False
            return True
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
        message = f"Not sending {cmd.line} to printer as {why}"
        log.info(message)
        self.host.fire(Event.COMMAND_SUPPRESSED,
                       {"command": cmd.line, "message": message, "severity": severity})

    def sending_atcommand(self, cmd: Command) -> None:
        """An @ command reached the send loop: its sending phase runs, nothing is written."""
        self._atcommand(Phase.ATCOMMAND_SENDING, cmd, builtin=False)

    def _atcommand(self, phase: Phase, cmd: Command, *, builtin: bool) -> None:
        name, _, params = cmd.line[1:].partition(" ")
        params = params.strip()
        self.host.pipeline.call(phase, phase.short, name, params, tags=cmd.tags)
        if not builtin or name not in _ATCOMMAND_SELF or _ATCOMMAND_SELF[name] in cmd.tags:
            return
        jobs = self.host.jobs
        try:
            if name == "pause":
                jobs.pause()
            elif name == "resume":
                jobs.resume()
            elif name == "cancel":
                jobs.cancel()
            elif name == "abort":
                jobs.cancel(capture=False)
        except JobStateError as exc:
            log.info("@%s ignored: %s", name, exc)
