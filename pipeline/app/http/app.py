"""The HTTP app: the Starlette application over the running service, served by server.py:
the route table of every endpoint module and the status page, error mapping and the
middleware stack.

Every error answers JSON `{"error": ...}`: BadRequest carries its status (400, 404, 409, 413),
anything unexpected is logged and answers 500 without a traceback. Paths are normalised
(`//api/printer` works) and bodies over the limit get 413 before they are read.

The stack, outermost first: path normalising, the Host check (without keys, or with
`http.host_names`), the body limit, the key check; then Starlette's routing.
"""

from __future__ import annotations

import logging

import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from pipeline.app.http import files, job, page, printer, stream, system
from pipeline.app.http.camera import timelapse
from pipeline.app.http.context import Api, HostCheck, KeyAuth
from pipeline.app.http.push import login, sockjs
from pipeline.app.http.sd import endpoints as sdcard
from pipeline.app.http.support import BadRequest, BodyLimit, NormalizePaths, json_error
from pipeline.errors import CommandRefused

log = logging.getLogger("printpipe.http")


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return json_error(exc.status, exc.message)


async def _refused(request: Request, exc: Exception) -> Response:
    """A command that must not reach the printer: nothing was queued."""
    return json_error(400, f"not sent: {exc}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return json_error(405, f"method {request.method} is not allowed on {request.url.path}")
    if exc.status_code == 404:
        return json_error(404, f"no such endpoint: {request.url.path}")
    return json_error(exc.status_code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return json_error(500, f"internal error ({type(exc).__name__}); see the server log")


def build_app(api: Api, body_limit: int) -> ASGIApp:
    routes = (printer.ROUTES + job.ROUTES + sdcard.ROUTES + files.ROUTES + stream.ROUTES
              + login.ROUTES + sockjs.ROUTES + system.ROUTES + timelapse.ROUTES + page.routes())
    app = Starlette(routes=routes, exception_handlers={
        BadRequest: _bad_request, CommandRefused: _refused, HTTPException: _http_error,
        Exception: _server_error})
    app.state.api = api
    limit = BodyLimit(KeyAuth(app, api.keys, anonymous=api.anonymous,
                              public=page.PUBLIC_PATHS, printer=api.control.name), body_limit)
    # with keys and no names, slicers may use any name
    host = HostCheck(limit, api.config.http.host_names, always=api.anonymous)
    api.extra["guards"] = Guards(limit, host)  # a config reload changes their settings
    return NormalizePaths(host)


@attrs.frozen
class Guards:
    body_limit: BodyLimit
    host_check: HostCheck
