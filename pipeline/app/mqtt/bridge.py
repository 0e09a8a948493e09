"""One printer's MQTT bridge: one more subscriber of that printer's event bus, with its own
bounded queue, that publishes its events, print progress, temperatures and state under the
printer's base topic, announces it to Home Assistant (opt-in) and takes the commands of its
own command topics (opt-in), acting on that printer only. The broker connection is the
service's, shared by every printer's bridge (hub.py).

It never touches the print: it reads the bus (a slow bridge loses events, counted by the bus)
and polls `PrinterControl.status()` once a second; a slow or absent broker loses messages
(counted by the connection, shown in /metrics). An unexpected error inside the bridge is
logged and the bridge starts over; it never reaches the printer or the other bridges.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Protocol

import attrs
import trio

from pipeline.app.mqtt.client import INBOX, Received
from pipeline.app.mqtt.commands import Reply, refusal, reply_message, run_command
from pipeline.app.mqtt.discovery import discovery_messages
from pipeline.app.mqtt.topics import Changes, Message, Topics, availability, event_message
from pipeline.app.printers.control import PrinterControl
from pipeline.config.mqtt import MqttSpec
from pipeline.events.names import Event
from pipeline.fanout.bus import BusEvent, Subscription

log = logging.getLogger("printpipe.mqtt")

#: Seconds between status polls (temperatures, progress, state).
STATUS_INTERVAL = 1.0
#: Seconds the connection may take at shutdown to write what is queued and say disconnected.
CLOSE_GRACE = 2.0
#: Seconds before a bridge starts over after an unexpected error.
RESTART_DELAY = 5.0
#: Events after which the status is published at once rather than at the next poll.
_STATUS_EVENTS = frozenset({Event.PRINTER_STATE_CHANGED, Event.PRINT_STARTED, Event.PRINT_DONE,
                            Event.PRINT_FAILED, Event.PRINT_CANCELLED, Event.PRINT_PAUSED,
                            Event.PRINT_RESUMED, Event.CONNECTED, Event.DISCONNECTED})


def client_id_of(spec: MqttSpec) -> str:
    return spec.client_id or f"printpipe-{socket.gethostname()}"


def printer_spec(spec: MqttSpec, base: str | None) -> MqttSpec:
    """The service's `spec` as one printer publishes it: under its own base topic."""
    return spec if base is None or base == spec.base_topic else attrs.evolve(spec,
                                                                              base_topic=base)


class Hub(Protocol):
    """What a bridge needs of the service's connection (hub.py)."""

    client_id: str

    @property
    def connected(self) -> bool: ...
    def service_spec(self) -> MqttSpec: ...
    def publish(self, msg: Message) -> bool: ...
    def subscribe(self, topics: list[str]) -> None: ...
    def unsubscribe(self, topics: list[str]) -> None: ...
    def announced(self, bridge: Bridge) -> None: ...
    def ended(self, bridge: Bridge) -> None: ...


class Bridge:
    def __init__(self, control: PrinterControl, hub: Hub, sub: Subscription) -> None:
        self.control = control
        self.hub = hub
        self.sub = sub
        self.spec = printer_spec(hub.service_spec(), control.config.mqtt_base)
        self.topics = Topics(self.spec.base_topic)
        self.changes = Changes(self.spec)
        self.inbox_send, self.inbox = trio.open_memory_channel[Received](INBOX)
        #: Set once the bridge said goodbye (its printer stopped, or MQTT was switched off).
        self.ended = trio.Event()

    @property
    def own(self) -> bool:
        """Whether the printer publishes under its own base (one of several printers)."""
        return self.spec.base_topic != self.hub.service_spec().base_topic

    def respec(self, spec: MqttSpec, base: str | None) -> None:
        """New settings (a reload): a new base says goodbye on the old one and announces the
        printer on the new one (at once when the connection is up, else when it comes)."""
        new = printer_spec(spec, base)
        moved = new.base_topic != self.spec.base_topic
        if moved:
            self.publish(availability(self.spec, False))
            self.hub.unsubscribe([self.topics.gcode, self.topics.job])
        self.spec, self.topics = new, Topics(new.base_topic)
        self.changes = Changes(new)
        self.hub.announced(self)
        if moved and self.hub.connected:
            self.announce()

    def restart(self) -> None:
        """A clean slate after a failure: everything is published again."""
        self.changes.forget()

    def publish(self, msg: Message) -> bool:
        return self.hub.publish(msg)

    def publish_status(self) -> None:
        """Temperatures, progress and state, where they changed since last published."""
        msgs = self.changes.messages(self.control.status(), time.time())
        sent = [self.publish(m) for m in msgs]
        if not all(sent):
            self.changes.forget()  # lost ones go out again at the next poll

    def announce(self) -> None:
        """The connection is up: say so, announce, subscribe, and publish the whole state."""
        self.publish(availability(self.spec, True))
        if self.spec.discovery.enabled:
            # the profile's heaters: a heater is reported only after its first report
            declared = self.control.config.printer.profile.heaters()
            heaters = declared + [h for h in self.control.status().temperatures
                                  if h not in declared]
            service = availability(self.hub.service_spec(), True).topic
            for msg in discovery_messages(self.spec, self.hub.client_id, heaters,
                                          printer=self.control.name if self.own else None,
                                          service_topic=service):
                self.publish(msg)
        if self.spec.commands:
            self.hub.subscribe([self.topics.gcode, self.topics.job])
        self.changes.forget()
        self.publish_status()

    def goodbye(self) -> None:
        """The printer stopped: its availability says disconnected."""
        if not self.ended.is_set():
            self.ended.set()
            self.publish(availability(self.spec, False))

    async def run(self) -> None:
        """Until the printer's Shutdown (its bus closes)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._poll)
            nursery.start_soon(self._commands)
            async for ev in self.sub:
                self._event(ev)
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

    def deliver(self, msg: Received) -> None:
        """A message on one of this printer's command topics (from the connection)."""
        try:
            self.inbox_send.send_nowait(msg)
        except trio.WouldBlock:
            log.warning("MQTT message on %s dropped: too many are still waiting", msg.topic)
            self.overflow(msg)

    async def _commands(self) -> None:
        async for msg in self.inbox:
            if not msg.payload or not self.spec.commands:  # (an empty one clears a retained)
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

    def overflow(self, msg: Received) -> None:
        """A command that found the inbox full: answered, never run."""
        if msg.payload:
            self.answer(msg.topic, msg.payload, Reply(False, f"{INBOX} commands are still "
                                                             "waiting: this one was not run"))


async def keep_bridging(bridge: Bridge) -> None:
    """Bridge until the subscription ends (the printer's Shutdown, or MQTT switched off), then
    say goodbye; a bug inside the bridge is logged and the bridge starts over: it never ends
    the printer."""
    while True:
        try:
            await bridge.run()
            break
        except Exception:  # the boundary: a bug in the bridge must not end the service
            log.exception("the MQTT bridge of printer %s failed; starting it again in %gs",
                          bridge.control.name, RESTART_DELAY)
        await trio.sleep(RESTART_DELAY)
        bridge.restart()
    bridge.goodbye()
    bridge.hub.ended(bridge)
