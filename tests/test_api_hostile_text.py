"""Text no client should send answers 400 with the reason, never a 500 with a traceback in the
log, against a real server and the virtual printer: a lone surrogate (`"\\ud800"`, which JSON
can spell but no UTF-8 can write) and JSON nested deeper than MAX_DEPTH, in every JSON body
and in an upload's `userdata`."""

from __future__ import annotations

import json
import logging

import pytest
from http_fixtures import serve_for_test
from test_api_clean_errors import CUBE, NUMBER_BODIES, accepted

from pipeline.app.http.support import MAX_DEPTH

SURROGATE = '"M117 \\ud800"'
TOO_DEEP = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
STACK_DEEP = "[" * 20_000 + "]" * 20_000   # past Python's recursion limit, within 64 KiB

HOSTILE = [(SURROGATE, "JSON text holds a lone surrogate (\\ud800): not a character"),
           (TOO_DEEP, f"JSON nested too deeply (at most {MAX_DEPTH} levels)"),
           (STACK_DEEP, f"JSON nested too deeply (at most {MAX_DEPTH} levels)")]


def no_tracebacks(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.exc_info is not None or r.levelno >= logging.ERROR]


async def test_a_lone_surrogate_or_deep_nesting_answers_400_in_every_json_body(tmp_path,
                                                                             caplog):
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post("/api/files/local", files={"file": ("cube.gcode", CUBE)})
        assert r.status_code == 201
        before = len(accepted(srv))
        for url, body in [*NUMBER_BODIES, ("/api/printer/command", '{{"commands": [{n}]}}')]:
            for value, reason in HOSTILE:
                r = await srv.client.post(url, content=body.format(n=value),
                                          headers={"Content-Type": "application/json"})
                assert r.status_code == 400, (url, value[:20], r.status_code, r.text)
                assert r.json()["error"] == reason
        for value, reason in HOSTILE:
            r = await srv.client.post("/api/files/local", data={"userdata": value},
                                      files={"file": ("x.gcode", CUBE)})
            assert r.status_code == 400, (value[:20], r.text)
            assert r.json()["error"] == f"'userdata': {reason}"
        r = await srv.client.post("/api/files/local", data={"userdata": '{"a": [[["ok"]]]}'},
                                  files={"file": ("x.gcode", CUBE)})
        assert r.status_code == 201
        r = await srv.client.get("/api/files/local/x.gcode")
        assert r.json()["userdata"] == {"a": [[["ok"]]]}
        assert len(accepted(srv)) == before
    assert no_tracebacks(caplog) == []


@pytest.mark.parametrize("text", ["M117 \ud800", "M117 \udfff tail"])
async def test_a_surrogate_in_a_command_is_refused_as_text_not_a_crash(tmp_path, caplog, text):
    async with serve_for_test(tmp_path) as srv:
        r = await srv.client.post("/api/printer/command", content=json.dumps({"command": text}),
                                  headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "lone surrogate" in r.json()["error"]
    assert no_tracebacks(caplog) == []
