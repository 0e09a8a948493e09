"""The seed's example handlers run unchanged when declared by import path, and the seed's
ordering example runs in the seed's order."""

from __future__ import annotations

import seed_examples as ex
from pairs import pair, start

from pipeline.hooks.script_phase import script_additions
from pipeline.session.core import PrinterState as S

YAML = """pipeline:
  comm.protocol.gcode.received:
    - handler: seed_examples:detect_machine_type
  comm.protocol.temperatures.received:
    - handler: seed_examples:sanitize_temperatures
  comm.protocol.gcode.error:
    - handler: seed_examples:handle_error
  comm.protocol.action:
    - handler: seed_examples:hook_action
  comm.protocol.atcommand.queuing:
    - handler: seed_examples:pause_on_wait
  comm.protocol.scripts:
    - handler: seed_examples:message_on_connect
    - handler: seed_examples:gcode_script_variables
  comm.protocol.gcode.sending:
    - handler: seed_examples:order_none
      id: aaa_unordered
    - handler: seed_examples:order_two
      id: two
      order: 2
    - handler: seed_examples:order_one
      id: one
      order: 1
"""


def test_seed_examples_run_unchanged():
    ex.seen.clear()
    p = pair(YAML)
    assert ("machine_type", "Virtual") in ex.seen                      # read M115
    p.core.receive_data(b"T:999.0 /0.0 B:60.0 /60.0\n")                 # sanitize
    assert p.core.tracker.bed[0] == 60.0 and p.core.tracker.tools.get(0, [None])[0] != 999.0
    p.core.receive_data(b"Error:Fan error detected\n")                  # error handled
    assert ("handled", "Fan error detected") in ex.seen and not p.core.failed
    p.send("M118 // action:custom")                                     # action
    assert ("custom action", "// action:custom") in ex.seen
    add = script_additions(p.core.pipeline, "afterPrinterConnected")    # scripts
    assert [c.line for c in add.postfix] == ["M117 printpipe connected"]
    assert script_additions(p.core.pipeline, "beforePrintStarted").variables == {
        "gcode_script_variables": {"myvariable": "Hi! I'm a variable!"}}


def test_custom_atcommand_pauses_the_print_through_the_facade():
    ex.seen.clear()
    p = pair(YAML)
    start(p, "G1 X1\n@wait 5\nG1 X2\n")
    p.run_until(lambda: p.core.state is S.PAUSED)
    assert ("@wait", "5") in ex.seen and "G1 X2" not in p.fw.accepted


def test_the_seed_ordering_example_runs_in_the_seed_order():
    ex.seen.clear()
    p = pair(YAML)
    ex.seen.clear()
    p.send("G28")
    assert [s[1] for s in ex.seen if s[0] == "order"] == ["one", "two", "none"]
