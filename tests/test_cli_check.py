"""Tests for `printpipe check` (pipeline/cli_check.py): valid configs list their pipeline phase by
phase in run order; broken ones report every problem as file:line with the count, exit 1."""

from __future__ import annotations

import io
import os
import pathlib
import re
import textwrap

import pytest
from conftest import run_cli

from pipeline.app.cli import main as cli
from pipeline.app.cli.check import check_scripts, run_check
from pipeline.phases import NOT_PHASES, Phase

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
QUEUING = Phase.GCODE_QUEUING.value
SENT = Phase.GCODE_SENT.value


def check(path: str | None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_check(path, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: pathlib.Path, text: str, name: str = "printer.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


def listed(out: str) -> dict[str, list[list[str]]]:
    """The stdout report as {phase: [stage line split into words, ...]} in printed order."""
    phases: dict[str, list[list[str]]] = {}
    current = None
    for line in out.splitlines():
        if line in {p.value for p in Phase}:
            current = phases.setdefault(line, [])
        elif line.startswith("  ") and current is not None:
            current.append(line.split())
        else:
            current = None
    return phases


def ids(out: str) -> dict[str, list[str]]:
    return {phase: [words[0] for words in rows] for phase, rows in listed(out).items()}


# --- valid configs ------------------------------------------------------------------------------

HANDLERS_YAML = f"""
printer:
  port: /dev/ttyUSB0
  baudrate: 250000
  profile:
    name: ender
pipeline:
  {SENT}:
    - handler: octo_handlers:sent_m106
  {QUEUING}:
    - handler: octo_handlers:rewrite_m107
"""

ORDERING_YAML = f"""
pipeline:
  {QUEUING}:
    - handler: octo_handlers:record
      id: omega
    - handler: octo_handlers:as_string
      id: mid
      order: 2
    - handler: octo_handlers:tag_it
      id: zeta
      order: 1
    - handler: octo_handlers:retype
      id: alpha
"""


@pytest.mark.parametrize(("source", "header", "expected"), [
    ("virtual.yaml", "port: virtual  baudrate: 115200  profile: virtual",
     {QUEUING: [["fan_off_as_m106", "order", "-", "stage", "rewrite",
                 '{"rules":', '[{"gcode":', '"M107",', '"replace":', '"M106', 'S0"}]}']]}),
    ("marlin-usb.yaml", "port: /dev/ttyACM0  baudrate: 115200  profile: marlin",
     {QUEUING: [["rewrite", "order", "-", "stage", "rewrite",
                 '{"rules":', '[{"gcode":', '"M107",', '"replace":', '"M106', 'S0"}]}']]}),
    (HANDLERS_YAML, "port: /dev/ttyUSB0  baudrate: 250000  profile: ender",
     {QUEUING: [["rewrite_m107", "order", "-", "handler", "octo_handlers:rewrite_m107"]],
      SENT: [["sent_m106", "order", "-", "handler", "octo_handlers:sent_m106"]]}),
    (ORDERING_YAML, "port: virtual  baudrate: 115200  profile: default",
     {QUEUING: [["zeta", "order", "1", "handler", "octo_handlers:tag_it"],
                ["mid", "order", "2", "handler", "octo_handlers:as_string"],
                ["alpha", "order", "-", "handler", "octo_handlers:retype"],
                ["omega", "order", "-", "handler", "octo_handlers:record"]]}),
], ids=["virtual", "marlin-usb", "octo-handlers", "seed-ordering"])
def test_valid_config_lists_its_pipeline_phase_by_phase(tmp_path, source, header, expected):
    path = str(CONFIGS / source) if source.endswith(".yaml") else write(tmp_path, source)
    code, out, err = check(path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"config: {path}  {header}"
    assert listed(out) == expected
    # phases appear in Phase order, and every other phase is named in the closing block
    phase_order = [p.value for p in Phase]
    printed = [line for line in lines if line in phase_order]
    assert printed == sorted(printed, key=phase_order.index)
    rest = out[out.index("other phases (no stages declared):"):]
    for phase in Phase:
        assert (phase.value in rest) == (phase.value not in expected), phase
    assert lines[-1] == "no problems found"


def test_ordered_stages_run_first_then_unordered_by_id(tmp_path):
    # the seed: order 1, order 2, then the ones without an order (by id, so alpha before omega,
    # although alpha sorts before every ordered id)
    code, out, _ = check(write(tmp_path, ORDERING_YAML))
    assert code == 0
    assert ids(out) == {QUEUING: ["zeta", "mid", "alpha", "omega"]}


def test_phases_print_in_phase_order_and_disabled_stages_are_marked(tmp_path):
    path = write(tmp_path, f"""
        pipeline:
          {SENT}:
            - handler: octo_handlers:sent_m106
          {QUEUING}:
            - stage: strip_comments
              enabled: false
            - handler: octo_handlers:rewrite_m107
              order: 5
    """)
    code, out, err = check(path)
    assert (code, err) == (0, "")
    assert list(listed(out)) == [QUEUING, SENT]
    assert listed(out)[QUEUING] == [
        ["rewrite_m107", "order", "5", "handler", "octo_handlers:rewrite_m107"],
        ["strip_comments", "order", "-", "stage", "strip_comments", "{}", "(disabled)"]]


def test_default_config_without_a_file():
    code, out, err = check(None)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "config: built-in defaults  port: virtual  baudrate: 115200  profile: default",
        "no stages declared in any phase",
        "no problems found"]


def test_the_bundled_scripts_check_clean():
    from pipeline.config.reader import default_config
    assert check_scripts(default_config()) == []


# --- broken configs: one problem each ------------------------------------------------------------

NOT_PHASE = "theming.dialog"


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    (f"""
     pipeline:
       {QUEUING}:
         - handler: octo_handlers:record
       comm.protocol.gcode.queueing:
         - handler: octo_handlers:record
     """, 4, "pipeline.comm.protocol.gcode.queueing",
     "unknown phase 'comm.protocol.gcode.queueing' (did you mean 'comm.protocol.gcode.queuing'"),
    (f"""
     printer:
       port: virtual
     pipeline:
       octoprint.{NOT_PHASE}:
         - handler: octo_handlers:record
     """, 4, f"pipeline.octoprint.{NOT_PHASE}",
     f"{NOT_PHASE} is not a printpipe phase: {NOT_PHASES[NOT_PHASE]}"),
    (f"""
     pipeline:
       {QUEUING}:
         - stage: strip_comments
         - stage: no_such_stage
     """, 4, f"pipeline.{QUEUING}[1].stage", "unknown built-in stage 'no_such_stage'"),
    (f"""
     pipeline:
       {QUEUING}:
         - stage: rewrite
           with:
             rules: M107
     """, 5, f"pipeline.{QUEUING}[0].with.rules",
     "expected a sequence, found 'M107' (options of stage 'rewrite')"),
    (f"""
     pipeline:
       {QUEUING}:
         - handler: octo_handlers:record
         - handler: no_such_module_for_check:hook
     """, 4, "handler", "cannot import handler module 'no_such_module_for_check'"),
    (f"""
     pipeline:
       {SENT}:
         - handler: octo_handlers:no_such_function
     """, 3, "handler", "module 'octo_handlers' has no callable 'no_such_function'"),
    (f"""
     pipeline:
       {QUEUING}:
         - handler: octo_handlers:rewrite_m107


         - handler: octo_handlers:wrong_signature
     """, 6, "handler", (f"handler 'octo_handlers:wrong_signature' cannot be called as a "
                         f"{QUEUING} hook (too many positional arguments)")),
    (f"""
     pipeline:
       {QUEUING}:
         - handler: octo_handlers:record
           id: mine
         - handler: octo_handlers:as_string
           id: mine
     """, 5, f"pipeline.{QUEUING}[1].id",
     f"duplicate stage id 'mine' in {QUEUING} (first on line 3)"),
], ids=["unknown-phase", "not-a-phase", "unknown-stage", "bad-option-type", "missing-module",
        "missing-function", "wrong-signature", "duplicate-id"])
def test_broken_config_reports_file_line_key_and_exits_1(tmp_path, text, line, key, message):
    path = write(tmp_path, text)
    code, out, err = check(path)
    assert (code, out) == (1, "")
    assert err.splitlines() == [err.splitlines()[0], "1 problem found"]
    assert err.startswith(f"{path}:{line}: [{key}] {message}")


# --- several problems at once -------------------------------------------------------------------

MANY_YAML = f"""
printer:
  port: virtual
  baudrate: fast
pipeline:
  octoprint.slicer.register:
    - handler: octo_handlers:record
  {QUEUING}:
    - stage: rewrite
      with:
        rules: M107
    - stage: no_such_stage
    - handler: octo_handlers:record
      id: dup
    - handler: octo_handlers:as_string
      id: dup
"""

HANDLERS_BROKEN_YAML = f"""
pipeline:
  {QUEUING}:
    - handler: zz_missing_module_for_check:hook
      id: zz
    - handler: octo_handlers:wrong_signature
      id: aa
    - handler: octo_handlers:rewrite_m107
  {SENT}:
    - handler: octo_handlers:not_there
    - handler: octo_handlers:sent_m106
      enabled: false
"""


@pytest.mark.parametrize(("text", "expected"), [
    (MANY_YAML, [
        (3, "printer.baudrate", "expected an integer, found 'fast'"),
        (5, "pipeline.octoprint.slicer.register",
         f"slicer.register is not a printpipe phase: {NOT_PHASES['slicer.register']}"),
        (10, f"pipeline.{QUEUING}[0].with.rules", "expected a sequence, found 'M107'"),
        (11, f"pipeline.{QUEUING}[1].stage", "unknown built-in stage 'no_such_stage'"),
        (14, f"pipeline.{QUEUING}[3].id", f"duplicate stage id 'dup' in {QUEUING}"),
    ]),
    # loads fine, but three handlers cannot be built: all reported, in line order (the
    # pipeline builds them in run order: aa before zz)
    (HANDLERS_BROKEN_YAML, [
        (3, "handler", "cannot import handler module 'zz_missing_module_for_check'"),
        (5, "handler", "handler 'octo_handlers:wrong_signature' cannot be called"),
        (9, "handler", "module 'octo_handlers' has no callable 'not_there'"),
    ]),
], ids=["config-errors", "handler-errors"])
def test_every_problem_is_reported_with_the_count(tmp_path, text, expected):
    path = write(tmp_path, text)
    code, out, err = check(path)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[-1] == f"{len(expected)} problems found"
    assert len(lines) == len(expected) + 1
    for got, (line, key, message) in zip(lines[:-1], expected, strict=True):
        assert got.startswith(f"{path}:{line}: [{key}] {message}"), got


def test_unreadable_config_is_one_problem(tmp_path):
    path = str(tmp_path / "missing.yaml")
    code, out, err = check(path)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{path}: cannot read the configuration: No such file or directory", "1 problem found"]


# --- the command line ---------------------------------------------------------------------------


def test_main_dispatches_check(tmp_path, capsys):
    assert cli.main(["check", "-c", str(CONFIGS / "virtual.yaml")]) == 0
    captured = capsys.readouterr()
    assert ids(captured.out) == {QUEUING: ["fan_off_as_m106"]}
    assert captured.err == ""


def test_printpipe_check_subprocess_reports_problems_on_stderr(tmp_path):
    path = write(tmp_path, HANDLERS_BROKEN_YAML)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    result = run_cli("check", "-c", path, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert re.findall(rf"^{re.escape(path)}:(\d+): \[handler\] ", result.stderr, re.M) == [
        "3", "5", "9"]
    assert result.stderr.splitlines()[-1] == "3 problems found"


@pytest.mark.parametrize(("raw", "line", "message"), [
    (b"printer:\n  port: virt\x00ual\n", 2,
     "control character NUL (U+0000) at column 13 is not allowed in YAML"),
    (b"printer:\n  port: virtual\n# ding\x07\n", 3,
     "control character BEL (U+0007) at column 7 is not allowed in YAML"),
    (b'printer:\n  port: "virt\\aual"\n', 2,
     ("[printer.port] control character BEL (U+0007) (written as an escape) is not allowed in "
     "a setting")),
], ids=["nul", "bel", "escaped-bel"])
def test_printpipe_check_reports_control_characters_as_config_errors(tmp_path, raw, line,
                                                                      message):
    path = tmp_path / "printer.yaml"
    path.write_bytes(raw)
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"{path}:{line}: {message}", "1 problem found"]
