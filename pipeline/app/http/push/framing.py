"""How push-socket messages travel in websocket text messages: `Raw` (one JSON object per
message, `/sockjs/websocket`) and `SockJS` (SockJS's framed websocket transport,
`/sockjs/<server>/<session>/websocket`, as OctoPrint's web page, its `octoprint_client` and
several apps speak it), plus `/sockjs/info`.

SockJS frames (protocol 0.3): the server opens with `o`, sends `h` when it has said nothing for
HEARTBEAT seconds, messages as `a[...]` (a JSON array of the messages), and closes with
`c[code,"reason"]` before the websocket close. A client sends a JSON array of strings (or one
string), each string one message. Only the framing differs: the socket (sockjs.py) is the same.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from pipeline.app.http.support import BadRequest, parse_json

#: Seconds without a frame after which a SockJS socket sends a heartbeat (SockJS's 25 s).
HEARTBEAT = 25.0


def encode(kind: str, payload: dict[str, Any] | None) -> str:
    return json.dumps({kind: payload}, separators=(",", ":"), default=str)


class Raw:
    """One JSON object per websocket message, both ways."""

    heartbeat: float | None = None

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def open(self) -> None:
        pass

    async def send(self, kind: str, payload: dict[str, Any] | None) -> None:
        await self.ws.send_text(encode(kind, payload))

    async def beat(self) -> None:
        pass

    def messages(self, data: bytes) -> list[bytes]:
        """The client's messages in one websocket message."""
        return [data]

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)


class SockJS(Raw):
    """SockJS's framed websocket transport (see the module's docstring)."""

    heartbeat = HEARTBEAT

    async def open(self) -> None:
        await self.ws.send_text("o")

    async def send(self, kind: str, payload: dict[str, Any] | None) -> None:
        await self.ws.send_text(f"a[{encode(kind, payload)}]")

    async def beat(self) -> None:
        await self.ws.send_text("h")

    def messages(self, data: bytes) -> list[bytes]:
        """The strings of a client's frame (a JSON array of strings, or one string); a frame
        that is neither yields itself, so the socket ignores it as any malformed message."""
        try:  # bounded depth, no lone surrogates: a hostile frame is just malformed
            frame = parse_json(data, 2) if data else []
        except BadRequest:
            return [data]
        if isinstance(frame, str):
            frame = [frame]
        if not isinstance(frame, list) or not all(isinstance(m, str) for m in frame):
            return [data]
        return [m.encode() for m in frame]

    async def close(self, code: int, reason: str) -> None:
        await self.ws.send_text("c" + json.dumps([code, reason]))
        await self.ws.close(code, reason)


async def sockjs_info(request: Request) -> Response:
    """SockJS's `/info`: the websocket transport is on, no cookie is needed."""
    return JSONResponse({"websocket": True, "cookie_needed": False, "origins": ["*:*"],
                         "entropy": secrets.randbits(32)},
                        headers={"cache-control": "no-store, no-cache, must-revalidate, "
                                                  "max-age=0"})
