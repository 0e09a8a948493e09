"""What every HTTP endpoint shares: the request context (`Api`, reached through
`api_of(request)`), the identity a request was authenticated as, and the guards in front of
every endpoint: `KeyAuth` (X-Api-Key, `Authorization: Bearer` or `?apikey=`; without keys, no
form a web page could post and no websocket from another site's page) and `HostCheck` (the
Host header names this host: no DNS rebinding; websockets too).

The browser threat: any page the user opens may send this host what an HTML form or a "simple"
CORS request can carry (GET/HEAD/POST with form, multipart or text/plain bodies and no custom
headers) without asking first, and a page whose DNS name was rebound to this host reads the
answers too. A key stops both; without keys, the two guards do.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.app.http.support import json_error
from pipeline.app.keys import KeyStore, redact
from pipeline.app.printers.control import PrinterControl
from pipeline.app.reload import ServiceReload
from pipeline.config.reader import HostConfig
from pipeline.files.storage import LocalStorage

log = logging.getLogger("printpipe.http")

#: Paths served without a key: the application-key flow is how a client gets one (the one
#: that changes anything, POST .../request, reads only Content-Type: application/json), and
#: SockJS's `/info`, which a SockJS client asks before it can send any key.
OPEN_PATHS = ("/plugin/appkeys/probe", "/plugin/appkeys/request", "/sockjs/info")

#: Methods that change nothing; a browser may send them from any page.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

FORM_REFUSED = ("without an API key, a request that changes something needs "
                "Content-Type: application/json or an X-Requested-With header (any value), "
                "which no web page on another site can send without asking first")


@attrs.define(eq=False)
class Api:
    """What every endpoint reaches through `request.app.state.api`: one printer's app. Its
    `control` is the one printer the endpoints act on (each printer has its own app)."""

    control: PrinterControl
    keys: KeyStore
    storage: LocalStorage
    nursery: trio.Nursery            # background work (file analysis)
    version: str
    uuid: str
    anonymous: bool = False          # serving without keys (loopback only)
    extra: dict[str, Any] = attrs.Factory(dict)  # per-area state (files index, ...)
    #: Re-reads the service's config (the service's reload: every printer's part).
    reload: Callable[[], ServiceReload] | None = None

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
    wrong one; nothing behind it runs for a refused request. With `anonymous`, a request
    without a key is served, but one that changes something only if `preflighted`. GET and
    HEAD of a `public` path (exactly; the status page's static files) need no key."""

    def __init__(self, app: ASGIApp, keys: KeyStore, *, anonymous: bool = False,
                 public: frozenset[str] = frozenset(), printer: str | None = None) -> None:
        """`printer`: the printer this app serves (an app key limited to another is
        refused)."""
        self.app = app
        self.keys = keys
        self.printer = printer
        self.anonymous = anonymous
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if (scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS)
                or (scope["path"] in self.public and scope["method"] in ("GET", "HEAD"))):
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
            if not self.anonymous:
                await refuse(401, "an API key is required (X-Api-Key header)")(
                    scope, receive, send)
            elif scope["method"] not in SAFE_METHODS and not preflighted(headers):
                log.info("refused %s %s without a key or a non-form header from %s",
                         scope["method"], scope["path"], peer_address(scope))
                await refuse(403, FORM_REFUSED)(scope, receive, send)
            else:
                scope["printpipe.identity"] = "anonymous"
                await self.app(scope, receive, send)
            return
        who = self.keys.identify(key, self.printer)
        if who is None:
            log.info("refused API key %s from %s", redact(key),
                     peer_address(scope))
            await refuse(403, "invalid API key")(scope, receive, send)
            return
        scope["printpipe.identity"] = who
        scope["printpipe.key"] = key  # a passive login binds its session to it
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A websocket authenticates inside (the push socket's `auth` message: browsers
        cannot set headers on one). Without keys a browser opens one from any page it likes
        and no CORS rule stops it reading, so only pages served by this host may."""
        if self.anonymous and not same_origin(scope):
            origin = dict(scope.get("headers", ())).get(b"origin", b"").decode("latin-1")
            log.info("refused a websocket from origin %r (%s)", origin[:100],
                     peer_address(scope))
            await refuse(403, "without an API key, a websocket may only be opened by a "
                              "page this printer serves (its Origin must match its Host)")(
                scope, receive, send)
            return
        await self.app(scope, receive, send)


def refuse(status: int, message: str) -> JSONResponse:
    """A refusal sent before the body is read: the connection closes after it, so a client
    still sending never has its next request read from the middle of this body."""
    response = json_error(status, message)
    response.headers["connection"] = "close"
    return response


def peer_address(scope: Scope) -> str:
    return str((scope.get("client") or ("?",))[0])


def _query_key(scope: Scope) -> str:
    """`?apikey=` as OctoPrint accepts it (browsers' EventSource cannot set headers)."""
    qs = scope.get("query_string", b"").decode("latin-1")
    for part in qs.split("&"):
        name, _, value = part.partition("=")
        if name == "apikey" and value:
            return value
    return ""


def same_origin(scope: Scope) -> bool:
    """Whether a request's Origin header is absent (not a browser) or names the host and port
    its Host header names (a page this host served)."""
    headers = dict(scope.get("headers", ()))
    origin = headers.get(b"origin")
    if origin is None:
        return True
    _, sep, rest = origin.decode("latin-1").partition("://")
    return bool(sep) and rest.lower() == headers.get(b"host", b"").decode("latin-1").lower()


def preflighted(headers: Mapping[bytes, bytes]) -> bool:
    """Whether a browser would have had to ask (a CORS preflight, which this host never
    answers) before sending a request with these (lower-cased) headers from another site: a
    JSON body, or an X-Requested-With, X-Api-Key or `Authorization: Bearer` header (any
    value: the name alone needs the preflight). Forms and simple requests carry none of them;
    a Basic Authorization does not count, as browsers re-send cached ones by themselves."""
    kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    return (kind == b"application/json" or b"x-requested-with" in headers
            or b"x-api-key" in headers
            or headers.get(b"authorization", b"")[:7].lower() == b"bearer ")


class HostCheck:
    """ASGI middleware: 421 Misdirected Request unless the Host header is an IP address,
    `localhost` or one of `names`. A page whose own DNS name was rebound to this host's
    address sends that name, so it is refused before any endpoint runs. With keys and no
    names given (`always` false) every name passes: slicers may use any name for the host.
    `set_names` changes the names at once (a config reload)."""

    def __init__(self, app: ASGIApp, names: Iterable[str], *, always: bool = True) -> None:
        self.app = app
        self.always = always
        self.set_names(names)

    def set_names(self, names: Iterable[str]) -> None:
        given = frozenset(names)
        self.checking = self.always or bool(given)
        self.names = given | {"localhost"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.checking:
            host = next((v for k, v in scope["headers"] if k == b"host"), None)
            # no Host at all is HTTP/1.0 from a program: browsers always send it
            if host is not None and not self.allows(host.decode("latin-1")):
                name = host.decode("latin-1")[:100]
                log.info("refused Host %r from %s", name, peer_address(scope))
                message = (f"this printer does not answer to the name {name!r}: use its IP "
                           "address, localhost or a name listed in http.host_names")
                await refuse(421, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def allows(self, host: str) -> bool:
        """Whether `host` (a Host header: name or address, optional port) is acceptable."""
        name = host_name(host)
        if name in self.names:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True     # an address is no DNS name: it cannot have been rebound


def host_name(host: str) -> str:
    """The name or address of a Host header: port, IPv6 brackets and a trailing dot removed,
    lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")
