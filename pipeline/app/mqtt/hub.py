"""The service's one MQTT connection and the printers bridged over it (bridge.py: one bridge
per running printer, under its own base topic).

One connection (one client id, one last will) for every printer: the will and the service's
own `<mqtt.base_topic>mqtt` say whether printpipe is connected; each printer's `<base>mqtt`
says whether that printer runs (connected while it does, disconnected when it stops or its
tasks failed). With one printer both are the same topic, as before. Messages on a printer's
command topics go to that printer's bridge only.

A reload that changes the `mqtt:` section replaces the connection: the running one says
`disconnected` for every printer and closes before the new one connects (the same client id
would otherwise take over its session and fire its will). A printer whose base topic changed
says goodbye on the old one and is announced on the new one. Removing the section ends every
bridge; adding it starts one per running printer.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

import trio

from pipeline.app.mqtt.bridge import CLOSE_GRACE, Bridge, client_id_of, keep_bridging
from pipeline.app.mqtt.client import Received, TrioMqtt, resolved, tls_error
from pipeline.app.mqtt.topics import Message, availability
from pipeline.app.printers.control import MetricsSource, PrinterControl
from pipeline.config.mqtt import MqttSpec
from pipeline.config.reader import HostConfig

log = logging.getLogger("printpipe.mqtt")


class MqttHub:
    def __init__(self, nursery: trio.Nursery, config_path: str,
                 metrics: dict[str, dict[str, MetricsSource]]) -> None:
        """`nursery`: where the connection and the bridges run (supervised); `metrics`: each
        printer's /metrics sources, by name (the connection's samples go in each)."""
        self._nursery = nursery
        self._path = config_path
        self._metrics = metrics
        self.spec: MqttSpec | None = None
        self.mqtt: TrioMqtt | None = None
        self.client_id = ""
        self._stop: trio.Event | None = None     # asks the current connection to close
        self._ended: trio.Event | None = None    # the current connection's task ended
        self.controls: dict[str, PrinterControl] = {}
        self.bridges: dict[str, Bridge] = {}
        self._printer_topics: set[str] = set()  # where printers said whether they run
        #: `<base>mqtt` of each configured printer: a printer says there whether it runs (the
        #: service's own topic is left to it when they are one, as with a single printer),
        #: whether or not its bridge announced before the connection came up.
        self.printer_bases: frozenset[str] = frozenset()

    def service_spec(self) -> MqttSpec:
        assert self.spec is not None  # (bridges exist only while there is a connection)
        return self.spec

    @property
    def connected(self) -> bool:
        return self.mqtt is not None and self.mqtt.connected

    # ---- the connection -------------------------------------------------------------------
    def start(self, spec: MqttSpec | None) -> None:
        """Connect with `spec` from now on (None: no MQTT). Unchanged settings change nothing;
        a ConfigError (unusable TLS files) leaves the running connection as it was."""
        if spec == self.spec:
            return
        mqtt = self._client(spec) if spec is not None else None
        if self.mqtt is not None:  # goodbye from every printer, then it closes
            for bridge in self.bridges.values():
                if spec is None:
                    bridge.goodbye()
                else:
                    self.mqtt.publish_nowait(availability(bridge.spec, False))
            self._service_availability(False)
            assert self._stop is not None
            self._stop.set()
        previous = self._ended
        self.spec, self.mqtt = spec, mqtt
        if spec is None or mqtt is None:
            for name in self.controls:
                self._metrics.get(name, {}).pop("mqtt", None)
            for bridge in list(self.bridges.values()):
                bridge.sub.close()  # it drains and ends
            self.bridges.clear()
            self._stop = self._ended = None
            return
        self.client_id = client_id_of(spec)
        self._stop, self._ended = trio.Event(), trio.Event()
        self._nursery.start_soon(self._run, mqtt, previous, self._stop, self._ended)
        for control in self.controls.values():
            self._metrics.setdefault(control.name, {})["mqtt"] = self.samples
            running = self.bridges.get(control.name)
            if running is None:
                self._bridge(control)
            else:
                running.respec(spec, control.config.mqtt_base)

    def _client(self, spec: MqttSpec) -> TrioMqtt:
        resolved_spec = resolved(spec, self._path)
        try:
            mqtt = TrioMqtt(resolved_spec, client_id_of(spec), availability(spec, False),
                            limit=spec.queue, on_connect=self._on_connect,
                            on_overflow=self._overflow)
        except (OSError, ssl.SSLError) as exc:
            raise tls_error(resolved_spec, self._path, exc) from exc
        if self.mqtt is not None:  # the counters carry on
            mqtt.published, mqtt.dropped = self.mqtt.published, self.mqtt.dropped
            mqtt.reconnects = self.mqtt.reconnects + 1
        return mqtt

    async def _run(self, mqtt: TrioMqtt, previous: trio.Event | None, stop: trio.Event,
                   ended: trio.Event) -> None:
        try:
            if previous is not None:
                await previous.wait()
            if stop.is_set():
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(mqtt.serve)
                nursery.start_soon(self._route, mqtt)
                await stop.wait()
                with trio.move_on_after(CLOSE_GRACE):
                    await mqtt.close()
                nursery.cancel_scope.cancel()
        finally:
            ended.set()

    def _on_connect(self) -> None:
        """The broker accepted us: the service and every printer say so and announce."""
        self._service_availability(True)
        for bridge in self.bridges.values():
            bridge.announce()

    def _service_availability(self, online: bool) -> None:
        """`<mqtt.base_topic>mqtt`, when no printer publishes its availability there."""
        if self.spec is None or self.mqtt is None:
            return
        msg = availability(self.spec, online)
        if msg.topic not in self._printer_topics and msg.topic not in self.printer_bases:
            self.mqtt.publish_nowait(msg)

    async def _route(self, mqtt: TrioMqtt) -> None:
        async for msg in mqtt.inbox:
            bridge = self._bridge_of(msg.topic)
            if bridge is not None:
                bridge.deliver(msg)

    def _overflow(self, msg: Received) -> None:
        bridge = self._bridge_of(msg.topic)
        if bridge is not None:
            bridge.overflow(msg)

    def _bridge_of(self, topic: str) -> Bridge | None:
        for bridge in self.bridges.values():
            if topic in (bridge.topics.gcode, bridge.topics.job):
                return bridge
        return None

    # ---- what the bridges call --------------------------------------------------------------
    def publish(self, msg: Message) -> bool:
        return self.mqtt is not None and self.mqtt.publish_nowait(msg)

    def subscribe(self, topics: list[str]) -> None:
        if self.mqtt is not None:
            self.mqtt.subscribe(topics)

    def unsubscribe(self, topics: list[str]) -> None:
        if self.mqtt is not None:
            self.mqtt.unsubscribe(topics)

    def announced(self, bridge: Bridge) -> None:
        """`bridge` publishes its printer's availability under its (new) base."""
        self._printer_topics.add(bridge.topics.availability)

    def ended(self, bridge: Bridge) -> None:
        """A bridge ended (its printer stopped)."""
        if self.bridges.get(bridge.control.name) is bridge:
            del self.bridges[bridge.control.name]

    def samples(self) -> list[tuple[str, str, str, float]]:
        """(name, kind, help, value) for /metrics: the connection's."""
        m = self.mqtt
        if m is None:
            return []
        return [
            ("mqtt_connected", "gauge", "1 while the MQTT broker connection is up",
             1 if m.connected else 0),
            ("mqtt_messages_published_total", "counter", "messages handed to the broker",
             m.published),
            ("mqtt_messages_dropped_total", "counter",
             "messages lost: no broker connection, or too many waiting for it", m.dropped),
            ("mqtt_reconnects_total", "counter", "MQTT connection attempts after the first",
             m.reconnects),
        ]

    # ---- the printers -----------------------------------------------------------------------
    def attach(self, control: PrinterControl) -> None:
        """Printer `control` runs: bridge it (while there is a connection)."""
        self.controls[control.name] = control
        if self.spec is not None:
            self._metrics.setdefault(control.name, {})["mqtt"] = self.samples
            self._bridge(control)

    def detach(self, control: PrinterControl) -> None:
        """Printer `control` stops (its bridge ends with its bus, saying goodbye)."""
        if self.controls.get(control.name) is control:
            del self.controls[control.name]

    def _bridge(self, control: PrinterControl) -> None:
        spec = self.service_spec()
        sub = control.subscribe("mqtt", events=None, size=spec.queue)
        bridge = Bridge(control, self, sub)
        self.bridges[control.name] = bridge
        self.announced(bridge)
        self._nursery.start_soon(keep_bridging, bridge)
        if self.connected:
            bridge.announce()

    def reconfigure(self, control: PrinterControl) -> Callable[[HostConfig, HostConfig], None]:
        """The reload applier of printer `control`'s `mqtt` section and base topic."""
        def apply(old: HostConfig, new: HostConfig) -> None:
            self.start(new.mqtt)
            bridge = self.bridges.get(control.name)
            if bridge is not None and self.spec is not None:
                bridge.respec(self.spec, new.mqtt_base)
        return apply

    async def close(self) -> None:
        """The service stops (its printers stopped): wait for the bridges' goodbyes, say
        disconnected, close the connection."""
        with trio.move_on_after(CLOSE_GRACE):
            for bridge in list(self.bridges.values()):
                await bridge.ended.wait()
        if self.mqtt is not None and self._stop is not None and self._ended is not None:
            self._service_availability(False)
            self._stop.set()
            await self._ended.wait()
