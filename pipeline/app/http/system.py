"""printpipe's own endpoints (pipeline, script rendering, config reload, metrics), OctoPrint's
system commands (what `system.additional_commands` stages declare) and the application-key
flow Home Assistant uses.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pipeline.app.http.bodies import script_context
from pipeline.app.http.context import api_of
from pipeline.app.http.support import BadRequest, json_error, read_json
from pipeline.app.keys import KeyRequestLimit, KeyStoreError, PollResult
from pipeline.app.system import SystemCommandFailed
from pipeline.errors import ConfigError, ConfigErrors, ScriptError

log = logging.getLogger("printpipe.http")

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
    context = script_context(body)
    try:
        lines = api.control.render_script(name, context)
    except ScriptError as exc:
        raise BadRequest(str(exc)) from None
    except LookupError as exc:
        raise BadRequest(str(exc.args[0]), status=404) from None
    return JSONResponse({"name": name, "lines": lines, "live": api.control.connected})


async def reload(request: Request) -> Response:
    """Re-read the config: what can apply live does at once; the answer lists every changed
    key of this printer (`changed`), the ones applied (`applied`), the ones waiting for the
    printer to reconnect or for a restart with why (`reconnect`, `restart`), appliers that
    failed, and the printers the reload started (`added`) and stopped (`removed`)."""
    api = api_of(request)
    if api.reload is None:
        raise BadRequest("the configuration was not reloaded: this service was not started "
                         "from a config file")
    try:
        done = api.reload()
    except ConfigErrors as exc:
        raise BadRequest("the configuration was not reloaded: "
                         + "; ".join(str(e) for e in exc.errors)) from None
    except ConfigError as exc:
        raise BadRequest(f"the configuration was not reloaded: {exc}") from None
    report = done.reports.get(api.control.name)  # this printer's part: the others' own
    return JSONResponse({**(report.to_json() if report is not None else {}),
                         "added": list(done.added), "removed": list(done.removed)})


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
    _metric(out, "probes_total", "counter", "numbered probes sent after a missing ok",
            [("", s.probes if s else 0)])
    _metric(out, "send_window_lines", "gauge", "lines that may be in flight now",
            [("", s.send_window if s else 0)])
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
    for source in control.metrics_sources.values():
        for name, kind, help_, value in source():
            _metric(out, name, kind, help_, [("", value)])
    return PlainTextResponse("\n".join(out) + "\n",
                             media_type="text/plain; version=0.0.4; charset=utf-8")


# ---- system commands ----------------------------------------------------------------------
#: OctoPrint's sources: printpipe configures no core or custom commands; stages add plugin ones.
SOURCES = ("core", "custom", "plugin")


def _command_specs(request: Request, source: str) -> list[dict[str, Any]]:
    if source != "plugin":
        return []
    out = []
    for cmd in api_of(request).control.system_commands():
        spec: dict[str, Any] = {"source": "plugin", "action": cmd.action, "name": cmd.name}
        if cmd.confirm:
            spec["confirm"] = cmd.confirm
        spec["resource"] = str(request.url_for("system_command", source="plugin",
                                               action=cmd.action))
        out.append(spec)
    return out


async def system_commands(request: Request) -> Response:
    return JSONResponse({source: _command_specs(request, source) for source in SOURCES})


async def system_commands_of(request: Request) -> Response:
    source = request.path_params["source"]
    if source not in SOURCES:
        raise BadRequest(f"unknown source {source!r} (core, custom, plugin)", status=404)
    return JSONResponse(_command_specs(request, source))


async def system_command(request: Request) -> Response:
    source, action = request.path_params["source"], request.path_params["action"]
    if source != "plugin":
        raise BadRequest(f"no system command {source}/{action}", status=404)
    try:
        await api_of(request).control.run_system_command(action)
    except LookupError as exc:
        raise BadRequest(str(exc.args[0]), status=404) from None
    except SystemCommandFailed as exc:
        raise BadRequest(str(exc), status=500) from None
    return Response(status_code=204)


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
    client = request.client.host if request.client else None
    try:
        token = api.keys.request(app, user, client=client)
    except KeyRequestLimit as exc:
        raise BadRequest(str(exc), status=429) from None
    except KeyStoreError as exc:
        raise BadRequest(str(exc)) from None
    log.warning("application %r asks for an API key (from %s): approve it with "
                "`printpipe keys approve %s`", app, client or "?", token[:8])
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
    Route("/api/pipeline", pipeline, methods=["GET"]),
    Route("/api/scripts/{name}/render", render_script, methods=["POST"]),
    Route("/api/system/reload", reload, methods=["POST"]),
    Route("/api/system/commands", system_commands, methods=["GET"]),
    Route("/api/system/commands/{source}", system_commands_of, methods=["GET"]),
    Route("/api/system/commands/{source}/{action}", system_command, methods=["POST"],
          name="system_command"),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/plugin/appkeys/probe", appkeys_probe, methods=["GET"]),
    Route("/plugin/appkeys/request", appkeys_request, methods=["POST"]),
    Route("/plugin/appkeys/request/{token}", appkeys_poll, methods=["GET"], name="appkeys_poll"),
]
