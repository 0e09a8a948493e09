"""The status page: `GET /` and its three assets (stylesheet, script, icon), static files shipped
as package data in `static/` and read once when the app is built. No build step, nothing from
another origin: the page works offline on the printer's own network. Its paths are relative,
so one printer's page works under its prefix (`/printers/NAME/`) as on its own port.

The page of several printers (`FARM_ASSETS`: `/` and `/farm.js` on the main port when the
service drives more than one) lists them from `GET /api/printers` and links each one's page.

The page itself needs no key (it holds no data): `PUBLIC_PATHS` are served by KeyAuth without
one, GET and HEAD only. Every API call the script makes carries the key, which never appears
in a request URL except the event stream's `?apikey=` (EventSource cannot send headers).

Every asset is served with a strict Content-Security-Policy (this origin only, plus the
configured webcam's origin for images; no inline script or style, no framing), nosniff, no
referrer and `Cache-Control: no-cache` with an ETag, so an upgraded printpipe is picked up at
the next load and an unchanged page costs a 304.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import urlsplit

import attrs
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.config.camera import WebcamSpec

#: Where the files live, inside this package (pyproject's package-data ships them).
ASSET_FOLDER = "static"

#: Path -> (file in ASSET_FOLDER, media type).
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
}

#: The main port's page of several printers (the stylesheet and icon are the printer page's).
FARM_ASSETS = {
    "/": ("farm.html", "text/html; charset=utf-8"),
    "/farm.js": ("farm.js", "text/javascript; charset=utf-8"),
    "/page.css": ASSETS["/page.css"],
    "/icon.svg": ASSETS["/icon.svg"],
}

#: Served without a key (GET and HEAD).
PUBLIC_PATHS = frozenset(ASSETS)
FARM_PATHS = frozenset(FARM_ASSETS)

#: This origin only (the webcam's origins too for images: `webcam_sources`; `blob:` movies,
#: fetched with the key header, for the timelapse player); no inline script or style (the page
#: sets no style attribute: the script styles through classes and the CSSOM), no plugins, no
#: <base>, no form posts, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cache-Control": "no-cache",
}


@attrs.frozen
class Asset:
    body: bytes
    media_type: str
    etag: str


def read_asset(name: str) -> bytes:
    """One file of the page, from the installed package."""
    return resources.files(__package__).joinpath(ASSET_FOLDER, name).read_bytes()


def load_assets(table: dict[str, tuple[str, str]] = ASSETS) -> dict[str, Asset]:
    assets = {}
    for path, (name, media_type) in table.items():
        body = read_asset(name)
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[path] = Asset(body, media_type, etag)
    return assets


_HOST = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")


def webcam_sources(webcam: WebcamSpec) -> str:
    """The origins of the webcam's stream and snapshot URLs (http or https), space-led, for
    the page's img-src; relative URLs are this origin's, and anything odd is left out."""
    out: list[str] = []
    for url in (webcam.stream, webcam.snapshot) if webcam.enabled else ():
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port
        except ValueError:
            continue
        host = f"[{host}]" if ":" in host else host
        if parts.scheme in ("http", "https") and _HOST.fullmatch(host):
            origin = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
            if origin not in out:
                out.append(origin)
    return "".join(" " + origin for origin in out)


def _headers(request: Request) -> dict[str, str]:
    api = getattr(request.app.state, "api", None)
    if api is None:  # the page of several printers shows no webcam
        return HEADERS
    cam = webcam_sources(api.control.camera.webcam)
    if not cam:
        return HEADERS
    policy = CSP.replace("img-src 'self'", "img-src 'self'" + cam)
    return {**HEADERS, "Content-Security-Policy": policy}


def _endpoint(asset: Asset) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        headers = {**_headers(request), "ETag": asset.etag}
        if asset.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)
    return serve


def routes(table: dict[str, tuple[str, str]] = ASSETS) -> list[Route]:
    return [Route(path, _endpoint(asset), methods=["GET"])
            for path, asset in load_assets(table).items()]
