"""The last checks before the wire, for every command from every source (file, script, API,
MQTT, subscription, handler, journal): the line is read the way the firmware reads it
(`pipeline.wire.read`), checked on that reading, and what the wire gets is the reading's
canonical form, so the printer receives byte for byte what was checked.

Checked here: one printable line, short enough for the firmware's buffer with its line number
and checksum, plain finite numbers, and every heater target and preset within the profile's
limits (0, off, is always allowed): M104/M109 (S, R and the autotemp maximum B), M140/M190,
M141/M191, the material presets M145 (H, B), PID autotune M303 (S, for the heater E or H names),
RepRapFirmware's tool temperatures G10 and M568 (S and R, lists too) and its heater limit
M143; M42 with I and M43 T (they drive pins past the firmware's protection), and an M118 whose
text the printer would send as a flow-control reply (an ok, a resend request).

`WireGuard.canonical(line, gcode)` answers the line to write or raises `Refused` with the
reason; `refusal()` is the same as a question. A line that is canonical already and names no
command the guard reads value by value costs one precompiled fullmatch (`pipeline.wire.fast`).
Pure.
"""

from __future__ import annotations

from pipeline.config.schema import ProfileSpec, SerialSpec
from pipeline.gcode import Command
from pipeline.wire import MACROS, TEXT_COMMANDS, Reading, Refused, fast, read

__all__ = ["FRAMING", "HEATERS", "TEXT_COMMANDS", "Refused", "WireGuard"]

#: Worst-case framing the engine adds: "N" + 9 digits + " " before, "*" + 3 digits + "\n".
FRAMING = 16
#: Longer lines are refused before they are read (they could never fit a firmware's buffer).
READ_AT_MOST = 1024

#: Heater target commands: the heater kind whose limit applies, and the words that set a
#: target or a preset. M303's and M143's heater depends on their E / H word (`_heater_of`).
HEATERS: dict[str, tuple[str, str]] = {
    "M104": ("hotend", "SRB"), "M109": ("hotend", "SRB"),
    "M140": ("bed", "SR"), "M190": ("bed", "SR"),
    "M141": ("chamber", "SR"), "M191": ("chamber", "SR"),
    "G10": ("hotend", "SR"), "M568": ("hotend", "SR"),
    "M303": ("hotend", "S"), "M143": ("hotend", "S"),
}
#: Material presets: each word's heater.
_PRESETS = {"H": "hotend", "B": "bed"}


class WireGuard:
    def __init__(self, serial: SerialSpec, profile: ProfileSpec) -> None:
        self.max_line = serial.max_line_length
        #: Lines up to this long need no measuring: they fit with any framing.
        self.short_line = serial.max_line_length - FRAMING
        limits = profile.limits
        self.limits = {"hotend": limits.hotend, "bed": limits.bed, "chamber": limits.chamber}

    def canonical(self, line: str, gcode: str | None) -> str:
        """What the wire gets for `line` (its G-code word `gcode`, as Command.parse found
        it): `line` itself when it is canonical and plain, else the checked canonical form;
        Refused with the reason when it must not reach the printer."""
        if len(line) <= self.short_line and fast(line, gcode):
            return line
        if line.startswith("@") and line.isprintable():
            return line  # a host command: its phases run, it is never written
        if len(line) > READ_AT_MOST:
            raise Refused(self._too_long(len(line.encode("utf-8"))))
        reading = read(line)
        self._check(reading)
        canonical = reading.canonical
        if len(canonical) > self.short_line:
            raise Refused(self._too_long(len(canonical)))
        return canonical

    def entering(self, cmd: Command) -> Command:
        """`cmd` as it enters the queue: its canonical form (so the rules see the command
        the firmware will run: `m0` is M0, `M 104` is M104), or Refused."""
        line = self.canonical(cmd.line, cmd.gcode)
        if line is cmd.line:
            return cmd
        return Command.parse(line, cmd_type=cmd.cmd_type, tags=cmd.tags)

    def refusal(self, line: str, gcode: str | None) -> str | None:
        """Why `line` must not reach the printer, or None."""
        try:
            self.canonical(line, gcode)
        except Refused as exc:
            return str(exc)
        return None

    def _too_long(self, size: int) -> str:
        return (f"it is {size} bytes long; with its line number and checksum the firmware "
                f"takes at most {self.max_line} (serial.max_line_length)")

    def _check(self, reading: Reading) -> None:
        code, words = reading.code, reading.words
        base = code.partition(".")[0]
        if base == "M118":
            _check_echo(reading.text or "")
            return
        if base in MACROS:
            for part in (reading.text or "").split("|") if reading.text else ():
                self._check(read(part))
            return
        if base == "M42" and "I" in words:
            raise Refused("M42 I drives a pin the firmware protects (a heater's, a fan's)")
        if base == "M43" and "T" in words:
            raise Refused("M43 T toggles pins the firmware protects (a heater's, a fan's)")
        if base == "M145":
            for letter, kind in _PRESETS.items():
                self._within(letter, words.get(letter), kind)
            return
        entry = HEATERS.get(base)
        if entry is None:
            return
        kind, letters = entry
        if base in ("M303", "M143"):
            kind = _heater_of(words, kind)
        for letter in letters:
            self._within(letter, words.get(letter), kind)

    def _within(self, letter: str, values: tuple[float, ...] | None, kind: str) -> None:
        limit = self.limits[kind]
        for value in values or ():
            if value < 0:
                raise Refused(f"{letter}{value:g} is not a temperature")
            if value > limit:
                raise Refused(f"target {value:g} °C is above the {kind} limit of {limit:g} °C "
                              f"(printer.profile.limits.{kind})")

    def clamp(self, kind: str, target: float) -> float:
        """`target` at most the limit of heater `kind` (for offsets added by the host)."""
        return min(target, self.limits[kind])


def _heater_of(words: dict[str, tuple[float, ...] | None], default: str) -> str:
    """M303 E-1 / E-2 (Marlin) and M303/M143 H0 (RepRapFirmware's bed heater) name the bed
    or the chamber; anything else is a hotend."""
    e, h = words.get("E"), words.get("H")
    if e:
        return {-1.0: "bed", -2.0: "chamber"}.get(e[0], default)
    if h and h[0] == 0:
        return "bed"
    return default


#: The starts of lines the host's flow control reads: an ok, a resend request, a restart, a
#: busy keep-alive. (Errors and `//` actions stay possible: users send them on purpose.)
_FLOW_REPLIES = ("ok", "wait", "start", "busy", "resend", "rs ", "echo:busy")


def _check_echo(text: str) -> None:
    """M118 sends its text to the host; the A1/E1/Pn flags come first (Marlin's M118)."""
    out = ""
    rest = text
    while rest[:2] in ("A1", "E1") or (rest[:1] == "P" and rest[1:2].isdigit()):
        out += {"A1": "//", "E1": "echo:"}.get(rest[:2], "")
        rest = rest[2:].lstrip(" ")
    if (out + rest).lower().startswith(_FLOW_REPLIES):
        raise Refused("M118 would make the printer send this text as its own flow control "
                      "reply (ok, resend, start, busy), which the host would act on")
