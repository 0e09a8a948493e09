"""Every named script at its moment, as pipeline inputs (tags, stage prefixes/postfixes),
its events when it really runs, and broken scripts that send nothing."""

from __future__ import annotations

import logging

import octo_handlers as h
from pairs import pair, start

from pipeline.hooks.scripts import SCRIPT_NAMES, ScriptSet
from pipeline.session.core import PrinterState as S
from pipeline.virtual.pair import Pair

MARK = {name: f"M117 {name}" for name in SCRIPT_NAMES}
PAUSE = """{% if pause_position.x is not none %}
M117 parked from X{{ pause_position.x }} Z{{ pause_position.z }}
{% endif %}"""
TOOLS = "M117 tool {{ tool.old }} to {{ tool.new }}"

YAML = """serial:
  timeouts:
    communication: 1.0
    temperature: 0.5
printer:
  profile:
    extruders: 2
pipeline:
  comm.protocol.gcode.sent:
    - handler: octo_handlers:record
"""


def scripted(inline: dict[str, str], yaml: str = YAML) -> Pair:
    """A connected Pair whose named scripts are `inline` (the bundled ones for the rest)."""
    return pair(yaml, scripts=ScriptSet.load(None, inline))


def test_after_printer_connected_runs_after_the_handshake():
    p = scripted(dict(MARK))
    acc = p.fw.accepted
    assert acc.index("M115") < acc.index("M117 afterPrinterConnected")


def test_print_done_and_tool_change_scripts_at_their_places():
    p = scripted(dict(MARK, beforeToolChange=TOOLS, afterToolChange=TOOLS + " done"))
    start(p, "G1 X1\nT1\nG1 X2\n")
    p.run_until(lambda: p.core.jobs.result is not None and p.core.state is S.OPERATIONAL)
    acc = p.fw.accepted
    i = acc.index("M117 beforePrintStarted")
    assert acc[i + 1:i + 6] == ["G1 X1", "M117 tool 0 to 1", "T1", "M117 tool 0 to 1 done",
                                "G1 X2"]
    assert acc[i + 6:i + 8] == ["M400", "M117 afterPrintDone"]


def test_pause_and_resume_scripts_see_the_captured_position():
    p = scripted(dict(MARK, afterPrintPaused=PAUSE))
    start(p, "G28\nG1 X12.5 Y3 Z0.3 F3000\n" + "G1 X13 Y4\n" * 50)
    p.run_until(lambda: p.core.jobs.job.line_no >= 10)
    p.core.jobs.pause()
    p.run_until(lambda: p.core.state is S.PAUSED)
    acc = p.fw.accepted
    assert acc[-3:-1] == ["M400", "M114"]
    assert acc[-1] == "M117 parked from X13.0 Z0.3"
    paused_at = len(acc)
    p.core.jobs.resume()
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    assert p.fw.accepted[paused_at] == "M117 beforePrintResumed"
    assert p.fw.accepted[paused_at + 1] == "G1 X13 Y4"


def test_unknown_pause_position_skips_the_guarded_block():
    p = scripted(dict(MARK, afterPrintPaused=PAUSE), YAML.replace(
        "serial:\n", "serial:\n  log_position_on_pause: no\n"))
    start(p, "G1 X1\n" * 50)
    p.run_until(lambda: p.core.jobs.job.line_no >= 10)
    p.core.jobs.pause()
    p.run_until(lambda: p.core.state is S.PAUSED)
    assert not any(a.startswith("M117 parked") for a in p.fw.accepted)


def test_cancel_script_runs_after_cancelling():
    p = scripted({})  # the bundled afterPrintCancelled
    start(p, "G1 X1\n" * 300)
    p.run_until(lambda: p.core.jobs.job.line_no >= 50)
    p.core.jobs.cancel()
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    acc = p.fw.accepted
    assert acc[-5:] == ["M84", "M104 T0 S0", "M104 T1 S0", "M140 S0", "M106 S0"]


def test_script_lines_are_tagged_as_pipeline_inputs():
    h.calls.clear()
    p = scripted(dict(MARK))
    start(p, "G1 X1\n")
    p.run_until(lambda: p.core.state is S.OPERATIONAL and p.core.jobs.result is not None)
    (tags,) = [c[5] for c in h.calls if c[1] == "M117 beforePrintStarted"]
    assert {"source:script", "script:beforePrintStarted",
            "trigger:comm.send_gcode_script"} <= tags


def test_scripts_phase_stages_add_prefix_and_postfix():
    p = scripted(dict(MARK), YAML + """  comm.protocol.scripts:
    - handler: seed_examples:message_on_connect
""")
    acc = p.fw.accepted
    i = acc.index("M117 afterPrinterConnected")
    assert acc[i + 1] == "M117 printpipe connected"


def test_running_fires_before_the_first_line_and_finished_after_the_last_ack():
    p = scripted({"afterPrintDone": "M117 one\nM117 two"})
    seen = []
    p.core.listeners.append(lambda e, pl: seen.append((str(e), list(p.fw.accepted))))
    start(p, "G1 X1\n")
    p.run_until(lambda: p.core.state is S.OPERATIONAL and p.core.jobs.result is not None)
    p.run_until(lambda: p.core.idle)
    (running,) = [a for e, a in seen if e == "GcodeScriptAfterPrintDoneRunning"]
    (finished,) = [a for e, a in seen if e == "GcodeScriptAfterPrintDoneFinished"]
    assert "M117 one" not in running and running[-1] == "M400"
    assert finished[-2:] == ["M117 one", "M117 two"]
    names = [e for e, _ in seen]
    assert names.index("PrintDone") < names.index("GcodeScriptAfterPrintDoneRunning")


def test_a_broken_script_sends_nothing_and_names_script_and_line(caplog):
    p = scripted({"afterPrintDone": "M117 fine\nM117 {{ nothing_here }}\nM117 never"})
    start(p, "G1 X1\n")
    with caplog.at_level(logging.ERROR, logger="printpipe.scripts"):
        p.run_until(lambda: p.core.state is S.OPERATIONAL and p.core.jobs.result is not None)
    assert "M117 fine" not in p.fw.accepted
    assert "afterPrintDone:2" in caplog.text
    assert caplog.text.count("G-code script not sent") == 1


def test_unknown_snippet_at_run_time_sends_nothing(caplog):
    p = scripted({"beforePrintStarted": "M117 first\n{% snippet 'warmup' %}\nM117 last"})
    with caplog.at_level(logging.ERROR, logger="printpipe.scripts"):
        start(p, "G1 X1\n")
        p.run_until(lambda: p.core.state is S.OPERATIONAL and p.core.jobs.result is not None)
    assert "M117 first" not in p.fw.accepted and "G1 X1" in p.fw.accepted
    assert "beforePrintStarted:2" in caplog.text and "warmup" in caplog.text
