"""`printpipe sd` with the virtual printer on a real pty: `upload` run as the command (the
8.3 name shown), a binary file refused before anything connects, and
`list`, `print` (followed to its end) and `delete` on a card holding files; an unknown name
exits 1 naming it."""

from __future__ import annotations

import io

import trio
from conftest import load_yaml, run_cli
from test_e2e_sd import FAST

from pipeline.app.cli.interrupts import Interrupts
from pipeline.app.cli.sdcard import sd_action
from pipeline.app.service import open_service
from pipeline.virtual.pair import sample_gcode


def test_upload_as_a_command(tmp_path):
    gcode = tmp_path / "Big Part.gcode"
    gcode.write_text(sample_gcode(400, seed=2))
    config = tmp_path / "printpipe.yaml"
    config.write_text(f"printer:\n  port: virtual\nstorage:\n  folder: {tmp_path}/files\n"
                      f"  state: {tmp_path}/state\n" + FAST)
    result = run_cli("sd", "upload", str(gcode), "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert f"uploaded {gcode} as bigpart.gco:" in result.stdout
    blob = tmp_path / "photo.gcode"
    blob.write_bytes(bytes(range(256)) * 4)
    result = run_cli("sd", "upload", str(blob), "-c", str(config))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    result = run_cli("sd", "print", "-c", str(config))
    assert result.returncode == 2 and "give the name" in result.stderr


async def test_list_print_and_delete(tmp_path, capsys):
    config = load_yaml(f"storage:\n  folder: {tmp_path}/files\n  state: {tmp_path}/state\n"
                       + FAST)
    async with open_service(config) as control:
        await control.connect()
        card = control.session.virtual.firmware.card
        card.create("cube.gco").data += sample_gcode(300, seed=3).encode()
        card.create("other.gco").data += b"G28\r\n"
        out = io.StringIO()
        interrupts = Interrupts(trio.CancelScope())
        assert await sd_action(control, "list", None, interrupts, out=out) == 0
        listed = [line.split() for line in out.getvalue().splitlines()]
        assert [row[:2] for row in listed] == [["cube.gco", str(len(card.find("cube.gco").data))],
                                               ["other.gco", "5"]]
        out = io.StringIO()
        assert await sd_action(control, "print", "cube.gco", interrupts, out=out) == 0
        assert "done: cube.gco" in out.getvalue()
        job = control.status().job
        assert job is not None and job.file.origin == "sdcard" and job.progress == 1.0
        assert await sd_action(control, "delete", "other.gco", interrupts, out=out) == 0
        assert card.find("other.gco") is None and card.find("cube.gco") is not None
        assert await sd_action(control, "delete", "nosuch.gco", interrupts, out=out) == 1
        assert "no file 'nosuch.gco' on the SD card" in capsys.readouterr().err
