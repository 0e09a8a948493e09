"""`printpipe printers add | list` (pipeline/app/cli/printers.py) and `printpipe check` with
several printers: the drop-in file written only when the whole config stays valid, atomically
and 0640; one line per printer; each printer's pipeline headed by its name."""

from __future__ import annotations

import io
import os
import pathlib
import stat
import textwrap

import pytest
from conftest import run_cli

from pipeline.app.cli import main as cli
from pipeline.app.cli.check import run_check
from pipeline.config.reader import load_service_config_file
from pipeline.phases import Phase
from stages import stage_phases, stage_schemas

QUEUING = Phase.GCODE_QUEUING.value
SENT = Phase.GCODE_SENT.value
BY_ID = "/dev/serial/by-id/usb-Prusa_Research_Original_Prusa_i3_MK3_CZPX1017-if00"


def write(path: pathlib.Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


@pytest.fixture
def main_config(tmp_path) -> str:
    return write(tmp_path / "etc" / "printer.yaml", """
        printer:
          port: /dev/ttyACM0
        http:
          port: 5000
    """)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def folder_listing(path: str) -> list[str]:
    folder = pathlib.Path(path).parent / "printers.d"
    return sorted(os.listdir(folder)) if folder.exists() else []


# --- printers add -------------------------------------------------------------------------------


def test_add_writes_a_drop_in_the_service_loader_reads(capsys, main_config):
    code, out, err = run(capsys, "printers", "add", "prusa", "--port", BY_ID, "--baudrate",
                         "250000", "--http-port", "5001", "-c", main_config)
    assert (code, err) == (0, "")
    target = pathlib.Path(main_config).parent / "printers.d" / "prusa.yaml"
    assert out == f"wrote {target}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert folder_listing(main_config) == ["prusa.yaml"]  # no temporary file left
    config = load_service_config_file(main_config, stage_schemas=stage_schemas(),
                                      stage_phases=stage_phases())
    assert list(config.printers) == ["default", "prusa"]
    prusa = config.printers["prusa"]
    assert (prusa.printer.port, prusa.printer.baudrate, prusa.http_port) == (BY_ID, 250000, 5001)
    assert str(config.origins["prusa"]) == f"{target}:1"


def test_add_quotes_what_yaml_would_misread(capsys, main_config):
    port = "/dev/serial/by-id/usb-odd: name #1"
    assert run(capsys, "printers", "add", "odd", "--port", port, "-c", main_config)[0] == 0
    config = load_service_config_file(main_config, stage_schemas=stage_schemas())
    assert config.printers["odd"].printer.port == port


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["Prusa", "--port", BY_ID], 2, "printpipe printers add: printer name 'Prusa' must be 1 to 32"),
    (["default", "--port", BY_ID], 2, "[printer] printer 'default' is declared twice"),
    (["twin", "--port", "/dev/ttyACM0"], 2,
     "[port] printers 'default' and 'twin' have the same port /dev/ttyACM0"),
    (["web", "--port", BY_ID, "--http-port", "5000"], 2,
     "[http.port] printer 'web': its http.port 5000 is the main http.port"),
    (["fast", "--port", BY_ID, "--baudrate", "-1"], 2, "[baudrate] baudrate must be at least 0"),
    (["ctl", "--port", "/dev/tty\x07"], 2, "control character BEL (U+0007)"),
], ids=["bad-name", "taken-by-printer-section", "same-port", "main-http-port", "baudrate",
        "control-character"])
def test_add_refuses_and_writes_nothing(capsys, main_config, argv, code, message):
    got, out, err = run(capsys, "printers", "add", *argv, "-c", main_config)
    assert (got, out) == (code, "")
    assert message in err
    assert "Traceback" not in err
    assert folder_listing(main_config) == []


def test_add_refuses_an_existing_drop_in_and_keeps_it(capsys, main_config):
    assert run(capsys, "printers", "add", "prusa", "--port", BY_ID, "-c", main_config)[0] == 0
    target = pathlib.Path(main_config).parent / "printers.d" / "prusa.yaml"
    before = target.read_text()
    code, out, err = run(capsys, "printers", "add", "prusa", "--port", "/dev/other", "-c",
                         main_config)
    assert (code, out) == (1, "")
    assert err == (f"printpipe printers add: {target} already exists (printer 'prusa'); remove "
                   "it first to replace it\n")
    assert target.read_text() == before


def test_add_checks_the_other_drop_ins_too(capsys, main_config):
    assert run(capsys, "printers", "add", "a", "--port", BY_ID, "--http-port", "5001", "-c",
               main_config)[0] == 0
    code, _, err = run(capsys, "printers", "add", "b", "--port", "/dev/b", "--http-port", "5001",
                       "-c", main_config)
    assert code == 2
    assert "printers 'a' and 'b' have the same HTTP port 5001" in err
    assert folder_listing(main_config) == ["a.yaml"]


def test_add_in_a_subprocess(tmp_path):
    path = write(tmp_path / "printer.yaml", "printers:\n  ender:\n    port: /dev/ttyUSB0\n")
    result = run_cli("printers", "add", "mk4", "--port", BY_ID, "-c", path)
    assert result.returncode == 0, result.stderr
    listed = run_cli("printers", "list", "-c", path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"ender  {'/dev/ttyUSB0'.ljust(len(BY_ID))}  http -",
        f"mk4    {BY_ID}  http -"]


# --- printers list ------------------------------------------------------------------------------


def test_list_prints_one_line_per_printer(capsys, tmp_path):
    path = write(tmp_path / "printer.yaml", """
        printers:
          ender:
            port: /dev/serial/by-id/usb-ender-if00
            http:
              port: 5001
          voron:
            port: /dev/serial/by-id/usb-klipper-if00
    """)
    write(tmp_path / "printers.d" / "mk3.yaml", "port: /dev/ttyACM1\nhttp:\n  port: 5002\n")
    code, out, err = run(capsys, "printers", "list", "-c", path)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "ender  /dev/serial/by-id/usb-ender-if00    http 5001",
        "voron  /dev/serial/by-id/usb-klipper-if00  http -",
        "mk3    /dev/ttyACM1                        http 5002"]


def test_list_reports_a_broken_config_as_config_errors(capsys, tmp_path):
    path = write(tmp_path / "printer.yaml", "printers:\n  Bad:\n")
    code, out, err = run(capsys, "printers", "list", "-c", path)
    assert (code, out) == (2, "")
    assert err.startswith(f"config error: {path}:2: [printers.Bad] printer name 'Bad'")


# --- check with several printers ------------------------------------------------------------------


TWO_PIPELINES = f"""
    pipeline:
      {QUEUING}:
        - stage: strip_comments
    printers:
      ender:
        port: /dev/serial/by-id/usb-ender-if00
        baudrate: 250000
      prusa:
        port: /dev/serial/by-id/usb-prusa-if00
        profile:
          name: mk3
        pipeline:
          {SENT}:
            - handler: octo_handlers:sent_m106
"""


def test_check_lists_each_printers_pipeline_under_its_name(tmp_path):
    path = write(tmp_path / "printer.yaml", TWO_PIPELINES)
    out, err = io.StringIO(), io.StringIO()
    assert run_check(path, out=out, err=err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"config: {path}  printers: ender, prusa"
    ender = lines.index("printer ender  port: /dev/serial/by-id/usb-ender-if00  baudrate: 250000"
                        "  profile: default")
    prusa = lines.index("printer prusa  port: /dev/serial/by-id/usb-prusa-if00  baudrate: 115200"
                        "  profile: mk3")
    assert 0 < ender < prusa
    assert lines[ender + 1:ender + 3] == [QUEUING, ("  strip_comments  order -  stage  "
                                          "strip_comments  {}")]
    assert lines[prusa + 1] == SENT  # its own pipeline replaced the shared one
    assert lines[prusa + 2].split() == ["sent_m106", "order", "-", "handler",
                                        "octo_handlers:sent_m106"]
    assert QUEUING not in lines[prusa:]
    assert lines[-1] == "no problems found" and lines.count("no problems found") == 1


def test_check_names_the_printers_a_problem_belongs_to(tmp_path):
    path = write(tmp_path / "printer.yaml", """
        events:
          subscriptions:
            - event: plugin_nope_thing
              command: M300
              type: gcode
        printers:
          a:
            port: /dev/a
          b:
            port: /dev/b
            events:
              subscriptions:
                - event: plugin_other_thing
                  command: M300
                  type: gcode
          c:
            port: /dev/c
    """)
    out, err = io.StringIO(), io.StringIO()
    assert run_check(path, out=out, err=err) == 1
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert lines[-1] == "2 problems found"
    assert lines[0].endswith("(printer a, c)") and "plugin_nope_thing" in lines[0]
    assert lines[1].endswith("(printer b)") and "plugin_other_thing" in lines[1]


def test_check_with_one_printer_keeps_its_one_header(tmp_path):
    path = write(tmp_path / "printer.yaml", "printers:\n  solo:\n    port: /dev/a\n")
    out = io.StringIO()
    assert run_check(path, out=out, err=io.StringIO()) == 0
    assert out.getvalue().splitlines()[0] == (f"config: {path}  port: /dev/a  baudrate: 115200  "
                                              "profile: default")


def test_check_reads_the_drop_ins(capsys, main_config):
    write(pathlib.Path(main_config).parent / "printers.d" / "b.yaml", "port: /dev/ttyACM0\n")
    code, out, err = run(capsys, "check", "-c", main_config)
    assert (code, out) == (1, "")
    assert "printers.d/b.yaml:1: [port] printers 'default' and 'b' have the same port" in err


def test_the_one_printer_commands_ask_which_of_several_printers(capsys, tmp_path):
    path = write(tmp_path / "printer.yaml", TWO_PIPELINES)
    code, out, err = run(capsys, "send", "-c", path, "M115")
    assert (code, out) == (2, "")
    assert err == (f"config error: {path}: the configuration has several printers (ender, "
                   "prusa): name one with --printer NAME\n")
