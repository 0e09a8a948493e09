"""Every way a command can fail ends in one clear line on stderr and an exit code (2: the
config, 1: the rest, 130: interrupted), never a traceback; Ctrl-C ends any command within 5 s
even with a printer that stopped answering, and a second Ctrl-C quits at once."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from sample_prints import write_sample

CLI = [sys.executable, "-m", "pipeline.app.cli"]


def write(tmp_path: Path, text: str, name: str = "printer.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def serve_config(tmp_path: Path, *, host: str = "127.0.0.1", port: int = 0,
                 state: str | None = None, extra: str = "") -> str:
    return write(tmp_path, f"printer:\n  port: virtual\nhttp:\n  host: {host}\n  port: {port}\n"
                           f"storage:\n  folder: {tmp_path}/files\n"
                           f"  state: {state or str(tmp_path / 'state')}\n{extra}")


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_busy_port_is_one_line_naming_the_next_step(tmp_path):
    with socket.socket() as holder:     # OctoPrint still on the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("serve", "-c", serve_config(tmp_path, port=port))
    assert result.returncode == 1
    line = one_line(result)
    assert f"port {port} on 127.0.0.1 is in use by another program" in line
    assert "sudo systemctl stop octoprint" in line
    assert "API key" not in result.stdout   # checked before anything else happened


@pytest.mark.parametrize(("host", "code", "says"), [
    ("no-such-host.invalid", 2, "config error: "),
    ("192.0.2.1", 1, "is not an address of this machine"),   # TEST-NET-1: nobody's
], ids=["unknown-name", "not-this-machine"])
def test_an_unusable_host_is_one_line(tmp_path, host, code, says):
    result = run_cli("serve", "-c", serve_config(tmp_path, host=host))
    assert result.returncode == code
    line = one_line(result)
    assert says in line and host in line and "0.0.0.0" in line


def test_an_unwritable_state_folder_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("serve", "-c", serve_config(tmp_path, state=f"{blocker}/state"))
    assert result.returncode == 1
    line = one_line(result)
    assert f"cannot write in {blocker}/state (storage.state in " in line
    assert "must be able to write there" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to another user: needs root")
def test_a_state_folder_of_another_user_is_one_line(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)             # root's; the command runs as nobody
    os.chmod(tmp_path, 0o755)
    config = serve_config(tmp_path, state=str(state))
    os.chmod(config, 0o644)
    try:
        result = subprocess.run([*CLI, "serve", "-c", config], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, check=False, user=65534, group=65534,
                                env={**os.environ, "HOME": str(tmp_path)})
    except PermissionError:
        pytest.skip("nobody may not run this interpreter here")
    if "No module named" in result.stderr or "Permission denied: '" in result.stderr:
        pytest.skip("nobody may not read the source tree here")
    assert result.returncode == 1
    line = one_line(result)
    assert "Permission denied" in line and "(nobody) must be able to write there" in line


def test_a_bad_config_exits_2_in_one_line(tmp_path):
    result = run_cli("serve", "-c", write(tmp_path, "http:\n  port: seventy\n"))
    assert result.returncode == 2
    assert "config error: " in one_line(result) and ":2" in result.stderr


def test_a_bad_link_is_one_line(tmp_path):
    result = run_cli("virtual", "--link", str(tmp_path / "no" / "such" / "link"))
    assert result.returncode == 1
    assert "cannot make the link" in one_line(result)


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_ctrl_c_stops_the_virtual_printer_cleanly(tmp_path):
    link = tmp_path / "v"
    with subprocess.Popen([*CLI, "virtual", "--link", str(link)], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(link.exists)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert err == "" and "virtual printer stopped" in out
    assert not link.exists()


def silent_printer(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    """A virtual printer in its own process (stop it with SIGSTOP and it never answers),
    recording what it accepts."""
    link, record = tmp_path / "printer", tmp_path / "accepted.txt"
    proc = subprocess.Popen([*CLI, "virtual", "--link", str(link), "--record", str(record)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(link.exists)
    return proc, link, record


def interrupt(proc: subprocess.Popen[str]) -> float:
    """Ctrl-C; seconds until the command ended."""
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    return time.monotonic() - start


#: The bound on a silent printer while stopping (serial.timeouts.silence, 3 s by default),
#: shortened so these tests do not wait 3 s each.
SILENCE = "serial:\n  timeouts:\n    silence: 1\n"


def test_ctrl_c_of_a_print_on_a_printer_that_stopped_answering_ends_within_5_s(tmp_path):
    printer, link, record = silent_printer(tmp_path)
    path, _ = write_sample(tmp_path, 20000)
    try:
        config = write(tmp_path, f"printer:\n  port: {link}\n{SILENCE}")
        with subprocess.Popen([*CLI, "print", "-c", config, path], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            wait_for(lambda: record.exists() and record.stat().st_size > 2000)
            printer.send_signal(signal.SIGSTOP)     # the printer stops answering mid-print
            time.sleep(0.5)
            took = interrupt(proc)
            err = proc.stderr.read() if proc.stderr else ""
        assert took < 5.0
        assert proc.returncode == 130
        assert "Traceback" not in err and "sent nothing for 1 s while cancelling" in err
    finally:
        printer.send_signal(signal.SIGCONT)
        printer.kill()
        printer.wait()


def opened(pid: int, link: Path) -> bool:
    """Whether process `pid` has the port behind `link` open."""
    port = os.path.realpath(link)
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fd) == port for fd in fds.iterdir())
    except FileNotFoundError:  # ended, or an fd closed while reading
        return False


def test_ctrl_c_while_connecting_to_a_silent_printer_ends_within_5_s(tmp_path):
    printer, link, _ = silent_printer(tmp_path)
    printer.send_signal(signal.SIGSTOP)
    try:
        config = write(tmp_path, f"printer:\n  port: {link}\n")
        with subprocess.Popen([*CLI, "send", "-c", config, "M115"], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            wait_for(lambda: opened(proc.pid, link))  # waiting for the hello's answer
            time.sleep(0.3)                            # (up to 16 s)
            took = interrupt(proc)
            err = proc.stderr.read() if proc.stderr else ""
        assert took < 5.0
        assert proc.returncode == 130 and "Traceback" not in err
    finally:
        printer.send_signal(signal.SIGCONT)
        printer.kill()
        printer.wait()


def test_ctrl_c_of_serve_with_a_printer_that_stopped_answering_ends_within_5_s(tmp_path):
    printer, link, _ = silent_printer(tmp_path)
    # beforePrinterDisconnected queues a command the printer will never acknowledge
    config = write(tmp_path, f"printer:\n  port: {link}\nhttp:\n  port: 0\nstorage:\n"
                             f"  folder: {tmp_path}/files\n  state: {tmp_path}/state\n{SILENCE}"
                             "scripts:\n  gcode:\n    beforePrinterDisconnected: M117 bye\n")
    try:
        with subprocess.Popen([*CLI, "serve", "-c", config], cwd=ROOT, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
            assert proc.stderr is not None
            while "connected to" not in (line := proc.stderr.readline()).lower():
                assert line, "serve ended"
            time.sleep(0.5)
            printer.send_signal(signal.SIGSTOP)
            took = interrupt(proc)
            err = proc.stderr.read()
        assert took < 5.0
        assert proc.returncode == 0 and "Traceback" not in err
        assert "did not answer for 1 s: disconnecting without waiting" in err
    finally:
        printer.send_signal(signal.SIGCONT)
        printer.kill()
        printer.wait()


def test_a_second_ctrl_c_quits_serve_at_once(tmp_path):
    # a Shutdown subscription that takes 20 s holds the orderly stop
    extra = ("events:\n  shutdown_grace: 20\n  subscriptions:\n    - event: Shutdown\n"
             "      type: system\n      command: sleep 20\n")
    with subprocess.Popen([*CLI, "serve", "-c", serve_config(tmp_path, extra=extra)], cwd=ROOT,
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while "serving the API" not in proc.stdout.readline():
            pass
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None                  # still stopping in order
        took = interrupt(proc)
        err = proc.stderr.read() if proc.stderr else ""
    assert took < 2.0
    assert proc.returncode == 130
    assert "interrupted again: quitting at once" in err and "Traceback" not in err


def test_send_of_a_blocked_command_exits_1_with_the_reason():
    result = run_cli("send", "M0")
    assert result.returncode == 1
    assert "Not sending M0 to printer as it's configured as a blocked command" in result.stderr


def test_version_and_a_help_for_users():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("printpipe ") and "Python 3." in result.stdout
    result = run_cli("--help")
    assert result.returncode == 0
    assert "OctoPrint-compatible API" in result.stdout and "examples:" in result.stdout
    assert "argument parsing" not in result.stdout    # not the module's docstring


def test_a_missing_port_says_what_to_check(tmp_path):
    result = run_cli("send", "-c", write(tmp_path, "printer:\n  port: /dev/ttyACM99\n"), "M115")
    assert result.returncode == 1
    assert one_line(result) == ("printpipe: link /dev/ttyACM99: cannot open port: no such device: "
                                "is the printer plugged in and switched on? (ls "
                                "/dev/serial/by-id/ lists what is connected)")


@pytest.mark.parametrize(("error", "says"), [
    (PermissionError(errno.EACCES, "Permission denied"), "add the user to the dialout group"),
    (OSError(errno.EBUSY, "Device or resource busy"), "in use by another program"),
    (BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"), "locked by another"),
    (OSError(errno.EIO, "Input/output error"), "Input/output error"),
])
def test_port_problems_name_the_next_step(error, says):
    from pipeline.link.transport import _open_problem
    assert says in _open_problem(error)
