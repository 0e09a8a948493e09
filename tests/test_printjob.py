"""Print jobs against the firmware model in memory: exactly once under faults, states, pause,
resume, cancel, failures, pausing commands, action commands, M73."""

from __future__ import annotations

import octo_handlers  # noqa: F401  (handlers for YAML below)
import pytest
from pairs import FAST, pair, payloads, start, states
from sample_prints import file_lines

from pipeline.config.schema import FaultSpec
from pipeline.session.core import PrinterState as S
from pipeline.session.filejob import FileJob, JobFile
from pipeline.session.jobs import JobStateError, Outcome
from pipeline.virtual.pair import expected_commands, sample_gcode


def test_print_is_exact_under_faults():
    text = sample_gcode(3000, seed=1)
    p = pair(FAST, faults=FaultSpec(seed=11, corrupt_rate=0.01, lost_ok_rate=0.001,
                                    busy_rate=0.01))
    before = len(p.events)
    start(p, text)
    p.run_until(lambda: p.core.jobs.result is not None and p.core.state is S.OPERATIONAL)
    exp = expected_commands(text)
    assert file_lines(p.fw.accepted, exp) == exp
    assert p.core.jobs.result.outcome is Outcome.DONE
    assert states(p, before) == ["STARTING", "PRINTING", "FINISHING", "OPERATIONAL"]
    names = p.event_names()
    assert names.index("PrintStarted") < names.index("PrintDone")
    (done,) = payloads(p, "PrintDone")
    assert {"name", "path", "origin", "size", "owner", "time"} <= done.keys()


def test_pause_then_resume_gives_the_same_record():
    text = sample_gcode(600, seed=2)
    exp = expected_commands(text)
    p = pair(FAST)
    before = len(p.events)
    start(p, text)
    p.run_until(lambda: p.core.jobs.job.line_no >= 250)
    p.core.jobs.pause()
    p.run_until(lambda: p.core.state is S.PAUSED)
    assert p.fw.accepted[-2:] == ["M400", "M114"]
    (paused,) = payloads(p, "PrintPaused")
    assert paused["position"]["x"] is not None and paused["position"]["z"] is not None
    assert p.core.jobs.pause_record["position"] == paused["position"]
    sent_at_pause = len(p.fw.accepted)
    p.clock.now += 5
    p.run_until(lambda: True)
    assert len(p.fw.accepted) == sent_at_pause  # nothing from the file while paused
    p.core.jobs.resume()
    p.run_until(lambda: p.core.jobs.result is not None and p.core.state is S.OPERATIONAL)
    assert file_lines(p.fw.accepted, exp) == exp
    assert states(p, before) == ["STARTING", "PRINTING", "PAUSING", "PAUSED", "RESUMING",
                                 "PRINTING", "FINISHING", "OPERATIONAL"]


def test_cancel_stops_within_a_few_lines_and_ends_operational():
    text = sample_gcode(2000, seed=3)
    p = pair(FAST)
    start(p, text)
    p.run_until(lambda: p.core.jobs.job.line_no >= 300)
    handed_out = p.core.jobs.job.line_no
    p.core.jobs.cancel()
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    assert p.core.jobs.job.line_no - handed_out <= 2
    assert p.core.jobs.result.outcome is Outcome.CANCELLED
    names = p.event_names()
    assert names.index("PrintCancelling") < names.index("PrintCancelled") \
        < names.index("PrintFailed")
    (failed,) = payloads(p, "PrintFailed")
    assert failed["reason"] == "cancelled"
    assert "M108" in p.fw.accepted


def test_cancel_can_capture_the_position():
    p = pair(FAST + "  log_position_on_cancel: yes\n")
    start(p, sample_gcode(500, seed=4))
    p.run_until(lambda: p.core.jobs.job.line_no >= 100)
    p.core.jobs.cancel()
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    (cancelled,) = payloads(p, "PrintCancelled")
    assert cancelled["position"]["x"] is not None


def test_position_capture_is_bounded_when_m114_never_answers():
    p = pair(FAST + """pipeline:
  comm.protocol.gcode.received:
    - handler: octo_handlers:received_upper
""")
    p.core.pipeline.received[0].handler = lambda comm, line: None if "X:" in line else line
    start(p, sample_gcode(300, seed=5))
    p.run_until(lambda: p.core.jobs.job.line_no >= 50)
    p.core.jobs.pause()
    p.run_until(lambda: p.core.state is S.PAUSED, max_time=60)
    (paused,) = payloads(p, "PrintPaused")
    assert paused["position"] is None


def test_printer_reset_mid_print_fails_the_job_and_keeps_the_link():
    p = pair(FAST, faults=FaultSpec(reset_after=200))
    start(p, sample_gcode(1000, seed=6))
    p.run_until(lambda: p.core.jobs.result is not None)
    result = p.core.jobs.result
    assert result.outcome is Outcome.ERROR and "reset" in result.error
    assert result.filepos and 0 < result.filepos < p.core.jobs.job.file.size
    assert [pl["reason"] for pl in payloads(p, "PrintFailed")] == ["error"]
    p.run_until(lambda: p.core.idle)
    assert p.core.state is S.OPERATIONAL and not p.core.failed
    # re-synchronised, autoreport re-armed, the SD card mounted and listed again
    assert p.fw.accepted[-5:] == ["M110 N0", "M155 S2", "M21", "M27 S1", "M20 L"]
    assert b"M112" not in b"".join(p.wire)


def test_fatal_firmware_error_mid_print_ends_in_error_with_position():
    p = pair(FAST, faults=FaultSpec(fatal_after=200))
    start(p, sample_gcode(1000, seed=6))
    p.run_until(lambda: p.core.failed)
    result = p.core.jobs.result
    assert result.outcome is Outcome.ERROR and "Thermal Runaway" in result.error
    assert result.filepos and 0 < result.filepos < p.core.jobs.job.file.size
    assert p.core.state is S.ERROR
    assert [pl["reason"] for pl in payloads(p, "PrintFailed")] == ["error"]


def test_pausing_command_in_the_file_pauses_and_is_not_sent():
    text = "G28\nG1 X1\nM0\nG1 X2\n"
    p = pair(FAST)
    start(p, text)
    p.run_until(lambda: p.core.state is S.PAUSED)
    assert "M0" not in p.fw.accepted and "G1 X2" not in p.fw.accepted
    p.core.jobs.resume()
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    assert "G1 X2" in p.fw.accepted


def test_action_pause_and_resume_from_the_printer():
    p = pair(FAST)
    start(p, "G1 X1\nM118 // action:pause\n" + "G1 X2\n" * 50)
    p.run_until(lambda: p.core.state is S.PAUSED)
    p.core.receive_data(b"// action:resume\n")
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    assert p.fw.accepted.count("G1 X2") == 50


def test_manual_commands_slip_between_file_lines():
    p = pair(FAST)
    start(p, "".join(f"G1 X{i}\n" for i in range(100)))
    p.run_until(lambda: p.core.jobs.job.line_no >= 20)
    p.core.enqueue("M117 hello")
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    i = p.fw.accepted.index("M117 hello")
    assert p.fw.accepted[i - 1].startswith("G1 X") and p.fw.accepted[i + 1].startswith("G1 X")


def test_m73_progress_and_time_left():
    p = pair(FAST)
    job = start(p, "M73 P40 R12\n" + "G1 X1\n" * 10 + "G4 P1\n" * 200)
    p.run_until(lambda: job.line_no >= 15)
    assert job.progress == 0.4 and job.time_left(10) == 720


def test_wrong_state_is_refused():
    p = pair(FAST)
    with pytest.raises(JobStateError):
        p.core.jobs.pause()
    with pytest.raises(JobStateError):
        p.core.jobs.cancel()
    start(p, "G1 X1\n" * 100)
    with pytest.raises(JobStateError):
        p.core.jobs.start(FileJob(JobFile("x", "x", 1)))


AT_YAML = FAST + """pipeline:
  comm.protocol.atcommand.queuing:
    - handler: at_handlers:record_at
  comm.protocol.atcommand.sending:
    - handler: at_handlers:record_at
"""


def test_atcommands_run_both_phases_and_are_never_sent():
    import at_handlers
    at_handlers.calls.clear()
    p = pair(AT_YAML)
    p.send("@wait 5 seconds", "G1 X1")
    assert [c[:3] for c in at_handlers.calls] == [("queuing", "wait", "5 seconds"),
                                                  ("sending", "wait", "5 seconds")]
    assert not any(a.startswith("@") for a in p.fw.accepted)
    assert b"@" not in b"".join(p.wire)
    assert p.fw.accepted[-1] == "G1 X1"


def test_builtin_at_pause_in_a_file_pauses_and_at_resume_from_the_api_resumes():
    import at_handlers
    at_handlers.calls.clear()
    p = pair(AT_YAML)
    start(p, "G1 X1\n@pause\nG1 X2\n")
    p.run_until(lambda: p.core.state is S.PAUSED)
    assert "G1 X2" not in p.fw.accepted
    assert ("queuing", "pause", "") in [c[:3] for c in at_handlers.calls]
    assert "source:file" in at_handlers.calls[0][3]
    p.core.enqueue("@resume")
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    assert "G1 X2" in p.fw.accepted


def test_at_cancel_from_the_script_it_would_retrigger_is_ignored():
    p = pair(FAST)
    start(p, "G1 X1\n" * 200)
    p.run_until(lambda: p.core.jobs.job.line_no >= 20)
    p.core.enqueue("@cancel", tags=frozenset({"script:afterPrintCancelled"}))
    p.run_until(lambda: p.core.jobs.job.line_no >= 40)
    assert p.core.state is S.PRINTING
    p.core.enqueue("@abort")
    p.run_until(lambda: p.core.state is S.OPERATIONAL)
    assert p.core.jobs.result.outcome is Outcome.CANCELLED
