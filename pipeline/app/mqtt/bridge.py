"""The MQTT bridge: one more subscriber of the event bus, with its own bounded queue, that
publishes events, print progress, temperatures and the printer's state to a broker, announces
the printer to Home Assistant (opt-in) and takes commands (opt-in).

It never touches the print: it reads the bus (a slow bridge loses events, counted by the bus)
and polls `PrinterControl.status()` once a second; a slow or absent broker loses messages (counted
here, both shown in /metrics) while the connection is retried with backoff. An unexpected
error inside the bridge is logged and the bridge starts over; it never reaches the service.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time

import trio

from pipeline.app.mqtt.client import INBOX, Received, TrioMqtt, resolved, tls_error
from pipeline.app.mqtt.commands import Reply, refusal, reply_message, run_command
from pipeline.app.mqtt.discovery import discovery_messages
from pipeline.app.mqtt.topics import Changes, Message, Topics, availability, event_message
from pipeline.app.printers.control import MetricsSource, PrinterControl
from pipeline.config.mqtt import MqttSpec
from pipeline.config.reader import HostConfig
from pipeline.events.names import Event
from pipeline.fanout.bus import BusEvent, Subscription

log = logging.getLogger("printpipe.mqtt")

#: Seconds between status polls (temperatures, progress, state).
STATUS_INTERVAL = 1.0
#: Seconds the bridge may take at shutdown to write what is queued and say disconnected.
CLOSE_GRACE = 2.0
#: Seconds before the bridge starts over after an unexpected error.
RESTART_DELAY = 5.0
#: Events after which the status is published at once rather than at the next poll.
_STATUS_EVENTS = frozenset({Event.PRINTER_STATE_CHANGED, Event.PRINT_STARTED, Event.PRINT_DONE,
                            Event.PRINT_FAILED, Event.PRINT_CANCELLED, Event.PRINT_PAUSED,
                            Event.PRINT_RESUMED, Event.CONNECTED, Event.DISCONNECTED})


def client_id_of(spec: MqttSpec) -> str:
    return spec.client_id or f"printpipe-{socket.gethostname()}"


class Bridge:
    def __init__(self, control: PrinterControl, spec: MqttSpec, sub: Subscription) -> None:
        self.control = control
        self.spec = spec
        self.sub = sub
        self.topics = Topics(spec.base_topic)
        self.client_id = client_id_of(spec)
        self.changes = Changes(spec)
        self.mqtt = self._client()

    def _client(self) -> TrioMqtt:
        """The broker connection; a TLS file it cannot use is a ConfigError (at start)."""
        path = self.control.config.path
        spec = resolved(self.spec, path)
        try:
            return TrioMqtt(spec, self.client_id,
                            availability(self.spec, False), limit=self.spec.queue,
                            on_connect=self._on_connect, on_overflow=self._overflow)
        except (OSError, ssl.SSLError) as exc:
            raise tls_error(spec, path, exc) from exc

    def restart(self) -> None:
        """A new connection and a clean slate after a failure; the counters carry on."""
        old, self.mqtt = self.mqtt, self._client()
        self.mqtt.published, self.mqtt.dropped = old.published, old.dropped
        self.mqtt.reconnects = old.reconnects + 1
        self.changes.forget()

    def samples(self) -> list[tuple[str, str, str, float]]:
        """(name, kind, help, value) for /metrics."""
        m = self.mqtt
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

    def publish(self, msg: Message) -> bool:
        return self.mqtt.publish_nowait(msg)

    def publish_status(self) -> None:
        """Temperatures, progress and state, where they changed since last published."""
        msgs = self.changes.messages(self.control.status(), time.time())
        sent = [self.publish(m) for m in msgs]
        if not all(sent):
            self.changes.forget()  # lost ones go out again at the next poll

    def _on_connect(self) -> None:
        """The broker accepted us: say so, announce, subscribe, and publish the whole state."""
        self.publish(availability(self.spec, True))
        if self.spec.discovery.enabled:
            # the profile's heaters: a heater is reported only after its first report
            declared = self.control.config.printer.profile.heaters()
            heaters = declared + [h for h in self.control.status().temperatures
                                  if h not in declared]
            for msg in discovery_messages(self.spec, self.client_id, heaters):
                self.publish(msg)
        if self.spec.commands:
            self.mqtt.subscribe([self.topics.gcode, self.topics.job])
        self.changes.forget()
        self.publish_status()

    async def run(self) -> None:
        """Until Shutdown: then publish `disconnected`, write what is queued, disconnect."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.mqtt.serve)
            nursery.start_soon(self._poll)
            if self.spec.commands:
                nursery.start_soon(self._commands)
            async for ev in self.sub:
                self._event(ev)
            with trio.move_on_after(CLOSE_GRACE):
                self.publish(availability(self.spec, False))
                await self.mqtt.close()
            nursery.cancel_scope.cancel()

    def _event(self, ev: BusEvent) -> None:
        # the bus stamps events with trio's clock; the topic wants Unix time
        stamp = time.time() - (trio.current_time() - ev.time)
        msg = event_message(self.spec, ev.name, ev.payload, stamp)
        if msg is not None:
            self.publish(msg)
        if ev.name in _STATUS_EVENTS:
            self.publish_status()

    async def _poll(self) -> None:
        while True:
            await trio.sleep(STATUS_INTERVAL)
            self.publish_status()

    async def _commands(self) -> None:
        async for msg in self.mqtt.inbox:
            if not msg.payload:  # how MQTT clears a retained message (ours too): no command
                continue
            problem = refusal(msg.payload, msg.retain)
            if msg.retain:
                self.publish(Message(msg.topic, b"", retain=True, qos=self.spec.qos))
            try:
                reply = (Reply(False, problem) if problem is not None else
                         await run_command(self.control, self.topics, msg.topic, msg.payload))
            except Exception:  # a bug: the command still gets its answer, the bridge goes on
                log.exception("MQTT command on %s failed", msg.topic)
                reply = Reply(False, "internal error (logged)")
            self.answer(msg.topic, msg.payload, reply)

    def answer(self, topic: str, payload: bytes, reply: Reply) -> None:
        """Publish the reply to the command `payload` on `topic`."""
        if not reply.ok:
            log.warning("MQTT command on %s refused: %s", topic, reply.message)
        self.publish(reply_message(self.spec, topic, payload, reply, time.time()))

    def _overflow(self, msg: Received) -> None:
        """A command that found the inbox full: answered, never run."""
        if msg.payload:
            self.answer(msg.topic, msg.payload, Reply(False, f"{INBOX} commands are still "
                                                             "waiting: this one was not run"))


def open_bridge(control: PrinterControl, spec: MqttSpec) -> Bridge:
    """A bridge subscribed to the bus; ConfigError (and no subscription left) when its TLS
    files are unusable."""
    sub = control.subscribe("mqtt", events=None, size=spec.queue)
    try:
        return Bridge(control, spec, sub)
    except BaseException:
        sub.close()
        raise


async def keep_bridging(bridge: Bridge) -> None:
    """Bridge until the subscription ends (Shutdown, or a reload replacing the bridge); a bug
    inside the bridge is logged and the bridge starts over: it never ends the service."""
    while True:
        try:
            await bridge.run()
            return
        except Exception:  # the boundary: a bug in the bridge must not end the service
            log.exception("the MQTT bridge failed; starting it again in %gs", RESTART_DELAY)
        await trio.sleep(RESTART_DELAY)
        bridge.restart()


class MqttService:
    """The bridge of the config's `mqtt` section, if there is one. A reload that changes the
    section replaces it: the running bridge says `disconnected` and closes before the new one
    connects (the same client id would otherwise take over its session and fire its will)."""

    def __init__(self, control: PrinterControl, nursery: trio.Nursery,
                 metrics: dict[str, MetricsSource] | None = None) -> None:
        """`metrics`: where the bridge's /metrics samples go (the service's, for this
        printer)."""
        self._control = control
        self._metrics = metrics if metrics is not None else {}
        self._nursery = nursery
        self._bridge: Bridge | None = None
        self._ended: trio.Event | None = None

    def start(self, spec: MqttSpec | None) -> None:
        """Bridge with `spec` from now on (None: no bridge). A ConfigError (unusable TLS
        files) leaves the running bridge as it was."""
        new = open_bridge(self._control, spec) if spec is not None else None
        previous = self._ended
        if self._bridge is not None:
            self._bridge.sub.close()   # it drains, says disconnected and closes
        self._bridge, self._ended = new, None
        if new is None:
            self._metrics.pop("mqtt", None)
            return
        self._ended = trio.Event()
        self._metrics["mqtt"] = new.samples
        self._nursery.start_soon(self._run, new, previous, self._ended)

    def reconfigure(self, old: HostConfig, new: HostConfig) -> None:
        """The reload applier of the `mqtt` section."""
        self.start(new.mqtt)

    async def _run(self, bridge: Bridge, previous: trio.Event | None, ended: trio.Event) -> None:
        try:
            if previous is not None:
                await previous.wait()
            if bridge is self._bridge:   # not replaced again meanwhile
                await keep_bridging(bridge)
        finally:
            ended.set()
