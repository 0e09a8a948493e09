"""The host side of the printer's SD card on the in-memory Pair: the card found at connect,
SD prints (select, start, progress from M27 polling or autoreport, pause, resume, cancel, the
printer's own `Done printing file`) with every event's OctoPrint payload keys and the scripts
around them, the link free meanwhile; uploads of a 2 MB file in text mode and in Marlin's
binary transfer, byte-identical (text mode: comments stripped), also with corrupted lines,
lost oks and corrupted packets; refusals, failed uploads that leave no half file, the
`comm.protocol.gcode.*` phases on upload lines and the `printer.sdcardupload` phase."""

from __future__ import annotations

from typing import Any

import pytest
import sd_handlers as sh
from pairs import FAST, pair, payloads, start

from pipeline.config.schema import FaultSpec
from pipeline.events.names import PAYLOAD_KEYS, Event
from pipeline.gcode import split_lines, strip_comment
from pipeline.hooks.scripts import ScriptSet
from pipeline.session.jobs import JobStateError, Outcome
from pipeline.session.states import PrinterState as S
from pipeline.virtual.pair import Pair, sample_gcode

MARLIN = "virtual:\n  marlin:\n    enabled: true\n"
#: What every SD event must carry (OctoPrint 1.11.8), the rest of PAYLOAD_KEYS may be there.
REQUIRED = {
    "FileSelected": {"name", "path", "origin"},
    "PrintStarted": {"name", "path", "origin", "size", "owner", "user"},
    "PrintPaused": {"name", "path", "origin", "size", "owner", "user"},
    "PrintResumed": {"name", "path", "origin", "size", "owner", "user"},
    "PrintDone": {"name", "path", "origin", "size", "owner", "time"},
    "PrintCancelling": {"name", "path", "origin", "size", "owner", "user"},
    "PrintCancelled": {"name", "path", "origin", "size", "owner", "time", "user"},
    "PrintFailed": {"name", "path", "origin", "size", "owner", "time", "reason"},
    "TransferStarted": {"local", "remote"},
    "TransferDone": {"local", "remote", "time"},
    "TransferFailed": {"local", "remote", "time"},
}


def check(p: Pair, name: str) -> dict[str, Any]:
    """The one `name` event's payload, its keys checked against the catalogue."""
    (payload,) = payloads(p, name)
    assert REQUIRED[name] <= set(payload) <= set(PAYLOAD_KEYS[Event(name)]), (name, payload)
    if "origin" in REQUIRED[name]:
        assert payload["origin"] == "sdcard"
    return payload


def on_card(p: Pair, name: str, text: str) -> None:
    """Put a file on the virtual card and let the host list it."""
    f = p.fw.card.create(name)
    f.data += text.encode()
    p.core.sd.refresh()
    p.run_until(lambda: p.core.sd.find(name) is not None)


def upload(p: Pair, data: bytes, *, binary: bool, remote: str = "up.gco") -> tuple[str, str, str]:
    sd = p.core.sd
    sd.binary = binary
    up = sd.start_upload(local="part.gcode", size=len(data), remote=remote)
    assert up.mode == ("binary" if binary else "text")
    up.feed(data)
    up.feed(b"")
    p.run_until(lambda: sd.upload is None and p.core.idle, max_time=3600)
    assert sd.last_upload is not None
    return sd.last_upload


def stored_text(text: str) -> bytes:
    """What Marlin stores for a text upload: every command, comments stripped, CRLF."""
    return b"".join(c.encode() + b"\r\n" for c in (strip_comment(x) for x in split_lines(text))
                    if c)


# ---- connect -----------------------------------------------------------------------------------

def test_connect_mounts_the_card_lists_it_and_arms_the_autoreport():
    p = pair(FAST)
    assert p.core.sd.ready
    sd_commands = [c for c in p.fw.accepted if c[:3] in ("M21", "M27", "M20")]
    assert sd_commands == ["M21", "M27 S1", "M20 L"]
    on_card(p, "cube.gco", "G28\n")
    assert [(f.path, f.size) for f in p.core.sd.files] == [("cube.gco", 4)]


def test_sd_support_off_sends_nothing_and_refuses():
    p = pair("serial:\n  sd:\n    enabled: false\n")
    assert not any(c.startswith(("M21", "M20", "M27")) for c in p.fw.accepted)
    with pytest.raises(JobStateError, match=r"serial\.sd\.enabled"):
        p.core.sd.start_upload(local="a.gcode", size=1)


def test_a_released_card_is_not_ready_and_forgets_its_files():
    p = pair(FAST)
    on_card(p, "cube.gco", "G28\n")
    p.send("M22")
    assert not p.core.sd.ready and p.core.sd.files == []
    p.core.sd.init()
    p.run_until(lambda: p.core.sd.ready and p.core.idle)
    assert [f.path for f in p.core.sd.files] == ["cube.gco"]


# ---- printing from the card ------------------------------------------------------------------

SCRIPTS = ScriptSet.load(None, {
    "beforePrintStarted": "M117 before", "afterPrintDone": "M117 done",
    "afterPrintPaused": "M117 paused", "beforePrintResumed": "M117 resuming",
    "afterPrintCancelled": "M117 cancelled"})
POLLING = "serial:\n  timeouts:\n    communication: 1.0\n  sd:\n    autoreport_interval: 0\n"


def printing(p: Pair, lines: int = 3000) -> None:
    on_card(p, "cube.gco", sample_gcode(lines, seed=3))
    p.core.sd.select("cube.gco", print_after=True, user="ana")
    p.run_until(lambda: p.core.state is S.PRINTING)


@pytest.mark.parametrize("how", ["autoreport", "polling"])
def test_sd_print_progress_pause_resume_done_with_events_and_scripts(how):
    p = pair((POLLING if how == "polling" else FAST) + MARLIN, scripts=SCRIPTS)
    printing(p)
    jobs, sd = p.core.jobs, p.core.sd
    seen = []

    def progress_moves(target: float) -> bool:
        if how == "polling" and not p.core.queues.manual:
            sd.poll()
        seen.append(jobs.job.progress)
        return jobs.job.progress >= target

    p.run_until(lambda: progress_moves(0.3))
    assert seen == sorted(seen) and seen[0] < seen[-1]
    assert (how == "polling") == ("M27" in p.fw.accepted)
    p.core.enqueue("M105")  # the link is free: a command during the SD print is answered
    p.run_until(lambda: not p.core.queues.manual and p.core.engine.in_flight == 0)
    jobs.pause()
    p.run_until(lambda: p.core.state is S.PAUSED)
    at = jobs.job.pos
    p.clock.now += 5.0
    p.run_until(lambda: p.core.idle)
    assert not p.fw.card.printing and jobs.job.pos - at < 2000  # (what was queued ran)
    jobs.resume()
    p.run_until(lambda: jobs.result is not None and p.core.state is S.OPERATIONAL)
    assert jobs.result.outcome is Outcome.DONE and jobs.job.progress == 1.0
    acc = p.fw.accepted
    order = [acc.index(x) for x in ("M23 cube.gco", "M117 before", "M24", "M25", "M117 paused",
                                    "M117 resuming", "M117 done")]
    assert order == sorted(order) and acc.count("M24") == 2
    assert check(p, "PrintStarted")["user"] == "ana"
    for name in ("FileSelected", "PrintPaused", "PrintResumed", "PrintDone"):
        check(p, name)
    assert check(p, "PrintDone")["size"] == len(p.fw.card.find("cube.gco").data)
    assert "GcodeScriptAfterPrintDoneFinished" in p.event_names()


def test_sd_print_cancel_stops_the_printer_and_fires_cancel_events():
    p = pair(FAST + MARLIN, scripts=SCRIPTS)
    printing(p)
    p.run_until(lambda: p.core.jobs.job.progress > 0.1)
    p.core.jobs.cancel()
    p.run_until(lambda: p.core.jobs.result is not None and p.core.state is S.OPERATIONAL)
    assert p.core.jobs.result.outcome is Outcome.CANCELLED
    tail = p.fw.accepted[p.fw.accepted.index("M25"):]
    assert tail[:3] == ["M25", "M26 S0", "M524"] and "M117 cancelled" in tail
    assert not p.fw.card.printing and p.fw.card.selected is None
    for name in ("PrintCancelling", "PrintCancelled"):
        check(p, name)
    assert check(p, "PrintFailed")["reason"] == "cancelled"


def test_sd_print_start_is_refused_without_a_selection_and_while_printing_locally():
    p = pair(FAST)
    with pytest.raises(JobStateError, match="no file on the SD card is selected"):
        p.core.sd.start()
    on_card(p, "cube.gco", "G28\n")
    start(p, sample_gcode(2000))
    with pytest.raises(JobStateError, match="cannot upload to the SD card while"):
        p.core.sd.start_upload(local="x.gcode", size=10)


# ---- uploads -----------------------------------------------------------------------------------

BIG = sample_gcode(72_000, seed=11)  # about 2 MB


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_a_2mb_upload_is_byte_identical(binary):
    assert len(BIG) > 2_000_000
    p = pair(FAST + MARLIN)
    data = BIG.encode()
    assert upload(p, data, binary=binary) == ("part.gcode", "up.gco", "")
    stored = bytes(p.fw.card.find("up.gco").data)
    assert stored == (data if binary else stored_text(BIG))
    done = check(p, "TransferDone")
    assert done["time"] > 0 and check(p, "TransferStarted") == {"local": "part.gcode",
                                                                "remote": "up.gco"}
    assert [f.path for f in p.core.sd.files] == ["up.gco"]  # the list was refreshed


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_uploads_stay_exact_with_corrupted_lines_packets_and_lost_oks(binary):
    text = sample_gcode(9000, seed=5)
    p = pair(FAST + MARLIN, faults=FaultSpec(seed=3, corrupt_rate=0.01, lost_ok_rate=0.001))
    assert upload(p, text.encode(), binary=binary)[2] == ""
    stored = bytes(p.fw.card.find("up.gco").data)
    assert stored == (text.encode() if binary else stored_text(text))
    if binary:
        transfer = p.core.sd.finished_upload.transfer
        assert transfer.resends > 0 and p.fw.bft is None
        p.send("M105")  # the printer is back in text mode
        assert p.fw.accepted[-1] == "M105"
    else:
        resends = [x for x in p.received if x.startswith("Resend")]
        assert resends and p.core.engine.deadlines.probes_total > 0


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_a_refused_line_fails_the_upload_and_leaves_no_half_file(binary):
    p = pair(FAST + MARLIN)
    text = sample_gcode(3000) + "M104 S999\n" + sample_gcode(100)
    why = upload(p, text.encode(), binary=binary)[2]
    assert "line 3001 of part.gcode" in why and "999" in why
    assert p.fw.card.find("up.gco") is None and p.core.sd.find("up.gco") is None
    failed = check(p, "TransferFailed")
    assert failed["reason"] == why and not payloads(p, "TransferDone")
    assert p.core.state is S.OPERATIONAL
    p.send("M105")  # the link is back in text mode
    assert p.fw.accepted[-1] == "M105"


def test_no_print_starts_while_an_upload_runs_and_the_queue_waits():
    p = pair(FAST)
    p.core.sd.binary = False
    up = p.core.sd.start_upload(local="a.gcode", size=10)
    up.feed(b"G28\n")
    p.run_until(lambda: "M28 a.gco" in p.fw.accepted)
    with pytest.raises(JobStateError, match="uploaded to the SD card"):
        start(p, "G28\n")
    p.core.enqueue("M117 later")
    p.clock.now += 1
    p.step()
    assert "M117 later" not in p.fw.accepted  # it would land in the file
    up.feed(b"")
    p.run_until(lambda: p.core.idle)
    assert p.fw.accepted.index("M117 later") > p.fw.accepted.index("M29")
    assert bytes(p.fw.card.find("a.gco").data) == b"G28\r\n"


def test_binary_falls_back_to_text_when_off():
    p = pair("serial:\n  sd:\n    binary_transfer: false\n" + MARLIN)
    assert p.core.sd.binary  # the firmware offers it ...
    up = p.core.sd.start_upload(local="a.gcode", size=4)
    assert up.mode == "text"  # ... the config says no


# ---- phases ------------------------------------------------------------------------------------

def test_upload_lines_pass_the_gcode_phases_tagged_and_sending_sd_rewrites():
    sh.calls.clear()
    y = ("pipeline:\n"
         "  comm.protocol.gcode.queuing:\n    - handler: sd_handlers:record_upload_lines\n"
         "  comm.protocol.gcode.sent:\n    - handler: sd_handlers:record_upload_lines\n"
         "  comm.protocol.gcode.sending.sd:\n    - handler: sd_handlers:stamp_m117\n")
    for binary in (False, True):
        sh.calls.clear()
        p = pair(y + MARLIN)
        upload(p, b"G28 ; home\nM117 hello\n", binary=binary, remote=f"p{int(binary)}.gco")
        assert ("queuing", "G28") in sh.calls and ("sent", "M117 stamped") in sh.calls
        assert ("sd", "sending", "M117 hello") in sh.calls
        stored = bytes(p.fw.card.find(f"p{int(binary)}.gco").data)
        assert stored == (b"G28 ; home\nM117 stamped\n" if binary else
                          b"G28\r\nM117 stamped\r\n")


def test_the_sdcardupload_phase_takes_the_upload_over_or_declines():
    sh.calls.clear()
    take = "pipeline:\n  printer.sdcardupload:\n    - handler: sd_handlers:take_upload\n"
    p = pair(take)
    assert p.core.sd_lane.hooked_upload("a.gcode", "/files/a.gcode") == "taken.gco"
    assert sh.calls == [("upload", "a.gcode", "/files/a.gcode")]
    assert check(p, "TransferDone") == {"local": "a.gcode", "remote": "taken.gco", "time": 1.5}
    check(p, "TransferStarted")
    sh.calls.clear()
    p = pair("pipeline:\n  printer.sdcardupload:\n    - handler: sd_handlers:decline_upload\n")
    assert p.core.sd_lane.hooked_upload("a.gcode", "/files/a.gcode") is None
    assert sh.calls == [("declined", "a.gcode")]
