"""Subscription placeholders: finding them at load, their values and fallbacks, and
substitution with and without shell quoting (values never become code or extra arguments)."""

from __future__ import annotations

import shlex

import pytest

from pipeline.events.placeholders import (
    FiringContext,
    MissingPlaceholder,
    field_roots,
    params,
    render,
    render_argv,
    split_argv,
)

ROOTS = {
    "plain": ("echo {name}", ["name"]),
    "two": ("{__filename} {__currentZ}", ["__filename", "__currentZ"]),
    "index": ("{position[x]} {position[y]}", ["position", "position"]),
    "attribute": ("{obj.attr}", ["obj"]),
    "escaped braces": ("M117 {{literal}} {new}", ["new"]),
    "format spec": ("{new:.2f}", ["new"]),
    "none": ("G28", []),
}


@pytest.mark.parametrize(("template", "roots"), ROOTS.values(), ids=ROOTS.keys())
def test_field_roots(template, roots):
    assert field_roots(template) == roots


@pytest.mark.parametrize("template", ["echo {", "echo }", "echo {}", "echo {0}"])
def test_broken_or_positional_placeholders_are_refused(template):
    with pytest.raises(ValueError):
        field_roots(template)


FALLBACKS = {
    "no file": (FiringContext(), {"__filename": "NO FILE", "__filepath": "NO FILE",
                                  "__fileorigin": "NO FILE", "__currentZ": "-1",
                                  "__progress": "0"}),
    "with file": (FiringContext(current_z=0.2, filename="a.gcode", filepath="d/a.gcode",
                                origin="local", progress=41.6),
                  {"__filename": "a.gcode", "__filepath": "d/a.gcode",
                   "__fileorigin": "local", "__currentZ": "0.2", "__progress": "42"}),
}


@pytest.mark.parametrize(("ctx", "expected"), FALLBACKS.values(), ids=FALLBACKS.keys())
def test_generic_values_and_fallbacks(ctx, expected):
    values = params("PrintDone", {"name": "a.gcode", "time": 3.5}, ctx)
    for key, value in expected.items():
        assert values[key] == value
    assert values["__eventname"] == "PrintDone"
    assert values["__data"] == str({"name": "a.gcode", "time": 3.5})
    assert values["__json"] == '{"name": "a.gcode", "time": 3.5}'
    assert values["name"] == "a.gcode"


def test_payload_keys_shadow_generic_ones():
    values = params("X", {"__eventname": "mine"}, FiringContext())
    assert values["__eventname"] == "mine"


def test_render_substitutes_and_formats():
    values = {"new": 0.4, "position": {"x": 1.5}, "name": "a"}
    assert render("M117 {{z}} {new:.2f} {position[x]} {name!r}", values) == \
        "M117 {z} 0.40 1.5 'a'"


@pytest.mark.parametrize(("template", "missing"), [
    ("echo {nope}", "nope"), ("echo {position[q]}", "position[q]"), ("{new:{width}}", "width"),
])
def test_missing_placeholders_name_themselves(template, missing):
    with pytest.raises(MissingPlaceholder) as info:
        render(template, {"new": 1, "position": {"x": 1}})
    assert info.value.name == missing


HOSTILE = ["x; rm -rf ~", "$(reboot)", "`id`", "a b\tc", "'quoted'", '"dq"', "new\nline",
           "*.gcode", "&& echo pwned", "${HOME}", "-rf"]


@pytest.mark.parametrize("value", HOSTILE)
def test_without_shell_a_value_stays_inside_one_argument(value):
    argv = render_argv(split_argv("printf '%s|' {name} --end"), {"name": value})
    assert argv == ["printf", "%s|", value, "--end"]


@pytest.mark.parametrize("value", HOSTILE)
def test_with_shell_every_value_is_quoted(value):
    line = render("printf '%s|' {name} --end", {"name": value}, quote=True)
    assert shlex.split(line) == ["printf", "%s|", value, "--end"]


def test_split_argv_refuses_unbalanced_quotes_and_empty_commands():
    for bad in ("echo 'open", "", "   "):
        with pytest.raises(ValueError):
            split_argv(bad)
