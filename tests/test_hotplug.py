"""`printpipe serve` keeps the printer connected (pipeline/app/autoconnect.py): a configured
port that appears after the start is connected within seconds, an unplugged and re-plugged
printer is connected again, a disconnect through the API is respected, and GET
/api/connection says what the service waits for. The printer is the virtual one on a pty
behind a symlink, made and removed as a USB device node would be."""

from __future__ import annotations

import io
import time
from functools import partial

import httpx
import trio
from conftest import load_yaml
from http_fixtures import KEY

from pipeline.app.printers import autoconnect
from pipeline.app.serve import serve
from pipeline.link.virtual import serve_virtual_printer
from pipeline.virtual.spec import FirmwareSpec


def config(tmp_path, port: str):
    text = (f"printer:\n  port: {port}\nhttp:\n  host: 127.0.0.1\n  port: 0\n"
            f"  api_key: {KEY}\nstorage:\n  folder: {tmp_path}/files\n"
            f"  state: {tmp_path}/state\n")
    return load_yaml(text, str(tmp_path / "printer.yaml"))


async def wait_for(predicate, timeout: float) -> float:
    """Seconds until predicate() held; fails after `timeout`."""
    start = time.monotonic()
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
    return time.monotonic() - start


def drain(subscription) -> list[str]:
    names = []
    while True:
        try:
            names.append(subscription.receive_nowait().name)
        except trio.WouldBlock:
            return names


async def connection_state(client: httpx.AsyncClient) -> str:
    response = await client.get("/api/connection")
    assert response.status_code == 200
    return response.json()["current"]["state"]


async def state_becomes(client: httpx.AsyncClient, check, timeout: float = 10.0) -> str:
    """The connection state once check(state) held; fails after `timeout`."""
    with trio.fail_after(timeout):
        while not check(state := await connection_state(client)):
            await trio.sleep(0.05)
    return state


async def test_a_port_that_appears_later_is_connected_and_again_after_a_replug(tmp_path,
                                                                               monkeypatch):
    monkeypatch.setattr(autoconnect, "PORT_POLL", 0.1)   # looks at the port 5 times as often
    link = str(tmp_path / "ttyACM0")
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(partial(serve, config(tmp_path, link), out=io.StringIO(),
                                              handle_signals=False))
        control = serving.api.control
        connected = control.bus.subscribe("test", events=["Connected", "Disconnected"])
        async with httpx.AsyncClient(base_url=serving.url,
                                     headers={"X-Api-Key": KEY}) as client:
            waiting = f"Closed: waiting for {link} (switch the printer on, or plug it in)"
            await state_becomes(client, lambda state: state == waiting)
            await trio.sleep(0.5)   # the printer is switched on a while after the start
            assert await connection_state(client) == waiting
            printer = await nursery.start(partial(serve_virtual_printer, FirmwareSpec(),
                                                  link=link))
            assert await wait_for(lambda: control.operational, 5.0) < 5.0
            assert await connection_state(client) == "Operational"

            await printer.disconnect()          # unplugged: the device node goes away
            await wait_for(lambda: not control.connected, 5.0)
            await state_becomes(client, lambda state: "waiting for" in state, 5.0)
            await nursery.start(partial(serve_virtual_printer, FirmwareSpec(), link=link))
            assert await wait_for(lambda: control.operational, 5.0) < 5.0

            # a disconnect asked for through the API stays a disconnect
            response = await client.post("/api/connection", json={"command": "disconnect"})
            assert response.status_code == 204
            await trio.sleep(0.5)   # 5 looks at the port, which is there
            assert not control.connected
            assert await connection_state(client) == "Closed"
            assert drain(connected) == ["Connected", "Disconnected"] * 2
        serving.stop()
        nursery.cancel_scope.cancel()
