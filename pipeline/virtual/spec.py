"""What the virtual printer is: the configured printer it stands for (heaters from the
printer profile; name, heat rate and faults from the `virtual:` section, each declared once
in the config) plus the model's own physics and the capabilities it reports."""

from __future__ import annotations

import attrs

from pipeline.config.schema import ProfileSpec, VirtualSpec
from pipeline.config.sections import HostConfig

#: What the model reports in its `Cap:` lines (Marlin 2's names).
CAPABILITIES: tuple[tuple[str, bool], ...] = (
    ("AUTOREPORT_TEMP", True), ("AUTOREPORT_POS", False), ("BUSY_PROTOCOL", True),
    ("EMERGENCY_PARSER", True), ("EXTENDED_M20", False), ("CHAMBER_TEMPERATURE", False),
    ("PROMPT_SUPPORT", False))


@attrs.frozen
class FirmwareSpec:
    profile: ProfileSpec = ProfileSpec()
    virtual: VirtualSpec = VirtualSpec()
    capabilities: tuple[tuple[str, bool], ...] = CAPABILITIES
    ambient: float = 21.3
    cool_rate: float = 2.0
    wait_report_interval: float = 1.0
    busy_interval: float = 2.0

    @classmethod
    def configured(cls, config: HostConfig) -> FirmwareSpec:
        """The virtual printer a configuration describes."""
        return cls(config.printer.profile, config.virtual)
