"""G-code scripts end to end over a real pty: each script's lines reach the virtual printer
at the right place in the stream, with the pause position from the M114 taken at pause."""

from __future__ import annotations

import os

import trio
from conftest import ROOT, load_yaml, open_printer

from pipeline.session.core import PrinterState as S
from pipeline.session.jobs import Outcome

YAML = f"""printer:
  profile:
    extruders: 2
serial:
  timeouts:
    communication: 0.5
    temperature: 0.3
virtual:
  faults:
    seed: 1
scripts:
  folder: {os.path.join(ROOT, "configs", "scripts")}
  gcode:
    afterPrinterConnected: M117 connected
    beforePrinterDisconnected: M117 bye
    beforePrintStarted: M117 start
    afterPrintDone: M117 done
    beforeToolChange: M117 tool {{{{ tool.old }}}} to {{{{ tool.new }}}}
"""

FILE = "G28\nG1 X5 Y5 Z0.3 F3000\n" + "G1 X6 Y6 E0.1\n" * 300 + "T1\nG1 X7 Y7\n" + \
       "G1 X8 Y8 E0.1\n" * 300


async def test_scripts_reach_the_printer_at_their_places(tmp_path):
    path = tmp_path / "job.gcode"
    path.write_text(FILE)
    config = load_yaml(YAML)
    # the virtual printer has as many extruders as the profile (firmware_spec)
    async with open_printer(config) as printer:
        fw = printer.virtual.firmware
        assert "M117 connected" in fw.accepted
        jobs = printer.core.jobs
        job = await printer.start_print(str(path))
        assert await printer.wait_until(lambda: job.line_no >= 150, 20, poll=0.001)
        jobs.pause()
        assert await printer.wait_until(lambda: printer.core.state is S.PAUSED, 15, poll=0.01)
        pos = jobs.pause_record["position"]
        assert fw.accepted[-8:-6] == ["M400", "M114"]         # capture, then afterPrintPaused
        assert fw.accepted[-6:] == ["G91", "M83", "G1 Z5 E-5 F4500", "M82", "G90", "G1 X0 Y0"]
        jobs.resume()
        assert await printer.wait_until(lambda: job.line_no >= 304, 15, poll=0.01)
        acc = fw.accepted
        i = len(acc) - 1 - acc[::-1].index("M83")  # beforePrintResumed starts with M83
        assert f"G92 E{pos['e']}" in acc[i:]
        assert f"G1 X{pos['x']} Y{pos['y']} Z{pos['z']} F4500" in acc[i:]
        result = await printer.wait_job_end(30)
        assert result.outcome is Outcome.DONE
        acc = fw.accepted
        t = acc.index("T1")
        assert acc[t - 1] == "M117 tool 0 to 1"
        start = acc.index("M117 start")
        assert acc[start + 1:start + 3] == ["G28", "G1 X5 Y5 Z0.3 F3000"]
        assert acc[-2:] == ["M400", "M117 done"]
    assert fw.accepted[-1] == "M117 bye"  # an orderly disconnect


async def test_cancel_script_and_no_disconnect_script_after_a_failure(tmp_path):
    path = tmp_path / "job.gcode"
    path.write_text(FILE)
    config = load_yaml(YAML)
    async with open_printer(config) as printer:
        fw = printer.virtual.firmware
        job = await printer.start_print(str(path))
        assert await printer.wait_until(lambda: job.line_no >= 100, 20, poll=0.001)
        printer.core.jobs.cancel()
        result = await printer.wait_job_end(15)
        assert result.outcome is Outcome.CANCELLED
        assert fw.accepted[-5:] == ["M84", "M104 T0 S0", "M104 T1 S0", "M140 S0", "M106 S0"]
        printer.send(["M112"])  # the link fails: no beforePrinterDisconnected
        assert await printer.wait_until(printer.link.closed.is_set, 5)
        await trio.sleep(0.1)
    assert "M117 bye" not in fw.accepted
