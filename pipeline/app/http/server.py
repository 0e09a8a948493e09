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

Not served: TLS and the ASGI lifespan protocol (the service is set up by serve.py, and the app
has no startup or shutdown handlers).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial
from typing import final

import h2.exceptions
import h11
import trio
import wsproto.utilities
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("printpipe.http")

#: Seconds a connection may go without the kernel taking a byte of a pending write before the
#: client counts as gone (it stopped reading, or vanished) and the connection is aborted.
WRITE_DEADLINE = 10.0

#: Seconds a connection's handling may go on after either side ended its data (a half-close, or
#: hypercorn closing): h11 ends at once; hypercorn's HTTP/2 after an h2c upgrade never would.
EOF_GRACE = 2.0

_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST at once


@final
class Connection(trio.abc.HalfCloseableStream):
    """An accepted socket whose writes have a deadline on progress: `send_all` may take as
    long as the client keeps reading, but WRITE_DEADLINE seconds without the kernel taking a
    byte abort the connection and raise BrokenResourceError."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.scope = trio.CancelScope()  # the connection's handling: ended EOF_GRACE after EOF
        self.socket = stream.socket  # hypercorn reads the addresses from it
        try:
            self.peer = repr_socket_addr(self.socket.family, self.socket.getpeername())
        except OSError:  # already reset by the client
            self.peer = "?"

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


async def serve_http(app: ASGIApp, config: Config, *,
                     shutdown_trigger: Callable[[], Awaitable[object]],
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
    """Serve `app` on `config.bind` until `shutdown_trigger` returns, then stop accepting,
    close idle keep-alive connections, give the others `config.graceful_timeout` seconds and
    abort what is left. Reports the bound URLs through `task_status`."""
    wrapped = wrap_app(_contained(app),  # type: ignore[arg-type]
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
        conn = Connection(stream)
        connections.add(conn)
        try:
            with conn.scope:
                # hypercorn annotates the stream as an SSLStream; it needs a Stream with .socket
                await TCPServer(wrapped, config, context, ConnectionState({}),
                                conn).run()  # type: ignore[arg-type]
        except* Exception as failed:  # noqa: BLE001 - a Cancelled (the shutdown) goes on up
            conn.abort()
            log.warning("HTTP connection from %s dropped: %s", conn.peer, one_line(failed))
        finally:
            connections.discard(conn)
            conn.socket.close()  # hypercorn's own close may have been cancelled

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as accepting:
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
