"""Table-driven tests for pipeline.protocol.replies: one firmware reply line in, one answer out."""

from __future__ import annotations

import attrs
import pytest

from pipeline.protocol import replies as r
from pipeline.protocol.replies import ErrorClass, Position

# ---------------------------------------------------------------------------------------------
# ok / wait / start / busy


@pytest.mark.parametrize(("line", "expected"), [
    ("ok", True),
    ("ok T:210.0 /210.0 B:60/60 @:64", True),
    ("ok N12 P15 B3", True),
    ("ok X:10.00 Y:20.00 Z:0.30 E:5.00", True),
    ("okay", True),  # OctoPrint semantics: a plain startswith
    ("wait", False),
    ("echo:ok", False),
    (" ok", False),
    ("OK", False),
    ("", False),
    ("Resend: 3", False),
])
def test_is_ok(line, expected):
    assert r.is_ok(line) is expected


@pytest.mark.parametrize(("line", "expected"), [
    ("wait", True),
    ("wait ", False),
    ("waiting", False),
    ("ok", False),
    ("", False),
])
def test_is_wait(line, expected):
    assert r.is_wait(line) is expected


@pytest.mark.parametrize(("line", "expected"), [
    ("ok", True),
    ("wait", True),
    ("ok N12 P15 B3", True),
    ("ok P15 B3", True),
    ("ok T:210.0 /210.0 B:60/60 @:64", False),
    ("ok T0:210.0 /210.0", False),
    ("ok B:60.0 /60.0", False),
    ("ok C:40.0 /45.0", False),
    ("ok X:10.00 Y:20.00 Z:0.30 E:5.00", False),
    ("ok FIRMWARE_NAME:Marlin", False),
])
def test_ok_is_consumed(line, expected):
    assert r.ok_is_consumed(line) is expected


@pytest.mark.parametrize(("line", "expected"), [
    ("start", True),
    ("start ", False),
    ("Start", False),
    ("starting", False),
    ("echo:start", False),
])
def test_is_start(line, expected):
    assert r.is_start(line) is expected


@pytest.mark.parametrize(("line", "expected"), [
    ("echo:busy: processing", True),
    ("echo:busy: paused for user", True),
    ("busy:processing", True),
    ("busy: heating", True),
    ("echo:busy processing", False),
    ("busy processing", False),
    ("echo: busy: processing", False),
    ("ok", False),
])
def test_is_busy(line, expected):
    assert r.is_busy(line) is expected


# ---------------------------------------------------------------------------------------------
# Resend


@pytest.mark.parametrize(("line", "expected"), [
    ("Resend: 23", 23),
    ("Resend:23", 23),
    ("Resend: N23", 23),
    ("Resend: N:23", 23),
    ("resend: 7", 7),
    ("RESEND: 0", 0),
    ("rs N:23", 23),
    ("rs N23 expected checksum 109", 23),
    ("rs 5", 5),
    ("Resend:", -1),
    ("rs", -1),
    ("ok", None),
    ("Error:checksum mismatch, Last Line: 12", None),
    ("echo:Resend: 3", None),
    ("", None),
])
def test_parse_resend(line, expected):
    assert r.parse_resend(line) == expected


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(("line", "expected"), [
    ("Error:checksum mismatch, Last Line: 12", "checksum mismatch, Last Line: 12"),
    ("Error:Line Number is not Last Line Number+1, Last Line: 5",
     "Line Number is not Last Line Number+1, Last Line: 5"),
    ("Error:No Line Number with checksum, Last Line: 3",
     "No Line Number with checksum, Last Line: 3"),
    ("Error:Printer halted. kill() called!", "Printer halted. kill() called!"),
    ("Error:Thermal Runaway, system stopped! Heater_ID: 0",
     "Thermal Runaway, system stopped! Heater_ID: 0"),
    ("error: lower case prefix", "lower case prefix"),
    ("ERROR:Upper", "Upper"),
    ("Error:0", "0"),
    ("Error:", ""),
    ("!! Thermal runaway", "Thermal runaway"),
    ("!!MINTEMP", "MINTEMP"),
    ("fatal:Heater decoupled", "fatal:Heater decoupled"),
    ("echo:Error something", None),
    ("ok", None),
    ("Errors: 3", None),
    ("! single bang", None),
])
def test_error_text(line, expected):
    assert r.error_text(line) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("0", True),
    ("12", True),
    ("Thermal Runaway, system stopped! Heater_ID: 0", True),
    ("Heating failed, system stopped! Heater_ID: bed", True),
    ("Thermal Malfunction, system stopped! Heater_ID: 0", True),
    ("MAXTEMP triggered, system stopped! Heater_ID: 0", True),
    ("MINTEMP triggered, system stopped! Heater_ID: E0", True),
    ("Invalid extruder number !", True),
    ("Watchdog barked, please turn off the printer.", True),
    ("KILL caused by KILL button/pin", True),
    ("thermal runaway", True),
    ("0 apples", False),
    ("checksum mismatch, Last Line: 12", False),
    ("Printer halted. kill() called!", False),
    ("", False),
])
def test_error_needs_next_line(text, expected):
    assert r.error_needs_next_line(text) is expected


@pytest.mark.parametrize(("first", "next_line", "expected"), [
    ("0", ": Extruder switched off. MAXTEMP triggered !",
     "0: Extruder switched off. MAXTEMP triggered !"),
    ("1", "Extruder switched off. MINTEMP triggered !",
     "1 Extruder switched off. MINTEMP triggered !"),
    ("Thermal Runaway, system stopped! Heater_ID: 0", "Error:Printer halted. kill() called!",
     "Thermal Runaway, system stopped! Heater_ID: 0 - Printer halted. kill() called!"),
    ("Heating failed, system stopped! Heater_ID: 0", "Printer halted. kill() called!",
     "Heating failed, system stopped! Heater_ID: 0 - Printer halted. kill() called!"),
    ("MAXTEMP triggered", "error: Printer halted", "MAXTEMP triggered - Printer halted"),
])
def test_join_error(first, next_line, expected):
    assert r.join_error(first, next_line) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("No Line Number with checksum, Last Line: 3", ErrorClass.RECOVERABLE),
    ("Missing linenumber", ErrorClass.RECOVERABLE),
    ("checksum mismatch, Last Line: 12", ErrorClass.RESEND),
    ("Line Number is not Last Line Number+1, Last Line: 5", ErrorClass.RESEND),
    ("expected linenumber 5 got 4", ErrorClass.RESEND),
    ("Format error", ErrorClass.RESEND),
    ("Expected line 5 got 7", ErrorClass.RESEND),
    ("volume.init failed", ErrorClass.SD),
    ("openRoot failed", ErrorClass.SD),
    ("workDir open failed", ErrorClass.SD),
    ("error writing to file", ErrorClass.SD),
    ("Cannot open subdir", ErrorClass.SD),
    ("open failed, File: foo.gco.", ErrorClass.SD),
    ("Cannot enter subdir: foo", ErrorClass.SD),
    ("Unknown command: \"G999\"", ErrorClass.UNKNOWN_COMMAND),
    ("Printer halted. kill() called!", ErrorClass.FATAL),
    ("fatal:Heater decoupled", ErrorClass.FATAL),
    ("Thermal Runaway, system stopped! Heater_ID: 0 - Printer halted. kill() called!",
     ErrorClass.FATAL),
    ("Thermal Runaway, system stopped! Heater_ID: 0", ErrorClass.OTHER),
    ("MINTEMP triggered", ErrorClass.OTHER),
    ("", ErrorClass.OTHER),
])
def test_classify_error(text, expected):
    assert r.classify_error(text) is expected


@pytest.mark.parametrize(("line", "expected"), [
    # end to end: error_text -> classify_error
    ("Error:checksum mismatch, Last Line: 12", ErrorClass.RESEND),
    ("Error:Line Number is not Last Line Number+1, Last Line: 5", ErrorClass.RESEND),
    ("Error:No Line Number with checksum, Last Line: 3", ErrorClass.RECOVERABLE),
    ("Error:Printer halted. kill() called!", ErrorClass.FATAL),
    ("fatal:Something broke", ErrorClass.FATAL),
    ("!! Unknown command", ErrorClass.UNKNOWN_COMMAND),
])
def test_error_line_classification(line, expected):
    text = r.error_text(line)
    assert text is not None
    assert r.classify_error(text) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("MINTEMP triggered, system stopped!", "firmware-mintemp"),
    ("Extruder switched off. MAXTEMP triggered !", "firmware-maxtemp"),
    ("Thermal Runaway, system stopped! Heater_ID: 0", "firmware-thermal-runaway"),
    ("Heating failed, system stopped!", "firmware-heating-failed"),
    ("Probing Failed", "firmware-probing-failed"),
    ("Bed Leveling failed", "firmware-probing-failed"),
    ("Failed to reach reference point", "firmware-probing-failed"),
    ("BLTouch stow failed", "firmware-probing-failed"),
    ("checksum mismatch", None),
    ("", None),
])
def test_faq_tag(text, expected):
    assert r.faq_tag(text) == expected


# ---------------------------------------------------------------------------------------------
# `//` lines and actions


@pytest.mark.parametrize(("line", "expected"), [
    ("//action:pause", True),
    ("// some debug", True),
    ("//", True),
    ("/ not debug", False),
    ("echo://", False),
])
def test_is_debug(line, expected):
    assert r.is_debug(line) is expected


@pytest.mark.parametrize(("line", "expected"), [
    ("// action:pause", ("pause", "")),
    ("//action:pause", ("pause", "")),
    ("//action:paused", ("paused", "")),
    ("//action:resume", ("resume", "")),
    ("//action:cancel", ("cancel", "")),
    ("//action:custom a b", ("custom", "a b")),
    ("//action:prompt_begin Filament runout", ("prompt_begin", "Filament runout")),
    ("//action:notification Heating done ", ("notification", "Heating done")),
    ("//  action:disconnect", ("disconnect", "")),
    ("//action:", None),
    ("// debug output", None),
    ("//actions:pause", None),
    ("action:pause", None),
    ("echo://action:pause", None),
])
def test_parse_action(line, expected):
    assert r.parse_action(line) == expected


# ---------------------------------------------------------------------------------------------
# Temperatures


@pytest.mark.parametrize(("line", "expected"), [
    ("T:21.3 /0.0 B:21.3 /0.0 @:0 B@:0", True),
    ("ok T:210.0 /210.0 B:60/60 @:64", True),
    ("T0:210.0 /210.0", True),
    ("ok T0:210.0 /210.0", True),
    ("T:210.0 /210.0 T0:210.0 /210.0 T1:180.0 /185.0 B:60.0 /60.0", True),
    ("B:60.0 /60.0", True),
    ("ok B:60.0 /60.0", True),
    ("T:20.0 / 0.0", True),
    # Prusa MK3: ambient sensor A: next to tool temperatures still counts
    ("ok T:20.2 /0.0 B:19.1 /0.0 T0:20.2 /0.0 @:0 B@:0 P:19.8 A:26.4", True),
    ("X:10.00 Y:20.00 Z:0.30 E:5.00 Count: A:1000 B:2000 C:30", False),
    ("B:60.0 /60.0 A:25.0", False),
    ("C:40.0 /45.0", False),
    ("ok", False),
    ("echo:busy: processing", False),
    ("ET:210", False),
])
def test_is_temperature_line(line, expected):
    assert r.is_temperature_line(line) is expected


@pytest.mark.parametrize(("line", "expected"), [
    ("T:21.3 /0.0 B:21.3 /0.0 @:0 B@:0", {"T": (21.3, 0.0), "B": (21.3, 0.0)}),
    ("ok T:210.0 /210.0 B:60/60 @:64", {"T": (210.0, 210.0), "B": (60.0, 60.0)}),
    ("T:210.0 /210.0 T0:210.0 /210.0 T1:180.0 /185.0 B:60.0 /60.0",
     {"T": (210.0, 210.0), "T0": (210.0, 210.0), "T1": (180.0, 185.0), "B": (60.0, 60.0)}),
    ("T:210", {"T": (210.0, None)}),
    ("T:210 /210 T1:180 /185 B:60 /60",
     {"T": (210.0, 210.0), "T1": (180.0, 185.0), "B": (60.0, 60.0)}),
    ("B:60.0 /60.0", {"B": (60.0, 60.0)}),
    ("T:210.0 /210.0 B:60.0 /60.0 C:35.5 /40.0",
     {"T": (210.0, 210.0), "B": (60.0, 60.0), "C": (35.5, 40.0)}),
    ("T:210.0 /210.0 F0:255.0 /255.0", {"T": (210.0, 210.0), "F0": (255.0, 255.0)}),
    ("T:210.0 31pS_XYZ:5", {"T": (210.0, None), "31pS_XYZ": (5.0, None)}),
    ("T:210.0 /0.0 31pS_XYZ:5 /7", {"T": (210.0, 0.0), "31pS_XYZ": (5.0, 7.0)}),
    ("T:210 220", {"T": (210.0, 220.0)}),  # the slash is optional, as in OctoPrint
    ("T:210.0 /210.0 B:60.0 /60.0 W:?", {"T": (210.0, 210.0), "B": (60.0, 60.0)}),
    ("T:20.0 / 0.0 B:19.5 / 0.0", {"T": (20.0, 0.0), "B": (19.5, 0.0)}),
    ("T:210 /210", {"T": (210.0, 210.0)}),
    ("T:210/ 210", {"T": (210.0, 210.0)}),
    ("T:210/210", {"T": (210.0, 210.0)}),
    ("T:-15.5 /0.0 B:-3 /-1", {"T": (-15.5, 0.0), "B": (-3.0, -1.0)}),
    ("T:+20 /.5", {"T": (20.0, 0.5)}),
    ("T: 25.0 /0.0", {"T": (25.0, 0.0)}),
    ("T:210.0 B:60.0", {"T": (210.0, None), "B": (60.0, None)}),
    ("T0:200 /200 T0:999 /999", {"T0": (200.0, 200.0)}),
    ("ok T:20.2 /0.0 B:19.1 /0.0 T0:20.2 /0.0 @:0 B@:0 P:19.8 A:26.4",
     {"T": (20.2, 0.0), "B": (19.1, 0.0), "T0": (20.2, 0.0), "P": (19.8, None),
      "A": (26.4, None)}),
    ("ok", {}),
    ("@:0 B@:0", {}),
])
def test_parse_temperatures(line, expected):
    assert r.parse_temperatures(line) == expected


@pytest.mark.parametrize(("temps", "tool", "expected"), [
    ({"T": (210.0, 210.0), "B": (60.0, 60.0)}, 0,
     {"T0": (210.0, 210.0), "B": (60.0, 60.0)}),
    ({"T": (210.0, 210.0)}, 2, {"T2": (210.0, 210.0)}),
    ({"T": (210.0, 210.0), "T0": (200.0, 200.0), "T1": (180.0, 185.0)}, 0,
     {"T0": (200.0, 200.0), "T1": (180.0, 185.0)}),
    ({"T": (210.0, 210.0), "T0": (200.0, 200.0)}, 1,
     {"T0": (200.0, 200.0), "T1": (210.0, 210.0)}),
    ({"T": (210.0, 210.0), "T1": (180.0, 185.0), "B": (60.0, 60.0)}, 0,
     {"T0": (210.0, 210.0), "T1": (180.0, 185.0), "B": (60.0, 60.0)}),
    ({"T": (210.0, 210.0), "T1": (180.0, 185.0)}, 1,
     {"T0": (210.0, 210.0), "T1": (180.0, 185.0)}),
    ({"T0": (200.0, None), "B": (60.0, None)}, 0, {"T0": (200.0, None), "B": (60.0, None)}),
    ({"B": (60.0, 60.0)}, 0, {"B": (60.0, 60.0)}),
    ({}, 0, {}),
])
def test_canonical_tools(temps, tool, expected):
    before = dict(temps)
    result = r.canonical_tools(temps, tool)
    assert result == expected
    assert result is not temps
    assert temps == before  # input left alone


# ---------------------------------------------------------------------------------------------
# Position


@pytest.mark.parametrize(("line", "expected"), [
    ("X:10.00 Y:20.00 Z:0.30 E:5.00 Count: A:1000 B:2000 C:30", Position(10.0, 20.0, 0.3, 5.0)),
    ("X:10.00 Y:20.00 Z:0.30 E:5.00 Count X:1000 Y:2000 Z:30", Position(10.0, 20.0, 0.3, 5.0)),
    ("ok X:10.00 Y:20.00 Z:0.30 E:5.00", Position(10.0, 20.0, 0.3, 5.0)),
    ("X: 10.0 Y: 20.0 Z: 1.0 E: 0.0", Position(10.0, 20.0, 1.0, 0.0)),
    ("X:-5.5 Y:+3 Z:.25 E:-1.5", Position(-5.5, 3.0, 0.25, -1.5)),
    # one E per extruder: which one is the position's E is the session's call (its tool)
    ("X:1.000 Y:2.000 Z:3.000 E0:4.0 E1:5.0", Position(1.0, 2.0, 3.0, None, (4.0, 5.0))),
    ("ok X:1 Y:2 Z:3 E0:4", Position(1.0, 2.0, 3.0, None, (4.0,))),
    ("X:10.00 Y:20.00 Z:0.30", None),
    ("X:10.00 Y:20.00 Z:0.30 Count X:1 Y:2 Z:3", None),
    ("X:10.00 Y:20.00", None),
    ("T:210.0 /210.0 B:60.0 /60.0", None),
    ("ok", None),
])
def test_parse_position(line, expected):
    assert r.parse_position(line) == expected


def test_position_is_frozen_and_defaults():
    pos = Position(1.0, 2.0, 3.0, 4.0)
    assert pos.extruders == ()
    assert r.parse_position("X:1 Y:2 Z:3 E:4") == pos
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        pos.x = 5.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Firmware info and capabilities

MARLIN_M115 = (
    "FIRMWARE_NAME:Marlin 2.0.7.2 (Nov 27 2020 14:30:11) "
    "SOURCE_CODE_URL:https://github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 "
    "MACHINE_TYPE:Ender 5 Pro EXTRUDER_COUNT:1 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff"
)
MARLIN_INFO = {
    "FIRMWARE_NAME": "Marlin 2.0.7.2 (Nov 27 2020 14:30:11)",
    "SOURCE_CODE_URL": "https://github.com/MarlinFirmware/Marlin",
    "PROTOCOL_VERSION": "1.0",
    "MACHINE_TYPE": "Ender 5 Pro",
    "EXTRUDER_COUNT": "1",
    "UUID": "cede2a2f-41a2-4748-9b12-c55c62f367ff",
}
PRUSA_M115 = (
    "FIRMWARE_NAME:Prusa-Firmware 3.9.0 based on Marlin "
    "FIRMWARE_URL:https://github.com/prusa3d/Prusa-Firmware PROTOCOL_VERSION:1.0 "
    "MACHINE_TYPE:Prusa i3 MK3S EXTRUDER_COUNT:1 UUID:00000000-0000-0000-0000-000000000000"
)


@pytest.mark.parametrize(("line", "expected"), [
    (MARLIN_M115, MARLIN_INFO),
    ("ok " + MARLIN_M115, MARLIN_INFO),
    ("NAME. Malyan VER: 2.9 MODEL: M200 HW: HA02",
     {"NAME": "Malyan", "VER": "2.9", "MODEL": "M200", "HW": "HA02"}),
    (PRUSA_M115, {
        "FIRMWARE_NAME": "Prusa-Firmware 3.9.0 based on Marlin",
        "FIRMWARE_URL": "https://github.com/prusa3d/Prusa-Firmware",
        "PROTOCOL_VERSION": "1.0",
        "MACHINE_TYPE": "Prusa i3 MK3S",
        "EXTRUDER_COUNT": "1",
        "UUID": "00000000-0000-0000-0000-000000000000",
    }),
    ("FIRMWARE_NAME:Klipper Host FIRMWARE_VERSION:v0.9.1",
     {"FIRMWARE_NAME": "Klipper Host", "FIRMWARE_VERSION": "v0.9.1"}),
    (("FIRMWARE_NAME:RepRapFirmware for Duet 2 WiFi/Ethernet FIRMWARE_VERSION:3.3 "
      "ELECTRONICS:Duet WiFi 1.02 or later FIRMWARE_DATE:2021-06-15"),
     {"FIRMWARE_NAME": "RepRapFirmware for Duet 2 WiFi/Ethernet", "FIRMWARE_VERSION": "3.3",
      "ELECTRONICS": "Duet WiFi 1.02 or later", "FIRMWARE_DATE": "2021-06-15"}),
    (("FIRMWARE_NAME:Repetier_1.0.4 COMPILED:Jan 1 2020 FIRMWARE_URL:https://github.com/"
      "repetier/Repetier-Firmware/ PROTOCOL_VERSION:1.0 MACHINE_TYPE:Mendel EXTRUDER_COUNT:1 "
      "REPETIER_PROTOCOL:3"),
     {"FIRMWARE_NAME": "Repetier_1.0.4", "COMPILED": "Jan 1 2020",
      "FIRMWARE_URL": "https://github.com/repetier/Repetier-Firmware/",
      "PROTOCOL_VERSION": "1.0", "MACHINE_TYPE": "Mendel", "EXTRUDER_COUNT": "1",
      "REPETIER_PROTOCOL": "3"}),
    ("FIRMWARE_NAME:Foo lower:case X1:y", {"FIRMWARE_NAME": "Foo lower:case", "X1": "y"}),
    ("Cap:AUTOREPORT_TEMP:1", None),
    ("ok", None),
    ("echo:NAME:foo", None),
    ("NAME", None),
])
def test_parse_firmware_info(line, expected):
    assert r.parse_firmware_info(line) == expected


@pytest.mark.parametrize(("info", "expected"), [
    (MARLIN_INFO, "Marlin 2.0.7.2 (Nov 27 2020 14:30:11)"),
    ({"NAME": "Malyan", "VER": "2.9", "MODEL": "M200"}, "Malyan 2.9"),
    ({"NAME": "MALYAN M300", "VER": "4.0"}, "MALYAN M300 4.0"),
    ({"NAME": "Malyan"}, "Malyan"),
    ({"NAME": "Other", "VER": "1.0"}, None),
    ({"FIRMWARE_NAME": "Klipper", "NAME": "Malyan", "VER": "2"}, "Klipper"),
    ({}, None),
])
def test_firmware_name(info, expected):
    assert r.firmware_name(info) == expected


@pytest.mark.parametrize(("line", "expected"), [
    ("Cap:AUTOREPORT_TEMP:1", True),
    ("cap:EMERGENCY_PARSER:0", True),
    ("CAP:anything", True),
    ("Cap:", True),
    ("ok", False),
    ("echo:Cap:AUTOREPORT_TEMP:1", False),
    ("Capability:foo", False),
])
def test_is_capability_line(line, expected):
    assert r.is_capability_line(line) is expected


@pytest.mark.parametrize(("line", "expected"), [
    ("Cap:AUTOREPORT_TEMP:1", ("AUTOREPORT_TEMP", True)),
    ("Cap:AUTOREPORT_SD_STATUS:0", ("AUTOREPORT_SD_STATUS", False)),
    ("cap:emergency_parser:1", ("EMERGENCY_PARSER", True)),
    ("CAP:EXTENDED_M20:1", ("EXTENDED_M20", True)),
    ("Cap:PROMPT_SUPPORT:1 ", ("PROMPT_SUPPORT", True)),
    ("Cap:TOO:MANY:FIELDS", None),
    ("Cap:AUTOREPORT_TEMP:2", None),
    ("Cap:AUTOREPORT_TEMP:yes", None),
    ("Cap:AUTOREPORT_TEMP", None),
    ("Cap::1", None),
    ("ok", None),
])
def test_parse_capability(line, expected):
    assert r.parse_capability(line) == expected


# ---------------------------------------------------------------------------------------------
# Invalid tool


@pytest.mark.parametrize(("line", "expected"), [
    ("echo:T3 Invalid extruder", 3),
    ("echo:T12 Invalid extruder", 12),
    ("T1 invalid extruder", 1),
    ("echo:Invalid extruder 2", 2),
    ("Error:Invalid extruder number !", -1),
    ("echo:Invalid extruder", -1),
    ("echo:Active Extruder: 0", None),
    ("ok", None),
])
def test_parse_invalid_tool(line, expected):
    assert r.parse_invalid_tool(line) == expected
