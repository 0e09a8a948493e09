"""Every wired phase, declared in YAML, called at its moment with the seed's arguments and its
return value honoured (the command phases are in test_host.py and test_chain.py)."""

from __future__ import annotations

import phase_handlers as ph
import pytest
import trio
from conftest import load_yaml, open_printer
from pairs import pair, start

from pipeline.errors import LinkBroken
from pipeline.hooks.host_phases import additional_state_data, custom_event_names
from pipeline.hooks.registry import build_pipeline
from pipeline.session.core import PrinterState as S
from stages import BUILTIN_STAGES


def yaml_for(phase: str, handler: str, extra: str = "") -> str:
    return f"{extra}pipeline:\n  {phase}:\n    - handler: phase_handlers:{handler}\n"


def test_firmware_info_capabilities_and_report():
    ph.calls.clear()
    y = ("pipeline:\n"
         "  comm.protocol.firmware.info:\n    - handler: phase_handlers:firmware_info\n"
         "  comm.protocol.firmware.capabilities:\n    - handler: phase_handlers:capabilities\n"
         "  comm.protocol.firmware.capability_report:\n"
         "    - handler: phase_handlers:capability_report\n")
    pair(y)
    kinds = [c[0] for c in ph.calls]
    assert kinds[0] == "firmware.info" and kinds[-1] == "capability_report"
    assert ph.calls[0][1].startswith("printpipe Virtual Marlin")
    assert "FIRMWARE_NAME" in ph.calls[0][2]
    assert ("capabilities", "AUTOREPORT_TEMP", True) in ph.calls
    assert "EMERGENCY_PARSER" in ph.calls[-1][1]


def test_action_phase_gets_line_action_name_params():
    ph.calls.clear()
    p = pair(yaml_for("comm.protocol.action", "action"))
    p.send("M118 // action:custom key value")
    assert ("action", "// action:custom key value", "custom key value", "custom",
            "key value") in ph.calls


@pytest.mark.parametrize(("text", "handled"), [("Fan error on E0", True), ("Something odd", False)])
def test_error_phase_truthy_return_marks_the_error_handled(text, handled):
    ph.calls.clear()
    p = pair(yaml_for("comm.protocol.gcode.error", "error"))
    p.core.receive_data(f"Error:{text}\n".encode())
    assert ("error", text) in ph.calls
    assert p.core.failed is not handled


def test_temperatures_phase_can_filter_readings():
    ph.calls.clear()
    p = pair(yaml_for("comm.protocol.temperatures.received", "temperatures"))
    p.core.receive_data(b"T:5000.0 /0.0 B:60.0 /60.0\n")
    assert ph.calls[-1][0] == "temperatures" and "T0" in ph.calls[-1][1]
    assert p.core.tracker.bed[0] == 60.0
    assert 0 not in p.core.tracker.tools or p.core.tracker.tools[0][0] != 5000.0


def test_state_data_and_custom_events():
    y = ("pipeline:\n"
         "  printer.additional_state_data:\n    - handler: phase_handlers:state_data\n"
         "      id: myplugin\n"
         "  events.register_custom_events:\n    - handler: phase_handlers:custom_events\n"
         "      id: myplugin\n")
    p = pair(y)
    assert additional_state_data(p.core.pipeline, initial=True) == {
        "myplugin": {"initial": True, "answer": 42}}
    assert custom_event_names(p.core.pipeline) == ["plugin_myplugin_my_custom_event",
                                                   "plugin_myplugin_my_other_custom_event"]


def test_estimation_factory_estimator_is_used_for_time_left():
    ph.calls.clear()
    p = pair(yaml_for("printer.estimation.factory", "estimator_factory"))
    start(p, "G1 X1\n" * 10)
    assert ("estimator", "local") in ph.calls
    assert p.core.jobs.time_left() == 4242.0
    p.run_until(lambda: p.core.state is S.OPERATIONAL)


async def test_handle_connect_true_prevents_the_connect():
    ph.calls.clear()
    with pytest.raises(LinkBroken, match="prevented"):
        async with open_printer(load_yaml(yaml_for("printer.handle_connect",
                                                   "refuse_connect"))):
            pass
    assert ph.calls == [("handle_connect", "virtual", 115200)]


async def test_handle_connect_none_lets_it_through():
    ph.calls.clear()
    async with open_printer(load_yaml(yaml_for("printer.handle_connect",
                                               "allow_connect"))) as printer:
        assert printer.core.operational
    assert ph.calls == [("handle_connect", "virtual", 115200)]


async def test_serial_factory_picks_the_device(tmp_path):
    from pipeline.link.virtual import serve_virtual_printer
    from pipeline.virtual.spec import FirmwareSpec
    ph.calls.clear()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(serve_virtual_printer, FirmwareSpec())
        ph.FACTORY_TARGET[0] = handle.device
        config = load_yaml(yaml_for("comm.transport.serial.factory", "factory",
                                    "printer:\n  port: /dev/printpipe-nonexistent\n"))
        async with open_printer(config) as printer:
            assert printer.core.operational
        nursery.cancel_scope.cancel()
    assert ph.calls[0] == ("factory", "/dev/printpipe-nonexistent", 115200, 10.0)


async def test_additional_port_names_are_scanned_for_auto():
    ph.calls.clear()
    config = load_yaml(yaml_for("comm.transport.serial.additional_port_names", "port_names",
                                "printer:\n  port: auto\nserial:\n  timeouts:\n"
                                "    detection: 0.1\n"))
    with pytest.raises(LinkBroken, match="printpipe-extra-port"):
        async with open_printer(config):
            pass
    assert ph.calls and ph.calls[0][0] == "additional_port_names"


def storage_for(tmp_path, yaml):
    from pipeline.files.storage import LocalStorage
    config = load_yaml(yaml)
    return LocalStorage(str(tmp_path / "files"), build_pipeline(config.pipeline,
                                                                BUILTIN_STAGES))


def test_extension_tree_stage_adds_accepted_types(tmp_path):
    from pipeline.files.storage import DiskFile, StorageError
    src = tmp_path / "a.x3g"
    src.write_bytes(b"data")
    with pytest.raises(StorageError, match="not accepted"):
        storage_for(tmp_path / "plain", "").add_file("a.x3g", DiskFile("a.x3g", str(src)))
    s = storage_for(tmp_path, yaml_for("filemanager.extension_tree", "x3g"))
    assert {"gcode", "gco", "g", "x3g", "s3g"} <= s.extensions
    assert s.add_file("a.x3g", DiskFile("a.x3g", str(src))).size == 4


def test_preprocessor_can_replace_the_file_object(tmp_path):
    from pipeline.files.storage import DiskFile
    ph.calls.clear()
    src = tmp_path / "in.gcode"
    src.write_bytes(b"G28 ; home\n; only a comment\nG1 X1\n")
    s = storage_for(tmp_path, yaml_for("filemanager.preprocessor", "strip_all_comments"))
    kept = s.add_file("sub/keep.gcode", DiskFile("keep.gcode", str(src)))
    stripped = s.add_file("cube_strip.gcode", DiskFile("cube_strip.gcode", str(src)))
    assert ("preprocessor", "sub/keep.gcode", "keep.gcode", False) in ph.calls
    assert (tmp_path / "files" / "sub" / "keep.gcode").read_bytes() == src.read_bytes()
    assert (tmp_path / "files" / "cube_strip.gcode").read_bytes() == b"G28\nG1 X1\n"
    assert kept.path == "sub/keep.gcode" and stripped.size == 10


@pytest.mark.parametrize("name", ["../evil.gcode", "a/../../evil.gcode"])
def test_storage_paths_never_leave_the_folder(tmp_path, name):
    from pipeline.files.storage import DiskFile, StorageError
    src = tmp_path / "x.gcode"
    src.write_bytes(b"G28\n")
    with pytest.raises(StorageError):
        storage_for(tmp_path, "").add_file(name, DiskFile("x.gcode", str(src)))
    assert not (tmp_path / "evil.gcode").exists()


def test_system_commands_are_collected_and_invalid_ones_left_out(caplog):
    from pipeline.hooks.host_phases import system_commands
    config = load_yaml(yaml_for("system.additional_commands", "system_cmds"))
    pipeline = build_pipeline(config.pipeline, BUILTIN_STAGES)
    (cmd,) = system_commands(pipeline)
    assert (cmd.name, cmd.action, cmd.command, cmd.confirm, cmd.source) == (
        "Reboot", "system_cmds:reboot", "sudo reboot", "Sure?", "system_cmds")
    assert "Not Valid!" in caplog.text
