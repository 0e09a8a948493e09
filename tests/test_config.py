"""Tests for pipeline/config.py: shipped configs, defaults, line-numbered errors, stage order."""

from __future__ import annotations

import pathlib
import textwrap

import attrs
import pytest
import strictyaml as sy

from pipeline.config.reader import (
    ChecksumMode,
    ErrorHandling,
    HostConfig,
    PipelineSpec,
    ResendWithoutOk,
    SerialSpec,
    SourceLocation,
    StageKind,
    default_config,
    load_config,
    load_config_file,
)
from pipeline.errors import ConfigError, ConfigErrors
from pipeline.phases import Phase
from stages import stage_phases, stage_schemas

CONFIGS = sorted((pathlib.Path(__file__).parent.parent / "configs").glob("*.yaml"))

# A test-only stage with a required int option and a defaulted one.
SCHEMAS = {
    **stage_schemas(),
    "throttle": sy.Map({"seconds": sy.Int(), sy.Optional("burst", default=3): sy.Int()}),
}


def load(text: str, path: str = "test.yaml") -> HostConfig:
    return load_config(textwrap.dedent(text), path, stage_schemas=SCHEMAS,
                       stage_phases=stage_phases())


def errors_of(text: str) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as info:
        load(text)
    assert info.value.errors, "ConfigErrors without errors"
    assert all(isinstance(e, ConfigError) for e in info.value.errors)
    return info.value.errors


# --- shipped configs and defaults -------------------------------------------------------------


def test_configs_folder_is_not_empty():
    assert {p.name for p in CONFIGS} >= {"virtual.yaml", "marlin-usb.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config_file(str(path), stage_schemas=stage_schemas(),
                              stage_phases=stage_phases())
    assert config.path == str(path)
    assert isinstance(config.serial, SerialSpec)


def test_virtual_config_is_the_virtual_printer_with_the_m107_rewrite():
    config = load_config_file(str(CONFIGS[[p.name for p in CONFIGS].index("virtual.yaml")]),
                              stage_schemas=stage_schemas(), stage_phases=stage_phases())
    assert config.printer.port == "virtual"
    assert config.printer.profile.name == "virtual"
    assert config.printer.profile.heated_bed is True
    (stage,) = config.pipeline.for_phase(Phase.GCODE_QUEUING)
    assert (stage.kind, stage.target) == (StageKind.BUILTIN, "rewrite")
    assert stage.options["rules"][0]["gcode"] == "M107"
    assert stage.options["rules"][0]["replace"] == "M106 S0"


def test_marlin_config_values():
    config = load_config_file(str(CONFIGS[[p.name for p in CONFIGS].index("marlin-usb.yaml")]),
                              stage_schemas=stage_schemas(), stage_phases=stage_phases())
    assert (config.printer.port, config.printer.baudrate) == ("/dev/ttyACM0", 115200)
    volume = config.printer.profile.volume
    assert (volume.width, volume.depth, volume.height) == (220.0, 220.0, 250.0)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_document_is_all_defaults(text):
    config = load(text)
    assert config == attrs.evolve(default_config(SCHEMAS), path="test.yaml")
    assert config.pipeline == PipelineSpec()


def test_defaults_are_octoprints():
    config = default_config(stage_schemas())
    serial = config.serial
    assert config.printer.port == "virtual" and config.printer.baudrate == 115200
    assert serial.checksum is ChecksumMode.PRINT
    assert serial.resend_without_ok is ResendWithoutOk.DETECT
    assert serial.error_handling is ErrorHandling.DISCONNECT
    assert serial.emergency_commands == ("M112", "M108", "M410")
    assert serial.blocked_commands == ("M0", "M1")
    assert serial.ignored_commands == ()
    assert serial.long_running_commands == (
        "G4", "G28", "G29", "G30", "G32", "M400", "M226", "M600")
    assert serial.checksum_requiring_commands == ("M110",)
    assert (serial.timeouts.communication, serial.timeouts.communication_busy) == (30.0, 3.0)
    limits = serial.max_consecutive_timeouts
    assert (limits.idle, limits.printing, limits.long_running) == (2, 5, 5)
    assert (serial.resend_history_size, serial.max_consecutive_resends) == (50, 10)
    assert config.virtual.faults.reset_after is None
    assert config.pipeline.for_phase(Phase.GCODE_SENT) == ()


def test_values_are_typed_and_partial_sections_keep_defaults():
    config = load("""\
        serial:
          checksum: always
          send_window: 4
          busy_protocol: no
          ignored_commands:
            - M117
          blocked_commands:
          timeouts:
            communication: 12.5
        virtual:
          faults:
            corrupt_rate: 0.25
            reset_after: 100
        """)
    assert config.serial.checksum is ChecksumMode.ALWAYS
    assert config.serial.send_window == 4
    assert config.serial.busy_protocol is False
    assert config.serial.ignored_commands == ("M117",)
    assert config.serial.blocked_commands == ()
    assert config.serial.timeouts.communication == 12.5
    assert config.serial.timeouts.connection == 10.0
    assert config.serial.pausing_commands == ("M0", "M1", "M25")
    assert (config.virtual.faults.corrupt_rate, config.virtual.faults.reset_after) == (0.25, 100)


# --- errors: one row per case (document, line, message fragment, key) --------------------------

ERROR_CASES = {
    "unknown top-level key": ("""\
        printer:
          port: virtual
        slicer:
          port: 80
        """, 3, "unknown section 'slicer'", "slicer"),
    "unknown key inside serial": ("""\
        serial:
          send_window: 1
          sendwindow: 2
        """, 3, "did you mean 'send_window'", "serial.sendwindow"),
    "bad int (comments around it)": ("""\
        serial:
          # how many lines to keep
          resend_history_size: lots
          # trailing comment

        """, 3, "expected an integer, found 'lots'", "serial.resend_history_size"),
    "bad nested float": ("""\
        serial:
          timeouts:
            connection: soon
        """, 3, "expected a float", "serial.timeouts.connection"),
    "bad enum value": ("""\
        serial:
          checksum: sometimes
        """, 2, "one of: always, print, never", "serial.checksum"),
    "bad bool": ("""\
        printer:
          profile:
            heated_bed: maybe
        """, 3, "expected a boolean", "printer.profile.heated_bed"),
    "bad command word in a list": ("""\
        serial:
          blocked_commands:
            - M0
            - m1
        """, 4, "'m1' is not a G-code command word", "serial.blocked_commands[1]"),
    "send_window 0": ("""\
        serial:
          send_window: 0
        """, 2, "send_window must be auto or a number of lines of at least 1",
        "serial.send_window"),
    "send_window a word": ("""\
        serial:
          send_window: fast
        """, 2, "expected an integer, found 'fast'", "serial.send_window"),
    "the retired ok_window": ("""\
        serial:
          ok_window: 4
        """, 2, "serial.ok_window was replaced by serial.send_window: write `send_window",
        "serial.ok_window"),
    "resend_history_size 0": ("""\
        serial:
          resend_history_size: 0
        """, 2, "must be at least 1", "serial.resend_history_size"),
    "extruders 0": ("""\
        printer:
          profile:
            extruders: 0
        """, 3, "extruders must be at least 1", "printer.profile.extruders"),
    "rate above 1": ("""\
        virtual:
          faults:
            lost_ok_rate: 1.5
        """, 3, "between 0 and 1", "virtual.faults.lost_ok_rate"),
    "section is not a mapping": ("""\
        serial: fast
        """, 1, "serial must be a mapping", "serial"),
    "unknown phase": ("""\
        pipeline:
          comm.protocol.gcode.queueing:
            - handler: my.mod:func
        """, 2, "did you mean 'comm.protocol.gcode.queuing'",
        "pipeline.comm.protocol.gcode.queueing"),
    "non-phase hook name with reason": ("""\
        pipeline:
          octoprint.server.http.routes:
            - handler: my.mod:routes
        """, 2, ("server.http.routes is not a printpipe phase: printpipe's HTTP API has no "
                 "extension routes"), "pipeline.octoprint.server.http.routes"),
    "phase declared twice": ("""\
        pipeline:
          comm.protocol.gcode.sent:
            - handler: my.mod:a
          octoprint.comm.protocol.gcode.sent:
            - handler: my.mod:b
        """, 4, "declared twice (first on line 2)", "pipeline.octoprint.comm.protocol.gcode.sent"),
    "unknown stage name": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - id: x
              stage: rewrit
        """, 4, f"unknown built-in stage 'rewrit' (known stages: {', '.join(sorted(SCHEMAS))})",
        "pipeline.comm.protocol.gcode.queuing[0].stage"),
    "stage declared in a phase it does not support": ("""\
        pipeline:
          comm.protocol.gcode.received:
            - stage: strip_comments
        """, 3, "cannot run in comm.protocol.gcode.received",
        "pipeline.comm.protocol.gcode.received[0].stage"),
    "bad option type inside with": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: throttle
              with:
                # comment above
                seconds: ten
                # comment below
        """, 6, "expected an integer, found 'ten'",
        "pipeline.comm.protocol.gcode.queuing[0].with.seconds"),
    "unknown option inside with": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: throttle
              with:
                seconds: 1
                burts: 2
        """, 6, "unknown key 'burts'", "pipeline.comm.protocol.gcode.queuing[0].with.burts"),
    "required option missing (no with:)": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: throttle
        """, 3, "required key(s) 'seconds' not found",
        "pipeline.comm.protocol.gcode.queuing[0].with"),
    "handler path format": ("""\
        pipeline:
          comm.protocol.gcode.sent:
            - handler: mymodule.func
        """, 3, "\"package.module:function\"", "pipeline.comm.protocol.gcode.sent[0].handler"),
    "both stage and handler": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - handler: my.mod:f
            - stage: strip_comments
              handler: my.mod:g
        """, 4, "exactly one of `stage:`", "pipeline.comm.protocol.gcode.queuing[1]"),
    "neither stage nor handler": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - id: lonely
        """, 3, "exactly one of `stage:`", "pipeline.comm.protocol.gcode.queuing[0]"),
    "with on a handler": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - handler: my.mod:f
              with:
                x: 1
        """, 4, "only for built-in stages", "pipeline.comm.protocol.gcode.queuing[0].with"),
    "unknown key in a stage entry": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - handler: my.mod:f
              ordr: 3
        """, 4, "did you mean 'order'", "pipeline.comm.protocol.gcode.queuing[0].ordr"),
    "bad order type": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - handler: my.mod:f
              order: first
        """, 4, "expected an integer", "pipeline.comm.protocol.gcode.queuing[0].order"),
    "duplicate id": ("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - handler: one.mod:fix
            - stage: strip_comments
            - handler: two.mod:fix
        """, 5, "duplicate stage id 'fix' in comm.protocol.gcode.queuing (first on line 3)",
        "pipeline.comm.protocol.gcode.queuing[2].id"),
    "flow style": ("""\
        serial:
          blocked_commands: [M0, M1]
        """, 2, "flow style ([...] or {...}) is not allowed", None),
    "duplicate yaml key": ("""\
        serial:
          send_window: 1
          send_window: 2
        """, 3, "duplicate key 'send_window'", None),
    "top level is a list": ("""\
        - printer
        """, 1, "must be a mapping of sections", None),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key"), ERROR_CASES.values(),
                         ids=ERROR_CASES.keys())
def test_error_names_file_line_and_key(text, line, fragment, key):
    errors = errors_of(text)
    assert len(errors) == 1, [str(e) for e in errors]
    (error,) = errors
    assert error.path == "test.yaml"
    assert error.line == line, str(error)
    assert fragment in error.message, str(error)
    assert error.key == key
    assert str(error).startswith(f"test.yaml:{line}:")


def test_many_errors_are_reported_in_one_pass():
    errors = errors_of("""\
        printer:
          baudrate: fast
        serial:
          send_window: 0
          checksum: sometimes
          colour: red
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: throttle
              with:
                seconds: ten
            - handler: not-a-path
          comm.protocol.nonsense:
            - handler: a.b:c
        extra: 1
        """)
    assert [e.line for e in errors] == [2, 4, 5, 6, 11, 12, 13, 15]


def test_load_config_file_reports_an_unreadable_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigErrors) as info:
        load_config_file(str(missing), stage_schemas=SCHEMAS)
    assert info.value.errors[0].path == str(missing)
    assert "cannot read" in info.value.errors[0].message


def test_load_config_file_names_the_line_of_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"printer:\n  port: virtual\n# caf\xe9\n")
    with pytest.raises(ConfigErrors) as info:
        load_config_file(str(path), stage_schemas=SCHEMAS)
    (error,) = info.value.errors
    assert (error.path, error.line) == (str(path), 3)
    assert error.message == "not UTF-8 text: byte 0xe9 cannot be decoded"


# --- characters YAML refuses ------------------------------------------------------------------

CHARACTER_CASES = {
    "NUL in a value": ("printer:\n  port: virt\x00ual\n", 2,
                       "control character NUL (U+0000) at column 13 is not allowed in YAML",
                       None),
    "BEL in a comment": ("# hi\x07\nprinter:\n  port: x\n", 1,
                         "control character BEL (U+0007) at column 5", None),
    "ESC in a quoted value": ('serial:\n  hello_command: "M110\x1b"\n', 2,
                              "control character ESC (U+001B) at column 23", None),
    "DEL in a key": ("printer:\n  po\x7frt: x\n", 2,
                     "control character DEL (U+007F) at column 5", None),
    "C1 control": ("printer:\n  port: x\x9by\n", 2, "control character U+009B at column 10",
                   None),
    "lone surrogate": ("printer:\n  port: x\ud800\n", 2, "character U+D800 at column 10",
                       None),
    "BEL as an escape": ('printer:\n  port: "virt\\aual"\n', 2,
                         ("control character BEL (U+0007) (written as an escape) is not allowed "
                         "in a setting"), "printer.port"),
    "NUL as an escape in a list": (
        ("events:\n  subscriptions:\n    - event: PrintDone\n      type: gcode\n"
        '      command: "M117 \\0"\n'), 5, "control character NUL (U+0000) (written as an escape)",
        "events.subscriptions[0].command"),
    "escape in a stage option": (
        ("pipeline:\n  comm.protocol.gcode.queuing:\n    - stage: rewrite\n      with:\n"
        "        rules:\n          - gcode: M107\n            replace: \"M106\\x07\"\n"), 7,
        "control character BEL (U+0007) (written as an escape)",
        "pipeline.comm.protocol.gcode.queuing[0].with.rules[0].replace"),
}


@pytest.mark.parametrize(("text", "line", "fragment", "key"), CHARACTER_CASES.values(),
                         ids=CHARACTER_CASES.keys())
def test_control_characters_are_errors_with_their_line(text, line, fragment, key):
    (error,) = errors_of(text)
    assert (error.line, error.key) == (line, key), str(error)
    assert fragment in error.message, str(error)


def test_tabs_line_breaks_nel_and_a_bom_are_fine():
    config = load("\ufeffprinter:\n  port: 'a\tb'\r\nscripts:\n  gcode:\n    x: \"G28\\nG1\"\n"
                  "# caf\u00e9, then a NEL\x85\n")
    assert config.printer.port == "a\tb"


def test_control_characters_on_many_lines_are_summed_up():
    errors = errors_of("".join(f"# {i}\x00\n" for i in range(8)))
    assert [e.line for e in errors] == [1, 2, 3, 4, 5, 6]
    assert errors[-1].message == "and 3 more line(s) with such characters"


def test_the_character_check_refuses_what_the_yaml_reader_refuses():
    from strictyaml.ruamel.reader import Reader

    from pipeline.config.nodes import bad_characters
    for code in [*range(0x300), *range(0xD700, 0xE100), 0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF,
                 0x10000, 0x10FFFF]:
        char = chr(code)
        refused = Reader.NON_PRINTABLE.search(char) is not None
        assert bool(bad_characters(f"a: {char}")) == refused, hex(code)


# --- pipeline ---------------------------------------------------------------------------------


def test_octoprint_prefix_is_accepted_and_dropped():
    config = load("""\
        pipeline:
          octoprint.comm.protocol.gcode.sending:
            - handler: my_plugin.hooks:rewrite_m107
        """)
    (stage,) = config.pipeline.for_phase(Phase.GCODE_SENDING)
    assert stage.phase is Phase.GCODE_SENDING
    assert (stage.kind, stage.target, stage.id) == (
        StageKind.HANDLER, "my_plugin.hooks:rewrite_m107", "rewrite_m107")
    assert stage.options == {}
    assert stage.location == SourceLocation("test.yaml", 3)
    assert str(stage.location) == "test.yaml:3"


def test_order_follows_the_seed():
    config = load("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - handler: p.m:late
              order: 2
            - handler: p.m:none_b
            - handler: p.m:first
              order: 1
            - handler: p.m:none_a
            - handler: p.m:also_first
              order: 1
        """)
    ids = [s.id for s in config.pipeline.for_phase(Phase.GCODE_QUEUING)]
    assert ids == ["also_first", "first", "late", "none_a", "none_b"]


def test_three_handlers_with_orders_one_two_and_none():
    config = load("""\
        pipeline:
          comm.protocol.gcode.sent:
            - handler: p.m:f
              id: a_unordered
            - handler: p.m:f
              id: z_second
              order: 2
            - handler: p.m:f
              id: y_first
              order: 1
        """)
    stages = config.pipeline.for_phase(Phase.GCODE_SENT)
    assert [(s.id, s.order) for s in stages] == [("y_first", 1), ("z_second", 2),
                                                 ("a_unordered", None)]


def test_builtin_entry_fields_defaults_and_read_only_options():
    config = load("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: throttle
              id: slow
              order: 5
              enabled: false
              with:
                seconds: 2
            - stage: strip_comments
        """)
    throttle, strip = config.pipeline.for_phase(Phase.GCODE_QUEUING)
    assert (throttle.id, throttle.order, throttle.enabled) == ("slow", 5, False)
    assert dict(throttle.options) == {"seconds": 2, "burst": 3}
    assert throttle.options_location == SourceLocation("test.yaml", 7)
    with pytest.raises(TypeError):
        throttle.options["seconds"] = 3  # type: ignore[index]
    assert (strip.id, strip.enabled, strip.options_location) == ("strip_comments", True, None)
    assert dict(strip.options) == {}
    assert Phase.GCODE_SENT not in config.pipeline.stages
    assert hash(throttle) == hash(throttle)


def test_same_id_in_different_phases_is_fine():
    config = load("""\
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: strip_comments
          comm.protocol.gcode.sending:
            - stage: strip_comments
        """)
    assert config.pipeline.for_phase(Phase.GCODE_QUEUING)[0].id == "strip_comments"
    assert config.pipeline.for_phase(Phase.GCODE_SENDING)[0].id == "strip_comments"


def test_without_stage_phases_any_phase_is_accepted():
    config = load_config("pipeline:\n  comm.protocol.gcode.sent:\n    - stage: strip_comments\n",
                         "t.yaml", stage_schemas=stage_schemas())
    assert config.pipeline.for_phase(Phase.GCODE_SENT)[0].target == "strip_comments"


def test_blank_optional_int_and_blank_with_mean_none_and_no_options():
    config = load("""\
        virtual:
          faults:
            reset_after:
        pipeline:
          comm.protocol.gcode.queuing:
            - stage: strip_comments
              with:
        """)
    assert config.virtual.faults.reset_after is None
    (stage,) = config.pipeline.for_phase(Phase.GCODE_QUEUING)
    assert dict(stage.options) == {}
    assert stage.options_location == SourceLocation("test.yaml", 7)
