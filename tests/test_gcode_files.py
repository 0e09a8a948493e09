"""Files that are G-code: the check of a file's first block (session/filejob.py's
`gcode_problem`), the UTF-8 byte order mark skipped when printing, and the refusals of binary
files by `printpipe print`, uploads and print starts, end to end (nothing stored, nothing sent)."""

from __future__ import annotations

import os
import random
import re

import pytest
import trio
from conftest import load_yaml, open_printer, run_cli
from http_fixtures import serve_for_test
from sample_prints import file_lines

from pipeline.session.filejob import SNIFF, FileJob, JobFile, gcode_problem, not_gcode
from pipeline.session.jobs import JobStateError
from pipeline.session.states import PrinterState as S

BOM = b"\xef\xbb\xbf"
RANDOM = random.Random(12).randbytes(200_000)  # what issue 12 "printed" as model.stl
CUBE = b"G28\nG1 Z0.2 F300\nG1 X10 Y10 E1 F1200\nG1 X20 E2\n"
CUBE_LINES = ["G28", "G1 Z0.2 F300", "G1 X10 Y10 E1 F1200", "G1 X20 E2"]
THUMBNAIL = (b"; thumbnail begin 16x16 120\n; iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9h\n"
             b"; AAAAPklEQVQ4jWNgGAWjYBSMglEwCkbBKBgFo2AUjIJRMApGwSgYBaNgFIyCUTAKRsEoGAWj\n"
             b"; thumbnail end\n")
BGCODE = b"GCDE\x01\x00\x00\x00\x01\x00" + RANDOM[:1000]  # magic, version 1, CRC32
BGCODE_PROBLEM = ("it is binary G-code (.bgcode), which printpipe cannot stream; export "
                  "plain-text G-code from the slicer")
NOT_UTF8 = "invalid UTF-8 at offset 2 (50% of the first 8 bytes are not ASCII)"
BINARY_BYTE = re.compile(r"(NUL|control) byte( 0x[0-9a-f]{2})? at offset \d+")


# ---- the check of the first block ------------------------------------------------------------

@pytest.mark.parametrize(("block", "problem"), [
    (CUBE, None),
    (CUBE.replace(b"\n", b"\r\n"), None),
    ("; filament_type = PLA\n; Füllung ≥ 20 %, 日本語\nM117 Drücken\n".encode() + CUBE, None),
    (THUMBNAIL + CUBE, None),
    (BOM + CUBE, None),
    (b"; Temperatur 200\xb0C (latin-1, an old slicer)\n" + CUBE, None),  # 8-bit text passes
    (CUBE + b"\x1a", None),                       # a DOS end-of-file mark
    (b"\tG28\x0c\x0b\n", None),                   # whitespace controls are text
    (b"", None),                                  # G-code without commands
    ("; é".encode()[:-1], None),                  # the block cut inside a character
    (b"G28\n\0\0\0", "NUL byte at offset 4"),
    (b"G28\n\x1b[31m", "control byte 0x1b at offset 4"),
    (b"G28\x7f", "control byte 0x7f at offset 3"),
    (b"G2\xe98\xe9\xe9\xe9\n", NOT_UTF8),
    (BGCODE, BGCODE_PROBLEM),
    ("G28\n".encode("utf-16"), "it is UTF-16 text; save it as UTF-8"),
    (b"solid cube\n" + b"\0" * 80, "NUL byte at offset 11"),  # a binary STL's header
], ids=lambda v: repr(v)[:30] if isinstance(v, bytes) else None)
def test_gcode_problem(block, problem):
    assert gcode_problem(block) == problem


def test_random_bytes_are_refused_at_their_first_binary_byte():
    first = next(i for i, b in enumerate(RANDOM)
                 if b not in b"\t\n\x0b\x0c\r\x1a" and (b < 32 or b == 127))
    problem = gcode_problem(RANDOM[:SNIFF])
    assert problem is not None and BINARY_BYTE.fullmatch(problem)
    assert problem.endswith(f" at offset {first}")


def test_not_gcode_names_the_file():
    assert not_gcode("model.stl", b"\0") == "model.stl is not a G-code file: NUL byte at offset 0"
    assert not_gcode("cube.gcode", CUBE) is None


def test_a_bom_is_skipped_and_counted_in_the_file_position():
    job = FileJob(JobFile("bom.gcode", "bom.gcode", len(BOM + CUBE)))
    job.feed(BOM + CUBE)
    job.feed(b"")
    first = job.next_command()
    assert first is not None and first.line == "G28"
    assert "filepos:7" in first.tags  # the BOM's 3 bytes and "G28\n"
    while job.next_command() is not None:
        pass
    assert job.progress == 1.0


def test_a_bom_later_in_the_file_is_not_the_first_chunk():
    job = FileJob(JobFile("x", "x", 100))
    job.feed(b"G28\n")
    job.feed(BOM + b"G1 X1\n")  # not at the start of the file: left alone
    assert [job.next_command().line, job.next_command().line] == ["G28", "\ufeffG1 X1"]


# ---- printing: nothing is sent ------------------------------------------------------------

async def test_start_print_refuses_a_binary_file_and_sends_nothing(tmp_path):
    path = tmp_path / "model.gcode"
    path.write_bytes(RANDOM)
    async with open_printer(load_yaml("")) as printer:
        await printer.wait_idle(5)
        accepted = list(printer.virtual.firmware.accepted)
        with pytest.raises(JobStateError, match=r"^model\.gcode is not a G-code file: ") as exc:
            await printer.start_print(str(path))
        assert BINARY_BYTE.search(str(exc.value))
        await trio.sleep(0.3)  # temperature polls may come; no file line does
        assert [a for a in printer.virtual.firmware.accepted if a != "M105"] == [
            a for a in accepted if a != "M105"]
        assert printer.core.jobs.job is None and printer.core.state is S.OPERATIONAL


async def test_a_bom_file_prints_g28_first(tmp_path):
    path = tmp_path / "bom.gcode"
    path.write_bytes(BOM + CUBE)
    async with open_printer(load_yaml("")) as printer:
        await printer.start_print(str(path))
        result = await printer.wait_job_end(20)
        assert result is not None and result.filepos == len(BOM + CUBE)
        accepted = printer.virtual.firmware.accepted
        assert file_lines(accepted, CUBE_LINES) == CUBE_LINES
        assert not [a for a in accepted if "\xef" in a or "\ufeff" in a]


def test_cli_print_of_random_bytes_exits_2_and_connects_nothing(tmp_path):
    path = tmp_path / "model.stl"
    path.write_bytes(RANDOM)
    marker = tmp_path / "connected"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("events:\n  subscriptions:\n    - event:\n        - Connected\n"
                   "        - PrintStarted\n"
                   f"      type: system\n      command: touch {marker}\n")
    out = run_cli("print", "-c", str(cfg), str(path))
    assert out.returncode == 2
    assert out.stderr.startswith(f"printpipe: {path} is not a G-code file: ")
    assert BINARY_BYTE.search(out.stderr) and len(out.stderr.splitlines()) == 1
    assert "done" not in out.stdout and "lines" not in out.stdout
    assert not marker.exists()  # the printer was never even connected


# ---- the HTTP API -------------------------------------------------------------------------

def stored(srv) -> list[str]:
    root = srv.api.storage.root
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, _dirs, files in os.walk(root) for n in files)


async def test_an_upload_of_random_bytes_is_refused_and_not_stored(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        ev = srv.events()
        for fields in ({}, {"select": "true", "print": "true"}):
            r = await srv.client.post("/api/files/local", data=fields,
                                      files={"file": ("model.gcode", RANDOM)})
            assert r.status_code == 415
            error = r.json()["error"]
            assert error.startswith("model.gcode is not a G-code file: ")
            assert BINARY_BYTE.search(error)
        r = await srv.client.post("/api/files/local", files={"file": ("mk4.gcode", BGCODE)})
        assert r.status_code == 415 and "binary G-code (.bgcode)" in r.json()["error"]
        # a wrong extension is named first: the storage would not take it anyway
        r = await srv.client.post("/api/files/local", files={"file": ("model.stl", RANDOM)})
        assert r.status_code == 415 and "files of type 'stl' are not accepted" in r.json()["error"]
        assert stored(srv) == []  # no file, no temp file left behind
        assert srv.service.selected is None
        await trio.sleep(0.1)
        assert not {"FileAdded", "Upload", "PrintStarted"} & set(ev.names())


async def test_starting_a_binary_file_answers_409_and_sends_nothing(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        ev = srv.events()
        os.makedirs(srv.api.storage.root, exist_ok=True)
        with open(os.path.join(srv.api.storage.root, "old.gcode"), "wb") as f:
            f.write(RANDOM)  # put there before uploads were checked
        firmware = srv.service.session.virtual.firmware
        before = [a for a in firmware.accepted if a != "M105"]
        r = await srv.client.post("/api/files/local/old.gcode",
                                  json={"command": "select", "print": True})
        assert r.status_code == 409
        assert r.json()["error"].startswith("selected, but cannot print: old.gcode is not a "
                                            "G-code file: ")
        r = await srv.client.post("/api/job", json={"command": "start"})
        assert r.status_code == 409 and BINARY_BYTE.search(r.json()["error"])
        assert "old.gcode is not a G-code file" in r.json()["error"]
        await trio.sleep(0.2)
        assert [a for a in firmware.accepted if a != "M105"] == before
        assert not ev.of("PrintStarted") and srv.service.status().job is None


async def test_an_uploaded_bom_file_prints_g28_first_and_is_analysed_whole(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        ev = srv.events()
        r = await srv.client.post("/api/files/local", data={"print": "true"},
                                  files={"file": ("bom.gcode", BOM + CUBE)})
        assert r.status_code == 201 and r.json()["effectivePrint"] is True
        await ev.wait_for("PrintDone")
        accepted = srv.service.session.virtual.firmware.accepted
        assert file_lines(accepted, CUBE_LINES) == CUBE_LINES
        analysis = (await ev.wait_for("MetadataAnalysisFinished")).payload["result"]
        assert analysis["travelArea"]["minZ"] == 0.0  # the G28 on the first line counted
