"""What the protocol engine adds to the configuration's serial section (which it reads as it
is, see HostProtocol): the heat-and-wait commands, and the firmware-name tweaks OctoPrint
applies after M115 (`firmware_tweaks`).

Plain values, no IO, no trio.
"""

from __future__ import annotations

import attrs

from pipeline.config.reader import ChecksumMode

# Heat-and-wait commands: long-running until their ok, and the first timeout ends the wait.
HEATUP_GCODES = frozenset({"M109", "M190", "M191", "M116"})


@attrs.frozen
class FirmwareTweaks:
    checksum_always: bool = False   # number every G-code line (Repetier, Anet A8, Malyan)
    checksum_unknown: bool = False  # number unknown commands too when numbering (Prusa)
    unknown_need_ack: bool = False  # unknown commands get an ok (Klipper, Prusa)


NO_TWEAKS = FirmwareTweaks()


def firmware_tweaks(name: str | None, checksum: ChecksumMode) -> FirmwareTweaks:
    """OctoPrint's `firmwareDetection` table (case-insensitive substrings of the name)."""
    if not name:
        return NO_TWEAKS
    low = name.lower()
    prusa = "prusa-firmware" in low
    return FirmwareTweaks(
        checksum_always=(checksum is not ChecksumMode.NEVER
                         and any(n in low for n in ("repetier", "anet_a8", "malyan"))),
        checksum_unknown=prusa,
        unknown_need_ack=prusa or "klipper" in low)
