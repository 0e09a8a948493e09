"""printpipe's built-in virtual printer: a sans-IO Marlin 2 model and its pty server.

`firmware.VirtualFirmware` is the pure state machine (no trio, no IO); `server` (trio) serves
it on a pseudo-terminal so any host can open it like a USB printer. Importing this package
does not import trio.
"""

from pipeline.virtual.faults import FaultSpec
from pipeline.virtual.firmware import FirmwareSpec, VirtualFirmware

__all__ = ["FaultSpec", "FirmwareSpec", "VirtualFirmware"]
