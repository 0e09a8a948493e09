"""A real MQTT broker for tests: mosquitto (the Debian package; `.ci/run` installs it) on a free
loopback port with a generated config, optionally with a TLS listener whose CA is made here
with the openssl CLI; and a subscriber that is printpipe's own trio-driven paho client.

A machine without mosquitto skips these tests with a reason saying how to install it (so the
README's test command passes on a fresh machine), unless PRINTPIPE_REQUIRE_MQTT is set: then
they fail. `.ci/run` installs the package and sets it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from pipeline.app.mqtt.client import Received, TrioMqtt
from pipeline.config.mqtt import MqttSpec

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(folder) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1/localhost, signed by it (EC keys: fast)."""
    paths = {name: str(folder / name) for name in
             ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "san.cnf")}
    (folder / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        ["req", "-x509", *ec, "-keyout", paths["ca.key"], "-out", paths["ca.crt"], "-days", "2",
         "-subj", "/CN=printpipe test CA"],
        ["req", *ec, "-keyout", paths["server.key"], "-out", paths["server.csr"],
         "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", paths["server.csr"], "-CA", paths["ca.crt"], "-CAkey",
         paths["ca.key"], "-CAcreateserial", "-out", paths["server.crt"], "-days", "2",
         "-extfile", paths["san.cnf"]],
    ):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    return paths


@attrs.define(eq=False)
class Mosquitto:
    folder: str
    port: int
    tls_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> str:
        return os.path.join(self.folder, "mosquitto.conf")

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        for port in (self.port, self.tls_port):
            while port is not None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("mosquitto did not start: " + self.log()) from None
                    time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def log(self) -> str:
        try:
            with open(os.path.join(self.folder, "log"), errors="replace") as f:
                return f.read()
        except OSError as exc:
            return f"(no log: {exc})"


def start_mosquitto(tmp_path, *, tls: bool = False) -> Mosquitto:
    if not os.path.exists(MOSQUITTO):
        reason = ("mosquitto is not installed: `apt-get install mosquitto` (.ci/run installs "
                  "it); the MQTT tests need a real broker")
        if os.environ.get("PRINTPIPE_REQUIRE_MQTT"):
            pytest.fail(reason)
        pytest.skip(reason)
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    broker = Mosquitto(str(folder), free_port())
    conf = [f"listener {broker.port} 127.0.0.1", "allow_anonymous true", "persistence false",
            f"log_dest file {folder}/log"]
    if os.geteuid() == 0:
        conf.append("user root")  # else it drops to user mosquitto, who cannot read tmp_path
    if tls:
        ca = make_ca(folder)
        broker.tls_port = free_port()
        conf += [f"listener {broker.tls_port} 127.0.0.1", f"cafile {ca['ca.crt']}",
                 f"certfile {ca['server.crt']}", f"keyfile {ca['server.key']}"]
    (folder / "mosquitto.conf").write_text("\n".join(conf) + "\n")
    broker.start()
    return broker


@attrs.define(eq=False)
class Watcher:
    """Everything a subscription to `pattern` received, in order."""

    mqtt: TrioMqtt
    seen: list[Received] = attrs.Factory(list)

    def _drain(self) -> None:
        while True:
            try:
                self.seen.append(self.mqtt.inbox.receive_nowait())
            except trio.WouldBlock:
                return

    def on(self, topic: str) -> list[Received]:
        self._drain()
        return [m for m in self.seen if m.topic == topic]

    def topics(self) -> list[str]:
        self._drain()
        return [m.topic for m in self.seen]

    def json(self, topic: str) -> list[dict]:
        return [json.loads(m.payload) for m in self.on(topic)]

    async def wait_for(self, topic: str, check=lambda m: True, timeout: float = 20.0
                       ) -> Received:
        with trio.fail_after(timeout):
            while True:
                for m in self.on(topic):
                    if check(m):
                        return m
                await trio.sleep(0.02)

    def publish(self, topic: str, payload: bytes) -> None:
        from pipeline.app.mqtt.topics import Message
        assert self.mqtt.publish_nowait(Message(topic, payload, qos=1))


@asynccontextmanager
async def watching(port: int, pattern: str = "#") -> AsyncIterator[Watcher]:
    """A subscriber on the broker at 127.0.0.1:`port`, connected and subscribed on entry."""
    holder: list[TrioMqtt] = []
    subscribed = trio.Event()

    def on_connect() -> None:
        holder[0].subscribe([pattern])
        subscribed.set()

    mqtt = TrioMqtt(MqttSpec(host="127.0.0.1", port=port, keepalive=30),
                    f"test-{free_port()}", None, limit=1000, on_connect=on_connect,
                    inbox=100_000)
    holder.append(mqtt)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mqtt.serve)
        with trio.fail_after(10):
            await subscribed.wait()
        await trio.sleep(0.2)  # the SUBACK (retained messages arrive after it)
        try:
            yield Watcher(mqtt)
        finally:
            nursery.cancel_scope.cancel()
