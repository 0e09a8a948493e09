"""printpipe's own endpoints (event stream, pipeline, script rendering, config reload, metrics)
and the application-key flow Home Assistant uses.

The event stream is a raw ASGI endpoint so every write has a deadline: a client that stops
reading loses events on its bounded bus queue and, once a write stalls or its queue overflows,
is dropped. It never slows the printer.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pipeline.app.keys import KeyStoreError, PollResult
from pipeline.errors import ConfigError, ConfigErrors, ScriptError
from pipeline.config.sections import event_problem
from pipeline.events.names import Event, canonical
from pipeline.app.http.context import Api, api_of, identity_of
from pipeline.app.http.support import BadRequest, json_error, read_json, sse_frame

log = logging.getLogger("printpipe.http")

#: Seconds a stream write may take before the client counts as gone; keep-alive period.
WRITE_DEADLINE = 10.0
KEEPALIVE = 15.0
STREAM_QUEUE = 256


# ---- the event stream ---------------------------------------------------------------------
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
        client = scope.get("client") or ("?", 0)
        address = client[0]
        sub = api.control.subscribe(f"http {address}:{client[1]}", events=wanted,
                                    size=STREAM_QUEUE)
        streams: set[Any] = api.extra.setdefault("streams", set())
        streams.add(sub)
        api.control.publish(Event.CLIENT_OPENED, {"remoteAddress": address})
        api.control.publish(Event.CLIENT_AUTHED, {"remoteAddress": address,
                                                  "username": identity_of(request)})
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
                await _pump(api, sub, send)
                nursery.cancel_scope.cancel()
        finally:
            streams.discard(sub)
            sub.close()
            api.control.publish(Event.CLIENT_CLOSED, {"remoteAddress": address})


async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _write(send: Send, data: bytes, more: bool = True) -> bool:
    with trio.move_on_after(WRITE_DEADLINE):
        await send({"type": "http.response.body", "body": data, "more_body": more})
        return True
    return False


async def _pump(api: Api, sub: Any, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no")]})
    if not await _write(send, b": printpipe event stream\n\n"):
        return
    while True:
        ev = None
        with trio.move_on_after(KEEPALIVE):
            try:
                ev = await sub.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                await _write(send, b"", more=False)  # closed cleanly: shutdown
                return
        if sub.dropped:
            log.warning("event stream %s is not keeping up (%d events dropped): closing it",
                        sub.name, sub.dropped)
            await _write(send, sse_frame("StreamOverflow", {"dropped": sub.dropped}), more=False)
            return
        data = b": keep-alive\n\n" if ev is None else sse_frame(ev.name, ev.payload)
        if not await _write(send, data):
            log.warning("event stream %s stalled for %gs: dropping the client", sub.name,
                        WRITE_DEADLINE)
            return


def close_streams(api: Api) -> None:
    """End every event stream cleanly (the server is shutting down)."""
    for sub in list(api.extra.get("streams", ())):
        sub.close()  # its reader sees the end of the channel and finishes the response


# ---- pipeline, scripts, reload, metrics -----------------------------------------------------
async def pipeline(request: Request) -> Response:
    api = api_of(request)
    phases: dict[str, list[dict[str, Any]]] = {}
    for st in api.control.pipeline.statistics():
        phases.setdefault(st.phase, []).append({
            "id": st.id, "order": st.order, "kind": st.kind, "handler": st.target,
            "calls": st.calls, "rewrites": st.rewrites, "suppressions": st.suppressions,
            "errors": st.errors, "time_ms": round(st.time_ms, 3)})
    return JSONResponse({"phases": phases})


async def render_script(request: Request) -> Response:
    api = api_of(request)
    name = request.path_params["name"]
    body = await read_json(request) if await request.body() else {}
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise BadRequest("context must be a JSON object")
    try:
        lines = api.control.render_script(name, context)
    except ScriptError as exc:
        raise BadRequest(str(exc)) from None
    except LookupError as exc:
        raise BadRequest(str(exc.args[0]), status=404) from None
    return JSONResponse({"name": name, "lines": lines, "live": api.control.connected})


async def reload(request: Request) -> Response:
    api = api_of(request)
    try:
        changed = api.control.reload()
    except ConfigErrors as exc:
        raise BadRequest("the configuration was not reloaded: "
                         + "; ".join(str(e) for e in exc.errors)) from None
    except ConfigError as exc:
        raise BadRequest(f"the configuration was not reloaded: {exc}") from None
    api.storage.pipeline = api.control.pipeline
    return JSONResponse({"reloaded": True, "reconnect_needed": changed})


def _metric(out: list[str], name: str, kind: str, help_: str,
            samples: list[tuple[str, float]]) -> None:
    out.append(f"# HELP printpipe_{name} {help_}")
    out.append(f"# TYPE printpipe_{name} {kind}")
    for labels, value in samples:
        out.append(f"printpipe_{name}{labels} {value:g}")


async def metrics(request: Request) -> Response:
    control = api_of(request).control
    out: list[str] = []
    s = control.statistics()
    status = control.status()
    _metric(out, "connected", "gauge", "1 when a printer session is open",
            [("", 1 if status.connected else 0)])
    _metric(out, "lines_sent_total", "counter", "lines written to the printer this session",
            [("", s.lines_sent if s else 0)])
    _metric(out, "lines_acked_total", "counter", "lines the printer acknowledged",
            [("", s.lines_acked if s else 0)])
    _metric(out, "resends_total", "counter", "resend requests from the firmware",
            [("", s.resends if s else 0)])
    _metric(out, "timeouts_total", "counter", "communication timeouts",
            [("", s.timeouts if s else 0)])
    _metric(out, "queue_depth", "gauge", "commands waiting in the host's queues", [
        ('{queue="manual"}', s.queued_manual if s else 0),
        ('{queue="job"}', s.queued_job if s else 0),
        ('{queue="in_flight"}', s.in_flight if s else 0)])
    stats = control.bus.statistics()
    _metric(out, "events_dropped_total", "counter", "events a subscriber lost (it was slow)",
            [(f'{{subscriber="{b.name}"}}', b.dropped) for b in stats])
    _metric(out, "events_delivered_total", "counter", "events delivered to a subscriber",
            [(f'{{subscriber="{b.name}"}}', b.delivered) for b in stats])
    temps = status.temperatures if status.connected else {}
    for kind in ("actual", "target"):
        _metric(out, f"temperature_{kind}_celsius", "gauge", f"{kind} heater temperatures",
                [(f'{{heater="{h}"}}', t[kind]) for h, t in temps.items()  # type: ignore[misc]
                 if t.get(kind) is not None])
    _metric(out, "job_progress_ratio", "gauge", "progress of the current print (0..1)",
            [("", status.job.progress if status.job else 0)])
    return PlainTextResponse("\n".join(out) + "\n",
                             media_type="text/plain; version=0.0.4; charset=utf-8")


# ---- application keys ---------------------------------------------------------------------
async def appkeys_probe(request: Request) -> Response:
    return Response(status_code=204)


async def appkeys_request(request: Request) -> Response:
    api = api_of(request)
    body = await read_json(request)
    app = body.get("app")
    user = body.get("user")
    if not isinstance(app, str) or not app.strip():
        raise BadRequest("field 'app' (the application's name) is required")
    if user is not None and not isinstance(user, str):
        raise BadRequest("field 'user' must be a string")
    try:
        token = api.keys.request(app, user)
    except KeyStoreError as exc:
        raise BadRequest(str(exc), status=429 if "too many" in str(exc) else 400) from None
    log.warning("application %r asks for an API key: approve it with "
                "`printpipe keys approve %s`", app, token[:8])
    location = str(request.url_for("appkeys_poll", token=token))
    return JSONResponse({"app_token": token}, status_code=201, headers={"Location": location})


async def appkeys_poll(request: Request) -> Response:
    api = api_of(request)
    result, key = api.keys.poll(request.path_params["token"])
    if result is PollResult.GRANTED:
        return JSONResponse({"api_key": key})
    if result is PollResult.PENDING:
        return JSONResponse({"message": "awaiting approval: run `printpipe keys approve "
                                        "TOKEN` on the printer host"}, status_code=202)
    return json_error(404, "no such request, or it was denied or expired")


ROUTES = [
    Route("/api/events", EventStream(), methods=["GET"]),
    Route("/api/pipeline", pipeline, methods=["GET"]),
    Route("/api/scripts/{name}/render", render_script, methods=["POST"]),
    Route("/api/system/reload", reload, methods=["POST"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/plugin/appkeys/probe", appkeys_probe, methods=["GET"]),
    Route("/plugin/appkeys/request", appkeys_request, methods=["POST"]),
    Route("/plugin/appkeys/request/{token}", appkeys_poll, methods=["GET"], name="appkeys_poll"),
]
