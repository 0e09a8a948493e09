"""The last checks before the wire (pipeline/session/guard.py): one line per command, short
enough for the firmware's buffer, finite numbers only, heater targets within the profile's
limits. Table-driven on the guard itself, then whole sessions on the Pair: a refused line
never reaches the firmware, and a file asking for one fails its print with the line."""

from __future__ import annotations

import logging

import pytest
from conftest import load_yaml
from pairs import FAST, pair, payloads, start

from pipeline.config.schema import ProfileSpec, SerialSpec
from pipeline.hooks.scripts import ScriptSet
from pipeline.session.guard import WireGuard
from pipeline.session.jobs import Outcome
from pipeline.session.states import PrinterState

GUARD = WireGuard(SerialSpec(), ProfileSpec())


def refusal(line: str) -> str | None:
    gcode = line.split()[0] if line.split() else None
    return GUARD.refusal(line, gcode)


@pytest.mark.parametrize("line", [
    "G1 X10.5 Y-3 E0.0321 F1800", "M104 S300", "M104 T1 S0", "M109 R250", "M140 S150",
    "M190 S0", "M141 S90", "M104 S215 B250", "M117 Printing infill, nan left to do",
    "M118 E1 inf", "M117 Größe 2", "G28", "M110 N0", "T1", "@pause",
    "M117 " + "x" * 75,  # 80 bytes: with N and a checksum it still fits in 96
])
def test_safe_commands_pass(line):
    assert refusal(line) is None


@pytest.mark.parametrize(("line", "why"), [
    ("M117 added nl\nM104 S250", "control character ('\\n'"),
    ("M117 a\rb", "control character ('\\r'"),
    ("G1 X1\x00", "control character ('\\x00'"),
    ("M117 \x07bell", "control character ('\\x07'"),
    ("G1\tX10", "control character ('\\t'"),
    ("M117 " + "x" * 76, ("81 bytes long; with its line number and checksum the firmware takes "
                         "at most 96 (serial.max_line_length)")),
    ("G1 " + "X1 " * 5000, "15003 bytes long"),
    ("G1 Xinf", "'Xinf' is not a finite number"),
    ("G1 X1 Finf", "'Finf' is not a finite number"),
    ("G1 X-Infinity", "'X-Inf' is not a finite number"),
    ("G0 Ynan", "'Ynan' is not a finite number"),
    ("M140 Sinf", "'Sinf' is not a finite number"),
    ("M104 T0 S-inf", "'S-inf' is not a finite number"),
    ("M221 Sinf", "'Sinf' is not a finite number"),
    ("M104 S301", ("target 301 °C is above the hotend limit of 300 °C "
                  "(printer.profile.limits.hotend)")),
    ("M109 R400", "above the hotend limit"),
    ("M104 S200 B320", "target 320 °C is above the hotend limit"),
    ("M104 T1 S999", "target 999 °C"),
    ("M140 S151", "above the bed limit of 150 °C"),
    ("M190 R200", "above the bed limit"),
    ("M141 S91", "above the chamber limit of 90 °C"),
    ("M104 S-5", "S-5 is not a temperature"),
])
def test_unsafe_commands_are_refused_with_the_reason(line, why):
    problem = refusal(line)
    assert problem is not None and why in problem


def test_limits_and_line_length_come_from_the_config():
    config = load_yaml("printer:\n  profile:\n    limits:\n      hotend: 450\n      bed: 120\n"
                       "serial:\n  max_line_length: 200\n")
    guard = WireGuard(config.serial, config.printer.profile)
    assert guard.refusal("M104 S450", "M104") is None
    assert "hotend limit of 450" in (guard.refusal("M104 S451", "M104") or "")
    assert "bed limit of 120" in (guard.refusal("M140 S121", "M140") or "")
    assert guard.refusal("M117 " + "x" * 150, "M117") is None


@pytest.mark.parametrize(("yaml", "message"), [
    ("printer:\n  profile:\n    limits:\n      hotend: 0\n", "greater than 0"),
    ("printer:\n  profile:\n    limits:\n      bed: 1500\n", "at most 1000"),
    ("serial:\n  max_line_length: 10\n", "at least 32"),
])
def test_bad_limits_are_config_errors(yaml, message):
    from pipeline.errors import ConfigErrors
    with pytest.raises(ConfigErrors, match=message):
        load_yaml(yaml)


# ---- whole sessions --------------------------------------------------------------------------

def print_to_end(text: str, yaml: str = FAST):
    p = pair(yaml, scripts=ScriptSet.load(None, {}))  # the bundled scripts, as in a session
    job = start(p, text)
    p.run_until(lambda: p.core.jobs.result is not None and p.core.state is PrinterState.OPERATIONAL)
    return p, job


@pytest.mark.parametrize(("bad", "why"), [
    ("M104 S400", "line 3 of the file: target 400 °C is above the hotend limit of 300 °C"),
    ("M140 S200", "line 3 of the file: target 200 °C is above the bed limit of 150 °C"),
    ("G1 Xinf Y1", "line 3 of the file: 'Xinf' is not a finite number"),
    ("M117 " + "z" * 200, "line 3 of the file: it is 205 bytes long"),
])
def test_a_file_asking_for_an_unsafe_line_fails_its_print_and_the_line_is_never_sent(bad, why):
    p, _ = print_to_end(f"G28\nG1 X1\n{bad}\nG1 X2\nG1 X3\n")
    result = p.core.jobs.result
    assert result.outcome is Outcome.ERROR and result.error.startswith(why)
    assert bad not in p.fw.accepted and "G1 X2" not in p.fw.accepted  # the file stopped there
    (failed,) = payloads(p, "PrintFailed")
    assert failed["reason"] == "error" and failed["error"] == result.error
    (suppressed,) = payloads(p, "CommandSuppressed")
    assert suppressed["severity"] == "error"
    # it stopped like a cancel: afterPrintCancelled's bundled default switched the heaters off
    assert "M104 T0 S0" in p.fw.accepted and p.core.state is PrinterState.OPERATIONAL


def test_a_handler_that_rewrites_into_two_lines_is_stopped_at_the_wire(caplog):
    yaml = ("pipeline:\n  comm.protocol.gcode.sending:\n"
            "    - handler: octo_handlers:inject_line\n")
    p = pair(yaml)
    with caplog.at_level(logging.WARNING, logger="printpipe.host"):
        p.send("M117 hello", "G1 X5")
    assert "M104 S250" not in p.fw.accepted and "G1 X5" in p.fw.accepted
    (suppressed,) = payloads(p, "CommandSuppressed")
    assert "control character" in suppressed["message"] and "\n" not in suppressed["message"]


def test_manual_commands_are_checked_as_they_enter():
    p = pair()
    assert not p.core.enqueue("M104 S999")
    assert not p.core.enqueue("G1 Xnan")
    p.run_until(lambda: p.core.idle)
    assert not any(a.startswith(("M104", "G1")) for a in p.fw.accepted)
    assert [s["command"] for s in payloads(p, "CommandSuppressed")] == ["M104 S999", "G1 Xnan"]
    assert p.core.refusal("M140 S500") is not None and p.core.refusal("M140 S50") is None


def test_an_offset_never_lifts_a_target_over_the_limit():
    p = pair(FAST, offsets={"tool0": 40.0, "bed": 30.0})
    job = start(p, "M104 S280\nM140 S100\nM104 S250\n")
    p.run_until(lambda: p.core.jobs.result is not None and p.core.state is PrinterState.OPERATIONAL)
    assert job.file is not None and p.core.jobs.result.outcome is Outcome.DONE
    assert [a for a in p.fw.accepted if a[:4] in ("M104", "M140")][:3] == [
        "M104 S300", "M140 S130", "M104 S290"]


def test_a_raised_limit_lets_a_high_temperature_printer_heat():
    p = pair("printer:\n  profile:\n    limits:\n      hotend: 450\n")
    p.send("M104 S420")
    assert "M104 S420" in p.fw.accepted and payloads(p, "CommandSuppressed") == []
