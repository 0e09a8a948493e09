"""G-code scripts rendered: the seed's examples line by line, the undefined/none guard
matrix, values that must never reach the wire, errors with script and line, sources."""

from __future__ import annotations

import io
import pathlib

import pytest
from conftest import ROOT, run_cli

from pipeline.errors import ScriptError
from pipeline.hooks.scripts import BUNDLED, ScriptSet, profile_context, sample_context

SCRIPTS = pathlib.Path(ROOT) / "configs" / "scripts"


def render(name, ctx, inline=None, folder=None):
    return ScriptSet.load(folder, inline or {}).render(name, ctx)


@pytest.mark.parametrize(("extruders", "shared", "bed", "expected"), [
    (1, True, True, ["M84", "M104 T0 S0", "M140 S0", "M106 S0"]),
    (3, True, True, ["M84", "M104 T0 S0", "M140 S0", "M106 S0"]),          # shared nozzle
    (3, False, True, ["M84", "M104 T0 S0", "M104 T1 S0", "M104 T2 S0", "M140 S0", "M106 S0"]),
    (3, False, False, ["M84", "M104 T0 S0", "M104 T1 S0", "M104 T2 S0", "M106 S0"]),
    (1, False, False, ["M84", "M104 T0 S0", "M106 S0"]),
])
def test_bundled_after_print_cancelled(extruders, shared, bed, expected):
    ctx = {"printer_profile": profile_context(extruders, shared, bed)}
    assert render("afterPrintCancelled", ctx) == expected


KNOWN = {"x": 10.0, "y": 20.5, "z": 1.2, "e": 3.25, "f": 4200.0, "t": 0}


@pytest.mark.parametrize(("position", "paused", "resumed"), [
    (KNOWN, ["G91", "M83", "G1 Z+5 E-5 F4500", "M82", "G90", "G1 X0 Y0"],
     ["M83", "G1 E-5 F4500", "G1 E5 F4500", "G1 E5 F4500", "M82", "G90", "G92 E3.25",
      "G1 X10.0 Y20.5 Z1.2 F4500", "G1 F4200.0"]),
    (dict(KNOWN, f=None), None,
     ["M83", "G1 E-5 F4500", "G1 E5 F4500", "G1 E5 F4500", "M82", "G90", "G92 E3.25",
      "G1 X10.0 Y20.5 Z1.2 F4500"]),
    (dict.fromkeys("xyzeft"), [], []),    # position unknown: the guard is false
    (None, [], []),
    ({}, [], []),
    ("absent", [], []),
])
def test_the_seed_pause_and_resume_pair(position, paused, resumed):
    ctx = {} if position == "absent" else {"pause_position": position}
    got_paused = render("afterPrintPaused", ctx, folder=str(SCRIPTS))
    got_resumed = render("beforePrintResumed", ctx, folder=str(SCRIPTS))
    if paused is not None:
        assert got_paused == paused
    assert got_resumed == resumed


@pytest.mark.parametrize(("ctx", "guarded"), [
    ({}, False), ({"p": None}, False), ({"p": {}}, False),
    ({"p": {"x": None}}, False), ({"p": {"x": 0}}, True), ({"p": {"x": 10}}, True),
])
def test_the_none_guard_matrix(ctx, guarded):
    out = render("s", ctx, {"s": "{% if p.x is not none %}G1 X{{ p.x }}{% endif %}"})
    assert bool(out) is guarded


@pytest.mark.parametrize(("text", "ctx"), [
    ("M117 ok\nG1 X{{ p.x }}", {}),                    # undefined
    ("M117 ok\nG1 X{{ p.x }}", {"p": {"x": None}}),    # None
    ("M117 ok\nG1 X{{ p.x }}", {"p": {"x": ""}}),      # empty
])
def test_no_none_or_empty_value_reaches_the_wire_and_nothing_partial(text, ctx):
    with pytest.raises(ScriptError) as info:
        render("s", ctx, {"s": text})
    assert (info.value.script, info.value.line) == ("s", 2)


@pytest.mark.parametrize(("inline", "script", "where", "line", "fragment"), [
    ({"s": "M117\n{% if %}"}, None, "s", 2, "expected an expression"),
    ({"s": "M1\n\n{% snippet 'nope' %}"}, "s", "s", 3, "unknown snippet 'nope'"),
    ({"s": "{% snippet 'b' %}", "snippets/b": "M1\n{{ missing }}"}, "s", "snippets/b", 2,
     "printed undefined"),
    ({"s": "{{ ''.__class__.__mro__ }}"}, "s", "s", 1, ""),   # the sandbox says no
])
def test_errors_name_script_and_line(inline, script, where, line, fragment):
    with pytest.raises(ScriptError) as info:
        ScriptSet.load(None, inline).render(script or "s", {})
    assert (info.value.script, info.value.line) == (where, line)
    assert fragment.lower() in info.value.message.lower()


def test_snippets_nest_relative_and_absolute():
    inline = {"s": "{% snippet 'a' %}", "snippets/a": "A\n{% snippet 'b' %}\n{% snippet '/c' %}",
              "snippets/b": "B", "snippets/c": "C"}
    assert render("s", {}, inline) == ["A", "B", "C"]


def test_sources_folder_over_inline_over_bundled(tmp_path):
    (tmp_path / "gcode" / "snippets").mkdir(parents=True)
    (tmp_path / "gcode" / "afterPrintDone").write_text("M117 from file\n")
    (tmp_path / "gcode" / "snippets" / "disable_bed").write_text("M117 file bed\n")
    (tmp_path / "gcode" / ".hidden").write_text("{% broken")
    s = ScriptSet.load(str(tmp_path), {"afterPrintDone": "M117 inline",
                                       "beforePrintStarted": "M117 inline start"})
    assert s.render("afterPrintDone", {}) == ["M117 from file"]
    assert s.render("beforePrintStarted", {}) == ["M117 inline start"]
    ctx = {"printer_profile": profile_context(1)}
    assert s.render("afterPrintCancelled", ctx)[-2:] == ["M117 file bed", "M106 S0"]
    assert "afterPrintDone" in s.names() and s.render("nothing", {}) == []


def test_shipped_default_files_are_the_bundled_defaults():
    for name, text in BUNDLED.items():
        shipped = (SCRIPTS / "gcode" / name).read_text()
        assert [line.strip() for line in shipped.splitlines() if line.strip()] == \
            [line.strip() for line in text.splitlines() if line.strip()], name


def test_lint_reports_every_broken_script_with_strict_undefined():
    problems = ScriptSet.check_all(None, {
        "a": "G1 X{{ last_positoin.x }}",
        "b": "M117\n{% snippet 'nope' %}",
        "c": "{% if pause_position.x is not none %}ok{% endif %}",
    })
    got = {(p.script, p.line) for p in problems}
    assert got == {("a", 1), ("b", 2)}
    assert not ScriptSet.check_all(None, {}, sample_context())


def test_cli_render_prints_the_lines():
    out = run_cli("render", "-c", "configs/virtual.yaml", "beforePrintResumed", "--context",
                  '{"pause_position": {"x": 1, "y": 2, "z": 3, "e": 4, "f": null}}')
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["G92 E4", "G1 X1 Y2 Z3 F4500"]


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (["render", "nope"], 2, "no script named 'nope'"),
    (["render", "afterPrintDone", "--context", "{bad"], 2, "not valid JSON"),
])
def test_cli_render_errors(args, code, fragment):
    out = run_cli(*args)
    assert out.returncode == code and fragment in out.stderr


def test_check_reports_every_broken_script_with_name_and_line(tmp_path):
    from pipeline.app.cli.check import run_check
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scripts:\n  gcode:\n    afterPrintDone: |\n      M104 S0\n"
                   "      G1 Z{{ last_positoin.z }}\n    beforePrintStarted: |\n"
                   "      M117\n      {% snippet 'warmup' %}\n")
    err = io.StringIO()
    assert run_check(str(cfg), out=io.StringIO(), err=err) == 1
    text = err.getvalue()
    assert "script afterPrintDone:2" in text and "script beforePrintStarted:2" in text
    assert "2 problems found" in text


def test_print_refuses_to_start_with_a_broken_script(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scripts:\n  gcode:\n    afterPrintDone: |\n      M117\n"
                   "      {% if %}\n")
    out = run_cli("print", "-c", str(cfg), "configs/calibration-cube.gcode")
    assert out.returncode == 1
    assert "script afterPrintDone:2" in out.stderr
