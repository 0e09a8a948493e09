"""Sans-IO tests of the virtual Marlin firmware: bytes and `now` in, lines and `accepted` out."""

from __future__ import annotations

import attrs
import pytest

from pipeline.config.schema import FaultSpec, ProfileSpec, VirtualSpec
from pipeline.gcode import frame
from pipeline.virtual.firmware import VirtualFirmware
from pipeline.virtual.spec import FirmwareSpec

BOOT = ["start", "echo:printpipe Virtual Marlin 2.1 (printpipe virtual printer)"]
ROOM = "T:21.30 /0.00 B:21.30 /0.00 @:0 B@:0"


MODEL = {f.name for f in attrs.fields(FirmwareSpec)}


def fresh(*, faults: FaultSpec = FaultSpec(), **spec: object) -> VirtualFirmware:
    """A booted firmware: `spec` sets the profile's heaters and the model's own fields; its
    heaters warm at 10 °C/s (the timings below count on that)."""
    model = {k: v for k, v in spec.items() if k in MODEL}
    profile = ProfileSpec(**{k: v for k, v in spec.items() if k not in MODEL})  # type: ignore[arg-type]
    fw = VirtualFirmware(FirmwareSpec(profile, VirtualSpec(heat_rate=10.0, faults=faults),
                                      **model))  # type: ignore[arg-type]
    assert fw.data_to_send(0.0).decode().splitlines() == BOOT
    return fw


def faulty(**faults: object) -> VirtualFirmware:
    return fresh(faults=FaultSpec(**faults))  # type: ignore[arg-type]


def talk(fw: VirtualFirmware, data: bytes | str, now: float = 0.0) -> list[str]:
    if isinstance(data, str):
        data = data.encode()
    fw.receive_data(data, now)
    return fw.data_to_send(now).decode().splitlines()


def at(fw: VirtualFirmware, now: float) -> list[str]:
    return fw.data_to_send(now).decode().splitlines()


def resend(last: int, error: str) -> list[str]:
    return [f"Error:{error}, Last Line: {last}", f"Resend: {last + 1}", "ok"]


MISMATCH = "checksum mismatch"
LINENO = "Line Number is not Last Line Number+1"
NOCS = "No Checksum with line number"

# (id, bytes sent, expected output lines, expected accepted)
LINE_CASES = [
    ("handshake", b"N0 M110 N0*125\n", ["ok"], ["M110 N0"]),
    ("good checksum", frame(1, "G28"), ["ok"], ["G28"]),
    ("bad checksum", b"N1 G28*1\n", resend(0, MISMATCH), []),
    ("garbage checksum", b"N1 G28*xy\n", resend(0, MISMATCH), []),
    ("wrong number", frame(2, "G28"), resend(0, LINENO), []),
    ("no checksum", b"N1 G28\n", resend(0, NOCS), []),
    ("m110 sets last", frame(7, "M110 N41") + frame(42, "G28"), ["ok", "ok"],
     ["M110 N41", "G28"]),
    ("m110 own number", frame(9, "M110") + frame(10, "G28"), ["ok", "ok"], ["M110", "G28"]),
    ("m110 unnumbered", b"M110 N5\n" + frame(6, "G90"), ["ok", "ok"], ["M110 N5", "G90"]),
    ("m110 then stale", frame(0, "M110 N0") + frame(5, "G28"), ["ok", *resend(0, LINENO)],
     ["M110 N0"]),
    ("unnumbered", b"G28\nG90\n", ["ok", "ok"], ["G28", "G90"]),
    ("crlf and blanks", b"\r\n  G28  \r\n\n", ["ok"], ["G28"]),
    ("comment stripped", b"G28 ; home all\n; only a comment\n", ["ok"], ["G28"]),
    ("unknown", b"FOO bar\n", ['echo:Unknown command: "FOO bar"', "ok"], ["FOO bar"]),
    ("unknown mcode", b"M4242\n", ['echo:Unknown command: "M4242"', "ok"], ["M4242"]),
    ("tool out of range", b"T3\n", ["echo:T3 Invalid extruder", "ok"], ["T3"]),
    ("tool in range", b"T0\n", ["ok"], ["T0"]),
    ("m117", b"M117 Hello World\n", ["echo:Hello World", "ok"], ["M117 Hello World"]),
    ("m118 action", b"M118 // action:pause\n", ["// action:pause", "ok"],
     ["M118 // action:pause"]),
    ("m118 A1", b"M118 A1 action:resume\n", ["//action:resume", "ok"],
     ["M118 A1 action:resume"]),
    ("m105", b"M105\n", ["ok " + ROOM], ["M105"]),
    ("m114", b"G1 X10 Y20.5 Z0.3 E1.25 F3000\nM114\n",
     ["ok", "X:10.00 Y:20.50 Z:0.30 E:1.25 Count X:800 Y:1640 Z:120", "ok"],
     ["G1 X10 Y20.5 Z0.3 E1.25 F3000", "M114"]),
    ("noops", b"M84\nM106 S255\nM107\nM73 P50\nM876 S0\nM82\nM83\nG91\n", ["ok"] * 8,
     ["M84", "M106 S255", "M107", "M73 P50", "M876 S0", "M82", "M83", "G91"]),
    ("m999", frame(1, "G28") + b"M999\n", ["ok", "Resend: 2", "ok"], ["G28", "M999"]),
]


@pytest.mark.parametrize(("sent", "lines", "accepted"), [c[1:] for c in LINE_CASES],
                         ids=[c[0] for c in LINE_CASES])
def test_lines(sent: bytes, lines: list[str], accepted: list[str]) -> None:
    fw = fresh()
    assert talk(fw, sent) == lines
    assert fw.accepted == accepted


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_any_chunking_gives_same_result(chunk: int) -> None:
    data = frame(0, "M110 N0") + b"M105\r\n" + frame(1, "G28") + b"N2 G28*1\n" + frame(2, "G90")
    fw = fresh()
    out = []
    for i in range(0, len(data), chunk):
        out += talk(fw, data[i:i + chunk])
    assert out == ["ok", "ok " + ROOM, "ok", *resend(1, MISMATCH), "ok"]
    assert fw.accepted == ["M110 N0", "M105", "G28", "G90"]


def test_position_modes() -> None:
    fw = fresh()
    talk(fw, "G1 X10 Y10 Z1 E2\nG91\nG1 X1 Y-2 E0.5\nM82\nG1 E1\nG90\nM83\nG1 X5 E1\n"
             "G92 E0 Z9\n")
    assert talk(fw, "M114\n")[0].startswith("X:5.00 Y:8.00 Z:9.00 E:0.00 ")
    talk(fw, "G28 X\n")
    assert talk(fw, "M114\n")[0].startswith("X:0.00 Y:8.00 Z:9.00 ")
    talk(fw, "G28\nG92\n")
    assert talk(fw, "M114\n")[0] == "X:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0"


def test_m115_lists_firmware_and_capabilities() -> None:
    fw = fresh(extruders=2)
    lines = talk(fw, frame(1, "M115"))
    assert lines[0] == (
        "FIRMWARE_NAME:printpipe Virtual Marlin 2.1 "
        "SOURCE_CODE_URL:https://example.invalid/printpipe PROTOCOL_VERSION:1.0 "
        "MACHINE_TYPE:Virtual EXTRUDER_COUNT:2 UUID:00000000-0000-4000-8000-000000000000")
    assert lines[1:] == ["Cap:AUTOREPORT_TEMP:1", "Cap:AUTOREPORT_POS:0", "Cap:BUSY_PROTOCOL:1",
                         "Cap:EMERGENCY_PARSER:1", "Cap:EXTENDED_M20:1",
                         "Cap:CHAMBER_TEMPERATURE:0", "Cap:PROMPT_SUPPORT:0", "Cap:SDCARD:1",
                         "Cap:AUTOREPORT_SD_STATUS:1", "Cap:LONG_FILENAME:1",
                         "Cap:BINARY_FILE_TRANSFER:1", "ok"]


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, "ok T:21.30 /0.00 B:21.30 /0.00 @:0 B@:0"),
    ({"heated_bed": False}, "ok T:21.30 /0.00 @:0"),
    ({"extruders": 2, "heated_chamber": True},
     "ok T:21.30 /0.00 T0:21.30 /0.00 T1:21.30 /0.00 B:21.30 /0.00 C:21.30 /0.00 @:0 B@:0"),
])
def test_m105_format(spec: dict[str, object], expected: str) -> None:
    assert talk(fresh(**spec), "M105\n") == [expected]


def test_heat_up_and_cool_down_over_time() -> None:
    fw = fresh(extruders=2)
    assert talk(fw, "M104 S200\nM140 S60\nM104 T1 S100\n") == ["ok", "ok", "ok"]
    assert talk(fw, "M105\n", 5.0) == [
        "ok T:71.30 /200.00 T0:71.30 /200.00 T1:71.30 /100.00 B:60.00 /60.00 @:0 B@:0"]
    assert talk(fw, "T1\nM105\n", 30.0) == [
        "ok", "ok T:100.00 /100.00 T0:200.00 /200.00 T1:100.00 /100.00 B:60.00 /60.00 @:0 B@:0"]
    talk(fw, "M104 T0 S0\n", 30.0)
    assert talk(fw, "M105\n", 40.0)[0].split(" T1:")[0] == "ok T:100.00 /100.00 T0:180.00 /0.00"
    assert talk(fw, "M104 T5 S10\n", 40.0) == ["echo:M104 Invalid extruder 5", "ok"]


def test_m109_waits_with_reports_and_busy_lines_and_buffers_later_lines() -> None:
    fw = fresh()
    assert talk(fw, "M109 S50\n") == []            # reaches 49 degC at t = 2.77
    assert fw.next_deadline() == pytest.approx(1.0)
    assert talk(fw, "M105\nG28\n", 0.5) == []     # buffered behind the wait
    assert at(fw, 1.0) == [" T:31.30 /50.00 B:21.30 /0.00 @:0 B@:0 W:?"]
    assert fw.next_deadline() == pytest.approx(2.0)
    assert at(fw, 2.5) == [" T:41.30 /50.00 B:21.30 /0.00 @:0 B@:0 W:?", "echo:busy: processing"]
    assert fw.next_deadline() == pytest.approx(2.77)
    assert at(fw, 2.7) == []
    assert at(fw, 3.0) == ["ok", "ok T:49.00 /50.00 B:21.30 /0.00 @:0 B@:0", "ok"]
    assert fw.next_deadline() is None
    assert fw.accepted == ["M109 S50", "M105", "G28"]


def test_m190_without_busy_protocol_and_no_wait_when_already_hot() -> None:
    fw = fresh()
    assert talk(fw, "M113 S0\nM190 S60\n") == ["ok"]    # reaches 59 degC at t = 3.77
    assert fw.next_deadline() == 1.0
    assert at(fw, 5.0) == [f" T:21.30 /0.00 B:{t:.2f} /60.00 @:0 B@:0 W:?"
                           for t in (31.3, 41.3, 51.3)] + ["ok"]
    assert talk(fw, "M190 S23.5\n", 6.0) == ["ok"]   # within 1 degC already
    assert talk(fw, "M109 S0\n", 6.0) == ["ok"]      # nothing to wait for


def test_m109_r_waits_for_cooling() -> None:
    fw = fresh(wait_report_interval=100.0)
    talk(fw, "M104 S100\nM113 S0\n")
    assert talk(fw, "M109 R80\n", 10.0) == []        # 100 -> 81 at 2 degC/s: 9.5 s
    assert fw.next_deadline() == pytest.approx(19.5)
    assert at(fw, 19.5)[-1] == "ok"


def test_m108_breaks_heat_wait() -> None:
    fw = fresh()
    assert talk(fw, "M109 S200\n") == []
    assert talk(fw, "M108\n", 1.5) == [" T:31.30 /200.00 B:21.30 /0.00 @:0 B@:0 W:?", "ok", "ok"]
    assert fw.accepted == ["M109 S200", "M108"]
    assert fw.next_deadline() is None


@pytest.mark.parametrize(("cmd", "end", "first_deadline", "busy"), [
    ("G4 P1500", 1.5, 1.5, 0),
    ("G4 S5", 5.0, 2.0, 2),
    ("G4 S4", 4.0, 2.0, 1),     # no busy line exactly at the end
    ("G4 P1000 S0.25", 0.25, 0.25, 0),   # S wins over P, as in Marlin
])
def test_g4_dwell(cmd: str, end: float, first_deadline: float, busy: int) -> None:
    fw = fresh()
    assert talk(fw, cmd + "\n") == []
    assert fw.next_deadline() == first_deadline
    assert at(fw, end - 0.001) == ["echo:busy: processing"] * busy
    assert fw.next_deadline() == end
    assert at(fw, end) == ["ok"]
    assert fw.next_deadline() is None


def test_g4_zero_is_immediate() -> None:
    fw = fresh()
    assert talk(fw, "G4 P0\n") == ["ok"]
    assert fw.next_deadline() is None


def test_m113_sets_busy_interval() -> None:
    fw = fresh()
    talk(fw, "M113 S1\nG4 S3\n")
    assert at(fw, 3.0) == ["echo:busy: processing"] * 2 + ["ok"]


def test_m155_autoreport() -> None:
    fw = fresh()
    assert talk(fw, "M155 S2\n") == ["ok"]
    assert fw.next_deadline() == 2.0
    assert at(fw, 4.5) == [" " + ROOM, " " + ROOM]
    assert fw.next_deadline() == 6.0
    assert talk(fw, "M155 S0\n", 5.0) == ["ok"]
    assert fw.next_deadline() is None


def test_m155_unknown_without_capability() -> None:
    fw = fresh(capabilities=(("AUTOREPORT_TEMP", False),))
    assert talk(fw, "M155 S2\n") == ['echo:Unknown command: "M155 S2"', "ok"]
    assert fw.next_deadline() is None


KILL = ["echo:EMERGENCY SHUTDOWN DETECTED. KILLED.", "Error:Printer halted. kill() called!"]


@pytest.mark.parametrize(("sent", "accepted"), [
    (b"M112\n", ["M112"]),
    (frame(1, "M112"), ["M112"]),
    (b"G28\nM112\nG28\n", ["G28", "M112"]),
])
def test_m112_kills(sent: bytes, accepted: list[str]) -> None:
    fw = fresh()
    assert talk(fw, sent)[-2:] == KILL
    assert fw.killed
    assert fw.accepted == accepted
    assert talk(fw, "M105\n", 10.0) == []
    assert fw.next_deadline() is None


def test_m112_preempts_lines_buffered_behind_a_wait() -> None:
    fw = fresh()
    talk(fw, "M155 S1\nM109 S200\nG28\n")
    assert talk(fw, "M112\n", 0.5) == KILL
    assert fw.accepted == ["M155 S1", "M109 S200", "M112"]
    assert at(fw, 100.0) == [] and fw.next_deadline() is None


# ------------------------------------------------------------------ faults


def host_stream(fw: VirtualFirmware, commands: list[str]) -> list[str]:
    """A tiny resend-aware host: send one numbered line per ok, honour `Resend: n`."""
    transcript: list[str] = []
    talk(fw, frame(0, "M110 N0"))
    n = 1
    for _ in range(20 * len(commands)):
        if n > len(commands):
            break
        lines = talk(fw, frame(n, commands[n - 1]))
        transcript += lines
        for line in lines:
            if line.startswith("Resend: "):
                n = int(line[8:]) - 1
        n += 1
    return transcript


def test_corruption_is_deterministic_and_recoverable() -> None:
    commands = [f"G1 X{i} Y{i}" for i in range(60)]
    runs = [host_stream(faulty(seed=s, corrupt_rate=0.3), commands) for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert 5 < sum(line.startswith("Resend:") for line in runs[0]) < 40
    fw = faulty(seed=7, corrupt_rate=0.3)
    host_stream(fw, commands)
    assert fw.accepted == ["M110 N0", *commands]


def test_corrupt_line_is_rejected_and_not_executed() -> None:
    fw = faulty(corrupt_rate=1.0)
    assert talk(fw, frame(0, "M110 N0")) == ["ok"]      # M110 is never corrupted
    assert talk(fw, frame(1, "G28")) == resend(0, MISMATCH)
    assert talk(fw, b"G90\n") == ["ok"]                 # unnumbered lines are not
    assert fw.accepted == ["M110 N0", "G90"]


def test_resend_without_ok() -> None:
    fw = faulty(corrupt_rate=1.0, resend_without_ok=True)
    assert talk(fw, frame(1, "G28")) == resend(0, MISMATCH)[:2]


@pytest.mark.parametrize(("faults", "expected"), [
    ({"lost_ok_rate": 1.0}, []),
    ({"busy_rate": 1.0, "busy_lines": 3}, ["echo:busy: processing"] * 3 + ["ok"]),
    ({"error_rate": 1.0}, ["ok", "echo:printpipe virtual noise (injected, harmless)"]),
])
def test_per_command_faults_still_execute(faults: dict[str, object],
                                          expected: list[str]) -> None:
    fw = faulty(**faults)
    assert talk(fw, frame(1, "G1 X5")) == expected
    assert fw.accepted == ["G1 X5"]


def test_rate_faults_are_deterministic() -> None:
    def run(seed: int) -> list[str]:
        fw = faulty(seed=seed, lost_ok_rate=0.5, busy_rate=0.3, error_rate=0.2)
        return talk(fw, b"".join(b"G1 X%d\n" % i for i in range(40)))
    first = run(3)
    assert first == run(3)
    assert first != run(4)
    assert 5 < first.count("ok") < 35


def test_ok_delay_serialises_moves() -> None:
    fw = faulty(ok_delay=0.5)
    assert talk(fw, "G1 X1\nG1 X2\nG1 X3\nM400\n") == []
    assert fw.next_deadline() == 0.5
    assert at(fw, 0.5) == ["ok"]
    assert fw.next_deadline() == 1.0
    assert at(fw, 1.6) == ["ok", "ok", "ok"]           # the third move, then M400
    assert fw.accepted == ["G1 X1", "G1 X2", "G1 X3", "M400"]


def test_reset_after() -> None:
    fw = faulty(reset_after=3)
    talk(fw, frame(0, "M110 N0") + b"M104 S200\n")
    assert talk(fw, frame(1, "G28"), 2.0) == ["ok", *BOOT]     # at 41.30 degC
    assert talk(fw, "M105\n", 3.0) == ["ok T:39.30 /0.00 B:21.30 /0.00 @:0 B@:0"]  # cooling
    assert talk(fw, frame(2, "G28"), 3.0) == resend(0, LINENO)  # numbering forgotten
    assert talk(fw, frame(1, "G28"), 3.0) == ["ok"]
    assert talk(fw, frame(2, "G28"), 3.0) == ["ok"]              # resets once only


def test_disconnect_after() -> None:
    fw = faulty(disconnect_after=2)
    talk(fw, "G28\n")
    assert not fw.disconnect_requested
    assert talk(fw, "G28\n") == ["ok"]
    assert fw.disconnect_requested


def test_fatal_after() -> None:
    fw = faulty(fatal_after=2)
    talk(fw, "G28\n")
    assert talk(fw, "G28\nG28\n") == [
        "ok", "Error:Thermal Runaway, system stopped! Heater_ID: 0",
        "Error:Printer halted. kill() called!"]
    assert fw.killed
    assert fw.accepted == ["G28", "G28"]
    assert talk(fw, "M105\n") == []


def test_firmware_model_imports_no_trio_or_io() -> None:
    import subprocess
    import sys
    code = ("import sys, pipeline.virtual.firmware, pipeline.virtual\n"
            "bad = {'trio', 'trio_serial', 'termios', 'tty', 'socket'} & set(sys.modules)\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
