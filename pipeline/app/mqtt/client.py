"""paho-mqtt driven from trio through its external-event-loop interface: no paho thread. Three
tasks per connection wait on the socket and call `loop_read` (readable), `loop_write` (paho
asked to write, through its socket callbacks, and the socket is writable) and `loop_misc`
(each second: keepalive pings, the keepalive deadline).

paho opens the connection (DNS, TCP connect, TLS handshake) with blocking calls, so `reconnect`
runs in `trio.to_thread.run_sync`: the one blocking open, bounded by CONNECT_TIMEOUT, and no
paho callback touches trio while it runs. A lost or refused connection is retried with
exponential backoff, forever.

`publish_nowait` never waits: with no connection, or with `limit` messages not yet written,
the message is dropped and counted. What lives here knows nothing of printers or topics.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from typing import Any

import attrs
import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from pipeline.app.mqtt.topics import Message
from pipeline.config.mqtt import MqttSpec, TlsSpec
from pipeline.errors import ConfigError

log = logging.getLogger("printpipe.mqtt")

#: Seconds a connection attempt (TCP connect and TLS handshake) may take.
CONNECT_TIMEOUT = 5.0
#: Seconds between reconnect attempts: doubling from the first to the last.
BACKOFF = (0.5, 30.0)
#: Seconds between loop_misc calls (keepalive).
MISC_INTERVAL = 1.0
#: Incoming messages waiting for the bridge before further ones are dropped.
INBOX = 64


@attrs.frozen
class Received:
    topic: str
    payload: bytes
    retain: bool


class _Context(ssl.SSLContext):
    """Remembers the sockets it wraps: paho leaves one open when the TLS handshake fails."""

    opened: list[ssl.SSLSocket]

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.opened.append(sock)
        return sock


def resolved(spec: MqttSpec, config_path: str) -> MqttSpec:
    """`spec` with its TLS files relative to the config file's folder."""
    folder = os.path.dirname(os.path.abspath(config_path))

    def path(name: str | None) -> str | None:
        return None if name is None else os.path.join(folder, os.path.expanduser(name))

    t = spec.tls
    return attrs.evolve(spec, tls=attrs.evolve(t, ca_file=path(t.ca_file),
                                               cert_file=path(t.cert_file),
                                               key_file=path(t.key_file)))


def tls_error(spec: MqttSpec, config_path: str, exc: Exception) -> ConfigError:
    """The one-line error for TLS files (of the resolved `spec`) that cannot be used."""
    t = spec.tls
    files = [f for f in (t.ca_file, t.cert_file, t.key_file) if f]
    return ConfigError(f"cannot use the TLS files {', '.join(files)}: {exc}", path=config_path,
                       key="mqtt.tls")


def tls_problem(spec: MqttSpec, config_path: str) -> ConfigError | None:
    """Why the TLS files of `spec` cannot be used (they are read, as at the start), or None."""
    spec = resolved(spec, config_path)
    if not spec.tls.active:
        return None
    try:
        for sock in tls_context(spec.tls).opened:
            sock.close()
    except (OSError, ssl.SSLError) as exc:
        return tls_error(spec, config_path, exc)
    return None


def tls_context(tls: TlsSpec) -> _Context:
    """Verify the broker against `ca_file` (the system's CAs without one); present the client
    certificate when one is given. Raises OSError / ssl.SSLError for a file it cannot use."""
    ctx = _Context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.opened = []
    if tls.ca_file:
        ctx.load_verify_locations(cafile=tls.ca_file)
    else:
        ctx.load_default_certs()
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    ctx.check_hostname = not tls.insecure
    return ctx


class TrioMqtt:
    """One broker connection, kept up by `serve`. `on_connect` runs (in the trio thread) each
    time the broker accepted the connection; incoming messages wait in `inbox`."""

    def __init__(self, spec: MqttSpec, client_id: str, will: Message | None, *, limit: int,
                 on_connect: Callable[[], None], inbox: int = INBOX,
                 on_overflow: Callable[[Received], None] | None = None) -> None:
        self.spec = spec  # TLS file paths as given (the bridge makes them absolute)
        self.client_id = client_id
        self.limit = limit
        self.connected = False
        self.published = 0
        self.dropped = 0
        self.reconnects = 0
        self._written = 0   # publishes of this connection paho reported done
        self._sent = 0      # publishes of this connection handed to paho
        self._on_connect = on_connect
        self._on_overflow = on_overflow
        self._in_thread = False
        self._closing = False
        self._was_accepted = False  # the broker accepted the current connection
        self._wake = trio.Event()
        self._closed = trio.Event()
        self._scope: trio.CancelScope | None = None
        self.inbox_send, self.inbox = trio.open_memory_channel[Received](inbox)
        self.client = self._client(will)

    def _client(self, will: Message | None) -> paho.Client:
        b = self.spec
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=paho.MQTTv311, clean_session=True)
        c.connect_timeout = CONNECT_TIMEOUT
        c.suppress_exceptions = True  # a bug in a callback is logged, never raised into trio
        c.enable_logger(logging.getLogger("printpipe.mqtt.paho"))
        if b.username is not None:
            c.username_pw_set(b.username, b.password)
        self._tls = tls_context(b.tls) if b.tls.active else None
        if self._tls is not None:
            c.tls_set_context(self._tls)
        if will is not None:
            c.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        c.max_queued_messages_set(self.limit)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_publish = self._published
        c.on_message = self._message
        c.on_socket_close = self._socket_closed
        c.on_socket_register_write = self._want_write
        c.connect_async(b.host, b.port, keepalive=b.keepalive)
        return c

    # ---- what the bridge calls -------------------------------------------------------------
    def publish_nowait(self, msg: Message) -> bool:
        """Hand `msg` to the broker connection; False (dropped, counted) when there is none or
        too many messages are still waiting to be written."""
        if not self.connected or self._sent - self._written >= self.limit:
            self.dropped += 1
            return False
        info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.dropped += 1
            return False
        self._sent += 1
        self.published += 1
        return True

    def subscribe(self, topics: list[str]) -> None:
        if topics and self.connected:
            self.client.subscribe([(t, 1) for t in topics])

    def unsubscribe(self, topics: list[str]) -> None:
        if topics and self.connected:
            self.client.unsubscribe(topics)

    @property
    def backlog(self) -> int:
        return self._sent - self._written if self.connected else 0

    async def close(self) -> None:
        """Disconnect cleanly after what was published (paho writes in order; the caller
        bounds the wait): the broker then does not publish the last will."""
        self._closing = True
        if self.connected:
            self.client.disconnect()
            await self._closed.wait()

    async def serve(self) -> None:
        """Connect, run the connection until it is lost, wait, connect again; never returns."""
        delay = BACKOFF[0]
        while True:
            self._closed = trio.Event()
            self._was_accepted = False
            try:
                self._in_thread = True
                try:
                    await trio.to_thread.run_sync(self._open)
                finally:
                    self._in_thread = False
            except (OSError, ssl.SSLError, ValueError) as exc:
                log.warning("MQTT broker %s:%d unreachable: %s (next try in %gs)",
                            self.spec.host, self.spec.port, exc, delay)
            else:
                was_up = await self._run_connection()
                if was_up and not self._closing:
                    delay = BACKOFF[0]
                    log.warning("MQTT connection to %s:%d lost (next try in %gs)",
                                self.spec.host, self.spec.port, delay)
            self._closed.set()
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])
            self.reconnects += 1

    # ---- one connection ---------------------------------------------------------------------
    def _open(self) -> None:
        """paho's blocking connect (in a worker thread)."""
        try:
            self.client.reconnect()
        except BaseException:
            for sock in self._tls.opened if self._tls is not None else ():
                sock.close()
            raise
        finally:
            if self._tls is not None:
                self._tls.opened.clear()

    async def _run_connection(self) -> bool:
        """Drive the socket until paho closes it; whether the broker accepted us."""
        sock = self.client.socket()
        if sock is None:
            return False
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._read, sock)
                nursery.start_soon(self._write, sock)
                nursery.start_soon(self._misc)
        finally:
            self._scope = None
            self.connected = False
            if self.client.socket() is not None:  # cancelled from outside: close it here
                self.client._sock_close()  # paho has no public close
        return self._was_accepted

    def _current(self, sock: Any) -> bool:
        """Whether `sock` is still paho's socket (paho closes it where it finds it dead)."""
        return self.client.socket() is sock

    def _end(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _read(self, sock: Any) -> None:
        while self._current(sock):
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:
                return
            rc = self.client.loop_read()
            # decrypted bytes TLS already holds never make the socket readable again
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and isinstance(sock, ssl.SSLSocket) \
                    and sock.pending() and self._current(sock):
                rc = self.client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not self._current(sock):
                self._end()
                return

    async def _write(self, sock: Any) -> None:
        while self._current(sock):  # paho may have closed it while we waited
            if not self.client.want_write():
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            try:
                await trio.lowlevel.wait_writable(sock)
            except trio.ClosedResourceError:
                return
            rc = self.client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not self._current(sock):
                self._end()
                return

    async def _misc(self) -> None:
        while True:
            await trio.sleep(MISC_INTERVAL)
            if self.client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._end()
                return

    # ---- paho's callbacks (in the trio thread, except during reconnect) --------------------

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.spec.host,
                      self.spec.port, reason)
            return
        log.info("MQTT connected to %s:%d", self.spec.host, self.spec.port)
        self.connected = self._was_accepted = True
        self._sent = self._written = 0
        self._on_connect()

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason: Any,
                      properties: Any) -> None:
        self.connected = False

    def _published(self, client: Any, userdata: Any, mid: int, reason: Any,
                   properties: Any) -> None:
        self._written += 1

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        received = Received(str(message.topic), bytes(message.payload), bool(message.retain))
        try:
            self.inbox_send.send_nowait(received)
        except trio.WouldBlock:
            log.warning("MQTT message on %s dropped: too many are still waiting",
                        message.topic)
            if self._on_overflow is not None:
                self._on_overflow(received)

    def _socket_closed(self, client: Any, userdata: Any, sock: Any) -> None:
        self.connected = False
        if not self._in_thread:
            trio.lowlevel.notify_closing(sock)  # wakes our waits on it
            self._end()

    def _want_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if not self._in_thread:
            self._wake.set()
