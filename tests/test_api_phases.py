"""The two host phases the HTTP API wires: `printer.additional_state_data` (under `plugins`
in /api/printer and /api/job) and `system.additional_commands` (listed and run through
OctoPrint's /api/system/commands endpoints as real subprocesses)."""

from __future__ import annotations

import phase_handlers
from http_fixtures import serve_for_test

STATE_DATA = """
pipeline:
  printer.additional_state_data:
    - handler: phase_handlers:state_data
      id: myplugin
"""
COMMANDS = """
pipeline:
  system.additional_commands:
    - handler: phase_handlers:runnable_system_cmds
      id: cmds
"""


async def test_state_data_of_stages_is_in_the_printer_and_job_payloads(tmp_path):
    async with serve_for_test(tmp_path, STATE_DATA) as srv:
        printer = (await srv.client.get("/api/printer")).json()
        job = (await srv.client.get("/api/job")).json()
    expected = {"myplugin": {"initial": False, "answer": 42}}
    assert printer["plugins"] == expected and job["plugins"] == expected


async def test_without_state_data_stages_there_is_no_plugins_key(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        assert "plugins" not in (await srv.client.get("/api/printer")).json()


async def test_system_commands_are_listed_by_source(tmp_path):
    async with serve_for_test(tmp_path, COMMANDS, connect=False) as srv:
        listed = (await srv.client.get("/api/system/commands")).json()
        assert listed["core"] == [] and listed["custom"] == []
        mark = listed["plugin"][0]
        assert {k: mark[k] for k in ("source", "action", "name", "confirm")} == {
            "source": "plugin", "action": "cmds:mark", "name": "Mark",
            "confirm": "Leave a mark?"}
        assert mark["resource"].endswith("/api/system/commands/plugin/cmds:mark")
        assert [c["action"] for c in listed["plugin"]] == [
            "cmds:mark", "cmds:fail", "cmds:fail-ignored", "cmds:refused"]
        only = (await srv.client.get("/api/system/commands/plugin")).json()
        assert only == listed["plugin"]
        r = await srv.client.get("/api/system/commands/elsewhere")
        assert r.status_code == 404 and "unknown source" in r.json()["error"]


async def test_system_commands_run_as_real_processes(tmp_path):
    marker = tmp_path / "marker"
    phase_handlers.MARKER = str(marker)
    async with serve_for_test(tmp_path, COMMANDS, connect=False) as srv:
        post = srv.client.post
        r = await post("/api/system/commands/plugin/cmds:mark")
        assert r.status_code == 204 and marker.read_text() == "marked\n"
        r = await post("/api/system/commands/plugin/cmds:fail")
        assert r.status_code == 500
        assert "exited with 3" in r.json()["error"] and "broken" in r.json()["error"]
        r = await post("/api/system/commands/plugin/cmds:fail-ignored")
        assert r.status_code == 204
        r = await post("/api/system/commands/plugin/cmds:refused")
        assert r.status_code == 500 and "not today" in r.json()["error"]
        assert not (tmp_path / "marker.before").exists()  # `before` failed: nothing ran
        r = await post("/api/system/commands/plugin/cmds:nothing")
        assert r.status_code == 404 and "no system command" in r.json()["error"]
        r = await post("/api/system/commands/core/shutdown")
        assert r.status_code == 404
