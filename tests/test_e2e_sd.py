"""The SD card end to end over a real pty with the virtual printer and the real link: an
upload streamed from disk in text mode and in Marlin's binary transfer (the copy on the card
exact), then printed from the card with progress moving by the link's M27 polls, paused,
resumed and finished by the printer's own `Done printing file`, temperatures answered
meanwhile; and a cancelled SD print."""

from __future__ import annotations

from conftest import load_yaml, open_printer

from pipeline.gcode import split_lines, strip_comment
from pipeline.session.jobs import Outcome
from pipeline.session.sd.upload import SdUpload
from pipeline.session.states import PrinterState as S
from pipeline.virtual.pair import sample_gcode

FAST = """serial:
  timeouts:
    communication: 0.5
    temperature: 0.3
  sd:
    status_interval: 0.05
    autoreport_interval: 0
virtual:
  sd:
    line_time: 0.0005
"""


async def test_upload_text_and_binary_then_print_from_the_card(tmp_path):
    text = sample_gcode(3000, seed=9)
    path = tmp_path / "Part One.gcode"
    path.write_text(text)
    async with open_printer(load_yaml(FAST)) as printer:
        core, fw = printer.core, printer.virtual.firmware
        assert core.sd.ready and core.sd.binary
        for binary in (False, True):
            core.sd.binary = binary
            up = await printer.upload_to_sd(str(path), remote=f"part{int(binary)}.gco")
            assert isinstance(up, SdUpload) and up.mode == ("binary" if binary else "text")
            assert await printer.wait_upload(30) == ("Part One.gcode", up.remote, "")
            stored = bytes(fw.card.find(up.remote).data)
            expected = text.encode() if binary else b"".join(
                c.encode() + b"\r\n" for c in map(strip_comment, split_lines(text)) if c)
            assert stored == expected
        assert await printer.wait_until(lambda: len(core.sd.files) == 2, 5)
        jobs = core.jobs
        core.sd.select("part1.gco", print_after=True)
        assert await printer.wait_until(lambda: core.state is S.PRINTING, 5, poll=0.01)
        assert await printer.wait_until(lambda: jobs.job.progress > 0.2, 20, poll=0.01)
        temps = core.tracker.temperature_payload()
        assert "M27" in fw.accepted and temps  # polled; the link still answers
        jobs.pause()
        assert await printer.wait_until(lambda: core.state is S.PAUSED, 5, poll=0.01)
        assert not fw.card.printing
        jobs.resume()
        result = await printer.wait_job_end(30)
        assert result is not None and result.outcome is Outcome.DONE
        assert jobs.job.file.origin == "sdcard" and jobs.job.progress == 1.0
        assert fw.sd_executed > 2900 and core.state is S.OPERATIONAL


async def test_cancel_an_sd_print(tmp_path):
    async with open_printer(load_yaml(FAST)) as printer:
        core, fw = printer.core, printer.virtual.firmware
        fw.card.create("long.gco").data += sample_gcode(20000).encode()
        core.sd.refresh()
        assert await printer.wait_until(lambda: core.sd.find("long.gco") is not None, 5)
        core.sd.select("long.gco", print_after=True)
        assert await printer.wait_until(lambda: core.state is S.PRINTING, 5, poll=0.01)
        assert await printer.wait_until(lambda: core.jobs.job.pos > 0, 10, poll=0.01)
        core.jobs.cancel()
        result = await printer.wait_job_end(10)
        assert result is not None and result.outcome is Outcome.CANCELLED
        assert not fw.card.printing and "M524" in fw.accepted
