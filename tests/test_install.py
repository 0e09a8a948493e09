"""tools/install.sh staged with --root into a temp folder: every file it installs, what is in
them, idempotence, a kept config, --uninstall; the unit checked by systemd-analyze (verify and
the offline security rating) where it exists."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT

from pipeline.app.cli.printers import run_add
from pipeline.app.http.printer import OCTOPRINT_API_LEVEL
from pipeline.config.reader import load_config_file, load_service_config_file
from stages import stage_phases, stage_schemas

INSTALL = os.path.join(ROOT, "tools", "install.sh")
UNIT = "etc/systemd/system/printpipe.service"
SYSUSERS = "etc/sysusers.d/printpipe.conf"
CONFIG = "etc/printpipe/printer.yaml"
DROPINS = "etc/printpipe/printers.d"
AVAHI = "etc/avahi/services/printpipe.service"
BIN = "usr/local/bin/printpipe"
EVERY_FILE = {UNIT, SYSUSERS, CONFIG, AVAHI, BIN}


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", INSTALL, "--root", str(root), *args], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result


def staged(root: Path) -> dict[str, bytes | str]:
    """Every file under root: its content, or a symlink's target."""
    out: dict[str, bytes | str] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            out[rel] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    return out


def test_stages_every_file_and_runs_no_system_command(tmp_path: Path) -> None:
    result = install(tmp_path)
    assert set(staged(tmp_path)) == EVERY_FILE
    assert os.readlink(tmp_path / BIN) == "/opt/printpipe/venv/bin/printpipe"
    for step in ("python3 -m venv /opt/printpipe/venv", "systemd-sysusers",
                 "systemctl daemon-reload", "systemctl enable printpipe.service"):
        assert f"(--root: not run) {step}" in result.stdout
    for rel in (UNIT, SYSUSERS, AVAHI):
        assert stat.S_IMODE((tmp_path / rel).stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / CONFIG).stat().st_mode) == 0o640  # may hold the api_key


def test_the_user_is_a_system_user_in_dialout(tmp_path: Path) -> None:
    install(tmp_path)
    lines = [li.split() for li in (tmp_path / SYSUSERS).read_text().splitlines()
             if li and not li.startswith("#")]
    assert lines[0][:3] == ["u", "printpipe", "-"]
    assert ["m", "printpipe", "dialout"] in lines


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_runs_the_venv_as_printpipe_with_state_in_var_lib(tmp_path: Path) -> None:
    install(tmp_path)
    unit = unit_settings(tmp_path / UNIT)
    assert unit["User"] == ["printpipe"]
    assert unit["ExecStart"] == [
        "/opt/printpipe/venv/bin/printpipe serve -c /etc/printpipe/printer.yaml"]
    assert unit["StateDirectory"] == ["printpipe"]
    assert unit["RestartPreventExitStatus"] == ["2"]    # a config error is not retried
    assert unit["ProtectSystem"] == ["strict"] and unit["DevicePolicy"] == ["closed"]
    assert "/home" not in (tmp_path / UNIT).read_text().replace("ProtectHome", "")


def test_the_config_serves_the_lan_and_keeps_its_state_in_var_lib(tmp_path: Path) -> None:
    install(tmp_path)
    config = load_config_file(str(tmp_path / CONFIG), stage_schemas=stage_schemas(),
                              stage_phases=stage_phases())
    assert config.http.host == "0.0.0.0" and not config.http.allow_anonymous
    assert config.printer.port == "/dev/ttyACM0"
    assert config.storage.folder == "/var/lib/printpipe/files"
    assert config.storage.state == "/var/lib/printpipe/state"


def test_the_printers_folder_is_made_for_the_service_to_read_and_printers_add_fills_it(
        tmp_path: Path) -> None:
    result = install(tmp_path)
    folder = tmp_path / DROPINS
    assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o2750
    assert "(--root: not run) chgrp printpipe /etc/printpipe/printers.d" in result.stdout
    help_text = subprocess.run(["bash", INSTALL, "--help"], capture_output=True, text=True,
                               timeout=30, check=True).stdout
    assert "printpipe printers add NAME --port /dev/serial/by-id/" in help_text
    by_id = "/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0"
    assert run_add(str(tmp_path / CONFIG), "ender", by_id, None, 5001) == 0
    assert stat.S_IMODE((folder / "ender.yaml").stat().st_mode) == 0o640
    config = load_service_config_file(str(tmp_path / CONFIG), stage_schemas=stage_schemas(),
                                      stage_phases=stage_phases())
    assert [(n, c.printer.port, c.http_port) for n, c in config.printers.items()] == [
        ("default", "/dev/ttyACM0", None), ("ender", by_id, 5001)]
    assert config.printers["ender"].storage.state == "/var/lib/printpipe/state/ender"
    install(tmp_path)                                # an upgrade keeps the printers
    install(tmp_path, "--uninstall")                 # and so does an uninstall
    assert (folder / "ender.yaml").exists()


def avahi_services(path: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """type -> (port, TXT records)."""
    out = {}
    for service in ET.parse(path).getroot().iter("service"):
        txt = dict(t.text.split("=", 1) for t in service.iter("txt-record") if t.text)
        out[service.findtext("type") or ""] = (service.findtext("port") or "", txt)
    return out


def test_avahi_announces_octoprint_and_http_as_octoprint_does(tmp_path: Path) -> None:
    install(tmp_path)
    services = avahi_services(tmp_path / AVAHI)
    assert services["_octoprint._tcp"] == (
        "5000", {"path": "/", "api": "0.1", "version": OCTOPRINT_API_LEVEL})
    assert services["_http._tcp"] == ("5000", {"path": "/"})


def test_each_printer_with_its_own_port_is_announced_by_its_name(tmp_path: Path) -> None:
    """From the config's `printers:` and the drop-ins (as the service reads them): one
    `_octoprint._tcp` service per printer with its own http.port, named after it; the main
    port's stays; a printer removed loses its announcement at the next run."""
    install(tmp_path)
    (tmp_path / CONFIG).write_text(
        "http:\n  host: 0.0.0.0\n  port: 5000\n"
        "storage:\n  folder: /var/lib/printpipe/files\n  state: /var/lib/printpipe/state\n"
        "printers:\n"
        "  a:\n    port: /dev/serial/by-id/usb-a\n    http:\n      port: 5002\n"
        "  b:\n    port: /dev/serial/by-id/usb-b\n    baudrate: 250000\n")
    assert run_add(str(tmp_path / CONFIG), "ender", "/dev/serial/by-id/usb-e", None, 5001) == 0
    assert run_add(str(tmp_path / CONFIG), "mk4", "/dev/serial/by-id/usb-m", None, None) == 0
    result = install(tmp_path)
    folder = (tmp_path / AVAHI).parent
    config = load_service_config_file(str(tmp_path / CONFIG), stage_schemas=stage_schemas(),
                                      stage_phases=stage_phases())
    own = {n: c.http_port for n, c in config.printers.items() if c.http_port}
    assert own == {"a": 5002, "ender": 5001}
    announced = {}
    for path in sorted(folder.iterdir()):
        name = ET.parse(path).getroot().findtext("name")
        services = avahi_services(path)
        assert services["_octoprint._tcp"][1]["path"] == "/"
        announced[path.name] = (name, services["_octoprint._tcp"][0])
    assert announced == {
        "printpipe.service": ("printpipe on %h", "5000"),
        "printpipe-a.service": ("printpipe a on %h", "5002"),
        "printpipe-ender.service": ("printpipe ender on %h", "5001")}
    assert "announced printer ender on port 5001" in result.stdout
    (tmp_path / DROPINS / "ender.yaml").unlink()
    install(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["printpipe-a.service",
                                                        "printpipe.service"]
    install(tmp_path, "--uninstall")
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_second_run_keeps_the_config_and_follows_its_port(tmp_path: Path) -> None:
    install(tmp_path)
    first = staged(tmp_path)
    config = tmp_path / CONFIG
    edited = config.read_text().replace("port: 5000", "port: 8080") + "# mine\n"
    config.write_text(edited)
    result = install(tmp_path)
    assert "kept the existing /etc/printpipe/printer.yaml" in result.stdout
    assert config.read_text() == edited
    assert avahi_services(tmp_path / AVAHI)["_octoprint._tcp"][0] == "8080"
    again = staged(tmp_path)
    assert set(again) == set(first)
    assert {k for k in first if first[k] != again[k]} == {CONFIG, AVAHI}
    install(tmp_path)
    assert staged(tmp_path) == again                # idempotent


def test_uninstall_removes_what_it_added_and_keeps_config_and_state(tmp_path: Path) -> None:
    install(tmp_path)
    state = tmp_path / "var/lib/printpipe/state"
    state.mkdir(parents=True)
    (state / "keys.json").write_text("{}")
    result = install(tmp_path, "--uninstall")
    assert "kept the config" in result.stdout
    assert set(staged(tmp_path)) == {CONFIG, "var/lib/printpipe/state/keys.json"}


def test_install_refuses_an_unknown_option() -> None:
    result = subprocess.run(["bash", INSTALL, "--rot", "/tmp/x"], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 2
    assert "unknown option --rot" in result.stderr


ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit_and_rates_it_at_most_3_5(tmp_path: Path) -> None:
    install(tmp_path)
    # verify checks that ExecStart exists: point it at a stand-in for the venv's command
    fake = tmp_path / "opt/printpipe/venv/bin/printpipe"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    unit = tmp_path / "check" / "printpipe.service"
    unit.parent.mkdir()
    text = (tmp_path / UNIT).read_text()
    unit.write_text(text.replace("/opt/printpipe", str(tmp_path / "opt/printpipe")))
    assert ANALYZE is not None
    verify = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run([ANALYZE, "security", "--offline=true", str(tmp_path / UNIT)],
                              capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for printpipe\.service: ([\d.]+)",
                      security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= 3.5


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the installer as another user: needs root")
def test_without_root_and_without_root_dir_it_refuses_in_one_line() -> None:
    try:
        result = subprocess.run(["bash", INSTALL], capture_output=True, text=True, timeout=30,
                                check=False, user=65534, group=65534)
    except PermissionError:
        pytest.skip("nobody may not run bash here")
    if "Permission denied" in result.stderr:
        pytest.skip("nobody may not read the installer here")
    assert result.returncode == 1
    assert result.stderr == ("install.sh: run it as root (sudo tools/install.sh), or stage the "
                             "files with --root DIR\n").replace("tools/install.sh", INSTALL)
