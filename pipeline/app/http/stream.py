"""The event stream (`GET /api/events`): Server-Sent Events from the printer's bus, each
event's data with a `printer` key naming it, with an optional `?events=` filter; it
publishes ClientOpened/ClientAuthed/ClientClosed. `client_subscription`
is how every client (this stream, the push socket) takes its own bus subscriber.

A client that stops reading never slows the printer: events wait on its own bounded bus queue,
and it is dropped when that queue overflows or when a write makes no progress for
server.WRITE_DEADLINE seconds. The write deadline lives in the server's connections, not here:
hypercorn shields its socket writes, so a deadline around `send` would never fire (server.py
says why); an aborted connection reaches this endpoint as `http.disconnect`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pipeline.app.http.context import Api, api_of, identity_of, peer_address
from pipeline.app.http.support import BadRequest, json_error, sse_frame
from pipeline.config.sections import event_problem
from pipeline.events.names import Event, canonical
from pipeline.fanout.bus import Subscription

log = logging.getLogger("printpipe.http")

#: Seconds between keep-alive comments on a quiet stream.
KEEPALIVE = 15.0
#: Events a client may fall behind by before it is dropped.
STREAM_QUEUE = 256


def _filter(query: str) -> frozenset[str] | None:
    if not query:
        return None
    names = [n.strip() for n in query.split(",") if n.strip()]
    bad = [n for n in names if event_problem(n)]
    if bad:
        raise BadRequest(f"unknown event name(s) in ?events=: {', '.join(bad)}")
    return frozenset(canonical(n) for n in names)


class EventStream:
    """GET /api/events: `event: <Name>` / `data: <json>` frames from the bus."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        api = api_of(request)
        try:
            wanted = _filter(request.query_params.get("events", ""))
        except BadRequest as exc:
            await json_error(exc.status, exc.message)(scope, receive, send)
            return
        with client_subscription(api, scope, "http", events=wanted) as sub:
            api.control.publish(Event.CLIENT_AUTHED, {"remoteAddress": peer_address(scope),
                                                      "username": identity_of(request)})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
                await _pump(api, sub, send)
                nursery.cancel_scope.cancel()


@contextmanager
def client_subscription(api: Api, scope: Scope, kind: str, *,
                        events: frozenset[str] | None) -> Iterator[Subscription]:
    """A client's own bus subscriber (a bounded queue of STREAM_QUEUE events) for as long as
    the block runs, published as ClientOpened / ClientClosed; `close_streams` ends it at
    shutdown. The event stream and the push socket both take theirs here."""
    address, port = scope.get("client") or ("?", 0)
    sub = api.control.subscribe(f"{kind} {address}:{port}", events=events, size=STREAM_QUEUE)
    streams: set[Subscription] = api.extra.setdefault("streams", set())
    streams.add(sub)
    api.control.publish(Event.CLIENT_OPENED, {"remoteAddress": address})
    try:
        yield sub
    finally:
        streams.discard(sub)
        sub.close()
        api.control.publish(Event.CLIENT_CLOSED, {"remoteAddress": address})


def overflowed(sub: Subscription, what: str) -> bool:
    """Whether `sub` lost events because its client did not keep up (then it is logged: the
    caller drops the client)."""
    if sub.dropped:
        log.warning("%s%s %s is not keeping up (%d events dropped): closing it", sub.bus.label,
                    what, sub.name, sub.dropped)
    return bool(sub.dropped)


async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _body(send: Send, data: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def _pump(api: Api, sub: Subscription, send: Send) -> None:
    name = api.control.name  # every event's data carries the printer's name
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no")]})
    await _body(send, b": printpipe event stream\n\n")
    while True:
        ev = None
        with trio.move_on_after(KEEPALIVE):
            try:
                ev = await sub.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                await _body(send, b"", more=False)  # closed cleanly: shutdown
                return
        if overflowed(sub, "event stream"):
            await _body(send, sse_frame("StreamOverflow", {"dropped": sub.dropped}), more=False)
            return
        await _body(send, b": keep-alive\n\n" if ev is None
                    else sse_frame(ev.name, {**ev.payload, "printer": name}))


def close_streams(api: Api) -> None:
    """End every event stream cleanly (the server is shutting down)."""
    for sub in list(api.extra.get("streams", ())):
        sub.close()  # its reader sees the end of the channel and finishes the response


ROUTES = [Route("/api/events", EventStream(), methods=["GET"])]
