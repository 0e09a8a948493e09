"""What the YAML configuration may say: the enums, the frozen spec values of the `printer`,
`serial`, `virtual` and `scripts` sections, the pipeline's spec values and entry keys.

Each option is declared once, as a field of its spec class (options.py): its default is the
configuration's default and its metadata says how its key is read; `SECTIONS` holds the key
tables derived from the classes. Nothing here reads YAML or files: reader.py walks a document
with these tables. No trio, no IO, no stage imports (built-in stages hand their schemas to
reader.load_config).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
import strictyaml as sy

from pipeline.config.options import (
    Section,
    at_least,
    choice,
    commands,
    flag,
    frozen_map,
    integer,
    number,
    option,
    optional_integer,
    positive,
    rate,
    subsection,
    text,
)
from pipeline.phases import Phase

# ---------------------------------------------------------------------------------------------
# Enums


class ChecksumMode(enum.Enum):
    """When commands get `N<n> ... *<checksum>` framing (OctoPrint's `sendChecksum`)."""

    ALWAYS = "always"
    PRINT = "print"
    NEVER = "never"


class ResendWithoutOk(enum.Enum):
    """What to do when firmware sends `Resend:` without the `ok` (OctoPrint #2285)."""

    DETECT = "detect"
    ALWAYS = "always"
    NEVER = "never"


class ErrorHandling(enum.Enum):
    """What a firmware `Error:` the host cannot recover from does."""

    DISCONNECT = "disconnect"
    CANCEL = "cancel"
    IGNORE = "ignore"


class StageKind(enum.Enum):
    """A pipeline entry is a built-in stage (`stage:`) or an OctoPrint-style handler."""

    BUILTIN = "stage"
    HANDLER = "handler"


# ---------------------------------------------------------------------------------------------
# Spec values: each field is one option, declared once (its default and how its key is read)


@attrs.frozen
class VolumeSpec:
    width: float = number(200.0)
    depth: float = number(200.0)
    height: float = number(200.0)


def _temperature_limit(value: float) -> str | None:
    return positive(value) or (None if value <= 1000 else
                               f"must be at most 1000 (°C), not {value}")


@attrs.frozen
class HeaterLimitsSpec:
    """The highest target each kind of heater may be set to, in °C. Every command from every
    source is checked against them before it is written; 0 (off) is always allowed."""

    hotend: float = number(300.0, _temperature_limit)
    bed: float = number(150.0, _temperature_limit)
    chamber: float = number(90.0, _temperature_limit)


@attrs.frozen
class ProfileSpec:
    name: str = text("default")
    extruders: int = integer(1, at_least(1))
    shared_nozzle: bool = flag(False)
    heated_bed: bool = flag(True)
    heated_chamber: bool = flag(False)
    volume: VolumeSpec = subsection(VolumeSpec)
    limits: HeaterLimitsSpec = subsection(HeaterLimitsSpec)

    def heaters(self) -> list[str]:
        """The heaters the profile declares, by their report names (tool0.., bed, chamber)."""
        tools = 1 if self.shared_nozzle else self.extruders
        return ([f"tool{i}" for i in range(tools)] + ["bed"] * self.heated_bed
                + ["chamber"] * self.heated_chamber)


@attrs.frozen
class PrinterSpec:
    port: str = text("virtual")
    baudrate: int = integer(115200, at_least(0))  # 0 = try the usual rates
    profile: ProfileSpec = subsection(ProfileSpec)


@attrs.frozen
class TimeoutSpec:
    """Seconds (temperature_autoreport: the M155 interval, 0 = no autoreport)."""

    connection: float = number(10.0)
    communication: float = number(30.0)
    communication_busy: float = number(3.0)
    detection: float = number(2.0)
    temperature: float = number(5.0)
    temperature_target_set: float = number(2.0)
    temperature_autoreport: int = integer(2, at_least(0))
    resend_ok: float = number(0.5)
    position_wait: float = number(10.0)
    #: How long a cancel waits for the printer to acknowledge the lines in flight before it
    #: gives up on them (so a cancel ends whatever the link does).
    cancel: float = number(5.0)
    #: How long a stop (Ctrl-C's cancel of `printpipe print`, a disconnect's drain) waits
    #: without a byte from the printer before it lets the printer go (Marlin says busy or
    #: reports temperatures every 2 s while it works).
    silence: float = number(3.0, positive)
    #: How long the printer may keep talking (temperature reports, stray lines) while it
    #: acknowledges nothing, says no `busy:` and reports no heat-up, before the link is
    #: declared dead (one move may take long; a silent printer fails much sooner, after
    #: `max_consecutive_timeouts` unanswered probes). 0: no limit.
    ok_ceiling: float = number(900.0, at_least(0))


@attrs.frozen
class MaxTimeoutsSpec:
    """Consecutive communication timeouts tolerated per state (0 = unlimited)."""

    idle: int = integer(2, at_least(0))
    printing: int = integer(5, at_least(0))
    long_running: int = integer(5, at_least(0))


def _window_check(value: int | str) -> str | None:
    if value == "auto" or (isinstance(value, int) and value >= 1):
        return None
    return f"must be auto or a number of lines of at least 1, not {value}"


#: Options that were renamed or retired: the reader answers with what to write instead.
RETIRED: Mapping[str, str] = MappingProxyType({
    "serial.ok_window": "serial.ok_window was replaced by serial.send_window: write "
                        "`send_window: auto` (the default: what the firmware can take "
                        "safely) or a number of lines (1 is ping-pong)"})


@attrs.frozen
class SdSpec:
    """The printer's SD card (OctoPrint's `feature.sdSupport` and its SD timeouts): M21 at
    connect, M27 progress every `status_interval` s while printing from SD (or Marlin's
    autoreport every `autoreport_interval` s when offered), uploads in Marlin's binary file
    transfer when the firmware reports it and `binary_transfer` is on, else in text mode."""

    enabled: bool = flag(True)
    status_interval: float = number(1.0, positive)
    autoreport_interval: int = integer(1, at_least(0))
    binary_transfer: bool = flag(True)
    #: Binary packets in flight before their `ok` (go-back-N on a resend request).
    binary_window: int = integer(4, at_least(1))
    #: Seconds without an answer before a binary packet is sent again.
    binary_timeout: float = number(1.0, positive)
    binary_retries: int = integer(10, at_least(1))


@attrs.frozen
class SerialSpec:
    """The serial section; the protocol engine reads it as it is (HostProtocol(serial, ...))."""

    timeouts: TimeoutSpec = subsection(TimeoutSpec)
    sd: SdSpec = subsection(SdSpec)
    hello_command: str = text("M110 N0")
    checksum: ChecksumMode = choice(ChecksumMode.PRINT)
    emergency_commands: tuple[str, ...] = commands("M112", "M108", "M410")
    blocked_commands: tuple[str, ...] = commands("M0", "M1")
    ignored_commands: tuple[str, ...] = commands()
    pausing_commands: tuple[str, ...] = commands("M0", "M1", "M25")
    long_running_commands: tuple[str, ...] = commands(
        "G4", "G28", "G29", "G30", "G32", "M400", "M226", "M600")
    checksum_requiring_commands: tuple[str, ...] = commands("M110")
    max_consecutive_timeouts: MaxTimeoutsSpec = subsection(MaxTimeoutsSpec)
    resend_history_size: int = integer(50, at_least(1))
    max_consecutive_resends: int = integer(10, at_least(1))
    #: Lines in flight: "auto" (1, ping-pong, unless the firmware is known to keep the rest of
    #: a line after a line error, as Klipper does: then its command-queue slots, learned from
    #: ADVANCED_OK's `B`, else `firmware_bufsize`, else 1) or a fixed number (more than 1 is
    #: unsafe with Marlin: its line-error flush can make the rest of a line run); the
    #: RX-buffer, error and long-running rules hold either way.
    send_window: int | str = option("auto", sy.Enum(["auto"]) | sy.Int(), check=_window_check)
    #: The firmware's BUFSIZE when it does not report ADVANCED_OK (used by auto only with a
    #: firmware that keeps partial lines; else auto stays at 1).
    firmware_bufsize: int | None = optional_integer(at_least(1))
    #: The firmware's serial RX buffer in bytes: unacknowledged bytes beyond the line being
    #: processed stay below it.
    rx_buffer: int = integer(128, at_least(32))
    #: The longest line the firmware takes, line number and checksum included (Marlin's
    #: MAX_CMD_SIZE); a longer command is refused before it is written.
    max_line_length: int = integer(96, at_least(32))
    resend_without_ok: ResendWithoutOk = choice(ResendWithoutOk.DETECT)
    busy_protocol: bool = flag(True)
    error_handling: ErrorHandling = choice(ErrorHandling.DISCONNECT)
    send_m112_on_error: bool = flag(True)
    firmware_detection: bool = flag(True)
    wait_for_start: bool = flag(False)
    exclusive: bool = flag(True)
    hangup_on_close: bool = flag(True)
    log_position_on_pause: bool = flag(True)
    log_position_on_cancel: bool = flag(False)
    abort_heatup_on_cancel: bool = flag(True)
    #: When printpipe stops with a print running (SIGTERM, a crash, a second Ctrl-C), its
    #: last act switches every heater off (M104 S0 per tool, M140 S0, M141 S0), whatever the
    #: afterPrintCancelled script says. Off only for a printer where that is wrong.
    heaters_off_on_exit: bool = flag(True)
    trust_m73: bool = flag(True)
    #: Trace every line to and from the printer to serial.log in the state folder (as
    #: OctoPrint's serial.log), for debugging a printer; rotated at log_size bytes, one older
    #: file (serial.log.1) kept. It costs speed: leave it off for printing.
    log: bool = flag(False)
    log_size: int = integer(2 * 1024 * 1024, at_least(4096))


@attrs.frozen
class FaultSpec:
    """Which faults the virtual firmware injects, how often, and from which seed (the virtual
    printer uses this class itself: pipeline/virtual/faults.py rolls its dice).

    Rates are fractions in [0, 1]. `corrupt_rate` rolls once per numbered line that would
    otherwise be accepted (M110 excepted); the other rates roll once per executed command.
    The `*_after` counts are of executed commands and fire once.
    """

    seed: int = integer(0)
    corrupt_rate: float = number(0.0, rate)
    resend_without_ok: bool = flag(False)
    lost_ok_rate: float = number(0.0, rate)
    #: A numbered line lost on the wire (with the Marlin model: its bytes never arrive).
    lost_line_rate: float = number(0.0, rate)
    busy_rate: float = number(0.0, rate)
    busy_lines: int = integer(2, at_least(1))
    error_rate: float = number(0.0, rate)
    ok_delay: float = number(0.0, at_least(0))
    reset_after: int | None = optional_integer(at_least(1))
    disconnect_after: int | None = optional_integer(at_least(1))
    fatal_after: int | None = optional_integer(at_least(1))


@attrs.frozen
class MarlinModelSpec:
    """Marlin's serial model for the virtual printer (off by default: the plain model answers
    at once): bytes cross the wire at `baudrate` (10 bits a byte; 0 = at once) into an RX
    buffer of `rx_buffer` bytes (one stays free, bytes beyond are lost), lines enter a command
    queue of `bufsize` slots and leave it when executed (a move takes `move_time` s through a
    planner of `planner` blocks); with `advanced_ok` oks read `ok N<line> P<planner free>
    B<queue free>`. The serial port is read every `read_interval` s (Marlin's main loop reads
    it between its other work; 0 = as each line arrives). A line error flushes the RX buffer; a
    duplicate of the last line number is dropped silently (Marlin 2.1.2+)."""

    enabled: bool = flag(False)
    rx_buffer: int = integer(128, at_least(32))
    bufsize: int = integer(4, at_least(1))
    planner: int = integer(16, at_least(1))
    advanced_ok: bool = flag(True)
    baudrate: int = integer(250000, at_least(0))
    move_time: float = number(0.001, at_least(0))
    read_interval: float = number(0.0005, at_least(0))


@attrs.frozen
class VirtualSdSpec:
    """The virtual printer's SD card (in memory): Marlin's replies, `M20 L`/`T` with
    `long_names`, the binary file transfer with `binary_transfer` (packets of at most
    `binary_buffer` bytes), and SD prints at `line_time` s a move in the plain model."""

    enabled: bool = flag(True)
    long_names: bool = flag(True)
    binary_transfer: bool = flag(True)
    binary_buffer: int = integer(96, at_least(16))  # Marlin: MAX_CMD_SIZE
    line_time: float = number(0.002, at_least(0))


@attrs.frozen
class VirtualSpec:
    """The built-in virtual printer; its extruders and bed come from printer.profile."""

    firmware_name: str = text("printpipe Virtual Marlin 2.1")
    heat_rate: float = number(40.0)
    faults: FaultSpec = subsection(FaultSpec)
    marlin: MarlinModelSpec = subsection(MarlinModelSpec)
    sd: VirtualSdSpec = subsection(VirtualSdSpec)


@attrs.frozen
class ScriptsSpec:
    """Where G-code scripts come from: files under `<folder>/gcode/` first, then `gcode:`
    (inline templates by name; snippets as `snippets/<name>`), then the bundled defaults."""

    folder: str | None = text(None)
    gcode: Mapping[str, str] = option(
        MappingProxyType({}), sy.EmptyDict() | sy.MapPattern(sy.Str(), sy.Str()),
        convert=frozen_map, hash=False)
    #: The most lines one script may render to (comments and blank lines included), and the
    #: longest range() it may loop over: a render past it fails and sends nothing.
    max_lines: int = integer(1000, at_least(1))


@attrs.frozen
class SourceLocation:
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@attrs.frozen
class StageSpec:
    """One declared pipeline entry. `options` is the stage schema's typed data, read-only
    (nested maps are mappingproxies, sequences tuples); `{}` for handlers."""

    phase: Phase
    kind: StageKind
    target: str
    id: str
    order: int | None
    enabled: bool
    options: Mapping[str, Any] = attrs.field(hash=False)
    location: SourceLocation
    options_location: SourceLocation | None


@attrs.frozen
class PipelineSpec:
    """Stages per phase, each tuple sorted as the seed says; disabled entries kept."""

    stages: Mapping[Phase, tuple[StageSpec, ...]] = attrs.field(
        factory=lambda: MappingProxyType({}), hash=False)

    def for_phase(self, phase: Phase) -> tuple[StageSpec, ...]:
        return self.stages.get(phase, ())


def sort_stages(specs: list[StageSpec]) -> tuple[StageSpec, ...]:
    """The seed's order: entries with an order by (order, id), then the rest by id."""
    ordered = sorted((s for s in specs if s.order is not None), key=lambda s: (s.order, s.id))
    unordered = sorted((s for s in specs if s.order is None), key=lambda s: s.id)
    return tuple(ordered + unordered)


def freeze_options(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Stage options made read-only: maps become mappingproxies, lists tuples."""
    return MappingProxyType({k: _frozen(v) for k, v in data.items()})


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return freeze_options(value)
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------
# Sections

#: The top-level sections read with a key table (`pipeline` has its own reader in reader.py).
SECTIONS: Mapping[str, Section] = {
    "printer": Section.of(PrinterSpec), "serial": Section.of(SerialSpec),
    "virtual": Section.of(VirtualSpec), "scripts": Section.of(ScriptsSpec)}
TOP_LEVEL_KEYS = ("printer", "printers", "serial", "virtual", "pipeline", "scripts", "events",
                  "http", "storage", "mqtt", "webcam", "timelapse")

# ---------------------------------------------------------------------------------------------
# Pipeline entries

STAGE_ENTRY_KEYS = ("stage", "handler", "id", "order", "enabled", "with")
#: Validators of an entry's scalar keys (`with:` goes to the stage's own schema).
ENTRY_VALIDATORS: Mapping[str, sy.Validator] = {
    "stage": sy.Str(), "handler": sy.Str(), "id": sy.Str(), "order": sy.Int(),
    "enabled": sy.Bool(),
}
HANDLER_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
STAGE_ID_RE = re.compile(r"[\w.:-]+")
