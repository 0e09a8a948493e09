"""The HTTP server: hypercorn's HTTP protocol (its trio `TCPServer`, one per connection) on our
own accept loop, so that a client that stops reading can hold neither its response nor the
shutdown.

Why not `hypercorn.trio.serve`: its `TCPServer.protocol_send` shields every socket write, and
an ASGI `send` awaits that write in the app's own task. A deadline around `send` therefore
never fires, a client that stops reading keeps its response (an event stream) blocked for as
long as it stays connected, and the graceful shutdown, whose deadline cannot enter the shield,
waits for it too. So every accepted socket is wrapped in a `Connection` whose `send_all`
aborts the connection (RST, unsent data discarded) once the kernel has taken no byte for
WRITE_DEADLINE seconds; hypercorn sees a broken stream and the app gets `http.disconnect`.
At shutdown the connections get `graceful_timeout` to finish; any still open are then aborted.

A connection's failure stays in that connection: whatever escapes hypercorn's protocol code for
one client (h11's LocalProtocolError after a malformed upgrade, a broken h2 stream, an error
from the app that hypercorn re-raises while answering it) is logged as one line naming the peer,
and that connection alone is aborted; the accept loop and every other connection go on, and
nothing reaches the nursery the server runs in. An exception from the app itself is logged as
one line too (hypercorn answers 500 if nothing was sent yet).

The print keeps its priority: a connection reads a request only on its turn (`Pacer`). At
most `limit` connections hold a turn at once, one client (an IP address) at most half of them;
a turn lasts from reading a request to the start of its answer (an event stream or a push
socket gives it back at once). With no print running a free turn is taken at once. While a
print runs every request waits in line (round robin over clients, in arrival order per client)
and one pacer task lets at most RELEASES of them start per PERIOD, so HTTP work starts at a
bounded rate and the printer's link gets nearly every scheduler round, however many clients
wait. A connection waiting for its turn holds the bytes it read, unparsed. One that waited
QUEUE_WAIT seconds is answered 503 with Retry-After, written straight to its socket, and
closed: the app and hypercorn's parser do no work for it.

Not served: TLS and the ASGI lifespan protocol (the service is set up by serve.py, and the app
has no startup or shutdown handlers).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import final

import attrs
import h2.exceptions
import h11
import trio
import wsproto.utilities
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr, repr_socket_addr, wrap_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("printpipe.http")

#: Seconds a connection may go without the kernel taking a byte of a pending write before the
#: client counts as gone (it stopped reading, or vanished) and the connection is aborted.
WRITE_DEADLINE = 10.0

#: Seconds a connection's handling may go on after either side ended its data (a half-close, or
#: hypercorn closing): h11 ends at once; hypercorn's HTTP/2 after an h2c upgrade never would.
EOF_GRACE = 2.0

#: Seconds a request may wait for its turn before it is refused with 503.
QUEUE_WAIT = 1.0
#: While a print runs, the pacer lets at most RELEASES waiting requests start every PERIOD
#: seconds (each takes about a millisecond of CPU on the development VM, in a few scheduler
#: rounds)
PERIOD = 0.015
RELEASES = 1
#: and refuses at most REFUSALS of those that waited QUEUE_WAIT (a refused client reconnects).
REFUSALS = 2
#: What a refused request is answered, straight to its socket (no parsing): 503, try again in
#: a second; then its connection is closed.
_BUSY = b'{"error": "the server is busy: try again in a second (Retry-After)"}\n'
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(_BUSY), _BUSY))

_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST at once


@final
class Connection(trio.abc.HalfCloseableStream):
    """An accepted socket whose writes have a deadline on progress: `send_all` may take as
    long as the client keeps reading, but WRITE_DEADLINE seconds without the kernel taking a
    byte abort the connection and raise BrokenResourceError."""

    def __init__(self, stream: trio.SocketStream, pacer: Pacer | None = None) -> None:
        self.stream = stream
        self.scope = trio.CancelScope()  # the connection's handling: ended EOF_GRACE after EOF
        self.socket = stream.socket  # hypercorn reads the addresses from it
        self.pacer = pacer
        self.address: object = None  # the peer's address as the ASGI scope's "client" has it
        self.holding = False  # it has a turn (its request is being read or handled)
        self.answering = False  # its answer started: what it reads now (websocket frames) is
        #                         part of that request, read without a turn
        self.waiter: Waiter | None = None  # its request waits for its turn
        self.refused = False  # its request was answered 503
        try:
            peer = self.socket.getpeername()
            self.address = parse_socket_addr(self.socket.family, peer)
            self.peer = repr_socket_addr(self.socket.family, peer)
        except OSError:  # already reset by the client
            self.peer = "?"
        self.client = self.peer.rsplit(":", 1)[0]  # its IP address: turns are fair among them

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        deadline = WRITE_DEADLINE
        try:
            with memoryview(data) as view:
                if not view:  # (h11's end of a sized body: no scheduler round for it)
                    return
                sent = 0
                while sent < len(view):
                    with trio.move_on_after(deadline):
                        sent += await self.socket.send(view[sent:])
                        continue
                    log.warning("HTTP client %s took no data for %g s: connection dropped",
                                self.peer, deadline)
                    self.abort()
                    raise trio.BrokenResourceError(f"client stalled for {deadline} s")
        except OSError as exc:
            if exc.errno in _CLOSED_ERRNOS:
                raise trio.ClosedResourceError("the connection was closed") from None
            raise trio.BrokenResourceError(f"connection broken: {exc}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        self._closing()
        await self.stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.stream.receive_some(max_bytes)
        if not data:
            self._closing()
        elif (self.pacer is not None and not self.holding and not self.answering
              and not self.pacer.take_now(self) and not await self.pacer.wait(self)):
            return await self._refuse()
        return data

    async def _refuse(self) -> bytes:
        """Answer 503 without parsing the request, and end the connection's handling (its
        socket is closed when the handling ends, after the answer: a FIN)."""
        await self._send_refusal()
        self.scope.cancel()
        return b""

    async def _send_refusal(self) -> None:
        if not self.refused:
            self.refused = True
            with trio.move_on_after(0.1), contextlib.suppress(OSError):
                await self.socket.send(_REFUSAL)  # a fresh answer fits the socket's buffer

    def _closing(self) -> None:
        """One side ended: whatever hypercorn still waits for gets EOF_GRACE seconds."""
        self.scope.deadline = min(self.scope.deadline, trio.current_time() + EOF_GRACE)

    async def aclose(self) -> None:
        self._closing()
        if self.waiter is not None and self.pacer is not None:
            # hypercorn closes a connection idle for its keep-alive time, though a request
            # that came meanwhile waits here: it is refused, not dropped unanswered
            self.pacer.drop(self.waiter)
            await self._send_refusal()
        await self.stream.aclose()

    def abort(self) -> None:
        """Close at once with a reset. A task blocked writing or reading this socket wakes
        with ClosedResourceError, even inside hypercorn's shielded write."""
        if self.socket.fileno() == -1:
            return
        with contextlib.suppress(OSError):  # a Unix socket, or already reset: close() will do
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.socket.close()


@final
class Pacer:
    """When a connection may read a request: at most `limit` at once, one client (IP address)
    at most half of them, the waiting ones in arrival order per client, round robin over
    clients. While `busy()` (a print runs) one task releases at most RELEASES waiting requests
    per PERIOD, so HTTP work starts at a bounded rate however many clients wait, and the
    printer's link gets nearly every scheduler round; otherwise it releases all it may at once.
    A request that waited QUEUE_WAIT seconds is refused (its connection answers 503)."""

    def __init__(self, limit: int, busy: Callable[[], bool]) -> None:
        self.limit = limit
        self.per_client = max(1, limit // 2)
        self.busy = busy
        self.active = 0
        self.held: dict[str, int] = {}                    # turns per client
        self.waiting: dict[str, deque[Waiter]] = {}       # per client, in arrival order
        self.clients: deque[str] = deque()                # clients with waiters, round robin
        self.arrivals: deque[Waiter] = deque()            # all waiters, oldest first (expiry)
        self.queued = 0
        self.by_address: dict[object, Connection] = {}    # for the ASGI side (_admission)
        self.wake = trio.Event()                          # a waiter came, a turn was given back

    def take_now(self, conn: Connection) -> bool:
        """The fast path: `conn` may read its request at once (nothing waits, no print)."""
        if (self.queued or self.active >= self.limit
                or self.held.get(conn.client, 0) >= self.per_client or self.busy()):
            return False
        self._grant(conn)
        return True

    async def wait(self, conn: Connection) -> bool:
        """Wait in line; True: `conn` has its turn, False: its request is refused."""
        waiter = Waiter(conn, trio.current_time() + QUEUE_WAIT)
        queue = self.waiting.get(conn.client)
        if queue is None:
            queue = self.waiting[conn.client] = deque()
            self.clients.append(conn.client)
        queue.append(waiter)
        self.arrivals.append(waiter)
        self.queued += 1
        self.wake.set()
        conn.waiter = waiter
        try:
            await waiter.event.wait()
        finally:
            conn.waiter = None
            if not waiter.done:  # cancelled (the connection ends)
                self._leave(waiter)
        return waiter.granted

    def drop(self, waiter: Waiter) -> None:
        """`waiter` leaves the line refused."""
        if not waiter.done:
            self._leave(waiter)
            waiter.event.set()

    def _leave(self, waiter: Waiter) -> None:
        waiter.done = True
        self.queued -= 1
        client = waiter.conn.client
        queue = self.waiting[client]
        if queue[0] is waiter:
            queue.popleft()
        else:
            queue.remove(waiter)
        if not queue:
            del self.waiting[client]
            self.clients.remove(client)

    def _grant(self, conn: Connection) -> None:
        conn.holding = True
        self.active += 1
        self.held[conn.client] = self.held.get(conn.client, 0) + 1

    def give_back(self, conn: Connection) -> None:
        """`conn`'s turn ends (its answer started, or its connection ended)."""
        if not conn.holding:
            return
        conn.holding = False
        self.active -= 1
        left = self.held[conn.client] - 1
        if left:
            self.held[conn.client] = left
        else:
            del self.held[conn.client]
        if self.queued:
            self.wake.set()

    async def run(self) -> None:
        """Releases the waiting requests and refuses those that waited too long."""
        while True:
            self.wake = trio.Event()
            if not self.busy():
                self._expire(trio.current_time(), self.limit * 8)
                self._release(self.limit)
            elif self.queued:
                self._expire(trio.current_time(), REFUSALS)
                self._release(RELEASES)
                await trio.sleep(PERIOD)
                continue
            deadline = self.arrivals[0].deadline if self.queued else math.inf
            with trio.move_on_at(deadline):
                await self.wake.wait()

    def _expire(self, now: float, most: int) -> None:
        """Refuse up to `most` of the requests that waited QUEUE_WAIT."""
        arrivals = self.arrivals
        while arrivals and (arrivals[0].done or (most and arrivals[0].deadline <= now)):
            waiter = arrivals.popleft()
            if not waiter.done:
                self._leave(waiter)
                waiter.event.set()  # not holding: refused
                most -= 1

    def _release(self, most: int) -> None:
        """Up to `most` turns to the next clients in the round that may have one."""
        clients = self.clients
        while most and clients and self.active < self.limit:
            for _ in range(len(clients)):
                client = clients[0]
                clients.rotate(-1)
                if self.held.get(client, 0) < self.per_client:
                    break
            else:
                return  # every waiting client holds its share
            waiter = self.waiting[client][0]
            self._leave(waiter)
            self._grant(waiter.conn)
            waiter.granted = True
            waiter.event.set()
            most -= 1


@attrs.define(eq=False)
class Waiter:
    conn: Connection
    deadline: float
    done: bool = False  # released, refused or gone: no longer in line
    granted: bool = False  # released: it has its turn
    event: trio.Event = attrs.Factory(trio.Event)


#: The ASGI messages that start an answer: the turn ends there (an event stream or a push
#: socket may then go on for hours without holding one).
_STARTS = frozenset({"http.response.start", "websocket.accept", "websocket.close",
                     "websocket.http.response.start"})


def _admission(app: ASGIApp, pacer: Pacer) -> ASGIApp:
    """`app` behind the pacer: a turn is given back once the answer starts (or the app
    returns)."""
    async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
        conn = pacer.by_address.get(scope.get("client"))
        if conn is None:  # not one of ours
            await app(scope, receive, send)
            return

        async def starting(message: Message) -> None:
            kind = message["type"]
            if kind in _STARTS:
                conn.answering = True
                pacer.give_back(conn)
            elif kind == "http.response.body" and not message.get("more_body"):
                conn.answering = False  # before the client can have it and ask again
            await send(message)

        try:
            await app(scope, receive, starting)
        finally:
            conn.answering = False
            pacer.give_back(conn)
    return admitted


async def serve_http(app: ASGIApp, config: Config, *,
                     shutdown_trigger: Callable[[], Awaitable[object]],
                     concurrency: int = 4, busy: Callable[[], bool] = lambda: False,
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
    """Serve `app` on `config.bind` until `shutdown_trigger` returns, then stop accepting,
    close idle keep-alive connections, give the others `config.graceful_timeout` seconds and
    abort what is left. Reports the bound URLs through `task_status`. At most `concurrency`
    requests are handled at once, and while `busy()` (a print runs) they start at a bounded
    rate (Pacer)."""
    pacer = Pacer(concurrency, busy)
    wrapped = wrap_app(_admission(_contained(app), pacer),  # type: ignore[arg-type]
                       config.wsgi_max_body_size, "asgi")
    context = WorkerContext(None)
    listeners: list[trio.SocketListener] = []
    urls: list[str] = []
    for sock in config.create_sockets().insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        urls.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
    connections: set[Connection] = set()

    async def handle(stream: trio.SocketStream) -> None:
        conn = Connection(stream, pacer)
        connections.add(conn)
        pacer.by_address[conn.address] = conn
        try:
            with conn.scope:
                # hypercorn annotates the stream as an SSLStream; it needs a Stream with .socket
                await TCPServer(wrapped, config, context, ConnectionState({}),
                                conn).run()  # type: ignore[arg-type]
        except* Exception as failed:  # noqa: BLE001 - a Cancelled (the shutdown) goes on up
            conn.abort()
            log.warning("HTTP connection from %s dropped: %s", conn.peer, one_line(failed))
        finally:
            pacer.give_back(conn)
            pacer.by_address.pop(conn.address, None)
            connections.discard(conn)
            conn.socket.close()  # hypercorn's own close may have been cancelled

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as accepting:
                outer.start_soon(pacer.run)
                accepting.start_soon(partial(trio.serve_listeners, handle, listeners,
                                             handler_nursery=handlers))
                task_status.started(urls)
                await shutdown_trigger()
                accepting.cancel_scope.cancel()  # closes the listeners
            await context.terminated.set()  # idle keep-alive connections close now
            deadline = trio.current_time() + config.graceful_timeout
            handlers.cancel_scope.deadline = deadline
            outer.start_soon(_abort_at, deadline, connections)
        outer.cancel_scope.cancel()  # every connection ended: the abort is not needed


#: What the protocol libraries raise into the app's `send` when the connection is broken.
_PROTOCOL_ERRORS = (h11.ProtocolError, wsproto.utilities.ProtocolError, h2.exceptions.H2Error)


def _contained(app: ASGIApp) -> ASGIApp:
    """`app`, its exceptions logged as one line and not raised (hypercorn then answers 500 if
    no response had started, and closes the connection otherwise)."""
    async def contained(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except _PROTOCOL_ERRORS as exc:  # the connection's: handle() logs its end
            log.debug("HTTP %s %s: %s", scope["type"], scope.get("path", ""), one_line(exc))
        except Exception as exc:  # noqa: BLE001 - the server goes on; the line says what
            log.error("HTTP %s %s failed: %s", scope.get("method", scope["type"]),
                      scope.get("path", ""), one_line(exc))
    return contained


def one_line(exc: BaseException, limit: int = 200) -> str:
    """`Type: message` of `exc` (of the first exception in a group), on one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


async def _abort_at(deadline: float, connections: set[Connection]) -> None:
    await trio.sleep_until(deadline)
    if connections:
        log.warning("aborting %d HTTP connection(s) still open at shutdown: %s",
                    len(connections), ", ".join(sorted(c.peer for c in connections)))
    for conn in list(connections):
        conn.abort()
