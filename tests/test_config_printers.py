"""Several printers in one config (pipeline/config/printers.py): `printers:` names and entries,
what each printer gets of the shared sections (merged key by key or replaced whole), the
printers.d drop-in files, the conflicts between printers (each error names both), and the
single-printer config, which loads as it always did."""

from __future__ import annotations

import os
import pathlib
import textwrap

import attrs
import pytest

from pipeline.config.reader import (
    ChecksumMode,
    HostConfig,
    ServiceConfig,
    load_config,
    load_config_file,
    load_service_config,
    load_service_config_file,
)
from pipeline.errors import ConfigError, ConfigErrors
from pipeline.phases import Phase
from stages import stage_phases, stage_schemas

QUEUING = Phase.GCODE_QUEUING.value


def service(text: str, dropins: dict[str, str] | None = None) -> ServiceConfig:
    return load_service_config(textwrap.dedent(text).lstrip("\n"), "main.yaml",
                               stage_schemas=stage_schemas(), stage_phases=stage_phases(),
                               dropins={k: textwrap.dedent(v) for k, v in (dropins or {}).items()})


def problems(text: str, dropins: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        service(text, dropins)
    assert all(isinstance(e, ConfigError) for e in info.value.errors)
    return [str(e) for e in info.value.errors]


TWO = f"""
    serial:
      checksum: always
      timeouts:
        connection: 3
    pipeline:
      {QUEUING}:
        - stage: strip_comments
    storage:
      state: /var/lib/pp/state
      folder: /var/lib/pp/files
    mqtt:
      host: broker
    printers:
      ender:
        port: /dev/serial/by-id/usb-ender-if00
        baudrate: 250000
        serial:
          timeouts:
            communication: 9
        pipeline:
        http:
          port: 5001
      prusa:
        port: /dev/serial/by-id/usb-prusa-if00
        profile:
          name: mk3
        storage:
          folder: /srv/prusa
        mqtt:
          base_topic: shop/prusa/
"""


# --- what each printer gets ---------------------------------------------------------------------


def test_two_printers_each_a_complete_host_config_in_the_order_written():
    config = service(TWO)
    assert list(config.printers) == ["ender", "prusa"]
    assert config.default is None  # no `default`, not the only one: /api/ without a prefix
    ender, prusa = config.printers.values()
    assert isinstance(ender, HostConfig) and ender.name == "ender" and prusa.name == "prusa"
    assert (ender.printer.port, ender.printer.baudrate) == ("/dev/serial/by-id/usb-ender-if00",
                                                            250000)
    assert (prusa.printer.baudrate, prusa.printer.profile.name) == (115200, "mk3")
    assert (ender.http_port, prusa.http_port) == (5001, None)
    assert ender.http == prusa.http == config.http and config.http.port == 5000
    assert ender.mqtt is prusa.mqtt is config.mqtt and config.mqtt is not None
    assert ender.path == prusa.path == config.path == "main.yaml"


def test_serial_merges_key_by_key_down_to_nested_keys():
    ender, prusa = service(TWO).printers.values()
    assert ender.serial.checksum is prusa.serial.checksum is ChecksumMode.ALWAYS
    assert (ender.serial.timeouts.connection, ender.serial.timeouts.communication) == (3.0, 9.0)
    assert (prusa.serial.timeouts.connection, prusa.serial.timeouts.communication) == (3.0, 30.0)


def test_pipeline_replaces_the_shared_one_whole():
    ender, prusa = service(TWO).printers.values()
    assert ender.pipeline.for_phase(Phase.GCODE_QUEUING) == ()  # its own, empty
    assert [s.id for s in prusa.pipeline.for_phase(Phase.GCODE_QUEUING)] == ["strip_comments"]


def test_scripts_and_events_replace_whole_and_their_locations_name_the_printer_keys():
    config = service("""
        scripts:
          max_lines: 50
          gcode:
            afterPrintCancelled: M104 S0
        events:
          subscriptions:
            - event: PrintDone
              command: M300
              type: gcode
        printers:
          a:
            port: /dev/a
            scripts:
              gcode:
                beforePrintStarted: G28
            events:
              subscriptions:
                - event: PrintFailed
                  command: M300
                  type: gcode
                  nope: 1
          b:
            port: /dev/b
    """.replace("                  nope: 1\n", ""))
    a, b = config.printers.values()
    assert (a.scripts.max_lines, dict(a.scripts.gcode)) == (1000, {"beforePrintStarted": "G28"})
    assert (b.scripts.max_lines, dict(b.scripts.gcode)) == (50, {"afterPrintCancelled": "M104 S0"})
    assert [s.events for s in a.events.subscriptions] == [("PrintFailed",)]
    assert str(a.events.subscriptions[0].location) == "main.yaml:18"
    assert [s.events for s in b.events.subscriptions] == [("PrintDone",)]


def test_storage_state_is_per_printer_and_the_files_folder_shared_unless_given():
    ender, prusa = service(TWO).printers.values()
    assert ender.storage.state == "/var/lib/pp/state/ender"
    assert prusa.storage.state == "/var/lib/pp/state/prusa"
    assert ender.storage.folder == "/var/lib/pp/files" and prusa.storage.folder == "/srv/prusa"
    assert service(TWO).storage.state == "/var/lib/pp/state"  # the service's own (keys)


def test_mqtt_base_topic_per_printer():
    ender, prusa = service(TWO).printers.values()
    assert (ender.mqtt_base, prusa.mqtt_base) == ("octoPrint/ender/", "shop/prusa/")
    (one,) = service("mqtt:\nprinters:\n  solo:\n    port: /dev/a\n").printers.values()
    assert one.mqtt_base == "octoPrint/"  # one printer: the base topic itself
    (off,) = service("printers:\n  solo:\n").printers.values()
    assert off.mqtt_base is None and off.mqtt is None


def test_virtual_merges_key_by_key():
    config = service("""
        virtual:
          heat_rate: 80
          faults:
            seed: 3
        printers:
          a:
            virtual:
              faults:
                busy_rate: 0.5
          b:
            port: /dev/b
    """)
    a, b = config.printers.values()
    assert (a.virtual.heat_rate, a.virtual.faults.seed, a.virtual.faults.busy_rate) == (80, 3, 0.5)
    assert (b.virtual.faults.seed, b.virtual.faults.busy_rate) == (3, 0.0)


@pytest.mark.parametrize(("text", "default"), [
    ("printers:\n  a:\n    port: /dev/a\n  default:\n    port: /dev/b\n", "default"),
    ("printers:\n  a:\n    port: /dev/a\n", "a"),
    ("printer:\n  port: /dev/a\n", "default"),
    ("", "default"),
])
def test_the_printer_served_without_a_prefix(text, default):
    assert service(text).default == default


# --- the single-printer config, as it always was -------------------------------------------------


SINGLE = """
    printer:
      port: /dev/ttyACM0
      baudrate: 250000
    serial:
      checksum: always
    storage:
      state: /var/lib/pp/state
    http:
      port: 8080
"""


@pytest.mark.parametrize("text", [SINGLE, "", "serial:\n  checksum: never\n"],
                         ids=["printer-section", "empty", "no-printer-section"])
def test_a_single_printer_config_is_the_printer_default_unchanged(text):
    config = service(text)
    (only,) = config.printers.values()
    assert list(config.printers) == ["default"] and config.default == "default"
    loaded = load_config(textwrap.dedent(text).lstrip("\n"), "main.yaml",
                         stage_schemas=stage_schemas(), stage_phases=stage_phases())
    assert loaded == only
    # what load_config returned before printers: existed, field by field
    today = HostConfig(loaded.path, loaded.printer, loaded.serial, loaded.virtual,
                       loaded.pipeline, loaded.scripts, loaded.events, loaded.http,
                       loaded.storage, loaded.mqtt)
    assert loaded == today
    assert (loaded.name, loaded.http_port, loaded.mqtt_base) == ("default", None, None)


def test_the_single_printer_keeps_the_shared_state_folder_even_beside_a_drop_in():
    config = service(SINGLE, {"printers.d/b.yaml": "port: /dev/b\n"})
    assert list(config.printers) == ["default", "b"]
    default, b = config.printers.values()
    assert default.storage.state == "/var/lib/pp/state"    # its journal and history stay put
    assert b.storage.state == "/var/lib/pp/state/b"


def test_load_config_refuses_several_printers_and_takes_one():
    with pytest.raises(ConfigErrors) as info:
        load_config(textwrap.dedent(TWO).lstrip("\n"), "main.yaml", stage_schemas=stage_schemas())
    (error,) = info.value.errors
    assert str(error).startswith("main.yaml:23: the configuration has several printers "
                                 "(ender, prusa)")
    one = load_config("printers:\n  ender:\n    port: /dev/a\n", "m.yaml",
                      stage_schemas=stage_schemas())
    assert (one.name, one.printer.port, one.storage.state) == ("ender", "/dev/a",
                                                               "~/.printpipe/state")


# --- errors: names, sections, conflicts ----------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("printers:\n  Ender:\n    port: /dev/a\n",
     [("main.yaml:2: [printers.Ender] printer name 'Ender' must be 1 to 32 characters of a-z, "
      "0-9 and '-'")]),
    ("printers:\n  a_b:\n", ["main.yaml:2: [printers.a_b] printer name 'a_b' must be"]),
    ("printers:\n  " + "a" * 33 + ":\n", ["main.yaml:2: [printers.aaaa"]),
    ("printers:\n  ok:\n  'two words':\n", ["main.yaml:3: [printers.two words] printer name"]),
    ("printer:\n  port: /dev/a\nprinters:\n  b:\n",
     ["main.yaml:3: [printers] both printer: and printers: are given (printer: on line 1)"]),
    ("printers:\n  b:\nhttp:\nprinter:\n  port: /dev/a\n",
     ["main.yaml:4: [printer] both printer: and printers: are given (printers: on line 1)"]),
    ("printers:\n", ["main.yaml:1: [printers] printers: names no printer"]),
    ("printers:\n  - a\n", ["main.yaml:1: [printers] printers must map printer names"]),
    ("printers:\n  a: /dev/a\n", [("main.yaml:2: [printers.a] printers.a must be a mapping of "
                                  "the printer's settings (port, baudrate, profile, serial,")]),
    ("printers:\n  a:\n    prot: /dev/a\n",
     ["main.yaml:3: [printers.a.prot] unknown key 'prot' in printer 'a' (did you mean 'port'?"]),
    ("printers:\n  a:\n    printer:\n      port: /dev/a\n",
     [("main.yaml:3: [printers.a.printer] unknown key 'printer' in printer 'a' (the settings of "
      "`printer:` go straight under the printer's name)")]),
    ("printers:\n  a:\n    serial:\n      checksum: sometimes\n",
     ["main.yaml:4: [printers.a.serial.checksum] expected one of: always, print, never"]),
    ("printers:\n  a:\n    http:\n      port: 70000\n",
     ["main.yaml:4: [printers.a.http.port] port must be 0..65535"]),
    ("printers:\n  a:\n    http:\n      host: 0.0.0.0\n",
     ["main.yaml:4: [printers.a.http.host] unknown key 'host' in printers.a.http"]),
    ("printers:\n  a:\n    mqtt:\n      base_topic: x/\n",
     [("main.yaml:3: [printers.a.mqtt] a printer's mqtt: sets its base topic; the broker is the "
      "top-level mqtt: section")]),
    ("mqtt:\nprinters:\n  a:\n    mqtt:\n      base_topic: x\n",
     ["main.yaml:5: [printers.a.mqtt.base_topic] base_topic 'x' must end with /"]),
    (f"printers:\n  a:\n    pipeline:\n      {QUEUING}:\n        - stage: nope\n",
     [f"main.yaml:5: [printers.a.pipeline.{QUEUING}[0].stage] unknown built-in stage 'nope'"]),
    (("printers:\n  a:\n    events:\n      subscriptions:\n        - event: Nope\n"
     "          command: M1\n          type: gcode\n"),
     ["main.yaml:5: [printers.a.events.subscriptions[0].event] unknown event 'Nope'"]),
], ids=["upper-case", "underscore", "too-long", "space", "both", "both-reversed", "empty",
        "list", "scalar-entry", "unknown-key", "printer-nested", "serial-value", "http-port",
        "http-host", "mqtt-without-broker", "base-topic", "stage", "event"])
def test_problems_name_the_file_line_and_key(text, expected):
    got = problems(text)
    assert len(got) == len(expected), got
    for line, start in zip(got, expected, strict=True):
        assert line.startswith(start), line


@pytest.mark.parametrize(("text", "expected"), [
    ("""
     printers:
       a:
         port: /dev/ttyACM0
       b:
         port: /dev/ttyACM0
     """, ("main.yaml:5: [printers.b.port] printers 'a' and 'b' have the same port /dev/ttyACM0 "
          "('a' at main.yaml:3); give each printer its /dev/serial/by-id/ name")),
    ("""
     printers:
       a:
         port: auto
       b:
         port: auto
     """, "main.yaml:5: [printers.b.port] printers 'a' and 'b' have the same port auto"),
    ("""
     printers:
       a:
         port: /dev/a
         http:
           port: 5001
       b:
         port: /dev/b
         http:
           port: 5001
     """, ("main.yaml:9: [printers.b.http.port] printers 'a' and 'b' have the same HTTP port 5001 "
          "('a' at main.yaml:5)")),
    ("""
     http:
       port: 5001
     printers:
       a:
         port: /dev/a
         http:
           port: 5001
     """, ("main.yaml:7: [printers.a.http.port] printer 'a': its http.port 5001 is the main "
          "http.port (set at main.yaml:2)")),
    ("""
     printers:
       a:
         port: /dev/a
         http:
           port: 5000
     """, ("main.yaml:5: [printers.a.http.port] printer 'a': its http.port 5000 is the main "
          "http.port (the default)")),
    ("""
     printers:
       a:
         port: /dev/a
         storage:
           state: /s/x
       b:
         port: /dev/b
         storage:
           state: /s//x/
     """, ("main.yaml:9: [printers.b.storage.state] printers 'a' and 'b' have the same state "
          "folder /s/x ('a' at main.yaml:5)")),
    ("""
     storage:
       state: /s
     printers:
       a:
         port: /dev/a
         storage:
           state: /s/b
       b:
         port: /dev/b
     """, ("main.yaml:8: [printers.b.storage.state] printers 'a' and 'b' have the same state "
          "folder /s/b ('a' at main.yaml:7)")),
    ("""
     mqtt:
     printers:
       a:
         port: /dev/a
         mqtt:
           base_topic: octoPrint/b/
       b:
         port: /dev/b
     """, ("main.yaml:7: [printers.b.mqtt.base_topic] printers 'a' and 'b' have the same MQTT "
          "base topic octoPrint/b/ ('a' at main.yaml:6)")),
], ids=["port", "auto", "http-port", "main-http-port", "default-main-port", "state",
        "derived-state", "base-topic"])
def test_two_printers_may_not_share_port_http_port_state_or_topic(text, expected):
    (got,) = problems(text)
    assert got.startswith(expected), got


def test_virtual_printers_and_port_0_may_repeat():
    config = service("""
        printers:
          a:
            http:
              port: 0
          b:
            http:
              port: 0
    """)
    assert [c.printer.port for c in config.printers.values()] == ["virtual", "virtual"]


# --- drop-in files ---------------------------------------------------------------------------


def test_drop_ins_join_the_printers_after_the_main_files_in_their_order():
    config = service("""
        serial:
          checksum: never
        printers:
          main:
            port: /dev/m
    """, {"printers.d/a.yaml": "port: /dev/a\nserial:\n  hello_command: M110\n",
          "printers.d/b.yaml": ""})
    assert list(config.printers) == ["main", "a", "b"]
    a = config.printers["a"]
    assert (a.serial.checksum, a.serial.hello_command) == (ChecksumMode.NEVER, "M110")
    assert config.printers["b"].printer.port == "virtual"
    assert {n: str(w) for n, w in config.origins.items()} == {
        "main": "main.yaml:4", "a": "printers.d/a.yaml:1", "b": "printers.d/b.yaml:1"}
    assert a.path == "main.yaml"  # relative paths stay relative to the main file's folder


def test_drop_ins_alone_make_the_printers_without_a_built_in_one():
    config = service("http:\n  port: 5000\n", {"printers.d/x.yaml": "port: /dev/x\n"})
    assert list(config.printers) == ["x"] and config.default == "x"


@pytest.mark.parametrize(("text", "dropins", "expected"), [
    ("printers:\n  a:\n    port: /dev/a\n", {"printers.d/a.yaml": "port: /dev/b\n"},
     [("main.yaml:2: [printers.a] printer 'a' is declared twice: at main.yaml:2 and by the file "
      "printers.d/a.yaml")]),
    ("printer:\n  port: /dev/a\n", {"printers.d/default.yaml": "port: /dev/b\n"},
     [("main.yaml:1: [printer] printer 'default' is declared twice: at main.yaml:1 and by the "
      "file printers.d/default.yaml")]),
    ("", {"printers.d/a.yaml": "port: /dev/a\n\nserial:\n  checksum: bad\n"},
     ["printers.d/a.yaml:4: [serial.checksum] expected one of: always, print, never"]),
    ("", {"printers.d/a.yaml": "port: /dev/a\nprot: 1\n"},
     ["printers.d/a.yaml:2: [prot] unknown key 'prot' in printer 'a'"]),
    ("", {"printers.d/a.yaml": "- port\n"},
     ["printers.d/a.yaml:1: a printer file must hold a mapping of the printer's settings"]),
    ("", {"printers.d/a.yaml": "port: [x]\n"},
     ["printers.d/a.yaml:1: flow style ([...] or {...}) is not allowed"]),
    ("", {"printers.d/Ender 3.yaml": "port: /dev/a\n"},
     ["printers.d/Ender 3.yaml: printer name 'Ender 3' must be 1 to 32 characters"]),
    ("printers:\n  a:\n    port: /dev/x\n", {"printers.d/b.yaml": "\n\nport: /dev/x\n"},
     [("printers.d/b.yaml:3: [port] printers 'a' and 'b' have the same port /dev/x ('a' at "
      "main.yaml:3)")]),
    ("printer:\n  baudrate: 0\n  port: /dev/x\n", {"printers.d/b.yaml": "port: /dev/x\n"},
     [("printers.d/b.yaml:1: [port] printers 'default' and 'b' have the same port /dev/x "
      "('default' at main.yaml:3)")]),
    ("http:\n  port: 5000\n", {"printers.d/b.yaml": "http:\n  port: 5000\n"},
     [("printers.d/b.yaml:2: [http.port] printer 'b': its http.port 5000 is the main http.port "
      "(set at main.yaml:2)")]),
], ids=["name-in-both", "default-in-both", "value", "unknown-key", "list", "syntax",
        "file-name", "port-across-files", "port-of-printer-section", "main-http-port"])
def test_drop_in_problems_name_their_file_and_line(text, dropins, expected):
    got = problems(text, dropins)
    assert len(got) == len(expected), got
    for line, start in zip(got, expected, strict=True):
        assert line.startswith(start), line


def write(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def test_the_file_loader_reads_the_printers_folder_beside_the_config(tmp_path):
    main = write(tmp_path / "etc" / "printer.yaml", "printer:\n  port: /dev/a\n")
    write(tmp_path / "etc" / "printers.d" / "b.yaml", "port: /dev/b\n")
    write(tmp_path / "etc" / "printers.d" / "a.yaml", "port: /dev/c\n")
    write(tmp_path / "etc" / "printers.d" / "c.yaml~", "not: yaml: at all\n")  # a backup
    write(tmp_path / "etc" / "printers.d" / ".d.yaml", "port: /dev/d\n")      # hidden
    (tmp_path / "etc" / "printers.d" / "dir.yaml").mkdir()
    config = load_service_config_file(main, stage_schemas=stage_schemas())
    assert list(config.printers) == ["default", "a", "b"]
    assert str(config.origins["b"]) == f"{tmp_path}/etc/printers.d/b.yaml:1"
    # load_config_file reads the main file alone (the runtime moves to the service loader)
    assert load_config_file(main, stage_schemas=stage_schemas()).printer.port == "/dev/a"


def test_an_unreadable_drop_in_is_a_problem_naming_it(tmp_path):
    main = write(tmp_path / "printer.yaml", "")
    (tmp_path / "printers.d").mkdir()
    (tmp_path / "printers.d" / "a.yaml").write_bytes(b"port: /dev/\xff\n")
    with pytest.raises(ConfigErrors) as info:
        load_service_config_file(main, stage_schemas=stage_schemas())
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path}/printers.d/a.yaml:1: not UTF-8 text: byte 0xff cannot be decoded"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_printers_folder_is_a_problem_naming_it(tmp_path):
    main = write(tmp_path / "printer.yaml", "")
    folder = tmp_path / "printers.d"
    folder.mkdir(mode=0o000)
    try:
        with pytest.raises(ConfigErrors) as info:
            load_service_config_file(main, stage_schemas=stage_schemas())
    finally:
        folder.chmod(0o700)
    assert [str(e) for e in info.value.errors] == [
        f"{folder}: cannot read the printers folder: Permission denied"]


def test_service_config_is_frozen():
    config = service(TWO)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.path = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.printers["x"] = config.printers["ender"]  # type: ignore[index]


def test_the_readmes_example_loads_as_it_says(tmp_path):
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Several printers"):]
    example = section[section.index("```yaml\n") + 8:section.index("```\n")]
    config = service(example)
    prusa, ender = config.printers.values()
    assert [prusa.printer.port[:18], ender.printer.port[:18]] == ["/dev/serial/by-id/"] * 2
    assert ender.serial.checksum is ChecksumMode.ALWAYS is prusa.serial.checksum
    assert ender.serial.timeouts.communication == 60 and ender.http_port == 5001
    assert (ender.storage.state, ender.mqtt_base) == ("/var/lib/printpipe/state/ender",
                                                      "octoPrint/ender/")
    assert prusa.storage.folder == ender.storage.folder == "/var/lib/printpipe/files"
