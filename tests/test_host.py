"""The host core against the virtual firmware model in memory (no IO): handshake, pipeline
phases declared in YAML, built-in command rules, resends, timeouts, emergency stop."""

from __future__ import annotations

import octo_handlers as h
import pytest
from pairs import pair, payloads

from pipeline.config.schema import FaultSpec
from pipeline.session.core import PrinterState
from pipeline.virtual.firmware import VirtualFirmware
from pipeline.virtual.spec import FirmwareSpec


def test_handshake_numbers_until_firmware_info_then_plain():
    p = pair()
    wire = b"".join(p.wire)
    assert wire.startswith(b"N0 M110 N0*125\n")
    assert b"N1 M115*39\n" in wire
    assert p.core.state is PrinterState.OPERATIONAL
    assert p.core.engine.capabilities["AUTOREPORT_TEMP"] is True
    assert "FirmwareData" in p.event_names() and "Connected" in p.event_names()
    assert b"M155 S2\n" in wire               # autoreport switched on
    p.send("G28")
    assert p.wire[-1] == b"G28\n"             # idle commands go out plain after M115


def test_yaml_stage_rewrites_before_the_printer_sees_it():
    p = pair("""
pipeline:
  comm.protocol.gcode.queuing:
    - stage: rewrite
      with:
        rules:
          - gcode: M107
            replace: M106 S0
""")
    p.send("M107")
    assert p.fw.accepted[-1] == "M106 S0"


def test_seed_handlers_run_unchanged_by_import_path():
    h.calls.clear()
    p = pair("""
pipeline:
  comm.protocol.gcode.queuing:
    - handler: octo_handlers:rewrite_m107
  comm.protocol.gcode.sent:
    - handler: octo_handlers:sent_m106
""")
    p.send("M107")
    assert p.fw.accepted[-1] == "M106 S0"
    assert ("sent_m106", "sent", "M106 S0") in h.calls


def test_every_gcode_phase_called_in_order_with_tags():
    h.calls.clear()
    p = pair("""
pipeline:
  comm.protocol.gcode.queuing:
    - handler: octo_handlers:record
      id: q
  comm.protocol.gcode.queued:
    - handler: octo_handlers:record
      id: qd
  comm.protocol.gcode.sending:
    - handler: octo_handlers:record
      id: sg
  comm.protocol.gcode.sent:
    - handler: octo_handlers:record
      id: st
""")
    h.calls.clear()
    p.core.enqueue("G1 X5", tags=frozenset({"source:api"}))
    p.run_until(lambda: p.core.idle)
    assert [c[0] for c in h.calls] == ["queuing", "queued", "sending", "sent"]
    assert all(c[1] == "G1 X5" and c[3] == "G1" and "source:api" in c[5] for c in h.calls)


def test_queuing_list_expansion_reaches_the_printer_in_order():
    p = pair("""
pipeline:
  comm.protocol.gcode.queuing:
    - handler: octo_handlers:expand_foo
""")
    p.send("@foo bar")
    assert p.fw.accepted[-3:] == ["M105", "M110", "M117 echo foo: @foo bar"]


def test_received_phase_rewrites_lines_before_parsing():
    p = pair("""
pipeline:
  comm.protocol.gcode.received:
    - handler: octo_handlers:received_upper
""")
    p.send("M118 echo:hello there")
    assert "ECHO:HELLO THERE" in p.received


@pytest.mark.parametrize(("yaml", "line", "severity"), [
    ("", "M0", "warn"),
    ("serial:\n  ignored_commands:\n    - M300\n", "M300 S440", "info"),
    ("printer:\n  profile:\n    heated_bed: no\n", "M140 S60", "warn"),
])
def test_builtin_suppressions(yaml, line, severity):
    p = pair(yaml)
    before = list(p.fw.accepted)
    p.send(line)
    assert p.fw.accepted == before
    (payload,) = payloads(p, "CommandSuppressed")
    assert payload["command"] == line and payload["severity"] == severity


def test_cmd_type_deduplicates_the_queue():
    p = pair()
    assert p.core.enqueue("M105", cmd_type="temperature_poll")
    assert not p.core.enqueue("M105", cmd_type="temperature_poll")
    p.run_until(lambda: p.core.idle)
    assert p.core.enqueue("M105", cmd_type="temperature_poll")


def test_temperatures_parsed_into_state():
    p = pair()
    p.send("M104 S200", "M140 S60")
    p.clock.now += 5
    p.send("M105")
    t = p.core.tracker
    assert t.tools[0][1] == 200 and t.bed[1] == 60
    assert t.tools[0][0] > 21.3


def test_m114_position_event():
    p = pair()
    p.send("G28", "G1 X10 Y20 Z0.3 F3000", "M114")
    pos = payloads(p, "PositionUpdate")[-1]
    assert (pos["x"], pos["y"], pos["z"], pos["f"]) == (10.0, 20.0, 0.3, 3000.0)


def test_checksum_errors_are_resent_exactly_once_each():
    p = pair("serial:\n  checksum: always\n", faults=FaultSpec(seed=3, corrupt_rate=0.2))
    lines = [f"G1 X{i} Y{i}" for i in range(200)]
    for line in lines:
        p.core.enqueue(line)
    p.run_until(lambda: p.core.idle)
    assert [a for a in p.fw.accepted if a.startswith("G1 X")] == lines
    assert p.core.statistics().resends > 10


def test_resend_without_ok_is_recovered_by_the_detect_timer():
    p = pair("serial:\n  checksum: always\n",
             faults=FaultSpec(seed=5, corrupt_rate=0.2, resend_without_ok=True))
    lines = [f"G1 X{i}" for i in range(100)]
    for line in lines:
        p.core.enqueue(line)
    p.run_until(lambda: p.core.idle)
    assert [a for a in p.fw.accepted if a.startswith("G1 X")] == lines


def test_m112_emergency_sequence():
    p = pair()
    p.core.enqueue("M112")
    p.run_until(lambda: p.core.failed)
    p.step()
    tail = b"".join(p.wire)
    assert b"M112\n" in tail and b"M104 T0 S0*" in tail and b"M140 S0*" in tail
    assert p.fw.killed
    names = p.event_names()
    assert "EStop" in names and "Error" in names
    assert p.core.state is PrinterState.ERROR


def test_emergency_parser_sends_m108_out_of_band():
    p = pair()
    p.core.enqueue("M109 S200")
    p.step()
    p.core.enqueue("M108")
    out = p.core.data_to_send()
    assert out == b"M108\n"


def test_printer_reset_while_idle():
    p = pair(faults=FaultSpec(reset_after=5))
    p.send(*[f"G1 X{i}" for i in range(4)])
    assert "PrinterReset" in p.event_names()
    assert p.core.operational


def test_fatal_firmware_error_ends_in_error_with_m112():
    p = pair(faults=FaultSpec(fatal_after=5))
    for i in range(6):
        p.core.enqueue(f"G1 X{i}")
    p.run_until(lambda: p.core.failed)
    p.step()
    err = payloads(p, "Error")[-1]
    assert "Thermal Runaway" in err["error"] and err["reason"] == "firmware"
    assert b"M112\n" in b"".join(p.wire)


def test_busy_protocol_is_answered_with_m113():
    p = pair(faults=FaultSpec(seed=1, busy_rate=1.0))
    p.send("G28")
    assert "M113 S2" in p.fw.accepted
    assert p.core.engine.deadlines.busy_active


def test_invalid_tool_reverts_and_is_reported():
    # the profile says 2 extruders, the firmware has 1: it answers "echo:T1 Invalid extruder"
    p = pair("printer:\n  profile:\n    extruders: 2\n", connect=False)
    p.fw = VirtualFirmware(FirmwareSpec())  # one extruder
    p.connect()
    p.send("T1")
    (payload,) = payloads(p, "InvalidToolReported")
    assert payload == {"tool": 1, "fallback": 0}
    assert p.fw.accepted[-1] == "T0"


@pytest.mark.parametrize("phase", ["queuing", "sending"])
@pytest.mark.parametrize(("handler", "line", "expected", "tag"), [
    ("record", "G1 X5", "G1 X5", None),                                # None: unchanged
    ("as_string", "M117 hi", "M117 rewritten", "source:rewrite"),      # str
    ("rewrite_m107", "M107", "M106 S0", "source:rewrite"),             # 1-tuple
    ("suppress_m300", "M300 S440", None, None),                        # (None,)
    ("retype", "M105", "M105", None),                                  # 2-tuple
    ("tag_it", "G28", "G28", "my_custom_tag"),                         # 3-tuple
])
def test_return_variants_through_yaml_declared_stages(phase, handler, line, expected, tag):
    h.calls.clear()
    p = pair(f"""
pipeline:
  comm.protocol.gcode.{phase}:
    - handler: octo_handlers:{handler}
  comm.protocol.gcode.sent:
    - handler: octo_handlers:record
      id: watch
    - handler: octo_handlers:ignored_return
""")
    h.calls.clear()
    before = len(p.fw.accepted)
    p.send(line)
    sent = [c for c in h.calls if c[0] == "sent"]
    if expected is None:
        assert p.fw.accepted[before:] == [] and sent == []
        return
    assert p.fw.accepted[before:] == [expected]     # and the sent phase's return is ignored
    assert sent[-1][1] == expected
    if tag:
        assert tag in sent[-1][5]


def test_fatal_error_event_carries_the_faq_tag():
    p = pair(faults=FaultSpec(fatal_after=3))
    for i in range(4):
        p.core.enqueue(f"G1 X{i}")
    p.run_until(lambda: p.core.failed)
    err = payloads(p, "Error")[-1]
    assert err["faq"] == "firmware-thermal-runaway"
