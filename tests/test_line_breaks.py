"""Line breaks other than \\n and \\r: str.splitlines() also cuts at \\v, \\f, \\x1c-\\x1e, \\x85,
U+2028 and U+2029, which made one API command (or one parameter value) two commands. Every
path that cuts command text into lines cuts at \\n, \\r\\n and \\r only; any other break stays
inside the command, where the wire guard refuses it, and a script or command parameter holding
any break is refused naming it. Table-driven over every separator: the pure helpers, then the
HTTP API against the virtual printer's record (MQTT: tests/test_mqtt_safety.py)."""

from __future__ import annotations

import pytest
import trio
from http_fixtures import serve_for_test

from pipeline.app.http.bodies import command_lines
from pipeline.app.mqtt.commands import gcode_lines
from pipeline.config.schema import ProfileSpec, SerialSpec
from pipeline.gcode import OTHER_LINE_BREAKS, split_lines
from pipeline.hooks.scripts import ScriptSet
from pipeline.session.guard import WireGuard

#: Every character str.splitlines() cuts at besides \n and \r, by name.
SEPARATORS = {"VT": "\v", "FF": "\f", "FS": "\x1c", "GS": "\x1d", "RS": "\x1e", "NEL": "\x85",
              "LS": "\u2028", "PS": "\u2029"}
#: A harmless command, then the one a second line would smuggle in.
INJECTED = "M104 S250"


def test_the_table_is_every_break_splitlines_knows():
    breaks = {chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) == 2}
    assert breaks - {"\n", "\r"} == set(SEPARATORS.values()) == set(OTHER_LINE_BREAKS)


def test_split_lines_cuts_at_newline_and_carriage_return_only():
    assert split_lines("G28\r\nG1 X1\rG1 X2\n\nM84\n") == ["G28", "G1 X1", "G1 X2", "", "M84"]
    assert split_lines("") == [] and split_lines("\n") == [""]
    for sep in SEPARATORS.values():
        assert split_lines(f"M117 a{sep}{INJECTED}\n") == [f"M117 a{sep}{INJECTED}"]


@pytest.mark.parametrize("name", SEPARATORS)
def test_every_path_keeps_the_break_inside_one_command_and_the_guard_refuses_it(name):
    sep = SEPARATORS[name]
    text = f"M117 a{sep}{INJECTED}"
    assert command_lines([text], {}, 96) == [text]
    assert gcode_lines(text.encode()) == [text]
    scripts = ScriptSet.load(None, {"say": text + "\n"})
    assert scripts.render("say", {}) == [text]
    problem = WireGuard(SerialSpec(), ProfileSpec()).refusal(text, "M117")
    assert problem is not None and "one command is one line" in problem


async def test_no_break_in_a_command_a_parameter_or_a_script_value_reaches_the_printer(
        tmp_path):
    scripts = ("scripts:\n  gcode:\n    say: M117 {{ words }}\n"
               "    tell: M117 {{ parameters.words }}\n")
    async with serve_for_test(tmp_path, scripts) as srv:
        rec = srv.events(["CommandSuppressed"])
        post = srv.client.post
        for name, sep in SEPARATORS.items():
            text = f"M117 a{sep}{INJECTED}"
            shown = repr(sep)[1:-1]
            for body in ({"command": text}, {"commands": ["G4 P0", text]}):
                r = await post("/api/printer/command", json=body)
                assert r.status_code == 400, (name, body, r.text)
                error = r.json()["error"]
                assert "\n" not in error and shown in error and "one command is one line" in error
            value = f"a{sep}{INJECTED}"
            code = f"U+{ord(sep):04X}"
            for body, where in (
                    ({"commands": ["M117 %(words)s"], "parameters": {"words": value}},
                     "parameter 'words'"),
                    ({"script": "tell", "parameters": {"words": value}}, "parameters.words"),
                    ({"script": "say", "context": {"words": value}}, "context.words"),
                    ({"script": "say", "context": {"words": "x", "more": [{"deep": value}]}},
                     "context.more[0].deep")):
                r = await post("/api/printer/command", json=body)
                assert r.status_code == 400, (name, body, r.text)
                assert r.json()["error"] == (f"{where} holds a line break ({code}): a value "
                                             "may not add a command")
            r = await post("/api/scripts/say/render", json={"context": {"words": value}})
            assert r.status_code == 400 and "context.words" in r.json()["error"]
        # the same requests without the break go through: the refusals were the breaks
        ok = [{"command": "M117 plain"},
              {"commands": ["M117 %(words)s"], "parameters": {"words": "param"}},
              {"script": "tell", "parameters": {"words": "told"}},
              {"script": "say", "context": {"words": "said"}}]
        for body in ok:
            r = await post("/api/printer/command", json=body)
            assert r.status_code == 204, (body, r.text)
        await srv.service.wait_idle(10)
        with trio.fail_after(10):
            while "M117 said" not in srv.service.session.virtual.firmware.accepted:
                await trio.sleep(0.02)
        accepted = list(srv.service.session.virtual.firmware.accepted)
    assert {"M117 plain", "M117 param", "M117 told", "M117 said"} <= set(accepted)
    assert not [a for a in accepted if "M104" in a or a.startswith("M117 a")]
    assert rec.of("CommandSuppressed") == []  # refused before anything was queued
