"""What a reply line says besides the protocol: positions, temperatures, the capability
report, the M115 firmware info, invalid tools and `start`; and what the firmware has told us
about itself so far. Pure: the engine hands it each line that is not ok/resend/busy/error.
"""

from __future__ import annotations

import enum

from pipeline.protocol import replies
from pipeline.protocol.events import (
    CapabilityReported,
    EngineEvent,
    InvalidTool,
    PositionReport,
    Temperatures,
)


class Content(enum.Enum):
    """What the engine itself must react to after `parse`."""

    FIRMWARE_INFO = "firmware_info"
    START = "start"


class FirmwareReport:
    def __init__(self) -> None:
        self.capabilities: dict[str, bool] = {}
        self.in_cap_report = False
        self.info: dict[str, str] = {}

    def end_cap_report(self) -> bool:
        """The Cap: block is over; True if one was open (the engine then reports it)."""
        was, self.in_cap_report = self.in_cap_report, False
        return was

    def parse(self, line: str, events: list[EngineEvent]) -> Content | None:
        """Append the events `line` carries; tell the engine about M115 info and `start`."""
        if "X:" in line and "Y:" in line and "Z:" in line:
            pos = replies.parse_position(line)
            if pos is not None:
                events.append(PositionReport(pos))
                return None
        if replies.is_temperature_line(line):
            temps = replies.parse_temperatures(line)
            if temps:
                events.append(Temperatures(temps))
            return None
        if replies.is_capability_line(line):
            cap = replies.parse_capability(line)
            if cap is not None:
                self.in_cap_report = True
                self.capabilities[cap[0]] = cap[1]
                events.append(CapabilityReported(cap[0], cap[1], dict(self.capabilities)))
            return None
        if "NAME:" in line or line.startswith("NAME."):
            info = replies.parse_firmware_info(line)
            if info is not None:
                self.info = info
                return Content.FIRMWARE_INFO
            return None
        tool = replies.parse_invalid_tool(line)
        if tool is not None:
            events.append(InvalidTool(tool if tool >= 0 else None))
            return None
        if replies.is_start(line):
            return Content.START
        return None
