"""What the protocol engine adds to the configuration's serial section (which it reads as it
is, see HostProtocol): the heat-and-wait commands, and the firmware-name tweaks OctoPrint
applies after M115 (`firmware_tweaks`), and whether the firmware keeps the rest of a line after
a line error (which decides the automatic send window).

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
    #: Never throws away the rest of a line on a line error, so lines may wait behind a line
    #: that can fail (Klipper: it checks no checksums and asks for no resends). Marlin and its
    #: forks empty their RX buffer on a line error: see HostProtocol's send window.
    keeps_partial_lines: bool = False


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
        unknown_need_ack=prusa or "klipper" in low,
        keeps_partial_lines="klipper" in low)
