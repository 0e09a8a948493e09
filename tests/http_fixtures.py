"""A real `printpipe serve` for tests: the whole service on 127.0.0.1 port 0 with the virtual
printer on a pty, an httpx client carrying the key, and a recorder of bus events."""

from __future__ import annotations

import io
import textwrap
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import attrs
import httpx
import trio
from conftest import load_service_yaml, load_yaml

from pipeline.app.serve import Serving, serve
from pipeline.fanout.bus import BusEvent, Subscription
from pipeline.virtual.pair import expected_commands

KEY = "test-key-0123456789abcdef"


@attrs.define(eq=False)
class Server:
    serving: Serving
    client: httpx.AsyncClient
    key: str
    config_path: str
    out: io.StringIO

    @property
    def url(self) -> str:
        return self.serving.url

    @property
    def api(self):
        return self.serving.api

    @property
    def service(self):
        """The printer's control (the one printer of this service)."""
        return self.serving.api.control

    def events(self, names: list[str] | None = None, size: int = 10_000) -> Recorder:
        return Recorder(self.service.bus.subscribe("test", events=names, size=size))

    async def wait_connected(self, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            while not self.service.operational:
                await trio.sleep(0.02)


@attrs.define(eq=False)
class Recorder:
    sub: Subscription
    seen: list[BusEvent] = attrs.Factory(list)

    def _drain(self) -> None:
        while True:
            try:
                self.seen.append(self.sub.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    def names(self) -> list[str]:
        self._drain()
        return [e.name for e in self.seen]

    def of(self, name: str) -> list[BusEvent]:
        self._drain()
        return [e for e in self.seen if e.name == name]

    async def wait_for(self, name: str, timeout: float = 20.0, count: int = 1) -> BusEvent:
        with trio.fail_after(timeout):
            while len(self.of(name)) < count:
                await trio.sleep(0.02)
        return self.of(name)[count - 1]


def config_text(tmp_path, extra_yaml: str = "", *, key: str | None = KEY,
                http_yaml: str = "", port: str = "virtual") -> str:
    """`http_yaml`: more keys of the http section, one per line (e.g. allow_anonymous: true);
    `port`: the printer's (the built-in virtual printer by default)."""
    http = "http:\n  host: 127.0.0.1\n  port: 0\n"
    if key:
        http += f"  api_key: {key}\n"
    http += "".join(f"  {line}\n" for line in textwrap.dedent(http_yaml).splitlines())
    return (f"printer:\n  port: {port}\n{http}storage:\n  folder: {tmp_path}/files\n"
            f"  state: {tmp_path}/state\n" + textwrap.dedent(extra_yaml))


@asynccontextmanager
async def serve_for_test(tmp_path, extra_yaml: str = "", *, key: str | None = KEY,
                         http_yaml: str = "", connect: bool = True,
                         port: str = "virtual") -> AsyncIterator[Server]:
    path = tmp_path / "printpipe.yaml"
    path.write_text(config_text(tmp_path, extra_yaml, key=key, http_yaml=http_yaml, port=port))
    async with _serving(path, load_yaml, connect) as (serving, out):
        headers = {"X-Api-Key": serving.key} if serving.key else {}
        async with httpx.AsyncClient(base_url=serving.url, headers=headers,
                                     timeout=20) as client:
            server = Server(serving, client, serving.key or "", str(path), out)
            if connect:
                await server.wait_connected()
            yield server


@asynccontextmanager
async def _serving(path, load, connect: bool) -> AsyncIterator[tuple[Serving, io.StringIO]]:
    """`printpipe serve` of the config file at `path`, read (and re-read) with `load`."""
    config = load(path.read_text(), str(path))
    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(lambda task_status: serve(
            config, loader=lambda: load(path.read_text(), str(path)), out=out,
            connect=connect, handle_signals=False, task_status=task_status))
        try:
            yield serving, out
        finally:
            serving.stop()


#: The two ways a printer of several is reached: its own port, or its prefix on the main one.
WAYS = ("port", "prefix")


def printers_text(tmp_path, names, *, own_ports=(), extra_yaml: str = "",
                  entry_yaml: str | Mapping[str, str] = "",
                  entries: Mapping[str, str] | None = None) -> str:
    """A config of virtual printers `names`; those in `own_ports` get their own HTTP port
    (0: a free one); `entry_yaml` is added under every printer's name (a mapping: its own
    under each name it has), `entries[name]` under that one's."""
    text = (f"http:\n  host: 127.0.0.1\n  port: 0\n  api_key: {KEY}\n"
            f"storage:\n  folder: {tmp_path}/files\n  state: {tmp_path}/state\n"
            + textwrap.dedent(extra_yaml) + "printers:\n")
    for name in names:
        text += f"  {name}:\n    port: virtual\n"
        own = ((entry_yaml if isinstance(entry_yaml, str) else entry_yaml.get(name, ""))
               + (entries or {}).get(name, ""))
        text += "".join(f"    {line}\n" for line in textwrap.dedent(own).splitlines())
        if name in own_ports:
            text += "    http:\n      port: 0\n"
    return text


@attrs.define(eq=False)
class Farm:
    """A service of several virtual printers: each one's control, URLs and clients."""

    serving: Serving
    key: str
    config_path: str
    out: io.StringIO

    @property
    def service(self):
        return self.serving.service

    def control(self, name: str):
        return self.serving.service.printers[name]

    def url(self, name: str, way: str = "prefix") -> str:
        """Printer `name`'s OctoPrint URL: its own port's, or the main port's prefix."""
        if way == "port":
            return self.serving.ports[name]
        return f"{self.serving.url}/printers/{name}"

    def client(self, name: str, way: str = "prefix") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url(name, way), headers={"X-Api-Key": self.key},
                                 timeout=20)

    def accepted(self, name: str) -> list[str]:
        """Every command printer `name`'s virtual firmware accepted in this session."""
        return list(self.control(name).session.virtual.firmware.accepted)

    async def wait_connected(self, names=None, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            for name in names or self.service.config.printers:
                while name not in self.service.printers or not self.control(name).operational:
                    await trio.sleep(0.02)


@asynccontextmanager
async def serve_printers_for_test(tmp_path, names=("a", "b", "c"), *, own_ports=(),
                                  extra_yaml: str = "",
                                  entry_yaml: str | Mapping[str, str] = "",
                                  entries: Mapping[str, str] | None = None,
                                  connect: bool = True) -> AsyncIterator[Farm]:
    """`printpipe serve` of several virtual printers (printers_text)."""
    path = tmp_path / "printpipe.yaml"
    path.write_text(printers_text(tmp_path, names, own_ports=own_ports, extra_yaml=extra_yaml,
                                  entry_yaml=entry_yaml, entries=entries))
    async with _serving(path, load_service_yaml, connect) as (serving, out):
        farm = Farm(serving, serving.key or "", str(path), out)
        if connect:
            await farm.wait_connected()
        yield farm


async def reported_temperatures(client: httpx.AsyncClient, names=("tool0", "bed"),
                                timeout: float = 10.0) -> dict:
    """`/api/printer`'s temperatures once every heater in `names` was reported (a heater is
    left out until the printer's first report, as OctoPrint does)."""
    with trio.fail_after(timeout):
        while True:
            temps = (await client.get("/api/printer")).json()["temperature"]
            if set(names) <= set(temps):
                return temps
            await trio.sleep(0.05)


def lines_received(srv, text: str) -> list[str]:
    """The file lines of `text` the printer accepted in the last print (each print starts
    with M110 N0)."""
    accepted = list(srv.service.session.virtual.firmware.accepted)
    start = len(accepted) - accepted[::-1].index("M110 N0")
    wanted = set(expected_commands(text))
    return [line for line in accepted[start:] if line in wanted]


async def read_until_reset(sock: trio.socket.SocketType) -> None:
    """Read a raw client socket to its end: ConnectionResetError when the server aborted it."""
    while await sock.recv(65536):
        pass
