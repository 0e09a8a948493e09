"""The service's HTTP front: which printer's OctoPrint-compatible app answers a request.

- The main port: `/printers/NAME/...` is printer NAME's whole app (API, push socket, event
  stream, page), as OctoPrint behind a reverse proxy with X-Script-Name: the app sees the
  rest of the path with `root_path` set to the prefix, so the URLs it hands out carry it.
  `/api/printers` is printpipe's own list of the printers (farm views); with more than one
  printer `/` is the page listing them (http/page.py's FARM_ASSETS). Everything else is the
  default printer's app (`default`, or the only one).
- A printer's own port (`http: port:` under its name): that printer's app, whole.

Each printer's app (http/app.py) holds that printer's control in its state: the endpoints act
on the printer of the app they were routed to, never on one looked up globally. A printer
whose tasks failed and are starting again answers 503 with why.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.app.http import page
from pipeline.app.http.context import HostCheck, KeyAuth
from pipeline.app.http.support import json_error
from pipeline.app.keys import KeyStore
from pipeline.app.printers.snapshot import farm_row
from pipeline.app.service import Service

PREFIX = "/printers/"
_SLASHES = re.compile(r"//+")


class PrinterApps:
    """The printers' apps by name, kept by `printpipe serve` as printers start and stop."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.apps: dict[str, ASGIApp] = {}

    async def serve(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.apps.get(name)
        if app is not None:
            await app(scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket"):
            return
        why = self.service.failures.get(name, "it is starting")
        await json_error(503, f"printer {name} is not running: {why}")(scope, receive, send)

    def port_app(self, name: str) -> ASGIApp:
        """The app of printer `name`'s own port."""
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await self.serve(name, scope, receive, send)
        return app


def main_app(apps: PrinterApps, keys: KeyStore, *, anonymous: bool,
             host_names: Callable[[], tuple[str, ...]]) -> ASGIApp:
    """The main port's app: the prefixes, /api/printers, and the default printer."""
    own = Starlette(routes=[Route("/api/printers", _lister(apps.service), methods=["GET"]),
                            *page.routes(page.FARM_ASSETS)])
    listing = HostCheck(KeyAuth(own, keys, anonymous=anonymous, public=page.FARM_PATHS),
                        host_names(), always=anonymous)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        path = scope["path"]
        if "//" in path:
            path = _SLASHES.sub("/", path)
        if path.startswith(PREFIX):
            name, slash, rest = path[len(PREFIX):].partition("/")
            if name not in apps.service.config.printers:
                await _unknown(apps.service, name)(scope, receive, send)
                return
            if not slash and scope["type"] == "http":  # /printers/NAME: the page wants a slash
                await Response(status_code=308, headers={
                    "location": scope.get("root_path", "") + path + "/"})(scope, receive, send)
                return
            prefix = PREFIX + name
            child = dict(scope, path="/" + rest, root_path=scope.get("root_path", "") + prefix)
            raw = scope.get("raw_path")
            if raw:
                child["raw_path"] = b"/" + raw.split(b"/", 3)[-1] if raw.count(b"/") >= 3 \
                    else b"/"
            await apps.serve(name, child, receive, send)
            return
        if path == "/api/printers" or (path in page.FARM_PATHS
                                       and len(apps.service.config.printers) > 1):
            await listing(scope, receive, send)
            return
        default = apps.service.config.default
        if default is None:
            names = ", ".join(apps.service.config.printers)
            await json_error(404, f"this service drives several printers ({names}) and none "
                                  f"is named default: use {PREFIX}NAME/ or each printer's own "
                                  "port")(scope, receive, send)
            return
        await apps.serve(default, scope, receive, send)
    return app


def _unknown(service: Service, name: str) -> Response:
    names = ", ".join(service.config.printers)
    return json_error(404, f"no printer named {name!r} (the printers are {names})")


def _lister(service: Service) -> Callable[[Request], object]:
    async def printers(request: Request) -> Response:
        """GET /api/printers: every printer with its state, job and progress."""
        return JSONResponse({"printers": printer_rows(service)})
    return printers


def printer_rows(service: Service) -> list[dict[str, object]]:
    rows = []
    for name in service.config.printers:
        control = service.printers.get(name)
        if control is None:
            rows.append({"name": name, "state": "Offline after error", "connected": False,
                         "error": service.failures.get(name, "starting"), "waiting": None,
                         "file": None, "progress": None, "printing": False,
                         "temperatures": {}})
        else:
            rows.append(farm_row(name, control.status()))
    return rows

