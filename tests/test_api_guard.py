"""The wire guard end to end, against a real server and the virtual printer on a pty whose
record (`accepted`) shows what reached the firmware: commands from the API that break a
rule answer 400 naming it and queue nothing; a placeholder or a script value can never add a
line; a printed file asking for too much fails."""

from __future__ import annotations

import pytest
import trio
from http_fixtures import serve_for_test

from pipeline.events.names import Event


def accepted(srv) -> list[str]:
    return list(srv.service.session.virtual.firmware.accepted)


def heater_lines(srv) -> list[str]:
    return [a for a in accepted(srv) if a.startswith(("M104", "M109", "M140", "M190"))]


async def test_commands_over_a_limit_answer_400_naming_it_and_nothing_is_queued(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        post = srv.client.post
        r = await post("/api/printer/command", json={"commands": ["G28", "M104 S999"]})
        assert r.status_code == 400
        assert "M104 S999" in r.json()["error"] and "hotend limit of 300" in r.json()["error"]
        r = await post("/api/printer/tool", json={"command": "target", "targets": {"tool0": 350}})
        assert r.status_code == 400 and "hotend limit" in r.json()["error"]
        r = await post("/api/printer/bed", json={"command": "target", "target": 151})
        assert r.status_code == 400 and "bed limit of 150" in r.json()["error"]
        r = await post("/api/printer/command", json={"command": "M117 " + "y" * 100})
        assert r.status_code == 400 and "serial.max_line_length" in r.json()["error"]
        r = await post("/api/printer/command", json={"commands": ["M104 S200"]})
        assert r.status_code == 204
        with trio.fail_after(10):
            while "M104 S200" not in accepted(srv):
                await trio.sleep(0.02)
        assert heater_lines(srv) == ["M104 S200"] and "G28" not in accepted(srv)


async def test_a_placeholder_value_can_never_add_a_line(tmp_path):
    subscription = """
    events:
      subscriptions:
        - event: FileSelected
          type: gcode
          command: M117 selected {name}
    """
    async with serve_for_test(tmp_path, subscription) as srv:
        rec = srv.events(["CommandSuppressed"])
        srv.service.publish(Event.FILE_SELECTED,
                            {"name": "x\nM104 S250", "path": "x", "origin": "local"})
        srv.service.publish(Event.FILE_SELECTED, {"name": "cube", "path": "c", "origin": "local"})
        with trio.fail_after(10):
            while "M117 selected cube" not in accepted(srv):
                await trio.sleep(0.02)
        assert heater_lines(srv) == []
        assert not any("M104" in a for a in accepted(srv))
        assert rec.of("CommandSuppressed") == []  # refused before it was queued: nothing sent


async def test_a_script_value_with_a_line_break_is_a_400_and_sends_nothing(tmp_path):
    scripts = """
    scripts:
      gcode:
        say: M117 {{ words }}
    """
    async with serve_for_test(tmp_path, scripts) as srv:
        r = await srv.client.post("/api/printer/command", json={
            "script": "say", "context": {"words": "hi\nM104 S250"}})
        assert r.status_code == 400
        assert r.json()["error"].startswith("context.words holds a line break")
        r = await srv.client.post("/api/scripts/say/render",
                                  json={"context": {"words": "hi\nM104 S250"}})
        assert r.status_code == 400
        r = await srv.client.post("/api/printer/command", json={
            "script": "say", "context": {"words": "hello"}})
        assert r.status_code == 204
        with trio.fail_after(10):
            while "M117 hello" not in accepted(srv):
                await trio.sleep(0.02)
        assert heater_lines(srv) == []


@pytest.mark.parametrize("hot", [b"M104 S400", b"m104 s 0400"])  # (respelled: read as Marlin)
async def test_a_printed_file_asking_for_too_much_fails_with_the_line(tmp_path, hot):
    gcode = b"G28\nM140 S60\n" + hot + b"\nG1 X10\n"
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["PrintFailed"])
        r = await srv.client.post("/api/files/local", data={"print": "true"},
                                  files={"file": ("hot.gcode", gcode)})
        assert r.status_code == 201
        failed = await rec.wait_for("PrintFailed", timeout=20)
        assert failed.payload["reason"] == "error"
        assert failed.payload["error"].startswith("line 3 of the file: target 400 °C")
        job = (await srv.client.get("/api/job")).json()
        assert job["state"] == "Operational" or job["state"].startswith("Cancel")
        assert "M104 S400" not in accepted(srv) and "G1 X10" not in accepted(srv)
        assert "M140 S60" in accepted(srv)


def test_the_record_of_a_standalone_printer_never_shows_an_unsafe_line(tmp_path):
    """`printpipe virtual --record` in its own process; `printpipe print` of a file that asks
    for a hotend over its limit (respelled as Marlin would still read it), an infinite move
    and an injected line: the print fails at
    the first with its line, and the record holds none of them."""
    import os
    import subprocess
    import sys
    import time

    from conftest import ROOT, run_cli

    link, record = tmp_path / "printer", tmp_path / "record.txt"
    cfg = tmp_path / "host.yaml"
    cfg.write_text(f"printer:\n  port: {link}\n")
    gcode = tmp_path / "bad.gcode"
    gcode.write_text("G28\nM140 S60\nG1 X10\nm104 s 0400\nG1 Xinf\nM117 a\rM104 S280\nG1 X20\n")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "virtual", "--link",
                             str(link), "--record", str(record)], cwd=ROOT,
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(link) and time.monotonic() < deadline:
            time.sleep(0.05)
        out = run_cli("print", "-c", str(cfg), str(gcode))
        time.sleep(0.3)  # the printer process flushes its record every 50 ms
    finally:
        proc.terminate()
        proc.wait(5)
    assert out.returncode == 1
    assert "line 4 of the file: target 400 °C is above the hotend limit of 300 °C" in out.stderr
    assert os.stat(record).st_mode & 0o777 == 0o600  # the printer's traffic: its owner's only
    lines = record.read_text().splitlines()
    assert [x for x in lines if x in ("G28", "M140 S60", "G1 X10", "G1 X20")] == [
        "G28", "M140 S60", "G1 X10"]  # the file stopped at its line 4
    assert not any("inf" in x or "400" in x or "280" in x for x in lines)
    assert not any(x.lower().startswith("m104 s4") for x in lines)
    assert lines.index("M140 S0") > lines.index("G1 X10")  # afterPrintCancelled: heaters off
