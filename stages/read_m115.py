"""Built-in stage `read_m115`: watches received lines for the printer's M115 answer and reports
the firmware and machine type it names (the seed's read-M115 example, as a stage).

    - stage: read_m115
      with:
        event: MachineTypeReported   # optional: also publish this event (no default: log only)

Runs in comm.protocol.gcode.received and returns every line unchanged. A line is an M115 answer
when pipeline.replies.parse_firmware_info reads it as one (`FIRMWARE_NAME:... MACHINE_TYPE:...`,
or Malyan's `NAME.`); its keys are kept on the handler as `.info` (the last answer seen) and the
firmware name and machine type are logged at INFO through `comm_instance.logger`. With `event:`
the stage also fires that event with the payload
`{"firmware_name": str|None, "machine_type": str|None, "data": {KEY: value, ...}}`. The host
fires `FirmwareData` by itself, so this stage never reuses that name by default.

Every received line (each `ok`) passes here, so a line without "NAME" returns after one
substring test. No IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strictyaml as sy

from pipeline.phases import Phase
from pipeline.protocol.replies import firmware_name, parse_firmware_info
from stages.options import Comm, word

NAME = "read_m115"
PHASES: frozenset[Phase] = frozenset({Phase.GCODE_RECEIVED})



SCHEMA: sy.Validator = sy.Map({
    sy.Optional("event"): word("an event name"),
})


class ReadM115:
    """The received-phase handler; `.info` holds the keys of the last M115 answer (or None)."""

    __slots__ = ("event", "info", "stage_id")

    def __init__(self, stage_id: str, event: str | None) -> None:
        self.stage_id = stage_id
        self.event = event
        self.info: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<{NAME}[{self.stage_id}] machine_type={self.machine_type!r}>"

    @property
    def machine_type(self) -> str | None:
        return None if self.info is None else self.info.get("MACHINE_TYPE")

    def __call__(self, comm_instance: Comm | None, line: str, *args: Any, **kwargs: Any) -> str:
        if "NAME" not in line:
            return line
        info = parse_firmware_info(line)
        if info is None:
            return line
        self.info = info
        name = firmware_name(info)
        machine = info.get("MACHINE_TYPE")
        logger = getattr(comm_instance, "logger", None)
        if logger is not None:
            logger.info("stage %r: firmware %r, machine type %r", self.stage_id, name, machine)
        if self.event is not None and comm_instance is not None:
            comm_instance.fire_event(self.event, {"firmware_name": name, "machine_type": machine,
                                                  "data": dict(info)})
        return line


def build(options: Mapping[str, Any], stage_id: str) -> ReadM115:
    """Return the received-phase handler (an object, so tests and tools can read `.info`)."""
    return ReadM115(stage_id, options.get("event"))
