"""What the YAML configuration may say: the enums, the frozen spec values and, per section, a
table of its keys (strictyaml validator, conversion, range check).

The spec classes' own defaults are the configuration's defaults; a table only says how to read a
key. Nothing here reads YAML or files: config.py walks a document with these tables. No trio,
no IO, no stage imports (built-in stages hand their schemas to config.load_config).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import strictyaml as sy

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
# Spec values


@attrs.frozen
class VolumeSpec:
    width: float = 200.0
    depth: float = 200.0
    height: float = 200.0


@attrs.frozen
class ProfileSpec:
    name: str = "default"
    extruders: int = 1
    shared_nozzle: bool = False
    heated_bed: bool = True
    heated_chamber: bool = False
    volume: VolumeSpec = VolumeSpec()


@attrs.frozen
class PrinterSpec:
    port: str = "virtual"
    baudrate: int = 115200  # 0 = try the usual rates
    profile: ProfileSpec = ProfileSpec()


@attrs.frozen
class TimeoutSpec:
    """Seconds (temperature_autoreport: the M155 interval, 0 = no autoreport)."""

    connection: float = 10.0
    communication: float = 30.0
    communication_busy: float = 3.0
    detection: float = 2.0
    temperature: float = 5.0
    temperature_target_set: float = 2.0
    temperature_autoreport: int = 2
    resend_ok: float = 0.5
    position_wait: float = 10.0


@attrs.frozen
class MaxTimeoutsSpec:
    """Consecutive communication timeouts tolerated per state (0 = unlimited)."""

    idle: int = 2
    printing: int = 5
    long_running: int = 5


@attrs.frozen
class SerialSpec:
    timeouts: TimeoutSpec = TimeoutSpec()
    hello_command: str = "M110 N0"
    checksum: ChecksumMode = ChecksumMode.PRINT
    emergency_commands: tuple[str, ...] = ("M112", "M108", "M410")
    blocked_commands: tuple[str, ...] = ("M0", "M1")
    ignored_commands: tuple[str, ...] = ()
    pausing_commands: tuple[str, ...] = ("M0", "M1", "M25")
    long_running_commands: tuple[str, ...] = (
        "G4", "G28", "G29", "G30", "G32", "M400", "M226", "M600")
    checksum_requiring_commands: tuple[str, ...] = ("M110",)
    max_consecutive_timeouts: MaxTimeoutsSpec = MaxTimeoutsSpec()
    resend_history_size: int = 50
    max_consecutive_resends: int = 10
    ok_window: int = 1
    resend_without_ok: ResendWithoutOk = ResendWithoutOk.DETECT
    busy_protocol: bool = True
    error_handling: ErrorHandling = ErrorHandling.DISCONNECT
    send_m112_on_error: bool = True
    firmware_detection: bool = True
    wait_for_start: bool = False
    exclusive: bool = True
    hangup_on_close: bool = True
    log_position_on_pause: bool = True
    log_position_on_cancel: bool = False
    abort_heatup_on_cancel: bool = True
    trust_m73: bool = True


@attrs.frozen
class FaultsSpec:
    """Faults the virtual printer injects (rates are probabilities per line, 0..1)."""

    seed: int = 0
    corrupt_rate: float = 0.0
    resend_without_ok: bool = False
    lost_ok_rate: float = 0.0
    busy_rate: float = 0.0
    busy_lines: int = 2
    error_rate: float = 0.0
    ok_delay: float = 0.0
    reset_after: int | None = None
    disconnect_after: int | None = None
    fatal_after: int | None = None


@attrs.frozen
class VirtualSpec:
    """The built-in virtual printer; its extruders and bed come from printer.profile."""

    firmware_name: str = "printpipe Virtual Marlin 2.1"
    heat_rate: float = 40.0
    faults: FaultsSpec = FaultsSpec()


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


def freeze_options(data: Any) -> Any:
    """Stage options made read-only: maps become mappingproxies, lists tuples."""
    if isinstance(data, Mapping):
        return MappingProxyType({k: freeze_options(v) for k, v in data.items()})
    if isinstance(data, list):
        return tuple(freeze_options(v) for v in data)
    return data


@attrs.frozen
class ScriptsSpec:
    """Where G-code scripts come from: files under `<folder>/gcode/` first, then `gcode:`
    (inline templates by name; snippets as `snippets/<name>`), then the bundled defaults."""

    folder: str | None = None
    gcode: Mapping[str, str] = attrs.field(factory=lambda: MappingProxyType({}), hash=False)


# ---------------------------------------------------------------------------------------------
# Key tables

Check = Callable[[Any], "str | None"]

#: A G-code command word as the command lists hold them: G28, M80.1, T0, or T (any tool).
GCODE_WORD_RE = re.compile(r"[GMT]\d+(?:\.\d+)?|T")


@attrs.frozen
class Field:
    """One scalar or list key: how to validate, convert and range-check its value.
    `item_check` runs per item of a sequence value (so errors name the item's line)."""

    validator: sy.Validator
    convert: Callable[[Any], Any] | None = None
    check: Check | None = None
    item_check: Check | None = None


@attrs.frozen
class Section:
    """A mapping key whose value is read into `spec(**fields)`; absent keys keep the default."""

    spec: type
    fields: Mapping[str, Field | Section]


def _finite(value: float) -> str | None:
    return None if math.isfinite(value) else "must be a finite number"


def at_least(low: float) -> Check:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        return _finite(value) or (None if value >= low else f"must be at least {low}, not {value}")
    return check


def positive(value: float) -> str | None:
    return _finite(value) or (None if value > 0 else f"must be greater than 0, not {value}")


def rate(value: float) -> str | None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return f"must be a probability between 0 and 1, not {value}"
    return None


def non_blank(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def gcode_word(value: str) -> str | None:
    if GCODE_WORD_RE.fullmatch(value):
        return None
    return (f"{value!r} is not a G-code command word "
            "(expected one like G28, M112, M80.1, T0 or T; case matters)")


def _str(check: Check | None = None) -> Field:
    return Field(sy.Str(), check=check)


def _int(check: Check | None = None) -> Field:
    return Field(sy.Int(), check=check)


def _float(check: Check | None = positive) -> Field:
    return Field(sy.Float(), check=check)


def _bool() -> Field:
    return Field(sy.Bool())


def _enum(cls: type[enum.Enum]) -> Field:
    return Field(sy.Enum([m.value for m in cls]), convert=cls)


def _optional_int(check: Check | None = None) -> Field:
    return Field(sy.EmptyNone() | sy.Int(), check=check)


def _commands() -> Field:
    # One Or at the list level (an empty value is an empty list), none inside the Seq.
    return Field(sy.EmptyList() | sy.Seq(sy.Str()), convert=tuple, item_check=gcode_word)


PRINTER = Section(PrinterSpec, {
    "port": _str(non_blank),
    "baudrate": _int(at_least(0)),
    "profile": Section(ProfileSpec, {
        "name": _str(non_blank),
        "extruders": _int(at_least(1)),
        "shared_nozzle": _bool(),
        "heated_bed": _bool(),
        "heated_chamber": _bool(),
        "volume": Section(VolumeSpec, {
            "width": _float(), "depth": _float(), "height": _float(),
        }),
    }),
})

SERIAL = Section(SerialSpec, {
    "timeouts": Section(TimeoutSpec, {
        "connection": _float(),
        "communication": _float(),
        "communication_busy": _float(),
        "detection": _float(),
        "temperature": _float(),
        "temperature_target_set": _float(),
        "temperature_autoreport": _int(at_least(0)),
        "resend_ok": _float(),
        "position_wait": _float(),
    }),
    "hello_command": _str(non_blank),
    "checksum": _enum(ChecksumMode),
    "emergency_commands": _commands(),
    "blocked_commands": _commands(),
    "ignored_commands": _commands(),
    "pausing_commands": _commands(),
    "long_running_commands": _commands(),
    "checksum_requiring_commands": _commands(),
    "max_consecutive_timeouts": Section(MaxTimeoutsSpec, {
        "idle": _int(at_least(0)),
        "printing": _int(at_least(0)),
        "long_running": _int(at_least(0)),
    }),
    "resend_history_size": _int(at_least(1)),
    "max_consecutive_resends": _int(at_least(1)),
    "ok_window": _int(at_least(1)),
    "resend_without_ok": _enum(ResendWithoutOk),
    "busy_protocol": _bool(),
    "error_handling": _enum(ErrorHandling),
    "send_m112_on_error": _bool(),
    "firmware_detection": _bool(),
    "wait_for_start": _bool(),
    "exclusive": _bool(),
    "hangup_on_close": _bool(),
    "log_position_on_pause": _bool(),
    "log_position_on_cancel": _bool(),
    "abort_heatup_on_cancel": _bool(),
    "trust_m73": _bool(),
})

VIRTUAL = Section(VirtualSpec, {
    "firmware_name": _str(non_blank),
    "heat_rate": _float(),
    "faults": Section(FaultsSpec, {
        "seed": _int(),
        "corrupt_rate": _float(rate),
        "resend_without_ok": _bool(),
        "lost_ok_rate": _float(rate),
        "busy_rate": _float(rate),
        "busy_lines": _int(at_least(1)),
        "error_rate": _float(rate),
        "ok_delay": _float(at_least(0)),
        "reset_after": _optional_int(at_least(1)),
        "disconnect_after": _optional_int(at_least(1)),
        "fatal_after": _optional_int(at_least(1)),
    }),
})

SCRIPTS = Section(ScriptsSpec, {
    "folder": _str(non_blank),
    "gcode": Field(sy.EmptyDict() | sy.MapPattern(sy.Str(), sy.Str()),
                   convert=lambda d: MappingProxyType(dict(d or {}))),
})

#: The top-level sections read with a key table (`pipeline` has its own reader in config.py).
SECTIONS: Mapping[str, Section] = {"printer": PRINTER, "serial": SERIAL, "virtual": VIRTUAL,
                                   "scripts": SCRIPTS}
TOP_LEVEL_KEYS = ("printer", "serial", "virtual", "pipeline", "scripts", "events", "http",
                  "storage")

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
