"""The virtual printer served on a real pty, driven by trio-serial as a host would (real clock)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio_serial

from pipeline.config.reader import FaultSpec
from pipeline.config.schema import VirtualSpec
from pipeline.errors import HostError
from pipeline.link.virtual import VirtualPrinterHandle, run_standalone, serve_virtual_printer
from pipeline.virtual.spec import FirmwareSpec

TIMEOUT = 5.0
UNPLUGGED_AFTER_2 = FirmwareSpec(virtual=VirtualSpec(faults=FaultSpec(disconnect_after=2)))


class Host:
    """A minimal line-oriented host over trio-serial."""

    def __init__(self, port: str) -> None:
        self.ser = trio_serial.SerialStream(port, baudrate=115200)
        self.buf = b""

    async def __aenter__(self) -> Host:
        await self.ser.aopen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ser.aclose()

    async def send(self, data: bytes) -> None:
        await self.ser.send_all(data)

    async def line(self) -> str:
        while b"\n" not in self.buf:
            data = await self.ser.receive_some()
            if not data:
                raise EOFError
            self.buf += data
        raw, _, self.buf = self.buf.partition(b"\n")
        return raw.decode()

    async def until(self, done: Callable[[str], bool]) -> list[str]:
        """Lines up to and including the first one `done` accepts."""
        lines = []
        with trio.fail_after(TIMEOUT):
            while True:
                lines.append(await self.line())
                if done(lines[-1]):
                    return lines


def is_ok(line: str) -> bool:
    return line == "ok" or line.startswith("ok ")


async def start(nursery: trio.Nursery, spec: FirmwareSpec = FirmwareSpec(),
                **kw: object) -> VirtualPrinterHandle:
    return await nursery.start(lambda task_status: serve_virtual_printer(
        spec, task_status=task_status, **kw))  # type: ignore[arg-type]


async def test_handshake_and_m115(nursery: trio.Nursery) -> None:
    handle = await start(nursery)
    assert handle.port == handle.device and handle.port.startswith("/dev/")
    async with Host(handle.port) as host:
        await host.send(b"N0 M110 N0*125\n")
        lines = await host.until(is_ok)
        assert lines[0] == "start" and lines[-1] == "ok"
        await host.send(b"M115\n")
        lines = await host.until(is_ok)
        assert lines[0].startswith("FIRMWARE_NAME:printpipe Virtual Marlin 2.1 ")
        assert "Cap:EMERGENCY_PARSER:1" in lines
    assert handle.firmware.accepted == ["M110 N0", "M115"]


async def test_symlink_is_made_replaced_and_removed(nursery: trio.Nursery,
                                                    tmp_path: Path) -> None:
    link = tmp_path / "printer"
    link.symlink_to("/nonexistent/old-printer")
    handle = await start(nursery, link=str(link))
    assert handle.port == str(link)
    assert os.readlink(link) == handle.device
    async with Host(handle.port) as host:
        await host.send(b"M105\n")
        assert (await host.until(is_ok))[-1].startswith("ok T:21.30 /0.00 B:")
    await handle.disconnect()
    assert handle.unplugged
    assert not os.path.lexists(link)


async def test_link_refuses_to_replace_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "printer"
    path.write_text("keep me")
    with pytest.raises(HostError, match="not a symlink"):
        await serve_virtual_printer(FirmwareSpec(), link=str(path))
    assert path.read_text() == "keep me"


async def test_a_link_in_a_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HostError, match=r"cannot make the link .*/no/such: No such file"):
        await serve_virtual_printer(FirmwareSpec(), link=str(tmp_path / "no" / "such"))


async def test_host_can_close_and_reopen(nursery: trio.Nursery) -> None:
    handle = await start(nursery)
    async with Host(handle.port) as host:
        await host.send(b"G1 X5\n")
        assert (await host.until(is_ok))[-1] == "ok"
    async with Host(handle.port) as host:
        await host.send(b"M114\n")
        lines = await host.until(is_ok)
        assert lines[-2].startswith("X:5.00 Y:0.00")
    assert handle.firmware.accepted == ["G1 X5", "M114"]


async def test_timed_output_arrives_on_the_real_clock(nursery: trio.Nursery) -> None:
    handle = await start(nursery)
    async with Host(handle.port) as host:
        await host.until(lambda line: line.startswith("echo:"))  # boot lines
        t0 = trio.current_time()
        await host.send(b"G4 P300\n")
        assert await host.until(is_ok) == ["ok"]
        assert trio.current_time() - t0 >= 0.3
        await host.send(b"M155 S0.1\n")
        await host.until(is_ok)
        lines = await host.until(lambda line: line.startswith(" T:"))
        assert lines[-1] == " T:21.30 /0.00 B:21.30 /0.00 @:0 B@:0"
    assert handle.firmware.next_deadline() is not None


async def test_stays_responsive_when_nobody_reads(nursery: trio.Nursery) -> None:
    handle = await start(nursery)
    async with Host(handle.port) as host:
        await host.send(b"M155 S0.0005\n")   # ~80 KB/s of autoreports into a closed port
        await host.until(is_ok)
    await trio.sleep(1.5)
    async with Host(handle.port) as host:
        await host.send(b"M155 S0\nM117 still here\n")
        lines = await host.until(lambda line: line == "echo:still here")
        assert lines[-1] == "echo:still here"
    assert handle.firmware.accepted[-2:] == ["M155 S0", "M117 still here"]


async def read_until_gone(host: Host) -> str:
    """Read until the port dies; how it died: "eof" or "error"."""
    with trio.fail_after(TIMEOUT):
        try:
            while True:
                await host.line()
        except EOFError:
            return "eof"
        except (OSError, trio.BrokenResourceError):
            return "error"


async def wait_gone(path: str) -> bool:
    with trio.move_on_after(TIMEOUT):
        while os.path.exists(path):
            await trio.sleep(0.02)
    return not os.path.exists(path)


async def test_disconnect_fault_closes_the_port(nursery: trio.Nursery) -> None:
    handle = await start(nursery, UNPLUGGED_AFTER_2)
    async with Host(handle.port) as host:
        await host.send(b"N0 M110 N0*125\n")
        await host.until(is_ok)
        await host.send(b"M105\n")
        assert await read_until_gone(host) in ("eof", "error")
    assert handle.firmware.disconnect_requested
    assert handle.unplugged
    assert await wait_gone(handle.device)


async def test_handle_disconnect_unplugs_a_connected_host(nursery: trio.Nursery) -> None:
    handle = await start(nursery)
    async with Host(handle.port) as host:
        await host.send(b"M105\n")
        await host.until(is_ok)
        async with trio.open_nursery() as inner:
            inner.start_soon(handle.disconnect)
            assert await read_until_gone(host) in ("eof", "error")
    assert handle.unplugged
    assert await wait_gone(handle.device)


async def wait_link(link: Path, present: bool = True) -> None:
    with trio.fail_after(TIMEOUT):
        while os.path.islink(link) != present:
            await trio.sleep(0.01)


async def test_standalone_replugs_after_an_unplug(nursery: trio.Nursery, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "printer"
    nursery.start_soon(run_standalone, UNPLUGGED_AFTER_2, str(link))
    await wait_link(link)
    async with Host(str(link)) as host:
        await host.send(b"M105\nM105\n")
        assert await read_until_gone(host) in ("eof", "error")
    await wait_link(link, present=False)   # unplugged: the link goes away...
    await wait_link(link)                  # ...and a fresh printer appears a second later
    async with Host(str(link)) as host:
        await host.send(b"M115\n")
        lines = await host.until(lambda line: line.startswith("FIRMWARE_NAME:"))
        assert lines[0] == "start"
    out = capsys.readouterr().out
    assert out.count(f", link {link}") == 2 and "unplugged" in out
