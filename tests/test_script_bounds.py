"""A script's render is bounded whatever its context says: at most `scripts.max_lines` lines
(default 1000), range() no longer than that, and no text or number blown up by `*` or `**`;
past a bound the render fails at once with a ScriptError naming script, line and bound, and
nothing is queued. Pure renders, then one API request against the virtual printer."""

from __future__ import annotations

import time

import pytest
import trio
from http_fixtures import serve_for_test

from pipeline.errors import ScriptError
from pipeline.hooks.scripts import MAX_LINES, ScriptSet

TEMPLATES = {
    "loop": "{% for i in range(n) %}\nG4 P{{ i }}\n{% endfor %}\n",
    "nested": "{% for i in range(n) %}{% for j in range(n) %}G1 X{{ j }}\n{% endfor %}"
              "{% endfor %}\n",
    "times": "M117 {{ 'x' * n }}\n",
    "power": "G1 X{{ 10 ** n }}\n",
    "noise": "{% for i in range(n) %}\n; nothing but a comment {{ i }}\n{% endfor %}\nG28\n",
}


def test_the_default_bound_is_a_thousand_lines():
    assert MAX_LINES == 1000
    scripts = ScriptSet.load(None, TEMPLATES)
    assert len(scripts.render("loop", {"n": 1000})) == 1000


@pytest.mark.parametrize(("name", "n", "where", "message"), [
    ("loop", 10**6, "loop:1", ("range() of 1000000 items: a script renders at most 50 lines "
                              "(scripts.max_lines)")),
    ("loop", 10**30, "loop:1", "range() of countless items"),
    ("loop", 51, "loop:1", "range() of 51 items"),
    ("nested", 50, "nested", "it renders more than 50 lines (scripts.max_lines)"),
    ("noise", 50, "noise", "it renders more than 50 lines"),  # comments are lines too
    ("times", 10**9, "times:1", "* would make 1000000000 items (at most 65536)"),
    ("power", 10**8, "power:1", "10 ** 100000000 is too large a number"),
])
def test_a_render_past_its_bound_fails_at_once_naming_it(name, n, where, message):
    scripts = ScriptSet.load(None, TEMPLATES, max_lines=50)
    started = time.perf_counter()
    with pytest.raises(ScriptError) as info:
        scripts.render(name, {"n": n})
    assert time.perf_counter() - started < 0.5
    assert str(info.value).startswith(f"script {where}: {message}")


def test_within_the_bound_everything_renders():
    scripts = ScriptSet.load(None, TEMPLATES, max_lines=50)
    assert len(scripts.render("loop", {"n": 50})) == 50
    assert len(scripts.render("nested", {"n": 7})) == 49
    assert scripts.render("power", {"n": 3}) == ["G1 X1000"]
    assert scripts.render("times", {"n": 3}) == ["M117 xxx"]


def test_check_lints_with_the_configured_bound(tmp_path):
    from conftest import load_yaml

    from pipeline.app.cli.check import check_scripts
    long = "".join(f"      G1 X{i}\n" for i in range(61))  # the bundled ones are shorter
    config = load_yaml(f"scripts:\n  max_lines: 60\n  gcode:\n    long: |\n{long}",
                       str(tmp_path / "c.yaml"))
    problems = [str(p) for p in check_scripts(config)]
    assert problems == ["script long: it renders more than 60 lines (scripts.max_lines)"]


async def test_one_request_with_a_crafted_context_queues_nothing(tmp_path):
    yaml = ("scripts:\n  max_lines: 200\n  gcode:\n"
            "    many: \"{% for i in range(n) %}G4 P0\\n{% endfor %}\"\n")
    async with serve_for_test(tmp_path, yaml) as srv:
        before = len(srv.service.session.virtual.firmware.accepted)
        for n in (100_000, 201):
            r = await srv.client.post("/api/printer/command",
                                      json={"script": "many", "context": {"n": n}})
            assert r.status_code == 400, r.text
            assert r.json()["error"].startswith(f"script many:1: range() of {n} items: a "
                                                "script renders at most 200 lines")
        r = await srv.client.post("/api/printer/command",
                                  json={"script": "many", "context": {"n": 200}})
        assert r.status_code == 204
        await srv.service.wait_idle(10)
        with trio.fail_after(10):
            while srv.service.session.virtual.firmware.accepted.count("G4 P0") < 200:
                await trio.sleep(0.02)
        assert srv.service.session.virtual.firmware.accepted[before:].count("G4 P0") == 200
