"""The protocol engine's knobs (`EngineSettings`), resolved once from the config, and the
firmware-name tweaks OctoPrint applies after M115 (`firmware_tweaks`).

Plain values, no IO, no trio. `pipeline.protocol` re-exports `EngineSettings`.
"""

from __future__ import annotations

import attrs

from pipeline.config.reader import ChecksumMode, ProfileSpec, ResendWithoutOk, SerialSpec

# Heat-and-wait commands: long-running until their ok, and the first timeout ends the wait.
HEATUP_GCODES = frozenset({"M109", "M190", "M191", "M116"})


@attrs.frozen
class EngineSettings:
    """The engine's knobs, resolved once from the config (see `from_spec`)."""

    window: int = 1
    hello: str = "M110 N0"
    checksum: ChecksumMode = ChecksumMode.PRINT
    checksum_requiring: frozenset[str] = frozenset({"M110"})
    long_running: frozenset[str] = frozenset({"G4", "G28", "G29", "G30", "G32", "M400", "M226",
                                              "M600"})
    history_size: int = 50
    max_resends: int = 10
    resend_without_ok: ResendWithoutOk = ResendWithoutOk.DETECT
    resend_ok_timeout: float = 0.5
    comm_timeout: float = 30.0
    busy_timeout: float = 3.0
    hello_timeout: float = 2.0
    max_hellos: int = 3
    temperature_interval: float = 5.0
    max_timeouts_idle: int = 2
    max_timeouts_printing: int = 5
    max_timeouts_long: int = 5
    busy_protocol: bool = True
    firmware_detection: bool = True
    wait_for_start: bool = False
    extruders: int = 1
    heated_bed: bool = True
    send_m112_on_error: bool = True

    @classmethod
    def from_spec(cls, serial: SerialSpec, profile: ProfileSpec) -> EngineSettings:
        t = serial.timeouts
        mt = serial.max_consecutive_timeouts
        return cls(
            window=serial.ok_window, hello=serial.hello_command, checksum=serial.checksum,
            checksum_requiring=frozenset(serial.checksum_requiring_commands),
            long_running=frozenset(serial.long_running_commands),
            history_size=serial.resend_history_size, max_resends=serial.max_consecutive_resends,
            resend_without_ok=serial.resend_without_ok, resend_ok_timeout=t.resend_ok,
            comm_timeout=t.communication, busy_timeout=t.communication_busy,
            hello_timeout=t.detection, temperature_interval=t.temperature,
            max_timeouts_idle=mt.idle, max_timeouts_printing=mt.printing,
            max_timeouts_long=mt.long_running, busy_protocol=serial.busy_protocol,
            firmware_detection=serial.firmware_detection, wait_for_start=serial.wait_for_start,
            extruders=profile.extruders, heated_bed=profile.heated_bed,
            send_m112_on_error=serial.send_m112_on_error)

    def timeout_limit(self, long_running: bool, printing: bool) -> int:
        """Consecutive timeouts tolerated now (0 = unlimited)."""
        return (self.max_timeouts_long if long_running
                else self.max_timeouts_printing if printing else self.max_timeouts_idle)


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
