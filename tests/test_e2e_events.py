"""Events and subscriptions over the real serial path (the virtual printer on a pty): gcode
subscriptions slip between file lines during a print, tagged `trigger:event`; a system
subscription runs while printing; `printpipe print` runs Startup/Shutdown subscriptions."""

from __future__ import annotations

import os
import textwrap

import event_handlers
from conftest import ROOT, load_yaml, run_cli

from pipeline.app.service import open_service
from pipeline.virtual.pair import expected_commands, sample_gcode


async def test_gcode_subscription_slips_between_file_lines_tagged_trigger_event(tmp_path):
    gcode = tmp_path / "layers.gcode"
    gcode.write_text(sample_gcode(600, seed=3))
    marker = tmp_path / "started"
    config = load_yaml(textwrap.dedent(f"""\
        printer:
          port: virtual
        pipeline:
          comm.protocol.gcode.sent:
            - handler: "event_handlers:record_m117"
        events:
          subscriptions:
            - event: ZChange
              type: gcode
              command: M117 layer {{new}} from {{old}}
            - event: PrintStarted
              type: system
              command: touch {marker}
        """))
    event_handlers.RECORDED.clear()
    async with open_service(config) as service:
        await service.connect()
        printer = service.session
        sub = service.bus.subscribe("test", events=["ZChange", "PrintDone"], size=10_000)
        service.select(str(gcode), "layers.gcode")
        await service.start()
        result = await printer.wait_job_end(60)
        assert result is not None and result.outcome.value == "done"
        await printer.wait_idle(10)
        accepted = list(printer.virtual.firmware.accepted)
    changes = [ev.payload async for ev in sub if ev.name == "ZChange"]
    assert changes, "the sample has layer changes"
    m117 = [line for line in accepted if line.startswith("M117 layer")]
    assert len(m117) == len(changes)
    # They went out during the print, between file lines, not after it.
    file_lines = expected_commands(gcode.read_text())
    last_file_line = max(i for i, line in enumerate(accepted) if line == file_lines[-1])
    first_m117 = accepted.index(m117[0])
    assert first_m117 < last_file_line
    assert all(tags >= {"trigger:event", "event:ZChange"} for _, tags in event_handlers.RECORDED)
    assert marker.exists()


def test_printpipe_print_runs_startup_and_shutdown_subscriptions(tmp_path):
    log = tmp_path / "log.txt"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        printer:
          port: virtual
        events:
          subscriptions:
            - event: Startup
              type: system
              command: sh -c 'echo startup >> {log}'
            - event: PrintDone
              type: system
              command: sh -c 'echo "done $0" >> {log}' {{name}}
            - event: Shutdown
              type: system
              command: sh -c 'echo shutdown >> {log}'
        """))
    sample = tmp_path / "s.gcode"
    sample.write_text("G28\nG1 Z0.2\nG1 X10 Y10 E1\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = run_cli("print", "-c", str(cfg), str(sample), env=env)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    # system commands run concurrently: Startup's may finish after a short print's PrintDone;
    # Shutdown's runs once the others are done
    assert sorted(lines[:2]) == ["done s.gcode", "startup"] and lines[2:] == ["shutdown"]
    assert "exited with 0" in proc.stderr  # subscription results are logged
