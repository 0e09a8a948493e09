"""What every HTTP endpoint shares: the request context (`Api`, reached through
`api_of(request)`), the identity a request was authenticated as, and the key-checking
middleware (`KeyAuth`: X-Api-Key, `Authorization: Bearer` or `?apikey=`).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.app.control import Control
from pipeline.app.http.support import json_error
from pipeline.app.keys import KeyStore, redact
from pipeline.config.reader import HostConfig
from pipeline.files.storage import LocalStorage

log = logging.getLogger("printpipe.http")

#: Paths served without a key: the application-key flow is how a client gets one.
OPEN_PATHS = ("/plugin/appkeys/probe", "/plugin/appkeys/request")


@attrs.define(eq=False)
class Api:
    """What every endpoint reaches through `request.app.state.api`."""

    control: Control
    keys: KeyStore
    storage: LocalStorage
    nursery: trio.Nursery            # background work (file analysis)
    version: str
    uuid: str
    anonymous: bool = False          # serving without keys (loopback only)
    extra: dict[str, Any] = attrs.Factory(dict)  # per-area state (files index, ...)

    @property
    def config(self) -> HostConfig:
        return self.control.config


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
