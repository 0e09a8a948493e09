"""The passive login (`POST /api/login`) and the sessions it hands out: the `session` a push
socket's `auth` names (`name:session`), as OctoPrint's clients obtain it with only an API key.

A session is a random token kept in memory (a restart ends them all, as OctoPrint's), bound to
the user and the key it was issued for: stale after SESSION_STALE seconds unused, and void once
that key no longer names the same user (revoked, or a new `http.api_key` after a reload).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import attrs
from python_multipart.multipart import parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.app.http.context import Api, api_of, identity_of, peer_address
from pipeline.app.http.support import BadRequest, read_json
from pipeline.app.keys import KeyStore

log = logging.getLogger("printpipe.http")

#: Seconds a login session may go unused before it no longer authenticates a socket
#: (OctoPrint's `accessControl.sessionStaleAfter` default).
SESSION_STALE = 15 * 60.0
#: Sessions kept at once; the least recently used goes first (apps log in at every reconnect).
MAX_SESSIONS = 256
#: Bytes a form-encoded login may have (`passive=True` is 12).
MAX_FORM = 4096


@attrs.define
class LoginSession:
    name: str
    key: str | None        # the API key it was issued for; None in anonymous mode
    used: float


class Sessions:
    """Passive-login sessions, in memory (a restart ends them, as OctoPrint's): a random token
    bound to the name and the key it was issued for, stale after SESSION_STALE seconds unused,
    and void once that key no longer names the same user (revoked, or a new `http.api_key`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_token: dict[str, LoginSession] = {}

    def issue(self, name: str, key: str | None) -> str:
        self._expire()
        while len(self._by_token) >= MAX_SESSIONS:
            del self._by_token[min(self._by_token, key=lambda t: self._by_token[t].used)]
        token = secrets.token_hex(16)
        self._by_token[token] = LoginSession(name, key, self._clock())
        return token

    def check(self, name: str, token: str, keys: KeyStore, *, anonymous: bool) -> bool:
        """Whether `name:token` is a live session; using it keeps it alive."""
        self._expire()
        found = self._by_token.get(token)
        if found is None or found.name != name:
            return False
        valid = (keys.identify(found.key) == name if found.key is not None else anonymous)
        if not valid:
            del self._by_token[token]
            return False
        found.used = self._clock()
        return True

    def _expire(self) -> None:
        cutoff = self._clock() - SESSION_STALE
        for token in [t for t, s in self._by_token.items() if s.used < cutoff]:
            del self._by_token[token]


def sessions_of(api: Api) -> Sessions:
    sessions: Sessions = api.extra.setdefault("sessions", Sessions())
    return sessions


async def login_body(request: Request) -> dict[str, Any]:
    """The login's fields: a JSON object, or a form (`passive=True`, as `octoprint_client`
    posts it; OctoPrint takes both, and any value of `passive`)."""
    kind, _ = parse_options_header(request.headers.get("content-type"))
    if kind != b"application/x-www-form-urlencoded":
        return await read_json(request) if await request.body() else {}
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM:
            raise BadRequest(f"a login form over {MAX_FORM} bytes", status=413)
    try:
        fields = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"malformed login form: {exc}") from None
    return {name: values[-1] for name, values in fields.items()}


async def login(request: Request) -> Response:
    """Passive login: the key's user as OctoPrint's user record, with a `session` for the
    push socket's `auth`."""
    body = await login_body(request)
    if "passive" not in body and "user" not in body:
        raise BadRequest("only passive login ({\"passive\": true}) is supported: "
                         "authenticate with an API key")
    name = identity_of(request)
    session = sessions_of(api_of(request)).issue(name, request.scope.get("printpipe.key"))
    log.info("passive login of %s from %s", name, peer_address(request.scope))
    return JSONResponse({"name": name, "active": True, "admin": True, "user": True,
                         "groups": ["admins", "users"], "permissions": [],
                         "needs": {"role": ["admin", "user"]}, "roles": ["admin", "user"],
                         "apikey": None, "settings": {}, "session": session,
                         "_is_external_client": False, "_login_mechanism": "apikey",
                         "_credentials_seen": False})


ROUTES = [Route("/api/login", login, methods=["POST"])]
