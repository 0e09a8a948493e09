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

The print keeps its priority: a connection reads a request only on its turn (`Turns`). At
most `limit` connections hold a turn at once, one client (an IP address) at most half of them;
a turn lasts from reading a request to the start of its answer (an event stream or a push
socket gives it back at once), and the next waiting connection, round robin over clients, gets
it in a later scheduler round, so the printer's link runs between requests however many
clients wait. A connection waiting for its turn holds the bytes it read, unparsed. One that
waited QUEUE_WAIT seconds reads its request anyway and is answered 503 with Retry-After, before
the app does any work.

Not served: TLS and the ASGI lifespan protocol (the service is set up by serve.py, and the app
has no startup or shutdown handlers).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
import time
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

#: Seconds a connection may wait for its turn before its request is refused with 503.
QUEUE_WAIT = 1.0
#: The share of the CPU requests may take while others wait: after a turn that took C seconds
#: of CPU the next starts (1/HTTP_SHARE - 1) * C later, at most MAX_PAUSE.
HTTP_SHARE = 0.1
_PAUSE_FACTOR = 1 / HTTP_SHARE - 1
MAX_PAUSE = 0.02
#: What a refused request is answered: 503, try again in a second.
_BUSY = b'{"error": "the server is busy: try again in a second (Retry-After)"}'
_REFUSED = [(b"content-type", b"application/json"), (b"retry-after", b"1"),
            (b"content-length", str(len(_BUSY)).encode())]

_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST at once


@final
class Connection(trio.abc.HalfCloseableStream):
    """An accepted socket whose writes have a deadline on progress: `send_all` may take as
    long as the client keeps reading, but WRITE_DEADLINE seconds without the kernel taking a
    byte abort the connection and raise BrokenResourceError."""

    def __init__(self, stream: trio.SocketStream, turns: Turns | None = None) -> None:
        self.stream = stream
        self.scope = trio.CancelScope()  # the connection's handling: ended EOF_GRACE after EOF
        self.socket = stream.socket  # hypercorn reads the addresses from it
        self.turns = turns
        self.address: object = None  # the peer's address as the ASGI scope's "client" has it
        self.holding = False  # it has a turn (its request is being read or handled)
        self.refused = False  # its next request is answered 503
        self.answering = False  # its answer started: what it reads now (websocket frames) is
        #                         part of that request, read without a turn
        self.cpu_at = 0.0  # the thread's CPU time when its turn started
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
                if not view:
                    await trio.lowlevel.checkpoint()
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
        elif self.turns is not None and not self.holding and not self.answering:
            await self.turns.take(self)  # before hypercorn parses it
        return data

    def _closing(self) -> None:
        """One side ended: whatever hypercorn still waits for gets EOF_GRACE seconds."""
        self.scope.deadline = min(self.scope.deadline, trio.current_time() + EOF_GRACE)

    async def aclose(self) -> None:
        self._closing()
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
class Turns:
    """Whose turn it is to read a request: at most `limit` connections at once, one client
    (IP address) at most half of them, the waiting ones served round robin over clients; and
    after each answer a pause in proportion to the CPU it took (HTTP_SHARE), so that under
    load the server's other tasks (the printer's link) keep most of the CPU."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.held: dict[str, int] = {}                    # turns per client
        self.waiting: dict[str, deque[Waiter]] = {}       # per client, in arrival order
        self.clients: deque[str] = deque()                # clients with waiters, round robin
        self.by_address: dict[object, Connection] = {}    # for the ASGI side (_admission)
        self.ready_at = 0.0                               # no turn starts before (trio time)
        self.changed = trio.Event()                       # for dispatch: a waiter, a free turn

    @property
    def per_client(self) -> int:
        return max(1, self.limit // 2)

    async def take(self, conn: Connection) -> None:
        """Wait for `conn`'s turn; after QUEUE_WAIT its request is read to be refused."""
        client = conn.client
        if (not self.clients and self.active < self.limit and trio.current_time() >= self.ready_at
                and self.held.get(client, 0) < self.per_client):
            self._grant(conn)
            await trio.lowlevel.checkpoint()
            return
        waiter = Waiter(conn)
        queue = self.waiting.get(client)
        if queue is None:
            queue = self.waiting[client] = deque()
            self.clients.append(client)
        queue.append(waiter)
        self.changed.set()
        try:
            with trio.move_on_after(QUEUE_WAIT):
                await waiter.event.wait()
        finally:
            if not waiter.event.is_set():  # timed out or cancelled: leave the queue
                queue.remove(waiter)
                if not queue:
                    del self.waiting[client]
                    self.clients.remove(client)
        if not conn.holding:
            conn.refused = True

    def _grant(self, conn: Connection) -> None:
        conn.holding = True
        conn.cpu_at = time.thread_time()
        self.active += 1
        self.held[conn.client] = self.held.get(conn.client, 0) + 1

    def give_back(self, conn: Connection) -> None:
        """`conn`'s turn ends: the next one starts after a pause in proportion to its CPU."""
        if not conn.holding:
            return
        conn.holding = False
        self.active -= 1
        left = self.held[conn.client] - 1
        if left:
            self.held[conn.client] = left
        else:
            del self.held[conn.client]
        self.changed.set()

    def charge(self, conn: Connection) -> None:
        """`conn`'s request was answered: the next turn starts after a pause in proportion to
        the CPU taken since its turn began (hypercorn writes the answer after the turn ended;
        an answer that took long, an event stream, counts as MAX_PAUSE)."""
        pause = min((time.thread_time() - conn.cpu_at) * _PAUSE_FACTOR, MAX_PAUSE)
        self.ready_at = max(self.ready_at, trio.current_time() + pause)

    async def dispatch(self) -> None:
        """Hands out the turns the waiting connections wait for, one at a time."""
        while True:
            await self.changed.wait()
            self.changed = trio.Event()
            while self.clients and self.active < self.limit:
                await trio.sleep_until(self.ready_at)  # a checkpoint even when it has passed
                if not self._grant_next():
                    break

    def _grant_next(self) -> bool:
        """The turn to the next client in the round that may have one; False: none may."""
        for _ in range(len(self.clients)):
            client = self.clients[0]
            self.clients.rotate(-1)
            if self.held.get(client, 0) >= self.per_client:
                continue
            queue = self.waiting[client]
            waiter = queue.popleft()
            if not queue:
                del self.waiting[client]
                self.clients.remove(client)
            self._grant(waiter.conn)
            waiter.event.set()
            return True
        return False


@attrs.define(eq=False)
class Waiter:
    conn: Connection
    event: trio.Event = attrs.Factory(trio.Event)


#: The ASGI messages that start an answer: the turn ends there (an event stream or a push
#: socket may then go on for hours without holding one).
_STARTS = frozenset({"http.response.start", "websocket.accept", "websocket.close",
                     "websocket.http.response.start"})


def _admission(app: ASGIApp, turns: Turns) -> ASGIApp:
    """`app` behind the turns: a refused request is answered 503 before the app sees it, and
    a turn is given back once the answer starts (or the app returns)."""
    async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
        conn = turns.by_address.get(scope.get("client"))
        if conn is None:  # not one of ours
            await app(scope, receive, send)
            return
        if conn.refused:
            conn.refused = False
            await _refuse(scope, send)
            return

        async def starting(message: Message) -> None:
            if message["type"] in _STARTS:
                conn.answering = True
                turns.give_back(conn)
            await send(message)

        try:
            await app(scope, receive, starting)
        finally:
            conn.answering = False
            turns.give_back(conn)
            turns.charge(conn)
    return admitted


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013, "reason": "try again later"})
        return
    await send({"type": "http.response.start", "status": 503, "headers": _REFUSED})
    await send({"type": "http.response.body", "body": _BUSY})


async def serve_http(app: ASGIApp, config: Config, *,
                     shutdown_trigger: Callable[[], Awaitable[object]],
                     concurrency: int = 4,
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
    """Serve `app` on `config.bind` until `shutdown_trigger` returns, then stop accepting,
    close idle keep-alive connections, give the others `config.graceful_timeout` seconds and
    abort what is left. Reports the bound URLs through `task_status`. At most `concurrency`
    requests are handled at once (Turns)."""
    turns = Turns(concurrency)
    wrapped = wrap_app(_admission(_contained(app), turns),  # type: ignore[arg-type]
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
        conn = Connection(stream, turns)
        connections.add(conn)
        turns.by_address[conn.address] = conn
        try:
            with conn.scope:
                # hypercorn annotates the stream as an SSLStream; it needs a Stream with .socket
                await TCPServer(wrapped, config, context, ConnectionState({}),
                                conn).run()  # type: ignore[arg-type]
        except* Exception as failed:  # noqa: BLE001 - a Cancelled (the shutdown) goes on up
            conn.abort()
            log.warning("HTTP connection from %s dropped: %s", conn.peer, one_line(failed))
        finally:
            turns.give_back(conn)
            turns.by_address.pop(conn.address, None)
            connections.discard(conn)
            conn.socket.close()  # hypercorn's own close may have been cancelled

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as accepting:
                outer.start_soon(turns.dispatch)
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
