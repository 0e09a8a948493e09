"""The HTTP app: a Starlette application over the running service, served by hypercorn's trio
worker (serve.py). Here live the shared request context (`Api`), authentication, error
mapping and the route table; the endpoints live in api_*.py by area.

Every error answers JSON `{"error": ...}`: BadRequest carries its status (400, 404, 409, 413),
anything unexpected is logged and answers 500 without a traceback. Paths are normalised
(`//api/printer` works) and bodies over the limit get 413 before they are read.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .appkeys import KeyStore, redact
from .http_support import BadRequest, BodyLimit, NormalizePaths, json_error

if TYPE_CHECKING:
    from .service import Service
    from .storage import LocalStorage

log = logging.getLogger("printpipe.http")

#: Paths served without a key: the application-key flow is how a client gets one.
OPEN_PATHS = ("/plugin/appkeys/probe", "/plugin/appkeys/request")


@attrs.define(eq=False)
class Api:
    """What every endpoint reaches through `request.app.state.api`."""

    service: Service
    keys: KeyStore
    storage: LocalStorage
    nursery: trio.Nursery            # background work (file analysis)
    version: str
    uuid: str
    anonymous: bool = False          # serving without keys (loopback only)
    extra: dict[str, Any] = attrs.Factory(dict)  # per-area state (files index, ...)

    @property
    def config(self) -> Any:
        return self.service.config


def api_of(request: Request) -> Api:
    return request.app.state.api


def identity_of(request: Request) -> str:
    """The name of the key the request was authenticated with."""
    return request.scope.get("printpipe.identity", "anonymous")


class KeyAuth:
    """ASGI middleware: X-Api-Key or `Authorization: Bearer`; 401 without a key, 403 with a
    wrong one; nothing behind it runs for a refused request."""

    def __init__(self, app: ASGIApp, keys: KeyStore, *, anonymous: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.anonymous = anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
        if not key:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            if auth[:7].lower() == "bearer ":
                key = auth[7:].strip()
        if not key:
            key = _query_key(scope)
        if not key:
            if self.anonymous:
                scope["printpipe.identity"] = "anonymous"
                await self.app(scope, receive, send)
                return
            await json_error(401, "an API key is required (X-Api-Key header)")(scope, receive, send)
            return
        who = self.keys.identify(key)
        if who is None:
            log.info("refused API key %s from %s", redact(key),
                     (scope.get("client") or ("?",))[0])
            await json_error(403, "invalid API key")(scope, receive, send)
            return
        scope["printpipe.identity"] = who
        await self.app(scope, receive, send)


def _query_key(scope: Scope) -> str:
    """`?apikey=` as OctoPrint accepts it (browsers' EventSource cannot set headers)."""
    qs = scope.get("query_string", b"").decode("latin-1")
    for part in qs.split("&"):
        name, _, value = part.partition("=")
        if name == "apikey" and value:
            return value
    return ""


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return json_error(exc.status, exc.message)


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
    from . import api_files, api_job, api_printer, api_service
    routes = api_printer.ROUTES + api_job.ROUTES + api_files.ROUTES + api_service.ROUTES
    app = Starlette(routes=routes, exception_handlers={
        BadRequest: _bad_request, HTTPException: _http_error, Exception: _server_error})
    app.state.api = api
    return NormalizePaths(BodyLimit(KeyAuth(app, api.keys, anonymous=api.anonymous), body_limit))
