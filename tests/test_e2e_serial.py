"""End to end over a real pty: host (trio-serial) <-> built-in virtual printer. Real clock."""

from __future__ import annotations

import os
import subprocess
import sys

import trio
from conftest import ROOT, load_yaml, open_printer, run_cli

from pipeline.session.states import PrinterState

FAST = """
serial:
  timeouts:
    communication: 0.5
    temperature: 0.3
    resend_ok: 0.2
"""


def events_of(printer):
    seen = []
    printer.core.listeners.append(lambda e, p: seen.append((str(e), p)))
    return seen


async def test_connect_handshake_caps_and_temperatures():
    async with open_printer(load_yaml("")) as printer:
        core = printer.core
        assert core.state is PrinterState.OPERATIONAL
        assert core.engine.firmware_name.startswith("printpipe Virtual Marlin")
        assert core.engine.capabilities["EMERGENCY_PARSER"] is True
        printer.send(["M104 S210", "M140 S60", "M105"])
        assert await printer.wait_idle(5)
        await trio.sleep(0.3)
        printer.send(["M105"])
        assert await printer.wait_idle(5)
        assert core.tracker.tools[0][1] == 210 and core.tracker.bed[1] == 60
        assert core.tracker.tools[0][0] > 21.3
        assert printer.virtual.firmware.accepted[:2] == ["M110 N0", "M110 N0"] or \
            "M115" in printer.virtual.firmware.accepted


async def test_yaml_stage_rewrite_reaches_the_printer():
    with open(os.path.join(ROOT, "configs", "virtual.yaml")) as f:
        config = load_yaml(f.read(), "configs/virtual.yaml")
    async with open_printer(config) as printer:
        printer.send(["M107"])
        assert await printer.wait_idle(5)
        assert printer.virtual.firmware.accepted[-1] == "M106 S0"


async def test_checksum_errors_are_resent_and_recovered():
    config = load_yaml(FAST + """  checksum: always
virtual:
  faults:
    seed: 7
    corrupt_rate: 0.05
""")
    lines = [f"G1 X{i % 100} Y{i % 50}" for i in range(400)]
    async with open_printer(config) as printer:
        printer.send(lines)
        assert await printer.wait_idle(20)
        accepted = [a for a in printer.virtual.firmware.accepted if a.startswith("G1 ")]
        assert accepted == lines
        assert printer.core.statistics().resends >= 5


async def test_lost_ok_is_recovered_by_a_probe():
    # The timing and the exactly-once proof under many lost oks are on the in-memory Pair
    # (test_print_faults.py); here the link's watchdog sends the probe on the real clock,
    # after the shortest ok deadline (0.5 s). Seed 19 loses the 19th ok (the next only after
    # 100 more commands).
    config = load_yaml("""serial:
  timeouts:
    communication: 0.3
    temperature: 0.2
    temperature_autoreport: 0
virtual:
  faults:
    seed: 19
    lost_ok_rate: 0.03
""")
    lines = [f"G1 X{i}" for i in range(40)]
    async with open_printer(config) as printer:
        started = trio.current_time()
        printer.send(lines)
        assert await printer.wait_idle(30)
        assert [a for a in printer.virtual.firmware.accepted if a.startswith("G1 ")] == lines
        assert printer.core.operational
        assert printer.core.statistics().timeouts >= 1  # the lost ok (exact counts: Pair)
        assert printer.core.engine.deadlines.probes_total >= 1
        assert trio.current_time() - started >= 0.05  # recovered at the deadline, not before


async def test_printer_reset_while_idle_keeps_the_link():
    config = load_yaml("virtual:\n  faults:\n    reset_after: 11\n")  # after the connect
    async with open_printer(config) as printer:
        seen = events_of(printer)
        printer.send([f"G1 X{i}" for i in range(10)])
        assert await printer.wait_until(lambda: any(e == "PrinterReset" for e, _ in seen), 5)
        assert ("PrinterReset", {"idle": True}) in seen
        printer.send(["M105"])
        assert await printer.wait_idle(5)
        assert printer.core.operational


async def test_vanished_port_ends_offline_after_error_without_crashing():
    config = load_yaml("virtual:\n  faults:\n    disconnect_after: 6\n")
    async with open_printer(config) as printer:
        seen = events_of(printer)
        printer.send([f"G1 X{i}" for i in range(20)])
        assert await printer.wait_until(printer.link.closed.is_set, 10)
        assert printer.core.state is PrinterState.CLOSED_WITH_ERROR
        assert "Disconnected" in [e for e, _ in seen]
        assert printer.core.error


async def test_m112_runs_the_emergency_sequence():
    async with open_printer(load_yaml("")) as printer:
        seen = events_of(printer)
        printer.send(["M112"])
        assert await printer.wait_until(printer.link.closed.is_set, 5)
        # the host may close its end before the printer side has read the M112 from the pty
        assert await printer.wait_until(lambda: printer.virtual.firmware.killed, 5, poll=0.01)
        names = [e for e, _ in seen]
        assert names.index("EStop") < names.index("Error")
        assert printer.core.state is PrinterState.CLOSED_WITH_ERROR
        assert "emergency stop" in printer.core.error


def test_cli_send_shows_the_firmware_reply():
    out = run_cli("send", "M115")
    assert out.returncode == 0, out.stderr
    assert "Recv: FIRMWARE_NAME:printpipe Virtual Marlin" in out.stdout
    assert "Cap:EMERGENCY_PARSER:1" in out.stdout


def test_cli_bad_config_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("printer:\n  port: virtual\n  baudrate: fast\n")
    out = run_cli("send", "-c", str(bad), "M115")
    assert out.returncode == 2
    assert f"{bad}:3" in out.stderr and "baudrate" in out.stderr


async def test_standalone_virtual_printer_serves_another_process(tmp_path):
    link = str(tmp_path / "vprinter")
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pipeline.app.cli", "virtual", "--link", link], cwd=ROOT,
        stdout=subprocess.DEVNULL)
    try:
        with trio.fail_after(10):
            while not os.path.exists(link):
                await trio.sleep(0.05)
        async with open_printer(load_yaml(f"printer:\n  port: {link}\n")) as printer:
            printer.send(["M114"])
            assert await printer.wait_idle(5)
            assert printer.core.engine.firmware_name.startswith("printpipe Virtual")
    finally:
        proc.terminate()
        await proc.wait()


async def test_marlin_serial_model_over_the_pty_prints_exactly():
    """Marlin's serial model on trio's clock (large time values) behind a real pty, 2%
    corrupted lines: the host learns BUFSIZE 4 from the oks but keeps one line in flight
    (auto on Marlin), the RX buffer never overflows, nothing is lost, no rest of a line
    cut by a line error runs."""
    config = load_yaml(FAST + """  checksum: always
virtual:
  marlin:
    enabled: true
  faults:
    seed: 3
    corrupt_rate: 0.02
""")
    lines = [f"G1 X{i % 100} Y{i % 50} E0.01" for i in range(300)]
    async with open_printer(config) as printer:
        engine = printer.core.engine
        assert engine.window.advanced_ok and engine.window.slots == 4
        printer.send(lines)
        assert await printer.wait_idle(20)
        firmware = printer.virtual.firmware
        assert [a for a in firmware.accepted if a.startswith("G1 ")] == lines
        assert firmware.rx_lost == 0 and firmware.max_queue <= 4
        assert firmware.fragments_run == 0 and engine.window.limit == 1
        assert printer.core.statistics().resends >= 3
